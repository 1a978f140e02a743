"""Export a study in hpbandster's live-result format, for hpbandster's own tools.

``configs.json`` holds ``[config_id, config, config_info]`` per line and ``results.json``
``[config_id, budget, time_stamps, result, exception]``, exactly what hpbandster's
``json_result_logger`` writes, so ``hpbandster.core.result.logged_results_to_HBS_result``
and hpbandster's visualisation functions read the export.
"""

from __future__ import annotations

import json
from pathlib import Path

from bohb_runner.errors import UserError
from bohb_runner.results import StudyResults

FORMATS = ("hpbandster",)


def export_hpbandster(results: StudyResults, out_dir: Path) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{out_dir}: cannot create the export directory ({exc.strerror})") from None
    configs_path, results_path = out_dir / "configs.json", out_dir / "results.json"
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
