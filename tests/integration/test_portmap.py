"""PortMapper against a fake gateway on 127.0.0.1 (portmap_gateway.py): UPnP, PCP and NAT-PMP
mappings made for TCP and UDP, renewed, and removed on close; refusals, silence and a
description pointing elsewhere end in "failed" with a message, never an exception.

Every mapper here is aimed at 127.0.0.1 (the fake's SSDP and NAT-PMP addresses, or a routing table
naming it, or a closed port): nothing leaves the machine, and nothing goes to multicast."""

from __future__ import annotations

import asyncio
import ipaddress
import random
import socket
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from portmap_gateway import EXTERNAL_ADDRESS, LOCAL, WANIP2, FakeGateway

from torrent.portmap import MappingStatus, PortMapper, natpmp
from torrent.portmap import mapper as mapper_module

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]


def mapper_for(gateway: FakeGateway, **options: Any) -> tuple[PortMapper, list[MappingStatus]]:
    """A mapper aimed at ``gateway`` only, and the list of statuses it publishes."""
    seen: list[MappingStatus] = []
    options.setdefault("timeout", 1.0)
    mapper = PortMapper(random.randint(20000, 60000), local_address=LOCAL,
                        ssdp_address=gateway.ssdp_address, natpmp_gateway=gateway.natpmp_address,
                        on_change=seen.append, **options)
    return mapper, seen


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


@pytest_asyncio.fixture
async def gateways() -> AsyncIterator[Callable[..., FakeGateway]]:
    started: list[FakeGateway] = []

    def make(**options: object) -> FakeGateway:
        gateway = FakeGateway(**options)  # type: ignore[arg-type]
        started.append(gateway)
        return gateway

    yield make
    for gateway in started:
        await gateway.close()


# ---- UPnP ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", [{}, {"service_type": WANIP2, "url_base": LOCAL, "chunked": True}],
                         ids=["wanip1", "wanip2-urlbase-chunked"])
async def test_upnp_maps_both_protocols_renews_and_removes_them(gateways, variant: dict[str, object]) -> None:
    gateway = await gateways(natpmp=None, **variant).start()
    mapper, seen = mapper_for(gateway, methods=["upnp"], lease=2)
    port = mapper.port
    status = await mapper.start()
    assert status == mapper.status
    assert (status.state, status.method, status.gateway, status.error) == ("mapped", "upnp", LOCAL, None)
    assert (status.external_address, status.external_tcp_port, status.external_udp_port, status.lease) == (
        EXTERNAL_ADDRESS, port, port, 2)
    assert [s.state for s in seen] == ["mapping", "mapped"]
    live = gateway.mappings["upnp"]
    assert set(live) == {("tcp", port), ("udp", port)}
    for call in live.values():
        assert (call.internal_port, call.client, call.lease) == (port, LOCAL, 2)
        assert call.detail["NewRemoteHost"] == "" and call.detail["NewEnabled"] == "1"
    ssdp_targets = {call.detail["ST"] for call in gateway.of("ssdp", "search")}
    assert "urn:schemas-upnp-org:device:InternetGatewayDevice:1" in ssdp_targets
    assert all("MX" not in call.detail for call in gateway.of("ssdp", "search"))  # a unicast search

    # lease 2 s: the mapper adds both again after about a second, before the lease ends
    await eventually(lambda: len(gateway.of("upnp", "add")) >= 4, timeout=3)
    assert sorted(c.protocol for c in gateway.of("upnp", "add")[2:4]) == ["tcp", "udp"]
    assert mapper.status.state == "mapped"

    await mapper.close()
    assert gateway.mappings["upnp"] == {}
    assert sorted((c.protocol, c.external_port) for c in gateway.of("upnp", "delete")) == [("tcp", port), ("udp", port)]
    assert mapper.status == MappingStatus(state="off", internal_port=port)
    assert gateway.problems == []


