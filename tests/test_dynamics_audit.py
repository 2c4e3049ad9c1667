"""Audit fixes (dynamics): NaN logits of a diverged run are not "not visited" (F1), the LSTM's 0.5 flags
and the number of classes (F2), float16 overflow at record time and -inf on non-label outputs (F3)."""
import warnings

import numpy as np
import pytest
from test_dynamics import (
    write_recording as _write_recording,  # tests/ is on sys.path (conftest)
)

from noisylab._validation import NoisylabInputError
from noisylab.dynamics import (
    aum_scores,
    confidence,
    dynamics_scores,
    forgetting_events,
    label_probability_sequences,
    margins,
    mean_loss,
    variability,
)

NAN = np.nan
pytestmark = pytest.mark.filterwarnings("ignore:AUM is defined on training-forward logits")
METHODS = ("aum", "confidence", "mean_loss", "forgetting_events")
ROW_FNS = (aum_scores, confidence, variability, mean_loss, forgetting_events)


def write_recording(path, logits, labels, *, mode="eval_pass", **extra):
    """test_dynamics.write_recording, eval-pass by default (``n_classes=`` overrides the stored K)."""
    return _write_recording(path, logits, labels, mode=mode, **extra)


def base(n=8, E=5, K=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(0, 2, size=(n, E, K)).astype(np.float16), rng.integers(0, K, n)


# ------------------------------------------------------------------------------------------ F1
@pytest.mark.parametrize("mode", ["eval_pass", "train_forward"])
def test_diverged_epochs_are_an_error_naming_them(tmp_path, mode):
    L, y = base()
    L[:, 3:] = NAN  # the training diverged at epoch 3: every row NaN from there on
    path = write_recording(tmp_path / "div.npy", L, y, mode=mode)
    for m in METHODS:
        with pytest.raises(NoisylabInputError, match=r"at epoch\(s\) 3, 4.*diverged"):
            dynamics_scores(path, m)
    # the same with the arrays and the recording's mode (what detect_eval passes)
    for fn in ROW_FNS + (margins, label_probability_sequences):
        with pytest.raises(NoisylabInputError, match=r"epoch\(s\) 3, 4"):
            fn(L, y, mode=mode)


def test_divergence_in_epoch_zero_is_not_blamed_on_drop_last(tmp_path):
    L, y = base()
    L[:] = NAN
    path = write_recording(tmp_path / "div0.npy", L, y, mode="train_forward")
    with pytest.raises(NoisylabInputError, match=r"every row are NaN at epoch\(s\) 1, 2, 3, 4: the training diverged"):
        dynamics_scores(path, "aum")  # AUM's window starts at epoch 1
    with pytest.raises(NoisylabInputError, match=r"every row are NaN at epoch\(s\) 0, 1, 2, 3, 4: the training diverged"):
        dynamics_scores(path, "confidence")
    # plain arrays (no mode): the never-visited error now points at the divergence
    with pytest.raises(NoisylabInputError, match=r"never visited\)\. The logits of every row are NaN at epoch\(s\) 1, "
                                                 r"2, 3, 4: a diverged training\?"):
        aum_scores(L, y)


def test_nan_in_eval_pass_recording_is_an_error(tmp_path):
    L, y = base()
    L[5, 2] = NAN  # one whole row-epoch: an eval pass covers every row, so this is not "not visited"
    path = write_recording(tmp_path / "one.npy", L, y, mode="eval_pass")
    for m in METHODS:
        with pytest.raises(NoisylabInputError, match=r"'eval_pass' recording.*epoch\(s\) 2 \(first: row 5, epoch 2\)"):
            dynamics_scores(path, m)


def test_partial_nan_row_is_damage_in_every_mode(tmp_path):
    L, y = base()
    L[5, 2, (y[5] + 1) % 3] = NAN  # one output of one row-epoch
    for mode in ("eval_pass", "train_forward"):
        path = write_recording(tmp_path / f"part_{mode}.npy", L, y, mode=mode)
        for m in METHODS:
            with pytest.raises(NoisylabInputError, match=r"only some of the outputs at row 5, epoch 2"):
                dynamics_scores(path, m)


def test_train_forward_half_the_rows_nan_is_divergence_but_drop_last_rows_are_not(tmp_path):
    L, y = base(n=10)
    ok = L.copy()
    ok[[1, 7], 2] = NAN  # drop_last: fewer than half of the rows unvisited
    ok[[3, 4], 4] = NAN
    path = write_recording(tmp_path / "ok.npy", ok, y, mode="train_forward")
    z = ok.astype(np.float64)
    zy = np.take_along_axis(z, y[:, None, None].repeat(5, 1), 2)[..., 0]
    other = z.copy()
    other[np.arange(10), :, y] = -np.inf
    np.testing.assert_allclose(dynamics_scores(path, "aum"), np.nanmean((zy - other.max(2))[:, 1:], axis=1),
                               rtol=1e-6)
    # same values as the plain arrays (whole-row NaN = not visited, unchanged)
    np.testing.assert_array_equal(dynamics_scores(path, "confidence"), confidence(ok, y))
    bad = L.copy()
    bad[:5, 3] = NAN  # 5 of 10 rows: more than drop_last can leave unvisited
    path = write_recording(tmp_path / "bad.npy", bad, y, mode="train_forward")
    with pytest.raises(NoisylabInputError, match=r"half of the rows have NaN logits at epoch\(s\) 3"):
        dynamics_scores(path, "confidence")


def test_nan_checks_do_not_depend_on_block_size():
    L, y = base(n=40)
    L[:, 2] = NAN
    for rows in (1, 3, 40):
        with pytest.raises(NoisylabInputError, match=r"every row are NaN at epoch\(s\) 2"):
            confidence(L, y, mode="train_forward", block_rows=rows)


def test_lstm_agrees_and_names_the_epochs(tmp_path):
    torch = pytest.importorskip("torch")  # noqa: F841
    from noisylab.torch.detector import detect_from_recording, load_pretrained

    det = load_pretrained()
    L, y = base(E=6, K=10)
    div = L.copy()
    div[:, 4:] = NAN
    with pytest.raises(NoisylabInputError, match=r"every row are NaN at epoch\(s\) 4, 5"):
        detect_from_recording(write_recording(tmp_path / "d.npy", div, y), det)
    one = L.copy()
    one[2, 1] = NAN
    with pytest.raises(NoisylabInputError, match=r"'eval_pass' recording.*epoch\(s\) 1"):
        detect_from_recording(write_recording(tmp_path / "o.npy", one, y), det)
    with pytest.raises(NoisylabInputError, match=r"epoch\(s\) affected: 1"):
        det.sequences_from_logits(one, y)  # plain arrays: the detector still needs every epoch


# ------------------------------------------------------------------------------------------ F3
def test_neg_inf_on_a_non_label_output_is_scored_like_a_very_negative_logit():
    L, y = base(n=6, E=4, K=4)
    L = L.astype(np.float32)
    j = (y[2] + 1) % 4
    inf = L.copy()
    inf[2, 1, j] = -np.inf
    big = L.copy()
    big[2, 1, j] = -1e30  # exp underflows to exactly 0, never the max
    for fn in ROW_FNS + (margins, label_probability_sequences):
        np.testing.assert_array_equal(fn(inf, y), fn(big, y), err_msg=fn.__name__)
    # still refused: +inf anywhere, -inf on the label, every other output -inf
    for r, e, k, v in ((2, 1, j, np.inf), (2, 1, y[2], -np.inf)):
        b = L.copy()
        b[r, e, k] = v
        with pytest.raises(NoisylabInputError, match="infinite value .* row 2, epoch 1"):
            confidence(b, y)
    b = L.copy()
    b[2, 1, [k for k in range(4) if k != y[2]]] = -np.inf
    with pytest.raises(NoisylabInputError, match="infinite value .* row 2, epoch 1"):
        aum_scores(b, y)


# ------------------------------------------------------------------------------------ recorder
def _fit(tmp_path, scale, mode, name, drop_last=False, poison_nan_from=None):
    pytest.importorskip("torch")
    from torch import nn

    from noisylab.torch.recorder import DynamicsRecorder
    from noisylab.torch.trainer import Callback, TrainConfig, Trainer

    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 3)
            self.poison = False

        def forward(self, x):
            out = self.lin(x) * scale
            return out * float("nan") if self.poison else out

    class Poison(Callback):
        def on_epoch_begin(self, trainer, epoch):
            trainer.strategy_.model.poison = poison_nan_from is not None and epoch >= poison_nan_from

    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 2)).astype(np.float32)
    y = rng.integers(0, 3, 50)
    cfg = TrainConfig(epochs=3, batch_size=16, lr=0.01, val_fraction=0.0, device="cpu", random_state=0,
                      drop_last=drop_last)
    rec = DynamicsRecorder(tmp_path / name, mode=mode)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        Trainer(Scaled, cfg, callbacks=[Poison(), rec]).fit(X, y)
    return [str(x.message) for x in w if "DynamicsRecorder" in str(x.message)]


