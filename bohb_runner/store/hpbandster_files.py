"""hpbandster's live-result files, both ways: a study exported for hpbandster's tools, and
hpbandster's own result directories read as evaluations.

``configs.json`` holds ``[config_id, config, config_info]`` per line and ``results.json``
``[config_id, budget, time_stamps, result, exception]``, exactly what hpbandster's
``json_result_logger`` writes, so ``hpbandster.core.result.logged_results_to_HBS_result``
and hpbandster's visualisation functions read the export. Reading the lines directly (rather
than through ``logged_results_to_HBS_result``) keeps the time stamps and error texts as they
are and gives the same :class:`~bohb_runner.store.journal.Evaluation` records a study's
journal does, so every report works on both.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from bohb_runner.errors import StudyError, UserError
from bohb_runner.store.files import read_json_lines
from bohb_runner.store.journal import Evaluation
from bohb_runner.store.results import StudyResults

FORMATS = ("hpbandster",)
CONFIGS_FILE = "configs.json"
RESULTS_FILE = "results.json"


def export_hpbandster(results: StudyResults, out_dir: Path) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{out_dir}: cannot create the export directory ({exc.strerror})") from None
    configs_path, results_path = out_dir / CONFIGS_FILE, out_dir / RESULTS_FILE
    written: set[tuple[int, int, int]] = set()
    with open(configs_path, "w") as fh:
        for sampled in results.sampled:
            if sampled.config_id not in written:
                fh.write(json.dumps([list(sampled.config_id), sampled.config, sampled.config_info]) + "\n")
                written.add(sampled.config_id)
        for evaluation in results.evaluations:  # configurations a journal lacks (e.g. copied studies)
            if evaluation.config_id not in written:
                fh.write(json.dumps([list(evaluation.config_id), evaluation.config, evaluation.config_info]) + "\n")
                written.add(evaluation.config_id)
    with open(results_path, "w") as fh:
        for e in results.evaluations:
            stamps = {"submitted": e.submitted, "started": e.started, "finished": e.finished}
            result = {"loss": e.loss, "info": e.info} if e.ok else None
            fh.write(json.dumps([list(e.config_id), e.budget, stamps, result, e.error]) + "\n")
    return configs_path, results_path


def is_hpbandster_dir(directory: Path) -> bool:
    return (Path(directory) / CONFIGS_FILE).is_file() and (Path(directory) / RESULTS_FILE).is_file()


def _json_lines(path: Path) -> list[tuple[int, Any]]:
    """Parsed lines with their numbers. hpbandster's files may be read while a live run appends
    to them, so a last line without its newline yet is left for the next read, quietly."""
    return list(read_json_lines(path, what="hpbandster line", torn_tail="quiet"))


def _config_id(value: Any, where: str) -> tuple[int, int, int]:
    if not isinstance(value, list) or len(value) != 3:
        raise StudyError(f"{where}: expected a config id [iteration, bracket, index], got {value!r}")
    try:
        return (int(value[0]), int(value[1]), int(value[2]))
    except (TypeError, ValueError):
        raise StudyError(f"{where}: expected a config id of three integers, got {value!r}") from None


def read_hpbandster_results(directory: str | Path) -> list[Evaluation]:
    """The evaluations in an hpbandster result directory, in the order they were logged."""
    directory = Path(directory)
    configs: dict[tuple[int, int, int], tuple[dict[str, Any], dict[str, Any]]] = {}
    for number, record in _json_lines(directory / CONFIGS_FILE):
        where = f"{directory / CONFIGS_FILE}:{number}"
        if not isinstance(record, list) or len(record) < 2 or not isinstance(record[1], dict):
            raise StudyError(f"{where}: expected [config_id, config, config_info]")
        info = record[2] if len(record) > 2 and isinstance(record[2], dict) else {}
        configs[_config_id(record[0], where)] = (record[1], info)
    evaluations = []
    for number, record in _json_lines(directory / RESULTS_FILE):
        where = f"{directory / RESULTS_FILE}:{number}"
        if not isinstance(record, list) or len(record) != 5:
            raise StudyError(f"{where}: expected [config_id, budget, time_stamps, result, exception]")
        raw_id, budget, stamps, result, exception = record
        config_id = _config_id(raw_id, where)
        try:
            budget = float(budget)
        except (TypeError, ValueError):
            raise StudyError(f"{where}: budget {budget!r} is not a number") from None
        stamps = stamps if isinstance(stamps, dict) else {}
        loss = result.get("loss") if isinstance(result, dict) else None
        ok = isinstance(loss, (int, float)) and math.isfinite(loss)
        config, config_info = configs.get(config_id, ({}, {}))
        evaluations.append(
            Evaluation(
                config_id=config_id,
                budget=budget,
                loss=float(loss) if ok else None,
                status="ok" if ok else "failed",
                config=config,
                config_info=config_info,
                info=result.get("info") if isinstance(result, dict) else None,
                error=None if ok else (exception or "no loss reported"),
                worker=None,
                submitted=stamps.get("submitted"),
                started=stamps.get("started"),
                finished=stamps.get("finished"),
            )
        )
    return evaluations
