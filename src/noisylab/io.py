"""Reading labels and predicted probabilities from files; atomic writes.

Formats
-------
labels
    ``.npy`` (1-D array), ``.npz`` (array ``labels``, ``noisy_labels`` or
    ``given_labels``, or the only array), ``.csv``/``.txt``/``.tsv`` (one
    label per line, optionally a header; with two columns ``id,label``), ``.json``
    (a list of labels, an object ``{row index: label}`` with keys ``"0"`` ..
    ``"n-1"``, or the CL paper's ``{file path: label}`` mapping).  Labels may be
    integers (whole-number floats such as ``3.0`` count as integers) or class
    names.  A CSV header is recognised by the label column's name, one of
    :data:`LABEL_COLUMN_NAMES` (the data-set CSV reader of
    :mod:`noisylab.torch.data` uses the same names).

    Order: the rows of the file, except for a JSON object, whose entries are
    returned sorted by key: integer keys numerically, path keys by their path
    components (``a/b.png`` < ``a-x/b.png``, as torchvision's ImageFolder
    orders a flat ``<class>/<file>`` folder).  The keys are kept in
    ``LabelData.ids``; to pair them with a data set's rows use
    :func:`align_labels`, which matches each key to a row instead of relying on
    the order.
pred_probs
    ``.npy`` (memory-mapped, so files larger than memory work), ``.npz``
    (array ``pred_probs`` or the only array), ``.csv``/``.tsv`` (numeric
    matrix, optional header row).
"""
from __future__ import annotations

import collections
import contextlib
import csv
import json
import os
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from ._validation import NoisylabInputError

__all__ = [
    "LABEL_COLUMN_NAMES",
    "LabelData",
    "align_labels",
    "atomic_write",
    "check_output_folder",
    "check_output_path",
    "encode_labels",
    "parse_class_names",
    "read_labels",
    "read_matrix",
    "read_pred_probs",
    "read_pred_probs_dask",
]

#: Header names (case-insensitive) recognised as the label column, by ``read_labels`` and by the
#: data-set CSV reader of :mod:`noisylab.torch.data` alike.
LABEL_COLUMN_NAMES = ("label", "labels", "given_label", "noisy_label", "true_label", "y", "class", "target")
_HEADER_NAMES = LABEL_COLUMN_NAMES
# What a damaged file raises from np.load / json / csv: a truncated or non-zip .npz raises
# zipfile.BadZipFile (not an OSError), a corrupt compressed member zlib.error.
_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)
_LABEL_KEYS = ("labels", "noisy_labels", "given_labels", "y")
_PROBA_KEYS = ("pred_probs", "probs", "probabilities")


@dataclass
class LabelData:
    """Labels as read from a file.

    ``values`` (n,) holds the labels as given (ints or strings); ``ids`` the
    example identifiers when the file has them (JSON keys, a CSV id column),
    else None.
    """

    values: np.ndarray
    ids: np.ndarray | None = None


def _check_file(path) -> Path:
    p = Path(path)
    if not p.exists():
        raise NoisylabInputError(f"File not found: {p}")
    if p.is_dir():
        raise NoisylabInputError(f"Expected a file, got a directory: {p}")
    return p


def _pick(npz, keys, path, what):
    names = list(npz.files)
    for k in keys:
        if k in names:
            return npz[k]
    if len(names) == 1:
        return npz[names[0]]
    raise NoisylabInputError(
        f"{path} holds arrays {names}; expected one named {' or '.join(keys)} for the {what}."
    )


def _maybe_number(s: str):
    """``s`` as an int class index: ``"3"`` and whole-number floats such as ``"3.0"`` (what pandas
    writes for an integer column that had missing values); None for anything else."""
    try:
        return int(s)
    except ValueError:
        pass
    try:
        f = float(s)
    except ValueError:
        return None
    return int(f) if f.is_integer() else None


def _csv_rows(p: Path):
    delimiter = "\t" if p.suffix.lower() == ".tsv" else ","
    try:
        # utf-8-sig drops the byte-order mark Excel writes ("CSV UTF-8"), which would otherwise stick to the
        # first cell and turn a numeric first row into a "header".
        with open(p, newline="", encoding="utf-8-sig") as fh:
            rows = [r for r in csv.reader(fh, delimiter=delimiter) if r and any(c.strip() for c in r)]
    except UnicodeDecodeError:
        raise NoisylabInputError(f"{p} is not a text CSV file.") from None
    if not rows:
        raise NoisylabInputError(f"{p} is empty.")
    return rows