@pytest.mark.parametrize("mode", ["train_forward", "eval_pass"])
def test_recorder_warns_once_on_float16_overflow(tmp_path, mode):
    msgs = _fit(tmp_path, 1e6, mode, "ovf.npy")
    assert len(msgs) == 1, msgs
    assert "epoch 0 wrote infinite logits" in msgs[0] and "largest |logit| was" in msgs[0] and "65504" in msgs[0]
    big = float(msgs[0].split("largest |logit| was ")[1].split(",")[0])
    assert big > 65504


@pytest.mark.parametrize("mode", ["train_forward", "eval_pass"])
def test_recorder_warns_once_on_nan_logits_naming_the_epoch(tmp_path, mode):
    msgs = _fit(tmp_path, 1.0, mode, "nan.npy", poison_nan_from=1)
    assert len(msgs) == 1 and "epoch 1 wrote NaN logits" in msgs[0], msgs
    with pytest.raises(NoisylabInputError, match=r"epoch\(s\) 1, 2"):
        dynamics_scores(tmp_path / "nan.npy", "confidence")


def test_recorder_is_silent_for_drop_last_rows(tmp_path):
    assert _fit(tmp_path, 1.0, "train_forward", "dl.npy", drop_last=True) == []
    from noisylab.dynamics import read_dynamics

    logits, _ = read_dynamics(tmp_path / "dl.npy")
    assert np.isnan(np.asarray(logits)).all(axis=2).sum(axis=0).tolist() == [50 % 16] * 3
    dynamics_scores(tmp_path / "dl.npy", "aum")  # scored: drop_last rows are "not visited"


