"""Confident learning on a ``dask.array`` of predicted probabilities (optionally on a cluster).

Every public function of :mod:`noisylab.detect` accepts a ``dask.array.Array``
of shape (n, K) as ``pred_probs``: :func:`noisylab._validation.check_pred_probs`
hands it to :func:`check_dask_pred_probs`, which validates it and returns a
:class:`DaskChunked` runner; the engine then runs its passes through it.
Install the optional dependencies with ``pip install "noisylab[dask]"``.

What runs where
    ``pred_probs`` is never loaded on the client.  Each pass of the engine is
    one Dask task per row block of the array: the *worker* reads its block
    and runs the pass's block function on sub-blocks of
    about 1 MiB (a single thread per task), then
    combines them; the *client* combines the per-block results in row order.
    The validation is one more such pass (all the statistics of all blocks
    in one compute).  The noise-rate filters may need one more pass for the
    (rare) cells that the margins recorded in the first pass do not decide
    (each block keeps its top candidates per cell; the client merges them).
    :meth:`DaskChunked.gather_many` reads given columns of given rows in one
    compute (part of the runner interface).  When a ``dask.distributed`` client is active, tasks are
    submitted to it (and progress is reported as blocks complete); otherwise
    the default Dask scheduler (threads) is used.

Memory
    A worker holds one block of the array plus the pass's temporaries for
    one sub-block; choose the row chunks of the array accordingly (a
    multiple of a few thousand rows, e.g. 2**18 rows, is a good default).
    The client holds the per-row results (a few n-length vectors, as with an
    in-memory input) and the combined results of the blocks (e.g. the
    recorded margins of the noise-rate filters).  The labels (n,) are held
    on the client and their slices are sent with the tasks.

Results
    Results are identical, bit for bit, to the ones computed from the same
    values held in a NumPy array: the block functions are the same, every
    per-row quantity is computed from its row alone and the combine steps
    are associative, so the way the rows are split into blocks does not
    matter.  Validation raises the same errors and warnings with the same
    messages; rows that are renormalised are renormalised lazily, with the
    same arithmetic as the in-memory path.

Use :func:`dask_array_from_npy` to read a large ``.npy`` file on the workers
themselves (they must see the file at the same path: a shared file system).
"""
from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Callable, Sequence
from functools import partial

import numpy as np

from .._chunks import _PROGRESS, Chunked, Progress, auto_chunk_rows
from .._validation import (
    NoisylabInputError,
    _check_pred_probs_structure,
    _row_sum_block,
    _row_sum_tolerance,
    first_bad_value,
    raise_bad_value,
    row_sum_verdict,
)

__all__ = ["DaskChunked", "check_dask_pred_probs", "dask_array_from_npy"]


def _require_dask():
    try:
        import dask.array  # noqa: F401
    except ImportError as exc:  # pragma: no cover - dask is what brought us here
        raise ImportError(
            'Dask support needs the optional dependencies: pip install "noisylab[dask]"'
        ) from exc


def _active_client():
    """The ``dask.distributed`` client ``dask.compute`` would use now, or None.

    Follows Dask's own choice (``dask.config`` ``scheduler=``, else the
    default client), and never imports ``distributed`` if it is not imported
    yet (there can be no client then).
    """
    if "distributed" not in sys.modules:
        return None
    try:
        from dask.base import get_scheduler
        from distributed import Client

        sched = get_scheduler()
    except (ImportError, ValueError, RuntimeError):
        return None
    client = getattr(sched, "__self__", None)
    if isinstance(client, Client) and not client.asynchronous:
        return client
    return None


def _block_task(block, start, fn, combine, chunk_rows, *vectors):
    """Worker side of a pass: ``fn`` on sub-blocks of one Dask block, then ``combine`` (None: the list)."""
    block = np.ascontiguousarray(np.asarray(block))
    sub = Chunked(block, chunk_rows=chunk_rows, n_threads=1, progress=Progress(None))
    parts = sub.map(fn, *vectors, offset=start)
    return parts if combine is None else combine(parts)


