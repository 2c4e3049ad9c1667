"""The ``noisylab`` command line: find-issues, noise, demo, bench, help and bad input.

Most tests call ``noisylab.cli.main([...])`` in-process (fast); a few run
``python -m noisylab`` in a subprocess to check the real exit status and that
no traceback reaches the user.  Outputs are checked against the Python API on
the same data.
"""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _synth import make_pred_probs  # noqa: E402

import noisylab as nl  # noqa: E402
from noisylab.cli import main  # noqa: E402
from noisylab.noise import CIFAR10_MAP  # noqa: E402

N, K = 120, 3
NAMES = np.array(["cat", "dog", "fish"])
HEADER = ["index", "given_label", "suggested_label", "label_quality", "is_issue"]


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def cli(capsys, *args):
    """Run ``noisylab ARGS`` in-process; return (exit code, stdout, stderr)."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_cli_error(capsys, command, args, *fragments, out_file=None):
    """Exit code 2, one clear message on stderr, no traceback, no output or temp file."""
    code, out, err = cli(capsys, command, *args)
    assert code == 2, (code, out, err)
    assert err.startswith(f"noisylab {command}: error: "), err
    assert "Traceback" not in err
    for frag in fragments:
        assert frag in err, f"{frag!r} not in {err!r}"
    if out_file is not None:
        assert not Path(out_file).exists()
        assert_no_temp_files(Path(out_file).parent)
    return err


def assert_no_temp_files(folder):
    leftovers = [p.name for p in Path(folder).iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")]
    assert leftovers == []


def read_csv(path):
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def read_issues(path):
    """Output of find-issues as (header, dict of columns)."""
    header, rows = read_csv(path)
    cols = {h: [r[i] for r in rows] for i, h in enumerate(header)}
    cols["index"] = np.array([int(v) for v in cols["index"]])
    cols["label_quality"] = np.array([float(v) for v in cols["label_quality"]])
    assert set(cols["is_issue"]) <= {"True", "False"}
    cols["is_issue"] = np.array([v == "True" for v in cols["is_issue"]])
    return header, cols


def expected_severity_order(mask, scores):
    issues = np.flatnonzero(mask)
    rest = np.flatnonzero(~mask)
    return np.concatenate([issues[np.argsort(scores[issues], kind="stable")],
                           rest[np.argsort(scores[rest], kind="stable")]])


def check_issues_file(path, y, P, *, filter_by="prune_by_noise_rate", rank_by="self_confidence",
                      given=None, suggested_names=None, **api_kwargs):
    """The output file agrees with the Python API on (y, P), value by value."""
    header, cols = read_issues(path)
    n = len(y)
    mask = nl.find_label_issues(y, P, filter_by=filter_by, **api_kwargs)
    scores = nl.get_label_quality_scores(y, P, method=rank_by).astype(np.float64)
    idx = cols["index"]
    # a permutation of all indices, issues first in increasing label quality, then the rest
    assert sorted(idx.tolist()) == list(range(n))
    m = int(mask.sum())
    assert cols["is_issue"].tolist() == [True] * m + [False] * (n - m)
    np.testing.assert_array_equal(idx, expected_severity_order(mask, scores))
    if rank_by == "self_confidence" and not api_kwargs:
        np.testing.assert_array_equal(
            idx[:m], nl.find_label_issues(y, P, filter_by=filter_by, return_indices_ranked_by="self_confidence"))
    q = cols["label_quality"]
    assert np.all(np.diff(q[:m]) >= 0) and np.all(np.diff(q[m:]) >= 0)
    np.testing.assert_allclose(q, scores[idx], rtol=1e-5, atol=1e-12)
    given = y if given is None else given
    assert cols["given_label"] == [str(v) for v in np.asarray(given)[idx]]
    pred = np.asarray(P).argmax(axis=1)
    names = np.arange(np.shape(P)[1]) if suggested_names is None else np.asarray(suggested_names)
    assert cols["suggested_label"] == [str(v) for v in names[pred[idx]]]
    # an issue is never suggested its own label
    gl = np.array(cols["given_label"])
    sl = np.array(cols["suggested_label"])
    assert np.all(gl[:m] != sl[:m])
    return header, cols, mask


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Synthetic inputs written in every supported format."""
    d = tmp_path_factory.mktemp("cli_data")
    y, P, t = make_pred_probs(N, K, noise=0.2, dtype=np.float64, seed=5)
    np.save(d / "labels.npy", y)
    np.save(d / "pred_probs.npy", P)
    np.savez(d / "pred_probs.npz", pred_probs=P)
    np.savez(d / "pred_probs_only.npz", P)  # the only array, default name arr_0
    np.savetxt(d / "pred_probs.csv", P, delimiter=",", header="cat,dog,fish", comments="")
    np.savetxt(d / "pred_probs_noheader.csv", P, delimiter=",")
    np.savez(d / "labels.npz", noisy_labels=y)
    (d / "labels.csv").write_text("label\n" + "\n".join(map(str, y)) + "\n")
    (d / "labels_noheader.txt").write_text("\n".join(map(str, y)) + "\n")
    (d / "labels_list.json").write_text(json.dumps(y.tolist()))
    (d / "labels_names.csv").write_text("label\n" + "\n".join(NAMES[y]) + "\n")
    (d / "labels_ids.csv").write_text("id,label\n" + "".join(f"ex{i:03d},{v}\n" for i, v in enumerate(y)))
    return dict(dir=d, y=y, P=P, t=t)


def _f(data, name):
    return data["dir"] / name


# --------------------------------------------------------------------------
# find-issues: results
# --------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["prune_by_noise_rate", "prune_by_class", "both", "confident_learning",
                                    "predicted_neq_given", "low_self_confidence", "low_normalized_margin"])
def test_find_issues_output_matches_api(capsys, tmp_path, data, method):
    out = tmp_path / "issues.csv"
    code, stdout, err = cli(capsys, "find-issues", "--labels", _f(data, "labels.npy"),
                            "--pred-probs", _f(data, "pred_probs.npy"), "--method", method, "--out", out)
    assert code == 0, err
    assert err == ""
    header, cols, mask = check_issues_file(out, data["y"], data["P"], filter_by=method)
    assert header == HEADER
    m = int(mask.sum())
    assert m == int(nl.find_label_issues(data["y"], data["P"], filter_by=method).sum())
    assert 0 < m < N
    assert f"Label issues: {m} ({m / N:.2%} of the examples)" in stdout
    assert f"method: {method}" in stdout
    assert f"Wrote {N} rows, ordered by severity, to {out}" in stdout
    assert_no_temp_files(tmp_path)


def _summary_matrix(stdout, title, k):
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    rows = lines[start + 2:start + 2 + k]
    return np.array([[float(v) for v in r.split()[1:]] for r in rows]), [r.split()[0] for r in rows]


def _summary_table(stdout, title):
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    body = []
    for line in lines[start + 3:]:
        if not line.startswith("|"):
            break
        body.append([c.strip() for c in line.strip("|").split("|")])
    return body


