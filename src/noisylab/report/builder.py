"""The :class:`Report` builder: sections of text, tables and figures written as HTML and Markdown.

A report is a list of sections.  Each ``add_*`` method validates its input, computes
what it shows (numbers, tables, PNG figures) at once and appends one or more
sections; :meth:`Report.write` then writes

* ONE self-contained HTML file: inline CSS, figures as base64 PNG data URIs, no
  network access (enforced by a Content-Security-Policy), every user string escaped;
* optionally a Markdown twin with the same text and tables, its figures as PNG files
  in a ``<name>_files/`` folder next to it.

All files are written atomically and as a set: every file is first written to a
temporary file next to its destination, then all are renamed into place (figures,
the Markdown twin, the HTML) and figures of an earlier, longer report are removed
last, so a failure leaves the earlier report as it was.  Text is written and read as
UTF-8 whatever the locale.  The text of both files is deterministic: no dates, no
absolute paths.  In the Markdown twin every user string (class names, file names,
texts, titles) is escaped so that it stays text (:func:`._markdown.escape_markdown`).

Conventions (as in :mod:`noisylab.metrics`): ``label_quality`` is higher when the
given label is more likely correct; for detection against ground truth the positive
class is "mislabelled" and the ranking score is ``1 - label_quality``; noise matrices
are ``T[given, true] = P(given | true)`` with columns summing to 1.
"""
from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from urllib.parse import quote

import numpy as np

from .._format import markdown_table
from .._validation import NoisylabInputError
from . import figures as _fig
from ._markdown import escape_line_start, escape_markdown, sanitize_markdown
from .examples import EXAMPLE_KINDS, detect_kind, image_batch, sequence_batch
from .html import markdown_to_html, page, table_html

__all__ = ["Report", "empirical_noise_matrix", "load_runs", "report_from_find_issues"]

_COL_SUM_TOL = 1e-3
#: At most this many features are shown per tabular example, at most this many characters per text.
MAX_FEATURES, MAX_TEXT = 10, 300


@dataclass
class _Figure:
    slug: str
    png: bytes
    alt: str
    caption: str


@dataclass
class _Section:
    title: str
    anchor: str
    blocks: list = field(default_factory=list)  # (html, markdown) pairs or _Figure


# ----------------------------------------------------------------------------------------
# validation helpers
# ----------------------------------------------------------------------------------------
def _length_error(name, got, n) -> NoisylabInputError:
    return NoisylabInputError(f"{name} has {got} entries but labels has {n}; they must have one per example.")


def _labels(values, name, n=None, K=None) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise NoisylabInputError(f"{name} must be 1-D with shape (n,); got shape {arr.shape}.")
    if arr.dtype.kind == "f" and arr.size and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iu" and arr.size:
        raise NoisylabInputError(f"{name} must be integer class indices 0..K-1; got dtype {arr.dtype}.")
    arr = arr.astype(np.int64)
    if n is not None and arr.shape[0] != n:
        raise _length_error(name, arr.shape[0], n)
    if arr.size and arr.min() < 0:
        raise NoisylabInputError(f"{name} must be class indices >= 0; got {int(arr.min())}.")
    if K is not None and arr.size and arr.max() >= K:
        raise NoisylabInputError(f"{name} holds class {int(arr.max())} but there are only {K} classes (0..{K - 1}; "
                                 "K is n_classes, or the length of class_names when given).")
    return arr


def _scores(values, name, n) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1 or arr.dtype.kind not in "iuf":
        raise NoisylabInputError(f"{name} must be a 1-D array of numbers; got dtype {arr.dtype}, shape {arr.shape}.")
    if arr.shape[0] != n:
        raise _length_error(name, arr.shape[0], n)
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        first = int(np.argmin(np.isfinite(arr)))
        raise NoisylabInputError(f"{name} holds NaN or infinite values (first at index {first}).")
    return arr


def _mask(values, name, n) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise NoisylabInputError(f"{name} must be a boolean mask of shape (n,); got shape {arr.shape}.")
    if arr.dtype.kind != "b":
        if arr.dtype.kind in "iu" and np.all((arr == 0) | (arr == 1)) and arr.shape[0] == n:
            arr = arr.astype(bool)
        else:
            raise NoisylabInputError(f"{name} must be a boolean mask of shape ({n},); got dtype {arr.dtype}.")
    if arr.shape[0] != n:
        raise _length_error(name, arr.shape[0], n)
    return arr


def _names(class_names, K, what="class_names", of="classes") -> list[str]:
    if class_names is None:
        return [str(k) for k in range(K)]
    names = [str(c) for c in (class_names.tolist() if isinstance(class_names, np.ndarray) else class_names)]
    if len(names) != K:
        raise NoisylabInputError(f"{what} has {len(names)} names but there are {K} {of}.")
    if what == "class_names":
        check_unique_names(names, what)
    return names


