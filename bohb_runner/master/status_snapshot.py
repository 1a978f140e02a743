"""``status.json``: what only the running master knows, published for ``bohb-runner status``.

The journal says what finished; which jobs are running right now, on which worker and since
when, is known only inside the master's dispatcher. The master writes it to ``status.json``
in the study directory every few seconds and when it stops, atomically, so that
``bohb-runner status`` on any login node that sees the study directory can show it without a
network connection. Its ``updated`` time doubles as the master's heartbeat: a master that was
killed stops updating it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from bohb_runner.compat import to_native
from bohb_runner.master.progress import ProgressTracker
from bohb_runner.store.status_file import PUBLISH_INTERVAL, STATUS_FILE, short_worker_name, write_status_snapshot

logger = logging.getLogger(__name__)


class StatusPublisher:
    """Writes ``status.json`` every ``interval`` seconds while the master runs, and once at the end."""

    def __init__(
        self, study_dir: Path, run_id: str, tracker: ProgressTracker, interval: float = PUBLISH_INTERVAL
    ) -> None:
        self.study_dir = Path(study_dir)
        self.run_id = run_id
        self.tracker = tracker
        self.interval = interval
        self.started = time.time()
        self.dispatcher: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False  # the last write failed (and that was said)

    def attach(self, dispatcher: Any) -> None:
        """The master's dispatcher (hpbandster's data structures), once it exists."""
        self.dispatcher = dispatcher

    def start(self) -> None:
        self.publish("starting")
        self._thread = threading.Thread(target=self._loop, name="status-snapshot", daemon=True)
        self._thread.start()

    def stop(self, state: str) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.publish(state)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.publish("running")

    def publish(self, state: str) -> None:
        """Write the snapshot; a failure is warned about once (until a write succeeds again).

        A status file is never worth stopping a study for, but without it ``bohb-runner
        status`` takes this live master for one that is gone: the user must hear why.
        """
        path = self.study_dir / STATUS_FILE
        try:
            write_status_snapshot(self.study_dir, self.snapshot(state))
        except Exception as exc:
            if self._failing:
                logger.debug("still cannot write %s: %s", path, exc)
            else:
                self._failing = True
                logger.warning(
                    "cannot write %s (%s): `bohb-runner status` will report this master as not running until it can",
                    path,
                    exc,
                )
            return
        if self._failing:
            self._failing = False
            logger.warning("%s is written again", path)

    def snapshot(self, state: str) -> dict[str, Any]:
        tracker = self.tracker
        bracket = tracker.bracket
        snapshot: dict[str, Any] = {
            "run_id": self.run_id,
            "state": state,
            "master_host": socket.gethostname(),
            "master_pid": os.getpid(),
            "started": self.started,
            "updated": time.time(),
            "iteration": None if bracket is None else bracket.index + 1,
            "iterations": tracker.total_iterations,
            "done": tracker.done,
            "failed": tracker.failed,
            "total_jobs": tracker.total_jobs,
            "workers": [],
            "running": [],
            "queued": 0,
        }
        dispatcher = self.dispatcher
        if dispatcher is None:
            return snapshot
        with dispatcher.discover_cond:
            pool = dict(dispatcher.worker_pool)
            jobs = list(dispatcher.running_jobs.values())
            queued = dispatcher.waiting_jobs.qsize()
        snapshot["queued"] = queued
        snapshot["workers"] = sorted(
            ({"name": short_worker_name(name), "busy": handle.runs_job is not None} for name, handle in pool.items()),
            key=lambda w: w["name"] or "",
        )
        snapshot["running"] = [
            {
                "config_id": list(to_native(job.id)),
                "budget": to_native(job.kwargs.get("budget")),
                "worker": short_worker_name(job.worker_name),
                "started": job.timestamps.get("started"),
            }
            for job in sorted(jobs, key=lambda j: j.timestamps.get("started", 0.0))
        ]
        return snapshot
