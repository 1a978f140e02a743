"""The dispatcher's callback proxy that a worker receives with every job, kept open across jobs.

hpbandster's dispatcher sends itself along with each job, and the worker reports the result
through that proxy. Deserialized afresh for every job, the proxy opens a new connection per
result: a TCP connect, Pyro's handshake (its metadata serialized and parsed on both sides), a
connection thread in the master, and a close. With zero-cost or one-epoch jobs that is a large
part of the master's work per job, and the master's CPU is what limits a study with many
workers. Here a worker keeps one proxy, and so one connection, per dispatcher.

A kept connection can go stale: a master that was killed leaves it half-closed, and a oneway
call on it (``register_result`` is oneway) would vanish without an error. The dispatcher never
sends anything unasked on this connection, so a connection with something to read has been
closed by the other side; such a connection is dropped and a fresh one made before the call,
and a call that fails to be sent is tried once more on a fresh connection.
"""

from __future__ import annotations

import select
import socket
import threading
from typing import Any

import Pyro4.core
import Pyro4.errors

# proxies to the dispatchers this worker reported to recently, by URI; see KEPT_DISPATCHERS
_kept: dict[str, ReusedCallbackProxy] = {}
_kept_lock = threading.Lock()
# a worker reports to one dispatcher at a time; a resumed master is a new one (new port)
KEPT_DISPATCHERS = 2


class ReusedCallbackProxy(Pyro4.core.Proxy):
    """A Pyro4 proxy whose connection outlives one job; see the module docstring."""

    def _pyroInvoke(self, methodname: str, vargs: Any, kwargs: Any, flags: int = 0, objectId: Any = None) -> Any:
        connection = self._pyroConnection
        if connection is not None and peer_has_closed(connection.sock):
            self._pyroRelease()
        try:
            return super()._pyroInvoke(methodname, vargs, kwargs, flags, objectId)
        except Pyro4.errors.ConnectionClosedError:
            # Pyro has released the broken connection, so this call connects anew. The
            # dispatcher's methods are oneway, and it ignores a result it already has
            return super()._pyroInvoke(methodname, vargs, kwargs, flags, objectId)


def peer_has_closed(sock: socket.socket) -> bool:
    """True when the other end closed ``sock`` (or it failed), as far as can be seen without waiting.

    ``poll`` rather than ``select``, which cannot take descriptors above 1023.
    """
    try:
        poller = select.poll()
        poller.register(sock, select.POLLIN | select.POLLPRI)
        events = poller.poll(0)
        if not events:
            return False
        if events[0][1] & (select.POLLERR | select.POLLHUP | select.POLLNVAL):
            return True
        return sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):  # a closed descriptor
        return True


def reused_callback_proxy(state: tuple, hmac_key: bytes | None) -> ReusedCallbackProxy:
    """The kept proxy for the URI in Pyro's serialized proxy ``state``, made if there is none.

    ``state`` is what ``Proxy.__getstate_from_dict__`` takes; the key is the receiving
    process's own (see :mod:`bohb_runner.wire.auth`).
    """
    uri = str(state[0])
    with _kept_lock:
        proxy = _kept.get(uri)
        if proxy is not None and proxy._pyroHmacKey == hmac_key:
            return proxy
        proxy = ReusedCallbackProxy.__new__(ReusedCallbackProxy)
        proxy.__setstate_from_dict__(state)
        proxy._pyroHmacKey = hmac_key
        _kept[uri] = proxy
        while len(_kept) > KEPT_DISPATCHERS:
            _kept.pop(next(iter(_kept)))._pyroRelease()
    return proxy
