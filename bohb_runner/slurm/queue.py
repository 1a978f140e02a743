"""What SLURM says about jobs: ``squeue`` (and ``sacct`` where SLURM keeps accounting), asked here only.

``bohb-runner status`` shows every task's state; ``slurm submit`` and ``slurm add-workers`` ask
whether a study job is still queued or running. Both read the same answer, so they cannot
disagree about a job. ``squeue --states=all`` lists a job's tasks also for a while after they
ended (SLURM's ``MinJobAge``, five minutes by default), with how they ended; a job it no
longer lists has ended, and ``sacct`` knows how where accounting is kept.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

# seconds one squeue or sacct call may take: a controller that does not answer must not hang `status`
SLURM_TIMEOUT = 15.0

# states of a job that is still going to run, or running (not yet ended)
ACTIVE_STATES = frozenset(
    {
        "PENDING",
        "CONFIGURING",
        "RUNNING",
        "COMPLETING",
        "SUSPENDED",
        "REQUEUED",
        "REQUEUE_HOLD",
        "REQUEUE_FED",
        "RESIZING",
        "SIGNALING",
        "STAGE_OUT",
        "RESV_DEL_HOLD",
        "STOPPED",
    }
)

# one line per task: squeue's task id (123, 123_4, 123_[5-7]), the job it belongs to, state, time, nodes or reason
_SQUEUE_FORMAT = "%i|%F|%T|%M|%R"


@dataclass(frozen=True)
class QueuedTask:
    """One line of ``squeue``: a job, or one task (or a pending range of tasks) of a job array."""

    task: str
    job_id: str
    state: str
    elapsed: str
    where: str

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    def to_json(self) -> dict[str, str]:
        return {"task": self.task, "state": self.state, "elapsed": self.elapsed, "where": self.where}


def squeue_available() -> bool:
    return shutil.which("squeue") is not None


def _run(command: list[str]) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=SLURM_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired):
        return None


def _squeue(job_ids: list[str]) -> list[str] | None:
    command = ["squeue", "--noheader", "--states=all", f"--format={_SQUEUE_FORMAT}"]
    result = _run([*command, f"--jobs={','.join(job_ids)}"])
    if result is None:
        return None
    if result.returncode == 0:
        return result.stdout.splitlines()
    if len(job_ids) == 1:
        # "Invalid job id specified": SLURM has forgotten the job; anything else: no answer
        return [] if "invalid job id" in result.stderr.lower() else None
    # squeue may refuse the whole list when one id has left it: ask for each on its own
    rows = []
    for job_id in job_ids:
        one = _squeue([job_id])
        if one is None:
            return None
        rows += one
    return rows


def queued_tasks(job_ids: list[str]) -> dict[str, list[QueuedTask]] | None:
    """Every task SLURM still lists, per job id asked for (an empty list: SLURM no longer lists
    the job); None when squeue is missing or does not answer."""
    if not squeue_available():
        return None
    found: dict[str, list[QueuedTask]] = {job_id: [] for job_id in job_ids}
    if not job_ids:
        return found
    rows = _squeue(list(job_ids))
    if rows is None:
        return None
    for row in rows:
        parts = row.strip().split("|")
        if len(parts) < 5:
            continue
        task = QueuedTask(*parts[:5])
        if task.job_id in found:
            found[task.job_id].append(task)
    return found


def accounted_states(job_ids: list[str]) -> dict[str, str]:
    """Final states of jobs that left the queue, where SLURM keeps accounting (else nothing)."""
    if not job_ids or shutil.which("sacct") is None:
        return {}
    result = _run(["sacct", "--noheader", "-X", "--parsable2", "--format=JobID,State", f"--jobs={','.join(job_ids)}"])
    states: dict[str, str] = {}
    if result is None or result.returncode != 0:
        return states
    for row in result.stdout.splitlines():
        parts = row.strip().split("|")
        if len(parts) >= 2:
            base = parts[0].split("_", 1)[0]
            states.setdefault(base, parts[1].split()[0] if parts[1] else "?")  # "CANCELLED by 0": CANCELLED
    return states


def summarise_states(tasks: list[QueuedTask]) -> str:
    """A job's tasks in one phrase: ``RUNNING``, ``COMPLETED x2, RUNNING``."""
    counts: dict[str, int] = {}
    for task in tasks:
        counts[task.state] = counts.get(task.state, 0) + 1
    return ", ".join(f"{state} x{n}" if n > 1 else state for state, n in sorted(counts.items()))


def active_jobs(job_ids: list[str]) -> dict[str, str]:
    """The jobs SLURM has not finished: {job id: the state of a task still queued or running}.

    Empty when squeue is missing or does not answer: nothing is known to be running.
    """
    queue = queued_tasks(job_ids) or {}
    active = {}
    for job_id, tasks in queue.items():
        live = [task for task in tasks if task.active]
        if live:
            active[job_id] = live[0].state
    return active
