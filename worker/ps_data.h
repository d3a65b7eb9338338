/* ps_data.h - training and test data in memory: n samples of d float
 * features and one float label each (a class index, or a regression
 * target). Readers for IDX (MNIST, Fashion-MNIST; gzip or plain) and CSV.
 * Worker thread only. */
#ifndef PS_DATA_H
#define PS_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ps_err.h"

/* A data set's features and labels, either of which may be absent (both
 * NULL: not held; a pipeline stage keeps only what it reads). */
typedef struct {
    size_t n, d;
    float *x;           /* n * d, row-major; NULL when x8 holds the features */
    uint8_t *x8;        /* or n * d bytes (IDX pixels kept as read): feature = byte / 255 */
    float *y;           /* n labels; NULL if not held */
    uint32_t n_classes; /* 1 + largest label if all labels are small whole numbers, else 0 */
} ps_dataset_t;

/* Reads an IDX image file (ubyte, >= 2 dims; pixels scaled to [0, 1]) and an
 * IDX label file (ubyte, 1 dim) with the same count. Gzip is detected.
 * PS_EFORMAT / PS_EIO with the file name and the reason in err. */
int ps_data_load_idx(const char *images, const char *labels, ps_dataset_t *ds, ps_errbuf_t *err);
/* As ps_data_load_idx, but the pixels stay bytes in x8 (x is NULL): a
 * quarter of the memory. ps_data_gather (so every batch), ps_data_split
 * and ps_data_widen turn them into the same floats ps_data_load_idx gives. */
int ps_data_load_idx_bytes(const char *images, const char *labels, ps_dataset_t *ds,
                           ps_errbuf_t *err);
/* What of a data set a *_part loader keeps: a pipeline's first stage
 * reads only the features, its last only the labels, a middle one only
 * the sample count (n and d are always set). */
enum { PS_DATA_FEATURES = 1, PS_DATA_LABELS = 2, PS_DATA_ALL = 3 };
/* ps_data_load_idx (keep_bytes: ps_data_load_idx_bytes) keeping only the
 * parts in keep: without PS_DATA_FEATURES the pixels are not read (x and
 * x8 NULL); without PS_DATA_LABELS the labels are read for n_classes and
 * freed (y NULL). */
int ps_data_load_idx_part(const char *images, const char *labels, bool keep_bytes, unsigned keep,
                          ps_dataset_t *ds, ps_errbuf_t *err);
/* Turns x8 into x (floats), for code that reads x directly; no-op without x8. */
void ps_data_widen(ps_dataset_t *ds);
/* A pixel byte's feature value: byte * PS_DATA_PIXEL_SCALE. */
#define PS_DATA_PIXEL_SCALE (1.0f / 255.0f)
/* Feature k (row-major) of ds, whether in x or x8. */
static inline float ps_data_value(const ps_dataset_t *ds, size_t k)
{
    return ds->x ? ds->x[k] : (float)ds->x8[k] * PS_DATA_PIXEL_SCALE;
}
/* Reads a CSV of numbers; label_col is the label's column (negative counts
 * from the end: -1 = last). A first line that is not all numbers is a header.
 * Errors name file:line and the field. */
int ps_data_load_csv(const char *path, int label_col, ps_dataset_t *ds, ps_errbuf_t *err);
/* ps_data_load_csv keeping only the parts in keep: every field is still
 * parsed and checked, but the features are stored only with
 * PS_DATA_FEATURES, the labels kept only with PS_DATA_LABELS. */
int ps_data_load_csv_part(const char *path, int label_col, unsigned keep, ps_dataset_t *ds,
                          ps_errbuf_t *err);
/* One CSV line (NUL-terminated, no '\n') of n_cols numbers, the label in
 * column label_col: the others into x[0..n_cols-1), the label into *y.
 * Returns 1, 0 for an empty line, PS_EFORMAT with the reason in why ("3
 * fields, expected 785", "field 5 'x' is not a number"; the caller says
 * where). Reads the line without changing it. */
int ps_data_csv_parse_line(const char *line, size_t n_cols, size_t label_col, float *x, float *y,
                           ps_errbuf_t *why);
/* The fields of a CSV line (commas + 1; 0 if empty). */
size_t ps_data_csv_fields(const char *line);
/* Reads an IDX ubyte file's header: its ndim (min..max) dims and the byte
 * offset of its data (4 + 4 * ndim). Errors as ps_data_load_idx's. */
int ps_data_idx_header(const char *path, int ndim_min, int ndim_max, uint32_t *dims, int *ndim,
                       uint64_t *data_offset, ps_errbuf_t *err);
/* Frees the arrays; safe twice. */
void ps_data_free(ps_dataset_t *ds);
/* Scales every feature of train to mean 0, std 1 and applies the same
 * transform to test and val (either may be NULL). Constant features are
 * left centred. Nothing if train holds no features. */
void ps_data_standardize(ps_dataset_t *train, ps_dataset_t *test, ps_dataset_t *val);
/* Splits ds (consumed: its arrays move or are freed) into a validation set
 * of round(val_fraction * n) samples and a training set of the rest, after
 * shuffling with seed (the same seed gives the same split on every worker
 * and in every trial). subset > 0 keeps only that many training samples.
 * PS_EINVAL (naming the sizes) if nothing would be left to train on. */
int ps_data_split(ps_dataset_t *ds, double val_fraction, size_t subset, uint64_t seed,
                  ps_dataset_t *val, ps_errbuf_t *err);
/* Copies rows idx[0..n) into x (n * d) and y (n); a part ds does not hold
 * is left as it is (x or y may then be NULL). */
void ps_data_gather(const ps_dataset_t *ds, const uint32_t *idx, size_t n, float *x, float *y);

#endif
