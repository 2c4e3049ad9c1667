"""Speed and peak memory of ``noisylab`` vs ``cleanlab`` label-issue detection.

Four modes, all on the same synthetic input for both libraries in the same run:

* default: one ``n x K`` input (1M x 100 float32), ``find_label_issues`` for the
  chosen filters (and ``get_label_quality_scores`` with ``--scores``);
* ``--grid``: the same for every (n, K) of a grid, "where memory allows", with a
  summary table at the end;
* ``--memmap-run``: noisylab only, on a float16 ``.npy`` opened with
  ``np.load(..., mmap_mode="r")`` (10M x 100 = 2 GB on disk by default);
* ``--dask-workers N``: noisylab's Dask path, on a ``dask.array`` read from the
  ``.npy`` on a ``distributed.LocalCluster`` of N processes, compared with
  in-memory noisylab and cleanlab on the same input.

Method
------
1. Input: the generator of ``docs/CONFIDENT_LEARNING.md`` §3.3 (seed 12345 by
   default):

   * true class ``t ~ U{0..K-1}``;
   * logits ``~ N(0, 1)`` in float32, ``+4.0`` added to the true class;
   * ``pred_probs = softmax(logits)``, computed in float32 and stored as
     ``--dtype`` (float64 is computed in float64 from the same logits);
   * exactly ``round(0.2 n)`` rows (chosen without replacement) get a label
     drawn uniformly from the *other* ``K - 1`` classes.

   The rows are generated in blocks of 16,384 rows, each block with its own
   generator seeded from ``SeedSequence(seed, spawn_key=(1, block))`` (the
   flips use ``spawn_key=(0,)``), and written straight into the ``.npy`` file
   through ``np.lib.format.open_memmap``; written pages are flushed and dropped
   from the parent as it goes.  The parent therefore never holds the matrix
   (generating a 4e6 x 100 input needs about one 16k-row block of memory plus
   the label vectors), and the data depend only on (n, K, dtype, seed, noise).
   The doc does not fix the order of the random draws, so individual rows
   differ from the doc's data; the statistics (and so the timings) do not.

2. Every measurement runs in its own fresh subprocess
   (``python benchmarks/detect_speed.py --worker SPEC.json``), which

   * imports only the library it times (plus ``scipy.special``, which cleanlab
     imports at import time and noisylab lazily in its entropy score: neither timed call pays
     a module import);
   * checks that writing ``5`` to ``/proc/self/clear_refs`` resets
     ``VmHWM`` (it allocates and frees 64 MiB, resets, and checks that the
     high-water mark dropped); if it does not, the peak is read as the
     ``VmHWM`` after the call, which then also covers the load;
   * loads both arrays with ``np.load`` fully into memory (no mmap);
   * records the baseline ``VmRSS`` (interpreter + libraries + input), resets
     the peak, times ONE call with ``time.perf_counter`` and reads ``VmHWM``;
   * saves the result (mask or scores) as ``.npy`` for the parent to compare.

   "extra" = peak - baseline, i.e. the memory the call needed on top of the
   input it was given.

3. cleanlab's default ``n_jobs`` forks a ``multiprocessing.Pool`` (fork start
   method on Linux; without psutil it uses all logical cores).  The forked
   workers' memory is NOT in the measuring process's ``VmHWM``.  The largest
   worker's ``ru_maxrss`` (``RUSAGE_CHILDREN``) is reported separately; it
   counts the anonymous pages it shares copy-on-write with the parent (most of
   the baseline), so it is not additive with the parent's peak.  ``--cleanlab-n-jobs both``
   also times cleanlab with ``n_jobs=1`` (single process, fully measured).
   noisylab has no process pool (its ``n_jobs`` is ignored).

4. Memory guard ("where memory allows"), from ``/proc/meminfo`` MemAvailable
   read just before each input is generated:

   * ``--grid`` skips a whole (n, K) when the input alone exceeds 40% of it
     (4e6 x 1000 float32 = 14.9 GiB on a 23 GiB machine);
   * every mode skips a cleanlab measurement (noisylab still runs) when
     cleanlab's expected peak exceeds 85% of it.  Expected peak, from the
     measurements of §3.3: ``3.1 x input + 0.3 GiB`` for the pruning filters
     (prune_by_noise_rate, prune_by_class, both; 1e6 x 1000 needed 11.7 GB for
     a 3.7 GiB input) and ``2.3 x input + 0.3 GiB`` for the other filters and
     the scores (confident_learning 7.9 GB, normalized_margin scores 8.6 GB
     there).

   Every skip and its reason is printed and written to the JSON.

5. ``--memmap-run`` (noisylab only; cleanlab cannot take a memory map without
   copying it): the parent writes the float16 ``.npy`` and the labels, then ONE
   fresh worker opens it with ``np.load(path, mmap_mode="r")`` and runs
   ``find_label_issues(labels, P)`` (default filter) and then
   ``get_label_quality_scores(labels, P)`` (default ``self_confidence``).  The
   peak RSS reported is the worker's ``VmHWM`` over the whole run: interpreter,
   labels and the file pages mapped in.  (The file was just written, so it is
   read from the page cache: the times are warm-cache times.)  When the file
   is at most 1 GiB the same two calls also run on the array loaded into
   memory, and the results must be identical.

6. ``--dask-workers N`` (needs ``dask`` and ``distributed``): the in-memory
   noisylab and cleanlab measurements of item 2 for each filter, then one
   worker subprocess starts ``LocalCluster(n_workers=N, threads_per_worker=1,
   processes=True, dashboard_address=None)`` and a ``Client`` (start-up, with
   noisylab imported on every worker, timed separately), builds the input with
   ``noisylab.detect._dask.dask_array_from_npy`` (``--dask-rows-per-block``),
   makes one untimed warm-up call on the first rows (its time is reported) and
   times ``find_label_issues(labels, X, filter_by=...)`` (``--repeats`` calls
   per filter on the same cluster, median).  Reported: time, ratios, mask equality with
   in-memory noisylab and cleanlab, the client's and the Dask workers' peak RSS.

7. The parent prints markdown tables (times, ratios, peaks, agreement between
   results, detection quality against the injected flips) and, with
   ``--json``, writes the same numbers atomically.

Usage
-----
::

    python benchmarks/detect_speed.py                      # 1M x 100 float32, default filter
    python benchmarks/detect_speed.py --filters all --scores --repeats 3
    python benchmarks/detect_speed.py --n 100000 --k 10 --filters prune_by_class,both \\
        --cleanlab-n-jobs both --repeats 3 --json out.json
    python benchmarks/detect_speed.py --grid --filters all --scores --json grid.json
    python benchmarks/detect_speed.py --grid --grid-n 1e5,1e6 --grid-k 10,100 --filters all --scores
    python benchmarks/detect_speed.py --memmap-run                  # 10M x 100 float16, 2 GB file
    python benchmarks/detect_speed.py --memmap-run --n 200000 --k 100
    python benchmarks/detect_speed.py --n 4e6 --k 100 --dask-workers 2 \\
        --filters prune_by_noise_rate,both

With ``--repeats R`` every measurement runs in R fresh subprocesses; the tables
show the median time and the largest peak (all values are in the JSON).
"""
from __future__ import annotations

import argparse
import datetime
import json
import mmap
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from noisylab.detect.filter import FILTER_METHODS as FILTERS  # light import: numpy only
from noisylab.detect.rank import RANKING_METHODS as SCORE_METHODS

MiB = 1024 * 1024
GiB = 1024 * MiB

#: Rows per generator block (fixed: the data depend on it).
GEN_CHUNK_ROWS = 1 << 14
#: The parent flushes and drops the pages it has written every this many bytes.
WRITE_DROP_BYTES = 64 * MiB
#: filter_by values that go through cleanlab's per-class pruning (its memory-hungry path).
PRUNING_FILTERS = ("prune_by_noise_rate", "prune_by_class", "both")
#: --grid skips an (n, K) whose input exceeds this fraction of MemAvailable.
CONFIG_MAX_FRACTION = 0.40
#: A cleanlab measurement is skipped when its expected peak exceeds this fraction of MemAvailable.
CLEANLAB_MAX_FRACTION = 0.85
#: cleanlab's expected peak = factor x input + overhead (docs/CONFIDENT_LEARNING.md §3.3).
CLEANLAB_PEAK_FACTOR_PRUNING = 3.1
CLEANLAB_PEAK_FACTOR_OTHER = 2.3
CLEANLAB_PEAK_OVERHEAD = 0.3 * GiB
#: --memmap-run also runs in memory (sanity check) when the file is at most this large.
MEMMAP_COMPARE_MAX_BYTES = 1 * GiB
DEFAULT_GRID_N = "1e5,1e6,4e6"
DEFAULT_GRID_K = "10,100,1000"


