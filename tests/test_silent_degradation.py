"""Degradations a user must hear about, once: a CUDA install that cannot count its GPUs, and a
``status.json`` the master cannot write (``bohb-runner status`` then calls a live master dead)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest
import torch

from bohb_runner.master import local_workers
from bohb_runner.master.progress import ProgressTracker
from bohb_runner.master.status_snapshot import StatusPublisher
from bohb_runner.store.status_file import STATUS_FILE, read_status_snapshot

from conftest import PROJECT, SPACE, cli_env


def _broken_cuda() -> int:
    raise RuntimeError("CUDA driver initialization failed: cudaErrorInsufficientDriver (simulated)")


@pytest.fixture
def fresh_gpu_warning(monkeypatch):
    """No GPU warning given yet in this process."""
    monkeypatch.setattr(local_workers, "_gpu_count_warned", False, raising=False)


def test_a_cuda_install_that_cannot_count_its_gpus_is_named_once(monkeypatch, caplog, fresh_gpu_warning):
    # a broken CUDA install cannot exist on this CPU-only machine: torch's call is made to raise
    monkeypatch.setattr(torch.cuda, "device_count", _broken_cuda)
    with caplog.at_level(logging.WARNING, logger="bohb_runner.master.local_workers"):
        counts = [local_workers.visible_gpus() for _ in range(3)]
        devices = [local_workers._device_for("cuda:each", index) for index in range(2)]
    assert counts == [0, 0, 0] and devices == ["cpu", "cpu"]
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "cudaErrorInsufficientDriver (simulated)" in warnings[0].getMessage()
    assert "RuntimeError" in warnings[0].getMessage()


def test_no_cuda_build_is_no_warning(caplog, fresh_gpu_warning):
    if torch.version.cuda is not None or torch.version.hip is not None:
        pytest.skip("this torch has a GPU build: no GPU at all would be worth a warning here")
    with caplog.at_level(logging.WARNING, logger="bohb_runner.master.local_workers"):
        assert local_workers.visible_gpus() == 0
    assert not caplog.records


_SITECUSTOMIZE = """
import torch.cuda

def _broken():
    raise RuntimeError("CUDA driver initialization failed (simulated)")

torch.cuda.device_count = _broken
"""


def test_the_cli_shows_why_no_gpu_is_visible(tmp_path):
    """``--workers-per-gpu`` on a broken install: the reason, then the one-line refusal."""
    (tmp_path / "sitecustomize.py").write_text(_SITECUSTOMIZE)  # a broken CUDA install, simulated
    env = cli_env()
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env["PYTHONPATH"]])
    result = subprocess.run(
        [sys.executable, "-m", "bohb_runner", "run", "--space", str(SPACE), "--study-dir", str(tmp_path / "s"),
         "--workers-per-gpu", "2"],
        capture_output=True, text=True, timeout=120, env=env, cwd=PROJECT,
    )  # fmt: skip
    assert result.returncode != 0 and "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 2, result.stderr
    assert "cannot count CUDA GPUs" in lines[0] and "CUDA driver initialization failed (simulated)" in lines[0]
    assert lines[1].startswith("bohb-runner: error: --workers-per-gpu: no CUDA GPU is visible")


def test_a_status_file_that_cannot_be_written_is_warned_about_once_and_its_recovery_said(tmp_path, caplog):
    tracker = ProgressTracker("bohb", 4, 33)
    publisher = StatusPublisher(tmp_path, "run-1", tracker)
    blocker = tmp_path / STATUS_FILE
    blocker.mkdir()  # a real failure: the snapshot cannot replace a directory
    with caplog.at_level(logging.WARNING, logger="bohb_runner.master.status_snapshot"):
        for _ in range(3):
            publisher.publish("running")
        failing = [r.getMessage() for r in caplog.records]
        assert len(failing) == 1, failing
        assert STATUS_FILE in failing[0] and "status" in failing[0] and "not running" in failing[0]
        assert read_status_snapshot(tmp_path) is None

        blocker.rmdir()
        publisher.publish("running")
        publisher.publish("running")
        messages = [r.getMessage() for r in caplog.records]
        assert len(messages) == 2 and "written again" in messages[1], messages
        assert read_status_snapshot(tmp_path)["state"] == "running"

        blocker.unlink()
        blocker.mkdir()  # fails again: a new episode, a new warning
        publisher.publish("running")
        assert len(caplog.records) == 3
