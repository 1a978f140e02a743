"""Placeholder: this module's commands are being written (see COMMAND_MODULES in cli.py)."""

from __future__ import annotations

import argparse


def register(commands: argparse._SubParsersAction) -> None:
    """Add this module's sub-commands to ``bohb-runner``."""
