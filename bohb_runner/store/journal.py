"""Append-only JSON-lines journals: the study's record of what was sampled and what finished.

The results journal holds one line per finished evaluation, written whole, flushed and fsynced
by the master before it acts on the result, so that a crash at any moment loses nothing that
was reported. Everything else about a study's progress (incumbent, trajectories, exports) is
derived from it. A second journal records each configuration when it is sampled, like
hpbandster's ``configs.json``, so that exports hold configurations that never finished too.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from bohb_runner.compat import to_native
from bohb_runner.errors import StudyError
from bohb_runner.store.files import read_json_lines

logger = logging.getLogger(__name__)

RESULTS_JOURNAL = "results.jsonl"
CONFIGS_JOURNAL = "configs.jsonl"

ConfigId = tuple[int, int, int]
T = TypeVar("T")


def json_safe(value: Any) -> Any:
    """Plain-Python, strict-JSON version of a value: numpy converted, NaN and infinities as None.

    One pass over the value (the master calls this for every result it journals): plain
    scalars return at once, and numpy or torch values go through :func:`to_native` first.
    """
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is float:
        return value if math.isfinite(value) else None
    if kind is dict:
        return {k if type(k) is str else str(to_native(k)): json_safe(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [json_safe(v) for v in value]
    native = to_native(value)
    if type(native) is kind:  # nothing to convert (an unknown object: json decides)
        return native
    return json_safe(native)


@dataclass
class Evaluation:
    """One finished evaluation: a configuration trained on one budget, and what came of it.

    ``status`` is ``ok`` when the worker returned a finite loss, ``failed`` otherwise (an
    exception, a NaN loss, a dead worker); ``error`` then says why.
    """

    config_id: ConfigId
    budget: float
    loss: float | None
    status: str
    config: dict[str, Any]
    config_info: dict[str, Any] = field(default_factory=dict)
    info: Any = None
    error: str | None = None
    worker: str | None = None
    submitted: float | None = None
    started: float | None = None
    finished: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok" and self.loss is not None

    def to_json(self) -> dict[str, Any]:
        # field by field rather than dataclasses.asdict, which deep-copies every value: this
        # runs once per result on the master's critical path
        return json_safe({name: getattr(self, name) for name in self.__dataclass_fields__})

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> Evaluation:
        values = dict(record)
        values["config_id"] = tuple(int(i) for i in values["config_id"])
        values["budget"] = float(values["budget"])
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in values.items() if k in known})


@dataclass
class SampledConfig:
    """A configuration as the optimizer sampled it, before it ran."""

    config_id: ConfigId
    config: dict[str, Any]
    config_info: dict[str, Any]
    sampled: float

    def to_json(self) -> dict[str, Any]:
        return json_safe({name: getattr(self, name) for name in self.__dataclass_fields__})

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> SampledConfig:
        return cls(
            config_id=tuple(int(i) for i in record["config_id"]),
            config=record["config"],
            config_info=record.get("config_info") or {},
            sampled=float(record.get("sampled") or 0.0),
        )


class JournalClosed(Exception):
    """A write after the journal was closed: the master is stopping, and the result this line
    would have recorded is not in the journal; the evaluation runs again on resume."""


class JournalWriteError(OSError):
    """A line could not be written whole (disk full, file size limit); nothing of it was kept."""


class JournalWriter:
    """Appends records to a JSON-lines file; each record is one ``write`` of a whole line, and
    :meth:`append` returns once it is on the disk (fsync).

    :meth:`write` and :meth:`sync` are the two halves of ``append``, for a master that receives
    many results at once: each result's line is written in order under the master's lock, and the
    fsyncs happen outside it (group commit). The guarantee: when ``sync(s)`` returns, an fsync that
    started after line ``s`` was written has completed, so line ``s`` and every line before it are
    on the disk; lines already covered by an fsync cost no other. Results arriving together thus
    share one fsync instead of queueing behind each other's.

    A line is in the file whole or not at all: a short write is cut back to where the line began
    before :class:`JournalWriteError` is raised, so later lines never follow a fragment. After
    :meth:`close` (which waits for a sync in progress and makes every written line durable),
    :meth:`write` raises :class:`JournalClosed`, and :meth:`sync` of a line written before the
    close returns at once.
    """

    def __init__(self, path: Path, fsync: bool = True) -> None:
        self.path = Path(path)
        self._fsync = fsync
        self._lock = threading.Lock()  # the file's end: writes, and the count of lines written
        self._sync_lock = threading.Lock()  # one fsync at a time; close waits for it too
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._refusal: str | None = None  # why no more lines are taken (closed, a fragment left)
        self._appends = 0  # lines written by this writer: the sequence number of the last one
        self._durable = 0  # lines of this writer known to be on the disk

    @property
    def closed(self) -> bool:
        """True once no more lines are taken: from the moment :meth:`close` starts (or after a
        short write whose fragment could not be removed)."""
        return self._refusal is not None

    def append(self, record: dict[str, Any]) -> None:
        self.sync(self.write(record))

    def write(self, record: dict[str, Any]) -> int:
        """Write the record's line (not yet fsynced); returns its sequence number for :meth:`sync`."""
        line = (json.dumps(record, allow_nan=False, separators=(",", ":")) + "\n").encode()
        with self._lock:
            if self._refusal is not None:
                raise JournalClosed(f"{self.path}: {self._refusal}")
            written = os.write(self._fd, line)
            if written != len(line):
                self._cut_back(written, len(line))
            self._appends += 1
            return self._appends

    def _cut_back(self, written: int, size: int) -> None:
        """Remove the fragment a short write left, so that the next line starts a line of its own.

        The file ends with the fragment (this writer is the study's only one: the study lock),
        so the line began ``written`` bytes before the end.
        """
        try:
            os.ftruncate(self._fd, os.fstat(self._fd).st_size - written)
        except OSError as exc:
            # the fragment stays as the file's torn last line: no later line may follow it
            self._refusal = "the journal ends with the fragment of a short write and takes no more lines"
            raise JournalWriteError(
                f"{self.path}: short write ({written} of {size} bytes), and removing the fragment failed "
                f"({exc.strerror}); the journal takes no more lines (the next run drops the fragment)"
            ) from None
        raise JournalWriteError(
            f"{self.path}: short write ({written} of {size} bytes: disk full or file size limit?); "
            "the line was removed again, nothing partial is kept"
        )

    def sync(self, sequence: int) -> None:
        """Return once line ``sequence`` (and every line before it) is on the disk."""
        if not self._fsync:
            return
        with self._sync_lock:  # who waited here usually finds its line durable already
            if self._durable >= sequence:
                return
            with self._lock:
                if self._fd < 0:  # closed, and close's own fsync failed: this line may not be on the disk
                    raise JournalClosed(f"{self.path}: the journal was closed before line {sequence} was on the disk")
                target = self._appends
            os.fsync(self._fd)
            self._durable = target

    def close(self) -> None:
        """Refuse further lines, wait for a sync in progress, make what was written durable, close."""
        with self._lock:
            self._refusal = "the journal is closed (the master is stopping)"
        with self._sync_lock, self._lock:
            if self._fd < 0:
                return
            try:
                if self._fsync and self._durable < self._appends:
                    os.fsync(self._fd)
                    self._durable = self._appends
            except OSError as exc:
                # lines whose sync had returned are durable; the others' results run again on resume
                logger.warning("%s: the last fsync failed (%s)", self.path, exc.strerror)
            finally:
                os.close(self._fd)
                self._fd = -1

    def __enter__(self) -> JournalWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    """Yield the records of a JSON-lines journal, by the rule of :func:`read_json_lines`.

    A torn last line is what a crash in the middle of a write leaves behind: it is dropped with
    a warning (the evaluation will be run again). Any other line that does not parse, or is not
    a JSON object, is corruption, reported with its line number rather than skipped.
    """
    for _, record in _numbered_records(path):
        yield record


