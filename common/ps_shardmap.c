/* ps_shardmap.c - dense tables cut into evenly spread chunks. */
#include "ps_shardmap.h"

#include <assert.h>

uint32_t ps_shardmap_n_chunks(uint64_t n_elems, uint32_t n_shards)
{
    assert(n_shards > 0);
    if (n_elems < (uint64_t)PS_SHARD_MIN_SPLIT * n_shards)
        return 1;
    uint64_t n = (n_elems + PS_CHUNK_ELEMS - 1) / PS_CHUNK_ELEMS;
    n = (n + n_shards - 1) / n_shards * n_shards;
    return (uint32_t)n;
}

ps_chunk_t ps_shardmap_chunk(uint64_t n_elems, uint32_t table_id, uint32_t chunk, uint32_t n_shards)
{
    uint32_t n = ps_shardmap_n_chunks(n_elems, n_shards);
    assert(chunk < n);
    ps_chunk_t c;
    uint64_t base = n_elems / n, extra = n_elems % n;
    c.offset = chunk * base + (chunk < extra ? chunk : extra);
    c.len = base + (chunk < extra ? 1 : 0);
    c.shard = (uint32_t)(((uint64_t)table_id + chunk) % n_shards);
    return c;
}

uint32_t ps_shardmap_key_shard(uint64_t key, uint32_t n_shards)
{
    uint64_t h = key;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return (uint32_t)(h % n_shards);
}
