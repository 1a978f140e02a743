"""Search-space files: the shipped ones load; every broken one is refused with file, hyperparameter and why."""

from __future__ import annotations

from pathlib import Path

import ConfigSpace as CS
import pytest
import yaml

from bohb_runner.errors import SpaceError
from bohb_runner.store.spaces import (
    check_space_for_optimizer,
    check_space_for_worker,
    load_space,
    space_from_dict,
    space_to_dict,
)
from bohb_runner.worker.api import HyperparameterSpec

from conftest import PROJECT, SPACE


def test_lenet_space_has_the_users_hyperparameters_and_a_condition():
    space = load_space(SPACE)
    lr, bs, nf, fs = space["lr"], space["batch_size"], space["num_filters"], space["filter_size"]
    assert (lr.lower, lr.upper, lr.log) == (1e-4, 1e-1, True)
    assert (bs.lower, bs.upper, bs.log) == (16, 128, True) and isinstance(bs, CS.UniformIntegerHyperparameter)
    assert (nf.lower, nf.upper, nf.log) == (8, 64, True) and isinstance(nf, CS.UniformIntegerHyperparameter)
    assert set(fs.choices) == {3, 5}
    assert "momentum" in space
    conditions = space.conditions
    assert any(c.child.name == "momentum" and c.parent.name == "optimizer" and c.value == "sgd" for c in conditions)


@pytest.mark.parametrize("name", ["lenet.yaml", "lenet-full.yaml"])
def test_shipped_spaces_round_trip(name):
    space = load_space(PROJECT / "spaces" / name)
    assert space_from_dict(space_to_dict(space)) == space


def test_json_serialisation_is_accepted(tmp_path):
    path = tmp_path / "space.json"
    load_space(SPACE).to_json(path)
    assert load_space(path) == load_space(SPACE)


def _write(tmp_path: Path, mutate) -> Path:
    data = yaml.safe_load(SPACE.read_text())
    mutate(data)
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _hp(data, name):
    return next(h for h in data["hyperparameters"] if h["name"] == name)


BROKEN = {
    "lower above upper": (
        lambda d: _hp(d, "lr").update(lower=0.5, upper=0.1),
        ["'lr'", "lower bound 0.5 must be smaller than upper bound 0.1"],
    ),
    "log range at zero": (lambda d: _hp(d, "lr").update(lower=0.0), ["'lr'", "log-scale range must be positive"]),
    "default outside": (
        lambda d: _hp(d, "num_filters").update(default_value=100),
        ["'num_filters'", "outside [8, 64]"],
    ),
    "missing bound": (lambda d: _hp(d, "dropout").pop("upper"), ["'dropout'", "'upper' must be a finite number"]),
    "unknown type": (lambda d: _hp(d, "lr").update(type="lognormal"), ["'lr'", "unknown type 'lognormal'"]),
    "empty choices": (lambda d: _hp(d, "optimizer").update(choices=[]), ["'optimizer'", "non-empty 'choices'"]),
    "fractional int bound": (lambda d: _hp(d, "batch_size").update(lower=16.5), ["'batch_size'", "whole numbers"]),
    "condition on unknown": (
        lambda d: d["conditions"][0].update(parent="solver"),
        ["unknown parent hyperparameter 'solver'"],
    ),
    "duplicate name": (lambda d: d["hyperparameters"].append(dict(_hp(d, "lr"))), ["'lr' is defined twice"]),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_space_files_are_refused_with_reason(tmp_path, case):
    mutate, fragments = BROKEN[case]
    path = _write(tmp_path, mutate)
    with pytest.raises(SpaceError) as info:
        load_space(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path))
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize(
    "text,fragment",
    [("a: [b\n", "does not parse"), ("- just\n- a list\n", "not a ConfigSpace file"), ("", "not a ConfigSpace file")],
)
def test_unparsable_files(tmp_path, text, fragment):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(SpaceError, match=fragment):
        load_space(path)


def test_unparsable_json(tmp_path):
    path = tmp_path / "space.json"
    path.write_text("{bad")
    with pytest.raises(SpaceError, match="does not parse"):
        load_space(path)


def test_missing_file(tmp_path):
    with pytest.raises(SpaceError, match="no such search-space file"):
        load_space(tmp_path / "nope.yaml")


SPECS = {
    "lr": HyperparameterSpec("lr", "float", 0.01, "learning rate", lower=0.0, upper=10.0, lower_exclusive=True),
    "batch_size": HyperparameterSpec("batch_size", "int", 64, "batch size", lower=1, upper=65536),
    "optimizer": HyperparameterSpec("optimizer", "categorical", "sgd", "optimizer", choices=("sgd", "adam")),
    "filter_size": HyperparameterSpec("filter_size", "int", 5, "kernel size", lower=1, upper=15),
}


def _space(*hps):
    space = CS.ConfigurationSpace()
    space.add(list(hps))
    return space


def test_unknown_hyperparameter_for_worker_is_refused():
    space = _space(CS.Float("lr", (1e-4, 1e-1)), CS.Float("learning_rate_decay", (0.1, 0.9)))
    with pytest.raises(SpaceError, match="'learning_rate_decay' is not understood by my:Worker") as info:
        check_space_for_worker(space, SPECS, "s.yaml", "my:Worker")
    assert "lr" in str(info.value)


@pytest.mark.parametrize(
    "hp,fragment",
    [
        (CS.Integer("batch_size", (0, 128)), "lower bound 0 is impossible for the worker (must be >= 1)"),
        (CS.Float("lr", (0.0, 0.1)), "must be > 0"),
        (CS.Categorical("optimizer", ["sgd", "rmsprop"]), "'rmsprop' is not one of"),
        (CS.Categorical("filter_size", [3, 5, 17]), "upper bound 17 is impossible"),
        (CS.Float("batch_size", (16.0, 128.0)), "must be an integer hyperparameter"),
        (CS.Categorical("filter_size", ["small", "large"]), "must be numeric"),
    ],
)
def test_values_the_worker_cannot_handle_are_refused(hp, fragment):
    with pytest.raises(SpaceError, match="s.yaml: hyperparameter") as info:
        check_space_for_worker(_space(hp), SPECS, "s.yaml", "my:Worker")
    assert fragment in str(info.value)


def test_worker_without_declaration_accepts_any_space():
    check_space_for_worker(_space(CS.Float("anything", (0, 1))), None, "s.yaml", "my:Worker")


def test_bohb_refuses_ordinal():
    space = _space(CS.OrdinalHyperparameter("depth", [1, 2, 3]))
    with pytest.raises(SpaceError, match="ordinal"):
        check_space_for_optimizer(space, "bohb", "s.yaml")
    check_space_for_optimizer(space, "hyperband", "s.yaml")
