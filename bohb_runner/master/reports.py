"""The master's reports, done in order on one thread of their own, never under the master's lock.

Under its lock the master only changes state: the journal line, the iteration, the model. What
it then tells others may block for long: hpbandster's live log opens and appends to two files
for every result (slow on a shared file system), the clean-up removes a finished iteration's
artifacts (``rmtree``, slower still), and observers (the progress display, the clean-up) do
whatever they do. Done under the lock, one slow file system call would stop every result from
being registered and every job from being sent. So the master queues each report, in the order
of its state changes, and this module's thread makes them one after the other: a report never
overtakes an earlier one (hpbandster's ``results.json`` has the journal's order, a clean-up
comes after the result that made it due), and the journal, written under the lock, stays what
a resume replays.
"""

from __future__ import annotations

import collections
import copy
import logging
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from hpbandster.core.dispatcher import Job

logger = logging.getLogger(__name__)

ErrorHandler = Callable[[str, str], None]


class OrderedReports:
    """A FIFO of calls made by one daemon thread; a call that raises is handed to ``on_error``."""

    def __init__(self, on_error: ErrorHandler, name: str = "master-reports") -> None:
        self._on_error = on_error
        self._calls: collections.deque[tuple[str, Callable[..., Any], tuple[Any, ...]]] = collections.deque()
        self._cond = threading.Condition()
        self._unfinished = 0
        self._closed = False
        # who waits on the condition: the thread when it has nothing to do, flush() callers.
        # A report is queued for every job several times over; waking a thread that is busy
        # anyway would cost a thread switch each (the master's CPU per job is what limits it)
        self._thread_waiting = False
        self._flushing = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, what: str, call: Callable[..., Any], *args: Any) -> None:
        """Queue ``call(*args)``; ``what`` names it in an error. Cheap: safe under any lock."""
        with self._cond:
            if self._closed:  # a late report after shutdown: the journal has the result
                logger.debug("report %s after shutdown: left out", what)
                return
            self._calls.append((what, call, args))
            self._unfinished += 1
            if self._thread_waiting:
                self._cond.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every report queued so far is made; False if ``timeout`` ran out first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._flushing += 1
            try:
                while self._unfinished:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        return False
                    self._cond.wait(left)
            finally:
                self._flushing -= 1
        return True

    def close(self, timeout: float) -> None:
        """Make what is queued (for up to ``timeout`` seconds), then stop the thread.

        Reports still waiting then are dropped with a log line: each is a copy of something the
        journal holds (hpbandster's files are rewritten from it on resume, and a resumed
        master's clean-up catches up), and a hanging file system must not keep a study from
        stopping within SLURM's signal margin.
        """
        if not self.flush(timeout):
            with self._cond:
                logger.warning(
                    "%d reports (live log, clean-up) not made within %g s; left out", self._unfinished, timeout
                )
        with self._cond:
            self._closed = True
            self._calls.clear()
            self._cond.notify_all()
        self._thread.join(timeout=1)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._calls and not self._closed:
                    self._thread_waiting = True
                    self._cond.wait()
                    self._thread_waiting = False
                if not self._calls:
                    return
                batch = list(self._calls)  # everything queued so far, made without the condition
                self._calls.clear()
            for what, call, args in batch:
                try:
                    call(*args)
                except Exception:
                    self._on_error(what, traceback.format_exc())
            with self._cond:
                self._unfinished = max(0, self._unfinished - len(batch))
                if self._flushing:
                    self._cond.notify_all()


class QueuedResultLogger:
    """hpbandster's live result logger (``json_result_logger``), fed through :class:`OrderedReports`.

    hpbandster calls ``new_config`` when an iteration adds a configuration and the logger itself
    for each result, both under the master's lock; here they only queue the write. A result is
    queued as a copy of its job as it is now, so the line written later is the line hpbandster
    would have written at once.
    """

    def __init__(self, result_logger: Any, reports: OrderedReports) -> None:
        self.result_logger = result_logger
        self.reports = reports

    def new_config(self, config_id: Any, config: dict[str, Any], config_info: dict[str, Any]) -> None:
        self.reports.submit("hpbandster's live log", self.result_logger.new_config, config_id, config, config_info)

    def __call__(self, job: Job) -> None:
        snapshot = copy.copy(job)
        snapshot.kwargs = dict(job.kwargs)
        snapshot.timestamps = dict(job.timestamps)
        self.reports.submit("hpbandster's live log", self.result_logger, snapshot)
