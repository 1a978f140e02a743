"""Per-configuration artifacts: a directory a worker may keep for each configuration of a study.

This is a contract between the worker side and the master:

* A worker that keeps state for a configuration between its jobs (the reduced LeNet keeps
  training checkpoints, so that a promotion continues instead of training from scratch) keeps
  it in ``artifacts_dir(study_dir, config_id)``: ``STUDY_DIR/checkpoints/<i>_<j>_<k>/``. What
  is inside is the worker's business; the master never looks at a file in there.
* The master deletes that directory, whole, once the configuration can no longer continue:
  when every job of its Hyperband iteration has a result (no promotion of it is left to run),
  and every configuration's when the study completes. A worker therefore treats a missing
  directory or file as "start from scratch", never as an error.

The directory is named ``checkpoints`` because that is where studies made before the contract
keep their checkpoints: they resume with them.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ARTIFACTS_DIR = "checkpoints"


def artifacts_root(study_dir: Path | str) -> Path:
    """The directory that holds every configuration's artifacts directory."""
    return Path(study_dir) / ARTIFACTS_DIR


def config_key(config_id: Sequence[Any]) -> str:
    """``(0, 0, 3)`` (or the list serpent makes of it) as ``0_0_3``."""
    return "_".join(str(int(part)) for part in config_id)


def artifacts_dir(study_dir: Path | str, config_id: Sequence[Any]) -> Path:
    """Where a worker keeps what it wants to keep for configuration ``config_id`` (not created here)."""
    return artifacts_root(study_dir) / config_key(config_id)


def remove_artifacts(study_dir: Path | str, config_id: Sequence[Any]) -> None:
    """Delete a finished configuration's artifacts (nothing happens when it has none)."""
    shutil.rmtree(artifacts_dir(study_dir, config_id), ignore_errors=True)


def remove_all_artifacts(study_dir: Path | str) -> None:
    """Delete every configuration's artifacts: for a completed study, where none can continue."""
    shutil.rmtree(artifacts_root(study_dir), ignore_errors=True)
