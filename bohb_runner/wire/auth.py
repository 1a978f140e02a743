"""The study's secret, and the Pyro4 daemons and proxies that use it.

Master, nameserver and workers may listen on a cluster network, where anyone who can reach a
port could otherwise register a fake worker, read the nameserver or call a worker. Pyro4 4.82
authenticates every message with an HMAC when both ends hold the same key, and refuses the
connection otherwise. Its configuration has no key setting (older Pyro4 releases had a global
``HMAC_KEY``; 4.82 reads ``_pyroHmacKey`` of each daemon and proxy only), so the key must be set
on each daemon and proxy. Every daemon and proxy of a study is made here with the study's key, on
loopback too: one code path, and no way to forget it. HMAC authenticates; it does not encrypt:
jobs and results still cross the network readable, as with hpbandster.

The key is a random secret written to ``secret.key`` in the study directory (mode 0600) when the
study is created. Whoever can read the study directory's secret is trusted; nobody else is.

Two things are process-wide, because hpbandster code that bohb-runner does not own takes part
in the conversation:

* a proxy that arrives over the wire (the dispatcher's callback handed to a worker with each
  job) is given this process's study key when it is deserialized;
* a proxy that leaves over the wire never carries a key: Pyro4 would otherwise put the key,
  base64-encoded, into the message, readable by anyone on the network.
"""

from __future__ import annotations

import logging
import secrets
import stat
from pathlib import Path
from typing import Any

import Pyro4
import Pyro4.constants
import Pyro4.core
import Pyro4.naming
import Pyro4.util
import serpent

from bohb_runner.errors import StudyError
from bohb_runner.store.files import write_atomically
from bohb_runner.wire.callback_proxy import reused_callback_proxy
from bohb_runner.wire.network import is_loopback

logger = logging.getLogger(__name__)

SECRET_FILE = "secret.key"
SECRET_BYTES = 32

# the study key of this process: set by the master and by a worker once they know their study
_process_key: bytes | None = None
_hooks_installed = False


# -- the secret file ----------------------------------------------------------------------------


def secret_path(study_dir: Path) -> Path:
    return Path(study_dir) / SECRET_FILE


def create_secret(study_dir: Path) -> bytes:
    """Write a new random secret to ``study_dir/secret.key`` (mode 0600, atomically).

    The file is created 0600 from the start (never readable by others, not even for a moment)
    under a temporary name and renamed into place, so a reader sees no file or a whole one.
    """
    key = secrets.token_bytes(SECRET_BYTES)
    write_atomically(secret_path(study_dir), key.hex() + "\n", mode=0o600)
    return key


def read_secret(study_dir: Path) -> bytes:
    """The study's key; a missing, unreadable, malformed or group/world-readable file is a
    one-line :class:`StudyError` (like ssh with a private key others can read)."""
    path = secret_path(study_dir)
    try:
        mode = path.stat().st_mode
        text = path.read_text().strip()
    except FileNotFoundError:
        raise StudyError(f"{path}: not found; the study's master creates it (start or resume the master)") from None
    except OSError as exc:
        raise StudyError(f"{path}: cannot read the study's secret ({exc.strerror})") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise StudyError(
            f"{path}: the study's secret is accessible by other users (mode {stat.S_IMODE(mode):04o}); "
            f"run chmod 600 {path}"
        )
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < 16:
        raise StudyError(f"{path}: not a bohb-runner secret (expected {2 * SECRET_BYTES} hex digits)")
    return key


def ensure_secret(study_dir: Path) -> bytes:
    """The study's key, created first for a study made before studies had one."""
    if not secret_path(study_dir).exists():
        logger.info("study %s has no secret yet: creating %s", study_dir, SECRET_FILE)
        try:
            return create_secret(study_dir)
        except FileExistsError:  # another process is creating it right now
            pass
    return read_secret(study_dir)


# -- the key of this process --------------------------------------------------------------------


def use_key(key: bytes | None) -> None:
    """Make ``key`` this process's study key (see the module docstring)."""
    global _process_key
    install_wire_hooks()
    _process_key = key


