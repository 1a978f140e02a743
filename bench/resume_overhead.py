"""What resuming a study costs: replaying a journal of about 1,000 records (issue: resume).

    python bench/resume_overhead.py [--records 1000] [--optimizer bohb]

1. Runs a real study (nameserver, master, 2 worker processes) with a zero-cost objective
   (``tests/user_worker.py:QuadraticWorker``) until its journal holds at least ``--records``
   evaluations.
2. Resumes it with one more Hyperband iteration, and, side by side, starts a fresh study of
   the same settings with that one iteration.
3. Prints, for both, the time from the command's start to its first newly submitted job (from
   the journal's ``submitted`` stamps) and the master's own replay figure from ``master.log``;
   the difference is the overhead of resuming.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from bohb_runner.store.journal import read_evaluations  # noqa: E402
from bohb_runner.store.schedule import HyperbandSchedule  # noqa: E402

SPACE = PROJECT / "tests" / "data" / "quadratic.yaml"
WORKER = f"{PROJECT / 'tests' / 'user_worker.py'}:QuadraticWorker"
MIN_BUDGET, MAX_BUDGET, ETA = 1.0, 27.0, 3.0


def run_study(study: Path, optimizer: str, iterations: int) -> float:
    """Run ``bohb-runner run`` to the end; returns the wall-clock time at which it started."""
    command = [
        sys.executable, "-m", "bohb_runner", "run", "--space", str(SPACE), "--study-dir", str(study),
        "--worker", WORKER, "--workers", "2", "--optimizer", optimizer, "--min-budget", str(MIN_BUDGET),
        "--max-budget", str(MAX_BUDGET), "--eta", str(ETA), "--iterations", str(iterations), "--no-progress",
        "--ping-interval", "1",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    started = time.time()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return started


def first_new_submission(study: Path, after: float) -> float:
    submitted = [e.submitted for e in read_evaluations(study) if e.submitted and e.submitted >= after]
    return min(submitted) - after


def replay_figure(study: Path) -> str:
    found = re.findall(r"replayed (\d+) evaluations in ([\d.]+) s", (study / "logs" / "master.log").read_text())
    return f"{found[-1][0]} records replayed in {found[-1][1]} s" if found else "no replay logged"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--optimizer", default="bohb", choices=("bohb", "hyperband", "randomsearch"))
    args = parser.parse_args()
    schedule = HyperbandSchedule(MIN_BUDGET, MAX_BUDGET, ETA)
    iterations = 1
    while schedule.total_jobs(args.optimizer, iterations) < args.records:
        iterations += 1
    with tempfile.TemporaryDirectory(prefix="bohb-resume-bench-") as tmp:
        study, fresh = Path(tmp) / "study", Path(tmp) / "fresh"
        print(f"building a {args.optimizer} study of {schedule.total_jobs(args.optimizer, iterations)} evaluations ...")
        t0 = time.monotonic()
        run_study(study, args.optimizer, iterations)
        records = len(read_evaluations(study))
        print(f"  {records} journal records in {time.monotonic() - t0:.1f} s")

        started = run_study(study, args.optimizer, iterations + 1)
        resumed_first = first_new_submission(study, started)
        # a fresh study whose first iteration is the same bracket as the resumed one's next
        started = run_study(fresh, args.optimizer, 1)
        fresh_first = first_new_submission(fresh, started)
        replayed = replay_figure(study)

    print(f"resume of {records} records: first new job after {resumed_first:.2f} s ({replayed})")
    print(f"fresh start:             first job after {fresh_first:.2f} s")
    print(
        f"overhead of resuming: {resumed_first - fresh_first:+.2f} s "
        f"({resumed_first / fresh_first:.2f}x the fresh start-up)"
    )


if __name__ == "__main__":
    main()