def test_find_issues_summary_values(capsys, tmp_path, monkeypatch, data):
    monkeypatch.chdir(tmp_path)
    y, P = data["y"], data["P"]
    code, stdout, err = cli(capsys, "find-issues", "--labels", _f(data, "labels.npy"),
                            "--pred-probs", _f(data, "pred_probs.npy"), "--top", 5)
    assert code == 0, err
    assert list(tmp_path.iterdir()) == []  # no --out: nothing written
    cl = nl.ConfidentLearning().fit(y, P)
    mask = nl.find_label_issues(y, P)
    m = int(mask.sum())
    assert f"Examples: {N}, classes: {K}" in stdout
    assert f"Label issues: {m} ({m / N:.2%} of the examples)" in stdout
    rate = 1 - np.trace(nl.estimate_joint(y, P))
    assert cl.noise_rate_ == pytest.approx(rate)
    assert f"Estimated noise rate (1 - trace of the estimated joint): {rate:.4f}" in stdout
    M, row_names = _summary_matrix(stdout, "Estimated noise matrix", K)
    assert row_names == ["0", "1", "2"]
    np.testing.assert_allclose(M, cl.noise_matrix_, atol=0.0051)
    table = _summary_table(stdout, "Issues per class")
    counts = np.bincount(y, minlength=K)
    per_class = np.bincount(y[mask], minlength=K)
    assert table == [[str(k), str(counts[k]), str(per_class[k]), f"{per_class[k] / counts[k]:.2%}"]
                     for k in range(K)]
    top = _summary_table(stdout, "Most severe issues (top 5)")
    ranked = nl.find_label_issues(y, P, return_indices_ranked_by="self_confidence")[:5]
    assert [int(r[0]) for r in top] == ranked.tolist()
    assert [r[1] for r in top] == [str(v) for v in y[ranked]]
    assert [r[2] for r in top] == [str(v) for v in P[ranked].argmax(1)]


@pytest.mark.parametrize("probs", ["pred_probs.npz", "pred_probs_only.npz", "pred_probs.csv",
                                   "pred_probs_noheader.csv"])
def test_pred_probs_formats_give_identical_output(capsys, tmp_path, data, probs):
    ref, out = tmp_path / "ref.csv", tmp_path / "out.csv"
    assert cli(capsys, "find-issues", "--labels", _f(data, "labels.npy"), "--pred-probs",
               _f(data, "pred_probs.npy"), "--out", ref)[0] == 0
    assert cli(capsys, "find-issues", "--labels", _f(data, "labels.npy"), "--pred-probs",
               _f(data, probs), "--out", out)[0] == 0
    assert out.read_text() == ref.read_text()


@pytest.mark.parametrize("labels", ["labels.npz", "labels.csv", "labels_noheader.txt", "labels_list.json"])
def test_label_formats_give_identical_output(capsys, tmp_path, data, labels):
    ref, out = tmp_path / "ref.csv", tmp_path / "out.csv"
    assert cli(capsys, "find-issues", "--labels", _f(data, "labels.npy"), "--pred-probs",
               _f(data, "pred_probs.npy"), "--out", ref)[0] == 0
    assert cli(capsys, "find-issues", "--labels", _f(data, labels), "--pred-probs",
               _f(data, "pred_probs.npy"), "--out", out)[0] == 0
    assert out.read_text() == ref.read_text()


def test_whole_float_labels_work(capsys, tmp_path, data):
    np.save(tmp_path / "y.npy", data["y"].astype(np.float64))
    out = tmp_path / "o.csv"
    code, _, err = cli(capsys, "find-issues", "--labels", tmp_path / "y.npy", "--pred-probs",
                       _f(data, "pred_probs.npy"), "--out", out)
    assert code == 0, err
    check_issues_file(out, data["y"], data["P"], given=data["y"].astype(np.float64))


def test_csv_labels_with_id_column(capsys, tmp_path, data):
    out = tmp_path / "o.csv"
    code, stdout, err = cli(capsys, "find-issues", "--labels", _f(data, "labels_ids.csv"), "--pred-probs",
                            _f(data, "pred_probs.npy"), "--out", out)
    assert code == 0, err
    header, cols, mask = check_issues_file(out, data["y"], data["P"])
    assert header == ["index", "id", "given_label", "suggested_label", "label_quality", "is_issue"]
    assert cols["id"] == [f"ex{i:03d}" for i in cols["index"]]
    first = int(cols["index"][0])
    assert f"| {first} | ex{first:03d} |" in stdout  # ids in the top-issues table too


@pytest.mark.parametrize("as_names", [False, True], ids=["int_labels", "name_labels"])
def test_json_path_labels_are_sorted_by_path(capsys, tmp_path, data, as_names):
    """The CL paper's {file path: label} JSON: rows follow the sorted paths (ImageFolder order)."""
    y, P = data["y"], data["P"]
    rng = np.random.default_rng(0)
    # sorted(paths)[i] is example i; the JSON is written in a shuffled order
    paths = sorted(f"train/{rng.integers(10**6):07d}_{i:03d}.png" for i in range(N))
    assert paths == sorted(paths) and len(set(paths)) == N
    values = NAMES[y] if as_names else y
    shuffled = rng.permutation(N)
    mapping = {paths[i]: (str(values[i]) if as_names else int(values[i])) for i in shuffled}
    assert list(mapping) != paths
    (tmp_path / "train_labels.json").write_text(json.dumps(mapping))
    out = tmp_path / "issues.csv"
    code, stdout, err = cli(capsys, "find-issues", "--labels", tmp_path / "train_labels.json",
                            "--pred-probs", _f(data, "pred_probs.npy"), "--out", out)
    assert code == 0, err
    header, cols, mask = check_issues_file(out, y, P, given=values,
                                           suggested_names=NAMES if as_names else None)
    assert header[:3] == ["index", "id", "given_label"]
    assert cols["id"] == [paths[i] for i in cols["index"]]
    assert sorted(cols["id"]) == paths
    for path, lab in zip(cols["id"], cols["given_label"]):
        assert str(mapping[path]) == lab


def test_class_name_labels_kept_as_names(capsys, tmp_path, data):
    y, P = data["y"], data["P"]
    out, ref = tmp_path / "names.csv", tmp_path / "ints.csv"
    code, stdout, err = cli(capsys, "find-issues", "--labels", _f(data, "labels_names.csv"), "--pred-probs",
                            _f(data, "pred_probs.npy"), "--out", out)
    assert code == 0, err
    _, cols, mask = check_issues_file(out, y, P, given=NAMES[y], suggested_names=NAMES)
    assert set(cols["given_label"]) == set(NAMES) and set(cols["suggested_label"]) <= set(NAMES)
    # same rows as with integer labels, only the names differ
    assert cli(capsys, "find-issues", "--labels", _f(data, "labels.npy"), "--pred-probs",
               _f(data, "pred_probs.npy"), "--out", ref)[0] == 0
    _, ints = read_issues(ref)
    np.testing.assert_array_equal(cols["index"], ints["index"])
    np.testing.assert_array_equal(cols["is_issue"], ints["is_issue"])
    assert cols["given_label"] == [NAMES[int(v)] for v in ints["given_label"]]
    assert cols["suggested_label"] == [NAMES[int(v)] for v in ints["suggested_label"]]
    table = _summary_table(stdout, "Issues per class")
    assert [r[0] for r in table] == list(NAMES)
    assert [int(r[2]) for r in table] == np.bincount(y[mask], minlength=K).tolist()
    M, row_names = _summary_matrix(stdout, "Estimated noise matrix", K)
    assert row_names == list(NAMES)


