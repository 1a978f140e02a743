"""Logging for bohb-runner processes: everything to a file in the study directory.

The terminal shows progress, warnings and results; the log files keep the details
(hpbandster's own messages, Pyro's, tracebacks) for when something needs explaining.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
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


def log_uncaught_thread_exceptions(describe: Callable[[BaseException], str | None] | None = None) -> None:
    """Send exceptions that escape a thread to the log file instead of the terminal.

    hpbandster runs each job in a Pyro "oneway" thread of the worker and reports the result from
    there; when the master has gone, that report fails and Python would print a traceback on the
    worker's terminal, although nothing is wrong that a resumed master does not repair (it runs
    the job again). ``describe`` turns a known exception into a one-line explanation.
    """

    def hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit or args.exc_value is None:
            return
        thread = args.thread.name if args.thread is not None else "?"
        message = (describe(args.exc_value) if describe else None) or f"uncaught exception in thread {thread}"
        logging.getLogger("bohb_runner.threads").error(
            "%s", message, exc_info=(args.exc_type, args.exc_value, args.exc_traceback)
        )

    threading.excepthook = hook
