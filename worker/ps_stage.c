/* ps_stage.c - the pipeline's split of a spec into stages: a dynamic
 * programme over the cut points for the balance, checks for a user's cut. */
#include "ps_stage.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    uint64_t max_params, act_sum;
    size_t prev; /* where the last stage of this best split begins */
    bool ok;
} cell_t;

static bool better(uint64_t m, uint64_t a, const cell_t *c)
{
    return !c->ok || m < c->max_params || (m == c->max_params && a < c->act_sum);
}

/* Stage [i, j) may exist: it begins at a cut and owns a parameter. */
static bool stage_ok(const ps_stage_item_t *items, const uint64_t *sum, size_t i, size_t j)
{
    return j > i && sum[j] > sum[i] && (i == 0 || items[i - 1].can_cut_after);
}

/* best[s * (n + 1) + j]: items [0, j) in s stages. O(P n^2). */
static void fill(const ps_stage_item_t *items, const uint64_t *sum, size_t n, uint32_t p,
                 cell_t *best)
{
    best[0] = (cell_t){0, 0, 0, true};
    for (uint32_t s = 1; s <= p; s++)
        for (size_t j = 1; j <= n; j++) {
            cell_t *c = &best[s * (n + 1) + j];
            for (size_t i = s - 1; i < j; i++) {
                const cell_t *b = &best[(s - 1) * (n + 1) + i];
                if (!b->ok || !stage_ok(items, sum, i, j))
                    continue;
                uint64_t m = sum[j] - sum[i] > b->max_params ? sum[j] - sum[i] : b->max_params;
                uint64_t a = b->act_sum + (i > 0 ? items[i - 1].act_floats : 0);
                if (better(m, a, c))
                    *c = (cell_t){m, a, i, true};
            }
        }
}

static int balance(const ps_stage_item_t *items, const uint64_t *sum, size_t n, uint32_t p,
                   size_t *first, ps_errbuf_t *err)
{
    cell_t *best = calloc((size_t)(p + 1) * (n + 1), sizeof *best);
    if (!best)
        return ps_err_set(err, PS_ENOMEM, "stage_layers: out of memory");
    fill(items, sum, n, p, best);
    int rc = PS_OK;
    if (!best[p * (n + 1) + n].ok) {
        rc = ps_err_set(err, PS_EINVAL,
                        "pipeline_stages %u: the net cannot be cut into %u stages that each own "
                        "parameters (cuts only between layers outside residuals)",
                        p, p);
    } else {
        first[p] = n;
        for (uint32_t s = p; s > 0; s--)
            first[s - 1] = best[s * (n + 1) + first[s]].prev;
    }
    free(best);
    return rc;
}

static int find_pos(const ps_stage_item_t *items, size_t n, int64_t pos, size_t *at)
{
    for (size_t i = 0; i < n; i++)
        if (items[i].pos == pos) {
            *at = i;
            return PS_OK;
        }
    return PS_EINVAL;
}

static int user_cut(const ps_stage_item_t *items, const uint64_t *sum, size_t n, uint32_t p,
                    const int64_t *user, size_t *first, ps_errbuf_t *err)
{
    first[0] = 0;
    first[p] = n;
    for (uint32_t s = 1; s < p; s++) {
        size_t i;
        if (find_pos(items, n, user[s - 1], &i) != PS_OK)
            return ps_err_set(err, PS_EINVAL,
                              "stage_layers: position %lld is not a layer of the "
                              "spec (1..%d)",
                              (long long)user[s - 1], items[n - 1].pos);
        if (i <= first[s - 1])
            return ps_err_set(err, PS_EINVAL,
                              "stage_layers: position %lld ('%s'): positions must ascend, "
                              "after the first layer",
                              (long long)user[s - 1], items[i].text);
        if (!items[i - 1].can_cut_after)
            return ps_err_set(err, PS_EINVAL,
                              "stage_layers: position %lld ('%s') is inside a residual: a stage "
                              "begins outside every residual",
                              (long long)user[s - 1], items[i].text);
        first[s] = i;
    }
    for (uint32_t s = 0; s < p; s++)
        if (sum[first[s + 1]] == sum[first[s]])
            return ps_err_set(err, PS_EINVAL,
                              "stage_layers: stage %u (layers %d..%d) would own no parameters", s,
                              items[first[s]].pos, items[first[s + 1] - 1].pos);
    return PS_OK;
}

int ps_stage_split(const ps_stage_item_t *items, size_t n, uint32_t n_stages, const int64_t *user,
                   size_t *first, ps_errbuf_t *err)
{
    if (n_stages < 1 || n_stages > PS_STAGE_MAX || n == 0)
        return ps_err_set(err, PS_EINVAL, "pipeline_stages %u: must be 1..%d and the net nonempty",
                          n_stages, PS_STAGE_MAX);
    uint64_t *sum = calloc(n + 1, sizeof *sum);
    if (!sum)
        return ps_err_set(err, PS_ENOMEM, "stage_layers: out of memory");
    for (size_t i = 0; i < n; i++)
        sum[i + 1] = sum[i] + items[i].n_params;
    int rc = user ? user_cut(items, sum, n, n_stages, user, first, err)
                  : balance(items, sum, n, n_stages, first, err);
    free(sum);
    return rc;
}

int ps_stage_parse(const char *text, uint32_t n_stages, int64_t *out, ps_errbuf_t *err)
{
    const char *p = text;
    uint32_t k = 0;
    while (*p) {
        char *end;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (end == p || errno || (*end && *end != ',') || k + 1 >= n_stages)
            return ps_err_set(err, PS_EINVAL,
                              "stage_layers '%s': needs %u comma-separated layer positions "
                              "(where stages 2..%u begin)",
                              text, n_stages - 1, n_stages);
        out[k++] = v;
        p = *end ? end + 1 : end;
    }
    if (k + 1 != n_stages)
        return ps_err_set(err, PS_EINVAL,
                          "stage_layers '%s': needs %u comma-separated layer positions (where "
                          "stages 2..%u begin)",
                          text, n_stages - 1, n_stages);
    return PS_OK;
}
