"""Bad input at the Python API level.

Every public entry point (find_label_issues, get_label_quality_scores,
compute_confident_joint -- which cleanlab leaves unchecked --, estimate_joint,
num_label_issues, order_label_issues, ConfidentLearning.fit) must reject bad
input with a ``NoisylabInputError`` (a ``ValueError``) whose message says what
was expected and what was received, accept the harmless variants (float
labels 1.0, integer one-hot probabilities, rows off by float rounding), and
never touch numpy's global RNG or mutate its inputs.
"""
from __future__ import annotations

import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _synth import make_pred_probs  # noqa: E402

import noisylab as nl  # noqa: E402
from noisylab import NoisylabInputError  # noqa: E402

N, K = 300, 4


@pytest.fixture(scope="module")
def data():
    """(labels, pred_probs float64, true labels) with 20% flipped labels."""
    y, P, t = make_pred_probs(N, K, noise=0.2, dtype=np.float64, seed=11)
    y.setflags(write=False)
    P.setflags(write=False)
    return y, P, t


def _mask(n=N):
    m = np.zeros(n, dtype=bool)
    m[::7] = True
    return m


#: Every public entry point that takes (labels, pred_probs).
API = {
    "find_label_issues": lambda y, P: nl.find_label_issues(y, P),
    "find_label_issues_ranked": lambda y, P: nl.find_label_issues(y, P, return_indices_ranked_by="normalized_margin"),
    "find_label_issues_both": lambda y, P: nl.find_label_issues(y, P, filter_by="both"),
    "get_label_quality_scores": lambda y, P: nl.get_label_quality_scores(y, P),
    "get_label_quality_scores_cwe": lambda y, P: nl.get_label_quality_scores(
        y, P, method="confidence_weighted_entropy"),
    "compute_confident_joint": lambda y, P: nl.compute_confident_joint(y, P),
    "estimate_joint": lambda y, P: nl.estimate_joint(y, P),
    "num_label_issues": lambda y, P: nl.num_label_issues(y, P),
    "order_label_issues": lambda y, P: nl.order_label_issues(_mask(len(P) if np.ndim(P) else N), y, P),
    "ConfidentLearning.fit": lambda y, P: nl.ConfidentLearning().fit(y, P),
}
#: Entry points that need at least two classes present in the labels.
NEEDS_TWO_CLASSES = ["find_label_issues", "find_label_issues_ranked", "find_label_issues_both",
                     "compute_confident_joint", "estimate_joint", "num_label_issues", "ConfidentLearning.fit"]


def _result(r):
    """Comparable values of an API result."""
    if isinstance(r, nl.ConfidentLearning):
        return [r.issue_mask_, r.ranked_issues_, r.label_quality_, r.confident_joint_, r.noise_matrix_,
                r.inverse_noise_matrix_, r.py_, np.asarray(r.noise_rate_), r.suggested_labels_, r.thresholds_]
    return [np.asarray(r)]


def assert_same_result(a, b):
    ra, rb = _result(a), _result(b)
    assert len(ra) == len(rb)
    for x, y in zip(ra, rb):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


def _set(P, row, col, value):
    P = np.array(P, dtype=np.float64)
    P[row, col] = value
    return P


def _scale_row(P, row, factor):
    P = np.array(P, dtype=np.float64)
    P[row] *= factor
    return P


def _negative_row(P):
    P = np.array(P, dtype=np.float64)
    P[7] = [-0.1, 0.6, 0.3, 0.2]  # sums to 1 but has a negative entry
    return P


def _with(y, idx, value, dtype=None):
    y = np.array(y, dtype=dtype)
    y[idx] = value
    return y


