"""What one dynamics detector adds to the training run it observes: its recorder plus its scoring.

``noisylab bench detectors`` records both recorders in one run and scores six detectors from it, so
its overhead figure is the sum of everything.  This script measures each detector alone, on the
same protocol (30 epochs, batch 128, Adam 3e-3, constant lr, every training row recorded):

* ``plain``: the training run without recorders;
* ``margin`` (AUM ranking without threshold samples): ``DynamicsRecorder("train_forward")`` +
  :func:`noisylab.dynamics.aum_scores` on the recording;
* ``confidence`` (data maps): ``DynamicsRecorder("eval_pass")`` + :func:`noisylab.dynamics.confidence`;
* ``lstm`` / ``lstm_margin``: ``DynamicsRecorder("eval_pass")`` + the shipped detector
  (:func:`noisylab.torch.detector.detect_from_recording`, detector loaded once beforehand).

Each variant runs ``--repeats`` times, interleaved; the table gives the median wall time of
(fit + scoring) and its overhead against the median plain fit.

Usage::

    python benchmarks/detect_overhead.py --repeats 5
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from noisylab.dynamics import aum_scores, confidence
from noisylab.noise import make_noise
from noisylab.torch.data import get_dataset
from noisylab.torch.detector import detect_from_recording, load_pretrained
from noisylab.torch.models import make_model
from noisylab.torch.recorder import DynamicsRecorder, load_dynamics
from noisylab.torch.trainer import TrainConfig, Trainer


def one(X, y, model, variant, folder, dets, seed):
    cfg = TrainConfig(epochs=30, batch_size=128, optimizer="adam", lr=3e-3, schedule="constant", val_fraction=0.0,
                      random_state=seed, device="cpu")
    mode = {"plain": None, "margin": "train_forward"}.get(variant, "eval_pass")
    path = Path(folder) / f"{variant}_{time.time_ns()}.npy"
    cbs = [DynamicsRecorder(path, mode=mode)] if mode else []
    t0 = time.perf_counter()
    Trainer(lambda: make_model(model, tuple(X.shape[1:]), int(y.max()) + 1, random_state=seed), cfg,
            callbacks=cbs).fit(X, y)
    t_fit = time.perf_counter() - t0
    if variant in ("margin", "confidence"):
        z, meta = load_dynamics(path)
        fn = aum_scores if variant == "margin" else confidence
        fn(z, meta["labels"], epochs_completed=int(meta["epochs_completed"]))
    elif variant in ("lstm", "lstm_margin"):
        detect_from_recording(path, dets[variant])
    return t_fit, time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dets = {"lstm": load_pretrained(), "lstm_margin": load_pretrained(feature="margin")}
    variants = ("plain", "margin", "confidence", "lstm", "lstm_margin")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {args.repeats} repeats, 30 epochs\n")
    print("| data / model | plain fit s | " + " | ".join(f"{v}: fit + score s (overhead)" for v in variants[1:]) + " |")
    print("|---|---:|" + "---:|" * (len(variants) - 1))
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in (("mnist1d", "cnn1d"), ("digits", "mlp")):
            ds = get_dataset(name)
            nl = make_noise("symmetric", ds.y, 0.4, exact=True, random_state=1)
            X, y = ds.X, nl.noisy_labels
            times = {v: [] for v in variants}
            one(X, y, model, "plain", tmp, dets, 0)  # warm-up (one-time costs)
            for r in range(args.repeats):
                for v in variants:
                    times[v].append(one(X, y, model, v, tmp, dets, r)[1])
            med = {v: statistics.median(t) for v, t in times.items()}
            cells = [f"{med[v]:.2f} ({med[v] / med['plain'] - 1:+.0%})" for v in variants[1:]]
            print(f"| {name} / {model} ({len(y)} rows) | {med['plain']:.2f} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
