"""Tests of noisylab.torch.methods.coteaching: schedule, peer selection, Co-teaching+, Trainer runs."""
import copy
import math
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F
from torch import nn

from noisylab._validation import NoisylabInputError
from noisylab.noise import symmetric_noise
from noisylab.torch.methods import CoTeaching
from noisylab.torch.trainer import Callback, CrossEntropy, TrainConfig, Trainer


class MLP(nn.Module):
    def __init__(self, d_in=2, k=3, hidden=32):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, k))

    def forward(self, x):
        return self.net(x)


def states_equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def fake_trainer(model=MLP, lr=0.5, seed=0):
    """What Strategy.setup needs from a Trainer: plain SGD (no momentum) so one step is checkable."""
    torch.manual_seed(seed)
    tr = SimpleNamespace(config=TrainConfig(optimizer="sgd", lr=lr, momentum=0.0, device="cpu"),
                         rng_=np.random.default_rng(seed), device_=torch.device("cpu"), model=model)
    tr.build_model = lambda: (copy.deepcopy(model) if isinstance(model, nn.Module) else model())
    return tr


# -------------------------------------------------------------------------------- schedule
def test_schedule_code_matches_hand_values():
    # bhanML: linspace(0, tau**c, T_k) for e < T_k, then tau: full rate at T_k - 1 = 9.
    s1 = CoTeaching(0.5, num_gradual=10, exponent=1)
    expected1 = [0.5 * e / 9 for e in range(10)] + [0.5] * 5
    assert [s1.forget_schedule(e) for e in range(15)] == pytest.approx(expected1, abs=1e-12)
    assert s1.forget_schedule(9) == pytest.approx(0.5) and s1.forget_schedule(1) == pytest.approx(0.5 / 9)
    assert s1.keep_rate(3) == pytest.approx(1 - 0.5 * 3 / 9)
    s2 = CoTeaching(0.5, num_gradual=10, exponent=2)
    expected2 = [0.25 * e / 9 for e in range(10)] + [0.5] * 5  # ramp ends at tau**c = 0.25, then tau
    assert [s2.forget_schedule(e) for e in range(15)] == pytest.approx(expected2, abs=1e-12)


def test_schedule_paper_formula():
    s1 = CoTeaching(0.5, num_gradual=10, exponent=1, schedule="paper")
    assert [s1.forget_schedule(e) for e in range(13)] == pytest.approx([min(e / 10 * 0.5, 0.5) for e in range(13)])
    s2 = CoTeaching(0.5, num_gradual=10, exponent=2, schedule="paper")
    assert [s2.forget_schedule(e) for e in (0, 1, 2, 3, 4, 10)] == pytest.approx([0, 0.05, 0.2, 0.45, 0.5, 0.5])


@pytest.mark.parametrize("kw", [dict(forget_rate=1.0), dict(forget_rate=-0.1), dict(forget_rate=0.2, num_gradual=0),
                                dict(forget_rate=0.2, exponent=0), dict(forget_rate=0.2, schedule="x"),
                                dict(forget_rate=0.2, init_epoch=-1), dict(forget_rate=0.2, predict_with="h")])
def test_bad_parameters(kw):
    with pytest.raises(NoisylabInputError):
        CoTeaching(**kw)


# ------------------------------------------------------------------------- peer selection
def _expected_after_step(net, opt_lr, x, y, rows):
    """A copy of ``net`` after one plain SGD step on the mean CE over ``rows``."""
    net = copy.deepcopy(net)
    net.train()
    loss = F.cross_entropy(net(x)[rows], y[rows])
    grads = torch.autograd.grad(loss, list(net.parameters()))
    with torch.no_grad():
        for p, g in zip(net.parameters(), grads):
            p -= opt_lr * g
    return net


def _params_close(a, b):
    return all(torch.allclose(p, q, atol=1e-6, rtol=1e-5) for p, q in zip(a.parameters(), b.parameters()))


