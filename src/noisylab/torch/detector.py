"""Learned label-noise detector on training dynamics (Jia et al., "Learning from Training Dynamics:
Identifying Mislabeled Data Beyond Manually Designed Features", arXiv 2212.09321; code:
Christophe-Jia/mislabel-detection).  METHODS.md §8.

Pipeline
--------
1. Train a classifier on a data set with *synthetic* noise (known flips) and record, after every
   epoch, the eval-mode logits of all training rows (:class:`~noisylab.torch.recorder.DynamicsRecorder`
   with ``mode="eval_pass"``).
2. Turn them into one sequence per example, ``p_t(ỹ_i) = softmax(z_{i,t})[ỹ_i]`` for t = 1..E
   (:func:`label_probabilities`; channel 0 of the reference's TD file, the only channel its detector
   reads), and train a small LSTM to predict ``is_noisy`` from it (:func:`train_detector`).
3. Apply the detector to the sequences of *another* training run (another noise draw, another data
   set: transfer without retraining) to rank examples by ``p_noisy`` (:meth:`NoiseDetector.score`,
   :func:`detect_from_recording`).  HIGHER ``p_noisy`` = label more likely WRONG;
   ``label_quality = 1 - p_noisy`` follows noisylab's usual direction (higher = more likely clean).

Network (:class:`LSTMDetector`): ``nn.LSTM(1, 64, num_layers=2, batch_first=True)`` -> output of
the last time step -> ``nn.Linear(64, 2)``; logit 1 = "noisy".  Initialisation of the reference's
``detector_model/lstm.py``: every LSTM weight matrix orthogonal (``nn.init.orthogonal_`` of each
``weight_ih_l*`` / ``weight_hh_l*`` as a whole (4H, ·) matrix), every LSTM bias 0.01; the linear head
keeps PyTorch's default init.  (The 2023 ``train_detector.py`` defined its own LSTM without this init;
same state-dict layout.)

Quirks reproduced / fixed / deviations (all documented parameters)
------------------------------------------------------------------
* **lr**: the reference trains with AdamW(lr=0.1, weight_decay=0.01), batch 64, 10 epochs.  lr 0.1
  is unusually high for an LSTM and seed-sensitive (METHODS §8.6); the default here is
  ``lr=1e-3`` (deviation), ``lr=0.1`` reproduces the reference.  Weight decay 0.01 (AdamW default),
  batch 64 and 10 epochs are the reference's.
* **Held-out split**: the reference uses ``train_test_split(random_state=42)`` (90/10) and saves the
  checkpoint whenever held-out *accuracy* improves.  Here the split is
  ``sklearn.model_selection.train_test_split(test_size=val_fraction, random_state=<seed derived
  from random_state>, stratify=is_noisy)`` (stratified so the minority noisy class is in the
  held-out part) and the kept epoch is the one with the best held-out **AUROC**
  (``select_on="auroc"``, default; the detector is used as a *ranker*, and with 70-90% clean rows
  accuracy barely moves).  ``select_on="accuracy"`` is the reference's rule (ties keep the earlier
  epoch in both).  ``val_fraction=0`` keeps the last epoch.
* **Class balance**: the noisy class is the minority.  The reference uses plain (unweighted) CE;
  so does the default ``class_weight=None``, so ``p_noisy`` is calibrated to the training noise
  prior (a threshold of 0.5 means "more likely noisy than not" *at that prior*).  The ranking
  (AUROC/AP, top-k removal) is what the method uses and is much less sensitive to it;
  ``class_weight="balanced"`` weights the CE by ``n / (2 n_c)`` instead.
* **Fine-tuning** (``init=``): starts from the given weights with a fresh AdamW (the reference's
  ``--resume`` also restores the optimizer moments; no optimizer state is stored here).
* **Sequence length** (pitfall §8.6): the LSTM accepts any length, but the time scale is part of
  the signal.  A detector stores the ``length`` it was trained with; sequences of another number of
  epochs are linearly interpolated to it (:func:`resample_sequences`) before training / scoring.
* **In-sample evaluation** (pitfall §8.6): the reference README ranks the very sequences the
  detector was trained on.  Report AUROC on another noise draw / data set (``train_pretrained``
  does; held-out metrics are in ``metadata_``).
* **Inputs**: the reference's TD are eval-mode probabilities of *augmented* views; the
  ``"eval_pass"`` recorder uses un-augmented inputs.
* **Feature** (extension, ``feature="margin"``): the reference's detector reads only ``p_t(ỹ)``.
  With ``feature="margin"`` it reads the per-epoch logit margin ``z_ỹ − max_{j≠ỹ} z_j`` instead (the
  quantity AUM averages; :func:`noisylab.dynamics.margins`), which also sees *which other class*
  competes -- the information that pair-flip noise leaves in the dynamics and ``p_t(ỹ)`` alone
  does not carry (measured in ``bench_results/lstm_features.md``).  The default is the reference's
  ``"label_probability"``.  A detector stores its feature; :meth:`NoiseDetector.sequences_from_logits`
  and :func:`detect_from_recording` compute the right one.

Files (:meth:`NoiseDetector.save` / :meth:`NoiseDetector.load`): no arbitrary pickles.  ``*.safetensors``
(needs the optional ``safetensors`` package): the tensors plus a ``noisylab`` JSON metadata string.
Anything else: ``torch.save`` of a dict holding only strings, ints, a JSON string and float32
tensors, read back with ``torch.load(weights_only=True)``::

    format          "noisylab.lstm_detector"
    format_version  1
    config          {"length": int, "hidden_size": int, "num_layers": int[, "feature": str]}
                    ("feature" absent = "label_probability", the files of earlier versions)
    metadata        JSON string (training provenance and held-out metrics)
    state_dict      {parameter name: float32 tensor}

Loading checks the format name and version, the config, every parameter name, shape and dtype,
and that all values are finite; anything else raises :class:`~noisylab._validation.NoisylabInputError`.

Two detectors ship (:func:`load_pretrained`): ``feature="label_probability"`` (the reference's input;
MNIST-1D, symmetric 0.3) and ``feature="margin"`` (MNIST-1D, symmetric 0.3 + pair 0.3).  Both are
produced by :func:`train_pretrained` / ``noisylab train-detector`` (commands in :data:`PRETRAINED`).
"""
from __future__ import annotations

import contextlib
import copy
import importlib.resources
import json
import math
import numbers
import os
import pickle
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._pretrained import (
    FEATURES,
    PRETRAINED,
    PRETRAINED_NAME,
    installed_pretrained,
    pretrained_fingerprint,
    pretrained_resource,
)
from .._validation import NoisylabInputError, check_option, warn_user
from ..dynamics import label_probability_sequences
from ..io import atomic_write

