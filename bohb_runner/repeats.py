"""Kept for user code that imports it (``bohb_runner.repeats.repeat_seed``, as the README shows):
``--repeats`` lives in :mod:`bohb_runner.worker.repeats`."""

from bohb_runner.worker.repeats import (
    REPEAT_PARAMETER,
    RepeatFailed,
    check_worker_supports_repeats,
    combine_repeats,
    repeat_seed,
    repeated_compute,
    supports_repeats,
)

__all__ = [
    "REPEAT_PARAMETER",
    "RepeatFailed",
    "check_worker_supports_repeats",
    "combine_repeats",
    "repeat_seed",
    "repeated_compute",
    "supports_repeats",
]
