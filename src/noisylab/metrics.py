"""Metrics that score label-noise detection and noise estimation against ground truth.

Conventions used throughout this module
---------------------------------------
* ``is_noisy`` is the ground truth: a boolean mask of shape ``(n,)`` (0/1
  integers are accepted too) that is ``True`` where the given label differs
  from the true label.  For every detection metric the **positive class is
  "noisy"**.
* ``label_quality`` is a per-example score of shape ``(n,)`` where **higher
  means the given label is more likely correct** (the convention of
  :func:`noisylab.get_label_quality_scores`, ``NoiseDetector.label_quality``,
  :func:`noisylab.dynamics.dynamics_scores` and cleanlab's label-quality
  scores; ``NoiseDetector.score`` is the opposite, P(noisy)).  Ranking metrics therefore rank by ``-label_quality``.
* A *selection* (``is_issue``, ``selected``) is either a boolean mask of
  shape ``(n,)`` or a 1-D array of integer indices into ``0..n-1`` (unique).
  The two are told apart by dtype: boolean means mask, integer means
  indices.  An integer array is **never** read as a 0/1 mask; pass
  ``mask.astype(bool)`` for that.  An empty list is the empty selection.
* Ratios whose denominator is zero (precision of an empty selection, recall
  when there are no positives, F1 when both are empty) are returned as
  ``0.0`` without a warning, like ``sklearn.metrics.precision_score(...,
  zero_division=0.0)``.
* Noise (transition) matrices follow the cleanlab convention
  ``T[i, j] = P(noisy label = i | true label = j)``: **columns are the true
  class** and each column sums to 1.

Every public function validates its inputs once and raises
:class:`~noisylab._validation.NoisylabInputError` (a ``ValueError``) with a
message that states what was expected and what was received.
"""
from __future__ import annotations

import numbers

import numpy as np

from noisylab._validation import NoisylabInputError, check_fraction

__all__ = [
    "detection_precision_recall_f1",
    "detection_auroc",
    "detection_average_precision",
    "precision_at_k",
    "label_precision",
    "label_recall",
    "noise_matrix_error",
    "noise_rate_error",
    "noise_rate_from_matrix",
]

#: Absolute tolerance on column sums of a noise matrix and on the sum of ``py``.
_SUM_TOL = 1e-6


# --------------------------------------------------------------------------------------------
# validation helpers (private; they raise NoisylabInputError)
# --------------------------------------------------------------------------------------------
def _as_1d(values, name: str) -> np.ndarray:
    if isinstance(values, (str, bytes)):
        raise NoisylabInputError(f"{name} must be a 1-D array; got a string.")
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise NoisylabInputError(f"{name} must be 1-D with shape (n,); got shape {arr.shape}.")
    return arr


def _check_mask(mask, name: str = "is_noisy") -> np.ndarray:
    """Boolean (or 0/1 integer) ground-truth mask of shape (n,), n >= 1."""
    arr = _as_1d(mask, name)
    if arr.size == 0:
        raise NoisylabInputError(f"{name} is empty; expected a boolean mask with at least one example.")
    if arr.dtype.kind == "b":
        return arr
    if arr.dtype.kind in "iu":
        bad = (arr != 0) & (arr != 1)
        if bad.any():
            i = int(np.argmax(bad))
            raise NoisylabInputError(
                f"{name} must be a boolean mask (or 0/1 integers); got value {arr[i]} at index {i}."
            )
        return arr.astype(bool)
    hint = ""
    if arr.dtype.kind == "f":
        hint = " (did you pass scores where the mask belongs? use mask.astype(bool) for 0.0/1.0 floats)"
    raise NoisylabInputError(
        f"{name} must be a boolean mask (or 0/1 integers) of shape (n,); got dtype {arr.dtype}{hint}."
    )


