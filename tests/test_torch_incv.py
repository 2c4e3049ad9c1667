"""Tests of noisylab.torch.methods.incv: theory formulas, INCV selection, INCV's Co-teaching,
the end-to-end INCV class and the Verify_Theory experiment."""
import copy
import math
from types import SimpleNamespace
from typing import ClassVar

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F
from torch import nn

from noisylab._validation import NoisylabInputError
from noisylab.noise import make_noise
from noisylab.torch.methods.incv import (
    INCV,
    INCVCoTeaching,
    candidate_batch_size,
    estimate_noise_rate,
    format_theory_table,
    incv_coteaching_defaults,
    incv_expected_accuracy,
    incv_label_precision,
    incv_label_recall,
    incv_select,
    selected_noise_rate,
    verify_theory,
)
from noisylab.torch.trainer import Callback, TrainConfig, Trainer, validation_split


class MLP(nn.Module):
    def __init__(self, d_in=2, k=3, hidden=32):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, k))

    def forward(self, x):
        return self.net(x)


class BNNet(nn.Module):
    """With batch norm: eval-mode (running stats) and train-mode losses differ."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))

    def forward(self, x):
        return self.net(x)


pytestmark = pytest.mark.usefixtures("torch_one_thread")  # see tests/conftest.py


def states_equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def blobs(n=600, seed=0, rate=0.4, kind="symmetric", sep=3.0):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 3, n)
    centers = sep * np.array([[0.0, 1.0], [0.87, -0.5], [-0.87, -0.5]])
    X = (centers[y_true] + rng.normal(scale=0.5, size=(n, 2))).astype(np.float32)
    noisy = make_noise(kind, y_true, rate, n_classes=3, exact=True, random_state=seed).noisy_labels
    return X, noisy, y_true


def cfg(**kw):
    base = {"epochs": 6, "batch_size": 64, "optimizer": "adam", "lr": 0.02, "device": "cpu", "random_state": 1}
    base.update(kw)
    return TrainConfig(**base)


# ----------------------------------------------------------------------------------- theory
def test_formulas_hand_values():
    assert incv_expected_accuracy(0.5, 10) == pytest.approx(0.25 + 0.25 / 9)
    assert incv_label_precision(0.5, 10) == pytest.approx(0.25 / (0.25 + 0.25 / 9))  # = 0.9
    assert incv_label_precision(0.5, 10) == pytest.approx(0.9)
    assert incv_label_recall(0.5) == pytest.approx(0.5)
    assert incv_expected_accuracy(0.4, 10, "pair") == pytest.approx(0.36 + 0.16)
    assert incv_label_precision(0.4, 10, "pair") == pytest.approx(0.36 / 0.52)
    eps = np.array([[0.0, 0.2], [0.6, 1.0]])
    acc = incv_expected_accuracy(eps, 5)
    assert acc.shape == (2, 2)
    np.testing.assert_allclose(acc, (1 - eps) ** 2 + eps ** 2 / 4)
    np.testing.assert_allclose(incv_label_recall(eps), 1 - eps)
    # eps_S = 1 - LP
    assert selected_noise_rate(0.5, 10) == pytest.approx(0.25 / (0.25 + 9 * 0.25)) == pytest.approx(0.1)
    assert selected_noise_rate(0.4, 10, "pair") == pytest.approx(0.16 / (0.16 + 0.36))
    e = np.linspace(0, 1, 11)
    np.testing.assert_allclose(selected_noise_rate(e, 7), 1 - incv_label_precision(e, 7))
    with pytest.raises(NoisylabInputError):
        incv_expected_accuracy(1.2, 10)
    with pytest.raises(NoisylabInputError):
        incv_expected_accuracy(0.2, 10, kind="asym")


def _reference_grid(a, C, step=0.001):
    """The reference's loop, literally (float accumulation)."""
    r = step
    while (1 - r) ** 2 + r ** 2 / (C - 1) > a and r < 1:
        r += step
    return min(r, 1.0)


