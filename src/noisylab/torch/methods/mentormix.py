"""MentorNet-PD weighting (Jiang et al., ICML 2018), MentorMix (Jiang et al., ICML 2020) and mixup
(Zhang et al., ICLR 2018) as :class:`~noisylab.torch.trainer.Strategy` s.

MentorNet weight ``v`` (METHODS.md §4.2)
----------------------------------------
Per example: the loss ``ℓ_i``, the loss difference ``d_i = ℓ_i - EMA_t`` and the training
*progress* ``e = floor(100 * step / max_steps)`` in [0, 99] -- a percentage of the total number of
optimisation steps, **not** an epoch count (the reference feeds it to MentorNet as "epoch").
``EMA_t = 0.5 EMA_{t-1} + 0.5 percentile_{100 p}(ℓ of this batch)``, ``EMA_0 = 0`` (:class:`LossEMA`);
``d`` uses the EMA *after* this batch's update (the reference assigns the moving average and then
uses the assigned value).  The percentile is TensorFlow's ``percentile(..., interpolation=None)``,
whose default is ``"nearest"`` in TF's own definition (:func:`tf_percentile`): sort descending and
take index ``round((n - 1) * (1 - q / 100))`` with round-half-to-even.  This differs from numpy's
``method="nearest"`` on exact half-way ties (e.g. n = 4, q = 50: TF gives the 2nd smallest value,
numpy the 2nd largest).

Curricula (``curriculum=``):

* ``"mentornet_pd"`` (default, :func:`mentornet_pd`): the predefined curriculum the pretrained
  MentorNet-PD network was trained to imitate (google/mentornet): ``e <= 18``: 1;
  ``18 < e < 90``: ``1[d <= 0]``; ``e >= 90``: ``clip(1 - d / gamma, 0, 1)``.  It is used
  directly (no network): METHODS.md's "faithful cheap replacement".  The learned MentorNet's TF1
  checkpoint is **not** reproduced.
* ``"loss_percentile"``: the MentorMix README's ``loss_thresholding_function``,
  ``v = 1[ℓ < percentile_p(ℓ of this batch)]`` (no EMA).
* ``"loss_ema"``: the README's recommended variant, comparing the loss to the moving average of
  the batch percentile instead: ``v = 1[ℓ < EMA_t]`` (same :class:`LossEMA` as above).

Burn-in applies to every curriculum: ``e < burn_in - 1`` gives ``v = 1`` (the reference's
``max(v, 1)``); ``burn_in = 10`` (the paper's commands) = the first 9 % of the steps.  Example
dropout is off in MentorMix (rate list "0.0, 100") and is not implemented.  ``v`` never carries a
gradient.

MentorMix step (METHODS.md §4.3, :meth:`MentorMix.train_step`)
--------------------------------------------------------------
1. forward of the (augmented) batch, ``ℓ_i = CE(y_i, z_i)``; 2. ``v`` from the curriculum with the
"individual" EMA; 3. partners ``j_i ~ Categorical(softmax(v))``, ``B`` draws with replacement
(softmax, not ``v / sum v``); 4. ``λ_i ~ Beta(α, α)``, ``λ_i = max(λ_i, 1 - λ_i)``, and
``λ_i = 1 - λ_i`` where ``v_i < 0.5``; 5. ``x̃ = λ x + (1 - λ) x_j``, ``ỹ = λ onehot(y) +
(1 - λ) onehot(y_j)``; 6. second forward on ``x̃``, ``ℓ̃_i = CE(ỹ_i, z̃_i)``; 7. loss
``mean_i ℓ̃_i``, or with ``second_reweight`` ``mean_i(v'_i ℓ̃_i)`` where ``v'`` comes from the
curriculum on ``ℓ̃`` with the separate "mixed" EMA (the mean is over all ``B`` examples, not over
``sum v'``).

Quirks reproduced / decided
---------------------------
* **Weight decay.**  The reference adds an explicit ``2e-4 * sum ½||W||²`` over conv/FC kernels
  (no biases, no BN) only when ``second_reweight`` is off; with ``second_reweight`` it multiplies
  an *empty* regularisation collection, so those runs have **no weight decay at all**.  Here the
  loss never contains a weight-decay term: weight decay is the optimizer's
  ``TrainConfig.weight_decay`` (coupled SGD decay ``wd * W``, the same gradient as TF's
  ``wd * ½||W||²``, but applied to every parameter, biases and BN included).  To mimic the
  reference, use ``weight_decay=2e-4`` without and ``weight_decay=0`` with ``second_reweight``
  (:func:`mentormix_defaults` documents the row; the choice stays the user's).
* **BatchNorm.**  The reference updates the BN moving statistics from the mixed forward only.
  Here both forwards run in train mode (batch statistics), so the running statistics see the
  clean batch and then the mixed one.  The first forward runs under ``torch.no_grad`` (its loss
  only feeds ``v``; no gradient flows through it in the reference either).
* **Evaluation.**  The reference evaluates an EMA (0.9999) of the weights; not reproduced here
  (predictions use the trained weights).
* **Randomness.**  Partner indices (``torch.multinomial``) and mixup permutations
  (``torch.randperm``) come from a dedicated ``torch.Generator`` on the data's device, seeded in
  :meth:`setup` from the trainer's numpy ``rng_`` and saved in the checkpoint (``extra``).  The
  Beta draws come from the trainer's numpy ``rng_`` (checkpointed by the trainer).  A resumed run
  is bit-identical to an uninterrupted one.
* The ``train_step`` logits returned to the trainer (``train_acc``, dynamics recorder) are those
  of the first, un-mixed forward.

mixup (:class:`Mixup`)
----------------------
Input mixup of Zhang et al. as in their CIFAR code: one ``λ ~ Beta(α, α)`` per batch, the partner
of row ``i`` is row ``perm[i]`` of a random permutation, ``x̃ = λ x + (1 - λ) x[perm]`` and the
loss ``λ CE(z̃, y) + (1 - λ) CE(z̃, y[perm])``.  ``train_acc`` is the same λ-weighted accuracy
(``λ·correct(y) + (1 - λ)·correct(y[perm])``) as there; no logits are returned (the mixed logits
are not per-example dynamics of the batch rows).
"""
from __future__ import annotations

