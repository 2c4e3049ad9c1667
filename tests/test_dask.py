"""Dask arrays as ``pred_probs``: identical results to the in-memory path, on a cluster and without one."""
import itertools
import re
import warnings

import numpy as np
import pytest
from _synth import make_pred_probs

import noisylab as nl
import noisylab.detect._engine as engine
from noisylab._chunks import CHUNK_ROWS, Chunked, progress_callback
from noisylab._validation import NoisylabInputError, check_pred_probs
from noisylab.detect._dask import (
    DaskChunked,
    _active_client,
    check_dask_pred_probs,
    dask_array_from_npy,
)

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

FILTERS = nl.FILTER_METHODS
CHUNK = 1777  # uneven row blocks


@pytest.fixture(scope="module")
def client():
    with warnings.catch_warnings():  # the scheduler's HTTP server moves to a free port if 8787 is taken
        warnings.filterwarnings("ignore", message="Port .* is already in use", category=UserWarning)
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=None)
    cl = distributed.Client(cluster)
    try:
        yield cl
    finally:
        cl.close()
        cluster.close()


_CACHE = {}


def data(n, K, dtype, seed=0):
    key = (n, K, np.dtype(dtype).name, seed)
    if key not in _CACHE:
        y, P, _ = make_pred_probs(n, K, dtype=dtype, seed=seed)
        _CACHE[key] = (y, P)
    return _CACHE[key]


def as_dask(P, rows=CHUNK, cols=-1):
    return da.from_array(P, chunks=(rows, cols))


def assert_identical(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a, b)


def raised(fn, *args, **kwargs):
    """The message of the NoisylabInputError raised by ``fn``."""
    with pytest.raises(NoisylabInputError) as info:
        fn(*args, **kwargs)
    return str(info.value)


# --------------------------------------------------------------------------- no client (runs first)
@pytest.mark.parametrize("scheduler", ["threads", "sync"])
def test_default_scheduler_without_client(scheduler):
    y, P = data(20000, 10, np.float32)
    D = as_dask(P)
    with dask.config.set(scheduler=scheduler):
        assert _active_client() is None
        for fb in ("prune_by_noise_rate", "confident_learning", "low_normalized_margin"):
            assert_identical(nl.find_label_issues(y, D, filter_by=fb), nl.find_label_issues(y, P, filter_by=fb))
        assert_identical(nl.get_label_quality_scores(y, D, method="normalized_margin"),
                         nl.get_label_quality_scores(y, P, method="normalized_margin"))
        assert_identical(nl.compute_confident_joint(y, D), nl.compute_confident_joint(y, P))
        seen = []
        with progress_callback(lambda desc, done, total: seen.append((desc, done, total))):
            nl.get_confident_thresholds(y, D)
        assert ("checking pred_probs", 20000, 20000) in seen


# --------------------------------------------------------------------------- distributed
def test_client_is_used(client):
    assert _active_client() is client
    with dask.config.set(scheduler="threads"):
        assert _active_client() is None


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
@pytest.mark.parametrize("n,K", [(20000, 10), (6000, 60)])
def test_all_filters_identical(client, n, K, dtype):
    y, P = data(n, K, dtype)
    D = as_dask(P)
    for fb in FILTERS:
        expected = nl.find_label_issues(y, P, filter_by=fb)
        assert expected.sum() > 0.05 * n
        assert_identical(nl.find_label_issues(y, D, filter_by=fb), expected)


def test_filter_options_identical(client):
    y, P = data(20000, 10, np.float32)
    D = as_dask(P, cols=4)  # column-chunked input: rechunked
    for rank_by in nl.RANKING_METHODS:
        assert_identical(nl.find_label_issues(y, D, return_indices_ranked_by=rank_by),
                         nl.find_label_issues(y, P, return_indices_ranked_by=rank_by))
    assert_identical(
        nl.find_label_issues(y, D, return_indices_ranked_by="normalized_margin",
                             rank_by_kwargs={"adjust_pred_probs": True}),
        nl.find_label_issues(y, P, return_indices_ranked_by="normalized_margin",
                             rank_by_kwargs={"adjust_pred_probs": True}))
    ntr = np.arange(10) * 40
    for fb in ("prune_by_noise_rate", "prune_by_class", "both"):
        assert_identical(nl.find_label_issues(y, D, filter_by=fb, num_to_remove_per_class=ntr),
                         nl.find_label_issues(y, P, filter_by=fb, num_to_remove_per_class=ntr))
        assert_identical(nl.find_label_issues(y, D, filter_by=fb, frac_noise=0.5, min_examples_per_class=5),
                         nl.find_label_issues(y, P, filter_by=fb, frac_noise=0.5, min_examples_per_class=5))


