"""The journal: whole, fsynced records; a torn last line is dropped, other corruption reported by line."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable

import numpy as np
import pytest

from bohb_runner.errors import StudyError
from bohb_runner.store.journal import (
    Evaluation,
    JournalClosed,
    JournalWriter,
    read_evaluations,
    read_records,
    repair_torn_tail,
)

from conftest import cli_env, torn_journal_env, wait_until


def _evaluation(i: int, loss=0.5) -> Evaluation:
    return Evaluation(
        config_id=(0, 0, i),
        budget=np.float64(3.0),
        loss=loss,
        status="ok",
        config={"lr": np.float64(0.1), "n": np.int64(3)},
        info={"curve": np.array([0.9, 0.5])},
        worker="w",
        submitted=1.0,
        started=2.0,
        finished=3.0,
    )


def test_append_and_read_back(tmp_path):
    with JournalWriter(tmp_path / "results.jsonl") as journal:
        for i in range(3):
            journal.append(_evaluation(i).to_json())
    evaluations = read_evaluations(tmp_path)
    assert [e.config_id for e in evaluations] == [(0, 0, 0), (0, 0, 1), (0, 0, 2)]
    assert evaluations[0].config == {"lr": 0.1, "n": 3} and evaluations[0].info == {"curve": [0.9, 0.5]}
    assert evaluations[0].budget == 3.0


def test_non_finite_values_are_written_as_null_strict_json(tmp_path):
    with JournalWriter(tmp_path / "results.jsonl") as journal:
        journal.append(
            Evaluation((0, 0, 0), 1.0, None, "failed", {}, info={"x": float("nan")}, error="loss is nan").to_json()
        )
    line = (tmp_path / "results.jsonl").read_text()
    assert "NaN" not in line
    assert json.loads(line)["info"] == {"x": None}


def test_torn_last_line_is_dropped_with_a_warning(tmp_path, caplog):
    with JournalWriter(tmp_path / "results.jsonl") as journal:
        journal.append(_evaluation(0).to_json())
        journal.append(_evaluation(1).to_json())
    with open(tmp_path / "results.jsonl", "a") as fh:
        fh.write(json.dumps(_evaluation(2).to_json())[:40])  # power loss in the middle of a write
    with caplog.at_level(logging.WARNING):
        evaluations = read_evaluations(tmp_path)
    assert len(evaluations) == 2
    assert "torn last line" in caplog.text and "results.jsonl:3" in caplog.text


def test_corruption_in_the_middle_is_reported_with_its_line_number(tmp_path):
    with JournalWriter(tmp_path / "results.jsonl") as journal:
        for i in range(3):
            journal.append(_evaluation(i).to_json())
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    lines[1] = lines[1][:20] + "#garbage#" + lines[1][20:]
    (tmp_path / "results.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(StudyError, match=r"results.jsonl:2: corrupt journal line"):
        read_evaluations(tmp_path)


def test_a_record_missing_fields_is_reported(tmp_path):
    (tmp_path / "results.jsonl").write_text('{"config_id": [0, 0, 0]}\n')
    with pytest.raises(StudyError, match=r"results.jsonl:1: malformed evaluation record"):
        read_evaluations(tmp_path)


def test_missing_journal_reads_as_empty(tmp_path):
    assert list(read_records(tmp_path / "results.jsonl")) == []


class FsyncLog:
    """``os.fsync`` wrapped to record, in one total order with the test's own events, when each
    fsync starts and ends (the real fsync runs in between)."""

    def __init__(self, monkeypatch) -> None:
        self.events: list[tuple[str, int]] = []
        self._order = threading.Lock()
        self._real = os.fsync
        self.calls = 0
        monkeypatch.setattr(os, "fsync", self._fsync)

    def record(self, what: str, n: int) -> None:
        with self._order:
            self.events.append((what, n))

    def _fsync(self, fd: int) -> None:
        with self._order:
            self.calls += 1
            call = self.calls
        self.record("fsync-start", call)
        self._real(fd)
        self.record("fsync-end", call)

    def position(self, event: tuple[str, int]) -> int:
        return self.events.index(event)


def test_every_line_is_durable_when_its_sync_returns_and_lines_keep_their_order(tmp_path, monkeypatch):
    """Group commit's promise to each of many concurrent writers: when ``sync(s)`` returns, an
    fsync that started after line ``s`` was written has finished (so line ``s`` is on the disk),
    and the file holds the lines in the order of their sequence numbers."""
    log = FsyncLog(monkeypatch)
    journal = JournalWriter(tmp_path / "results.jsonl")
    start = threading.Barrier(16)
    sequences: dict[int, int] = {}

    def report(i: int) -> None:
        start.wait()
        sequence = journal.write(_evaluation(i).to_json())
        log.record("written", i)
        journal.sync(sequence)
        log.record("synced", i)
        sequences[i] = sequence

    threads = [threading.Thread(target=report, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    journal.close()
    assert sorted(sequences.values()) == list(range(1, 17))
    in_file = [e.config_id[2] for e in read_evaluations(tmp_path)]
    assert in_file == sorted(sequences, key=sequences.get)
    for i in range(16):
        covering = [
            call
            for call in range(1, log.calls + 1)
            if log.position(("written", i)) < log.position(("fsync-start", call))
            and log.position(("fsync-end", call)) < log.position(("synced", i))
        ]
        assert covering, f"line {sequences[i]} was reported durable before any fsync after it had finished"


@pytest.mark.parametrize("writers", [2, 8])
def test_lines_written_before_the_first_sync_share_exactly_one_fsync(tmp_path, monkeypatch, writers):
    """One fsync makes every line written before it durable: with ``writers`` lines all written
    before anyone syncs, all their syncs return after exactly one fsync."""
    log = FsyncLog(monkeypatch)
    journal = JournalWriter(tmp_path / "results.jsonl")
    all_written = threading.Barrier(writers)

    def report(i: int) -> None:
        sequence = journal.write(_evaluation(i).to_json())
        all_written.wait()
        journal.sync(sequence)

    threads = [threading.Thread(target=report, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert log.calls == 1
    journal.sync(writers)  # everything is durable already: no second fsync
    assert log.calls == 1
    journal.close()
    assert len(read_evaluations(tmp_path)) == writers


# -- a short write (disk full, file size limit) -------------------------------------------------

SHORT_WRITE = r"""
import os, resource, signal, sys
from bohb_runner.store.journal import JournalWriter

