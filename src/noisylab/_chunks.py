"""Row-chunked execution over an ``(n, K)`` array: threads, memory-mapped files, Dask, progress.

Every pass of the detection engine and of the input validation is written as
a *block function* ``fn(start, block, *row_slices) -> result`` applied to
consecutive row blocks, followed by a *combine* step over the block results
(in row order).  :class:`Chunked` runs such a pass on a NumPy array or a
``np.memmap``; :class:`noisylab.detect._dask.DaskChunked` runs the same block
functions on the blocks of a ``dask.array`` (optionally on a
``dask.distributed`` cluster).  Results do not depend on how the rows are
split into blocks.

Memory-mapped inputs
    After a block is processed its pages are dropped from the process
    (``madvise(MADV_DONTNEED)``; the kernel's page cache keeps them), so the
    resident memory stays bounded by a few blocks however large the file is.
    Only shared mappings (``mmap_mode`` "r", "r+", "w+") and row-contiguous
    blocks are released, and only the pages wholly inside the block: on a
    copy-on-write map (``mmap_mode="c"``) dropping a page would discard the
    caller's in-memory edits.

Threads
    NumPy releases the GIL inside its loops, so blocks run in a small pool of
    threads (no process pool: nothing is pickled or copied).  The pool size is
    ``NOISYLAB_NUM_THREADS`` if set, else the number of usable CPUs (at most
    8).  Small inputs run in the calling thread.
"""
from __future__ import annotations

import contextvars
import mmap
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np

#: Default rows per block for the Dask sub-blocks and other fixed-size loops.
CHUNK_ROWS = 1 << 12
#: Target bytes of one block of the in-memory / memory-mapped runner: a block and its
#: temporaries stay in a core's L2 cache through the several operations of a pass.
CHUNK_BYTES = 1 << 20
#: Memory-bound passes use blocks this many times larger (see :meth:`Chunked.run`).
MEMORY_BOUND_BLOCKS = 8
#: Inputs with fewer elements than this run in the calling thread.
PARALLEL_MIN_ELEMENTS = 1 << 21
#: Upper bound of the default thread count.
MAX_DEFAULT_THREADS = 8

_POOL: ThreadPoolExecutor | None = None
_POOL_SIZE = 0
_POOL_LOCK = threading.Lock()
_PAGE = mmap.PAGESIZE
_PROGRESS: contextvars.ContextVar = contextvars.ContextVar("noisylab_progress", default=None)


@contextmanager
def progress_callback(callback: Callable[[str, int, int], None] | None):
    """Within this block, every pass over ``pred_probs`` reports ``callback(desc, rows_done, rows_total)``.

    Used by the CLI to show progress on large inputs; the callback may be
    called from worker threads.
    """
    token = _PROGRESS.set(callback)
    try:
        yield
    finally:
        _PROGRESS.reset(token)


def default_threads() -> int:
    """Threads used for row blocks: ``$NOISYLAB_NUM_THREADS`` or the usable CPUs (at most 8)."""
    env = os.environ.get("NOISYLAB_NUM_THREADS")
    if env:
        try:
            value = int(env)
        except ValueError:
            value = 0
        if value >= 1:
            return value
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_DEFAULT_THREADS))


def _pool(size: int) -> ThreadPoolExecutor:
    global _POOL, _POOL_SIZE
    with _POOL_LOCK:
        if _POOL is None or _POOL_SIZE != size:
            if _POOL is not None:
                _POOL.shutdown(wait=True)
            _POOL = ThreadPoolExecutor(max_workers=size, thread_name_prefix="noisylab")
            _POOL_SIZE = size
        return _POOL


