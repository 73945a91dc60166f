"""MSE/PE handshake codec: both ends back to back under any fragmentation, each end against a peer
written here from the specification, one test per rejected case, the memory bound (libtorrent:
tests/interop/test_mse_interop.py)."""

from __future__ import annotations

import hashlib
import os
import random
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torrent.codec import mse, wire
from torrent.codec.mse import CRYPTO_PLAIN, CRYPTO_RC4, Crypto, Done, Initiator, Responder
from torrent.core.errors import MseError, ProtocolError
from torrent.core.rc4 import RC4

P = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DD"
    "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A63A36210000000000090563",
    16,
)
VC = bytes(8)
INFO_HASH = hashlib.sha1(b"the torrent").digest()
OTHER_HASH = hashlib.sha1(b"another torrent").digest()
PEER_ID = b"-XX0001-" + bytes(12)
TORRENTS = {mse.req2_key(h): h for h in (INFO_HASH, OTHER_HASH)}


def sha1(*parts: bytes) -> bytes:
    return hashlib.sha1(b"".join(parts)).digest()


def xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b))


def chunks(data: bytes, rnd: random.Random, most: int = 200) -> list[bytes]:
    out, i = [], 0
    while i < len(data):
        n = rnd.randint(1, most)
        out.append(data[i : i + n])
        i += n
    return out


def feed(side: mse._Side, data: bytes, rnd: random.Random | None = None) -> list[Done]:
    events: list[Done] = []
    for part in chunks(data, rnd) if rnd else [data]:
        events += side.receive(part)
    return events


# ---- a peer written from the specification, to check the codec against and to break the rules ------------


class SpecPeer:
    """One end of the handshake built step by step from the spec text, with every field overridable."""

    def __init__(self, seed: int = 1) -> None:
        self.rnd = random.Random(seed)
        self.x = self.rnd.getrandbits(160) | 1
        self.y = pow(2, self.x, P).to_bytes(96, "big")
        self.secret = b""

    def agree(self, peer_y: bytes) -> None:
        self.secret = pow(int.from_bytes(peer_y, "big"), self.x, P).to_bytes(96, "big")

    def keys(self, skey: bytes) -> tuple[RC4, RC4]:
        return (RC4(sha1(b"keyA", self.secret, skey), drop=1024), RC4(sha1(b"keyB", self.secret, skey), drop=1024))

    def step3(self, skey: bytes = INFO_HASH, *, vc: bytes = VC, provide: int = 2, pad_c: bytes = b"",
              ia: bytes = b"", ia_len: int | None = None, req1: bytes | None = None) -> tuple[bytes, RC4, RC4]:
        encrypt, decrypt = self.keys(skey)
        head = (req1 if req1 is not None else sha1(b"req1", self.secret)) + xor(sha1(b"req2", skey),
                                                                               sha1(b"req3", self.secret))
        body = vc + struct.pack(">IH", provide, len(pad_c)) + pad_c
        body += struct.pack(">H", len(ia) if ia_len is None else ia_len) + ia
        return head + encrypt.process(body), encrypt, decrypt

    def step4(self, skey: bytes = INFO_HASH, *, vc: bytes = VC, select: int = 2,
              pad_d: bytes = b"") -> tuple[bytes, RC4, RC4]:
        decrypt, encrypt = self.keys(skey)
        return encrypt.process(vc + struct.pack(">IH", select, len(pad_d)) + pad_d), encrypt, decrypt


def responder(**kw: Any) -> Responder:
    return Responder(TORRENTS.get, rng=random.Random(7).randbytes, **kw)


def initiator(**kw: Any) -> Initiator:
    return Initiator(INFO_HASH, rng=random.Random(8).randbytes, **kw)


def handshake(info_hash: bytes = INFO_HASH) -> bytes:
    return wire.PROTOCOL + bytes(8) + info_hash + PEER_ID


def responder_after_ya(peer: SpecPeer, pad_a: bytes = b"", **kw: Any) -> tuple[Responder, bytes]:
    r = responder(**kw)
    assert r.data_to_send() == b""  # nothing is sent before Ya
    assert r.receive(peer.y + pad_a) == []
    out = r.data_to_send()
    peer.agree(out[:96])
    return r, out


# ---- both ends back to back ----------------------------------------------------------------------------


