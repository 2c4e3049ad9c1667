"""Plain-text formatting helpers for summaries (markdown tables, matrices)."""
from __future__ import annotations

import re

import numpy as np


def _cell(value) -> str:
    """One table cell: ``|`` escaped (it would split the cell; an already escaped one is kept) and line
    breaks flattened."""
    return re.sub(r"(?<!\\)\|", r"\\|", str(value)).replace("\r", " ").replace("\n", " ")


def markdown_table(header, rows) -> str:
    header = [_cell(h) for h in header]
    rows = [[_cell(c) for c in r] for r in rows]
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def format_matrix(M, names=None, *, digits=2, row_title="noisy\\true") -> str:
    """A K x K matrix as aligned text with row/column names."""
    M = np.asarray(M)
    K = M.shape[0]
    names = [str(n) for n in (names if names is not None else range(K))]
    cells = [[f"{v:.{digits}f}" for v in row] for row in M]
    w = max([len(n) for n in names] + [len(c) for r in cells for c in r] + [digits + 2])
    first = max(len(row_title), max(len(n) for n in names))
    lines = [row_title.rjust(first) + " " + " ".join(n.rjust(w) for n in names)]
    for name, r in zip(names, cells):
        lines.append(name.rjust(first) + " " + " ".join(c.rjust(w) for c in r))
    return "\n".join(lines)
