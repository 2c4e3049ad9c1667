"""Tests of noisylab.torch.recorder.DynamicsRecorder and load_dynamics."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn

from noisylab._validation import NoisylabInputError
from noisylab.torch.recorder import DynamicsRecorder, load_dynamics, sidecar_path
from noisylab.torch.trainer import Callback, CrossEntropy, TrainConfig, Trainer
from test_torch_trainer import make_data, noise_augment, run_script


class Linearish(nn.Module):
    """No dropout / BN: train-mode and eval-mode forwards agree."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 3))

    def forward(self, x):
        return self.net(x)


def cfg(**kw):
    base = dict(epochs=4, batch_size=32, lr=0.1, val_fraction=0.2, device="cpu", random_state=3,
                augment=noise_augment)
    base.update(kw)
    return TrainConfig(**base)


class EvalSnapshot(Callback):
    """After each epoch: logits of all training rows, computed independently of the recorder."""

    def __init__(self):
        self.logits = []

    def on_epoch_end(self, trainer, metrics):
        m = trainer.strategy_.model
        m.eval()
        with torch.no_grad():
            self.logits.append(m(trainer.X_[trainer.train_idx_t_]).numpy().copy())


class TrainForwardSnapshot(Callback):
    """Before each step: the batch's logits with the pre-step weights (what the training forward sees)."""

    def __init__(self, n):
        self.n = n
        self.epochs = []

    def on_epoch_begin(self, trainer, epoch):
        self.epochs.append({})

    def on_batch_begin(self, trainer, batch):
        x, _, idx = batch
        with torch.no_grad():
            out = trainer.strategy_.model(x).numpy()
        for i, row in zip(idx.tolist(), out):
            assert i not in self.epochs[-1], "example seen twice in one epoch"
            self.epochs[-1][i] = row.copy()


def test_eval_pass_matches_separate_forward(tmp_path):
    X, y, y_true = make_data(n=300, noise=0.2)
    snap = EvalSnapshot()
    path = tmp_path / "dyn.npy"
    tr = Trainer(Linearish, cfg(), callbacks=[DynamicsRecorder(path, "eval_pass", true_labels=y_true), snap]).fit(X, y)
    logits, meta = load_dynamics(path)
    n = len(tr.train_indices_)
    assert logits.dtype == np.float16 and logits.shape == (n, 4, 3)
    for e in range(4):
        np.testing.assert_array_equal(logits[:, e], snap.logits[e].astype(np.float16))
    assert meta["mode"] == "eval_pass" and meta["format_version"] == 1
    assert meta["n_epochs"] == 4 and meta["n_classes"] == 3 and meta["epochs_completed"] == 4
    np.testing.assert_array_equal(meta["ids"], tr.train_indices_)
    np.testing.assert_array_equal(meta["labels"], y[tr.train_indices_])
    np.testing.assert_array_equal(meta["true_labels"], y_true[tr.train_indices_])
    np.testing.assert_array_equal(meta["is_noisy"], y[tr.train_indices_] != y_true[tr.train_indices_])
    assert meta["is_noisy"].dtype == bool and meta["is_noisy"].any()
    assert sidecar_path(path).name == "dyn.meta.npz"


def test_train_forward_matches_pre_step_logits(tmp_path):
    X, y, _ = make_data(n=300)
    path = tmp_path / "dyn.npy"
    snap = TrainForwardSnapshot(300)
    tr = Trainer(Linearish, cfg(), callbacks=[snap, DynamicsRecorder(path)]).fit(X, y)
    logits, meta = load_dynamics(path)
    ids = meta["ids"]
    assert meta["mode"] == "train_forward" and "is_noisy" not in meta
    for e in range(4):
        assert sorted(snap.epochs[e]) == sorted(ids.tolist())  # every training row exactly once
        expected = np.stack([snap.epochs[e][i] for i in ids]).astype(np.float16)
        np.testing.assert_array_equal(logits[:, e], expected)
    assert not np.isnan(logits).any()
    assert tr.history_[0]["train_acc"] >= 0


