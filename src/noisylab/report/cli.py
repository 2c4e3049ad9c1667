"""``noisylab report``: the command-line front end of :mod:`noisylab.report`.

:func:`add_report_parser` registers the subcommand on the ``noisylab`` parser and
:func:`cmd_report` runs it; :func:`main` is a standalone entry point with the same
error handling as ``noisylab.cli.main`` (exit status 2 and one line on bad input).
"""
from __future__ import annotations

import argparse
import os
import sys
import textwrap
from pathlib import Path

import numpy as np

from .._validation import NoisylabInputError, check_option

__all__ = ["add_report_parser", "check_outputs_not_inputs", "cmd_report", "load_examples", "main"]

_X_KEYS = ("X", "x", "features", "images", "data", "texts", "text", "inputs")
_TRUE_KEYS = ("true_labels", "clean_labels", "y_true")


def add_report_parser(subparsers, formatter_class=argparse.RawDescriptionHelpFormatter):
    """Add the ``report`` subcommand to ``subparsers`` (the result of ``add_subparsers``); return its parser."""
    epilog = "examples:\n" + textwrap.indent(textwrap.dedent("""
        noisylab report --labels labels.npy --pred-probs probs.npy --out report.html
        noisylab report --labels noisy.npz --true-labels noisy.npz --pred-probs probs.npy --data digits \\
            --runs runs/noisy runs/cl --table cl_cifar10.md --out report.html

        Writes ONE self-contained HTML file (figures embedded, no network access) and a Markdown
        twin (default: the same name with .md, figures in NAME_files/). Labels and pred_probs as for
        find-issues. --true-labels: labels file, or the .npz of `noisylab noise` (its true_labels).
        --data: .npy/.npz arrays (images (n,H,W), (n,C,H,W), (n,H,W,C); sequences (n,C,L); feature
        rows (n,d); strings), .txt (one text per line), .csv (feature rows), or a data set name/path
        as for `noisylab train` (needs noisylab[torch]). --runs: output folders of `noisylab train`.
        Needs matplotlib: pip install "noisylab[report]".
    """).strip(), "  ")
    rp = subparsers.add_parser(
        "report", formatter_class=formatter_class, help="an HTML report (+ Markdown twin) of label issues",
        description="Find label issues with confident learning and write a self-contained HTML report with a "
                    "Markdown twin: data-set summary, estimated (and true) noise matrix, issues per class, "
                    "label-quality histogram, detection figures against ground truth, training curves of "
                    "compared methods, the most suspicious examples shown as they are, benchmark tables.",
        epilog=epilog)
    rp.add_argument("--labels", required=True, help="file with the given labels")
    rp.add_argument("--pred-probs", required=True, help="file with the (n, K) out-of-sample predicted probabilities")
    rp.add_argument("--true-labels", help="file with the true labels (enables the detection figures)")
    rp.add_argument("--classes", help="class names of the pred_probs columns, in order: comma list or a file")
    rp.add_argument("--data", help="the examples: .npy/.npz/.txt/.csv file or a data set name/path")
    rp.add_argument("--runs", nargs="+", default=[], metavar="DIR", help="`noisylab train` output folders to compare")
    rp.add_argument("--table", nargs="+", default=[], metavar="FILE.md", help="markdown tables to include")
    rp.add_argument("--method", default="prune_by_noise_rate", help="confident-learning filter (default: %(default)s)")
    rp.add_argument("--rank-by", default="self_confidence", help="label-quality score (default: %(default)s)")
    rp.add_argument("--top", type=int, default=24, help="suspected errors to show (default: %(default)s)")
    rp.add_argument("--title", default="Label issues report", help="report title (default: %(default)s)")
    rp.add_argument("--out", required=True, help="the HTML file to write (atomically)")
    rp.add_argument("--md", help="the Markdown twin (default: --out with .md)")
    rp.add_argument("--no-md", action="store_true", help="write the HTML file only")
    rp.set_defaults(report_func=cmd_report)
    return rp


def check_outputs_not_inputs(outputs, inputs) -> None:
    """Refuse, before any work, an output file that is one of the input files (it would be overwritten).

    Paths are compared after resolving them (``./x``, ``x``, an absolute path and a
    symbolic link to the same file are equal) and, where both exist, with
    :func:`os.path.samefile` (hard links, case-insensitive file systems).

    Parameters
    ----------
    outputs : iterable of (str, path-like or None)
        ``(flag, path)`` of every file the command will write, e.g. ``("--md", "r.md")``;
        ``None`` paths are skipped.
    inputs : iterable of (str, path-like or None)
        ``(flag, path)`` of every file the command reads; ``None`` and paths that are not
        existing files (a comma list of class names, a data set name) are skipped.

    Raises
    ------
    NoisylabInputError
        Naming both flags and the path.

    Examples
    --------
    >>> check_outputs_not_inputs([("--out", "issues.csv")], [("--labels", "no-such-file.csv")])
    """
    files = []
    for flag, p in inputs:
        if p is None:
            continue
        path = Path(p)
        if path.is_file():
            files.append((flag, path, path.resolve()))
    for oflag, o in outputs:
        if o is None:
            continue
        out = Path(o)
        res = out.resolve()
        for iflag, path, ires in files:
            same = res == ires
            if not same and out.exists():
                try:
                    same = os.path.samefile(out, path)
                except OSError:
                    same = False
            if same:
                raise NoisylabInputError(f"{oflag} {out} is the input file {iflag} {path}; writing it would "
                                         f"overwrite that input. Give {oflag} another file name.")


