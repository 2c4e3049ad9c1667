"""Tests of noisylab.dynamics: AUM margins, data-map / forgetting / loss baselines, the numpy
recording reader, and the threshold-sample rules of AUM (numpy only, no torch)."""
import math
import subprocess
import sys
import warnings

import numpy as np
import pytest

import noisylab.dynamics as dyn
from noisylab._validation import NoisylabInputError
from noisylab.dynamics import (
    aum_flags,
    aum_scores,
    aum_threshold,
    combine_flags,
    confidence,
    dynamics_scores,
    forgetting_events,
    label_probability_sequences,
    margins,
    mean_loss,
    read_dynamics,
    sidecar_path,
    variability,
)

NAN = np.nan


def tiny():
    """2 rows, 3 epochs, 3 outputs (the last is a threshold class); row 0 not visited in epoch 1."""
    L = np.array([
        [[2.0, 1.0, 0.5], [NAN, NAN, NAN], [0.0, 3.0, -1.0]],   # label 0
        [[1.0, 1.0, 4.0], [0.5, 2.5, 1.0], [-2.0, 1.0, 0.0]],   # label 1
    ], dtype=np.float16)
    return L, np.array([0, 1])


def write_recording(path, logits, labels, *, mode="train_forward", epochs_completed=None, version=1, **extra):
    """A recording in the format of noisylab.torch.recorder (written here without torch)."""
    logits = np.asarray(logits)
    n, E, K = logits.shape
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=logits.shape)
    mm[:] = logits
    mm.flush()
    del mm
    meta = {"format_version": np.int64(version), "mode": np.asarray(mode), "n_epochs": np.int64(E), "n_classes": np.int64(K),
                "epochs_completed": np.int64(E if epochs_completed is None else epochs_completed),
                "ids": np.arange(n, dtype=np.int64), "labels": np.asarray(labels, dtype=np.int64)}
    meta.update(extra)
    np.savez(sidecar_path(path), **meta)
    return path


# ------------------------------------------------------------------------------------- import
def test_module_imports_without_torch():
    code = "import sys, noisylab.dynamics; assert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)"
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------------------------ margins
def test_margins_hand_values_include_threshold_class_and_nan():
    L, y = tiny()
    M = margins(L, y)
    assert M.dtype == np.float32 and M.shape == (2, 3)
    # row 0 (label 0): 2-1, NaN, 0-3 ; row 1 (label 1): 1-4 (the extra class wins), 2.5-1, 1-0
    np.testing.assert_array_equal(M, np.array([[1.0, NAN, -3.0], [-3.0, 1.5, 1.0]], dtype=np.float32))


def test_aum_skips_epoch_zero_and_ignores_unvisited_epochs():
    L, y = tiny()
    # default skip_epochs=1: row 0 -> only epoch 2 (epoch 1 unvisited): -3; row 1 -> (1.5 + 1) / 2
    np.testing.assert_allclose(aum_scores(L, y), [-3.0, 1.25])
    np.testing.assert_allclose(aum_scores(L, y, skip_epochs=0), [(1.0 - 3.0) / 2, (-3.0 + 1.5 + 1.0) / 3])
    # epochs_completed=2: epoch 2 not recorded yet; row 1 -> epoch 1 only; row 0 never visited in [1, 2)
    np.testing.assert_allclose(aum_scores(L[1:], y[1:], epochs_completed=2), [1.5])
    with pytest.raises(NoisylabInputError, match=r"1 row\(s\).*first: row 0.*never visited"):
        aum_scores(L, y, epochs_completed=2)
    M = margins(L, y, epochs_completed=2)
    assert np.isnan(M[:, 2]).all() and M[1, 1] == 1.5


def test_aum_is_mean_margin_on_random_data():
    rng = np.random.default_rng(0)
    L = rng.normal(0, 3, size=(40, 6, 5)).astype(np.float16)
    L[rng.random((40, 6)) < 0.2] = np.nan
    L[:, 1] = rng.normal(size=(40, 5))  # every row visited at least once in the window
    y = rng.integers(0, 5, 40)
    z = L.astype(np.float64)
    zy = np.take_along_axis(z, y[:, None, None].repeat(6, 1), 2)[..., 0]
    other = z.copy()
    other[np.arange(40), :, y] = -np.inf
    ref = np.nanmean((zy - other.max(2))[:, 1:], axis=1)
    np.testing.assert_allclose(aum_scores(L, y), ref, rtol=1e-6)


