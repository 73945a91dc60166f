"""Peer candidates: when each address is dialled again, with a fake clock (times are arguments)."""

from __future__ import annotations

import dataclasses

import pytest

from torrent.core.settings import NetworkSettings
from torrent.session.api import PeerSource
from torrent.session.candidates import Candidates

A = ("10.0.0.1", 6881)
B = ("10.0.0.2", 6881)
C = ("10.0.0.3", 6881)
D = ("10.0.0.4", 6881)
V6 = ("2001:db8::1", 51413)

DEFAULT = NetworkSettings()


def make(**changes: object) -> Candidates:
    return Candidates(dataclasses.replace(DEFAULT, **changes))  # type: ignore[arg-type]


def due(c: Candidates, now: float) -> list[tuple[str, int]]:
    return list(c.due(now))


# ---- adding and due order -------------------------------------------------------------------


def test_new_address_is_due_at_once_and_add_reports_novelty() -> None:
    c = make()
    assert c.add(A, PeerSource.TRACKER, now=100.0) is True
    assert c.add(A, PeerSource.TRACKER, now=100.0) is False  # known
    assert len(c) == 1 and A in c and B not in c
    assert due(c, 100.0) == [A]
    candidate = c.get(A)
    assert candidate is not None
    assert (candidate.source, candidate.failures, candidate.attempts) == (PeerSource.TRACKER, 0, 0)


def test_due_is_oldest_first_and_only_those_whose_time_has_come() -> None:
    c = make(retry_first=5.0)
    for address in (A, B, C, V6):
        c.add(address, PeerSource.TRACKER)
    assert due(c, 0.0) == [A, B, C, V6]
    c.dialling(B, 0.0)
    c.failed(B, "refused", 0.0)  # B: next try at 5
    assert due(c, 4.999) == [A, C, V6]
    assert due(c, 5.0) == [A, B, C, V6]  # back in its original place, not appended


def test_dialling_makes_an_address_not_due_until_the_attempt_ends() -> None:
    c = make()
    c.add(A, PeerSource.TRACKER)
    c.add(B, PeerSource.TRACKER)
    c.dialling(A, 0.0)
    assert due(c, 0.0) == [B]
    assert due(c, 1e9) == [B]  # however long the attempt takes
    candidate = c.get(A)
    assert candidate is not None and candidate.attempts == 1
    assert c.failed(A, "timed out", 10.0) == DEFAULT.retry_first
    assert due(c, 10.0 + DEFAULT.retry_first) == [A, B]


def test_connected_address_is_not_due_until_closed() -> None:
    c = make()
    c.add(A, PeerSource.TRACKER)
    c.dialling(A, 0.0)
    c.connected(A)
    assert due(c, 1e9) == []
    c.closed(A, "peer closed", 500.0, useful=True)
    assert due(c, 500.0 + DEFAULT.retry_first) == [A]


def test_unknown_addresses_are_ignored() -> None:
    c = make()
    c.dialling(A, 0.0)
    c.connected(A)
    assert c.failed(A, "x", 0.0) is None
    assert c.closed(A, "x", 0.0, useful=True) is None
    assert c.closed(A, "x", 0.0, useful=False) is None
    c.forget(A)
    assert len(c) == 0 and c.get(A) is None


# ---- the retry schedule -------------------------------------------------------------------------


