"""The ``bohb-runner`` command: a thin layer of argument parsing over the Python API."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bohb_runner import __version__
from bohb_runner.errors import StopRequested, StudyFailed, UserError
from bohb_runner.export import FORMATS, export_hpbandster
from bohb_runner.journal import has_history
from bohb_runner.progress import format_budget, format_duration
from bohb_runner.results import StudyResults, test_error_of
from bohb_runner.settings import DEFAULT_WORKER, OPTIMIZERS, BOHBOptions, StudySettings

if TYPE_CHECKING:
    from bohb_runner.study import RunOptions

logger = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except UserError as exc:
        print(f"bohb-runner: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except StudyFailed as exc:
        where = f" (details in {Path(args.study_dir) / 'logs'})" if getattr(args, "study_dir", None) else ""
        print(f"bohb-runner: study failed: {exc}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(_interrupted_message(args, "interrupted"), file=sys.stderr)
        return 130
    except StopRequested:
        print(_interrupted_message(args, "stopped by SIGTERM"), file=sys.stderr)
        return 143


def _interrupted_message(args: argparse.Namespace, what: str) -> str:
    study_dir = getattr(args, "study_dir", None)
    if not study_dir:
        return f"bohb-runner: {what}"
    try:
        count = len(StudyResults.load(study_dir).evaluations)
    except UserError:
        return f"bohb-runner: {what}"
    return (
        f"bohb-runner: {what}; {count} finished evaluations are kept in {Path(study_dir) / 'results.jsonl'};"
        " run the same command again to resume"
    )


# -- parser ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bohb-runner",
        description="Multi-fidelity hyperparameter optimization (BOHB, Hyperband, random search) with hpbandster.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run a study: nameserver, master and local workers")
    add_study_options(run)
    add_master_options(run)
    run.add_argument("--workers", type=int, default=None, help="local worker processes to start (default: 1)")
    run.add_argument(
        "--workers-per-gpu",
        type=int,
        default=None,
        metavar="K",
        help="start K local workers on each visible GPU (K x GPUs in all) instead of --workers",
    )
    add_local_worker_options(run)
    run.set_defaults(handler=_cmd_run)

    master = commands.add_parser("master", help="run the nameserver and master only; start workers separately")
    add_study_options(master)
    add_master_options(master)
    master.set_defaults(handler=_cmd_master, workers=0, device="auto", threads=1)

    worker = commands.add_parser("worker", help="run one worker for a study (before or after its master)")
    worker.add_argument("--study-dir", required=True, type=Path, help="the study directory (shared with the master)")
    worker.add_argument("--worker", default=None, help="module:Class to run instead of the study's worker")
    worker.add_argument("--name", default=None, help="worker name in logs (default: host-pid)")
    worker.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    worker.add_argument("--threads", type=int, default=1, help="CPU threads for training (default: 1)")
    add_listen_options(worker, "this worker listens on")
    worker.add_argument(
        "--wait-for-master", type=float, default=600.0, help="seconds to wait for a master to appear (default: 600)"
    )
    worker.add_argument(
        "--log-file", default=None, help="log file (default: STUDY_DIR/logs/worker-NAME.log; - for stderr)"
    )
    worker.set_defaults(handler=_cmd_worker)

    best = commands.add_parser("best", help="print a study's incumbent")
    best.add_argument("study_dir", type=Path, metavar="DIR")
    best.add_argument("--json", action="store_true", help="print JSON")
    best.add_argument(
        "--retrain", type=Path, metavar="OUT.pt", help="retrain the incumbent at its budget, save weights"
    )
    best.add_argument("--device", default="cpu", help="device for --retrain (default: cpu, reproducible)")
    best.set_defaults(handler=_cmd_best)

    export = commands.add_parser("export", help="export a study for other tools")
    export.add_argument("study_dir", type=Path, metavar="DIR")
    export.add_argument("--format", choices=FORMATS, default="hpbandster")
    export.add_argument("out", type=Path, metavar="OUT", help="output directory")
    export.set_defaults(handler=_cmd_export)

    for module in COMMAND_MODULES:
        importlib.import_module(module).register(commands)
    return parser


# Commands that live in modules of their own, one concern each; every module has
# ``register(commands)``, which adds its sub-parsers with a ``handler``. The shared study
# options above (``add_study_options``, ``add_master_options``, ``requested_settings``) are
# theirs to reuse.
COMMAND_MODULES: tuple[str, ...] = (
    "bohb_runner.status_command",
    "bohb_runner.slurm.commands",
    "bohb_runner.analysis.commands",
    "bohb_runner.spaces_command",
)


# Study options: (flag, settings field, type, help). Their defaults are None so that a resumed
# study can tell the options a user gave from those left out; new studies take the defaults of
# StudySettings and BOHBOptions.
_DEFAULTS, _BOHB = StudySettings(space={}), BOHBOptions()
STUDY_OPTIONS: list[tuple[str, str, type, str]] = [
    ("--optimizer", "optimizer", str, f"{', '.join(OPTIMIZERS)} (default: {_DEFAULTS.optimizer})"),
    ("--min-budget", "min_budget", float, f"smallest budget, in epochs (default: {_DEFAULTS.min_budget:g})"),
    ("--max-budget", "max_budget", float, f"largest budget, in epochs (default: {_DEFAULTS.max_budget:g})"),
    ("--eta", "eta", float, f"successive-halving ratio (default: {_DEFAULTS.eta:g})"),
    ("--iterations", "iterations", int, f"Hyperband iterations; may grow on resume (default: {_DEFAULTS.iterations})"),
    ("--seed", "seed", int, f"seed of sampling, data split and training (default: {_DEFAULTS.seed})"),
    ("--job-timeout", "job_timeout", float, "seconds after which a job is abandoned as failed (default: none)"),
    ("--worker", "worker", str, f"hpbandster Worker class, module:Class (default: {DEFAULT_WORKER})"),
    ("--dataset", "dataset", str, "digits (embedded, default) or mnist (IDX files in --data-dir)"),
    ("--data-dir", "data_dir", str, "directory of MNIST-format IDX files, for --dataset mnist"),
    ("--split", "split", str, "train,val,test fractions or counts (default: per dataset)"),
    (
        "--grid-points",
        "grid_points",
        int,
        f"grid: values per numeric hyperparameter (default: {_DEFAULTS.grid_points})",
    ),
    (
        "--repeats",
        "repeats",
        int,
        f"trainings per evaluation with different seeds; the loss is their mean (default: {_DEFAULTS.repeats})",
    ),
    (
        "--top-n-percent",
        "bohb.top_n_percent",
        int,
        f"BOHB: share of good observations (default: {_BOHB.top_n_percent})",
    ),
    ("--num-samples", "bohb.num_samples", int, f"BOHB: candidates per proposal (default: {_BOHB.num_samples})"),
    ("--random-fraction", "bohb.random_fraction", float, "BOHB: share of random configurations (default: 1/3)"),
    ("--bandwidth-factor", "bohb.bandwidth_factor", float, f"BOHB: KDE widening (default: {_BOHB.bandwidth_factor:g})"),
    ("--min-bandwidth", "bohb.min_bandwidth", float, f"BOHB: KDE minimum bandwidth (default: {_BOHB.min_bandwidth:g})"),
    ("--min-points-in-model", "bohb.min_points_in_model", int, "BOHB: observations before a model (default: dim+1)"),
    (
        "--sampler",
        "bohb.sampler",
        str,
        "BOHB: vectorized (same algorithm as hpbandster's, sub-millisecond) or hpbandster (default: vectorized)",
    ),
]

# On/off study options: (flag, settings field, help); each also has its --no- form, and None
# (neither given) keeps the study's value on resume.
STUDY_FLAGS: list[tuple[str, str, str]] = [
    (
        "--continue",
        "continue_training",
        "continue a promoted configuration from its checkpoint on the smaller budget; "
        "--no-continue trains every job from scratch (default: on; may change on resume)",
    ),
    ("--amp", "amp", "mixed precision (bfloat16, or float16 with loss scaling) on CUDA workers; ignored on CPU"),
]


def add_study_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "study (given again on resume: must match the study, except --iterations, --job-timeout and --[no-]continue)"
    )
    group.add_argument("--space", type=Path, help="ConfigSpace YAML or JSON file (e.g. spaces/lenet.yaml)")
    group.add_argument("--study-dir", required=True, type=Path, help="directory for settings, journal and logs")
    for flag, field, kind, text in STUDY_OPTIONS:
        group.add_argument(flag, dest=field.replace(".", "__"), type=kind, default=None, help=text)
    for flag, field, text in STUDY_FLAGS:
        group.add_argument(flag, dest=field, action=argparse.BooleanOptionalAction, default=None, help=text)
    group.add_argument("--fresh", action="store_true", help="start a new study; refuse if --study-dir holds one")
    group.add_argument("--overwrite", action="store_true", help="with --fresh: delete the existing study first")


def requested_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The study settings the user gave on the command line (and only those)."""
    requested: dict[str, Any] = {}
    if args.space is not None:
        from bohb_runner.spaces import load_space, space_to_dict  # ConfigSpace: only where a space is read

        requested["space"] = space_to_dict(load_space(args.space))
        requested["space_file"] = str(args.space)
    for _flag, field, _kind, _text in STUDY_OPTIONS:
        value = getattr(args, field.replace(".", "__"))
        if value is not None:
            requested[field] = value
    for _flag, field, _text in STUDY_FLAGS:
        if getattr(args, field, None) is not None:
            requested[field] = getattr(args, field)
    return requested


