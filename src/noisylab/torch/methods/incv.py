"""INCV: Iterative Noisy Cross-Validation + modified Co-teaching (Chen et al., ICML 2019).

Chen, Liao, Chen, Zhang, "Understanding and Utilizing Deep Neural Networks Trained with Noisy
Labels", ICML 2019 (METHODS.md §2).  Three layers:

* **Theory** (§2.1): if a network trained on a noisy half generalises "perfectly" (its prediction
  on a held-out example behaves like an independent draw of that example's noisy label), its
  accuracy w.r.t. the *noisy* labels of the other half is
  ``acc(ε) = (1-ε)² + ε²/k`` (k = C-1 for symmetric noise, k = 1 for pair flip), and selecting
  the examples whose prediction equals the noisy label gives ``LR = 1-ε`` and
  ``LP = (1-ε)² / acc(ε)``: :func:`incv_expected_accuracy`, :func:`incv_label_precision`,
  :func:`incv_label_recall`, :func:`estimate_noise_rate` (the reference's grid-search inverse,
  or the exact closed form) and :func:`selected_noise_rate` (``ε_S = 1 - LP``).
* **Selection** (§2.2): :func:`incv_select` — iterative two-fold noisy cross-validation that
  grows a selected set S and removes (symmetric noise only) likely-noisy candidates.
* **Training** (§2.3): :class:`INCVCoTeaching`, a Co-teaching :class:`~noisylab.torch.trainer.
  Strategy` trained on S that, after a warm-up, mixes a small batch of remaining candidates into
  every step; :class:`INCV` chains selection and training.

:func:`verify_theory` reproduces the repository's "Verify_Theory" experiment (measured vs
predicted accuracy / LP / LR at several noise rates) and :func:`format_theory_table` prints it.

Reference quirks reproduced
---------------------------
* ε̂ ("eval_ratio") is estimated **once**, at iteration 1, from the first half's accuracy, with
  the **symmetric** formula even under pair noise (``estimate="symmetric"``, default; it is
  biased low under pair noise: ≈0.29 for a true 0.4).  ``estimate="matching"`` uses the formula
  of ``kind`` instead.  ``ε_S`` always uses k of ``kind`` (k = 1 under pair noise), as the code.
* The grid search ε̂ = step, 2·step, ... while ``acc(ε̂) > a`` (capped at 1); see
  :func:`estimate_noise_rate` (the grid points are ``j·step`` computed by multiplication, not by
  repeated float addition).
* ``discard_ratio = min(2, ε̂/(1-ε̂))``; the number discarded in a half is relative to the number
  *selected* in that half, the discarded examples are the highest-CE ones of the half, and the
  discard is applied to the candidate set **only under symmetric noise**.
* Best-checkpointing on the noisy held-out half while ``iteration <= iter_save_best``
  (1 if pair noise or ε̂ > 0.6, 2 if ε̂ > 0.3, else 4), last epoch afterwards.
* Every inner training starts from the **same stored initial weights** (the model is built once
  under the seed; each training deep-copies it).
* Co-teaching: ``n_keep = round(|b_S|·(1 - ε_S·min(1, e/T_k)))`` (Python's ``round``, i.e.
  half-to-even), ranking in inference mode (BN running statistics, dropout off) with no
  gradient on the same (augmented) batch, update in train mode on the peer's picks only (the
  forward of the update sees only the picked rows, as Keras ``train_on_batch(x[picks])``), and
  candidate batches of ``b_C = min(⌊|Cand|·B/|S|⌋, 64)`` competing for the S-part's budget.

Reference quirks fixed / not reproduced
---------------------------------------
* Noise is generated with a seed (the reference uses unseeded ``np.random``).
* The Co-teaching optimizer is **not** reset at lr changes (the reference re-compiles the Keras
  model at each change, which resets Adam's moments: an artefact).  The lr is the trainer's
  schedule; the reference's ×0.1 at 80/120/160 and ×0.5 at 180 (of 200) is close to
  ``TrainConfig(schedule="step", milestones=(80, 120, 160), gamma=0.1)`` (the final ×0.5 is not
  expressible with one gamma and is left out).
* The accuracy used for ε̂ is ``|selected in H2| / |H2|`` (the reference divides by N/2, equal
  for even N).

Inner-training schedule
-----------------------
:func:`incv_select` uses the caller's ``TrainConfig`` as is.  The reference trains 50 epochs with
Adam 1e-3 and lr ×1 / ×0.5 / ×0.25 / ×0.1 from epochs 21 / 31 / 41.  A CPU-cheap analogue
(METHODS §2.6, 30 epochs, steps at 40/60/80 %) with one gamma is::

    TrainConfig(epochs=30, optimizer="adam", lr=1e-3, schedule="step",
                milestones=(12, 18, 24), gamma=0.5)      # ×1, ×0.5, ×0.25, ×0.125
"""
from __future__ import annotations

import copy
import dataclasses
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..._validation import NoisylabInputError, check_option, check_random_state
from ..trainer import Callback, TrainConfig, Trainer, check_val_indices
from .coteaching import CoTeaching

__all__ = [
    "INCV",
    "INCVCoTeaching",
    "INCVSelection",
    "candidate_batch_size",
    "estimate_noise_rate",
    "format_theory_table",
    "incv_coteaching_defaults",
    "incv_expected_accuracy",
    "incv_label_precision",
    "incv_label_recall",
    "incv_select",
    "selected_noise_rate",
    "verify_theory",
]

KINDS = ("symmetric", "pair")
ESTIMATES = ("symmetric", "matching")


# ------------------------------------------------------------------------------------ theory
def _k(n_classes, kind: str) -> int:
    check_option("kind", kind, KINDS)
    if isinstance(n_classes, bool) or not isinstance(n_classes, numbers.Integral) or n_classes < 2:
        raise NoisylabInputError(f"n_classes must be an int >= 2; got {n_classes!r}.")
    return int(n_classes) - 1 if kind == "symmetric" else 1


