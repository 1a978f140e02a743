"""Fault injection for the crash tests, loaded into the processes they start by Python itself.

A crash test puts this directory first on the ``PYTHONPATH`` of the ``bohb-runner`` process it
starts (``conftest.torn_journal_env``), and Python imports this ``sitecustomize`` at start-up.
With ``TEAR_ENV`` set to ``NAME:N`` (``results.jsonl:5``), the Nth line this process writes to
the journal named NAME is written half, fsynced, and the process SIGKILLs itself: what a power
cut in the middle of a write leaves behind. Without the variable, or in a process that writes
no journal (a worker), nothing changes. The library itself knows nothing of this.
"""

from __future__ import annotations

import os

TEAR_ENV = "BOHB_RUNNER_TEST_TEAR_JOURNAL"


def _tear_journal(journal: str, line: int) -> None:
    import json
    import signal
    import threading
    from pathlib import Path
    from typing import Any

    from bohb_runner.store.journal import JournalWriter

    write = JournalWriter.write
    written: dict[Path, int] = {}
    # every journal write of the process goes through here, one at a time: no other line can
    # follow the half one before the kill lands
    one_at_a_time = threading.Lock()

    def write_or_tear(self: JournalWriter, record: dict[str, Any]) -> int:
        with one_at_a_time:
            if self.path.name == journal:
                written[self.path] = written.get(self.path, 0) + 1
                if written[self.path] == line:
                    whole = (json.dumps(record, allow_nan=False, separators=(",", ":")) + "\n").encode()
                    with open(self.path, "ab") as fh:
                        fh.write(whole[: len(whole) // 2])
                        fh.flush()
                        os.fsync(fh.fileno())
                    os.kill(os.getpid(), signal.SIGKILL)
            return write(self, record)

    JournalWriter.write = write_or_tear  # type: ignore[method-assign]


_name, _, _count = os.environ.get(TEAR_ENV, "").partition(":")
if _name and _count.isdigit():
    _tear_journal(_name, int(_count))
