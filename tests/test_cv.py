"""Out-of-fold probabilities (noisylab.cv) and the CleanLearning estimator."""
import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

import noisylab as nl
from noisylab import NoisylabInputError
from noisylab.cleanlearning import CleanLearning
from noisylab.cv import combine_folds, cross_val_pred_probs, cv_folds, fold_path

FITS = []


class IndexSpy(ClassifierMixin, BaseEstimator):
    """X[:, 0] is the example index: remembers what it was trained on and fails if asked to score it."""

    def __init__(self, K=3):
        self.K = K

    def fit(self, X, y):
        self.seen_ = set(X[:, 0].astype(int).tolist())
        self.classes_ = np.unique(y)
        FITS.append(len(self.seen_))
        return self

    def predict_proba(self, X):
        asked = set(X[:, 0].astype(int).tolist())
        assert not (asked & self.seen_), "an example was scored by a model that saw it"
        return np.full((X.shape[0], self.classes_.shape[0]), 1.0 / self.classes_.shape[0])


@pytest.fixture(scope="module")
def digits_noisy():
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    res = nl.noise.symmetric_noise(y, 0.3, exact=True, random_state=0)
    return X, res.noisy_labels, y


def test_folds_are_stratified_disjoint_and_cover_everything():
    y = np.repeat(np.arange(3), [40, 30, 20])
    folds = cv_folds(y, 4, random_state=1)
    test = np.concatenate([te for _, te in folds])
    assert np.array_equal(np.sort(test), np.arange(y.size))
    for tr, te in folds:
        assert not np.intersect1d(tr, te).size and tr.size + te.size == y.size
        assert abs(np.bincount(y[te], minlength=3) - np.bincount(y, minlength=3) / 4).max() <= 1
    again = cv_folds(y, 4, random_state=1)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again))
    assert not np.array_equal(cv_folds(y, 4, random_state=2)[0][1], folds[0][1])


def test_out_of_fold_no_example_scored_by_a_model_that_saw_it():
    n = 120
    X = np.column_stack([np.arange(n), np.zeros(n)])
    y = np.arange(n) % 3
    P = cross_val_pred_probs(IndexSpy(), X, y, n_folds=4, random_state=0)
    np.testing.assert_allclose(P, 1 / 3)


