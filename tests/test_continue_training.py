"""Continued training across budgets: a promoted configuration resumes from its checkpoint and
ends exactly where training from scratch would (CPU, same seed), with fewer epochs; bad or
missing checkpoints fall back to training from scratch; ``--no-continue`` turns it off."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from bohb_runner.store.journal import read_evaluations
from workers.checkpoints import CheckpointStore
from workers.datasets import load_dataset, make_split, tensor_splits
from workers.lenet import LeNetWorker
from workers.training import train

from conftest import SPACE, run_cli

SGD_DROPOUT = {"lr": 0.05, "batch_size": 64, "num_filters": 8, "filter_size": 3, "dropout": 0.3, "momentum": 0.9}
ADAM = {"lr": 0.003, "batch_size": 50, "num_filters": 6, "filter_size": 5, "optimizer": "adam", "dropout": 0.2}


@pytest.fixture(scope="module")
def digits():
    torch.set_num_threads(1)
    loaded = load_dataset("digits", None)
    return tensor_splits(loaded, make_split(loaded, None, 0))


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


@pytest.mark.parametrize("config", [SGD_DROPOUT, ADAM], ids=["sgd-dropout", "adam-dropout"])
@pytest.mark.parametrize(
    "first, second",
    [(1, 3), (3, 9), (1 / 3, 1), (10 / 9, 10 / 3), (2, 2.5), (0.5, 0.5)],
    ids=["1-3", "3-9", "third-1", "fractional-schedule", "mid-epoch", "same-budget"],
)
def test_continuing_equals_training_from_scratch(digits, config, first, second):
    scratch = train(config, second, digits, seed=5)
    start = train(config, first, digits, seed=5)
    continued = train(config, second, digits, seed=5, resume=start.state)
    assert continued.loss == scratch.loss
    assert same_weights(continued.model, scratch.model)
    for key in ("learning_curve", "test_error", "steps", "epochs"):
        assert continued.info[key] == scratch.info[key], key
    if second > first:
        assert continued.info["train_loss"] == scratch.info["train_loss"]
    assert continued.info["resumed_from"] == first and scratch.info["resumed_from"] == 0.0
    assert continued.info["epochs_trained"] == pytest.approx(
        scratch.info["epochs_trained"] - start.info["epochs_trained"], abs=1e-9
    )


@pytest.mark.parametrize("config", [SGD_DROPOUT, ADAM], ids=["sgd-dropout", "adam-dropout"])
def test_a_job_repeated_on_its_budget_leaves_a_state_that_still_continues(digits, config):
    """A job dispatched again on the budget of its checkpoint (1/3: mid-epoch) trains nothing; the state it
    leaves must still carry the epoch's RNG and loss sum, so that the promotion to 1 equals training 1."""
    start = train(config, 1 / 3, digits, seed=5)
    again = train(config, 1 / 3, digits, seed=5, resume=start.state)
    assert again.info["epochs_trained"] == 0.0 and again.loss == start.loss
    assert again.state.epoch_loss_sum == start.state.epoch_loss_sum != 0.0
    assert torch.equal(again.state.rng_state, start.state.rng_state)
    promoted = train(config, 1, digits, seed=5, resume=again.state)
    scratch = train(config, 1, digits, seed=5)
    assert promoted.loss == scratch.loss and promoted.info["train_loss"] == scratch.info["train_loss"]
    assert same_weights(promoted.model, scratch.model)


def test_a_state_from_a_larger_budget_is_not_used(digits):
    larger = train(SGD_DROPOUT, 3, digits, seed=5)
    smaller = train(SGD_DROPOUT, 1, digits, seed=5, resume=larger.state)
    assert smaller.info["resumed_from"] == 0.0 and smaller.loss == train(SGD_DROPOUT, 1, digits, seed=5).loss


def worker(digits, study_dir, **options) -> LeNetWorker:
    return LeNetWorker(
        data=digits, seed=5, checkpoint_dir=study_dir, max_budget=9, run_id="t", nameserver="127.0.0.1", **options
    )