def _check_selection(selection, n: int, name: str) -> np.ndarray:
    """Boolean mask (n,) or unique in-range integer indices -> boolean mask (n,)."""
    arr = _as_1d(selection, name)
    if arr.dtype.kind == "b":
        if arr.shape[0] != n:
            raise NoisylabInputError(
                f"{name} is a boolean mask of length {arr.shape[0]}, but is_noisy has {n} examples; "
                "a mask needs one entry per example (or pass integer indices)."
            )
        return arr
    if arr.size == 0:  # e.g. [] -> float64 empty array: the empty selection
        return np.zeros(n, dtype=bool)
    if arr.dtype.kind not in "iu":
        raise NoisylabInputError(
            f"{name} must be a boolean mask of shape ({n},) or an array of integer indices; "
            f"got dtype {arr.dtype}."
        )
    lo, hi = arr.min(), arr.max()
    if lo < 0 or hi >= n:
        bad = int(lo) if lo < 0 else int(hi)
        raise NoisylabInputError(
            f"{name} contains index {bad}, out of range for {n} examples (expected indices 0..{n - 1})."
        )
    mask = np.zeros(n, dtype=bool)
    mask[arr] = True
    n_unique = int(mask.sum())
    if n_unique != arr.shape[0]:
        counts = np.bincount(arr, minlength=n)
        dup = int(np.argmax(counts > 1))
        hint = ""
        if arr.shape[0] == n and np.all((arr == 0) | (arr == 1)):
            hint = " It looks like a 0/1 mask: integer arrays are read as indices, pass mask.astype(bool)."
        raise NoisylabInputError(
            f"{name} must contain unique indices; index {dup} appears {int(counts[dup])} times "
            f"({arr.shape[0]} indices, {n_unique} unique).{hint}"
        )
    return mask


def _check_scores(scores, n: int, name: str = "label_quality") -> np.ndarray:
    arr = _as_1d(scores, name)
    if arr.dtype.kind == "b":
        raise NoisylabInputError(
            f"{name} must be real-valued scores (higher = label more likely correct); got a boolean array "
            "(did you swap is_noisy and label_quality?)."
        )
    if arr.dtype.kind not in "iuf":
        raise NoisylabInputError(f"{name} must be real-valued scores of shape (n,); got dtype {arr.dtype}.")
    if arr.shape[0] != n:
        raise NoisylabInputError(
            f"is_noisy and {name} must have the same length; got {n} and {arr.shape[0]}."
        )
    arr = arr.astype(np.float64, copy=False)
    finite = np.isfinite(arr)
    if not finite.all():
        i = int(np.argmin(finite))
        raise NoisylabInputError(f"{name} must be finite; got {arr[i]} at index {i}.")
    return arr


def _check_both_classes(is_noisy: np.ndarray, metric: str) -> None:
    n_noisy = int(is_noisy.sum())
    if n_noisy == 0 or n_noisy == is_noisy.shape[0]:
        which = "no noisy" if n_noisy == 0 else "only noisy"
        raise NoisylabInputError(
            f"{metric} is undefined when is_noisy has a single class; got {which} examples "
            f"({n_noisy} noisy of {is_noisy.shape[0]}). Expected at least one noisy and one clean example."
        )


def _check_matrix(M, name: str) -> np.ndarray:
    if isinstance(M, (str, bytes)):
        raise NoisylabInputError(f"{name} must be a square (K, K) numeric matrix; got a string.")
    arr = np.asarray(M)
    if arr.dtype.kind not in "iuf":
        raise NoisylabInputError(f"{name} must be a square (K, K) numeric matrix; got dtype {arr.dtype}.")
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1] or arr.shape[0] == 0:
        raise NoisylabInputError(f"{name} must be a square (K, K) matrix with K >= 1; got shape {arr.shape}.")
    arr = arr.astype(np.float64, copy=False)
    finite = np.isfinite(arr)
    if not finite.all():
        r, c = np.argwhere(~finite)[0]
        raise NoisylabInputError(f"{name} must be finite; got {arr[r, c]} at row {r}, column {c}.")
    return arr


def _safe_ratio(num: int, den: int) -> float:
    return float(num) / float(den) if den > 0 else 0.0


