"""Tests of noisylab.torch.detector: the LSTM noise detector on training dynamics (Jia et al.)."""
import copy
import importlib.util
import math
import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from noisylab._validation import NoisylabInputError
from noisylab.torch import detector as D
from noisylab.torch.detector import (
    LSTMDetector,
    NoiseDetector,
    detect_from_recording,
    label_probabilities,
    resample_sequences,
    train_detector,
)


def synth(n, E=20, noise_rate=0.3, seed=0):
    """p(ỹ) sequences: clean rows are learnt early (onset 1-6), noisy rows memorised late (9-16)."""
    rng = np.random.default_rng(seed)
    noisy = rng.random(n) < noise_rate
    onset = np.where(noisy, rng.uniform(9, 16, n), rng.uniform(1, 6, n))
    slope = rng.uniform(0.6, 1.5, n)
    t = np.arange(E)
    p = 0.1 + 0.85 / (1 + np.exp(-slope[:, None] * (t[None] - onset[:, None])))
    p = np.clip(p + rng.normal(0, 0.05, p.shape), 0.0, 1.0).astype(np.float32)
    return p, noisy


pytestmark = pytest.mark.usefixtures("torch_one_thread")  # see tests/conftest.py


@pytest.fixture(scope="module")
def fitted(torch_one_thread):
    seqs, noisy = synth(400, seed=0)
    return train_detector(seqs, noisy, epochs=4, lr=1e-2, random_state=0)


# ----------------------------------------------------------------------------------- network
def test_model_shapes_and_init():
    m = LSTMDetector()
    assert m(torch.rand(5, 7)).shape == (5, 2)
    assert m(torch.rand(5, 7, 1)).shape == (5, 2)
    H = 64
    # 2 layers: 4H x (in + H) weights + two 4H biases each; head 64 -> 2.
    expected = 4 * H * (1 + H) + 8 * H + 4 * H * (H + H) + 8 * H + (H * 2 + 2)
    assert sum(p.numel() for p in m.parameters()) == expected == 50562
    lstm = m.lstm
    assert (lstm.input_size, lstm.hidden_size, lstm.num_layers, lstm.batch_first, lstm.bidirectional) == \
        (1, 64, 2, True, False)
    for name, p in lstm.named_parameters():
        if name.startswith("weight"):  # orthogonal (4H x in): orthonormal columns
            assert torch.allclose(p.T @ p, torch.eye(p.shape[1]), atol=1e-5), name
        else:
            assert torch.all(p == 0.01), name
    # The output is the head applied to the LSTM output at the LAST time step.
    x = torch.rand(3, 9)
    out, _ = lstm(x.unsqueeze(-1))
    assert torch.allclose(m(x), m.fc(out[:, -1]))


# ------------------------------------------------------------------------------- resampling
def test_resample_hand_values_and_identity():
    s = np.array([[0.0, 1.0, 4.0, 9.0], [1.0, 1.0, 1.0, 1.0]])
    # Target positions x_j = j * 3 / 6 = 0, .5, 1, 1.5, 2, 2.5, 3.
    np.testing.assert_allclose(resample_sequences(s, 7),
                               [[0, 0.5, 1, 2.5, 4, 6.5, 9], [1, 1, 1, 1, 1, 1, 1]], atol=1e-6)
    # 4 -> 3: x = 0, 1.5, 3.
    np.testing.assert_allclose(resample_sequences(s, 3)[0], [0, 2.5, 9], atol=1e-6)
    r = resample_sequences(s, 4)
    assert r.dtype == np.float32 and np.array_equal(r, s.astype(np.float32))
    np.testing.assert_array_equal(resample_sequences(np.array([[0.25], [0.75]]), 3), [[0.25] * 3, [0.75] * 3])
    rng = np.random.default_rng(1)
    z = rng.random((5, 11))
    ref = np.stack([np.interp(np.linspace(0, 10, 30), np.arange(11), row) for row in z])
    np.testing.assert_allclose(resample_sequences(z, 30), ref, atol=1e-6)


