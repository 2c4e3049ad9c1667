"""Tests of noisylab.torch.methods.meta: L2R and IEG (meta-gradients, pieces, Trainer runs, resume)."""
import copy
import math
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F
from torch import nn

from noisylab._validation import NoisylabInputError
from noisylab.torch.methods.meta import (
    IEG,
    L2R,
    default_strong_augment,
    ema_decay_at,
    guess_label,
    logit_norm,
    mix_lambda,
    sharpen,
    soft_cross_entropy,
)
from noisylab.torch.trainer import Callback, TrainConfig, Trainer


pytestmark = pytest.mark.usefixtures("torch_one_thread")  # see tests/conftest.py


def states_equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def fake_trainer(model, lr=0.5, momentum=0.0, weight_decay=0.0, batch_size=64, seed=0):
    """What Strategy.setup needs from a Trainer (no training data: the probe fixes the shape)."""
    torch.manual_seed(seed)
    tr = SimpleNamespace(config=TrainConfig(optimizer="sgd", lr=lr, momentum=momentum, weight_decay=weight_decay,
                                            batch_size=batch_size, device="cpu"),
                         rng_=np.random.default_rng(seed), device_=torch.device("cpu"), model=model)
    tr.build_model = lambda: copy.deepcopy(model) if isinstance(model, nn.Module) else model()
    return tr


def linear2(dtype=torch.float64):
    """2 classes, 2 features; a reasonable but imperfect classifier (class 1 to the right)."""
    m = nn.Linear(2, 2).to(dtype)
    with torch.no_grad():
        m.weight.copy_(torch.tensor([[-0.5, 0.1], [0.5, -0.1]], dtype=dtype))
        m.bias.zero_()
    return m


def separable_batch(dtype=torch.float64):
    """8 clean examples (class 0 left, class 1 right) + one flipped (row 8: a right point labelled 0)."""
    g = torch.Generator().manual_seed(0)
    left = torch.tensor([-2.0, 0.0]) + 0.3 * torch.randn(4, 2, generator=g)
    right = torch.tensor([2.0, 0.0]) + 0.3 * torch.randn(5, 2, generator=g)
    x = torch.cat([left, right[:4], right[4:]]).to(dtype)
    y = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 0])
    xp = torch.cat([torch.tensor([-2.0, 0.0]) + 0.3 * torch.randn(10, 2, generator=g),
                    torch.tensor([2.0, 0.0]) + 0.3 * torch.randn(10, 2, generator=g)]).to(dtype)
    yp = torch.tensor([0] * 10 + [1] * 10)
    return x, y, xp, yp


def l2r_on(model, xp, yp, **kw):
    s = L2R(xp.numpy(), yp.numpy(), **kw)
    s.setup(fake_trainer(model))
    s.Xp_, s.yp_ = xp, yp  # keep float64 probes for exact comparisons
    return s


# ---------------------------------------------------------------------------------------- L2R
def test_l2r_zero_weight_for_flipped_label_positive_for_clean():
    x, y, xp, yp = separable_batch()
    s = l2r_on(linear2(), xp, yp)
    losses = F.cross_entropy(s.model(x), y, reduction="none")
    w, g, _ = s.meta_weights(losses, xp, yp)
    assert g[8] > 0 and w[8] == 0  # the flipped example: its meta-gradient is positive -> weight 0
    assert (g[:8] < 0).all() and (w[:8] > 0).all()
    assert torch.allclose(w, torch.clamp(-g, min=0) / (torch.clamp(-g, min=0).sum() + 1e-5))
    S = float(torch.clamp(-g, min=0).sum())
    assert float(w.sum()) == pytest.approx(S / (S + 1e-5), rel=1e-12) and float(w.sum()) == pytest.approx(1, abs=1e-3)


