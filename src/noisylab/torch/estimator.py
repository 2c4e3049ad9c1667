"""``TorchClassifier``: noisylab's models and trainer as a scikit-learn classifier.

So that every scikit-learn tool works on them: :func:`noisylab.cv.cross_val_pred_probs`
(out-of-fold probabilities, fold files, parallel folds), :class:`noisylab.CleanLearning`,
pipelines and grid searches (``clone`` / ``get_params`` / ``set_params``).
"""
from __future__ import annotations

from functools import partial

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from .._validation import NoisylabInputError, check_labels

__all__ = ["TorchClassifier"]


def _check_features(X) -> np.ndarray:
    """``X`` as a dense real float32 array; sparse and complex inputs are refused, not mangled."""
    if sp.issparse(X):
        raise NoisylabInputError(f"TorchClassifier needs dense X; got a sparse {type(X).__name__}.  "
                                 "Convert it with X.toarray() if it fits in memory.")
    X = np.asarray(X)
    if X.dtype.kind not in "biuf":
        raise NoisylabInputError(f"X must hold real numbers; got dtype {X.dtype}.")
    return X.astype(np.float32, copy=False)


class TorchClassifier(ClassifierMixin, BaseEstimator):
    """A network from :mod:`noisylab.torch.models` trained by :class:`noisylab.torch.trainer.Trainer`.

    Parameters
    ----------
    model : str, default="auto"
        A name of :data:`noisylab.torch.models.MODELS`; ``"auto"`` picks
        :func:`~noisylab.torch.models.default_model_for` the input shape.
    epochs, batch_size, optimizer, momentum, weight_decay, schedule, val_fraction, device
        Passed to :class:`~noisylab.torch.trainer.TrainConfig`.
    lr : float or "auto", default="auto"
        Learning rate; ``"auto"``: :data:`~noisylab.torch.models.RECOMMENDED_LR` of the model
        (1e-2 for ``small_cnn`` / ``cnn1d``, 1e-3 for the others).
    augment : str or None
        A preset of :data:`noisylab.torch.augment.AUGMENTATIONS`.
    n_classes : int, optional
        K (default ``max(y) + 1`` of the training labels): set it when a
        training fold may lack a class, so ``predict_proba`` keeps K columns.
    random_state : int, default=0
        Seeds the weights, the batch order and the augmentation.
    model_kwargs : dict, optional
        Extra arguments of the model (e.g. ``{"hidden": (256, 256)}``).

    Attributes
    ----------
    classes_ : ndarray (K,)
    model_name_ : str
    lr_ : float
        The learning rate used (``lr`` resolved).
    trainer_ : Trainer
        With ``history_`` (per-epoch metrics) and, with ``val_fraction``,
        ``best_epoch_`` (chosen on the noisy validation split; ``predict_proba``
        then uses the best epoch's weights).
    """

    def __init__(self, model="auto", epochs=20, batch_size=64, optimizer="adam", lr="auto", momentum=0.9,
                 weight_decay=0.0, schedule="constant", augment=None, val_fraction=0.0, n_classes=None,
                 device="auto", random_state=0, model_kwargs=None):
        self.model = model
        self.epochs = epochs
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.schedule = schedule
        self.augment = augment
        self.val_fraction = val_fraction
        self.n_classes = n_classes
        self.device = device
        self.random_state = random_state
        self.model_kwargs = model_kwargs

    def fit(self, X, y):
        from .augment import get_augmentation
        from .models import MODELS, RECOMMENDED_LR, default_model_for, make_model
        from .trainer import Trainer, TrainConfig

        y = check_labels(y)
        X = _check_features(X)
        if X.ndim < 2 or X.shape[0] != y.shape[0]:
            raise NoisylabInputError(f"X must have shape (n, ...) with n = len(y) = {y.shape[0]}; got {X.shape}.")
        K = int(y.max()) + 1 if self.n_classes is None else int(self.n_classes)
        if y.max() >= K:
            raise NoisylabInputError(f"y has class {int(y.max())} but n_classes={K}.")
        shape = tuple(X.shape[1:])
        name = default_model_for(shape) if self.model == "auto" else self.model
        lr = self.lr
        if isinstance(lr, str) and lr == "auto":
            lr = RECOMMENDED_LR.get(name, 1e-3) if name in MODELS else 1e-3  # an unknown name fails in make_model
        config = TrainConfig(epochs=self.epochs, batch_size=self.batch_size, optimizer=self.optimizer, lr=lr,
                             momentum=self.momentum, weight_decay=self.weight_decay, schedule=self.schedule,
                             val_fraction=self.val_fraction, device=self.device, random_state=self.random_state,
                             augment=get_augmentation(self.augment) if self.augment else None)
        build = partial(make_model, name, shape, K, random_state=self.random_state, **(self.model_kwargs or {}))
        self.trainer_ = Trainer(build, config).fit(X, y)
        self.classes_ = np.arange(K)
        self.model_name_ = name
        self.lr_ = float(lr)
        if X.ndim == 2:
            self.n_features_in_ = int(X.shape[1])
        elif hasattr(self, "n_features_in_"):  # refitted on images: drop the tabular attribute
            del self.n_features_in_
        return self

    def predict_proba(self, X):
        """Class probabilities (n, K), rows summing to 1; the best epoch's weights when
        ``val_fraction > 0`` (chosen on the noisy validation split), else the last epoch's."""
        check_is_fitted(self, "trainer_")
        which = "best" if self.trainer_.best_epoch_ is not None else "last"
        return self.trainer_.predict_proba(_check_features(X), which=which)

    def predict(self, X):
        """Predicted classes (n,): the argmax of :meth:`predict_proba`."""
        check_is_fitted(self, "trainer_")
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
