"""Showing suspected label errors as they are: images, 1-D sequences, text, or feature rows.

:func:`detect_kind` tells the kind of an input array from its dtype and shape:

``"text"``
    1-D array of strings (or Python objects holding strings).
``"tabular"``
    ``(n, d)`` numeric features (or ``(n,)``: one feature).
``"sequence"``
    ``(n, C, L)`` or ``(n, L, C)`` with few channels ``C <= 4`` and a much longer
    length ``L >= 4 C`` (MNIST-1D: ``(n, 1, 40)``).
``"image"``
    ``(n, H, W)`` grey images; ``(n, C, H, W)`` (channels first, PyTorch) or
    ``(n, H, W, C)`` (channels last) with ``C`` in 1, 3, 4.

:func:`image_batch` turns the selected images into ``(m, H, W)`` or ``(m, H, W, C)``
values in [0, 1]: ``uint8`` pixels are divided by 255, floats already in [0, 1]
(noisylab's loaders scale pixels this way) are shown unchanged, anything else is
min-max scaled over the shown examples (one scale for all, so contrast between
examples is preserved).
"""
from __future__ import annotations

import numpy as np

from .._validation import NoisylabInputError

__all__ = ["EXAMPLE_KINDS", "detect_kind", "image_batch", "sequence_batch"]

EXAMPLE_KINDS = ("image", "sequence", "text", "tabular")
_CHANNELS = (1, 3, 4)


def _is_text(X) -> bool:
    X = np.asarray(X) if not isinstance(X, np.ndarray) else X
    if X.dtype.kind in "US":
        return True
    if X.dtype.kind == "O" and X.ndim == 1:
        return all(isinstance(v, (str, bytes)) for v in X[: min(len(X), 100)].tolist())
    return False


def detect_kind(X) -> str:
    """The example kind of ``X`` (see the module docstring); raises on shapes that fit none."""
    X = X if isinstance(X, np.ndarray) else np.asarray(X)
    shape = X.shape
    if _is_text(X):
        if X.ndim != 1:
            raise NoisylabInputError(f"text examples must be a 1-D array of strings; got shape {shape}.")
        return "text"
    if X.dtype.kind not in "biuf":
        raise NoisylabInputError(f"examples must be numeric arrays or a 1-D array of strings; got dtype {X.dtype}.")
    if X.ndim in (1, 2):
        return "tabular"
    if X.ndim == 3:
        a, b = shape[1], shape[2]
        small, big = min(a, b), max(a, b)
        if small <= 4 and big >= 4 * small:
            return "sequence"
        return "image"
    if X.ndim == 4:
        if shape[1] in _CHANNELS or shape[3] in _CHANNELS:
            return "image"
        raise NoisylabInputError(
            f"4-D examples must be images (n, C, H, W) or (n, H, W, C) with C in 1, 3 or 4; got shape {shape}."
        )
    raise NoisylabInputError(
        f"cannot show examples of shape {shape}: expected images (n, H, W), (n, C, H, W), (n, H, W, C), "
        "sequences (n, C, L), feature rows (n, d) or a 1-D array of strings."
    )


def _channels_last(X) -> np.ndarray:
    """(m, H, W), (m, C, H, W) or (m, H, W, C) -> (m, H, W) or (m, H, W, C)."""
    if X.ndim == 3:
        return X
    first, last = X.shape[1] in _CHANNELS, X.shape[3] in _CHANNELS
    if first and not (last and X.shape[1] > X.shape[3]):  # (n, 3, 32, 32); (n, 4, 4, 3) is read channels-last
        X = np.moveaxis(X, 1, 3)
    if X.shape[3] == 1:
        return X[..., 0]
    return X


def image_batch(X) -> tuple[np.ndarray, bool]:
    """Selected images -> (values in [0, 1] as (m, H, W) or (m, H, W, C), is_grey)."""
    X = _channels_last(np.asarray(X))
    if X.dtype == np.uint8:
        V = X.astype(np.float64) / 255.0
    else:
        V = X.astype(np.float64)
        lo, hi = float(np.min(V)), float(np.max(V))
        if lo < 0.0 or hi > 1.0:
            V = (V - lo) / (hi - lo) if hi > lo else np.zeros_like(V)
    if V.ndim == 4 and V.shape[3] == 4:  # RGBA: keep RGB, drop alpha
        V = V[..., :3]
    return np.clip(V, 0.0, 1.0), V.ndim == 3


def sequence_batch(X) -> np.ndarray:
    """Selected sequences (m, C, L) or (m, L, C) -> (m, C, L) float."""
    X = np.asarray(X, dtype=np.float64)
    if X.shape[1] > X.shape[2]:
        X = np.swapaxes(X, 1, 2)
    return X
