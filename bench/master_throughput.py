"""Master throughput with zero-cost workers: bohb-runner's BOHB against plain hpbandster's.

    python bench/master_throughput.py [--workers 8,32] [--iterations 24]

Both run BOHB on the reduced LeNet's space (``spaces/lenet.yaml``, 7 hyperparameters, one
conditional), budgets 1 to 27, eta 3, with workers whose jobs return at once
(``bench/bench_workers.py:ZeroCostWorker``), so what is measured is the master: sampling, model
fitting, bookkeeping and the RPC round trips.

* bohb-runner: ``bohb-runner run --workers N --min-workers N`` (vectorised sampler, fsynced
  journal, serpent, authenticated Pyro4, workers keeping their connection to the dispatcher),
  worker processes as in any study;
* hpbandster: its own ``BOHB`` master, ``NameServer`` and ``Worker`` processes, with
  bohb-runner's compat layer's numpy fixes only (without them it hangs on numpy 2).

Jobs per second = evaluations / (last result - first submission), from each one's own
timestamps, so process start-up is not counted for either. Master CPU ms per job = the master
process's CPU time (all its threads: nameserver, dispatcher, optimizer) from its first result to
its last, per result: with zero-cost workers the master is bound by it, and unlike jobs/s it
hardly depends on what else the machine is doing. Prints both and their ratio
(target: at least 10x), side by side in one run. ``--profile`` also writes a cProfile of
bohb-runner's master (``python -m cProfile``) for the per-job fixed costs.
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
SPACE = PROJECT / "spaces" / "lenet.yaml"
WORKERS_FILE = PROJECT / "bench" / "bench_workers.py"
PING_INTERVAL = 10  # seconds between the dispatchers' worker discovery rounds, the same for both


def run_bohb_runner(
    workers: int,
    iterations: int,
    worker_class: str,
    *,
    max_budget: float = 27,
    profile: Path | None = None,
    extra: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> dict[str, float]:
    """One bohb-runner study in a fresh directory; returns jobs, span (s) and jobs/s."""
    with tempfile.TemporaryDirectory(prefix="bench-master-") as tmp:
        study = Path(tmp) / "study"
        command = [sys.executable]
        if profile is not None:
            command += ["-m", "cProfile", "-o", str(profile)]
        command += [
            "-m", "bohb_runner", "run", "--space", str(SPACE), "--study-dir", str(study),
            "--worker", f"{WORKERS_FILE}:{worker_class}", "--workers", str(workers), "--min-workers", str(workers),
            "--min-budget", "1", "--max-budget", str(max_budget), "--eta", "3", "--iterations", str(iterations),
            "--no-progress", "--ping-interval", str(PING_INTERVAL), *extra,
        ]  # fmt: skip
        stderr = Path(tmp) / "stderr"
        with stderr.open("w") as err:
            process = subprocess.Popen(
                command, cwd=PROJECT, stdout=subprocess.DEVNULL, stderr=err, env={**os.environ, **(env or {})}
            )
            cpu_samples = _sample_cpu_while_running(process, study / "results.jsonl", timeout=1800)
        if process.returncode != 0:
            sys.exit(f"bohb-runner study failed:\n{stderr.read_text()[-2000:]}")
        journal = (study / "results.jsonl").read_bytes()
        records = [json.loads(line) for line in journal.splitlines()]
        sampled = [json.loads(line) for line in (study / "configs.jsonl").read_text().splitlines()]
    picks = [bool(s.get("config_info", {}).get("model_based_pick")) for s in sampled]
    return {
        **_throughput([(r["submitted"], r["finished"]) for r in records]),
        "model_based": sum(picks),
        "cpu_ms_per_job": _cpu_ms_per_job(cpu_samples, journal),
    }


def _process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process, all its threads (Linux ``/proc``; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _sample_cpu_while_running(
    process: subprocess.Popen, journal: Path, timeout: float, interval: float = 0.01
) -> list[tuple[int, float]]:
    """(journal size, master CPU seconds) every ``interval`` until the master exits: what its
    CPU time per job is computed from (the size, not the lines: the poll must cost nothing)."""
    samples: list[tuple[int, float]] = []
    deadline = time.monotonic() + timeout
    while process.poll() is None:
        if time.monotonic() > deadline:
            process.kill()
            sys.exit("bohb-runner study timed out")
        cpu = _process_cpu_seconds(process.pid)
        try:
            size = journal.stat().st_size
        except FileNotFoundError:
            size = 0
        if cpu is not None:
            samples.append((size, cpu))
        time.sleep(interval)
    return samples


def _cpu_ms_per_job(samples: list[tuple[int, float]], journal: bytes) -> float | None:
    """The master's CPU time from its first result to its last, per result in between; start-up
    and shutdown are left out, as in the jobs/s figure."""
    line_ends = [index + 1 for index, byte in enumerate(journal) if byte == ord("\n")]
    counted = [(bisect.bisect_right(line_ends, size), cpu) for size, cpu in samples]
    started = next((pair for pair in counted if pair[0] >= 1), None)
    finished = next((pair for pair in counted if pair[0] == len(line_ends)), None)
    if started is None or finished is None or finished[0] <= started[0]:
        return None
    return 1000 * (finished[1] - started[1]) / (finished[0] - started[0])


def run_hpbandster(
    workers: int, iterations: int, worker_class: str, *, max_budget: float = 27, env: dict[str, str] | None = None
) -> dict[str, float]:
    """hpbandster's own nameserver, BOHB master and worker processes."""
    with tempfile.TemporaryDirectory(prefix="bench-hpbandster-") as tmp:
        out = Path(tmp) / "times.json"
        command = [
            sys.executable, __file__, "_hpbandster_master", "--workers", str(workers), "--iterations", str(iterations),
            "--worker-class", worker_class, "--max-budget", str(max_budget), "--out", str(out),
        ]  # fmt: skip
        completed = subprocess.run(
            command, cwd=PROJECT, capture_output=True, text=True, timeout=3600, env={**os.environ, **(env or {})}
        )
        if completed.returncode != 0:
            sys.exit(f"hpbandster study failed:\n{completed.stderr[-2000:]}")
        recorded = json.loads(out.read_text())
        cpu = recorded["cpu_at_result"]
        return {
            **_throughput([tuple(pair) for pair in recorded["stamps"]]),
            "model_based": recorded["model_based"],
            "cpu_ms_per_job": 1000 * (cpu[-1] - cpu[0]) / (len(cpu) - 1) if len(cpu) > 1 else None,
        }


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _throughput(stamps: list[tuple[float, float]]) -> dict[str, float]:
    span = max(f for _, f in stamps) - min(s for s, _ in stamps)
    return {"jobs": len(stamps), "span": span, "jobs_per_s": len(stamps) / span}


