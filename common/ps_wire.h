/* ps_wire.h - ZeroMQ multipart framing of ps.Header + raw frames. Used by the
 * server loop and the worker client, each on its own thread and sockets.
 * A message is: [identity (ROUTER side only)] header [keys] [values]. */
#ifndef PS_WIRE_H
#define PS_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

#include "ps.pb-c.h"
#include "ps_protocol.h"

#define PS_WIRE_MAX_PARTS 5

typedef struct {
    zmq_msg_t parts[PS_WIRE_MAX_PARTS];
    int n_parts;
} ps_wire_msg_t;

/* Receives every part of one message. PS_OK; PS_EAGAIN (ZMQ_DONTWAIT and
 * nothing there); PS_EPROTO if it had more than PS_WIRE_MAX_PARTS parts (the
 * rest is drained, m holds the first ones so the sender can be answered);
 * PS_ENET on a socket error. On any return, ps_wire_msg_close is safe. */
int ps_wire_recv(void *sock, ps_wire_msg_t *m, int flags);
/* Closes every part; safe twice. */
void ps_wire_msg_close(ps_wire_msg_t *m);
/* Sum of the part sizes. */
size_t ps_wire_msg_bytes(const ps_wire_msg_t *m);

/* Unpacks a header part; NULL if it is not a valid ps.Header. The caller
 * frees it with ps__header__free_unpacked(h, NULL). */
Ps__Header *ps_wire_unpack_header(zmq_msg_t *part);

/* Sends header as one part (ZMQ_SNDMORE if more). Returns bytes sent or a
 * negative PS_E* code. */
int ps_wire_send_header(void *sock, const Ps__Header *h, int more);
/* Sends a copy of buf as one part. Returns bytes sent or a negative code. */
int ps_wire_send_copy(void *sock, const void *buf, size_t len, int more);
/* Sends msg (ownership passes to ZeroMQ; msg is closed either way). */
int ps_wire_send_msg(void *sock, zmq_msg_t *msg, int more);

/* ZeroMQ may deliver a frame's bytes at any address (small frames live
 * inside the message, large ones may share a receive buffer). Makes part's
 * data 8-byte aligned, copying only if it is not. PS_ENOMEM if the copy
 * cannot be allocated (part is unchanged). */
int ps_wire_align(zmq_msg_t *part);

/* Replaces part (n elements of dtype) by an aligned fp32 frame holding the
 * values divided by scale (scale 0 or 1: unchanged). F32 frames are only
 * aligned (and scaled if asked). PS_ENOMEM, or PS_EPROTO for an unknown
 * dtype. The caller has checked the frame holds n elements. */
int ps_wire_to_f32(zmq_msg_t *part, int dtype, uint64_t n, double scale);
/* New frame in msg with n fp32 values converted to dtype. PS_ENOMEM. */
int ps_wire_from_f32(zmq_msg_t *msg, int dtype, const float *values, uint64_t n);

/* The one dtype codec, both directions, used by the server and the client.
 * Decodes n elements of dtype at src (any address) into dst as fp32, each
 * multiplied by inv_scale (1: unchanged). PS_EPROTO for an unknown dtype. */
int ps_wire_decode(int dtype, const void *src, float *dst, uint64_t n, float inv_scale);
/* Encodes n fp32 values of src into dst (n * ps_dtype_size bytes) as
 * dtype; F16 values are multiplied by scale first (the fp16 loss scale),
 * F32 and BF16 (which has fp32's range) are not. PS_EPROTO for an unknown
 * dtype. */
int ps_wire_encode(int dtype, const float *src, void *dst, uint64_t n, float scale);

/* Bytes per element of a dtype; 0 for an unknown one. */
size_t ps_dtype_size(int dtype);
/* Name of an op ("PUSH_PULL") for log lines; never NULL. */
const char *ps_op_name(int op);

#endif
