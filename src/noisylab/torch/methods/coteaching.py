"""Co-teaching (Han et al., NeurIPS 2018) and Co-teaching+ (Yu et al., ICML 2019) as a
:class:`~noisylab.torch.trainer.Strategy`.

Two networks ``f`` and ``g`` are trained together.  In every minibatch each network ranks the
examples by its own per-example cross-entropy on the (noisy) labels and keeps its
``n_keep = floor(R(T) * |B|)`` smallest-loss examples; ``f`` is then updated on ``g``'s picks and
``g`` on ``f``'s picks (METHODS.md §1.2).  Co-teaching+ (``plus=True``) first restricts the
candidates to the examples on which the two networks' argmax predictions *disagree* and applies
the small-loss selection among those only (``n_keep = floor(R(T) * |disagree|)``).

Keep-rate schedule ``R(T) = 1 - forget_schedule(T)``
---------------------------------------------------
``schedule="code"`` (default) reproduces the array of bhanML/Co-teaching and cleanlab::

    forget[e] = linspace(0, tau**c, T_k)[e] = tau**c * e / (T_k - 1)   for e < T_k
    forget[e] = tau                                                     for e >= T_k

* **Quirk reproduced**: the full rate is reached at epoch ``T_k - 1`` (not ``T_k`` as in the
  paper's formula), and for ``c != 1`` the ramp ends at ``tau**c`` and then jumps to ``tau``.
* ``e`` is the trainer's 0-based epoch, and epoch 0 *is* trained (with forget rate 0, i.e. on
  every example).  The original loop never trains with the 0 entry (its epoch 0 is only an
  evaluation), so there the first trained epoch forgets ``tau / (T_k - 1)``; here that is the
  second epoch.  Not reproduced, on purpose: the trainer trains every epoch it counts.

``schedule="paper"`` uses the paper's formula ``forget(T) = min(T**c / T_k * tau, tau)``.

Losses
------
* **Quirk fixed**: the original returns ``(mean CE over the kept set) / n_keep``, i.e. the loss
  divided twice; here each network's loss is the plain mean CE over its peer's picks.  (With
  Adam this only matters through Adam's epsilon; with SGD it would shrink the lr ~|B|-fold.)
* Co-teaching+ (xingruiyu/coteaching_plus) feeds *softmax probabilities* into
  ``F.cross_entropy`` (a double softmax); fixed: the CE is computed on the logits.
* Co-teaching+ is active from epoch ``init_epoch`` on; earlier epochs use plain Co-teaching (the
  Co-teaching+ code: 0 for MNIST, 20 for CIFAR-10, 5 for CIFAR-100; METHODS.md gives no value,
  default here 0).  A batch with no disagreement is handled as in the code: during the first
  ``fallback_steps`` (5000) optimisation steps both networks are updated with the plain CE of the
  whole batch; later such a batch makes no update (nor does ``n_keep == 0``).  Without this
  fallback two networks that start out predicting the same class for every example never
  disagree and never learn (measured: MNIST-1D, pair 0.4, chance accuracy for 40 epochs).
* The ranking uses the train-mode forward pass (dropout / BN batch statistics active), the same
  forward whose graph is back-propagated, as in the original; losses are sorted detached with a
  stable sort (ties go to the lower batch position).

Networks, optimizers, prediction
--------------------------------
``f = trainer.build_model()`` inside the trainer's seeded context.  ``g`` is built inside
:func:`torch.random.fork_rng` seeded with an integer drawn from the trainer's numpy ``rng_``
(checkpointed, so setup is the same on resume); when the trainer's ``model`` is a module
*instance* (deep-copied, hence identical to ``f``), every submodule of ``g`` with a
``reset_parameters`` method is re-initialised under that seed.  Each network gets its own
optimizer from :func:`~noisylab.torch.trainer.make_optimizer` and the trainer's config; both
models and both optimizers are in :meth:`state_dict` (default Strategy layout, ``models = [f, g]``),
so a resume is exact.  :meth:`predict_logits` uses ``f`` (``predict_with="f"``), or ``g``, or the
mean of both networks' logits (``"mean"``).

Original optimiser setup: ``TrainConfig(optimizer="adam", lr=1e-3, schedule="linear_decay",
decay_start=80)`` (lr_e = lr * (E - e) / (E - 80)) and ``beta1_after_decay=0.1`` here (Adam's
beta1 goes 0.9 -> 0.1 from ``decay_start`` on; the CL variant keeps 0.9: leave it None).

Class weights (the CL paper's final step, METHODS.md §1.5 / §3.2)
----------------------------------------------------------------
``class_weights`` (length-K, positive) makes every cross-entropy of the method -- the ranking losses
and the update losses -- class-weighted, as cleanlab's ``coteaching.py`` does
(``F.cross_entropy(..., weight=class_weights)``): the ranking compares ``w_y * CE`` and an update
loss is the weighted mean ``sum_i w_{y_i} CE_i / sum_i w_{y_i}`` over the peer's picks.  After
confident-learning pruning, :func:`noisylab.torch.robust.pruning_class_weights` gives
``w_k = |{noisy label = k}| / |{kept with noisy label = k}|`` (noisy-label counts, not the true
folder labels of one reference script: METHODS.md §3.2).

Reported per batch: ``loss`` (mean of the two networks' update losses), ``logits`` (of ``f``,
for ``train_acc`` on the noisy labels), ``keep_fraction`` (= n_keep / |B|) and, with
``plus=True``, ``disagree_fraction``.  The "pure ratio" needs the true labels and is not computed.
"""
from __future__ import annotations