def test_npy_file_identical(client, tmp_path):
    y, P = data(20000, 10, np.float32)
    path = tmp_path / "pred_probs.npy"
    np.save(path, P)
    D = dask_array_from_npy(path, rows_per_block=CHUNK)
    assert D.shape == P.shape and D.dtype == P.dtype and D.chunks[0][0] == CHUNK
    assert_identical(D.compute(), P)
    for fb in FILTERS:
        assert_identical(nl.find_label_issues(y, D, filter_by=fb), nl.find_label_issues(y, P, filter_by=fb))
    # a float16 file too, default blocks (one block)
    y16, P16 = data(6000, 60, np.float16)
    np.save(tmp_path / "p16.npy", P16)
    D16 = dask_array_from_npy(str(tmp_path / "p16.npy"))
    assert_identical(nl.find_label_issues(y16, D16), nl.find_label_issues(y16, P16))


def test_dask_array_from_npy_errors(tmp_path):
    with pytest.raises(NoisylabInputError, match="No such .npy file"):
        dask_array_from_npy(tmp_path / "missing.npy")
    np.save(tmp_path / "vec.npy", np.ones(5))
    with pytest.raises(NoisylabInputError, match=r"must hold a 2-D array \(n, K\); got shape \(5,\)"):
        dask_array_from_npy(tmp_path / "vec.npy")
    np.savez(tmp_path / "arch.npz", p=np.ones((3, 2)))
    with pytest.raises(NoisylabInputError, match="not a .npy array"):
        dask_array_from_npy(tmp_path / "arch.npz")
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    with pytest.raises(NoisylabInputError, match="not a readable .npy array"):
        dask_array_from_npy(tmp_path / "junk.npy")
    np.save(tmp_path / "ok.npy", np.ones((3, 2)))
    with pytest.raises(NoisylabInputError, match="rows_per_block"):
        dask_array_from_npy(tmp_path / "ok.npy", rows_per_block=0)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_scores_identical(client, dtype):
    y, P = data(20000, 10, dtype)
    D = as_dask(P)
    for method in nl.RANKING_METHODS:
        assert_identical(nl.get_label_quality_scores(y, D, method=method),
                         nl.get_label_quality_scores(y, P, method=method))
    for method in ("self_confidence", "normalized_margin"):
        assert_identical(nl.get_label_quality_scores(y, D, method=method, adjust_pred_probs=True),
                         nl.get_label_quality_scores(y, P, method=method, adjust_pred_probs=True))
    msg = raised(nl.get_label_quality_scores, y, P, method="confidence_weighted_entropy", adjust_pred_probs=True)
    assert raised(nl.get_label_quality_scores, y, D, method="confidence_weighted_entropy",
                  adjust_pred_probs=True) == msg
    assert_identical(nl.detect.get_self_confidence_for_each_label(y, D),
                     nl.detect.get_self_confidence_for_each_label(y, P))
    mask = nl.find_label_issues(y, P)
    assert_identical(nl.detect.order_label_issues(mask, y, D, rank_by="normalized_margin"),
                     nl.detect.order_label_issues(mask, y, P, rank_by="normalized_margin"))


