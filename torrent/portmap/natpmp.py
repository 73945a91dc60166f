"""NAT-PMP (RFC 6886) and PCP (RFC 6887) MAP messages, sans-IO: requests built, responses parsed.

Both talk UDP to port 5351 of the default gateway. PCP is NAT-PMP's successor and answers the
same port; a gateway that only knows NAT-PMP answers a PCP request with a NAT-PMP "unsupported
version" (version 0, result 1), which ``parse_pcp_response`` reports as ``UnsupportedVersion`` so
that the client falls back. Parsers check version, opcode and length before reading a field, and
return the result code with the response: the caller first matches a response to its request
(a late reply to an earlier one is not an answer), then calls ``check`` to turn a refusal into a
``GatewayRefused`` with a message a user can act on.

``default_gateway`` reads Linux's ``/proc/net/route`` text: the gateway is where NAT-PMP goes.
"""

from __future__ import annotations

import ipaddress
import struct
import sys
from dataclasses import dataclass
from enum import IntEnum
from typing import Literal, TypeVar

from torrent.portmap.errors import GatewayRefused, MalformedResponse, PortMapError

__all__ = [
    "NATPMP_VERSION",
    "PCP_VERSION",
    "PORT",
    "ExternalAddressResponse",
    "MapResponse",
    "NatPmpResult",
    "PcpMapResponse",
    "PcpResult",
    "Proto",
    "UnsupportedVersion",
    "check",
    "default_gateway",
    "external_address_request",
    "map_request",
    "parse_pcp_response",
    "parse_response",
    "pcp_map_request",
]

Proto = Literal["tcp", "udp"]

PORT = 5351  # RFC 6886 §3.1, RFC 6887 §19.1: the server's port on the gateway

# ---- NAT-PMP (RFC 6886 §3) --------------------------------------------------------------------

NATPMP_VERSION = 0
_OP_EXTERNAL_ADDRESS = 0
_NATPMP_OPCODES: dict[str, int] = {"udp": 1, "tcp": 2}  # §3.3: 1 maps UDP, 2 maps TCP
_NATPMP_PROTOS: dict[int, Proto] = {1: "udp", 2: "tcp"}
_RESPONSE_BIT = 128  # a response's opcode is the request's plus 128
_EXTERNAL_ADDRESS_SIZE = 12  # version, opcode, result (2), epoch (4), address (4)
_MAP_SIZE = 16  # version, opcode, result (2), epoch (4), internal port, external port, lifetime (4)


class NatPmpResult(IntEnum):
    """RFC 6886 §3.5."""

    SUCCESS = 0
    UNSUPPORTED_VERSION = 1
    NOT_AUTHORIZED = 2
    NETWORK_FAILURE = 3
    OUT_OF_RESOURCES = 4
    UNSUPPORTED_OPCODE = 5


_NATPMP_MESSAGES = {
    1: "unsupported version",
    2: "not authorized / refused by the gateway (port mapping may be turned off in its settings)",
    3: "network failure (the gateway has no external address: is its WAN link up?)",
    4: "out of resources (the gateway has no ports or mappings left)",
    5: "unsupported opcode",
}


@dataclass(frozen=True, slots=True)
class ExternalAddressResponse:
    result: int
    epoch: int | None  # seconds since the gateway (re)started its mapping table
    address: str | None  # the gateway's external IPv4 address, on success


@dataclass(frozen=True, slots=True)
class MapResponse:
    result: int
    protocol: Proto
    epoch: int | None
    internal_port: int | None  # None only in a short error response
    external_port: int = 0
    lifetime: int = 0  # seconds granted; 0 when a mapping was removed


NatPmpResponse = ExternalAddressResponse | MapResponse


def external_address_request() -> bytes:
    """§3.2: two bytes, version 0 and opcode 0."""
    return bytes((NATPMP_VERSION, _OP_EXTERNAL_ADDRESS))


