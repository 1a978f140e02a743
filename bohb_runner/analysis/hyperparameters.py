"""Which hyperparameters matter: binning, per-value loss distributions, importance, trimming.

Pure functions of evaluations, so the numbers the report draws can be tested (and trusted)
without looking at a figure. Losses on different budgets are not comparable, so the
analyses that pool configurations use one budget: the largest with enough evaluations.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from bohb_runner.analysis.sources import Hyperparameter, finite
from bohb_runner.errors import UserError
from bohb_runner.store.journal import Evaluation

INACTIVE = "inactive"
NUMERIC_BINS = 4
# the analysis budget is the largest one with at least this many successful evaluations
MIN_EVALUATIONS_PER_BUDGET = 6


# -- trimming ---------------------------------------------------------------------------------

_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "!=": operator.ne,
    "=": operator.eq,
    "<": operator.lt,
    ">": operator.gt,
}
_TRIM_PATTERN = re.compile(r"^\s*([A-Za-z_][\w.:-]*)\s*(<=|>=|!=|=|<|>)\s*(\S.*?)\s*$")


@dataclass(frozen=True)
class Trim:
    """``--trim lr<1e-3``: drop the evaluations whose ``lr`` is below 1e-3 before drawing."""

    name: str
    op: str
    value: Any
    text: str

    @classmethod
    def parse(cls, text: str, hyperparameters: list[Hyperparameter]) -> Trim:
        match = _TRIM_PATTERN.match(text)
        if not match:
            raise UserError(
                f"--trim {text!r}: expected NAME<VALUE, NAME>VALUE, NAME=VALUE or NAME!=VALUE, e.g. lr<1e-3"
            )
        name, op, raw = match.groups()
        known = {hp.name: hp for hp in hyperparameters}
        if name not in known:
            raise UserError(f"--trim {text!r}: no hyperparameter {name!r} (known: {', '.join(sorted(known))})")
        hp = known[name]
        if hp.numeric or op not in ("=", "!="):
            try:
                value: Any = float(raw)
            except ValueError:
                raise UserError(f"--trim {text!r}: {raw!r} is not a number") from None
            if not hp.numeric and op not in ("=", "!="):
                raise UserError(f"--trim {text!r}: {name} is categorical; use {name}=VALUE or {name}!=VALUE")
        else:
            value = raw
        return cls(name, op, value, text.strip())

    def matches(self, evaluation: Evaluation) -> bool:
        config = evaluation.config or {}
        if self.name not in config:
            return False  # inactive: a condition on a value it does not have cannot hold
        value = config[self.name]
        if isinstance(self.value, str):
            return _OPERATORS[self.op](str(value), self.value)
        if not finite(value):
            return _OPERATORS[self.op](str(value), str(self.value))
        return _OPERATORS[self.op](float(value), self.value)


def trim_evaluations(
    evaluations: list[Evaluation], trims: list[Trim], drop_worst: float = 0.0
) -> tuple[list[Evaluation], list[str]]:
    """The evaluations left after ``trims`` and dropping the worst share on each budget.

    ``drop_worst`` works per budget because low budgets have worse losses everywhere: a global
    cut would remove the cheap evaluations rather than the bad configurations. Returns the kept
    evaluations and one line per rule saying how many it dropped.
    """
    if not 0.0 <= drop_worst < 1.0:
        raise UserError(f"--drop-worst must be in [0, 1), got {drop_worst:g}")
    kept = [e for e in evaluations if e.ok]
    notes = []
    for trim in trims:
        before = len(kept)
        kept = [e for e in kept if not trim.matches(e)]
        notes.append(f"--trim {trim.text}: dropped {before - len(kept)} evaluations")
    if drop_worst > 0:
        dropped: set[int] = set()
        for budget in sorted({e.budget for e in kept}):
            on_budget = sorted((e for e in kept if e.budget == budget), key=lambda e: e.loss)
            count = int(math.floor(drop_worst * len(on_budget)))
            dropped.update(id(e) for e in on_budget[len(on_budget) - count :] if count)
        kept = [e for e in kept if id(e) not in dropped]
        notes.append(f"--drop-worst {drop_worst:g}: dropped {len(dropped)} evaluations (the worst on each budget)")
    return kept, notes


# -- binning ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Binning:
    """How one hyperparameter's values are grouped: labels in display order and a labeller."""

    hyperparameter: Hyperparameter
    labels: tuple[str, ...]
    edges: tuple[float, ...] = ()

    def label(self, evaluation: Evaluation) -> str:
        config = evaluation.config or {}
        if self.hyperparameter.name not in config:
            return INACTIVE
        value = config[self.hyperparameter.name]
        if not self.hyperparameter.numeric or not self.edges:
            return str(value)
        index = int(np.searchsorted(self.edges[1:-1], float(value), side="right"))
        return self.labels[index]