import math
import numbers

import numpy as np
import torch
import torch.nn.functional as F

from ..._validation import NoisylabInputError, check_option
from ..trainer import Strategy

__all__ = [
    "CURRICULA",
    "MENTORMIX_DEFAULTS",
    "LossEMA",
    "MentorMix",
    "Mixup",
    "curriculum_weights",
    "mentor_mixup",
    "mentormix_defaults",
    "mentornet_pd",
    "tf_percentile",
]

CURRICULA = ("mentornet_pd", "loss_percentile", "loss_ema")

#: training_mentormix_command.sh: (dataset, noise level) -> (alpha, percentile p, second_reweight).
MENTORMIX_DEFAULTS = {
    ("cifar10", 0.2): (2.0, 0.8, False),
    ("cifar10", 0.4): (8.0, 0.6, False),
    ("cifar10", 0.6): (8.0, 0.6, True),
    ("cifar10", 0.8): (4.0, 0.2, True),
    ("cifar100", 0.2): (2.0, 0.7, False),
    ("cifar100", 0.4): (8.0, 0.5, False),
    ("cifar100", 0.6): (4.0, 0.3, True),
    ("cifar100", 0.8): (8.0, 0.1, True),
}
_LEVELS = (0.2, 0.4, 0.6, 0.8)


# ------------------------------------------------------------------------------ validation
def _bad_real(v) -> bool:
    return isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v)


def _check_percentile(p) -> float:
    if _bad_real(p) or not 0.0 <= p <= 1.0:
        raise NoisylabInputError(f"percentile must be a real number in [0, 1] (a fraction, e.g. 0.7 for the "
                                 f"70th percentile); got {p!r}.")
    return float(p)


def _check_progress(progress) -> int:
    if isinstance(progress, bool) or not isinstance(progress, numbers.Integral) or not 0 <= progress <= 99:
        raise NoisylabInputError(f"progress must be an int in [0, 99] (percent of the total training steps); "
                                 f"got {progress!r}.")
    return int(progress)


