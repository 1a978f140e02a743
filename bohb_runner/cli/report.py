"""``bohb-runner report DIR``: the HTML report of a study, a comparison or hpbandster results."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``report`` to ``bohb-runner``."""
    report = commands.add_parser(
        "report",
        help="HTML report (and PNG figures) of a study, a comparison or hpbandster results",
        description="Write DIR/report/index.html (figures embedded, and as PNGs beside it) for a study directory "
        "(also while it runs), a comparison directory or a directory with hpbandster's configs.json and results.json.",
    )
    report.add_argument("directory", type=Path, metavar="DIR")
    report.add_argument("--out", type=Path, default=None, help="where to write the report (default: DIR/report)")
    report.add_argument(
        "--trim",
        action="append",
        default=[],
        metavar="RULE",
        help="drop evaluations from the hyperparameter figures: lr<1e-3, lr>=0.05, optimizer=adam (repeatable)",
    )
    report.add_argument(
        "--drop-worst",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help="drop this share of the worst losses on each budget",
    )
    report.add_argument(
        "--pair", action="append", default=[], metavar="A,B", help="hyperparameter pair for a heat map (repeatable)"
    )
    report.set_defaults(handler=_cmd_report)


def _cmd_report(args: argparse.Namespace) -> int:
    from bohb_runner.analysis.report import ReportOptions, make_report

    options = ReportOptions(trims=args.trim, drop_worst=args.drop_worst, pairs=args.pair)
    index, numbers = make_report(args.directory, args.out, options)
    print(f"wrote {index} ({', '.join(numbers.get('figures', [])) or 'comparison figures and a report per run'})")
    return 0
