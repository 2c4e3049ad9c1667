"""Tests of noisylab.bench.harness: grid files, run keys, the JSONL store, run_grid (inline, processes, Dask,
killed mid-grid) and the markdown tables."""
import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pytest

from noisylab._validation import NoisylabInputError
from noisylab.bench.harness import (
    BenchRunError,
    Grid,
    ResultStore,
    current_protocol,
    load_grid,
    protocol_lines,
    results_table,
    run_grid,
    run_key,
)

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
RUNNER = f"{Path(__file__).stem}:toy_runner"

# --------------------------------------------------------------------------- the toy runner
# Imported by "module:function" in spawned workers (the tests folder is on sys.path through conftest.py, and
# spawned processes inherit the parent's sys.path).  Deterministic in the spec; NOISYLAB_TOY_SLEEP makes it slow
# and NOISYLAB_TOY_CALLS names a file where each call appends its run key (to count calls across processes).

_BASE = {"none": 0.95, "symmetric:0.2": 0.80, "pair:0.4": 0.60}
_BONUS = {"standard": 0.0, "coteaching": 0.05}


def toy_runner(spec):
    calls = os.environ.get("NOISYLAB_TOY_CALLS")
    if calls:
        fd = os.open(calls, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (run_key(spec) + "\n").encode())
        finally:
            os.close(fd)
    time.sleep(float(os.environ.get("NOISYLAB_TOY_SLEEP", "0")))
    if spec["method"] == "broken":
        raise ValueError(f"broken on purpose (seed {spec['seed']})")
    if spec["method"] == "not-a-dict":
        return [1, 2]
    acc = _BASE[spec["noise"]] + _BONUS[spec["method"]] + 0.01 * spec["seed"]
    return {"test_acc": round(acc, 6), "nested": {"best": round(acc + 0.001, 6)},
            "omp_threads": os.environ.get("OMP_NUM_THREADS")}


def read_calls(path):
    p = Path(path)
    return p.read_text().split() if p.exists() else []


GRID = """
[experiment]
name = "toy"
runner = "{runner}"

[protocol]
model = "cnn1d"
epochs = 40

[grid]
noise = ["symmetric:0.2", "pair:0.4"]
method = ["standard", "coteaching"]
seed = [0, 1, 2]

[[include]]
noise = "none"
method = "standard"
seed = [0, 1]

[[exclude]]
noise = "pair:0.4"
method = "coteaching"
seed = [1, 2]
"""


def grid_text(runner=RUNNER, body=GRID):
    return body.replace("{runner}", runner)


def small_grid(methods=("standard", "coteaching"), seeds=(0, 1), noises=("symmetric:0.2",)):
    return {"experiment": {"name": "small", "runner": RUNNER}, "protocol": {"epochs": 3},
            "grid": {"noise": list(noises), "method": list(methods), "seed": list(seeds)}}


def results_by_key(records, drop=("omp_threads",)):
    return {r["key"]: (r["spec"], {k: v for k, v in r["result"].items() if k not in drop}) for r in records}


# --------------------------------------------------------------------------- grids

def test_grid_expansion_order_include_exclude(tmp_path):
    path = tmp_path / "g.toml"
    path.write_text(grid_text())
    g = load_grid(path)
    assert isinstance(g, Grid) and g.name == "toy" and g.runner == RUNNER
    runs = g.runs()
    short = [(r["noise"], r["method"], r["seed"]) for r in runs]
    expected = [(n, m, s) for n in ["symmetric:0.2", "pair:0.4"] for m in ["standard", "coteaching"]
                for s in [0, 1, 2]]
    expected = [t for t in expected if not (t[0] == "pair:0.4" and t[1] == "coteaching" and t[2] in (1, 2))]
    expected += [("none", "standard", 0), ("none", "standard", 1)]
    assert short == expected  # product order (last key fastest), excluded points gone, includes last
    assert len(runs) == 12 - 2 + 2
    for r in runs:  # protocol fields first, then the grid point
        assert list(r) == ["model", "epochs", "noise", "method", "seed"]
        assert r["model"] == "cnn1d" and r["epochs"] == 40
    # the same grid from text and from a dict
    assert load_grid(grid_text()).runs() == runs
    import tomllib

    assert load_grid(tomllib.loads(grid_text())).runs() == runs
    assert load_grid(str(path)).runs() == runs