__all__ = [
    "DETECTOR_FORMAT",
    "DETECTOR_FORMAT_VERSION",
    "FEATURES",
    "PRETRAINED",
    "PRETRAINED_NAME",
    "LSTMDetector",
    "NoiseDetector",
    "detect_from_recording",
    "feature_sequences",
    "label_probabilities",
    "load_pretrained",
    "make_training_sequences",
    "pretrained_fingerprint",
    "resample_sequences",
    "train_detector",
    "train_pretrained",
    "training_n_classes",
]

DETECTOR_FORMAT = "noisylab.lstm_detector"
DETECTOR_FORMAT_VERSION = 1
_SELECT_ON = ("auroc", "accuracy")
_CLASS_WEIGHTS = ("balanced",)
#: Rows per block when upcasting float16 logits (about 4 MiB of float32 work per block by default).
_BLOCK_BYTES = 4 << 20
#: Sequences scored per forward pass of the LSTM.
_SCORE_BATCH = 4096


# --------------------------------------------------------------------------------------- network
class LSTMDetector(nn.Module):
    """LSTM over a sequence of label probabilities -> 2 logits (0 = clean, 1 = noisy).

    Parameters
    ----------
    hidden_size : int, default=64
    num_layers : int, default=2

    Notes
    -----
    ``nn.LSTM(input_size=1, hidden_size, num_layers, batch_first=True)`` (unidirectional, no
    dropout), the output of the last time step, then ``nn.Linear(hidden_size, 2)``.  Init of the
    reference's ``detector_model/lstm.py``: LSTM weight matrices orthogonal, LSTM biases 0.01.
    ``forward`` takes ``(B, T)`` or ``(B, T, 1)`` float tensors and returns ``(B, 2)`` logits.
    """

    def __init__(self, hidden_size: int = 64, num_layers: int = 2):
        super().__init__()
        self.hidden_size = _check_int("hidden_size", hidden_size, 1)
        self.num_layers = _check_int("num_layers", num_layers, 1)
        self.lstm = nn.LSTM(input_size=1, hidden_size=self.hidden_size, num_layers=self.num_layers, batch_first=True)
        self.fc = nn.Linear(self.hidden_size, 2)
        for name, p in self.lstm.named_parameters():
            if name.startswith("weight"):
                nn.init.orthogonal_(p)
            else:
                nn.init.constant_(p, 0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x.unsqueeze(-1)
        out, _ = self.lstm(x)
        return self.fc(out[:, -1, :])


# ------------------------------------------------------------------------------------ validation
def _check_int(name, value, low, high=None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low or (
            high is not None and value > high):
        rng = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise NoisylabInputError(f"{name} must be an int {rng}; got {value!r}.")
    return int(value)


def _check_real(name, value, low, high=math.inf, low_inclusive=True, high_inclusive=True) -> float:
    ok = not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value)
    ok = ok and (value >= low if low_inclusive else value > low) and (value <= high if high_inclusive else value < high)
    if not ok:
        lb, hb = ("[" if low_inclusive else "("), ("]" if high_inclusive else ")")
        raise NoisylabInputError(f"{name} must be a real number in {lb}{low}, {high}{hb}; got {value!r}.")
    return float(value)


def _check_sequences(sequences, name="sequences") -> np.ndarray:
    """(n, E) finite float array (n >= 1, E >= 1), returned as float32 or float64 (no copy if possible)."""
    if isinstance(sequences, torch.Tensor):
        sequences = sequences.detach().cpu().numpy()
    if isinstance(sequences, (str, bytes, os.PathLike)):
        raise NoisylabInputError(f"{name} must be an array of shape (n, n_epochs); got a path. "
                                 "For a recording use detect_from_recording(path).")
    s = np.asarray(sequences)
    if s.dtype.kind not in "fiub" or s.dtype == bool:
        raise NoisylabInputError(f"{name} must be a float array of shape (n, n_epochs); got dtype {s.dtype}.")
    if s.ndim != 2:
        raise NoisylabInputError(f"{name} must be 2-D with shape (n_examples, n_epochs) (one label-probability "
                                 f"sequence per row); got shape {s.shape}.")
    if s.shape[0] == 0 or s.shape[1] == 0:
        raise NoisylabInputError(f"{name} is empty (shape {s.shape}); expected at least one row and one epoch.")
    if s.dtype not in (np.float32, np.float64):
        s = s.astype(np.float32)
    if not np.isfinite(s).all():
        r, e = np.argwhere(~np.isfinite(s))[0]
        raise NoisylabInputError(f"{name} contains NaN or infinite values (first at row {int(r)}, epoch {int(e)}); "
                                 "an unrecorded epoch or an unvisited row? Pass only completed epochs.")
    return s


def _check_is_noisy(is_noisy, n) -> np.ndarray:
    if isinstance(is_noisy, torch.Tensor):
        is_noisy = is_noisy.detach().cpu().numpy()
    t = np.asarray(is_noisy)
    if t.ndim != 1:
        raise NoisylabInputError(f"is_noisy must be 1-D with shape (n,); got shape {t.shape}.")
    if t.shape[0] != n:
        raise NoisylabInputError(f"is_noisy has {t.shape[0]} entries but sequences has {n} rows.")
    if t.dtype == bool:
        return t
    if t.dtype.kind not in "iuf" or not np.isin(t, (0, 1)).all():
        raise NoisylabInputError(f"is_noisy must be booleans (or 0/1); got dtype {t.dtype} with values "
                                 f"{np.unique(t)[:5].tolist()}.")
    return t.astype(bool)


# ------------------------------------------------------------------------------ sequence helpers
def label_probabilities(logits, labels, *, epochs_completed=None, block_rows=None) -> np.ndarray:
    """``p[i, e] = softmax(logits[i, e])[labels[i]]``: the detector's input sequences.

    Parameters
    ----------
    logits : array of shape (n, E, K), float
        Raw logits, e.g. the float16 memmap of a ``"eval_pass"`` recording (walked in row blocks,
        each upcast to float32, so a file larger than memory is fine).
    labels : array-like of int, shape (n,)
        The given (noisy) label of each row, in ``0..K-1``.
    epochs_completed : int, optional
        Use only epochs ``0..epochs_completed-1`` (a recording's sidecar says how many are filled).
    block_rows : int, optional
        Rows per block (default: about 4 MiB of float32 per block); the result does not depend on it.

    Returns
    -------
    ndarray of shape (n, epochs_completed), float32

    Raises
    ------
    NoisylabInputError
        Wrong shapes or dtypes, labels out of range, a label count that differs from ``n``, or a
        non-finite logit (float16 overflow, unvisited row) in the used epochs.
    """
    return _sequences(logits, labels, "label_probability", epochs_completed, block_rows)


def _sequences(logits, labels, feature, epochs_completed, block_rows, mode=None) -> np.ndarray:
    """Per-epoch ``feature`` of every row, read block-wise by :mod:`noisylab.dynamics` (which also
    validates shapes, dtypes and labels); the detector adds the integer-label rule and that every
    used epoch is filled."""
    from ..dynamics import margins

    if isinstance(logits, (str, bytes, os.PathLike)):
        raise NoisylabInputError("logits must be an array of shape (n, E, K); got a path. "
                                 "Use detect_from_recording(path) or recorder.load_dynamics(path).")
    y = np.asarray(labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else labels)
    if y.dtype.kind not in "iu":  # stricter than check_labels: detector targets come from recordings
        raise NoisylabInputError(f"labels must be a 1-D array of integer class indices; got dtype {y.dtype}, "
                                 f"shape {y.shape}.")
    if epochs_completed is not None:
        _check_int("epochs_completed", epochs_completed, 1)
    hi = epochs_completed
    fn = label_probability_sequences if feature == "label_probability" else margins
    out = fn(logits, y, epochs_completed=hi, block_rows=block_rows, mode=mode)
    out = out[:, :hi] if hi is not None else out
    bad = ~np.isfinite(out)
    if bad.any():
        r, e = np.argwhere(bad)[0]
        eps = np.flatnonzero(bad.any(axis=0))
        eps_text = ", ".join(map(str, eps[:10].tolist())) + (f", ... ({len(eps)} in all)" if len(eps) > 10 else "")
        raise NoisylabInputError(f"logits contain a NaN or infinite value at row {int(r)}, epoch {int(e)} (epoch(s) "
                                 f"affected: {eps_text}): a diverged training, float16 overflow, or a row not visited "
                                 "in that epoch (the detector needs every epoch of every row).")
    return out.astype(np.float32, copy=False)


def feature_sequences(logits, labels, feature: str = "label_probability", *, epochs_completed=None,
                      block_rows=None, mode=None) -> np.ndarray:
    """The detector's input sequences (n, E) of one ``feature`` (:data:`FEATURES`).

    ``"label_probability"``: :func:`label_probabilities` (``p_t(ỹ)``, the reference's input).
    ``"margin"``: the logit margin ``z_{t,ỹ} − max_{j≠ỹ} z_{t,j}`` per epoch
    (:func:`noisylab.dynamics.margins`; AUM's per-epoch quantity).  Same arguments, checks and
    block-wise reading as :func:`label_probabilities`; float32.  ``mode``: the recording's
    ``meta["mode"]``, for the divergence checks of :mod:`noisylab.dynamics` (NaN epochs are named).
    """
    feature = check_option("feature", feature, FEATURES)
    return _sequences(logits, labels, feature, epochs_completed, block_rows, mode)


def resample_sequences(sequences, length: int) -> np.ndarray:
    """Linearly interpolate each row of ``sequences`` (n, E_in) to ``length`` time steps.

    Both time axes span the same interval: target step ``j`` sits at source position
    ``x_j = j * (E_in - 1) / (length - 1)`` and gets ``(1 - w) s[⌊x_j⌋] + w s[⌊x_j⌋ + 1]``, ``w = x_j - ⌊x_j⌋``
    (``np.interp(np.linspace(0, E_in - 1, length), np.arange(E_in), row)`` for every row, vectorised).
    First and last values are kept.  ``E_in == length`` returns the input unchanged (as float32);
    ``E_in == 1`` repeats the single value; ``length == 1`` keeps the first value (np.interp's grid).

    Parameters
    ----------
    sequences : array of shape (n, E_in), finite floats
    length : int >= 1

    Returns
    -------
    ndarray of shape (n, length), float32
    """
    s = _check_sequences(sequences)
    length = _check_int("length", length, 1)
    E_in = s.shape[1]
    if E_in == length:
        return s.astype(np.float32, copy=False)
    if E_in == 1:
        return np.repeat(s.astype(np.float32), length, axis=1)
    x = np.linspace(0.0, E_in - 1, length)
    lo = np.minimum(np.floor(x).astype(np.int64), E_in - 2)
    w = (x - lo).astype(np.float64)
    s64 = s.astype(np.float64, copy=False)
    return ((1.0 - w) * s64[:, lo] + w * s64[:, lo + 1]).astype(np.float32)


def _roc_auc(y_true: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    if y_true.all() or not y_true.any():
        return float("nan")
    return float(roc_auc_score(y_true, score))


# ---------------------------------------------------------------------------------- the detector
class NoiseDetector:
    """An LSTM noise detector: train it on label-probability sequences with known flips, then score.

    Parameters
    ----------
    length : int or None, default=None
        Sequence length the LSTM sees; sequences of another length are linearly resampled to it
        (:func:`resample_sequences`).  None = the number of epochs of the training sequences (or the
        length of ``init`` when fine-tuning).
    epochs : int, default=10
        Passes over the training sequences (reference: 10).
    batch_size : int, default=64
        Reference: 64.
    lr : float, default=1e-3
        AdamW learning rate.  **Deviation**: the reference uses 0.1 (pass ``lr=0.1`` to reproduce it;
        METHODS §8.6 suggests 1e-3).
    weight_decay : float, default=0.01
        AdamW weight decay (reference: the AdamW default 0.01).
    val_fraction : float in [0, 1), default=0.1
        Held-out part (stratified on ``is_noisy``) used to pick the epoch to keep; 0 = keep the last.
    select_on : {"auroc", "accuracy"}, default="auroc"
        Held-out criterion of the kept epoch ("accuracy" = the reference).
    class_weight : {None, "balanced"}, default=None
        None = plain CE (reference); "balanced" weights class c by ``n / (2 n_c)``.
    hidden_size, num_layers : int, default=64, 2
        LSTM size (reference: 64, 2).
    feature : {"label_probability", "margin"}, default="label_probability"
        What the sequences hold (:func:`feature_sequences`): ``p_t(ỹ)`` (reference) or the per-epoch
        logit margin (extension).  Stored with the detector; it only labels the input of
        :meth:`fit` / :meth:`score`, and tells :meth:`sequences_from_logits` what to compute.
    random_state : int or None, default=0
        Seeds the split, the initial weights and the batch order (None = fresh entropy, kept in
        ``seed_``).  The global torch RNG is left untouched.
    device : str, default="cpu"
        ``"auto"`` = CUDA when available.

    Attributes
    ----------
    module_ : LSTMDetector
        The kept network (CPU, eval mode).
    length_ : int
    metadata_ : dict
        JSON-able provenance and metrics: ``n``, ``n_noisy``, ``recording_epochs`` (epochs of the
        training sequences before resampling), ``length``, ``best_epoch``, ``val_auroc``,
        ``val_accuracy``, the hyper-parameters, ``fine_tuned``, plus what the caller passed as
        ``metadata`` (e.g. ``source``, ``noise``).
    history_ : list of dict
        Per epoch: ``epoch``, ``train_loss``, ``val_auroc``, ``val_accuracy``, ``seconds``.
    seed_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from noisylab.torch.detector import NoiseDetector
    >>> t = np.arange(10)
    >>> rng = np.random.default_rng(0)
    >>> onset = np.where(rng.random(200) < 0.3, 7, 2)            # noisy rows rise late
    >>> seqs = 1 / (1 + np.exp(-(t[None] - onset[:, None])))
    >>> det = NoiseDetector(epochs=2, lr=1e-2).fit(seqs, onset == 7)
    >>> det.score(seqs).shape
    (200,)
    """

    def __init__(self, length=None, *, epochs=10, batch_size=64, lr=1e-3, weight_decay=0.01, val_fraction=0.1,
                 select_on="auroc", class_weight=None, hidden_size=64, num_layers=2, feature="label_probability",
                 random_state=0, device="cpu"):
        self.length = length
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.val_fraction = val_fraction
        self.select_on = select_on
        self.class_weight = class_weight
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.feature = feature
        self.random_state = random_state
        self.device = device

    # ------------------------------------------------------------------------------------- fit
    def _validate_params(self):
        if self.length is not None:
            _check_int("length", self.length, 1)
        _check_int("epochs", self.epochs, 1)
        _check_int("batch_size", self.batch_size, 1)
        _check_int("hidden_size", self.hidden_size, 1)
        _check_int("num_layers", self.num_layers, 1)
        _check_real("lr", self.lr, 0.0, low_inclusive=False)
        _check_real("weight_decay", self.weight_decay, 0.0)
        _check_real("val_fraction", self.val_fraction, 0.0, 1.0, high_inclusive=False)
        check_option("select_on", self.select_on, _SELECT_ON)
        check_option("feature", self.feature, FEATURES)
        if self.class_weight is not None:
            check_option("class_weight", self.class_weight, _CLASS_WEIGHTS)
        rs = self.random_state
        if rs is not None and (isinstance(rs, bool) or not isinstance(rs, numbers.Integral) or rs < 0):
            raise NoisylabInputError(f"random_state must be a non-negative int or None; got {rs!r}.")
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            dev = torch.device(self.device)
        except (RuntimeError, TypeError, ValueError) as exc:
            raise NoisylabInputError(f"device {self.device!r} is not a torch device: {exc}") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise NoisylabInputError(f"device {self.device!r}: CUDA is not available on this machine.")
        return dev

    def fit(self, sequences, is_noisy, *, init=None, metadata=None) -> NoiseDetector:
        """Train the LSTM to predict ``is_noisy`` from ``sequences``.

        Parameters
        ----------
        sequences : array of shape (n, E), finite floats
            ``p_t(ỹ_i)`` per example and epoch (:func:`label_probabilities`).
        is_noisy : array-like of bool (or 0/1), shape (n,)
            True where the given label differs from the true one (synthetic noise).  Both classes must
            occur (at least 2 of each when ``val_fraction > 0``).
        init : NoiseDetector or LSTMDetector, optional
            Fine-tune: start from a copy of these weights (the object itself is not modified).  Its
            ``hidden_size``/``num_layers`` must match; ``length=None`` then means the init's length.
        metadata : dict, optional
            JSON-able provenance stored in ``metadata_`` and saved files (e.g. ``{"source": "mnist1d",
            "noise": "symmetric:0.3"}``).

        Returns
        -------
        self
        """
        dev = self._validate_params()
        s = _check_sequences(sequences)
        n, E_in = s.shape
        t = _check_is_noisy(is_noisy, n)
        n_noisy = int(t.sum())
        if n_noisy == 0 or n_noisy == n:
            raise NoisylabInputError(f"is_noisy must contain both clean and noisy rows; got {n_noisy} noisy of {n}.")
        extra = {}
        if metadata is not None:
            if not isinstance(metadata, dict):
                raise NoisylabInputError(f"metadata must be a dict; got {type(metadata).__name__}.")
            try:
                extra = json.loads(json.dumps(metadata))
            except (TypeError, ValueError) as exc:
                raise NoisylabInputError(f"metadata must be JSON-serialisable: {exc}") from None

        init_module, init_length = None, None
        if init is not None:
            if isinstance(init, NoiseDetector):
                init._check_fitted()
                init_module, init_length = init.module_, init.length_
            elif isinstance(init, LSTMDetector):
                init_module = init
            else:
                raise NoisylabInputError(f"init must be a fitted NoiseDetector or an LSTMDetector; got "
                                         f"{type(init).__name__}.")
            if isinstance(init, NoiseDetector) and init.feature_ != self.feature:
                raise NoisylabInputError(f"init reads feature={init.feature_!r}; this detector has "
                                         f"feature={self.feature!r} (fine-tune on the same feature).")
            if (init_module.hidden_size, init_module.num_layers) != (self.hidden_size, self.num_layers):
                raise NoisylabInputError(
                    f"init has hidden_size={init_module.hidden_size}, num_layers={init_module.num_layers}; this "
                    f"detector has {self.hidden_size}, {self.num_layers}."
                )
        length = self.length if self.length is not None else (init_length if init_length is not None else E_in)
        x_all = resample_sequences(s, length)

        if self.random_state is not None:
            seed = int(self.random_state)
        else:
            seed = int(np.random.SeedSequence().generate_state(1, dtype=np.uint64)[0] % (2**63))
        s_split, s_init, s_shuffle = (int(v) for v in np.random.SeedSequence(seed).generate_state(3) % (2**31))

        idx = np.arange(n)
        if self.val_fraction > 0:
            from sklearn.model_selection import train_test_split

            n_val = math.ceil(self.val_fraction * n)
            if min(n_noisy, n - n_noisy) < 2 or n_val < 2 or n - n_val < 2:
                raise NoisylabInputError(
                    f"val_fraction={self.val_fraction} with n={n} ({n_noisy} noisy) leaves too few rows for a "
                    "stratified held-out split (need >= 2 rows of each class); pass more data or val_fraction=0."
                )
            tr_idx, va_idx = train_test_split(idx, test_size=self.val_fraction, random_state=s_split, stratify=t)
            tr_idx, va_idx = np.sort(tr_idx), np.sort(va_idx)
        else:
            tr_idx, va_idx = idx, idx[:0]

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(s_init)
            module = copy.deepcopy(init_module) if init_module is not None else LSTMDetector(self.hidden_size,
                                                                                             self.num_layers)
        module = module.to(dev).float()
        opt = torch.optim.AdamW(module.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        weight = None
        if self.class_weight == "balanced":
            counts = np.bincount(t[tr_idx].astype(np.int64), minlength=2).astype(np.float64)
            weight = torch.tensor(len(tr_idx) / (2.0 * np.maximum(counts, 1)), dtype=torch.float32, device=dev)
        gen = torch.Generator(device="cpu").manual_seed(s_shuffle)
        X_tr = torch.from_numpy(x_all[tr_idx]).to(dev)
        y_tr = torch.from_numpy(t[tr_idx].astype(np.int64)).to(dev)
        x_va, t_va = x_all[va_idx], t[va_idx]

        history, best, best_state = [], -math.inf, None
        for epoch in range(self.epochs):
            t0 = time.perf_counter()
            module.train()
            order = torch.randperm(len(tr_idx), generator=gen).to(dev)
            loss_sum = torch.zeros((), device=dev)
            for start in range(0, len(order), self.batch_size):
                b = order[start:start + self.batch_size]
                loss = F.cross_entropy(module(X_tr[b]), y_tr[b], weight=weight)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                loss_sum += loss.detach() * len(b)
            row = {"epoch": epoch, "train_loss": float(loss_sum) / len(order)}
            if len(va_idx):
                p = _predict(module, x_va, dev)
                row["val_auroc"] = _roc_auc(t_va, p)
                row["val_accuracy"] = float(np.mean((p > 0.5) == t_va))
                crit = row["val_auroc" if self.select_on == "auroc" else "val_accuracy"]
                if crit > best:  # NaN never improves; ties keep the earlier epoch
                    best = crit
                    best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
                    best_epoch = epoch
            row["seconds"] = time.perf_counter() - t0
            history.append(row)
        if best_state is None:
            best_epoch = self.epochs - 1
        else:
            module.load_state_dict(best_state)
        module = module.cpu().eval()

        kept = history[best_epoch]
        self.module_ = module
        self.length_ = int(length)
        self.feature_ = self.feature
        self.history_ = history
        self.seed_ = seed
        self.best_epoch_ = int(best_epoch)
        self.metadata_ = {
            **extra,
            "n": int(n), "n_noisy": n_noisy, "recording_epochs": int(E_in), "length": int(length),
            "best_epoch": int(best_epoch),
            "val_auroc": kept.get("val_auroc"), "val_accuracy": kept.get("val_accuracy"),
            "n_val": len(va_idx),
            "epochs": int(self.epochs), "batch_size": int(self.batch_size), "lr": float(self.lr),
            "weight_decay": float(self.weight_decay), "val_fraction": float(self.val_fraction),
            "select_on": self.select_on, "class_weight": self.class_weight, "seed": seed,
            "feature": self.feature, "fine_tuned": init is not None,
            "torch_version": torch.__version__,
        }
        if init is not None and isinstance(init, NoiseDetector):
            self.metadata_["fine_tuned_from"] = {k: init.metadata_.get(k) for k in ("source", "noise", "n", "length")
                                                 if k in init.metadata_}
        return self

    # ----------------------------------------------------------------------------------- score
    def _check_fitted(self):
        if not hasattr(self, "module_"):
            raise NoisylabInputError("This NoiseDetector is not fitted; call fit(...) or NoiseDetector.load(path).")

    def score(self, sequences) -> np.ndarray:
        """Probability that each row's label is WRONG (HIGHER = more likely mislabelled).

        Parameters
        ----------
        sequences : array of shape (n, E), finite floats
            ``p_t(ỹ)`` sequences; resampled to ``length_`` when ``E != length_``.

        Returns
        -------
        ndarray of shape (n,), float64 in [0, 1]
            ``softmax(detector(seq))[1]`` (METHODS §8.4).
        """
        self._check_fitted()
        x = resample_sequences(_check_sequences(sequences), self.length_)
        return _predict(self.module_, x, torch.device("cpu"))

    def sequences_from_logits(self, logits, labels, *, epochs_completed=None, mode=None) -> np.ndarray:
        """This detector's input sequences from recorded logits (n, E, K): :func:`feature_sequences`
        with ``feature_`` (``p_t(ỹ)`` or the logit margin); ``mode`` = the recording's ``meta["mode"]``."""
        self._check_fitted()
        return feature_sequences(logits, labels, self.feature_, epochs_completed=epochs_completed, mode=mode)

    def label_quality(self, sequences) -> np.ndarray:
        """``1 - score(sequences)``: HIGHER = label more likely CLEAN (noisylab's usual direction)."""
        return 1.0 - self.score(sequences)

    # -------------------------------------------------------------------------------- save/load
    def _config(self) -> dict:
        return {"length": int(self.length_), "hidden_size": int(self.module_.hidden_size),
                "num_layers": int(self.module_.num_layers), "feature": str(self.feature_)}

    def save(self, path) -> Path:
        """Write the detector to ``path`` (atomically).  ``*.safetensors`` needs the ``safetensors``
        package; any other suffix (``.pt`` recommended) is a weights-only ``torch.save`` (module docs)."""
        self._check_fitted()
        path = Path(path)
        state = {k: v.detach().cpu().float().contiguous() for k, v in self.module_.state_dict().items()}
        meta_json = json.dumps(self.metadata_, sort_keys=True)
        if path.suffix == ".safetensors":
            header = {"format": DETECTOR_FORMAT, "format_version": str(DETECTOR_FORMAT_VERSION),
                      "config": json.dumps(self._config()), "metadata": meta_json}
            data = _safetensors().torch.save(state, metadata=header)
            with atomic_write(path, "wb") as fh:
                fh.write(data)
            return path
        payload = {"format": DETECTOR_FORMAT, "format_version": DETECTOR_FORMAT_VERSION, "config": self._config(),
                   "metadata": meta_json, "state_dict": state}
        with atomic_write(path, "wb") as fh:
            torch.save(payload, fh)
        return path

    @classmethod
    def load(cls, path) -> NoiseDetector:
        """Read a file written by :meth:`save`; never unpickles arbitrary objects.

        Raises
        ------
        NoisylabInputError
            Missing file, not a detector file (garbage, truncated, a pickle of other objects), other
            format or version, or parameters with unexpected names, shapes, dtypes or non-finite values.
        """
        path = Path(path)
        if not path.is_file():
            raise NoisylabInputError(f"Detector file not found: {path}")
        if path.suffix == ".safetensors":
            payload = _read_safetensors(path)
        else:
            try:
                payload = torch.load(path, map_location="cpu", weights_only=True)
            except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError, AttributeError,
                    KeyError, IndexError, OSError, UnicodeDecodeError) as exc:
                # torch's own message would end in its hint to retry with weights_only=False: not passed on
                raise NoisylabInputError(
                    f"{path} is not a readable noisylab detector file ({type(exc).__name__}): it is corrupted, or "
                    "it holds objects other than tensors and plain values, which are refused (never unpickled). "
                    "Rebuild it with `noisylab train-detector`."
                ) from None
        return cls._from_payload(payload, path)

    @classmethod
    def _from_payload(cls, payload, path) -> NoiseDetector:
        def bad(msg):
            return NoisylabInputError(f"{path}: {msg}")

        if not isinstance(payload, dict):
            raise bad(f"expected a dict written by NoiseDetector.save; got {type(payload).__name__}.")
        if payload.get("format") != DETECTOR_FORMAT:
            raise bad(f"not a noisylab LSTM detector (format {payload.get('format')!r}, expected "
                      f"{DETECTOR_FORMAT!r}).")
        if payload.get("format_version") != DETECTOR_FORMAT_VERSION:
            raise bad(f"unsupported detector format version {payload.get('format_version')!r} (this noisylab "
                      f"reads version {DETECTOR_FORMAT_VERSION}).")
        missing = {"config", "metadata", "state_dict"} - set(payload)
        if missing:
            raise bad(f"missing field(s) {sorted(missing)}.")
        cfg = payload["config"]
        sizes = {"length", "hidden_size", "num_layers"}
        if not isinstance(cfg, dict) or not sizes <= set(cfg) <= sizes | {"feature"} or not all(
                isinstance(cfg[k], int) and not isinstance(cfg[k], bool) and cfg[k] >= 1 for k in sizes):
            raise bad(f"config must be {{'length', 'hidden_size', 'num_layers'}} positive ints (and an optional "
                      f"'feature'); got {cfg!r}.")
        feature = cfg.get("feature", "label_probability")  # files without it predate the option
        if feature not in FEATURES:
            raise bad(f"config feature must be one of {list(FEATURES)}; got {feature!r}.")
        try:
            meta = json.loads(payload["metadata"])
            if not isinstance(meta, dict):
                raise ValueError("not a JSON object")
        except (TypeError, ValueError) as exc:
            raise bad(f"metadata is not a JSON object string: {exc}") from None
        state = payload["state_dict"]
        if not isinstance(state, dict):
            raise bad(f"state_dict must be a dict of tensors; got {type(state).__name__}.")
        # the sizes the tensors imply, before any network is built from the (untrusted) config
        w_hh = state.get("lstm.weight_hh_l0")
        layers = len({k.rsplit("_l", 1)[1] for k in state if isinstance(k, str) and k.startswith("lstm.weight_hh_l")})
        if not isinstance(w_hh, torch.Tensor) or w_hh.ndim != 2 or tuple(w_hh.shape) != (4 * cfg["hidden_size"],
                                                                                         cfg["hidden_size"]) \
                or layers != cfg["num_layers"]:
            raise bad(f"config hidden_size={cfg['hidden_size']}, num_layers={cfg['num_layers']} does not match the "
                      f"stored LSTM weights (weight_hh_l0 {tuple(getattr(w_hh, 'shape', ())) or 'missing'}, "
                      f"{layers} layer(s)).")
        with torch.random.fork_rng(devices=[]):
            module = LSTMDetector(cfg["hidden_size"], cfg["num_layers"])
        expected = module.state_dict()
        if set(state) != set(expected):
            raise bad(f"parameter names {sorted(state)} differ from the expected {sorted(expected)}.")
        for k, v in expected.items():
            got = state[k]
            if not isinstance(got, torch.Tensor) or got.dtype != torch.float32 or got.shape != v.shape:
                desc = f"{got.dtype} {tuple(got.shape)}" if isinstance(got, torch.Tensor) else type(got).__name__
                raise bad(f"parameter {k!r} must be a float32 tensor of shape {tuple(v.shape)}; got {desc}.")
            if not torch.isfinite(got).all():
                raise bad(f"parameter {k!r} holds NaN or infinite values.")
        module.load_state_dict(state)
        det = cls(length=cfg["length"], hidden_size=cfg["hidden_size"], num_layers=cfg["num_layers"], feature=feature)
        for key in ("epochs", "batch_size", "lr", "weight_decay", "val_fraction", "select_on", "class_weight"):
            if key in meta:
                setattr(det, key, meta[key])
        det.module_ = module.eval()
        det.length_ = cfg["length"]
        det.feature_ = feature
        det.metadata_ = meta
        det.history_ = []
        det.best_epoch_ = meta.get("best_epoch")
        det.seed_ = meta.get("seed")
        return det

    def __repr__(self) -> str:
        if not hasattr(self, "module_"):
            return "NoiseDetector(unfitted)"
        m = self.metadata_
        auc = m.get("val_auroc")
        feat = "" if self.feature_ == "label_probability" else f"feature={self.feature_!r}, "
        return (f"NoiseDetector({feat}length={self.length_}, trained on {m.get('source', '?')} "
                f"{m.get('noise', '')} n={m.get('n')}, held-out AUROC="
                f"{'n/a' if auc is None else f'{auc:.3f}'})")


@torch.no_grad()
def _predict(module: nn.Module, x: np.ndarray, dev) -> np.ndarray:
    """softmax(module(x))[:, 1] (float64) in blocks of _SCORE_BATCH rows."""
    was_training = module.training
    module.eval()
    out = np.empty(len(x), dtype=np.float64)
    for i in range(0, len(x), _SCORE_BATCH):
        z = module(torch.from_numpy(np.ascontiguousarray(x[i:i + _SCORE_BATCH], dtype=np.float32)).to(dev))
        out[i:i + len(z)] = torch.softmax(z.double(), dim=1)[:, 1].cpu().numpy()
    module.train(was_training)
    return out


def _safetensors():
    try:
        import safetensors
        import safetensors.torch
    except ImportError:
        raise NoisylabInputError("*.safetensors detector files need the 'safetensors' package (pip install "
                                 "safetensors); or save/load a .pt file (weights-only torch.save).") from None
    return safetensors


def _read_safetensors(path: Path) -> dict:
    st = _safetensors()
    try:
        with st.safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (a safe_open handle, not a dict)
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own SafetensorError (and others) for bad files
        raise NoisylabInputError(f"{path} is not a readable safetensors file: {exc}") from None
    try:
        version = int(header.get("format_version", "-1"))
        cfg = json.loads(header.get("config", "null"))
    except (TypeError, ValueError):
        raise NoisylabInputError(f"{path}: damaged noisylab header in the safetensors metadata.") from None
    return {"format": header.get("format"), "format_version": version, "config": cfg,
            "metadata": header.get("metadata"), "state_dict": state}


def train_detector(sequences, is_noisy, *, length=None, epochs=10, batch_size=64, lr=1e-3, weight_decay=0.01,
                   val_fraction=0.1, select_on="auroc", class_weight=None, random_state=0, init=None,
                   metadata=None, device="cpu", feature="label_probability") -> NoiseDetector:
    """Train an LSTM noise detector: ``NoiseDetector(...).fit(sequences, is_noisy, init=init, metadata=metadata)``.

    See :class:`NoiseDetector` for the parameters (``lr=1e-3`` is a documented deviation from the
    reference's 0.1) and the returned object (``module_``, ``length_``, ``metadata_`` with held-out
    AUROC/accuracy, ``history_``).
    """
    return NoiseDetector(length, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                         val_fraction=val_fraction, select_on=select_on, class_weight=class_weight,
                         feature=feature, random_state=random_state, device=device).fit(sequences, is_noisy, init=init,
                                                                       metadata=metadata)


# ---------------------------------------------------------------------------- recordings / pretrained
def detect_from_recording(path, detector: NoiseDetector | None = None) -> np.ndarray:
    """``p_noisy`` for every row of a dynamics recording (HIGHER = more likely mislabelled).

    Parameters
    ----------
    path : str or Path
        A ``.npy`` recording of :class:`~noisylab.torch.recorder.DynamicsRecorder` (``mode="eval_pass"``;
        a ``"train_forward"`` recording is scored with a warning, its rows may hold NaN).
    detector : NoiseDetector, optional
        Default: :func:`load_pretrained` (``p_t(ỹ)``).  The sequences are the detector's ``feature_``.

    Returns
    -------
    ndarray of shape (n,), float64
        Row ``i`` is the example ``meta["ids"][i]`` of the recording (``load_dynamics(path)[1]``).
        Only the completed epochs are used, resampled to the detector's length.

    Warns
    -----
    UserWarning
        When the recording's number of classes differs from the one the detector was trained on
        (:func:`training_n_classes`): the ranking transfers, but ``p_noisy`` scales with ``1/K``
        (``p_t(ỹ)`` of an unlearnt label is about ``1/K``), so ``p_noisy > 0.5`` is not calibrated.

    Raises
    ------
    NoisylabInputError
        A damaged recording, or NaN / infinite logits (a diverged training; the epochs affected are
        named, as by :func:`noisylab.dynamics.dynamics_scores`).
    """
    from .recorder import load_dynamics

    logits, meta = load_dynamics(path)
    ec = int(meta["epochs_completed"])
    if ec < 1:
        raise NoisylabInputError(f"{path}: no completed epoch in the recording (epochs_completed=0).")
    det = load_pretrained() if detector is None else detector
    if not isinstance(det, NoiseDetector):
        raise NoisylabInputError(f"detector must be a NoiseDetector; got {type(det).__name__}.")
    if meta.get("mode") != "eval_pass":
        warn_user(f"{path} is a {meta.get('mode')!r} recording; the LSTM detector is trained on 'eval_pass' "
                  "dynamics (eval-mode logits after each epoch).")
    p_noisy = det.score(det.sequences_from_logits(logits, meta["labels"], epochs_completed=ec, mode=meta["mode"]))
    msg = _calibration_mismatch(det, int(meta["n_classes"]))
    if msg is not None:
        warn_user(f"{path}: {msg}  Rank by p_noisy (e.g. remove the top fraction) instead of thresholding it at 0.5.")
    return p_noisy


#: Number of classes of the data sets the shipped detectors were trained on (their metadata predates
#: the ``n_classes`` key; the files are not rewritten).
_SOURCE_N_CLASSES = {"mnist1d": 10}


def training_n_classes(detector: NoiseDetector) -> int | None:
    """The number of classes K of the dynamics ``detector`` was trained on, or None when unknown.

    ``metadata_["n_classes"]`` when present (pass ``metadata={"n_classes": K, ...}`` to
    :meth:`NoiseDetector.fit`); otherwise known for ``metadata_["source"] == "mnist1d"`` (K = 10, the
    shipped detectors).  ``p_noisy`` is calibrated (``> 0.5`` = more likely noisy than not) only for
    this K and the training noise prior; the ranking transfers to other K.
    """
    m = getattr(detector, "metadata_", None) or {}
    k = m.get("n_classes")
    if isinstance(k, int) and not isinstance(k, bool) and k >= 2:
        return k
    return _SOURCE_N_CLASSES.get(m.get("source"))


def _calibration_mismatch(detector: NoiseDetector, n_classes: int) -> str | None:
    """A message when ``n_classes`` differs from the detector's training K (None if equal or unknown)."""
    k = training_n_classes(detector)
    if k is None or k == n_classes:
        return None
    return (f"the LSTM detector was trained on the dynamics of {k} classes ({detector.metadata_.get('source', '?')}); "
            f"these have {n_classes}.  Its ranking transfers, but p_noisy scales with 1/K (p_t(ỹ) of an unlearnt label "
            "is about 1/K), so p_noisy > 0.5 is not a calibrated 'mislabelled' decision here.")


def _pretrained_resource(feature="label_probability"):
    return pretrained_resource(feature)


def load_pretrained(feature: str = "label_probability") -> NoiseDetector:
    """A detector shipped with noisylab, trained on MNIST-1D training dynamics (1-D CNN, 30 epochs; see
    ``metadata_`` and :func:`train_pretrained`).

    Parameters
    ----------
    feature : {"label_probability", "margin"}, default="label_probability"
        ``"label_probability"``: the reference's input ``p_t(ỹ)``, trained on symmetric noise 0.3.
        ``"margin"``: the per-epoch logit margin, trained on symmetric 0.3 and pair 0.3 (two noise
        draws of the same data).

    Raises
    ------
    FileNotFoundError
        The file has not been produced yet (the message gives the command that makes it).
    """
    res = installed_pretrained(feature, _pretrained_resource(check_option("feature", feature, FEATURES)))
    with importlib.resources.as_file(res) as p:
        return NoiseDetector.load(p)


def _parse_noise(noise: str):
    from ..noise import parse_noise_spec

    kind, rate = parse_noise_spec(noise, allow_none=False)
    if rate == 0:
        raise NoisylabInputError(f"the detector learns the flips: noise must synthesize some, e.g. 'symmetric:0.3'; "
                                 f"got {noise!r}.")
    return kind, rate


def make_training_sequences(X, noisy_labels, true_labels=None, *, model="cnn1d", epochs=30, lr=3e-3,
                            optimizer="adam", batch_size=128, random_state=0, device="cpu", record_path=None,
                            model_kwargs=None, feature="label_probability"):
    """Train a classifier on ``(X, noisy_labels)`` and return its per-epoch ``p_t(ỹ)`` (or margin) sequences.

    Uses noisylab's :class:`~noisylab.torch.trainer.Trainer` (plain CE, ``val_fraction=0``: every row is
    a training row) with :class:`~noisylab.torch.recorder.DynamicsRecorder` (``mode="eval_pass"``).

    Parameters
    ----------
    X : array of shape (n, *input_shape)
    noisy_labels : array of int, shape (n,)
    true_labels : array of int, shape (n,), optional
        Gives ``is_noisy`` (diagnostics / detector targets).
    model : str, default="cnn1d"
        A :func:`~noisylab.torch.models.make_model` name (``model_kwargs`` are passed on).
    epochs, lr, optimizer, batch_size, random_state, device
        The :class:`~noisylab.torch.trainer.TrainConfig` of the run (constant lr).
    record_path : str or Path, optional
        Keep the recording there (``.npy``); default: a temporary folder, deleted afterwards.
    feature : {"label_probability", "margin"}, default="label_probability"
        What the sequences hold (:func:`feature_sequences`).

    Returns
    -------
    sequences : ndarray (n, epochs), float32
        Row ``i`` is example ``i`` of ``X``.
    is_noisy : ndarray (n,) bool, or None without ``true_labels``
    """
    import functools
    import tempfile

    from .models import make_model
    from .recorder import DynamicsRecorder, load_dynamics
    from .trainer import TrainConfig, Trainer

    feature = check_option("feature", feature, FEATURES)
    X = np.asarray(X, dtype=np.float32)
    n_classes = int(np.max(noisy_labels)) + 1
    if true_labels is not None:
        n_classes = max(n_classes, int(np.max(true_labels)) + 1)
    build = functools.partial(make_model, model, tuple(X.shape[1:]), n_classes, random_state=random_state,
                              **(model_kwargs or {}))
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr, device=device,
                      random_state=random_state)
    with contextlib.ExitStack() as stack:
        if record_path is None:
            record_path = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "dynamics.npy"
        rec = DynamicsRecorder(record_path, mode="eval_pass", true_labels=true_labels)
        Trainer(build, cfg, callbacks=[rec]).fit(X, noisy_labels)
        logits, meta = load_dynamics(record_path)
        seqs = feature_sequences(logits, meta["labels"], feature, epochs_completed=int(meta["epochs_completed"]))
        ids = meta["ids"]
        is_noisy = meta.get("is_noisy")
        del logits
    out = np.empty_like(seqs)
    out[ids] = seqs
    if is_noisy is not None:
        flags = np.zeros(len(X), dtype=bool)
        flags[ids] = is_noisy
        is_noisy = flags
    return out, is_noisy


def train_pretrained(out_path=None, *, n_train=4000, noise="symmetric:0.3", epochs_td=30, seed=0, model="cnn1d",
                     lr_td=3e-3, batch_size_td=128, detector_kwargs=None, feature="label_probability",
                     verbose=False) -> NoiseDetector:
    """Produce the shipped detector end to end and save it to ``out_path``.

    MNIST-1D (:func:`~noisylab.torch.data.load_mnist1d`, ``n_train`` rows, ``random_state=seed``) ->
    noise ``"kind:rate"`` via :func:`noisylab.noise.make_noise` (``exact=True``, ``random_state=seed``)
    -> :func:`make_training_sequences` (``model``, Adam ``lr_td``, ``epochs_td`` epochs) -> detector
    (:func:`train_detector` with ``detector_kwargs``; defaults as there) -> :meth:`NoiseDetector.save`.

    Parameters
    ----------
    out_path : str or Path, optional
        Default: the shipped file of ``feature`` (:data:`PRETRAINED`) inside the package folder
        (created if needed).  None of the other files are touched.
    noise : str or sequence of str, default="symmetric:0.3"
        ``"kind:rate"``; several (a list or a comma-separated string) record one training per noise
        draw of the same data (each with ``random_state=seed``) and train on all their sequences.
    feature : {"label_probability", "margin"}, default="label_probability"
        The detector's input (:func:`feature_sequences`).

    Returns
    -------
    NoiseDetector
        Its ``metadata_`` records the data (``source``, ``n_classes``), noise, recording settings and
        held-out metrics.

    Notes
    -----
    Cost measured with ``torch.set_num_threads(1)`` on a shared 2-core CPU machine: data + noise +
    30 epochs of cnn1d with the eval pass ≈ 17 s (≈ 0.5 s per epoch), detector (10 epochs over 3600
    sequences of length 30) ≈ 12.6 s (≈ 1.3 s per epoch); about 30 s in all.  Tiny LSTMs gain nothing
    from intra-op threads: on the same busy machine 2 threads were up to 10x slower than 1
    (``python -m noisylab.torch.detector`` sets 1 thread).

    Shipped detector (seed 0): held-out AUROC 0.987.  Transfer without retraining (30-epoch
    recordings, symmetric 0.3, noise seed 1): MNIST-1D same inputs 0.986, new inputs (data seed 1)
    0.985; digits small_cnn 0.929 (60 epochs resampled to 30: 0.969), digits mlp 0.998.  The plain
    mean of ``p_t(ỹ)`` over epochs scores 0.985 / 0.986 / 0.950 (0.981) / 0.998 on the same runs.
    """
    from ..noise import make_noise
    from .data import load_mnist1d

    feature = check_option("feature", feature, FEATURES)
    noises = [v.strip() for v in noise.split(",")] if isinstance(noise, str) else list(noise)
    if not noises:
        raise NoisylabInputError("noise must name at least one 'kind:rate'.")
    parsed = [_parse_noise(v) for v in noises]
    t0 = time.perf_counter()
    ds = load_mnist1d(n_train=n_train, n_test=0, random_state=seed)
    parts, flags, rates = [], [], []
    for kind, rate in parsed:
        nl = make_noise(kind, ds.y, rate, exact=True, random_state=seed)
        s_, f_ = make_training_sequences(ds.X, nl.noisy_labels, nl.true_labels, model=model, epochs=epochs_td,
                                         lr=lr_td, batch_size=batch_size_td, random_state=seed, feature=feature)
        parts.append(s_)
        flags.append(f_)
        rates.append(float(nl.noise_rate))
    seqs, is_noisy = np.concatenate(parts), np.concatenate(flags)
    t1 = time.perf_counter()
    meta = {"source": "mnist1d", "n_classes": int(ds.n_classes), "noise": ",".join(noises),
            "noise_rate_realised": rates[0] if len(rates) == 1 else rates, "data_seed": seed,
            "recording": {"model": model, "epochs": epochs_td, "optimizer": "adam", "lr": lr_td,
                          "batch_size": batch_size_td, "mode": "eval_pass"}}
    det = train_detector(seqs, is_noisy, **{"random_state": seed, "feature": feature, **(detector_kwargs or {})},
                         metadata=meta)
    t2 = time.perf_counter()
    det.metadata_["seconds"] = {"dynamics": round(t1 - t0, 2), "detector": round(t2 - t1, 2)}
    if out_path is None:
        folder = Path(__file__).resolve().parent / "pretrained"
        folder.mkdir(exist_ok=True)
        out_path = folder / PRETRAINED[feature][0]
    det.save(out_path)
    if verbose:
        print(f"dynamics {t1 - t0:.1f} s, detector {t2 - t1:.1f} s; held-out AUROC {det.metadata_['val_auroc']:.4f}; "
              f"saved {out_path}")
    return det


if __name__ == "__main__":  # pragma: no cover - produces the shipped file
    import argparse

    ap = argparse.ArgumentParser(description="Train the shipped LSTM noise detector on MNIST-1D dynamics.")
    ap.add_argument("--out", default=None, help="output file (default: the package's pretrained file of --feature)")
    ap.add_argument("--n-train", type=int, default=4000)
    ap.add_argument("--noise", default="symmetric:0.3", help="KIND:RATE, or several comma-separated")
    ap.add_argument("--feature", default="label_probability", choices=FEATURES)
    ap.add_argument("--epochs-td", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(1)  # tiny models: intra-op threads only add contention (measured, see train_pretrained)
    train_pretrained(a.out, n_train=a.n_train, noise=a.noise, epochs_td=a.epochs_td, seed=a.seed, feature=a.feature,
                     verbose=True)
