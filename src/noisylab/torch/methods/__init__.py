"""Noisy-label training methods as :class:`~noisylab.torch.trainer.Strategy` subclasses and the
multi-stage procedures built on them (INCV, AUM)."""
from .aum import AUM
from .coteaching import CoTeaching
from .losses import Bootstrap, ForwardCorrection
from .meta import IEG, L2R
from .mentormix import LossEMA, MentorMix, Mixup, mentormix_defaults, mentornet_pd

__all__ = ["AUM", "Bootstrap", "CoTeaching", "ForwardCorrection", "IEG", "L2R", "LossEMA", "MentorMix", "Mixup",
           "mentormix_defaults", "mentornet_pd"]
