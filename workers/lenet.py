"""The reduced LeNet as an hpbandster worker: the hyperparameters it understands, its data, its jobs.

Hyperparameters (anything a search space leaves out, or makes inactive, takes the default):

==============  ===========  =================  ========  =========================================
name            kind         allowed            default   meaning
==============  ===========  =================  ========  =========================================
lr              float        (0, 10]            0.01      learning rate
batch_size      int          [1, 65536]         64        mini-batch size (capped at the train size)
num_filters     int          [1, 1024]          16        filters in each of the two conv layers
filter_size     int          [1, 15]            5         conv kernel size; odd sizes keep the
                                                          image size exactly ("same" padding)
momentum        float        [0, 1]             0.9       SGD momentum (unused by adam)
optimizer       categorical  sgd, adam          sgd
dropout         float        [0, 1)             0         dropout before each dense layer
weight_decay    float        [0, 1]             0         L2 penalty of the optimizer
activation      categorical  relu, tanh,        relu      after each conv and the dense layer
                             sigmoid
==============  ===========  =================  ========  =========================================

The budget is in epochs and may be fractional: ``floor(budget)`` full epochs, then
``round(fraction * steps_per_epoch)`` steps of the next (see :mod:`workers.training`). The loss is the
validation error; ``info`` holds accuracy, test error, the learning curve (validation error
after each epoch), epochs and steps trained, train time and the number of parameters.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from hpbandster.core.worker import Worker

from bohb_runner.errors import UserError
from bohb_runner.worker_api import HyperparameterSpec, StudyContext
from workers.datasets import TensorSplits, load_dataset, make_split, tensor_splits
from workers.training import DEFAULTS, train, train_and_evaluate

logger = logging.getLogger(__name__)


def _spec(name: str, kind: str, description: str, **limits: Any) -> HyperparameterSpec:
    return HyperparameterSpec(name=name, kind=kind, default=DEFAULTS[name], description=description, **limits)  # type: ignore[arg-type]


HYPERPARAMETERS: dict[str, HyperparameterSpec] = {
    spec.name: spec
    for spec in (
        _spec("lr", "float", "learning rate of the optimizer", lower=0.0, upper=10.0, lower_exclusive=True),
        _spec(
            "batch_size", "int", "mini-batch size; larger than the train set means full batches", lower=1, upper=65536
        ),
        _spec("num_filters", "int", "filters in each of the two conv layers", lower=1, upper=1024),
        _spec(
            "filter_size",
            "int",
            "conv kernel size; odd sizes keep each conv's output the size of its input, "
            "even ones add a pixel (it works, but the receptive field is off-centre)",
            lower=1,
            upper=15,
        ),
        _spec("momentum", "float", "SGD momentum; inactive (ignored) with adam", lower=0.0, upper=1.0),
        _spec("optimizer", "categorical", "sgd (with momentum) or adam", choices=("sgd", "adam")),
        _spec(
            "dropout",
            "float",
            "dropout probability before each dense layer; 1 would drop everything",
            lower=0.0,
            upper=1.0,
            upper_exclusive=True,
        ),
        _spec("weight_decay", "float", "L2 penalty, applied by the optimizer", lower=0.0, upper=1.0),
        _spec(
            "activation",
            "categorical",
            "after each conv and the dense 128 layer",
            choices=("relu", "tanh", "sigmoid"),
        ),
    )
}


def pick_device(requested: str) -> torch.device:
    """``auto`` is the GPU when there is one; ``cuda`` without one is a user error, not a crash."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise UserError(f"--device {requested!r}: expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {requested}: CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"--device {requested}: this machine has {torch.cuda.device_count()} GPU(s)")
    return device


def load_study_data(context: StudyContext, device: torch.device) -> TensorSplits:
    """The study's recorded split, loaded once and moved to ``device``."""
    if context.data_record is None:
        raise UserError(f"{context.study_dir}: the study records no data split (was it created by bohb-runner?)")
    loaded = load_dataset(context.dataset, context.data_dir)
    return tensor_splits(loaded, context.data_record, device)


class LeNetWorker(Worker):
    """Trains the reduced LeNet on the study's data for the budget (epochs) each job asks for."""

    HYPERPARAMETERS = HYPERPARAMETERS

    def __init__(
        self, *, data: TensorSplits, seed: int, device: torch.device | str | None = None, **worker_kwargs: Any
    ) -> None:
        """``data`` stays resident for every job; ``device`` (default: where ``data`` is) moves it once."""
        super().__init__(**worker_kwargs)
        self.data = data if device is None else data.to(device)
        self.seed = seed

    @classmethod
    def prepare_study(cls, context: StudyContext) -> dict[str, Any]:
        """Check the data and fix the split (called once, when the study is created)."""
        loaded = load_dataset(context.dataset, context.data_dir)
        return make_split(loaded, context.split, context.seed)

    @classmethod
    def from_study(cls, context: StudyContext, **worker_kwargs: Any) -> LeNetWorker:
        device = pick_device(context.device)
        if device.type == "cpu":
            torch.set_num_threads(context.threads)
        data = load_study_data(context, device)
        logger.info(
            "data on %s: %d train, %d val, %d test", device, len(data.train_x), len(data.val_x), len(data.test_x)
        )
        return cls(data=data, seed=context.seed, device=device, **worker_kwargs)

    @classmethod
    def retrain(cls, context: StudyContext, config: dict[str, Any], budget: float, output_path: Path) -> dict[str, Any]:
        """Train ``config`` for ``budget`` epochs as a study job would, and save the weights."""
        device = pick_device(context.device)
        data = load_study_data(context, device)
        trained = train(config, budget, data, context.seed)
        torch.save(
            {
                "state_dict": trained.model.state_dict(),
                "config": config,
                "budget": budget,
                "input_shape": list(data.input_shape),
                "seed": context.seed,
                "val_error": trained.loss,
                "test_error": trained.info["test_error"],
            },
            output_path,
        )
        return {"loss": trained.loss, "test_error": trained.info["test_error"], "output": str(output_path)}

    def compute(
        self, config_id: Any, config: dict[str, Any], budget: float, working_directory: str, **kwargs: Any
    ) -> dict[str, Any]:
        result = train_and_evaluate(config, budget, self.data, self.seed)
        logger.debug("job %s on budget %g: validation error %.4f", config_id, budget, result["loss"])
        return result
