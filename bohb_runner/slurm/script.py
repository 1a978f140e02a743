"""The sbatch scripts of a study: plain text a user could have written, filled from launch/'s templates.

As with submitit, the script is the interface: it is kept in the study directory
(``DIR/slurm/study.sbatch``, ``DIR/slurm/workers-N.sbatch``), every SLURM option is one
``#SBATCH`` line, and a user can read it, edit it and ``sbatch`` it by hand. This module only
produces text; submitting is :mod:`bohb_runner.slurm.submit`'s job.
"""

from __future__ import annotations

import os
import re
import shlex
import string
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bohb_runner.errors import UserError
from bohb_runner.store.files import write_atomically

SLURM_DIR = "slurm"
STUDY_SCRIPT = "study.sbatch"
TEMPLATE_DIR_NAME = "launch"

# Options that have an option of their own in `bohb-runner slurm`, so that --extra-sbatch cannot
# contradict the layout the script was written for.
_OWN_OPTIONS = {
    "nodes": "--nodes",
    "ntasks": "--nodes and --workers-per-gpu/--workers-per-node",
    "ntasks-per-node": "--workers-per-gpu/--workers-per-node",
    "gpus-per-node": "--gpus-per-node",
    "cpus-per-task": "--cpus-per-task",
    "partition": "--partition",
    "account": "--account",
    "time": "--time",
    "signal": "--signal-margin",
    "output": "(the log goes to DIR/logs/)",
    "error": "(the log goes to DIR/logs/)",
    "array": "--count",
    "job-name": "--job-name",
}


class ScriptTemplate(string.Template):
    """``@{name}`` placeholders (lower case), so that bash's own ``$VAR`` and ``${VAR}`` stay as written."""

    delimiter = "@"
    flags = 0
    pattern = r"""
    @(?:
      (?P<escaped>@) |
      \{(?P<braced>[a-z_][a-z0-9_]*)\} |
      (?P<named>(?!)) |
      (?P<invalid>(?!))
    )
    """


@dataclass
class WorkerLayout:
    """Where the workers of a study job run: N nodes, G GPUs and K workers per GPU on each.

    With G = 0 (CPU-only partitions) each node runs ``workers_per_node`` workers instead.
    Every worker is one SLURM task with ``threads`` CPUs (``--cpus-per-task``).
    """

    nodes: int = 1
    gpus_per_node: int = 0
    workers_per_gpu: int = 1
    workers_per_node: int = 1
    threads: int = 1

    @property
    def tasks_per_node(self) -> int:
        if self.gpus_per_node > 0:
            return self.gpus_per_node * self.workers_per_gpu
        return self.workers_per_node

    @property
    def worker_count(self) -> int:
        return self.nodes * self.tasks_per_node

    def validate(self) -> None:
        for option, value, least in (
            ("--nodes", self.nodes, 1),
            ("--gpus-per-node", self.gpus_per_node, 0),
            ("--workers-per-gpu", self.workers_per_gpu, 1),
            ("--workers-per-node", self.workers_per_node, 1),
            ("--cpus-per-task", self.threads, 1),
        ):
            if value < least:
                raise UserError(f"{option} must be at least {least}, got {value}")

    def describe(self) -> str:
        nodes = f"{self.nodes} node{'s' if self.nodes != 1 else ''}"
        if self.gpus_per_node > 0:
            per = f"{self.gpus_per_node} GPU{'s' if self.gpus_per_node != 1 else ''} x {self.workers_per_gpu} workers"
        else:
            per = f"{self.workers_per_node} CPU worker{'s' if self.workers_per_node != 1 else ''}"
        return (
            f"{nodes} x {per} = {self.worker_count} workers, {self.threads} CPU{'s' if self.threads != 1 else ''} each"
        )


@dataclass
class JobOptions:
    """What SLURM is asked for, beyond the layout: each field becomes one ``#SBATCH`` line."""

    job_name: str
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time: str | None = None
    signal_margin: int = 120
    requeue: bool = True
    extra_sbatch: list[str] = field(default_factory=list)

    def validate(self) -> None:
        for option, value in (
            ("--job-name", self.job_name),
            ("--partition", self.partition),
            ("--account", self.account),
            ("--qos", self.qos),
            ("--time", self.time),
        ):
            if value is not None and not re.fullmatch(r"[\w.:,+=@/-]+", value):
                raise UserError(f"{option} {value!r}: not a SLURM {option[2:]} (letters, digits and .:,+=@/- only)")
        if self.signal_margin < 0:
            raise UserError(f"--signal-margin must not be negative, got {self.signal_margin}")
        limit = parse_time_limit(self.time) if self.time is not None else None
        if limit is not None and self.signal_margin and self.signal_margin >= limit:
            raise UserError(
                f"--signal-margin {self.signal_margin} s leaves no time to run within --time {self.time} ({limit} s)"
            )
        self.extra_sbatch = [normalise_extra_sbatch(item) for item in self.extra_sbatch]