@pytest.mark.parametrize("C,kind", [(10, "symmetric"), (3, "symmetric"), (10, "pair")])
def test_estimate_noise_rate_inverts_accuracy(C, kind):
    k = C - 1 if kind == "symmetric" else 1
    eps = np.linspace(0.0, k / (k + 1) - 0.01, 57)  # decreasing branch of acc(eps)
    acc = incv_expected_accuracy(eps, C, kind)
    grid = estimate_noise_rate(acc, C, kind)
    assert grid.shape == eps.shape
    assert np.all(grid >= eps - 1e-12) and np.all(grid <= np.maximum(eps, 0.001) + 0.001 + 1e-12)
    exact = estimate_noise_rate(acc, C, kind, step=None)
    np.testing.assert_allclose(exact, eps, atol=1e-9)
    # minimum 1/(k+1) at eps* = k/(k+1); below it there is no root: 1, as the reference's loop
    assert estimate_noise_rate(1 / (k + 1), C, kind, step=None) == pytest.approx(k / (k + 1))
    assert estimate_noise_rate(1 / (k + 1) - 0.01, C, kind) == 1.0
    assert estimate_noise_rate(1 / (k + 1) - 0.01, C, kind, step=None) == 1.0


def test_estimate_noise_rate_matches_reference_loop_and_pair_bias():
    for a in (0.93, 0.61, 0.3456, 0.2501, 0.12):
        assert estimate_noise_rate(a, 10) == pytest.approx(_reference_grid(a, 10), abs=1e-9)
    # the reference inverts the symmetric formula even under pair noise: ~0.29 for a true 0.4
    a_pair = incv_expected_accuracy(0.4, 10, "pair")
    assert estimate_noise_rate(a_pair, 10, "symmetric") == pytest.approx(0.2852, abs=0.0015)
    assert estimate_noise_rate(a_pair, 10, "pair") == pytest.approx(0.4, abs=0.0011)


def test_candidate_batch_size_rule():
    assert candidate_batch_size(5000, 20000, 128) == 32  # floor(5000 * 128 / 20000)
    assert candidate_batch_size(5001, 20000, 128) == 32
    assert candidate_batch_size(30000, 20000, 128) == 64  # capped
    assert candidate_batch_size(30000, 20000, 128, cap=100) == 100
    assert candidate_batch_size(50, 100, 32) == 16
    assert candidate_batch_size(0, 100, 32) == 0


