"""Meta-gradient re-weighting with a clean probe set: Learning to Reweight (L2R; Ren et al.,
ICML 2018) and IEG -- Isolation, Escalation, Guidance (Zhang et al., CVPR 2020) -- as trainer
:class:`~noisylab.torch.trainer.Strategy` s (METHODS.md sections 5 and 6).

Both methods need a small *clean* probe set ``(X_probe, y_probe)`` (e.g. 10 examples per class,
held out, class balanced, *before* noise is injected) that is not part of the training data.

L2R (``l2rmodel.py`` of the IEG code, which re-implements Ren et al.)
--------------------------------------------------------------------
Per batch ``(x, ỹ)`` of size B and probe batch ``(x_p, y_p)``:

1. ``ℓ_i(θ) = CE(ỹ_i, f_θ(x_i))`` (one train-mode forward; its graph is reused for the real step);
2. ``ε = 0 ∈ R^B`` (requires grad); look-ahead ``θ'(ε) = θ − α·∇_θ[Σ ε_i ℓ_i(θ) + R(θ)]``
   (``α = meta_lr``, a *plain* gradient step: no momentum, graph kept, ``create_graph=True``);
3. ``L_p = mean CE(y_p, f_θ'(x_p)) + R(θ')`` through :func:`torch.func.functional_call`;
4. ``g = ∂L_p/∂ε``; ``w = max(−g, 0) / (Σ max(−g, 0) + 1e-5)``;
5. real step on ``Σ_i w_i ℓ_i(θ)`` with the trainer's optimizer.  When every ``w_i`` is 0 the batch
   makes **no update** (no optimizer step, so no weight decay and no momentum step either; the TF
   code would still apply both); such batches are counted in ``train_skipped``.

IEG (``ieg/models/model.py``)
-----------------------------
Per batch: ``z = f(x)``, ``ẑ = f(x̂)`` with ``x̂ = strong_augment(x)`` (on top of the trainer's
weak augmentation); label guess ``q = sharpen(½[softmax(LN(z)) + softmax(LN(ẑ))], T)``
(stop-grad); MixMatch-style ``L_xe`` on the mixed pool ``[probe, x, x̂]``; consistency
``L_cs``; meta step giving weights ``w`` and binary ``ε*``; ``L = (L1 + L2)/2 + L_xe + L_cs``;
one optimizer step; weight EMA.  See :class:`IEG` for each formula.

Quirks reproduced (on purpose, as in the reference code)
--------------------------------------------------------
* **Tensor-wide logit norm**: ``LN(v) = v / sqrt(mean(v²) + 1e-8)`` with the mean over the
  *whole* ``B×C`` tensor, not per row (:func:`logit_norm`).  In the label guess ``z`` and ``ẑ``
  are normalised separately; in ``L_xe`` the probe part and each unlabeled half (x part, x̂ part)
  of the mixed logits separately.  The consistency, L1, L2 and look-ahead losses use raw logits.
* **λ approximation**: ``m = U^{1/β}/2``, ``λ = max(m, 1 − m)`` with ``U ~ U(0, 1)`` per mixed
  example instead of a Beta(β, β) draw; with β = 0.5 that is ``λ = 1 − U²/2`` (:func:`mix_lambda`).
* **Binary ε***: ``ε*_i = 1`` if ``g_ε,i < 0`` else 0 (keep the label or take the guess), while L2
  keeps the *fixed* ``ε = grad_eps_init = 0.9`` mixing.
* **Weights sum to 1** (L2 is a weighted *sum*), L1 is a plain mean.
* **IEG's look-ahead uses the optimizer's momentum buffer**:
  ``θ' = θ − meta_stepsize·(meta_momentum·buf + ∇_θ L_look)`` with ``buf`` the SGD
  ``momentum_buffer`` of each parameter (stop-grad; zeros before the first step, or for optimizers
  without one, e.g. Adam).  L2R's look-ahead uses no momentum.
* ``w = max(w0 − g_w − w0, 0)`` of the code is written ``max(−g_w, 0)``.
* **R(θ) over all parameters** (BatchNorm affine parameters and biases included, as TF's
  ``l2_loss`` over all trainable variables): ``R(θ) = weight_decay · Σ ½‖θ‖²`` with
  ``weight_decay = config.weight_decay``.  In the look-ahead it enters as ``+ weight_decay·θ`` in
  the gradient and as ``R(θ')`` in the probe loss (so it also contributes to ``g``).  In the real
  step ``R(θ)`` is *not* added to the loss: the optimizer's own ``weight_decay`` (coupled L2 for
  SGD / Adam, the same gradient ``weight_decay·θ``) applies it; with ``optimizer="adamw"`` the
  real step's decay is decoupled instead.
* **EMA with TF's warm-up** (``tf.train.ExponentialMovingAverage(0.999, global_step)``): after the
  t-th optimizer step ``ema ← d·ema + (1 − d)·θ`` with ``d = min(ema_decay, (1 + t)/(10 + t))``;
  only parameters are averaged, BatchNorm running statistics are copied from the live model
  (the code's evaluation getter falls back to the original variables for them).
* Probe stream: unshuffled, cycling, the whole probe set per step when it is not larger than the
  batch size (IEG) -- the reference ``probe_ds.repeat().batch(batch_size)``.  The probe batch gets
  the training batches' weak augmentation (``TrainConfig.augment``; IEG's crop+flip of the probe,
  METHODS.md §6.2), drawn from the trainer's augmentation generator after the batch's own; L2R
  alike (§5 does not say; the IEG code feeds both from the same pipeline).
* ``L_cs = consistency_factor · mean_i KL(softmax(z_i) ‖ softmax(ẑ_i))`` (the code's mean over
  ``B·C`` elements times C); ``L_xe`` / ``L_cs`` are 0 when their factor is 0 (the code then skips
  the whole term, probe CE included).

Choices / fixes
---------------
* **BatchNorm**: the look-ahead probe forward runs in train mode (batch statistics, as the code)
  on *clones* of the buffers, so it never changes the running statistics; the real forwards
  (``f(x)``, and for IEG ``f(x̂)`` and the mixed pool) update them as ordinary training forwards.
  The 3B mixed pool is one forward (the MixMatch code interleaves to keep per-B statistics).
* The first IEG step does not take the code's "momentum-slot creation" path: without a buffer the
  look-ahead uses zeros (the code builds, but never runs, an apply op).
* All randomness of IEG (strong augmentation, probe draw with replacement, mixing permutation and
  λ) comes from one ``torch.Generator`` on the device, seeded from the trainer's ``rng_`` at setup
  and saved in the checkpoint (``extra``), so a resume is exact.
* Default strong augmentation (:func:`default_strong_augment`, METHODS.md §6.6 CPU version): random
  shift ±2 + Gaussian noise (σ = 0.1 × the standard deviation of the training inputs, computed once
  at setup) + cutout (images: 3×3 up to 16×16 inputs, else ``side // 2``; sequences: a zeroed
  window of ``max(1, round(L/8))`` samples).  Flat vectors whose length is a perfect square are
  reshaped to a one-channel image for it; other flat vectors only get the noise.

Cost: L2R ≈ 3 forward/backward passes per step, IEG ≈ 6 forwards (x, x̂, the 3B mixed pool,
probe) plus a double backward.
"""
from __future__ import annotations