# --------------------------------------------------------------------------- data
def _gen_block(seed, index, rows, K, dtype, signal):
    """True classes and softmax probabilities of generator block ``index`` (own seeded generator)."""
    g = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1, index)))
    t = g.integers(0, K, rows)
    z = g.standard_normal((rows, K), dtype=np.float32)
    z[np.arange(rows), t] += np.float32(signal)
    if np.dtype(dtype) == np.float64:
        z = z.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return t, z


def generate(n, K, dtype="float32", seed=12345, noise=0.2, signal=4.0, out=None, on_block=None):
    """The §3.3 generator, in row blocks.

    Writes ``pred_probs`` into ``out`` (an (n, K) array or memmap of ``dtype``;
    allocated if None) and returns ``(noisy_labels int64, pred_probs, true_labels int64)``.
    ``on_block(rows_done)`` is called after each block.  The result depends only
    on the arguments (not on ``out``).
    """
    if K < 2:
        raise ValueError("need K >= 2")
    P = np.empty((n, K), dtype=dtype) if out is None else out
    true = np.empty(n, dtype=np.int64)
    for i, a in enumerate(range(0, n, GEN_CHUNK_ROWS)):
        b = min(n, a + GEN_CHUNK_ROWS)
        t, z = _gen_block(seed, i, b - a, K, dtype, signal)
        true[a:b] = t
        P[a:b] = z  # cast to dtype
        if on_block is not None:
            on_block(b)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,)))
    noisy = true.copy()
    m = round(noise * n)
    flip = rng.choice(n, size=m, replace=False)
    noisy[flip] = (true[flip] + rng.integers(1, K, m)) % K  # uniform over the other K-1 classes
    return noisy, P, true


def make_data(n, K, dtype="float32", seed=12345, noise=0.2, signal=4.0):
    """In-memory version of :func:`generate` (same data). Returns (noisy, pred_probs, true)."""
    return generate(n, K, dtype, seed=seed, noise=noise, signal=signal)


def write_data(dirpath, n, K, dtype="float32", seed=12345, noise=0.2, signal=4.0):
    """Generate straight into ``dirpath/pred_probs.npy`` (+ ``labels.npy``) without holding the matrix.

    Returns ``(noisy_labels, true_labels, info)``.
    """
    t0 = time.perf_counter()
    path = os.path.join(dirpath, "pred_probs.npy")
    dt = np.dtype(dtype)
    P = np.lib.format.open_memmap(path, mode="w+", dtype=dt, shape=(n, K))
    mm = getattr(P, "_mmap", None)
    # np.memmap maps from the offset rounded down to the allocation granularity
    data_pos = P.offset % mmap.ALLOCATIONGRANULARITY
    row_bytes = K * dt.itemsize
    state = {"done": 0}

    def drop_written(rows_done):
        if not isinstance(mm, mmap.mmap):
            return
        hi = (data_pos + rows_done * row_bytes) // mmap.PAGESIZE * mmap.PAGESIZE
        if rows_done == n:
            hi = len(mm)
        lo = state["done"]
        if hi - lo >= WRITE_DROP_BYTES or (rows_done == n and hi > lo):
            try:
                mm.flush(lo, hi - lo)                       # write back (bounded dirty memory)
                mm.madvise(mmap.MADV_DONTNEED, lo, hi - lo)  # and unmap from this process
            except (OSError, ValueError):
                pass
            state["done"] = hi

    noisy, _, true = generate(n, K, dt, seed=seed, noise=noise, signal=signal, out=P, on_block=drop_written)
    P.flush()
    del P
    np.save(os.path.join(dirpath, "labels.npy"), noisy)
    info = {"pred_probs_path": path, "labels_path": os.path.join(dirpath, "labels.npy"),
            "input_bytes": n * K * dt.itemsize, "file_bytes": os.path.getsize(path),
            "labels_bytes": noisy.nbytes, "generate_seconds": time.perf_counter() - t0,
            "n_flipped": int(np.count_nonzero(noisy != true))}
    return noisy, true, info


# --------------------------------------------------------------------------- /proc helpers
def _status_kib(*keys):
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in keys:
                out[k] = int(v.split()[0])
    return out


