"""``bohb-runner status DIR`` in words: a few lines per section of a collected :class:`StudyStatus`."""

from __future__ import annotations

import time
from typing import Any

from bohb_runner.status.collect import StudyStatus
from bohb_runner.store.describe import format_budget, format_duration


def _ago(seconds: float | None) -> str:
    return "?" if seconds is None else format_duration(seconds)


def format_status(status: StudyStatus) -> str:
    """The human-readable report: the settings line, then master, SLURM, workers, jobs,
    incumbent and time per budget, a few lines each."""
    return "\n".join(
        [
            status.settings_line,
            master_line(status),
            *slurm_lines(status.slurm),
            workers_line(status.master),
            *jobs_lines(status),
            incumbent_line(status.incumbent),
            *time_per_budget_lines(status.time_per_budget),
        ]
    )


def master_line(status: StudyStatus) -> str:
    master = status.master
    if not master["running"]:
        return f"master:    {master['note'] or 'not running'}"
    text = f"running on {master['host']} (pid {master['pid']}), nameserver {master['nameserver']}"
    if master["started"]:
        text += f", up {_ago(time.time() - master['started'])}"
    if status.jobs["iteration"]:
        text += f", iteration {status.jobs['iteration']}/{status.jobs['iterations']}"
    if master["note"]:
        text += f"; {master['note']}"
    return f"master:    {text}"


def slurm_lines(slurm: dict[str, Any]) -> list[str]:
    if not slurm["jobs"]:
        return [f"slurm:     {slurm['note']}" + ("" if slurm["available"] else " (SLURM is not available here)")]
    lines = [f"slurm:     {slurm['note']}"] if slurm["note"] else []
    for job in slurm["jobs"]:
        submitted = job.get("submitted")
        when = (
            f", submitted {time.strftime('%Y-%m-%d %H:%M', time.localtime(submitted))}"
            if isinstance(submitted, (int, float))
            else ""
        )
        lines.append(f"slurm:     job {job['job_id']} ({job.get('role', '?')}): {job.get('state') or 'unknown'}{when}")
    return lines


def workers_line(master: dict[str, Any]) -> str:
    workers = master["workers"]
    if workers is None:
        return "workers:   unknown (no master running)" if not master["running"] else "workers:   unknown"
    shown = ", ".join(workers[:8]) + (f", ... ({len(workers) - 8} more)" if len(workers) > 8 else "")
    return f"workers:   {len(workers)} live" + (f": {shown}" if workers else "")


def jobs_lines(status: StudyStatus) -> list[str]:
    """Jobs done of planned and epochs spent of planned (every training counted), then one line
    per running job."""
    jobs = status.jobs
    text = f"done {jobs['done']}/{jobs['planned']}"
    if jobs["failed"]:
        text += f" ({jobs['failed']} failed)"
    text += f", running {jobs['running']}"
    if jobs["queued"]:
        text += f", queued {jobs['queued']}"
    text += f"; {jobs['budget_used']:g} of {jobs['budget_planned']:g} epochs"
    lines = [f"jobs:      {text}"]
    for job in status.running:
        config_id = tuple(job.get("config_id") or ())
        budget = job.get("budget")
        budget_text = format_budget(budget) if isinstance(budget, (int, float)) else "?"
        lines.append(
            f"  running  {config_id} budget {budget_text} on {job.get('worker')} for {_ago(job.get('seconds'))}"
        )
    return lines


def incumbent_line(incumbent: dict[str, Any] | None) -> str:
    if incumbent is None:
        return "incumbent: none yet"
    test = incumbent.get("test_error")
    test_text = f", test error {test:.4f}" if test is not None else ""
    return (
        f"incumbent: {tuple(incumbent['config_id'])} on budget {format_budget(incumbent['budget'])}: "
        f"validation error {incumbent['loss']:.4f}{test_text}"
    )


def time_per_budget_lines(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    lines = [
        "time per budget (seconds per evaluation):",
        f"  {'budget':>8} {'evaluations':>11} {'median':>9} {'mean':>9} {'total':>10}",
    ]
    for row in rows:
        lines.append(
            f"  {format_budget(row['budget']):>8} {row['evaluations']:>11} {row['median_s']:>9.2f}"
            f" {row['mean_s']:>9.2f} {row['total_s']:>10.1f}"
        )
    return lines
