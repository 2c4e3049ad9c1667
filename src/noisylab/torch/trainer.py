"""One trainer for every noisy-label method: strategies, callbacks, history, checkpoint/resume.

Design
------
* Data live as tensors **on the device**; every epoch the training rows are visited in the order
  of a permutation drawn from a dedicated ``torch.Generator`` (no DataLoader, no per-batch Python
  data loading).  A batch is ``(x, y, idx)``: inputs, *noisy* labels and the indices of the
  examples in the ``X`` given to :meth:`Trainer.fit` (so methods can keep per-example state).
* A :class:`Strategy` owns the model(s) and optimizer(s) and computes the update for one batch
  (:meth:`Strategy.train_step`).  :class:`CrossEntropy` (plain CE, one model, one optimizer) is
  the default; Co-teaching, MentorMix, IEG ... subclass :class:`Strategy`.
* :class:`Callback` hooks (skorch style): ``on_train_begin``, ``on_epoch_begin``,
  ``on_batch_begin``, ``on_batch_end``, ``on_epoch_end``, ``on_train_end``.
* The learning rate is a pure function of the epoch (:func:`lr_factor`); it is applied to every
  parameter group of every optimizer of the strategy as ``group["initial_lr"] * factor``, so no
  scheduler object (and no scheduler state) exists.

Reproducibility
---------------
``TrainConfig.random_state`` (an int, or None = fresh OS entropy, recorded as ``Trainer.seed_``)
seeds, through :class:`numpy.random.SeedSequence`, four independent streams: the stratified
validation split (numpy), model initialisation + dropout (the global torch RNG, used inside
:func:`torch.random.fork_rng` so the caller's global RNG state is left untouched), the batch
permutations (a CPU ``torch.Generator``) and the augmentation (a ``torch.Generator`` on the
device, passed to ``augment(x, generator)``).  Same seed, same data, same config ⇒ bit-identical
weights and history (except the wall-clock ``seconds`` column) on the same machine.
On CPU no global determinism flag is needed (the kernels used by small models are deterministic)
and none is set.  On CUDA, ``deterministic=True`` (default) sets
``torch.backends.cudnn.deterministic = True``, ``cudnn.benchmark = False`` and
``torch.use_deterministic_algorithms(True, warn_only=True)`` for the duration of ``fit`` (restored
afterwards); set ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` in the environment for deterministic cuBLAS.

Checkpoints
-----------
With ``checkpoint_dir``, after every ``checkpoint_every`` epochs (and after the last one) the file
``<checkpoint_dir>/checkpoint.pt`` is replaced atomically (written to a temporary file in the same
folder, fsynced, ``os.replace``).  It is a ``torch.save`` of a dict holding only tensors, ints,
floats, strings, lists and dicts (loadable with ``torch.load(..., weights_only=True)``)::

    format_version  int (1)
    config_hash     str   sha256 of the result-relevant config fields + strategy class
    data_hash       str   sha256 of n, X shape, the labels and the test-set shape
    seed            int   the seed actually used (random_state or the drawn one)
    epoch           int   number of completed epochs
    strategy        dict  Strategy.state_dict(): models, optimizers (incl. lr / initial_lr), extra
    rng             dict  torch_cpu (uint8 tensor), torch_cuda (uint8 tensor or absent),
                          shuffle (uint8 tensor), augment (uint8 tensor), numpy (JSON str of the
                          bit-generator state of Trainer.rng_)
    history         list of per-epoch dicts
    best            dict  epoch (int, -1 = none), val_acc (float), models (list of state dicts)
    callbacks       dict  {str(position): state} for callbacks whose state_dict() is not None

Calling :meth:`Trainer.fit` again with the same config (``checkpoint_dir`` included), strategy and
data resumes after the last saved epoch and ends with exactly the weights and history of an
uninterrupted run; a checkpoint written with a different config or data raises
:class:`~noisylab._validation.NoisylabInputError`.  A finished checkpoint makes ``fit`` only load
the final state.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import hashlib
import json
import math
import numbers
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._validation import NoisylabInputError, check_option
from ..io import atomic_write

__all__ = [
    "TrainConfig",
    "Strategy",
    "CrossEntropy",
    "Callback",
    "History",
    "Trainer",
    "lr_factor",
    "make_optimizer",
    "stratified_split",
    "validation_split",
    "default_milestones",
    "CHECKPOINT_NAME",
]

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_FORMAT_VERSION = 1
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "step", "linear_decay")
# Config fields that do not change the result of a training (left out of the config hash).
_NOT_HASHED = ("progress", "checkpoint_dir", "checkpoint_every")


# --------------------------------------------------------------------------------------- config
@dataclass
class TrainConfig:
    """Everything that defines one training run.

    Parameters
    ----------
    epochs : int, default=10
    batch_size : int, default=128
    optimizer : {"sgd", "adam", "adamw"}, default="sgd"
    lr : float, default=0.1
        Base learning rate (of the first optimizer; strategies may build others).
    momentum : float, default=0.9
        SGD momentum (ignored by Adam/AdamW).
    weight_decay : float, default=0.0
    nesterov : bool, default=False
        SGD only; needs ``momentum > 0``.
    schedule : {"constant", "cosine", "step", "linear_decay"}, default="constant"
        Per-epoch learning-rate multiplier, see :func:`lr_factor`.
    milestones : tuple of int, default=()
        ``"step"``: epochs (0-based, each ``< epochs``) at which the lr is multiplied by ``gamma``;
        required by ``"step"`` (there is no implicit default).  The usual ResNet recipe decays at
        50% and 75% of the training: :func:`default_milestones` gives ``(epochs // 2,
        3 * epochs // 4)``.
    gamma : float, default=0.1
        ``"step"`` decay factor.
    decay_start : int, default=0
        ``"linear_decay"``: first epoch of the linear decay (Co-teaching's ``epoch_decay_start``).
    warmup_epochs : int, default=0
        Linear warm-up: epoch ``e < warmup_epochs`` uses ``lr * (e + 1) / warmup_epochs``.
    drop_last : bool, default=False
        Skip the last incomplete batch of each epoch.
    val_fraction : float in [0, 1), default=0.0
        Fraction of the TRAINING data held out (stratified on the noisy labels) to select the
        epoch (``best_epoch_``) on noisy validation accuracy.  The test set is never used for that.
    device : str, default="auto"
        ``"auto"`` = CUDA when available, else CPU; or any ``torch.device`` string.
    deterministic : bool, default=True
        On CUDA, request deterministic kernels during ``fit`` (see module docs). No effect on CPU.
    random_state : int or None, default=0
        Seed of every random stream (see module docs); None draws one (kept in ``seed_``).
    augment : callable or None, default=None
        ``augment(x, generator) -> x`` applied on the device to each training batch (never to
        evaluation passes).  ``generator`` is a ``torch.Generator`` on the data's device; draw all
        randomness from it.  Its description enters the config hash: an ``Augment`` (every preset) by
        its ops and their settings, a ``functools.partial`` by its function and arguments, any other
        callable by its qualified name only.
    eval_batch_size : int, default=256
        Batch size of evaluation / prediction passes.  Small blocks keep the activations in cache:
        on the CPU an eval pass of the 1-D CNN over 4000 MNIST-1D examples took 38 ms with 256-row
        blocks and 160 ms with 1024-row blocks.
    progress : bool, default=False
        Show one tqdm bar over the epochs with the latest metrics.
    checkpoint_dir : str or Path or None, default=None
        Folder for ``checkpoint.pt`` (created if needed); None = no checkpoints.
    checkpoint_every : int, default=1
        Save every k epochs (and always after the last one).
    """

    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0
    nesterov: bool = False
    schedule: str = "constant"
    milestones: tuple = ()
    gamma: float = 0.1
    decay_start: int = 0
    warmup_epochs: int = 0
    drop_last: bool = False
    val_fraction: float = 0.0
    device: str = "auto"
    deterministic: bool = True
    random_state: int | None = 0
    augment: Callable | None = None
    eval_batch_size: int = 256
    progress: bool = False
    checkpoint_dir: str | os.PathLike | None = None
    checkpoint_every: int = 1

    def validate(self) -> TrainConfig:
        """Check every field; raise one :class:`NoisylabInputError` listing all problems."""
        errors: list[str] = []

        def pos_int(name, minimum=1):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < minimum:
                errors.append(f"{name} must be an int >= {minimum}; got {v!r}.")
                return False
            return True

        def real(name, low, high=math.inf, low_inclusive=True, high_inclusive=True):
            v = getattr(self, name)
            ok = not isinstance(v, bool) and isinstance(v, numbers.Real) and math.isfinite(v)
            ok = ok and (v >= low if low_inclusive else v > low) and (v <= high if high_inclusive else v < high)
            if not ok:
                lb, hb = ("[" if low_inclusive else "("), ("]" if high_inclusive else ")")
                errors.append(f"{name} must be a real number in {lb}{low}, {high}{hb}; got {v!r}.")

        def option(name, options):
            try:
                check_option(name, getattr(self, name), options)
            except NoisylabInputError as exc:
                errors.append(str(exc))
                return False
            return True

        ep_ok = pos_int("epochs")
        pos_int("batch_size")
        pos_int("eval_batch_size")
        pos_int("checkpoint_every")
        warm_ok = pos_int("warmup_epochs", 0)
        option("optimizer", OPTIMIZERS)
        sched_ok = option("schedule", SCHEDULES)
        real("lr", 0.0, low_inclusive=False)
        real("momentum", 0.0, 1.0, high_inclusive=False)
        real("weight_decay", 0.0)
        real("gamma", 0.0, low_inclusive=False)
        real("val_fraction", 0.0, 1.0, high_inclusive=False)
        for name in ("nesterov", "drop_last", "progress", "deterministic"):
            if not isinstance(getattr(self, name), bool):
                errors.append(f"{name} must be True or False; got {getattr(self, name)!r}.")
        if self.nesterov is True and (self.optimizer != "sgd" or not self.momentum):
            errors.append("nesterov=True needs optimizer='sgd' and momentum > 0.")
        if ep_ok and warm_ok and self.warmup_epochs >= self.epochs and self.warmup_epochs > 0:
            errors.append(f"warmup_epochs ({self.warmup_epochs}) must be smaller than epochs ({self.epochs}).")
        ms = self.milestones
        if not isinstance(ms, (tuple, list)) or any(
            isinstance(m, bool) or not isinstance(m, numbers.Integral) or m < 0 for m in ms
        ) or list(ms) != sorted(set(ms)):
            errors.append(f"milestones must be increasing non-negative ints; got {ms!r}.")
        elif sched_ok and self.schedule == "step" and not ms:
            dm = default_milestones(self.epochs) if ep_ok else ()
            example = f"milestones={dm} for epochs={self.epochs}" if dm else "milestones=(50, 75) for epochs=100"
            errors.append(f"schedule='step' needs milestones (the epochs at which the lr is multiplied by gamma), "
                          f"e.g. {example} (50% and 75% of the epochs, see default_milestones).")
        elif ep_ok and ms and ms[-1] >= self.epochs:
            errors.append(f"milestones must be smaller than epochs ({self.epochs}); got {tuple(ms)!r}: a milestone "
                          f">= epochs is never reached, so the lr would not decay there.")
        if isinstance(self.decay_start, bool) or not isinstance(self.decay_start, numbers.Integral) or (
            ep_ok and not 0 <= self.decay_start < self.epochs
        ):
            errors.append(f"decay_start must be an int in [0, epochs); got {self.decay_start!r}.")
        rs = self.random_state
        if rs is not None and (isinstance(rs, bool) or not isinstance(rs, numbers.Integral) or rs < 0):
            errors.append(f"random_state must be a non-negative int or None; got {rs!r} "
                          "(a numpy Generator cannot be checkpointed or hashed).")
        if self.augment is not None and not callable(self.augment):
            errors.append(f"augment must be None or a callable augment(x, generator); got {self.augment!r}.")
        try:
            _resolve_device(self.device)
        except (RuntimeError, ValueError, TypeError) as exc:
            errors.append(f"device {self.device!r} is not usable: {exc}")
        if errors:
            raise NoisylabInputError("Invalid TrainConfig:\n  - " + "\n  - ".join(errors))
        return self

    def hash_dict(self) -> dict:
        """The fields that determine the result, as JSON-able values (used for :meth:`hash`)."""
        out = {}
        for f in dataclasses.fields(self):
            if f.name in _NOT_HASHED:
                continue
            v = getattr(self, f.name)
            if f.name == "augment" and v is not None:
                v = _describe_callable(v)
            elif isinstance(v, tuple):
                v = list(v)
            out[f.name] = v
        return out

    def hash(self) -> str:
        """sha256 of :meth:`hash_dict` (JSON, sorted keys)."""
        return hashlib.sha256(json.dumps(self.hash_dict(), sort_keys=True, default=str).encode()).hexdigest()


def _resolve_device(device) -> torch.device:
    """``device`` as a usable :class:`torch.device`; RuntimeError (or ValueError / TypeError from
    :class:`torch.device`) saying why when it cannot hold tensors on this machine."""
    if device == "auto" or device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("CUDA is not available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise RuntimeError(f"this machine has {torch.cuda.device_count()} CUDA device(s) (cuda:0 .. "
                               f"cuda:{torch.cuda.device_count() - 1})")
        return dev
    if dev.type == "meta":
        raise RuntimeError("the 'meta' device holds no data and cannot train; use 'cpu', 'cuda' or 'auto'")
    if dev.type == "mps" and not (torch.backends.mps.is_available()):
        raise RuntimeError("the MPS backend is not available on this machine (it needs an Apple-silicon Mac and a "
                           "PyTorch built with MPS); use 'cpu' or 'auto'")
    try:  # any other backend (xpu, mps, privateuse ...): can it hold a tensor?
        torch.zeros(1, device=dev)
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError, AssertionError, ...
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise RuntimeError(f"the {dev.type!r} backend is not available on this machine ({first}); "
                           "use 'cpu' or 'auto'") from None
    return dev


def default_milestones(epochs: int) -> tuple:
    """Step-schedule milestones at 50% and 75% of ``epochs`` (the usual CIFAR ResNet recipe).

    Parameters
    ----------
    epochs : int >= 1

    Returns
    -------
    tuple of int
        ``(epochs // 2, 3 * epochs // 4)`` without duplicates and zeros, e.g. ``(50, 75)`` for
        100 epochs, ``(1,)`` for 2 epochs and ``()`` for 1 epoch; valid ``TrainConfig.milestones``.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral) or epochs < 1:
        raise NoisylabInputError(f"epochs must be an int >= 1; got {epochs!r}.")
    return tuple(sorted({m for m in (int(epochs) // 2, 3 * int(epochs) // 4) if m > 0}))


def lr_factor(config: TrainConfig, epoch: int) -> float:
    """Learning-rate multiplier of 0-based ``epoch`` (the lr is ``config.lr * lr_factor``).

    * warm-up (``e < W = warmup_epochs``): ``(e + 1) / W``; afterwards the schedule:
    * ``"constant"``: 1
    * ``"step"``: ``gamma ** (number of milestones m with e >= m)``
    * ``"cosine"``: ``0.5 * (1 + cos(pi * (e - W) / (epochs - W)))``
    * ``"linear_decay"``: 1 for ``e < decay_start``, else ``(epochs - e) / (epochs - decay_start)``
      (Co-teaching: ``lr_e = lr * (n_epoch - e) / (n_epoch - epoch_decay_start)``).
    """
    E, W = config.epochs, config.warmup_epochs
    if epoch < W:
        return (epoch + 1) / W
    s = config.schedule
    if s == "constant":
        return 1.0
    if s == "step":
        return float(config.gamma ** sum(epoch >= m for m in config.milestones))
    if s == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * (epoch - W) / (E - W)))
    if s == "linear_decay":
        if epoch < config.decay_start:
            return 1.0
        return (E - epoch) / (E - config.decay_start)
    raise NoisylabInputError(f"Unknown schedule {s!r}.")  # pragma: no cover - validated earlier


def make_optimizer(params, config: TrainConfig, lr: float | None = None) -> torch.optim.Optimizer:
    """The optimizer named by ``config.optimizer`` over ``params`` (lr defaults to ``config.lr``)."""
    lr = config.lr if lr is None else lr
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=config.momentum, weight_decay=config.weight_decay,
                               nesterov=config.nesterov)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=config.weight_decay)
    raise NoisylabInputError(f"Unknown optimizer {config.optimizer!r}.")  # pragma: no cover


def check_val_indices(val_indices, n: int) -> np.ndarray:
    """Validated, sorted int64 copy of explicit validation row positions (distinct, in ``0..n-1``)."""
    v = np.asarray(val_indices)
    if v.ndim != 1 or (v.size and (v.dtype.kind not in "iu" or v.min() < 0 or v.max() >= n)) \
            or len(np.unique(v)) != v.size:
        raise NoisylabInputError(f"val_indices must be distinct row positions in 0..{n - 1}; got dtype {v.dtype}, "
                                 f"shape {v.shape}.")
    return np.sort(v.astype(np.int64))


def validation_split(y, val_fraction: float, random_state: int):
    """``(train, val)`` row indices exactly as :meth:`Trainer.fit` splits ``y`` under an integer
    ``random_state`` and ``val_fraction`` (for methods that must hold out the same rows before their
    own pre-processing, e.g. INCV's selection)."""
    return stratified_split(np.asarray(y), val_fraction, np.random.default_rng(_seeds(int(random_state), 5)[0]))


def stratified_split(y: np.ndarray, val_fraction: float, rng: np.random.Generator):
    """Split row indices into (train, val), stratified on ``y``: each class puts
    ``round(val_fraction * n_class)`` of its rows (chosen at random; Python's round, half to
    even) into val, but at most ``n_class - 1``, so every class keeps at least one training row
    (a class with a single row stays in training).  Both sorted."""
    y = np.asarray(y)
    if val_fraction <= 0:
        return np.arange(len(y)), np.arange(0)
    val = []
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        k = int(round(val_fraction * len(rows)))
        if k:
            # draw the permutation even when the cap below empties it: the classes after this one
            # get the same rows as before the cap existed
            val.append(rng.permutation(rows)[:min(k, len(rows) - 1)])
    val = np.sort(np.concatenate(val)) if val else np.arange(0)
    mask = np.ones(len(y), dtype=bool)
    mask[val] = False
    return np.flatnonzero(mask), val


# ------------------------------------------------------------------------------------- strategy
class Strategy:
    """How one batch updates the model(s).  Subclass and override what differs.

    Life cycle: the trainer calls :meth:`setup` once per ``fit`` (inside a seeded RNG context, so
    weight initialisation is reproducible), then per epoch :meth:`on_epoch_begin`, per batch
    :meth:`train_step`, and :meth:`predict_logits` for evaluation.  Everything the strategy owns
    and that changes during training (models, optimizers, per-example buffers, numpy generators)
    must be returned by :meth:`state_dict` so checkpoints can restore it: only tensors, numbers,
    strings, lists and dicts (``torch.load(weights_only=True)``).

    Attributes set by the default :meth:`setup`: ``trainer``, ``model``, ``optimizer``,
    ``models`` (list) and ``optimizers`` (list).
    """

    trainer: Trainer
    models: list
    optimizers: list

    def setup(self, trainer: Trainer) -> None:
        """Build the model(s) and optimizer(s).  Default: one model from ``trainer.build_model()``
        and one optimizer from the config."""
        self.trainer = trainer
        self.model = trainer.build_model()
        self.optimizer = make_optimizer(self.model.parameters(), trainer.config)
        self.models = [self.model]
        self.optimizers = [self.optimizer]

    def on_epoch_begin(self, epoch: int) -> None:
        """Hook for per-epoch method state (e.g. Co-teaching's forget rate).  Default: nothing."""

    def train_mode(self) -> None:
        for m in self.models:
            m.train()

    def set_lr_factor(self, factor: float) -> None:
        """Set every param group's lr to ``initial_lr * factor`` (``initial_lr`` = lr at creation)."""
        for opt in self.optimizers:
            for g in opt.param_groups:
                g.setdefault("initial_lr", g["lr"])
                g["lr"] = g["initial_lr"] * factor

    def train_step(self, batch) -> dict:
        """Update on ``batch = (x, y, idx)``; return a dict of metrics.

        Required key ``"loss"`` (batch mean, float or 0-d tensor).  Optional ``"logits"``: a
        detached (B, K) tensor of the training-forward logits of the batch, in batch order; it
        gives ``train_acc`` and feeds the ``"train_forward"`` dynamics recorder.  Without logits,
        return ``"n_correct"`` for train_acc.  Any other scalar ``k`` is averaged over the epoch
        (weighted by batch size) into the history as ``"train_<k>"``.  Return 0-d tensors rather
        than floats on GPU (no device sync per batch).
        """
        raise NotImplementedError

    @torch.no_grad()
    def predict_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, K) of the first model in eval mode."""
        self.models[0].eval()
        return self.models[0](x)

    def state_dict(self) -> dict:
        return {"models": [m.state_dict() for m in self.models],
                "optimizers": [o.state_dict() for o in self.optimizers],
                "extra": self.extra_state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if len(state["models"]) != len(self.models) or len(state["optimizers"]) != len(self.optimizers):
            raise NoisylabInputError(
                f"checkpoint holds {len(state['models'])} model(s) / {len(state['optimizers'])} optimizer(s); "
                f"{type(self).__name__} has {len(self.models)} / {len(self.optimizers)}."
            )
        for m, s in zip(self.models, state["models"]):
            m.load_state_dict(s)
        for o, s in zip(self.optimizers, state["optimizers"]):
            o.load_state_dict(s)
        self.load_extra_state_dict(state.get("extra", {}))

    def extra_state_dict(self) -> dict:
        """Method-specific state beyond models/optimizers (override with load_extra_state_dict)."""
        return {}

    def load_extra_state_dict(self, state: dict) -> None:
        pass


class CrossEntropy(Strategy):
    """Plain cross-entropy on the (noisy) labels: the default strategy.

    Single-model loss methods (forward correction, bootstrapping ...) subclass it and override
    :meth:`loss` only; the optimisation step is this one.
    """

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean training loss of a batch."""
        return F.cross_entropy(logits, y)

    def train_step(self, batch) -> dict:
        x, y, _ = batch
        logits = self.model(x)
        loss = self.loss(logits, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.detach(), "logits": logits.detach()}


# ------------------------------------------------------------------------------------ callbacks
class Callback:
    """No-op hooks; override the ones you need.  ``metrics`` is the history row of the epoch.

    A callback with state that must survive a resume returns it from :meth:`state_dict`
    (checkpoint-safe types only) and restores it in :meth:`load_state_dict`.
    """

    def on_train_begin(self, trainer: Trainer) -> None: ...
    def on_epoch_begin(self, trainer: Trainer, epoch: int) -> None: ...
    def on_batch_begin(self, trainer: Trainer, batch) -> None: ...
    def on_batch_end(self, trainer: Trainer, batch, outputs: dict) -> None: ...
    def on_epoch_end(self, trainer: Trainer, metrics: dict) -> None: ...
    def on_train_end(self, trainer: Trainer) -> None: ...

    def state_dict(self) -> dict | None:
        return None

    def load_state_dict(self, state: dict) -> None:
        pass


class History(list):
    """Per-epoch rows (dicts): ``epoch`` (0-based), ``lr``, ``train_loss``, ``train_acc`` (on the
    noisy labels), ``val_acc`` (noisy validation split; only with ``val_fraction > 0``),
    ``test_acc`` (only when a test set is given), ``seconds`` (wall clock of the epoch, the only
    non-reproducible field) and any ``train_<k>`` the strategy reports."""

    def column(self, key: str) -> list:
        return [row.get(key) for row in self]

    def without_timing(self) -> list[dict]:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in self]


