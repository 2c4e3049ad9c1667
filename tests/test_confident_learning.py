"""Confident learning on hand-computed cases, its invariants, and the estimator."""
import subprocess
import sys
import warnings

import numpy as np
import pytest
from _synth import make_pred_probs
from hypothesis import given, settings
from hypothesis import strategies as st

import noisylab as nl
from noisylab.detect._kernels import (
    round_preserving_row_totals,
    round_preserving_sum,
    select_largest,
    select_largest_per_column,
    select_smallest,
)


def test_import_is_light_and_never_imports_torch():
    code = ("import sys, noisylab; heavy = ['torch', 'matplotlib', 'sklearn', 'scipy', 'pandas'];"
            "a = [m for m in heavy if m in sys.modules]; import noisylab.cli, noisylab.demo;"
            "b = [m for m in heavy if m in sys.modules]; print(a, b)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[] []"


def test_thresholds_hand_computed():
    P = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.3, 0.7], [0.55, 0.45]])
    y = np.array([0, 0, 1, 1, 1])
    np.testing.assert_allclose(nl.get_confident_thresholds(y, P), [0.75, (0.8 + 0.7 + 0.45) / 3])


def test_confident_joint_hand_computed():
    # thresholds t = [0.75, 0.65]
    P = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.3, 0.7], [0.55, 0.45], [0.8, 0.2]])
    y = np.array([0, 0, 1, 1, 1, 1])
    t = nl.get_confident_thresholds(y, P)
    np.testing.assert_allclose(t, [0.75, (0.8 + 0.7 + 0.45 + 0.2) / 4])
    # row 0: only p0=0.9>=0.75 -> (0,0); row 1: nothing -> dropped; rows 2,3: p1>=0.5375 -> (1,1);
    # row 4: p1=0.45<0.5375, p0=.55<.75 -> dropped; row 5: p0=0.8>=0.75 -> (1,0)
    cj, off = nl.compute_confident_joint(y, P, calibrate=False, return_indices_of_off_diagonals=True)
    np.testing.assert_array_equal(cj, [[1, 0], [1, 2]])
    np.testing.assert_array_equal(off, [5])
    # calibrated: row 0 scaled to n_0 = 2 -> [2, 0]; row 1 to n_1 = 4 -> [4/3, 8/3] -> [1, 3]
    np.testing.assert_array_equal(nl.compute_confident_joint(y, P), [[2, 0], [1, 3]])
    assert nl.find_label_issues(y, P, filter_by="confident_learning").tolist() == [0, 0, 0, 0, 0, 1]


def test_several_classes_above_threshold_use_argmax_over_all_classes():
    """CONFIDENT_LEARNING.md §2.3: [0.5, 0.3, 0.2] with t = [0.6, 0.25, 0.15] counts under class 0."""
    P = np.array([[0.5, 0.3, 0.2], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]])
    y = np.array([2, 1, 2])
    cj = nl.compute_confident_joint(y, P, thresholds=[0.6, 0.25, 0.15], calibrate=False)
    assert cj[2, 0] == 1 and cj[2, 1] == 0


def test_prune_by_class_hand_computed_and_final_argmax_check():
    # t = [mean(.95,.9,.1,.5), mean(.9,.8,.85,.7)] = [0.6125, 0.8125]
    # class 0: rows 0,1 -> (0,0); row 2 (p1=.9) -> (0,1); row 3 -> nothing.  raw row [2, 1],
    # calibrated to n_0 = 4: [8/3, 4/3] -> [3, 1].  class 1: rows 4, 6 -> (1,1) -> [0, 4].
    P = np.array([[0.95, 0.05], [0.9, 0.1], [0.1, 0.9], [0.5, 0.5],
                  [0.1, 0.9], [0.2, 0.8], [0.15, 0.85], [0.3, 0.7]])
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    np.testing.assert_array_equal(nl.compute_confident_joint(y, P), [[3, 1], [0, 4]])
    # PBC removes n_0 - C[0,0] = 1 example of class 0: the lowest p0 (row 2)
    assert np.flatnonzero(nl.find_label_issues(y, P, filter_by="prune_by_class")).tolist() == [2]
    # PBNR removes C[0,1] = 1 example of class 0 with the largest p1 - p0 (row 2)
    assert np.flatnonzero(nl.find_label_issues(y, P, filter_by="prune_by_noise_rate")).tolist() == [2]
    # asking for 2 selects rows 2 and 3, but row 3 (p0 = p1 = 0.5: argmax is its label) is un-flagged
    mask = nl.find_label_issues(y, P, filter_by="prune_by_class", num_to_remove_per_class=[2, 0])
    assert np.flatnonzero(mask).tolist() == [2]


