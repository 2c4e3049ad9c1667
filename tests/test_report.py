"""noisylab.report: the HTML report and its Markdown twin.

Golden test of the Markdown text on a tiny hand-made case whose detection figures
are checked by hand; HTML structure (sections, base64 PNG images that decode, no
network references, escaping, the Content-Security-Policy); example kinds; the
``report`` command end to end; clear errors on bad input.
"""
from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from html.parser import HTMLParser
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")
PIL_Image = pytest.importorskip("PIL.Image")

from noisylab import ConfidentLearning, NoisylabInputError
from noisylab.report import (
    Report,
    detect_kind,
    empirical_noise_matrix,
    load_runs,
    report_from_find_issues,
)
from noisylab.report.cli import main as report_main
from noisylab.report.examples import image_batch, sequence_batch
from noisylab.report.html import LOAD_SCRIPT, markdown_to_html


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
class _Page(HTMLParser):
    """Collects what the tests look at: sections, images, scripts, links, meta, text."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.sections, self.images, self.scripts, self.refs, self.meta, self.h2 = [], [], [], [], [], []
        self.tables = 0
        self._in_script = self._in_h2 = False
        self.text = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section":
            self.sections.append(a.get("id"))
        elif tag == "img":
            self.images.append(a)
        elif tag == "script":
            self._in_script = True
            self.scripts.append("")
            if "src" in a:
                self.refs.append(a["src"])
        elif tag == "meta":
            self.meta.append(a)
        elif tag == "table":
            self.tables += 1
        elif tag == "h2":
            self._in_h2 = True
            self.h2.append("")
        for k in ("src", "href"):
            if k in a and tag != "script":
                self.refs.append(a[k])

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False
        if tag == "h2":
            self._in_h2 = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data
        elif self._in_h2:
            self.h2[-1] += data
        self.text.append(data)


def parse(html: str) -> _Page:
    p = _Page()
    p.feed(html)
    p.close()
    return p


def decoded_pngs(page: _Page):
    out = []
    for img in page.images:
        src = img["src"]
        assert src.startswith("data:image/png;base64,"), src[:40]
        raw = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert raw[:8] == b"\x89PNG\r\n\x1a\n"
        PIL_Image.open(BytesIO(raw)).verify()
        out.append(raw)
    return out


# The tiny hand-made case.  Given labels y, true labels t: examples 0, 1, 2 are
# mislabelled; the flagged set is {0, 1, 3}; label quality q.
Y = np.array([0, 0, 1, 0, 1, 1, 0, 1])
T = np.array([1, 1, 0, 0, 1, 1, 0, 1])
Q = np.array([0.1, 0.2, 0.6, 0.3, 0.7, 0.8, 0.9, 0.95])
FLAGGED = np.isin(np.arange(8), [0, 1, 3])
NAMES = ["cat", "<script>"]
EST = [[0.8, 0.25], [0.2, 0.75]]

# Hand-checked values:
#   noise rate: 3 of 8 wrong = 0.3750.  Flagged: 3 (all given "cat": 3/4 = 75.00%).
#   precision = TP / flagged = 2/3, recall = TP / noisy = 2/3, F1 = 2*2/(3+3) = 2/3.
#   scores 1 - q: noisy {0.9, 0.8, 0.4}, clean {0.7, 0.3, 0.2, 0.1, 0.05}:
#   AUROC = (5 + 5 + 4) / 15 = 0.9333;  ranking N N C N ...: AP = (1/1 + 2/2 + 3/4) / 3 = 0.9167.
#   empirical P(given | true): true cat = {3, 6 given cat; 2 given <script>} -> 2/3, 1/3;
#   true <script> = {0, 1 given cat; 4, 5, 7 given <script>} -> 2/5, 3/5.
#   |EST - true| = 0.1333, 0.15, 0.1333, 0.15: mean 0.1417, max 0.1500.
GOLDEN_MD = r"""# Tiny &lt;b&gt;case&lt;/b&gt;

## Data set

- examples: 8
- classes: 2
- label issues flagged: 3 (37.50%)
- estimated noise rate: 0.2500
- actual noise rate: 0.3750 (3 of 8 labels wrong)

