"""File readers and the atomic writer."""
import json

import numpy as np
import pytest

from noisylab.io import atomic_write, encode_labels, read_labels, read_pred_probs


def test_tsv_labels_with_ids_and_tsv_matrix(tmp_path):
    (tmp_path / "y.tsv").write_text("id\tlabel\na.png\tcat\nb.png\tdog\nc.png\tcat\n")
    lab = read_labels(tmp_path / "y.tsv")
    assert lab.values.tolist() == ["cat", "dog", "cat"] and lab.ids.tolist() == ["a.png", "b.png", "c.png"]
    (tmp_path / "p.tsv").write_text("cat\tdog\n0.9\t0.1\n0.2\t0.8\n0.4\t0.6\n")
    np.testing.assert_allclose(read_pred_probs(tmp_path / "p.tsv"), [[0.9, 0.1], [0.2, 0.8], [0.4, 0.6]])
    codes, classes = encode_labels(lab.values)
    assert codes.tolist() == [0, 1, 0] and classes.tolist() == ["cat", "dog"]


def test_json_path_labels_in_image_folder_order(tmp_path):
    obj = {"train/dog/2.png": 1, "train/cat/9.png": 0, "train/cat/10.png": 0}
    (tmp_path / "y.json").write_text(json.dumps(obj))
    lab = read_labels(tmp_path / "y.json")
    assert lab.ids.tolist() == ["train/cat/10.png", "train/cat/9.png", "train/dog/2.png"]
    assert lab.values.tolist() == [0, 0, 1]


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as fh:
            fh.write("new, half written")
            raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]
    with atomic_write(target) as fh:
        fh.write("new")
    assert target.read_text() == "new"


def test_encode_labels_never_truncates_and_refuses_mixed_or_2d():
    from noisylab import NoisylabInputError

    with pytest.raises(NoisylabInputError, match=r"label 'catfish' is not one of the 2 classes"):
        encode_labels(["cat", "dog", "catfish"], classes=["cat", "dog"])
    codes, _ = encode_labels(["dog", "cat"], classes=["cat", "dog"])
    assert codes.tolist() == [1, 0]
    with pytest.raises(NoisylabInputError, match="mix values of types NoneType, str"):
        encode_labels(np.array(["a", None], dtype=object))
    with pytest.raises(NoisylabInputError, match=r"1-D array .*\(2, 2\)"):
        encode_labels([["a", "b"], ["c", "d"]])


def test_whole_number_float_labels_in_csv_are_class_indices(tmp_path):
    p = tmp_path / "fl.csv"
    p.write_text("label\n0.0\n1.0\n2.0\n10.0\n")
    values = read_labels(p).values
    assert values.dtype == np.int64 and values.tolist() == [0, 1, 2, 10]
    codes, classes = encode_labels(values)
    assert codes.tolist() == [0, 1, 2, 10] and classes is None  # class 10 is column 10, not column 2
    p.write_text("label\n0.5\n1.0\n")
    assert read_labels(p).values.tolist() == ["0.5", "1.0"]  # not all whole numbers: names


def test_read_matrix_corrupt_npy(tmp_path):
    from noisylab import NoisylabInputError
    from noisylab.io import read_matrix

    p = tmp_path / "bad.npy"
    p.write_bytes(b"\x93NUMPYxx")
    with pytest.raises(NoisylabInputError, match=r"Could not read .*bad\.npy as a \.npy matrix"):
        read_matrix(p)
