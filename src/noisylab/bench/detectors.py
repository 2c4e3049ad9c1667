"""``noisylab bench detectors``: label-error detectors scored against the true flips.

The grid is ``grids/detectors.toml`` (shipped): digits and MNIST-1D x symmetric 0.2 / 0.4 and pair
0.4 x seeds 1, 2, 3; every cell scores all detectors on one noise draw
(:func:`noisylab.torch.detect_eval.run_detector_cell`).  :func:`detectors_report` renders AUROC and
AP per detector, the remove-and-retrain accuracies against training on the noisy labels, the cost
of recording the dynamics, and the checks of the issue's targets.
"""
from __future__ import annotations

import math

import numpy as np

from .._validation import NoisylabInputError
from .harness import protocol_lines

__all__ = ["DETECTORS_GRID", "detectors_grid", "detectors_report"]

DETECTORS_GRID = "grids/detectors.toml"
NOISE_ORDER = ("symmetric:0.2", "symmetric:0.4", "pair:0.4")


def _fmt(values, scale=1.0, digits=3):
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float) * scale
    if v.size == 0:
        return "—"
    if v.size == 1:
        return f"{v[0]:.{digits}f}"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"


def _cells(records):
    keys = []
    for r in records:
        k = (r["spec"].get("dataset"), r["spec"].get("noise"))
        if k not in keys:
            keys.append(k)
    order = {n: i for i, n in enumerate(NOISE_ORDER)}
    return sorted(keys, key=lambda k: (str(k[0]), order.get(k[1], 99), str(k[1])))


def _methods(records):
    out = []
    for r in records:
        for m in r["result"].get("methods", []):
            if m not in out:
                out.append(m)
    return out


def _table(records, cells, methods, key, scale=1.0, digits=3, extra=None):
    head = ["data set", "noise"] + (list(extra) if extra else []) + methods
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * (len(head) - 2)]
    for ds, noise in cells:
        rs = [r["result"] for r in records if r["spec"].get("dataset") == ds and r["spec"].get("noise") == noise]
        row = [str(ds), str(noise)]
        for fn in (extra or {}).values():
            row.append(_fmt([fn(x) for x in rs], scale, digits))
        row += [_fmt([x.get(key.format(m=m)) for x in rs], scale, digits) for m in methods]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _paired(results, key, method) -> str:
    """``"; paired over n trainings: Δ d ± se (se) points, wins k/n"``: ``method``'s retraining (``key``: retrain /
    repair) against the noisy baseline trained with the same training seed on the same noise draw, over every
    training of ``results`` ("" without per-training accuracies)."""
    pairs = []
    for x in results:
        base = x.get(key, {}).get("baseline", {}).get("test_acc_repeats")
        own = x.get(key, {}).get(method, {}).get("test_acc_repeats")
        if base and own and len(base) == len(own):
            pairs += list(zip(own, base))
    if not pairs:
        return ""
    d = np.array([a - b for a, b in pairs]) * 100
    se = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else 0.0
    wins = int((d > 0).sum())
    return f"; paired over {len(d)} trainings: Δ {d.mean():+.2f} ± {se:.2f} (se) points, wins {wins}/{len(d)}"


