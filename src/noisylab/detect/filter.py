"""Find label issues with confident learning (all five methods of the CL paper).

``find_label_issues`` has the name, arguments and results of
``cleanlab.filter.find_label_issues`` (2.9), so a cleanlab user switches by
changing one import.  Masks are identical to cleanlab's except where several
examples tie exactly at a selection cut-off: there noisylab takes the tied
examples with the lowest indices (reproducible on every platform), whereas
cleanlab's choice depends on numpy's unstable SIMD sort.

Deliberate differences from cleanlab (documented fixes):

* NaN/inf/negative probabilities are rejected and rows not summing to 1 are
  renormalised with a warning (beyond a small tolerance: rejected); cleanlab
  accepts NaN silently and it poisons a whole class threshold.
* ``num_to_remove_per_class`` means the same thing for every filter: the
  number of examples *whose given label is k* to remove.  cleanlab applies
  it along the suspected-true-class axis for ``prune_by_noise_rate`` (and so
  for ``both``), which removes the wrong classes, and produces NaN counts for
  a zero entry.  For ``prune_by_noise_rate`` noisylab splits ``r_k`` over the
  suspected true classes in proportion to the estimated noise counts of
  column k of the confident joint, then takes the largest-margin examples of
  each cell (at most ``r_k`` flagged in class k; fewer if the same example is
  chosen for two cells or the final argmax check un-flags it).
* All labels the same class, an empty input or a single column raise a clear
  error instead of cleanlab's asymmetric behaviour.
* No process pool: the work is a few vectorised passes, faster than cleanlab's
  pool, and warnings are never lost in worker processes.
"""
from __future__ import annotations

import warnings

import numpy as np

from .._validation import (
    NoisylabInputError,
    as_list_of_ints,
    check_fraction,
    check_labels_and_pred_probs_deferred,
    check_option,
)
from ._engine import first_pass, pass_rows, post_filter_keep, prune_by_noise_rate
from ._kernels import group_by_label, round_preserving_sum, select_smallest
from .count import _check_cj, _compute_confident_joint, _num_label_issues
from .rank import RANKING_METHODS, _order, _scores

__all__ = ["FILTER_METHODS", "find_label_issues", "find_predicted_neq_given"]

#: Names accepted by ``filter_by``.
FILTER_METHODS = (
    "prune_by_noise_rate",
    "prune_by_class",
    "both",
    "confident_learning",
    "predicted_neq_given",
    "low_normalized_margin",
    "low_self_confidence",
)
_PRUNING = ("prune_by_noise_rate", "prune_by_class", "both")


def _keep_at_least_n_per_class(cj_cal, n, frac_noise):
    """Per-cell prune counts M[j, k] (suspected true j, given k) from the calibrated joint.

    Each given class keeps at least ``n`` examples: the diagonal is raised to
    ``n`` and the increase is taken evenly from the column's other non-zero
    entries; ``frac_noise`` then scales the off-diagonal counts and returns
    the removed mass to the diagonal.  Counts are truncated to integers.
    """
    M = cj_cal.T.astype(np.float64)
    K = M.shape[0]
    d = np.arange(K)
    diag = M[d, d].copy()
    new_diag = np.maximum(diag, n)
    delta = new_diag - diag
    nonzero = np.maximum(np.count_nonzero(M, axis=0) - 1, 1)
    M = np.clip(M - delta / nonzero, 0, None)
    M[d, d] = new_diag
    if frac_noise != 1.0:
        scaled = M * frac_noise
        scaled[d, d] = new_diag
        # The removed mass summed as the reference sums it: per column of the differences, with
        # the columns contiguous in memory (its matrix is column-major here), so numpy adds them
        # with its unrolled pairwise sum.  Another order rounds differently (181.99999999999997
        # instead of 182) and the truncation below then prunes one example more or less.
        scaled[d, d] += np.asfortranarray(M - scaled).sum(axis=0)
        M = scaled
    return M.astype(np.int64)


def _split_counts(weights, total):
    """Integer counts proportional to ``weights`` summing to ``total``."""
    s = weights.sum()
    if total <= 0:
        return np.zeros_like(weights, dtype=np.int64)
    if s <= 0:
        weights = np.ones_like(weights, dtype=np.float64)
        s = weights.sum()
    return round_preserving_sum(weights * (total / s))


def _noise_rate_counts(M, num_to_remove, skip):
    """(K, K) prune counts [suspected j, given k] for PBNR; ``num_to_remove`` split over each column."""
    K = M.shape[0]
    C = M.copy() if num_to_remove is None else np.zeros((K, K), dtype=np.int64)
    if num_to_remove is not None:
        for k in range(K):
            w = M[:, k].astype(np.float64)
            w[k] = 0
            C[:, k] = _split_counts(w, int(num_to_remove[k]))
    np.fill_diagonal(C, 0)
    C[:, skip] = 0
    return C


