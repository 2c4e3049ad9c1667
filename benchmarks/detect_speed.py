"""Speed and peak memory of ``noisylab`` vs ``cleanlab`` label-issue detection.

Method
------
1. The parent process builds one synthetic input, the generator of
   ``docs/CONFIDENT_LEARNING.md`` §3.3 (seed 12345 by default):

   * true class ``t ~ U{0..K-1}``;
   * logits ``~ N(0, 1)`` in float32, ``+4.0`` added to the true class;
   * ``pred_probs = softmax(logits)``, stored as float32 (``--dtype`` casts
     the result; float64 is computed in float64 from the same logits);
   * exactly ``round(0.2 n)`` rows (chosen without replacement) get a label
     drawn uniformly from the *other* ``K - 1`` classes.

   The doc does not fix the order of the random draws, so individual rows
   differ from the doc's data; the statistics (and so the timings) do not.
   ``labels.npy`` and ``pred_probs.npy`` are written to a temporary folder.

2. Every measurement runs in its own fresh subprocess
   (``python benchmarks/detect_speed.py --worker SPEC.json``), which

   * imports only the library it times;
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

4. The parent prints a markdown table (times, peaks, agreement between the two
   results), a sanity table of detection quality against the injected flips
   and, with ``--json``, writes the same numbers atomically.

Usage
-----
::

    python benchmarks/detect_speed.py                      # 1M x 100 float32, default filter
    python benchmarks/detect_speed.py --filters all --scores
    python benchmarks/detect_speed.py --n 100000 --k 10 --filters prune_by_class,both \\
        --cleanlab-n-jobs both --repeats 3 --json out.json

With ``--repeats R`` every measurement runs in R fresh subprocesses; the table
shows the median time and the largest peak (all values are in the JSON).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from noisylab.detect.filter import FILTER_METHODS as FILTERS  # noqa: E402  (light import: numpy only)
from noisylab.detect.rank import RANKING_METHODS as SCORE_METHODS  # noqa: E402
MiB = 1024 * 1024


# --------------------------------------------------------------------------- data
def make_data(n, K, dtype="float32", seed=12345, noise=0.2, signal=4.0, chunk=1 << 16):
    """The §3.3 generator. Returns (noisy_labels int64, pred_probs, true_labels int64)."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, K, n)
    logits = rng.standard_normal((n, K), dtype=np.float32)
    logits[np.arange(n), true] += np.float32(signal)
    work = np.float64 if np.dtype(dtype) == np.float64 else np.float32
    P = np.empty((n, K), dtype=dtype)
    for a in range(0, n, chunk):  # softmax in row chunks (bounded temporaries)
        z = logits[a:a + chunk].astype(work)
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        P[a:a + chunk] = z
    del logits
    noisy = true.copy()
    m = int(round(noise * n))
    flip = rng.choice(n, size=m, replace=False)
    noisy[flip] = (true[flip] + rng.integers(1, K, m)) % K  # uniform over the other K-1 classes
    return noisy, P, true


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
            "python": platform.python_version(), "platform": platform.platform()}


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def versions():
    out = {"numpy": np.__version__}
    for name in ("cleanlab", "noisylab"):
        # read in a subprocess so that the parent never imports either library
        r = subprocess.run([sys.executable, "-c", f"import {name}; print({name}.__version__)"],
                           capture_output=True, text=True)
        out[name] = r.stdout.strip() if r.returncode == 0 else "not importable"
    r = subprocess.run([sys.executable, "-c", "import psutil"], capture_output=True)
    out["psutil"] = "installed" if r.returncode == 0 else "absent"
    return out


def cleanlab_default_n_jobs():
    """What cleanlab 2.9 resolves n_jobs=None to on Linux (physical cores via psutil, else logical)."""
    try:
        import psutil  # noqa: F401
        n = psutil.cpu_count(logical=False)
    except ImportError:
        n = None
    return n or os.cpu_count()


# --------------------------------------------------------------------------- worker
def worker(spec_path):
    import gc
    import resource

    with open(spec_path) as f:
        spec = json.load(f)
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
    out = {
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
    tmp = spec["metrics"] + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f)
    os.replace(tmp, spec["metrics"])