import copy
import functools
import math
import numbers

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call

from ..._validation import NoisylabInputError
from ..augment import Augment, cutout, random_shift
from ..trainer import Strategy

__all__ = [
    "IEG",
    "L2R",
    "default_strong_augment",
    "ema_decay_at",
    "gaussian_noise",
    "guess_label",
    "logit_norm",
    "mix_lambda",
    "sharpen",
    "soft_cross_entropy",
]


# ------------------------------------------------------------------------------------ pieces
def logit_norm(v: torch.Tensor) -> torch.Tensor:
    """``v / sqrt(mean(v²) + 1e-8)`` with the mean over the **whole** tensor (IEG's LN)."""
    return v * torch.rsqrt(v.square().mean() + 1e-8)


def sharpen(p: torch.Tensor, temperature: float) -> torch.Tensor:
    """Rows of ``p ** (1/T)`` renormalised to sum to 1."""
    t = p.pow(1.0 / temperature)
    return t / t.sum(dim=1, keepdim=True)


def guess_label(z: torch.Tensor, z_hat: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """IEG's label guess ``sharpen(½[softmax(LN(z)) + softmax(LN(ẑ))], T)`` (no gradient).

    ``LN`` is :func:`logit_norm` applied to ``z`` and to ``ẑ`` separately (tensor-wide each).
    """
    with torch.no_grad():
        p = 0.5 * (torch.softmax(logit_norm(z), dim=1) + torch.softmax(logit_norm(z_hat), dim=1))
        return sharpen(p, temperature)


def mix_lambda(u: torch.Tensor, beta: float = 0.5) -> torch.Tensor:
    """The code's Beta approximation: ``m = u^{1/β}/2``, ``λ = max(m, 1 − m)`` (β = 0.5: ``1 − u²/2``)."""
    m = u.pow(1.0 / beta) / 2
    return torch.maximum(m, 1 - m)


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-example ``−Σ_k target_k log softmax(logits)_k``, shape (B,)."""
    return -(target * F.log_softmax(logits, dim=1)).sum(dim=1)


def ema_decay_at(step: int, decay: float) -> float:
    """TF ``ExponentialMovingAverage(decay, num_updates=step)``: ``min(decay, (1 + step)/(10 + step))``."""
    return min(decay, (1.0 + step) / (10.0 + step))


def gaussian_noise(x: torch.Tensor, std: float, generator: torch.Generator) -> torch.Tensor:
    """``x + std · N(0, 1)`` with the noise drawn from ``generator`` (on its device)."""
    noise = torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype)
    return x + std * noise.to(x.device)


class _FlatAsImage:
    """Apply an image augmentation to flat (N, s*s) vectors as (N, 1, s, s)."""

    def __init__(self, aug, side: int):
        self.aug, self.side = aug, side

    def __call__(self, x, generator):
        n = x.shape[0]
        return self.aug(x.reshape(n, 1, self.side, self.side), generator).reshape(x.shape)

    def __repr__(self):
        return f"_FlatAsImage({self.aug!r}, side={self.side})"


def default_strong_augment(example_shape, data_scale: float = 1.0):
    """IEG's strong augmentation for small inputs (METHODS.md §6.6): shift ±2, noise, cutout.

    Parameters
    ----------
    example_shape : tuple of int
        Shape of one example: ``(C, L)`` sequences, ``(C, H, W)`` images, ``(d,)`` vectors.
    data_scale : float, default=1.0
        The noise standard deviation is ``0.1 * data_scale`` (IEG passes the standard deviation of
        the training inputs).

    Returns
    -------
    callable ``aug(x, generator)``
        Sequences: ``random_shift(2)`` → noise → ``cutout(max(1, round(L/8)))``.  Images:
        ``random_shift(2)`` → noise → ``cutout(3)`` (``side // 2`` for images larger than 16).
        Flat vectors of perfect-square length ``s²``: the image version on ``(1, s, s)``; other
        flat vectors: the noise only.
    """
    shape = tuple(int(s) for s in example_shape)
    std = 0.1 * float(data_scale)
    noise = functools.partial(gaussian_noise, std=std)
    if len(shape) == 2:
        size = max(1, round(shape[1] / 8))
        return Augment([functools.partial(random_shift, max_shift=2), noise,
                        functools.partial(cutout, size=size)], name="ieg_strong_1d")
    if len(shape) == 3:
        side = max(shape[1:])
        size = 3 if side <= 16 else side // 2
        return Augment([functools.partial(random_shift, max_shift=2), noise,
                        functools.partial(cutout, size=size)], name="ieg_strong_2d")
    if len(shape) == 1:
        s = math.isqrt(shape[0])
        if s * s == shape[0] and s >= 4:
            return _FlatAsImage(default_strong_augment((1, s, s), data_scale), s)
        return Augment([noise], name="ieg_strong_noise")
    raise NoisylabInputError(f"default_strong_augment: no default for examples of shape {shape}; "
                             "pass strong_augment=callable(x, generator).")


# ------------------------------------------------------------------------------- validation
def _check_real(name, value, low, high, low_incl=True, high_incl=True):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise NoisylabInputError(f"{name} must be a finite real number; got {value!r}.")
    ok = (value >= low if low_incl else value > low) and (value <= high if high_incl else value < high)
    if not ok:
        lo, hi = "[" if low_incl else "(", "]" if high_incl else ")"
        raise NoisylabInputError(f"{name} must be in {lo}{low}, {high}{hi}; got {value!r}.")
    return float(value)


def _check_probe(X_probe, y_probe):
    if isinstance(X_probe, torch.Tensor):
        X_probe = X_probe.detach().cpu().numpy()
    if isinstance(y_probe, torch.Tensor):
        y_probe = y_probe.detach().cpu().numpy()
    X = np.asarray(X_probe)
    y = np.asarray(y_probe)
    if X.dtype.kind not in "fiub":
        raise NoisylabInputError(f"X_probe must be numeric; got dtype {X.dtype}.")
    if X.ndim < 2 or X.shape[0] == 0:
        raise NoisylabInputError(f"X_probe must have shape (n_probe, *example_shape) with n_probe >= 1; "
                                 f"got shape {X.shape}.")
    X = np.ascontiguousarray(X, dtype=np.float32)
    if not np.all(np.isfinite(X)):
        raise NoisylabInputError("X_probe contains NaN or infinite values.")
    if y.ndim != 1 or y.dtype.kind not in "iu" or (y.size and y.min() < 0):
        raise NoisylabInputError(f"y_probe must be a 1-D array of non-negative integer labels; got dtype "
                                 f"{y.dtype}, shape {y.shape}.")
    if len(y) != len(X):
        raise NoisylabInputError(f"X_probe has {len(X)} rows but y_probe has {len(y)} labels.")
    return X, y.astype(np.int64)


# ----------------------------------------------------------------------------- shared base
class _ProbeStrategy(Strategy):
    """Probe-set handling and the functional look-ahead shared by :class:`L2R` and :class:`IEG`."""

    X_probe: np.ndarray
    y_probe: np.ndarray

    def _setup_probe(self, trainer) -> None:
        dev = getattr(trainer, "device_", torch.device("cpu"))
        x_shape = getattr(trainer, "_x_shape", None)
        if x_shape is None and getattr(trainer, "X_", None) is not None:
            x_shape = tuple(trainer.X_.shape[1:])
        if x_shape is not None and tuple(self.X_probe.shape[1:]) != tuple(x_shape):
            raise NoisylabInputError(f"X_probe examples have shape {tuple(self.X_probe.shape[1:])}; the training "
                                     f"examples have shape {tuple(x_shape)}.")
        dtype = next((p.dtype for p in self.model.parameters() if p.is_floating_point()), torch.float32)
        self.Xp_ = torch.from_numpy(self.X_probe).to(device=dev, dtype=dtype)  # the model's dtype
        self.yp_ = torch.from_numpy(self.y_probe).to(dev)
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            k = int(self.model(self.Xp_[:1]).shape[1])
        self.model.train(was_training)
        self.n_classes_ = k
        if int(self.y_probe.max()) >= k:
            raise NoisylabInputError(f"y_probe has label {int(self.y_probe.max())} but the model has only {k} "
                                     f"outputs (labels 0..{k - 1}).")
        y_train = getattr(trainer, "y_", None)
        if y_train is not None:
            idx = getattr(trainer, "train_idx_t_", None)
            y_train = y_train[idx] if idx is not None else y_train
            required = set(np.unique(y_train.cpu().numpy()).tolist())
        else:
            required = set(range(k))
        missing = sorted(required - set(np.unique(self.y_probe).tolist()))
        if missing:
            raise NoisylabInputError(f"the probe set has no example of class(es) {missing}; the meta-gradient "
                                     "would push those classes' training examples to weight 0. Give a clean "
                                     "probe set with examples of every class (e.g. 10 per class).")
        self.probe_pos_ = 0

    def _probe_batch(self, size: int | None):
        """The next probe batch: the whole probe set (``size`` None or >= n_probe), else ``size``
        rows of an unshuffled cycling stream (``repeat().batch(size)``), with the training batches'
        augmentation (``TrainConfig.augment``, the IEG reference's crop+flip of the probe) when set."""
        n = len(self.Xp_)
        if size is None or size >= n:
            xp, yp = self.Xp_, self.yp_
        else:
            idx = (self.probe_pos_ + torch.arange(size, device=self.Xp_.device)) % n
            self.probe_pos_ = (self.probe_pos_ + size) % n
            xp, yp = self.Xp_[idx], self.yp_[idx]
        trainer = getattr(self, "trainer", None)
        augment = getattr(getattr(trainer, "config", None), "augment", None)
        if augment is not None:
            xp = augment(xp, trainer.augment_gen_)
        return xp, yp

    def _named_params(self):
        return [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]

    def _probe_loss(self, new_params: dict, xp, yp, weight_decay: float):
        """``mean CE(y_p, f_θ'(x_p)) + R(θ')`` in train mode on cloned buffers (running stats untouched)."""
        buffers = {n: b.clone() for n, b in self.model.named_buffers()}
        logits = functional_call(self.model, (new_params, buffers), (xp,))
        loss = F.cross_entropy(logits, yp)
        if weight_decay:
            loss = loss + 0.5 * weight_decay * sum(p.square().sum() for p in new_params.values())
        return loss

    def _lookahead(self, look_loss, lr: float, weight_decay: float, momentum: float = 0.0):
        """``θ' = θ − lr·(momentum·buf + ∇_θ look_loss + weight_decay·θ)`` (graph kept)."""
        named = self._named_params()
        grads = torch.autograd.grad(look_loss, [p for _, p in named], create_graph=True, materialize_grads=True)
        new = {}
        for (name, p), g in zip(named, grads):
            step = g
            if weight_decay:
                step = step + weight_decay * p.detach()
            if momentum:
                buf = self.optimizer.state.get(p, {}).get("momentum_buffer")
                if buf is not None:
                    step = step + momentum * buf.detach()
            new[name] = p.detach() - lr * step
        return new


def _bool(name, v):
    if not isinstance(v, (bool, np.bool_)):
        raise NoisylabInputError(f"{name} must be True or False; got {v!r}.")
    return bool(v)


# ---------------------------------------------------------------------------------------- L2R
class L2R(_ProbeStrategy):
    """Learning to Reweight (Ren et al., 2018) as in the IEG re-implementation (module docs).

    Parameters
    ----------
    X_probe : array (n_probe, *example_shape)
        Clean probe inputs (same example shape as the training data), e.g. 10 per class.
    y_probe : array of int (n_probe,)
        Their (clean) labels; every class of the training labels must occur.
    meta_lr : float > 0, default=0.1
        α, the step size of the look-ahead (``meta_stepsize`` of the code).
    probe_batch_size : int >= 1 or None, default=None
        None: the whole probe set at every step (what the code does with small probe sets);
        an int: batches of an unshuffled cycling probe stream.

    Notes
    -----
    ``R(θ)`` of the look-ahead uses ``trainer.config.weight_decay`` (see the module docs).
    Reported per batch: ``loss`` (``Σ w_i ℓ_i``), ``logits``, ``meta_loss`` (``L_p`` at θ'),
    ``mean_weight`` (mean of w over the batch, ``1/B`` unless all are 0), ``zero_weight_fraction``
    and ``skipped`` (1 when every weight was 0 and no update was made).
    """

    def __init__(self, X_probe, y_probe, meta_lr: float = 0.1, probe_batch_size: int | None = None):
        self.X_probe, self.y_probe = _check_probe(X_probe, y_probe)
        self.meta_lr = _check_real("meta_lr", meta_lr, 0.0, math.inf, low_incl=False)
        if probe_batch_size is not None and (isinstance(probe_batch_size, bool)
                                             or not isinstance(probe_batch_size, numbers.Integral)
                                             or probe_batch_size < 1):
            raise NoisylabInputError(f"probe_batch_size must be None or an int >= 1; got {probe_batch_size!r}.")
        self.probe_batch_size = None if probe_batch_size is None else int(probe_batch_size)

    def setup(self, trainer) -> None:
        super().setup(trainer)
        self._setup_probe(trainer)

    def meta_weights(self, losses: torch.Tensor, xp: torch.Tensor, yp: torch.Tensor):
        """L2R weights of a batch from its per-example losses ``ℓ_i(θ)`` (with graph).

        Returns
        -------
        weights : Tensor (B,)
            ``max(−g, 0) / (Σ max(−g, 0) + 1e-5)``, detached.
        grad_eps : Tensor (B,)
            ``g = ∂L_p/∂ε`` at ε = 0.
        meta_loss : Tensor
            ``L_p`` at θ'(0), detached.
        """
        wd = float(self.trainer.config.weight_decay)
        eps = torch.zeros_like(losses, requires_grad=True)
        new = self._lookahead((eps * losses).sum(), self.meta_lr, wd)
        meta_loss = self._probe_loss(new, xp, yp, wd)
        (g,) = torch.autograd.grad(meta_loss, [eps], retain_graph=True)
        w = torch.clamp(-g, min=0)
        w = w / (w.sum() + 1e-5)
        return w.detach(), g.detach(), meta_loss.detach()

    def train_step(self, batch) -> dict:
        x, y, _ = batch
        xp, yp = self._probe_batch(self.probe_batch_size)
        logits = self.model(x)
        losses = F.cross_entropy(logits, y, reduction="none")
        w, _, meta_loss = self.meta_weights(losses, xp, yp)
        loss = (w * losses).sum()
        skipped = not bool((w > 0).any())
        if not skipped:
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        return {"loss": loss.detach(), "logits": logits.detach(), "meta_loss": meta_loss,
                "mean_weight": w.mean(), "zero_weight_fraction": (w <= 0).float().mean(),
                "skipped": float(skipped)}

    def extra_state_dict(self) -> dict:
        return {"probe_pos": int(self.probe_pos_)}

    def load_extra_state_dict(self, state: dict) -> None:
        self.probe_pos_ = int(state.get("probe_pos", 0))


# ---------------------------------------------------------------------------------------- IEG
class IEG(_ProbeStrategy):
    """IEG (Zhang et al., CVPR 2020): meta re-weighting + meta label correction + probe-guided
    semi-supervised losses (METHODS.md §6.2; quirks in the module docs).

    Per batch ``(x, ỹ)`` (B examples) with probe batch ``(x_p, y_p)``:

    1. ``z = f(x)``, ``ẑ = f(x̂)``, ``x̂ = strong_augment(x)``; ``q = guess_label(z, ẑ, T)``.
    2. ``L_xe`` (if ``ce_factor > 0``): B probe rows drawn uniformly with replacement from the probe
       batch; pool ``[probe, x, x̂]`` with targets ``[onehot(y_p), q, q]``; per pooled example
       ``λ = mix_lambda(U, β)`` and a random permutation π: ``x_mix = λ·pool + (1 − λ)·pool[π]``
       (targets alike); one forward of the 3B mixed inputs; ``L_xe = CE(LN(probe logits)) +
       ce_factor·CE([LN(x part), LN(x̂ part)])`` (soft-target means).
    3. ``L_cs = consistency_factor · mean_i KL(softmax(z_i) ‖ softmax(ẑ_i))``, z stop-grad.
    4. Meta step: ``w0 = 1/B``, ``ε0 = grad_eps_init``, ``m_i = ε_i onehot(ỹ_i) + (1 − ε_i) q_i``,
       ``L_look = Σ w_i CE(m_i, z_i) + R(θ)``,
       ``θ' = θ − meta_stepsize·(meta_momentum·buf + ∇_θ L_look)``,
       ``L_p = mean CE(y_p, f_θ'(x_p)) + R(θ')``; ``w = max(−∂L_p/∂w, 0)``, ``w ← w/(Σw + 1e-5)``;
       ``ε*_i = 1[∂L_p/∂ε_i < 0]``.
    5. ``L1 = mean_i CE(ε*_i onehot(ỹ_i) + (1 − ε*_i) q_i, z_i)``,
       ``L2 = Σ_i w_i CE(grad_eps_init·onehot(ỹ_i) + (1 − grad_eps_init) q_i, z_i)``,
       ``L = (L1 + L2)/2 + L_xe + L_cs`` (+ R(θ) through the optimizer's weight_decay); one step;
       EMA update.

    Parameters
    ----------
    X_probe, y_probe : arrays
        Clean probe set (see :class:`L2R`).
    ce_factor : float >= 0, default=5
    consistency_factor : float >= 0, default=20
    temperature : float > 0, default=0.5
        Sharpening temperature T of the label guess.
    beta : float > 0, default=0.5
        β of the mixing coefficient :func:`mix_lambda`.
    meta_stepsize : float > 0, default=0.1
    meta_momentum : float in [0, 1), default=0.9
    grad_eps_init : float in [0, 1], default=0.9
        ε0 of the meta step and the fixed ε of L2.
    use_ema : bool, default=True
        Keep an exponential moving average of the weights; :meth:`predict_logits` then uses it.
        The EMA network is ``models[1]`` (so it is checkpointed and part of the "best" weights).
    ema_decay : float in [0, 1), default=0.999
        With TF's warm-up, see :func:`ema_decay_at`.
    strong_augment : callable ``aug(x, generator)`` or None, default=None
        None: :func:`default_strong_augment` for the training example shape, noise scale 0.1 × the
        standard deviation of the training inputs.
    ce_rampup : float in [0, 1], default=0.0
        Fraction of the training steps over which the factor of the MixMatch-style loss ramps
        linearly from 0 to ``ce_factor`` (MixMatch's ramp-up of its unlabeled-loss weight).  0 = the
        IEG reference (full factor from the first step).  Not in the IEG code: on MNIST-1D (1-D
        CNN, symmetric 0.5, 40 epochs, seed 0) the full factor from step 0 makes the network collapse
        to one class (noisy-validation accuracy 0.223, last-epoch test accuracy 0.125), since the
        guessed labels it is trained on are its own early, near-random predictions; with
        ``ce_rampup=0.5`` it does not (noisy-validation 0.359, test 0.689 at the selected epoch).
    label_correction : bool, default=True
        True: the reference's meta label correction in L1 (binary ``ε*`` from the sign of
        ``∂L_p/∂ε``).  False: ``ε* ≡ 1`` in L1, i.e. ``L1 = mean_i CE(onehot(ỹ_i), z_i)``; the meta step
        still runs (weights ``w`` of L2, and ``eps_one_fraction`` still reports the meta ``ε*``).  Not in
        the IEG code.  On MNIST-1D (1-D CNN, 40 epochs, ``ce_factor=1``, ``ce_rampup=0.5``) the binary
        ``ε*`` is what collapses the network to one class late in training: once the MixMatch-style
        loss nears full weight, the meta step keeps a label almost only where it agrees with the
        model's own sharpened guess (ε* = 1 on ~0.63 of agreeing vs ~0.1-0.25 of disagreeing rows),
        so L1 becomes self-training; when the guesses drift toward one class, ε* drops to ~1/K for
        clean and noisy rows alike and every batch is trained towards that class (the 100 probe
        examples, memorised by then, no longer pull it back): last-epoch test accuracy 0.12-0.17 at
        symmetric 0.8 (seeds 0-2).  With ``label_correction=False`` no run collapsed and, chosen on
        the NOISY validation split (mean best-epoch accuracy over symmetric 0.5 / 0.8 / pair 0.4 x
        seeds 0, 1: 0.369 vs 0.319 with ε*), the test accuracy at the selected epoch over seeds 0-2 was
        0.806 (symmetric 0.5; 0.672 with ε*), 0.481 (symmetric 0.8; 0.486) and 0.796 (pair 0.4; 0.660).

    Notes
    -----
    The defaults are the paper's (tuned for WRN-28-10 / ResNet-29, which have BatchNorm).  On small
    BN-free networks they can collapse to a constant prediction: with digits (40% noise, MLP, SGD
    lr 0.05, 30 epochs) the defaults stayed at chance, ``consistency_factor=20`` alone was enough to
    cause it, while ``ce_factor=1, consistency_factor=2`` reached 0.97 test accuracy (plain CE 0.89,
    L2R 0.92).  The BN version of ``small_cnn`` did not collapse with the defaults.  Reduce both
    factors for BN-free CPU-sized models.

    Reported per batch: ``loss`` (L), ``logits`` (of ``z``), ``l1``, ``l2``, ``xe_loss``,
    ``cs_loss``, ``meta_loss``, ``mean_weight``, ``zero_weight_fraction`` and ``eps_one_fraction``
    (fraction of ε* = 1, i.e. labels kept).
    """

    def __init__(self, X_probe, y_probe, ce_factor: float = 5.0, consistency_factor: float = 20.0,
                 temperature: float = 0.5, beta: float = 0.5, meta_stepsize: float = 0.1,
                 meta_momentum: float = 0.9, grad_eps_init: float = 0.9, use_ema: bool = True,
                 ema_decay: float = 0.999, strong_augment=None, ce_rampup: float = 0.0,
                 label_correction: bool = True):
        self.X_probe, self.y_probe = _check_probe(X_probe, y_probe)
        self.label_correction = _bool("label_correction", label_correction)
        self.ce_rampup = _check_real("ce_rampup", ce_rampup, 0.0, 1.0)
        self.ce_factor = _check_real("ce_factor", ce_factor, 0.0, math.inf)
        self.consistency_factor = _check_real("consistency_factor", consistency_factor, 0.0, math.inf)
        self.temperature = _check_real("temperature", temperature, 0.0, math.inf, low_incl=False)
        self.beta = _check_real("beta", beta, 0.0, math.inf, low_incl=False)
        self.meta_stepsize = _check_real("meta_stepsize", meta_stepsize, 0.0, math.inf, low_incl=False)
        self.meta_momentum = _check_real("meta_momentum", meta_momentum, 0.0, 1.0, high_incl=False)
        self.grad_eps_init = _check_real("grad_eps_init", grad_eps_init, 0.0, 1.0)
        self.use_ema = _bool("use_ema", use_ema)
        self.ema_decay = _check_real("ema_decay", ema_decay, 0.0, 1.0, high_incl=False)
        if strong_augment is not None and not callable(strong_augment):
            raise NoisylabInputError(f"strong_augment must be None or a callable aug(x, generator); "
                                     f"got {strong_augment!r}.")
        self.strong_augment = strong_augment

    # ---------------------------------------------------------------------------- life cycle
    def setup(self, trainer) -> None:
        super().setup(trainer)
        self._setup_probe(trainer)
        dev = getattr(trainer, "device_", torch.device("cpu"))
        seed = int(trainer.rng_.integers(0, 2**63 - 1))
        self.gen_ = torch.Generator(device=dev).manual_seed(seed)
        X = getattr(trainer, "X_", None)
        if X is not None:
            idx = getattr(trainer, "train_idx_t_", None)
            scale = float((X[idx] if idx is not None else X).std())
        else:
            scale = float(self.X_probe.std())
        self.data_scale_ = scale if math.isfinite(scale) and scale > 0 else 1.0
        self.strong_augment_ = self.strong_augment if self.strong_augment is not None else \
            default_strong_augment(self.X_probe.shape[1:], self.data_scale_)
        self.ema_steps_ = 0
        self.step_ = 0
        cfg = trainer.config
        n = len(getattr(trainer, "train_indices_", ())) or len(self.X_probe)
        per_epoch = n // cfg.batch_size if cfg.drop_last else -(-n // cfg.batch_size)
        self.total_steps_ = max(1, per_epoch * cfg.epochs)
        if self.use_ema:
            self.ema_model = copy.deepcopy(self.model)
            for p in self.ema_model.parameters():
                p.requires_grad_(False)
            self.models = [self.model, self.ema_model]

    @torch.no_grad()
    def predict_logits(self, x: torch.Tensor) -> torch.Tensor:
        net = self.ema_model if self.use_ema else self.model
        net.eval()
        return net(x)

    @torch.no_grad()
    def ema_update(self) -> None:
        """One EMA step after the ``t``-th optimizer step (``ema_steps_`` counts them)."""
        self.ema_steps_ += 1
        d = ema_decay_at(self.ema_steps_, self.ema_decay)
        for pe, p in zip(self.ema_model.parameters(), self.model.parameters()):
            pe.mul_(d).add_(p.detach(), alpha=1.0 - d)
        for be, b in zip(self.ema_model.buffers(), self.model.buffers()):
            be.copy_(b)

    # ------------------------------------------------------------------------------- pieces
    def meta_step(self, z: torch.Tensor, y: torch.Tensor, q: torch.Tensor, xp: torch.Tensor, yp: torch.Tensor):
        """Meta re-weighting and label correction from the batch logits ``z`` (with graph).

        Returns
        -------
        weights : Tensor (B,), normalised ``max(−g_w, 0)`` (detached)
        eps_star : Tensor (B,), ``1.0`` where ``g_ε < 0`` else ``0.0``
        grad_w, grad_eps : Tensor (B,), ``∂L_p/∂w`` and ``∂L_p/∂ε`` at ``(1/B, grad_eps_init)``
        meta_loss : Tensor, ``L_p`` (detached)
        """
        B = z.shape[0]
        wd = float(self.trainer.config.weight_decay)
        onehot = F.one_hot(y, z.shape[1]).to(z.dtype)
        w0 = torch.full((B,), 1.0 / B, dtype=z.dtype, device=z.device, requires_grad=True)
        eps0 = torch.full((B,), self.grad_eps_init, dtype=z.dtype, device=z.device, requires_grad=True)
        e = eps0[:, None]
        mixed = e * onehot + (1 - e) * q
        look = (w0 * soft_cross_entropy(z, mixed)).sum()
        new = self._lookahead(look, self.meta_stepsize, wd, momentum=self.meta_momentum)
        meta_loss = self._probe_loss(new, xp, yp, wd)
        g_w, g_eps = torch.autograd.grad(meta_loss, [w0, eps0], retain_graph=True)
        w = torch.clamp(-g_w, min=0)
        w = w / (w.sum() + 1e-5)
        eps_star = (g_eps < 0).to(z.dtype)
        return w.detach(), eps_star, g_w.detach(), g_eps.detach(), meta_loss.detach()

    def supervised_losses(self, z, y, q, weights, eps_star):
        """``(L1, L2)`` of step 5: L1 with the binary ε*, L2 with fixed ``grad_eps_init`` and weights."""
        onehot = F.one_hot(y, z.shape[1]).to(z.dtype)
        e = eps_star[:, None]
        l1 = soft_cross_entropy(z, e * onehot + (1 - e) * q).mean()
        g = self.grad_eps_init
        l2 = (weights * soft_cross_entropy(z, g * onehot + (1 - g) * q)).sum()
        return l1, l2

    def mixed_xe_loss(self, x, x_hat, q, xp, yp):
        """``L_xe`` of step 3 (draws from ``gen_``: probe rows, then π, then U)."""
        B = x.shape[0]
        gen = self.gen_
        dev = x.device
        k = q.shape[1]
        sel = torch.randint(0, len(xp), (B,), generator=gen, device=gen.device).to(dev)
        pool_x = torch.cat([xp[sel], x, x_hat])
        pool_t = torch.cat([F.one_hot(yp[sel], k).to(q.dtype), q, q])
        n = pool_x.shape[0]
        perm = torch.randperm(n, generator=gen, device=gen.device).to(dev)
        u = torch.rand(n, generator=gen, device=gen.device).to(dev)
        lam = mix_lambda(u, self.beta).to(pool_x.dtype)
        lam_x = lam.view(-1, *([1] * (pool_x.ndim - 1)))
        x_mix = lam_x * pool_x + (1 - lam_x) * pool_x[perm]
        t_mix = lam[:, None] * pool_t + (1 - lam[:, None]) * pool_t[perm]
        logits = self.model(x_mix)
        lp, lx, lxh = logits.split([B, B, B])
        l_probe = soft_cross_entropy(logit_norm(lp), t_mix[:B]).mean()
        l_unl = soft_cross_entropy(torch.cat([logit_norm(lx), logit_norm(lxh)]), t_mix[B:]).mean()
        return l_probe + self.ce_factor * l_unl

    def train_step(self, batch) -> dict:
        x, y, _ = batch
        xp, yp = self._probe_batch(self.trainer.config.batch_size)
        x_hat = self.strong_augment_(x, self.gen_)
        z = self.model(x)
        z_hat = self.model(x_hat)
        q = guess_label(z, z_hat, self.temperature)
        zero = z.new_zeros(())
        l_xe = self.mixed_xe_loss(x, x_hat, q, xp, yp) if self.ce_factor > 0 else zero
        if self.ce_rampup > 0:  # MixMatch-style linear ramp-up of the factor (see ce_rampup)
            l_xe = l_xe * min(1.0, self.step_ / (self.ce_rampup * self.total_steps_))
        self.step_ += 1
        if self.consistency_factor > 0:
            zd = z.detach()
            kl = (torch.softmax(zd, 1) * (F.log_softmax(zd, 1) - F.log_softmax(z_hat, 1))).sum(1).mean()
            l_cs = self.consistency_factor * kl
        else:
            l_cs = zero
        w, eps_star, _, _, meta_loss = self.meta_step(z, y, q, xp, yp)
        eps_l1 = eps_star if self.label_correction else torch.ones_like(eps_star)  # see label_correction
        l1, l2 = self.supervised_losses(z, y, q, w, eps_l1)
        loss = (l1 + l2) / 2 + l_xe + l_cs
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if self.use_ema:
            self.ema_update()
        return {"loss": loss.detach(), "logits": z.detach(), "l1": l1.detach(), "l2": l2.detach(),
                "xe_loss": l_xe.detach(), "cs_loss": l_cs.detach(), "meta_loss": meta_loss,
                "mean_weight": w.mean(), "zero_weight_fraction": (w <= 0).float().mean(),
                "eps_one_fraction": eps_star.mean()}

    # ------------------------------------------------------------------------------- state
    def extra_state_dict(self) -> dict:
        return {"probe_pos": int(self.probe_pos_), "ema_steps": int(self.ema_steps_),
                "generator": self.gen_.get_state(), "step": int(self.step_)}

    def load_extra_state_dict(self, state: dict) -> None:
        self.probe_pos_ = int(state.get("probe_pos", 0))
        self.ema_steps_ = int(state.get("ema_steps", 0))
        self.step_ = int(state.get("step", 0))
        if "generator" in state:
            self.gen_.set_state(state["generator"].cpu())