# -------------------------------------------------------------------------------- baselines
def logit_seq(p):
    """K=2 logits [log p/(1-p), 0] so that softmax(...)[0] = p (NaN stays NaN)."""
    p = np.asarray(p, dtype=np.float64)
    return np.stack([np.log(p / (1 - p)), np.zeros_like(p)], axis=-1)


def test_probability_baselines_hand_values():
    L = np.stack([logit_seq([0.8, 0.5, 0.2]), logit_seq([0.9, NAN, 0.6])])  # (2, 3, 2) float64
    y = np.array([0, 0])
    P = label_probability_sequences(L, y)
    assert P.dtype == np.float32
    np.testing.assert_allclose(P, [[0.8, 0.5, 0.2], [0.9, NAN, 0.6]], rtol=1e-6)
    np.testing.assert_allclose(confidence(L, y), [0.5, 0.75], rtol=1e-6)
    np.testing.assert_allclose(variability(L, y), [math.sqrt(0.06), 0.15], rtol=1e-5)
    np.testing.assert_allclose(mean_loss(L, y), [-(math.log(0.8) + math.log(0.5) + math.log(0.2)) / 3,
                                                 -(math.log(0.9) + math.log(0.6)) / 2], rtol=1e-6)
    # other label: p(1) = 1 - p(0)
    np.testing.assert_allclose(confidence(L, np.array([1, 1])), [0.5, 0.25], rtol=1e-6)
    np.testing.assert_allclose(confidence(L, y, skip_epochs=1), [0.35, 0.6], rtol=1e-6)


def test_mean_loss_has_no_underflow():
    L = np.array([[[0.0, 200.0], [0.0, 300.0]]], dtype=np.float32)  # p(0) = e^-200 underflows float32
    np.testing.assert_allclose(mean_loss(L, [0]), [250.0], rtol=1e-6)


def seq_logits(pattern):
    """K=2, label 0: 1 -> correct [1, 0], 0 -> incorrect [0, 1], None -> not visited, 't' -> tie."""
    rows = {1: [1.0, 0.0], 0: [0.0, 1.0], None: [NAN, NAN], "t": [0.5, 0.5]}
    return np.array([rows[c] for c in pattern])


def test_forgetting_events_constructed_sequences():
    patterns = [
        [1, 0, 1, 1, 0, 0, 1, 0],           # forgotten at epochs 1, 4, 7 -> 3
        [1, None, 0, 1, None, None, 1, 1],   # 1 -> (skip) -> 0 counts: 1
        [0, None, 1, None, 1, 1, 1, 1],      # learned, never forgotten: 0
        [0, 0, 0, 0, 0, 0, 0, 0],            # never learned -> W = 8
        ["t", "t", 1, "t", 1, 1, 1, 1],      # ties are incorrect: 1 -> t is a forgetting event: 1
        [0, 1, 0, 1, 0, 1, 0, 1],            # 3
    ]
    L = np.stack([seq_logits(p) for p in patterns])
    y = np.zeros(len(patterns), dtype=int)
    ev = forgetting_events(L, y)
    assert ev.dtype == np.int64
    np.testing.assert_array_equal(ev, [3, 1, 0, 8, 1, 3])
    # the window starts at skip_epochs: row 0 from epoch 2 -> [1,1,0,0,1,0]: 2; row 3 never learned -> 6
    np.testing.assert_array_equal(forgetting_events(L, y, skip_epochs=2), [2, 0, 0, 6, 1, 2])
    # the never-learned value exceeds any possible count (at most W // 2)
    assert forgetting_events(L, y)[3] > max(ev[[0, 1, 2, 4, 5]]) and 8 > 8 // 2


def test_dynamics_scores_directions_on_arrays():
    rng = np.random.default_rng(1)
    L = rng.normal(size=(30, 5, 3)).astype(np.float16)
    y = rng.integers(0, 3, 30)
    np.testing.assert_array_equal(dynamics_scores((L, y)), aum_scores(L, y))
    np.testing.assert_array_equal(dynamics_scores((L, y), "aum", skip_epochs=0), aum_scores(L, y, skip_epochs=0))
    np.testing.assert_array_equal(dynamics_scores((L, y), "confidence"), confidence(L, y))
    np.testing.assert_array_equal(dynamics_scores((L, y), "mean_loss"), -mean_loss(L, y))
    np.testing.assert_array_equal(dynamics_scores((L, y), "forgetting_events"), -forgetting_events(L, y))
    with pytest.raises(NoisylabInputError, match="Unknown method 'confidense'.*Did you mean 'confidence'"):
        dynamics_scores((L, y), "confidense")
    with pytest.raises(NoisylabInputError, match="recording path or a tuple"):
        dynamics_scores(L)


