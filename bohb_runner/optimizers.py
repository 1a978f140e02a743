"""hpbandster's BOHB, Hyperband and random search, run by the study master.

Each class is hpbandster's optimizer (its config generator, its budgets and options) on top of
:class:`StudyMaster`; only the iterations come from the study's schedule, which is
hpbandster's Hyperband schedule with plain-float budgets (and, for random search, equal
budget accounting, see :mod:`bohb_runner.schedule`).
"""

from __future__ import annotations

from typing import Any

import ConfigSpace as CS
from hpbandster.optimizers import BOHB, HyperBand, RandomSearch

from bohb_runner.master import StudyMaster
from bohb_runner.settings import StudySettings


class StudyBOHB(BOHB, StudyMaster):
    """hpbandster's BOHB (KDE-guided sampling) with the study machinery."""

    get_next_iteration = StudyMaster.get_next_iteration


class StudyHyperBand(HyperBand, StudyMaster):
    """hpbandster's Hyperband (random sampling, successive halving) with the study machinery."""

    get_next_iteration = StudyMaster.get_next_iteration


class StudyRandomSearch(RandomSearch, StudyMaster):
    """hpbandster's random search on the maximum budget with the study machinery."""

    get_next_iteration = StudyMaster.get_next_iteration


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
            **common,
        )
    if settings.optimizer == "hyperband":
        return StudyHyperBand(**common)
    return StudyRandomSearch(**common)
