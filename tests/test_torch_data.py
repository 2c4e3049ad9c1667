"""Data sets of the PyTorch layer (noisylab.torch.data): loaders on files written here, values checked."""
import pickle
import random

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from noisylab._validation import NoisylabInputError
from noisylab.torch.data import (
    DATASETS,
    Dataset,
    get_dataset,
    load_arrays,
    load_cifar,
    load_digits,
    load_gaussian_mixture,
    load_image_folder,
    load_mnist1d,
    to_tensors,
)


# ------------------------------------------------------------------------------------ CIFAR
def _pickle(path, obj):
    with open(path, "wb") as fh:
        pickle.dump(obj, fh)


def _cifar_pixels(n, seed):
    return np.random.default_rng(seed).integers(0, 256, size=(n, 3072), dtype=np.uint8)


@pytest.fixture
def cifar10_dir(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    batches = []
    for i in range(1, 6):
        data = _cifar_pixels(4, i)
        labels = [(i + j) % 10 for j in range(4)]
        _pickle(root / f"data_batch_{i}", {b"data": data, b"labels": labels, b"batch_label": b"x"})
        batches.append((data, labels))
    test = _cifar_pixels(3, 99)
    _pickle(root / "test_batch", {b"data": test, b"labels": [7, 8, 9]})
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    _pickle(root / "batches.meta", {b"label_names": names, b"num_vis": 3072})
    return root, batches, test


def test_cifar10_pixels_labels_names(cifar10_dir):
    root, batches, test = cifar10_dir
    ds = load_cifar(root)
    assert ds.X.shape == (20, 3, 32, 32) and ds.X.dtype == np.float32
    assert ds.X_test.shape == (3, 3, 32, 32)
    assert ds.class_names[:2] == ["airplane", "automobile"] and ds.n_classes == 10
    assert ds.y.tolist() == [lab for _, labels in batches for lab in labels]
    assert ds.y_test.tolist() == [7, 8, 9]
    # row-major CIFAR layout: 1024 red, then green, then blue values; pixel (row, col) at row * 32 + col
    data = batches[1][0]  # examples 4..7
    for ch, row, col in [(0, 0, 0), (1, 5, 7), (2, 31, 30)]:
        assert ds.X[4 + 2, ch, row, col] == np.float32(data[2, ch * 1024 + row * 32 + col] / np.float32(255))
    assert ds.X_test[1, 2, 3, 4] == np.float32(test[1, 2048 + 3 * 32 + 4] / np.float32(255))
    np.testing.assert_allclose(ds.X.reshape(20, -1)[:4], batches[0][0] / 255.0, rtol=1e-6)
    assert get_dataset(str(root)).name == "cifar10"


def test_cifar10_missing_batch_is_named(cifar10_dir):
    root, _, _ = cifar10_dir
    (root / "data_batch_3").unlink()
    with pytest.raises(NoisylabInputError, match="data_batch_3"):
        load_cifar(root)


def test_cifar10_bad_shape(cifar10_dir):
    root, _, _ = cifar10_dir
    _pickle(root / "test_batch", {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]})
    with pytest.raises(NoisylabInputError, match=r"\(n, 3072\)"):
        load_cifar(root)


def test_cifar100(tmp_path):
    root = tmp_path / "cifar-100-python"
    root.mkdir()
    tr, te = _cifar_pixels(5, 1), _cifar_pixels(2, 2)
    _pickle(root / "train", {b"data": tr, b"fine_labels": [0, 99, 5, 42, 1], b"coarse_labels": [0] * 5})
    _pickle(root / "test", {b"data": te, b"fine_labels": [3, 98]})
    names = [f"class{i}".encode() for i in range(100)]
    _pickle(root / "meta", {b"fine_label_names": names, b"coarse_label_names": [b"c"] * 20})
    ds = get_dataset(root)
    assert ds.name == "cifar100" and ds.n_classes == 100 and ds.class_names[42] == "class42"
    assert ds.y.tolist() == [0, 99, 5, 42, 1] and ds.y_test.tolist() == [3, 98]
    assert ds.X[3, 1, 10, 20] == np.float32(tr[3, 1024 + 10 * 32 + 20] / np.float32(255))
    assert ds.X_test[0, 0, 0, 0] == np.float32(te[0, 0] / np.float32(255))


