"""Grid search: the factorial's values and size (conditions, forbidden clauses), its coarse-first
order, its schedule, and real grid studies end to end, uninterrupted and killed + resumed."""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter
from pathlib import Path

import ConfigSpace as CS
import pytest

from bohb_runner.errors import SpaceError
from bohb_runner.master.grid import GridConfigGenerator
from bohb_runner.store.grid import (
    GridExhausted,
    GridTooLarge,
    axis_values,
    bisection_levels,
    check_grid,
    grid_points_in_order,
    grid_size,
)
from bohb_runner.store.journal import read_evaluations, read_sampled_configs
from bohb_runner.store.schedule import HyperbandSchedule
from bohb_runner.store.spaces import load_space

from conftest import SPACE, TESTS, assert_one_line_error, run_cli
from conftest import kill_master_after as kill_run_after

QUADRATIC = TESTS / "data" / "quadratic.yaml"


def cube(d: int) -> CS.ConfigurationSpace:
    return CS.ConfigurationSpace({f"x{i}": (0.0, 1.0) for i in range(d)})


# -- values and levels ------------------------------------------------------------------------


def test_bisection_levels_refine_the_grid_level_by_level():
    assert bisection_levels(1) == (0,)
    assert bisection_levels(2) == (0, 0)
    assert bisection_levels(3) == (0, 1, 0)
    assert bisection_levels(5) == (0, 2, 1, 2, 0)
    assert bisection_levels(4) == (0, 2, 1, 0)
    for n in range(2, 40):
        levels = bisection_levels(n)
        assert levels[0] == levels[-1] == 0 and all(level > 0 for level in levels[1:-1])
        # level <= L are about 2^L + 1 evenly spread values: each level at most doubles the gaps' count
        for level in range(max(levels) + 1):
            chosen = [i for i, value in enumerate(levels) if value <= level]
            assert len(chosen) <= 2**level + 1
            assert max(b - a for a, b in itertools.pairwise(chosen)) <= math.ceil((n - 1) / 2**level)


def test_numeric_values_are_evenly_spaced_log_for_log_and_rounded_for_ints():
    space = load_space(SPACE)
    lr = axis_values(space["lr"], 3)
    assert lr[0] == 1e-4 and lr[-1] == 0.1 and lr[1] == pytest.approx(10**-2.5)
    assert axis_values(space["batch_size"], 3) == (16, 45, 128)  # log: sqrt(16 * 128) = 45.25
    assert axis_values(space["dropout"], 5) == (0.0, 0.125, 0.25, 0.375, 0.5)
    assert axis_values(space["optimizer"], 3) == ("sgd", "adam")
    assert axis_values(space["filter_size"], 7) == (3, 5)
    small = CS.UniformIntegerHyperparameter("k", 1, 3)
    assert axis_values(small, 9) == (1, 2, 3)  # rounded, duplicates dropped


# -- the factorial ----------------------------------------------------------------------------


def test_factorial_size_counts_conditional_children_only_where_active():
    space = load_space(SPACE)  # momentum is active for sgd only
    points = grid_points_in_order(space, 3)
    # batch_size, dropout, lr, num_filters: 3^4; filter_size: 2; optimizer: sgd x 3 momenta + adam
    assert len(points) == grid_size(space, 3) == 3**4 * 2 * (3 + 1)
    assert len({json.dumps(p, sort_keys=True) for p in points}) == len(points)
    for point in points:
        assert ("momentum" in point) == (point["optimizer"] == "sgd")
        CS.Configuration(space, values=point)  # every point is a valid configuration


def test_nested_conditions_and_forbidden_clauses_are_respected():
    space = CS.ConfigurationSpace({"a": (0.0, 1.0), "kind": ["p", "q", "r"], "b": (1, 9), "c": ["u", "v"]})
    space.add(CS.InCondition(space["b"], space["kind"], ["p", "q"]))
    space.add(CS.EqualsCondition(space["c"], space["b"], 9))  # a grandchild, active only via b
    space.add(
        CS.ForbiddenAndConjunction(
            CS.ForbiddenEqualsClause(space["kind"], "q"), CS.ForbiddenEqualsClause(space["a"], 0.0)
        )
    )
    points = grid_points_in_order(space, 3)
    expected = 0
    for a, kind in itertools.product((0.0, 0.5, 1.0), ("p", "q", "r")):
        if kind == "q" and a == 0.0:
            continue
        expected += 1 if kind == "r" else 2 + 2  # b in {1, 5}, or b = 9 with c in {u, v}
    assert len(points) == expected == grid_size(space, 3)
    assert not any(p["kind"] == "q" and p["a"] == 0.0 for p in points)
    assert all(("c" in p) == (p.get("b") == 9) for p in points)
    for point in points:
        CS.Configuration(space, values=point)