def test_delays_start_at_retry_first_double_and_stop_at_retry_max() -> None:
    c = make(retry_first=1.0, retry_max=30.0)
    assert [c.delay(n) for n in range(1, 9)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert c.delay(10_000) == 30.0  # no overflow for a very long run of failures


def test_failures_in_a_row_follow_the_schedule() -> None:
    c = make(retry_first=2.0, retry_max=20.0, retry_give_up=100)
    c.add(A, PeerSource.TRACKER)
    now = 0.0
    delays = []
    for _ in range(6):
        assert A in due(c, now)
        c.dialling(A, now)
        delay = c.failed(A, "refused", now)
        assert delay is not None
        delays.append(delay)
        assert A not in due(c, now + delay - 0.001)
        now += delay
    assert delays == [2.0, 4.0, 8.0, 16.0, 20.0, 20.0]
    candidate = c.get(A)
    assert candidate is not None
    assert (candidate.failures, candidate.attempts, candidate.last_error) == (6, 6, "refused")


def test_qbittorrent_closing_the_first_connection_at_once_is_retried_after_one_second() -> None:
    """qBittorrent 4.5.2, freshly started, closes our first connection at once: the second
    attempt must be the first scheduled retry (retry_first, 1 s by default), not a 60 s wait."""
    assert DEFAULT.retry_first == 1.0
    c = make()
    c.add(A, PeerSource.TRACKER, now=0.0)
    assert due(c, 0.0) == [A]
    c.dialling(A, 0.0)
    c.connected(A)
    assert c.closed(A, "closed by peer", 0.0, useful=False) == 1.0
    assert due(c, 0.999) == []
    assert due(c, 1.0) == [A]  # exactly at t = retry_first
    c.dialling(A, 1.0)
    c.connected(A)  # the second attempt works and lasts
    assert c.closed(A, "done", 200.0, useful=True) == 1.0
    candidate = c.get(A)
    assert candidate is not None and candidate.failures == 0 and candidate.attempts == 2


def test_useful_close_resets_the_count_and_waits_retry_first() -> None:
    c = make(retry_first=3.0, retry_max=1000.0)
    c.add(A, PeerSource.TRACKER)
    for now in (0.0, 10.0, 30.0, 60.0):
        c.dialling(A, now)
        c.failed(A, "refused", now)
    candidate = c.get(A)
    assert candidate is not None and candidate.failures == 4
    c.dialling(A, 100.0)
    c.connected(A)
    assert c.closed(A, "bye", 150.0, useful=True) == 3.0
    assert candidate.failures == 0 and candidate.last_error == "bye"
    assert due(c, 152.999) == [] and due(c, 153.0) == [A]
    # The next failure starts the schedule over.
    c.dialling(A, 153.0)
    assert c.failed(A, "refused", 153.0) == 3.0


def test_useless_close_counts_as_a_failure() -> None:
    c = make(retry_first=1.0, retry_max=1000.0)
    c.add(A, PeerSource.TRACKER)
    c.dialling(A, 0.0)
    assert c.failed(A, "refused", 0.0) == 1.0
    c.dialling(A, 1.0)
    c.connected(A)
    assert c.closed(A, "handshake failed", 1.0, useful=False) == 2.0  # second failure in a row
    candidate = c.get(A)
    assert candidate is not None and candidate.failures == 2 and candidate.last_error == "handshake failed"
    assert due(c, 2.999) == [] and due(c, 3.0) == [A]


# ---- giving up ----------------------------------------------------------------------------------


@pytest.mark.parametrize("source", [s for s in PeerSource if s is not PeerSource.MANUAL])
def test_forgotten_after_retry_give_up_failures(source: PeerSource) -> None:
    c = make(retry_give_up=3)
    c.add(A, source)
    assert c.failed(A, "refused", 0.0) is not None
    assert c.closed(A, "closed", 1.0, useful=False) is not None
    assert A in c
    assert c.failed(A, "refused", 3.0) is None  # the third in a row
    assert A not in c and due(c, 1e9) == []


def test_a_useful_connection_between_failures_postpones_giving_up() -> None:
    c = make(retry_give_up=2)
    c.add(A, PeerSource.TRACKER)
    c.failed(A, "refused", 0.0)
    c.closed(A, "ok", 5.0, useful=True)
    assert c.failed(A, "refused", 10.0) is not None  # one in a row, not two
    assert A in c


def test_manual_addresses_are_never_forgotten() -> None:
    c = make(retry_first=1.0, retry_max=8.0, retry_give_up=2)
    c.add(A, PeerSource.MANUAL)
    delays = [c.failed(A, "refused", float(n)) for n in range(6)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert A in c


def test_retry_give_up_of_one_forgets_at_the_first_failure() -> None:
    c = make(retry_give_up=1)
    c.add(A, PeerSource.PEX)
    assert c.closed(A, "closed", 0.0, useful=False) is None
    assert A not in c


# ---- bounded size -------------------------------------------------------------------------------


def test_eviction_drops_the_oldest() -> None:
    c = make(max_candidates=3)
    for address in (A, B, C):
        assert c.add(address, PeerSource.TRACKER)
    assert c.add(D, PeerSource.DHT)
    assert len(c) == 3
    assert [a for a, _ in c.items()] == [B, C, D]


def test_eviction_spares_manual_addresses_while_others_remain() -> None:
    c = make(max_candidates=3)
    c.add(A, PeerSource.MANUAL)
    c.add(B, PeerSource.TRACKER)
    c.add(C, PeerSource.MANUAL)
    c.add(D, PeerSource.TRACKER)  # B goes, not the older A
    assert [a for a, _ in c.items()] == [A, C, D]
    c.add(V6, PeerSource.MANUAL)  # D, the only non-manual one, goes
    assert [a for a, _ in c.items()] == [A, C, V6]


def test_eviction_among_manual_addresses_only_drops_the_oldest() -> None:
    c = make(max_candidates=2)
    c.add(A, PeerSource.MANUAL)
    c.add(B, PeerSource.MANUAL)
    c.add(C, PeerSource.TRACKER)
    assert [a for a, _ in c.items()] == [B, C]


def test_re_adding_a_known_address_never_evicts() -> None:
    c = make(max_candidates=2)
    c.add(A, PeerSource.TRACKER)
    c.add(B, PeerSource.TRACKER)
    assert c.add(A, PeerSource.PEX) is False
    assert c.add(B, PeerSource.MANUAL) is False
    assert [a for a, _ in c.items()] == [A, B]


# ---- manual additions ---------------------------------------------------------------------------


def test_manual_add_of_a_backed_off_address_makes_it_due_now() -> None:
    c = make(retry_first=100.0, retry_max=1000.0)
    c.add(A, PeerSource.TRACKER)
    c.failed(A, "refused", 0.0)
    c.failed(A, "refused", 1.0)  # next try at 201
    assert due(c, 50.0) == []
    assert c.add(A, PeerSource.MANUAL, now=50.0) is False
    assert due(c, 50.0) == [A]
    candidate = c.get(A)
    assert candidate is not None and candidate.source is PeerSource.MANUAL
    # From now on it is kept whatever happens.
    for n in range(DEFAULT.retry_give_up + 2):
        assert c.failed(A, "refused", 60.0 + n) is not None
    assert A in c


def test_non_manual_re_add_does_not_change_source_or_schedule() -> None:
    c = make(retry_first=10.0)
    c.add(A, PeerSource.MANUAL)
    c.failed(A, "refused", 0.0)
    c.add(A, PeerSource.TRACKER, now=5.0)
    candidate = c.get(A)
    assert candidate is not None and candidate.source is PeerSource.MANUAL
    assert due(c, 5.0) == []
    c2 = make(retry_first=10.0)
    c2.add(B, PeerSource.TRACKER)
    c2.failed(B, "refused", 0.0)
    c2.add(B, PeerSource.PEX, now=5.0)
    assert due(c2, 5.0) == []


def test_manual_re_add_of_a_backed_off_manual_address_makes_it_due_now() -> None:
    c = make(retry_first=100.0)
    c.add(A, PeerSource.MANUAL)
    c.failed(A, "refused", 0.0)  # next try at 100
    c.add(A, PeerSource.MANUAL, now=50.0)  # the user adds it again
    assert due(c, 50.0) == [A]


def test_manual_add_during_an_attempt_keeps_it_not_due() -> None:
    c = make()
    c.add(A, PeerSource.TRACKER)
    c.dialling(A, 0.0)
    c.add(A, PeerSource.MANUAL, now=1.0)
    assert due(c, 1.0) == []


# ---- the handshake to dial with (MSE or plain text) -------------------------------------------


def test_a_close_during_the_handshake_switches_it_once_and_at_once() -> None:
    c = Candidates(NetworkSettings())
    c.add(A, PeerSource.TRACKER)
    c.dialling(A, 0.0)
    assert c.get(A).encrypted is None  # the policy's first choice
    assert c.switch_handshake(A, False, 5.0)
    assert list(c.due(5.0)) == [A] and c.get(A).encrypted is False and c.get(A).failures == 0
    c.dialling(A, 5.0)
    assert not c.switch_handshake(A, True, 6.0)  # the other failed too: no second switch
    assert c.failed(A, "closed", 6.0) == 1.0


def test_the_handshake_that_worked_is_remembered_and_allows_a_later_switch() -> None:
    c = Candidates(NetworkSettings())
    c.add(A, PeerSource.TRACKER)
    c.switch_handshake(A, False, 0.0)
    c.connected(A, encrypted=False)
    c.closed(A, "done", 100.0, useful=True)
    assert c.get(A).encrypted is False  # the next dial goes straight to what worked
    assert c.switch_handshake(A, True, 101.0)  # it worked since: the peer may have changed its policy


def test_a_seed_leaves_known_seeds_alone() -> None:
    candidates = Candidates(NetworkSettings())
    candidates.add(("10.0.0.1", 1), PeerSource.PEX)
    candidates.add(("10.0.0.2", 2), PeerSource.PEX)
    candidates.mark_seeds([("10.0.0.2", 2), ("10.0.0.9", 9)])  # an unknown address is not remembered for it
    assert list(candidates.due(0.0)) == [("10.0.0.1", 1), ("10.0.0.2", 2)]
    assert list(candidates.due(0.0, seeds=False)) == [("10.0.0.1", 1)]
    assert ("10.0.0.9", 9) not in candidates
