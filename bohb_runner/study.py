"""Creating a study directory and running its master (and local workers) to the end.

This is the layer the CLI and the Python API share: ``create_study`` checks everything that
can be checked before a study starts (space, worker, data, budgets) and writes the study
directory; ``run_master`` starts the nameserver, the optimizer and optionally local worker
processes, shows progress, and shuts everything down however the run ends.
"""

from __future__ import annotations

import _thread
import fcntl
import logging
import os
import shutil
import signal
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ConfigSpace as CS
import Pyro4
from hpbandster.core.result import json_result_logger

from bohb_runner import auth, compat
from bohb_runner.discovery import NameserverAddress, remove_nameserver_address, write_nameserver_address
from bohb_runner.errors import StopRequested, StudyError, StudyFailed, UserError
from bohb_runner.export import export_hpbandster
from bohb_runner.journal import (
    CONFIGS_JOURNAL,
    RESULTS_JOURNAL,
    Evaluation,
    JournalWriter,
    SampledConfig,
    read_evaluations,
    read_sampled_configs,
    repair_torn_tail,
)
from bohb_runner.local_workers import LocalWorkers, WorkerExit
from bohb_runner.logs import (
    add_console_handler,
    log_path,
    plain_console_handler,
    remove_console_handler,
    setup_file_logging,
)
from bohb_runner.master import StudyHistory
from bohb_runner.nameserver import StudyNameserver
from bohb_runner.optimizers import build_optimizer
from bohb_runner.progress import ProgressDisplay, ProgressLogHandler, ProgressTracker
from bohb_runner.results import StudyResults
from bohb_runner.schedule import Bracket, HyperbandSchedule
from bohb_runner.settings import (
    SETTINGS_FILE,
    StudySettings,
    contradictions,
    new_settings,
    read_settings,
    write_settings,
)
from bohb_runner.spaces import check_space_for_optimizer, check_space_for_worker, space_from_dict
from bohb_runner.status_snapshot import StatusPublisher
from bohb_runner.worker_loading import declared_hyperparameters, load_worker_class

logger = logging.getLogger(__name__)

# hpbandster's own live result files (configs.json, results.json), written by its
# json_result_logger as the study runs, for hpbandster's tools and as a second record
HPBANDSTER_LIVE_DIR = "hpbandster"


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
    workers_per_gpu: int | None = None  # K workers on each visible GPU (bohb_runner.local_workers)
    # wall-clock seconds after which the master stops as on SIGTERM (``compare --time-limit``);
    # run_master then returns normally, with every finished evaluation journalled
    time_limit: float | None = None


def schedule_of(settings: StudySettings) -> HyperbandSchedule:
    grid_size = None
    if settings.optimizer == "grid":  # the grid's end is the study's end (bohb_runner.grid)
        from bohb_runner.grid import cached_grid_size

        grid_size = cached_grid_size(settings.space, settings.grid_points)
    return HyperbandSchedule(settings.min_budget, settings.max_budget, settings.eta, grid_size)


def study_space(settings: StudySettings) -> CS.ConfigurationSpace:
    return space_from_dict(settings.space, origin=settings.space_file or SETTINGS_FILE)


def create_study(study_dir: Path, settings: StudySettings) -> StudySettings:
    """Check the settings, space, worker and data, then write the study directory.

    Nothing is written before every check has passed, so a mistake leaves no half study.
    """
    study_dir = Path(study_dir)
    if (study_dir / SETTINGS_FILE).exists():
        raise StudyError(f"{study_dir} already holds a study; choose another --study-dir")
    if study_dir.is_file():
        raise StudyError(f"{study_dir} is a file, not a directory")
    settings.validate()
    space = study_space(settings)
    origin = settings.space_file or "the search space"
    check_space_for_optimizer(space, settings.optimizer, origin)
    cls = load_worker_class(settings.worker)
    check_space_for_worker(space, declared_hyperparameters(cls), origin, settings.worker)
    if settings.optimizer == "grid":
        from bohb_runner.grid import check_grid

        check_grid(space, settings.grid_points, origin)
    if settings.repeats > 1:
        from bohb_runner.repeats import check_worker_supports_repeats

        check_worker_supports_repeats(cls, settings.worker)
    settings.stamp()
    prepare = getattr(cls, "prepare_study", None)
    if callable(prepare):
        settings.data = prepare(settings.context(study_dir))
    _make_study_dir(study_dir)
    auth.create_secret(study_dir)  # before study.json: whoever sees the study finds its secret
    write_settings(study_dir, settings)
    return settings


