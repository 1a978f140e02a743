"""``--repeats R``: every evaluation trains R times with different seeds and reports the mean.

A single training run's validation error is noisy (initial weights, batch order), and on a
small validation set the noise can be larger than the differences an optimizer is asked to
find. Repeating each evaluation trades budget for a less noisy loss and an estimate of the noise
itself, which the report shows as error bars.

The repeats happen inside the worker process, around any worker's ``compute`` (see
:func:`bohb_runner.worker.runtime.guard_compute`), so the master, the schedule and the journal
see one evaluation as before. ``compute`` is called with ``repeat=0 .. R-1`` and must derive its
seeds from it (:func:`repeat_seed` does that; repeat 0 keeps the study's seed, so a study with
``--repeats 1`` and the first repeat of any study train exactly the same model). The result:

* ``loss``: the mean of the R losses;
* ``info``: the first repeat's ``info``, plus ``repeat_losses`` (the R losses, in order),
  ``loss_std`` (their standard deviation, ddof=1) and ``repeat_means`` (the mean over the repeats
  of every number that all repeats' ``info`` hold, e.g. ``test_error``).

A repeat that raises or returns a non-finite loss fails the whole evaluation with its error: a
mean over the repeats that happened to work would be biased towards the easy seeds.
"""

from __future__ import annotations

import inspect
import math
import statistics
from collections.abc import Callable
from typing import Any

import numpy as np

from bohb_runner.errors import UserError

REPEAT_PARAMETER = "repeat"


class RepeatFailed(RuntimeError):
    """One repeat of an evaluation failed; so does the evaluation."""


def repeat_seed(seed: int, repeat: int) -> int:
    """The training seed of repeat ``repeat``: the study's seed for repeat 0, else a 32-bit seed
    derived from both (so repeats of one study never share a seed with another study's)."""
    if repeat == 0:
        return seed
    return int(np.random.SeedSequence([seed, 0x5E7EA7, repeat]).generate_state(1)[0])


def supports_repeats(compute: Callable[..., Any]) -> bool:
    """Whether ``compute`` names a ``repeat`` parameter (a bare ``**kwargs`` would swallow it and
    train R identical models)."""
    try:
        parameters = inspect.signature(compute).parameters
    except (TypeError, ValueError):
        return False
    parameter = parameters.get(REPEAT_PARAMETER)
    return parameter is not None and parameter.kind in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.KEYWORD_ONLY,
    )


def check_worker_supports_repeats(cls: type, spec: str) -> None:
    """Refuse ``--repeats`` at study creation for a worker whose ``compute`` cannot vary its seed."""
    if not supports_repeats(cls.compute):
        raise UserError(
            f"--repeats: {spec}.compute() has no 'repeat' parameter, so its repeats would be identical;"
            " add 'repeat: int = 0' to compute() and derive the training seed from it"
            " (bohb_runner.worker.repeats.repeat_seed), or leave out --repeats"
        )


def repeated_compute(
    compute: Callable[..., Any], repeats: int, check: Callable[[Any], dict[str, Any]]
) -> Callable[..., dict[str, Any]]:
    """``compute`` wrapped to run ``repeats`` times per call and return the combined result;
    ``check`` turns each repeat's raw result into a plain result dict (or raises)."""

    def run_repeats(*args: Any, **kwargs: Any) -> dict[str, Any]:
        results = []
        for repeat in range(repeats):
            try:
                result = check(compute(*args, **kwargs, **{REPEAT_PARAMETER: repeat}))
            except Exception as exc:
                raise RepeatFailed(f"repeat {repeat + 1} of {repeats} failed: {type(exc).__name__}: {exc}") from exc
            loss = result["loss"]
            if isinstance(loss, bool) or not isinstance(loss, (int, float)) or not math.isfinite(loss):
                raise RepeatFailed(f"repeat {repeat + 1} of {repeats} failed: loss is {loss!r} (not a finite number)")
            results.append(result)
        return combine_repeats(results)

    return run_repeats


def combine_repeats(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The evaluation's result from its repeats' results (see the module docstring)."""
    losses = [float(result["loss"]) for result in results]
    first = results[0].get("info")
    if isinstance(first, dict):
        info = dict(first)
    elif first is None:
        info = {}
    else:
        info = {"repeat_info": first}
    info["repeat_losses"] = losses
    info["loss_std"] = statistics.stdev(losses) if len(losses) > 1 else 0.0
    infos = [result.get("info") for result in results]
    if all(isinstance(i, dict) for i in infos):
        shared = set(infos[0]).intersection(*infos[1:])
        info["repeat_means"] = {
            key: statistics.fmean(i[key] for i in infos)
            for key in sorted(shared)
            if all(isinstance(i[key], (int, float)) and not isinstance(i[key], bool) for i in infos)
        }
    return {"loss": statistics.fmean(losses), "info": info}
