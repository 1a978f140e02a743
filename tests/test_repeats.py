"""``--repeats R``: R trainings per evaluation with different seeds, the mean as the loss, the
spread in ``info``; refused up front for workers that cannot vary their seed; failures of any
repeat fail the evaluation. Real studies (the LeNet on digits, a cheap user worker) end to end."""

from __future__ import annotations

import csv
import json
import math
import statistics

import numpy as np
import pytest
from hpbandster.core.worker import Worker

from bohb_runner.store.journal import read_evaluations
from bohb_runner.store.results import StudyResults
from bohb_runner.worker.repeats import RepeatFailed, combine_repeats, repeat_seed, repeated_compute, supports_repeats
from bohb_runner.worker.runtime import checked_result, guard_compute
from workers.datasets import load_dataset, make_split, tensor_splits
from workers.lenet import LeNetWorker
from workers.training import train_and_evaluate

from conftest import SPACE, TESTS, assert_one_line_error, incumbent_steps_by_hand, run_cli

QUADRATIC = TESTS / "data" / "quadratic.yaml"


class NoisyQuadraticWorker(Worker):
    """A user worker that supports repeats: the quadratic plus seed-dependent noise; repeat 2 of
    any configuration with x > 0.8 raises, and y > 0.9 gives a NaN on repeat 3."""

    def compute(self, config_id, config, budget, working_directory, repeat: int = 0, **kwargs):
        rng = np.random.default_rng(repeat_seed(7, repeat))
        if repeat == 1 and config["x"] > 0.8:
            raise ValueError(f"x = {config['x']:.3f} breaks the second seed")
        if repeat == 2 and config["y"] > 0.9:
            return {"loss": float("nan"), "info": {}}
        loss = (config["x"] - 0.3) ** 2 + (config["y"] - 0.6) ** 2 + 0.01 * rng.standard_normal()
        return {"loss": np.float64(loss), "info": {"repeat": repeat, "noise_free": loss, "note": "x"}}


class RepeatedQuadraticWorker(Worker):
    """Supports repeats: the quadratic plus seed-dependent noise, and a test error that is each
    repeat's own loss plus 0.25, so that the mean over the repeats differs from repeat 0's."""

    def compute(self, config_id, config, budget, working_directory, repeat: int = 0, **kwargs):
        rng = np.random.default_rng(repeat_seed(11 + config_id[2], repeat))
        loss = (config["x"] - 0.3) ** 2 + (config["y"] - 0.6) ** 2 + 1.0 / budget + 0.05 * rng.uniform()
        return {"loss": loss, "info": {"test_error": loss + 0.25}}


# -- combining ----------------------------------------------------------------------------------


def test_loss_is_the_mean_and_info_keeps_the_first_repeat_plus_the_spread():
    results = [
        {"loss": 0.2, "info": {"test_error": 0.3, "curve": [1, 2], "device": "cpu"}},
        {"loss": 0.4, "info": {"test_error": 0.5, "curve": [3, 4], "device": "cpu"}},
        {"loss": 0.9, "info": {"test_error": 0.4, "curve": [5, 6], "device": "cpu"}},
    ]
    combined = combine_repeats(results)
    assert combined["loss"] == pytest.approx(0.5)
    info = combined["info"]
    assert info["repeat_losses"] == [0.2, 0.4, 0.9]
    assert info["loss_std"] == pytest.approx(statistics.stdev([0.2, 0.4, 0.9]))
    assert info["loss_std"] == pytest.approx(np.std([0.2, 0.4, 0.9], ddof=1))
    assert info["test_error"] == 0.3 and info["curve"] == [1, 2]  # the first repeat's info
    assert info["repeat_means"] == {"test_error": pytest.approx(0.4)}  # numbers every repeat has
    bare = combine_repeats([{"loss": 1.0, "info": None}, {"loss": 3.0, "info": "text"}])
    assert bare["info"] == {"repeat_losses": [1.0, 3.0], "loss_std": pytest.approx(math.sqrt(2))}


