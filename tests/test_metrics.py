"""Tests for noisylab.metrics: differential tests against sklearn.metrics, hand cases, error paths."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.metrics import (
    average_precision_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from noisylab._validation import NoisylabInputError
from noisylab.metrics import (
    detection_auroc,
    detection_average_precision,
    detection_precision_recall_f1,
    label_precision,
    label_recall,
    noise_matrix_error,
    noise_rate_error,
    noise_rate_from_matrix,
    precision_at_k,
)

SEEDS = range(8)


def _random_case(seed, n=200):
    rng = np.random.default_rng(seed)
    is_noisy = rng.random(n) < rng.uniform(0.05, 0.6)
    is_noisy[:2] = [True, False]  # both classes present
    # noisy examples tend to get lower quality; ties included via rounding
    quality = np.round(rng.normal(size=n) - 1.0 * is_noisy, 1)
    is_issue = rng.random(n) < rng.uniform(0.0, 0.5)
    return is_noisy, quality, is_issue


# ------------------------------------------------------------------------------------------
# detection_precision_recall_f1
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
def test_prf_matches_sklearn(seed):
    is_noisy, _, is_issue = _random_case(seed)
    r = detection_precision_recall_f1(is_issue, is_noisy)
    kw = dict(zero_division=0.0)
    assert r["precision"] == pytest.approx(precision_score(is_noisy, is_issue, **kw), abs=1e-12)
    assert r["recall"] == pytest.approx(recall_score(is_noisy, is_issue, **kw), abs=1e-12)
    assert r["f1"] == pytest.approx(f1_score(is_noisy, is_issue, **kw), abs=1e-12)
    assert r["n_flagged"] == int(is_issue.sum())
    assert r["n_noisy"] == int(is_noisy.sum())
    assert r["n_true_positive"] == int((is_issue & is_noisy).sum())


@pytest.mark.parametrize("seed", SEEDS)
def test_prf_index_and_mask_inputs_agree(seed):
    is_noisy, _, is_issue = _random_case(seed)
    idx = np.flatnonzero(is_issue)
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(idx)
    from_mask = detection_precision_recall_f1(is_issue, is_noisy)
    assert detection_precision_recall_f1(idx, is_noisy) == from_mask
    assert detection_precision_recall_f1(shuffled.tolist(), is_noisy.tolist()) == from_mask
    assert detection_precision_recall_f1(idx.astype(np.uint32), is_noisy.astype(np.int8)) == from_mask


def test_prf_hand_case():
    # n = 6, noisy = {0, 1, 2}; flagged = {1, 2, 4, 5}: TP = 2, FP = 2, FN = 1
    is_noisy = [True, True, True, False, False, False]
    r = detection_precision_recall_f1([1, 2, 4, 5], is_noisy)
    assert r == {
        "precision": 0.5,
        "recall": 2 / 3,
        "f1": 4 / 7,  # 2*TP / (n_flagged + n_noisy) = 4 / 7
        "n_flagged": 4,
        "n_noisy": 3,
        "n_true_positive": 2,
    }
    assert isinstance(r["precision"], float) and isinstance(r["n_flagged"], int)
    # harmonic mean cross-check
    assert r["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))


def test_prf_zero_division_conventions_without_warning():
    is_noisy = np.array([True, False, False])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        empty_flag = detection_precision_recall_f1(np.zeros(3, bool), is_noisy)
        empty_list = detection_precision_recall_f1([], is_noisy)
        no_noise = detection_precision_recall_f1([1], np.zeros(3, bool))
        both_empty = detection_precision_recall_f1([], [False, False, False])
    assert empty_flag == empty_list
    assert (empty_flag["precision"], empty_flag["recall"], empty_flag["f1"]) == (0.0, 0.0, 0.0)
    assert (no_noise["precision"], no_noise["recall"], no_noise["f1"]) == (0.0, 0.0, 0.0)
    assert both_empty["f1"] == 0.0 and both_empty["n_flagged"] == 0 and both_empty["n_noisy"] == 0
    # same as sklearn's zero_division=0.0
    assert empty_flag["precision"] == precision_score(is_noisy, np.zeros(3, bool), zero_division=0.0)
    assert both_empty["f1"] == f1_score([0, 0, 0], [0, 0, 0], zero_division=0.0)


def test_prf_perfect():
    r = detection_precision_recall_f1([True, False, True], [1, 0, 1])
    assert (r["precision"], r["recall"], r["f1"]) == (1.0, 1.0, 1.0)


def test_inputs_not_mutated():
    is_noisy = np.array([True, False, True, False])
    q = np.array([0.3, 0.2, 0.1, 0.9])
    idx = np.array([2, 0])
    before = (is_noisy.copy(), q.copy(), idx.copy())
    detection_precision_recall_f1(idx, is_noisy)
    detection_auroc(is_noisy, q)
    precision_at_k(is_noisy, q, 2)
    for a, b in zip((is_noisy, q, idx), before):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------------------
# AUROC / average precision
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
def test_auroc_ap_match_sklearn_on_negated_quality(seed):
    is_noisy, quality, _ = _random_case(seed)
    assert detection_auroc(is_noisy, quality) == pytest.approx(roc_auc_score(is_noisy, -quality), abs=1e-12)
    assert detection_average_precision(is_noisy, quality) == pytest.approx(
        average_precision_score(is_noisy, -quality), abs=1e-12
    )
    # 0/1 ints and lists give the same values
    assert detection_auroc(is_noisy.astype(int).tolist(), quality.tolist()) == detection_auroc(is_noisy, quality)


def test_auroc_ap_hand_case_and_direction():
    is_noisy = [True, False, True, False]
    quality = [0.1, 0.4, 0.3, 0.2]
    # order by increasing quality: 0 (0.1, N), 3 (0.2, C), 2 (0.3, N), 1 (0.4, C)
    # pairs (noisy, clean) correctly ordered (noisy has lower quality):
    # (0,3) yes, (0,1) yes, (2,3) no, (2,1) yes -> 3/4
    assert detection_auroc(is_noisy, quality) == 0.75
    # AP: precision at each noisy hit: 1/1 (rank 1), 2/3 (rank 3) -> (1 + 2/3) / 2 = 5/6
    assert detection_average_precision(is_noisy, quality) == pytest.approx(5 / 6)
    # perfect and reversed rankings
    assert detection_auroc([True, False], [0.0, 1.0]) == 1.0
    assert detection_auroc([True, False], [1.0, 0.0]) == 0.0
    assert detection_average_precision([True, False], [0.0, 1.0]) == 1.0


def test_auroc_integer_quality_accepted():
    assert detection_auroc([1, 0, 0], [0, 5, 3]) == 1.0


@pytest.mark.parametrize("func", [detection_auroc, detection_average_precision])
@pytest.mark.parametrize("mask", [[False, False, False], [True, True, True], [0, 0, 0]])
def test_ranking_metrics_single_class_error(func, mask):
    with pytest.raises(NoisylabInputError, match=r"undefined when is_noisy has a single class.*\d noisy of 3"):
        func(mask, [0.1, 0.2, 0.3])


@pytest.mark.parametrize("func", [detection_auroc, detection_average_precision])
def test_ranking_metrics_nan_and_inf(func):
    with pytest.raises(NoisylabInputError, match=r"label_quality must be finite; got nan at index 1"):
        func([True, False, True], [0.1, np.nan, 0.3])
    with pytest.raises(NoisylabInputError, match=r"label_quality must be finite; got -inf at index 2"):
        func([True, False, True], [0.1, 0.2, -np.inf])


@pytest.mark.parametrize("func", [detection_auroc, detection_average_precision])
def test_ranking_metrics_length_mismatch(func):
    with pytest.raises(NoisylabInputError, match=r"same length; got 3 and 2"):
        func([True, False, True], [0.1, 0.2])


def test_quality_bad_types():
    with pytest.raises(NoisylabInputError, match=r"got a boolean array \(did you swap"):
        detection_auroc([True, False], [True, False])
    with pytest.raises(NoisylabInputError, match=r"real-valued scores.*dtype <U1"):
        detection_auroc([True, False], ["a", "b"])
    with pytest.raises(NoisylabInputError, match=r"label_quality must be 1-D with shape \(n,\); got shape \(2, 1\)"):
        detection_auroc([True, False], [[0.1], [0.2]])


# ------------------------------------------------------------------------------------------
# precision@k
# ------------------------------------------------------------------------------------------
def test_precision_at_k_hand_case_with_ties():
    is_noisy = [False, True, True, False, True]
    quality = [0.2, 0.2, 0.1, 0.5, 0.9]
    # stable order by quality: 2 (0.1, N), 0 (0.2, C), 1 (0.2, N; tie -> higher index later), 3, 4
    assert precision_at_k(is_noisy, quality, 1) == 1.0
    assert precision_at_k(is_noisy, quality, 2) == 0.5
    assert precision_at_k(is_noisy, quality, 3) == pytest.approx(2 / 3)
    assert precision_at_k(is_noisy, quality, 4) == 0.5
    assert precision_at_k(is_noisy, quality, 5) == 0.6
    assert precision_at_k(is_noisy, quality, np.int64(2)) == 0.5


@pytest.mark.parametrize("seed", SEEDS)
def test_precision_at_k_matches_sklearn_precision_of_bottom_k(seed):
    is_noisy, quality, _ = _random_case(seed)
    k = 17
    order = np.lexsort((np.arange(quality.size), quality))  # by quality, then index
    flagged = np.zeros_like(is_noisy)
    flagged[order[:k]] = True
    assert precision_at_k(is_noisy, quality, k) == pytest.approx(precision_score(is_noisy, flagged))


@pytest.mark.parametrize("k, msg", [
    (0, r"k must be in 1\.\.3 \(the number of examples\); got 0"),
    (4, r"k must be in 1\.\.3 \(the number of examples\); got 4"),
    (-1, r"got -1"),
    (1.0, r"k must be an int in 1\.\.3; got 1\.0"),
    (True, r"k must be an int in 1\.\.3; got True"),
    ("2", r"k must be an int in 1\.\.3; got '2'"),
])
def test_precision_at_k_bad_k(k, msg):
    with pytest.raises(NoisylabInputError, match=msg):
        precision_at_k([True, False, True], [0.1, 0.2, 0.3], k)


def test_precision_at_k_validates_scores():
    with pytest.raises(NoisylabInputError, match=r"must be finite; got nan"):
        precision_at_k([True, False], [np.nan, 0.2], 1)
    with pytest.raises(NoisylabInputError, match=r"same length; got 2 and 3"):
        precision_at_k([True, False], [0.1, 0.2, 0.3], 1)


# ------------------------------------------------------------------------------------------
# label precision / recall (INCV)
# ------------------------------------------------------------------------------------------
def test_label_precision_recall_hand_case():
    # n = 8; noisy = {1, 5}; clean = {0, 2, 3, 4, 6, 7} (6 clean)
    is_noisy = np.zeros(8, bool)
    is_noisy[[1, 5]] = True
    selected = [0, 1, 2, 3, 6]  # 4 clean + 1 noisy kept
    assert label_precision(selected, is_noisy) == 4 / 5
    assert label_recall(selected, is_noisy) == 4 / 6
    mask = np.isin(np.arange(8), selected)
    assert label_precision(mask, is_noisy) == 4 / 5
    assert label_recall(mask, is_noisy) == 4 / 6


@pytest.mark.parametrize("seed", SEEDS)
def test_label_precision_recall_match_sklearn_on_clean_class(seed):
    is_noisy, _, selected = _random_case(seed)
    clean = ~is_noisy
    assert label_precision(selected, is_noisy) == pytest.approx(
        precision_score(clean, selected, zero_division=0.0), abs=1e-12
    )
    assert label_recall(np.flatnonzero(selected), is_noisy) == pytest.approx(
        recall_score(clean, selected, zero_division=0.0), abs=1e-12
    )


def test_label_precision_recall_match_incv_theory():
    # METHODS.md §2.1: a perfect model on sym noise with C classes keeps
    # LR = 1 - eps and LP = (1-eps)^2 / ((1-eps)^2 + eps^2/(C-1)).
    # Construct an exact population: eps = 0.2, C = 5 -> per 100 examples, 80 clean, 20 noisy;
    # kept clean = (1-eps)^2 = 64 of 100 (64/80 of clean), kept noisy = eps^2/(C-1) = 1 of 100.
    is_noisy = np.array([False] * 80 + [True] * 20)
    selected = np.r_[np.arange(64), 80 + np.arange(1)]
    eps, C = 0.2, 5
    assert label_recall(selected, is_noisy) == pytest.approx(1 - eps)
    assert label_precision(selected, is_noisy) == pytest.approx((1 - eps) ** 2 / ((1 - eps) ** 2 + eps**2 / (C - 1)))
    assert label_precision(selected, is_noisy) == pytest.approx(64 / 65)


def test_label_precision_recall_empty_conventions():
    assert label_precision([], [True, False]) == 0.0
    assert label_recall([0, 1], [True, True]) == 0.0  # no clean examples
    assert label_precision([1], [True, False]) == 1.0
    assert label_recall([1], [True, False]) == 1.0


# ------------------------------------------------------------------------------------------
# selection / mask error paths (shared by PRF and LP/LR)
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("func, name", [
    (detection_precision_recall_f1, "is_issue"),
    (label_precision, "selected"),
    (label_recall, "selected"),
])
def test_selection_errors(func, name):
    truth = [True, False, False, True]
    with pytest.raises(NoisylabInputError, match=rf"{name} contains index 4, out of range for 4 examples"):
        func([0, 4], truth)
    with pytest.raises(NoisylabInputError, match=rf"{name} contains index -1, out of range"):
        func([-1, 2], truth)
    with pytest.raises(NoisylabInputError, match=rf"{name} must contain unique indices; index 2 appears 2 times"):
        func([2, 2, 3], truth)
    with pytest.raises(NoisylabInputError, match=rf"{name} is a boolean mask of length 3, but is_noisy has 4"):
        func([True, False, True], truth)
    with pytest.raises(NoisylabInputError, match=rf"{name} must be a boolean mask of shape \(4,\) or an array of "
                                                 r"integer indices; got dtype float64"):
        func([0.0, 1.0], truth)
    with pytest.raises(NoisylabInputError, match=rf"{name} must be 1-D with shape \(n,\); got shape \(2, 2\)"):
        func([[0, 1], [2, 3]], truth)
    with pytest.raises(NoisylabInputError, match=r"looks like a 0/1 mask.*astype\(bool\)"):
        func([1, 0, 0, 1], truth)


@pytest.mark.parametrize("func", [
    lambda m: detection_precision_recall_f1([0], m),
    lambda m: label_precision([0], m),
    lambda m: label_recall([0], m),
    lambda m: detection_auroc(m, [0.1, 0.2, 0.3][: len(m)] if len(m) <= 3 else np.zeros(len(m))),
    lambda m: precision_at_k(m, np.zeros(len(m)), 1),
])
def test_is_noisy_mask_errors(func):
    with pytest.raises(NoisylabInputError, match=r"is_noisy must be a boolean mask \(or 0/1 integers\); "
                                                 r"got value 2 at index 1"):
        func([0, 2, 1])
    with pytest.raises(NoisylabInputError, match=r"is_noisy must be a boolean mask .* got dtype float64 "
                                                 r"\(did you pass scores"):
        func([0.3, 0.9, 0.1])
    with pytest.raises(NoisylabInputError, match=r"is_noisy is empty"):
        func([])
    with pytest.raises(NoisylabInputError, match=r"is_noisy must be 1-D with shape \(n,\); got shape \(1, 3\)"):
        func([[True, False, True]])
    with pytest.raises(NoisylabInputError, match=r"is_noisy must be a 1-D array; got a string"):
        func("TFT")


def test_errors_are_value_errors():
    with pytest.raises(ValueError):
        detection_auroc([True, True], [0.1, 0.2])


# ------------------------------------------------------------------------------------------
# noise matrix / noise rate
# ------------------------------------------------------------------------------------------
def test_noise_matrix_error_hand_case():
    true = np.array([[0.8, 0.1, 0.0],
                     [0.1, 0.7, 0.2],
                     [0.1, 0.2, 0.8]])
    est = np.array([[0.7, 0.1, 0.0],
                    [0.2, 0.7, 0.3],
                    [0.1, 0.2, 0.7]])
    # D has four entries of +-0.1, five zeros: sum|D| = 0.4, sum D^2 = 0.04
    err = noise_matrix_error(est, true)
    assert err["mae"] == pytest.approx(0.4 / 9)
    assert err["rmse"] == pytest.approx(np.sqrt(0.04 / 9))
    assert err["rmse"] == pytest.approx(0.2 / 3)
    assert err["max_abs"] == pytest.approx(0.1)
    assert err["frobenius"] == pytest.approx(0.2)
    assert set(err) == {"mae", "rmse", "max_abs", "frobenius"}
    assert noise_matrix_error(true, true) == {"mae": 0.0, "rmse": 0.0, "max_abs": 0.0, "frobenius": 0.0}
    assert noise_matrix_error(est.tolist(), true.tolist())["frobenius"] == pytest.approx(0.2)


def test_noise_matrix_error_errors():
    I2, I3 = np.eye(2), np.eye(3)
    with pytest.raises(NoisylabInputError, match=r"same shape \(K, K\); got \(2, 2\) and \(3, 3\)"):
        noise_matrix_error(I2, I3)
    with pytest.raises(NoisylabInputError, match=r"estimated must be a square \(K, K\) matrix with K >= 1; "
                                                 r"got shape \(2, 3\)"):
        noise_matrix_error(np.ones((2, 3)), I2)
    with pytest.raises(NoisylabInputError, match=r"true must be a square .* got shape \(3,\)"):
        noise_matrix_error(I3, np.ones(3))
    bad = I2.copy()
    bad[1, 0] = np.nan
    with pytest.raises(NoisylabInputError, match=r"true must be finite; got nan at row 1, column 0"):
        noise_matrix_error(I2, bad)
    with pytest.raises(NoisylabInputError, match=r"numeric matrix; got dtype <U1"):
        noise_matrix_error([["a", "b"], ["c", "d"]], I2)


def test_noise_rate_error():
    assert noise_rate_error(0.25, 0.2) == pytest.approx(0.05)
    assert noise_rate_error(0.2, 0.25) == pytest.approx(0.05)
    assert noise_rate_error(np.float32(0.5), 0) == 0.5
    assert isinstance(noise_rate_error(0.1, 0.1), float)
    with pytest.raises(NoisylabInputError, match=r"estimated_rate must be in \[0\.0, 1\.0\]; got 1\.5"):
        noise_rate_error(1.5, 0.2)
    with pytest.raises(NoisylabInputError, match=r"true_rate must be a real number in \[0\.0, 1\.0\]; got nan"):
        noise_rate_error(0.1, float("nan"))
    with pytest.raises(NoisylabInputError, match=r"true_rate must be a real number.*got '0\.1'"):
        noise_rate_error(0.1, "0.1")


def test_noise_rate_from_matrix_hand_case():
    T = np.array([[0.8, 0.1, 0.0],
                  [0.1, 0.7, 0.2],
                  [0.1, 0.2, 0.8]])  # columns = true class, each sums to 1
    py = [0.5, 0.3, 0.2]
    # 1 - (0.8*0.5 + 0.7*0.3 + 0.8*0.2) = 1 - (0.40 + 0.21 + 0.16) = 0.23
    assert noise_rate_from_matrix(T, py) == pytest.approx(0.23)
    assert noise_rate_from_matrix(np.eye(4), np.full(4, 0.25)) == 0.0
    assert noise_rate_from_matrix([[0, 1], [1, 0]], [0.5, 0.5]) == 1.0
    assert noise_rate_error(noise_rate_from_matrix(T, py), 0.25) == pytest.approx(0.02)


def test_noise_rate_from_matrix_matches_realised_rate():
    rng = np.random.default_rng(0)
    K, n = 4, 200_000
    T = rng.dirichlet(np.ones(K), size=K).T + 2 * np.eye(K)
    T /= T.sum(axis=0, keepdims=True)
    py = rng.dirichlet(np.ones(K))
    y = rng.choice(K, size=n, p=py)
    cum = np.cumsum(T[:, y], axis=0)  # (K, n)
    noisy = (rng.random(n) > cum).sum(axis=0)
    noisy = np.minimum(noisy, K - 1)
    assert noise_rate_from_matrix(T, py) == pytest.approx(np.mean(noisy != y), abs=5e-3)


def test_noise_rate_from_matrix_errors():
    T = np.array([[0.8, 0.1], [0.2, 0.9]])
    with pytest.raises(NoisylabInputError, match=r"columns \(true classes\) must each sum to 1; column 0 sums "
                                                 r"to 0\.75.*pass the transpose"):
        noise_rate_from_matrix([[0.75, 0.25], [0.0, 1.0]], [0.5, 0.5])
    with pytest.raises(NoisylabInputError, match=r"entries must be probabilities in \[0, 1\]; got -0\.2 at row 1, "
                                                 r"column 0"):
        noise_rate_from_matrix([[1.0, 0.0], [-0.2, 1.0]], [0.5, 0.5])
    with pytest.raises(NoisylabInputError, match=r"py must be a numeric probability vector of shape \(2,\).*got "
                                                 r"shape \(3,\)"):
        noise_rate_from_matrix(T, [0.2, 0.3, 0.5])
    with pytest.raises(NoisylabInputError, match=r"py must sum to 1; got a sum of 0\.9"):
        noise_rate_from_matrix(T, [0.5, 0.4])
    with pytest.raises(NoisylabInputError, match=r"py must contain finite non-negative probabilities"):
        noise_rate_from_matrix(T, [1.5, -0.5])
    with pytest.raises(NoisylabInputError, match=r"py must contain finite non-negative probabilities"):
        noise_rate_from_matrix(T, [np.nan, 0.5])
    with pytest.raises(NoisylabInputError, match=r"noise_matrix must be a square \(K, K\) matrix"):
        noise_rate_from_matrix(np.ones((2, 3)) / 2, [0.5, 0.5])
    with pytest.raises(NoisylabInputError, match=r"noise_matrix must be finite; got inf at row 0, column 1"):
        noise_rate_from_matrix([[1.0, np.inf], [0.0, 1.0]], [0.5, 0.5])
