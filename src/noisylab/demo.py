"""The end-to-end demo, the confident-learning paper's pipeline on a small data set.

noise on the training labels -> out-of-fold probabilities (K-fold CV of a small CNN)
-> confident learning -> prune the flagged examples -> retrain, and the test accuracy
of training on the noisy, the pruned and the clean labels.

Data sets (no download): scikit-learn's ``digits`` (1,797 8x8 images, stratified
70/30 train/test split) and ``mnist1d`` (generated locally: 4,000 train / 1,000
test sequences of length 40).  ``model="logreg"`` runs the same pipeline with a
scikit-learn logistic regression instead of a network (a few seconds).

Importing this module is light: numpy only; scikit-learn and PyTorch are imported
when :func:`run_demo` runs.
"""
from __future__ import annotations

import time

import numpy as np

from ._format import markdown_table
from ._validation import NoisylabInputError, check_fraction, check_option
from .detect import FILTER_METHODS, ConfidentLearning
from .metrics import (
    detection_auroc,
    detection_average_precision,
    detection_precision_recall_f1,
    noise_matrix_error,
)
from .noise import make_noise

__all__ = ["DEMO_DATASETS", "DEMO_DEFAULTS", "run_demo"]

#: Data sets the demo runs on.
DEMO_DATASETS = ("digits", "mnist1d")

#: Per data set: the default network and its training settings (all seeded; measured on a
#: 2-core CPU, see the module's tests and the README).  ``quick`` holds the overrides used by
#: ``run_demo(quick=True)`` (tests).
DEMO_DEFAULTS = {
    "digits": dict(model="small_cnn", model_kwargs={"batch_norm": True}, epochs=30, lr=1e-2, batch_size=64, schedule="cosine",
                   test_size=0.3, quick=dict(epochs=8)),
    "mnist1d": dict(model="cnn1d", model_kwargs=None, epochs=40, lr=1e-2, batch_size=64, schedule="cosine",
                    n_train=4000, n_test=1000, quick=dict(epochs=8, n_train=1000, n_test=500)),
}

#: Logistic regression (the old demo's model): epochs / lr / batch_size do not apply.
LOGREG = "logreg"


def _load(dataset, random_state, n_train, n_test, test_size):
    try:
        from .torch.data import load_digits, load_mnist1d
    except ImportError as exc:
        raise NoisylabInputError(f"the demo needs the PyTorch layer: {exc}") from None
    if dataset == "digits":
        full = load_digits()
        train, test = full.split(test_size, random_state)
        how = (f"scikit-learn digits, {len(full)} examples, {full.n_classes} classes; stratified "
               f"{1 - test_size:.0%}/{test_size:.0%} split (seed {random_state}): {len(train)} train / "
               f"{len(test)} test")
    else:
        full = load_mnist1d(n_train=n_train, n_test=n_test, random_state=random_state)
        train, test = full.split()
        how = (f"MNIST-1D generated locally (mnist1d package, seed {random_state}), {full.n_classes} classes; "
               f"its own split: {len(train)} train / {len(test)} test")
    return train, test, full.n_classes, how


