/* ps_hashmap.h - 64-bit key -> 32-bit row index, open addressing (linear
 * probing) in one flat array: no allocation per key, 12 bytes per slot, at
 * most 3/4 full. Growing never stalls the caller for long: the doubled
 * array is filled incrementally (a few hundred slots per call) while
 * lookups still find keys in the old one, which is only read. No deletion
 * (rows live as long as their table). Single thread. */
#ifndef PS_HASHMAP_H
#define PS_HASHMAP_H

#include <stddef.h>
#include <stdint.h>

#define PS_HASHMAP_NONE UINT32_MAX /* "no row"; rows go up to UINT32_MAX - 2 */

typedef struct {
    uint64_t key;
    uint32_t row; /* row + 1; 0: empty (so calloc'd memory is an empty map) */
} __attribute__((packed)) ps_hashmap_slot_t;

typedef struct {
    ps_hashmap_slot_t *slots, *old; /* old: being migrated, NULL if not growing */
    uint64_t cap, old_cap;          /* powers of two */
    uint64_t migrated;              /* old slots copied so far */
    uint64_t count;
} ps_hashmap_t;

/* An empty map with room for about `expected` keys before it first grows. */
void ps_hashmap_init(ps_hashmap_t *m, uint64_t expected);
void ps_hashmap_free(ps_hashmap_t *m);
/* The row of key, or PS_HASHMAP_NONE. */
uint32_t ps_hashmap_get(const ps_hashmap_t *m, uint64_t key);
/* The row of key; if absent, inserts it with row next_row (the caller's
 * next free row) and sets *inserted. Moves a bounded number of slots of an
 * ongoing growth first. */
uint32_t ps_hashmap_get_or_insert(ps_hashmap_t *m, uint64_t key, uint32_t next_row, int *inserted);
/* Calls fn once for every key with its row, in no particular order (while
 * growing: the new array, then the old one's slots not yet copied, which
 * hold exactly the keys the new one lacks). */
void ps_hashmap_each(const ps_hashmap_t *m, void (*fn)(uint64_t key, uint32_t row, void *ctx),
                     void *ctx);
/* Bytes held by the slot arrays. */
size_t ps_hashmap_bytes(const ps_hashmap_t *m);
/* The slot a key hashes to first, in a table of cap slots (for tests). */
uint64_t ps_hashmap_home(uint64_t key, uint64_t cap);

#endif
