"""Out-of-core detection: memory-mapped .npy inputs, bounded memory, threads, progress, the CLI."""
import json
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
from _synth import make_pred_probs

import noisylab
from noisylab import _chunks
from noisylab.cli import main
from noisylab.detect import FILTER_METHODS, RANKING_METHODS

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc for memory figures")


@pytest.fixture(scope="module")
def npy_pair(tmp_path_factory):
    d = tmp_path_factory.mktemp("ooc")
    y, P, _ = make_pred_probs(60_000, 40, seed=7)
    np.save(d / "labels.npy", y)
    np.save(d / "pred_probs.npy", P)
    return d, y, P


@pytest.mark.parametrize("filter_by", FILTER_METHODS)
def test_memmap_masks_equal_in_memory(npy_pair, filter_by):
    d, y, P = npy_pair
    mm = np.load(d / "pred_probs.npy", mmap_mode="r")
    assert isinstance(mm, np.memmap)
    expected = noisylab.find_label_issues(y, P, filter_by=filter_by)
    got = noisylab.find_label_issues(y, mm, filter_by=filter_by)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("method", RANKING_METHODS)
def test_memmap_scores_equal_in_memory(npy_pair, method):
    d, y, P = npy_pair
    mm = np.load(d / "pred_probs.npy", mmap_mode="r")
    np.testing.assert_array_equal(noisylab.get_label_quality_scores(y, mm, method=method),
                                  noisylab.get_label_quality_scores(y, P, method=method))


@pytest.mark.parametrize("n_threads", [1, 2, 3])
@pytest.mark.parametrize("chunk_rows", [257, 4096])
def test_results_do_not_depend_on_blocks_or_threads(npy_pair, monkeypatch, n_threads, chunk_rows):
    d, y, P = npy_pair
    expected = noisylab.find_label_issues(y, P, filter_by="both")
    cj = noisylab.compute_confident_joint(y, P)
    monkeypatch.setenv("NOISYLAB_NUM_THREADS", str(n_threads))
    monkeypatch.setattr(_chunks, "CHUNK_BYTES", chunk_rows * P.shape[1] * P.itemsize)
    monkeypatch.setattr(_chunks, "PARALLEL_MIN_ELEMENTS", 0)
    np.testing.assert_array_equal(noisylab.find_label_issues(y, P, filter_by="both"), expected)
    np.testing.assert_array_equal(noisylab.compute_confident_joint(y, P), cj)


def test_memmap_renormalisation_goes_to_a_temporary_file(tmp_path):
    y, P, _ = make_pred_probs(5000, 12, seed=3, dtype=np.float64)
    P[::7] *= 1.004  # off by 4e-3: renormalised with a warning
    np.save(tmp_path / "p.npy", P)
    mm = np.load(tmp_path / "p.npy", mmap_mode="r")
    with pytest.warns(UserWarning, match="renormalising"):
        checked = noisylab._validation.check_pred_probs(mm)
    assert isinstance(checked, np.memmap)  # not an in-memory copy
    np.testing.assert_allclose(checked.sum(axis=1), 1.0, atol=1e-12)
    with pytest.warns(UserWarning, match="renormalising"):
        expected = noisylab.find_label_issues(y, P)
    with pytest.warns(UserWarning, match="renormalising"):
        got = noisylab.find_label_issues(y, mm)
    np.testing.assert_array_equal(got, expected)


def test_progress_callback_reports_every_pass(npy_pair):
    d, y, P = npy_pair
    seen = []
    with _chunks.progress_callback(lambda desc, done, total: seen.append((desc, done, total))):
        noisylab.find_label_issues(y, np.load(d / "pred_probs.npy", mmap_mode="r"))
    descs = list(dict.fromkeys(s[0] for s in seen))
    # the value checks of pred_probs are fused into pass 1
    assert descs[:2] == ["pass 1/2: predictions", "pass 2/2: confident joint"]
    for desc in descs:
        done = [s[1] for s in seen if s[0] == desc]
        assert done[0] == 0 and done[-1] == y.shape[0] and sorted(done) == done
    # no callback outside the block
    before = len(seen)
    noisylab.find_label_issues(y, P)
    assert len(seen) == before


