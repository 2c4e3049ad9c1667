"""Loader audit fixes: {path: label} JSON matched by path, CSV header/label rules shared with read_labels,
recursive image folders, damaged files and non-finite inputs named, CIFAR label/meta checks."""
import json
import os
import pickle
import types
import warnings

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("PIL")

from noisylab._validation import NoisylabInputError
from noisylab.cli import _read_mask, _training_labels
from noisylab.io import LabelData, align_labels, read_labels
from noisylab.torch.data import (
    get_dataset,
    image_folder_files,
    load_arrays,
    load_cifar,
    load_image_folder,
)


def _png(path, value, size=(3, 3)):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size, value, dtype=np.uint8), mode="L").save(path)


def _args(labels, dataset):
    return types.SimpleNamespace(labels=str(labels), dataset=str(dataset), noise=None, seed=0)


@pytest.fixture
def folder(tmp_path):
    """train/{t, t-shirt}/ ('-' sorts before '/'), a nested sub-folder, hidden entries, and a test/ split."""
    root = tmp_path / "imgs"
    for cls, names in (("t", ["0.png", "10.png", "2.png"]), ("t-shirt", ["0.png", "1.png"])):
        for k, n in enumerate(names):
            _png(root / "train" / cls / n, 10 * k + (100 if cls == "t-shirt" else 0))
    _png(root / "train" / "t" / "sub" / "5.png", 77)
    _png(root / "train" / ".ipynb_checkpoints" / "x.png", 1)   # hidden folder: not a class
    _png(root / "train" / "t" / ".hidden" / "h.png", 2)        # hidden sub-folder: skipped
    (root / "train" / "t" / "._0.png").write_bytes(b"\x00\x05\x16\x07AppleDouble")  # macOS metadata: skipped
    _png(root / "test" / "t" / "0.png", 3)
    return root


# ------------------------------------------------------------------------- 1, 2: {path: label} JSON
def test_path_json_is_matched_to_image_folder_files_not_sorted(folder, tmp_path):
    ds = load_image_folder(folder)
    files = image_folder_files(folder)
    assert ds.class_names == ["t", "t-shirt"]
    assert files == ["t/0.png", "t/10.png", "t/2.png", "t/sub/5.png", "t-shirt/0.png", "t-shirt/1.png"]
    assert ds.y.tolist() == [0, 0, 0, 0, 1, 1]
    # noisy labels: t/2.png is labelled t-shirt; CL-paper style absolute keys, written in a shuffled order
    given = {f: ("t-shirt" if f in ("t/2.png",) or f.startswith("t-shirt/") else "t") for f in files}
    keys = [f"/datasets/imgs/train/{f}" for f in files]
    order = [4, 0, 5, 2, 1, 3]
    (tmp_path / "y.json").write_text(json.dumps({keys[i]: given[files[i]] for i in order}))
    y, true = _training_labels(_args(tmp_path / "y.json", folder), ds.y, ds.class_names)
    assert y.tolist() == [0, 0, 1, 0, 1, 1] and true.tolist() == ds.y.tolist()
    # integer values too
    (tmp_path / "yi.json").write_text(json.dumps({keys[i]: int(given[files[i]] == "t-shirt") for i in order}))
    y, _ = _training_labels(_args(tmp_path / "yi.json", folder), ds.y, ds.class_names)
    assert y.tolist() == [0, 0, 1, 0, 1, 1]


def test_read_labels_json_order_is_path_component_order(tmp_path):
    obj = {"train/t-shirt/0.png": 1, "train/t/0.png": 0, "train/t/1.png": 0}
    (tmp_path / "y.json").write_text(json.dumps(obj))
    lab = read_labels(tmp_path / "y.json")
    assert lab.ids.tolist() == ["train/t/0.png", "train/t/1.png", "train/t-shirt/0.png"]
    assert lab.values.tolist() == [0, 0, 1]
    (tmp_path / "r.json").write_text(json.dumps({"10": "b", "2": "a", "0": "c", "1": "a", "3": "a", "4": "a",
                                                 "5": "a", "6": "a", "7": "a", "8": "a", "9": "a"}))
    lab = read_labels(tmp_path / "r.json")
    assert lab.ids.tolist()[:4] == ["0", "1", "2", "3"] and lab.values.tolist()[-1] == "b"  # numeric, not "10" < "2"


def test_path_json_mismatch_and_test_keys_are_named(folder, tmp_path):
    ds = load_image_folder(folder)
    files = image_folder_files(folder)
    obj = {f"train/{f}": 0 for f in files[1:]}
    obj["train/t/zzz.png"] = 0
    obj["test/t/0.png"] = 0  # a test-split file, even though train has t/0.png
    (tmp_path / "y.json").write_text(json.dumps(obj))
    with pytest.raises(NoisylabInputError, match=r"2 key\(s\) match no file: 'test/t/0.png', 'train/t/zzz.png'.*"
                                                 r"1 file\(s\) have no key: 't/0.png'"):
        _training_labels(_args(tmp_path / "y.json", folder), ds.y, ds.class_names)


