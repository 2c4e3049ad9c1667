"""Noisy-label training methods as :class:`~noisylab.torch.trainer.Strategy` subclasses and the
multi-stage procedures built on them (INCV, AUM)."""
from .aum import AUM
from .coteaching import CoTeaching
from .losses import Bootstrap, ForwardCorrection

__all__ = ["AUM", "Bootstrap", "CoTeaching", "ForwardCorrection"]