# /proc/self/status field in MiB, for the measuring subprocesses below
_STATUS = textwrap.dedent("""
    def status(key):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) // 1024
""")

_MEASURE = _STATUS + textwrap.dedent("""
    import json, sys, numpy as np
    import noisylab
    y = np.load(sys.argv[1])
    P = np.load(sys.argv[2], mmap_mode="r")
    noisylab.find_label_issues(y[:1000], np.asarray(P[:1000]))  # import everything first
    base = status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    mask = noisylab.find_label_issues(y, P)
    scores = noisylab.get_label_quality_scores(y, P)
    np.save(sys.argv[3], mask)
    print(json.dumps({"base": base, "peak": status("VmHWM"), "rss": status("VmRSS")}))
""")


def test_memmap_memory_stays_bounded(tmp_path):
    """A 160 MB memory-mapped input is processed with a few MB on top of the per-row vectors."""
    n, K = 400_000, 100
    rng = np.random.default_rng(0)
    mm = np.lib.format.open_memmap(tmp_path / "p.npy", mode="w+", dtype=np.float32, shape=(n, K))
    y = rng.integers(0, K, n)
    for a in range(0, n, 50_000):
        z = rng.standard_normal((min(50_000, n - a), K), dtype=np.float32)
        z[np.arange(z.shape[0]), y[a:a + z.shape[0]]] += 4
        z = np.exp(z - z.max(1, keepdims=True))
        mm[a:a + z.shape[0]] = z / z.sum(1, keepdims=True)
    mm.flush()
    del mm
    flip = rng.random(n) < 0.2
    y[flip] = (y[flip] + 1) % K
    np.save(tmp_path / "y.npy", y)
    script = tmp_path / "measure.py"
    script.write_text(_MEASURE)
    out = subprocess.run([sys.executable, str(script), str(tmp_path / "y.npy"), str(tmp_path / "p.npy"),
                          str(tmp_path / "mask.npy")], capture_output=True, text=True, check=True)
    m = json.loads(out.stdout.strip().splitlines()[-1])
    input_mib = n * K * 4 / 2**20
    extra = m["peak"] - m["base"]
    # per-row vectors (sc, pred, pmax, grouping, recorded margins: ~80 bytes/row at the peak here)
    # plus a few blocks in flight: bounded by the rows, not by n x K (the input is 400 bytes/row)
    assert extra < 40 + 100 * n / 2**20, (m, input_mib)
    expected = noisylab.find_label_issues(y, np.load(tmp_path / "p.npy"))
    np.testing.assert_array_equal(np.load(tmp_path / "mask.npy"), expected)


def test_cli_find_issues_memmap_with_progress(npy_pair, tmp_path, capsys):
    d, y, P = npy_pair
    out = tmp_path / "issues.csv"
    rc = main(["find-issues", "--labels", str(d / "labels.npy"), "--pred-probs", str(d / "pred_probs.npy"),
               "--out", str(out), "--progress", "always"])
    assert rc == 0
    err = capsys.readouterr().err
    assert "pass 1/2: predictions" in err and "pass 2/2: confident joint" in err and "100%" in err
    import csv

    with open(out) as fh:
        rows = list(csv.DictReader(fh))
    flagged = sorted(int(r["index"]) for r in rows if r["is_issue"] == "True")
    assert flagged == np.flatnonzero(noisylab.find_label_issues(y, P)).tolist()
    assert len(rows) == y.shape[0]


def test_cli_progress_never_is_silent(npy_pair, capsys):
    d, _, _ = npy_pair
    assert main(["find-issues", "--labels", str(d / "labels.npy"), "--pred-probs", str(d / "pred_probs.npy"),
                 "--progress", "never"]) == 0
    assert "pass 1/2" not in capsys.readouterr().err