def test_l2r_meta_gradient_analytic_without_weight_decay():
    # With R = 0 and ε = 0, θ' = θ, so g_i = -α <∇ℓ_i(θ), ∇L_p(θ)> exactly (Ren et al., eq. 12).
    x, y, xp, yp = separable_batch()
    model = linear2()
    s = l2r_on(model, xp, yp, meta_lr=0.3)
    losses = F.cross_entropy(s.model(x), y, reduction="none")
    _, g, _ = s.meta_weights(losses, xp, yp)
    params = list(model.parameters())
    gp = torch.autograd.grad(F.cross_entropy(model(xp), yp), params)
    expected = []
    for i in range(len(y)):
        gi = torch.autograd.grad(F.cross_entropy(model(x[i:i + 1]), y[i:i + 1]), params)
        expected.append(-0.3 * sum((a * b).sum() for a, b in zip(gi, gp)))
    assert torch.allclose(g, torch.stack(expected), atol=1e-12, rtol=1e-9)


def test_l2r_meta_gradient_matches_finite_difference_with_weight_decay():
    x, y, xp, yp = separable_batch()
    model = linear2()
    alpha, wd = 0.2, 0.1
    s = L2R(xp.numpy(), yp.numpy(), meta_lr=alpha)
    s.setup(fake_trainer(model, weight_decay=wd))
    losses = F.cross_entropy(s.model(x), y, reduction="none")
    _, g, meta_loss = s.meta_weights(losses, xp, yp)
    W, b = model.weight.detach(), model.bias.detach()
    per = [torch.autograd.grad(F.cross_entropy(model(x[i:i + 1]), y[i:i + 1]), [model.weight, model.bias])
           for i in range(len(y))]

    def probe_loss(eps):  # θ'(ε) = θ - α(Σ ε_i ∇ℓ_i + wd θ); L_p = CE + wd/2 ||θ'||²
        W2 = W - alpha * (sum(e * p[0] for e, p in zip(eps, per)) + wd * W)
        b2 = b - alpha * (sum(e * p[1] for e, p in zip(eps, per)) + wd * b)
        return F.cross_entropy(xp @ W2.T + b2, yp) + 0.5 * wd * (W2.square().sum() + b2.square().sum())

    assert float(meta_loss) == pytest.approx(float(probe_loss(torch.zeros(len(y), dtype=torch.float64))), rel=1e-12)
    h = 1e-6
    fd = []
    for i in range(len(y)):
        e = torch.zeros(len(y), dtype=torch.float64)
        e[i] = h
        fd.append((probe_loss(e) - probe_loss(-e)) / (2 * h))
    assert torch.allclose(g, torch.stack(fd), atol=1e-8, rtol=1e-6)


def test_l2r_all_zero_weights_make_no_update():
    x, y, xp, yp = separable_batch()
    model = linear2(torch.float32)
    s = L2R(xp.float().numpy(), yp.numpy())
    s.setup(fake_trainer(model))
    before = copy.deepcopy(s.model.state_dict())
    out = s.train_step((x[:8].float(), 1 - y[:8], torch.arange(8)))  # every label flipped
    assert out["skipped"] == 1.0 and float(out["zero_weight_fraction"]) == 1.0
    assert states_equal(before, s.model.state_dict())
    out = s.train_step((x[:8].float(), y[:8], torch.arange(8)))  # clean batch: an update
    assert out["skipped"] == 0.0 and float(out["mean_weight"]) == pytest.approx(1 / 8, rel=1e-3)
    assert not states_equal(before, s.model.state_dict())


class BNNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))

    def forward(self, x):
        return self.net(x)


