"""Time the README's demo study and report its incumbent (issue: demo under 3 minutes on 2 cores).

    python bench/demo_time.py [--repeats 3]

Runs ``bohb-runner run --space spaces/lenet.yaml --workers 2 --max-budget 9 --iterations 2``
in a fresh study directory each time, on the CPU, and prints wall-clock time (start-up of the
nameserver and worker processes included) and the incumbent's validation and test error.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPU cores; device: cpu")
    times = []
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            study = Path(tmp) / "demo"
            command = [
                sys.executable, "-m", "bohb_runner", "run", "--space", "spaces/lenet.yaml", "--study-dir", str(study),
                "--workers", "2", "--max-budget", "9", "--iterations", "2", "--device", "cpu", "--no-progress",
                "--seed", str(args.seed + repeat),
            ]  # fmt: skip
            started = time.perf_counter()
            subprocess.run(command, cwd=PROJECT, check=True, capture_output=True)
            elapsed = time.perf_counter() - started
            best = subprocess.run(
                [sys.executable, "-m", "bohb_runner", "best", str(study), "--json"],
                cwd=PROJECT, check=True, capture_output=True, text=True,
            )  # fmt: skip
            incumbent = json.loads(best.stdout)["incumbent"]
            times.append(elapsed)
            print(
                f"run {repeat + 1} (seed {args.seed + repeat}): {elapsed:6.1f} s, incumbent on budget "
                f"{incumbent['budget']:g}: validation error {incumbent['loss']:.4f}, test error {incumbent['test_error']:.4f}"
            )
    print(f"median {sorted(times)[len(times) // 2]:.1f} s over {len(times)} runs; target: under 180 s")


if __name__ == "__main__":
    main()
