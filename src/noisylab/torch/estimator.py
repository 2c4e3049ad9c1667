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

from .._validation import NoisylabInputError, check_int, check_labels
from ..cleanlearning import (
    _as_int_seed,
    _check_class_labels,
    _check_feature_names,
    _drop_feature_attributes,
    _encode_labels,
)

__all__ = ["TorchClassifier"]


class _NonNumericXError(NoisylabInputError, TypeError):
    """An object-dtype ``X`` holding a value that is no number (a ``TypeError`` too, as numpy raises)."""


def _check_features(X) -> np.ndarray:
    """``X`` as a dense real float32 array of shape ``(n, ...)`` with ``n >= 1``.

    Numbers stored with object dtype (e.g. ``DataFrame.astype(object)``) are converted; sparse,
    complex, string and other non-numeric inputs are refused, not mangled.
    """
    if sp.issparse(X):
        raise NoisylabInputError(f"TorchClassifier needs dense X; got a sparse {type(X).__name__}.  "
                                 "Convert it with X.toarray() if it fits in memory.")
    X = np.asarray(X)
    if X.dtype == object:
        try:
            X = X.astype(np.float32)
        except ValueError as exc:  # e.g. the string "a"
            raise NoisylabInputError(f"X must hold real numbers; got dtype object with a value that is not a "
                                     f"number ({exc}).") from None
        except TypeError as exc:  # e.g. a dict or None
            raise _NonNumericXError(f"X must hold real numbers; got dtype object with a value that is not a "
                                    f"number ({exc}).") from None
    elif X.dtype.kind == "c":
        raise NoisylabInputError(f"X must hold real numbers; got dtype {X.dtype}. Complex data not supported.")
    elif X.dtype.kind not in "biuf":
        raise NoisylabInputError(f"X must hold real numbers; got dtype {X.dtype}.")
    if X.ndim < 2:
        raise NoisylabInputError(f"X must have shape (n, n_features) or (n, *example_shape); got shape {X.shape}. "
                                 "Reshape your data: X.reshape(-1, 1) if it has a single feature, X.reshape(1, -1) "
                                 "if it is a single example.")
    if X.shape[0] == 0:
        raise NoisylabInputError(f"Found array with 0 sample(s) (shape={X.shape}) while a minimum of 1 is required.")
    if 0 in X.shape[1:]:
        raise NoisylabInputError(f"X has 0 feature(s) (shape={X.shape}) while a minimum of 1 is required.")
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
        Default (None): the classes are the labels seen in ``y`` (any sortable type: ints,
        negative or not contiguous, strings ...), as in scikit-learn.  Set it when ``y`` holds
        class indices 0..K-1 and a training fold may lack some: ``classes_`` is then
        ``arange(n_classes)`` and ``predict_proba`` keeps K columns.
    random_state : None, int, numpy.random.RandomState or numpy.random.Generator, default=0
        Seeds the weights, the batch order and the augmentation.  An int gives the same
        training at every fit; ``None`` draws a fresh seed from OS entropy at each fit; a
        ``RandomState`` or ``Generator`` gives one int seed drawn from it at each fit (so it
        advances).  The seed used is ``trainer_.seed_``; numpy's global RNG is never used.
    model_kwargs : dict, optional
        Extra arguments of the model (e.g. ``{"hidden": (256, 256)}``).

    Attributes
    ----------
    classes_ : ndarray (K,)
        The class labels, sorted; the columns of :meth:`predict_proba` follow them.
    n_features_in_ : int
        Number of features (only when ``X`` is 2-D).
    feature_names_in_ : ndarray of str (n_features_in_,)
        Column names of ``X`` (only when ``X`` is a DataFrame with string column names); a
        DataFrame with other or reordered names is refused by ``predict`` / ``predict_proba``.
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

    def _validate_X(self, X, *, reset: bool) -> np.ndarray:
        """Dense float32 ``X``; sets (``reset``) or checks ``n_features_in_`` / ``feature_names_in_``."""
        arr = _check_features(X)
        if arr.ndim == 2:
            _check_feature_names(self, X if hasattr(X, "columns") else arr, reset=reset)
        elif reset:  # images: drop the tabular attributes of an earlier fit
            _drop_feature_attributes(self)
        return arr

    def fit(self, X, y):
        """Train on ``(X, y)``.

        Parameters
        ----------
        X : array-like of shape (n, n_features) or (n, *example_shape)
            Real numbers (object dtype holding numbers is converted); a DataFrame's string
            column names are kept as ``feature_names_in_``.
        y : array-like of shape (n,)
            Class labels of any sortable type; a column vector ``(n, 1)`` is ravelled with a
            ``DataConversionWarning``.

        Returns
        -------
        self

        Raises
        ------
        NoisylabInputError
            For a continuous (regression) or multi-output ``y``, sparse, complex or
            non-numeric ``X``, or ``X`` and ``y`` of different lengths.
        """
        from .augment import get_augmentation
        from .models import MODELS, RECOMMENDED_LR, default_model_for, make_model
        from .trainer import Trainer, TrainConfig

        y = _check_class_labels(y, "TorchClassifier")
        X = self._validate_X(X, reset=True)
        if X.shape[0] != y.shape[0]:
            raise NoisylabInputError(f"X must have shape (n, ...) with n = len(y) = {y.shape[0]}; got {X.shape}.")
        if self.n_classes is None:
            classes, codes = _encode_labels(y)
        else:
            K = check_int("n_classes", self.n_classes, min_value=1)
            codes = check_labels(y, name="y", n_classes=K, n_classes_from="n_classes")
            classes = np.arange(K)
        K = int(classes.shape[0])
        seed = _as_int_seed(self.random_state)
        shape = tuple(X.shape[1:])
        name = default_model_for(shape) if self.model == "auto" else self.model
        lr = self.lr
        if isinstance(lr, str) and lr == "auto":
            lr = RECOMMENDED_LR.get(name, 1e-3) if name in MODELS else 1e-3  # an unknown name fails in make_model
        config = TrainConfig(epochs=self.epochs, batch_size=self.batch_size, optimizer=self.optimizer, lr=lr,
                             momentum=self.momentum, weight_decay=self.weight_decay, schedule=self.schedule,
                             val_fraction=self.val_fraction, device=self.device, random_state=seed,
                             augment=get_augmentation(self.augment) if self.augment else None)
        build = partial(make_model, name, shape, K, random_state=seed, **(self.model_kwargs or {}))
        self.trainer_ = Trainer(build, config).fit(X, codes)
        self.classes_ = classes
        self.model_name_ = name
        self.lr_ = float(lr)
        return self

    def predict_proba(self, X):
        """Class probabilities (n, K), rows summing to 1, columns in the order of ``classes_``; the
        best epoch's weights when ``val_fraction > 0`` (chosen on the noisy validation split), else
        the last epoch's."""
        check_is_fitted(self, "trainer_")
        which = "best" if self.trainer_.best_epoch_ is not None else "last"
        return self.trainer_.predict_proba(self._validate_X(X, reset=False), which=which)

    def predict(self, X):
        """Predicted labels (n,), values of ``classes_``: the argmax of :meth:`predict_proba`."""
        check_is_fitted(self, "trainer_")
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
