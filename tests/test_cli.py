"""End-to-end through the real CLI: nameserver, master and worker processes on loopback.

These use the cheap workers of ``user_worker.py`` (a user's own hpbandster Worker classes);
``test_lenet_study.py`` runs the reduced LeNet the same way.
"""

from __future__ import annotations

import json
import queue
import signal
import threading
import time
from pathlib import Path

import pytest
from hpbandster.core.result import logged_results_to_HBS_result
from hpbandster.core.worker import Worker

from bohb_runner.store.journal import read_evaluations
from bohb_runner.store.schedule import HyperbandSchedule
from bohb_runner.store.status_file import read_status_snapshot

from conftest import (
    TESTS,
    assert_one_line_error,
    descendants,
    processes_mentioning,
    run_cli,
    start_cli,
    wait_until,
)

QUADRATIC = TESTS / "data" / "quadratic.yaml"
GATE = "open-the-gate"


def wait_for_gate(working_directory: str) -> None:
    """Hold a job until the file ``open-the-gate`` appears in the study directory."""
    gate = Path(working_directory).parent / GATE
    while not gate.exists():
        time.sleep(0.05)


class GatedWorker(Worker):
    """Every job waits for the gate: a study stays exactly where the test needs it, however fast
    or loaded the machine is (no sleeps to guess)."""

    def compute(self, config_id, config, budget, working_directory, **kwargs):
        wait_for_gate(working_directory)
        return {"loss": (config["x"] - 0.3) ** 2 + 1.0 / budget, "info": {}}


class FirstJobThenGatedWorker(GatedWorker):
    """Job (0, 0, 0) finishes at once; every other job waits for the gate."""

    def compute(self, config_id, config, budget, working_directory, **kwargs):
        if tuple(config_id) == (0, 0, 0):
            return {"loss": 1.0 / budget, "info": {}}
        return super().compute(config_id, config, budget, working_directory)


def this_file_worker(name: str) -> str:
    return f"{Path(__file__).resolve()}:{name}"


def quadratic_run(study_dir, *extra, worker="user_worker:QuadraticWorker", workers=2):
    return run_cli(
        "run", "--space", QUADRATIC, "--study-dir", study_dir, "--worker", worker,
        "--workers", workers, "--max-budget", 9, "--iterations", 3, "--no-progress", *extra,
    )  # fmt: skip


def test_user_worker_study_completes_and_exports_for_hpbandster(tmp_path):
    study = tmp_path / "study"
    result = quadratic_run(study, "--min-workers", 2)  # both registered before the (instant) jobs start
    assert result.returncode == 0, result.stderr
    evaluations = read_evaluations(study)
    assert len(evaluations) == HyperbandSchedule(1, 9, 3).total_jobs("bohb", 3)
    assert all(e.ok for e in evaluations)
    assert all(isinstance(e.info["curve"], list) and isinstance(e.info["pid"], int) for e in evaluations)
    assert len({e.info["pid"] for e in evaluations}) == 2, "both worker processes should have worked"
    assert "incumbent" in result.stdout and "validation error" in result.stdout

    best = run_cli("best", study, "--json")
    assert best.returncode == 0, best.stderr
    incumbent = json.loads(best.stdout)["incumbent"]

    export = run_cli("export", study, "--format", "hpbandster", tmp_path / "export")
    assert export.returncode == 0, export.stderr
    hpb = logged_results_to_HBS_result(str(tmp_path / "export"))
    hpb_id = hpb.get_incumbent_id()
    assert list(hpb_id) == incumbent["config_id"]
    assert hpb.get_id2config_mapping()[hpb_id]["config"] == incumbent["config"]
    assert hpb.get_runs_by_id(hpb_id)[-1].loss == incumbent["loss"]
    assert len(hpb.get_all_runs()) == len(evaluations)
    # hpbandster's own live files agree as well
    live = logged_results_to_HBS_result(str(study / "hpbandster"))
    assert live.get_incumbent_id() == hpb_id


