"""Confident-learning counts: thresholds, the confident joint and the noise matrices.

Implements the counting step of confident learning (Northcutt, Jiang and
Chuang, "Confident Learning: Estimating Uncertainty in Dataset Labels",
JAIR 2021) with the same function and argument names as ``cleanlab.count``
(2.9), so a cleanlab user switches by changing one import.  Results are
identical to cleanlab 2.9 (checked by differential tests), with these
deliberate differences:

* inputs are validated (NaN, infinities, negative probabilities, rows that do
  not sum to 1, labels out of range, string labels ...) with a clear message,
  including in :func:`compute_confident_joint`, which cleanlab leaves unchecked;
* the work is done in row chunks without copying ``pred_probs``.

Conventions: ``labels`` (n,) are the given (noisy) labels ỹ in 0..K-1;
``pred_probs`` (n, K) are out-of-sample predicted probabilities; the
confident joint ``C[i, j]`` counts examples with given label ``i`` whose
true label is confidently ``j``; the noise matrix ``P(ỹ = i | y* = j)`` has
columns that sum to 1; the inverse noise matrix ``P(y* = i | ỹ = j)`` also
has columns that sum to 1.
"""
from __future__ import annotations

import warnings

import numpy as np

from .._validation import (
    NoisylabInputError,
    check_int,
    check_labels,
    check_labels_and_pred_probs,
    check_option,
    check_random_state,
)
from ._engine import (
    pass_confident_joint,
    pass_rows,
    post_filter_keep,
    self_confidence_of,
)
from ._kernels import group_by_label, round_preserving_row_totals

__all__ = [
    "get_confident_thresholds",
    "compute_confident_joint",
    "calibrate_confident_joint",
    "estimate_joint",
    "estimate_latent",
    "estimate_py_and_noise_matrices_from_probabilities",
    "num_label_issues",
    "estimate_cv_predicted_probabilities",
    "estimate_noise_matrices",
]

#: Threshold of a class that never appears in the labels: no probability reaches it.
ABSENT_CLASS_THRESHOLD = 2
#: Lower bound of the per-class thresholds.
THRESHOLD_LOWER_BOUND = 2e-6
#: Slack of the ``p >= t`` comparison.
THRESHOLD_SLACK = 1e-6
_TINY = 1e-100
#: Lower bound of the estimated prior p(y*).
PY_LOWER_BOUND = 1e-6
#: Noise rates are clipped to [0, MAX_NOISE_RATE].
MAX_NOISE_RATE = 0.9999


# --------------------------------------------------------------------------
# unchecked kernels (inputs already validated)
# --------------------------------------------------------------------------
def _thresholds(y, P, order=None, bounds=None, sc=None):
    K = P.shape[1]
    if order is None:
        order, bounds = group_by_label(y, K)
    if sc is None:
        sc = self_confidence_of(y, P)
    sc_sorted = sc[order]
    values = []
    for k in range(K):
        a, b = bounds[k], bounds[k + 1]
        # np.mean of the contiguous per-class slice: the same pairwise
        # summation (and float16 -> float32 accumulation) as the reference.
        values.append(np.mean(sc_sorted[a:b]) if b > a else ABSENT_CLASS_THRESHOLD)
    # A list of numpy scalars keeps P's dtype; an absent class (Python int 2)
    # promotes the thresholds to float64, as in the reference implementation.
    t = np.asarray(values)
    return np.clip(t, THRESHOLD_LOWER_BOUND, None)


def _clip_diagonal(cj):
    d = np.diag_indices_from(cj)
    cj[d] = np.maximum(cj[d], 1)
    return cj


def _calibrate(cj, label_counts):
    """Rescale each row of ``cj`` to the given-label count, then round preserving row totals."""
    row_sums = np.clip(cj.sum(axis=1), _TINY, None)
    cal = (cj.T / row_sums * label_counts).T
    cal = cal / np.clip(np.sum(cal), _TINY, None) * np.sum(label_counts)
    return round_preserving_row_totals(cal)


def _compute_confident_joint(y, P, thresholds=None, calibrate=True, want_offdiag=False, stats=None,
                             grouping=None):
    """(confident joint, off-diagonal row mask or None); ``stats`` from :func:`pass_rows` if already computed."""
    K = P.shape[1]
    if stats is None:
        stats = pass_rows(y, P)
    if thresholds is None:
        order, bounds = grouping if grouping is not None else group_by_label(y, K)
        thresholds = _thresholds(y, P, order, bounds, sc=stats.sc)
    # Counted as confusion[guess, given] and returned transposed (a Fortran-ordered
    # view): the memory layout decides how numpy's default argsort breaks ties
    # in the calibration rounding, and this layout is the reference's.
    cj, offdiag = pass_confident_joint(y, P, thresholds, stats.pred, want_offdiag=want_offdiag)
    cj = _clip_diagonal(cj)
    if calibrate:
        cj = _calibrate(cj, np.bincount(y, minlength=K))
    return cj, offdiag


