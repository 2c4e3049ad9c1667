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

from ._validation import NoisylabInputError, check_labels, check_option

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
    pred_probs_ : ndarray (n, K)
        Out-of-fold probabilities of the training set.
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
        """Find the label issues of ``(X, y)`` (or use the given boolean mask) and fit on the rest."""
        from .cv import _select_rows, cross_val_pred_probs
        from .detect import FILTER_METHODS, find_label_issues

        filter_by = check_option("filter_by", self.filter_by, FILTER_METHODS)
        y = check_labels(y)
        X = np.asarray(X) if not hasattr(X, "shape") else X
        if X.shape[0] != y.shape[0]:
            raise NoisylabInputError(f"X and y must have the same length; got {X.shape[0]} and {y.shape[0]}.")
        self.classes_ = np.arange(int(y.max()) + 1)
        if label_issues is None:
            self.pred_probs_ = cross_val_pred_probs(self._base(), X, y, n_folds=self.cv_n_folds,
                                                    random_state=self.random_state, n_jobs=self.n_jobs)
            mask = find_label_issues(y, self.pred_probs_, filter_by=filter_by)
        else:
            mask = np.asarray(label_issues)
            if mask.dtype != bool or mask.shape != y.shape:
                raise NoisylabInputError(f"label_issues must be a boolean mask of shape {y.shape}; got "
                                         f"{mask.dtype} {mask.shape}.")
        self.label_issues_mask_ = mask
        keep = ~mask
        self.clf_ = clone(self._base()).fit(_select_rows(X, np.flatnonzero(keep)), y[keep])
        return self

    def _columns(self, proba):
        """Map the refitted model's columns (its classes_) to all K classes."""
        classes = np.asarray(getattr(self.clf_, "classes_", self.classes_))
        if classes.shape[0] == self.classes_.shape[0]:
            return proba
        out = np.zeros((proba.shape[0], self.classes_.shape[0]))
        out[:, classes.astype(np.int64)] = proba
        return out

    def predict_proba(self, X):
        return self._columns(self.clf_.predict_proba(X))

    def predict(self, X):
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
