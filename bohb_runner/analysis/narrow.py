"""``bohb-runner spaces narrow``: a search space restricted to where a study's best configurations lie.

The usual second step after a broad study is a finer one in the promising region. Doing that by
hand means reading the results, guessing ranges and editing YAML, and it is easy to cut away a
value the best configurations need or to leave a condition pointing at a removed value. Here:

* the best ``top`` share of the successful evaluations on one budget are the evidence: the
  largest budget with at least ``min_evaluations`` of them (a smaller one, with a note, when the
  largest has too few: the few configurations promoted to the top rung are the survivors of
  successive halving, but too few to draw ranges from);
* numeric ranges shrink to the smallest interval holding the best values (in log space for
  log hyperparameters), widened by ``margin`` times the original width on each side and
  clipped to the original bounds; type, log flag and distribution parameters stay, defaults
  are clipped into the new range;
* categorical values that none of the best configurations uses are dropped (at least one
  stays); ordinal sequences shrink to the span the best use;
* a conditional hyperparameter whose condition can no longer hold (its parent's activating
  values were dropped) is removed; conditions and forbidden clauses that refer to removed
  values are adjusted or dropped; every such change is reported as a note.

The result is ConfigSpace's own serialisation, so it loads with
:func:`bohb_runner.store.spaces.load_space` and starts a new study like any other space file.
"""

from __future__ import annotations

import copy
import json
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bohb_runner.errors import SpaceError, UserError
from bohb_runner.store.files import write_atomically
from bohb_runner.store.journal import Evaluation
from bohb_runner.store.spaces import space_from_dict, space_to_dict, space_to_yaml

DEFAULT_TOP = 0.2
DEFAULT_MARGIN = 0.05
MIN_EVALUATIONS = 5
# with no margin, a range every best configuration agrees on would be empty: this much is kept
DEGENERATE_WIDTH = 0.01
SUFFIXES = (".yaml", ".yml", ".json")

_NUMERIC = {"uniform_float", "uniform_int", "normal_float", "normal_int", "beta_float", "beta_int"}


@dataclass
class Narrowing:
    """A narrowed space and how it came about (for the summary the CLI prints)."""

    space: dict[str, Any]
    budget: float
    chosen: list[Evaluation]
    considered: int
    changes: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def choose_budget(
    evaluations: list[Evaluation], min_evaluations: int = MIN_EVALUATIONS, budget: float | None = None
) -> tuple[float, list[Evaluation], str | None]:
    """The budget whose successful evaluations the narrowing rests on, those evaluations, and a
    note when it is not the largest budget (or has fewer than ``min_evaluations``)."""
    ok: dict[float, dict[tuple[int, int, int], Evaluation]] = {}
    for evaluation in evaluations:
        if evaluation.ok:
            ok.setdefault(evaluation.budget, {})[tuple(evaluation.config_id)] = evaluation
    if not ok:
        raise UserError("no successful evaluations to narrow the space from")
    if budget is not None:
        match = [b for b in ok if math.isclose(b, budget)]
        if not match:
            raise UserError(
                f"--budget {budget:g}: no successful evaluations on it (budgets: {', '.join(f'{b:g}' for b in sorted(ok))})"
            )
        return match[0], list(ok[match[0]].values()), None
    budgets = sorted(ok, reverse=True)
    largest = budgets[0]
    enough = [b for b in budgets if len(ok[b]) >= min_evaluations]
    if enough:
        chosen = enough[0]
        note = None
        if chosen != largest:
            note = (
                f"budget {largest:g} has only {len(ok[largest])} successful evaluations (fewer than {min_evaluations}); "
                f"using budget {chosen:g}, the largest with enough"
            )
        return chosen, list(ok[chosen].values()), note
    chosen = max(budgets, key=lambda b: (len(ok[b]), b))
    note = (
        f"no budget has {min_evaluations} successful evaluations; using budget {chosen:g} with {len(ok[chosen])}:"
        " the narrowed space rests on very few points"
    )
    return chosen, list(ok[chosen].values()), note


def best_share(evaluations: list[Evaluation], top: float) -> list[Evaluation]:
    """The best ``top`` share (at least one) by loss; ties go to the lower configuration id."""
    if not 0 < top <= 1:
        raise UserError(f"--top must be in (0, 1], got {top:g}")
    ranked = sorted(evaluations, key=lambda e: (e.loss, tuple(e.config_id)))
    count = max(1, math.ceil(top * len(ranked) - 1e-9))
    return ranked[:count]


