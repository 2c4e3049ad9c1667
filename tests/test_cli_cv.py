"""`noisylab cv-probs`: out-of-fold probabilities from the command line, fold by fold."""
import numpy as np
import pytest

pytest.importorskip("torch")

from noisylab.cli import main  # noqa: E402
from noisylab.cv import cv_folds  # noqa: E402


def test_fold_by_fold_then_combine_equals_one_run(tmp_path, capsys):
    out = tmp_path / "p.npy"
    common = ["cv-probs", "--dataset", "digits", "--model", "mlp", "--folds", "3", "--epochs", "3",
              "--noise", "symmetric:0.3", "--seed", "1"]
    for f in (2, 0, 1):
        assert main(common + ["--fold", str(f), "--out", str(out)]) == 0
    assert "run the others, then --combine" in capsys.readouterr().out
    assert main(common + ["--combine", "--out", str(out)]) == 0
    combined = np.load(out)
    one = tmp_path / "q.npy"
    assert main(common + ["--out", str(one)]) == 0
    np.testing.assert_array_equal(combined, np.load(one))
    labels = np.load(tmp_path / "p.labels.npz")
    flips = labels["noisy_labels"] != labels["true_labels"]
    np.testing.assert_array_equal(flips, labels["flip_mask"])
    assert abs(flips.mean() - 0.3) < 0.001
    np.testing.assert_allclose(combined.sum(1), 1, atol=1e-5)
    assert len(cv_folds(labels["noisy_labels"], 3, 1)) == 3


def test_logreg_and_bad_arguments(tmp_path, capsys):
    out = tmp_path / "p.npy"
    assert main(["cv-probs", "--dataset", "digits", "--model", "logreg", "--folds", "3", "--out", str(out)]) == 0
    assert "out-of-fold accuracy on the given labels 0.9" in capsys.readouterr().out
    assert main(["cv-probs", "--dataset", "digits", "--out", str(tmp_path / "p.csv")]) == 2
    assert "--out must be a .npy file" in capsys.readouterr().err
    assert main(["cv-probs", "--dataset", "digits", "--fold", "0", "--combine", "--out", str(out)]) == 2
    assert "exclude each other" in capsys.readouterr().err
    assert main(["cv-probs", "--dataset", "digitz", "--out", str(out)]) == 2
    assert "Did you mean 'digits'" in capsys.readouterr().err
    assert main(["cv-probs", "--dataset", "digits", "--noise", "symmetric", "--out", str(out)]) == 2
    assert "KIND:RATE" in capsys.readouterr().err
