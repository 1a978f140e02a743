"""Logging for bohb-runner processes: everything to a file in the study directory.

The terminal shows progress, warnings and results; the log files keep the details
(hpbandster's own messages, Pyro's, tracebacks) for when something needs explaining.

The set-up changes the process's logging (root handler and level, ``captureWarnings``, the
thread excepthook), which is right in bohb-runner's own processes; a master run through the
Python API puts the caller's back with :func:`logging_state_kept`.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from collections.abc import Callable, Iterator
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


# loggers whose level or handlers the set-up above and the master's console output change
_CHANGED_LOGGERS = ("Pyro4", "bohb_runner")


@contextlib.contextmanager
def logging_state_kept() -> Iterator[None]:
    """Give the process's logging back as it was when the block ends, however it ends.

    For a master run inside someone else's process (a notebook): the root logger's handlers
    and level, the levels and handlers of the loggers bohb-runner changes, whether warnings
    are captured into logging, and both excepthooks are restored; the log file handlers the
    block added are closed, so that no ``master.log`` stays open. Not thread-safe against the
    caller changing the same settings meanwhile.
    """
    root = logging.getLogger()
    root_handlers, root_level = list(root.handlers), root.level
    named = {name: (logging.getLogger(name).level, list(logging.getLogger(name).handlers)) for name in _CHANGED_LOGGERS}
    # logging keeps warnings' own showwarning here while it captures them (logging.captureWarnings)
    capturing = getattr(logging, "_warnings_showwarning", None) is not None
    thread_hook, process_hook = threading.excepthook, sys.excepthook
    try:
        yield
    finally:
        _restore_handlers(root, root_handlers)
        root.setLevel(root_level)
        for name, (level, handlers) in named.items():
            _restore_handlers(logging.getLogger(name), handlers)
            logging.getLogger(name).setLevel(level)
        if not capturing:
            logging.captureWarnings(False)
        threading.excepthook, sys.excepthook = thread_hook, process_hook


def _restore_handlers(target: logging.Logger, handlers: list[logging.Handler]) -> None:
    for handler in list(target.handlers):
        if handler not in handlers:
            target.removeHandler(handler)
            if getattr(handler, "_bohb_runner_file", False):
                handler.close()
    for handler in handlers:
        if handler not in target.handlers:
            target.addHandler(handler)


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
