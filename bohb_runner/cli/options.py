"""The options several commands share, each defined once: study, master, local workers, listening.

Study options default to None, so that a resumed study can tell the options a user gave from
those left out (:func:`requested_settings`); new studies take the defaults of
:class:`~bohb_runner.store.settings.StudySettings` and BOHB's options.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bohb_runner.store.settings import DEFAULT_WORKER, OPTIMIZERS, BOHBOptions, StudySettings

if TYPE_CHECKING:
    from bohb_runner.master.run import RunOptions

# Study options: (flag, settings field, type, help). Their defaults are None so that a resumed
# study can tell the options a user gave from those left out; new studies take the defaults of
# StudySettings and BOHBOptions.
_DEFAULTS, _BOHB = StudySettings(space={}), BOHBOptions()

STUDY_OPTIONS: list[tuple[str, str, type, str]] = [
    ("--optimizer", "optimizer", str, f"{', '.join(OPTIMIZERS)} (default: {_DEFAULTS.optimizer})"),
    ("--min-budget", "min_budget", float, f"smallest budget, in epochs (default: {_DEFAULTS.min_budget:g})"),
    ("--max-budget", "max_budget", float, f"largest budget, in epochs (default: {_DEFAULTS.max_budget:g})"),
    ("--eta", "eta", float, f"successive-halving ratio (default: {_DEFAULTS.eta:g})"),
    ("--iterations", "iterations", int, f"Hyperband iterations; may grow on resume (default: {_DEFAULTS.iterations})"),
    ("--seed", "seed", int, f"seed of sampling, data split and training (default: {_DEFAULTS.seed})"),
    ("--job-timeout", "job_timeout", float, "seconds after which a job is abandoned as failed (default: none)"),
    ("--worker", "worker", str, f"hpbandster Worker class, module:Class (default: {DEFAULT_WORKER})"),
    (
        "--dataset",
        "dataset",
        str,
        "digits (embedded, default), or IDX files in --data-dir: mnist, emnist-<split>, qmnist, qmnist-nist",
    ),
    (
        "--data-dir",
        "data_dir",
        str,
        "directory of the dataset's files (MNIST-format IDX, also in torchvision's layout)",
    ),
    ("--split", "split", str, "train,val,test fractions or counts (default: per dataset)"),
    (
        "--model",
        "model",
        str,
        "the built-in trainer's model: module:callable or path/file.py:callable, called as "
        "callable(config, input_shape, num_classes) (default: the reduced LeNet)",
    ),
    (
        "--objective",
        "objective",
        str,
        "a function objective(config, budget, context) to minimise, module:callable (instead of a model)",
    ),
    ("--image-size", "image_size", str, "resize images to N x N or HxW (default: their own size, if all agree)"),
    ("--channels", "channels", int, "1 (grayscale) or 3 (RGB); default: as the images are"),
    (
        "--cache-dir",
        "cache_dir",
        str,
        "where decoded images are cached (default: STUDY_DIR/cache); may change on resume",
    ),
    (
        "--grid-points",
        "grid_points",
        int,
        f"grid: values per numeric hyperparameter (default: {_DEFAULTS.grid_points})",
    ),
    (
        "--repeats",
        "repeats",
        int,
        f"trainings per evaluation with different seeds; the loss is their mean (default: {_DEFAULTS.repeats})",
    ),
    (
        "--top-n-percent",
        "bohb.top_n_percent",
        int,
        f"BOHB: share of good observations (default: {_BOHB.top_n_percent})",
    ),
    ("--num-samples", "bohb.num_samples", int, f"BOHB: candidates per proposal (default: {_BOHB.num_samples})"),
    ("--random-fraction", "bohb.random_fraction", float, "BOHB: share of random configurations (default: 1/3)"),
    ("--bandwidth-factor", "bohb.bandwidth_factor", float, f"BOHB: KDE widening (default: {_BOHB.bandwidth_factor:g})"),
    ("--min-bandwidth", "bohb.min_bandwidth", float, f"BOHB: KDE minimum bandwidth (default: {_BOHB.min_bandwidth:g})"),
    ("--min-points-in-model", "bohb.min_points_in_model", int, "BOHB: observations before a model (default: dim+1)"),
    (
        "--sampler",
        "bohb.sampler",
        str,
        "BOHB: vectorized (same algorithm as hpbandster's, sub-millisecond) or hpbandster (default: vectorized)",
    ),
]


# On/off study options: (flag, settings field, help); each also has its --no- form, and None
# (neither given) keeps the study's value on resume.
STUDY_FLAGS: list[tuple[str, str, str]] = [
    (
        "--continue",
        "continue_training",
        "continue a promoted configuration from its checkpoint on the smaller budget; "
        "--no-continue trains every job from scratch (default: on; may change on resume)",
    ),
    ("--amp", "amp", "mixed precision (bfloat16, or float16 with loss scaling) on CUDA workers; ignored on CPU"),
]


def add_study_options(
    parser: argparse.ArgumentParser, *, study_dir: bool = True, leave_out: Collection[str] = ()
) -> None:
    """The study options of ``run``, ``master``, ``slurm submit`` and (without ``--study-dir``, and
    without the options it varies itself: ``leave_out``) ``compare``."""
    group = parser.add_argument_group(
        "study (given again on resume: must match the study, except --iterations, --job-timeout and --[no-]continue)"
    )
    group.add_argument("--space", type=Path, help="ConfigSpace YAML or JSON file (e.g. spaces/lenet.yaml)")
    if study_dir:
        group.add_argument("--study-dir", required=True, type=Path, help="directory for settings, journal and logs")
    for flag, field, kind, text in STUDY_OPTIONS:
        if field in leave_out:
            parser.set_defaults(**{field.replace(".", "__"): None})
            continue
        group.add_argument(flag, dest=field.replace(".", "__"), type=kind, default=None, help=text)
    for flag, field, text in STUDY_FLAGS:
        group.add_argument(flag, dest=field, action=argparse.BooleanOptionalAction, default=None, help=text)
    if study_dir:
        group.add_argument("--fresh", action="store_true", help="start a new study; refuse if --study-dir holds one")
        group.add_argument("--overwrite", action="store_true", help="with --fresh: delete the existing study first")


def requested_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The study settings the user gave on the command line (and only those)."""
    requested: dict[str, Any] = {}
    if args.space is not None:
        from bohb_runner.store.spaces import load_space, space_to_dict  # ConfigSpace: only where a space is read

        requested["space"] = space_to_dict(load_space(args.space))
        requested["space_file"] = str(args.space)
    for _flag, field, _kind, _text in STUDY_OPTIONS:
        value = getattr(args, field.replace(".", "__"))
        if value is not None:
            requested[field] = value
    for _flag, field, _text in STUDY_FLAGS:
        if getattr(args, field, None) is not None:
            requested[field] = getattr(args, field)
    return requested


