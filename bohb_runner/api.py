"""The Python API: run a study or read one, from a notebook or a script."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bohb_runner.master.create import open_study
from bohb_runner.master.run import RunOptions, run_master
from bohb_runner.store.results import StudyResults
from bohb_runner.store.settings import DEFAULT_WORKER, BOHBOptions
from bohb_runner.store.spaces import load_space, space_to_dict


def run_study(
    space: str | Path,
    study_dir: str | Path,
    *,
    workers: int = 1,
    optimizer: str = "bohb",
    min_budget: float = 1.0,
    max_budget: float = 9.0,
    eta: float = 3.0,
    iterations: int = 4,
    seed: int = 0,
    worker: str = DEFAULT_WORKER,
    dataset: str = "digits",
    data_dir: str | None = None,
    split: str | None = None,
    progress: bool = True,
    device: str = "auto",
    threads: int = 1,
    job_timeout: float | None = None,
    grid_points: int = 3,
    repeats: int = 1,
    fresh: bool = False,
    overwrite: bool = False,
    **bohb_options: Any,
) -> StudyResults:
    """Run a study in ``study_dir`` with ``workers`` local worker processes: a new one, or the
    one already there, resumed (as ``bohb-runner run`` does).

    The options are those of ``bohb-runner run``; ``bohb_options`` are BOHB's
    (``top_n_percent``, ``num_samples``, ``random_fraction``, ``bandwidth_factor``,
    ``min_bandwidth``, ``min_points_in_model``). Returns the study's results when it ends.
    """
    requested: dict[str, Any] = {
        "space": space_to_dict(load_space(space)),
        "space_file": str(space),
        "optimizer": optimizer,
        "min_budget": min_budget,
        "max_budget": max_budget,
        "eta": eta,
        "iterations": iterations,
        "seed": seed,
        "worker": worker,
        "dataset": dataset,
        "data_dir": data_dir,
        "split": split,
        "job_timeout": job_timeout,
        "grid_points": grid_points,
        "repeats": repeats,
    }
    requested.update({f"bohb.{key}": value for key, value in bohb_options.items()})
    unknown = set(bohb_options) - set(vars(BOHBOptions()))
    if unknown:
        raise TypeError(f"run_study() got unknown options: {', '.join(sorted(unknown))}")
    open_study(Path(study_dir), requested, fresh=fresh, overwrite=overwrite)
    options = RunOptions(workers=workers, progress=progress, device=device, threads=threads)
    return run_master(Path(study_dir), options)


def load_study(study_dir: str | Path) -> StudyResults:
    """The results of a study so far: finished, running or interrupted."""
    return StudyResults.load(study_dir)
