"""What a resumed master starts from: the study's journals, and hpbandster's live files continued.

hpbandster's own ``configs.json``/``results.json`` in ``STUDY_DIR/hpbandster/`` are a second
record, readable by hpbandster's tools while the study runs; on resume they are rewritten from
the journal (which is authoritative) and appended to from there.
"""

from __future__ import annotations

from pathlib import Path

from hpbandster.core.result import json_result_logger

from bohb_runner.master.study_master import StudyHistory
from bohb_runner.store.hpbandster_files import export_hpbandster
from bohb_runner.store.journal import (
    CONFIGS_JOURNAL,
    RESULTS_JOURNAL,
    SampledConfig,
    read_evaluations,
    read_sampled_configs,
    repair_torn_tail,
)
from bohb_runner.store.results import StudyResults
from bohb_runner.store.settings import read_settings

# hpbandster's own live result files (configs.json, results.json), written by its
# json_result_logger as the study runs, for hpbandster's tools and as a second record
HPBANDSTER_LIVE_DIR = "hpbandster"


def read_history(study_dir: Path) -> StudyHistory:
    """The study's journals, with torn last lines (from a crash) cut off first.

    ``configs.jsonl`` is written without fsync (see ``run_master``): after a power cut it may
    lack configurations that ``results.jsonl`` (fsynced) holds, and those are taken from there.
    """
    for name in (RESULTS_JOURNAL, CONFIGS_JOURNAL):
        repair_torn_tail(study_dir / name)
    evaluations = read_evaluations(study_dir)
    sampled = read_sampled_configs(study_dir)
    known = {s.config_id for s in sampled}
    for e in evaluations:
        if e.config_id not in known:
            known.add(e.config_id)
            sampled.append(SampledConfig(e.config_id, e.config, e.config_info, e.submitted or 0.0))
    return StudyHistory(evaluations, sampled)


class ContinuedResultLogger(json_result_logger):
    """hpbandster's live result logger, continuing files that already hold a study's history.

    hpbandster's ``__init__`` truncates (or refuses) existing files, so this one only sets the
    attributes its ``new_config`` and ``__call__`` use; writing is hpbandster's own code.
    """

    def __init__(self, directory: Path, known_config_ids: set[tuple[int, int, int]]) -> None:
        self.config_fn = str(directory / "configs.json")
        self.results_fn = str(directory / "results.json")
        self.config_ids = set(known_config_ids)


def continued_hpbandster_log(study_dir: Path, history: StudyHistory) -> ContinuedResultLogger:
    """The live hpbandster files rewritten from the journal, and a logger appending to them."""
    live = study_dir / HPBANDSTER_LIVE_DIR
    export_hpbandster(StudyResults(study_dir, read_settings(study_dir), history.evaluations, history.sampled), live)
    known = {s.config_id for s in history.sampled} | {e.config_id for e in history.evaluations}
    return ContinuedResultLogger(live, known)
