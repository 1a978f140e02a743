"""The grid of grid search: the full factorial of a search space, in an order that covers it coarsely first.

Grid search is the protocol the tuning literature compares against, and a grid is only useful
as a baseline if a study that stops early (a time limit, ``--iterations``) has still seen the
whole space. So the points are not enumerated axis by axis (which would spend the first
hundred evaluations varying the last hyperparameter only) but level by level:

* each axis's values get a *level*: the two extremes are level 0, the middle value level 1,
  the quarter points level 2, and so on (recursive bisection of the index range);
* a point's level is the highest level among its coordinates, and points are taken in
  increasing level: the first ``2^d`` points are the corners of the space, the first ``3^d``
  the 3-point grid, the first ``5^d`` the 5-point grid, ... (for ``d`` hyperparameters with
  enough values each); every prefix that ends a level is itself a coarser full grid;
* within a level, points are picked greedily farthest (in normalised coordinates) from those
  of the level already picked, so that even a prefix that ends inside a level is spread out:
  the second point is the corner opposite the first.

Numeric hyperparameters get ``grid_points`` values from their lower to their upper bound,
evenly spaced (in log space for log hyperparameters); integers are rounded and de-duplicated.
Categorical and ordinal hyperparameters take all their values, constants their value.
Conditional hyperparameters are enumerated only where they are active (an inactive child
does not multiply the grid), and points that violate a forbidden clause are left out.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import ConfigSpace as CS
import numpy as np

from bohb_runner.compat import to_native
from bohb_runner.errors import SpaceError

DEFAULT_GRID_POINTS = 3
# Grids are enumerated in memory (and ordered); a larger one is almost surely a mistake
# (too many --grid-points for the number of hyperparameters) and would never finish anyway.
MAX_GRID_SIZE = 100_000
# Within a level, greedy farthest-point ordering costs size^2; larger levels keep the
# (deterministic, but less spread out) order of their coordinates' ranks.
MAX_SPREAD_LEVEL_SIZE = 4096


class GridTooLarge(SpaceError):
    """The factorial has more points than bohb-runner will enumerate."""


class GridExhausted(RuntimeError):
    """Every point of the grid has been handed out."""


@dataclass(frozen=True)
class Axis:
    """The values one hyperparameter takes in the grid, and the level of each value."""

    name: str
    values: tuple[Any, ...]
    levels: tuple[int, ...]

    @property
    def ranks(self) -> tuple[int, ...]:
        """Each value's position in the axis's coarse-first order (extremes first)."""
        order = sorted(range(len(self.values)), key=lambda i: (self.levels[i], i))
        rank = [0] * len(self.values)
        for position, index in enumerate(order):
            rank[index] = position
        return tuple(rank)


def bisection_levels(n: int) -> tuple[int, ...]:
    """The level of each of ``n`` evenly spaced values: 0 for both ends, then 1 for the
    middle, 2 for the quarter points, ...; the values of levels <= L are the indices nearest to
    ``m / 2^L`` of the range, so each level refines the grid of the previous ones."""
    if n <= 0:
        return ()
    if n == 1:
        return (0,)
    levels: list[int | None] = [None] * n
    level = 0
    while any(value is None for value in levels):
        steps = 2**level
        for m in range(steps + 1):
            index = (2 * m * (n - 1) + steps) // (2 * steps)  # round(m * (n-1) / steps), halves up
            if levels[index] is None:
                levels[index] = level
        level += 1
    return tuple(int(value) for value in levels)  # type: ignore[arg-type]


def axis_values(hp: Any, grid_points: int) -> tuple[Any, ...]:
    """The grid's values of one hyperparameter, in their natural order."""
    if isinstance(hp, CS.CategoricalHyperparameter):
        return tuple(to_native(v) for v in hp.choices)
    if isinstance(hp, CS.OrdinalHyperparameter):
        return tuple(to_native(v) for v in hp.sequence)
    if isinstance(hp, CS.Constant):
        return (to_native(hp.value),)
    lower, upper = float(hp.lower), float(hp.upper)
    log = bool(getattr(hp, "log", False))
    if log:
        raw = np.exp(np.linspace(math.log(lower), math.log(upper), grid_points))
    else:
        raw = np.linspace(lower, upper, grid_points)
    raw[0], raw[-1] = lower, upper  # exact bounds despite exp(log(x)) rounding
    if isinstance(hp, (CS.UniformIntegerHyperparameter, CS.NormalIntegerHyperparameter, CS.BetaIntegerHyperparameter)):
        ints: list[int] = []
        for value in raw:
            rounded = min(int(upper), max(int(lower), int(math.floor(value + 0.5))))
            if rounded not in ints:
                ints.append(rounded)
        return tuple(ints)
    return tuple(float(v) for v in raw)


def grid_axes(space: CS.ConfigurationSpace, grid_points: int) -> list[Axis]:
    """One axis per hyperparameter, in the space's (topological) order: parents before children."""
    axes = []
    for hp in space.values():
        values = axis_values(hp, grid_points)
        axes.append(Axis(hp.name, values, bisection_levels(len(values))))
    return axes