def test_the_worker_continues_promotions_and_cleans_up(digits, tmp_path):
    lenet = worker(digits, tmp_path)
    store = CheckpointStore(tmp_path)
    first = lenet.compute((0, 0, 1), SGD_DROPOUT, 1.0, str(tmp_path))
    assert first["info"]["resumed_from"] == 0.0 and store.budgets((0, 0, 1), 0) == [1.0]
    second = lenet.compute((0, 0, 1), SGD_DROPOUT, 3.0, str(tmp_path))
    assert second["info"]["resumed_from"] == 1.0 and second["info"]["epochs_trained"] == 2.0
    assert store.budgets((0, 0, 1), 0) == [3.0]  # the state on budget 1 is of no more use
    last = lenet.compute([0, 0, 1], SGD_DROPOUT, 9.0, str(tmp_path))  # serpent sends ids as lists
    assert last["info"]["resumed_from"] == 3.0 and last["info"]["epochs_trained"] == 6.0
    assert store.budgets((0, 0, 1), 0) == []  # nothing is kept for the maximum budget
    assert not (tmp_path / "checkpoints" / "0_0_1").exists()
    assert last["loss"] == train(SGD_DROPOUT, 9, digits, seed=5).loss


def test_checkpoints_are_keyed_by_repeat_and_configuration(digits, tmp_path):
    lenet = worker(digits, tmp_path)
    lenet.compute((0, 0, 2), ADAM, 1.0, str(tmp_path))
    other_repeat = lenet.compute((0, 0, 2), ADAM, 3.0, str(tmp_path), repeat=1)
    assert other_repeat["info"]["resumed_from"] == 0.0
    assert other_repeat["loss"] == lenet.compute((0, 0, 9), ADAM, 3.0, str(tmp_path), repeat=1)["loss"]
    changed = dict(ADAM, lr=0.01)  # the same id with another configuration (a reused study dir)
    result = lenet.compute((0, 0, 2), changed, 3.0, str(tmp_path))
    assert result["info"]["resumed_from"] == 0.0


@pytest.mark.parametrize("damage", ["truncated", "garbage", "missing"])
def test_a_bad_or_missing_checkpoint_means_training_from_scratch(digits, tmp_path, caplog, damage):
    lenet = worker(digits, tmp_path)
    lenet.compute((0, 0, 3), SGD_DROPOUT, 1.0, str(tmp_path))
    path = CheckpointStore(tmp_path).path((0, 0, 3), 0, 1.0)
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "garbage":
        path.write_bytes(b"not a checkpoint at all")
    else:
        path.unlink()
    with caplog.at_level(logging.WARNING, logger="workers.checkpoints"):
        result = lenet.compute((0, 0, 3), SGD_DROPOUT, 3.0, str(tmp_path))
    assert result["info"]["resumed_from"] == 0.0 and result["info"]["epochs_trained"] == 3.0
    assert result["loss"] == train(SGD_DROPOUT, 3, digits, seed=5).loss
    if damage == "missing":
        assert not caplog.records
    else:
        assert f"checkpoint {path} is unreadable" in caplog.text and "training from scratch" in caplog.text
        assert not path.exists()


def test_checkpoints_are_written_atomically(digits, tmp_path):
    lenet = worker(digits, tmp_path)
    lenet.compute((1, 0, 0), SGD_DROPOUT, 1.0, str(tmp_path))
    directory = tmp_path / "checkpoints" / "1_0_0"
    assert [p.name for p in directory.iterdir()] == ["repeat-0_budget-1.0.pt"]  # no temporary left over
    payload = torch.load(directory / "repeat-0_budget-1.0.pt", weights_only=True)
    assert payload["state"]["steps_done"] > 0 and payload["seed"] == 5


def study(tmp_path, name, *extra):
    return run_cli(
        "run", "--space", SPACE, "--study-dir", tmp_path / name, "--workers", 1, "--max-budget", 3,
        "--iterations", 1, "--seed", 2, "--no-progress", "--ping-interval", 1, *extra,
    )  # fmt: skip


