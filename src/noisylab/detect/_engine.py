"""Streaming confident-learning engine: a few passes over row chunks of ``pred_probs``.

Used by every filter of :func:`noisylab.find_label_issues`.  Works the same
on in-memory arrays and memory-mapped ``.npy`` files (memory stays bounded
by ``chunk_rows x K`` plus a few n-length vectors), never copies
``pred_probs`` and keeps its dtype.

Passes
------
1. Per chunk: self-confidence ``P[i, y_i]``, argmax prediction and its
   value, and (for the noise-rate filters) every *positive* margin
   ``p_j - p_{y_i} > 0`` of the rows whose prediction is not their label.
2. Per chunk, with the per-class thresholds from pass 1: the confident joint
   and the rows counted off its diagonal.

Prune by noise rate then needs no further pass: for a cell (given k,
suspected j) with count c, the c largest margins ``p_j - p_k`` over the
rows labelled k are all positive whenever at least c rows have a positive
margin, and those rows are exactly the recorded ones.  Only the rare cells
with fewer positive margins than c read their two columns again.  The final
argmax check is computed from the argmax, its value and the self-confidence.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._kernels import iter_chunks, select_largest

#: Rows per chunk: small enough that a chunk stays in cache across the passes.
ENGINE_CHUNK_ROWS = 1 << 12


#: Margins recorded per mispredicted row (its largest probabilities).
TOP_MARGINS = 4


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


def pass_rows(y, P, *, want_positive_margins=False, chunk_rows=ENGINE_CHUNK_ROWS) -> RowStats:
    """Pass 1.  With ``want_positive_margins``, each row whose argmax is not its label records the
    positive margins ``p_j - p_y`` of its ``TOP_MARGINS`` most probable classes; ``bound[k]`` is the
    largest margin any row labelled k did *not* record (its next-largest probability minus p_y)."""
    n, K = P.shape
    idx_dtype = np.int16 if K <= np.iinfo(np.int16).max else np.int32
    sc = np.empty(n, dtype=P.dtype)
    pred = np.empty(n, dtype=idx_dtype)
    pmax = np.empty(n, dtype=P.dtype)
    rows_l, cls_l, val_l = [], [], []
    T = min(TOP_MARGINS, K - 1)
    bound = np.full(K, -np.inf)
    for a, b in iter_chunks(n, chunk_rows):
        block = P[a:b]
        yy = y[a:b]
        r = np.arange(b - a)
        am = block.argmax(axis=1)
        pred[a:b] = am
        own = block[r, yy]
        sc[a:b] = own
        pmax[a:b] = block[r, am]
        if want_positive_margins:
            cand = np.flatnonzero(am != yy)
            if cand.size == 0:
                continue
            cb = block[cand]
            own_c = own[cand, None]
            if T >= K - 1:  # every class is recorded
                mu = cb - own_c
                ci, cj = np.nonzero(mu > 0)
                cls = cj
                vals = mu[ci, cj]
            else:
                part = np.argpartition(cb, K - T - 1, axis=1)
                top = part[:, K - T:]
                mu = np.take_along_axis(cb, top, axis=1) - own_c
                ci, ti = np.nonzero(mu > 0)
                cls = top[ci, ti]
                vals = mu[ci, ti]
                rest = np.take_along_axis(cb, part[:, K - T - 1:K - T], axis=1) - own_c
                np.maximum.at(bound, yy[cand], rest[:, 0].astype(np.float64))
            rows_l.append(cand[ci] + a)
            cls_l.append(cls)
            val_l.append(vals)
    stats = RowStats(sc, pred, pmax)
    if want_positive_margins:
        stats.bound = bound
        if rows_l:
            stats.pos_rows = np.concatenate(rows_l)
            stats.pos_cls = np.concatenate(cls_l).astype(np.int64)
            stats.pos_val = np.concatenate(val_l)
        else:
            stats.pos_rows = np.empty(0, dtype=np.int64)
            stats.pos_cls = np.empty(0, dtype=np.int64)
            stats.pos_val = np.empty(0, dtype=P.dtype)
    return stats


def pass_confident_joint(y, P, thresholds, pred, *, want_offdiag=False, chunk_rows=ENGINE_CHUNK_ROWS):
    """Raw confident joint (C[given, guess], Fortran-ordered as the reference) and off-diagonal rows."""
    n, K = P.shape
    thr = thresholds - 1e-6  # in the thresholds' dtype
    cj = np.zeros(K * K, dtype=np.int64)
    offdiag = np.zeros(n, dtype=bool) if want_offdiag else None
    for a, b in iter_chunks(n, chunk_rows):
        above = P[a:b] >= thr
        cnt = np.count_nonzero(above, axis=1)
        guess = np.where(cnt == 1, above.argmax(axis=1), pred[a:b])
        keep = cnt > 0
        yy = y[a:b]
        cj += np.bincount(guess[keep] * K + yy[keep], minlength=K * K)
        if want_offdiag:
            offdiag[a:b] = keep & (guess != yy)
    return cj.reshape(K, K).T, offdiag


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


def prune_by_noise_rate(y, P, stats: RowStats, counts, order_bounds):
    """Rows flagged by PBNR: for each (given k, suspected j) cell, the ``counts[j, k]`` largest margins.

    ``counts`` is (K, K) indexed [suspected true j, given k] (diagonal ignored).
    Ties at a cut-off go to the lowest row index.  A cell is decided from
    the margins recorded in pass 1 when it has at least c of them and its
    c-th largest exceeds ``stats.bound`` of its class (so no unrecorded
    margin can compete; rows predicted as their label have no positive
    margin at all); otherwise its two columns are read again.
    ``order_bounds`` returns (order, bounds) of the rows grouped by label.
    """
    n, K = P.shape
    C = counts.copy()
    np.fill_diagonal(C, 0)
    cell_count = C.T.ravel()  # [k*K + j] -> counts[j, k]
    rows, cls, val = stats.pos_rows, stats.pos_cls, stats.pos_val
    key = y[rows].astype(np.int64) * K + cls  # cell (given k, suspected j) as k*K + j
    # by cell, margin descending, row ascending: rows were recorded in increasing order, so two
    # stable sorts (margin, then cell: a radix sort when the cell id fits 16 bits) do it.
    by_val = np.argsort(-val, kind="stable")
    cell_key = key.astype(np.uint16) if K * K <= np.iinfo(np.uint16).max + 1 else key
    order = by_val[np.argsort(cell_key[by_val], kind="stable")]
    key_s = key[order]
    starts = np.searchsorted(key_s, key_s, side="left")
    rank = np.arange(key_s.size) - starts

    n_rec = np.bincount(key, minlength=K * K)
    need = np.flatnonzero(cell_count > 0)
    ok = n_rec[need] >= cell_count[need]
    if ok.any():
        cells = need[ok]
        cut = np.searchsorted(key_s, cells, side="left") + cell_count[cells] - 1
        ok[ok] = val[order[cut]].astype(np.float64) > stats.bound[cells // K]
    cell_ok = np.zeros(K * K, dtype=bool)
    cell_ok[need[ok]] = True

    flagged = np.zeros(n, dtype=bool)
    flagged[rows[order[(rank < cell_count[key_s]) & cell_ok[key_s]]]] = True
    redo = need[~ok]
    if redo.size:
        grp_order, bounds = order_bounds()
        redo_k, redo_j = np.divmod(redo, K)
        for k in np.unique(redo_k):
            js = redo_j[redo_k == k]
            class_rows = grp_order[bounds[k]:bounds[k + 1]]
            cols = P[np.ix_(class_rows, np.append(js, k))]  # (n_k, |js| + 1): one gather per class
            mu = cols[:, :-1] - cols[:, -1:]
            for t, j in enumerate(js):
                flagged[class_rows[select_largest(mu[:, t], int(cell_count[k * K + j]))]] = True
    return flagged