def test_a_failing_or_nan_repeat_fails_the_evaluation_with_its_error():
    calls = []

    def compute(config_id, config, budget, working_directory, repeat=0):
        calls.append(repeat)
        if repeat == config["fail_at"]:
            raise ValueError("out of memory (simulated)")
        return {"loss": config["nan_at"] == repeat and float("nan") or 0.5, "info": {}}

    run = repeated_compute(compute, 3, check=checked_result)
    assert run((0, 0, 0), {"fail_at": -1, "nan_at": -1}, 1.0, ".")["info"]["repeat_losses"] == [0.5] * 3
    assert calls == [0, 1, 2]
    with pytest.raises(RepeatFailed, match=r"repeat 2 of 3 failed: ValueError: out of memory \(simulated\)"):
        run((0, 0, 0), {"fail_at": 1, "nan_at": -1}, 1.0, ".")
    with pytest.raises(RepeatFailed, match=r"repeat 3 of 3 failed: loss is nan \(not a finite number\)"):
        run((0, 0, 0), {"fail_at": -1, "nan_at": 2}, 1.0, ".")


def test_guard_compute_repeats_any_worker_that_takes_repeat():
    worker = NoisyQuadraticWorker(run_id="repeats")
    guard_compute(worker, repeats=4)
    result = worker.compute(config_id=(0, 0, 0), config={"x": 0.3, "y": 0.6}, budget=1.0, working_directory=".")
    losses = result["info"]["repeat_losses"]
    assert len(losses) == 4 and len(set(losses)) == 4
    assert result["loss"] == pytest.approx(statistics.fmean(losses))
    assert result["info"]["repeat"] == 0 and type(result["loss"]) is float  # plain Python for serpent
    single = NoisyQuadraticWorker(run_id="repeats")
    guard_compute(single)  # repeats 1: compute is called as before, without a repeat keyword
    assert "repeat_losses" not in single.compute((0, 0, 0), {"x": 0.3, "y": 0.6}, 1.0, ".")["info"]


def test_which_workers_support_repeats():
    from user_worker import QuadraticWorker

    assert supports_repeats(LeNetWorker.compute)
    assert supports_repeats(NoisyQuadraticWorker.compute)
    assert not supports_repeats(QuadraticWorker.compute)  # **kwargs would swallow it: R identical runs
    assert not supports_repeats(Worker.compute)


def test_repeat_seeds_differ_and_repeat_zero_is_the_study_seed():
    assert repeat_seed(5, 0) == 5
    seeds = {repeat_seed(5, r) for r in range(1, 50)}
    assert len(seeds) == 49 and 5 not in seeds
    assert repeat_seed(5, 1) != repeat_seed(6, 1)


@pytest.fixture(scope="module")
def digits():
    loaded = load_dataset("digits", None)
    return tensor_splits(loaded, make_split(loaded, None, seed=0))


def test_lenet_repeat_zero_trains_exactly_as_before_and_other_repeats_differ(digits):
    config = {"lr": 0.05, "batch_size": 64, "num_filters": 4, "filter_size": 3, "optimizer": "sgd", "momentum": 0.9}
    worker = LeNetWorker(data=digits, seed=3, run_id="repeats")
    first = worker.compute((0, 0, 0), config, 0.5, ".", repeat=0)
    assert first["loss"] == train_and_evaluate(config, 0.5, digits, 3)["loss"]
    assert worker.compute((0, 0, 0), config, 0.5, ".")["loss"] == first["loss"]  # the default is repeat 0
    others = {worker.compute((0, 0, 0), config, 0.5, ".", repeat=r)["loss"] for r in (1, 2)}
    assert others != {first["loss"]}


