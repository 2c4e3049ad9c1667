"""`noisylab bench robust / run / results`: the harness from the command line (tiny grids)."""
import json

import pytest

pytest.importorskip("torch")

from noisylab.bench import ResultStore, load_grid  # noqa: E402
from noisylab.bench.robust import robust_grid, robust_report  # noqa: E402
from noisylab.cli import main  # noqa: E402

TINY = ["--methods", "standard,coteaching", "--seeds", "0", "--noises", "symmetric:0.5", "--epochs", "2",
        "--n-train", "300", "--n-jobs", "1"]


def test_shipped_grid_is_the_issue_grid():
    g = robust_grid()
    runs = g.runs()
    assert {r["noise"] for r in runs} == {"symmetric:0.2", "symmetric:0.5", "symmetric:0.8", "pair:0.4", "none"}
    assert {r["seed"] for r in runs} == {0, 1, 2}
    methods = {r["method"] for r in runs}
    for m in ("standard", "coteaching", "incv", "cl_coteaching", "mentormix", "l2r", "ieg",
              "ieg_no_label_correction", "forward", "clean"):
        assert m in methods
    assert len(runs) == 4 * 12 * 3 + 3 + 4 * 3  # + clean ceiling + clean_subset reference per noise
    assert sum(r["method"] == "clean_subset" for r in runs) == 12
    incv = [r for r in runs if r["method"] == "incv"]  # METHODS.md §2.6 budgets, INCV's runs only
    assert len(incv) == 12 and all((r["incv_epochs"], r["incv_coteaching_epochs"], r["incv_num_gradual"])
                                   == (30, 80, 4) for r in incv)
    assert all("incv_coteaching_epochs" not in r for r in runs if r["method"] != "incv")
    assert all(r["dataset"] == "mnist1d" and r["model"] == "cnn1d" for r in runs)
    small = robust_grid(seeds="4", methods="standard", noises="pair:0.4", epochs=3)
    assert [(r["method"], r["noise"], r["seed"], r["epochs"]) for r in small.runs()] == [
        ("standard", "pair:0.4", 4, 3), ("clean", "none", 4, 3)]
    named = robust_grid(seeds="4", methods="standard,clean_subset", noises="pair:0.4", epochs=3)
    assert [(r["method"], r["noise"]) for r in named.runs()] == [
        ("standard", "pair:0.4"), ("clean", "none"), ("clean_subset", "pair:0.4")]
    # a per-noise entry is the one source of its method; --epochs replaces its own budgets
    only = robust_grid(seeds="4", methods="incv", noises="pair:0.4", epochs=3).runs()
    assert [(r["method"], r["epochs"], r["incv_epochs"], r.get("incv_coteaching_epochs")) for r in only] == [
        ("incv", 3, 1, None), ("clean", 3, 1, None)]
    full = robust_grid(seeds="4", methods="incv", noises="pair:0.4").runs()
    assert [(r["method"], r["incv_epochs"], r.get("incv_coteaching_epochs")) for r in full] == [
        ("incv", 30, 80), ("clean", 20, None)]


