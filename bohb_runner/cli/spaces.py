"""The ``spaces`` command: tools for search-space files (``spaces narrow``, see bohb_runner.analysis.narrow)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(commands: argparse._SubParsersAction) -> None:
    """Add this module's sub-commands to ``bohb-runner``."""
    from bohb_runner.analysis.narrow import DEFAULT_MARGIN, DEFAULT_TOP, MIN_EVALUATIONS

    spaces = commands.add_parser("spaces", help="search-space tools (narrow a space to a study's best region)")
    tools = spaces.add_subparsers(dest="spaces_command", required=True, metavar="TOOL")
    narrow = tools.add_parser(
        "narrow",
        help="write a space restricted to the region of a study's best configurations",
        description="Take the best --top share of a study's successful evaluations on its largest budget with "
        f"at least --min-evaluations of them (default {MIN_EVALUATIONS}), shrink every numeric range to theirs "
        "(log space for log hyperparameters, widened by --margin), drop categorical values none of them uses, "
        "and write the space (ConfigSpace YAML or JSON, by the suffix of --out) for a second, finer study.",
    )
    narrow.add_argument("study_dir", type=Path, metavar="DIR", help="the study directory")
    narrow.add_argument("--out", required=True, type=Path, help="the new space file (.yaml, .yml or .json)")
    narrow.add_argument(
        "--top",
        type=float,
        default=DEFAULT_TOP,
        help=f"share of the evaluations to keep, in (0, 1] (default: {DEFAULT_TOP:g})",
    )
    narrow.add_argument(
        "--margin",
        type=float,
        default=DEFAULT_MARGIN,
        help=f"widen each numeric range by this share of its original width on each side (default: {DEFAULT_MARGIN:g})",
    )
    narrow.add_argument(
        "--min-evaluations",
        type=int,
        default=MIN_EVALUATIONS,
        help=f"fewest successful evaluations a budget needs to be used (default: {MIN_EVALUATIONS})",
    )
    narrow.add_argument("--budget", type=float, default=None, help="use this budget's evaluations (default: see above)")
    narrow.set_defaults(handler=_cmd_narrow)


def _cmd_narrow(args: argparse.Namespace) -> int:
    from bohb_runner.analysis.narrow import narrow_space, write_space
    from bohb_runner.errors import UserError
    from bohb_runner.store.results import StudyResults

    if not 0 < args.top <= 1:
        raise UserError(f"--top must be in (0, 1], got {args.top:g}")
    results = StudyResults.load(args.study_dir)
    if not any(e.ok for e in results.evaluations):
        raise UserError(f"{args.study_dir}: no successful evaluations yet, so no region to narrow the space to")
    source = results.settings.space_file or f"{args.study_dir}/study.json"
    narrowing = narrow_space(
        results.settings.space,
        results.evaluations,
        top=args.top,
        margin=args.margin,
        min_evaluations=args.min_evaluations,
        budget=args.budget,
    )
    headline = (
        f"narrowed {source} to the best {args.top * 100:g}%: {len(narrowing.chosen)} of {narrowing.considered} successful "
        f"evaluations on budget {narrowing.budget:g} (study {args.study_dir})"
    )
    write_space(
        narrowing.space, args.out, header=f"{headline}\nmargin {args.margin:g}; written by bohb-runner spaces narrow"
    )
    print(headline)
    width = max(len(name) for name, _ in narrowing.changes)
    for name, change in narrowing.changes:
        print(f"  {name:<{width}}  {change}")
    for note in narrowing.notes:
        print(f"note: {note}")
    print(f"wrote {args.out}")
    return 0