def test_ties_at_cut_off_take_lowest_indices():
    row_bad = [0.2, 0.8]
    P = np.array([[0.9, 0.1]] * 6 + [row_bad] * 4 + [[0.1, 0.9]] * 5 + [[0.3, 0.7]] * 5)
    y = np.array([0] * 10 + [1] * 10)
    cj = nl.compute_confident_joint(y, P)
    assert cj[0, 1] == 4
    mask = nl.find_label_issues(y, P, filter_by="prune_by_class", num_to_remove_per_class=[2, 0])
    assert np.flatnonzero(mask).tolist() == [6, 7]  # four identical rows: the first two
    ranked = nl.find_label_issues(y, P, return_indices_ranked_by="self_confidence")
    assert ranked.tolist() == [6, 7, 8, 9]


@given(st.lists(st.integers(0, 6), min_size=1, max_size=60), st.data())
@settings(max_examples=200, deadline=None)
def test_selection_equals_stable_argsort(values, data):
    v = np.asarray(values, dtype=np.float32) / 3
    c = data.draw(st.integers(0, len(values) + 1))
    np.testing.assert_array_equal(np.sort(select_largest(v, c)), np.sort(np.argsort(-v, kind="stable")[:c]))
    np.testing.assert_array_equal(np.sort(select_smallest(v, c)), np.sort(np.argsort(v, kind="stable")[:c]))


@given(st.lists(st.floats(0, 1000, allow_nan=False), min_size=1, max_size=30))
@settings(max_examples=200, deadline=None)
def test_round_preserving_sum(values):
    x = np.asarray(values)
    r = round_preserving_sum(x)
    assert r.sum() == np.round(x.sum())
    assert np.all(np.abs(r - x) < 1.0 + 1e-9)


