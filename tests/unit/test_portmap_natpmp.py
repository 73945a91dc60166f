"""NAT-PMP (RFC 6886) and PCP (RFC 6887) messages: requests checked field by field against the
RFCs' layouts, responses built by hand with struct, malformed ones refused, and the default
gateway read from /proc/net/route text. Bytes only."""

from __future__ import annotations

import ipaddress
import struct
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torrent.portmap.errors import GatewayRefused, MalformedResponse, PortMapError
from torrent.portmap.natpmp import (
    ExternalAddressResponse,
    MapResponse,
    PcpMapResponse,
    UnsupportedVersion,
    check,
    default_gateway,
    external_address_request,
    map_request,
    parse_pcp_response,
    parse_response,
    pcp_map_request,
)

NONCE = bytes(range(1, 13))
MAPPED_ZERO = b"\0" * 10 + b"\xff\xff"  # IPv4-mapped IPv6 prefix


def ip16(address: str) -> bytes:
    ip = ipaddress.ip_address(address)
    return MAPPED_ZERO + ip.packed if ip.version == 4 else ip.packed


# ---- NAT-PMP requests ------------------------------------------------------------------------------

def test_external_address_request_is_version_0_opcode_0() -> None:
    assert external_address_request() == b"\x00\x00"


@pytest.mark.parametrize(("protocol", "opcode"), [("udp", 1), ("tcp", 2)])
def test_map_request_layout(protocol: str, opcode: int) -> None:
    # §3.3: version, opcode, reserved (16), internal port, suggested external port, lifetime (32)
    data = map_request(protocol, 6881, 7200, external_port=6882)  # type: ignore[arg-type]
    assert data == bytes([0, opcode, 0, 0]) + (6881).to_bytes(2, "big") + (6882).to_bytes(2, "big") + (
        7200).to_bytes(4, "big")


def test_a_removal_is_lifetime_0_and_external_port_0() -> None:
    assert map_request("tcp", 51413, 0) == bytes.fromhex("0002 0000 c8d5 0000 00000000")


