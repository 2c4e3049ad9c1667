"""noisylab: learning with noisy labels.

Synthesize label noise (:mod:`noisylab.noise`), find label errors
(:mod:`noisylab.detect`, re-exported here with cleanlab's names), compute
out-of-fold probabilities (:mod:`noisylab.cv`) and train on the trusted
examples (:class:`CleanLearning`), score
detectors against ground truth (:mod:`noisylab.metrics`), read inputs
(:mod:`noisylab.io`).  Importing noisylab never imports torch.
"""
from . import io, metrics, noise  # noqa: F401
from ._validation import NoisylabInputError
from .detect import *  # noqa: F401,F403
from .detect import __all__ as _detect_all
from .io import encode_labels

__version__ = "0.1.0"

__all__ = list(_detect_all) + ["NoisylabInputError", "encode_labels", "io", "metrics", "noise", "__version__",
                               "CleanLearning", "cross_val_pred_probs"]  # noqa: F405 (lazy, see __getattr__)

_LAZY = {"CleanLearning": ("cleanlearning", "CleanLearning"), "cross_val_pred_probs": ("cv", "cross_val_pred_probs")}


def __getattr__(name):
    """Attributes that need scikit-learn are imported on first use (``import noisylab`` stays light)."""
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(f".{module}", __name__), attr)
    raise AttributeError(f"module 'noisylab' has no attribute {name!r}")