# -- real studies ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_lenet_study_with_two_repeats(tmp_path):
    study = tmp_path / "lenet"
    args = [
        "run", "--space", SPACE, "--study-dir", study, "--workers", 2, "--optimizer", "randomsearch",
        "--min-budget", 1, "--max-budget", 1, "--iterations", 2, "--no-progress", "--ping-interval", 1,
    ]  # fmt: skip
    result = run_cli(*args, "--repeats", 2, timeout=240)
    assert result.returncode == 0, result.stderr
    assert "2 evaluations x 2 repeats, 4 epochs planned" in result.stderr
    evaluations = read_evaluations(study)
    assert len(evaluations) == 2 and all(e.ok for e in evaluations)
    for evaluation in evaluations:
        losses = evaluation.info["repeat_losses"]
        assert len(losses) == 2
        # two different trainings; their validation errors may still coincide: an untrained
        # model that predicts one class has the same error on any seed of a stratified split
        assert evaluation.info["train_loss"] != evaluation.info["repeat_means"]["train_loss"]
        assert evaluation.loss == pytest.approx(statistics.fmean(losses))
        assert evaluation.info["loss_std"] == pytest.approx(statistics.stdev(losses))
    results = StudyResults.load(study)
    assert results.budget_used == 4  # 2 evaluations on budget 1, each trained twice
    assert "4 epochs" in result.stdout
    best = json.loads(run_cli("best", study, "--json").stdout)["incumbent"]
    assert best["test_error"] == results.incumbent.info["repeat_means"]["test_error"]
    # the number of repeats is part of the study: a resume cannot change it
    changed = run_cli(*args, "--repeats", 3)
    assert_one_line_error(changed, "--repeats 3 contradicts the study (repeats 2)")


