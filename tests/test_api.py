"""The Python API a notebook user calls: run a study, resume it as the CLI does, read it back;
and a study run from Python leaves its lock behind for nobody, however it ends."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import bohb_runner
from bohb_runner.errors import StudyError, UserError
from bohb_runner.store.journal import read_evaluations

from conftest import TESTS, cli_env, run_cli

QUADRATIC = TESTS / "data" / "quadratic.yaml"
# Hyperband on budgets 1 and 3 (eta 3) alternates two brackets: 3 configurations on budget 1 and
# the best one on 3 (4 evaluations), then 2 configurations on budget 3 (2 evaluations)
JOBS_AFTER = {1: 4, 2: 6, 3: 10, 5: 16, 6: 18}

REPEATING_WORKER = '''
from hpbandster.core.worker import Worker


class RepeatedQuadratic(Worker):
    """The quadratic, trained twice per evaluation under --repeats 2 (its seed is its repeat)."""

    def compute(self, config_id, config, budget, working_directory, repeat: int = 0, **kwargs):
        loss = (config["x"] - 0.3) ** 2 + (config["y"] - 0.6) ** 2 + 1.0 / budget + 0.01 * repeat
        return {"loss": loss, "info": {"repeat": repeat}}
'''


@pytest.fixture
def worker_env(monkeypatch):
    """Worker processes started from this process must find the tests' user_worker module."""
    for key, value in cli_env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.syspath_prepend(str(TESTS))


def test_run_and_load_a_study_then_the_cli_resumes_it_from_the_same_process(tmp_path, worker_env):
    """Defect: the study lock outlived ``run_study``; ``bohb-runner run`` then said "a master is
    already running this study" until the notebook's process exited."""
    study = tmp_path / "nb"
    results = bohb_runner.run_study(
        QUADRATIC,
        study,
        worker="user_worker:QuadraticWorker",
        workers=1,
        optimizer="hyperband",
        max_budget=3,
        iterations=2,
        progress=False,
    )
    assert len(results.evaluations) == JOBS_AFTER[2]
    incumbent = results.incumbent
    assert incumbent.budget == 3.0 and set(incumbent.config) == {"x", "y"}
    assert incumbent.loss == min(e.loss for e in results.evaluations if e.budget == 3.0)
    again = bohb_runner.load_study(study)
    assert again.incumbent == incumbent
    assert again.summary()["incumbent"]["loss"] == incumbent.loss
    # this process is still alive, as a notebook's kernel would be
    resumed = run_cli("run", "--study-dir", study, "--iterations", 3, "--workers", 1, "--no-progress", timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert len(read_evaluations(study)) == JOBS_AFTER[3]


INTERRUPTED_CALLER = r"""
import os, signal, subprocess, sys, threading, time
import bohb_runner

study, space = sys.argv[1], sys.argv[2]
worker_log = os.path.join(study, "logs", "worker-0.log")


def interrupt_once_a_job_is_held():
    # the gated worker holds its job until the gate exists, so the study is surely still running
    while not (os.path.exists(worker_log) and "start processing job" in open(worker_log).read()):
        time.sleep(0.05)
    os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in a notebook: the kernel interrupts the call


threading.Thread(target=interrupt_once_a_job_is_held, daemon=True).start()
try:
    bohb_runner.run_study(
        space, study, worker="user_worker:GatedQuadraticWorker", workers=1, optimizer="hyperband",
        max_budget=3, iterations=1, progress=False,
    )
    print("not interrupted")
except KeyboardInterrupt:
    print("interrupted")
open(os.path.join(study, "gate"), "w").close()
cli = subprocess.run(
    [sys.executable, "-m", "bohb_runner", "run", "--study-dir", study, "--workers", "1", "--no-progress"],
    capture_output=True, text=True, timeout=120,
)
print("cli exit", cli.returncode)
print(cli.stderr)
"""


def test_an_interrupted_run_study_releases_the_lock_too(tmp_path):
    script = tmp_path / "caller.py"
    script.write_text(INTERRUPTED_CALLER)
    study = tmp_path / "nb"
    result = subprocess.run(
        [sys.executable, str(script), str(study), str(QUADRATIC)],
        capture_output=True,
        text=True,
        timeout=240,
        env=cli_env(),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0] == "interrupted", result.stdout
    assert lines[1] == "cli exit 0", result.stdout
    evaluations = read_evaluations(study)
    assert len(evaluations) == JOBS_AFTER[1] and all(e.ok for e in evaluations)


def test_run_study_resumes_a_cli_study_with_the_studys_own_settings(tmp_path, worker_env):
    """Defect: ``run_study`` passed every default, so a study made with another max_budget and
    repeats, or already past 4 iterations, was refused as a contradiction."""
    worker_file = tmp_path / "repeated.py"
    worker_file.write_text(REPEATING_WORKER)
    study = tmp_path / "study"
    created = run_cli(
        "run", "--space", QUADRATIC, "--study-dir", study, "--worker", f"{worker_file}:RepeatedQuadratic",
        "--optimizer", "hyperband", "--max-budget", 3, "--repeats", 2, "--iterations", 5, "--seed", 7,
        "--workers", 1, "--no-progress", timeout=120,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    assert len(read_evaluations(study)) == JOBS_AFTER[5]

    # as the README shows it (space and study directory by position), growing the iterations
    results = bohb_runner.run_study(QUADRATIC, study, workers=1, iterations=6, progress=False)
    assert len(results.evaluations) == JOBS_AFTER[6]
    stored = json.loads((study / "study.json").read_text())
    assert (stored["max_budget"], stored["repeats"], stored["seed"], stored["iterations"]) == (3, 2, 7, 6)
    assert all(len(e.info["repeat_losses"]) == 2 for e in results.evaluations)  # the study's repeats, not 1

    # no space and no options at all: the study as it is, already past the default 4 iterations
    again = bohb_runner.run_study(study_dir=study, workers=1, progress=False)
    assert len(again.evaluations) == JOBS_AFTER[6]

    # what the caller does give must still agree with the study
    with pytest.raises(StudyError, match=r"--max-budget 9 contradicts the study \(max_budget 3"):
        bohb_runner.run_study(study_dir=study, max_budget=9, progress=False)
    with pytest.raises(StudyError, match="--iterations 2 is fewer than the 6 already started"):
        bohb_runner.run_study(study_dir=study, iterations=2, progress=False)


def test_a_new_study_needs_a_space(tmp_path):
    with pytest.raises(UserError, match="space is required to create a study"):
        bohb_runner.run_study(study_dir=tmp_path / "new", progress=False)
    assert not (tmp_path / "new" / "study.json").exists()
    with pytest.raises(TypeError, match="study_dir"):
        bohb_runner.run_study(QUADRATIC)
    with pytest.raises(TypeError, match="unknown options: top_n"):
        bohb_runner.run_study(QUADRATIC, tmp_path / "new", top_n=3)
