"""Authentication and networking: a real master, nameserver and worker process of a study refuse
every Pyro4 client without the study's secret, accept one with it, and never accept pickle."""

from __future__ import annotations

import base64
import signal
import socket
import stat
import subprocess
from pathlib import Path

import Pyro4
import Pyro4.errors
import pytest
import serpent

from bohb_runner.errors import StudyError
from bohb_runner.wire import auth
from bohb_runner.wire.discovery import read_nameserver_address
from bohb_runner.wire.network import interface_address, interface_names, is_loopback
from bohb_runner.wire.pyro import configure_pyro

from conftest import TESTS, assert_one_line_error, run_cli, start_cli, wait_until

QUADRATIC = TESTS / "data" / "quadratic.yaml"
USER_WORKER = "user_worker:QuadraticWorker"
NOT_SYMMETRIC = "hmac key config not symmetric"
MISMATCH = "message hmac mismatch"


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def live_study(tmp_path_factory):
    """A master waiting for a second worker (so it stays up) and one idle worker process."""
    study = tmp_path_factory.mktemp("auth") / "study"
    master = start_cli(
        "master", "--space", QUADRATIC, "--study-dir", study, "--worker", USER_WORKER,
        "--min-workers", "2", "--no-progress", "--ping-interval", "1",
    )  # fmt: skip
    worker = None
    try:
        wait_until(
            lambda: read_nameserver_address(study) is not None or master.poll() is not None, 60, "nameserver.json"
        )
        assert master.poll() is None, master.communicate()
        worker = start_cli("worker", "--study-dir", study, "--name", "w0", "--wait-for-master", "30")
        address = read_nameserver_address(study)
        key = auth.read_secret(study)

        def registered() -> dict[str, str]:
            with auth.locate_nameserver(address.host, address.port, key) as ns:
                return ns.list(prefix=f"hpbandster.run_{address.run_id}.")

        wait_until(lambda: any(".worker." in name for name in registered()), 60, "the worker to register")
        entries = registered()
        yield {
            "dir": study,
            "address": address,
            "key": key,
            "worker_uri": next(uri for name, uri in entries.items() if ".worker." in name),
            "dispatcher_uri": next(uri for name, uri in entries.items() if ".dispatcher" in name),
        }
    finally:
        if worker is not None:
            _stop(worker)
        _stop(master)


def _nameserver_uri(address) -> str:
    return f"PYRO:{Pyro4.constants.NAMESERVER_NAME}@{address.host}:{address.port}"


def _call(uri: str, method: str, key: bytes | None, serializer: str | None = None):
    with Pyro4.Proxy(uri) as proxy:
        proxy._pyroHmacKey = key
        proxy._pyroTimeout = 10
        if serializer:
            proxy._pyroSerializer = serializer
        return getattr(proxy, method)()


@pytest.mark.parametrize(("key", "refusal"), [(None, NOT_SYMMETRIC), (b"wrong key" * 4, MISMATCH)])
def test_a_client_without_the_secret_cannot_use_the_nameserver_worker_or_dispatcher(live_study, key, refusal):
    address = live_study["address"]
    for uri, method in (
        (_nameserver_uri(address), "list"),
        (live_study["worker_uri"], "is_busy"),
        (live_study["dispatcher_uri"], "trigger_discover_worker"),
    ):
        with pytest.raises(Pyro4.errors.CommunicationError, match=f"cannot connect to .*: {refusal}"):
            _call(uri, method, key)
    # Pyro4's own lookup gives up on the nameserver too
    with pytest.raises(Pyro4.errors.NamingError, match="Failed to locate the nameserver"):
        Pyro4.locateNS(host=address.host, port=address.port, hmac_key=key)


def test_a_client_with_the_secret_can(live_study):
    address = live_study["address"]
    names = _call(_nameserver_uri(address), "list", live_study["key"])
    assert any(name.endswith(".worker.w0") or ".w0" in name for name in names), names
    assert _call(live_study["worker_uri"], "is_busy", live_study["key"]) is False


