"""One master per study: the study directory's lock.

A second master on the same study would interleave its journal with the first's and hand out
the same configurations twice, so the master holds an exclusive lock on ``master.lock`` in the
study directory from before it touches the study's settings until it stops.
"""

from __future__ import annotations

import fcntl
import os
import socket
import threading
from pathlib import Path
from typing import Any

from bohb_runner.errors import StudyError

LOCK_FILE = "master.lock"


class StudyLock:
    """One master per study: a second one would interleave its journal with the first's.

    An exclusive ``flock`` on ``master.lock``, taken before the study's settings are touched
    and held until the master stops. Re-entrant within a process (``open_study`` takes it,
    ``run_master`` takes it again), since two flocks of one process on one file conflict.
    """

    _held: dict[Path, tuple[Any, int]] = {}
    _guard = threading.Lock()

    def __init__(self, study_dir: Path) -> None:
        self.path = (Path(study_dir) / "master.lock").resolve()

    def acquire(self) -> None:
        with self._guard:
            if self.path in self._held:
                fh, count = self._held[self.path]
                self._held[self.path] = (fh, count + 1)
                return
            fh = open(self.path, "a+")
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                fh.seek(0)
                owner = fh.read().strip() or "another process"
                fh.close()
                raise StudyError(f"{self.path.parent}: a master is already running this study ({owner})") from None
            fh.seek(0)
            fh.truncate()
            fh.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
            fh.flush()
            self._held[self.path] = (fh, 1)

    def release(self) -> None:
        with self._guard:
            if self.path not in self._held:
                return
            fh, count = self._held[self.path]
            if count > 1:
                self._held[self.path] = (fh, count - 1)
                return
            del self._held[self.path]
            fcntl.flock(fh, fcntl.LOCK_UN)
            fh.close()