def test_lookahead_leaves_batchnorm_running_stats_alone():
    x, y, xp, yp = separable_batch(torch.float32)
    torch.manual_seed(0)
    net = BNNet()
    # L2R train step: exactly one running-stat update, the one of the real forward of x.
    s = L2R(xp.numpy(), yp.numpy())
    s.setup(fake_trainer(net))
    ref = copy.deepcopy(s.model)
    ref.train()
    with torch.no_grad():
        ref(x)
    s.train_step((x, y, torch.arange(len(y))))
    bn, bn_ref = s.model.net[1], ref.net[1]
    assert torch.equal(bn.running_mean, bn_ref.running_mean) and torch.equal(bn.running_var, bn_ref.running_var)
    assert int(bn.num_batches_tracked) == 1
    # The meta steps alone (given the batch losses / logits) change no buffer at all.
    losses = F.cross_entropy(s.model(x), y, reduction="none")
    buffers = {k: v.clone() for k, v in s.model.named_buffers()}
    s.meta_weights(losses, xp, yp)
    assert states_equal(buffers, dict(s.model.named_buffers()))
    ieg = IEG(xp.numpy(), yp.numpy())
    ieg.setup(fake_trainer(BNNet(), momentum=0.9))
    z = ieg.model(x)
    buffers = {k: v.clone() for k, v in ieg.model.named_buffers()}
    ieg.meta_step(z, y, torch.full((len(y), 2), 0.5), xp, yp)
    assert states_equal(buffers, dict(ieg.model.named_buffers()))


def test_probe_stream_cycles_unshuffled():
    _x, _y, xp, yp = separable_batch(torch.float32)
    s = L2R(xp.numpy(), yp.numpy(), probe_batch_size=8)
    s.setup(fake_trainer(linear2(torch.float32)))
    rows = [s._probe_batch(8)[1].tolist() for _ in range(3)]
    assert rows == [[0] * 8, [0, 0, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0, 0, 0]]  # rows 0-7, 8-15, 16-19 + 0-3
    assert s.extra_state_dict() == {"probe_pos": 4}
    assert s._probe_batch(None)[0].shape[0] == 20 and s._probe_batch(25)[0].shape[0] == 20


# ------------------------------------------------------------------------------- IEG pieces
def test_logit_norm_is_tensor_wide():
    v = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)
    expected = v / math.sqrt((1 + 4 + 9 + 16) / 4 + 1e-8)  # mean over all 4 entries = 7.5
    assert torch.allclose(logit_norm(v), expected, atol=1e-14)
    per_row = v / torch.sqrt(v.square().mean(1, keepdim=True))
    assert not torch.allclose(logit_norm(v), per_row)


def test_sharpen_and_guess_label_hand_values():
    p = torch.tensor([[0.2, 0.8], [0.5, 0.5]], dtype=torch.float64)
    assert torch.allclose(sharpen(p, 0.5), torch.tensor([[0.04 / 0.68, 0.64 / 0.68], [0.5, 0.5]],
                                                        dtype=torch.float64))
    z = torch.tensor([[0.0, 2.0], [2.0, 0.0]], dtype=torch.float64)  # mean(z²) = 2 -> LN(z) = z / √2
    zh = torch.tensor([[0.0, 1.0], [0.0, 1.0]], dtype=torch.float64)  # mean = 0.5 -> LN = zh · √2
    s = 1 / (1 + math.exp(-math.sqrt(2)))  # softmax(0, √2)[1] = sigmoid(√2) for both LN(z) row 0 and LN(zh)
    p0 = np.array([1 - s, s])  # row 0: both views give (1 - s, s)
    p1 = 0.5 * (np.array([s, 1 - s]) + np.array([1 - s, s]))  # row 1: (0.5, 0.5)
    expected = np.array([p0 ** 2 / (p0 ** 2).sum(), p1 ** 2 / (p1 ** 2).sum()])
    assert np.allclose(guess_label(z, zh, 0.5).numpy(), expected, atol=1e-12)


def test_mix_lambda_formula():
    u = torch.tensor([0.0, 0.5, 0.9, 1.0], dtype=torch.float64)
    assert torch.allclose(mix_lambda(u, 0.5), 1 - u ** 2 / 2)  # β = 0.5: λ = 1 - U²/2
    assert torch.allclose(mix_lambda(u, 0.5), torch.tensor([1.0, 0.875, 0.595, 0.5], dtype=torch.float64))
    assert torch.allclose(mix_lambda(u, 2.0), torch.maximum(u.sqrt() / 2, 1 - u.sqrt() / 2))


