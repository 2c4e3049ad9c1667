"""Low-level kernels shared by the confident-learning code.

All kernels work on row chunks of ``pred_probs`` so that no temporary array
larger than ``chunk_rows x K`` is ever created, keep the input dtype (no
upcast of the whole array) and contain no Python loop over examples.  Inputs
are trusted: callers validate them first.
"""
from __future__ import annotations

import numpy as np


def compact_labels(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Return ``y`` in the narrowest unsigned dtype (radix sorts are O(n))."""
    if n_classes <= np.iinfo(np.uint8).max:
        return y.astype(np.uint8, copy=False)
    if n_classes <= np.iinfo(np.uint16).max:
        return y.astype(np.uint16, copy=False)
    return y.astype(np.int64, copy=False)


def group_by_label(y: np.ndarray, n_classes: int):
    """Indices grouped by label, increasing within each class.

    Returns ``order`` (n,) and ``bounds`` (K+1,) such that the rows labelled
    ``k`` are ``order[bounds[k]:bounds[k+1]]`` in increasing index order.
    """
    order = np.argsort(compact_labels(y, n_classes), kind="stable")
    counts = np.bincount(y, minlength=n_classes)
    bounds = np.zeros(n_classes + 1, dtype=np.int64)
    np.cumsum(counts, out=bounds[1:])
    return order, bounds


def select_largest(values: np.ndarray, c: int) -> np.ndarray:
    """Positions of the ``c`` largest values; ties at the cut-off go to the lowest positions.

    Equivalent to ``np.argsort(-values, kind="stable")[:c]`` (as a set) but
    O(n) with :func:`numpy.partition`.
    """
    n = values.shape[0]
    if c <= 0:
        return np.empty(0, dtype=np.int64)
    if c >= n:
        return np.arange(n)
    v = np.partition(values, n - c)[n - c]
    strict = np.flatnonzero(values > v)
    need = c - strict.shape[0]
    ties = np.flatnonzero(values == v)[:need]
    return np.concatenate([strict, ties])


def select_largest_per_column(values: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each column ``t`` of ``values`` (m, T), the rows of its ``counts[t]`` largest values.

    The same set as :func:`select_largest` on every column (ties at the cut-off go to the lowest
    rows), computed with one sort along the rows for all columns instead of one call per column.
    Returns ``(rows, cols)`` of the selected entries (row-major order).
    """
    m, T = values.shape
    c = np.minimum(np.asarray(counts, dtype=np.int64), m)
    if m == 0 or T == 0 or not (c > 0).any():
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    cut = np.sort(values, axis=0)[np.minimum(m - c, m - 1), np.arange(T)]  # c-th largest (unused if c = 0)
    strict = values > cut
    need = c - strict.sum(axis=0)
    tied = values == cut
    take = strict | (tied & (np.cumsum(tied, axis=0) <= need))
    take[:, c <= 0] = False
    rows, cols = np.nonzero(take)
    return rows, cols


def select_smallest(values: np.ndarray, c: int) -> np.ndarray:
    """Positions of the ``c`` smallest values; ties at the cut-off go to the lowest positions."""
    n = values.shape[0]
    if c <= 0:
        return np.empty(0, dtype=np.int64)
    if c >= n:
        return np.arange(n)
    v = np.partition(values, c - 1)[c - 1]
    strict = np.flatnonzero(values < v)
    need = c - strict.shape[0]
    ties = np.flatnonzero(values == v)[:need]
    return np.concatenate([strict, ties])


def round_preserving_sum(x: np.ndarray) -> np.ndarray:
    """Round a float vector to integers whose total is ``round(sum(x))``.

    Entries are first rounded half-to-even; the shortfall is then added to
    the entries with the largest rounding loss (or removed from those with the
    largest rounding gain).  Ties between equal rounding gaps are resolved by
    numpy's default ``argsort`` on the gaps: this is deliberate, it is what
    the reference implementation (cleanlab 2.9) does, so calibrated confident
    joints agree count for count with it on the same platform.
    """
    floats = np.asarray(x, dtype=np.float64)
    rounded = floats.round()
    target = np.sum(floats).round()
    while True:
        total = np.sum(rounded).round()
        if total == target:
            break
        diff = int(round(target - total))
        gaps = floats - rounded
        order = np.argsort(gaps)  # default kind on purpose (see docstring)
        if diff > 0:
            pick = order[::-1][:diff]
            rounded[pick] += 1
        else:
            pick = order[:-diff]
            rounded[pick] -= 1
    return rounded.astype(np.int64)


def round_preserving_row_totals(M: np.ndarray) -> np.ndarray:
    """:func:`round_preserving_sum` applied to every row of ``M`` (K, K), vectorised over the rows.

    Row-wise reductions and ``np.argsort(..., axis=1)`` (default kind) treat each row exactly as the
    one-dimensional calls do, so the result equals the per-row loop entry for entry (tested).
    """
    floats = np.asarray(M, dtype=np.float64)
    if floats.ndim != 2:
        raise ValueError(f"expected a 2-D array; got shape {floats.shape}")
    rounded = floats.round()
    target = np.sum(floats, axis=1).round()
    K = floats.shape[1]
    rank = np.arange(K)
    while True:
        diff = np.rint(target - np.sum(rounded, axis=1).round()).astype(np.int64)
        rows = np.flatnonzero(diff)
        if rows.size == 0:
            break
        d = diff[rows, None]
        order = np.argsort(floats[rows] - rounded[rows], axis=1)  # default kind, as the 1-D version
        # diff > 0: +1 at the diff largest gaps (order[::-1][:diff]); diff < 0: -1 at the -diff smallest
        step = np.where(d > 0, (rank >= K - d).astype(np.int64), -(rank < -d).astype(np.int64))
        rounded[rows[:, None], order] += step  # order is a permutation of each row: no repeated cell
    return rounded.astype(np.int64)