def _format_edge(value: float) -> str:
    return f"{value:.3g}"


def binning_of(hp: Hyperparameter, evaluations: list[Evaluation], bins: int = NUMERIC_BINS) -> Binning:
    """Categories for a categorical hyperparameter; quantile bins (log-spaced data: of the
    logarithm) for a numeric one, so that every bin holds about as many evaluations."""
    values = [(e.config or {}).get(hp.name) for e in evaluations]
    present = [v for v in values if v is not None]
    has_inactive = len(present) < len(values)
    if not hp.numeric:
        order = [str(c) for c in hp.choices] if hp.choices else []
        order += sorted({str(v) for v in present} - set(order))
        return Binning(hp, tuple(order) + ((INACTIVE,) if has_inactive else ()))
    numbers = np.array([float(v) for v in present if finite(v)], dtype=float)
    if len(numbers) == 0:
        return Binning(hp, ((INACTIVE,) if has_inactive else ()))
    use_log = hp.log and bool(np.all(numbers > 0))
    scaled = np.log(numbers) if use_log else numbers
    edges = np.unique(np.quantile(scaled, np.linspace(0, 1, bins + 1)))
    if use_log:
        edges = np.exp(edges)
    if len(edges) < 2:  # a single value
        label = _format_edge(float(numbers[0]))
        return Binning(hp, (label,) + ((INACTIVE,) if has_inactive else ()), (float(numbers[0]), float(numbers[0])))
    labels = [
        f"[{_format_edge(low)}, {_format_edge(high)}{']' if i == len(edges) - 2 else ')'}"
        for i, (low, high) in enumerate(zip(edges[:-1], edges[1:], strict=True))
    ]
    return Binning(hp, tuple(labels) + ((INACTIVE,) if has_inactive else ()), tuple(float(e) for e in edges))


def grouped_losses(binning: Binning, evaluations: list[Evaluation]) -> dict[str, list[float]]:
    """The losses of ``evaluations`` per bin, in the binning's order (empty bins kept)."""
    groups: dict[str, list[float]] = {label: [] for label in binning.labels}
    for evaluation in evaluations:
        if evaluation.ok:
            groups.setdefault(binning.label(evaluation), []).append(float(evaluation.loss))
    return groups


# -- importance and pairs -----------------------------------------------------------------------


def analysis_budget(evaluations: list[Evaluation]) -> float | None:
    """The budget whose evaluations the pooled analyses use: the largest with at least
    ``MIN_EVALUATIONS_PER_BUDGET`` successful evaluations, else the one with the most."""
    counts: dict[float, int] = {}
    for e in evaluations:
        if e.ok:
            counts[e.budget] = counts.get(e.budget, 0) + 1
    if not counts:
        return None
    enough = [b for b, n in counts.items() if n >= MIN_EVALUATIONS_PER_BUDGET]
    if enough:
        return max(enough)
    return max(counts, key=lambda b: (counts[b], b))


def on_budget(evaluations: list[Evaluation], budget: float | None) -> list[Evaluation]:
    return [e for e in evaluations if e.ok and e.budget == budget]


def variance_explained(binning: Binning, evaluations: list[Evaluation]) -> float:
    """Share of the loss variance explained by the bin means (a one-way ANOVA's eta squared,
    a cheap stand-in for fANOVA's main effects)."""
    groups = [g for g in grouped_losses(binning, evaluations).values() if g]
    losses = np.array([loss for g in groups for loss in g], dtype=float)
    if len(losses) < 2:
        return 0.0
    total = float(np.sum((losses - losses.mean()) ** 2))
    if total <= 0:
        return 0.0
    between = sum(len(g) * (float(np.mean(g)) - float(losses.mean())) ** 2 for g in groups)
    return between / total


