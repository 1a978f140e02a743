"""The LeNet worker's data: IDX files, the dataset layouts (MNIST, Fashion-MNIST, KMNIST, EMNIST,
QMNIST, in a directory or torchvision's ``<Name>/raw``), the embedded digits, and the split:
stratified by class, reproducible from the seed, recorded with its indices."""

from __future__ import annotations

import gzip
import json
import logging
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from bohb_runner.errors import DataError, UserError
from bohb_runner.worker.api import StudyContext
from workers.datasets import LoadedImages, load_dataset, make_split, tensor_splits
from workers.idx import read_labels, write_idx
from workers.lenet import LeNetWorker

from conftest import PROJECT

SHARED_MNIST = next(
    (
        p
        for p in (PROJECT.parent / "shared" / "data" / "mnist-t10k", Path("/work/shared/data/mnist-t10k"))
        if p.is_dir()
    ),
    Path("/nonexistent"),
)
EMNIST_CLASSES = {"byclass": 62, "bymerge": 47, "balanced": 47, "letters": 26, "digits": 10, "mnist": 10}


def write_pair(
    folder: Path,
    prefix: str,
    n: int,
    size: int = 8,
    compress: bool | str = False,
    seed: int = 0,
    labels: np.ndarray | None = None,
) -> np.ndarray:
    """A synthetic MNIST-format image/label pair (``prefix``: ``train``, ``t10k``, ``emnist-digits-train``...)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    suffix = {False: "", True: ".gz", "xz": ".xz"}[compress]
    labels = rng.integers(0, 10, n) if labels is None else labels
    write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", rng.integers(0, 256, (n, size, size)), compress)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels, compress)
    return labels


def load_error(data_dir: Path, dataset: str = "mnist") -> str:
    """The one-line message of the DataError that loading ``data_dir`` raises."""
    with pytest.raises(DataError) as info:
        load_dataset(dataset, str(data_dir))
    message = str(info.value)
    assert "\n" not in message, message
    return message


# -- IDX files ------------------------------------------------------------------------------------


def test_idx_header_written_and_read_byte_for_byte(tmp_path):
    table = np.array([[3, 70_000, -1], [9, 2, 123_456]], dtype=np.int64)
    write_idx(tmp_path / "labels", table, dtype=np.int32)
    raw = (tmp_path / "labels").read_bytes()
    assert raw[:12] == bytes([0, 0, 0x0C, 2]) + struct.pack(">II", 2, 3)  # int32, 2 dimensions, 2 x 3
    assert struct.unpack(">6i", raw[12:]) == (3, 70_000, -1, 9, 2, 123_456)
    write_idx(tmp_path / "bytes", np.array([1, 255]))
    assert (tmp_path / "bytes").read_bytes() == bytes([0, 0, 8, 1, 0, 0, 0, 2, 1, 255])
    assert struct.unpack(">I", raw[:4])[0] == 3074


def test_qmnist_labels_are_column_zero_of_an_int32_table(tmp_path):
    table = np.zeros((5, 8), dtype=np.int64)
    table[:, 0] = [4, 0, 9, 9, 1]
    table[:, 2] = 250_000  # writer ids do not fit a byte: the file must really be int32
    write_idx(tmp_path / "labels", table, dtype=np.int32)
    assert read_labels(tmp_path / "labels", 5).tolist() == [4, 0, 9, 9, 1]
    assert read_labels(tmp_path / "labels", 5).dtype == np.int64


def test_the_writer_refuses_values_its_type_cannot_hold(tmp_path):
    with pytest.raises(ValueError, match="outside what uint8 holds"):
        write_idx(tmp_path / "x", np.array([0, 256]))
    with pytest.raises(ValueError, match="not int64"):
        write_idx(tmp_path / "x", np.array([0]), dtype=np.int64)


@pytest.mark.parametrize("compress", [False, True, "xz"])
def test_idx_files_plain_gzip_and_xz(tmp_path, compress):
    labels = write_pair(tmp_path, "t10k", 60, size=12, compress=compress)
    loaded = load_dataset("mnist", str(tmp_path))
    assert loaded.images.shape == (60, 1, 12, 12) and loaded.given_test is None
    assert loaded.labels.tolist() == labels.tolist()


def test_gzip_is_recognised_by_content_not_name(tmp_path):
    write_pair(tmp_path, "t10k", 60, size=12)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(gzip.compress(path.read_bytes()))
    assert load_dataset("mnist", str(tmp_path)).images.shape == (60, 1, 12, 12)


def test_images_are_scaled_floats_and_labels_int64(tmp_path):
    write_pair(tmp_path, "t10k", 20)
    loaded = load_dataset("mnist", str(tmp_path))
    assert loaded.images.dtype == np.float32 and loaded.labels.dtype == np.int64
    assert 0.0 <= loaded.images.min() and loaded.images.max() <= 1.0


def test_digits_are_embedded():
    loaded = load_dataset("digits", None)
    assert loaded.images.shape == (1797, 1, 8, 8) and loaded.images.dtype == np.float32
    assert 0.0 <= loaded.images.min() and loaded.images.max() <= 1.0
    assert sorted(set(loaded.labels.tolist())) == list(range(10)) and loaded.num_classes == 10


def test_any_number_of_classes_in_mnist_format_files(tmp_path):
    write_pair(tmp_path, "train", 48, labels=np.arange(48) % 12)
    loaded = load_dataset("mnist", str(tmp_path))
    assert loaded.num_classes == 12
    record = make_split(loaded, "24,12,12", seed=0)
    assert record["num_classes"] == 12 and tensor_splits(loaded, record).num_classes == 12


# -- where the files lie --------------------------------------------------------------------------


@pytest.mark.parametrize("folder", ["MNIST", "KMNIST", "FashionMNIST"])
def test_torchvision_raw_folders(tmp_path, folder):
    write_pair(tmp_path / folder / "raw", "train", 30, compress=True)
    loaded = load_dataset("mnist", str(tmp_path))
    assert loaded.images.shape == (30, 1, 8, 8) and loaded.given_test is None and loaded.name == "mnist"
    assert all(f"{folder}/raw" in source for source in loaded.sources)


def test_torchvision_raw_layout_with_train_and_test(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    write_pair(raw, "train", 50, size=12)
    write_pair(raw, "t10k", 20, size=12, compress=True)
    loaded = load_dataset("mnist", str(tmp_path))
    assert len(loaded.pool) == 50 and len(loaded.given_test) == 20
    record = make_split(loaded, None, seed=0)
    assert record["sizes"] == {"train": 41, "val": 8, "test": 20}
    assert sorted(record["indices"]["test"]) == list(range(50, 70))


def emnist_files(raw: Path, split: str, n_train: int = 0, n_test: int = 0, seed: int = 0) -> dict[str, np.ndarray]:
    """EMNIST files of ``split`` as the originals are: every class present, images stored transposed.

    Returns the upright images and the stored labels of each part.
    """
    raw.mkdir(parents=True, exist_ok=True)
    classes, first = EMNIST_CLASSES[split], 1 if split == "letters" else 0
    rng = np.random.default_rng(seed)
    written = {}
    for part, n in (("train", n_train or 2 * classes), ("test", n_test or classes)):
        upright = rng.integers(0, 256, (n, 28, 28))
        labels = first + np.arange(n) % classes
        write_idx(raw / f"emnist-{split}-{part}-images-idx3-ubyte", upright.transpose(0, 2, 1))
        write_idx(raw / f"emnist-{split}-{part}-labels-idx1-ubyte", labels)
        written[f"{part}_images"], written[f"{part}_labels"] = upright, labels
    return written


@pytest.mark.parametrize("split", list(EMNIST_CLASSES))
def test_emnist_splits_in_torchvisions_layout(tmp_path, split):
    written = emnist_files(tmp_path / "EMNIST" / "raw", split)
    loaded = load_dataset(f"emnist-{split}", str(tmp_path))
    classes = EMNIST_CLASSES[split]
    assert loaded.name == f"emnist-{split}" and loaded.num_classes == classes
    assert loaded.images.shape == (3 * classes, 1, 28, 28)
    assert len(loaded.pool) == 2 * classes and loaded.given_test.tolist() == list(range(2 * classes, 3 * classes))
    stored = np.concatenate([written["train_labels"], written["test_labels"]])
    assert loaded.labels.tolist() == (stored - (1 if split == "letters" else 0)).tolist()  # letters: 1..26 -> 0..25
    assert sorted(set(loaded.labels.tolist())) == list(range(classes))
    upright = np.concatenate([written["train_images"], written["test_images"]])
    assert np.array_equal(loaded.images[:, 0], (upright / 255.0).astype(np.float32))  # transposed back
    record = make_split(loaded, None, seed=0)
    assert record["dataset"] == f"emnist-{split}" and record["num_classes"] == classes


def test_emnist_gzip_files_directly_in_the_data_directory(tmp_path):
    labels = write_pair(tmp_path, "emnist-balanced-train", 47, compress=True, labels=np.arange(47))
    loaded = load_dataset("emnist-balanced", str(tmp_path))
    assert loaded.labels.tolist() == labels.tolist() and loaded.given_test is None


def test_mnist_picks_the_one_emnist_split_present(tmp_path):
    emnist_files(tmp_path / "EMNIST" / "raw", "letters")
    assert load_dataset("mnist", str(tmp_path / "EMNIST" / "raw")).name == "emnist-letters"
    assert load_dataset("mnist", str(tmp_path)).name == "emnist-letters"


def test_several_emnist_splits_are_named_with_the_way_to_pick_one(tmp_path):
    for split in ("letters", "balanced", "digits"):
        emnist_files(tmp_path / "EMNIST" / "raw", split)
    message = load_error(tmp_path)
    assert message == (
        f"{tmp_path}: holds 3 IDX sets (emnist-balanced, emnist-letters, emnist-digits); "
        "pick one with --dataset emnist-balanced (or emnist-letters / emnist-digits)"
    )
    assert load_dataset("emnist-digits", str(tmp_path)).num_classes == 10


def test_mnist_files_beside_emnist_are_mnist_as_before(tmp_path):
    write_pair(tmp_path / "MNIST" / "raw", "t10k", 20)
    emnist_files(tmp_path / "EMNIST" / "raw", "digits")
    assert load_dataset("mnist", str(tmp_path)).name == "mnist"


@pytest.mark.parametrize(
    "split,label,fragment", [("digits", 12, "label 12 is outside 0..9"), ("letters", 0, "label 0 is outside 1..26")]
)
def test_an_emnist_label_outside_its_splits_classes(tmp_path, split, label, fragment):
    emnist_files(tmp_path, split)
    labels = tmp_path / f"emnist-{split}-test-labels-idx1-ubyte"
    write_idx(labels, np.full(EMNIST_CLASSES[split], label))
    message = load_error(tmp_path, f"emnist-{split}")
    assert str(labels) in message and fragment in message


def qmnist_labels(classes: np.ndarray) -> np.ndarray:
    """QMNIST's N x 8 table: class, NIST series, writer id, ... (writer ids above 255)."""
    table = np.zeros((len(classes), 8), dtype=np.int64)
    table[:, 0] = classes
    table[:, 2] = 1_000 + np.arange(len(classes))
    return table