async def test_upnp_gateway_with_only_permanent_leases_gets_lease_0(gateways) -> None:
    gateway = await gateways(natpmp=None, permanent_only=True).start()
    mapper, _ = mapper_for(gateway, methods=["upnp"], lease=600)
    status = await mapper.start()
    assert (status.state, status.lease) == ("mapped", 0)
    leases = [(c.protocol, c.lease) for c in gateway.of("upnp", "add")]
    assert leases == [("tcp", 600), ("tcp", 0), ("udp", 0)]  # 725 once, then lease 0 throughout
    assert {c.lease for c in gateway.mappings["upnp"].values()} == {0}
    await mapper.close()
    assert gateway.mappings["upnp"] == {}  # a permanent mapping above all must go


@pytest.mark.parametrize(("fault", "words"), [
    (718, ["UPnP error 718", "ConflictInMappingEntry", "already mapped to another device"]),
    (606, ["UPnP error 606", "not authorized"]),
])
async def test_upnp_refusal_fails_with_a_readable_error(gateways, fault: int, words: list[str]) -> None:
    gateway = await gateways(natpmp=None, soap_fault=fault).start()
    mapper, _ = mapper_for(gateway, methods=["upnp"])
    status = await mapper.start()
    assert status.state == "failed" and status.method is None
    assert status.error is not None and status.error.startswith("UPnP: gateway refused AddPortMapping")
    for word in words:
        assert word in status.error
    assert "\n" not in status.error
    assert gateway.mappings["upnp"] == {}
    await mapper.close()


@pytest.mark.parametrize("where", [{"location_host": "127.0.0.2"}, {"url_base": "127.0.0.2"}],
                         ids=["location", "control-url"])
async def test_urls_on_another_host_are_not_contacted(gateways, where: dict[str, str]) -> None:
    gateway = await gateways(natpmp=None, **where).start()
    mapper, _ = mapper_for(gateway, methods=["upnp"], timeout=0.5)
    status = await mapper.start()
    assert status.state == "failed"
    assert status.error is not None and "not contacted" in status.error and "127.0.0.2" in status.error
    # the description may be read from the device that answered; nothing is posted anywhere
    assert gateway.http_requests == ([] if "location_host" in where else ["GET /rootDesc.xml HTTP/1.1"])
    await mapper.close()


# ---- PCP and NAT-PMP -------------------------------------------------------------------------------

async def test_pcp_maps_renews_with_the_same_nonce_and_removes(gateways) -> None:
    # The gateway grants 2 s of the 3600 asked for, and sends junk and a stale answer before each reply.
    gateway = await gateways(upnp=False, natpmp="pcp", grant_lifetime=2, junk_first=True).start()
    mapper, _ = mapper_for(gateway, methods=["pcp", "natpmp"], lease=3600)
    port = mapper.port
    status = await mapper.start()
    assert (status.state, status.method, status.external_address, status.lease) == (
        "mapped", "pcp", EXTERNAL_ADDRESS, 2)
    assert (status.external_tcp_port, status.external_udp_port) == (port, port)
    added = gateway.of("pcp", "add")
    assert sorted(c.protocol for c in added) == ["tcp", "udp"]
    assert all((c.internal_port, c.client) == (port, LOCAL) for c in added)
    nonces = {c.protocol: c.nonce for c in added}
    assert nonces["tcp"] != nonces["udp"]

    await eventually(lambda: len(gateway.of("pcp", "add")) >= 4, timeout=3)  # renewed at half of 2 s
    for call in gateway.of("pcp", "add")[2:]:
        assert call.nonce == nonces[call.protocol] and call.lease == 2

    await mapper.close()
    deleted = gateway.of("pcp", "delete")
    assert sorted((c.protocol, c.nonce) for c in deleted) == sorted(nonces.items())
    assert gateway.mappings["pcp"] == {}
    assert gateway.of("natpmp", "add") == [] and gateway.problems == []