def check_unique_names(names, what="class_names") -> None:
    """Refuse repeated class names: two rows and columns that cannot be told apart.

    Names are compared as shown (runs of white space count as one space, ends stripped).

    Raises
    ------
    NoisylabInputError
        Naming the first repeated name and where it occurs.
    """
    seen: dict[str, int] = {}
    for i, name in enumerate(str(c) for c in names):
        key = " ".join(name.split())
        if key in seen:
            raise NoisylabInputError(f"{what} must be unique; got {name!r} at positions {seen[key]} and {i} "
                                     f"(of {len(names)} names).")
        seen[key] = i


def _noise_matrix(M, name, K=None) -> np.ndarray:
    try:
        arr = np.asarray(M, dtype=np.float64)
    except (TypeError, ValueError):
        raise NoisylabInputError(f"{name} must be a numeric K x K matrix; got {type(M).__name__}.") from None
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise NoisylabInputError(f"{name} must be a square K x K matrix; got shape {arr.shape}.")
    if K is not None and arr.shape[0] != K:
        raise NoisylabInputError(f"{name} is {arr.shape[0]} x {arr.shape[0]} but the estimated matrix is {K} x {K}.")
    if not np.all(np.isfinite(arr)) or arr.min() < 0:
        raise NoisylabInputError(f"{name} must hold finite probabilities >= 0.")
    sums = arr.sum(axis=0)
    if np.any(np.abs(sums - 1.0) > _COL_SUM_TOL):
        j = int(np.argmax(np.abs(sums - 1.0)))
        raise NoisylabInputError(
            f"{name} must follow T[given, true] = P(given | true), columns summing to 1; column {j} sums to "
            f"{sums[j]:.4f}"
            + (" (its rows sum to 1: pass the transpose)" if np.allclose(arr.sum(1), 1, atol=_COL_SUM_TOL) else "")
            + "."
        )
    return arr


def empirical_noise_matrix(labels, true_labels, n_classes) -> np.ndarray:
    """The actual ``P(given | true)`` of a labelling: counts of (given, true) pairs, columns normalised.

    A class that never occurs as a true label gets the identity column.
    """
    y, t = np.asarray(labels, dtype=np.int64), np.asarray(true_labels, dtype=np.int64)
    K = int(n_classes)
    C = np.bincount(y * K + t, minlength=K * K).reshape(K, K).astype(np.float64)
    col = C.sum(axis=0)
    T = np.divide(C, col, out=np.eye(K), where=col > 0)
    return T


