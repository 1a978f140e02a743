"""Epochs trained per Hyperband iteration, with and without continued training, against the minimum.

    python bench/continued_epochs.py [--max-budget 9] [--iterations 3] [--workers 2]

Runs the same LeNet study (embedded digits, ``spaces/lenet.yaml``, seed 0) twice, with continued
training (the default) and with ``--no-continue``, and adds up ``info["epochs_trained"]`` per
Hyperband iteration from each journal. The theoretical minimum of an iteration is what a
perfect continuation trains: every configuration once up to the largest budget it reaches,
sum over rungs of n_i * (b_i - b_{i-1}); training from scratch costs sum of n_i * b_i. Also checks
that both studies found the same losses (continuing must not change results).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from bohb_runner.store.journal import read_evaluations  # noqa: E402
from bohb_runner.store.schedule import HyperbandSchedule  # noqa: E402


def run_study(study: Path, args: argparse.Namespace, *extra: str) -> None:
    command = [
        sys.executable, "-m", "bohb_runner", "run", "--space", str(PROJECT / "spaces" / "lenet.yaml"),
        "--study-dir", str(study), "--workers", str(args.workers), "--max-budget", str(args.max_budget),
        "--iterations", str(args.iterations), "--seed", "0", "--no-progress", *extra,
    ]  # fmt: skip
    completed = subprocess.run(command, cwd=PROJECT, capture_output=True, text=True, timeout=3600)
    if completed.returncode != 0:
        sys.exit(f"study failed:\n{completed.stderr[-2000:]}")


def epochs_by_iteration(study: Path) -> dict[int, float]:
    totals: dict[int, float] = defaultdict(float)
    for evaluation in read_evaluations(study):
        info = evaluation.info if isinstance(evaluation.info, dict) else {}
        totals[evaluation.config_id[0]] += float(info.get("epochs_trained", evaluation.budget))
    return dict(totals)


def minimum_and_scratch(schedule: HyperbandSchedule, iteration: int) -> tuple[float, float]:
    bracket = schedule.bracket("bohb", iteration)
    minimum = scratch = 0.0
    previous = 0.0
    for count, budget in zip(bracket.num_configs, bracket.budgets, strict=True):
        minimum += count * (budget - previous)
        scratch += count * budget
        previous = budget
    return minimum, scratch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-budget", type=float, default=9)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    schedule = HyperbandSchedule(1.0, args.max_budget, 3.0)
    print(f"machine: {os.cpu_count()} CPU cores; LeNet on digits, budgets 1-{args.max_budget:g}, eta 3, "
          f"{args.iterations} iterations, {args.workers} workers")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-continue-") as tmp:
        on, off = Path(tmp) / "continue", Path(tmp) / "scratch"
        run_study(on, args)
        run_study(off, args, "--no-continue")
        with_continue, without = epochs_by_iteration(on), epochs_by_iteration(off)
        same = sorted((e.config_id, e.budget, e.loss) for e in read_evaluations(on)) == sorted(
            (e.config_id, e.budget, e.loss) for e in read_evaluations(off)
        )
    print(f"{'iteration':>9}  {'minimum':>8}  {'continue':>8}  {'scratch':>8}  {'saved':>6}")
    totals = [0.0, 0.0, 0.0]
    for iteration in range(args.iterations):
        minimum, scratch_expected = minimum_and_scratch(schedule, iteration)
        row = (minimum, with_continue.get(iteration, 0.0), without.get(iteration, 0.0))
        totals = [t + v for t, v in zip(totals, row, strict=True)]
        print(f"{iteration:>9}  {row[0]:>8g}  {row[1]:>8g}  {row[2]:>8g}  {1 - row[1] / row[2]:>6.0%}")
    print(f"{'all':>9}  {totals[0]:>8g}  {totals[1]:>8g}  {totals[2]:>8g}  {1 - totals[1] / totals[2]:>6.0%}")
    print(f"continued/minimum = {totals[1] / totals[0]:.3f}; same losses with and without: {same}")


if __name__ == "__main__":
    main()
