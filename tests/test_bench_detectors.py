"""`noisylab bench detectors`: grid overrides and the report (hand-made records; one tiny real cell)."""
import pytest

pytest.importorskip("torch")

from noisylab import _pretrained  # noqa: E402
from noisylab._pretrained import pretrained_fingerprint  # noqa: E402
from noisylab._validation import NoisylabInputError  # noqa: E402
from noisylab.bench import ResultStore, run_key  # noqa: E402
from noisylab.bench.detectors import detectors_grid, detectors_report  # noqa: E402
from noisylab.cli import main  # noqa: E402


def test_shipped_detectors_grid():
    runs = detectors_grid().runs()
    assert len(runs) == 18
    assert {(r["dataset"], r["model"]) for r in runs} == {("digits", "mlp"), ("mnist1d", "cnn1d")}
    assert {r["seed"] for r in runs} == {1, 2, 3}  # never the LSTM detector's training seed 0
    assert {r["noise"] for r in runs} == {"symmetric:0.2", "symmetric:0.4", "pair:0.4"}
    assert all(r["retrain_fraction"] == "nominal" and r["repair_fraction"] == "nominal" for r in runs)
    assert {r["retrain_repeats"] for r in runs} == {3}
    assert {r["retrain_repeats"] for r in detectors_grid(retrain_repeats=1).runs()} == {1}
    for bad in (0, 1.5, True):
        with pytest.raises(NoisylabInputError, match="retrain repeats must be an int >= 1"):
            detectors_grid(retrain_repeats=bad)
    small = detectors_grid(datasets="digits", seeds="2", noises="pair:0.4", retrain_fraction="none", epochs=5,
                           repair_fraction="0.25")
    assert [(r["dataset"], r["seed"], r["noise"], r["epochs"], "retrain_fraction" in r, r["repair_fraction"])
            for r in small.runs()] == [("digits", 2, "pair:0.4", 5, False, 0.25)]
    assert "repair_fraction" not in detectors_grid(repair_fraction="none").runs()[0]
    with pytest.raises(NoisylabInputError, match="repair fraction must be a number"):
        detectors_grid(repair_fraction="half")
    with pytest.raises(NoisylabInputError, match="not in the grid"):
        detectors_grid(datasets="cifar")
    with pytest.raises(NoisylabInputError, match="unknown detector"):
        detectors_grid(methods="cl,aumm")


def test_detectors_report_pairs_each_retraining_with_its_baseline():
    def rec(seed, base, rem):
        res = {"methods": ["aum"], "auroc_aum": 0.8, "ap_aum": 0.7, "baseline_acc": sum(base) / len(base),
               "retrain_acc_aum": sum(rem) / len(rem), "training_seeds": [seed, seed + 1000],
               "retrain": {"fraction": 0.4, "baseline": {"test_acc_repeats": base}, "aum": {"test_acc_repeats": rem}}}
        return {"key": str(seed), "spec": {"bench": "detectors", "dataset": "d", "noise": "pair:0.4", "seed": seed},
                "result": res}
    md = detectors_report([rec(1, [0.60, 0.70], [0.65, 0.68]), rec(2, [0.62, 0.64], [0.66, 0.60])])
    # differences (points): +5, -2, +4, -4 -> mean +0.75, se = std([5, -2, 4, -4], ddof=1) / 2 = 4.425 / 2
    assert ("remove-and-retrain with the best detector (aum): 64.75% vs noisy 64.00% (beats); paired over 4 "
            "trainings: Δ +0.75 ± 2.21 (se) points, wins 2/4") in md
    assert "(per noise draw: the mean of 2 trainings with different training seeds)" in md


def test_grid_keys_its_runs_by_the_shipped_detector_files(monkeypatch):
    import hashlib

    runs = detectors_grid().runs()
    for field, feature in (("detector_sha256", "label_probability"), ("detector_margin_sha256", "margin")):
        digest = hashlib.sha256(_pretrained.pretrained_resource(feature).read_bytes()).hexdigest()
        assert {r[field] for r in runs} == {"sha256:" + digest[:16]}
    assert {"detector_sha256", "detector_margin_sha256"}.isdisjoint(detectors_grid(methods="cl,aum").runs()[0])
    margin_only = detectors_grid(methods="aum,lstm_margin").runs()[0]
    assert "detector_sha256" not in margin_only and margin_only["detector_margin_sha256"].startswith("sha256:")
    # a rebuilt detector file gives every run that scores it a new key (no stale result is reused)
    keys = {run_key(r) for r in runs}
    monkeypatch.setattr(_pretrained, "pretrained_fingerprint", lambda feature="label_probability": f"sha256:{feature}")
    rebuilt = detectors_grid().runs()
    assert {r["detector_margin_sha256"] for r in rebuilt} == {"sha256:margin"}
    assert keys.isdisjoint(run_key(r) for r in rebuilt)


