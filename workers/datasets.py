"""Image-classification data for the reduced LeNet: loaded once per process, split once per study.

Sources (``--dataset``):

* ``digits`` (default): scikit-learn's embedded 8x8 handwritten digits, 1,797 images, no
  download ever. Split 60/20/20 into train/validation/test.
* ``mnist``: MNIST-format IDX files in ``--data-dir`` (plain, gzip or xz; directly in the
  directory or in torchvision's ``<Name>/raw/`` layout). The ``train-``/``t10k-`` pair of MNIST,
  Fashion-MNIST and KMNIST (looked for in ``DIR``, ``DIR/MNIST/raw``, ``DIR/FashionMNIST/raw``,
  ``DIR/KMNIST/raw``, the first folder that has them); failing those, the one other IDX set
  below that the directory holds. With several, the error names them and ``--dataset`` picks one.
  Any number of classes: as many as the largest label says (labels count from 0).
* ``emnist-<split>``: EMNIST's ``emnist-<split>-train-*`` and ``-test-*`` files, in ``DIR`` or
  ``DIR/EMNIST/raw`` (torchvision extracts all six splits there). Splits and classes: byclass 62,
  bymerge 47, balanced 47, letters 26 (stored as 1..26, used as 0..25), digits 10, mnist 10.
  EMNIST's files store each image transposed (column by column) relative to MNIST; they are
  transposed back when loaded, so that the images stand upright as MNIST's do. torchvision
  leaves them as stored, so weights trained here see the transpose of what torchvision's
  ``EMNIST`` yields.
* ``qmnist``: QMNIST's ``qmnist-train-*`` and ``qmnist-test-*`` files (labels
  ``*-labels-idx2-int``: N x 8 int32, the class in column 0), in ``DIR`` or ``DIR/QMNIST/raw``;
  its test set has 60,000 images. ``qmnist-nist``: QMNIST's ``xnist-*`` files (all 402,953 NIST
  digits, which include those of the train and test sets), one pool.

With both a train and a test pair, the test files are the test set and the train pool is split
5/6 train, 1/6 validation; with a single pair, it is split 70/15/15. The number of classes
(the model's outputs) is recorded with the split.

``--split`` overrides the defaults with three fractions (``0.8,0.1,0.1``) or three counts
(``8000,1000,1000``) of the pool. Values all <= 1 are fractions (each part is the floor of
its share), otherwise counts; either may leave images unused. A test part given as 0
(``8000,2000,0``) means no test set: the worker then has no test error to report. With a given test set (the
test pair beside the train pair), two values (``train,val``) split the pool and the given
test set stays the test set; three values take all three parts from the pool, and the given
test set is then not used at all (the record says so in ``test_source``).

The parts are stratified by class, in two draws of scikit-learn's ``train_test_split``: train
against the rest, then the rest into validation and test. Train has the pool's class
proportions to within one image per class; validation and test to within two, since the second
draw's rounding adds to the first's. A draw that cannot be stratified (a class with a single
image among those it splits, or a part with fewer images than there are classes) is made at
random instead; the record's ``stratified`` is then false, ``not_stratified`` says why, and a
warning is logged.

The split is made once, when the study is created, from the study seed, and recorded with
its indices in the study: every worker and every resumed run trains on exactly the same
images, whatever numpy or scikit-learn version a node has, and studies created before the split
was stratified keep theirs.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bohb_runner.errors import DataError, UserError
from workers.idx import read_images, read_labels

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IdxSet:
    """One family of IDX file names: its parts, the torchvision folders it lies in, its classes.

    ``parts`` maps ``train`` and ``test`` to (images, labels) file names without ``.gz``/``.xz``;
    ``num_classes`` None means as many classes as the labels say.
    """

    name: str
    folders: tuple[str, ...]
    parts: dict[str, tuple[str, str]]
    num_classes: int | None = None
    first_label: int = 0
    transposed: bool = False


def _pair(prefix: str, labels: str = "labels-idx1-ubyte") -> tuple[str, str]:
    return f"{prefix}-images-idx3-ubyte", f"{prefix}-{labels}"


MNIST_FILES = IdxSet("mnist", ("MNIST", "FashionMNIST", "KMNIST"), {"train": _pair("train"), "test": _pair("t10k")})
EMNIST_CLASSES = {"byclass": 62, "bymerge": 47, "balanced": 47, "letters": 26, "digits": 10, "mnist": 10}
OTHER_IDX_SETS: tuple[IdxSet, ...] = (
    *(
        IdxSet(
            f"emnist-{split}",
            ("EMNIST",),
            {"train": _pair(f"emnist-{split}-train"), "test": _pair(f"emnist-{split}-test")},
            num_classes=classes,
            first_label=1 if split == "letters" else 0,
            transposed=True,
        )
        for split, classes in EMNIST_CLASSES.items()
    ),
    IdxSet(
        "qmnist",
        ("QMNIST",),
        {"train": _pair("qmnist-train", "labels-idx2-int"), "test": _pair("qmnist-test", "labels-idx2-int")},
        num_classes=10,
    ),
    IdxSet("qmnist-nist", ("QMNIST",), {"train": _pair("xnist", "labels-idx2-int")}, num_classes=10),
)
IDX_SETS = {idx_set.name: idx_set for idx_set in (MNIST_FILES, *OTHER_IDX_SETS)}
DATASETS = ("digits", *IDX_SETS)
TORCHVISION_FOLDERS = tuple(dict.fromkeys(folder for s in IDX_SETS.values() for folder in s.folders))
_COMPRESSED = ("", ".gz", ".xz")


@dataclass
class LoadedImages:
    """A dataset in memory: images N x 1 x H x W in [0, 1], labels 0..num_classes-1, and which part is what."""

    name: str  # the IDX set actually read (``emnist-letters``), so that workers read the same
    images: np.ndarray
    labels: np.ndarray
    pool: np.ndarray  # indices available for train and validation (and test, without a given one)
    given_test: np.ndarray | None  # indices of a test set that came with the data
    sources: list[str]
    num_classes: int

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]


def load_dataset(name: str, data_dir: str | None) -> LoadedImages:
    """Load ``digits`` or an IDX set (from ``data_dir``); bad data is a one-line :class:`DataError`."""
    if name == "digits":
        if data_dir:
            raise UserError("--data-dir is for IDX datasets (--dataset mnist etc.); the digits dataset is embedded")
        return _load_digits()
    if name in IDX_SETS:
        if not data_dir:
            raise UserError(f"--dataset {name} needs --data-dir DIR (a directory of MNIST-format IDX files)")
        return _load_idx_directory(Path(data_dir), name)
    emnist = "/".join(EMNIST_CLASSES)
    raise UserError(f"--dataset must be digits, mnist, emnist-<split> ({emnist}), qmnist or qmnist-nist, got {name!r}")


def _load_digits() -> LoadedImages:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images.astype(np.float32) / 16.0)[:, None, :, :]
    labels = digits.target.astype(np.int64)
    pool = np.arange(len(labels))
    return LoadedImages("digits", images, labels, pool, None, ["sklearn.datasets.load_digits"], int(labels.max()) + 1)


def _first_existing(folder: Path, stem: str) -> Path | None:
    for suffix in _COMPRESSED:
        candidate = folder / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def _find_pairs(data_dir: Path, idx_set: IdxSet) -> dict[str, tuple[Path, Path]]:
    """The (images, labels) files of ``idx_set``'s parts, all from the first folder that has any."""
    for folder in [data_dir] + [data_dir / name / "raw" for name in idx_set.folders]:
        pairs = {}
        for part, (images_name, labels_name) in idx_set.parts.items():
            images = _first_existing(folder, images_name)
            labels = _first_existing(folder, labels_name)
            if images and labels:
                pairs[part] = (images, labels)
            elif images or labels:
                present, missing = (images, labels_name) if images else (labels, images_name)
                raise DataError(f"{present}: found, but its partner {folder / missing}[.gz] is missing")
        if pairs:
            return pairs
    return {}