import math
import numbers
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..._validation import NoisylabInputError, check_option
from ..trainer import Strategy, make_optimizer

__all__ = ["CoTeaching"]


class CoTeaching(Strategy):
    """Co-teaching / Co-teaching+ with two networks (see the module docstring).

    Parameters
    ----------
    forget_rate : float in [0, 1)
        τ, the final fraction of each batch (or of the disagreement set) that is dropped; usually
        the flip rate of the noise (for resample-including-true-class noise τ = r(K-1)/K).
    num_gradual : int >= 1, default=10
        T_k, the length of the linear ramp of the forget rate.
    exponent : float > 0, default=1
        c in the schedule.
    plus : bool, default=False
        Co-teaching+: select only among examples where the two networks' predictions disagree.
    init_epoch : int >= 0, default=0
        Co-teaching+ only: epochs ``< init_epoch`` use plain Co-teaching.
    schedule : {"code", "paper"}, default="code"
        Forget-rate schedule, see :meth:`forget_schedule`.
    beta1_after_decay : float in [0, 1) or None, default=None
        With Adam/AdamW optimizers, set beta1 to this value for epochs ``>= config.decay_start``
        (original Co-teaching: 0.1); None leaves beta1 alone.
    predict_with : {"f", "g", "mean"}, default="f"
        Which network(s) :meth:`predict_logits` uses.
    fallback_steps : int >= 0, default=5000
        Co-teaching+ only: a batch without disagreement updates both networks on the whole batch
        during the first ``fallback_steps`` steps (the code's rule); 0 disables it.
    class_weights : array-like of shape (K,) or None, default=None
        Positive per-class weights of every cross-entropy (CL + Co-teaching, see the module docs).
    """

    def __init__(self, forget_rate: float, num_gradual: int = 10, exponent: float = 1.0, plus: bool = False,
                 init_epoch: int = 0, schedule: str = "code", beta1_after_decay: float | None = None,
                 predict_with: str = "f", class_weights=None, fallback_steps: int = 5000):
        def bad_real(v, low, high):
            return isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) \
                or not (low <= v < high)

        if bad_real(forget_rate, 0.0, 1.0):
            raise NoisylabInputError(f"forget_rate must be a real number in [0, 1); got {forget_rate!r}.")
        if isinstance(num_gradual, bool) or not isinstance(num_gradual, numbers.Integral) or num_gradual < 1:
            raise NoisylabInputError(f"num_gradual must be an int >= 1; got {num_gradual!r}.")
        if bad_real(exponent, 0.0, math.inf) or exponent == 0:
            raise NoisylabInputError(f"exponent must be a real number > 0; got {exponent!r}.")
        if not isinstance(plus, bool):
            raise NoisylabInputError(f"plus must be True or False; got {plus!r}.")
        if isinstance(init_epoch, bool) or not isinstance(init_epoch, numbers.Integral) or init_epoch < 0:
            raise NoisylabInputError(f"init_epoch must be an int >= 0; got {init_epoch!r}.")
        check_option("schedule", schedule, ("code", "paper"))
        if beta1_after_decay is not None and bad_real(beta1_after_decay, 0.0, 1.0):
            raise NoisylabInputError(f"beta1_after_decay must be None or in [0, 1); got {beta1_after_decay!r}.")
        check_option("predict_with", predict_with, ("f", "g", "mean"))
        if class_weights is not None:
            w = np.asarray(class_weights.detach().cpu() if isinstance(class_weights, torch.Tensor) else class_weights)
            if w.ndim != 1 or w.size < 2 or w.dtype.kind not in "fiu" or not np.all(np.isfinite(w)) or np.any(w <= 0):
                raise NoisylabInputError("class_weights must be a 1-D array of K >= 2 finite positive numbers; got "
                                         f"{w.dtype} array of shape {w.shape}" + (
                                             f" with min {w.min()!r}" if w.size and w.dtype.kind in "fiu" else "") + ".")
            class_weights = w.astype(np.float64)
        self.class_weights = class_weights
        if isinstance(fallback_steps, bool) or not isinstance(fallback_steps, numbers.Integral) or fallback_steps < 0:
            raise NoisylabInputError(f"fallback_steps must be an int >= 0; got {fallback_steps!r}.")
        self.fallback_steps = int(fallback_steps)
        self.step_ = 0
        self.forget_rate = float(forget_rate)
        self.num_gradual = int(num_gradual)
        self.exponent = float(exponent)
        self.plus = plus
        self.init_epoch = int(init_epoch)
        self.schedule = schedule
        self.beta1_after_decay = beta1_after_decay
        self.predict_with = predict_with
        self.epoch_ = 0
        self.current_forget_rate_ = self.forget_schedule(0)

    # ------------------------------------------------------------------------------ schedule
    def forget_schedule(self, epoch: int) -> float:
        """Forget rate 1 - R(T) of 0-based ``epoch``.

        ``"code"``: ``tau**c * e / (T_k - 1)`` for ``e < T_k`` (0 when T_k = 1), else ``tau``
        (bhanML's ``linspace(0, tau**c, T_k)``: full rate at T_k - 1).  ``"paper"``:
        ``min(e**c / T_k * tau, tau)``.
        """
        tau, tk, c = self.forget_rate, self.num_gradual, self.exponent
        if self.schedule == "paper":
            return float(min(epoch ** c / tk * tau, tau))
        if epoch >= tk:
            return tau
        return float(np.linspace(0.0, tau ** c, tk)[epoch])

    def keep_rate(self, epoch: int) -> float:
        """R(T) = 1 - forget_schedule(T)."""
        return 1.0 - self.forget_schedule(epoch)

    # ---------------------------------------------------------------------------- life cycle
    def setup(self, trainer) -> None:
        self.trainer = trainer
        cfg = trainer.config
        self.model_f = trainer.build_model()
        seed = int(trainer.rng_.integers(0, 2**63 - 1))
        dev = getattr(trainer, "device_", torch.device("cpu"))
        cuda = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(seed)
            self.model_g = trainer.build_model()
            if isinstance(trainer.model, nn.Module):
                for mod in self.model_g.modules():
                    if callable(getattr(mod, "reset_parameters", None)):
                        mod.reset_parameters()
        pf, pg = list(self.model_f.parameters()), list(self.model_g.parameters())
        if pf and all(torch.equal(a, b) for a, b in zip(pf, pg)):
            if isinstance(trainer.model, nn.Module):
                cause = ("the model instance has no reset_parameters to re-initialise the second copy; pass a "
                         "callable that builds the model instead, e.g. functools.partial(make_model, name, shape, K)")
            else:
                cause = ("the model factory returns the same weights on every call, e.g. make_model with a fixed "
                         "random_state; leave random_state out of the factory (the Trainer's random_state then "
                         "seeds it) or draw it from torch's RNG, e.g. random_state=int(torch.randint(2**31, (1,)))")
            warnings.warn(f"CoTeaching: the two networks start from identical weights, so they pick the same examples "
                          f"and (without dropout) stay identical: Co-teaching reduces to one network.  Cause: {cause}.", stacklevel=2)
        self.opt_f = make_optimizer(self.model_f.parameters(), cfg)
        self.opt_g = make_optimizer(self.model_g.parameters(), cfg)
        self.models = [self.model_f, self.model_g]
        self.optimizers = [self.opt_f, self.opt_g]
        # Strategy attribute names used by generic code (best weights, lr column).
        self.model, self.optimizer = self.model_f, self.opt_f
        self._weight = None
        if self.class_weights is not None:
            self._weight = torch.as_tensor(self.class_weights, dtype=torch.float32, device=dev)
        self._betas0 = [tuple(g["betas"]) if "betas" in g else None for o in self.optimizers for g in o.param_groups]

    def on_epoch_begin(self, epoch: int) -> None:
        self.epoch_ = int(epoch)
        self.current_forget_rate_ = self.forget_schedule(epoch)
        if self.beta1_after_decay is not None:
            after = epoch >= self.trainer.config.decay_start
            groups = [g for o in self.optimizers for g in o.param_groups]
            for g, b0 in zip(groups, self._betas0):
                if b0 is not None:
                    g["betas"] = (self.beta1_after_decay, b0[1]) if after else b0

    @property
    def plus_active(self) -> bool:
        return self.plus and self.epoch_ >= self.init_epoch

    # ----------------------------------------------------------------------------- selection
    def select(self, logits_f: torch.Tensor, logits_g: torch.Tensor, y: torch.Tensor):
        """Batch positions ``(update_f, update_g, n_keep, n_candidates)`` for the current epoch.

        ``update_f`` are ``g``'s ``n_keep`` smallest-loss candidates (``f`` learns from them),
        ``update_g`` are ``f``'s.  Candidates: the whole batch, or (Co-teaching+ from
        ``init_epoch`` on) the examples whose argmax predictions differ between ``f`` and ``g``.
        ``n_keep = floor(R(T) * n_candidates)``.
        """
        with torch.no_grad():
            lf = F.cross_entropy(logits_f.detach(), y, weight=getattr(self, "_weight", None), reduction="none")
            lg = F.cross_entropy(logits_g.detach(), y, weight=getattr(self, "_weight", None), reduction="none")
            if self.plus_active:
                cand = torch.nonzero(logits_f.detach().argmax(1) != logits_g.detach().argmax(1)).flatten()
            else:
                cand = torch.arange(len(y), device=y.device)
            n_cand = int(cand.numel())
            # floor(R * n); the small epsilon guards against R*n = 63.999999 for an exact product.
            n_keep = int(math.floor((1.0 - self.current_forget_rate_) * n_cand + 1e-9))
            n_keep = min(max(n_keep, 0), n_cand)
            pick_f = cand[torch.argsort(lf[cand], stable=True)[:n_keep]]
            pick_g = cand[torch.argsort(lg[cand], stable=True)[:n_keep]]
        return pick_g, pick_f, n_keep, n_cand

    def train_step(self, batch) -> dict:
        x, y, _ = batch
        logits_f = self.model_f(x)
        logits_g = self.model_g(x)
        if self._weight is not None and self._weight.numel() != logits_f.shape[1]:
            raise NoisylabInputError(f"class_weights has {self._weight.numel()} entries but the model has "
                                     f"{logits_f.shape[1]} outputs.")
        upd_f, upd_g, n_keep, n_cand = self.select(logits_f, logits_g, y)
        out: dict = {"logits": logits_f.detach(), "keep_fraction": n_keep / len(y)}
        self.step_ += 1
        if self.plus_active:
            out["disagree_fraction"] = n_cand / len(y)
            if n_cand == 0 and self.step_ <= self.fallback_steps:  # the code's full-batch fallback
                upd_f = upd_g = torch.arange(len(y), device=y.device)
                n_keep = len(y)
                out["keep_fraction"] = 1.0
        if n_keep == 0:  # nothing to learn from: no update
            with torch.no_grad():
                out["loss"] = 0.5 * (F.cross_entropy(logits_f, y) + F.cross_entropy(logits_g, y))
            return out
        # plain (weighted) mean: the "divided twice" quirk fixed
        loss_f = F.cross_entropy(logits_f[upd_f], y[upd_f], weight=getattr(self, "_weight", None))
        loss_g = F.cross_entropy(logits_g[upd_g], y[upd_g], weight=getattr(self, "_weight", None))
        self.opt_f.zero_grad(set_to_none=True)
        self.opt_g.zero_grad(set_to_none=True)
        (loss_f + loss_g).backward()  # the graphs are disjoint: each net gets only its own gradient
        self.opt_f.step()
        self.opt_g.step()
        out["loss"] = 0.5 * (loss_f.detach() + loss_g.detach())
        return out

    def extra_state_dict(self) -> dict:
        return {"step": int(self.step_)}

    def load_extra_state_dict(self, state: dict) -> None:
        self.step_ = int(state.get("step", 0))

    @torch.no_grad()
    def predict_logits(self, x: torch.Tensor) -> torch.Tensor:
        if self.predict_with == "f":
            self.model_f.eval()
            return self.model_f(x)
        if self.predict_with == "g":
            self.model_g.eval()
            return self.model_g(x)
        self.model_f.eval()
        self.model_g.eval()
        return 0.5 * (self.model_f(x) + self.model_g(x))
