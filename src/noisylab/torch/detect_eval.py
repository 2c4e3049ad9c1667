"""One detection pipeline over training dynamics: score every training example with one method, measure
the ranking against the known flips, remove (or repair) the most suspicious labels and retrain; the
runner of ``noisylab bench detectors`` (METHODS.md §0, §3, §7, §8.4).

Methods of :func:`score_examples` / :func:`score_many` (label quality: HIGHER = label more likely CLEAN)
------------------------------------------------------------------------------------------------------
``"cl"``
    Confident learning: out-of-fold probabilities ``P̂`` from ``protocol.cv_folds``-fold
    cross-validation (:func:`noisylab.cv.cross_val_pred_probs` of a
    :class:`~noisylab.torch.estimator.TorchClassifier` trained under ``protocol``); label quality =
    self-confidence ``P̂[i, ỹ_i]``; flags = :func:`noisylab.detect.filter.find_label_issues` with
    ``protocol.cl_filter`` (default PBNR).  Cost: ``cv_folds`` trainings.
``"aum"``
    :class:`~noisylab.torch.methods.aum.AUM`: two runs with disjoint threshold sets (``N_th = ⌊N/C⌋``),
    trained with ``protocol``'s optimiser / schedule / epochs (``val_fraction=0``); label quality =
    AUM; flags = its 99th-percentile rule.  Cost: two trainings.
``"margin"``, ``"forgetting"``
    From the **training-forward** logits of the shared run (below): the AUM ranking without threshold
    samples (mean margin, epoch 0 skipped) and ``−`` forgetting events (Toneva et al., who count on
    the minibatch predictions made during training).  No flags.
``"confidence"``, ``"mean_loss"``
    From the **eval-pass** logits of the shared run: data-map confidence (mean ``p_e(ỹ)`` over epochs;
    Swayamdipta et al. evaluate after every epoch) and ``−`` mean cross-entropy.  No flags.
``"lstm"``
    The LSTM noise detector (:class:`~noisylab.torch.detector.NoiseDetector`; default the shipped
    :func:`~noisylab.torch.detector.load_pretrained`) on the eval-pass sequences ``p_e(ỹ)`` of the
    shared run (resampled to the detector's length); label quality = ``1 − p_noisy``; flags =
    ``p_noisy > 0.5`` (METHODS.md §8.4).  The flags are calibrated only for the number of classes
    the detector was trained on (:func:`~noisylab.torch.detector.training_n_classes`; 10 for the
    shipped ones): ``p_noisy`` scales with ``1/K`` (0.5 flags almost no row at K=2 and almost every
    row at K=100, while the ranking still transfers).  For another K a warning says so and
    ``extra["flags_uncalibrated"]`` holds the reason.
``"lstm_margin"``
    The same on the eval-pass **logit margins** ``z_ỹ − max_{j≠ỹ} z_j`` per epoch, with the shipped
    margin detector (:func:`~noisylab.torch.detector.load_pretrained` ``(feature="margin")``, trained on
    MNIST-1D symmetric 0.3 + pair 0.3 draws; an extension of the reference, whose detector reads
    ``p_e(ỹ)`` only).  A ``detector`` argument whose ``feature_`` is ``"margin"`` replaces it.
``"combined"``
    The mean of the rank-normalised label qualities of ``"cl"`` and ``"lstm"``:
    ``(r_cl + r_lstm) / 2`` with ``r = (rank − 1) / (n − 1)`` (average ranks for ties), so both
    rankings weigh the same whatever their scales.  Flags: the ``round(n·ρ̂)`` lowest combined
    scores (ties broken by row index), ρ̂ = CL's estimated noise rate (below).  Cost: the two parts.

Variability (the second data-map axis, :func:`noisylab.dynamics.variability`) is **not** a method:
it has no direction for label noise (mislabelled examples are low-confidence and *low*-variability;
ambiguous ones high-variability), so it cannot rank by itself.

The shared run
--------------
``"margin"``, ``"forgetting"``, ``"confidence"``, ``"mean_loss"``, ``"lstm"`` and ``"lstm_margin"`` all read **one**
standard (plain cross-entropy) training on the noisy labels, under ``protocol`` but with
``val_fraction=0`` (every example is a training row, so every example gets a score), recorded by two
:class:`~noisylab.torch.recorder.DynamicsRecorder` callbacks in the same ``fit``: ``"train_forward"``
(a scatter of each batch's logits, no extra forward) and ``"eval_pass"`` (one inference pass over the
training rows after each epoch).  :func:`score_many` trains it once for all of them.

Overhead (issue target: at most 20 %)
-------------------------------------
With ``measure_overhead=True`` the same training (same config and seed; the recorders do not change
it: eval mode updates no statistics and draws no random numbers) is run once more **without**
recorders, after the recorded one (so one-time warm-up costs are charged to the recording: a
conservative figure).  ``extra["overhead"]`` holds the wall-clock seconds of both fits, the scoring
seconds (reading the recordings, the dynamics statistics and the LSTM), and
``recording_overhead = t_recorded / t_plain − 1`` and
``detection_overhead = (t_recorded + t_scoring) / t_plain − 1``.  On a shared CPU machine these are
noisy; compare several runs.

Estimated noise rate
--------------------
ρ̂ = ``1 − trace(Q̂)`` with ``Q̂`` CL's estimated joint ``p(ỹ, y*)``
(:func:`noisylab.detect.count.estimate_joint` of the out-of-fold probabilities); in
``DetectionScores.extra["estimated_noise_rate"]`` of ``"cl"``.  It sets the number of rows that
``"combined"`` flags and, in :func:`run_detector_cell`, the removed fraction when
``retrain_fraction="auto"`` (without ``"cl"``: the fraction the LSTM flags).

Retraining (METHODS.md §8.4)
----------------------------
:func:`remove_and_retrain` drops the ``round(fraction·n)`` lowest-quality rows (ties: lower row index
first) and :func:`repair_and_retrain` replaces their labels by ``suggested_labels`` instead; both
retrain ``robust.fit_method("standard", ...)`` from scratch on the modified data with the same
``protocol`` and seed as the noisy baseline (epoch selected on the *noisy* validation split, never
on the test set; the last epoch is reported too).  Suggested labels: ``argmax P̂`` for ``"cl"`` and
``"combined"``, the argmax of the shared run's last eval-pass logits for the shared-run methods (AUM
gives none: its networks have a threshold class).

Quirks and decisions
--------------------
* The detector evaluation must use noise draws the detector never saw (METHODS.md §8.6).  The shipped
  detector was trained on ``load_mnist1d(n_train=4000, random_state=0)`` with
  ``make_noise("symmetric", y, 0.3, exact=True, random_state=0)`` on all 4000 rows
  (``load_pretrained().metadata_``: ``data_seed`` 0).  :func:`prepare_data` with ``seed=s`` draws the
  noise with ``random_state=s`` (on the rows left after the probe), so MNIST-1D cells use seeds
  1, 2, 3 (same inputs, other noise draws; pass ``dataset_kwargs={"random_state": 1}`` for other
  inputs too).  :func:`run_detector_cell` warns and sets ``detector_seed_overlap`` when the seed
  equals the detector's ``data_seed`` on MNIST-1D.
* The shared run follows ``protocol`` (schedule, batch size ...).  The shipped detector was trained on
  the dynamics of a constant-lr Adam run (lr 3e-3, batch 128, 30 epochs); other settings change the
  time scale of the sequences it reads (§8.6), so match them for a fair LSTM figure.
* The removed / repaired data keep the clean test set and the protocol; ``noise_matrix`` of the
  modified data is left as it was (the standard method does not read it).
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import numbers
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._pretrained import pretrained_fingerprint
from .._validation import NoisylabInputError, check_int, check_option, warn_user
from . import robust
from .robust import ExperimentData, Protocol

__all__ = [
    "DETECTION_METHODS",
    "SHARED_RUN_METHODS",
    "DetectionScores",
    "detection_metrics",
    "remove_and_retrain",
    "repair_and_retrain",
    "run_detector_cell",
    "score_examples",
    "score_many",
]

#: Every method :func:`score_examples` accepts.
DETECTION_METHODS = ("cl", "aum", "margin", "confidence", "forgetting", "mean_loss", "lstm", "lstm_margin", "combined")
#: Methods scored from the one shared recorded training.
SHARED_RUN_METHODS = ("margin", "confidence", "forgetting", "mean_loss", "lstm", "lstm_margin")


@dataclass
class DetectionScores:
    """What :func:`score_examples` returns for one method.

    Attributes
    ----------
    method : str
    label_quality : ndarray (n,), float64
        HIGHER = label more likely clean; row ``i`` is row ``i`` of ``data.X``.
    flagged : ndarray (n,) of bool, or None
        The method's own "mislabelled" decision (None for pure rankers).
    seconds : float
        Wall-clock cost of producing these scores (trainings included; for the shared-run methods the
        recorded training plus this method's scoring).
    extra : dict
        Method details: ``suggested_labels`` (ndarray (n,) or absent), ``estimated_noise_rate`` (cl),
        ``overhead`` (shared-run methods, when measured), ``p_noisy`` (lstm) ...
    """

    method: str
    label_quality: np.ndarray
    flagged: np.ndarray | None
    seconds: float
    extra: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------ validation
def _check_data(data) -> ExperimentData:
    if not isinstance(data, ExperimentData):
        raise NoisylabInputError(f"data must be an ExperimentData (from noisylab.torch.robust.prepare_data); "
                                 f"got {type(data).__name__}.")
    return data


def _check_protocol(protocol) -> Protocol:
    if protocol is None:
        return Protocol()
    if not isinstance(protocol, Protocol):
        raise NoisylabInputError(f"protocol must be a noisylab.torch.robust.Protocol or None; got "
                                 f"{type(protocol).__name__}.")
    return protocol


def _check_seed(seed) -> int:
    return check_int("seed", seed, min_value=0)


def _check_methods(methods) -> list[str]:
    if isinstance(methods, str):
        methods = [m.strip() for m in methods.split(",") if m.strip()]
    try:
        methods = list(methods)
    except TypeError:
        raise NoisylabInputError(f"methods must be a method name or a list of them; got {methods!r}.") from None
    if not methods:
        raise NoisylabInputError(f"no detection method given; choose from {', '.join(DETECTION_METHODS)}.")
    out = []
    for m in methods:
        if not isinstance(m, str):
            raise NoisylabInputError(f"method names must be strings; got {m!r}.")
        m = check_option("method", m, DETECTION_METHODS)
        if m not in out:
            out.append(m)
    return out


def _check_quality(label_quality, n, name="label_quality") -> np.ndarray:
    q = np.asarray(label_quality)
    if q.dtype.kind not in "fiu" or q.ndim != 1:
        raise NoisylabInputError(f"{name} must be a 1-D numeric array; got {q.dtype} {q.shape}.")
    if q.shape[0] != n:
        raise NoisylabInputError(f"{name} has {q.shape[0]} entries but there are {n} training examples.")
    q = q.astype(np.float64, copy=False)
    if not np.isfinite(q).all():
        raise NoisylabInputError(f"{name} contains NaN or infinite values (first at row "
                                 f"{int(np.flatnonzero(~np.isfinite(q))[0])}).")
    return q


def _check_fraction(fraction, estimated_noise_rate) -> tuple[float, str]:
    """(fraction, source): "auto" becomes ``estimated_noise_rate``."""
    if isinstance(fraction, str):
        if fraction != "auto":
            raise NoisylabInputError(f"fraction must be a number in [0, 1) or 'auto'; got {fraction!r}.")
        if estimated_noise_rate is None:
            raise NoisylabInputError("fraction='auto' needs estimated_noise_rate (e.g. CL's estimate, "
                                     "DetectionScores.extra['estimated_noise_rate'] of method 'cl').")
        fraction, source = estimated_noise_rate, "estimated_noise_rate"
        name = "estimated_noise_rate"
    else:
        source, name = "given", "fraction"
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real) or not math.isfinite(fraction) \
            or not 0.0 <= fraction < 1.0:
        raise NoisylabInputError(f"{name} must be a real number in [0, 1); got {fraction!r}.")
    return float(fraction), source


# --------------------------------------------------------------------------------------- metrics
def detection_metrics(label_quality, is_noisy, flagged=None) -> dict:
    """Ranking and flag quality against the known flips (METHODS.md §0, §8.4).

    Parameters
    ----------
    label_quality : array-like (n,)
        HIGHER = cleaner; the noise score is ``−label_quality``.
    is_noisy : array-like of bool (n,)
        True where the given label differs from the true one (positive class).
    flagged : array-like of bool (n,), optional

    Returns
    -------
    dict
        ``auroc`` = ``roc_auc_score(is_noisy, −label_quality)``, ``ap`` =
        ``average_precision_score(is_noisy, −label_quality)`` (both NaN when ``is_noisy`` holds one
        class only), ``n``, ``n_noisy``; with ``flagged``: ``n_flagged``, ``precision`` (share of
        flagged rows that are noisy; 0 when none is flagged), ``recall``, ``f1`` (0 when precision +
        recall is 0).
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    t = np.asarray(is_noisy)
    if t.ndim != 1 or not (t.dtype == bool or (t.dtype.kind in "iu" and np.isin(t, (0, 1)).all())):
        raise NoisylabInputError(f"is_noisy must be a 1-D boolean (or 0/1) array; got {t.dtype} {t.shape}.")
    t = t.astype(bool)
    q = _check_quality(label_quality, len(t))
    n_noisy = int(t.sum())
    out: dict[str, Any] = {"n": len(t), "n_noisy": n_noisy}
    if 0 < n_noisy < len(t):
        out["auroc"] = float(roc_auc_score(t, -q))
        out["ap"] = float(average_precision_score(t, -q))
    else:
        out["auroc"] = out["ap"] = float("nan")
    if flagged is not None:
        f = np.asarray(flagged)
        if f.dtype != bool or f.shape != t.shape:
            raise NoisylabInputError(f"flagged must be a boolean array of shape {t.shape}; got {f.dtype} {f.shape}.")
        tp = int(np.sum(f & t))
        nf = int(f.sum())
        precision = tp / nf if nf else 0.0
        recall = tp / n_noisy if n_noisy else 0.0
        out.update(n_flagged=nf, precision=precision, recall=recall,
                   f1=2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0)
    return out


def _rank01(q: np.ndarray) -> np.ndarray:
    """Average ranks scaled to [0, 1] (0 = lowest); a constant vector maps to 0.5."""
    from scipy.stats import rankdata

    n = len(q)
    if n == 1:
        return np.full(1, 0.5)
    return (rankdata(q, method="average") - 1.0) / (n - 1.0)


def _lowest(q: np.ndarray, k: int) -> np.ndarray:
    """Row indices of the ``k`` lowest values (ties: lower index first)."""
    return np.argsort(q, kind="stable")[:k]


# --------------------------------------------------------------------------------- the methods
def _score_cl(data, protocol, seed) -> DetectionScores:
    from ..detect.count import estimate_joint
    from ..detect.filter import find_label_issues
    from ..detect.rank import get_label_quality_scores

    t0 = time.perf_counter()
    probs = robust._oof_probs(data, protocol, seed)
    t1 = time.perf_counter()
    quality = np.asarray(get_label_quality_scores(data.y, probs, method="self_confidence"), dtype=np.float64)
    flags = np.asarray(find_label_issues(data.y, probs, filter_by=protocol.cl_filter), dtype=bool)
    est = float(1.0 - np.trace(estimate_joint(data.y, probs)))
    extra = {"estimated_noise_rate": est, "suggested_labels": probs.argmax(axis=1), "pred_probs": probs,
             "filter_by": protocol.cl_filter, "cv_folds": protocol.cv_folds, "seconds_cv": t1 - t0}
    return DetectionScores("cl", quality, flags, time.perf_counter() - t0, extra)


def _aum_model(protocol, input_shape, seed, n_outputs):
    return robust._model_factory(protocol, input_shape, n_outputs, seed)()


def _score_aum(data, protocol, seed, record_dir) -> DetectionScores:
    from .methods.aum import AUM

    t0 = time.perf_counter()
    cfg = protocol.train_config(seed=seed, val_fraction=0.0)
    model = functools.partial(_aum_model, protocol, tuple(data.X.shape[1:]), seed)
    folder = None if record_dir is None else Path(record_dir) / "aum"
    aum = AUM(model, cfg, n_runs=2, n_classes=data.n_classes, random_state=seed, record_dir=folder)
    aum.fit(data.X, data.y, true_labels=data.y_true)
    extra = {"thresholds": aum.thresholds_.tolist(), "n_threshold": int(aum.n_threshold_)}
    return DetectionScores("aum", np.asarray(aum.aum_, dtype=np.float64), np.asarray(aum.flagged_, dtype=bool),
                           time.perf_counter() - t0, extra)


def _load_detector(detector):
    from .detector import NoiseDetector, load_pretrained

    if detector is None:
        return load_pretrained()
    if isinstance(detector, (str, Path)):
        return NoiseDetector.load(detector)
    if not isinstance(detector, NoiseDetector):
        raise NoisylabInputError(f"detector must be a NoiseDetector, a detector file or None (the shipped one); "
                                 f"got {type(detector).__name__}.")
    return detector


def _margin_detector(detector):
    """``detector`` when it reads margins, else the shipped margin detector."""
    from .detector import load_pretrained

    if detector is not None:
        det = _load_detector(detector)
        if det.feature_ == "margin":
            return det
    return load_pretrained(feature="margin")


def _shared_run(data, protocol, seed, folder: Path, measure_overhead: bool) -> dict:
    """Train once with both recorders; optionally the same training without them (timing only)."""
    from .recorder import DynamicsRecorder
    from .trainer import Trainer

    cfg = protocol.train_config(seed=seed, val_fraction=0.0)
    build = robust._model_factory(protocol, tuple(data.X.shape[1:]), data.n_classes, seed)
    paths = {"train_forward": folder / "shared_train_forward.npy", "eval_pass": folder / "shared_eval_pass.npy"}
    recs = [DynamicsRecorder(paths[m], mode=m, true_labels=data.y_true) for m in ("train_forward", "eval_pass")]
    t0 = time.perf_counter()
    trainer = Trainer(build, cfg, callbacks=recs).fit(data.X, data.y)
    t_rec = time.perf_counter() - t0
    out = {"paths": paths, "seconds_recorded_fit": t_rec, "history": trainer.history_.without_timing(),
           "epochs": cfg.epochs}
    del trainer
    if measure_overhead:
        t0 = time.perf_counter()
        plain = Trainer(build, cfg).fit(data.X, data.y)
        out["seconds_plain_fit"] = time.perf_counter() - t0
        out["history_plain"] = plain.history_.without_timing()
    return out


def _score_shared(data, methods, protocol, seed, detector, record_dir, measure_overhead) -> dict:
    from ..dynamics import aum_scores, confidence, forgetting_events, mean_loss
    from .detector import _calibration_mismatch, training_n_classes
    from .recorder import load_dynamics

    n = len(data.y)
    dets = {"lstm": _load_detector(detector) if "lstm" in methods else None,
            "lstm_margin": _margin_detector(detector) if "lstm_margin" in methods else None}
    with contextlib.ExitStack() as stack:
        if record_dir is None:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="noisylab-detect-")))
        else:
            folder = Path(record_dir)
            folder.mkdir(parents=True, exist_ok=True)
        run = _shared_run(data, protocol, seed, folder, measure_overhead)
        logits = {}
        metas = {}
        for mode, p in run["paths"].items():
            logits[mode], metas[mode] = load_dynamics(p)
        results, scoring = {}, {}
        t_sugg = time.perf_counter()
        ev, meta_ev = logits["eval_pass"], metas["eval_pass"]
        ec = int(meta_ev["epochs_completed"])
        suggested = np.empty(n, dtype=np.int64)
        suggested[meta_ev["ids"]] = np.asarray(ev[:, ec - 1, :], dtype=np.float32).argmax(axis=1)
        t_sugg = time.perf_counter() - t_sugg
        for m in methods:
            t0 = time.perf_counter()
            mode = "train_forward" if m in ("margin", "forgetting") else "eval_pass"
            z, meta = logits[mode], metas[mode]
            kw = {"epochs_completed": int(meta["epochs_completed"]), "mode": meta["mode"]}
            flags, extra = None, {}
            if m == "margin":
                raw = aum_scores(z, meta["labels"], skip_epochs=1 if kw["epochs_completed"] > 1 else 0, **kw)
            elif m == "forgetting":
                raw = -forgetting_events(z, meta["labels"], **kw).astype(np.float64)
            elif m == "confidence":
                raw = confidence(z, meta["labels"], **kw)
            elif m == "mean_loss":
                raw = -mean_loss(z, meta["labels"], **kw)
            else:  # lstm, lstm_margin: the detector's own feature of the eval-pass logits
                det = dets[m]
                p_rows = det.score(det.sequences_from_logits(z, meta["labels"], **kw))
                raw = 1.0 - p_rows
                p_noisy = np.empty(n)
                p_noisy[meta["ids"]] = p_rows
                flags = p_noisy > 0.5
                mismatch = _calibration_mismatch(det, int(meta["n_classes"]))
                if mismatch is not None:  # at K=2 0.5 flags almost nothing, at K=100 almost everything
                    warn_user(f"{m}: {mismatch}  Its flags (p_noisy > 0.5) and their flagged fraction are not "
                              "reliable; use the ranking (label_quality), e.g. remove a given fraction.")
                    extra["flags_uncalibrated"] = mismatch
                extra.update({"p_noisy": p_noisy, "detector_length": int(det.length_),
                         "recording_epochs": kw["epochs_completed"], "detector_feature": det.feature_,
                              "detector_source": {k: det.metadata_.get(k) for k in ("source", "noise", "data_seed")},
                              "detector_n_classes": training_n_classes(det)})
            quality = np.empty(n)
            quality[meta["ids"]] = raw
            scoring[m] = time.perf_counter() - t0
            results[m] = (quality, flags, extra)
        del logits, ev, z
    overhead = None
    if measure_overhead:
        t_plain, t_rec = run["seconds_plain_fit"], run["seconds_recorded_fit"]
        t_score = float(sum(scoring.values()))
        overhead = {"seconds_plain_fit": t_plain, "seconds_recorded_fit": t_rec, "seconds_scoring": t_score,
                    "scored_methods": list(methods),
                    "recording_overhead": t_rec / t_plain - 1.0,
                    "detection_overhead": (t_rec + t_score) / t_plain - 1.0,
                    "same_training": run["history"] == run["history_plain"]}
    out = {}
    for m, (quality, flags, extra) in results.items():
        extra = {**extra, "suggested_labels": suggested, "shared_run": True,
                 "seconds_recorded_fit": run["seconds_recorded_fit"], "seconds_scoring": scoring[m] + t_sugg,
                 "recording_mode": "train_forward" if m in ("margin", "forgetting") else "eval_pass"}
        if overhead is not None:
            extra["overhead"] = overhead
        out[m] = DetectionScores(m, quality, flags, run["seconds_recorded_fit"] + scoring[m], extra)
    return out


