"""Data sets for the PyTorch layer: inputs, labels and class names as numpy arrays.

Every loader returns a :class:`Dataset` holding numpy arrays (``X`` float32 of
shape ``(n, *input_shape)``, ``y`` int64 of shape ``(n,)``) and the class names;
:func:`to_tensors` turns one into torch tensors on a device.

Built in (no download)
    ``digits`` (scikit-learn's 1797 8x8 images), ``mnist1d`` (generated locally
    with the ``mnist1d`` package's generator), ``gaussian`` (a synthetic
    Gaussian mixture).
User data
    CIFAR-10/100 python pickle folders (:func:`load_cifar`), image folders
    (:func:`load_image_folder`), ``.npz``/``.csv`` arrays (:func:`load_arrays`).

:func:`get_dataset` resolves a registered name or a path (the CLI's
``--dataset NAME|PATH``).
"""
from __future__ import annotations

import inspect
import numbers
import os
import pickle
import random
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._validation import (
    NoisylabInputError,
    check_labels,
    check_option,
    check_random_state,
)
from ..io import (
    _READ_ERRORS,
    LABEL_COLUMN_NAMES,
    _check_file,
    _csv_rows,
    _maybe_number,
    encode_labels,
)

__all__ = [
    "DATASETS",
    "Dataset",
    "get_dataset",
    "image_folder_files",
    "load_arrays",
    "load_cifar",
    "load_digits",
    "load_gaussian_mixture",
    "load_image_folder",
    "load_mnist1d",
    "to_tensors",
]

_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
_X_KEYS = ("X", "x", "features")
_Y_KEYS = ("y", "labels")
_CSV_LABEL_NAMES = LABEL_COLUMN_NAMES  # one rule with noisylab.io.read_labels


# --------------------------------------------------------------------------------------------
# The container
# --------------------------------------------------------------------------------------------
@dataclass
class Dataset:
    """Inputs, labels and class names of one data set.

    Parameters
    ----------
    X : ndarray of float32, shape (n, *input_shape)
        Inputs, e.g. ``(n, 1, 8, 8)`` for digits, ``(n, 1, 40)`` for MNIST-1D,
        ``(n, 3, 32, 32)`` for CIFAR, ``(n, d)`` for tabular data.
    y : ndarray of int64, shape (n,)
        Class indices ``0..n_classes-1``.
    class_names : list of str
        Name of each class index.
    name : str
        Short name of the data set.
    X_test, y_test : ndarray, optional
        A fixed test split, when the source has one (CIFAR, MNIST-1D, an
        image folder with ``test/``, an ``.npz`` with ``X_test``).
    meta : dict
        Provenance: source, how it was generated, seed.

    Notes
    -----
    The arrays are validated and converted (``X`` to float32, ``y`` to int64)
    on construction; a label outside ``0..len(class_names)-1`` is an error.
    """

    X: np.ndarray
    y: np.ndarray
    class_names: list
    name: str
    X_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.class_names = [str(c) for c in self.class_names]
        if len(self.class_names) < 1:
            raise NoisylabInputError(f"Dataset {self.name!r}: class_names is empty.")
        self.X, self.y = self._check_pair(self.X, self.y, "X", "y")
        if (self.X_test is None) != (self.y_test is None):
            raise NoisylabInputError(f"Dataset {self.name!r}: give both X_test and y_test, or neither.")
        if self.X_test is not None:
            self.X_test, self.y_test = self._check_pair(self.X_test, self.y_test, "X_test", "y_test")
            if self.X_test.shape[1:] != self.X.shape[1:]:
                raise NoisylabInputError(
                    f"Dataset {self.name!r}: X_test has input shape {self.X_test.shape[1:]} but X has "
                    f"{self.X.shape[1:]}."
                )

    def _check_pair(self, X, y, xname, yname):
        X = np.asarray(X)
        if X.dtype.kind not in "fiub":
            raise NoisylabInputError(f"Dataset {self.name!r}: {xname} must be numeric; got dtype {X.dtype}.")
        X = X.astype(np.float32, copy=False)
        if X.ndim < 2:
            raise NoisylabInputError(
                f"Dataset {self.name!r}: {xname} must have shape (n, *input_shape); got shape {X.shape}."
            )
        y = check_labels(y, name=yname, n_classes=len(self.class_names),
                         n_classes_from=f"{len(self.class_names)} class names")
        if X.shape[0] != y.shape[0]:
            raise NoisylabInputError(
                f"Dataset {self.name!r}: {xname} has {X.shape[0]} examples but {yname} has {y.shape[0]} labels."
            )
        return X, y

    @property
    def n_classes(self) -> int:
        """Number of classes (``len(class_names)``)."""
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple:
        """Shape of one input, ``X.shape[1:]``."""
        return tuple(self.X.shape[1:])

    def __len__(self) -> int:
        return int(self.X.shape[0])

    def split(self, test_size=0.3, random_state=0):
        """Split into a training and a test data set.

        Parameters
        ----------
        test_size : float in (0, 1) or int, default=0.3
            Fraction (or number) of examples in the test part.  Ignored when
            the data set has a fixed test split.
        random_state : None, int or numpy.random.Generator, default=0
            Seed of the stratified shuffle (``None``: fresh entropy, never
            numpy's global RNG).

        Returns
        -------
        train, test : Dataset
            Without a fixed test split: a stratified split of ``X, y``
            (scikit-learn's ``train_test_split(..., stratify=y)``).  With one:
            ``(X, y)`` and ``(X_test, y_test)`` as two data sets.  Neither
            result has a test split of its own.
        """
        common = {"class_names": list(self.class_names)}
        if self.X_test is not None:
            meta = {**self.meta, "split": "fixed"}
            return (Dataset(self.X, self.y, name=f"{self.name}-train", meta=meta, **common),
                    Dataset(self.X_test, self.y_test, name=f"{self.name}-test", meta=meta, **common))
        from sklearn.model_selection import train_test_split

        if isinstance(test_size, bool) or not isinstance(test_size, numbers.Real):
            raise NoisylabInputError(f"test_size must be a float in (0, 1) or an int; got {test_size!r}.")
        if isinstance(test_size, numbers.Integral):
            if not 0 < test_size < len(self):
                raise NoisylabInputError(f"test_size must be in 1..{len(self) - 1}; got {test_size}.")
            test_size = int(test_size)
        elif not 0.0 < test_size < 1.0:
            raise NoisylabInputError(f"test_size must be in (0, 1); got {test_size!r}.")
        seed = int(check_random_state(random_state).integers(0, 2**31 - 1))
        idx = np.arange(len(self))
        try:
            tr, te = train_test_split(idx, test_size=test_size, random_state=seed, stratify=self.y)
        except ValueError as exc:
            raise NoisylabInputError(f"Cannot split {self.name!r} stratified: {exc}") from None
        tr, te = np.sort(tr), np.sort(te)
        meta = {**self.meta, "split": {"test_size": test_size, "random_state": random_state, "seed": seed}}
        return (Dataset(self.X[tr], self.y[tr], name=f"{self.name}-train", meta=meta, **common),
                Dataset(self.X[te], self.y[te], name=f"{self.name}-test", meta=meta, **common))