def _hpbandster_master(args: argparse.Namespace) -> None:
    """Run in a process of its own: hpbandster's nameserver and BOHB, workers as subprocesses."""
    import hpbandster.core.nameserver as hpns
    from hpbandster.optimizers import BOHB

    from bohb_runner import compat
    from bohb_runner.store.spaces import load_space
    from bohb_runner.wire.pyro import configure_pyro

    configure_pyro()  # numpy 2 values through serpent: without this hpbandster hangs
    compat.silence_configspace_deprecations()
    run_id = f"bench-{os.getpid()}"
    nameserver = hpns.NameServer(run_id=run_id, host="127.0.0.1", port=None)
    host, port = nameserver.start()
    processes = [
        subprocess.Popen(
            [sys.executable, __file__, "_hpbandster_worker", run_id, host, str(port), args.worker_class, str(index)],
            cwd=PROJECT,
        )
        for index in range(args.workers)
    ]
    cpu_at_result: list[float] = []

    class CpuAtResult:
        """hpbandster's result-logger interface, used to note the process's CPU time per result."""

        def new_config(self, *args: object) -> None:
            pass

        def __call__(self, job: object) -> None:
            cpu_at_result.append(time.process_time())  # every thread of this process

    try:
        bohb = BOHB(
            configspace=load_space(SPACE), run_id=run_id, nameserver=host, nameserver_port=port,
            min_budget=1, max_budget=args.max_budget, eta=3, ping_interval=PING_INTERVAL,
            result_logger=CpuAtResult(),
        )  # fmt: skip
        result = bohb.run(n_iterations=args.iterations, min_n_workers=args.workers)
        bohb.shutdown(shutdown_workers=True)
    finally:
        nameserver.shutdown()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
    stamps = [(r.time_stamps["submitted"], r.time_stamps["finished"]) for r in result.get_all_runs()]
    infos = [c.get("config_info", {}) for c in result.get_id2config_mapping().values()]
    model_based = sum(bool(info.get("model_based_pick")) for info in infos)
    Path(args.out).write_text(
        json.dumps({"stamps": stamps, "model_based": model_based, "cpu_at_result": cpu_at_result})
    )