def _code(name) -> str:
    """A file name for the Markdown subset: a code span, or escaped text when it holds a backtick."""
    name = " ".join(str(name).split())
    if "`" in name or not name:
        from ._markdown import escape_markdown

        return escape_markdown(name)
    return f"`{name}`"


def _parse_classes(spec):
    from ..io import parse_class_names

    return parse_class_names(spec)


def _read_true_labels(path):
    from ..io import _check_file, read_labels

    p = _check_file(path)
    if p.suffix.lower() == ".npz":
        with np.load(p, allow_pickle=False) as z:
            for key in _TRUE_KEYS:
                if key in z.files:
                    return np.asarray(z[key])
    return read_labels(p).values


def load_examples(spec, n):
    """The examples for ``--data``: ``(X, class names or None)``; ``X`` must have ``n`` rows."""
    from ..io import read_matrix

    p = Path(spec)
    names = None
    ext = p.suffix.lower()
    if p.is_file() and ext in (".npy", ".npz", ".txt", ".csv", ".tsv", ".json"):
        try:
            if ext == ".npy":
                X = np.load(p, allow_pickle=False)
            elif ext == ".npz":
                with np.load(p, allow_pickle=False) as z:
                    keys = [k for k in _X_KEYS if k in z.files]
                    if not keys and len(z.files) != 1:
                        raise NoisylabInputError(f"{p} holds arrays {list(z.files)}; expected one named "
                                                 f"{' or '.join(_X_KEYS)} for the examples.")
                    X = np.asarray(z[keys[0] if keys else z.files[0]])
                    if "class_names" in z.files:
                        names = [str(c) for c in z["class_names"].tolist()]
            elif ext == ".txt":
                X = np.asarray(p.read_text(encoding="utf-8").splitlines(), dtype=object)
            elif ext == ".json":
                import json

                obj = json.loads(p.read_text(encoding="utf-8"))
                if not isinstance(obj, list):
                    raise NoisylabInputError(f"{p}: expected a JSON list of examples.")
                X = np.asarray(obj, dtype=object if obj and isinstance(obj[0], str) else None)
            else:
                X = read_matrix(p)
        except NoisylabInputError:
            raise
        except (OSError, ValueError) as exc:
            raise NoisylabInputError(f"Could not read the examples from {p}: {exc}") from None
    elif p.is_file():
        raise NoisylabInputError(f"Unsupported --data file type {ext!r} ({p}); use .npy, .npz, .txt, .csv or .json, "
                                 "or a data set name.")
    else:
        try:
            from ..torch.data import get_dataset
        except ImportError as exc:
            if p.exists() or "/" in str(spec) or p.suffix:
                raise NoisylabInputError(f"--data {spec}: {exc}") from None
            raise NoisylabInputError(f"--data {spec!r} is not a file; data set names need the PyTorch layer: {exc}") \
                from None
        ds = get_dataset(str(spec))
        X = ds.X
        names = list(ds.class_names) if ds.class_names is not None else None
    if X.ndim == 0 or X.shape[0] != n:
        raise NoisylabInputError(f"--data {spec} has {X.shape[0] if X.ndim else 0} examples but the labels have {n}; "
                                 "they must be in the same order, one per label.")
    return X, names


