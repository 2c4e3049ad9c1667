"""TorchClassifier: a scikit-learn classifier over noisylab's models and trainer; out-of-fold probabilities."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sklearn.base import clone  # noqa: E402

from noisylab._validation import NoisylabInputError  # noqa: E402
from noisylab.cv import cross_val_pred_probs, cv_folds  # noqa: E402
from noisylab.torch.estimator import TorchClassifier  # noqa: E402


@pytest.fixture(scope="module")
def blobs():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 60)
    X = (rng.normal(size=(180, 4)) + 3 * np.eye(3, 4)[y]).astype(np.float32)
    return X, y


def test_fit_predict_and_clone(blobs):
    X, y = blobs
    clf = TorchClassifier(model="mlp", epochs=15, batch_size=32, lr=1e-2, random_state=0)
    fitted = clone(clf).fit(X, y)
    P = fitted.predict_proba(X)
    np.testing.assert_allclose(P.sum(1), 1, atol=1e-6)
    assert fitted.score(X, y) > 0.9
    assert clone(clf).get_params() == clf.get_params()
    again = clone(clf).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(P, again)  # same seed, same weights
    other = TorchClassifier(model="mlp", epochs=15, batch_size=32, lr=1e-2, random_state=1).fit(X, y)
    assert not np.array_equal(other.predict_proba(X), P)


def test_n_classes_keeps_every_column(blobs):
    X, y = blobs
    keep = y < 2
    fitted = TorchClassifier(model="mlp", epochs=2, n_classes=3).fit(X[keep], y[keep])
    assert fitted.predict_proba(X).shape == (180, 3)


def test_out_of_fold_values_equal_per_fold_fits(blobs):
    X, y = blobs
    clf = TorchClassifier(model="mlp", epochs=5, batch_size=32, lr=1e-2, random_state=0)
    P = cross_val_pred_probs(clf, X, y, n_folds=3, random_state=0)
    for tr, te in cv_folds(y, 3, random_state=0):
        np.testing.assert_array_equal(P[te], clone(clf).fit(X[tr], y[tr]).predict_proba(X[te]))


def test_best_epoch_on_noisy_validation(blobs):
    X, y = blobs
    fitted = TorchClassifier(model="mlp", epochs=6, val_fraction=0.2, random_state=0).fit(X, y)
    assert fitted.trainer_.best_epoch_ is not None
    val = fitted.trainer_.history_.column("val_acc")
    assert fitted.trainer_.best_epoch_ == int(np.argmax(val))


def test_fitted_state_contract_and_refused_inputs(blobs):
    import scipy.sparse as sp
    from sklearn.exceptions import NotFittedError

    X, y = blobs
    clf = TorchClassifier(model="mlp", epochs=2, random_state=0)
    for method in (clf.predict, clf.predict_proba):
        with pytest.raises(NotFittedError):
            method(X)
    clf.fit(X, y)
    assert clf.n_features_in_ == 4
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(NoisylabInputError, match="NaN or infinite"):
        clf.predict(bad)
    with pytest.raises(NoisylabInputError, match="needs dense X; got a sparse csr_matrix"):
        TorchClassifier(epochs=1).fit(sp.csr_matrix(X), y)
    with pytest.raises(NoisylabInputError, match="real numbers; got dtype complex"):
        TorchClassifier(epochs=1).fit(X + 1j, y)
    images = TorchClassifier(model="small_cnn", epochs=1).fit(np.zeros((30, 1, 8, 8), np.float32), y[::6])
    assert not hasattr(images, "n_features_in_")