def test_runner_refuses_a_run_meant_for_another_detector():
    from noisylab.torch.detect_eval import run_detector_cell

    spec = {"dataset": "digits", "noise": "symmetric:0.2", "seed": 1, "epochs": 2, "methods": "confidence,lstm_margin",
            "detector_margin_sha256": "sha256:0123456789abcdef"}
    with pytest.raises(NoisylabInputError, match=r"margin LSTM detector sha256:0123456789abcdef, but the installed "
                                                 r"one is sha256:[0-9a-f]{16}"):
        run_detector_cell(spec)


def test_detectors_report_values_and_targets():
    def rec(seed, ds, noise, au, base=None, ret=None, rep=None):
        res = {"methods": ["cl", "aum", "lstm"], **{f"auroc_{m}": v for m, v in au.items()},
               **{f"ap_{m}": v - 0.01 for m, v in au.items()}, "overhead_pct": 12.0}
        if base is not None:
            res.update(baseline_acc=base, retrain={"fraction": 0.4}, **{f"retrain_acc_{m}": v for m, v in ret.items()})
        if rep is not None:
            res.update(repair={"fraction": 0.4}, **{f"repair_acc_{m}": v for m, v in rep.items()})
        return {"key": f"{seed}{ds}{noise}", "spec": {"bench": "detectors", "dataset": ds, "noise": noise, "seed": seed},
                "result": res}
    recs = [rec(1, "digits", "symmetric:0.4", {"cl": 0.90, "aum": 0.92, "lstm": 0.95}, 0.80,
                {"cl": 0.85, "aum": 0.84, "lstm": 0.86}, {"cl": 0.83, "lstm": 0.79}),
            rec(2, "digits", "symmetric:0.4", {"cl": 0.92, "aum": 0.94, "lstm": 0.97}, 0.82,
                {"cl": 0.85, "aum": 0.84, "lstm": 0.88}, {"cl": 0.85, "lstm": 0.81})]
    md = detectors_report(recs)
    assert "| digits | symmetric:0.4 | 0.910 ± 0.014 | 0.930 ± 0.014 | 0.960 ± 0.014 |" in md
    assert "| digits | symmetric:0.4 | 81.00 ± 1.41 | 85.00 ± 0.00 | 84.00 ± 0.00 | 87.00 ± 1.41 |" in md
    assert "LSTM 0.960 vs AUM 0.930 (≥) and CL 0.910 (≥)" in md
    assert "best detector (lstm): 87.00% vs noisy 81.00% (beats)" in md
    # label repair: AUM suggests no label, so its column is absent
    assert "### Label repair" in md and "| digits | symmetric:0.4 | 81.00 ± 1.41 | 84.00 ± 1.41 | 80.00 ± 1.41 |" in md
    assert "label repair with the best detector that suggests labels (lstm): 80.00% vs noisy 81.00% (does not beat)" in md
    assert "**12.0%**" in md
    recs[0]["result"]["detector"] = {"source": "mnist1d", "val_auroc": 0.98732142, "feature": "label_probability",
                                     "sha256": "sha256:0123456789abcdef"}
    line = detectors_report(recs).splitlines()[-1]
    assert line == ("LSTM detector: source mnist1d, val_auroc 0.9873, feature label_probability, "
                    "sha256:0123456789abcdef")
    with pytest.raises(NoisylabInputError, match="no detector results"):
        detectors_report([])