class DaskChunked:
    """Run the engine's block functions over the row blocks of a ``dask.array``.

    The same interface as :class:`noisylab._chunks.Chunked`, so every pass of
    the detection engine runs unchanged.

    Parameters
    ----------
    P : dask.array.Array of shape (n, K)
        Chunked by rows; it is rechunked so that axis 1 is a single chunk.
        Chunk sizes must be known.
    chunk_rows : int, optional
        Rows per sub-block processed at a time inside a task (default: about
        1 MiB per sub-block, as :class:`noisylab._chunks.Chunked`).
    progress : callable(desc, rows_done, rows_total) or Progress, optional
        Default: the callback of :func:`noisylab._chunks.progress_callback`
        active when the runner is created.

    Attributes
    ----------
    kind : str
        ``"dask"``.
    P : dask.array.Array
    shape : tuple of int
    dtype : numpy.dtype
    is_memmap : bool
        Always False.
    """

    kind = "dask"
    is_memmap = False

    def __init__(self, P, *, chunk_rows: int | None = None, progress=None):
        _require_dask()
        if P.ndim != 2:
            raise NoisylabInputError(f"DaskChunked needs a 2-D array; got shape {P.shape}.")
        if len(P.chunks[1]) != 1:
            P = P.rechunk({1: -1})
        if any(np.isnan(c) for c in P.chunks[0]):
            P = P.compute_chunk_sizes()
        self.P = P
        self.shape = tuple(int(s) for s in P.shape)
        self.dtype = np.dtype(P.dtype)
        self.chunk_rows = int(chunk_rows if chunk_rows is not None else
                              auto_chunk_rows(self.shape[1], self.dtype.itemsize))
        if progress is None:
            progress = _PROGRESS.get()
        self.progress = progress if isinstance(progress, Progress) else Progress(progress)
        bounds = np.concatenate([[0], np.cumsum(P.chunks[0])]).astype(np.int64)
        self._spans = [(int(a), int(b)) for a, b in itertools.pairwise(bounds) if b > a]
        self._blocks = None

    def __repr__(self):
        return f"DaskChunked(shape={self.shape}, dtype={self.dtype}, row_blocks={len(self._spans)})"

    def _delayed_blocks(self):
        if self._blocks is None:
            blocks = self.P.to_delayed()[:, 0]
            sizes = [int(s) for s in self.P.chunks[0]]
            self._blocks = [blk for blk, s in zip(blocks, sizes) if s > 0]
        return self._blocks

    # ------------------------------------------------------------------ passes
    def _execute(self, fn: Callable, combine, row_vectors, desc, offset):
        """One task per non-empty Dask block; the tasks' results in row order."""
        import dask

        n = self.shape[0]
        task = dask.delayed(_block_task, pure=False)
        tasks = [task(blk, offset + a, fn, combine, self.chunk_rows, *(v[a:b] for v in row_vectors))
                 for blk, (a, b) in zip(self._delayed_blocks(), self._spans)]
        if desc is not None:
            self.progress.start(desc, n)
        client = _active_client()
        if client is None:
            results = list(dask.compute(*tasks))
            if desc is not None:
                self.progress.advance(n)
            return results
        from distributed import as_completed

        futures = client.compute(tasks)
        rows = {f.key: b - a for f, (a, b) in zip(futures, self._spans)}
        try:
            for fut in as_completed(futures):
                if fut.status == "error":
                    fut.result()  # raises the task's exception
                if desc is not None:
                    self.progress.advance(rows[fut.key])
            return client.gather(futures)
        except BaseException:
            client.cancel(futures)
            raise

    def map(self, fn: Callable, *row_vectors: np.ndarray, desc: str | None = None, offset: int = 0) -> list:
        """``[fn(offset + a, P[a:b], *(v[a:b] for v in row_vectors)) for each block]`` in row order.

        The blocks are the sub-blocks of at most ``chunk_rows`` rows of each
        Dask block.  ``fn`` runs on the workers: its results come back, but it
        cannot write into ``row_vectors`` (they are copies there).
        """
        out = []
        for parts in self._execute(fn, None, row_vectors, desc, offset):
            out.extend(parts)
        return out

    def run(self, fn: Callable, combine: Callable, *row_vectors: np.ndarray, desc: str | None = None,
            memory_bound: bool = False):
        """One pass: ``combine`` of ``fn`` over all blocks.

        Each task runs ``combine(Chunked(block).map(fn, ...))`` on its Dask
        block; the client combines the task results in row order (``combine``
        must be associative).  ``memory_bound`` is accepted for interface
        compatibility (each task runs in one worker thread anyway).
        """
        return combine(self._execute(fn, combine, row_vectors, desc, 0))

    def gather_many(self, requests: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
        """``[P[rows][:, cols] for rows, cols in requests]`` (``rows`` increasing), in one compute."""
        import dask

        lazy, empty = [], []
        for i, (rows, cols) in enumerate(requests):
            rows = np.asarray(rows, dtype=np.intp)
            cols = np.asarray(cols, dtype=np.intp)
            if rows.size == 0 or cols.size == 0:
                empty.append((i, np.empty((rows.size, cols.size), dtype=self.dtype)))
            else:
                lazy.append((i, self.P[rows][:, cols]))
        out: list = [None] * len(requests)
        if lazy:
            for (i, _), arr in zip(lazy, dask.compute(*(x for _, x in lazy))):
                out[i] = np.asarray(arr)
        for i, arr in empty:
            out[i] = arr
        return out


# ---------------------------------------------------------------------------- validation
def _check_block(start, block, *, acc):
    """Block statistics of the validation: the first bad value (only in a bad block), worst row-sum deviation."""
    bad, _, dev, row, _ = _row_sum_block(start, block, acc=acc)
    row_sum = float(np.add.reduce(block[row - start], dtype=np.float64))
    return (first_bad_value(block, start) if bad else None), dev, row, row_sum


def _combine_checks(parts):
    """Associative: the first bad value, the worst row (lowest index on ties)."""
    culprit = next((p[0] for p in parts if p[0] is not None), None)
    worst = max(parts, key=lambda p: (p[1], -p[2]))
    return culprit, worst[1], worst[2], worst[3]


def check_dask_pred_probs(P, name: str = "pred_probs") -> DaskChunked:
    """Validate a ``dask.array`` of predicted probabilities; the runner the engine uses.

    The same checks, errors, warnings and messages as
    :func:`noisylab._validation.check_pred_probs`: numeric 2-D (n >= 1,
    K >= 2); other dtypes than float16/32/64 are converted (lazily) to
    float64; NaN, infinities and negative values are rejected (with the row
    and column of the first one); rows whose sum is off by more than the
    dtype's rounding but within the renormalisation tolerance are
    renormalised lazily, with a ``UserWarning``; larger deviations are
    rejected.  All statistics are computed in one pass (one compute).

    Parameters
    ----------
    P : dask.array.Array of shape (n, K)
    name : str, default="pred_probs"
        Name used in the messages.

    Returns
    -------
    DaskChunked
        Over the (possibly converted or renormalised) lazy array.

    Raises
    ------
    NoisylabInputError
    """
    _require_dask()
    P = _check_pred_probs_structure(P, name)
    if len(P.chunks[1]) != 1:
        P = P.rechunk({1: -1})
    src = DaskChunked(P)
    K = src.shape[1]
    acc = np.float64 if P.dtype == np.float64 else np.float32
    culprit, worst, worst_row, row_sum = src.run(
        partial(_check_block, acc=acc), _combine_checks, desc="checking pred_probs")
    if culprit is not None:  # as the in-memory path: the first bad value in row-major order
        raise_bad_value(name, culprit)
    if worst > _row_sum_tolerance(P.dtype, K):
        row_sum_verdict(name, P.dtype, K, worst, worst_row, row_sum)
        P = (P / P.sum(axis=1, dtype=np.float64, keepdims=True)).astype(P.dtype)
        src = DaskChunked(P, chunk_rows=src.chunk_rows, progress=src.progress)
    return src


# ---------------------------------------------------------------------------- .npy files
class _NpyRows:
    """Lazy array-like over a ``.npy`` file: ``self[key]`` reads ``np.load(path, mmap_mode="r")[key]``."""

    def __init__(self, path: str, shape: tuple, dtype: np.dtype, stamp: tuple):
        self.path = path
        self.shape = shape
        self.dtype = dtype
        self.ndim = len(shape)
        self.stamp = stamp

    def __getitem__(self, key):
        mm = np.load(self.path, mmap_mode="r")
        try:
            return np.array(mm[key])  # a copy in ordinary memory; the map is closed with ``mm``
        finally:
            del mm

    def __dask_tokenize__(self):
        return ("noisylab-npy", self.path, self.shape, str(self.dtype), self.stamp)


def dask_array_from_npy(path, rows_per_block: int = 262144):
    """A lazy ``dask.array`` over a 2-D ``.npy`` file, each row block read by the worker that needs it.

    A task reads its block as ``np.load(path, mmap_mode="r")[a:b]`` (copied
    into ordinary memory), so the file is never loaded on the client and, on
    a ``dask.distributed`` cluster, never sent over the network.  The workers
    must see the file at the same path as the client: on a cluster of
    several machines, put it on a shared file system.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.npy`` file holding a 2-D array (e.g. ``pred_probs`` (n, K)).
    rows_per_block : int, default=262144
        Rows per Dask block (a worker holds about one block per task).

    Returns
    -------
    dask.array.Array
        Shape and dtype of the stored array, chunks ``(rows_per_block, K)``.

    Raises
    ------
    NoisylabInputError
        The file is missing, is not a ``.npy`` array, or is not 2-D.
    """
    _require_dask()
    import dask.array as da

    if isinstance(rows_per_block, bool) or not isinstance(rows_per_block, (int, np.integer)) \
            or rows_per_block < 1:
        raise NoisylabInputError(f"rows_per_block must be an int >= 1; got {rows_per_block!r}.")
    path = os.path.abspath(os.fspath(path))
    if not os.path.isfile(path):
        raise NoisylabInputError(f"No such .npy file: {path}")
    try:
        mm = np.load(path, mmap_mode="r")
    except (ValueError, OSError, EOFError) as exc:
        raise NoisylabInputError(f"{path} is not a readable .npy array: {exc}") from None
    if not isinstance(mm, np.ndarray):
        if hasattr(mm, "close"):
            mm.close()
        raise NoisylabInputError(f"{path} is not a .npy array (an .npz archive?); save it with numpy.save.")
    shape, dtype = tuple(int(s) for s in mm.shape), mm.dtype
    del mm
    if len(shape) != 2:
        raise NoisylabInputError(f"{path} must hold a 2-D array (n, K); got shape {shape}.")
    st = os.stat(path)
    src = _NpyRows(path, shape, dtype, (st.st_size, st.st_mtime_ns))
    chunks = (int(rows_per_block), max(shape[1], 1))
    return da.from_array(src, chunks=chunks, lock=False, asarray=True, fancy=False,
                         meta=np.empty((0, 0), dtype=dtype))