# (case id, make (labels, pred_probs) from (y, P), regexes the message must match)
BAD_CASES = [
    ("pred_probs_1d", lambda y, P: (y, P[:, 0]), [r"2-D", r"\(300,\)"]),
    ("pred_probs_3d", lambda y, P: (y, P[:, :, None]), [r"2-D", r"\(300, 4, 1\)"]),
    ("length_mismatch", lambda y, P: (y[:-1], P), [r"same number of examples", r"299 labels", r"300 rows"]),
    ("labels_longer", lambda y, P: (np.concatenate([y, y[:5]]), P), [r"305 labels", r"300 rows"]),
    ("nan", lambda y, P: (y, _set(P, 7, 2, np.nan)), [r"finite", r"nan", r"row 7", r"column 2"]),
    ("inf", lambda y, P: (y, _set(P, 7, 2, np.inf)), [r"finite", r"inf", r"row 7"]),
    ("neg_inf", lambda y, P: (y, _set(P, 9, 0, -np.inf)), [r"finite", r"-inf", r"row 9"]),
    ("negative", lambda y, P: (y, _negative_row(P)), [r"negative", r"-0\.1", r"row 7", r"column 0"]),
    ("row_sum_off_0.2", lambda y, P: (y, _scale_row(P, 7, 1.2)), [r"sum to 1", r"row 7", r"1\.2"]),
    ("row_sum_off_-0.2", lambda y, P: (y, _scale_row(P, 3, 0.8)), [r"sum to 1", r"row 3", r"0\.8"]),
    ("all_rows_off_0.02", lambda y, P: (y, np.asarray(P) * 1.02), [r"sum to 1", r"1\.02"]),
    ("zero_row", lambda y, P: (y, _scale_row(P, 5, 0.0)), [r"sum to 1", r"row 5"]),
    ("logits", lambda y, P: (y, np.abs(np.log(P))), [r"sum to 1", r"not logits"]),
    ("string_labels", lambda y, P: (np.array(["ant", "bee", "cat", "dog"])[y], P),
     [r"strings", r"encode_labels"]),
    ("float_label_1.5", lambda y, P: (_with(y, 3, 1.5, float), P), [r"whole numbers", r"1\.5"]),
    ("nan_label", lambda y, P: (_with(y, 3, np.nan, float), P), [r"NaN"]),
    ("bool_labels", lambda y, P: (np.asarray(y) > 0, P), [r"boolean"]),
    ("labels_n_by_1", lambda y, P: (np.asarray(y)[:, None], P), [r"1-D", r"\(300, 1\)"]),
    ("scalar_labels", lambda y, P: (3, P), [r"1-D"]),
    ("label_ge_K", lambda y, P: (_with(y, 7, 4), P), [r"class index 4", r"at index 7", r"4 columns"]),
    ("label_far_out", lambda y, P: (_with(y, 8, 10), P), [r"class index 10", r"4 columns"]),
    ("negative_label", lambda y, P: (_with(y, 5, -1), P), [r">= 0", r"-1", r"index 5"]),
    ("empty_both", lambda y, P: (np.array([], dtype=int), np.zeros((0, 4))), [r"empty"]),
    ("empty_labels", lambda y, P: (np.array([], dtype=int), P), [r"labels is empty"]),
    ("K_equals_1", lambda y, P: (np.zeros(N, dtype=int), np.ones((N, 1))), [r"at least 2 columns", r"\(300, 1\)"]),
    ("string_pred_probs", lambda y, P: (y, np.asarray(P).astype(str)), [r"numeric"]),
    ("object_pred_probs", lambda y, P: (y, np.asarray(P).astype(object)), [r"numeric"]),
    ("int_pred_probs_not_summing", lambda y, P: (y, np.full((N, 4), 1)), [r"sum to 1", r"4"]),
]


