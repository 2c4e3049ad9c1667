"""noisylab's PyTorch layer (``pip install "noisylab[torch]"``): data sets, models, one trainer,
out-of-fold probabilities and a training-dynamics recorder.

The numpy core (``noisylab``, ``noisylab.noise``, ``noisylab.detect`` ...) never imports this
package; importing it without PyTorch raises an ImportError that says what to install.
"""
try:
    import torch  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        'noisylab.torch needs PyTorch: pip install torch==2.13.0 (CPU build) and then pip install "noisylab[torch]".'
    ) from exc
