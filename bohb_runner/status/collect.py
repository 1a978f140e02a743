"""``bohb-runner status DIR``: where a study stands, from any node that sees its directory.

Everything comes from the study directory, so it works on a running study, a finished one and
one whose master was killed: the settings and journal (jobs done, incumbent, time per budget),
``slurm/jobs.jsonl`` (written when SLURM jobs are submitted; their states come from ``squeue``),
``nameserver.json`` and ``status.json`` (written by a running master: its address, its running
jobs and workers, and a heartbeat). Live workers are asked of the study's nameserver with the
study's secret; without a reachable master the last snapshot is shown, marked as such.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bohb_runner.errors import UserError
from bohb_runner.store.describe import describe_study, format_budget, format_duration
from bohb_runner.store.results import StudyResults
from bohb_runner.store.status_file import PUBLISH_INTERVAL, read_status_snapshot, short_worker_name
from bohb_runner.wire.discovery import NameserverAddress, read_nameserver_address

SLURM_JOBS_FILE = Path("slurm") / "jobs.jsonl"
# a snapshot older than this many publish intervals means its master stopped updating it
STALE_AFTER = 5 * PUBLISH_INTERVAL
NAMESERVER_TIMEOUT = 3.0
SLURM_TIMEOUT = 15.0


# -- SLURM ------------------------------------------------------------------------------------------


def read_slurm_jobs(study_dir: Path) -> list[dict[str, Any]]:
    """The SLURM jobs submitted for this study, oldest first (lines that do not parse are skipped)."""
    path = Path(study_dir) / SLURM_JOBS_FILE
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    jobs = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("job_id") is not None:
            record["job_id"] = str(record["job_id"])
            jobs.append(record)
    return jobs


def _run_slurm(command: list[str]) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=SLURM_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired):
        return None


def _squeue(job_ids: list[str]) -> dict[str, list[dict[str, str]]] | None:
    """Queue entries (array tasks one each) per submitted job id; None when squeue fails."""
    found: dict[str, list[dict[str, str]]] = {job_id: [] for job_id in job_ids}
    fmt = "%i|%T|%M|%R"
    result = _run_slurm(["squeue", "-h", "-o", fmt, "-j", ",".join(job_ids)])
    if result is not None and result.returncode != 0 and len(job_ids) > 1:
        # squeue refuses the whole list when one id has left the queue: ask for each on its own
        rows = []
        for job_id in job_ids:
            one = _run_slurm(["squeue", "-h", "-o", fmt, "-j", job_id])
            if one is None:
                return None
            rows.extend(one.stdout.splitlines() if one.returncode == 0 else [])
    elif result is None:
        return None
    else:
        rows = result.stdout.splitlines() if result.returncode == 0 else []
    for row in rows:
        parts = row.strip().split("|")
        if len(parts) < 4:
            continue
        task_id, state, elapsed, where = parts[:4]
        base = task_id.split("_", 1)[0]
        if base in found:
            found[base].append({"task": task_id, "state": state, "elapsed": elapsed, "where": where})
    return found


def _sacct(job_ids: list[str]) -> dict[str, str]:
    """Final states of jobs that left the queue, where SLURM keeps accounting (else nothing)."""
    result = _run_slurm(["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", ",".join(job_ids)])
    states: dict[str, str] = {}
    if result is None or result.returncode != 0:
        return states
    for row in result.stdout.splitlines():
        parts = row.strip().split("|")
        if len(parts) >= 2:
            base = parts[0].split("_", 1)[0]
            states.setdefault(base, parts[1].split()[0] if parts[1] else "?")
    return states


def slurm_status(study_dir: Path) -> dict[str, Any]:
    """The study's SLURM jobs with their states, or why there are none to show."""
    jobs = read_slurm_jobs(study_dir)
    if not jobs:
        return {"available": shutil.which("squeue") is not None, "jobs": [], "note": "no SLURM jobs submitted"}
    if shutil.which("squeue") is None:
        return {
            "available": False,
            "jobs": [dict(job, state=None) for job in jobs],
            "note": "SLURM is not available here (no squeue)",
        }
    ids = [job["job_id"] for job in jobs]
    queue = _squeue(ids)
    if queue is None:
        return {"available": False, "jobs": [dict(job, state=None) for job in jobs], "note": "squeue did not answer"}
    gone = [job_id for job_id in ids if not queue.get(job_id)]
    finished = _sacct(gone) if gone else {}
    described = []
    for job in jobs:
        tasks = queue.get(job["job_id"], [])
        if tasks:
            counts: dict[str, int] = {}
            for task in tasks:
                counts[task["state"]] = counts.get(task["state"], 0) + 1
            state = ", ".join(f"{s} x{n}" if n > 1 else s for s, n in sorted(counts.items()))
        else:
            state = finished.get(job["job_id"], "finished (no longer queued)")
        described.append(dict(job, state=state, tasks=tasks))
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
    from bohb_runner.store.schedule import schedule_of

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
        "budget_used": results.budget_used,
        "budget_planned": schedule.total_cost(settings.optimizer, settings.iterations),
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