def _check_burn_in(burn_in) -> int:
    if isinstance(burn_in, bool) or not isinstance(burn_in, numbers.Integral) or not 0 <= burn_in <= 100:
        raise NoisylabInputError(f"burn_in must be an int in [0, 100] (percent of the total training steps); "
                                 f"got {burn_in!r}.")
    return int(burn_in)


def _check_gamma(gamma) -> float:
    if _bad_real(gamma) or gamma <= 0:
        raise NoisylabInputError(f"gamma must be a real number > 0; got {gamma!r}.")
    return float(gamma)


def _check_alpha(alpha, allow_zero=False) -> float:
    if _bad_real(alpha) or alpha < 0 or (alpha == 0 and not allow_zero):
        raise NoisylabInputError(f"alpha must be a real number {'>= 0' if allow_zero else '> 0'} "
                                 f"(the Beta(alpha, alpha) parameter); got {alpha!r}.")
    return float(alpha)


def _check_bool(name, v) -> bool:
    if not isinstance(v, bool):
        raise NoisylabInputError(f"{name} must be True or False; got {v!r}.")
    return v


def _check_loss(loss, name="loss") -> torch.Tensor:
    if not isinstance(loss, torch.Tensor) or loss.ndim != 1 or loss.numel() == 0:
        raise NoisylabInputError(f"{name} must be a non-empty 1-D tensor of per-example losses; got "
                                 f"{getattr(loss, 'shape', type(loss).__name__)}.")
    return loss


# ------------------------------------------------------------------------------ percentile
def _tf_nearest_index(n: int, p: float) -> int:
    """Ascending-order index of TF's "nearest" percentile ``100 p`` of ``n`` values."""
    frac_at_q_or_above = 1.0 - (100.0 * p) / 100.0
    desc = round((n - 1) * frac_at_q_or_above)  # Python's round = half to even, like tf.round
    desc = min(max(desc, 0), n - 1)
    return n - 1 - desc


def tf_percentile(values: torch.Tensor, p: float) -> torch.Tensor:
    """The ``100 p``-th percentile of a 1-D tensor, as TF's ``percentile(x, 100 p)`` (default
    ``interpolation="nearest"``): the values sorted in DESCENDING order, index
    ``round((n - 1) * (1 - p))`` with round-half-to-even.  Returns a 0-d tensor (no device sync).

    >>> float(tf_percentile(torch.tensor([4.0, 1.0, 3.0, 2.0]), 0.5))  # numpy 'nearest' gives 3.0
    2.0
    """
    _check_loss(values, "values")
    return _tf_percentile(values, _check_percentile(p))


def _tf_percentile(values: torch.Tensor, p: float) -> torch.Tensor:
    return torch.kthvalue(values.detach(), _tf_nearest_index(values.shape[0], p) + 1).values


# ------------------------------------------------------------------------------- curricula
def mentornet_pd(loss: torch.Tensor, loss_diff: torch.Tensor, progress: int, *, burn_in: int = 0,
                 gamma: float = 1.0, breakpoints: tuple = (18, 90)) -> torch.Tensor:
    """MentorNet-PD weights ``v*`` (predefined curriculum, METHODS.md §4.2), no gradient.

    Parameters
    ----------
    loss : tensor (B,)
        Per-example losses ``ℓ`` (only the shape/device/dtype are used by the rule itself).
    loss_diff : tensor (B,)
        ``d = ℓ - EMA_t``.
    progress : int in [0, 99]
        ``e = floor(100 * step / max_steps)``: percent of the total steps, NOT an epoch.
    burn_in : int in [0, 100], default=0
        ``e < burn_in - 1`` gives ``v = 1`` (percent of steps).
    gamma : float > 0, default=1.0
        SPCL-linear width of the last phase.
    breakpoints : (int, int), default=(18, 90)
        ``(b1, b2)``: ``e <= b1``: 1;  ``b1 < e < b2``: ``1[d <= 0]``;  ``e >= b2``:
        ``clip(1 - d / gamma, 0, 1)``.

    Returns
    -------
    v : float tensor (B,) in [0, 1], detached.
    """
    _check_loss(loss)
    _check_loss(loss_diff, "loss_diff")
    if loss_diff.shape != loss.shape:
        raise NoisylabInputError(f"loss and loss_diff must have the same shape; got {tuple(loss.shape)} and "
                                 f"{tuple(loss_diff.shape)}.")
    e = _check_progress(progress)
    burn_in = _check_burn_in(burn_in)
    gamma = _check_gamma(gamma)
    if (not isinstance(breakpoints, (tuple, list)) or len(breakpoints) != 2
            or any(isinstance(b, bool) or not isinstance(b, numbers.Integral) for b in breakpoints)
            or not 0 <= breakpoints[0] < breakpoints[1] <= 100):
        raise NoisylabInputError(f"breakpoints must be two increasing ints (b1, b2) with 0 <= b1 < b2 <= 100; "
                                 f"got {breakpoints!r}.")
    return _pd_rule(loss_diff, e, burn_in, gamma, int(breakpoints[0]), int(breakpoints[1]))


