"""The reduced LeNet worker: its architecture, its documented hyperparameters and defaults, budgets
in epochs, determinism, the errors it reports (recomputed here from the model's predictions),
divergence, and the worker built from a study."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from bohb_runner.errors import UserError
from bohb_runner.worker.api import StudyContext
from workers.datasets import load_dataset, make_split, tensor_splits
from workers.idx import write_idx
from workers.lenet import HYPERPARAMETERS, LeNetWorker
from workers.lenet_model import ReducedLeNet, count_parameters
from workers.training import TrainingDiverged, steps_for_budget, train, train_and_evaluate

QUICK = {"lr": 0.05, "batch_size": 64, "num_filters": 4, "filter_size": 3, "optimizer": "sgd", "momentum": 0.9}
GOOD = {"lr": 0.05, "batch_size": 32, "num_filters": 16, "filter_size": 3, "optimizer": "sgd", "momentum": 0.9}
# the defaults as workers/lenet.py's docstring (and the README's space) documents them
DOCUMENTED_DEFAULTS = {
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


@pytest.fixture(scope="module")
def digits():
    torch.set_num_threads(1)
    loaded = load_dataset("digits", None)
    return tensor_splits(loaded, make_split(loaded, None, seed=0))


def steps_per_epoch(data, batch_size: int) -> int:
    return math.ceil(len(data.train_x) / batch_size)


def wrong_fraction(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """The error rate from the model's predictions, one image at a time (not the worker's batched error_rate)."""
    model.eval()
    with torch.no_grad():
        predictions = [int(model(x[i : i + 1]).argmax()) for i in range(len(x))]
    return sum(p != int(label) for p, label in zip(predictions, y, strict=True)) / len(x)


# -- architecture ---------------------------------------------------------------------------------


def feature_shapes(model: ReducedLeNet, size: int) -> list[tuple[int, ...]]:
    """The output shape of every conv, pool and dense layer for one size x size image."""
    shapes = []
    hooks = [
        m.register_forward_hook(lambda _m, _i, out: shapes.append(tuple(out.shape[1:])))
        for m in model.modules()
        if isinstance(m, torch.nn.Conv2d | torch.nn.MaxPool2d | torch.nn.Linear)
    ]
    model(torch.zeros(1, 1, size, size))
    for hook in hooks:
        hook.remove()
    return shapes


@pytest.mark.parametrize(
    "k,after_conv1,after_conv2",
    [(3, 8, 4), (5, 8, 4), (4, 9, 5)],  # "same" padding k // 2: an even k adds a pixel per conv
)
def test_layer_shapes_and_parameter_count_on_digits_by_hand(k, after_conv1, after_conv2):
    f = 16
    model = ReducedLeNet((1, 8, 8), num_filters=f, filter_size=k)
    pooled1, pooled2 = after_conv1 // 2, after_conv2 // 2
    assert after_conv2 == pooled1 + (1 if k % 2 == 0 else 0)
    assert feature_shapes(model, 8) == [
        (f, after_conv1, after_conv1),
        (f, pooled1, pooled1),
        (f, after_conv2, after_conv2),
        (f, pooled2, pooled2),
        (128,),
        (10,),
    ]
    by_hand = (1 * k * k * f + f) + (f * k * k * f + f) + (f * pooled2 * pooled2 * 128 + 128) + (128 * 10 + 10)
    assert count_parameters(model) == by_hand
    if k == 3:
        assert by_hand == 12_090  # 160 + 2,320 + 8,320 + 1,290


def test_architecture_and_parameter_count_on_28x28():
    f, k = 16, 5
    model = ReducedLeNet((1, 28, 28), num_filters=f, filter_size=k)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 2 and all(c.stride == (1, 1) and c.kernel_size == (k, k) for c in convs)
    assert feature_shapes(model, 28)[3] == (f, 7, 7)
    assert count_parameters(model) == (k * k * f + f) + (f * k * k * f + f) + (f * 7 * 7 * 128 + 128) + 1290 == 108_602


@pytest.mark.parametrize("size,filter_size", [(4, 1), (4, 2), (8, 4), (8, 15), (28, 6), (28, 3)])
def test_every_filter_size_fits_every_image_size(size, filter_size):
    model = ReducedLeNet((1, size, size), num_filters=3, filter_size=filter_size)
    assert model(torch.zeros(2, 1, size, size)).shape == (2, 10)


def test_one_output_per_class():
    model = ReducedLeNet((1, 8, 8), num_filters=4, filter_size=3, num_classes=62)
    assert model(torch.zeros(3, 1, 8, 8)).shape == (3, 62)
    assert count_parameters(model) - count_parameters(ReducedLeNet((1, 8, 8), num_filters=4, filter_size=3)) == (
        52 * 128 + 52
    )


# -- hyperparameters ------------------------------------------------------------------------------


def test_declared_hyperparameters_are_the_documented_ones():
    assert {name: spec.default for name, spec in HYPERPARAMETERS.items()} == DOCUMENTED_DEFAULTS
    assert LeNetWorker.HYPERPARAMETERS is HYPERPARAMETERS
    bounds = {name: (spec.lower, spec.upper) for name, spec in HYPERPARAMETERS.items() if spec.kind != "categorical"}
    assert bounds == {
        "lr": (0.0, 10.0),
        "batch_size": (1, 65536),
        "num_filters": (1, 1024),
        "filter_size": (1, 15),
        "momentum": (0.0, 1.0),
        "dropout": (0.0, 1.0),
        "weight_decay": (0.0, 1.0),
    }
    assert HYPERPARAMETERS["lr"].lower_exclusive and not HYPERPARAMETERS["lr"].upper_exclusive
    assert HYPERPARAMETERS["dropout"].upper_exclusive and not HYPERPARAMETERS["dropout"].lower_exclusive
    assert set(HYPERPARAMETERS["optimizer"].choices) == {"sgd", "adam"}
    assert set(HYPERPARAMETERS["activation"].choices) == {"relu", "tanh", "sigmoid"}
    assert {spec.kind for spec in HYPERPARAMETERS.values()} == {"float", "int", "categorical"}
    assert [n for n, spec in HYPERPARAMETERS.items() if spec.kind == "int"] == [
        "batch_size",
        "num_filters",
        "filter_size",
    ]
    assert all(spec.description for spec in HYPERPARAMETERS.values())


def test_an_empty_configuration_trains_the_documented_defaults(digits):
    empty = train({}, 0.3, digits, seed=0)
    written_out = train(DOCUMENTED_DEFAULTS, 0.3, digits, seed=0)
    assert empty.info["learning_curve"] == written_out.info["learning_curve"]
    assert empty.info["train_loss"] == written_out.info["train_loss"]
    assert empty.info["num_parameters"] == (25 * 16 + 16) + (16 * 25 * 16 + 16) + (16 * 4 * 128 + 128) + 1290
    assert empty.info["steps"] == round(0.3 * math.ceil(1078 / 64))  # batch size 64


def test_left_out_and_inactive_hyperparameters_take_their_defaults(digits):
    config = {k: v for k, v in QUICK.items() if k != "momentum"}
    first = train(config, 1, digits, seed=0).info
    second = train(dict(config, momentum=0.9), 1, digits, seed=0).info
    assert first["learning_curve"] == second["learning_curve"] and first["train_loss"] == second["train_loss"]
    inactive = train(dict(config, momentum=None), 1, digits, seed=0).info  # ConfigSpace leaves it out as None
    assert inactive["train_loss"] == first["train_loss"]
    other = train(dict(config, momentum=0.5), 1, digits, seed=0).info
    assert other["train_loss"] != first["train_loss"]


# -- what a job reports -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config", [dict(GOOD, activation="tanh"), {"optimizer": "adam", "lr": 0.003, "num_filters": 4, "dropout": 0.3}]
)
def test_the_loss_and_test_error_are_the_trained_models_error_rates(digits, config):
    trained = train(config, 1.5, digits, seed=0)
    assert trained.loss == wrong_fraction(trained.model, digits.val_x, digits.val_y)
    assert trained.info["test_error"] == wrong_fraction(trained.model, digits.test_x, digits.test_y)
    assert trained.info["val_accuracy"] == 1.0 - trained.loss and trained.info["learning_curve"][-1] == trained.loss


def test_result_holds_only_plain_python(digits):
    result = train_and_evaluate(dict(GOOD, activation="tanh", optimizer="adam", lr=0.003), 1, digits, seed=0)
    assert json.loads(json.dumps(result)) == result

    def check(value):
        assert type(value) in (dict, list, str, int, float, bool), type(value)
        for inner in value.values() if isinstance(value, dict) else value if isinstance(value, list) else ():
            check(inner)

    check(result)
    assert set(result["info"]) == {
        "val_error",
        "val_accuracy",
        "test_error",
        "test_accuracy",
        "learning_curve",
        "epochs",
        "steps",
        "epochs_trained",
        "resumed_from",
        "train_loss",
        "train_time",
        "num_parameters",
        "device",
    }


@pytest.mark.parametrize("budget,full,curve", [(0.5, 0, 1), (1.5, 1, 2), (2.25, 2, 3), (3.0, 3, 3)])
def test_fractional_budgets_train_the_documented_steps(digits, budget, full, curve):
    per_epoch = steps_per_epoch(digits, QUICK["batch_size"])  # 1078 images, batches of 64: 17 steps
    assert per_epoch == 17
    info = train_and_evaluate(QUICK, budget, digits, seed=0)["info"]
    extra = round((budget - full) * per_epoch)
    assert info["steps"] == full * per_epoch + extra
    assert len(info["learning_curve"]) == curve
    assert info["epochs"] == full + extra / per_epoch


def test_steps_for_budget():
    assert steps_for_budget(1.5, 34) == (1, 17)
    assert steps_for_budget(2.25, 17) == (2, 4)  # 4.25 rounds down
    assert steps_for_budget(1 / 3, 9) == (0, 3)
    assert steps_for_budget(3.0, 17) == (3, 0)
    assert steps_for_budget(0.01, 10) == (0, 1)  # at least one step


def test_a_tiny_budget_still_trains_one_step(digits):
    info = train_and_evaluate(QUICK, 0.001, digits, seed=0)["info"]
    assert info["steps"] == 1 and len(info["learning_curve"]) == 1


def test_a_batch_larger_than_the_train_set_is_one_full_batch(digits):
    info = train_and_evaluate(dict(QUICK, batch_size=5000), 2, digits, seed=0)["info"]
    assert info["steps"] == 2 and info["epochs"] == 2.0


def test_same_seed_same_result_and_different_seed_differs(digits):
    config = dict(GOOD, dropout=0.2)
    first = train_and_evaluate(config, 2, digits, seed=1)
    again = train_and_evaluate(config, 2, digits, seed=1)
    assert again["loss"] == first["loss"]
    assert again["info"]["learning_curve"] == first["info"]["learning_curve"]
    assert again["info"]["train_loss"] == first["info"]["train_loss"]
    other = train_and_evaluate(config, 2, digits, seed=2)
    assert other["info"]["train_loss"] != first["info"]["train_loss"]


def test_early_epochs_do_not_depend_on_the_budget_even_with_dropout(digits):
    config = dict(QUICK, dropout=0.5)
    short = train(config, 1.5, digits, seed=3).info["learning_curve"]
    long = train(config, 3, digits, seed=3).info["learning_curve"]
    assert long[0] == short[0]
    assert train(config, 1, digits, seed=3).info["learning_curve"] == long[:1]


def test_what_ran_before_a_job_does_not_change_it(digits):
    """Each epoch reseeds torch's RNG from (seed, epoch): what ran before a job cannot change it."""
    torch.manual_seed(123)
    first = train(dict(QUICK, dropout=0.3), 1, digits, seed=0).info["train_loss"]
    torch.manual_seed(456)
    assert train(dict(QUICK, dropout=0.3), 1, digits, seed=0).info["train_loss"] == first


