"""Tests of noisylab.torch.methods.mentormix: MentorNet-PD curriculum, loss EMA, MentorMix step,
mixup, defaults table, Trainer runs with checkpoint/resume."""
import copy
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F
from torch import nn

from noisylab._validation import NoisylabInputError
from noisylab.noise import symmetric_noise
from noisylab.torch.methods.mentormix import (
    LossEMA,
    MentorMix,
    Mixup,
    curriculum_weights,
    mentor_mixup,
    mentormix_defaults,
    mentornet_pd,
    tf_percentile,
)
from noisylab.torch.trainer import Callback, TrainConfig, Trainer


class MLP(nn.Module):
    def __init__(self, d_in=2, k=3, hidden=16):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, k))

    def forward(self, x):
        return self.net(x)


def states_equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def fake_trainer(model=MLP, lr=0.5, seed=0, n_train=100, epochs=1, batch_size=10):
    """What Strategy.setup needs from a Trainer: plain SGD (no momentum) so one step is checkable."""
    torch.manual_seed(seed)
    tr = SimpleNamespace(config=TrainConfig(optimizer="sgd", lr=lr, momentum=0.0, device="cpu", epochs=epochs,
                                            batch_size=batch_size),
                         rng_=np.random.default_rng(seed), device_=torch.device("cpu"), model=model,
                         train_indices_=np.arange(n_train))
    tr.build_model = lambda: (copy.deepcopy(model) if isinstance(model, nn.Module) else model())
    return tr


T = torch.tensor


# ------------------------------------------------------------------------------ percentile
def test_tf_percentile_nearest_hand_values():
    # TF: sort descending, index round((n-1)(1-q/100)), round half to even.
    assert float(tf_percentile(T([4.0, 1.0, 3.0, 2.0]), 0.5)) == 2.0  # 3*0.5=1.5 -> 2 -> desc[2]=2 (numpy: 3)
    assert np.percentile([4.0, 1.0, 3.0, 2.0], 50, method="nearest") == 3.0  # the definitions differ here
    vals = T([7.0, 0.0, 9.0, 3.0, 5.0, 1.0, 8.0, 2.0, 6.0, 4.0])
    assert float(tf_percentile(vals, 0.8)) == 7.0  # 9*0.2=1.8 -> 2: third largest
    assert float(tf_percentile(vals, 0.7)) == 6.0  # 9*0.3=2.7 -> 3: fourth largest
    assert float(tf_percentile(vals[:9], 0.25)) == 2.0  # desc [9,8,7,6,5,3,2,1,0]; 8*0.75=6 -> 2
    assert float(tf_percentile(vals, 1.0)) == 9.0 and float(tf_percentile(vals, 0.0)) == 0.0


# ------------------------------------------------------------------------------ MentorNet-PD
LOSS = T([1.0, 2.0, 3.0, 4.0, 5.0])
DIFF = T([-1.0, -0.5, 0.0, 0.3, 2.0])


@pytest.mark.parametrize("progress, expected", [
    (0, [1, 1, 1, 1, 1]), (10, [1, 1, 1, 1, 1]), (18, [1, 1, 1, 1, 1]),  # e <= 18: everything
    (19, [1, 1, 1, 0, 0]), (50, [1, 1, 1, 0, 0]), (89, [1, 1, 1, 0, 0]),  # self-paced 1[d <= 0]
    (90, [1, 1, 1, 0.7, 0]), (95, [1, 1, 1, 0.7, 0]), (99, [1, 1, 1, 0.7, 0]),  # clip(1 - d, 0, 1)
])
def test_mentornet_pd_breakpoints(progress, expected):
    v = mentornet_pd(LOSS, DIFF, progress)
    assert v.tolist() == pytest.approx(expected)
    assert not v.requires_grad


