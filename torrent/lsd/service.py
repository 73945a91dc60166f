"""Local Service Discovery (BEP 14) on asyncio: announce our torrents to the LAN, hear the others.

The wire format lives in ``codec.lsd`` and the timing in ``schedule``; this module owns the multicast
socket. Every torrent ``add``-ed for announcing goes out at once, then every ``announce_interval``, with
the due ones packed into one datagram (up to BEP 14's 1400 bytes) and at most one datagram per
``send_interval``. Announces from others name the sender's listen port; the peer is that port at the
datagram's source address, reported through ``on_peer`` for the torrents we were told to care about.
Our own announces loop back (other clients on this host must hear them) and are known by our cookie.

A network without multicast is normal (a container, a VPN, no default route): ``start`` then logs one
warning, leaves the reason in ``status`` and returns False; nothing is raised.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from torrent.codec import lsd
from torrent.lsd import multicast
from torrent.lsd.schedule import ANNOUNCE_INTERVAL, MAX_TORRENTS, SEND_INTERVAL, AnnounceSchedule

log = logging.getLogger("torrent.lsd")

REPEAT_AFTER = 60.0  # seconds before the same peer for the same torrent is reported again
MAX_RECENT = 4096  # (torrent, peer) pairs remembered for that


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, owner: LocalDiscovery) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        host = addr[0]
        if len(addr) == 4 and addr[3] and "%" not in host:  # IPv6 link-local: unusable without its scope
            host = f"{host}%{_scope_name(addr[3])}"
        self.owner.datagram_received(data, (host, addr[1]))

    def error_received(self, exc: Exception) -> None:
        self.owner.send_errors += 1
        log.debug("lsd: %s", exc)


def _scope_name(index: int) -> str:
    try:
        return socket.if_indextoname(index)
    except OSError:
        return str(index)


class LocalDiscovery:
    def __init__(self, port: int, on_peer: Callable[[bytes, tuple[str, int]], None], *,
                 group: str = lsd.IPV4_GROUP, group_port: int = lsd.LSD_PORT, interface: str = "",
                 announce_interval: float = ANNOUNCE_INTERVAL, send_interval: float = SEND_INTERVAL,
                 ttl: int = multicast.DEFAULT_TTL, max_torrents: int = MAX_TORRENTS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """``port``: our BitTorrent listen port. ``on_peer(info_hash, (host, port))``: a peer on the LAN
        announced a torrent we care about. ``interface``: an IPv4 address (IPv4 group) or an interface
        name or index (IPv6 group) to join on; empty lets the kernel choose. ``ValueError`` for a
        group that is not a multicast address or a port out of range."""
        if not ipaddress.ip_address(group).is_multicast:
            raise ValueError(f"LSD group {group} is not a multicast address")
        if not 0 < port < 65536 or not 0 < group_port < 65536:
            raise ValueError(f"LSD ports {port} and {group_port} must be 1 to 65535")
        self.port = port
        self.on_peer = on_peer
        self.group = group
        self.group_port = group_port
        self.interface = interface
        self.ttl = ttl
        self.max_torrents = max_torrents
        self.clock = clock
        self.cookie = os.urandom(4).hex()
        self.schedule = AnnounceSchedule(interval=announce_interval, gap=send_interval, max_torrents=max_torrents)
        self.status = "not started"
        self.sent = 0  # datagrams sent
        self.received = 0  # datagrams heard, ours included
        self.own = 0  # of those, our own announces
        self.dropped = 0  # of those, not valid announces
        self.send_errors = 0
        self._wanted: set[bytes] = set()
        self._recent: OrderedDict[tuple[bytes, str, int], float] = OrderedDict()
        self._capacity = lsd.capacity(port, group=group, group_port=group_port, cookie=self.cookie)
        self._transport: asyncio.DatagramTransport | None = None
        self._destination: tuple[Any, ...] = multicast.destination(group, group_port, "")
        self._timer: asyncio.TimerHandle | None = None
        self._where = f"{lsd.host_header(group, group_port)} on {interface or 'the default interface'}"

    # ---- life ----------------------------------------------------------------------------------

    async def start(self) -> bool:
        """Join the group and start announcing; False (``status`` says why, a warning is logged) when
        the group cannot be joined."""
        if self._transport is not None:
            return True
        try:
            sock = multicast.open_socket(self.group, self.group_port, self.interface, ttl=self.ttl)
            self._destination = multicast.destination(self.group, self.group_port, self.interface)
            loop = asyncio.get_running_loop()
            transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(self), sock=sock)
        except OSError as exc:
            self.status = f"unavailable: cannot join {self._where}: {exc.strerror or exc}"
            log.warning("local service discovery is %s", self.status)
            return False
        self._transport = transport
        self.status = f"announcing to {self._where}"
        self._arm(self.clock())
        return True

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        self.status = "closed"

    # ---- what we announce and care about -------------------------------------------------------

    def add(self, info_hash: bytes, *, announce: bool = True) -> bool:
        """Report peers announcing ``info_hash`` and, unless ``announce`` is False, announce it (now,
        then every announce interval). False when ``max_torrents`` are known already."""
        if len(info_hash) != 20:
            raise ValueError(f"info-hash of {len(info_hash)} bytes, not 20")
        if info_hash not in self._wanted and len(self._wanted) >= self.max_torrents:
            return False
        self._wanted.add(info_hash)
        now = self.clock()
        if announce:
            self.schedule.add(info_hash, now)
            self._arm(now)
        else:
            self.schedule.remove(info_hash)
        return True

    def remove(self, info_hash: bytes) -> None:
        self._wanted.discard(info_hash)
        self.schedule.remove(info_hash)

    def set_port(self, port: int) -> None:
        """Our listen port changed: every torrent is announced again with the new one."""
        if not 0 < port < 65536:
            raise ValueError(f"listen port {port} is out of range")
        self.port = port
        self._capacity = lsd.capacity(port, group=self.group, group_port=self.group_port, cookie=self.cookie)
        now = self.clock()
        self.schedule.reset(now)
        self._arm(now)

    @property
    def torrents(self) -> frozenset[bytes]:
        """The info-hashes whose peers we report."""
        return frozenset(self._wanted)

    # ---- sending -------------------------------------------------------------------------------

    def tick(self) -> int:
        """Send the announce that is due now, if the limits allow one, and set the timer for the next;
        the number of info-hashes it carried. The timer calls this; a caller whose clock jumped (a test
        driving a fake clock) may too."""
        if self._transport is None:
            return 0
        now = self.clock()
        batch = self.schedule.take(now, self._capacity)
        if batch:
            data = lsd.build(self.port, batch, group=self.group, group_port=self.group_port, cookie=self.cookie)
            self._transport.sendto(data, self._destination)
            self.sent += 1
        self._arm(now)
        return len(batch)

    def _arm(self, now: float) -> None:
        if self._transport is None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        when = self.schedule.next_time()
        if when is not None:
            self._timer = asyncio.get_running_loop().call_later(max(0.0, when - now), self.tick)

    # ---- receiving -----------------------------------------------------------------------------

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received += 1
        try:
            announce = lsd.parse(data)
        except lsd.LsdError as exc:
            self.dropped += 1
            log.debug("lsd: from %s: %s", addr[0], exc)
            return
        if announce.cookie == self.cookie:
            self.own += 1
            return
        now = self.clock()
        for info_hash in announce.info_hashes:
            if info_hash not in self._wanted:
                continue
            key = (info_hash, addr[0], announce.port)
            last = self._recent.get(key)
            if last is not None and now - last < REPEAT_AFTER:
                continue
            self._recent[key] = now
            self._recent.move_to_end(key)
            if len(self._recent) > MAX_RECENT:
                self._recent.popitem(last=False)
            self.on_peer(info_hash, (addr[0], announce.port))