@given(st.integers(0, 40), st.integers(1, 12), st.integers(0, 4), st.data())
@settings(max_examples=200, deadline=None)
def test_selection_per_column_equals_one_call_per_column(m, T, levels, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    # few distinct levels: many ties at the cut-offs
    V = (rng.integers(0, levels + 1, (m, T)) / 3 if levels else rng.random((m, T))).astype(np.float32)
    c = rng.integers(0, m + 3, T)
    rows, cols = select_largest_per_column(V, c)
    for t in range(T):
        np.testing.assert_array_equal(np.sort(rows[cols == t]), np.sort(select_largest(V[:, t], int(c[t]))))


@given(st.integers(1, 40), st.integers(0, 2), st.data())
@settings(max_examples=200, deadline=None)
def test_row_rounding_equals_the_one_dimensional_rule(K, kind, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    M = rng.random((K, K)) * rng.integers(1, 1000)
    if kind == 1:
        M = np.round(M * 2) / 2  # exact halves: ties in the rounding gaps
    elif kind == 2:
        M[:, : min(3, K)] = M[:, :1]  # equal entries in a row
    np.testing.assert_array_equal(round_preserving_row_totals(M), np.vstack([round_preserving_sum(r) for r in M]))


@pytest.mark.parametrize("layout", ["C", "F", "strided", "empty"])
@pytest.mark.parametrize("idx_dtype", [np.int16, np.int64])
def test_take_rows_equals_fancy_indexing(layout, idx_dtype):
    from noisylab.detect._engine import take_rows

    rng = np.random.default_rng(3)
    A = rng.random((57, 11)).astype(np.float32)
    A = {"C": A, "F": np.asfortranarray(A), "strided": A[::2, 1:], "empty": A[:0]}[layout]
    cols = rng.integers(0, A.shape[1], A.shape[0]).astype(idx_dtype)
    got = take_rows(A, cols)
    np.testing.assert_array_equal(got, A[np.arange(A.shape[0]), cols])
    assert got.dtype == A.dtype and got.shape == (A.shape[0],)


@pytest.mark.parametrize("adjust", [False, True])
@pytest.mark.parametrize("order", ["C", "F"])
def test_margin_scores_of_any_memory_layout(adjust, order):
    """The margin block writes -inf into its own C-ordered copy, never into the caller's array."""
    y, P, _ = make_pred_probs(500, 6, dtype=np.float32, seed=2)
    Q = np.asfortranarray(P) if order == "F" else P.copy()
    before = Q.copy()
    ref = nl.get_label_quality_scores(y, P, method="normalized_margin", adjust_pred_probs=adjust)
    got = nl.get_label_quality_scores(y, Q, method="normalized_margin", adjust_pred_probs=adjust)
    np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(Q, before)
    sc = P[np.arange(len(y)), y]
    other = np.where(np.arange(6) == y[:, None], -np.inf, P).max(axis=1)
    if not adjust:
        np.testing.assert_array_equal(ref, (sc - other + 1) / 2)


@pytest.mark.parametrize("filter_by", nl.FILTER_METHODS)
def test_permutation_equivariance(filter_by):
    y, P, _ = make_pred_probs(3000, 7, dtype=np.float64, seed=5)
    perm = np.random.default_rng(1).permutation(len(y))
    mask = nl.find_label_issues(y, P, filter_by=filter_by)
    mask_p = nl.find_label_issues(y[perm], P[perm], filter_by=filter_by)
    np.testing.assert_array_equal(mask_p, mask[perm])


def test_flags_real_noise_on_synthetic_data():
    y, P, true = make_pred_probs(20000, 10, noise=0.2, signal=4.0, dtype=np.float32, seed=12345)
    is_noisy = y != true
    for fb in ("prune_by_noise_rate", "both", "confident_learning"):
        m = nl.metrics.detection_precision_recall_f1(nl.find_label_issues(y, P, filter_by=fb), is_noisy)
        assert m["precision"] > 0.85 and m["recall"] > 0.65, (fb, m)


def test_low_filters_flag_exactly_num_label_issues_lowest_scores():
    y, P, _ = make_pred_probs(5000, 5, dtype=np.float64, seed=2)
    m = nl.num_label_issues(y, P)
    assert m == nl.find_label_issues(y, P, filter_by="confident_learning").sum()
    for fb, method in (("low_self_confidence", "self_confidence"), ("low_normalized_margin", "normalized_margin")):
        mask = nl.find_label_issues(y, P, filter_by=fb)
        s = nl.get_label_quality_scores(y, P, method=method)
        assert mask.sum() == m
        assert s[mask].max() <= s[~mask].min()


def test_frac_noise_and_min_examples_per_class():
    y, P, _ = make_pred_probs(5000, 5, noise=0.3, dtype=np.float64, seed=4)
    full = nl.find_label_issues(y, P, filter_by="prune_by_class")
    half = nl.find_label_issues(y, P, filter_by="prune_by_class", frac_noise=0.5)
    assert half.sum() < full.sum() and np.all(full[half])
    # a class with <= min_examples_per_class examples is skipped with a warning
    with pytest.warns(UserWarning, match="min_examples_per_class"):
        skipped = nl.find_label_issues(y, P, filter_by="prune_by_class", min_examples_per_class=10_000)
    assert skipped.sum() == 0


def test_scores_hand_computed():
    P = np.array([[0.7, 0.2, 0.1], [0.25, 0.25, 0.5]])
    y = np.array([0, 1])
    np.testing.assert_allclose(nl.get_label_quality_scores(y, P), [0.7, 0.25])
    np.testing.assert_allclose(nl.get_label_quality_scores(y, P, method="normalized_margin"),
                               [(0.7 - 0.2 + 1) / 2, (0.25 - 0.5 + 1) / 2])
    H = -(P * np.log(P)).sum(1) / np.log(3)
    s = H / np.array([0.7, 0.25])
    np.testing.assert_allclose(nl.get_label_quality_scores(y, P, method="confidence_weighted_entropy"),
                               np.log(s + 1) / s)


def test_latent_estimates_are_distributions():
    y, P, _ = make_pred_probs(5000, 6, dtype=np.float64, absent=1, seed=8)
    py, nm, inv, cj = nl.estimate_py_and_noise_matrices_from_probabilities(y, P)
    assert py.shape == (6,) and abs(py.sum() - 1) < 1e-12 and py.min() > 0
    # columns of classes seen in the labels are distributions; the absent class's
    # column of the noise matrix stays 0 (nothing is confidently that class), as in cleanlab
    np.testing.assert_allclose(nm[:, :5].sum(axis=0), 1, atol=1e-9)
    np.testing.assert_allclose(nm[:, 5], 0)
    np.testing.assert_allclose(inv[:, :5].sum(axis=0), 1, atol=1e-9)
    assert py[5] < 1e-5  # the absent class


def test_estimator_matches_functions():
    y, P, true = make_pred_probs(4000, 6, dtype=np.float32, seed=9)
    cl = nl.ConfidentLearning(filter_by="both", rank_by="normalized_margin").fit(y, P)
    np.testing.assert_array_equal(cl.issue_mask_, nl.find_label_issues(y, P, filter_by="both"))
    np.testing.assert_array_equal(cl.ranked_issues_, nl.find_label_issues(
        y, P, filter_by="both", return_indices_ranked_by="normalized_margin"))
    np.testing.assert_array_equal(cl.confident_joint_, nl.compute_confident_joint(y, P))
    np.testing.assert_allclose(cl.joint_, nl.estimate_joint(y, P))
    py, nm, inv, _ = nl.estimate_py_and_noise_matrices_from_probabilities(y, P)
    np.testing.assert_allclose(cl.noise_matrix_, nm)
    np.testing.assert_allclose(cl.py_, py)
    np.testing.assert_array_equal(cl.suggested_labels_, P.argmax(1))
    assert np.all(cl.suggested_labels_[cl.issue_mask_] != y[cl.issue_mask_])
    assert cl.noise_rate_ == pytest.approx(1 - np.trace(nl.estimate_joint(y, P)))
    order = cl.severity_order()
    assert sorted(order.tolist()) == list(range(len(y)))
    assert set(order[: cl.n_issues_].tolist()) == set(np.flatnonzero(cl.issue_mask_).tolist())
    np.testing.assert_array_equal(cl.issues_per_class(), np.bincount(y[cl.issue_mask_], minlength=6))
    assert "filter_by='both'" in repr(cl)
    assert nl.ConfidentLearning().set_params(filter_by="prune_by_class").filter_by == "prune_by_class"
    with pytest.raises(ValueError, match="not fitted"):
        nl.ConfidentLearning().severity_order()


def test_memory_mapped_read_only_input(tmp_path):
    y, P, _ = make_pred_probs(3000, 5, dtype=np.float32, seed=1)
    np.save(tmp_path / "p.npy", P)
    Pm = np.load(tmp_path / "p.npy", mmap_mode="r")
    np.testing.assert_array_equal(nl.find_label_issues(y, Pm), nl.find_label_issues(y, P))
    np.testing.assert_array_equal(nl.get_label_quality_scores(y, Pm, method="normalized_margin"),
                                  nl.get_label_quality_scores(y, P, method="normalized_margin"))


def test_cv_predicted_probabilities_are_out_of_fold():
    from sklearn.neighbors import KNeighborsClassifier

    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 5))
    y = rng.integers(0, 4, 600)  # labels unrelated to X
    # A 1-NN model that saw an example predicts its label with probability 1; out of fold
    # it never sees it, so with random labels its accuracy falls to chance (1/4).
    P = nl.estimate_cv_predicted_probabilities(X, y, KNeighborsClassifier(n_neighbors=1), cv_n_folds=4, seed=0)
    assert P.shape == (600, 4)
    assert (P.argmax(1) == y).mean() < 0.35
    P_in = KNeighborsClassifier(n_neighbors=1).fit(X, y).predict_proba(X)
    assert (P_in.argmax(1) == y).mean() == 1.0
    # same seed, same folds, same result
    np.testing.assert_array_equal(
        P, nl.estimate_cv_predicted_probabilities(X, y, KNeighborsClassifier(n_neighbors=1), cv_n_folds=4, seed=0))