def _combine(cl: DetectionScores, lstm: DetectionScores) -> DetectionScores:
    n = len(cl.label_quality)
    quality = 0.5 * (_rank01(cl.label_quality) + _rank01(lstm.label_quality))
    est = cl.extra["estimated_noise_rate"]
    k = round(min(max(est, 0.0), 1.0) * n)
    flags = np.zeros(n, dtype=bool)
    flags[_lowest(quality, k)] = True
    extra = {"components": ["cl", "lstm"], "estimated_noise_rate": est,
             "suggested_labels": cl.extra["suggested_labels"]}
    return DetectionScores("combined", quality, flags, cl.seconds + lstm.seconds, extra)


def score_many(data: ExperimentData, methods, protocol: Protocol | None = None, *, seed: int = 0, detector=None,
               record_dir=None, measure_overhead: bool = True) -> dict:
    """Score the training rows of ``data`` with several methods, sharing the trainings they have in common.

    The shared-run methods (:data:`SHARED_RUN_METHODS`) read one recorded training; ``"combined"``
    reuses ``"cl"`` and ``"lstm"`` (computed for it when not requested).  See the module docs.

    Parameters
    ----------
    data : ExperimentData
        From :func:`noisylab.torch.robust.prepare_data`.
    methods : str or sequence of str
        Names from :data:`DETECTION_METHODS` (a comma-separated string works too).
    protocol : Protocol, optional
    seed : int
        Seeds every training (weights, batch order, CV split, AUM's threshold sets).
    detector : NoiseDetector or path, optional
        The LSTM detector; default the shipped pretrained one.
    record_dir : path, optional
        Keep the recordings there (``shared_*.npy``, ``aum/``); default a temporary folder.
    measure_overhead : bool, default=True
        Also time the shared training without recorders (one more training) and report
        ``extra["overhead"]``.

    Returns
    -------
    dict {method: DetectionScores}
        In the order of ``methods``.
    """
    data = _check_data(data)
    methods = _check_methods(methods)
    protocol = _check_protocol(protocol)
    seed = _check_seed(seed)
    if not isinstance(measure_overhead, bool):
        raise NoisylabInputError(f"measure_overhead must be True or False; got {measure_overhead!r}.")
    needed = set(methods) | ({"cl", "lstm"} if "combined" in methods else set())
    if "lstm" in needed:
        detector = _load_detector(detector)  # fails before any training
        if detector.feature_ != "label_probability":
            raise NoisylabInputError(f"'lstm' (and 'combined') read p(given label); the given detector reads "
                                     f"{detector.feature_!r}: pass it for 'lstm_margin' only.")
    if "lstm_margin" in needed:
        _margin_detector(detector)
    done: dict[str, DetectionScores] = {}
    if "cl" in needed:
        done["cl"] = _score_cl(data, protocol, seed)
    if "aum" in needed:
        done["aum"] = _score_aum(data, protocol, seed, record_dir)
    shared = [m for m in SHARED_RUN_METHODS if m in needed]
    if shared:
        done.update(_score_shared(data, shared, protocol, seed, detector, record_dir, measure_overhead))
    if "combined" in needed:
        done["combined"] = _combine(done["cl"], done["lstm"])
    return {m: done[m] for m in methods}


