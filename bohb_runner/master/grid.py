"""Grid search's config generator: hands out the grid's points (:mod:`bohb_runner.store.grid`) in order."""

from __future__ import annotations

from typing import Any

import ConfigSpace as CS
from hpbandster.core.base_config_generator import base_config_generator

from bohb_runner.store.grid import DEFAULT_GRID_POINTS, GridExhausted, grid_points_in_order


class GridConfigGenerator(base_config_generator):
    """hpbandster config generator that hands out the grid's points in order, one per call.

    The next point is ``points[cursor]``; :meth:`seek` moves the cursor, which is how the
    study master ties a point to a configuration id (so a resumed study, which never asks for
    the configurations it already journalled, continues exactly where it stopped).
    """

    def __init__(self, configspace: CS.ConfigurationSpace, grid_points: int = DEFAULT_GRID_POINTS, **kwargs: Any):
        super().__init__(**kwargs)
        self.configspace = configspace
        self.grid_points = grid_points
        self.points = grid_points_in_order(configspace, grid_points)
        self.cursor = 0

    def __len__(self) -> int:
        return len(self.points)

    def seek(self, index: int) -> None:
        self.cursor = index

    def get_config(self, budget: float) -> tuple[dict[str, Any], dict[str, Any]]:
        if self.cursor >= len(self.points):
            raise GridExhausted(f"all {len(self.points)} grid points have been handed out")
        index = self.cursor
        self.cursor += 1
        return dict(self.points[index]), {"model_based_pick": False, "grid_index": index}
