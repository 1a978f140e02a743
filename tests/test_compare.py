"""``bohb-runner compare``: real studies (LeNet on digits, or the quadratic worker), one per
optimizer and seed; the table's numbers are recomputed here from the journals, independently of
bohb_runner.analysis, and compared with what the command wrote."""

from __future__ import annotations

import csv
import json
import math
import signal
import statistics
from pathlib import Path

import numpy as np
import pytest

from bohb_runner.store.schedule import HyperbandSchedule

from conftest import SPACE, TESTS, assert_one_line_error, run_cli, start_cli, wait_until

QUADRATIC = TESTS / "data" / "quadratic.yaml"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def journal(study: Path) -> list[dict]:
    path = study / "results.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def final_and_steps(records: list[dict], limit: float) -> tuple[dict | None, list[tuple[float, float]]]:
    """The incumbent within ``limit`` epochs and the incumbent's (epochs, loss) change points,
    written out plainly: largest budget first, then lowest loss, then lowest config id."""
    spent, best, steps = 0.0, None, []
    for record in records:
        spent += record["budget"]
        if spent > limit + 1e-9:
            break
        if record["status"] != "ok" or record["loss"] is None:
            continue
        key = (-record["budget"], record["loss"], record["config_id"])
        if best is None or key < (-best["budget"], best["loss"], best["config_id"]):
            best = record
            steps.append((spent, record["loss"]))
    return best, steps


def median_curve(all_steps: list[list[tuple[float, float]]]) -> tuple[list[float], list[float]]:
    grid = sorted({x for steps in all_steps for x, _ in steps})
    xs, medians = [], []
    for x in grid:
        values = []
        for steps in all_steps:
            before = [loss for sx, loss in steps if sx <= x]
            values.append(before[-1] if before else None)
        if None not in values:
            xs.append(x)
            medians.append(statistics.median(values))
    return xs, medians


def mean_se(values: list[float]) -> tuple[float, float | None]:
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, statistics.stdev(values) / math.sqrt(len(values))


def read_table(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "comparison.csv") as fh:
        return {row["optimizer"]: row for row in csv.DictReader(fh)}