def test_supervised_losses_l1_binary_eps_l2_fixed_mixing():
    s = IEG(np.zeros((2, 2), np.float32), np.array([0, 1]), grad_eps_init=0.9)
    z = torch.tensor([[0.0, math.log(3.0)], [math.log(4.0), 0.0]], dtype=torch.float64)  # p = (1/4, 3/4), (4/5, 1/5)
    y = torch.tensor([0, 0])
    q = torch.tensor([[0.5, 0.5], [0.0, 1.0]], dtype=torch.float64)
    w = torch.tensor([0.25, 0.75], dtype=torch.float64)
    eps_star = torch.tensor([1.0, 0.0], dtype=torch.float64)
    l1, l2 = s.supervised_losses(z, y, q, w, eps_star)
    # L1: row 0 keeps its label (-log 1/4), row 1 takes the guess q = (0, 1) (-log 1/5); plain mean.
    assert float(l1) == pytest.approx(0.5 * (math.log(4) + math.log(5)))
    # L2: targets 0.9 onehot + 0.1 q = (0.95, 0.05), (0.9, 0.1); weighted sum.
    c0 = -(0.95 * math.log(0.25) + 0.05 * math.log(0.75))
    c1 = -(0.9 * math.log(0.8) + 0.1 * math.log(0.2))
    assert float(l2) == pytest.approx(0.25 * c0 + 0.75 * c1)
    assert torch.allclose(soft_cross_entropy(z, F.one_hot(y, 2).double()), F.cross_entropy(z, y, reduction="none"))


def manual_meta_grads(model, x, y, q, xp, yp, buf, alpha, mu, wd, eps_init):
    """g_w, g_ε of IEG's meta step for a linear model, written out by hand (closed-form ∇θ L_look)."""
    B, K = len(y), q.shape[1]
    W, b = model.weight.detach(), model.bias.detach()
    w = torch.full((B,), 1.0 / B, dtype=torch.float64, requires_grad=True)
    eps = torch.full((B,), eps_init, dtype=torch.float64, requires_grad=True)
    onehot = F.one_hot(y, K).double()
    m = eps[:, None] * onehot + (1 - eps[:, None]) * q
    p = torch.softmax(x @ W.T + b, 1)
    r = w[:, None] * (p - m)  # ∂(Σ w_i CE(m_i, z_i))/∂z
    W2 = W - alpha * (mu * buf[0] + r.T @ x + wd * W)
    b2 = b - alpha * (mu * buf[1] + r.sum(0) + wd * b)
    lp = F.cross_entropy(xp @ W2.T + b2, yp) + 0.5 * wd * (W2.square().sum() + b2.square().sum())
    return torch.autograd.grad(lp, [w, eps])


def test_ieg_meta_step_uses_momentum_buffer_and_sign_rule():
    x, y, xp, yp = separable_batch()
    model = nn.Linear(2, 3).double()
    torch.manual_seed(1)
    q = torch.softmax(torch.randn(len(y), 3, dtype=torch.float64), 1)
    y3 = y.clone()
    y3[0] = 2  # a third class in the batch labels
    xp3, yp3 = torch.cat([xp, xp[:2] + 5.0]), torch.cat([yp, torch.tensor([2, 2])])
    s = IEG(xp3.numpy(), yp3.numpy(), meta_stepsize=0.3, meta_momentum=0.9, grad_eps_init=0.9)
    s.setup(fake_trainer(model, momentum=0.9, weight_decay=0.05))
    s.Xp_, s.yp_ = xp3, yp3
    g = torch.Generator().manual_seed(2)
    buf = [torch.randn(3, 2, generator=g, dtype=torch.float64), torch.randn(3, generator=g, dtype=torch.float64)]
    for p, bb in zip(s.model.parameters(), buf):
        s.optimizer.state[p]["momentum_buffer"] = bb.clone()
    z = s.model(x)
    w, eps_star, g_w, g_eps, _ = s.meta_step(z, y3, q, xp3, yp3)
    mw, me = manual_meta_grads(s.model, x, y3, q, xp3, yp3, buf, 0.3, 0.9, 0.05, 0.9)
    assert torch.allclose(g_w, mw, atol=1e-12, rtol=1e-9) and torch.allclose(g_eps, me, atol=1e-12, rtol=1e-9)
    nw, ne = manual_meta_grads(s.model, x, y3, q, xp3, yp3, [torch.zeros(3, 2), torch.zeros(3)], 0.3, 0.9, 0.05, 0.9)
    assert not torch.allclose(g_w, nw, atol=1e-6)  # the buffer matters
    assert torch.equal(eps_star, (me < 0).double())  # ε* = 1 exactly where ∂L_p/∂ε < 0
    assert 0 < eps_star.sum() < len(y)
    expected_w = torch.clamp(-mw, min=0) / (torch.clamp(-mw, min=0).sum() + 1e-5)
    assert torch.allclose(w, expected_w, atol=1e-10) and w.sum() == pytest.approx(1.0, abs=1e-3)
    # No buffer yet (fresh optimizer) = zeros.
    s.optimizer.state.clear()
    _, _, g_w0, g_eps0, _ = s.meta_step(s.model(x), y3, q, xp3, yp3)
    assert torch.allclose(g_w0, nw, atol=1e-12, rtol=1e-9) and torch.allclose(g_eps0, ne, atol=1e-12, rtol=1e-9)