def test_a_grid_too_large_or_empty_is_a_clear_error():
    with pytest.raises(GridTooLarge, match="more than 100,000 points; use fewer --grid-points"):
        check_grid(cube(8), 5, "big.yaml")  # 5^8 = 390,625
    empty = CS.ConfigurationSpace({"a": CS.Float("a", (0.0, 1.0), default=0.3)})
    empty.add(CS.ForbiddenInClause(empty["a"], [0.0, 1.0]))  # both points of a 2-point grid
    with pytest.raises(SpaceError, match="the grid is empty"):
        check_grid(empty, 2, "empty.yaml")
    assert check_grid(cube(2), 4, "ok.yaml") == 16


# -- the order ----------------------------------------------------------------------------------


@pytest.mark.parametrize("d,n", [(2, 5), (3, 5), (4, 3), (3, 9)])
def test_every_level_prefix_is_a_full_coarser_grid(d, n):
    """The first 2^d points are the corners, the first 3^d the 3-point grid, the first 5^d the
    5-point grid...: stopping after any level leaves a complete grid of the space."""
    points = grid_points_in_order(cube(d), n)
    assert len(points) == n**d
    values = axis_values(cube(1)["x0"], n)
    levels = bisection_levels(n)
    for level in range(max(levels) + 1):
        coarse = [v for v, lv in zip(values, levels, strict=True) if lv <= level]
        size = len(coarse) ** d
        prefix = {tuple(p[f"x{i}"] for i in range(d)) for p in points[:size]}
        assert prefix == set(itertools.product(coarse, repeat=d)), level


def test_within_a_level_the_points_spread_out_first():
    """Every axis sees both its extremes within the first two points (the second is the corner
    opposite the first), and the first 8 corners of a 4-d cube differ pairwise in at least two
    coordinates; a nested-loop enumeration would have varied the last axis only."""
    points = grid_points_in_order(cube(4), 3)
    first, second = points[0], points[1]
    assert all({first[f"x{i}"], second[f"x{i}"]} == {0.0, 1.0} for i in range(4))
    eight = [tuple(p[f"x{i}"] for i in range(4)) for p in points[:8]]
    assert len(set(eight)) == 8 and set(eight) <= set(itertools.product((0.0, 1.0), repeat=4))
    for p, q in itertools.combinations(eight, 2):
        assert sum(a != b for a, b in zip(p, q, strict=True)) >= 2, (p, q)
    for axis in range(4):
        assert Counter(p[axis] for p in eight) == {0.0: 4, 1.0: 4}


def test_per_axis_coverage_of_prefixes_on_the_lenet_space():
    space = load_space(SPACE)
    points = grid_points_in_order(space, 3)
    numeric = ["batch_size", "dropout", "lr", "num_filters"]
    for name in numeric:  # both ends of every numeric range within the first two points
        values = axis_values(space[name], 3)
        assert {points[0][name], points[1][name]} == {values[0], values[-1]}
    assert {p["optimizer"] for p in points[:2]} == {"sgd", "adam"}
    # the corners come first: 2^4 numeric corners x 2 filter sizes x (sgd with 2 momenta, adam)
    corners = 2**4 * 2 * 3
    ends = {name: {axis_values(space[name], 3)[0], axis_values(space[name], 3)[-1]} for name in numeric + ["momentum"]}
    assert all(p[name] in ends[name] for p in points[:corners] for name in p if name in ends)
    assert all(any(p[name] not in ends[name] for name in p if name in ends) for p in points[corners:])
    # then the middles: every value of every axis is seen within the first quarter of the grid
    for name in numeric:
        seen_at = max(next(i for i, p in enumerate(points) if p[name] == v) for v in axis_values(space[name], 3))
        assert corners <= seen_at < len(points) / 4


def test_the_order_is_deterministic():
    space = load_space(SPACE)
    assert grid_points_in_order(space, 3) == grid_points_in_order(load_space(SPACE), 3)


def test_generator_hands_out_points_by_cursor_and_ends():
    generator = GridConfigGenerator(cube(2), 2)
    assert len(generator) == 4
    configs = [generator.get_config(9.0) for _ in range(4)]
    assert [info["grid_index"] for _, info in configs] == [0, 1, 2, 3]
    assert [c for c, _ in configs] == generator.points
    with pytest.raises(GridExhausted):
        generator.get_config(9.0)
    generator.seek(2)
    assert generator.get_config(9.0)[0] == generator.points[2]


# -- the schedule -------------------------------------------------------------------------------


