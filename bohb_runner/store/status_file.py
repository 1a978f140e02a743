"""``status.json``: the running master's snapshot (running jobs, workers, a heartbeat), as a file.

The master writes it (:mod:`bohb_runner.master.status_snapshot`); ``bohb-runner status`` reads
it from any node that sees the study directory, without a network connection.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bohb_runner.store.files import write_json_atomically

STATUS_FILE = "status.json"
PUBLISH_INTERVAL = 2.0


def read_status_snapshot(study_dir: Path) -> dict[str, Any] | None:
    """The last snapshot, or None when there is none (or it cannot be read)."""
    try:
        data = json.loads((Path(study_dir) / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_status_snapshot(study_dir: Path, snapshot: dict[str, Any]) -> None:
    # a live snapshot, rewritten every few seconds: atomic for readers, not worth an fsync
    write_json_atomically(Path(study_dir) / STATUS_FILE, snapshot, durable=False, indent=1)


def short_worker_name(name: str | None) -> str | None:
    """``hpbandster.run_ID.worker.NODE.PID.NAME`` -> ``NODE.PID.NAME`` (what a user recognises)."""
    if name and ".worker." in name:
        return name.split(".worker.", 1)[1]
    return name