@pytest.mark.parametrize("spec", ["comma", "file"])
def test_classes_option_gives_column_order(capsys, tmp_path, data, spec):
    """--classes names the class of every column: permuted columns + matching --classes = same result."""
    P = data["P"]
    perm = [2, 0, 1]  # columns fish, cat, dog
    np.save(tmp_path / "perm.npy", P[:, perm])
    classes = ",".join(NAMES[perm])
    if spec == "file":
        (tmp_path / "classes.txt").write_text("\n".join(NAMES[perm]) + "\n")
        classes = tmp_path / "classes.txt"
    ref, out = tmp_path / "ref.csv", tmp_path / "out.csv"
    assert cli(capsys, "find-issues", "--labels", _f(data, "labels_names.csv"), "--pred-probs",
               _f(data, "pred_probs.npy"), "--out", ref)[0] == 0
    code, stdout, err = cli(capsys, "find-issues", "--labels", _f(data, "labels_names.csv"), "--pred-probs",
                            tmp_path / "perm.npy", "--classes", classes, "--out", out)
    assert code == 0, err
    assert out.read_text() == ref.read_text()
    # the summary uses the --classes order
    _, row_names = _summary_matrix(stdout, "Estimated noise matrix", K)
    assert row_names == ["fish", "cat", "dog"]
    # without --classes the names are sorted and mapped to the wrong columns: a different result
    wrong = tmp_path / "wrong.csv"
    assert cli(capsys, "find-issues", "--labels", _f(data, "labels_names.csv"), "--pred-probs",
               tmp_path / "perm.npy", "--out", wrong)[0] == 0
    assert wrong.read_text() != ref.read_text()


def test_classes_with_a_class_absent_from_labels(capsys, tmp_path, data):
    y, P = data["y"], data["P"]
    keep = y != 2
    (tmp_path / "y.csv").write_text("\n".join(NAMES[y[keep]]) + "\n")
    Pk = P[keep]
    np.save(tmp_path / "p.npy", Pk)
    out = tmp_path / "o.csv"
    code, stdout, err = cli(capsys, "find-issues", "--labels", tmp_path / "y.csv", "--pred-probs",
                            tmp_path / "p.npy", "--classes", "cat,dog,fish", "--out", out)
    assert code == 0, err
    check_issues_file(out, y[keep], Pk, given=NAMES[y[keep]], suggested_names=NAMES)
    table = _summary_table(stdout, "Issues per class")
    assert table[2] == ["fish", "0", "0", "-"]
    # without --classes the two names cannot be matched to three columns
    assert_cli_error(capsys, "find-issues", ["--labels", tmp_path / "y.csv", "--pred-probs", tmp_path / "p.npy"],
                     "2 classes", "3 columns", "--classes")


def test_integer_classes_option(capsys, tmp_path, data):
    P = data["P"]
    np.save(tmp_path / "rev.npy", P[:, ::-1])
    ref, out = tmp_path / "ref.csv", tmp_path / "out.csv"
    assert cli(capsys, "find-issues", "--labels", _f(data, "labels.npy"), "--pred-probs",
               _f(data, "pred_probs.npy"), "--out", ref)[0] == 0
    assert cli(capsys, "find-issues", "--labels", _f(data, "labels.npy"), "--pred-probs",
               tmp_path / "rev.npy", "--classes", "2,1,0", "--out", out)[0] == 0
    assert out.read_text() == ref.read_text()


def test_options_are_passed_to_the_api(capsys, tmp_path, data):
    y, P = data["y"], data["P"]
    out = tmp_path / "o.csv"
    assert cli(capsys, "find-issues", "--labels", _f(data, "labels.npy"), "--pred-probs",
               _f(data, "pred_probs.npy"), "--frac-noise", 0.5, "--rank-by", "normalized_margin",
               "--out", out)[0] == 0
    _, cols, mask = check_issues_file(out, y, P, rank_by="normalized_margin", frac_noise=0.5)
    assert 0 < mask.sum() < nl.find_label_issues(y, P).sum()
    assert cli(capsys, "find-issues", "--labels", _f(data, "labels.npy"), "--pred-probs",
               _f(data, "pred_probs.npy"), "--method", "prune_by_class", "--num-to-remove-per-class", "4,0,2",
               "--out", out)[0] == 0
    _, cols, mask = check_issues_file(out, y, P, filter_by="prune_by_class", num_to_remove_per_class=[4, 0, 2])
    assert np.all(np.bincount(y[mask], minlength=K) <= [4, 0, 2])
    assert cli(capsys, "find-issues", "--labels", _f(data, "labels.npy"), "--pred-probs",
               _f(data, "pred_probs.npy"), "--rank-by", "confidence_weighted_entropy", "--method", "both",
               "--min-examples-per-class", 30, "--out", out)[0] == 0
    check_issues_file(out, y, P, filter_by="both", rank_by="confidence_weighted_entropy", min_examples_per_class=30)


def test_rows_slightly_off_warn_and_are_renormalised(capsys, tmp_path, data):
    P = data["P"]
    Poff = P * np.linspace(0.995, 1.005, N)[:, None]
    np.save(tmp_path / "off.npy", Poff)
    np.save(tmp_path / "ren.npy", Poff / Poff.sum(1, keepdims=True))
    out, ref = tmp_path / "off.csv", tmp_path / "ren.csv"
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        code, stdout, err = cli(capsys, "find-issues", "--labels", _f(data, "labels.npy"),
                                "--pred-probs", tmp_path / "off.npy", "--out", out)
    assert code == 0
    assert err.startswith("noisylab: warning: Rows of pred_probs do not sum to 1")
    assert "renormalising" in err and "Traceback" not in err
    assert cli(capsys, "find-issues", "--labels", _f(data, "labels.npy"), "--pred-probs",
               tmp_path / "ren.npy", "--out", ref)[0] == 0
    assert out.read_text() == ref.read_text()


def test_one_hot_integer_pred_probs(capsys, tmp_path, data):
    y, t = data["y"], data["t"]
    np.save(tmp_path / "p.npy", np.eye(K, dtype=np.int64)[t])
    out = tmp_path / "o.csv"
    code, _, err = cli(capsys, "find-issues", "--labels", _f(data, "labels.npy"), "--pred-probs",
                       tmp_path / "p.npy", "--method", "predicted_neq_given", "--out", out)
    assert code == 0, err
    _, cols = read_issues(out)
    assert sorted(cols["index"][cols["is_issue"]].tolist()) == np.flatnonzero(y != t).tolist()


# --------------------------------------------------------------------------
# find-issues: bad input
# --------------------------------------------------------------------------
def _write(tmp, name, content):
    p = tmp / name
    if isinstance(content, np.ndarray):
        np.save(p, content)
    elif isinstance(content, bytes):
        p.write_bytes(content)
    else:
        p.write_text(content)
    return p


def _labels_with(data, idx, value):
    y = data["y"].copy()
    y[idx] = value
    return y


def _probs_with(data, row, col, value):
    P = data["P"].copy()
    P[row, col] = value
    return P


# (id, labels builder, pred_probs builder, extra args, fragments of the message)
#  builders take (data, tmp_path) and return a path (or a plain name for missing files)
L = lambda name: (lambda d, t: _f(d, name))  # noqa: E731
LA = lambda fn: (lambda d, t: _write(t, "bad_labels.npy", fn(d)))  # noqa: E731
PA = lambda fn: (lambda d, t: _write(t, "bad_probs.npy", fn(d)))  # noqa: E731
PT = lambda name, text: (lambda d, t: _write(t, name, text))  # noqa: E731
GOOD_L, GOOD_P = L("labels.npy"), L("pred_probs.npy")

