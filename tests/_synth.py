"""Synthetic predicted probabilities with known label noise, for tests."""
import numpy as np


def make_pred_probs(n, K, *, noise=0.2, signal=3.0, dtype=np.float32, absent=0, quantize=None, seed=0):
    """Softmax of N(0,1) logits + ``signal`` on the true class; ``noise`` of labels flipped.

    ``absent`` classes (the last ones) never appear in the given labels;
    ``quantize`` rounds probabilities to multiples of it (creates ties).
    Returns (noisy_labels, pred_probs, true_labels).
    """
    rng = np.random.default_rng(seed)
    present = K - absent
    true = rng.integers(0, present, n)
    logits = rng.normal(size=(n, K))
    logits[np.arange(n), true] += signal * rng.uniform(0.3, 1.5, n)
    P = np.exp(logits - logits.max(1, keepdims=True))
    P /= P.sum(1, keepdims=True)
    if quantize:
        P = np.round(P / quantize) * quantize
        P[np.arange(n), P.argmax(1)] += 1 - P.sum(1)
        P = np.clip(P, 0, 1)
        P /= P.sum(1, keepdims=True)
    noisy = true.copy()
    flip = rng.random(n) < noise
    noisy[flip] = (true[flip] + rng.integers(1, present, flip.sum())) % present if present > 1 else true[flip]
    # make sure every present class appears at least twice
    noisy[: 2 * present] = np.repeat(np.arange(present), 2)
    return noisy, P.astype(dtype), true