def _prune_by_class(y, stats, order, bounds, M, num_to_remove, skip):
    n = y.shape[0]
    mask = np.zeros(n, dtype=bool)
    sc_sorted = stats.sc[order]
    for k in range(bounds.shape[0] - 1):
        a, b = bounds[k], bounds[k + 1]
        if b == a or skip[k]:
            continue
        m = int(num_to_remove[k]) if num_to_remove is not None else (b - a) - int(M[k, k])
        if m >= 1:
            mask[order[a:b][select_smallest(sc_sorted[a:b], m)]] = True
    return mask


def _find_label_issues(y, P, *, filter_by, frac_noise, num_to_remove, min_examples_per_class, confident_joint,
                       stats=None, grouping=None):
    """Boolean mask of label issues; inputs already validated.

    ``stats`` (from ``pass_rows``, with positive margins for the noise-rate
    filters) and ``grouping`` may be passed in when the caller already has them.
    """
    n, K = P.shape
    if stats is None:
        stats = pass_rows(y, P, want_positive_margins=filter_by in ("prune_by_noise_rate", "both"))
    if grouping is None and filter_by != "predicted_neq_given":
        grouping = group_by_label(y, K)
    if filter_by in ("low_self_confidence", "low_normalized_margin"):
        m = _num_label_issues(y, P, stats=stats, grouping=grouping)
        scores = stats.sc if filter_by == "low_self_confidence" else _scores(y, P, "normalized_margin")
        mask = np.zeros(n, dtype=bool)
        mask[select_smallest(scores, m)] = True
        return mask
    if filter_by == "predicted_neq_given":
        mask = stats.pred != y
    elif filter_by == "confident_learning":
        _, mask = _compute_confident_joint(y, P, calibrate=False, want_offdiag=True, stats=stats,
                                           grouping=grouping)
    else:
        order, bounds = grouping
        counts = np.diff(bounds)
        skip = (counts <= min_examples_per_class) & (counts > 0)
        if skip.any():
            warnings.warn(
                f"{int(skip.sum())} class(es) {np.flatnonzero(skip)[:10].tolist()} have <= min_examples_per_class="
                f"{min_examples_per_class} examples; no label issues are flagged in them.",
                UserWarning, stacklevel=3,
            )
        M = None  # per-cell prune counts; PBC with num_to_remove_per_class needs none
        if num_to_remove is None or filter_by != "prune_by_class":
            cj = confident_joint
            if cj is None:
                cj, _ = _compute_confident_joint(y, P, calibrate=True, stats=stats, grouping=grouping)
            M = _keep_at_least_n_per_class(cj, min_examples_per_class,
                                           1.0 if num_to_remove is not None else frac_noise)
        mask = None
        if filter_by in ("prune_by_class", "both"):
            mask = _prune_by_class(y, stats, order, bounds, M, num_to_remove, skip)
        if filter_by in ("prune_by_noise_rate", "both"):
            pbnr = prune_by_noise_rate(y, P, stats, _noise_rate_counts(M, num_to_remove, skip),
                                       lambda: grouping)
            mask = pbnr if mask is None else mask & pbnr
    # Final check: never report an example whose prediction is its given label.
    idx = np.flatnonzero(mask)
    mask[idx[~post_filter_keep(y, stats, idx)]] = False
    return mask