FIND_ISSUES_BAD = [
    ("pred_probs_1d", GOOD_L, PA(lambda d: d["P"][:, 0]), [], ["2-D", "(120,)"]),
    ("pred_probs_3d", GOOD_L, PA(lambda d: d["P"][:, :, None]), [], ["2-D", "(120, 3, 1)"]),
    ("labels_2d", LA(lambda d: d["y"][:, None]), GOOD_P, [], ["1-D", "(120, 1)"]),
    ("too_few_labels", LA(lambda d: d["y"][:-1]), GOOD_P, [], ["119 labels", "120 rows"]),
    ("too_few_rows", GOOD_L, PA(lambda d: d["P"][:-3]), [], ["120 labels", "117 rows"]),
    ("nan", GOOD_L, PA(lambda d: _probs_with(d, 3, 1, np.nan)), [], ["finite", "nan", "row 3", "column 1"]),
    ("inf", GOOD_L, PA(lambda d: _probs_with(d, 4, 2, np.inf)), [], ["finite", "inf", "row 4"]),
    ("nan_csv", GOOD_L, PT("p.csv", "0.5,0.5,0\nnan,0.5,0.5\n" * 60), [], ["finite", "nan", "row 1"]),
    ("negative", GOOD_L, PA(lambda d: np.where(np.arange(3) == 0, -0.2, 0.6) * np.ones((N, 1))), [],
     ["negative", "-0.2", "row 0"]),
    ("rows_off_0.2", GOOD_L, PA(lambda d: d["P"] * 1.2), [], ["sum to 1", "1.2", "tolerance"]),
    ("label_ge_K", LA(lambda d: _labels_with(d, 9, 3)), GOOD_P, [], ["class index 3", "3 columns"]),
    ("negative_label", LA(lambda d: _labels_with(d, 9, -1)), GOOD_P, [], [">= 0", "-1"]),
    ("float_label_1.5", LA(lambda d: _labels_with(d, 9, 0).astype(float) + (np.arange(N) == 9) * 1.5), GOOD_P,
     [], ["whole numbers", "1.5"]),
    ("one_class", LA(lambda d: np.zeros(N, dtype=int)), GOOD_P, [], ["only one class"]),
    ("K_1", LA(lambda d: np.zeros(N, dtype=int)), PA(lambda d: np.ones((N, 1))), [], ["at least 2 columns"]),
    ("names_more_than_columns", PT("y.csv", "\n".join(["a", "b", "c", "d"] * 30)), GOOD_P, [],
     ["4 classes", "3 columns", "--classes"]),
    ("empty_labels_csv", PT("y.csv", ""), GOOD_P, [], ["is empty"]),
    ("empty_labels_npy", LA(lambda d: np.array([], dtype=int)), GOOD_P, [], ["0 labels", "120 rows"]),
    ("empty_labels_json", PT("y.json", "[]"), GOOD_P, [], ["0 labels"]),
    ("empty_pred_probs_csv", GOOD_L, PT("p.csv", ""), [], ["is empty"]),
    ("empty_pred_probs_npy", LA(lambda d: np.array([], dtype=int)), PA(lambda d: np.zeros((0, 3))), [],
     ["empty"]),
    ("missing_labels", lambda d, t: t / "nothere.npy", GOOD_P, [], ["File not found", "nothere.npy"]),
    ("missing_pred_probs", GOOD_L, lambda d, t: t / "nothere.npy", [], ["File not found", "nothere.npy"]),
    ("directory", GOOD_L, lambda d, t: t, [], ["Expected a file, got a directory"]),
    ("garbage_npy", PT("y.npy", "this is not a numpy file"), GOOD_P, [], ["Could not read labels"]),
    ("garbage_pred_probs_npy", GOOD_L, PT("p.npy", b"\x93NUMPY garbage"), [], ["Could not read pred_probs"]),
    ("binary_csv", PT("y.csv", b"\xff\xfe\xfa\x00\x81"), GOOD_P, [], ["not a text CSV"]),
    ("bad_json", PT("y.json", "{not json"), GOOD_P, [], ["Could not read labels"]),
    ("json_scalar", PT("y.json", '"cat"'), GOOD_P, [], ["JSON list", "{id: label}"]),
    ("unsupported_labels", PT("y.xlsx", "x"), GOOD_P, [], ["Unsupported labels file type '.xlsx'"]),
    ("unsupported_probs", GOOD_L, PT("p.parquet", "x"), [], ["Unsupported pred_probs file type '.parquet'"]),
    ("npz_unknown_arrays", GOOD_L, lambda d, t: (np.savez(t / "p.npz", a=d["P"], b=d["P"]), t / "p.npz")[1], [],
     ["['a', 'b']", "pred_probs"]),
    ("csv_non_numeric", GOOD_L, PT("p.csv", "a,b,c\n0.5,x,0.5\n"), [], ["numbers only"]),
    ("csv_three_label_columns", PT("y.csv", "1,2,3\n"), GOOD_P, [], ["one column", "two"]),
    ("unknown_method", GOOD_L, GOOD_P, ["--method", "prune_by_nose_rate"],
     ["Unknown method 'prune_by_nose_rate'", "Did you mean 'prune_by_noise_rate'?"]),
    ("unknown_method_far", GOOD_L, GOOD_P, ["--method", "xyz"], ["Unknown method 'xyz'", "'both'"]),
    ("unknown_rank_by", GOOD_L, GOOD_P, ["--rank-by", "self_confidance"], ["Did you mean 'self_confidence'?"]),
    ("ntr_not_ints", GOOD_L, GOOD_P, ["--num-to-remove-per-class", "a,b,c"], ["comma list of integers"]),
    ("ntr_wrong_length", GOOD_L, GOOD_P, ["--num-to-remove-per-class", "1,2"], ["one entry per class (3)"]),
    ("ntr_with_cl", GOOD_L, GOOD_P, ["--num-to-remove-per-class", "1,2,3", "--method", "confident_learning"],
     ["pruning filters"]),
    ("frac_noise_0", GOOD_L, GOOD_P, ["--frac-noise", "0"], ["frac_noise must be in (0.0, 1.0]"]),
    ("frac_noise_1.5", GOOD_L, GOOD_P, ["--frac-noise", "1.5"], ["frac_noise", "1.5"]),
    ("min_examples_negative", GOOD_L, GOOD_P, ["--min-examples-per-class", "-1"], ["min_examples_per_class"]),
    ("classes_duplicate", L("labels_names.csv"), GOOD_P, ["--classes", "cat,dog,dog"], ["unique"]),
    ("classes_missing_label", L("labels_names.csv"), GOOD_P, ["--classes", "cat,dog,bird"],
     ["'fish' is not one of the 3 classes"]),
    ("classes_too_many", L("labels_names.csv"), GOOD_P, ["--classes", "cat,dog,fish,bird"],
     ["4 classes", "3 columns"]),
]


