"""``bohb-runner report DIR``: a self-contained HTML report with its PNG figures beside it.

For one study (finished or still running) or an hpbandster result directory: the incumbent
trajectory, every evaluation over time, the effect of each hyperparameter and of pairs, the
loss per value, the rank correlation between consecutive budgets and the workers' utilisation.
For a comparison: its table and anytime curves, with links to a report per run. The figures are
embedded as data URIs, so ``index.html`` alone can be mailed or attached; ``report.json`` holds
the numbers behind them.
"""

from __future__ import annotations

import base64
import html
import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bohb_runner.analysis import figures
from bohb_runner.analysis.curves import elapsed_time, incumbent_steps
from bohb_runner.analysis.hyperparameters import (
    Trim,
    analysis_budget,
    binning_of,
    budget_rank_correlations,
    default_pairs,
    grouped_losses,
    importances,
    on_budget,
    pair_grid,
    parse_pair,
    trim_evaluations,
)
from bohb_runner.analysis.sources import AnalysisSource, load_source
from bohb_runner.errors import StudyError
from bohb_runner.store.journal import Evaluation
from bohb_runner.store.results import consumed_budget, test_error_of

REPORT_DIR = "report"


@dataclass
class ReportOptions:
    trims: list[str] = field(default_factory=list)
    drop_worst: float = 0.0
    pairs: list[str] = field(default_factory=list)


@dataclass
class Section:
    title: str
    figure: Path | None = None
    html: str = ""


def worker_rows(evaluations: list[Evaluation]) -> list[tuple[str, list[Evaluation]]]:
    """Evaluations per worker; without worker names (hpbandster's files) they are packed into
    as few rows as run concurrently, which is what the workers must have done."""
    timed = [e for e in evaluations if e.finished is not None and (e.started or e.submitted) is not None]
    named: dict[str, list[Evaluation]] = {}
    unnamed = []
    for e in timed:
        if e.worker:
            named.setdefault(short_worker_name(e.worker), []).append(e)
        else:
            unnamed.append(e)
    lanes: list[list[Evaluation]] = []
    for e in sorted(unnamed, key=lambda e: e.started or e.submitted):
        for lane in lanes:
            if lane[-1].finished <= (e.started or e.submitted):
                lane.append(e)
                break
        else:
            lanes.append([e])
    rows = sorted(named.items())
    rows += [(f"slot {i + 1} (inferred)", lane) for i, lane in enumerate(lanes)]
    return rows


def short_worker_name(name: str) -> str:
    """``hpbandster.run_X.worker.host.pid.worker-1`` -> ``host.pid.worker-1``."""
    marker = ".worker."
    return name.split(marker, 1)[1] if marker in name else name


def utilisation(rows: list[tuple[str, list[Evaluation]]]) -> dict[str, float]:
    """Busy share of each worker over the span from the first start to the last finish."""
    everything = [e for _, evaluations in rows for e in evaluations]
    if not everything:
        return {}
    begin = min(e.started or e.submitted for e in everything)
    end = max(e.finished for e in everything)
    span = max(end - begin, 1e-9)
    return {name: sum(e.finished - (e.started or e.submitted) for e in ev) / span for name, ev in rows}