def test_counts_identical(client):
    y, P = data(6000, 60, np.float32)
    D = as_dask(P)
    assert_identical(nl.get_confident_thresholds(y, D), nl.get_confident_thresholds(y, P))
    for calibrate in (True, False):
        assert_identical(nl.compute_confident_joint(y, D, calibrate=calibrate),
                         nl.compute_confident_joint(y, P, calibrate=calibrate))
    cj_d, off_d = nl.compute_confident_joint(y, D, return_indices_of_off_diagonals=True)
    cj_p, off_p = nl.compute_confident_joint(y, P, return_indices_of_off_diagonals=True)
    assert_identical(cj_d, cj_p)
    assert_identical(off_d, off_p)
    t = nl.get_confident_thresholds(y, P) * 0.9
    assert_identical(nl.compute_confident_joint(y, D, thresholds=t), nl.compute_confident_joint(y, P, thresholds=t))
    assert_identical(nl.estimate_joint(y, D), nl.estimate_joint(y, P))
    for a, b in zip(nl.detect.estimate_latent(nl.compute_confident_joint(y, D), y, converge_latent_estimates=True),
                    nl.detect.estimate_latent(cj_p, y, converge_latent_estimates=True)):
        assert_identical(a, b)
    for a, b in zip(nl.detect.estimate_py_and_noise_matrices_from_probabilities(y, D),
                    nl.detect.estimate_py_and_noise_matrices_from_probabilities(y, P)):
        assert_identical(a, b)
    for method in ("off_diagonal", "off_diagonal_calibrated"):
        expected = nl.num_label_issues(y, P, estimation_method=method)
        assert expected > 0
        assert nl.num_label_issues(y, D, estimation_method=method) == expected
    assert nl.num_label_issues(da.from_array(y, chunks=1000), D) == nl.num_label_issues(y, P)  # dask labels
    assert nl.num_label_issues(y, D, confident_joint=cj_p, estimation_method="off_diagonal_custom") == \
        nl.num_label_issues(y, P, confident_joint=cj_p, estimation_method="off_diagonal_custom")


def test_estimator_identical(client):
    y, P = data(20000, 10, np.float16)
    D = as_dask(P)
    for fb, rank_by in (("prune_by_noise_rate", "self_confidence"), ("both", "normalized_margin")):
        a = nl.ConfidentLearning(filter_by=fb, rank_by=rank_by).fit(y, pred_probs=D)
        b = nl.ConfidentLearning(filter_by=fb, rank_by=rank_by).fit(y, pred_probs=P)
        for attr in ("thresholds_", "confident_joint_", "joint_", "py_", "noise_matrix_", "inverse_noise_matrix_",
                     "label_quality_", "issue_mask_", "ranked_issues_", "suggested_labels_"):
            assert_identical(getattr(a, attr), getattr(b, attr))
        assert a.noise_rate_ == b.noise_rate_ and a.n_issues_ == b.n_issues_ > 0


def test_prune_by_noise_rate_undecided_cells(client, monkeypatch):
    """With one recorded margin per row most cells cannot be decided from pass 1: they are computed again
    (a streaming pass over the Dask blocks, a gather in memory) and the masks still agree."""
    monkeypatch.setattr(engine, "TOP_MARGINS", 1)
    calls = {"_redo_by_pass": [], "_redo_by_gather": []}
    for name in calls:
        original = getattr(engine, name)

        def spy(y, src, redo, *args, _name=name, _original=original):
            calls[_name].append((src.kind, redo.size))
            return _original(y, src, redo, *args)

        monkeypatch.setattr(engine, name, spy)
    for n, K, dtype in ((20000, 10, np.float32), (6000, 60, np.float16)):
        y, P = data(n, K, dtype)
        D = as_dask(P)
        for fb in ("prune_by_noise_rate", "both"):
            assert_identical(nl.find_label_issues(y, D, filter_by=fb), nl.find_label_issues(y, P, filter_by=fb))
        ntr = np.full(K, 30)
        assert_identical(nl.find_label_issues(y, D, num_to_remove_per_class=ntr),
                         nl.find_label_issues(y, P, num_to_remove_per_class=ntr))
    # the same undecided cells on both paths, in most of the six calls
    assert len(calls["_redo_by_pass"]) >= 4 and {k for k, _ in calls["_redo_by_pass"]} == {"dask"}
    assert {k for k, _ in calls["_redo_by_gather"]} == {"numpy"}
    assert [m for _, m in calls["_redo_by_pass"]] == [m for _, m in calls["_redo_by_gather"]]


