"""noisylab.torch.detect_eval: one detection pipeline (CL, AUM, dynamics baselines, LSTM, combined),
detection metrics, remove / repair and retrain, and the `noisylab bench detectors` runner."""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from scipy.stats import rankdata
from sklearn.metrics import average_precision_score, roc_auc_score

from noisylab._validation import NoisylabInputError
from noisylab.dynamics import confidence, forgetting_events, margins
from noisylab.torch import detect_eval as de
from noisylab.torch import robust
from noisylab.torch.data import load_gaussian_mixture
from noisylab.torch.detector import label_probabilities, load_pretrained
from noisylab.torch.recorder import load_dynamics
from noisylab.torch.robust import MethodResult, Protocol, prepare_data
from noisylab.torch.trainer import Trainer

TINY = {"model": "mlp", "model_kwargs": {"hidden": [16]}, "epochs": 6, "batch_size": 32, "lr": 0.02, "cv_folds": 2,
        "probe_per_class": 5, "schedule": "constant"}


pytestmark = pytest.mark.usefixtures("torch_one_thread")  # see tests/conftest.py


@pytest.fixture(scope="module")
def data():
    ds = load_gaussian_mixture(n=500, n_classes=3, n_features=2, separation=3.5, random_state=0)
    return prepare_data(ds, "symmetric:0.3", seed=1, probe_per_class=5)


@pytest.fixture(scope="module")
def protocol():
    return Protocol(**TINY)


@pytest.fixture(scope="module")
def scored(data, protocol, tmp_path_factory):
    folder = tmp_path_factory.mktemp("rec")
    return de.score_many(data, list(de.DETECTION_METHODS), protocol, seed=1, record_dir=folder), folder


# ------------------------------------------------------------------------------------- metrics
def test_detection_metrics_hand_values():
    q = np.array([0.2, 0.4, 0.6, 0.8, 0.1, 0.3])
    noisy = np.array([True, False, False, False, False, True])
    flagged = np.array([True, True, False, False, False, True])
    m = de.detection_metrics(q, noisy, flagged)
    # noise score -q, descending: row4 (clean), row0 (noisy), row5 (noisy), rows 1, 2, 3 (clean)
    # AUROC: each noisy row beats 3 of the 4 clean ones -> 6/8; AP = (1/2 + 2/3) / 2
    assert m["auroc"] == pytest.approx(0.75) and m["ap"] == pytest.approx(7 / 12)
    assert m["auroc"] == pytest.approx(roc_auc_score(noisy, -q))
    assert m["ap"] == pytest.approx(average_precision_score(noisy, -q))
    assert (m["n"], m["n_noisy"], m["n_flagged"]) == (6, 2, 3)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == 1.0 and m["f1"] == pytest.approx(0.8)
    # ties count one half; nothing flagged -> precision/f1 0; one class only -> NaN
    assert de.detection_metrics([0.5, 0.5], [True, False])["auroc"] == 0.5
    none = de.detection_metrics(q, noisy, np.zeros(6, dtype=bool))
    assert none["precision"] == 0.0 and none["recall"] == 0.0 and none["f1"] == 0.0
    assert np.isnan(de.detection_metrics(q, np.zeros(6, dtype=bool))["auroc"])
    assert "precision" not in de.detection_metrics(q, noisy)


def test_detection_metrics_errors():
    with pytest.raises(NoisylabInputError, match="has 3 entries"):
        de.detection_metrics([0.1, 0.2, 0.3], [True, False])
    with pytest.raises(NoisylabInputError, match="flagged must be a boolean array of shape"):
        de.detection_metrics([0.1, 0.2], [True, False], [True, False, True])
    with pytest.raises(NoisylabInputError, match="NaN"):
        de.detection_metrics([0.1, np.nan], [True, False])
    with pytest.raises(NoisylabInputError, match="is_noisy"):
        de.detection_metrics([0.1, 0.2], [2, 0])


