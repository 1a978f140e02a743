"""``bohb-runner compare``: every optimizer, every seed, the same limit, one study each.

A comparison is a directory: ``comparison.json`` (what was asked), ``runs.json`` (which runs
are finished, and when each ran, so that wall-clock curves leave out pauses) and one ordinary
study directory per (optimizer, seed), e.g. ``bohb-seed0/``. Running ``compare`` again resumes
unfinished runs and skips finished ones, as ``bohb-runner run`` does for one study.

The budget limit E is met exactly, not approximately: each run gets the fewest Hyperband
iterations whose planned cost reaches E, and its anytime curve and final numbers are cut at
E epochs consumed (what finished after is in the journal but not in the comparison). So
"final" means the same for every optimizer: the incumbent among the evaluations that
finished within the first E epochs.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bohb_runner.analysis.sources import COMPARISON_FILE, read_json_file
from bohb_runner.errors import StudyError, UserError
from bohb_runner.store.files import write_json_atomically
from bohb_runner.store.results import StudyResults
from bohb_runner.store.settings import OPTIMIZERS, SETTINGS_FILE, new_settings

RUNS_FILE = "runs.json"
# iterations of a run limited by wall-clock time only: more than any time limit will allow
TIME_LIMITED_ITERATIONS = 1000
MAX_ITERATIONS = 100_000


@dataclass
class ComparisonSpec:
    """What a comparison runs; stored as ``comparison.json``."""

    optimizers: list[str]
    seeds: list[int]
    study: dict[str, Any]  # requested study settings, as for ``bohb-runner run``, without optimizer and seed
    budget_limit: float | None = None
    time_limit: float | None = None
    iterations: dict[str, int] = field(default_factory=dict)
    created: float = 0.0

    def run_names(self) -> list[tuple[str, str, int]]:
        """Seed by seed, so that a comparison stopped half-way has every optimizer on the first seeds."""
        return [(run_name(o, s), o, s) for s in self.seeds for o in self.optimizers]

    @property
    def axis(self) -> str:
        """The axis the limit is on, and the speed-up is measured along."""
        return "budget" if self.budget_limit is not None else "time"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ComparisonSpec:
        try:
            return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        except TypeError as exc:
            raise StudyError(f"{COMPARISON_FILE}: malformed ({exc})") from None


def run_name(optimizer: str, seed: int) -> str:
    return f"{optimizer}-seed{seed}"


def parse_optimizers(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UserError("--optimizers: name at least one optimizer, e.g. randomsearch,hyperband,bohb")
    for name in names:
        if name not in OPTIMIZERS:
            raise UserError(f"--optimizers: unknown optimizer {name!r} (known: {', '.join(OPTIMIZERS)})")
    if len(set(names)) != len(names):
        raise UserError(f"--optimizers {text!r}: an optimizer is named twice")
    return names


def parse_seeds(text: str) -> list[int]:
    """``3`` means seeds 0, 1, 2; ``0,5,7`` means exactly those."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"--seeds {text!r}: expected a count (3) or a list of seeds (0,5,7)") from None
    if "," not in text:
        if len(values) != 1 or values[0] < 1:
            raise UserError(f"--seeds {text!r}: the number of seeds must be at least 1")
        return list(range(values[0]))
    if any(v < 0 for v in values) or len(set(values)) != len(values):
        raise UserError(f"--seeds {text!r}: seeds must be distinct and non-negative")
    return values


def iterations_for_budget(optimizer: str, study: dict[str, Any], budget_limit: float) -> int:
    """The fewest iterations whose planned cost reaches ``budget_limit`` epochs."""
    from bohb_runner.store.schedule import evaluation_epochs, schedule_of

    settings = new_settings({**study, "optimizer": optimizer})
    schedule = schedule_of(settings)
    spent = 0.0
    for n in range(1, MAX_ITERATIONS + 1):
        try:
            spent += evaluation_epochs(schedule.bracket(optimizer, n - 1).cost, settings)
        except ValueError:  # a finite search (grid) ends before the limit: run all of it
            return n - 1
        if spent >= budget_limit - 1e-9:
            return n
    raise UserError(f"--budget-limit {budget_limit:g} needs more than {MAX_ITERATIONS} iterations")