path, limit = sys.argv[1], int(sys.argv[2])
# past RLIMIT_FSIZE, write() returns what fitted (a real short write) instead of SIGXFSZ killing us
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
journal = JournalWriter(path)
journal.append({"n": 0, "pad": "x" * 100})
resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize(path) + limit, resource.RLIM_INFINITY))
try:
    journal.append({"n": 1, "pad": "x" * 100})
    print("no error")
except OSError as exc:
    print("refused:", exc)
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
journal.append({"n": 2, "pad": "x" * 100})  # the disk has room again: the study goes on
journal.close()
"""


def test_a_short_write_leaves_no_partial_line_before_later_lines(tmp_path, caplog):
    path = tmp_path / "results.jsonl"
    done = subprocess.run(
        [sys.executable, "-c", SHORT_WRITE, str(path), "50"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("refused:") and "short write (50 of" in done.stdout, done.stdout
    data = path.read_bytes()
    assert data.endswith(b"\n")
    with caplog.at_level(logging.WARNING):
        assert [r["n"] for r in read_records(path)] == [0, 2]
    assert caplog.text == ""
    assert repair_torn_tail(path) == 0


# -- fault injection lives in the tests ---------------------------------------------------------

TWO_LINES = r"""
import sys
from bohb_runner.store.journal import JournalWriter

with JournalWriter(sys.argv[1]) as journal:
    journal.append({"n": 0})
    journal.append({"n": 1})
"""


def test_the_library_has_no_test_hook_and_the_tests_fault_injection_tears_a_line(tmp_path):
    """The crash tests' tear point set, but the tests' fault injection not loaded: a process
    writing a journal is any user's process, and writes its lines. Loaded, it tears line 2."""
    plain = tmp_path / "plain" / "results.jsonl"
    plain.parent.mkdir()
    env = {**torn_journal_env("results.jsonl", 2), "PYTHONPATH": cli_env()["PYTHONPATH"]}
    done = subprocess.run([sys.executable, "-c", TWO_LINES, str(plain)], env=env, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert [r["n"] for r in read_records(plain)] == [0, 1]

    torn = tmp_path / "torn" / "results.jsonl"
    torn.parent.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", TWO_LINES, str(torn)], env=torn_journal_env("results.jsonl", 2), timeout=60
    )
    assert done.returncode == -signal.SIGKILL
    assert torn.read_bytes() == b'{"n":0}\n{"n"'