def _is_int_text(k) -> bool:
    k = str(k).strip()
    return k.lstrip("-").isdigit() and k.count("-") <= 1 and not k.startswith("+")


def _path_key(k: str):
    """Sort key of a path-like id: its components, so ``a/b`` sorts before ``a-x/b`` (ImageFolder order)."""
    return PurePosixPath(str(k).replace("\\", "/")).parts


def _json_labels(p: Path, obj) -> LabelData:
    if isinstance(obj, dict):
        keys = list(obj)
        nulls = [k for k in keys if obj[k] is None]
        if nulls:
            raise NoisylabInputError(f"{p}: {len(nulls)} label(s) are null, e.g. for key {nulls[0]!r}; every "
                                     "entry needs a label (a class index or name).")
        if keys and all(_is_int_text(k) for k in keys):
            keys = sorted(keys, key=lambda k: int(k))  # row indices: numeric order, not "10" < "2"
        else:
            keys = sorted(keys, key=_path_key)
        return LabelData(np.asarray([obj[k] for k in keys]), np.asarray(keys))
    if isinstance(obj, list):
        nulls = [i for i, v in enumerate(obj) if v is None]
        if nulls:
            raise NoisylabInputError(f"{p}: {len(nulls)} label(s) are null, the first at position {nulls[0]}; every "
                                     "entry needs a label (a class index or name).")
        return LabelData(np.asarray(obj))
    raise NoisylabInputError(f"{p}: expected a JSON list of labels or an object {{id: label}}.")


def read_labels(path) -> LabelData:
    """Read labels from ``.npy``, ``.npz``, ``.csv``/``.txt``/``.tsv`` or ``.json``.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    LabelData
        ``values`` in the file's row order, except for a JSON object
        ``{id: label}``: its entries sorted by key (integer keys numerically,
        path keys by path component), with the keys in ``ids``.  A CSV with
        two columns ``id,label`` keeps its rows' order and its ids.  Pair
        ``ids`` with a data set's rows with :func:`align_labels`.

    Raises
    ------
    NoisylabInputError
        A missing, damaged or unsupported file, a null or empty label, or
        rows of different widths.  See the module docs for the formats.
    """
    p = _check_file(path)
    ext = p.suffix.lower()
    try:
        if ext == ".npy":
            return LabelData(np.load(p, allow_pickle=False))
        if ext == ".npz":
            with np.load(p, allow_pickle=False) as z:
                return LabelData(np.asarray(_pick(z, _LABEL_KEYS, p, "labels")))
        if ext == ".json":
            with open(p, encoding="utf-8-sig") as fh:
                obj = json.load(fh)
            return _json_labels(p, obj)
        if ext in (".csv", ".txt", ".tsv"):
            rows = _csv_rows(p)
            width = len(rows[0])
            if any(len(r) != width for r in rows):
                raise NoisylabInputError(f"{p}: rows have different numbers of columns.")
            if width > 2:
                raise NoisylabInputError(f"{p}: expected one column (label) or two (id,label); got {width}.")
            col = width - 1
            first = rows[0][col].strip()
            rest_ints = len(rows) > 1 and all(_maybe_number(r[col].strip()) is not None for r in rows[1:])
            header = first.lower() in _HEADER_NAMES or (_maybe_number(first) is None and rest_ints)
            if not header and len(rows) >= 3 and _maybe_number(first) is None:
                counts = collections.Counter(r[col].strip() for r in rows)
                if counts[first] == 1 and all(c >= 2 for v, c in counts.items() if v != first):
                    raise NoisylabInputError(
                        f"{p}: the first row {first!r} occurs only once while every other label repeats; if it is "
                        f"a header, name the column one of {', '.join(sorted(_HEADER_NAMES))}; if it is a label, "
                        "add a header row 'label' above it.")
            body = rows[1:] if header else rows
            vals = [r[col].strip() for r in body]
            empty = [i for i, v in enumerate(vals) if not v]
            if empty:
                raise NoisylabInputError(f"{p}: data row {empty[0]} has an empty label ({len(empty)} row(s) in all); "
                                         "every row needs a label.")
            ints = [_maybe_number(v) for v in vals]
            values = np.asarray(ints, dtype=np.int64) if all(i is not None for i in ints) else np.asarray(vals)
            ids = np.asarray([r[0].strip() for r in body]) if width == 2 else None
            return LabelData(values, ids)
    except NoisylabInputError:
        raise
    except (*_READ_ERRORS, json.JSONDecodeError) as exc:
        raise NoisylabInputError(f"Could not read labels from {p}: {exc}") from None
    raise NoisylabInputError(f"Unsupported labels file type {ext!r} ({p}); use .npy, .npz, .csv or .json.")


