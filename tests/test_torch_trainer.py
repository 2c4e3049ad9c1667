"""Tests of noisylab.torch.trainer: determinism, checkpoint/resume, schedules, split, selection."""
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn

from noisylab._validation import NoisylabInputError
from noisylab.torch.trainer import (
    CHECKPOINT_NAME,
    Callback,
    TrainConfig,
    Trainer,
    lr_factor,
    stratified_split,
)


def make_data(n=300, seed=0, noise=0.1):
    """3-class 2-D Gaussian mixture with ``noise`` of the labels flipped."""
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 3, n)
    centers = np.array([[0.0, 2.0], [2.0, -1.0], [-2.0, -1.0]])
    X = (centers[y_true] + rng.normal(scale=0.8, size=(n, 2))).astype(np.float32)
    y = y_true.copy()
    flip = rng.random(n) < noise
    y[flip] = (y[flip] + 1) % 3
    return X, y.astype(np.int64), y_true.astype(np.int64)


class TinyNet(nn.Module):
    def __init__(self, dropout=0.2):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, 3))

    def forward(self, x):
        return self.net(x)


def noise_augment(x, generator):
    return x + 0.05 * torch.randn(x.shape, generator=generator, device=x.device)


def cfg(**kw):
    base = dict(epochs=4, batch_size=32, lr=0.05, val_fraction=0.2, device="cpu", random_state=1)
    base.update(kw)
    return TrainConfig(**base)


def states_equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------------------- determinism
def test_same_seed_identical_weights_and_history():
    X, y, _ = make_data()
    runs = [Trainer(TinyNet, cfg(augment=noise_augment)).fit(X, y, X, y) for _ in range(2)]
    assert states_equal(runs[0].strategy_.model.state_dict(), runs[1].strategy_.model.state_dict())
    assert runs[0].history_.without_timing() == runs[1].history_.without_timing()
    assert len(runs[0].history_) == 4
    assert set(runs[0].history_[0]) >= {"epoch", "lr", "train_loss", "train_acc", "val_acc", "test_acc", "seconds"}
    other = Trainer(TinyNet, cfg(augment=noise_augment, random_state=2)).fit(X, y)
    assert not states_equal(runs[0].strategy_.model.state_dict(), other.strategy_.model.state_dict())


def test_fit_leaves_global_rng_untouched():
    X, y, _ = make_data()
    torch.manual_seed(123)
    before = torch.get_rng_state()
    Trainer(TinyNet, cfg(epochs=1)).fit(X, y)
    assert torch.equal(before, torch.get_rng_state())


# --------------------------------------------------------------------------- resume after kill
SCRIPT = textwrap.dedent('''
    import os, sys
    import numpy as np, torch
    from torch import nn
    from noisylab.torch.trainer import Trainer, TrainConfig, Callback
    from noisylab.torch.recorder import DynamicsRecorder

    ckpt, kill_at, out, record, mode = sys.argv[1:6]
    kill_at = int(kill_at)
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 3, 300)
    centers = np.array([[0.0, 2.0], [2.0, -1.0], [-2.0, -1.0]])
    X = (centers[y_true] + rng.normal(scale=0.8, size=(300, 2))).astype(np.float32)
    y = y_true.copy(); flip = rng.random(300) < 0.2; y[flip] = (y[flip] + 1) % 3

    def model():
        return nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3))

    def augment(x, g):
        return x + 0.05 * torch.randn(x.shape, generator=g, device=x.device)

    class Kill(Callback):
        def on_epoch_end(self, trainer, metrics):
            if metrics["epoch"] == kill_at:
                os._exit(1)

    def train(ckpt_dir, record_path, callbacks):
        cbs = list(callbacks)
        if record_path != "none":
            cbs.insert(0, DynamicsRecorder(record_path, mode=mode, true_labels=y_true))
        config = TrainConfig(epochs=6, batch_size=32, lr=0.05, optimizer="adam", schedule="cosine",
                             warmup_epochs=1, val_fraction=0.2, device="cpu", random_state=7, augment=augment,
                             checkpoint_dir=ckpt_dir)
        tr = Trainer(model, config, callbacks=cbs).fit(X, y, X, y_true)
        return {"state": tr.strategy_.model.state_dict(), "history": tr.history_.without_timing(),
                "best": tr.best_epoch_, "start": tr.start_epoch_}

    # Killed run (kill_at >= 0) or resumed run, then (same process) an uninterrupted reference run.
    result = {"resumed": train(ckpt, record, [Kill()])}
    result["ref"] = train(None, "none" if record == "none" else record[:-4] + "_ref.npy", [])
    torch.save(result, out)
''')