def test_demo_detects_the_flips():
    from noisylab.demo import run_demo

    lines = []
    res = run_demo(print_fn=lines.append)
    assert res["n_flipped"] == 377  # exact mode: 30% of the 1257 training labels (70/30 split of 1797)
    assert res["precision"] > 0.85 and res["recall"] > 0.85
    assert abs(res["estimated_noise_rate"] - 0.3) < 0.05
    assert res["seconds"] < 180  # about 12 s on an idle 2-core machine
    assert any("precision" in line for line in lines)


def test_bench_cl_cifar10_reproduces_published_figures(shared_data):
    from noisylab.bench.cl_cifar10 import (
        PUBLISHED_CL_CIFAR10,
        bench_cl_cifar10,
        results_table,
    )

    results = bench_cl_cifar10(shared_data / "cl-cifar10")
    checked = 0
    for r in results:
        ref = PUBLISHED_CL_CIFAR10.get((r["filter"], r["noise"])) if r["sparsity"] == 0 else None
        if ref is not None:
            assert (round(r["precision"], 3), round(r["recall"], 3)) == ref, r
            checked += 1
    assert checked >= 10
    assert "reproduced exactly" in results_table(results)


def test_cv_predicted_probabilities_seed_forms_and_bad_classifier():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X, y = X[:300], y[:300]
    a = nl.estimate_cv_predicted_probabilities(X, y, seed=np.random.default_rng(3))
    b = nl.estimate_cv_predicted_probabilities(X, y, seed=np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a.sum(1), 1)
    with pytest.raises(nl.NoisylabInputError, match="predict_proba"):
        nl.estimate_cv_predicted_probabilities(X, y, clf=object())
    with pytest.raises(nl.NoisylabInputError, match="cv_n_folds"):
        nl.estimate_cv_predicted_probabilities(X, y, cv_n_folds=1)


