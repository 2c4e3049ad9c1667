"""Noisy-label training methods as :class:`~noisylab.torch.trainer.Strategy` subclasses and the
multi-stage procedures built on them (INCV, AUM)."""
from .aum import AUM
from .coteaching import CoTeaching
from .losses import Bootstrap, ForwardCorrection
from .incv import (
    INCV,
    INCVCoTeaching,
    INCVSelection,
    candidate_batch_size,
    estimate_noise_rate,
    format_theory_table,
    incv_coteaching_defaults,
    incv_expected_accuracy,
    incv_label_precision,
    incv_label_recall,
    incv_select,
    selected_noise_rate,
    verify_theory,
)
from .meta import IEG, L2R
from .mentormix import LossEMA, MentorMix, Mixup, mentormix_defaults, mentornet_pd

__all__ = ["AUM", "Bootstrap", "CoTeaching", "ForwardCorrection", "IEG", "INCV", "INCVCoTeaching", "INCVSelection", "L2R", "LossEMA", "MentorMix", "Mixup",
           "candidate_batch_size", "estimate_noise_rate", "format_theory_table", "incv_coteaching_defaults",
           "incv_expected_accuracy", "incv_label_precision", "incv_label_recall", "incv_select",
           "mentormix_defaults", "mentornet_pd", "selected_noise_rate", "verify_theory"]