def _choose_idx_set(data_dir: Path, name: str) -> tuple[IdxSet, dict[str, tuple[Path, Path]]]:
    """The IDX set ``--dataset name`` means in ``data_dir``, with its files; ``mnist`` may be any one set."""
    wanted = IDX_SETS[name]
    pairs = _find_pairs(data_dir, wanted)
    if pairs:
        return wanted, pairs
    if name != "mnist":
        images = wanted.parts["train"][0]
        raise DataError(
            f"{data_dir}: no {name} files found (looked for {images}[.gz] etc. here and in {wanted.folders[0]}/raw)"
        )
    found = [(idx_set, pairs) for idx_set in OTHER_IDX_SETS if (pairs := _find_pairs(data_dir, idx_set))]
    if len(found) == 1:
        return found[0]
    if found:
        names = [idx_set.name for idx_set, _ in found]
        raise DataError(
            f"{data_dir}: holds {len(names)} IDX sets ({', '.join(names)}); "
            f"pick one with --dataset {names[0]} (or {' / '.join(names[1:])})"
        )
    raise DataError(
        f"{data_dir}: no MNIST-format IDX files found (looked for train-/t10k-images-idx3-ubyte[.gz], "
        f"emnist-<split>-*, qmnist-*, xnist-*, also in MNIST/raw, EMNIST/raw, QMNIST/raw etc.)"
    )


