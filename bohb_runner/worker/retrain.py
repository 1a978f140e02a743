"""Retrain a study's incumbent at its budget and save the weights (``best --retrain``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bohb_runner import compat
from bohb_runner.errors import UserError
from bohb_runner.store.results import StudyResults
from bohb_runner.worker.api import StudyContext
from bohb_runner.worker.loading import load_worker_class


def retrain_incumbent(results: StudyResults, output: Path, device: str = "cpu") -> dict[str, Any]:
    """Train the incumbent again with the study's seed and data split; returns its result.

    The worker class must offer ``retrain(context, config, budget, output_path) -> dict``
    (the reduced LeNet does); on CPU the result equals the journal's, which is checked by
    the caller's tests rather than assumed.
    """
    compat.silence_configspace_deprecations()
    incumbent = results.incumbent
    if incumbent is None:
        raise UserError(f"{results.study_dir}: no successful evaluation to retrain")
    settings = results.settings
    cls = load_worker_class(settings.worker)
    retrain = getattr(cls, "retrain", None)
    if not callable(retrain):
        raise UserError(f"worker {settings.worker} has no retrain(context, config, budget, output_path) hook")
    if output.parent and not output.parent.exists():
        raise UserError(f"{output}: directory {output.parent} does not exist")
    context = StudyContext.of(settings, results.study_dir, device=device)
    outcome = compat.to_native(retrain(context, incumbent.config, incumbent.budget, output))
    return {
        "config_id": list(incumbent.config_id),
        "budget": incumbent.budget,
        "journal_loss": incumbent.loss,
        **outcome,
    }
