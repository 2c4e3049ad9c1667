"""Classifier networks for the PyTorch layer, from a 2-layer MLP to PreAct-ResNet-18.

Every model is a :class:`torch.nn.Module` built as ``Model(input_shape, n_classes, ...)`` where
``input_shape`` is the shape of one example (no batch dimension).  All of them share one
interface (:class:`BaseClassifier`):

* ``model(x)`` returns logits of shape ``(N, n_classes)``;
* ``model.features(x)`` returns the penultimate embedding of shape ``(N, model.feature_dim)``
  (the input of the final linear layer, as MentorMix / IEG / feature-based detectors need);
* ``model(x, return_features=True)`` returns ``(logits, features)`` from a single pass;
* ``model.head`` is the final :class:`torch.nn.Linear`.

Use :func:`make_model` to build one by name with reproducible weights and
:func:`default_model_for` to pick a sensible architecture from a data shape.

Registered names (:data:`MODELS`) and intended data:

* ``"mlp"`` -- :class:`MLP`: feature vectors, flat 8x8 digits (METHODS section 12 default);
* ``"cnn1d"`` -- :class:`CNN1D`: sequences ``(C, L)``, e.g. MNIST-1D ``(1, 40)``;
* ``"small_cnn"`` -- :class:`SmallCNN`: small images, e.g. digits ``(1, 8, 8)``;
* ``"coteaching_cnn"`` -- :class:`CoteachingCNN`: Co-teaching's 9-layer CNN, CIFAR ``(3, 32, 32)``;
* ``"resnet32"`` -- :class:`ResNet32`: CIFAR ResNet-32 with option-A shortcuts (as in AUM);
* ``"preact_resnet18"`` -- :class:`PreActResNet18`: CIFAR-sized images.

Through :func:`make_model` the initial weights come only from its ``random_state`` (the
global torch RNG is neither read nor changed); see its Notes.  The one exception: a
``make_model`` call without a seed made while a :class:`~noisylab.torch.trainer.Trainer` builds
its model(s) draws its seed from the global torch RNG, which the trainer has seeded from its
``random_state``.  Calling a class directly uses the global torch RNG, as any ``torch.nn`` layer
does.
"""
from __future__ import annotations

import contextlib
import contextvars
import inspect
import math
import numbers
import secrets
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from noisylab._validation import NoisylabInputError, check_fraction, check_option

__all__ = [
    "CNN1D",
    "MLP",
    "MODELS",
    "RECOMMENDED_LR",
    "BaseClassifier",
    "CoteachingCNN",
    "PreActResNet18",
    "ResNet32",
    "SmallCNN",
    "default_model_for",
    "make_model",
    "n_parameters",
]


# --------------------------------------------------------------------------------------------
# validation helpers


def _check_input_shape(input_shape, *, model: str | None = None) -> tuple[int, ...]:
    """Return ``input_shape`` as a tuple of positive ints or raise NoisylabInputError."""
    who = f"{model}: " if model else ""
    if isinstance(input_shape, numbers.Integral) and not isinstance(input_shape, bool):
        input_shape = (input_shape,)
    try:
        dims = tuple(input_shape)
    except TypeError:
        raise NoisylabInputError(
            f"{who}input_shape must be a tuple of positive ints (one example, no batch dimension); "
            f"got {input_shape!r}."
        ) from None
    if not dims or not all(
        isinstance(d, numbers.Integral) and not isinstance(d, bool) and d > 0 for d in dims
    ):
        raise NoisylabInputError(
            f"{who}input_shape must be a non-empty tuple of positive ints (one example, no batch "
            f"dimension); got {input_shape!r}."
        )
    return tuple(int(d) for d in dims)


def _check_n_classes(n_classes, *, model: str) -> int:
    if isinstance(n_classes, bool) or not isinstance(n_classes, numbers.Integral) or n_classes < 1:
        raise NoisylabInputError(f"{model}: n_classes must be a positive int; got {n_classes!r}.")
    return int(n_classes)