def _numbered_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, record in read_json_lines(path, what="journal line"):
        if not isinstance(record, dict):
            raise StudyError(f"{path}:{number}: corrupt journal line (not a JSON object)")
        yield number, record


def repair_torn_tail(path: Path) -> int:
    """Cut a torn last line (a write interrupted by a crash) off a journal before appending to it.

    Appending after a torn line would glue the next record to it and corrupt both; the torn
    record's evaluation was not acted on, so it is simply run again. Returns the bytes dropped.
    """
    path = Path(path)
    if not path.exists():
        return 0
    with open(path, "rb+") as fh:
        data = fh.read()
        if not data or data.endswith(b"\n"):
            return 0
        keep = data.rfind(b"\n") + 1
        fh.truncate(keep)
        fh.flush()
        os.fsync(fh.fileno())
    dropped = len(data) - keep
    logger.warning(
        "%s: dropped a torn last line (%d bytes, written during a crash); its evaluation runs again", path, dropped
    )
    return dropped


def _read_typed(path: Path, parse: Callable[[dict[str, Any]], T], what: str) -> list[T]:
    items = []
    for number, record in _numbered_records(path):
        try:
            items.append(parse(record))
        except (KeyError, TypeError, ValueError) as exc:
            raise StudyError(f"{path}:{number}: malformed {what} record ({exc})") from None
    return items


def has_history(study_dir: Path) -> bool:
    """Whether the study has sampled or evaluated anything yet (a study created beforehand, by
    ``slurm submit`` for example, and started for the first time has not)."""
    return any(
        (Path(study_dir) / name).exists() and (Path(study_dir) / name).stat().st_size > 0
        for name in (RESULTS_JOURNAL, CONFIGS_JOURNAL)
    )


def read_evaluations(study_dir: Path) -> list[Evaluation]:
    """All finished evaluations of a study, in the order the master received them."""
    return _read_typed(Path(study_dir) / RESULTS_JOURNAL, Evaluation.from_json, "evaluation")


def read_sampled_configs(study_dir: Path) -> list[SampledConfig]:
    """Every configuration the optimizer sampled, in sampling order."""
    return _read_typed(Path(study_dir) / CONFIGS_JOURNAL, SampledConfig.from_json, "configuration")
