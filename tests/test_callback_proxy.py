"""The worker's kept connection to the dispatcher (bohb_runner.wire.callback_proxy), against real Pyro4
daemons on loopback: one connection for many results, and no result lost to a master that was
replaced behind a kept connection."""

from __future__ import annotations

import queue
import socket
import subprocess
import sys
import threading

import Pyro4
import Pyro4.util
import pytest

from bohb_runner.wire import auth, callback_proxy
from bohb_runner.wire.pyro import configure_pyro

KEY = b"k" * 32


class ResultSink:
    """Stands in for the dispatcher: a oneway ``register_result`` that records what arrives."""

    def __init__(self) -> None:
        self.results: queue.Queue = queue.Queue()

    @Pyro4.expose
    @Pyro4.oneway
    def register_result(self, id=None, result=None) -> None:
        self.results.put((tuple(id), result))


class ServedSink:
    """A daemon with a :class:`ResultSink`, served in a thread, on a given port (0: any)."""

    def __init__(self, port: int = 0) -> None:
        self.sink = ResultSink()
        self.daemon = Pyro4.core.Daemon(host="127.0.0.1", port=port)
        self.daemon._pyroHmacKey = KEY
        self.uri = self.daemon.register(self.sink, "hpbandster.run_test.dispatcher")
        self.thread = threading.Thread(target=self.daemon.requestLoop, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.daemon.shutdown()
        self.thread.join(timeout=10)
        self.daemon.close()

    def next_result(self):
        return self.sink.results.get(timeout=10)


@pytest.fixture
def study_key():
    configure_pyro()
    previous = auth.process_key()
    auth.use_key(KEY)
    yield
    auth.use_key(previous)
    callback_proxy._kept.clear()


def _as_received(uri) -> Pyro4.core.Proxy:
    """The callback as a worker gets it with a job: serialized by the master, parsed here."""
    serializer = Pyro4.util.SerpentSerializer()
    return serializer.loads(serializer.dumps(Pyro4.core.Proxy(uri)))


def test_every_job_of_a_dispatcher_reports_through_one_kept_connection(study_key):
    served = ServedSink()
    try:
        first = _as_received(served.uri)
        first.register_result((0, 0, 0), {"loss": 1.0})
        assert served.next_result() == ((0, 0, 0), {"loss": 1.0})
        connection = first._pyroConnection
        for index in range(1, 5):
            again = _as_received(served.uri)
            assert again is first and again._pyroHmacKey == KEY
            again.register_result((0, 0, index), {"loss": float(index)})
            assert served.next_result() == ((0, 0, index), {"loss": float(index)})
        assert first._pyroConnection is connection
    finally:
        served.close()


# a dispatcher in a process of its own, to be killed: prints its URI, then each result it gets
_DISPATCHER_PROCESS = """
import sys, Pyro4
class Sink:
    @Pyro4.expose
    @Pyro4.oneway
    def register_result(self, id=None, result=None):
        print("result", tuple(id), flush=True)
daemon = Pyro4.core.Daemon(host="127.0.0.1")
daemon._pyroHmacKey = bytes.fromhex(sys.argv[1])
print(daemon.register(Sink(), "hpbandster.run_test.dispatcher"), flush=True)
daemon.requestLoop()
"""


def test_a_result_reaches_a_new_master_behind_a_connection_the_killed_one_left(study_key):
    """kill -9 leaves the kept connection half-closed: a oneway call on it would vanish silently."""
    old_master = subprocess.Popen(
        [sys.executable, "-c", _DISPATCHER_PROCESS, KEY.hex()], stdout=subprocess.PIPE, text=True
    )
    try:
        uri = Pyro4.core.URI(old_master.stdout.readline().strip())
        callback = _as_received(uri)
        callback.register_result((0, 0, 0), {"loss": 1.0})
        assert old_master.stdout.readline().strip() == "result (0, 0, 0)"
    finally:
        old_master.kill()
        old_master.wait()
    replacement = ServedSink(port=uri.port)  # a new master behind the same address
    try:
        assert _as_received(replacement.uri) is callback
        callback.register_result((0, 0, 1), {"loss": 2.0})
        assert replacement.next_result() == ((0, 0, 1), {"loss": 2.0})
    finally:
        replacement.close()


def test_a_worker_keeps_connections_to_the_latest_dispatchers_only(study_key):
    servers = [ServedSink() for _ in range(callback_proxy.KEPT_DISPATCHERS + 1)]
    try:
        proxies = []
        for served in servers:
            proxy = _as_received(served.uri)
            proxy.register_result((0, 0, 0), None)
            served.next_result()
            proxies.append(proxy)
        assert proxies[0]._pyroConnection is None  # released: the oldest dispatcher was dropped
        assert all(p._pyroConnection is not None for p in proxies[1:])
        assert set(callback_proxy._kept) == {str(s.uri) for s in servers[1:]}
    finally:
        for served in servers:
            served.close()


def test_peer_has_closed_tells_an_open_socket_from_a_closed_one():
    ours, theirs = socket.socketpair()
    try:
        assert not callback_proxy.peer_has_closed(ours)
        theirs.sendall(b"x")  # unread data is not a close
        assert not callback_proxy.peer_has_closed(ours)
        assert ours.recv(1) == b"x"
        theirs.close()
        assert callback_proxy.peer_has_closed(ours)
    finally:
        ours.close()
    assert callback_proxy.peer_has_closed(ours)  # a closed descriptor
