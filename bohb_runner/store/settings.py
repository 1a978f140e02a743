"""The settings of a study: one dataclass defines the fields, their validation and their file.

The settings are written to ``study.json`` when a study is created and read back by every
worker and every later command, so that all of them agree on the search space, the schedule,
the data split and the seed, whatever options they were started with.
"""

from __future__ import annotations

import json
import math
import platform
import secrets
import time
from dataclasses import asdict, dataclass, field, fields
from importlib import metadata
from pathlib import Path
from typing import Any

from bohb_runner.errors import StudyError, UserError
from bohb_runner.store.files import write_json_atomically

OPTIMIZERS = ("bohb", "hyperband", "randomsearch", "grid")
DEFAULT_WORKER = "workers.lenet:LeNetWorker"
# the worker that runs --objective module:callable (bohb_runner.worker.objective)
OBJECTIVE_WORKER = "bohb_runner.worker.objective:ObjectiveWorker"
FORMAT_VERSION = 1


BOHB_SAMPLERS = ("vectorized", "hpbandster")


@dataclass
class BOHBOptions:
    """The knobs of hpbandster's BOHB config generator, with hpbandster's defaults."""

    top_n_percent: int = 15
    num_samples: int = 64
    random_fraction: float = 1 / 3
    bandwidth_factor: float = 3.0
    min_bandwidth: float = 1e-3
    min_points_in_model: int | None = None
    # vectorized: bohb_runner.master.kde_sampler (same algorithm, sub-millisecond); hpbandster: its own
    sampler: str = "vectorized"

    def validate(self) -> None:
        if not 1 <= self.top_n_percent <= 99:
            raise UserError(f"--top-n-percent must be between 1 and 99, got {self.top_n_percent}")
        if self.num_samples < 1:
            raise UserError(f"--num-samples must be at least 1, got {self.num_samples}")
        if not 0.0 <= self.random_fraction <= 1.0:
            raise UserError(f"--random-fraction must be in [0, 1], got {self.random_fraction}")
        if self.bandwidth_factor <= 0:
            raise UserError(f"--bandwidth-factor must be positive, got {self.bandwidth_factor}")
        if self.min_bandwidth <= 0:
            raise UserError(f"--min-bandwidth must be positive, got {self.min_bandwidth}")
        if self.sampler not in BOHB_SAMPLERS:
            raise UserError(f"--sampler must be one of {', '.join(BOHB_SAMPLERS)}, got {self.sampler!r}")


