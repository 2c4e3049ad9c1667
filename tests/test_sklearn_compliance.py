"""scikit-learn contract of TorchClassifier and CleanLearning: labels, feature names, targets, seeds, tags."""
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.exceptions import DataConversionWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import get_scorer

from noisylab._validation import NoisylabInputError
from noisylab.cleanlearning import CleanLearning

torch = pytest.importorskip("torch")
pd = pytest.importorskip("pandas")

from noisylab.torch.estimator import TorchClassifier


def _blobs(n_per_class=20, k=3, d=4, seed=0):
    rng = np.random.default_rng(seed)
    codes = np.repeat(np.arange(k), n_per_class)
    X = (rng.normal(size=(k * n_per_class, d)) + 4 * np.eye(k, d)[codes]).astype(np.float32)
    return X, codes


def _torch(**kw):
    params = {"model": "mlp", "epochs": 3, "batch_size": 16, "lr": 1e-2, "device": "cpu", "random_state": 0,
              "model_kwargs": {"hidden": (16,)}}
    params.update(kw)
    return TorchClassifier(**params)


def _cl(**kw):
    params = {"clf": LogisticRegression(max_iter=300), "cv_n_folds": 3}
    params.update(kw)
    return CleanLearning(**params)


# ---------------------------------------------------------------- F1: classes_ are the labels seen in y
@pytest.mark.parametrize("labels", [np.array([1, 3, 5]), np.array([-1, 1, 7]), np.array([1000, 2000, 3000]),
                                    np.array(["setosa", "versicolor", "virginica"])])
def test_torch_classes_are_the_sorted_labels_seen(labels):
    X, codes = _blobs()
    y = labels[codes]
    fitted = _torch().fit(X, y)
    np.testing.assert_array_equal(fitted.classes_, np.unique(y))
    P = fitted.predict_proba(X)
    assert P.shape == (X.shape[0], 3)
    # the labels are encoded, not modelled: the same network as on the codes 0..K-1
    np.testing.assert_array_equal(P, _torch().fit(X, codes).predict_proba(X))
    pred = fitted.predict(X)
    assert set(pred.tolist()) <= set(labels.tolist())
    np.testing.assert_array_equal(pred, labels[P.argmax(1)])
    assert fitted.score(X, y) > 0.9


def test_torch_binary_minus_one_one_and_scorers():
    X, codes = _blobs(k=2)
    y = np.where(codes == 1, 1, -1)
    fitted = _torch().fit(X, y)
    assert fitted.classes_.tolist() == [-1, 1] and fitted.predict_proba(X).shape == (40, 2)
    assert get_scorer("roc_auc")(fitted, X, y) > 0.9
    X3, c3 = _blobs()
    y3 = np.array([1, 3, 5])[c3]
    assert np.isfinite(get_scorer("neg_log_loss")(_torch().fit(X3, y3), X3, y3))


def test_torch_n_classes_still_keeps_index_columns():
    X, codes = _blobs()
    keep = codes < 2
    fitted = _torch(n_classes=3).fit(X[keep], codes[keep])
    assert fitted.classes_.tolist() == [0, 1, 2] and fitted.predict_proba(X).shape == (60, 3)
    with pytest.raises(NoisylabInputError, match="n_classes"):
        _torch(n_classes=2).fit(X, codes)


# ---------------------------------------------------------------- F2: feature_names_in_
@pytest.mark.parametrize("make", [_torch, _cl])
def test_feature_names_are_recorded_and_checked(make):
    X, codes = _blobs()
    df = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    fitted = make().fit(df, codes)
    assert fitted.feature_names_in_.tolist() == ["a", "b", "c", "d"] and fitted.n_features_in_ == 4
    with pytest.warns(UserWarning, match="X does not have valid feature names"):
        np.testing.assert_array_equal(fitted.predict_proba(df), fitted.predict_proba(df.to_numpy()))
    with pytest.raises(NoisylabInputError, match="feature names should match"):
        fitted.predict(df[["b", "a", "c", "d"]])
    with pytest.raises(NoisylabInputError, match="feature names should match"):
        fitted.predict(df.rename(columns={"a": "z"}))
    with pytest.raises(NoisylabInputError, match="X has 3 features, but .* is expecting 4"), \
            pytest.warns(UserWarning, match="X does not have valid feature names"):
        fitted.predict(X[:, :3])
    # a refit on a plain array forgets the names of the earlier fit
    assert not hasattr(make().fit(df, codes).fit(X, codes), "feature_names_in_")