def find_label_issues(labels, pred_probs, return_indices_ranked_by=None, rank_by_kwargs=None, *,
                      filter_by="prune_by_noise_rate", frac_noise=1.0, num_to_remove_per_class=None,
                      min_examples_per_class=1, confident_joint=None, n_jobs=None, verbose=False):
    """Find the examples whose given label is likely wrong (confident learning).

    Parameters
    ----------
    labels : array-like of shape (n,)
        Given (noisy) labels, integers in 0..K-1.  At least two classes must
        be present; classes may be absent.
    pred_probs : array-like of shape (n, K)
        Out-of-sample (cross-validated) predicted probabilities; float16,
        float32 or float64 (kept, not upcast).
    return_indices_ranked_by : {None, "self_confidence", "normalized_margin", "confidence_weighted_entropy"}
        ``None`` returns a boolean mask; otherwise the indices of the flagged
        examples sorted by that label-quality score, most severe first.
    rank_by_kwargs : dict, optional
        ``{"adjust_pred_probs": bool}`` for the ranking score.
    filter_by : str, default="prune_by_noise_rate"
        * ``"prune_by_noise_rate"`` (CL paper: C+NR's PBNR) — for each given
          class k and suspected true class j, flag the ``C[k, j]`` examples
          labelled k with the largest margin ``p_j - p_k``;
        * ``"prune_by_class"`` (PBC) — flag the ``n_k - C[k, k]`` examples
          labelled k with the lowest ``p_k``;
        * ``"both"`` (C+NR) — intersection of the two;
        * ``"confident_learning"`` (C_ỹ,y*) — examples counted off the
          diagonal of the confident joint;
        * ``"predicted_neq_given"`` (C_confusion) — argmax prediction differs
          from the given label;
        * ``"low_self_confidence"`` / ``"low_normalized_margin"`` — the m
          lowest-scoring examples, m = :func:`num_label_issues`.
        ``C`` is the calibrated confident joint.
    frac_noise : float in (0, 1], default=1.0
        Flag only this fraction of the estimated noise (PBNR, PBC, both).
    num_to_remove_per_class : array-like of K ints, optional
        Remove exactly (at most, after the final argmax check) this many
        examples with given label k (PBNR, PBC, both); see the module notes.
    min_examples_per_class : int, default=1
        Never prune a class below this many examples; classes with at most
        this many examples are skipped (with a warning).
    confident_joint : array-like of shape (K, K), optional
        A precomputed (calibrated) confident joint for the pruning filters.
    n_jobs : ignored
        Accepted for drop-in compatibility with cleanlab; noisylab needs no
        process pool.
    verbose : bool, default=False
        Print the number of issues found.

    Returns
    -------
    label_issues : ndarray
        Boolean mask of shape (n,) (True = likely label error), or indices
        ranked most-severe first when ``return_indices_ranked_by`` is set.

    References
    ----------
    Northcutt, Jiang, Chuang. Confident Learning: Estimating Uncertainty in
    Dataset Labels. JAIR 70 (2021), Sec. 3.2 (Eqs. 1-3) and Sec. 3.3.
    """
    filter_by = check_option("filter_by", filter_by, FILTER_METHODS)
    if return_indices_ranked_by is not None:
        return_indices_ranked_by = check_option("return_indices_ranked_by", return_indices_ranked_by,
                                                RANKING_METHODS)
    y, P, scan = check_labels_and_pred_probs_deferred(labels, pred_probs)
    n, K = P.shape
    frac_noise = check_fraction("frac_noise", frac_noise, low=0.0, high=1.0, low_inclusive=False)
    if isinstance(min_examples_per_class, bool) or not isinstance(min_examples_per_class, (int, np.integer)) \
            or min_examples_per_class < 0:
        raise NoisylabInputError(f"min_examples_per_class must be an int >= 0; got {min_examples_per_class!r}.")
    if num_to_remove_per_class is not None:
        if filter_by not in _PRUNING:
            raise NoisylabInputError(
                f"num_to_remove_per_class works only with filter_by in {_PRUNING}; got filter_by={filter_by!r}."
            )
        num_to_remove_per_class = as_list_of_ints("num_to_remove_per_class", num_to_remove_per_class, K)
        if frac_noise != 1.0:
            warnings.warn("frac_noise is ignored when num_to_remove_per_class is given.", UserWarning,
                          stacklevel=2)
    elif frac_noise != 1.0 and filter_by not in _PRUNING:
        warnings.warn(f"frac_noise has no effect with filter_by={filter_by!r}.", UserWarning, stacklevel=2)
    if confident_joint is not None:
        if filter_by not in _PRUNING:
            warnings.warn(f"confident_joint is not used with filter_by={filter_by!r}.", UserWarning, stacklevel=2)
            confident_joint = None
        else:
            confident_joint = _check_cj(confident_joint, K)
    kwargs = dict(rank_by_kwargs or {})
    if set(kwargs) - {"adjust_pred_probs"}:
        raise NoisylabInputError(
            f"rank_by_kwargs accepts only 'adjust_pred_probs'; got {sorted(set(kwargs))}."
        )

    # the value checks of pred_probs run inside the first pass (one read of the data fewer)
    stats, P = first_pass(y, P, scan, want_positive_margins=filter_by in ("prune_by_noise_rate", "both"))
    mask = _find_label_issues(
        y, P, filter_by=filter_by, frac_noise=frac_noise, num_to_remove=num_to_remove_per_class,
        min_examples_per_class=int(min_examples_per_class), confident_joint=confident_joint, stats=stats,
    )
    if verbose:
        print(f"Number of label issues found: {int(mask.sum())} of {n} ({mask.mean():.2%}).")
    if return_indices_ranked_by is None:
        return mask
    return _order(mask, _scores(y, P, return_indices_ranked_by, **kwargs))


def find_predicted_neq_given(labels, pred_probs):
    """Baseline (CL paper's C_confusion): flag examples whose argmax prediction is not the given label."""
    return find_label_issues(labels, pred_probs, filter_by="predicted_neq_given")
