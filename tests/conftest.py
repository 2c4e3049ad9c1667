import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # tests/_synth.py, tests/_tie_groups.py


def _find_shared_data():
    for base in (HERE.parent.parent, Path.cwd().parent, Path.cwd()):
        cand = base / "shared" / "data"
        if (cand / "cl-cifar10").is_dir():
            return cand
    return None


SHARED_DATA = _find_shared_data()


@pytest.fixture(scope="session")
def shared_data():
    """The read-only reference data folder (../shared/data), or skip."""
    if SHARED_DATA is None:
        pytest.skip("../shared/data (the CL paper's CIFAR-10 files) is not present beside the checkout")
    return SHARED_DATA



@pytest.fixture(scope="module")
def torch_one_thread():
    """One torch intra-op thread for a test module (restored afterwards): the tiny models of the torch
    tests gain nothing from intra-op threads, and on the shared 2-core machine 2 threads were up to
    10x slower.  Use with ``pytestmark = pytest.mark.usefixtures("torch_one_thread")``."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
