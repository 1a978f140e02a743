"""Pyro4's settings for a study's processes: serpent only, the listening address, the thread pool.

Pyro4 keeps its settings in one process-wide object, ``Pyro4.config``. The master and the
workers are processes of their own, where setting it once is right; a study run through the
Python API shares its process with the caller, who may use Pyro4 too: there
:func:`pyro_settings_kept` gives the caller's settings back once the study's daemons have stopped.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

import Pyro4

from bohb_runner.compat import install_serpent_numpy_support
from bohb_runner.wire.auth import install_wire_hooks

# the most connections one daemon serves at once (Pyro4 starts a thread per connection)
MAX_WORKER_CONNECTIONS = 2048


def configure_pyro(host: str = "127.0.0.1") -> None:
    """Set Pyro4 up the way every bohb-runner process needs it.

    Only serpent is accepted (never pickle: data from the network is never unpickled); daemons
    listen on loopback unless a host is given. Each worker keeps a connection to the dispatcher
    (for its results) and one to the nameserver (for its liveness pings), and Pyro's thread
    server gives each connection a thread of its pool: the pool may grow to 2,048 threads, so
    that many workers can report to one master (threads are only made as connections come).
    """
    install_serpent_numpy_support()
    install_wire_hooks()  # proxies never carry the study's key over the wire
    Pyro4.config.SERIALIZER = "serpent"
    Pyro4.config.SERIALIZERS_ACCEPTED = {"serpent"}
    Pyro4.config.HOST = host
    Pyro4.config.THREADPOOL_SIZE = max(Pyro4.config.THREADPOOL_SIZE, MAX_WORKER_CONNECTIONS)


@contextlib.contextmanager
def pyro_settings_kept() -> Iterator[None]:
    """Put every ``Pyro4.config`` setting back as it was when the block ends, however it ends.

    For a master run inside someone else's process: :func:`configure_pyro` and the master's
    own settings (``ONEWAY_THREADED``) hold while the block runs, and the block must end only
    after the study's daemons and proxies are gone, since Pyro4 reads these settings as it
    works (a daemon reads ``SERIALIZERS_ACCEPTED`` with every message).
    """
    saved = copy.deepcopy(Pyro4.config.asDict())
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(Pyro4.config, name, value)
