"""Node ids tied to addresses (BEP 42): the first 21 bits of a node id come from CRC-32C of its masked IP
and a 3-bit random ``r`` kept in the id's last byte, so one address cannot choose ids near a target.

Local and private addresses are exempt (a LAN or loopback DHT has no outside address to tie ids to).
The check is a setting: a node may only prefer, or require, ids that pass.
"""

from __future__ import annotations

import functools
import ipaddress
import random
from collections import Counter, OrderedDict

_V4_MASK = bytes((0x03, 0x0F, 0x3F, 0xFF))
_V6_MASK = bytes((0x01, 0x03, 0x07, 0x0F, 0x1F, 0x3F, 0x7F, 0xFF))


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as BEP 42 uses it; inputs here are 4 or 8 bytes."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


@functools.lru_cache(maxsize=4096)
def exempt(host: str) -> bool:
    """Addresses BEP 42 does not apply to: private, loopback, link-local (and anything unparsable)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return True
    return address.is_private or address.is_loopback or address.is_link_local


def _prefix(host: str, r: int) -> int:
    packed = ipaddress.ip_address(host).packed
    mask = _V4_MASK if len(packed) == 4 else _V6_MASK
    masked = bytearray(b & m for b, m in zip(packed, mask, strict=False))
    masked[0] |= (r & 7) << 5
    return crc32c(bytes(masked))


def secure_node_id(host: str, rng: random.Random | None = None) -> bytes:
    """A node id valid for ``host`` (our external address)."""
    rng = rng or random.SystemRandom()
    tail = rng.getrandbits(8)
    crc = _prefix(host, tail & 7)
    head = bytes(((crc >> 24) & 0xFF, (crc >> 16) & 0xFF, ((crc >> 8) & 0xF8) | rng.getrandbits(3)))
    return head + rng.randbytes(16) + bytes((tail,))


def valid_node_id(node_id: bytes, host: str) -> bool:
    """Whether ``node_id`` may belong to ``host`` (always true for exempt addresses)."""
    if exempt(host):
        return True
    if len(node_id) != 20:
        return False
    crc = _prefix(host, node_id[19] & 7)
    return node_id[0] == (crc >> 24) & 0xFF and node_id[1] == (crc >> 16) & 0xFF and \
        node_id[2] & 0xF8 == (crc >> 8) & 0xF8


class AddressVotes:
    """Our external address as the nodes that answer us see it (BEP 42's ``ip`` in every reply). One node
    may lie or sit behind another NAT, so an address is believed only once ``quorum`` of the last
    ``window`` distinct nodes name it, and more of them than name any other."""

    def __init__(self, *, quorum: int = 5, window: int = 50) -> None:
        self.quorum = quorum
        self.window = window
        self._votes: OrderedDict[str, str] = OrderedDict()  # voter's address → the address it named
        self.address: str | None = None

    def vote(self, voter: str, seen: str) -> str | None:
        """A node at ``voter`` says we are ``seen``; the address when this vote changes the verdict."""
        self._votes.pop(voter, None)
        self._votes[voter] = seen
        if len(self._votes) > self.window:
            self._votes.popitem(last=False)
        (best, count), *rest = Counter(self._votes.values()).most_common(2) + [("", 0)]
        if best == self.address or count < self.quorum or count == rest[0][1]:
            return None
        self.address = best
        return best
