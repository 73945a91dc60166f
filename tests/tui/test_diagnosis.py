"""The "why is it slow?" line: each cause from snapshots that produce it, their order, and the summary."""

from __future__ import annotations

from fakes import MiB, make_peer, make_session_snapshot, make_torrent, make_tracker

from tui.diagnosis import Cause, diagnose, summary

SESSION = make_session_snapshot()
TRACKERS = (make_tracker(),)
PEERS = (make_peer(), make_peer(address="10.0.0.2:6881", progress=0.3))


def codes(torrent=None, peers=PEERS, trackers=TRACKERS, session=SESSION) -> list[str]:
    return [c.code for c in diagnose(torrent or make_torrent(), peers, trackers, session)]


def cause(code: str, torrent=None, peers=PEERS, trackers=TRACKERS, session=SESSION) -> Cause:
    found = [c for c in diagnose(torrent or make_torrent(), peers, trackers, session) if c.code == code]
    assert len(found) == 1, found
    return found[0]


def test_a_healthy_download_has_no_causes() -> None:
    assert diagnose(make_torrent(), PEERS, TRACKERS, SESSION) == ()
    assert summary(()) == "Downloading: nothing is holding it back"


def test_missing_rows_skip_the_checks_that_need_them() -> None:
    assert diagnose(make_torrent(), (), TRACKERS, SESSION) == ()  # peers not fetched: 12 connected says the torrent
    assert diagnose(make_torrent(), PEERS, (), SESSION) == ()  # trackers not fetched, but peers are known


# ---- slow causes ----------------------------------------------------------------------------


def test_no_peers_says_how_many_are_known() -> None:
    torrent = make_torrent(peers=0, seeds=0, peers_known=58)
    assert cause("no-peers", torrent, peers=()).text == "no connected peers (58 known)"
    waiting = (make_peer(status="waiting"), make_peer(status="failed", last_error="refused"))
    assert "no-peers" in codes(torrent, peers=waiting)
    assert cause("no-peers", torrent._replace(peers_known=0), peers=()).text == "no peers known"


def test_no_seeds_when_no_connected_peer_has_everything() -> None:
    torrent = make_torrent(seeds=0, seeds_known=0)
    partial = (make_peer(progress=0.3), make_peer(address="10.0.0.2:6881", progress=0.9))
    c = cause("no-seeds", torrent, peers=partial)
    assert "no seed among 12 connected peers" in c.text and "trackers know of 0" in c.text
    assert "trackers" not in cause("no-seeds", torrent._replace(seeds_known=None), peers=partial).text
    assert "no-seeds" not in codes(torrent, peers=(make_peer(progress=1.0),))  # a seed the count missed


def test_choked_by_every_peer_we_want_data_from() -> None:
    choking = (make_peer(peer_choking=True), make_peer(address="10.0.0.2:6881", peer_choking=True))
    assert cause("choked", peers=choking).text == "choked by all 2 peers"
    uninteresting = (*choking, make_peer(address="10.0.0.3:6881", am_interested=False, peer_choking=False))
    assert cause("choked", peers=uninteresting).text == "choked by all 2 peers that have pieces we want"
    assert "choked" not in codes(peers=(*choking, make_peer(address="10.0.0.3:6881")))


def test_snubbed_by_every_peer_that_unchokes_us() -> None:
    peers = (make_peer(snubbed=True, down_rate=0.0), make_peer(address="10.0.0.2:6881", peer_choking=True),
             make_peer(address="10.0.0.3:6881", snubbed=True, down_rate=0.0))
    assert "snubbed by all 2 peers" in cause("snubbed", peers=peers).text
    assert "snubbed" not in codes(peers=(*peers, make_peer(address="10.0.0.4:6881")))


def test_peer_limit_of_the_torrent_or_the_session() -> None:
    full = make_torrent(waiting_on=("peer limit",), peers=80, max_peers=80)
    assert cause("peer-limit", full).text == "at the peer limit: 80 of 80 peers"
    assert "global connection limit (12 connections)" in cause("peer-limit", full._replace(peers=12)).text


def test_disk_bound() -> None:
    assert cause("disk", make_torrent(waiting_on=("disk",))).text == "disk-bound: writes are behind"


def test_tracker_failing_names_the_error() -> None:
    failing = (make_tracker(status="error", last_error="connection refused"),)
    assert cause("tracker", trackers=failing).text == "tracker failing (connection refused)"
    two = (make_tracker(status="error"), make_tracker(url="udp://t.example:80", status="error", last_error="timeout"))
    assert cause("tracker", trackers=two).text == "all 2 trackers failing (timeout)"
    assert "tracker" not in codes(trackers=(*two, make_tracker(url="http://ok.example/announce")))


def test_no_trackers_and_no_peers_known() -> None:
    lonely = make_torrent(peers=0, seeds=0, peers_known=0, seeds_known=None)
    assert cause("tracker", lonely, peers=(), trackers=()).text == "no trackers and no peers known"


def test_rate_cap_from_the_engine_or_the_torrents_limit() -> None:
    limited = make_torrent(max_down=4 * MiB, down_rate=3.8 * MiB)
    assert cause("rate-cap", limited).text == "capped by the torrent's download limit: 4.0 MiB/s"
    assert "rate-cap" not in codes(limited._replace(down_rate=3.5 * MiB))  # below 90% of the limit
    waiting = limited._replace(down_rate=1 * MiB, waiting_on=("download limit",))
    assert cause("rate-cap", waiting).text == "capped by the torrent's download limit: 4.0 MiB/s"