def test_grid_schedule_spends_like_random_search_and_stops_with_the_grid():
    unlimited = HyperbandSchedule(1, 9, 3)
    schedule = HyperbandSchedule(1, 9, 3, grid_size=25)
    # while the grid lasts, each iteration is random search's (Hyperband's cost in max-budget runs)
    assert [schedule.bracket("grid", i).num_configs for i in range(3)] == [(3,), (2,), (3,)]
    assert [unlimited.bracket("randomsearch", i) for i in range(3)] == [schedule.bracket("grid", i) for i in range(3)]
    assert [schedule.grid_start(i) for i in range(4)] == [0, 3, 5, 8]
    assert schedule.planned_iterations("grid", 100) == 10  # 3+2+3 per 3 iterations: 24 after 9, 1 left
    assert schedule.bracket("grid", 9).num_configs == (1,)
    assert schedule.total_jobs("grid", 100) == 25
    assert schedule.total_cost("grid", 100) == 25 * 9
    assert schedule.total_jobs("grid", 2) == 5
    assert schedule.planned_iterations("bohb", 100) == 100
    with pytest.raises(ValueError):
        schedule.bracket("grid", 10)


# -- real grid studies ----------------------------------------------------------------------------


def grid_args(study: Path, *extra, worker="user_worker:QuadraticWorker", workers=2, iterations=20, points=3):
    return [
        "run", "--space", QUADRATIC, "--study-dir", study, "--worker", worker, "--workers", workers,
        "--optimizer", "grid", "--grid-points", points, "--max-budget", 9, "--iterations", iterations,
        "--no-progress", "--ping-interval", 1, *extra,
    ]  # fmt: skip


def evaluated_points(study: Path) -> list[tuple[tuple[int, int, int], dict]]:
    return sorted((e.config_id, e.config) for e in read_evaluations(study))


def test_grid_study_evaluates_the_whole_grid_in_order_on_the_max_budget_and_ends(tmp_path):
    study = tmp_path / "grid"
    result = run_cli(*grid_args(study, iterations=20), timeout=120)
    assert result.returncode == 0, result.stderr
    assert (
        "grid of 9 points (3 per numeric hyperparameter) on budget 9, 4 iterations (the grid ends before the 20"
        " asked for), 9 evaluations, 81 epochs planned"
    ) in result.stderr
    evaluations = read_evaluations(study)
    assert len(evaluations) == 9 and all(e.ok and e.budget == 9.0 for e in evaluations)
    expected = grid_points_in_order(load_space(QUADRATIC), 3)
    schedule = HyperbandSchedule(1, 9, 3, grid_size=9)
    by_index = {schedule.grid_start(i) + j: config for (i, _, j), config in evaluated_points(study)}
    assert [by_index[k] for k in range(9)] == expected
    assert {s.config_info["grid_index"] for s in read_sampled_configs(study)} == set(range(9))
    best = json.loads(run_cli("best", study, "--json").stdout)["incumbent"]
    assert best["config"] == {"x": 0.5, "y": 0.5}  # nearest grid point to (0.3, 0.6)
    # running it again: the grid is done, nothing more to do
    again = run_cli(*grid_args(study, iterations=30), timeout=120)
    assert again.returncode == 0, again.stderr
    assert len(read_evaluations(study)) == 9


def test_grid_points_must_be_at_least_two(tmp_path):
    result = run_cli(*grid_args(tmp_path / "s", points=1))
    assert_one_line_error(result, "--grid-points must be an integer of at least 2, got 1")
    assert not (tmp_path / "s" / "study.json").exists()


def kill_master_after(study: Path, records: int) -> None:
    """Start the (slower) grid study, SIGKILL its master once ``records`` results are journalled."""
    kill_run_after(records, *grid_args(study, worker="user_worker:TimedQuadraticWorker", points=5), study=study)


@pytest.mark.slow
def test_killed_and_resumed_grid_study_equals_the_uninterrupted_one(tmp_path):
    reference = tmp_path / "reference"
    ran = run_cli(*grid_args(reference, points=5, workers=1), timeout=120)
    assert ran.returncode == 0, ran.stderr
    study = tmp_path / "interrupted"
    for records in (4, 11):  # kill -9 of the master twice, with jobs running
        kill_master_after(study, records)
        assert records <= len(read_evaluations(study)) < 25
    resumed = run_cli(*grid_args(study, worker="user_worker:TimedQuadraticWorker", points=5), timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert evaluated_points(study) == evaluated_points(reference)
    keys = Counter(e.config_id for e in read_evaluations(study))
    assert len(keys) == 25 and max(keys.values()) == 1  # each grid point exactly once
    assert "replayed" in (study / "logs" / "master.log").read_text()
