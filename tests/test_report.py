"""``bohb-runner report``: on a finished study, a running one, an hpbandster export, with trimming;
rendered by a real headless chromium (Debian's), whose screenshot is kept in test-output/."""

from __future__ import annotations

import bisect
import json
import shutil
import statistics
import subprocess
import time
from pathlib import Path

import pytest
from hpbandster.core.worker import Worker

from bohb_runner.analysis.hyperparameters import analysis_budget
from bohb_runner.store.journal import read_evaluations

from conftest import PROJECT, TESTS, assert_one_line_error, incumbent_steps_by_hand, run_cli, start_cli, wait_until

QUADRATIC = TESTS / "data" / "quadratic.yaml"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FIGURES = ("trajectory", "evaluations", "effects", "pairs", "histograms", "rank-correlation", "workers")
TEST_OUTPUT = PROJECT / "test-output"
GATE = "open-the-gate"


class BudgetGatedWorker(Worker):
    """Finishes every job on budget 1 at once and holds the others until the file
    ``open-the-gate`` appears in the study directory: with ``--iterations 1`` the study has
    exactly its 9 first results and keeps running for as long as a test needs."""

    def compute(self, config_id, config, budget, working_directory, **kwargs):
        gate = Path(working_directory).parent / GATE
        while budget > 1 and not gate.exists():
            time.sleep(0.05)
        return {"loss": (config["x"] - 0.3) ** 2 + (config["y"] - 0.6) ** 2 + 1.0 / budget, "info": {}}


def journal(study: Path) -> list[dict]:
    return [json.loads(line) for line in (study / "results.jsonl").read_text().splitlines() if line.strip()]


def quartile_counts(values: list[float]) -> list[int]:
    """How many values fall in each quartile bin [q0, q1), [q1, q2), [q2, q3), [q3, q4]."""
    edges = [min(values), *statistics.quantiles(values, n=4, method="inclusive"), max(values)]
    counts = [0] * 4
    for value in values:
        counts[min(bisect.bisect_right(edges, value) - 1, 3)] += 1
    return counts


def quadratic_study(study: Path, *extra, worker="user_worker:QuadraticWorker", iterations=3) -> list:
    return [
        "run", "--space", QUADRATIC, "--study-dir", study, "--worker", worker, "--workers", 2,
        "--optimizer", "hyperband", "--max-budget", 9, "--iterations", iterations, "--no-progress", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("report") / "study"
    result = run_cli(*quadratic_study(directory))
    assert result.returncode == 0, result.stderr
    return directory


@pytest.fixture(scope="module")
def report(study) -> Path:
    """The study's report, in its default place (STUDY/report)."""
    result = run_cli("report", study)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"wrote {study / 'report' / 'index.html'}")
    return study / "report"


def assert_report(out: Path) -> dict:
    """The page embeds every figure (the numbers behind them are checked in report.json)."""
    index = out / "index.html"
    text = index.read_text()
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    for name in FIGURES:
        assert (out / f"{name}.png").read_bytes()[:8] == PNG_MAGIC, name
    assert text.count('src="data:image/png;base64,') == len(FIGURES)  # self-contained
    numbers = json.loads((out / "report.json").read_text())
    assert numbers["figures"] == sorted(f"{name}.png" for name in FIGURES)
    return numbers


