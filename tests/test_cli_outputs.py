"""The command line refuses bad outputs and options before doing any work, with one clear line.

Every case here was a traceback, a silently wrong result or a wasted run before: outputs under a
file or in a folder that cannot be written, colliding outputs, ranges checked only after training,
option parsing that differed between commands.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _synth import make_pred_probs  # noqa: E402

from noisylab.cli import main  # noqa: E402


def cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_error(capsys, command, args, *fragments):
    code, out, err = cli(capsys, command, *args)
    assert code == 2, (code, out, err)
    assert err.startswith(f"noisylab {command}: error: ") and "Traceback" not in err, err
    for frag in fragments:
        assert frag in err, f"{frag!r} not in {err!r}"
    return err


@pytest.fixture
def inputs(tmp_path):
    y, P, _ = make_pred_probs(90, 3, seed=2)
    np.save(tmp_path / "labels.npy", y)
    np.save(tmp_path / "probs.npy", P)
    return tmp_path / "labels.npy", tmp_path / "probs.npy"


def test_find_issues_outputs_checked_first(capsys, tmp_path, inputs):
    labels, probs = inputs
    base = ["--labels", labels, "--pred-probs", probs]
    assert_error(capsys, "find-issues", base + ["--out", labels / "x.csv"], f"Output folder {labels} is not a folder")
    # the report (or its Markdown twin) would overwrite --out
    assert_error(capsys, "find-issues", base + ["--out", tmp_path / "r.md", "--report", tmp_path / "r.html"],
                 "would be overwritten by the report")
    assert not (tmp_path / "r.md").exists() and not (tmp_path / "r.html").exists()
    assert_error(capsys, "find-issues", base + ["--report", tmp_path / "r.txt"], "--report must be an .html file")
    assert_error(capsys, "find-issues", base + ["--top", "-1"], "--top must be >= 0")
    # a report folder that does not exist: nothing is written, not even --out
    assert_error(capsys, "find-issues", base + ["--out", tmp_path / "i.csv", "--report", tmp_path / "no" / "r.html"],
                 "Output folder does not exist")
    assert not (tmp_path / "i.csv").exists()


def test_keep_mask_chains_find_issues_to_train(capsys, tmp_path):
    pytest.importorskip("torch")
    p = tmp_path / "p.npy"
    assert cli(capsys, "cv-probs", "--dataset", "digits", "--model", "logreg", "--folds", "3",
               "--noise", "symmetric:0.3", "--out", p)[0] == 0
    P = np.load(p)
    lab = np.load(tmp_path / "p.labels.npz")
    assert P.shape == (1257, 10) and lab["noisy_labels"].shape == (1257,)  # train's training split of 1797
    keep = tmp_path / "keep.npy"
    code, out, _ = cli(capsys, "find-issues", "--labels", tmp_path / "p.labels.npz", "--pred-probs", p,
                       "--keep-mask", keep, "--top", 0)
    assert code == 0 and "Wrote the keep mask" in out
    mask = np.load(keep)
    import noisylab as nl

    np.testing.assert_array_equal(mask, ~nl.find_label_issues(lab["noisy_labels"], P))
    run = tmp_path / "run"
    assert cli(capsys, "train", "--dataset", "digits", "--noise", "symmetric:0.3", "--train-mask", keep,
               "--epochs", 1, "--out", run)[0] == 0
    result = json.loads((run / "result.json").read_text())
    assert result["n_train"] == int(mask.sum()) and result["n_train_total"] == 1257
    # the noisy labels train draws are the ones cv-probs wrote (same split, same seed)
    assert result["wrong_labels_in_training"] == int((lab["flip_mask"] & mask).sum())


def test_train_refusals_before_training(capsys, tmp_path, inputs):
    pytest.importorskip("torch")
    labels, _ = inputs
    common = ["--dataset", "digits", "--epochs", 1]
    t0 = time.perf_counter()
    assert_error(capsys, "train", common + ["--noise", "symmetric:0.3", "--out", labels / "run"],
                 f"--out {labels / 'run'} cannot be created: {labels} is not a folder")
    assert_error(capsys, "train", common + ["--noise", "symmetric:0.3", "--train-mask", tmp_path / "missing.npy",
                                            "--out", tmp_path / "r"], "File not found")
    (tmp_path / "m.json").write_text("[true]")
    assert_error(capsys, "train", common + ["--noise", "symmetric:0.3", "--train-mask", tmp_path / "m.json",
                                            "--out", tmp_path / "r"], "--train-mask must be a boolean .npy file")
    assert_error(capsys, "train", common + ["--noise", "symmetric:0.3", "--method", "coteaching", "--forget-rate", 2,
                                            "--out", tmp_path / "r"], "--forget-rate must be in [0, 1); got 2.0")
    for method in ("clean", "clean_subset"):
        assert_error(capsys, "train", common + ["--method", method, "--out", tmp_path / "r"],
                     f"--method {method} needs the ground truth")
    assert_error(capsys, "train", common + ["--noise", "symmetric:1.0", "--out", tmp_path / "r"],
                 "--noise must look like KIND:RATE with a rate in [0, 1)")
    assert_error(capsys, "train", common + ["--noise", "symetric:0.2", "--out", tmp_path / "r"],
                 "--noise: Unknown noise kind 'symetric'")
    assert_error(capsys, "train", common + ["--noise", "symmetric:0.3", "--report", tmp_path / "no" / "r.html",
                                            "--out", tmp_path / "r"], "Output folder does not exist")
    assert time.perf_counter() - t0 < 20  # every refusal came before a training
    assert not (tmp_path / "r").exists()
    # "none" is no noise, for train as for detect
    assert cli(capsys, "train", *common, "--noise", "none", "--out", tmp_path / "ok")[0] == 0


def test_cv_probs_refusals(capsys, tmp_path):
    pytest.importorskip("torch")
    assert_error(capsys, "cv-probs", ["--dataset", "digits", "--n-jobs", 0, "--out", tmp_path / "p.npy"],
                 "--n-jobs must be >= 1")
    assert not (tmp_path / "p.npy.folds").exists()
    assert_error(capsys, "cv-probs", ["--dataset", "digits", "--out", tmp_path / "no" / "p.npy"],
                 "Output folder does not exist")
    assert not (tmp_path / "no").exists()


def test_detect_and_train_detector_check_before_training(capsys, tmp_path):
    pytest.importorskip("torch")
    t0 = time.perf_counter()
    assert_error(capsys, "detect", ["--method", "aum", "--dataset", "digits", "--epochs", 3, "--remove", 1.5],
                 "--remove must be a fraction in (0, 1); got 1.5")
    assert_error(capsys, "detect", ["--method", "aum", "--dataset", "digits", "--epochs", 3,
                                    "--out", tmp_path / "no" / "s.csv"], "Output folder does not exist")
    assert_error(capsys, "train-detector", ["--dataset", "digits", "--epochs", 3, "--out", tmp_path / "no" / "d.pt"],
                 "Output folder does not exist")
    assert time.perf_counter() - t0 < 10


def test_csv_header_outside_the_known_names_is_not_a_class(capsys, tmp_path):
    p = tmp_path / "hdr.csv"
    p.write_text("category\n" + "\n".join(["fish", "cat", "dog"] * 10) + "\n")
    assert_error(capsys, "noise", ["--labels", p, "--kind", "symmetric", "--rate", 0.3, "--out", tmp_path / "n.npz"],
                 "the first row 'category' occurs only once", "name the column one of")
    assert not (tmp_path / "n.npz").exists()
    p.write_text("label\n" + "\n".join(["fish", "cat", "dog"] * 10) + "\n")
    assert cli(capsys, "noise", "--labels", p, "--kind", "symmetric", "--rate", 0.3, "--out", tmp_path / "n.npz")[0] == 0


def test_bench_results_and_docs_refuse_unknown_fields_and_folders(capsys, tmp_path):
    store = tmp_path / "s.jsonl"
    recs = [{"key": f"k{i}", "spec": {"bench": "robust", "dataset": "d", "model": "m", "method": m, "noise": "n",
                                      "seed": i}, "result": {"test_acc": 0.5 + 0.1 * i, "test_acc_last": 0.4}}
            for i, m in enumerate(["standard", "standard", "coteaching"])]
    store.write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert_error(capsys, "bench", ["results", store, "--rows", "foo"], "no record has the spec field(s) 'foo'")
    assert_error(capsys, "bench", ["results", store, "--cols", "nosie"], "'nosie'", "noise")
    # a table option is honoured (the generic table) instead of silently giving the robust report
    code, out, _ = cli(capsys, "bench", "results", store, "--value", "test_acc_last", "--scale", 1)
    assert code == 0 and "| standard | 0.40 ± 0.00 (n=2) |" in out and "## " not in out
    assert_error(capsys, "bench", ["docs", "--results", tmp_path / "nope", "--out", tmp_path / "R.md"],
                 "results folder not found")
    assert_error(capsys, "bench", ["docs", "--results", tmp_path, "--cl-data", tmp_path / "nope",
                                   "--out", tmp_path / "R.md"], "CL CIFAR-10 data folder not found")
    assert not (tmp_path / "R.md").exists()


def test_report_checks_every_destination_before_writing(capsys, tmp_path, inputs):
    labels, probs = inputs
    out = tmp_path / "r.html"
    assert_error(capsys, "report", ["--labels", labels, "--pred-probs", probs, "--out", out,
                                    "--md", labels / "r.md"], f"Output folder {labels} is not a folder")
    assert not out.exists()


def test_noise_refuses_options_of_another_kind_and_offers_the_papers_counts(capsys, tmp_path):
    y = np.repeat(np.arange(10), 30)
    np.save(tmp_path / "y.npy", y)
    base = ["--labels", tmp_path / "y.npy", "--out", tmp_path / "n.npz"]
    for extra, msg in ((["--kind", "symmetric", "--rate", 0.3, "--map", "7:1"], "--map applies to --kind class_map"),
                       (["--kind", "pair", "--rate", 0.3, "--matrix", tmp_path / "nope.npy"],
                        "--matrix applies to --kind matrix"),
                       (["--kind", "symmetric", "--rate", 0.3, "--trace", 3], "--trace applies to --kind matrix"),
                       (["--kind", "matrix", "--matrix", tmp_path / "T.npy", "--sparsity", 0.2],
                        "--sparsity applies to --kind matrix with --trace only"),
                       (["--kind", "cifar10", "--rate", 0.3, "--n-classes", 7], "has n_classes=10; got n_classes=7"),
                       (["--kind", "symmetric", "--rate", 0.3, "--sampling", "floor"],
                        "--sampling floor (the CL paper's counts) applies to --kind matrix only")):
        assert_error(capsys, "noise", base + extra, msg)
    assert not (tmp_path / "n.npz").exists()
    # the paper's trace-1 setting (90% noise) needs valid_noise_matrix=False, now the default
    assert cli(capsys, "noise", *base, "--kind", "matrix", "--trace", 1, "--seed", 0)[0] == 0
    assert_error(capsys, "noise", base + ["--kind", "matrix", "--trace", 1, "--valid"], "trace > 1")
    # --sampling floor: floor(T[s, y] * n_y) per cell
    T = np.full((10, 10), 0.05)
    np.fill_diagonal(T, 0.55)
    np.save(tmp_path / "T.npy", T)
    assert cli(capsys, "noise", *base, "--kind", "matrix", "--matrix", tmp_path / "T.npy", "--sampling", "floor")[0] == 0
    with np.load(tmp_path / "n.npz") as z:
        C = np.zeros((10, 10), int)
        np.add.at(C, (z["noisy_labels"], z["true_labels"]), 1)
    off = C[~np.eye(10, dtype=bool)]
    assert (off == 1).all()  # floor(0.05 * 30) = 1 in every off-diagonal cell (exact rounding would give 1 or 2)


def test_demo_and_report_refuse_early(capsys, tmp_path, inputs):
    labels, probs = inputs
    t0 = time.perf_counter()
    assert_error(capsys, "demo", ["--noise-rate", 0], "noise_rate must be in (0, 1)")
    assert_error(capsys, "demo", ["--model", "logreg", "--epochs", 3], "epochs apply to the networks")
    assert time.perf_counter() - t0 < 5  # before any cross-validation
    assert_error(capsys, "report", ["--labels", labels, "--pred-probs", probs, "--out", tmp_path / "r.html",
                                    "--md", tmp_path / "r.html"], "--md must name another file than --out")


def test_report_examples_refuse_labels_beyond_the_class_names():
    pytest.importorskip("matplotlib")
    from noisylab import NoisylabInputError
    from noisylab.report import Report

    with pytest.raises(NoisylabInputError, match="labels holds class 5 but there are only 2 classes"):
        Report("t").add_examples(np.zeros((4, 3)), [0, 1, 5, 0], [0, 1, 1, 0], [.1, .9, .5, .3], class_names=["a", "b"])


def test_bench_outputs_checked_before_the_grid(capsys, tmp_path):
    t0 = time.perf_counter()
    assert_error(capsys, "bench", ["robust", "--out", tmp_path / "no" / "r.md"], "Output folder does not exist")
    assert_error(capsys, "bench", ["detectors", "--report", tmp_path / "r.txt"], "--report must be an .html file")
    assert time.perf_counter() - t0 < 5  # no run started