def test_drop_last_leaves_nan_for_skipped_rows(tmp_path):
    X, y, _ = make_data(n=100)
    path = tmp_path / "dyn.npy"
    Trainer(Linearish, cfg(epochs=2, val_fraction=0.0, batch_size=32, drop_last=True),
            callbacks=[DynamicsRecorder(path)]).fit(X, y)
    logits, _ = load_dynamics(path)
    missing = np.isnan(logits).all(axis=2)
    assert missing.sum(axis=0).tolist() == [4, 4]  # 100 = 3 * 32 + 4


def test_train_forward_needs_logits(tmp_path):
    class NoLogits(CrossEntropy):
        def train_step(self, batch):
            out = super().train_step(batch)
            return {"loss": out["loss"]}

    X, y, _ = make_data(n=60)
    with pytest.raises(NoisylabInputError, match="eval_pass"):
        Trainer(Linearish, cfg(epochs=1), strategy=NoLogits(),
                callbacks=[DynamicsRecorder(tmp_path / "d.npy")]).fit(X, y)
    with pytest.raises(NoisylabInputError, match="mode"):
        Trainer(Linearish, cfg(epochs=1), callbacks=[DynamicsRecorder(tmp_path / "d.npy", mode="eval")]).fit(X, y)


def test_resumed_training_continues_recording(tmp_path):
    ckpt = tmp_path / "ckpt"
    rec = tmp_path / "dyn.npy"
    killed = run_script(tmp_path, ckpt, 3, tmp_path / "never.pt", record=rec, mode="train_forward")
    assert killed.returncode == 1, killed.stderr
    _, meta = load_dynamics(rec)
    assert meta["epochs_completed"] == 4  # the recorder wrote epoch 3 before the kill; it is redone
    done = run_script(tmp_path, ckpt, -1, tmp_path / "out.pt", record=rec, mode="train_forward")
    assert done.returncode == 0, done.stderr
    got, meta = load_dynamics(rec)
    ref, ref_meta = load_dynamics(tmp_path / "dyn_ref.npy")
    assert meta["epochs_completed"] == 6 and got.shape == ref.shape and got.shape[1:] == (6, 3)
    np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(meta["ids"], ref_meta["ids"])
    np.testing.assert_array_equal(meta["is_noisy"], ref_meta["is_noisy"])


def test_resume_without_recording_is_refused(tmp_path):
    X, y, _ = make_data(n=60)
    c = cfg(epochs=3, checkpoint_dir=tmp_path / "c")

    class Stop(Exception):
        pass

    class StopAt(Callback):
        def on_epoch_end(self, trainer, metrics):
            if metrics["epoch"] == 1:
                raise Stop

    with pytest.raises(Stop):
        Trainer(Linearish, c, callbacks=[StopAt()]).fit(X, y)
    with pytest.raises(NoisylabInputError, match="cannot be continued"):
        Trainer(Linearish, c, callbacks=[DynamicsRecorder(tmp_path / "late.npy")]).fit(X, y)


def test_true_labels_out_of_range_refused(tmp_path):
    X, y, y_true = make_data(n=60)
    with pytest.raises(NoisylabInputError, match=r"true_labels must lie in 0\.\.2 .*got -5\.\.-3"):
        Trainer(Linearish, cfg(epochs=1), callbacks=[DynamicsRecorder(tmp_path / "d.npy", true_labels=y_true - 5)]).fit(X, y)
    # a sidecar whose ground truth is out of range is refused when read back
    Trainer(Linearish, cfg(epochs=1), callbacks=[DynamicsRecorder(tmp_path / "d.npy", true_labels=y_true)]).fit(X, y)
    side = sidecar_path(tmp_path / "d.npy")
    with np.load(side) as z:
        meta = {k: z[k] for k in z.files}
    assert np.array_equal(meta["is_noisy"], meta["true_labels"] != meta["labels"])
    load_dynamics(tmp_path / "d.npy")
    np.savez(side, **{**meta, "true_labels": meta["true_labels"] + 7})
    with pytest.raises(NoisylabInputError, match=r"true_labels must be integers in 0\.\.2"):
        load_dynamics(tmp_path / "d.npy")
    np.savez(side, **{**meta, "is_noisy": ~meta["is_noisy"]})
    with pytest.raises(NoisylabInputError, match="is_noisy disagrees"):
        load_dynamics(tmp_path / "d.npy")