# --------------------------------------------------------------------------------------------
# detection of noisy examples
# --------------------------------------------------------------------------------------------
def detection_precision_recall_f1(is_issue, is_noisy) -> dict:
    """Precision, recall and F1 of a set of flagged examples against the true noisy set.

    Parameters
    ----------
    is_issue : array-like of bool, shape (n,), or array-like of int, shape (m,)
        Examples flagged as label issues: a boolean mask over the ``n``
        examples, or unique integer indices in ``0..n-1`` (told apart by
        dtype; an integer array is always read as indices).
    is_noisy : array-like of bool, shape (n,)
        Ground truth, ``True`` where the given label is wrong (0/1 integers
        accepted).  Positive class = noisy.

    Returns
    -------
    dict
        ``precision`` (float) = TP / n_flagged, ``recall`` (float) =
        TP / n_noisy, ``f1`` (float) = 2 TP / (n_flagged + n_noisy) (the
        harmonic mean of precision and recall), all in [0, 1], **higher is
        better**; plus the integer counts ``n_flagged``, ``n_noisy`` and
        ``n_true_positive``.  A ratio with a zero denominator is ``0.0``
        (no warning), which matches ``sklearn.metrics`` with
        ``zero_division=0.0``.

    Raises
    ------
    NoisylabInputError
        If ``is_noisy`` is not a non-empty boolean/0-1 mask, ``is_issue`` is
        a mask of another length, or indices are out of range or repeated.

    Examples
    --------
    >>> r = detection_precision_recall_f1([0, 2], [True, True, False, False])
    >>> r["precision"], r["recall"], r["n_true_positive"]
    (0.5, 0.5, 1)
    """
    truth = _check_mask(is_noisy, "is_noisy")
    flagged = _check_selection(is_issue, truth.shape[0], "is_issue")
    tp = int(np.count_nonzero(flagged & truth))
    n_flagged = int(np.count_nonzero(flagged))
    n_noisy = int(np.count_nonzero(truth))
    return {
        "precision": _safe_ratio(tp, n_flagged),
        "recall": _safe_ratio(tp, n_noisy),
        "f1": _safe_ratio(2 * tp, n_flagged + n_noisy),
        "n_flagged": n_flagged,
        "n_noisy": n_noisy,
        "n_true_positive": tp,
    }


def detection_auroc(is_noisy, label_quality) -> float:
    """Area under the ROC curve for ranking noisy examples first.

    Parameters
    ----------
    is_noisy : array-like of bool, shape (n,)
        Ground truth, ``True`` where the given label is wrong (0/1 integers
        accepted).  Must contain both noisy and clean examples.
    label_quality : array-like of float, shape (n,)
        Per-example score, **higher = label more likely correct**.  It is
        negated before scoring so that the positive class (noisy) gets the
        high scores.

    Returns
    -------
    float
        ``sklearn.metrics.roc_auc_score(is_noisy, -label_quality)`` in
        [0, 1]; **higher is better**, 0.5 is a random ranking.

    Raises
    ------
    NoisylabInputError
        On a malformed mask, a length mismatch, non-finite scores, or when
        ``is_noisy`` holds a single class (AUROC is undefined).

    Examples
    --------
    >>> detection_auroc([True, False, False], [0.1, 0.9, 0.5])
    1.0
    """
    truth = _check_mask(is_noisy, "is_noisy")
    q = _check_scores(label_quality, truth.shape[0])
    _check_both_classes(truth, "AUROC")
    from sklearn.metrics import roc_auc_score  # lazy: keeps `import noisylab` light

    return float(roc_auc_score(truth, -q))


def detection_average_precision(is_noisy, label_quality) -> float:
    """Average precision (area under the precision-recall curve) for finding noisy examples.

    Parameters
    ----------
    is_noisy : array-like of bool, shape (n,)
        Ground truth, ``True`` where the given label is wrong (0/1 integers
        accepted).  Must contain both noisy and clean examples.
    label_quality : array-like of float, shape (n,)
        Per-example score, **higher = label more likely correct**; negated
        before scoring (positive class = noisy).

    Returns
    -------
    float
        ``sklearn.metrics.average_precision_score(is_noisy, -label_quality)``
        in [0, 1]; **higher is better**; a random ranking scores about the
        noise rate.

    Raises
    ------
    NoisylabInputError
        On a malformed mask, a length mismatch, non-finite scores, or when
        ``is_noisy`` holds a single class.

    Examples
    --------
    >>> detection_average_precision([True, False, True], [0.1, 0.9, 0.5])
    1.0
    """
    truth = _check_mask(is_noisy, "is_noisy")
    q = _check_scores(label_quality, truth.shape[0])
    _check_both_classes(truth, "Average precision")
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(truth, -q))


