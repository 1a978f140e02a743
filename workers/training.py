"""Train and evaluate the reduced LeNet for a budget of epochs.

Budget = epochs, and may be fractional: ``floor(budget)`` full epochs, then
``round(fraction * steps_per_epoch)`` steps of the next one (at least one step in all).

Everything random depends on the seed and the absolute epoch only, never on the budget: the
model's initial weights on ``seed``, the order of epoch ``e``'s batches and its dropout masks
on ``(seed, e)``. So
training 3 epochs and training 9 epochs follow the same path for their first 3 epochs, which
is what continuing a promoted configuration from its checkpoint relies on (``train(...,
resume=state)``: 3 epochs then 6 more give exactly the 9 epochs from scratch, on CPU); and the
same config, budget and seed give the same validation error on CPU.

Batches are drawn by index from tensors that stay on the device (no per-item Dataset or
DataLoader), since for a model this small the data pipeline, not the arithmetic, dominates.
"""

from __future__ import annotations

import contextlib
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
class TrainingState:
    """Where a training run stands, with everything needed to go on as if it had never stopped.

    Saved after a job on a budget below the maximum; a job for the same configuration on a larger
    budget loads it and trains only the remaining steps. ``learning_curve`` holds the
    validation errors of the full epochs done; ``epoch_loss_sum`` and ``rng_state`` belong to
    an epoch stopped part-way (fractional budgets), whose remaining steps must see the same
    dropout masks as an uninterrupted run.
    """

    budget: float
    steps_done: int
    model_state: dict[str, Any]
    optimizer_state: dict[str, Any]
    learning_curve: list[float]
    epoch_loss_sum: float = 0.0
    rng_state: torch.Tensor | None = None
    cuda_rng_state: torch.Tensor | None = None
    scaler_state: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Tensors, numbers and lists only, so that ``torch.load(weights_only=True)`` reads it back."""
        return {
            "budget": float(self.budget),
            "steps_done": int(self.steps_done),
            "model_state": self.model_state,
            "optimizer_state": self.optimizer_state,
            "learning_curve": [float(v) for v in self.learning_curve],
            "epoch_loss_sum": float(self.epoch_loss_sum),
            "rng_state": self.rng_state,
            "cuda_rng_state": self.cuda_rng_state,
            "scaler_state": self.scaler_state,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingState:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__ if name in data})


@dataclass
class TrainedModel:
    model: ReducedLeNet
    loss: float
    info: dict[str, Any]
    state: TrainingState | None = None


def autocast_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    """The mixed-precision type for ``device``: bfloat16 or float16 on CUDA, none elsewhere.

    Mixed precision is for GPUs only: on the CPU it would make results device-dependent and,
    for a model this small, slower; asking for it there is ignored (the worker logs it).
    """
    if not amp or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def train(
    config: dict[str, Any],
    budget: float,
    data: TensorSplits,
    seed: int,
    *,
    resume: TrainingState | None = None,
    amp: bool = False,
) -> TrainedModel:
    """Train for ``budget`` epochs, from scratch or from ``resume`` (a state on a smaller budget).

    Continuing from a state of budget b gives the very same model as training ``budget``
    epochs from scratch, since batch order and dropout depend on the absolute epoch only.
    Raises :class:`TrainingDiverged` on NaN loss.
    """
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
    target_steps = full_epochs * steps_per_epoch + extra_steps
    dtype = autocast_dtype(device, amp)
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    autocast = (lambda: torch.autocast(device.type, dtype=dtype)) if dtype is not None else contextlib.nullcontext
    learning_curve: list[float] = []
    steps_done = 0
    resumed_loss_sum = 0.0
    if resume is not None and 0 < resume.steps_done <= target_steps:
        model.load_state_dict(resume.model_state)
        optimizer.load_state_dict(resume.optimizer_state)
        if scaler is not None and resume.scaler_state:
            scaler.load_state_dict(resume.scaler_state)
        steps_done = resume.steps_done
        learning_curve = list(resume.learning_curve[: steps_done // steps_per_epoch])
        resumed_loss_sum = resume.epoch_loss_sum
    else:
        resume = None
    steps_at_start = steps_done
    train_loss = float("nan")
    rng_state = cuda_rng_state = None
    loss_sum = torch.zeros((), device=device)
    while steps_done < target_steps:
        epoch, first_step = divmod(steps_done, steps_per_epoch)
        last_step = min(steps_per_epoch, first_step + target_steps - steps_done)
        order = epoch_order(seed, epoch, n, device)
        loss_sum = torch.zeros((), device=device)
        if first_step == 0:
            torch.manual_seed(seed_for(seed, 0xD80F, epoch))  # this epoch's dropout masks
        else:  # part-way through an epoch: its dropout masks go on where the saved run stopped
            assert resume is not None and resume.rng_state is not None
            torch.manual_seed(seed_for(seed, 0xD80F, epoch))  # seeds a GPU whose state was not saved
            torch.set_rng_state(resume.rng_state.cpu())  # RNG states are CPU byte tensors wherever loaded
            if device.type == "cuda" and resume.cuda_rng_state is not None:
                torch.cuda.set_rng_state(resume.cuda_rng_state.cpu(), device)
            loss_sum += resumed_loss_sum
        model.train()
        for step in range(first_step, last_step):
            index = order[step * batch_size : (step + 1) * batch_size]
            optimizer.zero_grad(set_to_none=True)
            with autocast():
                loss = criterion(model(data.train_x[index]), data.train_y[index])
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
            loss_sum += loss.detach().float()
        steps_done += last_step - first_step
        train_loss = float(loss_sum.item()) / last_step
        if not math.isfinite(train_loss):
            raise TrainingDiverged(
                f"training diverged: loss is {train_loss} after {steps_done} steps (epoch {epoch + 1})"
            )
        if last_step < steps_per_epoch:  # stopped part-way: what the rest of this epoch needs
            rng_state = torch.get_rng_state()
            cuda_rng_state = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
        learning_curve.append(error_rate(model, data.val_x, data.val_y))
    if steps_done == steps_at_start:  # a state already at this budget: nothing to train, only evaluate
        learning_curve = list(resume.learning_curve) if resume is not None else learning_curve
        if not learning_curve or steps_done % steps_per_epoch:
            learning_curve.append(error_rate(model, data.val_x, data.val_y))
    val_error = learning_curve[-1]
    # a split without test images (e.g. 8000,2000,0) has no test error, not an error of 0
    test_error = error_rate(model, data.test_x, data.test_y) if len(data.test_x) else None
    epochs_done = steps_done / steps_per_epoch
    info = {
        "val_error": val_error,
        "val_accuracy": 1.0 - val_error,
        "test_error": test_error,
        "test_accuracy": None if test_error is None else 1.0 - test_error,
        "learning_curve": learning_curve,
        "epochs": full_epochs + extra_steps / steps_per_epoch,
        "steps": steps_done,
        "epochs_trained": (steps_done - steps_at_start) / steps_per_epoch,
        "resumed_from": resume.budget if resume is not None else 0.0,  # 0: from scratch
        "train_loss": train_loss,
        "train_time": time.perf_counter() - started,
        "num_parameters": count_parameters(model),
        "device": str(device),
    }
    if dtype is not None:
        info["amp"] = str(dtype).removeprefix("torch.")
    state = TrainingState(
        budget=budget,
        steps_done=steps_done,
        model_state=model.state_dict(),
        optimizer_state=optimizer.state_dict(),
        learning_curve=learning_curve[: int(epochs_done)],
        epoch_loss_sum=float(loss_sum.item()) if steps_done % steps_per_epoch else 0.0,
        rng_state=rng_state if steps_done % steps_per_epoch else None,
        cuda_rng_state=cuda_rng_state if steps_done % steps_per_epoch else None,
        scaler_state=scaler.state_dict() if scaler is not None else None,
    )
    return TrainedModel(model, val_error, info, state)


def train_and_evaluate(config: dict[str, Any], budget: float, data: TensorSplits, seed: int) -> dict[str, Any]:
    """hpbandster's result: validation error as the loss, the details in ``info``."""
    trained = train(config, budget, data, seed)
    return {"loss": trained.loss, "info": trained.info}