def _eps(eps, name: str = "eps") -> np.ndarray:
    raw = np.asarray(eps)
    if raw.dtype.kind not in "iuf":  # strings, bools (True is not a rate of 1), objects
        raise NoisylabInputError(f"{name} must be real number(s) in [0, 1]; got {eps!r}.")
    e = raw.astype(np.float64)
    if not np.all(np.isfinite(e)) or np.any(e < 0) or np.any(e > 1):
        raise NoisylabInputError(f"{name} must be real number(s) in [0, 1]; got {eps!r}.")
    return e


def _out(a: np.ndarray, like):
    return float(a) if np.ndim(like) == 0 else a


def incv_expected_accuracy(eps, n_classes: int, kind: str = "symmetric"):
    """Accuracy w.r.t. the noisy labels of a network that generalises "perfectly" (§2.1).

    ``acc(ε) = (1-ε)² + ε²/k`` with ``k = C-1`` (``kind="symmetric"``, flip to a uniformly chosen
    *other* class) or ``k = 1`` (``kind="pair"``, ``y -> y+1 mod C``).

    Parameters
    ----------
    eps : float or array-like in [0, 1]
        Noise rate(s) ε (fraction of changed labels).
    n_classes : int >= 2
    kind : {"symmetric", "pair"}

    Returns
    -------
    float or ndarray (shape of ``eps``)

    Examples
    --------
    >>> round(incv_expected_accuracy(0.5, 10), 6) == round(0.25 + 0.25 / 9, 6)
    True
    """
    k = _k(n_classes, kind)
    e = _eps(eps)
    return _out((1 - e) ** 2 + e ** 2 / k, eps)


def incv_label_precision(eps, n_classes: int, kind: str = "symmetric"):
    """Label precision of "prediction == noisy label" selection: ``(1-ε)² / acc(ε)`` (§2.1).

    Returns a float or an ndarray of the shape of ``eps`` (never a division by zero:
    ``acc(ε) >= 1/C``).
    """
    k = _k(n_classes, kind)
    e = _eps(eps)
    return _out((1 - e) ** 2 / ((1 - e) ** 2 + e ** 2 / k), eps)


def incv_label_recall(eps):
    """Label recall of "prediction == noisy label" selection: ``1 - ε`` (§2.1)."""
    e = _eps(eps)
    return _out(1 - e, eps)


def selected_noise_rate(eps_hat, n_classes: int, kind: str = "symmetric"):
    """Expected noise rate of the selected set: ``ε_S = ε̂² / (ε̂² + k(1-ε̂)²)`` (= 1 - LP, §2.3).

    ``k = C-1`` for ``kind="symmetric"`` and 1 for ``"pair"`` (the reference uses k = 1 under pair
    noise although its ε̂ came from the symmetric formula).

    Examples
    --------
    >>> round(selected_noise_rate(0.5, 10), 6)   # 0.25 / (0.25 + 9 * 0.25)
    0.1
    """
    k = _k(n_classes, kind)
    e = _eps(eps_hat, "eps_hat")
    return _out(e ** 2 / (e ** 2 + k * (1 - e) ** 2), eps_hat)


def estimate_noise_rate(acc, n_classes: int, kind: str = "symmetric", step: float | None = 0.001):
    """Invert :func:`incv_expected_accuracy` on its decreasing branch (ε̂, "eval_ratio").

    ``acc(ε)`` decreases from 1 at ε = 0 to its minimum ``1/(k+1)`` at ``ε* = k/(k+1)`` (chance
    level ``1/C`` for symmetric noise).

    Parameters
    ----------
    acc : float or array-like in [0, 1]
        Measured accuracy w.r.t. the noisy labels of the held-out half.
    n_classes : int >= 2
    kind : {"symmetric", "pair"}
        Which formula is inverted.  The reference always inverts the symmetric one.
    step : float in (0, 1) or None, default=0.001
        Grid search of the reference: the first of ``ε̂ = step, 2·step, ...`` with
        ``acc(ε̂) <= acc``; 1 when there is none (accuracy below the minimum ``1/(k+1)``).
        The result is at most one ``step`` above the exact root (and never below ``step``).
        ``None``: the exact root ``ε = (1 - sqrt(1 - (1+1/k)(1-acc))) / (1+1/k)`` (1 where there
        is no root, like the grid).

    Returns
    -------
    float or ndarray
    """
    k = _k(n_classes, kind)
    a = _eps(acc, "acc")
    if step is None:
        c = 1.0 + 1.0 / k
        disc = 1.0 - c * (1.0 - a)
        root = (1.0 - np.sqrt(np.clip(disc, 0.0, None))) / c
        return _out(np.where(disc < -1e-15, 1.0, root), acc)
    if isinstance(step, bool) or not isinstance(step, numbers.Real) or not 1e-6 <= step < 1:
        raise NoisylabInputError(f"step must be a real number in [1e-6, 1) (the grid has 1/step points), or None "
                                 f"for the closed form; got {step!r}.")
    n = math.ceil(1.0 / step - 1e-9)
    grid = np.minimum(np.arange(1, n + 1) * float(step), 1.0)
    f = (1 - grid) ** 2 + grid ** 2 / k  # (n,)
    ok = f[None, :] <= a.reshape(-1, 1)  # (m, n)
    first = np.where(ok.any(axis=1), ok.argmax(axis=1), n - 1)
    res = grid[first]
    res = np.where(ok.any(axis=1), res, 1.0).reshape(a.shape)
    return _out(res, acc)


