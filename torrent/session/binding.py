"""Which local address every socket of the session uses (``network.bind``).

A user behind a VPN binds to its interface (``tun0``) or address, so that
listening, peer connections and tracker requests all leave through it and
none through another interface. An interface name is looked up once, at
start, for its IPv4 address (else its first global IPv6 address).
"""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct

from torrent.core.errors import ConfigError

_SIOCGIFADDR = 0x8915


def resolve_bind(value: str) -> str | None:
    """None for "" (every address); an address as it is; an interface name → its address."""
    value = value.strip()
    if not value:
        return None
    try:
        return str(ipaddress.ip_address(value.strip("[]")))
    except ValueError:
        pass
    names = {name for _, name in socket.if_nameindex()}
    if value not in names:
        raise ConfigError(f"network.bind: {value!r} is neither an IP address nor a network interface "
                          f"(interfaces here: {', '.join(sorted(names))})")
    address = _ipv4_of(value) or _ipv6_of(value)
    if address is None:
        raise ConfigError(f"network.bind: interface {value!r} has no address")
    return address


def _ipv4_of(interface: str) -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            packed = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, struct.pack("256s", interface.encode()[:15]))
        except OSError:
            return None
    return socket.inet_ntoa(packed[20:24])


def _ipv6_of(interface: str) -> str | None:
    try:
        with open("/proc/net/if_inet6") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) >= 6 and fields[5] == interface and fields[3] == "00":  # scope: global
            return str(ipaddress.IPv6Address(bytes.fromhex(fields[0])))
    return None


def family_of(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET
