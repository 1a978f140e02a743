"""Serve one worker object over Pyro4 for a study, and make its results safe to send.

hpbandster's ``Worker.run`` looks for dispatchers before registering itself (a race: a master
starting at the same moment may miss the worker until its next ping), raises when the
nameserver is gone at exit, and sends whatever ``compute`` returned: a numpy value in ``info``
then breaks the call back to the dispatcher and the job is never reported. This module
registers first, then announces itself, exits cleanly, and checks each result before it
leaves the process.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import Pyro4
import Pyro4.errors
import serpent
from hpbandster.core.worker import Worker

from bohb_runner.compat import to_native
from bohb_runner.wire import auth
from bohb_runner.wire.discovery import NameserverAddress

logger = logging.getLogger(__name__)


class InvalidResult(TypeError):
    """A worker's ``compute`` returned something that cannot be a result."""


def checked_result(result: Any) -> dict[str, Any]:
    """``compute``'s return value as plain Python that serpent can send, or :class:`InvalidResult`."""
    result = to_native(result)
    if not isinstance(result, dict) or "loss" not in result:
        raise InvalidResult(f"compute() must return a dict with 'loss' and 'info', got {result!r:.200}")
    result.setdefault("info", None)
    try:
        serpent.dumps(result)
    except Exception as exc:
        raise InvalidResult(f"compute() returned a result that cannot be sent to the master: {exc}") from exc
    return result


def guard_compute(worker: Worker, repeats: int = 1) -> None:
    """Wrap the worker's ``compute`` so that every result passes :func:`checked_result`, and
    ``worker.job_started`` tells how long the current job has been running. With ``repeats`` > 1
    each job runs ``compute`` that many times (``--repeats``, see :mod:`bohb_runner.worker.repeats`)."""
    compute: Callable[..., Any] = worker.compute
    worker.job_started = None
    if repeats > 1:
        from bohb_runner.worker.repeats import repeated_compute

        compute = repeated_compute(compute, repeats, check=checked_result)

    @functools.wraps(worker.compute)
    def guarded(*args: Any, **kwargs: Any) -> dict[str, Any]:
        worker.job_started = time.monotonic()
        try:
            return checked_result(compute(*args, **kwargs))
        finally:
            worker.job_started = None

    worker.compute = guarded  # type: ignore[method-assign]


class MasterWatch:
    """Notices when the master (and the nameserver in its process) has gone away.

    A worker has no other way to know: it only ever receives calls. Every ``interval`` seconds
    it pings the nameserver; after ``misses`` failures in a row the master counts as lost. The
    pings share one connection (a new one only after a failure): with hundreds of workers, a
    connection and handshake per ping would be a steady load on the master.
    """

    def __init__(
        self, address: NameserverAddress, interval: float = 2.0, misses: int = 3, hmac_key: bytes | None = None
    ) -> None:
        self.address = address
        self.interval = interval
        self.misses = misses
        self.hmac_key = hmac_key
        self.lost = threading.Event()
        self._stop = threading.Event()

    def watch(self, daemon: Pyro4.core.Daemon) -> None:
        failures = 0
        nameserver: Pyro4.core.Proxy | None = None
        try:
            while not self._stop.wait(self.interval):
                try:
                    if nameserver is None:
                        nameserver = auth.locate_nameserver(
                            self.address.host, self.address.port, self.hmac_key, timeout=5
                        )
                    nameserver.ping()
                    failures = 0
                except Pyro4.errors.PyroError:
                    if nameserver is not None:
                        nameserver._pyroRelease()
                        nameserver = None
                    failures += 1
                    if failures >= self.misses:
                        logger.warning("the master at %s:%d is gone", self.address.host, self.address.port)
                        self.lost.set()
                        daemon.shutdown()
                        return
        finally:
            if nameserver is not None:
                nameserver._pyroRelease()

    def stop(self) -> None:
        self._stop.set()


def serve(worker: Worker, address: NameserverAddress, host: str = "127.0.0.1", hmac_key: bytes | None = None) -> bool:
    """Register ``worker`` with the study's nameserver and answer jobs until the master shuts it
    down (returns True) or the master disappears (returns False).

    The worker's daemon, its calls to the nameserver and the dispatcher, and the dispatcher's
    callback proxy it receives with each job use the study's key (``hmac_key``, default: this
    process's key; the callback always gets this process's key, see :mod:`bohb_runner.wire.auth`).
    """
    worker.nameserver, worker.nameserver_port = address.host, address.port
    daemon = auth.daemon(host, hmac_key)
    worker.pyro_daemon = daemon
    watch = MasterWatch(address, hmac_key=hmac_key)
    try:
        uri = daemon.register(worker, worker.worker_id)
        with auth.locate_nameserver(address.host, address.port, hmac_key) as ns:
            ns.register(worker.worker_id, uri)
            dispatchers = ns.list(prefix=f"hpbandster.run_{worker.run_id}.dispatcher")
        for name, dispatcher_uri in dispatchers.items():
            _announce(name, dispatcher_uri, hmac_key)
        logger.info("worker %s listening on %s", worker.worker_id, daemon.locationStr)
        threading.Thread(target=watch.watch, args=(daemon,), name="master-watch", daemon=True).start()
        daemon.requestLoop()
    finally:
        watch.stop()
        if not watch.lost.is_set():
            _unregister(worker.worker_id, address, hmac_key)
        # the worker object keeps its Pyro id otherwise, and a second daemon (for a resumed
        # master) would refuse to register it: "object or class already has a Pyro id"
        daemon.unregister(worker)
        daemon.close()
    return not watch.lost.is_set()


def _announce(name: str, uri: Any, hmac_key: bytes | None = None) -> None:
    try:
        with auth.proxy(uri, hmac_key, timeout=10) as dispatcher:
            dispatcher.trigger_discover_worker()
    except Pyro4.errors.CommunicationError as exc:
        logger.info("dispatcher %s did not answer (%s); it will find this worker itself", name, exc)


def _unregister(worker_id: str, address: NameserverAddress, hmac_key: bytes | None = None) -> None:
    try:
        with auth.locate_nameserver(address.host, address.port, hmac_key, timeout=5) as ns:
            ns.remove(worker_id)
    except Exception as exc:  # the master (and its nameserver) usually stops first
        logger.debug("could not unregister %s: %s", worker_id, exc)