async def test_a_nat_pmp_only_gateway_makes_the_mapper_fall_back(gateways) -> None:
    gateway = await gateways(upnp=False, natpmp="natpmp").start()
    mapper, _ = mapper_for(gateway, methods=["pcp", "natpmp"], lease=900)
    port = mapper.port
    status = await mapper.start()
    assert (status.state, status.method, status.external_address, status.lease) == (
        "mapped", "natpmp", EXTERNAL_ADDRESS, 900)
    assert len(gateway.of("pcp", "unsupported-version")) == 1  # asked by PCP once, then NAT-PMP
    assert gateway.of("natpmp", "external-address")
    assert {(c.protocol, c.internal_port, c.lease) for c in gateway.of("natpmp", "add")} == {
        ("tcp", port, 900), ("udp", port, 900)}
    await mapper.close()
    assert {(c.protocol, c.internal_port, c.lease) for c in gateway.of("natpmp", "delete")} == {
        ("tcp", port, 0), ("udp", port, 0)}
    assert gateway.mappings["natpmp"] == {}


async def test_pcp_alone_does_not_fall_back(gateways) -> None:
    gateway = await gateways(upnp=False, natpmp="natpmp").start()
    mapper, _ = mapper_for(gateway, methods=["pcp"])
    status = await mapper.start()
    assert status.state == "failed"
    assert status.error == "PCP: the gateway does not support PCP (it speaks NAT-PMP), and NAT-PMP is turned off"
    assert gateway.of("natpmp", "add") == []
    await mapper.close()


@pytest.mark.parametrize("mode", ["natpmp", "pcp"])
async def test_nat_pmp_refusal_fails_with_a_readable_error(gateways, mode: str) -> None:
    gateway = await gateways(upnp=False, natpmp=mode, natpmp_result=2).start()
    mapper, _ = mapper_for(gateway, methods=["natpmp"] if mode == "natpmp" else ["pcp"])
    status = await mapper.start()
    assert status.state == "failed"
    assert status.error is not None and "result 2" in status.error
    assert "not authorized / refused by the gateway" in status.error
    assert gateway.of(mode, "refused")
    await mapper.close()


# ---- both at once, silence, failures later on ------------------------------------------------------

async def test_with_both_servers_one_method_wins_and_the_other_leaves_nothing(gateways) -> None:
    gateway = await gateways(upnp=True, natpmp="pcp").start()
    mapper, _ = mapper_for(gateway)  # every method
    status = await mapper.start()
    assert status.state == "mapped" and status.method in ("upnp", "pcp")
    losers = {"upnp", "pcp", "natpmp"} - {status.method}
    assert len(gateway.mappings[status.method]) == 2
    assert all(gateway.mappings[loser] == {} for loser in losers)
    await mapper.close()
    assert all(mappings == {} for mappings in gateway.mappings.values())


async def test_a_silent_gateway_fails_after_the_timeout(gateways) -> None:
    gateway = await gateways(silent=True).start()
    mapper, _ = mapper_for(gateway, timeout=0.5)
    loop = asyncio.get_running_loop()
    began = loop.time()
    status = await mapper.start()
    took = loop.time() - began
    assert 0.5 <= took < 2.0
    assert status.state == "failed"
    assert status.error == (
        f"UPnP: no Internet gateway answered the SSDP search on {LOCAL}:{gateway.ssdp_address[1]} within 0.5 s; "
        f"NAT-PMP/PCP: gateway {LOCAL}:{gateway.natpmp_address[1]} did not answer within 0.5 s")
    assert len(gateway.of("ssdp", "search")) >= 3  # every search target was asked
    await mapper.close()
    assert mapper.status.state == "off"


async def test_a_gateway_that_goes_quiet_turns_the_status_to_failed(gateways) -> None:
    gateway = await gateways(upnp=False, natpmp="pcp", grant_lifetime=1).start()
    mapper, seen = mapper_for(gateway, methods=["pcp"], timeout=0.3, retry_interval=60)
    assert (await mapper.start()).state == "mapped"
    gateway.silent = True
    await eventually(lambda: mapper.status.state == "failed", timeout=5)
    assert [s.state for s in seen] == ["mapping", "mapped", "failed"]
    assert mapper.status.error == f"PCP: gateway {LOCAL}:{gateway.natpmp_address[1]} did not answer within 0.3 s"
    await mapper.close()