def _read_table(path):
    from ..io import _check_file

    p = _check_file(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise NoisylabInputError(f"could not read the table {p}: {exc}") from None
    lines = text.strip().splitlines()
    title = p.stem
    if lines and lines[0].startswith("#"):
        title = lines[0].lstrip("#").strip() or title
        lines = lines[1:]
    body = "\n".join(lines).strip()
    if "|" not in body:
        raise NoisylabInputError(f"{p} holds no Markdown table (lines like | a | b | with a |---|---| separator).")
    return title, body


def cmd_report(args) -> int:
    """Run ``noisylab report`` (raises NoisylabInputError on bad input)."""
    from ..detect import FILTER_METHODS, RANKING_METHODS, ConfidentLearning
    from ..io import encode_labels, read_labels, read_pred_probs
    from .builder import load_runs, report_from_find_issues

    method = check_option("method", args.method, FILTER_METHODS)
    rank_by = check_option("rank-by", args.rank_by, RANKING_METHODS)
    if args.top < 1:
        raise NoisylabInputError(f"--top must be >= 1; got {args.top}.")
    out = Path(args.out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise NoisylabInputError(f"--out must be an .html file; got {out.name!r}.")
    md = None if args.no_md else Path(args.md) if args.md else out.with_suffix(".md")
    from ..io import check_output_path

    for p in (out, md):
        if p is not None:
            check_output_path(p)
    if md is not None and md.resolve() == out.resolve():
        raise NoisylabInputError(f"--md must name another file than --out; got {md} twice.")
    inputs = [("--labels", args.labels), ("--pred-probs", args.pred_probs), ("--true-labels", args.true_labels),
              ("--classes", args.classes), ("--data", args.data)]
    inputs += [("--table", t) for t in args.table]
    inputs += [("--runs", Path(d) / name) for d in args.runs for name in ("history.json", "result.json")]
    check_outputs_not_inputs([("--out", out), ("--md", md)], inputs)
    lab = read_labels(args.labels)
    P = np.asarray(read_pred_probs(args.pred_probs, mmap=False))
    if P.ndim != 2:
        raise NoisylabInputError(f"{args.pred_probs} must hold an (n, K) matrix; got shape {P.shape}.")
    if lab.values.ndim != 1 or lab.values.shape[0] != P.shape[0]:
        raise NoisylabInputError(f"{args.labels} has {lab.values.shape[0]} labels but {args.pred_probs} has "
                                 f"{P.shape[0]} rows.")
    classes = _parse_classes(args.classes)
    if classes is not None:
        from .builder import check_unique_names

        check_unique_names(classes.tolist(), "--classes")
    n, K = P.shape
    if classes is not None and classes.dtype.kind in "US" and lab.values.dtype.kind in "iu":
        # integer labels with class names: the names label the columns 0..K-1 (display only)
        if len(classes) != K:
            raise NoisylabInputError(f"--classes names {len(classes)} classes but pred_probs has {K} columns.")
        codes, names = encode_labels(lab.values)
        classes = None
        display_names = [str(c) for c in _parse_classes(args.classes).tolist()]
    else:
        codes, names = encode_labels(lab.values, classes)
        display_names = None
    if names is not None and len(names) != K:
        raise NoisylabInputError(f"the labels name {len(names)} classes {names[:10].tolist()} but pred_probs has {K} "
                                 "columns; pass --classes with the class of every column, in order.")
    true = None
    if args.true_labels:
        tv = _read_true_labels(args.true_labels)
        if tv.ndim != 1 or tv.shape[0] != n:
            raise NoisylabInputError(f"{args.true_labels} has {tv.shape[0] if tv.ndim else 0} true labels but "
                                     f"{args.labels} has {n} labels.")
        true, _ = encode_labels(tv, names if names is not None else classes)
    X, data_names = (None, None)
    if args.data:
        X, data_names = load_examples(args.data, n)
    runs = load_runs(args.runs) if args.runs else []
    tables = [_read_table(t) for t in args.table]
    display = (display_names if display_names is not None else names if names is not None
               else classes if classes is not None else data_names)
    if display is not None and len(display) != K:
        display = None
    cl = ConfidentLearning(filter_by=method, rank_by=rank_by).fit(codes, P)
    subtitle = (f"{n} examples, {K} classes; label issues by confident learning ({method}), "
                f"ranked by {rank_by}")
    try:
        rep = report_from_find_issues(codes, P, cl.issue_mask_, cl.label_quality_, X=X, true_labels=true,
                                      class_names=None if display is None else [str(c) for c in display],
                                      title=args.title, k=args.top, subtitle=subtitle)
        inputs = [f"- labels: {_code(Path(args.labels).name)}", f"- pred_probs: {_code(Path(args.pred_probs).name)}"]
        if args.true_labels:
            inputs.append(f"- true labels: {_code(Path(args.true_labels).name)}")
        if args.data:
            inputs.append(f"- examples: {_code(Path(args.data).name)}")
        rep.add_text("\n".join(inputs), title="Inputs")
        if runs:
            rep.add_training_curves(runs)
        for title, body in tables:
            rep.add_table(body, title)
        written = rep.write(out, md)
    except ImportError as exc:  # matplotlib missing
        raise NoisylabInputError(str(exc)) from None
    msg = f"Wrote {written['html']} ({len(rep.figures)} figures, {len(rep.sections)} sections)"
    if written["markdown"] is not None:
        folder = written["markdown"].with_name(written["markdown"].stem + "_files")
        msg += f" and {written['markdown']} (figures in {folder}/)"
    print(msg + f". {cl.n_issues_} of {n} examples flagged as label issues.")
    return 0


def main(argv=None) -> int:
    """``noisylab report ...`` on its own (same exit codes as ``noisylab.cli.main``)."""
    parser = argparse.ArgumentParser(prog="noisylab")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_report_parser(sub, argparse.RawDescriptionHelpFormatter)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.report_func(args)
    except NoisylabInputError as exc:
        print(f"noisylab {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