def score_examples(data: ExperimentData, method: str, protocol: Protocol | None = None, *, seed: int = 0,
                   detector=None, record_dir=None, measure_overhead: bool = True) -> DetectionScores:
    """Score every training row of ``data`` with one ``method`` (HIGHER = label more likely clean).

    ``score_many(data, [method], ...)[method]``; see :func:`score_many` for the parameters and the
    module docs for the methods.  Raises :class:`~noisylab._validation.NoisylabInputError` for an
    unknown method.
    """
    if not isinstance(method, str):
        raise NoisylabInputError(f"method must be one name from {', '.join(DETECTION_METHODS)}; got {method!r}.")
    method = check_option("method", method, DETECTION_METHODS)
    return score_many(data, [method], protocol, seed=seed, detector=detector, record_dir=record_dir,
                      measure_overhead=measure_overhead)[method]


# ------------------------------------------------------------------------------------ retraining
def _subset(data: ExperimentData, keep: np.ndarray) -> ExperimentData:
    return dataclasses.replace(data, X=data.X[keep], y=data.y[keep], y_true=data.y_true[keep])


def _fit_result(res) -> dict:
    return {"test_acc": float(res.test_acc), "test_acc_last": float(res.test_acc_last),
            "best_epoch": int(res.best_epoch), "seconds": float(res.seconds)}