# -- text -----------------------------------------------------------------------------------------


def _ago(seconds: float | None) -> str:
    return "?" if seconds is None else format_duration(seconds)


def format_status(status: StudyStatus) -> str:
    """The human-readable report, a few lines per section."""
    lines = [status.settings_line]
    master = status.master
    if master["running"]:
        text = f"running on {master['host']} (pid {master['pid']}), nameserver {master['nameserver']}"
        if master["started"]:
            text += f", up {_ago(time.time() - master['started'])}"
        if status.jobs["iteration"]:
            text += f", iteration {status.jobs['iteration']}/{status.jobs['iterations']}"
        if master["note"]:
            text += f"; {master['note']}"
    else:
        text = master["note"] or "not running"
    lines.append(f"master:    {text}")

    slurm = status.slurm
    if not slurm["jobs"]:
        lines.append(f"slurm:     {slurm['note']}" + ("" if slurm["available"] else " (SLURM is not available here)"))
    else:
        if slurm["note"]:
            lines.append(f"slurm:     {slurm['note']}")
        for job in slurm["jobs"]:
            submitted = job.get("submitted")
            when = (
                f", submitted {time.strftime('%Y-%m-%d %H:%M', time.localtime(submitted))}"
                if isinstance(submitted, (int, float))
                else ""
            )
            lines.append(
                f"slurm:     job {job['job_id']} ({job.get('role', '?')}): {job.get('state') or 'unknown'}{when}"
            )

    workers = master["workers"]
    if workers is None:
        lines.append("workers:   unknown (no master running)" if not master["running"] else "workers:   unknown")
    else:
        shown = ", ".join(workers[:8]) + (f", ... ({len(workers) - 8} more)" if len(workers) > 8 else "")
        lines.append(f"workers:   {len(workers)} live" + (f": {shown}" if workers else ""))

    jobs = status.jobs
    text = f"done {jobs['done']}/{jobs['planned']}"
    if jobs["failed"]:
        text += f" ({jobs['failed']} failed)"
    text += f", running {jobs['running']}"
    if jobs["queued"]:
        text += f", queued {jobs['queued']}"
    text += f"; {jobs['budget_used']:g} of {jobs['budget_planned']:g} epochs"
    lines.append(f"jobs:      {text}")
    for job in status.running:
        config_id = tuple(job.get("config_id") or ())
        budget = job.get("budget")
        budget_text = format_budget(budget) if isinstance(budget, (int, float)) else "?"
        lines.append(
            f"  running  {config_id} budget {budget_text} on {job.get('worker')} for {_ago(job.get('seconds'))}"
        )

    inc = status.incumbent
    if inc is None:
        lines.append("incumbent: none yet")
    else:
        test = inc.get("test_error")
        test_text = f", test error {test:.4f}" if isinstance(test, (int, float)) else ""
        lines.append(
            f"incumbent: {tuple(inc['config_id'])} on budget {format_budget(inc['budget'])}: "
            f"validation error {inc['loss']:.4f}{test_text}"
        )

    if status.time_per_budget:
        lines.append("time per budget (seconds per evaluation):")
        lines.append(f"  {'budget':>8} {'evaluations':>11} {'median':>9} {'mean':>9} {'total':>10}")
        for row in status.time_per_budget:
            lines.append(
                f"  {format_budget(row['budget']):>8} {row['evaluations']:>11} {row['median_s']:>9.2f}"
                f" {row['mean_s']:>9.2f} {row['total_s']:>10.1f}"
            )
    return "\n".join(lines)