def test_rate_cap_of_the_session_and_alt_speed() -> None:
    capped = make_session_snapshot(max_down=3 * MiB, down_rate=2.9 * MiB)
    assert cause("rate-cap", session=capped).text == "capped by the global download limit: 3.0 MiB/s"
    alt = capped._replace(alt_speed=True, max_down=512 * 1024, down_rate=500 * 1024)
    assert cause("rate-cap", session=alt).text == "capped by the global download limit (alt speed on): 512 KiB/s"
    both = make_torrent(max_down=4 * MiB, down_rate=2.9 * MiB, waiting_on=("download limit",))
    assert "3.0 MiB/s" in cause("rate-cap", both, session=capped).text  # the tighter limit holds it
    assert cause("rate-cap", make_torrent(waiting_on=("download limit",))).text == "capped by a download limit"


def test_causes_come_most_important_first() -> None:
    torrent = make_torrent(peers=0, seeds=0, peers_known=3, max_down=1 * MiB, down_rate=1 * MiB,
                           waiting_on=("disk", "download limit", "peer limit"))
    failing = (make_tracker(status="error", last_error="connection refused"),)
    causes = diagnose(torrent, (), failing, SESSION)
    assert [c.code for c in causes] == ["no-peers", "tracker", "rate-cap", "disk", "peer-limit"]
    assert summary(causes).startswith("Slow because: no connected peers (3 known); tracker failing "
                                      "(connection refused); capped by the torrent's download limit: 1.0 MiB/s; ")
    choked = (make_peer(peer_choking=True, progress=0.5),)
    assert codes(make_torrent(seeds=0, waiting_on=("disk",)), peers=choked) == ["no-seeds", "choked", "disk"]


# ---- states ---------------------------------------------------------------------------------


def test_states_other_than_downloading_get_one_explanation() -> None:
    def only(**over: object) -> Cause:
        # slow conditions everywhere: a state explains itself and nothing else is listed
        causes = diagnose(make_torrent(**{"peers": 0, "waiting_on": ("disk",), **over}), (), (), SESSION)
        assert len(causes) == 1
        return causes[0]

    assert only(state="paused") == Cause("paused", "Paused")
    assert only(state="queued") == Cause("queued", "Queued: waiting for a free download slot")
    assert only(state="queued", progress=1.0).text == "Queued: waiting for a free seeding slot"
    assert only(state="checking", checking_progress=0.454) == Cause("checking", "Checking 45%")
    assert only(state="checking").text == "Checking"
    assert only(state="checking", waiting_on=("checking queue",)).text.startswith("Queued for checking")
    assert only(state="seeding", progress=1.0) == Cause("seeding", "Complete, seeding")
    assert only(state="downloading", progress=1.0) == Cause("complete", "Complete")
    assert only(state="error", last_error="disk full") == Cause("error", "Error: disk full")
    assert only(state="error").text == "Error"


def test_metadata_uses_the_engines_reason() -> None:
    reason = "metadata: this version cannot fetch metadata from peers yet; add the .torrent file instead"
    c = diagnose(make_torrent(state="metadata", waiting_on=(reason,)), (), (), SESSION)[0]
    assert c == Cause("metadata", "Waiting for " + reason)
    assert diagnose(make_torrent(state="metadata"), (), (), SESSION)[0].text == "Waiting for metadata from peers"


def test_metadata_says_where_the_engine_looks() -> None:
    """A magnet's line shows the engine's first reason as it is: the DHT search, the trackers, the peers."""
    searching = "metadata: searching the DHT (12 nodes), asking the trackers; no peers yet"
    torrent = make_torrent(state="metadata", total_size=0, num_pieces=0, peers=0, waiting_on=(searching,))
    assert summary(diagnose(torrent, (), (), SESSION)) == "Waiting for " + searching
    fetching = "metadata: 3 of 10 pieces from 2 peers"
    assert diagnose(torrent._replace(waiting_on=("peer limit", fetching)), (), (), SESSION)[0].text == \
        "Waiting for " + fetching  # the metadata's reason, wherever the engine put it
    assert diagnose(torrent._replace(waiting_on=("searching the DHT (0 nodes)",)), (), (), SESSION)[0] == \
        Cause("metadata", "Waiting for metadata: searching the DHT (0 nodes)")


# ---- summary --------------------------------------------------------------------------------


def test_summary_lines() -> None:
    choked = (make_peer(peer_choking=True),) * 12
    failing = (make_tracker(status="error", last_error="connection refused"),)
    causes = diagnose(make_torrent(), choked, failing, SESSION)
    assert summary(causes) == "Slow because: tracker failing (connection refused); choked by all 12 peers"
    assert summary(diagnose(make_torrent(state="paused"), (), (), SESSION)) == "Paused"
    assert summary(diagnose(make_torrent(state="checking", checking_progress=0.45), (), (), SESSION)) == "Checking 45%"
    assert summary(diagnose(make_torrent(state="seeding", progress=1.0), (), (), SESSION)) == "Complete, seeding"
    assert summary([Cause("disk", "disk-bound: writes are behind")]) == "Slow because: disk-bound: writes are behind"
