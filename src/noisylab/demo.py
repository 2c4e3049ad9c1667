"""The end-to-end demo: noise -> out-of-fold probabilities -> confident learning -> scores.

Runs on scikit-learn's digits (1,797 8x8 images, 10 classes, shipped with
scikit-learn, no download) in a few seconds.
"""
from __future__ import annotations

import time

from ._format import format_matrix
from .detect import ConfidentLearning, estimate_cv_predicted_probabilities
from .metrics import (
    detection_auroc,
    detection_average_precision,
    detection_precision_recall_f1,
    noise_matrix_error,
)
from .noise import make_noise

__all__ = ["run_demo"]


def run_demo(*, noise_rate=0.3, kind="symmetric", filter_by="prune_by_noise_rate", folds=5, random_state=0,
             print_fn=print):
    """Run the demo and return its figures as a dict (also printed with ``print_fn``)."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    t0 = time.perf_counter()
    X, y_true = load_digits(return_X_y=True)
    noisy = make_noise(kind, y_true, noise_rate, n_classes=10, exact=True, random_state=random_state)
    print_fn(f"Data: scikit-learn digits, {X.shape[0]} examples, 10 classes.")
    print_fn(f"Noise: {kind} at rate {noise_rate} (exact mode), seed {random_state}: "
             f"{noisy.flip_mask.sum()} labels changed ({noisy.noise_rate:.1%}).")
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    P = estimate_cv_predicted_probabilities(X, noisy.noisy_labels, clf, cv_n_folds=folds, seed=random_state)
    acc_noisy = float((P.argmax(1) == noisy.noisy_labels).mean())
    acc_true = float((P.argmax(1) == y_true).mean())
    print_fn(f"Out-of-fold probabilities: {folds}-fold logistic regression; accuracy vs noisy labels "
             f"{acc_noisy:.3f}, vs true labels {acc_true:.3f}.")
    cl = ConfidentLearning(filter_by=filter_by).fit(noisy.noisy_labels, P)
    m = detection_precision_recall_f1(cl.issue_mask_, noisy.flip_mask)
    auroc = detection_auroc(noisy.flip_mask, cl.label_quality_)
    ap = detection_average_precision(noisy.flip_mask, cl.label_quality_)
    print_fn("")
    print_fn(f"Confident learning ({filter_by}): {cl.n_issues_} issues flagged; "
             f"{m['n_true_positive']} of them are real flips.")
    print_fn(f"  precision {m['precision']:.3f}  recall {m['recall']:.3f}  F1 {m['f1']:.3f}  "
             f"(self-confidence ranking: AUROC {auroc:.3f}, AP {ap:.3f})")
    fixed = cl.issue_mask_ & (cl.suggested_labels_ == y_true)
    print_fn(f"  suggested label equals the true label for {fixed.sum()} of {cl.n_issues_} flagged examples")
    print_fn(f"  estimated noise rate {cl.noise_rate_:.3f} (true {noisy.noise_rate:.3f})")
    err = noise_matrix_error(cl.noise_matrix_, noisy.transition_matrix)
    print_fn("")
    print_fn("Estimated noise matrix P(noisy | true) (columns = true class):")
    print_fn(format_matrix(cl.noise_matrix_))
    print_fn("True (realised) noise matrix:")
    print_fn(format_matrix(noisy.transition_matrix))
    print_fn(f"Noise-matrix error: mean abs {err['mae']:.4f}, max abs {err['max_abs']:.4f}")
    elapsed = time.perf_counter() - t0
    print_fn(f"\nDone in {elapsed:.1f} s.")
    return dict(precision=m["precision"], recall=m["recall"], f1=m["f1"], auroc=auroc, average_precision=ap,
                n_issues=cl.n_issues_, n_flipped=int(noisy.flip_mask.sum()), noise_rate=noisy.noise_rate,
                estimated_noise_rate=cl.noise_rate_, noise_matrix_mae=err["mae"], seconds=elapsed)
