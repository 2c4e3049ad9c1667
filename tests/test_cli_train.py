"""`noisylab train`: noisy / pruned training from the command line, resumable, no test-set selection."""
import json

import numpy as np
import pytest

pytest.importorskip("torch")

from noisylab.cli import main  # noqa: E402


def test_train_with_noise_and_mask_writes_results_and_resumes(tmp_path, capsys):
    common = ["train", "--dataset", "digits", "--noise", "symmetric:0.4", "--epochs", "3", "--lr", "0.01",
              "--seed", "2"]
    keep = np.ones(1257, dtype=bool)
    keep[::4] = False
    np.save(tmp_path / "keep.npy", keep)
    out = tmp_path / "run"
    assert main(common + ["--train-mask", str(tmp_path / "keep.npy"), "--out", str(out)]) == 0
    res = json.loads((out / "result.json").read_text())
    hist = json.loads((out / "history.json").read_text())
    assert res["n_train"] == int(keep.sum()) and res["n_train_total"] == 1257 and res["n_test"] == 540
    assert len(hist) == 3 and res["test_acc_last_epoch"] == hist[-1]["test_acc"]
    best = int(np.argmax([h["val_acc"] for h in hist]))  # chosen on the noisy validation split
    assert res["best_epoch"] == best and res["test_acc_best_epoch"] == hist[best]["test_acc"]
    assert 0.35 * keep.sum() < res["wrong_labels_in_training"] < 0.45 * keep.sum()
    # rerun: resumes from the finished checkpoint and reports the same figures
    assert main(common + ["--train-mask", str(tmp_path / "keep.npy"), "--out", str(out)]) == 0
    again = json.loads((out / "result.json").read_text())
    assert again["test_acc_best_epoch"] == res["test_acc_best_epoch"]
    assert "at the best noisy-validation epoch" in capsys.readouterr().out


def test_train_bad_mask(tmp_path, capsys):
    np.save(tmp_path / "m.npy", np.ones(10, dtype=bool))
    assert main(["train", "--dataset", "digits", "--train-mask", str(tmp_path / "m.npy"), "--out",
                 str(tmp_path / "o")]) == 2
    assert "boolean .npy of shape (1257,)" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["coteaching", "coteaching_plus", "forward", "bootstrap_soft", "bootstrap_hard"])
def test_train_methods_run_and_are_recorded(tmp_path, method):
    out = tmp_path / method
    assert main(["train", "--dataset", "gaussian", "--noise", "pair:0.3", "--method", method, "--epochs", "2",
                 "--out", str(out)]) == 0
    res = json.loads((out / "result.json").read_text())
    assert res["method"] == method and res["config"]["epochs"] == 2


def test_train_method_errors(tmp_path, capsys):
    base = ["train", "--dataset", "gaussian", "--epochs", "1", "--out", str(tmp_path / "o")]
    assert main(base + ["--method", "coteaching"]) == 2
    assert "needs --forget-rate" in capsys.readouterr().err
    assert main(base + ["--method", "forward"]) == 2
    assert "needs --transition FILE" in capsys.readouterr().err
    assert main(base + ["--method", "coteachin"]) == 2
    assert "Did you mean 'coteaching'" in capsys.readouterr().err


def test_train_incv_validates_on_the_shared_noisy_split(tmp_path):
    from noisylab.torch.trainer import validation_split

    out = tmp_path / "incv"
    assert main(["train", "--dataset", "gaussian", "--noise", "symmetric:0.3", "--method", "incv", "--epochs", "2",
                 "--out", str(out)]) == 0
    res = json.loads((out / "result.json").read_text())
    assert res["config"]["incv_validation"] == "shared"
    n_val = len(validation_split(np.zeros(res["n_train"], dtype=int), res["config"]["val_fraction"], 0)[1])
    assert 0 < res["method_details"]["n_selected"] <= res["n_train"] - n_val  # S never holds a validation row
    assert res["selection"] == "best epoch on the noisy validation split"