def auto_chunk_rows(n_cols: int, itemsize: int) -> int:
    """Rows per block so that a block is about :data:`CHUNK_BYTES` (256 to 65536 rows)."""
    return int(np.clip(CHUNK_BYTES // max(1, n_cols * itemsize), 256, 1 << 16))


def iter_chunks(n: int, chunk_rows: int = CHUNK_ROWS):
    for start in range(0, n, chunk_rows):
        yield start, min(start + chunk_rows, n)


def _mmap_base(P) -> tuple[mmap.mmap, int] | None:
    """The ``mmap`` object behind ``P`` and its base address, or None for ordinary memory."""
    mm = getattr(P, "_mmap", None)
    if not isinstance(mm, mmap.mmap):
        return None
    try:
        base = np.frombuffer(mm, dtype=np.uint8).ctypes.data
    except (TypeError, ValueError):  # pragma: no cover - closed map
        return None
    return mm, base


class Progress:
    """Thread-safe progress counter calling ``callback(desc, done, total)`` as rows complete."""

    def __init__(self, callback: Callable[[str, int, int], None] | None):
        self.callback = callback
        self._lock = threading.Lock()
        self._done = 0
        self._total = 0
        self._desc = ""

    def start(self, desc: str, total: int) -> None:
        with self._lock:
            self._desc, self._done, self._total = desc, 0, total
        if self.callback is not None:
            self.callback(desc, 0, total)

    def advance(self, rows: int) -> None:
        if self.callback is None:
            return
        with self._lock:  # the report is made under the lock, so reports never go backwards
            self._done += rows
            self.callback(self._desc, self._done, self._total)


class Chunked:
    """Run block functions over the rows of an in-memory or memory-mapped array.

    Parameters
    ----------
    P : ndarray or np.memmap of shape (n, K)
    chunk_rows : int, optional
        Rows per block (default: about 1 MiB per block, see :func:`auto_chunk_rows`).
    n_threads : int, optional
        Threads for the blocks (default :func:`default_threads`).
    progress : callable(desc, rows_done, rows_total), optional
        Called from the worker threads as blocks complete.
    """

    kind = "numpy"

    def __init__(self, P, *, chunk_rows: int | None = None, n_threads: int | None = None, progress=None):
        self.P = P
        self.shape = P.shape
        self.dtype = P.dtype
        if chunk_rows is None:
            chunk_rows = auto_chunk_rows(P.shape[1], P.dtype.itemsize)
        self.chunk_rows = int(chunk_rows)
        self.n_threads = default_threads() if n_threads is None else max(1, int(n_threads))
        if progress is None:
            progress = _PROGRESS.get()
        self.progress = progress if isinstance(progress, Progress) else Progress(progress)
        # pages can be dropped only from shared mappings: a private ("c") page holds the caller's edits
        self._mm = _mmap_base(P) if getattr(P, "mode", None) in ("r", "r+", "w+") else None

    @property
    def is_memmap(self) -> bool:
        return self._mm is not None

    # ------------------------------------------------------------------ memory
    def release(self, block) -> None:
        """Drop the pages of ``block`` (a view into a memory-mapped ``P``) from this process."""
        if self._mm is None or block.size == 0 or not block.flags.c_contiguous:
            return  # a strided block's bytes are not one range
        mm, base = self._mm
        start = block.ctypes.data - base
        stop = start + block.nbytes
        lo = -(-start // _PAGE) * _PAGE  # whole pages inside the block: never a neighbour's
        hi = min((stop // _PAGE) * _PAGE, len(mm))
        if hi > lo:
            try:
                mm.madvise(mmap.MADV_DONTNEED, lo, hi - lo)
            except (OSError, ValueError):  # pragma: no cover - platform without madvise
                pass

    # ------------------------------------------------------------------ passes
    def _parallel(self) -> bool:
        n, K = self.shape
        return self.n_threads > 1 and n * K >= PARALLEL_MIN_ELEMENTS and n > self.chunk_rows

    def map(self, fn: Callable, *row_vectors: np.ndarray, desc: str | None = None, offset: int = 0,
            parallel: bool | None = None, chunk_rows: int | None = None) -> list:
        """``[fn(offset + a, P[a:b], *(v[a:b] for v in row_vectors)) for each block]`` in row order."""
        n = self.shape[0]
        spans = list(iter_chunks(n, chunk_rows or self.chunk_rows))
        if desc is not None:
            self.progress.start(desc, n)

        def task(span):
            a, b = span
            block = self.P[a:b]
            out = fn(offset + a, block, *(v[a:b] for v in row_vectors))
            self.release(block)
            if desc is not None:
                self.progress.advance(b - a)
            return out

        use_threads = self._parallel() if parallel is None else (parallel and self.n_threads > 1)
        if use_threads and len(spans) > 1:
            return list(_pool(self.n_threads).map(task, spans))
        return [task(s) for s in spans]

    def run(self, fn: Callable, combine: Callable, *row_vectors: np.ndarray, desc: str | None = None,
            memory_bound: bool = False):
        """``combine(self.map(fn, *row_vectors))``: one pass of the engine.

        ``memory_bound`` passes (little arithmetic per byte read) run in the
        calling thread on blocks :data:`MEMORY_BOUND_BLOCKS` times larger: a
        second thread only competes for memory bandwidth and the GIL, and
        larger blocks cost fewer Python calls (measured on the fused checks and
        self-confidence over 1M x 100 float32: 65-70 ms with two threads and
        1 MiB blocks, 45-50 ms with one, 35-45 ms with one and 8 MiB blocks).
        """
        if memory_bound:
            rows = self.chunk_rows * MEMORY_BOUND_BLOCKS
            return combine(self.map(fn, *row_vectors, desc=desc, parallel=False, chunk_rows=rows))
        return combine(self.map(fn, *row_vectors, desc=desc))

    def gather_many(self, requests: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
        """``P[np.ix_(rows, cols)]`` for each ``(rows, cols)`` request (random access: used in memory only;
        out of core the engine streams instead)."""
        return [self.P[np.ix_(np.asarray(r), np.asarray(c))] for r, c in requests]


def as_chunked(P, **kwargs):
    """Wrap ``P`` in a runner unless it already is one."""
    if hasattr(P, "map") and hasattr(P, "gather_many") and not isinstance(P, np.ndarray):
        return P
    return Chunked(P, **kwargs)


def concat(parts: Sequence[np.ndarray], dtype=None) -> np.ndarray:
    """Concatenate block results (an empty list gives an empty array of ``dtype``)."""
    if not parts:
        return np.empty(0, dtype=dtype if dtype is not None else np.float64)
    return np.concatenate(parts)
