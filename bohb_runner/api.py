"""The Python API: run a study or read one, from a notebook or a script.

``run_study`` is ``bohb-runner run`` as a function, in the caller's process: it resumes a study
the way the command does (options left out come from the study), releases the study's lock
however it ends, so that a terminal can run the study next while the notebook lives on, and
leaves the caller's process-wide state as it found it (:mod:`bohb_runner.master.host`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bohb_runner.master.create import open_study
from bohb_runner.master.host import host_state_kept
from bohb_runner.master.run import RunOptions, run_master
from bohb_runner.store.lock import StudyLock
from bohb_runner.store.results import StudyResults
from bohb_runner.store.settings import BOHBOptions
from bohb_runner.store.spaces import load_space, space_to_dict


class _NotGiven:
    """The default of ``run_study``'s study options: the study's value when it resumes, the
    default of :class:`~bohb_runner.store.settings.StudySettings` when it is new (as an option
    left off the command line)."""

    def __repr__(self) -> str:
        return "<the study's value, or the default for a new study>"


NOT_GIVEN: Any = _NotGiven()


def run_study(
    space: str | Path | None = None,
    study_dir: str | Path | None = None,
    *,
    workers: int = 1,
    optimizer: str = NOT_GIVEN,
    min_budget: float = NOT_GIVEN,
    max_budget: float = NOT_GIVEN,
    eta: float = NOT_GIVEN,
    iterations: int = NOT_GIVEN,
    seed: int = NOT_GIVEN,
    worker: str = NOT_GIVEN,
    dataset: str = NOT_GIVEN,
    data_dir: str | None = NOT_GIVEN,
    split: str | None = NOT_GIVEN,
    progress: bool = True,
    device: str = "auto",
    threads: int = 1,
    job_timeout: float | None = NOT_GIVEN,
    grid_points: int = NOT_GIVEN,
    repeats: int = NOT_GIVEN,
    continue_training: bool = NOT_GIVEN,
    amp: bool = NOT_GIVEN,
    fresh: bool = False,
    overwrite: bool = False,
    **bohb_options: Any,
) -> StudyResults:
    """Run a study in ``study_dir`` with ``workers`` local worker processes: a new one, or the
    one already there, resumed (as ``bohb-runner run`` does).

    The study options are those of ``bohb-runner run`` (``continue_training`` is
    ``--[no-]continue``); ``bohb_options`` are BOHB's (``top_n_percent``, ``num_samples``,
    ``random_fraction``, ``bandwidth_factor``, ``min_bandwidth``, ``min_points_in_model``,
    ``sampler``). An option left out takes the study's value when the study exists, so
    ``run_study(study_dir="runs/nb", iterations=6)`` grows a study however it was made; one
    given must agree with the study, except ``iterations``, ``job_timeout`` and
    ``continue_training``. ``space`` is needed only to create a study. Returns the study's
    results when it ends; raises ``KeyboardInterrupt`` when interrupted, with every finished
    evaluation kept.
    """
    if study_dir is None:
        raise TypeError("run_study() missing required argument: 'study_dir'")
    unknown = set(bohb_options) - set(vars(BOHBOptions()))
    if unknown:
        raise TypeError(f"run_study() got unknown options: {', '.join(sorted(unknown))}")
    given = {
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
        "continue_training": continue_training,
        "amp": amp,
        **{f"bohb.{key}": value for key, value in bohb_options.items()},
    }
    requested: dict[str, Any] = {key: value for key, value in given.items() if value is not NOT_GIVEN}
    if space is not None:
        requested["space"] = space_to_dict(load_space(space))
        requested["space_file"] = str(space)
    study_dir = Path(study_dir)
    options = RunOptions(workers=workers, progress=progress, device=device, threads=threads)
    with host_state_kept():  # open_study imports the worker's module too (sys.path)
        open_study(study_dir, requested, fresh=fresh, overwrite=overwrite)  # takes the study's lock
        try:
            return run_master(study_dir, options)
        finally:
            StudyLock(study_dir).release()  # what open_study took; run_master releases its own


def load_study(study_dir: str | Path) -> StudyResults:
    """The results of a study so far: finished, running or interrupted."""
    return StudyResults.load(study_dir)