def test_label_probabilities_hand_values():
    ln2, ln3 = math.log(2), math.log(3)
    logits = np.array([
        [[0, 0, 0], [ln2, 0, 0], [0, ln3, 0]],      # label 0: 1/3, 2/4, 1/5
        [[0, 0, ln2], [5, 5, 5], [ln3, 0, -50]],     # label 2: 2/4, 1/3, ~0
    ], dtype=np.float32)
    labels = np.array([0, 2])
    expected = np.array([[1 / 3, 0.5, 0.2], [0.5, 1 / 3, math.exp(-50) / 4]])
    p = label_probabilities(logits, labels)
    assert p.shape == (2, 3) and p.dtype == np.float32
    np.testing.assert_allclose(p, expected, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(label_probabilities(logits, labels, block_rows=1), p)
    np.testing.assert_allclose(label_probabilities(logits, labels, epochs_completed=2), expected[:, :2], rtol=1e-6)
    # float16 recordings are upcast (within float16 rounding of the logits).
    np.testing.assert_allclose(label_probabilities(logits.astype(np.float16), labels), expected, atol=2e-3)


# --------------------------------------------------------------------------------- learning
def test_detector_learns_late_rising_sequences(fitted):
    test_seqs, test_noisy = synth(1000, seed=1)  # a fresh draw
    p = fitted.score(test_seqs)
    assert p.shape == (1000,) and np.all((p >= 0) & (p <= 1))
    assert roc_auc_score(test_noisy, p) > 0.9
    np.testing.assert_allclose(fitted.label_quality(test_seqs), 1 - p)
    m = fitted.metadata_
    assert m["n"] == 400 and m["recording_epochs"] == 20 and fitted.length_ == 20 and m["n_val"] == 40
    # Kept epoch = first epoch with the best held-out AUROC; its metrics are the ones reported.
    aucs = [h["val_auroc"] for h in fitted.history_]
    assert fitted.best_epoch_ == int(np.argmax(aucs)) and m["val_auroc"] == max(aucs) > 0.9


def test_select_on_accuracy_keeps_best_accuracy_epoch():
    seqs, noisy = synth(400, seed=3)
    det = train_detector(seqs, noisy, epochs=4, lr=1e-2, select_on="accuracy", random_state=1)
    accs = [h["val_accuracy"] for h in det.history_]
    assert det.best_epoch_ == int(np.argmax(accs))
    # The kept module's held-out accuracy is the recorded one (recomputed independently here).
    from sklearn.model_selection import train_test_split
    s_split = int(np.random.SeedSequence(1).generate_state(3)[0] % (2**31))
    _, va = train_test_split(np.arange(400), test_size=0.1, random_state=s_split, stratify=noisy)
    assert np.mean((det.score(seqs[va]) > 0.5) == noisy[va]) == pytest.approx(max(accs))


def test_same_seed_same_detector_and_global_rng_untouched():
    seqs, noisy = synth(200, seed=4)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = train_detector(seqs, noisy, epochs=1, random_state=5)
    assert torch.equal(torch.get_rng_state(), before)
    b = train_detector(seqs, noisy, epochs=1, random_state=5)
    assert np.array_equal(a.score(seqs), b.score(seqs))
    c = train_detector(seqs, noisy, epochs=1, random_state=6)
    assert not np.array_equal(a.score(seqs), c.score(seqs))


@pytest.mark.parametrize("class_weight", [None, "balanced"])
def test_one_step_from_init_matches_manual_adamw(class_weight):
    """Fine-tuning starts from the given weights; one full-batch step = AdamW on the (weighted) CE."""
    seqs, noisy = synth(50, E=6, seed=5)
    torch.manual_seed(0)
    init = LSTMDetector()
    init_state = copy.deepcopy(init.state_dict())
    det = train_detector(seqs, noisy, epochs=1, batch_size=50, val_fraction=0, lr=1e-2, class_weight=class_weight,
                         init=init)
    assert all(torch.equal(v, init_state[k]) for k, v in init.state_dict().items())  # init not modified
    ref = copy.deepcopy(init)
    opt = torch.optim.AdamW(ref.parameters(), lr=1e-2, weight_decay=0.01)
    n1 = noisy.sum()
    w = None if class_weight is None else torch.tensor([50 / (2 * (50 - n1)), 50 / (2 * n1)], dtype=torch.float32)
    loss = F.cross_entropy(ref(torch.from_numpy(seqs)), torch.from_numpy(noisy.astype(np.int64)), weight=w)
    opt.zero_grad()
    loss.backward()
    opt.step()
    for k, v in ref.state_dict().items():
        assert torch.allclose(det.module_.state_dict()[k], v, atol=1e-6), k
    assert det.best_epoch_ == 0 and det.metadata_["val_auroc"] is None and det.metadata_["fine_tuned"]


def test_fine_tune_from_detector_keeps_its_length_and_weights(fitted):
    seqs, noisy = synth(300, E=40, seed=6)  # another number of epochs: resampled to the init's 20
    ft = train_detector(seqs, noisy, epochs=1, lr=1e-9, init=fitted)
    assert ft.length_ == 20 and ft.metadata_["recording_epochs"] == 40
    for k, v in fitted.module_.state_dict().items():
        assert torch.allclose(ft.module_.state_dict()[k], v, atol=1e-6), k
    assert ft.metadata_["fine_tuned"] is True
    fresh = train_detector(seqs, noisy, epochs=1, lr=1e-9, length=20)
    assert not torch.allclose(fresh.module_.fc.weight, fitted.module_.fc.weight, atol=1e-3)
    with pytest.raises(NoisylabInputError, match="hidden_size"):
        NoiseDetector(hidden_size=8).fit(seqs, noisy, init=fitted)


# ------------------------------------------------------------------------------ save / load
@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_save_load_round_trip(fitted, tmp_path, suffix):
    if suffix == ".safetensors" and importlib.util.find_spec("safetensors") is None:
        with pytest.raises(NoisylabInputError, match="pip install safetensors"):
            fitted.save(tmp_path / "det.safetensors")
        return
    path = fitted.save(tmp_path / f"det{suffix}")
    loaded = NoiseDetector.load(path)
    seqs, _ = synth(200, E=25, seed=7)
    assert np.array_equal(loaded.score(seqs), fitted.score(seqs))
    assert loaded.length_ == fitted.length_ and loaded.metadata_ == fitted.metadata_
    if suffix == ".pt":  # plain values and tensors only: a weights-only torch.load reads it
        raw = torch.load(path, weights_only=True)
        assert raw["format_version"] == 1 and raw["config"] == {"length": 20, "hidden_size": 64, "num_layers": 2,
                                                   "feature": "label_probability"}


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os
        return (os.mkdir, (self.marker,))


def _payload(fitted, **changes):
    p = {"format": D.DETECTOR_FORMAT, "format_version": 1, "config": fitted._config(),
         "metadata": "{}", "state_dict": {k: v.clone() for k, v in fitted.module_.state_dict().items()}}
    p.update(changes)
    return p


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("case, match", [
    ("garbage", "not a readable"),
    ("truncated", "not a readable"),
    ("evil_torch", "not a readable"),
    ("evil_pickle", "not a readable"),
    ("version", "version 99"),
    ("format", "not a noisylab LSTM detector"),
    ("shape", "weight_hh_l0"),
    ("missing_param", "parameter names"),
    ("nan", "NaN"),
    ("config", "config"),
    ("huge_config", r"hidden_size=1000000, num_layers=2 does not match the stored LSTM weights"),
    ("deep_config", r"num_layers=5000 does not match"),
    ("metadata", "metadata"),
    ("not_dict", "expected a dict"),
])
def test_load_refuses_bad_files(fitted, tmp_path, case, match):
    path = tmp_path / "det.pt"
    marker = str(tmp_path / "pwned")
    if case == "garbage":
        path.write_bytes(b"\x00\x01not a torch file at all" * 10)
    elif case == "truncated":
        fitted.save(path)
        path.write_bytes(path.read_bytes()[:500])
    elif case == "evil_torch":
        torch.save({"format": D.DETECTOR_FORMAT, "x": _Evil(marker)}, path)
    elif case == "evil_pickle":
        path.write_bytes(pickle.dumps(_Evil(marker)))
    else:
        sd = {k: v.clone() for k, v in fitted.module_.state_dict().items()}
        if case == "version":
            p = _payload(fitted, format_version=99)
        elif case == "format":
            p = _payload(fitted, format="something.else")
        elif case == "shape":
            sd["lstm.weight_hh_l0"] = torch.zeros(256, 32)
            p = _payload(fitted, state_dict=sd)
        elif case == "missing_param":
            del sd["fc.bias"]
            p = _payload(fitted, state_dict=sd)
        elif case == "nan":
            sd["fc.bias"][0] = float("nan")
            p = _payload(fitted, state_dict=sd)
        elif case == "config":
            p = _payload(fitted, config={"length": 0, "hidden_size": 64, "num_layers": 2})
        elif case in ("huge_config", "deep_config"):  # refused before any network of that size is built
            p = _payload(fitted, config={**fitted._config(), **({"hidden_size": 10**6} if case == "huge_config"
                                                              else {"num_layers": 5000})})
        elif case == "metadata":
            p = _payload(fitted, metadata="{not json")
        else:
            p = [1, 2, 3]
        torch.save(p, path)
    with pytest.raises(NoisylabInputError, match=match) as exc:
        NoiseDetector.load(path)
    assert not (tmp_path / "pwned").exists()  # nothing was executed
    assert "weights_only" not in str(exc.value)  # torch's advice to load unsafely is not passed on


def test_load_missing_file(tmp_path):
    with pytest.raises(NoisylabInputError, match="not found"):
        NoiseDetector.load(tmp_path / "nope.pt")


def test_load_pretrained(monkeypatch, tmp_path):
    res = D._pretrained_resource()
    if res.is_file():  # the shipped detector
        det = D.load_pretrained()
        assert det.metadata_["source"] == "mnist1d" and det.length_ == det.metadata_["length"]
    res_m = D._pretrained_resource("margin")
    if res_m.is_file():  # the shipped margin detector
        det = D.load_pretrained(feature="margin")
        assert det.feature_ == "margin" and det.metadata_["noise"] == "symmetric:0.3,pair:0.3"
        assert det.metadata_["recording"]["mode"] == "eval_pass" and det.length_ == 30
    monkeypatch.setattr(D, "_pretrained_resource", lambda feature="label_probability": tmp_path / "missing.pt")
    with pytest.raises(FileNotFoundError, match="python -m noisylab.torch.detector"):
        D.load_pretrained()
    with pytest.raises(FileNotFoundError, match="--feature margin"):
        D.load_pretrained(feature="margin")
    with pytest.raises(NoisylabInputError, match="feature"):
        D.load_pretrained(feature="logits")


def test_margin_feature_sequences_and_detector(tmp_path):
    from noisylab.dynamics import margins

    rng = np.random.default_rng(3)
    logits = rng.normal(size=(40, 6, 4)).astype(np.float16)
    y = rng.integers(0, 4, 40)
    m = D.feature_sequences(logits, y, "margin")
    z = logits.astype(np.float32)
    other = np.where(np.eye(4, dtype=bool)[y][:, None, :], -np.inf, z).max(axis=2)
    np.testing.assert_allclose(m, z[np.arange(40), :, y] - other, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(m, margins(logits, y))
    np.testing.assert_array_equal(D.feature_sequences(logits, y), D.label_probabilities(logits, y))
    assert D.feature_sequences(logits, y, "margin", epochs_completed=4).shape == (40, 4)
    bad = logits.copy()
    bad[5, 2, 1] = np.inf
    with pytest.raises(NoisylabInputError, match="row 5, epoch 2"):
        D.feature_sequences(bad, y, "margin")
    with pytest.raises(NoisylabInputError, match="feature"):
        D.feature_sequences(logits, y, "loss")
    # a margin detector: saved and loaded with its feature; it computes margins from logits
    flips = rng.random(40) < 0.4
    det = D.NoiseDetector(epochs=2, feature="margin", random_state=0).fit(m, flips)
    assert det.feature_ == "margin" and det.metadata_["feature"] == "margin"
    np.testing.assert_array_equal(det.sequences_from_logits(logits, y), m)
    path = det.save(tmp_path / "m.pt")
    back = D.NoiseDetector.load(path)
    assert back.feature_ == "margin" and "feature='margin'" in repr(back)
    np.testing.assert_array_equal(back.score(m), det.score(m))
    with pytest.raises(NoisylabInputError, match="fine-tune on the same feature"):
        D.NoiseDetector(epochs=1, random_state=0).fit(m, flips, init=back)
    with pytest.raises(NoisylabInputError, match="feature"):
        D.NoiseDetector(feature="loss").fit(m, flips)


def test_files_without_feature_read_as_label_probability(fitted, tmp_path):
    path = fitted.save(tmp_path / "d.pt")
    raw = torch.load(path, weights_only=True)
    del raw["config"]["feature"]  # a file written before the option existed
    torch.save(raw, tmp_path / "old.pt")
    assert D.NoiseDetector.load(tmp_path / "old.pt").feature_ == "label_probability"
    raw["config"]["feature"] = "loss"
    torch.save(raw, tmp_path / "bad.pt")
    with pytest.raises(NoisylabInputError, match="config feature"):
        D.NoiseDetector.load(tmp_path / "bad.pt")


# --------------------------------------------------------------------------------- recordings
def test_detect_from_recording_matches_manual_pipeline(fitted, tmp_path):
    from noisylab.torch.recorder import DynamicsRecorder, load_dynamics
    from noisylab.torch.trainer import TrainConfig, Trainer

    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 3, 90)
    X = (rng.normal(size=(90, 2)) + 2.5 * np.eye(3, 2)[y_true]).astype(np.float32)
    y = np.where(rng.random(90) < 0.3, (y_true + 1) % 3, y_true)
    path = tmp_path / "run.npy"
    cfg = TrainConfig(epochs=5, batch_size=32, lr=0.1, val_fraction=0.2, device="cpu", random_state=0)
    model = lambda: torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    Trainer(model, cfg, callbacks=[DynamicsRecorder(path, mode="eval_pass", true_labels=y_true)]).fit(X, y)
    logits, meta = load_dynamics(path)
    p = detect_from_recording(path, fitted)
    assert p.shape == (len(meta["ids"]),) == (72,)
    manual = fitted.score(resample_sequences(label_probabilities(logits, meta["labels"]), 20))
    assert np.array_equal(p, manual)
    with pytest.raises(NoisylabInputError, match="NoiseDetector"):
        detect_from_recording(path, "not a detector")
    if D._pretrained_resource().is_file():  # default detector = the shipped one (length 30: resampled 5 -> 30)
        shipped = D.load_pretrained()
        expected = shipped.score(resample_sequences(label_probabilities(logits, meta["labels"]), shipped.length_))
        assert np.array_equal(detect_from_recording(path), expected)


def test_train_pretrained_end_to_end(tmp_path):
    out = tmp_path / "tiny.pt"
    det = D.train_pretrained(out, n_train=200, epochs_td=3, detector_kwargs={"epochs": 1})
    loaded = NoiseDetector.load(out)
    m = loaded.metadata_
    assert m["source"] == "mnist1d" and m["noise"] == "symmetric:0.3" and m["recording_epochs"] == 3
    assert m["n"] == 200 and m["n_noisy"] == 60  # exact=True: 30% of 200
    assert loaded.length_ == 3 and m["recording"]["model"] == "cnn1d"
    seqs = np.random.default_rng(0).random((5, 3))
    assert np.array_equal(loaded.score(seqs), det.score(seqs))


def test_make_training_sequences_rows_and_flags():
    from noisylab.noise import make_noise

    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 60)
    X = (rng.normal(size=(60, 4)) + 2 * np.eye(3, 4)[y]).astype(np.float32)
    nl = make_noise("symmetric", y, 0.2, exact=True, random_state=0)
    seqs, flags = D.make_training_sequences(X, nl.noisy_labels, nl.true_labels, model="mlp", epochs=2, lr=1e-2)
    assert seqs.shape == (60, 2) and np.all((seqs > 0) & (seqs < 1))
    assert np.array_equal(flags, nl.noisy_labels != y)