def _check_widths(name: str, values, *, model: str, allow_empty: bool = False) -> tuple[int, ...]:
    if isinstance(values, numbers.Integral) and not isinstance(values, bool):
        values = (values,)
    try:
        vals = tuple(values)
    except TypeError:
        vals = None
    if vals is None or (not vals and not allow_empty) or not all(
        isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0 for v in vals
    ):
        raise NoisylabInputError(f"{model}: {name} must be a sequence of positive ints; got {values!r}.")
    return tuple(int(v) for v in vals)


def _image_shape(input_shape, *, model: str, example: str) -> tuple[int, int, int]:
    """Canonical ``(C, H, W)`` of an image model; ``(H, W)`` means one channel."""
    shape = _check_input_shape(input_shape, model=model)
    if len(shape) == 2:
        return (1, *shape)
    if len(shape) == 3:
        if shape[2] in (1, 3, 4) and shape[0] > 4:
            warnings.warn(
                f"{model}: input_shape {shape} looks channels-last (H, W, C); image models take (C, H, W), "
                f"so this builds a network with {shape[0]} input channels.  If the images are (N, H, W, C), "
                f"transpose them with X.transpose(0, 3, 1, 2) and pass input_shape "
                f"{(shape[2], shape[0], shape[1])}.",
                UserWarning, stacklevel=3)
        return shape
    hint = ""
    if len(shape) == 1:
        side = math.isqrt(shape[0])
        if side * side == shape[0]:
            hint = f" Reshape flat images to (1, {side}, {side}) or use model 'mlp' for feature vectors."
        else:
            hint = " Use model 'mlp' for feature vectors."
    raise NoisylabInputError(
        f"{model} expects images with input_shape (C, H, W) or (H, W), e.g. {example}; got "
        f"{shape} ({len(shape)}-D).{hint}"
    )


# --------------------------------------------------------------------------------------------
# shared interface


class BaseClassifier(nn.Module):
    """Common interface: ``features`` -> ``head`` (a linear layer) -> logits.

    Subclasses set ``self.input_shape`` (as given by the user), ``self._canonical_shape`` (the
    shape the body works on), ``self.n_classes``, ``self.feature_dim``, ``self.head`` and
    hold the layers up to the embedding in ``self.body`` (or override ``_embed``) for inputs of
    shape ``(N, *_canonical_shape)``.
    """

    input_shape: tuple[int, ...]
    _canonical_shape: tuple[int, ...]
    n_classes: int
    feature_dim: int
    head: nn.Linear

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        got = tuple(x.shape[1:])
        if x.dim() < 1 or (got != self.input_shape and got != self._canonical_shape):
            raise NoisylabInputError(
                f"{type(self).__name__} was built for examples of shape {self.input_shape}; got a "
                f"batch of shape {tuple(x.shape)} (expected (N, {', '.join(map(str, self.input_shape))}))."
            )
        dtype = self.head.weight.dtype
        if x.dtype != dtype:
            if not x.is_floating_point():
                raise NoisylabInputError(
                    f"{type(self).__name__} expects a floating-point batch ({dtype}); got {x.dtype}.  Convert it "
                    f"with x.float() (scaled as the training data were, e.g. images to [0, 1])."
                )
            x = x.to(dtype)  # e.g. a float64 batch made from numpy arrays
        return x.reshape(x.shape[0], *self._canonical_shape)

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate embedding; every model here keeps its layers up to it in ``self.body``."""
        return self.body(x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate embedding, shape ``(N, feature_dim)`` (the input of ``head``)."""
        return self._embed(self._prepare(x))

    def forward(self, x: torch.Tensor, return_features: bool = False):
        """Logits ``(N, n_classes)``; with ``return_features=True`` also the features.

        Parameters
        ----------
        x : torch.Tensor of shape (N, *input_shape)
        return_features : bool, default=False
            If True return ``(logits, features)`` with features of shape ``(N, feature_dim)``.
        """
        f = self.features(x)
        logits = self.head(f)
        return (logits, f) if return_features else logits

    def extra_repr(self) -> str:
        return f"input_shape={self.input_shape}, n_classes={self.n_classes}, feature_dim={self.feature_dim}"