| class | given labels | true labels | wrong given labels | flagged | flagged share |
|---|---|---|---|---|---|
| cat | 4 | 3 | 2 | 3 | 75.00% |
| &lt;script&gt; | 4 | 5 | 1 | 0 | 0.00% |

## Noise matrix

Rows: the given (noisy) label; columns: the true label; each column sums to 1. Off-diagonal cells are the rates at which a true class is given another label.

![Heatmap of the estimated noise matrix P(given label | true label) beside the true noise matrix: 2 x 2, columns = true label, rows = given label, each column sums to 1.](tiny_files/fig01-noise-matrix.png)

*Estimated noise matrix (left) and the true one (right)*

Estimated P(given | true):

| given \ true | cat | &lt;script&gt; |
|---|---|---|
| cat | 0.80 | 0.25 |
| &lt;script&gt; | 0.20 | 0.75 |

True P(given | true):

| given \ true | cat | &lt;script&gt; |
|---|---|---|
| cat | 0.67 | 0.40 |
| &lt;script&gt; | 0.33 | 0.60 |

Mean absolute error of the estimate: 0.1417; largest cell error: 0.1500.

## Label issues

3 of 8 examples (37.50%) are flagged as label issues.

![Bar chart of the number of flagged label issues per given class beside the number of truly mislabelled examples.](tiny_files/fig02-issues-per-class.png)

*Label issues per class (given label)*

![Histogram of the label-quality scores, split into examples whose given label is wrong and those whose label is correct; lower scores are more likely mislabelled.](tiny_files/fig03-label-quality.png)

*Label-quality scores (lower = more likely mislabelled)*

## Detection against the ground truth

Positive class: mislabelled (given label differs from the true label); ranking score: 1 - label quality.

| metric | value | meaning |
|---|---|---|
| precision | 0.6667 | 2 / 3 flagged are mislabelled |
| recall | 0.6667 | 2 / 3 mislabelled are flagged |
| F1 | 0.6667 | harmonic mean of precision and recall |
| AUROC | 0.9333 | ranking of all examples by 1 - label quality |
| average precision | 0.9167 | area under the precision-recall curve |

![Precision-recall curve of ranking examples by 1 - label quality (average precision 0.9167); the flagged set is marked at recall 0.6667, precision 0.6667.](tiny_files/fig04-precision-recall.png)

*Precision-recall curve (positive = mislabelled)*

## Benchmark

| method | F1 |
|:---|---:|
| CL | 0.9 |
| a\|b | `x` |