def test_cli_dask_scheduler_needs_npy(tmp_path, capsys):
    y, P, _ = make_pred_probs(200, 4, seed=1)
    np.savez(tmp_path / "p.npz", pred_probs=P)
    np.save(tmp_path / "y.npy", y)
    rc = main(["find-issues", "--labels", str(tmp_path / "y.npy"), "--pred-probs", str(tmp_path / "p.npz"),
               "--dask-scheduler", "tcp://127.0.0.1:1"])
    assert rc == 2
    assert "needs a .npy pred_probs file" in capsys.readouterr().err


def test_default_threads_env(monkeypatch):
    monkeypatch.setenv("NOISYLAB_NUM_THREADS", "3")
    assert _chunks.default_threads() == 3
    monkeypatch.setenv("NOISYLAB_NUM_THREADS", "zero")
    assert 1 <= _chunks.default_threads() <= _chunks.MAX_DEFAULT_THREADS
    monkeypatch.delenv("NOISYLAB_NUM_THREADS")
    assert _chunks.default_threads() == min(len(os.sched_getaffinity(0)), _chunks.MAX_DEFAULT_THREADS)


def test_no_warnings_on_clean_memmap(npy_pair):
    d, y, _ = npy_pair
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        noisylab.find_label_issues(y, np.load(d / "pred_probs.npy", mmap_mode="r"), filter_by="both")


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("quantize", [None, 0.02])
@pytest.mark.parametrize("top", [1, 2])
def test_streaming_redo_pass_equals_gather(tmp_path, monkeypatch, dtype, quantize, top):
    """Few recorded margins leave many cells undecided: the out-of-core pass 3 (per-block top c, then
    merged) selects exactly the rows of the in-memory per-class gather, ties included."""
    from noisylab.detect import _engine

    y, P, _ = make_pred_probs(20_000, 15, seed=11, dtype=dtype, quantize=quantize)
    np.save(tmp_path / "p.npy", P)
    monkeypatch.setattr(_engine, "TOP_MARGINS", top)
    monkeypatch.setattr(_chunks, "CHUNK_BYTES", 1000 * 15 * P.itemsize)  # 20 blocks
    calls = []
    real = _engine._redo_by_pass
    monkeypatch.setattr(_engine, "_redo_by_pass", lambda *a: calls.append(1) or real(*a))
    for filter_by in ("prune_by_noise_rate", "both"):
        expected = noisylab.find_label_issues(y, P, filter_by=filter_by)
        got = noisylab.find_label_issues(y, np.load(tmp_path / "p.npy", mmap_mode="r"), filter_by=filter_by)
        np.testing.assert_array_equal(got, expected)
    assert calls, "the streaming pass was not exercised"


def test_desc_keys_order_signed_floats():
    from noisylab.detect._engine import _cell_order

    rng = np.random.default_rng(0)
    for dtype in (np.float16, np.float32, np.float64):
        val = rng.normal(size=5000).astype(dtype)
        val[:50] = 0.0
        val[50:100] = -0.0
        val[100:200] = val[200:300]  # ties
        cell = rng.integers(0, 7, 5000)
        order = _cell_order(cell, val, 7)
        expected = np.lexsort((np.arange(5000), -val.astype(np.float64), cell))
        np.testing.assert_array_equal(order, expected)


@pytest.mark.parametrize("chunk_bytes", [4000, 1 << 20])
def test_first_bad_value_is_reported_whatever_the_blocks(monkeypatch, chunk_bytes):
    """NaN/negative values: the first one in row-major order is named, by every entry point and block size."""
    y, P, _ = make_pred_probs(30_000, 20, seed=2)
    P[20_000, 3] = -0.1
    P[20_001, 0] = np.nan
    P[25_000, 5] = np.inf
    monkeypatch.setattr(_chunks, "CHUNK_BYTES", chunk_bytes)
    msg = r"negative value -0\.1 at row 20000, column 3\."
    for call in (lambda: noisylab.find_label_issues(y, P),
                 lambda: noisylab.get_label_quality_scores(y, P),
                 lambda: noisylab.get_label_quality_scores(y, P, method="normalized_margin"),
                 lambda: noisylab.ConfidentLearning().fit(y, P)):
        with pytest.raises(noisylab.NoisylabInputError, match=msg):
            call()


