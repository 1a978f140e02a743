"""``bohb-runner status DIR``: the command; :mod:`bohb_runner.status.collect` gathers the state,
:mod:`bohb_runner.status.text` puts it in words."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``status`` to ``bohb-runner``."""
    status = commands.add_parser(
        "status",
        help="where a study stands: SLURM jobs, master, live workers, jobs, incumbent, time per budget",
        description=(
            "Show a study's state from any node that sees its directory: a running study, a finished one "
            "or one whose master was killed."
        ),
    )
    status.add_argument("study_dir", type=Path, metavar="DIR")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(handler=_cmd_status)


def _cmd_status(args: argparse.Namespace) -> int:
    from bohb_runner.status.collect import collect_status
    from bohb_runner.status.text import format_status

    status = collect_status(args.study_dir)
    if args.json:
        print(json.dumps(status.to_json(), indent=2))
    else:
        print(format_status(status))
    return 0
