"""A study run through the Python API leaves the process it runs in as it found it.

The API runs in notebooks and inside other programs, whose numpy RNG, logging, warnings,
matplotlib backend, excepthooks, Pyro4 settings, signal handlers and ``sys.path`` belong to
them. The check runs in a fresh interpreter (so no other test's state leaks in), which sets
each of these to something of its own first, then runs two real BOHB studies (the vectorised
sampler and hpbandster's own) with a real nameserver and worker process, writes a report with
its figures, runs a study that fails (its workers crash), and compares everything with what it set.

The snapshot is taken after the modules the study uses are imported: what importing a
third-party library does (statsmodels adds warning filters for its own classes) is not the
study's doing. The matplotlib backend is the exception: it is chosen before anything is
imported, since selecting a backend at import time is exactly what a library must not do.
"""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import TESTS, cli_env

QUADRATIC = TESTS / "data" / "quadratic.yaml"

CALLER = r"""
import sys, json
study_root, space = sys.argv[1], sys.argv[2]

import matplotlib
matplotlib.use("svg")  # the caller's backend (a notebook's would be inline)
callers_backend = matplotlib.get_backend()

import hashlib, io, logging, signal, threading, warnings
from pathlib import Path
import numpy as np
import Pyro4
import matplotlib.pyplot as plt
import bohb_runner
import bohb_runner.api, bohb_runner.analysis.report, bohb_runner.errors, bohb_runner.wire.auth  # imports first (see the docstring)


def caller_excepthook(*args):
    pass


def caller_sigterm(signum, frame):
    pass


np.random.seed(1234)
root = logging.getLogger()
caller_handler = logging.StreamHandler(io.StringIO())
root.addHandler(caller_handler)
root.setLevel(logging.ERROR)
logging.getLogger("Pyro4").setLevel(logging.CRITICAL)
threading.excepthook = caller_excepthook
sys.excepthook = caller_excepthook
warnings.filterwarnings("always", message="the caller's own filter")
Pyro4.config.SERIALIZER = "json"
Pyro4.config.THREADPOOL_SIZE = 17
signal.signal(signal.SIGTERM, caller_sigterm)
showwarning = warnings.showwarning


def snapshot():
    return {
        "numpy global RNG": hashlib.sha256(repr(np.random.get_state()).encode()).hexdigest(),
        "matplotlib backend": matplotlib.get_backend(),
        "pyplot figures open": plt.get_fignums(),
        "root handlers": [id(h) for h in root.handlers],
        "root level": root.level,
        "Pyro4 logger level": logging.getLogger("Pyro4").level,
        "bohb_runner logger handlers": [id(h) for h in logging.getLogger("bohb_runner").handlers],
        "threading.excepthook": threading.excepthook is caller_excepthook,
        "sys.excepthook": sys.excepthook is caller_excepthook,
        "warnings.filters": [repr(f) for f in warnings.filters],
        "warnings.showwarning (captureWarnings)": warnings.showwarning is showwarning,
        "Pyro4.config": {k: repr(sorted(v) if isinstance(v, set) else v) for k, v in Pyro4.config.asDict().items()},
        "SIGTERM handler": signal.getsignal(signal.SIGTERM) is caller_sigterm,
        "sys.path": list(sys.path),
        "study key of the process": bohb_runner.wire.auth.process_key(),
    }


before = {**snapshot(), "matplotlib backend": callers_backend}  # chosen before any import
for sampler in ("vectorized", "hpbandster"):
    study = Path(study_root) / sampler
    results = bohb_runner.run_study(
        space, study, worker="user_worker:QuadraticWorker", workers=1, max_budget=3, iterations=4,
        random_fraction=0.0, sampler=sampler, progress=True,
    )
    assert len(results.evaluations) == 12, len(results.evaluations)
    model_based = [json.loads(line)["config_info"].get("model_based_pick") for line in open(study / "configs.jsonl")]
    assert any(model_based), f"{sampler}: no model-based configuration: the model's draws were not exercised"
bohb_runner.analysis.report.make_report(Path(study_root) / "vectorized")
try:  # and a study that fails: every local worker crashes on start
    bohb_runner.run_study(space, Path(study_root) / "failing", worker="user_worker:CrashingWorker", progress=False)
    raise AssertionError("the study with crashing workers did not fail")
except bohb_runner.errors.StudyFailed as failure:
    assert "local worker processes exited" in str(failure), failure
after = snapshot()
changed = {key: {"before": before[key], "after": after[key]} for key in before if before[key] != after[key]}
print("CHANGED " + json.dumps(changed, default=repr))
"""


def test_a_study_through_the_api_leaves_the_callers_process_state_alone(tmp_path):
    script = tmp_path / "caller.py"
    script.write_text(CALLER)
    cwd = tmp_path / "elsewhere"  # not the script's directory: where a worker module would be looked up
    cwd.mkdir()
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "studies"), str(QUADRATIC)],
        capture_output=True,
        text=True,
        timeout=300,
        env=cli_env(),
        cwd=cwd,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("CHANGED "))
    changed = json.loads(line.removeprefix("CHANGED "))
    assert not changed, f"changed: {', '.join(changed)}\n{json.dumps(changed, indent=1)[:4000]}"
    assert (tmp_path / "studies" / "vectorized" / "report" / "index.html").exists()