def narrow_space(
    space: dict[str, Any],
    evaluations: list[Evaluation],
    *,
    top: float = DEFAULT_TOP,
    margin: float = DEFAULT_MARGIN,
    min_evaluations: int = MIN_EVALUATIONS,
    budget: float | None = None,
) -> Narrowing:
    """Narrow a serialised space (as in ``study.json``) to the best ``top`` of ``evaluations``."""
    if not 0 < top <= 1:
        raise UserError(f"--top must be in (0, 1], got {top:g}")
    if not (math.isfinite(margin) and margin >= 0):
        raise UserError(f"--margin must be a non-negative number, got {margin:g}")
    if min_evaluations < 1:
        raise UserError(f"--min-evaluations must be at least 1, got {min_evaluations}")
    chosen_budget, on_budget, note = choose_budget(evaluations, min_evaluations, budget)
    chosen = best_share(on_budget, top)
    result = Narrowing(copy.deepcopy(space), chosen_budget, chosen, len(on_budget))
    if note:
        result.notes.append(note)
    configs = [e.config for e in chosen]
    for entry in result.space["hyperparameters"]:
        seen = [c[entry["name"]] for c in configs if c.get(entry["name"]) is not None]
        result.changes.append((entry["name"], _narrow_entry(entry, seen, margin)))
    _prune_conditions(result)
    _prune_forbiddens(result)
    if result.space.get("name"):
        result.space["name"] = f"{result.space['name']}-narrow"
    _check_loads(result)
    return result


# -- hyperparameters ------------------------------------------------------------------------------


def _narrow_entry(entry: dict[str, Any], seen: list[Any], margin: float) -> str:
    """Narrow one serialised hyperparameter in place; returns what changed, for the summary."""
    kind = entry["type"]
    if kind == "constant":
        return f"constant {entry['value']!r}"
    if not seen:
        return f"{_describe(entry)} unchanged (inactive in all of the best configurations)"
    if kind == "categorical":
        return _narrow_categorical(entry, seen)
    if kind == "ordinal":
        return _narrow_ordinal(entry, seen)
    if kind in _NUMERIC:
        return _narrow_numeric(entry, seen, margin)
    return f"{kind}: unchanged"


def _narrow_categorical(entry: dict[str, Any], seen: list[Any]) -> str:
    before = list(entry["choices"])
    counts = Counter(json.dumps(v) for v in seen)
    keep = [c for c in before if json.dumps(c) in counts]
    if not keep:  # values of another type than the choices (a hand-edited journal): keep all
        return f"{_describe(entry)} unchanged"
    entry["choices"] = keep
    if entry.get("weights"):
        entry["weights"] = [w for c, w in zip(before, entry["weights"], strict=True) if c in keep]
    if entry.get("default_value") not in keep:
        entry["default_value"] = max(keep, key=lambda c: counts[json.dumps(c)])
    dropped = [c for c in before if c not in keep]
    if not dropped:
        return f"{_values(before)} unchanged"
    return f"{_values(before)} -> {_values(keep)} (dropped {', '.join(map(str, dropped))})"


def _narrow_ordinal(entry: dict[str, Any], seen: list[Any]) -> str:
    before = list(entry["sequence"])
    positions = [before.index(v) for v in seen if v in before]
    if not positions:
        return f"{_describe(entry)} unchanged"
    keep = before[min(positions) : max(positions) + 1]
    entry["sequence"] = keep
    if entry.get("default_value") not in keep:
        entry["default_value"] = (
            keep[0] if before.index(entry.get("default_value", keep[0])) < min(positions) else keep[-1]
        )
    if keep == before:
        return f"ordinal {_values(before)} unchanged"
    return f"ordinal {_values(before)} -> {_values(keep)}"