def test_not_a_cifar_folder(tmp_path):
    with pytest.raises(NoisylabInputError, match="not a CIFAR python folder"):
        load_cifar(tmp_path)


# ------------------------------------------------------------------------------------ image folders
def _png(path, array, mode):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8), mode=mode).save(path)


def test_image_folder_split_layout_rgb(tmp_path):
    rng = np.random.default_rng(0)
    pics = {}
    for split, n in (("train", 2), ("test", 1)):
        for cls in ("zebra", "ant", "cat"):
            for k in range(n):
                a = rng.integers(0, 256, size=(4, 5, 3))
                _png(tmp_path / split / cls / f"img{k}.png", a, "RGB")
                pics[(split, cls, k)] = a
    (tmp_path / "train" / "ant" / "notes.txt").write_text("ignored")
    ds = get_dataset(tmp_path)
    assert ds.class_names == ["ant", "cat", "zebra"]  # sorted, ImageFolder order
    assert ds.X.shape == (6, 3, 4, 5) and ds.X_test.shape == (3, 3, 4, 5)
    assert ds.y.tolist() == [0, 0, 1, 1, 2, 2] and ds.y_test.tolist() == [0, 1, 2]
    a = pics[("train", "cat", 1)]  # example 3
    assert ds.X[3, 2, 1, 4] == np.float32(a[1, 4, 2] / np.float32(255))
    np.testing.assert_allclose(ds.X_test[2], pics[("test", "zebra", 0)].transpose(2, 0, 1) / 255.0, rtol=1e-6)
    assert ds.meta["mode"] == "RGB"


def test_image_folder_flat_greyscale(tmp_path):
    _png(tmp_path / "b" / "1.png", np.full((3, 3), 200), "L")
    _png(tmp_path / "a" / "1.png", np.arange(9).reshape(3, 3) * 10, "L")
    ds = load_image_folder(tmp_path)
    assert ds.class_names == ["a", "b"] and ds.X.shape == (2, 1, 3, 3) and ds.X_test is None
    assert ds.X[0, 0, 2, 1] == np.float32(70 / np.float32(255)) and ds.X[1].max() == np.float32(200 / np.float32(255))
    assert load_image_folder(tmp_path, mode="RGB").X.shape == (2, 3, 3, 3)


def test_image_folder_mixed_modes_become_rgb(tmp_path):
    _png(tmp_path / "a" / "1.png", np.full((2, 2), 51), "L")
    _png(tmp_path / "b" / "1.png", np.zeros((2, 2, 3)), "RGB")
    ds = load_image_folder(tmp_path)
    assert ds.X.shape == (2, 3, 2, 2) and np.allclose(ds.X[0], 0.2)