def candidate_batch_size(n_candidates: int, n_selected: int, batch_size: int, cap: int = 64) -> int:
    """Size of the candidate batch added after warm-up: ``min(⌊|Cand|·B/|S|⌋, cap)`` (§2.3).

    Examples
    --------
    >>> candidate_batch_size(5000, 20000, 128), candidate_batch_size(30000, 20000, 128)
    (32, 64)
    """
    if n_selected <= 0:
        return 0
    return int(min((int(n_candidates) * int(batch_size)) // int(n_selected), int(cap)))


def incv_coteaching_defaults(eps_hat: float, epochs: int, kind: str = "symmetric") -> tuple[int, int]:
    """CPU-cheap defaults ``(warmup_epochs, num_gradual)`` for :class:`INCVCoTeaching` (§2.6).

    The reference's ratios for E Co-teaching epochs: e_w = 80 / 200 = 40 % of E under pair noise
    or when ε̂ > 0.6, else 40 / 200 = 20 %; T_k = 10 / 200 = 5 % of E (at least 1).  Python
    ``round`` (half-to-even).

    Examples
    --------
    >>> incv_coteaching_defaults(0.5, 200), incv_coteaching_defaults(0.7, 80), incv_coteaching_defaults(0.2, 40, "pair")
    ((40, 10), (32, 4), (16, 2))
    """
    check_option("kind", kind, KINDS)
    frac = 0.4 if (kind == "pair" or eps_hat > 0.6) else 0.2
    return round(frac * epochs), max(1, round(0.05 * epochs))


# --------------------------------------------------------------------------------- selection
@dataclass
class INCVSelection:
    """Result of :func:`incv_select`.

    Attributes
    ----------
    selected : ndarray of bool, shape (n,)
        S: examples whose held-out prediction equalled their noisy label in some iteration.
    candidates : ndarray of bool, shape (n,)
        Examples still undecided at the end (not selected, not discarded).
    discarded : ndarray of bool, shape (n,)
        Examples removed from the candidates by the discard rule (never selected ones; always all
        False under pair noise, where the reference does not apply the discard).
    eval_ratio : float
        ε̂, the noise rate estimated at iteration 1.
    discard_ratio : float
        ``min(2, ε̂/(1-ε̂))``.
    iter_save_best : int
        Last iteration that used best-on-held-out checkpointing.
    iterations : list of dict
        Per iteration: ``iteration``, ``n_candidates`` (before), ``n_train`` (two trainings),
        ``save_best``, ``best_epochs`` (epoch used per half; the last one when not saving the
        best), ``heldout_acc`` (per half, w.r.t. noisy labels), ``n_selected_half``,
        ``n_discard_half`` (flagged per half), ``n_new_selected``, ``n_selected`` (|S| after),
        ``n_discarded`` (total removed by discard so far), ``n_candidates_after``, and with
        ``true_labels``: ``label_precision`` / ``label_recall`` of S (recall w.r.t. all clean
        examples) and ``noise_in_selected``.
    kind, estimate : str
    n_classes : int
    """

    selected: np.ndarray
    candidates: np.ndarray
    discarded: np.ndarray
    eval_ratio: float
    discard_ratio: float
    iter_save_best: int
    iterations: list = field(default_factory=list)
    kind: str = "symmetric"
    estimate: str = "symmetric"
    n_classes: int = 0


class _BestOnHeldOut(Callback):
    """Keep (in memory) the weights of the epoch with the highest held-out noisy accuracy
    (``test_acc`` of the history row); the first epoch wins ties, as Keras ``save_best_only``."""

    def __init__(self):
        self.best_acc, self.best_epoch, self.best_state = -math.inf, None, None

    def on_epoch_end(self, trainer, metrics):
        acc = metrics["test_acc"]
        if acc > self.best_acc:
            self.best_acc, self.best_epoch = acc, int(metrics["epoch"])
            self.best_state = {k: v.detach().clone() for k, v in trainer.strategy_.models[0].state_dict().items()}


def _check_X_y(X, y, n_classes=None):
    X = np.asarray(X.detach().cpu().numpy() if isinstance(X, torch.Tensor) else X)
    y = np.asarray(y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else y)
    if X.ndim < 2 or X.shape[0] < 2 or X.dtype.kind not in "fiub":
        raise NoisylabInputError(f"X must be a numeric array of shape (n, *example_shape) with n >= 2; "
                                 f"got dtype {X.dtype}, shape {X.shape}.")
    if y.ndim != 1 or y.dtype.kind not in "iu" or len(y) != len(X) or (y.size and y.min() < 0):
        raise NoisylabInputError(f"y must be a 1-D array of {len(X)} non-negative integer labels; got dtype "
                                 f"{y.dtype}, shape {y.shape}.")
    K = int(y.max()) + 1 if n_classes is None else n_classes
    if isinstance(K, bool) or not isinstance(K, numbers.Integral) or K < 2 or K <= int(y.max()):
        raise NoisylabInputError(f"n_classes must be an int >= 2 larger than every label (max {int(y.max())}); "
                                 f"got {K!r}.")
    return X, y.astype(np.int64), int(K)


def _build_initial_model(model, seed: int) -> nn.Module:
    if isinstance(model, nn.Module):
        return copy.deepcopy(model)
    if not callable(model):
        raise NoisylabInputError(f"model must be an nn.Module or a callable returning one; got {model!r}.")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        m = model()
    if not isinstance(m, nn.Module):
        raise NoisylabInputError(f"model() must return a torch.nn.Module; got {type(m).__name__}.")
    return m


def incv_select(X, y, model, config: TrainConfig, *, n_iter: int = 4, kind: str = "symmetric",
                estimate: str = "symmetric", n_classes: int | None = None, true_labels=None,
                random_state=0, progress: bool = False) -> INCVSelection:
    """INCV selection: iterative noisy two-fold cross-validation (METHODS.md §2.2).

    For each iteration: shuffle the candidates, split them into halves H1 / H2 (H1 = the first
    ``⌊|Cand|/2⌋``); train on S ∪ H1 and predict H2, then train on S ∪ H2 and predict H1 (both
    with the S of the previous iteration); in each held-out half select the examples whose
    argmax prediction equals the noisy label and flag for discarding its
    ``⌊discard_ratio·|selected in half|⌋`` highest-CE examples (CE w.r.t. the noisy label).  At
    iteration 1 only, after the first half, ε̂ is estimated from the half's accuracy with
    :func:`estimate_noise_rate`.  End of iteration: S ← S ∪ selected; Cand ← Cand \\ S, and,
    under symmetric noise only, Cand ← Cand \\ flagged.  Stops early when fewer than 2
    candidates are left.

    Parameters
    ----------
    X : array-like of shape (n, *example_shape)
    y : array-like of shape (n,), int
        Noisy labels.
    model : torch.nn.Module or callable returning one
        Built **once** (a callable is called under a seed drawn from ``random_state``; a module
        is deep-copied) and every training starts from a deep copy of these same initial
        weights.
    config : TrainConfig
        Inner training, used as is for every training (its ``random_state`` fixes the batch
        order / dropout / augmentation streams, the same for every training).  ``val_fraction``
        must be 0 (validation is on the other half) and ``checkpoint_dir`` None.  See the module
        docstring for a CPU-cheap lr schedule close to the reference's.
    n_iter : int >= 1, default=4
    kind : {"symmetric", "pair"}, default="symmetric"
        Noise type assumed: sets ``iter_save_best`` (pair → 1), whether the discard is applied
        (symmetric only) and, with ``estimate="matching"``, the formula inverted for ε̂.
    estimate : {"symmetric", "matching"}, default="symmetric"
        "symmetric" reproduces the reference (symmetric formula whatever ``kind``).
    n_classes : int, optional
        Default ``y.max() + 1``.
    true_labels : array-like of shape (n,), optional
        Only for diagnostics (LP / LR of S per iteration); never used by the selection.
    random_state : None, int or numpy.random.Generator, default=0
        Shuffles of the candidates and the seed of the initial weights.
    progress : bool, default=False
        A tqdm bar over the ``2·n_iter`` trainings.

    Returns
    -------
    INCVSelection

    Notes
    -----
    The held-out half is passed to the trainer as its *test* set with its **noisy** labels: the
    per-epoch ``test_acc`` there is the reference's noisy ``val_acc``, used for the best-epoch
    checkpoint (kept in memory by a callback).  The estimate is unbiased only for a network that
    memorises the noise as the theory assumes; a network that learns the clean function scores
    ≈ 1-ε on the held-out half, which the formula maps to a lower ε̂ (C = 3, ε = 0.4: ≈ 0.245).
    """
    X, y, K = _check_X_y(X, y, n_classes)
    check_option("kind", kind, KINDS)
    check_option("estimate", estimate, ESTIMATES)
    if isinstance(n_iter, bool) or not isinstance(n_iter, numbers.Integral) or n_iter < 1:
        raise NoisylabInputError(f"n_iter must be an int >= 1; got {n_iter!r}.")
    if not isinstance(config, TrainConfig):
        raise NoisylabInputError(f"config must be a TrainConfig; got {type(config).__name__}.")
    config.validate()
    if config.val_fraction != 0:
        raise NoisylabInputError(f"config.val_fraction must be 0 inside INCV (each training validates on the "
                                 f"other half); got {config.val_fraction}.")
    if config.checkpoint_dir is not None:
        raise NoisylabInputError("config.checkpoint_dir must be None for the INCV inner trainings; got "
                                 f"{config.checkpoint_dir!r}.")
    clean = None
    if true_labels is not None:
        t = np.asarray(true_labels)
        if t.shape != y.shape:
            raise NoisylabInputError(f"true_labels must have shape {y.shape}; got {t.shape}.")
        clean = t == y
    rng = check_random_state(random_state)
    init_model = _build_initial_model(model, int(rng.integers(0, 2**63 - 1)))
    n = len(y)
    S = np.zeros(n, bool)
    cand = np.ones(n, bool)
    discarded = np.zeros(n, bool)
    eval_ratio = discard_ratio = None
    iter_save_best = n_iter
    iterations: list[dict] = []
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=2 * n_iter, desc="INCV trainings", unit="fit", dynamic_ncols=True)
    try:
        for it in range(1, n_iter + 1):
            cand_idx = np.flatnonzero(cand)
            if len(cand_idx) < 2:
                break
            perm = rng.permutation(cand_idx)
            h = len(perm) // 2
            halves = (perm[:h], perm[h:])
            save_best = it <= iter_save_best
            S_idx = np.flatnonzero(S)
            sel_new = np.zeros(n, bool)
            flagged = np.zeros(n, bool)
            row = {"iteration": it, "n_candidates": len(cand_idx), "n_train": [], "save_best": save_best,
                   "best_epochs": [], "heldout_acc": [], "n_selected_half": [], "n_discard_half": []}
            for train_half, eval_half in ((halves[0], halves[1]), (halves[1], halves[0])):
                rows = np.concatenate([S_idx, train_half])
                cbs = [_BestOnHeldOut()] if save_best else []
                tr = Trainer(init_model, config, callbacks=cbs)
                if save_best:
                    tr.fit(X[rows], y[rows], X[eval_half], y[eval_half])
                    tr.strategy_.models[0].load_state_dict(cbs[0].best_state)
                    Xe, ye, best_epoch = tr.X_test_, tr.y_test_, cbs[0].best_epoch
                else:
                    tr.fit(X[rows], y[rows])
                    Xe = torch.from_numpy(np.ascontiguousarray(X[eval_half], dtype=np.float32)).to(tr.device_)
                    ye = torch.from_numpy(y[eval_half]).to(tr.device_)
                    best_epoch = tr.last_epoch_
                logits = tr.predict_logits(Xe).float()
                sel = (logits.argmax(1) == ye).cpu().numpy()
                ce = F.cross_entropy(logits, ye, reduction="none").cpu().numpy()
                n_sel = int(sel.sum())
                acc = n_sel / len(eval_half)
                if eval_ratio is None:  # iteration 1, first half
                    eval_ratio = float(estimate_noise_rate(acc, K, "symmetric" if estimate == "symmetric" else kind))
                    discard_ratio = 2.0 if eval_ratio >= 1 else min(2.0, eval_ratio / (1.0 - eval_ratio))
                    iter_save_best = 1 if (kind == "pair" or eval_ratio > 0.6) else (2 if eval_ratio > 0.3 else 4)
                n_disc = min(math.floor(discard_ratio * n_sel + 1e-9), len(eval_half))
                worst = np.argsort(-ce, kind="stable")[:n_disc]
                sel_new[eval_half[sel]] = True
                flagged[eval_half[worst]] = True
                row["n_train"].append(len(rows))
                row["best_epochs"].append(int(best_epoch))
                row["heldout_acc"].append(acc)
                row["n_selected_half"].append(n_sel)
                row["n_discard_half"].append(int(n_disc))
                if bar is not None:
                    bar.update(1)
            S |= sel_new
            cand &= ~S
            if kind == "symmetric":
                newly = flagged & cand
                discarded |= newly
                cand &= ~newly
            row.update(n_new_selected=int(sel_new.sum()),  # halves hold candidates only, never S
                       n_selected=int(S.sum()), n_discarded=int(discarded.sum()),
                       n_candidates_after=int(cand.sum()))
            if clean is not None:
                n_clean_sel = int((S & clean).sum())
                row["label_precision"] = n_clean_sel / max(int(S.sum()), 1)
                row["label_recall"] = n_clean_sel / max(int(clean.sum()), 1)
                row["noise_in_selected"] = 1.0 - row["label_precision"]
            iterations.append(row)
    finally:
        if bar is not None:
            bar.close()
    return INCVSelection(selected=S, candidates=cand, discarded=discarded, eval_ratio=float(eval_ratio),
                         discard_ratio=float(discard_ratio), iter_save_best=int(iter_save_best),
                         iterations=iterations, kind=kind, estimate=estimate, n_classes=K)


# ------------------------------------------------------------------------- Co-teaching (§2.3)
class INCVCoTeaching(CoTeaching):
    """INCV's modified Co-teaching (METHODS.md §2.3), trained by the Trainer on the selected set S.

    Per step on a batch ``b_S`` from S (the trainer's batch):

    1. After warm-up (0-based epoch ``e > warmup_epochs``) a candidate batch of
       ``b_C = min(⌊|Cand|·B/|S|⌋, cand_batch_max)`` rows is appended (``|S|`` = the trainer's
       training rows, ``B`` = ``config.batch_size``); candidates are visited in the order of
       successive random permutations (each candidate once per pass) drawn from a CPU
       ``torch.Generator`` seeded from the trainer's ``rng_``; its state, the current permutation
       and position are in :meth:`extra_state_dict` (exact resume).  The trainer's ``augment``
       is applied to the candidate batch too (with its checkpointed ``augment_gen_``).
    2. Both networks rank the union by per-example CE in **eval mode** without gradient
       (BN running statistics; the same augmented batch), each keeping its
       ``n_keep = round(|b_S|·(1 - ε_S·min(1, e/T_k)))`` smallest (stable sort): the keep count
       comes from the S-part only, so candidates compete for the same budget.
    3. In train mode, ``f`` is updated on ``g``'s picks and ``g`` on ``f``'s (mean CE; the
       forward pass sees only the picked rows).

    Networks, optimizers, ``beta1_after_decay`` and :meth:`predict_logits` are those of
    :class:`~noisylab.torch.methods.coteaching.CoTeaching` (two differently initialised networks,
    one optimizer each, both in the checkpoint); ``forget_schedule`` is its ``"paper"`` schedule
    with τ = ε_S, c = 1 (``ε_S·min(1, e/T_k)``).

    Parameters
    ----------
    eps_selected : float in [0, 1]
        ε_S, the estimated noise rate of S (:func:`selected_noise_rate`).
    X_candidates, y_candidates : array-like, optional
        The remaining candidates (noisy labels); None or empty = S only.
    num_gradual : int >= 1, default=10
        T_k.
    warmup_epochs : int >= 0, default=40
        e_w: epochs ``e <= e_w`` use batches from S only.
    cand_batch_max : int >= 1, default=64
    beta1_after_decay : float or None, default=None
        See :class:`CoTeaching`.
    predict_with : {"mean", "f", "g"}, default="mean"
        Mean of both networks' logits by default (the reference tests both models and does not
        say which one is reported).

    Per-batch metrics: ``loss``, ``logits`` (eval-mode logits of ``f`` on the S-part, for
    ``train_acc``), ``keep_fraction`` (n_keep/|b_S|) and ``cand_pick_fraction`` (fraction of
    ``f``'s picks that are candidates).
    """

    def __init__(self, eps_selected: float, X_candidates=None, y_candidates=None, num_gradual: int = 10,
                 warmup_epochs: int = 40, cand_batch_max: int = 64, beta1_after_decay: float | None = None,
                 predict_with: str = "mean"):
        if isinstance(eps_selected, bool) or not isinstance(eps_selected, numbers.Real) or \
                not math.isfinite(eps_selected) or not 0 <= eps_selected <= 1:
            raise NoisylabInputError(f"eps_selected must be a real number in [0, 1]; got {eps_selected!r}.")
        super().__init__(0.0, num_gradual=num_gradual, exponent=1.0, schedule="paper",
                         beta1_after_decay=beta1_after_decay, predict_with=predict_with)
        self.forget_rate = float(eps_selected)  # CoTeaching accepts [0, 1); ε_S = 1 is legal here
        self.eps_selected = float(eps_selected)
        if isinstance(warmup_epochs, bool) or not isinstance(warmup_epochs, numbers.Integral) or warmup_epochs < 0:
            raise NoisylabInputError(f"warmup_epochs must be an int >= 0; got {warmup_epochs!r}.")
        if isinstance(cand_batch_max, bool) or not isinstance(cand_batch_max, numbers.Integral) or cand_batch_max < 1:
            raise NoisylabInputError(f"cand_batch_max must be an int >= 1; got {cand_batch_max!r}.")
        if (X_candidates is None) != (y_candidates is None):
            raise NoisylabInputError("Give both X_candidates and y_candidates, or neither.")
        if X_candidates is not None:
            Xc = np.asarray(X_candidates, dtype=np.float32)
            yc = np.asarray(y_candidates)
            if Xc.ndim < 2:
                raise NoisylabInputError(f"X_candidates must have shape (n, *example_shape); got {Xc.shape}.")
            if yc.ndim != 1 or len(yc) != len(Xc) or (yc.size and (yc.dtype.kind not in "iu" or yc.min() < 0)):
                raise NoisylabInputError(f"y_candidates must be {len(Xc)} non-negative integer labels; got dtype "
                                         f"{yc.dtype}, shape {yc.shape}.")
            X_candidates, y_candidates = np.ascontiguousarray(Xc), yc.astype(np.int64)
        self.X_candidates, self.y_candidates = X_candidates, y_candidates
        self.warmup_epochs = int(warmup_epochs)
        self.cand_batch_max = int(cand_batch_max)

    def n_keep(self, n_batch: int, epoch: int) -> int:
        """``round(n_batch·(1 - ε_S·min(1, epoch/T_k)))`` (Python ``round``)."""
        return round(n_batch * (1.0 - self.eps_selected * min(1.0, epoch / self.num_gradual)))

    @property
    def n_candidates(self) -> int:
        return 0 if self.y_candidates is None else len(self.y_candidates)

    def setup(self, trainer) -> None:
        super().setup(trainer)
        dev = getattr(trainer, "device_", torch.device("cpu"))
        self._cand_gen = torch.Generator(device="cpu").manual_seed(int(trainer.rng_.integers(0, 2**63 - 1)))
        self._cand_perm = torch.zeros(0, dtype=torch.int64)
        self._cand_pos = 0
        nC = self.n_candidates
        if nC:
            shape = getattr(trainer, "_x_shape", None)
            if shape is not None and tuple(self.X_candidates.shape[1:]) != tuple(shape):
                raise NoisylabInputError(f"X_candidates examples have shape {self.X_candidates.shape[1:]}; "
                                         f"X has {tuple(shape)}.")
            self._Xc = torch.from_numpy(self.X_candidates).to(dev)
            self._yc = torch.from_numpy(self.y_candidates).to(dev)
        n_S = len(getattr(trainer, "train_indices_", ())) or 1
        self.cand_batch_size_ = candidate_batch_size(nC, n_S, trainer.config.batch_size, self.cand_batch_max)
        self.last_candidate_idx_ = None

    def _next_candidates(self, m: int) -> torch.Tensor:
        nC = self.n_candidates
        parts = []
        while m > 0:
            if self._cand_pos >= len(self._cand_perm):
                self._cand_perm = torch.randperm(nC, generator=self._cand_gen)
                self._cand_pos = 0
            take = min(m, nC - self._cand_pos)
            parts.append(self._cand_perm[self._cand_pos:self._cand_pos + take])
            self._cand_pos += take
            m -= take
        return torch.cat(parts)

    def train_step(self, batch) -> dict:
        x, y, _ = batch
        bS = len(y)
        n_keep = self.n_keep(bS, self.epoch_)
        self.last_candidate_idx_ = None
        if self.epoch_ > self.warmup_epochs and self.cand_batch_size_ > 0:
            ci = self._next_candidates(self.cand_batch_size_)
            self.last_candidate_idx_ = ci
            ci_dev = ci.to(self._Xc.device)
            xc, yc = self._Xc[ci_dev], self._yc[ci_dev]
            aug = getattr(self.trainer.config, "augment", None)
            if aug is not None:
                xc = aug(xc, self.trainer.augment_gen_)
            x, y = torch.cat([x, xc]), torch.cat([y, yc])
        with torch.no_grad():
            self.model_f.eval()
            self.model_g.eval()
            zf, zg = self.model_f(x), self.model_g(x)
            lf = F.cross_entropy(zf, y, reduction="none")
            lg = F.cross_entropy(zg, y, reduction="none")
            pick_f = torch.argsort(lf, stable=True)[:n_keep]  # f's small-loss picks -> update g
            pick_g = torch.argsort(lg, stable=True)[:n_keep]  # g's picks -> update f
        self.model_f.train()
        self.model_g.train()
        out: dict = {"logits": zf[:bS].detach(), "keep_fraction": n_keep / bS,
                     "cand_pick_fraction": (pick_f >= bS).sum() / max(n_keep, 1)}  # 0-d tensor: no sync
        if n_keep == 0:
            with torch.no_grad():
                out["loss"] = 0.5 * (F.cross_entropy(zf[:bS], y[:bS]) + F.cross_entropy(zg[:bS], y[:bS]))
            return out
        loss_f = F.cross_entropy(self.model_f(x[pick_g]), y[pick_g])
        loss_g = F.cross_entropy(self.model_g(x[pick_f]), y[pick_f])
        self.opt_f.zero_grad(set_to_none=True)
        self.opt_g.zero_grad(set_to_none=True)
        (loss_f + loss_g).backward()
        self.opt_f.step()
        self.opt_g.step()
        out["loss"] = 0.5 * (loss_f.detach() + loss_g.detach())
        return out

    def extra_state_dict(self) -> dict:
        return {**super().extra_state_dict(), "cand_gen": self._cand_gen.get_state(),
                "cand_perm": self._cand_perm.clone(), "cand_pos": int(self._cand_pos)}

    def load_extra_state_dict(self, state: dict) -> None:
        super().load_extra_state_dict(state)
        if "cand_gen" in state:
            self._cand_gen.set_state(state["cand_gen"])
            self._cand_perm = state["cand_perm"].to(torch.int64).cpu()
            self._cand_pos = int(state["cand_pos"])


# ------------------------------------------------------------------------------ high level
class INCV:
    """INCV end to end: :func:`incv_select` then :class:`INCVCoTeaching` on the selected set.

    Parameters
    ----------
    model : torch.nn.Module or callable returning one
        Architecture for the selection trainings and both Co-teaching networks.
    select_config : TrainConfig
        Inner trainings of the selection (``val_fraction`` 0, no checkpoint_dir).
    coteach_config : TrainConfig
        Co-teaching training on S.  ``val_fraction > 0`` holds out a (noisy) validation split of
        S for ``trainer_.best_epoch_``; ``checkpoint_dir`` makes that training resumable.
    n_iter : int, default=4
    kind : {"symmetric", "pair"}, default="symmetric"
    estimate : {"symmetric", "matching"}, default="symmetric"
    warmup_epochs : int or None
        e_w; None: ``round(0.4·E)`` if pair noise or ε̂ > 0.6 else ``round(0.2·E)``
        (E = ``coteach_config.epochs``; the reference's 80 / 40 of 200), see
        :func:`incv_coteaching_defaults`.
    num_gradual : int or None
        T_k; None: ``max(1, round(0.05·E))`` (the reference's 10 of 200).
    cand_batch_max : int, default=64
    predict_with : {"mean", "f", "g"}, default="mean"
    n_classes : int, optional
    random_state : None, int or numpy.random.Generator, default=0
        Of the selection (shuffles, initial weights); the Co-teaching training follows
        ``coteach_config.random_state``.
    progress : bool, default=False

    Attributes (after ``fit``)
    --------------------------
    selection_ : INCVSelection
    eps_selected_ : float
    warmup_epochs_, num_gradual_ : int
    trainer_ : Trainer
        The Co-teaching trainer (``history_``, ``best_epoch_``, ``strategy_``).
    selected_indices_, candidate_indices_ : ndarray of int
        Row positions in ``X`` (``selection_`` is over the rows outside ``val_indices``).
    val_indices_ : ndarray of int or None
    """

    def __init__(self, model, select_config: TrainConfig, coteach_config: TrainConfig, n_iter: int = 4,
                 kind: str = "symmetric", estimate: str = "symmetric", warmup_epochs: int | None = None,
                 num_gradual: int | None = None, cand_batch_max: int = 64, predict_with: str = "mean",
                 n_classes: int | None = None, random_state=0, progress: bool = False):
        check_option("kind", kind, KINDS)
        check_option("estimate", estimate, ESTIMATES)
        check_option("predict_with", predict_with, ("f", "g", "mean"))
        for name, cfg in (("select_config", select_config), ("coteach_config", coteach_config)):
            if not isinstance(cfg, TrainConfig):
                raise NoisylabInputError(f"{name} must be a TrainConfig; got {type(cfg).__name__}.")
        for name, v, lo in (("warmup_epochs", warmup_epochs, 0), ("num_gradual", num_gradual, 1)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < lo):
                raise NoisylabInputError(f"{name} must be None or an int >= {lo}; got {v!r}.")
        self.model = model
        self.select_config = select_config
        self.coteach_config = coteach_config
        self.n_iter = n_iter
        self.kind = kind
        self.estimate = estimate
        self.warmup_epochs = warmup_epochs
        self.num_gradual = num_gradual
        self.cand_batch_max = cand_batch_max
        self.predict_with = predict_with
        self.n_classes = n_classes
        self.random_state = random_state
        self.progress = progress

    def fit(self, X, y, X_test=None, y_test=None, true_labels=None, val_indices=None) -> INCV:
        """Select on ``(X, y)`` then train Co-teaching on the selection; ``X_test``/``y_test`` only
        give the trainer's per-epoch ``test_acc`` (never used for selection).

        ``val_indices`` (optional, row positions): a noisy validation split held out of everything
        -- of the selection and of the Co-teaching training, whose epoch it then selects (with
        ``coteach_config.val_fraction`` 0) -- e.g. the rows the other methods of a comparison
        validate on (:func:`~noisylab.torch.trainer.validation_split`).  Without it the
        Co-teaching training draws its ``val_fraction`` split from S.
        """
        X, y, K = _check_X_y(X, y, self.n_classes)
        if val_indices is None:
            rows, val = np.arange(len(y)), None
        else:
            val = check_val_indices(val_indices, len(y))
            if self.coteach_config.val_fraction:
                raise NoisylabInputError("Give val_indices or coteach_config.val_fraction, not both.")
            rows = np.setdiff1d(np.arange(len(y)), val)
        truth = None if true_labels is None else np.asarray(true_labels)[rows]
        sel = incv_select(X[rows], y[rows], self.model, self.select_config, n_iter=self.n_iter, kind=self.kind,
                          estimate=self.estimate, n_classes=K, true_labels=truth,
                          random_state=self.random_state, progress=self.progress)
        self.selection_ = sel
        eps = sel.eval_ratio
        self.eps_selected_ = float(selected_noise_rate(eps, K, self.kind))
        warm, tk = incv_coteaching_defaults(eps, self.coteach_config.epochs, self.kind)
        self.warmup_epochs_ = warm if self.warmup_epochs is None else int(self.warmup_epochs)
        self.num_gradual_ = tk if self.num_gradual is None else int(self.num_gradual)
        self.selected_indices_ = rows[sel.selected]
        self.candidate_indices_ = rows[sel.candidates]
        self.val_indices_ = val
        if len(self.selected_indices_) == 0:
            raise NoisylabInputError("INCV selected no example; nothing to train Co-teaching on.")
        strat = INCVCoTeaching(self.eps_selected_, X[self.candidate_indices_], y[self.candidate_indices_],
                               num_gradual=self.num_gradual_, warmup_epochs=self.warmup_epochs_,
                               cand_batch_max=self.cand_batch_max, predict_with=self.predict_with)
        cfg = dataclasses.replace(self.coteach_config, progress=self.coteach_config.progress or self.progress)
        fit_rows = self.selected_indices_ if val is None else np.concatenate([self.selected_indices_, val])
        self.trainer_ = Trainer(self.model, cfg, strategy=strat).fit(
            X[fit_rows], y[fit_rows], X_test, y_test,
            val_indices=None if val is None else np.arange(len(self.selected_indices_), len(fit_rows)))
        return self

    def predict_proba(self, X, which: str = "last") -> np.ndarray:
        """Softmax probabilities (n, K) of the Co-teaching networks (``predict_with``)."""
        if not hasattr(self, "trainer_"):
            raise NoisylabInputError("This INCV is not fitted yet; call fit(X, y) first.")
        return self.trainer_.predict_proba(X, which)

    def predict(self, X, which: str = "last") -> np.ndarray:
        return self.predict_proba(X, which).argmax(axis=1)


# ---------------------------------------------------------------------------- verify theory
def _column_normalised(counts: np.ndarray) -> np.ndarray:
    tot = counts.sum(axis=0, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tot > 0, counts / np.where(tot > 0, tot, 1), np.nan)


def verify_theory(X, y_true, n_classes: int, model, config: TrainConfig, *,
                  noise_rates: Sequence[float] = (0.0, 0.2, 0.4, 0.6, 0.8), kind: str = "symmetric",
                  train_indices=None, random_state=0) -> list[dict]:
    """INCV's "understanding" experiment (the repository's Verify_Theory, §2.1).

    For each noise rate: corrupt the **full** set with
    ``make_noise(kind, y_true, rate, exact=True)`` — ``"symmetric"`` is noisylab's family A
    (flip to a uniformly chosen *different* class, INCV's definition), ``"pair"`` is
    ``y -> y+1 mod C`` — train on half A with its noisy labels (``config`` as is, last epoch)
    and compare, on half B, the measured quantities with the formulas at the nominal rate.

    Parameters
    ----------
    X : array-like (n, *example_shape)
    y_true : array-like (n,), int
        Clean labels.
    n_classes : int
    model : callable returning an nn.Module, or a module
    config : TrainConfig
    noise_rates : sequence of float in [0, 1]
    kind : {"symmetric", "pair"}
    train_indices : array-like of int, optional
        Rows of half A (B = the rest); default a random half (``⌊n/2⌋`` rows), the same for every
        rate.
    random_state : int, default=0
        Seeds the split and the noise (one child seed per rate).

    Returns
    -------
    list of dict
        One row per rate: ``noise_rate``, ``realised_rate`` (flip fraction on B), ``acc`` /
        ``acc_formula`` (accuracy on B w.r.t. the noisy labels), ``lp`` / ``lp_formula``,
        ``lr`` / ``lr_formula`` (of the selection "prediction == noisy label" on B; LR w.r.t. the
        clean examples of B), ``clean_acc`` (w.r.t. the true labels), ``n_selected``,
        ``confusion`` and ``true_T``.  ``confusion[s, p] = P(noisy = s | pred = p)`` on B
        (columns normalised; NaN for a class never predicted): when the network predicts the
        true class this estimates the noise matrix, so it is directly comparable with
        ``true_T[s, y] = P(noisy = s | true = y)``, the realised matrix on B.
    """
    from ...noise import make_noise

    X, y_true, K = _check_X_y(X, y_true, n_classes)
    check_option("kind", kind, KINDS)
    rates = [float(_eps(r, "noise_rates")) for r in noise_rates]
    ss = np.random.SeedSequence(random_state)
    split_seed, *rate_seeds = ss.spawn(len(rates) + 1)
    n = len(y_true)
    if train_indices is None:
        A = np.sort(np.random.default_rng(split_seed).permutation(n)[: n // 2])
    else:
        A = np.unique(np.asarray(train_indices, dtype=np.int64))
        if len(A) == 0 or len(A) >= n or A.min() < 0 or A.max() >= n:
            raise NoisylabInputError(f"train_indices must be a non-empty proper subset of 0..{n - 1}.")
    B = np.setdiff1d(np.arange(n), A)
    rows = []
    for rate, seed in zip(rates, rate_seeds):
        noisy = make_noise(kind, y_true, rate, n_classes=K, exact=True,
                           random_state=np.random.default_rng(seed)).noisy_labels
        tr = Trainer(model, config).fit(X[A], noisy[A])
        pred = tr.predict(X[B])
        yb, nb = y_true[B], noisy[B]
        sel = pred == nb
        clean = nb == yb
        conf = np.zeros((K, K))
        np.add.at(conf, (nb, pred), 1.0)
        tT = np.zeros((K, K))
        np.add.at(tT, (nb, yb), 1.0)
        rows.append({
            "noise_rate": rate,
            "realised_rate": float(1.0 - clean.mean()),
            "acc": float(sel.mean()),
            "acc_formula": incv_expected_accuracy(rate, K, kind),
            "lp": float((sel & clean).sum() / max(int(sel.sum()), 1)),
            "lp_formula": incv_label_precision(rate, K, kind),
            "lr": float((sel & clean).sum() / max(int(clean.sum()), 1)),
            "lr_formula": incv_label_recall(rate),
            "clean_acc": float((pred == yb).mean()),
            "n_selected": int(sel.sum()),
            "confusion": _column_normalised(conf),
            "true_T": _column_normalised(tT),
        })
    return rows


def _fmt_matrix(M: np.ndarray) -> list[str]:
    return [" ".join("  nan" if np.isnan(v) else f"{v:5.2f}" for v in r) for r in M]


def format_theory_table(rows: Sequence[dict], matrices: bool = False) -> str:
    """Markdown table of :func:`verify_theory` rows (measured | formula side by side).

    With ``matrices=True``, each rate is followed by a fenced block showing ``confusion``
    (P(noisy=row | pred=col)) and ``true_T`` (P(noisy=row | true=col)) side by side.
    """
    head = ("| noise | realised | acc | acc (formula) | LP | LP (formula) | LR | LR (formula) | clean acc |\n"
            "|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        lines.append(f"| {r['noise_rate']:.2f} | {r['realised_rate']:.3f} | {r['acc']:.3f} | {r['acc_formula']:.3f} "
                     f"| {r['lp']:.3f} | {r['lp_formula']:.3f} | {r['lr']:.3f} | {r['lr_formula']:.3f} "
                     f"| {r['clean_acc']:.3f} |")
    if matrices:
        for r in rows:
            a, b = _fmt_matrix(r["confusion"]), _fmt_matrix(r["true_T"])
            w = max(len(s) for s in a)
            lines += ["", f"noise {r['noise_rate']:.2f}: P(noisy=row | pred=col)  vs  P(noisy=row | true=col)", "```"]
            lines += [f"{s.ljust(w)}   |   {t}" for s, t in zip(a, b)]
            lines.append("```")
    return "\n".join(lines)
