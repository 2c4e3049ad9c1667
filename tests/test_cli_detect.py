"""`noisylab detect` and `noisylab train-detector` on tiny data (gaussian blobs, MLP)."""
import csv

import numpy as np
import pytest

pytest.importorskip("torch")

from noisylab.cli import main  # noqa: E402
from noisylab.noise import make_noise  # noqa: E402
from noisylab.torch.data import load_gaussian_mixture  # noqa: E402
from noisylab.torch.detector import NoiseDetector  # noqa: E402
from noisylab.torch.models import make_model  # noqa: E402
from noisylab.torch.recorder import DynamicsRecorder  # noqa: E402
from noisylab.torch.trainer import TrainConfig, Trainer  # noqa: E402


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    d = tmp_path_factory.mktemp("dyn")
    ds = load_gaussian_mixture(n=600, n_classes=3, random_state=0)
    nl = make_noise("symmetric", ds.y, 0.3, exact=True, random_state=0)
    Trainer(lambda: make_model("mlp", (2,), 3, random_state=0), TrainConfig(epochs=6, lr=0.01),
            callbacks=[DynamicsRecorder(d / "dyn.npy", mode="eval_pass", true_labels=ds.y)]).fit(ds.X, nl.noisy_labels)
    return d / "dyn.npy", nl


def test_detect_on_recording_writes_ranked_csv(recording, tmp_path, capsys):
    path, nl = recording
    out = tmp_path / "s.csv"
    assert main(["detect", "--method", "confidence", "--dynamics", str(path), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    auroc = float(text.split("auroc ")[1].split(",")[0])
    assert auroc > 0.9  # easy blobs
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 600 and [float(r["label_quality"]) for r in rows] == sorted(float(r["label_quality"]) for r in rows)
    # the summary on stdout lists the same 10 lowest rows (so a run without --out shows something)
    assert "The 10 lowest label qualities of 600 examples (confidence" in text
    table = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| index")]
    assert [int(line.split("|")[1]) for line in table] == [int(r["index"]) for r in rows[:10]]
    # given labels and truth columns agree with the noise that was injected
    for r in rows[:20]:
        i = int(r["index"])
        assert int(r["given_label"]) == nl.noisy_labels[i] and (r["is_noisy"] == "True") == bool(nl.flip_mask[i])


def test_detect_errors(recording, capsys):
    path, _ = recording
    assert main(["detect", "--method", "cl", "--dynamics", str(path)]) == 2
    assert "needs --dataset" in capsys.readouterr().err
    assert main(["detect", "--method", "lstm", "--dynamics", str(path), "--remove", "0.2"]) == 2
    assert "--remove / --repair need --dataset" in capsys.readouterr().err
    assert main(["detect", "--method", "lstm"]) == 2
    assert "exactly one of --dynamics" in capsys.readouterr().err
    assert main(["detect", "--method", "aumm", "--dynamics", str(path)]) == 2
    assert "Did you mean 'aum'" in capsys.readouterr().err


def test_train_detector_then_detect_on_a_dataset_with_retraining(tmp_path, capsys):
    det = tmp_path / "det.pt"
    assert main(["train-detector", "--dataset", "gaussian", "--noise", "symmetric:0.3", "--epochs", "5",
                 "--detector-epochs", "2", "--out", str(det)]) == 0
    assert "held-out AUROC" in capsys.readouterr().out
    loaded = NoiseDetector.load(det)
    assert loaded.metadata_["source"] == "gaussian" and loaded.metadata_["noise"] == "symmetric:0.3"
    assert main(["detect", "--method", "lstm", "--dataset", "gaussian", "--noise", "symmetric:0.3", "--seed", "1",
                 "--epochs", "5", "--detector", str(det), "--remove", "0.3"]) == 0
    out = capsys.readouterr().out
    assert "remove 0.3: test accuracy" in out and float(out.split("auroc ")[1].split(",")[0]) > 0.8
    assert main(["train-detector", "--dataset", "gaussian", "--noise", "none", "--out", str(det)]) == 2
    assert "must synthesize some noise" in capsys.readouterr().err
    # a margin detector from two noise draws; fine-tuning across features is refused
    det_m = tmp_path / "det_m.pt"
    assert main(["train-detector", "--dataset", "gaussian", "--noise", "symmetric:0.3,pair:0.3", "--feature", "margin",
                 "--epochs", "5", "--detector-epochs", "2", "--out", str(det_m)]) == 0
    assert "(margin)" in capsys.readouterr().out
    m = NoiseDetector.load(det_m)
    assert m.feature_ == "margin" and m.metadata_["noise"] == "symmetric:0.3,pair:0.3"
    assert m.metadata_["n"] == 2 * loaded.metadata_["n"] and len(m.metadata_["noise_rate_realised"]) == 2
    assert main(["train-detector", "--dataset", "gaussian", "--init", str(det), "--feature", "margin",
                 "--out", str(tmp_path / "x.pt")]) == 2
    assert "fine-tune on the same feature" in capsys.readouterr().err
    np.testing.assert_array_equal(NoiseDetector.load(det).score(np.full((2, 5), 0.5, np.float32)),
                                  loaded.score(np.full((2, 5), 0.5, np.float32)))


def test_detect_default_model_is_the_benchs():
    from noisylab.cli import _detect_model

    assert _detect_model("digits", "auto") == "mlp" and _detect_model("mnist1d", "auto") == "cnn1d"
    assert _detect_model("gaussian", "auto") == "auto" and _detect_model("digits", "small_cnn") == "small_cnn"