def _clip_noise_rates(M):
    """Clip off-diagonal rates to [0, MAX_NOISE_RATE], keep the diagonal, divide each column by its sum.

    Columns whose sum is 0 (a class that never occurs) are left as they are.  This is the
    reference's rule (cleanlab's ``clip_noise_rates``, observed as a black box): a column that
    does not sum to 1 is rescaled as a whole, diagonal included, so every entry ends in [0, 1]
    whenever the diagonal is non-negative.
    """
    M = np.asarray(M, dtype=np.float64)
    diag = np.diag(M).copy()
    C = np.clip(M, 0.0, MAX_NOISE_RATE)
    np.fill_diagonal(C, diag)
    total = C.sum(axis=0)
    return np.divide(C, total, out=C.copy(), where=total != 0)


def _clip_py(py):
    py = np.clip(py, PY_LOWER_BOUND, 1.0)
    return py / py.sum()


def _compute_py(ps, noise_matrix, inverse_noise_matrix, py_method, true_class_counts):
    if py_method == "cnt":
        # Bayes: p(y*=k) = p(y*=k | ỹ=k) p(ỹ=k) / p(ỹ=k | y*=k)
        py = np.diag(inverse_noise_matrix) / np.clip(np.diag(noise_matrix), _TINY, None) * ps
    elif py_method == "eqn":
        try:
            py = np.linalg.solve(noise_matrix, ps)
        except np.linalg.LinAlgError:
            raise NoisylabInputError(
                "py_method='eqn' needs an invertible noise matrix, and this one is singular (a class "
                "absent from the labels makes it so); use py_method='cnt'."
            ) from None
    elif py_method == "marginal":
        py = true_class_counts / float(np.sum(true_class_counts))
    else:  # marginal_ps
        py = inverse_noise_matrix @ ps
    return _clip_py(py)


def _estimate_latent(cj, label_counts, py_method="cnt", converge_latent_estimates=False):
    cj = np.asarray(cj, dtype=np.float64)
    ps = label_counts / float(np.sum(label_counts))
    given_counts = cj.sum(axis=1)
    true_counts = cj.sum(axis=0)
    noise_matrix = cj / np.clip(true_counts, _TINY, None)
    inverse_noise_matrix = cj.T / np.clip(given_counts, _TINY, None)
    py = _compute_py(ps, noise_matrix, inverse_noise_matrix, py_method, true_counts)
    noise_matrix = _clip_noise_rates(noise_matrix)
    inverse_noise_matrix = _clip_noise_rates(inverse_noise_matrix)
    if converge_latent_estimates:
        py, noise_matrix, inverse_noise_matrix = _converge(ps, py, noise_matrix, inverse_noise_matrix)
        noise_matrix = _clip_noise_rates(noise_matrix)
        inverse_noise_matrix = _clip_noise_rates(inverse_noise_matrix)
    return py, noise_matrix, inverse_noise_matrix


def _converge(ps, py, noise_matrix, inverse_noise_matrix, inner=5, outer=3):
    """Make p(y*), P(ỹ|y*) and P(y*|ỹ) mutually consistent by alternating Bayes updates.

    ``outer`` times: ``inner`` times recompute the inverse matrix from
    (noise matrix, p(y*), p(ỹ)) and p(y*) by the ``"cnt"`` rule; then the
    noise matrix from (inverse matrix, p(ỹ), p(y*)).  Each recomputed matrix
    is clipped by :func:`_clip_noise_rates` (unclipped, Bayes' rule on
    inconsistent estimates gives "rates" below 0 and above 1).  This fixed schedule
    reproduces the reference estimates when every class appears in the
    labels.  For a class whose noise-matrix diagonal is 0 (a class absent from
    the labels, or one with no confidently counted example of its own)
    noisylab keeps p(y*) at its clipping floor (1e-6); the reference lets it
    drift up to about 1e-5, so p(y*) and the other classes' shares differ from
    the reference by up to about 1e-5 there (the matrices by less).
    """
    for _ in range(outer):
        for _ in range(inner):
            # P(y*=j | ỹ=i) = P(ỹ=i | y*=j) p(y*=j) / p(ỹ=i), columns = ỹ
            inverse_noise_matrix = _clip_noise_rates((noise_matrix * py).T / np.clip(ps, _TINY, None))
            py = _compute_py(ps, noise_matrix, inverse_noise_matrix, "cnt", None)
        # P(ỹ=i | y*=j) = P(y*=j | ỹ=i) p(ỹ=i) / p(y*=j)
        noise_matrix = _clip_noise_rates((inverse_noise_matrix * ps).T / np.clip(py, _TINY, None))
    return py, noise_matrix, inverse_noise_matrix


