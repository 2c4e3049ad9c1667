"""Streaming confident-learning engine: a few passes over row blocks of ``pred_probs``.

Used by every filter of :func:`noisylab.find_label_issues` and by the counts.
Each pass is a block function plus a combine step (see :mod:`noisylab._chunks`),
so the same code runs on in-memory arrays (blocks in a thread pool),
memory-mapped ``.npy`` files (pages released after each block, memory
bounded by a few blocks plus some n-length vectors) and Dask arrays.
``pred_probs`` is never copied and keeps its dtype.

Passes
------
1. Per block: self-confidence ``P[i, y_i]``, argmax prediction and its
   value, and (for the noise-rate filters) the *positive* margins
   ``p_j - p_{y_i} > 0`` of the ``TOP_MARGINS`` most probable classes of the
   rows whose prediction is not their label; ``bound[k]`` is an upper bound
   of every margin of a row labelled k that was not recorded.
2. Per block, with the per-class thresholds from pass 1: the class each row
   is confidently counted as (or -1); the confident joint and the rows off
   its diagonal follow with one ``bincount``.

Prune by noise rate then needs no further pass: for a cell (given k,
suspected j) with count c, the c largest margins ``p_j - p_k`` over the rows
labelled k are the c largest recorded ones whenever at least c were
recorded and the c-th exceeds ``bound[k]`` (rows predicted as their label
have no positive margin at all).  The rare other cells read their two
columns again (one gather per class).  The final argmax check is computed
from the argmax, its value and the self-confidence.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np

from .._chunks import as_chunked, concat
from ._kernels import select_largest_per_column

#: Margins recorded per mispredicted row (its largest probabilities).
TOP_MARGINS = 5


@dataclass
class RowStats:
    """Per-row results of pass 1 (all length n) and the recorded margins."""

    sc: np.ndarray          # P[i, y_i], P's dtype
    pred: np.ndarray        # argmax_j P[i, j] (first maximum)
    pmax: np.ndarray        # P[i, pred_i], P's dtype
    pos_rows: np.ndarray | None = None   # rows / classes / values of recorded positive margins
    pos_cls: np.ndarray | None = None
    pos_val: np.ndarray | None = None
    bound: np.ndarray | None = None      # (K,) per given class: upper bound of every unrecorded margin


def _index_dtype(K):
    return np.int16 if K <= np.iinfo(np.int16).max else np.int32


def take_rows(block, cols):
    """``block[i, cols[i]]`` for every row ``i`` of a 2-D block.

    A flat ``np.take`` on a C-contiguous block (2-3x faster than indexing with two integer arrays,
    which goes through numpy's general advanced-indexing iterator); fancy indexing otherwise.
    """
    m, K = block.shape
    if block.flags.c_contiguous:
        return np.take(block.reshape(-1), flat_index(m, K, cols))
    return block[np.arange(m), cols]


def flat_index(m, K, cols):
    """Flat positions ``i·K + cols[i]`` of one entry per row of a C-contiguous (m, K) block."""
    return np.arange(0, m * K, K, dtype=np.intp) + cols


# --------------------------------------------------------------------------- pass 1
def _rows_block(start, block, yy, *, n_top):
    """Block function of pass 1; ``n_top`` = 0 records no margins."""
    m, K = block.shape
    am = block.argmax(axis=1)
    own = take_rows(block, yy)
    pmax = take_rows(block, am)
    pred = am.astype(_index_dtype(K))
    if not n_top:
        return own, pred, pmax
    bound = np.full(K, -np.inf)
    cand = np.flatnonzero(am != yy)
    if cand.size == 0:
        return (own, pred, pmax, np.empty(0, dtype=np.int64), np.empty(0, dtype=pred.dtype),
                np.empty(0, dtype=block.dtype), bound)
    cb = block[cand]
    own_c = own[cand]
    if n_top >= K - 1:  # every class is recorded
        floor = own_c
    else:
        # Record the values above the (n_top + 1)-th largest (at most n_top per row); every
        # unrecorded value is <= it, which bounds the unrecorded margins of the row's class.
        nth = np.partition(cb, K - n_top - 1, axis=1)[:, K - n_top - 1]
        floor = np.maximum(nth, own_c)
        np.maximum.at(bound, yy[cand], (nth - own_c).astype(np.float64))
    flat = np.flatnonzero(cb > floor[:, None])
    ci, cls = np.divmod(flat, K)
    vals = cb.ravel()[flat] - own_c[ci]
    rows = cand[ci] + start
    rows = rows.astype(np.int32 if start + m <= np.iinfo(np.int32).max else np.int64)
    return own, pred, pmax, rows, cls.astype(pred.dtype), vals, bound


def _combine_rows(parts, *, n_top, dtype, K):
    sc = concat([p[0] for p in parts], dtype)
    pred = concat([p[1] for p in parts], _index_dtype(K))
    pmax = concat([p[2] for p in parts], dtype)
    if not n_top:
        return (sc, pred, pmax)
    bound = np.full(K, -np.inf)
    for p in parts:
        np.maximum(bound, p[6], out=bound)
    return (sc, pred, pmax, concat([p[3] for p in parts], np.int64), concat([p[4] for p in parts], pred.dtype),
            concat([p[5] for p in parts], dtype), bound)


def _scanned(start, block, *row_slices, fn, scan):
    """``fn`` plus the deferred value checks of ``scan`` on the same block (while it is in cache).
    Bad values are reported by the checks; meanwhile ``fn`` must not warn about them."""
    checks = scan.block(start, block)  # a streaming read first: fn then finds the block in cache
    with np.errstate(all="ignore"):
        return fn(start, block, *row_slices), checks


def _combine_scanned(parts, *, combine):
    return combine([p[0] for p in parts]), [p[1] for p in parts]


def run_checked(P, fn, combine, *row_vectors, scan=None, desc=None, memory_bound=False):
    """One pass of ``fn`` over ``P`` with the deferred value checks ``scan`` fused in (if given).

    Returns ``(result, P)``.  When the checks renormalise ``pred_probs`` (rows
    slightly off 1), the pass is run again on the renormalised array, which is
    returned; invalid values raise before any result is used.
    """
    src = as_chunked(P)
    if scan is None:
        return src.run(fn, combine, *row_vectors, desc=desc, memory_bound=memory_bound), P
    out, scan_parts = src.run(partial(_scanned, fn=fn, scan=scan), partial(_combine_scanned, combine=combine),
                              *row_vectors, desc=desc, memory_bound=memory_bound)
    checked = scan.finish(scan_parts)
    if checked is not src.P:
        return run_checked(checked, fn, combine, *row_vectors, desc=desc, memory_bound=memory_bound)
    return out, P


def pass_rows(y, P, *, want_positive_margins=False, desc="pass 1/2: predictions") -> RowStats:
    """Pass 1 over ``P`` (an array or a runner from :mod:`noisylab._chunks`)."""
    stats, _ = first_pass(y, P, None, want_positive_margins=want_positive_margins, desc=desc)
    return stats


def first_pass(y, P, scan, *, want_positive_margins=False, desc="pass 1/2: predictions"):
    """Pass 1, with the value checks of ``pred_probs`` fused in when ``scan`` (a
    :class:`noisylab._validation.ValueScan`) is given.  Returns ``(stats, P)``: ``P`` is the
    renormalised array when the checks renormalised it."""
    src = as_chunked(P)
    K = src.shape[1]
    n_top = min(TOP_MARGINS, K - 1) if want_positive_margins else 0
    out, P = run_checked(P, partial(_rows_block, n_top=n_top),
                         partial(_combine_rows, n_top=n_top, dtype=src.dtype, K=K), y, scan=scan, desc=desc)
    stats = RowStats(*out[:3])
    if want_positive_margins:
        stats.pos_rows, stats.pos_cls, stats.pos_val, stats.bound = out[3:]
    return stats, P


def _own_block(start, block, yy):
    return take_rows(block, yy)


def self_confidence_of(y, P, desc="self-confidence", scan=None):
    """``P[i, y_i]`` (n,) in P's dtype: one gather in memory, a streaming pass otherwise (with the
    deferred value checks ``scan`` fused in, if given)."""
    src = as_chunked(P)
    if scan is None and src.kind == "numpy" and not src.is_memmap:
        return take_rows(src.P, y)
    sc, _ = run_checked(P, _own_block, partial(concat, dtype=src.dtype), y, scan=scan, desc=desc, memory_bound=True)
    return sc


# --------------------------------------------------------------------------- pass 2
def _count_dtype(K):
    return np.uint8 if K <= np.iinfo(np.uint8).max else (np.uint16 if K <= np.iinfo(np.uint16).max else np.int64)


def _code_dtype(K):
    return np.int32 if K * K <= np.iinfo(np.int32).max else np.int64


def _guess_block(start, block, yy, pred, *, thr):
    """Cell ``guess * K + given`` of each row in the confident joint, or -1 when no class reaches its
    threshold.  The guess is the only class at or above its threshold, or the argmax when several are
    (cleanlab's rule)."""
    m, K = block.shape
    above = block >= thr
    cnt = np.add.reduce(above.view(np.uint8), axis=1, dtype=_count_dtype(K))
    guess = pred.astype(_code_dtype(K))
    # a single class above its threshold that is not the argmax (rare): find it
    odd = np.flatnonzero((cnt == 1) & ~above[np.arange(m), pred])
    if odd.size:
        guess[odd] = above[odd].argmax(axis=1)
    code = guess * K + yy
    code[cnt == 0] = -1
    return code


def pass_confident_joint(y, P, thresholds, pred, *, want_offdiag=False, desc="pass 2/2: confident joint"):
    """Raw confident joint (C[given, guess], Fortran-ordered as the reference) and off-diagonal rows."""
    src = as_chunked(P)
    K = src.shape[1]
    thr = thresholds - 1e-6  # in the thresholds' dtype
    code = src.run(partial(_guess_block, thr=thr), partial(concat, dtype=_code_dtype(K)), y, pred, desc=desc)
    keep = code >= 0
    cj = np.bincount(code[keep], minlength=K * K)
    offdiag = None
    if want_offdiag:
        offdiag = keep
        offdiag[keep] = code[keep] // K != y[keep]
    return cj.reshape(K, K).T, offdiag


# --------------------------------------------------------------------------- PBNR
def post_filter_keep(y, stats: RowStats, idx):
    """For rows ``idx``: does the argmax differ from the label once P[i, y_i] gets +1e-6 (in P's dtype)?

    Equivalent to bumping the row and taking ``argmax`` (first maximum):
    the bumped label wins if it exceeds the row maximum, or equals it and
    comes first.
    """
    yy = y[idx]
    am = stats.pred[idx].astype(np.int64)
    m = stats.pmax[idx]
    bumped = stats.sc[idx] + 1e-6  # numpy scalar promotion keeps P's dtype
    return (am != yy) & ((m > bumped) | ((m == bumped) & (am < yy)))


def _desc_keys(val):
    """16-bit radix digits (least significant first) of a key sorting floats in DEcreasing order.

    ``-0.0`` sorts as ``+0.0`` (they compare equal); NaN never occurs (inputs are validated).
    """
    bits = {2: np.uint16, 4: np.uint32, 8: np.uint64}[val.dtype.itemsize]
    u = (val + val.dtype.type(0)).view(bits)  # -0.0 + 0.0 = +0.0
    sign = np.array(1, dtype=bits) << np.array(8 * val.dtype.itemsize - 1, dtype=bits)
    # increasing order of the floats = increasing order of: u | sign (positive), ~u (negative)
    asc = np.where(u & sign, ~u, u | sign)
    inv = ~asc
    return [(inv >> np.array(16 * d, dtype=bits)).astype(np.uint16) for d in range(val.dtype.itemsize // 2)]


def _cell_order(key, val, n_cells):
    """Permutation sorting entries by cell (ascending), margin (descending), position (ascending).

    A least-significant-digit radix sort made of stable 16-bit ``argsort``
    passes (NumPy sorts 16-bit keys with a radix sort), several times faster
    than a comparison sort of the margins.
    """
    digits = _desc_keys(val)
    if n_cells <= 1 << 16:
        digits.append(key.astype(np.uint16))
    else:
        k = key.astype(np.uint32)
        digits.append((k & 0xFFFF).astype(np.uint16))
        digits.append((k >> 16).astype(np.uint16))
    order = np.argsort(digits[0], kind="stable")
    for d in digits[1:]:
        order = order[np.argsort(d[order], kind="stable")]
    return order


#: Recorded margins processed at a time when selecting the candidates of each cell.
ENTRY_SLICE = 1 << 20


def _entry_keys(y, stats, a, b, K):
    key = y[stats.pos_rows[a:b]].astype(_code_dtype(K))
    key *= K
    key += stats.pos_cls[a:b]  # cell (given k, suspected j) as k*K + j
    return key


def _candidate_entries(y, stats, cell_count, K):
    """Per-cell number of recorded margins, and the recorded entries that can be among the top c.

    Only entries at or above the c-th largest margin of their cell matter.
    Coarse margin levels (``floor(levels * margin)``: exact and monotone)
    locate the level of that c-th largest per cell with one histogram;
    entries below it, and every entry of a cell with nothing to prune, are
    dropped before the sort.  Works on slices of the entries (bounded
    temporaries) and releases the recorded margins from ``stats``.
    """
    E = stats.pos_rows.shape[0]
    levels = int(np.clip((1 << 21) // (K * K), 1, 16))
    n_rec = np.zeros(K * K, dtype=np.int64)
    hist = np.zeros(K * K * levels, dtype=np.int64)

    def level_of(val):
        return np.minimum(val * levels, levels - 1).astype(np.uint8)  # margins are in (0, 1]

    for a in range(0, E, ENTRY_SLICE):
        key = _entry_keys(y, stats, a, a + ENTRY_SLICE, K)
        n_rec += np.bincount(key, minlength=K * K)
        if levels > 1:
            hist += np.bincount(key * levels + level_of(stats.pos_val[a:a + ENTRY_SLICE]), minlength=K * K * levels)
    hist = hist.reshape(K * K, levels)
    at_least = np.cumsum(hist[:, ::-1], axis=1)[:, ::-1]  # [cell, l]: entries with level >= l
    enough = at_least >= np.maximum(cell_count, 1)[:, None]
    floor_level = np.where(enough.any(axis=1), levels - 1 - np.argmax(enough[:, ::-1], axis=1), 0)
    floor_level[cell_count <= 0] = levels  # nothing to select: drop every entry
    floor_level = floor_level.astype(np.uint8)
    rows, keys, vals = [], [], []
    for a in range(0, E, ENTRY_SLICE):
        key = _entry_keys(y, stats, a, a + ENTRY_SLICE, K)
        val = stats.pos_val[a:a + ENTRY_SLICE]
        keep = level_of(val) >= floor_level[key]
        rows.append(stats.pos_rows[a:a + ENTRY_SLICE][keep])
        keys.append(key[keep])
        vals.append(val[keep])
    stats.pos_rows = stats.pos_cls = stats.pos_val = None  # consumed
    return (n_rec, concat(rows, np.int64), concat(keys, _code_dtype(K)),
            concat(vals, stats.sc.dtype))


def prune_by_noise_rate(y, P, stats: RowStats, counts, order_bounds):
    """Rows flagged by PBNR: for each (given k, suspected j) cell, the ``counts[j, k]`` largest margins.

    ``counts`` is (K, K) indexed [suspected true j, given k] (diagonal ignored).
    Ties at a cut-off go to the lowest row index.  A cell is decided from
    the margins recorded in pass 1 when it has at least c of them and its
    c-th largest exceeds ``stats.bound`` of its class (so no unrecorded
    margin can compete); otherwise its two columns are read again.
    ``order_bounds`` returns (order, bounds) of the rows grouped by label.
    The recorded margins of ``stats`` are consumed (set to None).
    """
    src = as_chunked(P)
    n, K = src.shape
    C = counts.copy()
    np.fill_diagonal(C, 0)
    cell_count = C.T.ravel()  # [k*K + j] -> counts[j, k]
    n_rec, rows, key, val = _candidate_entries(y, stats, cell_count, K)
    need = np.flatnonzero(cell_count > 0)
    order = _cell_order(key, val, K * K)
    starts = np.zeros(K * K + 1, dtype=np.int64)
    np.cumsum(np.bincount(key, minlength=K * K), out=starts[1:])
    key_s = key[order]
    rank = np.arange(key_s.size) - starts[key_s]

    ok = n_rec[need] >= cell_count[need]
    if ok.any():
        cells = need[ok]
        cut = starts[cells] + cell_count[cells] - 1
        ok[ok] = val[order[cut]].astype(np.float64) > stats.bound[cells // K]
    cell_ok = np.zeros(K * K, dtype=bool)
    cell_ok[need[ok]] = True

    flagged = np.zeros(n, dtype=bool)
    flagged[rows[order[(rank < cell_count[key_s]) & cell_ok[key_s]]]] = True
    redo = need[~ok]
    if redo.size:
        if src.kind == "numpy" and not src.is_memmap:
            _redo_by_gather(y, src, redo, cell_count, order_bounds, flagged)
        else:
            _redo_by_pass(y, src, redo, cell_count, flagged)
    return flagged


def _redo_by_gather(y, src, redo, cell_count, order_bounds, flagged):
    """Undecided cells, in memory: one gather of the needed columns per class."""
    K = src.shape[1]
    grp_order, bounds = order_bounds()
    redo_k, redo_j = np.divmod(redo, K)
    requests = []
    for k in np.unique(redo_k):
        js = redo_j[redo_k == k]
        requests.append((grp_order[bounds[k]:bounds[k + 1]], np.append(js, k)))
    for (class_rows, cols), block in zip(requests, src.gather_many(requests)):  # (n_k, |js| + 1)
        k = cols[-1]
        mu = block[:, :-1] - block[:, -1:]
        rows, _ = select_largest_per_column(mu, cell_count[k * K + cols[:-1]])
        flagged[class_rows[rows]] = True


def _top_per_cell(cell, val, count):
    """Positions (increasing) of the ``count[cell]`` largest values of each cell; ties to the lowest position."""
    order = _cell_order(cell, val, count.shape[0])
    starts = np.zeros(count.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(cell, minlength=count.shape[0]), out=starts[1:])
    cell_s = cell[order]
    rank = np.arange(cell_s.size) - starts[cell_s]
    return np.sort(order[rank < count[cell_s]])


def _redo_block(start, block, yy, *, first, n_cells, cell_j, cell_c):
    """Per block, for every undecided cell (k, j): the rows labelled k with the c largest ``p_j - p_k``.

    ``first[k]`` / ``n_cells[k]``: the undecided cells of class k are ``first[k]:first[k] + n_cells[k]``.
    """
    sel = np.flatnonzero(n_cells[yy] > 0)
    reps = n_cells[yy[sel]]
    if sel.size == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64), np.empty(0, dtype=block.dtype)
    row = np.repeat(sel, reps)
    within = np.arange(row.size) - np.repeat(np.cumsum(reps) - reps, reps)
    cell = np.repeat(first[yy[sel]], reps) + within
    margin = block[row, cell_j[cell]] - block[row, yy[row]]
    keep = _top_per_cell(cell, margin, cell_c)
    return row[keep] + start, cell[keep], margin[keep]


def _combine_triples(parts):
    return tuple(concat([p[i] for p in parts]) for i in range(3))


def _redo_by_pass(y, src, redo, cell_count, flagged):
    """Undecided cells, out of core or on Dask: one more streaming pass keeps the per-block top c of each
    cell; the global top c is among them (same order: margin, then row)."""
    K = src.shape[1]
    redo_k, redo_j = np.divmod(redo, K)  # increasing k
    n_cells = np.bincount(redo_k, minlength=K)
    first = np.zeros(K, dtype=np.int64)
    first[1:] = np.cumsum(n_cells)[:-1]
    cell_c = cell_count[redo]
    rows, cell, margin = src.run(
        partial(_redo_block, first=first, n_cells=n_cells, cell_j=redo_j, cell_c=cell_c),
        _combine_triples, y, desc="pass 3/3: undecided cells",
    )
    if rows.size:
        flagged[rows[_top_per_cell(cell.astype(np.int64), margin, cell_c)]] = True