def open_study(
    study_dir: Path, requested: dict[str, Any], *, fresh: bool = False, overwrite: bool = False
) -> tuple[StudySettings, bool]:
    """The study to run: the existing one in ``study_dir`` (resumed), or a new one.

    Resuming is the default, as with Optuna's and Ray Tune's ``resume``: running the same
    command again continues the study. Options given again must agree with the stored study,
    except ``iterations`` (which may grow) and ``job_timeout``. ``fresh`` refuses an existing
    study unless ``overwrite`` also says to delete it. Returns (settings, resumed).
    """
    study_dir = Path(study_dir)
    if (study_dir / SETTINGS_FILE).exists():
        if fresh and not overwrite:
            raise StudyError(
                f"{study_dir} already holds a study; --fresh refuses to touch it (add --overwrite to delete it)"
            )
        lock = StudyLock(study_dir)
        lock.acquire()  # held until this process's master stops
        if not fresh:
            try:
                return _resume_settings(study_dir, requested), True
            except BaseException:
                lock.release()
                raise
        remove_study(study_dir)
        lock.release()
    if "space" not in requested:
        raise UserError(f"--space is required to create a study ({study_dir} holds none)")
    settings = create_study(study_dir, new_settings(requested))
    StudyLock(study_dir).acquire()
    return settings, False


def _resume_settings(study_dir: Path, requested: dict[str, Any]) -> StudySettings:
    stored = read_settings(study_dir)
    problems = contradictions(stored, requested)
    if problems:
        raise StudyError(f"{study_dir}: cannot resume: {problems[0]}; use the study's settings or another --study-dir")
    changed = False
    if "iterations" in requested and requested["iterations"] != stored.iterations:
        started = StudyResults.load(study_dir).iterations_seen
        if requested["iterations"] < started:
            raise StudyError(
                f"{study_dir}: --iterations {requested['iterations']} is fewer than the {started} already started"
            )
        stored.iterations = requested["iterations"]
        changed = True
    if "job_timeout" in requested and requested["job_timeout"] != stored.job_timeout:
        stored.job_timeout = requested["job_timeout"]
        changed = True
    if "continue_training" in requested and requested["continue_training"] != stored.continue_training:
        stored.continue_training = requested["continue_training"]  # workers re-read it before each job
        changed = True
    if changed:
        stored.validate()
        write_settings(study_dir, stored)
    return stored


def _make_study_dir(study_dir: Path) -> None:
    try:
        study_dir.mkdir(parents=True, exist_ok=True)
        (study_dir / "logs").mkdir(exist_ok=True)
        (study_dir / "work").mkdir(exist_ok=True)
    except OSError as exc:
        raise StudyError(f"{study_dir}: cannot create the study directory ({exc.strerror})") from None


def remove_study(study_dir: Path) -> None:
    """Delete a study directory, but only one that is recognisably a study."""
    if (study_dir / SETTINGS_FILE).exists():
        shutil.rmtree(study_dir)
    elif study_dir.exists() and any(study_dir.iterdir()):
        raise StudyError(f"{study_dir} is not empty and not a study; refusing to delete it")


def read_history(study_dir: Path) -> StudyHistory:
    """The study's journals, with torn last lines (from a crash) cut off first.

    ``configs.jsonl`` is written without fsync (see ``run_master``): after a power cut it may
    lack configurations that ``results.jsonl`` (fsynced) holds, and those are taken from there.
    """
    for name in (RESULTS_JOURNAL, CONFIGS_JOURNAL):
        repair_torn_tail(study_dir / name)
    evaluations = read_evaluations(study_dir)
    sampled = read_sampled_configs(study_dir)
    known = {s.config_id for s in sampled}
    for e in evaluations:
        if e.config_id not in known:
            known.add(e.config_id)
            sampled.append(SampledConfig(e.config_id, e.config, e.config_info, e.submitted or 0.0))
    return StudyHistory(evaluations, sampled)


class ContinuedResultLogger(json_result_logger):
    """hpbandster's live result logger, continuing files that already hold a study's history.

    hpbandster's ``__init__`` truncates (or refuses) existing files, so this one only sets the
    attributes its ``new_config`` and ``__call__`` use; writing is hpbandster's own code.
    """

    def __init__(self, directory: Path, known_config_ids: set[tuple[int, int, int]]) -> None:
        self.config_fn = str(directory / "configs.json")
        self.results_fn = str(directory / "results.json")
        self.config_ids = set(known_config_ids)


def continued_hpbandster_log(study_dir: Path, history: StudyHistory) -> ContinuedResultLogger:
    """The live hpbandster files rewritten from the journal, and a logger appending to them."""
    live = study_dir / HPBANDSTER_LIVE_DIR
    export_hpbandster(StudyResults(study_dir, read_settings(study_dir), history.evaluations, history.sampled), live)
    known = {s.config_id for s in history.sampled} | {e.config_id for e in history.evaluations}
    return ContinuedResultLogger(live, known)


