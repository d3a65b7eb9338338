/* ps_shardmap.c - dense range sharding. */
#include "ps_shardmap.h"

#include <assert.h>

ps_slice_t ps_shardmap_slice(uint64_t n_elems, uint32_t table_id, uint32_t shard,
                             uint32_t n_shards)
{
    ps_slice_t s = {0, 0};
    assert(n_shards > 0 && shard < n_shards);
    if (n_elems < (uint64_t)PS_SHARD_MIN_SPLIT * n_shards) {
        if (table_id % n_shards == shard)
            s.len = n_elems;
        return s;
    }
    uint64_t base = n_elems / n_shards, extra = n_elems % n_shards;
    s.offset = shard * base + (shard < extra ? shard : extra);
    s.len = base + (shard < extra ? 1 : 0);
    return s;
}