def _hpbandster_worker(run_id: str, host: str, port: str, worker_class: str, index: str) -> None:
    sys.path.insert(0, str(PROJECT / "bench"))
    import bench_workers

    from bohb_runner import compat
    from bohb_runner.wire.pyro import configure_pyro

    configure_pyro()
    compat.silence_configspace_deprecations()
    cls = getattr(bench_workers, worker_class)
    worker = cls(run_id=run_id, nameserver=host, nameserver_port=int(port), id=int(index))
    worker.run(background=False)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_hpbandster_worker":
        _hpbandster_worker(*sys.argv[2:7])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", default="compare", choices=["compare", "_hpbandster_master"])
    parser.add_argument("--workers", default="8,32")
    parser.add_argument(
        "--iterations", type=int, default=24, help="Hyperband iterations per run (default: 24, 390 jobs)"
    )
    parser.add_argument("--worker-class", default="ZeroCostWorker")
    parser.add_argument("--max-budget", type=float, default=27)
    parser.add_argument("--out")
    parser.add_argument("--profile", type=Path, help="write a cProfile of bohb-runner's master (last worker count)")
    args = parser.parse_args()
    if args.mode == "_hpbandster_master":
        args.workers = int(args.workers)
        _hpbandster_master(args)
        return
    print(f"machine: {os.cpu_count()} CPU cores; BOHB on {SPACE.name}, budgets 1-{args.max_budget:g}, eta 3, "
          f"{args.iterations} iterations, {args.worker_class}")  # fmt: skip
    print(
        f"{'workers':>7}  {'jobs':>5}  {'bohb-runner jobs/s':>18}  {'hpbandster jobs/s':>17}  {'ratio':>6}"
        "  master CPU ms/job (bohb-runner/hpbandster)  model-based picks (bohb-runner/hpbandster)"
    )
    for count in (int(w) for w in args.workers.split(",")):
        ours = run_bohb_runner(
            count, args.iterations, args.worker_class, max_budget=args.max_budget, profile=args.profile
        )
        theirs = run_hpbandster(count, args.iterations, args.worker_class, max_budget=args.max_budget)
        print(
            f"{count:>7}  {ours['jobs']:>5}  {ours['jobs_per_s']:>18.1f}  {theirs['jobs_per_s']:>17.2f}  "
            f"{ours['jobs_per_s'] / theirs['jobs_per_s']:>6.1f}  "
            f"{_ms(ours['cpu_ms_per_job']):>17} / {_ms(theirs['cpu_ms_per_job']):<22}  "
            f"{ours['model_based']}/{theirs['model_based']}",
            flush=True,
        )


if __name__ == "__main__":
    main()