def test_ieg_ema_update_with_tf_warmup():
    assert ema_decay_at(1, 0.999) == pytest.approx(2 / 11) and ema_decay_at(2, 0.999) == pytest.approx(3 / 12)
    assert ema_decay_at(100000, 0.999) == 0.999
    x, y, xp, yp = separable_batch(torch.float32)
    s = IEG(xp.numpy(), yp.numpy())
    s.setup(fake_trainer(nn.Linear(2, 2), lr=0.1, momentum=0.9))
    assert s.models == [s.model, s.ema_model]
    thetas = [copy.deepcopy(s.model.state_dict())]
    for _ in range(2):
        out = s.train_step((x, y, torch.arange(len(y))))
        thetas.append(copy.deepcopy(s.model.state_dict()))
    for key in ("weight", "bias"):
        e1 = 2 / 11 * thetas[0][key] + 9 / 11 * thetas[1][key]
        e2 = 3 / 12 * e1 + 9 / 12 * thetas[2][key]
        assert torch.allclose(s.ema_model.state_dict()[key], e2, atol=1e-6)
    assert s.ema_steps_ == 2 and not torch.equal(s.ema_model.weight, s.model.weight)
    assert torch.equal(s.predict_logits(x), s.ema_model(x))  # predictions use the EMA weights
    assert set(out) >= {"loss", "logits", "l1", "l2", "xe_loss", "cs_loss", "meta_loss", "mean_weight",
                        "zero_weight_fraction", "eps_one_fraction"}


def test_default_strong_augment_shapes_and_determinism():
    for shape in [(1, 40), (1, 8, 8), (64,), (5,)]:
        aug = default_strong_augment(shape, data_scale=2.0)
        x = torch.ones(16, *shape)
        a = aug(x, torch.Generator().manual_seed(0))
        b = aug(x, torch.Generator().manual_seed(0))
        assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, x)
    seq = default_strong_augment((1, 40), data_scale=0.0)(torch.ones(64, 1, 40), torch.Generator().manual_seed(1))
    assert ((seq == 0).sum(dim=(1, 2)) >= 3).all()  # a cutout window (5, clipped to >= 3 at a border)


# ----------------------------------------------------------------------------- Trainer runs
def blobs(n=360, noise=0.3, seed=0):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 3, n)
    centers = np.array([[0.0, 2.0], [2.0, -1.0], [-2.0, -1.0]])
    X = (centers[y_true] + rng.normal(scale=0.6, size=(n, 2))).astype(np.float32)
    y = y_true.copy()
    flip = rng.random(n) < noise
    y[flip] = (y[flip] + 1) % 3
    probe = np.concatenate([np.flatnonzero(y_true == c)[:10] for c in range(3)])
    train = np.setdiff1d(np.arange(n), probe)
    return X[train], y[train], y_true[train], X[probe], y_true[probe]


