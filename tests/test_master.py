"""The study master on a real Pyro4 nameserver and dispatcher on loopback, with in-process workers.

These cover the master's logic quickly; the end-to-end tests run the same code in real
worker processes through the CLI.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hpbandster.core.result import json_result_logger, logged_results_to_HBS_result
from hpbandster.core.worker import Worker

from bohb_runner import compat
from bohb_runner.master.cleanup import ArtifactCleanup
from bohb_runner.master.optimizers import build_optimizer
from bohb_runner.master.progress import ProgressTracker
from bohb_runner.master.run import _Reporter
from bohb_runner.master.study_master import SilentObserver, StudyFailed
from bohb_runner.store.journal import JournalWriter, read_evaluations, read_sampled_configs
from bohb_runner.store.schedule import HyperbandSchedule
from bohb_runner.store.settings import StudySettings
from bohb_runner.store.spaces import load_space, space_to_dict
from bohb_runner.wire.discovery import NameserverAddress
from bohb_runner.wire.nameserver import StudyNameserver
from bohb_runner.wire.pyro import configure_pyro
from bohb_runner.worker.runtime import guard_compute, serve

from conftest import TESTS, wait_until

QUADRATIC = TESTS / "data" / "quadratic.yaml"


class ZeroCostWorker(Worker):
    def compute(self, config_id, config, budget, working_directory, **kwargs):
        loss = np.float64((config["x"] - 0.3) ** 2 + (config["y"] - 0.6) ** 2 + 1.0 / budget)
        return {"loss": loss, "info": {"curve": np.array([1.0, loss])}}


class MisbehavingWorker(Worker):
    def compute(self, config_id, config, budget, working_directory, **kwargs):
        if config["x"] < 0.25:
            raise RuntimeError("boom")
        if config["x"] < 0.5:
            return {"loss": np.float64("nan"), "info": None}
        if config["x"] < 0.75:
            return {"accuracy": 0.9}
        return {"loss": 0.1, "info": {"x": np.int64(1)}}


class Study:
    """Nameserver, in-process workers and an optimizer for one test."""

    def __init__(
        self,
        tmp_path: Path,
        worker_class=ZeroCostWorker,
        workers: int = 2,
        observer=None,
        result_logger=None,
        **settings,
    ):
        compat.silence_configspace_deprecations()
        configure_pyro()
        self.dir = tmp_path
        space = load_space(QUADRATIC)
        self.settings = StudySettings(space=space_to_dict(space), **settings)
        self.settings.stamp()
        self.nameserver = StudyNameserver()
        host, port = self.nameserver.start()
        address = NameserverAddress(host, port, self.settings.run_id, "test", 0, time.time())
        self.workers = []
        for i in range(workers):
            worker = worker_class(run_id=self.settings.run_id, id=i, logger=logging.getLogger(f"test.worker{i}"))
            guard_compute(worker)
            threading.Thread(target=serve, args=(worker, address), daemon=True).start()
            self.workers.append(worker)
        self.results_journal = JournalWriter(tmp_path / "results.jsonl")
        self.configs_journal = JournalWriter(tmp_path / "configs.jsonl")
        self.master = build_optimizer(
            self.settings,
            space,
            schedule=HyperbandSchedule(self.settings.min_budget, self.settings.max_budget, self.settings.eta),
            results_journal=self.results_journal,
            configs_journal=self.configs_journal,
            working_directory=str(tmp_path / "work"),
            nameserver=host,
            nameserver_port=port,
            ping_interval=2,
            observer=observer,
            result_logger=result_logger or json_result_logger(str(tmp_path / "hpbandster"), overwrite=True),
        )

    def run(self, min_workers: int | None = None):
        try:
            return self.master.run(self.settings.iterations, min_n_workers=min_workers or len(self.workers))
        finally:
            self.master.shutdown(shutdown_workers=True)
            self.nameserver.shutdown()
            self.results_journal.close()
            self.configs_journal.close()


@pytest.mark.parametrize("optimizer", ["bohb", "hyperband", "randomsearch"])
def test_journal_holds_every_evaluation_hpbandster_recorded(tmp_path, optimizer):
    study = Study(tmp_path, optimizer=optimizer, max_budget=9, iterations=4)
    iterations = study.run()
    evaluations = read_evaluations(tmp_path)
    schedule = HyperbandSchedule(1, 9, 3)
    assert len(evaluations) == schedule.total_jobs(optimizer, 4)
    # hpbandster's own record: the iterations' data and its json_result_logger
    recorded = {(cid, b): r["loss"] for it in iterations for cid, d in it.data.items() for b, r in d.results.items()}
    assert {(e.config_id, e.budget): e.loss for e in evaluations} == recorded
    hpb = logged_results_to_HBS_result(str(tmp_path / "hpbandster"))
    assert len(hpb.get_all_runs()) == len(evaluations)
    assert all(e.ok and isinstance(e.info["curve"], list) for e in evaluations)
    assert {s.config_id for s in read_sampled_configs(tmp_path)} == {e.config_id for e in evaluations}


def test_bohb_makes_model_based_picks(tmp_path):
    study = Study(tmp_path, optimizer="bohb", max_budget=9, iterations=8, workers=1)
    study.run()
    picks = [s.config_info.get("model_based_pick") for s in read_sampled_configs(tmp_path)]
    assert picks.count(True) >= 10, picks


def test_same_seed_same_choices_with_one_worker(tmp_path):
    def sampled(sub, seed):
        (tmp_path / sub).mkdir()
        Study(tmp_path / sub, optimizer="bohb", max_budget=9, iterations=6, workers=1, seed=seed).run()
        return [(s.config_id, s.config) for s in read_sampled_configs(tmp_path / sub)]

    first = sampled("a", 7)
    assert sampled("b", 7) == first
    assert sampled("c", 8) != first


def test_failed_evaluations_are_recorded_and_the_study_goes_on(tmp_path):
    study = Study(tmp_path, worker_class=MisbehavingWorker, optimizer="hyperband", max_budget=3, iterations=3)
    study.run()
    evaluations = read_evaluations(tmp_path)
    assert len(evaluations) == HyperbandSchedule(1, 3, 3).total_jobs("hyperband", 3)
    for e in evaluations:
        x = e.config["x"]
        if x < 0.25:
            assert e.status == "failed" and "RuntimeError: boom" in e.error
        elif x < 0.5:
            assert e.status == "failed" and "nan" in e.error and e.loss is None
        elif x < 0.75:
            assert e.status == "failed" and "must return a dict with 'loss'" in e.error
        else:
            assert e.ok and e.info == {"x": 1}


class _FailingJournal(JournalWriter):
    def write(self, record):
        raise OSError(28, "No space left on device")


def test_a_failure_in_result_handling_stops_the_study_instead_of_hanging(tmp_path):
    study = Study(tmp_path, optimizer="hyperband", max_budget=9, iterations=2)
    study.master.results_journal = _FailingJournal(tmp_path / "broken.jsonl")
    with pytest.raises(StudyFailed, match="No space left on device"):
        study.run()


# -- blocking I/O stays outside the master's lock ---------------------------------------------


class _HangingLog(json_result_logger):
    """hpbandster's live log on a shared file system that hangs (which cannot exist here): the
    first result's append waits for ``gate``."""

    def __init__(self, directory: Path, gate: threading.Event) -> None:
        super().__init__(str(directory), overwrite=True)
        self.gate = gate
        self.calls = 0

    def __call__(self, job):
        self.calls += 1
        if self.calls == 1:
            assert self.gate.wait(120)
        super().__call__(job)


