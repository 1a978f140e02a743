"""``status.json``: the running master's snapshot (running jobs, workers, a heartbeat), as a file.

The master writes it (:mod:`bohb_runner.master.status_snapshot`); ``bohb-runner status`` reads
it from any node that sees the study directory, without a network connection.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

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
    path = Path(study_dir) / STATUS_FILE
    tmp = path.with_name(f".{STATUS_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(snapshot, indent=1) + "\n")
    os.replace(tmp, path)


def short_worker_name(name: str | None) -> str | None:
    """``hpbandster.run_ID.worker.NODE.PID.NAME`` -> ``NODE.PID.NAME`` (what a user recognises)."""
    if name and ".worker." in name:
        return name.split(".worker.", 1)[1]
    return name