def test_torch_refit_on_images_drops_tabular_attributes():
    X, codes = _blobs(n_per_class=10)
    df = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    clf = _torch(epochs=1, model_kwargs={"hidden": (4,)}).fit(df, codes)
    assert hasattr(clf, "feature_names_in_")
    clf.set_params(model="small_cnn", model_kwargs=None).fit(np.zeros((30, 1, 8, 8), np.float32), codes)
    assert not hasattr(clf, "feature_names_in_") and not hasattr(clf, "n_features_in_")


# ---------------------------------------------------------------- F3: continuous targets
@pytest.mark.parametrize("make", [_torch, _cl])
def test_continuous_target_is_refused_as_such(make):
    X, _ = _blobs()
    rng = np.random.default_rng(1)
    with pytest.raises(NoisylabInputError, match="Unknown label type: continuous.*classification target"):
        make().fit(X, rng.normal(size=60))
    # few distinct, repeated non-integral values: still a regression target, not 4 classes
    rounded = np.round(rng.uniform(0, 0.4, size=60), 1)
    with pytest.raises(NoisylabInputError, match="continuous"):
        make().fit(X, rounded)


@pytest.mark.parametrize("make", [_torch, _cl])
def test_whole_number_floats_and_object_ints_are_classes(make):
    X, codes = _blobs()
    fitted = make().fit(X, codes.astype(np.float64) + 1)
    assert fitted.classes_.tolist() == [1.0, 2.0, 3.0]
    assert make().fit(X, codes.astype(object)).classes_.tolist() == [0, 1, 2]


# ---------------------------------------------------------------- F4: a rare class is named by its label
def test_rare_class_error_names_the_users_label():
    X, codes = _blobs(n_per_class=6)
    names = np.array(["setosa", "versicolor", "virginica"])[codes]
    names[-2:] = "setosa"  # virginica keeps 4 examples, internal code 2
    with pytest.raises(NoisylabInputError, match=r"cv_n_folds=5 .*class 'virginica' has 4\."):
        _cl(cv_n_folds=5).fit(X, names)
    y = np.array([10, 20, 30])[codes]
    y[:3] = 30  # label 10 keeps 3 examples (code 0)
    with pytest.raises(NoisylabInputError, match=r"class 10 has 3\."):
        _cl(cv_n_folds=4).fit(X, y)
    assert _cl(cv_n_folds=3).fit(X, y).classes_.tolist() == [10, 20, 30]  # enough for 3 folds


# ---------------------------------------------------------------- F5: column-vector y
@pytest.mark.parametrize("make", [_torch, _cl])
def test_column_vector_y_is_ravelled_with_a_warning(make):
    X, codes = _blobs()
    y = np.array(["a", "b", "c"])[codes]
    with pytest.warns(DataConversionWarning, match="column-vector y"):
        col = make().fit(X, y.reshape(-1, 1))
    flat = make().fit(X, y)
    np.testing.assert_array_equal(col.classes_, flat.classes_)
    np.testing.assert_array_equal(col.predict_proba(X), flat.predict_proba(X))
    with pytest.raises(NoisylabInputError, match=r"1-D array of class labels; got shape \(60, 2\)"):
        make().fit(X, np.stack([y, y], axis=1))


