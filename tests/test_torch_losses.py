"""Tests of noisylab.torch.methods.losses: forward correction, Reed bootstrapping, T estimators."""
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F
from torch import nn

import noisylab
from noisylab._validation import NoisylabInputError
from noisylab.noise import pair_matrix, pair_noise
from noisylab.torch.methods.losses import (
    Bootstrap,
    ForwardCorrection,
    T_from_confident_learning,
    estimate_T_anchor,
    forward_corrected_ce,
    hard_bootstrap_loss,
    reduce_loss,
    soft_bootstrap_loss,
)
from noisylab.torch.trainer import Callback, CrossEntropy, TrainConfig, Trainer

# A non-symmetric 3-class noise matrix in noisylab's convention T[noisy, true] (columns sum to 1),
# with the diagonal the largest entry of every row (so each class has a well-defined anchor).
T3 = np.array([[0.70, 0.10, 0.25],
               [0.20, 0.80, 0.15],
               [0.10, 0.10, 0.60]])


def two_example_batch():
    # Example 0: logits (0, ln 3) -> p = (1/4, 3/4), label 0.
    # Example 1: logits (ln 4, 0) -> p = (4/5, 1/5), label 1.
    logits = torch.tensor([[0.0, math.log(3.0)], [math.log(4.0), 0.0]], dtype=torch.float64)
    y = torch.tensor([0, 1])
    return logits, y


# ------------------------------------------------------------------------ forward correction
def test_forward_identity_equals_cross_entropy():
    g = torch.Generator().manual_seed(0)
    logits = 4 * torch.randn(64, 5, generator=g)
    y = torch.randint(0, 5, (64,), generator=g)
    got = forward_corrected_ce(logits, y, torch.eye(5))
    assert got.shape == (64,)
    assert torch.allclose(got, F.cross_entropy(logits, y, reduction="none"), atol=1e-6, rtol=0)
    assert torch.allclose(forward_corrected_ce(logits, y, np.eye(5), reduction="mean"),
                          F.cross_entropy(logits, y), atol=1e-6, rtol=0)


def test_forward_hand_computed_two_classes():
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, math.log(3.0)]], dtype=torch.float64)  # p = (1/4, 3/4)
    y = torch.tensor([0, 1])
    # noisylab convention T[noisy, true]: true 0 -> noisy 0 w.p. 0.8, noisy 1 w.p. 0.2;
    #                                     true 1 -> noisy 0 w.p. 0.3, noisy 1 w.p. 0.7.
    T = torch.tensor([[0.8, 0.3], [0.2, 0.7]], dtype=torch.float64)
    # q = T p = (0.8*0.25 + 0.3*0.75, 0.2*0.25 + 0.7*0.75) = (0.425, 0.575)
    expected = torch.tensor([-math.log(0.425), -math.log(0.575)], dtype=torch.float64)
    got = forward_corrected_ce(logits, y, T)
    assert torch.allclose(got, expected, atol=1e-12, rtol=0)
    # Patrini's row convention T_P[true, noisy] = T.T gives the same loss ...
    assert torch.allclose(forward_corrected_ce(logits, y, T.T, convention="patrini"), expected, atol=1e-12)
    # ... while using the transposed matrix in the wrong convention does not (q_0 = 0.8*.25 + 0.2*.75).
    wrong = forward_corrected_ce(logits, y, T.T)
    assert abs(float(wrong[0]) + math.log(0.35)) < 1e-12
    assert torch.allclose(reduce_loss(got, "mean"), expected.mean()) and torch.allclose(reduce_loss(got, "sum"),
                                                                                        expected.sum())


def test_forward_stable_with_extreme_logits_and_zero_entries():
    logits = torch.tensor([[200.0, -200.0, 0.0]], requires_grad=True)
    T = torch.tensor(pair_matrix(3, 0.3), dtype=torch.float32)  # has zero entries
    loss = forward_corrected_ce(logits, torch.tensor([1]), T, reduction="mean")
    # q_1 = 0.3 * p_0 + 0.7 * p_1 ~ 0.3
    assert abs(loss.item() + math.log(0.3)) < 1e-5
    loss.backward()
    assert torch.isfinite(logits.grad).all()


