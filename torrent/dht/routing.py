"""The DHT routing table (BEP 5): k-buckets over the 160-bit id space, split only around our own id.

Sans-IO: every call takes ``now`` (seconds, any monotonic clock) and returns what the node should do
(ping a questionable node, look up a stale bucket's range); sending is the node's job. Memory is bounded
by the id space: at most 160 buckets of ``k`` nodes and ``k`` replacements each. One table holds one
address family: a node on IPv4 and IPv6 keeps two (BEP 32), with the same id.

Node states as BEP 5 has them: *good* if it answered one of our queries in the last 15 minutes, or ever
answered and queried us in the last 15 minutes, and has not since left one unanswered; *bad* after
``BAD_AFTER`` queries in a row went unanswered; *questionable* otherwise (so a node that missed one query
is pinged once more before it is given up). A full bucket takes a newcomer only in place of a bad node; it keeps
the newcomer as a replacement and asks the node to ping its questionable ones, whose failures free the
place.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

ID_BITS = 160
K = 8
GOOD_FOR = 15 * 60.0  # seconds a node stays good after its last sign of life (BEP 5)
REFRESH_AFTER = 15 * 60.0  # a bucket unchanged this long is refreshed with a lookup in its range
BAD_AFTER = 2  # unanswered queries in a row that make a node bad


def distance(a: bytes, b: bytes) -> int:
    return int.from_bytes(a, "big") ^ int.from_bytes(b, "big")


class Contact(NamedTuple):
    id: bytes
    host: str
    port: int


@dataclass(slots=True)
class Entry:
    contact: Contact
    last_reply: float | None = None  # when it last answered one of our queries
    last_query: float | None = None  # when it last queried us
    failures: int = 0  # our queries in a row it did not answer

    def good(self, now: float) -> bool:
        if self.failures or self.last_reply is None:  # one unanswered query already puts it in question
            return False
        return now - self.last_reply < GOOD_FOR or (self.last_query is not None and now - self.last_query < GOOD_FOR)

    def bad(self) -> bool:
        return self.failures >= BAD_AFTER


@dataclass(slots=True)
class Bucket:
    lo: int  # ids in [lo, hi)
    hi: int
    changed: float  # when a node last joined or answered
    nodes: OrderedDict[bytes, Entry] = field(default_factory=OrderedDict)  # least recently seen first
    replacements: OrderedDict[bytes, Contact] = field(default_factory=OrderedDict)

    def covers(self, value: int) -> bool:
        return self.lo <= value < self.hi


class Census(NamedTuple):
    """How many nodes a table holds, by state (a cheap count for statistics)."""

    good: int
    questionable: int
    bad: int
    buckets: int

    @property
    def nodes(self) -> int:
        return self.good + self.questionable + self.bad


class RoutingTable:
    def __init__(self, own_id: bytes, *, k: int = K, now: float = 0.0, refresh_after: float = REFRESH_AFTER) -> None:
        """``refresh_after``: seconds a bucket may go unchanged before ``refresh_targets`` names it."""
        if len(own_id) != ID_BITS // 8:
            raise ValueError("a node id is 20 bytes")
        self.own_id = own_id
        self._own = int.from_bytes(own_id, "big")
        self.k = k
        self.refresh_after = refresh_after
        self.buckets = [Bucket(0, 1 << ID_BITS, now)]

    # ---- lookups -----------------------------------------------------------------------------

    def _bucket_for(self, node_id: bytes) -> Bucket:
        return self._bucket_at(int.from_bytes(node_id, "big"))

    def _bucket_at(self, value: int) -> Bucket:
        lo, hi = 0, len(self.buckets)
        while lo < hi:  # buckets are sorted and contiguous
            mid = (lo + hi) // 2
            bucket = self.buckets[mid]
            if value < bucket.lo:
                hi = mid
            elif value >= bucket.hi:
                lo = mid + 1
            else:
                return bucket
        raise AssertionError("the buckets cover the whole id space")

    def __len__(self) -> int:
        return sum(len(b.nodes) for b in self.buckets)

    def __contains__(self, node_id: object) -> bool:
        return isinstance(node_id, bytes) and len(node_id) == ID_BITS // 8 and \
            node_id in self._bucket_for(node_id).nodes

    def get(self, node_id: bytes) -> Entry | None:
        return self._bucket_for(node_id).nodes.get(node_id)

    def closest(self, target: bytes, count: int | None = None, *, now: float | None = None) -> list[Contact]:
        """The ``count`` (default k) known nodes nearest ``target``, nearest first; bad ones never, and
        only good ones when ``now`` is given.

        Every bucket is an aligned power-of-two block of ids (buckets only ever split in halves), so XOR
        with ``target`` maps it onto an aligned block of distances: the buckets' distance ranges never
        overlap, and a bucket's nodes are all nearer than any node of a bucket further away. So the search
        takes whole buckets, nearest first, and stops as soon as it holds ``count`` nodes; usually the
        target's own bucket is enough. (Sorting every node of a full table was 0.4 ms a query.)"""
        count = count or self.k
        key = int.from_bytes(target, "big")
        home = self._bucket_at(key)
        picked = self._usable(home, now)
        if len(picked) < count:
            rest = sorted((b for b in self.buckets if b is not home and b.nodes),
                          key=lambda b: (b.lo ^ key) & ~(b.hi - b.lo - 1))
            for bucket in rest:
                picked += self._usable(bucket, now)
                if len(picked) >= count:
                    break
        if len(picked) > 1:
            picked.sort(key=lambda c: int.from_bytes(c.id, "big") ^ key)
        return picked[:count]

    @staticmethod
    def _usable(bucket: Bucket, now: float | None) -> list[Contact]:
        if now is None:
            return [e.contact for e in bucket.nodes.values() if e.failures < BAD_AFTER]
        return [e.contact for e in bucket.nodes.values() if e.good(now)]

    def contacts(self) -> list[Contact]:
        return [e.contact for b in self.buckets for e in b.nodes.values()]

    def entries(self) -> list[Entry]:
        return [e for b in self.buckets for e in b.nodes.values()]

    def census(self, now: float) -> Census:
        good = questionable = bad = 0
        for bucket in self.buckets:
            for entry in bucket.nodes.values():
                if entry.failures >= BAD_AFTER:
                    bad += 1
                elif entry.good(now):
                    good += 1
                else:
                    questionable += 1
        return Census(good, questionable, bad, len(self.buckets))

    # ---- what we hear --------------------------------------------------------------------------

    def heard_from(self, contact: Contact, now: float, *, replied: bool) -> list[Contact]:
        """A node answered us (``replied``) or queried us: add or refresh it. Returns questionable nodes
        of a full bucket that the node should ping to make room (empty when nothing is to be done)."""
        if contact.id == self.own_id:
            return []
        while True:
            bucket = self._bucket_for(contact.id)
            entry = bucket.nodes.get(contact.id)
            if entry is not None:
                if (entry.contact.host, entry.contact.port) != (contact.host, contact.port) and not replied:
                    return []  # an unverified claim to a known id from elsewhere: ignore it
                entry.contact = contact
                self._touch(entry, bucket, now, replied)
                return []
            if len(bucket.nodes) < self.k:
                entry = Entry(contact)
                bucket.nodes[contact.id] = entry
                self._touch(entry, bucket, now, replied)
                bucket.replacements.pop(contact.id, None)
                return []
            bad = next((e for e in bucket.nodes.values() if e.bad()), None)
            if bad is not None:
                del bucket.nodes[bad.contact.id]
                continue
            if bucket.covers(self._own) and bucket.hi - bucket.lo > self.k:
                self._split(bucket, now)
                continue
            bucket.replacements.pop(contact.id, None)
            bucket.replacements[contact.id] = contact
            while len(bucket.replacements) > self.k:
                bucket.replacements.popitem(last=False)
            return [e.contact for e in bucket.nodes.values() if not e.good(now)]

    def heard_of(self, contact: Contact, now: float) -> bool:
        """A node another node named (a router's reply, a peer's PORT message): it takes a free place,
        splitting our own bucket if need be, as a questionable node; it never displaces anyone, nor
        changes a known node's address. Whether it was added."""
        if contact.id == self.own_id or len(contact.id) != ID_BITS // 8:
            return False
        while True:
            bucket = self._bucket_for(contact.id)
            if contact.id in bucket.nodes:
                return False
            if len(bucket.nodes) < self.k:
                bucket.nodes[contact.id] = Entry(contact)
                bucket.nodes.move_to_end(contact.id, last=False)  # least recently seen: it never was
                return True
            if bucket.covers(self._own) and bucket.hi - bucket.lo > self.k:
                self._split(bucket, now)
                continue
            return False

    def _touch(self, entry: Entry, bucket: Bucket, now: float, replied: bool) -> None:
        if replied:
            entry.last_reply = now
            entry.failures = 0
            bucket.changed = now
        else:
            entry.last_query = now
        bucket.nodes.move_to_end(entry.contact.id)

    def _split(self, bucket: Bucket, now: float) -> None:
        middle = (bucket.lo + bucket.hi) // 2
        low, high = Bucket(bucket.lo, middle, bucket.changed), Bucket(middle, bucket.hi, bucket.changed)
        for node_id, entry in bucket.nodes.items():
            (low if int.from_bytes(node_id, "big") < middle else high).nodes[node_id] = entry
        for node_id, contact in bucket.replacements.items():
            (low if int.from_bytes(node_id, "big") < middle else high).replacements[node_id] = contact
        i = self.buckets.index(bucket)
        self.buckets[i:i + 1] = [low, high]

    def failed(self, node_id: bytes, now: float) -> None:
        """One of our queries to it went unanswered. A node gone bad makes way for the newest replacement."""
        bucket = self._bucket_for(node_id)
        entry = bucket.nodes.get(node_id)
        if entry is None:
            return
        entry.failures += 1
        if entry.bad() and bucket.replacements:
            del bucket.nodes[node_id]
            _, contact = bucket.replacements.popitem()
            bucket.nodes[contact.id] = Entry(contact)  # questionable until it answers

    # ---- upkeep ----------------------------------------------------------------------------------

    def questionable(self, now: float) -> list[Contact]:
        """Nodes to ping: not good any more and not yet bad."""
        return [e.contact for b in self.buckets for e in b.nodes.values() if not e.good(now) and not e.bad()]

    def refresh_targets(self, now: float, rng: random.Random | None = None) -> list[bytes]:
        """A random id in the range of each bucket unchanged for ``refresh_after``: look each up."""
        rng = rng or random.Random()
        out = []
        for bucket in self.buckets:
            if now - bucket.changed >= self.refresh_after:
                out.append(rng.randrange(bucket.lo, bucket.hi).to_bytes(ID_BITS // 8, "big"))
                bucket.changed = now
        return out

    def load(self, contacts: Iterable[Contact], now: float) -> int:
        """Saved nodes from an earlier run: questionable until they answer (buckets split around our id
        as they fill, as for nodes we hear). How many were added."""
        return sum(self.heard_of(contact, now) for contact in contacts)

    def reseated(self, own_id: bytes, now: float) -> RoutingTable:
        """The same nodes, with their states, in a table around another id of ours (BEP 42 asked us to
        change it); the nodes that fit, the ones that answered us lately first."""
        table = RoutingTable(own_id, k=self.k, now=now, refresh_after=self.refresh_after)
        entries = sorted(self.entries(), key=lambda e: (e.failures, -(e.last_reply or -1e18)))
        for entry in entries:
            if table.heard_of(entry.contact, now):
                moved = table.get(entry.contact.id)
                assert moved is not None
                moved.last_reply, moved.last_query, moved.failures = entry.last_reply, entry.last_query, entry.failures
        return table
