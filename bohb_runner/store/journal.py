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
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from bohb_runner.compat import to_native
from bohb_runner.errors import StudyError

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


# Fault injection for the crash tests: "results.jsonl:N" makes the Nth append to that journal in
# this process write half its line and then SIGKILL the process, as a power cut would.
TEAR_ENV = "BOHB_RUNNER_TEST_TEAR_JOURNAL"


class JournalWriter:
    """Appends records to a JSON-lines file; each record is one ``write`` of a whole line, and
    :meth:`append` returns once it is on the disk (fsync).

    :meth:`write` and :meth:`sync` are the two halves of ``append``, for a master that receives
    many results at once: each result's line is written in order under the master's lock, and the
    fsyncs happen outside it, where one fsync makes every line written before it durable (group
    commit), so results arriving together do not queue behind each other's disk flushes.
    """

    def __init__(self, path: Path, fsync: bool = True) -> None:
        self.path = Path(path)
        self._fsync = fsync
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._appends = 0  # lines written by this writer: the sequence number of the last one
        self._durable = 0  # lines of this writer known to be on the disk
        self._tear_at = _tear_point(self.path)

    def append(self, record: dict[str, Any]) -> None:
        self.sync(self.write(record))

    def write(self, record: dict[str, Any]) -> int:
        """Write the record's line (not yet fsynced); returns its sequence number for :meth:`sync`."""
        line = (json.dumps(record, allow_nan=False, separators=(",", ":")) + "\n").encode()
        with self._lock:
            self._appends += 1
            if self._appends == self._tear_at:
                os.write(self._fd, line[: len(line) // 2])
                os.fsync(self._fd)
                os.kill(os.getpid(), signal.SIGKILL)
            written = os.write(self._fd, line)
            if written != len(line):  # a short write (disk full): never leave half a record
                raise OSError(f"{self.path}: short write ({written} of {len(line)} bytes)")
            return self._appends

    def sync(self, sequence: int) -> None:
        """Return once line ``sequence`` (and every line before it) is on the disk."""
        if not self._fsync:
            return
        with self._sync_lock:  # one fsync at a time; who waited here usually finds its line durable
            if self._durable >= sequence:
                return
            with self._lock:
                target = self._appends
            os.fsync(self._fd)
            self._durable = target

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def __enter__(self) -> JournalWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _tear_point(path: Path) -> int:
    name, _, count = os.environ.get(TEAR_ENV, "").partition(":")
    return int(count) if name == path.name and count.isdigit() else -1


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    """Yield the records of a JSON-lines journal.

    A last line without its newline is what a crash in the middle of a write leaves behind: it
    is dropped with a warning (the evaluation will be run again). Any other line that does not
    parse is corruption, reported with its line number rather than skipped.
    """
    path = Path(path)
    if not path.exists():
        return
    with open(path, "rb") as fh:
        data = fh.read()
    lines = data.split(b"\n")
    torn = lines.pop()  # the part after the last newline: empty unless the last write was torn
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise StudyError(f"{path}:{number}: corrupt journal line ({exc.__class__.__name__}: {exc})") from None
        if not isinstance(record, dict):
            raise StudyError(f"{path}:{number}: corrupt journal line (not a JSON object)")
        yield record
    if torn.strip():
        logger.warning(
            "%s:%d: dropping a torn last line (%d bytes, written during a crash)", path, len(lines) + 1, len(torn)
        )


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
    for number, record in enumerate(read_records(path), start=1):
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
