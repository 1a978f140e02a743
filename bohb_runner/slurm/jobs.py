"""The study's record of its SLURM jobs (``DIR/slurm/jobs.jsonl``); their states come from :mod:`.queue`.

One JSON object per line, appended at every submission: ``{"job_id": "123", "role": "study" or
"workers", "submitted": unix time, "script": path}``. ``bohb-runner status`` reads it, and
``slurm submit`` uses it to refuse a second study job while one is still queued or running.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bohb_runner.errors import StudyError
from bohb_runner.slurm.queue import active_jobs
from bohb_runner.slurm.script import SLURM_DIR
from bohb_runner.store.files import read_json_lines

JOBS_FILE = "jobs.jsonl"


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
    """Every recorded submission, oldest first (the JSON-lines rule of :mod:`bohb_runner.store.files`:
    a last line still being written is left for the next read; a bad line elsewhere is an error)."""
    path = jobs_path(study_dir)
    records = []
    for number, data in read_json_lines(path, what="job record", torn_tail="quiet"):
        try:
            records.append(JobRecord(str(data["job_id"]), data["role"], float(data["submitted"]), data["script"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise StudyError(f"{path}:{number}: malformed job record ({exc!r})") from None
    return records


def active_study_jobs(study_dir: Path) -> dict[str, str]:
    """The study's recorded study jobs that SLURM has not finished: {job id: state}."""
    return active_jobs([r.job_id for r in read_jobs(study_dir) if r.role == "study"])
