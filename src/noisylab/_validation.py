"""Input validation shared by the public API.

Every public function validates its inputs once, here, and raises an error
whose message says what was expected and what was received.  Inner helpers
trust their inputs.
"""
from __future__ import annotations

import difflib
import numbers
import warnings
from collections.abc import Iterable, Sequence

import numpy as np

__all__ = [
    "NoisylabInputError",
    "check_random_state",
    "check_labels",
    "check_pred_probs",
    "check_labels_and_pred_probs",
    "check_option",
    "check_fraction",
]

#: Rows of ``pred_probs`` whose sum is off by more than float rounding but by at
#: most this absolute error are renormalised (with a warning); beyond it they are
#: rejected.
ROW_SUM_RENORMALIZE_TOL = 1e-2


class NoisylabInputError(ValueError):
    """Raised for invalid user input (a ``ValueError`` subclass)."""


def check_random_state(random_state) -> np.random.Generator:
    """Turn ``random_state`` into a :class:`numpy.random.Generator`.

    Parameters
    ----------
    random_state : None, int, numpy.random.Generator, numpy.random.SeedSequence or numpy.random.RandomState
        ``None`` draws fresh OS entropy (never numpy's global RNG); an int
        seeds a new PCG64 generator; a Generator is used as is; a legacy
        ``RandomState`` (as scikit-learn users pass) gives one 63-bit draw that
        seeds a new PCG64 generator (so it is advanced, and the same freshly
        seeded RandomState gives the same stream).
    """
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(int(random_state.randint(np.iinfo(np.int64).max, dtype=np.int64)))
    if random_state is None or isinstance(random_state, (numbers.Integral, np.random.SeedSequence)):
        if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
            if random_state < 0:
                raise NoisylabInputError(
                    f"random_state must be a non-negative int, a numpy Generator or None; got {random_state}."
                )
            return np.random.default_rng(int(random_state))
        if isinstance(random_state, bool):
            raise NoisylabInputError(f"random_state must be an int, a numpy Generator or None; got {random_state!r}.")
        return np.random.default_rng(random_state)
    if isinstance(random_state, np.random.Generator):
        return random_state
    raise NoisylabInputError(
        "random_state must be None, an int, a numpy.random.Generator, a RandomState or a SeedSequence; "
        f"got {type(random_state).__name__}."
    )


def int_seed(random_state, bound: int, *, what: str = "") -> int:
    """``random_state`` as one int seed in ``[0, bound)`` (an int >= 0 is returned as is), without
    touching numpy's global RNG: ``None`` draws from fresh OS entropy; a ``numpy.random.RandomState``
    or ``Generator`` gives one draw from it (so it advances, as in scikit-learn).  ``what`` is added
    to the error message (e.g. "(it names the split)")."""
    if random_state is None:
        return int(np.random.default_rng().integers(bound))
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(bound, dtype=np.int64))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(bound))
    what = f" {what}" if what else ""
    if isinstance(random_state, (bool, np.bool_)) or not isinstance(random_state, numbers.Integral):
        raise NoisylabInputError(f"random_state must be None, an int >= 0{what}, a numpy RandomState or a numpy "
                                 f"Generator; got {random_state!r}.")
    if random_state < 0:
        raise NoisylabInputError(f"random_state must be an int >= 0{what}; got {random_state!r}.")
    return int(random_state)


