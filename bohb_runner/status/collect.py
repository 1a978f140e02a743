"""``bohb-runner status DIR``: collecting where a study stands, from any node that sees its directory.

Everything comes from the study directory, so it works on a running study, a finished one and
one whose master was killed: the settings and journal (jobs done, incumbent, time per budget),
``slurm/jobs.jsonl`` (written when SLURM jobs are submitted; their states come from ``squeue``),
``nameserver.json`` and ``status.json`` (written by a running master: its address, its running
jobs and workers, and a heartbeat). Live workers are asked of the study's nameserver with the
study's secret; without a reachable master the last snapshot is shown, marked as such.
:mod:`bohb_runner.status.text` puts it in words.
"""

from __future__ import annotations

import os
import socket
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bohb_runner.errors import UserError
from bohb_runner.slurm import queue
from bohb_runner.slurm.jobs import read_jobs
from bohb_runner.store.describe import describe_study, format_duration
from bohb_runner.store.results import StudyResults
from bohb_runner.store.schedule import planned_epochs, schedule_of
from bohb_runner.store.status_file import PUBLISH_INTERVAL, read_status_snapshot, short_worker_name
from bohb_runner.wire.discovery import NameserverAddress, read_nameserver_address

# a snapshot older than this many publish intervals means its master stopped updating it
STALE_AFTER = 5 * PUBLISH_INTERVAL
NAMESERVER_TIMEOUT = 3.0


# -- SLURM ------------------------------------------------------------------------------------------


def slurm_status(study_dir: Path) -> dict[str, Any]:
    """The study's SLURM jobs with their states (every task's, from :mod:`bohb_runner.slurm.queue`),
    or why there are none to show."""
    jobs = [asdict(record) for record in read_jobs(study_dir)]
    if not jobs:
        return {"available": queue.squeue_available(), "jobs": [], "note": "no SLURM jobs submitted"}
    if not queue.squeue_available():
        return {
            "available": False,
            "jobs": [dict(job, state=None) for job in jobs],
            "note": "SLURM is not available here (no squeue)",
        }
    ids = [job["job_id"] for job in jobs]
    tasks_of = queue.queued_tasks(ids)
    if tasks_of is None:
        return {"available": False, "jobs": [dict(job, state=None) for job in jobs], "note": "squeue did not answer"}
    ended = queue.accounted_states([job_id for job_id in ids if not tasks_of[job_id]])
    described = []
    for job in jobs:
        tasks = tasks_of[job["job_id"]]
        if tasks:
            state = queue.summarise_states(tasks)
        else:
            state = ended.get(job["job_id"], "finished (no longer queued)")
        described.append(dict(job, state=state, tasks=[task.to_json() for task in tasks]))
    return {"available": True, "jobs": described, "note": None}


# -- master and workers --------------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _ask_nameserver(study_dir: Path, address: NameserverAddress) -> tuple[list[str] | None, str | None]:
    """Live workers registered with the study's nameserver, or (None, why not)."""
    import Pyro4.errors

    from bohb_runner.wire import auth

    try:
        key = auth.read_secret(study_dir)
    except UserError as exc:
        return None, str(exc)
    try:
        with auth.locate_nameserver(address.host, address.port, key, timeout=NAMESERVER_TIMEOUT) as ns:
            names = ns.list(prefix=f"hpbandster.run_{address.run_id}.worker.")
    except Pyro4.errors.PyroError as exc:
        return None, f"the nameserver at {address.host}:{address.port} did not answer ({exc})"
    return sorted(short_worker_name(name) or name for name in names), None


