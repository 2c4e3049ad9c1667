"""AUM — Area Under the Margin ranking with threshold samples (Pleiss et al., "Identifying Mislabeled
Data using the Area Under the Margin Ranking", NeurIPS 2020; code: asappresearch/aum).

Procedure (METHODS.md §7)
-------------------------
1. Draw **one** permutation of the N training rows (from ``random_state``).  Run ``r`` (0-based)
   takes slice ``r`` of it, ``N_th`` rows, as *threshold samples* and relabels them to an extra
   class ``C`` (overriding their possibly noisy label), so the threshold sets of the runs are
   disjoint and, with 2 runs, every example is a regular example in at least one run.
2. Train a network with ``C + 1`` outputs on those labels with noisylab's
   :class:`~noisylab.torch.trainer.Trainer` (plain cross-entropy by default), recording the
   **training-mode forward logits** of every minibatch before its optimizer step
   (:class:`~noisylab.torch.recorder.DynamicsRecorder`, mode ``"train_forward"``, float16).
3. AUM of every row = mean over epochs ``>= skip_epochs`` (default 1: epoch 0 is skipped) of the
   margin ``z_ỹ − max_{k≠ỹ} z_k`` (max over all other outputs, the extra class included), computed
   by :mod:`noisylab.dynamics` from the recording.
4. α_r = 99th percentile of run r's threshold-sample AUMs; a regular example is flagged in run r
   when more than 1% of those threshold AUMs are strictly larger than its AUM (the code's rule;
   identical to ``AUM < α_r`` with α as an order statistic, see :func:`noisylab.dynamics.aum_flags`).
   Final flag: flagged in every run in which the example was regular.

Quirks reproduced / fixed
-------------------------
* ``N_th = ⌊N/C⌋`` (the paper_replication runner; ``threshold_fraction=None``).  The paper and the
  ``aum`` library's ``ThresholdSamplesDataset`` helper use ``N/(C+1)``: pass
  ``threshold_fraction=1/(C+1)``.
* The margins are those of the (augmented) training forward of each update, cast to float16 as in
  the AUM code's recording (it casts to fp16 and back).  Rows not visited in an epoch
  (``drop_last=True``) are ignored in that epoch's mean (the code's running mean does the same).
* ``aum_`` averages each example's AUM over the runs in which it was regular (the runner's
  ``subset``); threshold samples' AUMs (with their fake label) are kept per run in ``aum_runs_``.
* Both runs use the same :class:`TrainConfig` (same ``random_state`` for weights and batch order;
  the original resets its seeds identically for both runs); with ``checkpoint_dir`` each run
  checkpoints into ``<checkpoint_dir>/run<r>``.
* Retraining without the flagged examples is not part of this class (the caller retrains a fresh
  ``C``-output model with ``flagged_`` examples removed or weighted 0).

Score direction: ``aum_`` / ``label_quality_`` are label-quality scores, HIGHER = more likely clean
(as :mod:`noisylab.detect.rank`); use ``-aum_`` as a noise score.
"""
from __future__ import annotations

import dataclasses
import functools
import numbers
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..._validation import NoisylabInputError, check_labels, check_option
from ...dynamics import (
    aum_flags,
    aum_scores,
    aum_threshold,
    combine_flags,
    read_dynamics,
)
from ..models import MODELS, make_model
from ..recorder import DynamicsRecorder
from ..trainer import Callback, Strategy, TrainConfig, Trainer

__all__ = ["AUM"]


class _CheckOutputs(Callback):
    """Refuse a model without exactly C + 1 outputs before any training step."""

    def __init__(self, n_outputs: int):
        self.n_outputs = n_outputs

    def on_train_begin(self, trainer) -> None:
        if trainer.n_outputs_ != self.n_outputs:
            raise NoisylabInputError(f"The model has {trainer.n_outputs_} outputs; AUM needs C + 1 = "
                                     f"{self.n_outputs} (the extra threshold class).")