def check_int(name: str, value, *, min_value: int | None = None) -> int:
    """``value`` as an int (any integral number but a bool), at least ``min_value``; else a clear error."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or (
            min_value is not None and value < min_value):
        bound = f" >= {min_value}" if min_value is not None else ""
        raise NoisylabInputError(f"{name} must be an int{bound}; got {value!r}.")
    return int(value)


def check_option(name: str, value, options: Sequence[str]) -> str:
    """Check that ``value`` is one of ``options``; suggest the closest name if not."""
    if isinstance(value, str) and value in options:
        return value
    msg = f"Unknown {name} {value!r}. Expected one of: {', '.join(repr(o) for o in options)}."
    if isinstance(value, str):
        close = difflib.get_close_matches(value, list(options), n=1, cutoff=0.5)
        if close:
            msg += f" Did you mean {close[0]!r}?"
    raise NoisylabInputError(msg)


def check_fraction(name: str, value, *, low: float = 0.0, high: float = 1.0,
                   low_inclusive: bool = True, high_inclusive: bool = True) -> float:
    """Check that ``value`` is a real number in the given interval."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise NoisylabInputError(f"{name} must be a real number in [{low}, {high}]; got {value!r}.")
    ok_low = value >= low if low_inclusive else value > low
    ok_high = value <= high if high_inclusive else value < high
    if not (ok_low and ok_high):
        lb = "[" if low_inclusive else "("
        hb = "]" if high_inclusive else ")"
        raise NoisylabInputError(f"{name} must be in {lb}{low}, {high}{hb}; got {value!r}.")
    return float(value)


def check_labels(labels, *, name: str = "labels", n_classes: int | None = None,
                 allow_empty: bool = False, n_classes_from: str | None = None) -> np.ndarray:
    """Validate integer class labels and return them as a 1-D integer array.

    Accepts any 1-D array-like of integers (or of floats holding whole
    numbers).  Rejects strings (use :func:`noisylab.encode_labels`), booleans,
    non-integral floats, NaN, negative values and, when ``n_classes`` is
    given, values ``>= n_classes``.
    """
    if isinstance(labels, (str, bytes)):
        raise NoisylabInputError(f"{name} must be a 1-D array of integer class indices; got a string.")
    arr = np.asarray(labels)
    if arr.dtype == object:
        if any(isinstance(v, (str, bytes)) for v in arr.ravel().tolist()):
            raise NoisylabInputError(
                f"{name} must be integer class indices 0..K-1; got strings. "
                "Encode class names first with noisylab.encode_labels()."
            )
        try:
            arr = arr.astype(np.int64)
        except (TypeError, ValueError):
            raise NoisylabInputError(
                f"{name} must be integer class indices 0..K-1; got objects such as {arr.flat[0]!r}. "
                "Encode class names first with noisylab.encode_labels()."
            ) from None
    if arr.ndim != 1:
        raise NoisylabInputError(f"{name} must be 1-D with shape (n,); got shape {arr.shape}.")
    if arr.size == 0 and not allow_empty:
        raise NoisylabInputError(f"{name} is empty; expected at least one example.")
    if arr.dtype.kind in "USa":
        raise NoisylabInputError(
            f"{name} must be integer class indices 0..K-1; got strings such as {arr[0]!r}. "
            "Encode class names first with noisylab.encode_labels()."
        )
    if arr.dtype.kind == "b":
        raise NoisylabInputError(
            f"{name} must be integer class indices 0..K-1; got a boolean array "
            "(cast it with .astype(int) if True/False really are classes 1/0)."
        )
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)):
            raise NoisylabInputError(f"{name} contains NaN or infinite values.")
        as_int = arr.astype(np.int64)
        if np.any(as_int != arr):
            bad = arr[as_int != arr][0]
            raise NoisylabInputError(f"{name} must be whole numbers (class indices); got {bad!r}.")
        arr = as_int
    elif arr.dtype.kind not in "iu":
        raise NoisylabInputError(f"{name} must be integer class indices; got dtype {arr.dtype}.")
    if arr.dtype == np.uint64 and arr.size and arr.max() > np.iinfo(np.int64).max:
        raise NoisylabInputError(f"{name} has class indices too large to be real: {arr.max()}.")
    arr = arr.astype(np.int64, copy=False)
    if arr.size:
        lo = arr.min()
        if lo < 0:
            raise NoisylabInputError(f"{name} must be class indices >= 0; got {lo} at index {int(np.argmin(arr))}.")
        if n_classes is not None:
            hi = arr.max()
            if hi >= n_classes:
                source = f" ({n_classes_from})" if n_classes_from else ""
                raise NoisylabInputError(
                    f"{name} has class index {hi} (at index {int(np.argmax(arr))}) but there are only "
                    f"{n_classes} classes{source}, indices 0..{n_classes - 1}."
                )
    return arr


