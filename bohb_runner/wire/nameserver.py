"""The study's Pyro4 nameserver, run in a thread of the master process."""

from __future__ import annotations

import logging
import threading

import Pyro4.naming

from bohb_runner.wire import auth

logger = logging.getLogger(__name__)


class StudyNameserver:
    """A Pyro4 nameserver on ``host`` (loopback by default), without UDP broadcast.

    hpbandster's ``NameServer`` also answers broadcast lookups on the network; a study never
    needs them (workers read the address from the study directory), so none is opened. It
    accepts only clients holding the study's key (``hmac_key``, default: this process's key,
    see :mod:`bohb_runner.wire.auth`).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, hmac_key: bytes | None = None) -> None:
        self.host = host
        self.port = port
        self.hmac_key = hmac_key
        self._daemon: Pyro4.naming.NameServerDaemon | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> tuple[str, int]:
        _uri, daemon = auth.start_nameserver(self.host, self.port, self.hmac_key)
        self._daemon = daemon
        host, port = daemon.locationStr.rsplit(":", 1)
        self.host, self.port = host.strip("[]"), int(port)
        self._thread = threading.Thread(target=daemon.requestLoop, name="pyro-nameserver", daemon=True)
        self._thread.start()
        logger.info(
            "nameserver listening on %s:%d (%s)",
            self.host,
            self.port,
            "clients must hold the study's secret" if daemon._pyroHmacKey else "no key: loopback only",
        )
        return self.host, self.port

    def shutdown(self) -> None:
        if self._daemon is not None:
            self._daemon.shutdown()
            if self._thread is not None:
                self._thread.join(timeout=10)
            self._daemon.close()
            self._daemon = None
            logger.info("nameserver stopped")