class AUM:
    """Area Under the Margin with threshold samples (see the module docstring).

    Parameters
    ----------
    model : str or callable
        A registered model name (``"mlp"``, ``"cnn1d"``, ``"small_cnn"`` ...; built with
        :func:`~noisylab.torch.models.make_model` for the input shape of ``X`` and ``C + 1``
        outputs, weights seeded from ``random_state``), or a callable ``model(n_outputs)``
        returning a fresh ``torch.nn.Module`` with ``n_outputs`` logits (called inside the
        trainer's seeded context; ``n_outputs = C + 1``).
    config : TrainConfig, optional
        Training of each run (default ``TrainConfig()``).  ``val_fraction`` must be 0 (every
        example gets an AUM) and ``epochs > skip_epochs``.  AUM paper: SGD Nesterov 0.9, lr 0.1
        constant, wd 1e-4, batch 64, 150 epochs.
    n_runs : int >= 1, default=2
        Runs with disjoint threshold sets (``n_runs * N_th <= N``).  With one run the threshold
        samples get no AUM of their own (``aum_`` is NaN there) and are never flagged.
    percentile : float in (0, 100], default=99
    threshold_fraction : float in (0, 1) or None, default=None
        ``N_th = ⌊threshold_fraction * N⌋``; None = ``⌊N / C⌋`` (the AUM runner).
    n_classes : int or None, default=None
        C; None = ``max(y) + 1``.
    skip_epochs : int >= 0, default=1
        Leading epochs left out of the AUM (the code skips epoch 0).
    strategy : Strategy or None, default=None
        Training strategy (default plain cross-entropy); its ``train_step`` must return
        ``"logits"`` (the training forward) for the recorder.
    random_state : int >= 0 or None, default=0
        Seeds the permutation that picks the threshold samples and, for a model name, the weights.
        None draws fresh entropy (kept in ``seed_``).
    record_dir : str or Path or None, default=None
        Folder (created if needed) for the recordings ``aum_run<r>.npy`` (+ ``.meta.npz``); None =
        a temporary folder deleted after ``fit``.

    Attributes
    ----------
    aum_ : ndarray (n,), float64
        Mean AUM over the runs in which the example was regular (NaN if it never was).
    label_quality_ : ndarray (n,), float64
        ``aum_`` (higher = cleaner).
    flagged_ : ndarray (n,), bool
        Flagged in every run in which the example was regular.
    aum_runs_ : ndarray (n_runs, n), float64
        AUM of every example in each run (threshold samples with the extra-class label).
    is_threshold_ : ndarray (n_runs, n), bool
    threshold_sets_ : list of ndarray
        Sorted row indices of each run's threshold samples (disjoint).
    thresholds_ : ndarray (n_runs,)
        α of each run (:func:`noisylab.dynamics.aum_threshold`).
    run_flags_ : ndarray (n_runs, n), bool
        Per-run flags (False for that run's threshold samples).
    n_classes_, n_threshold_, seed_ : int
    histories_ : list of History
        Training history of each run.
    recording_paths_ : list of Path or None
        The recordings (None when ``record_dir`` is None).

    Examples
    --------
    >>> from noisylab.torch.methods.aum import AUM                      # doctest: +SKIP
    >>> cfg = TrainConfig(epochs=60, batch_size=32, lr=0.1, weight_decay=1e-4, nesterov=True)
    >>> aum = AUM("small_cnn", cfg).fit(X, y_noisy)                      # doctest: +SKIP
    >>> keep = ~aum.flagged_                                              # doctest: +SKIP
    """

    def __init__(self, model, config: TrainConfig | None = None, *, n_runs: int = 2, percentile: float = 99,
                 threshold_fraction: float | None = None, n_classes: int | None = None, skip_epochs: int = 1,
                 strategy: Strategy | None = None, random_state: int | None = 0, record_dir=None):
        def bad_int(v, low):
            return isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < low

        if isinstance(model, str):
            check_option("model", model, list(MODELS))
        elif not callable(model):
            raise NoisylabInputError(f"model must be a registered model name ({', '.join(MODELS)}) or a callable "
                                     f"model(n_outputs) -> nn.Module; got {model!r}.")
        config = TrainConfig() if config is None else config
        if not isinstance(config, TrainConfig):
            raise NoisylabInputError(f"config must be a TrainConfig; got {type(config).__name__}.")
        config.validate()
        if bad_int(n_runs, 1):
            raise NoisylabInputError(f"n_runs must be an int >= 1; got {n_runs!r}.")
        if isinstance(percentile, bool) or not isinstance(percentile, numbers.Real) or not 0 < percentile <= 100:
            raise NoisylabInputError(f"percentile must be a real number in (0, 100]; got {percentile!r}.")
        if threshold_fraction is not None and (
                isinstance(threshold_fraction, bool) or not isinstance(threshold_fraction, numbers.Real)
                or not 0 < threshold_fraction < 1):
            raise NoisylabInputError(f"threshold_fraction must be None or a real number in (0, 1); "
                                     f"got {threshold_fraction!r}.")
        if threshold_fraction is not None and n_runs * threshold_fraction > 1:
            raise NoisylabInputError(f"n_runs * threshold_fraction must be <= 1 (disjoint threshold sets); got "
                                     f"{n_runs} * {threshold_fraction}.")
        if n_classes is not None and bad_int(n_classes, 2):
            raise NoisylabInputError(f"n_classes must be None or an int >= 2; got {n_classes!r}.")
        if bad_int(skip_epochs, 0):
            raise NoisylabInputError(f"skip_epochs must be an int >= 0; got {skip_epochs!r}.")
        if config.epochs <= skip_epochs:
            raise NoisylabInputError(f"config.epochs ({config.epochs}) must exceed skip_epochs ({skip_epochs}): "
                                     "AUM averages the margins of epochs >= skip_epochs.")
        if config.val_fraction != 0:
            raise NoisylabInputError(f"AUM scores every training example; use config.val_fraction=0 (got "
                                     f"{config.val_fraction}).  Hold out validation data before calling fit.")
        if strategy is not None and not isinstance(strategy, Strategy):
            raise NoisylabInputError(f"strategy must be None or a Strategy; got {type(strategy).__name__}.")
        if random_state is not None and bad_int(random_state, 0):
            raise NoisylabInputError(f"random_state must be None or an int >= 0; got {random_state!r}.")
        self.model = model
        self.config = config
        self.n_runs = int(n_runs)
        self.percentile = float(percentile)
        self.threshold_fraction = threshold_fraction
        self.n_classes = n_classes
        self.skip_epochs = int(skip_epochs)
        self.strategy = strategy
        self.random_state = random_state
        self.record_dir = record_dir

    # ------------------------------------------------------------------------------ helpers
    def _model_factory(self, input_shape, n_outputs: int, seed: int) -> Callable:
        if isinstance(self.model, str):
            return functools.partial(make_model, self.model, tuple(input_shape), n_outputs, random_state=seed)
        return functools.partial(self.model, n_outputs)

    def n_threshold(self, n: int, n_classes: int) -> int:
        """Threshold samples per run: ``⌊N·threshold_fraction⌋`` or ``⌊N / C⌋``."""
        if self.threshold_fraction is None:
            return n // n_classes
        return int(np.floor(self.threshold_fraction * n + 1e-9))

    # ---------------------------------------------------------------------------------- fit
    def fit(self, X, y, true_labels=None) -> AUM:
        """Train ``n_runs`` networks with threshold samples and compute AUMs and flags.

        Parameters
        ----------
        X : array-like of shape (n, *example_shape)
        y : array-like of int, shape (n,)
            Given (noisy) labels in ``0..C-1``.
        true_labels : array-like of int, shape (n,), optional
            Diagnostics only: stored in the recordings' sidecars (``is_noisy``).

        Returns
        -------
        self
        """
        y = check_labels(y, name="y", n_classes=self.n_classes,
                         n_classes_from=None if self.n_classes is None else "n_classes")
        n = len(y)
        shape = np.shape(X)
        if len(shape) < 2 or shape[0] != n:
            raise NoisylabInputError(f"X must have shape (n, *example_shape) with n = len(y) = {n}; got {shape}.")
        if true_labels is not None:
            true_labels = check_labels(true_labels, name="true_labels")
            if true_labels.shape != (n,):
                raise NoisylabInputError(f"true_labels must have shape ({n},) like y; got {true_labels.shape}.")
        C = int(self.n_classes) if self.n_classes is not None else int(y.max()) + 1
        if C < 2:
            raise NoisylabInputError("y holds a single class (0); AUM needs at least 2 classes (or pass n_classes).")
        n_thr = self.n_threshold(n, C)
        if n_thr < 1:
            raise NoisylabInputError(f"{n} examples give no threshold sample per run (N_th = {n_thr}); "
                                     "use more data or a larger threshold_fraction.")
        if self.n_runs * n_thr > n:
            raise NoisylabInputError(f"n_runs={self.n_runs} disjoint threshold sets of {n_thr} samples need "
                                     f"{self.n_runs * n_thr} examples; got {n}.")
        seed = int(self.random_state) if self.random_state is not None else int(
            np.random.SeedSequence().generate_state(1, dtype=np.uint64)[0] % (2**63))
        ss_perm, ss_models = np.random.SeedSequence(seed).spawn(2)
        perm = np.random.default_rng(ss_perm).permutation(n)
        # one weight seed for every run: the runs differ only in their threshold samples, as in the
        # original (which resets its seeds identically), and as a callable model built under the
        # trainer's random_state already did
        model_seed = int(ss_models.generate_state(1, dtype=np.uint64)[0] % (2**63))
        sets = [np.sort(perm[r * n_thr:(r + 1) * n_thr]) for r in range(self.n_runs)]

        tmp = None
        if self.record_dir is None:
            tmp = tempfile.TemporaryDirectory(prefix="noisylab-aum-")
            folder = Path(tmp.name)
        else:
            folder = Path(self.record_dir)
            folder.mkdir(parents=True, exist_ok=True)
        is_thr = np.zeros((self.n_runs, n), dtype=bool)
        aum_runs = np.full((self.n_runs, n), np.nan)
        histories, paths = [], []
        try:
            for r, thr_rows in enumerate(sets):
                is_thr[r, thr_rows] = True
                y_r = y.copy()
                y_r[thr_rows] = C
                cfg = self.config
                if cfg.checkpoint_dir is not None:
                    cfg = dataclasses.replace(cfg, checkpoint_dir=Path(cfg.checkpoint_dir) / f"run{r}")
                path = folder / f"aum_run{r}.npy"
                recorder = DynamicsRecorder(path, mode="train_forward", true_labels=true_labels)
                trainer = Trainer(self._model_factory(shape[1:], C + 1, model_seed), cfg,
                                  strategy=self.strategy, callbacks=[_CheckOutputs(C + 1), recorder])
                trainer.fit(X, y_r)
                histories.append(trainer.history_)
                del trainer
                logits, meta = read_dynamics(path)
                aum_runs[r, meta["ids"]] = aum_scores(logits, meta["labels"], skip_epochs=self.skip_epochs,
                                                      epochs_completed=meta["epochs_completed"], mode=meta["mode"])
                del logits
                paths.append(path)
        finally:
            if tmp is not None:
                tmp.cleanup()

        self.thresholds_ = np.array([aum_threshold(aum_runs[r, is_thr[r]], self.percentile)
                                     for r in range(self.n_runs)])
        self.run_flags_ = np.stack([aum_flags(aum_runs[r], is_thr[r], percentile=self.percentile)
                                    for r in range(self.n_runs)])
        self.flagged_ = combine_flags(self.run_flags_, is_thr)
        regular = ~is_thr
        counts = regular.sum(axis=0)
        sums = np.where(regular, aum_runs, 0.0).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            self.aum_ = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        self.label_quality_ = self.aum_.copy()
        self.aum_runs_ = aum_runs
        self.is_threshold_ = is_thr
        self.threshold_sets_ = sets
        self.n_classes_ = C
        self.n_threshold_ = n_thr
        self.seed_ = seed
        self.histories_ = histories
        self.recording_paths_ = paths if self.record_dir is not None else None
        return self