def importances(hyperparameters: list[Hyperparameter], evaluations: list[Evaluation]) -> dict[str, float]:
    """Variance explained per hyperparameter, largest first."""
    scores = {hp.name: variance_explained(binning_of(hp, evaluations), evaluations) for hp in hyperparameters}
    return dict(sorted(scores.items(), key=lambda item: -item[1]))


def default_pairs(scores: dict[str, float], top: int = 3) -> list[tuple[str, str]]:
    """All pairs among the ``top`` most important hyperparameters."""
    names = list(scores)[:top]
    return [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]


def parse_pair(text: str, hyperparameters: list[Hyperparameter]) -> tuple[str, str]:
    parts = [p.strip() for p in text.split(",")]
    known = {hp.name for hp in hyperparameters}
    if len(parts) != 2 or not all(parts):
        raise UserError(f"--pair {text!r}: expected two hyperparameter names, e.g. lr,filter_size")
    for name in parts:
        if name not in known:
            raise UserError(f"--pair {text!r}: no hyperparameter {name!r} (known: {', '.join(sorted(known))})")
    if parts[0] == parts[1]:
        raise UserError(f"--pair {text!r}: name two different hyperparameters")
    return parts[0], parts[1]


@dataclass
class PairGrid:
    """Mean loss (and count) per cell of two hyperparameters' bins."""

    x: Binning
    y: Binning
    mean: np.ndarray  # len(y.labels) x len(x.labels), NaN where empty
    count: np.ndarray


def pair_grid(x: Hyperparameter, y: Hyperparameter, evaluations: list[Evaluation]) -> PairGrid:
    bx, by = binning_of(x, evaluations), binning_of(y, evaluations)
    sums = np.zeros((len(by.labels), len(bx.labels)))
    counts = np.zeros_like(sums)
    for e in evaluations:
        if not e.ok:
            continue
        i, j = by.labels.index(by.label(e)), bx.labels.index(bx.label(e))
        sums[i, j] += e.loss
        counts[i, j] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return PairGrid(bx, by, mean, counts)


# -- budgets ------------------------------------------------------------------------------------


@dataclass
class BudgetCorrelation:
    """Spearman's rank correlation of the losses of configurations run on two budgets."""

    low: float
    high: float
    count: int
    rho: float | None
    p_value: float | None
    pairs: list[tuple[float, float]]


def average_ranks(values: list[float]) -> np.ndarray:
    """Ranks 1..n, ties sharing their average rank (as Spearman's rho needs)."""
    array = np.asarray(values, dtype=float)
    order = np.argsort(array, kind="mergesort")
    ranks = np.empty(len(array))
    ranks[order] = np.arange(1, len(array) + 1)
    for value in np.unique(array):
        tied = array == value
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(a: list[float], b: list[float]) -> tuple[float, float]:
    """Spearman's rho and its two-sided p-value (t approximation), as scipy.stats.spearmanr
    computes them; written out because importing scipy.stats costs seconds per report."""
    from scipy.special import stdtr

    rho = float(np.corrcoef(average_ranks(a), average_ranks(b))[0, 1])
    dof = len(a) - 2
    if abs(rho) >= 1.0:
        return rho, 0.0
    t = rho * math.sqrt(dof / ((1.0 - rho) * (1.0 + rho)))
    return rho, float(2 * stdtr(dof, -abs(t)))


def budget_rank_correlations(evaluations: list[Evaluation]) -> list[BudgetCorrelation]:
    """Does a cheap budget predict the next one? One entry per pair of consecutive budgets,
    over the configurations with a successful evaluation on both (the latest, if repeated)."""
    losses: dict[float, dict[tuple[int, int, int], float]] = {}
    for e in evaluations:
        if e.ok:
            losses.setdefault(e.budget, {})[e.config_id] = float(e.loss)
    budgets = sorted(losses)
    correlations = []
    for low, high in zip(budgets[:-1], budgets[1:], strict=True):
        common = sorted(set(losses[low]) & set(losses[high]))
        pairs = [(losses[low][c], losses[high][c]) for c in common]
        rho = p_value = None
        if len(pairs) >= 3 and len({a for a, _ in pairs}) > 1 and len({b for _, b in pairs}) > 1:
            rho, p_value = spearman([a for a, _ in pairs], [b for _, b in pairs])
        correlations.append(BudgetCorrelation(low, high, len(pairs), rho, p_value, pairs))
    return correlations