def _make_classifier(model, *, n_classes, epochs, lr, batch_size, schedule, model_kwargs, random_state):
    if model == LOGREG:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import FunctionTransformer, StandardScaler

        flatten = FunctionTransformer(_flatten)
        return make_pipeline(flatten, StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    from .torch.estimator import TorchClassifier

    return TorchClassifier(model=model, epochs=epochs, batch_size=batch_size, lr=lr, optimizer="adam", schedule=schedule,
                           n_classes=n_classes, device="cpu", random_state=random_state,
                           model_kwargs=dict(model_kwargs) if model_kwargs else None)


def _flatten(X):
    X = np.asarray(X)
    return X.reshape(X.shape[0], -1)


def _fit_score(clf_factory, X, y, X_test, y_test):
    clf = clf_factory().fit(X, y)
    return float(np.mean(clf.predict(X_test) == y_test))


def run_demo(noise_rate=0.3, kind="symmetric", filter_by="prune_by_noise_rate", folds=4, random_state=0,
             dataset="digits", model=None, epochs=None, quick=False, out=print, *, lr=None, batch_size=None,
             schedule=None, model_kwargs=None, n_train=None, n_test=None, test_size=None, print_fn=None):
    """Run the CL paper's pipeline on a small data set; print a report and return every figure.

    Steps: load the data set and its train/test split; synthesize ``kind`` noise at
    ``noise_rate`` on the TRAIN labels only (exact mode); out-of-fold predicted probabilities
    from a ``folds``-fold CV of the model on the noisy train labels; confident learning
    (``filter_by``); detection precision / recall / F1 against the known flips and AUROC / AP
    of the self-confidence ranking; then the model trained three times on the training set --
    on the noisy labels, on the noisy labels without the flagged examples (pruned) and on the
    clean labels (the ceiling) -- each scored on the clean test labels after its last epoch
    (no model selection on the test set).

    Parameters
    ----------
    noise_rate : float in [0, 1], default=0.3
    kind : str, default="symmetric"
        A kind of :func:`noisylab.noise.make_noise`.
    filter_by : str, default="prune_by_noise_rate"
        The confident-learning filter.
    folds : int >= 2, default=4
        Cross-validation folds for the out-of-fold probabilities.
    random_state : int >= 0, default=0
        Seeds everything: the split (digits) or the generator (mnist1d), the noise, the folds and
        the networks' weights and batch order.  Same seed, same figures.
    dataset : {"digits", "mnist1d"}, default="digits"
    model : str, optional
        A network of :data:`noisylab.torch.models.MODELS` or ``"logreg"`` (scikit-learn's
        logistic regression on the standardised flat inputs, C=0.1).  Default:
        :data:`DEMO_DEFAULTS` of the data set (``small_cnn`` for digits, ``cnn1d`` for mnist1d).
    epochs : int, optional
        Training epochs of every network fit (default: :data:`DEMO_DEFAULTS`).
    quick : bool, default=False
        Fewer epochs (and, for mnist1d, fewer examples) -- for tests.
    out : callable, default=print
        Receives each line of the report.
    lr, batch_size, schedule, model_kwargs : optional
        Adam learning rate, batch size, learning-rate schedule and model arguments of the
        network (defaults from :data:`DEMO_DEFAULTS` when ``model`` is the data set's default
        network, else lr 1e-3, batch 64, cosine schedule and the network's own defaults).
    n_train, n_test : int, optional
        mnist1d only: sizes of the generated train and test splits (default 4000 / 1000).
    test_size : float, optional
        digits only: the test fraction of the stratified split (default 0.3).
    print_fn : callable, optional
        Old name of ``out`` (kept for compatibility).

    Returns
    -------
    dict
        Every figure of the report: data set sizes, noise, CV accuracy, detection metrics,
        ``issue_mask`` / ``flip_mask`` (on the training set), estimated vs true noise rate, the
        pruned training-set size and ``test_accuracy_noisy`` / ``_pruned`` / ``_clean``, timings.
    """
    out = print_fn if print_fn is not None else out
    t0 = time.perf_counter()
    dataset = check_option("dataset", dataset, DEMO_DATASETS)
    check_fraction("noise_rate", noise_rate)
    if not 0.0 < noise_rate < 1.0:  # detection needs flipped and clean labels (checked before the CV)
        raise NoisylabInputError(f"noise_rate must be in (0, 1): the demo scores detection against the flips and "
                                 f"needs both flipped and clean labels; got {noise_rate!r}.")
    filter_by = check_option("filter_by", filter_by, FILTER_METHODS)
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 2:
        raise NoisylabInputError(f"folds must be an int >= 2; got {folds!r}.")
    folds = int(folds)
    if isinstance(random_state, bool) or not isinstance(random_state, (int, np.integer)) or random_state < 0:
        raise NoisylabInputError(f"random_state must be an int >= 0; got {random_state!r}.")
    random_state = int(random_state)
    defaults = DEMO_DEFAULTS[dataset]
    quick_over = defaults["quick"] if quick else {}
    model = defaults["model"] if model is None else model
    if model != LOGREG:
        try:
            from .torch.models import MODELS
        except ImportError as exc:
            raise NoisylabInputError(f"model {model!r} needs PyTorch ({exc}); or use model='logreg'.") from None
        model = check_option("model", model, (LOGREG, *MODELS))
    own = model == defaults["model"]
    if model != LOGREG:
        epochs = epochs if epochs is not None else quick_over.get("epochs", defaults["epochs"] if own else 20)
        if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
            raise NoisylabInputError(f"epochs must be an int >= 1; got {epochs!r}.")
        epochs = int(epochs)
        lr = lr if lr is not None else (defaults["lr"] if own else 1e-3)
        batch_size = batch_size if batch_size is not None else (defaults["batch_size"] if own else 64)
        schedule = schedule if schedule is not None else (defaults["schedule"] if own else "cosine")
        model_kwargs = model_kwargs if model_kwargs is not None else (defaults["model_kwargs"] if own else None)
    else:
        given = [k for k, v in (("epochs", epochs), ("lr", lr), ("batch_size", batch_size), ("schedule", schedule),
                                ("model_kwargs", model_kwargs)) if v is not None]
        if given:
            raise NoisylabInputError(f"{', '.join(given)} apply to the networks, not to model='logreg'.")
        epochs = lr = batch_size = schedule = model_kwargs = None
    if dataset == "mnist1d":
        n_train = n_train if n_train is not None else quick_over.get("n_train", defaults["n_train"])
        n_test = n_test if n_test is not None else quick_over.get("n_test", defaults["n_test"])
    elif n_train is not None or n_test is not None:
        raise NoisylabInputError("n_train / n_test apply to dataset='mnist1d' only (digits: use test_size).")
    if test_size is not None and dataset != "digits":
        raise NoisylabInputError("test_size applies to dataset='digits' only (mnist1d: use n_train / n_test).")
    test_size = defaults.get("test_size") if test_size is None else test_size

    # 1. data
    train, test, K, data_how = _load(dataset, random_state, n_train, n_test, test_size)
    X, y_true, X_test, y_test = train.X, train.y, test.X, test.y
    n, n_te = len(train), len(test)

    # 2. noise on the training labels only
    noisy = make_noise(kind, y_true, noise_rate, n_classes=K, exact=True, random_state=random_state)
    y_noisy, flip = noisy.noisy_labels, noisy.flip_mask
    if model == LOGREG:
        model_how = "logistic regression (scikit-learn, C=0.1, standardised flat inputs)"
    else:
        kw = ", ".join(f"{k}={v}" for k, v in (model_kwargs or {}).items())
        model_how = (f"{model}{f' ({kw})' if kw else ''}, Adam lr {lr:g} ({schedule}), batch {batch_size}, {epochs} epochs, "
                     f"seed {random_state}, CPU")

    def factory():
        return _make_classifier(model, n_classes=K, epochs=epochs, lr=lr, batch_size=batch_size, schedule=schedule,
                                model_kwargs=model_kwargs, random_state=random_state)

    out(f"noisylab demo: {dataset}, {noise_rate:g} {kind} noise on the train labels, {folds}-fold CV of {model}, "
        f"confident learning ({filter_by}), prune, retrain{' [quick]' if quick else ''}")
    out(f"Data: {data_how}.")
    out(f"Noise: {kind} at rate {noise_rate} (exact mode) on the {n} train labels only, seed {random_state}: "
        f"{int(flip.sum())} labels changed ({noisy.noise_rate:.1%}); the {n_te} test labels stay clean.")
    out(f"Model: {model_how}.")

    # 3. out-of-fold probabilities
    from .cv import cross_val_pred_probs

    t = time.perf_counter()
    P = cross_val_pred_probs(factory(), X, y_noisy, n_folds=folds, random_state=random_state, n_classes=K)
    t_cv = time.perf_counter() - t
    oof_noisy = float(np.mean(P.argmax(1) == y_noisy))
    oof_true = float(np.mean(P.argmax(1) == y_true))
    out(f"Out-of-fold probabilities: {folds}-fold CV of {model} on the {n} noisy train labels ({t_cv:.1f} s); "
        f"accuracy vs noisy labels {oof_noisy:.3f}, vs true labels {oof_true:.3f}.")

    # 4. confident learning and detection metrics
    cl = ConfidentLearning(filter_by=filter_by).fit(y_noisy, P)
    issue = np.asarray(cl.issue_mask_, dtype=bool)
    m = detection_precision_recall_f1(issue, flip)
    auroc = detection_auroc(flip, cl.label_quality_)
    ap = detection_average_precision(flip, cl.label_quality_)
    fixed = int(np.sum(issue & (cl.suggested_labels_ == y_true)))
    err = noise_matrix_error(cl.noise_matrix_, noisy.transition_matrix)
    out("")
    out(f"Confident learning ({filter_by}): {cl.n_issues_} issues flagged; "
        f"{m['n_true_positive']} of them are real flips.")
    out(f"  precision {m['precision']:.3f}  recall {m['recall']:.3f}  F1 {m['f1']:.3f}  "
        f"(self-confidence ranking: AUROC {auroc:.3f}, AP {ap:.3f})")
    out(f"  suggested label equals the true label for {fixed} of {cl.n_issues_} flagged examples")
    out(f"  estimated noise rate {cl.noise_rate_:.3f} (true {noisy.noise_rate:.3f}); "
        f"noise-matrix error: mean abs {err['mae']:.4f}, max abs {err['max_abs']:.4f}")

    # 5. retrain: noisy, pruned, clean
    keep = ~issue
    t = time.perf_counter()
    acc_noisy = _fit_score(factory, X, y_noisy, X_test, y_test)
    acc_pruned = _fit_score(factory, X[keep], y_noisy[keep], X_test, y_test)
    acc_clean = _fit_score(factory, X, y_true, X_test, y_test)
    t_retrain = time.perf_counter() - t
    n_pruned = int(keep.sum())
    flips_left = int(np.sum(flip & keep))
    out("")
    out(f"Test accuracy of {model} trained on the train set, scored on the {n_te} clean test labels "
        f"(last epoch, no model selection; {t_retrain:.1f} s):")
    rows = [["noisy", n, f"{int(flip.sum())} ({np.mean(flip):.1%})", f"{acc_noisy:.3f}"],
            ["pruned (CL issues removed)", n_pruned, f"{flips_left} ({flips_left / max(n_pruned, 1):.1%})",
             f"{acc_pruned:.3f}"],
            ["clean (ceiling)", n, "0 (0.0%)", f"{acc_clean:.3f}"]]
    out(markdown_table(["train labels", "examples", "wrong labels", "test accuracy"], rows))
    elapsed = time.perf_counter() - t0
    out(f"\nDone in {elapsed:.1f} s.")
    return dict(
        dataset=dataset, model=model, epochs=epochs, lr=lr, batch_size=batch_size, schedule=schedule, folds=folds,
        random_state=random_state, quick=bool(quick), filter_by=filter_by, kind=kind,
        n_classes=K, n_train=n, n_test=n_te,
        requested_noise_rate=float(noise_rate), noise_rate=float(noisy.noise_rate), n_flipped=int(flip.sum()),
        oof_accuracy_noisy=oof_noisy, oof_accuracy_true=oof_true,
        n_issues=int(cl.n_issues_), n_true_positive=int(m["n_true_positive"]),
        precision=m["precision"], recall=m["recall"], f1=m["f1"], auroc=auroc, average_precision=ap,
        suggested_correct=fixed, estimated_noise_rate=float(cl.noise_rate_), noise_matrix_mae=err["mae"],
        n_train_pruned=n_pruned, wrong_labels_after_pruning=flips_left,
        test_accuracy_noisy=acc_noisy, test_accuracy_pruned=acc_pruned, test_accuracy_clean=acc_clean,
        issue_mask=issue, flip_mask=np.asarray(flip, dtype=bool), noisy_labels=y_noisy, true_labels=y_true,
        pred_probs=P, seconds_cv=t_cv, seconds_retrain=t_retrain, seconds=elapsed,
    )