@pytest.mark.parametrize("case,labels,probs,extra,fragments", FIND_ISSUES_BAD, ids=[c[0] for c in FIND_ISSUES_BAD])
def test_find_issues_bad_input(capsys, tmp_path, data, case, labels, probs, extra, fragments):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "issues.csv"
    args = ["--labels", labels(data, tmp_path), "--pred-probs", probs(data, tmp_path), *extra, "--out", out]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # bad input: an error, not a warning
        assert_cli_error(capsys, "find-issues", args, *fragments, out_file=out)
    # an existing output file is left untouched
    out.write_text("OLD CONTENT\n")
    assert_cli_error(capsys, "find-issues", args, *fragments)
    assert out.read_text() == "OLD CONTENT\n"
    assert_no_temp_files(out_dir)


def test_out_folder_missing(capsys, tmp_path, data):
    out = tmp_path / "no" / "such" / "dir" / "issues.csv"
    assert_cli_error(capsys, "find-issues", ["--labels", _f(data, "labels.npy"), "--pred-probs",
                                             _f(data, "pred_probs.npy"), "--out", out],
                     "Output folder does not exist")
    assert not (tmp_path / "no").exists()


def test_existing_output_is_replaced_on_success(capsys, tmp_path, data):
    out = tmp_path / "issues.csv"
    out.write_text("OLD CONTENT\n")
    assert cli(capsys, "find-issues", "--labels", _f(data, "labels.npy"), "--pred-probs",
               _f(data, "pred_probs.npy"), "--out", out)[0] == 0
    check_issues_file(out, data["y"], data["P"])
    assert_no_temp_files(tmp_path)


@pytest.mark.parametrize("args,fragment", [
    (["find-issues", "--labels", "y.npy"], "the following arguments are required: --pred-probs"),
    (["find-issues", "--labels", "y.npy", "--pred-probs", "p.npy", "--frac-noise", "abc"],
     "argument --frac-noise: invalid float value: 'abc'"),
    (["noise", "--labels", "y.npy", "--kind", "pair", "--rate", "0.1"], "required: --out"),
    (["noise", "--labels", "y.npy", "--kind", "pair", "--rate", "x", "--out", "o.npz"], "invalid float value"),
])
def test_argparse_usage_errors(capsys, args, fragment):
    with pytest.raises(SystemExit) as exc_info:
        main(args)
    assert exc_info.value.code == 2
    out, err = capsys.readouterr()
    assert f"noisylab {args[0]}: error: " in err and fragment in err
    assert "Traceback" not in err


def test_unknown_option_reported_by_subcommand(capsys):
    with pytest.raises(SystemExit) as exc_info:
        main(["find-issues", "--labels", "y.npy", "--pred-probs", "p.npy", "--bogus"])
    assert exc_info.value.code == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments: --bogus" in err
    assert "noisylab find-issues: error: " in err


def test_unknown_command(capsys):
    with pytest.raises(SystemExit) as exc_info:
        main(["find-isues"])
    assert exc_info.value.code == 2
    assert "invalid choice: 'find-isues'" in capsys.readouterr().err


def test_no_command_prints_help_and_fails(capsys):
    code, out, err = cli(capsys)
    assert code == 2
    assert "usage: noisylab" in out and "find-issues" in out and "examples:" in out


@pytest.mark.parametrize("command", [[], ["find-issues"], ["noise"], ["demo"], ["bench"], ["bench", "cl-cifar10"]],
                         ids=["noisylab", "find-issues", "noise", "demo", "bench", "bench-cl-cifar10"])
def test_help_has_examples(capsys, command):
    with pytest.raises(SystemExit) as exc_info:
        main([*command, "--help"])
    assert exc_info.value.code in (0, None)
    out, err = capsys.readouterr()
    assert err == ""
    prog = " ".join(["noisylab", *command])
    assert out.startswith(f"usage: {prog}")
    assert "\nexamples:\n" in out
    examples = out.split("\nexamples:\n", 1)[1]
    assert f"  {prog}" in examples  # every example shows the command itself


def test_version(capsys):
    with pytest.raises(SystemExit) as exc_info:
        main(["--version"])
    assert exc_info.value.code in (0, None)
    assert capsys.readouterr().out.strip() == f"noisylab {nl.__version__}"


# --------------------------------------------------------------------------
# find-issues: known bugs
# --------------------------------------------------------------------------
def test_out_is_a_directory(capsys, tmp_path, data):
    (tmp_path / "issues.csv").mkdir()
    assert_cli_error(capsys, "find-issues", ["--labels", _f(data, "labels.npy"), "--pred-probs",
                                             _f(data, "pred_probs.npy"), "--out", tmp_path / "issues.csv"],
                     "issues.csv")
    assert_no_temp_files(tmp_path)


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_output_file_mode_follows_umask(capsys, tmp_path, data):
    old = os.umask(0o022)
    try:
        out = tmp_path / "issues.csv"
        assert cli(capsys, "find-issues", "--labels", _f(data, "labels.npy"), "--pred-probs",
                   _f(data, "pred_probs.npy"), "--out", out)[0] == 0
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o644


def test_csv_labels_with_other_header(capsys, tmp_path, data):
    y = data["y"]
    (tmp_path / "y.csv").write_text("target\n" + "\n".join(map(str, y)) + "\n")
    out = tmp_path / "o.csv"
    code, _, err = cli(capsys, "find-issues", "--labels", tmp_path / "y.csv", "--pred-probs",
                       _f(data, "pred_probs.npy"), "--out", out)
    assert code == 0, err
    check_issues_file(out, y, data["P"])


def test_ragged_pred_probs_csv_message(capsys, tmp_path, data):
    (tmp_path / "p.csv").write_text("0.5,0.5,0\n0.2,0.8\n" * 60)
    err = assert_cli_error(capsys, "find-issues", ["--labels", _f(data, "labels.npy"), "--pred-probs",
                                                   tmp_path / "p.csv"], "different numbers of columns")
    assert "inhomogeneous" not in err


def test_class_names_in_messages_are_plain(capsys, data):
    err = assert_cli_error(capsys, "find-issues", ["--labels", _f(data, "labels_names.csv"), "--pred-probs",
                                                   _f(data, "pred_probs.npy"), "--classes", "fish,dog"],
                           "'cat' is not one of the 2 classes")
    assert "np.str_" not in err
    assert "['fish', 'dog']" in err


def test_main_restores_warnings_showwarning(capsys, data):
    before = warnings.showwarning
    assert cli(capsys, "find-issues", "--labels", _f(data, "labels.npy"), "--pred-probs",
               _f(data, "pred_probs.npy"))[0] == 0
    assert warnings.showwarning is before


# --------------------------------------------------------------------------
# noise
# --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    d = tmp_path_factory.mktemp("noise_data")
    rng = np.random.default_rng(3)
    t = np.repeat(np.arange(4), 50)
    rng.shuffle(t)
    np.save(d / "t.npy", t)
    names = np.array(["ant", "bee", "cat", "dog"])
    (d / "t_names.csv").write_text("label\n" + "\n".join(names[t]) + "\n")
    ids = [f"img/{i:04d}.png" for i in range(len(t))]
    (d / "t_paths.json").write_text(json.dumps({ids[i]: str(names[t[i]]) for i in rng.permutation(len(t))}))
    (d / "t_paths_int.json").write_text(json.dumps({ids[i]: int(t[i]) for i in rng.permutation(len(t))}))
    np.save(d / "t10.npy", np.arange(200) % 10)
    return dict(dir=d, t=t, names=names, ids=ids)