def write_qmnist(raw: Path, prefix: str, n: int, compress: bool | str = False, seed: int = 0) -> np.ndarray:
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    classes = rng.integers(0, 10, n)
    suffix = {False: "", True: ".gz", "xz": ".xz"}[compress]
    write_idx(raw / f"{prefix}-images-idx3-ubyte{suffix}", rng.integers(0, 256, (n, 28, 28)), compress)
    write_idx(raw / f"{prefix}-labels-idx2-int{suffix}", qmnist_labels(classes), compress, dtype=np.int32)
    return classes


def test_qmnist_train_and_test_in_torchvisions_layout(tmp_path):
    raw = tmp_path / "QMNIST" / "raw"
    train = write_qmnist(raw, "qmnist-train", 40, compress=True, seed=1)
    test = write_qmnist(raw, "qmnist-test", 15, seed=2)
    loaded = load_dataset("mnist", str(tmp_path))
    assert loaded.name == "qmnist" and loaded.images.shape == (55, 1, 28, 28) and loaded.num_classes == 10
    assert loaded.labels.tolist() == train.tolist() + test.tolist()
    assert loaded.pool.tolist() == list(range(40)) and loaded.given_test.tolist() == list(range(40, 55))
    assert load_dataset("qmnist", str(raw)).labels.tolist() == loaded.labels.tolist()


