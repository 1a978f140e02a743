"""Interrupted studies: kill -9 of the master (several times), torn journal lines, dead and hung
workers, SIGTERM, mismatched resumes. Real master and worker processes throughout; every test
asserts on the journal: no finished evaluation lost, none run twice, the schedule continued."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from bohb_runner.store.journal import read_evaluations
from bohb_runner.store.schedule import HyperbandSchedule

from conftest import (
    TESTS,
    assert_one_line_error,
    descendants,
    journal_lines,
    run_cli,
    start_cli,
    torn_journal_env,
    wait_until,
)
from conftest import kill_master_after as kill_run_after

QUADRATIC = TESTS / "data" / "quadratic.yaml"
SCHEDULE = HyperbandSchedule(1, 9, 3)


def study_args(study: Path, *extra, worker="user_worker:TimedQuadraticWorker", workers=2, iterations=4):
    return [
        "run", "--space", QUADRATIC, "--study-dir", study, "--worker", worker, "--workers", workers,
        "--max-budget", 9, "--iterations", iterations, "--no-progress", "--ping-interval", 1, *extra,
    ]  # fmt: skip


def kill_master_after(study: Path, records: int, *args, **kwargs) -> list[bytes]:
    """Start a run, SIGKILL its master once ``records`` results are journalled; returns the journal."""
    return kill_run_after(records, *study_args(study, *args, **kwargs), study=study)


def assert_schedule_complete(study: Path, optimizer: str = "bohb", iterations: int = 4, schedule=SCHEDULE) -> None:
    """Every evaluation the schedule prescribes, each exactly once."""
    evaluations = read_evaluations(study)
    keys = Counter((e.config_id, e.budget) for e in evaluations)
    assert max(keys.values()) == 1, [k for k, n in keys.items() if n > 1]
    assert len(evaluations) == schedule.total_jobs(optimizer, iterations)
    for index in range(iterations):
        bracket = schedule.bracket(optimizer, index)
        per_budget = Counter(e.budget for e in evaluations if e.config_id[0] == index)
        assert [per_budget[b] for b in bracket.budgets] == list(bracket.num_configs), (index, per_budget)


def test_master_killed_repeatedly_loses_nothing_and_repeats_nothing(tmp_path):
    study = tmp_path / "study"
    snapshots = []
    for records in (2, 7, 13, 19, 26):
        before = kill_master_after(study, records)
        snapshots.append(before)
    final = run_cli(*study_args(study))
    assert final.returncode == 0, final.stderr
    after = journal_lines(study)
    for before in snapshots:  # everything journalled before a kill is still there, in order
        assert after[: len(before)] == before
    assert_schedule_complete(study)
    assert all(e.ok for e in read_evaluations(study))
    assert "replayed" in (study / "logs" / "master.log").read_text()


def _signature(study: Path):
    evaluations = read_evaluations(study)
    pairs = sorted((json.dumps(e.config, sort_keys=True), e.budget) for e in evaluations)
    best = json.loads(run_cli("best", study, "--json").stdout)["incumbent"]
    return pairs, (best["config"], best["budget"], best["loss"])


def test_killed_and_resumed_study_equals_the_uninterrupted_one(tmp_path):
    """One worker, fixed seed: kills at several points, including in the middle of journal
    writes, give exactly the evaluations and the incumbent of an uninterrupted study."""
    reference = tmp_path / "reference"
    assert run_cli(*study_args(reference, "--seed", 11, workers=1)).returncode == 0
    study = tmp_path / "interrupted"
    # 1. the master dies while writing its 5th result (a torn line, as after a power cut)
    torn = subprocess.run(
        [os.sys.executable, "-m", "bohb_runner", *map(str, study_args(study, "--seed", 11, workers=1))],
        env=torn_journal_env("results.jsonl", 5), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert torn.returncode == -signal.SIGKILL
    assert not (study / "results.jsonl").read_bytes().endswith(b"\n")
    # 2. ... while writing a sampled configuration
    resumed = subprocess.run(
        [os.sys.executable, "-m", "bohb_runner", *map(str, study_args(study, "--seed", 11, workers=1))],
        env=torn_journal_env("configs.jsonl", 3), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert resumed.returncode == -signal.SIGKILL
    assert "dropped a torn last line" in resumed.stderr
    # 3. plain kill -9 at a few more points
    for records in (12, 18, 25):
        kill_master_after(study, records, "--seed", 11, workers=1)
    final = run_cli(*study_args(study, "--seed", 11, workers=1))
    assert final.returncode == 0, final.stderr
    assert_schedule_complete(study)
    assert _signature(study) == _signature(reference)


def test_torn_last_line_is_dropped_with_a_warning_and_its_evaluation_runs_again(tmp_path):
    study = tmp_path / "study"
    assert run_cli(*study_args(study, iterations=1)).returncode == 0
    lines = journal_lines(study)
    (study / "results.jsonl").write_bytes(b"\n".join(lines[:-1]) + b"\n" + lines[-1][: len(lines[-1]) // 2])
    result = run_cli(*study_args(study, iterations=1))
    assert result.returncode == 0, result.stderr
    assert "results.jsonl: dropped a torn last line" in result.stderr
    assert_schedule_complete(study, iterations=1)
    assert journal_lines(study)[:-1] == lines[:-1]


def test_corruption_inside_the_journal_refuses_to_resume(tmp_path):
    study = tmp_path / "study"
    assert run_cli(*study_args(study, iterations=1)).returncode == 0
    lines = journal_lines(study)
    lines[2] = b"{not json"
    (study / "results.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    assert_one_line_error(run_cli(*study_args(study, iterations=1)), "results.jsonl:3: corrupt journal line")


@pytest.mark.parametrize(
    "change,fragment",
    [
        (["--eta", "2"], "--eta 2.0 contradicts the study (eta 3.0)"),
        (["--max-budget", "27"], "--max-budget 27.0 contradicts the study (max_budget 9.0)"),
        (["--optimizer", "hyperband"], "--optimizer hyperband contradicts the study (optimizer bohb)"),
        (["--seed", "3"], "--seed 3 contradicts the study (seed 0)"),
        (["--space", str(TESTS.parent / "spaces" / "lenet.yaml")], "differs from the study's space (adds"),
        (["--iterations", "1"], "--iterations 1 is fewer than the 2 already started"),
    ],
)
def test_a_resume_that_contradicts_the_study_is_refused(tmp_path, change, fragment):
    study = tmp_path / "study"
    assert run_cli(*study_args(study, iterations=2)).returncode == 0
    before = (study / "results.jsonl").read_bytes()
    result = run_cli(*study_args(study, iterations=2), *change)
    assert_one_line_error(result, "cannot resume" if "fewer" not in fragment else "", fragment)
    assert (study / "results.jsonl").read_bytes() == before


def test_more_iterations_on_resume_extend_the_study(tmp_path):
    study = tmp_path / "study"
    assert run_cli(*study_args(study, iterations=2)).returncode == 0
    result = run_cli(*study_args(study, iterations=4))
    assert result.returncode == 0, result.stderr
    assert_schedule_complete(study, iterations=4)
    assert json.loads((study / "study.json").read_text())["iterations"] == 4


def test_resume_with_only_the_study_directory(tmp_path):
    study = tmp_path / "study"
    kill_master_after(study, 5)
    result = run_cli("run", "--study-dir", study, "--workers", 2, "--no-progress")
    assert result.returncode == 0, result.stderr
    assert_schedule_complete(study)


def test_sigterm_stops_the_master_within_seconds_and_resume_loses_nothing(tmp_path):
    study = tmp_path / "study"
    run = start_cli(*study_args(study))
    try:
        wait_until(lambda: len(journal_lines(study)) >= 3, 120, "three results")
        before = journal_lines(study)
        sent = time.monotonic()
        run.send_signal(signal.SIGTERM)
        _, err = run.communicate(timeout=30)
        stopped_after = time.monotonic() - sent
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 143, err
    assert stopped_after < 10, stopped_after
    assert "stopped by SIGTERM" in err and "Traceback" not in err
    assert not (study / "nameserver.json").exists()
    final = run_cli(*study_args(study))
    assert final.returncode == 0, final.stderr
    assert journal_lines(study)[: len(before)] == before
    assert_schedule_complete(study)


def test_a_second_master_on_the_same_study_is_refused(tmp_path):
    study = tmp_path / "study"
    first = start_cli(*study_args(study, worker="user_worker:SlowQuadraticWorker"))
    try:
        wait_until(lambda: (study / "nameserver.json").exists(), 60, "the first master")
        second = run_cli(*study_args(study, worker="user_worker:SlowQuadraticWorker", iterations=6))
        assert_one_line_error(second, "a master is already running this study")
        assert json.loads((study / "study.json").read_text())["iterations"] == 4
    finally:
        first.kill()
        first.wait()


# -- workers ----------------------------------------------------------------------------------


def _worker_log(study: Path, name: str) -> str:
    path = study / "logs" / f"worker-{name}.log"
    return path.read_text() if path.exists() else ""


def _start_worker(study: Path, name: str, *extra) -> subprocess.Popen:
    return start_cli(
        "worker", "--study-dir", study, "--name", name, "--log-file", study.parent / f"worker-{name}.log", *extra
    )


def _log(study: Path, name: str) -> str:
    path = study.parent / f"worker-{name}.log"
    return path.read_text() if path.exists() else ""


def test_a_worker_killed_mid_job_hands_its_job_to_another_and_a_restarted_worker_gets_work(tmp_path):
    """a and b hold their first jobs (a gate) while a dies mid-job and comes back under its old
    name: a's lost job and the work after it can only go to the returning a."""
    study = tmp_path / "study"
    master = start_cli(
        "master", "--space", QUADRATIC, "--study-dir", study, "--worker", "user_worker:SlowQuadraticWorker",
        "--optimizer", "hyperband", "--max-budget", 3, "--iterations", 2, "--min-workers", 2, "--ping-interval", 1,
        "--no-progress",
    )  # fmt: skip
    gated = ("--worker", "user_worker:GatedQuadraticWorker")
    a = _start_worker(study, "a", *gated)
    b = _start_worker(study, "b", *gated)
    restarted = None
    try:
        wait_until(lambda: "start processing job" in _log(study, "a"), 120, "worker a to start a job")
        wait_until(lambda: "start processing job" in _log(study, "b"), 120, "worker b to hold a job")
        line = next(line for line in _log(study, "a").splitlines() if "start processing job" in line)
        lost_job = tuple(int(i) for i in line.rsplit("job", 1)[1].strip(" ()").split(","))  # on budget 1
        a.kill()
        a.wait()
        restarted = _start_worker(study, "a")  # same name, new process
        wait_until(lambda: _jobs_done_by(study, restarted.pid) >= 2, 120, "the returning worker to finish jobs")
        (study / "gate").touch()
        _, err = master.communicate(timeout=240)
        assert master.returncode == 0, err
    finally:
        for process in (master, a, b, restarted):
            if process is not None and process.poll() is None:
                process.kill()
    evaluations = read_evaluations(study)
    assert all(e.ok for e in evaluations), [e.error for e in evaluations if not e.ok]
    assert_schedule_complete(study, "hyperband", 2, HyperbandSchedule(1, 3, 3))
    runs_of_lost = [e for e in evaluations if e.config_id == lost_job and e.budget == 1]  # (promotions go anywhere)
    assert [e.worker.endswith(f".{restarted.pid}.a") for e in runs_of_lost] == [True]
    assert "handing it to another worker" in (study / "logs" / "master.log").read_text()