def _check_cj(confident_joint, K=None):
    cj = np.asarray(confident_joint)
    if cj.ndim != 2 or cj.shape[0] != cj.shape[1]:
        raise NoisylabInputError(f"confident_joint must be a square (K, K) matrix; got shape {cj.shape}.")
    if K is not None and cj.shape[0] != K:
        raise NoisylabInputError(
            f"confident_joint must be ({K}, {K}) to match pred_probs' {K} columns; got {cj.shape}."
        )
    if cj.dtype.kind not in "iuf" or not np.all(np.isfinite(cj)) or np.any(cj < 0):
        raise NoisylabInputError("confident_joint must hold finite non-negative counts.")
    return cj


# --------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------
def get_confident_thresholds(labels, pred_probs):
    """Per-class confidence thresholds t_k: the mean of ``pred_probs[:, k]`` over examples labelled k.

    Parameters
    ----------
    labels : array-like of shape (n,)
        Given (possibly noisy) labels, integers in 0..K-1.
    pred_probs : array-like of shape (n, K)
        Out-of-sample predicted probabilities.

    Returns
    -------
    thresholds : ndarray of shape (K,)
        In ``pred_probs``' dtype when every class appears in ``labels``,
        float64 otherwise; a class absent from ``labels`` gets threshold 2
        (nothing can be confidently counted in it).  Clipped below at 2e-6.
    """
    y, P = check_labels_and_pred_probs(labels, pred_probs)
    return _thresholds(y, P)


def compute_confident_joint(labels, pred_probs, *, thresholds=None, calibrate=True,
                            return_indices_of_off_diagonals=False):
    """The confident joint C[ỹ, y*] (K, K): counts of confidently-counted examples.

    An example x with given label ỹ is counted in cell (ỹ, y*) where y* is
    the only class with ``p(x)_j >= t_j - 1e-6``, or, if several classes pass
    their threshold, the argmax of ``p(x)`` over all classes (as the
    reference implementation).  Examples above no threshold are not counted.
    The diagonal is clipped to at least 1.  With ``calibrate=True`` the rows
    are rescaled to the given-label counts and rounded preserving row totals
    (CL paper, Eq. 2), so that ``C.sum(axis=1)`` equals the label counts.

    Parameters
    ----------
    labels : array-like of shape (n,)
    pred_probs : array-like of shape (n, K)
    thresholds : array-like of shape (K,), optional
        Defaults to :func:`get_confident_thresholds`.
    calibrate : bool, default=True
    return_indices_of_off_diagonals : bool, default=False
        Also return the indices (increasing) of the counted examples with
        y* != ỹ.

    Returns
    -------
    confident_joint : ndarray of shape (K, K), int64
        Rows are given labels, columns are (confident) true labels.
    indices_off_diagonal : ndarray of int, optional
    """
    y, P = check_labels_and_pred_probs(labels, pred_probs)
    if thresholds is not None:
        t = np.asarray(thresholds)
        if t.shape != (P.shape[1],) or t.dtype.kind not in "iuf" or not np.all(np.isfinite(t)):
            got = f"shape {t.shape}" if t.shape != (P.shape[1],) else (
                f"dtype {t.dtype}" if t.dtype.kind not in "iuf" else "non-finite values")
            raise NoisylabInputError(
                f"thresholds must be {P.shape[1]} finite numbers (one per column of pred_probs); got {got}."
            )
        thresholds = t
    cj, offdiag = _compute_confident_joint(y, P, thresholds, calibrate, return_indices_of_off_diagonals)
    if return_indices_of_off_diagonals:
        return cj, np.flatnonzero(offdiag)
    return cj