def test_qmnist_nist_set_beside_the_qmnist_set(tmp_path):
    raw = tmp_path / "QMNIST" / "raw"
    write_qmnist(raw, "qmnist-train", 30)
    nist = write_qmnist(raw, "xnist", 25, compress="xz", seed=3)
    message = load_error(tmp_path)
    assert "holds 2 IDX sets (qmnist, qmnist-nist); pick one with --dataset qmnist (or qmnist-nist)" in message
    loaded = load_dataset("qmnist-nist", str(tmp_path))
    assert loaded.labels.tolist() == nist.tolist() and loaded.given_test is None and len(loaded.pool) == 25
    assert loaded.sources[0].endswith("QMNIST/raw/xnist-images-idx3-ubyte.xz")


def test_a_negative_qmnist_label(tmp_path):
    write_qmnist(tmp_path, "qmnist-train", 10)
    labels = tmp_path / "qmnist-train-labels-idx2-int"
    write_idx(labels, qmnist_labels(np.array([3] * 9 + [-2])), dtype=np.int32)
    assert "label -2 is outside 0..9" in load_error(tmp_path, "qmnist")


def test_the_worker_reads_the_set_the_study_was_created_with(tmp_path):
    """``--dataset mnist`` picked emnist-letters; a balanced split added later changes nothing."""
    data = tmp_path / "data" / "EMNIST" / "raw"
    emnist_files(data, "letters", n_train=104, n_test=52)
    context = StudyContext(study_dir=tmp_path, seed=0, device="cpu", dataset="mnist", data_dir=str(tmp_path / "data"))
    context.data_record = LeNetWorker.prepare_study(context)
    emnist_files(data, "balanced")
    worker = LeNetWorker.from_study(context, run_id="t", nameserver="127.0.0.1")
    assert worker.data.num_classes == 26 and worker.data.input_shape == (1, 28, 28)
    result = worker.compute((0, 0, 0), {"num_filters": 2, "filter_size": 3}, 0.2, str(tmp_path))
    f, k = 2, 3  # 28 -> 14 -> 7; the output layer has one unit per letter
    assert result["info"]["num_parameters"] == (k * k * f + f) + (f * k * k * f + f) + (f * 49 * 128 + 128) + (
        128 * 26 + 26
    )