def tiny():
    return nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 3))


def run_cfg(**kw):
    base = {"epochs": 4, "batch_size": 32, "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4, "device": "cpu", "random_state": 3}
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize("make", [lambda Xp, yp: L2R(Xp, yp), lambda Xp, yp: IEG(Xp, yp)])
def test_trainer_run_learns(make):
    X, y, yt, Xp, yp = blobs(n=300)
    tr = Trainer(tiny, run_cfg(epochs=3), strategy=make(Xp, yp)).fit(X, y, X, yt)
    assert tr.history_[-1]["test_acc"] > 0.9  # chance is 1/3; 30% of the labels are flipped
    row = tr.history_[-1]
    assert 0 < row["train_zero_weight_fraction"] < 1
    assert row["train_mean_weight"] > 0
    if isinstance(tr.strategy_, IEG):
        assert 0 < row["train_eps_one_fraction"] < 1


def test_ieg_resume_is_exact(tmp_path):
    X, y, _yt, Xp, yp = blobs(n=150)

    class Stop(Exception):
        pass

    class StopAt(Callback):
        def on_epoch_end(self, trainer, metrics):
            if metrics["epoch"] == 1:
                raise Stop

    c = run_cfg(epochs=3, checkpoint_dir=tmp_path / "c")
    ref = Trainer(tiny, run_cfg(epochs=3), strategy=IEG(Xp, yp)).fit(X, y)
    with pytest.raises(Stop):
        Trainer(tiny, c, strategy=IEG(Xp, yp), callbacks=[StopAt()]).fit(X, y)
    tr = Trainer(tiny, c, strategy=IEG(Xp, yp)).fit(X, y)
    assert tr.start_epoch_ == 1  # saved after epoch 0; the callback stopped before epoch 1's save
    for a, b in zip(ref.strategy_.models, tr.strategy_.models):  # live and EMA networks
        assert states_equal(a.state_dict(), b.state_dict())
    assert ref.history_.without_timing() == tr.history_.without_timing()
    with pytest.raises(NoisylabInputError):  # other probe set -> other strategy parameters
        Trainer(tiny, c, strategy=IEG(Xp + 1, yp)).fit(X, y)


# --------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kw", [{"meta_lr": 0}, {"meta_lr": float("nan")}, {"probe_batch_size": 0},
                                {"probe_batch_size": 2.5}])
def test_l2r_bad_parameters(kw):
    with pytest.raises(NoisylabInputError):
        L2R(np.zeros((3, 2)), np.array([0, 1, 2]), **kw)


@pytest.mark.parametrize("kw", [{"ce_factor": -1}, {"temperature": 0}, {"beta": 0}, {"meta_momentum": 1.0},
                                {"grad_eps_init": 1.5}, {"use_ema": 1}, {"ema_decay": 1.0},
                                {"strong_augment": "cutout"}, {"label_correction": 1}])
def test_ieg_bad_parameters(kw):
    with pytest.raises(NoisylabInputError):
        IEG(np.zeros((3, 2)), np.array([0, 1, 2]), **kw)


@pytest.mark.parametrize("Xp, yp, match", [
    (np.zeros((3, 2)), np.array([0, 1]), "3 rows but y_probe has 2"),
    (np.zeros((3, 2)), np.array([0.0, 1.0, 2.0]), "integer labels"),
    (np.zeros((3, 2)), np.array([0, -1, 2]), "non-negative"),
    (np.full((3, 2), np.nan), np.array([0, 1, 2]), "NaN"),
    (np.zeros(3), np.array([0, 1, 2]), "shape"),
    (np.array([["a", "b"]] * 3), np.array([0, 1, 2]), "numeric"),
])
def test_bad_probe_arrays(Xp, yp, match):
    for cls in (L2R, IEG):
        with pytest.raises(NoisylabInputError, match=match):
            cls(Xp, yp)


