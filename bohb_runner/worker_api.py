"""Kept for user workers that import it (``from bohb_runner.worker_api import HyperparameterSpec``):
the worker API lives in :mod:`bohb_runner.worker.api`."""

from bohb_runner.worker.api import HyperparameterSpec, StudyContext

__all__ = ["HyperparameterSpec", "StudyContext"]