@pytest.mark.parametrize("api", list(API))
@pytest.mark.parametrize("case,make,patterns", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_input_raises_clear_error(data, api, case, make, patterns):
    y, P, _ = data
    labels, probs = make(y, P)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a bad input is an error, not a warning
        with pytest.raises(NoisylabInputError) as exc_info:
            API[api](labels, probs)
    msg = str(exc_info.value)
    assert isinstance(exc_info.value, ValueError)
    for pat in patterns:
        assert re.search(pat, msg), f"{pat!r} not in message {msg!r}"


def test_error_class_is_public_value_error():
    assert issubclass(NoisylabInputError, ValueError)
    assert nl.NoisylabInputError is NoisylabInputError
    assert "NoisylabInputError" in nl.__all__


@pytest.mark.parametrize("api", NEEDS_TWO_CLASSES + ["get_confident_thresholds"])
def test_all_labels_one_class_rejected(data, api):
    _, P, _ = data
    f = API.get(api) or (lambda y, P: nl.get_confident_thresholds(y, P))
    with pytest.raises(NoisylabInputError, match=r"only one class \(2\).*at least 2 classes"):
        f(np.full(N, 2), P)


def test_scores_accept_one_class_and_match_pred_probs(data):
    """Scoring needs no second class: self-confidence is just p[label]."""
    _, P, _ = data
    scores = nl.get_label_quality_scores(np.full(N, 2), P)
    np.testing.assert_array_equal(scores, P[:, 2])


# --------------------------------------------------------------------------
# harmless variants are accepted and give the same values
# --------------------------------------------------------------------------
@pytest.mark.parametrize("api", list(API))
def test_whole_float_labels_accepted(data, api):
    y, P, _ = data
    assert_same_result(API[api](y.astype(np.float64), P), API[api](y, P))
    assert_same_result(API[api](y.astype(np.float32), P), API[api](y, P))


@pytest.mark.parametrize("api", list(API))
def test_python_lists_accepted(data, api):
    y, P, _ = data
    assert_same_result(API[api](y.tolist(), P.tolist()), API[api](y, P))


@pytest.mark.parametrize("api", list(API))
def test_other_integer_label_dtypes_accepted(data, api):
    y, P, _ = data
    for dt in (np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32):
        assert_same_result(API[api](y.astype(dt), P), API[api](y, P))


@pytest.mark.parametrize("api", NEEDS_TWO_CLASSES)
def test_uint64_labels_accepted(data, api):
    y, P, _ = data
    assert_same_result(API[api](y.astype(np.uint64), P), API[api](y, P))


@pytest.mark.parametrize("api", list(API))
def test_integer_one_hot_pred_probs_work_as_float(data, api):
    y, _, t = data
    pred = t.copy()
    pred[::10] = (pred[::10] + 1) % K  # the model is wrong on 10% of the examples
    onehot_int = np.eye(K, dtype=np.int64)[pred]
    onehot_float = onehot_int.astype(np.float64)
    assert_same_result(API[api](y, onehot_int), API[api](y, onehot_float))


def test_integer_one_hot_values(data):
    y, _, t = data
    pred = t.copy()
    pred[::10] = (pred[::10] + 1) % K
    P = np.eye(K, dtype=np.int64)[pred]
    disagree = y != pred
    np.testing.assert_array_equal(nl.find_label_issues(y, P, filter_by="predicted_neq_given"), disagree)
    np.testing.assert_array_equal(nl.find_label_issues(y, P, filter_by="confident_learning"), disagree)
    np.testing.assert_array_equal(nl.get_label_quality_scores(y, P), (~disagree).astype(float))
    # the confident joint of one-hot predictions is the confusion matrix C[given, predicted]
    C = np.zeros((K, K), dtype=np.int64)
    np.add.at(C, (y, pred), 1)
    np.testing.assert_array_equal(nl.compute_confident_joint(y, P, calibrate=False), np.maximum(C, np.eye(K, dtype=int)))


# --------------------------------------------------------------------------
# rows that do not sum to 1
# --------------------------------------------------------------------------
def _off_by(P, dev, seed=0):
    """Rows scaled by factors in 1 +- dev (the worst exactly 1 + dev)."""
    rng = np.random.default_rng(seed)
    f = 1 + rng.uniform(-dev, dev, size=(P.shape[0], 1))
    f[5] = 1 + dev
    return np.asarray(P, dtype=np.float64) * f


@pytest.mark.parametrize("api", list(API))
def test_rows_off_by_0005_warn_and_are_renormalised(data, api):
    y, P, _ = data
    Poff = _off_by(P, 0.005)
    assert np.abs(Poff.sum(1) - 1).max() == pytest.approx(0.005)
    Pren = Poff / Poff.sum(axis=1, keepdims=True)
    with pytest.warns(UserWarning, match=r"do not sum to 1.*row 5 sums to 1\.005.*renormalis"):
        got = API[api](y, Poff)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        expected = API[api](y, Pren)  # already normalised: no warning
    assert_same_result(got, expected)


def test_renormalised_float32_result_equals_result_on_renormalised_input(data):
    y, P, _ = data
    P32 = _off_by(P, 0.008).astype(np.float32)
    P32ren = (P32 / P32.sum(axis=1, keepdims=True, dtype=np.float64)).astype(np.float32)
    with pytest.warns(UserWarning, match="renormalis"):
        scores = nl.get_label_quality_scores(y, P32)
    with pytest.warns(UserWarning, match="renormalis"):
        mask = nl.find_label_issues(y, P32)
    assert scores.dtype == np.float32
    np.testing.assert_array_equal(scores, nl.get_label_quality_scores(y, P32ren))
    np.testing.assert_array_equal(mask, nl.find_label_issues(y, P32ren))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_sum_tolerance_is_about_1e2(data, dtype):
    y, P, _ = data
    with pytest.warns(UserWarning, match="renormalis"):
        nl.find_label_issues(y, _off_by(P, 0.009).astype(dtype))
    with pytest.raises(NoisylabInputError, match=r"sum to 1.*tolerance"):
        nl.find_label_issues(y, _off_by(P, 0.015).astype(dtype))


@pytest.mark.parametrize("n_classes", [3, 10, 50])
def test_float16_rounding_only_gives_no_warning(n_classes):
    y, P16, _ = make_pred_probs(40 * n_classes, n_classes, dtype=np.float16, seed=4)
    dev = np.abs(P16.astype(np.float64).sum(axis=1) - 1)
    assert dev.max() > 0  # the rows really are off by float16 rounding
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for f in API.values():
            f(y, P16)
    scores = nl.get_label_quality_scores(y, P16)
    assert scores.dtype == np.float16  # kept, not upcast
    np.testing.assert_array_equal(scores, P16[np.arange(len(y)), y])


@pytest.mark.parametrize("n_classes,factor", [(200, 1.15), (1000, 1.5)])
def test_float16_rows_far_from_one_rejected_for_many_classes(n_classes, factor):
    y, P, _ = make_pred_probs(2 * n_classes, n_classes, dtype=np.float64, seed=4)
    P16 = (P * factor).astype(np.float16)
    with pytest.raises(NoisylabInputError, match="sum to 1"):
        nl.find_label_issues(y, P16)


# --------------------------------------------------------------------------
# options
# --------------------------------------------------------------------------
OPTION_TYPOS = [
    (lambda y, P: nl.find_label_issues(y, P, filter_by="prune_by_nose_rate"),
     "filter_by", "prune_by_noise_rate"),
    (lambda y, P: nl.find_label_issues(y, P, filter_by="confident-learning"),
     "filter_by", "confident_learning"),
    (lambda y, P: nl.find_label_issues(y, P, return_indices_ranked_by="self_confidense"),
     "return_indices_ranked_by", "self_confidence"),
    (lambda y, P: nl.get_label_quality_scores(y, P, method="normalised_margin"),
     "method", "normalized_margin"),
    (lambda y, P: nl.order_label_issues(_mask(), y, P, rank_by="confidence_weighted_entropyy"),
     "rank_by", "confidence_weighted_entropy"),
    (lambda y, P: nl.ConfidentLearning(filter_by="bothh").fit(y, P), "filter_by", "both"),
    (lambda y, P: nl.ConfidentLearning(rank_by="normalized_margins").fit(y, P), "rank_by", "normalized_margin"),
    (lambda y, P: nl.num_label_issues(y, P, estimation_method="off_diagonal_calibrate"),
     "estimation_method", "off_diagonal_calibrated"),
]


@pytest.mark.parametrize("call,name,suggestion", OPTION_TYPOS, ids=[f"{o[1]}-{o[2]}" for o in OPTION_TYPOS])
def test_unknown_option_suggests_closest(data, call, name, suggestion):
    y, P, _ = data
    with pytest.raises(NoisylabInputError) as exc_info:
        call(y, P)
    msg = str(exc_info.value)
    assert f"Unknown {name}" in msg
    assert f"Did you mean {suggestion!r}?" in msg
    assert "Expected one of:" in msg and repr(suggestion) in msg


def test_unknown_option_without_close_match_lists_options(data):
    y, P, _ = data
    with pytest.raises(NoisylabInputError) as exc_info:
        nl.find_label_issues(y, P, filter_by="xyz")
    msg = str(exc_info.value)
    assert "Did you mean" not in msg
    for m in nl.FILTER_METHODS:
        assert repr(m) in msg


@pytest.mark.parametrize("frac", [0, 0.0, 1.5, -0.1, float("nan")])
@pytest.mark.parametrize("where", ["find_label_issues", "ConfidentLearning"])
def test_bad_frac_noise(data, frac, where):
    y, P, _ = data
    with pytest.raises(NoisylabInputError, match=r"frac_noise must be"):
        if where == "find_label_issues":
            nl.find_label_issues(y, P, frac_noise=frac)
        else:
            nl.ConfidentLearning(frac_noise=frac).fit(y, P)


def test_frac_noise_in_range_flags_fewer(data):
    y, P, _ = data
    full = nl.find_label_issues(y, P)
    half = nl.find_label_issues(y, P, frac_noise=0.5)
    assert 0 < half.sum() < full.sum()
    assert not np.any(half & ~full)  # a subset of the full set


@pytest.mark.parametrize("where", ["find_label_issues", "ConfidentLearning"])
@pytest.mark.parametrize("ntr,pattern", [
    ([1, 2, 3], r"one entry per class \(4\).*\(3,\)"),
    ([1, 2, 3, 4, 5], r"one entry per class \(4\).*\(5,\)"),
    ([[1, 2, 3, 4]], r"one entry per class \(4\)"),
    ([1, -2, 3, 4], r"non-negative integers"),
    ([1, 2.5, 3, 4], r"non-negative integers"),
])
def test_bad_num_to_remove_per_class(data, where, ntr, pattern):
    y, P, _ = data
    with pytest.raises(NoisylabInputError, match=pattern):
        if where == "find_label_issues":
            nl.find_label_issues(y, P, num_to_remove_per_class=ntr)
        else:
            nl.ConfidentLearning(num_to_remove_per_class=ntr).fit(y, P)


@pytest.mark.parametrize("filter_by", ["confident_learning", "predicted_neq_given", "low_self_confidence"])
def test_num_to_remove_per_class_with_non_pruning_filter(data, filter_by):
    y, P, _ = data
    with pytest.raises(NoisylabInputError, match=rf"num_to_remove_per_class.*{filter_by}"):
        nl.find_label_issues(y, P, filter_by=filter_by, num_to_remove_per_class=[1, 1, 1, 1])
    with pytest.raises(NoisylabInputError, match=rf"num_to_remove_per_class.*{filter_by}"):
        nl.ConfidentLearning(filter_by=filter_by, num_to_remove_per_class=[1, 1, 1, 1]).fit(y, P)


def test_num_to_remove_per_class_values(data):
    y, P, _ = data
    ntr = np.array([3, 0, 5, 2])
    mask = nl.find_label_issues(y, P, filter_by="prune_by_class", num_to_remove_per_class=ntr)
    per_class = np.bincount(y[mask], minlength=K)
    assert np.all(per_class <= ntr)
    # the flagged examples of class k are the ones with the lowest p_k (up to the final argmax check)
    for k in range(K):
        rows = np.flatnonzero(y == k)
        lowest = rows[np.argsort(P[rows, k], kind="stable")[: ntr[k]]]
        assert set(np.flatnonzero(mask & (y == k))) <= set(lowest)


@pytest.mark.parametrize("cj,pattern", [
    (np.ones((3, 3), dtype=int), r"\(4, 4\).*\(3, 3\)"),
    (np.ones((4, 3), dtype=int), r"square"),
    (np.ones(4, dtype=int), r"square"),
    (-np.ones((4, 4), dtype=int), r"non-negative"),
    (np.full((4, 4), np.nan), r"finite"),
])
@pytest.mark.parametrize("where", ["find_label_issues", "estimate_joint", "num_label_issues_custom"])
def test_bad_confident_joint(data, cj, pattern, where):
    y, P, _ = data
    with pytest.raises(NoisylabInputError, match=pattern):
        if where == "find_label_issues":
            nl.find_label_issues(y, P, confident_joint=cj)
        elif where == "estimate_joint":
            nl.estimate_joint(y, P, confident_joint=cj)
        else:
            nl.num_label_issues(y, P, confident_joint=cj, estimation_method="off_diagonal_custom")


def test_given_confident_joint_is_used(data):
    y, P, _ = data
    cj = nl.compute_confident_joint(y, P)
    np.testing.assert_array_equal(nl.find_label_issues(y, P, confident_joint=cj), nl.find_label_issues(y, P))
    np.testing.assert_array_equal(nl.estimate_joint(y, P, confident_joint=cj), nl.estimate_joint(y, P))
    assert nl.estimate_joint(y, P).sum() == pytest.approx(1.0)
    np.testing.assert_allclose(nl.estimate_joint(y, P).sum(axis=1), np.bincount(y, minlength=K) / N)


def test_num_label_issues_does_not_silently_ignore_confident_joint(data):
    y, P, _ = data
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        try:
            nl.num_label_issues(y, P, confident_joint=np.ones((3, 3), dtype=int))
        except NoisylabInputError as exc:
            assert "confident_joint" in str(exc)
            return
    assert any("confident_joint" in str(w.message) for w in rec), "neither an error nor a warning"


def test_confident_joint_ignored_by_non_pruning_filter_warns(data):
    y, P, _ = data
    cj = nl.compute_confident_joint(y, P)
    with pytest.warns(UserWarning, match="confident_joint is not used"):
        mask = nl.find_label_issues(y, P, filter_by="confident_learning", confident_joint=cj)
    np.testing.assert_array_equal(mask, nl.find_label_issues(y, P, filter_by="confident_learning"))


@pytest.mark.parametrize("where", ["find_label_issues", "find_label_issues_mask", "order_label_issues"])
def test_unknown_rank_by_kwargs_key(data, where):
    y, P, _ = data
    bad = {"adjust_pred_prob": True}
    with pytest.raises(NoisylabInputError, match=r"adjust_pred_probs.*adjust_pred_prob'"):
        if where == "find_label_issues":
            nl.find_label_issues(y, P, return_indices_ranked_by="self_confidence", rank_by_kwargs=bad)
        elif where == "find_label_issues_mask":
            nl.find_label_issues(y, P, rank_by_kwargs=bad)
        else:
            nl.order_label_issues(_mask(), y, P, rank_by_kwargs=bad)


def test_adjust_pred_probs_with_entropy_rejected(data):
    y, P, _ = data
    with pytest.raises(NoisylabInputError, match="confidence_weighted_entropy"):
        nl.get_label_quality_scores(y, P, method="confidence_weighted_entropy", adjust_pred_probs=True)


@pytest.mark.parametrize("value", [-1, 1.5, True, "2"])
def test_bad_min_examples_per_class(data, value):
    y, P, _ = data
    with pytest.raises(NoisylabInputError, match=r"min_examples_per_class must be an int >= 0"):
        nl.find_label_issues(y, P, min_examples_per_class=value)
    with pytest.raises(NoisylabInputError, match=r"min_examples_per_class must be an int >= 0"):
        nl.ConfidentLearning(min_examples_per_class=value).fit(y, P)


@pytest.mark.parametrize("thresholds,pattern", [
    ([0.5, 0.5], r"4 finite numbers.*\(2,\)"),
    ([0.5, 0.5, np.nan, 0.5], r"4 finite numbers"),
])
def test_bad_thresholds(data, thresholds, pattern):
    y, P, _ = data
    with pytest.raises(NoisylabInputError, match=pattern):
        nl.compute_confident_joint(y, P, thresholds=thresholds)


@pytest.mark.parametrize("mask,pattern", [
    (lambda: _mask().astype(int), r"boolean array of shape \(300,\).*int64"),
    (lambda: _mask()[:-1], r"boolean array of shape \(300,\).*\(299,\)"),
])
def test_bad_label_issues_mask(data, mask, pattern):
    y, P, _ = data
    with pytest.raises(NoisylabInputError, match=pattern):
        nl.order_label_issues(mask(), y, P)


def test_order_label_issues_values(data):
    y, P, _ = data
    m = _mask()
    order = nl.order_label_issues(m, y, P)
    sc = P[np.arange(N), y]
    assert sorted(order.tolist()) == np.flatnonzero(m).tolist()
    assert np.all(np.diff(sc[order]) >= 0)


def test_unfitted_estimator_and_unknown_param():
    with pytest.raises(NoisylabInputError, match="not fitted"):
        nl.ConfidentLearning().severity_order()
    with pytest.raises(NoisylabInputError, match=r"Unknown parameter 'foo'"):
        nl.ConfidentLearning().set_params(foo=1)


def test_complex_pred_probs_rejected(data):
    y, P, _ = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(NoisylabInputError, match="pred_probs"):
            nl.find_label_issues(y, P + 0.5j)


def test_object_array_of_digit_strings_rejected_like_str_array(data):
    y, P, _ = data
    as_str = y.astype(str)
    with pytest.raises(NoisylabInputError, match="encode_labels"):
        nl.find_label_issues(as_str, P)  # numpy str array: rejected (passes today)
    with pytest.raises(NoisylabInputError, match="encode_labels"):
        nl.find_label_issues(as_str.astype(object), P)


def test_encode_labels_round_trip():
    codes, classes = nl.encode_labels(["dog", "cat", "fish", "cat"])
    assert classes.tolist() == ["cat", "dog", "fish"]
    assert codes.tolist() == [1, 0, 2, 0]
    codes, classes = nl.encode_labels(["dog", "cat"], classes=["fish", "dog", "cat"])
    assert codes.tolist() == [1, 2]
    with pytest.raises(NoisylabInputError, match=r"'bird' is not one of the 3 classes"):
        nl.encode_labels(["bird"], classes=["fish", "dog", "cat"])
    with pytest.raises(NoisylabInputError, match="unique"):
        nl.encode_labels(["cat"], classes=["cat", "cat"])


# --------------------------------------------------------------------------
# no global state, no mutation, read-only input
# --------------------------------------------------------------------------
def _call_everything(y, P):
    out = {name: f(y, P) for name, f in API.items()}
    out["ranked_adjusted"] = nl.find_label_issues(y, P, return_indices_ranked_by="self_confidence",
                                                  rank_by_kwargs={"adjust_pred_probs": True})
    out["ntr"] = nl.find_label_issues(y, P, filter_by="both", num_to_remove_per_class=[2, 2, 2, 2])
    out["frac"] = nl.find_label_issues(y, P, frac_noise=0.5)
    for fb in nl.FILTER_METHODS:
        out[fb] = nl.find_label_issues(y, P, filter_by=fb)
    out["thresholds"] = nl.get_confident_thresholds(y, P)
    out["latent"] = nl.estimate_py_and_noise_matrices_from_probabilities(y, P)
    out["calibrated"] = nl.num_label_issues(y, P, estimation_method="off_diagonal_calibrated")
    return out


def test_global_numpy_rng_untouched(data):
    y, P, _ = data
    np.random.seed(12345)
    before = np.random.get_state()
    _call_everything(y, P)
    with pytest.warns(UserWarning):
        _call_everything(y, _off_by(P, 0.005))
    after = np.random.get_state()
    assert before[0] == after[0]
    np.testing.assert_array_equal(before[1], after[1])
    assert before[2:] == after[2:]


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_inputs_not_mutated(dtype):
    y, P, _ = make_pred_probs(200, 4, dtype=dtype, seed=8)
    y0, P0 = y.copy(), P.copy()
    _call_everything(y, P)
    np.testing.assert_array_equal(y, y0)
    np.testing.assert_array_equal(P, P0)
    assert P.dtype == dtype and y.dtype == y0.dtype


def test_inputs_not_mutated_when_renormalising(data):
    y, P, _ = data
    Poff = _off_by(P, 0.005)
    Poff0 = Poff.copy()
    y0 = y.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        _call_everything(y, Poff)
    np.testing.assert_array_equal(Poff, Poff0)
    np.testing.assert_array_equal(y, y0)


def _assert_same_everything(a, b):
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], tuple):
            for x, z in zip(a[key], b[key]):
                np.testing.assert_array_equal(x, z)
        else:
            assert_same_result(a[key], b[key])


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_read_only_memory_mapped_pred_probs(tmp_path, dtype):
    y, P, _ = make_pred_probs(200, 4, dtype=dtype, seed=9)
    np.save(tmp_path / "p.npy", P)
    mm = np.load(tmp_path / "p.npy", mmap_mode="r")
    assert isinstance(mm, np.memmap) and not mm.flags.writeable
    y_ro = y.copy()
    y_ro.setflags(write=False)
    _assert_same_everything(_call_everything(y_ro, mm), _call_everything(y, P))
    np.testing.assert_array_equal(np.asarray(mm), P)
    del mm


