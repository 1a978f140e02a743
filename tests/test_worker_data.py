"""The LeNet worker's data: embedded digits, MNIST-format IDX files, and fixed, recorded splits."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from bohb_runner.errors import DataError, UserError
from workers.datasets import load_dataset, make_split, tensor_splits
from workers.idx import write_idx

from conftest import PROJECT

SHARED_MNIST = next(
    (
        p
        for p in (PROJECT.parent / "shared" / "data" / "mnist-t10k", Path("/work/shared/data/mnist-t10k"))
        if p.is_dir()
    ),
    Path("/nonexistent"),
)


def _fake_mnist(folder: Path, n: int = 60, prefix: str = "t10k", compress: bool = False, size: int = 12) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    suffix = ".gz" if compress else ""
    write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", rng.integers(0, 256, (n, size, size)), compress)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", rng.integers(0, 10, n), compress)


def test_digits_are_embedded():
    loaded = load_dataset("digits", None)
    assert loaded.images.shape == (1797, 1, 8, 8) and loaded.images.dtype == np.float32
    assert 0.0 <= loaded.images.min() and loaded.images.max() <= 1.0
    assert sorted(set(loaded.labels.tolist())) == list(range(10))


@pytest.mark.parametrize("compress", [False, True])
def test_idx_files_plain_and_gzip(tmp_path, compress):
    _fake_mnist(tmp_path, compress=compress)
    loaded = load_dataset("mnist", str(tmp_path))
    assert loaded.images.shape == (60, 1, 12, 12) and loaded.given_test is None


def test_gzip_is_recognised_by_content_not_name(tmp_path):
    _fake_mnist(tmp_path)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(gzip.compress(path.read_bytes()))
    assert load_dataset("mnist", str(tmp_path)).images.shape == (60, 1, 12, 12)


def test_torchvision_raw_layout_and_train_plus_test(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    _fake_mnist(raw, n=50, prefix="train")
    _fake_mnist(raw, n=20, prefix="t10k", compress=True)
    loaded = load_dataset("mnist", str(tmp_path))
    assert len(loaded.pool) == 50 and len(loaded.given_test) == 20
    record = make_split(loaded, None, seed=0)
    assert record["sizes"] == {"train": 41, "val": 8, "test": 20}
    assert sorted(record["indices"]["test"]) == list(range(50, 70))


def _one_line_data_error(tmp_path, expected_file: str, fragment: str):
    with pytest.raises(DataError) as info:
        load_dataset("mnist", str(tmp_path))
    message = str(info.value)
    assert "\n" not in message and expected_file in message and fragment in message, message


def test_missing_directory(tmp_path):
    with pytest.raises(DataError, match="data directory not found") as info:
        load_dataset("mnist", str(tmp_path / "nope"))
    assert str(tmp_path / "nope") in str(info.value)


def test_no_idx_files(tmp_path):
    _one_line_data_error(tmp_path, str(tmp_path), "no MNIST-format IDX files found")


def test_labels_missing(tmp_path):
    _fake_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    _one_line_data_error(tmp_path, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def test_wrong_magic(tmp_path):
    _fake_mnist(tmp_path)
    images = tmp_path / "t10k-images-idx3-ubyte"
    labels = tmp_path / "t10k-labels-idx1-ubyte"
    images.write_bytes(labels.read_bytes())
    _one_line_data_error(tmp_path, str(images), "not an IDX images file")


def test_truncated_file(tmp_path):
    _fake_mnist(tmp_path)
    images = tmp_path / "t10k-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-100])
    _one_line_data_error(tmp_path, str(images), "truncated")


def test_count_mismatch(tmp_path):
    _fake_mnist(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(59))
    _one_line_data_error(tmp_path, "t10k-labels-idx1-ubyte", "59 labels for 60 images")


def test_label_out_of_range(tmp_path):
    _fake_mnist(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.full(60, 12))
    _one_line_data_error(tmp_path, "t10k-labels-idx1-ubyte", "label 12 is outside 0..9")


def test_corrupt_gzip(tmp_path):
    _fake_mnist(tmp_path, compress=True)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    data = bytearray(path.read_bytes())
    data[30:60] = b"\x00" * 30
    path.write_bytes(bytes(data))
    _one_line_data_error(tmp_path, str(path), "corrupt gzip")


@pytest.mark.parametrize(
    "split,fragment",
    [
        ("0.7,0.5,0.1", "add up to 1.3"),
        ("0.5,abc,0.1", "comma-separated numbers"),
        ("2000,100,100", "asks for 2200 images, the data has 1797"),
        ("0.9,0,0.1", "the val part would be empty"),
        ("0.5,0.1,0.0001", "the test part would be empty"),
        ("0.5,0.5", "expected 3 values"),
        ("-1,2,3", "non-negative"),
    ],
)
def test_bad_splits(split, fragment):
    with pytest.raises(UserError, match="--split") as info:
        make_split(load_dataset("digits", None), split, seed=0)
    assert fragment in str(info.value)


def test_split_record_is_json_reproducible_and_disjoint():
    loaded = load_dataset("digits", None)
    record = make_split(loaded, None, seed=3)
    assert json.loads(json.dumps(record)) == record
    assert record["sizes"] == {"train": 1078, "val": 359, "test": 359}
    assert make_split(loaded, None, seed=3) == record
    assert make_split(loaded, None, seed=4)["indices"] != record["indices"]
    parts = [set(record["indices"][k]) for k in ("train", "val", "test")]
    assert sum(map(len, parts)) == len(set().union(*parts))
    counts = make_split(loaded, "1000,300,200", seed=3)["sizes"]
    assert counts == {"train": 1000, "val": 300, "test": 200}


def test_tensor_splits_use_the_recorded_indices_and_refuse_other_data(tmp_path):
    loaded = load_dataset("digits", None)
    record = make_split(loaded, None, seed=0)
    splits = tensor_splits(loaded, record)
    first = record["indices"]["val"][0]
    assert splits.val_y[0].item() == loaded.labels[first]
    assert splits.input_shape == (1, 8, 8)
    _fake_mnist(tmp_path)
    with pytest.raises(DataError, match="differ from those the study was created with"):
        tensor_splits(load_dataset("mnist", str(tmp_path)), record)


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason="the shared MNIST t10k files are not on this machine")
def test_real_mnist_t10k():
    loaded = load_dataset("mnist", str(SHARED_MNIST))
    assert loaded.images.shape == (10000, 1, 28, 28)
    record = make_split(loaded, "8000,1000,1000", seed=0)
    assert record["sizes"] == {"train": 8000, "val": 1000, "test": 1000}
