"""The sbatch scripts `bohb-runner slurm` writes: pure text, checked without a cluster.

Layouts (multi-node multi-GPU, CPU-only, add-workers arrays), the mapping of options to
#SBATCH lines, the GPU each srun task picks (by running the script's own bash function),
dry runs, and the one-line errors for bad options.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from bohb_runner.cli import main
from bohb_runner.errors import UserError
from bohb_runner.slurm.script import (
    JobEnvironment,
    JobOptions,
    WorkerLayout,
    normalise_extra_sbatch,
    parse_time_limit,
    render_study_script,
    render_workers_script,
)

from conftest import TESTS, assert_one_line_error, cli_env

QUADRATIC = TESTS / "data" / "quadratic.yaml"


def sbatch_lines(script: str) -> list[str]:
    return [line.removeprefix("#SBATCH ") for line in script.splitlines() if line.startswith("#SBATCH ")]


def srun_line(script: str) -> str:
    start = script.index("\nsrun ")
    return script[start : script.index("&\n", start)].replace("\\\n", " ")


def study_script(tmp_path: Path, layout: WorkerLayout, **job: object) -> str:
    return render_study_script(tmp_path / "study", layout, JobOptions(job_name="bohb-study", **job), JobEnvironment())


def test_multi_node_multi_gpu_layout(tmp_path):
    layout = WorkerLayout(nodes=2, gpus_per_node=4, workers_per_gpu=2, threads=4)
    script = study_script(tmp_path, layout, partition="gpu", time="4:00:00", account="proj42")
    lines = sbatch_lines(script)
    for expected in (
        "--nodes=2",
        "--ntasks-per-node=8",
        "--gpus-per-node=4",
        "--cpus-per-task=4",
        "--partition=gpu",
        "--time=4:00:00",
        "--account=proj42",
        "--job-name=bohb-study",
    ):
        assert expected in lines
    srun = srun_line(script)
    assert "--nodes=2" in srun and "--ntasks=16" in srun and "--ntasks-per-node=8" in srun
    assert "GPUS_PER_NODE=4" in script and "WORKERS_PER_GPU=2" in script and "THREADS=4" in script
    # the master starts once, in the batch script, not as srun tasks
    assert script.count("-m bohb_runner master") == 1
    assert layout.worker_count == 16


def test_cpu_only_layout(tmp_path):
    script = study_script(tmp_path, WorkerLayout(nodes=3, gpus_per_node=0, workers_per_node=5, threads=2))
    lines = sbatch_lines(script)
    assert "--nodes=3" in lines and "--ntasks-per-node=5" in lines and "--cpus-per-task=2" in lines
    assert not any(line.startswith("--gpus") for line in lines)
    assert "--ntasks=15" in srun_line(script)
    assert "GPUS_PER_NODE=0" in script


def test_time_limit_preemption_and_log_lines(tmp_path):
    script = study_script(tmp_path, WorkerLayout(), time="1:00:00", signal_margin=300)
    lines = sbatch_lines(script)
    study = (tmp_path / "study").resolve()
    assert "--signal=B:USR1@300" in lines and "--requeue" in lines and "--open-mode=append" in lines
    assert f"--output={study}/logs/slurm-%j.out" in lines
    assert f"--chdir={os.getcwd()}" in lines
    assert 'scontrol requeue "$SLURM_JOB_ID"' in script
    assert "trap 'forward_stop USR1' USR1" in script and "trap 'forward_stop TERM' TERM" in script

    no_requeue = sbatch_lines(study_script(tmp_path, WorkerLayout(), signal_margin=0, requeue=False))
    assert "--no-requeue" in no_requeue and not any(line.startswith("--signal") for line in no_requeue)
    assert "REQUEUE=0" in study_script(tmp_path, WorkerLayout(), requeue=False)
    assert "REQUEUE=1" in script


def test_generated_scripts_are_valid_bash_with_every_placeholder_filled(tmp_path):
    env = JobEnvironment(env_setup=["module load cuda/12", "source /opt/venv/bin/activate"], python="python3")
    job = JobOptions(job_name="x", extra_sbatch=["mem=16G"])
    study = render_study_script(tmp_path / "my study", WorkerLayout(gpus_per_node=2), job, env)
    workers = render_workers_script(tmp_path / "my study", 3, job, env, gpus_per_worker=1)
    for script in (study, workers):
        assert "@{" not in script
        assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
        # setup lines come before the first use of Python, paths with spaces are quoted
        assert script.index("module load cuda/12") < script.index("PYTHON=python3")
        assert f"STUDY_DIR='{(tmp_path / 'my study').resolve()}'" in script
        assert "#SBATCH --mem=16G" in script


@pytest.mark.parametrize(
    ("visible", "expected"),
    [("", ["0", "0", "1", "1", "2", "2"]), ("4,5,7", ["4", "4", "5", "5", "7", "7"])],
)
def test_each_task_gets_its_gpu_from_its_local_id(tmp_path, visible, expected):
    """Run the script's own worker_task for every SLURM_LOCALID, with a Python that only reports."""
    reporter = tmp_path / "python"
    reporter.write_text('#!/bin/sh\necho "$CUDA_VISIBLE_DEVICES $*"\n')
    reporter.chmod(0o755)
    layout = WorkerLayout(gpus_per_node=3, workers_per_gpu=2)
    script = render_study_script(tmp_path / "s", layout, JobOptions(job_name="x"), JobEnvironment(python=str(reporter)))
    function = script[script.index("worker_task() {") : script.index("export -f worker_task")]
    settings = "\n".join(line for line in script.splitlines() if re.match(r"^[A-Z_]+=", line))
    seen = []
    for local_id in range(layout.tasks_per_node):
        env = {
            "PATH": os.environ["PATH"],
            "SLURM_LOCALID": str(local_id),
            "SLURM_PROCID": str(10 + local_id),
            "SLURM_JOB_ID": "77",
        }
        if visible:
            env["CUDA_VISIBLE_DEVICES"] = visible
        out = subprocess.run(
            ["bash", "-c", f"{settings}\n{function}\nworker_task"], env=env, capture_output=True, text=True, check=True
        ).stdout.split()
        seen.append(out[0])
        assert out[out.index("--device") + 1] == "cuda:0"
        assert out[out.index("--name") + 1] == f"slurm-77-{10 + local_id}"
    assert seen == expected