def first_bad_value(block, start: int = 0):
    """``(row, column, value)`` of the first NaN, infinite or negative value of ``block`` in row-major
    order (rows numbered from ``start``), or None.  The culprit reported does not depend on how the
    rows are split into blocks."""
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(block) | (block < 0)
    flat = np.flatnonzero(bad.ravel())
    if flat.size == 0:
        return None
    r, c = divmod(int(flat[0]), block.shape[1])
    return start + r, c, block[r, c]


def raise_bad_value(name: str, culprit) -> None:
    row, col, value = culprit
    shown = str(value)  # numpy's shortest repr in the array's dtype (-0.1, not -0.10000000149011612)
    if not np.isfinite(value):
        raise NoisylabInputError(f"{name} must be finite probabilities; got {shown} at row {row}, column {col}.")
    raise NoisylabInputError(
        f"{name} must be probabilities in [0, 1]; got a negative value {shown} at row {row}, column {col}."
    )


def _row_sum_tolerance(dtype: np.dtype, n_classes: int) -> float:
    """Largest |row sum - 1| accepted silently, as rounding of stored probabilities.

    1e-2 for float16 (three significant digits per entry: the CL paper's
    CIFAR-10 files, stored in float16, deviate by up to 4.4e-3), 1e-5 for
    float32 and float64.
    """
    return 1e-2 if dtype == np.float16 else 1e-5


def _renormalize_tolerance(dtype: np.dtype, n_classes: int) -> float:
    """Rows off by more than the rounding tolerance but at most this are renormalised: 1e-2, and
    2e-2 for float16, whose rounding tolerance is already 1e-2."""
    return 2e-2 if dtype == np.float16 else ROW_SUM_RENORMALIZE_TOL


def _is_dask_array(x) -> bool:
    """True for a ``dask.array.Array`` (checked without importing dask)."""
    return type(x).__module__.startswith("dask.array") and hasattr(x, "chunks") and hasattr(x, "dask")


def _check_pred_probs_structure(pred_probs, name):
    """Type, dimension, shape and dtype checks of ``pred_probs`` (no pass over the values)."""
    if isinstance(pred_probs, np.matrix):  # its 2-D-only indexing breaks row operations
        pred_probs = np.asarray(pred_probs)
    if isinstance(pred_probs, np.ndarray) or _is_dask_array(pred_probs):
        P = pred_probs
        if getattr(P, "ndim", 0) == 2 and _is_dask_array(P) and any(np.isnan(c) for c in P.chunks[0]):
            P = P.compute_chunk_sizes()  # unknown row counts
    else:
        try:
            P = np.asarray(pred_probs)
        except Exception as exc:  # pragma: no cover - exotic inputs
            raise NoisylabInputError(f"{name} must be a 2-D array of shape (n, K); could not convert: {exc}") from None
    if P.dtype == object or P.dtype.kind in "USabcmMV":
        raise NoisylabInputError(f"{name} must be a numeric 2-D array of shape (n, K); got dtype {P.dtype}.")
    if P.ndim != 2:
        raise NoisylabInputError(f"{name} must be 2-D with shape (n_examples, n_classes); got shape {P.shape}.")
    if P.shape[0] == 0:
        raise NoisylabInputError(f"{name} is empty; expected at least one example (got shape {P.shape}).")
    if P.shape[1] < 2:
        raise NoisylabInputError(
            f"{name} must have at least 2 columns (one per class); got shape {P.shape}."
        )
    if P.dtype not in (np.float16, np.float32, np.float64):
        P = P.astype(np.float64)
    return P


