"""The study's master: hpbandster's Master with a journal, reproducible sampling and no silent hangs.

hpbandster's ``Master.run`` waits on a condition variable for results that may never come
when a thread dies, and keeps its results in memory only. ``StudyMaster`` keeps hpbandster's
iterations, config generators and bookkeeping (so BOHB, Hyperband and random search are
hpbandster's own), and changes four things:

* every finished evaluation is appended to the results journal (fsynced) before the master
  acts on it, and every sampled configuration to the configs journal;
* sampling and model fitting are seeded from the study seed and the config id, so a study's
  choices depend on its history only, not on thread timing or how often it was restarted
  (and never on, or at the expense of, numpy's global RNG: see :func:`seeded_draws`);
* a failure in any thread (dispatcher, result handling) stops the run with
  :class:`StudyFailed` instead of leaving it waiting forever;
* workers' results are checked and turned into plain Python before hpbandster sees them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from hpbandster.core.dispatcher import Job
from hpbandster.core.master import Master

from bohb_runner.compat import is_finite_number, native_config, to_native
from bohb_runner.errors import StudyFailed
from bohb_runner.master.dispatcher import StudyDispatcher
from bohb_runner.master.iteration import StudyIteration
from bohb_runner.master.reports import OrderedReports, QueuedResultLogger
from bohb_runner.store.journal import Evaluation, JournalWriter, SampledConfig
from bohb_runner.store.schedule import Bracket, HyperbandSchedule

logger = logging.getLogger(__name__)


class StudyHistoryMismatch(StudyFailed):
    """The journal cannot be replayed on this study's schedule."""


class _SamplingDeferred(Exception):
    """Replay needs a configuration that was never sampled: it is sampled live, after the replay."""


@dataclass
class StudyHistory:
    """What a study's journals hold: the master replays it when a study resumes."""

    evaluations: list[Evaluation]
    sampled: list[SampledConfig]


class MasterObserver(Protocol):
    """What the master reports as the study runs (progress display, worker supervision)."""

    def iteration_started(self, bracket: Bracket) -> None: ...
    def job_submitted(self, config_id: tuple[int, int, int], budget: float) -> None: ...
    def evaluation_finished(self, evaluation: Evaluation) -> None: ...
    def workers_changed(self, count: int) -> None: ...


class SilentObserver:
    def iteration_started(self, bracket: Bracket) -> None:
        pass

    def job_submitted(self, config_id: tuple[int, int, int], budget: float) -> None:
        pass

    def evaluation_finished(self, evaluation: Evaluation) -> None:
        pass

    def workers_changed(self, count: int) -> None:
        pass


def derived_seed(seed: int, *parts: Any) -> int:
    """A 32-bit seed that depends on the study seed and ``parts`` only."""
    words = [seed] + [int(p * 1000) if isinstance(p, float) else int(p) for p in parts]
    return int(np.random.SeedSequence(words).generate_state(1)[0])


def seeded_draws(generator: Any, value: int) -> contextlib.AbstractContextManager[None]:
    """The config generator's random draws, seeded with ``value``, for one call into it.

    A generator with an RNG of its own (``reseed``, e.g.
    :class:`~bohb_runner.master.kde_sampler.VectorizedBOHB`) is reseeded. hpbandster's own
    generators draw from numpy's global RNG, which belongs to whoever hosts the study (a
    notebook): it is seeded for the call and its state put back afterwards. Both give the draws
    ``np.random.seed(value)`` would, so a study samples what it sampled when the master
    seeded the global RNG itself.
    """
    reseed = getattr(generator, "reseed", None)
    if callable(reseed):
        reseed(value)
        return contextlib.nullcontext()
    return _global_numpy_rng_seeded(value)


@contextlib.contextmanager
def _global_numpy_rng_seeded(value: int) -> Iterator[None]:
    """numpy's global RNG seeded with ``value`` for the block, then as it was before.

    Only the master's own calls are serialised (under its condition); a thread of the host
    process drawing from the global RNG meanwhile would share its stream for that moment.
    """
    state = np.random.get_state()
    np.random.seed(value)
    try:
        yield
    finally:
        np.random.set_state(state)


