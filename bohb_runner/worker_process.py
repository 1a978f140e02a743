"""A worker process: find the study, build the worker once, serve jobs until the study ends.

Started by ``bohb-runner run`` for local workers, or by hand / by SLURM as
``bohb-runner worker --study-dir DIR`` on any node that sees the study directory. It can start
before the master: it waits for the study's settings and the nameserver's address to appear.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from bohb_runner import compat
from bohb_runner.discovery import wait_for_nameserver_address
from bohb_runner.errors import StudyError
from bohb_runner.settings import SETTINGS_FILE, StudySettings, read_settings
from bohb_runner.worker_loading import load_worker_class
from bohb_runner.worker_runtime import guard_compute, serve

logger = logging.getLogger(__name__)


@dataclass
class WorkerOptions:
    """How this worker process runs (not stored in the study: each worker may differ)."""

    study_dir: Path
    name: str | None = None
    worker_spec: str | None = None
    device: str = "auto"
    threads: int = 1
    host: str = "127.0.0.1"
    wait_for_master: float = 600.0


class _Terminated(BaseException):
    """Raised in the main thread by SIGTERM so that the worker unregisters on its way out."""


def run_worker(options: WorkerOptions) -> int:
    """Serve the study until its master shuts this worker down; returns the exit code."""
    compat.install()
    signal.signal(signal.SIGTERM, _raise_terminated)
    settings = _wait_for_settings(options.study_dir, options.wait_for_master)
    spec = options.worker_spec or settings.worker
    cls = load_worker_class(spec)
    address = wait_for_nameserver_address(options.study_dir, options.wait_for_master)
    if address is None:
        raise StudyError(
            f"{options.study_dir}: no master published its address within {options.wait_for_master:g} s"
            " (is the master running? see --wait-for-master)"
        )
    if address.run_id != settings.run_id:
        raise StudyError(f"{options.study_dir}: nameserver.json belongs to run {address.run_id}, not {settings.run_id}")
    context = settings.context(options.study_dir, device=options.device, threads=options.threads)
    name = options.name or f"{socket.gethostname()}-{os.getpid()}"
    worker_kwargs = dict(
        run_id=settings.run_id,
        nameserver=address.host,
        nameserver_port=address.port,
        host=options.host,
        id=name,
        logger=logging.getLogger(f"bohb_runner.worker.{name}"),
    )
    started = time.monotonic()
    from_study = getattr(cls, "from_study", None)
    worker = from_study(context, **worker_kwargs) if callable(from_study) else cls(**worker_kwargs)
    logger.info("worker %s ready in %.1f s (%s)", name, time.monotonic() - started, spec)
    guard_compute(worker)
    try:
        serve(worker, address, host=options.host)
    except _Terminated:
        logger.info("worker %s terminated by SIGTERM", name)
        return 143
    logger.info("worker %s shut down by the master", name)
    return 0


def _wait_for_settings(study_dir: Path, timeout: float) -> StudySettings:
    """The study's settings, waiting for a master that has not created the study yet."""
    deadline = time.monotonic() + timeout
    path = Path(study_dir) / SETTINGS_FILE
    logged = False
    while not path.exists():
        if time.monotonic() >= deadline:
            raise StudyError(
                f"{study_dir}: no study appeared within {timeout:g} s (start the master, or check --study-dir)"
            )
        if not logged:
            logger.info("waiting for a master to create %s", path)
            logged = True
        time.sleep(0.5)
    return read_settings(Path(study_dir))


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise _Terminated()
