"""``bohb-runner export DIR --format hpbandster OUT``: a study in other tools' formats."""

from __future__ import annotations

import argparse
from pathlib import Path

from bohb_runner.store.hpbandster_files import FORMATS, export_hpbandster
from bohb_runner.store.results import StudyResults


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``export`` to ``bohb-runner``."""
    export = commands.add_parser("export", help="export a study for other tools")
    export.add_argument("study_dir", type=Path, metavar="DIR")
    export.add_argument("--format", choices=FORMATS, default="hpbandster")
    export.add_argument("out", type=Path, metavar="OUT", help="output directory")
    export.set_defaults(handler=_cmd_export)


def _cmd_export(args: argparse.Namespace) -> int:
    results = StudyResults.load(args.study_dir)
    configs, result_file = export_hpbandster(results, args.out)
    print(f"wrote {configs} and {result_file} ({len(results.evaluations)} results)")
    return 0
