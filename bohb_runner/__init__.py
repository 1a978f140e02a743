"""bohb-runner: multi-fidelity hyperparameter optimization (BOHB, Hyperband, random search) on
hpbandster, with a journal, a CLI and local or SLURM workers.

The Python API, for notebooks and scripts::

    import bohb_runner
    results = bohb_runner.run_study("spaces/lenet.yaml", "runs/nb", workers=2, iterations=2)
    print(results.incumbent)
    results = bohb_runner.load_study("runs/nb")   # any time, also while it runs
    results = bohb_runner.run_study(study_dir="runs/nb", iterations=4)   # resume it: the rest from the study
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["run_study", "load_study", "StudyResults", "StudySettings", "Evaluation", "__version__"]


def __getattr__(name: str) -> Any:
    # Imported lazily: hpbandster pulls in statsmodels, which the CLI's --help should not wait for.
    if name in ("run_study", "load_study"):
        from bohb_runner import api

        return getattr(api, name)
    if name == "StudyResults":
        from bohb_runner.store.results import StudyResults

        return StudyResults
    if name == "StudySettings":
        from bohb_runner.store.settings import StudySettings

        return StudySettings
    if name == "Evaluation":
        from bohb_runner.store.journal import Evaluation

        return Evaluation
    raise AttributeError(f"module 'bohb_runner' has no attribute {name!r}")