def calibrate_confident_joint(confident_joint, labels):
    """Rescale the rows of a confident joint to the given-label counts (CL paper, Eq. 2).

    Returns an int64 (K, K) matrix whose row k sums to the number of examples
    labelled k (a class absent from ``labels`` gets an all-zero row).
    """
    cj = _check_cj(confident_joint)
    y = check_labels(labels, n_classes=cj.shape[0], n_classes_from=f"confident_joint is {cj.shape[0]}x{cj.shape[0]}")
    return _calibrate(cj, np.bincount(y, minlength=cj.shape[0]))


def estimate_joint(labels, pred_probs, *, confident_joint=None):
    """Estimate the joint distribution p(ỹ, y*) (K, K), summing to 1.

    It is the calibrated confident joint divided by n.  Rows are given labels.
    """
    y, P = check_labels_and_pred_probs(labels, pred_probs)
    K = P.shape[1]
    if confident_joint is None:
        cal, _ = _compute_confident_joint(y, P, calibrate=True)
    else:
        cal = _calibrate(_check_cj(confident_joint, K), np.bincount(y, minlength=K))
    return cal / np.clip(np.sum(cal), _TINY, None)


_PY_METHODS = ("cnt", "eqn", "marginal", "marginal_ps")


def estimate_latent(confident_joint, labels, py_method="cnt", converge_latent_estimates=False):
    """Estimate p(y*), the noise matrix P(ỹ|y*) and the inverse noise matrix P(y*|ỹ).

    Parameters
    ----------
    confident_joint : array-like of shape (K, K)
    labels : array-like of shape (n,)
    py_method : {"cnt", "eqn", "marginal", "marginal_ps"}, default="cnt"
        How p(y*) is estimated: ``"cnt"`` by Bayes' rule on the matrices'
        diagonals, ``"eqn"`` by solving ``noise_matrix @ py = p(ỹ)``,
        ``"marginal"`` from the column sums of the confident joint,
        ``"marginal_ps"`` as ``inverse_noise_matrix @ p(ỹ)``.  Clipped to
        [1e-6, 1] and renormalised.
    converge_latent_estimates : bool, default=False
        Iterate the identities between the three estimates to a fixed point.

    Returns
    -------
    py : ndarray of shape (K,)
    noise_matrix : ndarray of shape (K, K)
        ``noise_matrix[i, j] = P(ỹ=i | y*=j)``; columns sum to 1.
    inverse_noise_matrix : ndarray of shape (K, K)
        ``inverse_noise_matrix[i, j] = P(y*=i | ỹ=j)``; columns sum to 1.
    """
    cj = _check_cj(confident_joint)
    y = check_labels(labels, n_classes=cj.shape[0], n_classes_from=f"confident_joint is {cj.shape[0]}x{cj.shape[0]}")
    py_method = check_option("py_method", py_method, _PY_METHODS)
    return _estimate_latent(cj, np.bincount(y, minlength=cj.shape[0]), py_method, converge_latent_estimates)


def estimate_py_and_noise_matrices_from_probabilities(labels, pred_probs, *, thresholds=None,
                                                      converge_latent_estimates=True,
                                                      py_method="cnt", calibrate=True):
    """Confident joint and latent estimates in one call.

    Returns
    -------
    py, noise_matrix, inverse_noise_matrix, confident_joint
        See :func:`estimate_latent` and :func:`compute_confident_joint`.
    """
    cj = compute_confident_joint(labels, pred_probs, thresholds=thresholds, calibrate=calibrate)
    py, nm, inv = estimate_latent(cj, labels, py_method=py_method,
                                  converge_latent_estimates=converge_latent_estimates)
    return py, nm, inv, cj


_NUM_ISSUES_METHODS = ("off_diagonal", "off_diagonal_calibrated", "off_diagonal_custom")


def num_label_issues(labels, pred_probs, *, confident_joint=None, estimation_method="off_diagonal"):
    """Estimated number of label issues.

    ``"off_diagonal"`` (default): the number of examples counted off the
    diagonal of the confident joint whose argmax prediction is not their given
    label (equals ``find_label_issues(..., filter_by="confident_learning").sum()``).
    ``"off_diagonal_calibrated"``: ``rint(n * (1 - trace(joint)))`` with the
    calibrated joint.  ``"off_diagonal_custom"``: the same with a user-given
    ``confident_joint``.
    """
    estimation_method = check_option("estimation_method", estimation_method, _NUM_ISSUES_METHODS)
    y, P = check_labels_and_pred_probs(labels, pred_probs)
    if estimation_method == "off_diagonal_custom" and confident_joint is None:
        raise NoisylabInputError("estimation_method='off_diagonal_custom' needs a confident_joint.")
    if confident_joint is not None:
        confident_joint = _check_cj(confident_joint, P.shape[1])
        if estimation_method != "off_diagonal_custom":
            warnings.warn(
                f"confident_joint is only used with estimation_method='off_diagonal_custom'; it is ignored "
                f"with estimation_method={estimation_method!r}.", UserWarning, stacklevel=2)
    return _num_label_issues(y, P, confident_joint, estimation_method)


