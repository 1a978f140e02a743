"""The study's record of its SLURM jobs (``DIR/slurm/jobs.jsonl``) and their states from SLURM.

One JSON object per line, appended at every submission: ``{"job_id": "123", "role": "study" or
"workers", "submitted": unix time, "script": path}``. ``bohb-runner status`` reads it, and
``slurm submit`` uses it to refuse a second study job while one is still queued or running.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bohb_runner.slurm.script import SLURM_DIR

JOBS_FILE = "jobs.jsonl"

# squeue states of a job that is still going to run, or running (not yet ended)
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


@dataclass
class JobRecord:
    job_id: str
    role: str  # "study" or "workers"
    submitted: float
    script: str


def jobs_path(study_dir: Path) -> Path:
    return Path(study_dir) / SLURM_DIR / JOBS_FILE


def record_job(study_dir: Path, job_id: str, role: str, script: Path) -> JobRecord:
    """Append one submission to ``jobs.jsonl`` (one write, fsynced, so readers never see half a line)."""
    record = JobRecord(job_id=str(job_id), role=role, submitted=time.time(), script=str(Path(script).resolve()))
    path = jobs_path(study_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fh.write(json.dumps(asdict(record)) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return record


def read_jobs(study_dir: Path) -> list[JobRecord]:
    """Every recorded submission, oldest first; lines that do not parse are skipped."""
    path = jobs_path(study_dir)
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            data = json.loads(line)
            records.append(JobRecord(str(data["job_id"]), data["role"], float(data["submitted"]), data["script"]))
        except (ValueError, KeyError, TypeError):
            continue
    return records


def job_states(job_ids: list[str]) -> dict[str, str]:
    """SLURM's state of each job SLURM still knows (``squeue -t all``); forgotten jobs are left out.

    An array job's state is that of its first task still listed. Empty when ``squeue`` is missing.
    """
    if not job_ids or shutil.which("squeue") is None:
        return {}
    states: dict[str, str] = {}
    for job_id in job_ids:  # one call each: squeue fails as a whole when any id is unknown
        try:
            result = subprocess.run(
                ["squeue", "--noheader", "--states=all", f"--jobs={job_id}", "--format=%F %T"],
                capture_output=True,
                text=True,
                timeout=30,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        for line in result.stdout.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == job_id:
                # an array's tasks: keep an active state if any task has one
                if parts[0] not in states or parts[1] in ACTIVE_STATES:
                    states[parts[0]] = parts[1]
    return states


def active_study_jobs(study_dir: Path) -> dict[str, str]:
    """The study's recorded study jobs that SLURM has not finished: {job id: state}."""
    ids = [r.job_id for r in read_jobs(study_dir) if r.role == "study"]
    return {job_id: state for job_id, state in job_states(ids).items() if state in ACTIVE_STATES}
