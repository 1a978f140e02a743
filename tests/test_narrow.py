"""``bohb-runner spaces narrow``: on synthetic study directories written with the journal module
(known best configurations, so every bound can be checked), then the CLI end to end, including a
new study on the narrowed space."""

from __future__ import annotations

import json
import math
from pathlib import Path

import ConfigSpace as CS
import pytest

from bohb_runner.analysis.narrow import best_share, choose_budget, narrow_space, write_space
from bohb_runner.errors import UserError
from bohb_runner.store.journal import RESULTS_JOURNAL, Evaluation, JournalWriter, read_evaluations
from bohb_runner.store.settings import StudySettings, write_settings
from bohb_runner.store.spaces import load_space, space_from_dict, space_to_dict

from conftest import SPACE, assert_one_line_error, run_cli

LENET = space_to_dict(load_space(SPACE))


def evaluation(number: int, config: dict, loss: float | None, budget: float = 9.0) -> Evaluation:
    return Evaluation(
        config_id=(number // 100, 0, number % 100),
        budget=budget,
        loss=loss,
        status="ok" if loss is not None else "failed",
        config=config,
        info={"test_error": loss},
        error=None if loss is not None else "diverged",
    )


def lenet_config(i: int, good: bool) -> dict:
    """Good configurations: adam, lr in [1e-3, 1e-2], batch 32..64, filter size 3 or 5; bad ones anything."""
    if good:
        return {
            "lr": 10 ** (-3 + (i % 5) / 4),  # 1e-3 .. 1e-2
            "batch_size": 32 + 8 * (i % 5),  # 32 .. 64
            "num_filters": 16 + (i % 3),
            "filter_size": 3 if i % 2 else 5,
            "optimizer": "adam",
            "dropout": 0.1 + 0.05 * (i % 3),
        }
    return {
        "lr": 10 ** (-4 + 3 * (i % 7) / 6),
        "batch_size": 16 + 16 * (i % 8),
        "num_filters": 8 + 8 * (i % 8),
        "filter_size": 5,
        "optimizer": "sgd",
        "momentum": 0.1 * (i % 10),
        "dropout": 0.05 * (i % 10),
    }


def lenet_evaluations(good: int = 5, bad: int = 20, budget: float = 9.0) -> list[Evaluation]:
    evaluations = [evaluation(i, lenet_config(i, True), 0.05 + 0.001 * i, budget) for i in range(good)]
    evaluations += [evaluation(100 + i, lenet_config(i, False), 0.3 + 0.01 * i, budget) for i in range(bad)]
    return evaluations


def write_study(directory: Path, space: dict, evaluations: list[Evaluation], space_file: str = "spaces/x.yaml") -> Path:
    directory.mkdir(parents=True)
    write_settings(directory, StudySettings(space=space, space_file=space_file))
    with JournalWriter(directory / RESULTS_JOURNAL) as journal:
        for e in evaluations:
            journal.append(e.to_json())
    return directory


def entry(space: dict, name: str) -> dict | None:
    return next((e for e in space["hyperparameters"] if e["name"] == name), None)


# -- choosing the evidence --------------------------------------------------------------------------


def test_the_best_share_on_the_largest_budget_with_enough_evaluations():
    evaluations = lenet_evaluations(budget=9.0) + lenet_evaluations(good=2, bad=40, budget=3.0)
    budget, on_budget, note = choose_budget(evaluations)
    assert budget == 9.0 and len(on_budget) == 25 and note is None
    best = best_share(on_budget, 0.2)
    assert len(best) == 5 and [e.loss for e in best] == sorted(e.loss for e in best)
    assert all(e.config["optimizer"] == "adam" for e in best)
    assert len(best_share(on_budget, 1.0)) == 25 and len(best_share(on_budget, 0.001)) == 1


def test_too_few_on_the_largest_budget_falls_back_with_a_note():
    evaluations = lenet_evaluations(good=1, bad=2, budget=9.0) + lenet_evaluations(good=3, bad=10, budget=3.0)
    evaluations.append(evaluation(999, lenet_config(1, True), None, 9.0))  # failed ones never count
    budget, on_budget, note = choose_budget(evaluations)
    assert budget == 3.0 and len(on_budget) == 13
    assert note == (
        "budget 9 has only 3 successful evaluations (fewer than 5); using budget 3, the largest with enough"
    )
    assert choose_budget(evaluations, budget=9.0)[0] == 9.0  # asked for explicitly
    few = lenet_evaluations(good=1, bad=1, budget=9.0) + lenet_evaluations(good=1, bad=2, budget=1.0)
    budget, _, note = choose_budget(few)
    assert budget == 1.0 and "no budget has 5 successful evaluations; using budget 1 with 3" in note
    with pytest.raises(UserError, match="no successful evaluations"):
        choose_budget([evaluation(1, lenet_config(1, True), None)])


# -- narrowing the lenet space --------------------------------------------------------------------


def test_numeric_ranges_shrink_to_the_best_in_log_space_for_log_ones():
    result = narrow_space(LENET, lenet_evaluations(), top=0.2, margin=0.0)
    space = result.space
    lr, batch, filters, dropout = (entry(space, n) for n in ("lr", "batch_size", "num_filters", "dropout"))
    assert lr["lower"] == pytest.approx(1e-3, rel=1e-3) and lr["upper"] == pytest.approx(1e-2, rel=1e-3)
    assert lr["lower"] <= 1e-3 and lr["upper"] >= 1e-2 and lr["log"] is True and lr["type"] == "uniform_float"
    assert (batch["lower"], batch["upper"], batch["log"], batch["type"]) == (32, 64, True, "uniform_int")
    assert (filters["lower"], filters["upper"]) == (16, 18)
    assert dropout["lower"] == pytest.approx(0.1) and dropout["upper"] == pytest.approx(0.2)
    for hp in (lr, batch, filters, dropout):  # defaults clipped into the new ranges
        assert hp["lower"] <= hp["default_value"] <= hp["upper"]
    assert entry(space, "batch_size")["default_value"] == 64 and entry(space, "num_filters")["default_value"] == 16
    # the margin widens by a share of the original width: in log space for lr (1e-4..1e-1: 3 decades)
    wider = narrow_space(LENET, lenet_evaluations(), top=0.2, margin=0.1).space
    assert math.log10(entry(wider, "lr")["lower"]) == pytest.approx(-3 - 0.3, abs=1e-3)
    assert math.log10(entry(wider, "lr")["upper"]) == pytest.approx(-2 + 0.3, abs=1e-3)
    assert entry(wider, "dropout")["lower"] == pytest.approx(0.05) and entry(wider, "dropout")[
        "upper"
    ] == pytest.approx(0.25)
    assert entry(wider, "dropout")["lower"] >= 0.0


def test_unused_categorical_values_go_and_a_child_that_can_no_longer_be_active_with_them():
    result = narrow_space(LENET, lenet_evaluations(), top=0.2)
    space = result.space
    assert entry(space, "optimizer")["choices"] == ["adam"]
    assert entry(space, "optimizer")["default_value"] == "adam"  # sgd, the old default, was dropped
    assert entry(space, "filter_size")["choices"] == [3, 5]  # both used by the best: kept
    assert entry(space, "momentum") is None and space["conditions"] == []
    changes = dict(result.changes)
    assert (
        changes["momentum"]
        == "removed: active only when optimizer == 'sgd', which none of the best configurations allow"
    )
    assert changes["optimizer"] == "{sgd, adam} -> {adam} (dropped sgd)"
    assert changes["filter_size"] == "{3, 5} unchanged"
    assert changes["lr"].startswith("float log [0.0001, 0.1] -> [")
    narrowed = space_from_dict(space)
    assert set(narrowed) == {"lr", "batch_size", "num_filters", "filter_size", "optimizer", "dropout"}


def test_conditions_and_forbidden_clauses_follow_the_narrowed_values():
    space = CS.ConfigurationSpace(
        {"x": (0.0, 1.0), "kind": ["a", "b", "c", "d"], "depth": (1, 8), "mode": ["u", "v", "w"]}
    )
    space.add(CS.InCondition(space["depth"], space["kind"], ["b", "c", "d"]))
    space.add(
        CS.ForbiddenAndConjunction(
            CS.ForbiddenEqualsClause(space["kind"], "d"), CS.ForbiddenEqualsClause(space["mode"], "u")
        ),
        CS.ForbiddenAndConjunction(
            CS.ForbiddenEqualsClause(space["kind"], "c"), CS.ForbiddenInClause(space["mode"], ["v", "w"])
        ),
    )
    raw = space_to_dict(space)
    best = [
        {"x": 0.2, "kind": "a", "mode": "v"},
        {"x": 0.3, "kind": "c", "depth": 2, "mode": "u"},
        {"x": 0.25, "kind": "c", "depth": 5, "mode": "u"},
    ]
    others = [{"x": 0.9, "kind": "d", "depth": 8, "mode": "w"}] * 9
    evaluations = [evaluation(i, c, 0.1 * i) for i, c in enumerate(best)]
    evaluations += [evaluation(10 + i, c, 1.0 + i) for i, c in enumerate(others)]
    result = narrow_space(raw, evaluations, top=0.25, margin=0.0)
    narrowed = result.space
    assert entry(narrowed, "kind")["choices"] == ["a", "c"]
    assert narrowed["conditions"] == [{"type": "IN", "child": "depth", "parent": "kind", "values": ["c"]}]
    assert (entry(narrowed, "depth")["lower"], entry(narrowed, "depth")["upper"]) == (2, 5)
    assert entry(narrowed, "mode")["choices"] == ["u", "v"]
    # kind == d is gone: its clause is dropped; kind == c and mode in {v, w} loses w
    assert narrowed["forbiddens"] == [
        {
            "type": "AND",
            "clauses": [
                {"type": "EQUALS", "name": "kind", "value": "c"},
                {"type": "IN", "name": "mode", "values": ["v"]},
            ],
        }
    ]
    assert result.notes == [
        "dropped the forbidden clause kind == 'd' and mode == 'u': kind = 'd' is no longer possible"
    ]
    loaded = space_from_dict(narrowed)
    assert loaded.get_default_configuration() is not None


def test_invalid_arguments_are_user_errors():
    evaluations = lenet_evaluations()
    for top in (0, -0.1, 1.5):
        with pytest.raises(UserError, match=r"--top must be in \(0, 1\]"):
            narrow_space(LENET, evaluations, top=top)
    with pytest.raises(UserError, match="--margin must be a non-negative number"):
        narrow_space(LENET, evaluations, margin=-1)


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".json"])
def test_the_written_file_loads_and_says_where_it_came_from(tmp_path, suffix):
    result = narrow_space(LENET, lenet_evaluations(), top=0.2)
    out = tmp_path / "deeper" / f"narrow{suffix}"
    write_space(result.space, out, header="narrowed from a test")
    loaded = load_space(out)
    assert loaded == space_from_dict(result.space)
    if suffix == ".json":
        assert json.loads(out.read_text())["name"] == "lenet-narrow"
    else:
        assert out.read_text().startswith("# narrowed from a test\n")
    with pytest.raises(UserError, match=r"must end in \.yaml, \.yml or \.json"):
        write_space(result.space, tmp_path / "narrow.txt")
    with pytest.raises(UserError, match="cannot write"):
        write_space(result.space, out / "inside-a-file.yaml")


