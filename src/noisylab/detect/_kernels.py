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
    return np.vstack([round_preserving_sum(row) for row in M])
