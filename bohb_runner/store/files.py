"""How bohb-runner writes whole files and reads JSON-lines files: one rule for each.

**Whole files** (``study.json``, ``secret.key``, ``status.json``, ``nameserver.json``, SLURM
scripts, ``launch.json``, checkpoints, narrowed spaces, comparison files) are replaced
atomically: written under a unique temporary name in the same directory (same file system, and
two writers never share a temporary), fsynced, renamed over the old file with ``os.replace``,
and the directory fsynced so that the rename itself survives a power cut. A reader, on this
node or another one that sees the directory, finds the old file or the new one, never half of
one; a failed write removes its temporary file and leaves the old file as it was. A file
written with ``mode`` (a secret: 0600) has that mode from its creation, not after a chmod.

**JSON-lines files** (the journals, ``slurm/jobs.jsonl``, hpbandster's live ``configs.json``
and ``results.json``) are appended a line at a time, and the rule for reading them is: a last
line without its newline is a write that was cut off (a crash, or a writer still busy with
it); it is dropped, with a warning where the caller says that means a crash. Any other line
that does not parse is corruption, reported with ``file:line`` rather than skipped, since
skipping it would silently lose a record. Blank lines are ignored.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Literal

from bohb_runner.errors import StudyError

logger = logging.getLogger(__name__)


# -- whole files --------------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_file(
    path: Path | str, binary: bool = False, *, mode: int | None = None, durable: bool = True
) -> Iterator[IO[Any]]:
    """An open temporary file that replaces ``path`` when the ``with`` block ends without error.

    For writers that produce their content into a file object (``json.dump``, ``torch.save``).
    ``mode``: the file's permissions, set from its creation (``0o600`` for a secret: never
    readable by others, not even for a moment); by default those of a new file (0666 less the
    umask). ``durable=False`` skips both fsyncs, for a live snapshot that is rewritten every few
    seconds and means nothing after a reboot (``status.json``, ``nameserver.json``): readers
    still never see half a file. The parent directory must exist.
    """
    path = Path(path)
    fd, tmp = _create_temporary(path, 0o666 if mode is None else mode)
    try:
        if mode is not None:
            os.fchmod(fd, mode)  # exactly this mode, whatever the umask took away
        with os.fdopen(fd, "wb" if binary else "w") as fh:
            yield fh
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_directory(path.parent)


def write_atomically(path: Path | str, data: str | bytes, *, mode: int | None = None, durable: bool = True) -> Path:
    """Replace ``path`` with ``data`` atomically (see :func:`atomic_file`); returns ``path``."""
    with atomic_file(path, isinstance(data, bytes), mode=mode, durable=durable) as fh:
        fh.write(data)
    return Path(path)


def write_json_atomically(path: Path | str, data: Any, *, durable: bool = True, **dump_options: Any) -> Path:
    """Replace ``path`` with ``data`` as JSON (and a final newline) atomically; ``dump_options``
    go to ``json.dumps`` (``indent``, ``sort_keys``)."""
    return write_atomically(path, json.dumps(data, **dump_options) + "\n", durable=durable)


def fsync_directory(directory: Path | str) -> None:
    """Make the creation, rename or removal of a file in ``directory`` durable.

    Some file systems cannot open or fsync a directory (EINVAL, EACCES, ...); there the rename
    is as durable as that file system makes it, which is no reason to fail a write.
    """
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _create_temporary(path: Path, mode: int) -> tuple[int, str]:
    """A new file ``.NAME.RANDOM.tmp`` beside ``path``, created exclusively (never another
    writer's, even between processes on different nodes)."""
    while True:
        tmp = str(path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp"))
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), tmp
        except FileExistsError:
            continue


# -- JSON-lines files ---------------------------------------------------------------------------


def read_json_lines(
    path: Path | str, *, what: str = "line", torn_tail: Literal["warn", "quiet"] = "warn"
) -> Iterator[tuple[int, Any]]:
    """Yield ``(line number, value)`` for every line of a JSON-lines file, by the rule above.

    A missing file has no lines. ``what`` names a line in the corruption message
    (``results.jsonl:3: corrupt journal line (...)``). ``torn_tail="warn"`` logs a dropped torn
    last line as a crash's; ``"quiet"`` is for files read while their writer is still busy,
    where a line without its newline yet is normal.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StudyError(f"{path}: unreadable ({exc.strerror or exc})") from None
    lines = data.split(b"\n")
    torn = lines.pop()  # what follows the last newline: empty unless the last write was cut off
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
            raise StudyError(f"{path}:{number}: corrupt {what} ({exc.__class__.__name__}: {exc})") from None
        yield number, value
    if torn.strip() and torn_tail == "warn":
        logger.warning(
            "%s:%d: dropping a torn last line (%d bytes, written during a crash)", path, len(lines) + 1, len(torn)
        )
