"""Finding label errors.

Confident learning (:mod:`noisylab.detect.filter`, :mod:`~noisylab.detect.count`,
:mod:`~noisylab.detect.rank`) with cleanlab-compatible names, plus the
:class:`ConfidentLearning` estimator that bundles the results.
"""
from ._estimator import ConfidentLearning
from .count import (
    calibrate_confident_joint,
    compute_confident_joint,
    estimate_cv_predicted_probabilities,
    estimate_joint,
    estimate_latent,
    estimate_noise_matrices,
    estimate_py_and_noise_matrices_from_probabilities,
    get_confident_thresholds,
    num_label_issues,
)
from .filter import FILTER_METHODS, find_label_issues, find_predicted_neq_given
from .rank import (
    RANKING_METHODS,
    get_confidence_weighted_entropy_for_each_label,
    get_label_quality_scores,
    get_normalized_margin_for_each_label,
    get_self_confidence_for_each_label,
    order_label_issues,
)

__all__ = [
    "ConfidentLearning",
    "FILTER_METHODS",
    "RANKING_METHODS",
    "calibrate_confident_joint",
    "compute_confident_joint",
    "estimate_cv_predicted_probabilities",
    "estimate_joint",
    "estimate_latent",
    "estimate_noise_matrices",
    "estimate_py_and_noise_matrices_from_probabilities",
    "find_label_issues",
    "find_predicted_neq_given",
    "get_confidence_weighted_entropy_for_each_label",
    "get_confident_thresholds",
    "get_label_quality_scores",
    "get_normalized_margin_for_each_label",
    "get_self_confidence_for_each_label",
    "num_label_issues",
    "order_label_issues",
]