def remove_and_retrain(data: ExperimentData, label_quality, fraction, protocol: Protocol | None = None, *,
                       seed: int = 0, estimated_noise_rate=None) -> dict:
    """Remove the ``round(fraction·n)`` lowest-quality training rows and retrain a standard network.

    Parameters
    ----------
    data : ExperimentData
    label_quality : array-like (n,)
        HIGHER = cleaner (e.g. ``DetectionScores.label_quality``); finite.
    fraction : float in [0, 1) or "auto"
        Share of rows removed; ``"auto"`` = ``estimated_noise_rate``.
    protocol : Protocol, optional
    seed : int
        Seed of the retraining (use the noisy baseline's seed for a paired comparison).
    estimated_noise_rate : float in [0, 1), optional
        Required with ``fraction="auto"``: e.g. CL's ρ̂ = ``1 − trace(Q̂)``
        (``score_examples(data, "cl", ...).extra["estimated_noise_rate"]``).

    Returns
    -------
    dict
        ``test_acc`` (best noisy-validation epoch), ``test_acc_last``, ``best_epoch``, ``seconds``
        (of the retraining), ``fraction``, ``fraction_source`` ("given" / "estimated_noise_rate"),
        ``n_removed``, ``removed`` (ndarray of the removed row indices, lowest quality first),
        ``removed_noisy`` (share of removed rows that were mislabelled; NaN if none removed),
        ``noise_rate_before`` / ``noise_rate_after`` of the training rows.
    """
    data = _check_data(data)
    protocol = _check_protocol(protocol)
    seed = _check_seed(seed)
    n = len(data.y)
    q = _check_quality(label_quality, n)
    frac, source = _check_fraction(fraction, estimated_noise_rate)
    k = round(frac * n)
    removed = _lowest(q, k)
    keep = np.ones(n, dtype=bool)
    keep[removed] = False
    noisy = data.y != data.y_true
    res = robust.fit_method("standard", _subset(data, keep), protocol, seed=seed)
    return {**_fit_result(res), "fraction": frac, "fraction_source": source, "n_removed": k, "removed": removed,
            "removed_noisy": float(noisy[removed].mean()) if k else float("nan"),
            "noise_rate_before": float(noisy.mean()), "noise_rate_after": float(noisy[keep].mean())}