def test_pickle_is_refused_even_with_the_secret(live_study):
    for uri, method in ((_nameserver_uri(live_study["address"]), "list"), (live_study["worker_uri"], "is_busy")):
        with pytest.raises(
            Pyro4.errors.CommunicationError, match="rejected: message used serializer that is not accepted"
        ):
            _call(uri, method, live_study["key"], serializer="pickle")


def test_the_secret_file_is_private_and_nowhere_else(live_study):
    study = live_study["dir"]
    path = study / auth.SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(path.read_text().strip()) == 2 * auth.SECRET_BYTES
    encodings = [live_study["key"].hex(), base64.b64encode(live_study["key"]).decode()]
    for other in [study / "study.json", study / "nameserver.json", *sorted((study / "logs").glob("*.log"))]:
        text = other.read_text()
        assert not any(encoded in text for encoded in encodings), other


def test_a_proxy_sent_over_the_wire_carries_no_key_and_arrives_with_the_receivers():
    """The dispatcher hands workers a callback proxy with each job: the key must not travel with it."""
    configure_pyro()
    previous = auth.process_key()
    try:
        auth.use_key(b"r" * 32)
        sent = auth.proxy("PYRO:dispatcher@127.0.0.1:1", key=b"s" * 32)
        wire = Pyro4.util.SerpentSerializer().dumps(sent)
        assert base64.b64encode(b"s" * 32) not in wire and b"s" * 32 not in wire
        received = Pyro4.util.SerpentSerializer().loads(wire)
        assert isinstance(received, Pyro4.core.Proxy) and received._pyroHmacKey == b"r" * 32
        assert serpent.loads(wire)["state"][5] is None
    finally:
        auth.use_key(previous)


def test_a_secret_readable_by_others_is_refused(tmp_path):
    auth.create_secret(tmp_path)
    path = tmp_path / auth.SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.chmod(0o644)
    with pytest.raises(StudyError, match=r"accessible by other users \(mode 0644\); run chmod 600"):
        auth.read_secret(tmp_path)