def run_pair(a: Initiator, b: Responder, rnd: random.Random, a_says: bytes, b_says: bytes
             ) -> tuple[Done, Done, bytes, bytes]:
    """Deliver each side's bytes to the other in random-sized pieces, in random order; once a side is
    done it sends its payload through its own cipher. Returns both Done events and what each side
    read after its handshake, decrypted."""
    pending = {"a": bytearray(), "b": bytearray()}  # bytes on their way TO a / TO b
    done: dict[str, Done] = {}
    heard = {"a": bytearray(), "b": bytearray()}
    sides = {"a": a, "b": b}
    says = {"a": a_says, "b": b_says}
    other = {"a": "b", "b": "a"}

    def collect(name: str) -> None:
        side = sides[name]
        if name not in done:
            pending[other[name]] += side.data_to_send()

    collect("a")
    for _ in range(100_000):
        ready = [n for n in ("a", "b") if pending[n]]
        if not ready:
            break
        name = rnd.choice(ready)
        n = rnd.randint(1, 300)
        part = bytes(pending[name][:n])
        del pending[name][:n]
        if name in done:
            d = done[name]
            heard[name] += d.decrypt.process(part) if d.decrypt else part
            continue
        events = sides[name].receive(part)
        collect(name)
        if events:
            (d,) = events
            done[name] = d
            heard[name] += d.rest
            pending[other[name]] += sides[name].data_to_send()  # the handshake's end first
            said = says[name]
            pending[other[name]] += d.encrypt.process(said) if d.encrypt else said
    assert set(done) == {"a", "b"}
    return done["a"], done["b"], bytes(heard["a"]), bytes(heard["b"])


methods = st.sampled_from([CRYPTO_PLAIN, CRYPTO_RC4, CRYPTO_PLAIN | CRYPTO_RC4])


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32), provide=methods, allow=methods, prefer=st.sampled_from([CRYPTO_PLAIN, CRYPTO_RC4]),
       ia=st.binary(max_size=120), a_says=st.binary(max_size=400), b_says=st.binary(max_size=400))
def test_pair_completes_and_streams_decrypt_both_ways(seed: int, provide: int, allow: int, prefer: int, ia: bytes,
                                                      a_says: bytes, b_says: bytes) -> None:
    if not provide & allow:
        return
    rnd = random.Random(seed)
    a = Initiator(INFO_HASH, provide=provide, initial_payload=ia, rng=random.Random(seed + 1).randbytes)
    b = Responder(TORRENTS.get, allow=allow, prefer=prefer, rng=random.Random(seed + 2).randbytes)
    da, db, heard_a, heard_b = run_pair(a, b, rnd, a_says, b_says)
    common = provide & allow
    expected = Crypto(prefer) if common & prefer else Crypto(common)  # the preferred one when both are common
    assert da.method == db.method == expected
    assert (da.encrypt is None) == (db.decrypt is None) == (expected == Crypto.PLAIN)
    assert db.info_hash == da.info_hash == INFO_HASH
    assert db.initial_payload == ia and da.initial_payload == b""
    assert heard_a == b_says and heard_b == a_says


def test_plain_method_sends_plain_text_after_the_handshake() -> None:
    a, b = initiator(provide=CRYPTO_PLAIN, initial_payload=handshake()), responder()
    b.receive(a.data_to_send())
    a.receive(b.data_to_send())
    (db,) = b.receive(a.data_to_send())
    assert db.method == Crypto.PLAIN and db.initial_payload == handshake()
    (da,) = a.receive(b.data_to_send() + b"\x00\x00\x00\x01\x02")  # step 4, then "interested" in clear
    assert da.rest == b"\x00\x00\x00\x01\x02" and da.decrypt is None and da.encrypt is None


# ---- each end against the spec peer ---------------------------------------------------------------------


@pytest.mark.parametrize("pad_a", [0, 1, 511, 512])
def test_responder_against_spec_initiator(pad_a: int) -> None:
    peer = SpecPeer()
    r, out = responder_after_ya(peer, os.urandom(pad_a))
    assert 96 <= len(out) <= 96 + 512
    step3, encrypt, decrypt = peer.step3(OTHER_HASH, provide=3, pad_c=os.urandom(100), ia=handshake(OTHER_HASH))
    (done,) = r.receive(step3 + encrypt.process(b"\x00\x00\x00\x01\x02"))
    assert done.info_hash == OTHER_HASH and done.method == Crypto.RC4
    assert done.initial_payload == handshake(OTHER_HASH)
    assert done.rest == b"\x00\x00\x00\x01\x02"
    step4 = decrypt.process(r.data_to_send())
    assert step4[:8] == VC and struct.unpack(">I", step4[8:12])[0] == 2
    (pad_d,) = struct.unpack(">H", step4[12:14])
    assert len(step4) == 14 + pad_d <= 14 + 512
    assert decrypt.process(done.encrypt.process(b"bitfield")) == b"bitfield"