def run_script(tmp_path, ckpt, kill_at, out, record="none", mode="train_forward"):
    script = tmp_path / "train_script.py"
    if not script.exists():
        script.write_text(SCRIPT)
    return subprocess.run([sys.executable, str(script), str(ckpt), str(kill_at), str(out), str(record), mode],
                          capture_output=True, text=True, timeout=120, check=False)


def test_resume_after_kill_is_exact(tmp_path):
    ckpt = tmp_path / "ckpt"
    killed = run_script(tmp_path, ckpt, 3, tmp_path / "never.pt")  # dies at the end of epoch 3 (0-based)
    assert killed.returncode == 1, killed.stderr
    assert (ckpt / CHECKPOINT_NAME).exists() and not (tmp_path / "never.pt").exists()
    saved = torch.load(ckpt / CHECKPOINT_NAME, weights_only=True)
    assert saved["epoch"] == 3  # epochs 0..2 done; epoch 3 is redone
    resumed = run_script(tmp_path, ckpt, -1, tmp_path / "out.pt")
    assert resumed.returncode == 0, resumed.stderr
    out = torch.load(tmp_path / "out.pt", weights_only=True)
    a, b = out["ref"], out["resumed"]
    assert a["start"] == 0 and b["start"] == 3
    assert states_equal(a["state"], b["state"])
    assert a["history"] == b["history"]
    assert a["best"] == b["best"]


def test_resume_in_process_and_finished_checkpoint(tmp_path):
    X, y, _ = make_data()
    ref = Trainer(TinyNet, cfg(epochs=5, augment=noise_augment)).fit(X, y)

    class Stop(Exception):
        pass

    class StopAt(Callback):
        def on_epoch_end(self, trainer, metrics):
            if metrics["epoch"] == 2:
                raise Stop

    c = cfg(epochs=5, augment=noise_augment, checkpoint_dir=tmp_path / "c", checkpoint_every=2)
    with pytest.raises(Stop):
        Trainer(TinyNet, c, callbacks=[StopAt()]).fit(X, y)
    tr = Trainer(TinyNet, c).fit(X, y)
    assert tr.start_epoch_ == 2  # every 2 epochs: last save after epoch index 1
    assert states_equal(ref.strategy_.model.state_dict(), tr.strategy_.model.state_dict())
    assert ref.history_.without_timing() == tr.history_.without_timing()
    again = Trainer(TinyNet, c).fit(X, y)  # finished checkpoint: load only
    assert again.start_epoch_ == 5
    assert states_equal(ref.strategy_.model.state_dict(), again.strategy_.model.state_dict())
    assert again.best_epoch_ == ref.best_epoch_


def test_resume_with_other_config_or_data_refused(tmp_path):
    X, y, _ = make_data()
    c = cfg(epochs=2, checkpoint_dir=tmp_path)
    Trainer(TinyNet, c).fit(X, y)
    with pytest.raises(NoisylabInputError, match="different configuration"):
        Trainer(TinyNet, cfg(epochs=2, lr=0.01, checkpoint_dir=tmp_path)).fit(X, y)
    y2 = y.copy()
    y2[0] = (y2[0] + 1) % 3
    with pytest.raises(NoisylabInputError, match="different data"):
        Trainer(TinyNet, c).fit(X, y2)