def _narrow_numeric(entry: dict[str, Any], seen: list[Any], margin: float) -> str:
    lower, upper = float(entry["lower"]), float(entry["upper"])
    is_int = entry["type"].endswith("_int")
    log = bool(entry.get("log"))
    forward: Callable[[float], float] = math.log if log else float
    backward: Callable[[float], float] = math.exp if log else float
    t_lower, t_upper = forward(lower), forward(upper)
    width = t_upper - t_lower
    low, high = forward(min(seen)), forward(max(seen))
    widen = margin
    if high - low <= 0 and widen == 0 and not is_int:
        widen = DEGENERATE_WIDTH
    low, high = max(t_lower, low - widen * width), min(t_upper, high + widen * width)
    new_lower, new_upper = backward(low), backward(high)
    if is_int:
        new_lower = max(int(lower), math.floor(new_lower + 1e-9))
        new_upper = min(int(upper), math.ceil(new_upper - 1e-9))
        if new_lower >= new_upper:  # a range needs two values: take a neighbour inside the bounds
            if new_upper < upper:
                new_upper += 1
            else:
                new_lower -= 1
    else:
        new_lower = max(lower, _round_significant(new_lower, down=True))
        new_upper = min(upper, _round_significant(new_upper, down=False))
    entry["lower"], entry["upper"] = new_lower, new_upper
    default = entry.get("default_value")
    if isinstance(default, (int, float)):
        clipped = min(new_upper, max(new_lower, default))
        entry["default_value"] = int(round(clipped)) if is_int else float(clipped)
    before = f"[{_number(lower)}, {_number(upper)}]"
    after = f"[{_number(new_lower)}, {_number(new_upper)}]"
    label = ("int" if is_int else "float") + (" log" if log else "")
    if (new_lower, new_upper) == (lower, upper):
        return f"{label} {before} unchanged"
    share = (forward(new_upper) - forward(new_lower)) / width if width > 0 else 1.0
    return f"{label} {before} -> {after} ({share:.0%} of the {'log-' if log else ''}range)"


def _round_significant(value: float, down: bool, digits: int = 4) -> float:
    """``value`` rounded outwards to ``digits`` significant digits, so the file stays readable
    (floating-point noise in the last place is rounded to the nearest instead)."""
    if value == 0 or not math.isfinite(value):
        return value
    nearest = float(f"{value:.{digits}g}")
    if math.isclose(nearest, value, rel_tol=1e-9):  # 0.7000000000000001 is 0.7, not 0.7001
        return nearest
    scale = 10 ** (digits - 1 - math.floor(math.log10(abs(value))))
    rounded = (math.floor if down else math.ceil)(value * scale) / scale
    return float(rounded)


def _number(value: float) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _values(values: list[Any]) -> str:
    return "{" + ", ".join(map(str, values)) + "}"


def _describe(entry: dict[str, Any]) -> str:
    if entry["type"] == "categorical":
        return _values(entry["choices"])
    if entry["type"] == "ordinal":
        return "ordinal " + _values(entry["sequence"])
    return f"[{_number(entry['lower'])}, {_number(entry['upper'])}]"


# -- conditions and forbidden clauses ---------------------------------------------------------------


def _domain(entry: dict[str, Any]) -> Callable[[Any], bool]:
    """Whether a value is still possible for the (narrowed) hyperparameter."""
    if entry["type"] == "categorical":
        return lambda v: v in entry["choices"]
    if entry["type"] == "ordinal":
        return lambda v: v in entry["sequence"]
    if entry["type"] == "constant":
        return lambda v: v == entry["value"]
    return lambda v: isinstance(v, (int, float)) and entry["lower"] <= v <= entry["upper"]


_NEVER = None  # a condition that can no longer hold