def test_failed_repeats_fail_their_evaluation_and_the_study_goes_on(tmp_path):
    study = tmp_path / "noisy"
    result = run_cli(
        "run", "--space", QUADRATIC, "--study-dir", study, "--worker", "test_repeats:NoisyQuadraticWorker",
        "--workers", 2, "--optimizer", "grid", "--grid-points", 4, "--max-budget", 9, "--iterations", 20,
        "--repeats", 3, "--no-progress", "--ping-interval", 1, timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    evaluations = read_evaluations(study)
    assert len(evaluations) == 16
    for evaluation in evaluations:
        x, y = evaluation.config["x"], evaluation.config["y"]
        if x > 0.8:
            assert not evaluation.ok and "repeat 2 of 3 failed: ValueError: x = " in evaluation.error
        elif y > 0.9:
            assert not evaluation.ok and "repeat 3 of 3 failed: loss is nan" in evaluation.error
        else:
            assert evaluation.ok and len(evaluation.info["repeat_losses"]) == 3


def test_a_worker_without_repeat_is_refused_up_front(tmp_path):
    result = run_cli(
        "run", "--space", QUADRATIC, "--study-dir", tmp_path / "s", "--worker", "user_worker:QuadraticWorker",
        "--repeats", 2, "--no-progress",
    )  # fmt: skip
    assert_one_line_error(result, "--repeats", "user_worker:QuadraticWorker.compute() has no 'repeat' parameter")
    assert not (tmp_path / "s" / "study.json").exists()
    for bad in ("0",):
        wrong = run_cli("run", "--space", SPACE, "--study-dir", tmp_path / "t", "--repeats", bad, "--no-progress")
        assert_one_line_error(wrong, f"--repeats must be an integer of at least 1, got {bad}")


def test_repeats_count_alike_in_run_status_best_report_and_compare(tmp_path):
    """--repeats 2: every place that counts epochs counts both trainings, and every place that
    shows a test error shows the mean over the repeats (numbers worked out by hand here)."""
    study = tmp_path / "study"
    worker = ("--worker", "test_repeats:RepeatedQuadraticWorker", "--workers", 2, "--max-budget", 9, "--repeats", 2)
    result = run_cli(
        "run", "--space", QUADRATIC, "--study-dir", study, *worker, "--optimizer", "hyperband", "--iterations", 1,
        "--no-progress", "--ping-interval", 1, timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    # budgets 1, 3, 9 (eta 3): iteration 0 runs 9 x 1 + 3 x 3 + 1 x 9 = 27 epochs' worth of
    # evaluations, 13 of them, and each trains twice: 54 epochs planned and, once all ran, spent
    assert "13 evaluations x 2 repeats, 54 epochs planned" in result.stderr
    assert "13 evaluations (0 failed), 54 epochs" in result.stdout
    records = [json.loads(line) for line in (study / "results.jsonl").read_text().splitlines()]
    assert len(records) == 13 and all(r["status"] == "ok" for r in records)
    [incumbent] = [r for r in records if r["budget"] == 9.0]  # the only evaluation on the largest budget
    losses = incumbent["info"]["repeat_losses"]
    mean_test_error = statistics.fmean(loss + 0.25 for loss in losses)  # the worker's test error per repeat
    assert mean_test_error != pytest.approx(incumbent["info"]["test_error"])  # repeat 0's differs

    status = json.loads(run_cli("status", study, "--json", timeout=60).stdout)
    assert (status["jobs"]["budget_used"], status["jobs"]["budget_planned"]) == (54, 54)
    assert "jobs:      done 13/13, running 0; 54 of 54 epochs" in run_cli("status", study, timeout=60).stdout
    assert status["incumbent"]["test_error"] == pytest.approx(mean_test_error)

    best = json.loads(run_cli("best", study, "--json").stdout)
    assert best["budget_used"] == 54 and best["incumbent"]["test_error"] == pytest.approx(mean_test_error)

    report = run_cli("report", study)
    assert report.returncode == 0, report.stderr
    numbers = json.loads((study / "report" / "report.json").read_text())
    assert numbers["epochs"] == 54
    trajectory = [(step["x"], step["config_id"]) for step in numbers["trajectory"]["budget"]]
    assert trajectory == incumbent_steps_by_hand(records, 2)
    assert numbers["incumbent"]["test_error"] == pytest.approx(mean_test_error)

    # compare: random search's iteration i evaluates (Hyperband's cost of iteration i) / 9 configurations
    # on budget 9, each 2 x 9 = 18 epochs: iteration 0 3 of them (54 epochs, under the limit of 60),
    # iteration 1 2 more (90): 2 iterations; the cut at 60 epochs keeps the first 3 evaluations
    out = tmp_path / "cmp"
    compared = run_cli(
        "compare", "--space", QUADRATIC, "--optimizers", "randomsearch", "--seeds", 1, *worker, "--budget-limit", 60,
        "--out", out, "--no-progress", "--ping-interval", 1, timeout=240,
    )  # fmt: skip
    assert compared.returncode == 0, compared.stderr
    assert json.loads((out / "comparison.json").read_text())["iterations"] == {"randomsearch": 2}
    run_records = [json.loads(line) for line in (out / "randomsearch-seed0" / "results.jsonl").read_text().splitlines()]
    assert len(run_records) == 5
    within = run_records[:3]
    final = min(within, key=lambda r: (r["loss"], r["config_id"]))
    run = json.loads((out / "curves.json").read_text())["optimizers"]["randomsearch"]["runs"]["randomsearch-seed0"]
    assert run["epochs"] == 54
    assert [x for x, _ in run["budget_steps"]] == [x for x, _ in incumbent_steps_by_hand(within, 2)]
    assert run["final_config_id"] == final["config_id"]
    final_test_error = statistics.fmean(loss + 0.25 for loss in final["info"]["repeat_losses"])
    assert run["final_test_error"] == pytest.approx(final_test_error)
    with open(out / "comparison.csv") as fh:
        [row] = list(csv.DictReader(fh))
    assert float(row["test_error_mean"]) == pytest.approx(final_test_error, rel=1e-5)
    assert float(row["epochs_mean"]) == 54