class StudyMaster(Master):
    """Base of the study's optimizers; see the module docstring.

    hpbandster's ``Master.__init__`` starts hpbandster's own Dispatcher at once, so this
    ``__init__`` sets up the same attributes itself with a :class:`StudyDispatcher` instead.
    The optimizer classes combine it with hpbandster's BOHB, HyperBand and RandomSearch.
    """

    def __init__(
        self,
        run_id: str,
        config_generator: Any,
        *,
        schedule: HyperbandSchedule,
        optimizer_name: str,
        seed: int,
        results_journal: JournalWriter,
        configs_journal: JournalWriter,
        working_directory: str = ".",
        nameserver: str = "127.0.0.1",
        nameserver_port: int | None = None,
        host: str = "127.0.0.1",
        ping_interval: float = 10,
        observer: MasterObserver | None = None,
        logger: logging.Logger | None = None,
        job_queue_sizes: tuple[int, int] = (-1, 0),
        dynamic_queue_size: bool = True,
        result_logger: Any = None,
        history: StudyHistory | None = None,
        job_timeout: float | None = None,
    ) -> None:
        self.working_directory = working_directory
        os.makedirs(self.working_directory, exist_ok=True)
        self.logger = logger or logging.getLogger(__name__)
        # reports (hpbandster's live log, observers) are made on a thread of their own, in order,
        # outside the lock: see bohb_runner.master.reports
        self.reports = OrderedReports(on_error=self.report_fatal)
        # hpbandster's json_result_logger (or None), its appends queued as reports
        self.result_logger = QueuedResultLogger(result_logger, self.reports) if result_logger is not None else None
        self.config_generator = config_generator
        self.time_ref: float | None = None
        self.iterations: list[StudyIteration] = []
        self.jobs: list[Job] = []
        self.num_running_jobs = 0
        self.job_queue_sizes = job_queue_sizes
        self.user_job_queue_sizes = job_queue_sizes
        self.dynamic_queue_size = dynamic_queue_size
        self.warmstart_iteration: list[Any] = []
        self.thread_cond = threading.Condition()
        self.config = {"time_ref": None}

        self.schedule = schedule
        self.optimizer_name = optimizer_name
        self.seed = seed
        self.results_journal = results_journal
        self.configs_journal = configs_journal
        self.observer: MasterObserver = observer or SilentObserver()
        self._failure: str | None = None
        self._history = history or StudyHistory([], [])
        self._recorded_configs = {s.config_id: s for s in self._history.sampled}
        self._replaying = False
        self._replay_pending: dict[tuple[tuple[int, int, int], float], tuple[dict, float]] = {}
        self._remaining_iterations = 0
        self._registered_sequence = 0  # the last journal line (of this run) whose result is registered
        self._unregistered: dict[int, tuple[Job, Evaluation]] = {}  # journalled, waiting for their turn
        self._finished_prefix = 0  # iterations before this index are all finished

        self.dispatcher = StudyDispatcher(
            self.job_callback,
            on_fatal=self.report_fatal,
            queue_callback=self.adjust_queue_size,
            run_id=run_id,
            ping_interval=ping_interval,
            nameserver=nameserver,
            nameserver_port=nameserver_port,
            host=host,
            logger=self.logger,
            job_timeout=job_timeout,
        )
        self.dispatcher_thread = threading.Thread(target=self.dispatcher.run, name="dispatcher", daemon=True)
        self.dispatcher_thread.start()

    # -- schedule ---------------------------------------------------------------------------

    def bracket(self, iteration: int) -> Bracket:
        return self.schedule.bracket(self.optimizer_name, iteration)

    def get_next_iteration(self, iteration: int, iteration_kwargs: dict[str, Any] | None = None) -> StudyIteration:
        bracket = self.bracket(iteration)
        return StudyIteration(
            HPB_iter=iteration,
            num_configs=list(bracket.num_configs),
            budgets=list(bracket.budgets),
            config_sampler=self._sample_configuration,
            logger=self.logger,
            result_logger=self.result_logger,
        )

    @contextlib.contextmanager
    def _seeded(self, *parts: Any) -> Iterator[None]:
        """Seed the space's RNG and the config generator's draws from ``parts``, for one sampling."""
        value = derived_seed(self.seed, *parts)
        space = getattr(self.config_generator, "configspace", None)
        if isinstance(getattr(space, "random", None), np.random.RandomState):
            space.random.seed(value)  # the stream of space.seed(value), without a new RandomState
        elif space is not None:
            space.seed(value)
        with seeded_draws(self.config_generator, value):
            yield

    def _sample_configuration(self, config_id: tuple[int, int, int], budget: float) -> tuple[dict, dict]:
        recorded = self._recorded_configs.get(config_id)
        if recorded is not None:  # sampled before a restart: the same configuration, not a new draw
            return recorded.config, recorded.config_info
        if self._replaying:
            raise _SamplingDeferred()
        with self._seeded(*config_id, 0):
            config, info = self.config_generator.get_config(budget)
        config, info = native_config(config), to_native(info or {})
        self.configs_journal.append(SampledConfig(config_id, config, info, time.time()).to_json())
        return config, info

    # -- the run loop -----------------------------------------------------------------------

    def run(
        self, n_iterations: int = 1, min_n_workers: int = 1, iteration_kwargs: dict | None = None
    ) -> list[StudyIteration]:
        """Run until ``n_iterations`` iterations are finished; raises :class:`StudyFailed`.

        A study with a history (a resumed one) first replays it: the iterations, their
        promotions and the model are rebuilt from the journal, and only what was still running
        when the previous master stopped is dispatched again.
        """
        self._wait_for_dispatcher()
        with self.thread_cond:
            self._remaining_iterations = n_iterations - len(self.iterations)
            self._replay()
        self._wait_for_workers(min_n_workers)
        if self.time_ref is None:
            self.time_ref = time.time()
            self.config["time_ref"] = self.time_ref
        with self.thread_cond:
            while True:
                self._raise_if_failed()
                if self.num_running_jobs >= self.job_queue_sizes[1] and self.num_running_jobs > self.job_queue_sizes[0]:
                    self._wait()
                    continue
                if self._advance():
                    continue
                if not self.active_iterations():
                    break
                self._wait()
        return self.iterations

    # the main thread's longest sleep: see _wait
    WAKE_INTERVAL = 1.0

    def _wait(self) -> None:
        """Wait (holding nothing) for a change, at most ``WAKE_INTERVAL`` seconds.

        A signal (Ctrl-C, SIGTERM) that the kernel delivers to another thread of the process
        only marks itself pending: Python runs its handler in the main thread, once that
        thread runs again, and an untimed wait on a condition lasts until the next result,
        which a study whose jobs run for hours may not send for hours.
        """
        self.thread_cond.wait(self.WAKE_INTERVAL)

    def active_iterations(self) -> list[int]:
        """Indices of the unfinished iterations, as hpbandster's, without rescanning the finished.

        hpbandster checks every iteration ever started on each call, and the run loop calls it
        for every job: a cost that grows with the study. Iterations finish roughly in order, so
        the scan starts after the leading run of finished ones.
        """
        while self._finished_prefix < len(self.iterations) and self.iterations[self._finished_prefix].is_finished:
            self._finished_prefix += 1
        return [
            index
            for index in range(self._finished_prefix, len(self.iterations))
            if not self.iterations[index].is_finished
        ]

    def _advance(self) -> bool:
        """Submit the next job hpbandster's loop would run, or start the next iteration.

        Returns False when nothing can be done until a result arrives. Live and replayed runs
        both go through here, so a resumed study makes the same decisions as the original.
        """
        for index in self.active_iterations():
            next_run = self.iterations[index].get_next_run()
            if next_run is not None:
                self._submit_job(*next_run)
                return True
        if self._remaining_iterations > 0:
            iteration = self.get_next_iteration(len(self.iterations))
            self.iterations.append(iteration)
            self._report("iteration_started", self.bracket(iteration.HPB_iter))
            self._remaining_iterations -= 1
            return True
        return False

    def _replay(self) -> None:
        """Feed the journal's results, in their original order, through the live code path."""
        evaluations = self._history.evaluations
        if not evaluations and not self._history.sampled:
            return
        started = time.perf_counter()
        self._replaying = True
        try:
            for number, evaluation in enumerate(evaluations, start=1):
                key = (evaluation.config_id, evaluation.budget)
                while key not in self._replay_pending:
                    try:
                        progressed = self._advance()
                    except _SamplingDeferred:
                        progressed = False
                    if not progressed:
                        raise StudyHistoryMismatch(
                            f"results.jsonl:{number}: evaluation {evaluation.config_id} on budget {evaluation.budget:g} "
                            "does not fit the study's schedule (was the journal edited or copied from another study?)"
                        )
                config, budget = self._replay_pending.pop(key)
                if config != evaluation.config:
                    raise StudyHistoryMismatch(
                        f"results.jsonl:{number}: configuration {evaluation.config_id} differs from configs.jsonl"
                    )
                self._register_result(job_from_evaluation(evaluation), evaluation, replayed=True)
            # what a live run would also have started right away (configurations already sampled)
            while True:
                try:
                    if not self._advance():
                        break
                except _SamplingDeferred:
                    break
        finally:
            self._replaying = False
        pending = list(self._replay_pending.items())
        self._replay_pending.clear()
        for (config_id, budget), (config, _) in pending:
            self._dispatch(config_id, config, budget)
        self.logger.info(
            "replayed %d evaluations in %.2f s; %d unfinished jobs dispatched again",
            len(evaluations),
            time.perf_counter() - started,
            len(pending),
        )

    def _wait_for_dispatcher(self) -> None:
        self.dispatcher.ready.wait()
        self._raise_if_failed()

    def _wait_for_workers(self, min_n_workers: int) -> None:
        with self.thread_cond:
            while self.dispatcher.number_of_workers() < min_n_workers:
                self._raise_if_failed()
                self._wait()

    def _submit_job(self, config_id: tuple[int, int, int], config: dict, budget: float) -> None:
        with self.thread_cond:
            self.num_running_jobs += 1
            if self._replaying:
                self._replay_pending[(config_id, budget)] = (config, budget)
                return
            self._dispatch(config_id, config, budget)

    def _dispatch(self, config_id: tuple[int, int, int], config: dict, budget: float) -> None:
        self.dispatcher.submit_job(config_id, config=config, budget=budget, working_directory=self.working_directory)
        self._report("job_submitted", config_id, budget)

    def adjust_queue_size(self, number_of_workers: int | None = None) -> None:
        super().adjust_queue_size(number_of_workers)
        self._report(
            "workers_changed", self.dispatcher.number_of_workers() if number_of_workers is None else number_of_workers
        )

    def _report(self, event: str, *args: Any) -> None:
        """Tell the observer about ``event``, on the reports thread, after what is already queued."""
        self.reports.submit(f"the observer's {event}", getattr(self.observer, event), *args)

    # how long a stopping master waits for the reports still queued (a hanging file system)
    REPORTS_TIMEOUT = 30.0

    def shutdown(self, shutdown_workers: bool = False) -> None:
        """Stop the dispatcher (and the workers, if asked), then make the reports still queued."""
        self.dispatcher.shutdown(shutdown_workers)
        self.dispatcher_thread.join(timeout=30)
        self.reports.close(self.REPORTS_TIMEOUT)

    # -- failures ---------------------------------------------------------------------------

    def report_fatal(self, where: str, details: str) -> None:
        """Stop the run: called from any thread when something it cannot recover from happens."""
        last_line = next((line for line in reversed(details.strip().splitlines()) if line.strip()), details)
        with self.thread_cond:
            if self._failure is None:
                self._failure = f"{where} failed: {last_line.strip()}"
                self.logger.error("%s failed:\n%s", where, details)
            self.thread_cond.notify_all()

    def _raise_if_failed(self) -> None:
        if self._failure is not None:
            raise StudyFailed(self._failure)

    # -- results ----------------------------------------------------------------------------

    def job_callback(self, job: Job) -> None:
        """A job finished: journal it (fsynced), then let hpbandster's iteration and model see it.

        The line is written under the lock, so the journal's order is the order in which the
        results are registered (what a resume replays); the fsync happens outside it, shared
        by results that arrive together (see :class:`JournalWriter`). Once its line is durable,
        a result's thread registers every journalled result up to its own, in journal order:
        lines before it are durable too (one fsync covers all earlier writes), and no thread
        waits for another's turn. What registering tells others (hpbandster's live log, the
        observers) is only queued here, and made on the reports thread
        (:mod:`bohb_runner.master.reports`): nothing under the lock waits for a file system.
        """
        with self.thread_cond:
            _normalize_job_result(job)
            datum = self.iterations[job.id[0]].data[job.id]
            evaluation = evaluation_from_job(job, datum.config_info)
            sequence = self.results_journal.write(evaluation.to_json())
            self._unregistered[sequence] = (job, evaluation)
        self.results_journal.sync(sequence)
        with self.thread_cond:
            while self._registered_sequence < sequence:
                following = self._registered_sequence + 1
                self._register_result(*self._unregistered.pop(following), replayed=False)
                self._registered_sequence = following
            self.thread_cond.notify_all()

    def _register_result(self, job: Job, evaluation: Evaluation, replayed: bool) -> None:
        """The one path every result takes, live or replayed: iteration, then model."""
        self.num_running_jobs -= 1
        if self.result_logger is not None and not replayed:
            self.result_logger(job)
        self.iterations[job.id[0]].register_result(job)
        # fitting the model draws (the imputation of inactive values); the space's RNG is not
        # used here (and is seeded before every sampling), so only the generator's draws are seeded
        with seeded_draws(self.config_generator, derived_seed(self.seed, *job.id, job.kwargs["budget"])):
            self.config_generator.new_result(job)
        if not replayed:
            self._report("evaluation_finished", evaluation)