def _brute_force_pbnr(y, P, min_examples_per_class=1):
    """Reference PBNR: for every (given k, suspected j) cell, the top-c margins over all rows of k."""
    from noisylab.detect.filter import _keep_at_least_n_per_class

    K = P.shape[1]
    M = _keep_at_least_n_per_class(nl.compute_confident_joint(y, P), min_examples_per_class, 1.0)
    mask = np.zeros(len(y), dtype=bool)
    for k in range(K):
        rows = np.flatnonzero(y == k)
        if len(rows) <= min_examples_per_class:
            continue
        for j in range(K):
            c = int(M[j, k])
            if j != k and c > 0:
                mu = P[rows, j] - P[rows, k]
                mask[rows[np.argsort(-mu, kind="stable")[:c]]] = True
    keep = np.array([np.argmax(np.where(np.arange(K) == y[i], P[i] + P.dtype.type(1e-6), P[i])) != y[i]
                     for i in range(len(y))])
    return mask & keep


@pytest.mark.parametrize("K", [2, 3, 5, 12, 40])
@pytest.mark.parametrize("dtype,quantize", [(np.float64, None), (np.float32, 0.02), (np.float16, None)])
def test_streaming_pbnr_equals_brute_force(K, dtype, quantize):
    """The engine decides most cells from recorded margins; both paths must equal full top-c selection."""
    for seed in range(3):
        y, P, _ = make_pred_probs(1500, K, noise=0.35, signal=1.5 + seed, dtype=dtype, quantize=quantize,
                                  seed=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ours = nl.find_label_issues(y, P, filter_by="prune_by_noise_rate")
        np.testing.assert_array_equal(ours, _brute_force_pbnr(y, P))


def test_estimator_copies_the_labels_and_low_filters_may_suggest_the_given_label():
    from _synth import make_pred_probs

    y, P, _ = make_pred_probs(400, 4, seed=3)
    labels = y.copy()
    cl = nl.ConfidentLearning().fit(labels, P)
    before = cl.issues_per_class().copy()
    labels[:] = 0  # the caller reuses its array
    np.testing.assert_array_equal(cl.issues_per_class(), before)
    for filter_by in ("prune_by_noise_rate", "prune_by_class", "both", "confident_learning"):
        fitted = nl.ConfidentLearning(filter_by=filter_by).fit(y, P)
        assert not np.any(fitted.suggested_labels_[fitted.issue_mask_] == y[fitted.issue_mask_]), filter_by
