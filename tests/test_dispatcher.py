"""The dispatcher against a real Pyro4 nameserver, real worker daemons and addresses that never answer.

A worker's daemon that refuses one connection (the refusal a Pyro daemon sends when its thread
pool is full) is a real transient failure: the dispatcher gets a ``CommunicationError`` from
``start_computation`` while the worker stays registered and reachable. Nodes that died are
stood in for by one listening socket that never accepts: the kernel completes the TCP handshake,
Pyro's own handshake then waits for its timeout, as a call to a dead node's address does.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time

import pytest
from hpbandster.core.dispatcher import Worker as WorkerHandle
from hpbandster.core.worker import Worker

from bohb_runner.master.dispatcher import StudyDispatcher
from bohb_runner.wire import auth
from bohb_runner.wire.discovery import NameserverAddress
from bohb_runner.wire.nameserver import StudyNameserver
from bohb_runner.wire.pyro import configure_pyro
from bohb_runner.worker.runtime import guard_compute, serve

from conftest import wait_until

KEY = b"d" * 32
RUN_ID = "dispatch-test"
UNREACHABLE_WORKERS = 200


class SquareWorker(Worker):
    def compute(self, config_id, config, budget, working_directory, **kwargs):
        return {"loss": config["x"] ** 2 + budget, "info": {}}


@pytest.fixture
def nameserver():
    configure_pyro()
    previous = auth.process_key()
    auth.use_key(KEY)
    served = StudyNameserver()
    host, port = served.start()
    yield NameserverAddress(host, port, RUN_ID, "test", 0, time.time())
    served.shutdown()
    auth.use_key(previous)


class Dispatching:
    """A StudyDispatcher serving in a thread; results and fatal errors are collected."""

    def __init__(self, address: NameserverAddress) -> None:
        self.results: queue.Queue = queue.Queue()
        self.fatal: list[str] = []
        self.dispatcher = StudyDispatcher(
            self.results.put,
            on_fatal=lambda where, details: self.fatal.append(f"{where}: {details}"),
            run_id=RUN_ID,
            ping_interval=3600,  # discovery rounds only when the test or a failure asks for one
            nameserver=address.host,
            nameserver_port=address.port,
            host="127.0.0.1",
        )
        self.thread = threading.Thread(target=self.dispatcher.run, name="dispatcher", daemon=True)
        self.thread.start()
        assert self.dispatcher.ready.wait(30)

    def idle(self) -> set[str]:
        with self.dispatcher.discover_cond:
            return set(self.dispatcher.idle_workers)

    def pool(self) -> set[str]:
        with self.dispatcher.discover_cond:
            return set(self.dispatcher.worker_pool)

    def submit(self, *ks: int) -> None:
        for k in ks:
            self.dispatcher.submit_job((0, 0, k), config={"x": k / 10}, budget=1.0, working_directory="unused")

    def close(self) -> None:
        self.dispatcher.shutdown()
        self.thread.join(timeout=30)
        assert not self.fatal, self.fatal


def start_worker(address: NameserverAddress, index: int) -> Worker:
    worker = SquareWorker(run_id=RUN_ID, id=index, logger=logging.getLogger(f"test.worker{index}"))
    guard_compute(worker)
    threading.Thread(target=serve, args=(worker, address), daemon=True).start()
    wait_until(lambda: registered(address).get(worker.worker_id), 30, f"worker {index} to register")
    return worker


def registered(address: NameserverAddress) -> dict[str, str]:
    with auth.locate_nameserver(address.host, address.port, timeout=10) as ns:
        return ns.list(prefix=f"hpbandster.run_{RUN_ID}.worker.")


def refuse_connections(worker: Worker, count: float) -> threading.Event:
    """The worker's own daemon refuses its next ``count`` connections (all, with ``inf``), with
    the MSG_CONNECTFAIL that a daemon whose thread pool is full sends. Returns an event set at
    the first refusal."""
    daemon = worker.pyro_daemon
    accept = daemon.validateHandshake
    refused = threading.Event()
    left = [count]

    def validate(conn, data):
        if left[0] > 0:
            left[0] -= 1
            refused.set()
            raise ValueError("no free workers (refused by the test)")
        return accept(conn, data)

    daemon.validateHandshake = validate
    return refused


def results(dispatching: Dispatching, count: int, timeout: float = 30) -> list:
    jobs = []
    deadline = time.monotonic() + timeout
    for _ in range(count):
        try:
            jobs.append(dispatching.results.get(timeout=max(0.1, deadline - time.monotonic())))
        except queue.Empty:
            raise AssertionError(f"only {len(jobs)} of {count} results within {timeout} s") from None
    return sorted(jobs, key=lambda job: job.id)


def test_a_worker_that_refused_one_connection_gets_the_next_jobs(nameserver):
    worker = start_worker(nameserver, 0)  # registered first: found by the dispatcher's first round
    dispatching = Dispatching(nameserver)
    try:
        wait_until(lambda: worker.worker_id in dispatching.idle(), 30, "the worker to be idle")
        refused = refuse_connections(worker, 1)  # the job's connection is the first one after discovery
        dispatching.submit(0, 1, 2)
        jobs = results(dispatching, 3)
        assert refused.is_set()
        assert [job.id for job in jobs] == [(0, 0, 0), (0, 0, 1), (0, 0, 2)]
        assert [job.result["loss"] for job in jobs] == [1.0, 1.01, 1.04]
        assert all(job.exception is None and job.worker_name == worker.worker_id for job in jobs)
        assert dispatching.idle() == {worker.worker_id}
    finally:
        dispatching.close()


def test_a_worker_that_refuses_every_connection_is_dropped_and_its_job_runs_elsewhere(nameserver):
    gone = start_worker(nameserver, 0)
    dispatching = Dispatching(nameserver)
    try:
        wait_until(lambda: gone.worker_id in dispatching.idle(), 30, "the first worker to be idle")
        refuse_connections(gone, float("inf"))
        dispatching.submit(0)
        wait_until(lambda: gone.worker_id not in dispatching.pool(), 30, "the refusing worker to be dropped")
        assert gone.worker_id not in registered(nameserver)
        other = start_worker(nameserver, 1)  # announces itself: found at once
        (job,) = results(dispatching, 1)
        assert job.id == (0, 0, 0) and job.worker_name == other.worker_id and job.result["loss"] == 1.0
    finally:
        dispatching.close()


@pytest.fixture
def blackhole():
    """A port that completes TCP handshakes (up to its backlog) and never says a word."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    yield listener.getsockname()[1]
    listener.close()


