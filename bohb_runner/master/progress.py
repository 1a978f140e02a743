"""The live progress line: what a user watches while a study runs.

One line, redrawn in place on a terminal (iteration and bracket, jobs running and done, the
best loss so far, elapsed time); when the output is not a terminal (a SLURM log, a notebook,
CI) a plain line is printed at each new iteration and every ``plain_interval`` seconds instead.
Warnings are printed above the line so it stays readable.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import TextIO

from bohb_runner.store.describe import format_budget, format_duration
from bohb_runner.store.journal import Evaluation
from bohb_runner.store.results import RunningIncumbent
from bohb_runner.store.schedule import Bracket


class ProgressTracker:
    """Counts what the master reports; read by :class:`ProgressDisplay` (plain reads, no lock)."""

    def __init__(self, optimizer: str, total_iterations: int, total_jobs: int, jobs_done_before: int = 0) -> None:
        self.optimizer = optimizer
        self.total_iterations = total_iterations
        self.total_jobs = total_jobs
        self.started = time.monotonic()
        self.bracket: Bracket | None = None
        self.running = 0
        self.done = jobs_done_before
        self.failed = 0
        self.workers = 0
        self.epochs = 0.0
        self._incumbent = RunningIncumbent()
        self.last_budget: float | None = None
        self.changed = threading.Event()
        self.failures: list[Evaluation] = []

    # MasterObserver
    def iteration_started(self, bracket: Bracket) -> None:
        self.bracket = bracket
        self.changed.set()

    def job_submitted(self, config_id: tuple[int, int, int], budget: float) -> None:
        self.running += 1
        self.last_budget = budget

    def evaluation_finished(self, evaluation: Evaluation) -> None:
        self.running = max(0, self.running - 1)
        self.done += 1
        self.epochs += evaluation.budget
        if not evaluation.ok:
            self.failed += 1
            self.failures.append(evaluation)
        else:
            self._incumbent.offer(evaluation)
        self.changed.set()

    @property
    def best(self) -> Evaluation | None:
        """The study's incumbent so far, by the rule ``bohb-runner best`` uses."""
        return self._incumbent.current

    def workers_changed(self, count: int) -> None:
        self.workers = count
        self.changed.set()

    def line(self) -> str:
        parts = [f"[{self.optimizer}]"]
        if self.bracket is None:
            parts.append(f"waiting for workers ({self.workers} connected)")
        else:
            b = self.bracket
            rungs = " > ".join(f"{n}x{format_budget(bud)}" for n, bud in zip(b.num_configs, b.budgets, strict=True))
            parts.append(f"iteration {b.index + 1}/{self.total_iterations} [{rungs}]")
        parts.append(f"running {self.running}")
        done = f"done {self.done}/{self.total_jobs}"
        if self.failed:
            done += f" ({self.failed} failed)"
        parts.append(done)
        if self.best is not None:
            parts.append(f"best {self.best.loss:.4f} @ {format_budget(self.best.budget)}")
        parts.append(f"workers {self.workers}")
        parts.append(format_duration(time.monotonic() - self.started))
        return " | ".join(parts)


class ProgressDisplay:
    """Draws the tracker's line until stopped; ``print_above`` prints a message without tearing it."""

    def __init__(self, tracker: ProgressTracker, stream: TextIO | None = None, plain_interval: float = 30.0) -> None:
        self.tracker = tracker
        self.stream = stream or sys.stderr
        self.live = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.plain_interval = plain_interval
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_plain = 0.0
        self._last_bracket: Bracket | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="progress", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.tracker.changed.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            self._draw(final=True)

    def print_above(self, message: str) -> None:
        with self._lock:
            if self.live:
                self.stream.write("\r\x1b[K" + message + "\n")
                self._draw()
            else:
                self.stream.write(message + "\n")
            self.stream.flush()

    def _loop(self) -> None:
        while not self._stop.is_set():
            # redraw on change, and at least every half second so the clock moves
            self.tracker.changed.wait(0.5 if self.live else 1.0)
            self.tracker.changed.clear()
            with self._lock:
                self._draw()

    def _draw(self, final: bool = False) -> None:
        line = self.tracker.line()
        if self.live:
            self.stream.write("\r\x1b[K" + line + ("\n" if final else ""))
        else:
            now = time.monotonic()
            new_bracket = self.tracker.bracket is not self._last_bracket
            if final or new_bracket or now - self._last_plain >= self.plain_interval:
                self.stream.write(line + "\n")
                self._last_plain = now
                self._last_bracket = self.tracker.bracket
        self.stream.flush()


class ProgressLogHandler(logging.Handler):
    """Sends warnings from the study's loggers to the terminal, above the progress line."""

    def __init__(self, display: ProgressDisplay, level: int = logging.WARNING) -> None:
        super().__init__(level)
        self.display = display
        self.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record).splitlines()[0]
            self.display.print_above(message)
        except Exception:
            self.handleError(record)