# --------------------------------------------------------------------------------------------
# Built-in data sets
# --------------------------------------------------------------------------------------------
def load_digits() -> Dataset:
    """scikit-learn's handwritten digits: 1797 images of 1x8x8, 10 classes (no download).

    Returns
    -------
    Dataset
        ``X`` float32 of shape (1797, 1, 8, 8) scaled to [0, 1] (pixel / 16),
        ``y`` in 0..9, class names ``"0"..."9"``; no fixed test split (use
        :meth:`Dataset.split`).
    """
    from sklearn.datasets import load_digits as _sk_load_digits

    d = _sk_load_digits()
    X = (d.images[:, None, :, :] / 16.0).astype(np.float32)
    return Dataset(X, d.target.astype(np.int64), class_names=[str(c) for c in d.target_names], name="digits",
                   meta={"source": "sklearn.datasets.load_digits", "scaling": "pixel / 16"})


def _check_count(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise NoisylabInputError(f"{name} must be an int >= {minimum}; got {value!r}.")
    return int(value)


def _int_seed(random_state) -> int:
    """An int seed from ``random_state`` (ints are used as they are)."""
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        check_random_state(random_state)  # validates (non-negative)
        return int(random_state)
    return int(check_random_state(random_state).integers(0, 2**31 - 1))


def load_mnist1d(n_train=4000, n_test=1000, random_state=0) -> Dataset:
    """MNIST-1D sequences generated locally with the ``mnist1d`` package (never downloaded).

    Parameters
    ----------
    n_train, n_test : int, default=4000, 1000
        Sizes of the training and the fixed test split (the package's
        defaults: 5000 examples, 80% for training).
    random_state : None, int or numpy.random.Generator, default=0
        Seed of the generator (``args.seed``; the package's own default is 42).

    Returns
    -------
    Dataset
        ``X`` float32 (n_train, 1, 40), ``y`` in 0..9, and ``X_test``/``y_test``
        (n_test, 1, 40).  The generator standardises all sequences together.

    Notes
    -----
    Uses ``mnist1d.data.get_dataset_args()`` and ``make_dataset(args)``.  The
    generator makes ``num_samples // 10`` examples per class, so when
    ``n_train + n_test`` is not a multiple of 10 it is rounded up and the
    (shuffled) surplus dropped from the end.  ``make_dataset`` seeds numpy's
    and Python's *global* random number generators (``mnist1d.utils.set_seed``)
    and draws from them; this function saves both states before the call and
    restores them afterwards, so the caller's global RNGs are left unchanged.
    """
    n_train = _check_count("n_train", n_train)
    n_test = _check_count("n_test", n_test, minimum=0)
    seed = _int_seed(random_state)
    from mnist1d.data import get_dataset_args, make_dataset

    total = n_train + n_test
    num_samples = -(-total // 10) * 10
    args = get_dataset_args()
    args.num_samples = num_samples
    args.train_split = n_train / num_samples
    args.seed = seed
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        d = make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    xs = np.concatenate([d["x"], d["x_test"]])
    ys = np.concatenate([d["y"], d["y_test"]])
    length = args.final_seq_length
    if xs.shape != (num_samples, length) or ys.shape != (num_samples,):
        raise RuntimeError(  # pragma: no cover - guards against a changed mnist1d generator
            f"mnist1d generated x of shape {xs.shape} and y of shape {ys.shape}; expected "
            f"({num_samples}, {length}) and ({num_samples},)."
        )
    X = xs[:, None, :].astype(np.float32)
    ys = ys.astype(np.int64)
    meta = {"source": "mnist1d.data.make_dataset (generated locally)", "seed": seed,
            "num_samples": num_samples, "n_train": n_train, "n_test": n_test}
    return Dataset(X[:n_train], ys[:n_train], class_names=[str(i) for i in range(10)], name="mnist1d",
                   X_test=X[n_train:total] if n_test else None, y_test=ys[n_train:total] if n_test else None,
                   meta=meta)


def load_gaussian_mixture(n=2000, n_classes=4, n_features=2, separation=3.0, random_state=0) -> Dataset:
    """A synthetic mixture of isotropic unit-variance Gaussians, one per class.

    Parameters
    ----------
    n : int, default=2000
        Number of examples; classes are balanced (the first ``n % n_classes``
        classes get one more) and the examples shuffled.
    n_classes : int, default=4
    n_features : int, default=2
    separation : float, default=3.0
        With ``n_features >= 2`` the class means lie on a circle of this
        radius in the first two features (angle ``2 pi k / n_classes``), the
        other features having mean 0; with one feature the means are
        ``separation`` apart on the line, centred on 0.
    random_state : None, int or numpy.random.Generator, default=0

    Returns
    -------
    Dataset
        ``X`` float32 (n, n_features), ``y`` int64, class names ``"0"...``.
    """
    n = _check_count("n", n)
    n_classes = _check_count("n_classes", n_classes, minimum=2)
    n_features = _check_count("n_features", n_features)
    if n < n_classes:
        raise NoisylabInputError(f"n ({n}) must be at least n_classes ({n_classes}).")
    if isinstance(separation, bool) or not isinstance(separation, numbers.Real) or not (
            np.isfinite(separation) and separation >= 0):
        raise NoisylabInputError(f"separation must be a finite number >= 0; got {separation!r}.")
    rng = check_random_state(random_state)
    means = np.zeros((n_classes, n_features))
    k = np.arange(n_classes)
    if n_features >= 2:
        angle = 2 * np.pi * k / n_classes
        means[:, 0], means[:, 1] = separation * np.cos(angle), separation * np.sin(angle)
    else:
        means[:, 0] = separation * (k - (n_classes - 1) / 2)
    counts = np.full(n_classes, n // n_classes)
    counts[: n % n_classes] += 1
    y = np.repeat(k, counts)[rng.permutation(n)]
    X = means[y] + rng.standard_normal((n, n_features))
    return Dataset(X.astype(np.float32), y.astype(np.int64), class_names=[str(i) for i in k], name="gaussian",
                   meta={"source": "gaussian mixture", "n_features": n_features, "separation": float(separation),
                         "random_state": random_state if isinstance(random_state, (int, type(None))) else repr(random_state),
                         "means": means.tolist()})


# --------------------------------------------------------------------------------------------
# User data: CIFAR pickles
# --------------------------------------------------------------------------------------------
def _unpickle(path: Path) -> dict:
    p = _check_file(path)
    try:
        with open(p, "rb") as fh:
            obj = pickle.load(fh, encoding="bytes")
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad input file
        raise NoisylabInputError(f"Could not read the CIFAR pickle {p}: {exc}") from None
    if not isinstance(obj, dict):
        raise NoisylabInputError(f"{p}: expected a pickled dict, got {type(obj).__name__}.")
    return obj


def _get(d: dict, key: str, path: Path):
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    keys = [k.decode() if isinstance(k, bytes) else k for k in d]
    raise NoisylabInputError(f"{path}: no entry {key!r}; it has {keys}.")


def _decode_names(names) -> list:
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def _cifar_arrays(path: Path, label_key: str, n_classes: int):
    d = _unpickle(path)
    data = np.asarray(_get(d, "data", path))
    labels = np.asarray(_get(d, label_key, path))
    if data.ndim != 2 or data.shape[1] != 3072:
        raise NoisylabInputError(f"{path}: 'data' must have shape (n, 3072) (3x32x32 images); got {data.shape}.")
    if data.dtype != np.uint8:
        raise NoisylabInputError(f"{path}: 'data' must be uint8 pixels; got dtype {data.dtype}.")
    if labels.shape != (data.shape[0],):
        raise NoisylabInputError(
            f"{path}: {data.shape[0]} images but {label_key!r} has shape {labels.shape}."
        )
    # Checked per file, so a bad label is reported with its batch file and its row in that file.
    labels = check_labels(labels, name=f"{label_key!r} in {path}", n_classes=n_classes,
                          n_classes_from=f"{n_classes} class names in the meta file")
    return data, labels


def _cifar_names(meta_path: Path, key: str, expected: int) -> list:
    names = _decode_names(_get(_unpickle(meta_path), key, meta_path))
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise NoisylabInputError(f"{meta_path}: {key!r} names a class more than once ({dup}); class names must "
                                 "be unique.")
    if len(names) != expected:
        warnings.warn(f"{meta_path}: {key!r} has {len(names)} class names; the official release has {expected}. "
                      f"The data set gets {len(names)} classes.", UserWarning, stacklevel=3)
    return names


_CIFAR10_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")
_CIFAR100_FILES = ("train", "test", "meta")


def _cifar_kind(root: Path):
    """``"cifar10"`` / ``"cifar100"`` when any file of that release's layout is in ``root``
    (so an incomplete folder is reported by the file it lacks), else None."""
    if any((root / f).is_file() for f in _CIFAR10_FILES):
        return "cifar10"
    if any((root / f).is_file() for f in _CIFAR100_FILES):
        return "cifar100"
    return None


def _missing_cifar_files(root: Path, kind: str) -> None:
    files = _CIFAR10_FILES if kind == "cifar10" else _CIFAR100_FILES
    missing = [f for f in files if not (root / f).is_file()]
    if missing:
        raise NoisylabInputError(f"{root} looks like a {'CIFAR-10' if kind == 'cifar10' else 'CIFAR-100'} python "
                                 f"folder but lacks {', '.join(missing)}; expected all of {', '.join(files)}.")


def load_cifar(path) -> Dataset:
    """CIFAR-10 or CIFAR-100 from the python pickle folder of the official release.

    Parameters
    ----------
    path : str or Path
        ``cifar-10-batches-py`` (``data_batch_1`` ... ``data_batch_5``,
        ``test_batch``, ``batches.meta`` with ``label_names``) or
        ``cifar-100-python`` (``train``, ``test``, ``meta`` with
        ``fine_label_names``; labels ``fine_labels``).

    Returns
    -------
    Dataset
        ``X`` float32 (n, 3, 32, 32) in [0, 1] (pixel / 255) with the fixed test
        split in ``X_test``/``y_test``.  All of CIFAR-10 in float32 takes about
        740 MB.

    Raises
    ------
    NoisylabInputError
        A missing file, a folder of neither layout, arrays of the wrong shape,
        a label outside the classes of the meta file (the message names the
        batch file and the row in it), or duplicate class names.

    Warns
    -----
    UserWarning
        The meta file lists a number of classes other than 10 (CIFAR-10) or
        100 (CIFAR-100).

    Notes
    -----
    The rows are in the order of the batch files (``data_batch_1`` ...
    ``data_batch_5``), which is not the order of an image-folder export of
    CIFAR (sorted by class, then file name): labels or masks made for such an
    export (the CL paper's ``{path: label}`` JSON and train masks) do not fit
    these rows; load the exported image folder instead.

    Warnings
    --------
    These files are Python pickles (read with ``encoding="bytes"``); unpickling
    can execute arbitrary code, so load only files from a trusted source.
    """
    root = Path(path)
    if not root.is_dir():
        raise NoisylabInputError(f"CIFAR folder not found: {root}")
    kind = _cifar_kind(root)
    if kind is not None:
        _missing_cifar_files(root, kind)
    if kind == "cifar10":
        names = _cifar_names(_check_file(root / "batches.meta"), "label_names", 10)
        parts = [_cifar_arrays(_check_file(root / f"data_batch_{i}"), "labels", len(names)) for i in range(1, 6)]
        Xte, yte = _cifar_arrays(_check_file(root / "test_batch"), "labels", len(names))
        Xtr = np.concatenate([p[0] for p in parts])
        ytr = np.concatenate([p[1] for p in parts])
    elif kind == "cifar100":
        names = _cifar_names(_check_file(root / "meta"), "fine_label_names", 100)
        Xtr, ytr = _cifar_arrays(_check_file(root / "train"), "fine_labels", len(names))
        Xte, yte = _cifar_arrays(_check_file(root / "test"), "fine_labels", len(names))
    else:
        raise NoisylabInputError(
            f"{root} is not a CIFAR python folder: expected data_batch_1..5, test_batch and batches.meta "
            "(cifar-10-batches-py) or train, test and meta (cifar-100-python)."
        )

    def images(a):
        return (a.reshape(-1, 3, 32, 32) / np.float32(255.0)).astype(np.float32)

    return Dataset(images(Xtr), ytr, class_names=names, name=kind, X_test=images(Xte), y_test=yte,
                   meta={"source": str(root), "format": f"{kind} python pickles", "scaling": "pixel / 255"})


# --------------------------------------------------------------------------------------------
# User data: image folders
# --------------------------------------------------------------------------------------------
def _hidden(name: str) -> bool:
    """Hidden files and folders (``.ipynb_checkpoints``, macOS ``._x.png``) and macOS ``__MACOSX`` are skipped."""
    return name.startswith(".") or name == "__MACOSX"


def _list_images(class_dir: Path):
    """Image files under ``class_dir``, recursively, in torchvision's ``make_dataset`` order.

    That order is ``sorted(os.walk(class_dir, followlinks=True))`` (folders by their path as a string,
    so the class folder's own files come first) and the file names sorted within each folder.
    """
    found, seen = [], set()
    for dirpath, dirnames, fnames in os.walk(class_dir, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # a folder symlink loop: walk each folder once
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = [d for d in dirnames if not _hidden(d)]
        found.append((dirpath, sorted(f for f in fnames
                                      if not _hidden(f) and os.path.splitext(f)[1].lower() in _IMAGE_EXTENSIONS)))
    found.sort(key=lambda t: t[0])
    return [Path(d) / f for d, names in found for f in names if os.path.isfile(os.path.join(d, f))]


def _scan_split(split_dir: Path):
    classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not _hidden(p.name))
    return classes, {c: _list_images(split_dir / c) for c in classes}


def _image_folder_layout(root: Path):
    """(train folder, whether root has train/, classes, files per class of each split) of an image folder."""
    if not root.is_dir():
        raise NoisylabInputError(f"Image folder not found: {root}")
    split_layout = (root / "train").is_dir()
    train_dir = root / "train" if split_layout else root
    classes, train_files = _scan_split(train_dir)
    if not classes:
        raise NoisylabInputError(
            f"{train_dir} has no class folders; expected {train_dir}/<class>/<image>.png|jpg "
            "(or root/train/<class>/... and root/test/<class>/...)."
        )
    for c in classes:
        if not train_files[c]:
            hint = ""
            if _cifar_kind(train_dir / c):
                hint = (f" It is a CIFAR python folder: give that folder itself as the data set ({train_dir / c}), "
                        f"not the folder that contains it.")
            raise NoisylabInputError(
                f"Class folder {train_dir / c} holds no images ({', '.join(_IMAGE_EXTENSIONS)}).{hint}"
            )
    splits = [("train", train_files)]
    if split_layout and (root / "test").is_dir():
        test_classes, test_files = _scan_split(root / "test")
        unknown = sorted(set(test_classes) - set(classes))
        if unknown:
            raise NoisylabInputError(
                f"{root / 'test'} has class folders {unknown} that are not in {train_dir} ({classes})."
            )
        splits.append(("test", test_files))
    return train_dir, split_layout, classes, splits


def image_folder_files(root, split="train") -> list:
    """The file of each row of :func:`load_image_folder`, relative to its split folder.

    Parameters
    ----------
    root : str or Path
        The image folder, as given to :func:`load_image_folder`.
    split : {"train", "test"}, default="train"
        ``"test"`` needs a ``root/test`` folder.

    Returns
    -------
    list of str
        ``"<class>/<file>"`` (``"<class>/<sub>/<file>"`` in sub-folders) with
        ``/`` separators, in the loader's row order.  Only the folder listing
        is read, not the images.  :func:`noisylab.io.align_labels` matches a
        ``{path: label}`` file against this list.
    """
    split = check_option("split", split, ["train", "test"])
    train_dir, _, _, splits = _image_folder_layout(Path(root))
    found = dict(splits)
    if split not in found:
        raise NoisylabInputError(f"{root} has no test folder (root/test/<class>/...).")
    base = train_dir if split == "train" else Path(root) / "test"
    return [f.relative_to(base).as_posix() for c in sorted(found[split]) for f in found[split][c]]


def _is_16bit(pil_mode: str) -> bool:
    """16-bit greyscale as PIL opens a 16-bit PNG: ``I;16*`` (Pillow >= 10.3) or ``I`` (before)."""
    return pil_mode == "I" or pil_mode.startswith("I;16")


def _read_pixels(Image, f, target):
    """One image as float32 (C, H, W) in [0, 1]."""
    with Image.open(f) as im:
        if _is_16bit(im.mode):  # PIL's convert() would clip these to 255
            a = np.asarray(im)
            if a.size and (a.min() < 0 or a.max() > 65535):
                raise NoisylabInputError(f"Image {f} has pixel values {a.min()}..{a.max()}; a 16-bit "
                                         "greyscale image holds 0..65535.")
            a = a.astype(np.float32) / np.float32(65535.0)
            return a[None] if target == "L" else np.repeat(a[None], 3, axis=0)
        a = np.asarray(im.convert(target), dtype=np.uint8)
        return (a[None] if a.ndim == 2 else a.transpose(2, 0, 1)).astype(np.float32) / np.float32(255.0)


def load_image_folder(root, mode=None) -> Dataset:
    """Images in class folders, the layout of torchvision's ``ImageFolder``.

    Parameters
    ----------
    root : str or Path
        ``root/train/<class>/*.png|jpg`` with an optional
        ``root/test/<class>/...``, or ``root/<class>/...`` without a split.
        Images in sub-folders of a class folder belong to that class (as in
        torchvision's ``ImageFolder``).  Row order is torchvision's
        ``ImageFolder`` order: classes are the folder names sorted; within a
        class, folders in sorted order of their path (the class folder's own
        files first) and files sorted by name.  Files with other extensions
        are ignored, and so are hidden files and folders (names starting
        with ``.``, e.g. ``.ipynb_checkpoints`` or macOS ``._x.png``) and
        ``__MACOSX`` folders (which torchvision would include).
        :func:`image_folder_files` lists the file of each row.
    mode : {None, "RGB", "L"}, default=None
        Colour mode every image is converted to; None: ``"L"`` (one channel)
        when every image is greyscale (8- or 16-bit), else ``"RGB"`` (a 16-bit
        greyscale image then fills all three channels).

    Returns
    -------
    Dataset
        ``X`` float32 (n, C, H, W) in [0, 1] (pixel / 255; 16-bit greyscale PNGs,
        PIL mode ``I;16`` or ``I``, pixel / 65535), with ``X_test`` when there is a
        ``test`` folder (its classes must be among the training classes).

    Raises
    ------
    NoisylabInputError
        No class folders, a class folder without images, an unreadable,
        truncated or corrupt image (the message names the file), or images of
        different sizes (the message names the file and both sizes).
    """
    from PIL import Image, UnidentifiedImageError

    root = Path(root)
    if mode is not None:
        mode = check_option("mode", mode, ["RGB", "L"])
    _, split_layout, classes, splits = _image_folder_layout(root)

    # First pass: headers only (PIL opens lazily) - sizes and modes.
    ref = None
    all_grey = True
    deep = False  # any 16-bit greyscale image (PIL "I;16*"), scaled by 65535
    entries = {}
    for split, files in splits:
        entries[split] = [(f, classes.index(c)) for c in sorted(files) for f in files[c]]
        for f, _ in entries[split]:
            try:
                with Image.open(f) as im:
                    size, im_mode = im.size, im.mode
            except (UnidentifiedImageError, OSError) as exc:
                raise NoisylabInputError(f"Could not read image {f}: {exc}") from None
            if im_mode == "F":
                raise NoisylabInputError(f"Image {f} has float pixels (PIL mode 'F', no fixed range); save it as an "
                                         "8- or 16-bit PNG first.")
            all_grey &= im_mode in ("1", "L", "LA") or _is_16bit(im_mode)
            deep |= _is_16bit(im_mode)
            if ref is None:
                ref = (f, size)
            elif size != ref[1]:
                raise NoisylabInputError(
                    f"Image {f} has size {size[0]}x{size[1]} (WxH) but {ref[0]} has {ref[1][0]}x{ref[1][1]}; "
                    "all images must have the same size (resize them first)."
                )
    target = mode or ("L" if all_grey else "RGB")

    def read(split):
        ent = entries[split]
        if not ent:
            return None, None
        X = None
        for i, (f, _) in enumerate(ent):
            try:
                a = _read_pixels(Image, f, target)
            except NoisylabInputError:
                raise
            except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:  # truncated / corrupt data
                raise NoisylabInputError(f"Could not read image {f}: {exc}") from None
            if X is None:
                X = np.empty((len(ent),) + a.shape, dtype=np.float32)
            X[i] = a
        return X, np.asarray([lab for _, lab in ent], dtype=np.int64)

    Xtr, ytr = read("train")
    Xte, yte = read("test") if len(splits) > 1 else (None, None)
    return Dataset(Xtr, ytr, class_names=classes, name=root.name or "images", X_test=Xte, y_test=yte,
                   meta={"source": str(root), "layout": "train/test" if split_layout else "class folders",
                         "mode": target,
                         "scaling": "pixel / 255 (16-bit greyscale: / 65535)" if deep else "pixel / 255"})


# --------------------------------------------------------------------------------------------
# User data: arrays
# --------------------------------------------------------------------------------------------
def _encode(y_parts, class_names, path):
    """Encode labels (ints or names) of train and test together; return codes and class names."""
    values = np.concatenate([np.asarray(v) for v in y_parts])
    if values.dtype.kind in "USO":
        codes, classes = encode_labels(values.astype(str), classes=class_names)
        names = [str(c) for c in classes]
    else:
        codes = check_labels(values, name=f"labels in {path}",
                             n_classes=len(class_names) if class_names is not None else None,
                             n_classes_from=f"{path} lists {len(class_names) if class_names is not None else 0} "
                                            "class_names")
        if class_names is not None:
            names = list(class_names)
        else:
            names = [str(i) for i in range(int(codes.max()) + 1)]
            empty = np.flatnonzero(np.bincount(codes, minlength=len(names)) == 0)
            if empty.size:
                warnings.warn(
                    f"{path}: the integer labels are used as class indices 0..{len(names) - 1}, which leaves "
                    f"{empty.size} of these {len(names)} classes without examples (e.g. class {int(empty[0])}); the "
                    "model gets one output per class. If the labels are 1-based or sparse ids, re-encode them as "
                    "0..K-1 (np.unique(y, return_inverse=True)) or store class_names.", UserWarning, stacklevel=4)
    out, start = [], 0
    for v in y_parts:
        out.append(codes[start:start + len(v)])
        start += len(v)
    return out, names


def _npz_pick(z, keys, path, what, required=True):
    for k in keys:
        if k in z.files:
            try:
                return np.asarray(z[k])
            except _READ_ERRORS as exc:  # e.g. an object array (needs pickle, refused), a damaged member
                raise NoisylabInputError(f"Could not read {k!r} from {path}: {exc}") from None
    if required:
        raise NoisylabInputError(f"{path} holds arrays {list(z.files)}; expected one named "
                                 f"{' or '.join(repr(k) for k in keys)} for the {what}.")
    return None


def _load_npz(p: Path):
    try:
        z = np.load(p, allow_pickle=False)
    except _READ_ERRORS as exc:  # a truncated or non-zip file raises zipfile.BadZipFile
        raise NoisylabInputError(f"Could not read {p} as an .npz file: {exc}") from None
    with z:
        X = _npz_pick(z, _X_KEYS, p, "inputs")
        y = _npz_pick(z, _Y_KEYS, p, "labels")
        Xte = _npz_pick(z, ("X_test", "x_test"), p, "test inputs", required=False)
        yte = _npz_pick(z, ("y_test", "labels_test"), p, "test labels", required=False)
        names = _npz_pick(z, ("class_names",), p, "class names", required=False)
    if (Xte is None) != (yte is None):
        raise NoisylabInputError(f"{p}: give both X_test and y_test, or neither.")
    if X.dtype.kind not in "fiub" or X.ndim < 2:
        raise NoisylabInputError(f"{p}: the inputs must be a numeric array of shape (n, ...); "
                                 f"got dtype {X.dtype}, shape {X.shape}.")
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise NoisylabInputError(f"{p}: labels must have shape ({X.shape[0]},) to match the inputs; got {y.shape}.")
    if Xte is not None and (yte.ndim != 1 or yte.shape[0] != Xte.shape[0]):
        raise NoisylabInputError(f"{p}: y_test must have shape ({Xte.shape[0]},); got {yte.shape}.")
    _check_finite(X, p, "the inputs")
    if Xte is not None:
        _check_finite(Xte, p, "X_test")
    names = None if names is None else [str(c) for c in names.tolist()]
    parts, names = _encode([y] + ([yte] if yte is not None else []), names, p)
    return X, parts[0], Xte, parts[1] if yte is not None else None, names


def _is_float(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _check_finite(X, path, what):
    """NaN or inf inputs are an error naming the file and the first bad row (they give NaN losses later)."""
    if X.dtype.kind not in "fc" or X.shape[0] == 0:
        return
    ok = np.isfinite(X).reshape(X.shape[0], -1).all(axis=1)
    if not ok.all():
        bad = np.flatnonzero(~ok)
        raise NoisylabInputError(f"{path}: {what} hold NaN or infinite values in {bad.size} row(s), the first in "
                                 f"row {int(bad[0])}; remove or impute them first.")


def _pandas_header(first, body) -> bool:
    """The column names pandas writes for an unnamed frame (``0,1,...,d``), not a data row.

    Taken as a header when there are at least three columns, or when the body is not all integers
    (``pd.DataFrame(np.c_[X, y]).to_csv(index=False)`` writes floats under the header ``0,1,2``).
    """
    if first != [str(i) for i in range(len(first))]:
        return False
    return len(first) >= 3 or not all(_maybe_number(c.strip()) is not None and "." not in c
                                      for r in body[:100] for c in r)


def _load_csv(p: Path, label_column):
    rows = _csv_rows(p)
    width = len(rows[0])
    first = [c.strip() for c in rows[0]]
    int_col = None
    if label_column is not None and not isinstance(label_column, str):
        if not (isinstance(label_column, numbers.Integral) and not isinstance(label_column, bool) and
                -width <= label_column < width):
            raise NoisylabInputError(f"label_column must be a column name or an index in [-{width}, {width}); "
                                     f"got {label_column!r}.")
        int_col = int(label_column) % width
    named = [j for j, c in enumerate(first) if c.lower() in _CSV_LABEL_NAMES]
    feature_cells = [c for j, c in enumerate(first) if j != (width - 1 if int_col is None else int_col)]
    header = (bool(named) or isinstance(label_column, str) or not all(_is_float(c) for c in feature_cells)
              or _pandas_header(first, rows[1:]))
    body = rows[1:] if header else rows
    if not body:
        raise NoisylabInputError(f"{p} has a header but no data rows.")
    bad = next((i for i, r in enumerate(body) if len(r) != width), None)
    if bad is not None:
        raise NoisylabInputError(f"{p}: data row {bad} has {len(body[bad])} columns; the first row has {width}.")
    if width < 2:
        raise NoisylabInputError(f"{p}: expected feature columns and a label column; got {width} column.")
    if isinstance(label_column, str):
        if label_column not in first:
            raise NoisylabInputError(f"{p}: label column {label_column!r} not found; the columns are {first}.")
        col = first.index(label_column)
    elif int_col is not None:
        col = int_col
    elif len(named) > 1:
        raise NoisylabInputError(f"{p}: several columns have a label name ({[first[j] for j in named]}); pass "
                                 "label_column to say which one holds the labels (the others would be features).")
    else:
        col = named[0] if named else width - 1
    labels = [r[col].strip() for r in body]
    empty = [i for i, v in enumerate(labels) if not v]
    if empty:
        raise NoisylabInputError(f"{p}: data row {empty[0]} has an empty label (column {col}"
                                 f"{' ' + repr(first[col]) if header else ''}; {len(empty)} row(s) in all); every "
                                 "row needs a label.")
    feats = [[c for j, c in enumerate(r) if j != col] for r in body]
    try:
        X = np.asarray(feats, dtype=np.float64)
    except ValueError:
        for i, r in enumerate(feats):
            for j, c in enumerate(r):
                if not _is_float(c):
                    raise NoisylabInputError(
                        f"{p}: feature value {c!r} in data row {i} is not a number (the label column is "
                        f"column {col}{' ' + repr(first[col]) if header else ''})."
                    ) from None
        raise
    _check_finite(X, p, "the features")
    # Whole-number floats ("3.0") are class indices, as in noisylab.io.read_labels (one rule for both).
    ints = [_maybe_number(v) for v in labels]
    y = np.asarray(ints, dtype=np.int64) if all(i is not None for i in ints) else np.asarray(labels)
    parts, names = _encode([y], None, p)
    return X, parts[0], names, (first[col] if header else col)


def load_arrays(path, label_column=None) -> Dataset:
    """Inputs and labels from an ``.npz`` or a ``.csv`` file.

    Parameters
    ----------
    path : str or Path
        ``.npz`` with inputs under ``X``, ``x`` or ``features`` and labels under
        ``y`` or ``labels``; optionally ``X_test``/``y_test`` and
        ``class_names``.  ``.csv``: one example per row, the label in the column
        whose header is one of :data:`noisylab.io.LABEL_COLUMN_NAMES`
        (``label``, ``class``, ``target``, ``y``, ...; the names
        :func:`noisylab.io.read_labels` recognises) or else the last column.
        The header row is optional: the first row is a header when it names a
        label column, when a feature cell of it is not a number, or when it is
        pandas' default ``0,1,...,d`` (three or more columns, or a body that is
        not all integers).  A UTF-8 byte-order mark is ignored.  Labels that
        are all integers, or whole-number floats such as ``3.0``, are class
        indices; anything else is a class name.
    label_column : str or int, optional
        CSV only: the label column's name (in the header) or index.  Needed
        when several columns have a label name.

    Returns
    -------
    Dataset
        ``X`` float32 as stored (``.csv``: (n, d)).  Labels given as names are
        encoded with :func:`noisylab.io.encode_labels` (sorted names, shared by
        the train and test parts); integer labels get names ``"0"...``
        unless the file has ``class_names``.

    Raises
    ------
    NoisylabInputError
        Missing, damaged or unreadable file, missing keys, a missing or
        ambiguous label column, an empty label (the message names the row),
        non-numeric features, NaN or infinite inputs (the message names the
        first bad row), mismatched lengths, or a file type other than
        ``.npz``/``.csv`` (a lone ``.npy`` holds no labels).

    Warns
    -----
    UserWarning
        Integer labels without ``class_names`` that leave classes
        ``0..max(y)`` without examples (1-based or sparse ids).
    """
    p = _check_file(path)
    ext = p.suffix.lower()
    if ext == ".npz":
        X, y, Xte, yte, names = _load_npz(p)
        return Dataset(X, y, class_names=names, name=p.stem, X_test=Xte, y_test=yte,
                       meta={"source": str(p), "format": "npz"})
    if ext in (".csv", ".tsv"):
        X, y, names, col = _load_csv(p, label_column)
        return Dataset(X, y, class_names=names, name=p.stem, meta={"source": str(p), "format": "csv",
                                                                     "label_column": col})
    raise NoisylabInputError(
        f"Unsupported data file type {ext!r} ({p}); give an .npz (arrays X and y) or a .csv (features and a "
        "label column). A .npy holds a single array, so it cannot carry both inputs and labels."
    )


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------
#: Built-in data sets by name (the CLI's ``--dataset NAME``).
DATASETS = {"digits": load_digits, "mnist1d": load_mnist1d, "gaussian": load_gaussian_mixture}


def _check_loader_kwargs(loader, kwargs, what) -> None:
    """Options the loader does not take are a clear error, not a ``TypeError`` from the call."""
    params = inspect.signature(loader).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = [n for n, p in params.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        options = accepted[1:] if loader in (load_cifar, load_image_folder, load_arrays) else accepted
        raise NoisylabInputError(f"{what}: {loader.__name__} takes no option {', '.join(map(repr, unknown))}; "
                                 f"its options are {', '.join(options) if options else '(none)'}.")


def get_dataset(name_or_path, **kwargs) -> Dataset:
    """Load a registered data set by name, or user data by path.

    Parameters
    ----------
    name_or_path : str or Path
        A key of :data:`DATASETS`, or a path: a folder with ``data_batch_1``
        (CIFAR-10) or with ``train`` and ``meta`` pickles (CIFAR-100), any other
        folder (an image folder), or an ``.npz``/``.csv`` file.
    **kwargs
        Passed to the loader (e.g. ``n_train`` for ``mnist1d``).

    Raises
    ------
    NoisylabInputError
        An unknown name (the message lists the options and suggests the closest)
        or a path that does not exist.
    """
    if isinstance(name_or_path, str) and name_or_path in DATASETS:
        loader = DATASETS[name_or_path]
        _check_loader_kwargs(loader, kwargs, name_or_path)
        return loader(**kwargs)
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise NoisylabInputError(f"dataset must be a name or a path; got {type(name_or_path).__name__}.")
    p = Path(name_or_path)
    if p.is_dir():
        loader = load_cifar if _cifar_kind(p) else load_image_folder
        _check_loader_kwargs(loader, kwargs, p)
        return loader(p, **kwargs)
    if p.is_file():
        _check_loader_kwargs(load_arrays, kwargs, p)
        return load_arrays(p, **kwargs)
    text = str(name_or_path)
    if os.sep in text or "/" in text or p.suffix:
        raise NoisylabInputError(f"Data set path not found: {p}")
    try:
        check_option("dataset", text, list(DATASETS))
    except NoisylabInputError as exc:
        raise NoisylabInputError(
            f"{exc} Or give a path: a CIFAR python folder, an image folder, an .npz or a .csv file."
        ) from None
    raise AssertionError("unreachable")  # pragma: no cover


def to_tensors(ds: Dataset, device="cpu", test: bool = False):
    """``(X, y)`` of a data set as torch tensors (float32, int64) on ``device``.

    Parameters
    ----------
    ds : Dataset
    device : str or torch.device, default="cpu"
    test : bool, default=False
        Return the fixed test split (``X_test``, ``y_test``) instead.
    """
    import torch

    if test:
        if ds.X_test is None:
            raise NoisylabInputError(f"Dataset {ds.name!r} has no fixed test split; use ds.split().")
        X, y = ds.X_test, ds.y_test
    else:
        X, y = ds.X, ds.y
    return (torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)).to(device),
            torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64)).to(device))
