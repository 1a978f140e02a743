"""Make hpbandster 0.7.4 work with ConfigSpace 1.x, numpy 2 and Pyro4's serpent serializer.

hpbandster was written against ConfigSpace 0.4 and numpy 1. With today's versions, three kinds
of values leak into what hpbandster sends over Pyro4 or writes as JSON:

* numpy floats (``np.float64`` budgets from ``np.power``, losses computed with numpy): serpent
  writes them as ``np.float64(1.0)`` under numpy 2, which the receiving side cannot parse. The
  call is dropped and the study waits forever.
* ConfigSpace 1.x configurations hold ``np.str_``, ``np.int64`` and ``np.bool_`` values:
  serpent refuses them with a ``TypeError`` that kills the dispatcher's job thread.
* hpbandster's JSON result logger and ``json.dumps`` fail on ``np.int64``.

The cure is to hand hpbandster, Pyro4 and JSON plain Python values. :func:`to_native` does the
conversion at every boundary bohb-runner owns (sampled configurations, budgets, worker
results); :func:`install_serpent_numpy_support` makes serpent convert any numpy value that still
slips through (a user's worker returning numpy in ``info``), so nothing can hang a study.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import serpent

_installed = False


def to_native(value: Any) -> Any:
    """Return ``value`` with every numpy (or torch) scalar and array turned into plain Python.

    Mappings become dicts (keys converted too), lists stay lists, tuples stay tuples (config
    ids are tuples), sets become sorted lists. Anything else is returned unchanged.
    """
    if value is None or type(value) in (bool, int, float, str):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return to_native(value.tolist())
    if isinstance(value, Mapping):
        return {to_native(k): to_native(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(to_native(v) for v in value)
    if isinstance(value, list):
        return [to_native(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(to_native(v) for v in value)
    if isinstance(value, float):  # float subclasses other than numpy's
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    tolist = getattr(value, "tolist", None)  # torch tensors and other array types
    if callable(tolist) and hasattr(value, "shape"):
        return to_native(tolist())
    return value


def native_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A configuration (ConfigSpace ``Configuration`` or dict) as a dict of plain Python values."""
    return {str(k): to_native(v) for k, v in dict(config).items()}


def native_budget(budget: float) -> float:
    """A budget as a plain float, rounded to 12 significant digits.

    hpbandster computes budgets as ``max_budget * eta ** -k``, which gives values such as
    ``0.9999999999999999`` for a budget that is meant to be 1; rounding keeps the journal, the
    progress line and the export readable without changing any schedule.
    """
    return float(f"{float(budget):.12g}")


def is_finite_number(value: Any) -> bool:
    """True for an int or float (numpy included) that is neither NaN nor infinite."""
    try:
        return math.isfinite(float(value)) and not isinstance(value, bool)
    except (TypeError, ValueError):
        return False


def _serialize_numpy_value(obj: Any, serializer: serpent.Serializer, out: list, level: int) -> None:
    serializer._serialize(to_native(obj), out, level)


def install_serpent_numpy_support() -> None:
    """Teach serpent to send numpy scalars and arrays as plain Python values. Idempotent."""
    global _installed
    if _installed:
        return
    serpent.register_class(np.generic, _serialize_numpy_value)
    serpent.register_class(np.ndarray, _serialize_numpy_value)
    _installed = True


def silence_configspace_deprecations() -> None:
    """Hide the DeprecationWarnings ConfigSpace 1.x raises for hpbandster's 0.4-era calls.

    hpbandster calls ``get_hyperparameters()``, ``get_dictionary()`` and friends, which still
    work; the warnings would only flood the user's terminal and logs.
    """
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"hpbandster(\.|$)")
    warnings.filterwarnings("ignore", category=DeprecationWarning, message=r"Please use .*")
