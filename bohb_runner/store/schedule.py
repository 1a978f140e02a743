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
        """Total budget (epochs) the bracket consumes if every job finishes."""
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
        iterations = self.planned_iterations(optimizer, iterations)
        return sum(self.bracket(optimizer, i).cost for i in range(iterations))

    def total_jobs(self, optimizer: str, iterations: int) -> int:
        iterations = self.planned_iterations(optimizer, iterations)
        return sum(self.bracket(optimizer, i).jobs for i in range(iterations))


def schedule_of(settings: StudySettings) -> HyperbandSchedule:
    """The study's schedule (for grid search, with the grid's size: its end is the study's end)."""
    grid_size = None
    if settings.optimizer == "grid":  # the grid's end is the study's end (bohb_runner.master.grid)
        from bohb_runner.store.grid import cached_grid_size  # ConfigSpace: only for grids

        grid_size = cached_grid_size(settings.space, settings.grid_points)
    return HyperbandSchedule(settings.min_budget, settings.max_budget, settings.eta, grid_size)