def test_a_study_saves_epochs_and_no_continue_turns_it_off(tmp_path):
    run_on = study(tmp_path, "on")
    assert run_on.returncode == 0, run_on.stderr
    off_run = study(tmp_path, "off", "--no-continue")
    assert off_run.returncode == 0
    assert "continued training saved 1 epochs (per iteration 0: 1)" in run_on.stdout  # 1 promotion 1 -> 3
    assert "continued training saved" not in off_run.stdout
    on, off = read_evaluations(tmp_path / "on"), read_evaluations(tmp_path / "off")
    assert [(e.config, e.budget, e.loss) for e in on] == [(e.config, e.budget, e.loss) for e in off]
    promoted = [e for e in on if e.budget == 3.0]
    assert promoted and all(e.info["resumed_from"] == 1.0 and e.info["epochs_trained"] == 2.0 for e in promoted)
    assert all(e.info["resumed_from"] == 0.0 and e.info["epochs_trained"] == e.budget for e in off)
    assert not (tmp_path / "on" / "checkpoints").exists()  # a completed study keeps no checkpoints
    assert json.loads((tmp_path / "off" / "study.json").read_text())["continue_training"] is False
    resumed = study(tmp_path, "off", "--continue", "--iterations", 2)  # may change on resume
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((tmp_path / "off" / "study.json").read_text())["continue_training"] is True
    second = [e for e in read_evaluations(tmp_path / "off") if e.config_id[0] == 1]
    assert second and all(e.info["epochs_trained"] == e.budget for e in second if e.budget == 1.0)


# -- the other performance options of the worker side -----------------------------------------


def test_mixed_precision_is_ignored_on_the_cpu(digits, caplog):
    plain = train(ADAM, 1, digits, seed=5)
    amp = train(ADAM, 1, digits, seed=5, amp=True)
    assert amp.loss == plain.loss and "amp" not in amp.info
    with caplog.at_level(logging.INFO, logger="workers.lenet"):
        LeNetWorker(data=digits, seed=5, amp=True, run_id="t", nameserver="127.0.0.1")
    assert "mixed precision is for CUDA devices only" in caplog.text


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_workers_per_gpu_without_a_gpu_is_refused_in_one_line(tmp_path):
    from conftest import assert_one_line_error

    result = run_cli("run", "--space", SPACE, "--study-dir", tmp_path / "s", "--workers-per-gpu", 2)
    assert_one_line_error(result, "--workers-per-gpu: no CUDA GPU is visible on this machine", "--workers N")
    assert not (tmp_path / "s").exists()
    both = run_cli("run", "--space", SPACE, "--study-dir", tmp_path / "s", "--workers-per-gpu", 2, "--workers", 2)
    assert_one_line_error(both, "give it or --workers, not both")


def test_an_iterations_artifacts_go_once_all_its_jobs_are_done(tmp_path):
    from bohb_runner.master.cleanup import ArtifactCleanup
    from bohb_runner.store.artifacts import artifacts_dir
    from bohb_runner.store.journal import Evaluation
    from bohb_runner.store.schedule import Bracket

    ids = [(0, 0, 0), (0, 0, 1), (0, 0, 2), (1, 0, 0), (10, 0, 0)]
    for config_id in ids:  # whatever a worker keeps there: the master knows no file name inside
        directory = artifacts_dir(tmp_path, config_id)
        (directory / "nested").mkdir(parents=True)
        (directory / "nested" / "state.bin").write_bytes(b"x")
        (directory / "notes.txt").write_text("mine")
    assert artifacts_dir(tmp_path, [0, 0, 1]) == tmp_path / "checkpoints" / "0_0_1"  # the path existing studies use
    cleanup = ArtifactCleanup(tmp_path)
    cleanup.iteration_started(Bracket(0, (3, 1), (1.0, 3.0)))

    def finished(config_id, budget):
        cleanup.evaluation_finished(
            Evaluation(config_id=config_id, budget=budget, loss=0.5, status="ok", config={}, config_info={})
        )

    for k in range(3):
        finished((0, 0, k), 1.0)
    finished((0, 0, 0), 1.0)  # a job dispatched again counts once
    assert artifacts_dir(tmp_path, (0, 0, 1)).exists()  # the promotion to budget 3 is still to run
    finished((0, 0, 2), 3.0)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["10_0_0", "1_0_0"]
    cleanup.study_completed()
    assert not (tmp_path / "checkpoints").exists()


def test_the_lenet_keeps_its_checkpoints_in_the_configurations_artifacts_directory(digits, tmp_path):
    from bohb_runner.master.cleanup import ArtifactCleanup
    from bohb_runner.worker.api import StudyContext

    worker(digits, tmp_path).compute((2, 0, 1), SGD_DROPOUT, 1.0, str(tmp_path))
    directory = StudyContext(study_dir=tmp_path).artifacts_dir((2, 0, 1))
    assert CheckpointStore(tmp_path).path((2, 0, 1), 0, 1.0).parent == directory
    assert [p.name for p in directory.iterdir()] == ["repeat-0_budget-1.0.pt"]
    ArtifactCleanup(tmp_path).remove((2, 0, 1))
    assert not directory.exists()
