"""Label-quality scores: one number per example, LOWER = label more likely wrong.

Same names and arguments as ``cleanlab.rank`` (2.9); results equal cleanlab's
to floating-point identity (checked by differential tests), in the dtype of
``pred_probs`` (``confidence_weighted_entropy``: float64, as in cleanlab).  Computed in row chunks without copying ``pred_probs``.
"""
from __future__ import annotations

from functools import partial

import numpy as np

from .._chunks import as_chunked, concat
from .._validation import (
    NoisylabInputError,
    check_labels_and_pred_probs,
    check_labels_and_pred_probs_deferred,
    check_option,
)
from ._engine import _own_block, flat_index, run_checked, self_confidence_of, take_rows

__all__ = [
    "RANKING_METHODS",
    "get_label_quality_scores",
    "get_self_confidence_for_each_label",
    "get_normalized_margin_for_each_label",
    "get_confidence_weighted_entropy_for_each_label",
    "order_label_issues",
]

RANKING_METHODS = ("self_confidence", "normalized_margin", "confidence_weighted_entropy")


def _adjust_block(block, t):
    """``adjust_pred_probs``: subtract the thresholds (shifted by their max) and renormalise each row.

    Computed on a C-ordered block, so the float16 row sums (pairwise, as numpy sums a contiguous
    row) do not depend on the input's memory layout or on how its rows are split into blocks.
    cleanlab's do: for a Fortran-ordered float16 array it accumulates the row sums column by column
    in float16, which can differ in the last digit.
    """
    out = np.subtract(block, t, order="C")
    out += t.max()
    return out / out.sum(axis=1, keepdims=True)


def _sc_block(start, block, yy, *, t=None):
    if t is not None:
        block = _adjust_block(block, t)
    return take_rows(block, yy)


def _margin_block(start, block, yy, *, t=None):
    # a C-contiguous copy whose given-label entries become -inf (the adjusted block is a new array
    # already, C-ordered unless the input was not)
    block = np.ascontiguousarray(_adjust_block(block, t)) if t is not None else np.array(block, order="C")
    flat = block.reshape(-1)
    at = flat_index(block.shape[0], block.shape[1], yy)
    sc = flat[at]
    flat[at] = -np.inf
    return (sc - block.max(axis=1) + 1) / 2


def _entropy_block(start, block, yy):
    from scipy.special import xlogy  # lazy: keeps `import noisylab` light

    # xlogy's float32 loop is libm's logf, as in the reference; numpy's SIMD log differs in the last bit.
    return -np.sum(xlogy(block, block), axis=1), take_rows(block, yy)


def _combine_pairs(parts):
    return concat([p[0] for p in parts]), concat([p[1] for p in parts])


def _cwe_from_entropy(entropy, sc, K):
    entropy = entropy / np.log(K)
    sc = np.clip(sc, 1e-6, None)
    s = entropy / sc
    return np.log(s + 1) / np.clip(s, 1e-6, None)


def _scores(y, P, method="self_confidence", adjust_pred_probs=False, scan=None):
    """Label-quality scores of validated inputs; ``P`` is an array or a runner of :mod:`noisylab._chunks`.

    ``scan``: deferred value checks of ``P`` (:class:`noisylab._validation.ValueScan`), fused into
    the first pass over it.
    """
    src = as_chunked(P)
    K = src.shape[1]
    t = None
    if adjust_pred_probs:
        if method == "confidence_weighted_entropy":
            raise NoisylabInputError(
                "adjust_pred_probs=True is not available with method='confidence_weighted_entropy'."
            )
        from .count import _thresholds

        sc, P = run_checked(P, _own_block, partial(concat, dtype=src.dtype), y, scan=scan, desc="scores",
                            memory_bound=True)
        t = _thresholds(y, as_chunked(P), sc=sc)
        scan = None
    if method == "self_confidence":
        if t is None:
            return self_confidence_of(y, P, scan=scan)
        return run_checked(P, partial(_sc_block, t=t), concat, y, desc="scores")[0]
    if method == "normalized_margin":
        return run_checked(P, partial(_margin_block, t=t), concat, y, scan=scan, desc="scores")[0]
    (entropy, sc), _ = run_checked(P, _entropy_block, _combine_pairs, y, scan=scan, desc="scores")
    return _cwe_from_entropy(entropy, sc, K)


