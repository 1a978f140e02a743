"""A study and its results in words: the lines ``run``, ``best`` and ``status`` print."""

from __future__ import annotations

from pathlib import Path

from bohb_runner.store.results import StudyResults, test_error_of
from bohb_runner.store.schedule import planned_epochs, schedule_of
from bohb_runner.store.settings import StudySettings


def format_duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def format_budget(budget: float) -> str:
    return f"{budget:.4g}"


def describe_study(study_dir: Path, settings: StudySettings, resumed: bool = False) -> str:
    schedule = schedule_of(settings)
    budgets = ", ".join(format_budget(b) for b in schedule.budgets)
    jobs = schedule.total_jobs(settings.optimizer, settings.iterations)
    cost = planned_epochs(settings)
    iterations = schedule.planned_iterations(settings.optimizer, settings.iterations)
    what = f"{settings.optimizer}, budgets {budgets} (eta {settings.eta:g}), {iterations} iterations"
    if settings.optimizer == "grid":
        what = (
            f"grid of {schedule.grid_size} points ({settings.grid_points} per numeric hyperparameter) on budget "
            f"{format_budget(settings.max_budget)}, {iterations} iterations"
        )
        if iterations < settings.iterations:
            what += f" (the grid ends before the {settings.iterations} asked for)"
    repeats = f" x {settings.repeats} repeats" if settings.repeats > 1 else ""
    line = (
        f"{'resuming' if resumed else 'study'} {study_dir}: {what}, "
        f"{jobs} evaluations{repeats}, {cost:g} epochs planned"
    )
    data = settings.data or {}
    sizes = data.get("sizes")
    if isinstance(sizes, dict):
        line += f"; data {settings.dataset} " + "/".join(str(sizes.get(k, "?")) for k in ("train", "val", "test"))
    return line


def describe_results(results: StudyResults, elapsed: float | None = None) -> str:
    lines = []
    inc = results.incumbent
    if inc is None:
        lines.append("no successful evaluation yet")
    else:
        test = test_error_of(inc, results.settings)
        test_text = f", test error {test:.4f}" if test is not None else ""
        lines.append(
            f"incumbent {tuple(inc.config_id)} on budget {format_budget(inc.budget)}: "
            f"validation error {inc.loss:.4f}{test_text}"
        )
        width = max(len(k) for k in inc.config)
        for key in sorted(inc.config):
            value = inc.config[key]
            text = f"{value:.6g}" if isinstance(value, float) else str(value)
            lines.append(f"  {key:<{width}} = {text}")
    summary = f"{len(results.evaluations)} evaluations ({len(results.failed)} failed), {results.budget_used:g} epochs"
    if elapsed is not None:
        summary += f" in {format_duration(elapsed)}"
    lines.append(summary + f"; journal: {results.study_dir / 'results.jsonl'}")
    saved = epochs_saved_by_iteration(results)
    if saved:
        per_iteration = ", ".join(f"{iteration}: {epochs:g}" for iteration, epochs in sorted(saved.items()))
        lines.append(f"continued training saved {sum(saved.values()):g} epochs (per iteration {per_iteration})")
    return "\n".join(lines)


def epochs_saved_by_iteration(results: StudyResults) -> dict[int, float]:
    """Epochs not trained thanks to continued training, per Hyperband iteration.

    Workers that continue from checkpoints report ``epochs_trained`` (and ``resumed_from``) in
    ``info``; the budget minus what was trained is what continuing saved. Empty when no
    evaluation continued.
    """
    saved: dict[int, float] = {}
    for evaluation in results.evaluations:
        info = evaluation.info if isinstance(evaluation.info, dict) else {}
        trained = info.get("epochs_trained")
        if not info.get("resumed_from") or not isinstance(trained, (int, float)):  # 0 or absent: from scratch
            continue
        iteration = int(evaluation.config_id[0])
        saved[iteration] = saved.get(iteration, 0.0) + round(evaluation.budget - trained, 9)
    return saved