# -- bad data and bad options ---------------------------------------------------------------------


def test_missing_directory(tmp_path):
    message = load_error(tmp_path / "nope")
    assert str(tmp_path / "nope") in message and "data directory not found" in message


def test_data_dir_that_is_a_file(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(b"")
    message = load_error(path)
    assert str(path) in message and "is a file" in message


def test_no_idx_files(tmp_path):
    message = load_error(tmp_path)
    assert str(tmp_path) in message and "no MNIST-format IDX files found" in message and "EMNIST/raw" in message


def test_a_named_set_that_is_not_there(tmp_path):
    write_pair(tmp_path, "train", 10)
    message = load_error(tmp_path, "emnist-byclass")
    assert "no emnist-byclass files found" in message and "EMNIST/raw" in message


@pytest.mark.parametrize("missing", ["labels", "images"])
def test_a_file_without_its_partner_names_both(tmp_path, missing):
    write_pair(tmp_path, "t10k", 10)
    (tmp_path / f"t10k-{missing}-idx{'1' if missing == 'labels' else '3'}-ubyte").unlink()
    message = load_error(tmp_path)
    assert "t10k-labels-idx1-ubyte" in message and "t10k-images-idx3-ubyte" in message and "partner" in message


def test_wrong_magic(tmp_path):
    write_pair(tmp_path, "t10k", 60)
    images, labels = tmp_path / "t10k-images-idx3-ubyte", tmp_path / "t10k-labels-idx1-ubyte"
    images.write_bytes(labels.read_bytes())
    message = load_error(tmp_path)
    assert str(images) in message and "not an IDX images file (magic number 2049, expected 2051)" in message


def test_images_where_labels_belong(tmp_path):
    write_pair(tmp_path, "t10k", 60)
    images, labels = tmp_path / "t10k-images-idx3-ubyte", tmp_path / "t10k-labels-idx1-ubyte"
    labels.write_bytes(images.read_bytes())
    assert "not an IDX labels file (magic number 2051, expected 2049 or 3074)" in load_error(tmp_path)


@pytest.mark.parametrize("cut", [10, -100])
def test_truncated_header_and_data(tmp_path, cut):
    write_pair(tmp_path, "t10k", 60)
    images = tmp_path / "t10k-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:cut])
    message = load_error(tmp_path)
    assert str(images) in message and "truncated" in message


def test_count_mismatch(tmp_path):
    write_pair(tmp_path, "t10k", 60)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(59))
    assert "t10k-labels-idx1-ubyte: 59 labels for 60 images" in load_error(tmp_path)


