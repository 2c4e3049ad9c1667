"""Loss-correction methods: forward correction (Patrini et al., CVPR 2017) and bootstrapping
(Reed et al., ICLR-W 2015), as pure tensor functions and as trainer :class:`Strategy` s.

Transition-matrix convention
----------------------------
Everywhere in noisylab (``noisylab.noise``, the confident-learning estimators and this module's
inputs and outputs) a noise matrix ``T`` has ``T[s, y] = P(noisy = s | true = y)``: **columns are
true classes and sum to 1**.  Patrini et al. (and METHODS.md section 9) use the transpose,
``T_P[i, j] = P(noisy = j | true = i)`` (rows sum to 1).  The forward-corrected noisy posterior is
``q = T_P^T p = T p`` for a column vector ``p = softmax(z)``, i.e. ``q = p @ T.T`` for a batch of
row vectors, so with noisylab's ``T`` no transpose of the matrix itself is needed in the product;
a Patrini-convention matrix is accepted with ``convention="patrini"`` and transposed
(``T = T_P.T``) before use.  :func:`estimate_T_anchor` builds ``T_P`` row by row as in the paper
and returns its transpose.

Losses (per example, ``reduction="none"`` by default; ``"mean"`` / ``"sum"`` or
:func:`reduce_loss` for the batch value)
---------------------------------------------------------------------------------------------
* :func:`forward_corrected_ce`: ``-log (T p)_ỹ``, computed as
  ``logsumexp_i(log_softmax(z)_i + log T[ỹ, i])`` -- stable, no clamp, and exactly
  ``cross_entropy`` when ``T = I`` (zero entries of ``T`` give ``-inf`` terms that drop out).
* :func:`soft_bootstrap_loss`: Reed's soft bootstrap
  ``-sum_k [beta q_k + (1 - beta) p_k] log p_k = beta CE(ỹ, z) + (1 - beta) H(p)``, the PAPER's
  sign: it *minimises* the prediction entropy (confidence encouragement).  The AUM /
  mislabel-detection code uses ``beta CE - (1 - beta) H(p)`` (opposite sign, a confidence penalty;
  METHODS.md pitfall 6); that variant is NOT what is implemented here.  Gradients flow through
  ``p`` in both terms (the loss as a function of ``z``); ``detach_target=True`` treats the
  ``(1 - beta) p`` part of the target as a constant instead.
* :func:`hard_bootstrap_loss`: ``beta CE(ỹ, z) + (1 - beta) (-log max_k p_k)`` (target
  ``beta q + (1 - beta) onehot(argmax p)``; the argmax carries no gradient).
"""
from __future__ import annotations

import numbers

import numpy as np
import torch
import torch.nn.functional as F

from ..._validation import NoisylabInputError, check_option
from ..trainer import CrossEntropy

__all__ = [
    "forward_corrected_ce",
    "soft_bootstrap_loss",
    "hard_bootstrap_loss",
    "reduce_loss",
    "estimate_T_anchor",
    "T_from_confident_learning",
    "ForwardCorrection",
    "Bootstrap",
    "SOFT_BETA",
    "HARD_BETA",
]

#: Reed et al.'s default beta for the soft / hard bootstrap.
SOFT_BETA = 0.95
HARD_BETA = 0.8
REDUCTIONS = ("none", "mean", "sum")
CONVENTIONS = ("noisylab", "patrini")