@pytest.mark.parametrize("plus", [False, True])
def test_each_network_trains_on_the_peers_small_loss_share(plus):
    """Co-teaching trains each network on the peer's R(T) smallest-loss share (Co-teaching+: among
    the disagreement examples only)."""
    lr, epoch, B = 0.5, 4, 40
    strat = CoTeaching(0.5, num_gradual=10, plus=plus)
    strat.setup(fake_trainer(lr=lr))
    f0, g0 = copy.deepcopy(strat.model_f), copy.deepcopy(strat.model_g)
    assert not states_equal(f0.state_dict(), g0.state_dict())  # second net: different initial weights
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(B, 2, generator=gen) * 3
    y = torch.randint(0, 3, (B,), generator=gen)
    with torch.no_grad():
        zf, zg = f0(x), g0(x)
    lf, lg = F.cross_entropy(zf, y, reduction="none"), F.cross_entropy(zg, y, reduction="none")
    R = 1 - 0.5 * epoch / 9
    cand = torch.nonzero(zf.argmax(1) != zg.argmax(1)).flatten() if plus else torch.arange(B)
    assert 3 <= len(cand) < B or not plus  # the batch has agreeing and disagreeing examples
    n_keep = math.floor(R * len(cand))
    picks_f = set(cand[torch.argsort(lf[cand])[:n_keep]].tolist())  # f's own small-loss picks
    picks_g = set(cand[torch.argsort(lg[cand])[:n_keep]].tolist())
    assert picks_f != picks_g  # otherwise the test could not tell peer from self

    strat.on_epoch_begin(epoch)
    strat.train_mode()
    out = strat.train_step((x, y, torch.arange(B)))
    assert out["keep_fraction"] == pytest.approx(n_keep / B)
    rows_g, rows_f = sorted(picks_g), sorted(picks_f)
    # f was updated on g's picks, g on f's picks (and not on their own picks).
    assert _params_close(strat.model_f, _expected_after_step(f0, lr, x, y, rows_g))
    assert _params_close(strat.model_g, _expected_after_step(g0, lr, x, y, rows_f))
    assert not _params_close(strat.model_f, _expected_after_step(f0, lr, x, y, rows_f))
    expected_loss = 0.5 * (F.cross_entropy(zf[rows_g], y[rows_g]) + F.cross_entropy(zg[rows_f], y[rows_f]))
    assert float(out["loss"]) == pytest.approx(float(expected_loss), rel=1e-5)  # plain mean, not / n_keep
    if plus:
        assert out["disagree_fraction"] == pytest.approx(len(cand) / B)


def test_coteaching_plus_only_disagreement_candidates():
    strat = CoTeaching(0.4, num_gradual=5, plus=True, init_epoch=2)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    # Rows 0-3: both nets predict the label with tiny loss (agree); rows 4-9: they disagree.
    zf = torch.full((10, 3), -2.0)
    zg = torch.full((10, 3), -2.0)
    zf[torch.arange(4), y[:4]] = 8.0
    zg[torch.arange(4), y[:4]] = 8.0
    for i, (a, b, s) in enumerate([(0, 1, 1.0), (1, 2, 2.0), (2, 0, 3.0), (0, 2, 4.0), (1, 0, 5.0), (2, 1, 6.0)]):
        zf[4 + i, a], zg[4 + i, b] = s, 7.0 - s
    strat.on_epoch_begin(1)  # before init_epoch: plain Co-teaching over the whole batch
    upd_f, upd_g, n_keep, n_cand = strat.select(zf, zg, y)
    assert n_cand == 10 and n_keep == math.floor((1 - 0.4 / 4) * 10)
    assert set(range(4)) <= set(upd_f.tolist())  # the agreeing, easy rows are the smallest losses

    strat.on_epoch_begin(4)  # full forget rate 0.4, Co-teaching+ active
    upd_f, upd_g, n_keep, n_cand = strat.select(zf, zg, y)
    assert n_cand == 6 and n_keep == math.floor(0.6 * 6) == 3
    dis = np.arange(4, 10)
    lf = F.cross_entropy(zf, y, reduction="none").numpy()
    lg = F.cross_entropy(zg, y, reduction="none").numpy()
    assert set(upd_g.tolist()) == set(dis[np.argsort(lf[dis])[:3]].tolist())  # f's picks -> g
    assert set(upd_f.tolist()) == set(dis[np.argsort(lg[dis])[:3]].tolist())  # g's picks -> f
    assert not set(upd_f.tolist()) & set(range(4)) and not set(upd_g.tolist()) & set(range(4))

    # All agree: nothing is selected and train_step makes no update.
    upd_f, upd_g, n_keep, n_cand = strat.select(zf[:4], zg[:4], y[:4])
    assert n_cand == 0 and n_keep == 0 and len(upd_f) == 0