# -------------------------------------------------------------------------------- selection
def test_incv_select_easy_blobs_symmetric():
    X, y, y_true = blobs()
    sel = incv_select(X, y, MLP, cfg(), kind="symmetric", true_labels=y_true, random_state=0)
    n, clean = len(y), y == y_true
    # S, remaining candidates and discarded examples partition the data
    assert not (sel.selected & sel.candidates).any() and not (sel.selected & sel.discarded).any()
    assert not (sel.candidates & sel.discarded).any()
    assert sel.selected.sum() + sel.candidates.sum() + sel.discarded.sum() == n
    lp = clean[sel.selected].mean()
    lr = (sel.selected & clean).sum() / clean.sum()
    assert lp > 0.9 > 1 - 0.4 and lr > 0.8  # S is much cleaner than the data (60 % clean)
    assert sel.iterations[-1]["label_precision"] == pytest.approx(lp)
    assert sel.iterations[-1]["label_recall"] == pytest.approx(lr)
    # eps_hat: the grid inverse of the first half's accuracy.  This classifier learns the clean
    # function (held-out noisy accuracy ~ 1 - 0.4), so the formula, which assumes a network that
    # memorises the noise, gives ~0.245 rather than 0.4 (documented bias).
    it1 = sel.iterations[0]
    assert sel.eval_ratio == pytest.approx(estimate_noise_rate(it1["heldout_acc"][0], 3), abs=1e-12)
    assert it1["heldout_acc"][0] == pytest.approx(0.6, abs=0.05)
    assert sel.eval_ratio == pytest.approx(estimate_noise_rate(0.6, 3), abs=0.05)
    assert sel.discard_ratio == pytest.approx(min(2, sel.eval_ratio / (1 - sel.eval_ratio)))
    assert sel.iter_save_best == 4 and all(r["save_best"] for r in sel.iterations)
    # discard count is relative to the number selected in the half
    for r in sel.iterations:
        for n_sel, n_disc in zip(r["n_selected_half"], r["n_discard_half"]):
            assert n_disc == math.floor(sel.discard_ratio * n_sel + 1e-9)
    assert sel.discarded.sum() > 0 and sel.iterations[-1]["n_discarded"] == sel.discarded.sum()
    assert clean[sel.discarded].mean() < 0.5  # discarded examples are mostly noisy
    # iteration 1 halves: first floor(n/2) of the shuffled candidates, then the rest; S grows
    assert it1["n_train"] == [n // 2, n - n // 2]
    assert sel.iterations[1]["n_train"][0] == it1["n_selected"] + sel.iterations[1]["n_candidates"] // 2
    assert [r["n_selected"] for r in sel.iterations] == sorted(r["n_selected"] for r in sel.iterations)


class LoggedMLP(MLP):
    """Logs its first-layer weights at the first forward of every instance (deep copies included)."""

    log: ClassVar[list] = []
    built = 0

    def __init__(self):
        super().__init__()
        LoggedMLP.built += 1
        self._logged = False

    def forward(self, x):
        if not self._logged:
            LoggedMLP.log.append(self.net[0].weight.detach().clone())
            self._logged = True
        return super().forward(x)


def test_incv_select_pair_no_discard_same_initial_weights():
    X, y, _y_true = blobs(n=400, kind="pair", rate=0.3, seed=2)
    LoggedMLP.log, LoggedMLP.built = [], 0
    c = cfg(epochs=4)
    sel = incv_select(X, y, LoggedMLP, c, n_iter=2, kind="pair", random_state=5)
    # the model is built once; every one of the 4 trainings starts from these same weights
    assert LoggedMLP.built == 1 and len(LoggedMLP.log) == 4
    assert all(torch.equal(w, LoggedMLP.log[0]) for w in LoggedMLP.log)
    # pair noise: discard flagged but never applied; save-best only in iteration 1
    assert not sel.discarded.any() and sum(sel.iterations[0]["n_discard_half"]) > 0
    assert sel.selected.sum() + sel.candidates.sum() == len(y)
    assert sel.iter_save_best == 1
    assert sel.iterations[0]["save_best"] and not sel.iterations[1]["save_best"]
    assert sel.iterations[1]["best_epochs"] == [c.epochs - 1] * 2
    # same data/seed, another factory instance of the same weights: identical selection
    again = incv_select(X, y, LoggedMLP, c, n_iter=2, kind="pair", random_state=5)
    assert np.array_equal(again.selected, sel.selected) and again.eval_ratio == sel.eval_ratio


def test_incv_select_bad_input():
    X, y, _ = blobs(n=40)
    with pytest.raises(NoisylabInputError, match="val_fraction"):
        incv_select(X, y, MLP, cfg(val_fraction=0.2))
    with pytest.raises(NoisylabInputError, match="kind"):
        incv_select(X, y, MLP, cfg(), kind="asym")
    with pytest.raises(NoisylabInputError, match="n_iter"):
        incv_select(X, y, MLP, cfg(), n_iter=0)
    with pytest.raises(NoisylabInputError):
        incv_select(X, y[:-1], MLP, cfg())


# ----------------------------------------------------------------------------- Co-teaching
def fake_trainer(model=BNNet, lr=0.5, seed=0, n_selected=100, batch_size=32):
    torch.manual_seed(seed)
    tr = SimpleNamespace(config=TrainConfig(optimizer="sgd", lr=lr, momentum=0.0, device="cpu", batch_size=batch_size),
                         rng_=np.random.default_rng(seed), device_=torch.device("cpu"), model=model,
                         train_indices_=np.arange(n_selected), augment_gen_=None)
    tr.build_model = lambda: (copy.deepcopy(model) if isinstance(model, nn.Module) else model())
    return tr


def _expected_after_step(net, lr, x, y, rows):
    """``net`` after one plain SGD step on the mean CE over ``rows`` (forward on those rows only)."""
    net = copy.deepcopy(net)
    net.train()
    loss = F.cross_entropy(net(x[rows]), y[rows])
    grads = torch.autograd.grad(loss, list(net.parameters()))
    with torch.no_grad():
        for p, g in zip(net.parameters(), grads):
            p -= lr * g
    return net


def _params_close(a, b):
    return all(torch.allclose(p, q, atol=1e-6, rtol=1e-5) for p, q in zip(a.parameters(), b.parameters()))


def _small_loss(net, x, y, n_keep, train_mode=False):
    net = copy.deepcopy(net)
    net.train(train_mode)
    with torch.no_grad():
        return torch.argsort(F.cross_entropy(net(x), y, reduction="none"), stable=True)[:n_keep]


def test_n_keep_schedule_hand_values():
    s = INCVCoTeaching(0.3, num_gradual=4)
    assert [s.n_keep(128, e) for e in (0, 1, 2, 3, 4, 10)] == [128, 118, 109, 99, 90, 90]
    # 128 * (1 - 0.3 * e / 4): 128, 118.4, 108.8, 99.2, 89.6, 89.6
    assert s.forget_schedule(2) == pytest.approx(0.15) and s.forget_schedule(9) == pytest.approx(0.3)
    assert INCVCoTeaching(1.0, num_gradual=1).n_keep(64, 3) == 0  # eps_S = 1 is legal
    for kw in ({"eps_selected": 1.5}, {"eps_selected": 0.1, "num_gradual": 0}, {"eps_selected": 0.1, "warmup_epochs": -1},
               {"eps_selected": 0.1, "X_candidates": np.zeros((3, 2))}, {"eps_selected": 0.1, "predict_with": "h"}):
        with pytest.raises(NoisylabInputError):
            INCVCoTeaching(**kw)


@pytest.mark.parametrize("epoch", [1, 5])
def test_each_net_learns_from_peer_eval_mode_picks(epoch):
    lr, B, eps, tk, warm = 0.5, 32, 0.5, 4, 2
    gen = torch.Generator().manual_seed(3)
    Xc = (torch.randn(50, 2, generator=gen) * 3).numpy()
    yc = torch.randint(0, 3, (50,), generator=gen).numpy()
    strat = INCVCoTeaching(eps, Xc, yc, num_gradual=tk, warmup_epochs=warm)
    strat.setup(fake_trainer(lr=lr, n_selected=100, batch_size=B))
    assert strat.cand_batch_size_ == 16  # floor(50 * 32 / 100)
    f0, g0 = copy.deepcopy(strat.model_f), copy.deepcopy(strat.model_g)
    x = torch.randn(B, 2, generator=gen) * 3 + 2  # off-centre: BN batch stats far from running stats
    y = torch.randint(0, 3, (B,), generator=gen)
    strat.on_epoch_begin(epoch)
    strat.train_mode()
    out = strat.train_step((x, y, torch.arange(B)))
    n_keep = round(B * (1 - eps * min(1, epoch / tk)))
    assert out["keep_fraction"] == pytest.approx(n_keep / B)
    ci = strat.last_candidate_idx_
    if epoch <= warm:
        assert ci is None
        xu, yu = x, y
    else:
        assert len(ci) == 16
        xu, yu = torch.cat([x, torch.from_numpy(Xc)[ci]]), torch.cat([y, torch.from_numpy(yc)[ci]])
    picks_f = _small_loss(f0, xu, yu, n_keep)  # eval mode, over the union
    picks_g = _small_loss(g0, xu, yu, n_keep)
    assert set(picks_f.tolist()) != set(picks_g.tolist())
    # ranking uses eval mode: train-mode (batch-stat) ranking would pick differently here
    assert set(_small_loss(g0, xu, yu, n_keep, train_mode=True).tolist()) != set(picks_g.tolist()) or \
        set(_small_loss(f0, xu, yu, n_keep, train_mode=True).tolist()) != set(picks_f.tolist())
    assert _params_close(strat.model_f, _expected_after_step(f0, lr, xu, yu, picks_g))
    assert _params_close(strat.model_g, _expected_after_step(g0, lr, xu, yu, picks_f))
    assert not _params_close(strat.model_f, _expected_after_step(f0, lr, xu, yu, picks_f))
    assert float(out["cand_pick_fraction"]) == pytest.approx(float((picks_f >= B).sum()) / n_keep)
    if epoch > warm:
        assert 0 < float(out["cand_pick_fraction"]) < 1  # candidates compete for the S-part's budget
    assert out["logits"].shape == (B, 3)


def test_candidate_stream_visits_each_candidate_once_per_pass():
    Xc = np.random.default_rng(0).normal(size=(50, 2)).astype(np.float32)
    strat = INCVCoTeaching(0.2, Xc, np.zeros(50, np.int64), num_gradual=2, warmup_epochs=0)
    strat.setup(fake_trainer(model=MLP, n_selected=100, batch_size=32))
    strat.on_epoch_begin(1)
    x, y = torch.zeros(32, 2), torch.zeros(32, dtype=torch.long)
    drawn = []
    for _ in range(6):  # 6 * 16 = 96 draws: one full pass (50) + 46 of the second
        strat.train_step((x, y, torch.arange(32)))
        drawn.append(strat.last_candidate_idx_)
    drawn = torch.cat(drawn)
    assert sorted(drawn[:50].tolist()) == list(range(50))
    assert len(set(drawn[50:].tolist())) == 46


def jitter(x, generator):
    return x + 0.05 * torch.randn(x.shape, generator=generator, device=x.device)


def test_incv_coteaching_trainer_resume_exact(tmp_path):
    X, y, _ = blobs(n=300, seed=3)
    S, C = np.arange(200), np.arange(200, 300)
    strat = INCVCoTeaching(0.2, X[C], y[C], num_gradual=2, warmup_epochs=1)
    c = {"epochs": 5, "batch_size": 32, "augment": jitter}
    ref = Trainer(MLP, cfg(**c), strategy=strat).fit(X[S], y[S])
    assert ref.strategy_.cand_batch_size_ == 16  # floor(100 * 32 / 200)
    h = ref.history_
    assert h.column("train_cand_pick_fraction")[:2] == [0.0, 0.0]  # warm-up e <= 1: S only
    assert all(v > 0 for v in h.column("train_cand_pick_fraction")[2:])

    class Stop(Exception):
        pass

    class StopAt(Callback):
        def on_epoch_end(self, trainer, metrics):
            if metrics["epoch"] == 3:  # after the epoch-2 checkpoint (3 epochs saved)
                raise Stop

    ck = cfg(**c, checkpoint_dir=tmp_path / "c")
    with pytest.raises(Stop):
        Trainer(MLP, ck, strategy=strat, callbacks=[StopAt()]).fit(X[S], y[S])
    saved = torch.load(tmp_path / "c" / "checkpoint.pt", weights_only=True)
    assert saved["epoch"] == 3 and saved["strategy"]["extra"]["cand_pos"] > 0
    tr = Trainer(MLP, ck, strategy=strat).fit(X[S], y[S])
    assert tr.start_epoch_ == 3
    for m0, m1 in zip(ref.strategy_.models, tr.strategy_.models):
        assert states_equal(m0.state_dict(), m1.state_dict())
    assert h.without_timing() == tr.history_.without_timing()
    assert torch.equal(ref.strategy_._cand_perm, tr.strategy_._cand_perm)
    assert ref.strategy_._cand_pos == tr.strategy_._cand_pos


# ---------------------------------------------------------------------------------- INCV class
def test_incv_end_to_end():
    X, y, y_true = blobs(n=400, seed=4)
    Xt, _, yt = blobs(n=300, seed=5, rate=0.0)
    est = INCV(MLP, cfg(epochs=5), cfg(epochs=10, val_fraction=0.2, random_state=2), n_iter=2)
    est.fit(X, y, Xt, yt, true_labels=y_true)
    sel, tr = est.selection_, est.trainer_
    assert len(tr.train_indices_) + len(tr.val_indices_) == sel.selected.sum()  # val split comes out of S
    assert est.eps_selected_ == pytest.approx(selected_noise_rate(sel.eval_ratio, 3))
    assert tr.strategy_.eps_selected == pytest.approx(est.eps_selected_)
    assert est.warmup_epochs_ == 2 and est.num_gradual_ == 1  # 20 % of 10 (eps_hat <= 0.6); max(1, round(0.5))
    assert tr.strategy_.n_candidates == sel.candidates.sum()
    assert tr.best_epoch_ is not None and len(tr.history_) == 10
    assert (est.predict(Xt) == yt).mean() > 0.9
    assert est.predict_proba(Xt).shape == (300, 3)


def test_incv_with_a_shared_validation_split():
    X, y, y_true = blobs(n=400, seed=4)
    val = validation_split(y, 0.1, 7)[1]
    est = INCV(MLP, cfg(epochs=3), cfg(epochs=4, random_state=2), n_iter=2)
    est.fit(X, y, true_labels=y_true, val_indices=val)
    S, C = est.selected_indices_, est.candidate_indices_
    assert len(S) and not np.intersect1d(np.concatenate([S, C]), val).size  # val rows never selected on
    tr = est.trainer_
    assert len(tr.val_indices_) == len(val) and len(tr.train_indices_) == len(S)  # trains on all of S
    np.testing.assert_array_equal(tr.X_[tr.val_idx_t_].numpy(), X[val])  # validates on exactly those rows
    np.testing.assert_array_equal(tr.y_[tr.val_idx_t_].numpy(), y[val])
    assert tr.best_epoch_ is not None
    with pytest.raises(NoisylabInputError, match="not both"):
        INCV(MLP, cfg(epochs=1), cfg(epochs=1, val_fraction=0.2)).fit(X, y, val_indices=val)
    with pytest.raises(NoisylabInputError, match="distinct row positions"):
        INCV(MLP, cfg(epochs=1), cfg(epochs=1)).fit(X, y, val_indices=[0, 0, 5])


def test_coteaching_defaults_follow_reference_ratios():
    assert incv_coteaching_defaults(0.5, 200) == (40, 10)  # the reference's own values
    assert incv_coteaching_defaults(0.61, 200) == (80, 10)
    assert incv_coteaching_defaults(0.1, 200, "pair") == (80, 10)
    assert incv_coteaching_defaults(0.5, 80) == (16, 4)  # METHODS §2.6 CPU scale
    assert incv_coteaching_defaults(0.5, 10) == (2, 1)


# ---------------------------------------------------------------------------- verify theory
def test_verify_theory_rows_and_memorising_network():
    """Twins: each point of half B has a near-copy in half A; a network that memorises A's noisy
    labels predicts B from an independent noisy draw, the assumption of the theory."""
    rng = np.random.default_rng(0)
    m, d = 200, 16
    base = rng.normal(size=(m, d)).astype(np.float32) * 3
    X = np.concatenate([base, base + 0.01 * rng.normal(size=(m, d)).astype(np.float32)])
    y_true = np.tile(rng.integers(0, 3, m), 2)

    def net():
        return nn.Sequential(nn.Linear(d, 256), nn.ReLU(), nn.Linear(256, 3))

    c = cfg(epochs=60, batch_size=200, lr=0.01)
    rates = (0.0, 0.2, 0.4)
    rows = verify_theory(X, y_true, 3, net, c, noise_rates=rates, train_indices=np.arange(m), random_state=1)
    assert [r["noise_rate"] for r in rows] == list(rates)
    for r in rows:
        e = r["noise_rate"]
        assert r["acc_formula"] == incv_expected_accuracy(e, 3)
        assert r["lp_formula"] == incv_label_precision(e, 3)
        assert r["lr_formula"] == incv_label_recall(e)
        assert r["realised_rate"] == pytest.approx(e, abs=0.03)
        assert r["lr"] == pytest.approx(r["lr_formula"], abs=0.08)
        assert r["acc"] == pytest.approx(r["acc_formula"], abs=0.08)
        assert r["confusion"].shape == (3, 3) and r["true_T"].shape == (3, 3)
        np.testing.assert_allclose(np.nansum(r["true_T"], axis=0), 1.0)
        np.testing.assert_allclose(r["confusion"].sum(axis=0), 1.0)
    # true_T by hand for the last rate: the same seeded noise draw (child seed 3 of 4), on half B
    seeds = np.random.SeedSequence(1).spawn(4)
    noisy = make_noise("symmetric", y_true, 0.4, n_classes=3, exact=True,
                       random_state=np.random.default_rng(seeds[3])).noisy_labels
    B = np.arange(m, 2 * m)
    T = np.array([[np.mean(noisy[B][y_true[B] == t] == s) for t in range(3)] for s in range(3)])
    np.testing.assert_allclose(rows[2]["true_T"], T)
    assert rows[2]["realised_rate"] == pytest.approx(np.mean(noisy[B] != y_true[B]))
    table = format_theory_table(rows, matrices=True)
    assert table.count("\n| 0.") == 3 and "LP (formula)" in table and "P(noisy=row | pred=col)" in table


def test_theory_functions_refuse_non_numeric_rates_and_tiny_grid_steps():
    from noisylab.torch.methods.incv import estimate_noise_rate, incv_expected_accuracy

    for bad in ("0.3", True, None):
        with pytest.raises(NoisylabInputError, match="must be real number"):
            incv_expected_accuracy(bad, 10)
    with pytest.raises(NoisylabInputError, match=r"step must be a real number in \[1e-6, 1\)"):
        estimate_noise_rate(0.5, 10, step=1e-12)
    assert estimate_noise_rate(0.5, 10, step=1e-3) == pytest.approx(estimate_noise_rate(0.5, 10), abs=1e-3)