# -------------------------------------------------------------------------------------- trainer
def _seeds(seed: int, n: int) -> list[int]:
    return [int(s) for s in np.random.SeedSequence(seed).generate_state(n, dtype=np.uint64) % (2**63)]


def _strategy_params_digest(strategy) -> str:
    """A digest of a strategy's constructor parameters (its public attributes before ``setup``), so that
    resuming with other parameters (e.g. another forget rate) is refused like another config."""
    if strategy is None:
        return ""
    h = hashlib.sha256()
    for key in sorted(vars(strategy)):
        if key.startswith("_") or key.endswith("_") or key in ("model", "models", "optimizer", "optimizers"):
            continue
        value = vars(strategy)[key]
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
        if isinstance(value, np.ndarray):
            h.update(key.encode() + str(value.dtype).encode() + str(value.shape).encode() + value.tobytes())
        elif isinstance(value, (bool, int, float, str, tuple, list, type(None))):
            h.update(f"{key}={value!r};".encode())
    return h.hexdigest()


def _describe_callable(fn) -> str:
    """A stable text of an augmentation for the config hash: an :class:`~noisylab.torch.augment.Augment`
    by its ops and their settings (so presets differ), a ``functools.partial`` by its function and
    arguments, anything else by its qualified name."""
    from .augment import Augment

    if isinstance(fn, Augment):
        return repr(fn)
    if isinstance(fn, functools.partial):
        return (f"partial({_describe_callable(fn.func)}, args={fn.args!r}, "
                f"keywords={sorted(fn.keywords.items())!r})")
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', type(fn).__qualname__)}"


