"""A master run inside someone else's process leaves that process as it found it.

``bohb-runner run`` and ``master`` are processes of their own. ``bohb_runner.run_study`` is not:
it runs in a notebook's kernel or inside another program, whose process-wide settings belong to
the caller. While it runs, a master needs some of them set its own way; :func:`host_state_kept`
gives them back when it stops, however it stops (returns, fails, is interrupted):

* logging: the root handler and level for ``master.log``, ``captureWarnings``, the levels of
  the loggers bohb-runner changes, both excepthooks (:func:`bohb_runner.logs.logging_state_kept`);
* the warning filters (ConfigSpace's deprecation warnings for hpbandster's calls are hidden,
  :func:`bohb_runner.compat.silence_configspace_deprecations`);
* ``Pyro4.config`` (:func:`bohb_runner.wire.pyro.pyro_settings_kept`) and the process's study key
  (:mod:`bohb_runner.wire.auth`);
* ``sys.path``, where importing a ``module:Class`` worker puts the current directory
  (:mod:`bohb_runner.worker.loading`).

Two things need no restoring because a study never changes them: numpy's global RNG (the master
and its samplers draw from generators of their own; hpbandster's sampler, which can only use the
global one, has it saved, seeded and restored around each call, see
:mod:`bohb_runner.master.study_master`), and the matplotlib backend (figures are drawn without
pyplot, :mod:`bohb_runner.analysis.figures`). The SIGTERM handler is put back by
:mod:`bohb_runner.master.stopping`.

Restoring is not thread-safe against the caller: settings another thread of the caller changes
while a study runs are put back at the end too.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterator

from bohb_runner.logs import logging_state_kept
from bohb_runner.wire import auth
from bohb_runner.wire.pyro import pyro_settings_kept


@contextlib.contextmanager
def host_state_kept() -> Iterator[None]:
    """Run the block (a study's master) and put the process-wide state above back afterwards.

    Usable as a decorator too (``@host_state_kept()``); nesting is harmless.
    """
    with contextlib.ExitStack() as stack:
        stack.enter_context(_sys_path_kept())
        stack.callback(auth.use_key, auth.process_key())
        stack.enter_context(pyro_settings_kept())
        # the filters and warnings.showwarning; logging_state_kept then undoes captureWarnings first
        stack.enter_context(warnings.catch_warnings())
        stack.enter_context(logging_state_kept())
        yield


@contextlib.contextmanager
def _sys_path_kept() -> Iterator[None]:
    saved = list(sys.path)
    try:
        yield
    finally:
        sys.path[:] = saved