class _HangingObserver(SilentObserver):
    """An observer whose first report waits for ``gate``; records what it is told, in order."""

    def __init__(self, gate: threading.Event) -> None:
        self.gate = gate
        self.finished: list[tuple] = []

    def evaluation_finished(self, evaluation):
        if not self.finished:
            assert self.gate.wait(120)
        self.finished.append((evaluation.config_id, evaluation.budget))


class _HangingCleanup(ArtifactCleanup):
    """Artifact clean-up on a file system where ``rmtree`` hangs (cannot exist here): the first
    removal waits for ``gate``."""

    def __init__(self, study_dir: Path, gate: threading.Event) -> None:
        super().__init__(study_dir)
        self.gate = gate
        self.removed: list[tuple] = []

    def remove(self, config_id):
        if not self.removed:
            assert self.gate.wait(120)
        self.removed.append(tuple(config_id))
        super().remove(config_id)


def registered_results(master) -> int:
    """Results hpbandster's iterations hold; -1 when the master's lock stays taken for 5 s."""
    if not master.thread_cond.acquire(timeout=5):
        return -1
    try:
        return sum(len(datum.results) for iteration in master.iterations for datum in iteration.data.values())
    finally:
        master.thread_cond.release()


@pytest.mark.parametrize("slow", ["hpbandster log", "observer", "artifact clean-up"])
def test_a_hanging_log_observer_or_clean_up_does_not_hold_up_results(tmp_path, slow):
    gate = threading.Event()
    log = _HangingLog(tmp_path / "hpbandster", gate) if slow == "hpbandster log" else None
    observer = _HangingObserver(gate) if slow == "observer" else None
    cleanup = _HangingCleanup(tmp_path, gate) if slow == "artifact clean-up" else None
    if cleanup is not None:
        tracker = ProgressTracker("hyperband", 2, HyperbandSchedule(1, 9, 3).total_jobs("hyperband", 2))
        observer = _Reporter(tracker, cleanup)
    study = Study(tmp_path, optimizer="hyperband", max_budget=9, iterations=2, observer=observer, result_logger=log)
    total = HyperbandSchedule(1, 9, 3).total_jobs("hyperband", 2)  # 9+3+1 and 3+1 jobs
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            study.run()
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            outcome.append(exc)

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    try:
        # iteration 0 is finished (its clean-up is due) and iteration 1 runs while the I/O hangs
        wait_until(lambda: registered_results(study.master) in (-1, total), 60, "every result to be registered")
        assert registered_results(study.master) == total, "the master's lock was held across the hanging I/O"
        assert len(read_evaluations(tmp_path)) == total
        assert runner.is_alive()  # the run waits for its reports before it returns
    finally:
        gate.set()
        runner.join(60)
    assert outcome == [None]
    journal = [(e.config_id, e.budget) for e in read_evaluations(tmp_path)]
    # the reports came after all, in the journal's order
    live = logged_results_to_HBS_result(str(tmp_path / "hpbandster")).get_all_runs()
    assert sorted((tuple(r.config_id), r.budget) for r in live) == sorted(journal)
    live_order = [json.loads(line)[:2] for line in (tmp_path / "hpbandster" / "results.json").read_text().splitlines()]
    assert [(tuple(cid), budget) for cid, budget in live_order] == journal
    if slow == "observer":
        assert observer.finished == journal
    if cleanup is not None:
        assert observer.tracker.done == total
        assert sorted(cleanup.removed) == sorted({cid for cid, _ in journal})
