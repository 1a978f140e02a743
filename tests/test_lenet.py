"""The reduced LeNet worker: what a search space and a scheduler rely on beyond the basics.

The basics (output shapes, the 28x28 parameter count, determinism, the NaN error, plain-Python
results, the 9-epoch accuracy on digits, retraining) are in ``test_worker_lenet.py``; this file
covers defaults for left-out hyperparameters, fractional budgets, the independence of early
epochs from the budget (with dropout), and building the worker for a device.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from bohb_runner.errors import UserError
from bohb_runner.worker.api import StudyContext
from workers.datasets import load_dataset, make_split, tensor_splits
from workers.lenet import HYPERPARAMETERS, LeNetWorker
from workers.lenet_model import ReducedLeNet, count_parameters
from workers.training import DEFAULTS, TrainingDiverged, error_rate, train, train_and_evaluate

QUICK = {"lr": 0.05, "batch_size": 64, "num_filters": 4, "filter_size": 3, "optimizer": "sgd", "momentum": 0.9}


@pytest.fixture(scope="module")
def digits():
    loaded = load_dataset("digits", None)
    return tensor_splits(loaded, make_split(loaded, None, seed=0))


def steps_per_epoch(data, batch_size: int) -> int:
    return math.ceil(len(data.train_x) / batch_size)


def test_parameter_count_on_digits_by_hand():
    f, k = 16, 3
    model = ReducedLeNet((1, 8, 8), num_filters=f, filter_size=k)
    flat = f * 2 * 2  # 8x8 -> pool -> 4x4 -> pool -> 2x2
    by_hand = (1 * k * k * f + f) + (f * k * k * f + f) + (flat * 128 + 128) + (128 * 10 + 10)
    assert count_parameters(model) == by_hand == 12_090


@pytest.mark.parametrize("size,filter_size", [(4, 1), (4, 2), (8, 4), (8, 15), (28, 6)])
def test_even_and_large_filters_fit_small_images(size, filter_size):
    model = ReducedLeNet((1, size, size), num_filters=3, filter_size=filter_size)
    assert model(torch.zeros(2, 1, size, size)).shape == (2, 10)


def test_declared_hyperparameters_and_their_defaults():
    expected = {
        "lr": 0.01,
        "batch_size": 64,
        "num_filters": 16,
        "filter_size": 5,
        "momentum": 0.9,
        "optimizer": "sgd",
        "dropout": 0.0,
        "weight_decay": 0.0,
        "activation": "relu",
    }
    assert {name: spec.default for name, spec in HYPERPARAMETERS.items()} == expected == DEFAULTS
    assert LeNetWorker.HYPERPARAMETERS is HYPERPARAMETERS
    assert HYPERPARAMETERS["lr"].lower_exclusive and not HYPERPARAMETERS["lr"].upper_exclusive
    assert HYPERPARAMETERS["dropout"].upper_exclusive and HYPERPARAMETERS["dropout"].upper == 1.0
    for spec in HYPERPARAMETERS.values():
        assert spec.description
        if spec.kind == "categorical":
            assert spec.default in spec.choices
        else:
            assert spec.lower <= spec.default <= spec.upper


def test_left_out_hyperparameters_take_their_defaults(digits):
    config = {k: v for k, v in QUICK.items() if k != "momentum"}
    first = train(config, 1, digits, seed=0).info
    second = train(dict(config, momentum=0.9), 1, digits, seed=0).info
    assert first["learning_curve"] == second["learning_curve"] and first["train_loss"] == second["train_loss"]


def test_adam_without_momentum_and_an_empty_config_run(digits):
    adam = train_and_evaluate({"optimizer": "adam", "lr": 0.003, "num_filters": 4}, 0.5, digits, seed=0)
    assert 0.0 <= adam["loss"] <= 1.0
    defaults = train_and_evaluate({}, 0.2, digits, seed=0)
    assert defaults["info"]["num_parameters"] == count_parameters(ReducedLeNet((1, 8, 8)))


@pytest.mark.parametrize("budget,full,curve", [(0.5, 0, 1), (2.25, 2, 3), (3.0, 3, 3)])
def test_fractional_budgets_train_the_documented_steps(digits, budget, full, curve):
    per_epoch = steps_per_epoch(digits, QUICK["batch_size"])
    info = train_and_evaluate(QUICK, budget, digits, seed=0)["info"]
    extra = round((budget - full) * per_epoch)
    assert info["steps"] == full * per_epoch + extra
    assert len(info["learning_curve"]) == curve
    assert info["epochs"] == full + extra / per_epoch


def test_a_tiny_budget_still_trains_one_step(digits):
    info = train_and_evaluate(QUICK, 0.001, digits, seed=0)["info"]
    assert info["steps"] == 1 and len(info["learning_curve"]) == 1


def test_early_epochs_do_not_depend_on_the_budget_even_with_dropout(digits):
    config = dict(QUICK, dropout=0.5)
    short = train(config, 1.5, digits, seed=3).info["learning_curve"]
    long = train(config, 3, digits, seed=3).info["learning_curve"]
    assert long[0] == short[0]
    assert train(config, 3, digits, seed=3).info["learning_curve"] == long


def test_the_returned_model_is_the_one_evaluated(digits):
    trained = train(QUICK, 1, digits, seed=0)
    assert error_rate(trained.model, digits.val_x, digits.val_y) == trained.loss
    assert error_rate(trained.model, digits.test_x, digits.test_y) == trained.info["test_error"]


def test_an_infinite_input_is_a_diverged_run(digits):
    poisoned = dataclasses.replace(digits, train_x=digits.train_x.clone())
    poisoned.train_x[:, 0, 0, 0] = float("inf")
    with pytest.raises(TrainingDiverged, match=r"^training diverged: loss is nan after \d+ steps") as info:
        train(QUICK, 1, poisoned, seed=0)
    assert isinstance(info.value, FloatingPointError) and "\n" not in str(info.value)


@pytest.fixture
def context(tmp_path):
    context = StudyContext(study_dir=tmp_path, seed=0, device="cpu", split="300,100,100")
    context.data_record = LeNetWorker.prepare_study(context)
    return context


def test_worker_on_the_study_data_and_threads(context):
    threads = torch.get_num_threads()
    try:
        context.threads = 1
        worker = LeNetWorker.from_study(context, run_id="t", nameserver="127.0.0.1")
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert len(worker.data.train_x) == 300 and worker.data.device == torch.device("cpu")
    result = worker.compute(
        config_id=(0, 0, 1), config={"optimizer": "adam", "lr": 0.003}, budget=1, working_directory="."
    )
    assert result["info"]["device"] == "cpu" and len(result["info"]["learning_curve"]) == 1


def test_worker_takes_a_device(context, digits):
    worker = LeNetWorker(data=digits, seed=0, device="cpu", run_id="t", nameserver="127.0.0.1")
    assert worker.data is digits


@pytest.mark.parametrize("device,fragment", [("tpu", "expected auto, cpu, cuda or cuda:N"), ("cuda:99", "cuda")])
def test_bad_devices_are_user_errors(context, device, fragment):
    if device.startswith("cuda") and torch.cuda.is_available() and torch.cuda.device_count() > 99:
        pytest.skip("a machine with 100 GPUs")
    context.device = device
    with pytest.raises(UserError, match=fragment):
        LeNetWorker.from_study(context, run_id="t", nameserver="127.0.0.1")


def test_worker_needs_the_recorded_split(tmp_path):
    with pytest.raises(UserError, match="records no data split"):
        LeNetWorker.from_study(StudyContext(study_dir=tmp_path), run_id="t", nameserver="127.0.0.1")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU on this machine")
def test_auto_device_picks_the_gpu(context):
    context.device = "auto"
    worker = LeNetWorker.from_study(context, run_id="t", nameserver="127.0.0.1")
    result = worker.compute(config_id=(0, 0, 0), config=QUICK, budget=1, working_directory=".")
    assert result["info"]["device"].startswith("cuda")
