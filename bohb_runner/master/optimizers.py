"""hpbandster's BOHB, Hyperband and random search, run by the study master.

Each class is hpbandster's optimizer (its config generator, its budgets and options) on top of
:class:`StudyMaster`; only the iterations come from the study's schedule, which is
hpbandster's Hyperband schedule with plain-float budgets (and, for random search, equal
budget accounting, see :mod:`bohb_runner.store.schedule`). Grid search has no hpbandster optimizer:
:class:`StudyGrid` is the study master with bohb-runner's grid config generator.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import ConfigSpace as CS
from hpbandster.optimizers import BOHB, HyperBand, RandomSearch

from bohb_runner.master.grid import GridConfigGenerator
from bohb_runner.master.kde_sampler import VectorizedBOHB
from bohb_runner.master.study_master import StudyMaster
from bohb_runner.store.settings import StudySettings


class StudyBOHB(BOHB, StudyMaster):
    """hpbandster's BOHB (KDE-guided sampling) with the study machinery.

    ``sampler='vectorized'`` swaps hpbandster's config generator for
    :class:`bohb_runner.master.kde_sampler.VectorizedBOHB` (the same algorithm, built with the same
    options) before anything has used it; ``'hpbandster'`` keeps hpbandster's own.
    """

    get_next_iteration = StudyMaster.get_next_iteration

    def __init__(self, *, sampler: str = "vectorized", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if sampler == "vectorized":
            original = self.config_generator
            self.config_generator = VectorizedBOHB(
                configspace=original.configspace,
                min_points_in_model=original.min_points_in_model,
                top_n_percent=original.top_n_percent,
                num_samples=original.num_samples,
                random_fraction=original.random_fraction,
                bandwidth_factor=original.bw_factor,
                min_bandwidth=original.min_bandwidth,
            )


class StudyHyperBand(HyperBand, StudyMaster):
    """hpbandster's Hyperband (random sampling, successive halving) with the study machinery."""

    get_next_iteration = StudyMaster.get_next_iteration


class StudyRandomSearch(RandomSearch, StudyMaster):
    """hpbandster's random search on the maximum budget with the study machinery."""

    get_next_iteration = StudyMaster.get_next_iteration


class StudyGrid(StudyMaster):
    """Grid search (:mod:`bohb_runner.master.grid`) on the maximum budget with the study machinery.

    Iteration ``i`` evaluates as many grid points as random search's iteration ``i`` (what
    Hyperband's iteration ``i`` costs); the study ends when the grid does. Configuration
    ``(i, 0, j)`` is grid point ``grid_start(i) + j``: the point follows from the id alone, so a
    resumed study, which replays journalled configurations without sampling them, goes on with
    exactly the next point.
    """

    def __init__(
        self,
        configspace: CS.ConfigurationSpace,
        eta: float,
        min_budget: float,
        max_budget: float,
        grid_points: int,
        **kwargs: Any,
    ) -> None:
        generator = GridConfigGenerator(configspace, grid_points)
        schedule = kwargs.pop("schedule")
        if schedule.grid_size is None:
            schedule = dataclasses.replace(schedule, grid_size=len(generator))
        elif schedule.grid_size != len(generator):
            raise ValueError(f"the schedule plans {schedule.grid_size} grid points, the grid has {len(generator)}")
        super().__init__(config_generator=generator, schedule=schedule, **kwargs)
        self.eta, self.min_budget, self.max_budget = eta, max_budget, max_budget
        self.config.update({"eta": eta, "min_budget": max_budget, "max_budget": max_budget, "grid_points": grid_points})

    def run(self, n_iterations: int = 1, min_n_workers: int = 1, iteration_kwargs: dict | None = None) -> list:
        planned = self.schedule.planned_iterations("grid", n_iterations)
        return super().run(n_iterations=planned, min_n_workers=min_n_workers, iteration_kwargs=iteration_kwargs)

    def _sample_configuration(self, config_id: tuple[int, int, int], budget: float) -> tuple[dict, dict]:
        self.config_generator.seek(self.schedule.grid_start(config_id[0]) + config_id[2])
        return super()._sample_configuration(config_id, budget)


def build_optimizer(settings: StudySettings, space: CS.ConfigurationSpace, **master_kwargs: Any) -> StudyMaster:
    """The optimizer the settings name, wired to the study's journals and nameserver."""
    common = dict(
        configspace=space,
        eta=settings.eta,
        min_budget=settings.min_budget,
        max_budget=settings.max_budget,
        run_id=settings.run_id,
        optimizer_name=settings.optimizer,
        seed=settings.seed,
        **master_kwargs,
    )
    if settings.optimizer == "bohb":
        options = settings.bohb
        return StudyBOHB(
            top_n_percent=options.top_n_percent,
            num_samples=options.num_samples,
            random_fraction=options.random_fraction,
            bandwidth_factor=options.bandwidth_factor,
            min_bandwidth=options.min_bandwidth,
            min_points_in_model=options.min_points_in_model,
            sampler=options.sampler,
            **common,
        )
    if settings.optimizer == "hyperband":
        return StudyHyperBand(**common)
    if settings.optimizer == "grid":
        return StudyGrid(grid_points=settings.grid_points, **common)
    return StudyRandomSearch(**common)
