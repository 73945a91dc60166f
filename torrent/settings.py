"""Limits in one place, with the reasons for their defaults.

Every buffer and queue in the engine takes its bound from here, so a user (or
a test) can tighten them and no module invents its own magic number.
"""

from __future__ import annotations

from dataclasses import dataclass

KiB = 1024
MiB = 1024 * KiB


@dataclass(frozen=True, slots=True)
class Limits:
    # Bencode: deep nesting only serves to exhaust the stack; real torrents
    # nest about 5 levels (info → files → list → dict → path list).
    bencode_max_depth: int = 64
    # libtorrent refuses .torrent files over 10 MB by default; hybrid torrents
    # with piece layers for huge payloads can exceed that, so allow more.
    bencode_max_size: int = 64 * MiB
    # The longest single string (the ``pieces`` blob) cannot exceed the file.
    bencode_max_string: int = 64 * MiB

    # Peer wire: a bitfield for 2**24 pieces is 2 MiB; a piece message holds
    # one block. Anything larger is a peer trying to make us buffer.
    wire_max_message: int = 2 * MiB + 16
    # BEP 3 blocks are 16 KiB; libtorrent and others serve up to 128 KiB on
    # request, and we refuse anything beyond that.
    wire_max_request: int = 128 * KiB
    # Extension-protocol messages (handshake, ut_metadata, ut_pex) stay small.
    wire_max_extended: int = 1 * MiB
    # Requests a peer may have queued with us (advertised as BEP 10 ``reqq``),
    # and the most we keep outstanding with one peer. libtorrent uses 500.
    peer_max_requests: int = 500

    # Metainfo: v1 (BEP 3) allows any positive piece length and old torrents
    # use odd ones; the upper bound keeps one piece buffer affordable.
    min_piece_length: int = 1
    max_piece_length: int = 512 * MiB
    max_files: int = 1_000_000

    # Trackers: 2 MiB of compact IPv4 peers is ~350 000 peers, far beyond any
    # real answer (trackers send 50-200). The cap holds before and after
    # gzip decoding. Status line plus headers take a few hundred bytes.
    # Redirects: BEP 3 says nothing; libtorrent follows 5, three covers
    # http→https and a load balancer hop.
    tracker_max_response: int = 2 * MiB
    tracker_max_header: int = 16 * KiB
    tracker_max_redirects: int = 3

    # A magnet link is pasted or clicked: 64 KiB holds hundreds of trackers,
    # and anything longer is not a link a person made.
    magnet_max_length: int = 64 * 1024


DEFAULT_LIMITS = Limits()
