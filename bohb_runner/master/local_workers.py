"""Worker processes on this machine, started and stopped by ``bohb-runner run``.

Each worker is ``python -m bohb_runner worker`` in a session of its own, so the terminal's
Ctrl-C reaches only the master, which then shuts the workers down in order. Should the master
itself be killed (SIGKILL, OOM), the kernel sends each worker SIGTERM (``PR_SET_PDEATHSIG``,
set by the worker at start-up): no orphans either way.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bohb_runner.errors import UserError
from bohb_runner.logs import log_path

logger = logging.getLogger(__name__)

PARENT_PID_ENV = "BOHB_RUNNER_PARENT_PID"


@dataclass
class WorkerExit:
    name: str
    returncode: int
    log_file: Path

    def last_log_line(self) -> str:
        try:
            lines = [line for line in self.log_file.read_text(errors="replace").splitlines() if line.strip()]
        except OSError:
            return ""
        return lines[-1].strip() if lines else ""


class LocalWorkers:
    """Start ``count`` worker processes for the study and watch them."""

    def __init__(
        self,
        study_dir: Path,
        count: int,
        *,
        device: str = "auto",
        threads: int = 1,
        workers_per_gpu: int | None = None,
        worker_spec: str | None = None,
        on_exit: Callable[[WorkerExit], None] | None = None,
    ) -> None:
        self.study_dir = Path(study_dir)
        self.count = count
        self.device = device
        self.threads = threads
        self.workers_per_gpu = workers_per_gpu
        self.worker_spec = worker_spec
        self.on_exit = on_exit
        self.processes: dict[str, subprocess.Popen] = {}
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._watchers: list[threading.Thread] = []

    def start(self) -> None:
        for index in range(self.count):
            self.start_one(f"worker-{index}", index)

    def restart(self, name: str) -> None:
        """Start a worker again under its old name (it registers afresh with the master)."""
        self.start_one(name, int(name.rsplit("-", 1)[-1]))

    def start_one(self, name: str, index: int) -> None:
        log_file = log_path(self.study_dir, name)
        command = [
            sys.executable, "-m", "bohb_runner", "worker",
            "--study-dir", str(self.study_dir),
            "--name", name,
            "--log-file", str(log_file),
            "--device", _device_for(self.device, index, self.workers_per_gpu),
            "--threads", str(self.threads),
            "--wait-for-master", "120",
        ]  # fmt: skip
        if self.worker_spec:
            command += ["--worker", self.worker_spec]
        env = dict(os.environ)
        env[PARENT_PID_ENV] = str(os.getpid())
        env.setdefault("OMP_NUM_THREADS", str(self.threads))
        env["PYTHONUNBUFFERED"] = "1"
        with self._lock, open(log_file, "ab") as log:
            if self._stopping.is_set():
                return
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
            self.processes[name] = process
        logger.info("started %s (pid %d), log %s", name, process.pid, log_file)
        watcher = threading.Thread(
            target=self._watch, args=(name, process, log_file), name=f"watch-{name}", daemon=True
        )
        watcher.start()
        self._watchers.append(watcher)

    def _watch(self, name: str, process: subprocess.Popen, log_file: Path) -> None:
        returncode = process.wait()
        if self._stopping.is_set():
            return
        logger.info("%s (pid %d) exited with code %d", name, process.pid, returncode)
        if self.on_exit is not None:
            self.on_exit(WorkerExit(name, returncode, log_file))

    def alive(self) -> list[str]:
        with self._lock:
            return [name for name, p in self.processes.items() if p.poll() is None]

    def stop(self, grace: float = 10.0) -> None:
        """Wait ``grace`` seconds for workers told to shut down, then terminate, then kill."""
        with self._lock:
            self._stopping.set()
            processes = list(self.processes.values())
        for process in processes:
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                break
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            alive = [p for p in processes if p.poll() is None]
            if not alive:
                return
            for process in alive:
                logger.info("sending %s to worker pid %d", sig.name, process.pid)
                _signal_group(process, sig)
            for process in alive:
                try:
                    process.wait(timeout=wait)
                except subprocess.TimeoutExpired:
                    pass


def _signal_group(process: subprocess.Popen, sig: signal.Signals) -> None:
    """Signal the worker's whole session (it is its group leader): data-loader children too."""
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass


def _device_for(device: str, index: int, workers_per_gpu: int | None = None) -> str:
    """``cuda:each`` spreads local workers over the visible GPUs; anything else is passed on.

    With ``workers_per_gpu`` K, workers 0..K-1 share GPU 0, K..2K-1 GPU 1, and so on, so that
    several small jobs keep one GPU's SMs busy.
    """
    if workers_per_gpu is not None:
        count = visible_gpus()
        return f"cuda:{(index // workers_per_gpu) % count}" if count else "cpu"
    if device != "cuda:each":
        return device
    count = visible_gpus()
    return f"cuda:{index % count}" if count else "cpu"


# whether this process has said why it cannot count its GPUs (said once: it is asked per worker)
_gpu_count_warned = False


def visible_gpus() -> int:
    """CUDA devices this process sees (``CUDA_VISIBLE_DEVICES`` applies); 0 without CUDA.

    A CUDA install that fails (a driver older than the CUDA runtime, a broken library path)
    would otherwise look exactly like a machine without a GPU, and the workers would quietly
    train on CPUs: the reason is logged as a warning, once per process.
    """
    global _gpu_count_warned
    try:
        import torch

        return torch.cuda.device_count()
    except Exception as exc:
        if not _gpu_count_warned:
            _gpu_count_warned = True
            reason = str(exc).strip().splitlines()
            logger.warning(
                "cannot count CUDA GPUs (%s: %s); going on as if this machine had none",
                type(exc).__name__,
                reason[0] if reason else "no message",
            )
        return 0


def workers_for_gpus(workers_per_gpu: int, workers: int | None, device: str) -> int:
    """How many local workers ``--workers-per-gpu K`` starts: K on each visible GPU.

    Refused with one line where it cannot mean anything: on a machine without a GPU (CPU
    workers are counted with ``--workers``, one thread each by default), with ``--workers``
    as well, or with a ``--device`` that names something else.
    """
    if workers_per_gpu < 1:
        raise UserError(f"--workers-per-gpu must be at least 1, got {workers_per_gpu}")
    if workers is not None:
        raise UserError("--workers-per-gpu K starts K workers per GPU; give it or --workers, not both")
    if device not in ("auto", "cuda", "cuda:each"):
        raise UserError(
            f"--workers-per-gpu spreads workers over all visible GPUs; it does not go with --device {device}"
        )
    count = visible_gpus()
    if count == 0:
        raise UserError(
            "--workers-per-gpu: no CUDA GPU is visible on this machine; on CPUs use --workers N "
            "(each worker trains with --threads threads, 1 by default)"
        )
    return workers_per_gpu * count


def die_with_parent() -> None:
    """In a worker started by ``run``: get SIGTERM when the master dies, and exit if it already has."""
    parent = os.environ.get(PARENT_PID_ENV)
    if not parent:
        return
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))
        except (OSError, AttributeError):
            logger.debug("prctl(PR_SET_PDEATHSIG) is not available")
    if os.getppid() != int(parent):
        raise SystemExit(0)