# ------------------------------------------------------------------------------------------ F2
def test_detector_knows_its_training_classes_and_warns_for_another_k(tmp_path):
    pytest.importorskip("torch")
    from noisylab.torch.detector import (
        NoiseDetector,
        detect_from_recording,
        load_pretrained,
        training_n_classes,
    )

    det = load_pretrained()
    assert training_n_classes(det) == 10 and training_n_classes(load_pretrained(feature="margin")) == 10
    rng = np.random.default_rng(1)
    L10 = rng.normal(size=(20, 6, 10)).astype(np.float16)
    y = rng.integers(0, 2, 20)
    p10 = write_recording(tmp_path / "k10.npy", L10, y)
    p2 = write_recording(tmp_path / "k2.npy", L10[:, :, :2], y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        detect_from_recording(p10, det)  # K = 10: no warning
    with pytest.warns(UserWarning, match=r"trained on the dynamics of 10 classes.*these have 2.*0\.5"):
        got = detect_from_recording(p2, det)
    # the scores (ranking) are unchanged by the check
    np.testing.assert_array_equal(got, det.score(det.sequences_from_logits(L10[:, :, :2], y)))
    # metadata wins; unknown source -> unknown K -> no warning
    t = np.arange(6)
    onset = np.where(rng.random(60) < 0.3, 4, 1)
    seqs = 1 / (1 + np.exp(-(t[None] - onset[:, None])))
    mine = NoiseDetector(epochs=1, val_fraction=0).fit(seqs, onset == 4, metadata={"n_classes": 2})
    assert training_n_classes(mine) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        detect_from_recording(p2, mine)
    anon = NoiseDetector(epochs=1, val_fraction=0).fit(seqs, onset == 4)
    assert training_n_classes(anon) is None