def test_include_overrides_protocol_and_duplicates_listed_once():
    g = load_grid({"experiment": {"runner": "m:f"}, "protocol": {"epochs": 40},
                   "grid": {"seed": [0, 1]},
                   "include": [{"seed": 0}, {"seed": [5, 6], "epochs": 100}]})
    assert g.runs() == [{"epochs": 40, "seed": 0}, {"epochs": 40, "seed": 1},
                        {"epochs": 100, "seed": 5}, {"epochs": 100, "seed": 6}]
    only_include = load_grid({"experiment": {"runner": "m:f"}, "include": [{"a": 1}]})
    assert only_include.runs() == [{"a": 1}]


@pytest.mark.parametrize("doc, match", [
    ({"protocol": {"a": 1}, "grid": {"s": [1]}}, r"missing the \[experiment\]"),
    ({"experiment": {"name": "x"}, "grid": {"s": [1]}}, r"\[experiment\] has no runner"),
    ({"experiment": {"runner": "noisylab.torch.robust.run_one"}, "grid": {"s": [1]}}, r"package\.module:function"),
    ({"experiment": {"runner": "a b:c"}, "grid": {"s": [1]}}, r"got 'a b:c'"),
    ({"experiment": {"runner": "m:f"}, "grid": {"s": []}}, r"grid\.s is an empty list"),
    ({"experiment": {"runner": "m:f"}, "grid": {"s": 3}}, r"grid\.s must be a list of values; got 3"),
    ({"experiment": {"runner": "m:f"}, "grid": {"s": [1, [2, 3]]}}, r"grid\.s\[1\] must be a string, integer"),
    ({"experiment": {"runner": "m:f"}, "grid": {"s": [1, 1.0]}}, r"grid\.s lists the value 1\.0 twice"),
    ({"experiment": {"runner": "m:f"}, "protocol": {"opt": {"lr": 0.1}}, "grid": {"s": [1]}},
     r"protocol\.opt must be a string, integer, float or boolean; got a table"),
    ({"experiment": {"runner": "m:f"}, "protocol": {"seed": 0}, "grid": {"seed": [1, 2]}},
     r"'seed' is both a \[protocol\] field and a \[grid\] key"),
    ({"experiment": {"runner": "m:f"}, "protocl": {}, "grid": {"s": [1]}}, r"unknown section\(s\) 'protocl'"),
    ({"experiment": {"runner": "m:f"}, "grid": {"s": [1]}, "exclude": [{"t": 1}]}, r"'t', which is not a \[grid\]"),
    ({"experiment": {"runner": "m:f"}, "grid": {"s": [1]}, "exclude": [{"s": 1}]}, r"drops every grid point"),
    ({"experiment": {"runner": "m:f"}}, r"nothing to run"),
    ({"experiment": {"runner": "m:f"}, "grid": {"lr": [float("nan")]}}, r"must be a finite number"),
])
def test_grid_errors(doc, match):
    with pytest.raises(NoisylabInputError, match=match):
        load_grid(doc)


def test_toml_syntax_error_names_file_and_parser_message(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[experiment]\nrunner = \"m:f\"\n[grid]\nseed = = [0, 1]\n")
    with pytest.raises(NoisylabInputError) as info:
        load_grid(path)
    msg = str(info.value)
    assert str(path) in msg and "invalid TOML" in msg and "line 4" in msg  # tomllib's own position
    with pytest.raises(NoisylabInputError, match="grid file not found"):
        load_grid(tmp_path / "missing.toml")
    with pytest.raises(NoisylabInputError, match=r"\[datetime\]|got datetime"):
        load_grid("[experiment]\nrunner = \"m:f\"\n[protocol]\nwhen = 1979-05-27T07:32:00Z\n[grid]\ns = [1]\n")


def test_exclude_matching_nothing_warns():
    with pytest.warns(UserWarning, match="matches no grid point"):
        load_grid({"experiment": {"runner": "m:f"}, "grid": {"s": [1, 2]}, "exclude": [{"s": 3}]})