@pytest.mark.parametrize("pad_b", [0, 512])
def test_initiator_against_spec_responder(pad_b: int) -> None:
    a = initiator(initial_payload=handshake())
    out = a.data_to_send()
    assert 96 <= len(out) <= 96 + 512
    peer = SpecPeer()
    peer.agree(out[:96])
    assert a.receive(peer.y + os.urandom(pad_b)) == []
    step3 = a.data_to_send()
    decrypt, _ = peer.keys(INFO_HASH)
    assert step3[:20] == sha1(b"req1", peer.secret)
    assert xor(step3[20:40], sha1(b"req3", peer.secret)) == mse.req2_key(INFO_HASH)
    body = decrypt.process(step3[40:])
    provide, pad_c = struct.unpack(">IH", body[8:14])
    assert body[:8] == VC and provide == 3 and pad_c <= 512
    assert body[14 + pad_c :] == struct.pack(">H", 68) + handshake()
    step4, encrypt, _ = peer.step4(select=1, pad_d=b"p" * 512)
    (done,) = a.receive(step4 + b"clear")
    assert done.method == Crypto.PLAIN and done.rest == b"clear"


def test_looks_like_plain_handshake() -> None:
    hs = handshake()
    assert mse.looks_like_plain_handshake(b"") is None
    assert mse.looks_like_plain_handshake(hs[:5]) is None
    assert mse.looks_like_plain_handshake(hs[:19]) is None
    assert mse.looks_like_plain_handshake(hs[:20]) is True
    assert mse.looks_like_plain_handshake(hs) is True
    assert mse.looks_like_plain_handshake(b"\x13BitTorrent protocoX") is False
    assert mse.looks_like_plain_handshake(b"\x13Bit" + b"x") is False
    assert mse.looks_like_plain_handshake(SpecPeer().y) is (SpecPeer().y[:20] == hs[:20])


# ---- rejected input: one test per case ------------------------------------------------------------------


@pytest.mark.parametrize("y", [0, 1, P - 1, P, 2**768 - 1])
def test_public_key_out_of_range(y: int) -> None:
    with pytest.raises(MseError, match="public key is out of range"):
        responder().receive(y.to_bytes(96, "big"))
    a = initiator()
    with pytest.raises(MseError, match="public key is out of range"):
        a.receive(y.to_bytes(96, "big"))


def test_corrupt_ya_never_syncs() -> None:
    peer = SpecPeer()
    r = responder()
    bad = bytearray(peer.y)
    bad[50] ^= 1
    r.receive(bytes(bad))
    peer.agree(r.data_to_send()[:96])
    with pytest.raises(MseError, match="no HASH\\('req1', S\\) within 532 bytes"):
        r.receive(peer.step3()[0] + os.urandom(600))


def test_responder_peer_sends_random_bytes() -> None:
    r = responder()
    rnd = random.Random(3)
    with pytest.raises(MseError, match="no HASH\\('req1', S\\)"):
        feed(r, SpecPeer().y + rnd.randbytes(1000), rnd)


def test_pad_a_one_past_the_limit() -> None:
    peer = SpecPeer()
    r, _ = responder_after_ya(peer, os.urandom(513))
    with pytest.raises(MseError, match="no HASH"):
        r.receive(peer.step3()[0])


def test_wrong_vc() -> None:
    peer = SpecPeer()
    r, _ = responder_after_ya(peer)
    with pytest.raises(MseError, match="wrong verification constant"):
        r.receive(peer.step3(vc=b"\x00" * 7 + b"\x01")[0])


def test_unknown_skey() -> None:
    peer = SpecPeer()
    r, _ = responder_after_ya(peer)
    with pytest.raises(MseError, match="unknown SKEY"):
        r.receive(peer.step3(sha1(b"not ours"))[0])


@pytest.mark.parametrize("provide,allow", [(1, CRYPTO_RC4), (2, CRYPTO_PLAIN), (0, 3), (4, 3), (0x100, 3)])
def test_no_method_in_common(provide: int, allow: int) -> None:
    peer = SpecPeer()
    r, _ = responder_after_ya(peer, allow=allow)
    with pytest.raises(MseError, match="no method in common"):
        r.receive(peer.step3(provide=provide)[0])


def test_pad_c_too_long() -> None:
    peer = SpecPeer()
    r, _ = responder_after_ya(peer)
    with pytest.raises(MseError, match="PadC of 513 bytes"):
        r.receive(peer.step3(pad_c=bytes(513))[0])


def test_pad_c_at_the_limit() -> None:
    peer = SpecPeer()
    r, _ = responder_after_ya(peer)
    (done,) = r.receive(peer.step3(pad_c=bytes(512))[0])
    assert done.info_hash == INFO_HASH


def test_initial_payload_over_our_limit() -> None:
    peer = SpecPeer()
    r, _ = responder_after_ya(peer)
    with pytest.raises(MseError, match="IA\\) of 1025 bytes, over our limit of 1024"):
        r.receive(peer.step3(ia_len=1025)[0])
    peer = SpecPeer()
    r, _ = responder_after_ya(peer, max_initial_payload=65535)
    (done,) = r.receive(peer.step3(ia=bytes(65535))[0])
    assert done.initial_payload == bytes(65535)