@pytest.mark.parametrize("cls", [L2R, IEG])
def test_probe_inconsistent_with_data_or_model(cls):
    X, y, _yt, Xp, yp = blobs(n=120)
    cfg = run_cfg(epochs=1)
    with pytest.raises(NoisylabInputError, match="no example of class"):
        Trainer(tiny, cfg, strategy=cls(Xp[yp != 2], yp[yp != 2])).fit(X, y)
    with pytest.raises(NoisylabInputError, match="shape"):
        Trainer(tiny, cfg, strategy=cls(np.zeros((3, 5), np.float32), np.array([0, 1, 2]))).fit(X, y)
    with pytest.raises(NoisylabInputError, match="only 3 outputs"):
        Trainer(tiny, cfg, strategy=cls(Xp, np.where(yp == 2, 3, yp))).fit(X, y)



def test_ieg_ce_rampup_scales_the_mixmatch_loss_linearly():
    X, y, yt, Xp, yp = blobs(n=330)
    x, yb = torch.from_numpy(X[:32]), torch.from_numpy(y[:32])

    def xe_at(step, rampup):
        s = IEG(Xp, yp, ce_factor=1.0, ce_rampup=rampup, use_ema=False)
        s.setup(fake_trainer(tiny, lr=0.1, batch_size=32, seed=4))  # same weights and generator each time
        s.total_steps_, s.step_ = 40, step
        return float(s.train_step((x, yb, torch.arange(32)))["xe_loss"]), s.step_

    full, _ = xe_at(0, 0.0)
    assert full > 0
    for step, factor in ((0, 0.0), (5, 0.25), (10, 0.5), (20, 1.0), (30, 1.0)):
        got, after = xe_at(step, 0.5)  # ramp over 50% of 40 steps = 20 steps
        assert got == pytest.approx(factor * full, rel=1e-6) and after == step + 1

    # in a real run: factor 0 at the first step only, and the step counter is checkpointed
    seen = []

    class Spy(Callback):
        def on_batch_end(self, trainer, batch, outputs):
            seen.append(float(outputs["xe_loss"]))

    X, y = X[:300], y[:300]  # 270 training rows after nothing held out, batch 32 -> 10 steps/epoch
    ramp = Trainer(tiny, run_cfg(), strategy=IEG(Xp, yp, ce_factor=1.0, ce_rampup=0.5), callbacks=[Spy()]).fit(X, y)
    assert ramp.strategy_.total_steps_ == 40 and len(seen) == 40
    assert seen[0] == 0.0 and all(v > 0 for v in seen[1:])
    assert ramp.strategy_.extra_state_dict()["step"] == 40
    with pytest.raises(NoisylabInputError, match="ce_rampup"):
        IEG(Xp, yp, ce_rampup=1.5)


def test_ieg_label_correction_off_keeps_every_label_in_l1():
    X, y, _yt, Xp, yp = blobs(n=330)
    x, yb = torch.from_numpy(X[:32]), torch.from_numpy(y[:32])
    got = {}
    for lc in (True, False):
        s = IEG(Xp, yp, ce_factor=0.0, consistency_factor=0.0, use_ema=False, label_correction=lc)
        s.setup(fake_trainer(tiny, lr=0.1, batch_size=32, seed=4))  # same weights each time
        meta = s.meta_step

        def eps_all_zero(z, y, q, xp, yp, meta=meta):  # the meta step says: take every guess
            w, e, gw, ge, ml = meta(z, y, q, xp, yp)
            return w, torch.zeros_like(e), gw, ge, ml

        s.meta_step = eps_all_zero
        with torch.no_grad():
            ce = float(F.cross_entropy(s.model(x), yb))
        got[lc] = (s.train_step((x, yb, torch.arange(32))), ce)
    (on, ce_on), (off, ce_off) = got[True], got[False]
    assert ce_on == ce_off
    assert float(off["l1"]) == pytest.approx(ce_off, rel=1e-6)  # L1 = plain CE on the noisy labels
    assert float(on["l1"]) != pytest.approx(ce_on, rel=1e-3)    # L1 on the guesses
    assert float(on["eps_one_fraction"]) == float(off["eps_one_fraction"]) == 0.0  # the meta ε* is still reported
    assert float(on["l2"]) == pytest.approx(float(off["l2"]), rel=1e-6)


