"""Reading a study's results: evaluations, the incumbent, the budget spent.

Everything here is derived from the journals, so it works the same on a finished study, a
running one and an interrupted one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path
from typing import Any

from bohb_runner.store.journal import Evaluation, SampledConfig, read_evaluations, read_sampled_configs
from bohb_runner.store.schedule import evaluation_epochs
from bohb_runner.store.settings import StudySettings, read_settings


class RunningIncumbent:
    """The incumbent so far, offered one finished evaluation at a time in finishing order.

    The one home of hpbandster's incumbent rule: the lowest loss on the largest budget, ties to
    the lowest config id; failed evaluations never. ``best``, the live progress line and the
    report's and ``compare``'s anytime curves all follow it, so a curve ends exactly at what
    ``best`` prints. hpbandster itself only looks at the largest budget in its results; where
    every evaluation on it failed, this keeps the best on the largest budget that has a
    successful one instead of giving up.
    """

    def __init__(self) -> None:
        self.current: Evaluation | None = None

    def offer(self, evaluation: Evaluation) -> bool:
        """Take ``evaluation`` into account; True when it became the incumbent."""
        if not evaluation.ok:
            return False
        current = self.current
        if current is None or (-evaluation.budget, evaluation.loss, evaluation.config_id) < (
            -current.budget,
            current.loss,
            current.config_id,
        ):
            self.current = evaluation
            return True
        return False


def incumbent_of(evaluations: Iterable[Evaluation]) -> Evaluation | None:
    """The incumbent after ``evaluations`` (see :class:`RunningIncumbent`); None before any success."""
    incumbent = RunningIncumbent()
    for evaluation in evaluations:
        incumbent.offer(evaluation)
    return incumbent.current


def test_error_of(evaluation: Evaluation, settings: StudySettings | None) -> float | None:
    """The evaluation's test error, as ``best``, ``status``, the report and ``compare`` show it.

    With ``--repeats`` the mean over the repeats (as its loss is), not the first repeat's. None
    where there is none: not reported, not a finite number, or a study without a test set
    (``--split 8000,2000,0``), where a worker's "test error" of an empty set means nothing.
    ``settings`` is None for hpbandster's own result files.
    """
    data = settings.data if settings is not None and isinstance(settings.data, dict) else {}
    sizes = data.get("sizes") if isinstance(data.get("sizes"), dict) else {}
    if sizes.get("test") == 0:
        return None
    info = evaluation.info if isinstance(evaluation.info, dict) else {}
    means = info.get("repeat_means")
    value = means["test_error"] if isinstance(means, dict) and "test_error" in means else info.get("test_error")
    finite = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if finite else None


def consumed_budget(evaluations: Iterable[Evaluation], settings: StudySettings | None) -> list[float]:
    """Epochs consumed when each evaluation finished: the running sum of their costs
    (:func:`~bohb_runner.store.schedule.evaluation_epochs`), in the journal's (finishing) order,
    failed evaluations included: they cost epochs too."""
    return list(accumulate(evaluation_epochs(e.budget, settings) for e in evaluations))


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
        """Epochs of all finished evaluations, failed ones included; with ``--repeats R`` every
        evaluation counts R times its budget (it trained R times)."""
        consumed = consumed_budget(self.evaluations, self.settings)
        return consumed[-1] if consumed else 0.0

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
                "test_error": test_error_of(inc, self.settings),
                "info": inc.info,
            }
        return summary
