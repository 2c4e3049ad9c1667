"""noisylab.torch.robust: the experiment protocol shared by `noisylab train` and `noisylab bench robust`."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from noisylab._validation import NoisylabInputError  # noqa: E402
from noisylab.torch.data import load_gaussian_mixture  # noqa: E402
from noisylab.torch.robust import (  # noqa: E402
    METHODS,
    Protocol,
    fit_method,
    parse_noise,
    prepare_data,
    pruning_class_weights,
    run_one,
)

TINY = dict(model="mlp", model_kwargs={"hidden": [16]}, epochs=3, incv_epochs=2, batch_size=64, lr=0.01,
            cv_folds=2, probe_per_class=5)


@pytest.fixture(scope="module")
def blobs():
    return load_gaussian_mixture(n=600, n_classes=3, n_features=2, separation=4.0, random_state=0)


def test_prepare_data_probe_is_clean_held_out_before_noise(blobs):
    d = prepare_data(blobs, "symmetric:0.4", seed=3, probe_per_class=5)
    train, test = blobs.split(0.3, random_state=3)
    assert len(d.y) + len(d.y_probe) == len(train.y) and len(d.y_test) == len(test.y)
    assert np.array_equal(np.bincount(d.y_probe, minlength=3), [5, 5, 5])
    # the probe carries true labels, and its rows are not in the training set
    rows = {tuple(r) for r in train.X.reshape(len(train.X), -1)}
    probe_rows = {tuple(r) for r in d.X_probe.reshape(len(d.X_probe), -1)}
    train_rows = {tuple(r) for r in d.X.reshape(len(d.X), -1)}
    assert probe_rows <= rows and not (probe_rows & train_rows)
    lookup = {tuple(r): int(t) for r, t in zip(train.X.reshape(len(train.X), -1), train.y)}
    assert [lookup[tuple(r)] for r in d.X_probe.reshape(len(d.X_probe), -1)] == d.y_probe.tolist()
    # exact symmetric noise: 40% of the rest flipped, always to another class
    assert d.actual_noise_rate == pytest.approx(0.4, abs=3 / len(d.y))
    assert np.allclose(d.noise_matrix.sum(axis=0), 1) and np.all(np.diag(d.noise_matrix) < 0.7)
    again = prepare_data(blobs, "symmetric:0.4", seed=3, probe_per_class=5)
    assert np.array_equal(again.y, d.y) and np.array_equal(again.X_probe, d.X_probe)
    assert not np.array_equal(prepare_data(blobs, "symmetric:0.4", seed=4, probe_per_class=5).y, d.y)


def test_prepare_data_pair_and_none(blobs):
    d = prepare_data(blobs, "pair:0.3", seed=0, probe_per_class=0)
    flipped = d.y != d.y_true
    assert np.array_equal(d.y[flipped], (d.y_true[flipped] + 1) % 3)
    assert len(d.y_probe) == 0
    clean = prepare_data(blobs, "none", seed=0)
    assert np.array_equal(clean.y, clean.y_true) and np.allclose(clean.noise_matrix, np.eye(3))


def test_parse_noise_and_errors(blobs):
    assert parse_noise("symmetric:0.5") == ("symmetric", 0.5)
    assert parse_noise(None) == (None, 0.0) and parse_noise("none") == (None, 0.0)
    with pytest.raises(NoisylabInputError, match="KIND:RATE"):
        parse_noise("symmetric")
    with pytest.raises(NoisylabInputError, match="Did you mean 'symmetric'"):
        parse_noise("symetric:0.2")
    with pytest.raises(NoisylabInputError, match="the probe needs 500"):
        prepare_data(blobs, None, probe_per_class=500)
    with pytest.raises(NoisylabInputError, match="unknown protocol field"):
        Protocol.from_dict({"epoch": 3})
    with pytest.raises(NoisylabInputError, match="Did you mean 'coteaching'"):
        fit_method("coteachin", prepare_data(blobs, None, probe_per_class=0))


def test_pruning_class_weights_hand_values():
    labels = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2])
    keep = np.array([1, 1, 0, 0, 1, 1, 1, 0, 0], dtype=bool)
    assert pruning_class_weights(labels, keep, 4).tolist() == [2.0, 1.0, 3.0, 1.0]


@pytest.mark.parametrize("method", ["standard", "clean", "coteaching", "forward", "forward_anchor",
                                    "cl_coteaching", "bootstrap_soft", "mixup", "mentormix", "incv", "l2r", "ieg"])
def test_methods_run_and_select_on_noisy_validation(blobs, method):
    d = prepare_data(blobs, "symmetric:0.3", seed=1, probe_per_class=5)
    res = fit_method(method, d, Protocol(**TINY), seed=1)
    val = [r["val_acc"] for r in res.history]
    assert res.best_epoch == int(np.argmax(val))  # first best noisy-validation epoch
    assert res.test_acc == res.history[res.best_epoch]["test_acc"] and res.test_acc_last == res.history[-1]["test_acc"]
    assert len(res.history) == TINY["epochs"] and res.test_acc > 0.5  # well-separated blobs
    if method == "cl_coteaching":
        assert 0 < res.extra["n_flagged"] < len(d.y) and res.extra["precision"] > 0.5
        assert res.extra["forget_rate"] == pytest.approx(res.extra["estimated_noise_rate"] / 2)
    if method == "coteaching":
        assert res.extra["forget_rate"] == pytest.approx(d.actual_noise_rate)


def test_clean_method_trains_on_true_labels(blobs):
    d = prepare_data(blobs, "pair:0.45", seed=0, probe_per_class=0)
    p = Protocol(**{**TINY, "epochs": 6})
    assert fit_method("clean", d, p, seed=0).test_acc > fit_method("standard", d, p, seed=0).test_acc - 0.02


def test_incv_protocol_budgets_reach_its_phases(blobs, monkeypatch):
    import noisylab.torch.methods as M

    seen = {}

    class Spy(M.INCV):
        def fit(self, *a, **k):
            seen.update(select=self.select_config.epochs, coteach=self.coteach_config.epochs, tk=self.num_gradual)
            return super().fit(*a, **k)

    monkeypatch.setattr(M, "INCV", Spy)
    d = prepare_data(blobs, "symmetric:0.3", seed=0, probe_per_class=0)
    fit_method("incv", d, Protocol(**{**TINY, "incv_epochs": 2, "incv_coteaching_epochs": 3, "incv_num_gradual": 2}))
    assert seen == {"select": 2, "coteach": 3, "tk": 2}
    res = fit_method("incv", d, Protocol(**{**TINY, "incv_epochs": 2}))  # defaults: the protocol's epochs / T_k
    assert seen == {"select": 2, "coteach": TINY["epochs"], "tk": Protocol().coteaching_num_gradual}
    assert len(res.history) == TINY["epochs"]


def test_incv_shared_validation_uses_the_other_methods_split(blobs, monkeypatch):
    import noisylab.torch.methods as M

    d = prepare_data(blobs, "symmetric:0.3", seed=0, probe_per_class=0)
    p = Protocol(**{**TINY, "incv_validation": "shared"})
    std = fit_method("standard", d, p, seed=3)
    got = {}

    class Spy(M.INCV):
        def fit(self, *a, **k):
            super().fit(*a, **k)
            got["val"], got["S"] = self.val_indices_, self.selected_indices_
            return self

    monkeypatch.setattr(M, "INCV", Spy)
    res = fit_method("incv", d, p, seed=3)
    from noisylab.torch.trainer import validation_split

    val = validation_split(d.y, p.val_fraction, 3)[1]
    np.testing.assert_array_equal(got["val"], val)  # the rows "standard" validated on
    assert len(std.history) == len(res.history) and not np.isin(got["S"], val).any()
    clean = d.y == d.y_true
    pool = np.setdiff1d(np.arange(len(d.y)), val)
    assert res.extra["selected_label_recall"] == pytest.approx(clean[got["S"]].sum() / clean[pool].sum())
    with pytest.raises(NoisylabInputError, match="incv_validation"):
        fit_method("incv", d, Protocol(**{**TINY, "incv_validation": "own"}), seed=3)


def test_clean_subset_trains_on_exactly_the_correctly_labelled_rows(blobs, monkeypatch):
    import noisylab.torch.robust as R

    d = prepare_data(blobs, "symmetric:0.4", seed=0, probe_per_class=0)
    seen = {}
    real_fit = R._fit

    def spy(strategy, data, protocol, seed, X=None, y=None, **kw):
        seen["X"], seen["y"] = X, y
        return real_fit(strategy, data, protocol, seed, X=X, y=y, **kw)

    monkeypatch.setattr(R, "_fit", spy)
    res = fit_method("clean_subset", d, Protocol(**TINY), seed=0)
    keep = d.y == d.y_true
    assert 0 < keep.sum() < len(d.y) and res.extra["n_kept"] == int(keep.sum())
    np.testing.assert_array_equal(seen["X"], d.X[keep])
    np.testing.assert_array_equal(seen["y"], d.y_true[keep])  # given == true on these rows
    assert res.test_acc > 0.5


def test_run_one_spec_round_trip_and_checkpoint_resume(tmp_path, blobs):
    spec = {"dataset": "gaussian", "dataset_kwargs": {"n": 600, "n_classes": 3, "separation": 4.0},
            "noise": "pair:0.3", "method": "standard", "seed": 0, **TINY}
    a = run_one(spec)
    b = run_one(dict(spec))
    assert a["test_acc"] == b["test_acc"] and a["curves"]["val_acc"] == b["curves"]["val_acc"]
    assert a["actual_noise_rate"] == pytest.approx(0.3, abs=0.01) and a["n_probe"] == 15
    with pytest.raises(NoisylabInputError, match="needs dataset, method and seed"):
        run_one({"dataset": "gaussian", "seed": 0})
    # a killed two-stage run resumes from its sub-checkpoints with the same result
    d = prepare_data(blobs, "symmetric:0.3", seed=2, probe_per_class=0)
    full = fit_method("forward_anchor", d, Protocol(**TINY), seed=2, checkpoint_dir=tmp_path / "ck")
    assert (tmp_path / "ck" / "first" / "checkpoint.pt").exists() and (tmp_path / "ck" / "main").exists()
    again = fit_method("forward_anchor", d, Protocol(**TINY), seed=2, checkpoint_dir=tmp_path / "ck")
    assert again.test_acc == full.test_acc and again.history[-1]["val_acc"] == full.history[-1]["val_acc"]


def test_methods_listed():
    for m in ("standard", "mixup", "coteaching", "incv", "cl_coteaching", "mentormix", "l2r", "ieg", "forward_cl"):
        assert m in METHODS


def test_mentormix_protocol_overrides_reach_the_strategy(blobs):
    d = prepare_data(blobs, "symmetric:0.5", seed=0, probe_per_class=0)
    table = fit_method("mentormix", d, Protocol(**TINY), seed=0).extra["mentormix"]
    assert table == {"alpha": 8.0, "percentile": 0.6, "second_reweight": True, "burn_in": 10}  # the 0.6 row
    mm = fit_method("mentormix", d, Protocol(**{**TINY, "mentormix_alpha": 0.25, "mentormix_second_reweight": False}),
                    seed=0).extra["mentormix"]
    assert mm == {**table, "alpha": 0.25, "second_reweight": False}
    with pytest.raises(NoisylabInputError, match="mentormix_second_reweight must be True, False or 'table'"):
        fit_method("mentormix", d, Protocol(**{**TINY, "mentormix_second_reweight": "no"}), seed=0)


def test_fit_method_refuses_forget_rate_outside_unit_interval(blobs):
    data = prepare_data(blobs, "symmetric:0.3", probe_per_class=0)
    for bad in (2.0, 1.0, -0.1, True):
        with pytest.raises(NoisylabInputError, match=r"forget_rate must be a number in \[0, 1\)"):
            fit_method("coteaching", data, Protocol(epochs=1), forget_rate=bad)


def test_incv_coteaching_phase_checkpoints_and_resumes(tmp_path, blobs):
    d = prepare_data(blobs, "symmetric:0.3", seed=2, probe_per_class=0)
    full = fit_method("incv", d, Protocol(**TINY), seed=2, checkpoint_dir=tmp_path / "ck")
    assert (tmp_path / "ck" / "main" / "checkpoint.pt").exists()  # the Co-teaching phase (selection is redone)
    again = fit_method("incv", d, Protocol(**TINY), seed=2, checkpoint_dir=tmp_path / "ck")
    assert again.test_acc == full.test_acc and again.history == full.history
