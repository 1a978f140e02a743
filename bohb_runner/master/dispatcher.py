"""hpbandster's Dispatcher, with threads that cannot die silently or deadlock the study.

hpbandster's ``Dispatcher`` runs two background threads, worker discovery and job dispatch.
An exception in either (a worker that vanished between two calls, a value serpent refuses, a
nameserver that went away) ends the thread while it holds the dispatcher's lock: the study
then waits forever without a word. This subclass keeps hpbandster's data structures and Pyro
interface (workers and hpbandster's tools see no difference) and replaces the two loops and
the result callback with versions that

* never call into the network or the master while holding the lock,
* hand a job whose worker cannot be reached back to the queue instead of losing it,
* remove dead workers from the pool and the nameserver, and give a worker that could not be
  reached for a moment (its job went back to the queue) work again once it answers,
* ask all workers at once, within one bound, when probing them and when shutting them down:
  with hundreds of workers on nodes that died, one call after the other (each waiting for its
  timeout) would outlast SLURM's signal margin,
* report anything unexpected to the master through ``on_fatal``, which stops the study with
  an error on the terminal and the traceback in the log.

Every daemon and proxy it makes, hpbandster's proxies to workers included, carries the study's
key (:mod:`bohb_runner.wire.auth`): the dispatcher talks only to holders of the study's secret.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import traceback
from collections.abc import Callable, Hashable, Sequence
from typing import Any, TypeVar

import Pyro4
import Pyro4.errors
from hpbandster.core.dispatcher import Dispatcher, Job
from hpbandster.core.dispatcher import Worker as WorkerHandle

from bohb_runner.store.journal import JournalClosed
from bohb_runner.wire import auth

logger = logging.getLogger(__name__)

FatalHandler = Callable[[str, str], None]

Key = TypeVar("Key", bound=Hashable)
Answer = TypeVar("Answer")

# the most calls to workers in flight at once (one thread each, only while a round lasts)
MAX_PARALLEL_CALLS = 256
# seconds a round of calls waits past its bound for the answers of calls that timed out at it
CALL_GRACE = 1.0


def call_each(
    keys: Sequence[Key],
    call: Callable[[Key, float], Answer],
    *,
    within: float,
    stop: threading.Event | None = None,
    max_parallel: int = MAX_PARALLEL_CALLS,
) -> dict[Key, Answer]:
    """``call(key, timeout)`` for every key, up to ``max_parallel`` at once, all within ``within`` seconds.

    Each call gets the time left as its timeout (for its socket), so the round ends in about
    ``within`` seconds (plus ``CALL_GRACE``) however many keys there are and however many never
    answer; keys whose call did not start or end by then are missing from the answers (no
    verdict this round). A set ``stop`` ends the wait at once. An exception from a call is
    raised here, in the caller's thread, after the round.
    """
    deadline = time.monotonic() + within
    waiting = collections.deque(keys)
    answers: dict[Key, Answer] = {}
    failures: list[BaseException] = []
    lock = threading.Condition()
    running = min(max_parallel, len(waiting))

    def work() -> None:
        nonlocal running
        try:
            while True:
                with lock:
                    left = deadline - time.monotonic()
                    if not waiting or left <= 0 or (stop is not None and stop.is_set()):
                        return
                    key = waiting.popleft()
                try:
                    answer = call(key, left)
                except Exception as exc:
                    with lock:
                        failures.append(exc)
                    continue
                with lock:
                    answers[key] = answer
        finally:
            with lock:
                running -= 1
                lock.notify_all()

    for index in range(running):
        threading.Thread(target=work, name=f"worker-call-{index}", daemon=True).start()
    with lock:
        # calls started before the deadline end by it (their timeout): a moment more for their answers
        end = deadline + CALL_GRACE
        while running and (left := end - time.monotonic()) > 0 and not (stop is not None and stop.is_set()):
            lock.wait(min(left, 0.2))
        if failures:
            raise failures[0]
        return dict(answers)


class JobQueue:
    """FIFO of jobs waiting for a worker, where a job that could not be started goes back first."""

    def __init__(self) -> None:
        self._jobs: collections.deque[Job] = collections.deque()

    def put(self, job: Job) -> None:
        self._jobs.append(job)

    def put_front(self, job: Job) -> None:
        self._jobs.appendleft(job)

    def get(self) -> Job:
        return self._jobs.popleft()

    def empty(self) -> bool:
        return not self._jobs

    def qsize(self) -> int:
        return len(self._jobs)


class StudyDispatcher(Dispatcher):
    """Assigns jobs to workers found through the nameserver; see the module docstring."""

    # a job whose worker dies this many times is recorded as failed rather than tried again
    MAX_LOST = 3
    # seconds a discovery round gives all workers to answer (one that does not is dead)
    PROBE_TIMEOUT = 10.0
    # seconds shutting down gives all workers to take the request
    SHUTDOWN_TIMEOUT = 5.0

    def __init__(
        self,
        new_result_callback: Callable[[Job], None],
        *,
        on_fatal: FatalHandler,
        job_timeout: float | None = None,
        hmac_key: bytes | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(new_result_callback, logger=kwargs.pop("logger", logger), **kwargs)
        self.hmac_key = hmac_key  # None: this process's study key
        self.waiting_jobs = JobQueue()
        self.job_timeout = job_timeout
        self._lost_counts: dict[Any, int] = {}
        self._on_fatal = on_fatal
        self.ready = threading.Event()
        self._stopping = threading.Event()  # ends a discovery round that is waiting for answers
        self._discovery_requested = False
        self._threads: list[threading.Thread] = []
        self._worker_prefix = f"hpbandster.run_{self.run_id}.worker."

    # -- life cycle -------------------------------------------------------------------------

    def run(self) -> None:
        """Serve Pyro requests until shutdown; runs in the master's dispatcher thread."""
        try:
            self.pyro_daemon = auth.daemon(self.host, self.hmac_key)
            with self._nameserver() as ns:
                uri = self.pyro_daemon.register(self, self.pyro_id)
                ns.register(self.pyro_id, uri)
            # what each job tells its worker to report to: a bare proxy, made once. Pyro would
            # otherwise turn ``self`` into a new proxy with this class's metadata for every job;
            # the worker gets the metadata when it connects (and keeps the connection, see
            # bohb_runner.wire.callback_proxy)
            self.callback = Pyro4.core.Proxy(uri)
            self.logger.info("dispatcher listening on %s", self.pyro_daemon.locationStr)
            threads = [(self.discover_workers, "discover-workers"), (self.job_runner, "job-runner")]
            if self.job_timeout:
                threads.append((self.abandon_overdue_jobs, "job-timeout"))
            for target, name in threads:
                thread = threading.Thread(target=target, name=name, daemon=True)
                thread.start()
                self._threads.append(thread)
            self.ready.set()
            self.pyro_daemon.requestLoop()
        except Exception:
            self._fail("dispatcher", traceback.format_exc())
        finally:
            self.ready.set()
            self._stop_threads()
            self._unregister()

    def shutdown(self, shutdown_workers: bool = False) -> None:
        if shutdown_workers:
            self.shutdown_all_workers()
        daemon = getattr(self, "pyro_daemon", None)
        if daemon is not None:
            daemon.shutdown()

    def shutdown_all_workers(self, rediscover: bool = False) -> None:
        """Ask every worker to exit, all at once, within ``SHUTDOWN_TIMEOUT`` seconds in all;
        one that is already gone is no reason to wait for it."""
        with self.discover_cond:
            workers = {name: handle.proxy._pyroUri for name, handle in self.worker_pool.items()}

        def ask(name: str, timeout: float) -> bool:
            try:
                with auth.proxy(workers[name], self.hmac_key, timeout=timeout) as proxy:
                    proxy.shutdown()
                return True
            except Exception as exc:
                self.logger.info("could not shut down worker %s: %s", name, exc)
                return False

        answered = call_each(list(workers), ask, within=self.SHUTDOWN_TIMEOUT)
        unreached = len(workers) - sum(answered.values())
        if unreached:
            self.logger.info("%d of %d workers could not be asked to shut down", unreached, len(workers))

    def _stop_threads(self) -> None:
        self._stopping.set()
        with self.discover_cond:
            self.shutdown_all_threads = True
            self.discover_cond.notify_all()  # two conditions share one lock: wake both threads
            self.runner_cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=10)

    def _unregister(self) -> None:
        try:
            with self._nameserver(timeout=5) as ns:
                ns.remove(self.pyro_id)
        except Exception as exc:  # the nameserver may already be down at the end of a study
            self.logger.debug("could not unregister the dispatcher: %s", exc)

    def _nameserver(self, timeout: float | None = None) -> Pyro4.core.Proxy:
        return auth.locate_nameserver(self.nameserver, self.nameserver_port, self.hmac_key, timeout=timeout)

    def _fail(self, where: str, details: str) -> None:
        self.logger.error("%s failed:\n%s", where, details)
        self._on_fatal(where, details)

    # -- worker discovery -------------------------------------------------------------------

    def discover_workers(self) -> None:
        """Every ``ping_interval`` seconds, or as soon as triggered: add new workers, drop dead ones."""
        try:
            while True:
                with self.discover_cond:
                    if self.shutdown_all_threads:
                        return
                    self._discovery_requested = False
                self._discover_once()
                with self.discover_cond:
                    if not self._discovery_requested and not self.shutdown_all_threads:
                        self.discover_cond.wait(self.ping_interval)
        except Exception:
            self._fail("worker discovery", traceback.format_exc())

    def _discover_once(self) -> None:
        """One discovery round; called without the lock, takes it only to update the pool.

        Every known worker and every newly registered one is asked at once whether it is busy
        (``PROBE_TIMEOUT`` for the whole round). A known worker that answers "not busy" while
        the pool has it neither idle nor running a job is made idle again: that is a worker
        whose job could not be sent a moment ago (``_start_on_worker``), or one that was busy
        with another master's job when it was found.
        """
        with self._nameserver(timeout=self.PROBE_TIMEOUT) as ns:
            registered = ns.list(prefix=self._worker_prefix)
        with self.discover_cond:
            known = {name: str(handle.proxy._pyroUri) for name, handle in self.worker_pool.items()}
        # a worker that restarted under its old name registers a new address: the old one is dead
        moved = {name for name, uri in known.items() if registered.get(name, uri) != uri}
        targets = {name: uri for name, uri in known.items() if name not in moved}
        targets.update({name: uri for name, uri in registered.items() if name not in known or name in moved})
        answers = call_each(
            list(targets),
            lambda name, timeout: _probe_worker(targets[name], self.hmac_key, timeout),
            within=self.PROBE_TIMEOUT,
            stop=self._stopping,
        )
        dead = [name for name in known if name in moved or (name in answers and answers[name] is None)]
        found: dict[str, tuple[WorkerHandle, bool]] = {}
        for name, uri in registered.items():
            busy = answers.get(name)
            if (name not in known or name in moved) and busy is not None:
                handle = WorkerHandle(name, uri)
                auth.sign(handle.proxy, self.hmac_key)
                found[name] = (handle, busy)
        idle_again = [name for name in known if name not in dead and answers.get(name) is False]
        if dead:
            self._forget_dead_workers({n: known[n] for n in dead if n not in found}, registered)
        lost_jobs: list[Job] = []
        revived: list[str] = []
        with self.discover_cond:
            for name in dead:
                handle = self.worker_pool.pop(name, None)
                self.idle_workers.discard(name)
                if handle is not None and handle.runs_job is not None:
                    job = self.running_jobs.pop(handle.runs_job, None)
                    if job is not None:
                        lost_jobs.append(job)
            for name, (handle, busy) in found.items():
                self.worker_pool[name] = handle
                if not busy:
                    self.idle_workers.add(name)
                self.logger.info("discovered worker %s", name)
            for name in idle_again:
                handle = self.worker_pool.get(name)
                if handle is not None and handle.runs_job is None and name not in self.idle_workers:
                    self.idle_workers.add(name)
                    revived.append(name)
            changed = bool(found or dead)
            pool_size = len(self.worker_pool)
            if changed or revived:
                self.runner_cond.notify_all()
        for name in revived:
            self.logger.info("worker %s answers again and is idle: it gets the next job", name)
        for name in dead:
            self.logger.warning("worker %s is gone", name)
        for job in lost_jobs:
            self.handle_lost_job(job)
        if changed and self.queue_callback is not None:
            self.queue_callback(pool_size)

    def _forget_dead_workers(self, dead: dict[str, str], registered: dict[str, str]) -> None:
        """Remove dead workers' entries from the nameserver (only the entries of the dead)."""
        try:
            with self._nameserver(timeout=5) as ns:
                for name, uri in dead.items():
                    if registered.get(name) == uri:
                        ns.remove(name)
        except Exception as exc:
            self.logger.debug("could not remove dead workers from the nameserver: %s", exc)

    def handle_lost_job(self, job: Job) -> None:
        """A job whose worker died goes to another worker.

        hpbandster records such a job as crashed ("Worker died unexpectedly."), so one node
        failure costs a configuration its chance; here it runs again, unless it has now taken
        down ``MAX_LOST`` workers (a job that kills its worker, e.g. by running out of memory).
        """
        lost = self._lost_counts.get(job.id, 0) + 1
        self._lost_counts[job.id] = lost
        if lost >= self.MAX_LOST:
            self.logger.warning(
                "job %s was lost with worker %s, %d times: recording it as failed", job.id, job.worker_name, lost
            )
            self._finish_job(job, None, f"the workers running this job died {lost} times (last: {job.worker_name})")
            return
        self.logger.warning("job %s was lost with worker %s; handing it to another worker", job.id, job.worker_name)
        with self.runner_cond:
            job.worker_name = None
            self.waiting_jobs.put_front(job)
            self.runner_cond.notify_all()

    @Pyro4.expose
    @Pyro4.oneway
    def trigger_discover_worker(self) -> None:
        """Called by a worker that just registered, and when a worker could not be reached."""
        with self.discover_cond:
            self._discovery_requested = True
            self.discover_cond.notify_all()

    # -- job dispatch -----------------------------------------------------------------------

    def submit_job(self, id: Any, **kwargs: Any) -> None:
        """Queue a job and wake the job runner.

        hpbandster's version wakes one waiting thread (``notify``); with ``--job-timeout`` the
        timeout watch waits on the same condition, may be the one woken, and the job then
        waits forever in the queue while the master waits for its result.
        """
        with self.runner_cond:
            job = Job(id, **kwargs)
            job.time_it("submitted")
            self.waiting_jobs.put(job)
            self.runner_cond.notify_all()

    def job_runner(self) -> None:
        """Start waiting jobs on idle workers, one at a time, never losing a job."""
        try:
            while True:
                with self.runner_cond:
                    while not self.shutdown_all_threads and (self.waiting_jobs.empty() or not self.idle_workers):
                        self.runner_cond.wait()
                    if self.shutdown_all_threads:
                        return
                    job = self.waiting_jobs.get()
                    name = self.idle_workers.pop()
                    worker = self.worker_pool[name]
                    job.time_it("started")
                    job.worker_name = name
                    worker.runs_job = job.id
                    self.running_jobs[job.id] = job
                self._start_on_worker(job, worker)
        except Exception:
            self._fail("job dispatch", traceback.format_exc())

    def _start_on_worker(self, job: Job, worker: WorkerHandle) -> None:
        try:
            worker.proxy.start_computation(self.callback, job.id, **job.kwargs)
            self.logger.debug("job %s started on %s", job.id, worker.name)
        except Pyro4.errors.CommunicationError as exc:
            # the worker stays in the pool, neither idle nor busy, until the discovery round
            # asked for here has heard from it: idle again if it answers, dropped if it does not
            self.logger.warning("worker %s unreachable (%s); job %s goes back to the queue", worker.name, exc, job.id)
            with self.runner_cond:
                self.running_jobs.pop(job.id, None)
                worker.runs_job = None
                self.waiting_jobs.put_front(job)
                self.runner_cond.notify_all()  # another idle worker may take it at once
            self.trigger_discover_worker()
        except Exception as exc:  # e.g. a value the serializer refuses: a failed job, not a hang
            self.logger.error("could not send job %s to %s: %s", job.id, worker.name, exc)
            with self.runner_cond:
                self.running_jobs.pop(job.id, None)
                worker.runs_job = None
                self.idle_workers.add(worker.name)
                self.runner_cond.notify_all()
            self._finish_job(job, None, f"could not send the job to its worker: {exc!r}")

    # -- results ----------------------------------------------------------------------------

    @Pyro4.expose
    @Pyro4.callback
    @Pyro4.oneway
    def register_result(self, id: Any = None, result: Any = None) -> None:
        """Called by a worker (over Pyro) when its job is done."""
        try:
            job_id = tuple(id) if isinstance(id, (list, tuple)) else id
            with self.runner_cond:
                job = self.running_jobs.pop(job_id, None)
                if job is None:
                    self.logger.warning(
                        "ignoring a result for job %s, which is not running (abandoned, or a repeated report)", job_id
                    )
                    self._free_worker_of(job_id)
                    return
                worker = self.worker_pool.get(job.worker_name)
                if worker is not None and worker.runs_job == job_id:
                    worker.runs_job = None
                    self.idle_workers.add(job.worker_name)
                    self.runner_cond.notify_all()
            # plain Python already (serpent carries no numpy); the master normalizes the result
            result = result if isinstance(result, dict) else {}
            self._finish_job(job, result.get("result"), result.get("exception"))
        except Exception:
            self._fail("result registration", traceback.format_exc())

    def _free_worker_of(self, job_id: Any) -> None:
        """A worker reporting an abandoned job is free again (called with the lock held)."""
        for name, worker in self.worker_pool.items():
            if worker.runs_job == job_id:
                worker.runs_job = None
                self.idle_workers.add(name)
                self.runner_cond.notify_all()

    def abandon_overdue_jobs(self) -> None:
        """Record jobs running longer than ``job_timeout`` as failed; their workers stay busy
        until they report (a hung worker restarts itself, see ``worker_process``)."""
        try:
            interval = min(1.0, self.job_timeout / 10)
            while True:
                with self.runner_cond:
                    if self.shutdown_all_threads:
                        return
                    self.runner_cond.wait(interval)
                    now = time.time()
                    overdue = [
                        job
                        for job in self.running_jobs.values()
                        if now - job.timestamps.get("started", now) > self.job_timeout
                    ]
                    for job in overdue:
                        del self.running_jobs[job.id]
                for job in overdue:
                    self.logger.warning(
                        "job %s exceeded --job-timeout %g s on %s: abandoned", job.id, self.job_timeout, job.worker_name
                    )
                    self._finish_job(
                        job,
                        None,
                        f"abandoned: ran longer than --job-timeout {self.job_timeout:g} s on {job.worker_name}",
                    )
        except Exception:
            self._fail("job timeout watch", traceback.format_exc())

    def _finish_job(self, job: Job, result: Any, exception: str | None) -> None:
        """Hand a finished (or failed) job to the master; called without the lock."""
        job.time_it("finished")
        job.result = result
        job.exception = exception
        try:
            self.new_result_callback(job)
        except JournalClosed:  # a late result: not journalled, so not lost either
            self.logger.warning("job %s finished while the study was stopping; it runs again on resume", job.id)
        except Exception:
            self._fail("the master's result handling", traceback.format_exc())


def _probe_worker(
    uri: Any, hmac_key: bytes | None = None, timeout: float = StudyDispatcher.PROBE_TIMEOUT
) -> bool | None:
    """None if the worker at ``uri`` cannot be reached within ``timeout`` seconds (or refuses the
    study's key), else whether it says it is busy."""
    try:
        with auth.proxy(uri, hmac_key, timeout=timeout) as proxy:
            return bool(proxy.is_busy())
    except Pyro4.errors.CommunicationError:
        return None