# ---------------------------------------------------------------- F6: object-dtype X
def test_torch_numeric_object_X_is_converted_and_other_objects_refused():
    X, codes = _blobs()
    fitted = _torch().fit(pd.DataFrame(X).astype(object), codes)
    np.testing.assert_array_equal(fitted.predict_proba(X.astype(object)), _torch().fit(X, codes).predict_proba(X))
    bad = X.astype(object)
    bad[0, 0] = "a"
    with pytest.raises(NoisylabInputError, match="real numbers; got dtype object .*'a'"):
        _torch().fit(bad, codes)
    bad[0, 0] = {"foo": "bar"}
    with pytest.raises(NoisylabInputError, match="real numbers; got dtype object") as err:
        _torch().fit(bad, codes)
    assert isinstance(err.value, TypeError)  # as numpy / check_array raise it
    with pytest.raises(NoisylabInputError, match="Complex data not supported"):
        _torch().fit(X + 1j, codes)
    with pytest.raises(NoisylabInputError, match=r"0 feature\(s\) \(shape=\(60, 0\)\)"):
        _torch().fit(X[:, :0], codes)


# ---------------------------------------------------------------- F7: CleanLearning's tags follow clf
def test_cleanlearning_input_tags_follow_clf():
    from sklearn.utils import get_tags

    assert get_tags(CleanLearning()).input_tags.sparse  # default LogisticRegression takes sparse X
    assert not get_tags(CleanLearning(clf=_torch())).input_tags.sparse
    X, codes = _blobs()
    fitted = _cl().fit(sp.csr_matrix(X), codes)
    np.testing.assert_allclose(fitted.predict_proba(sp.csr_matrix(X)), fitted.predict_proba(X), rtol=1e-5)
    with pytest.raises(NoisylabInputError, match="[Ss]parse"):
        CleanLearning(clf=_torch(), cv_n_folds=2).fit(sp.csr_matrix(X), codes)


# ---------------------------------------------------------------- F8: random_state types
@pytest.mark.parametrize("make", [_torch, _cl])
def test_random_state_instances_none_and_refused_types(make):
    X, codes = _blobs()
    X = X + np.random.default_rng(3).normal(scale=2.0, size=X.shape).astype(np.float32)  # some label issues
    before = np.random.get_state()[1].copy()
    a = make(random_state=np.random.RandomState(0)).fit(X, codes)
    b = make(random_state=np.random.RandomState(0)).fit(X, codes)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))  # same fresh state, same fit
    seed = int(np.random.RandomState(0).randint(2**31 - 1))
    np.testing.assert_array_equal(a.predict_proba(X), make(random_state=seed).fit(X, codes).predict_proba(X))
    g = make(random_state=np.random.default_rng(0)).fit(X, codes)
    seed_g = int(np.random.default_rng(0).integers(2**31 - 1))
    np.testing.assert_array_equal(g.predict_proba(X), make(random_state=seed_g).fit(X, codes).predict_proba(X))
    assert make(random_state=None).fit(X, codes).predict_proba(X).shape == (60, 3)
    np.testing.assert_array_equal(np.random.get_state()[1], before)  # numpy's global RNG untouched
    with pytest.raises(NoisylabInputError, match="random_state must be None, an int >= 0, a numpy RandomState"):
        make(random_state="seed").fit(X, codes)
    with pytest.raises(NoisylabInputError, match="random_state must be an int >= 0; got -1"):
        make(random_state=-1).fit(X, codes)


def test_torch_random_state_instance_seed_is_recorded():
    X, codes = _blobs()
    rs = np.random.RandomState(5)
    fitted = _torch(random_state=rs).fit(X, codes)
    assert fitted.trainer_.seed_ == np.random.RandomState(5).randint(2**31 - 1)


def test_y_none_and_single_class_messages():
    X, _ = _blobs()
    for make in (_torch, _cl):
        with pytest.raises(NoisylabInputError, match="requires y to be passed, but the target y is None"):
            make().fit(X, None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(NoisylabInputError, match=r"single class \('cat'\).*one class"):
            _cl().fit(X, np.full(60, "cat"))
