"""``bohb-runner worker``: one worker process for a study, started before or after its master."""

from __future__ import annotations

import argparse
import logging
import os
import socket
from pathlib import Path

from bohb_runner.cli.options import add_listen_options, listen_address
from bohb_runner.errors import UserError

logger = logging.getLogger(__name__)


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``worker`` to ``bohb-runner``."""
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


def _cmd_worker(args: argparse.Namespace) -> int:
    from bohb_runner.logs import log_path, setup_file_logging
    from bohb_runner.master.local_workers import die_with_parent
    from bohb_runner.worker.process import WorkerOptions, run_worker

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
    return f"{socket.gethostname()}-{os.getpid()}"
