"""The numbers of a comparison: final errors per optimizer, anytime curves, speed-up.

Definitions (the README repeats them):

* final validation (test) error of a run: the incumbent's, among the evaluations that
  finished within the limit (E epochs consumed and/or the time limit);
* per optimizer: mean +- standard error (sample standard deviation / sqrt(n)) over seeds;
* curves: per run the incumbent's validation error against epochs consumed and against
  wall-clock seconds; per optimizer the median and the 25th-75th percentiles across seeds;
* budget to reach random search: the first point at which the optimizer's *median* curve is at
  or below random search's *median* final validation error, as a fraction of random search's
  limit (E, or the time limit without E); the speed-up is its inverse.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bohb_runner.analysis.compare import ComparisonSpec, RunLog, study_dirs
from bohb_runner.analysis.curves import AggregateCurve, Step, aggregate, elapsed_time, incumbent_steps
from bohb_runner.store.results import StudyResults, consumed_budget, test_error_of
from bohb_runner.store.settings import StudySettings

REFERENCE = "randomsearch"


@dataclass
class RunSummary:
    """One (optimizer, seed) run, cut at the limit."""

    name: str
    optimizer: str
    seed: int
    study_dir: Path
    finished: bool
    budget_steps: list[Step]
    time_steps: list[Step]
    evaluations: int  # within the limit
    budget_used: float  # within the limit
    time_used: float  # within the limit
    settings: StudySettings | None = None

    @property
    def final(self) -> Step | None:
        steps = self.budget_steps
        return steps[-1] if steps else None

    @property
    def final_validation(self) -> float | None:
        return self.final.loss if self.final else None

    @property
    def final_test(self) -> float | None:
        return test_error_of(self.final.evaluation, self.settings) if self.final else None


@dataclass
class OptimizerSummary:
    optimizer: str
    runs: list[RunSummary]
    budget_curve: AggregateCurve
    time_curve: AggregateCurve
    reach_fraction: float | None = None  # of random search's limit, on the comparison's axis
    notes: list[str] = field(default_factory=list)

    def finals(self, which: str) -> list[float]:
        values = [r.final_validation if which == "validation" else r.final_test for r in self.runs]
        return [v for v in values if v is not None]

    @property
    def speedup(self) -> float | None:
        return 1.0 / self.reach_fraction if self.reach_fraction else None


def mean_and_standard_error(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    mean = float(np.mean(values))
    if len(values) < 2:
        return mean, None
    return mean, float(np.std(values, ddof=1) / math.sqrt(len(values)))


def summarise_run(
    name: str, optimizer: str, seed: int, study_dir: Path, spec: ComparisonSpec, log: RunLog
) -> RunSummary:
    results = StudyResults.load(study_dir)
    evaluations = results.evaluations
    budget_axis = consumed_budget(evaluations, results.settings)
    time_axis = elapsed_time(evaluations, log.sessions(name))
    kept = [
        (e, b, t)
        for e, b, t in zip(evaluations, budget_axis, time_axis, strict=True)
        if (spec.budget_limit is None or b <= spec.budget_limit + 1e-9)
        and (spec.time_limit is None or t <= spec.time_limit + 1e-9)
    ]
    kept_evaluations = [e for e, _, _ in kept]
    return RunSummary(
        name=name,
        optimizer=optimizer,
        seed=seed,
        study_dir=study_dir,
        finished=log.finished(name),
        budget_steps=incumbent_steps(kept_evaluations, [b for _, b, _ in kept]),
        time_steps=incumbent_steps(kept_evaluations, [t for _, _, t in kept]),
        evaluations=len(kept),
        budget_used=kept[-1][1] if kept else 0.0,
        time_used=kept[-1][2] if kept else 0.0,
        settings=results.settings,
    )


def summarise(out: Path, spec: ComparisonSpec) -> list[OptimizerSummary]:
    """Per optimizer (in the order asked): its runs, curves and reach fraction."""
    log = RunLog(out)
    runs = [summarise_run(name, o, s, d, spec, log) for name, o, s, d in study_dirs(out, spec)]
    summaries = []
    # without a time limit the time curves run to the end of the longest run
    time_end = spec.time_limit if spec.time_limit is not None else max((r.time_used for r in runs), default=None)
    for optimizer in spec.optimizers:
        mine = [r for r in runs if r.optimizer == optimizer and r.budget_steps]
        if not mine:
            continue
        summaries.append(
            OptimizerSummary(
                optimizer,
                mine,
                aggregate([r.budget_steps for r in mine], spec.budget_limit),
                aggregate([r.time_steps for r in mine], time_end),
            )
        )
    reference = next((s for s in summaries if s.optimizer == REFERENCE), None)
    if reference is not None:
        reference_final = float(np.median(reference.finals("validation")))
        limit = spec.budget_limit if spec.axis == "budget" else spec.time_limit
        for summary in summaries:
            curve = summary.budget_curve if spec.axis == "budget" else summary.time_curve
            reached = curve.first_reaching(reference_final)
            summary.reach_fraction = reached / limit if reached is not None and limit else None
    return summaries


# -- the table ---------------------------------------------------------------------------------

COLUMNS = [
    "optimizer",
    "runs",
    "finished",
    "val_error_mean",
    "val_error_se",
    "val_error_median",
    "test_error_mean",
    "test_error_se",
    "evaluations_mean",
    "epochs_mean",
    "seconds_mean",
    "fraction_to_reach_randomsearch",
    "speedup_over_randomsearch",
]


def table_rows(summaries: list[OptimizerSummary]) -> list[dict[str, Any]]:
    rows = []
    for s in summaries:
        val_mean, val_se = mean_and_standard_error(s.finals("validation"))
        test_mean, test_se = mean_and_standard_error(s.finals("test"))
        rows.append(
            {
                "optimizer": s.optimizer,
                "runs": len(s.runs),
                "finished": sum(r.finished for r in s.runs),
                "val_error_mean": val_mean,
                "val_error_se": val_se,
                "val_error_median": float(np.median(s.finals("validation"))),
                "test_error_mean": test_mean,
                "test_error_se": test_se,
                "evaluations_mean": float(np.mean([r.evaluations for r in s.runs])),
                "epochs_mean": float(np.mean([r.budget_used for r in s.runs])),
                "seconds_mean": float(np.mean([r.time_used for r in s.runs])),
                "fraction_to_reach_randomsearch": s.reach_fraction,
                "speedup_over_randomsearch": s.speedup,
            }
        )
    return rows


def format_mean_se(mean: float | None, se: float | None) -> str:
    if mean is None:
        return "n/a"
    return f"{mean:.4f} ± {se:.4f}" if se is not None else f"{mean:.4f}"


def table_csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {k: ("" if row[k] is None else (f"{row[k]:.6g}" if isinstance(row[k], float) else row[k])) for k in COLUMNS}
        )
    return buffer.getvalue()


def table_markdown(rows: list[dict[str, Any]], spec: ComparisonSpec) -> str:
    unit = "epochs" if spec.axis == "budget" else "seconds"
    header = (
        "| optimizer | runs | final validation error | final test error | evaluations | epochs | seconds "
        f"| {unit} to reach random search's final (fraction) | speed-up over random search |"
    )
    lines = [header, "|" + "---|" * 9]
    for row in rows:
        fraction = row["fraction_to_reach_randomsearch"]
        speedup = row["speedup_over_randomsearch"]
        reach = (
            f"{fraction:.2f}"
            if fraction is not None
            else ("not reached" if any(r["optimizer"] == REFERENCE for r in rows) else "n/a")
        )
        lines.append(
            f"| {row['optimizer']} | {row['runs']}"
            + (f" ({row['finished']} finished)" if row["finished"] < row["runs"] else "")
            + f" | {format_mean_se(row['val_error_mean'], row['val_error_se'])} | {format_mean_se(row['test_error_mean'], row['test_error_se'])}"
            + f" | {row['evaluations_mean']:.1f} | {row['epochs_mean']:.1f} | {row['seconds_mean']:.0f}"
            + f" | {reach} | {f'{speedup:.2f}x' if speedup is not None else 'n/a'} |"
        )
    return "\n".join(lines) + "\n"


def describe_limit(spec: ComparisonSpec) -> str:
    parts = []
    if spec.budget_limit is not None:
        parts.append(f"{spec.budget_limit:g} epochs")
    if spec.time_limit is not None:
        parts.append(f"{spec.time_limit:g} s wall-clock")
    return " and ".join(parts)


def curves_json(summaries: list[OptimizerSummary], spec: ComparisonSpec) -> dict[str, Any]:
    def steps(points: list[Step]) -> list[list[float]]:
        return [[s.x, s.loss] for s in points]

    return {
        "axis": spec.axis,
        "budget_limit": spec.budget_limit,
        "time_limit": spec.time_limit,
        "optimizers": {
            s.optimizer: {
                "budget": s.budget_curve.to_json(),
                "time": s.time_curve.to_json(),
                "fraction_to_reach_randomsearch": s.reach_fraction,
                "runs": {
                    r.name: {
                        "seed": r.seed,
                        "finished": r.finished,
                        "final_validation_error": r.final_validation,
                        "final_test_error": r.final_test,
                        "final_config_id": list(r.final.evaluation.config_id) if r.final else None,
                        "final_budget": r.final.evaluation.budget if r.final else None,
                        "evaluations": r.evaluations,
                        "epochs": r.budget_used,
                        "seconds": r.time_used,
                        "budget_steps": steps(r.budget_steps),
                        "time_steps": steps(r.time_steps),
                    }
                    for r in s.runs
                },
            }
            for s in summaries
        },
    }
