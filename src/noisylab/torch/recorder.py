"""Record training dynamics (per-example, per-epoch logits) to a memory-mapped file.

File format (version 1)
-----------------------
A recording named ``run.npy`` is two files:

``run.npy``
    A standard NumPy ``.npy`` array (``np.lib.format.open_memmap``) of dtype **float16** and
    shape **(n, E, K)**: n = number of *training* rows of the fit (validation rows excluded),
    E = ``TrainConfig.epochs`` (0-based epoch axis), K = model output width (``trainer.n_outputs_``;
    K+1 when a method adds a class, e.g. AUM threshold samples).  ``logits[i, e, :]`` are the raw
    logits (not probabilities) of the example ``ids[i]`` at epoch ``e``:

    * mode ``"train_forward"`` (AUM): the logits of the *training-mode* forward pass of the
      minibatch that contained the example, computed before that minibatch's optimizer step, on the
      augmented input.  Rows not visited in an epoch (``drop_last=True``) are NaN.
    * mode ``"eval_pass"`` (LSTM detector): logits of an extra pass over all training rows after the
      epoch's last update, in eval mode, without augmentation.

    Only epochs ``< epochs_completed`` (sidecar) hold data; later epochs are zeros (not yet
    written).  float16 holds |z| <= 65504: larger logits are stored as ±inf, and NaN logits (a
    diverged training) are stored as NaN; the recorder warns once per fit for each, naming the first
    epoch (and the largest |logit|), and the scorers of :mod:`noisylab.dynamics` refuse such epochs.
    Convert with ``softmax(logits.astype(np.float32), axis=-1)`` for probabilities.

``run.meta.npz`` (sidecar; replaced atomically after every epoch)
    ``format_version`` int64 scalar (1); ``mode`` str scalar; ``n_epochs`` (E), ``n_classes`` (K),
    ``epochs_completed`` int64 scalars; ``ids`` int64 (n,): row index of each recorded example in
    the ``X`` given to ``Trainer.fit``; ``labels`` int64 (n,): the given (noisy) labels used for
    training; and, when the recorder was given ``true_labels`` (for the full ``X``),
    ``true_labels`` int64 (n,) and ``is_noisy`` bool (n,) = ``labels != true_labels``.

Read both with :func:`load_dynamics`.  A resumed ``fit`` (checkpoint) reopens ``run.npy`` in
``r+`` mode and continues at the resumed epoch; epochs redone after a crash are overwritten with
identical values.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from .._validation import NoisylabInputError, check_option, warn_user
from ..dynamics import DYNAMICS_FORMAT_VERSION, MODES, read_dynamics, sidecar_path
from ..io import atomic_write
from .trainer import Callback, Trainer

__all__ = ["DynamicsRecorder", "load_dynamics", "sidecar_path", "DYNAMICS_FORMAT_VERSION", "MODES"]


def load_dynamics(path, mmap_mode: str = "r"):
    """Open a recording: ``(logits, meta)`` -- :func:`noisylab.dynamics.read_dynamics`.

    ``logits`` is the (n, E, K) float16 memmap; ``meta`` a dict with the sidecar fields (scalars as
    Python ``int``/``str``, arrays as numpy arrays).  Only ``logits[:, :meta["epochs_completed"]]``
    is meaningful.
    The format is defined, and read without torch, in :mod:`noisylab.dynamics`: one reader for
    both layers.
    """
    return read_dynamics(path, mmap_mode=mmap_mode)


class DynamicsRecorder(Callback):
    """Callback writing per-example, per-epoch logits of the training rows (see module docs).

    Parameters
    ----------
    path : str or Path
        Output ``.npy`` file (its sidecar is ``<stem>.meta.npz``); overwritten by a fresh fit,
        continued by a resumed one.
    mode : {"train_forward", "eval_pass"}, default="train_forward"
    true_labels : array-like (n_X,), optional
        True labels of the whole ``X`` given to ``fit`` (diagnostics only); stored with ``is_noisy``.

    Notes
    -----
    Cost: ``"train_forward"`` scatters each batch's logits into a (n, K) float16 buffer on the
    device (one indexed copy per batch) and writes it as one block per epoch; ``"eval_pass"`` adds
    one inference pass over the training rows per epoch, written in ``eval_batch_size`` blocks.
    """

    def __init__(self, path, mode: str = "train_forward", true_labels=None):
        self.path = path
        self.mode = mode
        self.true_labels = true_labels

    # ---------------------------------------------------------------------------------- hooks
    def on_train_begin(self, trainer: Trainer) -> None:
        check_option("mode", self.mode, MODES)
        p = Path(self.path)
        if not p.name.endswith(".npy"):
            raise NoisylabInputError(f"DynamicsRecorder path must end with .npy; got {p}.")
        if not p.parent.exists():
            raise NoisylabInputError(f"Output folder does not exist: {p.parent}")
        ids = trainer.train_indices_.astype(np.int64)
        n, E, K = len(ids), trainer.config.epochs, trainer.n_outputs_
        labels = trainer.y_[trainer.train_idx_t_].cpu().numpy().astype(np.int64)
        self._meta = {"format_version": DYNAMICS_FORMAT_VERSION, "mode": self.mode, "n_epochs": E,
                      "n_classes": K, "ids": ids, "labels": labels}
        if self.true_labels is not None:
            t = np.asarray(self.true_labels)
            if t.shape != (len(trainer.X_),) or t.dtype.kind not in "iu":
                raise NoisylabInputError(f"true_labels must be integer labels of shape ({len(trainer.X_)},) like y; "
                                         f"got {t.dtype} {t.shape}.")
            if t.size and (t.min() < 0 or t.max() >= K):
                raise NoisylabInputError(f"true_labels must lie in 0..{K - 1} (the model has {K} outputs); got "
                                         f"{t.min()}..{t.max()}.")
            self._meta["true_labels"] = t[ids].astype(np.int64)
            self._meta["is_noisy"] = self._meta["true_labels"] != labels
        start = trainer.start_epoch_
        if start > 0:
            try:
                logits, meta = load_dynamics(p, mmap_mode="r+")
            except NoisylabInputError as exc:
                raise NoisylabInputError(f"The training resumes at epoch {start} but its dynamics recording "
                                         f"cannot be continued: {exc}") from None
            if logits.shape != (n, E, K) or meta["mode"] != self.mode or not np.array_equal(meta["ids"], ids):
                raise NoisylabInputError(f"{p} does not belong to this training (shape {logits.shape}, mode "
                                         f"{meta['mode']!r}; expected {(n, E, K)}, {self.mode!r}).")
            self._mm = logits
        else:
            self._mm = np.lib.format.open_memmap(p, mode="w+", dtype=np.float16, shape=(n, E, K))
        self._write_meta(start)
        # Row of each example id in the recording (-1 for validation rows).
        pos = torch.full((len(trainer.X_),), -1, dtype=torch.long)
        pos[torch.from_numpy(ids)] = torch.arange(n)
        self._pos = pos.to(trainer.device_)
        self._buf = None
        self._warned = set()

    def _new_epoch_state(self, trainer: Trainer) -> None:
        n = len(trainer.train_indices_)
        self._visited = torch.zeros(n, dtype=torch.bool, device=trainer.device_)
        self._absmax = torch.zeros((), dtype=torch.float32, device=trainer.device_)

    def _track(self, logits: torch.Tensor) -> None:
        """Running max of |logit| before the float16 cast (on the device: no synchronisation)."""
        a = torch.nan_to_num(logits.detach().abs().float(), nan=0.0, posinf=float("inf"))
        self._absmax = torch.maximum(self._absmax, a.amax()) if a.numel() else self._absmax

    def on_epoch_begin(self, trainer: Trainer, epoch: int) -> None:
        self._new_epoch_state(trainer)
        if self.mode == "train_forward":
            self._buf = torch.full((len(trainer.train_indices_), trainer.n_outputs_), float("nan"),
                                   dtype=torch.float16, device=trainer.device_)

    def on_batch_end(self, trainer: Trainer, batch, outputs: dict) -> None:
        if self.mode != "train_forward":
            return
        logits = outputs.get("logits")
        if logits is None:
            raise NoisylabInputError(
                f"{type(trainer.strategy_).__name__}.train_step does not return 'logits'; DynamicsRecorder("
                "mode='train_forward') needs them (or use mode='eval_pass')."
            )
        rows = self._pos[batch[2]]
        self._buf[rows] = logits.detach().to(torch.float16)
        self._visited[rows] = True
        self._track(logits)

    def on_epoch_end(self, trainer: Trainer, metrics: dict) -> None:
        e = metrics["epoch"]
        if self.mode == "train_forward":
            arr = self._buf.cpu().numpy()
            self._mm[:, e, :] = arr
            self._buf = None
            self._check_finite(e, arr, self._visited.cpu().numpy())
        else:
            # One inference pass in eval_batch_size blocks into a (n, K) float16 buffer, then one
            # strided write of the epoch's column into the memmap.
            idx = trainer.train_idx_t_
            bs = trainer.config.eval_batch_size
            buf = torch.empty((len(idx), trainer.n_outputs_), dtype=torch.float16, device=trainer.device_)
            strat = trainer.strategy_
            with torch.inference_mode():
                for i in range(0, len(idx), bs):
                    out = strat.predict_logits(trainer.X_[idx[i:i + bs]])
                    buf[i:i + bs] = out
                    self._track(out)
            arr = buf.cpu().numpy()
            self._mm[:, e, :] = arr
            self._check_finite(e, arr, None)
        # No msync per epoch: the pages are in the shared page cache, so a killed process loses
        # nothing (the sidecar, replaced atomically after the data, says how many epochs are
        # valid); the file is flushed at the end of training.
        self._write_meta(e + 1)

    def on_train_end(self, trainer: Trainer) -> None:
        if getattr(self, "_mm", None) is not None:
            self._mm.flush()
            self._mm = None
            self._write_meta(int(getattr(self, "_epochs_written", 0)), durable=True)

    # ------------------------------------------------------------------------------- internals
    def _check_finite(self, epoch: int, arr: np.ndarray, visited) -> None:
        """Warn (once per fit and kind) when epoch ``epoch`` wrote NaN or ±inf logits for visited rows."""
        nan = np.isnan(arr).any(axis=1)
        inf = np.isinf(arr).any(axis=1)
        if visited is not None:  # train_forward: unvisited rows are NaN by design
            nan &= visited
            inf &= visited
        if nan.any() and "nan" not in self._warned:
            self._warned.add("nan")
            warn_user(f"DynamicsRecorder: epoch {epoch} wrote NaN logits for {int(nan.sum())} of {len(arr)} rows of "
                      f"{self.path} (the training diverged?); the dynamics scorers refuse the epochs affected.")
        if inf.any() and "inf" not in self._warned:
            self._warned.add("inf")
            big = float(self._absmax)
            why = ("the model's own logits are infinite (the training diverged?)" if math.isinf(big) else
                   f"the largest |logit| was {big:.6g}, beyond the float16 range of the recording (|z| <= 65504)")
            warn_user(f"DynamicsRecorder: epoch {epoch} wrote infinite logits for {int(inf.sum())} of {len(arr)} rows "
                      f"of {self.path}: {why}.  The dynamics scorers refuse them (except -inf on a non-label output); "
                      "keep the logits in range (e.g. a smaller logit scale).")

    def _write_meta(self, epochs_completed: int, durable: bool = False) -> None:
        self._epochs_written = epochs_completed
        arrays = {k: np.asarray(v) for k, v in self._meta.items()}
        arrays["epochs_completed"] = np.asarray(epochs_completed, dtype=np.int64)
        for k in ("format_version", "n_epochs", "n_classes"):
            arrays[k] = np.asarray(arrays[k], dtype=np.int64)
        # Per epoch without fsync (atomic for a killed process; the data pages are in the page
        # cache too); durably at the end of training.
        with atomic_write(sidecar_path(self.path), "wb", durable=durable) as fh:
            np.savez(fh, **arrays)
