"""Image-classification data for the reduced LeNet: loaded once per process, split once per study.

Two sources:

* ``digits`` (default): scikit-learn's embedded 8x8 handwritten digits, 1,797 images, no
  download ever. Split 60/20/20 into train/validation/test.
* ``mnist``: MNIST-format IDX files in ``--data-dir`` (plain or gzip; directly in the
  directory or in torchvision's ``<Name>/raw/`` layout), so Fashion-MNIST and KMNIST work
  too. With both the ``train`` and the ``t10k`` pair, t10k is the test set and the train pool
  is split 5/6 train, 1/6 validation; with a single pair, it is split 70/15/15.

``--split`` overrides the defaults with three fractions (``0.8,0.1,0.1``) or three counts
(``8000,1000,1000``) of the pool. Values all <= 1 are fractions (each part is the floor of
its share), otherwise counts; either may leave images unused. A test part given as 0
(``8000,2000,0``) means no test set: the worker then has no test error to report. With a given test set (the
t10k pair beside the train pair), two values (``train,val``) split the pool and the given
test set stays the test set; three values take all three parts from the pool, and the given
test set is then not used at all (the record says so in ``test_source``).

The split is made once, when the study is created, from the study seed, and recorded with
its indices in the study: every worker and every resumed run trains on exactly the same
images, whatever numpy version a node has.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bohb_runner.errors import DataError, UserError
from workers.idx import read_images, read_labels

DATASETS = ("digits", "mnist")
IDX_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "t10k": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
TORCHVISION_FOLDERS = ("MNIST", "FashionMNIST", "KMNIST", "EMNIST", "QMNIST")


@dataclass
class LoadedImages:
    """A dataset in memory: images N x 1 x H x W in [0, 1], labels, and which part is what."""

    name: str
    images: np.ndarray
    labels: np.ndarray
    pool: np.ndarray  # indices available for train and validation (and test, without a given one)
    given_test: np.ndarray | None  # indices of a test set that came with the data
    sources: list[str]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]


def load_dataset(name: str, data_dir: str | None) -> LoadedImages:
    """Load ``digits`` or ``mnist`` (from ``data_dir``); bad data is a one-line :class:`DataError`."""
    if name == "digits":
        if data_dir:
            raise UserError("--data-dir is for --dataset mnist; the digits dataset is embedded")
        return _load_digits()
    if name == "mnist":
        if not data_dir:
            raise UserError("--dataset mnist needs --data-dir DIR (a directory of MNIST-format IDX files)")
        return _load_idx_directory(Path(data_dir))
    raise UserError(f"--dataset must be one of {', '.join(DATASETS)}, got {name!r}")


def _load_digits() -> LoadedImages:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images.astype(np.float32) / 16.0)[:, None, :, :]
    labels = digits.target.astype(np.int64)
    return LoadedImages("digits", images, labels, np.arange(len(labels)), None, ["sklearn.datasets.load_digits"])


def _find_idx_pairs(data_dir: Path) -> dict[str, tuple[Path, Path]]:
    """The IDX image/label pairs in ``data_dir`` or its torchvision ``<Name>/raw`` folders."""
    folders = [data_dir] + [data_dir / name / "raw" for name in TORCHVISION_FOLDERS]
    pairs: dict[str, tuple[Path, Path]] = {}
    for part, (images_name, labels_name) in IDX_NAMES.items():
        for folder in folders:
            images = _first_existing(folder, images_name)
            labels = _first_existing(folder, labels_name)
            if images and labels:
                pairs[part] = (images, labels)
                break
            if images or labels:
                present, missing = (images, labels_name) if images else (labels, images_name)
                raise DataError(f"{present}: found, but its partner {folder / missing}[.gz] is missing")
    return pairs


def _first_existing(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _load_idx_directory(data_dir: Path) -> LoadedImages:
    if not data_dir.exists():
        raise DataError(f"{data_dir}: data directory not found")
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: is a file, --data-dir needs the directory that holds the IDX files")
    pairs = _find_idx_pairs(data_dir)
    if not pairs:
        names = ", ".join(f"{i}[.gz]" for i, _ in IDX_NAMES.values())
        raise DataError(f"{data_dir}: no MNIST-format IDX files found (looked for {names}, also in MNIST/raw etc.)")
    parts_images, parts_labels, sources, ranges = [], [], [], {}
    start = 0
    shape = None
    for part, (images_path, labels_path) in pairs.items():
        images = read_images(images_path)
        labels = read_labels(labels_path, len(images))
        if shape is not None and images.shape[1:] != shape:
            raise DataError(f"{images_path}: image size {images.shape[1:]} differs from the other files' {shape}")
        shape = images.shape[1:]
        parts_images.append(images)
        parts_labels.append(labels)
        sources += [str(images_path), str(labels_path)]
        ranges[part] = np.arange(start, start + len(images))
        start += len(images)
    images = (np.concatenate(parts_images).astype(np.float32) / 255.0)[:, None, :, :]
    labels = np.concatenate(parts_labels)
    if "train" in ranges:
        pool, given_test = ranges["train"], ranges.get("t10k")
    else:
        pool, given_test = ranges["t10k"], None
    return LoadedImages("mnist", images, labels, pool, given_test, sources)


def default_split(loaded: LoadedImages) -> str:
    """The split used without ``--split``; 5/6 is written in full so 60,000 give 50,000/10,000."""
    if loaded.name == "digits":
        return "0.6,0.2,0.2"
    if loaded.given_test is not None:
        return f"{5 / 6!r},{1 / 6!r}"
    return "0.7,0.15,0.15"


def _parse_split(split: str) -> list[float]:
    try:
        values = [float(v) for v in split.split(",")]
    except ValueError:
        raise UserError(
            f"--split {split!r}: expected comma-separated numbers, e.g. 0.6,0.2,0.2 or 8000,1000,1000"
        ) from None
    if any(not math.isfinite(v) or v < 0 for v in values):
        raise UserError(f"--split {split!r}: parts must be non-negative numbers")
    return values


def _is_fractions(values: list[float]) -> bool:
    return all(v <= 1 for v in values)


def _part_sizes(split: str, available: int, parts: int) -> list[int]:
    values = _parse_split(split)
    if len(values) != parts:
        raise UserError(f"--split {split!r}: expected {parts} values here (train,val{',test' if parts == 3 else ''})")
    if _is_fractions(values):
        if sum(values) > 1 + 1e-9:
            raise UserError(f"--split {split!r}: fractions add up to {sum(values):g}, more than 1")
        sizes = [int(math.floor(v * available + 1e-9)) for v in values]
    else:  # counts
        if any(v != int(v) for v in values):
            raise UserError(f"--split {split!r}: counts must be whole numbers (or give fractions <= 1)")
        sizes = [int(v) for v in values]
        if sum(sizes) > available:
            raise UserError(f"--split {split!r}: asks for {sum(sizes)} images, the data has {available}")
    names = ("train", "val", "test")
    for name, size, value in zip(names, sizes, values, strict=False):
        if name == "test" and value == 0:
            continue  # asked for explicitly (e.g. 8000,2000,0): no test set, no test error
        if size < 1:
            raise UserError(f"--split {split!r}: the {name} part would be empty ({available} images available)")
    return sizes


def make_split(loaded: LoadedImages, split: str | None, seed: int) -> dict[str, Any]:
    """Fix the train/validation/test split; returns the JSON record stored with the study."""
    split = split or default_split(loaded)
    values = _parse_split(split)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5911]))
    pool = rng.permutation(loaded.pool)
    test_source = "given" if loaded.given_test is not None and len(values) == 2 else "pool"
    if test_source == "given":
        n_train, n_val = _part_sizes(split, len(pool), 2)
        indices = {"train": pool[:n_train], "val": pool[n_train : n_train + n_val], "test": loaded.given_test}
    else:
        n_train, n_val, n_test = _part_sizes(split, len(pool), 3)
        indices = {
            "train": pool[:n_train],
            "val": pool[n_train : n_train + n_val],
            "test": pool[n_train + n_val : n_train + n_val + n_test],
        }
    return {
        "dataset": loaded.name,
        "sources": loaded.sources,
        "num_images": int(len(loaded.images)),
        "image_shape": list(loaded.image_shape),
        "split": split,
        "split_kind": "fractions" if _is_fractions(values) else "counts",
        "test_source": test_source,
        "seed": seed,
        "sizes": {k: int(len(v)) for k, v in indices.items()},
        "indices": {k: [int(i) for i in v] for k, v in indices.items()},
    }


_TENSOR_FIELDS = ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")


@dataclass
class TensorSplits:
    """Train, validation and test tensors, resident on one device for the life of the worker."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    device: torch.device

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])  # type: ignore[return-value]

    def to(self, device: torch.device | str) -> TensorSplits:
        """The same splits on ``device`` (itself when they are already there)."""
        device = torch.device(device)
        if device == self.device:
            return self
        moved = {name: getattr(self, name).to(device) for name in _TENSOR_FIELDS}
        return TensorSplits(device=device, **moved)


def tensor_splits(loaded: LoadedImages, record: dict[str, Any], device: torch.device | str = "cpu") -> TensorSplits:
    """The recorded split of ``loaded`` as tensors on ``device``."""
    if record.get("num_images") != len(loaded.images) or list(record.get("image_shape", [])) != list(
        loaded.image_shape
    ):
        raise DataError(
            f"{loaded.sources[0]}: the data differ from those the study was created with "
            f"({len(loaded.images)} images of {list(loaded.image_shape)}, recorded {record.get('num_images')} of "
            f"{record.get('image_shape')})"
        )
    device = torch.device(device)
    parts = {}
    for name in ("train", "val", "test"):
        index = np.asarray(record["indices"][name], dtype=np.int64)
        parts[f"{name}_x"] = torch.from_numpy(loaded.images[index]).to(device)
        parts[f"{name}_y"] = torch.from_numpy(loaded.labels[index]).to(device)
    return TensorSplits(device=device, **parts)