def test_forward_bad_T_rejected():
    logits, y = two_example_batch()
    with pytest.raises(NoisylabInputError):
        forward_corrected_ce(logits, y, torch.eye(3))
    with pytest.raises(NoisylabInputError, match="columns of T"):
        ForwardCorrection(np.array([[0.8, 0.2], [0.3, 0.7]]))  # rows sum to 1: Patrini convention
    ForwardCorrection(np.array([[0.8, 0.2], [0.3, 0.7]]), convention="patrini")


# ------------------------------------------------------------------------------- bootstrap
def test_soft_bootstrap_hand_computed():
    logits, y = two_example_batch()
    b = 0.95
    # ex 0: p = (1/4, 3/4), y = 0: CE = ln 4, H = 1/4 ln 4 + 3/4 ln(4/3)
    ce0, h0 = math.log(4), 0.25 * math.log(4) + 0.75 * math.log(4 / 3)
    # ex 1: p = (4/5, 1/5), y = 1: CE = ln 5, H = 4/5 ln(5/4) + 1/5 ln 5
    ce1, h1 = math.log(5), 0.8 * math.log(5 / 4) + 0.2 * math.log(5)
    expected = torch.tensor([b * ce0 + (1 - b) * h0, b * ce1 + (1 - b) * h1], dtype=torch.float64)
    got = soft_bootstrap_loss(logits, y, beta=b)
    assert torch.allclose(got, expected, atol=1e-12, rtol=0)
    # Same as -sum_k [b q_k + (1-b) p_k] log p_k written out for ex 0.
    t0 = [b * 1 + (1 - b) * 0.25, (1 - b) * 0.75]
    assert abs(float(got[0]) + t0[0] * math.log(0.25) + t0[1] * math.log(0.75)) < 1e-12
    # Paper sign, not the AUM-code sign (b CE - (1-b) H).
    aum = torch.tensor([b * ce0 - (1 - b) * h0, b * ce1 - (1 - b) * h1], dtype=torch.float64)
    assert not torch.allclose(got, aum)
    assert torch.allclose(soft_bootstrap_loss(logits, y, b, reduction="mean"), expected.mean(), atol=1e-12)


def test_hard_bootstrap_hand_computed():
    logits, y = two_example_batch()
    b = 0.8
    # ex 0: argmax p = class 1 (3/4): 0.8 ln 4 + 0.2 (-ln 3/4); ex 1: argmax = class 0 (4/5): 0.8 ln 5 + 0.2 (-ln 4/5)
    expected = torch.tensor([b * math.log(4) - (1 - b) * math.log(0.75),
                             b * math.log(5) - (1 - b) * math.log(0.8)], dtype=torch.float64)
    assert torch.allclose(hard_bootstrap_loss(logits, y, beta=b), expected, atol=1e-12, rtol=0)
    # Default betas are Reed's (0.95 soft, 0.8 hard).
    assert torch.allclose(hard_bootstrap_loss(logits, y), expected, atol=1e-12, rtol=0)


def test_bootstrap_beta_one_is_cross_entropy():
    g = torch.Generator().manual_seed(1)
    logits = 3 * torch.randn(32, 4, generator=g)
    y = torch.randint(0, 4, (32,), generator=g)
    ce = F.cross_entropy(logits, y, reduction="none")
    assert torch.allclose(soft_bootstrap_loss(logits, y, beta=1.0), ce, atol=1e-6, rtol=0)
    assert torch.allclose(hard_bootstrap_loss(logits, y, beta=1.0), ce, atol=1e-6, rtol=0)
    with pytest.raises(NoisylabInputError):
        soft_bootstrap_loss(logits, y, beta=1.5)
    with pytest.raises(NoisylabInputError):
        Bootstrap(mode="medium")


def test_soft_bootstrap_minimises_entropy():
    # With beta = 0 the paper's soft loss is H(p): a gradient step makes the prediction more confident.
    z = torch.tensor([[0.3, 0.0, -0.2]], requires_grad=True)
    soft_bootstrap_loss(z, torch.tensor([2]), beta=0.0, reduction="sum").backward()
    with torch.no_grad():
        z2 = z - 0.5 * z.grad
        H = lambda t: float(-(t.softmax(1) * t.log_softmax(1)).sum())  # noqa: E731
        assert H(z2) < H(z)


