"""Write a comparison's results: table (Markdown and CSV), curves (JSON) and anytime figures."""

from __future__ import annotations

import json
from pathlib import Path

from bohb_runner.analysis import figures
from bohb_runner.analysis.compare import ComparisonSpec
from bohb_runner.analysis.comparison_summary import (
    curves_json,
    describe_limit,
    summarise,
    table_csv,
    table_markdown,
    table_rows,
)
from bohb_runner.errors import StudyError

OUTPUT_FILES = ("comparison.md", "comparison.csv", "curves.json", "anytime-budget.png", "anytime-time.png")


def write_comparison_outputs(out: Path, spec: ComparisonSpec) -> list[Path]:
    """The comparison's table, curves and figures from its runs' journals, as they are now."""
    summaries = summarise(out, spec)
    if not summaries:
        raise StudyError(f"{out}: no run of the comparison has a successful evaluation yet")
    rows = table_rows(summaries)
    limit = describe_limit(spec)
    seeds = ", ".join(str(s) for s in spec.seeds)
    markdown = (
        f"# Comparison {out.name}: {', '.join(spec.optimizers)}; seeds {seeds}; limit {limit}\n\n"
        + table_markdown(rows, spec)
        + "\nFinal = the incumbent (lowest validation error on the largest budget evaluated) among the evaluations "
        "finished within the limit; mean ± standard error over seeds. The last two columns: where the median "
        "incumbent curve first reaches random search's median final validation error, as a fraction of the limit, "
        "and its inverse.\n"
    )
    paths = [out / name for name in OUTPUT_FILES]
    paths[0].write_text(markdown)
    paths[1].write_text(table_csv(rows))
    paths[2].write_text(json.dumps({**curves_json(summaries, spec), "table": rows}, indent=2) + "\n")
    figures.anytime_figure(
        [(s.optimizer, s.budget_curve, [r.budget_steps for r in s.runs]) for s in summaries],
        "epochs consumed",
        f"incumbent against budget ({limit})",
        paths[3],
        spec.budget_limit,
    )
    figures.anytime_figure(
        [(s.optimizer, s.time_curve, [r.time_steps for r in s.runs]) for s in summaries],
        "wall-clock seconds",
        f"incumbent against time ({limit})",
        paths[4],
        spec.time_limit,
        end=max((r.time_used for s in summaries for r in s.runs), default=None),
    )
    return paths
