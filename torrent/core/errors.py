"""One exception hierarchy, with messages a user can act on.

Remote errors (a peer, tracker or file broke the rules) carry what was wrong
and where; the CLI prints ``str(exc)`` as its one-line error.
"""

from __future__ import annotations

from typing import Any, Self


class TorrentError(Exception):
    """Root of every error this package raises on purpose."""


class BencodeError(TorrentError):
    """Bencoded data is malformed or exceeds a limit."""

    def __init__(self, reason: str, position: int | None = None) -> None:
        self.reason = reason
        self.position = position
        where = f" at byte {position}" if position is not None else ""
        super().__init__(f"invalid bencode{where}: {reason}")


class MetainfoError(TorrentError):
    """A .torrent file is well-formed bencode but not a valid torrent."""


class MagnetError(TorrentError):
    """A magnet URI cannot be parsed or built."""


class ProtocolError(TorrentError):
    """A peer broke the wire protocol; the connection must be dropped."""


class BitfieldError(ProtocolError):
    """A bitfield has the wrong length or non-zero spare bits."""


class MseError(ProtocolError):
    """A peer broke the encrypted handshake (MSE/PE): no sync pattern, a wrong VC, an unknown torrent,
    a method we did not offer, padding or payload past its limit."""


class CreateError(TorrentError):
    """A torrent cannot be created from the given path or options."""


class StorageError(TorrentError):
    """Reading or writing the payload on disk failed or was refused."""


class UsageError(TorrentError):
    """A command-line value cannot be understood."""


class ConfigError(UsageError):
    """A setting (in the config file, on the command line or at run time) is
    unknown or has a value it cannot take; the message names the key."""


class ListenError(TorrentError):
    """The session cannot accept connections on the port it was given."""


class BlocklistError(TorrentError):
    """An IP blocklist cannot be used: unreadable, too large, broken gzip, or not one valid line."""


class BenchError(TorrentError):
    """A benchmark run could not be carried out: a peer failed, hung, or
    delivered bytes that do not match the torrent."""


class TrackerError(TorrentError):
    """A tracker could not be used; ``reason`` says why, ``url`` which one."""

    def __init__(self, reason: str, *, url: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.url = url

    def at(self, url: str) -> Self:
        """Name the tracker (the codecs raise without knowing it); returns ``self``."""
        if self.url is None:
            self.url = url
        return self

    def __str__(self) -> str:
        return f"tracker {self.url}: {self.reason}" if self.url else self.reason

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), dict(self.__dict__)))


def _rebuild(cls: type[TrackerError], state: dict[str, Any]) -> TrackerError:
    exc = cls.__new__(cls)
    Exception.__init__(exc, state.get("reason", ""))
    exc.__dict__.update(state)
    return exc


class UtpError(ProtocolError):
    """A uTP packet is malformed: a short header, a wrong version or type, an extension past the packet's
    end. Connections drop such packets; a failed connection is an ``OSError`` like TCP's."""
