"""``noisylab bench robust``: every robust-training method on the INCV paper's noise settings.

The grid is ``grids/robust_mnist1d.toml`` (shipped with the package): symmetric 0.2 / 0.5 / 0.8 and
pair 0.4 x every method x 3 seeds on MNIST-1D, plus the clean-label ceiling; the runner is
:func:`noisylab.torch.robust.run_one` and the protocol (noise definition, model, epochs, selection
rule) is recorded with every result.  :func:`robust_report` renders the markdown: mean +- std test
accuracy per method and noise setting, the last-epoch accuracy, the cost per epoch relative to
standard training, the checks of the issue's targets, and the INCV paper's published CIFAR-10
table, clearly labelled (another data set and network: the *ordering* is what can be compared).
"""
from __future__ import annotations

from importlib import resources

import numpy as np

from .._validation import NoisylabInputError
from .harness import Grid, load_grid, protocol_lines, results_table

__all__ = ["ROBUST_GRID", "PUBLISHED_INCV_CIFAR10", "check_robust_specs", "robust_grid", "robust_report"]

#: The shipped grid file.
ROBUST_GRID = "grids/robust_mnist1d.toml"

#: INCV README, CIFAR-10 test accuracy (%), mean +- std of 5 runs (METHODS.md §2.4).
PUBLISHED_INCV_CIFAR10 = {
    "F-correction": ("85.08 ± 0.43", "76.02 ± 0.19", "34.76 ± 4.53", "83.55 ± 2.15"),
    "Decoupling": ("86.72 ± 0.32", "79.31 ± 0.62", "36.90 ± 4.61", "75.27 ± 0.83"),
    "Co-teaching": ("89.05 ± 0.32", "82.12 ± 0.59", "16.21 ± 3.02", "84.55 ± 2.81"),
    "MentorNet": ("88.36 ± 0.46", "77.10 ± 0.44", "28.89 ± 2.29", "77.33 ± 0.79"),
    "D2L": ("86.12 ± 0.43", "67.39 ± 13.62", "10.02 ± 0.04", "85.57 ± 1.21"),
    "INCV": ("89.71 ± 0.18", "84.78 ± 0.33", "52.27 ± 3.50", "86.04 ± 0.54"),
}
NOISE_ORDER = ("symmetric:0.2", "symmetric:0.5", "symmetric:0.8", "pair:0.4")
#: Row order of the report (the grid's order; per-noise include entries such as incv would
#: otherwise come last); names not listed keep their order, before the references.
METHOD_ORDER = ("standard", "mixup", "bootstrap_soft", "bootstrap_hard", "forward", "forward_anchor", "forward_cl",
                "coteaching", "coteaching_plus", "incv", "cl_coteaching", "mentormix", "mentormix_percentile", "l2r",
                "ieg", "ieg_no_label_correction", "clean_subset")
#: Reference rows that read the ground truth (never "the best method").
REFERENCES = ("clean", "clean_subset")


def _split(value):
    if value is None:
        return None
    items = [v.strip() for v in (value.split(",") if isinstance(value, str) else value)]
    items = [v for v in items if v]
    if not items:
        raise NoisylabInputError(f"expected a comma-separated list; got {value!r}.")
    return items


def _seed_list(seeds) -> list:
    try:
        out = [int(s) for s in _split(seeds)]
    except ValueError:
        raise NoisylabInputError(f"seeds must be integers; got {seeds!r}.") from None
    if not out or min(out) < 0:
        raise NoisylabInputError(f"seeds must be integers >= 0; got {seeds!r}.")
    return out


def _noise_list(noises) -> list:
    """Noise specs of a grid override, each checked now (not inside every run)."""
    from ..noise import parse_noise_spec

    out = _split(noises)
    for spec in out:
        parse_noise_spec(spec)
    return out


#: Spec fields :func:`noisylab.torch.robust.run_one` reads besides the :class:`~noisylab.torch.robust.Protocol` ones.
_RUN_FIELDS = ("dataset", "method", "seed", "noise", "dataset_kwargs", "n_train", "n_test", "n", "bench")