def test_bench_detectors_cli_tiny(tmp_path, capsys):
    store = tmp_path / "d.jsonl"
    assert main(["bench", "detectors", "--datasets", "digits", "--noises", "symmetric:0.3", "--seeds", "1",
                 "--epochs", "3", "--methods", "confidence,lstm", "--retrain", "none", "--repair", "none", "--n-jobs", "1",
                 "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert "| digits | symmetric:0.3 |" in out and "lstm" in out
    (rec,) = ResultStore(store).records()
    assert 0.5 < rec["result"]["auroc_confidence"] <= 1 and rec["spec"]["model"] == "mlp"
    sha = pretrained_fingerprint()
    assert rec["spec"]["detector_sha256"] == rec["result"]["detector"]["sha256"] == sha
    assert main(["bench", "results", str(store)]) == 0
    assert "AUROC of each detector" in capsys.readouterr().out


def test_bench_docs_uses_the_current_grid_runs_only(tmp_path, monkeypatch):
    """A store keeps the records of earlier protocols; the page must not average them in."""
    import noisylab.bench.cl_cifar10 as clc
    from noisylab.bench.results_doc import results_markdown
    from noisylab.bench.robust import robust_grid

    res = tmp_path / "bench_results"
    res.mkdir()
    store = ResultStore(res / "robust.jsonl")
    spec = next(r for r in robust_grid().runs() if r["method"] == "standard" and r["noise"] == "symmetric:0.5")
    store.append({"spec": spec, "result": {"test_acc": 0.6, "test_acc_last": 0.6, "seconds_per_epoch": 1.0}})
    stale = {**spec, "epochs": spec["epochs"] + 1}  # another key, same cell
    store.append({"spec": stale, "result": {"test_acc": 0.1, "test_acc_last": 0.1, "seconds_per_epoch": 1.0}})
    monkeypatch.setattr(clc, "find_cl_cifar10_dir", lambda: None)  # no CL data nearby: a placeholder section
    md = results_markdown(res)
    assert "| standard | 60.00 |" in md and "10.00" not in md and "(n=2)" not in md
    assert "*Not available: the CL paper's probabilities" in md
    # an explicit folder that does not exist is an error, not a page of placeholders
    with pytest.raises(NoisylabInputError, match="CL CIFAR-10 data folder not found"):
        results_markdown(res, cl_data=tmp_path / "absent")
    with pytest.raises(NoisylabInputError, match="results folder not found"):
        results_markdown(tmp_path / "nope")


def test_bench_docs_generates_results_md(tmp_path, capsys):
    import os

    from noisylab.bench.cl_cifar10 import find_cl_cifar10_dir

    res = tmp_path / "bench_results"
    res.mkdir()
    store = ResultStore(res / "robust.jsonl")
    for seed, acc in ((0, 0.6), (1, 0.7)):
        store.append({"spec": {"bench": "robust", "dataset": "mnist1d", "model": "cnn1d", "method": "standard",
                               "noise": "symmetric:0.5", "seed": seed},
                      "result": {"test_acc": acc, "test_acc_last": acc, "seconds_per_epoch": 1.0}})
    out = tmp_path / "docs" / "RESULTS.md"
    out.parent.mkdir()
    assert main(["bench", "docs", "--results", str(res), "--out", str(out)]) == 0
    md = out.read_text()
    assert "| standard | 65.00 ± 7.07 |" in md and "| INCV | 89.71 ± 0.18 |" in md  # ours next to the paper's
    assert "*Not run yet: `noisylab bench detectors`.*" in md
    if find_cl_cifar10_dir() is not None:
        assert "10/10 reproduced exactly" in md
    else:
        assert "were not found" in md
    assert not [f for f in os.listdir(out.parent) if f.startswith(".")]  # atomic write left no temp file


def test_report_names_the_fraction_rule_and_n_train_is_mnist1d_only():
    def rec(seed, rule):
        res = {"methods": ["aum"], "auroc_aum": 0.8, "ap_aum": 0.7, "baseline_acc": 0.6, "retrain_acc_aum": 0.65,
               "retrain": {"fraction": 0.2}}
        return {"key": f"{seed}{rule}", "spec": {"bench": "detectors", "dataset": "d", "noise": "symmetric:0.3",
                                                 "seed": seed, "retrain_fraction": rule}, "result": res}
    assert "(fraction(s) [0.2]: as given)" in detectors_report([rec(1, 0.2), rec(2, 0.2)])
    assert "the nominal noise rate)" in detectors_report([rec(1, "nominal")])
    with pytest.raises(NoisylabInputError, match=r"--n-train sets MNIST-1D's training size.*\['digits'\]"):
        detectors_grid(n_train=300)
    assert detectors_grid(datasets="mnist1d", n_train=300).protocol["n_train"] == 300
    from noisylab.bench.robust import robust_grid

    with pytest.raises(NoisylabInputError, match="--n-train sets MNIST-1D's training size"):
        robust_grid(dataset="digits", n_train=300)


def test_grid_overrides_are_checked_before_any_run():
    for kw, msg in ((dict(retrain_fraction="1.5"), r"retrain fraction must be a number in \(0, 1\)"),
                    (dict(repair_fraction="abc"), r"repair fraction must be a number in \(0, 1\)"),
                    (dict(seeds="-1"), "seeds must be integers >= 0"),
                    (dict(noises="symetric:0.2"), "Unknown noise kind 'symetric'"),
                    (dict(noises="pair:1.2"), r"rate in \[0, 1\)")):
        with pytest.raises(NoisylabInputError, match=msg):
            detectors_grid(**kw)
    from noisylab.bench.robust import robust_grid

    with pytest.raises(NoisylabInputError, match="Unknown noise kind"):
        robust_grid(noises="foo:0.2")
