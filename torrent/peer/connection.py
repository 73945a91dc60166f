"""One peer connection: an asyncio ``BufferedProtocol`` around ``WireParser``.

The protocol owns the connection-level state (handshake, choke and interest
flags, the peer's bitfield, BEP 6 allowed-fast sets, keep-alives) and hands
torrent-level events to its owner, the swarm, through ``PeerOwner``. Bytes
are received into one buffer shared by every connection on the loop
(``get_buffer``) and parsed in place; a protocol violation closes the
connection with the reason recorded.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from torrent import __version__
from torrent.codec import mse, wire
from torrent.codec.clientid import client_name
from torrent.core.bitfield import Bitfield
from torrent.core.errors import ProtocolError
from torrent.core.rates import RateMeter
from torrent.core.rc4 import RC4
from torrent.core.settings import DEFAULT_SETTINGS, Settings
from torrent.peer.encryption import EncryptionPolicy
from torrent.peer.extensions import NO_EXTENSIONS, PeerExtensions

log = logging.getLogger(__name__)

CLIENT_NAME = "torrent"
MAX_EARLY_HAVES = 1 << 16  # haves remembered from a peer before we know the piece count


class PeerOwner(Protocol):
    """What a connection needs from the torrent it belongs to."""

    info_hash: bytes
    peer_id: bytes
    num_pieces: int | None  # None while a magnet's metadata is being fetched
    have: Bitfield | None
    extensions: PeerExtensions

    def attach(self, peer: PeerConnection) -> str | None:
        """Accept the handshaken peer; a reason string refuses it."""

    def detach(self, peer: PeerConnection) -> None: ...
    def on_bitfield(self, peer: PeerConnection) -> None: ...
    def on_have(self, peer: PeerConnection, index: int) -> None: ...
    def on_choke_change(self, peer: PeerConnection) -> None: ...
    def on_interest_change(self, peer: PeerConnection) -> None: ...
    def on_blocks(self, peer: PeerConnection, blocks: list[wire.Piece]) -> None:
        """Piece messages in arrival order; their data is valid only during the call."""
    def on_reject(self, peer: PeerConnection, index: int, begin: int, length: int) -> None: ...
    def on_request(self, peer: PeerConnection, index: int, begin: int, length: int) -> None: ...
    def on_cancel(self, peer: PeerConnection, index: int, begin: int, length: int) -> None: ...
    def on_allowed_fast(self, peer: PeerConnection, index: int) -> None: ...


Resolver = Callable[[bytes], "PeerOwner | None"]
SkeyLookup = Callable[[bytes], "bytes | None"]  # HASH('req2', info-hash) -> info-hash, for MSE (mse.Responder)


_LOOP_BUFFERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, memoryview] = weakref.WeakKeyDictionary()


def _loop_buffer(size: int) -> memoryview:
    """The receive buffer of the running loop, at least ``size`` bytes. One serves every connection:
    a transport calls ``get_buffer`` and then ``buffer_updated`` for one read, with no other read between,
    and parsing consumes the read or copies what it keeps (``WireParser`` keeps a message cut off at the
    end; blocks are copied into their piece before ``buffer_updated`` returns)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # driven by hand, outside a loop
        return memoryview(bytearray(size))
    view = _LOOP_BUFFERS.get(loop)
    if view is None or len(view) < size:
        view = _LOOP_BUFFERS[loop] = memoryview(bytearray(size))
    return view


