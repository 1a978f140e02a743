"""Read and write IDX files (plain, gzip or xz), the format of MNIST, Fashion-MNIST, KMNIST, EMNIST and QMNIST.

An IDX file is a big-endian header (two zero bytes, a type code, the number of dimensions,
then one 32-bit size per dimension) followed by the data. Images are 3-dimensional unsigned
bytes (magic 2051 = 0x0803). Labels are 1-dimensional unsigned bytes (magic 2049 = 0x0801), or,
in QMNIST, 2-dimensional 32-bit integers (magic 3074 = 0x0C02, N x 8, the class in column 0 and
NIST's writer and series information in the others). Every way a file can be wrong is a one-line
:class:`DataError` that names it.
"""

from __future__ import annotations

import gzip
import lzma
import struct
import zlib
from pathlib import Path

import numpy as np
from numpy.typing import DTypeLike

from bohb_runner.errors import DataError

# IDX type code -> element type (big-endian); the format defines these six
IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
IMAGES_MAGIC = 0x0803  # unsigned bytes, N x H x W
LABELS_MAGIC = 0x0801  # unsigned bytes, N
QMNIST_LABELS_MAGIC = 0x0C02  # int32, N x 8 (QMNIST's extended labels)
_GZIP_MAGIC = b"\x1f\x8b"
_XZ_MAGIC = b"\xfd7zXZ\x00"


def read_raw(path: Path) -> bytes:
    """The file's bytes, decompressed if it is gzip or xz (recognised by content, not by suffix)."""
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
    if data[:6] == _XZ_MAGIC:
        try:
            return lzma.decompress(data)
        except lzma.LZMAError as exc:
            raise DataError(f"{path}: corrupt xz data ({exc})") from None
    return data


def read_idx(path: Path, kind: str, *magics: int) -> np.ndarray:
    """The array stored in an IDX file whose magic number is one of ``magics`` (``kind`` names it in errors)."""
    data = read_raw(path)
    if len(data) < 4:
        raise DataError(f"{path}: too short to be an IDX file ({len(data)} bytes)")
    magic = struct.unpack(">I", data[:4])[0]
    if magic not in magics:
        expected = " or ".join(str(m) for m in magics)
        raise DataError(f"{path}: not an IDX {kind} file (magic number {magic}, expected {expected})")
    dtype, ndim = IDX_TYPES[magic >> 8], magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated header")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected_bytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header < expected_bytes:
        raise DataError(f"{path}: truncated: {len(data) - header} data bytes, the header promises {expected_bytes}")
    array = np.frombuffer(data, dtype=dtype, count=expected_bytes // dtype.itemsize, offset=header).reshape(shape)
    return array if dtype.itemsize == 1 else array.astype(dtype.newbyteorder("="))  # bytes stay a view


def read_images(path: Path) -> np.ndarray:
    """N x H x W unsigned bytes, with H, W >= 4 (the smallest images the reduced LeNet takes)."""
    images = read_idx(path, "images", IMAGES_MAGIC)
    if images.ndim != 3 or min(images.shape[1:]) < 4:
        raise DataError(f"{path}: images must be N x H x W with H, W >= 4, got shape {images.shape}")
    return images


def read_labels(path: Path, count: int, num_classes: int | None = None, first_label: int = 0) -> np.ndarray:
    """``count`` class labels as int64, counted from 0.

    A 1-dimensional byte file or QMNIST's N x 8 int32 file (its column 0). The labels must lie in
    ``first_label .. first_label + num_classes - 1`` (any non-negative value without ``num_classes``)
    and are returned minus ``first_label``: EMNIST letters, stored as 1..26, become 0..25.
    """
    labels = read_idx(path, "labels", LABELS_MAGIC, QMNIST_LABELS_MAGIC)
    if labels.ndim == 2:
        if labels.shape[1] < 1:
            raise DataError(f"{path}: a 2-dimensional label file needs the class in column 0, got shape {labels.shape}")
        labels = labels[:, 0]
    if len(labels) != count:
        raise DataError(f"{path}: {len(labels)} labels for {count} images")
    if len(labels):
        low, high = int(labels.min()), int(labels.max())
        last = None if num_classes is None else first_label + num_classes - 1
        if low < first_label or (last is not None and high > last):
            bad = low if low < first_label else high
            allowed = f"{first_label}..{last}" if last is not None else f">= {first_label}"
            raise DataError(f"{path}: label {bad} is outside {allowed}")
    return labels.astype(np.int64) - first_label


_WRITE_TYPES = {np.dtype(dtype.newbyteorder("=")): code for code, dtype in IDX_TYPES.items()}


def write_idx(path: Path, array: np.ndarray, compress: bool | str = False, dtype: DTypeLike = np.uint8) -> None:
    """Write ``array`` as an IDX file of ``dtype`` (for tests and for users converting their data).

    ``dtype`` is one of the IDX element types: unsigned bytes for images and labels, int32 for
    QMNIST-style label tables. Values that ``dtype`` cannot hold are refused, not wrapped.
    ``compress``: ``True`` or ``"gzip"``, ``"xz"``, or ``False``.
    """
    target = np.dtype(dtype)
    if target not in _WRITE_TYPES:
        raise ValueError(f"IDX files hold uint8, int8, int16, int32, float32 or float64, not {target}")
    source = np.asarray(array)
    converted = np.ascontiguousarray(source, dtype=target.newbyteorder(">"))
    if source.size and not np.array_equal(converted, source):
        raise ValueError(f"{path}: values outside what {target} holds (or not whole numbers)")
    header = struct.pack(">I", _WRITE_TYPES[target] << 8 | converted.ndim)
    payload = header + struct.pack(f">{converted.ndim}I", *converted.shape) + converted.tobytes()
    if compress is True or compress == "gzip":
        payload = gzip.compress(payload)
    elif compress == "xz":
        payload = lzma.compress(payload)
    elif compress is not False:
        raise ValueError(f"compress must be False, True, 'gzip' or 'xz', not {compress!r}")
    path.write_bytes(payload)