def map_request(protocol: Proto, internal_port: int, lifetime: int, *, external_port: int = 0) -> bytes:
    """§3.3: map (or, with ``lifetime`` 0 and ``external_port`` 0, remove) ``internal_port``."""
    _check_port(internal_port, "internal port", allow_zero=False)
    _check_port(external_port, "external port", allow_zero=True)
    if not 0 <= lifetime <= 0xFFFFFFFF:
        raise ValueError(f"lifetime {lifetime} is not a 32-bit count of seconds")
    return struct.pack(">BBHHHI", NATPMP_VERSION, _opcode(protocol, _NATPMP_OPCODES), 0,
                       internal_port, external_port, lifetime)


def parse_response(data: bytes) -> NatPmpResponse:
    """One NAT-PMP response datagram; ``MalformedResponse`` when it is none."""
    if len(data) < 4:
        raise MalformedResponse(f"NAT-PMP response of {len(data)} bytes is shorter than its 4-byte header")
    version, opcode, result = struct.unpack_from(">BBH", data)
    if version != NATPMP_VERSION:
        raise MalformedResponse(f"NAT-PMP response has version {version}, not {NATPMP_VERSION}")
    if opcode < _RESPONSE_BIT:
        raise MalformedResponse(f"NAT-PMP opcode {opcode} is a request, not a response")
    request_op = opcode - _RESPONSE_BIT
    if request_op == _OP_EXTERNAL_ADDRESS:
        size = _EXTERNAL_ADDRESS_SIZE
    elif request_op in _NATPMP_PROTOS:
        size = _MAP_SIZE
    else:
        raise MalformedResponse(f"NAT-PMP response to unknown opcode {request_op}")
    if result != NatPmpResult.SUCCESS and len(data) < size:
        # §3.5 lets an error response stop after the epoch (and unsupported-version ones do).
        epoch = struct.unpack_from(">I", data, 4)[0] if len(data) >= 8 else None
        if request_op == _OP_EXTERNAL_ADDRESS:
            return ExternalAddressResponse(result, epoch, None)
        return MapResponse(result, _NATPMP_PROTOS[request_op], epoch, None)
    if len(data) != size:
        raise MalformedResponse(f"NAT-PMP response to opcode {request_op} has {len(data)} bytes, not {size}")
    epoch = struct.unpack_from(">I", data, 4)[0]
    if request_op == _OP_EXTERNAL_ADDRESS:
        address = str(ipaddress.IPv4Address(data[8:12])) if result == NatPmpResult.SUCCESS else None
        return ExternalAddressResponse(result, epoch, address)
    internal, external, lifetime = struct.unpack_from(">HHI", data, 8)
    if result == NatPmpResult.SUCCESS and lifetime and not external:
        raise MalformedResponse("NAT-PMP mapping granted on external port 0")
    return MapResponse(result, _NATPMP_PROTOS[request_op], epoch, internal, external, lifetime)


# ---- PCP (RFC 6887 §7, §11) -------------------------------------------------------------------

PCP_VERSION = 2
_OP_MAP = 1
_PCP_PROTOCOLS: dict[str, int] = {"tcp": 6, "udp": 17}  # IANA protocol numbers
_PCP_PROTOS: dict[int, Proto] = {6: "tcp", 17: "udp"}
_PCP_HEADER = 24
_PCP_MAP_SIZE = _PCP_HEADER + 36  # nonce (12), protocol, reserved (3), ports (2 + 2), address (16)
_PCP_MAX = 1100  # §7: no PCP message is longer
NONCE_SIZE = 12


class PcpResult(IntEnum):
    """RFC 6887 §7.4."""

    SUCCESS = 0
    UNSUPP_VERSION = 1
    NOT_AUTHORIZED = 2
    MALFORMED_REQUEST = 3
    UNSUPP_OPCODE = 4
    UNSUPP_OPTION = 5
    MALFORMED_OPTION = 6
    NETWORK_FAILURE = 7
    NO_RESOURCES = 8
    UNSUPP_PROTOCOL = 9
    USER_EX_QUOTA = 10
    CANNOT_PROVIDE_EXTERNAL = 11
    ADDRESS_MISMATCH = 12
    EXCESSIVE_REMOTE_PEERS = 13


