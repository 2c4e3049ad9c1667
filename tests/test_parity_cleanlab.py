"""Differential tests against cleanlab 2.9 (test-only dependency).

Masks must equal cleanlab's ``filter.find_label_issues`` except inside tie
groups at a selection cut-off (CONFIDENT_LEARNING.md §2.10), scores must equal
``rank.get_label_quality_scores`` to 1e-9 in the same dtype, and the ``count``
estimates must match.
"""
import functools
import warnings

import numpy as np
import pytest
from _synth import make_pred_probs
from _tie_groups import assert_masks_equal_modulo_ties

import noisylab as nl

cleanlab = pytest.importorskip("cleanlab", reason="cleanlab is the differential-test reference")
import cleanlab.count as cc  # noqa: E402
import cleanlab.filter as cf  # noqa: E402
import cleanlab.rank as cr  # noqa: E402

FILTERS = ["prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given",
           "low_normalized_margin", "low_self_confidence"]
SCORES = ["self_confidence", "normalized_margin", "confidence_weighted_entropy"]

# (n, K, dtype, absent classes, quantize step)
CONFIGS = [
    (300, 2, np.float64, 0, None), (300, 3, np.float16, 1, None), (500, 10, np.float32, 0, 0.05),
    (2000, 2, np.float16, 0, None), (2000, 3, np.float32, 0, None), (2000, 10, np.float64, 2, None),
    (5000, 10, np.float16, 0, None), (5000, 10, np.float32, 1, 0.05), (5000, 57, np.float64, 0, None),
    (5000, 57, np.float16, 3, None), (8000, 100, np.float32, 0, None), (8000, 100, np.float64, 5, 0.02),
    (20000, 3, np.float64, 0, 0.1), (20000, 10, np.float32, 0, None), (20000, 50, np.float16, 0, None),
    (100_000, 10, np.float16, 1, None), (100_000, 100, np.float32, 0, None), (100_000, 37, np.float64, 0, None),
]


def _ids(c):
    n, K, dt, absent, q = c
    return f"n{n}-K{K}-{np.dtype(dt).name}-absent{absent}-q{q}"


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@functools.lru_cache(maxsize=4)
def _make(config):
    n, K, dt, absent, q = config
    y, P, _ = make_pred_probs(n, K, dtype=dt, absent=absent, quantize=q, seed=n + K)
    return y, P, absent


@pytest.fixture(params=CONFIGS, ids=_ids, scope="module")
def data(request):
    return _make(request.param)


def test_thresholds_and_confident_joint(data):
    y, P, _ = data
    t_ref = cc.get_confident_thresholds(y, P)
    t = nl.get_confident_thresholds(y, P)
    assert t.dtype == t_ref.dtype
    np.testing.assert_array_equal(t, t_ref)
    for calibrate in (True, False):
        ref, ref_off = cc.compute_confident_joint(y, P, calibrate=calibrate, return_indices_of_off_diagonals=True)
        ours, off = nl.compute_confident_joint(y, P, calibrate=calibrate, return_indices_of_off_diagonals=True)
        np.testing.assert_array_equal(ours, ref)
        np.testing.assert_array_equal(off, ref_off)


@pytest.mark.parametrize("filter_by", FILTERS)
def test_masks_equal_modulo_ties(data, filter_by):
    y, P, _ = data
    ref = cf.find_label_issues(y, P, filter_by=filter_by, n_jobs=1)
    ours = nl.find_label_issues(y, P, filter_by=filter_by)
    assert ours.dtype == bool and ours.shape == ref.shape
    assert_masks_equal_modulo_ties(ours, ref, y, P, filter_by)
    if filter_by in ("low_self_confidence", "low_normalized_margin"):
        # both flag exactly the m = num_label_issues lowest scores (no final argmax check)
        assert ours.sum() == ref.sum() == nl.num_label_issues(y, P)