@dataclass
class JobEnvironment:
    """How the job finds bohb-runner: a Python executable, optional setup lines, an interface."""

    python: str = field(default_factory=lambda: sys.executable)
    env_setup: list[str] = field(default_factory=list)
    interface: str = "auto"
    workdir: str = field(default_factory=os.getcwd)

    def validate(self) -> None:
        if not re.fullmatch(r"[\w.:-]+", self.interface):
            raise UserError(f"--interface {self.interface!r}: not an interface name (such as ib0, eth0, lo or auto)")
        for line in self.env_setup:
            if "\n" in line or not line.strip():
                raise UserError(f"--env-setup {line!r}: give one non-empty shell line per --env-setup")
        if not self.env_setup and not Path(self.python).is_file():
            raise UserError(f"--python {self.python}: no such file (give the cluster's Python, or --env-setup)")


def parse_time_limit(text: str) -> int | None:
    """Seconds in a SLURM time limit (``M``, ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M``, ``D-H:M:S``).

    None for ``UNLIMITED``/``INFINITE``. The formats are sbatch's own, so that ``--time`` means
    what it means to sbatch, and a signal margin longer than the limit is refused here.
    """
    if text.upper() in ("UNLIMITED", "INFINITE"):
        return None
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text)
    if not match:
        raise UserError(f"--time {text!r}: not a SLURM time limit (MM, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS)")
    days, first, second, third = match.groups()
    numbers = [int(x) for x in (first, second, third) if x is not None]
    if days is not None:
        hours, minutes, seconds = (numbers + [0, 0])[:3]
    elif len(numbers) == 1:
        hours, minutes, seconds = 0, numbers[0], 0
    elif len(numbers) == 2:
        hours, minutes, seconds = 0, numbers[0], numbers[1]
    else:
        hours, minutes, seconds = numbers
    total = ((int(days or 0) * 24 + hours) * 60 + minutes) * 60 + seconds
    if total <= 0:
        raise UserError(f"--time {text!r}: the time limit must be positive")
    return total


def normalise_extra_sbatch(item: str) -> str:
    """``mem=16G`` or ``--mem=16G`` -> ``--mem=16G``; refuses options the layout owns."""
    text = item.strip()
    if not text or "\n" in text or "#" in text:
        raise UserError(f"--extra-sbatch {item!r}: give one sbatch option such as --mem=16G")
    if not text.startswith("-"):
        text = "--" + text
    name = re.split(r"[= ]", text.lstrip("-"), maxsplit=1)[0]
    if text.startswith("--") and name in _OWN_OPTIONS:
        raise UserError(f"--extra-sbatch {item!r}: use {_OWN_OPTIONS[name]} instead")
    return text


def template_dir() -> Path:
    """``launch/`` of a checkout, or its installed copy under ``share/bohb-runner/launch``."""
    for candidate in (
        Path(__file__).resolve().parents[2] / TEMPLATE_DIR_NAME,
        Path(sys.prefix) / "share" / "bohb-runner" / TEMPLATE_DIR_NAME,
    ):
        if (candidate / "study.sbatch.in").is_file():
            return candidate
    raise UserError("cannot find the sbatch templates (launch/study.sbatch.in): reinstall bohb-runner")


def _fill(template_name: str, values: dict[str, str]) -> str:
    text = (template_dir() / template_name).read_text()
    try:
        return ScriptTemplate(text).substitute(values)
    except KeyError as exc:
        raise UserError(f"{template_dir() / template_name}: unknown placeholder @{{{exc.args[0]}}}") from None


def _sbatch_lines(options: list[tuple[str, str | None]], extra: list[str]) -> str:
    lines = [f"#SBATCH --{name}" + (f"={value}" if value is not None else "") for name, value in options]
    lines += [f"#SBATCH {normalise_extra_sbatch(item)}" for item in extra]
    return "\n".join(lines)


def _common_options(job: JobOptions, env: JobEnvironment) -> list[tuple[str, str | None]]:
    options: list[tuple[str, str | None]] = [("job-name", job.job_name)]
    for name in ("partition", "account", "qos", "time"):
        value = getattr(job, name)
        if value is not None:
            options.append((name, value))
    options.append(("chdir", env.workdir))
    return options


