"""``bohb-runner slurm submit`` and ``bohb-runner slurm add-workers``: a study as SLURM jobs.

``submit`` creates (or checks, when resuming) the study before anything reaches SLURM, so a bad
space, budget, worker or data directory is a one-line error at once rather than in a job log
hours later; then it writes ``DIR/slurm/study.sbatch`` and submits it. Running the same command
again resumes the study in a new job.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from bohb_runner.errors import StudyError, UserError
from bohb_runner.slurm.jobs import active_study_jobs, record_job
from bohb_runner.slurm.script import (
    SLURM_DIR,
    STUDY_SCRIPT,
    JobEnvironment,
    JobOptions,
    WorkerLayout,
    next_workers_script,
    render_study_script,
    render_workers_script,
    write_script,
)
from bohb_runner.slurm.submit import load_launch, require_sbatch, save_launch, sbatch
from bohb_runner.store.settings import StudySettings, read_settings


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``slurm submit`` and ``slurm add-workers`` to ``bohb-runner``."""
    slurm = commands.add_parser("slurm", help="run a study as SLURM jobs (submit, add-workers)")
    actions = slurm.add_subparsers(dest="slurm_command", required=True, metavar="ACTION")

    from bohb_runner.cli.options import add_study_options, add_worker_pool_options

    submit = actions.add_parser(
        "submit",
        help="create or resume a study and submit it as one SLURM job (master + workers)",
        description="Write DIR/slurm/study.sbatch (master and nameserver once, the workers as one srun step) "
        "and submit it with sbatch. The same command again resumes the study.",
    )
    add_study_options(submit)
    layout = submit.add_argument_group("layout")
    layout.add_argument("--nodes", type=int, default=1, help="nodes for the workers (default: 1)")
    layout.add_argument("--gpus-per-node", type=int, default=0, help="GPUs per node; 0 for CPU-only (default: 0)")
    layout.add_argument("--workers-per-gpu", type=int, default=None, help="workers sharing each GPU (default: 1)")
    layout.add_argument(
        "--workers-per-node", type=int, default=None, help="workers per node when --gpus-per-node is 0 (default: 1)"
    )
    layout.add_argument("--cpus-per-task", type=int, default=1, help="CPUs (training threads) per worker (default: 1)")
    add_worker_pool_options(layout)
    _add_job_options(submit)
    submit.add_argument(
        "--signal-margin",
        type=int,
        default=120,
        help="seconds before the time limit at which the master stops and the job requeues itself (default: 120; "
        "0: no signal)",
    )
    submit.add_argument(
        "--no-requeue", action="store_true", help="never requeue: resubmit the same command to resume instead"
    )
    submit.set_defaults(handler=_cmd_submit)

    add = actions.add_parser(
        "add-workers",
        help="submit more workers for a study as a job array",
        description="Write DIR/slurm/workers-N.sbatch (a job array, one worker per task) and submit it. "
        "SLURM options default to the study's last `slurm submit`.",
    )
    add.add_argument("study_dir", type=Path, metavar="DIR", help="the study directory")
    add.add_argument("--count", type=int, required=True, help="workers to add (array tasks)")
    add.add_argument(
        "--gpus-per-worker",
        type=int,
        default=None,
        help="GPUs per worker (default: 1 if the study's job used GPUs, else 0)",
    )
    add.add_argument("--cpus-per-task", type=int, default=None, help="CPUs per worker (default: the study job's)")
    add.add_argument(
        "--wait-for-master", type=float, default=1800.0, help="seconds a worker waits for a master (default: 1800)"
    )
    _add_job_options(add)
    add.set_defaults(handler=_cmd_add_workers)


