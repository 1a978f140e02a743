"""Logging for bohb-runner processes: everything to a file in the study directory.

The terminal shows progress, warnings and results; the log files keep the details
(hpbandster's own messages, Pyro's, tracebacks) for when something needs explaining.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

LOG_DIR = "logs"
_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s"


def log_path(study_dir: Path, name: str) -> Path:
    path = Path(study_dir) / LOG_DIR / f"{name}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def setup_file_logging(path: Path | None, level: int = logging.INFO) -> logging.Handler:
    """Send all records at ``level`` and above to ``path`` (stderr when ``path`` is None)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_bohb_runner_file", False):
            root.removeHandler(handler)
            handler.close()
    handler: logging.Handler
    if path is None:
        handler = logging.StreamHandler(sys.stderr)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter(_FORMAT))
    handler.setLevel(level)
    handler._bohb_runner_file = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(min(root.level if root.level else logging.WARNING, level))
    logging.getLogger("Pyro4").setLevel(logging.WARNING)
    logging.captureWarnings(True)
    return handler


def add_console_handler(handler: logging.Handler) -> None:
    """Show bohb-runner's own warnings on the terminal (not hpbandster's, which repeats tracebacks)."""
    logging.getLogger("bohb_runner").addHandler(handler)


def plain_console_handler(level: int = logging.WARNING) -> logging.Handler:
    """Warnings as plain lines on stderr, for runs without the live progress line."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    return handler


def remove_console_handler(handler: logging.Handler) -> None:
    logging.getLogger("bohb_runner").removeHandler(handler)
