/* ps_metric.c - see ps_metric.h. */
#include "ps_metric.h"

#include <stdlib.h>

#include "ps_err.h"

typedef struct {
    float score;
    float label;
} scored_t;

static int cmp_scored(const void *a, const void *b)
{
    float x = ((const scored_t *)a)->score, y = ((const scored_t *)b)->score;
    return (x > y) - (x < y);
}

double ps_metric_auc(const float *scores, const float *labels, size_t n)
{
    if (!n)
        return 0;
    scored_t *s = ps_xmalloc(n * sizeof *s);
    for (size_t i = 0; i < n; i++)
        s[i] = (scored_t){scores[i], labels[i]};
    qsort(s, n, sizeof *s, cmp_scored);
    /* Mann-Whitney: sum of the positives' ranks, tied scores sharing the
     * average rank of their run */
    double pos = 0, rank_sum = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && s[j].score == s[i].score)
            j++;
        double avg_rank = (double)(i + j + 1) / 2.0; /* ranks i+1 .. j */
        for (size_t k = i; k < j; k++)
            if (s[k].label > 0) {
                pos++;
                rank_sum += avg_rank;
            }
        i = j;
    }
    free(s);
    double neg = (double)n - pos;
    if (pos == 0 || neg == 0)
        return 0;
    return (rank_sum - pos * (pos + 1) / 2.0) / (pos * neg);
}
