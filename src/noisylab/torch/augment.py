"""Batched data augmentation on tensors, with explicit random generators.

Every operation takes a batch ``x`` of shape ``(N, C, H, W)`` (images) or
``(N, C, L)`` (sequences) and a :class:`torch.Generator`; all random draws come
from that generator (never torch's global RNG), are made in one call per batch
(no Python loop over examples) and are documented, so a result can be
reproduced from the seed.  Draws are made on the generator's device and moved
to ``x``'s device, so a CPU generator works for a batch on any device; the
output is on ``x``'s device with ``x``'s dtype.

There is no CPU torchvision build for the project's torch, hence these
hand-written operations (METHODS.md section 12).
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from .._validation import NoisylabInputError, check_option

__all__ = [
    "AUGMENTATIONS",
    "Augment",
    "cutout",
    "get_augmentation",
    "random_crop",
    "random_hflip",
    "random_shift",
]


def _check(x, generator, name):
    if not isinstance(x, torch.Tensor):
        raise NoisylabInputError(f"{name}: x must be a torch.Tensor; got {type(x).__name__}.")
    if x.ndim not in (3, 4):
        raise NoisylabInputError(
            f"{name}: x must have shape (N, C, H, W) or (N, C, L); got shape {tuple(x.shape)}."
        )
    if not isinstance(generator, torch.Generator):
        raise NoisylabInputError(
            f"{name}: generator must be a torch.Generator (e.g. torch.Generator().manual_seed(0)); "
            f"got {type(generator).__name__}. The global RNG is never used."
        )


def _check_int(name, value, minimum=0):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise NoisylabInputError(f"{name} must be an int >= {minimum}; got {value!r}.")
    return value


def _randint(low, high, size, generator, device):
    """``torch.randint(low, high, size)`` drawn from ``generator`` on its device, moved to ``device``."""
    return torch.randint(low, high, size, generator=generator, device=generator.device).to(device)


def _crop_at(padded, offsets, spatial):
    """Windows of size ``spatial`` of ``padded`` starting at per-example ``offsets`` (N, k)."""
    n, c = padded.shape[:2]
    dev = padded.device
    if len(spatial) == 1:
        idx = offsets[:, 0:1] + torch.arange(spatial[0], device=dev)  # (N, L)
        return padded.gather(2, idx[:, None, :].expand(n, c, spatial[0]))
    h, w = spatial
    rows = offsets[:, 0:1] + torch.arange(h, device=dev)  # (N, H)
    cols = offsets[:, 1:2] + torch.arange(w, device=dev)  # (N, W)
    ni = torch.arange(n, device=dev)[:, None, None, None]
    ci = torch.arange(c, device=dev)[None, :, None, None]
    return padded[ni, ci, rows[:, None, :, None], cols[:, None, None, :]]


def random_crop(x, padding, generator, mode="zeros"):
    """Pad each example by ``padding`` on every side and crop back to its size at a random offset.

    Parameters
    ----------
    x : Tensor (N, C, H, W) or (N, C, L)
    padding : int >= 0
    generator : torch.Generator
    mode : {"zeros", "reflect"}, default="zeros"
        Padding: zeros, or the reflection of the edge (``padding`` must then
        be smaller than each spatial size).

    Returns
    -------
    Tensor, same shape as ``x``
        ``out[n, :, i, j] = padded[n, :, i + oy[n], j + ox[n]]`` with offsets
        ``o = torch.randint(0, 2 * padding + 1, (N, k), generator=generator)``
        (``k`` = 2 spatial axes, columns (oy, ox); or 1 for sequences).  An
        offset of ``padding`` leaves the example unchanged; ``padding=0`` is
        the identity.
    """
    _check(x, generator, "random_crop")
    padding = _check_int("padding", padding)
    mode = check_option("mode", mode, ["zeros", "reflect"])
    spatial = tuple(x.shape[2:])
    if mode == "reflect" and padding >= min(spatial):
        raise NoisylabInputError(
            f"random_crop: reflect padding ({padding}) must be smaller than the spatial size {spatial}."
        )
    offsets = _randint(0, 2 * padding + 1, (x.shape[0], len(spatial)), generator, x.device)
    padded = F.pad(x, (padding,) * (2 * len(spatial)), mode="constant" if mode == "zeros" else "reflect")
    return _crop_at(padded, offsets, spatial)


def random_shift(x, max_shift, generator):
    """Shift each example by a random whole number of positions per spatial axis, filling with zeros.

    Parameters
    ----------
    x : Tensor (N, C, H, W) or (N, C, L)
    max_shift : int >= 0
    generator : torch.Generator

    Returns
    -------
    Tensor, same shape as ``x``
        ``out[n, :, i] = x[n, :, i - s[n]]`` (zero where ``i - s[n]`` is outside
        the example), per axis for images, with shifts
        ``s = torch.randint(-max_shift, max_shift + 1, (N, k), generator=generator)``
        (``k`` = 2 for images, columns (rows, columns); 1 for sequences).
        A positive shift moves the content down / right / later.
    """
    _check(x, generator, "random_shift")
    max_shift = _check_int("max_shift", max_shift)
    spatial = tuple(x.shape[2:])
    shifts = _randint(-max_shift, max_shift + 1, (x.shape[0], len(spatial)), generator, x.device)
    padded = F.pad(x, (max_shift,) * (2 * len(spatial)))
    return _crop_at(padded, max_shift - shifts, spatial)


def random_hflip(x, generator, p=0.5):
    """Flip each example along its last axis (horizontal for images) with probability ``p``.

    Parameters
    ----------
    x : Tensor (N, C, H, W) or (N, C, L)
    generator : torch.Generator
    p : float in [0, 1], default=0.5

    Returns
    -------
    Tensor, same shape as ``x``
        Example ``n`` is flipped where ``torch.rand(N, generator=generator)[n] < p``.
        For sequences this reverses time, which suits few signals.
    """
    _check(x, generator, "random_hflip")
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise NoisylabInputError(f"random_hflip: p must be a probability in [0, 1]; got {p!r}.")
    u = torch.rand(x.shape[0], generator=generator, device=generator.device).to(x.device)
    flip = (u < p).view(-1, *([1] * (x.ndim - 1)))
    return torch.where(flip, x.flip(-1), x)


def cutout(x, size, generator):
    """Set a ``size`` x ``size`` square (a ``size`` segment for sequences) to zero in every example.

    Parameters
    ----------
    x : Tensor (N, C, H, W) or (N, C, L)
    size : int >= 1
    generator : torch.Generator

    Returns
    -------
    Tensor, same shape as ``x``
        Centres ``cy = torch.randint(0, H, (N,))`` then ``cx = torch.randint(0, W, (N,))``
        (one draw ``torch.randint(0, L, (N,))`` for sequences); the zeroed rows
        are ``cy - size // 2 <= i < cy - size // 2 + size`` (likewise columns),
        clipped at the borders (DeVries & Taylor, 2017), in all channels.
    """
    _check(x, generator, "cutout")
    size = _check_int("size", size, minimum=1)
    n = x.shape[0]
    mask = None
    for axis, length in enumerate(x.shape[2:]):
        centre = _randint(0, length, (n,), generator, x.device)
        start = (centre - size // 2)[:, None]
        pos = torch.arange(length, device=x.device)[None, :]
        inside = (pos >= start) & (pos < start + size)  # (N, length)
        if mask is None:
            mask = inside if x.ndim == 3 else inside[:, :, None]
        else:
            mask = mask & inside[:, None, :]
    return x.masked_fill(mask[:, None], 0)


class Augment:
    """Apply operations in order: ``aug(x, generator)``.

    Parameters
    ----------
    ops : sequence of callables
        Each called as ``op(x, generator=generator)`` (the generator by keyword, so that
        ``functools.partial(random_crop, padding=4)`` works) and returning a tensor.
    name : str, optional
        Shown in ``repr``.
    """

    def __init__(self, ops=(), name=None):
        ops = list(ops)
        for op in ops:
            if not callable(op):
                raise NoisylabInputError(f"Augment: every op must be callable; got {op!r}.")
        self.ops = ops
        self.name = name

    def __call__(self, x, generator):
        for op in self.ops:
            x = op(x, generator=generator)
        return x

    def __repr__(self):
        def show(op):
            if isinstance(op, functools.partial):
                args = ", ".join(f"{k}={v!r}" for k, v in op.keywords.items())
                return f"{op.func.__name__}({args})"
            return getattr(op, "__name__", repr(op))

        label = f"{self.name!r}, " if self.name else ""
        return f"Augment({label}[{', '.join(show(op) for op in self.ops)}])"


P = functools.partial
#: Named augmentation presets (the CLI's ``--augment NAME``).
AUGMENTATIONS = {
    "none": Augment([], name="none"),
    "cifar": Augment([P(random_crop, padding=4), random_hflip], name="cifar"),
    "cifar_strong": Augment([P(random_crop, padding=4), random_hflip, P(cutout, size=16)], name="cifar_strong"),
    "digits": Augment([P(random_shift, max_shift=1)], name="digits"),
    "mnist1d": Augment([P(random_shift, max_shift=2)], name="mnist1d"),
}
del P


def get_augmentation(name) -> Augment:
    """The preset :data:`AUGMENTATIONS` ``[name]`` (``None`` means ``"none"``; an :class:`Augment` is returned as is).

    Raises
    ------
    NoisylabInputError
        An unknown name; the message lists the presets and suggests the closest.
    """
    if name is None:
        name = "none"
    if isinstance(name, Augment):
        return name
    return AUGMENTATIONS[check_option("augmentation", name, list(AUGMENTATIONS))]