def _num_label_issues(y, P, confident_joint=None, estimation_method="off_diagonal", stats=None, grouping=None):
    n, K = P.shape
    if estimation_method == "off_diagonal":
        stats = stats if stats is not None else pass_rows(y, P)
        _, offdiag = _compute_confident_joint(y, P, calibrate=False, want_offdiag=True, stats=stats,
                                              grouping=grouping)
        idx = np.flatnonzero(offdiag)
        return int(post_filter_keep(y, stats, idx).sum())
    if estimation_method == "off_diagonal_calibrated":
        cal, _ = _compute_confident_joint(y, P, calibrate=True, stats=stats, grouping=grouping)
    else:
        cal = _calibrate(_check_cj(confident_joint, K), np.bincount(y, minlength=K))
    joint = cal / np.clip(np.sum(cal), _TINY, None)
    return int(np.rint(n * (1.0 - np.trace(joint))))


def estimate_cv_predicted_probabilities(X, labels, clf=None, *, cv_n_folds=5, seed=None, n_jobs=None):
    """Out-of-fold predicted probabilities (n, K) by stratified K-fold cross-validation.

    Each fold trains a :func:`sklearn.base.clone` of ``clf`` (default:
    ``LogisticRegression``) on the other folds and predicts the held-out
    fold, so no example is scored by a model that saw it.

    Parameters
    ----------
    X : array-like of shape (n, ...)
    labels : array-like of shape (n,)
    clf : scikit-learn classifier with ``predict_proba``, optional
    cv_n_folds : int, default=5
    seed : int or numpy.random.Generator, optional
        Seeds the fold split (``StratifiedKFold(shuffle=True)``); the
        classifier's own ``random_state`` is left as given.
    n_jobs : int, optional
        Folds fitted in parallel (joblib).
    """
    from sklearn.base import clone
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    y = check_labels(labels)
    K = int(y.max()) + 1
    X = np.asarray(X) if not hasattr(X, "shape") else X
    if X.shape[0] != y.shape[0]:
        raise NoisylabInputError(f"X and labels must have the same length; got {X.shape[0]} and {y.shape[0]}.")
    counts = np.bincount(y, minlength=K)
    cv_n_folds = check_int("cv_n_folds", cv_n_folds, min_value=2)
    if np.count_nonzero(counts) < 2:
        raise NoisylabInputError(f"labels hold a single class ({int(y[0])}); cross-validated probabilities need at "
                                 "least two classes.")
    if counts[counts > 0].min() < cv_n_folds:
        raise NoisylabInputError(
            f"every class needs at least cv_n_folds={cv_n_folds} examples for stratified cross-validation; "
            f"the smallest class has {counts[counts > 0].min()}."
        )
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0:
        rs = int(seed)
    else:  # None or a Generator: draw the fold seed from it
        rs = int(check_random_state(seed).integers(2**31 - 1))
    clf = LogisticRegression(max_iter=1000) if clf is None else clf
    if not (hasattr(clf, "fit") and hasattr(clf, "predict_proba")):
        raise NoisylabInputError(
            f"clf must be a scikit-learn classifier with fit and predict_proba; got {type(clf).__name__}."
        )
    cv = StratifiedKFold(n_splits=cv_n_folds, shuffle=True, random_state=rs)
    proba = cross_val_predict(clone(clf), X, y, cv=cv, method="predict_proba", n_jobs=n_jobs)
    present = np.flatnonzero(counts > 0)
    if proba.shape[1] != K:
        full = np.zeros((y.shape[0], K))
        full[:, present] = proba
        proba = full
    return proba


def estimate_noise_matrices(X, labels, clf=None, *, cv_n_folds=5, seed=None,
                            converge_latent_estimates=True):
    """Cross-validate ``clf`` and estimate (noise_matrix, inverse_noise_matrix)."""
    P = estimate_cv_predicted_probabilities(X, labels, clf, cv_n_folds=cv_n_folds, seed=seed)
    _, nm, inv, _ = estimate_py_and_noise_matrices_from_probabilities(
        labels, P, converge_latent_estimates=converge_latent_estimates)
    return nm, inv
