"""The Python API a notebook user calls: run a study, read it back."""

from __future__ import annotations

import bohb_runner
from bohb_runner.store.schedule import HyperbandSchedule

from conftest import TESTS, cli_env


def test_run_and_load_a_study_from_python(tmp_path, monkeypatch):
    for key, value in cli_env().items():  # worker processes must find the tests' user_worker module
        monkeypatch.setenv(key, value)
    monkeypatch.syspath_prepend(str(TESTS))
    results = bohb_runner.run_study(
        TESTS / "data" / "quadratic.yaml",
        tmp_path / "nb",
        worker="user_worker:QuadraticWorker",
        workers=1,
        optimizer="hyperband",
        max_budget=3,
        iterations=2,
        progress=False,
    )
    assert len(results.evaluations) == HyperbandSchedule(1, 3, 3).total_jobs("hyperband", 2)
    incumbent = results.incumbent
    assert incumbent.budget == 3.0 and set(incumbent.config) == {"x", "y"}
    again = bohb_runner.load_study(tmp_path / "nb")
    assert again.incumbent == incumbent
    assert again.summary()["incumbent"]["loss"] == incumbent.loss
    assert again.budget_used == sum(e.budget for e in again.evaluations)
