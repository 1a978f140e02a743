"""One rule for each piece of bookkeeping: the incumbent, an evaluation's test error, and what
an evaluation costs. Every place that shows one of them (``best``, ``status``, the live progress
line, the report's curves, ``compare``) must agree; the expected values here are written out by
hand, not computed with the implementation's formulas."""

from __future__ import annotations

import pytest

from bohb_runner.analysis.curves import incumbent_steps
from bohb_runner.master.progress import ProgressTracker
from bohb_runner.store.journal import Evaluation
from bohb_runner.store.results import consumed_budget, incumbent_of
from bohb_runner.store.results import test_error_of as reported_test_error  # not a test for pytest
from bohb_runner.store.settings import StudySettings


def evaluation(config_id: int, budget: float, loss: float | None, **info) -> Evaluation:
    return Evaluation((0, 0, config_id), float(budget), loss, "ok" if loss is not None else "failed", {}, info=info)


# in finishing order; the incumbent after each, by hand: the lowest loss on the largest budget,
# ties to the lowest config id, failed evaluations never
FINISHED = [
    evaluation(1, 1, 0.5),  # first: incumbent
    evaluation(0, 1, 0.5),  # same budget and loss, lower config id: replaces it
    evaluation(2, 1, None),  # failed: nothing changes
    evaluation(3, 3, 0.9),  # larger budget: replaces it although its loss is higher
    evaluation(4, 3, 0.9),  # a tie with a higher config id: nothing changes
    evaluation(5, 1, 0.1),  # smaller budget: nothing changes however good
    evaluation(6, 3, 0.2),  # better on the largest budget: replaces it
]
INCUMBENT_AFTER = [1, 0, 0, 3, 3, 3, 6]


def test_the_incumbent_is_the_same_for_results_curves_and_the_progress_line():
    tracker = ProgressTracker("bohb", total_iterations=1, total_jobs=len(FINISHED))
    for count, expected in enumerate(INCUMBENT_AFTER, start=1):
        assert incumbent_of(FINISHED[:count]).config_id == (0, 0, expected), count
        tracker.evaluation_finished(FINISHED[count - 1])
        assert tracker.best.config_id == (0, 0, expected), count
    steps = incumbent_steps(FINISHED, [float(x) for x in range(len(FINISHED))])
    assert [(s.x, s.evaluation.config_id[2]) for s in steps] == [(0, 1), (1, 0), (3, 3), (6, 6)]
    assert incumbent_of([evaluation(0, 1, None)]) is None and incumbent_of([]) is None


def test_the_test_error_is_the_mean_over_the_repeats_everywhere():
    repeated = evaluation(0, 1, 0.3, test_error=0.5, repeat_means={"test_error": 0.4}, repeat_losses=[0.2, 0.4])
    single = evaluation(1, 1, 0.3, test_error=0.25)
    space: dict = {"hyperparameters": []}
    with_test = StudySettings(space=space, data={"sizes": {"train": 6, "val": 2, "test": 2}})
    without_test = StudySettings(space=space, data={"sizes": {"train": 8, "val": 2, "test": 0}})
    assert reported_test_error(repeated, with_test) == 0.4  # the mean of the repeats, not repeat 0's 0.5
    assert reported_test_error(single, with_test) == 0.25
    assert reported_test_error(single, None) == 0.25  # hpbandster's files: no settings
    # no test set (--split 8000,2000,0): a worker's "test error" of nothing means nothing
    assert reported_test_error(repeated, without_test) is None
    assert reported_test_error(evaluation(2, 1, 0.3, test_error=float("nan")), with_test) is None
    assert reported_test_error(evaluation(3, 1, 0.3), with_test) is None


def test_every_training_of_an_evaluation_counts_on_the_epoch_axis():
    space: dict = {"hyperparameters": []}
    finished = [evaluation(0, 1, 0.5), evaluation(1, 3, None), evaluation(2, 9, 0.2)]
    assert consumed_budget(finished, StudySettings(space=space)) == [1, 4, 13]
    # three repeats: each evaluation trained three times; failed ones too
    assert consumed_budget(finished, StudySettings(space=space, repeats=3)) == [3, 12, 39]
    assert consumed_budget(finished, None) == [1, 4, 13]  # hpbandster's files: one training each
    assert consumed_budget([], None) == []


@pytest.mark.parametrize("repeats,epochs", [(1, 27 + 18), (3, 3 * (27 + 18))])
def test_the_planned_epochs_count_every_training(repeats, epochs):
    from bohb_runner.store.schedule import planned_epochs, trainings_per_evaluation

    # budgets 1, 3, 9 (eta 3): iteration 0 runs 9 x 1 + 3 x 3 + 1 x 9 = 27 epochs, iteration 1 3 x 3 + 1 x 9 = 18
    settings = StudySettings(space={}, optimizer="hyperband", min_budget=1, max_budget=9, iterations=2, repeats=repeats)
    assert trainings_per_evaluation(settings) == repeats
    assert planned_epochs(settings) == epochs