# ------------------------------------------------------------------------------------ schedules
@pytest.mark.parametrize("kw, expected", [
    (dict(schedule="constant"), [1.0] * 6),
    (dict(schedule="step", milestones=(2, 4), gamma=0.1), [1, 1, 0.1, 0.1, 0.01, 0.01]),
    (dict(schedule="cosine"), [0.5 * (1 + math.cos(math.pi * e / 6)) for e in range(6)]),
    (dict(schedule="cosine", warmup_epochs=2), [0.5, 1.0] + [0.5 * (1 + math.cos(math.pi * t / 4)) for t in range(4)]),
    (dict(schedule="linear_decay", decay_start=3), [1, 1, 1, 1.0, 2 / 3, 1 / 3]),
    (dict(schedule="step", milestones=(3,), gamma=0.5, warmup_epochs=2), [0.5, 1, 1, 0.5, 0.5, 0.5]),
])
def test_lr_schedules(kw, expected):
    c = cfg(epochs=6, lr=0.2, **kw)
    assert [lr_factor(c, e) for e in range(6)] == pytest.approx(expected, abs=1e-12)
    X, y, _ = make_data(n=90)
    tr = Trainer(TinyNet, c).fit(X, y)
    assert tr.history_.column("lr") == pytest.approx([0.2 * f for f in expected], abs=1e-12)


def test_invalid_config_lists_every_problem():
    with pytest.raises(NoisylabInputError) as exc:
        TrainConfig(epochs=0, optimizer="adma", schedule="step", val_fraction=1.5, random_state=-1).validate()
    msg = str(exc.value)
    for part in ("epochs", "Did you mean 'adam'", "milestones", "val_fraction", "random_state"):
        assert part in msg


# ------------------------------------------------------------------- split, selection, predict
def test_validation_split_stratified_and_disjoint():
    X, y, _ = make_data(n=300)
    tr = Trainer(TinyNet, cfg(epochs=1, val_fraction=0.3)).fit(X, y)
    tr_idx, va_idx = tr.train_indices_, tr.val_indices_
    assert len(np.intersect1d(tr_idx, va_idx)) == 0
    assert len(tr_idx) + len(va_idx) == len(y)
    for c in range(3):
        n_c = np.sum(y == c)
        assert np.sum(y[va_idx] == c) == round(0.3 * n_c)
    tr2, va2 = stratified_split(y, 0.3, np.random.default_rng(0))
    assert np.array_equal(np.sort(np.concatenate([tr2, va2])), np.arange(len(y)))


def test_best_epoch_is_argmax_val_acc_and_best_weights_used():
    X, y, _ = make_data(n=300, noise=0.3)
    tr = Trainer(TinyNet, cfg(epochs=6, lr=0.5)).fit(X, y)
    val = tr.history_.column("val_acc")
    assert tr.best_epoch_ == int(np.argmax(val))
    assert tr.last_epoch_ == 5
    Xv, yv = X[tr.val_indices_], y[tr.val_indices_]
    assert np.mean(tr.predict(Xv, which="best") == yv) == pytest.approx(val[tr.best_epoch_])
    assert np.mean(tr.predict(Xv) == yv) == pytest.approx(val[-1])


def test_no_validation_split_and_predict_proba():
    X, y, _ = make_data(n=120)
    tr = Trainer(TinyNet(), cfg(epochs=2, val_fraction=0.0, optimizer="sgd", nesterov=True)).fit(X, y)
    assert tr.best_epoch_ is None and "val_acc" not in tr.history_[0]
    P = tr.predict_proba(X)
    assert P.shape == (120, 3)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, atol=1e-12)
    with pytest.raises(NoisylabInputError, match="validation split"):
        tr.predict_proba(X, which="best")


def test_bad_inputs():
    X, y, _ = make_data(n=60)
    with pytest.raises(NoisylabInputError, match="rows"):
        Trainer(TinyNet, cfg()).fit(X, y[:-1])
    with pytest.raises(NoisylabInputError, match="outputs"):
        Trainer(TinyNet, cfg()).fit(X, y + 5)
    with pytest.raises(NoisylabInputError, match="not fitted"):
        Trainer(TinyNet, cfg()).predict_proba(X)