def precision_at_k(is_noisy, label_quality, k: int) -> float:
    """Fraction of noisy examples among the ``k`` examples with the lowest label quality.

    Parameters
    ----------
    is_noisy : array-like of bool, shape (n,)
        Ground truth, ``True`` where the given label is wrong (0/1 integers
        accepted).
    label_quality : array-like of float, shape (n,)
        Per-example score, **higher = label more likely correct**.
    k : int
        Number of lowest-quality examples to inspect, ``1 <= k <= n``.  Ties
        in ``label_quality`` are broken by example index (stable sort: the
        lower index is taken first).

    Returns
    -------
    float
        Precision in [0, 1]; **higher is better**.

    Raises
    ------
    NoisylabInputError
        On a malformed mask, a length mismatch, non-finite scores, or ``k``
        not an integer in ``1..n``.

    Examples
    --------
    >>> precision_at_k([True, False, True, False], [0.2, 0.1, 0.3, 0.9], k=2)
    0.5
    """
    truth = _check_mask(is_noisy, "is_noisy")
    q = _check_scores(label_quality, truth.shape[0])
    n = truth.shape[0]
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise NoisylabInputError(f"k must be an int in 1..{n}; got {k!r}.")
    if not 1 <= k <= n:
        raise NoisylabInputError(f"k must be in 1..{n} (the number of examples); got {k}.")
    k = int(k)
    # O(n) selection with the stable-sort tie rule: every score below the k-th smallest value, then the
    # lowest-index examples equal to it (the same set as np.argsort(q, kind="stable")[:k])
    kth = q[np.argpartition(q, k - 1)[k - 1]]
    below = q < kth
    n_below = int(np.count_nonzero(below))
    at_kth = np.flatnonzero(q == kth)[: k - n_below]
    return float(np.count_nonzero(truth & below) + np.count_nonzero(truth[at_kth])) / k


# --------------------------------------------------------------------------------------------
# INCV-style label precision / recall of a selected (kept-as-clean) set
# --------------------------------------------------------------------------------------------
def label_precision(selected, is_noisy) -> float:
    """Label precision LP = |selected ∩ clean| / |selected| (Chen et al., 2019, INCV).

    Parameters
    ----------
    selected : array-like of bool, shape (n,), or array-like of int, shape (m,)
        Examples **kept as clean** by a selector: a boolean mask or unique
        integer indices in ``0..n-1`` (told apart by dtype).
    is_noisy : array-like of bool, shape (n,)
        Ground truth, ``True`` where the given label is wrong; clean is
        ``~is_noisy``.

    Returns
    -------
    float
        LP in [0, 1], **higher is better**; ``0.0`` when nothing is selected.

    Raises
    ------
    NoisylabInputError
        As for :func:`detection_precision_recall_f1`.

    References
    ----------
    P. Chen, B. Liao, G. Chen, S. Zhang. "Understanding and Utilizing Deep
    Neural Networks Trained with Noisy Labels", ICML 2019 (Section 3).

    Examples
    --------
    >>> label_precision([0, 1, 2], [False, True, False, False])
    0.6666666666666666
    """
    truth = _check_mask(is_noisy, "is_noisy")
    sel = _check_selection(selected, truth.shape[0], "selected")
    return _safe_ratio(int(np.count_nonzero(sel & ~truth)), int(np.count_nonzero(sel)))


def label_recall(selected, is_noisy) -> float:
    """Label recall LR = |selected ∩ clean| / |clean| (Chen et al., 2019, INCV).

    Parameters
    ----------
    selected : array-like of bool, shape (n,), or array-like of int, shape (m,)
        Examples **kept as clean** by a selector: a boolean mask or unique
        integer indices in ``0..n-1`` (told apart by dtype).
    is_noisy : array-like of bool, shape (n,)
        Ground truth, ``True`` where the given label is wrong; clean is
        ``~is_noisy``.

    Returns
    -------
    float
        LR in [0, 1], **higher is better**; ``0.0`` when no example is clean.

    Raises
    ------
    NoisylabInputError
        As for :func:`detection_precision_recall_f1`.

    Examples
    --------
    >>> label_recall([0, 1, 2], [False, True, False, False])
    0.6666666666666666
    """
    truth = _check_mask(is_noisy, "is_noisy")
    sel = _check_selection(selected, truth.shape[0], "selected")
    return _safe_ratio(int(np.count_nonzero(sel & ~truth)), int(np.count_nonzero(~truth)))


