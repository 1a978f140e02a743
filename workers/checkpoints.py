"""Per-configuration training checkpoints in the study directory, for continuing across budgets.

When Hyperband promotes a configuration from budget b to b', the job on b' starts from the
state the job on b left (model, optimizer, steps done, RNG mid-epoch) and trains only b' - b
epochs. The checkpoints of a configuration live in its artifacts directory
(:mod:`bohb_runner.store.artifacts`), which the master deletes once the configuration can no
longer be promoted::

    artifacts_dir(STUDY_DIR, (i, j, k))/repeat-<r>_budget-<b>.pt   # STUDY_DIR/checkpoints/<i>_<j>_<k>/...

One file per (repeat, budget); ``<b>`` is the budget's ``repr`` so that it reads back exactly. Files are written atomically (temporary file, fsync,
rename): a crash leaves the old file or the new one, never half of one. Each file also records
the configuration and training seed it belongs to, so a stale file (a study directory reused
for other configurations) is never mistaken for a valid start.

A checkpoint that is missing, unreadable or belongs to something else is not an error: the job
trains from scratch and the log says why. Checkpoints are read with
``torch.load(weights_only=True)`` from local files only; nothing is unpickled from the network.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from bohb_runner.store.artifacts import artifacts_dir
from bohb_runner.store.files import atomic_file
from workers.training import TrainingState

logger = logging.getLogger(__name__)

FORMAT = 1
_NAME = re.compile(r"^repeat-(\d+)_budget-([0-9.eE+-]+|inf)\.pt$")


def config_fingerprint(config: dict[str, Any]) -> str:
    return json.dumps(config, sort_keys=True, default=str)


class CheckpointStore:
    """The checkpoints of one study, read and written by its workers."""

    def __init__(self, study_dir: Path | str) -> None:
        self.study_dir = Path(study_dir)

    def path(self, config_id: Sequence[Any], repeat: int, budget: float) -> Path:
        return artifacts_dir(self.study_dir, config_id) / f"repeat-{int(repeat)}_budget-{float(budget)!r}.pt"

    def budgets(self, config_id: Sequence[Any], repeat: int) -> list[float]:
        """The budgets this configuration (and repeat) has checkpoints for, smallest first."""
        directory = artifacts_dir(self.study_dir, config_id)
        found = []
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            return []
        for name in names:
            match = _NAME.match(name)
            if match and int(match.group(1)) == repeat:
                try:
                    found.append(float(match.group(2)))
                except ValueError:
                    continue
        return sorted(found)

    def save(
        self, config_id: Sequence[Any], repeat: int, config: dict[str, Any], seed: int, state: TrainingState
    ) -> Path:
        """Write ``state`` atomically; returns its path."""
        path = self.path(config_id, repeat, state.budget)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "format": FORMAT,
            "config": config_fingerprint(config),
            "seed": int(seed),
            "state": state.to_dict(),
        }
        with atomic_file(path, binary=True) as fh:
            torch.save(payload, fh)
        return path

    def load_latest_below(
        self,
        config_id: Sequence[Any],
        repeat: int,
        budget: float,
        config: dict[str, Any],
        seed: int,
        device: torch.device | str = "cpu",
    ) -> TrainingState | None:
        """The state of the largest checkpointed budget not above ``budget``, or None (train from scratch).

        A checkpoint that cannot be used is logged and removed, and the next smaller one tried.
        """
        for candidate in reversed([b for b in self.budgets(config_id, repeat) if b <= budget + 1e-12]):
            path = self.path(config_id, repeat, candidate)
            state = self._read(path, config, seed, device)
            if state is not None:
                return state
            _remove(path)
        return None

    def _read(self, path: Path, config: dict[str, Any], seed: int, device: torch.device | str) -> TrainingState | None:
        try:
            payload = torch.load(path, map_location=device, weights_only=True)
        except FileNotFoundError:
            return None  # another worker's clean-up got there first
        except Exception as exc:  # truncated, corrupt, not a torch file: all mean "train from scratch"
            logger.warning("checkpoint %s is unreadable (%s); training from scratch", path, _one_line(exc))
            return None
        problem = _mismatch(payload, config, seed)
        if problem:
            logger.warning("checkpoint %s %s; training from scratch", path, problem)
            return None
        try:
            return TrainingState.from_dict(payload["state"])
        except (KeyError, TypeError) as exc:
            logger.warning("checkpoint %s is malformed (%s); training from scratch", path, _one_line(exc))
            return None

    def discard(self, config_id: Sequence[Any], repeat: int, budgets: Iterable[float]) -> None:
        """Remove the checkpoints of ``budgets`` (states no later job can use)."""
        for budget in budgets:
            _remove(self.path(config_id, repeat, budget))
        try:
            artifacts_dir(self.study_dir, config_id).rmdir()  # only when nothing is left
        except OSError:
            pass


def _mismatch(payload: Any, config: dict[str, Any], seed: int) -> str | None:
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or "state" not in payload:
        return "is not a bohb-runner checkpoint of this version"
    if payload.get("config") != config_fingerprint(config):
        return "belongs to another configuration"
    if payload.get("seed") != int(seed):
        return "was trained with another seed"
    return None


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        logger.warning("cannot remove checkpoint %s (%s)", path, exc)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
