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

:func:`train` is its parts in order: :func:`start_run` (the model, optimizer and step plan, or
the state resumed), :func:`train_epoch` until the budget is spent, then :func:`evaluate_run`,
:func:`run_info` and :func:`run_state` (the result, its ``info``, the state to continue from).
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
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


def build_model(
    config: dict[str, Any], input_shape: tuple[int, int, int], seed: int, num_classes: int = 10
) -> ReducedLeNet:
    """The model with weights initialised from ``seed`` alone (on the CPU, for every device)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed_for(seed, 0x1217))
        return ReducedLeNet(
            input_shape,
            num_filters=config["num_filters"],
            filter_size=config["filter_size"],
            activation=config["activation"],
            dropout=float(config["dropout"]),
            num_classes=num_classes,
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


@dataclass(frozen=True)
class StepPlan:
    """A budget in epochs as optimizer steps, for a train set of a given size and a batch size."""

    batch_size: int
    steps_per_epoch: int
    full_epochs: int
    extra_steps: int

    @classmethod
    def of(cls, budget: float, train_size: int, batch_size: int) -> StepPlan:
        batch_size = min(batch_size, train_size)
        steps_per_epoch = math.ceil(train_size / batch_size)
        return cls(batch_size, steps_per_epoch, *steps_for_budget(budget, steps_per_epoch))

    @property
    def total_steps(self) -> int:
        return self.full_epochs * self.steps_per_epoch + self.extra_steps

    @property
    def epochs(self) -> float:
        """The budget as trained: whole epochs plus the fraction that the extra steps are."""
        return self.full_epochs + self.extra_steps / self.steps_per_epoch


@dataclass
class TrainingRun:
    """One training run under way: model, optimizer and plan, and where the run stands.

    ``resumed`` is the state it continues from (None: from scratch). ``epoch_loss_sum``,
    ``rng_state`` and ``cuda_rng_state`` describe the epoch last trained (or, before any, the
    resumed one), which is what the saved state needs when the run stops part-way through it.
    """

    config: dict[str, Any]
    data: TensorSplits
    seed: int
    budget: float
    model: ReducedLeNet
    optimizer: torch.optim.Optimizer
    plan: StepPlan
    amp_dtype: torch.dtype | None
    scaler: torch.amp.GradScaler | None
    resumed: TrainingState | None
    steps_done: int = 0
    steps_at_start: int = 0
    learning_curve: list[float] = field(default_factory=list)
    train_loss: float = float("nan")
    epoch_loss_sum: float = 0.0
    rng_state: torch.Tensor | None = None
    cuda_rng_state: torch.Tensor | None = None
    criterion: nn.Module = field(default_factory=nn.CrossEntropyLoss)

    @property
    def finished(self) -> bool:
        return self.steps_done >= self.plan.total_steps

    @property
    def mid_epoch(self) -> bool:
        """Whether the run stands part-way through an epoch (a fractional budget)."""
        return self.steps_done % self.plan.steps_per_epoch != 0

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.data.device.type, dtype=self.amp_dtype)


def start_run(
    config: dict[str, Any],
    budget: float,
    data: TensorSplits,
    seed: int,
    *,
    resume: TrainingState | None = None,
    amp: bool = False,
) -> TrainingRun:
    """Set the run up: the model initialised from ``seed``, then, with a usable ``resume``, its state.

    A state is usable when it trained some steps but not more than ``budget`` asks for;
    anything else trains from scratch.
    """
    config = resolve_config(config)
    device = data.device
    model = build_model(config, data.input_shape, seed, data.num_classes).to(device)
    optimizer = build_optimizer(config, model)
    plan = StepPlan.of(budget, len(data.train_x), config["batch_size"])
    dtype = autocast_dtype(device, amp)
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    if resume is None or not 0 < resume.steps_done <= plan.total_steps:
        return TrainingRun(config, data, seed, budget, model, optimizer, plan, dtype, scaler, resumed=None)
    model.load_state_dict(resume.model_state)
    optimizer.load_state_dict(resume.optimizer_state)
    if scaler is not None and resume.scaler_state:
        scaler.load_state_dict(resume.scaler_state)
    return TrainingRun(
        config,
        data,
        seed,
        budget,
        model,
        optimizer,
        plan,
        dtype,
        scaler,
        resumed=resume,
        steps_done=resume.steps_done,
        steps_at_start=resume.steps_done,
        learning_curve=list(resume.learning_curve[: resume.steps_done // plan.steps_per_epoch]),
        epoch_loss_sum=resume.epoch_loss_sum,
        rng_state=resume.rng_state,
        cuda_rng_state=resume.cuda_rng_state,
    )


def train_epoch(run: TrainingRun) -> None:
    """Train the rest of the current epoch, or as much of it as the budget leaves; then validate.

    An epoch starts with its own dropout seed; one that a resumed run entered part-way goes on
    with the RNG state and loss sum the saved run stopped with, so it sees the same masks.
    Raises :class:`TrainingDiverged` when the epoch's mean loss is not finite.
    """
    data, plan, device = run.data, run.plan, run.data.device
    epoch, first_step = divmod(run.steps_done, plan.steps_per_epoch)
    last_step = min(plan.steps_per_epoch, first_step + plan.total_steps - run.steps_done)
    order = epoch_order(run.seed, epoch, len(data.train_x), device)
    loss_sum = torch.zeros((), device=device)
    torch.manual_seed(seed_for(run.seed, 0xD80F, epoch))  # this epoch's dropout masks (and a GPU's, if unsaved)
    if first_step:  # part-way through an epoch: its dropout masks go on where the saved run stopped
        assert run.rng_state is not None, "a state saved part-way through an epoch has its RNG state"
        torch.set_rng_state(run.rng_state.cpu())  # RNG states are CPU byte tensors wherever loaded
        if device.type == "cuda" and run.cuda_rng_state is not None:
            torch.cuda.set_rng_state(run.cuda_rng_state.cpu(), device)
        loss_sum += run.epoch_loss_sum
    run.model.train()
    for step in range(first_step, last_step):
        index = order[step * plan.batch_size : (step + 1) * plan.batch_size]
        run.optimizer.zero_grad(set_to_none=True)
        with run.autocast():
            loss = run.criterion(run.model(data.train_x[index]), data.train_y[index])
        if run.scaler is not None:
            run.scaler.scale(loss).backward()
            run.scaler.step(run.optimizer)
            run.scaler.update()
        else:
            loss.backward()
            run.optimizer.step()
        loss_sum += loss.detach().float()
    run.steps_done += last_step - first_step
    run.epoch_loss_sum = float(loss_sum.item())
    run.train_loss = run.epoch_loss_sum / last_step
    if not math.isfinite(run.train_loss):
        raise TrainingDiverged(
            f"training diverged: loss is {run.train_loss} after {run.steps_done} steps (epoch {epoch + 1})"
        )
    if last_step < plan.steps_per_epoch:  # stopped part-way: what the rest of this epoch needs
        run.rng_state = torch.get_rng_state()
        run.cuda_rng_state = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    run.learning_curve.append(error_rate(run.model, data.val_x, data.val_y))


def evaluate_run(run: TrainingRun) -> tuple[float, float | None]:
    """The validation error (the loss) and the test error (None without test images).

    A run that had nothing left to train (a state already at its budget) is evaluated here:
    its curve is the resumed one, plus the validation error of the epoch it stands in.
    """
    data = run.data
    if run.steps_done == run.steps_at_start:
        run.learning_curve = list(run.resumed.learning_curve) if run.resumed is not None else run.learning_curve
        if not run.learning_curve or run.mid_epoch:
            run.learning_curve.append(error_rate(run.model, data.val_x, data.val_y))
    # a split without test images (e.g. 8000,2000,0) has no test error, not an error of 0
    test_error = error_rate(run.model, data.test_x, data.test_y) if len(data.test_x) else None
    return run.learning_curve[-1], test_error


def run_info(run: TrainingRun, val_error: float, test_error: float | None, train_time: float) -> dict[str, Any]:
    """The ``info`` of a job's result: errors, learning curve, what was trained and on what."""
    plan = run.plan
    info = {
        "val_error": val_error,
        "val_accuracy": 1.0 - val_error,
        "test_error": test_error,
        "test_accuracy": None if test_error is None else 1.0 - test_error,
        "learning_curve": run.learning_curve,
        "epochs": plan.epochs,
        "steps": run.steps_done,
        "epochs_trained": (run.steps_done - run.steps_at_start) / plan.steps_per_epoch,
        "resumed_from": run.resumed.budget if run.resumed is not None else 0.0,  # 0: from scratch
        "train_loss": run.train_loss,
        "train_time": train_time,
        "num_parameters": count_parameters(run.model),
        "device": str(run.data.device),
    }
    if run.amp_dtype is not None:
        info["amp"] = str(run.amp_dtype).removeprefix("torch.")
    return info


