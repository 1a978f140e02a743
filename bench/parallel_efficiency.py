"""Parallel efficiency: wall-clock speed-up of 8 workers over 1 on jobs that sleep per epoch.

    python bench/parallel_efficiency.py [--workers 8] [--iterations 8] [--sleep-per-epoch 0.05]

The same BOHB study (``spaces/lenet.yaml``, budgets 1 to 27, eta 3, seed 0) runs with one
worker and with N, each job sleeping ``--sleep-per-epoch`` seconds per epoch of its budget
(``bench/bench_workers.py:SleepingWorker``): an ideal job, so that what is lost is the
master's (dispatch latency, synchronisation at the end of each successive-halving rung,
the tail of the last bracket). Speed-up = span with 1 worker / span with N, spans from the
first submission to the last result; target at least 6.5 for 8 workers.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from master_throughput import run_bohb_runner  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=8)
    parser.add_argument("--max-budget", type=float, default=27)
    parser.add_argument("--sleep-per-epoch", type=float, default=0.05)
    args = parser.parse_args()
    env = {"BENCH_SLEEP_PER_EPOCH": str(args.sleep_per_epoch)}
    print(
        f"machine: {os.cpu_count()} CPU cores; BOHB, budgets 1-{args.max_budget:g}, eta 3, {args.iterations} iterations, "
        f"jobs sleep {args.sleep_per_epoch:g} s per epoch"
    )
    single = run_bohb_runner(1, args.iterations, "SleepingWorker", max_budget=args.max_budget, env=env)
    many = run_bohb_runner(args.workers, args.iterations, "SleepingWorker", max_budget=args.max_budget, env=env)
    speedup = single["span"] / many["span"]
    print(f"{'workers':>7}  {'jobs':>5}  {'span s':>7}")
    print(f"{1:>7}  {single['jobs']:>5}  {single['span']:>7.2f}")
    print(f"{args.workers:>7}  {many['jobs']:>5}  {many['span']:>7.2f}")
    print(f"speed-up {speedup:.2f}x with {args.workers} workers (efficiency {speedup / args.workers:.0%}; target 6.5x)")


if __name__ == "__main__":
    main()
