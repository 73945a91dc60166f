"""The extensions a connection speaks beyond BEP 3: BEP 10 extended messages and the BEP 5 DHT port.

Each BEP 10 extension (``ut_metadata``, ``ut_pex``) is a handler plugged in by name; the registry gives it
our message id, builds the ``m`` dictionary of our extension handshake from the handlers present, routes
each incoming extended message to its handler, and tells the handlers when a peer's handshake arrives and
when the peer goes. Our ids come from one fixed table, so a connection handed from the torrent's
metadata phase to its download keeps the ids it was told.

The BEP 5 part: the UDP port of our DHT node (set in the handshake's reserved bits and sent in a ``port``
message to peers that set theirs) and where the nodes peers announce go.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from torrent.peer.connection import PeerConnection

# Our message ids (what peers send us under); libtorrent uses the same numbers.
OUR_IDS = {"ut_pex": 1, "ut_metadata": 2}


class Extension(Protocol):
    """A BEP 10 extension for one torrent: sans-IO message logic behind these four calls."""

    name: str

    def handshake_fields(self) -> dict[str, Any]:
        """Keys this extension adds to our extension handshake (``metadata_size``)."""

    def peer_ready(self, peer: PeerConnection) -> None:
        """The peer's extension handshake arrived (``peer.extension``); it may be called again if the
        peer sends another."""

    def received(self, peer: PeerConnection, payload: bytes) -> None:
        """One message the peer sent under our id for this extension. Raise ``ProtocolError`` to drop it."""

    def peer_gone(self, peer: PeerConnection) -> None: ...


class PeerExtensions:
    """The extensions of one torrent's connections, shared by its metadata phase and its download."""

    def __init__(self, extensions: Iterable[Extension] = (), *, dht_port: int | None = None,
                 on_dht_node: Callable[[str, int], None] | None = None) -> None:
        self.by_name: dict[str, Extension] = {}
        self._by_id: dict[int, Extension] = {}
        for extension in extensions:
            ext_id = OUR_IDS[extension.name]
            self.by_name[extension.name] = extension
            self._by_id[ext_id] = extension
        self.dht_port = dht_port  # our DHT node's UDP port; None: no DHT (not advertised)
        self.on_dht_node = on_dht_node

    def m(self) -> dict[str, int]:
        return {name: OUR_IDS[name] for name in self.by_name}

    def handshake_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        for extension in self.by_name.values():
            fields.update(extension.handshake_fields())
        return fields

    def peer_ready(self, peer: PeerConnection) -> None:
        for extension in self.by_name.values():
            extension.peer_ready(peer)

    def received(self, peer: PeerConnection, ext_id: int, payload: bytes) -> None:
        extension = self._by_id.get(ext_id)
        if extension is not None:  # an id we never gave: a peer's mistake we may ignore (BEP 10)
            extension.received(peer, payload)

    def peer_gone(self, peer: PeerConnection) -> None:
        for extension in self.by_name.values():
            extension.peer_gone(peer)

    def dht_node(self, host: str, port: int) -> None:
        if self.on_dht_node is not None and 0 < port < 65536:
            self.on_dht_node(host, port)


NO_EXTENSIONS = PeerExtensions()
