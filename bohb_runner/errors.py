"""Errors a user can fix: the CLI prints them as one line and exits non-zero, without a traceback."""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input (a file, an option, a directory) rather than a bug.

    The message must stand on its own in one line: what was wrong and where, so that the
    user can fix it without reading a traceback. The traceback still goes to the study log.
    """

    exit_code = 2


class DataError(UserError):
    """A data directory or data file that is missing or malformed; the message names the file."""


class SpaceError(UserError):
    """A search-space file that does not parse, has impossible bounds or names a hyperparameter
    the worker does not understand; the message names the file and the hyperparameter."""


class StudyError(UserError):
    """A study directory that cannot be used as asked (missing, corrupt, or contradicting the options)."""


class StudyFailed(RuntimeError):
    """The optimization could not go on; the message is one line, details are in the log."""


class StopRequested(BaseException):
    """SIGTERM (what SLURM sends before a time limit): stop handing out work and exit cleanly."""