def n_parameters(model: nn.Module) -> int:
    """Number of trainable parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# --------------------------------------------------------------------------------------------
# MLP


class MLP(BaseClassifier):
    """Fully connected ReLU network on flattened inputs (METHODS section 12 default).

    ``in -> Linear(h1) -> ReLU [-> Dropout] -> ... -> Linear(h_k) -> ReLU [-> Dropout] -> Linear(C)``.
    No batch norm, so it is safe for meta-gradient methods (L2R / IEG look-ahead steps).

    Parameters
    ----------
    input_shape : tuple of int
        Shape of one example; it is flattened, so ``(64,)`` and ``(1, 8, 8)`` both give 64 inputs.
    n_classes : int
        Number of outputs C.
    hidden : sequence of int, default=(128, 128)
        Widths of the hidden layers; ``()`` gives multinomial logistic regression.
    dropout : float in [0, 1), default=0.0
        Dropout after each hidden ReLU (active in train mode only).

    Notes
    -----
    Parameters: ``sum_i (d_i + 1) * d_{i+1}`` over the chain ``d = (prod(input_shape), *hidden, C)``.
    The digits default 64 -> 128 -> 128 -> 10 has 8,320 + 16,512 + 1,290 = 26,122 parameters.
    ``features`` returns the last hidden activation, shape ``(N, hidden[-1])`` (or the flattened
    input when ``hidden`` is empty).
    """

    def __init__(self, input_shape, n_classes: int, hidden: Sequence[int] = (128, 128), dropout: float = 0.0):
        super().__init__()
        self.input_shape = _check_input_shape(input_shape, model="MLP")
        self.n_classes = _check_n_classes(n_classes, model="MLP")
        hidden = _check_widths("hidden", hidden, model="MLP", allow_empty=True)
        dropout = check_fraction("MLP dropout", dropout, high_inclusive=False)
        d_in = math.prod(self.input_shape)
        self._canonical_shape = (d_in,)
        layers: list[nn.Module] = []
        for width in hidden:
            layers += [nn.Linear(d_in, width), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            d_in = width
        self.body = nn.Sequential(*layers)
        self.feature_dim = d_in
        self.head = nn.Linear(d_in, self.n_classes)


# --------------------------------------------------------------------------------------------
# 1-D CNN


class CNN1D(BaseClassifier):
    """Small 1-D CNN for sequences such as MNIST-1D (40 samples, one channel).

    Each stage is ``Conv1d(k=5, stride=2, padding=2) -> ReLU`` (the stride does the
    down-sampling: 40 -> 20 -> 10 -> 5), then global average pooling over time and a linear
    layer.

    Parameters
    ----------
    input_shape : tuple of int, default=(1, 40)
        ``(C, L)``; a 1-D shape ``(L,)`` is accepted and read as one channel ``(1, L)``.
    n_classes : int
        Number of outputs C.
    channels : sequence of int, default=(32, 64, 64)
        Output channels of the conv stages.

    Notes
    -----
    Parameters: ``sum_i (5 * c_{i-1} + 1) * c_i + (c_last + 1) * C`` with ``c_0`` the input
    channels; the MNIST-1D default (1, 40) -> 10 has 192 + 10,304 + 20,544 + 650 = 31,690.
    ``features`` has shape ``(N, channels[-1])``.
    """

    def __init__(self, input_shape=(1, 40), n_classes: int = 10, channels: Sequence[int] = (32, 64, 64)):
        super().__init__()
        shape = _check_input_shape(input_shape, model="CNN1D")
        if len(shape) == 1:
            canonical = (1, shape[0])
        elif len(shape) == 2:
            canonical = shape
        else:
            raise NoisylabInputError(
                f"CNN1D expects sequences with input_shape (C, L) or (L,), e.g. (1, 40) for MNIST-1D; "
                f"got {shape} ({len(shape)}-D). Use 'small_cnn' or a ResNet for images."
            )
        self.input_shape, self._canonical_shape = shape, canonical
        self.n_classes = _check_n_classes(n_classes, model="CNN1D")
        channels = _check_widths("channels", channels, model="CNN1D")
        layers: list[nn.Module] = []
        c_in = canonical[0]
        for c_out in channels:
            layers += [nn.Conv1d(c_in, c_out, kernel_size=5, stride=2, padding=2), nn.ReLU()]
            c_in = c_out
        layers += [nn.AdaptiveAvgPool1d(1), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.feature_dim = c_in
        self.head = nn.Linear(c_in, self.n_classes)


# --------------------------------------------------------------------------------------------
# small 2-D CNN


class SmallCNN(BaseClassifier):
    """Tiny 2-D CNN for small images such as 8x8 digits (METHODS section 12).

    ``Conv3x3(16, pad 1) [-> BN] -> ReLU -> Conv3x3(32, pad 1) [-> BN] -> ReLU -> global average
    pool -> Linear(C)``.  No pooling between the convs, so any image size works.

    Parameters
    ----------
    input_shape : tuple of int, default=(1, 8, 8)
        ``(C, H, W)``; ``(H, W)`` is read as one channel.
    n_classes : int
        Number of outputs C.
    channels : tuple of two ints, default=(16, 32)
        Output channels of the two convs.
    batch_norm : bool, default=False
        Add BatchNorm2d after each conv (the conv then has no bias).  Keep False for
        meta-gradient methods (L2R / IEG).

    Notes
    -----
    Parameters without BN: ``(9 c0 + 1) c1 + (9 c1 + 1) c2 + (c2 + 1) C``; for digits
    (1, 8, 8) -> 10 that is 160 + 4,640 + 330 = 5,130.  With BN: ``9 c0 c1 + 2 c1 + 9 c1 c2 +
    2 c2 + (c2 + 1) C`` = 5,178.  ``features`` has shape ``(N, channels[-1])``.
    """

    def __init__(self, input_shape=(1, 8, 8), n_classes: int = 10, channels: Sequence[int] = (16, 32),
                 batch_norm: bool = False):
        super().__init__()
        self.input_shape = _check_input_shape(input_shape, model="SmallCNN")
        self._canonical_shape = _image_shape(self.input_shape, model="SmallCNN", example="(1, 8, 8) for digits")
        self.n_classes = _check_n_classes(n_classes, model="SmallCNN")
        channels = _check_widths("channels", channels, model="SmallCNN")
        if len(channels) != 2:
            raise NoisylabInputError(f"SmallCNN: channels must have exactly two entries; got {channels!r}.")
        if not isinstance(batch_norm, (bool, np.bool_)):
            raise NoisylabInputError(f"SmallCNN: batch_norm must be True or False; got {batch_norm!r}.")
        layers: list[nn.Module] = []
        c_in = self._canonical_shape[0]
        for c_out in channels:
            layers.append(nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(nn.ReLU())
            c_in = c_out
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.feature_dim = c_in
        self.head = nn.Linear(c_in, self.n_classes)


# --------------------------------------------------------------------------------------------
# Co-teaching 9-layer CNN


def _conv_bn_lrelu(c_in: int, c_out: int, padding: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, kernel_size=3, stride=1, padding=padding),
            nn.BatchNorm2d(c_out), nn.LeakyReLU(negative_slope=0.01)]


class CoteachingCNN(BaseClassifier):
    """The 9-layer CNN of Co-teaching (Han et al., 2018; METHODS section 1.3).

    ::

        3 x [Conv3x3(128, pad 1) -> BN -> LeakyReLU(0.01)] -> MaxPool(2) -> Dropout2d(p)
        3 x [Conv3x3(256, pad 1) -> BN -> LeakyReLU(0.01)] -> MaxPool(2) -> Dropout2d(p)
        Conv3x3(512, pad 0) -> BN -> LReLU -> Conv3x3(256, pad 0) -> BN -> LReLU
        -> Conv3x3(128, pad 0) -> BN -> LReLU -> global average pool -> Linear(C)

    On 32x32 inputs the spatial size goes 32 -> 16 -> 8 -> 6 -> 4 -> 2 -> GAP.  Convs keep their
    bias (as in the original), BN uses PyTorch defaults.

    Parameters
    ----------
    input_shape : tuple of int, default=(3, 32, 32)
        ``(C, H, W)`` with H, W >= 28 (the three unpadded convs need at least 7x7 after the two
        poolings); ``(H, W)`` is read as one channel.
    n_classes : int
        Number of outputs C.
    dropout : float in [0, 1), default=0.25
        Channel dropout rate of the two :class:`torch.nn.Dropout2d` modules.

    Notes
    -----
    **Dropout2d behaviour.**  The original code calls ``F.dropout2d(h, p)`` without
    ``training=``; in PyTorch 0.3/0.4 that default was ``training=False`` (dropout never
    active), in current PyTorch it is ``training=True`` (active even in eval mode).  Here
    dropout is an ``nn.Dropout2d`` module: it zeroes whole channels (scaling the rest by
    ``1/(1-p)``) in **train mode only** and is the identity in eval mode, which is the
    intended behaviour of the paper.  Pass ``dropout=0`` to reproduce the old never-active
    behaviour.

    Parameters: ``9 c_in c_out + c_out`` per conv, ``2 c_out`` per BN and ``129 C`` for the
    head; for 3 input channels and C = 10 that is 4,429,184 + 4,096 + 1,290 = 4,434,570.
    ``features`` has shape ``(N, 128)``.
    """

    def __init__(self, input_shape=(3, 32, 32), n_classes: int = 10, dropout: float = 0.25):
        super().__init__()
        self.input_shape = _check_input_shape(input_shape, model="CoteachingCNN")
        self._canonical_shape = _image_shape(self.input_shape, model="CoteachingCNN",
                                             example="(3, 32, 32) for CIFAR")
        c0, h, w = self._canonical_shape
        if min(h, w) // 4 < 7:
            raise NoisylabInputError(
                f"CoteachingCNN needs images of at least 28x28 (three unpadded 3x3 convs after two "
                f"2x2 poolings), e.g. (3, 32, 32); got input_shape {self.input_shape}. Use 'small_cnn' "
                f"or a ResNet for smaller images."
            )
        self.n_classes = _check_n_classes(n_classes, model="CoteachingCNN")
        self.dropout = check_fraction("CoteachingCNN dropout", dropout, high_inclusive=False)
        layers: list[nn.Module] = []
        c_in = c0
        for c_out in (128, 128, 128):
            layers += _conv_bn_lrelu(c_in, c_out, padding=1)
            c_in = c_out
        layers += [nn.MaxPool2d(kernel_size=2, stride=2), nn.Dropout2d(p=self.dropout)]
        for c_out in (256, 256, 256):
            layers += _conv_bn_lrelu(c_in, c_out, padding=1)
            c_in = c_out
        layers += [nn.MaxPool2d(kernel_size=2, stride=2), nn.Dropout2d(p=self.dropout)]
        for c_out in (512, 256, 128):
            layers += _conv_bn_lrelu(c_in, c_out, padding=0)
            c_in = c_out
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.feature_dim = c_in
        self.head = nn.Linear(c_in, self.n_classes)


# --------------------------------------------------------------------------------------------
# ResNet-32 (CIFAR, option A)


class _ShortcutA(nn.Module):
    """Parameter-free shortcut: 2x2 average pooling (stride 2) and zero-padding of channels."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.pad = c_out - c_in
        self.pool = nn.AvgPool2d(kernel_size=stride, stride=stride, ceil_mode=True) if stride > 1 else nn.Identity()

    def forward(self, x):
        x = self.pool(x)
        if self.pad:
            x = nn.functional.pad(x, (0, 0, 0, 0, 0, self.pad))
        return x