def test_bench_robust_runs_resumes_and_reports(tmp_path, capsys):
    store = tmp_path / "r.jsonl"
    args = ["bench", "robust", *TINY, "--store", str(store), "--out", str(tmp_path / "r.md"),
            "--report", str(tmp_path / "r.html")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "3 runs, 0 already" in out and "| coteaching |" in out and "Clean-label ceiling" in out
    recs = ResultStore(store).records()
    assert len(recs) == 3 and {r["spec"]["method"] for r in recs} == {"standard", "coteaching", "clean"}
    for r in recs:  # the protocol is recorded with every number
        assert r["spec"]["epochs"] == 2 and r["spec"]["val_fraction"] == 0.1 and r["spec"]["model"] == "cnn1d"
        assert 0 <= r["result"]["test_acc"] <= 1 and len(r["result"]["curves"]["val_acc"]) == 2
    html = (tmp_path / "r.html").read_text()
    assert "<img" in html and "coteaching" in html and (tmp_path / "r-report.md").exists()
    # a rerun does no work and prints the same table
    assert main(args) == 0
    again = capsys.readouterr().out
    assert "3 already in" in again and "0 to run" in again
    assert (tmp_path / "r.md").read_text().strip() in again
    assert len(ResultStore(store).records()) == 3
    # bench results renders the same report from the store
    assert main(["bench", "results", str(store)]) == 0
    assert "| coteaching |" in capsys.readouterr().out


def test_bench_run_generic_grid_and_errors(tmp_path, capsys):
    grid = tmp_path / "g.toml"
    grid.write_text('[experiment]\nname = "g"\nrunner = "noisylab.torch.robust:run_one"\n'
                    '[protocol]\ndataset = "gaussian"\nn = 300\nmodel = "mlp"\nepochs = 2\nprobe_per_class = 0\n'
                    '[grid]\nmethod = ["standard", "bootstrap_soft"]\nseed = [0, 1]\nnoise = ["pair:0.3"]\n')
    store = tmp_path / "s.jsonl"
    assert main(["bench", "run", str(grid), "--store", str(store), "--n-jobs", "1", "--rows", "method",
                 "--cols", "noise"]) == 0
    out = capsys.readouterr().out
    assert "| bootstrap_soft |" in out and "±" in out
    assert len(ResultStore(store).records()) == 4
    assert main(["bench", "results", str(store), "--rows", "method", "--cols", "seed", "--value", "best_epoch",
                 "--scale", "1"]) == 0
    assert "| standard |" in capsys.readouterr().out
    assert main(["bench", "results", str(tmp_path / "none.jsonl")]) == 2
    assert "no results" in capsys.readouterr().err
    assert main(["bench", "robust", "--methods", "coteachng", "--store", str(store)]) == 2
    assert "unknown method(s) ['coteachng']" in capsys.readouterr().err
    assert main(["bench", "robust", *TINY[:-2], "--n-jobs", "0", "--store", str(store)]) == 2
    assert "--n-jobs must be >= 1" in capsys.readouterr().err


def test_robust_report_targets_and_published():
    def rec(method, noise, seed, acc, spe=1.0):
        return {"key": f"{method}{noise}{seed}", "spec": {"bench": "robust", "dataset": "mnist1d", "model": "cnn1d",
                                                        "method": method, "noise": noise, "seed": seed},
                "result": {"test_acc": acc, "test_acc_last": acc - 0.1, "seconds_per_epoch": spe}}
    recs = [rec("standard", "symmetric:0.5", s, a) for s, a in ((0, 0.60), (1, 0.62))]
    recs += [rec("coteaching", "symmetric:0.5", s, a, 2.0) for s, a in ((0, 0.70), (1, 0.66))]
    recs += [rec("clean", "none", s, a) for s, a in ((0, 0.90), (1, 0.92))]
    recs += [rec("clean_subset", "symmetric:0.5", s, a) for s, a in ((0, 0.80), (1, 0.82))]
    md = robust_report(recs)
    # the reference (reads the ground truth) is never "the best method"
    assert "best method coteaching" in md and "clean_subset (perfect discarding of the flipped rows) = 81.00" in md
    assert "10.00 below the ceiling; best − clean_subset = -13.00" in md and "`clean_subset` is a reference" in md
    assert "| standard | 61.00 ± 1.41 |" in md and "| coteaching | 68.00 ± 2.83 |" in md
    assert "coteaching − standard = +7.00 points (≥ 5)" in md
    assert "clean ceiling − best = 23.00 points (> 5)" in md
    assert "**91.00 ± 1.41**" in md and "| coteaching | 2.000 | 2.00 |" in md
    assert "| INCV | 89.71 ± 0.18 | 84.78 ± 0.33 | 52.27 ± 3.50 | 86.04 ± 0.54 |" in md
    json.dumps(md)


def test_bench_incv_theory_table_and_report(tmp_path, capsys):
    out = tmp_path / "t.md"
    assert main(["bench", "incv-theory", "--dataset", "gaussian", "--epochs", "2", "--rates", "0,0.4",
                 "--kind", "pair", "--out", str(out), "--report", str(tmp_path / "t.html")]) == 0
    text = capsys.readouterr().out
    assert "### pair noise" in text and "| 0.40 |" in text
    # the formula columns are the paper's: pair, eps = 0.4 -> acc = 0.6^2 + 0.4^2 = 0.52, LR = 0.6
    row = [r for r in out.read_text().splitlines() if r.startswith("| 0.40 |")][0].split("|")
    assert row[4].strip() == "0.520" and row[8].strip() == "0.600"
    html = (tmp_path / "t.html").read_text()
    assert html.count("<img") >= 2 and "P(noisy label | prediction)" in html
    assert main(["bench", "incv-theory", "--dataset", "gaussian", "--kind", "asym"]) == 2
    err = capsys.readouterr().err
    assert "kind" in err and "'symmetric'" in err and "'pair'" in err


def test_report_flags_on_find_issues_and_train(tmp_path, capsys):
    import numpy as np

    rng = np.random.default_rng(0)
    P = rng.dirichlet(np.ones(3), size=200)
    labels = P.argmax(1)
    labels[:20] = (labels[:20] + 1) % 3
    np.save(tmp_path / "p.npy", P)
    np.save(tmp_path / "l.npy", labels)
    assert main(["find-issues", "--labels", str(tmp_path / "l.npy"), "--pred-probs", str(tmp_path / "p.npy"),
                 "--report", str(tmp_path / "fi.html")]) == 0
    html = (tmp_path / "fi.html").read_text()
    assert html.count("<img") >= 3 and "Noise matrix" in html and (tmp_path / "fi.md").exists()
    assert main(["train", "--dataset", "gaussian", "--noise", "pair:0.3", "--epochs", "2", "--out",
                 str(tmp_path / "run"), "--report", str(tmp_path / "tr.html")]) == 0
    html = (tmp_path / "tr.html").read_text()
    assert "Training curves" in html and "<img" in html
    assert "Wrote the report" in capsys.readouterr().out