def _slug(text: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s or "section"


def _pct(num, den) -> str:
    return f"{num / den:.2%}" if den else "-"


def _f4(x) -> str:
    return f"{x:.4f}"


class Report:
    """A noisy-label report, built section by section, written as HTML (+ a Markdown twin).

    Parameters
    ----------
    title : str
        Report title (escaped in the HTML).
    subtitle : str, optional
        One line under the title, e.g. the data set and the method.

    Examples
    --------
    >>> rep = Report("Digits, 30% symmetric noise")
    >>> rep.add_text("Out-of-fold probabilities of a small CNN.", title="Setup")  # doctest: +ELLIPSIS
    <noisylab.report.builder.Report object at ...>
    >>> print(rep.to_markdown())
    # Digits, 30% symmetric noise
    <BLANKLINE>
    ## Setup
    <BLANKLINE>
    Out-of-fold probabilities of a small CNN.
    <BLANKLINE>
    """

    def __init__(self, title: str, subtitle: str | None = None):
        if not isinstance(title, str) or not title.strip():
            raise NoisylabInputError(f"title must be a non-empty string; got {title!r}.")
        if subtitle is not None and not isinstance(subtitle, str):
            raise NoisylabInputError(f"subtitle must be a string or None; got {type(subtitle).__name__}.")
        self.title = title
        self.subtitle = subtitle
        self.sections: list[_Section] = []
        self._n_figures = 0

    # ------------------------------------------------------------------ plumbing
    def _section(self, title: str) -> _Section:
        anchor, k = _slug(title), 2
        taken = {s.anchor for s in self.sections}
        base = anchor
        while anchor in taken:
            anchor, k = f"{base}-{k}", k + 1
        sec = _Section(title, anchor)
        self.sections.append(sec)
        return sec

    def _figure(self, name: str, png: bytes, alt: str, caption: str) -> _Figure:
        self._n_figures += 1
        return _Figure(f"fig{self._n_figures:02d}-{_slug(name)}", png, alt, caption)

    @staticmethod
    def _table(header, rows, numeric=None):
        return (table_html(header, rows, numeric=numeric), markdown_table([_md_cell(h) for h in header],
                                                                          [[_md_cell(c) for c in r] for r in rows]))

    @staticmethod
    def _facts(facts):
        html = '<ul class="facts">' + "".join(f"<li>{escape(k)}<b>{escape(v)}</b></li>" for k, v in facts) + "</ul>"
        md = "\n".join(f"- {_md_line(k)}: {_md_text(v)}" for k, v in facts)
        return html, md

    @staticmethod
    def _para(text):
        return f"<p>{escape(text)}</p>", _md_line(text)

    # ------------------------------------------------------------------ sections
    def add_text(self, text: str, title: str | None = None) -> Report:
        """Free text in the Markdown subset of :func:`noisylab.report.html.markdown_to_html`.

        Markup beyond that subset (links, images, raw HTML) is shown as text on both
        sides: the Markdown twin gets it escaped (:func:`._markdown.sanitize_markdown`).
        With ``title`` it opens a new section, else it is appended to the last one
        (or opens a "Notes" section).
        """
        if not isinstance(text, str):
            raise NoisylabInputError(f"text must be a string; got {type(text).__name__}.")
        if title is None and not self.sections:
            title = "Notes"
        sec = self._section(title) if title is not None else self.sections[-1]
        sec.blocks.append((markdown_to_html(text), sanitize_markdown(text.strip())))
        return self

    def add_table(self, markdown: str, title: str | None = None) -> Report:
        """A benchmark table (or any Markdown text with pipe tables), rendered to an HTML table.

        The Markdown twin keeps the text as given (stripped), except that markup beyond
        the subset the HTML renders (links, images, raw HTML, ...) is escaped.
        """
        if not isinstance(markdown, str) or "|" not in markdown:
            raise NoisylabInputError("add_table expects a Markdown pipe table as a string (| a | b |, then |---|---|).")
        sec = self._section(title or "Table")
        sec.blocks.append((markdown_to_html(markdown), sanitize_markdown(markdown.strip())))
        return self

    def add_summary(self, labels, *, n_classes=None, class_names=None, true_labels=None, is_issue=None,
                    estimated_noise_rate=None, title: str = "Data set") -> Report:
        """Data-set summary: n, K, class counts; the actual noise rate when ``true_labels`` are known.

        Parameters
        ----------
        labels : array-like of int, shape (n,)
            Given labels, class indices ``0..K-1``.
        n_classes : int, optional
            K (default: ``len(class_names)`` or ``labels.max() + 1``).
        class_names : sequence of str, optional
        true_labels : array-like of int, shape (n,), optional
            Ground truth; adds the true class counts and the noise rate (share of
            examples whose given label differs from the true one).
        is_issue : array-like of bool, shape (n,), optional
            Flagged label issues; adds their count per class.
        estimated_noise_rate : float, optional
            E.g. ``ConfidentLearning.noise_rate_``.
        """
        y, n, K, names = _labels_and_classes(labels, n_classes, class_names)
        t = None if true_labels is None else _labels(true_labels, "true_labels", n, K)
        flagged = None if is_issue is None else _mask(is_issue, "is_issue", n)
        counts = np.bincount(y, minlength=K)
        facts = [("examples", str(n)), ("classes", str(K))]
        if flagged is not None:
            m = int(flagged.sum())
            facts.append(("label issues flagged", f"{m} ({_pct(m, n)})"))
        if estimated_noise_rate is not None:
            facts.append(("estimated noise rate", _f4(float(estimated_noise_rate))))
        if t is not None:
            wrong = int(np.count_nonzero(y != t))
            facts.append(("actual noise rate", f"{_f4(wrong / n)} ({wrong} of {n} labels wrong)"))
        sec = self._section(title)
        sec.blocks.append(self._facts(facts))
        header = ["class", "given labels"]
        cols = [counts]
        if t is not None:
            header += ["true labels", "wrong given labels"]
            cols += [np.bincount(t, minlength=K), np.bincount(y[y != t], minlength=K)]
        if flagged is not None:
            header += ["flagged", "flagged share"]
            fl = np.bincount(y[flagged], minlength=K)
            cols += [fl]
        rows = []
        for k in range(K):
            r = [names[k]] + [str(int(c[k])) for c in cols]
            if flagged is not None:
                r.append(_pct(int(fl[k]), int(counts[k])))
            rows.append(r)
        sec.blocks.append(self._table(header, rows, numeric=[False] + [True] * (len(header) - 1)))
        return self

    def add_noise_matrix(self, estimated, true=None, class_names=None, *,
                         title: str = "Noise matrix") -> Report:
        """Heatmap of the estimated noise matrix ``P(given | true)``, next to the true one when known.

        Parameters
        ----------
        estimated : array-like (K, K)
            ``T[given, true]``, columns sum to 1 (e.g. ``ConfidentLearning.noise_matrix_``).
        true : array-like (K, K), optional
            The true matrix (same convention), e.g. :func:`empirical_noise_matrix`.
        class_names : sequence of str, optional
        """
        E = _noise_matrix(estimated, "estimated noise matrix")
        K = E.shape[0]
        T = None if true is None else _noise_matrix(true, "true noise matrix", K)
        names = _names(class_names, K)
        png = _fig.noise_matrix_figure(E, T, names)
        alt = ("Heatmap of the estimated noise matrix P(given label | true label)"
               + (" beside the true noise matrix" if T is not None else "")
               + f": {K} x {K}, columns = true label, rows = given label, each column sums to 1.")
        sec = self._section(title)
        sec.blocks.append(self._para("Rows: the given (noisy) label; columns: the true label; each column sums to 1. "
                                     "Off-diagonal cells are the rates at which a true class is given another label."))
        sec.blocks.append(self._figure("noise-matrix", png, alt,
                                       "Estimated noise matrix" + (" (left) and the true one (right)" if T is not None
                                                                   else "")))
        if K <= 20:
            for M, what in ((E, "Estimated"), (T, "True")):
                if M is None:
                    continue
                header = ["given \\ true"] + names
                rows = [[names[i]] + [f"{v:.2f}" for v in M[i]] for i in range(K)]
                html, md = self._table(header, rows, numeric=[False] + [True] * K)
                sec.blocks.append((f"<details><summary>{what} P(given | true) as numbers</summary>{html}</details>",
                                   f"{what} P(given | true):\n\n{md}"))
        if T is not None:
            err = np.abs(E - T)
            sec.blocks.append(self._para(f"Mean absolute error of the estimate: {err.mean():.4f}; "
                                         f"largest cell error: {err.max():.4f}."))
        return self

    def add_issue_scores(self, labels, label_quality, is_issue, true_labels=None, *, class_names=None,
                         n_classes=None, title: str = "Label issues") -> Report:
        """Issues per class (bar chart) and the histogram of label-quality scores.

        With ``true_labels`` the histogram is split into truly wrong / correct labels,
        and a "Detection against the ground truth" section is added: the precision-recall
        curve of the ranking (positive = mislabelled, score = ``1 - label_quality``, via
        ``sklearn.metrics.precision_recall_curve``) and the precision, recall, F1 of the
        flagged set with the AUROC and average precision of the scores.

        Parameters
        ----------
        labels : array-like of int, shape (n,)
        label_quality : array-like of float, shape (n,)
            Higher = the given label is more likely correct.
        is_issue : array-like of bool, shape (n,)
            The flagged label issues.
        true_labels : array-like of int, shape (n,), optional
        class_names : sequence of str, optional
        n_classes : int, optional
        """
        y, n, K, names = _labels_and_classes(labels, n_classes, class_names)
        q = _scores(label_quality, "label_quality", n)
        flagged = _mask(is_issue, "is_issue", n)
        t = None if true_labels is None else _labels(true_labels, "true_labels", n, K)
        noisy = None if t is None else y != t
        per_class = np.bincount(y[flagged], minlength=K)
        true_per_class = None if noisy is None else np.bincount(y[noisy], minlength=K)
        counts = np.bincount(y, minlength=K)
        thr = float(q[flagged].max()) if flagged.any() else None

        sec = self._section(title)
        m = int(flagged.sum())
        sec.blocks.append(self._para(f"{m} of {n} examples ({_pct(m, n)}) are flagged as label issues."))
        bar = _fig.issues_per_class_figure(counts, per_class, names, true_per_class)
        sec.blocks.append(self._figure(
            "issues-per-class", bar,
            "Bar chart of the number of flagged label issues per given class"
            + (" beside the number of truly mislabelled examples" if noisy is not None else "") + ".",
            "Label issues per class (given label)"))
        hist = _fig.quality_histogram_figure(q, noisy, thr)
        sec.blocks.append(self._figure(
            "label-quality", hist,
            "Histogram of the label-quality scores" + (", split into examples whose given label is wrong and "
                                                       "those whose label is correct" if noisy is not None else "")
            + "; lower scores are more likely mislabelled.",
            "Label-quality scores (lower = more likely mislabelled)"))
        if noisy is None:
            return self

        from sklearn.metrics import precision_recall_curve

        from ..metrics import (
            detection_auroc,
            detection_average_precision,
            detection_precision_recall_f1,
        )

        det = detection_precision_recall_f1(flagged, noisy)
        both = 0 < det["n_noisy"] < n
        auroc = detection_auroc(noisy, q) if both else None
        ap = detection_average_precision(noisy, q) if both else None
        sec = self._section("Detection against the ground truth")
        sec.blocks.append(self._para("Positive class: mislabelled (given label differs from the true label); "
                                     "ranking score: 1 - label quality."))
        tp = det["n_true_positive"]
        rows = [["precision", _f4(det["precision"]), f"{tp} / {det['n_flagged']} flagged are mislabelled"],
                ["recall", _f4(det["recall"]), f"{tp} / {det['n_noisy']} mislabelled are flagged"],
                ["F1", _f4(det["f1"]), "harmonic mean of precision and recall"],
                ["AUROC", "-" if auroc is None else _f4(auroc), "ranking of all examples by 1 - label quality"],
                ["average precision", "-" if ap is None else _f4(ap), "area under the precision-recall curve"]]
        sec.blocks.append(self._table(["metric", "value", "meaning"], rows, numeric=[False, True, False]))
        if both:
            prec, rec, _ = precision_recall_curve(noisy, 1.0 - q)
            png = _fig.precision_recall_figure(prec, rec, (det["recall"], det["precision"]), det["n_noisy"] / n)
            sec.blocks.append(self._figure(
                "precision-recall", png,
                f"Precision-recall curve of ranking examples by 1 - label quality (average precision {ap:.4f}); "
                f"the flagged set is marked at recall {det['recall']:.4f}, precision {det['precision']:.4f}.",
                "Precision-recall curve (positive = mislabelled)"))
        return self

    def add_training_curves(self, runs, *, title: str = "Training curves") -> Report:
        """Test and noisy-validation accuracy per epoch of each method compared.

        Parameters
        ----------
        runs : list of dict
            ``{"name": str, "history": [{"epoch": e, "val_acc": a, "test_acc": b, ...}, ...]}``
            (what ``noisylab train`` writes to ``history.json``; see :func:`load_runs`).
            An optional ``"best_epoch"`` (an index into ``history``) marks the model
            selected on the noisy validation split; by default the first epoch with the
            highest ``val_acc``.
        """
        if isinstance(runs, dict) or not isinstance(runs, (list, tuple)) or not runs:
            raise NoisylabInputError("runs must be a non-empty list of {'name': ..., 'history': [...]} dicts.")
        parsed, rows = [], []
        for i, run in enumerate(runs):
            if not isinstance(run, dict) or "history" not in run:
                raise NoisylabInputError(f"runs[{i}] must be a dict with keys 'name' and 'history'; got {run!r:.80}.")
            hist = run["history"]
            name = str(run.get("name", f"run {i}"))
            if not isinstance(hist, (list, tuple)) or not hist or not all(isinstance(r, dict) for r in hist):
                raise NoisylabInputError(f"run {name!r}: history must be a non-empty list of per-epoch dicts.")
            val = np.array([_num(r.get("val_acc")) for r in hist])
            test = np.array([_num(r.get("test_acc")) for r in hist])
            if np.all(np.isnan(val)) and np.all(np.isnan(test)):
                raise NoisylabInputError(f"run {name!r}: no epoch has 'val_acc' or 'test_acc'.")
            epochs = np.array([_num(r.get("epoch", j)) for j, r in enumerate(hist)])
            best = run.get("best_epoch")
            if best is not None and (isinstance(best, bool) or not isinstance(best, (int, np.integer))):
                raise NoisylabInputError(f"run {name!r}: best_epoch must be an int index into history; got {best!r}.")
            if best is None or not (0 <= int(best) < len(hist)):
                best = int(np.nanargmax(val)) if not np.all(np.isnan(val)) else len(hist) - 1
            best = int(best)
            parsed.append((name, epochs, val, test))
            rows.append([name, str(len(hist)), _fmt_epoch(epochs[best]), _fmt_acc(val[best]), _fmt_acc(test[best]),
                         _fmt_acc(test[-1]), _fmt_acc(np.nanmax(test) if not np.all(np.isnan(test)) else np.nan)])
        png = _fig.training_curves_figure(parsed)
        sec = self._section(title)
        sec.blocks.append(self._figure(
            "training-curves", png,
            "Line plots of test accuracy (left) and noisy-validation accuracy (right) per epoch for "
            + ", ".join(p[0] for p in parsed) + ".",
            "Accuracy per epoch; the model is selected on the noisy validation split, never on the test set"))
        sec.blocks.append(self._table(
            ["method", "epochs", "selected epoch", "noisy-val acc", "test acc (selected)", "test acc (last)",
             "test acc (max, oracle)"], rows, numeric=[False] + [True] * 6))
        return self

    def add_examples(self, X, labels, suggested, scores, class_names=None, k: int = 24, kind: str = "auto", *,
                     is_issue=None, feature_names=None, title: str = "Suspected label errors") -> Report:
        """The ``k`` most suspicious examples shown as they are, each with "given → suggested" and its score.

        Parameters
        ----------
        X : array-like
            The examples, one per label: images ``(n, H, W)``, ``(n, C, H, W)`` or
            ``(n, H, W, C)``; sequences ``(n, C, L)``; a 1-D array of strings; or
            feature rows ``(n, d)`` (see :func:`noisylab.report.examples.detect_kind`).
        labels, suggested : array-like of int, shape (n,)
            Given and suggested labels.
        scores : array-like of float, shape (n,)
            Label quality, lower = more suspicious; the ``k`` lowest are shown.
        class_names : sequence of str, optional
        k : int, default=24
        kind : {"auto", "image", "sequence", "text", "tabular"}, default="auto"
        is_issue : array-like of bool, shape (n,), optional
            Show only flagged examples (still the ``k`` lowest scores among them).
        feature_names : sequence of str, optional
            Column names for tabular data.
        """
        from .._validation import check_option

        kind = check_option("kind", kind, ("auto",) + EXAMPLE_KINDS)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise NoisylabInputError(f"k must be an int >= 1; got {k!r}.")
        y = _labels(labels, "labels")
        n = y.shape[0]
        X = X if isinstance(X, np.ndarray) else np.asarray(X)
        if X.ndim == 0 or X.shape[0] != n:
            raise NoisylabInputError(f"X has {X.shape[0] if X.ndim else 0} examples but labels has {n}; "
                                     "they must have one per example.")
        s = _labels(suggested, "suggested", n)
        q = _scores(scores, "scores", n)
        K = _n_classes(np.concatenate([y, s]), None, class_names)
        names = _names(class_names, K)
        for arr, what in ((y, "labels"), (s, "suggested")):
            _labels(arr, what, n, K)  # within the class names
        detected = detect_kind(X)
        if kind == "auto":
            kind = detected
        elif kind != detected and not (kind == "tabular" and detected != "text"
                                       or {kind, detected} == {"image", "sequence"} and X.ndim == 3):
            raise NoisylabInputError(f"kind={kind!r} does not fit examples of dtype {X.dtype} and shape {X.shape} "
                                     f"(they look like {detected!r}).")
        pool = np.arange(n) if is_issue is None else np.flatnonzero(_mask(is_issue, "is_issue", n))
        order = pool[np.argsort(q[pool], kind="stable")][: int(k)]
        sec = self._section(title)
        if order.size == 0:
            sec.blocks.append(self._para("No example to show: nothing was flagged."))
            return self
        given = [names[c] for c in y[order]]
        sugg = [names[c] for c in s[order]]
        intro = (f"The {order.size} examples with the lowest label quality"
                 + (" among the flagged issues" if is_issue is not None else "")
                 + f", most suspicious first ({kind} data).")
        sec.blocks.append(self._para(intro))
        header = ["#", "index", "given → suggested", "label quality"]
        rows = [[str(r + 1), str(int(i)), f"{g} → {t}", _f4(q[i])]
                for r, (i, g, t) in enumerate(zip(order, given, sugg))]
        if kind in ("image", "sequence"):
            titles = [f"#{int(i)}: {_fig._short(g, 9)} → {_fig._short(t, 9)}\nquality {q[i]:.3f}"
                      for i, g, t in zip(order, given, sugg)]
            if kind == "image":
                imgs, grey = image_batch(X[order])
                png = _fig.image_grid_figure(imgs, titles, grey)
            else:
                png = _fig.sequence_grid_figure(sequence_batch(X[order]), titles)
            sec.blocks.append(self._figure(
                f"examples-{kind}", png,
                f"Grid of the {order.size} most suspicious {'images' if kind == 'image' else '1-D sequences'}, "
                "each titled with its index, given label → suggested label and label quality: "
                + "; ".join(f"#{int(i)} {g} → {t}" for i, g, t in zip(order, given, sugg)) + ".",
                "Most suspicious examples, shown as they are (given → suggested)"))
            sec.blocks.append(self._table(header, rows, numeric=[True, True, False, True]))
        elif kind == "text":
            texts = [_clip_text(v) for v in X[order].tolist()]
            header = header + ["text"]
            rows = [r + [tx] for r, tx in zip(rows, texts)]
            html, md = self._table(header, rows, numeric=[True, True, False, True, False])
            html = _mark_text_cells(html)
            sec.blocks.append((html, md))
        else:
            F = X[order].reshape(order.size, -1)
            d = F.shape[1]
            fn = _names(feature_names, d, "feature_names", "features") if feature_names is not None \
                else [f"x{j}" for j in range(d)]
            shown = min(d, MAX_FEATURES)
            header = header + fn[:shown] + (["…"] if d > shown else [])
            rows = [r + [_fmt_feature(v) for v in F[j, :shown].tolist()] + (["…"] if d > shown else [])
                    for j, r in enumerate(rows)]
            sec.blocks.append(self._table(header, rows, numeric=[True, True, False, True] + [True] * (len(header) - 4)))
        return self

    # ------------------------------------------------------------------ output
    @property
    def figures(self) -> list[_Figure]:
        """All figures, in order."""
        return [b for s in self.sections for b in s.blocks if isinstance(b, _Figure)]

    def to_markdown(self, files_dir: str = "report_files") -> str:
        """The Markdown twin; figures are linked as ``files_dir/<slug>.png``."""
        out = [f"# {_md_heading(self.title)}", ""]
        if self.subtitle:
            out += [_md_line(self.subtitle), ""]
        for sec in self.sections:
            out += [f"## {_md_heading(sec.title)}", ""]
            for b in sec.blocks:
                if isinstance(b, _Figure):
                    out += [f"![{_md_alt(b.alt)}]({quote(files_dir)}/{b.slug}.png)", "", f"*{_md_text(b.caption)}*", ""]
                else:
                    out += [b[1], ""]
        return "\n".join(out)

    def to_html(self) -> str:
        """The self-contained HTML page."""
        body = []
        for sec in self.sections:
            parts = [f'<section id="{escape(sec.anchor, quote=True)}">', f"<h2>{escape(sec.title)}</h2>"]
            for b in sec.blocks:
                if isinstance(b, _Figure):
                    data = base64.b64encode(b.png).decode("ascii")
                    parts.append(f'<figure><img id="{escape(b.slug, quote=True)}" src="data:image/png;base64,{data}" '
                                 f'alt="{escape(b.alt, quote=True)}"><figcaption>{escape(b.caption)}</figcaption>'
                                 "</figure>")
                else:
                    parts.append(b[0])
            parts.append("</section>")
            body.append("\n".join(parts))
        from .. import __version__

        return page(self.title, self.subtitle or f"{len(self.sections)} sections, {len(self.figures)} figures",
                    [(s.anchor, s.title) for s in self.sections], "\n".join(body),
                    f"Generated by noisylab {__version__}. Self-contained: no external resources.")

    def write(self, html_path, md_path=None) -> dict:
        """Write the HTML file (and the Markdown twin with its ``<name>_files/`` folder), atomically as a set.

        Every file is first written in full to a temporary file beside its destination;
        only then are they renamed into place (figures, Markdown twin, HTML), and figures
        of an earlier, longer report are removed last.  An error or an interrupt while
        writing leaves the earlier files (HTML, twin and figures) untouched and no
        temporary file behind.

        Returns
        -------
        dict
            ``{"html": Path, "markdown": Path or None, "figures": [Path, ...]}``.

        Raises
        ------
        NoisylabInputError
            A destination that cannot be written (checked before anything is written).
        """
        from ..io import check_output_path

        html_path = check_output_path(html_path)
        written = {"html": html_path, "markdown": None, "figures": []}
        files = None
        if md_path is not None:  # every destination is checked before anything is written
            md_path = check_output_path(md_path)
            if md_path.resolve() == html_path.resolve():
                raise NoisylabInputError(f"the Markdown twin needs another file name than the HTML: {md_path}")
            files = md_path.with_name(md_path.stem + "_files")
            if self.figures and files.exists() and not files.is_dir():
                raise NoisylabInputError(f"{files} exists and is not a folder (it should hold the figures).")
        staged: list[tuple[str, Path]] = []  # (temporary file, destination), in the order they are renamed
        html_tmp, made_folder, figure_paths = None, False, []
        try:
            html_tmp = _stage(html_path, self.to_html().encode("utf-8"))
            if md_path is not None:
                if self.figures:
                    made_folder = not files.exists()
                    try:
                        files.mkdir(exist_ok=True)
                    except OSError as exc:
                        raise NoisylabInputError(f"cannot create the figures folder {files}: "
                                                 f"{exc.strerror or exc}") from None
                    for f in self.figures:
                        p = files / f"{f.slug}.png"
                        staged.append((_stage(p, f.png), p))
                        figure_paths.append(p)
                staged.append((_stage(md_path, self.to_markdown(files.name).encode("utf-8")), md_path))
            staged.append((html_tmp, html_path))
            html_tmp = None
            while staged:  # everything is on disk: rename into place, the HTML last
                os.replace(*staged[0])
                staged.pop(0)
        except BaseException:
            for tmp in [t for t, _ in staged] + ([html_tmp] if html_tmp is not None else []):
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            if made_folder:
                with contextlib.suppress(OSError):
                    files.rmdir()  # only if still empty
            raise
        if md_path is not None:
            if self.figures:
                current = {f"{f.slug}.png" for f in self.figures}
                for old in files.glob("fig[0-9][0-9]-*.png"):  # figures of an earlier, longer report
                    if old.name not in current:
                        old.unlink()
            written["markdown"] = md_path
            written["figures"] = figure_paths
        return written


def _stage(path: Path, data: bytes) -> str:
    """Write ``data`` to a new temporary file next to ``path`` (flushed to disk, with the mode ``path``
    has or would get); return its name.  Nothing is left behind on failure."""
    from ..io import output_file_mode

    file_mode = output_file_mode(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise NoisylabInputError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, file_mode)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise NoisylabInputError(f"cannot write {path}: {exc.strerror or exc}") from None
        raise
    return tmp


# ----------------------------------------------------------------------------------------
# small formatting helpers
# ----------------------------------------------------------------------------------------
def _labels_and_classes(labels, n_classes, class_names):
    """Validated labels of a report section: ``(y, n, K, class names)``; at least one example."""
    y = _labels(labels, "labels")
    n = y.shape[0]
    if n == 0:
        raise NoisylabInputError("labels is empty; a report needs at least one example.")
    K = _n_classes(y, n_classes, class_names)
    return _labels(y, "labels", K=K), n, K, _names(class_names, K)


def _n_classes(y, n_classes, class_names) -> int:
    if n_classes is not None:
        if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or n_classes < 1:
            raise NoisylabInputError(f"n_classes must be an int >= 1; got {n_classes!r}.")
        return int(n_classes)
    if class_names is not None:
        return len(class_names)
    return int(y.max()) + 1 if y.size else 1


def _num(v) -> float:
    try:
        return float(v) if v is not None else float("nan")
    except (TypeError, ValueError):
        return float("nan")


def _fmt_acc(v) -> str:
    return "-" if v is None or np.isnan(v) else _f4(float(v))


def _fmt_epoch(v) -> str:
    return "-" if np.isnan(v) else (str(int(v)) if float(v).is_integer() else f"{v:g}")


def _fmt_feature(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _clip_text(v) -> str:
    s = v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
    s = " ".join(s.split())
    return s if len(s) <= MAX_TEXT else s[: MAX_TEXT - 1] + "…"


def _mark_text_cells(html: str) -> str:
    """Give the last column's cells the ``text`` class (wrapping, preserved spaces)."""
    return re.sub(r"<td>((?:(?!</td>).)*)</td></tr>", r'<td class="text">\1</td></tr>', html, flags=re.DOTALL)


def _md_text(s, *, table: bool = False) -> str:
    """Text for Markdown: one line, with characters that would start markup neutralised
    (``<``/``>`` as entities, the rest backslash-escaped by :func:`escape_markdown`)."""
    s = " ".join(str(s).split())
    return "&gt;".join("&lt;".join(escape_markdown(p, table=table) for p in q.split("<")) for q in s.split(">"))


def _md_line(s) -> str:
    """:func:`_md_text` for a string that starts a line: a leading heading, quote or list marker is escaped too."""
    return escape_line_start(_md_text(s))


def _md_heading(s) -> str:
    """:func:`_md_text` for a heading: closing ``#`` characters would be dropped, so they are escaped."""
    s = _md_text(s)
    m = re.search(r"#+$", s)
    return s[: m.start()] + "\\#" * (m.end() - m.start()) if m else s


def _md_cell(s) -> str:
    return _md_text(s, table=True)


def _md_alt(s) -> str:
    return _md_text(s).replace("[", "(").replace("]", ")")


# ----------------------------------------------------------------------------------------
# inputs: training runs, the find-issues helper
# ----------------------------------------------------------------------------------------
def load_runs(dirs) -> list[dict]:
    """Read ``history.json`` (and ``result.json`` when present) from ``noisylab train`` output folders.

    The run's name is the ``method`` of ``result.json`` (the folder name when there is
    none, or when two runs share a method name: ``method (folder)``).
    """
    runs = []
    for d in dirs:
        d = Path(d)
        if not d.is_dir():
            raise NoisylabInputError(f"run folder not found: {d}")
        hp = d / "history.json"
        if not hp.is_file():
            raise NoisylabInputError(f"{d} has no history.json (expected the output folder of `noisylab train`).")
        try:
            hist = json.loads(hp.read_text(encoding="utf-8"))
            res = (json.loads((d / "result.json").read_text(encoding="utf-8")) if (d / "result.json").is_file()
                   else {})
        except (OSError, ValueError) as exc:
            raise NoisylabInputError(f"could not read {d}: {exc}") from None
        if not isinstance(hist, list):
            raise NoisylabInputError(f"{hp}: expected a JSON list of per-epoch records.")
        run = {"name": str(res.get("method") or d.name), "history": hist, "folder": d.name}
        if isinstance(res.get("best_epoch"), int):
            run["best_epoch"] = res["best_epoch"]
        runs.append(run)
    names = [r["name"] for r in runs]
    for r in runs:
        if names.count(r["name"]) > 1 and r["name"] != r["folder"]:
            r["name"] = f"{r['name']} ({r['folder']})"
    return runs


def report_from_find_issues(labels, pred_probs, issues_mask, label_quality, X=None, true_labels=None,
                            class_names=None, *, title: str = "Label issues report", k: int = 24,
                            subtitle: str | None = None) -> Report:
    """A full report from the inputs and outputs of :func:`noisylab.find_label_issues`.

    Adds the summary, the estimated noise matrix (from
    :func:`noisylab.detect.count.estimate_py_and_noise_matrices_from_probabilities`, beside
    the empirical true one when ``true_labels`` are known), the issue scores and, with
    ``true_labels``, the detection figures; with ``X``, the grid of the ``k`` most
    suspicious flagged examples (suggested label = the most probable class).

    Parameters
    ----------
    labels : array-like of int, shape (n,)
    pred_probs : array-like of float, shape (n, K)
        Out-of-sample predicted probabilities.
    issues_mask : array-like of bool, shape (n,)
    label_quality : array-like of float, shape (n,)
        Higher = the given label is more likely correct.
    X : array-like, optional
        The examples (see :meth:`Report.add_examples`).
    true_labels : array-like of int, shape (n,), optional
    class_names : sequence of str, optional

    Returns
    -------
    Report
        Call ``.write(html_path, md_path)`` on it; more sections can be added first.
    """
    from ..detect.count import estimate_py_and_noise_matrices_from_probabilities

    P = np.asarray(pred_probs)
    y = _labels(labels, "labels")
    if P.ndim != 2:
        raise NoisylabInputError(f"pred_probs must have shape (n, K); got shape {P.shape}.")
    if P.shape[0] != y.shape[0]:
        raise NoisylabInputError(f"labels has {y.shape[0]} entries but pred_probs has {P.shape[0]} rows.")
    K = P.shape[1]
    names = _names(class_names, K)
    y = _labels(y, "labels", K=K)
    flagged = _mask(issues_mask, "issues_mask", y.shape[0])
    q = _scores(label_quality, "label_quality", y.shape[0])
    t = None if true_labels is None else _labels(true_labels, "true_labels", y.shape[0], K)
    _, nm, _, cj = estimate_py_and_noise_matrices_from_probabilities(y, P)
    est_rate = float(1.0 - np.trace(cj) / cj.sum()) if cj.sum() > 0 else None
    rep = Report(title, subtitle)
    rep.add_summary(y, n_classes=K, class_names=names, true_labels=t, is_issue=flagged, estimated_noise_rate=est_rate)
    rep.add_noise_matrix(nm, None if t is None else empirical_noise_matrix(y, t, K), names)
    rep.add_issue_scores(y, q, flagged, t, class_names=names, n_classes=K)
    if X is not None:
        suggested = np.argmax(P, axis=1)
        rep.add_examples(X, y, suggested, q, names, k=k, is_issue=flagged)
    return rep