@pytest.mark.slow
def test_tiny_lenet_comparison_matches_its_journals(tmp_path):
    out = tmp_path / "cmp"
    limit = 5  # one iteration plans 6 epochs: the cut at 5 drops each run's last evaluation
    args = [
        "compare", "--space", SPACE, "--optimizers", "randomsearch,hyperband,bohb", "--seeds", "2",
        "--min-budget", 1, "--max-budget", 3, "--eta", 3, "--budget-limit", limit, "--workers", 1,
        "--out", out, "--no-progress",
    ]  # fmt: skip
    result = run_cli(*args, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    for number in range(1, 7):
        assert f"run {number}/6: " in result.stderr

    spec = json.loads((out / "comparison.json").read_text())
    assert spec["optimizers"] == ["randomsearch", "hyperband", "bohb"] and spec["seeds"] == [0, 1]
    # budgets 1, 3 (eta 3): Hyperband's first iteration runs 3 x 1 + 1 x 3 = 6 epochs in 4 jobs, random
    # search the same 6 epochs as 2 jobs on budget 3; one iteration reaches the limit of 5
    jobs = {"randomsearch": 2, "hyperband": 4, "bohb": 4}
    runs = json.loads((out / "runs.json").read_text())
    table = read_table(out)
    finals: dict[str, list[dict]] = {}
    curves: dict[str, list[list[tuple[float, float]]]] = {}
    for optimizer in ("randomsearch", "hyperband", "bohb"):
        # the fewest iterations whose planned cost reaches the limit
        assert spec["iterations"][optimizer] == 1
        for seed in (0, 1):
            study = out / f"{optimizer}-seed{seed}"
            settings = json.loads((study / "study.json").read_text())
            assert (settings["optimizer"], settings["seed"], settings["iterations"]) == (optimizer, seed, 1)
            assert runs[study.name]["finished"] is True
            records = journal(study)
            assert len(records) == jobs[optimizer]
            assert sum(r["budget"] for r in records) == 6 > limit  # so the cut matters
            best, steps = final_and_steps(records, limit)
            finals.setdefault(optimizer, []).append(best)
            curves.setdefault(optimizer, []).append(steps)
        row = table[optimizer]
        validation = [b["loss"] for b in finals[optimizer]]
        test = [b["info"]["test_error"] for b in finals[optimizer]]
        for (mean, se), prefix in ((mean_se(validation), "val_error"), (mean_se(test), "test_error")):
            assert float(row[f"{prefix}_mean"]) == pytest.approx(mean, rel=1e-5, abs=1e-9)
            assert float(row[f"{prefix}_se"]) == pytest.approx(se, rel=1e-5, abs=1e-9)
        assert int(row["runs"]) == 2 and int(row["finished"]) == 2

    # speed-up: where the median curve first reaches random search's median final error
    target = statistics.median(b["loss"] for b in finals["randomsearch"])
    for optimizer in ("randomsearch", "hyperband", "bohb"):
        xs, medians = median_curve(curves[optimizer])
        reached = next((x for x, m in zip(xs, medians, strict=True) if m <= target + 1e-12), None)
        cell = table[optimizer]["fraction_to_reach_randomsearch"]
        if reached is None:
            assert cell == ""
        else:
            assert float(cell) == pytest.approx(reached / limit, rel=1e-5)
            assert float(table[optimizer]["speedup_over_randomsearch"]) == pytest.approx(limit / reached, rel=1e-5)

    curves_file = json.loads((out / "curves.json").read_text())
    for optimizer, seeds in curves.items():
        for seed, steps in enumerate(seeds):
            run = curves_file["optimizers"][optimizer]["runs"][f"{optimizer}-seed{seed}"]
            assert np.allclose(run["budget_steps"], steps)
            assert run["epochs"] == 3  # within the limit of 5: 1 + 1 + 1, or random search's first 3
    markdown = (out / "comparison.md").read_text()
    assert all(f"| {o} |" in markdown for o in ("randomsearch", "hyperband", "bohb"))
    assert markdown in result.stdout
    for name in ("anytime-budget.png", "anytime-time.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC and (out / name).stat().st_size > 5000

    # running it again skips every finished run and trains nothing more
    lengths = {o: [len(journal(out / f"{o}-seed{s}")) for s in (0, 1)] for o in curves}
    again = run_cli(*args, timeout=300)
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("finished, skipped") == 6
    assert {o: [len(journal(out / f"{o}-seed{s}")) for s in (0, 1)] for o in curves} == lengths
    assert read_table(out) == table

    # the report of the comparison: its figures and table, and a report per run
    report = run_cli("report", out, timeout=300)
    assert report.returncode == 0, report.stderr
    index = out / "report" / "index.html"
    assert index.stat().st_size > 10000 and "data:image/png;base64," in index.read_text()
    for optimizer in curves:
        for seed in (0, 1):
            run_index = out / f"{optimizer}-seed{seed}" / "report" / "index.html"
            assert run_index.stat().st_size > 10000
            assert f"../{optimizer}-seed{seed}/report/index.html" in index.read_text()


def quadratic_compare(out: Path, *extra) -> list:
    return [
        "compare", "--space", QUADRATIC, "--optimizers", "randomsearch", "--seeds", "1", "--max-budget", 9,
        "--out", out, "--no-progress", "--ping-interval", 1, *extra,
    ]  # fmt: skip


def test_an_interrupted_comparison_resumes_its_unfinished_run(tmp_path):
    out = tmp_path / "cmp"
    args = quadratic_compare(out, "--worker", "user_worker:TimedQuadraticWorker", "--budget-limit", 100)
    study = out / "randomsearch-seed0"
    run = start_cli(*args)
    try:
        wait_until(lambda: len(journal(study)) >= 2 or run.poll() is not None, 120, "two journalled results")
        run.send_signal(signal.SIGTERM)
        assert run.wait(timeout=60) == 143
    finally:
        if run.poll() is None:
            run.kill()
    before = journal(study)
    runs = json.loads((out / "runs.json").read_text())
    assert runs["randomsearch-seed0"]["finished"] is False and runs["randomsearch-seed0"]["stopped_by"] == "SIGTERM"

    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    after = journal(study)
    assert after[: len(before)] == before  # nothing lost, nothing rewritten
    ids = [tuple(r["config_id"]) for r in after]
    assert len(ids) == len(set(ids))  # nothing run twice
    iterations = json.loads((out / "comparison.json").read_text())["iterations"]["randomsearch"]
    assert len(after) == HyperbandSchedule(1, 9, 3).total_jobs("randomsearch", iterations)
    runs = json.loads((out / "runs.json").read_text())["randomsearch-seed0"]
    assert runs["finished"] is True and len(runs["sessions"]) == 2


def test_time_limit_stops_each_run_cleanly_and_cuts_the_curves(tmp_path):
    out = tmp_path / "cmp"
    limit = 20.0  # start-up (worker processes importing torch) counts, and CI machines may be busy
    result = run_cli(*quadratic_compare(out, "--worker", "user_worker:TimedQuadraticWorker", "--time-limit", limit))
    assert result.returncode == 0, result.stderr
    run = json.loads((out / "runs.json").read_text())["randomsearch-seed0"]
    assert run["finished"] is True and run["stopped_by"] == "time limit"
    ((start, end),) = run["sessions"]
    assert limit <= end - start < limit + 60
    records = journal(out / "randomsearch-seed0")
    assert any(r["finished"] <= start + limit for r in records)
    settings = json.loads((out / "randomsearch-seed0" / "study.json").read_text())
    assert len(records) < HyperbandSchedule(1, 9, 3).total_jobs("randomsearch", settings["iterations"])
    curves = json.loads((out / "curves.json").read_text())
    assert curves["axis"] == "time" and curves["time_limit"] == limit
    assert max(x for x, _ in curves["optimizers"]["randomsearch"]["runs"]["randomsearch-seed0"]["time_steps"]) <= limit


@pytest.mark.parametrize(
    "extra,fragments",
    [
        (["--optimizers", "randomsearch,tpe", "--budget-limit", 10], ["unknown optimizer 'tpe'", "bohb"]),
        (["--optimizers", "bohb"], ["--budget-limit", "--time-limit"]),
        (["--budget-limit", 10, "--seeds", "0"], ["--seeds"]),
        (["--budget-limit", -3], ["--budget-limit must be positive"]),
        (["--budget-limit", 10, "--iterations", 3], ["--iterations is set by --budget-limit"]),
        (["--budget-limit", 10, "--eta", 1], ["--eta"]),
    ],
)
def test_bad_comparisons_are_refused_in_one_line(tmp_path, extra, fragments):
    out = tmp_path / "cmp"
    result = run_cli("compare", "--space", QUADRATIC, "--worker", "user_worker:QuadraticWorker", "--out", out, *extra)
    assert_one_line_error(result, *fragments)
    assert not (out / "comparison.json").exists()


def test_a_comparison_refuses_contradicting_options_and_foreign_directories(tmp_path):
    out = tmp_path / "cmp"
    args = quadratic_compare(out, "--worker", "user_worker:QuadraticWorker", "--budget-limit", 9)
    assert run_cli(*args).returncode == 0
    assert_one_line_error(run_cli(*quadratic_compare(out, "--budget-limit", 18)), "--budget-limit 18 contradicts")
    assert_one_line_error(run_cli(*args[:-2], "--max-budget", 27, "--budget-limit", 9), "--max-budget 27.0 contradicts")
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert_one_line_error(run_cli(*quadratic_compare(other, "--budget-limit", 9)), "not empty and not a comparison")
    assert_one_line_error(
        run_cli("compare", "--optimizers", "bohb", "--budget-limit", 9, "--out", tmp_path / "new"),
        "--space is required",
    )


def test_anytime_curves_median_and_first_reaching():
    from bohb_runner.analysis.curves import aggregate, incumbent_steps
    from bohb_runner.store.journal import Evaluation
    from bohb_runner.store.results import consumed_budget

    def run(*points):
        return [
            Evaluation((0, 0, i), float(b), loss, "ok" if loss is not None else "failed", {})
            for i, (b, loss) in enumerate(points)
        ]

    first = run((1, 0.5), (1, 0.3), (3, 0.4), (1, None), (3, 0.2))
    xs = consumed_budget(first, None)
    assert xs == [1, 2, 5, 6, 9]
    steps = incumbent_steps(first, xs)
    # a larger budget replaces the incumbent even with a higher loss (the study's own incumbent)
    assert [(s.x, s.loss) for s in steps] == [(1, 0.5), (2, 0.3), (5, 0.4), (9, 0.2)]
    assert [(s.x, s.loss) for s in incumbent_steps(first, xs, limit=8)] == [(1, 0.5), (2, 0.3), (5, 0.4)]
    second = run((2, 0.6), (2, 0.1))
    curve = aggregate([steps, incumbent_steps(second, consumed_budget(second, None))], limit=10)
    assert list(curve.x) == [1, 2, 4, 5, 9, 10]
    assert np.isnan(curve.median[0])  # the second run has no incumbent yet
    assert list(curve.median[1:]) == pytest.approx([0.45, 0.2, 0.25, 0.15, 0.15])
    assert curve.first_reaching(0.25) == 4 and curve.first_reaching(0.05) is None