def _as_config(config) -> TrainConfig:
    """``config`` as a :class:`TrainConfig`: None gives the defaults, a mapping its fields."""
    if config is None:
        return TrainConfig()
    if isinstance(config, TrainConfig):
        return config
    if isinstance(config, Mapping):
        fields = [f.name for f in dataclasses.fields(TrainConfig)]
        for key in config:
            if key not in fields:
                check_option("TrainConfig field", key, fields)  # raises, with "Did you mean ...?"
        return TrainConfig(**config)
    raise NoisylabInputError(f"config must be a TrainConfig (or a dict of its fields); got {type(config).__name__}.")


def _load_checkpoint(path: Path) -> dict:
    """``torch.load`` of a checkpoint with the safe loader; anything unreadable is a clear error."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        raise NoisylabInputError(
            f"{path} is not a readable noisylab checkpoint ({type(e).__name__}); it may be truncated or "
            "written by something else.  Delete it to start over, or use another checkpoint_dir.") from e
    if not isinstance(ckpt, dict) or "config_hash" not in ckpt:
        raise NoisylabInputError(f"{path} is not a noisylab checkpoint (no config hash).  Delete it to start over, "
                                 "or use another checkpoint_dir.")
    return ckpt


class Trainer:
    """Train a model with a :class:`Strategy` and :class:`Callback` s.

    Parameters
    ----------
    model : torch.nn.Module or callable returning one
        A callable (e.g. ``functools.partial(make_model, "mlp", shape, K)``) is called inside the
        seeded RNG context, so its initial weights follow ``random_state``: layers built with the
        global torch RNG draw from the seeded one, and :func:`~noisylab.torch.models.make_model`
        called without a ``random_state`` takes its seed from it.  A factory with a fixed seed
        (``make_model(..., random_state=0)``) gives the same weights whatever ``random_state``
        is, and the same weights to both networks of a two-network strategy (Co-teaching).  A
        module instance is deep-copied at each ``fit`` (its current weights are the initial
        weights).
    config : TrainConfig or dict, optional
        Default ``TrainConfig()``.  A dict is read as ``TrainConfig(**config)`` (an unknown key is
        a :class:`~noisylab._validation.NoisylabInputError` naming the closest field).
    strategy : Strategy, optional
        Default :class:`CrossEntropy`.  Deep-copied at each ``fit`` (``strategy_`` is the live one).
    callbacks : sequence of Callback

    Attributes (after ``fit``)
    --------------------------
    history_ : History
    best_epoch_ : int or None
        0-based epoch with the highest noisy validation accuracy (first one on ties); None
        without a validation split.
    last_epoch_ : int
    seed_ : int
    device_ : torch.device
    strategy_ : Strategy
    train_indices_, val_indices_ : np.ndarray
        Rows of ``X`` used for training / validation.
    n_outputs_ : int
        Width of the model output (K, or K+1 for AUM's threshold class ...).
    start_epoch_ : int
        Epoch the last ``fit`` started at (> 0 when it resumed from a checkpoint).
    rng_ : numpy.random.Generator
        A seeded generator for strategies/callbacks; its state is checkpointed.
    """

    def __init__(self, model, config: TrainConfig | None = None, strategy: Strategy | None = None,
                 callbacks: Sequence[Callback] | None = ()):
        self.model = model
        self.config = _as_config(config)
        self.strategy = strategy
        self.callbacks = callbacks

    # ---------------------------------------------------------------- helpers for strategies
    def build_model(self) -> nn.Module:
        """A new model on the device (call from :meth:`Strategy.setup`; call again for a second net)."""
        if isinstance(self.model, nn.Module):
            m = copy.deepcopy(self.model)
        elif callable(self.model):
            from .models import _seed_from_torch_rng

            with _seed_from_torch_rng():
                m = self.model()
            if not isinstance(m, nn.Module):
                raise NoisylabInputError(f"model() must return a torch.nn.Module; got {type(m).__name__}.")
        else:
            raise NoisylabInputError(f"model must be an nn.Module or a callable returning one; got {self.model!r}.")
        return m.to(self.device_)

    @torch.no_grad()
    def predict_logits(self, X: torch.Tensor, which: str = "last") -> torch.Tensor:
        """Logits of ``X`` in eval mode, in ``eval_batch_size`` blocks, on the training device.

        ``X`` may live on any device: each block is moved to the training device (a no-op when it
        is already there), so a CPU tensor never has to fit in GPU memory as a whole.
        """
        with self._weights(which):
            bs = self.config.eval_batch_size
            dev = self.device_
            return torch.cat([self.strategy_.predict_logits(X[i:i + bs].to(dev))
                              for i in range(0, len(X), bs)])

    @contextlib.contextmanager
    def _weights(self, which):
        check_option("which", which, ("last", "best"))
        if which == "last":
            yield
            return
        if self.best_epoch_ is None:
            raise NoisylabInputError("which='best' needs a validation split (val_fraction > 0).")
        current = [copy.deepcopy(m.state_dict()) for m in self.strategy_.models]
        try:
            for m, s in zip(self.strategy_.models, self._best_models):
                m.load_state_dict(s)
            yield
        finally:
            for m, s in zip(self.strategy_.models, current):
                m.load_state_dict(s)

    # ------------------------------------------------------------------------------ public API
    def predict_proba(self, X, which: str = "last") -> np.ndarray:
        """Softmax probabilities (n, K) as float64 (rows sum to 1); ``which`` = "last" or "best"."""
        if not hasattr(self, "strategy_"):
            raise NoisylabInputError("This Trainer is not fitted yet; call fit(X, y) first.")
        Xt = self._as_tensor(X, "X")
        if tuple(Xt.shape[1:]) != self._x_shape:
            raise NoisylabInputError(f"X has example shape {tuple(Xt.shape[1:])}; the model was trained on "
                                     f"{self._x_shape}.")
        if not bool(torch.isfinite(Xt).all()):
            raise NoisylabInputError("X contains NaN or infinite values.")
        return torch.softmax(self.predict_logits(Xt, which).double(), dim=1).cpu().numpy()

    def predict(self, X, which: str = "last") -> np.ndarray:
        return self.predict_proba(X, which).argmax(axis=1)

    def fit(self, X, y, X_test=None, y_test=None, *, val_indices=None) -> Trainer:
        """Train on ``(X, y)`` (noisy labels); report test accuracy per epoch when a test set is given
        (never used for selection).  Resumes from ``checkpoint_dir`` when a checkpoint exists.

        ``val_indices`` (optional, positions in ``X``): these rows are the validation split instead
        of a ``val_fraction`` draw (which must then be 0); the other rows are trained on.
        """
        self.config = _as_config(self.config)
        cfg = self.config.validate()
        self._warned_diverged_ = False
        self.device_ = _resolve_device(cfg.device)
        X_np, y_np = self._check_xy(X, y, "X", "y")
        if val_indices is not None:
            if cfg.val_fraction:
                raise NoisylabInputError(f"Give val_indices or val_fraction, not both (val_fraction={cfg.val_fraction}).")
            val_indices = check_val_indices(val_indices, len(y_np))
        has_test = X_test is not None or y_test is not None
        if has_test:
            if X_test is None or y_test is None:
                raise NoisylabInputError("Give both X_test and y_test, or neither.")
            Xt_np, yt_np = self._check_xy(X_test, y_test, "X_test", "y_test")
            if Xt_np.shape[1:] != X_np.shape[1:]:
                raise NoisylabInputError(f"X_test examples have shape {Xt_np.shape[1:]}; X has {X_np.shape[1:]}.")
        self._x_shape = tuple(X_np.shape[1:])
        strategy_name = f"{type(self.strategy).__module__}.{type(self.strategy).__qualname__}" \
            if self.strategy is not None else "noisylab.torch.trainer.CrossEntropy"
        config_hash = hashlib.sha256((cfg.hash() + strategy_name + _strategy_params_digest(self.strategy))
                                     .encode()).hexdigest()
        data_hash = self._data_hash(X_np, y_np, Xt_np.shape if has_test else None, val_indices)

        ckpt_path = ckpt = None
        if cfg.checkpoint_dir is not None:
            ckpt_dir = Path(cfg.checkpoint_dir)
            if ckpt_dir.exists() and not ckpt_dir.is_dir():
                raise NoisylabInputError(f"checkpoint_dir {ckpt_dir} exists and is not a folder.")
            try:
                ckpt_dir.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise NoisylabInputError(f"cannot create checkpoint_dir {ckpt_dir}: {e.strerror or e}.") from e
            ckpt_path = ckpt_dir / CHECKPOINT_NAME
            if ckpt_path.exists():
                ckpt = _load_checkpoint(ckpt_path)
                if ckpt.get("config_hash") != config_hash:
                    raise NoisylabInputError(
                        f"{ckpt_path} was written by a training with a different configuration "
                        "(or strategy or strategy parameters); "
                        "refusing to resume.  Use another checkpoint_dir or delete the checkpoint."
                    )
                if ckpt.get("data_hash") != data_hash:
                    raise NoisylabInputError(
                        f"{ckpt_path} was written by a training on different data; refusing to resume."
                    )

        if ckpt is not None:
            seed = int(ckpt["seed"])
        elif cfg.random_state is not None:
            seed = int(cfg.random_state)
        else:
            seed = int(np.random.SeedSequence().generate_state(1, dtype=np.uint64)[0] % (2**63))
        self.seed_ = seed
        _, s_torch, s_shuffle, s_aug, s_np = _seeds(seed, 5)  # the first seeds the split

        if val_indices is None:
            train_idx, val_idx = validation_split(y_np, cfg.val_fraction, seed)
        else:
            train_idx, val_idx = np.setdiff1d(np.arange(len(y_np)), val_indices), val_indices
        if len(train_idx) == 0:
            raise NoisylabInputError("val_indices cover every row: no training examples are left."
                                     if val_indices is not None else "val_fraction leaves no training examples.")
        if cfg.drop_last and len(train_idx) < cfg.batch_size:
            raise NoisylabInputError(f"drop_last=True with batch_size={cfg.batch_size} > {len(train_idx)} training "
                                     "examples would train on nothing.")
        self.train_indices_, self.val_indices_ = train_idx, val_idx
        dev = self.device_
        self.X_ = torch.from_numpy(X_np).to(dev)
        self.y_ = torch.from_numpy(y_np).to(dev)
        self.train_idx_t_ = torch.from_numpy(train_idx).to(dev)
        self.val_idx_t_ = torch.from_numpy(val_idx).to(dev)
        self.X_test_ = torch.from_numpy(Xt_np).to(dev) if has_test else None
        self.y_test_ = torch.from_numpy(yt_np).to(dev) if has_test else None

        cuda_devices = [dev.index if dev.index is not None else torch.cuda.current_device()] \
            if dev.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda_devices), self._determinism(dev):
            torch.manual_seed(s_torch)
            self.shuffle_gen_ = torch.Generator(device="cpu").manual_seed(s_shuffle)
            self.augment_gen_ = torch.Generator(device=dev).manual_seed(s_aug)
            self.rng_ = np.random.default_rng(s_np)
            self.strategy_ = copy.deepcopy(self.strategy) if self.strategy is not None else CrossEntropy()
            self.strategy_.setup(self)
            self.n_outputs_ = int(self.predict_logits(self.X_[:1]).shape[1])
            if int(y_np.max()) >= self.n_outputs_ or (has_test and int(yt_np.max()) >= self.n_outputs_):
                raise NoisylabInputError(f"labels go up to {int(max(y_np.max(), yt_np.max() if has_test else 0))} "
                                         f"but the model has only {self.n_outputs_} outputs.")
            self.history_ = History()
            self.best_epoch_, self._best_val, self._best_models = None, -math.inf, None
            self.start_epoch_ = 0
            if ckpt is not None:
                self._restore(ckpt, dev)
            self._config_hash, self._data_hash_value = config_hash, data_hash
            self._train(cfg, ckpt_path)
        return self

    # ------------------------------------------------------------------------------- internals
    def _train(self, cfg: TrainConfig, ckpt_path):
        cbs = list(self.callbacks or ())
        for cb in cbs:
            cb.on_train_begin(self)
        bar = None
        if cfg.progress:
            from tqdm import tqdm

            bar = tqdm(total=cfg.epochs, initial=self.start_epoch_, desc="epochs", unit="epoch", dynamic_ncols=True)
        try:
            for epoch in range(self.start_epoch_, cfg.epochs):
                self.epoch_ = epoch
                metrics = self._run_epoch(cfg, epoch, cbs)
                self.history_.append(metrics)
                val = metrics.get("val_acc")
                if val is not None and val > self._best_val:
                    self.best_epoch_, self._best_val = epoch, val
                    self._best_models = [{k: v.detach().clone().cpu() for k, v in m.state_dict().items()}
                                         for m in self.strategy_.models]
                for cb in cbs:
                    cb.on_epoch_end(self, metrics)
                if ckpt_path is not None and ((epoch + 1) % cfg.checkpoint_every == 0 or epoch + 1 == cfg.epochs):
                    self._save(ckpt_path, epoch + 1)
                if bar is not None:
                    bar.set_postfix({k: f"{v:.4g}" for k, v in metrics.items() if k not in ("epoch",)}, refresh=False)
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        self.last_epoch_ = cfg.epochs - 1
        for cb in cbs:
            cb.on_train_end(self)

    def _run_epoch(self, cfg, epoch, cbs) -> dict:
        t0 = time.perf_counter()
        strat = self.strategy_
        factor = lr_factor(cfg, epoch)
        strat.set_lr_factor(factor)
        strat.on_epoch_begin(epoch)
        for cb in cbs:
            cb.on_epoch_begin(self, epoch)
        strat.train_mode()
        n = len(self.train_indices_)
        order = self.train_idx_t_[torch.randperm(n, generator=self.shuffle_gen_).to(self.device_)]
        bs = cfg.batch_size
        stop = (n // bs) * bs if cfg.drop_last else n
        sums: dict[str, Any] = {}
        seen = 0
        correct = None
        for start in range(0, stop, bs):
            idx = order[start:start + bs]
            x = self.X_[idx]
            y = self.y_[idx]
            if cfg.augment is not None:
                x = cfg.augment(x, self.augment_gen_)
            batch = (x, y, idx)
            for cb in cbs:
                cb.on_batch_begin(self, batch)
            out = strat.train_step(batch)
            b = len(idx)
            seen += b
            logits = out.get("logits")
            if logits is not None:
                c = (logits.argmax(1) == y).sum()
            else:
                c = out.get("n_correct")
            if c is not None:
                correct = c if correct is None else correct + c
            for k, v in out.items():
                if k in ("logits", "n_correct"):
                    continue
                v = v.detach() if isinstance(v, torch.Tensor) else v
                sums[k] = sums[k] + v * b if k in sums else v * b
            for cb in cbs:
                cb.on_batch_end(self, batch, out)
        metrics: dict[str, Any] = {"epoch": epoch, "lr": float(strat.optimizers[0].param_groups[0]["lr"])
                                   if strat.optimizers else cfg.lr * factor}
        for k, v in sums.items():
            metrics["train_loss" if k == "loss" else f"train_{k}"] = float(v) / max(seen, 1)
        metrics["train_acc"] = float(correct) / seen if correct is not None and seen else float("nan")
        loss = metrics.get("train_loss")
        if loss is not None and not math.isfinite(loss) and not getattr(self, "_warned_diverged_", False):
            self._warned_diverged_ = True  # once per fit
            from .._validation import warn_user

            warn_user(f"epoch {epoch}: the training loss is {loss}; the training diverged (try a lower learning "
                      "rate). Later epochs and any recorded dynamics are not usable.", RuntimeWarning)
        if len(self.val_indices_):
            metrics["val_acc"] = self._accuracy(self.X_[self.val_idx_t_], self.y_[self.val_idx_t_])
        if self.X_test_ is not None:
            metrics["test_acc"] = self._accuracy(self.X_test_, self.y_test_)
        metrics["seconds"] = time.perf_counter() - t0
        return metrics

    @torch.no_grad()
    def _accuracy(self, X, y) -> float:
        bs = self.config.eval_batch_size
        correct = sum((self.strategy_.predict_logits(X[i:i + bs]).argmax(1) == y[i:i + bs]).sum()
                      for i in range(0, len(X), bs))
        return float(correct) / len(X)

    def _rng_state(self) -> dict:
        st = {"torch_cpu": torch.get_rng_state(), "shuffle": self.shuffle_gen_.get_state(),
              "augment": self.augment_gen_.get_state(),
              "numpy": json.dumps(self.rng_.bit_generator.state)}
        if self.device_.type == "cuda":
            st["torch_cuda"] = torch.cuda.get_rng_state(self.device_)
        return st

    def _save(self, path: Path, epochs_done: int):
        cb_states = {}
        for i, cb in enumerate(self.callbacks or ()):
            s = cb.state_dict()
            if s is not None:
                cb_states[str(i)] = s
        state = {
            "format_version": CHECKPOINT_FORMAT_VERSION,
            "config_hash": self._config_hash,
            "data_hash": self._data_hash_value,
            "seed": self.seed_,
            "epoch": epochs_done,
            "strategy": self.strategy_.state_dict(),
            "rng": self._rng_state(),
            "history": [dict(r) for r in self.history_],
            "best": {"epoch": -1 if self.best_epoch_ is None else self.best_epoch_,
                     "val_acc": float(self._best_val) if self.best_epoch_ is not None else 0.0,
                     "models": self._best_models or []},
            "callbacks": cb_states,
        }
        with atomic_write(path, "wb") as fh:
            torch.save(state, fh)

    def _restore(self, ckpt: dict, dev):
        if ckpt.get("format_version") != CHECKPOINT_FORMAT_VERSION:
            raise NoisylabInputError(f"Unsupported checkpoint format {ckpt.get('format_version')!r}.")
        # Tensors stay on the CPU: load_state_dict copies model tensors onto their parameters and
        # optimizers place their state themselves; strategies move their extra state as needed.
        try:
            self.strategy_.load_state_dict(ckpt["strategy"])
        except (RuntimeError, KeyError, ValueError) as e:  # e.g. another architecture: size mismatch
            path = Path(self.config.checkpoint_dir) / CHECKPOINT_NAME
            lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
            first = next((ln for ln in lines if "size mismatch" in ln or "Missing key" in ln or "Unexpected key" in ln),
                         lines[0] if lines else type(e).__name__)
            raise NoisylabInputError(
                f"{path} does not fit this model ({first}); it was probably written for another model "
                "architecture.  Use another checkpoint_dir or delete the checkpoint.") from e
        rng = ckpt["rng"]
        torch.set_rng_state(rng["torch_cpu"])
        if dev.type == "cuda" and "torch_cuda" in rng:
            torch.cuda.set_rng_state(rng["torch_cuda"], dev)
        self.shuffle_gen_.set_state(rng["shuffle"])
        self.augment_gen_.set_state(rng["augment"])
        self.rng_.bit_generator.state = json.loads(rng["numpy"])
        self.history_ = History(dict(r) for r in ckpt["history"])
        best = ckpt["best"]
        if best["epoch"] >= 0:
            self.best_epoch_, self._best_val, self._best_models = best["epoch"], best["val_acc"], best["models"]
        for i, cb in enumerate(self.callbacks or ()):
            if str(i) in ckpt.get("callbacks", {}):
                cb.load_state_dict(ckpt["callbacks"][str(i)])
        self.start_epoch_ = int(ckpt["epoch"])

    @contextlib.contextmanager
    def _determinism(self, dev):
        if dev.type != "cuda" or not self.config.deterministic:
            yield
            return
        old = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
               torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
        torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            yield
        finally:
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = old[0], old[1]
            torch.use_deterministic_algorithms(old[2], warn_only=old[3])

    @staticmethod
    def _as_tensor(X, name):
        if isinstance(X, torch.Tensor):
            X = X.detach().cpu().numpy()
        X = np.asarray(X)
        if X.dtype.kind not in "fiub":
            raise NoisylabInputError(f"{name} must be numeric; got dtype {X.dtype}.")
        if X.ndim < 2 or X.shape[0] == 0:
            raise NoisylabInputError(f"{name} must have shape (n, *example_shape) with n >= 1; got {X.shape}.")
        return torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))

    def _check_xy(self, X, y, xname, yname):
        Xt = self._as_tensor(X, xname).numpy()
        if not np.all(np.isfinite(Xt)):
            raise NoisylabInputError(f"{xname} contains NaN or infinite values.")
        y = np.asarray(y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else y)
        if y.ndim != 1 or y.dtype.kind not in "iu" or (y.size and y.min() < 0):
            raise NoisylabInputError(f"{yname} must be a 1-D array of non-negative integer labels; got dtype "
                                     f"{y.dtype}, shape {y.shape}.")
        if len(y) != len(Xt):
            raise NoisylabInputError(f"{xname} has {len(Xt)} rows but {yname} has {len(y)} labels.")
        return Xt, y.astype(np.int64)

    @staticmethod
    def _data_hash(X, y, test_shape, val_indices=None):
        h = hashlib.sha256()
        h.update(repr((X.shape, test_shape)).encode())
        if val_indices is not None:
            h.update(b"val" + np.ascontiguousarray(val_indices, dtype=np.int64).tobytes())
        h.update(np.ascontiguousarray(y).tobytes())
        # A cheap fingerprint of X: up to 4096 evenly spaced rows.
        rows = X[:: max(1, len(X) // 4096)]
        h.update(np.ascontiguousarray(rows).tobytes())
        return h.hexdigest()

