"""Read search spaces from ConfigSpace files and refuse bad ones before a study starts.

A mistake in a space file found by the first worker on a cluster node costs a queue wait and a
lost allocation; found here it costs one line on the terminal. ConfigSpace's own messages are
terse ("Hyperparameter 'lr' has illegal settings"), so the raw entries are checked first and
every message names the file, the hyperparameter and why.
"""

from __future__ import annotations

import copy
import io
import json
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import ConfigSpace as CS
import yaml

from bohb_runner.errors import SpaceError

if TYPE_CHECKING:
    from bohb_runner.store.settings import StudySettings

_NUMERIC_TYPES = {"uniform_float", "uniform_int", "normal_float", "normal_int", "beta_float", "beta_int"}
_CHOICE_TYPES = {"categorical", "ordinal"}
_KNOWN_TYPES = _NUMERIC_TYPES | _CHOICE_TYPES | {"constant"}


@dataclass(frozen=True)
class HyperparameterSpec:
    """One hyperparameter a worker understands, with the values it can handle.

    ``lower``/``upper`` are limits for numeric kinds (``None``: unbounded), inclusive unless
    ``lower_exclusive``/``upper_exclusive`` say otherwise;
    ``choices`` lists the allowed values of a categorical one. ``default`` is what the worker
    uses when the search space leaves the hyperparameter out (or it is inactive).
    """

    name: str
    kind: Literal["float", "int", "categorical"]
    default: Any
    description: str
    lower: float | None = None
    upper: float | None = None
    choices: tuple[Any, ...] | None = None
    lower_exclusive: bool = False
    upper_exclusive: bool = False


def find_space_file(path: str | Path) -> Path:
    """``path`` itself, or else the example space of that name installed with bohb-runner.

    ``spaces/lenet.yaml`` thus works from a checkout and from a plain ``pip install``.
    """
    path = Path(path)
    if path.is_file() or path.is_absolute():
        return path
    shared = Path(sys.prefix) / "share" / "bohb-runner" / "spaces"
    for candidate in (shared / path.name, Path(__file__).resolve().parent.parent / "spaces" / path.name):
        if candidate.is_file():
            return candidate
    return path


def load_space(path: str | Path) -> CS.ConfigurationSpace:
    """Parse a ConfigSpace YAML or JSON file (ConfigSpace's own serialisation)."""
    path = find_space_file(path)
    if not path.is_file():
        raise SpaceError(f"{path}: no such search-space file")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise SpaceError(f"{path}: cannot read ({exc})") from None
    raw = _parse_text(path, text)
    return space_from_dict(raw, origin=str(path))