# ---------------------------------------------------------------------------------- scoring
def test_every_method_finite_and_points_the_right_way(data, scored):
    res, _ = scored
    noisy = data.y != data.y_true
    assert 0.25 < noisy.mean() < 0.35
    assert list(res) == list(de.DETECTION_METHODS)
    for m, s in res.items():
        assert s.method == m and s.label_quality.shape == (len(data.y),)
        assert np.isfinite(s.label_quality).all(), m
        assert s.seconds > 0
        auroc = de.detection_metrics(s.label_quality, noisy)["auroc"]
        assert auroc > 0.7, (m, auroc)  # higher = cleaner: a reversed score would be < 0.3
    # flag precision well above the 30% of random flags (AUM's 99th-percentile rule over-flags after
    # only 6 epochs: its threshold samples are not yet memorised)
    for m, low in (("cl", 0.6), ("aum", 0.45), ("lstm", 0.6), ("lstm_margin", 0.6), ("combined", 0.6)):
        f = res[m].flagged
        assert f.dtype == bool and f.shape == noisy.shape and f.any() and noisy[f].mean() > low, m
    for m in ("margin", "confidence", "forgetting", "mean_loss"):
        assert res[m].flagged is None


def test_scores_are_what_the_docs_say(data, scored):
    res, folder = scored
    n, y = len(data.y), data.y
    # CL: self-confidence of the out-of-fold probabilities; noise-rate estimate = 1 - trace(joint)
    P = res["cl"].extra["pred_probs"]
    np.testing.assert_allclose(res["cl"].label_quality, P[np.arange(n), y])
    np.testing.assert_array_equal(res["cl"].extra["suggested_labels"], P.argmax(1))
    assert abs(res["cl"].extra["estimated_noise_rate"] - data.actual_noise_rate) < 0.1
    # shared run: the kept recordings hold every row (val_fraction 0); statistics recomputed from them
    ev, meta = load_dynamics(folder / "shared_eval_pass.npy")
    tf, meta_tf = load_dynamics(folder / "shared_train_forward.npy")
    assert meta["mode"] == "eval_pass" and meta_tf["mode"] == "train_forward"
    np.testing.assert_array_equal(meta["ids"], np.arange(n))
    np.testing.assert_array_equal(meta["labels"], y)
    np.testing.assert_allclose(res["confidence"].label_quality, confidence(ev, y))
    np.testing.assert_allclose(res["forgetting"].label_quality, -forgetting_events(tf, y))
    p = load_pretrained().score(label_probabilities(ev, y))
    np.testing.assert_allclose(res["lstm"].label_quality, 1 - p)
    np.testing.assert_array_equal(res["lstm"].flagged, p > 0.5)
    np.testing.assert_array_equal(res["lstm"].extra["suggested_labels"], np.asarray(ev[:, -1], np.float32).argmax(1))
    # lstm_margin: the shipped margin detector on the eval-pass logit margins
    det_m = load_pretrained(feature="margin")
    p_m = det_m.score(margins(ev, y))
    np.testing.assert_allclose(res["lstm_margin"].label_quality, 1 - p_m)
    np.testing.assert_array_equal(res["lstm_margin"].flagged, p_m > 0.5)
    assert res["lstm_margin"].extra["detector_feature"] == "margin"
    # combined: mean of the rank-normalised cl and lstm qualities; flags the round(n * rho) lowest
    r = lambda q: (rankdata(q) - 1) / (n - 1)
    comb = res["combined"]
    np.testing.assert_allclose(comb.label_quality, (r(res["cl"].label_quality) + r(1 - p)) / 2)
    k = round(res["cl"].extra["estimated_noise_rate"] * n)
    assert comb.flagged.sum() == k and comb.label_quality[comb.flagged].max() <= comb.label_quality[~comb.flagged].min()