def repair_and_retrain(data: ExperimentData, label_quality, fraction, suggested_labels,
                       protocol: Protocol | None = None, *, seed: int = 0, estimated_noise_rate=None) -> dict:
    """Replace the labels of the ``round(fraction·n)`` lowest-quality rows by ``suggested_labels`` and
    retrain a standard network on all rows (METHODS.md §8.4, "data debugging").

    Parameters
    ----------
    data, label_quality, fraction, protocol, seed, estimated_noise_rate
        As :func:`remove_and_retrain`.
    suggested_labels : array-like of int (n,)
        The replacement label of every row (only the selected rows use it), e.g.
        ``DetectionScores.extra["suggested_labels"]`` (argmax of the CV probabilities or of the shared
        run's last-epoch logits).

    Returns
    -------
    dict
        ``test_acc``, ``test_acc_last``, ``best_epoch``, ``seconds``, ``fraction``,
        ``fraction_source``, ``n_repaired`` (rows selected), ``repaired`` (their indices),
        ``n_changed`` (selected rows whose label actually changed), ``repaired_correct`` (share of
        selected rows whose new label is the true one; NaN if none), ``noise_rate_before`` /
        ``noise_rate_after``.
    """
    data = _check_data(data)
    protocol = _check_protocol(protocol)
    seed = _check_seed(seed)
    n = len(data.y)
    q = _check_quality(label_quality, n)
    s = np.asarray(suggested_labels)
    if s.ndim != 1 or s.dtype.kind not in "iu":
        raise NoisylabInputError(f"suggested_labels must be a 1-D integer array; got {s.dtype} {s.shape}.")
    if s.shape[0] != n:
        raise NoisylabInputError(f"suggested_labels has {s.shape[0]} entries but there are {n} training examples.")
    if s.size and (s.min() < 0 or s.max() >= data.n_classes):
        raise NoisylabInputError(f"suggested_labels must lie in 0..{data.n_classes - 1}; got "
                                 f"{int(s.min())}..{int(s.max())}.")
    frac, source = _check_fraction(fraction, estimated_noise_rate)
    k = round(frac * n)
    rows = _lowest(q, k)
    y_new = data.y.copy()
    y_new[rows] = s[rows].astype(y_new.dtype)
    res = robust.fit_method("standard", dataclasses.replace(data, y=y_new), protocol, seed=seed)
    return {**_fit_result(res), "fraction": frac, "fraction_source": source, "n_repaired": k, "repaired": rows,
            "n_changed": int(np.sum(y_new[rows] != data.y[rows])),
            "repaired_correct": float(np.mean(y_new[rows] == data.y_true[rows])) if k else float("nan"),
            "noise_rate_before": float(np.mean(data.y != data.y_true)),
            "noise_rate_after": float(np.mean(y_new != data.y_true))}


