"""The demo pipeline (noise -> CV probabilities -> confident learning -> prune -> retrain), in quick mode."""
import numpy as np
import pytest

pytest.importorskip("torch")

from noisylab.demo import run_demo  # noqa: E402
from noisylab.metrics import detection_auroc, detection_precision_recall_f1  # noqa: E402

KEYS = {"dataset", "model", "epochs", "folds", "random_state", "n_classes", "n_train", "n_test", "noise_rate",
        "requested_noise_rate", "n_flipped", "oof_accuracy_noisy", "oof_accuracy_true", "n_issues",
        "n_true_positive", "precision", "recall", "f1", "auroc", "average_precision", "estimated_noise_rate",
        "noise_matrix_mae", "n_train_pruned", "wrong_labels_after_pruning", "test_accuracy_noisy",
        "test_accuracy_pruned", "test_accuracy_clean", "issue_mask", "flip_mask", "noisy_labels", "true_labels",
        "pred_probs", "seconds"}


@pytest.fixture(scope="module")
def quick40():
    lines = []
    res = run_demo(noise_rate=0.4, random_state=0, quick=True, out=lines.append)
    return res, lines


def test_quick_digits_figures_are_consistent(quick40):
    res, lines = quick40
    assert KEYS <= set(res)
    assert res["dataset"] == "digits" and res["model"] == "small_cnn" and res["folds"] == 4
    assert (res["n_train"], res["n_test"]) == (1257, 540)  # stratified 70/30 split of 1797
    flip, issue = res["flip_mask"], res["issue_mask"]
    assert flip.shape == issue.shape == (1257,)
    assert res["n_flipped"] == int(flip.sum()) == round(0.4 * 1257)  # exact mode, train labels only
    np.testing.assert_array_equal(flip, res["noisy_labels"] != res["true_labels"])
    m = detection_precision_recall_f1(issue, flip)
    assert res["precision"] == m["precision"] and res["recall"] == m["recall"] and res["f1"] == m["f1"]
    assert res["n_issues"] == int(issue.sum()) and res["n_true_positive"] == m["n_true_positive"]
    assert res["n_train_pruned"] == res["n_train"] - res["n_issues"]
    assert res["wrong_labels_after_pruning"] == int((flip & ~issue).sum())
    P = res["pred_probs"]
    assert P.shape == (1257, 10) and np.allclose(P.sum(1), 1)
    assert res["auroc"] == pytest.approx(detection_auroc(flip, P[np.arange(1257), res["noisy_labels"]]))
    assert res["precision"] > 0.8 and res["recall"] > 0.7 and res["auroc"] > 0.9
    assert abs(res["estimated_noise_rate"] - 0.4) < 0.1
    # the ceiling beats the noisy labels; pruning does not hurt beyond a small tolerance
    assert res["test_accuracy_clean"] > res["test_accuracy_noisy"]
    assert res["test_accuracy_pruned"] >= res["test_accuracy_noisy"] - 0.02
    assert all(0 <= res[k] <= 1 for k in ("test_accuracy_noisy", "test_accuracy_pruned", "test_accuracy_clean"))


def test_report_states_what_was_measured(quick40):
    res, lines = quick40
    text = "\n".join(lines)
    assert "1257 train / 540 test" in text and "on the 1257 train labels only" in text
    assert "4-fold CV of small_cnn" in text and "503 labels changed" in text
    assert f"{res['n_issues']} issues flagged; {res['n_true_positive']} of them are real flips" in text
    assert f"precision {res['precision']:.3f}  recall {res['recall']:.3f}" in text
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert table[0] == "| train labels | examples | wrong labels | test accuracy |" and len(table) == 5
    assert table[2].startswith("| noisy | 1257 |") and table[2].endswith(f"| {res['test_accuracy_noisy']:.3f} |")
    assert table[3].startswith(f"| pruned (CL issues removed) | {res['n_train_pruned']} |")
    assert table[4].endswith(f"| {res['test_accuracy_clean']:.3f} |")


def test_same_seed_same_figures(quick40):
    res, _ = quick40
    again = run_demo(noise_rate=0.4, random_state=0, quick=True, out=lambda s: None)
    for k, v in res.items():
        if k.startswith("seconds"):
            continue
        if isinstance(v, np.ndarray):
            np.testing.assert_array_equal(v, again[k], err_msg=k)
        else:
            assert v == again[k], k


def test_logreg_path_and_old_signature():
    lines = []
    res = run_demo(noise_rate=0.3, kind="symmetric", filter_by="prune_by_noise_rate", folds=5, random_state=0,
                   model="logreg", print_fn=lines.append)
    assert res["model"] == "logreg" and res["epochs"] is None and res["folds"] == 5
    assert res["n_flipped"] == 377 and res["precision"] > 0.85 and res["recall"] > 0.85
    assert res["test_accuracy_clean"] > res["test_accuracy_noisy"]
    assert res["n_train_pruned"] == 1257 - res["n_issues"]
    assert any("logistic regression" in line for line in lines)


def test_quick_mnist1d():
    res = run_demo(dataset="mnist1d", quick=True, noise_rate=0.2, out=lambda s: None)
    assert (res["dataset"], res["model"], res["n_train"], res["n_test"]) == ("mnist1d", "cnn1d", 1000, 500)
    assert res["n_flipped"] == 200 and res["n_train_pruned"] == 1000 - res["n_issues"]
    assert res["issue_mask"].shape == (1000,)


@pytest.mark.parametrize("kw,msg", [
    (dict(dataset="digitz"), "Did you mean 'digits'?"),
    (dict(model="small_cnnn"), "Did you mean 'small_cnn'?"),
    (dict(folds=1), "folds must be an int >= 2"),
    (dict(noise_rate=1.5), "noise_rate must be in"),
    (dict(epochs=0), "epochs must be an int >= 1"),
    (dict(n_train=100), "dataset='mnist1d' only"),
])
def test_bad_arguments(kw, msg):
    from noisylab._validation import NoisylabInputError

    with pytest.raises(NoisylabInputError, match=msg.replace("?", r"\?").replace("(", r"\(")):
        run_demo(out=lambda s: None, **kw)
