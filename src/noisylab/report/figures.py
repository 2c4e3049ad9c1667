"""The report's figures, drawn with matplotlib and returned as PNG bytes.

matplotlib is an optional dependency (``pip install "noisylab[report]"``), imported
only when a figure is drawn.  Figures are built as :class:`matplotlib.figure.Figure`
objects rendered by the Agg backend: pyplot and its global state are never touched.
Every figure is drawn inside an ``rc_context`` reset to matplotlib's defaults, with
fixed sizes and dpi and no ``Software`` PNG metadata, so the same input gives the
same bytes with the same matplotlib version.

Noise matrices follow the noisylab convention ``T[given, true] = P(given | true)``:
rows = the given (noisy) label, columns = the true label, each column sums to 1.
"""
from __future__ import annotations

import io
from contextlib import contextmanager

import numpy as np

__all__ = [
    "DPI",
    "image_grid_figure",
    "issues_per_class_figure",
    "noise_matrix_figure",
    "precision_recall_figure",
    "quality_histogram_figure",
    "require_matplotlib",
    "sequence_grid_figure",
    "training_curves_figure",
]

DPI = 100
#: Colours: clean / noisy, and the run lines (matplotlib's tab10 order).
CLEAN_COLOR, NOISY_COLOR, ISSUE_COLOR = "#4C72B0", "#DD5143", "#E39B3A"
_STYLE = {"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8,
          "xtick.labelsize": 8, "ytick.labelsize": 8, "figure.dpi": DPI, "savefig.dpi": DPI,
          "axes.spines.top": False, "axes.spines.right": False, "image.interpolation": "nearest",
          "text.parse_math": False}  # class / run names are drawn as given ("$" is not math)


def require_matplotlib(caller: str = "noisylab.report"):
    """Import matplotlib (figures only, no pyplot) or raise an actionable ImportError."""
    try:
        import matplotlib
        from matplotlib.figure import Figure  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f'{caller} draws figures with matplotlib, which is not installed: pip install "noisylab[report]" '
            "(or pip install matplotlib)."
        ) from exc
    return matplotlib


@contextmanager
def _figure(width, height, caller):
    mpl = require_matplotlib(caller)
    import matplotlib.style
    from matplotlib.figure import Figure

    with mpl.rc_context():
        matplotlib.style.use("default")
        mpl.rcParams.update(_STYLE)
        fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
        box = {}
        yield fig, box
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
        box["png"] = buf.getvalue()


def _short(name: str, width: int = 12) -> str:
    name = str(name)
    return name if len(name) <= width else name[: width - 1] + "…"


def _heatmap(ax, M, names, title):
    K = M.shape[0]
    im = ax.imshow(M, vmin=0.0, vmax=1.0, cmap="Blues", interpolation="nearest")
    ax.set_title(title)
    ax.set_xlabel("true label")
    ax.set_ylabel("given label")
    if K <= 20:
        ticks = np.arange(K)
        ax.set_xticks(ticks, [_short(n, 10) for n in names], rotation=45 if K > 4 else 0,
                      ha="right" if K > 4 else "center")
        ax.set_yticks(ticks, [_short(n, 10) for n in names])
    if K <= 12:
        for (i, j), v in np.ndenumerate(M):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7 if K > 6 else 8,
                    color="white" if v > 0.6 else "black")
    for side in ("top", "right"):
        ax.spines[side].set_visible(True)
    return im


def noise_matrix_figure(estimated, true=None, class_names=None) -> bytes:
    """Heatmap of the estimated noise matrix ``P(given | true)``, beside the true one when given."""
    estimated = np.asarray(estimated, dtype=np.float64)
    K = estimated.shape[0]
    names = class_names if class_names is not None else [str(k) for k in range(K)]
    side = min(3.2 + 0.28 * K, 7.0)
    panels = 1 if true is None else 2
    with _figure(side * panels + 0.8, side, "add_noise_matrix") as (fig, box):
        axes = fig.subplots(1, panels, squeeze=False)[0]
        im = _heatmap(axes[0], estimated, names, "estimated P(given | true)")
        if true is not None:
            _heatmap(axes[1], np.asarray(true, dtype=np.float64), names, "true P(given | true)")
        fig.colorbar(im, ax=list(axes), shrink=0.8, label="probability (columns sum to 1)")
    return box["png"]


def issues_per_class_figure(counts, flagged, class_names, true_noisy=None) -> bytes:
    """Bars per given class: flagged issues (and truly wrong labels when known), as a share of the class."""
    counts = np.asarray(counts, dtype=np.float64)
    K = counts.shape[0]
    x = np.arange(K)
    with _figure(min(3.0 + 0.45 * K, 11.0), 3.2, "add_issue_scores") as (fig, box):
        ax = fig.subplots()
        width = 0.4 if true_noisy is not None else 0.7
        off = width / 2 if true_noisy is not None else 0.0
        ax.bar(x - off, np.asarray(flagged), width, color=ISSUE_COLOR, label="flagged as issue")
        if true_noisy is not None:
            ax.bar(x + off, np.asarray(true_noisy), width, color=NOISY_COLOR, label="truly mislabelled")
            ax.legend(frameon=False)
        ax.set_xlabel("given label")
        ax.set_ylabel("examples")
        ax.set_title("label issues per class (by given label)")
        if K <= 30:
            ax.set_xticks(x, [_short(n, 10) for n in class_names], rotation=45 if K > 6 else 0,
                          ha="right" if K > 6 else "center")
    return box["png"]


