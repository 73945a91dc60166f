"""A UDP socket joined to one multicast group on one interface, for sending and receiving there.

Several clients on one host listen on the LSD port at once, so the port is shared (``SO_REUSEADDR``,
and ``SO_REUSEPORT`` where the BSDs need it). On Linux the socket is bound to the group address itself,
so it hears that group only, not every group some other socket on the host joined on the same port.
Our own datagrams loop back (other clients on this host must hear them): the caller filters its own.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import sys

DEFAULT_TTL = 4  # BEP 14: the groups' scope is wider than one LAN, so a TTL above 1 may be wanted


def destination(group: str, port: int, interface: str = "") -> tuple[str, int] | tuple[str, int, int, int]:
    """The address to ``sendto`` for ``group`` (with the IPv6 interface index as its scope)."""
    if ipaddress.ip_address(group).version == 4:
        return group, port
    return group, port, 0, _ifindex(interface)


def open_socket(group: str, port: int, interface: str = "", *, ttl: int = DEFAULT_TTL) -> socket.socket:
    """A non-blocking socket bound to ``port``, joined to ``group`` on ``interface``, sending there.

    ``interface`` is an IPv4 address of the interface for an IPv4 group, an interface name or index
    for an IPv6 group; empty lets the kernel choose (the default route's). ``OSError`` when the group
    cannot be joined, typically because no interface has a multicast route."""
    version = ipaddress.ip_address(group).version
    sock = socket.socket(socket.AF_INET if version == 4 else socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if sys.platform != "linux" and hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if version == 4:
            _join4(sock, group, port, interface or "0.0.0.0", ttl)
        else:
            _join6(sock, group, port, _ifindex(interface), ttl)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _bind(sock: socket.socket, group: str, port: int, wildcard: str) -> None:
    if sys.platform == "linux":
        try:
            sock.bind((group, port))
            return
        except OSError:
            pass
    sock.bind((wildcard, port))


def _join4(sock: socket.socket, group: str, port: int, interface: str, ttl: int) -> None:
    _bind(sock, group, port, "0.0.0.0")
    local = socket.inet_aton(interface)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, socket.inet_aton(group) + local)
    if interface != "0.0.0.0":
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, local)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)


def _join6(sock: socket.socket, group: str, port: int, index: int, ttl: int) -> None:
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    _bind(sock, group, port, "::")
    packed_index = struct.pack("@I", index)
    membership = socket.inet_pton(socket.AF_INET6, group) + packed_index
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, membership)
    if index:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, packed_index)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, ttl)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 1)


def _ifindex(interface: str) -> int:
    if not interface:
        return 0
    return int(interface) if interface.isdigit() else socket.if_nametoindex(interface)