class _BasicBlock(nn.Module):
    """Post-activation basic block: conv-BN-ReLU-conv-BN, + shortcut, ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = _ShortcutA(c_in, c_out, stride) if (stride != 1 or c_in != c_out) else nn.Identity()
        self.relu = nn.ReLU()

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet32(BaseClassifier):
    """CIFAR ResNet-32 (He et al., 2016, section 4.2) with **option A** shortcuts.

    ``Conv3x3(w) -> BN -> ReLU -> 3 stages x 5 basic blocks (w, 2w, 4w channels; stride 2 at the
    start of stages 2 and 3) -> global average pool -> Linear(C)``.  Down-sampling shortcuts
    are parameter-free (option A): 2x2 average pooling and zero-padding of the new channels,
    as in the ResNet-32 used by AUM (METHODS section 7.5).

    Parameters
    ----------
    input_shape : tuple of int, default=(3, 32, 32)
        ``(C, H, W)``; ``(H, W)`` is read as one channel.  Any size works (global pooling).
    n_classes : int
        Number of outputs C.
    width : int, default=16
        Channels of the stem and stage 1 (stages use ``width``, ``2 width``, ``4 width``).

    Notes
    -----
    32 weighted layers: 1 stem conv + 15 blocks x 2 convs + 1 linear.  With width 16, 3 input
    channels and C = 10 it has 464,154 parameters (the usual "0.46M").
    MentorMix's "ResNet-32" (METHODS section 4.6) is a different, ~8x wider pre-activation
    network (stem 64, stages 128/256/512, leaky ReLU 0.1); ``width=128`` only approximates its
    size, not its design.  ``features`` has shape ``(N, 4 width)``.
    """

    def __init__(self, input_shape=(3, 32, 32), n_classes: int = 10, width: int = 16):
        super().__init__()
        self.input_shape = _check_input_shape(input_shape, model="ResNet32")
        self._canonical_shape = _image_shape(self.input_shape, model="ResNet32", example="(3, 32, 32) for CIFAR")
        self.n_classes = _check_n_classes(n_classes, model="ResNet32")
        (width,) = _check_widths("width", width, model="ResNet32")
        layers: list[nn.Module] = [
            nn.Conv2d(self._canonical_shape[0], width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width), nn.ReLU(),
        ]
        c_in = width
        for stage, c_out in enumerate((width, 2 * width, 4 * width)):
            for block in range(5):
                stride = 2 if (stage > 0 and block == 0) else 1
                layers.append(_BasicBlock(c_in, c_out, stride))
                c_in = c_out
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.feature_dim = c_in
        self.head = nn.Linear(c_in, self.n_classes)


# --------------------------------------------------------------------------------------------
# PreAct-ResNet-18


class _PreActBlock(nn.Module):
    """Pre-activation basic block: BN-ReLU-conv-BN-ReLU-conv + shortcut (He et al., 2016b)."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.relu = nn.ReLU()
        self.shortcut = (nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)
                         if (stride != 1 or c_in != c_out) else None)

    def forward(self, x):
        out = self.relu(self.bn1(x))
        # a projection shortcut sees the pre-activated input; the identity sees x itself
        short = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(self.relu(self.bn2(out)))
        return out + short


