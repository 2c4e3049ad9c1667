"""noisylab: learning with noisy labels.

Synthesize label noise (:mod:`noisylab.noise`), find label errors
(:mod:`noisylab.detect`), and score detectors against ground truth
(:mod:`noisylab.metrics`).  Importing noisylab never imports torch.
"""
from .detect import *  # noqa: F401,F403
from .detect import __all__ as _detect_all

__version__ = "0.1.0"

__all__ = list(_detect_all) + ["__version__"]
