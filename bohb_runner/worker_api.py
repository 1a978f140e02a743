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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal


@dataclass(frozen=True)
class HyperparameterSpec:
    """One hyperparameter a worker understands, with the values it can handle.

    ``lower``/``upper`` are limits for numeric kinds (``None``: unbounded), inclusive unless
    ``lower_exclusive``/``upper_exclusive`` say otherwise;
    ``choices`` lists the allowed values of a categorical one. ``default`` is what the worker
    uses when the search space leaves the hyperparameter out (or it is inactive).
    """

    name: str
    kind: Literal["float", "int", "categorical"]
    default: Any
    description: str
    lower: float | None = None
    upper: float | None = None
    choices: tuple[Any, ...] | None = None
    lower_exclusive: bool = False
    upper_exclusive: bool = False


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
