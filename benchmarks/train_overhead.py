"""Trainer overhead against a bare PyTorch loop, and the cost of recording training dynamics.

For each (data set, model) the script trains the same model (same initial
weights, same batch order: a ``torch.randperm`` from a generator seeded alike)
with

1. a bare loop: tensors in memory, ``randperm`` batches, forward, cross-entropy,
   backward, ``optimizer.step()`` — nothing else;
2. ``noisylab.torch.trainer.Trainer`` with the default cross-entropy strategy
   (per-epoch metrics, no validation/test split, no checkpoints);
3. the trainer plus ``DynamicsRecorder(mode="train_forward")`` (AUM style);
4. the trainer plus ``DynamicsRecorder(mode="eval_pass")`` (an extra
   evaluation pass over the training set per epoch: LSTM-detector style).

Each variant runs ``--repeats`` times, interleaved (so drifts of the machine
affect all alike); the time per epoch is the median over repeats of the
median epoch time without the first epoch (warm-up).  Ratios are against the
bare loop (trainer) and against the trainer (recording overhead).

Usage::

    python benchmarks/train_overhead.py                 # mnist1d/cnn1d and digits/small_cnn
    python benchmarks/train_overhead.py --epochs 6 --repeats 5 --threads 2 --json out.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

from noisylab.torch.data import load_digits, load_mnist1d
from noisylab.torch.models import make_model
from noisylab.torch.recorder import DynamicsRecorder
from noisylab.torch.trainer import Callback, Trainer, TrainConfig


def bare_loop(X, y, model_name, K, epochs, batch_size, lr, seed):
    model = make_model(model_name, tuple(X.shape[1:]), K, random_state=seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    n = X.shape[0]
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            loss = F.cross_entropy(model(X[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - t0)
    return times


class _EpochTimes(Callback):
    def __init__(self):
        self.times = []

    def on_epoch_begin(self, trainer, epoch):
        self._t0 = time.perf_counter()

    def on_epoch_end(self, trainer, metrics):
        self.times.append(time.perf_counter() - self._t0)


def with_trainer(X, y, model_name, K, epochs, batch_size, lr, seed, record=None, tmpdir=None):
    timer = _EpochTimes()
    callbacks = []
    if record is not None:
        callbacks.append(DynamicsRecorder(os.path.join(tmpdir, f"dyn_{record}_{time.time_ns()}.npy"), mode=record))
    callbacks.append(timer)  # last: includes the recorder's end-of-epoch work
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, optimizer="adam", lr=lr, random_state=seed,
                      device="cpu")
    Trainer(lambda: make_model(model_name, tuple(X.shape[1:]), K, random_state=seed), cfg,
            callbacks=callbacks).fit(X.numpy(), y.numpy())
    return timer.times


def per_epoch(times):
    return statistics.median(times[1:] if len(times) > 1 else times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    configs = []
    mn = load_mnist1d()
    configs.append(("mnist1d (4000 x 1x40)", "cnn1d", mn.X, mn.y, mn.n_classes, 64, 1e-3))
    dg = load_digits()
    configs.append(("digits (1797 x 1x8x8)", "small_cnn", dg.X, dg.y, dg.n_classes, 64, 1e-2))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, model, X, y, K, bs, lr in configs:
            Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
            res = {"bare": [], "trainer": [], "train_forward": [], "eval_pass": []}
            for r in range(args.repeats):
                res["bare"].append(per_epoch(bare_loop(Xt, yt, model, K, args.epochs, bs, lr, r)))
                res["trainer"].append(per_epoch(with_trainer(Xt, yt, model, K, args.epochs, bs, lr, r)))
                for mode in ("train_forward", "eval_pass"):
                    res[mode].append(per_epoch(with_trainer(Xt, yt, model, K, args.epochs, bs, lr, r, mode, tmp)))
            med = {k: statistics.median(v) for k, v in res.items()}
            rows.append({"data": name, "model": model, "batch_size": bs, **{f"{k}_s": v for k, v in med.items()},
                         "trainer_vs_bare": med["trainer"] / med["bare"],
                         "train_forward_overhead": med["train_forward"] / med["trainer"] - 1,
                         "eval_pass_overhead": med["eval_pass"] / med["trainer"] - 1, "all": res})
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {args.epochs} epochs x {args.repeats} "
          f"repeats; seconds per epoch (median, first epoch excluded)\n")
    print("| data | model | bare loop | trainer | trainer / bare | + record train_forward | + record eval_pass |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['data']} | {r['model']} | {r['bare_s']:.3f} | {r['trainer_s']:.3f} | {r['trainer_vs_bare']:.2f}x | "
              f"{r['train_forward_s']:.3f} ({r['train_forward_overhead']:+.0%}) | "
              f"{r['eval_pass_s']:.3f} ({r['eval_pass_overhead']:+.0%}) |")
    if args.json:
        from noisylab.io import atomic_write

        with atomic_write(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
