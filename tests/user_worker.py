"""Workers a user might bring (``--worker user_worker:...``), used by the integration tests.

They are plain hpbandster ``Worker`` subclasses, as in hpbandster's own examples, and return
numpy values on purpose: bohb-runner must cope with them.
"""

from __future__ import annotations

import os
import time

import numpy as np
from hpbandster.core.worker import Worker


class QuadraticWorker(Worker):
    """Loss (x - 0.3)^2 + (y - 0.6)^2 + 1/budget, computed with numpy."""

    def compute(self, config_id, config, budget, working_directory, **kwargs):
        x, y = np.float64(config["x"]), np.float64(config["y"])
        loss = (x - 0.3) ** 2 + (y - 0.6) ** 2 + 1.0 / budget
        return {"loss": loss, "info": {"curve": np.linspace(1, loss, 3), "pid": np.int64(os.getpid())}}


class SlowQuadraticWorker(QuadraticWorker):
    """Takes ``budget`` * 0.5 seconds, so that a study is still running when a test interrupts it."""

    def compute(self, config_id, config, budget, working_directory, **kwargs):
        time.sleep(0.5 * budget)
        return super().compute(config_id, config, budget, working_directory)


class FlakyWorker(QuadraticWorker):
    """Raises for x > 0.8, returns NaN for y > 0.9, and an unsendable object for x < 0.05."""

    def compute(self, config_id, config, budget, working_directory, **kwargs):
        if config["x"] > 0.8:
            raise ValueError(f"x = {config['x']:.3f} is too large for this model")
        if config["y"] > 0.9:
            return {"loss": float("nan"), "info": {}}
        if config["x"] < 0.05:
            return {"loss": 1.0, "info": {"model": object()}}
        return super().compute(config_id, config, budget, working_directory)


class CrashingWorker(Worker):
    """Fails while starting up, as a worker with a broken environment would."""

    def __init__(self, *args, **kwargs):
        raise RuntimeError("CUDA driver not found (simulated)")


class TimedQuadraticWorker(QuadraticWorker):
    """Takes ``budget`` * 0.05 seconds: long enough to be interrupted between results."""

    def compute(self, config_id, config, budget, working_directory, **kwargs):
        time.sleep(0.05 * budget)
        return super().compute(config_id, config, budget, working_directory)


class HangingWorker(QuadraticWorker):
    """Hangs (as a deadlocked data loader would) for x > 0.7; otherwise quick."""

    def compute(self, config_id, config, budget, working_directory, **kwargs):
        if config["x"] > 0.7:
            time.sleep(3600)
        return super().compute(config_id, config, budget, working_directory)


class GatedQuadraticWorker(SlowQuadraticWorker):
    """Holds every job until a file named ``gate`` exists beside the study's work directory.

    Lets a test keep one worker busy while another one dies and comes back, so that what the
    returning worker receives does not depend on how fast the machine is.
    """

    def compute(self, config_id, config, budget, working_directory, **kwargs):
        gate = os.path.join(os.path.dirname(os.path.abspath(working_directory)), "gate")
        while not os.path.exists(gate):
            time.sleep(0.05)
        return super().compute(config_id, config, budget, working_directory)