@pytest.mark.parametrize("filter_by", ["prune_by_noise_rate", "prune_by_class", "both"])
@pytest.mark.parametrize("kw", [dict(min_examples_per_class=5), dict(min_examples_per_class=300),
                                dict(frac_noise=0.5), dict(frac_noise=0.77, min_examples_per_class=20)],
                         ids=["mepc5", "mepc300", "frac0.5", "frac0.77-mepc20"])
@pytest.mark.parametrize("config", [c for c in CONFIGS if c[0] <= 20000], ids=_ids)
def test_pruning_options_match(config, filter_by, kw):
    y, P, _ = _make(config)
    ref = cf.find_label_issues(y, P, filter_by=filter_by, n_jobs=1, **kw)
    ours = nl.find_label_issues(y, P, filter_by=filter_by, **kw)
    assert_masks_equal_modulo_ties(ours, ref, y, P, filter_by, **kw)


def test_precomputed_confident_joint_matches(data):
    y, P, _ = data
    cj = cc.compute_confident_joint(y, P)
    ref = cf.find_label_issues(y, P, confident_joint=cj, n_jobs=1)
    ours = nl.find_label_issues(y, P, confident_joint=cj)
    assert_masks_equal_modulo_ties(ours, ref, y, P, "prune_by_noise_rate")


@pytest.mark.parametrize("method", SCORES)
@pytest.mark.parametrize("adjust", [False, True])
def test_scores_equal(data, method, adjust):
    y, P, _ = data
    if adjust and method == "confidence_weighted_entropy":
        with pytest.raises(ValueError):
            nl.get_label_quality_scores(y, P, method=method, adjust_pred_probs=True)
        return
    ref = cr.get_label_quality_scores(y, P, method=method, adjust_pred_probs=adjust)
    ours = nl.get_label_quality_scores(y, P, method=method, adjust_pred_probs=adjust)
    assert ours.dtype == ref.dtype
    np.testing.assert_allclose(ours.astype(np.float64), ref.astype(np.float64), rtol=0, atol=1e-9)


@pytest.mark.parametrize("rank_by", SCORES)
def test_ranked_indices(data, rank_by):
    y, P, _ = data
    ref = cf.find_label_issues(y, P, return_indices_ranked_by=rank_by, n_jobs=1)
    ours = nl.find_label_issues(y, P, return_indices_ranked_by=rank_by)
    mask = nl.find_label_issues(y, P)
    np.testing.assert_array_equal(np.sort(ours), np.flatnonzero(mask))
    s = nl.get_label_quality_scores(y, P, method=rank_by)
    # most severe first; ties by index (stable)
    np.testing.assert_array_equal(ours, np.flatnonzero(mask)[np.argsort(s[mask], kind="stable")])
    if np.array_equal(np.sort(ref), np.sort(ours)):  # same set -> same multiset of keys in order
        np.testing.assert_array_equal(s[ours], s[ref])


def test_count_estimates(data):
    y, P, absent = data
    np.testing.assert_allclose(nl.estimate_joint(y, P), cc.estimate_joint(y, P), rtol=0, atol=1e-12)
    cj = cc.compute_confident_joint(y, P)
    for py_method in ("cnt", "eqn", "marginal", "marginal_ps"):
        try:
            ref = cc.estimate_latent(cj, y, py_method=py_method)
        except np.linalg.LinAlgError:  # cleanlab crashes on a singular matrix; we raise a clear error
            with pytest.raises(nl.NoisylabInputError, match="singular"):
                nl.estimate_latent(cj, y, py_method=py_method)
            continue
        for converge in (False, True) if not absent else (False,):
            ref = cc.estimate_latent(cj, y, py_method=py_method, converge_latent_estimates=converge)
            ours = nl.estimate_latent(cj, y, py_method=py_method, converge_latent_estimates=converge)
            for a, b in zip(ours, ref):
                np.testing.assert_allclose(a, b, rtol=0, atol=1e-9)
    for method in ("off_diagonal", "off_diagonal_calibrated"):
        assert nl.num_label_issues(y, P, estimation_method=method) == cc.num_label_issues(
            y, P, estimation_method=method)
    assert nl.num_label_issues(y, P, confident_joint=cj, estimation_method="off_diagonal_custom") == \
        cc.num_label_issues(y, P, confident_joint=cj, estimation_method="off_diagonal_custom")
    if not absent:
        ref = cc.estimate_py_and_noise_matrices_from_probabilities(y, P)
        ours = nl.estimate_py_and_noise_matrices_from_probabilities(y, P)
        for a, b in zip(ours, ref):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-9)


