"""Scores from training dynamics: AUM (Pleiss et al., NeurIPS 2020) and the data-map / forgetting /
loss baselines, computed from a recording of per-example, per-epoch logits.

Numpy only: this module never imports torch, so recordings written by
:class:`noisylab.torch.recorder.DynamicsRecorder` can be scored on a machine without PyTorch.

Input
-----
``logits``: an array of shape **(n, E, K)** (n examples, E epochs, K outputs), usually the float16
memory-mapped file of a recording (:func:`read_dynamics`); float32/float64 arrays work too.
``logits[i, e]`` is the logit vector of example ``i`` at epoch ``e``.  An epoch in which a row is NaN
in **every** output counts as **not visited** for that row (``"train_forward"`` recordings with
``drop_last=True``) and is left out of every mean.  Every function walks the rows in blocks (about
4 MiB of float32 work per block; ``block_rows`` overrides it) and upcasts one block at a time, so a
recording larger than memory is scored with bounded memory (pages of a memory-mapped block are
dropped from the process after use).  Results do not depend on the block size.

NaN and infinite logits
-----------------------
For a recording, other NaN logits are a diverged training or a damaged file, and every function
raises :class:`~noisylab._validation.NoisylabInputError` naming the epochs affected (no score is
computed from the epochs that are left) when ``mode`` (the recording's ``meta["mode"]``;
:func:`dynamics_scores` passes it) is given: a row NaN in only some outputs, an epoch in which every
row is NaN, any NaN in an ``"eval_pass"`` recording (that pass covers every row), and in a
``"train_forward"`` recording an epoch with at least half of the rows NaN (``drop_last`` leaves
``n mod batch_size < n / 2`` rows unvisited per epoch; a run that diverges within an epoch is
caught from its next, all-NaN epoch on, and the recorder warns at record time).  Score the epochs before the divergence with ``epochs_completed``.
Without ``mode`` (plain arrays) a row-epoch holding any NaN counts as not visited, as before.
Infinite logits (float16 overflow at |z| > 65504, or divergence) are refused, except ``-inf`` on
outputs other than the given label while the label logit and some other output stay finite: the
margin and ``softmax(z)[ỹ]`` are then well defined.

Epoch window
------------
Only epochs ``skip_epochs <= e < epochs_completed`` enter a score.  ``epochs_completed`` defaults
to E (a recording's sidecar knows how many epochs are filled; :func:`dynamics_scores` uses it).
AUM skips epoch 0 by default (``skip_epochs=1``, as the AUM code); the baselines use every epoch.

Score direction
---------------
As in :mod:`noisylab.detect.rank`: a **label-quality score, HIGHER = label more likely CLEAN**.
:func:`aum_scores` and :func:`confidence` already point that way; :func:`mean_loss` and
:func:`forgetting_events` are raw statistics where HIGHER = more likely MISLABELLED;
:func:`dynamics_scores` always returns the label-quality direction (it negates those two).  For a
noise score (e.g. ROC-AUC with positive class = noisy) use ``-dynamics_scores(...)``.
:func:`variability` (std of p(ỹ) over epochs, the second data-map axis) has no single direction
for label noise and is not offered by :func:`dynamics_scores`.

AUM flags (§7.3 of METHODS.md)
------------------------------
Threshold samples (relabelled to an extra class C) give a null distribution of AUMs.  The AUM
code flags a regular example as mislabelled when more than ``1 - percentile/100`` (1%) of the
threshold samples' AUMs are **strictly larger** than its AUM (:func:`aum_flags`); the paper says
"AUM below the 99th percentile α of the threshold AUMs".  :func:`aum_threshold` returns α as the
order statistic for which both statements are the same rule, ties included (``AUM < α`` ⟺
flagged); numpy's default *linearly interpolated* percentile differs from it for AUMs that fall
between two neighbouring order statistics.  With several runs (disjoint threshold sets), an
example is flagged when it is flagged in every run in which it was a regular example
(:func:`combine_flags`).
"""
from __future__ import annotations

import numbers
import os
import zipfile
from pathlib import Path

import numpy as np

from ._chunks import Chunked
from ._validation import NoisylabInputError, check_labels, check_option, warn_user

__all__ = [
    "DYNAMICS_FORMAT_VERSION",
    "DYNAMICS_METHODS",
    "MODES",
    "aum_flags",
    "aum_scores",
    "aum_threshold",
    "combine_flags",
    "confidence",
    "dynamics_scores",
    "forgetting_events",
    "label_probability_sequences",
    "margins",
    "mean_loss",
    "read_dynamics",
    "sidecar_path",
    "variability",
]