def test_values_equal_a_manual_cross_validation(digits_noisy):
    X, y, _ = digits_noisy
    clf = LogisticRegression(max_iter=300)
    P = cross_val_pred_probs(clf, X, y, n_folds=3, random_state=5)
    expected = np.zeros_like(P)
    for tr, te in cv_folds(y, 3, random_state=5):
        expected[te] = clone(clf).fit(X[tr], y[tr]).predict_proba(X[te])
    np.testing.assert_allclose(P, expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(P.sum(1), 1, atol=1e-12)


def test_resume_one_fold_at_a_time_and_combine(tmp_path):
    n = 90
    X = np.column_stack([np.arange(n), np.zeros(n)])
    y = np.arange(n) % 3
    out = tmp_path / "folds"
    FITS.clear()
    assert cross_val_pred_probs(IndexSpy(), X, y, n_folds=3, folds=[1], out_dir=out) is None
    assert fold_path(out, 1, 3).exists() and not fold_path(out, 0, 3).exists() and len(FITS) == 1
    mtime = fold_path(out, 1, 3).stat().st_mtime_ns
    with pytest.raises(NoisylabInputError, match=r"fold\(s\) \[0, 2\] of 3 are missing"):
        combine_folds(out)
    P = cross_val_pred_probs(IndexSpy(), X, y, n_folds=3, out_dir=out)
    assert len(FITS) == 3  # only the two missing folds were fitted
    assert fold_path(out, 1, 3).stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(combine_folds(out), P)
    # a different seed (another split) must not reuse these files
    with pytest.raises(NoisylabInputError, match="different data, folds, seed or classifier"):
        cross_val_pred_probs(IndexSpy(), X, y, n_folds=3, random_state=9, out_dir=out)


def test_parallel_processes_give_the_same_result(digits_noisy):
    X, y, _ = digits_noisy
    clf = LogisticRegression(max_iter=200)
    a = cross_val_pred_probs(clf, X[:600], y[:600], n_folds=3, random_state=0)
    b = cross_val_pred_probs(clf, X[:600], y[:600], n_folds=3, random_state=0, n_jobs=2)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


def test_bad_inputs():
    y = np.arange(30) % 3
    X = np.zeros((30, 2))
    with pytest.raises(NoisylabInputError, match="n_folds must be an int >= 2; got 1"):
        cross_val_pred_probs(IndexSpy(), X, y, n_folds=1)
    with pytest.raises(NoisylabInputError, match="at least n_folds=20"):
        cross_val_pred_probs(IndexSpy(), X, y, n_folds=20)
    with pytest.raises(NoisylabInputError, match="same length"):
        cross_val_pred_probs(IndexSpy(), X[:10], y)
    with pytest.raises(NoisylabInputError, match="fit and predict_proba"):
        cross_val_pred_probs(object(), X, y)
    with pytest.raises(NoisylabInputError, match="give out_dir"):
        cross_val_pred_probs(IndexSpy(), X, y, folds=[0])
    with pytest.raises(NoisylabInputError, match="folds must be in 0..3"):
        cross_val_pred_probs(IndexSpy(), X, y, folds=[4], out_dir="unused")


def test_clean_learning_prunes_and_helps():
    """Digits with 35% pair noise: measured 0.820 test accuracy against 0.716 for the plain model."""
    X, y_true = load_digits(return_X_y=True)
    X = X / 16.0
    y_noisy = nl.noise.make_noise("pair", y_true, 0.35, exact=True, random_state=0).noisy_labels
    rng = np.random.default_rng(0)
    test = rng.permutation(y_true.size)[:500]
    train = np.setdiff1d(np.arange(y_true.size), test)
    cl = CleanLearning(LogisticRegression(max_iter=500), cv_n_folds=4).fit(X[train], y_noisy[train])
    P = cross_val_pred_probs(LogisticRegression(max_iter=500), X[train], y_noisy[train], n_folds=4, random_state=0)
    np.testing.assert_array_equal(cl.label_issues_mask_, nl.find_label_issues(y_noisy[train], P))
    flips = y_noisy[train] != y_true[train]
    precision = (cl.label_issues_mask_ & flips).sum() / cl.label_issues_mask_.sum()
    assert precision > 0.6  # measured 0.650 (pair noise is hard for a linear model)
    plain = LogisticRegression(max_iter=500).fit(X[train], y_noisy[train]).score(X[test], y_true[test])
    assert cl.score(X[test], y_true[test]) > plain + 0.05
    assert cl.predict_proba(X[test]).shape == (test.size, 10)


def test_clean_learning_is_a_scikit_learn_estimator(digits_noisy):
    from sklearn.model_selection import GridSearchCV

    X, y, _ = digits_noisy
    est = CleanLearning(LogisticRegression(max_iter=200), cv_n_folds=3)
    assert clone(est).get_params()["filter_by"] == "prune_by_noise_rate"
    grid = GridSearchCV(est, {"filter_by": ["prune_by_noise_rate", "both"]}, cv=2).fit(X[:600], y[:600])
    assert grid.best_params_["filter_by"] in ("prune_by_noise_rate", "both")
    mask = np.zeros(600, dtype=bool)
    mask[:50] = True
    fitted = CleanLearning(LogisticRegression(max_iter=200)).fit(X[:600], y[:600], label_issues=mask)
    assert fitted.label_issues_mask_ is mask and not hasattr(fitted, "pred_probs_")
    with pytest.raises(NoisylabInputError, match="boolean mask"):
        CleanLearning().fit(X[:600], y[:600], label_issues=np.zeros(5))


def test_dataframe_rows_are_positional_in_cv_and_cleanlearning():
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    y = np.arange(60) % 3
    X[np.arange(60), y] += 2.0
    ref = cross_val_pred_probs(LogisticRegression(), X, y, n_folds=3)
    # integer column labels and a reversed index: X[idx] would pick columns / labels, not rows
    df = pd.DataFrame(X, columns=[0, 1, 2], index=np.arange(60)[::-1])
    np.testing.assert_array_equal(cross_val_pred_probs(LogisticRegression(), df, y, n_folds=3), ref)
    ours = CleanLearning(LogisticRegression(), cv_n_folds=3).fit(df, y)
    plain = CleanLearning(LogisticRegression(), cv_n_folds=3).fit(X, y)
    np.testing.assert_array_equal(ours.label_issues_mask_, plain.label_issues_mask_)
    np.testing.assert_allclose(ours.predict_proba(df), plain.predict_proba(X))
    with pytest.raises(NoisylabInputError, match=r"n_folds must be an int >= 2; got 3\.0"):
        cross_val_pred_probs(LogisticRegression(), X, y, n_folds=3.0)
    with pytest.raises(NoisylabInputError, match="n_folds must be an int >= 2"):
        cv_folds(y, True)


def test_clean_learning_classes_are_the_labels_seen():
    from sklearn.exceptions import NotFittedError
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4))
    y = np.where(X[:, 0] > 0, 2, 1)  # labels {1, 2}: two columns, not three
    with pytest.raises(NotFittedError):
        CleanLearning().predict(X)
    cl = CleanLearning(LogisticRegression(), cv_n_folds=3).fit(X, y)
    assert cl.classes_.tolist() == [1, 2] and cl.predict_proba(X).shape == (300, 2) and cl.n_features_in_ == 4
    assert cl.score(X, y) > 0.95 and set(cl.predict(X)) <= {1, 2}
    names = np.where(y == 2, "dog", "cat")  # string labels, in a pipeline
    pipe = make_pipeline(StandardScaler(), CleanLearning(LogisticRegression(), cv_n_folds=3)).fit(X, names)
    assert pipe.classes_.tolist() == ["cat", "dog"] and set(pipe.predict(X)) <= {"cat", "dog"}
    np.testing.assert_array_equal(pipe[-1].label_issues_mask_,
                                  CleanLearning(LogisticRegression(), cv_n_folds=3).fit(
                                      StandardScaler().fit_transform(X), y).label_issues_mask_)
    # a refit with a given mask does not keep the earlier fit's probabilities
    cl.fit(X, y, label_issues=np.zeros(300, dtype=bool))
    assert not hasattr(cl, "pred_probs_")
    with pytest.raises(NoisylabInputError, match="fewer than two classes"):
        CleanLearning().fit(X, y, label_issues=y == 2)
    with pytest.raises(NoisylabInputError, match="single class"):
        CleanLearning().fit(X, np.ones(300))
