"""The DHT routing table: buckets split only around our id, node states on a fake clock, replacements,
nearest-first lookups, refresh targets in each stale bucket's range, bounded size."""

from __future__ import annotations

import random

from torrent.dht.routing import BAD_AFTER, GOOD_FOR, ID_BITS, REFRESH_AFTER, Contact, K, RoutingTable, distance

OWN = bytes(20)  # 000…0: every split keeps the low half


def node_id(value: int) -> bytes:
    return value.to_bytes(20, "big")


def contact(value: int, port: int = 6881) -> Contact:
    return Contact(node_id(value), "127.0.0.1", port)


def top(bits: int, low: int = 0) -> int:
    """An id whose highest set bit is ``bits`` from the top (distance class from OWN)."""
    return (1 << (ID_BITS - bits)) + low


def test_a_bucket_fills_to_k_then_the_one_holding_our_id_splits() -> None:
    table = RoutingTable(OWN)
    for i in range(K):
        assert table.heard_from(contact(top(1, i)), 0.0, replied=True) == []
    assert len(table.buckets) == 1 and len(table) == K
    # a ninth node: the bucket covers our id, so it splits; the far half [2^159, 2^160) holds the first eight
    table.heard_from(contact(top(2)), 0.0, replied=True)
    assert len(table) == K + 1
    assert [(b.lo, b.hi) for b in table.buckets][-1] == (1 << 159, 1 << 160)
    assert all(b.lo <= int.from_bytes(e.contact.id, "big") < b.hi for b in table.buckets for e in b.nodes.values())


def test_a_full_far_bucket_keeps_good_nodes_and_holds_the_newcomer_as_a_replacement() -> None:
    table = RoutingTable(OWN)
    table.heard_from(contact(top(5)), 0.0, replied=True)  # forces splits away from the far half later
    for i in range(K):
        table.heard_from(contact(top(1, i)), 0.0, replied=True)
    newcomer = contact(top(1, 100))
    assert table.heard_from(newcomer, 1.0, replied=True) == []  # every node is good: nothing to ping
    assert newcomer.id not in table
    far = table.buckets[-1]
    assert newcomer.id in far.replacements
    # later the nodes are questionable: the table asks for pings, and a node that fails them makes room
    later = GOOD_FOR + 10
    to_ping = table.heard_from(newcomer, later, replied=True)
    assert len(to_ping) == K
    for _ in range(BAD_AFTER):
        table.failed(to_ping[0].id, later)
    assert to_ping[0].id not in table and newcomer.id in table


def test_a_bad_node_is_replaced_at_once_by_a_newcomer() -> None:
    table = RoutingTable(OWN)
    table.heard_from(contact(top(5)), 0.0, replied=True)
    for i in range(K):
        table.heard_from(contact(top(1, i)), 0.0, replied=True)
    victim = contact(top(1, 3)).id
    for _ in range(BAD_AFTER):
        table.failed(victim, 1.0)
    assert table.get(victim).bad()
    table.heard_from(contact(top(1, 200)), 2.0, replied=False)
    assert victim not in table and contact(top(1, 200)).id in table


def test_node_states_follow_the_bep_timing() -> None:
    table = RoutingTable(OWN)
    c = contact(top(3))
    table.heard_from(c, 0.0, replied=False)  # it queried us, never answered: questionable
    entry = table.get(c.id)
    assert not entry.good(0.0) and table.questionable(0.0) == [c]
    table.heard_from(c, 10.0, replied=True)
    assert entry.good(10.0) and entry.good(10.0 + GOOD_FOR - 1) and not entry.good(10.0 + GOOD_FOR)
    table.heard_from(c, 10.0 + GOOD_FOR + 5, replied=False)  # answered once, queried us lately: good
    assert entry.good(10.0 + GOOD_FOR + 6)
    for _ in range(BAD_AFTER):
        table.failed(c.id, 2 * GOOD_FOR)
    assert entry.bad() and not entry.good(2 * GOOD_FOR) and table.questionable(2 * GOOD_FOR) == []
    table.heard_from(c, 3 * GOOD_FOR, replied=True)  # it answers again: good again
    assert entry.failures == 0 and entry.good(3 * GOOD_FOR)


def test_closest_gives_the_nearest_first_and_never_bad_nodes() -> None:
    rng = random.Random(7)
    table = RoutingTable(node_id(rng.getrandbits(160)))
    contacts = [Contact(node_id(rng.getrandbits(160)), "127.0.0.1", 1000 + i) for i in range(300)]
    for c in contacts:
        table.heard_from(c, 0.0, replied=True)
    target = node_id(rng.getrandbits(160))
    near = table.closest(target)
    known = table.contacts()
    assert len(near) == K and set(near) <= set(known)
    assert near == sorted(known, key=lambda c: distance(c.id, target))[:K]
    for _ in range(BAD_AFTER):
        table.failed(near[0].id, 1.0)
    assert near[0] not in table.closest(target)
    assert all(table.get(c.id).good(1.0) for c in table.closest(target, now=1.0))


def test_the_table_stays_bounded_however_many_nodes_are_heard() -> None:
    rng = random.Random(1)
    table = RoutingTable(node_id(rng.getrandbits(160)))
    for i in range(20_000):
        table.heard_from(Contact(node_id(rng.getrandbits(160)), "127.0.0.1", 1 + i % 65535), 0.0, replied=True)
    assert len(table) <= K * len(table.buckets) and len(table.buckets) <= ID_BITS
    assert all(len(b.replacements) <= K for b in table.buckets)
    assert len(table) > 100  # yet it learned a useful number