@pytest.mark.parametrize("kwargs", [
    {"protocol": "sctp", "internal_port": 1, "lifetime": 1},
    {"protocol": "tcp", "internal_port": 0, "lifetime": 1},
    {"protocol": "tcp", "internal_port": 65536, "lifetime": 1},
    {"protocol": "tcp", "internal_port": 1, "lifetime": -1},
    {"protocol": "tcp", "internal_port": 1, "lifetime": 2**32},
    {"protocol": "tcp", "internal_port": 1, "lifetime": 1, "external_port": 70000},
])
def test_map_request_refuses_values_that_do_not_fit(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        map_request(**kwargs)  # type: ignore[arg-type]


# ---- NAT-PMP responses -----------------------------------------------------------------------------

def test_external_address_response() -> None:
    data = struct.pack(">BBHI", 0, 128, 0, 1234) + bytes([198, 51, 100, 9])
    assert parse_response(data) == ExternalAddressResponse(0, 1234, "198.51.100.9")
    response = check(parse_response(data))
    assert isinstance(response, ExternalAddressResponse) and response.address == "198.51.100.9"


@pytest.mark.parametrize(("opcode", "protocol"), [(129, "udp"), (130, "tcp")])
def test_map_response(opcode: int, protocol: str) -> None:
    data = struct.pack(">BBHIHHI", 0, opcode, 0, 77, 6881, 40000, 3600)
    assert parse_response(data) == MapResponse(0, protocol, 77, 6881, 40000, 3600)  # type: ignore[arg-type]


def test_a_removal_answer_has_lifetime_0_and_port_0() -> None:
    response = parse_response(struct.pack(">BBHIHHI", 0, 130, 0, 77, 6881, 0, 0))
    assert isinstance(response, MapResponse) and (response.external_port, response.lifetime) == (0, 0)


@pytest.mark.parametrize(("result", "words"), [
    (2, "result 2, not authorized / refused by the gateway"),
    (3, "result 3, network failure"),
    (4, "result 4, out of resources"),
    (5, "result 5, unsupported opcode"),
    (99, "result 99, unknown result code"),
])
def test_refusals_have_readable_messages(result: int, words: str) -> None:
    response = parse_response(struct.pack(">BBHIHHI", 0, 130, result, 77, 6881, 0, 0))
    with pytest.raises(GatewayRefused) as info:
        check(response)
    assert info.value.code == result
    assert str(info.value).startswith("gateway refused the NAT-PMP TCP mapping: ")
    assert words in str(info.value)


def test_short_error_responses_are_accepted() -> None:
    # §3.5: an error may stop after the epoch; an unsupported-opcode one may stop after the result
    short = parse_response(struct.pack(">BBHI", 0, 129, 3, 5))
    assert short == MapResponse(3, "udp", 5, None)
    assert parse_response(struct.pack(">BBH", 0, 128, 5)) == ExternalAddressResponse(5, None, None)
    with pytest.raises(GatewayRefused, match="NAT-PMP external address request: result 5"):
        check(parse_response(struct.pack(">BBH", 0, 128, 5)))


@pytest.mark.parametrize(("data", "reason"), [
    (b"", "shorter than its 4-byte header"),
    (b"\x00\x80\x00", "shorter than its 4-byte header"),
    (struct.pack(">BBHI", 1, 128, 0, 0) + bytes(4), "version 1"),
    (struct.pack(">BBHI", 0, 2, 0, 0) + bytes(8), "is a request"),
    (struct.pack(">BBHI", 0, 131, 0, 0) + bytes(8), "unknown opcode 3"),
    (struct.pack(">BBHI", 0, 128, 0, 0) + bytes(3), "11 bytes, not 12"),
    (struct.pack(">BBHI", 0, 128, 0, 0) + bytes(5), "13 bytes, not 12"),
    (struct.pack(">BBHIHHI", 0, 130, 0, 0, 1, 2, 3) + b"\0", "17 bytes, not 16"),
    (struct.pack(">BBHIHH", 0, 130, 0, 0, 1, 2), "12 bytes, not 16"),
    (struct.pack(">BBHIHHI", 0, 130, 0, 0, 6881, 0, 60), "external port 0"),
])
def test_malformed_responses_are_refused(data: bytes, reason: str) -> None:
    with pytest.raises(MalformedResponse, match=reason):
        parse_response(data)


@given(st.binary(max_size=40))
def test_any_bytes_parse_or_raise_a_port_map_error(data: bytes) -> None:
    try:
        response = parse_response(data)
    except PortMapError:
        return
    assert isinstance(response, ExternalAddressResponse | MapResponse)


@given(st.sampled_from(["tcp", "udp"]), st.integers(1, 65535), st.integers(0, 65535), st.integers(0, 2**32 - 1))
def test_map_request_fields_read_back(protocol: str, internal: int, external: int, lifetime: int) -> None:
    version, opcode, reserved, *fields = struct.unpack(">BBHHHI", map_request(
        protocol, internal, lifetime, external_port=external))  # type: ignore[arg-type]
    assert (version, opcode, reserved) == (0, 2 if protocol == "tcp" else 1, 0)
    assert fields == [internal, external, lifetime]


# ---- PCP requests ----------------------------------------------------------------------------------

def test_pcp_map_request_layout() -> None:
    data = pcp_map_request(nonce=NONCE, protocol="tcp", internal_port=6881, client_address="192.168.1.20",
                           lifetime=7200, external_port=6881)
    assert len(data) == 60
    # §7.1 header: version 2, R=0 + opcode MAP (1), reserved, lifetime, client address
    assert data[:4] == b"\x02\x01\x00\x00"
    assert struct.unpack_from(">I", data, 4)[0] == 7200
    assert data[8:24] == ip16("192.168.1.20")
    # §11.1 MAP: nonce, protocol, 3 reserved, internal port, suggested external port and address
    assert data[24:36] == NONCE
    assert data[36] == 6 and data[37:40] == b"\0\0\0"
    assert struct.unpack_from(">HH", data, 40) == (6881, 6881)
    assert data[44:60] == MAPPED_ZERO + b"\0\0\0\0"  # ::ffff:0.0.0.0, "no preference" for IPv4


def test_pcp_map_request_udp_ipv6_and_a_suggested_address() -> None:
    data = pcp_map_request(nonce=NONCE, protocol="udp", internal_port=6881, client_address="2001:db8::5",
                           lifetime=0, external_address="2001:db8::1")
    assert data[36] == 17 and data[8:24] == ip16("2001:db8::5") and data[44:60] == ip16("2001:db8::1")
    assert data[4:8] == b"\0\0\0\0"
    unspecified = pcp_map_request(nonce=NONCE, protocol="udp", internal_port=1, client_address="2001:db8::5",
                                  lifetime=1)
    assert unspecified[44:60] == bytes(16)  # "::" for IPv6


@pytest.mark.parametrize("kwargs", [
    {"nonce": b"short"},
    {"protocol": "icmp"},
    {"internal_port": 0},
    {"lifetime": -5},
    {"client_address": "not an address"},
])
def test_pcp_map_request_refuses_bad_values(kwargs: dict[str, object]) -> None:
    values: dict[str, object] = {"nonce": NONCE, "protocol": "tcp", "internal_port": 1,
                                 "client_address": "10.0.0.2", "lifetime": 60}
    values.update(kwargs)
    with pytest.raises(ValueError):
        pcp_map_request(**values)  # type: ignore[arg-type]


# ---- PCP responses ---------------------------------------------------------------------------------

def pcp_response(result: int = 0, *, lifetime: int = 3600, protocol: int = 6, external: int = 40000,
                 address: str = "198.51.100.9", version: int = 2, opcode: int = 0x81, nonce: bytes = NONCE,
                 options: bytes = b"") -> bytes:
    header = struct.pack(">BBBBII12s", version, opcode, 0, result, lifetime, 99, bytes(12))
    return header + struct.pack(">12sB3sHH16s", nonce, protocol, bytes(3), 6881, external, ip16(address)) + options


def test_pcp_map_response() -> None:
    assert parse_pcp_response(pcp_response()) == PcpMapResponse(0, 3600, 99, NONCE, "tcp", 6881, 40000,
                                                                "198.51.100.9")
    assert parse_pcp_response(pcp_response(protocol=17, address="2001:db8::1")).external_address == "2001:db8::1"


def test_pcp_response_options_are_skipped() -> None:
    option = struct.pack(">BBH", 1, 0, 4) + bytes(4)  # THIRD_PARTY-shaped, 8 bytes
    assert parse_pcp_response(pcp_response(options=option)).external_port == 40000


@pytest.mark.parametrize(("result", "words"), [
    (2, "result 2, not authorized / refused by the gateway"),
    (7, "result 7, network failure"),
    (8, "result 8, out of resources"),
    (12, "result 12, address mismatch"),
])
def test_pcp_refusals_have_readable_messages(result: int, words: str) -> None:
    with pytest.raises(GatewayRefused, match=words) as info:
        check(parse_pcp_response(pcp_response(result, external=0)))
    assert info.value.code == result and str(info.value).startswith("gateway refused the PCP TCP mapping: ")


def test_a_header_only_error_response_is_accepted() -> None:
    header = struct.pack(">BBBBII12s", 2, 0x81, 0, 3, 30, 99, bytes(12))
    assert parse_pcp_response(header) == PcpMapResponse(3, 30, 99, None)
    with pytest.raises(GatewayRefused, match="^gateway refused the PCP mapping: result 3, malformed request$"):
        check(parse_pcp_response(header))


def test_a_nat_pmp_gateway_answering_pcp_means_fall_back() -> None:
    # What a NAT-PMP-only server sends back for a PCP MAP request: version 0, opcode 128 + 1, result 1
    with pytest.raises(UnsupportedVersion) as info:
        parse_pcp_response(struct.pack(">BBHI", 0, 129, 1, 1234))
    assert info.value.version == 0
    assert str(info.value) == "the gateway does not support PCP (it speaks NAT-PMP)"
    with pytest.raises(UnsupportedVersion) as info:  # a server of the draft's version 1
        parse_pcp_response(struct.pack(">BBBBII12s", 1, 0x81, 0, 1, 0, 0, bytes(12)))
    assert info.value.version == 1


@pytest.mark.parametrize(("data", "reason"), [
    (b"\x02\x81", "shorter than its 24-byte header"),
    (struct.pack(">BBHI", 0, 129, 2, 0), "not 'unsupported version'"),
    (pcp_response()[:-2], "not a multiple of 4"),
    (pcp_response(options=bytes(1044)), "not a multiple of 4 up to 1100"),
    (pcp_response(version=3), "version 3"),
    (pcp_response(opcode=0x01), "is a request"),
    (pcp_response(opcode=0x80), "opcode 0, not MAP"),
    (pcp_response(opcode=0x82), "opcode 2, not MAP"),
    (pcp_response()[:24], "shorter than 60"),
    (pcp_response(protocol=1), "protocol 1"),
    (pcp_response(external=0), "external port 0"),
])
def test_malformed_pcp_responses_are_refused(data: bytes, reason: str) -> None:
    with pytest.raises(MalformedResponse, match=reason):
        parse_pcp_response(data)


@given(st.binary(max_size=80))
def test_any_bytes_parse_as_pcp_or_raise_a_port_map_error(data: bytes) -> None:
    try:
        response = parse_pcp_response(data)
    except PortMapError:
        return
    assert isinstance(response, PcpMapResponse)


# ---- the default gateway -----------------------------------------------------------------------------

def route_hex(address: str) -> str:
    """An IPv4 address as /proc/net/route prints it: a native-endian 32-bit number in hex."""
    return f"{int.from_bytes(ipaddress.IPv4Address(address).packed, sys.byteorder):08X}"


HEADER = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT"


def route(iface: str, destination: str, gateway: str, flags: int, metric: int, mask: str) -> str:
    return (f"{iface}\t{route_hex(destination)}\t{route_hex(gateway)}\t{flags:04X}\t0\t0\t{metric}\t"
            f"{route_hex(mask)}\t0\t0\t0")


def test_default_gateway_with_the_lowest_metric() -> None:
    text = "\n".join([
        HEADER,
        route("wlan0", "0.0.0.0", "10.0.0.1", 0x3, 600, "0.0.0.0"),
        route("eth0", "192.168.2.0", "0.0.0.0", 0x1, 100, "255.255.255.0"),  # on-link, no gateway
        route("eth0", "0.0.0.0", "192.168.2.1", 0x3, 100, "0.0.0.0"),
        route("tun0", "0.0.0.0", "172.16.0.1", 0x1, 5, "0.0.0.0"),  # no RTF_GATEWAY flag
        route("eth1", "0.0.0.0", "172.17.0.1", 0x2, 1, "0.0.0.0"),  # not up
        "garbage line",
        "eth2\tzz\t01010101\t0003\t0\t0\t1\t00000000\t0\t0\t0",
        "",
    ])
    assert default_gateway(text) == "192.168.2.1"


def test_the_kernel_text_of_a_little_endian_machine() -> None:
    """The kernel writes the addresses in its own byte order: this sample is from a little-endian one."""
    text = (f"{HEADER}\n"
            "eth0\t00000000\t0102A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n"
            "eth0\t0002A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n")
    assert default_gateway(text, "little") == "192.168.2.1"
    assert default_gateway(text, "big") == "1.2.168.192"  # the same text read on a big-endian kernel


NO_DEFAULT = HEADER + "\n" + route("eth0", "10.0.0.0", "10.0.0.1", 0x3, 0, "255.0.0.0")


@pytest.mark.parametrize("text", ["", HEADER, NO_DEFAULT])
def test_no_default_route_is_none(text: str) -> None:
    assert default_gateway(text) is None
