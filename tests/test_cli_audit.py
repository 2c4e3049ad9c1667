"""CLI behaviour fixed after the user-side audit: outputs that would overwrite inputs, the step
schedule's milestones, the summary without a validation split, UTF-8 files under any locale."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from noisylab.cli import main


def _probs(tmp_path, n=60, K=3):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "p.npy", rng.dirichlet(np.ones(K), size=n))
    np.save(tmp_path / "y.npy", rng.integers(0, K, n))
    return tmp_path / "y.npy", tmp_path / "p.npy"


@pytest.mark.parametrize("flag", ["--out", "--keep-mask"])
def test_find_issues_refuses_to_overwrite_its_labels(tmp_path, capsys, flag):
    y, p = _probs(tmp_path)
    before = y.read_bytes()
    target = os.path.relpath(y) if flag == "--out" else str(y)  # relative and absolute spellings
    rc = main(["find-issues", "--labels", str(y), "--pred-probs", str(p), flag, target])
    err = capsys.readouterr().err
    assert rc == 2 and "overwrite that input" in err and "--labels" in err
    assert y.read_bytes() == before


def test_bench_results_refuses_to_overwrite_the_store(tmp_path, capsys):
    store = tmp_path / "s.jsonl"
    rec = {"key": "k1", "spec": {"m": "a", "seed": 0}, "result": {"acc": 0.5}, "meta": {}}
    store.write_text(json.dumps(rec) + "\n", encoding="utf-8")
    before = store.read_bytes()
    for extra in (["--out", str(store)], ["--report", str(tmp_path / "s.html"), "--out", str(store)]):
        rc = main(["bench", "results", str(store), *extra])
        assert rc == 2 and "result store" in capsys.readouterr().err
        assert store.read_bytes() == before
    assert not (tmp_path / "s.html").exists()


def test_train_step_schedule_defaults_and_parses_milestones(tmp_path, capsys):
    pytest.importorskip("torch")
    out = tmp_path / "run"
    rc = main(["train", "--dataset", "digits", "--epochs", "4", "--schedule", "step", "--lr", "0.01",
               "--out", str(out)])
    assert rc == 0
    hist = json.loads((out / "history.json").read_text())
    epochs = hist if isinstance(hist, list) else hist["epochs"]
    # default milestones (2, 3) = 50% and 75% of 4 epochs, gamma 0.1
    assert [e["lr"] for e in epochs] == pytest.approx([0.01, 0.01, 0.001, 0.0001])
    assert "best noisy-validation epoch" in capsys.readouterr().out

    out2 = tmp_path / "run2"
    rc = main(["train", "--dataset", "digits", "--epochs", "3", "--schedule", "step", "--milestones", "1",
               "--gamma", "0.5", "--lr", "0.01", "--val-fraction", "0", "--out", str(out2)])
    assert rc == 0
    hist = json.loads((out2 / "history.json").read_text())
    epochs = hist if isinstance(hist, list) else hist["epochs"]
    assert [e["lr"] for e in epochs] == pytest.approx([0.01, 0.005, 0.005])
    text = capsys.readouterr().out
    assert "no validation split" in text and "best noisy-validation" not in text

    rc = main(["train", "--dataset", "digits", "--epochs", "3", "--schedule", "step", "--milestones", "1,x",
               "--out", str(tmp_path / "run3")])
    assert rc == 2 and "--milestones must be comma-separated ints" in capsys.readouterr().err


def test_text_outputs_and_class_files_are_utf8_under_an_ascii_locale(tmp_path):
    """atomic_write and --classes files use UTF-8 whatever the locale (an ASCII locale failed on '±')."""
    script = textwrap.dedent(f"""
        import locale, pathlib
        assert locale.getpreferredencoding(False).lower() in ("ansi_x3.4-1968", "ascii"), locale.getpreferredencoding(False)
        from noisylab.io import atomic_write, parse_class_names
        with atomic_write({str(tmp_path / "o.md")!r}, "w") as fh:
            fh.write("0.50 \\u00b1 0.01 caf\\u00e9")
        pathlib.Path({str(tmp_path / "c.txt")!r}).write_bytes("chat\\ncaf\\u00e9\\n".encode("utf-8"))
        print(ascii(parse_class_names({str(tmp_path / "c.txt")!r}).tolist()))
    """)
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    res = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, encoding="utf-8")
    if "AssertionError" in res.stderr and "getpreferredencoding" not in res.stderr and res.returncode:
        pytest.skip(f"this platform does not give an ASCII locale: {res.stderr[-200:]}")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "o.md").read_bytes() == "0.50 ± 0.01 café".encode("utf-8")
    assert res.stdout.strip() == ascii(["chat", "caf\u00e9"])


def test_trainer_warns_once_when_the_loss_diverges():
    torch = pytest.importorskip("torch")
    from noisylab.torch.trainer import Trainer, TrainConfig

    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 4)).astype(np.float32)
    y = rng.integers(0, 2, 64)

    def model():
        return torch.nn.Sequential(torch.nn.Linear(4, 2))

    X *= 1e30  # with lr 1e30 the first step overflows the weights: the loss is NaN from epoch 1 on
    cfg = TrainConfig(epochs=3, batch_size=64, val_fraction=0.0, lr=1e30, optimizer="sgd", device="cpu")
    with pytest.warns(RuntimeWarning, match=r"epoch 1: the training loss is nan; the training diverged") as rec:
        trainer = Trainer(model, cfg).fit(X, y)
    assert np.isfinite(trainer.history_[0]["train_loss"]) and np.isnan(trainer.history_[2]["train_loss"])
    assert sum("diverged" in str(w.message) for w in rec) == 1