def check_pred_probs(pred_probs, *, name: str = "pred_probs", chunk_rows: int | None = None) -> np.ndarray:
    """Validate an ``(n, K)`` matrix of predicted probabilities.

    The array's float dtype is kept (float16/32/64; other dtypes are
    converted to float64).  NaN, infinities and negative values are
    rejected.  Rows whose sum differs from 1 by more than float rounding of
    the dtype but by at most :data:`ROW_SUM_RENORMALIZE_TOL` (float16: 2e-2, twice its
    rounding tolerance) are renormalised
    with a warning (in a copy); larger deviations are rejected.  See
    :func:`_row_sum_tolerance` for what counts as rounding.
    """
    if _is_dask_array(pred_probs):
        from .detect._dask import check_dask_pred_probs

        return check_dask_pred_probs(pred_probs, name=name)
    P = _check_pred_probs_structure(pred_probs, name)
    from ._chunks import Chunked

    scan = ValueScan(P, name)
    src = Chunked(P, chunk_rows=chunk_rows)
    # One pass: per block the row sums and the minimum.
    return scan.finish(src.run(scan.block, list, desc="checking pred_probs", memory_bound=True), src)


class ValueScan:
    """The value checks of :func:`check_pred_probs` (NaN, inf, negative values, row sums), run as a
    block function so that a caller can fuse them into its own first pass over ``pred_probs``.

    A NaN makes a block's minimum NaN, an infinity makes a row sum non-finite,
    a negative value makes the minimum negative; the precise culprit is
    located only then.  :meth:`finish` raises, or warns and returns the
    renormalised array, exactly as :func:`check_pred_probs`.
    """

    def __init__(self, P, name="pred_probs"):
        self.P = P
        self.name = name
        self.acc = np.float64 if P.dtype == np.float64 else np.float32

    def block(self, start, block):
        """(bad values?, start, largest |row sum - 1|, rows) of one block; the worst row is located in
        :meth:`finish` (few numpy calls per block: the checks are fused into other passes)."""
        s = _row_sums(block, self.acc)
        lo = block.min()
        smin, smax = s.min(), s.max()
        bad = not (lo >= 0 and np.isfinite(smin) and np.isfinite(smax))
        # bad: NaN/inf/negative values (located in finish), or finite values whose sum overflows
        worst = max(abs(float(smin) - 1.0), abs(float(smax) - 1.0)) if not bad else float("inf")
        return bad, start, worst, None, block.shape[0]

    def finish(self, parts, src=None):
        from ._chunks import Chunked

        P, name = self.P, self.name
        src = src if src is not None else Chunked(P)
        bad = [p for p in parts if p[0]]
        for p in bad:  # the first block with a bad value, unless only its row sums overflowed
            culprit = first_bad_value(np.asarray(P[p[1]:p[1] + p[4]]), p[1])
            if culprit is not None:
                raise_bad_value(name, culprit)
        # first block with the largest deviation (a block's deviation is the largest of its rows')
        worst, _, a, m = max(((p[2], -i, p[1], p[4]) for i, p in enumerate(parts)), key=lambda t: t[:2])
        if worst > _row_sum_tolerance(P.dtype, P.shape[1]):
            dev = np.abs(_row_sums(np.asarray(P[a:a + m]), self.acc).astype(np.float64) - 1.0)
            worst_row = a + int(np.argmax(dev))
            row_sum = float(np.add.reduce(P[worst_row], dtype=np.float64))
            row_sum_verdict(name, P.dtype, P.shape[1], worst, worst_row, row_sum)
            P = _renormalized(P, src)
        return P


def row_sum_verdict(name, dtype, n_classes, worst, worst_row, row_sum):
    """Raise when the worst row-sum deviation exceeds the renormalisation tolerance, else warn that rows
    are being renormalised.  Called only when ``worst`` exceeds the rounding tolerance."""
    rtol = _renormalize_tolerance(dtype, n_classes)
    if worst > rtol:
        raise NoisylabInputError(
            f"Each row of {name} must sum to 1; row {worst_row} sums to {row_sum:.6g} "
            f"(|sum - 1| = {worst:.3g} > tolerance {rtol:.3g}). "
            "Pass probabilities (e.g. a softmax), not logits or scores."
        )
    warn_user(f"Rows of {name} do not sum to 1 (worst: row {worst_row} sums to {row_sum:.6g}); renormalising them.")


def warn_user(message: str, category=UserWarning) -> None:
    """``warnings.warn`` attributed to the first caller outside noisylab (however deep the call)."""
    import os
    import sys

    pkg = os.path.dirname(os.path.abspath(__file__)) + os.sep
    level, frame = 2, sys._getframe(1)  # stacklevel 2 = the caller of warn_user
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(pkg):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)


