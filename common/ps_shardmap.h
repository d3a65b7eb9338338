/* ps_shardmap.h - where each element of a dense table lives. A pure function
 * of (table size, table id, number of shards), computed identically by the
 * server (to validate requests) and the worker (to address them).
 *
 * A table is cut into chunks, each a contiguous range held by one shard and
 * served as an independent unit (its own optimizer step, BSP round and
 * request), so the chunks of one tensor are in flight and being applied at
 * the same time. */
#ifndef PS_SHARDMAP_H
#define PS_SHARDMAP_H

#include <stdint.h>

/* A table smaller than this many elements per shard is one chunk: cutting
 * it would cost a message per piece for a few bytes each. */
#define PS_SHARD_MIN_SPLIT 4096
/* Target chunk size: 2^18 floats (1 MiB), large enough that per-message
 * costs vanish, small enough that several are in flight per tensor. */
#define PS_CHUNK_ELEMS (1u << 18)

typedef struct {
    uint64_t offset; /* first element of the chunk in the table */
    uint64_t len;    /* elements in the chunk, >= 1 */
    uint32_t shard;  /* shard that holds it */
} ps_chunk_t;

/* Number of chunks of a table of n_elems over n_shards: 1 if the table is
 * below PS_SHARD_MIN_SPLIT * n_shards, else ceil(n_elems / PS_CHUNK_ELEMS)
 * rounded up to a multiple of n_shards, so every shard holds as many. */
uint32_t ps_shardmap_n_chunks(uint64_t n_elems, uint32_t n_shards);
/* Chunk `chunk` (< n_chunks) of table table_id. Chunks are contiguous, in
 * order, and differ in length by at most one element. A one-chunk table
 * lives on shard table_id % n_shards; chunk c of a larger one on
 * (table_id + c) % n_shards. */
ps_chunk_t ps_shardmap_chunk(uint64_t n_elems, uint32_t table_id, uint32_t chunk,
                             uint32_t n_shards);

/* The shard of a sparse key: a hash of the key (murmur3's finaliser, not
 * the one the shards' hash tables use, so a shard's keys do not share low
 * bits) modulo n_shards. A pure function both sides compute; it never
 * changes for a given (key, n_shards). */
uint32_t ps_shardmap_key_shard(uint64_t key, uint32_t n_shards);

#endif
