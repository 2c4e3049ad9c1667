"""The benchmark harness behind every ``noisylab bench`` subcommand.

A benchmark is a *grid* of runs (a TOML file), a *runner* function that does
one run, and a *result store* (a JSONL file, one finished run a line).
:func:`run_grid` runs the grid points whose results are not yet in the
store, so an interrupted benchmark resumes where it stopped, and
:func:`results_table` / :func:`protocol_lines` turn the records into the
markdown of a report.  This module needs no torch (the runner may).

Grid files
----------
::

    [experiment]
    name = "robust-mnist1d"
    runner = "noisylab.torch.robust:run_one"   # "module:function", imported where the run executes

    [protocol]            # fixed fields recorded with every run (model, epochs, selection rule ...)
    model = "cnn1d"
    epochs = 40

    [grid]                # cartesian product, first key slowest, last key fastest
    noise = ["symmetric:0.2", "pair:0.4"]
    method = ["standard", "coteaching"]
    seed = [0, 1, 2]

    [[exclude]]           # optional: drop the grid points matching all given fields
    noise = "pair:0.4"    # (a list means "any of these values")
    method = "coteaching"

    [[include]]           # optional extra runs (e.g. the clean ceiling), merged over [protocol]
    noise = "none"
    method = "standard"
    seed = [0, 1, 2]      # lists in an include entry expand (cartesian product) too

Rules:

* ``[experiment]`` must give ``runner`` as ``"package.module:function"``;
  ``name`` and any other keys are kept in :attr:`Grid.experiment`.
* A run *spec* is a flat dict ``{**protocol, **grid point}``; values are
  strings, integers, finite floats or booleans (no tables, arrays or dates).
* A ``[grid]`` key may not also be a ``[protocol]`` key; each ``[grid]``
  value is a non-empty list without repeated values.
* ``[[exclude]]`` applies to the cartesian product only and names grid keys
  only; ``[[include]]`` entries are always run and may override protocol
  fields (``epochs = 100`` for one extra run, say).
* :meth:`Grid.runs` lists the grid points in product order (minus the
  excluded ones), then the include entries in file order.  A run whose key
  (see below) equals an earlier one's is listed once.

Run keys
--------
:func:`run_key` is the first 16 hex digits of the SHA-256 of the spec's
canonical JSON: keys sorted, no whitespace, a float equal to an integer
written as that integer (``1.0`` and ``1`` give the same key, as do ``0.5``
and ``0.50`` which are the same float), other floats in Python's shortest
round-trip form.  Booleans stay ``true``/``false`` (``true`` is not ``1``).
Keys identify runs across sessions, so this encoding never changes.

Result store
------------
:class:`ResultStore` appends one JSON line per finished run::

    {"key": ..., "spec": {...}, "result": {...},
     "meta": {"seconds": ..., "host": ..., "finished_at": ..., "noisylab_version": ...}}

with one ``os.write`` on an ``O_APPEND`` descriptor under an exclusive
``flock`` followed by ``fsync``, so several processes (on one machine; NFS
locks are not relied upon) can append to one store.  A last line cut short by
a killed writer is ignored with a warning and cut off by the next append; a
bad line anywhere else is an error naming the line.  If a key appears twice
the last record wins.

Each record's ``meta.runner`` names the runner (``"module:function"``) that
produced it; a stored run counts as done only for that runner (records from
before this field count as done for any runner), so a changed runner reruns.
Non-finite numbers in a result are stored as ``null`` and listed in
``meta.nonfinite`` (the store stays standard JSON); tables leave them out of
mean and std and say how many were left out.

Running
-------
:func:`run_grid` runs inline (``n_jobs=1``), in ``n_jobs`` local worker
processes (``spawn`` start method, one spec at a time per worker) or on a
``dask.distributed`` client.  Every spec is checked before any run starts
(:func:`validate_grid`: the runner's own checks, when it has them).  Only the
calling process writes the store, each result as soon as its run finishes, so
a killed benchmark loses only the runs that were still going; before a run
starts the store is read again (when it changed), so a run another process
has finished meanwhile is skipped (local runs; a Dask grid is submitted at
once).  A run that raises, or whose worker process dies (segfault, OOM kill),
is not recorded; a dead worker is replaced and the others go on, and once
all have finished one :class:`BenchRunError` lists every failed spec with
its exception (rerunning then retries only the failed runs).  Ctrl-C stops
the running runs and starts no queued one; the finished ones are kept and
KeyboardInterrupt goes on to the caller.  With
``n_jobs > 1`` each worker limits its BLAS / OpenMP / torch threads to
``max(1, cpu_count // n_workers)``.  Scripts that call :func:`run_grid` with
``n_jobs > 1`` need the usual ``if __name__ == "__main__":`` guard.
"""
from __future__ import annotations

import contextlib
import difflib
import fcntl
import hashlib
import importlib
import itertools
import json
import math
import numbers
import os
import re
import socket
import sys
import time
import tomllib
import traceback
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from .._format import markdown_table
from .._validation import NoisylabInputError

__all__ = [
    "BenchRunError",
    "Grid",
    "ResultStore",
    "check_spec_fields",
    "current_protocol",
    "load_grid",
    "protocol_lines",
    "resolve_runner",
    "results_table",
    "run_grid",
    "run_key",
    "runner_name",
    "validate_grid",
]

_SECTIONS = ("experiment", "protocol", "grid", "include", "exclude")
_RUNNER_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_MISSING = "—"


class BenchRunError(NoisylabInputError):
    """Some runs of a grid raised; the others finished and were recorded.

    A subclass of :class:`~noisylab.NoisylabInputError`, so the command line
    reports it as a message.  ``failures`` holds one dict per failed run with
    ``key``, ``spec``, ``error`` (``"ExceptionType: message"``) and
    ``traceback`` (the worker's, as text).
    """

    def __init__(self, message, failures):
        super().__init__(message)
        self.failures = failures


# --------------------------------------------------------------------------- keys