def _show(items, k=5) -> str:
    items = list(items)
    return ", ".join(repr(str(i)) for i in items[:k]) + (f" (and {len(items) - k} more)" if len(items) > k else "")


def align_labels(labels: LabelData, n: int, *, files=None, exclude_parent=None, source="labels") -> np.ndarray:
    """The label values of ``labels`` in a data set's row order, matched by id where the file has ids.

    Parameters
    ----------
    labels : LabelData
        As returned by :func:`read_labels`.
    n : int
        Number of rows of the data set.
    files : sequence of str, optional
        The data set's file of each row, as paths relative to its split folder
        (``<class>/<file>``; see :func:`noisylab.torch.data.image_folder_files`).
        None for a data set without files (CIFAR pickles, arrays).
    exclude_parent : str, optional
        A folder name (e.g. ``"test"``) whose files are not the data set's: a
        key ``.../test/<class>/<file>`` is then not matched to ``<class>/<file>``.
    source : str
        Name of the labels file, for the messages.

    Returns
    -------
    ndarray (n,)
        Without ids: the values as they are (their order is the data set's).
        Integer ids (``"0"`` .. ``"n-1"``): row indices, each row exactly once.
        Path ids: each key is matched to the one file that it ends with, by
        path components (``/data/cifar10/train/cat/1_cat.png`` matches
        ``cat/1_cat.png``); every key must match one file and every file one key.

    Raises
    ------
    NoisylabInputError
        Path ids with ``files=None`` (the keys cannot be matched to rows),
        keys without a file or files without a key (a few of each are named),
        two keys for one file, or row indices that are not ``0..n-1``.
    """
    values, ids = np.asarray(labels.values), labels.ids
    if ids is None:
        return values
    ids = [str(i).strip() for i in np.asarray(ids).tolist()]
    if ids and all(_is_int_text(i) for i in ids):
        idx = np.asarray([int(i) for i in ids], dtype=np.int64)
        if idx.shape[0] != n or np.any(np.sort(idx) != np.arange(n)):
            bad = idx[(idx < 0) | (idx >= n)]
            raise NoisylabInputError(
                f"{source}: its ids are integers, read as row indices, but they are not each of 0..{n - 1} once "
                f"(the data set has {n} rows; {idx.shape[0]} ids"
                + (f", out of range: {_show(bad.tolist())}" if bad.size else ", some repeated") + ").")
        out = np.empty_like(values)
        out[idx] = values
        return out
    if files is None:
        raise NoisylabInputError(
            f"{source} gives labels keyed by file path (e.g. {ids[0]!r}), but this data set has no file paths "
            "(CIFAR pickles, .npz, .csv), so the keys cannot be matched to its rows and their sorted order is not "
            "its row order. Give the labels in the data set's row order (.npy, a one-column .csv or a JSON list), "
            "or a JSON object whose keys are the row indices \"0\"..\"n-1\"; or use as the data set the image "
            "folder the paths refer to (root/train/<class>/<file>).")
    files = [str(f).replace("\\", "/") for f in files]
    if len(set(files)) != len(files):  # pragma: no cover - an image folder lists each file once
        raise NoisylabInputError("the data set lists a file twice.")
    lookup = {f: i for i, f in enumerate(files)}
    depths = sorted({len(_path_key(f)) for f in files}, reverse=True)
    parts = [_path_key(k) for k in ids]

    def match(kp):
        for d in depths:  # the longest relative path that the key ends with
            if len(kp) >= d:
                row = lookup.get("/".join(kp[-d:]))
                if row is not None:
                    if exclude_parent is not None and len(kp) > d and kp[-d - 1] == exclude_parent:
                        return -1
                    return row
        return -1

    rows = np.fromiter((match(kp) for kp in parts), dtype=np.int64, count=len(parts))
    unmatched = [ids[i] for i in np.flatnonzero(rows < 0)]
    matched = rows[rows >= 0]
    counts = np.bincount(matched, minlength=len(files))
    missing = [files[i] for i in np.flatnonzero(counts == 0)]
    if unmatched or missing or np.any(counts > 1):
        msg = [(f"{source}: its {len(ids)} path keys do not match the data set's {len(files)} files one to one "
                "(a key matches the file whose path relative to the split folder, <class>/<file>, it ends with).")]
        if unmatched:
            msg.append(f"{len(unmatched)} key(s) match no file: {_show(unmatched)}.")
        if missing:
            msg.append(f"{len(missing)} file(s) have no key: {_show(missing)}.")
        dup = np.flatnonzero(counts > 1)
        if dup.size:
            msg.append(f"{dup.size} file(s) match several keys: {_show(files[i] for i in dup)}.")
        raise NoisylabInputError(" ".join(msg))
    if len(files) != n:
        raise NoisylabInputError(
            f"{source}: its keys match the {len(files)} files of the data set, but the training split has {n} rows "
            "(a folder without train/ is split at random); use the root/train/<class>/ layout with path keys.")
    out = np.empty_like(values)
    out[rows] = values
    return out