_PCP_MESSAGES = {
    1: "unsupported version",
    2: "not authorized / refused by the gateway (port mapping may be turned off in its settings)",
    3: "malformed request",
    4: "unsupported opcode",
    5: "unsupported option",
    6: "malformed option",
    7: "network failure (the gateway has no external address: is its WAN link up?)",
    8: "out of resources (the gateway has no ports or mappings left)",
    9: "unsupported protocol",
    10: "over this host's quota of mappings",
    11: "cannot provide the external port or address asked for",
    12: "address mismatch (a NAT between us and the gateway rewrote our address)",
    13: "too many remote peers",
}


class UnsupportedVersion(PortMapError):
    """The gateway does not speak PCP; ``version`` is the one it does (0: NAT-PMP)."""

    def __init__(self, version: int) -> None:
        name = "NAT-PMP" if version == NATPMP_VERSION else f"PCP version {version}"
        super().__init__(f"the gateway does not support PCP (it speaks {name})")
        self.version = version


@dataclass(frozen=True, slots=True)
class PcpMapResponse:
    result: int
    lifetime: int  # granted; on an error, how long the error is likely to last
    epoch: int
    nonce: bytes | None  # None only in a header-only error response
    protocol: Proto | None = None
    internal_port: int | None = None
    external_port: int = 0
    external_address: str | None = None


def pcp_map_request(*, nonce: bytes, protocol: Proto, internal_port: int, client_address: str, lifetime: int,
                    external_port: int = 0, external_address: str | None = None) -> bytes:
    """§11.1: a MAP request; ``lifetime`` 0 removes the mapping made with the same nonce.

    ``client_address`` is our own address as the gateway sees it (the socket's source address);
    ``external_port`` and ``external_address`` are suggestions (0 and None: no preference)."""
    if len(nonce) != NONCE_SIZE:
        raise ValueError(f"a PCP nonce is {NONCE_SIZE} bytes, not {len(nonce)}")
    _check_port(internal_port, "internal port", allow_zero=False)
    _check_port(external_port, "external port", allow_zero=True)
    if not 0 <= lifetime <= 0xFFFFFFFF:
        raise ValueError(f"lifetime {lifetime} is not a 32-bit count of seconds")
    client = ipaddress.ip_address(client_address)
    suggested = external_address or ("0.0.0.0" if client.version == 4 else "::")
    header = struct.pack(">BBHI16s", PCP_VERSION, _OP_MAP, 0, lifetime, _ip16(client_address))
    body = struct.pack(">12sB3sHH16s", nonce, _opcode(protocol, _PCP_PROTOCOLS), b"\0\0\0",
                       internal_port, external_port, _ip16(suggested))
    return header + body


def parse_pcp_response(data: bytes) -> PcpMapResponse:
    """One PCP MAP response datagram; ``UnsupportedVersion`` when the gateway asks us to fall back."""
    if len(data) >= 4 and data[0] == NATPMP_VERSION:
        # RFC 6887 §9: a NAT-PMP server answers version 2 with its own "unsupported version".
        if struct.unpack_from(">H", data, 2)[0] == NatPmpResult.UNSUPPORTED_VERSION:
            raise UnsupportedVersion(NATPMP_VERSION)
        raise MalformedResponse("NAT-PMP answer to a PCP request is not 'unsupported version'")
    if len(data) < _PCP_HEADER:
        raise MalformedResponse(f"PCP response of {len(data)} bytes is shorter than its {_PCP_HEADER}-byte header")
    if len(data) > _PCP_MAX or len(data) % 4:
        raise MalformedResponse(f"PCP response of {len(data)} bytes is not a multiple of 4 up to {_PCP_MAX}")
    version, r_opcode, _, result, lifetime, epoch = struct.unpack_from(">BBBBII", data)
    if version != PCP_VERSION:
        if result == PcpResult.UNSUPP_VERSION:
            raise UnsupportedVersion(version)
        raise MalformedResponse(f"PCP response has version {version}, not {PCP_VERSION}")
    if not r_opcode & 0x80:
        raise MalformedResponse("PCP message is a request, not a response")
    if r_opcode & 0x7F != _OP_MAP:
        raise MalformedResponse(f"PCP response to opcode {r_opcode & 0x7F}, not MAP")
    if len(data) < _PCP_MAP_SIZE:
        if result == PcpResult.SUCCESS:
            raise MalformedResponse(f"PCP MAP response of {len(data)} bytes is shorter than {_PCP_MAP_SIZE}")
        return PcpMapResponse(result, lifetime, epoch, None)
    nonce, number, _, internal, external, address = struct.unpack_from(">12sB3sHH16s", data, _PCP_HEADER)
    protocol = _PCP_PROTOS.get(number)
    if protocol is None:
        raise MalformedResponse(f"PCP MAP response for protocol {number}, not TCP or UDP")
    if result == PcpResult.SUCCESS and lifetime and not external:
        raise MalformedResponse("PCP mapping granted on external port 0")
    return PcpMapResponse(result, lifetime, epoch, nonce, protocol, internal, external, _from_ip16(address))