def new_spec(args: Any, study: dict[str, Any]) -> ComparisonSpec:
    if args.optimizers is None:
        args.optimizers = "randomsearch,hyperband,bohb"
    optimizers = parse_optimizers(args.optimizers)
    seeds = parse_seeds(args.seeds or "3")
    if args.budget_limit is None and args.time_limit is None:
        raise UserError("give --budget-limit EPOCHS or --time-limit SECONDS (or both): the limit every run gets")
    if args.budget_limit is not None and not args.budget_limit > 0:
        raise UserError(f"--budget-limit must be positive, got {args.budget_limit:g}")
    if args.time_limit is not None and not args.time_limit > 0:
        raise UserError(f"--time-limit must be positive, got {args.time_limit:g}")
    if "space" not in study:
        raise UserError("--space is required to start a comparison")
    if args.budget_limit is not None and "iterations" in study:
        raise UserError("--iterations is set by --budget-limit (the fewest iterations that spend it); leave it out")
    spec = ComparisonSpec(optimizers, seeds, dict(study), args.budget_limit, args.time_limit, created=time.time())
    for optimizer in optimizers:
        settings = new_settings({**study, "optimizer": optimizer})
        settings.validate()  # bad budgets or options: refused before any run starts
        if args.budget_limit is not None:
            spec.iterations[optimizer] = iterations_for_budget(optimizer, study, args.budget_limit)
        else:
            spec.iterations[optimizer] = int(study.get("iterations") or TIME_LIMITED_ITERATIONS)
        spec.study.pop("iterations", None)
    return spec


def merge_spec(stored: ComparisonSpec, args: Any, study: dict[str, Any]) -> ComparisonSpec:
    """The stored comparison, with more optimizers or seeds if asked; anything else must agree."""
    for key, value in study.items():
        if key == "space_file":
            continue
        if key not in stored.study or stored.study[key] != value:
            if key == "space":
                raise StudyError("--space differs from the comparison's space; use another --out")
            option = "--" + key.split(".")[-1].replace("_", "-")
            raise StudyError(
                f"{option} {value} contradicts the comparison ({stored.study.get(key)!r}); use another --out"
            )
    for option, new, old in (
        ("--budget-limit", args.budget_limit, stored.budget_limit),
        ("--time-limit", args.time_limit, stored.time_limit),
    ):
        if new is not None and new != old:
            raise StudyError(f"{option} {new:g} contradicts the comparison ({old}); use another --out")
    if args.optimizers is not None:
        for optimizer in parse_optimizers(args.optimizers):
            if optimizer not in stored.optimizers:
                stored.optimizers.append(optimizer)
                settings = new_settings({**stored.study, "optimizer": optimizer})
                settings.validate()
                stored.iterations[optimizer] = (
                    iterations_for_budget(optimizer, stored.study, stored.budget_limit)
                    if stored.budget_limit is not None
                    else TIME_LIMITED_ITERATIONS
                )
    if args.seeds is not None:
        stored.seeds += [s for s in parse_seeds(args.seeds) if s not in stored.seeds]
    return stored


def load_spec(out: Path) -> ComparisonSpec:
    data = read_json_file(out / COMPARISON_FILE)
    if not isinstance(data, dict):
        raise StudyError(f"{out / COMPARISON_FILE}: not a comparison file")
    return ComparisonSpec.from_json(data)


