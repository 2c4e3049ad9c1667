"""Regression tests of the bench-harness audit fixes: Ctrl-C and dying workers with n_jobs > 1, runner
identity, up-front validation, two processes on one store, non-finite results, markdown escaping."""
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
    ResultStore,
    load_grid,
    protocol_lines,
    results_table,
    run_grid,
    validate_grid,
)

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
MOD = Path(__file__).stem


# --------------------------------------------------------------------------- trivial runners (importable by name)

def quick(spec):
    calls = os.environ.get("NOISYLAB_AUDIT_CALLS")
    if calls:
        fd = os.open(calls, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{spec['seed']}\n".encode())
        finally:
            os.close(fd)
    time.sleep(float(spec.get("sleep", 0)))
    return {"test_acc": 0.5 + 0.01 * spec["seed"]}


def other(spec):
    return {"test_acc": 0.9}


def crashy(spec):
    if spec["method"] == "segv":
        os.kill(os.getpid(), signal.SIGSEGV)
    if spec["method"] == "exit":
        os._exit(137)
    return quick(spec)


def nan_runner(spec):
    return {"test_acc": float("nan") if spec["seed"] == 1 else 0.5, "curve": [1.0, float("inf")]}


def checked(spec):
    return quick(spec)


def _check(specs):
    bad = sorted({s["method"] for s in specs if s["method"] not in ("a", "b")})
    if bad:
        raise NoisylabInputError(f"unknown method(s) {bad}")


checked.validate_specs = _check


def _specs(n, **extra):
    return [{"method": "a", "seed": i, **extra} for i in range(n)]


# --------------------------------------------------------------------------- F2: a dying worker

def test_dying_worker_fails_only_its_own_run_and_is_named(tmp_path):
    specs = [{"method": "segv", "seed": 0}, {"method": "exit", "seed": 1}] + _specs(6)
    store = ResultStore(tmp_path / "s.jsonl")
    with pytest.raises(BenchRunError) as info:
        run_grid(specs, store, runner=f"{MOD}:crashy", n_jobs=2)
    failed = {f["spec"]["method"]: f["error"] for f in info.value.failures}
    assert set(failed) == {"segv", "exit"}
    assert "SIGSEGV" in failed["segv"] and "code 137" in failed["exit"]
    assert "2 of 8 runs failed" in str(info.value)
    assert len(store.latest()) == 6  # every good run stored


# --------------------------------------------------------------------------- F1: Ctrl-C with n_jobs > 1

def test_ctrl_c_with_processes_stops_promptly_and_keeps_finished_runs(tmp_path):
    store, calls = tmp_path / "s.jsonl", tmp_path / "calls.txt"
    script = textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{str(HERE)!r}, {str(SRC)!r}]
        from noisylab.bench.harness import run_grid
        specs = [{{"method": "a", "seed": 0, "sleep": 0.2}}, {{"method": "a", "seed": 1, "sleep": 0.2}}]
        specs += [{{"method": "a", "seed": i, "sleep": 3}} for i in range(2, 10)]
        if __name__ == "__main__":
            try:
                run_grid(specs, {str(store)!r}, runner="{MOD}:quick", n_jobs=2)
            except KeyboardInterrupt:
                sys.exit(130)
    """)
    env = {**os.environ, "NOISYLAB_AUDIT_CALLS": str(calls), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # both quick runs stored, the slow ones under way
            if store.exists() and len(store.read_text().splitlines()) >= 2 and len(calls.read_text().split()) >= 4:
                break
            time.sleep(0.05)
        t0 = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)  # as a terminal does: the whole process group
        _, err = proc.communicate(timeout=15)
        waited = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert waited < 5, waited
    assert "interrupted:" in err and "queued run(s) not started" in err
    assert len(ResultStore(store).latest()) == 2
    time.sleep(0.5)
    assert len(calls.read_text().split()) == 4  # no queued run started after Ctrl-C


# --------------------------------------------------------------------------- F3: runner identity

def test_changed_runner_reruns_and_records_runner(tmp_path):
    store = ResultStore(tmp_path / "s.jsonl")
    recs = run_grid(_specs(2), store, runner=f"{MOD}:quick")
    assert {r["meta"]["runner"] for r in recs} == {f"{MOD}:quick"}
    with pytest.warns(UserWarning, match="another runner"):
        recs = run_grid(_specs(2), store, runner=f"{MOD}:other")
    assert [r["result"]["test_acc"] for r in recs] == [0.9, 0.9]
    assert len(store.records()) == 4


def test_records_without_runner_still_count_as_done(tmp_path, monkeypatch):
    store = ResultStore(tmp_path / "s.jsonl")
    for s in _specs(2):  # a record written before meta.runner existed
        store.append({"spec": s, "result": {"test_acc": 0.1}})
    calls = tmp_path / "calls.txt"
    monkeypatch.setenv("NOISYLAB_AUDIT_CALLS", str(calls))
    recs = run_grid(_specs(3), store, runner=f"{MOD}:quick")
    assert calls.read_text().split() == ["2"]
    assert [r["result"]["test_acc"] for r in recs] == [0.1, 0.1, 0.52]


# --------------------------------------------------------------------------- F5: two processes on one store

def test_store_reread_before_each_run(tmp_path, monkeypatch):
    store = ResultStore(tmp_path / "s.jsonl")
    other_store = ResultStore(store.path)

    def runner(spec):  # meanwhile "another process" finishes seed 1
        if spec["seed"] == 0:
            other_store.append({"spec": {"method": "a", "seed": 1}, "result": {"test_acc": 0.7},
                                "meta": {"runner": f"{__name__}:runner_x"}})
        return {"test_acc": 0.5}

    runner.__qualname__ = "runner_x"
    recs = run_grid(_specs(2), store, runner=runner)
    assert len(store.records()) == 2  # seed 1 not run a second time
    assert [r["result"]["test_acc"] for r in recs] == [0.5, 0.7]


# --------------------------------------------------------------------------- F4: validation up front

def test_runner_spec_checks_run_before_any_run(tmp_path, monkeypatch):
    calls = tmp_path / "calls.txt"
    monkeypatch.setenv("NOISYLAB_AUDIT_CALLS", str(calls))
    specs = _specs(2) + [{"method": "mixpu", "seed": 0}]
    with pytest.raises(NoisylabInputError, match="mixpu"):
        run_grid(specs, tmp_path / "s.jsonl", runner=f"{MOD}:checked")
    assert not calls.exists() and not (tmp_path / "s.jsonl").exists()


def test_validate_grid_table_fields():
    grid = load_grid({"experiment": {"runner": f"{MOD}:quick"}, "grid": {"method": ["a"], "seed": [0, 1]}})
    validate_grid(grid, table_fields=("method", "spec.seed", "result.test_acc", "meta.host", "key"))
    with pytest.raises(NoisylabInputError, match=r"'metod' \(did you mean 'method'\?\)"):
        validate_grid(grid, table_fields=("metod",))


def test_robust_spec_checks():
    pytest.importorskip("torch")
    from noisylab.bench.robust import check_robust_specs, robust_grid

    good = robust_grid(seeds="0").runs()
    check_robust_specs(good)
    bad = [{**good[0], "method": "mixpu"}, {**good[0], "epocs": 2}]
    with pytest.raises(NoisylabInputError) as info:
        validate_grid(bad, runner="noisylab.torch.robust:run_one")
    assert "'mixpu' (did you mean 'mixup'?)" in str(info.value) and "'epocs'" in str(info.value)


def test_include_typo_and_missing_grid_key_warn():
    doc = {"experiment": {"runner": f"{MOD}:quick"}, "grid": {"method": ["a"], "seed": [0]},
           "include": [{"method": "b", "sede": 0}]}
    with pytest.warns(UserWarning, match=r"'sede' \(did you mean 'seed'\?\).*leaves out the grid key\(s\) 'seed'"):
        load_grid(doc)


def test_shipped_grids_load_without_warnings():
    from noisylab.bench.detectors import detectors_grid
    from noisylab.bench.robust import robust_grid

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        robust_grid()
        detectors_grid()


# --------------------------------------------------------------------------- F7 / report F4: non-finite results

def test_nan_result_stored_as_null_and_left_out_of_the_table(tmp_path):
    store = ResultStore(tmp_path / "s.jsonl")
    with pytest.warns(UserWarning, match="non-finite"):
        recs = run_grid(_specs(3), store, runner=f"{MOD}:nan_runner")
    for line in store.path.read_text().splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert recs[1]["result"]["test_acc"] is None and recs[1]["meta"]["nonfinite"] == ["curve[1]", "test_acc"]
    table = results_table(recs, rows="method", cols="method")
    assert "0.50 ± 0.00 (1 non-finite left out)" in table


def test_legacy_nan_in_store_is_left_out_with_a_note():
    recs = [{"key": str(i), "spec": {"method": "m", "seed": i}, "result": {"test_acc": v}}
            for i, v in enumerate([0.5, float("nan"), float("inf")])]
    assert "0.50 (2 non-finite left out)" in results_table(recs, rows="method", cols="method")
    only_bad = [{"key": "x", "spec": {"method": "m"}, "result": {"test_acc": float("nan")}}]
    assert "— (1 non-finite left out)" in results_table(only_bad, rows="method", cols="method")


# --------------------------------------------------------------------------- report F3: markdown escaping

def test_store_strings_are_inert_markdown():
    recs = [{"key": str(i), "spec": {"method": m, "noise": "n_1"}, "result": {"test_acc": 0.5}}
            for i, m in enumerate(["<script>alert(1)</script>", "![t](http://evil.example/p.png)", "co_teaching",
                                   "a|b"])]
    table = results_table(recs, rows="method", cols="noise")
    assert "\\<script\\>" in table and "\\!\\[t\\]" in table and "| co_teaching |" in table
    assert "<script>" not in table and "![t]" not in table
    assert all(line.count("|") - line.count("\\|") == 3 for line in table.splitlines())
    lines = protocol_lines([{"key": "1", "spec": {"model": "<b>x</b>"}, "result": {}}])
    assert lines == "- model: \\<b\\>x\\</b\\>"


# --------------------------------------------------------------------------- F8, F9

def test_robust_methods_clean_runs_only_its_include():
    pytest.importorskip("torch")
    from noisylab.bench.robust import robust_grid

    runs = robust_grid(seeds="0", methods="standard,incv,clean").runs()
    assert [r["noise"] for r in runs if r["method"] == "clean"] == ["none"]


def test_grid_without_name_is_named_after_its_file(tmp_path):
    p = tmp_path / "my_grid.toml"
    p.write_text(f'[experiment]\nrunner = "{MOD}:quick"\n[grid]\nseed = [0]\n')
    assert load_grid(p).name == "my_grid"
    with pytest.warns(UserWarning, match="did you mean 'runner'"):
        load_grid(f'[experiment]\nrunner = "{MOD}:quick"\nrunnr = "x:y"\n[grid]\nseed = [0]\n')