def test_corrupt_gzip(tmp_path):
    write_pair(tmp_path, "t10k", 60, compress=True)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    data = bytearray(path.read_bytes())
    data[30:60] = b"\x00" * 30
    path.write_bytes(bytes(data))
    message = load_error(tmp_path)
    assert str(path) in message and "corrupt gzip" in message


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
    [
        ("cifar", None, "--dataset must be digits, mnist, emnist-<split> (byclass/bymerge/balanced/letters/"),
        ("emnist", "x", "got 'emnist'"),
        ("mnist", None, "--dataset mnist needs --data-dir"),
        ("qmnist", None, "--dataset qmnist needs --data-dir"),
        ("digits", "x", "embedded"),
    ],
)
def test_dataset_option_mistakes(name, data_dir, fragment):
    with pytest.raises(UserError, match="^--") as info:
        load_dataset(name, data_dir)
    assert fragment in str(info.value)


# -- the split ------------------------------------------------------------------------------------


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
        ("100.5,10,10", "counts must be whole numbers"),
    ],
)
def test_bad_splits(split, fragment):
    with pytest.raises(UserError, match="--split") as info:
        make_split(load_dataset("digits", None), split, seed=0)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def class_counts(labels: np.ndarray, indices, num_classes: int) -> np.ndarray:
    return np.bincount(labels[np.asarray(indices, dtype=np.int64)], minlength=num_classes)


def assert_stratified(loaded: LoadedImages, record: dict) -> None:
    """Each part's class counts against its share of the pool's: train within one image per class,
    validation and test (drawn from the rest in a second draw, whose rounding adds to the first's) within two."""
    pool = class_counts(loaded.labels, loaded.pool, loaded.num_classes)
    for part, bound in (("train", 1), ("val", 2), ("test", 2)):
        if part == "test" and record["test_source"] == "given":
            continue
        counts = class_counts(loaded.labels, record["indices"][part], loaded.num_classes)
        expected = pool * len(record["indices"][part]) / pool.sum()
        assert np.abs(counts - expected).max() < bound, (part, counts.tolist(), expected.round(2).tolist())


def skewed_pool(counts: list[int]) -> LoadedImages:
    labels = np.repeat(np.arange(len(counts)), counts)
    np.random.default_rng(0).shuffle(labels)
    images = np.zeros((len(labels), 1, 4, 4), dtype=np.float32)
    return LoadedImages("skewed", images, labels, np.arange(len(labels)), None, ["test"], len(counts))


