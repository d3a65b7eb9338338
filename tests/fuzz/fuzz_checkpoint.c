/* fuzz_checkpoint.c - any payload as a checkpoint file: ps_ckpt_read must
 * either refuse it with an error naming the file, or return records whose
 * every pointer stays inside what it read (ASan checks each byte read
 * here). The checksum is computed over the payload as the writer would,
 * so the fuzzer reaches the record parsers instead of stopping at the CRC.
 *
 * Input: byte 0 picks the format (1 to 4), bytes 1-8 the base clock
 * (format 4; its base CRC is 0), the rest is the payload. */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "fuzz_util.h"
#include "ps_checkpoint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile float sink;

static void touch_floats(const float *p, uint64_t n)
{
    const unsigned char *b = (const unsigned char *)p;
    for (uint64_t i = 0; i < n * sizeof(float); i++)
        sink += b[i];
}

static void touch_records(const ps_ckpt_t *ck)
{
    for (uint32_t i = 0; i < ck->n_chunks; i++) {
        const ps_table_state_t *s = &ck->chunks[i].state;
        touch_floats(s->params, s->len);
        if (s->m)
            touch_floats(s->m, s->len);
        if (s->v)
            touch_floats(s->v, s->len);
        for (uint32_t r = 0; r < s->world; r++)
            sink += ((const unsigned char *)s->pushes)[r * 8];
    }
    for (uint32_t i = 0; i < ck->n_sparse; i++) {
        const ps_ckpt_sparse_t *s = &ck->sparse[i];
        touch_floats((const float *)s->rows, s->n_rows * (2 + (uint64_t)s->stride));
        for (uint32_t r = 0; r < s->world; r++)
            sink += ((const unsigned char *)s->pushes)[r * 8];
    }
    for (uint32_t r = 0; ck->job.rank_state && r < ck->job.world; r++)
        sink += ck->job.rank_state[r];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 9)
        return 0;
    uint32_t format = 1 + data[0] % 4;
    uint64_t len = size - 9;
    uint32_t crc = (uint32_t)crc32(crc32(0, NULL, 0), data + 9, (uInt)len);
    size_t head = format >= 4 ? 40 : 24; /* format 4: + base clock, base CRC, 0 */
    uint8_t *file = calloc(1, head + len + 1);
    memcpy(file, "PSCKPT\0\0", 8);
    memcpy(file + 8, &format, 4);
    memcpy(file + 12, &crc, 4);
    memcpy(file + 16, &len, 8);
    if (format >= 4)
        memcpy(file + 24, data + 1, 8);
    memcpy(file + head, data + 9, len);
    char path[64];
    int fd = fuzz_memfile(file, head + len, path, sizeof path);
    free(file);
    if (fd < 0)
        return 0;
    ps_ckpt_t ck;
    ps_errbuf_t err;
    if (ps_ckpt_read(path, &ck, &err) == PS_OK) {
        touch_records(&ck);
        ps_ckpt_free(&ck);
    } else if (!strstr(err.msg, path) || ck.chunks || ck.sparse || ck.buf) {
        __builtin_trap(); /* an error must name the file and leave nothing held */
    }
    close(fd);
    return 0;
}
