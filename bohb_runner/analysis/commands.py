"""The ``compare`` and ``report`` sub-commands: argument parsing over compare.py and report.py."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from functools import partial
from pathlib import Path

from bohb_runner.settings import OPTIMIZERS


def register(commands: argparse._SubParsersAction) -> None:
    """Add this module's sub-commands to ``bohb-runner``."""
    from bohb_runner import cli
    from bohb_runner.cli import STUDY_OPTIONS, add_local_worker_options, add_master_options

    compare = commands.add_parser(
        "compare",
        help="run several optimizers with several seeds under the same limit and compare them",
        description="Run each optimizer with each seed under the same budget (epochs) or wall-clock limit, one "
        "study directory per run under --out (resumable: run the command again), then write the comparison "
        "table (comparison.md, comparison.csv), curves.json and anytime-budget.png / anytime-time.png.",
    )
    compare.add_argument(
        "--out", required=True, type=Path, help="comparison directory (one study per optimizer and seed)"
    )
    compare.add_argument(
        "--optimizers",
        default=None,
        help=f"comma-separated, from {', '.join(OPTIMIZERS)} (default: randomsearch,hyperband,bohb)",
    )
    compare.add_argument(
        "--seeds", default=None, help="number of seeds (3: seeds 0, 1, 2) or a list (0,5,7); default 3"
    )
    compare.add_argument(
        "--budget-limit",
        type=float,
        default=None,
        metavar="EPOCHS",
        help="epochs each run may consume (counted in finishing order)",
    )
    compare.add_argument(
        "--time-limit", type=float, default=None, metavar="SECONDS", help="wall-clock seconds each run may take"
    )
    group = compare.add_argument_group("study options (as for bohb-runner run; the same for every run)")
    group.add_argument("--space", type=Path, help="ConfigSpace YAML or JSON file (e.g. spaces/lenet.yaml)")
    for flag, field, kind, text in STUDY_OPTIONS:
        if field in ("optimizer", "seed"):
            continue
        group.add_argument(flag, dest=field.replace(".", "__"), type=kind, default=None, help=text)
    for flag, field, text in getattr(cli, "STUDY_FLAGS", []):  # on/off options (--continue/--no-continue ...)
        group.add_argument(flag, dest=field, action=argparse.BooleanOptionalAction, default=None, help=text)
    compare.set_defaults(optimizer=None, seed=None)
    add_master_options(compare)
    compare.add_argument("--workers", type=int, default=1, help="local worker processes per run (default: 1)")
    add_local_worker_options(compare)
    compare.set_defaults(handler=_cmd_compare)

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


def _cmd_compare(args: argparse.Namespace) -> int:
    from bohb_runner.analysis.compare import prepare_comparison, run_comparison
    from bohb_runner.analysis.comparison_outputs import write_comparison_outputs
    from bohb_runner.cli import listen_address, requested_settings, run_options
    from bohb_runner.errors import UserError

    args.host = listen_address(args)
    if args.workers < 1:
        raise UserError(f"--workers must be at least 1, got {args.workers}")
    if args.threads < 1:
        raise UserError(f"--threads must be at least 1, got {args.threads}")
    spec = prepare_comparison(args, requested_settings(args))
    options = run_options(args)
    run_comparison(args, spec, partial(dataclasses.replace, options))
    paths = write_comparison_outputs(args.out, spec)
    print((args.out / "comparison.md").read_text(), end="")
    print(f"wrote {', '.join(str(p) for p in paths)}; HTML report: bohb-runner report {args.out}", file=sys.stderr)
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from bohb_runner.analysis.report import ReportOptions, make_report

    options = ReportOptions(trims=args.trim, drop_worst=args.drop_worst, pairs=args.pair)
    index, numbers = make_report(args.directory, args.out, options)
    print(f"wrote {index} ({', '.join(numbers.get('figures', [])) or 'comparison figures and a report per run'})")
    return 0
