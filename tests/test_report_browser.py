"""The HTML report in a real browser: headless Chromium loads it, every image decodes, it renders.

The report carries a tiny inline script that, on window load, records on ``<body>``
how many ``<img>`` there are and how many decoded (``data-images-total``,
``data-images-decoded``, ``data-images-ok``); Chromium's ``--dump-dom`` shows the DOM
after it ran.  The page's Content-Security-Policy forbids any network access, so a
report that needed the network would show undecoded images here.

Skipped when no Chromium is installed (``/usr/bin/chromium`` or ``chromium`` on PATH;
Debian: ``apt-get install chromium``).  Set ``NOISYLAB_KEEP_SCREENSHOT=1`` to keep the
screenshot in ``tests/artifacts/``.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")
PIL_Image = pytest.importorskip("PIL.Image")

from noisylab import ConfidentLearning
from noisylab.metrics import detection_precision_recall_f1
from noisylab.report import report_from_find_issues


def _chromium():
    for cand in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser"),
                 shutil.which("google-chrome")):
        if cand and Path(cand).is_file() and os.access(cand, os.X_OK):
            return cand
    return None


CHROMIUM = _chromium()
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (/usr/bin/chromium or "
                                                         "chromium on PATH); apt-get install chromium to run this test")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         "--virtual-time-budget=5000"]


def _chrome(tmp_path, *args):
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'chrome-profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture(scope="module")
def report_file(tmp_path_factory):
    """A full report on seeded synthetic digits-like data: every section kind, 7 figures."""
    from sklearn.datasets import load_digits

    d = tmp_path_factory.mktemp("browser")
    rng = np.random.default_rng(0)
    digits = load_digits()
    X, true = digits.images[:300], digits.target[:300]
    y = true.copy()
    flip = rng.random(300) < 0.25
    y[flip] = (y[flip] + rng.integers(1, 10, flip.sum())) % 10
    P = rng.dirichlet(np.ones(10), 300) * 0.75
    P[np.arange(300), true] += 0.25
    cl = ConfidentLearning().fit(y, P)
    names = [f"digit {k}" for k in range(10)]
    names[3] = "<script>alert(1)</script>"
    rep = report_from_find_issues(y, P, cl.issue_mask_, cl.label_quality_, X=X, true_labels=true,
                                  class_names=names, title="Digits, 25% noise", k=16)
    hist = [{"epoch": e, "val_acc": 0.4 + 0.05 * e, "test_acc": 0.45 + 0.045 * e} for e in range(10)]
    hist_ct = [dict(h, test_acc=h["test_acc"] + 0.03, val_acc=h["val_acc"] + 0.02) for h in hist]
    rep.add_training_curves([{"name": "standard", "history": hist}, {"name": "co-teaching", "history": hist_ct}])
    rep.add_examples(rng.random((20, 1, 40)), y[:20], (y[:20] + 1) % 10, cl.label_quality_[:20], names, k=6,
                     title="Sequences")
    rep.add_table("| method | F1 |\n|---|---:|\n| CL | 0.91 |", "Benchmark")
    path = d / "report.html"
    rep.write(path)
    det = detection_precision_recall_f1(cl.issue_mask_, y != true)
    return path, det, len(rep.figures)


def test_every_image_decodes_in_chromium(report_file, tmp_path):
    path, det, n_figs = report_file
    res = _chrome(tmp_path, "--dump-dom", path.resolve().as_uri())
    assert res.returncode == 0, res.stderr[-2000:]
    dom = res.stdout
    body = re.search(r"<body[^>]*>", dom)
    assert body, dom[:500]
    attrs = dict(re.findall(r'(data-images-[a-z]+)="([^"]*)"', body.group(0)))
    assert attrs == {"data-images-total": str(n_figs), "data-images-decoded": str(n_figs), "data-images-ok": "true"}
    assert n_figs == 7
    # the key figures are on the page; the hostile class name stayed text
    assert f"<td class=\"num\">{det['precision']:.4f}</td>" in dom
    assert f"<td class=\"num\">{det['recall']:.4f}</td>" in dom
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom
    assert "Detection against the ground truth" in dom and "Benchmark" in dom


def test_screenshot_renders(report_file, tmp_path):
    path, _, _ = report_file
    shot = tmp_path / "shot.png"
    res = _chrome(tmp_path, f"--screenshot={shot}", "--window-size=1280,2000", path.resolve().as_uri())
    assert res.returncode == 0, res.stderr[-2000:]
    assert shot.is_file() and shot.stat().st_size > 10_000
    with PIL_Image.open(shot) as im:
        assert im.size == (1280, 2000)
        px = np.asarray(im.convert("RGB"))
    assert len(np.unique(px.reshape(-1, 3), axis=0)) > 50  # not a single colour: text, tables, figures
    # the top band is the header, then real content further down (not a blank page)
    assert (px[400:] < 128).any()
    if os.environ.get("NOISYLAB_KEEP_SCREENSHOT"):
        out = Path(__file__).resolve().parent / "artifacts"
        out.mkdir(exist_ok=True)
        shutil.copyfile(shot, out / "report_screenshot.png")
