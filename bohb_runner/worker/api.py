"""What bohb-runner asks of a worker class, beyond being an hpbandster ``Worker``.

Any ``hpbandster.core.worker.Worker`` subclass runs as it is. A worker class may in addition
declare the hooks below, all optional, so that mistakes are caught before a study starts
rather than in the first job on a cluster node hours later:

``HYPERPARAMETERS: Mapping[str, HyperparameterSpec]``
    The hyperparameter names the worker understands and the values it can handle. A search
    space naming anything else, or reaching outside these bounds, is refused up front.

``prepare_study(context: StudyContext) -> dict``  (classmethod)
    Called once by the master before anything starts: validate the data, fix the
    train/validation/test split, and return a JSON-serialisable record of it. The record is
    stored in the study directory and handed back to every worker through
    ``context.data_record``, so all workers and every resumed run use the same split.
    Raise :class:`bohb_runner.errors.UserError` (or ``DataError``) for bad input.

``from_study(context: StudyContext, **worker_kwargs) -> Worker``  (classmethod)
    Build the worker in a worker process. ``worker_kwargs`` are hpbandster's own
    ``Worker.__init__`` arguments (run_id, nameserver, nameserver_port, host, id, logger).
    Without this hook the class is called with ``worker_kwargs`` only.

Per-configuration artifacts
    A worker that keeps something for a configuration between its jobs (state to continue
    from when the configuration is promoted to a larger budget, as the LeNet's checkpoints)
    keeps it in ``context.artifacts_dir(config_id)`` (``STUDY_DIR/checkpoints/<i>_<j>_<k>/``,
    :mod:`bohb_runner.store.artifacts`), and nowhere else in the study directory. The worker
    creates it and chooses what goes inside. The master deletes the whole directory once the
    configuration can no longer continue (every job of its iteration has a result, or the
    study completed), and may do so while other jobs run: a worker must treat a missing
    directory or file as "start from scratch", and write files atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bohb_runner.store.artifacts import artifacts_dir
from bohb_runner.store.spaces import HyperparameterSpec

if TYPE_CHECKING:
    from bohb_runner.store.settings import StudySettings


@dataclass
class StudyContext:
    """What a worker class learns about the study it serves, read from the study directory."""

    study_dir: Path
    seed: int = 0
    dataset: str = "digits"
    data_dir: str | None = None
    split: str | None = None
    device: str = "auto"
    threads: int = 1
    data_record: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # the study's own names for what the built-in trainer and --objective run, and its images
    model: str | None = None
    objective: str | None = None
    image_size: str | None = None
    channels: int | None = None
    cache_dir: str | None = None
    max_budget: float | None = None
    repeats: int = 1

    def artifacts_dir(self, config_id: Sequence[Any]) -> Path:
        """Where this worker may keep what it wants for ``config_id`` (see the module docstring)."""
        return artifacts_dir(self.study_dir, config_id)

    @classmethod
    def of(cls, settings: StudySettings, study_dir: Path, device: str = "auto", threads: int = 1) -> StudyContext:
        """What a worker class is told about the study ``settings`` describe."""
        return cls(
            study_dir=Path(study_dir),
            seed=settings.seed,
            dataset=settings.dataset,
            data_dir=settings.data_dir,
            split=settings.split,
            device=device,
            threads=threads,
            data_record=settings.data,
            model=settings.model,
            objective=settings.objective,
            image_size=settings.image_size,
            channels=settings.channels,
            cache_dir=settings.cache_dir,
            max_budget=settings.max_budget,
            repeats=settings.repeats,
            extra={
                "max_budget": settings.max_budget,
                "continue_training": settings.continue_training,
                "amp": settings.amp,
            },
        )


__all__ = ["HyperparameterSpec", "StudyContext"]
