"""``ConfidentLearning``: every confident-learning estimate for one data set, in one object."""
from __future__ import annotations

import numpy as np

from .._validation import (
    NoisylabInputError,
    as_list_of_ints,
    check_fraction,
    check_labels_and_pred_probs_deferred,
    check_option,
)
from ._engine import first_pass
from ._kernels import group_by_label
from .count import _TINY, _compute_confident_joint, _estimate_latent, _thresholds
from .filter import FILTER_METHODS, _find_label_issues
from .rank import RANKING_METHODS, _order, _scores

__all__ = ["ConfidentLearning"]


class ConfidentLearning:
    """Confident learning on out-of-sample predicted probabilities (scikit-learn style).

    ``fit(labels, pred_probs)`` computes, once, the per-class thresholds, the
    calibrated confident joint, the estimated prior, noise matrix and inverse
    noise matrix, the label-quality score of every example, the label issues
    (a mask and their ranking by severity) and a suggested label for every
    example.  The functions of :mod:`noisylab.detect` give the same results
    one at a time.

    Parameters
    ----------
    filter_by : str, default="prune_by_noise_rate"
        One of :data:`noisylab.FILTER_METHODS` (see :func:`noisylab.find_label_issues`).
    rank_by : str, default="self_confidence"
        Label-quality score used for ranking (see :func:`noisylab.get_label_quality_scores`).
    frac_noise, num_to_remove_per_class, min_examples_per_class
        As in :func:`noisylab.find_label_issues`.

    Attributes
    ----------
    thresholds_ : ndarray (K,)
    confident_joint_ : ndarray (K, K)
        Calibrated confident joint, rows = given label, columns = true label.
    joint_ : ndarray (K, K)
        Estimated p(ỹ, y*) (the calibrated joint / n).
    py_ : ndarray (K,)
        Estimated prior of the true labels p(y*).
    noise_matrix_ : ndarray (K, K)
        Estimated ``P(ỹ = i | y* = j)``, columns sum to 1.
    inverse_noise_matrix_ : ndarray (K, K)
        Estimated ``P(y* = i | ỹ = j)``, columns sum to 1.
    noise_rate_ : float
        Estimated fraction of wrong labels, ``1 - trace(joint_)``.
    label_quality_ : ndarray (n,)
        Label-quality score, lower = more likely mislabelled.
    issue_mask_ : ndarray of bool (n,)
    ranked_issues_ : ndarray of int
        Indices of the issues, most severe first.
    suggested_labels_ : ndarray of int (n,)
        The model's most likely class for every example.  For an issue of the
        pruning filters and ``confident_learning`` it differs from the given
        label (the final check drops issues whose argmax is the given label);
        the ``low_*`` filters flag by score only, so there it can be equal.
    n_issues_ : int
    """

    def __init__(self, filter_by="prune_by_noise_rate", rank_by="self_confidence", frac_noise=1.0,
                 num_to_remove_per_class=None, min_examples_per_class=1):
        self.filter_by = filter_by
        self.rank_by = rank_by
        self.frac_noise = frac_noise
        self.num_to_remove_per_class = num_to_remove_per_class
        self.min_examples_per_class = min_examples_per_class

    def get_params(self, deep=True):
        return {k: getattr(self, k) for k in ("filter_by", "rank_by", "frac_noise", "num_to_remove_per_class",
                                               "min_examples_per_class")}

    def set_params(self, **params):
        valid = self.get_params()
        for k, v in params.items():
            if k not in valid:
                raise NoisylabInputError(f"Unknown parameter {k!r} for ConfidentLearning; valid: {sorted(valid)}.")
            setattr(self, k, v)
        return self

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"ConfidentLearning({args})"

    def fit(self, labels, pred_probs):
        """Compute every estimate for ``labels`` (n,) and ``pred_probs`` (n, K); return ``self``."""
        filter_by = check_option("filter_by", self.filter_by, FILTER_METHODS)
        rank_by = check_option("rank_by", self.rank_by, RANKING_METHODS)
        frac_noise = check_fraction("frac_noise", self.frac_noise, low=0.0, high=1.0, low_inclusive=False)
        mepc = self.min_examples_per_class
        if isinstance(mepc, bool) or not isinstance(mepc, (int, np.integer)) or mepc < 0:
            raise NoisylabInputError(f"min_examples_per_class must be an int >= 0; got {mepc!r}.")
        y, P, scan = check_labels_and_pred_probs_deferred(labels, pred_probs)
        n, K = P.shape
        ntr = self.num_to_remove_per_class
        if ntr is not None:
            if filter_by not in ("prune_by_noise_rate", "prune_by_class", "both"):
                raise NoisylabInputError(
                    f"num_to_remove_per_class works only with the pruning filters; got filter_by={filter_by!r}."
                )
            ntr = as_list_of_ints("num_to_remove_per_class", ntr, K)

        stats, P = first_pass(y, P, scan, want_positive_margins=filter_by in ("prune_by_noise_rate", "both"))
        grouping = group_by_label(y, K)
        self.thresholds_ = _thresholds(y, P, *grouping, sc=stats.sc)
        cj, _ = _compute_confident_joint(y, P, self.thresholds_, calibrate=True, stats=stats)
        self.confident_joint_ = cj
        self.joint_ = cj / np.clip(cj.sum(), _TINY, None)
        self.noise_rate_ = float(1.0 - np.trace(self.joint_))
        self.py_, self.noise_matrix_, self.inverse_noise_matrix_ = _estimate_latent(
            cj, np.bincount(y, minlength=K), "cnt", True)
        self.issue_mask_ = _find_label_issues(
            y, P, filter_by=filter_by, frac_noise=frac_noise, num_to_remove=ntr,
            min_examples_per_class=int(mepc), confident_joint=cj, stats=stats, grouping=grouping,
        )
        self.label_quality_ = stats.sc.copy() if rank_by == "self_confidence" else _scores(y, P, rank_by)
        self.ranked_issues_ = _order(self.issue_mask_, self.label_quality_)
        self.suggested_labels_ = stats.pred.astype(np.int64)
        self.n_issues_ = int(self.issue_mask_.sum())
        self.labels_ = np.array(y, dtype=np.int64)  # a copy: the caller's array may change after fit
        return self

    def severity_order(self):
        """All indices: issues first (most severe first), then the rest by increasing label quality."""
        self._check_fitted()
        rest = _order(~self.issue_mask_, self.label_quality_)
        return np.concatenate([self.ranked_issues_, rest])

    def issues_per_class(self):
        """(K,) number of issues among the examples given each label."""
        self._check_fitted()
        K = self.confident_joint_.shape[0]
        return np.bincount(self.labels_[self.issue_mask_], minlength=K)

    def _check_fitted(self):
        if not hasattr(self, "issue_mask_"):
            raise NoisylabInputError("This ConfidentLearning instance is not fitted yet; call fit() first.")
