"""Local Service Discovery on the loopback interface: two clients find each other for a shared torrent and
not for another, hear and ignore their own announces, pack and rate-limit what they send (driven by a fake
clock, never timed), survive garbage, and report a group they cannot join as a status. IPv6 runs in a
network namespace of its own, on a veth pair (the loopback interface does not loop IPv6 multicast back).

Each test takes a random organisation-local group and port, so parallel runs do not hear each other."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from torrent.codec import lsd
from torrent.lsd import multicast
from torrent.lsd.service import REPEAT_AFTER, LocalDiscovery

pytestmark = [pytest.mark.timeout(60)]
LOOPBACK = "127.0.0.1"
Report = tuple[bytes, tuple[str, int]]


@pytest.fixture
def group() -> tuple[str, int]:
    while True:
        address = f"239.192.{random.randrange(256)}.{random.randrange(1, 255)}"
        if address != lsd.IPV4_GROUP:
            return address, random.randrange(20_000, 60_000)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest_asyncio.fixture
async def clients(group: tuple[str, int]) -> AsyncIterator[Callable[..., tuple[LocalDiscovery, list[Report]]]]:
    made: list[LocalDiscovery] = []

    def make(port: int, **options: Any) -> tuple[LocalDiscovery, list[Report]]:
        reports: list[Report] = []
        client = LocalDiscovery(port, lambda h, peer: reports.append((h, peer)), group=group[0],
                                group_port=group[1], interface=LOOPBACK, **options)
        made.append(client)
        return client, reports

    yield make
    for client in made:
        client.close()


class Listener(asyncio.DatagramProtocol):
    """A plain member of the group: what the clients send, as parsed announces."""

    def __init__(self) -> None:
        self.announces: asyncio.Queue[lsd.Announce] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.announces.put_nowait(lsd.parse(data))

    async def next(self, timeout: float = 5.0) -> lsd.Announce:
        return await asyncio.wait_for(self.announces.get(), timeout)

    async def nothing(self, wait: float = 0.3) -> None:
        await asyncio.sleep(wait)
        assert self.announces.empty(), self.announces.get_nowait()


@pytest_asyncio.fixture
async def listener(group: tuple[str, int]) -> AsyncIterator[Listener]:
    sock = multicast.open_socket(*group, LOOPBACK)
    transport, protocol = await asyncio.get_running_loop().create_datagram_endpoint(Listener, sock=sock)
    yield protocol
    transport.close()


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail("timed out waiting for LSD traffic on the loopback interface", pytrace=False)
        await asyncio.sleep(0.01)


@pytest.mark.asyncio
async def test_two_clients_find_each_other_for_a_shared_torrent_only(clients: Callable[..., Any]) -> None:
    shared, only_a, only_b = os.urandom(20), os.urandom(20), os.urandom(20)
    a, a_reports = clients(1111)
    b, b_reports = clients(2222)
    assert await a.start(), a.status
    assert await b.start(), b.status
    assert a.status.startswith("announcing") and a.cookie != b.cookie
    for client, mine in ((a, only_a), (b, only_b)):
        client.add(shared)
        client.add(mine)
    await until(lambda: bool(a_reports and b_reports) and a.own >= 1 and b.own >= 1)
    await asyncio.sleep(0.1)  # anything more would come now
    assert a_reports == [(shared, (LOOPBACK, 2222))]
    assert b_reports == [(shared, (LOOPBACK, 1111))]
    assert a.sent == b.sent == 1  # both torrents in one datagram
    assert a.dropped == b.dropped == 0


@pytest.mark.asyncio
async def test_a_client_ignores_its_own_announces(clients: Callable[..., Any]) -> None:
    info_hash = os.urandom(20)
    a, reports = clients(1111)
    assert await a.start()
    a.add(info_hash)
    await until(lambda: a.own >= 1)
    assert reports == [] and a.received == a.own == 1


@pytest.mark.asyncio
async def test_listening_without_announcing(clients: Callable[..., Any], listener: Listener) -> None:
    info_hash = os.urandom(20)
    quiet, quiet_reports = clients(1111)
    loud, _ = clients(2222)
    assert await quiet.start() and await loud.start()
    quiet.add(info_hash, announce=False)
    loud.add(info_hash)
    await until(lambda: bool(quiet_reports))
    assert quiet_reports == [(info_hash, (LOOPBACK, 2222))]
    assert (await listener.next()).port == 2222
    await listener.nothing()
    assert quiet.sent == 0 and quiet.torrents == {info_hash}


@pytest.mark.asyncio
async def test_announces_are_packed_and_rate_limited(clients: Callable[..., Any], listener: Listener) -> None:
    clock = Clock()
    a, _ = clients(6881, clock=clock, announce_interval=300, send_interval=1)
    assert await a.start()
    first = [os.urandom(20) for _ in range(3)]
    for info_hash in first:
        a.add(info_hash)
    announce = await listener.next()
    assert announce.info_hashes == tuple(first) and announce.port == 6881 and announce.cookie == a.cookie
    clock.now += 0.5
    late = os.urandom(20)
    a.add(late)  # within a second of the last datagram: waits
    assert a.tick() == 0
    await listener.nothing()
    clock.now += 0.5
    assert a.tick() == 1
    assert (await listener.next()).info_hashes == (late,)
    clock.now += 298
    assert a.tick() == 0  # nobody is due for another 5 minutes
    clock.now += 1
    assert a.tick() == 3
    assert (await listener.next()).info_hashes == tuple(first)
    clock.now += 1
    assert a.tick() == 1
    assert (await listener.next()).info_hashes == (late,)
    await listener.nothing()
    assert a.sent == 4


@pytest.mark.asyncio
async def test_many_torrents_fill_datagrams_of_at_most_1400_bytes(clients: Callable[..., Any],
                                                                    listener: Listener) -> None:
    clock = Clock()
    a, _ = clients(6881, clock=clock, send_interval=1)
    assert await a.start()
    hashes = [os.urandom(20) for _ in range(40)]
    for info_hash in hashes:
        a.add(info_hash)
    first = await listener.next()
    per = lsd.capacity(6881, group=a.group, group_port=a.group_port, cookie=a.cookie)
    assert len(first.info_hashes) == per < 40
    await listener.nothing()
    clock.now += 1
    a.tick()
    assert first.info_hashes + (await listener.next()).info_hashes == tuple(hashes)


@pytest.mark.asyncio
async def test_a_new_listen_port_is_announced_again(clients: Callable[..., Any], listener: Listener) -> None:
    clock = Clock()
    a, _ = clients(6881, clock=clock)
    assert await a.start()
    info_hash = os.urandom(20)
    a.add(info_hash)
    assert (await listener.next()).port == 6881
    clock.now += 1
    a.set_port(7000)
    announce = await listener.next()
    assert (announce.port, announce.info_hashes) == (7000, (info_hash,))


@pytest.mark.asyncio
async def test_the_same_peer_is_reported_once_a_minute(clients: Callable[..., Any],
                                                       group: tuple[str, int]) -> None:
    clock = Clock()
    a, reports = clients(1111, clock=clock)
    assert await a.start()
    info_hash = os.urandom(20)
    a.add(info_hash, announce=False)
    other = multicast.open_socket(*group, LOOPBACK)
    try:
        datagram = lsd.build(3333, [info_hash, os.urandom(20)], group=group[0], group_port=group[1], cookie="peer")
        for _ in range(3):
            other.sendto(datagram, group)
        await until(lambda: a.received >= 3)
        assert reports == [(info_hash, (LOOPBACK, 3333))]
        clock.now += REPEAT_AFTER
        other.sendto(datagram, group)
        await until(lambda: a.received >= 4)
        assert len(reports) == 2
    finally:
        other.close()


@pytest.mark.asyncio
async def test_garbage_is_dropped(clients: Callable[..., Any], group: tuple[str, int]) -> None:
    a, reports = clients(1111)
    assert await a.start()
    info_hash = os.urandom(20)
    a.add(info_hash, announce=False)
    other = multicast.open_socket(*group, LOOPBACK)
    try:
        for junk in (b"", b"M-SEARCH * HTTP/1.1\r\n\r\n", os.urandom(1500)[:1400], b"BT-SEARCH * HTTP/1.1\r\n"
                     b"Port: 99999\r\nInfohash: " + info_hash.hex().encode() + b"\r\n\r\n"):
            other.sendto(junk, group)
        other.sendto(lsd.build(4444, [info_hash], group=group[0], group_port=group[1]), group)  # no cookie
        await until(lambda: a.received >= 5)
        assert a.dropped == 4 and reports == [(info_hash, (LOOPBACK, 4444))]
    finally:
        other.close()


@pytest.mark.asyncio
async def test_a_group_that_cannot_be_joined_is_a_status(caplog: pytest.LogCaptureFixture,
                                                         group: tuple[str, int]) -> None:
    reports: list[Report] = []
    # 203.0.113.0/24 is TEST-NET-3: no interface here has that address
    a = LocalDiscovery(1111, lambda h, p: reports.append((h, p)), group=group[0], group_port=group[1],
                       interface="203.0.113.77")
    with caplog.at_level(logging.WARNING, logger="torrent.lsd"):
        assert await a.start() is False
    assert a.status.startswith("unavailable: cannot join") and "203.0.113.77" in a.status
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert a.add(os.urandom(20)) and a.tick() == 0  # still usable, silently idle
    a.close()
    assert a.status == "closed"


def test_bad_configuration_is_refused_at_construction() -> None:
    with pytest.raises(ValueError):
        LocalDiscovery(1111, print, group="10.0.0.1")
    with pytest.raises(ValueError):
        LocalDiscovery(0, print)
    with pytest.raises(ValueError):
        LocalDiscovery(1111, print).add(b"short")


# ---- IPv6, in a network namespace ------------------------------------------------------------

IPV6_SCRIPT = """
import asyncio, json, os, sys
from torrent.lsd.service import LocalDiscovery