def _load_idx_directory(data_dir: Path, name: str) -> LoadedImages:
    if not data_dir.exists():
        raise DataError(f"{data_dir}: data directory not found")
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: is a file, --data-dir needs the directory that holds the IDX files")
    idx_set, pairs = _choose_idx_set(data_dir, name)
    parts_images, parts_labels, sources, ranges = [], [], [], {}
    start = 0
    shape = None
    for part, (images_path, labels_path) in pairs.items():
        images = read_images(images_path)
        if idx_set.transposed:
            images = images.transpose(0, 2, 1)
        labels = read_labels(labels_path, len(images), idx_set.num_classes, idx_set.first_label)
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
    if not len(labels):
        raise DataError(f"{sources[0]}: holds no images")
    if len(ranges) == 2:
        pool, given_test = ranges["train"], ranges["test"]
    else:
        (pool,), given_test = ranges.values(), None
    num_classes = idx_set.num_classes or int(labels.max()) + 1
    return LoadedImages(idx_set.name, images, labels, pool, given_test, sources, num_classes)


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


def _why_not_stratified(labels: np.ndarray, sizes: dict[str, int]) -> str | None:
    """Why scikit-learn cannot split ``labels`` by class into two parts of ``sizes``, or None.

    Its conditions (a class needs two images, each part one image per class), checked here so
    that the reason names our parts rather than its ``train_size``/``test_size``.
    """
    classes, counts = np.unique(labels, return_counts=True)
    parts = " and ".join(sizes)
    if counts.min() < 2:
        rare = [str(int(c)) for c in classes[counts < 2]]
        if len(rare) == 1:
            return f"{parts}: class {rare[0]} has a single image"
        listed = ", ".join(rare[:5]) + (", ..." if len(rare) > 5 else "")
        return f"{parts}: {len(rare)} classes ({listed}) have a single image each"
    for name, size in sizes.items():
        if size < len(classes):
            return f"{parts}: the {name} part ({size} images) is smaller than the number of classes ({len(classes)})"
    return None


def _draw_two(
    indices: np.ndarray, labels: np.ndarray, sizes: dict[str, int], random_state: int
) -> tuple[np.ndarray, np.ndarray, str | None]:
    """``indices`` in two parts of ``sizes`` (any others left out), stratified by class if possible.

    Returns both parts and, where they could not be stratified, why (they are then drawn at random).
    """
    from sklearn.model_selection import train_test_split

    problem = _why_not_stratified(labels[indices], sizes)
    first_size, second_size = sizes.values()
    first, second = train_test_split(
        indices,
        train_size=first_size,
        test_size=second_size,
        stratify=None if problem else labels[indices],
        random_state=random_state,
    )
    return first, second, problem


def _draw_parts(
    pool: np.ndarray, labels: np.ndarray, sizes: dict[str, int], seed: int
) -> tuple[dict[str, np.ndarray], list[str]]:
    """``pool`` in parts of ``sizes`` (train, val and maybe test): train against the rest, then the rest in two.

    Each draw is stratified where possible; returns the parts and why any draw was not.
    """
    first_draw, second_draw = (int(s) for s in np.random.SeedSequence([seed, 0x5911]).generate_state(2))
    (first_name, *rest_names) = sizes
    rest_size = sum(sizes[name] for name in rest_names)
    first, rest, problem = _draw_two(pool, labels, {first_name: sizes[first_name], "rest": rest_size}, first_draw)
    parts, problems = {first_name: first}, [problem]
    if len(rest_names) == 1:
        parts[rest_names[0]] = rest
    else:
        second, third, problem = _draw_two(rest, labels, {name: sizes[name] for name in rest_names}, second_draw)
        parts.update(zip(rest_names, (second, third), strict=True))
        problems.append(problem)
    return parts, [p for p in problems if p]


