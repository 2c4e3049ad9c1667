"""``CleanLearning``: any classifier, trained on the examples confident learning does not flag.

A scikit-learn estimator (``fit`` / ``predict`` / ``predict_proba`` /
``score``, ``get_params`` / ``set_params``, cloneable), so it drops into
pipelines and grid searches:

1. out-of-fold probabilities of ``clf`` (:func:`noisylab.cv.cross_val_pred_probs`);
2. label issues by confident learning (:func:`noisylab.find_label_issues`);
3. a clone of ``clf`` refitted on the examples not flagged.

Reference: Northcutt, Jiang, Chuang, "Confident Learning", JAIR 2021 (the
"CL: train on the pruned data" step); cleanlab's ``CleanLearning`` offers the
same workflow under the AGPL (nothing of it is used here).
"""
from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.validation import check_is_fitted

from ._validation import NoisylabInputError, check_int, check_option, int_seed

__all__ = ["CleanLearning"]

#: Int seeds drawn from ``None`` / a ``RandomState`` / a ``Generator`` lie in ``[0, _SEED_BOUND)``:
#: valid for every consumer (scikit-learn's splitters need ``< 2**32``, torch ``< 2**64``).
_SEED_BOUND = 2**31 - 1


def _as_int_seed(random_state) -> int:
    """``random_state`` as one int seed >= 0 (see :func:`noisylab._validation.int_seed`)."""
    return int_seed(random_state, _SEED_BOUND)


def _check_class_labels(y, owner: str) -> np.ndarray:
    """``y`` as a non-empty 1-D array of class labels (any sortable type), validated once.

    A column vector ``(n, 1)`` is ravelled with scikit-learn's ``DataConversionWarning``; a
    continuous (regression) or multi-output target is refused, as scikit-learn's
    ``check_classification_targets`` does.
    """
    from sklearn.exceptions import DataConversionWarning
    from sklearn.utils.multiclass import type_of_target

    if y is None:
        raise NoisylabInputError(f"{owner} requires y to be passed, but the target y is None; expected a 1-D "
                                 "array of class labels.")
    if isinstance(y, (str, bytes)):
        raise NoisylabInputError(f"y must be a 1-D array of class labels; got a single {type(y).__name__}.")
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        warnings.warn("A column-vector y was passed when a 1d array was expected. Please change the shape of y "
                      "to (n_samples,), for example using ravel().", DataConversionWarning, stacklevel=3)
        y = y.ravel()
    if y.ndim != 1 or y.shape[0] == 0:
        raise NoisylabInputError(f"y must be a non-empty 1-D array of class labels; got shape {y.shape}.")
    if y.dtype.kind in "fc" and not np.all(np.isfinite(y)):
        raise NoisylabInputError("y contains NaN or infinite values; expected class labels.")
    try:
        kind = type_of_target(y, input_name="y")
        if kind == "unknown" and y.dtype == object:  # e.g. ints of object dtype: judge their values
            try:
                kind = type_of_target(y.astype(np.float64), input_name="y")
            except (TypeError, ValueError):
                pass  # hashable, non-numeric objects: usable labels when they sort (checked by np.unique)
    except (TypeError, ValueError) as exc:
        raise NoisylabInputError(f"y must hold class labels; {exc}") from None
    if kind == "continuous":
        raise NoisylabInputError(f"Unknown label type: continuous. {owner} expects a classification target (class "
                                 "labels: ints, strings, whole-number floats ...); got floats that are not whole "
                                 "numbers, which look like a regression target.")
    if kind not in ("binary", "multiclass", "unknown"):
        raise NoisylabInputError(f"Unknown label type: {kind}. {owner} expects a classification target (one class "
                                 f"label per example).")
    return y


def _encode_labels(y):
    """``(classes, codes)``: the sorted distinct labels of a 1-D ``y`` and ``y`` as int64 codes 0..K-1."""
    try:
        classes, codes = np.unique(y, return_inverse=True)
    except TypeError:
        raise NoisylabInputError("y mixes label types that cannot be sorted (e.g. str and None); give one "
                                 "type.") from None
    return classes, codes.reshape(-1).astype(np.int64)