def _image(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(path.name)}">'


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; border-bottom: 1px solid #ccc; padding-top: 0.6em; }
img { max-width: 100%; display: block; margin: 0.5em 0; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
td, th { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #f3f3f3; } .note { color: #555; font-size: 0.9em; } code { background: #f3f3f3; }
"""


def write_html(path: Path, title: str, intro: str, sections: list[Section]) -> Path:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        intro,
    ]
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        if section.figure is not None:
            parts.append(_image(section.figure))
        parts.append(section.html)
    parts.append(f'<p class="note">written by bohb-runner report, {time.strftime("%Y-%m-%d %H:%M:%S")}</p>')
    parts.append("</body></html>")
    path.write_text("\n".join(parts) + "\n")
    return path


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.3e}"
    return str(value)


def study_report(source: AnalysisSource, out: Path, options: ReportOptions) -> dict[str, Any]:
    """Write the report of one study (or hpbandster results) into ``out``; returns its numbers,
    which ``report.json`` holds: every figure's, so that they can be checked without pixels."""
    evaluations = source.evaluations
    if not any(e.ok for e in evaluations):
        raise StudyError(f"{source.directory}: no successful evaluation yet; nothing to report")
    out.mkdir(parents=True, exist_ok=True)
    hps = source.hyperparameters
    trims = [Trim.parse(text, hps) for text in options.trims]
    kept, trim_notes = trim_evaluations(evaluations, trims, options.drop_worst)
    if not kept:
        raise StudyError("the trimming rules drop every evaluation; nothing left to draw")
    axes = StudyAxes(consumed_budget(evaluations, source.settings), elapsed_time(evaluations))
    numbers: dict[str, Any] = {
        "directory": str(source.directory),
        "kind": source.kind,
        "evaluations": len(evaluations),
        "kept_after_trimming": len(kept),
        "trims": trim_notes,
        "running": (source.directory / "nameserver.json").exists(),
        "epochs": axes.epochs[-1],
        "seconds": axes.seconds[-1],
    }
    sections: list[Section] = []
    for part in (
        _incumbent_sections(source, axes, out),
        _hyperparameter_sections(source, kept, trim_notes, options, out),
        _budget_section(evaluations, out),
        _worker_section(evaluations, out),
    ):
        sections += part.sections
        numbers.update(part.numbers)
    numbers["figures"] = sorted(p.name for p in out.glob("*.png"))
    write_html(out / "index.html", f"Report: {source.title}", _intro(source, numbers), sections)
    (out / "report.json").write_text(json.dumps(numbers, indent=2) + "\n")
    return numbers


@dataclass
class StudyAxes:
    """Where each evaluation finished, in epochs consumed (every training counted) and seconds."""

    epochs: list[float]
    seconds: list[float]


@dataclass
class ReportPart:
    """Sections of the report and the numbers behind their figures (for ``report.json``)."""

    sections: list[Section]
    numbers: dict[str, Any]


def _point(evaluation: Evaluation, **where: float) -> dict[str, Any]:
    """One drawn point: where it is, whose it is, and its error bar (None: no repeats)."""
    return {
        **where,
        "config_id": list(evaluation.config_id),
        "budget": evaluation.budget,
        "loss": evaluation.loss,
        "loss_std": figures.loss_std(evaluation),
    }


def _incumbent_sections(source: AnalysisSource, axes: StudyAxes, out: Path) -> ReportPart:
    """The incumbent and its trajectory against epochs and time; every evaluation over time."""
    evaluations = source.evaluations
    budget_steps = incumbent_steps(evaluations, axes.epochs)
    time_steps = incumbent_steps(evaluations, axes.seconds)
    incumbent = budget_steps[-1].evaluation
    test_error = test_error_of(incumbent, source.settings)
    std = figures.loss_std(incumbent)
    rows = [
        ["config id", str(tuple(incumbent.config_id))],
        ["budget", _fmt(incumbent.budget)],
        ["validation error", _fmt(incumbent.loss)],
        ["test error", _fmt(test_error)],
    ]
    if std is not None:
        rows.append(["loss std (repeats)", _fmt(std)])
    rows += [[f"  {k}", _fmt(v)] for k, v in sorted((incumbent.config or {}).items())]
    trajectory = figures.trajectory_figure(
        budget_steps, time_steps, out / "trajectory.png", axes.epochs[-1], axes.seconds[-1]
    )
    sections = [
        Section("Incumbent trajectory", trajectory, _table(["incumbent", ""], rows)),
        Section(
            "All evaluations over time",
            figures.evaluations_over_time_figure(evaluations, axes.seconds, out / "evaluations.png"),
        ),
    ]
    numbers = {
        "incumbent": {
            "config_id": list(incumbent.config_id),
            "budget": incumbent.budget,
            "loss": incumbent.loss,
            "loss_std": std,
            "test_error": test_error,
        },
        "trajectory": {
            "budget": [_point(s.evaluation, x=s.x) for s in budget_steps],
            "time": [_point(s.evaluation, x=s.x) for s in time_steps],
        },
        "evaluations_over_time": [_point(e, seconds=t) for e, t in zip(evaluations, axes.seconds, strict=True) if e.ok],
        "failed_at_seconds": [t for e, t in zip(evaluations, axes.seconds, strict=True) if not e.ok],
    }
    return ReportPart(sections, numbers)


def _hyperparameter_sections(
    source: AnalysisSource, kept: list[Evaluation], trim_notes: list[str], options: ReportOptions, out: Path
) -> ReportPart:
    """Effects of each hyperparameter, pairs of them and the loss per value, after trimming."""
    evaluations, hps = source.evaluations, source.hyperparameters
    # chosen before trimming, so that a trimmed report shows the same budget, with fewer points
    budget = analysis_budget(evaluations)
    pooled = on_budget(kept, budget)
    if not pooled:
        raise StudyError(f"the trimming rules drop every evaluation on budget {budget:g}; nothing left to compare")
    scores = importances(hps, pooled)
    pairs = [parse_pair(text, hps) for text in options.pairs] or default_pairs(scores)
    by_name = {hp.name: hp for hp in hps}
    trim_html = (
        "<p class='note'>Trimmed: " + html.escape("; ".join(trim_notes)) + f" ({len(kept)} of "
        f"{sum(e.ok for e in evaluations)} successful evaluations left).</p>"
        if trim_notes
        else "<p class='note'>Not trimmed; <code>--trim NAME&lt;VALUE</code>, <code>--trim NAME=VALUE</code> "
        "or <code>--drop-worst FRACTION</code> redraw the hyperparameter figures without those evaluations.</p>"
    )
    grids = [pair_grid(by_name[a], by_name[b], pooled) for a, b in pairs]
    importance_rows = [[name, f"{score:.3f}"] for name, score in scores.items()]
    groups = {hp.name: grouped_losses(binning_of(hp, pooled), pooled) for hp in hps}
    hist_rows = [
        [
            name,
            label,
            len(losses),
            _fmt(min(losses)) if losses else "",
            _fmt(sum(losses) / len(losses)) if losses else "",
        ]
        for name, by_value in groups.items()
        for label, losses in by_value.items()
    ]
    sections = [
        Section("Effect of each hyperparameter", figures.effects_figure(hps, kept, out / "effects.png"), trim_html),
        Section(
            "Pairs of hyperparameters",
            figures.pair_heatmaps_figure(grids, budget, out / "pairs.png"),
            f"<p class='note'>Mean validation error per cell on budget {_fmt(budget)} ({len(pooled)} evaluations); "
            "the default pairs are those among the three hyperparameters that explain most of the loss variance "
            "(share of variance explained by binned means, a one-way ANOVA):</p>"
            + _table(["hyperparameter", "variance explained"], importance_rows),
        ),
        Section(
            "Loss per hyperparameter value",
            figures.histograms_figure(groups, budget, out / "histograms.png"),
            trim_html + _table(["hyperparameter", "value or range", "evaluations", "best", "mean"], hist_rows),
        ),
    ]
    numbers = {
        "analysis_budget": budget,
        "importance": scores,
        "pairs": [list(p) for p in pairs],
        "histograms": {name: {label: len(losses) for label, losses in g.items()} for name, g in groups.items()},
    }
    return ReportPart(sections, numbers)


def _budget_section(evaluations: list[Evaluation], out: Path) -> ReportPart:
    """How well each budget's ranking of configurations predicts the next budget's."""
    correlations = budget_rank_correlations(evaluations)
    section = Section(
        "Does a cheap budget predict the next one?",
        figures.rank_correlation_figure(correlations, out / "rank-correlation.png"),
        _table(
            ["budgets", "configurations on both", "Spearman rho", "p-value"],
            [[f"{c.low:.4g} -> {c.high:.4g}", c.count, _fmt(c.rho, 3), _fmt(c.p_value, 2)] for c in correlations],
        ),
    )
    numbers = {
        "rank_correlations": [
            {"low": c.low, "high": c.high, "count": c.count, "rho": c.rho, "p_value": c.p_value} for c in correlations
        ]
    }
    return ReportPart([section], numbers)


def _worker_section(evaluations: list[Evaluation], out: Path) -> ReportPart:
    """What each worker did when: a Gantt chart and each one's busy share."""
    rows_by_worker = worker_rows(evaluations)
    origin = min((e.submitted or e.started or 0.0) for e in evaluations if e.finished is not None)
    shares = utilisation(rows_by_worker)
    section = Section(
        "Worker utilisation",
        figures.gantt_figure(rows_by_worker, origin, out / "workers.png"),
        _table(
            ["worker", "evaluations", "busy"],
            [[n, len(ev), f"{100 * shares[n]:.0f} %"] for n, ev in rows_by_worker],
        ),
    )
    return ReportPart([section], {"utilisation": shares})


def _intro(source: AnalysisSource, numbers: dict[str, Any]) -> str:
    """The lines above the figures: totals, the study's settings, and whether it still runs."""
    evaluations, settings = source.evaluations, source.settings
    facts = [
        f"{len(evaluations)} evaluations ({sum(not e.ok for e in evaluations)} failed), {numbers['epochs']:g} epochs, "
        f"{numbers['seconds']:.0f} s"
    ]
    if settings is not None:
        facts.append(
            f"optimizer {settings.optimizer}, budgets {settings.min_budget:g}..{settings.max_budget:g} "
            f"(eta {settings.eta:g}), {settings.iterations} iterations, seed {settings.seed}, worker {settings.worker}"
            + (f", repeats {settings.repeats}" if settings.repeats > 1 else "")
            + (f", data {settings.dataset}" if settings.data else "")
        )
    if numbers["running"]:
        facts.append("the study is still running: this report shows the evaluations finished so far")
    return "".join(f"<p>{html.escape(f)}</p>" for f in facts)


def comparison_report(directory: Path, out: Path, options: ReportOptions) -> dict[str, Any]:
    """Regenerate the comparison's table and curves, a report per run, and an index linking them."""
    from bohb_runner.analysis.compare import load_spec, study_dirs
    from bohb_runner.analysis.comparison_outputs import write_comparison_outputs
    from bohb_runner.analysis.comparison_summary import describe_limit, format_mean_se

    spec = load_spec(directory)
    written = write_comparison_outputs(directory, spec)
    out.mkdir(parents=True, exist_ok=True)
    sections = []
    for name in ("anytime-budget.png", "anytime-time.png"):
        shutil.copyfile(directory / name, out / name)
    sections.append(Section("Incumbent validation error against epochs consumed", out / "anytime-budget.png"))
    sections.append(Section("Incumbent validation error against wall-clock time", out / "anytime-time.png"))
    links = []
    runs = study_dirs(directory, spec)
    for number, (name, optimizer, seed, study_dir) in enumerate(runs, start=1):
        run_out = study_dir / REPORT_DIR
        print(f"report {number}/{len(runs)}: {run_out / 'index.html'}", file=sys.stderr, flush=True)
        try:
            study_report(load_source(study_dir), run_out, options)
        except StudyError as exc:
            links.append(f"<li>{html.escape(name)}: no report ({html.escape(str(exc))})</li>")
            continue
        href = (
            Path("..") / name / REPORT_DIR / "index.html"
            if out == directory / REPORT_DIR
            else (run_out / "index.html").resolve()
        )
        links.append(f'<li><a href="{html.escape(str(href))}">{html.escape(name)}</a> ({optimizer}, seed {seed})</li>')
    rows = json.loads((directory / "curves.json").read_text())["table"]
    intro = (
        f"<p>{html.escape(', '.join(spec.optimizers))}; seeds {html.escape(', '.join(map(str, spec.seeds)))}; "
        f"limit {html.escape(describe_limit(spec))}. Final = the incumbent among the evaluations finished within "
        "the limit; mean ± standard error over seeds.</p>"
        + _table(
            [
                "optimizer",
                "runs",
                "finished",
                "final validation error",
                "final test error",
                "evaluations",
                "epochs",
                "seconds",
                "fraction of random search's limit to reach its final",
                "speed-up",
            ],
            [
                [
                    r["optimizer"],
                    r["runs"],
                    r["finished"],
                    format_mean_se(r["val_error_mean"], r["val_error_se"]),
                    format_mean_se(r["test_error_mean"], r["test_error_se"]),
                    f"{r['evaluations_mean']:.1f}",
                    f"{r['epochs_mean']:.1f}",
                    f"{r['seconds_mean']:.0f}",
                    _fmt(r["fraction_to_reach_randomsearch"], 3),
                    f"{r['speedup_over_randomsearch']:.2f}x" if r["speedup_over_randomsearch"] else "n/a",
                ]
                for r in rows
            ],
        )
    )
    sections.append(Section("Runs", html="<ul>" + "".join(links) + "</ul>"))
    write_html(out / "index.html", f"Comparison: {directory.name}", intro, sections)
    return {"directory": str(directory), "kind": "comparison", "outputs": [str(p) for p in written]}


def make_report(
    directory: str | Path, out: str | Path | None = None, options: ReportOptions | None = None
) -> tuple[Path, dict[str, Any]]:
    """Write the report for ``directory`` (study, hpbandster results or comparison)."""
    from bohb_runner.analysis.sources import directory_kind

    directory = Path(directory)
    options = options or ReportOptions()
    kind = directory_kind(directory)
    out = Path(out) if out is not None else directory / REPORT_DIR
    if kind == "comparison":
        numbers = comparison_report(directory, out, options)
    else:
        numbers = study_report(load_source(directory), out, options)
    return out / "index.html", numbers