async def main():
    group, port = sys.argv[1], int(sys.argv[2])
    shared = os.urandom(20)
    reports = {"a": [], "b": []}
    clients = {}
    for name, listen in (("a", 1111), ("b", 2222)):
        clients[name] = LocalDiscovery(listen, lambda h, peer, n=name: reports[n].append([h.hex(), list(peer)]),
                                       group=group, group_port=port, interface="v0")
        assert await clients[name].start(), clients[name].status
    for name, client in clients.items():
        client.add(shared)
        client.add(os.urandom(20))
    for _ in range(500):
        if reports["a"] and reports["b"] and all(c.own for c in clients.values()):
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    print(json.dumps({"shared": shared.hex(), "reports": reports, "own": [c.own for c in clients.values()],
                      "status": [c.status for c in clients.values()]}))

asyncio.run(main())
"""


def test_ipv6_clients_find_each_other_with_a_link_local_scope(tmp_path: Path, group: tuple[str, int]) -> None:
    unshare = shutil.which("unshare")
    if unshare is None or shutil.which("ip") is None:
        pytest.fail("the IPv6 LSD test needs unshare (util-linux) and ip (iproute2)", pytrace=False)
    script = tmp_path / "lsd6.py"
    script.write_text(IPV6_SCRIPT)
    # A namespace of our own: no route leaves it. DAD off, so the link-local address is usable at once.
    setup = ("sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 && "
             "ip link add v0 type veth peer name v1 && ip link set v0 up && ip link set v1 up && "
             'exec "$0" "$@"')
    proc = subprocess.run([unshare, "--net", "sh", "-c", setup, sys.executable, str(script), lsd.IPV6_GROUP,
                           str(group[1])], capture_output=True, text=True, timeout=30, check=False,
                          cwd=Path(__file__).resolve().parents[2])
    if proc.returncode != 0:
        pytest.fail(f"the IPv6 LSD run in a network namespace failed ({proc.returncode}):\n{proc.stderr}",
                    pytrace=False)
    result = json.loads(proc.stdout)
    for name, port in (("a", 2222), ("b", 1111)):
        [(info_hash, (host, peer_port))] = result["reports"][name]
        assert info_hash == result["shared"] and peer_port == port
        assert host.startswith("fe80:") and host.endswith("%v0"), host
    assert all(result["own"]), result
