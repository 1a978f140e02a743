"""`bohb-runner slurm` against a real SLURM: a single-node cluster on 127.0.0.1.

The cluster is launch/local-slurm/start.sh's (munge, slurmctld, slurmd); the fixture starts it
when `sinfo` does not answer and this process may (root), and skips with the reason otherwise.
Jobs are real: sbatch, srun, scancel, requeue. Waiting on a job's state polls squeue, since a
job's end is an event outside this process.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from bohb_runner.slurm.jobs import read_jobs
from bohb_runner.slurm.queue import ACTIVE_STATES
from bohb_runner.store.schedule import HyperbandSchedule

from conftest import PROJECT, TESTS, assert_one_line_error, run_cli, wait_until

# one SLURM node with 2 CPUs: these tests run one after another on one pytest-xdist worker
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("slurm")]

START_SCRIPT = PROJECT / "launch" / "local-slurm" / "start.sh"
QUADRATIC = TESTS / "data" / "quadratic.yaml"


def _sinfo_state() -> str:
    if shutil.which("sinfo") is None:
        return ""
    try:
        result = subprocess.run(["sinfo", "--noheader", "--format=%t"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return result.stdout.strip() if result.returncode == 0 else ""


def _usable(state: str) -> bool:
    return any(state.startswith(s) for s in ("idle", "mix", "alloc"))


@pytest.fixture(scope="module")
def slurm() -> None:
    """A usable SLURM: the one running, or the project's local single-node one, started here."""
    if _usable(_sinfo_state()):
        return
    if os.environ.get("BOHB_NO_LOCAL_SLURM"):
        pytest.skip("SLURM is not running and BOHB_NO_LOCAL_SLURM is set (start one: launch/local-slurm/start.sh)")
    if os.geteuid() != 0:
        pytest.skip("SLURM is not running and starting launch/local-slurm/start.sh needs root")
    try:
        result = subprocess.run([str(START_SCRIPT)], capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        pytest.skip("launch/local-slurm/start.sh did not bring SLURM up within 900 s")
    if result.returncode != 0 or not _usable(_sinfo_state()):
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"cannot start a local SLURM with launch/local-slurm/start.sh: {last}")


