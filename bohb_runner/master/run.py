"""Running a study's master (and local workers) to the end, however the run ends.

``run_master`` starts the nameserver, the optimizer and optionally local worker processes,
shows progress, and shuts everything down in order: on completion, on SIGTERM or a time limit,
on Ctrl-C and on a failure, every finished evaluation is in the journal.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path

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
from bohb_runner.master.cleanup import CheckpointCleanup
from bohb_runner.master.history import continued_hpbandster_log, read_history
from bohb_runner.master.local_workers import LocalWorkers, WorkerExit
from bohb_runner.master.optimizers import build_optimizer
from bohb_runner.master.progress import ProgressDisplay, ProgressLogHandler, ProgressTracker
from bohb_runner.master.status_snapshot import StatusPublisher
from bohb_runner.master.stopping import TimeLimit, raise_on_sigterm, restore_sigterm
from bohb_runner.store.journal import CONFIGS_JOURNAL, RESULTS_JOURNAL, Evaluation, JournalWriter
from bohb_runner.store.lock import StudyLock
from bohb_runner.store.results import StudyResults
from bohb_runner.store.schedule import Bracket, schedule_of
from bohb_runner.store.settings import read_settings
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


def run_master(study_dir: Path, options: RunOptions) -> StudyResults:
    """Run the study in ``study_dir`` to the end; returns its results.

    Raises :class:`StudyFailed` when the optimization cannot go on and ``KeyboardInterrupt``
    when interrupted; in every case nameserver, master and local workers are shut down and
    every finished evaluation is in the journal.
    """
    study_dir = Path(study_dir)
    settings = read_settings(study_dir)
    compat.silence_configspace_deprecations()
    configure_pyro(options.host)
    # Workers keep their connection to the dispatcher (bohb_runner.wire.callback_proxy), so a result
    # is handled in that connection's own thread instead of a new thread per result. A Pyro4
    # setting of the whole process: the master's daemons serve short calls only, and workers
    # run in processes of their own.
    Pyro4.config.ONEWAY_THREADED = False
    auth.use_key(auth.ensure_secret(study_dir))  # every daemon and proxy of this study uses it
    setup_file_logging(log_path(study_dir, "master"))
    logger.info("study %s (run %s): %s", study_dir, settings.run_id, settings.optimizer)
    schedule = schedule_of(settings)
    lock = StudyLock(study_dir)
    lock.acquire()
    tracker = ProgressTracker(
        settings.optimizer,
        schedule.planned_iterations(settings.optimizer, settings.iterations),
        schedule.total_jobs(settings.optimizer, settings.iterations),
    )
    display = ProgressDisplay(tracker) if options.progress else None
    console = ProgressLogHandler(display) if display else plain_console_handler()
    add_console_handler(console)
    history = read_history(study_dir)
    checkpoint_cleanup = CheckpointCleanup(study_dir)
    for evaluation in history.evaluations:
        tracker.evaluation_finished(evaluation)
        checkpoint_cleanup.evaluation_finished(evaluation)
    nameserver = StudyNameserver(host=options.host)
    status = StatusPublisher(study_dir, settings.run_id, tracker)  # status.json, for `bohb-runner status`
    address: NameserverAddress | None = None
    watch = _WorkerWatch()
    pool: LocalWorkers | None = None
    master = None
    results_journal = JournalWriter(study_dir / RESULTS_JOURNAL)
    # written (kill -9 loses nothing) but not fsynced under the master's lock: after a power cut
    # the configurations that matter come back from results.jsonl (read_history)
    configs_journal = JournalWriter(study_dir / CONFIGS_JOURNAL, fsync=False)
    completed = False
    previous_sigterm = raise_on_sigterm()
    time_limit = TimeLimit(options.time_limit)
    try:
        host, port = nameserver.start()
        address = NameserverAddress(host, port, settings.run_id, socket.gethostname(), os.getpid(), time.time())
        write_nameserver_address(study_dir, address)
        status.start()
        master = build_optimizer(
            settings,
            study_space(settings),
            schedule=schedule,
            results_journal=results_journal,
            configs_journal=configs_journal,
            working_directory=str(study_dir / "work"),
            nameserver=host,
            nameserver_port=port,
            host=options.host,
            ping_interval=options.ping_interval,
            observer=_Reporter(tracker, checkpoint_cleanup),
            logger=logging.getLogger("bohb_runner.master"),
            result_logger=continued_hpbandster_log(study_dir, history),
            history=history,
            job_timeout=settings.job_timeout,
        )
        watch.master = master
        status.attach(master.dispatcher)
        if options.workers > 0:
            pool = LocalWorkers(
                study_dir,
                options.workers,
                device=options.device,
                threads=options.threads,
                workers_per_gpu=options.workers_per_gpu,
                on_exit=watch,
            )
            watch.pool = pool
            pool.start()
        if display:
            display.start()
        time_limit.start()
        master.run(n_iterations=settings.iterations, min_n_workers=options.min_workers)
        time_limit.cancel()
        completed = True
    except StopRequested:
        time_limit.cancel()
        if not time_limit.expired:
            raise
        logger.info("time limit of %g s reached; stopping", options.time_limit)
    finally:
        time_limit.cancel()
        if display:
            display.stop()
        remove_console_handler(console)
        if master is not None:
            master.shutdown(shutdown_workers=completed or pool is not None)
        if pool is not None:
            pool.stop(grace=10.0 if completed else 3.0)
        nameserver.shutdown()
        status.stop("completed" if completed else "stopped")
        if address is not None:
            remove_nameserver_address(study_dir, address)
        results_journal.close()
        configs_journal.close()
        if completed:  # every iteration is finished: no job will ever continue from a checkpoint
            shutil.rmtree(study_dir / "checkpoints", ignore_errors=True)
        restore_sigterm(previous_sigterm)
        lock.release()
        logger.info("master stopped (%s)", "completed" if completed else "interrupted")
    return StudyResults.load(study_dir)


class _Reporter:
    """The master's observer: forwards events to the progress tracker, logs failed evaluations."""

    def __init__(self, tracker: ProgressTracker, checkpoint_cleanup: CheckpointCleanup | None = None) -> None:
        self.tracker = tracker
        self.checkpoint_cleanup = checkpoint_cleanup

    def iteration_started(self, bracket: Bracket) -> None:
        logger.info(
            "iteration %d started: %s configs on budgets %s", bracket.index, bracket.num_configs, bracket.budgets
        )
        self.tracker.iteration_started(bracket)
        if self.checkpoint_cleanup is not None:
            self.checkpoint_cleanup.iteration_started(bracket)

    def job_submitted(self, config_id: tuple[int, int, int], budget: float) -> None:
        self.tracker.job_submitted(config_id, budget)

    def evaluation_finished(self, evaluation: Evaluation) -> None:
        self.tracker.evaluation_finished(evaluation)
        if self.checkpoint_cleanup is not None:
            self.checkpoint_cleanup.evaluation_finished(evaluation)
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