class PreActResNet18(BaseClassifier):
    """Pre-activation ResNet-18 for CIFAR-sized images (He et al., "Identity mappings", 2016).

    ``Conv3x3(64) -> 4 stages x 2 pre-activation blocks (64, 128, 256, 512 channels; stride 2 at
    the start of stages 2-4; 1x1 conv projection shortcuts where the shape changes) -> BN ->
    ReLU -> global average pool -> Linear(C)``.  The final BN-ReLU follows the paper's
    pre-activation design (the last block's output is otherwise never normalised).

    Parameters
    ----------
    input_shape : tuple of int, default=(3, 32, 32)
        ``(C, H, W)``; ``(H, W)`` is read as one channel.  Any size works (global pooling).
    n_classes : int
        Number of outputs C.

    Notes
    -----
    18 weighted layers: 1 stem conv + 8 blocks x 2 convs + 1 linear (the three 1x1 projection
    shortcut convs are not counted, by the usual convention).  With 3 input channels and
    C = 10 it has 11,172,170 parameters.  ``features`` has shape ``(N, 512)``.
    """

    def __init__(self, input_shape=(3, 32, 32), n_classes: int = 10):
        super().__init__()
        self.input_shape = _check_input_shape(input_shape, model="PreActResNet18")
        self._canonical_shape = _image_shape(self.input_shape, model="PreActResNet18",
                                             example="(3, 32, 32) for CIFAR")
        self.n_classes = _check_n_classes(n_classes, model="PreActResNet18")
        layers: list[nn.Module] = [nn.Conv2d(self._canonical_shape[0], 64, 3, padding=1, bias=False)]
        c_in = 64
        for stage, c_out in enumerate((64, 128, 256, 512)):
            for block in range(2):
                stride = 2 if (stage > 0 and block == 0) else 1
                layers.append(_PreActBlock(c_in, c_out, stride))
                c_in = c_out
        layers += [nn.BatchNorm2d(c_in), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.feature_dim = c_in
        self.head = nn.Linear(c_in, self.n_classes)


# --------------------------------------------------------------------------------------------
# registry and factory

#: Model name (CLI / config identifier) -> class.
MODELS: dict[str, type[BaseClassifier]] = {
    "mlp": MLP,
    "cnn1d": CNN1D,
    "small_cnn": SmallCNN,
    "coteaching_cnn": CoteachingCNN,
    "resnet32": ResNet32,
    "preact_resnet18": PreActResNet18,
}

#: Adam learning rate used when none is given (``lr="auto"`` of :class:`~noisylab.torch.estimator.TorchClassifier`,
#: the ``cv-probs`` / ``train`` commands).  Measured on this package's data sets (20 epochs, Adam, batch 64,
#: constant rate, clean labels, seed 0): small_cnn on digits 0.617 test accuracy at 1e-3 vs 0.928 at 1e-2;
#: cnn1d on MNIST-1D 0.807 vs 0.938; mlp on flattened digits 0.952 vs 0.976 but on the Gaussian mixture
#: 0.977 vs 0.960, so it keeps 1e-3.  The GPU-scale networks keep Adam's usual 1e-3.
RECOMMENDED_LR: dict[str, float] = {"mlp": 1e-3, "cnn1d": 1e-2, "small_cnn": 1e-2, "coteaching_cnn": 1e-3,
                                    "resnet32": 1e-3, "preact_resnet18": 1e-3}

_MAX_SEED = 2**63 - 1

# True while a Trainer builds its model(s) inside its seeded RNG context: a make_model call
# without a seed then draws it from the global torch RNG, which the trainer seeded.
_SEED_FROM_TORCH_RNG: contextvars.ContextVar[bool] = contextvars.ContextVar("_SEED_FROM_TORCH_RNG", default=False)


@contextlib.contextmanager
def _seed_from_torch_rng():
    """Scope in which ``make_model(random_state=None)`` takes its seed from the global torch RNG
    (one draw) instead of OS entropy; :meth:`Trainer.build_model` uses it."""
    token = _SEED_FROM_TORCH_RNG.set(True)
    try:
        yield
    finally:
        _SEED_FROM_TORCH_RNG.reset(token)


def _init_seed(random_state, generator) -> int:
    """Turn ``random_state`` / ``generator`` into the int seed the weights are drawn with."""
    if generator is not None:
        if random_state is not None:
            raise NoisylabInputError("make_model: pass either random_state or generator, not both.")
        if not isinstance(generator, torch.Generator):
            raise NoisylabInputError(
                f"make_model: generator must be a torch.Generator; got {type(generator).__name__}."
            )
        return int(torch.randint(0, _MAX_SEED, (1,), generator=generator, device=generator.device).item())
    if random_state is None:
        if _SEED_FROM_TORCH_RNG.get():
            return int(torch.randint(0, _MAX_SEED, (1,)).item())
        return secrets.randbits(63)
    if isinstance(random_state, torch.Generator):
        return int(torch.randint(0, _MAX_SEED, (1,), generator=random_state, device=random_state.device).item())
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, _MAX_SEED))
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        if not 0 <= random_state < 2**64:
            raise NoisylabInputError(
                f"make_model: random_state must be an int in [0, 2**64); got {random_state}."
            )
        return int(random_state)
    raise NoisylabInputError(
        "make_model: random_state must be None, an int, a numpy.random.Generator or a torch.Generator; "
        f"got {type(random_state).__name__}."
    )


