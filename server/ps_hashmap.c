/* ps_hashmap.c - see ps_hashmap.h. */
#include "ps_hashmap.h"

#include <stdlib.h>
#include <string.h>

#include "ps_err.h"

/* Slots migrated per insert while growing: the new array has twice the
 * slots, and growth starts at 3/4 full, so the migration ends long before
 * the new array can fill up (it takes old_cap / MIGRATE_STEP inserts; the
 * new array has room for old_cap * 3/4 more). */
#define MIGRATE_STEP 256

uint64_t ps_hashmap_home(uint64_t key, uint64_t cap)
{
    /* splitmix64's finaliser: keys that differ in any bit land apart */
    uint64_t z = key + 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return (z ^ (z >> 31)) & (cap - 1);
}

/* Slots hold row + 1, so that zeroed memory is empty: calloc of a large
 * array maps zero pages lazily, and growing costs no O(n) initialisation. */
static ps_hashmap_slot_t *new_slots(uint64_t cap)
{
    return ps_xcalloc(cap, sizeof(ps_hashmap_slot_t));
}

void ps_hashmap_init(ps_hashmap_t *m, uint64_t expected)
{
    memset(m, 0, sizeof *m);
    m->cap = 64;
    while (m->cap / 4 * 3 < expected)
        m->cap *= 2;
    m->slots = new_slots(m->cap);
}

void ps_hashmap_free(ps_hashmap_t *m)
{
    free(m->slots);
    free(m->old);
    memset(m, 0, sizeof *m);
}

static uint32_t find(const ps_hashmap_slot_t *slots, uint64_t cap, uint64_t key)
{
    for (uint64_t i = ps_hashmap_home(key, cap);; i = (i + 1) & (cap - 1)) {
        if (slots[i].row == 0)
            return PS_HASHMAP_NONE;
        if (slots[i].key == key)
            return slots[i].row - 1;
    }
}

static void place(ps_hashmap_slot_t *slots, uint64_t cap, uint64_t key, uint32_t row)
{
    uint64_t i = ps_hashmap_home(key, cap);
    while (slots[i].row != 0)
        i = (i + 1) & (cap - 1);
    slots[i].key = key;
    slots[i].row = row + 1;
}

uint32_t ps_hashmap_get(const ps_hashmap_t *m, uint64_t key)
{
    uint32_t row = find(m->slots, m->cap, key);
    if (row == PS_HASHMAP_NONE && m->old)
        row = find(m->old, m->old_cap, key);
    return row;
}

/* Copies the next MIGRATE_STEP slots of the old array (the old array stays
 * intact for lookups until the copy is complete). */
static void migrate(ps_hashmap_t *m)
{
    uint64_t end =
        m->migrated + MIGRATE_STEP < m->old_cap ? m->migrated + MIGRATE_STEP : m->old_cap;
    for (uint64_t i = m->migrated; i < end; i++)
        if (m->old[i].row != 0 && find(m->slots, m->cap, m->old[i].key) == PS_HASHMAP_NONE)
            place(m->slots, m->cap, m->old[i].key, m->old[i].row - 1);
    m->migrated = end;
    if (m->migrated == m->old_cap) {
        free(m->old);
        m->old = NULL;
        m->old_cap = 0;
    }
}

void ps_hashmap_each(const ps_hashmap_t *m, void (*fn)(uint64_t key, uint32_t row, void *ctx),
                     void *ctx)
{
    for (uint64_t i = 0; i < m->cap; i++)
        if (m->slots[i].row)
            fn(m->slots[i].key, m->slots[i].row - 1, ctx);
    for (uint64_t i = m->old ? m->migrated : 0; m->old && i < m->old_cap; i++)
        if (m->old[i].row)
            fn(m->old[i].key, m->old[i].row - 1, ctx);
}

uint32_t ps_hashmap_get_or_insert(ps_hashmap_t *m, uint64_t key, uint32_t next_row, int *inserted)
{
    *inserted = 0;
    if (m->old)
        migrate(m);
    uint32_t row = ps_hashmap_get(m, key);
    if (row != PS_HASHMAP_NONE)
        return row;
    if (!m->old && m->count + 1 > m->cap / 4 * 3) {
        m->old = m->slots;
        m->old_cap = m->cap;
        m->migrated = 0;
        m->cap *= 2;
        m->slots = new_slots(m->cap);
        migrate(m);
    }
    place(m->slots, m->cap, key, next_row);
    m->count++;
    *inserted = 1;
    return next_row;
}

size_t ps_hashmap_bytes(const ps_hashmap_t *m)
{
    return (size_t)(m->cap + m->old_cap) * sizeof(ps_hashmap_slot_t);
}
