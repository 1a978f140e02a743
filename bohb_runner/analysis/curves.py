"""Anytime curves: the incumbent's validation error against budget consumed and wall-clock time.

The incumbent after each finished evaluation is the study's own
(:class:`~bohb_runner.store.results.RunningIncumbent`: the lowest loss on the largest budget seen
so far), and the epoch axis counts every training of an evaluation
(:func:`~bohb_runner.store.results.consumed_budget`), so a curve ends exactly at what
``bohb-runner best`` prints. A curve is a step function, kept as its change points; curves of
several seeds are combined on the union of their change points, where the median and the
quartiles of step functions change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bohb_runner.store.journal import Evaluation
from bohb_runner.store.results import RunningIncumbent

# a budget limit is compared with sums of floats (1/3 + 1/3 + ...): allow for rounding
LIMIT_TOLERANCE = 1e-9


@dataclass
class Step:
    """From ``x`` on (until the next step) the incumbent is ``evaluation``."""

    x: float
    evaluation: Evaluation

    @property
    def loss(self) -> float:
        return float(self.evaluation.loss)


def elapsed_time(evaluations: Sequence[Evaluation], sessions: Sequence[tuple[float, float | None]] = ()) -> list[float]:
    """Seconds of run time when each evaluation finished.

    With ``sessions`` (the (start, end) wall-clock times the run was running, from a
    comparison's ``runs.json``) the pauses between a stopped and a resumed run do not count;
    without, the time since the first evaluation was submitted.
    """
    if not evaluations:
        return []
    finished = [e.finished or e.started or e.submitted or 0.0 for e in evaluations]
    spans = [(start, end) for start, end in sessions if start is not None]
    if spans:
        closed = []
        for start, end in spans:  # a session without an end was killed: it lasted until its last result
            if end is None:
                inside = [f for f in finished if f >= start]
                end = max(inside) if inside else start
            closed.append((start, end))
        return [sum(max(0.0, min(end, f) - start) for start, end in closed) for f in finished]
    begin = min((e.submitted or e.started or f) for e, f in zip(evaluations, finished, strict=True))
    return [max(0.0, f - begin) for f in finished]


def incumbent_steps(evaluations: Sequence[Evaluation], xs: Sequence[float], limit: float | None = None) -> list[Step]:
    """The incumbent's change points along ``xs`` (one x per evaluation), up to ``limit``."""
    steps: list[Step] = []
    incumbent = RunningIncumbent()
    for evaluation, x in zip(evaluations, xs, strict=True):
        if limit is not None and x > limit + LIMIT_TOLERANCE:
            break
        if incumbent.offer(evaluation):
            steps.append(Step(float(x), evaluation))
    return steps


def within_limit(evaluations: Sequence[Evaluation], xs: Sequence[float], limit: float | None) -> list[Evaluation]:
    """The evaluations that finished before the limit on the axis ``xs``."""
    if limit is None:
        return list(evaluations)
    return [e for e, x in zip(evaluations, xs, strict=True) if x <= limit + LIMIT_TOLERANCE]


def value_at(steps: Sequence[Step], grid: np.ndarray) -> np.ndarray:
    """The step function's loss at each grid point; NaN before its first step."""
    if not steps:
        return np.full(len(grid), np.nan)
    xs = np.array([s.x for s in steps])
    losses = np.array([s.loss for s in steps])
    index = np.searchsorted(xs, grid, side="right") - 1
    return np.where(index >= 0, losses[np.clip(index, 0, None)], np.nan)


@dataclass
class AggregateCurve:
    """Median and quartiles across seeds, defined from the point every seed has an incumbent."""

    x: np.ndarray
    median: np.ndarray
    lower: np.ndarray  # 25th percentile
    upper: np.ndarray  # 75th percentile
    seeds: int

    def to_json(self) -> dict[str, object]:
        keep = ~np.isnan(self.median)
        return {
            "x": self.x[keep].tolist(),
            "median": self.median[keep].tolist(),
            "q25": self.lower[keep].tolist(),
            "q75": self.upper[keep].tolist(),
            "seeds": self.seeds,
        }

    def first_reaching(self, target: float) -> float | None:
        """The smallest x at which the median is at or below ``target`` (None if never)."""
        hits = np.nonzero(self.median <= target + 1e-12)[0]
        return float(self.x[hits[0]]) if len(hits) else None


def aggregate(curves: Sequence[Sequence[Step]], limit: float | None = None) -> AggregateCurve:
    points = sorted({s.x for steps in curves for s in steps} | ({limit} if limit is not None else set()))
    grid = np.array(points, dtype=float)
    if not curves or len(grid) == 0:
        empty = np.array([], dtype=float)
        return AggregateCurve(empty, empty, empty, empty, len(curves))
    values = np.vstack([value_at(steps, grid) for steps in curves])
    defined = ~np.isnan(values).any(axis=0)
    median = np.full(len(grid), np.nan)
    lower, upper = median.copy(), median.copy()
    if defined.any():
        median[defined] = np.median(values[:, defined], axis=0)
        lower[defined] = np.percentile(values[:, defined], 25, axis=0)
        upper[defined] = np.percentile(values[:, defined], 75, axis=0)
    return AggregateCurve(grid, median, lower, upper, len(curves))