def get_label_quality_scores(labels, pred_probs, *, method="self_confidence", adjust_pred_probs=False):
    """Score how likely each given label is correct (lower = more likely a label error).

    Parameters
    ----------
    labels : array-like of shape (n,)
        Given labels, integers in 0..K-1.
    pred_probs : array-like of shape (n, K)
        Out-of-sample predicted probabilities.
    method : {"self_confidence", "normalized_margin", "confidence_weighted_entropy"}
        * ``self_confidence``: ``p(y=ỹ | x)``.  Best default for ranking.
        * ``normalized_margin``: ``(p(ỹ|x) - max_{j != ỹ} p(j|x) + 1) / 2``;
          also catches examples that are confidently another class.
        * ``confidence_weighted_entropy``: with ``H`` the entropy of ``p(x)``
          divided by ``log K`` and ``s = H / max(p(ỹ|x), 1e-6)``, the score
          is ``log(s + 1) / max(s, 1e-6)``; favours uncertain predictions.
    adjust_pred_probs : bool, default=False
        Subtract the per-class thresholds (shifted by their max) from
        ``pred_probs`` and renormalise rows before scoring, which removes the
        bias of classes the model predicts with high confidence.

    Returns
    -------
    scores : ndarray of shape (n,)
        In [0, 1], in ``pred_probs``' dtype, except ``confidence_weighted_entropy``:
        float64 for every input dtype (as in cleanlab).
    """
    method = check_option("method", method, RANKING_METHODS)
    if adjust_pred_probs and method == "confidence_weighted_entropy":
        raise NoisylabInputError("adjust_pred_probs=True is not available with method='confidence_weighted_entropy'.")
    # the value checks of pred_probs are fused into the first pass over it
    y, P, scan = check_labels_and_pred_probs_deferred(labels, pred_probs, require_two_classes=False)
    return _scores(y, P, method, adjust_pred_probs, scan=scan)


def get_self_confidence_for_each_label(labels, pred_probs):
    """``pred_probs[i, labels[i]]`` (n,)."""
    y, P = check_labels_and_pred_probs(labels, pred_probs, require_two_classes=False)
    return _scores(y, P, "self_confidence")


def get_normalized_margin_for_each_label(labels, pred_probs):
    """``(p(ỹ|x) - max_{j != ỹ} p(j|x) + 1) / 2`` (n,)."""
    y, P = check_labels_and_pred_probs(labels, pred_probs, require_two_classes=False)
    return _scores(y, P, "normalized_margin")


def get_confidence_weighted_entropy_for_each_label(labels, pred_probs):
    """Confidence-weighted entropy score (n,); see :func:`get_label_quality_scores`."""
    y, P = check_labels_and_pred_probs(labels, pred_probs, require_two_classes=False)
    return _scores(y, P, "confidence_weighted_entropy")


def _order(mask_or_idx, scores):
    idx = np.flatnonzero(mask_or_idx) if mask_or_idx.dtype == bool else mask_or_idx
    return idx[np.argsort(scores[idx], kind="stable")]


def order_label_issues(label_issues_mask, labels, pred_probs, *, rank_by="self_confidence", rank_by_kwargs=None):
    """Indices of the flagged examples, most severe (lowest score) first.

    Ties are broken by index (stable sort), so the order is reproducible on
    every platform (cleanlab's order of tied examples depends on numpy's SIMD
    sort kernels).

    Parameters
    ----------
    label_issues_mask : array-like of bool, shape (n,)
    labels, pred_probs : see :func:`get_label_quality_scores`
    rank_by : {"self_confidence", "normalized_margin", "confidence_weighted_entropy"}
    rank_by_kwargs : dict, optional
        Extra arguments of :func:`get_label_quality_scores` (``adjust_pred_probs``).
    """
    rank_by = check_option("rank_by", rank_by, RANKING_METHODS)
    y, P = check_labels_and_pred_probs(labels, pred_probs, require_two_classes=False)
    mask = np.asarray(label_issues_mask)
    if mask.dtype != bool or mask.shape != y.shape:
        raise NoisylabInputError(
            f"label_issues_mask must be a boolean array of shape {y.shape}; got {mask.dtype} {mask.shape}."
        )
    kwargs = dict(rank_by_kwargs or {})
    unknown = set(kwargs) - {"adjust_pred_probs"}
    if unknown:
        raise NoisylabInputError(f"rank_by_kwargs accepts only 'adjust_pred_probs'; got {sorted(unknown)}.")
    return _order(mask, _scores(y, P, rank_by, **kwargs))
