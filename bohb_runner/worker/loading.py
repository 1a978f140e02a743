"""Find the worker class a study names (``module:Class`` or ``path/to/file.py:Class``)."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from hpbandster.core.worker import Worker

from bohb_runner.errors import UserError
from bohb_runner.worker.api import HyperparameterSpec


def load_worker_class(spec: str) -> type[Worker]:
    """Import the class; every way this can fail is a one-line :class:`UserError`."""
    module_name, sep, class_name = spec.rpartition(":")
    if not sep or not module_name or not class_name:
        raise UserError(f"--worker {spec!r}: expected module:Class or path/to/file.py:Class")
    module = _import_module(spec, module_name)
    cls = getattr(module, class_name, None)
    if cls is None:
        raise UserError(f"--worker {spec!r}: module {module_name!r} has no attribute {class_name!r}")
    if not (isinstance(cls, type) and issubclass(cls, Worker)):
        raise UserError(f"--worker {spec!r}: {class_name} is not a subclass of hpbandster.core.worker.Worker")
    return cls


def _import_module(spec: str, module_name: str) -> Any:
    if module_name.endswith(".py") or "/" in module_name:
        path = Path(module_name)
        if not path.is_file():
            raise UserError(f"--worker {spec!r}: no such file {path}")
        name = f"bohb_runner_user_worker_{path.stem}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise UserError(f"--worker {spec!r}: cannot load {path} as a Python module")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as exc:
            raise UserError(f"--worker {spec!r}: importing {path} failed ({type(exc).__name__}: {exc})") from exc
        return module
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        # Users' worker modules usually sit in the project, and often import their siblings
        # later (inside compute or prepare_study), so the directory stays on sys.path for the
        # life of the process rather than for this import only: right in a worker or CLI
        # process; a study run through the Python API gives the caller's sys.path back when it
        # ends (bohb_runner.master.host).
        sys.path.insert(0, str(Path.cwd()))
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise UserError(f"--worker {spec!r}: cannot import {module_name!r} ({exc})") from exc
    except Exception as exc:
        raise UserError(f"--worker {spec!r}: importing {module_name!r} failed ({type(exc).__name__}: {exc})") from exc


def declared_hyperparameters(cls: type) -> dict[str, HyperparameterSpec] | None:
    """The worker's ``HYPERPARAMETERS`` declaration, or None if it declares nothing."""
    specs = getattr(cls, "HYPERPARAMETERS", None)
    if specs is None:
        return None
    return dict(specs)