def timed(call, bound: float) -> float:
    """Seconds ``call`` took; fails at ``bound`` instead of waiting for a call that would take far longer."""
    finished = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            failure.append(exc)
        finally:
            finished.set()

    started = time.monotonic()
    threading.Thread(target=run, daemon=True).start()
    assert finished.wait(bound), f"{call.__name__} still running after {bound} s"
    if failure:
        raise failure[0]
    return time.monotonic() - started


def known_dead(dispatcher: StudyDispatcher, dead: dict[str, str]) -> None:
    """Put ``dead`` into the pool, as workers that answered once and whose nodes have died since."""
    with dispatcher.discover_cond:
        for name, uri in dead.items():
            handle = WorkerHandle(name, uri)
            auth.sign(handle.proxy)
            dispatcher.worker_pool[name] = handle


def test_shutdown_and_discovery_stay_within_one_bound_with_200_unreachable_workers(nameserver, blackhole):
    dispatching = Dispatching(nameserver)
    dispatcher = dispatching.dispatcher
    dead = {f"hpbandster.run_{RUN_ID}.worker.dead.{i}": f"PYRO:worker{i}@127.0.0.1:{blackhole}" for i in range(200)}
    try:
        live = start_worker(nameserver, 0)
        with auth.locate_nameserver(nameserver.host, nameserver.port, timeout=10) as ns:
            for name, uri in dead.items():
                ns.register(name, uri)
        slack = 5.0  # a loaded machine; the sequential rounds would take 200 times the timeout

        # a round that finds 200 registered workers that never answer, and one that does
        seconds = timed(dispatcher._discover_once, dispatcher.PROBE_TIMEOUT + slack)
        print(f"discovery round, 200 new unreachable workers: {seconds:.1f} s")
        assert dispatching.pool() == {live.worker_id}

        # the same 200 as if they had answered once and their nodes had died since
        known_dead(dispatcher, dead)
        seconds = timed(dispatcher._discover_once, dispatcher.PROBE_TIMEOUT + slack)
        print(f"discovery round, 200 known workers that died: {seconds:.1f} s")
        assert dispatching.pool() == {live.worker_id}
        assert set(registered(nameserver)) == {live.worker_id}  # the dead are forgotten by the nameserver too

        known_dead(dispatcher, dead)
        seconds = timed(dispatcher.shutdown_all_workers, dispatcher.SHUTDOWN_TIMEOUT + slack)
        print(f"shutdown, 200 unreachable workers: {seconds:.1f} s")
        # the one reachable worker among them was asked too: it has shut down and unregistered
        wait_until(lambda: live.worker_id not in registered(nameserver), 30, "the live worker to shut down")
    finally:
        dispatching.close()
