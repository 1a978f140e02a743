"""How a running master is told to stop: SIGTERM (SLURM's time limit, ``scancel``) and time limits.

Both end the run the same way, by raising :class:`~bohb_runner.errors.StopRequested` in the
main thread, so that a time limit takes exactly the path a SLURM time limit takes.
"""

from __future__ import annotations

import _thread
import signal
import threading
import time
from typing import Any

from bohb_runner.errors import StopRequested, UserError


def raise_on_sigterm() -> Any:
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum: int, frame: Any) -> None:
        raise StopRequested()

    return signal.signal(signal.SIGTERM, handler)


def restore_sigterm(previous: Any) -> None:
    if previous is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, previous)


class TimeLimit:
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
