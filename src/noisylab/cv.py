"""Out-of-fold predicted probabilities, fold by fold, resumable, in parallel or on a Dask cluster.

Confident learning needs, for every example, probabilities from a model that
never saw it.  :func:`cross_val_pred_probs` splits the data with a stratified
K-fold (seeded), fits a clone of any scikit-learn-compatible classifier (a
scikit-learn model, or noisylab's ``TorchClassifier``) on the other folds and
predicts the held-out fold.

Following the CL paper's workflow, each finished fold is saved to
``out_dir/fold_{i}_of_{k}.npz`` (written atomically), so

* an interrupted run resumes: finished folds are not fitted again;
* one fold can run alone, on another machine (``folds=[i]``), and the folds
  are combined afterwards (:func:`combine_folds`);
* every fold file records a fingerprint of the split (n, classes, number of
  folds, seed, a hash of the labels), of the features ``X`` (shape, dtype and
  a hash of the values) and of the classifier's parameters; a file that does
  not match is refused instead of being mixed in silently.

Folds run in parallel local processes (``n_jobs``, joblib's loky backend) or
on a ``dask.distributed`` client (``client``).
"""
from __future__ import annotations

import hashlib
import json
import numbers
import os
from pathlib import Path

import numpy as np

from ._validation import NoisylabInputError, check_int, check_labels, int_seed

__all__ = ["cv_folds", "cross_val_pred_probs", "combine_folds", "fold_path"]


def _split_seed(random_state) -> int:
    """The int seed that names the split.

    An int >= 0 is used as is; ``None`` draws a fresh seed from OS entropy; a
    :class:`numpy.random.RandomState` (as scikit-learn users pass) or a
    :class:`numpy.random.Generator` gives one draw from it (so it is advanced,
    and the same freshly seeded object gives the same split).  numpy's global
    RNG is never used.
    """
    return int_seed(random_state, 2**32, what="(it names the split)")  # StratifiedKFold needs a 32-bit seed


def _check_n_folds(n_folds) -> int:
    return check_int("n_folds", n_folds, min_value=2)


def _select_rows(X, idx):
    """Rows ``idx`` of ``X``: positional for pandas objects (``.iloc``), plain indexing otherwise
    (numpy arrays, scipy sparse matrices, tensors)."""
    return X.iloc[idx] if hasattr(X, "iloc") else X[idx]


def cv_folds(labels, n_folds=4, random_state=0):
    """Stratified K-fold split: a list of ``(train_idx, test_idx)`` (both sorted), one per fold.

    The same ``(labels, n_folds, random_state)`` always gives the same split
    when ``random_state`` is an int.  ``None`` gives a fresh split on every
    call; a ``numpy.random.RandomState`` or ``Generator`` is advanced by one
    draw that seeds the split (see :func:`cross_val_pred_probs`).
    """
    from sklearn.model_selection import StratifiedKFold

    y = check_labels(labels)
    n_folds = _check_n_folds(n_folds)
    counts = np.bincount(y)
    smallest = counts[counts > 0].min()
    if smallest < n_folds:
        raise NoisylabInputError(
            f"every class needs at least n_folds={n_folds} examples for a stratified split; "
            f"class {int(np.flatnonzero(counts == smallest)[0])} has {smallest}."
        )
    skf = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=_split_seed(random_state))
    return [(np.sort(tr), np.sort(te)) for tr, te in skf.split(np.zeros(y.shape[0]), y)]


def _check_X(X):
    """``X`` ready for row selection: pandas objects, numpy arrays, CSR matrices and tensors as they are,
    other scipy sparse formats (COO, CSC, ...) converted to CSR once, anything else through ``np.asarray``."""
    if hasattr(X, "tocsr") and getattr(X, "format", None) != "csr":  # scipy sparse, not CSR: COO has no rows
        return X.tocsr()
    return X if hasattr(X, "shape") and hasattr(X, "__getitem__") else np.asarray(X)