def test_path_json_refused_without_file_paths(tmp_path):
    X = np.arange(8, dtype=float).reshape(4, 2)
    np.savez(tmp_path / "d.npz", X=X, y=np.array([0, 1, 0, 1]))
    (tmp_path / "y.json").write_text(json.dumps({f"train/c/{i}.png": i % 2 for i in range(4)}))
    with pytest.raises(NoisylabInputError, match=r"keyed by file path.*no file paths.*row indices"):
        _training_labels(_args(tmp_path / "y.json", tmp_path / "d.npz"), np.array([0, 1, 0, 1]), ["0", "1"])
    # a JSON keyed by row index is put in row order
    (tmp_path / "r.json").write_text(json.dumps({"3": 0, "0": 1, "2": 1, "1": 1}))
    y, _ = _training_labels(_args(tmp_path / "r.json", tmp_path / "d.npz"), np.array([0, 1, 0, 1]), ["0", "1"])
    assert y.tolist() == [1, 1, 1, 0]
    with pytest.raises(NoisylabInputError, match=r"not each of 0..3 once.*out of range: '4'"):
        align_labels(LabelData(np.array([0, 1, 0, 1]), np.array(["1", "2", "3", "4"])), 4)


def test_labels_file_errors_name_the_file(tmp_path):
    np.save(tmp_path / "f.npy", np.array([0.0, 1.0, 2.0]))
    y, _ = _training_labels(_args(tmp_path / "f.npy", "x"), np.array([2, 2, 2]), ["a", "b", "c"])
    assert y.tolist() == [0, 1, 2]  # whole-number floats are class indices, not names
    np.save(tmp_path / "g.npy", np.array([0.0, 1.5, 2.0]))
    with pytest.raises(NoisylabInputError, match=r"g\.npy: label 1\.5 at row 1 is not a whole number"):
        _training_labels(_args(tmp_path / "g.npy", "x"), np.array([2, 2, 2]), ["a", "b", "c"])
    np.save(tmp_path / "h.npy", np.array([0, 3, 1]))
    with pytest.raises(NoisylabInputError, match=r"--labels .*h\.npy: label 3 is not one of the 3 classes"):
        _training_labels(_args(tmp_path / "h.npy", "x"), np.array([2, 2, 2]), ["a", "b", "c"])
    (tmp_path / "n.json").write_text('["a", null, "b"]')
    with pytest.raises(NoisylabInputError, match=r"n\.json: 1 label\(s\) are null, the first at position 1"):
        read_labels(tmp_path / "n.json")
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(NoisylabInputError, match=r"bad\.npz"):
        read_labels(tmp_path / "bad.npz")


def test_read_mask_names_damaged_file(tmp_path):
    (tmp_path / "m.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(NoisylabInputError, match=r"m\.npy"):
        _read_mask(tmp_path / "m.npy")


# ------------------------------------------------------------------------- 3: CSV
def test_csv_float_labels_pandas_header_and_shared_label_names(tmp_path):
    p = tmp_path / "f.csv"
    p.write_text("".join(f"{i}.5,{float(i)}\n" for i in range(12)))
    ds = load_arrays(p)
    assert ds.y.tolist() == list(range(12)) and ds.class_names == [str(i) for i in range(12)]
    q = tmp_path / "pd.csv"  # pd.DataFrame(np.c_[X, y]).to_csv(index=False)
    q.write_text("0,1,2\n0.5,1.5,1.0\n2.5,3.5,0.0\n4.5,5.5,1.0\n6.5,7.5,0.0\n")
    ds = load_arrays(q)
    assert len(ds) == 4 and ds.X[0].tolist() == [0.5, 1.5] and ds.y.tolist() == [1, 0, 1, 0]
    r = tmp_path / "cls.csv"
    r.write_text("class,f1,f2\n0,1.5,2.25\n1,3.0,4.75\n2,4.5,6.5\n")
    ds = load_arrays(r)
    assert ds.y.tolist() == [0, 1, 2] and ds.X.tolist() == [[1.5, 2.25], [3.0, 4.75], [4.5, 6.5]]
    assert ds.meta["label_column"] == "class"
    (tmp_path / "l.csv").write_text("class\n0\n1\n2\n")
    assert read_labels(tmp_path / "l.csv").values.tolist() == [0, 1, 2]  # the same name in read_labels
    (tmp_path / "two.csv").write_text("noisy_label,f,true_label\n0,1,1\n1,2,1\n")
    with pytest.raises(NoisylabInputError, match="several columns have a label name"):
        load_arrays(tmp_path / "two.csv")
    assert load_arrays(tmp_path / "two.csv", label_column="noisy_label").X.tolist() == [[1, 1], [2, 1]]


def test_csv_bom_empty_label_and_label_column_zero(tmp_path):
    p = tmp_path / "bom.csv"
    p.write_bytes("1,2,0\n3,4,1\n5,6,0\n".encode("utf-8-sig"))
    ds = load_arrays(p)
    assert len(ds) == 3 and ds.X[0].tolist() == [1, 2]
    q = tmp_path / "e.csv"
    q.write_text("f,label\n1,0\n2,\n3,1\n")
    with pytest.raises(NoisylabInputError, match=r"data row 1 has an empty label"):
        load_arrays(q)
    (tmp_path / "el.csv").write_text("id,label\na,0\nb,\n")
    with pytest.raises(NoisylabInputError, match=r"data row 1 has an empty label"):
        read_labels(tmp_path / "el.csv")
    r = tmp_path / "c0.csv"
    r.write_text("cat,1,2\ndog,3,4\ncat,5,6\n")
    ds = load_arrays(r, label_column=0)
    assert len(ds) == 3 and ds.y.tolist() == [0, 1, 0] and ds.meta["label_column"] == 0


# ------------------------------------------------------------------------- 4: sub-folders, hidden entries
def test_image_folder_recurses_in_torchvision_order_and_skips_hidden(folder):
    ds = load_image_folder(folder)
    assert len(ds) == 6 and ds.X_test.shape[0] == 1
    # torchvision make_dataset: sorted(os.walk(class_dir)), then sorted file names (hidden entries dropped)
    ref = []
    for c in ds.class_names:
        for d, _, fs in sorted(os.walk(folder / "train" / c)):
            if "/." in d:
                continue
            ref += [os.path.relpath(os.path.join(d, f), folder / "train") for f in sorted(fs) if not f.startswith(".")]
    assert image_folder_files(folder) == ref
    assert ds.X[3, 0, 0, 0] == np.float32(77 / np.float32(255))  # t/sub/5.png is row 3


# ------------------------------------------------------------------------- 5, 6: damaged files, NaN
def test_truncated_image_and_corrupt_npz_are_named(tmp_path):
    from PIL import Image

    root = tmp_path / "imgs"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / cls / "x.jpg")
    bad = root / "b" / "x.jpg"
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    with pytest.raises(NoisylabInputError, match=r"Could not read image .*b/x\.jpg.*truncated"):
        load_image_folder(root)
    (tmp_path / "d.npz").write_bytes(b"not a zip at all")
    with pytest.raises(NoisylabInputError, match=r"d\.npz"):
        get_dataset(tmp_path / "d.npz")


