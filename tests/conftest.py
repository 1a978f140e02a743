"""Shared fixtures: running the real CLI in subprocesses, waiting on conditions, process trees."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from fault_injection.sitecustomize import TEAR_ENV

PROJECT = Path(__file__).resolve().parent.parent
SPACE = PROJECT / "spaces" / "lenet.yaml"
TESTS = Path(__file__).resolve().parent


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    # the tests' own helper modules (user workers) must be importable by worker processes
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS), str(PROJECT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env["OMP_NUM_THREADS"] = "1"
    return env


FAULT_INJECTION = TESTS / "fault_injection"


def torn_journal_env(journal: str, line: int) -> dict[str, str]:
    """:func:`cli_env` for a process whose ``line``-th line written to the journal named
    ``journal`` is written half, after which it SIGKILLs itself (tests/fault_injection)."""
    env = cli_env()
    env["PYTHONPATH"] = os.pathsep.join((str(FAULT_INJECTION), env["PYTHONPATH"]))
    env[TEAR_ENV] = f"{journal}:{line}"
    return env


def run_cli(*args: str | Path, timeout: float = 300, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``bohb-runner ARGS`` to completion and return its output."""
    return subprocess.run(
        [sys.executable, "-m", "bohb_runner", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(),
        cwd=cwd or PROJECT,
    )


def start_cli(*args: str | Path, cwd: Path | None = None, **kwargs) -> subprocess.Popen:
    """Start ``bohb-runner ARGS`` in the background."""
    return subprocess.Popen(
        [sys.executable, "-m", "bohb_runner", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
        cwd=cwd or PROJECT,
        **kwargs,
    )


def wait_until(condition: Callable[[], bool], timeout: float = 60, what: str = "condition") -> None:
    """Wait for a condition that another process brings about (files, process states)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def descendants(pid: int) -> set[int]:
    """All live descendants of ``pid``, from /proc (Linux)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains ``text`` (e.g. a study directory)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            pids.append(int(entry.name))
    return pids


def journal_lines(study: Path) -> list[bytes]:
    """The whole lines of a study's results journal, as bytes (a torn last line left out)."""
    path = study / "results.jsonl"
    if not path.exists():
        return []
    return path.read_bytes().split(b"\n")[:-1]


def is_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (not gone, not a zombie)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def kill_master_after(records: int, *args: str | Path, study: Path) -> list[bytes]:
    """Start ``bohb-runner ARGS`` on ``study``, SIGKILL its master once ``records`` results are
    journalled, wait for its local workers to follow; returns the journal's lines."""
    run = start_cli(*args)
    children: set[int] = set()
    try:
        wait_until(lambda: len(journal_lines(study)) >= records or run.poll() is not None, 120, f"{records} results")
        assert run.poll() is None, "the study ended before it could be killed"
        children = descendants(run.pid)
        run.kill()
        run.wait(timeout=30)
    finally:
        if run.poll() is None:
            run.kill()
    # local workers die with their master (PR_SET_PDEATHSIG)
    wait_until(lambda: not any(is_alive(pid) for pid in children), 30, "workers to exit")
    return journal_lines(study)


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    """The command failed with a single-line error mentioning every fragment, and no traceback."""
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    return errors[0]


def incumbent_steps_by_hand(records: list[dict], epochs_per_budget: float = 1) -> list[tuple[float, list[int]]]:
    """(epochs consumed, config id) where the incumbent changes, walking journal records in their
    order: the lowest loss on the largest budget so far, ties to the lowest config id; each
    evaluation costs ``epochs_per_budget`` (the trainings per evaluation) times its budget.
    Written out here, independently of bohb_runner.store.results, for the tests to compare with."""
    spent, best, steps = 0.0, None, []
    for record in records:
        spent += epochs_per_budget * record["budget"]
        if record["status"] != "ok":
            continue
        if best is None or (-record["budget"], record["loss"], record["config_id"]) < (
            -best["budget"],
            best["loss"],
            best["config_id"],
        ):
            best = record
            steps.append((spent, record["config_id"]))
    return steps


@pytest.fixture
def space_file() -> Path:
    return SPACE