def test_calibrate_confident_joint_matches(data):
    y, P, _ = data
    raw = cc.compute_confident_joint(y, P, calibrate=False)
    np.testing.assert_array_equal(nl.calibrate_confident_joint(raw, y), cc.calibrate_confident_joint(raw, y))


# ---------------------------------------------------------------- real data
def _cifar_files(shared):
    files = sorted((shared / "cl-cifar10").glob("*.npz"))
    assert files, "no .npz in shared/data/cl-cifar10"
    return files


@pytest.mark.parametrize("filter_by", FILTERS)
def test_cl_cifar10_files(shared_data, filter_by):
    for path in _cifar_files(shared_data):
        with np.load(path) as z:
            P, y = z["pred_probs"], z["noisy_labels"].astype(np.int64)
        ref = cf.find_label_issues(y, P, filter_by=filter_by, n_jobs=1)
        ours = nl.find_label_issues(y, P, filter_by=filter_by)
        assert_masks_equal_modulo_ties(ours, ref, y, P, filter_by)


def test_cl_cifar10_counts_and_scores(shared_data):
    for path in _cifar_files(shared_data):
        with np.load(path) as z:
            P, y = z["pred_probs"], z["noisy_labels"].astype(np.int64)
        np.testing.assert_array_equal(nl.compute_confident_joint(y, P), cc.compute_confident_joint(y, P))
        assert nl.num_label_issues(y, P) == cc.num_label_issues(y, P)
        for method in SCORES:
            np.testing.assert_allclose(nl.get_label_quality_scores(y, P, method=method).astype(float),
                                       cr.get_label_quality_scores(y, P, method=method).astype(float),
                                       rtol=0, atol=1e-9)


# ------------------------------------------- where noisylab deliberately differs
def test_nan_rejected_where_cleanlab_accepts_it():
    y, P, _ = make_pred_probs(400, 4, dtype=np.float64, seed=3)
    P = P.copy()
    P[7, 2] = np.nan
    cf.find_label_issues(y, P, n_jobs=1)  # cleanlab: silently accepted
    with pytest.raises(nl.NoisylabInputError, match="row 7, column 2"):
        nl.find_label_issues(y, P)


def test_num_to_remove_per_class_axis_fixed():
    """cleanlab applies num_to_remove_per_class along the true-class axis for PBNR; we use the given label."""
    y, P, _ = make_pred_probs(3000, 3, noise=0.3, dtype=np.float64, seed=11)
    r = [5, 0, 1]
    # prune_by_class: both agree exactly
    ref = cf.find_label_issues(y, P, filter_by="prune_by_class", num_to_remove_per_class=r, n_jobs=1)
    ours = nl.find_label_issues(y, P, filter_by="prune_by_class", num_to_remove_per_class=r)
    np.testing.assert_array_equal(ours, ref)
    per_class = np.bincount(y[ours], minlength=3)
    assert list(per_class) == r
    for fb in ("prune_by_noise_rate", "both"):
        m = nl.find_label_issues(y, P, filter_by=fb, num_to_remove_per_class=r)
        got = np.bincount(y[m], minlength=3)
        assert np.all(got <= r), (fb, got)
        assert got[1] == 0
    m = nl.find_label_issues(y, P, filter_by="prune_by_noise_rate", num_to_remove_per_class=r)
    assert list(np.bincount(y[m], minlength=3)) == r
    # cleanlab flags examples in class 1 although 0 were asked for there
    bad = cf.find_label_issues(y, P, filter_by="prune_by_noise_rate", num_to_remove_per_class=[5, 3, 1], n_jobs=1)
    assert list(np.bincount(y[bad], minlength=3)) != [5, 3, 1]
    ours = nl.find_label_issues(y, P, filter_by="prune_by_noise_rate", num_to_remove_per_class=[5, 3, 1])
    assert list(np.bincount(y[ours], minlength=3)) == [5, 3, 1]