def test_explicit_validation_rows_and_validation_split():
    from noisylab.torch.trainer import validation_split

    X, y, _ = make_data(n=200)
    tr = Trainer(TinyNet, cfg(epochs=2, val_fraction=0.15, random_state=5)).fit(X, y)
    np.testing.assert_array_equal(tr.val_indices_, validation_split(y, 0.15, 5)[1])  # the same draw
    val = np.array([190, 3, 50, 7])
    tr = Trainer(TinyNet, cfg(epochs=2, val_fraction=0.0)).fit(X, y, val_indices=val)
    np.testing.assert_array_equal(tr.val_indices_, np.sort(val))
    assert len(tr.train_indices_) == 196 and not np.isin(val, tr.train_indices_).any()
    assert all("val_acc" in r for r in tr.history_)
    with pytest.raises(NoisylabInputError, match="not both"):
        Trainer(TinyNet, cfg(epochs=1)).fit(X, y, val_indices=val)
    for bad in ([1, 1], [200], [-1], [0.5]):
        with pytest.raises(NoisylabInputError, match="val_indices"):
            Trainer(TinyNet, cfg(epochs=1, val_fraction=0.0)).fit(X, y, val_indices=bad)


def test_predict_refuses_non_finite_and_takes_tensors():
    X, y, _ = make_data(n=60)
    tr = Trainer(TinyNet, cfg(epochs=1, val_fraction=0.0)).fit(X, y)
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(NoisylabInputError, match="NaN or infinite"):
        tr.predict_proba(bad)
    bad[3, 1] = np.inf
    with pytest.raises(NoisylabInputError, match="NaN or infinite"):
        tr.predict(bad)
    np.testing.assert_array_equal(tr.predict_proba(torch.from_numpy(X)), tr.predict_proba(X))


def test_checkpoint_problems_are_clear_errors(tmp_path):
    X, y, _ = make_data(n=60)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(NoisylabInputError, match=r"bad[/\\]checkpoint\.pt is not a readable noisylab checkpoint"):
        Trainer(TinyNet, cfg(epochs=1, checkpoint_dir=bad)).fit(X, y)
    torch.save({"some": torch.zeros(1)}, bad / "checkpoint.pt")
    with pytest.raises(NoisylabInputError, match="is not a noisylab checkpoint"):
        Trainer(TinyNet, cfg(epochs=1, checkpoint_dir=bad)).fit(X, y)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(NoisylabInputError, match="exists and is not a folder"):
        Trainer(TinyNet, cfg(epochs=1, checkpoint_dir=a_file)).fit(X, y)
    ok = tmp_path / "ok"
    Trainer(lambda: nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 3)), cfg(epochs=2, checkpoint_dir=ok)).fit(X, y)
    with pytest.raises(NoisylabInputError, match=r"does not fit this model \(size mismatch for 0\.weight.*another model"):
        Trainer(lambda: nn.Sequential(nn.Linear(2, 9), nn.ReLU(), nn.Linear(9, 3)), cfg(epochs=2, checkpoint_dir=ok)).fit(X, y)


def test_validation_rows_covering_everything_and_no_callbacks():
    X, y, _ = make_data(n=60)
    with pytest.raises(NoisylabInputError, match="val_indices cover every row"):
        Trainer(TinyNet, cfg(val_fraction=0.0)).fit(X, y, val_indices=np.arange(60))
    tr = Trainer(TinyNet, cfg(epochs=1), callbacks=None).fit(X, y)
    assert len(tr.history_) == 1


def test_config_hash_tells_augmentation_presets_apart(tmp_path):
    from noisylab.torch.augment import get_augmentation

    hashes = {name: cfg(augment=get_augmentation(name)).hash() for name in ("none", "cifar", "cifar_strong", "digits")}
    assert len(set(hashes.values())) == 4
    assert cfg(augment=get_augmentation("cifar")).hash() == cfg(augment=get_augmentation("cifar")).hash()  # stable
    X, y, _ = make_data(n=60)
    Trainer(TinyNet, cfg(epochs=2, checkpoint_dir=tmp_path, augment=noise_augment)).fit(X, y)
    import functools

    other = functools.partial(lambda x, generator, s: x + s * torch.randn(x.shape, generator=generator), s=0.5)
    with pytest.raises(NoisylabInputError, match="different configuration"):
        Trainer(TinyNet, cfg(epochs=2, checkpoint_dir=tmp_path, augment=other)).fit(X, y)