# --------------------------------------------------------------------------- parent
def run_one(tmpdir, tag, lib, kind, name, n_jobs, rep):
    stem = os.path.join(tmpdir, f"{tag}_{lib}_r{rep}")
    spec = {
        "lib": lib, "kind": kind, "name": name, "n_jobs": n_jobs,
        "labels": os.path.join(tmpdir, "labels.npy"),
        "pred_probs": os.path.join(tmpdir, "pred_probs.npy"),
        "result": stem + "_result.npy",
        "metrics": stem + "_metrics.json",
    }
    with open(stem + "_spec.json", "w") as f:
        json.dump(spec, f)
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", stem + "_spec.json"],
                          capture_output=True, text=True)
    if proc.returncode != 0 or not os.path.exists(spec["metrics"]):
        sys.stderr.write(f"worker failed: {tag} {lib} (rc={proc.returncode})\n{proc.stdout[-2000:]}"
                         f"{proc.stderr[-4000:]}\n")
        return None
    with open(spec["metrics"]) as f:
        m = json.load(f)
    m["result_path"] = spec["result"]
    m["stderr_lines"] = len([ln for ln in proc.stderr.splitlines() if ln.strip()])
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


def compare(kind, nl, cl, flips):
    """Agreement numbers between the two results (first repeat of each)."""
    a = np.load(nl["result_path"])
    b = np.load(cl["result_path"])
    if kind == "filter":
        out = {"rows_differing": int(np.count_nonzero(a != b)),
               "flagged_noisylab": int(a.sum()), "flagged_cleanlab": int(b.sum())}
        for lib, m in (("noisylab", a), ("cleanlab", b)):
            tp = int(np.count_nonzero(m & flips))
            out[f"precision_{lib}"] = tp / max(int(m.sum()), 1)
            out[f"recall_{lib}"] = tp / max(int(flips.sum()), 1)
        return out
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return {"rows_differing": int(np.count_nonzero(a != b)),
            "max_abs_diff": float(np.max(np.abs(a64 - b64))) if a.size else 0.0}


def _mib(x):
    return "–" if x is None else f"{x:,.0f}"