def add_master_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("master")
    add_listen_options(group, "the nameserver and master listen on")
    add_worker_pool_options(group)
    group.add_argument("--no-progress", action="store_true", help="no live progress line")


def add_worker_pool_options(parser: argparse._ActionsContainer) -> None:
    """How the master waits for and watches its workers (``run``, ``master``, ``slurm submit``)."""
    parser.add_argument("--min-workers", type=int, default=1, help="workers to wait for before starting (default: 1)")
    parser.add_argument("--ping-interval", type=float, default=10.0, help="seconds between worker liveness checks")


def add_local_worker_options(parser: argparse.ArgumentParser) -> None:
    """Device and threads of the worker processes a command starts itself (``run``, ``compare``)."""
    parser.add_argument("--device", default="auto", help="device for local workers: auto, cpu, cuda, cuda:N, cuda:each")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per local worker (default: 1)")


def add_listen_options(parser: argparse._ActionsContainer, who: str) -> None:
    """``--host ADDR`` or ``--interface NAME`` (see :mod:`bohb_runner.wire.network`); resolve them
    with :func:`listen_address`."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--host", default=None, help=f"address {who} (default: 127.0.0.1, loopback)")
    where.add_argument(
        "--interface",
        default=None,
        metavar="NAME",
        help=f"network interface {who}, e.g. ib0, eth0, lo, or auto (the address of this node's hostname)",
    )


def listen_address(args: argparse.Namespace) -> str:
    """The address from ``--host``/``--interface``; says so when it is reachable from other hosts."""
    from bohb_runner.wire.network import describe_listening, is_loopback
    from bohb_runner.wire.network import listen_address as resolve

    address = resolve(getattr(args, "host", None), getattr(args, "interface", None))
    if not is_loopback(address):
        print(f"bohb-runner: {describe_listening(address, getattr(args, 'interface', None))}", file=sys.stderr)
    return address


def run_options(args: argparse.Namespace) -> RunOptions:
    """How the master runs this time, from the master and local-worker options of ``args``."""
    from bohb_runner.master.run import RunOptions

    return RunOptions(
        workers=args.workers,
        host=args.host,
        min_workers=args.min_workers,
        ping_interval=args.ping_interval,
        progress=not args.no_progress,
        device=args.device,
        threads=args.threads,
        workers_per_gpu=getattr(args, "workers_per_gpu", None),
    )