# -------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("make, match", [
    (lambda s, t: (np.where(np.arange(s.size).reshape(s.shape) == 7, np.nan, s), t), "NaN"),
    (lambda s, t: (s[:, 0], t), "2-D"),
    (lambda s, t: (s[:, :, None], t), "2-D"),
    (lambda s, t: (s, t[:-1]), "entries"),
    (lambda s, t: (s, t.astype(int) * 2), "booleans"),
    (lambda s, t: (s, np.zeros_like(t)), "both clean and noisy"),
    (lambda s, t: (s.astype(str), t), "float"),
])
def test_fit_bad_inputs(make, match):
    s, t = synth(40, E=5, seed=8)
    s2, t2 = make(s, t)
    with pytest.raises(NoisylabInputError, match=match):
        train_detector(s2, t2, epochs=1)


@pytest.mark.parametrize("kw, match", [
    ({"lr": 0}, "lr"), ({"epochs": 0}, "epochs"), ({"val_fraction": 1.0}, "val_fraction"),
    ({"select_on": "auc"}, "Did you mean 'auroc'"), ({"class_weight": "equal"}, "class_weight"),
    ({"length": 0}, "length"), ({"random_state": -1}, "random_state"),
])
def test_bad_parameters(kw, match):
    s, t = synth(40, E=5, seed=8)
    with pytest.raises(NoisylabInputError, match=match):
        train_detector(s, t, **kw)


