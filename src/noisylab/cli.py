"""The ``noisylab`` command line: a thin layer over the Python API.

Every subcommand builds the same objects as the API, validates its input once
and exits with status 2 and a one-line message on bad input (no traceback).
"""
from __future__ import annotations

import argparse
import csv
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np

from . import __version__
from ._format import format_matrix, markdown_table
from ._pretrained import PRETRAINED
from ._validation import NoisylabInputError, check_option

EXIT_BAD_INPUT = 2
#: ``--progress auto`` shows progress bars from this many values of pred_probs on.
PROGRESS_MIN_VALUES = 1 << 26
#: Rows converted to Python objects at a time when writing CSV.
CSV_BLOCK_ROWS = 1 << 16


def _examples(text: str) -> str:
    return "examples:\n" + textwrap.indent(textwrap.dedent(text).strip(), "  ")


def _parser() -> argparse.ArgumentParser:
    from .detect import FILTER_METHODS, RANKING_METHODS
    from .noise import NOISE_KINDS

    fmt = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser(
        prog="noisylab", formatter_class=fmt,
        description="Learning with noisy labels: synthesize label noise, find label errors, benchmark.",
        epilog=_examples("""
            noisylab demo
            noisylab find-issues --labels labels.npy --pred-probs pred_probs.npy --out issues.csv
            noisylab noise --labels labels.npy --kind symmetric --rate 0.2 --seed 0 --out noisy.npz
            noisylab bench cl-cifar10 --data ../shared/data/cl-cifar10
        """))
    p.add_argument("--version", action="version", version=f"noisylab {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    p._subparsers_by_name = sub.choices  # name -> subparser, for error messages

    fi = sub.add_parser(
        "find-issues", formatter_class=fmt, help="find label errors with confident learning",
        description="Find label errors from given labels and out-of-sample predicted probabilities "
                    "(confident learning). Writes one row per example ordered by severity and prints a summary.",
        epilog=_examples("""
            noisylab find-issues --labels labels.npy --pred-probs pred_probs.npy --out issues.csv
            noisylab find-issues --labels train_labels.json --pred-probs probs.npz --method both
            noisylab find-issues --labels labels.csv --pred-probs probs.csv --classes cat,dog,fish
            noisylab find-issues --labels p.labels.npz --pred-probs p.npy --keep-mask keep.npy  # for train

            noisylab find-issues --labels labels.npy --pred-probs huge.npy --out issues.csv --progress always
            noisylab find-issues --labels labels.npy --pred-probs /shared/probs.npy --dask-scheduler tcp://host:8786

            Labels: .npy, .npz, .csv (label or id,label columns), .json (list, or {path: label} as in
            the CL paper); integers or class names (kept as given in the output). pred_probs: .npy
            (memory-mapped), .npz or .csv, shape (n, K). Output columns: index, [id,] given_label,
            suggested_label, label_quality (lower = more likely wrong), is_issue.

            Large inputs: a .npy file is memory-mapped and read in row blocks, so memory stays bounded
            (about 60 bytes per example plus a few MB) however large the file is; progress is shown
            for inputs of 64M values or more (--progress). With --dask-scheduler the passes run on a
            dask.distributed cluster whose workers read the .npy file themselves (same path on every
            worker); results are identical to the local run. Needs the extra: pip install "noisylab[dask]".
        """))
    fi.add_argument("--labels", required=True, help="file with the given labels")
    fi.add_argument("--pred-probs", required=True, help="file with the (n, K) out-of-sample predicted probabilities")
    fi.add_argument("--method", default="prune_by_noise_rate",
                    help=f"filter: {', '.join(FILTER_METHODS)} (default: %(default)s)")
    fi.add_argument("--rank-by", default="self_confidence",
                    help=f"label-quality score: {', '.join(RANKING_METHODS)} (default: %(default)s)")
    fi.add_argument("--classes", help="class names of the pred_probs columns, in order: comma list or a file "
                                      "with one per line (default: sorted label names)")
    fi.add_argument("--frac-noise", type=float, default=1.0, help="flag only this fraction of the estimated noise")
    fi.add_argument("--min-examples-per-class", type=int, default=1,
                    help="never prune a class below this many examples (default: %(default)s)")
    fi.add_argument("--num-to-remove-per-class", help="comma list of K counts (pruning filters only)")
    fi.add_argument("--out", help="CSV file for the per-example results (written atomically)")
    fi.add_argument("--keep-mask", help="boolean .npy, True = not an issue: the train mask of `noisylab train "
                                        "--train-mask` (the CL paper's --dir-train-mask)")
    fi.add_argument("--report", help="also write an HTML report (noise matrix, issues per class, score "
                                     "histogram) and its Markdown twin")
    fi.add_argument("--top", type=int, default=10, help="issues to print in the summary (default: %(default)s)")
    fi.add_argument("--progress", default="auto", choices=("auto", "always", "never"),
                    help="progress bars on stderr; auto = for inputs of 64M values or more (default: %(default)s)")
    fi.add_argument("--dask-scheduler", metavar="ADDRESS",
                    help="run on this dask.distributed scheduler (e.g. tcp://host:8786); .npy pred_probs only")
    fi.add_argument("--rows-per-block", type=int, default=262144,
                    help="rows per Dask block with --dask-scheduler (default: %(default)s)")

    nz = sub.add_parser(
        "noise", formatter_class=fmt, help="synthesize label noise",
        description="Add synthetic label noise to clean labels; writes the noisy labels and the flip mask.",
        epilog=_examples("""
            noisylab noise --labels labels.npy --kind symmetric --rate 0.4 --seed 1 --out noisy.npz
            noisylab noise --labels labels.npy --kind pair --rate 0.45 --exact --out noisy.csv
            noisylab noise --labels labels.npy --kind cifar10 --rate 0.4 --out noisy.npz
            noisylab noise --labels labels.npy --kind class_map --map 7:1,3:8 --rate 0.3 --out noisy.npz
            noisylab noise --labels labels.npy --kind matrix --matrix T.npy --out noisy.npz
            noisylab noise --labels labels.npy --kind matrix --trace 8 --sparsity 0.4 --seed 0 --out noisy.npz
            noisylab noise --labels labels.npy --kind matrix --matrix T.npy --sampling floor --out noisy.npz

            symmetric: flip to a different class w.p. rate; uniform: resample over all classes w.p. rate
            (changes rate*(K-1)/K); pair: y -> y+1 mod K; cifar10: truck->automobile, bird->airplane,
            cat<->dog, deer->horse; cifar100: next class in the superclass; matrix: P(noisy|true), columns
            = true class, given (--matrix) or drawn at random with a trace and sparsity (the CL paper's
            construction, valid_noise_matrix=False as it used unless --valid; an independent generator:
            its diagonal is Dirichlet(1)*trace conditioned on the bounds, see
            generate_noise_matrix_from_trace). --sampling floor gives the CL paper's exact counts
            (floor(T[s, y] * n_y) per cell).
            Output: .npz (noisy_labels, true_labels, flip_mask, noise_matrix, transition_matrix),
            .csv (index,true_label,noisy_label,flipped) or .json ({id: noisy label} for JSON input).
        """))
    nz.add_argument("--labels", required=True, help="file with the clean labels")
    nz.add_argument("--kind", required=True, help=f"one of {', '.join(NOISE_KINDS)}")
    nz.add_argument("--rate", type=float, help="noise rate (all kinds but matrix)")
    nz.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    nz.add_argument("--exact", action="store_true",
                    help="exact per-cell counts: the changed fraction equals the expected one within one example "
                         "(= --sampling exact)")
    nz.add_argument("--sampling", choices=("per_example", "exact", "floor"),
                    help="per_example (independent draws, default), exact (--exact) or floor (matrix kind: the CL "
                         "paper's floor(T[s, y] * n_y) per cell)")
    nz.add_argument("--valid", action="store_true",
                    help="matrix kind with --trace: redraw until the matrix is learnable (the CL paper did not)")
    nz.add_argument("--n-classes", type=int, help="number of classes (default: from the labels)")
    nz.add_argument("--map", help="class_map kind: comma list source:target, e.g. 7:1,3:8")
    nz.add_argument("--matrix", help="matrix kind: .npy/.csv K x K noise matrix P(noisy|true)")
    nz.add_argument("--trace", type=float, help="matrix kind without --matrix: trace of the random matrix")
    nz.add_argument("--sparsity", type=float,
                    help="matrix kind with --trace: fraction of zero off-diagonal noise rates (default: 0)")
    nz.add_argument("--out", required=True, help="output file (.npz, .csv or .json), written atomically")

    de = sub.add_parser(
        "demo", formatter_class=fmt, help="the CL paper's pipeline end to end on digits (or MNIST-1D)",
        description="The confident-learning pipeline on a built-in data set: synthesize noise on the training "
                    "labels, compute out-of-fold probabilities with a small CNN, find the label issues, prune "
                    "them and retrain; prints detection precision/recall against the known flips and the test "
                    "accuracy of training on the noisy, the pruned and the clean labels.",
        epilog=_examples("""
            noisylab demo                                   # digits, small CNN, about 15 s
            noisylab demo --dataset mnist1d                 # 4000/1000 MNIST-1D, 1-D CNN, under a minute
            noisylab demo --noise-rate 0.4 --kind pair --method both --seed 3
            noisylab demo --model logreg                    # scikit-learn logistic regression, a few seconds
        """))
    de.add_argument("--dataset", default="digits", help="digits or mnist1d (default: %(default)s)")
    de.add_argument("--model", help="network (default: small_cnn for digits, cnn1d for mnist1d) or logreg")
    de.add_argument("--epochs", type=int, help="training epochs (default: per data set)")
    de.add_argument("--quick", action="store_true", help="fewer epochs and examples (a smoke run)")
    de.add_argument("--noise-rate", type=float, default=0.3, help="default: %(default)s")
    de.add_argument("--kind", default="symmetric", help="noise kind (default: %(default)s)")
    de.add_argument("--method", default="prune_by_noise_rate", help="filter (default: %(default)s)")
    de.add_argument("--folds", type=int, default=4, help="cross-validation folds (default: %(default)s)")
    de.add_argument("--seed", type=int, default=0, help="default: %(default)s")

    cv = sub.add_parser(
        "cv-probs", formatter_class=fmt, help="out-of-fold predicted probabilities (needs noisylab[torch])",
        description="Stratified K-fold out-of-fold predicted probabilities of a model on a data set: every row "
                    "comes from a model that did not see it. Each finished fold is saved, so an interrupted run "
                    "resumes; one fold can run alone (--fold) on another machine and the folds are combined "
                    "afterwards (--combine).",
        epilog=_examples("""
            noisylab cv-probs --dataset digits --model small_cnn --folds 4 --noise symmetric:0.3 --out probs.npy
            noisylab cv-probs --dataset mnist1d --model cnn1d --folds 4 --fold 2 --out probs.npy   # one fold
            noisylab cv-probs --dataset mnist1d --model cnn1d --folds 4 --combine --out probs.npy
            noisylab cv-probs --dataset data/cifar10_png --labels noisy_labels.json --model preact_resnet18 \\
                --epochs 150 --folds 4 --out probs.npy   # {path: label} JSON matched to train/<class>/<file>

            The CL paper's pipeline (the rows are train's training split, so the mask fits):
              noisylab cv-probs --dataset digits --noise symmetric:0.4 --out p.npy
              noisylab find-issues --labels p.labels.npz --pred-probs p.npy --keep-mask keep.npy
              noisylab train --dataset digits --noise symmetric:0.4 --train-mask keep.npy --out runs/pruned

            --dataset: digits, mnist1d, gaussian, or a path (CIFAR pickle folder, image folder, .npz/.csv).
            --model: logreg (scikit-learn) or a noisylab.torch model (mlp, cnn1d, small_cnn, coteaching_cnn,
            resnet32, preact_resnet18). Fold files go to OUT.folds/ (--folds-dir); with --noise the noisy
            labels and the flip mask are written to OUT.labels.npz.
        """))
    cv.add_argument("--dataset", required=True, help="data set name or path")
    cv.add_argument("--model", default="auto", help="model name (default: %(default)s = by input shape)")
    cv.add_argument("--labels", help="labels file to use instead of the data set's (e.g. the CL paper's JSON)")
    cv.add_argument("--noise", help="synthesize noise on the labels first: KIND:RATE, e.g. symmetric:0.3")
    cv.add_argument("--folds", type=int, default=4, help="number of folds (default: %(default)s)")
    cv.add_argument("--fold", type=int, help="run only this fold (0-based) and save it")
    cv.add_argument("--combine", action="store_true", help="combine the saved folds into --out")
    cv.add_argument("--folds-dir", help="where fold files go (default: OUT.folds)")
    cv.add_argument("--epochs", type=int, default=20, help="default: %(default)s")
    cv.add_argument("--lr", type=float, help="Adam learning rate (default: the model's: 1e-2 for small_cnn and cnn1d, "
                                            "1e-3 for the others)")
    cv.add_argument("--batch-size", type=int, default=64, help="default: %(default)s")
    cv.add_argument("--optimizer", default="adam", help="sgd, adam or adamw (default: %(default)s)")
    cv.add_argument("--augment", help="augmentation preset (e.g. cifar, digits, mnist1d)")
    cv.add_argument("--test-size", type=float, default=0.3,
                    help="test fraction held out (as `train` does) when the data set has no fixed test split; the "
                         "probabilities cover the training rows only (default: %(default)s)")
    cv.add_argument("--seed", type=int, default=0, help="seeds the split, the noise and the models (default: 0)")
    cv.add_argument("--n-jobs", type=int, default=1, help="folds in parallel processes (default: %(default)s)")
    cv.add_argument("--dask-scheduler", metavar="ADDRESS", help="fit the folds on this dask.distributed cluster")
    cv.add_argument("--out", required=True, help=".npy file for the (n, K) probabilities (written atomically)")

    tr = sub.add_parser(
        "train", formatter_class=fmt, help="train a model on (noisy, possibly pruned) labels (needs noisylab[torch])",
        description="Train a network on a data set's training split with a noisy-label method (--method), from given or "
                    "synthesized noisy labels and optionally only on the examples of a boolean train mask (the CL "
                    "paper's --train-labels / --dir-train-mask). The model is selected on a held-out NOISY "
                    "validation split, never on the test set; the last-epoch accuracy is reported too. Writes "
                    "history.json/.csv and result.json to --out; a killed run resumes from --out/checkpoint.",
        epilog=_examples("""
            noisylab train --dataset digits --noise symmetric:0.4 --epochs 30 --out runs/noisy
            noisylab train --dataset digits --noise symmetric:0.4 --train-mask keep.npy --out runs/pruned
            noisylab train --dataset mnist1d --noise pair:0.4 --method coteaching --epochs 40 --out runs/ct
            noisylab train --dataset mnist1d --noise pair:0.4 --method forward --out runs/fw   # true T of the noise
            noisylab train --dataset data/cifar10_png --labels cifar10_noisy_labels.json \\
                --train-mask cifar10_train_mask.npy --model preact_resnet18 --augment cifar --epochs 150 --out runs/cl

            --labels: .npy/.csv/.json in the training rows' order; the CL paper's {path: label} JSON is matched
            to an image folder's files by path (train/<class>/<file>; refused for CIFAR pickles and arrays, whose
            rows have no paths); --train-mask: a boolean .npy with one entry per training example in the data
            set's row order (True = train on it).
        """))
    tr.add_argument("--dataset", required=True, help="data set name or path")
    tr.add_argument("--labels", help="training labels file (instead of the data set's), in the training rows' order; "
                                     "a {path: label} JSON is matched to an image folder's files by path")
    tr.add_argument("--noise", help="synthesize noise on the training labels: KIND:RATE")
    tr.add_argument("--train-mask", help="boolean .npy: train only on these examples (one entry per training row, in "
                                         "the data set's row order: image folders sorted by class then path)")
    tr.add_argument("--method", default="standard",
                    help="standard (cross-entropy), clean (cross-entropy on the true labels: the ceiling), clean_subset "
                         "(cross-entropy on the correctly labelled rows only: the ceiling of sample selection; "
                         "clean and clean_subset need the ground truth, i.e. --noise), mixup, "
                         "coteaching, coteaching_plus, incv, cl_coteaching (CL pruning + Co-teaching with class "
                         "weights), mentormix, mentormix_percentile, l2r, ieg (both with a clean probe), forward "
                         "(forward loss correction with the true noise matrix of --noise or --transition FILE), "
                         "forward_anchor, forward_cl (T from anchor points / confident learning), bootstrap_soft, "
                         "bootstrap_hard (default: %(default)s)")
    tr.add_argument("--probe-per-class", type=int, default=10,
                    help="l2r / ieg: clean probe examples per class held out of training (default: %(default)s)")
    tr.add_argument("--forget-rate", type=float,
                    help="Co-teaching's forget rate (default: the rate of --noise)")
    tr.add_argument("--transition", help="forward: K x K noise matrix P(noisy=row | true=column) (.npy/.csv)")
    tr.add_argument("--model", default="auto", help="model name (default: by input shape)")
    tr.add_argument("--epochs", type=int, default=20, help="default: %(default)s")
    tr.add_argument("--lr", type=float, help="learning rate (default: the model's: 1e-2 for small_cnn and cnn1d, "
                                            "1e-3 for the others)")
    tr.add_argument("--batch-size", type=int, default=64, help="default: %(default)s")
    tr.add_argument("--optimizer", default="adam", help="sgd, adam or adamw (default: %(default)s)")
    tr.add_argument("--schedule", default="cosine", help="constant, cosine, step, linear_decay (default: %(default)s)")
    tr.add_argument("--milestones", help="step schedule: comma-separated 0-based epochs at which the lr is multiplied "
                                         "by --gamma, e.g. 50,75 (default with --schedule step: 50%% and 75%% of "
                                         "--epochs)")
    tr.add_argument("--gamma", type=float, default=0.1, help="step schedule decay factor (default: %(default)s)")
    tr.add_argument("--decay-start", type=int, default=0,
                    help="linear_decay schedule: first epoch of the decay (default: %(default)s)")
    tr.add_argument("--augment", help="augmentation preset")
    tr.add_argument("--val-fraction", type=float, default=0.1, help="noisy validation split (default: %(default)s)")
    tr.add_argument("--test-size", type=float, default=0.3,
                    help="test fraction when the data set has no fixed test split (default: %(default)s)")
    tr.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    tr.add_argument("--progress", action="store_true", help="show a progress bar")
    tr.add_argument("--out", required=True, help="output folder")
    tr.add_argument("--report", help="also write an HTML report (training curves) and its Markdown twin")

    dt = sub.add_parser(
        "detect", formatter_class=fmt, help="rank label errors with AUM, the LSTM detector, dynamics baselines or CL",
        description="Score every training example (label quality, HIGHER = label more likely correct) with a "
                    "detector: on a training-dynamics recording (--dynamics, from DynamicsRecorder) or on a data "
                    "set (--dataset; the needed trainings are run). With ground truth (synthesized --noise, or a "
                    "recording made with true labels) prints AUROC / AP. --remove / --repair retrain without / "
                    "with repaired labels for the lowest-quality fraction and report the test accuracy.",
        epilog=_examples("""
            noisylab detect --method lstm --dynamics run.npy --out scores.csv
            noisylab detect --method aum --dataset digits --noise symmetric:0.4 --remove 0.4 --out aum.csv
            noisylab detect --method lstm --dataset mnist1d --noise pair:0.4 --seed 1 --repair 0.2
        """))
    dt.add_argument("--method", required=True,
                    help="aum, lstm, lstm_margin, confidence, margin, forgetting, mean_loss, cl or combined")
    dt.add_argument("--dynamics", help="a DynamicsRecorder .npy recording (with its .meta.npz)")
    dt.add_argument("--dataset", help="data set name or path (runs the trainings the method needs)")
    dt.add_argument("--noise", help="synthesize noise on the data set's labels: KIND:RATE")
    dt.add_argument("--detector", help="LSTM detector file (default: the shipped pretrained one)")
    dt.add_argument("--model", default="auto",
                    help="model for --dataset (default: the detectors bench's model of the data set -- mlp for "
                         "digits, cnn1d for mnist1d -- else by input shape)")
    dt.add_argument("--epochs", type=int, default=30, help="epochs of the trainings for --dataset (default: %(default)s)")
    dt.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate (default: %(default)s)")
    dt.add_argument("--remove", type=float, help="remove this fraction of lowest-quality examples and retrain")
    dt.add_argument("--repair", type=float, help="replace the labels of this fraction by predictions and retrain")
    dt.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    dt.add_argument("--out", help="CSV of per-example scores (written atomically)")

    td = sub.add_parser(
        "train-detector", formatter_class=fmt, help="train the LSTM noise detector on synthesized-noise dynamics",
        description="Record training dynamics (per-epoch probability of the given label, eval pass) of a network "
                    "trained on a data set with synthesized noise, train the LSTM detector (2 layers, 64 units) to "
                    "predict the flips, and save it (a state dict loaded with weights_only=True). The shipped "
                    "detectors are rebuilt by " + " and ".join(f"`{cmd}` ({feat})" for feat, (_f, cmd) in
                                                               PRETRAINED.items())
                    + " (with one thread, as the shipped files were made); this command trains one on any data set.",
        epilog=_examples("""
            noisylab train-detector --dataset mnist1d --noise symmetric:0.3 --out lstm_mnist1d.pt
            noisylab train-detector --dataset digits --noise pair:0.3 --init lstm_mnist1d.pt --out tuned.pt
            noisylab train-detector --noise symmetric:0.3,pair:0.3 --feature margin --out lstm_margin.pt
        """))
    td.add_argument("--dataset", default="mnist1d", help="data set (default: %(default)s)")
    td.add_argument("--noise", default="symmetric:0.3",
                    help="KIND:RATE, or several comma-separated (one recorded training per noise draw; the detector "
                         "learns from all) (default: %(default)s)")
    td.add_argument("--feature", default="label_probability", choices=("label_probability", "margin"),
                    help="detector input per epoch: p(given label) (the paper) or the logit margin (default: "
                         "%(default)s)")
    td.add_argument("--model", default="auto", help="network whose dynamics are recorded (default: by input shape)")
    td.add_argument("--epochs", type=int, default=30, help="epochs of the recorded training (default: %(default)s)")
    td.add_argument("--lr", type=float, default=3e-3, help="Adam lr of the recorded training (default: %(default)s)")
    td.add_argument("--detector-epochs", type=int, default=10, help="default: %(default)s")
    td.add_argument("--init", help="fine-tune this detector file instead of starting from scratch")
    td.add_argument("--seed", type=int, default=0, help="data and noise seed (default: %(default)s)")
    td.add_argument("--out", required=True, help="detector file (.pt)")

    be = sub.add_parser("bench", formatter_class=fmt, help="reproduce published benchmark figures",
                        description="Benchmarks that reproduce published figures.",
                        epilog=_examples("noisylab bench cl-cifar10 --data ../shared/data/cl-cifar10"))
    bsub = be.add_subparsers(dest="bench", metavar="BENCHMARK")
    be._subparsers_action = bsub
    bc = bsub.add_parser(
        "cl-cifar10", formatter_class=fmt, help="every CL filter on the CL paper's CIFAR-10 probabilities",
        description="Precision / recall / F1 of every confident-learning filter on each sparsity*_noise*.npz "
                    "file (the CL paper's cross-validated CIFAR-10 probabilities), as a markdown table.",
        epilog=_examples("""
            noisylab bench cl-cifar10 --data ../shared/data/cl-cifar10
            noisylab bench cl-cifar10 --data DIR --out cl_cifar10.md --dtype native
        """))
    bc.add_argument("--data", help="folder with sparsity*_noise*.npz (default: shared/data/cl-cifar10 nearby)")
    bc.add_argument("--dtype", default="float32",
                    help="compute dtype: float32 (default; the paper's precision), float64, or native (float16)")
    bc.add_argument("--out", help="also write the table to this markdown file (atomically)")

    br = bsub.add_parser(
        "robust", formatter_class=fmt, help="every robust-training method on the INCV paper's noise settings",
        description="The INCV paper's settings (symmetric 0.2 / 0.5 / 0.8, pair 0.4) x every robust-training method x "
                    "3 seeds on MNIST-1D (generated locally), plus the clean-label ceiling: mean ± std test accuracy "
                    "as a markdown table, with the protocol recorded with every number. Results go to a JSONL "
                    "store; a rerun skips finished runs (resume after a kill). Runs in --n-jobs local processes or "
                    "on a Dask cluster. The default grid finishes in under an hour on a 2-core CPU.",
        epilog=_examples("""
            noisylab bench robust                                   # the whole grid, 2 processes
            noisylab bench robust --methods standard,coteaching --seeds 0 --out robust.md
            noisylab bench robust --dask-scheduler tcp://10.0.0.5:8786 --store runs/robust.jsonl
            noisylab bench robust --grid my_grid.toml --report robust.html
        """))
    br.add_argument("--grid", help="grid TOML (default: the shipped grids/robust_mnist1d.toml)")
    br.add_argument("--dataset", help="data set (default: the grid's, mnist1d)")
    br.add_argument("--methods", help="comma-separated methods (default: the grid's)")
    br.add_argument("--noises", help="comma-separated KIND:RATE settings (default: the grid's)")
    br.add_argument("--seeds", help="comma-separated seeds (default: 0,1,2)")
    br.add_argument("--epochs", type=int, help="epochs of every training (default: the grid's)")
    br.add_argument("--n-train", type=int, help="MNIST-1D training size (default: the grid's)")
    br.add_argument("--model", help="model name (default: the grid's)")
    _bench_run_options(br, "bench_results/robust.jsonl")

    bg = bsub.add_parser(
        "run", formatter_class=fmt, help="run any benchmark grid (TOML) into a result store",
        description="Run the grid points of a TOML grid file that are not yet in the JSONL result store (resumable), "
                    "in local processes or on a Dask cluster, and print the table.",
        epilog=_examples("""
            noisylab bench run grid.toml --store results.jsonl --n-jobs 2 --rows method --cols noise
        """))
    bg.add_argument("grid", help="grid TOML file")
    bg.add_argument("--rows", default="method", help="comma-separated spec fields of the table rows (default: %(default)s)")
    bg.add_argument("--cols", default="noise", help="comma-separated spec fields of the columns (default: %(default)s)")
    bg.add_argument("--value", default="test_acc", help="result field shown (default: %(default)s)")
    bg.add_argument("--scale", type=float, default=100.0, help="multiply values by this (default: %(default)s)")
    _bench_run_options(bg, None)

    bres = bsub.add_parser(
        "results", formatter_class=fmt, help="tables from a result store",
        description="Render a markdown table (mean ± std over the other fields, e.g. seeds) from a JSONL result store.",
        epilog=_examples("""
            noisylab bench results bench_results/robust.jsonl
            noisylab bench results results.jsonl --rows method --cols noise --value test_acc_last
        """))
    bres.add_argument("store", help="JSONL result store")
    bres.add_argument("--rows", help="comma-separated row fields (default: method; a store of one robust or "
                                     "detectors bench without --rows/--cols/--value/--scale gets its full report)")
    bres.add_argument("--cols", help="comma-separated column fields (default: noise)")
    bres.add_argument("--value", help="result field shown (default: test_acc)")
    bres.add_argument("--scale", type=float, help="multiply values by this (default: 100)")
    bres.add_argument("--out", help="also write the markdown to this file (atomically)")
    bres.add_argument("--report", help="also write an HTML report (and its Markdown twin) to this file")
    bres.add_argument("--all-protocols", action="store_true",
                      help="average every record of a table cell, also those of earlier protocols (default: only the "
                           "protocol of the cell's newest record)")

    bt = bsub.add_parser(
        "incv-theory", formatter_class=fmt, help="INCV's understanding experiment (Verify_Theory)",
        description="Train on one noisy half, test on the other, across noise rates: the measured test accuracy "
                    "w.r.t. the noisy labels, label precision and label recall of the selection 'prediction == "
                    "noisy label' next to the INCV paper's formulas, and the confusion matrix next to the true "
                    "transition matrix (in --report).",
        epilog=_examples("""
            noisylab bench incv-theory --dataset mnist1d --kind symmetric --report theory.html
            noisylab bench incv-theory --dataset digits --kind pair --rates 0.1,0.2,0.3,0.4 --epochs 40
        """))
    bt.add_argument("--dataset", default="mnist1d", help="data set (default: %(default)s)")
    bt.add_argument("--kind", default="symmetric,pair", help="symmetric and/or pair (default: %(default)s)")
    bt.add_argument("--rates", default="0,0.2,0.4,0.6,0.8", help="noise rates (default: %(default)s)")
    bt.add_argument("--model", default="auto", help="model (default: by input shape)")
    bt.add_argument("--epochs", type=int, default=40, help="default: %(default)s")
    bt.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate, cosine schedule (default: %(default)s)")
    bt.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    bt.add_argument("--out", help="also write the markdown to this file (atomically)")
    bt.add_argument("--report", help="also write an HTML report (and its Markdown twin) to this file")

    bd = bsub.add_parser(
        "detectors", formatter_class=fmt, help="label-error detectors against the true flips (AUROC, AP, retrain)",
        description="AUROC and average precision of confident learning (cross-validated probabilities), AUM, the "
                    "training-dynamics baselines and the shipped pretrained LSTM detector on digits and MNIST-1D, "
                    "symmetric 0.2 / 0.4 and pair 0.4, seeds 1-3 (noise draws the detector never saw), plus "
                    "remove-and-retrain against training on the noisy labels. Resumable, parallel, Dask.",
        epilog=_examples("""
            noisylab bench detectors --report detectors.html
            noisylab bench detectors --datasets digits --noises symmetric:0.4 --seeds 1 --retrain none
        """))
    bd.add_argument("--grid", help="grid TOML (default: the shipped grids/detectors.toml)")
    bd.add_argument("--datasets", help="comma-separated data sets (default: digits,mnist1d)")
    bd.add_argument("--noises", help="comma-separated KIND:RATE (default: the grid's)")
    bd.add_argument("--seeds", help="comma-separated seeds (default: 1,2,3)")
    bd.add_argument("--methods", help="comma-separated detectors (default: all)")
    bd.add_argument("--epochs", type=int, help="epochs of the recorded training (default: the grid's)")
    bd.add_argument("--n-train", type=int, help="MNIST-1D training size (default: 4000)")
    bd.add_argument("--retrain", help="remove-and-retrain fraction: a number, nominal (default), auto or none")
    bd.add_argument("--repair", help="label-repair fraction (the lowest-quality rows get the model's predicted "
                                     "label, then retrain): a number, nominal (default), auto or none")
    bd.add_argument("--retrain-repeats", type=int, help="trainings (training seeds) per retraining, averaged "
                                                        "(default: the grid's, 3)")
    _bench_run_options(bd, "bench_results/detectors.jsonl")

    bdoc = bsub.add_parser(
        "docs", formatter_class=fmt, help="regenerate docs/RESULTS.md from the result stores",
        description="Write docs/RESULTS.md: the confident-learning filters on the CL paper's CIFAR-10 probabilities "
                    "(computed now), the robust-training and detector benchmarks (read from their stores), each "
                    "next to the published figures, clearly labelled.",
        epilog=_examples("noisylab bench docs --results bench_results --out docs/RESULTS.md"))
    bdoc.add_argument("--results", default="bench_results", help="folder of the result stores (default: %(default)s)")
    bdoc.add_argument("--cl-data", help="folder with the CL paper's sparsity*_noise*.npz (default: found nearby)")
    bdoc.add_argument("--out", default="docs/RESULTS.md", help="default: %(default)s")

    from .report.cli import add_report_parser

    add_report_parser(sub, fmt)
    return p


def _parse_classes(spec):
    from .io import parse_class_names

    return parse_class_names(spec)


def _cmd_find_issues(args) -> int:
    from .detect import FILTER_METHODS, RANKING_METHODS, ConfidentLearning
    from .io import atomic_write, encode_labels, read_labels, read_pred_probs

    method = check_option("method", args.method, FILTER_METHODS)
    rank_by = check_option("rank-by", args.rank_by, RANKING_METHODS)
    if args.top < 0:
        raise NoisylabInputError(f"--top must be >= 0 (0: print no table); got {args.top}.")
    _check_outputs(args.out, args.report)
    from .report.cli import check_outputs_not_inputs

    check_outputs_not_inputs(
        [("--out", args.out), ("--keep-mask", args.keep_mask), ("--report", args.report),
         ("--report's Markdown twin", _report_twin(args.report) if args.report else None)],
        [("--labels", args.labels), ("--pred-probs", args.pred_probs), ("--classes", args.classes)])
    if args.keep_mask:
        from .io import check_output_path

        check_output_path(args.keep_mask, what="--keep-mask", suffixes=(".npy",))
        if args.out and Path(args.keep_mask).resolve() == Path(args.out).resolve():
            raise NoisylabInputError("--keep-mask and --out must be different files.")
    lab = read_labels(args.labels)
    client = None
    if args.dask_scheduler:
        client, P = _dask_input(args)
    else:
        P = read_pred_probs(args.pred_probs)
    if P.ndim == 2 and lab.values.ndim == 1 and lab.values.shape[0] != P.shape[0]:
        raise NoisylabInputError(
            f"{args.labels} has {lab.values.shape[0]} labels but {args.pred_probs} has {P.shape[0]} rows."
        )
    classes = _parse_classes(args.classes)
    codes, names = encode_labels(lab.values, classes)
    if names is not None and P.ndim == 2 and len(names) != P.shape[1]:
        raise NoisylabInputError(
            f"the labels name {len(names)} classes {names[:10].tolist()} but pred_probs has {P.shape[1]} columns; "
            "pass --classes with the class of every column, in order."
        )
    ntr = None
    if args.num_to_remove_per_class:
        try:
            ntr = [int(v) for v in args.num_to_remove_per_class.split(",")]
        except ValueError:
            raise NoisylabInputError("--num-to-remove-per-class must be a comma list of integers.") from None
    cl = ConfidentLearning(filter_by=method, rank_by=rank_by, frac_noise=args.frac_noise,
                           num_to_remove_per_class=ntr, min_examples_per_class=args.min_examples_per_class)
    n_values = int(np.prod(P.shape))
    show_progress = args.progress == "always" or (args.progress == "auto" and (n_values >= PROGRESS_MIN_VALUES
                                                                                or client is not None))
    from ._chunks import progress_callback
    from ._progress import PassProgress

    bars = PassProgress() if show_progress else None
    try:
        with progress_callback(bars):
            cl.fit(codes, P)
    finally:
        if bars is not None:
            bars.close()
        if client is not None:
            client.close()
    n, K = P.shape
    display = names if names is not None else np.arange(K)

    def show(idx):
        return display[idx]

    if args.out:
        order = cl.severity_order()
        given = lab.values[order]
        suggested = show(cl.suggested_labels_[order])
        quality = cl.label_quality_[order].astype(np.float64)
        issue = cl.issue_mask_[order]
        header = ["index"] + (["id"] if lab.ids is not None else []) + \
                 ["given_label", "suggested_label", "label_quality", "is_issue"]
        cols = [order] + ([lab.ids[order]] if lab.ids is not None else []) + [given, suggested, quality, issue]
        # f-strings, not np.char.mod: numpy's string loop can swallow a Ctrl-C
        fmt_cols = [None] * (len(cols) - 2) + [lambda q: np.asarray([f"{v:.6g}" for v in q.tolist()]),
                                               lambda m: np.where(m, "True", "False")]
        with atomic_write(args.out, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(header)
            for a in range(0, n, CSV_BLOCK_ROWS):  # bounded memory for millions of rows
                w.writerows(zip(*((f(c[a:a + CSV_BLOCK_ROWS]) if f else c[a:a + CSV_BLOCK_ROWS]).tolist()
                                  for c, f in zip(cols, fmt_cols))))

    if args.keep_mask:
        with atomic_write(args.keep_mask, "wb") as fh:
            np.save(fh, ~np.asarray(cl.issue_mask_, dtype=bool))
    per_class = cl.issues_per_class()
    label_counts = np.bincount(codes, minlength=K)
    print(f"Examples: {n}, classes: {K}, method: {method}")
    print(f"Label issues: {cl.n_issues_} ({cl.n_issues_ / n:.2%} of the examples)")
    print(f"Estimated noise rate (1 - trace of the estimated joint): {cl.noise_rate_:.4f}")
    print("\nEstimated noise matrix P(given | true), columns = true class:")
    print(format_matrix(cl.noise_matrix_, [str(c) for c in display], row_title="given\\true"))
    print("\nIssues per class (given label):")
    rows = [[str(display[k]), int(label_counts[k]), int(per_class[k]),
             f"{per_class[k] / label_counts[k]:.2%}" if label_counts[k] else "-"] for k in range(K)]
    print(markdown_table(["class", "examples", "issues", "share"], rows))
    top = cl.ranked_issues_[: max(args.top, 0)]
    if top.size:
        print(f"\nMost severe issues (top {top.size}):")
        rows = [[int(i)] + ([lab.ids[i]] if lab.ids is not None else []) +
                [lab.values[i], show(cl.suggested_labels_[i]), f"{float(cl.label_quality_[i]):.4f}"] for i in top]
        print(markdown_table(["index"] + (["id"] if lab.ids is not None else []) +
                             ["given", "suggested", "label_quality"], rows))
    if args.out:
        print(f"\nWrote {n} rows, ordered by severity, to {args.out}")
    if args.keep_mask:
        print(f"Wrote the keep mask ({n - cl.n_issues_} of {n} kept) to {args.keep_mask}")
    if args.report:
        _write_report(args.report, _find_issues_report(cl, codes, display, method, args))
    return 0


def _find_issues_report(cl, codes, display, method, args):
    from .report import Report

    names = [str(c) for c in display]
    rep = Report("Label issues", subtitle=f"{Path(args.labels).name} / {Path(args.pred_probs).name}, filter {method}")
    rep.add_summary(codes, n_classes=len(names), class_names=names, is_issue=cl.issue_mask_,
                    estimated_noise_rate=float(cl.noise_rate_))
    rep.add_noise_matrix(np.asarray(cl.noise_matrix_, dtype=float), class_names=names)
    rep.add_issue_scores(codes, np.asarray(cl.label_quality_, dtype=float), cl.issue_mask_, class_names=names,
                         n_classes=len(names))
    return rep


def _report_twin(path) -> Path:
    """The Markdown twin of ``--report PATH`` (PATH must be .html / .htm)."""
    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        raise NoisylabInputError(f"--report must be an .html file; got {path.name!r}.")
    return path.with_suffix(".md")


def _check_outputs(out=None, report=None, *, out_folder=False):
    """Check --out (a file, or a folder with ``out_folder``) and --report (an .html file, plus its
    Markdown twin) before any work, and that the report would not overwrite --out."""
    from .io import check_output_folder, check_output_path

    if out is not None:
        (check_output_folder if out_folder else check_output_path)(out)
    if report is not None:
        twin = _report_twin(report)
        check_output_path(report, what="--report")
        check_output_path(twin, what="--report's Markdown twin")
        if out is not None and not out_folder and Path(out).resolve() in (Path(report).resolve(), twin.resolve()):
            raise NoisylabInputError(f"--out {out} would be overwritten by the report {report} or its Markdown twin "
                                     f"{twin}; give them different names.")


def _write_report(path, rep):
    twin = _report_twin(path)
    rep.write(path, twin)
    print(f"Wrote the report {path} and its Markdown twin {twin}.")


def _dask_input(args):
    """Connect to ``--dask-scheduler`` and open ``--pred-probs`` (.npy) as a Dask array read by the workers."""
    path = Path(args.pred_probs)
    if path.suffix.lower() != ".npy":
        raise NoisylabInputError(f"--dask-scheduler needs a .npy pred_probs file (read by the workers); got {path.name!r}.")
    if args.rows_per_block < 1:
        raise NoisylabInputError(f"--rows-per-block must be >= 1; got {args.rows_per_block}.")
    try:
        from distributed import Client
    except ImportError:
        raise NoisylabInputError(
            "--dask-scheduler needs dask.distributed: pip install \"noisylab[dask]\"."
        ) from None
    from .detect._dask import dask_array_from_npy

    P = dask_array_from_npy(path.resolve(), rows_per_block=args.rows_per_block)
    try:
        client = Client(args.dask_scheduler, timeout="20s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise NoisylabInputError(f"could not connect to the Dask scheduler at {args.dask_scheduler}: {exc}") from None
    n_workers = len(client.scheduler_info().get("workers", {}))
    print(f"Dask scheduler {args.dask_scheduler}: {n_workers} worker(s)", file=sys.stderr)
    return client, P


def _training_labels(args, y, class_names):
    """(labels, true labels or None) from --labels / --noise, as in cv-probs.

    --labels rows are the training rows in order; a file with ids is matched by id (see
    :func:`noisylab.io.align_labels`): a {path: label} JSON only against an image folder's files.
    """
    true = None
    if args.labels:
        from .io import align_labels, encode_labels, read_labels

        lab = read_labels(args.labels)
        files = exclude = None
        if lab.ids is not None and not all(str(i).strip().lstrip("-").isdigit() for i in lab.ids.tolist()):
            from .torch.data import _cifar_kind, image_folder_files

            root = Path(getattr(args, "dataset", None) or "")
            if str(root) not in ("", ".") and root.is_dir() and not _cifar_kind(root):
                # the training rows are the image folder's train/ split, in the loader's order
                files, exclude = image_folder_files(root), ("test" if (root / "train").is_dir() else None)
        # ids (JSON keys, a CSV id column) are matched to the rows, never paired by sorted order
        values = align_labels(lab, y.shape[0], files=files, exclude_parent=exclude, source=f"--labels {args.labels}")
        if values.ndim == 1 and values.dtype.kind == "f":
            whole = np.isfinite(values) & (values == np.round(values))
            if not whole.all():
                i = int(np.flatnonzero(~whole)[0])
                raise NoisylabInputError(f"--labels {args.labels}: label {values[i].item()!r} at row {i} is not a "
                                         "whole number; give class indices 0..K-1 or class names.")
            values = values.astype(np.int64)
        try:
            y_new, _ = encode_labels(values, np.arange(len(class_names)) if values.dtype.kind in "iu"
                                     else np.asarray(class_names))
        except NoisylabInputError as exc:
            raise NoisylabInputError(f"--labels {args.labels}: {exc}") from None
        if y_new.shape[0] != y.shape[0]:
            raise NoisylabInputError(f"{args.labels} has {y_new.shape[0]} labels; the training set has {y.shape[0]}.")
        true, y = y, y_new
    kind, rate = _noise_arg(args.noise)
    if kind is not None:
        from .noise import make_noise

        res = make_noise(kind, y, rate, exact=True, random_state=args.seed)
        true, y = y, res.noisy_labels
    return y, true


def _noise_arg(spec):
    """--noise KIND:RATE (or none) as (kind or None, rate); the one parser of every command."""
    from .noise import parse_noise_spec

    try:
        return parse_noise_spec(spec)
    except NoisylabInputError as exc:
        msg = str(exc)
        raise NoisylabInputError(f"--{msg}" if msg.startswith("noise ") else f"--noise: {msg}") from None


def _train_forget_rate(args, method):
    if method not in ("coteaching", "coteaching_plus"):
        return None
    if args.forget_rate is not None:
        if not 0.0 <= args.forget_rate < 1.0:
            raise NoisylabInputError(f"--forget-rate must be in [0, 1); got {args.forget_rate}.")
        return args.forget_rate
    kind, rate = _noise_arg(args.noise)
    if kind is None:
        raise NoisylabInputError(f"--method {method} needs --forget-rate (the estimated noise rate), "
                                 "or --noise to use its rate.")
    return rate


def _milestones(args) -> tuple:
    """--milestones as a tuple of ints; with --schedule step and no --milestones, 50% and 75% of --epochs."""
    from .torch.trainer import default_milestones

    if args.milestones is None:
        return default_milestones(args.epochs) if args.schedule == "step" and args.epochs >= 1 else ()
    try:
        return tuple(int(m) for m in str(args.milestones).split(","))
    except ValueError:
        raise NoisylabInputError(f"--milestones must be comma-separated ints, e.g. 50,75; got {args.milestones!r}.") from None


def _read_mask(path) -> np.ndarray:
    """A boolean mask from a .npy file, with the file named in every error.

    Entry i is training row i in the data set's row order (CIFAR pickles: batch order; an image folder:
    torchvision ImageFolder order, i.e. sorted class, then sorted path) -- it is applied as it is, never
    reordered, so a mask must come from the same --dataset (e.g. find-issues on cv-probs of it).
    """
    from .io import _READ_ERRORS, _check_file

    p = _check_file(path)
    if p.suffix.lower() != ".npy":
        raise NoisylabInputError(f"--train-mask must be a boolean .npy file; got {p.name!r}.")
    try:
        return np.load(p, allow_pickle=False)
    except _READ_ERRORS as exc:
        raise NoisylabInputError(f"Could not read {p} as a .npy mask: {exc}") from None


def _cmd_train(args) -> int:
    import json

    from .io import atomic_write

    try:
        from .torch.data import get_dataset
        from .torch.models import default_model_for
        from .torch.robust import (
            METHODS,
            PROBE_METHODS,
            ExperimentData,
            Protocol,
            fit_method,
        )
    except ImportError as exc:
        raise NoisylabInputError(str(exc)) from None
    method = check_option("method", args.method, METHODS)
    _check_outputs(args.out, args.report, out_folder=True)
    out = Path(args.out)
    if method in ("clean", "clean_subset") and _noise_arg(args.noise)[0] is None and not args.labels:
        raise NoisylabInputError(f"--method {method} needs the ground truth: --noise KIND:RATE (or --labels, with the "
                                 "data set's own labels as the truth).")
    forget_rate = _train_forget_rate(args, method)
    train, test = get_dataset(args.dataset).split(args.test_size, random_state=args.seed)
    y, true = _training_labels(args, train.y, train.class_names)
    X = train.X
    K = train.n_classes
    keep = np.ones(y.shape[0], dtype=bool)
    if args.train_mask:
        keep = _read_mask(args.train_mask)
        if keep.dtype != bool or keep.shape != y.shape:
            raise NoisylabInputError(f"--train-mask must be a boolean .npy of shape {y.shape}; got {keep.dtype} "
                                     f"{keep.shape}.")
    transition = None
    if method == "forward":
        if args.transition:
            from .io import read_matrix

            transition = read_matrix(args.transition)
        elif true is None or not args.noise:
            raise NoisylabInputError("--method forward needs --transition FILE, or --noise (its true matrix is used).")
    # L2R / IEG: a clean probe of --probe-per-class examples per class, held out of training (their labels
    # are the data set's own labels, the noise-free ones when --noise or --labels replaced them).
    probe = np.zeros(y.shape[0], dtype=bool)
    clean = true if true is not None else y
    if method in PROBE_METHODS:
        if args.probe_per_class < 1:
            raise NoisylabInputError(f"--method {method} needs --probe-per-class >= 1.")
        rng = np.random.default_rng(np.random.SeedSequence([args.seed, 0x9E0B]))
        for k in range(K):
            rows = np.flatnonzero(keep & (clean == k))
            if len(rows) < args.probe_per_class + 1:
                raise NoisylabInputError(f"class {k} has {len(rows)} usable training examples; the probe needs "
                                         f"{args.probe_per_class} and training at least one more.")
            probe[rng.choice(rows, args.probe_per_class, replace=False)] = True
    rows = keep & ~probe
    T = np.eye(K)
    if true is not None:
        T = np.zeros((K, K))
        np.add.at(T, (y[rows], true[rows]), 1.0)
        T /= np.clip(T.sum(axis=0, keepdims=True), 1, None)
        T[:, T.sum(axis=0) == 0] = np.eye(K)[:, T.sum(axis=0) == 0]
    kind, rate = _noise_arg(args.noise)
    data = ExperimentData(X=X[rows], y=y[rows], y_true=(true if true is not None else y)[rows], X_test=test.X,
                          y_test=np.asarray(test.y, dtype=np.int64), X_probe=X[probe], y_probe=clean[probe],
                          n_classes=K, noise_kind=kind, noise_rate=rate,
                          noise_matrix=T, class_names=list(train.class_names))
    name = default_model_for(tuple(X.shape[1:])) if args.model == "auto" else args.model
    from .torch.models import RECOMMENDED_LR

    lr = args.lr if args.lr is not None else RECOMMENDED_LR.get(name, 1e-3)
    protocol = Protocol(model=name, epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer,
                        lr=lr, schedule=args.schedule, milestones=_milestones(args), gamma=args.gamma,
                        decay_start=args.decay_start, val_fraction=args.val_fraction, augment=args.augment,
                        probe_per_class=int(probe.sum()) // K if probe.any() else 0,
                        incv_validation="shared")  # every method validates on the same noisy rows
    protocol.train_config()  # validate the settings before any work
    res = fit_method(method, data, protocol, seed=args.seed, forget_rate=forget_rate, transition=transition,
                     checkpoint_dir=out / "checkpoint")
    out.mkdir(parents=True, exist_ok=True)
    hist = res.history
    result = {
        "dataset": args.dataset, "method": method, "model": name, "n_train": int(rows.sum()),
        "n_train_total": int(y.shape[0]), "n_probe": int(probe.sum()),
        "n_test": int(test.y.shape[0]), "noise": args.noise, "labels": args.labels, "train_mask": args.train_mask,
        "wrong_labels_in_training": None if true is None else int(np.sum(y[rows] != true[rows])),
        "selection": "best epoch on the noisy validation split" if args.val_fraction > 0 else "last epoch",
        "best_epoch": res.best_epoch, "test_acc_best_epoch": res.test_acc, "test_acc_last_epoch": res.test_acc_last,
        "seconds": res.seconds, "seconds_per_epoch": res.seconds_per_epoch, "method_details": res.extra,
        "config": protocol.to_dict(), "seed": args.seed,
    }
    with atomic_write(out / "history.json", "w") as fh:
        json.dump(hist, fh, indent=1)
    keys = list(hist[0])
    with atomic_write(out / "history.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(keys)
        w.writerows([[row.get(k) for k in keys] for row in hist])
    with atomic_write(out / "result.json", "w") as fh:
        json.dump(result, fh, indent=1, default=str)
    if args.report:
        from .report import Report, load_runs

        rep = Report(f"Training: {method} on {args.dataset}", subtitle=f"noise {args.noise or 'as given'}, seed {args.seed}")
        rep.add_text("\n".join(f"- {k}: {v}" for k, v in result.items() if k not in ("config", "method_details")),
                     title="Result")
        rep.add_training_curves(load_runs([out]))
        _write_report(args.report, rep)
    print(f"Trained {name} ({method}) on {result['n_train']} of {result['n_train_total']} training examples"
          + ("" if true is None else f" ({result['wrong_labels_in_training']} with a wrong label)")
          + (f"; test accuracy {res.test_acc:.4f} at the best noisy-validation epoch "
             f"{res.best_epoch}, {res.test_acc_last:.4f} at the last epoch" if args.val_fraction > 0
             else f"; test accuracy {res.test_acc_last:.4f} at the last epoch (no validation split)")
          + f". Wrote {out}/result.json.")
    return 0


def _cmd_cv_probs(args) -> int:
    from .cv import combine_folds, cross_val_pred_probs
    from .io import atomic_write, check_output_folder, check_output_path

    out = check_output_path(args.out, what="--out", suffixes=(".npy",))
    folds_dir = Path(args.folds_dir) if args.folds_dir else out.with_name(out.name + ".folds")
    if not folds_dir.parent.is_dir():
        raise NoisylabInputError(f"Output folder does not exist: {folds_dir.parent} (for --folds-dir {folds_dir}).")
    check_output_folder(folds_dir, what="--folds-dir")
    if args.fold is not None and args.combine:
        raise NoisylabInputError("--fold and --combine exclude each other.")
    if args.n_jobs < 1:
        raise NoisylabInputError(f"--n-jobs must be >= 1; got {args.n_jobs}.")
    if args.combine:
        P = combine_folds(folds_dir)
        with atomic_write(out, "wb") as fh:
            np.save(fh, P)
        print(f"Combined {folds_dir} into {out}: {P.shape[0]} rows x {P.shape[1]} classes")
        return 0
    try:
        from .torch.data import get_dataset
    except ImportError as exc:
        raise NoisylabInputError(str(exc)) from None
    # The training split of `noisylab train` with the same --test-size / --seed (the whole training set of a
    # data set with a fixed test split), so a mask from find-issues fits `train --train-mask` and the
    # test rows never inform the cleaning.
    ds, _test = get_dataset(args.dataset).split(args.test_size, random_state=args.seed)
    y, true = _training_labels(args, ds.y, ds.class_names)
    if args.noise:
        with atomic_write(out.with_name(out.stem + ".labels.npz"), "wb") as fh:
            np.savez(fh, noisy_labels=y, true_labels=true, flip_mask=y != true)
    if args.model == "logreg":
        from sklearn.linear_model import LogisticRegression

        clf = LogisticRegression(max_iter=1000)
        X = ds.X.reshape(ds.X.shape[0], -1)
    else:
        from .torch.estimator import TorchClassifier

        clf = TorchClassifier(model=args.model, epochs=args.epochs, batch_size=args.batch_size,
                              lr="auto" if args.lr is None else args.lr,
                              optimizer=args.optimizer, augment=args.augment, n_classes=ds.n_classes,
                              random_state=args.seed)
        X = ds.X
    client = None
    if args.dask_scheduler:
        try:
            from distributed import Client
        except ImportError:
            raise NoisylabInputError("--dask-scheduler needs dask.distributed: pip install \"noisylab[dask]\".") from None
        client = Client(args.dask_scheduler, timeout="20s")
    try:
        P = cross_val_pred_probs(clf, X, y, n_folds=args.folds, random_state=args.seed, n_classes=ds.n_classes,
                                 out_dir=folds_dir, folds=None if args.fold is None else [args.fold],
                                 n_jobs=args.n_jobs, client=client, verbose=True)
    finally:
        if client is not None:
            client.close()
    if P is None:
        print(f"Fold {args.fold} of {args.folds} saved in {folds_dir}; run the others, then --combine.")
        return 0
    with atomic_write(out, "wb") as fh:
        np.save(fh, P)
    acc_given = float(np.mean(P.argmax(1) == y))
    msg = f"Wrote {out}: {P.shape[0]} rows x {P.shape[1]} classes; out-of-fold accuracy on the given labels {acc_given:.3f}"
    if true is not None:
        msg += f", on the true labels {float(np.mean(P.argmax(1) == true)):.3f}"
    print(msg)
    return 0


def _cmd_noise(args) -> int:
    from .io import atomic_write, encode_labels, read_labels, read_matrix
    from .noise import NOISE_KINDS, generate_noise_matrix_from_trace, make_noise

    kind = check_option("kind", args.kind, NOISE_KINDS)
    # options of another kind are an error, not silently ignored
    for flag, value, owner in (("--map", args.map, "class_map"), ("--matrix", args.matrix, "matrix"),
                               ("--trace", args.trace, "matrix"), ("--valid", args.valid or None, "matrix")):
        if value is not None and kind != owner:
            raise NoisylabInputError(f"{flag} applies to --kind {owner} only; got --kind {kind}.")
    if args.sparsity is not None and args.trace is None:
        raise NoisylabInputError("--sparsity applies to --kind matrix with --trace only.")
    if args.valid and args.trace is None:
        raise NoisylabInputError("--valid applies to --kind matrix with --trace only.")
    if args.matrix and args.trace is not None:
        raise NoisylabInputError("give --matrix FILE or --trace T, not both.")
    if args.exact and args.sampling not in (None, "exact"):
        raise NoisylabInputError(f"--exact is --sampling exact; got --sampling {args.sampling} as well.")
    sampling = "exact" if args.exact else (args.sampling or "per_example")
    if sampling == "floor" and kind != "matrix":
        raise NoisylabInputError("--sampling floor (the CL paper's counts) applies to --kind matrix only.")
    lab = read_labels(args.labels)
    codes, names = encode_labels(lab.values)
    n_classes = args.n_classes if args.n_classes is not None else (len(names) if names is not None else None)
    if names is not None and n_classes != len(names):
        raise NoisylabInputError(
            f"--n-classes {n_classes} does not match the {len(names)} class names in the labels; "
            "with class names the classes are the names."
        )
    kw = dict(n_classes=n_classes, exact=sampling == "exact", random_state=args.seed)
    if kind == "matrix":
        if args.rate is not None:
            raise NoisylabInputError("--rate does not apply to --kind matrix; give --matrix FILE or --trace T.")
        if args.matrix:
            T = read_matrix(args.matrix)
        elif args.trace is not None:
            K = n_classes if n_classes is not None else int(np.max(codes)) + 1
            py = np.bincount(codes, minlength=K) / codes.shape[0]
            T = generate_noise_matrix_from_trace(K, args.trace, py=py, frac_zero_noise_rates=args.sparsity or 0.0,
                                                 valid_noise_matrix=args.valid, random_state=args.seed)
        else:
            raise NoisylabInputError("--kind matrix needs --matrix FILE or --trace T [--sparsity S].")
        from .noise import noise_from_matrix

        if n_classes is not None and T.shape != (n_classes, n_classes):
            raise NoisylabInputError(f"the noise matrix is {T.shape[0]} x {T.shape[1]} but there are {n_classes} "
                                     "classes (--n-classes / the labels).")
        result = noise_from_matrix(codes, T, sampling=sampling, random_state=args.seed)
    else:
        if args.rate is None:
            raise NoisylabInputError(f"--kind {kind} needs --rate.")
        mapping = None
        if kind == "class_map":
            if not args.map:
                raise NoisylabInputError("--kind class_map needs --map source:target[,source:target...].")
            try:
                mapping = {int(a): int(b) for a, b in (pair.split(":") for pair in args.map.split(","))}
            except ValueError:
                raise NoisylabInputError(f"--map must look like 7:1,3:8; got {args.map!r}.") from None
        if kind in ("cifar10", "cifar100", "digits") and args.n_classes is None:
            kw.pop("n_classes")  # the kind's own K (10 / 100; digits: 10 unless --n-classes)
        result = make_noise(kind, codes, args.rate, mapping=mapping, **kw)
    if names is not None and result.noise_matrix.shape[0] > len(names):
        raise NoisylabInputError(
            f"--kind {kind} uses {result.noise_matrix.shape[0]} classes but the labels name only {len(names)} "
            f"({names[:10].tolist()}); give integer labels (or as many class names as classes)."
        )
    noisy = result.noisy_labels if names is None else names[result.noisy_labels]
    out = Path(args.out)
    ext = out.suffix.lower()
    if ext == ".npz":
        with atomic_write(out, "wb") as fh:
            np.savez(fh, noisy_labels=noisy, true_labels=lab.values, flip_mask=result.flip_mask,
                     noise_matrix=result.noise_matrix, transition_matrix=result.transition_matrix)
    elif ext == ".csv":
        with atomic_write(out, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["index", "true_label", "noisy_label", "flipped"])
            w.writerows(zip(range(len(noisy)), lab.values.tolist(), noisy.tolist(), result.flip_mask.tolist()))
    elif ext == ".json":
        import json

        ids = lab.ids.tolist() if lab.ids is not None else None
        with atomic_write(out, "w") as fh:
            json.dump(dict(zip(ids, noisy.tolist())) if ids is not None else noisy.tolist(), fh)
    else:
        raise NoisylabInputError(f"--out must end in .npz, .csv or .json; got {out.name!r}.")
    print(result.summary())
    print(f"Wrote noisy labels and flip mask to {out}")
    return 0


def _cmd_demo(args) -> int:
    from .demo import run_demo

    if args.folds < 2:
        raise NoisylabInputError(f"--folds must be >= 2; got {args.folds}.")
    from .detect import FILTER_METHODS
    from .noise import NOISE_KINDS

    run_demo(noise_rate=args.noise_rate, kind=check_option("kind", args.kind, NOISE_KINDS),
             filter_by=check_option("method", args.method, FILTER_METHODS), folds=args.folds,
             random_state=args.seed, dataset=args.dataset, model=args.model, epochs=args.epochs, quick=args.quick)
    return 0


def _bench_run_options(p, default_store):
    p.add_argument("--store", default=default_store, required=default_store is None,
                   help="JSONL result store (appended; finished runs are skipped)"
                        + (" (default: %(default)s)" if default_store else ""))
    p.add_argument("--n-jobs", type=int, default=2, help="local worker processes (default: %(default)s)")
    p.add_argument("--dask-scheduler", metavar="ADDRESS", help="run on this dask.distributed cluster instead")
    p.add_argument("--progress", action="store_true", help="show a progress bar over the runs")
    p.add_argument("--out", help="also write the markdown to this file (atomically)")
    p.add_argument("--report", help="also write an HTML report (and its Markdown twin) to this file")


def _bench_execute(args, grid):
    from .bench import ResultStore, run_grid

    if args.n_jobs < 1:
        raise NoisylabInputError(f"--n-jobs must be >= 1; got {args.n_jobs}.")
    store = ResultStore(args.store)
    runs = grid.runs()
    done = store.done_keys()
    from .bench import run_key

    todo = sum(run_key(r) not in done for r in runs)
    print(f"{grid.name}: {len(runs)} runs, {len(runs) - todo} already in {args.store}, {todo} to run"
          + (f" on {args.dask_scheduler}" if args.dask_scheduler else f" in {args.n_jobs} process(es)") + ".",
          flush=True)
    client = None
    if args.dask_scheduler:
        try:
            from dask.distributed import Client
        except ImportError:
            raise NoisylabInputError('--dask-scheduler needs dask.distributed: pip install "noisylab[dask]".') from None
        try:
            client = Client(args.dask_scheduler, timeout="20s")
        except OSError as exc:
            raise NoisylabInputError(f"could not connect to the Dask scheduler at {args.dask_scheduler}: {exc}") from None
    try:
        return run_grid(grid, store, n_jobs=1 if client else args.n_jobs, client=client, progress=args.progress)
    finally:
        if client is not None:
            client.close()


def _bench_twin(args) -> Path:
    """The Markdown twin of a bench ``--report``: ``X.md``, or ``X-report.md`` when ``--out`` is ``X.md``."""
    twin = Path(args.report).with_suffix(".md")
    if getattr(args, "out", None) and Path(args.out).resolve() == twin.resolve():
        twin = twin.with_name(twin.stem + "-report.md")
    return twin


def _bench_output(args, markdown, title, records=None):
    from .io import atomic_write

    print(markdown)
    if getattr(args, "out", None):
        with atomic_write(args.out, "w") as fh:
            fh.write(markdown + "\n")
    if getattr(args, "report", None):
        from .report import Report

        rep = Report(title).add_text(markdown, title="Results")
        if records:  # training curves of the robust-training benchmark, one figure per noise setting
            from .bench.robust import robust_curves

            for noise in dict.fromkeys(r["spec"].get("noise") for r in records):
                runs = robust_curves(records, noise)
                if runs:
                    rep.add_training_curves(runs, title=f"Training curves, noise {noise} (first seed)")
        twin = _bench_twin(args)
        rep.write(args.report, twin)
        print(f"Wrote the report {args.report} and its Markdown twin {twin}.")


def _cmd_bench(args, parser) -> int:
    if args.bench is None:
        parser._subparsers_by_name["bench"].print_help()
        return EXIT_BAD_INPUT
    if args.bench != "docs":  # outputs checked before a grid runs (docs checks its own --out)
        _check_outputs(getattr(args, "out", None))
        if getattr(args, "report", None):
            from .io import check_output_path

            _report_twin(args.report)  # .html
            check_output_path(args.report, what="--report")
            check_output_path(_bench_twin(args), what="--report's Markdown twin")
        from .report.cli import check_outputs_not_inputs

        store = getattr(args, "store", None)
        check_outputs_not_inputs(
            [("--out", getattr(args, "out", None)), ("--report", getattr(args, "report", None)),
             ("--report's Markdown twin", _bench_twin(args) if getattr(args, "report", None) else None)],
            [("the result store", store)])
        if store is not None and Path(store).resolve() in {
                Path(p).resolve() for p in (getattr(args, "out", None), getattr(args, "report", None)) if p}:
            raise NoisylabInputError(f"--out/--report {store} is the result store; writing it would destroy the "
                                     "results. Give another file name.")
    if args.bench == "robust":
        from .bench.robust import robust_grid, robust_report

        grid = robust_grid(args.grid, dataset=args.dataset, seeds=args.seeds, methods=args.methods,
                           noises=args.noises, epochs=args.epochs, n_train=args.n_train, model=args.model)
        records = _bench_execute(args, grid)
        _bench_output(args, robust_report(records, title=f"Robust training: {grid.name}"), grid.name, records)
        return 0
    if args.bench == "docs":
        from .bench.results_doc import write_results_doc

        write_results_doc(args.out, args.results, args.cl_data)
        print(f"Wrote {args.out}.")
        return 0
    if args.bench == "incv-theory":
        return _cmd_incv_theory(args)
    if args.bench == "detectors":
        from .bench.detectors import detectors_grid, detectors_report

        grid = detectors_grid(args.grid, seeds=args.seeds, datasets=args.datasets, noises=args.noises,
                              epochs=args.epochs, methods=args.methods, retrain_fraction=args.retrain,
                              repair_fraction=args.repair, n_train=args.n_train,
                              retrain_repeats=args.retrain_repeats)
        records = _bench_execute(args, grid)
        _bench_output(args, detectors_report(records), grid.name)
        return 0
    if args.bench == "run":
        from .bench import load_grid, results_table

        from .bench.harness import validate_grid

        grid = load_grid(args.grid)
        validate_grid(grid, table_fields=tuple(_csv_fields(args.rows)) + tuple(_csv_fields(args.cols)),
                      local=not args.dask_scheduler)
        records = _bench_execute(args, grid)
        table = results_table(records, rows=tuple(_csv_fields(args.rows)), cols=tuple(_csv_fields(args.cols)),
                              value=args.value, scale=args.scale)
        _bench_output(args, f"## {grid.name}\n\n{table}", grid.name)
        return 0
    if args.bench == "results":
        from .bench import ResultStore, current_protocol, protocol_lines, results_table

        records = list(ResultStore(args.store).latest().values()) if Path(args.store).exists() else []
        if not records:
            raise NoisylabInputError(f"no results in {args.store}.")
        benches = {r.get("spec", {}).get("bench") for r in records}
        # the bench's own report unless a table option is given (then the generic table)
        layout = benches.pop() if len(benches) == 1 and all(
            getattr(args, o) is None for o in ("rows", "cols", "value", "scale")) else None
        rows, cols = tuple(_csv_fields(args.rows or "method")), tuple(_csv_fields(args.cols or "noise"))
        if layout == "detectors":
            cells = ("dataset", "model", "noise")
        elif layout == "robust":
            cells = ("dataset", "model", "method", "noise")
        else:
            from .bench.harness import check_spec_fields

            layout, cells = None, rows + cols
            check_spec_fields(records, cells)
        if not args.all_protocols:
            records, left_out = current_protocol(records, cells)
            if left_out:
                print(f"note: {left_out} record(s) of {args.store} ran with an earlier protocol of their table cell "
                      "and are left out (--all-protocols includes them).", file=sys.stderr)
        if layout == "detectors":
            from .bench.detectors import detectors_report

            _bench_output(args, detectors_report(records), f"Results of {args.store}")
            return 0
        if layout == "robust":
            from .bench.robust import robust_report

            md = robust_report(records)
            _bench_output(args, md, f"Results of {args.store}", records)
            return 0
        table = results_table(records, rows=rows, cols=cols, value=args.value or "test_acc",
                              scale=100.0 if args.scale is None else args.scale)
        md = f"{table}\n\n{protocol_lines(records)}"
        _bench_output(args, md, f"Results of {args.store}")
        return 0
    from .bench.cl_cifar10 import bench_cl_cifar10, find_cl_cifar10_dir, results_table
    from .io import atomic_write

    data = args.data or find_cl_cifar10_dir()
    if data is None:
        raise NoisylabInputError("no --data given and no shared/data/cl-cifar10 folder found nearby.")
    results = bench_cl_cifar10(data, dtype=args.dtype)
    table = results_table(results)
    print(f"Confident learning on the CL paper's CIFAR-10 probabilities ({data}, computed in {args.dtype})\n")
    print(table)
    if args.out:
        with atomic_write(args.out, "w") as fh:
            fh.write(table + "\n")
    return 0


DETECT_ON_RECORDING = {"aum": "aum", "margin": "aum", "confidence": "confidence", "forgetting": "forgetting_events",
                       "mean_loss": "mean_loss"}


def _cmd_detect(args) -> int:
    from .io import atomic_write

    try:
        from .torch.detect_eval import DETECTION_METHODS, detection_metrics
        from .torch.detector import NoiseDetector, detect_from_recording
    except ImportError as exc:
        raise NoisylabInputError(str(exc)) from None
    method = check_option("method", args.method, DETECTION_METHODS)
    if (args.dynamics is None) == (args.dataset is None):
        raise NoisylabInputError("give exactly one of --dynamics FILE.npy or --dataset NAME.")
    _check_outputs(args.out)
    for flag in ("remove", "repair"):
        frac = getattr(args, flag)
        if frac is not None and not 0.0 < frac < 1.0:
            raise NoisylabInputError(f"--{flag} must be a fraction in (0, 1); got {frac}.")
    _noise_arg(args.noise)
    detector = NoiseDetector.load(args.detector) if args.detector else None
    flagged = truth = given = None
    if args.dynamics:
        from .dynamics import dynamics_scores, read_dynamics

        if args.remove is not None or args.repair is not None:
            raise NoisylabInputError("--remove / --repair need --dataset (a recording has no inputs to retrain on).")
        _logits, meta = read_dynamics(args.dynamics)
        given, truth = meta["labels"], meta.get("is_noisy")
        if method in ("lstm", "lstm_margin"):
            if method == "lstm_margin" and (detector is None or detector.feature_ != "margin"):
                from .torch.detector import load_pretrained

                if detector is not None:
                    raise NoisylabInputError(f"--method lstm_margin needs a margin detector; {args.detector} reads "
                                             f"{detector.feature_!r} (use --method lstm with it).")
                detector = load_pretrained(feature="margin")
            quality = 1.0 - detect_from_recording(args.dynamics, detector)
        elif method in DETECT_ON_RECORDING:
            quality = dynamics_scores(args.dynamics, DETECT_ON_RECORDING[method])
        else:
            raise NoisylabInputError(f"--method {method} needs --dataset (it trains its own networks); on a recording "
                                     f"use one of lstm, lstm_margin, {', '.join(DETECT_ON_RECORDING)}.")
        ids = meta["ids"]
    else:
        from .torch.detect_eval import (
            remove_and_retrain,
            repair_and_retrain,
            score_examples,
        )
        from .torch.robust import Protocol, prepare_data

        data = prepare_data(args.dataset, args.noise, seed=args.seed, probe_per_class=0)
        protocol = Protocol(model=_detect_model(args.dataset, args.model), epochs=args.epochs, lr=args.lr, schedule="constant", batch_size=128,
                            probe_per_class=0)
        res = score_examples(data, method, protocol, seed=args.seed, detector=detector, measure_overhead=False)
        quality, flagged, given = res.label_quality, res.flagged, data.y
        truth = (data.y != data.y_true) if args.noise else None
        ids = np.arange(len(data.y))
        print(f"{method}: scored {len(ids)} training examples in {res.seconds:.1f} s")
        for flag, fn in (("remove", remove_and_retrain), ("repair", repair_and_retrain)):
            frac = getattr(args, flag)
            if frac is None:
                continue
            if flag == "repair":
                if "suggested_labels" not in res.extra:
                    raise NoisylabInputError(f"--method {method} gives no suggested labels; --repair needs cl, "
                                             "combined or a dynamics method.")
                r = fn(data, quality, frac, res.extra["suggested_labels"], protocol, seed=args.seed)
            else:
                r = fn(data, quality, frac, protocol, seed=args.seed)
            base = _fit_standard_acc(data, protocol, args.seed)
            print(f"{flag} {frac:g}: test accuracy {r['test_acc']:.4f} (noisy labels: {base:.4f}) at the best "
                  "noisy-validation epoch")
    order = np.argsort(quality, kind="stable")
    top = order[:10]
    print(f"The {len(top)} lowest label qualities of {len(order)} examples ({method}; HIGHER = label more likely "
          "correct):")
    print(markdown_table(["index", "given_label", "label_quality"] + (["flagged"] if flagged is not None else []),
                         [[int(ids[i]), int(given[i]), f"{float(quality[i]):.4f}"]
                          + ([bool(flagged[i])] if flagged is not None else []) for i in top]))
    if truth is not None and truth.any() and not truth.all():
        met = detection_metrics(quality, truth, flagged)
        print("Against the true flips: " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                                     for k, v in met.items()))
    if args.out:
        with atomic_write(args.out, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["index", "given_label", "label_quality"] + (["flagged"] if flagged is not None else [])
                       + (["is_noisy"] if truth is not None else []))
            for i in order:
                w.writerow([int(ids[i]), int(given[i]), f"{float(quality[i]):.6g}"]
                           + ([bool(flagged[i])] if flagged is not None else [])
                           + ([bool(truth[i])] if truth is not None else []))
        print(f"Wrote {len(order)} rows, lowest label quality first, to {args.out}")
    return 0


def _detect_model(dataset, model):
    """``detect --model auto``: the model the detectors bench measured on ``dataset`` (METHODS.md §12: the
    MLP for digits, the 1-D CNN for MNIST-1D), else "auto" (by input shape)."""
    if model != "auto":
        return model
    from .bench.detectors import detectors_grid

    return {r["dataset"]: r["model"] for r in detectors_grid().runs()}.get(str(dataset), "auto")


def _fit_standard_acc(data, protocol, seed):
    from .torch.robust import fit_method

    return fit_method("standard", data, protocol, seed=seed).test_acc


def _cmd_train_detector(args) -> int:
    try:
        from .noise import make_noise
        from .torch.data import get_dataset
        from .torch.detector import NoiseDetector, make_training_sequences
        from .torch.models import default_model_for
        from .torch.robust import parse_noise
    except ImportError as exc:
        raise NoisylabInputError(str(exc)) from None
    from .io import check_output_path

    check_output_path(args.out, what="--out")
    noises = _csv_fields(args.noise)
    parsed = [parse_noise(v) for v in noises]
    if not parsed or any(kind is None or rate == 0 for kind, rate in parsed):
        raise NoisylabInputError("--noise must synthesize some noise (the detector learns the flips), e.g. "
                                 f"symmetric:0.3 or symmetric:0.3,pair:0.3; got {args.noise!r}.")
    if args.epochs < 2 or args.detector_epochs < 1:
        raise NoisylabInputError("--epochs must be >= 2 and --detector-epochs >= 1.")
    init = NoiseDetector.load(args.init) if args.init else None
    if init is not None and init.feature_ != args.feature:
        raise NoisylabInputError(f"--init reads feature {init.feature_!r}; --feature is {args.feature!r} "
                                 "(fine-tune on the same feature).")
    ds = get_dataset(args.dataset, **({"random_state": args.seed} if args.dataset == "mnist1d" else {}))
    name = default_model_for(tuple(ds.X.shape[1:])) if args.model == "auto" else args.model
    parts, flags, rates = [], [], []
    for kind, rate in parsed:
        nl = make_noise(kind, ds.y, rate, exact=True, random_state=args.seed)
        s_, f_ = make_training_sequences(ds.X, nl.noisy_labels, nl.true_labels, model=name, epochs=args.epochs,
                                         lr=args.lr, random_state=args.seed, feature=args.feature)
        parts.append(s_)
        flags.append(f_)
        rates.append(float(nl.noise_rate))
    seqs, is_noisy = np.concatenate(parts), np.concatenate(flags)
    meta = {"source": args.dataset, "noise": ",".join(noises),
            "noise_rate_realised": rates[0] if len(rates) == 1 else rates,
            "data_seed": args.seed, "recording": {"model": name, "epochs": args.epochs, "optimizer": "adam",
                                                  "lr": args.lr, "batch_size": 128, "mode": "eval_pass"},
            "n_classes": int(ds.n_classes)}
    det = NoiseDetector(epochs=args.detector_epochs, feature=args.feature, random_state=args.seed).fit(
        seqs, is_noisy, init=init, metadata=meta)
    det.save(args.out)
    print(f"Trained the LSTM detector ({args.feature}) on {len(seqs)} sequences of {args.epochs} epochs "
          f"({int(is_noisy.sum())} flipped); held-out AUROC {det.metadata_.get('val_auroc', float('nan')):.4f}. "
          f"Saved {args.out}.")
    return 0


def _cmd_incv_theory(args) -> int:
    from .io import atomic_write

    try:
        from .torch.data import get_dataset
        from .torch.methods.incv import format_theory_table, verify_theory
        from .torch.models import default_model_for, make_model
        from .torch.trainer import TrainConfig
    except ImportError as exc:
        raise NoisylabInputError(str(exc)) from None
    kinds = [check_option("kind", k, ("symmetric", "pair")) for k in _csv_fields(args.kind)]
    try:
        rates = [float(r) for r in _csv_fields(args.rates)]
    except ValueError:
        raise NoisylabInputError(f"--rates must be comma-separated numbers; got {args.rates!r}.") from None
    ds = get_dataset(args.dataset)
    X, y = ds.X, ds.y
    shape, K = tuple(X.shape[1:]), ds.n_classes
    name = default_model_for(shape) if args.model == "auto" else args.model
    cfg = TrainConfig(epochs=args.epochs, batch_size=64, optimizer="adam", lr=args.lr, schedule="cosine",
                      random_state=args.seed).validate()

    def build():
        import torch

        return make_model(name, shape, K, random_state=int(torch.randint(0, 2**31 - 1, (1,))))

    parts, all_rows = [f"## INCV's understanding experiment on {args.dataset}", "",
                       f"Train `{name}` ({args.epochs} epochs, Adam {args.lr:g}, cosine) on a random half with noisy "
                       "labels (last epoch), predict the other half. acc = accuracy w.r.t. the NOISY labels of the "
                       "held-out half; LP / LR = label precision / recall of the selection 'prediction == noisy "
                       "label'; formulas of the INCV paper (METHODS.md §2.1) at the nominal rate; clean acc = "
                       "accuracy w.r.t. the true labels."], []
    for kind in kinds:
        rows = verify_theory(X, y, K, build, cfg, noise_rates=rates, kind=kind, random_state=args.seed)
        all_rows.append((kind, rows))
        parts += ["", f"### {kind} noise", "", format_theory_table(rows)]
    md = "\n".join(parts)
    print(md)
    if args.out:
        with atomic_write(args.out, "w") as fh:
            fh.write(md + "\n")
    if args.report:
        from .report import Report

        rep = Report(f"INCV theory check on {args.dataset}").add_text(md, title="Measured vs formula")
        for kind, rows in all_rows:
            for r in rows:
                conf = np.array(r["confusion"], dtype=float)
                missing = np.isnan(conf).any(axis=0)
                conf[:, missing] = np.eye(K)[:, missing]
                rep.add_noise_matrix(conf, true=np.asarray(r["true_T"], dtype=float),
                                     class_names=list(ds.class_names))
                rep.add_text(f"{kind} {r['noise_rate']:.2f}: estimated = P(noisy label | prediction) on the held-out "
                             "half" + (f" (classes never predicted, shown as identity columns: "
                                       f"{np.flatnonzero(missing).tolist()})" if missing.any() else "")
                             + "; true = the realised P(noisy | true).")
        twin = Path(args.report).with_suffix(".md")
        if args.out and Path(args.out).resolve() == twin.resolve():
            twin = twin.with_name(twin.stem + "-report.md")
        rep.write(args.report, twin)
        print(f"Wrote the report {args.report} and its Markdown twin {twin}.")
    return 0


def _csv_fields(text):
    fields = [f.strip() for f in str(text).split(",") if f.strip()]
    if not fields:
        raise NoisylabInputError(f"expected comma-separated field names; got {text!r}.")
    return fields


def _showwarning(message, category, filename, lineno, file=None, line=None):
    print(f"noisylab: warning: {message}", file=sys.stderr)


def main(argv=None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        sub = parser._subparsers_by_name.get(args.command) if args.command else None
        if sub is not None and args.command == "bench" and getattr(args, "bench", None):
            sub = sub._subparsers_action.choices[args.bench]
        (sub or parser).error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    with warnings.catch_warnings():
        warnings.showwarning = _showwarning
        try:
            if args.command == "find-issues":
                return _cmd_find_issues(args)
            if args.command == "noise":
                return _cmd_noise(args)
            if args.command == "demo":
                return _cmd_demo(args)
            if args.command == "train":
                return _cmd_train(args)
            if args.command == "cv-probs":
                return _cmd_cv_probs(args)
            if args.command == "detect":
                return _cmd_detect(args)
            if args.command == "train-detector":
                return _cmd_train_detector(args)
            if args.command == "report":
                return args.report_func(args)
            if args.command == "bench":
                return _cmd_bench(args, parser)
        except NoisylabInputError as exc:
            print(f"noisylab {args.command}: error: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        except MemoryError:
            print(f"noisylab {args.command}: error: out of memory", file=sys.stderr)
            return 1
        except BrokenPipeError:  # e.g. `noisylab demo | head`
            sys.stderr.close()
            return 0
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
