"""Benchmarks: the harness behind every ``noisylab bench`` (TOML grids, a JSONL result store, local
or Dask runs, tables) and the benchmarks that reproduce published figures."""
from .cl_cifar10 import (
    CL_CIFAR10_FILTERS,
    PUBLISHED_CL_CIFAR10,
    bench_cl_cifar10,
    find_cl_cifar10_dir,
)
from .harness import (
    BenchRunError,
    Grid,
    ResultStore,
    current_protocol,
    load_grid,
    protocol_lines,
    resolve_runner,
    results_table,
    run_grid,
    run_key,
)

__all__ = ["BenchRunError", "CL_CIFAR10_FILTERS", "Grid", "PUBLISHED_CL_CIFAR10", "ResultStore", "bench_cl_cifar10",
           "current_protocol", "find_cl_cifar10_dir", "load_grid", "protocol_lines", "resolve_runner", "results_table",
           "run_grid", "run_key"]