# ------------------------------------------------------------------------------------ bench runner
_RUNNER_KEYS = ("dataset", "dataset_kwargs", "n_train", "noise", "seed", "method", "methods", "retrain_fraction",
                "repair_fraction", "retrain_repeats", "measure_overhead", "bench", "detector_sha256",
                "detector_margin_sha256")
#: Training seed of repeat ``r`` of a cell with noise seed ``s``: ``s + REPEAT_SEED_STEP * r`` (repeat 0 is ``s``).
REPEAT_SEED_STEP = 1000


def _over_repeats(fits: list[dict]) -> dict:
    """The same retraining under several training seeds as one result: mean ``test_acc`` /
    ``test_acc_last``, total ``seconds``, each fit's ``test_acc`` (``test_acc_repeats``) and best epoch
    (``best_epochs``); the other fields are the first fit's."""
    out = dict(fits[0])
    out.update(test_acc=float(np.mean([f["test_acc"] for f in fits])),
               test_acc_last=float(np.mean([f["test_acc_last"] for f in fits])),
               seconds=float(sum(f["seconds"] for f in fits)),
               test_acc_repeats=[f["test_acc"] for f in fits], best_epochs=[f["best_epoch"] for f in fits])
    return out


def _json_metrics(m: dict) -> dict:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in m.items()}