def check_robust_specs(specs) -> None:
    """Check robust-training run specs before any run starts (the harness calls this for the runner
    ``noisylab.torch.robust:run_one``): method names, noise specs, required and unknown fields.

    Raises
    ------
    NoisylabInputError
        Listing every distinct problem, with a "did you mean" for a misspelt name.
    """
    import dataclasses
    import difflib

    from ..torch.robust import METHODS, Protocol

    fields = {f.name for f in dataclasses.fields(Protocol)} | set(_RUN_FIELDS)
    problems = {}

    def hint(name, known):
        m = difflib.get_close_matches(str(name), known, 1)
        return f" (did you mean {m[0]!r}?)" if m else ""

    for spec in specs:
        missing = [k for k in ("dataset", "method", "seed") if k not in spec]
        if missing:
            problems.setdefault(f"missing field(s) {missing} (a robust-training run needs dataset, method and seed)",
                                None)
        method = spec.get("method")
        if method is not None and method not in METHODS:
            problems.setdefault(f"unknown method {method!r}{hint(method, METHODS)}; known: {', '.join(METHODS)}", None)
        for k in sorted(set(spec) - fields):
            problems.setdefault(f"unknown protocol field {k!r}{hint(k, sorted(fields))}", None)
        noise = spec.get("noise")
        if noise is not None:
            from ..noise import parse_noise_spec

            try:
                parse_noise_spec(noise)
            except (NoisylabInputError, ValueError) as exc:
                problems.setdefault(f"bad noise {noise!r}: {exc}", None)
    if problems:
        shown = list(problems)[:10]
        more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise NoisylabInputError("the grid's runs have these problems (nothing was run):\n  - "
                                 + "\n  - ".join(shown) + more)


