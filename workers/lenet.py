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
validation error; the model has one output per class of the data (recorded with the split).
``info`` holds accuracy, test error, the learning curve (validation error
after each epoch), epochs and steps trained, train time and the number of parameters.

A configuration promoted to a larger budget continues from the checkpoint its job on the
smaller budget left in the study directory (:mod:`workers.checkpoints`), with the same result
as training from scratch; ``info["epochs_trained"]`` is what the job actually trained and
``info["resumed_from"]`` the budget it continued from (0: from scratch).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from hpbandster.core.worker import Worker

from bohb_runner.errors import UserError
from bohb_runner.store.settings import SETTINGS_FILE, read_settings
from bohb_runner.worker.api import HyperparameterSpec, StudyContext
from bohb_runner.worker.repeats import repeat_seed
from workers.checkpoints import CheckpointStore
from workers.datasets import TensorSplits, load_dataset, make_split, tensor_splits
from workers.training import DEFAULTS, train

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
    # the IDX set the study was created with: ``--dataset mnist`` may have picked one of several
    loaded = load_dataset(context.data_record.get("dataset", context.dataset), context.data_dir)
    return tensor_splits(loaded, context.data_record, device)


class LeNetWorker(Worker):
    """Trains the reduced LeNet on the study's data for the budget (epochs) each job asks for."""

    HYPERPARAMETERS = HYPERPARAMETERS

    def __init__(
        self,
        *,
        data: TensorSplits,
        seed: int,
        device: torch.device | str | None = None,
        checkpoint_dir: Path | str | None = None,
        max_budget: float | None = None,
        continue_training: bool = True,
        amp: bool = False,
        **worker_kwargs: Any,
    ) -> None:
        """``data`` stays resident for every job; ``device`` (default: where ``data`` is) moves it once.

        ``checkpoint_dir`` (a study directory) enables continued training across budgets; no
        checkpoint is kept for ``max_budget``, which no job continues from. ``amp``: mixed
        precision, on CUDA only (ignored, with a log line, elsewhere).
        """
        super().__init__(**worker_kwargs)
        self.data = data if device is None else data.to(device)
        self.seed = seed
        self.checkpoints = CheckpointStore(checkpoint_dir) if checkpoint_dir is not None else None
        self.max_budget = max_budget
        self.continue_training = continue_training
        self.amp = amp
        if amp and self.data.device.type != "cuda":
            logger.info("mixed precision is for CUDA devices only; training in float32 on %s", self.data.device)
        settings_file = Path(checkpoint_dir) / SETTINGS_FILE if checkpoint_dir is not None else None
        self._settings_file = settings_file if settings_file is not None and settings_file.exists() else None
        self._settings_stamp = self._settings_file.stat().st_mtime_ns if self._settings_file is not None else None

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
        extra = context.extra or {}
        return cls(
            data=data,
            seed=context.seed,
            device=device,
            checkpoint_dir=context.study_dir,
            max_budget=extra.get("max_budget"),
            continue_training=bool(extra.get("continue_training", True)),
            amp=bool(extra.get("amp", False)),
            **worker_kwargs,
        )

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
                "num_classes": data.num_classes,
                "seed": context.seed,
                "val_error": trained.loss,
                "test_error": trained.info["test_error"],
            },
            output_path,
        )
        return {"loss": trained.loss, "test_error": trained.info["test_error"], "output": str(output_path)}

    def compute(
        self,
        config_id: Any,
        config: dict[str, Any],
        budget: float,
        working_directory: str,
        repeat: int = 0,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """One training run; ``repeat`` (``--repeats``) changes the seed, repeat 0 is the study's.

        With continued training on, the run starts from this configuration's checkpoint on the
        largest smaller budget (same result as from scratch, fewer epochs), leaves a checkpoint
        for the next promotion unless this is the maximum budget, and removes the one it used.
        """
        seed = repeat_seed(self.seed, repeat)
        store = self.checkpoints if self._continue_training() else None
        resume = None
        if store is not None:
            resume = store.load_latest_below(config_id, repeat, budget, config, seed, self.data.device)
        trained = train(config, budget, self.data, seed, resume=resume, amp=self.amp)
        if store is not None:
            if self.max_budget is None or budget < self.max_budget - 1e-9:
                store.save(config_id, repeat, config, seed, trained.state)
            store.discard(config_id, repeat, [b for b in store.budgets(config_id, repeat) if b < budget - 1e-12])
        logger.debug(
            "job %s on budget %g (continued from budget %g): validation error %.4f",
            config_id,
            budget,
            trained.info["resumed_from"],
            trained.loss,
        )
        return {"loss": trained.loss, "info": trained.info}

    def _continue_training(self) -> bool:
        """Whether to continue from checkpoints: the study's setting, re-read when study.json changes.

        ``--no-continue`` may be given when a study is resumed, and a worker may outlive its
        master and serve the resumed one; a stat per job keeps it in step.
        """
        if self.checkpoints is None or self._settings_file is None:
            return self.checkpoints is not None and self.continue_training
        try:
            stamp = self._settings_file.stat().st_mtime_ns
        except OSError:
            return self.continue_training
        if stamp != self._settings_stamp:
            self._settings_stamp = stamp
            try:
                self.continue_training = read_settings(self._settings_file.parent).continue_training
            except UserError as exc:
                logger.warning(
                    "cannot re-read the study settings (%s); continued training stays %s", exc, self.continue_training
                )
        return self.continue_training
