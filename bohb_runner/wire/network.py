"""Which address the study's daemons listen on: ``--host ADDR`` or ``--interface NAME``.

On a cluster the nodes usually reach each other over a fast interface (InfiniBand ``ib0``)
whose address differs from node to node, so a SLURM script cannot name an address; it names the
interface and each process looks up its own address. ``auto`` is the address the node's hostname
resolves to, what MPI launchers and Ray use by default.
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import logging
import socket
import struct

from bohb_runner.errors import UserError

logger = logging.getLogger(__name__)

AUTO = "auto"
LOOPBACK = "127.0.0.1"
_SIOCGIFADDR = 0x8915  # Linux: the IPv4 address of a network interface
_IFNAMSIZ = 16


def interface_names() -> list[str]:
    try:
        return [name for _index, name in socket.if_nameindex()]
    except OSError:
        return []


def interface_address(name: str) -> str:
    """The IPv4 address of network interface ``name`` (``auto``: of this node's hostname)."""
    if name == AUTO:
        return hostname_address()
    known = interface_names()
    if len(name.encode()) >= _IFNAMSIZ or (known and name not in known):
        raise UserError(f"--interface {name}: no such network interface here (this node has {', '.join(known)})")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            reply = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, struct.pack("256s", name.encode()))
        except OSError as exc:
            if exc.errno == errno.EADDRNOTAVAIL:
                raise UserError(f"--interface {name}: the interface has no IPv4 address") from None
            if exc.errno == errno.ENODEV:
                raise UserError(
                    f"--interface {name}: no such network interface here (this node has {', '.join(known)})"
                ) from None
            raise UserError(f"--interface {name}: cannot read its address ({exc.strerror})") from None
    return socket.inet_ntoa(reply[20:24])


def hostname_address() -> str:
    """The IPv4 address this node's hostname resolves to."""
    hostname = socket.gethostname()
    try:
        address = socket.gethostbyname(hostname)
    except OSError as exc:
        raise UserError(
            f"--interface auto: this node's hostname {hostname} does not resolve ({exc}); name an interface instead"
        ) from None
    if is_loopback(address):
        # Debian-style hosts files map the hostname to 127.0.1.1; like Ray, take the address of
        # the interface that routes off this node instead
        routed = _default_route_address()
        if routed is not None:
            logger.info(
                "--interface auto: hostname %s resolves to loopback; using %s (default route)", hostname, routed
            )
            return routed
        logger.warning(
            "--interface auto: hostname %s resolves to loopback (%s); other nodes cannot reach this one, "
            "name an interface (e.g. --interface eth0)",
            hostname,
            address,
        )
    return address


def _default_route_address() -> str | None:
    """The local address of the route to a public address (a UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("198.51.100.1", 9))  # TEST-NET-2 (documentation range): any unicast will do
            address = sock.getsockname()[0]
        except OSError:
            return None
    return None if is_loopback(address) or address == "0.0.0.0" else address


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def listen_address(host: str | None, interface: str | None) -> str:
    """The address to listen on, from ``--host`` or ``--interface`` (loopback if neither is given).

    A wildcard address is refused: Pyro4 puts the listening address into every URI it hands
    out, and ``0.0.0.0`` cannot be called back.
    """
    if interface:
        address = interface_address(interface)
    else:
        address = host or LOOPBACK
    if address in ("0.0.0.0", "::", "[::]", ""):
        raise UserError(
            f"--host {address}: a wildcard address cannot be called back; give the node's address or --interface NAME"
        )
    if not interface:
        _check_local(address)
    return address


def _check_local(host: str) -> None:
    """Refuse an address this node cannot listen on now, rather than fail later in Pyro4."""
    try:
        infos = socket.getaddrinfo(host.strip("[]"), 0, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise UserError(f"--host {host}: cannot resolve it ({exc})") from None
    family, kind, proto, _name, sockaddr = infos[0]
    with socket.socket(family, kind, proto) as sock:
        try:
            sock.bind(sockaddr)
        except OSError as exc:
            raise UserError(f"--host {host}: not an address of this node ({exc.strerror})") from None


def describe_listening(address: str, interface: str | None) -> str:
    """The line a user sees when daemons are reachable from other hosts."""
    where = f"{address} ({interface})" if interface else address
    return f"listening on {where}: reachable from other hosts, every connection authenticated with the study's secret"