def test_mentornet_pd_gamma_burn_in_and_breakpoints():
    assert mentornet_pd(LOSS, DIFF, 95, gamma=2.0).tolist() == pytest.approx([1, 1, 1, 0.85, 0])
    # burn-in: e < burn_in - 1 -> 1
    assert mentornet_pd(LOSS, DIFF, 58, burn_in=60).tolist() == [1] * 5
    assert mentornet_pd(LOSS, DIFF, 59, burn_in=60).tolist() == [1, 1, 1, 0, 0]
    assert mentornet_pd(LOSS, DIFF, 98, burn_in=100).tolist() == [1] * 5
    assert mentornet_pd(LOSS, DIFF, 99, burn_in=100).tolist() == pytest.approx([1, 1, 1, 0.7, 0])
    assert mentornet_pd(LOSS, DIFF, 5, breakpoints=(4, 6)).tolist() == [1, 1, 1, 0, 0]
    assert mentornet_pd(LOSS, DIFF, 6, breakpoints=(4, 6)).tolist() == pytest.approx([1, 1, 1, 0.7, 0])
    loss = LOSS.clone().requires_grad_()
    assert not mentornet_pd(loss, loss * 1 - 3, 95).requires_grad  # stop-gradient


# ------------------------------------------------------------------------------ loss EMA
def test_loss_ema_hand_values_and_state():
    ema = LossEMA(0.7)
    assert float(ema.value) == 0.0
    # batch 1: desc [8,4,2,1,.5], index round(4*0.3)=1 -> 4; EMA = 0.5*0 + 0.5*4 = 2
    assert float(ema.update(T([0.5, 1.0, 2.0, 4.0, 8.0]))) == pytest.approx(2.0)
    # batch 2: desc [3,1,1,1,1] -> 1; EMA = 0.5*2 + 0.5*1 = 1.5
    assert float(ema.update(T([1.0, 1.0, 3.0, 1.0, 1.0]))) == pytest.approx(1.5)
    other = LossEMA(0.7)
    other.load_state_dict(ema.state_dict())
    assert float(other.value) == 1.5 and other.n_updates == 2
    assert float(LossEMA(0.7, decay=0.9).update(T([0.5, 1.0, 2.0, 4.0, 8.0]))) == pytest.approx(0.4)


def test_curricula_use_the_updated_ema():
    loss = T([0.5, 1.0, 2.0, 4.0, 8.0])
    ema = LossEMA(0.7)
    ema.value = torch.tensor(6.0)
    # EMA_t = 0.5*6 + 0.5*4 = 5 -> d = [-4.5, -4, -3, -1, 3]
    v = curriculum_weights(loss, ema, 50, curriculum="mentornet_pd", percentile=0.7)
    assert v.tolist() == [1, 1, 1, 1, 0] and float(ema.value) == 5.0
    v = curriculum_weights(loss, ema, 95, curriculum="mentornet_pd", gamma=4.0)  # EMA 4.5, d=3.5 -> 1-3.5/4
    assert v.tolist() == pytest.approx([1, 1, 1, 1, 0.125])
    # README threshold: 1[loss < batch percentile] (4 here), no EMA
    assert curriculum_weights(loss, None, 50, curriculum="loss_percentile", percentile=0.7).tolist() == [1, 1, 1, 0, 0]
    ema2 = LossEMA(0.7)  # moving-average comparison: EMA = 2 -> 1[loss < 2]
    assert curriculum_weights(loss, ema2, 50, curriculum="loss_ema", percentile=0.7).tolist() == [1, 1, 0, 0, 0]
    assert curriculum_weights(loss, LossEMA(0.7), 3, curriculum="loss_percentile", burn_in=10).tolist() == [1] * 5


# ------------------------------------------------------------------------------ MentorMix pieces
def test_partner_sampling_follows_softmax_of_v():
    s = MentorMix(alpha=2.0)
    s.setup(fake_trainer())
    B = 30000
    v = torch.tensor([0.0, 0.5, 1.0]).repeat(B // 3)
    partner, lam = s._draw(v)
    assert partner.shape == (B,) and lam.shape == (B,)
    freq = torch.bincount(v[partner].mul(2).long(), minlength=3).double() / B
    expected = torch.softmax(torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64), 0)
    assert torch.allclose(freq, expected, atol=0.012)  # softmax(v), not v / sum(v) (which gives 0 to v=0)
    # Beta(2, 2) raw draws: mean 1/2, variance 1/20
    assert float(lam.mean()) == pytest.approx(0.5, abs=0.01) and float(lam.var()) == pytest.approx(0.05, abs=0.005)
    s2 = MentorMix(alpha=2.0)
    s2.setup(fake_trainer())
    p2, l2 = s2._draw(v)
    assert torch.equal(partner, p2) and torch.equal(lam, l2)  # seeded by the trainer's rng_