def test_report_of_a_study(study, report):
    numbers = assert_report(report)
    evaluations = read_evaluations(study)
    records = journal(study)
    assert numbers["evaluations"] == len(evaluations) and numbers["running"] is False
    best = min((e for e in evaluations if e.budget == 9.0), key=lambda e: e.loss)
    assert numbers["incumbent"]["loss"] == best.loss
    # the trajectory figure's steps, on the epoch axis: 3 Hyperband iterations of budgets 1, 3, 9
    # plan 27 + 18 + 27 = 72 epochs, all run
    assert numbers["epochs"] == 72
    steps = incumbent_steps_by_hand(records)
    assert [(step["x"], step["config_id"]) for step in numbers["trajectory"]["budget"]] == steps
    by_id = {(tuple(r["config_id"]), r["budget"]): r for r in records}
    for step in numbers["trajectory"]["budget"]:
        assert step["loss"] == by_id[(tuple(step["config_id"]), step["budget"])]["loss"]
    assert [step["config_id"] for step in numbers["trajectory"]["time"]] == [c for _, c in steps]
    # the evaluations figure: every successful evaluation at the seconds it finished
    points = numbers["evaluations_over_time"]
    assert [(p["config_id"], p["budget"], p["loss"]) for p in points] == [
        (r["config_id"], r["budget"], r["loss"]) for r in records if r["status"] == "ok"
    ]
    assert all(p["loss_std"] is None for p in points)  # no --repeats: no error bars
    assert all(p["seconds"] >= 0 for p in points)
    # the histograms: quartile bins of the analysis budget's values, counted here from the journal
    budget = analysis_budget(evaluations)
    on_budget = [r for r in records if r["budget"] == budget and r["status"] == "ok"]
    for name in ("x", "y"):
        assert list(numbers["histograms"][name].values()) == quartile_counts([r["config"][name] for r in on_budget])
    assert set(numbers["importance"]) == {"x", "y"}
    assert sorted(map(sorted, numbers["pairs"])) == [["x", "y"]]
    # budgets 1 -> 3 -> 9: one correlation per consecutive pair, over the configurations on both
    assert [(c["low"], c["high"]) for c in numbers["rank_correlations"]] == [(1.0, 3.0), (3.0, 9.0)]
    promoted = {e.config_id for e in evaluations if e.budget == 3.0} & {
        e.config_id for e in evaluations if e.budget == 1.0
    }
    assert numbers["rank_correlations"][0]["count"] == len(promoted)
    assert len(numbers["utilisation"]) == len({e.worker for e in evaluations})
    assert all(0 < share <= 1 for share in numbers["utilisation"].values())


def test_trimming_changes_the_histograms(study, tmp_path):
    evaluations = read_evaluations(study)
    budget = analysis_budget(evaluations)
    on_budget = [e for e in evaluations if e.budget == budget]
    dropped = [e for e in on_budget if e.config["x"] < 0.5]
    assert 0 < len(dropped) < len(on_budget)
    result = run_cli("report", study, "--out", tmp_path / "t", "--trim", "x<0.5", "--pair", "x,y")
    assert result.returncode == 0, result.stderr
    numbers = assert_report(tmp_path / "t")
    assert sum(numbers["histograms"]["y"].values()) == len(on_budget) - len(dropped)
    assert numbers["trims"] == [f"--trim x<0.5: dropped {sum(e.config['x'] < 0.5 for e in evaluations)} evaluations"]
    assert numbers["pairs"] == [["x", "y"]]

    worst = run_cli("report", study, "--out", tmp_path / "w", "--drop-worst", "0.5")
    assert worst.returncode == 0, worst.stderr
    counts = json.loads((tmp_path / "w" / "report.json").read_text())["histograms"]["x"]
    assert sum(counts.values()) == len(on_budget) - len(on_budget) // 2


def test_report_of_an_hpbandster_export(study, tmp_path):
    export = tmp_path / "export"
    assert run_cli("export", study, "--format", "hpbandster", export).returncode == 0
    result = run_cli("report", export)
    assert result.returncode == 0, result.stderr
    numbers = assert_report(export / "report")
    assert numbers["kind"] == "hpbandster" and numbers["evaluations"] == len(read_evaluations(study))
    # no worker names in hpbandster's files: rows are inferred from overlapping run times
    assert all(name.startswith("slot ") for name in numbers["utilisation"])
    assert 1 <= len(numbers["utilisation"]) <= 2
    best = min((e for e in read_evaluations(study) if e.budget == 9.0), key=lambda e: e.loss)
    assert numbers["incumbent"]["loss"] == best.loss