def detectors_report(records, title="Label-error detectors") -> str:
    """Markdown: AUROC, AP, remove-and-retrain, overhead, target checks, protocol."""
    records = [r for r in records if r.get("result", {}).get("methods")]
    if not records:
        raise NoisylabInputError("no detector results to report yet.")
    cells, methods = _cells(records), _methods(records)
    n_seeds = len({r["spec"].get("seed") for r in records})
    out = [f"## {title}", "",
           f"AUROC of each detector against the true label flips of the training set (positive = mislabelled; "
           f"mean ± std over {n_seeds} noise draws).", "", _table(records, cells, methods, "auroc_{m}"),
           "", "### Average precision", "", _table(records, cells, methods, "ap_{m}")]
    if any("baseline_acc" in r["result"] for r in records):
        frac = {r["result"].get("retrain", {}).get("fraction") for r in records}
        rule = {str(r.get("spec", {}).get("retrain_fraction")) for r in records if "baseline_acc" in r["result"]}
        why = {"{'nominal'}": "the nominal noise rate", "{'auto'}": "each run's estimated noise rate"}.get(
            str(rule), "as given")
        reps = sorted({len(r["result"].get("training_seeds", [0])) for r in records if "baseline_acc" in r["result"]})
        each = "" if reps == [1] else (f" (per noise draw: the mean of {'/'.join(map(str, reps))} trainings with "
                                        "different training seeds)")
        out += ["", "### Remove-and-retrain: test accuracy (%)", "",
                f"Remove the lowest-quality fraction of the training set (fraction(s) {sorted(f for f in frac if f is not None)}: "
                f"{why}), retrain from scratch, test accuracy at the best noisy-validation epoch"
                f"{each}; 'noisy' = the same training on all noisy labels.", "",
                _table(records, cells, methods, "retrain_acc_{m}", 100.0, 2,
                       extra={"noisy": lambda x: x.get("baseline_acc")})]
    if any("repair" in r["result"] for r in records):
        frac = {r["result"]["repair"].get("fraction") for r in records if "repair" in r["result"]}
        rep = [m for m in methods if any(f"repair_acc_{m}" in r["result"] for r in records)]
        out += ["", "### Label repair: test accuracy (%)", "",
                (f"Replace the labels of the lowest-quality fraction of the training set (fraction(s) "
                 f"{sorted(f for f in frac if f is not None)}) by the detector's suggested label (the argmax of the "
                 "cross-validated probabilities for cl and combined, of the recorded run's last epoch for the "
                 "dynamics detectors; AUM suggests none), retrain from scratch; 'noisy' as above."), "",
                _table(records, cells, rep, "repair_acc_{m}", 100.0, 2, extra={"noisy": lambda x: x.get("baseline_acc")})]
    ov = [r["result"].get("overhead_pct") for r in records if r["result"].get("overhead_pct") is not None]
    if ov:
        out += ["", f"Recording the dynamics (both recorders) plus scoring added **{np.median(ov):.1f}%** (median; "
                    f"range {min(ov):.1f}–{max(ov):.1f}%) to the cost of the training run it observes."]
    checks = []
    for ds, noise in cells:
        rs = [r["result"] for r in records if r["spec"].get("dataset") == ds and r["spec"].get("noise") == noise]

        def mean(k, rs=rs):
            v = [x.get(k) for x in rs if x.get(k) is not None]
            return float(np.mean(v)) if v else None

        aum, cl = mean("auroc_aum"), mean("auroc_cl")
        for m, label in (("lstm", "LSTM"), ("lstm_margin", "LSTM (margin)")):
            v = mean(f"auroc_{m}")
            if v is not None and aum is not None and cl is not None:
                checks.append(f"- {ds} {noise}: {label} {v:.3f} vs AUM {aum:.3f} ({'≥' if v >= aum else '<'}) and "
                              f"CL {cl:.3f} ({'≥' if v >= cl else '<'})")
        if noise.endswith("0.4") and mean("baseline_acc") is not None:
            best = max(methods, key=lambda m: mean(f"auroc_{m}") or -1)
            acc = mean(f"retrain_acc_{best}")
            if acc is not None:
                verdict = "beats" if acc > mean("baseline_acc") else "does not beat"
                checks.append(f"  - remove-and-retrain with the best detector ({best}): {100 * acc:.2f}% vs noisy "
                              f"{100 * mean('baseline_acc'):.2f}% ({verdict}){_paired(rs, 'retrain', best)}")
            rep = [m for m in methods if mean(f"repair_acc_{m}") is not None]
            if rep:
                best_r = max(rep, key=lambda m: mean(f"auroc_{m}") or -1)
                acc = mean(f"repair_acc_{best_r}")
                verdict = "beats" if acc > mean("baseline_acc") else "does not beat"
                checks.append(f"  - label repair with the best detector that suggests labels ({best_r}): {100 * acc:.2f}% "
                              f"vs noisy {100 * mean('baseline_acc'):.2f}% ({verdict}){_paired(rs, 'repair', best_r)}")
    if checks:
        out += ["", "### Targets", ""] + checks
    out += ["", "### Protocol (recorded with every result)", "", protocol_lines(records)]
    for key, label in (("detector", "LSTM detector"), ("detector_margin", "LSTM (margin) detector")):
        det = next((r["result"].get(key) for r in records if r["result"].get(key)), None)
        if det:
            det = {**det, "feature": det.get("feature") or "label_probability"}  # stores before the option
            out += ["", f"{label}: " + ", ".join(_detector_field(k, v) for k, v in det.items())]
    return "\n".join(out)


def _detector_field(key, value):
    """One ``key value`` item of the report's detector line (the fingerprint is already ``sha256:…``)."""
    if key == "sha256":
        return str(value)
    if isinstance(value, float):
        return f"{key} {value:.4f}"
    return f"{key} {value}"