def test_one_shared_training_serves_dynamics_and_lstm(data, protocol, monkeypatch, tmp_path):
    fits = []
    real_fit = Trainer.fit

    def counting_fit(self, X, y, *a, **k):
        fits.append(([type(c).__name__ for c in self.callbacks], len(y)))
        return real_fit(self, X, y, *a, **k)

    monkeypatch.setattr(Trainer, "fit", counting_fit)
    res = de.score_many(data, ["confidence", "forgetting", "lstm"], protocol, seed=2, measure_overhead=False)
    assert fits == [(["DynamicsRecorder", "DynamicsRecorder"], len(data.y))]
    assert all("overhead" not in s.extra and s.extra["shared_run"] for s in res.values())
    secs = {s.extra["seconds_recorded_fit"] for s in res.values()}
    assert len(secs) == 1  # one and the same recorded fit
    fits.clear()
    one = de.score_examples(data, "mean_loss", protocol, seed=2, record_dir=tmp_path)
    # with the overhead measured: the recorded fit, then the same fit without recorders
    assert fits == [(["DynamicsRecorder", "DynamicsRecorder"], len(data.y)), ([], len(data.y))]
    o = one.extra["overhead"]
    assert o["same_training"] is True  # the recorders do not change the training
    assert o["recording_overhead"] == pytest.approx(o["seconds_recorded_fit"] / o["seconds_plain_fit"] - 1)
    assert o["detection_overhead"] == pytest.approx(
        (o["seconds_recorded_fit"] + o["seconds_scoring"]) / o["seconds_plain_fit"] - 1)
    assert (tmp_path / "shared_eval_pass.npy").exists() and (tmp_path / "shared_train_forward.npy").exists()


def test_score_errors(data, protocol):
    with pytest.raises(NoisylabInputError, match="method"):
        de.score_examples(data, "variability", protocol, seed=0)
    with pytest.raises(NoisylabInputError, match="method"):
        de.score_many(data, ["cl", "nope"], protocol, seed=0)
    with pytest.raises(NoisylabInputError, match="ExperimentData"):
        de.score_examples((data.X, data.y), "cl", protocol, seed=0)
    with pytest.raises(NoisylabInputError, match="seed"):
        de.score_examples(data, "cl", protocol, seed=-1)
    with pytest.raises(NoisylabInputError, match="detector"):
        de.score_examples(data, "lstm", protocol, seed=0, detector=object())


# ------------------------------------------------------------------------------ retraining
def _spy(monkeypatch):
    calls = []

    def fake_fit_method(method, d, protocol=None, *, seed=0, **kw):
        calls.append((method, d, seed))
        return MethodResult(method=method, test_acc=0.625, test_acc_last=0.5, best_epoch=3, history=[], seconds=0.25,
                            seconds_per_epoch=0.05)

    monkeypatch.setattr(robust, "fit_method", fake_fit_method)
    return calls


def test_remove_and_retrain_removes_exactly_the_lowest_rows(data, protocol, monkeypatch):
    calls = _spy(monkeypatch)
    n = len(data.y)
    q = np.random.default_rng(0).permutation(n).astype(float)  # row i has rank q[i]
    q[[5, 9]] = -1.0  # a tie at the very bottom: lower index first
    out = de.remove_and_retrain(data, q, 0.1, protocol, seed=7)
    k = round(0.1 * n)
    expected = np.concatenate([[5, 9], np.flatnonzero((q >= 0) & (q < k - 2))[np.argsort(q[(q >= 0) & (q < k - 2)])]])
    np.testing.assert_array_equal(out["removed"], expected)
    (method, d, seed), = calls
    keep = np.setdiff1d(np.arange(n), expected)
    assert method == "standard" and seed == 7
    np.testing.assert_array_equal(d.X, data.X[keep])
    np.testing.assert_array_equal(d.y, data.y[keep])
    np.testing.assert_array_equal(d.y_true, data.y_true[keep])
    np.testing.assert_array_equal(d.X_test, data.X_test)
    noisy = data.y != data.y_true
    assert out["n_removed"] == k and out["fraction_source"] == "given"
    assert (out["test_acc"], out["test_acc_last"], out["best_epoch"]) == (0.625, 0.5, 3)
    assert out["removed_noisy"] == pytest.approx(noisy[expected].mean())
    assert out["noise_rate_after"] == pytest.approx(noisy[keep].mean())
    # "auto": the given estimate; 0 removes nothing
    auto = de.remove_and_retrain(data, q, "auto", protocol, seed=7, estimated_noise_rate=0.2)
    assert auto["n_removed"] == round(0.2 * n) and auto["fraction_source"] == "estimated_noise_rate"
    zero = de.remove_and_retrain(data, q, 0.0, protocol)
    assert zero["n_removed"] == 0 and len(calls[-1][1].y) == n


