"""Train and evaluate the reduced LeNet for a budget of epochs.

Budget = epochs, and may be fractional: ``floor(budget)`` full epochs, then
``round(fraction * steps_per_epoch)`` steps of the next one (at least one step in all).

Everything random depends on the seed and the absolute epoch only, never on the budget: the
model's initial weights on ``seed``, the order of epoch ``e``'s batches and its dropout masks
on ``(seed, e)``. So
training 3 epochs and training 9 epochs follow the same path for their first 3 epochs, which
is what continuing a promoted configuration from its checkpoint relies on; and the same
config, budget and seed give the same validation error on CPU.

Batches are drawn by index from tensors that stay on the device (no per-item Dataset or
DataLoader), since for a model this small the data pipeline, not the arithmetic, dominates.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from workers.datasets import TensorSplits
from workers.lenet_model import ReducedLeNet, count_parameters

DEFAULTS: dict[str, Any] = {
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

EVAL_BATCH = 2048


class TrainingDiverged(FloatingPointError):
    """The training loss became NaN or infinite; the evaluation is recorded as failed."""


def resolve_config(config: dict[str, Any]) -> dict[str, Any]:
    """The configuration with defaults for whatever the space leaves out (or made inactive)."""
    resolved = dict(DEFAULTS)
    resolved.update({k: v for k, v in config.items() if v is not None})
    resolved["batch_size"] = int(resolved["batch_size"])
    resolved["num_filters"] = int(resolved["num_filters"])
    resolved["filter_size"] = int(resolved["filter_size"])
    return resolved


def seed_for(seed: int, *parts: int) -> int:
    """A 63-bit seed derived from the study seed and ``parts`` (e.g. the epoch)."""
    return int(np.random.SeedSequence([seed, *parts]).generate_state(2, dtype=np.uint64)[0] >> np.uint64(1))


def steps_for_budget(budget: float, steps_per_epoch: int) -> tuple[int, int]:
    """(full epochs, steps of the next epoch) for a possibly fractional budget."""
    full = int(math.floor(budget + 1e-9))
    extra = int(round((budget - full) * steps_per_epoch))
    if full == 0 and extra == 0:
        extra = 1
    return full, extra


def build_model(config: dict[str, Any], input_shape: tuple[int, int, int], seed: int) -> ReducedLeNet:
    """The model with weights initialised from ``seed`` alone (on the CPU, for every device)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed_for(seed, 0x1217))
        return ReducedLeNet(
            input_shape,
            num_filters=config["num_filters"],
            filter_size=config["filter_size"],
            activation=config["activation"],
            dropout=float(config["dropout"]),
        )


def build_optimizer(config: dict[str, Any], model: nn.Module) -> torch.optim.Optimizer:
    lr, decay = float(config["lr"]), float(config["weight_decay"])
    if config["optimizer"] == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=decay)
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=float(config["momentum"]), weight_decay=decay)


def epoch_order(seed: int, epoch: int, n: int, device: torch.device) -> torch.Tensor:
    """The permutation of training examples for epoch ``epoch``: a function of (seed, epoch)."""
    generator = torch.Generator().manual_seed(seed_for(seed, 0xE90C, epoch))
    return torch.randperm(n, generator=generator).to(device)


@torch.no_grad()
def error_rate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    wrong = torch.zeros((), dtype=torch.long, device=x.device)
    for start in range(0, len(x), EVAL_BATCH):
        logits = model(x[start : start + EVAL_BATCH])
        wrong += (logits.argmax(dim=1) != y[start : start + EVAL_BATCH]).sum()
    return float(wrong.item()) / max(1, len(x))


@dataclass
class TrainedModel:
    model: ReducedLeNet
    loss: float
    info: dict[str, Any]


def train(config: dict[str, Any], budget: float, data: TensorSplits, seed: int) -> TrainedModel:
    """Train for ``budget`` epochs from scratch; raises :class:`TrainingDiverged` on NaN loss."""
    started = time.perf_counter()
    config = resolve_config(config)
    device = data.device
    model = build_model(config, data.input_shape, seed).to(device)
    optimizer = build_optimizer(config, model)
    criterion = nn.CrossEntropyLoss()
    n = len(data.train_x)
    batch_size = min(config["batch_size"], n)
    steps_per_epoch = math.ceil(n / batch_size)
    full_epochs, extra_steps = steps_for_budget(budget, steps_per_epoch)
    learning_curve: list[float] = []
    train_loss = float("nan")
    steps_done = 0
    for epoch in range(full_epochs + (1 if extra_steps else 0)):
        steps = steps_per_epoch if epoch < full_epochs else extra_steps
        order = epoch_order(seed, epoch, n, device)
        torch.manual_seed(seed_for(seed, 0xD80F, epoch))  # this epoch's dropout masks
        model.train()
        loss_sum = torch.zeros((), device=device)
        for step in range(steps):
            index = order[step * batch_size : (step + 1) * batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = criterion(model(data.train_x[index]), data.train_y[index])
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach()
        steps_done += steps
        train_loss = float(loss_sum.item()) / steps
        if not math.isfinite(train_loss):
            raise TrainingDiverged(
                f"training diverged: loss is {train_loss} after {steps_done} steps (epoch {epoch + 1})"
            )
        learning_curve.append(error_rate(model, data.val_x, data.val_y))
    val_error = learning_curve[-1]
    test_error = error_rate(model, data.test_x, data.test_y)
    info = {
        "val_error": val_error,
        "val_accuracy": 1.0 - val_error,
        "test_error": test_error,
        "test_accuracy": 1.0 - test_error,
        "learning_curve": learning_curve,
        "epochs": full_epochs + extra_steps / steps_per_epoch,
        "steps": steps_done,
        "train_loss": train_loss,
        "train_time": time.perf_counter() - started,
        "num_parameters": count_parameters(model),
        "device": str(device),
    }
    return TrainedModel(model, val_error, info)


def train_and_evaluate(config: dict[str, Any], budget: float, data: TensorSplits, seed: int) -> dict[str, Any]:
    """hpbandster's result: validation error as the loss, the details in ``info``."""
    trained = train(config, budget, data, seed)
    return {"loss": trained.loss, "info": trained.info}