# ---------------------------------------------------------------------------------- helpers
def reduce_loss(loss: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Reduce per-example losses: ``"none"`` (as is), ``"mean"`` or ``"sum"``."""
    reduction = check_option("reduction", reduction, REDUCTIONS)
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _check_beta(beta) -> float:
    if isinstance(beta, bool) or not isinstance(beta, numbers.Real) or not 0.0 <= float(beta) <= 1.0:
        raise NoisylabInputError(f"beta must be a real number in [0, 1]; got {beta!r}.")
    return float(beta)


def _check_logits_y(logits, y):
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
        raise NoisylabInputError(f"logits must be a 2-D tensor (B, K); got "
                                 f"{getattr(logits, 'shape', type(logits).__name__)}.")
    if not isinstance(y, torch.Tensor) or y.ndim != 1 or y.shape[0] != logits.shape[0]:
        raise NoisylabInputError(f"y must be a 1-D tensor of {logits.shape[0]} labels; got "
                                 f"{getattr(y, 'shape', type(y).__name__)}.")


def check_transition_matrix(T, n_classes: int | None = None, *, convention: str = "noisylab",
                            atol: float = 1e-4) -> np.ndarray:
    """Validate a noise matrix and return it as float64 numpy in noisylab's column convention.

    ``convention="noisylab"``: ``T[s, y] = P(noisy=s | true=y)``, columns sum to 1.
    ``convention="patrini"``: ``T[i, j] = P(noisy=j | true=i)``, rows sum to 1 (transposed here).
    Entries must be finite and in [0, 1]; the sums must be 1 within ``atol``.
    """
    convention = check_option("convention", convention, CONVENTIONS)
    if isinstance(T, torch.Tensor):
        T = T.detach().cpu().double().numpy()
    T = np.array(T, dtype=np.float64)
    if T.ndim != 2 or T.shape[0] != T.shape[1] or T.shape[0] < 2:
        raise NoisylabInputError(f"T must be a square (K, K) matrix with K >= 2; got shape {T.shape}.")
    if n_classes is not None and T.shape[0] != n_classes:
        raise NoisylabInputError(f"T is {T.shape[0]}x{T.shape[0]} but there are {n_classes} classes.")
    if convention == "patrini":
        T = T.T.copy()
    if not np.all(np.isfinite(T)) or T.min() < 0 or T.max() > 1:
        raise NoisylabInputError("T must hold finite probabilities in [0, 1].")
    sums = T.sum(axis=0)
    if not np.allclose(sums, 1.0, atol=atol, rtol=0):
        what = "columns" if convention == "noisylab" else "rows"
        raise NoisylabInputError(f"The {what} of T (convention={convention!r}) must sum to 1; got sums "
                                 f"{np.round(sums, 6).tolist()}.  noisylab's "
                                 "convention is T[noisy, true] (columns sum to 1); pass convention='patrini' for "
                                 "T[true, noisy].")
    return T


# ------------------------------------------------------------------------------------ losses
def forward_corrected_ce(logits: torch.Tensor, y: torch.Tensor, T, *, convention: str = "noisylab",
                         reduction: str = "none") -> torch.Tensor:
    """Forward-corrected cross-entropy ``-log (T softmax(z))_ỹ`` per example (Patrini et al.).

    Parameters
    ----------
    logits : tensor (B, K)
    y : int64 tensor (B,) of noisy labels
    T : tensor or array (K, K)
        ``T[s, y] = P(noisy=s | true=y)`` (noisylab, columns sum to 1) or, with
        ``convention="patrini"``, ``T[i, j] = P(noisy=j | true=i)`` (rows sum to 1; transposed
        before use).  Only the shape is checked here (no device sync per batch); the strategy
        :class:`ForwardCorrection` validates the values once.
    reduction : {"none", "mean", "sum"}, default "none"

    Computed in log space: ``log q_ỹ = logsumexp_i(log_softmax(z)_i + log T[ỹ, i])``; with
    ``T = I`` this is exactly ``F.cross_entropy(logits, y, reduction="none")``.
    """
    _check_logits_y(logits, y)
    convention = check_option("convention", convention, CONVENTIONS)
    T = torch.as_tensor(T, device=logits.device)
    K = logits.shape[1]
    if T.shape != (K, K):
        raise NoisylabInputError(f"T must have shape ({K}, {K}) to match the logits; got {tuple(T.shape)}.")
    if convention == "patrini":
        T = T.T
    log_p = F.log_softmax(logits, dim=1)                              # (B, K)
    log_T_rows = torch.log(T.to(log_p.dtype))[y]                      # (B, K): log T[ỹ_b, i]
    log_q = torch.logsumexp(log_p + log_T_rows, dim=1)                # log (T p)_ỹ
    return reduce_loss(-log_q, reduction)


def soft_bootstrap_loss(logits: torch.Tensor, y: torch.Tensor, beta: float = SOFT_BETA, *,
                        detach_target: bool = False, reduction: str = "none") -> torch.Tensor:
    """Reed et al.'s soft bootstrap, paper sign: ``beta CE(ỹ, z) + (1 - beta) H(softmax(z))``.

    ``= -sum_k [beta onehot(ỹ)_k + (1 - beta) p_k] log p_k``; entropy MINIMISATION.  (The AUM /
    mislabel-detection repos subtract the entropy instead -- not implemented here.)
    ``beta = 1`` is plain cross-entropy.  ``detach_target=True`` stops the gradient through the
    ``p`` in the target (then only the ``log p`` factor is differentiated).
    """
    _check_logits_y(logits, y)
    beta = _check_beta(beta)
    log_p = F.log_softmax(logits, dim=1)
    ce = -log_p.gather(1, y[:, None]).squeeze(1)
    p = log_p.exp()
    if detach_target:
        p = p.detach()
    entropy = -(p * log_p).sum(dim=1)
    return reduce_loss(beta * ce + (1.0 - beta) * entropy, reduction)


def hard_bootstrap_loss(logits: torch.Tensor, y: torch.Tensor, beta: float = HARD_BETA, *,
                        reduction: str = "none") -> torch.Tensor:
    """Reed et al.'s hard bootstrap: ``beta CE(ỹ, z) + (1 - beta) (-log max_k softmax(z)_k)``.

    ``= -sum_k [beta onehot(ỹ)_k + (1 - beta) onehot(argmax z)_k] log p_k``; ``beta = 1`` is CE.
    """
    _check_logits_y(logits, y)
    beta = _check_beta(beta)
    log_p = F.log_softmax(logits, dim=1)
    ce = -log_p.gather(1, y[:, None]).squeeze(1)
    self_term = -log_p.max(dim=1).values
    return reduce_loss(beta * ce + (1.0 - beta) * self_term, reduction)


# ------------------------------------------------------------------------------ T estimators
def estimate_T_anchor(probs, quantile: float = 0.97) -> np.ndarray:
    """Patrini et al.'s anchor-point estimate of the noise matrix, in noisylab's convention.

    ``probs`` (n, K): a model's predicted ``p(noisy | x)`` on the (noisy) training data.  For each
    class ``i`` the anchor ``x̄_i`` is the example whose ``p(i | x)`` is the ``quantile``-th order
    statistic of column ``i`` (index ``floor(quantile * (n - 1))`` of a stable ascending sort;
    ``quantile=1`` is the plain argmax of the paper, ``0.97`` its robust variant that skips the
    top 3% as likely over-confident outliers).  Patrini's row ``T_P[i, :] = p(· | x̄_i)``; the
    return value is ``T_P.T`` (``T[s, i] = p(s | x̄_i)``, columns sum to 1, each renormalised).

    Note: the authors' code zeroes values >= the ``np.percentile(..., 'higher')`` threshold and
    takes the argmax of the rest; that differs by at most one rank for distinct values, but fails
    when the top values are tied (it would then skip the whole tied group) -- the order statistic
    used here does not.
    """
    if isinstance(probs, torch.Tensor):
        probs = probs.detach().cpu().double().numpy()
    P = np.asarray(probs, dtype=np.float64)
    if P.ndim != 2 or P.shape[0] < 1 or P.shape[1] < 2:
        raise NoisylabInputError(f"probs must have shape (n, K) with n >= 1, K >= 2; got {P.shape}.")
    if not np.all(np.isfinite(P)) or P.min() < 0:
        raise NoisylabInputError("probs must hold finite non-negative probabilities.")
    if isinstance(quantile, bool) or not isinstance(quantile, numbers.Real) or not 0.0 <= quantile <= 1.0:
        raise NoisylabInputError(f"quantile must be a real number in [0, 1]; got {quantile!r}.")
    n, K = P.shape
    pos = int(np.floor(float(quantile) * (n - 1)))
    T = np.empty((K, K))
    for i in range(K):
        anchor = np.argsort(P[:, i], kind="stable")[pos]
        row = P[anchor]
        s = row.sum()
        if s <= 0:
            raise NoisylabInputError(f"the anchor of class {i} has all-zero probabilities.")
        T[:, i] = row / s
    return T


def T_from_confident_learning(labels, pred_probs, **kwargs) -> np.ndarray:
    """Noise matrix ``P(noisy | true)`` (columns sum to 1) estimated by confident learning.

    The ``noise_matrix`` of :func:`noisylab.estimate_py_and_noise_matrices_from_probabilities`
    (``kwargs`` are passed on), already in noisylab's column convention.
    """
    from ...detect.count import estimate_py_and_noise_matrices_from_probabilities

    _py, nm, _inv, _cj = estimate_py_and_noise_matrices_from_probabilities(labels, pred_probs, **kwargs)
    return np.asarray(nm, dtype=np.float64)


# -------------------------------------------------------------------------------- strategies
class ForwardCorrection(CrossEntropy):
    """Cross-entropy with forward loss correction by a fixed noise matrix ``T``.

    Parameters
    ----------
    T : array or tensor (K, K)
        noisylab convention ``T[noisy, true]`` (columns sum to 1) unless ``convention="patrini"``.
        Validated here; stored as ``T`` (float64 numpy, noisylab convention) and, after setup,
        as ``T_`` (float32 tensor on the trainer's device).  The true matrix (e.g.
        ``NoisyLabels.noise_matrix``), :func:`estimate_T_anchor` or
        :func:`T_from_confident_learning` of a first CE run.

    Predictions use the model's own (clean-class) logits.  ``T`` is part of the checkpoint
    (``extra``); resuming with a different ``T`` raises (the config hash only sees the class name).
    """

    def __init__(self, T, convention: str = "noisylab"):
        self.T = check_transition_matrix(T, convention=convention)

    def setup(self, trainer) -> None:
        super().setup(trainer)
        self.T_ = torch.as_tensor(self.T, dtype=torch.float32, device=trainer.device_)

    def loss(self, logits, y) -> torch.Tensor:
        return forward_corrected_ce(logits, y, self.T_, reduction="mean")

    def extra_state_dict(self) -> dict:
        return {"T": torch.as_tensor(self.T, dtype=torch.float64)}

    def load_extra_state_dict(self, state: dict) -> None:
        if "T" in state and not torch.equal(state["T"].cpu().double(), torch.as_tensor(self.T, dtype=torch.float64)):
            raise NoisylabInputError("The checkpoint was written with a different noise matrix T; refusing to resume.")


class Bootstrap(CrossEntropy):
    """Reed et al.'s bootstrapping loss (paper form, see module docs).

    Parameters
    ----------
    beta : float in [0, 1] or None
        Weight of the given label; None = Reed's default (0.95 soft, 0.8 hard).
    mode : {"soft", "hard"}
    detach_target : bool, default False
        Soft mode only: no gradient through the ``p`` in the target.
    """

    def __init__(self, beta: float | None = None, mode: str = "soft", detach_target: bool = False):
        self.mode = check_option("mode", mode, ("soft", "hard"))
        self.beta = _check_beta((SOFT_BETA if self.mode == "soft" else HARD_BETA) if beta is None else beta)
        if not isinstance(detach_target, bool):
            raise NoisylabInputError(f"detach_target must be True or False; got {detach_target!r}.")
        if detach_target and self.mode == "hard":
            raise NoisylabInputError("detach_target only applies to mode='soft'.")
        self.detach_target = detach_target

    def loss(self, logits, y) -> torch.Tensor:
        if self.mode == "soft":
            return soft_bootstrap_loss(logits, y, self.beta, detach_target=self.detach_target, reduction="mean")
        return hard_bootstrap_loss(logits, y, self.beta, reduction="mean")


    def extra_state_dict(self) -> dict:
        return {"beta": self.beta, "mode": self.mode, "detach_target": int(self.detach_target)}

    def load_extra_state_dict(self, state: dict) -> None:
        saved = (state.get("beta", self.beta), state.get("mode", self.mode),
                 bool(state.get("detach_target", self.detach_target)))
        if saved != (self.beta, self.mode, self.detach_target):
            raise NoisylabInputError(f"The checkpoint was written with Bootstrap(beta, mode, detach_target)={saved}; "
                                     f"this strategy has {(self.beta, self.mode, self.detach_target)}.")