# --------------------------------------------------------------------------- keys

def test_run_key_canonical_form():
    spec = {"seed": 1, "noise": "pair:0.4", "lr": 0.5}
    canonical = b'{"lr":0.5,"noise":"pair:0.4","seed":1}'
    assert run_key(spec) == hashlib.sha256(canonical).hexdigest()[:16]
    assert len(run_key(spec)) == 16
    # field order, 0.5 vs 0.50, integral floats: the same run
    assert run_key({"lr": 0.50, "noise": "pair:0.4", "seed": 1.0}) == run_key(spec)
    assert run_key({"epochs": 40.0}) == run_key({"epochs": 40})
    # different values, booleans vs ints, strings vs numbers: different runs
    assert run_key({**spec, "lr": 0.05}) != run_key(spec)
    assert run_key({"flag": True}) != run_key({"flag": 1})
    assert run_key({"seed": "1"}) != run_key({"seed": 1})
    assert run_key({"x": 0.1 + 0.2}) != run_key({"x": 0.3})
    # pinned: keys identify stored runs across versions, so this value must never change
    pinned = {"method": "coteaching", "noise": "symmetric:0.2", "seed": 0, "epochs": 40}
    assert run_key(pinned) == "b228d4905d82d601"
    assert run_key(pinned) == hashlib.sha256(
        b'{"epochs":40,"method":"coteaching","noise":"symmetric:0.2","seed":0}').hexdigest()[:16]
    with pytest.raises(NoisylabInputError, match="finite"):
        run_key({"lr": float("inf")})


# --------------------------------------------------------------------------- store

def test_store_round_trip_and_last_wins(tmp_path):
    store = ResultStore(tmp_path / "sub" / "r.jsonl")
    assert store.records() == [] and store.done_keys() == set()
    a = store.append({"spec": {"seed": 0}, "result": {"acc": 0.5}, "meta": {"seconds": 1.25}})
    b = store.append({"spec": {"seed": 1}, "result": {"acc": 0.75, "curve": [1, 2]}})
    a2 = store.append({"spec": {"seed": 0.0}, "result": {"acc": 0.625}})
    lines = store.path.read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(s)["key"] for s in lines)
    assert a["key"] == run_key({"seed": 0}) == a2["key"]
    assert set(a["meta"]) == {"seconds", "host", "finished_at", "noisylab_version"}
    assert a["meta"]["seconds"] == 1.25 and a["meta"]["finished_at"].endswith("+00:00")
    assert store.records() == [a, b, a2]
    assert store.latest() == {a["key"]: a2, b["key"]: b}
    assert store.done_keys() == {a["key"], b["key"]}
    with pytest.raises(NoisylabInputError, match="does not match its spec"):
        store.append({"key": "0" * 16, "spec": {"seed": 0}, "result": {}})
    with pytest.raises(NoisylabInputError, match="not JSON serialisable"):
        store.append({"spec": {"seed": 3}, "result": {"obj": object()}})
    assert len(store.records()) == 3


