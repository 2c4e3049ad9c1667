"""Batched augmentation (noisylab.torch.augment): values, determinism, no global RNG."""
import pytest

torch = pytest.importorskip("torch")

from noisylab._validation import NoisylabInputError
from noisylab.torch.augment import (
    AUGMENTATIONS,
    Augment,
    cutout,
    get_augmentation,
    random_crop,
    random_hflip,
    random_shift,
)


def gen(seed):
    return torch.Generator().manual_seed(seed)


def images(n=16, c=3, h=8, w=8):
    return torch.arange(n * c * h * w, dtype=torch.float32).reshape(n, c, h, w) + 1.0  # no zeros


OPS_2D = [
    lambda x, g: random_crop(x, 2, g),
    lambda x, g: random_crop(x, 2, g, mode="reflect"),
    lambda x, g: random_hflip(x, g),
    lambda x, g: cutout(x, 3, g),
    lambda x, g: random_shift(x, 2, g),
    lambda x, g: AUGMENTATIONS["cifar_strong"](x, g),
]


@pytest.mark.parametrize("op", OPS_2D)
def test_same_seed_same_output_different_seed_differs(op):
    x = images(h=32, w=32)  # 32x32: cutout 16 must not blank the whole image
    a, b, c = op(x, gen(0)), op(x, gen(0)), op(x, gen(1))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("op", OPS_2D)
def test_global_rng_untouched(op):
    torch.manual_seed(123)
    state, seed = torch.get_rng_state(), torch.initial_seed()
    op(images(), gen(5))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.initial_seed() == seed


def test_crop_padding_zero_is_identity():
    x = images()
    assert torch.equal(random_crop(x, 0, gen(0)), x)
    assert torch.equal(random_crop(x, 0, gen(0), mode="reflect"), x)
    assert torch.equal(random_shift(x, 0, gen(0)), x)


def test_crop_matches_hand_computed_window():
    # 1x1x3x3 image 1..9, padding 1 -> padded 5x5 with a zero border.
    x = torch.arange(1, 10, dtype=torch.float32).reshape(1, 1, 3, 3)
    expected = {  # (oy, ox) -> window of the padded image, written out by hand
        (0, 0): [[0, 0, 0], [0, 1, 2], [0, 4, 5]],
        (2, 2): [[5, 6, 0], [8, 9, 0], [0, 0, 0]],
        (0, 2): [[0, 0, 0], [2, 3, 0], [5, 6, 0]],
        (1, 1): [[1, 2, 3], [4, 5, 6], [7, 8, 9]],
        (2, 0): [[0, 4, 5], [0, 7, 8], [0, 0, 0]],
    }
    seen = set()
    for seed in range(40):
        off = torch.randint(0, 3, (1, 2), generator=gen(seed))  # the documented draw
        oy, ox = off[0].tolist()
        out = random_crop(x, 1, gen(seed))
        if (oy, ox) in expected:
            assert out[0, 0].tolist() == expected[(oy, ox)]
            seen.add((oy, ox))
    assert len(seen) >= 3


def test_crop_reflect_values():
    x = torch.arange(1, 10, dtype=torch.float32).reshape(1, 1, 3, 3)
    for seed in range(30):
        oy, ox = torch.randint(0, 3, (1, 2), generator=gen(seed))[0].tolist()
        if (oy, ox) == (0, 0):
            out = random_crop(x, 1, gen(seed), mode="reflect")
            # reflect pad of [[1,2,3],[4,5,6],[7,8,9]]: top-left window = [[5,4,5],[2,1,2],[5,4,5]]
            assert out[0, 0].tolist() == [[5, 4, 5], [2, 1, 2], [5, 4, 5]]
            return
    pytest.fail("offset (0, 0) never drawn")


def test_crop_every_example_is_a_window_of_its_padded_image():
    x = images(n=64, c=2, h=5, w=6)
    p = 2
    out = random_crop(x, p, gen(3))
    padded = torch.nn.functional.pad(x, (p, p, p, p))
    offs = torch.randint(0, 2 * p + 1, (64, 2), generator=gen(3))
    for n in range(64):
        oy, ox = offs[n].tolist()
        assert torch.equal(out[n], padded[n, :, oy:oy + 5, ox:ox + 6])
    assert len({tuple(o) for o in offs.tolist()}) > 10  # offsets really vary per example


def test_crop_1d():
    x = torch.arange(1, 2 * 2 * 7 + 1, dtype=torch.float32).reshape(2, 2, 7)
    out = random_crop(x, 3, gen(0))
    padded = torch.nn.functional.pad(x, (3, 3))
    offs = torch.randint(0, 7, (2, 1), generator=gen(0))
    for n in range(2):
        o = offs[n, 0].item()
        assert torch.equal(out[n], padded[n, :, o:o + 7])


def test_hflip_flips_exactly_the_chosen_examples():
    x = images(n=200, c=2, h=3, w=4)
    out = random_hflip(x, gen(7), p=0.5)
    chosen = torch.rand(200, generator=gen(7)) < 0.5
    assert 50 < int(chosen.sum()) < 150
    assert torch.equal(out[chosen], x[chosen].flip(-1))
    assert torch.equal(out[~chosen], x[~chosen])
    assert torch.equal(random_hflip(x, gen(0), p=0.0), x)
    assert torch.equal(random_hflip(x, gen(0), p=1.0), x.flip(-1))