# -- the command ------------------------------------------------------------------------------------


def test_cli_narrows_a_study_and_the_result_runs_a_new_study(tmp_path):
    space = space_to_dict(load_space(Path(__file__).parent / "data" / "quadratic.yaml"))
    points = [(0.1 * i, 0.1 * j) for i in range(11) for j in range(11)]
    evaluations = [
        evaluation(n, {"x": x, "y": y}, (x - 0.3) ** 2 + (y - 0.6) ** 2 + 1 / 9) for n, (x, y) in enumerate(points)
    ]
    study = write_study(tmp_path / "broad", space, evaluations, space_file="tests/data/quadratic.yaml")
    out = tmp_path / "narrow.yaml"
    result = run_cli("spaces", "narrow", study, "--top", "0.05", "--margin", "0", "--out", out)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == (
        f"narrowed tests/data/quadratic.yaml to the best 5%: 7 of 121 successful evaluations on budget 9 (study {study})"
    )
    assert lines[1].split() == ["x", "float", "[0,", "1]", "->", "[0.2,", "0.4]", "(20%", "of", "the", "range)"]
    assert lines[2].split() == ["y", "float", "[0,", "1]", "->", "[0.5,", "0.7]", "(20%", "of", "the", "range)"]
    assert lines[-1] == f"wrote {out}"
    narrowed = load_space(out)
    assert (narrowed["x"].lower, narrowed["x"].upper) == (0.2, 0.4)
    # a second, finer study on the narrowed space
    finer = run_cli(
        "run", "--space", out, "--study-dir", tmp_path / "finer", "--worker", "user_worker:QuadraticWorker",
        "--max-budget", 3, "--iterations", 1, "--no-progress", "--ping-interval", 1, timeout=120,
    )  # fmt: skip
    assert finer.returncode == 0, finer.stderr
    for e in read_evaluations(tmp_path / "finer"):
        assert 0.2 <= e.config["x"] <= 0.4 and 0.5 <= e.config["y"] <= 0.7


def test_cli_errors_are_one_line(tmp_path):
    empty = write_study(tmp_path / "empty", LENET, [])
    assert_one_line_error(
        run_cli("spaces", "narrow", empty, "--out", tmp_path / "n.yaml"), "no successful evaluations yet"
    )
    assert not (tmp_path / "n.yaml").exists()
    study = write_study(tmp_path / "s", LENET, lenet_evaluations())
    assert_one_line_error(run_cli("spaces", "narrow", study, "--top", "0", "--out", tmp_path / "n.yaml"), "--top")
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    assert_one_line_error(
        run_cli("spaces", "narrow", study, "--out", blocked / "n.yaml"), "cannot write", str(blocked / "n.yaml")
    )