def _reset_hwm():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _check_hwm_reset():
    """True if clear_refs '5' really resets VmHWM in this process."""
    buf = np.ones(64 * MiB // 8)  # touched, > mmap threshold: freed back to the OS
    del buf
    before = _status_kib("VmHWM", "VmRSS")
    if not _reset_hwm():
        return False
    after = _status_kib("VmHWM", "VmRSS")
    return before["VmHWM"] - before["VmRSS"] > 32 * 1024 and after["VmHWM"] <= after["VmRSS"] + 8 * 1024


#: Set by --assume-mem-available-gib (to try the memory guard); None = read /proc/meminfo.
_ASSUMED_MEM_AVAILABLE = None


def mem_available_bytes():
    """``MemAvailable`` of /proc/meminfo in bytes (None if unreadable), or the assumed value."""
    if _ASSUMED_MEM_AVAILABLE is not None:
        return _ASSUMED_MEM_AVAILABLE
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def machine_info():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    mem_gib = None
    try:
        with open("/proc/meminfo") as f:
            mem_gib = round(int(f.readline().split()[1]) / 1024 / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    return {"nproc": usable, "cpu_count": os.cpu_count(), "cpu_model": model, "mem_total_gib": mem_gib,
            "python": platform.python_version(), "platform": platform.platform(),
            "noisylab_num_threads_env": os.environ.get("NOISYLAB_NUM_THREADS")}


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def versions(names=("cleanlab", "noisylab")):
    out = {"numpy": np.__version__}
    for name in names:
        # read in a subprocess so that the parent never imports either library
        r = subprocess.run([sys.executable, "-c", f"import {name}; print({name}.__version__)"],
                           capture_output=True, text=True, check=False)
        out[name] = r.stdout.strip() if r.returncode == 0 else "not importable"
    r = subprocess.run([sys.executable, "-c", "import psutil"], capture_output=True, check=False)
    out["psutil"] = "installed" if r.returncode == 0 else "absent"
    return out


def cleanlab_default_n_jobs():
    """What cleanlab 2.9 resolves n_jobs=None to on Linux (physical cores via psutil, else logical)."""
    try:
        import psutil
        n = psutil.cpu_count(logical=False)
    except ImportError:
        n = None
    return n or os.cpu_count()


# --------------------------------------------------------------------------- workers (subprocesses)
def _worker_measure(spec):
    """One call of one library on the in-memory input."""
    import gc
    import resource

    lib, kind, name, n_jobs = spec["lib"], spec["kind"], spec["name"], spec["n_jobs"]
    t_import = time.perf_counter()
    if lib == "noisylab":
        if kind == "filter":
            from noisylab.detect import find_label_issues as fn
        else:
            from noisylab.detect import get_label_quality_scores as fn
    else:
        if kind == "filter":
            from cleanlab.filter import find_label_issues as fn
        else:
            from cleanlab.rank import get_label_quality_scores as fn
    # cleanlab imports scipy at import time; noisylab imports scipy.special lazily inside the
    # confidence_weighted_entropy score (to keep `import noisylab` light).  Load it before the
    # timed call for both libraries, so that neither call pays a module import.
    import scipy.special  # noqa: F401
    t_import = time.perf_counter() - t_import
    rss_after_import = _status_kib("VmRSS")["VmRSS"]

    hwm_reset_ok = _check_hwm_reset()
    labels = np.load(spec["labels"])  # plain np.load: read fully into memory, no mmap
    pred_probs = np.load(spec["pred_probs"])
    assert isinstance(pred_probs, np.ndarray) and not isinstance(pred_probs, np.memmap)
    gc.collect()

    base = _status_kib("VmRSS", "VmHWM")
    if hwm_reset_ok:
        _reset_hwm()
    if kind == "filter":
        kwargs = {"filter_by": name}
        if lib == "cleanlab" and n_jobs is not None:
            kwargs["n_jobs"] = n_jobs
        t0 = time.perf_counter()
        res = fn(labels, pred_probs, **kwargs)
        dt = time.perf_counter() - t0
    else:
        t0 = time.perf_counter()
        res = fn(labels, pred_probs, method=name)
        dt = time.perf_counter() - t0
    end = _status_kib("VmRSS", "VmHWM")
    child_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux; 0 if no child

    res = np.asarray(res)
    np.save(spec["result"], res)
    return {
        "seconds": dt,
        "import_seconds": t_import,
        "rss_after_import_mib": rss_after_import / 1024,
        "baseline_rss_mib": base["VmRSS"] / 1024,
        "peak_rss_mib": end["VmHWM"] / 1024,
        "extra_mib": (end["VmHWM"] - base["VmRSS"]) / 1024,
        "hwm_reset": hwm_reset_ok,
        "child_max_rss_mib": child_kib / 1024 if child_kib else None,
        "result_dtype": str(res.dtype),
        "result_shape": list(res.shape),
    }


def _worker_memmap(spec):
    """noisylab's default filter, then self_confidence scores, on a memory-mapped (or loaded) .npy."""
    import gc
    import inspect

    t_import = time.perf_counter()
    from noisylab.detect import find_label_issues, get_label_quality_scores
    t_import = time.perf_counter() - t_import
    rss_after_import = _status_kib("VmRSS")["VmRSS"]
    labels = np.load(spec["labels"])
    if spec["mmap"]:
        P = np.load(spec["pred_probs"], mmap_mode="r")
        assert isinstance(P, np.memmap)
    else:
        P = np.load(spec["pred_probs"])
        assert not isinstance(P, np.memmap)
    gc.collect()
    # VmHWM so far: import + loading (read before the clear_refs check, whose 64 MiB would count)
    pre = _status_kib("VmRSS", "VmHWM")
    hwm_reset_ok = _check_hwm_reset()
    sig = inspect.signature
    calls = {}
    for step in ("filter", "scores"):
        gc.collect()
        before = _status_kib("VmRSS")["VmRSS"]
        if hwm_reset_ok:
            _reset_hwm()
        t0 = time.perf_counter()
        if step == "filter":
            res = find_label_issues(labels, P)  # the default filter_by
            name = sig(find_label_issues).parameters["filter_by"].default
        else:
            res = get_label_quality_scores(labels, P)  # the default method
            name = sig(get_label_quality_scores).parameters["method"].default
        dt = time.perf_counter() - t0
        end = _status_kib("VmRSS", "VmHWM")
        res = np.asarray(res)
        np.save(spec[f"result_{step}"], res)
        calls[step] = {"name": name, "seconds": dt, "rss_before_mib": before / 1024,
                       "peak_rss_mib": end["VmHWM"] / 1024, "rss_after_mib": end["VmRSS"] / 1024,
                       "result_path": spec[f"result_{step}"], "result_dtype": str(res.dtype)}
        del res
    whole = max([pre["VmHWM"] / 1024] + [c["peak_rss_mib"] for c in calls.values()])
    return {"mmap": spec["mmap"], "import_seconds": t_import, "rss_after_import_mib": rss_after_import / 1024,
            "rss_after_load_mib": pre["VmRSS"] / 1024, "peak_before_calls_mib": pre["VmHWM"] / 1024,
            "hwm_reset": hwm_reset_ok, "whole_run_peak_rss_mib": whole,
            "pred_probs_type": type(P).__name__, "calls": calls}


def _dask_reset_hwm():  # runs on the Dask workers (self-contained: pickled by value)
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _dask_status_mib():  # runs on the Dask workers
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmHWM", "VmRSS"):
                out[k] = int(v.split()[0]) / 1024
    return out


def _dask_warm_up():  # runs on the Dask workers: import what the tasks need
    import noisylab.detect
    import noisylab.detect._dask  # noqa: F401
    return os.getpid()


def _worker_dask(spec):
    """noisylab.find_label_issues on a dask.array over the .npy, on a LocalCluster of processes."""
    t_import = time.perf_counter()
    import dask
    import distributed
    from distributed import Client, LocalCluster

    from noisylab.detect import find_label_issues
    from noisylab.detect._dask import dask_array_from_npy
    t_import = time.perf_counter() - t_import

    n_workers = spec["n_workers"]
    out = {"dask_version": dask.__version__, "distributed_version": distributed.__version__,
           "import_seconds": t_import, "n_workers": n_workers, "filters": {}}
    t0 = time.perf_counter()
    cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None)
    client = Client(cluster)
    try:
        client.wait_for_workers(n_workers)
        pids = client.run(_dask_warm_up)
        out["startup_seconds"] = time.perf_counter() - t0
        out["worker_pids"] = sorted(pids.values())

        labels = np.load(spec["labels"])
        t1 = time.perf_counter()
        X = dask_array_from_npy(spec["pred_probs"], rows_per_block=spec["rows_per_block"])
        out["build_array_seconds"] = time.perf_counter() - t1
        out["array"] = {"shape": list(X.shape), "dtype": str(X.dtype), "type": type(X).__module__,
                        "n_blocks": int(X.numblocks[0]), "rows_per_block": int(X.chunks[0][0])}
        # Warm-up (not timed, reported): one call on the first rows, so that the first timed filter does not
        # pay the one-off costs of a fresh cluster (shipping the task functions, lazy imports on the workers).
        m = min(X.shape[0], max(20_000, 20 * X.shape[1]))
        t1 = time.perf_counter()
        try:
            find_label_issues(labels[:m], X[:m], filter_by=spec["filters"][0])
            out["warmup_error"] = None
        except Exception as exc:  # noqa: BLE001  (a failed warm-up only makes the first time pessimistic)
            out["warmup_error"] = repr(exc)
        out["warmup_seconds"] = time.perf_counter() - t1
        out["warmup_rows"] = int(m)
        hwm_reset_ok = _check_hwm_reset()
        out["hwm_reset"] = hwm_reset_ok
        for f in spec["filters"]:
            runs, first, same = [], None, True
            for _ in range(spec["repeats"]):
                client.run(_dask_reset_hwm)
                base = _status_kib("VmRSS")["VmRSS"]
                if hwm_reset_ok:
                    _reset_hwm()
                t = time.perf_counter()
                mask = np.asarray(find_label_issues(labels, X, filter_by=f))
                dt = time.perf_counter() - t
                client_end = _status_kib("VmHWM")["VmHWM"]
                wst = client.run(_dask_status_mib)
                runs.append({"seconds": dt, "client_baseline_rss_mib": base / 1024,
                             "client_peak_rss_mib": client_end / 1024,
                             "worker_peak_rss_mib": sorted(v["VmHWM"] for v in wst.values())})
                if first is None:
                    first = mask
                    np.save(spec["results"][f], mask)
                else:
                    same = same and np.array_equal(first, mask)
            out["filters"][f] = {
                "seconds": statistics.median(x["seconds"] for x in runs),
                "seconds_all": [x["seconds"] for x in runs],
                "client_peak_rss_mib": max(x["client_peak_rss_mib"] for x in runs),
                "client_baseline_rss_mib": max(x["client_baseline_rss_mib"] for x in runs),
                "max_worker_peak_rss_mib": max(max(x["worker_peak_rss_mib"]) for x in runs),
                "sum_worker_peak_rss_mib": max(sum(x["worker_peak_rss_mib"]) for x in runs),
                "repeats_identical": bool(same), "runs": runs,
                "result_dtype": str(first.dtype), "result_shape": list(first.shape),
            }
    finally:
        try:
            client.close()
            cluster.close()
        except Exception as exc:  # noqa: BLE001  (shutdown noise must not lose the numbers)
            out["shutdown_error"] = repr(exc)
    return out


def worker(spec_path):
    with open(spec_path) as f:
        spec = json.load(f)
    mode = spec.get("mode", "measure")
    out = {"measure": _worker_measure, "memmap": _worker_memmap, "dask": _worker_dask}[mode](spec)
    tmp = spec["metrics"] + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f)
    os.replace(tmp, spec["metrics"])


# --------------------------------------------------------------------------- parent: running workers
def run_worker(spec, stem, what):
    """Run one worker subprocess on ``spec``; returns (metrics or None, error text or None)."""
    spec = dict(spec, metrics=stem + "_metrics.json")
    with open(stem + "_spec.json", "w") as f:
        json.dump(spec, f)
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", stem + "_spec.json"],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not os.path.exists(spec["metrics"]):
        err = f"rc={proc.returncode}\n{proc.stdout[-2000:]}{proc.stderr[-4000:]}"
        sys.stderr.write(f"worker failed: {what} ({err})\n")
        return None, err
    with open(spec["metrics"]) as f:
        m = json.load(f)
    m["stderr_lines"] = len([ln for ln in proc.stderr.splitlines() if ln.strip()])
    return m, None


def run_one(tmpdir, tag, lib, kind, name, n_jobs, rep):
    stem = os.path.join(tmpdir, f"{tag}_{lib}_r{rep}")
    spec = {
        "mode": "measure", "lib": lib, "kind": kind, "name": name, "n_jobs": n_jobs,
        "labels": os.path.join(tmpdir, "labels.npy"),
        "pred_probs": os.path.join(tmpdir, "pred_probs.npy"),
        "result": stem + "_result.npy",
    }
    m, _ = run_worker(spec, stem, f"{tag} {lib}")
    if m is not None:
        m["result_path"] = spec["result"]
    return m