def test_read_only_pred_probs_needing_renormalisation(tmp_path, data):
    y, P, _ = data
    Poff = _off_by(P, 0.005)
    np.save(tmp_path / "p.npy", Poff)
    mm = np.load(tmp_path / "p.npy", mmap_mode="r")
    with pytest.warns(UserWarning, match="renormalis"):
        got = nl.ConfidentLearning().fit(y, mm)
    assert_same_result(got, nl.ConfidentLearning().fit(y, Poff / Poff.sum(axis=1, keepdims=True)))
    np.testing.assert_array_equal(np.asarray(mm), Poff)
    del mm


@pytest.mark.parametrize("method", ["self_confidence", "normalized_margin"])
def test_overflowing_row_sum_is_a_clear_error_without_warnings(method):
    """Finite values whose row sum overflows float32 are rejected as a bad row sum, without a RuntimeWarning."""
    import warnings as _w

    import noisylab

    P = np.full((4, 3), 1 / 3, np.float32)
    P[1] = [3e38, 3e38, 0]
    with _w.catch_warnings():
        _w.simplefilter("error")
        with pytest.raises(noisylab.NoisylabInputError, match=r"row 1 sums to 6e\+38"):
            noisylab.find_label_issues([0, 1, 2, 0], P)
        with pytest.raises(noisylab.NoisylabInputError, match=r"row 1 sums to 6e\+38"):
            noisylab.get_label_quality_scores([0, 1, 2, 0], P, method=method)