def test_score_and_probability_bad_inputs(fitted):
    with pytest.raises(NoisylabInputError, match="not fitted"):
        NoiseDetector().score(np.zeros((2, 3)))
    with pytest.raises(NoisylabInputError, match="NaN"):
        fitted.score(np.array([[0.1, np.nan]]))
    with pytest.raises(NoisylabInputError, match="2-D"):
        fitted.score(np.zeros(5))
    with pytest.raises(NoisylabInputError, match="init must be"):
        train_detector(*synth(40, E=5), init="weights.pt")
    logits = np.zeros((3, 4, 2), dtype=np.float32)
    with pytest.raises(NoisylabInputError, match="2 entries but logits has 3 rows"):
        label_probabilities(logits, [0, 1])
    with pytest.raises(NoisylabInputError, match="0..1"):
        label_probabilities(logits, [0, 1, 2])
    with pytest.raises(NoisylabInputError, match="integer"):
        label_probabilities(logits, [0.0, 1.0, 1.0])
    with pytest.raises(NoisylabInputError, match="shape"):
        label_probabilities(logits[:, :, 0], [0, 1, 1])
    bad = logits.copy()
    bad[1, 2, 0] = np.inf
    with pytest.raises(NoisylabInputError, match="row 1, epoch 2"):
        label_probabilities(bad, [0, 1, 1])
    with pytest.raises(NoisylabInputError, match="length"):
        resample_sequences(np.zeros((2, 3)), 0)