def _simplify_condition(condition: dict[str, Any], entries: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The condition restricted to the narrowed space, or ``_NEVER`` if it can no longer hold."""
    kind = condition["type"]
    if kind in ("AND", "OR"):
        parts = [_simplify_condition(c, entries) for c in condition["conditions"]]
        if kind == "AND":
            if any(p is _NEVER for p in parts):
                return _NEVER
        else:
            parts = [p for p in parts if p is not _NEVER]
            if not parts:
                return _NEVER
            if len(parts) == 1:
                return parts[0]
        return {**condition, "conditions": parts}
    parent = entries.get(condition["parent"])
    if parent is None:
        return _NEVER
    possible = _domain(parent)
    if kind == "EQ":
        return condition if possible(condition["value"]) else _NEVER
    if kind == "IN":
        values = [v for v in condition["values"] if possible(v)]
        return {**condition, "values": values} if values else _NEVER
    if kind == "NEQ":
        only = parent.get("choices") or parent.get("sequence")
        return _NEVER if only is not None and list(only) == [condition["value"]] else condition
    if kind in ("GT", "LT") and parent["type"] in _NUMERIC:
        if kind == "GT" and parent["upper"] <= condition["value"]:
            return _NEVER
        if kind == "LT" and parent["lower"] >= condition["value"]:
            return _NEVER
    return condition


def _condition_text(condition: dict[str, Any]) -> str:
    kind = condition["type"]
    if kind in ("AND", "OR"):
        return f" {'and' if kind == 'AND' else 'or'} ".join(_condition_text(c) for c in condition["conditions"])
    operator = {"EQ": "==", "NEQ": "!=", "IN": "in", "GT": ">", "LT": "<"}.get(kind, kind)
    value = condition.get("value", condition.get("values"))
    return f"{condition['parent']} {operator} {value!r}"


def _prune_conditions(result: Narrowing) -> None:
    """Adjust conditions to the narrowed parents; remove children that can never be active."""
    space = result.space
    while True:
        entries = {e["name"]: e for e in space["hyperparameters"]}
        kept, removed = [], []
        for condition in space.get("conditions", []) or []:
            if condition["child"] not in entries:
                continue
            simplified = _simplify_condition(condition, entries)
            if simplified is _NEVER:
                removed.append((condition["child"], _condition_text(condition)))
                continue
            if simplified is not condition and simplified.get("child") is None:
                simplified = {**simplified, "child": condition["child"]}
            kept.append(simplified)
        space["conditions"] = kept
        if not removed:
            return
        for child, text in removed:
            space["hyperparameters"] = [e for e in space["hyperparameters"] if e["name"] != child]
            result.changes = [(n, c) for n, c in result.changes if n != child]
            result.changes.append(
                (child, f"removed: active only when {text}, which none of the best configurations allow")
            )


def _simplify_forbidden(clause: dict[str, Any], entries: dict[str, dict[str, Any]]) -> tuple[dict | None, str]:
    """The clause for the narrowed space, or (None, why) when it can never apply any more."""
    kind = clause["type"]
    if kind == "AND":
        parts = []
        for sub in clause["clauses"]:
            simplified, why = _simplify_forbidden(sub, entries)
            if simplified is None:
                return None, why
            parts.append(simplified)
        return {**clause, "clauses": parts}, ""
    names = [clause[k] for k in ("name", "left", "right") if k in clause]
    for name in names:
        if name not in entries:
            return None, f"{name} was removed"
    if kind == "EQUALS":
        if not _domain(entries[clause["name"]])(clause["value"]):
            return None, f"{clause['name']} = {clause['value']!r} is no longer possible"
        return clause, ""
    if kind == "IN":
        values = [v for v in clause["values"] if _domain(entries[clause["name"]])(v)]
        if not values:
            return None, f"{clause['name']} in {clause['values']!r} is no longer possible"
        return {**clause, "values": values}, ""
    return clause, ""


def _prune_forbiddens(result: Narrowing) -> None:
    entries = {e["name"]: e for e in result.space["hyperparameters"]}
    kept = []
    for clause in result.space.get("forbiddens", []) or []:
        simplified, why = _simplify_forbidden(clause, entries)
        if simplified is None:
            result.notes.append(f"dropped the forbidden clause {_forbidden_text(clause)}: {why}")
        else:
            kept.append(simplified)
    result.space["forbiddens"] = kept


def _forbidden_text(clause: dict[str, Any]) -> str:
    kind = clause["type"]
    if kind == "AND":
        return " and ".join(_forbidden_text(c) for c in clause["clauses"])
    if kind == "EQUALS":
        return f"{clause['name']} == {clause['value']!r}"
    if kind == "IN":
        return f"{clause['name']} in {clause['values']!r}"
    return f"{clause.get('left')} {kind.removeprefix('RELATION_').lower()} {clause.get('right')}"


def _check_loads(result: Narrowing) -> None:
    """The narrowed space must be a valid ConfigSpace space; a default that a forbidden clause
    excludes is replaced by the best configuration's value (which no clause excludes)."""
    try:
        space_from_dict(result.space, origin="the narrowed space")
        return
    except SpaceError as first:
        best = result.chosen[0].config
        for entry in result.space["hyperparameters"]:
            if entry["name"] in best and entry["type"] != "constant":
                entry["default_value"] = best[entry["name"]]
        try:
            space_from_dict(result.space, origin="the narrowed space")
        except SpaceError:
            raise first from None
        result.notes.append("defaults set to the best configuration's values (the clipped defaults were forbidden)")


# -- output ----------------------------------------------------------------------------------------


def write_space(space: dict[str, Any], out: Path, header: str = "") -> None:
    """Write ConfigSpace's YAML or JSON (by the suffix of ``out``), atomically."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in SUFFIXES:
        raise UserError(f"--out {out}: the file name must end in .yaml, .yml or .json (ConfigSpace's formats)")
    loaded = space_from_dict(space, origin=str(out))  # what ConfigSpace itself writes back
    if suffix == ".json":
        text = json.dumps(space_to_dict(loaded), indent=2) + "\n"
    else:
        comment = "".join(f"# {line}\n" for line in header.splitlines()) if header else ""
        text = comment + space_to_yaml(loaded)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(out, text)
    except OSError as exc:
        raise UserError(f"--out {out}: cannot write ({exc.strerror or exc})") from None