def test_one_class_rejected_consistently():
    y = np.zeros(50, dtype=int)
    P = np.tile([0.7, 0.3], (50, 1))
    assert cf.find_label_issues(y, P).sum() == 0  # cleanlab: all-0 allowed...
    with pytest.raises(ValueError):
        cf.find_label_issues(y + 1, np.tile([0.3, 0.7], (50, 1)))  # ...all-1 not
    for labels in (y, y + 1):
        with pytest.raises(nl.NoisylabInputError, match="only one class"):
            nl.find_label_issues(labels, P)


def test_converged_latent_estimates_stay_probabilities_and_match_cleanlab():
    # a calibrated confident joint on which unclipped Bayes updates give rates of -0.07 and 1.07
    cj = np.array([[2, 0, 2, 0, 0], [0, 2, 2, 0, 0], [0, 0, 0, 0, 1], [0, 0, 1, 3, 0], [0, 0, 1, 2, 4]])
    labels = np.repeat(np.arange(5), cj.sum(axis=1))
    py, nm, inv = nl.estimate_latent(cj, labels, converge_latent_estimates=True)
    ref = cc.estimate_latent(cj, labels, converge_latent_estimates=True)
    np.testing.assert_allclose(inv[:, 3], [0, 0, 0, 1, 0], atol=1e-6)  # unclipped: -0.071 and 1.071
    for m in (nm, inv):
        assert m.min() >= 0 and m.max() <= 1
        np.testing.assert_allclose(m.sum(axis=0), 1, atol=1e-12)
    # class 2 has a zero diagonal: p(y*=2) sits at the floor here and drifts to ~1e-5 in cleanlab (documented)
    for ours, theirs in zip((py, nm, inv), ref):
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=2e-5)
    # random small problems whose confident joint has a non-zero diagonal: equal to 1e-9
    checked = 0
    for seed in range(300):
        r = np.random.default_rng(seed)
        K = int(r.integers(2, 7))
        n = int(r.integers(3 * K, 120))
        y = r.integers(0, K, n)
        L = r.normal(size=(n, K)) * r.uniform(0.5, 3)
        L[np.arange(n), y] += r.uniform(0, 3)
        P = np.exp(L) / np.exp(L).sum(axis=1, keepdims=True)
        cj = cc.compute_confident_joint(y, P)
        if len(np.unique(y)) < K or (np.diag(cj) == 0).any():
            continue
        checked += 1
        for ours, theirs in zip(nl.estimate_latent(cj, y, converge_latent_estimates=True),
                                cc.estimate_latent(cj, y, converge_latent_estimates=True)):
            np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-9)
    assert checked > 100


@pytest.mark.parametrize("seed, n, K, frac", [(4, 1000, 5, 0.3), (7, 1000, 10, 0.55)])
def test_frac_noise_prune_counts_round_like_cleanlab(seed, n, K, frac):
    # The frac_noise step's removed mass is summed in the reference's order.  Seed 4: summing each
    # matrix first gave 181.99999999999997 instead of 182 and, after truncation, one example more;
    # seed 7 (K = 10): summing the same differences row-major instead of column-major did.
    r = np.random.default_rng(seed)
    y = r.integers(0, K, n)
    L = r.normal(size=(n, K)) * (1.0 if K == 5 else 1.5)
    L[np.arange(n), y] += 3 if K == 5 else 2.5
    P = (np.exp(L) / np.exp(L).sum(axis=1, keepdims=True)).astype(np.float32)
    s = y.copy()
    flip = r.random(n) < 0.3
    s[flip] = r.integers(0, K, flip.sum())
    for filter_by in ("prune_by_class", "both", "prune_by_noise_rate"):
        np.testing.assert_array_equal(nl.find_label_issues(s, P, filter_by=filter_by, frac_noise=frac),
                                      cf.find_label_issues(s, P, filter_by=filter_by, frac_noise=frac, n_jobs=1))