# --------------------------------------------------------------------------------------------
# noise estimation
# --------------------------------------------------------------------------------------------
def noise_matrix_error(estimated, true) -> dict:
    """Entry-wise error of an estimated noise matrix.

    Parameters
    ----------
    estimated, true : array-like of float, shape (K, K)
        Noise matrices with ``T[i, j] = P(noisy label = i | true label = j)``
        (columns = true class).  Only shapes and finiteness are checked, so
        any two same-shape square matrices (e.g. joint distributions) can be
        compared.

    Returns
    -------
    dict
        Over all ``K * K`` entries of ``D = estimated - true``: ``mae`` =
        mean |D|, ``rmse`` = sqrt(mean D**2), ``max_abs`` = max |D| and
        ``frobenius`` = sqrt(sum D**2); all floats >= 0, **lower is better**.

    Raises
    ------
    NoisylabInputError
        If either input is not a finite square matrix or the shapes differ.

    Examples
    --------
    >>> err = noise_matrix_error([[0.8, 0.1], [0.2, 0.9]], [[0.9, 0.1], [0.1, 0.9]])
    >>> round(err["mae"], 6), round(err["max_abs"], 6)
    (0.05, 0.1)
    """
    E = _check_matrix(estimated, "estimated")
    T = _check_matrix(true, "true")
    if E.shape != T.shape:
        raise NoisylabInputError(
            f"estimated and true must have the same shape (K, K); got {E.shape} and {T.shape}."
        )
    D = E - T
    sq = float(np.sum(D * D))
    absd = np.abs(D)
    return {
        "mae": float(absd.mean()),
        "rmse": float(np.sqrt(sq / D.size)),
        "max_abs": float(absd.max()),
        "frobenius": float(np.sqrt(sq)),
    }


def noise_rate_error(estimated_rate, true_rate) -> float:
    """Absolute error ``|estimated_rate - true_rate|`` of an overall noise rate.

    Parameters
    ----------
    estimated_rate, true_rate : float
        Fractions of examples whose label differs from the true one, each in
        [0, 1].

    Returns
    -------
    float
        Absolute error in [0, 1]; **lower is better**.

    Raises
    ------
    NoisylabInputError
        If either rate is not a finite real number in [0, 1].

    Examples
    --------
    >>> round(noise_rate_error(0.25, 0.2), 6)
    0.05
    """
    est = check_fraction("estimated_rate", estimated_rate)
    tru = check_fraction("true_rate", true_rate)
    return abs(est - tru)


def noise_rate_from_matrix(noise_matrix, py) -> float:
    """Expected fraction of changed labels implied by a noise matrix and a true-class prior.

    ``rate = 1 - sum_k T[k, k] * py[k]``.

    Parameters
    ----------
    noise_matrix : array-like of float, shape (K, K)
        ``T[i, j] = P(noisy label = i | true label = j)``: entries in
        [0, 1], **columns = true class**, each column summing to 1 (within
        1e-6).
    py : array-like of float, shape (K,)
        Prior of the **true** labels, ``py[k] = P(true label = k)``:
        non-negative, summing to 1 (within 1e-6).

    Returns
    -------
    float
        The noise rate in [0, 1], comparable with the realised rate
        ``is_noisy.mean()`` and with :func:`noise_rate_error`.

    Raises
    ------
    NoisylabInputError
        If the matrix is not a finite column-stochastic square matrix, or
        ``py`` is not a probability vector of length K.

    Examples
    --------
    >>> round(noise_rate_from_matrix([[0.8, 0.1], [0.2, 0.9]], [0.5, 0.5]), 6)
    0.15
    """
    T = _check_matrix(noise_matrix, "noise_matrix")
    K = T.shape[0]
    if T.min() < 0 or T.max() > 1:
        r, c = np.argwhere((T < 0) | (T > 1))[0]
        raise NoisylabInputError(
            f"noise_matrix entries must be probabilities in [0, 1]; got {T[r, c]} at row {r}, column {c}."
        )
    col_sums = T.sum(axis=0)
    dev = np.abs(col_sums - 1.0)
    if dev.max() > _SUM_TOL:
        j = int(np.argmax(dev))
        raise NoisylabInputError(
            f"noise_matrix columns (true classes) must each sum to 1; column {j} sums to {col_sums[j]:.6g}. "
            "Expected T[i, j] = P(noisy = i | true = j); if your rows sum to 1, pass the transpose."
        )
    if isinstance(py, (str, bytes)):
        raise NoisylabInputError(f"py must be a probability vector of shape ({K},); got a string.")
    p = np.asarray(py)
    if p.dtype.kind not in "iuf" or p.ndim != 1 or p.shape[0] != K:
        raise NoisylabInputError(
            f"py must be a numeric probability vector of shape ({K},) (one entry per class of "
            f"noise_matrix); got shape {p.shape} and dtype {p.dtype}."
        )
    p = p.astype(np.float64, copy=False)
    if not np.all(np.isfinite(p)) or p.min() < 0:
        raise NoisylabInputError(f"py must contain finite non-negative probabilities; got {p.tolist()}.")
    if abs(p.sum() - 1.0) > _SUM_TOL:
        raise NoisylabInputError(f"py must sum to 1; got a sum of {p.sum():.6g}.")
    rate = 1.0 - float(np.dot(np.diag(T), p))
    return min(max(rate, 0.0), 1.0)
