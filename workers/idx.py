"""Read MNIST-format IDX files (plain or gzip), the format of MNIST, Fashion-MNIST and KMNIST.

An IDX file is a big-endian header (two zero bytes, a type code, the number of dimensions,
then one 32-bit size per dimension) followed by the data. Images are 3-dimensional unsigned
bytes (magic 2051), labels 1-dimensional (magic 2049). Every way a file can be wrong is a
one-line :class:`DataError` that names it.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from bohb_runner.errors import DataError

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
_GZIP_MAGIC = b"\x1f\x8b"


def read_raw(path: Path) -> bytes:
    """The file's bytes, decompressed if it is gzip (recognised by content, not by suffix)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    if data[:2] == _GZIP_MAGIC:
        try:
            return gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{path}: corrupt gzip data ({exc})") from None
    return data


def read_idx(path: Path, expected_magic: int) -> np.ndarray:
    """The array stored in an IDX file of unsigned bytes, checked against ``expected_magic``."""
    data = read_raw(path)
    if len(data) < 4:
        raise DataError(f"{path}: too short to be an IDX file ({len(data)} bytes)")
    magic = struct.unpack(">I", data[:4])[0]
    if magic != expected_magic:
        kind = "images" if expected_magic == IMAGES_MAGIC else "labels"
        raise DataError(f"{path}: not an IDX {kind} file (magic number {magic}, expected {expected_magic})")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated header")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(shape, dtype=np.int64))
    if len(data) - header < expected:
        raise DataError(f"{path}: truncated: {len(data) - header} data bytes, the header promises {expected}")
    return np.frombuffer(data, dtype=np.uint8, count=expected, offset=header).reshape(shape)


def read_images(path: Path) -> np.ndarray:
    images = read_idx(path, IMAGES_MAGIC)
    if images.ndim != 3 or min(images.shape[1:]) < 4:
        raise DataError(f"{path}: images must be N x H x W with H, W >= 4, got shape {images.shape}")
    return images


def read_labels(path: Path, count: int, num_classes: int = 10) -> np.ndarray:
    labels = read_idx(path, LABELS_MAGIC)
    if labels.ndim != 1:
        raise DataError(f"{path}: labels must be one-dimensional, got shape {labels.shape}")
    if len(labels) != count:
        raise DataError(f"{path}: {len(labels)} labels for {count} images")
    if len(labels) and int(labels.max()) >= num_classes:
        raise DataError(f"{path}: label {int(labels.max())} is outside 0..{num_classes - 1}")
    return labels.astype(np.int64)


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> None:
    """Write unsigned bytes as an IDX file (for tests and for users converting their data)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.tobytes()
    path.write_bytes(gzip.compress(payload) if compress else payload)