def _raise_on_sigterm() -> Any:
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum: int, frame: Any) -> None:
        raise StopRequested()

    return signal.signal(signal.SIGTERM, handler)


def _restore_sigterm(previous: Any) -> None:
    if previous is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, previous)


class _TimeLimit:
    """Stops the master ``seconds`` after run_master was called, exactly as SIGTERM does.

    The timer thread raises SIGTERM's handler in the main thread (``_thread.interrupt_main``),
    so the stop takes the path a SLURM time limit takes, which the resume tests cover. Start-up
    (nameserver, worker processes) counts: it is part of what a run costs.
    """

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.created = time.monotonic()
        self.expired = False
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        if self.seconds is None:
            return
        if threading.current_thread() is not threading.main_thread():
            raise UserError("a time limit needs the study to run in the main thread")
        left = self.seconds - (time.monotonic() - self.created)
        self._timer = threading.Timer(max(0.0, left), self._expire)
        self._timer.daemon = True
        self._timer.start()

    def _expire(self) -> None:
        with self._lock:
            if self._timer is None:
                return
            self.expired = True
            self._timer = None
        _thread.interrupt_main(signal.SIGTERM)

    def cancel(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None


class StudyLock:
    """One master per study: a second one would interleave its journal with the first's.

    An exclusive ``flock`` on ``master.lock``, taken before the study's settings are touched
    and held until the master stops. Re-entrant within a process (``open_study`` takes it,
    ``run_master`` takes it again), since two flocks of one process on one file conflict.
    """

    _held: dict[Path, tuple[Any, int]] = {}
    _guard = threading.Lock()

    def __init__(self, study_dir: Path) -> None:
        self.path = (Path(study_dir) / "master.lock").resolve()

    def acquire(self) -> None:
        with self._guard:
            if self.path in self._held:
                fh, count = self._held[self.path]
                self._held[self.path] = (fh, count + 1)
                return
            fh = open(self.path, "a+")
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                fh.seek(0)
                owner = fh.read().strip() or "another process"
                fh.close()
                raise StudyError(f"{self.path.parent}: a master is already running this study ({owner})") from None
            fh.seek(0)
            fh.truncate()
            fh.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
            fh.flush()
            self._held[self.path] = (fh, 1)

    def release(self) -> None:
        with self._guard:
            if self.path not in self._held:
                return
            fh, count = self._held[self.path]
            if count > 1:
                self._held[self.path] = (fh, count - 1)
                return
            del self._held[self.path]
            fcntl.flock(fh, fcntl.LOCK_UN)
            fh.close()


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
    compat.install()
    compat.configure_pyro(options.host)
    # Workers keep their connection to the dispatcher (bohb_runner.callback_proxy), so a result
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
    previous_sigterm = _raise_on_sigterm()
    time_limit = _TimeLimit(options.time_limit)
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
        _restore_sigterm(previous_sigterm)
        lock.release()
        logger.info("master stopped (%s)", "completed" if completed else "interrupted")
    return StudyResults.load(study_dir)


class CheckpointCleanup:
    """Removes an iteration's training checkpoints once every job of the iteration has a result.

    Workers that continue training across budgets keep per-configuration state in
    ``STUDY_DIR/checkpoints/<i>_<j>_<k>/`` (see ``workers/checkpoints.py``). Once all jobs of
    Hyperband iteration ``i`` are done, none will continue from any of it: the state of the
    configurations that were not promoted goes, instead of piling up for the whole study.
    """

    def __init__(self, study_dir: Path) -> None:
        self.root = Path(study_dir) / "checkpoints"
        self.expected: dict[int, int] = {}
        self.done: dict[int, set[tuple[tuple[int, ...], float]]] = {}

    def iteration_started(self, bracket: Bracket) -> None:
        self.expected[bracket.index] = bracket.jobs
        self._remove_if_done(bracket.index)

    def evaluation_finished(self, evaluation: Evaluation) -> None:
        iteration = int(evaluation.config_id[0])
        self.done.setdefault(iteration, set()).add((tuple(evaluation.config_id), float(evaluation.budget)))
        self._remove_if_done(iteration)

    def _remove_if_done(self, iteration: int) -> None:
        if iteration not in self.expected or len(self.done.get(iteration, ())) < self.expected[iteration]:
            return
        if self.root.is_dir():
            for path in self.root.glob(f"{iteration}_*"):
                shutil.rmtree(path, ignore_errors=True)


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


__all__ = [
    "RunOptions",
    "StopRequested",
    "StudyFailed",
    "UserError",
    "create_study",
    "open_study",
    "remove_study",
    "run_master",
]
