"""Saved DHT state: the format round-trips both families and our address; bad documents of every kind are
refused with DhtStateError (never another exception); the node restores its id and nodes as questionable,
keeps the id unless BEP 42 enforcement rules it out, and starts afresh from unusable bytes."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torrent.codec import bencoding
from torrent.dht import persist
from torrent.dht.node import DhtNode
from torrent.dht.node_ids import secure_node_id, valid_node_id
from torrent.dht.persist import FORMAT_VERSION, MAX_NODES, MAX_STATE, DhtState, DhtStateError
from torrent.dht.routing import GOOD_FOR, Contact

OWN = bytes(range(20))
PUBLIC = "124.31.75.21"  # a public address (BEP 42's first example): not exempt


def contacts(n: int, seed: int, *, v6: bool = False) -> list[Contact]:
    rng = random.Random(seed)
    host = (lambda i: f"2001:db8::{i + 1:x}") if v6 else (lambda i: f"10.0.{i // 250}.{i % 250 + 1}")
    return [Contact(rng.randbytes(20), host(i), 1024 + i) for i in range(n)]


def doc(**fields: object) -> bytes:
    base: dict[bytes, object] = {b"version": FORMAT_VERSION, b"id": OWN, b"nodes": b"", b"nodes6": b""}
    for key, value in fields.items():
        if value is None:
            base.pop(key.encode(), None)
        else:
            base[key.encode()] = value
    return bencoding.encode(base)


# ---- the format ------------------------------------------------------------------------------------


def test_both_families_and_our_address_round_trip_in_order() -> None:
    saved = contacts(30, 1) + contacts(20, 2, v6=True)
    data = persist.dump(OWN, saved, PUBLIC)
    state = persist.load(data)
    assert state == DhtState(OWN, tuple(saved), PUBLIC)
    assert state.nodes4 == tuple(saved[:30]) and state.nodes6 == tuple(saved[30:])
    raw = bencoding.decode(data)
    assert raw[b"version"] == FORMAT_VERSION and raw[b"id"] == OWN
    assert len(raw[b"nodes"]) == 30 * 26 and len(raw[b"nodes6"]) == 20 * 38


def test_an_empty_table_and_no_address_round_trip() -> None:
    assert persist.load(persist.dump(OWN, [])) == DhtState(OWN, (), None)


def test_a_full_pair_of_tables_fits_the_bound_and_extra_nodes_are_left_out() -> None:
    many = contacts(MAX_NODES + 10, 3) + contacts(MAX_NODES + 10, 4, v6=True)
    data = persist.dump(OWN, many, "2001:db8::99")
    assert len(data) <= MAX_STATE
    state = persist.load(data)
    assert len(state.nodes4) == MAX_NODES and len(state.nodes6) == MAX_NODES
    assert state.nodes4 == tuple(many[:MAX_NODES])  # the first listed (the best) are the ones kept


def test_our_own_id_duplicates_and_port_zero_are_skipped_on_load() -> None:
    a, b = contacts(2, 5)
    raw = b"".join(c.id + bytes(map(int, c.host.split("."))) + c.port.to_bytes(2, "big") for c in (a, b, a))
    raw += OWN + bytes((10, 9, 9, 9)) + (6881).to_bytes(2, "big")  # ourselves
    raw += b"z" * 20 + bytes((10, 9, 9, 8)) + b"\x00\x00"  # port 0
    assert persist.load(doc(nodes=raw)).nodes == (a, b)


BAD = {
    "not bencode": b"hello",
    "truncated": persist.dump(OWN, contacts(3, 6))[:-5],
    "a list": b"li1ee",
    "no version": doc(version=None),
    "a future version": doc(version=2),
    "version as text": doc(version=b"1"),
    "no id": doc(id=None),
    "short id": doc(id=b"x" * 19),
    "nodes not a multiple of 26": doc(nodes=b"n" * 27),
    "nodes6 not a multiple of 38": doc(nodes6=b"n" * 26),
    "nodes as a list": doc(nodes=[b"x"]),
    "too many nodes": doc(nodes=b"n" * 26 * (MAX_NODES + 1)),
    "ip of 5 bytes": doc(ip=b"12345"),
    "ip as an integer": doc(ip=7),
    "too deep": b"d2:idl" + b"l" * 5 + b"e" * 6 + b"e",
    "oversized": b"d2:id" + b"%d:" % (MAX_STATE + 1) + b"x" * (MAX_STATE + 1) + b"e",
}


@pytest.mark.parametrize("data", BAD.values(), ids=BAD.keys())
def test_bad_state_is_refused_with_a_reason(data: bytes) -> None:
    with pytest.raises(DhtStateError, match="DHT state"):
        persist.load(data)


@given(st.binary(max_size=400))
def test_garbage_is_state_or_a_dht_state_error(data: bytes) -> None:
    try:
        persist.load(data)
    except DhtStateError:
        pass


@given(st.integers(0, 300), st.binary(min_size=1, max_size=8))
def test_corrupted_state_never_raises_anything_else(at: int, junk: bytes) -> None:
    data = persist.dump(OWN, contacts(8, 7) + contacts(3, 8, v6=True), PUBLIC)
    mutated = data[:at] + junk + data[at + len(junk):]
    try:
        state = persist.load(mutated)
    except DhtStateError:
        return
    assert len(state.node_id) == 20 and all(c.port for c in state.nodes)


# ---- the node --------------------------------------------------------------------------------------


def test_a_node_saves_good_and_questionable_nodes_and_a_restored_one_trusts_none_of_them() -> None:
    now = [0.0]
    node = DhtNode(OWN, clock=lambda: now[0])
    good, stale, dead = contacts(5, 9), contacts(4, 10), contacts(2, 11)
    ipv6 = contacts(3, 12, v6=True)
    for c in good + stale + dead:
        node.tables[4].heard_from(c, 0.0, replied=True)
    for c in ipv6:
        node.tables[6].heard_from(c, 0.0, replied=True)
    now[0] = GOOD_FOR + 1  # every node questionable, then five answer again and two go bad
    for c in good:
        node.tables[4].heard_from(c, now[0], replied=True)
    for c in dead:
        node.tables[4].failed(c.id, now[0])
        node.tables[4].failed(c.id, now[0])
    state = persist.load(node.save_state())
    assert state.node_id == OWN
    assert set(state.nodes4[:5]) == set(good) and set(state.nodes4[5:]) == set(stale)  # good first, no bad
    assert set(state.nodes6) == set(ipv6)

    restored = DhtNode.from_state(node.save_state(), clock=lambda: 5.0)
    assert restored.node_id == OWN
    assert sorted(restored.tables[4].contacts()) == sorted(good + stale)
    assert sorted(restored.tables[6].contacts()) == sorted(ipv6)
    stats = restored.stats()
    assert stats.nodes == 12 and stats.nodes_questionable == 12 and stats.nodes_good == 0
    assert stats.nodes_ipv6 == 3


def test_restore_into_an_existing_node_adopts_the_saved_id_and_counts_what_it_added() -> None:
    saved = contacts(6, 13)
    node = DhtNode()
    assert node.restore(persist.dump(OWN, saved)) == 6
    assert node.node_id == OWN and node.table.own_id == OWN
    assert sorted(node.table.contacts()) == sorted(saved)


@pytest.mark.parametrize("data", [b"", b"garbage", doc(version=9)], ids=["empty", "garbage", "version 9"])
def test_unusable_state_gives_a_fresh_node_and_a_warning(data: bytes, caplog: pytest.LogCaptureFixture) -> None:
    node = DhtNode.from_state(data)
    assert len(node.node_id) == 20 and node.node_id != OWN and len(node.table) == 0
    assert "DHT state" in caplog.text


def test_bep42_a_restored_id_is_kept_unless_enforcement_says_it_is_wrong_for_our_address() -> None:
    wrong = persist.dump(OWN, contacts(4, 14), PUBLIC)
    assert not valid_node_id(OWN, PUBLIC)
    assert DhtNode.from_state(wrong).node_id == OWN  # not enforcing: kept
    enforced = DhtNode.from_state(wrong, enforce_node_ids=True)
    assert enforced.node_id != OWN and valid_node_id(enforced.node_id, PUBLIC)
    assert enforced.external_ip == PUBLIC
    assert sorted(enforced.table.contacts()) == sorted(contacts(4, 14))  # the nodes stay, around the new id
    right = secure_node_id(PUBLIC, random.Random(1))
    assert DhtNode.from_state(persist.dump(right, [], PUBLIC), enforce_node_ids=True).node_id == right
    # an address given now outranks the saved one
    other = DhtNode.from_state(persist.dump(right, [], PUBLIC), enforce_node_ids=True, external_ip="65.23.51.170")
    assert other.node_id != right and valid_node_id(other.node_id, "65.23.51.170")
    # a local address is exempt: any id will do
    local = persist.dump(OWN, [], "192.168.1.4")
    assert DhtNode.from_state(local, enforce_node_ids=True).node_id == OWN


def test_from_state_takes_the_id_from_the_state_only() -> None:
    with pytest.raises(TypeError, match="node id"):
        DhtNode.from_state(persist.dump(OWN, []), node_id=b"x" * 20)