# ------------------------------------------------------------------------------------ blocks
ALL = [margins, label_probability_sequences, aum_scores, confidence, variability, mean_loss, forgetting_events]


def test_block_size_independence_on_memmap(tmp_path, monkeypatch):
    rng = np.random.default_rng(2)
    n, E, K = 1003, 7, 5
    data = rng.normal(0, 2, size=(n, E, K)).astype(np.float16)
    data[rng.random((n, E)) < 0.1] = np.nan
    data[:, 3] = rng.normal(size=(n, K))  # every row visited somewhere in every window
    y = rng.integers(0, K, n)
    path = write_recording(tmp_path / "run.npy", data, y)
    mm, _meta = read_dynamics(path)
    assert isinstance(mm, np.memmap) and mm.dtype == np.float16
    for fn in ALL:
        ref = fn(data.copy(), y)
        for rows in (1, 13, 1000, 5000):
            np.testing.assert_array_equal(fn(mm, y, block_rows=rows), ref, err_msg=f"{fn.__name__} rows={rows}")
    # the default block size splits the file into several blocks when blocks are small
    monkeypatch.setattr(dyn, "_BLOCK_BYTES", 4 * E * K * 64)
    for fn in ALL:
        np.testing.assert_array_equal(fn(mm, y), fn(data, y), err_msg=fn.__name__)
    np.testing.assert_array_equal(dynamics_scores(path), aum_scores(data, y))


def test_inputs_are_not_modified():
    rng = np.random.default_rng(3)
    L = rng.normal(size=(20, 4, 3)).astype(np.float32)
    keep = L.copy()
    y = rng.integers(0, 3, 20)
    for fn in ALL:
        fn(L, y)
    np.testing.assert_array_equal(L, keep)


# ----------------------------------------------------------------------------------- reader
def test_read_dynamics_roundtrip_and_dynamics_scores_uses_sidecar(tmp_path):
    rng = np.random.default_rng(4)
    data = rng.normal(size=(12, 5, 4)).astype(np.float16)
    data[:, 3:] = 0  # not written yet
    y = rng.integers(0, 4, 12)
    true = y.copy()
    true[:3] = (true[:3] + 1) % 4
    path = write_recording(tmp_path / "r.npy", data, y, epochs_completed=3, true_labels=true, is_noisy=true != y)
    _mm, meta = read_dynamics(path)
    assert meta["mode"] == "train_forward" and meta["epochs_completed"] == 3 and meta["n_classes"] == 4
    assert isinstance(meta["epochs_completed"], int) and isinstance(meta["mode"], str)
    np.testing.assert_array_equal(meta["is_noisy"], np.arange(12) < 3)
    np.testing.assert_array_equal(dynamics_scores(path), aum_scores(data[:, :3], y))
    np.testing.assert_array_equal(dynamics_scores(path, "confidence"), confidence(data[:, :3], y))
    ev = write_recording(tmp_path / "ev.npy", data, y, mode="eval_pass")
    with pytest.warns(UserWarning, match="training-forward"):
        dynamics_scores(ev)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dynamics_scores(ev, "confidence")
    empty = write_recording(tmp_path / "e.npy", data, y, epochs_completed=0)
    with pytest.raises(NoisylabInputError, match="no completed epoch"):
        dynamics_scores(empty)


@pytest.mark.parametrize("change, match", [
    ("no_sidecar", "not found"),
    ("version", "unsupported dynamics format version 2"),
    ("dtype", "expected float16 logits of shape"),
    ("shape", r"expected float16 logits of shape \(6, 3, 4\)"),
    ("mode", "unknown recording mode 'eval'"),
    ("labels", r"labels must lie in 0..3; got 0..4"),
    ("completed", r"epochs_completed must be an int in \[0, 3\]; got 4"),
])
def test_read_dynamics_validation(tmp_path, change, match):
    data = np.zeros((6, 3, 4), dtype=np.float16)
    y = np.arange(6) % 4
    path = tmp_path / "x.npy"
    kw = {}
    if change == "version":
        kw["version"] = 2
    if change == "mode":
        kw["mode"] = "eval"
    if change == "labels":
        y = np.arange(6) % 5
    if change == "completed":
        kw["epochs_completed"] = 4
    write_recording(path, data, y, **kw)
    if change == "no_sidecar":
        sidecar_path(path).unlink()
    if change == "dtype":
        np.save(path, data.astype(np.float32))
    if change == "shape":
        np.save(path, np.zeros((6, 2, 4), dtype=np.float16))
    with pytest.raises(NoisylabInputError, match=match):
        read_dynamics(path)


