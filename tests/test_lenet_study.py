"""The reduced LeNet on the embedded digits, end to end through the CLI with real worker processes."""

from __future__ import annotations

import json

import pytest
import torch
from hpbandster.core.result import logged_results_to_HBS_result

from bohb_runner.store.journal import read_evaluations
from bohb_runner.store.schedule import HyperbandSchedule
from workers.idx import write_idx

from conftest import SPACE, assert_one_line_error, run_cli


def lenet_run(study_dir, *extra, optimizer="bohb"):
    return run_cli(
        "run", "--space", SPACE, "--study-dir", study_dir, "--optimizer", optimizer, "--workers", 2,
        "--min-budget", 1, "--max-budget", 3, "--iterations", 2, "--no-progress", *extra,
    )  # fmt: skip


@pytest.fixture(scope="module")
def bohb_study(tmp_path_factory):
    study = tmp_path_factory.mktemp("lenet") / "bohb"
    result = lenet_run(study)
    assert result.returncode == 0, result.stderr
    return study, result


@pytest.mark.parametrize("optimizer", ["bohb", "hyperband", "randomsearch"])
def test_short_study_journals_every_evaluation_hpbandster_reported(tmp_path, bohb_study, optimizer):
    if optimizer == "bohb":
        study, result = bohb_study
    else:
        study = tmp_path / optimizer
        result = lenet_run(study, optimizer=optimizer)
        assert result.returncode == 0, result.stderr
    evaluations = read_evaluations(study)
    assert len(evaluations) == HyperbandSchedule(1, 3, 3).total_jobs(optimizer, 2)
    hpbandster_reported = logged_results_to_HBS_result(str(study / "hpbandster")).get_all_runs()
    assert sorted((tuple(r.config_id), r.budget, r.loss) for r in hpbandster_reported) == sorted(
        (e.config_id, e.budget, e.loss) for e in evaluations
    )
    assert all(e.ok and 0 <= e.loss <= 1 for e in evaluations)
    if optimizer == "randomsearch":
        assert {e.budget for e in evaluations} == {3.0}
    else:
        assert {e.budget for e in evaluations} == {1.0, 3.0}
    for e in evaluations:
        info = e.info
        assert len(info["learning_curve"]) == int(e.budget)
        assert {"test_error", "val_accuracy", "epochs", "train_time", "num_parameters"} <= set(info)
    assert {e.worker.rsplit(".", 1)[-1] for e in evaluations} == {"worker-0", "worker-1"}
    assert "incumbent" in result.stdout and "test error" in result.stdout
    settings = json.loads((study / "study.json").read_text())
    assert settings["data"]["sizes"] == {"train": 1078, "val": 359, "test": 359}
    assert {"hpbandster", "ConfigSpace", "numpy", "torch", "Pyro4"} <= set(settings["versions"])
    assert (study / "logs" / "master.log").stat().st_size > 0
    assert (study / "logs" / "worker-0.log").stat().st_size > 0


def test_export_loads_in_hpbandster_with_the_same_incumbent_as_best(tmp_path, bohb_study):
    study, _ = bohb_study
    best = json.loads(run_cli("best", study, "--json").stdout)["incumbent"]
    assert run_cli("export", study, "--format", "hpbandster", tmp_path / "hpb").returncode == 0
    hpb = logged_results_to_HBS_result(str(tmp_path / "hpb"))
    incumbent = hpb.get_incumbent_id()
    assert list(incumbent) == best["config_id"]
    assert hpb.get_id2config_mapping()[incumbent]["config"] == best["config"]
    run = hpb.get_runs_by_id(incumbent)[-1]
    assert (run.budget, run.loss, run.info["test_error"]) == (best["budget"], best["loss"], best["test_error"])
    assert set(run.time_stamps) == {"submitted", "started", "finished"}


def test_retrain_reproduces_the_incumbent_and_saves_weights(tmp_path, bohb_study):
    study, _ = bohb_study
    out = tmp_path / "best.pt"
    result = run_cli("best", study, "--retrain", out, "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["retrained"]["loss"] == summary["incumbent"]["loss"]
    saved = torch.load(out, weights_only=True)
    assert saved["config"] == summary["incumbent"]["config"] and "state_dict" in saved


def test_space_naming_an_unknown_hyperparameter_is_refused(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(SPACE.read_text().replace("name: dropout", "name: label_smoothing"))
    result = lenet_run(tmp_path / "s", "--space", space)
    assert_one_line_error(result, str(space), "'label_smoothing' is not understood by workers.lenet:LeNetWorker")


def test_bounds_the_worker_cannot_handle_are_refused(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(SPACE.read_text().replace("upper: 0.5", "upper: 1.0"))  # dropout up to 1
    result = lenet_run(tmp_path / "s", "--space", space)
    assert_one_line_error(result, "'dropout'", "upper bound 1 is impossible for the worker (must be < 1)")


def test_missing_data_directory(tmp_path):
    result = lenet_run(tmp_path / "s", "--dataset", "mnist", "--data-dir", tmp_path / "no-such-dir")
    assert_one_line_error(result, str(tmp_path / "no-such-dir"), "data directory not found")
    assert not (tmp_path / "s" / "study.json").exists()


def test_malformed_data_file(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    write_idx(data / "t10k-images-idx3-ubyte", torch.zeros(20, 12, 12, dtype=torch.uint8).numpy())
    write_idx(data / "t10k-labels-idx1-ubyte", torch.zeros(19, dtype=torch.uint8).numpy())
    result = lenet_run(tmp_path / "s", "--dataset", "mnist", "--data-dir", data)
    assert_one_line_error(result, "t10k-labels-idx1-ubyte", "19 labels for 20 images")


def test_mnist_format_study_runs(tmp_path):
    """A study on IDX files (a small synthetic set, so no download and no shared data needed)."""
    data = tmp_path / "data" / "KMNIST" / "raw"
    data.mkdir(parents=True)
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (300,), generator=generator)
    images = (labels.view(-1, 1, 1) * 25 + torch.randint(0, 20, (300, 16, 16), generator=generator)).to(torch.uint8)
    write_idx(data / "train-images-idx3-ubyte.gz", images.numpy(), compress=True)
    write_idx(data / "train-labels-idx1-ubyte.gz", labels.numpy(), compress=True)
    result = lenet_run(
        tmp_path / "s",
        "--dataset",
        "mnist",
        "--data-dir",
        tmp_path / "data",
        "--split",
        "200,50,50",
        optimizer="hyperband",
    )
    assert result.returncode == 0, result.stderr
    settings = json.loads((tmp_path / "s" / "study.json").read_text())
    assert settings["data"]["sizes"] == {"train": 200, "val": 50, "test": 50}
    assert len(read_evaluations(tmp_path / "s")) == HyperbandSchedule(1, 3, 3).total_jobs("hyperband", 2)


@pytest.mark.slow
def test_readme_demo_incumbent_has_test_error_below_ten_percent(tmp_path):
    """The README's demo: 2 workers, budgets up to 9 epochs, 2 iterations (its time: bench/demo_time.py)."""
    study = tmp_path / "demo"
    result = run_cli(
        "run",
        "--space",
        SPACE,
        "--study-dir",
        study,
        "--workers",
        2,
        "--max-budget",
        9,
        "--iterations",
        2,
        "--no-progress",
    )
    assert result.returncode == 0, result.stderr
    best = json.loads(run_cli("best", study, "--json").stdout)["incumbent"]
    assert best["budget"] == 9.0
    assert best["test_error"] < 0.10, best