def detectors_grid(grid=None, *, seeds=None, datasets=None, noises=None, epochs=None, methods=None,
                   retrain_fraction=None, repair_fraction=None, n_train=None, retrain_repeats=None):
    """The detectors grid (shipped, or ``grid``) with command-line overrides (lists or comma strings).

    ``retrain_fraction`` / ``repair_fraction``: ``"none"`` drops remove-and-retrain / label repair;
    a number, ``"nominal"`` or ``"auto"`` replaces the grid's.  ``retrain_repeats``: trainings (seeds)
    per retraining.
    """
    from importlib import resources

    from .harness import load_grid
    from .robust import _noise_list, _seed_list, _split

    base = load_grid(resources.files("noisylab.bench").joinpath(DETECTORS_GRID).read_text() if grid is None else grid)
    protocol = dict(base.protocol)
    points = {k: list(v) for k, v in base.grid.items()}
    include = [dict(e) for e in base.include]
    if seeds is not None:
        seed_list = _seed_list(seeds)
        for entry in [points] + include:
            if "seed" in entry:
                entry["seed"] = seed_list
    if datasets is not None:
        wanted = _split(datasets)
        if "dataset" in points:
            points["dataset"] = wanted
        known = {e.get("dataset") for e in include}
        bad = [d for d in wanted if include and d not in known]
        if bad:
            raise NoisylabInputError(f"data set(s) {bad} are not in the grid; it has {sorted(map(str, known))}.")
        include = [e for e in include if e.get("dataset") in wanted]
    if noises is not None:
        for entry in [points] + include:
            if "noise" in entry:
                entry["noise"] = _noise_list(noises)
    if epochs is not None:
        if int(epochs) < 2:
            raise NoisylabInputError(f"epochs must be >= 2 (AUM skips the first); got {epochs}.")
        protocol["epochs"] = int(epochs)
    if methods is not None:
        from ..torch.detect_eval import DETECTION_METHODS

        ms = _split(methods)
        bad = [m for m in ms if m not in DETECTION_METHODS]
        if bad:
            raise NoisylabInputError(f"unknown detector(s) {bad}; known: {list(DETECTION_METHODS)}.")
        protocol["methods"] = ",".join(ms)
    for field_name, value, what in (("retrain_fraction", retrain_fraction, "retrain"),
                                    ("repair_fraction", repair_fraction, "repair")):
        if value is None:
            continue
        if str(value).lower() == "none":
            protocol.pop(field_name, None)
        elif value in ("nominal", "auto"):
            protocol[field_name] = value
        else:
            try:
                fraction = float(value)
            except ValueError:
                fraction = math.nan
            if not 0.0 < fraction < 1.0:
                raise NoisylabInputError(f"{what} fraction must be a number in (0, 1), 'nominal', 'auto' or 'none'; "
                                         f"got {value!r}.")
            protocol[field_name] = fraction
    if n_train is not None:  # MNIST-1D's generator size; the other data sets have fixed sizes
        names = {str(d) for e in [points] + include
                 for d in (e["dataset"] if isinstance(e.get("dataset"), list) else [e.get("dataset")]) if d}
        if names - {"mnist1d"}:
            raise NoisylabInputError(f"--n-train sets MNIST-1D's training size, and the grid also has "
                                     f"{sorted(names - {'mnist1d'})}: add --datasets mnist1d.")
        protocol["n_train"] = int(n_train)
    if retrain_repeats is not None:
        if isinstance(retrain_repeats, bool) or int(retrain_repeats) != retrain_repeats or retrain_repeats < 1:
            raise NoisylabInputError(f"retrain repeats must be an int >= 1; got {retrain_repeats!r}.")
        protocol["retrain_repeats"] = int(retrain_repeats)
    # the shipped LSTM detectors' fingerprints join the protocol: a rebuilt detector gets new run keys
    from .._pretrained import pretrained_fingerprint

    scored = set()
    for entry in [protocol, points] + include:
        for key in ("methods", "method"):
            values = entry.get(key, [])
            for v in (values if isinstance(values, list) else [values]):
                scored.update(_split(v))
    for field_name, users, feature in (("detector_sha256", {"lstm", "combined"}, "label_probability"),
                                       ("detector_margin_sha256", {"lstm_margin"}, "margin")):
        if users & scored:
            protocol.setdefault(field_name, pretrained_fingerprint(feature))
    doc = {"experiment": {**base.experiment, "runner": base.runner}, "protocol": protocol}
    if points:
        doc["grid"] = points
    if include:
        doc["include"] = include
    if base.exclude:
        doc["exclude"] = list(base.exclude)
    return load_grid(doc)