def test_initiator_peer_sends_random_bytes() -> None:
    a = initiator()
    peer = SpecPeer()
    with pytest.raises(MseError, match="no encrypted VC within 520 bytes"):
        feed(a, peer.y + os.urandom(1000), random.Random(4))


def test_pad_b_one_past_the_limit() -> None:
    a = initiator()
    peer = SpecPeer()
    peer.agree(a.data_to_send()[:96])
    with pytest.raises(MseError, match="no encrypted VC"):
        a.receive(peer.y + os.urandom(513) + peer.step4()[0])


@pytest.mark.parametrize("provide,select", [(CRYPTO_RC4, 1), (CRYPTO_PLAIN, 2), (3, 3), (3, 0), (3, 4)])
def test_select_not_offered(provide: int, select: int) -> None:
    a = initiator(provide=provide)
    peer = SpecPeer()
    peer.agree(a.data_to_send()[:96])
    a.receive(peer.y)
    with pytest.raises(MseError, match="not one method of the"):
        a.receive(peer.step4(select=select)[0])


def test_pad_d_too_long() -> None:
    a = initiator()
    peer = SpecPeer()
    peer.agree(a.data_to_send()[:96])
    a.receive(peer.y)
    with pytest.raises(MseError, match="PadD of 513 bytes"):
        a.receive(peer.step4(pad_d=bytes(513))[0])


def test_dead_after_error_and_local_misuse() -> None:
    r = responder()
    with pytest.raises(MseError):
        r.receive(bytes(96))
    assert r.failed
    with pytest.raises(MseError, match="already failed: peer's Diffie-Hellman"):
        r.receive(b"more")
    a, b = initiator(provide=CRYPTO_PLAIN), responder()
    b.receive(a.data_to_send())
    a.receive(b.data_to_send())
    b.receive(a.data_to_send())
    a.receive(b.data_to_send())
    with pytest.raises(ValueError, match="go to the peer wire codec"):
        a.receive(b"x")
    with pytest.raises(ValueError, match="provide"):
        Initiator(INFO_HASH, provide=0)
    with pytest.raises(ValueError, match="allow"):
        Responder(TORRENTS.get, allow=4)
    with pytest.raises(ValueError, match="65535"):
        Initiator(INFO_HASH, initial_payload=bytes(65536))
    assert issubclass(MseError, ProtocolError)


# ---- bounded memory and work -------------------------------------------------------------------------------


def test_ten_megabytes_of_garbage_is_dropped_early() -> None:
    garbage = random.Random(5).randbytes(10 << 20)
    r = responder()
    with pytest.raises(MseError):
        r.receive(garbage)
    assert r.consumed == 96 + 512 + 20 and r.buffered <= 512 + 20
    r = responder()
    fed = 0
    with pytest.raises(MseError):
        for i in range(0, len(garbage), 97):
            fed += 97
            r.receive(garbage[i : i + 97])
    assert fed < 628 + 97 and r.buffered <= 532
    a = initiator()
    with pytest.raises(MseError):
        a.receive(garbage)
    assert a.consumed == 96 + 512 + 8


def test_buffer_never_exceeds_the_largest_step() -> None:
    """A valid handshake with every pad at its maximum, one byte at a time: the buffer stays under
    the longest unit (here the 532-byte sync window), never the whole handshake."""
    peer = SpecPeer()
    r, _ = responder_after_ya(peer, bytes(512))
    step3 = peer.step3(pad_c=bytes(512), ia=handshake())[0]
    high = 0
    for i in range(len(step3)):
        events = r.receive(step3[i : i + 1])
        high = max(high, r.buffered)
    assert events and high <= 512 + 20


def test_an_initial_payload_at_our_limit_is_held_whole_and_no_more() -> None:
    """The IA is the one step longer than the sync window: it is held until complete (up to
    ``max_initial_payload``), found by the fuzzer when a valid 631-byte IA sat in the buffer."""
    peer = SpecPeer()
    r, _ = responder_after_ya(peer, b"")
    ia = bytes(range(256)) * 4  # 1024 bytes: DEFAULT_MAX_INITIAL_PAYLOAD
    step3 = peer.step3(ia=ia)[0]
    high = 0
    events: list[Done] = []
    for i in range(len(step3)):
        events = r.receive(step3[i : i + 1])
        high = max(high, r.buffered)
    (done,) = events
    assert done.initial_payload == ia
    assert mse.MAX_PAD + 20 < high <= mse.DEFAULT_MAX_INITIAL_PAYLOAD