def summarise(runs):
    ok = [r for r in runs if r is not None]
    if not ok:
        return None
    return {
        "seconds": statistics.median(r["seconds"] for r in ok),
        "seconds_all": [r["seconds"] for r in ok],
        "import_seconds": statistics.median(r["import_seconds"] for r in ok),
        "rss_after_import_mib": max(r["rss_after_import_mib"] for r in ok),
        "baseline_rss_mib": max(r["baseline_rss_mib"] for r in ok),
        "peak_rss_mib": max(r["peak_rss_mib"] for r in ok),
        "extra_mib": max(r["extra_mib"] for r in ok),
        "hwm_reset": all(r["hwm_reset"] for r in ok),
        "child_max_rss_mib": max((r["child_max_rss_mib"] or 0) for r in ok) or None,
        "result_path": ok[0]["result_path"],
        "failed_runs": len(runs) - len(ok),
    }


def _precision_recall(mask, flips):
    tp = int(np.count_nonzero(mask & flips))
    return tp / max(int(mask.sum()), 1), tp / max(int(flips.sum()), 1)


def compare(kind, nl, cl, flips):
    """Agreement numbers between the two results (first repeat of each)."""
    a = np.load(nl["result_path"])
    b = np.load(cl["result_path"])
    if kind == "filter":
        out = {"rows_differing": int(np.count_nonzero(a != b)),
               "flagged_noisylab": int(a.sum()), "flagged_cleanlab": int(b.sum())}
        for lib, m in (("noisylab", a), ("cleanlab", b)):
            out[f"precision_{lib}"], out[f"recall_{lib}"] = _precision_recall(m, flips)
        return out
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return {"rows_differing": int(np.count_nonzero(a != b)),
            "max_abs_diff": float(np.max(np.abs(a64 - b64))) if a.size else 0.0}


def build_plan(filters, cl_jobs, scores):
    plan = []  # (label, kind, name, cleanlab n_jobs)
    for f in filters:
        for j in cl_jobs:
            plan.append((f if j is None else f"{f} (cleanlab n_jobs={j})", "filter", f, j))
    if scores:
        plan += [(f"scores: {m}", "scores", m, None) for m in SCORE_METHODS]
    return plan


def cleanlab_peak_estimate(kind, name, input_bytes):
    factor = CLEANLAB_PEAK_FACTOR_PRUNING if kind == "filter" and name in PRUNING_FILTERS \
        else CLEANLAB_PEAK_FACTOR_OTHER
    return factor * input_bytes + CLEANLAB_PEAK_OVERHEAD


def cleanlab_skips(plan, input_bytes, avail, n, K):
    """{(kind, name): reason} for the cleanlab measurements that would not fit, and the skip records."""
    by_key, records = {}, []
    if avail is None:
        return by_key, records
    for _, kind, name, _j in plan:
        if (kind, name) in by_key:
            continue
        est = cleanlab_peak_estimate(kind, name, input_bytes)
        if est > CLEANLAB_MAX_FRACTION * avail:
            factor = CLEANLAB_PEAK_FACTOR_PRUNING if kind == "filter" and name in PRUNING_FILTERS \
                else CLEANLAB_PEAK_FACTOR_OTHER
            reason = (f"cleanlab's expected peak {_size(est)} ({factor} x input {_size(input_bytes)} "
                      f"+ 0.3 GiB) > {CLEANLAB_MAX_FRACTION:.0%} of MemAvailable {_size(avail)}")
            by_key[(kind, name)] = reason
            records.append({"n": n, "k": K, "what": "cleanlab", "kind": kind, "method": name, "reason": reason})
    return by_key, records


def measure_plan(tmpdir, plan, repeats, flips, cl_skip=None, prefix=""):
    cl_skip = cl_skip or {}
    results = []
    nl_cache = {}  # noisylab ignores n_jobs: one noisylab measurement per filter
    for i, (label, kind, name, j) in enumerate(plan):
        tag = f"{i:02d}_{kind}_{name}"
        key = (kind, name)
        if key not in nl_cache:
            nl_cache[key] = summarise([run_one(tmpdir, tag, "noisylab", kind, name, None, r)
                                       for r in range(repeats)])
        skip = cl_skip.get(key)
        cl = None if skip else summarise([run_one(tmpdir, tag, "cleanlab", kind, name, j, r)
                                          for r in range(repeats)])
        nl = nl_cache[key]
        comp = compare(kind, nl, cl, flips) if nl and cl else None
        results.append({"label": label, "kind": kind, "name": name, "cleanlab_n_jobs": j,
                        "noisylab": nl, "cleanlab": cl, "cleanlab_skipped": skip, "compare": comp})
        cl_txt = "skipped (memory)" if skip else f"{cl['seconds'] if cl else float('nan'):.2f} s"
        print(f"{prefix}[{i + 1}/{len(plan)}] {label}: noisylab "
              f"{nl['seconds'] if nl else float('nan'):.2f} s, cleanlab {cl_txt}", file=sys.stderr, flush=True)
    return results


def finish_config(cfg, results):
    def _base(lib):
        vals = [r[lib]["baseline_rss_mib"] for r in results if r[lib]]
        return max(vals) if vals else None

    cfg["baseline_noisylab_mib"] = _base("noisylab")
    cfg["baseline_cleanlab_mib"] = _base("cleanlab")
    cfg["hwm_reset_everywhere"] = all(r[lib]["hwm_reset"] for r in results
                                      for lib in ("noisylab", "cleanlab") if r[lib])
    cfg["failed"] = any(r["noisylab"] is None or (r["cleanlab"] is None and not r["cleanlab_skipped"])
                        for r in results)


def _strip_paths(obj):
    """Copy of a result structure without the temporary result paths."""
    if isinstance(obj, dict):
        return {k: _strip_paths(v) for k, v in obj.items() if k != "result_path"}
    if isinstance(obj, list):
        return [_strip_paths(v) for v in obj]
    return obj


def write_json(path, payload):
    out = os.path.abspath(path)
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(_strip_paths(payload), f, indent=2)
    os.replace(tmp, out)


# --------------------------------------------------------------------------- rendering
def _mib(x):
    return "–" if x is None else f"{x:,.0f}"


def _size(nbytes):
    """Bytes as GiB (MiB below 1 GiB)."""
    return f"{nbytes / GiB:.1f} GiB" if nbytes >= GiB else f"{nbytes / MiB:,.0f} MiB"


def _ratio(x):
    return "–" if x is None else (f"{x:.1f}x" if x >= 1 else f"{x:.2f}x")


def _secs(x):
    return "–" if x is None else (f"{x:.3f}" if x < 0.1 else f"{x:.2f}")


def render_header(meta):
    mi, v = meta["machine"], meta["versions"]
    lines = [f"Machine: nproc={mi['nproc']} ({mi['cpu_model']}), {mi['mem_total_gib']} GiB RAM, "
             f"Python {mi['python']}; load average (1/5/15 min) at start {meta['loadavg_start']}"
             + (f", at end {meta['loadavg_end']}" if meta.get("loadavg_end") else "")
             + " (other processes running skew the times)"]
    vs = f"Versions: numpy {v['numpy']}, cleanlab {v['cleanlab']}, noisylab {v['noisylab']}"
    for extra in ("dask", "distributed"):
        if extra in v:
            vs += f", {extra} {v[extra]}"
    lines.append(vs + f" (psutil {v['psutil']}; cleanlab default n_jobs -> {meta['cleanlab_default_n_jobs']})")
    lines.append(f"Repeats: {meta['repeats']} fresh subprocess(es) per cell (median time, max peak)")
    return "\n".join(lines)


def _input_line(cfg):
    return (f"Input: n={cfg['n']:,} K={cfg['k']} {cfg['dtype']}, pred_probs {cfg['input_mib']:,.1f} MiB + labels "
            f"{cfg['labels_mib']:,.1f} MiB (seed {cfg['seed']}, {cfg['noise']:.0%} flipped, {cfg['n_flipped']:,} rows; "
            f"generated in {cfg['generate_seconds']:.1f} s; MemAvailable before: {cfg['mem_available_gib']:.1f} GiB)")


