/* ps_metric.h - evaluation metrics shared by the trainers and the data
 * generators. Any thread. */
#ifndef PS_METRIC_H
#define PS_METRIC_H

#include <stddef.h>

/* Area under the ROC curve of scores against labels (> 0 is positive):
 * the probability that a random positive outscores a random negative,
 * ties counting half. 0 if a class is missing. O(n log n). */
double ps_metric_auc(const float *scores, const float *labels, size_t n);

#endif
