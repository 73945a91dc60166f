"""network.bind: an address as given, or an interface name looked up for its address."""

from __future__ import annotations

import socket

import pytest

from torrent.core.errors import ConfigError
from torrent.session.binding import family_of, resolve_bind


@pytest.mark.parametrize("value", ["", "   ", "\t"])
def test_empty_means_every_address(value: str) -> None:
    assert resolve_bind(value) is None


@pytest.mark.parametrize(("value", "expected"), [
    ("192.168.1.20", "192.168.1.20"),
    (" 10.8.0.2 ", "10.8.0.2"),
    ("0.0.0.0", "0.0.0.0"),
    ("::1", "::1"),
    ("[::1]", "::1"),
    ("2001:db8::5", "2001:db8::5"),
    ("[2001:db8::5]", "2001:db8::5"),
    ("2001:DB8:0:0:0:0:0:5", "2001:db8::5"),  # written the usual (compressed, lower-case) way
    ("[fe80::1]", "fe80::1"),
])
def test_address_literals(value: str, expected: str) -> None:
    assert resolve_bind(value) == expected


def test_loopback_interface_gives_its_ipv4_address() -> None:
    assert "lo" in {name for _, name in socket.if_nameindex()}  # Linux always has it
    assert resolve_bind("lo") == "127.0.0.1"
    assert resolve_bind(" lo ") == "127.0.0.1"


@pytest.mark.parametrize("value", ["tun-nonexistent0", "10.0.0.300", "[lo]", "eth0:1:2:3:4:5:6:7:8"])
def test_unknown_interface_names_the_interfaces_there_are(value: str) -> None:
    names = sorted(name for _, name in socket.if_nameindex())
    with pytest.raises(ConfigError) as info:
        resolve_bind(value)
    message = str(info.value)
    assert "network.bind" in message and repr(value) in message
    assert f"interfaces here: {', '.join(names)}" in message


def test_family_of() -> None:
    assert family_of("127.0.0.1") == socket.AF_INET
    assert family_of("::1") == socket.AF_INET6
    assert family_of("2001:db8::5") == socket.AF_INET6