def master_status(study_dir: Path) -> dict[str, Any]:
    """Is a master running this study, where, and which workers does it know?"""
    address = read_nameserver_address(study_dir)
    snapshot = read_status_snapshot(study_dir)
    now = time.time()
    heartbeat_age = (
        now - snapshot["updated"] if snapshot and isinstance(snapshot.get("updated"), (int, float)) else None
    )
    info: dict[str, Any] = {
        "running": False,
        "host": None,
        "pid": None,
        "nameserver": None,
        "started": None,
        "state": snapshot.get("state") if snapshot else None,
        "heartbeat_age": heartbeat_age,
        "workers": None,
        "workers_from": None,
        "note": None,
    }
    if address is None:
        if snapshot and snapshot.get("state") in ("completed", "stopped") and heartbeat_age is not None:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(snapshot["updated"]))
            info["note"] = f"not running ({snapshot['state']} at {when}, {format_duration(heartbeat_age)} ago)"
        else:
            info["note"] = "not running (no master has published its address)"
        return info
    info.update(
        host=address.master_host,
        pid=address.master_pid,
        nameserver=f"{address.host}:{address.port}",
        started=address.started,
    )
    if address.master_host == socket.gethostname() and not _pid_alive(address.master_pid):
        info["note"] = f"not running: pid {address.master_pid} on {address.master_host} is gone (killed?)"
        return info
    workers, why = _ask_nameserver(study_dir, address)
    if workers is not None:
        info.update(running=True, workers=workers, workers_from="nameserver")
        return info
    fresh = heartbeat_age is not None and heartbeat_age < STALE_AFTER and snapshot.get("run_id") == address.run_id
    if fresh:
        info.update(running=True, note=f"nameserver not reachable from here ({why}); using the master's snapshot")
    else:
        info["note"] = f"not running or not reachable: {why}"
    return info


# -- jobs and timing --------------------------------------------------------------------------------


def time_per_budget(results: StudyResults) -> list[dict[str, Any]]:
    """Count, median, mean and total seconds per evaluation on each budget (from the journal)."""
    durations: dict[float, list[float]] = {}
    for evaluation in results.evaluations:
        if evaluation.started is None or evaluation.finished is None:
            continue
        durations.setdefault(evaluation.budget, []).append(max(0.0, evaluation.finished - evaluation.started))
    return [
        {
            "budget": budget,
            "evaluations": len(seconds),
            "median_s": statistics.median(seconds),
            "mean_s": statistics.fmean(seconds),
            "total_s": sum(seconds),
        }
        for budget, seconds in sorted(durations.items())
    ]


@dataclass
class StudyStatus:
    """Everything ``bohb-runner status`` shows; ``to_json`` is its ``--json`` form."""

    study_dir: Path
    settings_line: str
    settings: dict[str, Any]
    slurm: dict[str, Any]
    master: dict[str, Any]
    jobs: dict[str, Any]
    running: list[dict[str, Any]]
    incumbent: dict[str, Any] | None
    time_per_budget: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {
            "study_dir": str(self.study_dir),
            "settings": self.settings,
            "summary": self.settings_line,
            "slurm": self.slurm,
            "master": self.master,
            "jobs": self.jobs,
            "running": self.running,
            "incumbent": self.incumbent,
            "time_per_budget": self.time_per_budget,
        }


def collect_status(study_dir: Path) -> StudyStatus:
    """Read everything the study directory says about the study (and ask its nameserver)."""
    study_dir = Path(study_dir)
    results = StudyResults.load(study_dir)
    settings = results.settings
    schedule = schedule_of(settings)
    master = master_status(study_dir)
    snapshot = read_status_snapshot(study_dir)
    live_snapshot = bool(master["running"] and snapshot and snapshot.get("state") in ("starting", "running"))
    if master["running"] and master["workers"] is None and live_snapshot:
        master["workers"] = [w["name"] for w in snapshot.get("workers", [])]
        master["workers_from"] = "snapshot"
    running = list(snapshot.get("running", [])) if live_snapshot else []
    now = time.time()
    for job in running:
        started = job.get("started")
        job["seconds"] = now - started if isinstance(started, (int, float)) else None
    done = len(results.evaluations)
    jobs = {
        "done": done,
        "failed": len(results.failed),
        "planned": schedule.total_jobs(settings.optimizer, settings.iterations),
        "running": len(running),
        "queued": snapshot.get("queued", 0) if live_snapshot else 0,
        "iteration": snapshot.get("iteration") if live_snapshot else None,
        "iterations": settings.iterations,
        # both in epochs, every training counted (--repeats R: R per evaluation)
        "budget_used": results.budget_used,
        "budget_planned": planned_epochs(settings),
    }
    summary = results.summary()
    return StudyStatus(
        study_dir=study_dir,
        settings_line=describe_study(study_dir, settings),
        settings={
            "run_id": settings.run_id,
            "optimizer": settings.optimizer,
            "min_budget": settings.min_budget,
            "max_budget": settings.max_budget,
            "eta": settings.eta,
            "iterations": settings.iterations,
            "worker": settings.worker,
        },
        slurm=slurm_status(study_dir),
        master=master,
        jobs=jobs,
        running=running,
        incumbent=summary["incumbent"],
        time_per_budget=time_per_budget(results),
    )