def _row_sums(block, acc):
    """Row sums for the checks (an overflow gives inf, reported as a bad row sum, not as a warning)."""
    with np.errstate(over="ignore", invalid="ignore"):
        if block.dtype == acc and block.flags.c_contiguous:
            # a BLAS matrix-vector product: 5x faster than a pairwise reduction along rows; the
            # summation order differs only by float rounding, far below the tolerances
            return block @ np.ones(block.shape[1], dtype=acc)
        return np.add.reduce(block, axis=1, dtype=acc)


def _row_sum_block(start, block, *, acc):
    s = _row_sums(block, acc)
    lo = block.min()
    bad = not (lo >= 0) or not np.isfinite(s).all()
    dev = np.abs(s.astype(np.float64) - 1.0)
    i = int(np.argmax(dev))
    return bad, start, float(dev[i]), start + i, block.shape[0]


def _renormalize_block(start, block, out):
    out[:] = block / np.add.reduce(block, axis=1, dtype=np.float64, keepdims=True)


def _renormalized(P, src):
    """Rows of ``P`` divided by their sums, in P's dtype: in memory, or in a temporary memory-mapped
    file when ``P`` itself is memory-mapped (so that out-of-core inputs stay out of core)."""
    if not src.is_memmap:
        return (P / np.add.reduce(P, axis=1, dtype=np.float64, keepdims=True)).astype(P.dtype)
    import tempfile

    from ._chunks import Chunked

    with tempfile.TemporaryFile(prefix="noisylab-renormalized-") as tmp:  # the map keeps its own handle
        out = np.memmap(tmp, dtype=P.dtype, mode="w+", shape=P.shape)
    dst = Chunked(out)

    def block(start, rows, out_rows):
        _renormalize_block(start, rows, out_rows)
        dst.release(out_rows)  # written pages leave the process too (the page cache keeps them)

    src.map(block, out, desc="renormalising pred_probs")
    out.flush()
    return out


def check_labels_and_pred_probs(labels, pred_probs, *, require_two_classes: bool = True):
    """Validate ``labels`` (n,) against ``pred_probs`` (n, K); return both as arrays."""
    P = check_pred_probs(pred_probs)
    return _check_labels_against(labels, P, require_two_classes), P


def _check_labels_against(labels, P, require_two_classes):
    y = check_labels(labels, n_classes=P.shape[1], n_classes_from=f"pred_probs has {P.shape[1]} columns")
    if y.shape[0] != P.shape[0]:
        raise NoisylabInputError(
            f"labels and pred_probs must have the same number of examples; got {y.shape[0]} labels and "
            f"{P.shape[0]} rows of pred_probs."
        )
    if require_two_classes:
        first = y[0]
        if np.all(y == first):
            raise NoisylabInputError(
                f"labels contain only one class ({first}); finding label issues needs at least 2 classes "
                "present in the labels."
            )
    return y


def check_labels_and_pred_probs_deferred(labels, pred_probs, *, require_two_classes: bool = True):
    """Like :func:`check_labels_and_pred_probs`, but the value checks of ``pred_probs`` are returned as a
    :class:`ValueScan` (or None when already done, e.g. for Dask arrays) for the caller to fuse into
    its first pass and :meth:`ValueScan.finish` before using any result.  Structural checks
    (type, shape, dtype, labels) are done here."""
    if _is_dask_array(pred_probs):
        y, P = check_labels_and_pred_probs(labels, pred_probs, require_two_classes=require_two_classes)
        return y, P, None
    P = _check_pred_probs_structure(pred_probs, "pred_probs")
    y = _check_labels_against(labels, P, require_two_classes)
    return y, P, ValueScan(P)


def as_list_of_ints(name: str, values: Iterable, length: int) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1 or arr.shape[0] != length:
        raise NoisylabInputError(f"{name} must have one entry per class ({length}); got shape {arr.shape}.")
    if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iu" or (arr.size and arr.min() < 0):
        raise NoisylabInputError(f"{name} must be non-negative integers; got {list(values)!r}.")
    return arr.astype(np.int64)