def test_repair_changes_exactly_the_top_k_labels(data, protocol, monkeypatch):
    calls = _spy(monkeypatch)
    n, K = len(data.y), data.n_classes
    q = np.linspace(1.0, 0.0, n)  # the last rows are the most suspicious
    suggested = data.y_true.copy()
    suggested[-3:] = (data.y[-3:] + 1) % K  # three deliberately different (and maybe wrong) suggestions
    out = de.repair_and_retrain(data, q, 0.2, suggested, protocol, seed=3)
    k = round(0.2 * n)
    top = np.arange(n - 1, n - 1 - k, -1)
    np.testing.assert_array_equal(out["repaired"], top)
    (_, d, _), = calls
    expected = data.y.copy()
    expected[top] = suggested[top]
    np.testing.assert_array_equal(d.y, expected)
    np.testing.assert_array_equal(d.X, data.X)
    np.testing.assert_array_equal(d.y_true, data.y_true)
    assert out["n_repaired"] == k
    assert out["n_changed"] == int(np.sum(suggested[top] != data.y[top]))
    assert out["repaired_correct"] == pytest.approx(np.mean(suggested[top] == data.y_true[top]))
    assert out["noise_rate_after"] == pytest.approx(np.mean(expected != data.y_true))
    assert data.y is not d.y and not np.array_equal(data.y, d.y)  # the caller's labels are untouched


def test_retrain_errors(data, protocol, monkeypatch):
    _spy(monkeypatch)
    n = len(data.y)
    q = np.zeros(n)
    for bad in (1.0, -0.1, 1.5, "half", True, float("nan")):
        with pytest.raises(NoisylabInputError, match=r"\[0, 1\)"):
            de.remove_and_retrain(data, q, bad, protocol)
    with pytest.raises(NoisylabInputError, match="estimated_noise_rate"):
        de.remove_and_retrain(data, q, "auto", protocol)
    with pytest.raises(NoisylabInputError, match=r"estimated_noise_rate must be a real number in \[0, 1\)"):
        de.remove_and_retrain(data, q, "auto", protocol, estimated_noise_rate=1.2)
    with pytest.raises(NoisylabInputError, match=f"has {n - 1} entries but there are {n}"):
        de.remove_and_retrain(data, q[1:], 0.1, protocol)
    with pytest.raises(NoisylabInputError, match="NaN"):
        de.remove_and_retrain(data, np.full(n, np.nan), 0.1, protocol)
    with pytest.raises(NoisylabInputError, match=f"suggested_labels has {n + 1} entries"):
        de.repair_and_retrain(data, q, 0.1, np.zeros(n + 1, dtype=int), protocol)
    with pytest.raises(NoisylabInputError, match="suggested_labels must lie in"):
        de.repair_and_retrain(data, q, 0.1, np.full(n, data.n_classes), protocol)
    with pytest.raises(NoisylabInputError, match=r"\[0, 1\)"):
        de.repair_and_retrain(data, q, 1.0, data.y, protocol)


