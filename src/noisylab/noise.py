"""Synthetic label noise: transition matrices and noisy-label generators.

Conventions
-----------
A *noise matrix* (transition matrix) ``T`` has shape ``(K, K)`` and
``T[s, y] = P(noisy label = s | true label = y)``: **columns are true
classes** and every column sums to 1 (the convention of the Confident
Learning paper).  All label arrays hold integer class indices ``0..K-1``.

Two families of "symmetric" noise are in use in the literature (see
METHODS.md section 11):

* family A, :func:`symmetric_noise` -- with probability ``rate`` the label is
  moved to a *different* class chosen uniformly; ``rate`` is the expected
  fraction of changed labels (INCV, Co-teaching, AUM / mislabel-detection).
* family B, :func:`uniform_noise` -- with probability ``rate`` the label is
  replaced by a uniform draw over *all* K classes (it may hit the true
  class); the expected changed fraction is ``rate * (K - 1) / K``
  (IEG, MentorNet / MentorMix).

Asymmetric noise: :func:`pair_noise` (``y -> y + 1 mod K``; INCV, AUM,
Co-teaching), :func:`cifar10_noise` (the semantic CIFAR-10 map; IEG and most
papers), :func:`cifar100_noise` (next class within the CIFAR-100 superclass),
:func:`class_map_noise` (any user map) and the random class-conditional
matrices of the Confident Learning paper
(:func:`generate_noise_matrix_from_trace`).

Every generator returns a :class:`NoisyLabels` record holding the noisy and
true labels, the flip mask, the realised transition matrix and noise rate,
and the requested matrix.  Two sampling schemes are offered by
:func:`noise_from_matrix`: independent per-example draws (what most papers
do) and ``"exact"`` per-cell counts (the realised fraction of changed labels
equals the requested expected fraction to within one example).

All randomness comes from the ``random_state`` argument (``None``, an int, a
:class:`numpy.random.Generator`, a :class:`numpy.random.SeedSequence` or a
legacy :class:`numpy.random.RandomState`, which is advanced by the one draw
that seeds a new Generator); numpy's global RNG is never used.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from ._validation import (
    NoisylabInputError,
    check_fraction,
    check_int,
    check_labels,
    check_option,
    check_random_state,
)

__all__ = [
    "NoisyLabels",
    "NOISE_KINDS",
    "SAMPLING_MODES",
    "CIFAR10_MAP",
    "DIGITS_MAP",
    "CIFAR100_COARSE",
    "symmetric_matrix",
    "uniform_matrix",
    "pair_matrix",
    "class_map_matrix",
    "cifar100_map",
    "generate_noise_matrix_from_trace",
    "noise_matrix_is_valid",
    "noise_from_matrix",
    "symmetric_noise",
    "uniform_noise",
    "pair_noise",
    "class_map_noise",
    "cifar10_noise",
    "cifar100_noise",
    "make_noise",
    "parse_noise_spec",
]

#: Names accepted by :func:`make_noise`.
NOISE_KINDS = ("symmetric", "uniform", "pair", "cifar10", "cifar100", "digits", "class_map", "matrix")

#: Sampling schemes accepted by :func:`noise_from_matrix`.
SAMPLING_MODES = ("per_example", "exact", "floor")

#: CIFAR-10 semantic asymmetric map: truck->automobile, bird->airplane,
#: cat<->dog, deer->horse (IEG and most papers).  Read-only mapping.
CIFAR10_MAP = MappingProxyType({9: 1, 2: 0, 3: 5, 5: 3, 4: 7})

#: Small-dataset analogue for 10-class digit data (sklearn ``load_digits``,
#: MNIST-1D): visually confusable digits 7->1, 3->8, 5->6, 4->9, 2->7.
#: **Non-standard** -- no paper defines it; document it when used.
DIGITS_MAP = MappingProxyType({7: 1, 3: 8, 5: 6, 4: 9, 2: 7})

#: CIFAR-100 fine label (alphabetical order, as in the ``cifar-100-python``
#: pickle) -> coarse superclass id (20 superclasses x 5 fine classes).
#: Read-only int64 array of shape (100,).
CIFAR100_COARSE = np.array(
    [4, 1, 14, 8, 0, 6, 7, 7, 18, 3, 3, 14, 9, 18, 7, 11, 3, 9, 7, 11,
     6, 11, 5, 10, 7, 6, 13, 15, 3, 15, 0, 11, 1, 10, 12, 14, 16, 9, 11, 5,
     5, 19, 8, 8, 15, 13, 14, 17, 18, 10, 16, 4, 17, 4, 2, 0, 17, 4, 18, 17,
     10, 3, 2, 12, 12, 16, 12, 1, 9, 19, 2, 10, 0, 1, 16, 12, 9, 13, 15, 13,
     16, 19, 2, 4, 6, 19, 5, 5, 8, 19, 18, 1, 2, 15, 6, 0, 17, 8, 14, 13],
    dtype=np.int64,
)
CIFAR100_COARSE.setflags(write=False)

# Columns of a noise matrix must sum to 1 within this absolute tolerance
# (they are then renormalised exactly).
_COLUMN_SUM_TOL = 1e-6


# --------------------------------------------------------------------------
# Result record
# --------------------------------------------------------------------------
@dataclass(frozen=True, eq=False, repr=False)
class NoisyLabels:
    """Noisy labels together with how they were made.

    Attributes
    ----------
    noisy_labels : ndarray of shape (n,), int64
        The corrupted labels.
    true_labels : ndarray of shape (n,), int64
        A copy of the input (clean) labels.
    flip_mask : ndarray of shape (n,), bool
        ``noisy_labels != true_labels``.
    transition_matrix : ndarray of shape (K, K), float64
        The *realised* matrix: ``transition_matrix[s, y]`` = number of
        examples with true label ``y`` and noisy label ``s`` divided by the
        number of examples with true label ``y``.  The column of a class that
        does not occur in ``true_labels`` is the identity column.
    noise_rate : float
        Realised fraction of labels that were changed (``flip_mask.mean()``).
    noise_matrix : ndarray of shape (K, K), float64
        The requested matrix the labels were drawn from (columns = true
        class, each summing to 1).
    """

    noisy_labels: np.ndarray
    true_labels: np.ndarray
    flip_mask: np.ndarray
    transition_matrix: np.ndarray
    noise_rate: float
    noise_matrix: np.ndarray

    @property
    def n_classes(self) -> int:
        """Number of classes K."""
        return int(self.noise_matrix.shape[0])

    @property
    def n_flipped(self) -> int:
        """Number of changed labels."""
        return int(np.count_nonzero(self.flip_mask))

    def summary(self) -> str:
        """One-line human-readable summary (also used as ``repr``)."""
        n = int(self.true_labels.shape[0])
        K = self.n_classes
        present = np.bincount(self.true_labels, minlength=K) > 0
        diag = np.diag(self.transition_matrix)[present]
        expected = float(np.sum((1.0 - np.diag(self.noise_matrix)) * np.bincount(self.true_labels, minlength=K)))
        rates = 1.0 - diag
        return (
            f"NoisyLabels(n={n}, n_classes={K}, changed={self.n_flipped} "
            f"({self.noise_rate:.2%}; expected {expected / max(n, 1):.2%}), "
            f"per-class flip rate {rates.min():.3f}..{rates.max():.3f})"
        )

    def __repr__(self) -> str:
        return self.summary()


# --------------------------------------------------------------------------
# Validation helpers (public entry points validate once, inner code trusts)
# --------------------------------------------------------------------------
_check_int = check_int


def _check_bool(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise NoisylabInputError(f"{name} must be True or False; got {value!r}.")
    return bool(value)


def _check_n_classes(n_classes, *, min_classes: int = 2) -> int:
    K = _check_int("n_classes", n_classes)
    if K < min_classes:
        raise NoisylabInputError(f"n_classes must be >= {min_classes}; got {K}.")
    return K


def _labels_and_k(labels, n_classes, *, min_classes: int, what: str = "n_classes") -> tuple[np.ndarray, int]:
    """Validate labels (non-empty, ints >= 0) and resolve the number of classes."""
    y = check_labels(labels)
    y = y.astype(np.int64, copy=True)
    hi = int(y.max())
    if n_classes is None:
        K = hi + 1
        if K < min_classes:
            raise NoisylabInputError(
                f"labels contain only class indices up to {hi}, so n_classes was inferred as {K}; this noise "
                f"needs at least {min_classes} classes. Pass n_classes explicitly."
            )
        _check_inferred_k(y, K)
        return y, K
    K = _check_n_classes(n_classes, min_classes=min_classes)
    if hi >= K:
        raise NoisylabInputError(
            f"labels contain class index {hi} (at index {int(np.argmax(y))}) but {what}={K} "
            f"(valid class indices are 0..{K - 1})."
        )
    return y, K


#: Above this many classes, an inferred ``n_classes = labels.max() + 1`` more than twice the number of
#: distinct labels is taken for a stray label id (the noise matrices are dense (K, K) float64).
_MAX_SPARSE_INFERRED_K = 4096


def _check_inferred_k(y: np.ndarray, K: int) -> None:
    """Refuse an inferred K that is large (> 4096) and more than twice the number of distinct labels: one stray
    label id such as 100000 would otherwise ask for several dense (K, K) matrices (74.5 GiB each)."""
    if K <= _MAX_SPARSE_INFERRED_K:
        return
    if K <= 8 * y.shape[0] + (1 << 20):  # O(n + K) with a small K-sized count array
        n_distinct = int(np.count_nonzero(np.bincount(y, minlength=K)))
    else:  # K far above n: do not allocate K counts
        n_distinct = int(np.unique(y).size)
    if 2 * n_distinct >= K:
        return
    i = int(np.argmax(y))
    raise NoisylabInputError(
        f"labels contain class index {K - 1} (at index {i}) but only {n_distinct} distinct classes, so "
        f"n_classes would be inferred as {K} and every noise matrix would be a dense ({K}, {K}) array "
        f"({K * K * 8 / 2**30:.3g} GiB each). If {K - 1} is a stray label, fix the labels or re-encode them "
        f"(noisylab.encode_labels); if {K} classes are really meant, pass n_classes={K}."
    )


def _check_noise_matrix(noise_matrix, *, name: str = "noise_matrix", n_classes: int | None = None) -> np.ndarray:
    """Return a float64 column-stochastic copy of ``noise_matrix`` or raise."""
    try:
        T = np.array(noise_matrix, dtype=np.float64, order="C")
    except (TypeError, ValueError):
        raise NoisylabInputError(
            f"{name} must be a numeric (K, K) array; could not convert {type(noise_matrix).__name__}."
        ) from None
    if T.ndim != 2 or T.shape[0] != T.shape[1] or T.shape[0] == 0:
        raise NoisylabInputError(f"{name} must be a square (K, K) matrix with K >= 1; got shape {T.shape}.")
    K = T.shape[0]
    if n_classes is not None and K != n_classes:
        raise NoisylabInputError(f"{name} must have shape ({n_classes}, {n_classes}); got shape {T.shape}.")
    finite = np.isfinite(T)
    if not finite.all():
        r, c = np.argwhere(~finite)[0]
        raise NoisylabInputError(f"{name} must be finite; got {T[r, c]} at [{r}, {c}].")
    if T.min() < -_COLUMN_SUM_TOL:
        r, c = np.argwhere(T < -_COLUMN_SUM_TOL)[0]
        raise NoisylabInputError(f"{name} entries are probabilities and must be >= 0; got {T[r, c]} at [{r}, {c}].")
    # float-rounding negatives (the CL paper's stored matrices have entries down to -3e-7) count as 0
    T = np.clip(T, 0.0, None)
    col = T.sum(axis=0)
    dev = np.abs(col - 1.0)
    if dev.max() > _COLUMN_SUM_TOL:
        j = int(np.argmax(dev))
        msg = (
            f"{name} must be column-stochastic (T[s, y] = P(noisy=s | true=y); every column sums to 1); "
            f"column {j} sums to {col[j]:.6g}."
        )
        if np.abs(T.sum(axis=1) - 1.0).max() <= _COLUMN_SUM_TOL:
            msg += " Its rows sum to 1: pass the transpose if rows are the true classes."
        raise NoisylabInputError(msg)
    return T / col[None, :]


def _check_py(py, K: int, *, name: str = "py") -> np.ndarray:
    try:
        p = np.array(py, dtype=np.float64)
    except (TypeError, ValueError):
        raise NoisylabInputError(f"{name} must be a numeric array of shape ({K},).") from None
    if p.shape != (K,):
        raise NoisylabInputError(f"{name} must have shape ({K},) (one prior per class); got shape {p.shape}.")
    if not np.all(np.isfinite(p)) or p.min() < 0:
        raise NoisylabInputError(f"{name} must be finite non-negative probabilities; got {p.tolist()}.")
    s = p.sum()
    if abs(s - 1.0) > _COLUMN_SUM_TOL:
        raise NoisylabInputError(f"{name} must sum to 1; it sums to {s:.6g}.")
    return p / s


def _check_rate(rate) -> float:
    if rate is None:
        raise NoisylabInputError("rate is required for this kind of noise; got None.")
    return check_fraction("rate", rate)


def _check_mapping(mapping, K: int, *, name: str = "mapping") -> dict[int, int]:
    if not isinstance(mapping, Mapping):
        raise NoisylabInputError(
            f"{name} must be a dict {{source_class: target_class}}; got {type(mapping).__name__}."
        )
    out: dict[int, int] = {}
    for s, t in mapping.items():
        for v in (s, t):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                raise NoisylabInputError(f"{name} keys and values must be int class indices; got {v!r}.")
        s, t = int(s), int(t)
        for v in (s, t):
            if not 0 <= v < K:
                raise NoisylabInputError(
                    f"{name} entry {s} -> {t} uses class {v}, outside 0..{K - 1} for n_classes={K}."
                    + (" Pass n_classes explicitly if some classes are absent from labels." if v >= K else "")
                )
        if s == t:
            raise NoisylabInputError(f"{name} maps class {s} to itself; source and target must differ.")
        out[s] = t
    return out


# --------------------------------------------------------------------------
# Matrix builders (pure, unvalidated cores + validated public wrappers)
# --------------------------------------------------------------------------
def _symmetric(K: int, rate: float) -> np.ndarray:
    T = np.full((K, K), rate / (K - 1))
    np.fill_diagonal(T, 1.0 - rate)
    return T


def _uniform(K: int, rate: float) -> np.ndarray:
    T = np.full((K, K), rate / K)
    np.fill_diagonal(T, 1.0 - rate + rate / K)
    return T


def _pair(K: int, rate: float) -> np.ndarray:
    T = np.eye(K) * (1.0 - rate)
    cls = np.arange(K)
    T[(cls + 1) % K, cls] += rate
    return T


def _class_map(K: int, mapping: dict[int, int], rate: float) -> np.ndarray:
    T = np.eye(K)
    for s, t in mapping.items():
        T[s, s] = 1.0 - rate
        T[t, s] = rate
    return T


def symmetric_matrix(n_classes: int, rate: float) -> np.ndarray:
    """Family-A symmetric noise matrix (flip to a *different* class uniformly).

    ``T[y, y] = 1 - rate`` and ``T[s, y] = rate / (K - 1)`` for ``s != y``;
    ``rate`` is the expected fraction of changed labels.  Used by INCV,
    Co-teaching and AUM / mislabel-detection ("sym", "uniform").

    Parameters
    ----------
    n_classes : int
        Number of classes K (>= 2).
    rate : float in [0, 1]
        Probability of moving a label to another class.

    Returns
    -------
    ndarray of shape (K, K), float64
        Column-stochastic matrix, ``T[s, y] = P(noisy=s | true=y)``.
    """
    return _symmetric(_check_n_classes(n_classes), check_fraction("rate", rate))


def uniform_matrix(n_classes: int, rate: float) -> np.ndarray:
    """Family-B noise matrix (resample uniformly over *all* K classes).

    With probability ``rate`` the label is replaced by a uniform draw over the
    K classes, which may be the true class: ``T[y, y] = 1 - rate + rate/K``,
    ``T[s, y] = rate / K``.  The expected changed fraction is
    ``rate * (K - 1) / K`` (CIFAR-10: 0.2 -> 0.18).  Used by IEG and
    MentorNet / MentorMix.

    Parameters
    ----------
    n_classes : int
        Number of classes K (>= 2).
    rate : float in [0, 1]
        Resampling probability.

    Returns
    -------
    ndarray of shape (K, K), float64
        Column-stochastic matrix.
    """
    return _uniform(_check_n_classes(n_classes), check_fraction("rate", rate))


def pair_matrix(n_classes: int, rate: float) -> np.ndarray:
    """Pair-flip noise matrix: ``y -> (y + 1) mod K`` with probability ``rate``.

    Used by INCV ("asym"), AUM ("flip") and Co-teaching ("pairflip").

    Parameters
    ----------
    n_classes : int
        Number of classes K (>= 2).
    rate : float in [0, 1]

    Returns
    -------
    ndarray of shape (K, K), float64
        Column-stochastic matrix with ``T[y, y] = 1 - rate`` and
        ``T[(y + 1) % K, y] = rate``.
    """
    return _pair(_check_n_classes(n_classes), check_fraction("rate", rate))


def class_map_matrix(n_classes: int, mapping: Mapping[int, int], rate: float) -> np.ndarray:
    """Noise matrix for a fixed class map ``{source: target}``.

    Every source class flips to its target with probability ``rate``; classes
    that are not sources are never changed.  With :data:`CIFAR10_MAP` this is
    the IEG / standard CIFAR-10 asymmetric noise (overall changed fraction
    about ``rate / 2`` on balanced data).

    Parameters
    ----------
    n_classes : int
        Number of classes K (>= 2).
    mapping : dict {int: int}
        Source class -> target class; both in ``0..K-1`` and different.
    rate : float in [0, 1]

    Returns
    -------
    ndarray of shape (K, K), float64
        Column-stochastic matrix.
    """
    K = _check_n_classes(n_classes)
    m = _check_mapping(mapping, K)
    return _class_map(K, m, check_fraction("rate", rate))


def _check_coarse(coarse) -> np.ndarray:
    c = check_labels(coarse, name="coarse")
    return c.astype(np.int64)


def _next_in_group(coarse: np.ndarray) -> dict[int, int]:
    out: dict[int, int] = {}
    for g in np.unique(coarse):
        members = np.flatnonzero(coarse == g)  # sorted by fine index
        if members.size < 2:
            continue
        for a, b in zip(members, np.roll(members, -1)):
            out[int(a)] = int(b)
    return out


def cifar100_map(coarse=CIFAR100_COARSE) -> dict[int, int]:
    """CIFAR-100 "next class within the superclass" map.

    Within each superclass, the member fine classes sorted by fine index flip
    cyclically ``a -> b -> c -> d -> e -> a``.  This is the common literature
    convention (third-party derivative of IEG; none of the seed repositories
    implements it, see METHODS.md 11.7).  A superclass with a single member
    is left out (it has no other class to flip to).

    Parameters
    ----------
    coarse : array-like of shape (K,), int
        Fine label -> coarse id; defaults to :data:`CIFAR100_COARSE`.

    Returns
    -------
    dict {int: int}
        Fine class -> next fine class in the same superclass.
    """
    return _next_in_group(_check_coarse(coarse))


# --------------------------------------------------------------------------
# Random class-conditional matrices (Confident Learning paper, CIFAR-10)
# --------------------------------------------------------------------------
def _bounded_simplex(total: float, k: int, lo: float, hi: float, rng: np.random.Generator,
                     n_rounds: int = 64) -> np.ndarray:
    """Draw ``x`` (k,) with ``sum(x) = total`` and ``lo <= x <= hi``.

    ``x = lo + (total - k*lo) * Dirichlet(1, ..., 1)``; when that violates
    the upper bound the point is projected into the box (clip, then spread
    the deficit over the entries proportionally to their room) and then
    randomised by ``n_rounds`` rounds of random pairwise Gibbs moves, each of
    which leaves the uniform distribution on the box-constrained simplex
    invariant.  The result is (approximately) Dirichlet(1,...,1)*total
    conditioned on the bounds.  The caller guarantees feasibility.
    """
    if k == 1:
        return np.array([float(total)])
    span = total - k * lo
    if span <= 1e-15:
        return np.full(k, total / k)
    if k * hi - total <= 1e-15:
        return np.full(k, total / k)
    x = lo + span * rng.dirichlet(np.ones(k))
    if x.max() <= hi:
        return x
    x = np.minimum(x, hi)
    room = hi - x
    x = x + (total - x.sum()) * room / room.sum()
    h = k // 2
    for _ in range(n_rounds):
        p = rng.permutation(k)
        i, j = p[:h], p[h:2 * h]
        s = x[i] + x[j]
        a = np.maximum(lo, s - hi)
        b = np.minimum(hi, s - lo)
        xi = a + (b - a) * rng.random(h)
        x[i] = xi
        x[j] = s - xi
    x = np.clip(x, lo, hi)
    # absorb float rounding in the most interior entry
    idx = int(np.argmax(np.minimum(x - lo, hi - x)))
    x[idx] += total - x.sum()
    return x


def _is_valid(T: np.ndarray, py: np.ndarray) -> bool:
    if np.trace(T) <= 1.0:
        return False
    ps = T @ py
    return bool(np.all(ps * py < np.diag(T) * py))


def noise_matrix_is_valid(noise_matrix, py=None) -> bool:
    """Learnability check of the Confident Learning paper.

    A noise matrix is *valid* if ``trace(T) > 1`` and, for every class k,
    ``p(noisy=k) * p(y=k) < p(noisy=k, y=k)``, where
    ``p(noisy) = T @ py`` and ``p(noisy=k, y=k) = T[k, k] * py[k]``.
    Equivalently (for ``py[k] > 0``) ``p(noisy=k) < P(noisy=k | y=k)``: a
    noisy label k is more likely for a true-k example than on average.  A
    class with ``py[k] = 0`` makes the matrix invalid.

    Parameters
    ----------
    noise_matrix : array-like of shape (K, K)
        Column-stochastic, ``T[s, y] = P(noisy=s | true=y)``.
    py : array-like of shape (K,), optional
        Prior of the true labels; ``None`` means uniform.

    Returns
    -------
    bool
    """
    T = _check_noise_matrix(noise_matrix)
    K = T.shape[0]
    p = np.full(K, 1.0 / K) if py is None else _check_py(py, K)
    return _is_valid(T, p)


def _draw_trace_matrix(K, trace, n_zero, d_lo, d_hi, r_lo, r_hi, rng):
    """One draw of the trace-constrained matrix; ``None`` if infeasible."""
    d = _bounded_simplex(trace, K, d_lo, d_hi, rng)
    mass = np.clip(1.0 - d, 0.0, None)
    # Zero off-diagonal rates: every column keeps one randomly chosen
    # "protected" off-diagonal row; the n_zero zeros are a uniform subset of
    # the other K*(K-2) off-diagonal cells (so <= K-2 zeros per column).
    protected = rng.integers(0, K - 1, size=K)          # index among the K-1 off-diagonal rows
    nonzero = np.ones((K - 1, K), dtype=bool)           # [j, y]: j-th off-diagonal row of column y
    if n_zero:
        cand_j, cand_y = np.nonzero(np.arange(K - 1)[:, None] != protected[None, :])
        pick = rng.choice(cand_j.size, size=n_zero, replace=False)
        nonzero[cand_j[pick], cand_y[pick]] = False
    cols = np.arange(K)
    rows = np.arange(K - 1)[:, None] + (np.arange(K - 1)[:, None] >= cols[None, :])  # off-diag row ids
    E = rng.standard_exponential((K - 1, K)) * nonzero
    O = E / E.sum(axis=0, keepdims=True) * mass[None, :]
    nz = nonzero.sum(axis=0)
    bad = np.flatnonzero(((O < r_lo) & nonzero).any(axis=0) | (O > r_hi).any(axis=0))
    for y in bad:
        if not (nz[y] * r_lo <= mass[y] <= nz[y] * r_hi):
            return None
        O[nonzero[:, y], y] = _bounded_simplex(mass[y], int(nz[y]), r_lo, r_hi, rng)
    T = np.zeros((K, K))
    T[rows, cols[None, :]] = O
    T[cols, cols] = d
    return T


def generate_noise_matrix_from_trace(
    n_classes: int,
    trace: float,
    *,
    py=None,
    valid_noise_matrix: bool = True,
    frac_zero_noise_rates: float = 0.0,
    max_trace_prob: float = 1.0,
    min_trace_prob: float = 1e-5,
    max_noise_rate: float = 1 - 1e-5,
    min_noise_rate: float = 0.0,
    random_state=None,
    max_iter: int = 10000,
) -> np.ndarray:
    """Random class-conditional noise matrix with a given trace.

    The construction of the Confident Learning paper's CIFAR-10 noise
    (METHODS.md 11.1: ``trace = int(K * (1 - noise))``, sparsity =
    ``frac_zero_noise_rates``; the paper used ``valid_noise_matrix=False``).
    This is an independent implementation of that description, not of the
    paper's code: the same seed does not give the paper's matrices, and the
    distribution differs where the description is silent.  Here the diagonal
    is Dirichlet(1)*trace *conditioned* on the bounds; the reference's
    adjustment loop shifts mass onto its smallest entry, so its smallest
    diagonal entry is larger (trace 8, K = 10: mean 0.56 vs 0.42 here;
    P(min < 0.4) 0.05 vs 0.38), and it spreads the zeros less evenly over
    the columns (sparsity 0.2: a column with >= 5 zeros in 59% vs 12% of the
    draws).  To use the paper's own matrices, load them and call
    :func:`noise_from_matrix` with ``sampling="floor"`` (its per-cell counts).

    Construction of one draw:

    1. diagonal ``d`` (K,): ``lo + (trace - K*lo) * Dirichlet(1, ..., 1)``
       with ``lo = max(min_trace_prob, 1 - (K-1)*max_noise_rate)``; if an entry
       exceeds ``hi = min(max_trace_prob, 1 - min_noise_rate)`` the vector is
       moved into the box and re-randomised by pairwise Gibbs moves, i.e. it
       is (approximately) Dirichlet(1)*trace conditioned on ``lo <= d <= hi``.
       ``sum(d) == trace``.
    2. zeros: each column keeps one randomly chosen off-diagonal row non-zero;
       exactly ``int(K*(K-1)*frac_zero_noise_rates)`` of the remaining
       ``K*(K-2)`` off-diagonal cells, chosen uniformly, are set to 0 (so at
       most K-2 zeros per column).  The product is rounded to 9 decimals
       before ``int`` so that float error does not lose a zero
       (``10*9*0.7`` gives 63, not 62).
    3. each column's remaining mass ``1 - d[y]`` is split over its non-zero
       off-diagonal rows by a Dirichlet(1, ..., 1) draw; every non-zero
       off-diagonal entry must lie in ``[min_noise_rate, max_noise_rate]``
       (bounded re-draw per column, the whole matrix is redrawn if a column
       cannot satisfy them).

    If ``valid_noise_matrix`` the matrix is redrawn until
    :func:`noise_matrix_is_valid` holds for ``py``.  A column whose diagonal
    is exactly 1 (only when ``trace == K * max_trace_prob`` with
    ``max_trace_prob == 1``) has no noise, so all its off-diagonals are zero.

    Parameters
    ----------
    n_classes : int
        K >= 2.
    trace : float
        Sum of the diagonal, ``0 < trace <= K``; the mean per-class flip rate
        is ``1 - trace / K``.
    py : array-like of shape (K,), optional
        Prior of the true labels; required when ``valid_noise_matrix`` and
        ``K > 2`` (for K = 2 validity does not depend on a positive prior).
        Not used when ``valid_noise_matrix`` is False (only validated).
    valid_noise_matrix : bool, default True
        Redraw until the matrix is learnable (requires ``trace > 1``).
    frac_zero_noise_rates : float in [0, (K-2)/(K-1)], default 0
        Fraction of off-diagonal entries forced to 0 (sparsity).
    max_trace_prob, min_trace_prob : float
        Bounds on diagonal entries.
    max_noise_rate, min_noise_rate : float
        Bounds on every non-zero off-diagonal entry.
    random_state : None, int, numpy.random.Generator or numpy.random.RandomState
    max_iter : int, default 10000
        Maximum number of draws when ``valid_noise_matrix``.

    Returns
    -------
    ndarray of shape (K, K), float64
        Column-stochastic matrix, ``T[s, y] = P(noisy=s | true=y)``.
    """
    K = _check_n_classes(n_classes)
    if isinstance(trace, bool) or not isinstance(trace, numbers.Real) or not np.isfinite(trace):
        raise NoisylabInputError(f"trace must be a real number in (0, {K}]; got {trace!r}.")
    trace = float(trace)
    if not 0.0 < trace <= K:
        raise NoisylabInputError(f"trace must be in (0, n_classes={K}]; got {trace}.")
    valid = _check_bool("valid_noise_matrix", valid_noise_matrix)
    frac = check_fraction("frac_zero_noise_rates", frac_zero_noise_rates)
    t_hi = check_fraction("max_trace_prob", max_trace_prob)
    t_lo = check_fraction("min_trace_prob", min_trace_prob)
    r_hi = check_fraction("max_noise_rate", max_noise_rate)
    r_lo = check_fraction("min_noise_rate", min_noise_rate)
    max_iter = _check_int("max_iter", max_iter, min_value=1)
    if t_lo > t_hi:
        raise NoisylabInputError(f"min_trace_prob ({t_lo}) must be <= max_trace_prob ({t_hi}).")
    if r_lo > r_hi:
        raise NoisylabInputError(f"min_noise_rate ({r_lo}) must be <= max_noise_rate ({r_hi}).")
    # every column keeps >= 1 and <= K-1 non-zero noise rates, each in [r_lo, r_hi]
    d_lo = max(t_lo, 1.0 - (K - 1) * r_hi)
    d_hi = min(t_hi, 1.0 - r_lo)
    if d_lo > d_hi or not (K * d_lo - 1e-12 <= trace <= K * d_hi + 1e-12):
        raise NoisylabInputError(
            f"trace={trace} is unreachable: diagonal entries must lie in [{d_lo:.6g}, {d_hi:.6g}] "
            f"(from min/max_trace_prob and min/max_noise_rate), so the trace must be in "
            f"[{K * d_lo:.6g}, {K * d_hi:.6g}] for n_classes={K}."
        )
    n_zero = int(math.floor(round(K * (K - 1) * frac, 9)))
    if n_zero > K * (K - 2):
        raise NoisylabInputError(
            f"frac_zero_noise_rates={frac} asks for {n_zero} zero noise rates, but at most K-2={K - 2} per column "
            f"({K * (K - 2)} in total) are allowed; use frac_zero_noise_rates <= {(K - 2) / (K - 1):.6g}."
        )
    p = None
    if valid:
        if trace <= 1.0:
            raise NoisylabInputError(
                f"valid_noise_matrix=True requires trace > 1 (a learnable matrix has trace > 1); got trace={trace}."
            )
        if py is None:
            if K > 2:
                raise NoisylabInputError(
                    "py (the prior of the true labels, shape (K,)) is required when valid_noise_matrix=True "
                    f"and n_classes > 2; got None (n_classes={K})."
                )
            p = np.full(K, 1.0 / K)
        else:
            p = _check_py(py, K)
            if p.min() <= 0:
                raise NoisylabInputError(
                    f"valid_noise_matrix=True needs py > 0 for every class; got py={p.tolist()}."
                )
    elif py is not None:
        _check_py(py, K)
    rng = check_random_state(random_state)
    n_draws = max_iter
    for _ in range(n_draws):
        T = _draw_trace_matrix(K, trace, n_zero, d_lo, d_hi, r_lo, r_hi, rng)
        if T is None:
            continue
        if not valid or _is_valid(T, p):
            return T
    raise NoisylabInputError(
        f"no {'valid ' if valid else ''}noise matrix found in {n_draws} draws for n_classes={K}, trace={trace}, "
        f"frac_zero_noise_rates={frac}, noise-rate bounds [{r_lo}, {r_hi}]; increase max_iter or the trace, "
        "or relax the bounds."
    )


# --------------------------------------------------------------------------
# Sampling
# --------------------------------------------------------------------------
def _snap_int(x: np.ndarray) -> np.ndarray:
    """Snap values within float rounding of an integer onto it."""
    r = np.rint(x)
    return np.where(np.abs(x - r) <= 1e-9 * np.maximum(1.0, np.abs(x)), r, x)


def _exact_counts(T: np.ndarray, n_y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Integer count matrix C[s, y] with every cell floor/ceil of T[s, y]*n_y.

    Largest-remainder (Hamilton) apportionment at two levels: first the
    per-class changed totals (so that the overall number of changed labels
    is sum_y n_y * (1 - T[y, y]) rounded half up), then the cells within each class.
    Ties are broken at random.
    """
    K = T.shape[0]
    A = T * n_y[None, :].astype(np.float64)
    np.fill_diagonal(A, 0.0)
    A = _snap_int(A)
    F = np.floor(A)
    R = A - F                                            # cell remainders in [0, 1)
    colR = _snap_int(R.sum(axis=0))
    col_base = np.floor(colR)
    col_frac = np.round(colR - col_base, 12)
    n_extra = int(math.floor(round(float(col_frac.sum()), 9) + 0.5))
    col_extra = col_base.astype(np.int64)
    if n_extra:
        order = np.lexsort((rng.random(K), -col_frac))
        col_extra[order[:n_extra]] += 1
    C = F.astype(np.int64)
    if col_extra.any():
        Rr = np.round(R, 12)
        col_of = np.repeat(np.arange(K)[None, :], K, axis=0)   # (K, K): column index of each cell
        order = np.lexsort((rng.random(K * K), -Rr.ravel(), col_of.ravel()))
        rank = np.arange(K * K) - col_of.ravel()[order] * K
        sel = order[rank < col_extra[col_of.ravel()[order]]]
        C[sel // K, sel % K] += 1                              # sel indexes cells in C order
    changed = C.sum(axis=0)
    C[np.arange(K), np.arange(K)] = n_y - changed
    return C


def _floor_counts(T: np.ndarray, n_y: np.ndarray) -> np.ndarray:
    """The Confident Learning paper's counts: ``floor(T[s, y] * n_y)`` per off-diagonal cell, the rest stay."""
    K = T.shape[0]
    C = np.floor(_snap_int(T * n_y[None, :].astype(np.float64))).astype(np.int64)
    C[np.arange(K), np.arange(K)] = 0
    C[np.arange(K), np.arange(K)] = n_y - C.sum(axis=0)
    return C


def _per_example_counts(T: np.ndarray, n_y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Multinomial counts C[s, y] ~ Multinomial(n_y, T[:, y]), one (K, K) float64 and one int64 array beyond T.

    The row sums and the division are computed on the same memory layout and in the same order as before, so
    seeded draws are unchanged; the probabilities are written in C order once (``multinomial`` would
    otherwise make its own C-ordered copy) and normalised in place.
    """
    s = np.clip(T, 0.0, None).sum(axis=0) if T.min() < 0 else T.sum(axis=0)  # = clip(T.T).sum(axis=1)
    P = np.empty(T.shape)
    np.clip(T.T, 0.0, None, out=P)
    P /= s[:, None]
    C = rng.multinomial(n_y, P)
    del P
    return C.T.astype(np.int64, copy=False)


def _assign(y: np.ndarray, C: np.ndarray, n_y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Noisy labels with count matrix C; random choice of examples within each class."""
    K = C.shape[0]
    key = y.astype(np.uint16) if K <= 65536 else y
    order = np.argsort(key, kind="stable")               # examples grouped by true class
    starts = np.concatenate([[0], np.cumsum(n_y)])
    noisy_sorted = np.repeat(np.arange(K, dtype=np.int64), n_y)
    cls = np.arange(K, dtype=np.int64)
    for c in range(K):
        m = int(n_y[c] - C[c, c])
        if m == 0:
            continue
        counts = C[:, c].copy()
        counts[c] = 0
        pos = rng.choice(int(n_y[c]), size=m, replace=False)   # random subset in random order
        noisy_sorted[starts[c] + pos] = np.repeat(cls, counts)
    noisy = np.empty_like(noisy_sorted)
    noisy[order] = noisy_sorted
    return noisy


def _sample(y: np.ndarray, T: np.ndarray, sampling: str, rng: np.random.Generator) -> NoisyLabels:
    K = T.shape[0]
    n_y = np.bincount(y, minlength=K).astype(np.int64)
    if sampling == "exact":
        C = _exact_counts(T, n_y, rng)
    elif sampling == "floor":
        C = _floor_counts(T, n_y)
    else:
        C = _per_example_counts(T, n_y, rng)
    noisy = _assign(y, C, n_y, rng)
    realised = np.eye(K)  # columns of absent classes stay identity columns; no (K, K) temporaries
    np.divide(C, n_y[None, :], out=realised, where=(n_y > 0)[None, :])
    flip = noisy != y
    return NoisyLabels(
        noisy_labels=noisy,
        true_labels=y,
        flip_mask=flip,
        transition_matrix=realised,
        noise_rate=float(np.count_nonzero(flip) / y.shape[0]),
        noise_matrix=T,
    )


def noise_from_matrix(labels, noise_matrix, *, sampling: str = "per_example", random_state=None) -> NoisyLabels:
    """Draw noisy labels from a class-conditional noise matrix.

    Parameters
    ----------
    labels : array-like of shape (n,), int
        True labels in ``0..K-1`` with ``K = noise_matrix.shape[0]``.
    noise_matrix : array-like of shape (K, K)
        ``T[s, y] = P(noisy=s | true=y)``; columns must sum to 1.
    sampling : {"per_example", "exact", "floor"}, default "per_example"
        * ``"per_example"`` -- every example's noisy label is an independent
          draw from column ``T[:, y]`` (INCV, IEG, AUM, Co-teaching).  It is
          implemented as a multinomial draw of the per-class counts followed
          by a uniformly random assignment of those labels to the examples
          of the class, which has exactly the same distribution.
        * ``"exact"`` -- per-cell counts: for true class y with ``n_y``
          examples, cell ``(s, y)`` receives ``floor`` or ``ceil`` of
          ``T[s, y] * n_y`` examples.  The rounding is by largest remainder,
          first over classes and then over cells within each class, so the
          total number of changed labels equals ``sum_y n_y * (1 - T[y, y])``
          rounded half up (realised noise rate = the
          requested expected rate to within one example), every class's
          changed count is floor/ceil of its expected count (never above
          ``n_y``) and ties are broken at random.  Which examples of class y
          receive which label is uniformly random.
        * ``"floor"`` -- the Confident Learning paper's counts (METHODS.md
          11.1): exactly ``floor(T[s, y] * n_y)`` randomly chosen examples of
          class y get label s; the rest keep y.  Its files are up to K(K-1)
          examples short of the expected rate (0.1991 instead of 0.2 on
          CIFAR-10).
    random_state : None, int, numpy.random.Generator or numpy.random.RandomState

    Returns
    -------
    NoisyLabels
    """
    T = _check_noise_matrix(noise_matrix)
    y, _ = _labels_and_k(labels, T.shape[0], min_classes=1, what="noise_matrix.shape[0]")
    sampling = check_option("sampling", sampling, SAMPLING_MODES)
    rng = check_random_state(random_state)
    return _sample(y, T, sampling, rng)


def _mode(exact) -> str:
    return "exact" if _check_bool("exact", exact) else "per_example"


_COMMON_PARAMS = """
    n_classes : int, optional
        Number of classes K; defaults to ``labels.max() + 1``.
    exact : bool, default False
        Use ``sampling="exact"`` of :func:`noise_from_matrix`: the realised
        fraction of changed labels equals the expected one within one
        example.  Otherwise each label is drawn independently.
    random_state : None, int, numpy.random.Generator or numpy.random.RandomState

    Returns
    -------
    NoisyLabels
"""


def symmetric_noise(labels, rate, *, n_classes=None, exact=False, random_state=None) -> NoisyLabels:
    """Family-A symmetric noise: w.p. ``rate`` move to a different class uniformly.

    ``rate`` is the expected fraction of changed labels; see
    :func:`symmetric_matrix` (INCV, Co-teaching, AUM).

    Parameters
    ----------
    labels : array-like of shape (n,), int
    rate : float in [0, 1]
    """
    y, K = _labels_and_k(labels, n_classes, min_classes=2)
    rate = _check_rate(rate)
    mode = _mode(exact)
    return _sample(y, _symmetric(K, rate), mode, check_random_state(random_state))


def uniform_noise(labels, rate, *, n_classes=None, exact=False, random_state=None) -> NoisyLabels:
    """Family-B noise: w.p. ``rate`` resample uniformly over all K classes.

    The expected changed fraction is ``rate * (K - 1) / K``; with
    ``exact=True`` exactly ``n * rate * (K - 1) / K`` labels change, rounded half up.
    See :func:`uniform_matrix` (IEG, MentorNet / MentorMix).

    Parameters
    ----------
    labels : array-like of shape (n,), int
    rate : float in [0, 1]
    """
    y, K = _labels_and_k(labels, n_classes, min_classes=2)
    rate = _check_rate(rate)
    mode = _mode(exact)
    return _sample(y, _uniform(K, rate), mode, check_random_state(random_state))


def pair_noise(labels, rate, *, n_classes=None, exact=False, random_state=None) -> NoisyLabels:
    """Pair-flip noise: ``y -> (y + 1) mod K`` with probability ``rate``.

    See :func:`pair_matrix` (INCV "asym", AUM "flip", Co-teaching "pairflip").

    Parameters
    ----------
    labels : array-like of shape (n,), int
    rate : float in [0, 1]
    """
    y, K = _labels_and_k(labels, n_classes, min_classes=2)
    rate = _check_rate(rate)
    mode = _mode(exact)
    return _sample(y, _pair(K, rate), mode, check_random_state(random_state))


def class_map_noise(labels, mapping, rate, *, n_classes=None, exact=False, random_state=None) -> NoisyLabels:
    """Fixed-map asymmetric noise: each ``source`` flips to ``mapping[source]`` w.p. ``rate``.

    Classes that are not keys of ``mapping`` are never changed.  If
    ``n_classes`` is not given it is ``labels.max() + 1`` and the map must fit
    in it.  See :func:`class_map_matrix`.

    Parameters
    ----------
    labels : array-like of shape (n,), int
    mapping : dict {int: int}
    rate : float in [0, 1]
    """
    y, K = _labels_and_k(labels, n_classes, min_classes=2)
    m = _check_mapping(mapping, K)
    rate = _check_rate(rate)
    mode = _mode(exact)
    return _sample(y, _class_map(K, m, rate), mode, check_random_state(random_state))


def cifar10_noise(labels, rate, *, exact=False, random_state=None) -> NoisyLabels:
    """CIFAR-10 semantic asymmetric noise (K = 10, :data:`CIFAR10_MAP`).

    truck(9)->automobile(1), bird(2)->airplane(0), cat(3)<->dog(5),
    deer(4)->horse(7), each w.p. ``rate``; the other classes are untouched
    (overall changed fraction about ``rate / 2`` on balanced data).  Used by
    IEG and most papers.

    Parameters
    ----------
    labels : array-like of shape (n,), int in 0..9
    rate : float in [0, 1]
    """
    y, K = _labels_and_k(labels, 10, min_classes=2)
    rate = _check_rate(rate)
    mode = _mode(exact)
    return _sample(y, _class_map(K, dict(CIFAR10_MAP), rate), mode, check_random_state(random_state))


def cifar100_noise(labels, rate, *, coarse=CIFAR100_COARSE, exact=False, random_state=None) -> NoisyLabels:
    """CIFAR-100 asymmetric noise: next fine class within the superclass.

    Each fine class flips w.p. ``rate`` to the next member of its superclass
    (cyclic, members sorted by fine index); see :func:`cifar100_map`.
    ``K = len(coarse)`` (100 for the default :data:`CIFAR100_COARSE`).

    Parameters
    ----------
    labels : array-like of shape (n,), int in 0..K-1
    rate : float in [0, 1]
    coarse : array-like of shape (K,), int
        Fine -> coarse map.
    """
    c = _check_coarse(coarse)
    y, K = _labels_and_k(labels, int(c.shape[0]), min_classes=2, what="len(coarse)")
    rate = _check_rate(rate)
    mode = _mode(exact)
    return _sample(y, _class_map(K, _next_in_group(c), rate), mode, check_random_state(random_state))


for _f in (symmetric_noise, uniform_noise, pair_noise, class_map_noise, cifar10_noise, cifar100_noise):
    _params = _COMMON_PARAMS
    if _f in (cifar10_noise, cifar100_noise):
        _params = _params.replace(
            "    n_classes : int, optional\n        Number of classes K; defaults to ``labels.max() + 1``.\n", ""
        )
    if _f.__doc__:  # None under python -OO
        _f.__doc__ = _f.__doc__.rstrip() + _params
del _f, _params


def make_noise(kind, labels, rate=None, *, n_classes=None, noise_matrix=None, mapping=None,
               exact=False, random_state=None) -> NoisyLabels:
    """Make noisy labels of a named kind.

    Parameters
    ----------
    kind : {"symmetric", "uniform", "pair", "cifar10", "cifar100", "digits", "class_map", "matrix"}
        * ``"symmetric"`` -- :func:`symmetric_noise` (family A),
        * ``"uniform"`` -- :func:`uniform_noise` (family B),
        * ``"pair"`` -- :func:`pair_noise`,
        * ``"cifar10"`` -- :func:`cifar10_noise` (K = 10),
        * ``"cifar100"`` -- :func:`cifar100_noise` (K = 100),
        * ``"digits"`` -- :func:`class_map_noise` with :data:`DIGITS_MAP`
          (non-standard; ``n_classes`` defaults to 10),
        * ``"class_map"`` -- :func:`class_map_noise` with ``mapping``,
        * ``"matrix"`` -- :func:`noise_from_matrix` with ``noise_matrix``
          (``rate`` must be None).
    labels : array-like of shape (n,), int
    rate : float in [0, 1], optional
        Required by every kind except ``"matrix"``.
    n_classes : int, optional
        Number of classes (fixed for ``"cifar10"``/``"cifar100"``).
    noise_matrix : array-like of shape (K, K), optional
        Only for ``kind="matrix"``.
    mapping : dict {int: int}, optional
        Only for ``kind="class_map"``.
    exact : bool, default False
        Exact per-cell counts instead of independent draws.
    random_state : None, int, numpy.random.Generator or numpy.random.RandomState

    Returns
    -------
    NoisyLabels
    """
    kind = check_option("noise kind", kind, NOISE_KINDS)
    if noise_matrix is not None and kind != "matrix":
        raise NoisylabInputError(f"noise_matrix is only used with kind='matrix'; got kind={kind!r}.")
    if mapping is not None and kind != "class_map":
        raise NoisylabInputError(f"mapping is only used with kind='class_map'; got kind={kind!r}.")
    common = dict(exact=exact, random_state=random_state)
    if kind == "matrix":
        if noise_matrix is None:
            raise NoisylabInputError("kind='matrix' needs noise_matrix (a (K, K) column-stochastic array).")
        if rate is not None:
            raise NoisylabInputError(
                f"rate is not used with kind='matrix' (the matrix defines the noise); got {rate!r}."
            )
        K = None if n_classes is None else _check_n_classes(n_classes, min_classes=1)
        T = _check_noise_matrix(noise_matrix, n_classes=K)
        y, _ = _labels_and_k(labels, T.shape[0], min_classes=1, what="noise_matrix.shape[0]")
        mode = _mode(exact)
        return _sample(y, T, mode, check_random_state(random_state))
    rate = _check_rate(rate)
    if kind in ("cifar10", "cifar100"):
        fixed = 10 if kind == "cifar10" else 100
        if n_classes is not None and _check_int("n_classes", n_classes) != fixed:
            raise NoisylabInputError(f"kind={kind!r} has n_classes={fixed}; got n_classes={n_classes}.")
        fn = cifar10_noise if kind == "cifar10" else cifar100_noise
        return fn(labels, rate, **common)
    if kind == "digits":
        return class_map_noise(labels, DIGITS_MAP, rate, n_classes=10 if n_classes is None else n_classes, **common)
    if kind == "class_map":
        if mapping is None:
            raise NoisylabInputError("kind='class_map' needs mapping, a dict {source_class: target_class}.")
        return class_map_noise(labels, mapping, rate, n_classes=n_classes, **common)
    fn = {"symmetric": symmetric_noise, "uniform": uniform_noise, "pair": pair_noise}[kind]
    return fn(labels, rate, n_classes=n_classes, **common)


#: Kinds a ``"KIND:RATE"`` spec can name (the others need a mapping or a matrix).
SPEC_KINDS = ("symmetric", "uniform", "pair", "cifar10", "cifar100", "digits")


def parse_noise_spec(spec, *, allow_none: bool = True) -> tuple[str | None, float]:
    """Parse a ``"KIND:RATE"`` noise spec, as the command line and the benchmarks write it.

    Parameters
    ----------
    spec : str or None
        ``"symmetric:0.3"``, ``"pair:0.4"``, ...; KIND one of :data:`SPEC_KINDS`, RATE in [0, 1).
        None, ``""``, ``"none"`` and ``"clean"`` mean no noise (when ``allow_none``).
    allow_none : bool, default=True

    Returns
    -------
    (kind, rate) : (str, float), or (None, 0.0) for no noise.
    """
    from ._validation import check_option

    if spec is None or str(spec).strip().lower() in ("none", "clean", ""):
        if allow_none:
            return None, 0.0
        raise NoisylabInputError(f"noise must look like KIND:RATE, e.g. symmetric:0.3; got {spec!r}.")
    kind, sep, rate = str(spec).strip().partition(":")
    try:
        rate = float(rate)
    except ValueError:
        raise NoisylabInputError(f"noise must look like KIND:RATE, e.g. symmetric:0.3; got {spec!r}.") from None
    if not sep or not 0.0 <= rate < 1.0:
        raise NoisylabInputError(f"noise must look like KIND:RATE with a rate in [0, 1); got {spec!r}.")
    return check_option("noise kind", kind.strip(), SPEC_KINDS), rate
