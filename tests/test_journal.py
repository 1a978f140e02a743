"""The journal: whole, fsynced records; a torn last line is dropped, other corruption reported by line."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from bohb_runner.errors import StudyError
from bohb_runner.store.journal import Evaluation, JournalWriter, read_evaluations, read_records


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


def test_results_written_together_share_fsyncs_and_keep_their_order(tmp_path, monkeypatch):
    """Group commit: lines written by many threads are all durable once each thread's sync
    returns, in the order of their sequence numbers, with fewer fsyncs than lines."""
    import os
    import threading

    fsyncs = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (fsyncs.append(fd), real_fsync(fd)))
    journal = JournalWriter(tmp_path / "results.jsonl")
    start = threading.Barrier(16)
    order: dict[int, int] = {}

    def report(i: int) -> None:
        start.wait()
        sequence = journal.write(_evaluation(i).to_json())
        journal.sync(sequence)
        order[sequence] = i

    threads = [threading.Thread(target=report, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    journal.close()
    evaluations = read_evaluations(tmp_path)
    assert sorted(order) == list(range(1, 17))
    assert [e.config_id[2] for e in evaluations] == [order[s] for s in sorted(order)]
    assert 1 <= len(fsyncs) <= 16


def test_configurations_missing_from_configs_jsonl_come_back_from_results(tmp_path):
    """configs.jsonl is not fsynced: after a power cut it may lack what results.jsonl holds."""
    from bohb_runner.master.history import read_history

    with JournalWriter(tmp_path / "results.jsonl") as journal:
        journal.append(_evaluation(0).to_json())
    (tmp_path / "configs.jsonl").write_text("")
    history = read_history(tmp_path)
    assert [(s.config_id, s.config) for s in history.sampled] == [((0, 0, 0), {"lr": 0.1, "n": 3})]