def test_lambda_flip_rule():
    lam = T([0.2, 0.7, 0.5, 0.9, 0.1])
    v = T([1.0, 1.0, 0.3, 0.49, 0.5])
    # max(l, 1-l) = [.8, .7, .5, .9, .9]; flipped where v < 0.5 (not at v = 0.5)
    assert MentorMix.mix_coefficients(lam, v).tolist() == pytest.approx([0.8, 0.7, 0.5, 0.1, 0.9])


def test_mentor_mixup_hand_combination():
    x = torch.arange(12, dtype=torch.float32).view(4, 3)
    y = T([0, 1, 2, 1])
    partner = T([2, 0, 0, 1])
    lam = T([0.8, 0.3, 1.0, 0.6])
    xm, ym = mentor_mixup(x, y, partner, lam, 3)
    for i in range(4):
        j, l = int(partner[i]), float(lam[i])
        assert torch.allclose(xm[i], l * x[i] + (1 - l) * x[j], atol=1e-6)
        onehot = torch.zeros(3)
        onehot[y[i]] += l
        onehot[y[j]] += 1 - l
        assert torch.allclose(ym[i], onehot, atol=1e-6)
    assert torch.allclose(ym.sum(1), torch.ones(4))


def _batch():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(6, 2, generator=g) * 2
    y = T([0, 1, 2, 0, 1, 2])
    partner = T([1, 1, 0, 5, 2, 3])
    raw = T([0.9, 0.2, 0.6, 0.75, 0.5, 0.1])
    return x, y, partner, raw


def _hand_mentormix_loss(net, x, y, partner, raw, second_reweight, ema_ind0, ema_mix0):
    """The MentorMix loss at progress 50 (self-paced phase), p = 0.5, from the EMAs before the step."""
    with torch.no_grad():
        loss = F.cross_entropy(net(x), y, reduction="none")
        pct = float(torch.sort(loss, descending=True).values[round(5 * 0.5)])  # TF nearest, n=6, p=.5: 2.5->2
        v = (loss - (0.5 * ema_ind0 + 0.5 * pct) <= 0).float()
    lam = torch.maximum(raw, 1 - raw)
    lam = torch.where(v < 0.5, 1 - lam, lam)
    xm = lam[:, None] * x + (1 - lam[:, None]) * x[partner]
    ym = lam[:, None] * F.one_hot(y, 3).float() + (1 - lam[:, None]) * F.one_hot(y[partner], 3).float()
    lm = -(ym * F.log_softmax(net(xm), 1)).sum(1)
    lmd = lm.detach()
    pct2 = float(torch.sort(lmd, descending=True).values[2])
    v2 = (lmd - (0.5 * ema_mix0 + 0.5 * pct2) <= 0).float()
    total = (v2 * lm).mean() if second_reweight else lm.mean()
    return total, v, v2, pct, pct2


def _forced_step(second_reweight, lr=0.5):
    """One MentorMix step at progress 50 with forced partners / λ and EMAs set so that EMA_t equals
    this batch's percentile (then v and v' are neither all 0 nor all 1)."""
    s = MentorMix(alpha=8.0, percentile=0.5, second_reweight=second_reweight)
    s.setup(fake_trainer(lr=lr, seed=1))
    s.max_steps_, s.step_ = 100, 50
    x, y, partner, raw = _batch()
    s._draw = lambda v: (partner, raw.clone())
    net0 = copy.deepcopy(s.model)
    _, _, _, pct, _ = _hand_mentormix_loss(net0, x, y, partner, raw, False, 0.0, 0.0)
    _, _, _, _, pct2 = _hand_mentormix_loss(net0, x, y, partner, raw, False, pct, 0.0)
    s.ema_individual_.value = torch.tensor(pct)
    s.ema_mixed_.value = torch.tensor(pct2)
    out = s.train_step((x, y, torch.arange(6)))
    return s, net0, x, y, partner, raw, out, (pct, pct2)


