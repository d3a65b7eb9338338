/* ps_shardmap.h - where each element of a dense table lives. A pure function
 * of (table size, table id, number of shards), computed identically by the
 * server (to validate requests) and the worker (to address them). */
#ifndef PS_SHARDMAP_H
#define PS_SHARDMAP_H

#include <stdint.h>

/* A table smaller than this many elements per shard is not split: splitting
 * it would cost a message per shard for a few bytes each. */
#define PS_SHARD_MIN_SPLIT 4096

typedef struct {
    uint64_t offset; /* first element of the table held by the shard */
    uint64_t len;    /* elements held; 0 if the shard holds none of it */
} ps_slice_t;

/* Slice of table table_id (n_elems elements) owned by shard of n_shards.
 * Tables with n_elems >= PS_SHARD_MIN_SPLIT * n_shards are cut into n_shards
 * contiguous ranges whose lengths differ by at most one; smaller tables live
 * whole on shard table_id % n_shards, which spreads many small tables evenly. */
ps_slice_t ps_shardmap_slice(uint64_t n_elems, uint32_t table_id, uint32_t shard,
                             uint32_t n_shards);

#endif