def make_model(name: str, input_shape, n_classes: int, random_state=None, *,
               generator: torch.Generator | None = None, **kwargs) -> BaseClassifier:
    """Build a registered model with reproducible initial weights.

    Parameters
    ----------
    name : {"mlp", "cnn1d", "small_cnn", "coteaching_cnn", "resnet32", "preact_resnet18"}
        Key of :data:`MODELS`.
    input_shape : tuple of int
        Shape of one example (no batch dimension), e.g. ``(64,)``, ``(1, 40)``, ``(3, 32, 32)``.
    n_classes : int
        Number of logits.
    random_state : None, int, numpy.random.Generator or torch.Generator, default=None
        Seed of the initial weights.  An int gives identical weights (identical
        ``state_dict``) on every call; a Generator is advanced by one draw, from which the
        seed is taken; None uses fresh OS entropy, except while a
        :class:`~noisylab.torch.trainer.Trainer` builds its model (e.g. from the factory
        ``functools.partial(make_model, name, shape, K)``): the seed is then one draw from the
        global torch RNG, which the trainer seeded from its ``random_state``, so the weights
        follow the trainer's seed (and the two networks of Co-teaching differ).
    generator : torch.Generator, optional
        Alternative to ``random_state`` (one draw is taken from it); pass at most one of them.
    **kwargs
        Architecture options of the model class (``hidden``, ``dropout``, ``channels``,
        ``batch_norm``, ``width``).

    Returns
    -------
    BaseClassifier
        A CPU model in train mode; ``model(x)`` maps ``(N, *input_shape)`` to ``(N, n_classes)``.

    Raises
    ------
    NoisylabInputError
        Unknown model name (with the closest name suggested), unknown or invalid architecture
        option, or an ``input_shape`` the architecture cannot take (the message states the
        expected shape).

    Notes
    -----
    Seeding: the model is built under ``torch.random.fork_rng(devices=[])`` after seeding the
    CPU default generator with the derived seed, so each layer gets PyTorch's default
    initialisation drawn from that seed, and the caller's global torch RNG state (CPU, and
    CUDA which is never touched) is exactly as it was before the call (advanced by the one
    seed draw in the unseeded-call-inside-a-Trainer case above).  Parameters are
    created on the CPU (``with torch.device("cpu")``) so the weights do not depend on a
    default device; move the model afterwards with ``.to(device)``.

    Examples
    --------
    >>> import torch
    >>> from noisylab.torch.models import make_model
    >>> m = make_model("mlp", (64,), 10, random_state=0)
    >>> m(torch.zeros(5, 64)).shape
    torch.Size([5, 10])
    """
    name = check_option("model", name, list(MODELS))
    cls = MODELS[name]
    params = inspect.signature(cls.__init__).parameters
    allowed = [p for p in params if p not in ("self", "input_shape", "n_classes")]
    for key in kwargs:
        if key not in allowed:
            if not allowed:
                raise NoisylabInputError(f"Model {name!r} takes no options; got {key!r}.")
            check_option(f"option for model {name!r}", key, allowed)
    seed = _init_seed(random_state, generator)
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        with torch.device("cpu"):
            model = cls(input_shape, n_classes, **kwargs)
    return model


def default_model_for(input_shape) -> str:
    """Name of a sensible default architecture for examples of shape ``input_shape``.

    Parameters
    ----------
    input_shape : tuple of int
        Shape of one example (no batch dimension).

    Returns
    -------
    str
        ``"mlp"`` for feature vectors ``(d,)``; ``"cnn1d"`` for sequences ``(C, L)``;
        ``"small_cnn"`` for images ``(C, H, W)`` with ``max(H, W) <= 16`` (e.g. 8x8 digits);
        ``"preact_resnet18"`` for larger images (e.g. CIFAR 32x32).

    Raises
    ------
    NoisylabInputError
        For shapes that are not 1-, 2- or 3-D tuples of positive ints.
    """
    shape = _check_input_shape(input_shape)
    if len(shape) == 1:
        return "mlp"
    if len(shape) == 2:
        return "cnn1d"
    if len(shape) == 3:
        return "small_cnn" if max(shape[1:]) <= 16 else "preact_resnet18"
    raise NoisylabInputError(
        f"No default model for input_shape {shape}: expected (d,) feature vectors, (C, L) sequences "
        f"or (C, H, W) images."
    )
