"""An iterative DHT lookup (BEP 5 find_node / get_peers), as a sans-IO state machine.

The node asks ``next_queries()`` whom to query (at most ``alpha`` in flight, nearest unqueried first),
sends, and reports each outcome with ``replied`` or ``failed``. The lookup ends when the ``k`` nearest
nodes it knows have all answered (nobody nearer is left to ask), or when its query budget is spent: a
lookup is bounded in queries whatever the nodes answer, and in time by the node, which ``stop``s it when
its time is up. The limits (``alpha``, ``max_queries``) are the node's settings, with these defaults. The result
is the ``k`` nearest nodes that answered, each with the token it gave (for announce_peer), and, for
get_peers, every peer found.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from torrent.dht.routing import Contact, K

ALPHA = 3  # queries in flight (BEP 5)
MAX_QUERIES = 64  # a lookup's whole budget
MAX_CANDIDATES = 256  # nodes it remembers (the nearest are kept)
MAX_VALUES = 2000  # peers it collects


@dataclass
class Lookup:
    target: bytes
    k: int = K
    alpha: int = ALPHA
    max_queries: int = MAX_QUERIES
    _key: int = field(init=False)
    _candidates: dict[bytes, Contact] = field(default_factory=dict, init=False)  # id → contact, not bad
    _asked: set[bytes] = field(default_factory=set, init=False)
    _in_flight: set[bytes] = field(default_factory=set, init=False)
    _answered: dict[bytes, bytes | None] = field(default_factory=dict, init=False)  # id → token
    values: dict[tuple[str, int], None] = field(default_factory=dict, init=False)  # peers found, in order
    queries: int = field(default=0, init=False)
    stopped: bool = field(default=False, init=False)  # ended by the node's time bound

    def __post_init__(self) -> None:
        self._key = int.from_bytes(self.target, "big")

    def _distance(self, node_id: bytes) -> int:
        return int.from_bytes(node_id, "big") ^ self._key

    def add(self, contacts: Iterable[Contact]) -> None:
        """Nodes to consider: the routing table's nearest at the start, then those the replies name."""
        for contact in contacts:
            if contact.id not in self._candidates and len(contact.id) == len(self.target):
                self._candidates[contact.id] = contact
        if len(self._candidates) > MAX_CANDIDATES:
            keep = sorted(self._candidates, key=self._distance)[:MAX_CANDIDATES]
            keep_set = set(keep) | self._asked
            self._candidates = {i: c for i, c in self._candidates.items() if i in keep_set}

    def _nearest_unasked(self) -> list[Contact]:
        return sorted((c for i, c in self._candidates.items() if i not in self._asked),
                      key=lambda c: self._distance(c.id))

    def next_queries(self) -> list[Contact]:
        """Whom to query now (possibly nobody): nearest first, keeping ``alpha`` in flight."""
        if self.done:
            return []
        out = []
        for contact in self._nearest_unasked():
            if len(self._in_flight) >= self.alpha or self.queries >= self.max_queries:
                break
            if self._settled_before(contact):
                break
            self._asked.add(contact.id)
            self._in_flight.add(contact.id)
            self.queries += 1
            out.append(contact)
        return out

    def _settled_before(self, contact: Contact) -> bool:
        """k nodes nearer than ``contact`` have answered already: asking it cannot improve the result."""
        if len(self._answered) < self.k:
            return False
        nearest = sorted(self._answered, key=self._distance)[:self.k]
        return self._distance(contact.id) > self._distance(nearest[-1])

    def replied(self, node_id: bytes, nodes: Sequence[Contact] = (), values: Sequence[tuple[str, int]] = (),
                token: bytes | None = None) -> None:
        if node_id not in self._in_flight:
            return  # not ours, or late: the node has already counted it
        self._in_flight.discard(node_id)
        self._answered[node_id] = token
        self.add(nodes)
        for value in values:
            if len(self.values) >= MAX_VALUES:
                break
            self.values.setdefault(value, None)

    def failed(self, node_id: bytes) -> None:
        self._in_flight.discard(node_id)

    def stop(self) -> None:
        """Time is up: answers still awaited no longer count, nothing more is asked; the result stands."""
        self._in_flight.clear()
        self.stopped = True

    @property
    def done(self) -> bool:
        if self.stopped:
            return True
        if self._in_flight:
            return False
        if self.queries >= self.max_queries:
            return True
        unasked = self._nearest_unasked()
        return not unasked or self._settled_before(unasked[0])

    def result(self) -> list[tuple[Contact, bytes | None]]:
        """The ``k`` nearest nodes that answered, nearest first, with their tokens."""
        nearest = sorted(self._answered, key=self._distance)[:self.k]
        return [(self._candidates[i], self._answered[i]) for i in nearest]