def _update_with_array(h, a) -> None:
    """Feed dtype, shape and the values of numpy array ``a`` (in C order, whatever its memory layout) to
    hash ``h``: no copy when ``a`` is C-contiguous, else copies of blocks of about 8 MB."""
    a = np.asarray(a)
    h.update(f"{a.dtype.str}{a.shape}".encode())
    if a.dtype.hasobject:  # the buffer holds pointers: hash the objects instead
        import pickle

        h.update(pickle.dumps(a.tolist(), protocol=4))
    elif a.flags.c_contiguous or a.ndim < 2:
        h.update(memoryview(np.ascontiguousarray(a)).cast("B"))
    else:  # e.g. the F-ordered values of a DataFrame
        step = max(1, (8 << 20) // max(1, a[:1].nbytes))
        for i in range(0, a.shape[0], step):
            h.update(memoryview(np.ascontiguousarray(a[i:i + step])).cast("B"))


def _x_digest(X) -> str:
    """Hash of the features: shape, dtype and every value (SHA-256 over the buffer: about 30 ms for a
    1e5 x 100 float32 array, numpy or pandas).  Sparse matrices hash ``data``/``indices``/``indptr`` of their
    canonical CSR form; pandas objects hash their values (and column names)."""
    h = hashlib.sha256()
    if hasattr(X, "tocsr") and hasattr(X, "indptr"):  # scipy CSR (_check_X converted the other formats)
        if not X.has_canonical_format:  # the same matrix stored differently must give the same digest
            X = X.copy()
            X.sum_duplicates()
        h.update(f"sparse{X.shape}".encode())
        for a in (X.data, X.indices, X.indptr):
            _update_with_array(h, a)
        return h.hexdigest()
    if hasattr(X, "iloc"):  # pandas DataFrame / Series
        h.update(repr(list(getattr(X, "columns", [getattr(X, "name", None)]))).encode())
        X = X.to_numpy()
    elif hasattr(X, "detach"):  # torch tensor
        X = X.detach().cpu().numpy()
    _update_with_array(h, X)
    return h.hexdigest()


def _fingerprint(y, n_classes, n_folds, random_state, clf, X) -> str:
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(y, dtype=np.int64).tobytes())
    h.update(_x_digest(X).encode())
    params = {}
    if hasattr(clf, "get_params"):
        params = {k: repr(v) for k, v in sorted(clf.get_params(deep=False).items())}
    h.update(json.dumps({"n": int(y.shape[0]), "K": int(n_classes), "folds": int(n_folds),
                         "seed": int(random_state), "clf": type(clf).__name__, "params": params},
                        sort_keys=True).encode())
    return h.hexdigest()[:16]


def fold_path(out_dir, fold, n_folds) -> Path:
    """Where fold ``fold`` (0-based) of ``n_folds`` is saved."""
    return Path(out_dir) / f"fold_{int(fold)}_of_{int(n_folds)}.npz"


def _fit_fold(clf, X, y, train_idx, test_idx, n_classes):
    """Fit a clone on ``train_idx`` and return (n_test, n_classes) probabilities for ``test_idx``."""
    from sklearn.base import clone

    model = clone(clf)
    model.fit(_select_rows(X, train_idx), y[train_idx])
    proba = np.asarray(model.predict_proba(_select_rows(X, test_idx)), dtype=np.float64)
    classes = np.asarray(getattr(model, "classes_", np.arange(proba.shape[1])))
    if proba.shape != (test_idx.shape[0], classes.shape[0]):
        raise NoisylabInputError(
            f"{type(model).__name__}.predict_proba returned shape {proba.shape}; expected "
            f"({test_idx.shape[0]}, {classes.shape[0]}) (one column per class in classes_)."
        )
    out = np.zeros((test_idx.shape[0], n_classes))
    out[:, classes.astype(np.int64)] = proba  # a class missing from the training folds gets 0
    return out


def _save_fold(path, test_idx, proba, fingerprint):
    from .io import atomic_write

    with atomic_write(path, "wb") as fh:
        np.savez(fh, test_idx=test_idx, pred_probs=proba, fingerprint=np.array(fingerprint))


def _load_fold(path, fingerprint=None):
    try:
        with np.load(path, allow_pickle=False) as z:
            test_idx, proba, fp = z["test_idx"], z["pred_probs"], str(z["fingerprint"])
    except (OSError, ValueError, KeyError) as exc:
        raise NoisylabInputError(f"{path} is not a readable fold file: {exc}") from None
    if fingerprint is not None and fp != fingerprint:
        raise NoisylabInputError(
            f"{path} was computed for different data, folds, seed or classifier (data: the labels and X; "
            f"fingerprint {fp}, expected {fingerprint}); remove it or use another out_dir."
        )
    return test_idx, proba, fp