def _pd_rule(loss_diff: torch.Tensor, e: int, burn_in: int, gamma: float, b1: int = 18, b2: int = 90) -> torch.Tensor:
    """:func:`mentornet_pd` without argument checks (hot path)."""
    d = loss_diff.detach()
    dtype = d.dtype if d.is_floating_point() else torch.float32
    if e < burn_in - 1 or e <= b1:
        return torch.ones(d.shape, dtype=dtype, device=d.device)
    if e < b2:
        return (d <= 0).to(dtype)
    return (1.0 - d.to(dtype) / gamma).clamp_(0.0, 1.0)


class LossEMA:
    """Moving average of a batch loss percentile: ``EMA_t = decay·EMA_{t-1} + (1 - decay)·pct_p(ℓ_t)``.

    ``EMA_0 = 0``; the reference's decay is 0.5 (a very short memory).  One instance per call site
    (MentorMix keeps "individual" and "mixed").  ``value`` is a 0-d float32 tensor on the device of
    the last update; :meth:`state_dict` / :meth:`load_state_dict` make it checkpointable.

    Parameters
    ----------
    percentile : float in [0, 1]
        ``p``; the batch statistic is :func:`tf_percentile` ``(ℓ, p)``.
    decay : float in [0, 1), default=0.5
    """

    def __init__(self, percentile: float, decay: float = 0.5):
        self.percentile = _check_percentile(percentile)
        if _bad_real(decay) or not 0.0 <= decay < 1.0:
            raise NoisylabInputError(f"decay must be a real number in [0, 1); got {decay!r}.")
        self.decay = float(decay)
        self.value = torch.zeros((), dtype=torch.float32)
        self.n_updates = 0

    def update(self, loss: torch.Tensor) -> torch.Tensor:
        """Fold this batch's percentile in; return the NEW value (a 0-d tensor, no gradient)."""
        pct = _tf_percentile(loss, self.percentile).to(torch.float32)
        if self.value.device != pct.device:
            self.value = self.value.to(pct.device)
        self.value = self.decay * self.value + (1.0 - self.decay) * pct
        self.n_updates += 1
        return self.value

    def state_dict(self) -> dict:
        return {"value": self.value.detach().cpu().clone(), "n_updates": self.n_updates}

    def load_state_dict(self, state: dict, device=None) -> None:
        v = torch.as_tensor(state["value"], dtype=torch.float32).reshape(())
        self.value = v.to(device) if device is not None else v
        self.n_updates = int(state.get("n_updates", 0))


def curriculum_weights(loss: torch.Tensor, ema: LossEMA | None, progress: int, *, curriculum: str = "mentornet_pd",
                       percentile: float = 0.7, burn_in: int = 0, gamma: float = 1.0) -> torch.Tensor:
    """Weights ``v`` (B,) of one call site; updates ``ema`` (needed by "mentornet_pd" / "loss_ema").

    ``"mentornet_pd"``: :func:`mentornet_pd` with ``d = ℓ - ema.update(ℓ)``;
    ``"loss_percentile"``: ``1[ℓ < tf_percentile(ℓ, percentile)]``; ``"loss_ema"``:
    ``1[ℓ < ema.update(ℓ)]``.  Burn-in (``progress < burn_in - 1`` gives 1) applies to all.
    """
    curriculum = check_option("curriculum", curriculum, CURRICULA)
    _check_loss(loss)
    if curriculum != "loss_percentile" and ema is None:
        raise NoisylabInputError(f"curriculum={curriculum!r} needs a LossEMA.")
    return _curriculum(loss, ema, _check_progress(progress), curriculum, _check_percentile(percentile),
                       _check_burn_in(burn_in), _check_gamma(gamma))