def render_config(results, cfg):
    lines = [_input_line(cfg), ""]
    lines.append("| filter / scores | noisylab s | cleanlab s | cleanlab/noisylab | noisylab peak RSS MiB "
                 "(extra) | cleanlab peak RSS MiB (extra) | rows differing | flagged noisylab / cleanlab |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        nl, cl, c = r["noisylab"], r["cleanlab"], r["compare"]
        nl_s = _secs(nl["seconds"]) if nl else "FAILED"
        cl_s = "skipped†" if r["cleanlab_skipped"] else (_secs(cl["seconds"]) if cl else "FAILED")
        ratio = _ratio(cl["seconds"] / nl["seconds"]) if nl and cl else "–"
        nl_m = f"{_mib(nl['peak_rss_mib'])} (+{_mib(nl['extra_mib'])})" if nl else "–"
        cl_m = f"{_mib(cl['peak_rss_mib'])} (+{_mib(cl['extra_mib'])})" if cl else "–"
        if cl and cl["child_max_rss_mib"]:
            cl_m += "*"
        if c is None:
            diff = flagged = "–"
            if r["kind"] == "filter" and nl:
                flagged = f"{int(np.load(nl['result_path']).sum()):,} / –"
        elif r["kind"] == "filter":
            diff = f"{c['rows_differing']:,}"
            flagged = f"{c['flagged_noisylab']:,} / {c['flagged_cleanlab']:,}"
        else:
            diff = f"{c['rows_differing']:,} (max abs diff {c['max_abs_diff']:.2g})"
            flagged = "–"
        lines.append(f"| {r['label']} | {nl_s} | {cl_s} | {ratio} | {nl_m} | {cl_m} | {diff} | {flagged} |")
    lines.append("")
    lines.append("Peak RSS = VmHWM of the measuring process during the one call (reset just before it); it "
                 "includes the interpreter, the imported library and the input (baseline: noisylab "
                 f"{_mib(cfg['baseline_noisylab_mib'])} MiB, cleanlab {_mib(cfg['baseline_cleanlab_mib'])} "
                 "MiB). extra = peak - baseline.")
    for lib in ("noisylab", "cleanlab"):
        imp = [r[lib] for r in results if r[lib]]
        if imp:
            lines.append(f"Import (not in the times above) of the {lib} function: "
                         f"{statistics.median(x['import_seconds'] for x in imp):.2f} s, RSS after import "
                         f"{max(x['rss_after_import_mib'] for x in imp):,.0f} MiB.")
    starred = [r for r in results if r["cleanlab"] and r["cleanlab"]["child_max_rss_mib"]]
    if starred:
        parts = ", ".join(f"{r['label']}: {_mib(r['cleanlab']['child_max_rss_mib'])}" for r in starred)
        lines.append("* cleanlab forked a multiprocessing pool: the workers' memory is NOT in the peak shown. "
                     f"Largest pool-worker max RSS (MiB, includes the anonymous pages shared copy-on-write with the parent, "
                     f"so not additive): {parts}.")
    skipped = [r for r in results if r["cleanlab_skipped"]]
    seen = set()
    for r in skipped:
        if r["name"] not in seen:
            seen.add(r["name"])
            lines.append(f"† cleanlab skipped for {r['label']}: {r['cleanlab_skipped']}.")
    if not cfg["hwm_reset_everywhere"]:
        lines.append("WARNING: clear_refs did not reset VmHWM in some worker; their peaks also cover loading.")
    qual = [r for r in results if r["kind"] == "filter" and r["compare"]]
    if qual:
        lines.append("")
        lines.append("Detection vs the injected flips (sanity check of the generator; doc §3.3 at K=100: "
                     "PBNR 0.96 / 0.88, CL 0.99 / 0.54):")
        lines.append("")
        lines.append("| filter | noisylab precision / recall | cleanlab precision / recall |")
        lines.append("|---|---:|---:|")
        for r in qual:
            c = r["compare"]
            lines.append(f"| {r['label']} | {c['precision_noisylab']:.3f} / {c['recall_noisylab']:.3f} | "
                         f"{c['precision_cleanlab']:.3f} / {c['recall_cleanlab']:.3f} |")
    return "\n".join(lines)


def _identical(r):
    c = r["compare"]
    if c is None:
        return "–"
    if c["rows_differing"] == 0:
        return "yes"
    if r["kind"] == "filter":
        return f"no ({c['rows_differing']:,} rows)"
    return f"no ({c['rows_differing']:,} rows, max abs diff {c['max_abs_diff']:.2g})"


def summary_rows(configs):
    rows = []
    for cfg in configs:
        base = {"n": cfg["n"], "k": cfg["k"], "dtype": cfg["dtype"], "input_mib": cfg["input_mib"]}
        if cfg.get("skipped"):
            rows.append(dict(base, method=None, skipped=cfg["skipped"]))
            continue
        for r in cfg["results"]:
            nl, cl = r["noisylab"], r["cleanlab"]
            rows.append(dict(
                base, method=r["label"], kind=r["kind"], name=r["name"], cleanlab_n_jobs=r["cleanlab_n_jobs"],
                noisylab_seconds=nl["seconds"] if nl else None, cleanlab_seconds=cl["seconds"] if cl else None,
                ratio=cl["seconds"] / nl["seconds"] if nl and cl else None,
                noisylab_peak_rss_mib=nl["peak_rss_mib"] if nl else None,
                cleanlab_peak_rss_mib=cl["peak_rss_mib"] if cl else None,
                noisylab_extra_pct_of_input=100 * nl["extra_mib"] / cfg["input_mib"] if nl else None,
                identical=(r["compare"]["rows_differing"] == 0) if r["compare"] else None,
                rows_differing=r["compare"]["rows_differing"] if r["compare"] else None,
                identical_text=_identical(r), cleanlab_skipped=r["cleanlab_skipped"],
                noisylab_failed=nl is None, cleanlab_failed=cl is None and not r["cleanlab_skipped"]))
    return rows


def render_summary(rows):
    lines = [("| n | K | input MiB | method | noisylab s | cleanlab s | cleanlab/noisylab | noisylab peak MiB | "
             "cleanlab peak MiB | noisylab extra % of input | identical |"),
             "|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---|"]
    for s in rows:
        inp = f"{s['input_mib']:,.0f}" if s["input_mib"] >= 10 else f"{s['input_mib']:.1f}"
        head = f"| {s['n']:,} | {s['k']} | {inp} |"
        if s.get("skipped"):
            lines.append(f"{head} all: SKIPPED ({s['skipped']}) | – | – | – | – | – | – | – |")
            continue
        cl_s = "skipped†" if s["cleanlab_skipped"] else ("FAILED" if s["cleanlab_failed"] else
                                                          _secs(s["cleanlab_seconds"]))
        nl_s = "FAILED" if s["noisylab_failed"] else _secs(s["noisylab_seconds"])
        ratio = _ratio(s["ratio"])
        pct = f"{s['noisylab_extra_pct_of_input']:.0f}%" if s["noisylab_extra_pct_of_input"] is not None else "–"
        lines.append(f"{head} {s['method']} | {nl_s} | {cl_s} | {ratio} | {_mib(s['noisylab_peak_rss_mib'])} | "
                     f"{_mib(s['cleanlab_peak_rss_mib'])} | {pct} | {s['identical_text']} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- modes
def _config_meta(n, K, dtype, args, info, avail):
    return {"n": n, "k": K, "dtype": str(np.dtype(dtype)), "seed": args.seed, "noise": args.noise,
            "input_mib": info["input_bytes"] / MiB, "labels_mib": info["labels_bytes"] / MiB,
            "file_bytes": info["file_bytes"], "n_flipped": info["n_flipped"],
            "generate_seconds": info["generate_seconds"],
            "mem_available_gib": avail / GiB if avail is not None else float("nan")}


def _print_skip(rec):
    where = f"n={rec['n']:,} K={rec['k']}"
    what = "whole config" if rec["what"] == "config" else f"cleanlab {rec['method']}"
    print(f"SKIP {where} {what}: {rec['reason']}", file=sys.stderr, flush=True)


def run_config(args, n, K, dtype, tmpdir, plan, prefix=""):
    """Generate one input, measure the plan, delete nothing (the caller owns tmpdir)."""
    avail = mem_available_bytes()
    labels, true, info = write_data(tmpdir, n, K, dtype, seed=args.seed, noise=args.noise)
    flips = labels != true
    del labels, true
    cfg = _config_meta(n, K, dtype, args, info, avail)
    cl_skip, skips = cleanlab_skips(plan, info["input_bytes"], avail, n, K)
    for rec in skips:
        _print_skip(rec)
    results = measure_plan(tmpdir, plan, args.repeats, flips, cl_skip, prefix=prefix)
    finish_config(cfg, results)
    cfg["cleanlab_skips"] = skips
    return cfg, results, flips


def main_single(args, filters, cl_jobs, meta):
    n, K = int(args.n or 1_000_000), int(args.k or 100)
    dtype = args.dtype or "float32"
    plan = build_plan(filters, cl_jobs, args.scores)
    tmpdir = tempfile.mkdtemp(prefix="detect_speed_", dir=args.tmpdir)
    try:
        cfg, results, _ = run_config(args, n, K, dtype, tmpdir, plan)
        meta["loadavg_end"] = loadavg()
        print(render_header(meta))
        print(render_config(results, cfg), flush=True)
        if args.json:
            write_json(args.json, {"mode": "single", "meta": meta, "config": cfg, "results": results,
                                   "skips": cfg["cleanlab_skips"]})
        return 1 if cfg["failed"] else 0
    finally:
        _cleanup(args, tmpdir)


def main_grid(args, filters, cl_jobs, meta):
    grid_n = [int(float(x)) for x in args.grid_n.split(",") if x.strip()]
    grid_k = [int(float(x)) for x in args.grid_k.split(",") if x.strip()]
    dtype = args.dtype or "float32"
    itemsize = np.dtype(dtype).itemsize
    plan = build_plan(filters, cl_jobs, args.scores)
    meta.update(grid_n=grid_n, grid_k=grid_k, dtype=dtype)
    print(render_header(meta))
    print(f"Grid: n in {grid_n} x K in {grid_k}, {dtype}; {len(plan)} measurement(s) per config. Memory guard: "
          f"skip a config whose input > {CONFIG_MAX_FRACTION:.0%} of MemAvailable; skip cleanlab when its expected "
          f"peak ({CLEANLAB_PEAK_FACTOR_PRUNING} x input + 0.3 GiB for {', '.join(PRUNING_FILTERS)}; "
          f"{CLEANLAB_PEAK_FACTOR_OTHER} x input + 0.3 GiB otherwise) > {CLEANLAB_MAX_FRACTION:.0%} of MemAvailable.",
          flush=True)
    base = tempfile.mkdtemp(prefix="detect_speed_grid_", dir=args.tmpdir)
    configs, skips, failed = [], [], False
    try:
        total = len(grid_n) * len(grid_k)
        idx = 0
        for n in grid_n:
            for K in grid_k:
                idx += 1
                input_bytes = n * K * itemsize
                avail = mem_available_bytes()
                print(flush=True)
                print(f"## [{idx}/{total}] n={n:,} K={K} ({input_bytes / MiB:,.1f} MiB {dtype})", flush=True)
                if avail is not None and input_bytes > CONFIG_MAX_FRACTION * avail:
                    reason = (f"the input alone, {_size(input_bytes)}, exceeds {CONFIG_MAX_FRACTION:.0%} "
                              f"of MemAvailable {_size(avail)}")
                    rec = {"n": n, "k": K, "what": "config", "kind": None, "method": None, "reason": reason}
                    skips.append(rec)
                    _print_skip(rec)
                    print(f"SKIPPED (noisylab and cleanlab): {reason}", flush=True)
                    configs.append({"n": n, "k": K, "dtype": dtype, "input_mib": input_bytes / MiB,
                                    "mem_available_gib": avail / GiB, "skipped": reason, "results": []})
                    continue
                cdir = tempfile.mkdtemp(prefix=f"n{n}_k{K}_", dir=base)
                try:
                    cfg, results, _ = run_config(args, n, K, dtype, cdir, plan, prefix=f"n={n:,} K={K} ")
                    # summary and JSON need the agreement numbers only: drop the result files with the dir
                    cfg["results"] = results
                    cfg["skipped"] = None
                    skips.extend(cfg["cleanlab_skips"])
                    failed = failed or cfg["failed"]
                    print(render_config(results, cfg), flush=True)
                    configs.append(cfg)
                finally:
                    shutil.rmtree(cdir, ignore_errors=True)
        meta["loadavg_end"] = loadavg()
        rows = summary_rows(configs)
        print()
        print("## Summary")
        print()
        print(render_header(meta))
        print()
        print(render_summary(rows))
        print()
        print("extra % = (noisylab peak - its baseline with the input loaded) / input size. identical: noisylab's "
              "mask / scores equal cleanlab's in every row.")
        if skips:
            print("Skipped (memory guard):")
            for rec in skips:
                what = "whole config" if rec["what"] == "config" else f"cleanlab {rec['method']}"
                print(f"* n={rec['n']:,} K={rec['k']}, {what}: {rec['reason']}")
        else:
            print("Skipped: nothing.")
        sys.stdout.flush()
        if args.json:
            write_json(args.json, {"mode": "grid", "meta": meta, "configs": configs, "skips": skips,
                                   "summary": rows})
        return 1 if failed else 0
    finally:
        _cleanup(args, base)


def _auroc(scores, positives):
    """P(score of a flipped row < score of a clean row), ties counted half."""
    from scipy.stats import rankdata

    npos = int(positives.sum())
    nneg = positives.size - npos
    if npos == 0 or nneg == 0:
        return None
    r = rankdata(-scores.astype(np.float64))  # low score = high rank
    return float((r[positives].sum() - npos * (npos + 1) / 2) / (npos * nneg))


def main_memmap(args, meta):
    n, K = int(args.n or 10_000_000), int(args.k or 100)
    dtype = args.dtype or "float16"
    tmpdir = tempfile.mkdtemp(prefix="detect_speed_memmap_", dir=args.tmpdir)
    try:
        avail = mem_available_bytes()
        print(f"writing {n:,} x {K} {dtype} to {tmpdir} ...", file=sys.stderr, flush=True)
        labels, true, info = write_data(tmpdir, n, K, dtype, seed=args.seed, noise=args.noise)
        flips = labels != true
        del labels, true
        parent_hwm = _status_kib("VmHWM")["VmHWM"] / 1024
        cfg = _config_meta(n, K, dtype, args, info, avail)
        cfg["parent_peak_rss_mib"] = parent_hwm

        def runs_for(use_mmap):
            out = []
            for r in range(args.repeats):
                stem = os.path.join(tmpdir, f"{'mmap' if use_mmap else 'inmem'}_r{r}")
                spec = {"mode": "memmap", "mmap": use_mmap, "labels": info["labels_path"],
                        "pred_probs": info["pred_probs_path"],
                        "result_filter": stem + "_filter.npy", "result_scores": stem + "_scores.npy"}
                m, _ = run_worker(spec, stem, f"memmap worker (mmap={use_mmap}, repeat {r})")
                out.append(m)
                print(f"[{'mmap' if use_mmap else 'in-memory'} {r + 1}/{args.repeats}] "
                      + (", ".join(f"{c['name']} {c['seconds']:.2f} s" for c in m["calls"].values())
                         + f", whole-run peak {m['whole_run_peak_rss_mib']:,.0f} MiB" if m else "FAILED"),
                      file=sys.stderr, flush=True)
            return out

        def summ(runs):
            ok = [r for r in runs if r]
            if not ok:
                return None
            calls = {}
            for step in ("filter", "scores"):
                cs = [r["calls"][step] for r in ok]
                calls[step] = {"name": cs[0]["name"], "seconds": statistics.median(c["seconds"] for c in cs),
                               "seconds_all": [c["seconds"] for c in cs],
                               "peak_rss_mib": max(c["peak_rss_mib"] for c in cs),
                               "rss_before_mib": max(c["rss_before_mib"] for c in cs),
                               "result_path": cs[0]["result_path"], "result_dtype": cs[0]["result_dtype"]}
            return {"whole_run_peak_rss_mib": max(r["whole_run_peak_rss_mib"] for r in ok),
                    "rss_after_load_mib": max(r["rss_after_load_mib"] for r in ok),
                    "peak_before_calls_mib": max(r["peak_before_calls_mib"] for r in ok),
                    "rss_after_import_mib": max(r["rss_after_import_mib"] for r in ok),
                    "import_seconds": statistics.median(r["import_seconds"] for r in ok),
                    "hwm_reset": all(r["hwm_reset"] for r in ok), "pred_probs_type": ok[0]["pred_probs_type"],
                    "failed_runs": len(runs) - len(ok), "calls": calls}

        mm = summ(runs_for(True))
        do_inmem = info["file_bytes"] <= MEMMAP_COMPARE_MAX_BYTES
        im = summ(runs_for(False)) if do_inmem else None
        quality, identical = {}, {}
        if mm:
            mask = np.load(mm["calls"]["filter"]["result_path"])
            scores = np.load(mm["calls"]["scores"]["result_path"])
            p, r = _precision_recall(mask, flips)
            m = int(mask.sum())
            quality["filter"] = {"flagged": m, "precision": p, "recall": r}
            lowest = np.zeros(n, dtype=bool)
            if m:
                lowest[np.argpartition(scores, m - 1)[:m]] = True
            p2, r2 = _precision_recall(lowest, flips)
            quality["scores"] = {"flagged": m, "precision": p2, "recall": r2, "auroc": _auroc(scores, flips),
                                 "note": "the m lowest scores, m = rows flagged by the filter"}
            if im:
                mask2 = np.load(im["calls"]["filter"]["result_path"])
                scores2 = np.load(im["calls"]["scores"]["result_path"])
                identical = {"filter": bool(np.array_equal(mask, mask2)),
                             "filter_rows_differing": int(np.count_nonzero(mask != mask2)),
                             "scores": bool(np.array_equal(scores, scores2)),
                             "scores_max_abs_diff": float(np.max(np.abs(scores.astype(np.float64)
                                                                       - scores2.astype(np.float64))))}
            del mask, scores
        meta["loadavg_end"] = loadavg()
        print(render_header(meta))
        print(render_memmap(cfg, mm, im, quality, identical, do_inmem), flush=True)
        if args.json:
            write_json(args.json, {"mode": "memmap", "meta": meta, "config": cfg, "memmap": mm, "in_memory": im,
                                   "in_memory_comparison_run": do_inmem, "quality": quality,
                                   "identical": identical, "skips": []})
        return 0 if mm and (im or not do_inmem) and all(v for k, v in identical.items()
                                                          if k in ("filter", "scores")) else 1
    finally:
        _cleanup(args, tmpdir)


def render_memmap(cfg, mm, im, quality, identical, do_inmem):
    fb = cfg["file_bytes"]
    lines = [(f"Memory-mapped run (noisylab only): n={cfg['n']:,} K={cfg['k']} {cfg['dtype']}; file pred_probs.npy "
             f"{fb:,} bytes = {fb / 1e9:.2f} GB = {fb / MiB:,.0f} MiB, labels {cfg['labels_mib']:,.0f} MiB "
             f"(seed {cfg['seed']}, {cfg['noise']:.0%} flipped, {cfg['n_flipped']:,} rows); written in "
             f"{cfg['generate_seconds']:.1f} s, writer's peak RSS {cfg['parent_peak_rss_mib']:,.0f} MiB."),
             ("The worker opens it with np.load(path, mmap_mode='r') in a fresh process; the file was just written, "
             "so it is read from the page cache (warm-cache times)."), ""]
    if mm is None:
        lines.append("memory-mapped worker FAILED (see stderr)")
        return "\n".join(lines)
    lines.append("| input | call | seconds | peak RSS MiB during the call | flagged | precision / recall vs flips |")
    lines.append("|---|---|---:|---:|---:|---:|")
    for tag, s in (("memmap", mm), ("in memory", im)):
        if s is None:
            continue
        for step in ("filter", "scores"):
            c = s["calls"][step]
            call = (f"find_label_issues (default: {c['name']})" if step == "filter"
                    else f"get_label_quality_scores (default: {c['name']})")
            if tag == "memmap":
                q = quality[step]
                qtxt = f"{q['precision']:.3f} / {q['recall']:.3f}"
                if step == "scores":
                    qtxt += f" (lowest m; AUROC {q['auroc']:.3f})" if q["auroc"] is not None else " (lowest m)"
                flagged = f"{q['flagged']:,}" + (" (m)" if step == "scores" else "")
            else:
                qtxt, flagged = "same rows" if identical.get(step) else "DIFFERENT", "–"
            lines.append(f"| {tag} | {call} | {c['seconds']:.2f} | {_mib(c['peak_rss_mib'])} | {flagged} | {qtxt} |")
    lines.append("")
    w = mm["whole_run_peak_rss_mib"]
    lines.append(f"Memory-mapped worker, whole run (interpreter + noisylab + labels + mapped pages + both calls): "
                 f"peak RSS {w:,.0f} MiB = {w * MiB / 1e9:.2f} GB (target <= 1 GB: "
                 f"{'met' if w * MiB <= 1e9 else 'NOT met'}); RSS after import {mm['rss_after_import_mib']:,.0f} MiB, "
                 f"after loading the labels and opening the map {mm['rss_after_load_mib']:,.0f} MiB "
                 f"({mm['pred_probs_type']}). The per-call peaks include everything resident at the call.")
    if not mm["hwm_reset"]:
        lines.append("WARNING: clear_refs did not reset VmHWM: per-call peaks are cumulative (they include a "
                     "64 MiB test buffer).")
    if do_inmem:
        if im is None:
            lines.append("In-memory comparison FAILED (see stderr).")
        else:
            lines.append(f"In-memory comparison (file <= {_size(MEMMAP_COMPARE_MAX_BYTES)}): mask identical: {identical['filter']} "
                         f"({identical['filter_rows_differing']:,} rows differ); scores identical: "
                         f"{identical['scores']} (max abs diff {identical['scores_max_abs_diff']:.2g}); in-memory "
                         f"whole-run peak {im['whole_run_peak_rss_mib']:,.0f} MiB.")
    else:
        lines.append(f"In-memory comparison not run: the file is larger than {_size(MEMMAP_COMPARE_MAX_BYTES)}.")
    lines.append("Scores quality: the m lowest self-confidence rows (m = rows flagged by the filter) vs the injected "
                 "flips; AUROC = P(score of a flipped row < score of a clean row).")
    return "\n".join(lines)


def _dask_available():
    r = subprocess.run([sys.executable, "-c",
                        "import dask, distributed; from noisylab.detect._dask import dask_array_from_npy"],
                       capture_output=True, text=True, check=False)
    return r.returncode == 0, (r.stderr.strip().splitlines() or ["?"])[-1]


def main_dask(args, filters, cl_jobs, meta):
    ok, why = _dask_available()
    if not ok:
        print(f"--dask-workers needs dask, distributed and noisylab.detect._dask.dask_array_from_npy: {why}",
              file=sys.stderr)
        return 2
    if not filters:
        sys.exit("--dask-workers needs at least one filter (--filters)")
    meta["versions"].update(versions(("dask", "distributed")))
    for k in ("cleanlab", "noisylab", "numpy", "psutil"):
        meta["versions"].setdefault(k, "?")
    n, K = int(args.n or 1_000_000), int(args.k or 100)
    dtype = args.dtype or "float32"
    if args.scores:
        print("note: --scores is ignored with --dask-workers (find_label_issues only)", file=sys.stderr)
    plan = build_plan(filters, cl_jobs, False)
    tmpdir = tempfile.mkdtemp(prefix="detect_speed_dask_", dir=args.tmpdir)
    try:
        cfg, results, flips = run_config(args, n, K, dtype, tmpdir, plan)
        stem = os.path.join(tmpdir, "dask")
        spec = {"mode": "dask", "n_workers": args.dask_workers, "rows_per_block": args.dask_rows_per_block,
                "labels": os.path.join(tmpdir, "labels.npy"), "pred_probs": os.path.join(tmpdir, "pred_probs.npy"),
                "filters": filters, "repeats": args.repeats,
                "results": {f: f"{stem}_{f}_mask.npy" for f in filters}}
        print(f"dask: starting LocalCluster(n_workers={args.dask_workers}) ...", file=sys.stderr, flush=True)
        dk, err = run_worker(spec, stem, "dask worker")
        rows = []
        if dk:
            by_name = {}
            for r in results:  # first row per filter (cleanlab default n_jobs, else the first listed)
                by_name.setdefault(r["name"], r)
            for f in filters:
                d = dk["filters"][f]
                r = by_name[f]
                nl, cl = r["noisylab"], r["cleanlab"]
                dmask = np.load(spec["results"][f])
                row = {"filter": f, "dask_seconds": d["seconds"], "dask_seconds_all": d["seconds_all"],
                       "inmem_seconds": nl["seconds"] if nl else None,
                       "cleanlab_seconds": cl["seconds"] if cl else None,
                       "cleanlab_n_jobs": r["cleanlab_n_jobs"], "cleanlab_skipped": r["cleanlab_skipped"],
                       "inmem_over_dask": nl["seconds"] / d["seconds"] if nl else None,
                       "cleanlab_over_dask": cl["seconds"] / d["seconds"] if cl else None,
                       "equal_inmem": bool(np.array_equal(dmask, np.load(nl["result_path"]))) if nl else None,
                       "equal_cleanlab": bool(np.array_equal(dmask, np.load(cl["result_path"]))) if cl else None,
                       "flagged": int(dmask.sum()), "repeats_identical": d["repeats_identical"],
                       "client_peak_rss_mib": d["client_peak_rss_mib"],
                       "max_worker_peak_rss_mib": d["max_worker_peak_rss_mib"],
                       "sum_worker_peak_rss_mib": d["sum_worker_peak_rss_mib"]}
                row["precision"], row["recall"] = _precision_recall(dmask, flips)
                rows.append(row)
        meta["loadavg_end"] = loadavg()
        print(render_header(meta))
        print(render_config(results, cfg))
        print()
        print(render_dask(cfg, dk, err, rows, args), flush=True)
        if args.json:
            write_json(args.json, {"mode": "dask", "meta": meta, "config": cfg, "results": results,
                                   "dask": dk, "dask_error": err, "dask_rows": rows,
                                   "skips": cfg["cleanlab_skips"]})
        bad = (dk is None or cfg["failed"] or not all(r["equal_inmem"] for r in rows)
               or not all(r["repeats_identical"] for r in rows))
        return 1 if bad else 0
    finally:
        _cleanup(args, tmpdir)


def render_dask(cfg, dk, err, rows, args):
    if dk is None:
        return "Dask worker FAILED:\n" + (err or "?")
    a = dk["array"]
    lines = [(f"Dask path: noisylab.find_label_issues(labels, X) with X = dask_array_from_npy(path, rows_per_block="
             f"{args.dask_rows_per_block}) -> {a['n_blocks']} blocks of {a['rows_per_block']:,} rows; "
             f"LocalCluster(n_workers={dk['n_workers']}, threads_per_worker=1, processes=True) (dask "
             f"{dk['dask_version']}, distributed {dk['distributed_version']}). Cluster start-up (incl. importing "
             f"noisylab on the workers), not in the times: {dk['startup_seconds']:.1f} s; then one untimed warm-up call "
             f"on the first {dk['warmup_rows']:,} rows: {dk['warmup_seconds']:.2f} s"
             + (f" (FAILED: {dk['warmup_error']})" if dk["warmup_error"] else "") + ". "
             f"{args.repeats} call(s) per filter on the same cluster (median)."), ""]
    lines.append("| filter | dask s | in-memory noisylab s | in-memory / dask | cleanlab s | cleanlab / dask | "
                 "mask == in-memory noisylab | mask == cleanlab | flagged | client peak MiB | Dask worker peak MiB "
                 "(max / sum) |")
    lines.append("|---|---:|---:|---:|---:|---:|---|---|---:|---:|---:|")

    def yn(v):
        return "–" if v is None else ("yes" if v else "NO")

    for r in rows:
        cl_s = "skipped†" if r["cleanlab_skipped"] else _secs(r["cleanlab_seconds"])
        r_im = "–" if r["inmem_over_dask"] is None else f"{r['inmem_over_dask']:.2f}x"
        r_cl = _ratio(r["cleanlab_over_dask"])
        lines.append(
            f"| {r['filter']} | {_secs(r['dask_seconds'])} | {_secs(r['inmem_seconds'])} | {r_im} | {cl_s} | {r_cl} | "
            f"{yn(r['equal_inmem'])} | {yn(r['equal_cleanlab'])} | {r['flagged']:,} | "
            f"{_mib(r['client_peak_rss_mib'])} | {_mib(r['max_worker_peak_rss_mib'])} / "
            f"{_mib(r['sum_worker_peak_rss_mib'])} |")
    lines.append("")
    lines.append("in-memory / dask > 1 means the Dask path is faster than in-memory noisylab (one process, its own "
                 "threads); cleanlab / dask is the speed-up over cleanlab (default n_jobs). Client peak = VmHWM of "
                 "the process holding the Client and the labels; Dask worker peaks = VmHWM of each worker process "
                 "(reset before each call).")
    if any(not r["repeats_identical"] for r in rows):
        lines.append("WARNING: repeated Dask calls returned different masks.")
    return "\n".join(lines)


def _cleanup(args, path):
    if args.keep_tmp:
        print(f"(kept {path})", file=sys.stderr)
    else:
        shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------- CLI
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--grid", action="store_true",
                      help=f"every (n, K) of --grid-n x --grid-k (default {DEFAULT_GRID_N} x {DEFAULT_GRID_K}), "
                           "where memory allows, with a summary table")
    mode.add_argument("--memmap-run", action="store_true",
                      help="noisylab only: float16 .npy opened with mmap_mode='r' (default 10M x 100, 2 GB)")
    mode.add_argument("--dask-workers", type=int, metavar="N",
                      help="noisylab's Dask path: the filters on a dask.array over the .npy on a LocalCluster "
                           "of N processes, compared with in-memory noisylab and cleanlab")
    p.add_argument("--n", type=float, default=None,
                   help="rows (accepts 1e6; default 1e6, 1e7 with --memmap-run)")
    p.add_argument("--k", type=int, default=None, help="classes (default 100)")
    p.add_argument("--dtype", default=None, choices=("float16", "float32", "float64"),
                   help="pred_probs dtype (default float32, float16 with --memmap-run)")
    p.add_argument("--grid-n", default=DEFAULT_GRID_N, help="comma-separated n values for --grid")
    p.add_argument("--grid-k", default=DEFAULT_GRID_K, help="comma-separated K values for --grid")
    p.add_argument("--filters", default="prune_by_noise_rate",
                   help="comma-separated filter_by values, or 'all', or 'none'")
    p.add_argument("--scores", action="store_true",
                   help="also time get_label_quality_scores for " + ", ".join(SCORE_METHODS))
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--json", metavar="OUT.json")
    p.add_argument("--cleanlab-n-jobs", default="default",
                   help="'default' (cleanlab's own, a process pool), an int, or 'both' (default and 1)")
    p.add_argument("--dask-rows-per-block", type=int, default=262144, help="rows per Dask block")
    p.add_argument("--assume-mem-available-gib", type=float, default=None, metavar="GIB",
                   help="use this instead of /proc/meminfo MemAvailable for the memory guard (to try it)")
    p.add_argument("--seed", type=int, default=12345)
    p.add_argument("--noise", type=float, default=0.2)
    p.add_argument("--tmpdir", default=None, help="where the .npy files go (default: system temp)")
    p.add_argument("--keep-tmp", action="store_true")
    p.add_argument("--worker", metavar="SPEC.json", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        worker(args.worker)
        return 0
    if (args.n is not None and int(args.n) < 1) or (args.k is not None and args.k < 2) or args.repeats < 1:
        sys.exit("need n >= 1, k >= 2, repeats >= 1")
    if args.dask_workers is not None and args.dask_workers < 1:
        sys.exit("need --dask-workers >= 1")
    if args.grid and (args.n is not None or args.k is not None):
        print("note: --n/--k are ignored with --grid (use --grid-n/--grid-k)", file=sys.stderr)
    if args.assume_mem_available_gib is not None:
        global _ASSUMED_MEM_AVAILABLE
        _ASSUMED_MEM_AVAILABLE = int(args.assume_mem_available_gib * GiB)
    if args.filters in ("all", ""):
        filters = list(FILTERS)
    elif args.filters == "none":
        filters = []
    else:
        filters = [f.strip() for f in args.filters.split(",") if f.strip()]
        bad = [f for f in filters if f not in FILTERS]
        if bad:
            sys.exit(f"unknown filter(s) {bad}; choose from {', '.join(FILTERS)} or 'all'")
    if args.cleanlab_n_jobs == "default":
        cl_jobs = [None]
    elif args.cleanlab_n_jobs == "both":
        cl_jobs = [None, 1]
    else:
        cl_jobs = [int(args.cleanlab_n_jobs)]

    mode = "grid" if args.grid else "memmap" if args.memmap_run else "dask" if args.dask_workers else "single"
    meta = {"mode": mode, "argv": sys.argv[1:] if argv is None else list(argv), "seed": args.seed,
            "noise": args.noise, "repeats": args.repeats, "machine": machine_info(),
            "versions": versions(("noisylab",) if mode == "memmap" else ("cleanlab", "noisylab")),
            "cleanlab_default_n_jobs": cleanlab_default_n_jobs(),
            "date": datetime.datetime.now().isoformat(timespec="seconds"), "loadavg_start": loadavg(),
            "guards": {"config_max_fraction_of_mem_available": CONFIG_MAX_FRACTION,
                       "cleanlab_max_fraction_of_mem_available": CLEANLAB_MAX_FRACTION,
                       "cleanlab_peak_factor_pruning": CLEANLAB_PEAK_FACTOR_PRUNING,
                       "cleanlab_peak_factor_other": CLEANLAB_PEAK_FACTOR_OTHER,
                       "cleanlab_peak_overhead_gib": CLEANLAB_PEAK_OVERHEAD / GiB,
                       "generator_block_rows": GEN_CHUNK_ROWS,
                       "assumed_mem_available_gib": args.assume_mem_available_gib}}
    meta["versions"].setdefault("cleanlab", "not used")
    if mode == "grid":
        return main_grid(args, filters, cl_jobs, meta)
    if mode == "memmap":
        return main_memmap(args, meta)
    if mode == "dask":
        return main_dask(args, filters, cl_jobs, meta)
    return main_single(args, filters, cl_jobs, meta)


if __name__ == "__main__":
    sys.exit(main())