def render(results, meta):
    lines = []
    lines.append(f"Input: n={meta['n']:,} K={meta['k']} {meta['dtype']}, pred_probs "
                 f"{meta['input_mib']:,.1f} MiB + labels {meta['labels_mib']:,.1f} MiB "
                 f"(seed {meta['seed']}, {meta['noise']:.0%} flipped, {meta['n_flipped']:,} rows)")
    mi, v = meta["machine"], meta["versions"]
    lines.append(f"Machine: nproc={mi['nproc']} ({mi['cpu_model']}), {mi['mem_total_gib']} GiB RAM, "
                 f"Python {mi['python']}; load average (1/5/15 min) at start {meta['loadavg_start']}, "
                 f"at end {meta['loadavg_end']} (other processes running skew the times)")
    lines.append(f"Versions: numpy {v['numpy']}, cleanlab {v['cleanlab']}, noisylab {v['noisylab']} "
                 f"(psutil {v['psutil']}; cleanlab default n_jobs -> {meta['cleanlab_default_n_jobs']})")
    lines.append(f"Repeats: {meta['repeats']} fresh subprocess(es) per cell (median time, max peak)")
    lines.append("")
    lines.append("| filter / scores | noisylab s | cleanlab s | cleanlab/noisylab | noisylab peak RSS MiB "
                 "(extra) | cleanlab peak RSS MiB (extra) | rows differing | flagged noisylab / cleanlab |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        nl, cl, c = r["noisylab"], r["cleanlab"], r["compare"]
        nl_s = f"{nl['seconds']:.2f}" if nl else "FAILED"
        cl_s = f"{cl['seconds']:.2f}" if cl else "FAILED"
        ratio = f"{cl['seconds'] / nl['seconds']:.1f}x" if nl and cl else "–"
        nl_m = f"{_mib(nl['peak_rss_mib'])} (+{_mib(nl['extra_mib'])})" if nl else "–"
        cl_m = f"{_mib(cl['peak_rss_mib'])} (+{_mib(cl['extra_mib'])})" if cl else "–"
        if cl and cl["child_max_rss_mib"]:
            cl_m += "*"
        if c is None:
            diff = flagged = "–"
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
                 f"{_mib(meta['baseline_noisylab_mib'])} MiB, cleanlab {_mib(meta['baseline_cleanlab_mib'])} "
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
    if not meta["hwm_reset_everywhere"]:
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


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=float, default=1_000_000, help="rows (accepts 1e6)")
    p.add_argument("--k", type=int, default=100, help="classes")
    p.add_argument("--dtype", default="float32", choices=("float16", "float32", "float64"))
    p.add_argument("--filters", default="prune_by_noise_rate",
                   help="comma-separated filter_by values, or 'all', or 'none'")
    p.add_argument("--scores", action="store_true",
                   help="also time get_label_quality_scores for " + ", ".join(SCORE_METHODS))
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--json", metavar="OUT.json")
    p.add_argument("--cleanlab-n-jobs", default="default",
                   help="'default' (cleanlab's own, a process pool), an int, or 'both' (default and 1)")
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
    n, K = int(args.n), args.k
    if n < 1 or K < 2 or args.repeats < 1:
        sys.exit("need n >= 1, k >= 2, repeats >= 1")
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

    meta = {"n": n, "k": K, "dtype": args.dtype, "seed": args.seed, "noise": args.noise,
            "repeats": args.repeats, "machine": machine_info(), "versions": versions(),
            "cleanlab_default_n_jobs": cleanlab_default_n_jobs(),
            "date": datetime.datetime.now().isoformat(timespec="seconds"), "loadavg_start": loadavg()}

    tmpdir = tempfile.mkdtemp(prefix="detect_speed_", dir=args.tmpdir)
    try:
        t0 = time.perf_counter()
        labels, P, true = make_data(n, K, args.dtype, seed=args.seed, noise=args.noise)
        flips = labels != true
        np.save(os.path.join(tmpdir, "labels.npy"), labels)
        np.save(os.path.join(tmpdir, "pred_probs.npy"), P)
        meta.update(input_mib=P.nbytes / MiB, labels_mib=labels.nbytes / MiB, n_flipped=int(flips.sum()),
                    generate_seconds=time.perf_counter() - t0)
        del labels, P, true

        plan = []  # (label, kind, name, cleanlab n_jobs)
        for f in filters:
            for j in cl_jobs:
                plan.append((f if j is None else f"{f} (cleanlab n_jobs={j})", "filter", f, j))
        if args.scores:
            plan += [(f"scores: {m}", "scores", m, None) for m in SCORE_METHODS]

        results = []
        nl_cache = {}  # noisylab ignores n_jobs: one noisylab measurement per filter
        for i, (label, kind, name, j) in enumerate(plan):
            tag = f"{i:02d}_{kind}_{name}"
            key = (kind, name)
            if key not in nl_cache:
                nl_cache[key] = summarise([run_one(tmpdir, tag, "noisylab", kind, name, None, r)
                                           for r in range(args.repeats)])
            cl = summarise([run_one(tmpdir, tag, "cleanlab", kind, name, j, r) for r in range(args.repeats)])
            nl = nl_cache[key]
            comp = compare(kind, nl, cl, flips) if nl and cl else None
            results.append({"label": label, "kind": kind, "name": name, "cleanlab_n_jobs": j,
                            "noisylab": nl, "cleanlab": cl, "compare": comp})
            print(f"[{i + 1}/{len(plan)}] {label}: noisylab "
                  f"{nl['seconds'] if nl else float('nan'):.2f} s, cleanlab "
                  f"{cl['seconds'] if cl else float('nan'):.2f} s", file=sys.stderr, flush=True)

        def _base(lib):
            vals = [r[lib]["baseline_rss_mib"] for r in results if r[lib]]
            return max(vals) if vals else None

        meta["loadavg_end"] = loadavg()
        meta["baseline_noisylab_mib"] = _base("noisylab")
        meta["baseline_cleanlab_mib"] = _base("cleanlab")
        meta["hwm_reset_everywhere"] = all(r[lib]["hwm_reset"] for r in results
                                           for lib in ("noisylab", "cleanlab") if r[lib])
        print(render(results, meta), flush=True)

        if args.json:
            for r in results:
                for lib in ("noisylab", "cleanlab"):
                    if r[lib]:
                        r[lib] = {k: v for k, v in r[lib].items() if k != "result_path"}
            payload = {"meta": meta, "results": results}
            out = os.path.abspath(args.json)
            tmp = out + ".tmp"
            with open(tmp, "w") as f:
                json.dump(payload, f, indent=2)
            os.replace(tmp, out)
        failed = any(r["noisylab"] is None or r["cleanlab"] is None for r in results)
        return 1 if failed else 0
    finally:
        if args.keep_tmp:
            print(f"(kept {tmpdir})", file=sys.stderr)
        else:
            shutil.rmtree(tmpdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
