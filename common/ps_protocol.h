/* ps_protocol.h - the wire protocol's constants a client program needs
 * (version, flag bits, value types), without the generated protobuf
 * types: part of the installed client API (ps_client.h). The numbers are
 * the wire's (proto/ps.proto, docs/protocol.md) and never change. */
#ifndef PS_PROTOCOL_H
#define PS_PROTOCOL_H

#define PS_PROTOCOL_VERSION 1

/* Header.flags */
#define PS_FLAG_AFTER_ALL_DONE 0x1u /* PULL: wait until every worker said DONE */
#define PS_FLAG_SKIP 0x2u           /* PUSH: no values; this worker's step overflowed */
#define PS_FLAG_SKIPPED 0x4u        /* reply: the update of this clock was skipped */
#define PS_FLAG_NO_CREATE 0x8u      /* SPARSE_PULL: do not store rows of unseen keys */
#define PS_FLAG_NEW_JOB 0x10u       /* HELLO: the job is new (clock 0 on shard 0): create it here */
#define PS_FLAG_FRESH 0x20u         /* HELLO reply: the job has made no progress on this shard */
/* HELLO reply: the shard mapped the worker's shared region. Data request:
 * its values (push) are in the region, its reply's values may go there.
 * Reply: answers a request that used the region (whose slots are then
 * free again). */
#define PS_FLAG_SHM 0x40u
#define PS_FLAG_SHM_VALUES 0x80u /* reply: its values are in the region, no values frame */
/* HELLO reply: the shard opened the worker's doorbell pipes (ShmOffer
 * bell_fd, answer_fd): headers of requests that use the region may go
 * down the one, header-only replies to them come up the other. */
#define PS_FLAG_BELL 0x100u

/* Header.dtype: the type of the values on the wire (ps.DType). */
#define PS_DTYPE_F32 0
#define PS_DTYPE_F16 1
#define PS_DTYPE_BF16 2

#endif
