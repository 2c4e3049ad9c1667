"""Fixes from the report-writer audit: outputs vs inputs, Markdown escaping, the HTML/Markdown pair
written as a set, code/bold nesting, duplicate class names, UTF-8 whatever the locale."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from noisylab import NoisylabInputError
from noisylab.report import Report, builder
from noisylab.report._markdown import escape_markdown, sanitize_markdown
from noisylab.report.cli import check_outputs_not_inputs
from noisylab.report.cli import main as report_main
from noisylab.report.html import markdown_to_html

EVIL = ["![i](http://evil.example/t.png)", "[x](javascript:alert(1))", "<img src=x onerror=alert(1)>",
        "`code`", "*em*", "_em_", "a|b"]


def _live_markup(md: str) -> list[str]:
    """Markdown constructs that would become live markup: unescaped ``](``, raw tags, code spans, emphasis."""
    found = []
    for pat in (r"(?<!\\)\]\(", r"(?<!\\)<[A-Za-z/!?]", r"(?<!\\)`", r"(?<![\\*])\*(?!\*)", r"(?<![\\\w])_"):
        found += re.findall(pat, md)
    return found


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(0)
    n, K = 90, 3
    t = rng.integers(0, K, n)
    y = t.copy()
    flip = rng.random(n) < 0.2
    y[flip] = (y[flip] + 1) % K
    P = np.full((n, K), 0.1)
    P[np.arange(n), t] = 0.8
    np.save(tmp_path / "y.npy", y)
    np.save(tmp_path / "P.npy", P)
    return tmp_path, y, P


# ---------------------------------------------------------------- F3: Markdown escaping
def test_escape_markdown_neutralises_markup_and_keeps_ordinary_text():
    for s in ("clean_subset 85.13 ± 0.35 (n=3)", "LSTM 0.999 vs AUM 0.999 (<) and CL 0.997 (≥)", "29.49%", "-",
              "given \\ true", "fraction(s) [0.2, 0.4]: the nominal noise rate"):
        assert escape_markdown(s) == s
    assert escape_markdown("![t](http://e/p.png)") == "![t\\](http://e/p.png)"
    assert escape_markdown("<script>") == "\\<script>"
    assert escape_markdown("`x` *y* _z_ ~~w~~ &amp;") == "\\`x\\` \\*y\\* \\_z\\_ \\~\\~w\\~\\~ \\&amp;"
    assert escape_markdown("x\\|y", table=True) == "x\\\\\\|y"


def test_twin_escapes_class_names_titles_and_texts():
    names = [f"{e} {k}" for k, e in enumerate(EVIL[:3])]
    y = np.array([0, 1, 2] * 10)
    rep = Report("![t](http://evil.example/title.png)", subtitle="[d]: http://evil.example")
    rep.add_summary(y, class_names=names)
    texts = np.asarray([EVIL[k % len(EVIL)] + " text" for k in range(30)], dtype=object)
    rep.add_examples(texts, y, (y + 1) % 3, np.linspace(0, 1, 30), names, k=10)
    md = rep.to_markdown()
    assert _live_markup(md) == []
    assert "http://evil.example/t.png" in md  # the text is kept, as text
    assert md.splitlines()[2].startswith("\\[d]")  # no link reference definition
    html = rep.to_html()
    assert html.count("<script") == 1 and "<img src=x" not in html


def test_add_text_twin_keeps_the_subset_and_escapes_the_rest():
    ordinary = ("### Cost per epoch\n\n| method | median s/epoch | × standard |\n|---|---:|---:|\n"
                "| clean_subset | 0.444 | 1.00 |\n| a\\|b c | nan (n=1) |\n\n`clean_subset` is **90.90 ± 0.61**.\n"
                "- LSTM 0.999 vs AUM 0.999 (<) and CL 0.997 (≥)")
    assert sanitize_markdown(ordinary) == ordinary
    evil = ("| method | acc |\n|---|---|\n| <script>alert(1)</script> | 80.00 (n=1) |\n"
            "| ![t](http://evil.example/p.png) | inf (n=1) |\n\nsee [here](http://evil.example) *x*")
    rep = Report("bench").add_text(evil, title="Results")
    md = rep.to_markdown()
    assert _live_markup(md) == []
    assert "| \\<script>alert(1)\\</script> | 80.00 (n=1) |" in md
    # the HTML side shows the same text and still renders the table
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rep.to_html() and "<table>" in rep.to_html()


def test_report_cli_file_name_with_backtick_stays_text(data, capsys):
    d, y, _ = data
    odd = d / "x`<img src=x onerror=alert(1)>`.npy"
    np.save(odd, y)
    rc = report_main(["report", "--labels", str(odd), "--pred-probs", str(d / "P.npy"), "--out", str(d / "r.html")])
    assert rc == 0
    md = (d / "r.md").read_text(encoding="utf-8")
    line = next(s for s in md.splitlines() if s.startswith("- labels:"))
    assert _live_markup(line) == []
    assert "- pred_probs: `P.npy`" in md  # ordinary names unchanged
    assert "<img src=x" not in (d / "r.html").read_text(encoding="utf-8")


# ---------------------------------------------------------------- F8: code/bold nesting
def test_markdown_to_html_code_binds_tighter_than_bold():
    html = markdown_to_html("| a | b |\n|---|---|\n| **best `cfg** v2` | `**kwargs**` passed |")
    assert "<td>**best <code>cfg** v2</code></td>" in html
    assert "<code>**kwargs**</code> passed" in html
    assert markdown_to_html("**a `b` c** and `d`") == "<p><strong>a <code>b</code> c</strong> and <code>d</code></p>"
    assert markdown_to_html("\\*not bold\\* a\\_b") == "<p>*not bold* a_b</p>"


# ---------------------------------------------------------------- F2: outputs vs inputs
def test_check_outputs_not_inputs_compares_resolved_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("labels.csv").write_text("0\n1\n", encoding="utf-8")
    for out in ("labels.csv", "./labels.csv", str(tmp_path / "labels.csv"), "sub/../labels.csv"):
        (tmp_path / "sub").mkdir(exist_ok=True)
        with pytest.raises(NoisylabInputError, match=r"--out .* is the input file --labels"):
            check_outputs_not_inputs([("--out", out)], [("--labels", "./labels.csv")])
    check_outputs_not_inputs([("--out", "issues.csv"), ("--md", None)], [("--labels", "labels.csv"),
                                                                          ("--classes", "cat,dog")])
    os.link("labels.csv", "hard.csv")
    with pytest.raises(NoisylabInputError, match="--md"):
        check_outputs_not_inputs([("--md", "hard.csv")], [("--labels", "labels.csv")])


@pytest.mark.parametrize("flag", ["--md", "--out"])
def test_report_refuses_an_output_that_is_an_input(data, capsys, monkeypatch, flag):
    d = data[0]
    monkeypatch.chdir(d)
    before = (d / "y.npy").read_bytes()
    out = ["--out", "r.html", "--md", "./y.npy"] if flag == "--md" else ["--out", str(d / "t.html"),
                                                                         "--table", "t.html"]
    if flag == "--out":
        (d / "t.html").write_text("| a |\n|---|\n| 1 |\n", encoding="utf-8")
    rc = report_main(["report", "--labels", "y.npy", "--pred-probs", "P.npy"] + out)
    assert rc == 2
    err = capsys.readouterr().err
    assert "is the input file" in err and "overwrite" in err
    assert (d / "y.npy").read_bytes() == before and not (d / "r.html").exists()


# ---------------------------------------------------------------- F6: the pair written as a set
def _small_report(title):
    y = np.array([0, 1, 2, 0, 1, 2, 0, 0])
    q = np.linspace(0.1, 0.9, 8)
    return Report(title).add_issue_scores(y, q, q < 0.3)


def test_write_failure_leaves_the_old_pair_and_figures(tmp_path, monkeypatch):
    html, md = tmp_path / "r.html", tmp_path / "r.md"
    old = _small_report("OLD report")
    old.add_noise_matrix(np.eye(3))  # one more figure than the new report
    old.write(html, md)
    snapshot = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert len(list((tmp_path / "r_files").iterdir())) == 3

    real, calls = builder._stage, []

    def flaky(path, data):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(path, data)

    monkeypatch.setattr(builder, "_stage", flaky)
    with pytest.raises(KeyboardInterrupt):
        _small_report("NEW report").write(html, md)
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == snapshot  # nothing replaced, nothing deleted, no temporary file left

    monkeypatch.setattr(builder, "_stage", real)
    written = _small_report("NEW report").write(html, md)
    assert "NEW report" in html.read_text(encoding="utf-8") and md.read_text(encoding="utf-8").startswith("# NEW")
    assert sorted(p.name for p in (tmp_path / "r_files").iterdir()) == sorted(p.name for p in written["figures"])
    assert not [p for p in tmp_path.rglob("*.tmp")]


# ---------------------------------------------------------------- F9: duplicate class names
def test_duplicate_class_names_are_refused(data, capsys):
    with pytest.raises(NoisylabInputError, match=r"class_names must be unique; got 'cat' at positions 0 and 1"):
        Report("t").add_summary([0, 1, 2], class_names=["cat", "cat", "dog"])
    with pytest.raises(NoisylabInputError, match="unique"):
        Report("t").add_noise_matrix(np.eye(2), class_names=["a b", "a  b"])
    d = data[0]
    rc = report_main(["report", "--labels", str(d / "y.npy"), "--pred-probs", str(d / "P.npy"),
                      "--classes", "cat,cat,dog", "--out", str(d / "r.html")])
    assert rc == 2 and "--classes must be unique" in capsys.readouterr().err


# ---------------------------------------------------------------- F5: UTF-8 whatever the locale
def test_load_runs_reads_utf8_under_a_non_utf8_locale(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "history.json").write_text(json.dumps([{"epoch": 0, "val_acc": 0.5, "test_acc": 0.4}]), encoding="utf-8")
    (run / "result.json").write_text(json.dumps({"method": "méthode 猫"}, ensure_ascii=False), encoding="utf-8")
    env = dict(os.environ, LC_ALL="C", LANG="C", PYTHONUTF8="0", PYTHONCOERCECLOCALE="0", PYTHONIOENCODING="utf-8")
    code = ("import locale, sys; from noisylab.report import load_runs; "
            "print(locale.getpreferredencoding(False)); print(load_runs([sys.argv[1]])[0]['name'])")
    res = subprocess.run([sys.executable, "-c", code, str(run)], capture_output=True, text=True, encoding="utf-8",
                         env=env, timeout=60, check=False)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[-1] == "méthode 猫"