def _add_job_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("SLURM job")
    group.add_argument("--partition", help="#SBATCH --partition")
    group.add_argument("--time", help="#SBATCH --time, e.g. 4:00:00 or 1-00:00:00")
    group.add_argument("--account", help="#SBATCH --account")
    group.add_argument("--qos", help="#SBATCH --qos")
    group.add_argument("--job-name", help="#SBATCH --job-name (default: bohb-<study directory name>)")
    group.add_argument(
        "--extra-sbatch",
        action="append",
        default=None,
        metavar="OPTION",
        help="one more #SBATCH line, e.g. --extra-sbatch=--mem=16G or --extra-sbatch constraint=a100 (repeatable)",
    )
    group.add_argument(
        "--python", default=None, help="Python on the compute nodes (default: this one, " + sys.executable + ")"
    )
    group.add_argument(
        "--env-setup",
        action="append",
        default=None,
        metavar="LINE",
        help="shell line run before bohb-runner, e.g. 'module load cuda' (repeatable); with it, --python defaults to python3",
    )
    group.add_argument(
        "--interface", default=None, help="network interface of master and workers: ib0, eth0, ... or auto (default)"
    )
    group.add_argument("--dry-run", action="store_true", help="write the script, do not submit it")
    group.add_argument("--parsable", action="store_true", help="print only the job id")


def _environment(args: argparse.Namespace, stored: dict) -> JobEnvironment:
    env_setup = args.env_setup if args.env_setup is not None else stored.get("env_setup", [])
    python = args.python or stored.get("python") or ("python3" if args.env_setup else sys.executable)
    env = JobEnvironment(
        python=python,
        env_setup=list(env_setup),
        interface=args.interface or stored.get("interface", "auto"),
    )
    env.validate()
    return env


def _job_options(
    args: argparse.Namespace, study_dir: Path, stored: dict, *, signal_margin: int = 0, requeue: bool = False
) -> JobOptions:
    def pick(name: str) -> str | None:
        value = getattr(args, name)
        return value if value is not None else stored.get(name)

    job = JobOptions(
        job_name=args.job_name or stored.get("job_name") or f"bohb-{study_dir.resolve().name}",
        partition=pick("partition"),
        account=pick("account"),
        qos=pick("qos"),
        time=pick("time"),
        signal_margin=signal_margin,
        requeue=requeue,
        extra_sbatch=list(args.extra_sbatch if args.extra_sbatch is not None else stored.get("extra_sbatch", [])),
    )
    job.validate()
    return job


def _layout(args: argparse.Namespace) -> WorkerLayout:
    if args.gpus_per_node > 0 and args.workers_per_node is not None:
        raise UserError("--workers-per-node is for CPU-only jobs (--gpus-per-node 0); with GPUs use --workers-per-gpu")
    if args.gpus_per_node == 0 and args.workers_per_gpu is not None:
        raise UserError("--workers-per-gpu needs --gpus-per-node; for CPU-only jobs use --workers-per-node")
    layout = WorkerLayout(
        nodes=args.nodes,
        gpus_per_node=args.gpus_per_node,
        workers_per_gpu=args.workers_per_gpu or 1,
        workers_per_node=args.workers_per_node or 1,
        threads=args.cpus_per_task,
    )
    layout.validate()
    if args.min_workers < 1:
        raise UserError(f"--min-workers must be at least 1, got {args.min_workers}")
    if args.min_workers > layout.worker_count:
        raise UserError(f"--min-workers {args.min_workers} is more than the job's {layout.worker_count} workers")
    return layout


