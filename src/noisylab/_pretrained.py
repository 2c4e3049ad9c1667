"""The LSTM detectors shipped in ``noisylab/torch/pretrained/``: names, the commands that rebuild them,
and their fingerprints, readable without PyTorch (benchmark bookkeeping keys runs by them)."""
from __future__ import annotations

import hashlib
import importlib.resources

from ._validation import check_option

__all__ = [
    "FEATURES",
    "PRETRAINED",
    "PRETRAINED_NAME",
    "installed_pretrained",
    "pretrained_fingerprint",
    "pretrained_resource",
]

PRETRAINED_NAME = "lstm_detector_mnist1d.pt"
#: Input features of the detector: the reference's p_t(ỹ), or the per-epoch logit margin (extension).
FEATURES = ("label_probability", "margin")
#: The shipped detectors: feature -> (file in noisylab/torch/pretrained/, the command that rebuilds it).
PRETRAINED = {
    "label_probability": (PRETRAINED_NAME, "python -m noisylab.torch.detector"),
    "margin": ("lstm_margin_detector_mnist1d.pt",
               "python -m noisylab.torch.detector --feature margin --noise symmetric:0.3,pair:0.3"),
}


def pretrained_resource(feature="label_probability"):
    """Where the shipped detector of ``feature`` lives (a Traversable; it may not exist)."""
    return importlib.resources.files("noisylab").joinpath("torch", "pretrained", PRETRAINED[feature][0])


def installed_pretrained(feature, resource=None):
    """The shipped detector file of ``feature`` (``resource``: where to look instead), or
    FileNotFoundError naming the command that makes it."""
    feature = check_option("feature", feature, FEATURES)
    res = pretrained_resource(feature) if resource is None else resource
    if not res.is_file():
        name, cmd = PRETRAINED[feature]
        raise FileNotFoundError(f"The pretrained detector {name} is not installed (looked in "
                                f"noisylab/torch/pretrained/). Produce it with: {cmd}")
    return res


def pretrained_fingerprint(feature: str = "label_probability") -> str:
    """``"sha256:"`` + the first 16 hex digits of the shipped detector file's SHA-256.

    Benchmarks put it in their run specs, so that results obtained with one detector file are never
    reused for another (a rebuilt or updated detector gets new run keys).

    Raises
    ------
    FileNotFoundError
        The file has not been produced yet (the message gives the command that makes it).
    """
    res = installed_pretrained(feature)
    return "sha256:" + hashlib.sha256(res.read_bytes()).hexdigest()[:16]