def _parse_text(path: Path, text: str) -> dict[str, Any]:
    try:
        if path.suffix.lower() == ".json":
            raw = json.loads(text)
        else:  # YAML is a superset of JSON, so .yaml, .yml and anything else go through it
            raw = yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        reason = " ".join(str(exc).split())
        raise SpaceError(f"{path}: does not parse ({reason})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("hyperparameters"), list):
        raise SpaceError(f"{path}: not a ConfigSpace file (expected a mapping with a 'hyperparameters' list)")
    return raw


def space_from_dict(raw: Mapping[str, Any], origin: str = "<space>") -> CS.ConfigurationSpace:
    """Build a space from ConfigSpace's serialised dict, checking each entry first."""
    names: set[str] = set()
    for position, entry in enumerate(raw.get("hyperparameters", [])):
        _check_entry(origin, position, entry)
        if entry["name"] in names:
            raise SpaceError(f"{origin}: hyperparameter {entry['name']!r} is defined twice")
        names.add(entry["name"])
    for condition in raw.get("conditions", []) or []:
        _check_condition(origin, condition, names)
    try:
        # ConfigSpace pops keys out of the dicts it decodes: give it a copy
        return CS.ConfigurationSpace.from_serialized_dict(copy.deepcopy(dict(raw)))
    except Exception as exc:  # ConfigSpace raises many types; all mean "bad file"
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise SpaceError(f"{origin}: rejected by ConfigSpace ({reason})") from None


def _check_entry(origin: str, position: int, entry: Any) -> None:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise SpaceError(f"{origin}: hyperparameter #{position + 1} has no name")
    name, kind = entry["name"], entry.get("type")
    where = f"{origin}: hyperparameter {name!r}"
    if kind not in _KNOWN_TYPES:
        raise SpaceError(f"{where}: unknown type {kind!r} (known: {', '.join(sorted(_KNOWN_TYPES))})")
    if kind in _CHOICE_TYPES:
        key = "choices" if kind == "categorical" else "sequence"
        values = entry.get(key)
        if not isinstance(values, list) or not values:
            raise SpaceError(f"{where}: {kind} needs a non-empty '{key}' list")
        if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
            raise SpaceError(f"{where}: '{key}' lists a value twice")
        default = entry.get("default_value")
        if default is not None and default not in values:
            raise SpaceError(f"{where}: default {default!r} is not one of {values}")
        return
    if kind == "constant":
        if "value" not in entry:
            raise SpaceError(f"{where}: constant needs a 'value'")
        return
    _check_numeric_entry(where, kind, entry)


def _check_numeric_entry(where: str, kind: str, entry: dict[str, Any]) -> None:
    for key in ("lower", "upper"):
        value = entry.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise SpaceError(f"{where}: '{key}' must be a finite number, got {value!r}")
    lower, upper = entry["lower"], entry["upper"]
    if kind.endswith("_int") and (lower != int(lower) or upper != int(upper)):
        raise SpaceError(f"{where}: integer bounds must be whole numbers, got [{lower}, {upper}]")
    if lower >= upper:
        raise SpaceError(f"{where}: lower bound {lower} must be smaller than upper bound {upper}")
    if entry.get("log") and lower <= 0:
        raise SpaceError(f"{where}: a log-scale range must be positive, got lower bound {lower}")
    default = entry.get("default_value")
    if default is not None:
        if isinstance(default, bool) or not isinstance(default, (int, float)):
            raise SpaceError(f"{where}: default {default!r} is not a number")
        if not lower <= default <= upper:
            raise SpaceError(f"{where}: default {default} lies outside [{lower}, {upper}]")
    if kind.startswith("normal_"):
        sigma = entry.get("sigma")
        if not isinstance(sigma, (int, float)) or sigma <= 0:
            raise SpaceError(f"{where}: 'sigma' must be positive, got {sigma!r}")


def _check_condition(origin: str, condition: Any, names: set[str]) -> None:
    if not isinstance(condition, dict):
        raise SpaceError(f"{origin}: a condition is not a mapping: {condition!r}")
    for role in ("child", "parent"):
        name = condition.get(role)
        if name is not None and name not in names:
            raise SpaceError(f"{origin}: condition names unknown {role} hyperparameter {name!r}")
    for sub in condition.get("conditions", []) or []:  # AND / OR conjunctions
        _check_condition(origin, sub, names)


def check_space_for_worker(
    space: CS.ConfigurationSpace,
    specs: Mapping[str, HyperparameterSpec] | None,
    origin: str,
    worker_name: str,
) -> None:
    """Refuse a space that names a hyperparameter the worker does not understand, or asks for
    values it cannot handle. A worker that declares nothing accepts any space."""
    if specs is None:
        return
    for hp in space.values():
        spec = specs.get(hp.name)
        where = f"{origin}: hyperparameter {hp.name!r}"
        if spec is None:
            known = ", ".join(sorted(specs))
            raise SpaceError(f"{where} is not understood by {worker_name} (it understands: {known})")
        _check_hyperparameter_against_spec(where, hp, spec)


def _check_hyperparameter_against_spec(where: str, hp: Any, spec: HyperparameterSpec) -> None:
    values = hyperparameter_values(hp)
    if spec.kind == "categorical":
        if values is None:
            raise SpaceError(f"{where}: must be categorical with values from {list(spec.choices or ())}")
        unknown = [v for v in values if v not in (spec.choices or ())]
        if unknown:
            raise SpaceError(f"{where}: value {unknown[0]!r} is not one of {list(spec.choices or ())}")
        return
    if values is not None:  # numbers given as a categorical/ordinal/constant list
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise SpaceError(f"{where}: must be numeric for this worker, got values {list(values)}")
        if spec.kind == "int" and any(float(v) != int(v) for v in values):
            raise SpaceError(f"{where}: must be whole numbers, got {list(values)}")
        lower, upper = min(values), max(values)
    else:
        if spec.kind == "int" and isinstance(hp, CS.UniformFloatHyperparameter):
            raise SpaceError(f"{where}: must be an integer hyperparameter (uniform_int), not a float range")
        lower, upper = hp.lower, hp.upper
    _check_range(where, spec, lower, upper)


def _check_range(where: str, spec: HyperparameterSpec, lower: float, upper: float) -> None:
    if spec.lower is not None:
        too_low = lower <= spec.lower if spec.lower_exclusive else lower < spec.lower
        if too_low:
            op = ">" if spec.lower_exclusive else ">="
            raise SpaceError(
                f"{where}: lower bound {lower:g} is impossible for the worker (must be {op} {spec.lower:g})"
            )
    if spec.upper is not None:
        too_high = upper >= spec.upper if spec.upper_exclusive else upper > spec.upper
        if too_high:
            op = "<" if spec.upper_exclusive else "<="
            raise SpaceError(
                f"{where}: upper bound {upper:g} is impossible for the worker (must be {op} {spec.upper:g})"
            )


def hyperparameter_values(hp: Any) -> tuple[Any, ...] | None:
    """The finite list of values of a categorical, ordinal or constant hyperparameter, else None."""
    if isinstance(hp, CS.CategoricalHyperparameter):
        return tuple(hp.choices)
    if isinstance(hp, CS.OrdinalHyperparameter):
        return tuple(hp.sequence)
    if isinstance(hp, CS.Constant):
        return (hp.value,)
    return None


def check_space_for_optimizer(space: CS.ConfigurationSpace, optimizer: str, origin: str) -> None:
    """hpbandster's BOHB cannot model ordinal hyperparameters; say so before it crashes."""
    if len(list(space.values())) == 0:
        raise SpaceError(f"{origin}: the space has no hyperparameters")
    if optimizer == "bohb":
        for hp in space.values():
            if isinstance(hp, CS.OrdinalHyperparameter):
                raise SpaceError(
                    f"{origin}: hyperparameter {hp.name!r} is ordinal, which hpbandster's BOHB cannot model;"
                    " use an integer or categorical hyperparameter"
                )


def space_to_dict(space: CS.ConfigurationSpace) -> dict[str, Any]:
    """The space as ConfigSpace's serialised dict, plain JSON (stored in study.json)."""
    return json.loads(json.dumps(space.to_serialized_dict(), default=_json_default))


def _json_default(value: Any) -> Any:
    from bohb_runner.compat import to_native

    native = to_native(value)
    if native is value:
        raise TypeError(f"cannot serialise {type(value).__name__}")
    return native


def describe_space_difference(stored: Mapping[str, Any], requested: Mapping[str, Any]) -> str | None:
    """None when two serialised spaces define the same search space, else what differs first."""
    a, b = space_from_dict(stored), space_from_dict(requested)
    if a == b:
        return None
    names_a, names_b = set(a), set(b)
    if names_a != names_b:
        added, removed = sorted(names_b - names_a), sorted(names_a - names_b)
        parts = [f"adds {', '.join(added)}" if added else "", f"drops {', '.join(removed)}" if removed else ""]
        return "; ".join(p for p in parts if p)
    for name in sorted(names_a):
        if a[name] != b[name]:
            return f"hyperparameter {name!r}: {a[name]} vs {b[name]}"
    return "conditions or forbidden clauses differ"


def space_to_yaml(space: CS.ConfigurationSpace) -> str:
    """The space in ConfigSpace's YAML format, for writing a space file."""
    buffer = io.StringIO()
    yaml.safe_dump(space_to_dict(space), buffer, sort_keys=False)
    return buffer.getvalue()


def study_space(settings: StudySettings) -> CS.ConfigurationSpace:
    """The study's search space, from its settings."""
    return space_from_dict(settings.space, origin=settings.space_file or "study.json")