def _curriculum(loss, ema, e, curriculum, percentile, burn_in, gamma) -> torch.Tensor:
    """:func:`curriculum_weights` without argument checks (hot path)."""
    loss = loss.detach()
    if curriculum == "mentornet_pd":
        return _pd_rule(loss - ema.update(loss), e, burn_in, gamma)
    thr = _tf_percentile(loss, percentile) if curriculum == "loss_percentile" else ema.update(loss)
    if e < burn_in - 1:
        return torch.ones_like(loss)
    return (loss < thr).to(loss.dtype)


# ---------------------------------------------------------------------------------- mixing
def mentor_mixup(x: torch.Tensor, y: torch.Tensor, partner: torch.Tensor, lam: torch.Tensor,
                 n_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``x̃_i = λ_i x_i + (1 - λ_i) x_{j_i}`` and ``ỹ_i = λ_i onehot(y_i) + (1 - λ_i) onehot(y_{j_i})``.

    ``partner`` (B,) int64 indices into the batch, ``lam`` (B,) float in [0, 1].  Returns
    ``(x_mix, y_mix)`` with ``y_mix`` of shape (B, n_classes) (no gradient through the targets).
    """
    lam = lam.to(x.dtype)
    lx = lam.view(-1, *([1] * (x.ndim - 1)))
    x_mix = torch.lerp(x[partner], x, lx)  # partner + λ (x - partner) = λ x + (1 - λ) x_j
    lam_y = lam.unsqueeze(1)
    y1 = F.one_hot(y, n_classes).to(x.dtype)
    y_mix = torch.lerp(y1[partner], y1, lam_y)
    return x_mix, y_mix


def mentormix_defaults(noise_rate: float, dataset: str = "cifar10") -> dict:
    """MentorMix hyper-parameters of the paper's commands (METHODS.md §4.4), for ``MentorMix(**d)``.

    Parameters
    ----------
    noise_rate : float in [0, 1)
        The noise level; the table has rows 0.2, 0.4, 0.6, 0.8.  Other rates use the NEAREST row,
        and an exact tie (0.3, 0.5, 0.7) the HIGHER-noise row: the commands' noise resamples the
        label uniformly *including* the true class, so a flip-to-another-class rate ``f`` equals a
        nominal rate ``f K / (K - 1) > f``, which lies on the higher side.  The table is keyed on
        the rate only (it was tuned on uniform noise); pair-flip noise 0.4 uses the 0.4 row.
    dataset : {"cifar10", "cifar100"}, default="cifar10"

    Returns
    -------
    dict with ``alpha``, ``percentile``, ``second_reweight`` and ``burn_in`` (= 10, i.e. the first
    9 % of the steps).  The reference has weight decay 2e-4 in the rows without second_reweight
    and none in the rows with it: set ``TrainConfig.weight_decay`` accordingly to mimic it.

    >>> mentormix_defaults(0.4)
    {'alpha': 8.0, 'percentile': 0.6, 'second_reweight': False, 'burn_in': 10}
    """
    dataset = check_option("dataset", dataset, ("cifar10", "cifar100"))
    if _bad_real(noise_rate) or not 0.0 <= noise_rate < 1.0:
        raise NoisylabInputError(f"noise_rate must be a real number in [0, 1); got {noise_rate!r}.")
    # nearest level; ties (|r - level| equal within float error) go to the higher level
    level = min(_LEVELS, key=lambda lv: (round(abs(noise_rate - lv), 9), -lv))
    alpha, p, second = MENTORMIX_DEFAULTS[(dataset, level)]
    return {"alpha": alpha, "percentile": p, "second_reweight": second, "burn_in": 10}


# -------------------------------------------------------------------------------- strategies
class _GeneratorMixin:
    """A dedicated torch.Generator on the trainer's device, seeded from ``trainer.rng_``."""

    def _setup_generator(self, trainer) -> None:
        dev = getattr(trainer, "device_", torch.device("cpu"))
        seed = int(trainer.rng_.integers(0, 2**63 - 1))
        self.generator_ = torch.Generator(device=dev).manual_seed(seed)

    def _steps_per_epoch(self, trainer) -> int:
        cfg = trainer.config
        n = len(trainer.train_indices_)
        return max(1, n // cfg.batch_size if cfg.drop_last else -(-n // cfg.batch_size))


class MentorMix(_GeneratorMixin, Strategy):
    """MentorMix (Jiang et al., ICML 2020) with MentorNet-PD weights; see the module docstring.

    Parameters
    ----------
    alpha : float > 0, default=8.0
        Beta(α, α) of the per-example mixing coefficients (flag default; see
        :func:`mentormix_defaults` for the paper's per-noise values).
    percentile : float in [0, 1], default=0.7
        ``p`` of the loss percentile fed to the EMAs (or the threshold of "loss_percentile").
    burn_in : int in [0, 100], default=0
        Percent of the total steps: ``progress < burn_in - 1`` gives ``v = 1`` (the commands use 10).
    second_reweight : bool, default=True
        Re-weight the mixed losses by ``v'`` (curriculum on the mixed losses with the "mixed" EMA).
    curriculum : {"mentornet_pd", "loss_percentile", "loss_ema"}, default="mentornet_pd"
    gamma : float > 0, default=1.0
        SPCL-linear width of MentorNet-PD's last phase.
    ema_decay : float in [0, 1), default=0.5

    Reported per batch (history ``train_<k>``): ``loss`` (the optimised mixed loss), ``v_mean``
    (mean of ``v`` on the clean batch), ``v_high_frac`` (fraction with ``v >= 0.5``) and, with
    ``second_reweight``, ``v_mixed_mean``.  ``logits`` are the first (un-mixed) forward's.

    Attributes (after setup): ``ema_individual_``, ``ema_mixed_`` (:class:`LossEMA`),
    ``generator_`` (partner draws), ``step_`` (global step), ``max_steps_``.
    """

    def __init__(self, alpha: float = 8.0, percentile: float = 0.7, burn_in: int = 0, second_reweight: bool = True,
                 curriculum: str = "mentornet_pd", gamma: float = 1.0, ema_decay: float = 0.5):
        self.alpha = _check_alpha(alpha)
        self.percentile = _check_percentile(percentile)
        self.burn_in = _check_burn_in(burn_in)
        self.second_reweight = _check_bool("second_reweight", second_reweight)
        self.curriculum = check_option("curriculum", curriculum, CURRICULA)
        self.gamma = _check_gamma(gamma)
        LossEMA(self.percentile, ema_decay)  # validates ema_decay
        self.ema_decay = float(ema_decay)

    # ---------------------------------------------------------------------------- life cycle
    def setup(self, trainer) -> None:
        super().setup(trainer)
        self._setup_generator(trainer)
        self.ema_individual_ = LossEMA(self.percentile, self.ema_decay)
        self.ema_mixed_ = LossEMA(self.percentile, self.ema_decay)
        self.steps_per_epoch_ = self._steps_per_epoch(trainer)
        self.max_steps_ = trainer.config.epochs * self.steps_per_epoch_
        self.step_ = 0

    def on_epoch_begin(self, epoch: int) -> None:
        self.step_ = int(epoch) * self.steps_per_epoch_

    def progress(self, step: int | None = None) -> int:
        """``floor(100 * step / max_steps)`` clipped to [0, 99] (current ``step_`` by default)."""
        step = self.step_ if step is None else step
        return min(99, max(0, (100 * int(step)) // self.max_steps_))

    def weights(self, loss: torch.Tensor, ema: LossEMA, progress: int) -> torch.Tensor:
        """Curriculum weights ``v`` of one call site (updates ``ema``)."""
        return _curriculum(loss, ema, progress, self.curriculum, self.percentile, self.burn_in, self.gamma)

    def _draw(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Partners ``j ~ Categorical(softmax(v))`` (B draws, with replacement) and raw
        ``λ ~ Beta(α, α)`` (B,); the flip rule is applied by :meth:`mix_coefficients`."""
        B = v.shape[0]
        partner = torch.multinomial(torch.softmax(v.float(), dim=0), B, replacement=True, generator=self.generator_)
        lam = torch.from_numpy(self.trainer.rng_.beta(self.alpha, self.alpha, size=B).astype(np.float32))
        return partner, lam.to(v.device)

    @staticmethod
    def mix_coefficients(lam: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``λ = max(λ, 1 - λ)``, then ``1 - λ`` where ``v < 0.5``."""
        lam = torch.maximum(lam, 1.0 - lam)
        return torch.where(v < 0.5, 1.0 - lam, lam)

    def train_step(self, batch) -> dict:
        x, y, _ = batch
        e = self.progress()
        with torch.no_grad():
            logits = self.model(x)
            loss_clean = F.cross_entropy(logits, y, reduction="none")
            v = self.weights(loss_clean, self.ema_individual_, e)
            partner, lam = self._draw(v)
            lam = self.mix_coefficients(lam, v)
            x_mix, y_mix = mentor_mixup(x, y, partner, lam, logits.shape[1])
        logits_mix = self.model(x_mix)
        loss_mix = F.cross_entropy(logits_mix, y_mix, reduction="none")
        out = {"logits": logits, "v_mean": v.mean(), "v_high_frac": (v >= 0.5).float().mean()}
        if self.second_reweight:
            v2 = self.weights(loss_mix.detach(), self.ema_mixed_, e)
            loss = (v2 * loss_mix).mean()
            out["v_mixed_mean"] = v2.mean()
        else:
            loss = loss_mix.mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step_ += 1
        out["loss"] = loss.detach()
        return out

    # ---------------------------------------------------------------------------- checkpoint
    def extra_state_dict(self) -> dict:
        return {"ema_individual": self.ema_individual_.state_dict(), "ema_mixed": self.ema_mixed_.state_dict(),
                "generator": self.generator_.get_state(), "step": int(self.step_)}

    def load_extra_state_dict(self, state: dict) -> None:
        dev = getattr(self.trainer, "device_", None)
        self.ema_individual_.load_state_dict(state["ema_individual"], dev)
        self.ema_mixed_.load_state_dict(state["ema_mixed"], dev)
        self.generator_.set_state(state["generator"].cpu())
        self.step_ = int(state["step"])


class Mixup(_GeneratorMixin, Strategy):
    """Input mixup (Zhang et al., ICLR 2018): one ``λ ~ Beta(α, α)`` per batch, a random permutation
    partner, loss ``λ CE(z̃, y) + (1 - λ) CE(z̃, y[perm])`` (see the module docstring).

    Parameters
    ----------
    alpha : float >= 0, default=1.0
        ``alpha = 0`` means ``λ = 1`` (no mixing, plain CE), as in the reference code.

    Reported per batch: ``loss``, ``n_correct`` (λ-weighted, for ``train_acc``) and ``lam``.
    """

    def __init__(self, alpha: float = 1.0):
        self.alpha = _check_alpha(alpha, allow_zero=True)

    def setup(self, trainer) -> None:
        super().setup(trainer)
        self._setup_generator(trainer)

    def _draw(self, B: int, device) -> tuple[float, torch.Tensor]:
        """``(λ, perm)``: λ from the trainer's numpy ``rng_``, perm from ``generator_``."""
        lam = float(self.trainer.rng_.beta(self.alpha, self.alpha)) if self.alpha > 0 else 1.0
        perm = torch.randperm(B, generator=self.generator_, device=device)
        return lam, perm

    def train_step(self, batch) -> dict:
        x, y, _ = batch
        lam, perm = self._draw(y.shape[0], y.device)
        x_mix = torch.lerp(x[perm], x, lam)
        y_b = y[perm]
        logits = self.model(x_mix)
        loss = lam * F.cross_entropy(logits, y) + (1.0 - lam) * F.cross_entropy(logits, y_b)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        with torch.no_grad():
            pred = logits.argmax(1)
            n_correct = lam * (pred == y).sum() + (1.0 - lam) * (pred == y_b).sum()
        return {"loss": loss.detach(), "n_correct": n_correct, "lam": lam}

    def extra_state_dict(self) -> dict:
        return {"generator": self.generator_.get_state()}

    def load_extra_state_dict(self, state: dict) -> None:
        self.generator_.set_state(state["generator"].cpu())
