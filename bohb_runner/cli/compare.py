"""``bohb-runner compare``: several optimizers and seeds under one limit (:mod:`bohb_runner.analysis.compare`)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from functools import partial
from pathlib import Path

from bohb_runner.cli.options import (
    add_local_worker_options,
    add_master_options,
    add_study_options,
    listen_address,
    requested_settings,
    run_options,
)
from bohb_runner.errors import UserError
from bohb_runner.store.settings import OPTIMIZERS


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``compare`` to ``bohb-runner``."""
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
    # the same for every run; --optimizers and --seeds vary them
    add_study_options(compare, study_dir=False, leave_out=("optimizer", "seed"))
    add_master_options(compare)
    compare.add_argument("--workers", type=int, default=1, help="local worker processes per run (default: 1)")
    add_local_worker_options(compare)
    compare.set_defaults(handler=_cmd_compare)


def _cmd_compare(args: argparse.Namespace) -> int:
    from bohb_runner.analysis.compare import prepare_comparison, run_comparison
    from bohb_runner.analysis.comparison_outputs import write_comparison_outputs

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