def _cmd_submit(args: argparse.Namespace) -> int:
    from bohb_runner.cli.options import requested_settings
    from bohb_runner.master.create import open_study
    from bohb_runner.store.describe import describe_study
    from bohb_runner.store.lock import StudyLock

    study_dir: Path = args.study_dir
    # everything that can be checked without touching the study, first
    layout = _layout(args)
    job = _job_options(args, study_dir, {}, signal_margin=args.signal_margin, requeue=not args.no_requeue)
    env = _environment(args, {})
    if args.overwrite and not args.fresh:
        raise UserError("--overwrite only goes with --fresh")
    if not args.dry_run:
        require_sbatch()
        active = active_study_jobs(study_dir)
        if active:
            job_id, state = next(iter(active.items()))
            raise StudyError(
                f"{study_dir}: SLURM job {job_id} ({state}) already runs this study; "
                f"wait for it, `scancel {job_id}`, or grow it with `bohb-runner slurm add-workers {study_dir} --count M`"
            )
    settings, resumed = open_study(study_dir, requested_settings(args), fresh=args.fresh, overwrite=args.overwrite)
    StudyLock(study_dir).release()  # the master in the job takes it
    print(describe_study(study_dir, settings, resumed), file=sys.stderr)
    script = write_script(
        study_dir / SLURM_DIR / STUDY_SCRIPT,
        render_study_script(
            study_dir, layout, job, env, min_workers=args.min_workers, ping_interval=args.ping_interval
        ),
    )
    save_launch(study_dir, layout, job, env)
    if args.dry_run:
        print(f"wrote {script} ({layout.describe()}); dry run, not submitted: `sbatch {script}` submits it")
        return 0
    return _submit(
        study_dir,
        script,
        "study",
        args.parsable,
        lambda job_id: (
            f"submitted job {job_id}: {layout.describe()}; script {script}; "
            f"log {study_dir / 'logs' / f'slurm-{job_id}.out'}"
        ),
    )


def _cmd_add_workers(args: argparse.Namespace) -> int:
    study_dir: Path = args.study_dir
    settings = read_settings(study_dir)  # a one-line error unless DIR is a study
    if not args.dry_run:
        require_sbatch()
        _refuse_finished_study(study_dir, settings)
    launch = load_launch(study_dir)
    stored_layout = launch.get("layout", {})
    gpus = args.gpus_per_worker
    if gpus is None:
        gpus = 1 if stored_layout.get("gpus_per_node", 0) > 0 else 0
    threads = args.cpus_per_task if args.cpus_per_task is not None else stored_layout.get("threads", 1)
    job_defaults = dict(launch.get("job", {}))
    job_defaults["job_name"] = job_defaults.get("job_name", f"bohb-{study_dir.resolve().name}") + "-workers"
    job = _job_options(args, study_dir, job_defaults)
    env = _environment(args, launch.get("environment", {}))
    script = next_workers_script(study_dir)
    text = render_workers_script(
        study_dir, args.count, job, env, gpus_per_worker=gpus, threads=threads, wait_for_master=args.wait_for_master
    )
    write_script(script, text)
    if args.dry_run:
        print(f"wrote {script} ({args.count} workers); dry run, not submitted: `sbatch {script}` submits it")
        return 0
    if not active_study_jobs(study_dir) and not (study_dir / "nameserver.json").exists():
        print(
            f"note: no study job of {study_dir} is queued or running; the workers wait up to "
            f"{args.wait_for_master:g} s for a master",
            file=sys.stderr,
        )
    return _submit(
        study_dir,
        script,
        "workers",
        args.parsable,
        lambda job_id: (
            f"submitted job array {job_id}: {args.count} workers for {study_dir}; script {script}; "
            f"logs {study_dir / 'logs' / f'slurm-{job_id}_*.out'}"
        ),
    )


def _submit(study_dir: Path, script: Path, role: str, parsable: bool, describe: Callable[[str], str]) -> int:
    """Submit ``script``, record the job in the study (for `status` and later submissions) and say so."""
    job_id = sbatch(script)
    record_job(study_dir, job_id, role, script)
    print(job_id if parsable else describe(job_id))
    return 0


def _refuse_finished_study(study_dir: Path, settings: StudySettings) -> None:
    """Workers for a finished study would hold their nodes (and GPUs) waiting for a master."""
    from bohb_runner.store.results import StudyResults
    from bohb_runner.store.schedule import schedule_of

    planned = schedule_of(settings).total_jobs(settings.optimizer, settings.iterations)
    done = {(tuple(e.config_id), e.budget) for e in StudyResults.load(study_dir).evaluations}
    if len(done) >= planned and not active_study_jobs(study_dir):
        raise StudyError(
            f"{study_dir}: the study is finished ({len(done)} of {planned} evaluations); more iterations: "
            f"`bohb-runner slurm submit --study-dir {study_dir} --iterations N`"
        )
