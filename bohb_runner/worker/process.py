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
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import Pyro4.errors
from hpbandster.core.worker import Worker

from bohb_runner import compat
from bohb_runner.errors import StudyError, UserError
from bohb_runner.logs import log_uncaught_thread_exceptions
from bohb_runner.store.settings import SETTINGS_FILE, StudySettings, read_settings
from bohb_runner.wire import auth
from bohb_runner.wire.discovery import NameserverAddress, wait_for_nameserver_address
from bohb_runner.wire.pyro import configure_pyro
from bohb_runner.worker.api import StudyContext
from bohb_runner.worker.loading import load_worker_class
from bohb_runner.worker.runtime import guard_compute, serve

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
    """Serve the study until its master shuts this worker down; returns the exit code.

    When the master disappears (killed, pre-empted, out of time), the worker waits up to
    ``wait_for_master`` seconds for a master to resume the study, then serves that one: a
    resumed study gets its workers back without restarting them.
    """
    compat.silence_configspace_deprecations()
    configure_pyro()
    log_uncaught_thread_exceptions(_explain_thread_failure)
    signal.signal(signal.SIGTERM, _raise_terminated)
    settings = _wait_for_settings(options.study_dir, options.wait_for_master)
    spec = options.worker_spec or settings.worker
    cls = load_worker_class(spec)
    address = _wait_for_master(options, settings, previous=None)
    # read after the master has published its address: it creates the secret of an old study
    auth.use_key(auth.read_secret(options.study_dir))
    name = options.name or f"{socket.gethostname()}-{os.getpid()}"
    worker = _build_worker(cls, options, settings, address, name, spec)
    try:
        while True:
            watchdog = HungJobWatchdog(worker, settings.job_timeout)
            try:
                if serve(worker, address, host=options.host, hmac_key=auth.process_key()):
                    logger.info("worker %s shut down by the master", name)
                    return 0
            except (Pyro4.errors.NamingError, Pyro4.errors.CommunicationError) as exc:
                if "hmac" in str(exc):
                    raise StudyError(
                        f"the master at {address.host}:{address.port} refused this worker's key ({exc});"
                        f" was {auth.secret_path(options.study_dir)} replaced while the study ran?"
                    ) from None
                logger.warning("cannot reach the master at %s:%d (%s)", address.host, address.port, exc)
            finally:
                watchdog.stop()
            address = _wait_for_master(options, settings, previous=address)
            settings = read_settings(options.study_dir)  # a resumed study may have a new --job-timeout
    except _Terminated:
        logger.info("worker %s terminated by SIGTERM", name)
        return 143


def _wait_for_master(
    options: WorkerOptions, settings: StudySettings, previous: NameserverAddress | None
) -> NameserverAddress:
    """The address of a live master of this study, waiting up to ``wait_for_master`` seconds."""
    if previous is not None:
        logger.warning("waiting up to %g s for a master to resume the study", options.wait_for_master)
    address = wait_for_nameserver_address(options.study_dir, options.wait_for_master, not_this=previous)
    if address is None:
        what = "came back" if previous is not None else "published its address"
        raise StudyError(
            f"{options.study_dir}: no master {what} within {options.wait_for_master:g} s"
            " (is the master running? see --wait-for-master)"
        )
    if address.run_id != settings.run_id:
        raise StudyError(f"{options.study_dir}: nameserver.json belongs to run {address.run_id}, not {settings.run_id}")
    return address


def _build_worker(
    cls: type[Worker], options: WorkerOptions, settings: StudySettings, address: NameserverAddress, name: str, spec: str
) -> Worker:
    context = StudyContext.of(settings, options.study_dir, device=options.device, threads=options.threads)
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
    try:
        worker = from_study(context, **worker_kwargs) if callable(from_study) else cls(**worker_kwargs)
    except UserError:
        raise
    except Exception as exc:  # the user's class: its reason in one line, the traceback in the log
        logger.exception("building the worker %s failed", spec)
        raise StudyError(f"worker {spec} could not start: {type(exc).__name__}: {exc}") from None
    logger.info("worker %s ready in %.1f s (%s)", name, time.monotonic() - started, spec)
    guard_compute(worker, repeats=settings.repeats)
    return worker


class HungJobWatchdog:
    """Restarts this worker process when a job outlives ``--job-timeout`` by a grace period.

    The master has abandoned such a job already; but a thread cannot be stopped in Python, so
    the only way to free the worker is a fresh process: ``exec`` of the same command, which keeps
    the pid (and the worker's name), registers again and receives new work.
    """

    GRACE = 5.0

    def __init__(self, worker: Worker, job_timeout: float | None) -> None:
        self._stop = threading.Event()
        if job_timeout:
            thread = threading.Thread(
                target=self._watch, args=(worker, job_timeout), name="hung-job-watch", daemon=True
            )
            thread.start()

    def _watch(self, worker: Worker, job_timeout: float) -> None:
        while not self._stop.wait(1.0):
            started = getattr(worker, "job_started", None)
            if started is not None and time.monotonic() - started > job_timeout + self.GRACE:
                logger.error("a job has run for more than --job-timeout %g s; restarting this worker", job_timeout)
                logging.shutdown()
                os.execv(sys.executable, [sys.executable, "-m", "bohb_runner", *sys.argv[1:]])

    def stop(self) -> None:
        self._stop.set()


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


def _explain_thread_failure(exc: BaseException) -> str | None:
    if isinstance(exc, Pyro4.errors.CommunicationError):
        return f"could not report a result to the master ({exc}); a resumed master runs that job again"
    return None


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise _Terminated()