def _env_setup(env: JobEnvironment) -> str:
    if not env.env_setup:
        return ""
    return "\n# environment (--env-setup)\n" + "\n".join(env.env_setup) + "\n"


def render_study_script(
    study_dir: Path,
    layout: WorkerLayout,
    job: JobOptions,
    env: JobEnvironment,
    *,
    min_workers: int = 1,
    ping_interval: float = 10.0,
    wait_for_master: float = 600.0,
    worker_grace: int = 10,
) -> str:
    """The study job: the master in the batch script on the first node, the workers as one srun step."""
    study_dir = Path(study_dir).resolve()
    options = _common_options(job, env)
    options[1:1] = [
        ("nodes", str(layout.nodes)),
        ("ntasks-per-node", str(layout.tasks_per_node)),
        ("cpus-per-task", str(layout.threads)),
    ]
    if layout.gpus_per_node > 0:
        options.insert(4, ("gpus-per-node", str(layout.gpus_per_node)))
    if job.signal_margin > 0:
        options.append(("signal", f"B:USR1@{job.signal_margin}"))
    options.append(("requeue" if job.requeue else "no-requeue", None))
    options += [("open-mode", "append"), ("output", str(study_dir / "logs" / "slurm-%j.out"))]
    master_options = f"--min-workers {min_workers} --ping-interval {ping_interval:g}"
    return _fill(
        "study.sbatch.in",
        {
            "study_dir": str(study_dir),
            "study_dir_quoted": shlex.quote(str(study_dir)),
            "sbatch_lines": _sbatch_lines(options, job.extra_sbatch),
            "env_setup": _env_setup(env),
            "python": shlex.quote(env.python),
            "interface": shlex.quote(env.interface),
            "gpus_per_node": str(layout.gpus_per_node),
            "workers_per_gpu": str(layout.workers_per_gpu),
            "threads": str(layout.threads),
            "wait_for_master": f"{wait_for_master:g}",
            "worker_count": str(layout.worker_count),
            "nodes": str(layout.nodes),
            "tasks_per_node": str(layout.tasks_per_node),
            "master_options": master_options,
            "signal_margin": str(job.signal_margin),
            "worker_grace": str(worker_grace),
            "requeue": "1" if job.requeue else "0",
        },
    )


def render_workers_script(
    study_dir: Path,
    count: int,
    job: JobOptions,
    env: JobEnvironment,
    *,
    gpus_per_worker: int = 0,
    threads: int = 1,
    wait_for_master: float = 1800.0,
) -> str:
    """A job array of ``count`` single-worker tasks that join the study's master."""
    if count < 1:
        raise UserError(f"--count must be at least 1, got {count}")
    if gpus_per_worker < 0:
        raise UserError(f"--gpus-per-worker must not be negative, got {gpus_per_worker}")
    if threads < 1:
        raise UserError(f"--cpus-per-task must be at least 1, got {threads}")
    study_dir = Path(study_dir).resolve()
    options = _common_options(job, env)
    options[1:1] = [("array", f"0-{count - 1}"), ("ntasks", "1"), ("cpus-per-task", str(threads))]
    if gpus_per_worker > 0:
        options.insert(4, ("gpus-per-task", str(gpus_per_worker)))
    options += [("open-mode", "append"), ("output", str(study_dir / "logs" / "slurm-%A_%a.out"))]
    return _fill(
        "workers.sbatch.in",
        {
            "study_dir": str(study_dir),
            "study_dir_quoted": shlex.quote(str(study_dir)),
            "count": str(count),
            "sbatch_lines": _sbatch_lines(options, job.extra_sbatch),
            "env_setup": _env_setup(env),
            "python": shlex.quote(env.python),
            "interface": shlex.quote(env.interface),
            "threads": str(threads),
            "device": "cuda:0" if gpus_per_worker > 0 else "cpu",
            "wait_for_master": f"{wait_for_master:g}",
        },
    )


def write_script(path: Path, text: str) -> Path:
    """Write a script atomically (a job never reads half of one), executable like a hand-written one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomically(path, text, mode=0o755)


def next_workers_script(study_dir: Path) -> Path:
    """``DIR/slurm/workers-N.sbatch`` with the first N not taken: each add-workers keeps its script."""
    directory = Path(study_dir) / SLURM_DIR
    n = 1
    while (directory / f"workers-{n}.sbatch").exists():
        n += 1
    return directory / f"workers-{n}.sbatch"