def _noise(capsys, clean, *args, labels="t.npy"):
    return cli(capsys, "noise", "--labels", clean["dir"] / labels, *args)


def _load_npz(path):
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


@pytest.mark.parametrize("rate", [0.25, 0.33, 0.6])
def test_noise_symmetric_exact_flips(capsys, tmp_path, clean, rate):
    out = tmp_path / "noisy.npz"
    code, stdout, err = _noise(capsys, clean, "--kind", "symmetric", "--rate", rate, "--exact", "--seed", 1,
                               "--out", out)
    assert code == 0, err
    z = _load_npz(out)
    t = clean["t"]
    n = len(t)
    assert set(z) == {"noisy_labels", "true_labels", "flip_mask", "noise_matrix", "transition_matrix"}
    np.testing.assert_array_equal(z["true_labels"], t)
    np.testing.assert_array_equal(z["flip_mask"], z["noisy_labels"] != t)
    assert z["flip_mask"].dtype == bool
    assert int(z["flip_mask"].sum()) == round(rate * n)
    per_class = np.bincount(t[z["flip_mask"]], minlength=4)
    assert np.all(np.abs(per_class - rate * 50) < 1)  # floor or ceil of the expected count
    assert set(np.unique(z["noisy_labels"])) <= {0, 1, 2, 3}
    T = z["noise_matrix"]
    np.testing.assert_allclose(np.diag(T), 1 - rate)
    np.testing.assert_allclose(T[~np.eye(4, dtype=bool)], rate / 3)
    C = np.zeros((4, 4))
    np.add.at(C, (z["noisy_labels"], t), 1)
    np.testing.assert_allclose(z["transition_matrix"], C / C.sum(0))
    assert f"changed={round(rate * n)} " in stdout
    assert f"Wrote noisy labels and flip mask to {out}" in stdout


def test_noise_pair_maps_to_next_class(capsys, tmp_path, clean):
    out = tmp_path / "pair.npz"
    assert _noise(capsys, clean, "--kind", "pair", "--rate", 0.4, "--exact", "--out", out)[0] == 0
    z = _load_npz(out)
    t, noisy, flip = clean["t"], z["noisy_labels"], z["flip_mask"]
    assert flip.sum() == 80
    np.testing.assert_array_equal(noisy[flip], (t[flip] + 1) % 4)
    np.testing.assert_array_equal(noisy[~flip], t[~flip])
    np.testing.assert_array_equal(np.bincount(t[flip], minlength=4), [20, 20, 20, 20])


def test_noise_same_seed_same_output(capsys, tmp_path, clean):
    outs = [tmp_path / "a.npz", tmp_path / "b.npz", tmp_path / "c.npz"]
    for out, seed in zip(outs, [7, 7, 8]):
        assert _noise(capsys, clean, "--kind", "symmetric", "--rate", 0.3, "--seed", seed, "--out", out)[0] == 0
    a, b, c = (_load_npz(o) for o in outs)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["noisy_labels"], c["noisy_labels"])


def test_noise_default_seed_is_reproducible(capsys, tmp_path, clean):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    assert _noise(capsys, clean, "--kind", "uniform", "--rate", 0.5, "--out", a)[0] == 0
    assert _noise(capsys, clean, "--kind", "uniform", "--rate", 0.5, "--out", b)[0] == 0
    assert a.read_text() == b.read_text()


def test_noise_csv_output(capsys, tmp_path, clean):
    out = tmp_path / "noisy.csv"
    assert _noise(capsys, clean, "--kind", "pair", "--rate", 0.3, "--seed", 2, "--out", out)[0] == 0
    header, rows = read_csv(out)
    assert header == ["index", "true_label", "noisy_label", "flipped"]
    t = clean["t"]
    assert [int(r[0]) for r in rows] == list(range(len(t)))
    assert [int(r[1]) for r in rows] == t.tolist()
    noisy = np.array([int(r[2]) for r in rows])
    flipped = np.array([r[3] == "True" for r in rows])
    assert {r[3] for r in rows} <= {"True", "False"}
    np.testing.assert_array_equal(flipped, noisy != t)
    np.testing.assert_array_equal(noisy[flipped], (t[flipped] + 1) % 4)
    assert 0 < flipped.sum() < len(t)


def test_noise_class_names_round_trip(capsys, tmp_path, clean):
    names, t = clean["names"], clean["t"]
    npz, csv_out = tmp_path / "n.npz", tmp_path / "n.csv"
    assert _noise(capsys, clean, "--kind", "pair", "--rate", 0.5, "--exact", "--seed", 4, "--out", npz,
                  labels="t_names.csv")[0] == 0
    z = _load_npz(npz)
    assert z["noisy_labels"].dtype.kind == "U" and z["true_labels"].dtype.kind == "U"
    np.testing.assert_array_equal(z["true_labels"], names[t])
    np.testing.assert_array_equal(z["flip_mask"], z["noisy_labels"] != z["true_labels"])
    assert z["flip_mask"].sum() == 100
    nxt = {a: b for a, b in zip(names, np.roll(names, -1))}  # sorted names: ant->bee->cat->dog->ant
    flip = z["flip_mask"]
    assert [nxt[v] for v in z["true_labels"][flip]] == z["noisy_labels"][flip].tolist()
    # the same seed on integer labels flips the same examples
    assert _noise(capsys, clean, "--kind", "pair", "--rate", 0.5, "--exact", "--seed", 4,
                  "--out", tmp_path / "i.npz")[0] == 0
    zi = _load_npz(tmp_path / "i.npz")
    np.testing.assert_array_equal(names[zi["noisy_labels"]], z["noisy_labels"])
    assert _noise(capsys, clean, "--kind", "pair", "--rate", 0.5, "--exact", "--seed", 4, "--out", csv_out,
                  labels="t_names.csv")[0] == 0
    _, rows = read_csv(csv_out)
    assert [r[1] for r in rows] == names[t].tolist()
    assert [r[2] for r in rows] == z["noisy_labels"].tolist()


@pytest.mark.parametrize("labels", ["t_paths.json", "t_paths_int.json"])
def test_noise_json_output_keeps_ids(capsys, tmp_path, clean, labels):
    out = tmp_path / "noisy.json"
    assert _noise(capsys, clean, "--kind", "symmetric", "--rate", 0.3, "--exact", "--seed", 0, "--out", out,
                  labels=labels)[0] == 0
    got = json.loads(out.read_text())
    assert list(got) == clean["ids"]  # ids in sorted order
    given = json.loads((clean["dir"] / labels).read_text())
    changed = [k for k in got if got[k] != given[k]]
    assert len(changed) == 60
    if labels == "t_paths.json":
        assert set(got.values()) <= set(clean["names"].tolist())
    else:
        assert all(isinstance(v, int) for v in got.values())


def test_noise_json_output_for_plain_labels_is_a_list(capsys, tmp_path, clean):
    out = tmp_path / "noisy.json"
    assert _noise(capsys, clean, "--kind", "pair", "--rate", 0.2, "--out", out)[0] == 0
    got = json.loads(out.read_text())
    assert isinstance(got, list) and len(got) == 200 and set(got) <= {0, 1, 2, 3}