def _canonical(obj, where="spec"):
    """The JSON-ready canonical form of ``obj`` (see the module notes on run keys)."""
    if obj is None or isinstance(obj, (bool, np.bool_)):
        return None if obj is None else bool(obj)
    if isinstance(obj, numbers.Integral):
        return int(obj)
    if isinstance(obj, numbers.Real):
        x = float(obj)
        if not math.isfinite(x):
            raise NoisylabInputError(f"{where}: values must be finite numbers; got {x!r}.")
        return int(x) if x.is_integer() else x
    if isinstance(obj, str):
        return obj
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                raise NoisylabInputError(f"{where}: keys must be strings; got {k!r}.")
            out[k] = _canonical(v, f"{where}.{k}")
        return out
    if isinstance(obj, (list, tuple)):
        return [_canonical(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    raise NoisylabInputError(
        f"{where}: expected a string, number, boolean, list or table; got {type(obj).__name__} {obj!r}."
    )


def _canonical_json(obj) -> str:
    return json.dumps(_canonical(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def run_key(spec) -> str:
    """Stable 16-hex-digit identifier of a run spec.

    Parameters
    ----------
    spec : dict
        The run's fields (str keys; str, int, float, bool values, or nested
        lists / dicts of them).

    Returns
    -------
    str
        ``sha256(canonical JSON of spec)[:16]``: keys sorted, no whitespace,
        integral floats written as integers (``1.0`` and ``1`` are the same
        run), booleans distinct from integers.  Non-finite floats are rejected.
    """
    if not isinstance(spec, Mapping):
        raise NoisylabInputError(f"a run spec must be a dict; got {type(spec).__name__}.")
    return hashlib.sha256(_canonical_json(spec).encode("utf-8")).hexdigest()[:16]


def _same(a, b) -> bool:
    return _canonical_json(a) == _canonical_json(b)


# --------------------------------------------------------------------------- grids

@dataclass
class Grid:
    """A parsed grid file (see the module notes); :meth:`runs` lists the run specs."""

    runner: str
    protocol: dict = field(default_factory=dict)
    grid: dict = field(default_factory=dict)
    include: list = field(default_factory=list)
    exclude: list = field(default_factory=list)
    experiment: dict = field(default_factory=dict)
    source: str = "<dict>"

    @property
    def name(self) -> str:
        """``[experiment] name``; without one, the grid file's stem (``"grid"`` for a grid not read from a file)."""
        name = str(self.experiment.get("name", "")).strip()
        if name:
            return name
        return Path(self.source).stem if not self.source.startswith("<") else "grid"

    def runs(self) -> list[dict]:
        """Run specs in order: grid product (minus excluded points), then includes; keys unique."""
        specs = []
        keys = list(self.grid)
        for values in itertools.product(*(self.grid[k] for k in keys)) if keys else ():
            point = dict(zip(keys, values))
            if any(_matches(point, ex) for ex in self.exclude):
                continue
            specs.append({**self.protocol, **point})
        for entry in self.include:
            for point in _expand(entry):
                specs.append({**self.protocol, **point})
        seen, out = set(), []
        for s in specs:
            k = run_key(s)
            if k not in seen:
                seen.add(k)
                out.append(s)
        return out

    def __len__(self):
        return len(self.runs())


def _expand(entry: dict) -> list[dict]:
    keys = list(entry)
    lists = [entry[k] if isinstance(entry[k], list) else [entry[k]] for k in keys]
    return [dict(zip(keys, vals)) for vals in itertools.product(*lists)]


def _matches(point: dict, ex: dict) -> bool:
    for k, v in ex.items():
        allowed = v if isinstance(v, list) else [v]
        if not any(_same(point[k], a) for a in allowed):
            return False
    return True


def _check_scalar(value, where, src):
    if isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise NoisylabInputError(f"{src}: {where} must be a finite number; got {value!r}.")
        return value
    kind = {dict: "a table", list: "an array"}.get(type(value), type(value).__name__)
    raise NoisylabInputError(
        f"{src}: {where} must be a string, integer, float or boolean; got {kind} ({value!r})."
    )


def _check_list(value, where, src, *, allow_scalar):
    if isinstance(value, list):
        if not value:
            raise NoisylabInputError(f"{src}: {where} is an empty list; give at least one value.")
        for i, v in enumerate(value):
            _check_scalar(v, f"{where}[{i}]", src)
        canon = [_canonical_json(v) for v in value]
        dup = next((v for i, v in enumerate(value) if canon[i] in canon[:i]), None)
        if len(set(canon)) != len(canon):
            raise NoisylabInputError(f"{src}: {where} lists the value {dup!r} twice.")
        return list(value)
    if allow_scalar:
        return _check_scalar(value, where, src)
    raise NoisylabInputError(
        f"{src}: {where} must be a list of values; got {value!r} (put fixed fields in [protocol])."
    )


def _check_table(value, where, src) -> dict:
    if not isinstance(value, dict):
        raise NoisylabInputError(f"{src}: {where} must be a table; got {type(value).__name__} {value!r}.")
    return value


def _check_entries(value, name, src) -> list[dict]:
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise NoisylabInputError(f"{src}: [[{name}]] must be an array of tables; got {value!r}.")
    return [_check_table(e, f"[[{name}]] entry {i + 1}", src) for i, e in enumerate(value)]


def _check_runner_syntax(runner, src):
    if not isinstance(runner, str) or not _RUNNER_RE.match(runner):
        raise NoisylabInputError(
            f"{src}: [experiment] runner must be \"package.module:function\" (e.g. "
            f"\"noisylab.torch.robust:run_one\"); got {runner!r}."
        )
    return runner


_EXPERIMENT_KEYS = ("name", "runner", "description")


def _check_include_keys(entry, i, grid, protocol, src):
    """Warn about an ``[[include]]`` entry that leaves out a grid key or names a likely typo of one.

    A key that is neither a grid key nor a protocol field is legal (a per-run protocol override the
    runner checks), so it only draws a warning when it is close to a known key the entry lacks."""
    known = list(grid) + list(protocol)
    missing = [k for k in grid if k not in entry]
    typos = []
    for k in entry:
        if k in grid or k in protocol:
            continue
        near = difflib.get_close_matches(k, known, 1, cutoff=0.75)
        if near and near[0] not in entry:
            typos.append(f"{k!r} (did you mean {near[0]!r}?)")
    if typos or (grid and missing):
        parts = []
        if typos:
            parts.append(f"names {', '.join(typos)}, neither a [grid] key nor a [protocol] field")
        if grid and missing:
            parts.append(f"leaves out the grid key(s) {', '.join(map(repr, missing))} (its runs have no such field)")
        warnings.warn(f"{src}: [[include]] entry {i + 1} " + " and ".join(parts) + ".", UserWarning, stacklevel=4)


def _parse_grid_dict(doc: dict, src: str) -> Grid:
    if not isinstance(doc, Mapping):
        raise NoisylabInputError(f"{src}: a grid must be a table; got {type(doc).__name__}.")
    unknown = [k for k in doc if k not in _SECTIONS]
    if unknown:
        raise NoisylabInputError(
            f"{src}: unknown section(s) {', '.join(repr(k) for k in unknown)}; "
            f"expected {', '.join(repr(s) for s in _SECTIONS)}."
        )
    if "experiment" not in doc:
        raise NoisylabInputError(f"{src}: missing the [experiment] table (with runner = \"module:function\").")
    experiment = dict(_check_table(doc["experiment"], "[experiment]", src))
    if "runner" not in experiment:
        raise NoisylabInputError(f"{src}: [experiment] has no runner; add runner = \"package.module:function\".")
    runner = _check_runner_syntax(experiment["runner"], src)
    for k, v in experiment.items():
        _check_scalar(v, f"experiment.{k}", src)
    for k in experiment:
        if k not in _EXPERIMENT_KEYS:
            near = difflib.get_close_matches(k, _EXPERIMENT_KEYS, 1, cutoff=0.75)
            if near:
                warnings.warn(f"{src}: [experiment] key {k!r} is kept but not used; did you mean {near[0]!r}?",
                              UserWarning, stacklevel=3)

    protocol = dict(_check_table(doc.get("protocol", {}), "[protocol]", src))
    for k, v in protocol.items():
        _check_scalar(v, f"protocol.{k}", src)

    grid = {k: _check_list(v, f"grid.{k}", src, allow_scalar=False)
            for k, v in _check_table(doc.get("grid", {}), "[grid]", src).items()}
    clash = [k for k in grid if k in protocol]
    if clash:
        raise NoisylabInputError(
            f"{src}: {', '.join(repr(k) for k in clash)} is both a [protocol] field and a [grid] key; keep it "
            "in one of them."
        )

    include = []
    for i, entry in enumerate(_check_entries(doc.get("include", []), "include", src)):
        include.append({k: _check_list(v, f"include entry {i + 1}: {k}", src, allow_scalar=True)
                        for k, v in entry.items()})
        _check_include_keys(entry, i, grid, protocol, src)
    exclude = []
    for i, entry in enumerate(_check_entries(doc.get("exclude", []), "exclude", src)):
        if not entry:
            raise NoisylabInputError(f"{src}: [[exclude]] entry {i + 1} is empty (it would drop every grid point).")
        bad = [k for k in entry if k not in grid]
        if bad:
            raise NoisylabInputError(
                f"{src}: [[exclude]] entry {i + 1} names {', '.join(repr(k) for k in bad)}, which is not a [grid] "
                f"key; grid keys are {', '.join(repr(k) for k in grid) or '(none)'}."
            )
        exclude.append({k: _check_list(v, f"exclude entry {i + 1}: {k}", src, allow_scalar=True)
                        for k, v in entry.items()})
    out = Grid(runner=runner, protocol=protocol, grid=grid, include=include, exclude=exclude,
               experiment=experiment, source=src)
    if not grid and not include:
        raise NoisylabInputError(f"{src}: nothing to run; give a [grid] table or [[include]] entries.")
    if not out.runs():
        raise NoisylabInputError(f"{src}: [[exclude]] drops every grid point and there is no [[include]].")
    for i, ex in enumerate(exclude):
        if not any(_matches(dict(zip(grid, vals)), ex) for vals in itertools.product(*grid.values())):
            warnings.warn(f"{src}: [[exclude]] entry {i + 1} {ex} matches no grid point.", UserWarning, stacklevel=3)
    return out


def load_grid(source) -> Grid:
    """Read a grid (see the module notes for the format).

    Parameters
    ----------
    source : str, os.PathLike, dict or Grid
        A path to a ``.toml`` file; a string holding TOML text (recognised by
        a newline in it); the already-parsed table; or a :class:`Grid`
        (returned as is).

    Returns
    -------
    Grid

    Raises
    ------
    NoisylabInputError
        For a missing file, a TOML syntax error (with the file name and the
        parser's message) and every rule of the format.
    """
    if isinstance(source, Grid):
        return source
    if isinstance(source, Mapping):
        return _parse_grid_dict(source, "<grid dict>")
    if isinstance(source, str) and "\n" in source:
        text, src = source, "<grid string>"
    elif isinstance(source, (str, os.PathLike)):
        p = Path(source)
        if not p.is_file():
            raise NoisylabInputError(f"grid file not found: {p}" if not p.exists() else f"not a file: {p}")
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise NoisylabInputError(f"could not read grid file {p}: {exc}") from None
        src = str(p)
    else:
        raise NoisylabInputError(
            f"load_grid expects a TOML file path, TOML text, a dict or a Grid; got {type(source).__name__}."
        )
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise NoisylabInputError(f"{src}: invalid TOML: {exc}") from None
    return _parse_grid_dict(doc, src)


# --------------------------------------------------------------------------- store

def _json_default(obj):
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _finite_only(obj, path=""):
    """``(obj with every non-finite float replaced by None, [dotted paths replaced])``."""
    if isinstance(obj, (float, np.floating)) and not math.isfinite(float(obj)):
        return None, [path or "<value>"]
    if isinstance(obj, Mapping):
        out, bad = {}, []
        for k, v in obj.items():
            out[k], b = _finite_only(v, f"{path}.{k}" if path else str(k))
            bad += b
        return out, bad
    if isinstance(obj, (list, tuple)):
        out, bad = [], []
        for i, v in enumerate(obj):
            x, b = _finite_only(v, f"{path}[{i}]")
            out.append(x)
            bad += b
        return out, bad
    if isinstance(obj, np.ndarray) and obj.dtype.kind in "fc" and not np.isfinite(obj).all():
        return _finite_only(obj.tolist(), path)
    return obj, []


def _version() -> str:
    try:
        from .. import __version__
    except ImportError:  # pragma: no cover - partially initialised package
        return "unknown"
    return __version__


class ResultStore:
    """Finished runs in a JSON-lines file (see the module notes).

    Parameters
    ----------
    path : str or os.PathLike
        The ``.jsonl`` file; it and its folder are created on the first append.
    """

    def __init__(self, path):
        self.path = Path(path)
        if self.path.is_dir():
            raise NoisylabInputError(f"result store must be a file, got a directory: {self.path}")

    def __repr__(self):
        return f"ResultStore({str(self.path)!r})"

    # -- writing
    def append(self, record) -> dict:
        """Append one record and return it as written.

        ``record`` needs ``spec`` and ``result`` (dicts); ``key`` defaults to
        ``run_key(spec)`` (a given key must match it) and ``meta`` gets
        ``seconds``, ``host``, ``finished_at`` (UTC, ISO 8601) and
        ``noisylab_version`` where not given.  A cut-short last line left by a
        killed writer is removed first (with a warning).
        """
        if not isinstance(record, Mapping) or not isinstance(record.get("spec"), Mapping) \
                or not isinstance(record.get("result"), Mapping):
            raise NoisylabInputError("a store record must be a dict with a 'spec' dict and a 'result' dict.")
        key = run_key(record["spec"])
        if record.get("key", key) != key:
            raise NoisylabInputError(f"record key {record['key']!r} does not match its spec (run_key = {key!r}).")
        meta = {"seconds": None, "host": socket.gethostname(),
                "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "noisylab_version": _version()}
        meta.update(record.get("meta") or {})
        result, bad = _finite_only(dict(record["result"]))
        if bad:
            meta["nonfinite"] = sorted(set(meta.get("nonfinite") or []) | set(bad))
            warnings.warn(f"run {key}: non-finite result value(s) at {', '.join(bad)} stored as null (JSON has no "
                          "NaN / Infinity); tables leave them out and say so.", UserWarning, stacklevel=2)
        out = {"key": key, "spec": dict(record["spec"]), "result": result, "meta": meta}
        for k, v in record.items():
            if k not in out:
                out[k] = v
        try:
            line = json.dumps(out, default=_json_default, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise NoisylabInputError(f"record for run {key} is not JSON serialisable: {exc}") from None
        data = (line + "\n").encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                self._repair_tail(fd)
                written = os.write(fd, data)
                if written != len(data):
                    raise OSError(f"short write to {self.path} ({written} of {len(data)} bytes; disk full?)")
                os.fsync(fd)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
        return out

    def _repair_tail(self, fd):
        """Cut a bad last line (holding the exclusive lock)."""
        size = os.fstat(fd).st_size
        if size == 0:
            return
        cut = None
        if os.pread(fd, 1, size - 1) != b"\n":
            cut = _last_newline(fd, size) + 1
            why = "a cut-short last line (a killed writer?)"
        else:
            start = _last_newline(fd, size - 1) + 1
            if _parse_record(os.pread(fd, size - start, start)) is None:
                cut, why = start, "a corrupt last line"
        if cut is not None:
            warnings.warn(f"{self.path}: removed {why} of {size - cut} bytes before appending.",
                          UserWarning, stacklevel=3)
            os.ftruncate(fd, cut)

    # -- reading
    def records(self) -> list[dict]:
        """All complete records in file order (duplicated keys included; see :meth:`latest`).

        A cut-short or corrupt last line is skipped with a warning; a bad line
        elsewhere raises :class:`NoisylabInputError` with its line number.
        """
        if not self.path.exists():
            return []
        with open(self.path, "rb") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_SH)
            try:
                data = fh.read()
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        lines = data.split(b"\n")
        tail = lines.pop()  # b"" when the file ends with a newline
        if tail.strip():
            warnings.warn(f"{self.path}: ignoring a cut-short last line {len(lines) + 1} ({len(tail)} bytes, a killed "
                          "writer?); the next append removes it.", UserWarning, stacklevel=2)
        while lines and not lines[-1].strip():
            lines.pop()
        out = []
        for i, raw in enumerate(lines):
            if not raw.strip():
                continue
            rec = _parse_record(raw)
            if rec is None:
                if i == len(lines) - 1 and not tail.strip():
                    warnings.warn(f"{self.path}: ignoring a corrupt last line {i + 1}; the next append removes it.",
                                  UserWarning, stacklevel=2)
                    continue
                shown = raw[:80].decode("utf-8", "replace")
                raise NoisylabInputError(
                    f"{self.path}: line {i + 1} is not a valid result record ({shown!r}...); fix or delete that line."
                )
            out.append(rec)
        return out

    def latest(self) -> dict:
        """``{key: record}``, the last record of each key."""
        return {r["key"]: r for r in self.records()}

    def done_keys(self) -> set:
        """Keys of the runs recorded in the store."""
        return {r["key"] for r in self.records()}


def _last_newline(fd, end) -> int:
    """Offset of the last ``\\n`` before ``end`` (-1 when none)."""
    pos = end
    while pos > 0:
        step = min(65536, pos)
        chunk = os.pread(fd, step, pos - step)
        j = chunk.rfind(b"\n")
        if j >= 0:
            return pos - step + j
        pos -= step
    return -1


def _parse_record(raw: bytes):
    try:
        rec = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if not (isinstance(rec, dict) and isinstance(rec.get("key"), str) and isinstance(rec.get("spec"), dict)
            and isinstance(rec.get("result"), dict)):
        return None
    return rec


# --------------------------------------------------------------------------- running

def resolve_runner(runner) -> Callable:
    """The runner function: a callable as is, or ``"package.module:function"`` imported."""
    if callable(runner):
        return runner
    _check_runner_syntax(runner, "runner")
    module, _, attr = runner.partition(":")
    try:
        obj = importlib.import_module(module)
    except ImportError as exc:
        raise NoisylabInputError(f"could not import the runner module {module!r} ({runner}): {exc}") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise NoisylabInputError(f"module {module!r} has no attribute {attr!r} (runner {runner!r}).") from None
    if not callable(obj):
        raise NoisylabInputError(f"runner {runner!r} is a {type(obj).__name__}, not a function.")
    return obj


_WORKER_THREADS = None
_THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS")


def _init_worker(n_threads: int):
    """Worker-process initializer: cap BLAS / OpenMP / torch threads at ``n_threads``."""
    global _WORKER_THREADS
    _WORKER_THREADS = n_threads
    for name in _THREAD_ENV:  # read by libraries loaded later (torch reads OMP_NUM_THREADS on import)
        os.environ[name] = str(n_threads)
    with contextlib.suppress(Exception):  # numpy's BLAS is already loaded
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=n_threads)
    _limit_torch()


def _limit_torch():
    # Only when the run already imported torch: importing it here would cost every worker a second or more,
    # and a torch imported later follows OMP_NUM_THREADS.
    torch = sys.modules.get("torch")
    if _WORKER_THREADS is not None and torch is not None and hasattr(torch, "set_num_threads") \
            and torch.get_num_threads() != _WORKER_THREADS:
        torch.set_num_threads(_WORKER_THREADS)


def _execute(runner, spec) -> dict:
    """Run one spec; never raises (errors come back as data, so any worker can return them)."""
    t0 = time.perf_counter()
    try:
        _limit_torch()
        fn = resolve_runner(runner)
        result = fn(dict(spec))
        _limit_torch()
        if not isinstance(result, Mapping):
            raise TypeError(f"the runner must return a dict; it returned {type(result).__name__}")
        result = dict(result)
        json.dumps(result, default=_json_default)
    except Exception as exc:  # noqa: BLE001 - reported to the caller with the spec
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    return {"ok": True, "result": result, "seconds": time.perf_counter() - t0, "host": socket.gethostname()}


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _as_runs(grid_or_runs, runner):
    if isinstance(grid_or_runs, (Grid, Mapping, str, os.PathLike)):
        grid = load_grid(grid_or_runs)
        return grid.runs(), runner if runner is not None else grid.runner
    if isinstance(grid_or_runs, Sequence):
        runs = list(grid_or_runs)
        for i, s in enumerate(runs):
            if not isinstance(s, Mapping):
                raise NoisylabInputError(f"runs[{i}] must be a spec dict; got {type(s).__name__}.")
        if runner is None:
            raise NoisylabInputError("run_grid got a list of specs and no runner; pass runner=\"module:function\".")
        return [dict(s) for s in runs], runner
    raise NoisylabInputError(
        f"run_grid expects a Grid, a grid file / TOML text / dict or a list of spec dicts; got "
        f"{type(grid_or_runs).__name__}."
    )


def run_grid(grid_or_runs, store, *, n_jobs=1, client=None, runner=None, progress=False,
             on_result=None) -> list[dict]:
    """Run the runs that are not in ``store`` yet and return the records of all of them.

    Parameters
    ----------
    grid_or_runs : Grid, path, TOML text, dict or list of dict
        A grid (anything :func:`load_grid` takes) or a list of run specs.
    store : ResultStore or path
        Where finished runs are appended (by this process only).
    n_jobs : int, default=1
        1 runs inline; ``k > 1`` runs in ``k`` spawned worker processes (one
        task per run, each worker capped at ``max(1, cpu_count // k)``
        threads); -1 uses one worker per CPU.
    client : dask.distributed.Client, optional
        Submit each run to this cluster instead (the workers import the runner).
    runner : callable or str, optional
        The function ``spec dict -> JSON-serialisable dict``; default the
        grid's ``[experiment] runner``.  Required with a list of specs.  A
        callable must be picklable by reference for ``n_jobs > 1``.
    progress : bool, default=False
        Show a progress bar on stderr.
    on_result : callable, optional
        Called with each new record, after it is stored.

    Returns
    -------
    list of dict
        The store's record of every run, in run order.

    Raises
    ------
    BenchRunError
        After all runs have finished, if some raised (their specs and errors
        are listed; nothing was recorded for them).
    NoisylabInputError
        For a bad grid, runner or argument, or a spec the runner's checks
        reject (see :func:`validate_grid`), before any run starts.
    KeyboardInterrupt
        On Ctrl-C, after the runs under way were stopped (queued runs never
        start; finished runs are in the store) and a line saying so was
        written to stderr.
    """
    runs, runner = _as_runs(grid_or_runs, runner)
    if not isinstance(store, ResultStore):
        store = ResultStore(store)
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, numbers.Integral) or (n_jobs < 1 and n_jobs != -1):
        raise NoisylabInputError(f"n_jobs must be a positive int or -1; got {n_jobs!r}.")
    n_jobs = _cpu_count() if n_jobs == -1 else int(n_jobs)
    if client is not None and n_jobs != 1:
        raise NoisylabInputError("give n_jobs (local processes) or client (a Dask cluster), not both.")
    if on_result is not None and not callable(on_result):
        raise NoisylabInputError(f"on_result must be callable; got {type(on_result).__name__}.")
    if not callable(runner):
        _check_runner_syntax(runner, "runner")
    who = runner_name(runner)

    keyed, seen = [], set()
    for spec in runs:
        k = run_key(spec)
        if k not in seen:
            seen.add(k)
            keyed.append((k, spec))
    watch = _DoneWatch(store, who)
    done = watch.done()
    pending = [(k, s) for k, s in keyed if k not in done]
    _warn_other_runner(store, who, [k for k, _ in pending])
    if pending:  # every spec checked before any run starts (the runner's own checks, when it has them)
        _validate_specs([s for _, s in pending], runner, local=client is None)
    failures = []
    n_stored = n_skipped = 0

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(keyed), initial=len(keyed) - len(pending), desc="runs", unit="run", file=sys.stderr)

    def still_pending(key):
        nonlocal n_skipped
        if watch.is_done(key):  # another process on this store finished it meanwhile
            n_skipped += 1
            if bar is not None:
                bar.update(1)
            return False
        return True

    def finish(key, spec, out):
        nonlocal n_stored
        if out["ok"]:
            try:
                rec = store.append({"key": key, "spec": spec, "result": out["result"],
                                    "meta": {"seconds": round(out["seconds"], 3), "host": out["host"],
                                             "runner": who}})
            except NoisylabInputError as exc:
                failures.append({"key": key, "spec": spec, "error": str(exc), "traceback": ""})
            else:
                n_stored += 1
                if on_result is not None:
                    on_result(rec)
        else:
            failures.append({"key": key, "spec": spec, "error": out["error"], "traceback": out["traceback"]})
        if bar is not None:
            bar.update(1)

    try:
        if pending:
            if client is not None:
                _run_dask(client, runner, pending, finish)
            elif n_jobs == 1:
                fn = resolve_runner(runner)
                for i, (key, spec) in enumerate(pending):
                    if not still_pending(key):
                        continue
                    try:
                        out = _execute(fn, spec)
                    except KeyboardInterrupt:
                        raise _Interrupted(n_running=1, n_queued=len(pending) - i - 1) from None
                    finish(key, spec, out)
            else:
                if not callable(runner):
                    resolve_runner(runner)  # a typo fails here, before any process starts
                _run_processes(runner, pending, n_jobs, finish, still_pending)
    except _Interrupted as exc:
        print(f"interrupted: {exc.n_running} running run(s) stopped and {exc.n_queued} queued run(s) not started; "
              f"{n_stored} run(s) finished in this session and are saved to {store.path} (running the same "
              "command again resumes from there).", file=sys.stderr, flush=True)
        raise
    finally:
        if bar is not None:
            bar.close()

    if failures:
        lines = [f"  - {_canonical_json(f['spec'])}: {f['error']}" for f in failures[:20]]
        if len(failures) > 20:
            lines.append(f"  ... and {len(failures) - 20} more (see .failures)")
        raise BenchRunError(
            f"{len(failures)} of {len(pending)} runs failed and were not recorded ({n_stored} finished and were "
            f"saved to {store.path}"
            + (f", {n_skipped} were finished by another process" if n_skipped else "")
            + "; running again retries only the failed ones):\n" + "\n".join(lines),
            failures,
        )
    latest = store.latest()
    return [latest[k] for k, _ in keyed if k in latest]


def runner_name(runner) -> str:
    """The ``"module:function"`` identity of a runner, as recorded in ``meta.runner`` (a string as is)."""
    if isinstance(runner, str):
        return runner
    mod = getattr(runner, "__module__", None) or type(runner).__module__
    qual = getattr(runner, "__qualname__", None) or type(runner).__qualname__
    return f"{mod}:{qual}"


def _by_runner(record, who) -> bool:
    """Whether ``record`` was produced by the runner ``who`` (records from before ``meta.runner`` count as yes)."""
    recorded = (record.get("meta") or {}).get("runner")
    return recorded is None or recorded == who


class _DoneWatch:
    """The keys in a store that ``who`` finished, re-read only when the file changed (size, mtime, inode)."""

    def __init__(self, store, who):
        self.store, self.who, self._stamp, self._done = store, who, None, set()

    def _stat(self):
        try:
            st = os.stat(self.store.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def done(self) -> set:
        stamp = self._stat()
        if stamp != self._stamp or self._stamp is None:
            self._done = {k for k, r in self.store.latest().items() if _by_runner(r, self.who)}
            self._stamp = stamp
        return self._done

    def is_done(self, key) -> bool:
        try:
            return key in self.done()
        except NoisylabInputError:  # a store made unreadable meanwhile: run it (the append reports the problem)
            return False


def _warn_other_runner(store, who, pending_keys):
    latest = store.latest() if pending_keys else {}
    other = sorted({str(latest[k]["meta"]["runner"]) for k in pending_keys if k in latest})
    if other:
        n = sum(k in latest for k in pending_keys)
        warnings.warn(f"{store.path}: {n} stored run(s) of this grid came from another runner ({', '.join(other)}) "
                      f"and are run again with {who} (the newest record of a run wins).", UserWarning, stacklevel=3)


#: Spec checks of the shipped runners (``"module:function"`` of a function ``specs -> None`` raising
#: NoisylabInputError), imported only when such a grid runs.  Any other runner function may carry its own
#: as a ``validate_specs`` attribute.
_SPEC_VALIDATORS = {
    "noisylab.torch.robust:run_one": "noisylab.bench.robust:check_robust_specs",
}


def _spec_validator(runner, local=True):
    fn = getattr(runner, "validate_specs", None) if callable(runner) else None
    if fn is not None:
        return fn
    name = runner_name(runner)
    if name in _SPEC_VALIDATORS:
        try:
            return resolve_runner(_SPEC_VALIDATORS[name])
        except NoisylabInputError:  # e.g. torch missing here while a Dask cluster runs the grid
            return None
    if isinstance(runner, str) and local:
        with contextlib.suppress(NoisylabInputError):
            return getattr(resolve_runner(runner), "validate_specs", None)
    return None


def _validate_specs(specs, runner, local=True):
    fn = _spec_validator(runner, local)
    if fn is not None and specs:
        try:
            fn([dict(s) for s in specs])
        except ImportError:  # the check needs what only the workers have (a Dask cluster's torch, say)
            if local:
                raise


def validate_grid(grid_or_runs, *, runner=None, table_fields=(), local=True) -> None:
    """Check a grid before any run starts.

    Parameters
    ----------
    grid_or_runs : Grid, path, TOML text, dict or list of dict
        What :func:`run_grid` takes.
    runner : callable or str, optional
        Default: the grid's runner.  Its spec checks run on every spec: those registered for the
        shipped runners (the robust-training runner checks method names, noise specs and protocol
        fields), or the runner function's ``validate_specs(specs)`` attribute when it has one.
    table_fields : sequence of str, optional
        Fields a results table will be labelled by (``--rows`` / ``--cols``): each must be a spec
        field of at least one run (``spec.X`` paths too; ``result.``, ``meta.`` and ``key`` paths are
        not checked, the results do not exist yet).
    local : bool, default=True
        False when the runs go to a Dask cluster (the runner module need not import here).

    Raises
    ------
    NoisylabInputError
        Naming every problem found, with what was expected.
    """
    runs, runner = _as_runs(grid_or_runs, runner)
    if not callable(runner):
        _check_runner_syntax(runner, "runner")
    have = {k for spec in runs for k in spec}
    unknown = []
    for f in table_fields:
        head = f.split(".")
        if head[0] in ("result", "meta", "key") and (len(head) > 1 or head[0] == "key"):
            continue
        name = head[1] if head[0] == "spec" and len(head) > 1 else head[0]
        if name not in have:
            unknown.append(f)
    if unknown:
        import difflib

        hints = [f"{f!r} (did you mean {m[0]!r}?)" if (m := difflib.get_close_matches(f.split(".")[-1], have, 1))
                 else repr(f) for f in unknown]
        raise NoisylabInputError(f"no run of the grid has the spec field(s) {', '.join(hints)}; spec fields are "
                                 f"{', '.join(sorted(have)) or '(none)'}.")
    _validate_specs(runs, runner, local)


def _worker_main(conn, n_threads):
    """A worker process: ignore Ctrl-C (the parent decides), then run the specs the parent sends until ``None``."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _init_worker(n_threads)
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):  # the parent went away
            return
        if msg is None:
            return
        runner, spec = msg
        out = _execute(runner, spec)
        try:
            conn.send(out)
        except Exception as exc:  # noqa: BLE001 - e.g. an unpicklable result
            conn.send({"ok": False, "error": f"{type(exc).__name__}: could not send the result back: {exc}",
                       "traceback": ""})


def _death_message(exitcode) -> str:
    import signal

    if exitcode is not None and exitcode < 0:
        try:
            how = f"was killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            how = f"was killed by signal {-exitcode}"
    else:
        how = f"exited with code {exitcode}"
    return (f"WorkerDied: the worker process running this spec {how} (out of memory, a crash in native code or "
            "os._exit?); the other runs went on")


def _spawn_worker(ctx, n_threads):
    """Start one worker (SIGINT ignored from its first instruction on, where this is the main thread)."""
    import signal
    import threading

    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_worker_main, args=(child, n_threads))  # not daemonic: a run may start processes
    main = threading.current_thread() is threading.main_thread()
    old = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
    try:
        proc.start()
    finally:
        if main:
            signal.signal(signal.SIGINT, old)
    child.close()
    return proc, parent


def _stop_workers(workers, timeout=2.0):
    for proc, conn in workers:
        with contextlib.suppress(Exception):
            conn.close()
        if proc.is_alive():
            proc.terminate()
    deadline = time.monotonic() + timeout
    for proc, _ in workers:
        proc.join(max(0.0, deadline - time.monotonic()))
        if proc.is_alive():
            proc.kill()
            proc.join(1.0)


def _run_processes(runner, pending, n_jobs, finish, still_pending=None):
    """Run ``pending`` in ``n_jobs`` spawned worker processes, one spec at a time per worker.

    Each worker has its own pipe, so the parent always knows which spec a worker is running: a worker
    that dies (segfault, OOM kill, ``os._exit``) fails only that spec, and a fresh worker takes its
    place.  Workers ignore SIGINT; on Ctrl-C (KeyboardInterrupt in this process) the results that have
    already arrived are stored, the workers are terminated, queued specs never start, and the
    KeyboardInterrupt goes on to the caller.  ``still_pending(key)`` is asked before a spec starts.
    """
    import multiprocessing
    from multiprocessing.connection import wait

    ctx = multiprocessing.get_context("spawn")
    n_workers = min(n_jobs, len(pending))
    n_threads = max(1, _cpu_count() // n_workers)
    queue = list(reversed(pending))  # pop() from the end = run order
    workers = []  # [(proc, conn)]
    busy = {}  # conn -> (proc, key, spec)

    def next_spec():
        while queue:
            key, spec = queue.pop()
            if still_pending is None or still_pending(key):
                return key, spec
        return None

    def dispatch(proc, conn):
        item = next_spec()
        if item is None:
            return False
        conn.send((runner, item[1]))
        busy[conn] = (proc, *item)
        return True

    try:
        for _ in range(n_workers):
            if not queue:
                break
            proc, conn = _spawn_worker(ctx, n_threads)
            workers.append((proc, conn))
            if not dispatch(proc, conn):
                break
        while busy:
            sentinels = {proc.sentinel: conn for conn, (proc, _, _) in busy.items()}
            ready = wait(list(busy) + list(sentinels))
            handled = set()
            for obj in ready:
                conn = sentinels.get(obj, obj)
                if conn in handled or conn not in busy:
                    continue
                handled.add(conn)
                proc, key, spec = busy.pop(conn)
                out = None
                if conn.poll():
                    with contextlib.suppress(EOFError, OSError):
                        out = conn.recv()
                if out is None:  # the worker died mid-run
                    proc.join(5.0)
                    out = {"ok": False, "error": _death_message(proc.exitcode), "traceback": ""}
                    workers.remove((proc, conn))
                    with contextlib.suppress(Exception):
                        conn.close()
                    finish(key, spec, out)
                    if queue:
                        proc, conn = _spawn_worker(ctx, n_threads)
                        workers.append((proc, conn))
                        dispatch(proc, conn)
                    continue
                finish(key, spec, out)
                dispatch(proc, conn)
    except KeyboardInterrupt:
        # keep what has already come back, then stop everything else
        for conn, (_, key, spec) in list(busy.items()):
            try:
                if conn.poll():
                    out = conn.recv()
                    busy.pop(conn)
                    finish(key, spec, out)
            except Exception:  # noqa: BLE001, S110 - a dead or half-written pipe: that run is lost
                pass
        raise _Interrupted(n_running=len(busy), n_queued=len(queue)) from None
    finally:
        for _, conn in workers:
            with contextlib.suppress(Exception):
                conn.send(None)
        _stop_workers(workers)


class _Interrupted(KeyboardInterrupt):
    """Ctrl-C while runs were going: how many were stopped and how many never started."""

    def __init__(self, n_running, n_queued):
        super().__init__(n_running, n_queued)
        self.n_running, self.n_queued = n_running, n_queued


def _run_dask(client, runner, pending, finish):
    try:
        from distributed import as_completed
    except ImportError:
        raise NoisylabInputError("client= needs dask.distributed: pip install \"noisylab[dask]\".") from None
    futures = {client.submit(_execute, runner, spec, pure=False, key=f"noisylab-run-{key}-{os.urandom(4).hex()}"):
               (key, spec) for key, spec in pending}
    try:
        for fut in as_completed(list(futures)):
            key, spec = futures[fut]
            try:
                out = fut.result()
            except Exception as exc:  # noqa: BLE001 - e.g. KilledWorker
                out = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": ""}
            finish(key, spec, out)
    finally:
        with contextlib.suppress(Exception):
            client.cancel(list(futures))


# --------------------------------------------------------------------------- tables

def _lookup(record, path, default_root):
    parts = path.split(".")
    if parts[0] in ("spec", "result", "meta", "key") and (len(parts) > 1 or parts[0] == "key"):
        obj = record
    else:
        obj = record.get(default_root, {})
    for p in parts:
        if not isinstance(obj, Mapping) or p not in obj:
            return _NOTHING
        obj = obj[p]
    return obj


_NOTHING = object()


def _dedupe(records):
    out, index = [], {}
    for r in records:
        if not isinstance(r, Mapping):
            raise NoisylabInputError(f"records must be dicts (store records); got {type(r).__name__}.")
        k = r.get("key")
        if k is not None and k in index:
            out[index[k]] = None
        if k is not None:
            index[k] = len(out)
        out.append(r)
    return [r for r in out if r is not None]


def _label(record, fields):
    vals = []
    for f in fields:
        v = _lookup(record, f, "spec")
        vals.append(_MISSING if v is _NOTHING else v)
    return tuple(vals)


def _as_label_list(order, n_fields, what):
    out = []
    for item in order:
        t = tuple(item) if isinstance(item, (list, tuple)) else (item,)
        if len(t) != n_fields:
            raise NoisylabInputError(f"{what} entries must give {n_fields} value(s); got {item!r}.")
        out.append(t)
    return out


def _order(present, given, n_fields, what):
    if given is None:
        return present
    return _as_label_list(given, n_fields, what)


def _key_of_label(label):
    return _canonical_json(list(label))


def _fmt_label(v):
    return v if isinstance(v, str) else json.dumps(v)


_MD_ACTIVE = re.compile(r"[\\`*\[\]<>!|]|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")


def _md_escape(text) -> str:
    """A store string made inert in a markdown cell: backslash before the characters that start code spans,
    emphasis, links, images or raw HTML (``_`` only where it is not inside a word, so ``coteaching_plus``
    stays as it is) and ``|`` (which would end a table cell); line breaks are flattened by the table writer."""
    return _MD_ACTIVE.sub(lambda m: "\\" + m.group(0), str(text))


def check_spec_fields(records, fields) -> None:
    """Raise :class:`NoisylabInputError` for table fields that no record has (a typo would otherwise
    label every row or column "—" and average them all into one)."""
    records = list(records)
    unknown = [f for f in fields if records and all(_lookup(rec, f, "spec") is _NOTHING for rec in records)]
    if unknown:
        have = sorted({k for rec in records for k in (rec.get("spec") or {})})
        raise NoisylabInputError(f"no record has the spec field(s) {', '.join(map(repr, unknown))}; "
                                 f"spec fields are {', '.join(have) or '(none)'}.")


def results_table(records, rows=("noise",), cols=("method",), value="test_acc", fmt="{mean:.2f} ± {std:.2f}",
                  scale=1.0, row_order=None, col_order=None) -> str:
    """A markdown table of ``value`` by row and column fields: mean ± sample std over the other fields (seeds).

    Parameters
    ----------
    records : iterable of dict
        Store records (``{"key", "spec", "result", ...}``); for a key given
        twice the last record counts.
    rows, cols : str or sequence of str
        Spec fields (or dotted paths such as ``"spec.noise"``) that label the
        rows / columns, one table column per row field; column labels of
        several fields are joined with ``" / "``.  A record without a field
        is labelled ``"—"``.
    value : str
        The number to aggregate: a key of ``result``, a dotted path into it
        (``"curves.best"``), or a path from the record root
        (``"result.test_acc_best"``, ``"meta.seconds"``).
    fmt : str, default="{mean:.2f} ± {std:.2f}"
        Cell format with fields ``mean``, ``std``, ``n``.  A cell of a single
        value shows only the format's first ``{mean...}`` field; when cells
        hold different numbers of values every cell gets `` (n=...)``.
    scale : float, default=1.0
        Multiplies every value (100 for percentages).
    row_order, col_order : sequence, optional
        The labels to show, in order (a tuple per label for several fields);
        others are left out.  Default: all, in order of first appearance in
        ``records`` -- the grid's order for the list :func:`run_grid` returns,
        but completion order for ``ResultStore.records()``.

    Returns
    -------
    str
        The markdown table; cells without any value are ``"—"``.
    """
    rows = (rows,) if isinstance(rows, str) else tuple(rows)
    cols = (cols,) if isinstance(cols, str) else tuple(cols)
    if not rows:
        raise NoisylabInputError("results_table needs at least one row field.")
    records = _dedupe(list(records))
    check_spec_fields(records, rows + cols)
    cells, bad, row_seen, col_seen = {}, {}, {}, {}
    n_with_value = 0
    in_result = value.removeprefix("result.")
    for rec in records:
        v = _lookup(rec, value, "result")
        if v is None and in_result in ((rec.get("meta") or {}).get("nonfinite") or ()):
            v = float("nan")  # stored as null because it was NaN / inf (see ResultStore.append)
        if v is _NOTHING or v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise NoisylabInputError(f"results_table: {value!r} must be a number; record {rec.get('key')} has {v!r}.")
        n_with_value += 1
        r, c = _label(rec, rows), _label(rec, cols)
        row_seen.setdefault(_key_of_label(r), r)
        col_seen.setdefault(_key_of_label(c), c)
        where = (_key_of_label(r), _key_of_label(c))
        if math.isfinite(float(v)):
            cells.setdefault(where, []).append(float(v) * scale)
        else:  # a diverged run: left out of mean and std, and counted in the cell
            cells.setdefault(where, [])
            bad[where] = bad.get(where, 0) + 1
    if records and n_with_value == 0:
        have = sorted({k for rec in records for k in (rec.get("result") or {})})
        raise NoisylabInputError(
            f"results_table: no record has {value!r}; result fields are {', '.join(have) or '(none)'}."
        )
    row_labels = _order(list(row_seen.values()), row_order, len(rows), "row_order")
    col_labels = _order(list(col_seen.values()), col_order, len(cols), "col_order")
    m = re.search(r"\{mean(?:[:!][^}]*)?\}", fmt)
    fmt_single = m.group(0) if m else fmt
    shown = [(_key_of_label(r), _key_of_label(c)) for r in row_labels for c in col_labels]
    counts = {len(cells[k]) for k in shown if cells.get(k)}
    show_n = len(counts) > 1

    def cell(vals, n_bad):
        note = f" ({n_bad} non-finite left out)" if n_bad else ""
        if not vals:
            return _MISSING + note
        a = np.asarray(vals, dtype=np.float64)
        mean = float(a.mean())
        std = float(a.std(ddof=1)) if a.size > 1 else float("nan")
        text = (fmt if a.size > 1 else fmt_single).format(mean=mean, std=std, n=a.size)
        return (f"{text} (n={a.size})" if show_n else text) + note

    header = [_md_escape(f) for f in rows] + [" / ".join(_md_escape(_fmt_label(v)) for v in c) for c in col_labels]
    body = []
    for r in row_labels:
        kr = _key_of_label(r)
        body.append([_md_escape(_fmt_label(v)) for v in r]
                    + [cell(cells.get((kr, kc := _key_of_label(c)), []), bad.get((kr, kc), 0)) for c in col_labels])
    return markdown_table(header, body)


def current_protocol(records, cell_fields, ignore=("seed",)):
    """Per table cell, only the records run with the protocol of the cell's newest record.

    A store keeps the results of every protocol it has seen (a changed field means new run keys);
    averaging a cell over two protocols would mix two experiments.  A record's cell is its values of
    ``cell_fields``; its protocol is the rest of its spec except ``ignore`` (the replicates).  Newest =
    latest ``meta.finished_at``, then latest in ``records``' order.

    Returns
    -------
    (kept, n_left_out) : (list of records in their given order, int)
    """
    def cell(r):
        return _canonical_json([r.get("spec", {}).get(f) for f in cell_fields])

    def proto(r):
        return _canonical_json({k: v for k, v in r.get("spec", {}).items() if k not in cell_fields and k not in ignore})

    order = sorted(range(len(records)), key=lambda i: (str(records[i].get("meta", {}).get("finished_at") or ""), i))
    newest = {cell(records[i]): proto(records[i]) for i in order}  # the last assignment per cell wins
    kept = [r for r in records if proto(r) == newest[cell(r)]]
    return kept, len(records) - len(kept)


def protocol_lines(records) -> str:
    """A markdown list of the spec fields every record shares, then a line naming the fields that vary.

    Example output::

        - model: cnn1d
        - epochs: 40
        - varies across runs: noise (3 values), method (2 values), seed (3 values)
    """
    records = _dedupe(list(records))
    if not records:
        return ""
    order = {}
    for rec in records:
        for k in rec.get("spec", {}):
            order.setdefault(k, None)
    shared, varying = [], []
    for k in order:
        present = [rec["spec"][k] for rec in records if k in rec.get("spec", {})]
        distinct = {_canonical_json(v) for v in present}
        if len(present) == len(records) and len(distinct) == 1:
            shared.append(f"- {_md_escape(k)}: {_md_escape(_fmt_label(present[0]))}")
        else:
            extra = "" if len(present) == len(records) else f", set in {len(present)} of {len(records)} runs"
            varying.append(f"{_md_escape(k)} ({len(distinct)} value{'s' if len(distinct) != 1 else ''}{extra})")
    if varying:
        shared.append(f"- varies across runs: {', '.join(varying)}")
    return "\n".join(shared)