def read_pred_probs(path, *, mmap: bool = True) -> np.ndarray:
    """Read an (n, K) matrix of predicted probabilities (``.npy`` is memory-mapped)."""
    p = _check_file(path)
    ext = p.suffix.lower()
    try:
        if ext == ".npy":
            return np.load(p, mmap_mode="r" if mmap else None, allow_pickle=False)
        if ext == ".npz":
            with np.load(p, allow_pickle=False) as z:
                return np.asarray(_pick(z, _PROBA_KEYS, p, "predicted probabilities"))
        if ext in (".csv", ".txt", ".tsv"):
            return read_matrix(p)
    except NoisylabInputError:
        raise
    except _READ_ERRORS as exc:
        raise NoisylabInputError(f"Could not read pred_probs from {p}: {exc}") from None
    raise NoisylabInputError(f"Unsupported pred_probs file type {ext!r} ({p}); use .npy, .npz or .csv.")


def read_pred_probs_dask(path, rows_per_block: int = 262144):
    """Open a ``.npy`` file of predicted probabilities as a lazy ``dask.array`` chunked by rows.

    Each block is read by the Dask worker that processes it (on a cluster the
    workers need the file at the same path).  Pass the result to any
    detection function (``find_label_issues``, ``get_label_quality_scores``,
    ``ConfidentLearning.fit`` ...): it runs blockwise, on the active
    ``dask.distributed`` client if there is one, with results identical to
    the in-memory path.  Needs ``pip install "noisylab[dask]"``.  See
    :func:`noisylab.detect._dask.dask_array_from_npy`.
    """
    from .detect._dask import dask_array_from_npy

    return dask_array_from_npy(path, rows_per_block=rows_per_block)