def robust_grid(grid=None, *, dataset=None, seeds=None, methods=None, noises=None, epochs=None, n_train=None,
                model=None) -> Grid:
    """The benchmark grid (the shipped one, or ``grid``: a TOML path/text) with command-line overrides.

    ``seeds`` / ``methods`` / ``noises``: lists (or comma-separated strings) replacing the grid's;
    ``epochs`` / ``n_train`` / ``model`` / ``dataset`` replace protocol fields (``dataset`` other
    than mnist1d drops the MNIST-1D sizes and picks the model by input shape unless ``model`` is
    given).  The clean ceiling (the ``include`` runs) follows the seeds; the per-noise include
    entries (``incv`` with its own budgets, the ``clean_subset`` reference) follow the seeds and
    noises, run when ``methods`` is not given or names them, and drop their epoch overrides when
    ``epochs`` is given.
    """
    if grid is None:
        text = resources.files("noisylab.bench").joinpath(ROBUST_GRID).read_text()
        base = load_grid(text)
    else:
        base = load_grid(grid)
    protocol = dict(base.protocol)
    points = {k: list(v) for k, v in base.grid.items()}
    if seeds is not None:
        points["seed"] = _seed_list(seeds)
    # Methods whose runs come from per-noise [[include]] entries (their own protocol overrides,
    # e.g. INCV's budgets, or the clean_subset reference): those entries are the one source of them.
    per_noise = {e.get("method") for e in base.include if e.get("noise", "none") != "none"}
    # ... and methods that run only through the noise = "none" entries (the clean ceiling): crossing them
    # with every noise setting would repeat the same clean-label training once per noise level.
    grid_methods = set(base.grid.get("method", ()))
    include_only = per_noise | {e.get("method") for e in base.include
                                if e.get("noise", "none") == "none" and e.get("method") not in grid_methods}
    ms = None
    if methods is not None:
        from ..torch.robust import (
            METHODS as known,  # needs torch, as running the grid does
        )

        ms = _split(methods)
        bad = [m for m in ms if m not in known]
        if bad:
            raise NoisylabInputError(f"unknown method(s) {bad}; known: {list(known)}.")
        points["method"] = [m for m in ms if m not in include_only]
    if noises is not None:
        points["noise"] = _noise_list(noises)
    if epochs is not None:
        if int(epochs) < 1:
            raise NoisylabInputError(f"epochs must be >= 1; got {epochs}.")
        protocol["epochs"] = int(epochs)
        protocol["incv_epochs"] = max(1, int(epochs) // 2)
    if dataset is not None and dataset != protocol.get("dataset"):
        protocol["dataset"] = dataset
        if dataset != "mnist1d":
            protocol.pop("n_train", None)
            protocol.pop("n_test", None)
            protocol["model"] = "auto"
    if n_train is not None:
        if protocol.get("dataset") != "mnist1d":
            raise NoisylabInputError(f"--n-train sets MNIST-1D's training size; the grid's data set is "
                                     f"{protocol.get('dataset')!r}, whose size is fixed.")
        protocol["n_train"] = int(n_train)
    if model is not None:
        protocol["model"] = model
    include = []
    for entry in base.include:
        entry = dict(entry)
        if seeds is not None and "seed" in entry:
            entry["seed"] = points["seed"]
        if entry.get("noise", "none") != "none":  # per-noise entries (incv, clean_subset)
            if ms is not None and entry.get("method") not in ms:
                continue  # --methods names the rows wanted
            if noises is not None:
                entry["noise"] = points["noise"]
            if epochs is not None:  # the entry's own budgets give way to --epochs
                for k in ("incv_epochs", "incv_coteaching_epochs", "incv_num_gradual"):
                    entry.pop(k, None)
        include.append(entry)
    doc = {"experiment": {**base.experiment, "runner": base.runner}, "protocol": protocol}
    if points.get("method", True):  # empty when --methods names per-noise methods only
        doc["grid"] = points
    if include:
        doc["include"] = include
    if base.exclude:
        doc["exclude"] = list(base.exclude)
    return load_grid(doc)


def _cells(records, method, noise, key="test_acc"):
    return [r["result"][key] for r in records if r["spec"].get("method") == method and r["spec"].get("noise") == noise
            and key in r.get("result", {})]


def robust_curves(records, noise, seed=None) -> list[dict]:
    """``[{name, history}]`` of one seed's runs at ``noise`` (for :meth:`noisylab.report.Report.add_training_curves`)."""
    runs = [r for r in records if r["spec"].get("noise") == noise and "curves" in r.get("result", {})]
    if not runs:
        return []
    seed = min(r["spec"]["seed"] for r in runs) if seed is None else seed
    out = []
    for r in runs:
        if r["spec"]["seed"] != seed:
            continue
        c = r["result"]["curves"]
        hist = [{"epoch": e, "val_acc": v, "test_acc": t} for e, (v, t) in enumerate(zip(c["val_acc"], c["test_acc"]))]
        out.append({"name": r["spec"]["method"], "history": hist, "best_epoch": r["result"].get("best_epoch")})
    return out


def robust_report(records, title="Robust training") -> str:
    """Markdown: results, last-epoch results, cost per epoch, target checks, published figures."""
    records = [r for r in records if r.get("spec", {}).get("method")]
    if not records:
        raise NoisylabInputError("no results to report yet.")
    methods = list(dict.fromkeys(r["spec"]["method"] for r in records if r["spec"].get("noise") != "none"))
    rank = {m: i for i, m in enumerate(METHOD_ORDER)}
    methods.sort(key=lambda m: rank.get(m, len(rank) - 1.5))  # stable: unknown names keep their order
    noises = [n for n in NOISE_ORDER if any(r["spec"].get("noise") == n for r in records)]
    noises += [n for n in dict.fromkeys(r["spec"].get("noise") for r in records) if n not in noises and n != "none"]
    noisy = [r for r in records if r["spec"].get("noise") != "none"]
    out = [f"## {title}", ""]
    desc = records[0].get("spec", {})
    out.append(f"Data set `{desc.get('dataset')}`, model `{desc.get('model')}`; test accuracy (%) on the clean "
               "test set at the epoch with the best NOISY-validation accuracy (mean ± std over seeds; "
               "n = number of seeds where it differs).")
    out.append("")
    out.append(results_table(noisy, rows=("method",), cols=("noise",), value="test_acc", scale=100.0,
                             row_order=methods, col_order=noises))
    if any(r["spec"].get("method") == "clean_subset" for r in noisy):
        out += ["", ("`clean_subset` is a reference, not a method: cross-entropy on the correctly labelled rows only "
                     "(it reads the ground truth), i.e. what a sample-selection method that discards exactly the "
                     "flipped rows would train on -- the ceiling of Co-teaching, INCV and CL pruning at that noise "
                     "level.  Only methods that also learn from the flipped rows' inputs (mixing, "
                     "pseudo-labels, a corrected loss) can go above it.")]
    clean = [r["result"]["test_acc"] for r in records if r["spec"].get("method") == "clean"]
    if clean:
        sd = f" ± {100 * np.std(clean, ddof=1):.2f}" if len(clean) > 1 else ""
        out += ["", f"Clean-label ceiling (cross-entropy on the true labels): **{100 * np.mean(clean):.2f}{sd}** "
                    f"({len(clean)} seeds)."]
    out += ["", "### Last-epoch test accuracy (%)", "",
            results_table(noisy, rows=("method",), cols=("noise",), value="test_acc_last", scale=100.0,
                          row_order=methods, col_order=noises)]
    # cost per epoch relative to standard training (same protocol, same machine, same run)
    std_cost = [r["result"]["seconds_per_epoch"] for r in noisy if r["spec"]["method"] == "standard"]
    if std_cost:
        base = float(np.median(std_cost))
        out += ["", "### Cost per epoch relative to standard training", "",
                "| method | median s/epoch | × standard |", "|---|---:|---:|"]
        for m in methods:
            c = [r["result"]["seconds_per_epoch"] for r in noisy if r["spec"]["method"] == m]
            if c:
                out.append(f"| {m} | {np.median(c):.3f} | {np.median(c) / base:.2f} |")
        out += ["", "(INCV: its Co-teaching phase only; CL + Co-teaching: its Co-teaching phase only; whole-run "
                    "wall time is in each record's `seconds`.)"]
    # targets of the issue
    checks = []
    for noise in ("symmetric:0.5", "pair:0.4"):
        s = _cells(noisy, "standard", noise)
        if not s:
            continue
        for m in ("coteaching", "incv", "mentormix", "ieg", "ieg_no_label_correction"):
            v = _cells(noisy, m, noise)
            if v:
                d = 100 * (np.mean(v) - np.mean(s))
                checks.append(f"- {noise}: {m} − standard = {d:+.2f} points ({'≥' if d >= 5 else '<'} 5)")
        if clean:
            cands = [m for m in methods if m not in REFERENCES and _cells(noisy, m, noise)]
            if cands:
                best_m = max(cands, key=lambda m: np.mean(_cells(noisy, m, noise)))
                best = np.mean(_cells(noisy, best_m, noise))
                gap = 100 * (np.mean(clean) - best)
                line = (f"- {noise}: best method {best_m}: clean ceiling − best = {gap:.2f} points "
                        f"({'≤' if gap <= 5 else '>'} 5)")
                oracle = _cells(noisy, "clean_subset", noise)
                if oracle:
                    line += (f"; clean_subset (perfect discarding of the flipped rows) = {100 * np.mean(oracle):.2f}, "
                             f"{100 * (np.mean(clean) - np.mean(oracle)):.2f} below the ceiling; best − clean_subset "
                             f"= {100 * (best - np.mean(oracle)):+.2f}")
                checks.append(line)
    s8 = _cells(noisy, "standard", "symmetric:0.8")
    for m in ("incv", "ieg", "ieg_no_label_correction"):
        v = _cells(noisy, m, "symmetric:0.8")
        if s8 and v:
            checks.append(f"- symmetric:0.8: {m} − standard = {100 * (np.mean(v) - np.mean(s8)):+.2f} points")
    if checks:
        out += ["", "### Targets", ""] + checks
    out += ["", "### Protocol (recorded with every result)", "", protocol_lines(records)]
    out += ["", "### Published (INCV README, CIFAR-10, ResNet-32, 5 runs) — another data set and network", "",
            "| method | sym 0.2 | sym 0.5 | sym 0.8 | pair (asym) 0.4 |", "|---|---:|---:|---:|---:|"]
    for m, vals in PUBLISHED_INCV_CIFAR10.items():
        out.append(f"| {m} | " + " | ".join(vals) + " |")
    out += ["", "Differences: MNIST-1D (4000 training examples, 1-D CNN, Adam, 40 epochs) instead of CIFAR-10 "
                "(ResNet-32, 200 epochs); the epoch is selected on a noisy validation split here, while the "
                "README does not say how its figure is chosen."]
    return "\n".join(out)
