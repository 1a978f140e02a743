"""``bohb-runner run`` (nameserver, master and local workers) and ``bohb-runner master`` (no workers)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time

from bohb_runner.cli.options import (
    add_local_worker_options,
    add_master_options,
    add_study_options,
    listen_address,
    requested_settings,
    run_options,
)
from bohb_runner.errors import UserError
from bohb_runner.store.describe import describe_results, describe_study
from bohb_runner.store.journal import has_history


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``run`` and ``master`` to ``bohb-runner``."""
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


def _cmd_run(args: argparse.Namespace) -> int:
    if args.workers_per_gpu is not None:
        from bohb_runner.master.local_workers import workers_for_gpus

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
    _stop_on_ctrl_c()
    args.host = listen_address(args)
    if args.overwrite and not args.fresh:
        raise UserError("--overwrite only goes with --fresh")
    # the master's modules (hpbandster, statsmodels, ConfigSpace) cost seconds to import: only
    # the commands that run a master pay for them, not every worker process
    from bohb_runner.master.create import open_study
    from bohb_runner.master.run import run_master

    settings, resumed = open_study(args.study_dir, requested_settings(args), fresh=args.fresh, overwrite=args.overwrite)
    print(describe_study(args.study_dir, settings, resumed and has_history(args.study_dir)), file=sys.stderr)
    started = time.monotonic()
    results = run_master(args.study_dir, run_options(args))
    print(describe_results(results, time.monotonic() - started))
    return 0


def _stop_on_ctrl_c() -> None:
    """Make Ctrl-C (SIGINT) stop the master, whatever this process inherited.

    A command a non-interactive shell starts in the background (``cmd &`` in a script, many CI
    runners and job launchers) inherits SIGINT *ignored*, and Python then leaves it ignored: the
    master would run on to the end, deaf to Ctrl-C and ``kill -INT``. ``run`` and ``master`` own
    their process, so they take SIGINT back: it raises ``KeyboardInterrupt``, which stops the
    study in order and exits with 130.
    """
    if threading.current_thread() is threading.main_thread():  # signal handlers live there only
        signal.signal(signal.SIGINT, signal.default_int_handler)