Some **bold** note.
"""


def tiny_report() -> Report:
    rep = Report("Tiny <b>case</b>")
    rep.add_summary(Y, class_names=NAMES, true_labels=T, is_issue=FLAGGED, estimated_noise_rate=0.25)
    rep.add_noise_matrix(EST, empirical_noise_matrix(Y, T, 2), NAMES)
    rep.add_issue_scores(Y, Q, FLAGGED, T, class_names=NAMES)
    rep.add_table("| method | F1 |\n|:---|---:|\n| CL | 0.9 |\n| a\\|b | `x` |", "Benchmark")
    rep.add_text("Some **bold** note.")
    return rep


@pytest.fixture(scope="module")
def tiny_written(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    rep = tiny_report()
    written = rep.write(d / "tiny.html", d / "tiny.md")
    return rep, d, written


# --------------------------------------------------------------------------
# golden Markdown + HTML structure
# --------------------------------------------------------------------------
def test_markdown_twin_golden(tiny_written):
    _, d, written = tiny_written
    assert (d / "tiny.md").read_text(encoding="utf-8") == GOLDEN_MD
    files = sorted(p.name for p in (d / "tiny_files").iterdir())
    assert files == ["fig01-noise-matrix.png", "fig02-issues-per-class.png", "fig03-label-quality.png",
                     "fig04-precision-recall.png"]
    assert written["figures"] == [d / "tiny_files" / f for f in files]
    for f in files:  # each linked file is the same PNG as the one embedded in the HTML
        PIL_Image.open(d / "tiny_files" / f).verify()
    assert not [p for p in d.rglob("*") if p.name.endswith(".tmp")]  # atomic writes leave no temp file


def test_html_structure_images_and_escaping(tiny_written):
    _, d, _ = tiny_written
    html = (d / "tiny.html").read_text(encoding="utf-8")
    page = parse(html)
    assert page.sections == ["data-set", "noise-matrix", "label-issues", "detection-against-the-ground-truth",
                             "benchmark"]
    assert page.h2 == ["Data set", "Noise matrix", "Label issues", "Detection against the ground truth", "Benchmark"]
    # 4 figures, all base64 PNGs that decode, each with a unique id and alt text, same bytes as the twin's files
    pngs = decoded_pngs(page)
    assert len(pngs) == 4
    ids = [img["id"] for img in page.images]
    assert ids == ["fig01-noise-matrix", "fig02-issues-per-class", "fig03-label-quality", "fig04-precision-recall"]
    assert all(len(img["alt"]) > 40 for img in page.images)
    assert pngs == [(d / "tiny_files" / f"{i}.png").read_bytes() for i in ids]
    # self-contained: no external src/href, only in-page anchors
    assert all(not r.lower().startswith(("http:", "https:", "//")) for r in page.refs)
    assert all(r.startswith(("#", "data:image/png;base64,")) for r in page.refs)
    assert "http://" not in html and "https://" not in html
    # exactly one (inline) script, the report's own; CSP pins it by hash and forbids the network
    assert page.scripts == [LOAD_SCRIPT]
    csp = next(m["content"] for m in page.meta if m.get("http-equiv") == "Content-Security-Policy")
    digest = base64.b64encode(hashlib.sha256(LOAD_SCRIPT.encode()).digest()).decode()
    assert "default-src 'none'" in csp and "img-src data:" in csp and f"'sha256-{digest}'" in csp
    # user strings are escaped: the class name "<script>" and the title's <b> never become tags
    assert html.count("<script") == 1 and "&lt;script&gt;" in html
    assert "<b>case</b>" not in html and "Tiny &lt;b&gt;case&lt;/b&gt;" in html
    # detection figures and the benchmark table in the HTML
    text = " ".join(page.text)
    assert "0.6667" in text and "0.9333" in text and "0.9167" in text
    assert '<td style="text-align:right">0.9</td>' in html and '<td style="text-align:left">a|b</td>' in html
    assert "<code>x</code>" in html and "<strong>bold</strong>" in html
    assert page.tables == 5  # summary, 2 matrices (in <details>), detection, benchmark
    assert 'class="num">75.00%</td>' in html


def test_figures_are_deterministic():
    a, b = tiny_report(), tiny_report()
    assert [f.png for f in a.figures] == [f.png for f in b.figures]
    assert a.to_html() == b.to_html()


def test_markdown_to_html_subset():
    html = markdown_to_html("# Results\n\nIntro with <i>tags</i> & `code`.\n\n| a | b |\n|---|:---:|\n| 1 | x |\n"
                            "- item **one**\n- two")
    assert html == ("<h3>Results</h3>\n<p>Intro with &lt;i&gt;tags&lt;/i&gt; &amp; <code>code</code>.</p>\n"
                    "<table><thead><tr><th>a</th><th style=\"text-align:center\">b</th></tr></thead><tbody>"
                    "<tr><td>1</td><td style=\"text-align:center\">x</td></tr></tbody></table>\n"
                    "<ul><li>item <strong>one</strong></li><li>two</li></ul>")


# --------------------------------------------------------------------------
# examples of every kind
# --------------------------------------------------------------------------
@pytest.mark.parametrize("X, kind", [
    (np.zeros((5, 8, 8)), "image"),                       # grey (n, H, W)
    (np.zeros((5, 1, 8, 8), np.float32), "image"),        # digits as noisylab loads them
    (np.zeros((5, 3, 32, 32), np.float32), "image"),      # CIFAR channels first
    (np.zeros((5, 32, 32, 3), np.uint8), "image"),        # image folder channels last
    (np.zeros((5, 1, 40), np.float32), "sequence"),       # MNIST-1D
    (np.zeros((5, 40, 2)), "sequence"),                   # (n, L, C)
    (np.array(["a", "bb", "c", "d", "e"]), "text"),
    (np.array(["a", "bb", "c", "d", "e"], dtype=object), "text"),
    (np.zeros((5, 4)), "tabular"),
    (np.zeros(5), "tabular"),
])
def test_detect_kind(X, kind):
    assert detect_kind(X) == kind


@pytest.mark.parametrize("X", [np.zeros((5, 2, 2, 2, 2)), np.zeros((5, 7, 7, 7)), np.array([{}, {}], dtype=object)])
def test_detect_kind_rejects(X):
    with pytest.raises(NoisylabInputError):
        detect_kind(X)


def test_image_batch_layouts_and_scaling():
    chw = np.arange(2 * 3 * 2 * 2, dtype=np.uint8).reshape(2, 3, 2, 2)
    v, grey = image_batch(chw)
    assert not grey and v.shape == (2, 2, 2, 3)
    assert v[1, 0, 1, 2] == pytest.approx(chw[1, 2, 0, 1] / 255.0)  # channel moved last, uint8 / 255
    g, grey = image_batch(np.array([[[[0.0, 16.0]]]]))  # (1, 1, 1, 2) outside [0, 1]: min-max scaled
    assert grey and g.shape == (1, 1, 2) and g.tolist() == [[[0.0, 1.0]]]
    unit = np.full((1, 2, 2), 0.25, np.float32)  # already in [0, 1]: unchanged
    assert image_batch(unit)[0].tolist() == [[[0.25, 0.25], [0.25, 0.25]]]
    assert sequence_batch(np.zeros((2, 40, 1))).shape == (2, 1, 40)


def _examples_report(X, **kw):
    rep = Report("Examples")
    labels, suggested = np.array([0, 1, 2, 0, 1]), np.array([1, 2, 0, 2, 0])
    scores = np.array([0.5, 0.1, 0.3, 0.2, 0.9])
    rep.add_examples(X, labels, suggested, scores, class_names=["a", "b", "c|d"], k=3, **kw)
    return rep


@pytest.mark.parametrize("X, n_figs", [
    (np.random.default_rng(0).random((5, 1, 8, 8)), 1),
    (np.random.default_rng(0).integers(0, 255, (5, 32, 32, 3)).astype(np.uint8), 1),
    (np.random.default_rng(0).random((5, 1, 40)), 1),
    (np.array(["t0", "t1 <b>", "t2", "t3", "t4"]), 0),
    (np.arange(15.0).reshape(5, 3), 0),
])
def test_add_examples_top_k_each_kind(X, n_figs):
    rep = _examples_report(X)
    assert len(rep.figures) == n_figs
    md = rep.to_markdown()
    # the 3 lowest scores, most suspicious first: index 1 (b -> c|d), 3 (a -> c|d), 2 (c|d -> a)
    rows = [ln for ln in md.splitlines() if ln.startswith(("| 1 |", "| 2 |", "| 3 |"))]
    cells = [[c.strip(" |") for c in r.split(" | ")[1:4]] for r in rows]
    assert cells == [["1", "b → c\\|d", "0.1000"], ["3", "a → c\\|d", "0.2000"],
                                                  ["2", "c\\|d → a", "0.3000"]]
    if X.dtype.kind == "U":
        assert rows[0].endswith("| t1 &lt;b&gt; |")
        assert '<td class="text">t1 &lt;b&gt;</td>' in rep.to_html()
    if X.ndim == 2:  # feature rows: index 1 is [3, 4, 5]
        assert rows[0].endswith("| 3 | 4 | 5 |") and "| x0 | x1 | x2 |" in md
    for raw in decoded_pngs(parse(rep.to_html())):
        assert len(raw) > 1000


def test_add_examples_restricted_to_issues_and_kind_mismatch():
    rep = Report("E")
    rep.add_examples(np.zeros((4, 8, 8)), [0, 1, 0, 1], [1, 0, 1, 0], [0.1, 0.2, 0.3, 0.4], k=5,
                     is_issue=[False, True, True, False])
    assert "The 2 examples with the lowest label quality among the flagged issues" in rep.to_markdown()
    with pytest.raises(NoisylabInputError, match="does not fit"):
        Report("E").add_examples(np.array(["a", "b"]), [0, 1], [1, 0], [0.1, 0.2], kind="image")


def test_training_curves_table(tmp_path):
    hist_a = [{"epoch": e, "val_acc": v, "test_acc": t} for e, (v, t) in enumerate([(0.5, 0.6), (0.7, 0.65),
                                                                                     (0.6, 0.8)])]
    hist_b = [{"epoch": 0, "val_acc": 0.4, "test_acc": 0.45}, {"epoch": 1, "val_acc": 0.9, "test_acc": 0.7}]
    for name, hist, method in (("r1", hist_a, "standard"), ("r2", hist_b, "coteaching"), ("r3", hist_b, "standard")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "history.json").write_text(json.dumps(hist))
        (tmp_path / name / "result.json").write_text(json.dumps({"method": method}))
    runs = load_runs([tmp_path / "r1", tmp_path / "r2", tmp_path / "r3"])
    assert [r["name"] for r in runs] == ["standard (r1)", "coteaching", "standard (r3)"]
    rep = Report("T").add_training_curves(runs)
    md = rep.to_markdown()
    # selected = first epoch with the best noisy-val accuracy (never the test set)
    assert "| standard (r1) | 3 | 1 | 0.7000 | 0.6500 | 0.8000 | 0.8000 |" in md
    assert "| coteaching | 2 | 1 | 0.9000 | 0.7000 | 0.7000 | 0.7000 |" in md
    assert len(decoded_pngs(parse(rep.to_html()))) == 1
    with pytest.raises(NoisylabInputError, match="history"):
        Report("T").add_training_curves([{"name": "x", "history": []}])
    with pytest.raises(NoisylabInputError, match="no history.json"):
        load_runs([tmp_path])


# --------------------------------------------------------------------------
# report_from_find_issues and the CLI
# --------------------------------------------------------------------------
def _synthetic(n=90, K=3, seed=0):
    rng = np.random.default_rng(seed)
    true = np.repeat(np.arange(K), n // K)
    y = true.copy()
    flip = rng.random(n) < 0.2
    y[flip] = (y[flip] + rng.integers(1, K, flip.sum())) % K
    P = rng.dirichlet(np.ones(K), n) * 0.5
    P[np.arange(n), true] += 0.5
    X = rng.random((n, 1, 8, 8)).astype(np.float32)
    return y, true, P, X


def test_report_from_find_issues_matches_api(tmp_path):
    y, true, P, X = _synthetic()
    cl = ConfidentLearning().fit(y, P)
    rep = report_from_find_issues(y, P, cl.issue_mask_, cl.label_quality_, X=X, true_labels=true,
                                  class_names=["a", "b", "c"])
    md = rep.to_markdown()
    from noisylab.metrics import detection_precision_recall_f1

    det = detection_precision_recall_f1(cl.issue_mask_, y != true)
    assert f"| precision | {det['precision']:.4f} |" in md
    assert f"- estimated noise rate: {cl.noise_rate_:.4f}" in md
    assert f"- label issues flagged: {cl.n_issues_} " in md
    assert len(rep.figures) == 5  # noise matrix, per class, histogram, PR curve, examples
    with pytest.raises(NoisylabInputError, match="pred_probs has 89 rows"):
        report_from_find_issues(y, P[:-1], cl.issue_mask_, cl.label_quality_)


@pytest.fixture
def cli_inputs(tmp_path):
    y, true, P, X = _synthetic()
    np.save(tmp_path / "labels.npy", y)
    np.save(tmp_path / "probs.npy", P)
    np.savez(tmp_path / "noisy.npz", noisy_labels=y, true_labels=true)
    np.save(tmp_path / "X.npy", X)
    run = tmp_path / "run_std"
    run.mkdir()
    (run / "history.json").write_text(json.dumps([{"epoch": e, "val_acc": 0.5 + e / 10, "test_acc": 0.6 + e / 20}
                                                  for e in range(4)]))
    (run / "result.json").write_text(json.dumps({"method": "standard", "best_epoch": 3}))
    (tmp_path / "bench.md").write_text("# CL on CIFAR-10\n\n| noise | F1 |\n|---|---:|\n| 0.2 | 0.91 |\n")
    return tmp_path, y, true, P


def test_cli_end_to_end(cli_inputs, capsys):
    d, y, true, P = cli_inputs
    code = report_main([str(a) for a in ["report", "--labels", d / "labels.npy", "--pred-probs", d / "probs.npy",
                        "--true-labels", d / "noisy.npz", "--data", d / "X.npy", "--runs", d / "run_std",
                        "--table", d / "bench.md", "--classes", "cat,dog,<fish>", "--out", d / "out.html"]])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "Wrote" in out and "out.md" in out
    page = parse((d / "out.html").read_text())
    assert len(decoded_pngs(page)) == 6
    assert page.sections[-3:] == ["inputs", "training-curves", "cl-on-cifar-10"]
    md = (d / "out.md").read_text()
    cl = ConfidentLearning().fit(y, P)
    from noisylab.metrics import detection_precision_recall_f1

    det = detection_precision_recall_f1(cl.issue_mask_, y != true)
    assert f"| recall | {det['recall']:.4f} |" in md
    assert "| standard | 4 | 3 | 0.8000 | 0.7500 | 0.7500 | 0.7500 |" in md
    assert "## CL on CIFAR-10\n\n| noise | F1 |\n|---|---:|\n| 0.2 | 0.91 |" in md
    assert "&lt;fish&gt;" in md and "<fish>" not in (d / "out.html").read_text()
    assert len(list((d / "out_files").glob("*.png"))) == 6


def test_cli_wired_into_noisylab_main(cli_inputs, capsys):
    from noisylab import cli

    if "report" not in cli._parser()._subparsers_by_name:
        pytest.skip("`noisylab report` is not registered in noisylab/cli.py yet")
    d, *_ = cli_inputs
    assert cli.main(["report", "--labels", str(d / "labels.npy"), "--pred-probs", str(d / "probs.npy"),
                     "--out", str(d / "r.html"), "--no-md"]) == 0
    assert (d / "r.html").exists() and not (d / "r.md").exists()


@pytest.mark.parametrize("args, fragment", [
    (["--pred-probs", "probs_short.npy"], "has 90 labels but"),
    (["--pred-probs", "missing.npy"], "File not found"),
    (["--true-labels", "missing.npz"], "File not found"),
    (["--data", "X_short.npy"], "has 89 examples but the labels have 90"),
    (["--runs", "nowhere"], "run folder not found"),
    (["--out", "r.txt"], "must be an .html file"),
    (["--method", "prune_by_nois"], "Did you mean 'prune_by_noise_rate'"),
])
def test_cli_bad_input(cli_inputs, capsys, args, fragment):
    d, _, _, P = cli_inputs
    np.save(d / "probs_short.npy", P[:-1])
    np.save(d / "X_short.npy", np.zeros((89, 4)))
    base = {"--labels": "labels.npy", "--pred-probs": "probs.npy", "--out": "r.html"}
    extra = dict(zip(args[::2], args[1::2]))
    argv = ["report"]
    for k, v in {**base, **extra}.items():
        argv += [k, str(d / v) if k != "--method" else v]
    code = report_main(argv)
    _, err = capsys.readouterr()
    assert code == 2
    assert err.startswith("noisylab report: error: ") and fragment in err and "Traceback" not in err
    assert not (d / "r.html").exists()


def test_api_bad_input():
    rep = Report("x")
    with pytest.raises(NoisylabInputError, match="one per example"):
        rep.add_issue_scores(Y, Q[:-1], FLAGGED)
    with pytest.raises(NoisylabInputError, match="one per example"):
        rep.add_summary(Y, true_labels=T[:5])
    with pytest.raises(NoisylabInputError, match="pass the transpose"):
        rep.add_noise_matrix([[0.8, 0.2], [0.3, 0.7]])
    with pytest.raises(NoisylabInputError, match="2 names but there are 3 classes"):
        rep.add_summary([0, 1, 2], n_classes=3, class_names=["a", "b"])
    with pytest.raises(NoisylabInputError, match="X has 3 examples but labels has 2"):
        rep.add_examples(np.zeros((3, 4)), [0, 1], [1, 0], [0.1, 0.2])
    with pytest.raises(NoisylabInputError, match="pipe table"):
        rep.add_table("no table here")
    with pytest.raises(NoisylabInputError, match="Output folder does not exist"):
        tiny_report().write(Path("/nonexistent-dir/r.html"))


def test_import_is_light_and_missing_matplotlib_is_clear(monkeypatch):
    code = ("import sys, noisylab.report, noisylab.report.cli; "
            "bad = [m for m in ('matplotlib', 'torch', 'PIL') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r'pip install "noisylab\[report\]"'):
        Report("x").add_noise_matrix(np.eye(2))


def test_rewrite_replaces_stale_figures(tmp_path):
    tiny_report().write(tmp_path / "r.html", tmp_path / "r.md")
    assert len(list((tmp_path / "r_files").glob("*.png"))) == 4
    (tmp_path / "r_files" / "mine.png").write_bytes(b"user file")
    short = Report("short").add_noise_matrix(EST)
    written = short.write(tmp_path / "r.html", tmp_path / "r.md")
    assert sorted(p.name for p in (tmp_path / "r_files").iterdir()) == ["fig01-noise-matrix.png", "mine.png"]
    assert written["figures"] == [tmp_path / "r_files" / "fig01-noise-matrix.png"]
    assert len(parse((tmp_path / "r.html").read_text()).images) == 1


def test_names_with_dollar_signs_are_drawn_literally_and_bad_inputs_are_clear():
    pytest.importorskip("matplotlib")
    from noisylab.report.builder import empirical_noise_matrix

    y = np.array([0, 1, 1, 0, 1, 0])
    t = np.array([0, 1, 0, 0, 1, 1])
    q = np.array([.1, .9, .5, .3, .8, .2])
    names = ["x_1^2$$", "a$\\frac{1"]  # matplotlib would parse these as (broken) math
    rep = Report("t")
    rep.add_noise_matrix(empirical_noise_matrix(y, t, 2), None, names)
    rep.add_issue_scores(y, q, q < 0.4, class_names=names, n_classes=2)
    rep.add_training_curves([{"name": names[0], "history": [{"val_acc": .5, "test_acc": .4}]}])
    assert len(rep.figures) == 4  # noise matrix, issues per class, score histogram, training curves
    with pytest.raises(NoisylabInputError, match="feature_names has 1 names but there are 3 features"):
        Report("t").add_examples(np.zeros((4, 3)), [0, 1, 1, 0], [0, 1, 1, 0], [.1, .9, .5, .3], feature_names=["a"])
    with pytest.raises(NoisylabInputError, match="best_epoch must be an int index into history; got 'x'"):
        Report("t").add_training_curves([{"name": "a", "history": [{"val_acc": .5}], "best_epoch": "x"}])
    with pytest.raises(NoisylabInputError, match="best_epoch must be an int .*got 0.7"):
        Report("t").add_training_curves([{"name": "a", "history": [{"val_acc": .5}], "best_epoch": 0.7}])
    with pytest.raises(NoisylabInputError, match="subtitle must be a string or None; got int"):
        Report("x", subtitle=5)
    with pytest.raises(NoisylabInputError, match="must be a numeric K x K matrix"):
        Report("t").add_noise_matrix("abc")
    with pytest.raises(NoisylabInputError, match="length of class_names"):
        Report("t").add_summary([0, 1, 1, 0], class_names=["a"])


def test_markdown_tables_escape_pipes():
    from noisylab.bench import harness

    recs = [{"key": "k1", "spec": {"noise": "sym|0.2", "method": "a|b"}, "result": {"test_acc": 0.5}},
            {"key": "k2", "spec": {"noise": "sym|0.2", "method": "c"}, "result": {"test_acc": 0.7}}]
    lines = harness.results_table(recs).splitlines()
    assert lines[0] == "| noise | a\\|b | c |" and lines[2] == "| sym\\|0.2 | 0.50 | 0.70 |"
    assert {line.replace("\\|", "").count("|") for line in lines} == {4}