class PeerConnection(asyncio.BufferedProtocol):
    """A BitTorrent peer over a stream transport (TCP or uTP), either side of the connection.

    Protocol encryption (MSE/PE) comes first when it is used: an outgoing connection dialled with
    ``encrypted=True`` runs the initiator's handshake with our BitTorrent handshake as its initial
    payload; an incoming one looks at the first bytes and runs the responder's if they are not a
    plain handshake (``skey_lookup`` finds the torrent). After it, RC4 (if chosen) decrypts each read
    in place in the receive buffer and encrypts writes into one send buffer.
    """

    def __init__(self, owner: PeerOwner | None, *, resolver: Resolver | None = None,
                 address: tuple[str, int] | None = None, settings: Settings = DEFAULT_SETTINGS,
                 listen_port: int | None = None, encrypted: bool = False,
                 skey_lookup: SkeyLookup | None = None) -> None:
        # Outgoing connections know their torrent; incoming ones learn it
        # from the handshake through ``resolver``.
        self.owner = owner
        self._resolver = resolver
        self.outgoing = owner is not None
        self.address = address
        self.listen_port = listen_port
        self.source = "tracker" if self.outgoing else "incoming"  # where we learned of it (the dialler sets it)
        self.identity: object = None  # whom a ban applies to, set by the owner on attach
        self.on_close: Callable[[PeerConnection], None] | None = None  # the dialler's, called once on close
        self._settings = settings
        # Incoming: the piece count is known only once the handshake names the torrent, so what follows
        # it in the same read waits until then (a have for piece 10**9 must fail the check, not pass it).
        self._parser = wire.WireParser(settings.limits, num_pieces=owner.num_pieces if owner else None,
                                       hold_after_handshake=owner is None)
        self._rview: memoryview | None = None  # the loop's receive buffer, from the first read on
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.close_reason: str | None = None
        self.drained: asyncio.Event = asyncio.Event()
        self.drained.set()
        self._outbox: list[bytes] = []  # send_soon's messages, flushed at the end of the loop iteration
        self._later: list[bytes] = []  # send_later's messages, riding on the next write
        # Protocol encryption: the policy, the handshake under way, the stream ciphers after it.
        self._policy = EncryptionPolicy(settings.network.encryption)
        self._skey_lookup = skey_lookup
        self.dialled_encrypted = encrypted and self.outgoing
        self._before_wire = self.dialled_encrypted or not self.outgoing  # MSE or the incoming sniff first
        self._sniffed = b""  # an incoming connection's first bytes, until they tell plain from MSE
        self._mse: mse.Initiator | mse.Responder | None = None
        self._mse_info_hash: bytes | None = None  # the torrent the MSE handshake named (SKEY)
        self._encrypt: RC4 | None = None
        self._decrypt: RC4 | None = None
        self.encryption = ""  # "" plain, "handshake" (MSE, then plain text), "rc4" (the whole stream)
        self._reading_paused = False  # by _check_backlog, until what we queued drains
        self._reading_held = False  # by the owner, until its disk catches up

        self.remote_id: bytes | None = None
        self.supports_fast = False
        self.supports_extensions = False
        self.extension: wire.ExtensionHandshake | None = None
        self.bitfield: Bitfield | None = None
        self.am_choking = True
        self.am_interested = False
        self.peer_choking = True
        self.peer_interested = False
        self.allowed_fast: set[int] = set()  # pieces they let us fetch while choked
        self.reqq = 250  # their request queue length, until their BEP 10 handshake says
        self.supports_dht = False  # both sides set the BEP 5 bit
        self.dht_port: int | None = None  # their DHT node's UDP port, from a port message
        # Before the piece count is known (a magnet's metadata phase), what the peer said it has, kept
        # raw until ``rebind`` gives the connection to the download.
        self._early_bitfield: bytes | None = None
        self._early_all: bool | None = None  # have_all (True) or have_none (False)
        self._early_haves: set[int] = set()
        self._client: str | None = None

        now = time.monotonic()
        self.connected_at = now
        self.last_received = now
        self.last_sent = now
        self.last_block = now
        self.downloaded = RateMeter()
        self.uploaded = RateMeter()
        # Rates as of the owner's last one-second tick, for displays (computing
        # a rate costs a microsecond or two; a UI asks for hundreds of them).
        self.down_rate = 0.0
        self.up_rate = 0.0
        self._label: str | None = None

    # ---- asyncio callbacks -------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not an asyncio.Transport subclass
        # Blocks queued in one loop iteration leave in one writev, not one per block.
        transport.set_write_buffer_limits(high=self._settings.peer.write_high_water)  # type: ignore[attr-defined]
        if self.address is None:
            peer = transport.get_extra_info("peername")
            self.address = (peer[0], peer[1]) if peer else ("?", 0)
        if self.dialled_encrypted:
            assert self.owner is not None
            ours = wire.Handshake(self.owner.info_hash, self.owner.peer_id, self._reserved()).to_bytes()
            self._mse = mse.Initiator(self.owner.info_hash, provide=self._policy.methods, initial_payload=ours)
            self._write_raw(self._mse.data_to_send())
        elif self.outgoing:
            self._send_handshake()
        asyncio.get_running_loop().call_later(self._settings.network.handshake_timeout, self._check_handshake)

    def _check_handshake(self) -> None:
        if self.remote_id is None and not self.closed:
            self.close(f"no handshake within {self._settings.network.handshake_timeout:g} s")

    def get_buffer(self, sizehint: int) -> memoryview:
        view = self._rview
        if view is None:
            view = self._rview = _loop_buffer(self._settings.peer.recv_buffer)
        return view

    def buffer_updated(self, nbytes: int) -> None:
        now = self.last_received = time.monotonic()
        try:
            view = self._rview
            assert view is not None
            if self._decrypt is not None:
                self._decrypt.process_into(view, 0, nbytes)
            elif self._before_wire:
                self._encryption_bytes(view[:nbytes], now)
                return
            self._parse(view[:nbytes], now)
        except ProtocolError as exc:
            self.close(f"protocol error: {exc}")

    def _parse(self, data: memoryview, now: float) -> None:
        events = self._parser.feed(data)
        if self._parser.holding:
            self._handle(events, now)  # the handshake: it tells the parser the piece count
            if self.closed:
                return
            events = self._parser.resume()
        self._handle(events, now)

    def _encryption_bytes(self, data: memoryview, now: float) -> None:
        """Bytes before the peer wire: an incoming connection's first ones, or the MSE handshake's."""
        if self._mse is None:  # incoming: a plain handshake, or an MSE public key?
            self._sniffed += data
            plain = mse.looks_like_plain_handshake(self._sniffed)
            if plain is None:
                return
            data, self._sniffed = memoryview(self._sniffed), b""
            if plain:
                if not self._policy.accepts_plain:
                    self.close("plain-text handshake refused: encryption is required")
                    return
                self._before_wire = False
                self._parse(data, now)
                return
            if not self._policy.accepts_encrypted or self._skey_lookup is None:
                self.close("encrypted handshake refused: encryption is disabled")
                return
            self._mse = mse.Responder(self._skey_lookup, allow=self._policy.methods, prefer=self._policy.preferred)
        done = self._mse.receive(data)
        self._write_raw(self._mse.data_to_send())  # the responder's last bytes come before any RC4 output
        if not done:
            return
        result = done[0]
        self._mse = None
        self._before_wire = False
        self._mse_info_hash = result.info_hash
        self._encrypt, self._decrypt = result.encrypt, result.decrypt
        self.encryption = "rc4" if result.method is mse.CRYPTO_RC4 else "handshake"
        stream = result.initial_payload + result.rest
        if stream:
            self._parse(memoryview(stream), now)

    def _handle(self, events: list[wire.Event], now: float) -> None:
        """Events of one read, in order; blocks go to the owner together."""
        blocks: list[wire.Piece] = []
        for event in events:
            # Blocks are nearly all a leecher receives: they go to the
            # owner together, once per read, in order with other messages.
            if type(event) is wire.Piece:
                blocks.append(event)
                continue
            if blocks:
                self._blocks(blocks, now)
                blocks = []
                if self.closed:
                    return
            self._dispatch(event)
            if self.closed:
                return
        if blocks:
            self._blocks(blocks, now)

    def _blocks(self, blocks: list[wire.Piece], now: float) -> None:
        self.last_block = now
        self.downloaded.add(sum([len(block.data) for block in blocks]), now)
        self.owner.on_blocks(self, blocks)  # type: ignore[union-attr]

    def eof_received(self) -> bool:
        self.close("connection closed by peer")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed:
            self.close(f"connection lost: {exc}" if exc else "connection closed by peer")
        self.drained.set()

    def pause_writing(self) -> None:
        self.drained.clear()

    def resume_writing(self) -> None:
        self.drained.set()
        if self._reading_paused and self.transport is not None and not self.closed:
            self._reading_paused = False
            if not self._reading_held:
                self.transport.resume_reading()

    def hold_reading(self, hold: bool) -> None:
        """Read nothing more while the owner's disk catches up (its queue of blocks is full); unlike a
        peer that reads nothing we send, this is our doing, so no stall timeout runs."""
        if hold == self._reading_held:
            return
        self._reading_held = hold
        transport = self.transport
        if transport is None or self.closed or self._reading_paused:
            return
        if hold:
            transport.pause_reading()
        else:
            transport.resume_reading()

    def _check_backlog(self) -> None:
        """A peer that provokes messages (rejects, choke toggles) and never reads them would grow our
        memory with each: past ``write_buffer_max`` queued we read nothing more from it until it drains,
        and drop it if it does not within ``write_stall_timeout``."""
        transport = self.transport
        if self._reading_paused or transport is None or \
                transport.get_write_buffer_size() <= self._settings.peer.write_buffer_max:
            return
        self._reading_paused = True
        if not self._reading_held:
            transport.pause_reading()
        timeout = self._settings.peer.write_stall_timeout
        asyncio.get_running_loop().call_later(timeout, self._check_stall, transport)

    def _check_stall(self, transport: object) -> None:
        if self._reading_paused and self.transport is transport and not self.closed:
            self.close(f"read nothing we sent for {self._settings.peer.write_stall_timeout:g} s")

    # ---- sending -----------------------------------------------------------

    def _write_raw(self, data: bytes) -> None:
        if data and self.transport is not None and not self.closed:
            self.transport.write(data)

    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            if self._later:
                self._later.append(data)
                data = b"".join(self._later)
                self._later.clear()
            self.transport.write(data if self._encrypt is None else self._encrypt.process(data))
            self.last_sent = time.monotonic()
            if not self.drained.is_set():  # only past the high-water mark is the backlog worth a look
                self._check_backlog()

    def send_soon(self, data: bytes) -> None:
        """Queue a small message: those queued in one loop iteration leave in
        one write (a have per verified piece would otherwise cost a syscall each)."""
        if self.transport is None or self.closed:
            return
        if not self._outbox:
            asyncio.get_running_loop().call_soon(self._flush)
        self._outbox.append(data)

    def send_later(self, data: bytes) -> None:
        """Queue a message nothing waits on: it leaves with the next write, or at ``flush_later``. A seed
        wakes for every packet it reads, and our haves, which only update its display of us, were most
        of what 16 seeders read from one leecher."""
        if self.transport is not None and not self.closed:
            self._later.append(data)

    def flush_later(self) -> None:
        if self._later:
            self.send(b"")

    def _flush(self) -> None:
        if self._outbox:
            data = b"".join(self._outbox)
            self._outbox.clear()
            self.send(data)

    def send_blocks(self, blocks: Sequence[tuple[int, int, bytes | memoryview]]) -> None:
        """Piece messages for ``(index, begin, data)`` blocks in one write (one
        writev, not a syscall per block), without copying the blocks."""
        if self.transport is not None and not self.closed:
            parts: list[bytes | memoryview] = []
            total = 0
            for index, begin, data in blocks:
                parts.append(wire.build_piece_header(index, begin, len(data)))
                parts.append(data)
                total += len(data)
            encrypt = self._encrypt
            if encrypt is None:
                self.transport.writelines(parts)
            else:  # the cipher is the copy: one pass from the blocks into one send buffer
                out = bytearray(total + 13 * len(blocks))
                offset = 0
                for part in parts:
                    offset = encrypt.process_to(part, out, offset)
                self.transport.write(out)
            now = time.monotonic()
            self.last_sent = now
            self.uploaded.add(total, now)

    def set_choking(self, choking: bool) -> None:
        if choking != self.am_choking:
            self.am_choking = choking
            self.send(wire.build_choke() if choking else wire.build_unchoke())

    def set_interested(self, interested: bool) -> None:
        if interested != self.am_interested:
            self.am_interested = interested
            self.send(wire.build_interested() if interested else wire.build_not_interested())

    def close(self, reason: str) -> None:
        """Drop the connection once; the owner hears about it once."""
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        log.debug("%r closed: %s", self, reason)
        if self.transport is not None:
            self.transport.abort()
        if self.owner is not None and self.remote_id is not None:
            self.owner.detach(self)
            self._extensions().peer_gone(self)
        if self.on_close is not None:
            self.on_close(self)

    # ---- receiving ---------------------------------------------------------

    def _reserved(self) -> bytes:
        return wire.build_reserved(dht=self._extensions().dht_port is not None)

    def _extensions(self) -> PeerExtensions:
        return getattr(self.owner, "extensions", None) or NO_EXTENSIONS

    def _send_handshake(self) -> None:
        assert self.owner is not None
        self.send(wire.Handshake(self.owner.info_hash, self.owner.peer_id, self._reserved()).to_bytes())

    def send_extended(self, name: str, payload: bytes) -> bool:
        """Send an extension message under the id the peer gave ``name``; False if it has none."""
        ext_id = self.extension.m.get(name, 0) if self.extension is not None else 0
        if not ext_id or self.closed:
            return False
        self.send(wire.build_extended(ext_id, payload))
        return True

    def rebind(self, owner: PeerOwner) -> None:
        """Hand this connection, handshaken in a magnet's metadata phase, to the download that now knows
        the piece count: what the peer said it has is checked and applied against it."""
        num_pieces = owner.num_pieces
        assert num_pieces is not None
        self.owner = owner
        self._parser.num_pieces = num_pieces
        try:
            if self._early_bitfield is not None:
                bitfield = Bitfield.from_bytes(self._early_bitfield, num_pieces)
            else:
                bitfield = Bitfield(num_pieces)
                if self._early_all:
                    bitfield.set_all()
            for index in self._early_haves:
                if index >= num_pieces:
                    raise ProtocolError(f"have for piece {index} of {num_pieces}")
                bitfield.set(index)
        except (ProtocolError, ValueError) as exc:
            self.bitfield = None
            self.close(f"protocol error: {exc}")
            return
        known = self._early_bitfield is not None or self._early_all is not None or self._early_haves
        self.bitfield = bitfield if known else None
        self._early_bitfield = self._early_all = None
        self._early_haves = set()

    def _dispatch(self, event: wire.Event) -> None:
        # Ordered by frequency on a busy connection (blocks: see buffer_updated).
        if type(event) is wire.Request:
            self.owner.on_request(self, event.index, event.begin, event.length)  # type: ignore[union-attr]
        elif type(event) is wire.Have:
            if self.owner.num_pieces is None:  # type: ignore[union-attr]
                self._early_have(event)
                return
            self._peer_bitfield().set(event.index)
            self.owner.on_have(self, event.index)  # type: ignore[union-attr]
        elif type(event) is wire.KeepAlive:
            pass
        elif type(event) is wire.Cancel:  # endgame sends many; a hostile peer, millions
            self.owner.on_cancel(self, event.index, event.begin, event.length)  # type: ignore[union-attr]
        elif type(event) is wire.Interested or type(event) is wire.NotInterested:
            # Here, not among the rare ones: a peer can send millions (see Swarm.on_interest_change).
            self.peer_interested = type(event) is wire.Interested
            self.owner.on_interest_change(self)  # type: ignore[union-attr]
        elif type(event) is wire.Handshake:
            self._on_handshake(event)
        else:
            self._dispatch_rare(event)

    def _dispatch_rare(self, event: wire.Event) -> None:
        owner = self.owner
        assert owner is not None
        kind = type(event)
        if kind is wire.Unchoke or kind is wire.Choke:
            self.peer_choking = kind is wire.Choke
            owner.on_choke_change(self)
        elif owner.num_pieces is None and kind in _HAVE_KINDS:
            self._early_have(event)
        elif kind is wire.Bitfield:
            self._set_bitfield(Bitfield.from_bytes(event.data, owner.num_pieces))
        elif kind is wire.HaveAll or kind is wire.HaveNone:
            self._require_fast(kind.__name__)
            bitfield = Bitfield(owner.num_pieces)
            if kind is wire.HaveAll:
                bitfield.set_all()
            self._set_bitfield(bitfield)
        elif kind is wire.Reject:
            self._require_fast("Reject")
            owner.on_reject(self, event.index, event.begin, event.length)
        elif kind is wire.AllowedFast:
            self._require_fast("AllowedFast")
            self.allowed_fast.add(event.index)
            owner.on_allowed_fast(self, event.index)
        elif kind is wire.Extended:
            if event.ext_id == wire.EXTENDED_HANDSHAKE_ID:
                self._on_extension_handshake(event.payload)
            elif self.extension is None:
                raise ProtocolError("extension message before the extension handshake")
            else:
                self._extensions().received(self, event.ext_id, event.payload)
        elif kind is wire.Port:
            self.dht_port = event.port
            if self.address is not None:
                self._extensions().dht_node(self.address[0], event.port)
        # Suggest and unknown messages are advice we may ignore (BEP 3, 6).

    def _early_have(self, event: wire.Event) -> None:
        kind = type(event)
        if kind is wire.Have:
            if len(self._early_haves) < MAX_EARLY_HAVES:
                self._early_haves.add(event.index)
        elif kind is wire.Bitfield:
            self._early_bitfield = bytes(event.data)
        else:
            self._require_fast(kind.__name__)
            self._early_all = kind is wire.HaveAll

    def _require_fast(self, name: str) -> None:
        if not self.supports_fast:
            raise ProtocolError(f"{name} sent without the fast extension (BEP 6) negotiated")

    def _peer_bitfield(self) -> Bitfield:
        if self.bitfield is None:  # a have before any bitfield: they started with nothing
            self.bitfield = Bitfield(self.owner.num_pieces)  # type: ignore[union-attr]
        return self.bitfield

    def _set_bitfield(self, bitfield: Bitfield) -> None:
        if self.bitfield is None:
            self.bitfield = bitfield
            self.owner.on_bitfield(self)  # type: ignore[union-attr]
            return
        # A later bitfield (aria2 sends one instead of several haves): apply
        # the pieces it adds as haves; a peer cannot lose pieces it announced.
        added = bitfield.and_not(self.bitfield)
        self.bitfield = self.bitfield.or_(bitfield)
        for index in added.iter_set():
            self.owner.on_have(self, index)  # type: ignore[union-attr]

    def _on_handshake(self, hs: wire.Handshake) -> None:
        if self._mse_info_hash is not None and hs.info_hash != self._mse_info_hash:
            self.close("handshake for another torrent than the encrypted handshake named")
            return
        if self.owner is None:
            self.owner = self._resolver(hs.info_hash) if self._resolver else None
            if self.owner is None:
                self.close("handshake for a torrent we do not serve")
                return
            self._parser.num_pieces = self.owner.num_pieces
            self._send_handshake()
        elif hs.info_hash != self.owner.info_hash:
            self.close("handshake for a different info-hash")
            return
        extensions = self._extensions()
        self.supports_fast = hs.supports_fast
        self.supports_extensions = hs.supports_extensions
        self.supports_dht = hs.supports_dht and extensions.dht_port is not None
        self.remote_id = hs.peer_id
        refusal = self.owner.attach(self)
        if refusal is not None:
            self.remote_id = None  # never attached: no detach either
            self.close(refusal)
            return
        if self.supports_extensions:
            fields = extensions.handshake_fields()
            self.send(wire.build_extended_handshake(
                extensions.m(), v=f"{CLIENT_NAME} {__version__}", p=self.listen_port,
                reqq=self._settings.peer.max_requests, metadata_size=fields.pop("metadata_size", None),
                yourip=_packed_ip(self.address[0]) if self.address else None, extra=fields or None))
        self._send_have_state()
        if self.supports_dht and extensions.dht_port:
            self.send(wire.build_port(extensions.dht_port))

    def _send_have_state(self) -> None:
        have = self.owner.have  # type: ignore[union-attr]
        if have is None:  # metadata phase: we have nothing yet
            if self.supports_fast:
                self.send(wire.build_have_none())
        elif self.supports_fast and have.all():
            self.send(wire.build_have_all())
        elif self.supports_fast and have.none():
            self.send(wire.build_have_none())
        elif not have.none():
            self.send(wire.build_bitfield(have.to_bytes()))

    def _on_extension_handshake(self, payload: bytes) -> None:
        self.extension = wire.parse_extended_handshake(payload, limits=self._settings.limits)
        self._client = None  # its ``v`` may name a client the peer id does not
        if self.extension.reqq:
            self.reqq = min(self.extension.reqq, self._settings.peer.max_requests)
        self._extensions().peer_ready(self)

    # ---- for the owner and the UI ------------------------------------------

    @property
    def client(self) -> str:
        """The client's name and version, decoded from its peer id (BEP 20)."""
        if self._client is None:
            if self.remote_id is None:
                return ""
            self._client = client_name(self.remote_id, self.extension.v if self.extension else None)
        return self._client

    @property
    def transport_name(self) -> str:
        """"utp" or "tcp": a uTP transport says so in ``get_extra_info("transport")``."""
        transport = self.transport
        return transport.get_extra_info("transport", "tcp") if transport is not None else "tcp"

    @property
    def listen_address(self) -> tuple[str, int] | None:
        """Where the peer accepts connections: the address we dialled, or for an incoming peer its host and
        the listen port its extension handshake gave (``p``)."""
        if self.outgoing or self.address is None:
            return self.address
        port = self.extension.p if self.extension is not None else None
        return (self.address[0], port) if port else None

    @property
    def label(self) -> str:
        """``host:port`` (``[v6]:port``), computed once."""
        if self._label is None:
            host, port = self.address or ("?", 0)
            self._label = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return self._label

    def __repr__(self) -> str:
        host, port = self.address or ("?", 0)
        return f"<Peer {host}:{port} {self.client}>"


