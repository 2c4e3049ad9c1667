"""Confident learning on the CL paper's CIFAR-10 benchmark inputs.

Each file ``sparsity{S}_noise{N}.npz`` holds the paper's 4-fold
cross-validated ResNet-50 probabilities on CIFAR-10 (``pred_probs``, stored as
float16), the noisy labels the model was trained on and the true labels.
For every filter we report precision / recall / F1 of the flagged set
against ``true_labels != noisy_labels``.

The probabilities are processed in float32 by default: the paper computed
them in float32 and the files store them in float16 only to save space.  In
float16 the 1e-6 slack of the threshold comparison vanishes and thresholds
are compared at float16 precision, which moves one or two of 50,000 examples
(``dtype="native"`` keeps float16, as cleanlab would on these files).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .._format import markdown_table
from .._validation import NoisylabInputError, check_labels_and_pred_probs, check_option
from ..detect.filter import _find_label_issues
from ..metrics import detection_precision_recall_f1

__all__ = ["CL_CIFAR10_FILTERS", "PUBLISHED_CL_CIFAR10", "bench_cl_cifar10", "find_cl_cifar10_dir"]

#: Filters in the order of the CL paper's Table (with the paper's names).
CL_CIFAR10_FILTERS = {
    "prune_by_class": "PBC",
    "prune_by_noise_rate": "PBNR",
    "both": "C+NR",
    "confident_learning": "C_ỹ,y*",
    "predicted_neq_given": "C_confusion",
}

#: Reference precision / recall at sparsity 0 (shared/data/README.md), keyed by (filter, noise %).
PUBLISHED_CL_CIFAR10 = {
    ("prune_by_class", 20): (0.635, 0.958), ("prune_by_class", 40): (0.764, 0.943),
    ("prune_by_class", 70): (0.815, 0.801),
    ("prune_by_noise_rate", 20): (0.650, 0.935), ("prune_by_noise_rate", 40): (0.819, 0.883),
    ("prune_by_noise_rate", 70): (0.840, 0.632),
    ("both", 20): (0.675, 0.926), ("both", 40): (0.820, 0.866), ("both", 70): (0.837, 0.606),
    ("confident_learning", 20): (0.670, 0.857), ("confident_learning", 40): (0.789, 0.903),
    ("confident_learning", 70): (0.818, 0.835),
    ("predicted_neq_given", 20): (0.557, 0.975), ("predicted_neq_given", 40): (0.741, 0.970),
    ("predicted_neq_given", 70): (0.817, 0.843),
}

_NAME = re.compile(r"sparsity(\d+)_noise(\d+)\.npz$")


def find_cl_cifar10_dir():
    """The ``shared/data/cl-cifar10`` folder beside the working directory or the source tree, if any."""
    here = Path(__file__).resolve()
    for base in [Path.cwd(), *Path.cwd().parents, *here.parents]:
        cand = base / "shared" / "data" / "cl-cifar10"
        if cand.is_dir():
            return cand
    return None


def bench_cl_cifar10(data_dir, *, dtype="float32", filters=tuple(CL_CIFAR10_FILTERS)):
    """Precision / recall / F1 of every filter on every ``sparsity*_noise*.npz`` file of ``data_dir``.

    Returns
    -------
    results : list of dict
        One per (file, filter): ``sparsity``, ``noise``, ``filter``,
        ``precision``, ``recall``, ``f1``, ``n_flagged``, ``n_noisy``,
        ``realized_noise``.
    """
    dtype = check_option("dtype", dtype, ("float32", "float64", "native"))
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise NoisylabInputError(f"CL CIFAR-10 data folder not found: {data_dir}")
    files = sorted(
        (int(m.group(1)), int(m.group(2)), p)
        for p in data_dir.iterdir() if (m := _NAME.search(p.name))
    )
    if not files:
        raise NoisylabInputError(f"No sparsity*_noise*.npz files in {data_dir}.")
    results = []
    for sparsity, noise, path in files:
        with np.load(path) as z:
            missing = {"pred_probs", "noisy_labels", "true_labels"} - set(z.files)
            if missing:
                raise NoisylabInputError(f"{path} lacks arrays {sorted(missing)}.")
            P = z["pred_probs"]
            given = z["noisy_labels"].astype(np.int64)
            true = z["true_labels"].astype(np.int64)
        # Validate as stored (float16: row sums are off by float16 rounding only), then
        # compute in the requested precision without renormalising.
        given, P = check_labels_and_pred_probs(given, P)
        if dtype != "native":
            P = P.astype(dtype)
        is_noisy = given != true
        for fb in filters:
            mask = _find_label_issues(given, P, filter_by=fb, frac_noise=1.0, num_to_remove=None,
                                      min_examples_per_class=1, confident_joint=None)
            m = detection_precision_recall_f1(mask, is_noisy)
            results.append(dict(sparsity=sparsity, noise=noise, filter=fb, precision=m["precision"],
                                recall=m["recall"], f1=m["f1"], n_flagged=m["n_flagged"],
                                n_noisy=m["n_noisy"], realized_noise=float(is_noisy.mean())))
    return results


def results_table(results) -> str:
    """Markdown table: one row per filter, one column per (noise, sparsity) file."""
    settings = sorted({(r["noise"], r["sparsity"]) for r in results})
    filters = list(dict.fromkeys(r["filter"] for r in results))
    by = {(r["filter"], r["noise"], r["sparsity"]): r for r in results}
    header = ["method"] + [f"noise {n}% / sparsity {s}%" for n, s in settings]
    rows = []
    for fb in filters:
        row = [f"{fb} ({CL_CIFAR10_FILTERS.get(fb, fb)})"]
        for n, s in settings:
            r = by[(fb, n, s)]
            if r["n_noisy"] == 0:
                row.append(f"{r['n_flagged']} flagged (no noise)")
            else:
                row.append(f"{r['precision']:.3f} / {r['recall']:.3f} / {r['f1']:.3f}")
        rows.append(row)
    table = markdown_table(header, rows)
    checks = []
    for (fb, n, s), r in by.items():
        ref = PUBLISHED_CL_CIFAR10.get((fb, n)) if s == 0 else None
        if ref is not None:
            got = (round(r["precision"], 3), round(r["recall"], 3))
            checks.append((fb, n, ref, got, got == ref))
    lines = [table, "", "Cells: precision / recall / F1 of the flagged set against true_labels != noisy_labels."]
    if checks:
        ok = sum(c[-1] for c in checks)
        lines.append(f"Reference figures (shared/data/README.md, sparsity 0): {ok}/{len(checks)} reproduced exactly.")
        for fb, n, ref, got, same in checks:
            if not same:
                lines.append(f"  MISMATCH {fb} at {n}% noise: reference {ref}, got {got}")
    return "\n".join(lines)
