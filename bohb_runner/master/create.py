"""Creating a study directory, or opening an existing one to resume it.

``create_study`` checks everything that can be checked before a study starts (settings, space,
worker, data, budgets) and only then writes the study directory, so a mistake leaves no half
study; ``open_study`` resumes the study a directory holds, merging the options given again with
the stored ones, the way ``bohb-runner run`` does.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Any

from bohb_runner.errors import StudyError, UserError
from bohb_runner.store.lock import LOCK_FILE, StudyLock
from bohb_runner.store.results import StudyResults
from bohb_runner.store.settings import (
    SETTINGS_FILE,
    StudySettings,
    contradictions,
    new_settings,
    read_settings,
    write_settings,
)
from bohb_runner.store.spaces import check_space_for_optimizer, check_space_for_worker, study_space
from bohb_runner.wire import auth
from bohb_runner.worker.api import StudyContext
from bohb_runner.worker.loading import declared_hyperparameters, load_worker_class


def create_study(study_dir: Path, settings: StudySettings) -> StudySettings:
    """Check the settings, space, worker and data, then write the study directory.

    Nothing is written before every check has passed, so a mistake leaves no half study. The
    caller holds the study's lock (:func:`open_study` does), so that no other master creates
    the same study meanwhile.
    """
    study_dir = Path(study_dir)
    if (study_dir / SETTINGS_FILE).exists():
        raise StudyError(f"{study_dir} already holds a study; choose another --study-dir")
    if study_dir.is_file():
        raise StudyError(f"{study_dir} is a file, not a directory")
    settings.validate()
    space = study_space(settings)
    origin = settings.space_file or "the search space"
    check_space_for_optimizer(space, settings.optimizer, origin)
    cls = load_worker_class(settings.worker)
    check_space_for_worker(space, declared_hyperparameters(cls), origin, settings.worker)
    if settings.optimizer == "grid":
        from bohb_runner.store.grid import check_grid

        check_grid(space, settings.grid_points, origin)
    if settings.repeats > 1:
        from bohb_runner.worker.repeats import check_worker_supports_repeats

        check_worker_supports_repeats(cls, settings.worker)
    settings.stamp()
    prepare = getattr(cls, "prepare_study", None)
    if callable(prepare):
        settings.data = prepare(StudyContext.of(settings, study_dir))
    _make_study_dir(study_dir)
    auth.create_secret(study_dir)  # before study.json: whoever sees the study finds its secret
    write_settings(study_dir, settings)
    return settings


def open_study(
    study_dir: Path, requested: dict[str, Any], *, fresh: bool = False, overwrite: bool = False
) -> tuple[StudySettings, bool]:
    """The study to run: the existing one in ``study_dir`` (resumed), or a new one.

    Resuming is the default, as with Optuna's and Ray Tune's ``resume``: running the same
    command again continues the study. Options given again must agree with the stored study,
    except ``iterations`` (which may grow) and ``job_timeout``. ``fresh`` refuses an existing
    study unless ``overwrite`` also says to delete it. Returns (settings, resumed).

    The study's lock is taken first, before the directory is looked at, and held on return
    (until this process's master stops): of two masters started at once on a new directory,
    one creates the study and the other is refused as "already running", instead of both
    writing its secret and settings.
    """
    study_dir = Path(study_dir)
    made_directory = _make_lock_directory(study_dir)
    lock = StudyLock(study_dir)
    try:
        lock.acquire()
    except BaseException:
        if made_directory:
            _remove_if_empty(study_dir)
        raise
    try:
        if (study_dir / SETTINGS_FILE).exists():
            if fresh and not overwrite:
                raise StudyError(
                    f"{study_dir} already holds a study; --fresh refuses to touch it (add --overwrite to delete it)"
                )
            if not fresh:
                return _resume_settings(study_dir, requested), True
            if "space" not in requested:  # before deleting anything: the new study needs one
                raise UserError(f"--space is required to create a study (--fresh --overwrite deletes {study_dir}'s)")
            remove_study(study_dir)
        if "space" not in requested:
            raise UserError(f"--space is required to create a study ({study_dir} holds none)")
        return create_study(study_dir, new_settings(requested)), False
    except BaseException:
        # a study that was not created leaves nothing behind: not even the lock file, or the
        # directory made to hold it
        created = (study_dir / SETTINGS_FILE).exists()
        lock.release(remove=not created and _holds_only_the_lock(study_dir))
        if made_directory and not created:
            _remove_if_empty(study_dir)
        raise


def _make_lock_directory(study_dir: Path) -> bool:
    """Make the study directory (for its lock file) if there is none; whether this made it."""
    if study_dir.is_file():
        raise StudyError(f"{study_dir} is a file, not a directory")
    try:
        study_dir.mkdir(parents=True)
    except FileExistsError:
        return False
    except OSError as exc:
        raise StudyError(f"{study_dir}: cannot create the study directory ({exc.strerror})") from None
    return True


def _holds_only_the_lock(study_dir: Path) -> bool:
    try:
        return [p.name for p in study_dir.iterdir()] == [LOCK_FILE]
    except OSError:
        return False


def _remove_if_empty(study_dir: Path) -> None:
    with contextlib.suppress(OSError):
        study_dir.rmdir()


def _resume_settings(study_dir: Path, requested: dict[str, Any]) -> StudySettings:
    stored = read_settings(study_dir)
    problems = contradictions(stored, requested)
    if problems:
        raise StudyError(f"{study_dir}: cannot resume: {problems[0]}; use the study's settings or another --study-dir")
    changed = False
    if "iterations" in requested and requested["iterations"] != stored.iterations:
        started = StudyResults.load(study_dir).iterations_seen
        if requested["iterations"] < started:
            raise StudyError(
                f"{study_dir}: --iterations {requested['iterations']} is fewer than the {started} already started"
            )
        stored.iterations = requested["iterations"]
        changed = True
    if "job_timeout" in requested and requested["job_timeout"] != stored.job_timeout:
        stored.job_timeout = requested["job_timeout"]
        changed = True
    if "continue_training" in requested and requested["continue_training"] != stored.continue_training:
        stored.continue_training = requested["continue_training"]  # workers re-read it before each job
        changed = True
    if changed:
        stored.validate()
        write_settings(study_dir, stored)
    return stored


def _make_study_dir(study_dir: Path) -> None:
    try:
        study_dir.mkdir(parents=True, exist_ok=True)
        (study_dir / "logs").mkdir(exist_ok=True)
        (study_dir / "work").mkdir(exist_ok=True)
    except OSError as exc:
        raise StudyError(f"{study_dir}: cannot create the study directory ({exc.strerror})") from None


def remove_study(study_dir: Path) -> None:
    """Delete a study directory, but only one that is recognisably a study.

    Its lock file stays: the caller holds the lock on it, and a new file there would be a lock
    that another master could take at the same time.
    """
    if (study_dir / SETTINGS_FILE).exists():
        for entry in study_dir.iterdir():
            if entry.name == LOCK_FILE:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    elif study_dir.exists() and any(study_dir.iterdir()):
        raise StudyError(f"{study_dir} is not empty and not a study; refusing to delete it")