#: Version of the recording format read by :func:`read_dynamics` (the recorder writes the same).
DYNAMICS_FORMAT_VERSION = 1
#: Recording modes (``"train_forward"``: AUM; ``"eval_pass"``: the LSTM detector's input).
MODES = ("train_forward", "eval_pass")
#: Methods of :func:`dynamics_scores`.
DYNAMICS_METHODS = ("aum", "confidence", "mean_loss", "forgetting_events")

#: Bytes of float32 work per row block (a block of the float16 file is half of it).
_BLOCK_BYTES = 4 << 20


# ------------------------------------------------------------------------------------ reading
def sidecar_path(path) -> Path:
    """``run.npy`` -> ``run.meta.npz`` (the recording's sidecar)."""
    p = Path(path)
    return p.with_name(p.name[:-4] + ".meta.npz") if p.name.endswith(".npy") else p.with_name(p.name + ".meta.npz")


def read_dynamics(path, mmap_mode: str = "r"):
    """Open a dynamics recording without PyTorch: ``(logits, meta)``.

    The numpy twin of :func:`noisylab.torch.recorder.load_dynamics` (same file format, same checks,
    plus checks of the sidecar's arrays).

    Parameters
    ----------
    path : str or Path
        The recording's ``.npy`` file; its sidecar ``<stem>.meta.npz`` must lie beside it.
    mmap_mode : {"r", "r+", "c"}, default="r"

    Returns
    -------
    logits : np.memmap of shape (n, E, K), float16
        Only ``logits[:, :meta["epochs_completed"]]`` holds data.
    meta : dict
        ``format_version``, ``mode``, ``n_epochs``, ``n_classes``, ``epochs_completed`` (Python
        scalars), ``ids``, ``labels`` (int64 (n,)) and, when recorded, ``true_labels``, ``is_noisy``.

    Raises
    ------
    NoisylabInputError
        Missing file or sidecar, unknown format version or mode, logits not float16 of shape
        ``(len(ids), n_epochs, n_classes)``, ``labels``/``ids`` of the wrong shape, labels outside
        ``0..n_classes-1`` or ``epochs_completed`` outside ``0..n_epochs``.
    """
    check_option("mmap_mode", mmap_mode, ("r", "r+", "c"))
    p = Path(path)
    side = sidecar_path(p)
    if not p.exists() or not side.exists():
        raise NoisylabInputError(f"Dynamics recording not found: need {p} and {side}.")
    try:
        logits = np.load(p, mmap_mode=mmap_mode, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise NoisylabInputError(f"{p} is not a readable .npy dynamics array ({type(exc).__name__}); it is damaged "
                                 "or not a recording.") from None
    meta = {}
    try:
        with np.load(side, allow_pickle=False) as z:
            for k in z.files:
                v = z[k]
                meta[k] = v.item() if v.ndim == 0 else v
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise NoisylabInputError(f"{side} is not a readable recording sidecar ({type(exc).__name__}): damaged, or it "
                                 "holds object arrays, which are refused.") from None
    for k in ("format_version", "mode", "n_epochs", "n_classes", "epochs_completed"):
        if k in meta and isinstance(meta[k], np.ndarray):
            raise NoisylabInputError(f"{side}: field {k} must be a single value; got an array of shape "
                                     f"{meta[k].shape}.")
    for k in ("n_epochs", "n_classes"):
        if k in meta and (isinstance(meta[k], bool) or not isinstance(meta[k], numbers.Integral) or meta[k] < 1):
            raise NoisylabInputError(f"{side}: {k} must be a positive int; got {meta[k]!r}.")
    if meta.get("format_version") != DYNAMICS_FORMAT_VERSION:
        raise NoisylabInputError(f"{side}: unsupported dynamics format version {meta.get('format_version')!r}; "
                                 f"this reader knows version {DYNAMICS_FORMAT_VERSION}.")
    missing = [k for k in ("mode", "n_epochs", "n_classes", "epochs_completed", "ids", "labels") if k not in meta]
    if missing:
        raise NoisylabInputError(f"{side}: sidecar lacks the field(s) {', '.join(missing)}.")
    if meta["mode"] not in MODES:
        raise NoisylabInputError(f"{side}: unknown recording mode {meta['mode']!r}; expected one of {MODES}.")
    ids = np.asarray(meta["ids"])
    expected = (len(ids), meta["n_epochs"], meta["n_classes"])
    if logits.shape != expected or logits.dtype != np.float16:
        raise NoisylabInputError(f"{p}: expected float16 logits of shape {expected}; got {logits.dtype} "
                                 f"{logits.shape}.")
    labels = np.asarray(meta["labels"])
    if ids.ndim != 1 or labels.shape != ids.shape or labels.dtype.kind not in "iu" or ids.dtype.kind not in "iu":
        raise NoisylabInputError(f"{side}: ids and labels must be integer arrays of shape ({len(ids)},); got "
                                 f"ids {ids.dtype} {ids.shape}, labels {labels.dtype} {labels.shape}.")
    if labels.size and (labels.min() < 0 or labels.max() >= meta["n_classes"]):
        raise NoisylabInputError(f"{side}: labels must lie in 0..{meta['n_classes'] - 1}; got "
                                 f"{labels.min()}..{labels.max()}.")
    if "true_labels" in meta:
        t = np.asarray(meta["true_labels"])
        if t.shape != ids.shape or t.dtype.kind not in "iu" or (t.size and (t.min() < 0 or t.max() >= meta["n_classes"])):
            raise NoisylabInputError(f"{side}: true_labels must be integers in 0..{meta['n_classes'] - 1} of shape "
                                     f"({len(ids)},); got {t.dtype} {t.shape}"
                                     + (f", values {t.min()}..{t.max()}." if t.size and t.dtype.kind in "iu" else "."))
        if "is_noisy" in meta and not np.array_equal(np.asarray(meta["is_noisy"]), t != labels):
            raise NoisylabInputError(f"{side}: is_noisy disagrees with true_labels != labels.")
    ec = meta["epochs_completed"]
    if isinstance(ec, bool) or not isinstance(ec, numbers.Integral) or not 0 <= ec <= meta["n_epochs"]:
        raise NoisylabInputError(f"{side}: epochs_completed must be an int in [0, {meta['n_epochs']}]; got {ec!r}.")
    return logits, meta


# --------------------------------------------------------------------------------- validation
def _check_logits(logits):
    if isinstance(logits, (str, bytes, os.PathLike)):
        raise NoisylabInputError("logits must be an array of shape (n, E, K); got a path. "
                                 "Open a recording with read_dynamics(path) or use dynamics_scores(path).")
    if not isinstance(logits, np.ndarray):
        logits = np.asarray(logits)
    if logits.dtype.kind != "f":
        raise NoisylabInputError(f"logits must be a float array (float16/32/64); got dtype {logits.dtype}.")
    if logits.ndim != 3:
        raise NoisylabInputError(f"logits must have shape (n_examples, n_epochs, n_outputs); got shape "
                                 f"{logits.shape}.")
    n, E, K = logits.shape
    if n == 0 or E == 0:
        raise NoisylabInputError(f"logits is empty (shape {logits.shape}); expected at least one example and epoch.")
    if K < 2:
        raise NoisylabInputError(f"logits must have at least 2 outputs (last axis); got shape {logits.shape}.")
    return logits


def _check_int(name, value, low, high=None):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low or (
            high is not None and value > high):
        rng = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise NoisylabInputError(f"{name} must be an int {rng}; got {value!r}.")
    return int(value)


def _prepare(logits, labels, skip_epochs, epochs_completed, block_rows, mode=None):
    """Validated ``(logits, labels, lo, hi, block_rows)``; the epoch window is ``[lo, hi)``."""
    _check_mode(mode)
    logits = _check_logits(logits)
    n, E, K = logits.shape
    y = check_labels(labels, n_classes=K, n_classes_from=f"logits have {K} outputs")
    if y.shape[0] != n:
        raise NoisylabInputError(f"labels has {y.shape[0]} entries but logits has {n} rows.")
    hi = E if epochs_completed is None else _check_int("epochs_completed", epochs_completed, 0, E)
    lo = _check_int("skip_epochs", skip_epochs, 0)
    if lo >= hi:
        raise NoisylabInputError(f"No epoch to score: skip_epochs={lo} but only {hi} epoch(s) recorded "
                                 f"(epochs_completed); need skip_epochs < epochs_completed.")
    if block_rows is None:
        block_rows = max(1, _BLOCK_BYTES // (4 * (hi - lo) * K))
    else:
        block_rows = _check_int("block_rows", block_rows, 1)
    return logits, y, lo, hi, block_rows


def _epochs_text(epochs) -> str:
    """``"3, 4, 5"`` (the first 10, then ``"... (k in all)"``)."""
    e = [int(v) for v in epochs]
    return ", ".join(map(str, e[:10])) + (f", ... ({len(e)} in all)" if len(e) > 10 else "")


def _check_mode(mode):
    return None if mode is None else check_option("mode", mode, MODES)


def _check_inf(z, yy, start, lo):
    """Raise unless every infinite logit of the block is a ``-inf`` on a non-label output of a row-epoch
    that keeps a finite label logit and a finite other output (then every score is well defined)."""
    m, W, _ = z.shape
    zy = np.take_along_axis(z, np.broadcast_to(yy[:, None, None], (m, W, 1)), axis=2)[..., 0]
    neg = np.isneginf(z).sum(axis=2)
    bad = np.isposinf(z).any(axis=2) | ~np.isfinite(zy) | (neg >= z.shape[2] - 1)
    bad &= np.isinf(z).any(axis=2)
    if bad.any():
        r, e = np.argwhere(bad)[0]
        raise NoisylabInputError(f"logits contain an infinite value (float16 overflow, |logit| > 65504, or a diverged "
                                 f"training?) at row {start + int(r)}, epoch {lo + int(e)}; a score needs a finite "
                                 "label logit, no +inf and at least one finite other output.")


def _run(logits, y, lo, hi, block_rows, fn, mode=None, require_visited=False):
    """``fn(start, z, yy)`` over row blocks; ``z`` a float32 copy (m, hi-lo, K) of the block's window.

    NaN checks (over all blocks, so they do not depend on the block size) for a recording's ``mode``:
    a row-epoch with NaN in only some outputs is damage; a whole-row NaN means "not visited"
    (train_forward with drop_last) except in an ``"eval_pass"`` recording, in an epoch where every row
    is NaN, or (``"train_forward"``) in an epoch with at least half of the rows NaN (drop_last leaves
    ``n mod batch_size < n / 2`` rows unvisited per epoch).
    With ``mode=None`` (plain arrays) a NaN anywhere in a row-epoch means "not visited" (documented).  ``require_visited``: raise for rows with no visited epoch in the window.
    """
    W = hi - lo
    st = {"rows": np.zeros(W, dtype=np.int64), "partial": np.zeros(W, dtype=bool), "first_partial": None,
          "first_nan": None, "n_never": 0, "first_never": None}

    def task(start, block, yy):
        z = np.array(block[:, lo:hi], dtype=np.float32)  # a copy: block functions may write into it
        nan = np.isnan(z)
        if nan.any():
            whole = nan.any(axis=2)  # "not visited" (plain arrays: any NaN, as documented)
            part = whole & ~nan.all(axis=2)
            if mode is not None and part.any():
                st["partial"] |= part.any(axis=0)
                if st["first_partial"] is None:
                    r, e = np.argwhere(part)[0]
                    st["first_partial"] = (start + int(r), lo + int(e))
            if whole.any():
                st["rows"] += whole.sum(axis=0)
                if st["first_nan"] is None:
                    r, e = np.argwhere(whole)[0]
                    st["first_nan"] = (start + int(r), lo + int(e))
                never = np.flatnonzero(whole.all(axis=1))
                if never.size:
                    st["n_never"] += never.size
                    if st["first_never"] is None:
                        st["first_never"] = start + int(never[0])
        if np.isinf(z).any():
            _check_inf(z, yy, start, lo)
        with np.errstate(invalid="ignore"):
            return fn(start, z, yy)

    out = Chunked(logits, chunk_rows=block_rows, n_threads=1).map(task, y, parallel=False)
    n = logits.shape[0]
    eps = lo + np.flatnonzero(st["rows"])
    if st["first_partial"] is not None:
        r, e = st["first_partial"]
        raise NoisylabInputError(f"logits are NaN in only some of the outputs at row {r}, epoch {e} (epoch(s) affected: "
                                 f"{_epochs_text(lo + np.flatnonzero(st['partial']))}); a row that was not visited "
                                 "is NaN in every output, so the recording is damaged (or the training diverged).")
    full = lo + np.flatnonzero(st["rows"] == n)
    if mode is not None and full.size:
        raise NoisylabInputError(f"the logits of every row are NaN at epoch(s) {_epochs_text(full)}: the training "
                                 "diverged (NaN logits) or the file is damaged; drop_last never leaves a whole epoch "
                                 "unvisited.  Only the epochs before the first affected one are usable "
                                 "(epochs_completed=...).")
    if mode == "eval_pass" and eps.size:
        r, e = st["first_nan"]
        raise NoisylabInputError(f"NaN logits in an 'eval_pass' recording (which scores every row after every epoch) at "
                                 f"epoch(s) {_epochs_text(eps)} (first: row {r}, epoch {e}): the training diverged "
                                 "or the file is damaged.  Only the epochs before the first affected one are usable "
                                 "(epochs_completed=...).")
    if mode == "train_forward" and eps.size:
        excess = lo + np.flatnonzero(2 * st["rows"] >= n)
        if excess.size:
            raise NoisylabInputError(
                f"at least half of the rows have NaN logits at epoch(s) {_epochs_text(excess)}, more than drop_last "
                f"leaves unvisited (n mod batch_size < n / 2 rows): the training diverged or the file is damaged.  "
                "Only the epochs before the first affected one are usable (epochs_completed=...)."
            )
    if require_visited and st["n_never"]:
        hint = (f" The logits of every row are NaN at epoch(s) {_epochs_text(full)}: a diverged training?"
                if full.size else " Score fewer skipped epochs, or drop those rows.")
        raise NoisylabInputError(
            f"{st['n_never']} row(s) of logits (first: row {st['first_never']}) have no recorded epoch in the "
            f"scored window (all logits NaN from epoch {lo} on: never visited).{hint}"
        )
    return out


def _label_logit_and_rest_max(z, yy):
    """(z_ỹ, max_{k≠ỹ} z_k) for a block ``z`` (m, W, K); ``z`` is overwritten."""
    m, W, _ = z.shape
    idx = np.broadcast_to(yy[:, None, None], (m, W, 1))
    zy = np.take_along_axis(z, idx, axis=2)[..., 0].copy()
    np.put_along_axis(z, idx, -np.inf, axis=2)
    return zy, z.max(axis=2)


def _label_log_prob(z, yy):
    """log softmax(z)_ỹ (m, W) float32 (max-shifted; NaN for unvisited epochs); ``z`` is overwritten."""
    m, W, _ = z.shape
    idx = np.broadcast_to(yy[:, None, None], (m, W, 1))
    z -= z.max(axis=2, keepdims=True)
    zy = np.take_along_axis(z, idx, axis=2)[..., 0].copy()
    np.exp(z, out=z)
    return zy - np.log(z.sum(axis=2))


def _require_visited(start, lo, valid):
    """The valid (non-NaN) counts per row; rows without any are reported by :func:`_run`."""
    return valid.sum(axis=1)


def _row_means(start, lo, values):
    """Mean over the valid (non-NaN) epochs of each row, float64, the validity mask and the counts."""
    valid = ~np.isnan(values)
    cnt = _require_visited(start, lo, valid)
    s = np.add.reduce(np.where(valid, values, 0.0), axis=1, dtype=np.float64)
    return s / cnt, valid, cnt


# ----------------------------------------------------------------------------- per-epoch matrices
def margins(logits, labels, *, epochs_completed=None, block_rows=None, mode=None) -> np.ndarray:
    """AUM margins ``M[i, e] = z_ỹ − max_{k≠ỹ} z_k`` per example and epoch.

    Parameters
    ----------
    logits : array of shape (n, E, K)
        Raw logits (not probabilities).  The max runs over **all** other outputs, including an
        extra threshold class when the network has one.
    labels : array-like of int, shape (n,)
        The given (noisy) label of each row, in ``0..K-1``.
    epochs_completed : int, optional
        Epochs ``>= epochs_completed`` are returned as NaN (not recorded yet).  Default E.
    block_rows : int, optional
        Rows per block (default: about 4 MiB of float32 per block).
    mode : {"train_forward", "eval_pass"}, optional
        The recording mode of ``logits`` (``meta["mode"]``); enables the divergence checks of the
        module docs ("NaN and infinite logits").  None (plain arrays): any NaN = not visited.

    Returns
    -------
    ndarray of shape (n, E), float32
        Column ``e`` is epoch ``e``; NaN where the row was not visited (NaN logits) or the epoch is
        not completed.  Positive = the given label wins.
    """
    logits, y, lo, hi, block_rows = _prepare(logits, labels, 0, epochs_completed, block_rows, mode)
    out = np.full(logits.shape[:2], np.nan, dtype=np.float32)

    def fn(start, z, yy):
        zy, rest = _label_logit_and_rest_max(z, yy)
        out[start:start + len(yy), lo:hi] = zy - rest

    _run(logits, y, lo, hi, block_rows, fn, mode)
    return out


def label_probability_sequences(logits, labels, *, epochs_completed=None, block_rows=None,
                                mode=None) -> np.ndarray:
    """``p_e(ỹ_i) = softmax(logits[i, e])[ỹ_i]`` for every row and epoch: the LSTM detector's input.

    Parameters as :func:`margins`.

    Returns
    -------
    ndarray of shape (n, E), float32
        NaN where the row was not visited or the epoch is not completed.
    """
    logits, y, lo, hi, block_rows = _prepare(logits, labels, 0, epochs_completed, block_rows, mode)
    out = np.full(logits.shape[:2], np.nan, dtype=np.float32)

    def fn(start, z, yy):
        out[start:start + len(yy), lo:hi] = np.exp(_label_log_prob(z, yy))

    _run(logits, y, lo, hi, block_rows, fn, mode)
    return out


# ----------------------------------------------------------------------------------- per-row scores
def aum_scores(logits, labels, *, skip_epochs: int = 1, epochs_completed=None, block_rows=None,
               mode=None) -> np.ndarray:
    """Area Under the Margin: the mean margin (:func:`margins`) of each row over the recorded epochs
    ``skip_epochs <= e < epochs_completed``; epochs in which the row was not visited are ignored.

    HIGHER = label more likely CLEAN (a label-quality score); low or negative AUM = likely
    mislabelled.  Use ``-aum_scores(...)`` as a noise score.

    Parameters
    ----------
    logits : array of shape (n, E, K)
        Training-forward logits (recording mode ``"train_forward"``); see the module docs.
    labels : array-like of int, shape (n,)
        Labels the network was trained on (threshold samples carry the extra class).
    skip_epochs : int, default=1
        Leading epochs left out (the AUM code skips epoch 0).
    epochs_completed : int, optional
        Default E.
    block_rows : int, optional
    mode : {"train_forward", "eval_pass"}, optional
        The recording mode (``meta["mode"]``): enables the divergence checks (module docs).

    Returns
    -------
    ndarray of shape (n,), float64

    Raises
    ------
    NoisylabInputError
        Bad shapes or labels, an empty epoch window, infinite logits that make the score undefined,
        NaN logits that cannot mean "not visited" (module docs), or rows never visited in the window
        (all NaN).
    """
    logits, y, lo, hi, block_rows = _prepare(logits, labels, skip_epochs, epochs_completed, block_rows, mode)

    def fn(start, z, yy):
        zy, rest = _label_logit_and_rest_max(z, yy)
        return _row_means(start, lo, zy - rest)[0]

    return np.concatenate(_run(logits, y, lo, hi, block_rows, fn, mode, require_visited=True))


def confidence(logits, labels, *, skip_epochs: int = 0, epochs_completed=None, block_rows=None,
               mode=None) -> np.ndarray:
    """Data-map confidence (Swayamdipta et al., 2020): mean over epochs of ``p_e(ỹ)``.

    HIGHER = more likely CLEAN.  Epoch window and NaN handling as :func:`aum_scores` (but all
    epochs by default).  Returns float64 (n,).
    """
    logits, y, lo, hi, block_rows = _prepare(logits, labels, skip_epochs, epochs_completed, block_rows, mode)

    def fn(start, z, yy):
        return _row_means(start, lo, np.exp(_label_log_prob(z, yy)))[0]

    return np.concatenate(_run(logits, y, lo, hi, block_rows, fn, mode, require_visited=True))


def variability(logits, labels, *, skip_epochs: int = 0, epochs_completed=None, block_rows=None,
                mode=None) -> np.ndarray:
    """Data-map variability: population standard deviation (ddof=0) over epochs of ``p_e(ỹ)``.

    Not a label-quality score by itself (hard-to-learn, often mislabelled examples have LOW
    confidence and low variability; ambiguous ones high variability).  Returns float64 (n,).
    """
    logits, y, lo, hi, block_rows = _prepare(logits, labels, skip_epochs, epochs_completed, block_rows, mode)

    def fn(start, z, yy):
        p = np.exp(_label_log_prob(z, yy))
        mean, valid, cnt = _row_means(start, lo, p)
        d = np.where(valid, p - mean[:, None], 0.0)
        return np.sqrt(np.add.reduce(d * d, axis=1, dtype=np.float64) / cnt)

    return np.concatenate(_run(logits, y, lo, hi, block_rows, fn, mode, require_visited=True))


def mean_loss(logits, labels, *, skip_epochs: int = 0, epochs_completed=None, block_rows=None,
              mode=None) -> np.ndarray:
    """Mean cross-entropy ``−log p_e(ỹ)`` over epochs (computed as a log-softmax, no underflow).

    HIGHER = more likely MISLABELLED (a raw loss).  Returns float64 (n,).
    """
    logits, y, lo, hi, block_rows = _prepare(logits, labels, skip_epochs, epochs_completed, block_rows, mode)

    def fn(start, z, yy):
        return _row_means(start, lo, -_label_log_prob(z, yy))[0]

    return np.concatenate(_run(logits, y, lo, hi, block_rows, fn, mode, require_visited=True))


def forgetting_events(logits, labels, *, skip_epochs: int = 0, epochs_completed=None,
                      block_rows=None, mode=None) -> np.ndarray:
    """Forgetting events (Toneva et al., ICLR 2019): how often an example goes from correctly
    classified to misclassified between two consecutive recorded epochs.

    *Correct* at epoch e means ``ỹ`` is the **unique** argmax of the logits (margin > 0; a tie for
    the maximum counts as incorrect, so the result does not depend on the class order).  Epochs in
    which the row was not visited are skipped (the transition is taken between consecutive visited
    epochs).  An example that is **never correct** in the window ("never learned", which Toneva et
    al. treat as infinitely forgotten) gets ``W = hi - lo``, the number of epochs in the window: more
    than any real count, which is at most ``W // 2``.

    HIGHER = more likely MISLABELLED.  Returns int64 (n,).
    """
    logits, y, lo, hi, block_rows = _prepare(logits, labels, skip_epochs, epochs_completed, block_rows, mode)
    W = hi - lo

    def fn(start, z, yy):
        zy, rest = _label_logit_and_rest_max(z, yy)
        marg = zy - rest
        valid = ~np.isnan(marg)
        _require_visited(start, lo, valid)
        correct = valid & (marg > 0)
        # index of the last visited epoch at or before e (-1 if none)
        last = np.maximum.accumulate(np.where(valid, np.arange(W), -1), axis=1)
        prev = np.concatenate([np.full((len(yy), 1), -1), last[:, :-1]], axis=1)
        prev_correct = np.take_along_axis(correct, np.maximum(prev, 0), axis=1) & (prev >= 0)
        events = (valid & prev_correct & ~correct).sum(axis=1).astype(np.int64)
        return np.where(correct.any(axis=1), events, W)

    return np.concatenate(_run(logits, y, lo, hi, block_rows, fn, mode, require_visited=True))


# ------------------------------------------------------------------------------- one entry point
def dynamics_scores(source, method: str = "aum", *, skip_epochs: int | None = None, block_rows=None) -> np.ndarray:
    """Label-quality score of every row of a recording: HIGHER = label more likely CLEAN.

    Parameters
    ----------
    source : str or Path, or tuple (logits, labels)
        A recording (read with :func:`read_dynamics`; its ``labels`` and ``epochs_completed`` are
        used), or the arrays themselves (all epochs used).
    method : {"aum", "confidence", "mean_loss", "forgetting_events"}, default="aum"
        ``"aum"``: :func:`aum_scores`; ``"confidence"``: :func:`confidence`; ``"mean_loss"``:
        ``-mean_loss``; ``"forgetting_events"``: ``-forgetting_events``.
    skip_epochs : int, optional
        Leading epochs left out; default 1 for ``"aum"`` (the AUM code), 0 otherwise.
    block_rows : int, optional

    Returns
    -------
    ndarray of shape (n,), float64
        Row ``i`` scores recording row ``i`` (example ``meta["ids"][i]`` of the training data).

    Raises
    ------
    NoisylabInputError
        As the method's function; for a recording, with the divergence checks of its ``mode``
        (module docs: NaN logits of a diverged run are an error, not "not visited").

    Notes
    -----
    ``"aum"`` on an ``"eval_pass"`` recording warns: AUM is defined on the training-forward logits
    (METHODS.md §7.7).  Threshold samples of an AUM run are scored with their fake label.
    """
    method = check_option("method", method, DYNAMICS_METHODS)
    if isinstance(source, (str, bytes, os.PathLike)):
        logits, meta = read_dynamics(source)
        labels, ec, mode = meta["labels"], meta["epochs_completed"], meta["mode"]
        if ec == 0:
            raise NoisylabInputError(f"{source}: the recording holds no completed epoch yet.")
        if method == "aum" and meta["mode"] != "train_forward":
            warn_user(f"AUM is defined on training-forward logits; {source} was recorded in mode "
                      f"{meta['mode']!r}.")
    elif isinstance(source, tuple) and len(source) == 2:
        logits, labels = source
        ec = mode = None
    else:
        raise NoisylabInputError("source must be a recording path or a tuple (logits, labels); got "
                                 f"{type(source).__name__}.")
    if skip_epochs is None:
        skip_epochs = 1 if method == "aum" else 0
    kw = {"skip_epochs": skip_epochs, "epochs_completed": ec, "block_rows": block_rows, "mode": mode}
    if method == "aum":
        return aum_scores(logits, labels, **kw)
    if method == "confidence":
        return confidence(logits, labels, **kw)
    if method == "mean_loss":
        return -mean_loss(logits, labels, **kw)
    return -forgetting_events(logits, labels, **kw).astype(np.float64)


# --------------------------------------------------------------------------- threshold samples
def _check_percentile(percentile) -> float:
    if isinstance(percentile, bool) or not isinstance(percentile, numbers.Real) or not (0 < percentile <= 100):
        raise NoisylabInputError(f"percentile must be a real number in (0, 100]; got {percentile!r}.")
    return float(percentile)


def _check_scores(name, values, ndim=(1,)):
    a = np.asarray(values)
    if a.dtype.kind not in "fiu" or a.ndim not in ndim:
        shapes = " or ".join({1: "(n,)", 2: "(n_runs, n)"}[d] for d in ndim)
        raise NoisylabInputError(f"{name} must be a numeric array of shape {shapes}; got {a.dtype} {a.shape}.")
    return a.astype(np.float64, copy=False)


def _n_allowed(n_thr: int, percentile: float) -> int:
    """``floor((1 - p/100) * N_th)``: how many threshold AUMs may exceed a regular AUM before it is flagged."""
    return int(np.floor((100.0 - percentile) * n_thr / 100.0 + 1e-9))


def aum_threshold(aum_thr, percentile: float = 99) -> float:
    """α, the ``percentile``-th percentile of the threshold samples' AUMs, as the order statistic
    that makes the paper's rule and the code's rule identical.

    α is the ``(N_th − ⌊(1 − p/100)·N_th⌋)``-th smallest threshold AUM (numpy's
    ``np.percentile(aum_thr, p, method="inverted_cdf")``): a regular AUM is below α exactly when more
    than ``(1 − p/100)`` of the threshold AUMs are strictly larger than it (:func:`aum_flags`).

    Parameters
    ----------
    aum_thr : array-like of shape (N_th,)
        AUMs of the threshold samples (computed with their fake label), finite.
    percentile : float in (0, 100], default=99

    Returns
    -------
    float
    """
    p = _check_percentile(percentile)
    t = _check_scores("aum_thr", aum_thr)
    if t.size == 0 or not np.isfinite(t).all():
        raise NoisylabInputError(f"aum_thr must be a non-empty array of finite AUMs; got {t.size} value(s)"
                                 f"{'' if t.size == 0 else ' with NaN or inf'}.")
    k = t.size - _n_allowed(t.size, p)  # 1-based rank of α
    return float(np.partition(t, k - 1)[k - 1])


def aum_flags(aum, is_threshold, *, percentile: float = 99) -> np.ndarray:
    """Flag likely mislabelled examples with threshold samples (the AUM code's rule).

    In one run, regular example ``i`` is flagged when more than ``(1 − p/100)`` of the threshold
    samples' AUMs are strictly larger than ``AUM_i`` (``mean(AUM_thr > AUM_i) > 0.01``), i.e.
    ``AUM_i < aum_threshold(AUM_thr, p)``.  Threshold samples themselves are never flagged in their
    own run.  With several runs, the per-run flags are combined by :func:`combine_flags`.

    Parameters
    ----------
    aum : array-like of shape (n,) or (n_runs, n)
        AUM of every example in each run.
    is_threshold : array-like of bool, same shape as ``aum``
        Which examples were threshold samples in each run (each run needs at least one).
    percentile : float in (0, 100], default=99

    Returns
    -------
    ndarray of bool, shape (n,)
        Flagged in every run in which the example was a regular example.
    """
    p = _check_percentile(percentile)
    a = _check_scores("aum", aum, ndim=(1, 2))
    thr = np.asarray(is_threshold)
    if thr.dtype != bool or thr.shape != a.shape:
        raise NoisylabInputError(f"is_threshold must be a boolean array of the shape of aum {a.shape}; got "
                                 f"{thr.dtype} {thr.shape}.")
    a2, t2 = np.atleast_2d(a), np.atleast_2d(thr)
    flags = np.zeros(a2.shape, dtype=bool)
    for r in range(a2.shape[0]):  # loop over runs (2), vectorised over examples
        t = a2[r, t2[r]]
        if t.size == 0:
            raise NoisylabInputError(f"run {r} has no threshold sample (is_threshold is all False).")
        regular = ~t2[r]
        if not np.isfinite(t).all() or not np.isfinite(a2[r, regular]).all():
            raise NoisylabInputError(f"aum of run {r} contains NaN or infinite values.")
        # count of threshold AUMs strictly larger than each AUM, by binary search in the sorted ones
        larger = t.size - np.searchsorted(np.sort(t), a2[r], side="right")
        flags[r] = regular & (larger > _n_allowed(t.size, p))
    return combine_flags(flags, t2)


def combine_flags(flags, is_threshold) -> np.ndarray:
    """Combine per-run flags: flagged in **every** run in which the example was a regular example.

    An example that was a threshold sample in all runs (possible only with one run) is not flagged
    (no evidence).  This is the code's ``ceil(1 − flagged_fraction)`` weight read the other way:
    weight 0 (removed) exactly when every regular-run flagged it.

    Parameters
    ----------
    flags, is_threshold : array-like of bool, shape (n_runs, n) or (n,)

    Returns
    -------
    ndarray of bool, shape (n,)
    """
    f, t = np.atleast_2d(np.asarray(flags)), np.atleast_2d(np.asarray(is_threshold))
    if f.dtype != bool or t.dtype != bool or f.shape != t.shape or f.ndim != 2:
        raise NoisylabInputError(f"flags and is_threshold must be boolean arrays of the same shape (n_runs, n); "
                                 f"got {f.dtype} {f.shape} and {t.dtype} {t.shape}.")
    return np.all(f | t, axis=0) & np.any(~t, axis=0)
