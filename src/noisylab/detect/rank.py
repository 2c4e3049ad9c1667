"""Label-quality scores: one number per example, LOWER = label more likely wrong.

Same names and arguments as ``cleanlab.rank`` (2.9); results equal cleanlab's
to floating-point identity (checked by differential tests), in the dtype of
``pred_probs``.  Computed in row chunks without copying ``pred_probs``.
"""
from __future__ import annotations

import numpy as np

from .._validation import NoisylabInputError, check_labels_and_pred_probs, check_option
from ._kernels import iter_chunks, max_other, self_confidence

__all__ = [
    "RANKING_METHODS",
    "get_label_quality_scores",
    "get_self_confidence_for_each_label",
    "get_normalized_margin_for_each_label",
    "get_confidence_weighted_entropy_for_each_label",
    "order_label_issues",
]

RANKING_METHODS = ("self_confidence", "normalized_margin", "confidence_weighted_entropy")


def _self_confidence(y, P):
    return self_confidence(P, y)


def _normalized_margin(y, P):
    sc = self_confidence(P, y)
    return (sc - max_other(P, y) + 1) / 2


def _confidence_weighted_entropy(y, P):
    from scipy.special import xlogy  # lazy: keeps `import noisylab` light

    n, K = P.shape
    entropy = np.concatenate([-np.sum(xlogy(P[a:b], P[a:b]), axis=1) for a, b in iter_chunks(n)])
    entropy = entropy / np.log(K)
    sc = np.clip(self_confidence(P, y), 1e-6, None)
    s = entropy / sc
    return np.log(s + 1) / np.clip(s, 1e-6, None)


_SCORERS = {
    "self_confidence": _self_confidence,
    "normalized_margin": _normalized_margin,
    "confidence_weighted_entropy": _confidence_weighted_entropy,
}


def _adjust(y, P):
    from .count import _thresholds

    t = _thresholds(y, P)
    out = np.empty(P.shape, dtype=np.result_type(P.dtype, t.dtype))
    shift = t.max()
    for a, b in iter_chunks(P.shape[0]):
        block = P[a:b] - t
        block += shift
        out[a:b] = block / block.sum(axis=1, keepdims=True)
    return out


def _scores(y, P, method="self_confidence", adjust_pred_probs=False):
    if adjust_pred_probs:
        if method == "confidence_weighted_entropy":
            raise NoisylabInputError(
                "adjust_pred_probs=True is not available with method='confidence_weighted_entropy'."
            )
        P = _adjust(y, P)
    return _SCORERS[method](y, P)


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
        In [0, 1], in ``pred_probs``' dtype (float16 for entropy scores is
        promoted to float32).
    """
    method = check_option("method", method, RANKING_METHODS)
    y, P = check_labels_and_pred_probs(labels, pred_probs, require_two_classes=False)
    return _scores(y, P, method, adjust_pred_probs)


def get_self_confidence_for_each_label(labels, pred_probs):
    """``pred_probs[i, labels[i]]`` (n,)."""
    y, P = check_labels_and_pred_probs(labels, pred_probs, require_two_classes=False)
    return _self_confidence(y, P)


def get_normalized_margin_for_each_label(labels, pred_probs):
    """``(p(ỹ|x) - max_{j != ỹ} p(j|x) + 1) / 2`` (n,)."""
    y, P = check_labels_and_pred_probs(labels, pred_probs, require_two_classes=False)
    return _normalized_margin(y, P)


def get_confidence_weighted_entropy_for_each_label(labels, pred_probs):
    """Confidence-weighted entropy score (n,); see :func:`get_label_quality_scores`."""
    y, P = check_labels_and_pred_probs(labels, pred_probs, require_two_classes=False)
    return _confidence_weighted_entropy(y, P)


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