def test_non_finite_inputs_name_file_and_row(tmp_path):
    np.savez(tmp_path / "n.npz", X=np.array([[0.0, 1.0], [2.0, 3.0], [np.nan, 1.0], [2.0, np.inf]]),
             y=np.array([0, 1, 0, 1]))
    with pytest.raises(NoisylabInputError, match=r"n\.npz: the inputs hold NaN or infinite values in 2 row\(s\), "
                                                 r"the first in row 2"):
        load_arrays(tmp_path / "n.npz")
    (tmp_path / "n.csv").write_text("f1,f2,label\n1,2,0\ninf,3,1\n")
    with pytest.raises(NoisylabInputError, match=r"n\.csv: the features .* first in row 1"):
        load_arrays(tmp_path / "n.csv")


# ------------------------------------------------------------------------- 7: low findings
def test_sparse_integer_labels_warn(tmp_path):
    np.savez(tmp_path / "d.npz", X=np.ones((3, 2)), y=np.array([1, 2, 3]))
    with pytest.warns(UserWarning, match=r"leaves 1 of these 4 classes without examples \(e\.g\. class 0\)"):
        ds = load_arrays(tmp_path / "d.npz")
    assert ds.n_classes == 4
    np.savez(tmp_path / "ok.npz", X=np.ones((3, 2)), y=np.array([0, 2, 1]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_arrays(tmp_path / "ok.npz")


def _cifar10(root, labels4=None, names=None):
    root.mkdir(parents=True)
    for i in range(1, 6):
        lab = labels4 if (i == 4 and labels4 is not None) else [i % 10, (i + 1) % 10]
        with open(root / f"data_batch_{i}", "wb") as fh:
            pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": lab}, fh)
    with open(root / "test_batch", "wb") as fh:
        pickle.dump({b"data": np.zeros((1, 3072), np.uint8), b"labels": [3]}, fh)
    with open(root / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": names or [f"c{k}".encode() for k in range(10)]}, fh)
    return root


def test_cifar_label_errors_name_the_batch_and_meta_checks(tmp_path):
    root = _cifar10(tmp_path / "a" / "cifar-10-batches-py", labels4=[1, 10])
    with pytest.raises(NoisylabInputError, match=r"data_batch_4 has class index 10 \(at index 1\)"):
        load_cifar(root)
    with pytest.raises(NoisylabInputError, match=r"holds no images.*CIFAR python folder: give that folder itself"):
        get_dataset(tmp_path / "a")
    dup = _cifar10(tmp_path / "b", names=[b"x"] * 10)
    with pytest.raises(NoisylabInputError, match=r"batches\.meta: 'label_names' names a class more than once"):
        load_cifar(dup)
    more = _cifar10(tmp_path / "c", names=[f"c{k}".encode() for k in range(11)])
    with pytest.warns(UserWarning, match=r"has 11 class names; the official release has 10"):
        assert load_cifar(more).n_classes == 11