# ------------------------------------------------------------------------------------- runner
def test_run_detector_cell_returns_every_key():
    spec = {"dataset": "gaussian", "dataset_kwargs": {"n": 400, "n_classes": 3, "separation": 3.5}, "bench": "x",
            "noise": "symmetric:0.3", "seed": 2, "methods": "cl,confidence,lstm,combined",
            "retrain_fraction": "auto", "repair_fraction": 0.1, **TINY}
    out = de.run_detector_cell(spec)
    json.dumps(out, allow_nan=False)  # JSON-able for the result store
    methods = ["cl", "confidence", "lstm", "combined"]
    assert out["methods"] == methods
    for m in methods:
        met = out["metrics"][m]
        assert {"auroc", "ap", "n", "n_noisy", "seconds"} <= set(met)
        assert out[f"auroc_{m}"] == met["auroc"] > 0.7 and out[f"ap_{m}"] == met["ap"]
        assert ("precision" in met) == (m != "confidence")
        assert out["retrain"][m]["n_removed"] == round(out["estimated_noise_rate"] * out["n_train"])
        assert out[f"retrain_acc_{m}"] == out["retrain"][m]["test_acc"]
        assert out["repair"][m]["n_repaired"] == round(0.1 * out["n_train"])
    assert out["retrain"]["fraction"] == pytest.approx(out["estimated_noise_rate"])
    assert out["retrain"]["baseline"]["test_acc"] == out["baseline_acc"]
    assert {"seconds_plain_fit", "seconds_recorded_fit", "recording_overhead", "detection_overhead"} <= set(
        out["overhead"])
    assert out["overhead_pct"] == pytest.approx(100 * out["overhead"]["detection_overhead"])
    assert out["detector"]["source"] == "mnist1d" and out["detector_seed_overlap"] is False
    assert 0.25 < out["actual_noise_rate"] < 0.35 and out["n_train"] + 15 + out["n_test"] == 400


def test_run_detector_cell_repeats_every_retraining_over_training_seeds():
    spec = {"dataset": "gaussian", "dataset_kwargs": {"n": 300, "n_classes": 3, "separation": 3.5}, "noise": "pair:0.3",
            "seed": 4, "methods": "confidence", "retrain_fraction": 0.2, "repair_fraction": 0.2,
            "measure_overhead": False, **TINY}
    one = de.run_detector_cell(spec)
    out = de.run_detector_cell({**spec, "retrain_repeats": 3})
    json.dumps(out, allow_nan=False)
    assert one["training_seeds"] == [4] and out["training_seeds"] == [4, 1004, 2004]
    # repeat 0 is the single-training cell; the others are the same retrainings with the other seeds
    data = prepare_data("gaussian", "pair:0.3", seed=4, probe_per_class=TINY["probe_per_class"],
                        dataset_kwargs=spec["dataset_kwargs"])
    proto = Protocol(**TINY)
    q = de.score_examples(data, "confidence", proto, seed=4).label_quality
    base, rem = out["retrain"]["baseline"], out["retrain"]["confidence"]
    assert base["test_acc_repeats"][0] == one["baseline_acc"]
    assert rem["test_acc_repeats"][0] == one["retrain_acc_confidence"]
    assert out["repair"]["confidence"]["test_acc_repeats"][0] == one["repair_acc_confidence"]
    assert base["test_acc_repeats"][2] == robust.fit_method("standard", data, proto, seed=2004).test_acc
    assert rem["test_acc_repeats"][1] == de.remove_and_retrain(data, q, 0.2, proto, seed=1004)["test_acc"]
    for block in (base, rem, out["repair"]["confidence"]):
        assert len(block["test_acc_repeats"]) == len(block["best_epochs"]) == 3
        assert block["test_acc"] == pytest.approx(np.mean(block["test_acc_repeats"]))
    assert out["baseline_acc"] == base["test_acc"] and out["retrain_acc_confidence"] == rem["test_acc"]
    for bad in (0, 1.5, True, "3"):
        with pytest.raises(NoisylabInputError, match="retrain_repeats must be an int >= 1"):
            de.run_detector_cell({**spec, "retrain_repeats": bad})