def process_key() -> bytes | None:
    return _process_key


def _key(key: bytes | None) -> bytes | None:
    return _process_key if key is None else key


def daemon(host: str, key: bytes | None = None, **kwargs: Any) -> Pyro4.core.Daemon:
    """A Pyro4 daemon on ``host`` that accepts only messages signed with the study key."""
    key = _required_key(host, key)
    result = Pyro4.core.Daemon(host=host, **kwargs)
    result._pyroHmacKey = key
    return result


def proxy(uri: Any, key: bytes | None = None, timeout: float | None = None) -> Pyro4.core.Proxy:
    """A proxy to ``uri`` that signs its messages with the study key."""
    result = Pyro4.core.Proxy(uri)
    result._pyroHmacKey = _key(key)
    if timeout is not None:
        result._pyroTimeout = timeout
    return result


def sign(existing: Pyro4.core.Proxy, key: bytes | None = None) -> Pyro4.core.Proxy:
    """Give a proxy made elsewhere (by hpbandster) the study key; returns it."""
    existing._pyroHmacKey = _key(key)
    return existing


def locate_nameserver(host: str, port: int, key: bytes | None = None, timeout: float | None = None) -> Pyro4.core.Proxy:
    """A bound proxy to the study's nameserver (no broadcast: the address is always known).

    Raises ``Pyro4.errors.CommunicationError`` when the nameserver cannot be reached or refuses
    the key, which is the error a client without the study's secret gets.
    """
    result = proxy(f"PYRO:{Pyro4.constants.NAMESERVER_NAME}@{_uri_host(host)}:{int(port)}", key, timeout)
    result._pyroBind()
    return result


def start_nameserver(host: str, port: int = 0, key: bytes | None = None) -> tuple[Any, Pyro4.naming.NameServerDaemon]:
    """Pyro4's nameserver daemon (not yet serving) that requires the study key; no broadcast."""
    key = _required_key(host, key)
    uri, ns_daemon, broadcast = Pyro4.naming.startNS(host=host, port=port, enableBroadcast=False, hmac=key)
    assert broadcast is None
    return uri, ns_daemon


def _required_key(host: str, key: bytes | None) -> bytes | None:
    """The key a daemon on ``host`` uses; none at all is allowed on loopback only (library use
    without a study, e.g. tests), never where other hosts can connect."""
    key = _key(key)
    if key is None and not is_loopback(host):
        raise RuntimeError(f"refusing to listen on {host} without a study key: other hosts could connect")
    return key


def _uri_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


# -- what crosses the wire ----------------------------------------------------------------------


def _serialize_proxy_without_key(obj: Any, serializer: serpent.Serializer, out: list, level: int) -> None:
    """Pyro4's own serpent form of a proxy, with the HMAC key left out."""
    data = Pyro4.util.SerializerBase.class_to_dict(obj)
    if isinstance(obj, Pyro4.core.Proxy) and isinstance(data.get("state"), (tuple, list)):
        state = list(data["state"])
        if len(state) > 5:
            state[5] = None
        data = {**data, "state": tuple(state)}
    serializer.ser_builtins_dict(data, out, level)


def _proxy_from_wire(classname: str, data: dict[str, Any]) -> Pyro4.core.Proxy:
    """A proxy received over the wire, given this process's study key (never the sender's).

    The only proxy bohb-runner's protocol sends is the dispatcher's callback, which arrives
    with every job: one proxy per dispatcher is kept, with its connection (see
    :mod:`bohb_runner.wire.callback_proxy`).
    """
    state = list(data["state"])
    if len(state) > 5:
        state[5] = None
    return reused_callback_proxy(tuple(state), _process_key)


def install_wire_hooks() -> None:
    """Install the two process-wide rules of the module docstring. Idempotent."""
    global _hooks_installed
    if _hooks_installed:
        return
    serpent.register_class(Pyro4.core.Proxy, _serialize_proxy_without_key)
    Pyro4.util.SerializerBase.register_dict_to_class("Pyro4.core.Proxy", _proxy_from_wire)
    _hooks_installed = True