def test_runner_map_and_gather_many(client):
    _, P = data(20000, 10, np.float32)
    D = DaskChunked(as_dask(P, rows=5000))
    assert (D.kind, D.shape, D.dtype, D.is_memmap) == ("dask", P.shape, P.dtype, False)
    v = np.arange(P.shape[0])

    def fn(start, block, vv):
        return start, block.shape[0], float(block.sum(dtype=np.float64)), int(vv.sum())

    # Dask blocks of 8192 rows, sub-blocks of CHUNK_ROWS = 4096 rows: the same blocks as Chunked's
    D = DaskChunked(as_dask(P, rows=2 * CHUNK_ROWS), chunk_rows=CHUNK_ROWS)
    expected = Chunked(P, chunk_rows=CHUNK_ROWS).map(fn, v, offset=7)
    assert len(expected) == 5
    assert D.map(fn, v, offset=7) == expected
    rng = np.random.default_rng(1)
    rows = np.sort(rng.choice(P.shape[0], 3000, replace=False))
    requests = [(rows, np.array([3, 1, 7])), (rows[:10], np.array([0])), (rows[:0], np.array([2, 5]))]
    for got, (r, c) in zip(D.gather_many(requests), requests):
        assert_identical(got, P[np.ix_(r, c)])


def test_unknown_chunk_sizes_and_int_dtype(client):
    y, P = data(6000, 60, np.float32)
    D = as_dask(P)
    D = D[D[:, 0] >= 0]  # unknown row chunks
    assert np.isnan(D.shape[0])
    assert_identical(nl.find_label_issues(y, D), nl.find_label_issues(y, P))
    onehot = np.eye(3, dtype=np.int64)[np.arange(300) % 3]
    onehot[:5] = np.roll(onehot[:5], 1, axis=1)
    y3 = np.arange(300) % 3
    assert_identical(nl.get_label_quality_scores(y3, as_dask(onehot, rows=77)),
                     nl.get_label_quality_scores(y3, onehot))


# --------------------------------------------------------------------------- validation
def _bad_inputs():
    """Invalid copies of one input; ``w`` is the block size of the in-memory validation."""
    w = Chunked(np.empty((0, 60), dtype=np.float32)).chunk_rows
    y, P = data(w + 2000, 60, np.float32)

    def bad(values, where):
        Q = P.copy()
        for idx, v in values.items():
            Q[idx] = v
        return Q, where

    cases = {
        "nan": bad({(w + 5, 3): np.nan}, (w + 5, 3)),
        "inf": bad({(w + 1500, 59): np.inf}, (w + 1500, 59)),
        "negative": bad({(1000, 2): -0.25}, (1000, 2)),
        # the first bad value in row-major order is reported, however the rows are blocked
        "negative_then_nan_same_block": bad({(w + 10, 4): -0.1, (w + 900, 1): np.nan}, (w + 10, 4)),
        # a negative value in an earlier block than the NaN: the negative value is reported
        "negative_then_nan_other_block": bad({(100, 4): -0.5, (w + 900, 1): np.nan}, (100, 4)),
        "row_sums": bad({3000: P[3000] * 1.2, w + 1000: P[w + 1000] * 0.5}, (w + 1000,)),
    }
    return y, cases


@pytest.mark.parametrize("case", ["nan", "inf", "negative", "negative_then_nan_same_block",
                                  "negative_then_nan_other_block", "row_sums"])
def test_invalid_values_same_message(client, case):
    y, cases = _bad_inputs()
    Q, where = cases[case]
    expected = raised(nl.find_label_issues, y, Q)
    got = raised(nl.find_label_issues, y, as_dask(Q))
    assert got == expected
    at = f"at row {where[0]}, column {where[-1]}\\." if len(where) == 2 else ""
    pattern = {
        "nan": r"finite probabilities; got nan " + at,
        "inf": r"finite probabilities; got inf " + at,
        "negative": r"negative value -0\.25 " + at,
        "negative_then_nan_same_block": r"negative value -0\.1 " + at,
        "negative_then_nan_other_block": r"negative value -0\.5 " + at,
        "row_sums": rf"row {where[0]} sums to 0\.(5|49999\d) .*not logits",
    }[case]
    with pytest.raises(NoisylabInputError, match=pattern):
        nl.get_label_quality_scores(y, as_dask(Q))


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_slightly_off_rows_warn_and_renormalise(client, dtype):
    y, P = data(20000, 10, dtype)
    Q = P.copy()
    Q[[10, 4000, 15000]] = (Q[[10, 4000, 15000]].astype(np.float64) * 1.005).astype(dtype)
    if dtype == np.float16:
        Q[777] = (Q[777].astype(np.float64) * 1.015).astype(dtype)
    with pytest.warns(UserWarning) as expected_w:
        expected = nl.get_label_quality_scores(y, Q, method="normalized_margin")
    with pytest.warns(UserWarning, match=r"Rows of pred_probs do not sum to 1 \(worst: row \d+ sums to") as got_w:
        got = nl.get_label_quality_scores(y, as_dask(Q), method="normalized_margin")
    assert [str(w.message) for w in got_w] == [str(w.message) for w in expected_w]
    # both warnings are attributed to the caller's line (here), not to a line inside noisylab
    assert got_w[0].filename == expected_w[0].filename == __file__
    assert_identical(got, expected)
    with pytest.warns(UserWarning):
        assert_identical(nl.find_label_issues(y, as_dask(Q)), nl.find_label_issues(y, Q))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_dask_pred_probs(as_dask(P))  # within rounding: no warning


def test_shape_and_dtype_errors_same_message():
    y = np.arange(10) % 2
    cases = [
        np.ones(10) / 2,                      # 1-D
        np.ones((10, 1)),                     # one column
        np.ones((0, 3)) / 3,                  # empty
        np.ones((10, 2), dtype=bool),         # booleans
        np.full((10, 2), 0.5).astype("m8[s]"),
    ]
    for Q in cases:
        expected = raised(check_pred_probs, Q)
        got = raised(check_pred_probs, da.from_array(Q))
        assert got == expected, (got, expected)
    with pytest.raises(NoisylabInputError, match=re.escape("pred_probs must have at least 2 columns")):
        nl.find_label_issues(y, da.from_array(np.ones((10, 1))))


# --------------------------------------------------------------------------- progress
def test_progress_reaches_total(client):
    y, P = data(20000, 10, np.float32)
    D = as_dask(P)
    seen = []
    with progress_callback(lambda desc, done, total: seen.append((desc, done, total))):
        nl.find_label_issues(y, D)
    descs = list(dict.fromkeys(d for d, _, _ in seen))
    assert "checking pred_probs" in descs and "pass 1/2: predictions" in descs
    for desc in descs:
        done = [d for name, d, t in seen if name == desc]
        totals = {t for name, _, t in seen if name == desc}
        assert totals == {20000}
        assert done[0] == 0 and done[-1] == 20000
        assert all(a < b for a, b in itertools.pairwise(done))
        assert len(done) == 1 + -(-20000 // CHUNK)  # start + one report per block


def test_io_read_pred_probs_dask_and_cli_on_a_cluster(client, tmp_path, capsys):
    """The public reader, and `noisylab find-issues --dask-scheduler` on the LocalCluster: same rows."""
    from noisylab.cli import main
    from noisylab.io import read_pred_probs_dask

    y, P, _ = make_pred_probs(9000, 12, seed=5)
    np.save(tmp_path / "p.npy", P)
    np.save(tmp_path / "y.npy", y)
    D = read_pred_probs_dask(tmp_path / "p.npy", rows_per_block=2500)
    assert D.chunks[0] == (2500, 2500, 2500, 1500)
    expected = nl.find_label_issues(y, P)
    np.testing.assert_array_equal(nl.find_label_issues(y, D), expected)
    out = tmp_path / "issues.csv"
    rc = main(["find-issues", "--labels", str(tmp_path / "y.npy"), "--pred-probs", str(tmp_path / "p.npy"),
               "--dask-scheduler", client.scheduler.address, "--rows-per-block", "2000", "--out", str(out)])
    assert rc == 0
    err = capsys.readouterr().err
    assert "worker(s)" in err and "pass 1/2" in err
    import csv

    with open(out) as fh:
        flagged = sorted(int(r["index"]) for r in csv.DictReader(fh) if r["is_issue"] == "True")
    assert flagged == np.flatnonzero(expected).tolist()


def test_cross_val_folds_on_the_cluster_equal_local(client, tmp_path):
    """Out-of-fold probabilities with the folds fitted on the LocalCluster: same values, fold files saved."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    from noisylab.cv import combine_folds, cross_val_pred_probs

    X, y = load_digits(return_X_y=True)
    X, y = X[:600] / 16.0, y[:600]
    clf = LogisticRegression(max_iter=300)
    local = cross_val_pred_probs(clf, X, y, n_folds=3, random_state=4)
    remote = cross_val_pred_probs(clf, X, y, n_folds=3, random_state=4, client=client, out_dir=tmp_path / "f")
    np.testing.assert_allclose(remote, local, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(combine_folds(tmp_path / "f"), remote)