# ------------------------------------------------------------------------------ estimators
def test_anchor_estimator_recovers_T_from_perfect_probs():
    rng = np.random.default_rng(0)
    n = 600
    y = rng.integers(0, 3, n)
    clean = np.eye(3)[y]
    # Half of the examples have mixed clean posteriors (not anchors); the rest are one-hot.
    mixed = rng.random(n) < 0.5
    clean[mixed] = rng.dirichlet(np.ones(3), mixed.sum())
    probs = clean @ T3.T  # p(noisy = s | x) = sum_y T[s, y] p(y | x)
    for q in (0.97, 1.0):
        T_hat = estimate_T_anchor(probs, quantile=q)
        np.testing.assert_allclose(T_hat, T3, atol=1e-6, rtol=0)
    T_hat_t = estimate_T_anchor(torch.tensor(probs))
    np.testing.assert_allclose(T_hat_t.sum(axis=0), 1.0, atol=1e-12)
    np.testing.assert_allclose(T_hat_t, T3, atol=1e-6, rtol=0)


def test_T_from_confident_learning_matches_noise_matrix():
    rng = np.random.default_rng(3)
    n = 900
    y_true = rng.integers(0, 3, n)
    noisy = pair_noise(y_true, 0.3, n_classes=3, random_state=4).noisy_labels
    logits = 3.0 * np.eye(3)[y_true] + rng.normal(size=(n, 3))
    pred_probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    T_hat = T_from_confident_learning(noisy, pred_probs)
    np.testing.assert_allclose(T_hat.sum(axis=0), 1.0, atol=1e-9)
    ref = noisylab.estimate_py_and_noise_matrices_from_probabilities(noisy, pred_probs)[1]
    np.testing.assert_array_equal(T_hat, ref)
    ForwardCorrection(T_hat)  # valid input for the strategy


# ------------------------------------------------------------------------------ strategies
def gaussian_mixture(n, seed, scale=1.0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centers = np.array([[0.0, 2.0], [2.0, -1.0], [-2.0, -1.0]])
    return (centers[y] + rng.normal(scale=scale, size=(n, 2))).astype(np.float32), y.astype(np.int64)


def mlp():
    return nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 3))


def run_cfg(seed, **kw):
    return TrainConfig(**{**dict(epochs=30, batch_size=64, lr=0.05, device="cpu", random_state=seed), **kw})


@pytest.mark.parametrize("seed", [0, 1])
def test_forward_correction_true_T_beats_ce_under_pair_noise(seed):
    # 40% pair noise y -> y+1: the noisy posterior is 0.6 p(y) + 0.4 p(y-1), so CE's boundaries
    # shift towards the previous class; forward correction with the true T undoes that.  Checked on
    # 8 (scale, seed) settings while writing this test: FC was better in all (by 0.5 to 22 points);
    # seeds 0 and 1 at scale 1.0 give CE 0.82 / 0.78 vs FC 0.95 / 0.94.
    X, y = gaussian_mixture(600, seed)
    Xt, yt = gaussian_mixture(2000, 100 + seed)
    nl = pair_noise(y, 0.4, n_classes=3, random_state=seed)
    ce = Trainer(mlp, run_cfg(seed), strategy=CrossEntropy()).fit(X, nl.noisy_labels, Xt, yt)
    fc = Trainer(mlp, run_cfg(seed), strategy=ForwardCorrection(nl.noise_matrix)).fit(X, nl.noisy_labels, Xt, yt)
    acc_ce, acc_fc = ce.history_[-1]["test_acc"], fc.history_[-1]["test_acc"]
    assert acc_fc > acc_ce + 0.03, (acc_ce, acc_fc)
    assert acc_fc > 0.9
    fc2 = Trainer(mlp, run_cfg(seed), strategy=ForwardCorrection(nl.noise_matrix)).fit(X, nl.noisy_labels, Xt, yt)
    assert fc.history_.without_timing() == fc2.history_.without_timing()
    assert all(torch.equal(a, b) for a, b in zip(fc.strategy_.model.state_dict().values(),
                                                 fc2.strategy_.model.state_dict().values()))
    assert fc.strategy_.T_.dtype == torch.float32 and fc.strategy_.T_.device == fc.device_


