"""The command line: ``bohb-runner COMMAND``, one module per command, over the library.

Each command module has ``register(commands)``, which adds its sub-parsers with a
``handler``; the options several commands share are defined once in
:mod:`bohb_runner.cli.options`. User mistakes (:class:`~bohb_runner.errors.UserError`) end as
one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

from bohb_runner import __version__
from bohb_runner.errors import StopRequested, StudyFailed, UserError
from bohb_runner.store.results import StudyResults

# in the order ``bohb-runner --help`` lists them
COMMAND_MODULES: tuple[str, ...] = (
    "bohb_runner.cli.run",
    "bohb_runner.cli.worker",
    "bohb_runner.cli.best",
    "bohb_runner.cli.export",
    "bohb_runner.cli.status",
    "bohb_runner.cli.slurm",
    "bohb_runner.cli.compare",
    "bohb_runner.cli.report",
    "bohb_runner.cli.spaces",
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except UserError as exc:
        print(f"bohb-runner: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except StudyFailed as exc:
        where = f" (details in {Path(args.study_dir) / 'logs'})" if getattr(args, "study_dir", None) else ""
        print(f"bohb-runner: study failed: {exc}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(_interrupted_message(args, "interrupted"), file=sys.stderr)
        return 130
    except StopRequested:
        print(_interrupted_message(args, "stopped by SIGTERM"), file=sys.stderr)
        return 143


def _interrupted_message(args: argparse.Namespace, what: str) -> str:
    study_dir = getattr(args, "study_dir", None)
    if not study_dir:
        return f"bohb-runner: {what}"
    try:
        count = len(StudyResults.load(study_dir).evaluations)
    except UserError:
        return f"bohb-runner: {what}"
    return (
        f"bohb-runner: {what}; {count} finished evaluations are kept in {Path(study_dir) / 'results.jsonl'};"
        " run the same command again to resume"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bohb-runner",
        description="Multi-fidelity hyperparameter optimization (BOHB, Hyperband, random search) with hpbandster.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(commands)
    return parser


if __name__ == "__main__":
    sys.exit(main())
