"""Benchmarks that reproduce published figures."""
from .cl_cifar10 import (
    CL_CIFAR10_FILTERS,
    PUBLISHED_CL_CIFAR10,
    bench_cl_cifar10,
    find_cl_cifar10_dir,
)

__all__ = ["CL_CIFAR10_FILTERS", "PUBLISHED_CL_CIFAR10", "bench_cl_cifar10", "find_cl_cifar10_dir"]
