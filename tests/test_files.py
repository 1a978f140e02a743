"""One rule for writing whole files (atomic, durable, secret from creation) and one for reading
JSON-lines files (a torn last line dropped, anything else that does not parse is corruption)."""

from __future__ import annotations

import json
import logging
import os
import stat

import pytest

from bohb_runner.errors import StudyError
from bohb_runner.slurm.jobs import jobs_path, read_jobs, record_job
from bohb_runner.store.files import atomic_file, read_json_lines, write_atomically, write_json_atomically
from bohb_runner.store.hpbandster_files import read_hpbandster_results


def test_a_secret_is_private_from_its_creation_and_replaces_the_old_file_whole(tmp_path):
    path = tmp_path / "secret.key"
    path.write_text("old\n")
    old_umask = os.umask(0)  # the most permissive umask: only the helper's mode protects the file
    try:
        with atomic_file(path, mode=0o600) as fh:
            assert stat.S_IMODE(os.fstat(fh.fileno()).st_mode) == 0o600  # while it is being written
            fh.write("new\n")
            assert path.read_text() == "old\n"  # readers see the old file until the rename
    finally:
        os.umask(old_umask)
    assert path.read_text() == "new\n" and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret.key"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "study.json"
    write_json_atomically(path, {"a": 1})
    with pytest.raises(TypeError):
        write_json_atomically(path, {"a": object()})  # json refuses it: nothing is replaced
    with pytest.raises(RuntimeError), atomic_file(path) as fh:
        fh.write('{"half": ')
        raise RuntimeError("the writer failed half way")
    assert json.loads(path.read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.json"]


def test_two_writers_of_one_file_never_share_a_temporary(tmp_path):
    path = tmp_path / "status.json"
    with atomic_file(path, durable=False) as first, atomic_file(path, durable=False) as second:
        assert os.fstat(first.fileno()).st_ino != os.fstat(second.fileno()).st_ino
        first.write("first\n")
        second.write("second\n")
    assert path.read_text() == "first\n"  # the outer block ended last: its file is the one there
    assert sorted(p.name for p in tmp_path.iterdir()) == ["status.json"]


def test_write_atomically_writes_bytes_and_text_with_the_default_mode(tmp_path):
    write_atomically(tmp_path / "b", b"\x00\x01")
    write_atomically(tmp_path / "t", "text")
    assert (tmp_path / "b").read_bytes() == b"\x00\x01" and (tmp_path / "t").read_text() == "text"
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "t").stat().st_mode) == 0o666 & ~umask


def test_the_json_lines_rule_torn_tail_dropped_corruption_reported(tmp_path, caplog):
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"a": 1}\n\n[2]\n{"a": ')
    with caplog.at_level(logging.WARNING):
        assert list(read_json_lines(path)) == [(1, {"a": 1}), (3, [2])]
    assert "x.jsonl:4: dropping a torn last line (6 bytes" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert list(read_json_lines(path, torn_tail="quiet")) == [(1, {"a": 1}), (3, [2])]
    assert caplog.text == ""
    path.write_bytes(b'{"a": 1}\n{"a" 2}\n{"a": 3}\n')
    with pytest.raises(StudyError, match=r"x.jsonl:2: corrupt record \(JSONDecodeError"):
        list(read_json_lines(path, what="record"))
    path.write_bytes(b'{"a": 1}\n"\xc3\x28"\n')
    with pytest.raises(StudyError, match=r"x.jsonl:2: corrupt line \(UnicodeDecodeError"):
        list(read_json_lines(path))
    assert list(read_json_lines(tmp_path / "missing.jsonl")) == []


def test_slurm_jobs_follow_the_rule(tmp_path):
    """Before, a corrupt line in jobs.jsonl was skipped: ``slurm submit`` could then miss a running
    study job and submit a second master."""
    record_job(tmp_path, "101", "study", tmp_path / "study.sbatch")
    record_job(tmp_path, "102", "workers", tmp_path / "workers-1.sbatch")
    with open(jobs_path(tmp_path), "a") as fh:
        fh.write('{"job_id": "103", "ro')  # another submission still being written
    assert [(r.job_id, r.role) for r in read_jobs(tmp_path)] == [("101", "study"), ("102", "workers")]
    lines = jobs_path(tmp_path).read_text().splitlines()
    jobs_path(tmp_path).write_text("\n".join([lines[0][:-3], lines[1]]) + "\n")
    with pytest.raises(StudyError, match=r"jobs.jsonl:1: corrupt job record"):
        read_jobs(tmp_path)
    jobs_path(tmp_path).write_text('{"job_id": "1"}\n')
    with pytest.raises(StudyError, match=r"jobs.jsonl:1: malformed job record"):
        read_jobs(tmp_path)


def test_hpbandsters_live_files_follow_the_rule(tmp_path, caplog):
    """Read while a run appends: a last line without its newline yet is left for the next read."""
    (tmp_path / "configs.json").write_text('[[0, 0, 0], {"x": 0.5}, {}]\n[[0, 0, 1], {"x": 0.7}, {}]')
    (tmp_path / "results.json").write_text(
        '[[0, 0, 0], 1.0, {"submitted": 1, "started": 2, "finished": 3}, {"loss": 0.2, "info": {}}, null]\n'
        '[[0, 0, 1], 1.0, {"submitted": 1, "started": 2, "finished": 3}, {"loss": 0.1, "info": {}}, null]'
    )
    with caplog.at_level(logging.WARNING):
        evaluations = read_hpbandster_results(tmp_path)
    assert [(e.config_id, e.loss, e.config) for e in evaluations] == [((0, 0, 0), 0.2, {"x": 0.5})]
    assert caplog.text == ""
    (tmp_path / "results.json").write_text('{not json\n[[0, 0, 0], 1.0, {}, {"loss": 0.2}, null]\n')
    with pytest.raises(StudyError, match=r"results.json:1: corrupt hpbandster line"):
        read_hpbandster_results(tmp_path)