def make_split(loaded: LoadedImages, split: str | None, seed: int) -> dict[str, Any]:
    """Fix the train/validation/test split; returns the JSON record stored with the study."""
    split = split or default_split(loaded)
    values = _parse_split(split)
    pool = loaded.pool
    test_source = "given" if loaded.given_test is not None and len(values) == 2 else "pool"
    if test_source == "given":
        n_train, n_val = _part_sizes(split, len(pool), 2)
        sizes = {"train": n_train, "val": n_val}
    else:
        n_train, n_val, n_test = _part_sizes(split, len(pool), 3)
        sizes = {"train": n_train, "val": n_val, "test": n_test} if n_test else {"train": n_train, "val": n_val}
    indices, not_stratified = _draw_parts(pool, loaded.labels, sizes, seed)
    if "test" not in indices:
        indices["test"] = loaded.given_test if test_source == "given" else np.zeros(0, dtype=np.int64)
    if not_stratified:
        logger.warning("--split %s: not stratified by class, drawn at random: %s", split, "; ".join(not_stratified))
    record = {
        "dataset": loaded.name,
        "sources": loaded.sources,
        "num_images": int(len(loaded.images)),
        "image_shape": list(loaded.image_shape),
        "num_classes": loaded.num_classes,
        "split": split,
        "split_kind": "fractions" if _is_fractions(values) else "counts",
        "test_source": test_source,
        "seed": seed,
        "stratified": not not_stratified,
        "sizes": {k: int(len(v)) for k, v in indices.items()},
        "indices": {k: [int(i) for i in v] for k, v in indices.items()},
    }
    if not_stratified:
        record["not_stratified"] = "; ".join(not_stratified)
    return record


_TENSOR_FIELDS = ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")

# Studies recorded before the number of classes was: their data had ten (the reader refused more).
RECORDED_CLASSES_BEFORE = 10


@dataclass
class TensorSplits:
    """Train, validation and test tensors, resident on one device for the life of the worker.

    ``num_classes`` is the model's output count: :func:`tensor_splits` sets it from the record;
    splits built by hand (benchmarks) get MNIST's ten unless they say otherwise.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    device: torch.device
    num_classes: int = 10

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])  # type: ignore[return-value]

    def to(self, device: torch.device | str) -> TensorSplits:
        """The same splits on ``device`` (itself when they are already there)."""
        device = torch.device(device)
        if device == self.device:
            return self
        moved = {name: getattr(self, name).to(device) for name in _TENSOR_FIELDS}
        return TensorSplits(device=device, num_classes=self.num_classes, **moved)


def tensor_splits(loaded: LoadedImages, record: dict[str, Any], device: torch.device | str = "cpu") -> TensorSplits:
    """The recorded split of ``loaded`` as tensors on ``device``."""
    num_classes = int(record.get("num_classes", RECORDED_CLASSES_BEFORE))
    if (
        record.get("num_images") != len(loaded.images)
        or list(record.get("image_shape", [])) != list(loaded.image_shape)
        or loaded.num_classes > num_classes
    ):
        raise DataError(
            f"{loaded.sources[0]}: the data differ from those the study was created with "
            f"({len(loaded.images)} images of {list(loaded.image_shape)} in {loaded.num_classes} classes, recorded "
            f"{record.get('num_images')} of {record.get('image_shape')} in {num_classes})"
        )
    device = torch.device(device)
    parts = {}
    for name in ("train", "val", "test"):
        index = np.asarray(record["indices"][name], dtype=np.int64)
        parts[f"{name}_x"] = torch.from_numpy(loaded.images[index]).to(device)
        parts[f"{name}_y"] = torch.from_numpy(loaded.labels[index]).to(device)
    return TensorSplits(device=device, num_classes=num_classes, **parts)