def _run_and_save(clf, X, y, train_idx, test_idx, n_classes, path, fingerprint):
    proba = _fit_fold(clf, X, y, train_idx, test_idx, n_classes)
    if path is not None:
        _save_fold(path, test_idx, proba, fingerprint)
    return test_idx, proba


def cross_val_pred_probs(clf, X, labels, *, n_folds=4, random_state=0, n_classes=None, out_dir=None,
                         folds=None, n_jobs=1, client=None, verbose=False):
    """Out-of-fold predicted probabilities ``(n, K)``: every row comes from a model that did not see it.

    Parameters
    ----------
    clf : scikit-learn-compatible classifier
        Cloned for every fold (``fit`` / ``predict_proba`` / ``classes_``).
    X : array-like of shape (n, ...)
    labels : array-like of int, shape (n,)
        The given (noisy) labels, 0..K-1.
    n_folds : int, default=4
    random_state : int, None, numpy.random.RandomState or numpy.random.Generator, default=0
        Seeds the stratified split (the classifier's own seed is its parameter).
        An int names the split; ``None`` draws a fresh one (not with
        ``out_dir``: a run could never be resumed); a ``RandomState`` or
        ``Generator`` is advanced by one draw that becomes the seed.  numpy's
        global RNG is never used.
    n_classes : int, optional
        K (default: ``max(labels) + 1``), at least ``max(labels) + 1``; columns
        of classes absent from a fold's training part are 0.
    out_dir : path, optional
        Save each fold to ``out_dir/fold_{i}_of_{k}.npz`` and skip folds already
        saved there (resume).  A saved fold is used only if it was computed from
        the same labels, ``X`` (shape, dtype and values), split and classifier
        parameters; otherwise a ``NoisylabInputError`` is raised.
    folds : list of int, optional
        Run only these folds (0-based), e.g. one fold per machine; needs
        ``out_dir``.  Returns None unless every fold is then present.
    n_jobs : int, default=1
        Folds fitted in parallel processes (joblib, loky backend).
    client : dask.distributed.Client, optional
        Fit the folds on this cluster instead.

    Returns
    -------
    pred_probs : ndarray of shape (n, K), or None when ``folds`` leaves some folds missing.

    Raises
    ------
    NoisylabInputError
        On malformed labels, ``X`` of another length, a classifier class
        instead of an instance, a non-integer ``n_classes`` below
        ``max(labels) + 1``, ``folds`` entries that are not ints in
        ``0..n_folds-1``, or a saved fold that does not match this run.
    """
    y = check_labels(labels)
    X = _check_X(X)
    if X.shape[0] != y.shape[0]:
        raise NoisylabInputError(f"X and labels must have the same length; got {X.shape[0]} and {y.shape[0]}.")
    if isinstance(clf, type):
        raise NoisylabInputError(
            f"clf must be a classifier instance; got the class {clf.__name__} (write {clf.__name__}(), "
            "with its parameters)."
        )
    if not (hasattr(clf, "fit") and hasattr(clf, "predict_proba")):
        raise NoisylabInputError(f"clf must have fit and predict_proba; got {type(clf).__name__}.")
    seen = int(y.max()) + 1
    K = seen if n_classes is None else check_int("n_classes", n_classes)
    if K < seen:
        raise NoisylabInputError(f"labels go up to {seen - 1} but n_classes={K}; n_classes must be >= {seen}.")
    n_folds = _check_n_folds(n_folds)
    if n_jobs is not None and (isinstance(n_jobs, (bool, np.bool_)) or not isinstance(n_jobs, numbers.Integral)
                               or not (n_jobs >= 1 or n_jobs == -1)):
        raise NoisylabInputError(f"n_jobs must be an integer >= 1 (or -1: every CPU); got {n_jobs!r}.")
    if folds is None:
        todo = list(range(n_folds))
    else:
        if isinstance(folds, (str, bytes)) or not hasattr(folds, "__iter__"):
            raise NoisylabInputError(f"folds must be a list of ints in 0..{n_folds - 1}; got {folds!r}.")
        bad = [f for f in folds if isinstance(f, (bool, np.bool_)) or not isinstance(f, numbers.Integral)
               or not 0 <= f < n_folds]
        if bad:
            raise NoisylabInputError(f"folds must be in 0..{n_folds - 1} (ints); got {bad[0]!r} in folds={folds!r}.")
        todo = sorted({int(f) for f in folds})
    if folds is not None and out_dir is None:
        raise NoisylabInputError("folds=... runs part of the folds: give out_dir to keep them.")
    if random_state is None and out_dir is not None:
        raise NoisylabInputError(
            "random_state=None draws a new split on every call, so the folds saved in out_dir could never be "
            "resumed or combined; pass an int random_state with out_dir."
        )
    seed = _split_seed(random_state)  # once: a RandomState/Generator is advanced by one draw
    split = cv_folds(y, n_folds, seed)
    fingerprint = _fingerprint(y, K, n_folds, seed, clf, X) if out_dir is not None else None
    results = {}
    if out_dir is not None:
        try:
            os.makedirs(out_dir, exist_ok=True)
        except OSError as exc:
            raise NoisylabInputError(f"cannot create the folds folder {out_dir}: {exc.strerror or exc}") from None
        for f in range(n_folds):
            path = fold_path(out_dir, f, n_folds)
            if path.exists():
                test_idx, proba, _ = _load_fold(path, fingerprint)
                results[f] = (test_idx, proba)
    pending = [f for f in todo if f not in results]
    if verbose and out_dir is not None and len(pending) < len(todo):
        print(f"resuming: {len(todo) - len(pending)} of {len(todo)} fold(s) already in {out_dir}")

    def args(f):
        tr, te = split[f]
        return (clf, X, y, tr, te, K, fold_path(out_dir, f, n_folds) if out_dir is not None else None,
                fingerprint)

    if pending:
        if client is not None:
            futures = [client.submit(_run_and_save, *args(f), pure=False) for f in pending]
            outs = client.gather(futures)
        elif n_jobs is not None and int(n_jobs) != 1 and len(pending) > 1:
            from joblib import Parallel, delayed

            outs = Parallel(n_jobs=int(n_jobs), backend="loky")(delayed(_run_and_save)(*args(f)) for f in pending)
        else:
            outs = []
            for f in pending:
                outs.append(_run_and_save(*args(f)))
                if verbose:
                    print(f"fold {f + 1}/{n_folds} done")
        results.update(zip(pending, outs))
    if len(results) < n_folds:
        return None
    return _assemble([results[f] for f in range(n_folds)], y.shape[0], K)