def test_cutout_zeroes_exactly_the_clipped_square():
    n, h, w, size = 300, 7, 9, 4
    x = torch.ones(n, 3, h, w)
    out = cutout(x, size, gen(11))
    g = gen(11)
    cy = torch.randint(0, h, (n,), generator=g)
    cx = torch.randint(0, w, (n,), generator=g)
    clipped = 0
    for i in range(n):
        y0, x0 = cy[i].item() - size // 2, cx[i].item() - size // 2
        rows = range(max(y0, 0), min(y0 + size, h))
        cols = range(max(x0, 0), min(x0 + size, w))
        expect = torch.ones(h, w)
        expect[rows.start:rows.stop, cols.start:cols.stop] = 0
        for c in range(3):  # every channel, same square
            assert torch.equal(out[i, c], expect)
        assert int((out[i, 0] == 0).sum()) == len(rows) * len(cols)
        clipped += len(rows) * len(cols) < size * size
    assert 0 < clipped < n  # both interior and border squares were exercised


def test_cutout_zero_region_is_a_rectangle_of_at_most_size():
    x = images(n=50, c=1, h=10, w=10)
    out = cutout(x, 3, gen(2))
    for i in range(50):
        zy, zx = torch.nonzero(out[i, 0] == 0, as_tuple=True)
        hgt, wid = zy.max() - zy.min() + 1, zx.max() - zx.min() + 1
        assert len(zy) == hgt * wid and hgt <= 3 and wid <= 3
        keep = out[i, 0] != 0
        assert torch.equal(out[i, 0][keep], x[i, 0][keep])


def test_cutout_1d():
    x = torch.ones(100, 2, 12)
    out = cutout(x, 5, gen(4))
    c = torch.randint(0, 12, (100,), generator=gen(4))
    for i in range(100):
        s = c[i].item() - 2
        expect = torch.ones(12)
        expect[max(s, 0):min(s + 5, 12)] = 0
        assert torch.equal(out[i, 0], expect) and torch.equal(out[i, 1], expect)


def test_shift_moves_one_hot_signal_1d():
    n, length, m = 200, 20, 2
    x = torch.zeros(n, 1, length)
    pos = 10
    x[:, 0, pos] = 1.0
    out = random_shift(x, m, gen(9))
    s = torch.randint(-m, m + 1, (n, 1), generator=gen(9))[:, 0]
    assert set(s.tolist()) == {-2, -1, 0, 1, 2}
    for i in range(n):
        assert out[i, 0].argmax().item() == pos + s[i].item()
        assert out[i].sum().item() == 1.0


def test_shift_2d_moves_pixel_and_zero_fills():
    n, h, w, m = 100, 5, 5, 1
    x = torch.zeros(n, 1, h, w)
    x[:, 0, 0, 4] = 1.0  # top-right corner: some shifts push it out
    out = random_shift(x, m, gen(1))
    s = torch.randint(-m, m + 1, (n, 2), generator=gen(1))
    for i in range(n):
        r, c = 0 + s[i, 0].item(), 4 + s[i, 1].item()
        expect = torch.zeros(h, w)
        if 0 <= r < h and 0 <= c < w:
            expect[r, c] = 1.0
        assert torch.equal(out[i, 0], expect)


def test_augment_compose_and_presets():
    x = images(n=8, c=1, h=8, w=8)
    assert torch.equal(get_augmentation("none")(x, gen(0)), x)
    assert get_augmentation(None) is AUGMENTATIONS["none"]
    # "digits" = shift 1 with the same draws as random_shift
    assert torch.equal(get_augmentation("digits")(x, gen(0)), random_shift(x, 1, gen(0)))
    seq = torch.randn(8, 1, 40, generator=gen(1))
    assert torch.equal(get_augmentation("mnist1d")(seq, gen(2)), random_shift(seq, 2, gen(2)))
    # "cifar" = crop 4 then hflip, both from one generator in that order
    g = gen(3)
    manual = random_hflip(random_crop(x, 4, g), g)
    assert torch.equal(get_augmentation("cifar")(x, gen(3)), manual)
    aug = Augment([lambda x, generator: x * 2])
    assert torch.equal(aug(x, gen(0)), 2 * x)
    assert "random_crop(padding=4)" in repr(AUGMENTATIONS["cifar"])
    assert set(AUGMENTATIONS) == {"none", "cifar", "cifar_strong", "digits", "mnist1d"}


def test_bad_input_messages():
    x = images(n=2)
    with pytest.raises(NoisylabInputError, match="Did you mean 'cifar'"):
        get_augmentation("cifr")
    with pytest.raises(NoisylabInputError, match="torch.Generator"):
        random_crop(x, 2, 0)
    with pytest.raises(NoisylabInputError, match=r"\(N, C, H, W\)"):
        cutout(torch.ones(3, 4), 2, gen(0))
    with pytest.raises(NoisylabInputError, match="reflect padding"):
        random_crop(x, 8, gen(0), mode="reflect")
    with pytest.raises(NoisylabInputError, match="padding must be an int"):
        random_crop(x, -1, gen(0))
    with pytest.raises(NoisylabInputError, match="p must be a probability"):
        random_hflip(x, gen(0), p=1.5)