class RunLog:
    """``runs.json``: per run, whether it is finished and the wall-clock sessions it ran in."""

    def __init__(self, out: Path) -> None:
        self.path = out / RUNS_FILE
        self.runs: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            data = read_json_file(self.path)
            self.runs = data if isinstance(data, dict) else {}

    def finished(self, name: str) -> bool:
        return bool(self.runs.get(name, {}).get("finished"))

    def sessions(self, name: str) -> list[tuple[float, float | None]]:
        return [tuple(s) for s in self.runs.get(name, {}).get("sessions", [])]  # type: ignore[misc]

    def time_used(self, name: str) -> float:
        return sum((end or start) - start for start, end in self.sessions(name))

    def session_started(self, name: str) -> int:
        run = self.runs.setdefault(name, {"finished": False, "sessions": []})
        run["sessions"].append([time.time(), None])
        self.save()
        return len(run["sessions"]) - 1

    def session_ended(self, name: str, index: int, finished: bool, stopped_by: str) -> None:
        run = self.runs[name]
        run["sessions"][index][1] = time.time()
        run["finished"] = finished
        run["stopped_by"] = stopped_by
        self.save()

    def save(self) -> None:
        write_json_atomically(self.path, self.runs, indent=2, sort_keys=True)


def prepare_comparison(args: Any, study: dict[str, Any]) -> ComparisonSpec:
    """The comparison in ``args.out``: the stored one (extended as asked) or a new one."""
    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: is a file, not a directory")
    if (out / COMPARISON_FILE).exists():
        spec = merge_spec(load_spec(out), args, study)
    else:
        if out.exists() and any(p for p in out.iterdir() if p.name != RUNS_FILE):
            raise UserError(f"--out {out}: not empty and not a comparison; choose another directory")
        spec = new_spec(args, study)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--out {out}: cannot create the directory ({exc.strerror})") from None
    write_json_atomically(out / COMPARISON_FILE, spec.to_json(), indent=2, sort_keys=True)
    return spec


def run_comparison(args: Any, spec: ComparisonSpec, run_options: Any) -> None:
    """Run every (optimizer, seed) that is not finished, one after the other."""
    from bohb_runner.errors import StopRequested
    from bohb_runner.master.create import open_study
    from bohb_runner.master.run import run_master
    from bohb_runner.store.describe import describe_study
    from bohb_runner.store.lock import StudyLock

    out: Path = args.out
    log = RunLog(out)
    runs = spec.run_names()
    for number, (name, optimizer, seed) in enumerate(runs, start=1):
        study_dir = out / name
        prefix = f"run {number}/{len(runs)}: {name}"
        if log.finished(name):
            print(f"{prefix}: finished, skipped", file=sys.stderr)
            continue
        remaining = None
        if spec.time_limit is not None:
            remaining = spec.time_limit - log.time_used(name)
            if remaining <= 0:
                log.runs.setdefault(name, {"sessions": []})["finished"] = True
                log.save()
                print(f"{prefix}: time limit already spent, skipped", file=sys.stderr)
                continue
        requested = {**spec.study, "optimizer": optimizer, "seed": seed, "iterations": spec.iterations[optimizer]}
        settings, resumed = open_study(study_dir, requested)
        print(f"{prefix}: {describe_study(study_dir, settings, resumed)}", file=sys.stderr)
        session = log.session_started(name)
        finished, stopped_by = False, "interrupted"
        started = time.monotonic()
        try:
            options = run_options(time_limit=remaining)
            run_master(study_dir, options)
            timed_out = remaining is not None and time.monotonic() - started >= remaining
            finished, stopped_by = True, "time limit" if timed_out else "completed"
        except StopRequested:
            stopped_by = "SIGTERM"
            raise
        finally:
            log.session_ended(name, session, finished, stopped_by)
            StudyLock(study_dir).release()  # open_study's hold: this run is over
        results = StudyResults.load(study_dir)
        print(
            f"{prefix}: done, {len(results.evaluations)} evaluations, {results.budget_used:g} epochs",
            file=sys.stderr,
        )


def study_dirs(out: Path, spec: ComparisonSpec) -> list[tuple[str, str, int, Path]]:
    """The runs of a comparison that have a study directory (some may still be running)."""
    found = []
    for name, optimizer, seed in spec.run_names():
        if (out / name / SETTINGS_FILE).exists():
            found.append((name, optimizer, seed, out / name))
    return found
