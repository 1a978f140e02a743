"""``bohb-runner best DIR``: a study's incumbent (and, with ``--retrain``, its weights)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bohb_runner.errors import UserError
from bohb_runner.store.describe import describe_results, format_budget
from bohb_runner.store.results import StudyResults


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``best`` to ``bohb-runner``."""
    best = commands.add_parser("best", help="print a study's incumbent")
    best.add_argument("study_dir", type=Path, metavar="DIR")
    best.add_argument("--json", action="store_true", help="print JSON")
    best.add_argument(
        "--retrain", type=Path, metavar="OUT.pt", help="retrain the incumbent at its budget, save weights"
    )
    best.add_argument("--device", default="cpu", help="device for --retrain (default: cpu, reproducible)")
    best.set_defaults(handler=_cmd_best)


def _cmd_best(args: argparse.Namespace) -> int:
    results = StudyResults.load(args.study_dir)
    if args.retrain is not None:
        from bohb_runner.worker.retrain import retrain_incumbent

        outcome = retrain_incumbent(results, args.retrain, device=args.device)
        if args.json:
            print(json.dumps({**results.summary(), "retrained": outcome}, indent=2))
        else:
            print(describe_results(results))
            print(
                f"retrained on budget {format_budget(outcome['budget'])}: validation error "
                f"{outcome['loss']:.4f}, weights saved to {args.retrain}"
            )
        return 0
    if results.incumbent is None and not args.json:
        raise UserError(f"{args.study_dir}: no successful evaluation yet")
    if args.json:
        print(json.dumps(results.summary(), indent=2))
    else:
        print(describe_results(results))
    return 0