@pytest.mark.parametrize("split", [None, "1000,300,200", "0.5,0.25,0.25", "0.3,0.1,0.6", "900,300,0"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_parts_keep_the_class_proportions_of_the_pool(split, seed):
    loaded = load_dataset("digits", None)
    record = make_split(loaded, split, seed=seed)
    assert record["stratified"] is True and "not_stratified" not in record
    assert_stratified(loaded, record)


@pytest.mark.parametrize("split", ["0.6,0.2,0.2", "200,100,60", "0.1,0.1,0.8"])
def test_skewed_classes_keep_their_proportions(split):
    loaded = skewed_pool([6, 10, 55, 101, 7, 230, 61])
    for seed in range(5):
        record = make_split(loaded, split, seed=seed)
        assert record["stratified"], record.get("not_stratified")
        assert_stratified(loaded, record)
    # the smallest classes, exactly: 6 images at 60/20/20 are 3.6/1.2/1.2, so 4 or 3 / 1 or 2 / 1 or 2
    if split == "0.6,0.2,0.2":
        sizes = [class_counts(loaded.labels, record["indices"][p], 7)[0] for p in ("train", "val", "test")]
        assert sizes[0] in (3, 4) and sizes[1] in (1, 2) and sizes[2] in (1, 2) and sum(sizes) <= 6


def test_a_given_test_set_stays_and_the_pool_is_stratified(tmp_path):
    write_pair(tmp_path, "train", 300, labels=np.repeat(np.arange(3), [200, 70, 30]), seed=1)
    write_pair(tmp_path, "t10k", 12, seed=2)
    loaded = load_dataset("mnist", str(tmp_path))
    record = make_split(loaded, "150,60", seed=4)
    assert record["test_source"] == "given" and record["split_kind"] == "counts"
    assert record["sizes"] == {"train": 150, "val": 60, "test": 12} and record["indices"]["test"] == list(
        range(300, 312)
    )
    assert class_counts(loaded.labels, record["indices"]["train"], 10)[:3].tolist() == [100, 35, 15]
    assert class_counts(loaded.labels, record["indices"]["val"], 10)[:3].tolist() == [40, 14, 6]


def test_a_split_that_cannot_be_stratified_is_drawn_at_random_and_says_why(caplog):
    loaded = skewed_pool([1, 40, 40])  # class 0 has one image: no stratified draw can place it
    with caplog.at_level(logging.WARNING, logger="workers.datasets"):
        record = make_split(loaded, "40,20,20", seed=0)
    assert record["stratified"] is False
    # the first draw put class 0's image among the rest, so the second draw could not place it either
    reason = "train and rest: class 0 has a single image; val and test: class 0 has a single image"
    assert record["not_stratified"] == reason
    assert record["sizes"] == {"train": 40, "val": 20, "test": 20}
    assert caplog.messages == [f"--split 40,20,20: not stratified by class, drawn at random: {reason}"]
    four_classes = skewed_pool([30, 30, 30, 30])
    tiny_val = make_split(four_classes, "60,3,20", seed=0)
    assert (
        tiny_val["not_stratified"] == "val and test: the val part (3 images) is smaller than the number of classes (4)"
    )
    assert tiny_val["sizes"] == {"train": 60, "val": 3, "test": 20}
    assert class_counts(four_classes.labels, tiny_val["indices"]["train"], 4).tolist() == [15] * 4  # still stratified


def test_default_split_with_a_given_test_set_uses_the_whole_pool(tmp_path):
    write_pair(tmp_path, "train", 60, seed=1)
    write_pair(tmp_path, "t10k", 12, seed=2)
    record = make_split(load_dataset("mnist", str(tmp_path)), None, seed=0)
    assert record["sizes"] == {"train": 50, "val": 10, "test": 12}
    assert record["test_source"] == "given" and record["split_kind"] == "fractions"
    assert sorted(record["indices"]["test"]) == list(range(60, 72))
    assert sorted(record["indices"]["train"] + record["indices"]["val"]) == list(range(60))


def test_three_values_take_the_test_part_from_the_pool(tmp_path):
    write_pair(tmp_path, "train", 60, seed=1)
    write_pair(tmp_path, "t10k", 12, seed=2)
    loaded = load_dataset("mnist", str(tmp_path))
    record = make_split(loaded, "0.5,0.25,0.25", seed=0)
    assert record["test_source"] == "pool" and record["sizes"] == {"train": 30, "val": 15, "test": 15}
    assert max(i for part in record["indices"].values() for i in part) < 60
    with pytest.raises(UserError, match="asks for 61 images, the data has 60"):
        make_split(loaded, "50,11", seed=0)


def test_two_values_need_a_given_test_set():
    with pytest.raises(UserError, match="expected 3 values"):
        make_split(load_dataset("digits", None), "0.8,0.2", seed=0)


def test_a_test_part_of_zero_means_no_test_set():
    record = make_split(load_dataset("digits", None), "1000,500,0", seed=0)
    assert record["sizes"] == {"train": 1000, "val": 500, "test": 0} and record["indices"]["test"] == []
    assert len(tensor_splits(load_dataset("digits", None), record).test_x) == 0


@pytest.mark.parametrize("split,sizes", [(None, (1078, 359, 359)), ("1000,300,200", (1000, 300, 200))])
def test_split_record_is_exact_reproducible_and_disjoint(split, sizes):
    loaded = load_dataset("digits", None)
    record = make_split(loaded, split, seed=3)
    assert json.loads(json.dumps(record)) == record
    assert record["sizes"] == dict(zip(("train", "val", "test"), sizes, strict=True))
    assert [len(record["indices"][k]) for k in ("train", "val", "test")] == list(sizes)
    assert make_split(loaded, split, seed=3) == record
    assert make_split(loaded, split, seed=4)["indices"]["train"] != record["indices"]["train"]
    parts = [set(record["indices"][k]) for k in ("train", "val", "test")]
    assert sum(map(len, parts)) == len(set().union(*parts)) == sum(sizes)
    assert set().union(*parts) <= set(range(1797))


def test_record_survives_json_and_a_fresh_load(tmp_path):
    write_pair(tmp_path, "t10k", 40, compress=True)
    record = json.loads(json.dumps(make_split(load_dataset("mnist", str(tmp_path)), "20,10,10", seed=7)))
    assert make_split(load_dataset("mnist", str(tmp_path)), "20,10,10", seed=7) == record
    assert record["seed"] == 7 and record["num_images"] == 40 and record["image_shape"] == [1, 8, 8]
    assert record["sources"] == [
        str(tmp_path / "t10k-images-idx3-ubyte.gz"),
        str(tmp_path / "t10k-labels-idx1-ubyte.gz"),
    ]


def test_workers_use_the_recorded_indices_of_an_old_study():
    """A record from before stratification and class counts: its indices, and ten classes."""
    loaded = load_dataset("digits", None)
    record = make_split(loaded, "100,50,50", seed=0)
    for key in ("num_classes", "stratified"):
        del record[key]
    record["indices"] = {"train": list(range(100)), "val": list(range(100, 150)), "test": list(range(150, 200))}
    splits = tensor_splits(loaded, record)
    assert torch.equal(splits.train_x, torch.from_numpy(loaded.images[:100]))
    assert torch.equal(splits.train_y, torch.from_numpy(loaded.labels[:100]))
    assert torch.equal(splits.test_y, torch.from_numpy(loaded.labels[150:200]))
    assert splits.train_y.dtype == torch.int64 and splits.train_x.dtype == torch.float32
    assert splits.num_classes == 10 and splits.input_shape == (1, 8, 8)


def test_tensor_splits_refuse_other_data_and_move_once(tmp_path):
    loaded = load_dataset("digits", None)
    record = make_split(loaded, None, seed=0)
    splits = tensor_splits(loaded, record, "cpu")
    assert splits.to("cpu") is splits and splits.device == torch.device("cpu")
    write_pair(tmp_path, "t10k", 60, size=12)
    with pytest.raises(DataError, match="differ from those the study was created with"):
        tensor_splits(load_dataset("mnist", str(tmp_path)), record)
    more_classes = dict(record, num_classes=8)
    with pytest.raises(DataError, match="in 10 classes, recorded 1797 of \\[1, 8, 8\\] in 8"):
        tensor_splits(loaded, more_classes)


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason="the shared MNIST t10k files are not on this machine")
def test_real_mnist_t10k():
    loaded = load_dataset("mnist", str(SHARED_MNIST))
    assert loaded.images.shape == (10000, 1, 28, 28) and loaded.num_classes == 10
    record = make_split(loaded, "8000,1000,1000", seed=0)
    assert record["sizes"] == {"train": 8000, "val": 1000, "test": 1000}
    assert_stratified(loaded, record)
