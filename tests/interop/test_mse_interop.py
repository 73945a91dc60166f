"""The MSE/PE codec (torrent.codec.mse) against libtorrent on 127.0.0.1, both insisting on RC4: our
Initiator dials a libtorrent seed, and libtorrent dials our Responder."""

from __future__ import annotations

import hashlib
import random
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from torrent.codec import mse, wire
from torrent.codec.mse import CRYPTO_RC4, Crypto, Initiator, Responder

PEER_ID = b"-XX0001-" + bytes(12)
OTHER_HASH = hashlib.sha1(b"another torrent").digest()
TORRENTS = {mse.req2_key(OTHER_HASH): OTHER_HASH}  # the session's other torrents


def handshake(info_hash: bytes) -> bytes:
    return wire.PROTOCOL + bytes(8) + info_hash + PEER_ID


LT_SETTINGS = {
    "listen_interfaces": "127.0.0.1:0",
    "enable_dht": False, "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
    "enable_incoming_utp": False, "enable_outgoing_utp": False,
    "allow_multiple_connections_per_ip": True,
    "out_enc_policy": 0, "in_enc_policy": 0,  # 0: pe_forced
    "allowed_enc_level": 2,  # 2: pe_rc4
    "prefer_rc4": True,
    "alert_mask": 0,
}


def lt_seed(tmp_path: Path) -> tuple[Any, Any, bytes, int]:
    try:
        import libtorrent as lt
    except ImportError as exc:
        pytest.fail(f"cannot import libtorrent ({exc}): pip install -e '.[test]' installs the wheel", pytrace=False)
    data = tmp_path / "payload.bin"
    data.write_bytes(random.Random(9).randbytes(3 * 16384 + 100))
    if hasattr(lt, "list_files"):  # 2.1: add_files/file_storage construction is deprecated
        ct = lt.create_torrent(lt.list_files(str(data)), 16384, lt.create_torrent.v1_only)
    else:  # 2.0.x
        fs = lt.file_storage()
        lt.add_files(fs, str(data))
        ct = lt.create_torrent(fs, 16384, lt.create_torrent.v1_only)
    lt.set_piece_hashes(ct, str(tmp_path))
    info = lt.torrent_info(lt.bencode(ct.generate()))
    session = lt.session(LT_SETTINGS)
    params = lt.add_torrent_params()
    params.ti = info
    params.save_path = str(tmp_path)
    handle = session.add_torrent(params)
    deadline = time.monotonic() + 15
    while not handle.status().is_seeding:
        assert time.monotonic() < deadline, "libtorrent did not finish checking the payload"
        time.sleep(0.02)
    return session, handle, bytes(info.info_hashes().v1.to_bytes()), info.num_pieces()


def recv_some(sock: socket.socket) -> bytes:
    data = sock.recv(65536)
    assert data, "libtorrent closed the connection"
    return data


def test_initiator_against_libtorrent(tmp_path: Path) -> None:
    """Our Initiator dials a libtorrent seed that insists on RC4; inside the stream the BitTorrent
    handshake goes out as IA, and libtorrent's handshake and bitfield come back decrypted."""
    session, handle, info_hash, num_pieces = lt_seed(tmp_path)
    port = session.listen_port()
    a = Initiator(info_hash, provide=CRYPTO_RC4, initial_payload=handshake(info_hash))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(a.data_to_send())
        done = None
        while done is None:
            events = a.receive(recv_some(sock))
            sock.sendall(a.data_to_send())
            done = events[0] if events else None
        assert done.method == Crypto.RC4
        parser = wire.WireParser(num_pieces=num_pieces)
        got = parser.feed(done.rest)
        while not any(isinstance(e, wire.Bitfield | wire.HaveAll) for e in got):
            got += parser.feed(done.decrypt.process(recv_some(sock)))
    hs = got[0]
    assert isinstance(hs, wire.Handshake) and hs.info_hash == info_hash
    field = next(e for e in got if isinstance(e, wire.Bitfield | wire.HaveAll))
    if isinstance(field, wire.Bitfield):
        assert field.data == b"\xf0"  # all four pieces
    del session


def test_responder_against_libtorrent(tmp_path: Path) -> None:
    """libtorrent dials our Responder (forced RC4): we find its torrent by the hashed SKEY and read its
    BitTorrent handshake from the IA, decrypted."""
    session, handle, info_hash, _ = lt_seed(tmp_path)
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(10)
        handle.connect_peer(server.getsockname())
        conn, _ = server.accept()
        with conn:
            conn.settimeout(10)
            b = Responder({mse.req2_key(info_hash): info_hash, **TORRENTS}.get, allow=CRYPTO_RC4)
            first = recv_some(conn)
            assert mse.looks_like_plain_handshake(first) is False
            events = b.receive(first)
            while not events:
                conn.sendall(b.data_to_send())
                events = b.receive(recv_some(conn))
            conn.sendall(b.data_to_send())
            (done,) = events
            assert done.info_hash == info_hash and done.method == Crypto.RC4
            ours = handshake(info_hash)
            conn.sendall(done.encrypt.process(ours))
            parser = wire.WireParser()
            got = parser.feed(done.initial_payload + done.rest)
            assert got and isinstance(got[0], wire.Handshake) and got[0].info_hash == info_hash
            # Our handshake went out through done.encrypt: libtorrent answers, through done.decrypt.
            while len(got) < 2:
                got += parser.feed(done.decrypt.process(recv_some(conn)))
            assert isinstance(got[1], wire.Extended | wire.Bitfield | wire.HaveAll | wire.HaveNone)
    del session
