"""Sans-IO Message Stream Encryption (MSE/PE): the encrypted handshake that precedes the peer wire.

The Vuze/libtorrent specification, with A the side that dials and B the side that accepts:

    1 A->B: Ya, PadA
    2 B->A: Yb, PadB
    3 A->B: HASH('req1', S), HASH('req2', SKEY) xor HASH('req3', S),
            ENCRYPT(VC, crypto_provide, len(PadC), PadC, len(IA)), ENCRYPT(IA)
    4 B->A: ENCRYPT(VC, crypto_select, len(padD), padD), ENCRYPT2(payload stream)
    5 A->B: ENCRYPT2(payload stream)

Y is a 768-bit Diffie-Hellman public key, S the shared secret, SKEY the torrent's info-hash, VC eight
zero bytes; ENCRYPT is RC4 keyed with SHA1('keyA' + S + SKEY) from A and SHA1('keyB' + S + SKEY) from B,
its first 1024 bytes discarded; ENCRYPT2 is that same RC4 stream or plain text, as crypto_select says.

``Initiator`` and ``Responder`` take received bytes and return a ``Done`` event once the handshake is
over; ``data_to_send`` gives the bytes to write. No sockets or clocks: the peer layer moves the bytes
and owns the timeout. Every buffer is capped by the spec's limits, so a peer that sends garbage is
dropped after at most ``96 + 512 + 20`` bytes (the responder's search for HASH('req1', S)).

Remote errors (the peer broke the handshake) raise ``MseError`` and leave the side dead; local errors
(we passed a bad argument or fed bytes after ``Done``) raise ``ValueError``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntFlag

from torrent.codec.wire import PROTOCOL
from torrent.core.errors import MseError
from torrent.core.rc4 import RC4

__all__ = [
    "Crypto",
    "CRYPTO_PLAIN",
    "CRYPTO_RC4",
    "MAX_PAD",
    "DEFAULT_MAX_INITIAL_PAYLOAD",
    "Done",
    "Initiator",
    "Responder",
    "req2_key",
    "looks_like_plain_handshake",
]

# ---- constants of the specification ---------------------------------------------------------------------

# The 768-bit prime of the Oakley group 1 (RFC 2409), generator 2; keys travel as 96 bytes big-endian.
P = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DD"
    "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A63A36210000000000090563",
    16,
)
G = 2
KEY_LENGTH = 96
PRIVATE_KEY_BYTES = 20  # 160 random bits, as the spec and libtorrent use
VC = bytes(8)
RC4_DROP = 1024
MAX_PAD = 512  # PadA, PadB, PadC and PadD are each 0..512 bytes
SPEC_MAX_INITIAL_PAYLOAD = 0xFFFF  # len(IA) is a 16-bit field
# The IA we accept by default. A BitTorrent handshake is 68 bytes (libtorrent refuses any IA over 68);
# 1 KiB leaves room for a client that packs its extension handshake in too, and keeps a half-open
# handshake's memory small. ``Responder(max_initial_payload=...)`` takes up to the spec's 65 535.
DEFAULT_MAX_INITIAL_PAYLOAD = 1024

_SYNC_REQ1 = MAX_PAD + 20  # HASH('req1', S) must end within PadA's limit + its own length
_SYNC_VC = MAX_PAD + len(VC)  # ENCRYPT(VC) must end within PadB's limit + its own length


class Crypto(IntFlag):
    """crypto_provide / crypto_select bits."""

    PLAIN = 0x01
    RC4 = 0x02


CRYPTO_PLAIN = Crypto.PLAIN
CRYPTO_RC4 = Crypto.RC4
_KNOWN = int(Crypto.PLAIN | Crypto.RC4)  # a plain int: ~ on an IntFlag drops unknown bits


@dataclass(frozen=True, slots=True)
class Done:
    """The handshake is over: what the peer wire needs to go on.

    ``encrypt`` and ``decrypt`` are the RC4 streams for everything written and read from now on, or
    None for plain text. ``initial_payload`` is the IA the initiator sent (decrypted; the responder's
    only, usually the peer's BitTorrent handshake). ``rest`` is what followed the handshake in the
    same read, already decrypted: the start of the peer wire stream. The responder's last handshake
    bytes are still in ``data_to_send`` and must be written before anything ``encrypt`` makes.
    """

    method: Crypto
    info_hash: bytes
    encrypt: RC4 | None
    decrypt: RC4 | None
    initial_payload: bytes
    rest: bytes


Rng = Callable[[int], bytes]


def _sha1(*parts: bytes) -> bytes:
    return hashlib.sha1(b"".join(parts)).digest()


def req2_key(info_hash: bytes) -> bytes:
    """HASH('req2', SKEY): the key under which a session files a torrent for ``Responder``'s lookup."""
    return _sha1(b"req2", info_hash)


def looks_like_plain_handshake(first_bytes: bytes) -> bool | None:
    """Whether an incoming connection opened with a plain BitTorrent handshake (True) or something
    else, an MSE public key (False); None while the bytes so far fit both."""
    n = min(len(first_bytes), len(PROTOCOL))
    if bytes(first_bytes[:n]) != PROTOCOL[:n]:
        return False
    return True if n == len(PROTOCOL) else None


def _keypair(rng: Rng) -> tuple[int, bytes]:
    private = int.from_bytes(rng(PRIVATE_KEY_BYTES), "big") or 1
    return private, pow(G, private, P).to_bytes(KEY_LENGTH, "big")


def _secret(private: int, peer_public: bytes) -> bytes:
    y = int.from_bytes(peer_public, "big")
    # 0, 1 and P-1 (and anything >= P) would give a secret an eavesdropper knows.
    if not 1 < y < P - 1:
        raise MseError("peer's Diffie-Hellman public key is out of range")
    return pow(y, private, P).to_bytes(KEY_LENGTH, "big")


def _pad(rng: Rng) -> bytes:
    return rng(int.from_bytes(rng(2), "big") % (MAX_PAD + 1))


def _ciphers(secret: bytes, skey: bytes) -> tuple[RC4, RC4]:
    """(A's stream, B's stream): A encrypts with the first, B with the second."""
    return (RC4(_sha1(b"keyA", secret, skey), drop=RC4_DROP), RC4(_sha1(b"keyB", secret, skey), drop=RC4_DROP))


def _check_methods(value: int, what: str) -> Crypto:
    if isinstance(value, bool) or not isinstance(value, int) or not value or value & ~_KNOWN:
        raise ValueError(f"{what} must be a non-empty combination of CRYPTO_PLAIN and CRYPTO_RC4, got {value!r}")
    return Crypto(value)


def _name(methods: int) -> str:
    names = [name for bit, name in ((Crypto.RC4, "rc4"), (Crypto.PLAIN, "plain")) if methods & bit]
    unknown = methods & ~_KNOWN
    return "+".join(names + ([f"0x{unknown:x}"] if unknown else [])) or "none"


class _Side:
    """What both ends share: a capped receive buffer filled one unit at a time, the send buffer, and
    the rule that the first error kills the handshake.

    A *unit* is the fixed number of bytes the current step needs (``_want``); a *sync* step instead
    searches for ``_pattern`` in at most ``_want`` bytes. Bytes after a unit stay in the caller's
    data, so nothing past the handshake is ever copied into the buffer.
    """

    __slots__ = ("_rng", "_out", "_buf", "_want", "_step", "_pattern", "_searched", "_lost", "_error", "_done",
                 "_consumed", "_private", "_public", "_secret")

    def __init__(self, rng: Rng, first_step: Callable[[bytes], Done | None]) -> None:
        self._rng = rng
        self._out = bytearray()
        self._buf = bytearray()
        self._want = KEY_LENGTH
        self._step = first_step
        self._pattern = b""  # non-empty while searching for a sync pattern
        self._searched = 0
        self._lost = ""  # the error if the pattern is not found
        self._error: str | None = None
        self._done = False
        self._consumed = 0
        self._private, self._public = _keypair(rng)
        self._secret = b""

    @property
    def failed(self) -> bool:
        """True once an ``MseError`` was raised; every later ``receive`` raises too."""
        return self._error is not None

    @property
    def consumed(self) -> int:
        """Bytes of the peer's taken by the handshake so far (on error: read before giving up)."""
        return self._consumed

    @property
    def buffered(self) -> int:
        """Bytes received and held, not yet a complete step (at most the step's limit)."""
        return len(self._buf)

    def data_to_send(self) -> bytes:
        """The bytes to write to the peer now (empty if none); each byte is returned once."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def receive(self, data: bytes | bytearray | memoryview) -> list[Done]:
        """Consume received bytes; return ``[Done]`` once the handshake is complete, else ``[]``."""
        if self._error is not None:
            raise MseError(f"encrypted handshake already failed: {self._error}")
        if self._done:
            raise ValueError("the encrypted handshake is over: bytes after it go to the peer wire codec")
        view = memoryview(data)
        with view.cast("B") if view.format != "B" else view as mv:
            try:
                return self._receive(mv)
            except MseError as exc:
                self._error = str(exc)
                raise

    def _receive(self, mv: memoryview) -> list[Done]:
        off, total = 0, len(mv)
        buf = self._buf
        while True:
            take = min(self._want - len(buf), total - off)
            buf += mv[off : off + take]
            off += take
            if self._pattern:
                found = buf.find(self._pattern, max(0, self._searched - len(self._pattern) + 1))
                if found < 0:
                    self._searched = len(buf)
                    self._consumed += take
                    if len(buf) < self._want:
                        return []
                    raise MseError(self._lost)
                # The pattern was not in the earlier reads, so what follows it came in this one.
                end = found + len(self._pattern)
                off -= len(buf) - end
                take -= len(buf) - end
                self._pattern, self._searched = b"", 0
                buf.clear()
                unit = b""
            elif len(buf) < self._want:
                self._consumed += take
                return []
            else:
                unit = bytes(buf)
                buf.clear()
            self._consumed += take
            done = self._step(unit)
            if done is not None:
                self._done = True
                rest = bytes(mv[off:])
                self._consumed += len(rest)
                if done.decrypt is not None and rest:
                    rest = done.decrypt.process(rest)
                return [Done(done.method, done.info_hash, done.encrypt, done.decrypt, done.initial_payload, rest)]

    def _expect(self, step: Callable[[bytes], Done | None], want: int, pattern: bytes = b"", lost: str = "") -> None:
        """Go on with ``step`` once ``want`` bytes are in, or once ``pattern`` is found within ``want``
        bytes (else ``lost`` is the error)."""
        self._step, self._want, self._pattern, self._lost = step, want, pattern, lost


class Initiator(_Side):
    """The side that dials: sends Ya and PadA at once, the rest when the peer's key arrives.

    ``provide`` is the set of methods offered (``crypto_provide``); ``initial_payload`` is the IA sent
    inside the encrypted step 3, usually our BitTorrent handshake (68 bytes: libtorrent refuses more).
    ``rng(n)`` returns n random bytes (keys, padding lengths, padding).
    """

    __slots__ = ("_info_hash", "_provide", "_initial_payload", "_encrypt", "_decrypt", "_method")

    def __init__(
        self,
        info_hash: bytes,
        *,
        provide: int = CRYPTO_RC4 | CRYPTO_PLAIN,
        initial_payload: bytes = b"",
        rng: Rng = os.urandom,
    ) -> None:
        if len(info_hash) != 20:
            raise ValueError(f"info_hash must be 20 bytes, got {len(info_hash)}")
        if len(initial_payload) > SPEC_MAX_INITIAL_PAYLOAD:
            raise ValueError(f"initial payload of {len(initial_payload)} bytes: at most 65535 fit len(IA)")
        self._info_hash = bytes(info_hash)
        self._provide = _check_methods(provide, "provide")
        self._initial_payload = bytes(initial_payload)
        super().__init__(rng, self._on_peer_key)
        self._out += self._public + _pad(rng)

    def _on_peer_key(self, yb: bytes) -> None:
        secret = _secret(self._private, yb)
        self._encrypt, self._decrypt = _ciphers(secret, self._info_hash)
        pad_c = _pad(self._rng)
        ia = self._initial_payload
        self._out += _sha1(b"req1", secret)
        self._out += bytes(a ^ b for a, b in zip(req2_key(self._info_hash), _sha1(b"req3", secret)))
        self._out += self._encrypt.process(
            VC + self._provide.to_bytes(4, "big") + len(pad_c).to_bytes(2, "big") + pad_c
            + len(ia).to_bytes(2, "big") + ia
        )
        # B's ENCRYPT(VC) is the first 8 bytes of its key stream: the pattern to find after PadB.
        self._expect(self._on_select, _SYNC_VC, self._decrypt.process(VC),
                     f"no encrypted VC within {_SYNC_VC} bytes after the peer's public key "
                     "(padding over 512 bytes, a wrong key, or not an MSE peer)")

    def _on_select(self, _: bytes) -> None:
        self._expect(self._on_select_fields, 6)

    def _on_select_fields(self, unit: bytes) -> Done | None:
        fields = self._decrypt.process(unit)
        select = int.from_bytes(fields[:4], "big")
        pad_d = int.from_bytes(fields[4:], "big")
        if select not in (Crypto.PLAIN, Crypto.RC4) or not select & self._provide:
            raise MseError(f"peer selected {_name(select)}, not one method of the {_name(self._provide)} offered")
        if pad_d > MAX_PAD:
            raise MseError(f"PadD of {pad_d} bytes, over the limit of {MAX_PAD}")
        self._method = Crypto(select)
        if pad_d:
            self._expect(self._on_pad_d, pad_d)
            return None
        return self._finish()

    def _on_pad_d(self, unit: bytes) -> Done:
        self._decrypt.process(unit)
        return self._finish()

    def _finish(self) -> Done:
        rc4 = self._method is Crypto.RC4
        return Done(self._method, self._info_hash, self._encrypt if rc4 else None,
                    self._decrypt if rc4 else None, b"", b"")


class Responder(_Side):
    """The side that accepts: answers Ya with Yb and PadB (nothing is sent before Ya has arrived),
    finds the torrent, picks a method.

    ``lookup_skey(HASH('req2', SKEY))`` returns that torrent's info-hash or None: the session keeps a
    dict ``{req2_key(info_hash): info_hash}`` of its torrents, so finding one is a single probe.
    ``allow`` is the set of methods we accept; ``prefer`` is the one chosen when the peer offers both
    (libtorrent's default picks plain text: the handshake is obfuscated, the stream costs nothing).
    """

    __slots__ = ("_lookup", "_allow", "_prefer", "_max_ia", "_req3", "_encrypt", "_decrypt", "_method", "_info_hash")

    def __init__(
        self,
        lookup_skey: Callable[[bytes], bytes | None],
        *,
        allow: int = CRYPTO_RC4 | CRYPTO_PLAIN,
        prefer: int = CRYPTO_RC4,
        max_initial_payload: int = DEFAULT_MAX_INITIAL_PAYLOAD,
        rng: Rng = os.urandom,
    ) -> None:
        if prefer not in (CRYPTO_RC4, CRYPTO_PLAIN):
            raise ValueError(f"prefer must be one method, got {prefer!r}")
        if not 0 <= max_initial_payload <= SPEC_MAX_INITIAL_PAYLOAD:
            raise ValueError(f"max_initial_payload must be 0..65535, got {max_initial_payload}")
        self._lookup = lookup_skey
        self._allow = _check_methods(allow, "allow")
        self._prefer = Crypto(prefer)
        self._max_ia = max_initial_payload
        super().__init__(rng, self._on_peer_key)

    def _on_peer_key(self, ya: bytes) -> None:
        self._secret = _secret(self._private, ya)
        self._out += self._public + _pad(self._rng)
        self._expect(self._on_req1, _SYNC_REQ1, _sha1(b"req1", self._secret),
                     f"no HASH('req1', S) within {_SYNC_REQ1} bytes after the peer's public key "
                     "(padding over 512 bytes, a wrong key, or not an MSE peer)")

    def _on_req1(self, _: bytes) -> None:
        self._expect(self._on_skey, 20)

    def _on_skey(self, unit: bytes) -> None:
        req2 = bytes(a ^ b for a, b in zip(unit, _sha1(b"req3", self._secret)))
        info_hash = self._lookup(req2)
        if info_hash is None:
            raise MseError("the peer asked for a torrent we do not have (unknown SKEY)")
        self._info_hash = bytes(info_hash)
        self._decrypt, self._encrypt = _ciphers(self._secret, self._info_hash)
        self._expect(self._on_provide, len(VC) + 4 + 2)

    def _on_provide(self, unit: bytes) -> None:
        fields = self._decrypt.process(unit)
        if fields[:8] != VC:
            raise MseError("wrong verification constant (VC) after the torrent's hash")
        provide = int.from_bytes(fields[8:12], "big")
        pad_c = int.from_bytes(fields[12:], "big")
        common = provide & self._allow
        if not common:
            raise MseError(f"no method in common: the peer provides {_name(provide)}, we allow {_name(self._allow)}")
        if pad_c > MAX_PAD:
            raise MseError(f"PadC of {pad_c} bytes, over the limit of {MAX_PAD}")
        self._method = self._prefer if common & self._prefer else Crypto(common)
        pad_d = _pad(self._rng)
        self._out += self._encrypt.process(
            VC + self._method.to_bytes(4, "big") + len(pad_d).to_bytes(2, "big") + pad_d
        )
        self._expect(self._on_ia_length, pad_c + 2)

    def _on_ia_length(self, unit: bytes) -> Done | None:
        length = int.from_bytes(self._decrypt.process(unit)[-2:], "big")
        if length > self._max_ia:
            raise MseError(f"initial payload (IA) of {length} bytes, over our limit of {self._max_ia}")
        if length:
            self._expect(self._on_ia, length)
            return None
        return self._on_ia(b"")

    def _on_ia(self, unit: bytes) -> Done:
        ia = self._decrypt.process(unit) if unit else b""
        rc4 = self._method is Crypto.RC4
        return Done(self._method, self._info_hash, self._encrypt if rc4 else None,
                    self._decrypt if rc4 else None, ia, b"")
