"""What a report or a comparison reads: a study, an hpbandster result directory or a comparison.

Every analysis works on :class:`~bohb_runner.store.journal.Evaluation` records and a description of
the hyperparameters; this module finds out what a directory holds and reads it into those,
so the figures never need to know where the numbers came from.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bohb_runner.errors import StudyError
from bohb_runner.store.hpbandster_files import is_hpbandster_dir, read_hpbandster_results
from bohb_runner.store.journal import Evaluation
from bohb_runner.store.results import StudyResults
from bohb_runner.store.settings import SETTINGS_FILE, StudySettings

COMPARISON_FILE = "comparison.json"


@dataclass(frozen=True)
class Hyperparameter:
    """How to plot one hyperparameter: numeric (maybe on a log axis) or a set of choices."""

    name: str
    numeric: bool
    log: bool = False
    choices: tuple[Any, ...] = ()


@dataclass
class AnalysisSource:
    """A directory's evaluations, read once, with what is known about its search space."""

    directory: Path
    kind: str  # "study" or "hpbandster"
    evaluations: list[Evaluation]
    hyperparameters: list[Hyperparameter]
    settings: StudySettings | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:
        if self.settings is not None:
            return f"{self.directory.name}: {self.settings.optimizer} study"
        return f"{self.directory.name}: hpbandster results"


def directory_kind(directory: Path) -> str:
    """``comparison``, ``study`` or ``hpbandster``; anything else is a one-line error."""
    directory = Path(directory)
    if not directory.exists():
        raise StudyError(f"{directory}: no such directory")
    if not directory.is_dir():
        raise StudyError(f"{directory}: not a directory")
    if (directory / COMPARISON_FILE).is_file():
        return "comparison"
    if (directory / SETTINGS_FILE).is_file():
        return "study"
    if is_hpbandster_dir(directory):
        return "hpbandster"
    raise StudyError(
        f"{directory}: neither a study (study.json), a comparison (comparison.json) "
        "nor hpbandster results (configs.json + results.json)"
    )


def load_source(directory: str | Path) -> AnalysisSource:
    """Read a study directory (running or finished) or an hpbandster result directory."""
    directory = Path(directory)
    kind = directory_kind(directory)
    if kind == "comparison":
        raise StudyError(f"{directory} is a comparison, not a single study")
    if kind == "study":
        results = StudyResults.load(directory)
        space = results.settings.space or {}
        hyperparameters = hyperparameters_from_space(space) or infer_hyperparameters(results.evaluations)
        return AnalysisSource(directory, "study", results.evaluations, hyperparameters, results.settings)
    evaluations = read_hpbandster_results(directory)
    return AnalysisSource(directory, "hpbandster", evaluations, infer_hyperparameters(evaluations))


def hyperparameters_from_space(space: dict[str, Any]) -> list[Hyperparameter]:
    """Hyperparameters from ConfigSpace's serialised form (as stored in ``study.json``)."""
    found = []
    for entry in space.get("hyperparameters", []):
        if not isinstance(entry, dict) or "name" not in entry:
            continue
        kind = str(entry.get("type", ""))
        if kind == "constant":
            continue
        if kind in ("categorical", "ordinal"):
            values = entry.get("choices") or entry.get("sequence") or ()
            found.append(Hyperparameter(entry["name"], numeric=False, choices=tuple(values)))
        else:
            found.append(Hyperparameter(entry["name"], numeric=True, log=bool(entry.get("log"))))
    return found


def infer_hyperparameters(evaluations: list[Evaluation]) -> list[Hyperparameter]:
    """Hyperparameters guessed from the values (hpbandster's files carry no space).

    Numbers are numeric unless there are at most three distinct ones; a positive range
    spanning more than two decades is drawn on a log axis.
    """
    values: dict[str, list[Any]] = {}
    for evaluation in evaluations:
        for name, value in (evaluation.config or {}).items():
            values.setdefault(name, []).append(value)
    found = []
    for name in sorted(values):
        seen = values[name]
        numbers = [v for v in seen if isinstance(v, (int, float)) and not isinstance(v, bool)]
        distinct = sorted(set(seen), key=str)
        if len(numbers) == len(seen) and len(set(numbers)) > 3:
            low, high = min(numbers), max(numbers)
            log = low > 0 and high / low > 100
            found.append(Hyperparameter(name, numeric=True, log=log))
        else:
            found.append(Hyperparameter(name, numeric=False, choices=tuple(distinct)))
    return found


def read_json_file(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise StudyError(f"{path}: not found") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise StudyError(f"{path}: unreadable ({exc})") from None


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
