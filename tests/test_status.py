"""``bohb-runner status DIR`` on a real study: running, finished, killed; and with real SLURM jobs."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hpbandster.core.worker import Worker

from bohb_runner.store.status_file import read_status_snapshot

from conftest import (
    PROJECT,
    TESTS,
    assert_one_line_error,
    cli_env,
    processes_mentioning,
    run_cli,
    start_cli,
    wait_until,
)

QUADRATIC = TESTS / "data" / "quadratic.yaml"
GATED_WORKER = f"{Path(__file__).resolve()}:GatedWorker"
GATE = "open-the-gate"


class GatedWorker(Worker):
    """Holds every job until the file ``open-the-gate`` appears in the study directory, so that a
    test sees jobs running for as long as it needs, without guessing durations."""

    def compute(self, config_id, config, budget, working_directory, **kwargs):
        gate = Path(working_directory).parent / GATE
        while not gate.exists():
            time.sleep(0.05)
        return {"loss": (config["x"] - 0.3) ** 2 + 1.0 / budget, "info": {}}


def status_json(study: Path) -> dict:
    result = run_cli("status", study, "--json", timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def start_gated_study(study: Path, workers: int = 2) -> subprocess.Popen:
    return start_cli(
        "run", "--space", QUADRATIC, "--study-dir", study, "--worker", GATED_WORKER, "--workers", str(workers),
        "--max-budget", "3", "--iterations", "1", "--no-progress", "--ping-interval", "1",
    )  # fmt: skip


def running_jobs(study: Path) -> int:
    snapshot = read_status_snapshot(study)
    return len(snapshot["running"]) if snapshot else 0


def test_status_of_a_running_then_finished_study(tmp_path):
    study = tmp_path / "study"
    process = start_gated_study(study)
    try:
        wait_until(lambda: running_jobs(study) == 2 or process.poll() is not None, 90, "two running jobs")
        assert process.poll() is None, process.communicate()
        status = status_json(study)
        master = status["master"]
        assert master["running"] is True and master["pid"] == process.pid
        assert master["workers_from"] == "nameserver"
        assert sorted(w.rsplit(".", 1)[-1] for w in master["workers"]) == ["worker-0", "worker-1"]
        assert status["jobs"]["done"] == 0 and status["jobs"]["planned"] == 4 and status["jobs"]["running"] == 2
        assert {job["budget"] for job in status["running"]} == {1.0}
        assert sorted(job["worker"].rsplit(".", 1)[-1] for job in status["running"]) == ["worker-0", "worker-1"]
        assert all(job["seconds"] >= 0 for job in status["running"])
        assert status["incumbent"] is None

        text = run_cli("status", study, timeout=60)
        assert text.returncode == 0, text.stderr
        lines = text.stdout.splitlines()
        assert lines[0].startswith(f"study {study}: bohb, budgets 1, 3")
        assert any(line.startswith("master:    running on ") and f"(pid {process.pid})" in line for line in lines)
        assert "workers:   2 live: " in text.stdout
        assert "jobs:      done 0/4, running 2" in text.stdout
        assert sum(line.startswith("  running  (0, 0, ") for line in lines) == 2
        assert "incumbent: none yet" in text.stdout

        (study / GATE).touch()
        process.communicate(timeout=120)
        assert process.returncode == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    status = status_json(study)
    assert status["master"]["running"] is False and status["master"]["state"] == "completed"
    assert status["jobs"]["done"] == 4 and status["jobs"]["running"] == 0 and status["running"] == []
    assert status["incumbent"]["budget"] == 3.0
    assert [row["budget"] for row in status["time_per_budget"]] == [1.0, 3.0]
    assert [row["evaluations"] for row in status["time_per_budget"]] == [3, 1]
    assert all(row["median_s"] >= 0 and row["total_s"] >= row["mean_s"] for row in status["time_per_budget"])
    text = run_cli("status", study, timeout=60).stdout
    assert "master:    not running (completed" in text
    assert "workers:   unknown (no master running)" in text
    assert "incumbent: (0, 0, " in text and "on budget 3: validation error" in text
    assert "time per budget (seconds per evaluation):" in text


def test_status_of_a_study_whose_master_was_killed(tmp_path):
    study = tmp_path / "study"
    process = start_gated_study(study, workers=1)
    try:
        wait_until(lambda: running_jobs(study) == 1 or process.poll() is not None, 90, "a running job")
        assert process.poll() is None, process.communicate()
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)
        # its worker gets SIGTERM from the kernel (PR_SET_PDEATHSIG) and exits
        wait_until(lambda: not processes_mentioning(str(study)), 30, "the worker to exit")
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    result = run_cli("status", study, timeout=60)
    assert result.returncode == 0, result.stderr
    assert f"master:    not running: pid {process.pid} on " in result.stdout and "is gone (killed?)" in result.stdout
    assert "jobs:      done 0/4, running 0" in result.stdout
    status = status_json(study)
    assert status["master"]["running"] is False and status["running"] == []


def test_status_of_a_directory_that_is_no_study_is_a_one_line_error(tmp_path):
    result = run_cli("status", tmp_path / "nothing", timeout=60)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"bohb-runner: error: {tmp_path / 'nothing'}: no such study directory"


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory):
    study = tmp_path_factory.mktemp("status") / "study"
    result = run_cli(
        "run", "--space", QUADRATIC, "--study-dir", study, "--worker", "user_worker:QuadraticWorker",
        "--max-budget", "3", "--iterations", "1", "--no-progress", timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return study


def _record_jobs(study: Path, *job_ids: str) -> None:
    (study / "slurm").mkdir(exist_ok=True)
    with open(study / "slurm" / "jobs.jsonl", "w") as fh:
        for job_id, role in zip(job_ids, ("study", "workers"), strict=False):
            fh.write(
                json.dumps({"job_id": job_id, "role": role, "submitted": time.time(), "script": "x.sbatch"}) + "\n"
            )


def _squeue_states(job_id: str) -> list[str]:
    """The states of the job's tasks as squeue lists them (also ended ones SLURM still remembers)."""
    result = subprocess.run(
        ["squeue", "--noheader", "--states=all", f"--jobs={job_id}", "--format=%T"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    return result.stdout.split()


@pytest.mark.skipif(shutil.which("sbatch") is None, reason="needs SLURM (sbatch, squeue)")
def test_status_shows_the_states_of_the_studys_real_slurm_jobs(finished_study, tmp_path):
    """A real job array of two tasks, each held by a gate file until the test has seen it queued or
    running: status shows its tasks' states, `slurm submit` refuses a second study job meanwhile
    (the same SLURM query), and once it has ended status shows how it ended."""
    gate = tmp_path / "gate"
    submitted = subprocess.run(
        ["sbatch", "--parsable", "--job-name", "bohb-status-test", "--output", str(tmp_path / "slurm-%A_%a.out"),
         "--time", "5", "--array", "0-1", "--wrap", f"while [ ! -e {gate} ]; do sleep 0.2; done"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if submitted.returncode != 0:
        pytest.skip(f"sbatch refused a job here: {submitted.stderr.strip()}")
    job_id = submitted.stdout.strip().split(";")[0]
    active = ("PENDING", "RUNNING", "CONFIGURING")
    try:
        # "1": a job SLURM has long forgotten, next to the live one
        _record_jobs(finished_study, job_id, "1")
        slurm = status_json(finished_study)["slurm"]
        assert slurm["available"] is True
        states = {job["job_id"]: job["state"] for job in slurm["jobs"]}
        assert re.fullmatch(rf"({'|'.join(active)})( x2)?(, ({'|'.join(active)}))?", states[job_id]), states
        [live] = [job for job in slurm["jobs"] if job["job_id"] == job_id]
        assert {task["state"] for task in live["tasks"]} <= set(active) and live["tasks"]
        assert states["1"] == "finished (no longer queued)"
        text = run_cli("status", finished_study, timeout=60).stdout
        # a task may have started between the two calls
        assert re.search(rf"^slurm:     job {job_id} \(study\): (PENDING|RUNNING|CONFIGURING)", text, re.M), text
        assert "slurm:     job 1 (workers): finished (no longer queued)" in text
        refused = run_cli("slurm", "submit", "--study-dir", finished_study, "--workers-per-node", "1", timeout=60)
        assert_one_line_error(refused, f"SLURM job {job_id} (", "already runs this study")

        gate.touch()
        deadline = time.monotonic() + 120
        while (states_now := _squeue_states(job_id)) != ["COMPLETED", "COMPLETED"]:  # a job's end: outside events
            assert time.monotonic() < deadline, f"job {job_id} did not complete: {states_now}"
            time.sleep(0.5)
        slurm = status_json(finished_study)["slurm"]
        assert {job["job_id"]: job["state"] for job in slurm["jobs"]}[job_id] == "COMPLETED x2"
        assert f"slurm:     job {job_id} (study): COMPLETED x2" in run_cli("status", finished_study, timeout=60).stdout
    finally:
        gate.touch()
        subprocess.run(["scancel", job_id], capture_output=True, timeout=60)
        os.remove(finished_study / "slurm" / "jobs.jsonl")


def test_status_says_when_slurm_is_not_available(finished_study, tmp_path):
    _record_jobs(finished_study, "4242")
    env = cli_env()
    env["PATH"] = str(tmp_path)  # no squeue here
    result = subprocess.run(
        [sys.executable, "-m", "bohb_runner", "status", str(finished_study)],
        capture_output=True, text=True, timeout=60, env=env, cwd=PROJECT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "slurm:     SLURM is not available here (no squeue)" in result.stdout
    assert "slurm:     job 4242 (study): unknown" in result.stdout
    os.remove(finished_study / "slurm" / "jobs.jsonl")


def test_status_from_a_node_that_cannot_reach_the_master_uses_its_snapshot(finished_study, tmp_path):
    """As on a login node outside the compute network: the nameserver does not answer, but the
    master's heartbeat in status.json is fresh, so the study counts as running."""
    study = tmp_path / "study"
    shutil.copytree(finished_study, study)
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    run_id = json.loads((study / "study.json").read_text())["run_id"]
    address = {"host": "127.0.0.1", "port": port, "run_id": run_id, "master_host": "node-elsewhere",
               "master_pid": 1, "started": time.time() - 60}  # fmt: skip
    (study / "nameserver.json").write_text(json.dumps(address))
    snapshot = read_status_snapshot(study)
    snapshot.update(state="running", updated=time.time(), workers=[{"name": "node-b.7.w", "busy": True}])
    snapshot["running"] = [{"config_id": [1, 0, 0], "budget": 3.0, "worker": "node-b.7.w", "started": time.time()}]
    (study / "status.json").write_text(json.dumps(snapshot))
    status = status_json(study)
    assert status["master"]["running"] is True and status["master"]["workers_from"] == "snapshot"
    assert "nameserver not reachable from here" in status["master"]["note"]
    assert status["master"]["workers"] == ["node-b.7.w"] and status["running"][0]["worker"] == "node-b.7.w"
    # the same files once the heartbeat is old: a master that was killed on another node
    snapshot["updated"] = time.time() - 600
    (study / "status.json").write_text(json.dumps(snapshot))
    status = status_json(study)
    assert status["master"]["running"] is False and status["running"] == []
    assert status["master"]["note"].startswith("not running or not reachable: the nameserver at 127.0.0.1:")