def test_report_of_a_running_study(tmp_path):
    study = tmp_path / "live"
    run = start_cli(*quadratic_study(study, worker=f"{Path(__file__).resolve()}:BudgetGatedWorker", iterations=1))
    try:
        # Hyperband's first iteration: 9 jobs on budget 1 finish, the 3 promoted to budget 3 wait at the gate
        wait_until(
            lambda: (study / "results.jsonl").exists() and len(read_evaluations(study)) == 9 or run.poll() is not None,
            120,
            "9 results",
        )
        assert run.poll() is None, run.communicate()
        result = run_cli("report", study)
        assert result.returncode == 0, result.stderr
        assert run.poll() is None  # still running: the report did not disturb it
        numbers = assert_report(study / "report")
        assert numbers["running"] is True and numbers["evaluations"] == 9
        assert "still running" in (study / "report" / "index.html").read_text()
        (study / GATE).touch()
        assert run.wait(timeout=120) == 0
        assert len(read_evaluations(study)) == 13  # the report did not disturb the study either
    finally:
        if run.poll() is None:
            run.kill()
        run.communicate()


def test_bad_reports_are_one_line_errors(study, tmp_path):
    assert_one_line_error(run_cli("report", tmp_path / "missing"), "no such directory")
    (tmp_path / "empty").mkdir()
    assert_one_line_error(run_cli("report", tmp_path / "empty"), "neither a study")
    assert_one_line_error(run_cli("report", study, "--out", tmp_path / "o", "--trim", "z<1"), "no hyperparameter 'z'")
    assert_one_line_error(run_cli("report", study, "--out", tmp_path / "o", "--trim", "x~1"), "--trim 'x~1'")
    assert_one_line_error(run_cli("report", study, "--out", tmp_path / "o", "--pair", "x,lr"), "no hyperparameter 'lr'")
    assert_one_line_error(run_cli("report", study, "--out", tmp_path / "o", "--drop-worst", "1.5"), "--drop-worst")
    # a study that has not finished an evaluation yet
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    shutil.copy(study / "study.json", fresh / "study.json")
    assert_one_line_error(run_cli("report", fresh), "no successful evaluation yet")


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(chromium() is None, reason="chromium is not installed (apt-get install -y chromium; .ci/run does)")
def test_report_renders_in_headless_chromium(report, tmp_path):
    from PIL import Image

    out = report
    TEST_OUTPUT.mkdir(exist_ok=True)
    screenshot = TEST_OUTPUT / "report-screenshot.png"
    screenshot.unlink(missing_ok=True)
    browser = [
        chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
    ]  # fmt: skip
    url = (out / "index.html").as_uri()
    shot = subprocess.run(
        [*browser, f"--screenshot={screenshot}", "--window-size=1280,2000", url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shot.returncode == 0, shot.stderr
    page_errors = [line for line in shot.stderr.splitlines() if "Uncaught" in line or "ERROR:CONSOLE" in line]
    assert not page_errors, page_errors
    dom = subprocess.run([*browser, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr
    assert "<h1>Report: study: hyperband study</h1>" in dom.stdout
    assert dom.stdout.count("<img ") == len(FIGURES)
    with Image.open(screenshot) as image:
        assert image.format == "PNG" and image.size == (1280, 2000)
        colours = image.convert("L").getextrema()
        histogram = image.convert("L").histogram()
    assert colours[1] - colours[0] > 100  # not blank
    assert max(histogram) < 0.95 * sum(histogram)  # not one colour all over


# -- the numbers behind the figures (pure functions, no processes) ---------------------------------


def evaluation(config_id, budget, loss, **config):
    from bohb_runner.store.journal import Evaluation

    return Evaluation(tuple(config_id), float(budget), loss, "ok" if loss is not None else "failed", config)


def test_spearman_matches_scipy_with_ties():
    import numpy as np
    from scipy.stats import spearmanr

    from bohb_runner.analysis.hyperparameters import spearman

    rng = np.random.default_rng(1)
    for n in (3, 7, 30):
        a = rng.normal(size=n)
        a[1] = a[0]  # a tie
        b = a + rng.normal(size=n)
        expected = spearmanr(a, b)
        rho, p_value = spearman(list(a), list(b))
        assert rho == pytest.approx(expected.statistic) and p_value == pytest.approx(expected.pvalue)


def test_trim_rules():
    from bohb_runner.analysis.hyperparameters import Trim, trim_evaluations
    from bohb_runner.analysis.sources import Hyperparameter
    from bohb_runner.errors import UserError

    hps = [Hyperparameter("lr", True, log=True), Hyperparameter("optimizer", False, choices=("sgd", "adam")),
           Hyperparameter("momentum", True)]  # fmt: skip
    runs = [
        evaluation((0, 0, 0), 1, 0.5, lr=1e-4, optimizer="sgd", momentum=0.9),
        evaluation((0, 0, 1), 1, 0.2, lr=1e-2, optimizer="adam"),  # momentum inactive
        evaluation((0, 0, 2), 1, 0.9, lr=5e-4, optimizer="adam"),
        evaluation((0, 0, 3), 3, 0.1, lr=1e-2, optimizer="sgd", momentum=0.5),
        evaluation((0, 0, 4), 3, None, lr=1e-2, optimizer="sgd", momentum=0.5),  # failed: never drawn
    ]
    kept, notes = trim_evaluations(runs, [Trim.parse("lr<1e-3", hps)])
    assert [e.config_id[2] for e in kept] == [1, 3] and notes == ["--trim lr<1e-3: dropped 2 evaluations"]
    kept, _ = trim_evaluations(runs, [Trim.parse(" optimizer = adam ", hps), Trim.parse("momentum>=0.9", hps)])
    assert [e.config_id[2] for e in kept] == [3]
    kept, notes = trim_evaluations(runs, [], drop_worst=0.34)  # one of the three on budget 1, none of one on 3
    assert [e.config_id[2] for e in kept] == [0, 1, 3] and "dropped 1 evaluations" in notes[0]
    for bad in ("lr", "lr<abc", "optimizer<3", "nope=1"):
        with pytest.raises(UserError, match="--trim"):
            Trim.parse(bad, hps)


def test_binning_and_variance_explained():
    from bohb_runner.analysis.hyperparameters import INACTIVE, binning_of, grouped_losses, variance_explained
    from bohb_runner.analysis.sources import Hyperparameter

    runs = [evaluation((0, 0, i), 1, 0.1 * (i % 2), lr=10.0 ** -(1 + i % 4), opt="sgd" if i % 2 else "adam")
            for i in range(8)]  # fmt: skip
    runs.append(evaluation((0, 0, 8), 1, 0.3, opt="adam"))
    lr = binning_of(Hyperparameter("lr", True, log=True), runs)
    assert lr.labels[-1] == INACTIVE and len(lr.labels) == 5
    groups = grouped_losses(lr, runs)
    assert sum(map(len, groups.values())) == 9 and groups[INACTIVE] == [0.3]
    opt = binning_of(Hyperparameter("opt", False, choices=("sgd", "adam")), runs)
    assert opt.labels == ("sgd", "adam")
    # the loss is a function of opt alone (apart from the one extra adam run): opt explains it
    assert variance_explained(opt, runs[:8]) == pytest.approx(1.0)


def test_repeated_evaluations_get_error_bars(study, tmp_path):
    """--repeats puts the spread of the R trainings in info["loss_std"]: the report draws it."""
    from bohb_runner.analysis.report import ReportOptions, make_report

    copy = tmp_path / "repeats"
    copy.mkdir()
    shutil.copy(study / "study.json", copy / "study.json")
    records = []
    for number, record in enumerate(journal(study)):
        spread = 0.01 * (number + 1)  # a different spread for each evaluation
        record["info"] = {**record["info"], "loss_std": spread, "repeat_losses": [record["loss"] - spread] * 2}
        records.append(record)
    (copy / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    index, numbers = make_report(copy, tmp_path / "out", ReportOptions())
    assert numbers["evaluations"] == len(records)
    spread_of = {(tuple(r["config_id"]), r["budget"]): r["info"]["loss_std"] for r in records}
    # the error bars drawn: the trajectory's and every evaluation's, each its own journal line's loss_std
    for step in numbers["trajectory"]["budget"] + numbers["trajectory"]["time"]:
        assert step["loss_std"] == spread_of[(tuple(step["config_id"]), step["budget"])]
    points = numbers["evaluations_over_time"]
    assert len(points) == len(records)
    for point in points:
        assert point["loss_std"] == spread_of[(tuple(point["config_id"]), point["budget"])]
    incumbent = numbers["incumbent"]
    assert incumbent["loss_std"] == spread_of[(tuple(incumbent["config_id"]), incumbent["budget"])]
    assert f"<td>loss std (repeats)</td><td>{incumbent['loss_std']:.4g}</td>" in index.read_text()
