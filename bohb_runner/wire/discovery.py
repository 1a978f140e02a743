"""How workers find the master: a small JSON file in the study directory.

The master writes ``nameserver.json`` (host, port, run id) when its nameserver is up; workers
read it, so they can be started before or after the master, on any node that sees the study
directory. hpbandster uses a pickle file for this; bohb-runner never unpickles anything.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from bohb_runner.store.files import write_json_atomically

NAMESERVER_FILE = "nameserver.json"


@dataclass(frozen=True)
class NameserverAddress:
    """Where a study's Pyro4 nameserver listens, and which master started it."""

    host: str
    port: int
    run_id: str
    master_host: str
    master_pid: int
    started: float


def write_nameserver_address(study_dir: Path, address: NameserverAddress) -> Path:
    """Publish the nameserver's address atomically (readers never see half a file)."""
    # it means nothing after a reboot (the master is gone): atomic for readers, no fsync
    return write_json_atomically(Path(study_dir) / NAMESERVER_FILE, asdict(address), durable=False, indent=2)


def read_nameserver_address(study_dir: Path) -> NameserverAddress | None:
    """The published address, or None while no master has published one."""
    path = Path(study_dir) / NAMESERVER_FILE
    try:
        data = json.loads(path.read_text())
        return NameserverAddress(**data)
    except (FileNotFoundError, json.JSONDecodeError, TypeError):
        return None


def remove_nameserver_address(study_dir: Path, address: NameserverAddress) -> None:
    """Withdraw the address, but only if it is still ours (a newer master may have replaced it)."""
    if read_nameserver_address(study_dir) == address:
        try:
            (Path(study_dir) / NAMESERVER_FILE).unlink()
        except FileNotFoundError:
            pass


def wait_for_nameserver_address(
    study_dir: Path,
    timeout: float | None,
    should_stop: Callable[[], bool] = lambda: False,
    not_this: NameserverAddress | None = None,
    poll_interval: float = 0.5,
) -> NameserverAddress | None:
    """Wait until a master publishes its address (other than ``not_this``, a dead one).

    The file may live on a shared filesystem where change notifications do not cross nodes,
    so this polls. Returns None on timeout or when ``should_stop`` says so.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while not should_stop():
        address = read_nameserver_address(study_dir)
        if address is not None and address != not_this:
            return address
        if deadline is not None and time.monotonic() >= deadline:
            return None
        time.sleep(poll_interval)
    return None


def this_host() -> str:
    return socket.gethostname()