# ------------------------------------------------------------------------------- validation
def test_public_boundary_validation():
    L, y = tiny()
    with pytest.raises(NoisylabInputError, match=r"shape \(n_examples, n_epochs, n_outputs\); got shape \(2, 3\)"):
        aum_scores(L[:, :, 0], y)
    with pytest.raises(NoisylabInputError, match="float array.*int64"):
        margins(np.zeros((2, 3, 3), dtype=np.int64), y)
    with pytest.raises(NoisylabInputError, match="at least 2 outputs"):
        margins(np.zeros((2, 3, 1)), y)
    with pytest.raises(NoisylabInputError, match="class index 3.*only 3 classes.*logits have 3 outputs"):
        aum_scores(L, [0, 3])
    with pytest.raises(NoisylabInputError, match="labels has 3 entries but logits has 2 rows"):
        aum_scores(L, [0, 1, 1])
    with pytest.raises(NoisylabInputError, match="skip_epochs=3 but only 3 epoch"):
        aum_scores(L, y, skip_epochs=3)
    with pytest.raises(NoisylabInputError, match=r"epochs_completed must be an int in \[0, 3\]"):
        confidence(L, y, epochs_completed=5)
    with pytest.raises(NoisylabInputError, match="got a path"):
        aum_scores("run.npy", y)
    bad = L.copy()
    bad[1, 2, 0] = np.inf
    with pytest.raises(NoisylabInputError, match="infinite value .* row 1, epoch 2"):
        mean_loss(bad, y)
    nan_row = L.copy()
    nan_row[1] = np.nan
    for fn in (aum_scores, confidence, variability, mean_loss, forgetting_events):
        with pytest.raises(NoisylabInputError, match=r"first: row 1\).*never visited"):
            fn(nan_row, y)
    assert np.isnan(margins(nan_row, y)[1]).all()  # matrices keep NaN rows
    with pytest.raises(NoisylabInputError, match=r"percentile must be a real number in \(0, 100\]; got 0"):
        aum_threshold([1.0, 2.0], percentile=0)
    with pytest.raises(NoisylabInputError, match="percentile"):
        aum_flags([1.0, 2.0], np.array([True, False]), percentile=101)
    with pytest.raises(NoisylabInputError, match="non-empty array of finite AUMs"):
        aum_threshold([1.0, np.nan])
    with pytest.raises(NoisylabInputError, match="boolean array of the shape of aum"):
        aum_flags([1.0, 2.0], [1, 0])
    with pytest.raises(NoisylabInputError, match="run 0 has no threshold sample"):
        aum_flags([1.0, 2.0], np.array([False, False]))


# ------------------------------------------------------------------------- threshold rule
def code_rule(aum, t, p=99):
    """The AUM code: mean over threshold samples of (AUM_i < AUM_thr_j) > 1 - p/100 (written naively)."""
    return np.array([np.mean(np.asarray(t) > a) > (100 - p) / 100 + 1e-12 for a in aum])


def test_threshold_rule_hand_example_and_tie():
    t = np.arange(100.0)  # threshold AUMs 0..99
    assert aum_threshold(t) == 98.0  # floor(1% of 100) = 1 may be larger: the 99th smallest
    a = np.array([97.5, 98.0, 98.005, 99.0, -5.0])
    thr = np.array([False] * 5 + [True] * 100)
    flags = aum_flags(np.concatenate([a, t]), thr)
    np.testing.assert_array_equal(flags[:5], [True, False, False, False, True])
    np.testing.assert_array_equal(flags[:5], code_rule(a, t))
    assert not flags[5:].any()  # threshold samples are never flagged
    # the paper's "AUM < 99th percentile" with numpy's default linear interpolation (alpha = 98.01)
    # disagrees with the code only at the tie AUM = 98 (a threshold value) and inside the gap (98, 98.01)
    lin = a < np.percentile(t, 99)
    np.testing.assert_array_equal(lin, [True, True, True, False, True])


