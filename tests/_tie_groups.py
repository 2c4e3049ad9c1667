"""Tie-aware comparison of label-issue masks (CONFIDENT_LEARNING.md §2.10).

Where several examples tie exactly at a selection cut-off, which of them get
flagged depends on the sort used (cleanlab uses numpy's unstable default
sort).  ``ambiguous_rows`` returns every example that sits in a tie group
straddling a cut-off; two correct implementations may only differ there.
"""
import numpy as np

from noisylab.detect._kernels import group_by_label
from noisylab.detect.count import _compute_confident_joint, _num_label_issues
from noisylab.detect.filter import _keep_at_least_n_per_class
from noisylab.detect.rank import _scores


def _straddle(keys, c, largest):
    """Positions in the tie group at the cut-off of a top-c selection, if it straddles it."""
    n = keys.shape[0]
    if c <= 0 or c >= n:
        return np.empty(0, dtype=np.int64)
    srt = np.sort(keys)
    v = srt[n - c] if largest else srt[c - 1]
    better = (keys > v).sum() if largest else (keys < v).sum()
    tied = np.flatnonzero(keys == v)
    if better + tied.shape[0] > c:  # the group does not fit entirely
        return tied
    return np.empty(0, dtype=np.int64)


def ambiguous_rows(y, P, filter_by, min_examples_per_class=1, frac_noise=1.0):
    y = np.asarray(y).astype(np.int64)
    n, K = P.shape
    amb = np.zeros(n, dtype=bool)
    if filter_by in ("low_self_confidence", "low_normalized_margin"):
        m = _num_label_issues(y, P)
        method = "self_confidence" if filter_by == "low_self_confidence" else "normalized_margin"
        amb[_straddle(_scores(y, P, method), m, largest=False)] = True
        return amb
    if filter_by not in ("prune_by_noise_rate", "prune_by_class", "both"):
        return amb
    cj, _ = _compute_confident_joint(y, P, calibrate=True)
    M = _keep_at_least_n_per_class(cj, min_examples_per_class, frac_noise)
    order, bounds = group_by_label(y, K)
    for k in range(K):
        rows = order[bounds[k]:bounds[k + 1]]
        if rows.shape[0] <= min_examples_per_class:
            continue
        block = P[rows]
        own = block[:, k]
        if filter_by in ("prune_by_class", "both"):
            amb[rows[_straddle(own, rows.shape[0] - int(M[k, k]), largest=False)]] = True
        if filter_by in ("prune_by_noise_rate", "both"):
            for j in range(K):
                if j != k and M[j, k] > 0:
                    amb[rows[_straddle(block[:, j] - own, int(M[j, k]), largest=True)]] = True
    return amb


def assert_masks_equal_modulo_ties(ours, ref, y, P, filter_by, **kw):
    diff = ours != ref
    if not diff.any():
        return 0
    amb = ambiguous_rows(y, P, filter_by, **kw)
    outside = np.flatnonzero(diff & ~amb)
    assert outside.size == 0, (
        f"{filter_by}: {outside.size} rows differ outside cut-off tie groups, e.g. {outside[:10]}"
    )
    return int(diff.sum())
