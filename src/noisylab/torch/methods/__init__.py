"""Noisy-label training methods as :class:`~noisylab.torch.trainer.Strategy` subclasses."""
from .coteaching import CoTeaching
from .losses import Bootstrap, ForwardCorrection

__all__ = ["Bootstrap", "CoTeaching", "ForwardCorrection"]
