"""Reading a study's results: evaluations, the incumbent, the budget spent.

Everything here is derived from the journals, so it works the same on a finished study, a
running one and an interrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bohb_runner.store.journal import Evaluation, SampledConfig, read_evaluations, read_sampled_configs
from bohb_runner.store.settings import StudySettings, read_settings


def incumbent_of(evaluations: list[Evaluation]) -> Evaluation | None:
    """hpbandster's incumbent: the lowest loss on the largest budget (ties: lowest config id).

    hpbandster only looks at the largest budget in its results; where every evaluation on it
    failed, this looks at the largest budget that has a successful one instead of giving up.
    """
    ok = [e for e in evaluations if e.ok]
    if not ok:
        return None
    largest = max(e.budget for e in ok)
    return min((e for e in ok if e.budget == largest), key=lambda e: (e.loss, e.config_id))


def test_error_of(evaluation: Evaluation) -> Any:
    """The evaluation's test error: with ``--repeats``, the mean over the repeats (as its loss is),
    not the first repeat's."""
    info = evaluation.info if isinstance(evaluation.info, dict) else {}
    means = info.get("repeat_means")
    if isinstance(means, dict) and "test_error" in means:
        return means["test_error"]
    return info.get("test_error")


@dataclass
class StudyResults:
    """A study directory's settings and journals, read once."""

    study_dir: Path
    settings: StudySettings
    evaluations: list[Evaluation]
    sampled: list[SampledConfig]

    @classmethod
    def load(cls, study_dir: str | Path) -> StudyResults:
        study_dir = Path(study_dir)
        settings = read_settings(study_dir)
        return cls(study_dir, settings, read_evaluations(study_dir), read_sampled_configs(study_dir))

    @property
    def incumbent(self) -> Evaluation | None:
        return incumbent_of(self.evaluations)

    @property
    def failed(self) -> list[Evaluation]:
        return [e for e in self.evaluations if not e.ok]

    @property
    def budget_used(self) -> float:
        """Total budget (epochs) of all finished evaluations, failed ones included; with
        ``--repeats R`` every evaluation counts R times its budget (it trained R times)."""
        return sum(e.budget for e in self.evaluations) * max(1, self.settings.repeats)

    @property
    def iterations_seen(self) -> int:
        ids = [e.config_id[0] for e in self.evaluations] + [s.config_id[0] for s in self.sampled]
        return max(ids) + 1 if ids else 0

    def summary(self) -> dict[str, Any]:
        """The incumbent and the study's totals as plain JSON (``bohb-runner best --json``)."""
        inc = self.incumbent
        summary: dict[str, Any] = {
            "study_dir": str(self.study_dir),
            "optimizer": self.settings.optimizer,
            "evaluations": len(self.evaluations),
            "failed": len(self.failed),
            "budget_used": self.budget_used,
            "incumbent": None,
        }
        if inc is not None:
            summary["incumbent"] = {
                "config_id": list(inc.config_id),
                "config": inc.config,
                "budget": inc.budget,
                "loss": inc.loss,
                "test_error": test_error_of(inc),
                "info": inc.info,
            }
        return summary
