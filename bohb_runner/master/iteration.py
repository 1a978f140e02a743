"""Successive halving whose configurations are sampled through the master, by config id.

hpbandster's iterations call ``config_sampler(budget)`` without telling it which configuration
id the sample will get. The master needs the id to seed the sampling reproducibly and to
record the configuration before it runs, so this subclass decides the id first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hpbandster.optimizers.iterations import SuccessiveHalving

ConfigId = tuple[int, int, int]
Sampler = Callable[[ConfigId, float], tuple[dict[str, Any], dict[str, Any]]]


class StudyIteration(SuccessiveHalving):
    """One Hyperband bracket; ``config_sampler(config_id, budget)`` supplies new configurations."""

    def add_configuration(
        self, config: dict[str, Any] | None = None, config_info: dict[str, Any] | None = None
    ) -> ConfigId:
        if config is None:
            config_id = (self.HPB_iter, self.stage, self.actual_num_configs[self.stage])
            config, config_info = self.config_sampler(config_id, self.budgets[self.stage])
        return super().add_configuration(config=config, config_info=config_info or {})

    @property
    def current_budget(self) -> float | None:
        """The budget of the rung now running, None once the bracket is finished."""
        if self.is_finished or self.stage >= len(self.budgets):
            return None
        return self.budgets[self.stage]