@pytest.mark.parametrize("strategy", [
    lambda T: ForwardCorrection(T),
    lambda T: Bootstrap(mode="soft"),
    lambda T: Bootstrap(0.7, mode="hard"),
], ids=["forward", "soft", "hard"])
def test_strategies_checkpoint_resume_exact(tmp_path, strategy):
    X, y = gaussian_mixture(300, 5)
    nl = pair_noise(y, 0.3, n_classes=3, random_state=5)
    c = run_cfg(2, epochs=4, checkpoint_dir=tmp_path / "c", checkpoint_every=1)
    ref = Trainer(mlp, run_cfg(2, epochs=4), strategy=strategy(nl.noise_matrix)).fit(X, nl.noisy_labels)

    class Stop(Exception):
        pass

    class StopAt(Callback):
        def on_epoch_end(self, trainer, metrics):
            if metrics["epoch"] == 1:
                raise Stop

    with pytest.raises(Stop):
        Trainer(mlp, c, strategy=strategy(nl.noise_matrix), callbacks=[StopAt()]).fit(X, nl.noisy_labels)
    tr = Trainer(mlp, c, strategy=strategy(nl.noise_matrix)).fit(X, nl.noisy_labels)
    assert tr.start_epoch_ == 1  # stopped in on_epoch_end of epoch 1, before its save
    assert ref.history_.without_timing() == tr.history_.without_timing()
    assert all(torch.equal(a, b) for a, b in zip(ref.strategy_.model.state_dict().values(),
                                                 tr.strategy_.model.state_dict().values()))
    ckpt = torch.load(tmp_path / "c" / "checkpoint.pt", weights_only=True)
    assert ckpt["strategy"]["extra"]  # T or (beta, mode) saved


def test_resume_with_other_T_or_beta_refused(tmp_path):
    X, y = gaussian_mixture(200, 6)
    c = run_cfg(0, epochs=2, checkpoint_dir=tmp_path / "f")
    Trainer(mlp, c, strategy=ForwardCorrection(pair_matrix(3, 0.4))).fit(X, y)
    # the trainer's config hash covers the strategy's parameters (the strategy also checks its own state)
    with pytest.raises(NoisylabInputError, match="different configuration"):
        Trainer(mlp, c, strategy=ForwardCorrection(pair_matrix(3, 0.2))).fit(X, y)
    c = run_cfg(0, epochs=2, checkpoint_dir=tmp_path / "b")
    Trainer(mlp, c, strategy=Bootstrap(0.9)).fit(X, y)
    with pytest.raises(NoisylabInputError, match="different configuration"):
        Trainer(mlp, c, strategy=Bootstrap(0.8)).fit(X, y)


def test_bootstrap_strategy_reports_loss_and_logits():
    X, y = gaussian_mixture(200, 7)
    for st in (Bootstrap(), Bootstrap(mode="hard")):
        tr = Trainer(mlp, run_cfg(0, epochs=3), strategy=st).fit(X, y)
        assert np.isfinite(tr.history_[-1]["train_loss"]) and tr.history_[-1]["train_acc"] > 0.5
    assert Bootstrap().beta == 0.95 and Bootstrap(mode="hard").beta == 0.8


def test_robust_anchor_skips_the_top_three_percent():
    # 200 rows; in each column the 5 largest p(i|x) (ranks 195-199) are over-confident outliers whose
    # rows put the rest of their mass on the next class.  quantile=0.97 takes index floor(0.97 * 199)
    # = 193 of the stable ascending sort, below them; quantile=1 (the paper's argmax) takes an outlier.
    rng = np.random.default_rng(1)
    n, K = 200, 3
    P = rng.dirichlet(np.ones(K), n) * 0.8
    P /= P.sum(axis=1, keepdims=True)
    outliers = {i: np.arange(5 * i, 5 * i + 5) for i in range(K)}
    for i, rows in outliers.items():
        P[rows] = 0.0
        P[rows, i] = 0.99 - 0.001 * np.arange(5)
        P[rows, (i + 1) % K] = 1 - P[rows, i]
    for q, expect_outlier in ((1.0, True), (0.97, False)):
        T_hat = estimate_T_anchor(P, quantile=q)
        for i in range(K):
            anchor = np.argsort(P[:, i], kind="stable")[int(np.floor(q * (n - 1)))]
            np.testing.assert_allclose(T_hat[:, i], P[anchor] / P[anchor].sum())
            assert (anchor in outliers[i]) == expect_outlier
