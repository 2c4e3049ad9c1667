"""Regression tests for the core audit findings C1-C5 and C8 (cv.py, noise.py, metrics.py)."""
import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression

import noisylab.noise as N
from noisylab import NoisylabInputError
from noisylab.cv import cross_val_pred_probs, cv_folds
from noisylab.metrics import precision_at_k

FITS = []


class MeanOfColumn0(ClassifierMixin, BaseEstimator):
    """Tiny deterministic classifier whose output depends on X: P(class 1) = sigmoid(mean of X[:, 0] seen)."""

    def fit(self, X, y):
        X = X.toarray() if sp.issparse(X) else np.asarray(X)
        self.classes_ = np.unique(y)
        self.w_ = float(X[:, 0].mean())
        FITS.append(1)
        return self

    def predict_proba(self, X):
        X = X.toarray() if sp.issparse(X) else np.asarray(X)
        p = 1.0 / (1.0 + np.exp(-(X[:, 0] - self.w_)))
        P = np.column_stack([1 - p, p])
        return P[:, : self.classes_.shape[0]]


def _data(n=80, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((n, 3))
    y = np.arange(n) % 2
    return X, y


# ---------------------------------------------------------------- C1: the fold fingerprint covers X
def test_resume_refuses_folds_computed_on_different_X(tmp_path):
    X, y = _data()
    first = cross_val_pred_probs(MeanOfColumn0(), X, y, out_dir=tmp_path)
    X_other = X.copy()
    X_other[0, 0] += 1.0  # one value changed, same shape and dtype
    with pytest.raises(NoisylabInputError, match="different data"):
        cross_val_pred_probs(MeanOfColumn0(), X_other, y, out_dir=tmp_path)
    with pytest.raises(NoisylabInputError, match="different data"):
        cross_val_pred_probs(MeanOfColumn0(), X.astype(np.float32), y, out_dir=tmp_path)
    # the same values resume without refitting, whatever the memory layout
    FITS.clear()
    again = cross_val_pred_probs(MeanOfColumn0(), np.asfortranarray(X), y, out_dir=tmp_path)
    assert FITS == [] and np.array_equal(first, again)


def test_resume_fingerprint_sparse_and_pandas(tmp_path):
    pd = pytest.importorskip("pandas")
    X, y = _data()
    S = sp.csr_matrix(X)
    cross_val_pred_probs(MeanOfColumn0(), S, y, out_dir=tmp_path / "s")
    S2 = S.copy()
    S2.data[3] += 1.0
    with pytest.raises(NoisylabInputError, match="different data"):
        cross_val_pred_probs(MeanOfColumn0(), S2, y, out_dir=tmp_path / "s")
    FITS.clear()
    cross_val_pred_probs(MeanOfColumn0(), sp.coo_matrix(X), y, out_dir=tmp_path / "s")  # same matrix, COO
    assert FITS == []
    df = pd.DataFrame(X, columns=["a", "b", "c"])
    cross_val_pred_probs(MeanOfColumn0(), df, y, out_dir=tmp_path / "d")
    df2 = df.copy()
    df2.iloc[5, 0] = -1.0
    with pytest.raises(NoisylabInputError, match="different data"):
        cross_val_pred_probs(MeanOfColumn0(), df2, y, out_dir=tmp_path / "d")


# ---------------------------------------------------------------- C2: COO and other sparse formats
@pytest.mark.parametrize("fmt", ["coo", "csc", "lil", "dok"])
def test_non_csr_sparse_X_works_like_csr(fmt):
    X, y = _data(120, seed=1)
    ref = cross_val_pred_probs(LogisticRegression(), sp.csr_matrix(X), y, n_folds=3)
    got = cross_val_pred_probs(LogisticRegression(), sp.csr_matrix(X).asformat(fmt), y, n_folds=3)
    assert np.array_equal(ref, got)


# ---------------------------------------------------------------- C3: no dense (K, K) blow-up
def test_stray_label_id_gives_clear_error_not_memory_error():
    y = np.zeros(1000, dtype=np.int64)
    y[1::2] = 1
    y[-1] = 100_000
    for fn in (N.symmetric_noise, N.uniform_noise, N.pair_noise):
        with pytest.raises(NoisylabInputError, match=r"class index 100000 \(at index 999\) but only 3 distinct.*"
                                                     r"pass n_classes=100001"):
            fn(y, 0.2, random_state=0)
    y[-1] = 10**12  # no K-sized allocation even to count the classes
    with pytest.raises(NoisylabInputError, match="only 3 distinct classes"):
        N.make_noise("symmetric", y, 0.2, random_state=0)
    y[-1] = 4000  # a moderate K is still inferred as before
    assert N.symmetric_noise(y, 0.2, random_state=0).n_classes == 4001


def _old_per_example_counts(T, n_y, rng):
    P = np.clip(T.T, 0.0, None)
    P = P / P.sum(axis=1, keepdims=True)
    return rng.multinomial(n_y, P).T.astype(np.int64)


@pytest.mark.parametrize("K", [2, 10, 100, 1001])
def test_per_example_counts_bit_identical_to_previous_code(K):
    g = np.random.default_rng(K)
    A = g.random((K, K)) ** 3
    for T in (N._check_noise_matrix(A / A.sum(axis=0)), N._symmetric(K, 0.37), N._pair(K, 0.3)):
        n_y = g.integers(0, 300, K)
        old = _old_per_example_counts(T, n_y, np.random.default_rng(7))
        assert np.array_equal(old, N._per_example_counts(T, n_y, np.random.default_rng(7)))


def test_realised_matrix_unchanged_and_fewer_dense_copies():
    K = 1500
    y = np.arange(15_000) % K
    y[y == 3] = 4  # class 3 absent: its column stays the identity column
    tracemalloc.start()
    res = N.pair_noise(y, 0.3, n_classes=K, random_state=0)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    n_y = np.bincount(y, minlength=K)
    C = np.zeros((K, K), dtype=np.int64)
    np.add.at(C, (res.noisy_labels, y), 1)
    expected = np.eye(K)
    present = n_y > 0
    expected[:, present] = C[:, present] / n_y[present][None, :]  # the previous formula
    assert np.array_equal(res.transition_matrix, expected)
    assert peak < 3.6 * K * K * 8  # was about 5 dense (K, K) float64 arrays, now 3


# ---------------------------------------------------------------- C4: precision_at_k by selection
def _old_precision_at_k(is_noisy, q, k):
    lowest = np.argsort(np.asarray(q, dtype=np.float64), kind="stable")[:k]
    return float(np.count_nonzero(np.asarray(is_noisy)[lowest])) / k


def test_precision_at_k_equals_full_stable_sort_with_ties():
    rng = np.random.default_rng(0)
    for trial in range(200):
        n = int(rng.integers(1, 60))
        q = rng.integers(0, int(rng.integers(1, 6)), n).astype(np.float64)  # heavy ties
        if trial % 3 == 0:
            q[q == 0] = -0.0
        truth = rng.random(n) < 0.4
        for k in {1, n, int(rng.integers(1, n + 1))}:
            assert precision_at_k(truth, q, k) == _old_precision_at_k(truth, q, k)
    q = np.zeros(10)
    truth = np.arange(10) < 3  # all tied: the lowest indices are taken
    assert precision_at_k(truth, q, 3) == 1.0 and precision_at_k(truth, q, 6) == 0.5


# ---------------------------------------------------------------- C5: cv argument checks
def test_cv_argument_checks():
    X, y = _data(40)
    with pytest.raises(NoisylabInputError, match=r"n_classes must be an int; got 3\.7"):
        cross_val_pred_probs(MeanOfColumn0(), X, y, n_classes=3.7)
    with pytest.raises(NoisylabInputError, match="n_classes must be an int; got '4'"):
        cross_val_pred_probs(MeanOfColumn0(), X, y, n_classes="4")
    with pytest.raises(NoisylabInputError, match="labels go up to 1 but n_classes=1"):
        cross_val_pred_probs(MeanOfColumn0(), X, y, n_classes=1)
    with pytest.raises(NoisylabInputError, match=r"folds must be in 0..3 \(ints\); got 0.9"):
        cross_val_pred_probs(MeanOfColumn0(), X, y, folds=[0.9], out_dir="unused")
    with pytest.raises(NoisylabInputError, match=r"folds must be in 0..3 \(ints\); got True"):
        cross_val_pred_probs(MeanOfColumn0(), X, y, folds=[True], out_dir="unused")
    with pytest.raises(NoisylabInputError, match="folds must be a list of ints"):
        cross_val_pred_probs(MeanOfColumn0(), X, y, folds=2, out_dir="unused")
    with pytest.raises(NoisylabInputError, match=r"got the class LogisticRegression \(write LogisticRegression\(\)"):
        cross_val_pred_probs(LogisticRegression, X, y)
    assert cross_val_pred_probs(MeanOfColumn0(), X, y, n_classes=np.int64(4)).shape == (40, 4)


# ---------------------------------------------------------------- C8: RandomState / None
def test_noise_accepts_randomstate_without_touching_global_rng():
    y = np.arange(500) % 10
    state = np.random.get_state()
    a = N.symmetric_noise(y, 0.4, random_state=np.random.RandomState(3))
    b = N.symmetric_noise(y, 0.4, random_state=np.random.RandomState(3))
    rs = np.random.RandomState(3)
    seed = int(np.random.RandomState(3).randint(np.iinfo(np.int64).max, dtype=np.int64))
    c = N.make_noise("symmetric", y, 0.4, random_state=rs)
    assert np.array_equal(a.noisy_labels, b.noisy_labels)
    assert np.array_equal(a.noisy_labels, N.symmetric_noise(y, 0.4, random_state=seed).noisy_labels)
    assert np.array_equal(c.noisy_labels, a.noisy_labels)
    d = N.make_noise("symmetric", y, 0.4, random_state=rs)
    assert not np.array_equal(c.noisy_labels, d.noisy_labels)  # the RandomState was advanced
    T = N.generate_noise_matrix_from_trace(5, 3.0, valid_noise_matrix=False, random_state=np.random.RandomState(1))
    assert T.shape == (5, 5)
    after = np.random.get_state()
    assert after[0] == state[0] and np.array_equal(after[1], state[1]) and after[2:] == state[2:]


def test_cv_accepts_none_and_randomstate(tmp_path):
    X, y = _data(60)
    state = np.random.get_state()
    seed = int(np.random.RandomState(5).randint(2**32, dtype=np.int64))
    a = cross_val_pred_probs(MeanOfColumn0(), X, y, random_state=np.random.RandomState(5))
    assert np.array_equal(a, cross_val_pred_probs(MeanOfColumn0(), X, y, random_state=seed))
    assert all(np.array_equal(f[1], g[1]) for f, g in
               zip(cv_folds(y, 4, np.random.RandomState(5)), cv_folds(y, 4, seed)))
    assert cross_val_pred_probs(MeanOfColumn0(), X, y, random_state=None).shape == (60, 2)
    assert len(cv_folds(y, 4, random_state=None)) == 4
    after = np.random.get_state()
    assert np.array_equal(after[1], state[1]) and after[2:] == state[2:]
    with pytest.raises(NoisylabInputError, match="random_state=None draws a new split"):
        cross_val_pred_probs(MeanOfColumn0(), X, y, random_state=None, out_dir=tmp_path)
    with pytest.raises(NoisylabInputError, match="random_state must be an int >= 0"):
        cross_val_pred_probs(MeanOfColumn0(), X, y, random_state=-1)


def test_precision_at_k_does_not_sort_all_scores(monkeypatch):
    """C4: an O(n) selection (np.argpartition), not a full O(n log n) sort of the n scores."""
    def no_sort(*args, **kwargs):
        raise AssertionError("precision_at_k sorted every score")

    monkeypatch.setattr(np, "argsort", no_sort)
    monkeypatch.setattr(np, "sort", no_sort)
    rng = np.random.default_rng(1)
    assert 0.0 <= precision_at_k(rng.random(1000) < 0.3, rng.random(1000), 50) <= 1.0
