"""Peer addresses a torrent may dial, and when to dial each again (sans-IO).

A peer whose connection failed, or closed before it was any use, is tried
again soon and then with growing delays: ``retry_first`` seconds after the
first failure, doubling up to ``retry_max``; after ``retry_give_up``
failures in a row it is forgotten, unless the user named it. Seen on
loopback: qBittorrent 4.5.2, freshly started and already seeding, closes
the first incoming connection at once; a retry a second later succeeds, where
a fixed 60 s delay left the download at 0 % for a minute.

A connection that lasted or carried payload resets the count. Times are
arguments (the loop's monotonic clock in the session, a fake one in tests).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from torrent.core.settings import NetworkSettings
from torrent.session.api import PeerSource

Address = tuple[str, int]

# A connection counts as useful (and clears the failure count) when it carried
# payload or stayed up this long.
USEFUL_AFTER = 60.0


@dataclass(slots=True)
class Candidate:
    source: PeerSource
    failures: int = 0
    next_try: float = 0.0  # monotonic time before which it is not dialled
    last_error: str | None = None
    attempts: int = 0
    encrypted: bool | None = None  # the handshake to dial with (MSE or plain); None: the policy's first
    switched: bool = False  # the handshake was switched after a failure and has not worked since
    transport: str | None = None  # "utp" or "tcp": the one that connected last (dialled first next time)
    seed: bool = False  # it has every piece (its bitfield said, or a PEX flag): of no use while we seed


class Candidates:
    """The addresses of one torrent, bounded to ``max_candidates`` (oldest first out,
    never a manual one while others remain). ``refuses(host)``: the session's IP blocklist;
    an address it names is never kept, so never dialled."""

    def __init__(self, settings: NetworkSettings, refuses: Callable[[str], bool] | None = None) -> None:
        self.settings = settings
        self._known: dict[Address, Candidate] = {}
        self._refuses = refuses

    def __len__(self) -> int:
        return len(self._known)

    def __contains__(self, address: object) -> bool:
        return address in self._known

    def get(self, address: Address) -> Candidate | None:
        return self._known.get(address)

    def items(self) -> Iterator[tuple[Address, Candidate]]:
        return iter(list(self._known.items()))

    def add(self, address: Address, source: PeerSource, now: float = 0.0) -> bool:
        """Remember ``address``; a manual source makes it due now. False if it was known or is blocked."""
        if self._refuses is not None and self._refuses(address[0]):
            return False
        known = self._known.get(address)
        if known is not None:
            if source is PeerSource.MANUAL:
                known.source = source
                if known.next_try != float("inf"):  # not while an attempt or a connection is under way
                    known.next_try = min(known.next_try, now)
            return False
        if len(self._known) >= self.settings.max_candidates:
            self._evict()
        self._known[address] = Candidate(source)
        return True

    def _evict(self) -> None:
        for address, candidate in self._known.items():
            if candidate.source is not PeerSource.MANUAL:
                del self._known[address]
                return
        del self._known[next(iter(self._known))]

    def due(self, now: float, *, seeds: bool = True) -> Iterator[Address]:
        """Addresses whose time has come, oldest first; ``seeds=False`` (we are one): not those known
        to be seeds, as libtorrent and Transmission leave them."""
        for address, candidate in list(self._known.items()):
            if candidate.next_try <= now and (seeds or not candidate.seed):
                yield address

    def mark_seeds(self, addresses: Iterable[Address]) -> None:
        for address in addresses:
            candidate = self._known.get(address)
            if candidate is not None:
                candidate.seed = True

    def dialling(self, address: Address, now: float) -> None:
        """An attempt starts: not due again until it ends (``failed`` or ``closed``)."""
        candidate = self._known.get(address)
        if candidate is not None:
            candidate.attempts += 1
            candidate.next_try = float("inf")

    def connected(self, address: Address, *, encrypted: bool | None = None) -> None:
        """The peer answered our handshake: dialled ``encrypted`` (MSE) or not, which is remembered."""
        candidate = self._known.get(address)
        if candidate is not None:
            candidate.next_try = float("inf")  # while connected; ``closed`` schedules the next one
            if encrypted is not None:
                candidate.encrypted = encrypted
                candidate.switched = False

    def switch_handshake(self, address: Address, encrypted: bool, now: float) -> bool:
        """The peer closed before answering our handshake: dial it again at once with the other one
        (``encrypted``), remembered from now on. False if that was the switch already: then the failure
        counts as any other."""
        candidate = self._known.get(address)
        if candidate is None or candidate.switched:
            return False
        candidate.encrypted = encrypted
        candidate.switched = True
        candidate.last_error = "closed during the handshake"
        candidate.next_try = now
        return True

    def failed(self, address: Address, error: str, now: float) -> float | None:
        """The attempt failed (or the connection closed before it was of use):
        returns the delay before the next try, or None if the address is forgotten."""
        candidate = self._known.get(address)
        if candidate is None:
            return None
        candidate.failures += 1
        candidate.last_error = error
        if candidate.failures >= self.settings.retry_give_up and candidate.source is not PeerSource.MANUAL:
            del self._known[address]
            return None
        delay = self.delay(candidate.failures)
        candidate.next_try = now + delay
        return delay

    def closed(self, address: Address, reason: str, now: float, *, useful: bool) -> float | None:
        """A connection ended. A useful one clears the count and the address may
        be dialled again after ``retry_first``; otherwise it counts as a failure."""
        candidate = self._known.get(address)
        if candidate is None:
            return None
        if not useful:
            return self.failed(address, reason, now)
        candidate.failures = 0
        candidate.last_error = reason
        candidate.next_try = now + self.settings.retry_first
        return self.settings.retry_first

    def delay(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failure in a row."""
        s = self.settings
        return min(s.retry_first * 2 ** min(failures - 1, 60), s.retry_max)

    def forget(self, address: Address) -> None:
        self._known.pop(address, None)

    def drop_blocked(self) -> int:
        """Forget every address the blocklist now names (a new list was loaded); how many."""
        if self._refuses is None:
            return 0
        blocked = [address for address in self._known if self._refuses(address[0])]
        for address in blocked:
            del self._known[address]
        return len(blocked)