@pytest.mark.parametrize("second_reweight", [False, True])
def test_mentormix_step_matches_hand_computation(second_reweight):
    lr = 0.5
    s, net0, x, y, partner, raw, out, (e_ind, e_mix) = _forced_step(second_reweight, lr)
    ref = copy.deepcopy(net0)
    hand, v, v2, _, _ = _hand_mentormix_loss(ref, x, y, partner, raw, second_reweight, e_ind, e_mix)
    assert float(s.ema_individual_.value) == pytest.approx(e_ind)  # 0.5 * pct + 0.5 * pct
    assert 0 < float(v.sum()) < 6  # the batch has weighted and unweighted examples
    assert float(out["loss"]) == pytest.approx(float(hand.detach()), rel=1e-5)
    assert float(out["v_mean"]) == pytest.approx(float(v.mean()))
    assert float(out["v_high_frac"]) == pytest.approx(float((v >= 0.5).float().mean()))
    assert torch.allclose(out["logits"], net0(x).detach(), atol=1e-6)  # the un-mixed forward
    grads = torch.autograd.grad(hand, list(ref.parameters()))
    with torch.no_grad():
        for p, gr in zip(ref.parameters(), grads):
            p -= lr * gr
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(ref.parameters(), s.model.parameters()))
    assert s.step_ == 51
    assert 0 < float(v2.sum()) < 6  # the re-weighting would drop some mixed losses
    if second_reweight:
        assert float(out["v_mixed_mean"]) == pytest.approx(float(v2.mean()))
        assert float(s.ema_mixed_.value) == pytest.approx(e_mix)
    else:
        assert "v_mixed_mean" not in out
        assert float(s.ema_mixed_.value) == e_mix  # the "mixed" EMA is only updated with second_reweight


def test_second_reweight_switch_changes_the_loss():
    a = _forced_step(False)[6]["loss"]
    b = _forced_step(True)[6]["loss"]
    assert float(b) < float(a)  # same batch, same draws: v' zeroes the largest mixed losses


def test_progress_is_percent_of_total_steps():
    recorded = []

    class Rec(MentorMix):
        def train_step(self, batch):
            recorded.append(self.progress())
            return super().train_step(batch)

    X, y, _ = make_noisy_mixture(n=90)
    tr = Trainer(MLP, tcfg(epochs=3, batch_size=32), strategy=Rec(burn_in=10)).fit(X, y)
    assert tr.strategy_.max_steps_ == 3 * 3  # ceil(90 / 32) = 3 steps per epoch
    assert recorded == [100 * s // 9 for s in range(9)]
    recorded.clear()
    tr = Trainer(MLP, tcfg(epochs=3, batch_size=32, drop_last=True), strategy=Rec()).fit(X, y)
    assert tr.strategy_.max_steps_ == 3 * 2 and recorded == [100 * s // 6 for s in range(6)]


# ------------------------------------------------------------------------------ defaults
def test_defaults_table_and_nearest_level():
    assert mentormix_defaults(0.2) == {"alpha": 2.0, "percentile": 0.8, "second_reweight": False, "burn_in": 10}
    assert mentormix_defaults(0.4) == {"alpha": 8.0, "percentile": 0.6, "second_reweight": False, "burn_in": 10}
    assert mentormix_defaults(0.6) == {"alpha": 8.0, "percentile": 0.6, "second_reweight": True, "burn_in": 10}
    assert mentormix_defaults(0.8) == {"alpha": 4.0, "percentile": 0.2, "second_reweight": True, "burn_in": 10}
    table100 = {0.2: (2.0, 0.7, False), 0.4: (8.0, 0.5, False), 0.6: (4.0, 0.3, True), 0.8: (8.0, 0.1, True)}
    for rate, (a, p, sr) in table100.items():
        assert mentormix_defaults(rate, "cifar100") == {"alpha": a, "percentile": p, "second_reweight": sr, "burn_in": 10}
    assert mentormix_defaults(0.5) == mentormix_defaults(0.6)  # ties go to the higher-noise row
    assert mentormix_defaults(0.3, "cifar100") == mentormix_defaults(0.4, "cifar100")
    assert mentormix_defaults(0.45) == mentormix_defaults(0.4)
    assert mentormix_defaults(0.0) == mentormix_defaults(0.2) and mentormix_defaults(0.95) == mentormix_defaults(0.8)
    MentorMix(**mentormix_defaults(0.6))  # usable as constructor arguments
    with pytest.raises(NoisylabInputError, match="dataset"):
        mentormix_defaults(0.4, "cifar")
    for bad in (1.0, -0.1, "0.4", float("nan")):
        with pytest.raises(NoisylabInputError, match="noise_rate"):
            mentormix_defaults(bad)


# ------------------------------------------------------------------------------ mixup
def test_mixup_loss_and_update_match_hand_values():
    lr, lam = 0.5, 0.3
    s = Mixup(alpha=1.0)
    s.setup(fake_trainer(lr=lr, seed=2))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 2, generator=g)
    y = T([0, 1, 2, 2, 1])
    perm = T([3, 0, 4, 1, 2])
    s._draw = lambda B, device: (lam, perm)
    net0 = copy.deepcopy(s.model)
    out = s.train_step((x, y, torch.arange(5)))
    z = net0(lam * x + (1 - lam) * x[perm])
    hand = lam * F.cross_entropy(z, y) + (1 - lam) * F.cross_entropy(z, y[perm])
    assert float(out["loss"]) == pytest.approx(float(hand.detach()), rel=1e-5)
    pred = z.argmax(1)
    assert float(out["n_correct"]) == pytest.approx(lam * float((pred == y).sum()) + (1 - lam) * float((pred == y[perm]).sum()))
    grads = torch.autograd.grad(hand, list(net0.parameters()))
    with torch.no_grad():
        for p, gr in zip(net0.parameters(), grads):
            p -= lr * gr
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(net0.parameters(), s.model.parameters()))