def _is_active(space: CS.ConfigurationSpace, name: str, assigned: dict[str, Any]) -> bool:
    for condition in space.parent_conditions_of[name]:
        parents = [p.name for p in condition.parents] if hasattr(condition, "parents") else [condition.parent.name]
        if any(parent not in assigned for parent in parents):
            return False  # a parent is itself inactive
        if not condition.satisfied_by_value(assigned):
            return False
    return True


def _factorial(
    space: CS.ConfigurationSpace, axes: list[Axis], limit: int
) -> Iterator[tuple[dict[str, Any], dict[str, int]]]:
    """Every active assignment (values and their indices), depth first; forbidden ones skipped."""
    forbidden = list(space.forbidden_clauses)
    count = 0

    def extend(position: int, values: dict[str, Any], indices: dict[str, int]) -> Iterator:
        nonlocal count
        if position == len(axes):
            if any(clause.is_forbidden_value(values) for clause in forbidden):
                return
            count += 1
            if count > limit:
                raise GridTooLarge(f"the grid has more than {limit:,} points")
            yield dict(values), dict(indices)
            return
        axis = axes[position]
        if not _is_active(space, axis.name, values):
            yield from extend(position + 1, values, indices)
            return
        for index, value in enumerate(axis.values):
            values[axis.name], indices[axis.name] = value, index
            yield from extend(position + 1, values, indices)
            del values[axis.name], indices[axis.name]

    yield from extend(0, {}, {})


def grid_points_in_order(
    space: CS.ConfigurationSpace, grid_points: int = DEFAULT_GRID_POINTS, limit: int = MAX_GRID_SIZE
) -> list[dict[str, Any]]:
    """The full factorial of ``space`` in coarse-first order (see the module docstring)."""
    if grid_points < 2:
        raise SpaceError(f"--grid-points must be at least 2, got {grid_points}")
    axes = grid_axes(space, grid_points)
    ranks = {axis.name: axis.ranks for axis in axes}
    levels = {axis.name: axis.levels for axis in axes}
    spans = {axis.name: max(1, len(axis.values) - 1) for axis in axes}
    by_level: dict[int, list[tuple[tuple[int, ...], dict[str, Any], list[float]]]] = {}
    for values, indices in _factorial(space, axes, limit):
        level = max((levels[name][i] for name, i in indices.items()), default=0)
        key = tuple(ranks[a.name][indices[a.name]] if a.name in indices else -1 for a in axes)
        # normalised coordinates for spreading; an inactive hyperparameter sits apart from all values
        coords = [indices[a.name] / spans[a.name] if a.name in indices else -1.0 for a in axes]
        by_level.setdefault(level, []).append((key, values, coords))
    ordered: list[dict[str, Any]] = []
    for level in sorted(by_level):
        block = sorted(by_level[level], key=lambda item: item[0])
        ordered.extend(block[i][1] for i in _spread_order([coords for _, _, coords in block]))
    return ordered


def _spread_order(coords: list[list[float]]) -> list[int]:
    """Greedy farthest-point order of ``coords`` (starting with the first), ties to the lowest index."""
    n = len(coords)
    if n <= 2 or n > MAX_SPREAD_LEVEL_SIZE:
        return list(range(n))
    points = np.asarray(coords, dtype=float)
    nearest = np.full(n, np.inf)
    picked = np.zeros(n, dtype=bool)
    order = []
    current = 0
    for _ in range(n):
        order.append(current)
        picked[current] = True
        distance = ((points - points[current]) ** 2).sum(axis=1)
        nearest = np.minimum(nearest, distance)
        candidates = np.where(picked, -1.0, nearest)
        current = int(np.argmax(candidates))
    return order


def grid_size(space: CS.ConfigurationSpace, grid_points: int = DEFAULT_GRID_POINTS) -> int:
    """How many points the grid has (conditions and forbidden clauses taken into account)."""
    if grid_points < 2:
        raise SpaceError(f"--grid-points must be at least 2, got {grid_points}")
    return sum(1 for _ in _factorial(space, grid_axes(space, grid_points), MAX_GRID_SIZE))


def check_grid(space: CS.ConfigurationSpace, grid_points: int, origin: str) -> int:
    """The grid's size; a grid that is empty or too large to enumerate is a one-line error."""
    try:
        size = grid_size(space, grid_points)
    except GridTooLarge:
        raise GridTooLarge(
            f"{origin}: the grid with --grid-points {grid_points} has more than {MAX_GRID_SIZE:,} points;"
            " use fewer --grid-points or fewer hyperparameters"
        ) from None
    if size == 0:
        raise SpaceError(f"{origin}: every grid point violates a forbidden clause; the grid is empty")
    return size


@functools.lru_cache(maxsize=8)
def _cached_size(space_json: str, grid_points: int) -> int:
    from bohb_runner.store.spaces import space_from_dict

    return grid_size(space_from_dict(json.loads(space_json)), grid_points)


def cached_grid_size(space: Mapping[str, Any], grid_points: int) -> int:
    """:func:`grid_size` of a serialised space (as in ``study.json``), computed once per process."""
    return _cached_size(json.dumps(space, sort_keys=True), grid_points)