def add_master_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("master")
    add_listen_options(group, "the nameserver and master listen on")
    add_worker_pool_options(group)
    group.add_argument("--no-progress", action="store_true", help="no live progress line")


def add_worker_pool_options(parser: argparse._ActionsContainer) -> None:
    """How the master waits for and watches its workers (``run``, ``master``, ``slurm submit``)."""
    parser.add_argument("--min-workers", type=int, default=1, help="workers to wait for before starting (default: 1)")
    parser.add_argument("--ping-interval", type=float, default=10.0, help="seconds between worker liveness checks")


def add_local_worker_options(parser: argparse.ArgumentParser) -> None:
    """Device and threads of the worker processes a command starts itself (``run``, ``compare``)."""
    parser.add_argument("--device", default="auto", help="device for local workers: auto, cpu, cuda, cuda:N, cuda:each")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per local worker (default: 1)")


def add_listen_options(parser: argparse._ActionsContainer, who: str) -> None:
    """``--host ADDR`` or ``--interface NAME`` (see :mod:`bohb_runner.network`); resolve them
    with :func:`listen_address`."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--host", default=None, help=f"address {who} (default: 127.0.0.1, loopback)")
    where.add_argument(
        "--interface",
        default=None,
        metavar="NAME",
        help=f"network interface {who}, e.g. ib0, eth0, lo, or auto (the address of this node's hostname)",
    )


def listen_address(args: argparse.Namespace) -> str:
    """The address from ``--host``/``--interface``; says so when it is reachable from other hosts."""
    from bohb_runner.network import describe_listening, is_loopback
    from bohb_runner.network import listen_address as resolve

    address = resolve(getattr(args, "host", None), getattr(args, "interface", None))
    if not is_loopback(address):
        print(f"bohb-runner: {describe_listening(address, getattr(args, 'interface', None))}", file=sys.stderr)
    return address


# -- commands -------------------------------------------------------------------------------


def _cmd_run(args: argparse.Namespace) -> int:
    if args.workers_per_gpu is not None:
        from bohb_runner.local_workers import workers_for_gpus

        args.workers = workers_for_gpus(args.workers_per_gpu, args.workers, args.device)
    elif args.workers is None:
        args.workers = 1
    if args.workers < 0:
        raise UserError(f"--workers must not be negative, got {args.workers}")
    if args.threads < 1:
        raise UserError(f"--threads must be at least 1, got {args.threads}")
    return _run(args)


def _cmd_master(args: argparse.Namespace) -> int:
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    args.host = listen_address(args)
    if args.overwrite and not args.fresh:
        raise UserError("--overwrite only goes with --fresh")
    # the master's modules (hpbandster, statsmodels, ConfigSpace) cost seconds to import: only
    # the commands that run a master pay for them, not every worker process
    from bohb_runner.study import open_study, run_master

    settings, resumed = open_study(args.study_dir, requested_settings(args), fresh=args.fresh, overwrite=args.overwrite)
    print(describe_study(args.study_dir, settings, resumed and has_history(args.study_dir)), file=sys.stderr)
    started = time.monotonic()
    results = run_master(args.study_dir, run_options(args))
    print(describe_results(results, time.monotonic() - started))
    return 0


def run_options(args: argparse.Namespace) -> RunOptions:
    """How the master runs this time, from the master and local-worker options of ``args``."""
    from bohb_runner.study import RunOptions

    return RunOptions(
        workers=args.workers,
        host=args.host,
        min_workers=args.min_workers,
        ping_interval=args.ping_interval,
        progress=not args.no_progress,
        device=args.device,
        threads=args.threads,
        workers_per_gpu=getattr(args, "workers_per_gpu", None),
    )


def describe_study(study_dir: Path, settings: StudySettings, resumed: bool = False) -> str:
    from bohb_runner.study import schedule_of

    schedule = schedule_of(settings)
    budgets = ", ".join(format_budget(b) for b in schedule.budgets)
    jobs = schedule.total_jobs(settings.optimizer, settings.iterations)
    cost = schedule.total_cost(settings.optimizer, settings.iterations) * settings.repeats
    iterations = schedule.planned_iterations(settings.optimizer, settings.iterations)
    what = f"{settings.optimizer}, budgets {budgets} (eta {settings.eta:g}), {iterations} iterations"
    if settings.optimizer == "grid":
        what = (
            f"grid of {schedule.grid_size} points ({settings.grid_points} per numeric hyperparameter) on budget "
            f"{format_budget(settings.max_budget)}, {iterations} iterations"
        )
        if iterations < settings.iterations:
            what += f" (the grid ends before the {settings.iterations} asked for)"
    repeats = f" x {settings.repeats} repeats" if settings.repeats > 1 else ""
    line = (
        f"{'resuming' if resumed else 'study'} {study_dir}: {what}, "
        f"{jobs} evaluations{repeats}, {cost:g} epochs planned"
    )
    data = settings.data or {}
    sizes = data.get("sizes")
    if isinstance(sizes, dict):
        line += f"; data {settings.dataset} " + "/".join(str(sizes.get(k, "?")) for k in ("train", "val", "test"))
    return line


def describe_results(results: StudyResults, elapsed: float | None = None) -> str:
    lines = []
    inc = results.incumbent
    if inc is None:
        lines.append("no successful evaluation yet")
    else:
        test = test_error_of(inc)
        test_text = f", test error {test:.4f}" if isinstance(test, (int, float)) else ""
        lines.append(
            f"incumbent {tuple(inc.config_id)} on budget {format_budget(inc.budget)}: "
            f"validation error {inc.loss:.4f}{test_text}"
        )
        width = max(len(k) for k in inc.config)
        for key in sorted(inc.config):
            value = inc.config[key]
            text = f"{value:.6g}" if isinstance(value, float) else str(value)
            lines.append(f"  {key:<{width}} = {text}")
    summary = f"{len(results.evaluations)} evaluations ({len(results.failed)} failed), {results.budget_used:g} epochs"
    if elapsed is not None:
        summary += f" in {format_duration(elapsed)}"
    lines.append(summary + f"; journal: {results.study_dir / 'results.jsonl'}")
    saved = epochs_saved_by_iteration(results)
    if saved:
        per_iteration = ", ".join(f"{iteration}: {epochs:g}" for iteration, epochs in sorted(saved.items()))
        lines.append(f"continued training saved {sum(saved.values()):g} epochs (per iteration {per_iteration})")
    return "\n".join(lines)


def epochs_saved_by_iteration(results: StudyResults) -> dict[int, float]:
    """Epochs not trained thanks to continued training, per Hyperband iteration.

    Workers that continue from checkpoints report ``epochs_trained`` (and ``resumed_from``) in
    ``info``; the budget minus what was trained is what continuing saved. Empty when no
    evaluation continued.
    """
    saved: dict[int, float] = {}
    for evaluation in results.evaluations:
        info = evaluation.info if isinstance(evaluation.info, dict) else {}
        trained = info.get("epochs_trained")
        if not info.get("resumed_from") or not isinstance(trained, (int, float)):  # 0 or absent: from scratch
            continue
        iteration = int(evaluation.config_id[0])
        saved[iteration] = saved.get(iteration, 0.0) + round(evaluation.budget - trained, 9)
    return saved


def _cmd_worker(args: argparse.Namespace) -> int:
    from bohb_runner.local_workers import die_with_parent
    from bohb_runner.logs import log_path, setup_file_logging
    from bohb_runner.worker_process import WorkerOptions, run_worker

    die_with_parent()
    args.host = listen_address(args)
    if args.threads < 1:
        raise UserError(f"--threads must be at least 1, got {args.threads}")
    if not args.study_dir.exists() and not args.study_dir.parent.exists():
        raise UserError(f"{args.study_dir}: neither the study directory nor its parent exists")
    if args.log_file == "-":
        setup_file_logging(None)
    else:
        name = args.name or "worker"
        path = Path(args.log_file) if args.log_file else None
        if path is None:
            args.study_dir.mkdir(parents=True, exist_ok=True)
            path = log_path(args.study_dir, name if args.name else f"worker-{_host_pid()}")
        setup_file_logging(path)
    options = WorkerOptions(
        study_dir=args.study_dir,
        name=args.name,
        worker_spec=args.worker,
        device=args.device,
        threads=args.threads,
        host=args.host,
        wait_for_master=args.wait_for_master,
    )
    try:
        return run_worker(options)
    except UserError as exc:
        logger.error("%s", exc)
        raise


def _host_pid() -> str:
    import os
    import socket

    return f"{socket.gethostname()}-{os.getpid()}"


def _cmd_best(args: argparse.Namespace) -> int:
    results = StudyResults.load(args.study_dir)
    if args.retrain is not None:
        from bohb_runner.retrain import retrain_incumbent

        outcome = retrain_incumbent(results, args.retrain, device=args.device)
        if args.json:
            print(json.dumps({**results.summary(), "retrained": outcome}, indent=2))
        else:
            print(describe_results(results))
            print(
                f"retrained on budget {format_budget(outcome['budget'])}: validation error "
                f"{outcome['loss']:.4f}, weights saved to {args.retrain}"
            )
        return 0
    if results.incumbent is None and not args.json:
        raise UserError(f"{args.study_dir}: no successful evaluation yet")
    if args.json:
        print(json.dumps(results.summary(), indent=2))
    else:
        print(describe_results(results))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    results = StudyResults.load(args.study_dir)
    configs, result_file = export_hpbandster(results, args.out)
    print(f"wrote {configs} and {result_file} ({len(results.evaluations)} results)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