async def test_close_during_the_first_round_returns_quietly(gateways) -> None:
    gateway = await gateways(silent=True).start()
    mapper, _ = mapper_for(gateway, timeout=5.0)
    starting = asyncio.create_task(mapper.start())
    await asyncio.sleep(0.1)
    assert mapper.status.state == "mapping"
    await asyncio.wait_for(mapper.close(), 2)
    status = await asyncio.wait_for(starting, 1)
    assert status.state in ("mapping", "off")
    assert mapper.status.state == "off"
    with pytest.raises(RuntimeError):
        await mapper.start()


async def test_no_methods_means_off(gateways) -> None:
    gateway = await gateways().start()
    mapper, seen = mapper_for(gateway, methods=[])
    assert (await mapper.start()).state == "off"
    assert gateway.calls == [] and seen == []
    await mapper.close()


# ---- addresses: learned, read from the routing table, or closed ------------------------------------

@pytest.mark.parametrize(("methods", "mode"), [(["upnp"], None), (["pcp"], "pcp")])
async def test_without_a_local_address_the_mapper_uses_the_one_the_gateway_sees(gateways, methods: list[str],
                                                                                mode: str | None) -> None:
    gateway = await gateways(upnp=mode is None, natpmp=mode).start()
    mapper = PortMapper(random.randint(20000, 60000), ssdp_address=gateway.ssdp_address,
                        natpmp_gateway=gateway.natpmp_address, methods=methods, timeout=1.0)
    assert (await mapper.start()).state == "mapped"
    added = gateway.of(methods[0], "add")
    assert len(added) == 2 and {c.client for c in added} == {LOCAL}  # PCP checks it against the source too
    await mapper.close()


def route_file(tmp_path: Path, gateway: str | None) -> Path:
    lines = ["Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT"]
    if gateway is not None:
        number = int.from_bytes(ipaddress.IPv4Address(gateway).packed, sys.byteorder)
        lines.append(f"lo\t00000000\t{number:08X}\t0003\t0\t0\t0\t00000000\t0\t0\t0")
    path = tmp_path / "route"
    path.write_text("\n".join(lines) + "\n")
    return path


async def test_the_default_route_gateway_is_asked_when_none_is_given(gateways, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    gateway = await gateways(upnp=False, natpmp="pcp").start()
    monkeypatch.setattr(mapper_module, "ROUTE_FILE", str(route_file(tmp_path, LOCAL)))
    monkeypatch.setattr(natpmp, "PORT", gateway.natpmp_address[1])  # the well-known 5351, moved for the test
    mapper = PortMapper(random.randint(20000, 60000), local_address=LOCAL, methods=["pcp", "natpmp"], timeout=1.0)
    status = await mapper.start()
    assert (status.state, status.method, status.gateway) == ("mapped", "pcp", LOCAL)
    await mapper.close()
    assert gateway.mappings["pcp"] == {}


async def test_without_a_default_route_nat_pmp_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mapper_module, "ROUTE_FILE", str(route_file(tmp_path, None)))
    mapper = PortMapper(random.randint(20000, 60000), local_address=LOCAL, methods=["natpmp"])
    status = await mapper.start()
    assert status.state == "failed"
    assert status.error == f"NAT-PMP: no default IPv4 gateway in {tmp_path / 'route'}; set the gateway's address"
    await mapper.close()


async def test_a_closed_nat_pmp_port_fails_at_once() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((LOCAL, 0))
        closed = probe.getsockname()
    mapper = PortMapper(random.randint(20000, 60000), local_address=LOCAL, methods=["pcp", "natpmp"],
                        natpmp_gateway=closed, timeout=5.0)
    loop = asyncio.get_running_loop()
    began = loop.time()
    status = await mapper.start()
    assert loop.time() - began < 1.0  # the port-unreachable error, not the 5 s timeout
    assert status.state == "failed"
    assert status.error is not None and status.error.startswith(
        f"NAT-PMP/PCP: nothing answers NAT-PMP or PCP at {LOCAL}:{closed[1]} (")
    await mapper.close()