def test_extra_sbatch_and_time_formats():
    assert normalise_extra_sbatch("mem=16G") == "--mem=16G"
    assert normalise_extra_sbatch("--constraint=a100") == "--constraint=a100"
    assert normalise_extra_sbatch("-C a100") == "-C a100"
    for owned, instead in (("--nodes=2", "--nodes"), ("time=1:00", "--time"), ("--array=0-3", "--count")):
        with pytest.raises(UserError, match=re.escape(instead)):
            normalise_extra_sbatch(owned)
    assert parse_time_limit("30") == 1800
    assert parse_time_limit("30:15") == 1815
    assert parse_time_limit("4:00:00") == 14400
    assert parse_time_limit("1-12") == 36 * 3600
    assert parse_time_limit("2-00:30") == 48 * 3600 + 1800
    assert parse_time_limit("1-00:00:10") == 86410
    assert parse_time_limit("UNLIMITED") is None
    with pytest.raises(UserError, match="not a SLURM time limit"):
        parse_time_limit("four hours")


# -- the CLI ---------------------------------------------------------------------------------


def fake_sbatch_env(tmp_path: Path) -> dict[str, str]:
    """PATH with an ``sbatch`` that only records that it was called (the dry run must not call it),
    and an ``squeue`` that says what ``tmp_path/squeue-says`` holds (nothing: SLURM forgot the job),
    in the ``--format`` bohb_runner.slurm.queue asks for: task|job|state|elapsed|nodes-or-reason."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "sbatch"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/sbatch-called\necho 4242\n')
    fake.chmod(0o755)
    squeue = bin_dir / "squeue"
    squeue.write_text(f"#!/bin/sh\ncat {tmp_path}/squeue-says 2>/dev/null\n")
    squeue.chmod(0o755)
    env = cli_env()
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    return env


def cli(env: dict[str, str], *args: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bohb_runner", *map(str, args)], capture_output=True, text=True, env=env, timeout=120
    )


STUDY_ARGS = ("--space", QUADRATIC, "--worker", "user_worker:QuadraticWorker", "--max-budget", "9")


def test_dry_run_writes_the_script_and_creates_the_study_but_submits_nothing(tmp_path):
    env = fake_sbatch_env(tmp_path)
    study = tmp_path / "study"
    result = cli(
        env,
        "slurm",
        "submit",
        *STUDY_ARGS,
        "--study-dir",
        study,
        "--nodes",
        "2",
        "--gpus-per-node",
        "2",
        "--workers-per-gpu",
        "3",
        "--partition",
        "gpu",
        "--extra-sbatch",
        "constraint=a100",
        "--dry-run",
    )
    assert result.returncode == 0, result.stderr
    script = study / "slurm" / "study.sbatch"
    assert str(script) in result.stdout and "dry run" in result.stdout
    assert "#SBATCH --constraint=a100" in script.read_text()
    assert f"PYTHON={sys.executable}" in script.read_text()
    assert os.access(script, os.X_OK)
    assert (study / "study.json").exists()
    assert not (tmp_path / "sbatch-called").exists()
    assert not (study / "slurm" / "jobs.jsonl").exists()


def test_submit_calls_sbatch_and_records_the_job(tmp_path):
    env = fake_sbatch_env(tmp_path)
    study = tmp_path / "study"
    result = cli(env, "slurm", "submit", *STUDY_ARGS, "--study-dir", study, "--workers-per-node", "2")
    assert result.returncode == 0, result.stderr
    assert "submitted job 4242" in result.stdout
    assert (tmp_path / "sbatch-called").read_text().split() == ["--parsable", str(study / "slurm" / "study.sbatch")]
    [record] = [line for line in (study / "slurm" / "jobs.jsonl").read_text().splitlines()]
    assert '"job_id": "4242"' in record and '"role": "study"' in record

    # while SLURM still has the study's job, a second one is refused; once it ended, the same
    # command resubmits (resumes) the study
    (tmp_path / "squeue-says").write_text("4242|4242|PENDING|0:00|(Priority)\n")
    refused = cli(env, "slurm", "submit", "--study-dir", study, "--workers-per-node", "2")
    assert_one_line_error(refused, "SLURM job 4242 (PENDING) already runs this study", "add-workers")
    (tmp_path / "squeue-says").write_text("4242|4242|COMPLETED|0:05|node1\n")
    parsable = cli(env, "slurm", "submit", "--study-dir", study, "--workers-per-node", "2", "--parsable")
    assert parsable.stdout.strip() == "4242", parsable.stderr
    assert len((study / "slurm" / "jobs.jsonl").read_text().splitlines()) == 2


def test_add_workers_writes_an_array_with_the_study_jobs_options(tmp_path):
    env = fake_sbatch_env(tmp_path)
    study = tmp_path / "study"
    created = cli(
        env,
        "slurm",
        "submit",
        *STUDY_ARGS,
        "--study-dir",
        study,
        "--gpus-per-node",
        "2",
        "--cpus-per-task",
        "3",
        "--partition",
        "gpu",
        "--account",
        "proj",
        "--time",
        "2:00:00",
        "--env-setup",
        "module load cuda",
        "--dry-run",
    )
    assert created.returncode == 0, created.stderr
    first = cli(env, "slurm", "add-workers", study, "--count", "3", "--dry-run")
    assert first.returncode == 0, first.stderr
    script = (study / "slurm" / "workers-1.sbatch").read_text()
    lines = sbatch_lines(script)
    for expected in (
        "--array=0-2",
        "--ntasks=1",
        "--cpus-per-task=3",
        "--gpus-per-task=1",
        "--partition=gpu",
        "--account=proj",
        "--time=2:00:00",
        "--open-mode=append",
    ):
        assert expected in lines
    assert "module load cuda" in script and "device=cuda:0" in script
    assert f"--output={study.resolve()}/logs/slurm-%A_%a.out" in lines
    assert not (tmp_path / "sbatch-called").exists()

    second = cli(env, "slurm", "add-workers", study, "--count", "1", "--gpus-per-worker", "0", "--partition", "cpu")
    assert second.returncode == 0, second.stderr
    assert "submitted job array 4242" in second.stdout
    cpu = (study / "slurm" / "workers-2.sbatch").read_text()
    assert "--partition=cpu" in sbatch_lines(cpu) and "device=cpu" in cpu
    assert not any(line.startswith("--gpus") for line in sbatch_lines(cpu))
    assert '"role": "workers"' in (study / "slurm" / "jobs.jsonl").read_text()


def run_in_process(capsys, *args: object) -> SimpleNamespace:
    """``bohb-runner ARGS`` in this process (no interpreter start-up): its exit code and output."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return SimpleNamespace(returncode=code, stdout=out, stderr=err)


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (("--gpus-per-node", "2", "--workers-per-node", "2"), ("--workers-per-node is for CPU-only",)),
        (("--workers-per-gpu", "2"), ("--workers-per-gpu needs --gpus-per-node",)),
        (("--nodes", "0"), ("--nodes must be at least 1",)),
        (("--time", "1", "--signal-margin", "120"), ("--signal-margin 120", "--time 1")),
        (("--time", "soon"), ("--time 'soon'", "not a SLURM time limit")),
        (("--extra-sbatch=--nodes=3",), ("use --nodes",)),
        (("--min-workers", "3"), ("--min-workers 3", "1 workers")),
        (("--interface", "eth0; rm -rf /"), ("--interface",)),
        (("--python", "/no/such/python"), ("--python /no/such/python",)),
        (("--partition", "gpu\nx"), ("--partition",)),
    ],
)
def test_bad_options_are_one_line_errors_before_anything_is_written(tmp_path, monkeypatch, capsys, args, fragments):
    monkeypatch.setenv("PATH", fake_sbatch_env(tmp_path)["PATH"])
    study = tmp_path / "study"
    result = run_in_process(capsys, "slurm", "submit", *STUDY_ARGS, "--study-dir", study, *args)
    assert_one_line_error(result, *fragments)
    assert not study.exists()
    assert not (tmp_path / "sbatch-called").exists()


def test_bad_space_and_missing_sbatch_are_one_line_errors(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("hyperparameters: [{type: uniform_float, name: x, lower: 2.0, upper: 1.0}]\n")
    monkeypatch.setenv("PATH", fake_sbatch_env(tmp_path)["PATH"])
    result = run_in_process(
        capsys,
        "slurm",
        "submit",
        "--space",
        bad,
        "--study-dir",
        tmp_path / "s",
        "--worker",
        "user_worker:QuadraticWorker",
    )
    assert_one_line_error(result, "bad.yaml")
    assert not (tmp_path / "s" / "slurm").exists()

    monkeypatch.setenv("PATH", "/nonexistent")
    no_slurm = run_in_process(capsys, "slurm", "submit", *STUDY_ARGS, "--study-dir", tmp_path / "s2")
    assert_one_line_error(no_slurm, "sbatch not found", "--dry-run")
    assert not (tmp_path / "s2").exists()
    not_a_study = run_in_process(capsys, "slurm", "add-workers", tmp_path / "nothing", "--count", "2", "--dry-run")
    assert_one_line_error(not_a_study, "nothing")