def quality_histogram_figure(label_quality, is_noisy=None, threshold=None) -> bytes:
    """Histogram of label-quality scores, split into truly noisy / clean when ground truth is known."""
    q = np.asarray(label_quality, dtype=np.float64)
    lo, hi = min(0.0, float(q.min())), max(1.0, float(q.max()))
    bins = np.linspace(lo, hi, 26)
    with _figure(6.0, 3.2, "add_issue_scores") as (fig, box):
        ax = fig.subplots()
        if is_noisy is None:
            ax.hist(q, bins=bins, color=CLEAN_COLOR, label="all examples")
        else:
            ax.hist(q[~is_noisy], bins=bins, color=CLEAN_COLOR, alpha=0.75, label="label correct")
            ax.hist(q[is_noisy], bins=bins, color=NOISY_COLOR, alpha=0.75, label="label wrong (ground truth)")
        if threshold is not None:
            ax.axvline(threshold, color="black", linestyle="--", linewidth=1,
                       label=f"highest score flagged ({threshold:.3f})")
        ax.set_xlabel("label quality (lower = more likely mislabelled)")
        ax.set_ylabel("examples")
        ax.set_title("label-quality scores")
        ax.legend(frameon=False)
    return box["png"]


def precision_recall_figure(precision, recall, point=None, base_rate=None) -> bytes:
    """Precision-recall curve of the scores; ``point`` = (recall, precision) of the flagged set."""
    with _figure(4.6, 3.8, "add_issue_scores") as (fig, box):
        ax = fig.subplots()
        ax.step(recall, precision, where="post", color=CLEAN_COLOR, label="ranking by 1 - label quality")
        if base_rate is not None:
            ax.axhline(base_rate, color="grey", linestyle=":", linewidth=1, label=f"noise rate ({base_rate:.3f})")
        if point is not None:
            ax.plot([point[0]], [point[1]], "o", color=NOISY_COLOR, label="flagged set")
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("recall (share of wrong labels found)")
        ax.set_ylabel("precision (share of flagged that are wrong)")
        ax.set_title("precision-recall of the label-quality ranking")
        ax.legend(frameon=False, loc="lower left")
    return box["png"]


def training_curves_figure(runs) -> bytes:
    """Test and noisy-validation accuracy per epoch; ``runs`` = [(name, epochs, val_acc, test_acc)]."""
    with _figure(10.0, 3.6, "add_training_curves") as (fig, box):
        ax_test, ax_val = fig.subplots(1, 2, sharey=True)
        # up to 10 runs: the default cycle; more: 20 distinct colours, and dashes after 20
        palette = [f"C{i}" for i in range(10)] if len(runs) <= 10 else \
            [tuple(c) for c in require_matplotlib().colormaps["tab20"].colors]
        for i, (name, epochs, val, test) in enumerate(runs):
            color, style = palette[i % len(palette)], "-" if i < len(palette) else "--"
            kw = dict(color=color, linestyle=style, marker="." if len(epochs) <= 40 else None, label=_short(name, 28))
            ax_test.plot(epochs, test, **kw)
            ax_val.plot(epochs, val, **kw)
        ax_test.set_title("test accuracy")
        ax_val.set_title("noisy-validation accuracy")
        for ax in (ax_test, ax_val):
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
        ax_test.set_ylabel("accuracy")
        if len(runs) <= 4:
            ax_test.legend(frameon=False)
        else:  # beside the plots, where it hides no curve
            ax_val.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8)
    return box["png"]


def _grid_shape(m, ncols=8):
    cols = min(m, ncols)
    return cols, int(np.ceil(m / cols))


def image_grid_figure(images, titles, cmap_gray) -> bytes:
    """Images (m, H, W) or (m, H, W, 3|4) in [0, 1], one titled cell each, pixels shown as they are."""
    m = images.shape[0]
    cols, rows = _grid_shape(m)
    with _figure(1.35 * cols + 0.2, 1.6 * rows + 0.1, "add_examples") as (fig, box):
        axes = fig.subplots(rows, cols, squeeze=False)
        for i, ax in enumerate(axes.flat):
            ax.set_axis_off()
            if i >= m:
                continue
            ax.imshow(images[i], cmap="gray" if cmap_gray else None, vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_title(titles[i], fontsize=7)
    return box["png"]


def sequence_grid_figure(seqs, titles) -> bytes:
    """1-D sequences (m, C, L) as small line plots, one titled cell each."""
    m = seqs.shape[0]
    cols, rows = _grid_shape(m, 6)
    lo, hi = float(np.min(seqs)), float(np.max(seqs))
    pad = 0.05 * (hi - lo if hi > lo else 1.0)
    x = np.arange(seqs.shape[2])
    with _figure(1.8 * cols + 0.2, 1.5 * rows + 0.1, "add_examples") as (fig, box):
        axes = fig.subplots(rows, cols, squeeze=False)
        for i, ax in enumerate(axes.flat):
            if i >= m:
                ax.set_axis_off()
                continue
            for c in range(seqs.shape[1]):
                ax.plot(x, seqs[i, c], linewidth=1, color=f"C{c % 10}")
            ax.set_ylim(lo - pad, hi + pad)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(titles[i], fontsize=7)
    return box["png"]