def test_our_own_id_and_a_spoofed_known_id_are_ignored() -> None:
    table = RoutingTable(OWN)
    assert table.heard_from(Contact(OWN, "127.0.0.1", 1), 0.0, replied=True) == []
    assert len(table) == 0
    real = contact(top(4), port=7000)
    table.heard_from(real, 0.0, replied=True)
    table.heard_from(Contact(real.id, "127.0.0.9", 9999), 1.0, replied=False)  # a query claiming its id
    assert table.get(real.id).contact == real


def test_stale_buckets_are_refreshed_with_a_target_in_their_range() -> None:
    table = RoutingTable(OWN)
    for i in range(K + 3):
        table.heard_from(contact(top(1 + i % 3, i)), 0.0, replied=True)
    assert table.refresh_targets(REFRESH_AFTER - 1) == []
    targets = table.refresh_targets(REFRESH_AFTER, random.Random(3))
    assert len(targets) == len(table.buckets)
    for bucket, target in zip(table.buckets, targets, strict=True):
        assert bucket.covers(int.from_bytes(target, "big"))
    assert table.refresh_targets(REFRESH_AFTER + 1) == []  # just refreshed


def test_saved_nodes_load_as_questionable() -> None:
    table = RoutingTable(OWN)
    saved = [contact(top(2, i)) for i in range(5)]
    table.load(saved, 0.0)
    assert sorted(table.contacts()) == sorted(saved)
    assert table.questionable(0.0) == table.contacts()


def _brute_closest(table: RoutingTable, target: bytes, count: int, now: float | None) -> list[Contact]:
    entries = [e for b in table.buckets for e in b.nodes.values()
               if not e.bad() and (now is None or e.good(now))]
    entries.sort(key=lambda e: distance(e.contact.id, target))
    return [e.contact for e in entries[:count]]


def test_closest_walks_buckets_yet_gives_what_sorting_every_node_gives() -> None:
    rng = random.Random(11)
    for trial in range(20):
        table = RoutingTable(node_id(rng.getrandbits(160)))
        for i in range(rng.choice((3, 40, 400, 3000))):
            table.heard_from(Contact(node_id(rng.getrandbits(160)), "127.0.0.1", 1 + i), float(i % 7), replied=True)
        for c in rng.sample(table.contacts(), len(table) // 5):  # some bad, some questionable
            for _ in range(rng.choice((1, BAD_AFTER))):
                table.failed(c.id, 0.0)
        for _ in range(10):
            # targets anywhere, and near our own id (the deep, sparse buckets)
            target = node_id(rng.getrandbits(160) if rng.random() < 0.5 else
                             int.from_bytes(table.own_id, "big") ^ rng.getrandbits(rng.randrange(1, 160)))
            count = rng.choice((1, K, 3 * K, 100))
            now = rng.choice((None, 3.0, GOOD_FOR + 2.0))
            assert table.closest(target, count, now=now) == _brute_closest(table, target, count, now), trial


def test_a_node_heard_of_takes_a_free_place_as_questionable_and_displaces_nobody() -> None:
    table = RoutingTable(OWN)
    for i in range(K):
        table.heard_from(contact(top(1, i)), 0.0, replied=True)
    assert table.heard_of(contact(top(3)), 0.0)  # the full bucket holds our id: it splits
    assert table.get(contact(top(3)).id).last_reply is None and table.questionable(0.0) == [contact(top(3))]
    assert not table.heard_of(contact(top(1, 50)), 0.0)  # the far bucket is full of good nodes
    assert contact(top(1, 50)).id not in table and not table.buckets[-1].replacements
    moved = Contact(contact(top(1, 2)).id, "10.9.9.9", 1)
    assert not table.heard_of(moved, 0.0) and table.get(moved.id).contact == contact(top(1, 2))
    assert not table.heard_of(Contact(OWN, "127.0.0.1", 1), 0.0)


def test_census_counts_each_state() -> None:
    table = RoutingTable(OWN)
    for i in range(6):
        table.heard_from(contact(top(2 + i)), 0.0, replied=i < 3)
    for _ in range(BAD_AFTER):
        table.failed(contact(top(2)).id, 1.0)
    census = table.census(1.0)
    assert (census.good, census.questionable, census.bad, census.nodes) == (2, 3, 1, 6)
    assert census.buckets == len(table.buckets)


def test_a_reseated_table_keeps_the_nodes_and_their_states_around_the_new_id() -> None:
    rng = random.Random(12)
    table = RoutingTable(node_id(rng.getrandbits(160)))
    for i in range(200):
        table.heard_from(Contact(node_id(rng.getrandbits(160)), "127.0.0.1", 1 + i), 5.0, replied=i % 2 == 0)
    new_id = node_id(rng.getrandbits(160))
    moved = table.reseated(new_id, 9.0)
    assert moved.own_id == new_id and len(moved) > K
    for contact_ in moved.contacts():
        old, new = table.get(contact_.id), moved.get(contact_.id)
        assert (old.last_reply, old.last_query, old.failures) == (new.last_reply, new.last_query, new.failures)
    assert all(b.covers(int.from_bytes(e.contact.id, "big")) for b in moved.buckets for e in b.nodes.values())


def test_the_refresh_interval_is_the_tables_own() -> None:
    table = RoutingTable(OWN, refresh_after=30.0)
    assert table.refresh_targets(29.0) == [] and len(table.refresh_targets(30.0)) == 1