def _assemble(parts, n, K):
    out = np.full((n, K), np.nan)
    seen = np.zeros(n, dtype=np.int64)
    for test_idx, proba in parts:
        out[test_idx] = proba
        np.add.at(seen, test_idx, 1)
    if not np.all(seen == 1):
        bad = int(np.flatnonzero(seen != 1)[0])
        raise NoisylabInputError(f"the folds do not cover every example exactly once (example {bad}: {seen[bad]}x).")
    return out


def combine_folds(out_dir, n_folds=None):
    """Combine the fold files of ``out_dir`` (written by :func:`cross_val_pred_probs`) into ``(n, K)``.

    All files must share one fingerprint and cover every example exactly once.
    """
    out_dir = Path(out_dir)
    files = sorted(out_dir.glob("fold_*_of_*.npz"))
    if n_folds is not None:
        files = [fold_path(out_dir, f, n_folds) for f in range(int(n_folds))]
    if not files:
        raise NoisylabInputError(f"no fold files (fold_I_of_K.npz) in {out_dir}.")
    ks = {int(p.stem.rsplit("_", 1)[1]) for p in files}
    if len(ks) != 1:
        raise NoisylabInputError(f"{out_dir} mixes fold files of different K-fold splits: {sorted(ks)}.")
    k = ks.pop()
    missing = [f for f in range(k) if not fold_path(out_dir, f, k).exists()]
    if missing:
        raise NoisylabInputError(f"{out_dir}: fold(s) {missing} of {k} are missing; run them first.")
    parts, fps = [], set()
    for f in range(k):
        test_idx, proba, fp = _load_fold(fold_path(out_dir, f, k))
        parts.append((test_idx, proba))
        fps.add(fp)
    if len(fps) != 1:
        raise NoisylabInputError(f"{out_dir}: the fold files come from different runs (fingerprints {sorted(fps)}).")
    n = sum(p[0].shape[0] for p in parts)
    return _assemble(parts, n, parts[0][1].shape[1])