@dataclass
class StudySettings:
    """Everything that defines a study; stored as ``study.json`` in the study directory."""

    space: dict[str, Any]
    space_file: str = ""
    optimizer: str = "bohb"
    min_budget: float = 1.0
    max_budget: float = 9.0
    eta: float = 3.0
    iterations: int = 4
    seed: int = 0
    job_timeout: float | None = None
    worker: str = DEFAULT_WORKER
    dataset: str = "digits"
    data_dir: str | None = None
    split: str | None = None
    # the built-in trainer's model, module:callable or path/file.py:callable (None: the reduced LeNet)
    model: str | None = None
    # a function objective(config, budget, context), module:callable, run by OBJECTIVE_WORKER
    objective: str | None = None
    # images resized to N x N or H x W ("28", "64x48"); channels forced to 1 or 3 (None: as found)
    image_size: str | None = None
    channels: int | None = None
    # where decoded images are cached (None: the study directory's cache/)
    cache_dir: str | None = None
    bohb: BOHBOptions = field(default_factory=BOHBOptions)
    # workers continue a promoted configuration from its checkpoint on the smaller budget
    continue_training: bool = True
    # mixed precision on CUDA workers (ignored on CPU)
    amp: bool = False
    # grid search: values per numeric hyperparameter (see bohb_runner.master.grid)
    grid_points: int = 3
    # trainings per evaluation, with different seeds; the loss is their mean (bohb_runner.worker.repeats)
    repeats: int = 1
    run_id: str = ""
    created: float = 0.0
    versions: dict[str, str] = field(default_factory=dict)
    data: dict[str, Any] | None = None
    format_version: int = FORMAT_VERSION

    def validate(self) -> None:
        """Refuse impossible schedules before anything starts, with the option that is wrong."""
        if self.optimizer not in OPTIMIZERS:
            raise UserError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        for name in ("min_budget", "max_budget", "eta"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise UserError(f"--{name.replace('_', '-')} must be a finite number, got {value!r}")
        if self.min_budget <= 0:
            raise UserError(f"--min-budget must be positive, got {self.min_budget:g}")
        if self.max_budget < self.min_budget:
            raise UserError(
                f"--max-budget ({self.max_budget:g}) must not be smaller than --min-budget ({self.min_budget:g})"
            )
        if self.eta < 2:
            raise UserError(f"--eta must be at least 2 (hpbandster's successive halving), got {self.eta:g}")
        if self.iterations < 1:
            raise UserError(f"--iterations must be at least 1, got {self.iterations}")
        if self.seed < 0 or self.seed >= 2**32:
            raise UserError(f"--seed must be in [0, 2**32), got {self.seed}")
        if self.job_timeout is not None and not self.job_timeout > 0:
            raise UserError(f"--job-timeout must be positive, got {self.job_timeout:g}")
        if ":" not in self.worker:
            raise UserError(f"--worker must look like module:Class, got {self.worker!r}")
        for option, value in (("--model", self.model), ("--objective", self.objective)):
            if value is not None and ":" not in value:
                raise UserError(f"{option} must look like module:callable or path/to/file.py:callable, got {value!r}")
        if self.model is not None and self.objective is not None:
            raise UserError(
                "--model trains a torch model with the built-in trainer, --objective runs a function; give one"
            )
        if self.objective is not None and self.worker != OBJECTIVE_WORKER:
            raise UserError(
                f"--objective runs the function with its own worker; it does not go with --worker {self.worker}"
            )
        if self.model is not None and self.worker == OBJECTIVE_WORKER:
            raise UserError("--model is for the built-in trainer, not for --objective")
        if self.image_size is not None:
            parse_image_size(self.image_size)
        if self.channels is not None and (isinstance(self.channels, bool) or self.channels not in (1, 3)):
            raise UserError(f"--channels must be 1 or 3, got {self.channels!r}")
        self.bohb.validate()
        if isinstance(self.grid_points, bool) or not isinstance(self.grid_points, int) or self.grid_points < 2:
            raise UserError(f"--grid-points must be an integer of at least 2, got {self.grid_points!r}")
        if isinstance(self.repeats, bool) or not isinstance(self.repeats, int) or self.repeats < 1:
            raise UserError(f"--repeats must be an integer of at least 1, got {self.repeats!r}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StudySettings:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        bohb = dict(values.get("bohb", {}))
        bohb.setdefault("sampler", "hpbandster")  # studies from before --sampler used hpbandster's
        values["bohb"] = BOHBOptions(**bohb)
        return cls(**values)

    def stamp(self) -> None:
        """Give a new study its identity: a run id, a creation time and the versions in use."""
        if not self.run_id:
            self.run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        if not self.created:
            self.created = time.time()
        self.versions = installed_versions()


def installed_versions() -> dict[str, str]:
    """Versions of the parts that decide a study's results, for the record (no imports needed)."""
    versions = {"python": platform.python_version()}
    for dist in ("bohb-runner", "hpbandster", "ConfigSpace", "numpy", "Pyro4", "serpent", "torch", "scikit-learn"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return versions


# Settings a resumed study may change: how long it runs and how long a job may take.
# Everything else defines the study; a different value would mix two studies in one journal.
CHANGEABLE_ON_RESUME = ("iterations", "job_timeout", "space_file", "continue_training", "cache_dir")


def get_setting(settings: StudySettings, path: str) -> Any:
    """A setting by its dotted path, e.g. ``eta`` or ``bohb.top_n_percent``."""
    value: Any = settings
    for part in path.split("."):
        value = getattr(value, part)
    return value


def set_setting(settings: StudySettings, path: str, value: Any) -> None:
    *parents, last = path.split(".")
    target: Any = settings
    for part in parents:
        target = getattr(target, part)
    setattr(target, last, value)


def new_settings(requested: dict[str, Any]) -> StudySettings:
    """Settings for a new study: the defaults, overridden by what was asked for.

    ``--objective`` names its worker itself (:data:`OBJECTIVE_WORKER`); given together with a
    ``--worker`` of another kind, :meth:`StudySettings.validate` refuses the two.
    """
    settings = StudySettings(space=requested["space"])
    for path, value in requested.items():
        set_setting(settings, path, value)
    if settings.objective is not None and "worker" not in requested:
        settings.worker = OBJECTIVE_WORKER
    return settings


def parse_image_size(text: str) -> tuple[int, int]:
    """``--image-size``: ``N`` (square) or ``HxW``, each at least 1, as (height, width)."""
    parts = str(text).lower().replace(" ", "").split("x")
    try:
        sizes = [int(part) for part in parts]
    except ValueError:
        sizes = []
    if len(sizes) not in (1, 2) or any(size < 1 for size in sizes):
        raise UserError(f"--image-size must be N or HxW (e.g. 64 or 64x48), got {text!r}")
    return (sizes[0], sizes[-1])


def contradictions(stored: StudySettings, requested: dict[str, Any]) -> list[str]:
    """What in ``requested`` contradicts the stored study, one readable line each."""
    from bohb_runner.store.spaces import describe_space_difference

    problems = []
    for path, value in requested.items():
        if path in CHANGEABLE_ON_RESUME:
            continue
        if path == "space":
            difference = describe_space_difference(stored.space, value)
            if difference:
                problems.append(
                    f"--space {requested.get('space_file', '')} differs from the study's space ({difference})"
                )
            continue
        old = get_setting(stored, path)
        same = old == value or (isinstance(old, float) and isinstance(value, (int, float)) and math.isclose(old, value))
        if not same:
            option = "--" + path.split(".")[-1].replace("_", "-")
            problems.append(f"{option} {value} contradicts the study ({path} {old})")
    return problems


SETTINGS_FILE = "study.json"


def write_settings(study_dir: Path, settings: StudySettings) -> None:
    """Write ``study.json`` atomically, so a crash never leaves half a settings file."""
    write_json_atomically(Path(study_dir) / SETTINGS_FILE, settings.to_json(), indent=2, sort_keys=True)


def read_settings(study_dir: Path) -> StudySettings:
    """Read ``study.json``; a missing or unreadable file is a one-line :class:`StudyError`."""
    path = Path(study_dir) / SETTINGS_FILE
    if not Path(study_dir).is_dir():
        raise StudyError(f"{study_dir}: no such study directory")
    try:
        with open(path) as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise StudyError(f"{path}: not found; is {study_dir} a bohb-runner study directory?") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise StudyError(f"{path}: unreadable ({exc})") from None
    if not isinstance(data, dict) or "space" not in data:
        raise StudyError(f"{path}: not a bohb-runner study settings file")
    try:
        return StudySettings.from_json(data)
    except TypeError as exc:
        raise StudyError(f"{path}: malformed settings ({exc})") from None


# Which address daemons listen on (loopback unless --host or --interface says otherwise) is
# decided in bohb_runner.wire.network; every daemon requires the study's secret (bohb_runner.wire.auth).
