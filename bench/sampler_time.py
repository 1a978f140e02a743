"""BOHB's sampler alone: milliseconds per configuration and per result, vectorised against hpbandster's.

    python bench/sampler_time.py [--observations 100,1000] [--configs 200]

Both config generators get the same observations on one budget of the reduced LeNet's space
(``spaces/lenet.yaml``: 7 hyperparameters, one conditional), a smooth loss with noise and a
few crashed jobs, then propose configurations from the model (``random_fraction`` 0, so every
proposal is model-based). Prints the time per proposal (``get_config``) and per result
(``new_result``, which refits the model), and the ratio; target: well under a millisecond per
proposal with a thousand observations. Process CPU time, so that a busy machine does not
distort it; hpbandster's proposals are timed on fewer configurations (they are slow).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

import numpy as np  # noqa: E402
from hpbandster.core.dispatcher import Job  # noqa: E402
from hpbandster.optimizers.config_generators.bohb import BOHB as HpBandSterBOHB  # noqa: E402

from bohb_runner import compat  # noqa: E402
from bohb_runner.master.kde_sampler import VectorizedBOHB  # noqa: E402
from bohb_runner.store.spaces import load_space  # noqa: E402

SPACE = PROJECT / "spaces" / "lenet.yaml"


def observations(count: int) -> list[Job]:
    space = load_space(SPACE)
    space.seed(1)
    rng = np.random.default_rng(1)
    jobs = []
    for index, config in enumerate(space.sample_configuration(count)):
        job = Job((0, 0, index), config=dict(config), budget=3.0)
        loss = np.log(config["lr"]) ** 2 / 10 + config["dropout"] + rng.normal(0, 0.05)
        job.result = {"loss": float(loss), "info": {}} if index % 17 else None
        jobs.append(job)
    return jobs


def measure(cls: type, jobs: list[Job], configs: int) -> tuple[float, float]:
    """(ms per new_result averaged over the last 10% of results, ms per get_config)."""
    generator = cls(configspace=load_space(SPACE), random_fraction=0.0)
    np.random.seed(0)
    tail = max(1, len(jobs) // 10)
    for job in jobs[:-tail]:
        generator.new_result(job)
    started = time.process_time()
    for job in jobs[-tail:]:
        generator.new_result(job)
    fit = (time.process_time() - started) / tail
    started = time.process_time()
    for _ in range(configs):
        generator.get_config(3.0)
    return fit * 1e3, (time.process_time() - started) / configs * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--observations", default="100,1000")
    parser.add_argument("--configs", type=int, default=200)
    args = parser.parse_args()
    compat.silence_configspace_deprecations()
    warnings.simplefilter("ignore")
    print(f"machine: {os.cpu_count()} CPU cores; {SPACE.name}; CPU ms; model-based proposals only")
    print(
        f"{'obs':>5}  {'vectorized fit':>14}  {'hpbandster fit':>14}  {'vectorized get':>14}  {'hpbandster get':>14}  {'get ratio':>9}"
    )
    for count in (int(n) for n in args.observations.split(",")):
        jobs = observations(count)
        our_fit, our_get = measure(VectorizedBOHB, jobs, args.configs)
        their_fit, their_get = measure(HpBandSterBOHB, jobs, max(2, args.configs // 10))
        print(
            f"{count:>5}  {our_fit:>14.3f}  {their_fit:>14.3f}  {our_get:>14.3f}  {their_get:>14.3f}  "
            f"{their_get / our_get:>9.0f}"
        )
    print("ratio = hpbandster ms / vectorized ms per proposal")


if __name__ == "__main__":
    main()
