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

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.validation import check_is_fitted

from ._validation import NoisylabInputError, check_option

__all__ = ["CleanLearning"]


class CleanLearning(ClassifierMixin, BaseEstimator):
    """Fit ``clf`` on the examples whose labels confident learning trusts.

    Parameters
    ----------
    clf : scikit-learn-compatible classifier, default=LogisticRegression(max_iter=1000)
    filter_by : str, default="prune_by_noise_rate"
        Any filter of :func:`noisylab.find_label_issues`.
    cv_n_folds : int, default=5
    random_state : int, default=0
        Seeds the cross-validation split.
    n_jobs : int, default=1
        Folds fitted in parallel processes.

    Attributes
    ----------
    classes_ : ndarray (K,)
        The class labels seen in ``y``, sorted (any type: ints, strings ...).
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

    def fit(self, X, y, label_issues=None):
        """Find the label issues of ``(X, y)`` (or use the given boolean mask) and fit on the rest.

        ``y``: any class labels (ints, strings, ...); ``classes_`` holds them sorted, and the
        columns of :meth:`predict_proba` follow ``classes_``, as in scikit-learn.
        """
        import scipy.sparse as sp

        from .cv import _select_rows, cross_val_pred_probs
        from .detect import FILTER_METHODS, find_label_issues

        filter_by = check_option("filter_by", self.filter_by, FILTER_METHODS)
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y.ravel()  # a column vector, as scikit-learn accepts it
        if y.ndim != 1 or y.shape[0] == 0:
            raise NoisylabInputError(f"y must be a non-empty 1-D array of class labels; got shape {y.shape}.")
        try:
            classes, codes = np.unique(y, return_inverse=True)
        except TypeError:
            raise NoisylabInputError("y mixes label types that cannot be sorted (e.g. str and None); give one "
                                     "type.") from None
        if classes.shape[0] < 2:
            raise NoisylabInputError(f"y holds a single class ({classes[0]!r}); CleanLearning needs at least two.")
        if sp.issparse(X) and X.format not in ("csr", "csc"):
            X = X.tocsr()  # COO and friends cannot select rows
        X = np.asarray(X) if not hasattr(X, "shape") else X
        if X.shape[0] != y.shape[0]:
            raise NoisylabInputError(f"X and y must have the same length; got {X.shape[0]} and {y.shape[0]}.")
        codes = codes.astype(np.int64)
        if label_issues is None:
            pred_probs = cross_val_pred_probs(self._base(), X, codes, n_folds=self.cv_n_folds,
                                              random_state=self.random_state, n_jobs=self.n_jobs)
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
        if len(X.shape) == 2:
            self.n_features_in_ = int(X.shape[1])
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

    def predict_proba(self, X):
        """Probabilities (n, K), columns in the order of ``classes_``."""
        check_is_fitted(self, "clf_")
        return self._columns(self.clf_.predict_proba(X))

    def predict(self, X):
        """Predicted labels (n,), values of ``classes_``."""
        check_is_fitted(self, "clf_")
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