def _normalize_job_result(job: Job) -> None:
    """Make a worker's result something hpbandster can digest: a dict with a numeric loss, or None."""
    result = to_native(job.result)
    if result is None:
        job.result = None
        return
    if not isinstance(result, dict) or "loss" not in result:
        job.exception = (
            job.exception or ""
        ) + f"worker returned {type(result).__name__} without a 'loss': {result!r:.200}"
        job.result = None
        return
    loss = result["loss"]
    if isinstance(loss, bool) or not isinstance(loss, (int, float)):
        job.exception = (job.exception or "") + f"worker returned a non-numeric loss: {loss!r:.200}"
        job.result = None
        return
    result.setdefault("info", None)
    job.result = result


def evaluation_from_job(job: Job, config_info: dict[str, Any]) -> Evaluation:
    """The journal record of a finished job."""
    result = job.result
    loss = None
    info = None
    error = job.exception
    if result is not None:
        info = result.get("info")
        if is_finite_number(result["loss"]):
            loss = float(result["loss"])
        else:
            error = error or f"loss is {result['loss']!r} (not finite)"
    elif not error:
        error = "worker returned no result"
    stamps = job.timestamps
    return Evaluation(
        config_id=tuple(job.id),
        budget=float(job.kwargs["budget"]),
        loss=loss,
        status="ok" if loss is not None else "failed",
        config=job.kwargs["config"],
        config_info=config_info or {},
        info=info,
        error=error,
        worker=job.worker_name,
        submitted=stamps.get("submitted"),
        started=stamps.get("started"),
        finished=stamps.get("finished"),
    )


def job_from_evaluation(evaluation: Evaluation) -> Job:
    """A journal record as the finished hpbandster ``Job`` it was when the master received it."""
    job = Job(evaluation.config_id, config=evaluation.config, budget=evaluation.budget)
    job.timestamps = {k: getattr(evaluation, k) for k in ("submitted", "started", "finished")}
    job.worker_name = evaluation.worker
    job.exception = evaluation.error
    job.result = {"loss": evaluation.loss, "info": evaluation.info} if evaluation.ok else None
    return job
