"""Removing what no later job can use: per-configuration artifacts of finished iterations."""

from __future__ import annotations

import shutil
from pathlib import Path

from bohb_runner.store.journal import Evaluation
from bohb_runner.store.schedule import Bracket


class CheckpointCleanup:
    """Removes an iteration's training checkpoints once every job of the iteration has a result.

    Workers that continue training across budgets keep per-configuration state in
    ``STUDY_DIR/checkpoints/<i>_<j>_<k>/`` (see ``workers/checkpoints.py``). Once all jobs of
    Hyperband iteration ``i`` are done, none will continue from any of it: the state of the
    configurations that were not promoted goes, instead of piling up for the whole study.
    """

    def __init__(self, study_dir: Path) -> None:
        self.root = Path(study_dir) / "checkpoints"
        self.expected: dict[int, int] = {}
        self.done: dict[int, set[tuple[tuple[int, ...], float]]] = {}

    def iteration_started(self, bracket: Bracket) -> None:
        self.expected[bracket.index] = bracket.jobs
        self._remove_if_done(bracket.index)

    def evaluation_finished(self, evaluation: Evaluation) -> None:
        iteration = int(evaluation.config_id[0])
        self.done.setdefault(iteration, set()).add((tuple(evaluation.config_id), float(evaluation.budget)))
        self._remove_if_done(iteration)

    def _remove_if_done(self, iteration: int) -> None:
        if iteration not in self.expected or len(self.done.get(iteration, ())) < self.expected[iteration]:
            return
        if self.root.is_dir():
            for path in self.root.glob(f"{iteration}_*"):
                shutil.rmtree(path, ignore_errors=True)
