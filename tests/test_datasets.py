"""Data for the reduced LeNet: the corners of IDX loading and of split records.

The main cases (plain and gzip IDX files, each malformed file, bad ``--split`` values, the
digits and the real MNIST t10k files) are in ``test_worker_data.py``; this file covers what a
user meets less often: where the files may lie, a test set that came with the data, and the
guarantee that workers use the recorded indices rather than re-deriving them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bohb_runner.errors import DataError, UserError
from workers.datasets import load_dataset, make_split, tensor_splits
from workers.idx import write_idx


def write_pair(folder: Path, prefix: str, n: int, size: int = 8, compress: bool = False, seed: int = 0) -> None:
    """A synthetic MNIST-format image/label pair (``prefix`` is ``train`` or ``t10k``)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    suffix = ".gz" if compress else ""
    write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", rng.integers(0, 256, (n, size, size)), compress)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", rng.integers(0, 10, n), compress)


def load_error(data_dir: Path) -> str:
    """The one-line message of the DataError that loading ``data_dir`` raises."""
    with pytest.raises(DataError) as info:
        load_dataset("mnist", str(data_dir))
    message = str(info.value)
    assert "\n" not in message, message
    return message


@pytest.mark.parametrize("folder", ["MNIST", "KMNIST", "FashionMNIST"])
def test_torchvision_raw_folders(tmp_path, folder):
    write_pair(tmp_path / folder / "raw", "train", 30, compress=True)
    loaded = load_dataset("mnist", str(tmp_path))
    assert loaded.images.shape == (30, 1, 8, 8) and loaded.given_test is None
    assert all(f"{folder}/raw" in source for source in loaded.sources)


def test_images_are_scaled_floats_and_labels_int64(tmp_path):
    write_pair(tmp_path, "t10k", 20)
    loaded = load_dataset("mnist", str(tmp_path))
    assert loaded.images.dtype == np.float32 and loaded.labels.dtype == np.int64
    assert 0.0 <= loaded.images.min() and loaded.images.max() <= 1.0


def test_data_dir_that_is_a_file(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(b"")
    message = load_error(path)
    assert str(path) in message and "is a file" in message


def test_lone_labels_file_names_its_missing_partner(tmp_path):
    write_pair(tmp_path, "train", 10)
    (tmp_path / "train-images-idx3-ubyte").unlink()
    message = load_error(tmp_path)
    assert "train-labels-idx1-ubyte" in message and "train-images-idx3-ubyte" in message


def test_truncated_header(tmp_path):
    write_pair(tmp_path, "t10k", 10)
    images = tmp_path / "t10k-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:10])
    message = load_error(tmp_path)
    assert str(images) in message and "truncated" in message


def test_images_too_small_for_the_network(tmp_path):
    write_pair(tmp_path, "t10k", 10, size=3)
    message = load_error(tmp_path)
    assert "t10k-images-idx3-ubyte" in message and "H, W >= 4" in message


def test_train_and_test_images_of_different_sizes(tmp_path):
    write_pair(tmp_path, "train", 10, size=8)
    write_pair(tmp_path, "t10k", 10, size=12)
    message = load_error(tmp_path)
    assert "t10k-images-idx3-ubyte" in message and "differs" in message


@pytest.mark.parametrize(
    "name,data_dir,fragment",
    [("cifar", None, "--dataset must be one of"), ("mnist", None, "needs --data-dir"), ("digits", "x", "embedded")],
)
def test_dataset_option_mistakes(name, data_dir, fragment):
    with pytest.raises(UserError, match=fragment):
        load_dataset(name, data_dir)


@pytest.fixture
def train_and_test(tmp_path):
    """60 pool images and a given test set of 12."""
    write_pair(tmp_path, "train", 60, seed=1)
    write_pair(tmp_path, "t10k", 12, seed=2)
    return load_dataset("mnist", str(tmp_path))


def test_default_split_with_a_given_test_set_uses_the_whole_pool(train_and_test):
    record = make_split(train_and_test, None, seed=0)
    assert record["sizes"] == {"train": 50, "val": 10, "test": 12}
    assert record["test_source"] == "given" and record["split_kind"] == "fractions"
    assert sorted(record["indices"]["test"]) == list(range(60, 72))
    assert sorted(record["indices"]["train"] + record["indices"]["val"]) == list(range(60))


def test_two_counts_split_the_pool_and_keep_the_given_test_set(train_and_test):
    record = make_split(train_and_test, "30,10", seed=0)
    assert record["sizes"] == {"train": 30, "val": 10, "test": 12}
    assert record["split_kind"] == "counts" and record["test_source"] == "given"
    assert max(record["indices"]["train"] + record["indices"]["val"]) < 60


def test_three_values_take_the_test_part_from_the_pool(train_and_test):
    record = make_split(train_and_test, "0.5,0.25,0.25", seed=0)
    assert record["test_source"] == "pool"
    assert record["sizes"] == {"train": 30, "val": 15, "test": 15}
    assert max(i for part in record["indices"].values() for i in part) < 60


def test_two_values_need_a_given_test_set():
    with pytest.raises(UserError, match="expected 3 values"):
        make_split(load_dataset("digits", None), "0.8,0.2", seed=0)


def test_counts_larger_than_the_pool_name_the_pool_size(train_and_test):
    with pytest.raises(UserError, match="asks for 61 images, the data has 60"):
        make_split(train_and_test, "50,11", seed=0)


def test_record_survives_json_and_a_fresh_load(tmp_path):
    write_pair(tmp_path, "t10k", 40, compress=True)
    record = json.loads(json.dumps(make_split(load_dataset("mnist", str(tmp_path)), "20,10,10", seed=7)))
    assert make_split(load_dataset("mnist", str(tmp_path)), "20,10,10", seed=7) == record
    assert record["seed"] == 7 and record["num_images"] == 40 and record["image_shape"] == [1, 8, 8]
    assert record["sources"] == [
        str(tmp_path / "t10k-images-idx3-ubyte.gz"),
        str(tmp_path / "t10k-labels-idx1-ubyte.gz"),
    ]


def test_workers_use_the_recorded_indices_not_a_fresh_permutation():
    loaded = load_dataset("digits", None)
    record = make_split(loaded, "100,50,50", seed=0)
    record["indices"]["train"] = list(range(100))  # as if another numpy had permuted differently
    splits = tensor_splits(loaded, record)
    assert torch.equal(splits.train_x, torch.from_numpy(loaded.images[:100]))
    assert torch.equal(splits.train_y, torch.from_numpy(loaded.labels[:100]))
    assert splits.train_y.dtype == torch.int64 and splits.train_x.dtype == torch.float32
    assert (len(splits.val_x), len(splits.test_x)) == (50, 50)


def test_tensor_splits_move_once():
    loaded = load_dataset("digits", None)
    splits = tensor_splits(loaded, make_split(loaded, None, seed=0), "cpu")
    assert splits.to("cpu") is splits and splits.device == torch.device("cpu")