def read_matrix(path) -> np.ndarray:
    """Read a numeric matrix from ``.npy`` or ``.csv`` (an optional non-numeric header row is skipped)."""
    p = _check_file(path)
    if p.suffix.lower() == ".npy":
        try:
            return np.load(p, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise NoisylabInputError(f"Could not read {p} as a .npy matrix: {exc}") from None
    rows = _csv_rows(p)
    try:
        [float(c) for c in rows[0]]
    except ValueError:
        rows = rows[1:]
    if not rows:
        raise NoisylabInputError(f"{p} has a header but no data rows.")
    widths = {len(r) for r in rows}
    if len(widths) > 1:
        bad = next(i for i, r in enumerate(rows) if len(r) != len(rows[0]))
        raise NoisylabInputError(
            f"{p}: rows have different numbers of columns ({len(rows[0])} in the first row, "
            f"{len(rows[bad])} in data row {bad})."
        )
    try:
        M = np.asarray([[float(c) for c in r] for r in rows], dtype=np.float64)
    except ValueError as exc:
        raise NoisylabInputError(f"{p}: expected numbers only: {exc}") from None
    return M


def encode_labels(values, classes=None):
    """Map labels given as class names (or ints) to class indices.

    Parameters
    ----------
    values : array-like (n,)
    classes : sequence, optional
        Class of each column of ``pred_probs``, in order.  Default: integer
        labels are used as they are; names are sorted (the column order of
        scikit-learn's ``predict_proba``).

    Returns
    -------
    codes : ndarray of int64 (n,)
    classes : ndarray or None
        The class of each index (None when integer labels were used as is).
    """
    values = np.asarray(values)
    if values.ndim != 1:
        raise NoisylabInputError(f"labels must be a 1-D array (n,); got shape {values.shape}.")
    if values.dtype.kind == "b":
        raise NoisylabInputError(
            "labels are booleans; give integer class indices or class names (cast True/False with .astype(int) "
            "if they really are classes 1/0)."
        )
    if classes is None:
        if values.dtype.kind in "iu":
            return values.astype(np.int64), None
        if values.dtype.kind == "f":
            from ._validation import check_labels

            return check_labels(values), None
        try:
            classes = np.unique(values)
        except TypeError:
            kinds = sorted({type(v).__name__ for v in values.tolist()})
            raise NoisylabInputError(f"labels mix values of types {', '.join(kinds)} that cannot be sorted into "
                                     "classes; give all labels as names or all as integers (no None).") from None
    classes = np.asarray(classes)
    if len(set(classes.tolist())) != len(classes):
        raise NoisylabInputError("class names must be unique.")
    lookup = {c: i for i, c in enumerate(classes.tolist())}
    # Compare as text when the classes are text; astype(str) sizes the strings to fit (casting to
    # the classes' own fixed width would truncate "catfish" to "cat").
    keyed = values.astype({"U": str, "S": bytes}[classes.dtype.kind]) if classes.dtype.kind in "US" else values
    try:
        codes = np.fromiter((lookup[v] for v in keyed.tolist()), dtype=np.int64, count=len(values))
    except KeyError as exc:
        shown = classes[:10].tolist()
        more = "..." if len(classes) > 10 else ""
        raise NoisylabInputError(
            f"label {exc.args[0]!r} is not one of the {len(classes)} classes {shown}{more}"
        ) from None
    return codes, classes


def check_output_path(path, *, what: str = "Output path", suffixes=None) -> Path:
    """``path`` as a :class:`~pathlib.Path` if a file can be written there, else a clear error.

    Checked before any work is done: not an existing folder, its folder exists, is a folder and
    is writable, and (with ``suffixes``) the file name ends in one of them.
    """
    path = Path(path)
    if suffixes is not None and path.suffix.lower() not in suffixes:
        raise NoisylabInputError(f"{what} must be a {' or '.join(suffixes)} file; got {path.name!r}.")
    if path.is_dir():
        raise NoisylabInputError(f"{what} is a directory, expected a file name: {path}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise NoisylabInputError(f"Output folder does not exist: {parent}")
    if not parent.is_dir():
        raise NoisylabInputError(f"Output folder {parent} is not a folder.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise NoisylabInputError(f"cannot write in {parent}: permission denied.")
    return path


def check_output_folder(path, *, what: str = "--out") -> Path:
    """A folder that is or can be created: not a file, and its nearest existing ancestor is writable."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NoisylabInputError(f"{what} {path} exists and is not a folder.")
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise NoisylabInputError(f"{what} {path} cannot be created: {probe} is not a folder.")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise NoisylabInputError(f"{what} {path} cannot be written: permission denied in {probe}.")
    return path


def output_file_mode(path: Path) -> int:
    """Permission bits for a file written to ``path``: those of the file it replaces, else the
    default of a new file (0o666 minus the umask)."""
    if path.exists():
        return path.stat().st_mode & 0o7777
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_write(path, mode="w", durable=True, **kwargs):
    """Write to a temporary file next to ``path`` and rename it into place on success.

    A crash or an exception leaves either the old file or none, never a half-written one.
    ``durable=False`` skips the ``fsync`` before the rename: still atomic for a killed process
    (the page cache survives it), not against a power loss -- for files rewritten very often.
    """
    path = check_output_path(path)
    file_mode = output_file_mode(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    except OSError as exc:
        raise NoisylabInputError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        if "b" not in mode:  # text: UTF-8 whatever the locale (class names, ±, ...)
            kwargs.setdefault("encoding", "utf-8")
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.chmod(tmp, file_mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def parse_class_names(spec):
    """``--classes``: a file with one class name per line, or a comma-separated list; None passes.

    Returns an int array when every name is an integer, else a str array (the column order of
    ``pred_probs``).
    """
    if spec is None:
        return None
    path = Path(spec)
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as exc:
            raise NoisylabInputError(f"--classes {path}: not a UTF-8 text file ({exc}).") from None
        names = [line.strip() for line in text.splitlines() if line.strip()]
    else:
        names = [s.strip() for s in str(spec).split(",") if s.strip()]
    if not names:
        raise NoisylabInputError(f"--classes gave no class names: {spec!r}.")
    seen, dup = set(), []
    for name in names:
        if name in seen and name not in dup:
            dup.append(name)
        seen.add(name)
    if dup:
        raise NoisylabInputError(f"--classes must be unique (they name the columns of pred_probs); "
                                 f"repeated: {dup[:5]!r}.")
    if all(n.lstrip("-").isdigit() for n in names):
        return np.asarray([int(n) for n in names])
    return np.asarray(names)

