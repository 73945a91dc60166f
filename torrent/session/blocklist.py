"""The session's IP blocklist: the file read in a worker thread, the filter in force, what it refused.

The session asks ``refuses(host)`` before it dials an address (the candidates ask it as addresses
come in) and when a connection is accepted, before a byte is read; each refusal is counted for the
session snapshot. A list is read whole before it replaces the one in force, so a bad file at run
time leaves the previous list blocking.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from pathlib import Path
from typing import Any

from torrent.codec.blocklist import Blocklist, BlocklistParser
from torrent.core.errors import BlocklistError
from torrent.core.ipfilter import EMPTY, IpFilter
from torrent.peer.connection import PeerConnection

log = logging.getLogger("torrent.session")

READ_CHUNK = 1 << 20
SHOWN_PROBLEMS = 5  # malformed lines logged one by one; the rest as a count


def read_blocklist(path: str, max_size: int) -> Blocklist:
    """Parse the list at ``path`` (blocking: run it in a thread). A FIFO or device is refused
    rather than read (opened without blocking, as ``metainfo.read_file`` does)."""
    name = str(Path(path).expanduser())
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise BlocklistError(f"cannot read blocklist {path}: {exc.strerror or exc}") from None
    try:
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
        if regular:
            parser = BlocklistParser(max_size)
            while chunk := os.read(fd, READ_CHUNK):
                parser.feed(chunk)
            return parser.finish()
    except OSError as exc:
        raise BlocklistError(f"cannot read blocklist {path}: {exc.strerror or exc}") from None
    except BlocklistError as exc:  # the parser's: say which file
        raise BlocklistError(f"blocklist {path}: {exc}") from None
    finally:
        os.close(fd)
    raise BlocklistError(f"blocklist {path} is not a regular file")


class BlocklistState:
    """The filter in force, how loading it went (``status``), and refusals so far."""

    def __init__(self) -> None:
        self.filter: IpFilter = EMPTY
        self.status = "off"
        self.refused = 0
        self._generation = 0  # the latest load; an older one that finishes later is dropped

    def refuses(self, host: str) -> bool:
        """True, and counted, when ``host`` is in the list."""
        if self.filter.blocks(host):
            self.refused += 1
            return True
        return False

    async def load(self, path: str, max_size: int) -> bool:
        """Read ``path`` off the loop and put it in force (an empty path: no list). False when a
        later load started meanwhile (this one is dropped). ``BlocklistError`` when the file cannot
        be used; the list in force stays."""
        self._generation += 1
        generation = self._generation
        if not path:
            self.filter, self.status = EMPTY, "off"
            return True
        self.status = f"loading {path}"
        try:
            blocklist = await asyncio.get_running_loop().run_in_executor(None, read_blocklist, path, max_size)
        except BlocklistError as exc:
            if generation == self._generation:
                kept = f"; the previous list ({_count(len(self.filter), 'range')}) stays in force"
                self.status = f"failed: {exc}{kept if self.filter else ''}"
            raise
        if generation != self._generation:
            return False
        self.filter = blocklist.filter
        self.status = _count(len(blocklist.filter), "range")
        _log_loaded(path, blocklist)
        return True


def _log_loaded(path: str, blocklist: Blocklist) -> None:
    ranges = blocklist.filter
    allowed = f", {_count(blocklist.allowed, 'allowed range')} skipped" if blocklist.allowed else ""
    log.info("blocklist %s: %s loaded (%d IPv4, %d IPv6, merged from %s%s)", path, _count(len(ranges), "range"),
             ranges.v4_ranges, ranges.v6_ranges, _count(blocklist.entries, "line"), allowed)
    for problem in blocklist.problems[:SHOWN_PROBLEMS]:
        log.warning("blocklist %s, line %d skipped: %s", path, problem.line, problem.reason)
    if blocklist.problem_count > SHOWN_PROBLEMS:
        log.warning("blocklist %s: %s more skipped", path,
                    _count(blocklist.problem_count - SHOWN_PROBLEMS, "malformed line"))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


class GuardedConnection(PeerConnection):
    """An incoming connection that a blocked address never gets past: it is aborted in
    ``connection_made``, before the handshake is read or ours sent."""

    def __init__(self, blocklist: BlocklistState, **kwargs: Any) -> None:
        super().__init__(None, **kwargs)
        self._blocklist = blocklist

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        if peer and self._blocklist.refuses(peer[0]):
            self.address = (peer[0], peer[1])
            self.closed = True
            self.close_reason = "blocked by the IP filter"
            transport.abort()
            log.debug("refused %s: blocked by the IP filter", peer[0])
            return
        super().connection_made(transport)


__all__ = ["BlocklistState", "GuardedConnection", "read_blocklist"]