def test_truncated_last_line_ignored_then_repaired(tmp_path):
    store = ResultStore(tmp_path / "r.jsonl")
    first = store.append({"spec": {"seed": 0}, "result": {"acc": 1}})
    full = json.dumps({"key": run_key({"seed": 1}), "spec": {"seed": 1}, "result": {"acc": 2}, "meta": {}})
    with open(store.path, "a") as fh:
        fh.write(full[: len(full) // 2])  # a writer killed mid-line
    with pytest.warns(UserWarning, match="cut-short last line 2"):
        assert store.records() == [first]
    with pytest.warns(UserWarning, match="removed a cut-short last line"):
        second = store.append({"spec": {"seed": 2}, "result": {"acc": 3}})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert store.records() == [first, second]
    assert store.path.read_text().count("\n") == 2


def test_corrupt_terminated_last_line_is_dropped_too(tmp_path):
    store = ResultStore(tmp_path / "r.jsonl")
    first = store.append({"spec": {"seed": 0}, "result": {"acc": 1}})
    with open(store.path, "a") as fh:
        fh.write('{"key": "abc", "spec": \n')
    with pytest.warns(UserWarning, match="corrupt last line 2"):
        assert store.records() == [first]
    with pytest.warns(UserWarning, match="removed a corrupt last line"):
        second = store.append({"spec": {"seed": 2}, "result": {"acc": 3}})
    assert store.records() == [first, second]


def test_corrupt_middle_line_is_an_error(tmp_path):
    store = ResultStore(tmp_path / "r.jsonl")
    store.append({"spec": {"seed": 0}, "result": {"acc": 1}})
    good = store.path.read_text()
    with open(store.path, "a") as fh:  # e.g. a hand edit: a bad line with good ones after it
        fh.write('{"key": "x", "spec": {}}\n' + good)
    with pytest.raises(NoisylabInputError, match=r"r\.jsonl: line 2 is not a valid result record"):
        store.records()


_APPENDER = """
import sys
from noisylab.bench.harness import ResultStore
store = ResultStore(sys.argv[1])
for i in range(int(sys.argv[3])):
    store.append({"spec": {"writer": sys.argv[2], "i": i}, "result": {"pad": "x" * 20000}})
"""


def test_concurrent_appends_from_two_processes_lose_nothing(tmp_path):
    path = tmp_path / "r.jsonl"
    n = 60
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    procs = [subprocess.Popen([sys.executable, "-c", _APPENDER, str(path), w, str(n)], env=env) for w in "ab"]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        recs = ResultStore(path).records()
    assert len(recs) == 2 * n == len(path.read_text().splitlines())
    assert {(r["spec"]["writer"], r["spec"]["i"]) for r in recs} == {(w, i) for w in "ab" for i in range(n)}
    assert all(len(r["result"]["pad"]) == 20000 for r in recs)


# --------------------------------------------------------------------------- running

def test_inline_run_then_rerun_skips_finished(tmp_path, monkeypatch, capsys):
    calls = tmp_path / "calls.txt"
    monkeypatch.setenv("NOISYLAB_TOY_CALLS", str(calls))
    store = ResultStore(tmp_path / "r.jsonl")
    grid = small_grid()
    seen = []
    recs = run_grid(grid, store, on_result=seen.append)
    specs = load_grid(grid).runs()
    assert [r["spec"] for r in recs] == specs and [r["key"] for r in seen] == [run_key(s) for s in specs]
    for r in recs:
        s = r["spec"]
        assert r["result"]["test_acc"] == pytest.approx(_BASE[s["noise"]] + _BONUS[s["method"]] + 0.01 * s["seed"])
        assert r["meta"]["seconds"] >= 0
    assert sorted(read_calls(calls)) == sorted(run_key(s) for s in specs)
    # second run: nothing runs, same records (the progress bar counts the stored runs as done)
    assert run_grid(grid, store, progress=True) == recs
    assert "4/4" in capsys.readouterr().err
    assert len(read_calls(calls)) == 4
    # a new seed: only its runs
    bigger = small_grid(seeds=(0, 1, 2))
    recs3 = run_grid(bigger, store)
    new = read_calls(calls)[4:]
    assert sorted(new) == sorted(run_key({"epochs": 3, "noise": "symmetric:0.2", "method": m, "seed": 2})
                                 for m in ("standard", "coteaching"))
    assert [r["spec"] for r in recs3] == load_grid(bigger).runs()
    # a list of specs with an explicit runner (callable)
    assert run_grid(specs, store, runner=toy_runner) == recs


def test_failing_runs_reported_after_the_others(tmp_path):
    store = ResultStore(tmp_path / "r.jsonl")
    grid = small_grid(methods=("broken", "standard", "not-a-dict"), seeds=(0, 1))
    with pytest.raises(BenchRunError) as info:
        run_grid(grid, store)
    err = info.value
    assert isinstance(err, NoisylabInputError)
    msg = str(err)
    assert msg.startswith("4 of 6 runs failed") and "2 finished" in msg
    assert "ValueError: broken on purpose (seed 0)" in msg and "ValueError: broken on purpose (seed 1)" in msg
    assert "TypeError: the runner must return a dict; it returned list" in msg
    assert '"method":"broken"' in msg
    assert [f["spec"]["method"] for f in err.failures] == ["broken", "broken", "not-a-dict", "not-a-dict"]
    assert "toy_runner" in err.failures[0]["traceback"]
    assert {r["spec"]["method"] for r in store.records()} == {"standard"} and len(store.records()) == 2


def test_bad_runner_and_arguments(tmp_path):
    store = tmp_path / "r.jsonl"
    with pytest.raises(NoisylabInputError, match="could not import the runner module 'no_such_mod_xyz'"):
        run_grid({**small_grid(), "experiment": {"runner": "no_such_mod_xyz:f"}}, store)
    with pytest.raises(NoisylabInputError, match="has no attribute 'nope'"):
        run_grid({**small_grid(), "experiment": {"runner": f"{Path(__file__).stem}:nope"}}, store)
    with pytest.raises(NoisylabInputError, match="no runner"):
        run_grid([{"seed": 0}], store)
    with pytest.raises(NoisylabInputError, match="n_jobs must be"):
        run_grid(small_grid(), store, n_jobs=0)
    assert not store.exists()


def test_process_pool_matches_inline_and_reports_failures(tmp_path):
    grid = small_grid(methods=("standard", "broken", "coteaching"), seeds=(0, 1))
    store = ResultStore(tmp_path / "pool.jsonl")
    with pytest.raises(BenchRunError, match="2 of 6 runs failed") as info:
        run_grid(grid, store, n_jobs=2)
    assert {f["spec"]["method"] for f in info.value.failures} == {"broken"}
    pool = store.records()
    assert len(pool) == 4
    n_threads = max(1, len(os.sched_getaffinity(0)) // 2)
    assert {r["result"]["omp_threads"] for r in pool} == {str(n_threads)}  # set by the worker initializer
    assert len({r["meta"]["finished_at"] for r in pool}) >= 1
    inline = ResultStore(tmp_path / "inline.jsonl")
    with pytest.raises(BenchRunError):
        run_grid(grid, inline)
    assert results_by_key(pool) == results_by_key(inline.records())


def test_dask_client_gives_the_same_records(tmp_path):
    distributed = pytest.importorskip("distributed")
    grid = small_grid(noises=("symmetric:0.2", "pair:0.4"))
    inline = run_grid(grid, tmp_path / "inline.jsonl")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Port .* is already in use", category=UserWarning)
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                           dashboard_address=None)
    try:
        with distributed.Client(cluster) as client:
            on_dask = run_grid(grid, tmp_path / "dask.jsonl", client=client)
            with pytest.raises(NoisylabInputError, match="not both"):
                run_grid(grid, tmp_path / "x.jsonl", client=client, n_jobs=2)
    finally:
        cluster.close()
    assert [r["key"] for r in on_dask] == [r["key"] for r in inline]
    assert results_by_key(on_dask) == results_by_key(inline)


_KILLED_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from noisylab.bench.harness import run_grid

if __name__ == "__main__":
    run_grid({grid!r}, {store!r}, n_jobs=2)
"""


def test_killed_mid_grid_resumes_without_redoing_finished_runs(tmp_path, monkeypatch):
    grid_path = tmp_path / "grid.toml"
    grid_path.write_text(grid_text(body=textwrap.dedent("""
        [experiment]
        runner = "{runner}"
        [protocol]
        epochs = 5
        [grid]
        noise = ["symmetric:0.2", "pair:0.4"]
        method = ["standard", "coteaching"]
        seed = [0]
        [[include]]
        noise = "none"
        method = "standard"
        seed = [0, 1]
    """)))
    keys = [run_key(s) for s in load_grid(grid_path).runs()]
    assert len(keys) == 6
    store_path = tmp_path / "r.jsonl"
    script = tmp_path / "bench.py"
    script.write_text(_KILLED_SCRIPT.format(tests=str(HERE), grid=str(grid_path), store=str(store_path)))
    env = {**os.environ, "NOISYLAB_TOY_SLEEP": "1.5", "NOISYLAB_TOY_CALLS": str(tmp_path / "calls_killed.txt"),
           "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, str(script)], env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while not (store_path.exists() and store_path.read_bytes().count(b"\n") >= 1):
            assert proc.poll() is None, "the benchmark process ended before it was killed"
            assert time.monotonic() < deadline, "no result landed"
            time.sleep(0.05)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the parent and its workers, at once
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a line cut by the kill would be reported and dropped
        done_before = ResultStore(store_path).done_keys()
    assert 1 <= len(done_before) < 6  # results were stored as each run finished, not at the end
    assert done_before <= set(keys)

    rerun_calls = tmp_path / "calls_rerun.txt"
    monkeypatch.setenv("NOISYLAB_TOY_CALLS", str(rerun_calls))
    monkeypatch.delenv("NOISYLAB_TOY_SLEEP", raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        resumed = run_grid(grid_path, store_path)
    assert sorted(read_calls(rerun_calls)) == sorted(set(keys) - done_before)  # finished runs not redone
    assert [r["key"] for r in resumed] == keys

    monkeypatch.delenv("NOISYLAB_TOY_CALLS")
    reference = run_grid(grid_path, tmp_path / "ref.jsonl")
    assert results_by_key(resumed) == results_by_key(reference)
    assert results_table(resumed) == results_table(reference)
    # the store itself is in completion order; with the grid's orders its table is the same too
    g = load_grid(grid_path)
    orders = {"row_order": ["symmetric:0.2", "pair:0.4", "none"], "col_order": g.grid["method"]}
    assert results_table(ResultStore(store_path).records(), **orders) == results_table(reference)


# --------------------------------------------------------------------------- tables

def rec(noise, method, seed, acc, **extra):
    spec = {"epochs": 40, "noise": noise, "method": method, "seed": seed}
    return {"key": run_key(spec), "spec": spec, "result": {"test_acc": acc, **extra}, "meta": {}}


def test_results_table_mean_std_and_missing_cells():
    records = [
        rec("sym", "standard", 0, 0.80), rec("sym", "standard", 1, 0.90), rec("sym", "standard", 2, 1.00),
        rec("sym", "coteaching", 0, 0.70), rec("sym", "coteaching", 1, 0.74), rec("sym", "coteaching", 2, 0.72),
        rec("pair", "standard", 0, 0.50), rec("pair", "standard", 1, 0.60), rec("pair", "standard", 2, 0.70),
    ]
    table = results_table(records, scale=100)
    # mean 90, sample std of (80, 90, 100) = 10; (70, 74, 72): mean 72, std 2; (50, 60, 70): 60 ± 10
    assert table.splitlines() == [
        "| noise | standard | coteaching |",
        "|---|---|---|",
        "| sym | 90.00 ± 10.00 | 72.00 ± 2.00 |",
        "| pair | 60.00 ± 10.00 | — |",
    ]
    # ordering and selection of rows / columns; a label absent from the data is an empty row
    t2 = results_table(records, scale=100, row_order=["pair", "none"], col_order=["coteaching", "standard"],
                       fmt="{mean:.1f} ± {std:.1f}")
    assert t2.splitlines()[2:] == ["| pair | — | 60.0 ± 10.0 |", "| none | — | — |"]


def test_results_table_single_values_unequal_n_and_paths():
    records = [
        rec("sym", "standard", 0, 0.80, nested={"best": 0.85}), rec("sym", "standard", 1, 0.90, nested={"best": 0.95}),
        rec("sym", "coteaching", 0, 0.70, nested={"best": 0.75}),
    ]
    t = results_table(records, scale=100)
    # a single value shows no ±; the cells hold 2 and 1 values, so n is shown
    assert t.splitlines()[2] == "| sym | 85.00 ± 7.07 (n=2) | 70.00 (n=1) |"
    t_best = results_table(records, value="result.nested.best", scale=100, fmt="{mean:.1f}±{std:.1f}")
    assert t_best.splitlines()[2] == "| sym | 90.0±7.1 (n=2) | 75.0 (n=1) |"
    assert results_table(records, value="nested.best") == results_table(records, value="result.nested.best")
    # several row fields: one table column each; the seed as columns
    t_seed = results_table(records, rows=("noise", "method"), cols="seed", scale=100, fmt="{mean:.0f}")
    assert t_seed.splitlines() == ["| noise | method | 0 | 1 |", "|---|---|---|---|",
                                   "| sym | standard | 80 | 90 |", "| sym | coteaching | 70 | — |"]
    # a duplicated key: the last record wins
    dup = rec("sym", "coteaching", 0, 0.60)
    assert results_table(records + [dup], scale=100).splitlines()[2].endswith("| 60.00 (n=1) |")
    with pytest.raises(NoisylabInputError, match="no record has 'test_acc_best'; result fields are nested, test_acc"):
        results_table(records, value="test_acc_best")


def test_protocol_lines():
    records = [rec("sym", "standard", 0, 0.8), rec("sym", "coteaching", 1, 0.7), rec("pair", "standard", 2, 0.6)]
    records[0]["spec"]["lr"] = 0.1
    records[0]["key"] = run_key(records[0]["spec"])
    assert protocol_lines(records).splitlines() == [
        "- epochs: 40",
        "- varies across runs: noise (2 values), method (2 values), seed (3 values), lr (1 value, set in 1 of 3 runs)",
    ]
    assert protocol_lines([]) == ""


def test_harness_imports_without_torch():
    code = "import sys, noisylab.bench.harness; assert 'torch' not in sys.modules; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(SRC)})
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_module_docstring_example_is_a_valid_grid():
    import noisylab.bench.harness as h

    doc = h.__doc__
    example = textwrap.dedent(doc[doc.index("    [experiment]"):doc.index("\nRules:")])
    runs = load_grid(example).runs()
    # 2 noises x 2 methods x 3 seeds, minus pair:0.4 + coteaching (3 runs), plus 3 clean runs
    assert len(runs) == 12 - 3 + 3
    assert runs[-1] == {"model": "cnn1d", "epochs": 40, "noise": "none", "method": "standard", "seed": 2}


def _rec(method, noise, seed, acc, when=None, **protocol):
    spec = {"bench": "x", "method": method, "noise": noise, "seed": seed, **protocol}
    rec = {"key": run_key(spec), "spec": spec, "result": {"test_acc": acc}}
    if when is not None:
        rec["meta"] = {"finished_at": when}
    return rec


def test_current_protocol_keeps_each_cells_newest_protocol():
    old = [_rec("a", "n1", s, 0.5, "2026-01-01T00:00:00", epochs=10) for s in (0, 1)]
    new = [_rec("a", "n1", 0, 0.9, "2026-01-02T00:00:00", epochs=20)]
    other = [_rec("b", "n1", 0, 0.7, "2026-01-01T00:00:00", epochs=10, extra=1)]  # its own cell and protocol
    kept, left_out = current_protocol(new + old + other, ("method", "noise"))  # store order does not matter
    assert kept == new + other and left_out == 2
    # seeds are replicates, not protocols; without timestamps the later record is the newer
    undated = [_rec("a", "n1", 0, 0.1, epochs=10), _rec("a", "n1", 1, 0.2, epochs=10), _rec("a", "n1", 0, 0.3, epochs=5)]
    assert current_protocol(undated, ("method", "noise")) == ([undated[2]], 2)
    assert current_protocol(undated[:2], ("method", "noise")) == (undated[:2], 0)
    assert current_protocol([], ("method",)) == ([], 0)


def test_bench_results_leaves_out_earlier_protocols(tmp_path, capsys):
    from noisylab.cli import main

    store = ResultStore(tmp_path / "s.jsonl")
    for r in [_rec("a", "n1", s, 0.5, "2026-01-01T00:00:00", epochs=10) for s in (0, 1)] + \
             [_rec("a", "n1", s, 0.9, "2026-01-02T00:00:00", epochs=20) for s in (0, 1)]:
        store.append(r)
    args = ["bench", "results", str(store.path), "--rows", "method", "--cols", "noise"]
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert "| a | 90.00 ± 0.00 |" in out and "- epochs: 20" in out
    assert "2 record(s)" in err and "--all-protocols" in err
    assert main(args + ["--all-protocols"]) == 0
    out, err = capsys.readouterr()
    assert "| a | 70.00 ± 23.09 |" in out and err == ""