def test_copy_on_write_memmap_keeps_the_callers_edits(tmp_path):
    y, P, _ = make_pred_probs(20_000, 10, seed=5)
    np.save(tmp_path / "p.npy", P)
    mm = np.load(tmp_path / "p.npy", mmap_mode="c")
    mm[:] = mm[:, ::-1]  # private edits (rows still sum to 1)
    edited = np.array(mm)
    for filter_by in ("prune_by_noise_rate", "confident_learning"):
        np.testing.assert_array_equal(noisylab.find_label_issues(y, mm, filter_by=filter_by),
                                      noisylab.find_label_issues(y, edited, filter_by=filter_by))
    np.testing.assert_array_equal(np.asarray(mm), edited)  # the pages were not dropped


_RENORM_RSS = _STATUS + textwrap.dedent("""
    import json, sys, warnings, numpy as np
    import noisylab
    P = np.load(sys.argv[1], mmap_mode="r")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = noisylab._validation.check_pred_probs(P)
    print(json.dumps({"rss_file": status("RssFile"), "sum_ok": bool(np.allclose(out[-5:].sum(1), 1, atol=1e-6))}))
""")


def test_renormalised_memmap_copy_does_not_stay_resident(tmp_path):
    """The renormalised copy of a memory-mapped input is a temporary file whose written pages leave the process."""
    n, K = 200_000, 80  # 61 MiB float32
    y, P, _ = make_pred_probs(n, K, seed=1)
    P[::1000] *= np.float32(1.004)  # off by 4e-3: renormalised
    np.save(tmp_path / "p.npy", P)
    del P
    script = tmp_path / "m.py"
    script.write_text(_RENORM_RSS)
    out = subprocess.run([sys.executable, str(script), str(tmp_path / "p.npy")], capture_output=True, text=True,
                         check=True)
    m = json.loads(out.stdout.strip().splitlines()[-1])
    assert m["sum_ok"] and m["rss_file"] < 30, m  # input + copy would be over 120 MiB of mapped pages


def test_progress_reports_never_go_backwards_with_threads(npy_pair, monkeypatch):
    import time

    d, y, P = npy_pair
    monkeypatch.setattr(_chunks, "auto_chunk_rows", lambda n_cols, itemsize: 1000)
    monkeypatch.setenv("NOISYLAB_NUM_THREADS", "4")
    seen = []

    def slow(desc, done, total):
        time.sleep(0.0005)  # a terminal write; reports from threads used to overtake each other
        seen.append((desc, done, total))

    with _chunks.progress_callback(slow):
        noisylab.find_label_issues(y, np.load(d / "pred_probs.npy", mmap_mode="r"), filter_by="confident_learning")
    for desc in dict.fromkeys(s[0] for s in seen):
        done = [s[1] for s in seen if s[0] == desc]
        assert done == sorted(done) and done[-1] == y.shape[0], desc


def test_float16_fortran_adjusted_scores_do_not_depend_on_layout_or_blocks(monkeypatch):
    import cleanlab.rank as cr

    rng = np.random.default_rng(0)
    n, K = 5001, 7
    y = rng.integers(0, K, n)
    L = rng.normal(size=(n, K))
    L[np.arange(n), y] += 2
    P = (np.exp(L) / np.exp(L).sum(1, keepdims=True)).astype(np.float16)
    ref = cr.get_label_quality_scores(y, P, adjust_pred_probs=True)  # C order
    monkeypatch.setattr(_chunks, "auto_chunk_rows", lambda n_cols, itemsize: 1000)  # a one-row last block
    for layout in (P, np.asfortranarray(P)):
        for method in ("self_confidence", "normalized_margin"):
            np.testing.assert_array_equal(
                noisylab.get_label_quality_scores(y, layout, method=method, adjust_pred_probs=True),
                cr.get_label_quality_scores(y, P, method=method, adjust_pred_probs=True))
    assert ref.dtype == np.float16