@pytest.mark.parametrize("p", [99, 95, 90, 99.5, 100])
def test_threshold_rule_agrees_with_order_statistic_and_code(p):
    rng = np.random.default_rng(int(p * 10))
    for n_thr, ties in [(137, False), (100, False), (40, True), (7, True)]:
        t = rng.normal(size=n_thr)
        if ties:
            t = np.round(t, 1)  # many equal threshold AUMs
        alpha = aum_threshold(t, p)
        assert alpha == np.percentile(t, p, method="inverted_cdf")
        a = np.concatenate([rng.normal(size=300), t, [alpha, np.nextafter(alpha, -np.inf)]])
        a = np.round(a, 1) if ties else a
        thr = np.zeros(len(a) + n_thr, dtype=bool)
        thr[len(a):] = True
        flags = aum_flags(np.concatenate([a, t]), thr, percentile=p)[:len(a)]
        np.testing.assert_array_equal(flags, code_rule(a, t, p))
        np.testing.assert_array_equal(flags, a < alpha)  # identical, ties included
        lin = np.percentile(t, p)  # paper wording with linear interpolation: differs only between the two
        lo, hi = min(lin, alpha), max(lin, alpha)
        differ = flags != (a < lin)
        assert np.all((a[differ] >= lo) & (a[differ] < hi))


def test_combine_flags_truth_table():
    # columns: (flag run 0, threshold run 0, flag run 1, threshold run 1) -> final
    table = [
        ((True, False, True, False), True),    # flagged in both regular runs
        ((True, False, False, False), False),  # flagged in only one of two regular runs
        ((False, False, True, False), False),
        ((False, False, False, False), False),
        ((False, True, True, False), True),    # threshold in run 0, flagged in its only regular run
        ((False, True, False, False), False),
        ((True, False, False, True), True),
        ((False, False, False, True), False),
        ((False, True, False, True), False),   # never regular: no evidence
    ]
    f = np.array([[r[0][0] for r in table], [r[0][2] for r in table]])
    t = np.array([[r[0][1] for r in table], [r[0][3] for r in table]])
    np.testing.assert_array_equal(combine_flags(f, t), [r[1] for r in table])
    with pytest.raises(NoisylabInputError, match="boolean arrays of the same shape"):
        combine_flags(f, t[:1])


def test_aum_flags_two_runs_combines_per_run_code_rule():
    rng = np.random.default_rng(5)
    n = 400
    aum = rng.normal(size=(2, n))
    thr = np.zeros((2, n), dtype=bool)
    perm = rng.permutation(n)
    thr[0, perm[:100]] = True
    thr[1, perm[100:200]] = True
    aum[thr] -= 1.0  # threshold samples lower, as in training
    per_run = [~thr[r] & code_rule(aum[r], aum[r, thr[r]]) for r in range(2)]
    expected = (per_run[0] | thr[0]) & (per_run[1] | thr[1])
    got = aum_flags(aum, thr)
    np.testing.assert_array_equal(got, expected)
    assert 0 < got.sum() < n and not np.any(got & (thr[0] & thr[1]))


def test_damaged_recordings_are_clear_errors(tmp_path):
    base = dict(format_version=1, mode="train_forward", n_epochs=3, n_classes=3, epochs_completed=2,
                ids=np.arange(4), labels=np.array([0, 1, 2, 0]))
    p = tmp_path / "r.npy"
    side = tmp_path / "r.meta.npz"
    p.write_bytes(b"garbage bytes here")
    np.savez(side, **base)
    with pytest.raises(NoisylabInputError, match=r"r\.npy is not a readable \.npy dynamics array") as exc:
        dyn.read_dynamics(p)
    assert "unsafely" not in str(exc.value)
    np.save(p, np.zeros((4, 3, 3), np.float16))
    side.write_bytes(b"not a zip")
    with pytest.raises(NoisylabInputError, match="not a readable recording sidecar"):
        dyn.read_dynamics(p)
    np.savez(side, **{**base, "ids": np.array([{"a": 1}] * 4, dtype=object)})
    with pytest.raises(NoisylabInputError, match="not a readable recording sidecar"):
        dyn.read_dynamics(p)
    for field, value in (("format_version", np.array([1, 1])), ("mode", np.array(["a", "b"]))):
        np.savez(side, **{**base, field: value})
        with pytest.raises(NoisylabInputError, match=f"field {field} must be a single value"):
            dyn.read_dynamics(p)
    np.savez(side, **{**base, "n_epochs": "3"})
    with pytest.raises(NoisylabInputError, match="n_epochs must be a positive int; got '3'"):
        dyn.read_dynamics(p)
    np.savez(side, **base)
    assert dyn.read_dynamics(p)[0].shape == (4, 3, 3)