def test_image_folder_errors(tmp_path):
    _png(tmp_path / "a" / "1.png", np.zeros((4, 4)), "L")
    _png(tmp_path / "b" / "2.png", np.zeros((5, 4)), "L")
    with pytest.raises(NoisylabInputError, match=r"2\.png has size 4x5.*1\.png has 4x4"):
        load_image_folder(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(NoisylabInputError, match="no class folders"):
        load_image_folder(empty)
    (empty / "c").mkdir()
    with pytest.raises(NoisylabInputError, match="holds no images"):
        load_image_folder(empty)


# ------------------------------------------------------------------------------------ arrays
def test_npz_with_test_split_and_string_labels(tmp_path):
    X = np.arange(24, dtype=np.float64).reshape(6, 4)
    p = tmp_path / "d.npz"
    np.savez(p, X=X, y=np.array(["dog", "cat", "dog", "bird", "cat", "dog"]),
             X_test=X[:2] + 0.5, y_test=np.array(["bird", "dog"]))
    ds = get_dataset(p)
    assert ds.class_names == ["bird", "cat", "dog"]
    assert ds.y.tolist() == [2, 1, 2, 0, 1, 2] and ds.y_test.tolist() == [0, 2]
    assert ds.X.dtype == np.float32 and ds.X[5, 3] == 23.0 and ds.X_test[1, 0] == 4.5


def test_npz_int_labels_with_class_names_and_missing_key(tmp_path):
    p = tmp_path / "d.npz"
    np.savez(p, features=np.ones((3, 1, 2, 2)), labels=np.array([0, 2, 1]), class_names=np.array(["x", "y", "z"]))
    ds = load_arrays(p)
    assert ds.input_shape == (1, 2, 2) and ds.class_names == ["x", "y", "z"] and ds.y.tolist() == [0, 2, 1]
    q = tmp_path / "nolabels.npz"
    np.savez(q, X=np.ones((3, 2)))
    with pytest.raises(NoisylabInputError, match="'y' or 'labels' for the labels"):
        load_arrays(q)
    np.save(tmp_path / "a.npy", np.ones(3))
    with pytest.raises(NoisylabInputError, match=r"\.npz.*\.csv"):
        load_arrays(tmp_path / "a.npy")


def test_csv_header_named_label_column(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("f1,target,f2\n1.5,cat,2\n3,dog,4\n5,cat,6\n")
    ds = load_arrays(p)
    assert ds.X.tolist() == [[1.5, 2.0], [3.0, 4.0], [5.0, 6.0]]
    assert ds.class_names == ["cat", "dog"] and ds.y.tolist() == [0, 1, 0]


def test_csv_no_header_last_column(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("0.1,0.2,b\n0.3,0.4,a\n")
    ds = get_dataset(p)
    assert ds.X.shape == (2, 2) and np.isclose(ds.X[1, 0], 0.3)
    assert ds.class_names == ["a", "b"] and ds.y.tolist() == [1, 0]
    q = tmp_path / "ints.csv"
    q.write_text("a,b,c\n1,2,0\n3,4,2\n")
    ds = load_arrays(q)
    assert ds.y.tolist() == [0, 2] and ds.class_names == ["0", "1", "2"] and ds.X.tolist() == [[1, 2], [3, 4]]


def test_csv_errors(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("f1,f2,cls\n1,2,a\n3,4,b\n")
    with pytest.raises(NoisylabInputError, match="label column 'label' not found"):
        load_arrays(p, label_column="label")
    assert load_arrays(p, label_column="cls").y.tolist() == [0, 1]
    bad = tmp_path / "bad.csv"
    bad.write_text("1,2,a\n3,x,b\n")
    with pytest.raises(NoisylabInputError, match="not a number"):
        load_arrays(bad)
    with pytest.raises(NoisylabInputError, match="File not found"):
        load_arrays(tmp_path / "missing.csv")


# ------------------------------------------------------------------------------------ built in
def test_digits_matches_sklearn():
    from sklearn.datasets import load_digits as sk

    ds = load_digits()
    ref = sk()
    assert ds.X.shape == (1797, 1, 8, 8) and ds.X.dtype == np.float32 and ds.X.max() == 1.0 and ds.X.min() == 0.0
    assert np.array_equal(np.bincount(ds.y), np.bincount(ref.target))
    np.testing.assert_allclose(ds.X[10, 0], ref.images[10] / 16.0, rtol=1e-6)
    assert ds.n_classes == 10 and ds.class_names[3] == "3"


def test_mnist1d_shapes_determinism_and_global_rng():
    np.random.seed(2024)
    random.seed(7)
    np_state, py_state = np.random.get_state(), random.getstate()
    a = load_mnist1d(n_train=150, n_test=50, random_state=1)
    after = np.random.get_state()  # (name, key array, pos, has_gauss, cached_gaussian)
    assert after[0] == np_state[0] and np.array_equal(after[1], np_state[1]) and after[2:] == np_state[2:]
    assert random.getstate() == py_state
    assert a.X.shape == (150, 1, 40) and a.X_test.shape == (50, 1, 40) and a.X.dtype == np.float32
    assert set(np.unique(np.concatenate([a.y, a.y_test]))) <= set(range(10)) and len(np.unique(a.y)) == 10
    b = load_mnist1d(n_train=150, n_test=50, random_state=1)
    c = load_mnist1d(n_train=150, n_test=50, random_state=2)
    assert np.array_equal(a.X, b.X) and np.array_equal(a.y, b.y)
    assert not np.array_equal(a.X, c.X)
    odd = load_mnist1d(n_train=13, n_test=4)  # not a multiple of 10: rounded up, surplus dropped
    assert odd.X.shape == (13, 1, 40) and odd.X_test.shape == (4, 1, 40)


def test_gaussian_mixture():
    ds = load_gaussian_mixture(n=2002, n_classes=4, separation=5.0, random_state=3)
    assert ds.X.shape == (2002, 2) and np.bincount(ds.y).tolist() == [501, 501, 500, 500]
    means = np.array([ds.X[ds.y == k].mean(0) for k in range(4)])
    np.testing.assert_allclose(means, [[5, 0], [0, 5], [-5, 0], [0, -5]], atol=0.15)
    assert np.array_equal(load_gaussian_mixture(random_state=3).X, load_gaussian_mixture(random_state=3).X)
    assert not np.array_equal(load_gaussian_mixture(random_state=3).X, load_gaussian_mixture(random_state=4).X)
    one = load_gaussian_mixture(n=30, n_classes=3, n_features=1, separation=2.0)
    assert one.X.shape == (30, 1)
    with pytest.raises(NoisylabInputError, match="n_classes"):
        load_gaussian_mixture(n_classes=1)


# ------------------------------------------------------------------------------------ registry, split
def test_get_dataset_names_and_unknown():
    assert set(DATASETS) == {"digits", "mnist1d", "gaussian"}
    assert get_dataset("gaussian", n=40, n_classes=2).X.shape == (40, 2)
    assert get_dataset("mnist1d", n_train=20, n_test=10).X.shape == (20, 1, 40)
    with pytest.raises(NoisylabInputError, match="Did you mean 'digits'") as exc:
        get_dataset("digts")
    assert "'mnist1d'" in str(exc.value) and "path" in str(exc.value)
    with pytest.raises(NoisylabInputError, match="not found"):
        get_dataset("no/such/file.npz")


def test_split_is_stratified_and_deterministic():
    ds = load_digits()
    tr, te = ds.split(test_size=0.3, random_state=0)
    assert len(tr) + len(te) == 1797 and len(te) == 540
    ratio = np.bincount(te.y) / np.bincount(ds.y)
    assert np.all(np.abs(ratio - 0.3) < 0.02)
    assert tr.X_test is None and tr.class_names == ds.class_names
    _, te2 = ds.split(test_size=0.3, random_state=0)
    assert np.array_equal(te.X, te2.X)
    assert not np.array_equal(te.y, ds.split(test_size=0.3, random_state=1)[1].y)
    # fixed test split: returned as is
    g = Dataset(np.zeros((4, 2)), [0, 1, 0, 1], ["a", "b"], "t", X_test=np.ones((2, 2)), y_test=[1, 0])
    a, b = g.split()
    assert len(a) == 4 and b.y.tolist() == [1, 0] and np.all(b.X == 1)


def test_dataset_validation_and_to_tensors():
    with pytest.raises(NoisylabInputError, match="only 2 classes"):
        Dataset(np.zeros((3, 2)), [0, 1, 2], ["a", "b"], "t")
    with pytest.raises(NoisylabInputError, match="3 examples but y has 2"):
        Dataset(np.zeros((3, 2)), [0, 1], ["a", "b"], "t")
    ds = load_gaussian_mixture(n=10, n_classes=2)
    X, y = to_tensors(ds, "cpu")
    assert X.dtype == torch.float32 and y.dtype == torch.int64
    assert torch.equal(X, torch.from_numpy(ds.X)) and y.tolist() == ds.y.tolist()
    with pytest.raises(NoisylabInputError, match="no fixed test split"):
        to_tensors(ds, test=True)


# ------------------------------------------------------------------------------------ audit fixes
@pytest.mark.parametrize("missing", ["data_batch_1", "batches.meta"])
def test_incomplete_cifar10_folder_names_the_missing_file(cifar10_dir, missing):
    root, _, _ = cifar10_dir
    (root / missing).unlink()
    with pytest.raises(NoisylabInputError, match=f"CIFAR-10 python folder but lacks {missing}"):
        get_dataset(root)


def test_incomplete_cifar100_folder_names_the_missing_file(tmp_path):
    root = tmp_path / "cifar-100-python"
    root.mkdir()
    _pickle(root / "train", {b"data": _cifar_pixels(2, 1), b"fine_labels": [0, 1]})
    with pytest.raises(NoisylabInputError, match="CIFAR-100 python folder but lacks test, meta"):
        get_dataset(root)


def test_image_folder_16bit_greyscale_is_scaled_not_clipped(tmp_path):
    from PIL import Image

    values = np.array([[0, 257], [32768, 65535]], dtype=np.uint16)
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        Image.fromarray(values).save(tmp_path / c / "0.png")
    assert Image.open(tmp_path / "a" / "0.png").mode.startswith("I;16")
    ds = load_image_folder(tmp_path)
    expected = (values / 65535.0).astype(np.float32)
    assert ds.meta["mode"] == "L" and ds.X.shape == (2, 1, 2, 2)
    np.testing.assert_array_equal(ds.X[0, 0], expected)
    assert "65535" in ds.meta["scaling"]
    rgb = load_image_folder(tmp_path, mode="RGB")
    assert rgb.X.shape == (2, 3, 2, 2) and all(np.array_equal(rgb.X[1, c], expected) for c in range(3))
    # with an 8-bit image next to it, both are in [0, 1] on their own scales
    _png(tmp_path / "a" / "1.png", np.full((2, 2), 51), "L")
    mixed = load_image_folder(tmp_path)
    assert np.allclose(mixed.X[1], 0.2) and np.array_equal(mixed.X[0, 0], expected)


def test_image_folder_16bit_png_opened_as_mode_I(tmp_path, monkeypatch):
    # Pillow < 10.3 opens 16-bit greyscale PNGs as mode "I" (int32 pixels 0..65535)
    from PIL import Image

    values = np.array([[0, 65535]], dtype=np.uint16)
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        Image.fromarray(values).save(tmp_path / c / "0.png")
    real_open = Image.open

    def open_as_mode_i(path, *a, **k):
        return real_open(path, *a, **k).convert("I")

    monkeypatch.setattr(Image, "open", open_as_mode_i)
    ds = load_image_folder(tmp_path)
    assert ds.meta["mode"] == "L" and ds.X[0, 0].tolist() == [[0.0, 1.0]]


def test_npz_object_array_and_unknown_loader_options(tmp_path):
    p = tmp_path / "obj.npz"
    np.savez(p, X=np.array([[1.0], [2.0]], dtype=object), y=np.array([0, 1]))
    with pytest.raises(NoisylabInputError, match=r"Could not read 'X' from .*obj\.npz"):
        get_dataset(p)
    with pytest.raises(NoisylabInputError, match="load_digits takes no option 'n_train'"):
        get_dataset("digits", n_train=5)
    with pytest.raises(NoisylabInputError, match=r"load_mnist1d takes no option 'n'; its options are n_train, n_test"):
        get_dataset("mnist1d", n=5)
    with pytest.raises(NoisylabInputError, match="load_arrays takes no option 'mode'; its options are label_column"):
        get_dataset(p, mode="L")
