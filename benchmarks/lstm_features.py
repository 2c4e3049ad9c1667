"""Why the paper's LSTM detector trails AUM on pair-flip noise, and what its input changes.

The reference detector (METHODS.md §8) reads one number per epoch, ``p_t(ỹ)``.  This script trains
four LSTM detectors on MNIST-1D eval-pass dynamics (1-D CNN, 30 epochs, noise seed 0) that differ
only in their input and in the noise draws they learn from:

* ``p / sym``          ``p_t(ỹ)``, symmetric 0.3 (= the shipped ``lstm`` detector's recipe)
* ``p / sym+pair``     ``p_t(ỹ)``, symmetric 0.3 and pair 0.3 (two draws of the same data)
* ``margin / sym``     the logit margin ``z_ỹ − max_{j≠ỹ} z_j`` per epoch, symmetric 0.3
* ``margin / sym+pair`` the margin, symmetric 0.3 and pair 0.3 (= the shipped ``lstm_margin`` recipe)

and scores them on noise draws they never saw (seeds 1..S, rate 0.4; MNIST-1D with the 1-D CNN and
digits with the MLP, 30 epochs) next to two hand-made rankings of the same recordings: data-map
confidence (mean ``p_t(ỹ)``) and the AUM ranking of the eval-pass margins (mean margin, epoch 0
skipped).  AUROC against the true flips; higher = better.

Usage::

    python benchmarks/lstm_features.py                      # seeds 1,2,3 (about 8 minutes, 1 thread)
    python benchmarks/lstm_features.py --seeds 1 --out bench_results/lstm_features.md
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from noisylab.dynamics import aum_scores, margins
from noisylab.noise import make_noise
from noisylab.torch.data import get_dataset
from noisylab.torch.detector import NoiseDetector, label_probabilities
from noisylab.torch.recorder import load_dynamics


def record(ds_name, noise, seed, folder):
    """(p sequences, margin sequences, AUM ranking, is_noisy) of one eval-pass recording, rows in data order."""
    from noisylab.torch.detector import make_training_sequences

    ds = get_dataset(ds_name, **({"random_state": seed} if ds_name == "mnist1d" else {}))
    kind, rate = noise.split(":")
    nl = make_noise(kind, ds.y, float(rate), exact=True, random_state=seed)
    model = "cnn1d" if ds_name == "mnist1d" else "mlp"
    path = Path(folder) / f"{ds_name}_{kind}{rate}_{seed}.npy"
    make_training_sequences(ds.X, nl.noisy_labels, nl.true_labels, model=model, epochs=30, lr=3e-3,
                            random_state=seed, record_path=path)
    z, meta = load_dynamics(path)
    ids, y = meta["ids"], meta["labels"]
    out = [np.empty((len(ids), z.shape[1]), np.float32) for _ in range(2)] + [np.empty(len(ids))]
    out[0][ids] = label_probabilities(z, y)
    out[1][ids] = margins(z, y)
    out[2][ids] = aum_scores(z, y, skip_epochs=1)
    return (*out, nl.noisy_labels != nl.true_labels)


def auroc(flips, score_noisy):
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(flips, score_noisy))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="1,2,3", help="evaluation noise seeds (default: %(default)s)")
    ap.add_argument("--out", help="also write the markdown table here")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)  # tiny models (see noisylab.torch.detector.train_pretrained)
    seeds = [int(s) for s in args.seeds.split(",")]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        train = {nz: record("mnist1d", nz, 0, tmp) for nz in ("symmetric:0.3", "pair:0.3")}
        dets = {}
        for feat, col in (("p", 0), ("margin", 1)):
            for name, keys in (("sym", ["symmetric:0.3"]), ("sym+pair", ["symmetric:0.3", "pair:0.3"])):
                S = np.concatenate([train[k][col] for k in keys])
                F = np.concatenate([train[k][3] for k in keys])
                feature = "label_probability" if feat == "p" else "margin"
                dets[f"{feat} / {name}"] = NoiseDetector(epochs=10, feature=feature, random_state=0).fit(S, F)
        cols = ["confidence", "AUM (eval-pass margins)"] + list(dets)
        rows = []
        for ds_name in ("mnist1d", "digits"):
            for noise in ("pair:0.4", "symmetric:0.4"):
                vals = {c: [] for c in cols}
                for seed in seeds:
                    p, m, aum, flips = record(ds_name, noise, seed, tmp)
                    vals["confidence"].append(auroc(flips, -p.mean(axis=1)))
                    vals["AUM (eval-pass margins)"].append(auroc(flips, -aum))
                    for name, det in dets.items():
                        vals[name].append(auroc(flips, det.score(p if name.startswith("p ") else m)))
                rows.append((ds_name, noise, vals))
                print(ds_name, noise, {k: round(float(np.mean(v)), 4) for k, v in vals.items()}, flush=True)
    lines = [(f"AUROC against the true flips (mean over noise seeds {args.seeds}; detectors trained on MNIST-1D "
              "noise seed 0, rate 0.3). Columns 3-6: LSTM detectors, input / training draws."), "",
             "| data | noise | " + " | ".join(cols) + " |", "|---|---|" + "---:|" * len(cols)]
    for ds_name, noise, vals in rows:
        best = max(float(np.mean(v)) for v in vals.values())
        cells = []
        for c in cols:
            v = float(np.mean(vals[c]))
            cells.append(f"**{v:.4f}**" if v == best else f"{v:.4f}")
        lines.append(f"| {ds_name} | {noise} | " + " | ".join(cells) + " |")
    lines += ["", f"Total {time.perf_counter() - t0:.0f} s, torch {torch.__version__}, 1 thread."]
    text = "\n".join(lines)
    print("\n" + text)
    if args.out:
        from noisylab.io import atomic_write

        with atomic_write(args.out, "w") as fh:
            fh.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