def _jobs_done_by(study: Path, pid: int) -> int:
    return sum(1 for e in read_evaluations(study) if e.worker and e.worker.endswith(f".{pid}.a"))


def test_a_local_worker_killed_by_the_kernel_is_restarted(tmp_path):
    study = tmp_path / "study"
    run = start_cli(*study_args(study, worker="user_worker:SlowQuadraticWorker", iterations=2))
    try:
        wait_until(lambda: "start processing job" in _worker_log(study, "0"), 120, "worker-0 to start a job")
        victim = next(pid for pid in descendants(run.pid) if "worker-0" in Path(f"/proc/{pid}/cmdline").read_text())
        os.kill(victim, signal.SIGKILL)
        out, err = run.communicate(timeout=240)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, err
    assert "local worker-0 was killed (SIGKILL); starting it again" in err
    assert_schedule_complete(study, iterations=2)
    assert all(e.ok for e in read_evaluations(study))


def test_a_hung_job_is_abandoned_as_failed_and_its_worker_restarts(tmp_path):
    """One worker: after the first hung job, the rest of the study needs that worker back."""
    study = tmp_path / "study"
    result = run_cli(
        *study_args(study, "--job-timeout", 2, "--optimizer", "randomsearch", "--seed", 2, worker="user_worker:HangingWorker", iterations=2, workers=1),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    evaluations = read_evaluations(study)
    hung = [e for e in evaluations if e.config["x"] > 0.7]
    assert hung, "seed 2 should sample a configuration that hangs"
    assert evaluations[-1] not in hung, "seed 2 should hang before the last job"
    for e in hung:
        assert e.status == "failed" and "abandoned: ran longer than --job-timeout 2 s" in e.error
    assert all(e.ok for e in evaluations if e.config["x"] <= 0.7)
    assert_schedule_complete(study, "randomsearch", 2)
    assert "restarting this worker" in _worker_log(study, "0")


def test_workers_outlive_a_killed_master_and_serve_the_resumed_one(tmp_path):
    study = tmp_path / "study"
    master_args = [
        "master", "--space", QUADRATIC, "--study-dir", study, "--worker", "user_worker:TimedQuadraticWorker",
        "--max-budget", 9, "--iterations", 4, "--ping-interval", 1, "--no-progress",
    ]  # fmt: skip
    master = start_cli(*master_args)
    resumed = None
    worker = _start_worker(study, "w", "--wait-for-master", 120)
    try:
        wait_until(lambda: len(journal_lines(study)) >= 5, 120, "five results")
        master.kill()
        master.wait()
        before = journal_lines(study)
        wait_until(lambda: "waiting up to 120 s for a master to resume" in _log(study, "w"), 60, "the worker to notice")
        assert worker.poll() is None
        resumed = start_cli(*master_args)
        _, err = resumed.communicate(timeout=240)
        assert resumed.returncode == 0, err
        assert worker.wait(timeout=30) == 0
    finally:
        for process in (master, worker, resumed):
            if process is not None and process.poll() is None:
                process.kill()
    assert journal_lines(study)[: len(before)] == before
    assert_schedule_complete(study)
    after = read_evaluations(study)[len(before) :]
    assert after and all(e.worker.endswith(f".{worker.pid}.w") for e in after)


def test_a_worker_gives_up_when_no_master_comes_back(tmp_path):
    study = tmp_path / "study"
    master = start_cli(
        "master", "--space", QUADRATIC, "--study-dir", study, "--worker", "user_worker:SlowQuadraticWorker",
        "--iterations", 4, "--no-progress",
    )  # fmt: skip
    worker = _start_worker(study, "w", "--wait-for-master", 3)
    try:
        wait_until(lambda: "start processing job" in _log(study, "w"), 120, "a job")
        master.kill()
        master.wait()
        _, err = worker.communicate(timeout=60)
    finally:
        for process in (master, worker):
            if process.poll() is None:
                process.kill()
    assert worker.returncode != 0
    assert_one_line_error(subprocess.CompletedProcess([], worker.returncode, "", err), "no master came back within 3 s")
