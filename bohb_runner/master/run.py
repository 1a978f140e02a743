"""Running a study's master (and local workers) to the end, however the run ends.

``run_master`` starts the nameserver, the optimizer and optionally local worker processes,
shows progress, and shuts everything down in order: on completion, on SIGTERM or a time limit,
on Ctrl-C and on a failure, every finished evaluation is in the journal.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import Pyro4

from bohb_runner import compat
from bohb_runner.errors import StopRequested
from bohb_runner.logs import (
    add_console_handler,
    log_path,
    plain_console_handler,
    remove_console_handler,
    setup_file_logging,
)
from bohb_runner.master.cleanup import ArtifactCleanup
from bohb_runner.master.history import continued_hpbandster_log, read_history
from bohb_runner.master.host import host_state_kept
from bohb_runner.master.local_workers import LocalWorkers, WorkerExit
from bohb_runner.master.optimizers import build_optimizer
from bohb_runner.master.progress import ProgressDisplay, ProgressLogHandler, ProgressTracker
from bohb_runner.master.status_snapshot import StatusPublisher
from bohb_runner.master.stopping import TimeLimit, raise_on_sigterm, restore_sigterm
from bohb_runner.master.study_master import StudyMaster
from bohb_runner.store.journal import CONFIGS_JOURNAL, RESULTS_JOURNAL, Evaluation, JournalWriter
from bohb_runner.store.lock import StudyLock
from bohb_runner.store.results import StudyResults
from bohb_runner.store.schedule import Bracket, schedule_of
from bohb_runner.store.settings import StudySettings, read_settings
from bohb_runner.store.spaces import study_space
from bohb_runner.wire import auth
from bohb_runner.wire.discovery import NameserverAddress, remove_nameserver_address, write_nameserver_address
from bohb_runner.wire.nameserver import StudyNameserver
from bohb_runner.wire.pyro import configure_pyro

logger = logging.getLogger(__name__)


@dataclass
class RunOptions:
    """How the master runs this time (not part of the study's identity)."""

    workers: int = 1
    host: str = "127.0.0.1"
    min_workers: int = 1
    ping_interval: float = 10.0
    progress: bool = True
    device: str = "auto"
    threads: int = 1
    workers_per_gpu: int | None = None  # K workers on each visible GPU (bohb_runner.master.local_workers)
    # wall-clock seconds after which the master stops as on SIGTERM (``compare --time-limit``);
    # run_master then returns normally, with every finished evaluation journalled
    time_limit: float | None = None


class _WorkerWatch:
    """Restarts local workers that were killed; when none is left the study cannot go on."""

    MAX_RESTARTS = 3

    def __init__(self) -> None:
        self.master = None
        self.pool: LocalWorkers | None = None
        self.restarts: dict[str, int] = {}

    def __call__(self, exit: WorkerExit) -> None:
        last = exit.last_log_line()
        if exit.returncode < 0 and self.pool is not None and self.restarts.get(exit.name, 0) < self.MAX_RESTARTS:
            self.restarts[exit.name] = self.restarts.get(exit.name, 0) + 1
            signame = signal.Signals(-exit.returncode).name
            logger.warning("local %s was killed (%s); starting it again (log: %s)", exit.name, signame, exit.log_file)
            self.pool.restart(exit.name)
            return
        logger.warning("local %s exited with code %d: %s (log: %s)", exit.name, exit.returncode, last, exit.log_file)
        if self.pool is not None and not self.pool.alive() and self.master is not None:
            self.master.report_fatal(
                "local workers", f"all {self.pool.count} local worker processes exited; last: {exit.name}: {last}"
            )
        elif self.master is not None:
            self.master.dispatcher.trigger_discover_worker()


@host_state_kept()  # the caller's logging, warnings, Pyro4 settings, sys.path: put back (Python API)
def run_master(study_dir: Path, options: RunOptions) -> StudyResults:
    """Run the study in ``study_dir`` to the end; returns its results.

    Raises :class:`StudyFailed` when the optimization cannot go on and ``KeyboardInterrupt``
    when interrupted; in every case nameserver, master and local workers are shut down and
    every finished evaluation is in the journal.
    """
    study_dir = Path(study_dir)
    settings = read_settings(study_dir)
    _configure_process(study_dir, options.host)
    logger.info("study %s (run %s): %s", study_dir, settings.run_id, settings.optimizer)
    lock = StudyLock(study_dir)
    lock.acquire()
    try:
        run = _MasterRun(study_dir, settings, options)
        try:
            run.start_services()
            run.run_to_end()
        finally:
            run.shut_down()
    finally:
        lock.release()
        logger.info("master stopped")
    return StudyResults.load(study_dir)


def _configure_process(study_dir: Path, host: str) -> None:
    """What the master needs of its process: Pyro4's settings, the study key, ``master.log``."""
    compat.silence_configspace_deprecations()
    configure_pyro(host)
    # Workers keep their connection to the dispatcher (bohb_runner.wire.callback_proxy), so a result
    # is handled in that connection's own thread instead of a new thread per result. A Pyro4
    # setting of the whole process: the master's daemons serve short calls only, and workers
    # run in processes of their own.
    Pyro4.config.ONEWAY_THREADED = False
    auth.use_key(auth.ensure_secret(study_dir))  # every daemon and proxy of this study uses it
    setup_file_logging(log_path(study_dir, "master"))


class _MasterRun:
    """One run of a study's master: what it starts, the run itself, and its ordered shutdown.

    Every part is started by :meth:`start_services` and stopped by :meth:`shut_down`, which
    stops whatever was started, whichever step failed or was interrupted.
    """

    def __init__(self, study_dir: Path, settings: StudySettings, options: RunOptions) -> None:
        self.study_dir = study_dir
        self.settings = settings
        self.options = options
        self.time_limit = TimeLimit(options.time_limit)  # start-up counts: it is part of a run's cost
        self.schedule = schedule_of(settings)
        self.tracker = ProgressTracker(
            settings.optimizer,
            self.schedule.planned_iterations(settings.optimizer, settings.iterations),
            self.schedule.total_jobs(settings.optimizer, settings.iterations),
        )
        self.display = ProgressDisplay(self.tracker) if options.progress else None
        self.console = ProgressLogHandler(self.display) if self.display else plain_console_handler()
        self.cleanup = ArtifactCleanup(study_dir)
        self.nameserver = StudyNameserver(host=options.host)
        self.status = StatusPublisher(study_dir, settings.run_id, self.tracker)  # for `bohb-runner status`
        self.watch = _WorkerWatch()
        self.address: NameserverAddress | None = None
        self.master: StudyMaster | None = None
        self.pool: LocalWorkers | None = None
        self.results_journal: JournalWriter | None = None
        self.configs_journal: JournalWriter | None = None
        self.previous_sigterm: Any = None
        self.status_started = False
        self.display_started = False
        self.completed = False

    def start_services(self) -> None:
        """Console, journals, nameserver (and its address file), status file, master, local workers."""
        self.previous_sigterm = raise_on_sigterm()
        add_console_handler(self.console)
        history = read_history(self.study_dir)
        for evaluation in history.evaluations:
            self.tracker.evaluation_finished(evaluation)
            self.cleanup.evaluation_finished(evaluation)
        self.results_journal = JournalWriter(self.study_dir / RESULTS_JOURNAL)
        # written (kill -9 loses nothing) but not fsynced under the master's lock: after a power cut
        # the configurations that matter come back from results.jsonl (read_history)
        self.configs_journal = JournalWriter(self.study_dir / CONFIGS_JOURNAL, fsync=False)
        host, port = self.nameserver.start()
        self.address = NameserverAddress(
            host, port, self.settings.run_id, socket.gethostname(), os.getpid(), time.time()
        )
        write_nameserver_address(self.study_dir, self.address)
        self.status.start()
        self.status_started = True
        self.master = build_optimizer(
            self.settings,
            study_space(self.settings),
            schedule=self.schedule,
            results_journal=self.results_journal,
            configs_journal=self.configs_journal,
            working_directory=str(self.study_dir / "work"),
            nameserver=host,
            nameserver_port=port,
            host=self.options.host,
            ping_interval=self.options.ping_interval,
            observer=_Reporter(self.tracker, self.cleanup),
            logger=logging.getLogger("bohb_runner.master"),
            result_logger=continued_hpbandster_log(self.study_dir, history),
            history=history,
            job_timeout=self.settings.job_timeout,
        )
        self.watch.master = self.master
        self.status.attach(self.master.dispatcher)
        self._start_local_workers()
        if self.display:
            self.display.start()
            self.display_started = True

    def _start_local_workers(self) -> None:
        if self.options.workers <= 0:
            logger.warning(
                "no local workers: start them with `bohb-runner worker --study-dir %s`",
                shlex.quote(str(self.study_dir)),
            )
            return
        self.pool = LocalWorkers(
            self.study_dir,
            self.options.workers,
            device=self.options.device,
            threads=self.options.threads,
            workers_per_gpu=self.options.workers_per_gpu,
            on_exit=self.watch,
        )
        self.watch.pool = self.pool
        self.pool.start()

    def run_to_end(self) -> None:
        """The optimization, until it completes or the time limit stops it (as SIGTERM would)."""
        assert self.master is not None
        self.time_limit.start()
        try:
            self.master.run(n_iterations=self.settings.iterations, min_n_workers=self.options.min_workers)
            self.completed = True
        except StopRequested:
            if not self.time_limit.expired:
                raise
            logger.info("time limit of %g s reached; stopping", self.options.time_limit)
        finally:
            self.time_limit.cancel()

    def shut_down(self) -> None:
        """Stop everything that was started, in an order that loses no finished evaluation.

        No more results first (the master stops its dispatcher and makes the reports still
        queued, so the progress line's last state is the study's), then the display, the
        local workers, the nameserver, the last status snapshot and the journals; artifacts
        go only when the study is complete, since a resumed one continues from them.
        """
        self.time_limit.cancel()
        if self.master is not None:
            self.master.shutdown(shutdown_workers=self.completed or self.pool is not None)
        if self.display and self.display_started:
            self.display.stop()
        remove_console_handler(self.console)
        if self.pool is not None:
            self.pool.stop(grace=10.0 if self.completed else 3.0)
        self.nameserver.shutdown()
        if self.status_started:
            self.status.stop("completed" if self.completed else "stopped")
        if self.address is not None:
            remove_nameserver_address(self.study_dir, self.address)
        for journal in (self.results_journal, self.configs_journal):
            if journal is not None:
                journal.close()
        if self.completed:  # every iteration is finished: no configuration can continue
            self.cleanup.study_completed()
        restore_sigterm(self.previous_sigterm)
        logger.info("master %s", "completed the study" if self.completed else "interrupted")


class _Reporter:
    """The master's observer: forwards events to the progress tracker, logs failed evaluations."""

    def __init__(self, tracker: ProgressTracker, artifact_cleanup: ArtifactCleanup | None = None) -> None:
        self.tracker = tracker
        self.artifact_cleanup = artifact_cleanup

    def iteration_started(self, bracket: Bracket) -> None:
        logger.info(
            "iteration %d started: %s configs on budgets %s", bracket.index, bracket.num_configs, bracket.budgets
        )
        self.tracker.iteration_started(bracket)
        if self.artifact_cleanup is not None:
            self.artifact_cleanup.iteration_started(bracket)

    def job_submitted(self, config_id: tuple[int, int, int], budget: float) -> None:
        self.tracker.job_submitted(config_id, budget)

    def evaluation_finished(self, evaluation: Evaluation) -> None:
        self.tracker.evaluation_finished(evaluation)
        if self.artifact_cleanup is not None:
            self.artifact_cleanup.evaluation_finished(evaluation)
        if not evaluation.ok:
            reason = (evaluation.error or "").strip().splitlines()
            logger.warning(
                "evaluation %s on budget %g failed: %s",
                evaluation.config_id,
                evaluation.budget,
                reason[-1] if reason else "?",
            )

    def workers_changed(self, count: int) -> None:
        self.tracker.workers_changed(count)
