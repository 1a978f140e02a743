"""The reduced LeNet worker: architecture, budgets in epochs, determinism, results, accuracy."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from bohb_runner.worker.api import StudyContext
from workers.datasets import load_dataset, make_split, tensor_splits
from workers.lenet import HYPERPARAMETERS, LeNetWorker
from workers.lenet_model import ReducedLeNet, count_parameters
from workers.training import TrainingDiverged, steps_for_budget, train, train_and_evaluate

GOOD = {"lr": 0.05, "batch_size": 32, "num_filters": 16, "filter_size": 3, "optimizer": "sgd", "momentum": 0.9}


@pytest.fixture(scope="module")
def digits():
    torch.set_num_threads(1)
    loaded = load_dataset("digits", None)
    return tensor_splits(loaded, make_split(loaded, None, seed=0))


@pytest.mark.parametrize("size", [8, 28])
@pytest.mark.parametrize("filter_size", [3, 5])
def test_output_shape_for_any_input_size(size, filter_size):
    model = ReducedLeNet((1, size, size), num_filters=8, filter_size=filter_size)
    assert model(torch.zeros(4, 1, size, size)).shape == (4, 10)


def test_architecture_and_parameter_count():
    f, k = 16, 5
    model = ReducedLeNet((1, 28, 28), num_filters=f, filter_size=k)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    pools = [m for m in model.modules() if isinstance(m, torch.nn.MaxPool2d)]
    dense = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert len(convs) == 2 and all(c.stride == (1, 1) and c.kernel_size == (k, k) for c in convs)
    assert len(pools) == 2 and [d.out_features for d in dense] == [128, 10]
    by_hand = (1 * k * k * f + f) + (f * k * k * f + f) + (f * 7 * 7 * 128 + 128) + (128 * 10 + 10)
    assert count_parameters(model) == by_hand


def test_hyperparameters_are_declared():
    assert {
        "lr",
        "batch_size",
        "num_filters",
        "filter_size",
        "momentum",
        "optimizer",
        "dropout",
        "weight_decay",
        "activation",
    } <= set(HYPERPARAMETERS)
    assert set(HYPERPARAMETERS["activation"].choices) == {"relu", "tanh", "sigmoid"}


def test_same_seed_same_result_and_different_seed_differs(digits):
    config = dict(GOOD, dropout=0.2)
    first = train_and_evaluate(config, 2, digits, seed=1)
    again = train_and_evaluate(config, 2, digits, seed=1)
    assert again["loss"] == first["loss"]
    assert again["info"]["learning_curve"] == first["info"]["learning_curve"]
    assert again["info"]["train_loss"] == first["info"]["train_loss"]
    other = train_and_evaluate(config, 2, digits, seed=2)
    assert other["info"]["train_loss"] != first["info"]["train_loss"]


def test_first_epochs_do_not_depend_on_the_budget(digits):
    """Training 1 epoch and 3 epochs follow the same path for the first epoch."""
    short = train(GOOD, 1, digits, seed=0)
    long = train(GOOD, 3, digits, seed=0)
    assert long.info["learning_curve"][0] == short.info["learning_curve"][0]


def test_fractional_budget(digits):
    steps_per_epoch = -(-len(digits.train_x) // 32)
    assert steps_for_budget(1.5, steps_per_epoch) == (1, round(0.5 * steps_per_epoch))
    assert steps_for_budget(0.01, 10) == (0, 1)
    result = train_and_evaluate(GOOD, 1.5, digits, seed=0)
    info = result["info"]
    assert info["steps"] == steps_per_epoch + round(0.5 * steps_per_epoch)
    assert len(info["learning_curve"]) == 2
    assert info["epochs"] == pytest.approx(1.5, abs=1 / steps_per_epoch)


def test_result_holds_only_plain_python(digits):
    result = train_and_evaluate(dict(GOOD, activation="tanh", optimizer="adam", lr=0.003), 1, digits, seed=0)
    json.dumps(result)

    def check(value):
        assert type(value) in (dict, list, str, int, float, bool), type(value)
        if isinstance(value, dict):
            for v in value.values():
                check(v)
        elif isinstance(value, list):
            for v in value:
                check(v)

    check(result)
    info = result["info"]
    assert result["loss"] == info["val_error"] == pytest.approx(1 - info["val_accuracy"])
    for key in ("test_error", "learning_curve", "epochs", "train_time", "num_parameters"):
        assert key in info


def test_diverging_training_raises_a_clear_error(digits):
    poisoned = dataclasses.replace(digits, train_x=digits.train_x.clone())
    poisoned.train_x[5, 0, 3, 3] = float("nan")  # a NaN reaches the loss in the first epoch
    with pytest.raises(TrainingDiverged, match=r"training diverged: loss is nan after \d+ steps \(epoch 1\)"):
        train(GOOD, 3, poisoned, seed=0)


def test_nine_epochs_on_digits_reach_under_ten_percent_test_error(digits):
    result = train_and_evaluate(GOOD, 9, digits, seed=0)
    assert len(result["info"]["learning_curve"]) == 9
    assert result["info"]["test_error"] < 0.10, result["info"]


def test_worker_built_from_a_study_context(tmp_path):
    context = StudyContext(study_dir=tmp_path, seed=0, device="cpu")
    context.data_record = LeNetWorker.prepare_study(context)
    worker = LeNetWorker.from_study(context, run_id="t", nameserver="127.0.0.1")
    result = worker.compute(config_id=(0, 0, 0), config=GOOD, budget=1, working_directory=str(tmp_path))
    assert 0.0 <= result["loss"] <= 1.0


def test_retrain_saves_weights_with_the_same_result(tmp_path):
    context = StudyContext(study_dir=tmp_path, seed=0, device="cpu")
    context.data_record = LeNetWorker.prepare_study(context)
    worker = LeNetWorker.from_study(context, run_id="t", nameserver="127.0.0.1")
    expected = worker.compute(config_id=(0, 0, 0), config=GOOD, budget=2, working_directory=str(tmp_path))
    outcome = LeNetWorker.retrain(context, GOOD, 2, tmp_path / "best.pt")
    assert outcome["loss"] == expected["loss"]
    saved = torch.load(tmp_path / "best.pt", weights_only=True)
    model = ReducedLeNet(tuple(saved["input_shape"]), num_filters=16, filter_size=3)
    model.load_state_dict(saved["state_dict"])