def test_mixup_draws_are_seeded_and_permutations():
    draws = []
    for _ in range(2):
        s = Mixup(alpha=0.4)
        s.setup(fake_trainer(seed=7))
        draws.append(s._draw(50, torch.device("cpu")))
    assert draws[0][0] == draws[1][0] and 0 <= draws[0][0] <= 1
    assert torch.equal(draws[0][1], draws[1][1]) and sorted(draws[0][1].tolist()) == list(range(50))
    s = Mixup(alpha=0.0)
    s.setup(fake_trainer())
    assert s._draw(4, torch.device("cpu"))[0] == 1.0  # alpha = 0: no mixing


# ------------------------------------------------------------------------------ Trainer runs
def make_noisy_mixture(n=240, seed=0, rate=0.3):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 3, n)
    centers = np.array([[0.0, 2.0], [2.0, -1.0], [-2.0, -1.0]])
    X = (centers[y_true] + rng.normal(scale=0.8, size=(n, 2))).astype(np.float32)
    noisy = symmetric_noise(y_true, rate, n_classes=3, random_state=seed)
    return X, noisy.noisy_labels, y_true


def tcfg(**kw):
    base = {"epochs": 4, "batch_size": 32, "optimizer": "sgd", "lr": 0.1, "device": "cpu", "random_state": 3}
    base.update(kw)
    return TrainConfig(**base)


class Stop(Exception):
    pass


class StopAt(Callback):
    def on_epoch_end(self, trainer, metrics):
        if metrics["epoch"] == 2:  # raised before epoch 2's checkpoint: 2 epochs saved
            raise Stop


@pytest.mark.parametrize("strategy", [MentorMix(alpha=2.0, percentile=0.7, burn_in=10, second_reweight=True),
                                      MentorMix(alpha=8.0, percentile=0.6, second_reweight=False,
                                                curriculum="loss_ema"),
                                      Mixup(alpha=1.0)], ids=["mentormix_sr", "mentormix_ema", "mixup"])
