"""The iterative lookup against a simulated network: it converges on the true nearest nodes, keeps alpha
queries in flight, survives silent nodes, collects peers and tokens, and stays within its budget."""

from __future__ import annotations

import random

from torrent.dht.lookup import ALPHA, MAX_QUERIES, Lookup
from torrent.dht.routing import Contact, K, RoutingTable, distance


class Network:
    """N nodes with random ids; each heard from all the others once, so its k-buckets hold what a real
    node's hold: its own neighbourhood densely, far regions sparsely."""

    def __init__(self, n: int, seed: int, silent: float = 0.0) -> None:
        rng = random.Random(seed)
        self.contacts = [Contact(rng.randbytes(20), "127.0.0.1", 1000 + i) for i in range(n)]
        self.tables = {c.id: RoutingTable(c.id) for c in self.contacts}
        for c in self.contacts:
            table = self.tables[c.id]
            for other in rng.sample(self.contacts, n):
                table.heard_from(other, 0.0, replied=True)
        self.silent = {c.id for c in self.contacts if rng.random() < silent}
        self.peers: dict[bytes, list[tuple[str, int]]] = {}

    def run(self, lookup: Lookup, start: Contact) -> int:
        """Drive the lookup to its end; returns the most queries it had in flight at once."""
        lookup.add(self.tables[start.id].closest(lookup.target))
        most = 0
        while not lookup.done:
            batch = lookup.next_queries()
            assert batch, "a lookup that is not done must have something to ask"
            most = max(most, len(batch))
            for contact in batch:
                if contact.id in self.silent:
                    lookup.failed(contact.id)
                else:
                    lookup.replied(contact.id, self.tables[contact.id].closest(lookup.target),
                                   self.peers.get(contact.id, []), token=contact.id[:4])
        return most

    def true_nearest(self, target: bytes, k: int = K) -> list[Contact]:
        alive = [c for c in self.contacts if c.id not in self.silent]
        return sorted(alive, key=lambda c: distance(c.id, target))[:k]


def test_a_lookup_finds_the_true_nearest_nodes_within_its_budget() -> None:
    net = Network(400, seed=1)
    rng = random.Random(2)
    for _ in range(5):
        target = rng.randbytes(20)
        lookup = Lookup(target)
        most = net.run(lookup, rng.choice(net.contacts))
        found = [c for c, _ in lookup.result()]
        assert found == net.true_nearest(target)
        assert most <= ALPHA and lookup.queries <= MAX_QUERIES
        assert all(token == c.id[:4] for c, token in lookup.result())  # each answer's token kept


def test_silent_nodes_do_not_stop_a_lookup() -> None:
    net = Network(400, seed=3, silent=0.3)
    target = random.Random(4).randbytes(20)
    lookup = Lookup(target)
    net.run(lookup, next(c for c in net.contacts if c.id not in net.silent))
    found = [c for c, _ in lookup.result()]
    assert len(found) == K and all(c.id not in net.silent for c in found)
    assert len(set(found) & set(net.true_nearest(target))) >= K - 1


def test_get_peers_collects_every_peer_once() -> None:
    net = Network(300, seed=5)
    target = random.Random(6).randbytes(20)
    holders = net.true_nearest(target, 3)
    for i, holder in enumerate(holders):
        net.peers[holder.id] = [("10.0.0.1", 6881), (f"10.0.1.{i}", 6881)]
    lookup = Lookup(target)
    net.run(lookup, net.contacts[0])
    assert sorted(lookup.values) == sorted({("10.0.0.1", 6881)} | {(f"10.0.1.{i}", 6881) for i in range(3)})
    assert len(lookup.values) == 4  # the peer two holders gave is there once


def test_the_budget_ends_a_lookup_whatever_the_nodes_answer() -> None:
    rng = random.Random(7)
    lookup = Lookup(rng.randbytes(20), max_queries=10)
    lookup.add([Contact(rng.randbytes(20), "127.0.0.1", 1)])
    while not lookup.done:
        for contact in lookup.next_queries():
            # every answer names fresh, nearer-looking nodes forever
            lookup.replied(contact.id, [Contact(rng.randbytes(20), "127.0.0.1", 2) for _ in range(8)])
    assert lookup.queries == 10 and lookup.done and lookup.next_queries() == []


def test_unknown_and_late_replies_are_ignored() -> None:
    rng = random.Random(8)
    lookup = Lookup(rng.randbytes(20))
    first = Contact(rng.randbytes(20), "127.0.0.1", 1)
    lookup.add([first])
    assert lookup.next_queries() == [first]
    lookup.replied(rng.randbytes(20), [Contact(rng.randbytes(20), "127.0.0.1", 9)], [("6.6.6.6", 1)])
    assert lookup.values == {} and not lookup.done
    lookup.failed(first.id)
    lookup.replied(first.id, [], [("6.6.6.6", 1)])  # after its timeout: too late
    assert lookup.values == {} and lookup.done and lookup.result() == []


def test_a_stopped_lookup_is_done_keeps_its_result_and_ignores_late_answers() -> None:
    net = Network(200, seed=9)
    target = random.Random(10).randbytes(20)
    lookup = Lookup(target)
    lookup.add(net.tables[net.contacts[0].id].closest(target))
    first = lookup.next_queries()
    lookup.replied(first[0].id, net.tables[first[0].id].closest(target), token=b"t")
    lookup.stop()  # the node's time bound: the others never answered
    assert lookup.done and lookup.stopped and lookup.next_queries() == []
    lookup.replied(first[1].id, [], [("6.6.6.6", 1)])
    assert [c for c, _ in lookup.result()] == [first[0]] and lookup.values == {}
