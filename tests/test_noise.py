"""Tests for noisylab.noise (synthetic label noise)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from noisylab._validation import NoisylabInputError
from noisylab.noise import (
    CIFAR10_MAP,
    CIFAR100_COARSE,
    DIGITS_MAP,
    NOISE_KINDS,
    NoisyLabels,
    cifar10_noise,
    cifar100_map,
    cifar100_noise,
    class_map_matrix,
    class_map_noise,
    generate_noise_matrix_from_trace,
    make_noise,
    noise_from_matrix,
    noise_matrix_is_valid,
    pair_matrix,
    pair_noise,
    symmetric_matrix,
    symmetric_noise,
    uniform_matrix,
    uniform_noise,
)

# CIFAR-100 names (cifar-100-python "meta": fine names in alphabetical order,
# coarse names in alphabetical order) and the official superclass table.
FINE_NAMES = (
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can "
    "castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin "
    "elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster "
    "man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck "
    "pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk "
    "skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger "
    "tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm"
).split()
SUPERCLASSES = {
    "aquatic_mammals": "beaver dolphin otter seal whale",
    "fish": "aquarium_fish flatfish ray shark trout",
    "flowers": "orchid poppy rose sunflower tulip",
    "food_containers": "bottle bowl can cup plate",
    "fruit_and_vegetables": "apple mushroom orange pear sweet_pepper",
    "household_electrical_devices": "clock keyboard lamp telephone television",
    "household_furniture": "bed chair couch table wardrobe",
    "insects": "bee beetle butterfly caterpillar cockroach",
    "large_carnivores": "bear leopard lion tiger wolf",
    "large_man-made_outdoor_things": "bridge castle house road skyscraper",
    "large_natural_outdoor_scenes": "cloud forest mountain plain sea",
    "large_omnivores_and_herbivores": "camel cattle chimpanzee elephant kangaroo",
    "medium_mammals": "fox porcupine possum raccoon skunk",
    "non-insect_invertebrates": "crab lobster snail spider worm",
    "people": "baby boy girl man woman",
    "reptiles": "crocodile dinosaur lizard snake turtle",
    "small_mammals": "hamster mouse rabbit shrew squirrel",
    "trees": "maple_tree oak_tree palm_tree pine_tree willow_tree",
    "vehicles_1": "bicycle bus motorcycle pickup_truck train",
    "vehicles_2": "lawn_mower rocket streetcar tank tractor",
}
COARSE_NAMES = sorted(SUPERCLASSES)


def _counts(res: NoisyLabels) -> np.ndarray:
    K = res.noise_matrix.shape[0]
    return np.bincount(res.noisy_labels * K + res.true_labels, minlength=K * K).reshape(K, K)


def _labels(n, K, seed, skew=True):
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(K, 2.0)) if skew else np.full(K, 1.0 / K)
    return rng.choice(K, size=n, p=p)


def _check_consistent(res: NoisyLabels, labels):
    """Fields agree with each other and with the input."""
    K = res.noise_matrix.shape[0]
    assert res.noisy_labels.dtype == np.int64 and res.true_labels.dtype == np.int64
    assert res.flip_mask.dtype == bool
    np.testing.assert_array_equal(res.true_labels, np.asarray(labels))
    np.testing.assert_array_equal(res.flip_mask, res.noisy_labels != res.true_labels)
    assert res.noise_rate == pytest.approx(res.flip_mask.mean(), abs=0)
    C = _counts(res)
    n_y = np.bincount(res.true_labels, minlength=K)
    expected = np.eye(K)
    expected[:, n_y > 0] = C[:, n_y > 0] / n_y[n_y > 0]
    np.testing.assert_allclose(res.transition_matrix, expected, rtol=0, atol=1e-15)
    np.testing.assert_allclose(res.transition_matrix.sum(axis=0), 1.0, atol=1e-12)


# --------------------------------------------------------------------------
# reproducibility and RNG hygiene
# --------------------------------------------------------------------------
ALL_CALLS = {
    "symmetric": lambda y, rs, ex=False: symmetric_noise(y, 0.3, exact=ex, random_state=rs),
    "uniform": lambda y, rs, ex=False: uniform_noise(y, 0.3, exact=ex, random_state=rs),
    "pair": lambda y, rs, ex=False: pair_noise(y, 0.3, exact=ex, random_state=rs),
    "cifar10": lambda y, rs, ex=False: cifar10_noise(y, 0.4, exact=ex, random_state=rs),
    "cifar100": lambda y, rs, ex=False: cifar100_noise(y * 10 + 3, 0.4, exact=ex, random_state=rs),
    "class_map": lambda y, rs, ex=False: class_map_noise(y, {0: 1, 1: 0, 5: 9}, 0.5, exact=ex, random_state=rs),
    "matrix": lambda y, rs, ex=False: noise_from_matrix(
        y, generate_noise_matrix_from_trace(10, 6, valid_noise_matrix=False, random_state=0),
        sampling="exact" if ex else "per_example", random_state=rs),
}


@pytest.mark.parametrize("exact", [False, True])
@pytest.mark.parametrize("kind", sorted(ALL_CALLS))
def test_reproducible_and_seed_dependent(kind, exact):
    y = _labels(2000, 10, 1)
    f = ALL_CALLS[kind]
    a = f(y, 7, exact)
    b = f(y, 7, exact)
    c = f(y, 8, exact)
    np.testing.assert_array_equal(a.noisy_labels, b.noisy_labels)
    assert not np.array_equal(a.noisy_labels, c.noisy_labels)
    # an int seed and a Generator built from it give the same draw
    g = f(y, np.random.default_rng(7), exact)
    np.testing.assert_array_equal(a.noisy_labels, g.noisy_labels)
    # a shared Generator advances: two successive draws differ
    rng = np.random.default_rng(3)
    assert not np.array_equal(f(y, rng, exact).noisy_labels, f(y, rng, exact).noisy_labels)
    _check_consistent(a, y * 10 + 3 if kind == "cifar100" else y)


def test_global_numpy_rng_untouched():
    np.random.seed(123)
    before = np.random.get_state()
    y = _labels(500, 10, 2)
    for f in ALL_CALLS.values():
        for rs in (None, 5):
            f(y, rs, False)
            f(y, rs, True)
    generate_noise_matrix_from_trace(10, 5, py=np.full(10, 0.1), frac_zero_noise_rates=0.3)
    generate_noise_matrix_from_trace(10, 8, valid_noise_matrix=False, random_state=1)
    for kind in NOISE_KINDS:
        kw = {"noise_matrix": symmetric_matrix(10, 0.2)} if kind == "matrix" else {"rate": 0.2}
        if kind == "class_map":
            kw["mapping"] = {1: 2}
        labels = y * 10 if kind == "cifar100" else y
        make_noise(kind, labels, **kw)
    after = np.random.get_state()
    assert before[0] == after[0]
    np.testing.assert_array_equal(before[1], after[1])
    assert before[2:] == after[2:]


def test_random_state_none_gives_fresh_draws():
    y = _labels(5000, 10, 3)
    a = symmetric_noise(y, 0.5, random_state=None)
    b = symmetric_noise(y, 0.5, random_state=None)
    assert not np.array_equal(a.noisy_labels, b.noisy_labels)


# --------------------------------------------------------------------------
# matrix builders
# --------------------------------------------------------------------------
def test_symmetric_uniform_pair_matrices_values():
    S = symmetric_matrix(4, 0.3)
    np.testing.assert_allclose(S, [[0.7, 0.1, 0.1, 0.1], [0.1, 0.7, 0.1, 0.1],
                                   [0.1, 0.1, 0.7, 0.1], [0.1, 0.1, 0.1, 0.7]])
    U = uniform_matrix(4, 0.4)
    np.testing.assert_allclose(np.diag(U), 0.7)
    np.testing.assert_allclose(U[1, 0], 0.1)
    # family B at rate r equals family A at rate r(K-1)/K
    np.testing.assert_allclose(uniform_matrix(10, 0.2), symmetric_matrix(10, 0.18))
    P = pair_matrix(3, 0.45)
    np.testing.assert_allclose(P, [[0.55, 0, 0.45], [0.45, 0.55, 0], [0, 0.45, 0.55]])
    for M in (S, U, P, symmetric_matrix(2, 1.0), pair_matrix(2, 1.0)):
        np.testing.assert_allclose(M.sum(axis=0), 1.0)


def test_class_map_matrix_values():
    M = class_map_matrix(4, {0: 2, 3: 0}, 0.25)
    expected = np.array([[0.75, 0, 0, 0.25], [0, 1, 0, 0], [0.25, 0, 1, 0], [0, 0, 0, 0.75]])
    np.testing.assert_allclose(M, expected)
    C10 = class_map_matrix(10, CIFAR10_MAP, 0.4)
    for s in range(10):
        if s in CIFAR10_MAP:
            assert C10[s, s] == pytest.approx(0.6) and C10[CIFAR10_MAP[s], s] == pytest.approx(0.4)
        else:
            np.testing.assert_array_equal(C10[:, s], np.eye(10)[s])


def test_constants():
    assert dict(CIFAR10_MAP) == {9: 1, 2: 0, 3: 5, 5: 3, 4: 7}
    assert dict(DIGITS_MAP) == {7: 1, 3: 8, 5: 6, 4: 9, 2: 7}
    with pytest.raises(TypeError):
        CIFAR10_MAP[0] = 1  # read-only
    with pytest.raises(ValueError):
        CIFAR100_COARSE[0] = 1  # read-only


def test_cifar100_coarse_array():
    assert CIFAR100_COARSE.shape == (100,)
    np.testing.assert_array_equal(np.bincount(CIFAR100_COARSE), np.full(20, 5))
    assert len(FINE_NAMES) == 100 and FINE_NAMES == sorted(FINE_NAMES)
    expected = np.empty(100, dtype=int)
    for c, members in SUPERCLASSES.items():
        for m in members.split():
            expected[FINE_NAMES.index(m)] = COARSE_NAMES.index(c)
    np.testing.assert_array_equal(CIFAR100_COARSE, expected)
    # spot checks
    assert COARSE_NAMES[CIFAR100_COARSE[FINE_NAMES.index("apple")]] == "fruit_and_vegetables"
    assert CIFAR100_COARSE[0] == 4
    assert COARSE_NAMES[CIFAR100_COARSE[19]] == "large_omnivores_and_herbivores" and FINE_NAMES[19] == "cattle"
    assert CIFAR100_COARSE[19] == 11
    assert COARSE_NAMES[CIFAR100_COARSE[FINE_NAMES.index("whale")]] == "aquatic_mammals"
    assert COARSE_NAMES[CIFAR100_COARSE[FINE_NAMES.index("tractor")]] == "vehicles_2"


def test_cifar100_map_cycles_within_superclass():
    m = cifar100_map()
    assert sorted(m) == list(range(100))
    assert sorted(m.values()) == list(range(100))  # a permutation
    for f, t in m.items():
        assert f != t and CIFAR100_COARSE[f] == CIFAR100_COARSE[t]
    # aquatic mammals: beaver(4) dolphin(30) otter(55) seal(72) whale(95)
    assert [m[4], m[30], m[55], m[72], m[95]] == [30, 55, 72, 95, 4]
    # each superclass is a single 5-cycle
    for g in range(20):
        start = int(np.flatnonzero(CIFAR100_COARSE == g)[0])
        cyc, x = [start], m[start]
        while x != start:
            cyc.append(x)
            x = m[x]
        assert len(cyc) == 5
    # custom coarse: singleton groups are left out
    assert cifar100_map([0, 0, 1, 2, 2, 2]) == {0: 1, 1: 0, 3: 4, 4: 5, 5: 3}


# --------------------------------------------------------------------------
# exact sampling
# --------------------------------------------------------------------------
def _trace_matrix(K):
    return generate_noise_matrix_from_trace(K, 0.6 * K, valid_noise_matrix=False,
                                            frac_zero_noise_rates=0.3, random_state=K)


EXACT_KINDS = {
    # kind: (K, matrix builder(rate), call(labels, rate, seed))
    "symmetric": (7, lambda r: symmetric_matrix(7, r),
                  lambda y, r, s: symmetric_noise(y, r, n_classes=7, exact=True, random_state=s)),
    "uniform": (7, lambda r: uniform_matrix(7, r),
                lambda y, r, s: uniform_noise(y, r, n_classes=7, exact=True, random_state=s)),
    "pair": (5, lambda r: pair_matrix(5, r),
             lambda y, r, s: pair_noise(y, r, n_classes=5, exact=True, random_state=s)),
    "cifar10": (10, lambda r: class_map_matrix(10, CIFAR10_MAP, r),
                lambda y, r, s: cifar10_noise(y, r, exact=True, random_state=s)),
    "cifar100": (100, lambda r: class_map_matrix(100, cifar100_map(), r),
                 lambda y, r, s: cifar100_noise(y, r, exact=True, random_state=s)),
    "user_map": (6, lambda r: class_map_matrix(6, {0: 1, 1: 2, 4: 0, 5: 0}, r),
                 lambda y, r, s: class_map_noise(y, {0: 1, 1: 2, 4: 0, 5: 0}, r, n_classes=6,
                                                 exact=True, random_state=s)),
    "trace_matrix": (8, lambda r: _trace_matrix(8),
                     lambda y, r, s: noise_from_matrix(y, _trace_matrix(8), sampling="exact", random_state=s)),
}


def _assert_exact(res, T, y):
    K = T.shape[0]
    n_y = np.bincount(y, minlength=K)
    C = _counts(res)
    target = T * n_y
    # every cell is floor or ceil of its expected count
    assert np.all(np.abs(C - target) < 1 + 1e-9)
    # every class's changed count is within one of its expectation
    changed_y = n_y - np.diag(C)
    exp_y = n_y * (1 - np.diag(T))
    assert np.all(np.abs(changed_y - exp_y) < 1 + 1e-9)
    # total changed = round(expected) (within one half, i.e. either rounding at .5)
    expected = float(np.sum(exp_y))
    assert abs(res.flip_mask.sum() - expected) <= 0.5 + 1e-9
    assert res.noise_rate == pytest.approx(res.flip_mask.sum() / y.size)


@pytest.mark.parametrize("n", [1, 2, 7, 64, 999, 4000])
@pytest.mark.parametrize("kind", sorted(EXACT_KINDS))
def test_exact_mode_changed_count(kind, n):
    K, build, call = EXACT_KINDS[kind]
    y = _labels(n, K, seed=n + K)
    for i, rate in enumerate([0.0, 0.05, 1 / 3, 0.5, 0.8, 1.0]):
        res = call(y, rate, 100 + i)
        _assert_exact(res, build(rate), y)
        _check_consistent(res, y)


def test_uniform_exact_count_formula():
    for n, r, K in [(1000, 0.2, 10), (777, 0.37, 3), (50000, 0.8, 100), (13, 0.5, 2)]:
        y = _labels(n, K, seed=n)
        res = uniform_noise(y, r, n_classes=K, exact=True, random_state=0)
        assert abs(res.flip_mask.sum() - n * r * (K - 1) / K) <= 0.5 + 1e-9


@settings(max_examples=60, deadline=None)
@given(K=st.integers(2, 12), n=st.integers(1, 400), seed=st.integers(0, 2**32 - 1),
       sparsity=st.floats(0, 0.9))
@example(K=2, n=1, seed=0, sparsity=0.0)   # regression: Fortran-ordered matrix lost the rounded-up cell
@example(K=4, n=4, seed=0, sparsity=0.0)
def test_exact_mode_random_matrices(K, n, seed, sparsity):
    rng = np.random.default_rng(seed)
    T = rng.dirichlet(np.ones(K), size=K).T          # columns are distributions
    T[rng.random((K, K)) < sparsity] = 0.0
    T[np.arange(K), np.arange(K)] += 1e-3
    T /= T.sum(axis=0, keepdims=True)
    y = rng.integers(0, K, size=n)
    res = noise_from_matrix(y, T, sampling="exact", random_state=seed)
    _assert_exact(res, T, y)
    _check_consistent(res, y)
    C = _counts(res)
    assert np.all(C[T == 0] == 0)


def test_exact_mode_fortran_ordered_matrix():
    T = np.asfortranarray([[0.2, 0.9], [0.8, 0.1]])
    res = noise_from_matrix([1], T, sampling="exact", random_state=0)
    np.testing.assert_array_equal(res.noisy_labels, [0])     # 0.9 of one example rounds up to 1


def test_exact_mode_randomises_which_examples_flip():
    y = np.zeros(1000, dtype=int)
    a = symmetric_noise(y, 0.5, n_classes=2, exact=True, random_state=1)
    b = symmetric_noise(y, 0.5, n_classes=2, exact=True, random_state=2)
    assert a.flip_mask.sum() == b.flip_mask.sum() == 500
    assert not np.array_equal(a.flip_mask, b.flip_mask)
    assert 150 < a.flip_mask[:500].sum() < 350  # not the first 500


def test_exact_mode_ties_are_not_biased_to_low_classes():
    # 5 examples per class and rate 0.1: every class expects 0.5 changed labels, so the
    # 0.5 remainders tie across all classes; 5 of the 10 classes get one flip, chosen at random.
    y = np.repeat(np.arange(10), 5)
    hits = np.zeros(10)
    for s in range(200):
        res = symmetric_noise(y, 0.1, exact=True, random_state=s)
        assert res.flip_mask.sum() == 5
        hits += np.bincount(y[res.flip_mask], minlength=10)
    assert hits.min() > 50  # every class flips sometimes (expected 100 each)


# --------------------------------------------------------------------------
# per-example sampling
# --------------------------------------------------------------------------
PER_EXAMPLE = {
    "symmetric": (lambda y: symmetric_noise(y, 0.4, random_state=11), lambda: symmetric_matrix(10, 0.4)),
    "uniform": (lambda y: uniform_noise(y, 0.6, random_state=12), lambda: uniform_matrix(10, 0.6)),
    "pair": (lambda y: pair_noise(y, 0.45, random_state=13), lambda: pair_matrix(10, 0.45)),
    "cifar10": (lambda y: cifar10_noise(y, 0.3, random_state=14), lambda: class_map_matrix(10, CIFAR10_MAP, 0.3)),
    "trace": (lambda y: noise_from_matrix(y, _trace_matrix(10), random_state=15), lambda: _trace_matrix(10)),
}


@pytest.mark.parametrize("kind", sorted(PER_EXAMPLE))
def test_per_example_matches_requested_matrix(kind):
    y = _labels(200_000, 10, seed=5)
    call, build = PER_EXAMPLE[kind]
    res = call(y)
    T = build()
    np.testing.assert_allclose(res.noise_matrix, T, atol=1e-15)
    n_y = np.bincount(y, minlength=10)
    sigma = np.sqrt(T * (1 - T) / n_y[None, :])
    assert np.all(np.abs(res.transition_matrix - T) <= 5 * sigma + 1e-12)
    exp_rate = float(np.sum(n_y * (1 - np.diag(T)))) / y.size
    assert abs(res.noise_rate - exp_rate) <= 5 * math.sqrt(exp_rate * (1 - exp_rate) / y.size)
    _check_consistent(res, y)


def test_per_example_is_not_exact():
    # independent draws fluctuate around the expectation: over several seeds the
    # changed count is not always the rounded expectation
    y = _labels(10_000, 10, seed=9)
    counts = {symmetric_noise(y, 0.3, random_state=s).flip_mask.sum() for s in range(8)}
    assert len(counts) > 1


def test_symmetric_never_maps_to_same_class_and_spreads_uniformly():
    y = _labels(100_000, 5, seed=4, skew=False)
    res = symmetric_noise(y, 1.0, random_state=0)
    assert res.flip_mask.all()
    C = _counts(res)
    assert np.all(np.diag(C) == 0)
    n_y = np.bincount(y)
    # off-diagonal ~ n_y / 4 each
    for yy in range(5):
        col = np.delete(C[:, yy], yy)
        assert np.all(np.abs(col - n_y[yy] / 4) < 5 * math.sqrt(n_y[yy] * 0.25 * 0.75))


def test_uniform_changed_fraction():
    y = _labels(200_000, 4, seed=8, skew=False)
    r = 0.8
    res = uniform_noise(y, r, random_state=1)
    p = r * 3 / 4
    assert abs(res.noise_rate - p) < 5 * math.sqrt(p * (1 - p) / y.size)
    np.testing.assert_allclose(np.diag(res.transition_matrix), 1 - p, atol=0.01)


def test_pair_only_next_class():
    y = _labels(50_000, 6, seed=2)
    res = pair_noise(y, 0.45, random_state=3)
    assert np.all((res.noisy_labels == y) | (res.noisy_labels == (y + 1) % 6))
    assert abs(res.noise_rate - 0.45) < 0.01
    np.testing.assert_array_equal(pair_noise(y, 1.0, random_state=0).noisy_labels, (y + 1) % 6)


def test_cifar10_map_behaviour():
    y = _labels(50_000, 10, seed=6, skew=False)
    res = cifar10_noise(y, 0.4, random_state=0)
    untouched = ~np.isin(y, list(CIFAR10_MAP))
    assert not res.flip_mask[untouched].any()
    for s, t in CIFAR10_MAP.items():
        m = (y == s) & res.flip_mask
        assert np.all(res.noisy_labels[m] == t)
        assert abs(m.sum() / (y == s).sum() - 0.4) < 0.05
    assert abs(res.noise_rate - 0.2) < 0.01   # about rate / 2 on balanced data
    full = cifar10_noise(y, 1.0, exact=True, random_state=1)
    mapped = np.array([CIFAR10_MAP.get(c, c) for c in range(10)])
    np.testing.assert_array_equal(full.noisy_labels, mapped[y])


def test_cifar100_flips_stay_in_superclass_and_follow_cycle():
    y = np.repeat(np.arange(100), 50)
    res = cifar100_noise(y, 0.5, random_state=0)
    m = cifar100_map()
    nxt = np.array([m[c] for c in range(100)])
    np.testing.assert_array_equal(CIFAR100_COARSE[res.noisy_labels], CIFAR100_COARSE[y])
    np.testing.assert_array_equal(res.noisy_labels[res.flip_mask], nxt[y[res.flip_mask]])
    assert abs(res.noise_rate - 0.5) < 0.03
    full = cifar100_noise(y, 1.0, random_state=0)
    np.testing.assert_array_equal(full.noisy_labels, nxt[y])


def test_digits_and_class_map_via_make_noise():
    y = np.repeat(np.arange(10), 20)
    res = make_noise("digits", y, 1.0, random_state=0)
    mapped = np.array([DIGITS_MAP.get(c, c) for c in range(10)])
    np.testing.assert_array_equal(res.noisy_labels, mapped[y])
    # digits works even when class 9 is absent from the labels (K = 10)
    res = make_noise("digits", y[y < 8], 1.0, random_state=0)
    assert res.noise_matrix.shape == (10, 10) and res.noisy_labels.max() == 9
    res = make_noise("class_map", y, 0.5, mapping={0: 1}, exact=True, random_state=0)
    assert res.flip_mask.sum() == 10 and np.all(res.noisy_labels[res.flip_mask] == 1)
    res = make_noise("matrix", y, noise_matrix=pair_matrix(10, 1.0), random_state=0)
    np.testing.assert_array_equal(res.noisy_labels, (y + 1) % 10)


@pytest.mark.parametrize("kind", NOISE_KINDS)
def test_make_noise_matches_direct_calls(kind):
    y = _labels(3000, 10, seed=0)
    if kind == "matrix":
        T = _trace_matrix(10)
        a = make_noise(kind, y, noise_matrix=T, exact=True, random_state=4)
        b = noise_from_matrix(y, T, sampling="exact", random_state=4)
    elif kind == "class_map":
        a = make_noise(kind, y, 0.3, mapping={3: 4}, random_state=4)
        b = class_map_noise(y, {3: 4}, 0.3, random_state=4)
    elif kind == "digits":
        a = make_noise(kind, y, 0.3, random_state=4)
        b = class_map_noise(y, DIGITS_MAP, 0.3, n_classes=10, random_state=4)
    elif kind == "cifar100":
        a = make_noise(kind, y * 10, 0.3, random_state=4)
        b = cifar100_noise(y * 10, 0.3, random_state=4)
    else:
        fn = {"symmetric": symmetric_noise, "uniform": uniform_noise, "pair": pair_noise,
              "cifar10": cifar10_noise}[kind]
        a = make_noise(kind, y, 0.3, random_state=4)
        b = fn(y, 0.3, random_state=4)
    np.testing.assert_array_equal(a.noisy_labels, b.noisy_labels)
    np.testing.assert_array_equal(a.noise_matrix, b.noise_matrix)


# --------------------------------------------------------------------------
# realised fields on a hand-computed case
# --------------------------------------------------------------------------
def test_realised_fields_hand_computed():
    y = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    T = np.array([[0.5, 0.0, 0.0],
                  [0.25, 0.0, 0.0],
                  [0.25, 1.0, 1.0]])
    for sampling in ("exact", "per_example"):
        res = noise_from_matrix(y, T, sampling=sampling, random_state=0)
        if sampling == "exact":
            # class 0: 2 stay, 1 -> 1, 1 -> 2; class 1: all -> 2; class 2 stays
            assert sorted(res.noisy_labels[:4].tolist()) == [0, 0, 1, 2]
            np.testing.assert_allclose(res.transition_matrix, T)
            assert res.noise_rate == 0.5
            assert res.flip_mask.sum() == 4
        np.testing.assert_array_equal(res.noisy_labels[4:], [2, 2, 2, 2])
        np.testing.assert_array_equal(res.true_labels, y)
        np.testing.assert_array_equal(res.noise_matrix, T)
        _check_consistent(res, y)
    # explicit hand computation of the realised matrix with a deterministic map
    y = np.array([0, 0, 1, 1, 1, 3])
    res = pair_noise(y, 1.0, n_classes=4, random_state=0)
    np.testing.assert_array_equal(res.noisy_labels, [1, 1, 2, 2, 2, 0])
    expected = np.array([[0, 0, 0, 1],
                         [1, 0, 0, 0],
                         [0, 1, 1, 0],   # class 2 absent -> identity column
                         [0, 0, 0, 0]], dtype=float)
    np.testing.assert_array_equal(res.transition_matrix, expected)
    assert res.noise_rate == 1.0 and res.n_flipped == 6 and res.n_classes == 4
    # input is copied, not aliased
    y2 = np.array([0, 1, 1, 0])
    res = symmetric_noise(y2, 0.5, random_state=0)
    y2[:] = 1
    np.testing.assert_array_equal(res.true_labels, [0, 1, 1, 0])


def test_summary_and_repr():
    res = symmetric_noise(np.repeat(np.arange(4), 25), 0.2, exact=True, random_state=0)
    s = res.summary()
    assert "n=100" in s and "n_classes=4" in s and "changed=20" in s and "20.00%" in s
    assert repr(res) == s and len(s) < 200
    import dataclasses

    with pytest.raises(dataclasses.FrozenInstanceError):
        res.noise_rate = 0.0  # frozen


# --------------------------------------------------------------------------
# generate_noise_matrix_from_trace / noise_matrix_is_valid
# --------------------------------------------------------------------------
@pytest.mark.parametrize("K,trace,frac,valid", [
    (10, 8, 0.0, False), (10, 6, 0.4, False), (10, 3, 0.6, False), (10, 1, 0.2, False),
    (10, 8, 0.2, True), (10, 4, 0.4, True), (5, 2.5, 0.5, True), (20, 12, 0.3, True),
    (3, 1.5, 0.5, True), (2, 1.2, 0.0, True), (10, 9.9, 0.7, False),
])
def test_generate_noise_matrix_from_trace_properties(K, trace, frac, valid):
    py = np.random.default_rng(K).dirichlet(np.full(K, 5.0)) if (valid and K > 2) else None
    T = generate_noise_matrix_from_trace(K, trace, py=py, valid_noise_matrix=valid,
                                         frac_zero_noise_rates=frac, random_state=42)
    assert T.shape == (K, K)
    assert np.all(T >= 0) and np.all(T <= 1)
    np.testing.assert_allclose(T.sum(axis=0), 1.0, atol=1e-12)
    assert abs(np.trace(T) - trace) < 1e-9
    d = np.diag(T)
    assert np.all(d >= 1e-5 - 1e-15) and np.all(d < 1.0)
    off = ~np.eye(K, dtype=bool)
    zeros = (T == 0) & off
    assert zeros.sum() == int(math.floor(round(K * (K - 1) * frac, 9)))
    assert zeros.sum(axis=0).max() <= K - 2
    if valid:
        assert noise_matrix_is_valid(T, py)
    # reproducible / seed-dependent
    T2 = generate_noise_matrix_from_trace(K, trace, py=py, valid_noise_matrix=valid,
                                          frac_zero_noise_rates=frac, random_state=42)
    np.testing.assert_array_equal(T, T2)
    T3 = generate_noise_matrix_from_trace(K, trace, py=py, valid_noise_matrix=valid,
                                          frac_zero_noise_rates=frac, random_state=43)
    assert not np.array_equal(T, T3)


def test_generate_trace_cl_paper_shapes():
    # CL setting: K=10, trace 8 (20% noise), sparsity 0.4 -> 36 zeros; float product 90*0.7 -> 63
    T = generate_noise_matrix_from_trace(10, 8, valid_noise_matrix=False, frac_zero_noise_rates=0.4,
                                         random_state=0)
    assert ((T == 0) & ~np.eye(10, dtype=bool)).sum() == 36
    T = generate_noise_matrix_from_trace(10, 5, valid_noise_matrix=False, frac_zero_noise_rates=0.7,
                                         random_state=0)
    assert ((T == 0) & ~np.eye(10, dtype=bool)).sum() == 63


def test_generate_trace_diagonal_distribution():
    # the diagonal is exchangeable: mean of each entry is trace / K; per-class rates vary
    D = np.array([np.diag(generate_noise_matrix_from_trace(10, 8, valid_noise_matrix=False, random_state=s))
                  for s in range(300)])
    assert abs(D.mean() - 0.8) < 1e-9
    np.testing.assert_allclose(D.mean(axis=0), 0.8, atol=0.04)
    assert D.max() < 1.0 and D.min() < 0.6   # spread like the CL paper (0.53..0.97)


def test_generate_trace_bounds():
    T = generate_noise_matrix_from_trace(4, 2.4, valid_noise_matrix=False, min_noise_rate=0.05,
                                         random_state=0)
    off = T[~np.eye(4, dtype=bool)]
    assert off.min() >= 0.05
    T = generate_noise_matrix_from_trace(6, 3.0, valid_noise_matrix=False, max_trace_prob=0.6,
                                         min_trace_prob=0.4, random_state=1)
    assert np.all(np.diag(T) <= 0.6 + 1e-12) and np.all(np.diag(T) >= 0.4 - 1e-12)
    T = generate_noise_matrix_from_trace(5, 4.0, valid_noise_matrix=False, max_noise_rate=0.1,
                                         random_state=2)
    assert T[~np.eye(5, dtype=bool)].max() <= 0.1 + 1e-12


def test_generate_trace_errors():
    with pytest.raises(NoisylabInputError, match="trace > 1"):
        generate_noise_matrix_from_trace(5, 1.0, py=np.full(5, 0.2))
    with pytest.raises(NoisylabInputError, match="py"):
        generate_noise_matrix_from_trace(5, 3.0)
    with pytest.raises(NoisylabInputError, match="py > 0"):
        generate_noise_matrix_from_trace(3, 2.0, py=[0.5, 0.5, 0.0])
    with pytest.raises(NoisylabInputError, match="K-2"):
        generate_noise_matrix_from_trace(5, 3.0, valid_noise_matrix=False, frac_zero_noise_rates=0.8)
    with pytest.raises(NoisylabInputError, match="trace"):
        generate_noise_matrix_from_trace(5, 5.5, valid_noise_matrix=False)
    with pytest.raises(NoisylabInputError, match="unreachable"):
        generate_noise_matrix_from_trace(5, 4.0, valid_noise_matrix=False, max_trace_prob=0.5)
    with pytest.raises(NoisylabInputError, match="max_iter"):
        generate_noise_matrix_from_trace(10, 1.01, py=np.full(10, 0.1), max_iter=3, random_state=0)
    with pytest.raises(NoisylabInputError, match="n_classes"):
        generate_noise_matrix_from_trace(1, 1.0)
    # K = 2 needs no prior
    T = generate_noise_matrix_from_trace(2, 1.5, random_state=0)
    assert noise_matrix_is_valid(T)


def test_noise_matrix_is_valid_hand_made():
    assert noise_matrix_is_valid(np.eye(3), [0.2, 0.3, 0.5])
    assert noise_matrix_is_valid([[0.9, 0.1], [0.1, 0.9]], [0.5, 0.5])
    assert not noise_matrix_is_valid([[0.4, 0.6], [0.6, 0.4]], [0.5, 0.5])   # trace 0.8
    assert noise_matrix_is_valid(symmetric_matrix(10, 0.85), None)            # trace 1.5
    assert not noise_matrix_is_valid(symmetric_matrix(10, 0.9), None)         # trace 1.0 (not > 1)
    # trace > 1 but class 0 is not learnable: p(noisy=0) = 13/30 > T[0,0] = 0.3
    bad = np.array([[0.3, 0.5, 0.5], [0.35, 0.5, 0.0], [0.35, 0.0, 0.5]])
    assert not noise_matrix_is_valid(bad, np.full(3, 1 / 3))
    # validity depends on py
    T = np.array([[0.6, 0.7, 0.0], [0.2, 0.3, 0.0], [0.2, 0.0, 1.0]])
    assert noise_matrix_is_valid(T, np.full(3, 1 / 3))
    assert not noise_matrix_is_valid(T, [0.1, 0.8, 0.1])    # p(noisy=0) = 0.62 > 0.6
    # a class with zero prior is not learnable
    assert not noise_matrix_is_valid(np.eye(3), [0.5, 0.5, 0.0])


# --------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------
@pytest.mark.parametrize("rate", [-0.1, 1.5, float("nan"), "0.2", None])
def test_bad_rate(rate):
    y = [0, 1, 2, 1]
    for f in (symmetric_noise, uniform_noise, pair_noise, cifar10_noise):
        with pytest.raises(NoisylabInputError, match="rate"):
            f(y, rate)
    with pytest.raises(NoisylabInputError, match="rate"):
        make_noise("symmetric", y, rate)
    if rate is not None:
        with pytest.raises(NoisylabInputError, match="rate"):
            symmetric_matrix(3, rate)


def test_bad_rate_message_content():
    with pytest.raises(NoisylabInputError, match=r"\[0.0, 1.0\].*1.5"):
        symmetric_noise([0, 1], 1.5)


def test_labels_out_of_range():
    with pytest.raises(NoisylabInputError, match=r"class index 5.*n_classes=3"):
        symmetric_noise([0, 1, 5], 0.1, n_classes=3)
    with pytest.raises(NoisylabInputError, match=r"class index 10.*n_classes=10"):
        cifar10_noise([0, 10], 0.1)
    with pytest.raises(NoisylabInputError, match=r"class index 2.*noise_matrix.shape\[0\]=2"):
        noise_from_matrix([0, 2], np.eye(2))
    with pytest.raises(NoisylabInputError, match=">= 0"):
        symmetric_noise([0, -1, 1], 0.1)
    with pytest.raises(NoisylabInputError, match="whole numbers"):
        symmetric_noise([0, 1.5], 0.1)
    with pytest.raises(NoisylabInputError, match="class index 100"):
        cifar100_noise([0, 100], 0.1)


def test_empty_labels():
    for call in (lambda: symmetric_noise([], 0.1, n_classes=3),
                 lambda: noise_from_matrix(np.array([], dtype=int), np.eye(2)),
                 lambda: make_noise("pair", [], 0.2, n_classes=2)):
        with pytest.raises(NoisylabInputError, match="empty"):
            call()


def test_too_few_classes():
    with pytest.raises(NoisylabInputError, match="n_classes"):
        symmetric_noise([0, 0, 0], 0.1)
    with pytest.raises(NoisylabInputError, match="n_classes"):
        symmetric_matrix(1, 0.1)
    # with n_classes given it works
    res = symmetric_noise([0, 0, 0], 1.0, n_classes=2, random_state=0)
    np.testing.assert_array_equal(res.noisy_labels, [1, 1, 1])


def test_bad_matrices():
    y = [0, 1, 0]
    with pytest.raises(NoisylabInputError, match=r"column-stochastic.*column 1 sums to 0.9"):
        noise_from_matrix(y, [[0.5, 0.5], [0.5, 0.4]])
    with pytest.raises(NoisylabInputError, match="transpose"):
        noise_from_matrix(y, [[0.9, 0.1], [0.5, 0.5]])
    with pytest.raises(NoisylabInputError, match=r"square.*\(2, 3\)"):
        noise_from_matrix(y, np.full((2, 3), 0.5))
    with pytest.raises(NoisylabInputError, match="square"):
        noise_from_matrix(y, [0.5, 0.5])
    with pytest.raises(NoisylabInputError, match=">= 0"):
        noise_from_matrix(y, [[1.2, 0.0], [-0.2, 1.0]])
    with pytest.raises(NoisylabInputError, match="finite"):
        noise_from_matrix(y, [[np.nan, 0.0], [1.0, 1.0]])
    with pytest.raises(NoisylabInputError, match="numeric"):
        noise_from_matrix(y, [["a", "b"], ["c", "d"]])
    with pytest.raises(NoisylabInputError, match=r"shape \(3, 3\)"):
        make_noise("matrix", y, noise_matrix=np.eye(2), n_classes=3)
    with pytest.raises(NoisylabInputError, match="column-stochastic"):
        noise_matrix_is_valid([[0.5, 0.5], [0.4, 0.5]], [0.5, 0.5])
    with pytest.raises(NoisylabInputError, match="py"):
        noise_matrix_is_valid(np.eye(2), [0.2, 0.2])
    # tiny rounding is accepted and renormalised
    res = noise_from_matrix(y, [[0.7 + 1e-9, 0.0], [0.3, 1.0]], random_state=0)
    np.testing.assert_allclose(res.noise_matrix.sum(axis=0), 1.0, atol=1e-15)


def test_bad_mappings():
    y = [0, 1, 2, 3]
    with pytest.raises(NoisylabInputError, match="itself"):
        class_map_noise(y, {1: 1}, 0.2)
    with pytest.raises(NoisylabInputError, match=r"class 7, outside 0..3.*n_classes"):
        class_map_noise(y, {1: 7}, 0.2)
    with pytest.raises(NoisylabInputError, match="dict"):
        class_map_noise(y, [(1, 2)], 0.2)
    with pytest.raises(NoisylabInputError, match="int"):
        class_map_matrix(4, {1: "2"}, 0.2)
    # n_classes makes room for the target
    res = class_map_noise(y, {1: 7}, 1.0, n_classes=8, random_state=0)
    np.testing.assert_array_equal(res.noisy_labels, [0, 7, 2, 3])


def test_unknown_kind_and_option_suggestions():
    with pytest.raises(NoisylabInputError, match="Did you mean 'symmetric'"):
        make_noise("symetric", [0, 1], 0.2)
    with pytest.raises(NoisylabInputError, match="Did you mean 'cifar10'"):
        make_noise("cifar_10", [0, 1], 0.2)
    with pytest.raises(NoisylabInputError, match="Did you mean 'exact'"):
        noise_from_matrix([0, 1], np.eye(2), sampling="exct")


def test_make_noise_argument_errors():
    y = [0, 1, 2]
    with pytest.raises(NoisylabInputError, match="rate is required"):
        make_noise("pair", y)
    with pytest.raises(NoisylabInputError, match="noise_matrix"):
        make_noise("matrix", y)
    with pytest.raises(NoisylabInputError, match="rate is not used"):
        make_noise("matrix", y, 0.2, noise_matrix=np.eye(3))
    with pytest.raises(NoisylabInputError, match="mapping is only used"):
        make_noise("symmetric", y, 0.2, mapping={0: 1})
    with pytest.raises(NoisylabInputError, match="noise_matrix is only used"):
        make_noise("pair", y, 0.2, noise_matrix=np.eye(3))
    with pytest.raises(NoisylabInputError, match="needs mapping"):
        make_noise("class_map", y, 0.2)
    with pytest.raises(NoisylabInputError, match="n_classes=10"):
        make_noise("cifar10", y, 0.2, n_classes=12)


def test_other_bad_arguments():
    with pytest.raises(NoisylabInputError, match="exact"):
        symmetric_noise([0, 1], 0.2, exact="yes")
    with pytest.raises(NoisylabInputError, match="random_state"):
        symmetric_noise([0, 1], 0.2, random_state="seed")
    with pytest.raises(NoisylabInputError, match="n_classes"):
        symmetric_noise([0, 1], 0.2, n_classes=2.5)
    with pytest.raises(NoisylabInputError, match="2-D|1-D"):
        symmetric_noise([[0, 1]], 0.2)


def test_floor_sampling_reproduces_the_cl_papers_label_files(shared_data):
    # the paper's noisy labels have exactly floor(T[s, y] * n_y) examples in every off-diagonal cell
    files = sorted((shared_data / "cl-cifar10").glob("sparsity*_noise*.npz"))
    assert len(files) == 7
    for f in files:
        with np.load(f) as z:
            T, true, noisy = z["noise_matrix"], z["true_labels"], z["noisy_labels"]
        res = noise_from_matrix(true, T, sampling="floor", random_state=0)  # noise-0's T has -3e-7 entries
        K = T.shape[0]
        paper, ours = np.zeros((K, K), int), np.zeros((K, K), int)
        np.add.at(paper, (noisy, true), 1)
        np.add.at(ours, (res.noisy_labels, true), 1)
        np.testing.assert_array_equal(ours, paper, err_msg=f.name)


def test_floor_counts_and_float_rounding_negatives():
    T = np.array([[0.7, 0.25], [0.3, 0.75]])
    y = np.repeat([0, 1], [7, 9])
    res = noise_from_matrix(y, T, sampling="floor", random_state=1)
    # floor(0.3 * 7) = 2 of class 0 -> 1, floor(0.25 * 9) = 2 of class 1 -> 0 (exact would give 2 and 2 or 3)
    assert int(np.sum(res.noisy_labels[y == 0] == 1)) == 2 and int(np.sum(res.noisy_labels[y == 1] == 0)) == 2
    nearly = np.array([[1.0 + 2e-7, 0.5], [-2e-7, 0.5]])  # float rounding, as in stored matrices
    assert noise_from_matrix(y, nearly, random_state=0).noise_matrix[1, 0] == 0.0
    with pytest.raises(NoisylabInputError, match="must be >= 0"):
        noise_from_matrix(y, np.array([[1.01, 0.5], [-0.01, 0.5]]))