def _label_repr(label) -> str:
    """A label as the user wrote it (``'virginica'``, not ``np.str_('virginica')``)."""
    return repr(label.item() if isinstance(label, np.generic) else label)


def _check_feature_names(estimator, X, *, reset: bool) -> None:
    """Set (``reset=True``) or check ``feature_names_in_`` and ``n_features_in_`` of ``estimator``
    for a 2-D ``X``, with scikit-learn's own helper (its behaviour and messages): a DataFrame with
    other, missing or reordered column names is refused at predict time."""
    try:
        from sklearn.utils.validation import validate_data
    except ImportError:  # scikit-learn < 1.6
        def validate_data(est, X, *, reset, skip_check_array):
            est._check_feature_names(X, reset=reset)
            est._check_n_features(X, reset=reset)
    try:
        validate_data(estimator, X, reset=reset, skip_check_array=True)
    except ValueError as exc:
        raise NoisylabInputError(str(exc)) from None


def _drop_feature_attributes(estimator) -> None:
    """Forget ``n_features_in_`` / ``feature_names_in_`` of an earlier fit (refitted on non-tabular X)."""
    for attr in ("n_features_in_", "feature_names_in_"):
        if hasattr(estimator, attr):
            delattr(estimator, attr)


class CleanLearning(ClassifierMixin, BaseEstimator):
    """Fit ``clf`` on the examples whose labels confident learning trusts.

    Parameters
    ----------
    clf : scikit-learn-compatible classifier, default=LogisticRegression(max_iter=1000)
    filter_by : str, default="prune_by_noise_rate"
        Any filter of :func:`noisylab.find_label_issues`.
    cv_n_folds : int, default=5
        Folds of the stratified cross-validation; every class needs at least ``cv_n_folds``
        examples (else ``fit`` raises an error naming the class).
    random_state : None, int, numpy.random.RandomState or numpy.random.Generator, default=0
        Seeds the cross-validation split.  An int gives the same split at every fit; ``None``
        draws a fresh seed from OS entropy at each fit; a ``RandomState`` or ``Generator``
        gives one int seed drawn from it at each fit (so it advances).  numpy's global RNG is
        never used.
    n_jobs : int, default=1
        Folds fitted in parallel processes.

    Attributes
    ----------
    classes_ : ndarray (K,)
        The class labels seen in ``y``, sorted (any type: ints, strings ...).
    n_features_in_ : int
        Number of features (only when ``X`` is 2-D).
    feature_names_in_ : ndarray of str (n_features_in_,)
        Column names of ``X`` (only when ``X`` is a DataFrame with string column names); a
        DataFrame with other or reordered names is refused by ``predict`` / ``predict_proba``.
    pred_probs_ : ndarray (n, K)
        Out-of-fold probabilities of the training set, columns as ``classes_`` (absent when
        ``label_issues`` was given).
    label_issues_mask_ : ndarray of bool (n,)
        True = flagged and left out of the final fit.
    clf_ : the classifier fitted on the kept examples.
    """

    def __init__(self, clf=None, filter_by="prune_by_noise_rate", cv_n_folds=5, random_state=0, n_jobs=1):
        self.clf = clf
        self.filter_by = filter_by
        self.cv_n_folds = cv_n_folds
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _base(self):
        if self.clf is not None:
            return self.clf
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(max_iter=1000)

    def __sklearn_tags__(self):
        """Input tags (sparse, NaN) of ``clf``: CleanLearning takes whatever ``clf`` takes."""
        from sklearn.utils import get_tags

        tags = super().__sklearn_tags__()
        inner = get_tags(self._base())
        tags.input_tags.sparse = inner.input_tags.sparse
        tags.input_tags.allow_nan = inner.input_tags.allow_nan
        return tags

    def fit(self, X, y, label_issues=None):
        """Find the label issues of ``(X, y)`` (or use the given boolean mask) and fit on the rest.

        ``y``: any class labels (ints, strings, ...); ``classes_`` holds them sorted, and the
        columns of :meth:`predict_proba` follow ``classes_``, as in scikit-learn.  A column
        vector ``(n, 1)`` is ravelled (with a ``DataConversionWarning``).

        Raises
        ------
        NoisylabInputError
            For a continuous (regression) or multi-output ``y``, a single class, a class with
            fewer than ``cv_n_folds`` examples (named by its label), or ``X`` and ``y`` of
            different lengths.
        """
        import scipy.sparse as sp

        from .cv import _select_rows, cross_val_pred_probs
        from .detect import FILTER_METHODS, find_label_issues

        filter_by = check_option("filter_by", self.filter_by, FILTER_METHODS)
        y = _check_class_labels(y, "CleanLearning")
        classes, codes = _encode_labels(y)
        if classes.shape[0] < 2:
            raise NoisylabInputError(f"y holds a single class ({_label_repr(classes[0])}): with one class there is "
                                     "nothing to clean; CleanLearning needs at least two.")
        if sp.issparse(X) and X.format not in ("csr", "csc"):
            X = X.tocsr()  # COO and friends cannot select rows
        X = np.asarray(X) if not hasattr(X, "shape") else X
        if X.shape[0] != y.shape[0]:
            raise NoisylabInputError(f"X and y must have the same length; got {X.shape[0]} and {y.shape[0]}.")
        if len(X.shape) == 2:
            _check_feature_names(self, X, reset=True)
        else:
            _drop_feature_attributes(self)
        if label_issues is None:
            n_folds = check_int("cv_n_folds", self.cv_n_folds, min_value=2)
            seed = _as_int_seed(self.random_state)
            counts = np.bincount(codes, minlength=classes.shape[0])
            if counts.min() < n_folds:
                rare = int(np.argmin(counts))
                raise NoisylabInputError(
                    f"every class needs at least cv_n_folds={n_folds} examples for a stratified split; class "
                    f"{_label_repr(classes[rare])} has {int(counts[rare])}.  Lower cv_n_folds, or drop or merge "
                    "that class."
                )
            pred_probs = cross_val_pred_probs(self._base(), X, codes, n_folds=n_folds,
                                              random_state=seed, n_jobs=self.n_jobs)
            mask = find_label_issues(codes, pred_probs, filter_by=filter_by)
        else:
            pred_probs = None
            mask = np.asarray(label_issues)
            if mask.dtype != bool or mask.shape != y.shape:
                raise NoisylabInputError(f"label_issues must be a boolean mask of shape {y.shape}; got "
                                         f"{mask.dtype} {mask.shape}.")
        keep = ~mask
        if np.unique(codes[keep]).shape[0] < 2:
            raise NoisylabInputError(f"{int(mask.sum())} of {len(mask)} examples are flagged; fewer than two classes "
                                     "are left to fit on.")
        self.classes_ = classes
        if pred_probs is not None:
            self.pred_probs_ = pred_probs
        elif hasattr(self, "pred_probs_"):  # not the probabilities of an earlier fit
            del self.pred_probs_
        self.label_issues_mask_ = mask
        self.clf_ = clone(self._base()).fit(_select_rows(X, np.flatnonzero(keep)), codes[keep])
        return self

    def _columns(self, proba):
        """Map the refitted model's columns (its classes_, codes 0..K-1) to all K classes."""
        proba = np.asarray(proba, dtype=np.float64)
        codes = np.asarray(getattr(self.clf_, "classes_", np.arange(proba.shape[1])))
        if proba.shape[1] == self.classes_.shape[0] and np.array_equal(codes, np.arange(proba.shape[1])):
            return proba
        out = np.zeros((proba.shape[0], self.classes_.shape[0]))
        out[:, codes.astype(np.int64)] = proba  # a class absent from the kept rows gets 0
        return out

    def _check_X(self, X):
        """Refuse a 2-D ``X`` whose column names or count differ from the fit's; ``clf_`` checks the rest."""
        if len(getattr(X, "shape", ())) == 2:
            _check_feature_names(self, X, reset=False)

    def predict_proba(self, X):
        """Probabilities (n, K), columns in the order of ``classes_``."""
        check_is_fitted(self, "clf_")
        self._check_X(X)
        return self._columns(self.clf_.predict_proba(X))

    def predict(self, X):
        """Predicted labels (n,), values of ``classes_``."""
        check_is_fitted(self, "clf_")
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