def test_noise_matrix_from_file(capsys, tmp_path, clean):
    T = np.array([[0.8, 0.1, 0.0, 0.2],
                  [0.1, 0.8, 0.1, 0.0],
                  [0.0, 0.1, 0.6, 0.0],
                  [0.1, 0.0, 0.3, 0.8]])
    np.savetxt(tmp_path / "T.csv", T, delimiter=",")
    out = tmp_path / "m.npz"
    assert _noise(capsys, clean, "--kind", "matrix", "--matrix", tmp_path / "T.csv", "--exact", "--out", out)[0] == 0
    z = _load_npz(out)
    np.testing.assert_allclose(z["noise_matrix"], T)
    # 50 examples per class and entries in tenths: exact counts reproduce T exactly
    np.testing.assert_allclose(z["transition_matrix"], T, atol=1e-12)
    assert z["flip_mask"].sum() == round(50 * (4 - np.trace(T)))
    np.testing.assert_array_equal(z["flip_mask"], z["noisy_labels"] != clean["t"])
    # a .npy matrix works the same
    np.save(tmp_path / "T.npy", T)
    assert _noise(capsys, clean, "--kind", "matrix", "--matrix", tmp_path / "T.npy", "--exact",
                  "--out", tmp_path / "m2.npz")[0] == 0
    np.testing.assert_allclose(_load_npz(tmp_path / "m2.npz")["transition_matrix"], T, atol=1e-12)


def test_noise_matrix_from_trace_and_sparsity(capsys, tmp_path, clean):
    out = tmp_path / "mt.npz"
    assert _noise(capsys, clean, "--kind", "matrix", "--trace", 3, "--sparsity", 0.4, "--seed", 0,
                  "--out", out)[0] == 0
    z = _load_npz(out)
    T = z["noise_matrix"]
    assert np.trace(T) == pytest.approx(3.0)
    np.testing.assert_allclose(T.sum(axis=0), 1.0)
    off = T[~np.eye(4, dtype=bool)]
    assert (off == 0).sum() == int(4 * 3 * 0.4)
    t, noisy = clean["t"], z["noisy_labels"]
    assert np.all(T[noisy, t] > 0)  # no example lands in a zero cell
    np.testing.assert_array_equal(z["flip_mask"], noisy != t)
    # same seed, same matrix
    assert _noise(capsys, clean, "--kind", "matrix", "--trace", 3, "--sparsity", 0.4, "--seed", 0,
                  "--out", tmp_path / "mt2.npz")[0] == 0
    np.testing.assert_array_equal(_load_npz(tmp_path / "mt2.npz")["noise_matrix"], T)


def test_noise_cifar10(capsys, tmp_path, clean):
    out = tmp_path / "c.npz"
    assert _noise(capsys, clean, "--kind", "cifar10", "--rate", 0.4, "--exact", "--out", out,
                  labels="t10.npy")[0] == 0
    z = _load_npz(out)
    flip = z["flip_mask"]
    t = np.arange(200) % 10
    assert flip.sum() == 5 * 8  # 5 mapped classes x 20 examples x 0.4
    for a, b in zip(t[flip], z["noisy_labels"][flip]):
        assert CIFAR10_MAP[int(a)] == int(b)


NOISE_BAD = [
    ("unknown_kind", ["--kind", "symetric", "--rate", "0.2"], ["Unknown kind 'symetric'", "Did you mean 'symmetric'?"]),
    ("unknown_kind_far", ["--kind", "gaussian", "--rate", "0.2"], ["Unknown kind 'gaussian'", "'pair'"]),
    ("missing_rate", ["--kind", "pair"], ["--kind pair needs --rate"]),
    ("rate_too_big", ["--kind", "symmetric", "--rate", "1.5"], ["rate must be in [0.0, 1.0]", "1.5"]),
    ("rate_negative", ["--kind", "symmetric", "--rate", "-0.1"], ["rate must be in"]),
    ("rate_with_matrix", ["--kind", "matrix", "--rate", "0.2", "--trace", "3"], ["--rate does not apply"]),
    ("matrix_without_source", ["--kind", "matrix"], ["--matrix FILE or --trace"]),
    ("trace_too_big", ["--kind", "matrix", "--trace", "5"], ["trace", "5"]),
    ("class_map_without_map", ["--kind", "class_map", "--rate", "0.3"], ["needs --map"]),
    ("bad_map", ["--kind", "class_map", "--map", "0-1", "--rate", "0.3"], ["--map must look like"]),
    ("map_out_of_range", ["--kind", "class_map", "--map", "0:9", "--rate", "0.3"], ["0 -> 9", "outside 0..3"]),
    ("n_classes_too_small", ["--kind", "symmetric", "--rate", "0.3", "--n-classes", "3"],
     ["class index 3", "n_classes=3"]),
    ("negative_seed", ["--kind", "symmetric", "--rate", "0.3", "--seed", "-1"], ["random_state", "-1"]),
]


@pytest.mark.parametrize("case,args,fragments", NOISE_BAD, ids=[c[0] for c in NOISE_BAD])
def test_noise_bad_input(capsys, tmp_path, clean, case, args, fragments):
    out = tmp_path / "noisy.npz"
    assert_cli_error(capsys, "noise", ["--labels", clean["dir"] / "t.npy", *args, "--out", out], *fragments,
                     out_file=out)
    out.write_bytes(b"OLD")
    assert_cli_error(capsys, "noise", ["--labels", clean["dir"] / "t.npy", *args, "--out", out], *fragments)
    assert out.read_bytes() == b"OLD"
    assert_no_temp_files(tmp_path)


def test_noise_bad_files(capsys, tmp_path, clean):
    out = tmp_path / "noisy.npz"
    assert_cli_error(capsys, "noise", ["--labels", tmp_path / "nothere.npy", "--kind", "pair", "--rate", "0.2",
                                       "--out", out], "File not found", out_file=out)
    assert_cli_error(capsys, "noise", ["--labels", clean["dir"] / "t.npy", "--kind", "pair", "--rate", "0.2",
                                       "--out", tmp_path / "noisy.txt"],
                     "--out must end in .npz, .csv or .json", "noisy.txt", out_file=tmp_path / "noisy.txt")
    assert_cli_error(capsys, "noise", ["--labels", clean["dir"] / "t.npy", "--kind", "pair", "--rate", "0.2",
                                       "--out", tmp_path / "missing" / "n.npz"], "Output folder does not exist")
    Trow = np.array([[0.8, 0.2, 0, 0], [0.1, 0.8, 0.1, 0], [0, 0.1, 0.8, 0.1], [0, 0.1, 0.1, 0.8]])
    np.save(tmp_path / "Trow.npy", Trow)
    assert_cli_error(capsys, "noise", ["--labels", clean["dir"] / "t.npy", "--kind", "matrix", "--matrix",
                                       tmp_path / "Trow.npy", "--out", out],
                     "column-stochastic", "pass the transpose", out_file=out)
    np.save(tmp_path / "T2.npy", np.array([[0.7, 0.3], [0.3, 0.7]]))
    assert_cli_error(capsys, "noise", ["--labels", clean["dir"] / "t.npy", "--kind", "matrix", "--matrix",
                                       tmp_path / "T2.npy", "--out", out], "class index 3", out_file=out)
    np.save(tmp_path / "empty.npy", np.array([], dtype=int))
    assert_cli_error(capsys, "noise", ["--labels", tmp_path / "empty.npy", "--kind", "pair", "--rate", "0.2",
                                       "--out", out], "empty", out_file=out)
    np.save(tmp_path / "neg.npy", np.array([0, 1, -1]))
    assert_cli_error(capsys, "noise", ["--labels", tmp_path / "neg.npy", "--kind", "pair", "--rate", "0.2",
                                       "--out", out], ">= 0", out_file=out)


