"""The Hyperband schedule: budgets, brackets and what each iteration costs.

The formulas are hpbandster's (``HyperBand.get_next_iteration``); they live here once so that
the optimizers, the progress display and random search's budget accounting agree, and a test
checks them against hpbandster's own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bohb_runner.compat import native_budget

if TYPE_CHECKING:
    from bohb_runner.store.settings import StudySettings


@dataclass(frozen=True)
class Bracket:
    """One Hyperband iteration: ``num_configs[i]`` configurations run on ``budgets[i]``."""

    index: int
    num_configs: tuple[int, ...]
    budgets: tuple[float, ...]

    @property
    def cost(self) -> float:
        """Sum of the bracket's budgets if every job finishes (epochs with one training per
        evaluation; :func:`evaluation_epochs` counts ``--repeats``)."""
        return sum(n * b for n, b in zip(self.num_configs, self.budgets, strict=True))

    @property
    def jobs(self) -> int:
        return sum(self.num_configs)


@dataclass(frozen=True)
class HyperbandSchedule:
    """Budgets and brackets for given ``min_budget``, ``max_budget`` and ``eta``."""

    min_budget: float
    max_budget: float
    eta: float
    # grid search only: the number of grid points, after which the study ends (None: unlimited)
    grid_size: int | None = None

    @property
    def max_sh_iter(self) -> int:
        return -int(math.log(self.min_budget / self.max_budget) / math.log(self.eta)) + 1

    @property
    def budgets(self) -> tuple[float, ...]:
        k = self.max_sh_iter
        return tuple(native_budget(self.max_budget * self.eta ** -(k - 1 - i)) for i in range(k))

    def hyperband_bracket(self, iteration: int) -> Bracket:
        """Successive halving for iteration ``iteration``: brackets cycle from most to fewest rungs."""
        k = self.max_sh_iter
        s = k - 1 - (iteration % k)
        n0 = int(math.floor(k / (s + 1)) * self.eta**s)
        num_configs = tuple(max(int(n0 * self.eta ** (-i)), 1) for i in range(s + 1))
        return Bracket(iteration, num_configs, self.budgets[-s - 1 :])

    def randomsearch_bracket(self, iteration: int) -> Bracket:
        """Random search on the maximum budget, spending what Hyperband's iteration would.

        hpbandster's RandomSearch gives every iteration the cost of the most expensive bracket,
        so a comparison at equal ``--iterations`` favours it; here iteration ``i`` gets as many
        full-budget evaluations as Hyperband's iteration ``i`` costs (at least one).
        """
        cost = self.hyperband_bracket(iteration).cost
        n = max(1, round(cost / self.max_budget))
        return Bracket(iteration, (n,), (native_budget(self.max_budget),))

    def grid_start(self, iteration: int) -> int:
        """Index of the first grid point that grid search's iteration ``iteration`` evaluates."""
        return sum(self.randomsearch_bracket(i).jobs for i in range(iteration))

    def grid_bracket(self, iteration: int) -> Bracket:
        """Grid search: the next grid points on the maximum budget, as many as random search's
        iteration evaluates (so equal ``--iterations`` is equal budget), fewer when the grid ends."""
        bracket = self.randomsearch_bracket(iteration)
        if self.grid_size is None:
            return bracket
        left = self.grid_size - self.grid_start(iteration)
        if left <= 0:
            raise ValueError(
                f"grid search has no iteration {iteration}: all {self.grid_size} points are planned before it"
            )
        return Bracket(iteration, (min(left, bracket.jobs),), bracket.budgets)

    def planned_iterations(self, optimizer: str, iterations: int) -> int:
        """The iterations a study of ``iterations`` runs: all of them, except that grid search
        stops once every grid point is evaluated."""
        if optimizer != "grid" or self.grid_size is None:
            return iterations
        planned = 0
        while planned < iterations and self.grid_start(planned) < self.grid_size:
            planned += 1
        return planned

    def bracket(self, optimizer: str, iteration: int) -> Bracket:
        if optimizer == "randomsearch":
            return self.randomsearch_bracket(iteration)
        if optimizer == "grid":
            return self.grid_bracket(iteration)
        return self.hyperband_bracket(iteration)

    def total_cost(self, optimizer: str, iterations: int) -> float:
        """Sum of the planned evaluations' budgets; :func:`planned_epochs` adds the trainings per evaluation."""
        iterations = self.planned_iterations(optimizer, iterations)
        return sum(self.bracket(optimizer, i).cost for i in range(iterations))

    def total_jobs(self, optimizer: str, iterations: int) -> int:
        iterations = self.planned_iterations(optimizer, iterations)
        return sum(self.bracket(optimizer, i).jobs for i in range(iterations))


# The settings that make one evaluation train its configuration several times on its budget; an
# evaluation trains the product of them. ``repeats`` today; k-fold cross-validation's folds
# will be another factor here, and every count of epochs follows.
TRAINING_FACTORS = ("repeats",)


def trainings_per_evaluation(settings: StudySettings | None) -> int:
    """How many trainings one evaluation of the study runs (``--repeats R``: R).

    The one rule behind every epoch count (``results.budget_used``, the epochs planned that
    ``run`` and ``status`` print, the report's and ``compare``'s epoch axes), so that they can
    never disagree. ``None`` (hpbandster's own result files, which carry no settings) is one.
    """
    if settings is None:
        return 1
    return math.prod(max(1, int(getattr(settings, name, 1) or 1)) for name in TRAINING_FACTORS)


def evaluation_epochs(budget: float, settings: StudySettings | None) -> float:
    """Epochs one evaluation on ``budget`` costs: its budget for each of its trainings. Failed
    evaluations cost it too: their trainings ran (or were attempted) before they failed."""
    return budget * trainings_per_evaluation(settings)


def planned_epochs(settings: StudySettings) -> float:
    """Epochs the whole study costs if every planned evaluation finishes."""
    schedule = schedule_of(settings)
    return evaluation_epochs(schedule.total_cost(settings.optimizer, settings.iterations), settings)


def schedule_of(settings: StudySettings) -> HyperbandSchedule:
    """The study's schedule (for grid search, with the grid's size: its end is the study's end)."""
    grid_size = None
    if settings.optimizer == "grid":  # the grid's end is the study's end (bohb_runner.master.grid)
        from bohb_runner.store.grid import cached_grid_size  # ConfigSpace: only for grids

        grid_size = cached_grid_size(settings.space, settings.grid_points)
    return HyperbandSchedule(settings.min_budget, settings.max_budget, settings.eta, grid_size)