# ---- results -----------------------------------------------------------------------------------

_R = TypeVar("_R", bound=ExternalAddressResponse | MapResponse | PcpMapResponse)


def check(response: _R) -> _R:
    """``response`` itself when it is a success, else the ``GatewayRefused`` it stands for."""
    if response.result == 0:
        return response
    if isinstance(response, PcpMapResponse):
        what = f"PCP {response.protocol.upper()} mapping" if response.protocol else "PCP mapping"
        text = _PCP_MESSAGES.get(response.result, "unknown result code")
    elif isinstance(response, ExternalAddressResponse):
        what, text = "NAT-PMP external address request", _NATPMP_MESSAGES.get(response.result, "unknown result code")
    else:
        what = f"NAT-PMP {response.protocol.upper()} mapping"
        text = _NATPMP_MESSAGES.get(response.result, "unknown result code")
    raise GatewayRefused(f"gateway refused the {what}: result {response.result}, {text}", code=response.result)


# ---- the default gateway (Linux) ----------------------------------------------------------------

_RTF_UP = 0x1
_RTF_GATEWAY = 0x2


def default_gateway(proc_net_route: str, byteorder: str = sys.byteorder) -> str | None:
    """The IPv4 gateway of the default route with the lowest metric, from ``/proc/net/route``
    (``byteorder``: the kernel's that wrote it, this machine's by default).

    Addresses there are 32-bit numbers printed in the kernel's byte order (hex), one route a line
    under a header: ``Iface Destination Gateway Flags RefCnt Use Metric Mask …``."""
    best: tuple[int, str] | None = None
    for line in proc_net_route.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8:
            continue
        try:
            destination, gateway, flags = int(fields[1], 16), int(fields[2], 16), int(fields[3], 16)
            metric, mask = int(fields[6]), int(fields[7], 16)
        except ValueError:
            continue
        if destination or mask or not gateway or flags & (_RTF_UP | _RTF_GATEWAY) != _RTF_UP | _RTF_GATEWAY:
            continue
        if gateway > 0xFFFFFFFF:
            continue
        address = str(ipaddress.IPv4Address(gateway.to_bytes(4, byteorder)))  # type: ignore[arg-type]
        if best is None or metric < best[0]:
            best = (metric, address)
    return best[1] if best else None


# ---- helpers -------------------------------------------------------------------------------------

def _opcode(protocol: str, table: dict[str, int]) -> int:
    try:
        return table[protocol]
    except KeyError:
        raise ValueError(f"protocol {protocol!r} is not 'tcp' or 'udp'") from None


def _check_port(port: int, what: str, *, allow_zero: bool) -> None:
    if not (0 if allow_zero else 1) <= port <= 0xFFFF:
        raise ValueError(f"{what} {port} is out of range")


def _ip16(address: str) -> bytes:
    """RFC 6887 §5: every address is 16 bytes, IPv4 as IPv4-mapped IPv6 (``::ffff:a.b.c.d``)."""
    ip = ipaddress.ip_address(address)
    if ip.version == 4:
        return b"\0" * 10 + b"\xff\xff" + ip.packed
    return ip.packed


def _from_ip16(raw: bytes) -> str:
    ip = ipaddress.IPv6Address(raw)
    return str(ip.ipv4_mapped) if ip.ipv4_mapped is not None else str(ip)
