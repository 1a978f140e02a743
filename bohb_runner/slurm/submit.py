"""Handing a written script to ``sbatch``, and remembering how a study was launched.

``launch.json`` keeps the layout, SLURM options and environment of the last ``slurm submit``,
so that ``slurm add-workers DIR --count M`` needs nothing else: its workers go to the same
partition and account, with the same Python and setup lines, unless told otherwise.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bohb_runner.errors import UserError
from bohb_runner.slurm.script import SLURM_DIR, JobEnvironment, JobOptions, WorkerLayout
from bohb_runner.store.files import write_json_atomically

LAUNCH_FILE = "launch.json"


def require_sbatch() -> None:
    """Refuse early, before a study is created, where nothing could be submitted."""
    if shutil.which("sbatch") is None:
        raise UserError("sbatch not found: submit from a SLURM login node, or write the script with --dry-run")


def sbatch(script: Path, timeout: float = 120.0) -> str:
    """Submit ``script`` and return its job id; SLURM's refusal becomes a one-line error."""
    require_sbatch()
    try:
        result = subprocess.run(["sbatch", "--parsable", str(script)], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise UserError(f"sbatch {script}: no answer from SLURM within {timeout:g} s") from None
    if result.returncode != 0:
        lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
        reason = lines[-1] if lines else f"exit code {result.returncode}"
        raise UserError(f"sbatch refused {script}: {reason.removeprefix('sbatch: error: ')}")
    # --parsable prints "jobid" or "jobid;cluster"
    match = re.match(r"\s*(\d+)", result.stdout)
    if not match:
        raise UserError(f"sbatch {script}: unexpected answer {result.stdout.strip()!r}")
    return match.group(1)


def save_launch(study_dir: Path, layout: WorkerLayout, job: JobOptions, env: JobEnvironment) -> None:
    path = Path(study_dir) / SLURM_DIR / LAUNCH_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"layout": asdict(layout), "job": asdict(job), "environment": asdict(env)}
    write_json_atomically(path, data, indent=2)


def load_launch(study_dir: Path) -> dict[str, Any]:
    """The last submission's launch settings, or {} for a study never submitted to SLURM."""
    path = Path(study_dir) / SLURM_DIR / LAUNCH_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: unreadable ({exc})") from None
    return data if isinstance(data, dict) else {}