def test_module_instance_gives_two_different_networks():
    strat = CoTeaching(0.2)
    strat.setup(fake_trainer(model=MLP()))
    assert not states_equal(strat.model_f.state_dict(), strat.model_g.state_dict())
    assert len(strat.state_dict()["models"]) == 2 and len(strat.state_dict()["optimizers"]) == 2


# ---------------------------------------------------------------------------- Trainer runs
def make_noisy_mixture(n=300, seed=0, rate=0.4):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 3, n)
    centers = np.array([[0.0, 2.0], [2.0, -1.0], [-2.0, -1.0]])
    X = (centers[y_true] + rng.normal(scale=0.8, size=(n, 2))).astype(np.float32)
    noisy = symmetric_noise(y_true, rate, n_classes=3, random_state=seed)
    return X, noisy.noisy_labels, y_true


def tcfg(**kw):
    base = dict(epochs=4, batch_size=32, optimizer="adam", lr=0.01, device="cpu", random_state=3)
    base.update(kw)
    return TrainConfig(**base)


def test_trainer_run_deterministic_and_resumes_exactly(tmp_path):
    X, y, _ = make_noisy_mixture()
    strat = CoTeaching(0.4, num_gradual=3, beta1_after_decay=0.1)
    c = dict(epochs=4, schedule="linear_decay", decay_start=2)
    runs = [Trainer(MLP, tcfg(**c), strategy=strat).fit(X, y) for _ in range(2)]
    for m0, m1 in zip(runs[0].strategy_.models, runs[1].strategy_.models):
        assert states_equal(m0.state_dict(), m1.state_dict())
    h = runs[0].history_
    assert h.without_timing() == runs[1].history_.without_timing()
    assert h.column("train_keep_fraction")[0] == 1.0 and h.column("train_keep_fraction")[3] < 0.62
    assert runs[0].strategy_.opt_f.param_groups[0]["betas"][0] == 0.1

    class Stop(Exception):
        pass

    class StopAt(Callback):
        def on_epoch_end(self, trainer, metrics):
            if metrics["epoch"] == 2:  # raised before epoch 2's checkpoint: 2 epochs saved
                raise Stop

    ck = tcfg(**c, checkpoint_dir=tmp_path / "c")
    with pytest.raises(Stop):
        Trainer(MLP, ck, strategy=strat, callbacks=[StopAt()]).fit(X, y)
    tr = Trainer(MLP, ck, strategy=strat).fit(X, y)
    assert tr.start_epoch_ == 2
    for m0, m1 in zip(runs[0].strategy_.models, tr.strategy_.models):
        assert states_equal(m0.state_dict(), m1.state_dict())
    for o0, o1 in zip(runs[0].strategy_.optimizers, tr.strategy_.optimizers):
        assert o0.param_groups[0]["betas"] == o1.param_groups[0]["betas"]
    assert h.without_timing() == tr.history_.without_timing()
    # the same checkpoint with another forget rate is a different training: refused
    with pytest.raises(NoisylabInputError, match="different configuration"):
        Trainer(MLP, ck, strategy=CoTeaching(0.2, num_gradual=3, beta1_after_decay=0.1)).fit(X, y)


class RecordingCoTeaching(CoTeaching):
    """Records, per epoch, the dataset indices of f's own small-loss picks."""

    def on_epoch_begin(self, epoch):
        super().on_epoch_begin(epoch)
        self.picks_f_ = []

    def train_step(self, batch):
        self._idx = batch[2]
        return super().train_step(batch)

    def select(self, logits_f, logits_g, y):
        upd_f, upd_g, n_keep, n_cand = super().select(logits_f, logits_g, y)
        self.picks_f_.extend(self._idx[upd_g].tolist())  # update_g = f's picks
        return upd_f, upd_g, n_keep, n_cand