# -- closing while results still arrive ---------------------------------------------------------


def test_a_line_written_before_close_is_durable_and_a_write_after_close_is_refused(tmp_path, monkeypatch):
    """A late result: its line was written, then the master closed the journal before the
    result's thread synced it; another result arrives after the close."""
    log = FsyncLog(monkeypatch)
    journal = JournalWriter(tmp_path / "results.jsonl")
    sequence = journal.write(_evaluation(0).to_json())
    journal.close()
    assert log.calls == 1  # close makes what was written durable
    journal.sync(sequence)  # durable already: returns
    assert log.calls == 1
    with pytest.raises(JournalClosed, match=r"results.jsonl: the journal is closed"):
        journal.write(_evaluation(1).to_json())
    journal.close()  # twice is harmless
    assert [e.config_id for e in read_evaluations(tmp_path)] == [(0, 0, 0)]


def test_close_waits_for_a_sync_in_progress(tmp_path, monkeypatch):
    """close() while another thread is inside fsync: the fsync must finish on the journal's own
    descriptor (not a closed or reused one), and writes are refused from the moment close starts."""
    log = FsyncLog(monkeypatch)
    in_fsync, finish_fsync = threading.Event(), threading.Event()
    real = log._fsync

    def gated_fsync(fd: int) -> None:
        if not in_fsync.is_set():
            in_fsync.set()
            finish_fsync.wait()
        real(fd)

    monkeypatch.setattr(os, "fsync", gated_fsync)
    journal = JournalWriter(tmp_path / "results.jsonl")
    errors: list[BaseException] = []

    def guarded(action) -> Callable[[], None]:
        def run() -> None:
            try:
                action()
            except BaseException as exc:
                errors.append(exc)

        return run

    syncer = threading.Thread(target=guarded(lambda: journal.append(_evaluation(0).to_json())))
    syncer.start()
    in_fsync.wait()
    closer = threading.Thread(target=guarded(journal.close))
    closer.start()
    wait_until(lambda: journal.closed or not closer.is_alive(), 10, "close() to start")
    with pytest.raises(JournalClosed):
        journal.write(_evaluation(1).to_json())
    finish_fsync.set()
    syncer.join()
    closer.join()
    assert errors == []
    assert [e.config_id for e in read_evaluations(tmp_path)] == [(0, 0, 0)]


def test_a_result_arriving_after_the_journal_closed_is_not_a_fatal_error(tmp_path, caplog):
    """The master's result path: the study is stopping, and the result runs again on resume."""
    from hpbandster.core.dispatcher import Job

    from bohb_runner.master.dispatcher import StudyDispatcher

    journal = JournalWriter(tmp_path / "results.jsonl")
    journal.close()
    fatal: list[tuple[str, str]] = []
    dispatcher = StudyDispatcher(
        lambda job: journal.write({"config_id": list(job.id)}),
        on_fatal=lambda where, details: fatal.append((where, details)),
        run_id="t",
    )
    job = Job((0, 0, 1), config={"x": 0.5}, budget=1.0)
    job.time_it("submitted")
    with caplog.at_level(logging.INFO):
        dispatcher._finish_job(job, {"loss": 0.1, "info": {}}, None)
    assert fatal == []
    assert "job (0, 0, 1) finished while the study was stopping; it runs again on resume" in caplog.text


def test_configurations_missing_from_configs_jsonl_come_back_from_results(tmp_path):
    """configs.jsonl is not fsynced: after a power cut it may lack what results.jsonl holds."""
    from bohb_runner.master.history import read_history

    with JournalWriter(tmp_path / "results.jsonl") as journal:
        journal.append(_evaluation(0).to_json())
    (tmp_path / "configs.jsonl").write_text("")
    history = read_history(tmp_path)
    assert [(s.config_id, s.config) for s in history.sampled] == [((0, 0, 0), {"lr": 0.1, "n": 3})]
