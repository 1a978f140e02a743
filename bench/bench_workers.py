"""Workers whose jobs cost nothing, or only time, for the master benchmarks.

``ZeroCostWorker`` returns at once, so a study's speed is the master's (sampling, model
fitting, journal, RPC). ``SleepingWorker`` sleeps ``SLEEP_PER_EPOCH`` seconds per unit of
budget (``BENCH_SLEEP_PER_EPOCH`` in the environment), an ideal job for measuring parallel
efficiency. Both return a smooth loss of the configuration, so that BOHB has a model to fit.
Plain hpbandster ``Worker`` subclasses: usable by bohb-runner (``--worker
bench/bench_workers.py:ZeroCostWorker``) and by hpbandster's own master alike.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

from hpbandster.core.worker import Worker

SLEEP_PER_EPOCH = float(os.environ.get("BENCH_SLEEP_PER_EPOCH", "0.02"))


def synthetic_loss(config: dict[str, Any], budget: float) -> float:
    """Best near lr = 0.01, small dropout, many filters; less noisy with more budget."""
    lr = float(config.get("lr", 0.01))
    loss = (
        (math.log10(lr) + 2.0) ** 2 / 4 + float(config.get("dropout", 0.0)) + 8.0 / float(config.get("num_filters", 16))
    )
    return loss + 1.0 / budget


class ZeroCostWorker(Worker):
    def compute(self, config_id: Any, config: dict[str, Any], budget: float, working_directory: str, **kwargs: Any):
        return {"loss": synthetic_loss(config, budget), "info": {}}


class SleepingWorker(Worker):
    def compute(self, config_id: Any, config: dict[str, Any], budget: float, working_directory: str, **kwargs: Any):
        time.sleep(SLEEP_PER_EPOCH * budget)
        return {"loss": synthetic_loss(config, budget), "info": {}}