@pytest.mark.parametrize("args", [["--kind", "symmetric", "--rate", "0.5", "--n-classes", "6"],
                                  ["--kind", "cifar10", "--rate", "0.5"]], ids=["n_classes", "cifar10"])
def test_noise_names_with_unnamed_classes(capsys, tmp_path, clean, args):
    out = tmp_path / "n.npz"
    assert_cli_error(capsys, "noise", ["--labels", clean["dir"] / "t_names.csv", *args, "--out", out],
                     out_file=out)


def test_noise_out_is_a_directory(capsys, tmp_path, clean):
    (tmp_path / "n.npz").mkdir()
    assert_cli_error(capsys, "noise", ["--labels", clean["dir"] / "t.npy", "--kind", "pair", "--rate", "0.2",
                                       "--out", tmp_path / "n.npz"], "n.npz")


# --------------------------------------------------------------------------
# demo and bench
# --------------------------------------------------------------------------
def test_demo_runs_fast_and_reports_precision_recall(capsys):
    t0 = time.perf_counter()
    code, out, err = cli(capsys, "demo")
    elapsed = time.perf_counter() - t0
    assert code == 0, err
    assert elapsed < 180  # about 12 s on an idle 2-core machine; a guard against pathological slowdowns only
    assert "scikit-learn digits, 1797 examples, 10 classes" in out
    m = re.search(r"precision (\d\.\d+)\s+recall (\d\.\d+)\s+F1 (\d\.\d+)", out)
    assert m, out
    precision, recall, f1 = map(float, m.groups())
    assert precision > 0.85 and recall > 0.85
    assert f1 == pytest.approx(2 * precision * recall / (precision + recall), abs=2e-3)
    flagged = re.search(r"(\d+) issues flagged; (\d+) of them are real flips", out)
    assert flagged and int(flagged.group(2)) / int(flagged.group(1)) == pytest.approx(precision, abs=1e-3)
    assert re.search(r"Noise: symmetric at rate 0.3 .*: 377 labels changed", out)  # 30% of the 1257 train labels


@pytest.mark.parametrize("args,fragments", [
    (["--kind", "pairr"], ["Did you mean 'pair'?"]),
    (["--method", "bot"], ["Did you mean 'both'?"]),
    (["--noise-rate", "2"], ["rate must be in [0.0, 1.0]"]),
    (["--folds", "1"], ["--folds must be >= 2"]),
])
def test_demo_bad_options(capsys, args, fragments):
    code, out, err = cli(capsys, "demo", *args)
    assert code == 2
    assert err.startswith("noisylab demo: error: ") and "Traceback" not in err
    for f in fragments:
        assert f in err


def test_bench_cl_cifar10_reproduces_paper(capsys, tmp_path, shared_data):
    out = tmp_path / "table.md"
    code, stdout, err = cli(capsys, "bench", "cl-cifar10", "--data", shared_data / "cl-cifar10", "--out", out)
    assert code == 0, err
    assert "10/10 reproduced exactly" in stdout
    assert "MISMATCH" not in stdout
    lines = stdout.splitlines()
    assert any(line.startswith("| method |") for line in lines)
    row = next(line for line in lines if line.startswith("| prune_by_noise_rate"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    header = [c.strip() for c in next(line for line in lines if line.startswith("| method |")).strip("|").split("|")]
    cell = cells[header.index("noise 20% / sparsity 0%")]
    assert cell.startswith("0.650 / 0.935 / ")
    for method in ("prune_by_class", "prune_by_noise_rate", "both", "confident_learning", "predicted_neq_given"):
        assert any(line.startswith(f"| {method} (") for line in lines)
    table = out.read_text()
    assert table.strip() in stdout
    assert "10/10 reproduced exactly" in table


def test_bench_finds_shared_data_by_itself(capsys, tmp_path, monkeypatch, shared_data):
    from noisylab.bench.cl_cifar10 import find_cl_cifar10_dir

    monkeypatch.chdir(tmp_path)
    if find_cl_cifar10_dir() is None:
        pytest.skip("shared/data/cl-cifar10 is not beside the source tree")
    code, stdout, err = cli(capsys, "bench", "cl-cifar10")
    assert code == 0, err
    assert "10/10 reproduced exactly" in stdout


def test_bench_bad_input(capsys, tmp_path):
    assert_cli_error(capsys, "bench", ["cl-cifar10", "--data", tmp_path / "nothere"], "not found")
    assert_cli_error(capsys, "bench", ["cl-cifar10", "--data", tmp_path], "No sparsity*_noise*.npz files")
    np.savez(tmp_path / "sparsity0_noise20.npz", pred_probs=np.full((4, 2), 0.5))
    assert_cli_error(capsys, "bench", ["cl-cifar10", "--data", tmp_path], "lacks arrays",
                     "noisy_labels", "true_labels")
    assert_cli_error(capsys, "bench", ["cl-cifar10", "--data", tmp_path, "--dtype", "float8"],
                     "Unknown dtype 'float8'")


# --------------------------------------------------------------------------
# real processes: exit status and no traceback
# --------------------------------------------------------------------------
def _run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "noisylab", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def test_subprocess_bad_method_exits_2_without_traceback(data):
    r = _run("find-issues", "--labels", _f(data, "labels.npy"), "--pred-probs", _f(data, "pred_probs.npy"),
             "--method", "prune_by_nose_rate")
    assert r.returncode == 2
    assert r.stderr.startswith("noisylab find-issues: error: ")
    assert "Did you mean 'prune_by_noise_rate'?" in r.stderr
    assert "Traceback" not in r.stderr
    assert r.stdout == ""


def test_subprocess_bad_input_exits_2_without_traceback(tmp_path, data):
    np.save(tmp_path / "p.npy", data["P"] * 1.2)
    out = tmp_path / "o.csv"
    r = _run("find-issues", "--labels", _f(data, "labels.npy"), "--pred-probs", tmp_path / "p.npy", "--out", out)
    assert r.returncode == 2
    assert r.stderr.startswith("noisylab find-issues: error: Each row of pred_probs must sum to 1")
    assert "Traceback" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.npy"]
    r = _run("noise", "--labels", tmp_path / "nothere.npy", "--kind", "pair", "--rate", "0.2", "--out", out)
    assert r.returncode == 2
    assert r.stderr.startswith("noisylab noise: error: File not found")
    assert "Traceback" not in r.stderr


def test_subprocess_success(tmp_path, data):
    out = tmp_path / "o.csv"
    r = _run("find-issues", "--labels", _f(data, "labels.npy"), "--pred-probs", _f(data, "pred_probs.npy"),
             "--out", out)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    m = int(nl.find_label_issues(data["y"], data["P"]).sum())
    assert f"Label issues: {m} " in r.stdout
    check_issues_file(out, data["y"], data["P"])


def test_console_script_help():
    exe = shutil.which("noisylab")
    if exe is None:
        pytest.skip("the noisylab console script is not on PATH")
    r = subprocess.run([exe, "bench", "cl-cifar10", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0
    assert "examples:" in r.stdout and r.stderr == ""