def test_a_study_on_interface_lo_runs_end_to_end_and_an_old_study_gets_a_secret_on_resume(tmp_path):
    study = tmp_path / "study"
    common = ["--study-dir", study, "--worker", USER_WORKER, "--max-budget", "3", "--no-progress", "--interface", "lo"]
    first = run_cli("run", "--space", QUADRATIC, *common, "--iterations", "1", timeout=120)
    assert first.returncode == 0, first.stderr
    assert len((study / "results.jsonl").read_text().splitlines()) == 4
    assert "nameserver listening on 127.0.0.1:" in (study / "logs" / "master.log").read_text()
    assert "reachable from other hosts" not in first.stderr
    # a study made before studies had secrets: the master creates one when it resumes
    (study / auth.SECRET_FILE).unlink()
    resumed = run_cli("run", *common, "--iterations", "2", timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert len((study / "results.jsonl").read_text().splitlines()) == 6  # 4 + a second bracket of 2 on budget 3
    assert stat.S_IMODE((study / auth.SECRET_FILE).stat().st_mode) == 0o600


def _non_loopback_interface() -> tuple[str, str] | None:
    for name in interface_names():
        try:
            address = interface_address(name)
        except Exception:
            continue
        if not is_loopback(address):
            return name, address
    return None


def test_a_study_on_a_network_interface_listens_there_and_says_it_is_authenticated(tmp_path):
    found = _non_loopback_interface()
    if found is None:
        pytest.skip("this machine has no network interface with an IPv4 address other than loopback")
    name, address = found
    study = tmp_path / "study"
    result = run_cli(
        "run", "--space", QUADRATIC, "--study-dir", study, "--worker", USER_WORKER, "--max-budget", "3",
        "--iterations", "1", "--no-progress", "--interface", name, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"listening on {address} ({name}): reachable from other hosts" in result.stderr
    log = (study / "logs" / "master.log").read_text()
    assert f"nameserver listening on {address}:" in log and f"dispatcher listening on {address}:" in log
    assert len((study / "results.jsonl").read_text().splitlines()) == 4


@pytest.mark.parametrize("command", ["run", "master", "worker"])
def test_an_unknown_interface_is_a_one_line_error(tmp_path, command):
    study = tmp_path / "study"
    args = ["--study-dir", study, "--interface", "nosuch0"]
    if command != "worker":
        args += ["--space", QUADRATIC, "--worker", USER_WORKER]
    result = run_cli(command, *args, timeout=60)
    assert_one_line_error(result, "--interface nosuch0: no such network interface here", "lo")
    assert not (study / "study.json").exists()


def test_host_and_interface_together_are_refused(tmp_path):
    result = run_cli("master", "--space", QUADRATIC, "--study-dir", tmp_path / "s", "--host", "127.0.0.1",
                     "--interface", "lo")  # fmt: skip
    assert result.returncode == 2 and "not allowed with argument" in result.stderr


def test_master_and_worker_listen_on_the_interface_they_are_given(tmp_path):
    """What the SLURM script runs: ``bohb-runner master|worker --interface ${INTERFACE}``, each
    process looking up its own address: the nameserver (nameserver.json), the dispatcher and
    the worker all listen there, not on the loopback default."""
    found = _non_loopback_interface()
    if found is None:
        pytest.skip("this machine has no network interface with an IPv4 address other than loopback")
    name, address = found
    study = tmp_path / "study"
    master = start_cli(
        "master", "--space", QUADRATIC, "--study-dir", study, "--worker", "user_worker:GatedQuadraticWorker",
        "--max-budget", "3", "--iterations", "1", "--no-progress", "--ping-interval", "1", "--interface", name,
    )  # fmt: skip
    worker = None
    try:
        wait_until(lambda: read_nameserver_address(study) is not None or master.poll() is not None, 60, "nameserver")
        assert master.poll() is None, master.communicate()
        nameserver = read_nameserver_address(study)
        assert nameserver.host == address
        worker = start_cli("worker", "--study-dir", study, "--name", "w0", "--interface", name)
        key = auth.read_secret(study)

        def registered() -> dict[str, str]:
            with auth.locate_nameserver(nameserver.host, nameserver.port, key) as ns:
                return ns.list(prefix=f"hpbandster.run_{nameserver.run_id}.")

        # the gated worker holds its first job, so the study is still running while we look
        wait_until(lambda: any(".worker." in entry for entry in registered()), 60, "the worker to register")
        hosts = {entry: Pyro4.core.URI(uri).host for entry, uri in registered().items()}
        assert hosts and set(hosts.values()) == {address}, hosts
        assert any(".dispatcher" in entry for entry in hosts) and any(
            ".worker." in entry and entry.endswith(".w0") for entry in hosts
        ), hosts
        (study / "gate").touch()
        out, err = master.communicate(timeout=120)
        assert master.returncode == 0, err
        assert worker.wait(timeout=60) == 0
        assert len((study / "results.jsonl").read_text().splitlines()) == 4
    finally:
        if worker is not None:
            _stop(worker)
        _stop(master)


def test_no_daemon_listens_beyond_loopback_without_a_key():
    found = _non_loopback_interface()
    if found is None:
        pytest.skip("this machine has no network interface with an IPv4 address other than loopback")
    previous = auth.process_key()
    try:
        auth.use_key(None)
        with pytest.raises(RuntimeError, match=f"refusing to listen on {found[1]} without a study key"):
            auth.daemon(found[1])
        with pytest.raises(RuntimeError, match="without a study key"):
            auth.start_nameserver(found[1])
    finally:
        auth.use_key(previous)


def test_interface_auto_is_an_address_this_node_can_listen_on():
    address = interface_address("auto")
    with socket.socket() as sock:
        sock.bind((address, 0))
    if _non_loopback_interface() is not None and _has_default_route():
        assert not is_loopback(address), "auto should not pick loopback where another interface routes off the node"


def _has_default_route() -> bool:
    try:
        lines = Path("/proc/net/route").read_text().splitlines()[1:]
    except OSError:
        return False
    return any(line.split()[1] == "00000000" for line in lines if len(line.split()) > 1)