def test_selection_purer_than_data_and_not_worse_than_ce():
    X, y, y_true = make_noisy_mixture(seed=1)
    Xt, _, yt = make_noisy_mixture(n=600, seed=2, rate=0.0)
    c = tcfg(epochs=20, random_state=0)
    co = Trainer(MLP, c, strategy=RecordingCoTeaching(0.4, num_gradual=5)).fit(X, y, Xt, yt)
    ce = Trainer(MLP, c, strategy=CrossEntropy()).fit(X, y, Xt, yt)
    picks = np.array(co.strategy_.picks_f_)
    assert len(picks) == sum(math.floor(0.6 * b) for b in [32] * 9 + [12])
    clean = y == y_true
    assert clean[picks].mean() > clean.mean() + 0.2  # small-loss picks are much purer than the data
    acc_co, acc_ce = co.history_[-1]["test_acc"], ce.history_[-1]["test_acc"]
    assert acc_co >= acc_ce - 0.02  # at this tiny size CE is also fine; Co-teaching must not be worse


# ----------------------------------------------------------------------------- class weights
def test_class_weights_weight_ranking_and_update_losses():
    tr = fake_trainer(lr=0.5)
    w = np.array([1.0, 3.0, 0.5])
    s = CoTeaching(0.5, num_gradual=1, class_weights=w)
    s.setup(tr)
    s.on_epoch_begin(5)  # full forget rate 0.5
    torch.manual_seed(1)
    x = torch.randn(8, 2)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    f0 = copy.deepcopy(s.model_f.state_dict())
    with torch.no_grad():
        lf = F.cross_entropy(s.model_f(x), y, reduction="none") * torch.tensor(w, dtype=torch.float32)[y]
        lg = F.cross_entropy(s.model_g(x), y, reduction="none") * torch.tensor(w, dtype=torch.float32)[y]
    pick_g = torch.argsort(lg, stable=True)[:4]  # f learns from g's weighted small-loss picks
    # expected f update: weighted mean over g's picks
    ref = copy.deepcopy(s.model_f)
    ref.load_state_dict(f0)
    wt = torch.tensor(w, dtype=torch.float32)
    loss = (F.cross_entropy(ref(x[pick_g]), y[pick_g], reduction="none") * wt[y[pick_g]]).sum() / wt[y[pick_g]].sum()
    grads = torch.autograd.grad(loss, list(ref.parameters()))
    s.train_step((x, y, torch.arange(8)))
    for p, p0, g in zip(s.model_f.parameters(), ref.parameters(), grads):
        assert torch.allclose(p, p0 - 0.5 * g, atol=1e-6)


def test_class_weights_validation():
    with pytest.raises(NoisylabInputError, match="class_weights"):
        CoTeaching(0.2, class_weights=[1.0, -1.0])
    with pytest.raises(NoisylabInputError, match="class_weights"):
        CoTeaching(0.2, class_weights=[[1.0, 2.0]])
    s = CoTeaching(0.2, class_weights=[1.0, 2.0])  # K = 2 but the model has 3 outputs
    s.setup(fake_trainer())
    with pytest.raises(NoisylabInputError, match="2 entries but the model has 3 outputs"):
        s.train_step((torch.randn(4, 2), torch.tensor([0, 1, 0, 1]), torch.arange(4)))


def test_coteaching_plus_full_batch_fallback_when_nets_agree():
    # Two networks that predict the same class for every example never disagree: the code's rule
    # trains both on the whole batch during the first fallback_steps steps, then makes no update.
    class Const(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 3)
            with torch.no_grad():
                self.lin.weight.zero_()
                self.lin.bias.copy_(torch.tensor([5.0, 0.0, 0.0]))

        def forward(self, x):
            return self.lin(x)

    x = torch.randn(8, 2)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    for steps, expect_update in ((5000, True), (0, False)):
        s = CoTeaching(0.2, plus=True, fallback_steps=steps)
        with pytest.warns(UserWarning, match="identical weights"):
            s.setup(fake_trainer(model=Const, lr=0.5))
        s.on_epoch_begin(0)
        before = copy.deepcopy(s.model_f.state_dict())
        ref = copy.deepcopy(s.model_f)
        out = s.train_step((x, y, torch.arange(8)))
        assert out["disagree_fraction"] == 0.0
        if expect_update:
            grads = torch.autograd.grad(F.cross_entropy(ref(x), y), list(ref.parameters()))
            for p, p0, g in zip(s.model_f.parameters(), ref.parameters(), grads):
                assert torch.allclose(p, p0 - 0.5 * g, atol=1e-6)
            assert out["keep_fraction"] == 1.0 and s.extra_state_dict() == {"step": 1}
        else:
            assert states_equal(s.model_f.state_dict(), before)