def run_detector_cell(spec: dict) -> dict:
    """One cell of ``noisylab bench detectors`` (the harness's runner; returns a JSON-able dict).

    Spec keys
    ---------
    ``dataset``
        A registered name (``"digits"``, ``"mnist1d"``, ``"gaussian"``) or a
        :class:`~noisylab.torch.data.Dataset`.
    ``dataset_kwargs`` (dict, optional), ``n_train`` (int, optional; merged into it)
    ``noise``
        ``"KIND:RATE"`` (e.g. ``"symmetric:0.4"``).
    ``seed``
        Noise draw and every training.  MNIST-1D: use seeds other than the shipped detector's
        ``data_seed`` (0), e.g. 1, 2, 3 (module docs).
    ``methods`` (list or comma-separated string) or ``method`` (one name)
    ``retrain_fraction`` (optional)
        A fraction in [0, 1), ``"nominal"`` (the rate of ``noise``: the noise level a user assumes, as
        the LSTM paper's README sets its remove ratios) or ``"auto"`` (CL's estimated noise rate;
        without ``"cl"`` the fraction the LSTM flags): the noisy baseline (``fit_method("standard")``) and one remove-and-retrain
        per method are trained.
    ``repair_fraction`` (optional)
        The same for :func:`repair_and_retrain` (methods with suggested labels).
    ``retrain_repeats`` (int, default 1)
        Trainings per retraining, with training seeds ``seed + 1000·r`` (the noise draw and the
        detectors' scores stay those of ``seed``): the noisy baseline, every remove-and-retrain and
        every repair report the mean test accuracy over them.  One training's test accuracy at the
        best noisy-validation epoch varies by several points from seed to seed at 40% noise.
    ``measure_overhead`` (bool, default True)
    ``detector_sha256`` / ``detector_margin_sha256`` (optional)
        The :func:`~noisylab._pretrained.pretrained_fingerprint` of the shipped LSTM detector
        (label-probability / margin) the run is meant for (``noisylab bench detectors`` fills them
        in, so a rebuilt detector gets new run keys); a different installed file is refused.
    any :class:`~noisylab.torch.robust.Protocol` field.

    Returns
    -------
    dict
        ``methods``; ``metrics`` {method: auroc, ap, n, n_noisy, n_flagged, precision, recall, f1,
        seconds}; flat ``auroc_<m>`` / ``ap_<m>`` (and ``auroc`` / ``ap`` for a single method);
        ``overhead`` (dict, see the module docs) and ``overhead_pct`` (100 · detection_overhead)
        when a shared-run method was scored with ``measure_overhead``; ``estimated_noise_rate`` (cl);
        ``actual_noise_rate``, ``n_train``, ``n_test``, ``detector`` (the LSTM's provenance) and
        ``detector_seed_overlap``; with ``retrain_fraction``: ``retrain`` {``fraction``,
        ``baseline`` {test_acc, test_acc_last, ...}, method: {...}} and flat ``baseline_acc``,
        ``retrain_acc_<m>``; with ``repair_fraction``: ``repair`` likewise and ``repair_acc_<m>``;
        with either, ``training_seeds`` and, in every fit's dict, ``test_acc_repeats`` /
        ``best_epochs`` (one entry per training seed; ``test_acc`` is their mean).
    """
    if not isinstance(spec, dict):
        raise NoisylabInputError(f"spec must be a dict; got {type(spec).__name__}.")
    spec = dict(spec)
    missing = [k for k in ("dataset", "seed", "noise") if k not in spec]
    if missing:
        raise NoisylabInputError(f"a detector spec needs dataset, noise and seed; missing {', '.join(missing)}.")
    if ("method" in spec) == ("methods" in spec):
        raise NoisylabInputError("give exactly one of 'method' (one name) or 'methods' (a list) in the spec.")
    dataset = spec.pop("dataset")
    seed = _check_seed(spec.pop("seed"))
    noise = spec.pop("noise")
    methods = _check_methods(spec.pop("methods") if "methods" in spec else [spec.pop("method")])
    dataset_kwargs = dict(spec.pop("dataset_kwargs", None) or {})
    if "n_train" in spec:
        dataset_kwargs["n_train"] = spec.pop("n_train")
    retrain_fraction = spec.pop("retrain_fraction", None)
    repair_fraction = spec.pop("repair_fraction", None)
    repeats = spec.pop("retrain_repeats", 1)
    if isinstance(repeats, bool) or not isinstance(repeats, numbers.Integral) or repeats < 1:
        raise NoisylabInputError(f"retrain_repeats must be an int >= 1; got {repeats!r}.")
    train_seeds = [seed + REPEAT_SEED_STEP * r for r in range(int(repeats))]
    measure_overhead = spec.pop("measure_overhead", True)  # checked by score_many, before any training
    wanted_sha = {"detector": spec.pop("detector_sha256", None),
                  "detector_margin": spec.pop("detector_margin_sha256", None)}
    spec.pop("bench", None)
    protocol = Protocol.from_dict(spec)
    for name, v in (("retrain_fraction", retrain_fraction), ("repair_fraction", repair_fraction)):
        if v is not None and v not in ("auto", "nominal") and (isinstance(v, bool) or not isinstance(v, numbers.Real)
                                                             or not math.isfinite(v) or not 0.0 <= v < 1.0):
            raise NoisylabInputError(f"{name} must be a real number in [0, 1), 'auto' or 'nominal'; got {v!r}.")
        if v == "auto" and not {"cl", "combined", "lstm"} & set(methods):
            raise NoisylabInputError(f"{name}='auto' needs method 'cl', 'combined' or 'lstm' among the methods "
                                     "(the noise-rate estimate).")

    out: dict[str, Any] = {"methods": list(methods)}
    det = None
    overlap = False
    for key, wanted in (("detector", {"lstm", "combined"}), ("detector_margin", {"lstm_margin"})):
        if not wanted & set(methods):
            continue
        d = _load_detector(None) if key == "detector" else _margin_detector(None)
        if key == "detector":
            det = d
        sha = pretrained_fingerprint(d.feature_)
        if wanted_sha[key] is not None and wanted_sha[key] != sha:
            raise NoisylabInputError(
                f"this run is specified for the {d.feature_} LSTM detector {wanted_sha[key]}, but the installed one is "
                f"{sha}; rebuild the runs with noisylab bench detectors (it fills in the installed detector).")
        md = d.metadata_
        out[key] = {**{k: md.get(k) for k in ("source", "noise", "data_seed", "n", "length", "val_auroc")},
                    "feature": d.feature_, "sha256": sha}
        hit = dataset == "mnist1d" and md.get("source") == "mnist1d" and md.get("data_seed") == seed
        overlap = overlap or hit
        if hit:
            warn_user(f"seed {seed} is the noise seed the shipped LSTM detector was trained with on MNIST-1D; its "
                      "AUROC may be in-sample (METHODS.md §8.6).  Use other seeds (1, 2, 3).")
    if {"lstm", "combined", "lstm_margin"} & set(methods):
        out["detector_seed_overlap"] = bool(overlap)

    data = robust.prepare_data(dataset, noise, seed=seed, probe_per_class=protocol.probe_per_class,
                               dataset_kwargs=dataset_kwargs)
    is_noisy = data.y != data.y_true
    out.update(actual_noise_rate=data.actual_noise_rate, n_train=len(data.y), n_test=len(data.y_test))
    scores = score_many(data, methods, protocol, seed=seed, detector=det, measure_overhead=measure_overhead)
    out["metrics"] = {}
    for m, s in scores.items():
        met = detection_metrics(s.label_quality, is_noisy, s.flagged)
        met["seconds"] = float(s.seconds)
        out["metrics"][m] = _json_metrics(met)
        out[f"auroc_{m}"] = out["metrics"][m]["auroc"]
        out[f"ap_{m}"] = out["metrics"][m]["ap"]
        if "overhead" in s.extra and "overhead" not in out:
            out["overhead"] = dict(s.extra["overhead"])
            out["overhead_pct"] = 100.0 * s.extra["overhead"]["detection_overhead"]
    if len(methods) == 1:
        out["auroc"], out["ap"] = out[f"auroc_{methods[0]}"], out[f"ap_{methods[0]}"]
    est = None
    for m in ("cl", "combined"):
        if m in scores:
            est = scores[m].extra["estimated_noise_rate"]
            out["estimated_noise_rate"] = est
            break
    if est is None and "lstm" in scores:
        est = float(scores["lstm"].flagged.mean())
        out["lstm_flagged_fraction"] = est

    def auto_fraction(v):
        if v == "nominal":  # the noise level the user assumes (the LSTM paper's remove ratios)
            return float(data.noise_rate), None
        if v != "auto":
            return v, None
        if not 0.0 < est < 0.9:
            raise NoisylabInputError(f"the estimated noise fraction for 'auto' is {est:.3f}: removing it would leave "
                                     f"{'no' if est >= 0.9 else 'every'} row to change; give a fraction or 'nominal'.")
        return "auto", est

    if retrain_fraction is not None or repair_fraction is not None:
        baseline = _over_repeats([_fit_result(robust.fit_method("standard", data, protocol, seed=t))
                                  for t in train_seeds])
        out["baseline_acc"], out["baseline_acc_last"] = baseline["test_acc"], baseline["test_acc_last"]
        out["training_seeds"] = train_seeds
    for key, fraction in (("retrain", retrain_fraction), ("repair", repair_fraction)):
        if fraction is None:
            continue
        frac, est_rate = auto_fraction(fraction)
        block: dict[str, Any] = {"fraction": float(est_rate if frac == "auto" else frac), "baseline": baseline}
        for m, s in scores.items():
            if key == "retrain":
                fits = [remove_and_retrain(data, s.label_quality, frac, protocol, seed=t, estimated_noise_rate=est_rate)
                        for t in train_seeds]
                for r in fits:
                    r.pop("removed")
            else:
                if "suggested_labels" not in s.extra:
                    continue
                fits = [repair_and_retrain(data, s.label_quality, frac, s.extra["suggested_labels"], protocol, seed=t,
                                           estimated_noise_rate=est_rate) for t in train_seeds]
                for r in fits:
                    r.pop("repaired")
            r = _over_repeats(fits)
            block[m] = _json_metrics(r)
            out[f"{key}_acc_{m}"] = r["test_acc"]
        out[key] = block
    return out