def job_state(job_id: str) -> str:
    result = subprocess.run(
        ["squeue", "--noheader", "--states=all", f"--jobs={job_id}", "--format=%T"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return result.stdout.strip().splitlines()[0] if result.stdout.strip() else "UNKNOWN"


def wait_for_state(job_id: str, done: callable, timeout: float, what: str) -> str:
    """Poll squeue (twice a second) until ``done(state)``; a job's end is an external event."""
    deadline = time.monotonic() + timeout
    state = job_state(job_id)
    while not done(state):
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id}: timed out after {timeout} s waiting for {what}; state {state}")
        time.sleep(0.5)
        state = job_state(job_id)
    return state


def wait_for_end(job_id: str, timeout: float = 180) -> str:
    return wait_for_state(job_id, lambda s: s not in ACTIVE_STATES, timeout, "its end")


def release_requeued(job_id: str) -> None:
    """Start a requeued job in 5 s instead of after SLURM's two-minute hold.

    Not at once: slurmd refuses to launch a job whose credential was created in the second its
    old one was revoked (the requeue), and the job then fails ("Job credential revoked").
    """
    subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now+5"], check=True, timeout=30)


def journal(study: Path) -> list[dict]:
    path = study / "results.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def expected_jobs(iterations: int, max_budget: float = 9) -> int:
    return HyperbandSchedule(1, max_budget, 3).total_jobs("bohb", iterations)


def submit(study: Path, worker: str, iterations: int, *extra: str) -> str:
    """`slurm submit` of a quadratic study: one node, master + 2 workers, 10 minutes; the job id."""
    options = {"--iterations": str(iterations), "--workers-per-node": "2", "--min-workers": "2", "--interface": "lo"}
    options.update({"--time": "10:00", "--signal-margin": "30"})
    flags = [item for pair in options.items() for item in pair]
    result = run_cli("slurm", "submit", "--space", QUADRATIC, "--study-dir", study, "--worker", worker, *flags, *extra)
    assert result.returncode == 0, result.stderr
    match = re.search(r"submitted job (\d+)", result.stdout)
    assert match, result.stdout
    return match.group(1)


def assert_complete(study: Path, iterations: int) -> list[dict]:
    evaluations = journal(study)
    keys = [(tuple(e["config_id"]), e["budget"]) for e in evaluations]
    assert len(keys) == len(set(keys)), "an evaluation was journalled twice"
    assert len(evaluations) == expected_jobs(iterations)
    assert all(e["status"] == "ok" for e in evaluations), [e for e in evaluations if e["status"] != "ok"]
    return evaluations


def test_submitted_study_runs_master_and_two_workers_to_the_end(slurm, tmp_path):
    study = tmp_path / "study"
    # SLURM's refusal is one line; the study was created and checked before sbatch ran, so the
    # same command, fixed, submits it
    refused = run_cli(
        "slurm", "submit", "--space", QUADRATIC, "--study-dir", study, "--worker", "user_worker:GatedQuadraticWorker",
        "--iterations", "1", "--partition", "no-such-partition",
    )  # fmt: skip
    assert_one_line_error(refused, "sbatch refused", "study.sbatch", "partition")
    assert not (study / "slurm" / "jobs.jsonl").exists()

    # the workers hold every job until the test opens the gate: the job cannot end before then
    job_id = submit(study, "user_worker:GatedQuadraticWorker", 1)

    # while it is queued or running, a second study job for the same study is refused
    again = run_cli("slurm", "submit", "--study-dir", study, "--workers-per-node", "2")
    assert job_state(job_id) in ACTIVE_STATES, f"job {job_id} ended before the gate opened: {job_state(job_id)}"
    assert_one_line_error(again, f"SLURM job {job_id}", "already runs this study")
    (study / "gate").touch()

    assert wait_for_end(job_id) == "COMPLETED", (study / "logs" / f"slurm-{job_id}.out").read_text()
    evaluations = assert_complete(study, 1)
    # --min-workers 2: the master waited for both tasks of the srun step, and both evaluated
    assert {e["worker"].rsplit(".", 1)[-1] for e in evaluations} == {f"slurm-{job_id}-0", f"slurm-{job_id}-1"}
    log = (study / "logs" / f"slurm-{job_id}.out").read_text()
    assert "master exited with status 0" in log and "the study is finished" in log
    [record] = read_jobs(study)
    assert (record.job_id, record.role, Path(record.script)) == (
        job_id,
        "study",
        (study / "slurm" / "study.sbatch").resolve(),
    )


def test_cancelled_study_resubmitted_with_the_same_command_loses_nothing(slurm, tmp_path):
    study = tmp_path / "study"
    job_id = submit(study, "user_worker:SlowQuadraticWorker", 2)
    wait_until(lambda: len(journal(study)) >= 4, timeout=120, what="four journalled results")
    subprocess.run(["scancel", job_id], check=True, timeout=30)
    assert wait_for_end(job_id) == "CANCELLED"
    before = journal(study)
    assert 4 <= len(before) < expected_jobs(2)
    log = (study / "logs" / f"slurm-{job_id}.out").read_text()
    assert "received TERM" in log and "requeueing" not in log

    second = submit(study, "user_worker:SlowQuadraticWorker", 2)
    assert second != job_id
    assert wait_for_end(second) == "COMPLETED", (study / "logs" / f"slurm-{second}.out").read_text()
    after = assert_complete(study, 2)
    assert after[: len(before)] == before, "a result journalled before the cancel changed or went missing"
    assert [r.job_id for r in read_jobs(study)] == [job_id, second]


def test_time_limit_signal_stops_the_master_and_requeues_the_job(slurm, tmp_path):
    study = tmp_path / "study"
    job_id = submit(study, "user_worker:SlowQuadraticWorker", 2)
    wait_until(lambda: len(journal(study)) >= 4, timeout=120, what="four journalled results")
    # what SLURM sends --signal-margin seconds before the time limit (#SBATCH --signal=B:USR1@30)
    subprocess.run(["scancel", "--batch", "--signal=USR1", job_id], check=True, timeout=30)
    wait_for_state(job_id, lambda s: s in ("PENDING", "REQUEUED"), 60, "its requeue")
    before = journal(study)
    release_requeued(job_id)
    assert wait_for_end(job_id) == "COMPLETED", (study / "logs" / f"slurm-{job_id}.out").read_text()
    after = assert_complete(study, 2)
    assert after[: len(before)] == before
    log = (study / "logs" / f"slurm-{job_id}.out").read_text()
    assert "received USR1" in log and "requeueing this job" in log
    assert "(restart 1): the study is finished" in log


def test_add_workers_grows_a_running_study_with_a_job_array(slurm, tmp_path):
    study = tmp_path / "study"
    result = run_cli(
        "slurm",
        "submit",
        "--space",
        QUADRATIC,
        "--study-dir",
        study,
        "--worker",
        "user_worker:SlowQuadraticWorker",
        "--iterations",
        "3",
        "--workers-per-node",
        "1",
        "--interface",
        "lo",
        "--parsable",
    )
    assert result.returncode == 0, result.stderr
    study_job = result.stdout.strip()
    wait_until(lambda: len(journal(study)) >= 1, timeout=120, what="a first journalled result")

    added = run_cli("slurm", "add-workers", study, "--count", "1", "--parsable")
    assert added.returncode == 0, added.stderr
    array_job = added.stdout.strip()
    assert re.fullmatch(r"\d+", array_job) and array_job != study_job
    assert "--array=0-0" in (study / "slurm" / "workers-1.sbatch").read_text()

    assert wait_for_end(study_job) == "COMPLETED", (study / "logs" / f"slurm-{study_job}.out").read_text()
    evaluations = assert_complete(study, 3)
    names = {e["worker"].rsplit(".", 1)[-1] for e in evaluations}
    assert names == {f"slurm-{study_job}-0", f"slurm-{array_job}_0"}, names
    # the master shut the added worker down at the end of the study: its array task ended too
    assert wait_for_end(array_job, timeout=60) == "COMPLETED"
    assert [(r.job_id, r.role) for r in read_jobs(study)] == [(study_job, "study"), (array_job, "workers")]
    # a finished study gets no more workers: they would hold their nodes waiting for a master
    late = run_cli("slurm", "add-workers", study, "--count", "1")
    assert_one_line_error(late, "the study is finished", "--iterations")


def test_a_job_whose_workers_all_fail_ends_instead_of_waiting_and_requeueing(slurm, tmp_path):
    study = tmp_path / "study"
    job_id = submit(study, "user_worker:CrashingWorker", 1)
    assert wait_for_end(job_id) == "FAILED"
    log = (study / "logs" / f"slurm-{job_id}.out").read_text()
    assert "every worker has exited" in log and "not requeued: the workers failed" in log
    assert "requeueing this job" not in log
    worker_output = "".join(p.read_text() for p in (study / "logs").glob(f"slurm-{job_id}-worker-*.out"))
    assert "CUDA driver not found (simulated)" in worker_output + "".join(
        p.read_text() for p in (study / "logs").glob(f"slurm-{job_id}-*.log")
    )
    assert journal(study) == []


@pytest.mark.skipif(
    not os.environ.get("BOHB_SLURM_TIME_LIMIT_TEST"),
    reason="takes about two minutes of SLURM time limits; set BOHB_SLURM_TIME_LIMIT_TEST=1 to run it",
)
def test_real_time_limit_requeues_until_the_study_is_finished(slurm, tmp_path):
    """SLURM's own timer: --time 2 minutes, USR1 60 s before; each run stops, requeues, resumes."""
    study = tmp_path / "study"
    job_id = submit(study, "user_worker:SlowQuadraticWorker", 8, "--time", "2", "--signal-margin", "60")
    deadline, previous = time.monotonic() + 540, ""
    while (state := job_state(job_id)) in ACTIVE_STATES:
        assert time.monotonic() < deadline, f"job {job_id} still {state}"
        if state == "PENDING" and previous not in ("", "PENDING"):  # just requeued
            release_requeued(job_id)
        previous = state
        time.sleep(1)
    assert state == "COMPLETED", (study / "logs" / f"slurm-{job_id}.out").read_text()
    assert_complete(study, 8)
    log = (study / "logs" / f"slurm-{job_id}.out").read_text()
    assert "(restart 0): received USR1" in log and "requeueing this job" in log
