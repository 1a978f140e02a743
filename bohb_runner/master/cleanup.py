"""Removing what no later job can use: the artifacts of configurations that can no longer continue."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bohb_runner.store.artifacts import remove_all_artifacts, remove_artifacts
from bohb_runner.store.journal import Evaluation
from bohb_runner.store.schedule import Bracket

ConfigId = tuple[int, ...]


class ArtifactCleanup:
    """Deletes an iteration's per-configuration artifacts once every job of the iteration has a result.

    Workers may keep state for a configuration between its jobs in its artifacts directory
    (:mod:`bohb_runner.store.artifacts`, e.g. the LeNet's training checkpoints). Once all jobs of
    Hyperband iteration ``i`` are done, none of its configurations will be promoted again: their
    artifacts go, instead of piling up for the whole study. The master calls this from its
    reports thread, outside its lock: on a shared file system a removal may take long.
    """

    def __init__(self, study_dir: Path) -> None:
        self.study_dir = Path(study_dir)
        self.expected: dict[int, int] = {}
        self.done: dict[int, set[tuple[ConfigId, float]]] = {}
        self.removed_iterations: set[int] = set()

    def iteration_started(self, bracket: Bracket) -> None:
        self.expected[bracket.index] = bracket.jobs
        self._remove_if_done(bracket.index)

    def evaluation_finished(self, evaluation: Evaluation) -> None:
        iteration = int(evaluation.config_id[0])
        self.done.setdefault(iteration, set()).add((tuple(evaluation.config_id), float(evaluation.budget)))
        self._remove_if_done(iteration)

    def study_completed(self) -> None:
        """Every iteration is finished: no configuration can continue."""
        remove_all_artifacts(self.study_dir)

    def remove(self, config_id: Sequence[Any]) -> None:
        """Delete one configuration's artifacts."""
        remove_artifacts(self.study_dir, config_id)

    def _remove_if_done(self, iteration: int) -> None:
        if iteration in self.removed_iterations or iteration not in self.expected:
            return
        jobs = self.done.get(iteration, set())
        if len(jobs) < self.expected[iteration]:
            return
        self.removed_iterations.add(iteration)
        for config_id in sorted({config_id for config_id, _ in jobs}):
            self.remove(config_id)
