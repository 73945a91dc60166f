"""What a DHT node keeps for others (BEP 5), sans-IO: announce tokens and the peers announced to it.

Tokens are SHA-1 of the querier's address and a secret that changes every ``TOKEN_ROTATION`` seconds; a
token made with the current or the previous secret is accepted, so a token lives 5 to 10 minutes and ties
an announce to the address that asked for it. Announced peers expire after ``PEER_TTL`` and are bounded
per torrent and in total, so a flood of announces costs a fixed amount of memory: a peer is kept in its
compact form (6 or 18 bytes, what a get_peers reply carries), about 165 bytes with its expiry and its
place in the dictionaries, so the default ``MAX_PEERS`` of 100 000 take 16.4 MB (measured with
tracemalloc; ``benchmarks/test_dht_bench.py`` measures a whole busy node).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import random
from collections import OrderedDict

from torrent.codec.krpc import decode_address, encode_address

TOKEN_ROTATION = 300.0  # seconds (BEP 5: tokens up to ten minutes old are accepted)
PEER_TTL = 30 * 60.0  # an announce holds this long
MAX_PEERS_PER_TORRENT = 500
MAX_PEERS = 100_000  # every torrent together (a node near many popular info-hashes holds this many)
REPLY_PEERS = 50  # IPv4 values in one get_peers reply: 50 × 8 bytes, well inside one datagram
REPLY_PEERS6 = 32  # IPv6 ones, 20 bytes each: the reply stays under BEP 32's 1 024-byte payload


class Tokens:
    def __init__(self, now: float, secret: bytes | None = None) -> None:
        self._secrets = [secret or os.urandom(16), os.urandom(16)]  # current, previous
        self._rotated = now

    def _rotate(self, now: float) -> None:
        while now - self._rotated >= TOKEN_ROTATION:
            self._secrets = [os.urandom(16), self._secrets[0]]
            self._rotated += TOKEN_ROTATION

    def make(self, host: str, now: float) -> bytes:
        self._rotate(now)
        return _token(self._secrets[0], host)

    def check(self, token: bytes, host: str, now: float) -> bool:
        self._rotate(now)
        return any(hmac.compare_digest(token, _token(secret, host)) for secret in self._secrets)

    def expire(self, now: float) -> None:
        """Retire secrets on time even when no query arrives (the node's upkeep calls this)."""
        self._rotate(now)


def _token(secret: bytes, host: str) -> bytes:
    return hashlib.sha1(host.encode() + secret).digest()[:8]


class PeerStore:
    """info-hash → peers announced to us, newest last; the least recently announced torrent goes first
    when the total is full. ``max_peers`` bounds the total, ``per_torrent`` each torrent."""

    def __init__(self, *, max_peers: int = MAX_PEERS, per_torrent: int = MAX_PEERS_PER_TORRENT,
                 ttl: float = PEER_TTL) -> None:
        self.max_peers = max_peers
        self.per_torrent = per_torrent
        self.ttl = ttl
        # info-hash → compact peer address → when it expires (in expiry order: an announce moves it last)
        self._torrents: OrderedDict[bytes, OrderedDict[bytes, float]] = OrderedDict()
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def torrents(self) -> int:
        return len(self._torrents)

    def announce(self, info_hash: bytes, host: str, port: int, now: float) -> None:
        peers = self._torrents.get(info_hash)
        if peers is None:
            peers = self._torrents[info_hash] = OrderedDict()
        else:
            self._torrents.move_to_end(info_hash)
        key = encode_address(host, port)
        if key in peers:
            peers.move_to_end(key)
        else:
            self._count += 1
            if len(peers) >= self.per_torrent:
                peers.popitem(last=False)
                self._count -= 1
        peers[key] = now + self.ttl
        while self._count > self.max_peers:
            self._evict_oldest_torrent_peer(info_hash)

    def _evict_oldest_torrent_peer(self, keep: bytes) -> None:
        victim = next(iter(self._torrents))
        if victim == keep and len(self._torrents) > 1:
            victim = list(self._torrents)[1]
        peers = self._torrents[victim]
        peers.popitem(last=False)
        self._count -= 1
        if not peers:
            del self._torrents[victim]

    def peers(self, info_hash: bytes, now: float, *, count: int = REPLY_PEERS, ipv6: bool = False,
              rng: random.Random | None = None) -> list[tuple[str, int]]:
        """Up to ``count`` live peers of one address family, a random sample when there are more."""
        return [decode_address(p) for p in self.compact(info_hash, now, count=count, ipv6=ipv6, rng=rng)]

    def compact(self, info_hash: bytes, now: float, *, count: int = REPLY_PEERS, ipv6: bool = False,
                rng: random.Random | None = None) -> list[bytes]:
        """``peers`` in compact form, ready for a get_peers reply."""
        peers = self._torrents.get(info_hash)
        if not peers:
            return []
        self._expire(info_hash, peers, now)
        size = 18 if ipv6 else 6
        live = [p for p in peers if len(p) == size]
        if len(live) > count:
            live = (rng or random).sample(live, count)
        return live

    def _expire(self, info_hash: bytes, peers: OrderedDict[bytes, float], now: float) -> None:
        while peers:
            key, expires = next(iter(peers.items()))
            if expires > now:
                break
            del peers[key]
            self._count -= 1
        if not peers:
            del self._torrents[info_hash]

    def expire(self, now: float) -> None:
        """Drop every expired announce (the node calls this now and then)."""
        for info_hash in list(self._torrents):
            self._expire(info_hash, self._torrents[info_hash], now)
