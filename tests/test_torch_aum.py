"""Tests of noisylab.torch.methods.aum.AUM: threshold sets, per-run AUMs from the recordings, flags,
and a real run on an easy noisy blob problem."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
from sklearn.metrics import roc_auc_score
from torch import nn

from noisylab._validation import NoisylabInputError
from noisylab.dynamics import (
    aum_flags,
    aum_scores,
    aum_threshold,
    margins,
    read_dynamics,
)
from noisylab.noise import symmetric_noise
from noisylab.torch.data import load_gaussian_mixture
from noisylab.torch.methods.aum import AUM
from noisylab.torch.recorder import load_dynamics
from noisylab.torch.trainer import TrainConfig


def small_mlp(n_outputs):
    return nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, n_outputs))


def cfg(**kw):
    base = {"epochs": 8, "batch_size": 32, "lr": 0.05, "device": "cpu", "random_state": 0}
    base.update(kw)
    return TrainConfig(**base)


pytestmark = pytest.mark.usefixtures("torch_one_thread")  # see tests/conftest.py


@pytest.fixture(scope="module")
def blobs():
    ds = load_gaussian_mixture(n=400, n_classes=4, n_features=2, separation=5.0, random_state=0)
    noisy = symmetric_noise(ds.y, 0.3, random_state=1)
    return ds.X, noisy.noisy_labels, ds.y, noisy.flip_mask


@pytest.fixture(scope="module")
def fitted(blobs, tmp_path_factory):
    X, y, y_true, _ = blobs
    folder = tmp_path_factory.mktemp("aum")
    return AUM(small_mlp, cfg(), record_dir=folder).fit(X, y, true_labels=y_true), folder


def test_aum_detects_noise_on_blobs(blobs, fitted):
    _, _, _, is_noisy = blobs
    aum, _ = fitted
    assert 0.2 < is_noisy.mean() < 0.4
    assert roc_auc_score(is_noisy, -aum.aum_) > 0.8
    # flagged examples are mostly the mislabelled ones
    assert aum.flagged_.sum() > 0 and is_noisy[aum.flagged_].mean() > 0.7
    assert np.allclose(aum.label_quality_, aum.aum_)


def test_threshold_sets_disjoint_and_sized(blobs, fitted):
    _X, y, _, _ = blobs
    aum, _ = fitted
    n, C = len(y), 4
    assert aum.n_classes_ == C and aum.n_threshold_ == n // C == 100
    a, b = aum.threshold_sets_
    assert len(a) == len(b) == 100 and len(np.intersect1d(a, b)) == 0
    assert np.all(np.diff(a) > 0) and np.all(np.diff(b) > 0)
    np.testing.assert_array_equal(aum.is_threshold_[0], np.isin(np.arange(n), a))
    np.testing.assert_array_equal(aum.is_threshold_[1], np.isin(np.arange(n), b))
    assert np.isfinite(aum.aum_).all()  # with two disjoint sets every example is regular at least once


def test_attributes_follow_from_the_recordings(blobs, fitted):
    _X, y, y_true, _ = blobs
    aum, folder = fitted
    assert aum.recording_paths_ == [folder / "aum_run0.npy", folder / "aum_run1.npy"]
    for r, path in enumerate(aum.recording_paths_):
        logits, meta = read_dynamics(path)
        # the torch reader sees the same file
        logits_t, _meta_t = load_dynamics(path)
        np.testing.assert_array_equal(logits, logits_t)
        assert meta["mode"] == "train_forward" and logits.shape == (len(y), 8, 5)  # C + 1 outputs
        expected_labels = np.where(aum.is_threshold_[r], 4, y)
        np.testing.assert_array_equal(meta["labels"], expected_labels)
        np.testing.assert_array_equal(meta["true_labels"], y_true)
        # AUM = mean margin of epochs 1..7 (epoch 0 skipped), margin over all 5 outputs
        M = margins(logits, meta["labels"]).astype(np.float64)
        np.testing.assert_allclose(aum.aum_runs_[r], M[:, 1:].mean(axis=1), rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(aum.aum_runs_[r], aum_scores(logits, meta["labels"]))
        thr = aum.is_threshold_[r]
        assert aum.thresholds_[r] == aum_threshold(aum.aum_runs_[r, thr], 99)
        np.testing.assert_array_equal(aum.run_flags_[r], ~thr & (aum.aum_runs_[r] < aum.thresholds_[r]))
    np.testing.assert_array_equal(aum.flagged_, aum_flags(aum.aum_runs_, aum.is_threshold_))
    # mean over the runs in which the example was regular
    reg = ~aum.is_threshold_
    expected = (aum.aum_runs_ * reg).sum(0) / reg.sum(0)
    np.testing.assert_allclose(aum.aum_, expected)
    both = reg.all(0)
    assert both.any() and np.allclose(aum.aum_[both], aum.aum_runs_[:, both].mean(0))


def test_model_name_single_run_and_reproducibility(blobs):
    X, y, _, _ = blobs
    kw = {"n_runs": 1, "threshold_fraction": 0.2, "percentile": 95}
    a1 = AUM("mlp", cfg(epochs=3), **kw).fit(X, y)
    a2 = AUM("mlp", cfg(epochs=3), **kw).fit(X, y)
    np.testing.assert_array_equal(a1.aum_runs_, a2.aum_runs_)
    np.testing.assert_array_equal(a1.threshold_sets_[0], a2.threshold_sets_[0])
    assert a1.recording_paths_ is None and a1.n_threshold_ == 80
    thr = a1.is_threshold_[0]
    assert np.isnan(a1.aum_[thr]).all() and np.isfinite(a1.aum_[~thr]).all()
    assert not a1.flagged_[thr].any()
    a3 = AUM("mlp", cfg(epochs=3), random_state=1, **kw).fit(X, y)
    assert not np.array_equal(a3.threshold_sets_[0], a1.threshold_sets_[0])


def test_threshold_count_options():
    assert AUM(small_mlp, cfg()).n_threshold(1000, 10) == 100            # runner: N // C
    assert AUM(small_mlp, cfg(), threshold_fraction=1 / 11).n_threshold(1000, 10) == 90  # paper: N / (C + 1)


def test_parameter_validation(blobs):
    X, y, _, _ = blobs
    with pytest.raises(NoisylabInputError, match="val_fraction=0"):
        AUM(small_mlp, cfg(val_fraction=0.1))
    with pytest.raises(NoisylabInputError, match=r"config.epochs \(1\) must exceed skip_epochs \(1\)"):
        AUM(small_mlp, cfg(epochs=1))
    with pytest.raises(NoisylabInputError, match="Did you mean 'mlp'"):
        AUM("mpl", cfg())
    with pytest.raises(NoisylabInputError, match="registered model name"):
        AUM(3, cfg())
    with pytest.raises(NoisylabInputError, match=r"percentile must be a real number in \(0, 100\]"):
        AUM(small_mlp, cfg(), percentile=0)
    with pytest.raises(NoisylabInputError, match="n_runs must be an int >= 1"):
        AUM(small_mlp, cfg(), n_runs=0)
    with pytest.raises(NoisylabInputError, match="n_runs \\* threshold_fraction must be <= 1"):
        AUM(small_mlp, cfg(), n_runs=3, threshold_fraction=0.4)
    with pytest.raises(NoisylabInputError, match="n_runs=5 disjoint threshold sets of 100 samples need 500"):
        AUM(small_mlp, cfg(), n_runs=5).fit(X, y)
    with pytest.raises(NoisylabInputError, match="AUM needs C \\+ 1 = 5"):
        AUM(lambda k: small_mlp(6), cfg(epochs=2)).fit(X, y)
    with pytest.raises(NoisylabInputError, match="labels go up to 4 but the model has only 4 outputs"):
        AUM(lambda k: small_mlp(4), cfg(epochs=2)).fit(X, y)
    with pytest.raises(NoisylabInputError, match=r"X must have shape \(n, \*example_shape\)"):
        AUM(small_mlp, cfg()).fit(X[:10], y)


def test_every_run_starts_from_the_same_weights_for_names_and_callables(blobs, monkeypatch):
    import noisylab.torch.methods.aum as aum_module
    from noisylab.torch.trainer import Callback

    class FirstWeights(Callback):
        def __init__(self):
            self.states = []

        def on_train_begin(self, trainer):
            self.states.append({k: v.clone() for k, v in trainer.strategy_.model.state_dict().items()})

    X, y, _, _ = blobs
    real_trainer = aum_module.Trainer
    for model in ("mlp", small_mlp):
        spy = FirstWeights()
        monkeypatch.setattr(aum_module, "Trainer",
                            lambda *a, callbacks=(), **kw: real_trainer(*a, callbacks=[*callbacks, spy], **kw))
        AUM(model, cfg(epochs=2), threshold_fraction=0.2, random_state=3).fit(X, y)
        first, second = spy.states  # two runs, disjoint threshold samples
        assert all(torch.equal(first[k], second[k]) for k in first), model