def run_state(run: TrainingRun) -> TrainingState:
    """The state to continue from on a larger budget: the mid-epoch parts only when it stopped mid-epoch."""
    mid_epoch = run.mid_epoch
    return TrainingState(
        budget=run.budget,
        steps_done=run.steps_done,
        model_state=run.model.state_dict(),
        optimizer_state=run.optimizer.state_dict(),
        learning_curve=run.learning_curve[: run.steps_done // run.plan.steps_per_epoch],
        epoch_loss_sum=run.epoch_loss_sum if mid_epoch else 0.0,
        rng_state=run.rng_state if mid_epoch else None,
        cuda_rng_state=run.cuda_rng_state if mid_epoch else None,
        scaler_state=run.scaler.state_dict() if run.scaler is not None else None,
    )


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
    run = start_run(config, budget, data, seed, resume=resume, amp=amp)
    while not run.finished:
        train_epoch(run)
    val_error, test_error = evaluate_run(run)
    info = run_info(run, val_error, test_error, time.perf_counter() - started)
    return TrainedModel(run.model, val_error, info, run_state(run))


def train_and_evaluate(config: dict[str, Any], budget: float, data: TensorSplits, seed: int) -> dict[str, Any]:
    """hpbandster's result: validation error as the loss, the details in ``info``."""
    trained = train(config, budget, data, seed)
    return {"loss": trained.loss, "info": trained.info}
