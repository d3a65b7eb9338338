/* ps_text.h - a byte-level text corpus for language models: the bytes of a
 * file (or of every data file of a directory), a held-out validation tail,
 * and training windows of block_size + 1 bytes (a tokens(block_size)
 * sample for ps_net). Windows are addressed by number, so the trainer
 * shuffles window numbers with its seed exactly as it shuffles samples and
 * BSP exactness holds. Worker thread only. */
#ifndef PS_TEXT_H
#define PS_TEXT_H

#include <stddef.h>
#include <stdint.h>

#include "ps_data.h"
#include "ps_err.h"

typedef struct {
    size_t block_size;   /* tokens a window predicts; a window is block_size + 1 bytes */
    double val_fraction; /* the last round(fraction * n) bytes are validation, in [0, 1) */
    size_t stride;       /* training windows start every stride bytes; 0 means 1 (the option
                          * text_stride 0, every block_size bytes, is the trainer's mapping) */
} ps_text_opts_t;

typedef struct ps_text ps_text_t;

/* Loads path: a file, or a directory whose regular files (no symlinks, no
 * "*.dat", none starting with '.') are read in name order and joined (the
 * fortunes package's /usr/share/games/fortunes). NULL with err naming the
 * file and the cause: unreadable, empty, or too short for one training
 * window and (if val_fraction > 0) one validation window. */
ps_text_t *ps_text_open(const char *path, const ps_text_opts_t *opts, ps_errbuf_t *err);
/* Frees *text_p and sets it to NULL. Safe with NULL or twice. */
void ps_text_destroy(ps_text_t **text_p);
/* The bytes and files ps_text_open would read at path (a file: its size
 * and 1), without reading them: what the job's fingerprint records, so a
 * corpus that changed under a job is noticed. 0, or -1 if path cannot be
 * read (errno set). */
int ps_text_corpus_size(const char *path, uint64_t *bytes, uint64_t *files);
/* The files of a corpus directory that ps_text_open reads, in its order:
 * *paths[0..*n) = "dir/name" (the caller frees each and the array), so a
 * streamed corpus (ps_stream.h) has the same files as one read whole.
 * PS_EIO naming dir if it cannot be read. */
int ps_text_dir_files(const char *dir, char ***paths, size_t *n, ps_errbuf_t *err);

size_t ps_text_n_bytes(const ps_text_t *t);
size_t ps_text_n_train_bytes(const ps_text_t *t);
size_t ps_text_n_val_bytes(const ps_text_t *t);
/* Training bytes (borrowed, n_train_bytes), then the validation bytes follow. */
const uint8_t *ps_text_bytes(const ps_text_t *t);
/* block_size + 1: the floats of one sample row. */
size_t ps_text_row_len(const ps_text_t *t);

/* Training windows: window w is the row_len bytes from w * stride, all
 * inside the training part. < 2^32. */
uint32_t ps_text_n_windows(const ps_text_t *t);
/* order[0..n_windows) = the windows of epoch in the trainer's shuffle: the
 * identity shuffled by ps_rng seeded with ps_rng_mix(seed, epoch). */
void ps_text_epoch_order(const ps_text_t *t, uint64_t seed, uint64_t epoch, uint32_t *order);
/* Rows of windows idx[0..n) into x (n * row_len byte values as floats);
 * y (may be NULL) gets n zeros, as ps_data_gather's labels. */
void ps_text_gather(const ps_text_t *t, const uint32_t *idx, size_t n, float *x, float *y);
/* The validation part as a data set of consecutive windows starting every
 * block_size bytes (each byte after the first is predicted once, from as
 * much context as its window holds); labels 0. ds is the caller's to
 * ps_data_free. Empty if there is no validation part. */
void ps_text_val_dataset(const ps_text_t *t, ps_dataset_t *ds);
/* The whole corpus (both parts) the same way: a test corpus. */
void ps_text_all_dataset(const ps_text_t *t, ps_dataset_t *ds);

#endif
