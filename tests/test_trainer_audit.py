"""Regression tests for the trainer / models / Co-teaching audit (findings F1-F7, F9)."""
import functools
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from noisylab._validation import NoisylabInputError
from noisylab.torch.methods.coteaching import CoTeaching
from noisylab.torch.models import make_model
from noisylab.torch.trainer import (
    TrainConfig,
    Trainer,
    default_milestones,
    lr_factor,
    stratified_split,
)


def _data(n=60, d=16, k=3, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    X = (rng.normal(size=(n, d)) + y[:, None]).astype(np.float32)
    return X, y


def _weights(trainer):
    return [torch.cat([p.detach().flatten() for p in m.parameters()]) for m in trainer.strategy_.models]


def _cfg(**kw):
    base = {"epochs": 1, "batch_size": 16, "lr": 0.05}
    base.update(kw)
    return TrainConfig(**base)


# ------------------------------------------------------------------------------------------- F1
def test_docstring_factory_follows_random_state():
    X, y = _data()
    factory = functools.partial(make_model, "mlp", (16,), 3, hidden=(8,))
    a = Trainer(factory, _cfg(random_state=0)).fit(X, y)
    b = Trainer(factory, _cfg(random_state=0)).fit(X, y)
    c = Trainer(factory, _cfg(random_state=1)).fit(X, y)
    assert torch.equal(_weights(a)[0], _weights(b)[0])
    assert a.history_.without_timing() == b.history_.without_timing()
    assert not torch.equal(_weights(a)[0], _weights(c)[0])


def test_make_model_outside_trainer_keeps_its_semantics():
    state = torch.get_rng_state()
    m1 = make_model("mlp", (4,), 2, hidden=(3,))
    m2 = make_model("mlp", (4,), 2, hidden=(3,))
    assert torch.equal(torch.get_rng_state(), state)  # global torch RNG neither read nor advanced
    assert not torch.equal(m1.head.weight, m2.head.weight)  # OS entropy, as documented
    s1 = make_model("mlp", (4,), 2, 0, hidden=(3,))
    s2 = make_model("mlp", (4,), 2, 0, hidden=(3,))
    assert all(torch.equal(p, q) for p, q in zip(s1.state_dict().values(), s2.state_dict().values()))


def test_seeded_factory_weights_unchanged_by_trainer():
    # A factory with an int seed (as for models given by name) keeps exactly make_model's weights.
    X, y = _data()
    factory = functools.partial(make_model, "mlp", (16,), 3, 5, hidden=(8,))
    tr = Trainer(factory, _cfg(epochs=1, lr=1e-12, momentum=0.0, random_state=0))
    tr.fit(X, y)
    ref = factory()
    # lr ~ 0: the trained weights are the initial ones up to 1e-12 steps
    for p, q in zip(tr.strategy_.model.parameters(), ref.parameters()):
        assert torch.allclose(p, q, atol=1e-9)


def test_coteaching_unseeded_factory_gives_two_different_networks():
    X, y = _data()
    factory = functools.partial(make_model, "mlp", (16,), 3, hidden=(8,))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "identical weights" warning
        tr = Trainer(factory, _cfg(random_state=0), strategy=CoTeaching(0.2)).fit(X, y)
    f, g = _weights(tr)
    assert not torch.equal(f, g)
    tr2 = Trainer(factory, _cfg(random_state=0), strategy=CoTeaching(0.2)).fit(X, y)
    assert all(torch.equal(a, b) for a, b in zip(_weights(tr), _weights(tr2)))


# ------------------------------------------------------------------------------------------- F9
def test_coteaching_warning_names_fixed_seed_factory():
    X, y = _data()
    factory = functools.partial(make_model, "mlp", (16,), 3, 0, hidden=(8,))
    with pytest.warns(UserWarning, match="identical weights") as rec:
        Trainer(factory, _cfg(random_state=0), strategy=CoTeaching(0.2)).fit(X, y)
    msg = " ".join(str(w.message) for w in rec)
    assert "fixed random_state" in msg and "reset_parameters" not in msg


def test_coteaching_warning_for_module_instance_without_reset():
    class NoReset(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(16, 3))

        def forward(self, x):
            return x @ self.w

    X, y = _data()
    with pytest.warns(UserWarning, match="identical weights") as rec:
        Trainer(NoReset(), _cfg(random_state=0), strategy=CoTeaching(0.2)).fit(X, y)
    assert "reset_parameters" in " ".join(str(w.message) for w in rec)


# ------------------------------------------------------------------------------------------- F2
def test_default_milestones_and_step_error_message():
    assert default_milestones(100) == (50, 75)
    assert default_milestones(200) == (100, 150)
    assert default_milestones(2) == (1,)
    assert default_milestones(1) == ()
    with pytest.raises(NoisylabInputError, match=r"milestones=\(5, 7\) for epochs=10"):
        TrainConfig(epochs=10, schedule="step").validate()
    cfg = TrainConfig(epochs=8, schedule="step", milestones=default_milestones(8), gamma=0.5).validate()
    assert [lr_factor(cfg, e) for e in range(8)] == [1, 1, 1, 1, 0.5, 0.5, 0.25, 0.25]
    with pytest.raises(NoisylabInputError):
        default_milestones(0)


# ------------------------------------------------------------------------------------------- F5
def test_milestones_beyond_epochs_rejected():
    with pytest.raises(NoisylabInputError, match="smaller than epochs"):
        TrainConfig(epochs=3, schedule="step", milestones=(80, 120)).validate()
    with pytest.raises(NoisylabInputError, match="smaller than epochs"):
        TrainConfig(epochs=3, schedule="step", milestones=(1, 3)).validate()
    TrainConfig(epochs=3, schedule="step", milestones=(1, 2)).validate()


# ------------------------------------------------------------------------------------------- F3
@pytest.mark.skipif(torch.backends.mps.is_available(), reason="MPS is available here")
def test_unavailable_mps_device_is_a_clear_error():
    with pytest.raises(NoisylabInputError, match="device 'mps' is not usable: the MPS backend is not available"):
        TrainConfig(device="mps").validate()
    X, y = _data()
    with pytest.raises(NoisylabInputError, match="mps"):
        Trainer(functools.partial(make_model, "mlp", (16,), 3), _cfg(device="mps")).fit(X, y)


@pytest.mark.skipif(hasattr(torch, "xpu") and torch.xpu.is_available(), reason="XPU is available here")
def test_other_unavailable_backend_and_meta_are_clear_errors():
    with pytest.raises(NoisylabInputError, match="device 'xpu' is not usable"):
        TrainConfig(device="xpu").validate()
    with pytest.raises(NoisylabInputError, match="meta"):
        TrainConfig(device="meta").validate()
    TrainConfig(device="cpu").validate()


# ------------------------------------------------------------------------------------------- F4
def test_config_as_dict():
    X, y = _data()
    factory = functools.partial(make_model, "mlp", (16,), 3, 0, hidden=(8,))
    a = Trainer(factory, {"epochs": 1, "batch_size": 16, "lr": 0.05, "random_state": 0}).fit(X, y)
    b = Trainer(factory, _cfg(random_state=0)).fit(X, y)
    assert isinstance(a.config, TrainConfig)
    assert a.history_.without_timing() == b.history_.without_timing()
    with pytest.raises(NoisylabInputError, match="Did you mean 'lr'"):
        Trainer(factory, {"lrr": 0.1})
    with pytest.raises(NoisylabInputError, match="config must be a TrainConfig"):
        Trainer(factory, ["epochs", 1])
    tr = Trainer(factory, _cfg())
    tr.config = {"epochs": 1, "batch_size": 16}
    tr.fit(X, y)
    assert isinstance(tr.config, TrainConfig)


# ------------------------------------------------------------------------------------------- F6
def _old_split(y, f, rng):
    val = []
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        k = round(f * len(rows))
        if k:
            val.append(rng.permutation(rows)[:k])
    return np.sort(np.concatenate(val)) if val else np.arange(0)


def test_split_keeps_a_training_row_of_every_class():
    y = np.array([0] * 10 + [1] * 10 + [2] + [3] * 2 + [4] * 10)
    tr, va = stratified_split(y, 0.8, np.random.default_rng(0))
    assert set(np.unique(y[tr])) == {0, 1, 2, 3, 4}
    assert np.sum(y[tr] == 2) == 1 and np.sum(y[tr] == 3) == 1  # capped at n - 1 (round(1.6) = 2)
    # every other class gets exactly the rows it got before the cap (same random stream)
    old = _old_split(y, 0.8, np.random.default_rng(0))
    for c in (0, 1, 4):
        np.testing.assert_array_equal(va[y[va] == c], old[y[old] == c])
    assert len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == len(y)


def test_split_unchanged_when_every_class_has_enough_rows():
    y = np.random.default_rng(1).integers(0, 5, size=200)
    for f in (0.1, 0.2, 0.5, 0.7):
        _, va = stratified_split(y, f, np.random.default_rng(3))
        np.testing.assert_array_equal(va, _old_split(y, f, np.random.default_rng(3)))


def test_fit_with_singleton_class_trains_on_it():
    X, y = _data(n=61)
    y = y.copy()
    y[-1] = 3  # class 3 has a single row
    tr = Trainer(functools.partial(make_model, "mlp", (16,), 4, 0, hidden=(8,)),
                 _cfg(val_fraction=0.6, random_state=0)).fit(X, y)
    assert 60 in tr.train_indices_ and 60 not in tr.val_indices_


# ------------------------------------------------------------------------------------------- F7
def test_channels_last_input_shape_warns():
    with pytest.warns(UserWarning, match=r"channels-last.*\(3, 32, 32\)"):
        make_model("resnet32", (32, 32, 3), 10, 0)
    with pytest.warns(UserWarning, match="channels-last"):
        make_model("small_cnn", (8, 8, 1), 10, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_model("small_cnn", (1, 8, 8), 10, 0)
        make_model("small_cnn", (3, 8, 8), 10, 0)
        make_model("small_cnn", (8, 8), 10, 0)


def test_float64_batch_is_cast_and_integer_batch_is_a_clear_error():
    m = make_model("small_cnn", (1, 8, 8), 10, 0).eval()
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(m(x.double()), m(x))
        assert m(x.double()).dtype == torch.float32
    with pytest.raises(NoisylabInputError, match="floating-point batch.*uint8"):
        m((x * 255).to(torch.uint8))