def test_run_detector_cell_single_method_and_errors():
    base = {"dataset": "gaussian", "dataset_kwargs": {"n": 300, "n_classes": 3}, "noise": "symmetric:0.3",
            "seed": 1, **TINY}
    out = de.run_detector_cell({**base, "method": "forgetting", "measure_overhead": False})
    assert out["auroc"] == out["auroc_forgetting"] and out["ap"] == out["ap_forgetting"]
    assert "overhead" not in out and "retrain" not in out and "detector" not in out
    with pytest.raises(NoisylabInputError, match="method"):
        de.run_detector_cell({**base, "method": "variability"})
    with pytest.raises(NoisylabInputError, match="exactly one of"):
        de.run_detector_cell({**base, "method": "cl", "methods": ["aum"]})
    with pytest.raises(NoisylabInputError, match="missing seed"):
        de.run_detector_cell({k: v for k, v in base.items() if k != "seed"} | {"method": "cl"})
    with pytest.raises(NoisylabInputError, match="retrain_fraction"):
        de.run_detector_cell({**base, "method": "cl", "retrain_fraction": 1.0})
    with pytest.raises(NoisylabInputError, match="unknown protocol field"):
        de.run_detector_cell({**base, "method": "cl", "epochz": 3})
    with pytest.raises(NoisylabInputError, match="needs method 'cl'"):
        de.run_detector_cell({**base, "method": "confidence", "retrain_fraction": "auto", "measure_overhead": False})


def test_runner_and_data_preparation_refuse_bad_specs():
    margin = load_pretrained(feature="margin")
    data = prepare_data("digits", "symmetric:0.3", seed=1, probe_per_class=0)
    with pytest.raises(NoisylabInputError, match="'lstm' \\(and 'combined'\\) read p\\(given label\\)"):
        de.score_many(data, ["lstm"], Protocol(epochs=2, model="mlp"), seed=1, detector=margin,
                      measure_overhead=False)
    with pytest.raises(NoisylabInputError, match="measure_overhead must be True or False; got 'no'"):
        de.run_detector_cell({"dataset": "digits", "noise": "symmetric:0.3", "seed": 1, "methods": "margin",
                              "epochs": 2, "measure_overhead": "no"})
    y = np.zeros(len(data.y) + len(data.y_probe), dtype=np.int64)
    with pytest.raises(NoisylabInputError, match="noisy labels or a noise spec"):
        prepare_data("digits", "symmetric:0.3", seed=1, labels=y)
    with pytest.raises(NoisylabInputError, match=r"labels must be \d+ integer labels in 0\.\.9"):
        prepare_data("digits", None, seed=1, labels=y[:-1])
    with pytest.raises(NoisylabInputError, match="probe_per_class must be an int >= 0; got -1"):
        prepare_data("digits", None, seed=1, probe_per_class=-1)
    with pytest.raises(NoisylabInputError, match="data must be an ExperimentData"):
        robust.fit_method("standard", (data.X, data.y), Protocol(epochs=1))
    with pytest.raises(NoisylabInputError, match="protocol must be a Protocol"):
        robust.fit_method("standard", data, {"epochs": 1})
    for seed in ("abc", 1.7):
        with pytest.raises(NoisylabInputError, match="seed must be an int >= 0"):
            robust.run_one({"dataset": "digits", "method": "standard", "seed": seed})


def test_mentormix_settings_use_the_stated_noise_level_not_the_truth():
    import dataclasses

    data = prepare_data("digits", "symmetric:0.45", seed=1, probe_per_class=0)
    hidden = dataclasses.replace(data, y_true=data.y.copy())  # same inputs and noisy labels, truth unknown
    p = Protocol(epochs=1, model="mlp")
    a = robust.fit_method("mentormix", data, p, seed=1).extra["mentormix"]
    b = robust.fit_method("mentormix", hidden, p, seed=1).extra["mentormix"]
    assert a == b and a["percentile"] == 0.6  # the 0.4 row (nearest to 0.45)


def test_auto_fraction_that_would_remove_nearly_everything_is_refused():
    # an under-trained run: the shipped LSTM flags every row, so "auto" would remove ~100% and retrain on one row
    spec = {"dataset": "digits", "noise": "symmetric:0.3", "seed": 1, "methods": "lstm", "epochs": 3,
            "device": "cpu", "measure_overhead": False, "retrain_fraction": "auto",
            "probe_per_class": 0}
    with pytest.raises(NoisylabInputError, match=r"estimated noise fraction for 'auto' is 1\.000"):
        de.run_detector_cell(spec)