_HAVE_KINDS = (wire.Have, wire.Bitfield, wire.HaveAll, wire.HaveNone)


SIMULTANEOUS = 1.0  # seconds: a second connection to a peer within this is a simultaneous dial


def keeps_new_connection(existing: PeerConnection, new: PeerConnection, our_id: bytes) -> bool:
    """A second connection to a peer we are connected to. When each side dialled the other at once, both
    keep the one dialled by the larger peer id, so exactly one survives (each refusing the other's would
    leave none). Otherwise (a retry, another client's second dial) the established one stays, as the
    other side keeps it too."""
    if new.connected_at - existing.connected_at > SIMULTANEOUS or existing.downloaded.total or \
            existing.uploaded.total:
        return False

    def dialler(peer: PeerConnection) -> bytes:
        return our_id if peer.outgoing else (peer.remote_id or b"")

    return dialler(new) > dialler(existing)


def settle_duplicate(peers: Iterable[PeerConnection], new: PeerConnection, our_id: bytes) -> str | None:
    """``new`` against a connection to the same peer among ``peers``: the refusal for ``new``, or None
    (no such connection, or it was closed to keep ``new``)."""
    twin = next((p for p in peers if p.remote_id == new.remote_id), None)
    if twin is None:
        return None
    if not keeps_new_connection(twin, new, our_id):
        return "duplicate connection"
    twin.close("duplicate connection (the peer's own dial is kept)")
    return None


def _packed_ip(host: str) -> bytes | None:
    try:
        return ipaddress.ip_address(host).packed
    except ValueError:
        return None