@pytest.mark.parametrize("poison,where", [(float("inf"), (slice(None), 0, 0, 0)), (float("nan"), (5, 0, 3, 3))])
def test_a_poisoned_input_is_a_diverged_run(digits, poison, where):
    poisoned = dataclasses.replace(digits, train_x=digits.train_x.clone())
    poisoned.train_x[where] = poison  # reaches the loss in the first epoch
    with pytest.raises(TrainingDiverged, match=r"^training diverged: loss is nan after \d+ steps \(epoch 1\)$") as info:
        train(QUICK, 3, poisoned, seed=0)
    assert isinstance(info.value, FloatingPointError)


def test_nine_epochs_on_digits_reach_under_ten_percent_test_error(digits):
    trained = train(GOOD, 9, digits, seed=0)
    assert len(trained.info["learning_curve"]) == 9
    assert trained.info["test_error"] == wrong_fraction(trained.model, digits.test_x, digits.test_y) < 0.10


def test_more_classes_than_ten(tmp_path):
    """Twelve classes in IDX files: the model gets twelve outputs and learns a class above 9."""
    labels = np.arange(240) % 12
    images = np.zeros((240, 8, 8), dtype=np.uint8)
    images[np.arange(240), labels // 4, labels % 4 * 2] = 255  # each class lights its own pixel
    write_idx(tmp_path / "train-images-idx3-ubyte", images)
    write_idx(tmp_path / "train-labels-idx1-ubyte", labels)
    loaded = load_dataset("mnist", str(tmp_path))
    data = tensor_splits(loaded, make_split(loaded, "120,60,60", seed=0))
    trained = train({"optimizer": "adam", "lr": 0.01, "num_filters": 4, "filter_size": 3}, 20, data, seed=0)
    assert trained.model(data.val_x).shape == (60, 12)
    assert trained.loss == wrong_fraction(trained.model, data.val_x, data.val_y) < 0.5  # chance: 11/12 wrong
    with torch.no_grad():
        predicted = trained.model(data.val_x).argmax(dim=1)
    above_nine = data.val_y >= 10
    assert int(above_nine.sum()) == 10  # stratified: 60 of 240 images, 5 of each class
    assert (predicted[above_nine] == data.val_y[above_nine]).float().mean() > 0.5


# -- the worker -----------------------------------------------------------------------------------


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
    config = {"optimizer": "adam", "lr": 0.003}
    result = worker.compute(config_id=(0, 0, 1), config=config, budget=1, working_directory=".")
    assert result["info"]["device"] == "cpu" and len(result["info"]["learning_curve"]) == 1
    loaded = load_dataset("digits", None)
    expected = train(config, 1, tensor_splits(loaded, make_split(loaded, "300,100,100", seed=0)), seed=0)
    assert result["loss"] == expected.loss and result["info"]["test_error"] == expected.info["test_error"]


def test_worker_takes_a_device(digits):
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


def test_retrain_saves_the_weights_of_the_result_it_reports(context, tmp_path):
    worker = LeNetWorker.from_study(context, run_id="t", nameserver="127.0.0.1")
    expected = worker.compute(config_id=(0, 0, 0), config=GOOD, budget=2, working_directory=str(tmp_path))
    outcome = LeNetWorker.retrain(context, GOOD, 2, tmp_path / "best.pt")
    assert outcome["loss"] == expected["loss"] and outcome["test_error"] == expected["info"]["test_error"]
    saved = torch.load(tmp_path / "best.pt", weights_only=True)
    assert saved["input_shape"] == [1, 8, 8] and saved["num_classes"] == 10 and saved["config"] == GOOD
    model = ReducedLeNet(tuple(saved["input_shape"]), num_filters=16, filter_size=3, num_classes=saved["num_classes"])
    model.load_state_dict(saved["state_dict"])
    data = worker.data
    assert wrong_fraction(model, data.val_x, data.val_y) == saved["val_error"] == expected["loss"]
    assert wrong_fraction(model, data.test_x, data.test_y) == saved["test_error"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU on this machine")
def test_auto_device_picks_the_gpu(context):
    context.device = "auto"
    worker = LeNetWorker.from_study(context, run_id="t", nameserver="127.0.0.1")
    result = worker.compute(config_id=(0, 0, 0), config=QUICK, budget=1, working_directory=".")
    assert result["info"]["device"].startswith("cuda")