def test_float16_renormalises_up_to_2e2_as_documented(data):
    y, P, _ = data
    with pytest.warns(UserWarning, match="renormalis"):
        nl.find_label_issues(y, _off_by(P, 0.015).astype(np.float16))
    with pytest.raises(NoisylabInputError, match=r"sum to 1.*tolerance"):
        nl.find_label_issues(y, _off_by(P, 0.03).astype(np.float16))


def test_thresholds_np_matrix_and_single_class_cv_messages(data):
    from sklearn.linear_model import LogisticRegression

    y, P, _ = data
    K = P.shape[1]
    with pytest.raises(NoisylabInputError, match=r"thresholds must be .* finite numbers .*got dtype <U1"):
        nl.compute_confident_joint(y, P, thresholds=["a"] * K)
    with pytest.raises(NoisylabInputError, match=r"got non-finite values"):
        nl.compute_confident_joint(y, P, thresholds=[0.5] * (K - 1) + [np.nan])
    with pytest.raises(NoisylabInputError, match=rf"got shape \({K - 1},\)"):
        nl.compute_confident_joint(y, P, thresholds=[0.5] * (K - 1))
    np.testing.assert_array_equal(nl.find_label_issues(y, np.asmatrix(P)), nl.find_label_issues(y, P))
    X = np.random.default_rng(0).normal(size=(30, 2))
    with pytest.raises(NoisylabInputError, match="single class"):
        nl.estimate_cv_predicted_probabilities(X, np.zeros(30, int), LogisticRegression(), cv_n_folds=3)
    with pytest.raises(NoisylabInputError, match=r"cv_n_folds must be an int >= 2; got 3\.0"):
        nl.estimate_cv_predicted_probabilities(X, np.arange(30) % 2, LogisticRegression(), cv_n_folds=3.0)