def test_trainer_run_deterministic_and_resumes_exactly(tmp_path, strategy):
    X, y, _ = make_noisy_mixture(n=160)
    c = {"epochs": 4}
    runs = [Trainer(MLP, tcfg(**c), strategy=strategy).fit(X, y) for _ in range(2)]
    assert states_equal(runs[0].strategy_.model.state_dict(), runs[1].strategy_.model.state_dict())
    h = runs[0].history_
    assert h.without_timing() == runs[1].history_.without_timing()
    if isinstance(strategy, MentorMix):
        assert set(h[0]) >= {"train_v_mean", "train_v_high_frac", "train_loss", "train_acc"}
        if strategy.curriculum == "mentornet_pd":  # epoch 0 = progress 0..20: mostly e <= 18 -> v = 1
            assert h[0]["train_v_mean"] > 0.7 and h[3]["train_v_mean"] < 1.0
    else:
        assert 0 <= h[0]["train_acc"] <= 1 and 0 < h[0]["train_lam"] < 1

    ck = tcfg(**c, checkpoint_dir=tmp_path / "c")
    with pytest.raises(Stop):
        Trainer(MLP, ck, strategy=strategy, callbacks=[StopAt()]).fit(X, y)
    tr = Trainer(MLP, ck, strategy=strategy).fit(X, y)
    assert tr.start_epoch_ == 2
    assert states_equal(runs[0].strategy_.model.state_dict(), tr.strategy_.model.state_dict())
    assert h.without_timing() == tr.history_.without_timing()
    if isinstance(strategy, MentorMix):
        assert float(tr.strategy_.ema_individual_.value) == float(runs[0].strategy_.ema_individual_.value)
    # other method parameters: a different training, refused
    other = copy.deepcopy(strategy)
    other.alpha = 3.0
    with pytest.raises(NoisylabInputError, match="different configuration"):
        Trainer(MLP, ck, strategy=other).fit(X, y)


class RecordingMentorMix(MentorMix):
    """Records (dataset index, v) of the clean-batch weights of the last epoch."""

    def on_epoch_begin(self, epoch):
        super().on_epoch_begin(epoch)
        self.seen_ = []

    def train_step(self, batch):
        self._idx = batch[2]
        return super().train_step(batch)

    def weights(self, loss, ema, progress):
        v = super().weights(loss, ema, progress)
        if ema is self.ema_individual_:
            self.seen_.append((self._idx.clone(), v.clone()))
        return v


def test_mentormix_learns_and_weights_clean_examples_higher():
    X, y, y_true = make_noisy_mixture(seed=1, rate=0.4)
    Xt, _, yt = make_noisy_mixture(n=300, seed=2, rate=0.0)
    tr = Trainer(MLP, tcfg(epochs=8), strategy=RecordingMentorMix(**mentormix_defaults(0.4))).fit(X, y, Xt, yt)
    assert tr.history_[-1]["test_acc"] > 0.85
    assert tr.history_[0]["train_v_mean"] == 1.0  # epoch 0 = progress 0..11 <= 18
    idx = torch.cat([i for i, _ in tr.strategy_.seen_]).numpy()
    v = torch.cat([w for _, w in tr.strategy_.seen_]).numpy()
    clean = (y == y_true)[idx]
    assert 0 < clean.sum() < len(idx)
    assert v[clean].mean() > v[~clean].mean() + 0.4  # the curriculum keeps clean labels, drops noisy ones


# ------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("kw, match", [
    ({"alpha": 0}, "alpha"), ({"alpha": -1.0}, "alpha"), ({"alpha": float("inf")}, "alpha"),
    ({"percentile": 1.5}, "percentile"), ({"percentile": 70}, "percentile"),
    ({"burn_in": -1}, "burn_in"), ({"burn_in": 101}, "burn_in"), ({"burn_in": 2.5}, "burn_in"),
    ({"second_reweight": "yes"}, "second_reweight"), ({"curriculum": "mentornet"}, "Did you mean"),
    ({"gamma": 0.0}, "gamma"), ({"ema_decay": 1.0}, "decay"),
])
def test_mentormix_bad_parameters(kw, match):
    with pytest.raises(NoisylabInputError, match=match):
        MentorMix(**kw)


def test_bad_inputs_of_functions():
    with pytest.raises(NoisylabInputError, match="alpha"):
        Mixup(alpha=-0.5)
    for bad in (100, -1, 5.0, True):
        with pytest.raises(NoisylabInputError, match="progress"):
            mentornet_pd(LOSS, DIFF, bad)
    with pytest.raises(NoisylabInputError, match="same shape"):
        mentornet_pd(LOSS, DIFF[:3], 50)
    with pytest.raises(NoisylabInputError, match="breakpoints"):
        mentornet_pd(LOSS, DIFF, 50, breakpoints=(90, 18))
    with pytest.raises(NoisylabInputError, match="1-D"):
        tf_percentile(torch.zeros(2, 2), 0.5)
    with pytest.raises(NoisylabInputError, match="needs a LossEMA"):
        curriculum_weights(LOSS, None, 50)
