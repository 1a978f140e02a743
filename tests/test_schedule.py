"""The Hyperband schedule must be hpbandster's own; random search must spend the same budget."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from hpbandster.optimizers.hyperband import HyperBand

from bohb_runner.store.schedule import HyperbandSchedule


def _hpbandster_bracket(min_budget, max_budget, eta, iteration):
    """hpbandster's HyperBand.get_next_iteration, called on a stand-in for a master."""
    max_sh_iter = -int(np.log(min_budget / max_budget) / np.log(eta)) + 1
    fake = SimpleNamespace(
        max_SH_iter=max_sh_iter,
        eta=eta,
        budgets=max_budget * np.power(eta, -np.linspace(max_sh_iter - 1, 0, max_sh_iter)),
        config_generator=SimpleNamespace(get_config=None),
    )
    iteration_object = HyperBand.get_next_iteration(fake, iteration)
    return iteration_object.num_configs, [float(b) for b in iteration_object.budgets]


@pytest.mark.parametrize(
    "min_budget,max_budget,eta", [(1, 9, 3), (1, 27, 3), (1, 81, 3), (0.1, 10, 2), (1, 100, 3), (3, 81, 3), (1, 1, 3)]
)
def test_brackets_match_hpbandster(min_budget, max_budget, eta):
    schedule = HyperbandSchedule(min_budget, max_budget, eta)
    for iteration in range(12):
        ours = schedule.hyperband_bracket(iteration)
        num_configs, budgets = _hpbandster_bracket(min_budget, max_budget, eta, iteration)
        assert list(ours.num_configs) == list(num_configs)
        assert list(ours.budgets) == pytest.approx(budgets, rel=1e-11)
        assert all(type(b) is float for b in ours.budgets)


def test_known_bracket_costs_for_1_to_9():
    schedule = HyperbandSchedule(1, 9, 3)
    assert schedule.budgets == (1.0, 3.0, 9.0)
    assert [schedule.hyperband_bracket(i).num_configs for i in range(3)] == [(9, 3, 1), (3, 1), (3,)]
    assert [schedule.hyperband_bracket(i).cost for i in range(3)] == [27.0, 18.0, 27.0]
    assert schedule.total_jobs("bohb", 2) == 13 + 4


def test_randomsearch_spends_what_hyperband_spends():
    schedule = HyperbandSchedule(1, 27, 3)
    for iteration in range(8):
        hb = schedule.hyperband_bracket(iteration)
        rs = schedule.randomsearch_bracket(iteration)
        assert rs.budgets == (27.0,)
        assert rs.cost == pytest.approx(hb.cost, abs=27 / 2)
    assert schedule.total_cost("randomsearch", 4) == schedule.total_cost("hyperband", 4)