def test_failures_inside_workers_are_recorded_and_shown_in_one_line_each(tmp_path):
    study = tmp_path / "study"
    result = run_cli(
        "run", "--space", QUADRATIC, "--study-dir", study, "--worker", "user_worker:FlakyWorker",
        "--workers", 2, "--max-budget", 3, "--iterations", 6, "--optimizer", "randomsearch", "--seed", 1,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    evaluations = read_evaluations(study)
    failed = [e for e in evaluations if not e.ok]
    assert failed, "seed 1 should produce some failing configurations"
    for e in failed:
        if e.config["x"] > 0.8:
            assert "is too large for this model" in e.error
        elif e.config["y"] > 0.9:
            assert "not finite" in e.error
        else:
            assert "cannot be sent to the master" in e.error
    warnings = [line for line in result.stderr.splitlines() if line.startswith("WARNING: evaluation")]
    assert len(warnings) == len(failed)
    assert "Traceback" not in result.stderr


def test_workers_started_separately_before_and_after_the_master(tmp_path):
    study = tmp_path / "study"
    early = start_cli("worker", "--study-dir", study, "--name", "early", "--wait-for-master", 120)
    master = start_cli(
        "master", "--space", QUADRATIC, "--study-dir", study, "--worker", this_file_worker("GatedWorker"),
        "--max-budget", 1, "--min-budget", 0.1, "--iterations", 2, "--min-workers", 2, "--no-progress",
    )  # fmt: skip
    late = None
    try:
        wait_until(lambda: (study / "nameserver.json").exists(), 60, "the master's nameserver.json")
        late = start_cli("worker", "--study-dir", study, "--name", "late")
        # each worker holds a job at the gate: both have worked, whatever the machine's speed
        wait_until(lambda: busy_workers(study) == {"early", "late"}, 120, "a job on each worker")
        (study / GATE).touch()
        out, err = master.communicate(timeout=240)
        assert master.returncode == 0, err
        assert early.wait(timeout=30) == 0
        assert late.wait(timeout=30) == 0
    finally:
        for process in (early, late, master):
            if process is not None and process.poll() is None:
                process.kill()
    workers = {e.worker.rsplit(".", 1)[-1] for e in read_evaluations(study)}
    assert workers == {"early", "late"}
    assert not (study / "nameserver.json").exists()


def busy_workers(study: Path) -> set[str]:
    """The short names of the workers the master's status.json shows running a job."""
    snapshot = read_status_snapshot(study) or {}
    return {job["worker"].rsplit(".", 1)[-1] for job in snapshot.get("running", []) if job.get("worker")}


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize(
    "inherited",
    ["default", "ignored"],
    ids=["sigint-default", "sigint-ignored-by-parent"],  # a background job of a script or CI ignores SIGINT
)
def test_ctrl_c_on_run_leaves_no_process_behind(tmp_path, inherited):
    study = tmp_path / "study"
    run = start_cli(
        "run", "--space", QUADRATIC, "--study-dir", study, "--worker", this_file_worker("FirstJobThenGatedWorker"),
        "--workers", 2, "--max-budget", 9, "--iterations", 4, "--ping-interval", 1,
        preexec_fn=_ignore_sigint if inherited == "ignored" else None,
    )  # fmt: skip
    try:
        wait_until(lambda: len(descendants(run.pid)) >= 2 or run.poll() is not None, 60, "two worker processes")
        # one result is in; every other job is held at the gate, which never opens
        wait_until(lambda: len(read_evaluations(study)) == 1 or run.poll() is not None, 120, "the first result")
        wait_until(lambda: len(busy_workers(study)) == 2 or run.poll() is not None, 120, "both workers at the gate")
        assert run.poll() is None, run.communicate()
        children = descendants(run.pid)
        run.send_signal(signal.SIGINT)
        out, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    wait_until(lambda: not any(descendants_alive(children)), 30, "the workers to exit")
    assert processes_mentioning(str(study)) == []
    assert [(e.config_id, e.budget) for e in read_evaluations(study)] == [((0, 0, 0), 1.0)]


class LineReader:
    """Collects a process's stderr lines in a thread, so a test can wait for one."""

    def __init__(self, stream) -> None:
        self.lines: queue.Queue = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.put(line)

    def wait_for(self, fragment: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                continue
            self.seen.append(line)
            if fragment in line:
                return line
        raise AssertionError(f"no line with {fragment!r} within {timeout} s; stderr so far: {''.join(self.seen)}")


@pytest.mark.parametrize("command", [["run", "--workers", "0"], ["master"]], ids=["run-workers-0", "master"])
def test_a_study_without_local_workers_says_how_to_attach_them(tmp_path, command):
    study = tmp_path / "my study"  # a space in the path: the command shown must still work
    master = start_cli(
        *command, "--space", QUADRATIC, "--study-dir", study, "--worker", "user_worker:QuadraticWorker",
        "--max-budget", 1, "--iterations", 1,
    )  # fmt: skip
    worker = None
    try:
        line = LineReader(master.stderr).wait_for("no local workers", 60)
        assert f"no local workers: start them with `bohb-runner worker --study-dir '{study}'`" in line, line
        assert master.poll() is None  # it waits, now saying for what
        worker = start_cli("worker", "--study-dir", study)  # what the line says
        master.wait(timeout=120)
        assert master.returncode == 0
        assert len(read_evaluations(study)) == 1
        assert worker.wait(timeout=30) == 0
    finally:
        for process in (master, worker):
            if process is not None and process.poll() is None:
                process.kill()


def descendants_alive(pids):
    from pathlib import Path

    for pid in pids:
        stat = Path(f"/proc/{pid}/stat")
        try:
            state = stat.read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            yield pid


# -- bad input: one line, non-zero exit, nothing lost ---------------------------------------


@pytest.mark.parametrize(
    "options,fragments",
    [
        (["--min-budget", "10", "--max-budget", "3"], ["--max-budget (3) must not be smaller than --min-budget (10)"]),
        (["--min-budget", "0"], ["--min-budget must be positive"]),
        (["--eta", "1"], ["--eta must be at least 2"]),
        (["--iterations", "0"], ["--iterations must be at least 1"]),
        (["--worker", "no_such_module:Worker"], ["cannot import 'no_such_module'"]),
        (["--worker", "user_worker:NotThere"], ["has no attribute 'NotThere'"]),
        (["--worker", "json:JSONDecoder"], ["is not a subclass of hpbandster.core.worker.Worker"]),
        (["--host", "10.1.1.1"], ["--host 10.1.1.1", "not an address of this node"]),
    ],
)
def test_impossible_options_are_refused_before_anything_starts(tmp_path, options, fragments):
    study = tmp_path / "study"
    result = run_cli(
        "run", "--space", QUADRATIC, "--study-dir", study, "--worker", "user_worker:QuadraticWorker", *options
    )
    assert_one_line_error(result, *fragments)
    assert not (study / "study.json").exists()


def test_broken_space_file_is_refused(tmp_path):
    space = tmp_path / "broken.yaml"
    space.write_text(
        QUADRATIC.read_text().replace(
            "lower: 0.0, upper: 1.0, default_value: 0.5, log: false}\n- {",
            "lower: 2.0, upper: 1.0, default_value: 0.5, log: false}\n- {",
            1,
        )
    )
    result = run_cli("run", "--space", space, "--study-dir", tmp_path / "s", "--worker", "user_worker:QuadraticWorker")
    assert_one_line_error(result, str(space), "'x'", "lower bound 2.0 must be smaller than upper bound 1.0")


def test_a_worker_that_cannot_start_fails_the_study_with_its_reason(tmp_path):
    result = quadratic_run(tmp_path / "study", worker="user_worker:CrashingWorker", workers=1)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "all 1 local worker processes exited" in result.stderr
    assert "CUDA driver not found (simulated)" in result.stderr


def test_corrupt_journal_is_reported_with_its_line(tmp_path):
    study = tmp_path / "study"
    assert quadratic_run(study).returncode == 0
    journal = study / "results.jsonl"
    lines = journal.read_text().splitlines()
    lines[3] = lines[3][:10] + "\x00garbage" + lines[3][10:]
    journal.write_text("\n".join(lines) + "\n")
    for command in (["best", study], ["export", study, tmp_path / "out"]):
        assert_one_line_error(run_cli(*command), "results.jsonl:4: corrupt journal line")


def test_best_on_a_directory_that_is_not_a_study(tmp_path):
    assert_one_line_error(run_cli("best", tmp_path), "study.json: not found")
    assert_one_line_error(run_cli("best", tmp_path / "nope"), "no such study directory")


def test_running_a_finished_study_again_changes_nothing_and_fresh_refuses(tmp_path):
    study = tmp_path / "study"
    assert quadratic_run(study).returncode == 0
    before = (study / "results.jsonl").read_bytes()
    again = quadratic_run(study)
    assert again.returncode == 0, again.stderr
    assert "resuming" in again.stderr
    assert (study / "results.jsonl").read_bytes() == before
    assert_one_line_error(quadratic_run(study, "--fresh"), "--fresh refuses to touch it")
    assert (study / "results.jsonl").read_bytes() == before
    fresh = quadratic_run(study, "--fresh", "--overwrite", "--seed", "5")
    assert fresh.returncode == 0, fresh.stderr
    assert (study / "results.jsonl").read_bytes() != before
