"""The study lock: one master per study from the moment the study is created, and a lock that
cannot be taken for any reason other than a running master says so, naming the file."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from hpbandster.core.worker import Worker

from bohb_runner.cli import main
from bohb_runner.errors import StudyError
from bohb_runner.store.lock import LOCK_FILE, StudyLock

from conftest import TESTS, assert_one_line_error, start_cli, wait_until

QUADRATIC = TESTS / "data" / "quadratic.yaml"
GATED_CREATION_WORKER = f"{Path(__file__).resolve()}:GatedCreationWorker"
ARRIVALS = "arrivals"
GATE = "open-the-gate"


class GatedCreationWorker(Worker):
    """A quadratic worker whose ``prepare_study`` (called while a study is being created, before
    anything is written) leaves a file named after its process in ``arrivals/`` beside the study
    directory, then waits for the file ``open-the-gate`` there. Two masters racing to create one
    study thus both get every chance to create it, however the machine schedules them."""

    @classmethod
    def prepare_study(cls, context):
        beside = Path(context.study_dir).resolve().parent
        (beside / ARRIVALS).mkdir(exist_ok=True)
        (beside / ARRIVALS / str(os.getpid())).touch()
        while not (beside / GATE).exists():
            time.sleep(0.05)
        return None

    def compute(self, config_id, config, budget, working_directory, **kwargs):
        return {"loss": (config["x"] - 0.3) ** 2 + (config["y"] - 0.6) ** 2 + 1.0 / budget, "info": {}}


def run_in_process(capsys, *args: object) -> SimpleNamespace:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return SimpleNamespace(returncode=code, stdout=out, stderr=err)


def test_two_masters_racing_to_create_a_study_one_creates_it_and_the_other_is_refused(tmp_path):
    study = tmp_path / "study"
    args = (
        "run", "--space", QUADRATIC, "--study-dir", study, "--worker", GATED_CREATION_WORKER, "--workers", 1,
        "--max-budget", 1, "--iterations", 1, "--no-progress", "--ping-interval", 1,
    )  # fmt: skip
    processes = [start_cli(*args), start_cli(*args)]

    def arrived() -> list[int]:
        directory = tmp_path / ARRIVALS
        return sorted(int(p.name) for p in directory.iterdir()) if directory.exists() else []

    def exited() -> int:
        return sum(p.poll() is not None for p in processes)

    try:
        # before the fix both reach the creation; after it, one does and the other is refused
        wait_until(lambda: len(arrived()) + exited() >= 2, 120, "both masters to reach the creation or give up")
        (tmp_path / GATE).touch()
        outputs = [p.communicate(timeout=240) for p in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert len(arrived()) == 1, f"{len(arrived())} masters created the study (secret.key and study.json each time)"
    codes = [p.returncode for p in processes]
    assert sorted(code == 0 for code in codes) == [False, True], (codes, outputs)
    winner = next(p for p in processes if p.returncode == 0)
    loser_code, (_, loser_err) = next(
        (p.returncode, out) for p, out in zip(processes, outputs, strict=True) if p.returncode
    )
    assert arrived() == [winner.pid]  # the master runs in the CLI process itself
    assert_one_line_error(
        SimpleNamespace(returncode=loser_code, stderr=loser_err),
        "a master is already running this study",
        f"pid {winner.pid} on {socket.gethostname()}",
    )
    # what the winner wrote is what the study holds: its run id, its secret, and no temporary files
    run_id = json.loads((study / "study.json").read_text())["run_id"]
    assert f"(run {run_id})" in (study / "logs" / "master.log").read_text()
    assert len(bytes.fromhex((study / "secret.key").read_text().strip())) == 32
    assert sorted(p.name for p in study.iterdir() if p.name.startswith(".")) == []


def test_a_held_lock_names_its_owner(tmp_path):
    """Held by another open file (what another process holding it looks like to flock)."""
    with open(tmp_path / LOCK_FILE, "w") as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        other.write("pid 4242 on elsewhere\n")
        other.flush()
        with pytest.raises(StudyError, match=r"a master is already running this study \(pid 4242 on elsewhere\)"):
            StudyLock(tmp_path).acquire()
    lock = StudyLock(tmp_path)
    lock.acquire()  # free again once the other holder closed it
    try:
        assert (tmp_path / LOCK_FILE).read_text() == f"pid {os.getpid()} on {socket.gethostname()}\n"
    finally:
        lock.release()


# A file system without flock support (Lustre mounted without -o flock, NFS without a lock
# manager) cannot be made here: flock is made to fail with the errno such a mount gives.
UNSUPPORTED = [errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL]


def _flock_failing_with(code: int):
    def flock(fd, operation):
        raise OSError(code, os.strerror(code))

    return flock


@pytest.mark.parametrize("code", UNSUPPORTED, ids=[errno.errorcode[c] for c in UNSUPPORTED])
def test_a_file_system_without_flock_is_named_not_taken_for_a_running_master(tmp_path, monkeypatch, code):
    monkeypatch.setattr(fcntl, "flock", _flock_failing_with(code))
    with pytest.raises(StudyError) as caught:
        StudyLock(tmp_path).acquire()
    message = str(caught.value)
    assert "already running" not in message
    assert str((tmp_path / LOCK_FILE).resolve()) in message
    assert os.strerror(code) in message and "does not support flock" in message
    assert "local_lock" in message and "--study-dir on a local disk" in message


def test_an_io_error_while_locking_is_named_as_such(tmp_path, monkeypatch):
    monkeypatch.setattr(fcntl, "flock", _flock_failing_with(errno.EIO))
    with pytest.raises(StudyError) as caught:
        StudyLock(tmp_path).acquire()
    message = str(caught.value)
    assert "already running" not in message and "does not support flock" not in message
    assert str((tmp_path / LOCK_FILE).resolve()) in message and os.strerror(errno.EIO) in message


def test_the_cli_reports_a_file_system_without_flock_in_one_line_and_writes_no_study(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(fcntl, "flock", _flock_failing_with(errno.ENOLCK))
    study = tmp_path / "study"
    result = run_in_process(
        capsys, "master", "--space", QUADRATIC, "--study-dir", study, "--worker", "user_worker:QuadraticWorker"
    )
    line = assert_one_line_error(result, "master.lock", "does not support flock")
    assert "already running" not in line
    assert not study.exists()  # the directory made to hold the lock goes again: no half study