def test_probe_batch_gets_the_training_augmentation():
    X, y, _, Xp, yp = blobs(n=200)

    def shift(x, generator):  # deterministic, so the expected probe rows are known
        return x + 100.0

    for make in (lambda: L2R(Xp, yp, probe_batch_size=8), lambda: IEG(Xp, yp)):
        tr = Trainer(tiny, run_cfg(epochs=1, augment=shift), strategy=make()).fit(X, y)
        s = tr.strategy_
        pos = s.probe_pos_
        xp, ypb = s._probe_batch(8)
        idx = (pos + torch.arange(8)) % len(s.Xp_)
        torch.testing.assert_close(xp, s.Xp_[idx] + 100.0)
        assert torch.equal(ypb, s.yp_[idx])
    plain = Trainer(tiny, run_cfg(epochs=1), strategy=IEG(Xp, yp)).fit(X, y).strategy_
    torch.testing.assert_close(plain._probe_batch(None)[0], plain.Xp_)  # no augmentation configured: raw


def test_ieg_mixed_consistency_and_total_losses_by_hand():
    X, y, _, Xp, yp = blobs(n=330)
    B = 16
    x, yb = torch.from_numpy(X[:B]), torch.from_numpy(y[:B])
    s = IEG(Xp, yp, ce_factor=3.0, consistency_factor=2.0, use_ema=False)
    s.setup(fake_trainer(tiny, lr=0.1, batch_size=B, seed=4))
    model = s.model
    xp, ypb = s._probe_batch(B)
    s.probe_pos_ = 0  # train_step draws the same probe batch again
    gen_state = s.gen_.get_state()
    # --- by hand, replaying the strategy's generator: strong augmentation, probe rows, permutation, U
    g = torch.Generator().manual_seed(0)
    g.set_state(gen_state)
    x_hat = s.strong_augment_(x, g)
    with torch.no_grad():
        z, z_hat = model(x), model(x_hat)
        q = guess_label(z, z_hat, 0.5)
        sel = torch.randint(0, len(xp), (B,), generator=g)
        pool_x = torch.cat([xp[sel], x, x_hat])
        pool_t = torch.cat([F.one_hot(ypb[sel], 3).to(q.dtype), q, q])
        perm = torch.randperm(3 * B, generator=g)
        lam = mix_lambda(torch.rand(3 * B, generator=g), 0.5)
        x_mix = lam[:, None] * pool_x + (1 - lam[:, None]) * pool_x[perm]
        t_mix = lam[:, None] * pool_t + (1 - lam[:, None]) * pool_t[perm]
        lm = model(x_mix)
        ce = lambda logits, t: float(-(t * F.log_softmax(logits, 1)).sum(1).mean())  # noqa: E731
        # LN separately on the probe part and on each unlabeled half; ce_factor only on the unlabeled part
        xe = ce(logit_norm(lm[:B]), t_mix[:B]) + 3.0 * ce(torch.cat([logit_norm(lm[B:2 * B]),
                                                                     logit_norm(lm[2 * B:])]), t_mix[B:])
        log_p, log_p_hat = F.log_softmax(z, 1), F.log_softmax(z_hat, 1)
        cs = 2.0 * float((log_p.exp() * (log_p - log_p_hat)).sum(1).mean())  # KL(softmax(z) || softmax(z_hat))
    out = s.train_step((x, yb, torch.arange(B)))
    assert float(out["xe_loss"]) == pytest.approx(xe, rel=1e-5)
    assert float(out["cs_loss"]) == pytest.approx(cs, rel=1e-5)
    assert float(out["loss"]) == pytest.approx((float(out["l1"]) + float(out["l2"])) / 2 + xe + cs, rel=1e-5)
