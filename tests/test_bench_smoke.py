"""The benchmarks in bench/ still run (tiny settings, no timing asserted: speed is for the
benchmarks themselves to print, measured side by side)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import PROJECT, cli_env

BENCH = PROJECT / "bench"


def bench(*args: str, timeout: float = 300) -> str:
    result = subprocess.run(
        [sys.executable, *args], cwd=PROJECT, env=cli_env(), capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_worker_epoch_bench_prints_its_ratios(tmp_path):
    import numpy as np

    from workers.idx import write_idx

    rng = np.random.default_rng(0)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", rng.integers(0, 256, (96, 28, 28), dtype=np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", rng.integers(0, 10, 96, dtype=np.uint8))
    out = bench(str(BENCH / "worker_epoch.py"), "--data-dir", str(tmp_path), "--batch-sizes", "16,32", "--repeats", "1")
    rows = [line.split() for line in out.splitlines() if line.strip() and line.split()[0] in ("16", "32")]
    assert len(rows) == 2 and all(float(row[4]) > 0 and float(row[5]) > 0 for row in rows)


def test_worker_epoch_bench_explains_missing_data(tmp_path):
    result = subprocess.run(
        [sys.executable, str(BENCH / "worker_epoch.py"), "--data-dir", str(tmp_path / "none")],
        cwd=PROJECT, env=cli_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0 and "no MNIST t10k IDX files in" in result.stderr


def test_sampler_bench_prints_its_ratio():
    out = bench(str(BENCH / "sampler_time.py"), "--observations", "40", "--configs", "3")
    rows = [line.split() for line in out.splitlines() if line.split() and line.split()[0] == "40"]
    assert len(rows) == 1 and float(rows[0][-1]) > 0


@pytest.mark.slow
def test_master_and_continue_benches_run():
    out = bench(str(BENCH / "master_throughput.py"), "--workers", "2", "--iterations", "1", "--max-budget", "3")
    assert out.strip().splitlines()[-1].split()[0] == "2"
    out = bench(str(BENCH / "continued_epochs.py"), "--max-budget", "3", "--iterations", "1", "--workers", "1")
    assert "continued/minimum = 1.000" in out and "same losses with and without: True" in out
