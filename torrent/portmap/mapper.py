"""Port mapping on asyncio: get the gateway to forward our port, keep it forwarded, take it back.

``PortMapper`` asks by every enabled method at once, UPnP IGD (SSDP, then SOAP over HTTP) and
PCP with its NAT-PMP fallback (UDP to the default gateway), and keeps the first that maps both
TCP and UDP; whatever the others managed is removed. It renews at half the granted lease,
starts over when a renewal fails, retries a failed round later, and removes the mappings on
``close()``. Readers get ``status``, an immutable ``MappingStatus``.

The methods' clients (``natpmp_client``, ``upnp_client``) own the sockets; the sans-IO
``natpmp`` and ``upnp`` modules build and parse the bytes; this one owns the schedule. Every wait
has a bound; a failure becomes ``state="failed"`` with a message, never an exception out of
``start()``. Only the SSDP target, the NAT-PMP gateway, and the device that answered the SSDP
search (at the address it answered from) are contacted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from torrent.portmap import natpmp, upnp
from torrent.portmap.errors import PortMapError
from torrent.portmap.natpmp_client import NatPmpClient
from torrent.portmap.netio import Mapped, Method
from torrent.portmap.upnp_client import UpnpClient

__all__ = [
    "DEFAULT_LEASE",
    "DEFAULT_TIMEOUT",
    "METHODS",
    "RETRY_INTERVAL",
    "MappingStatus",
    "PortMapper",
]

log = logging.getLogger("torrent.portmap")

State = Literal["off", "mapping", "mapped", "failed"]
METHODS: tuple[Method, ...] = ("upnp", "natpmp", "pcp")

DEFAULT_LEASE = 3600  # seconds asked for; RFC 6886 suggests 7200, routers often cap UPnP at 3600
DEFAULT_TIMEOUT = 4.0  # seconds for each step: SSDP search, an HTTP exchange, a NAT-PMP transaction
RETRY_INTERVAL = 300.0  # seconds between rounds after a failure: a gateway may come up later
ROUTE_FILE = "/proc/net/route"
_MIN_RENEW = 1.0  # seconds: never renew in a tighter loop than this


@dataclass(frozen=True, slots=True)
class MappingStatus:
    """What the mapper has achieved, as a plain value for the session and the front ends."""

    state: State = "off"  # "mapping" until the first round ends, then "mapped" or "failed"
    method: Method | None = None  # how the mappings were made, while mapped
    internal_port: int = 0
    external_address: str | None = None  # the gateway's public address, when it told us
    external_tcp_port: int | None = None
    external_udp_port: int | None = None
    lease: int | None = None  # seconds granted; 0 means until removed (some UPnP gateways)
    gateway: str | None = None  # address of the device holding the mappings
    error: str | None = None  # why the last round failed, one line


class _Backend(Protocol):
    """What a method's client does for the mapper (``NatPmpClient``, ``UpnpClient``)."""

    label: str

    @property
    def holds_mappings(self) -> bool: ...

    async def map(self, lease: int) -> Mapped: ...

    async def unmap(self) -> None: ...


def _read_route_file() -> str | None:
    try:
        return Path(ROUTE_FILE).read_text(encoding="ascii", errors="replace")
    except OSError:
        return None


class PortMapper:
    """Keeps ``port`` forwarded (TCP and UDP, same number) on the gateway while it runs.

    ``local_address`` is the address the gateway should forward to (None: the one our sockets to
    the gateway get). ``methods``: any of ``METHODS``; "pcp" falls back to NAT-PMP only when
    "natpmp" is on too. ``lease``: seconds asked for, renewed at half what is granted.
    ``ssdp_address``: where M-SEARCH goes. ``natpmp_gateway``: the NAT-PMP/PCP server (None: port
    5351 of the default route's gateway). ``timeout``: seconds each step may take (SSDP search,
    HTTP exchange, NAT-PMP transaction). ``retry_interval``: seconds before another round after a
    failure. ``on_change`` is called with each new status."""

    def __init__(self, port: int, *, local_address: str | None = None, methods: Iterable[str] = METHODS,
                 lease: int = DEFAULT_LEASE, ssdp_address: tuple[str, int] = upnp.SSDP_ADDRESS,
                 natpmp_gateway: tuple[str, int] | None = None, timeout: float = DEFAULT_TIMEOUT,
                 retry_interval: float = RETRY_INTERVAL, description: str = "torrent",
                 on_change: Callable[[MappingStatus], None] | None = None) -> None:
        if not 1 <= port <= 0xFFFF:
            raise ValueError(f"port {port} is out of range")
        chosen = frozenset(methods)
        if not chosen <= set(METHODS):
            raise ValueError(f"unknown port mapping method(s) {sorted(chosen - set(METHODS))}; use {METHODS}")
        if not 1 <= lease <= 0xFFFFFFFF:
            raise ValueError(f"lease {lease} must be a positive number of seconds")
        if timeout <= 0 or retry_interval <= 0:
            raise ValueError("timeout and retry_interval must be positive")
        if local_address is not None and ipaddress.ip_address(local_address).is_unspecified:
            local_address = None
        self.port = port
        self.local_address = local_address
        self.methods = chosen
        self.lease = lease
        self.ssdp_address = ssdp_address
        self.natpmp_gateway = natpmp_gateway
        self.timeout = timeout
        self.retry_interval = retry_interval
        self.description = description
        self.on_change = on_change
        self._status = MappingStatus(internal_port=port)
        self._task: asyncio.Task[None] | None = None
        self._round_done = asyncio.Event()
        self._active: _Backend | None = None
        self._holders: list[_Backend] = []  # every backend that may have mappings to remove
        self._closed = False

    @property
    def status(self) -> MappingStatus:
        return self._status

    async def start(self) -> MappingStatus:
        """Run the first round (each step bounded by ``timeout``), keep renewing in the background,
        and return the status it reached: "mapped", "failed" (with ``error``) or "off"."""
        if self._task is not None or self._closed:
            raise RuntimeError("a PortMapper starts once")
        if not self.methods:
            return self._status
        self._set(state="mapping", error=None)
        self._task = asyncio.create_task(self._run(), name=f"portmap:{self.port}")
        await self._round_done.wait()
        return self._status

    async def close(self) -> None:
        """Stop renewing and remove every mapping made (each removal bounded by ``timeout``)."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task})
        holders, self._holders, self._active = self._holders, [], None
        await self._remove(holders)
        self._set(state="off", method=None, external_address=None, external_tcp_port=None,
                  external_udp_port=None, lease=None, gateway=None, error=None)

    # ---- rounds ----

    async def _run(self) -> None:
        try:
            while True:
                try:
                    delay = await self._round()
                except Exception as exc:  # a bug must not end the mapper or escape start()
                    log.exception("port mapping: unexpected error")
                    self._failed(f"unexpected error: {exc!r}")
                    delay = self.retry_interval
                self._round_done.set()
                await asyncio.sleep(delay)
        finally:
            self._round_done.set()

    async def _round(self) -> float:
        """Renew, or find a way to map; returns the seconds until the next round."""
        if self._active is not None:
            try:
                return self._mapped(await self._active.map(self.lease))
            except PortMapError as exc:
                log.info("port mapping: renewing through %s failed (%s); starting over", self._active.label, exc)
                stale, self._active = self._active, None
                await self._remove([stale])  # whatever may be left of it, before mapping anew
        backends, errors = await self._backends()
        self._holders.extend(backends)
        tasks = {asyncio.create_task(backend.map(self.lease)): backend for backend in backends}
        failures: dict[_Backend, str] = {}
        winner: tuple[_Backend, Mapped] | None = None
        pending = set(tasks)
        try:
            while pending and winner is None:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in sorted(done, key=list(tasks).index):
                    error = task.exception()
                    if error is None and winner is None:
                        winner = (tasks[task], task.result())
                    elif isinstance(error, PortMapError):
                        failures[tasks[task]] = f"{tasks[task].label}: {error}"
                    elif error is not None:
                        log.error("port mapping: unexpected error in %s", tasks[task].label, exc_info=error)
                        failures[tasks[task]] = f"{tasks[task].label}: unexpected error: {error!r}"
        finally:
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        losers = [b for b in backends if winner is None or b is not winner[0]]
        touched = any(b.holds_mappings for b in losers)
        await self._remove(losers)
        if winner is None:
            errors += [failures[b] for b in backends if b in failures]  # in the order of METHODS
            self._failed("; ".join(errors) or "no port mapping method could run")
            return self.retry_interval
        backend, mapped = winner
        self._active = backend
        if touched:
            # A gateway with both servers may keep one table (miniupnpd does): removing the loser's
            # mappings may have removed the winner's too, so the winner maps once more.
            try:
                mapped = await backend.map(self.lease)
            except PortMapError as exc:
                log.info("port mapping: mapping again through %s failed: %s", backend.label, exc)
        return self._mapped(mapped)

    async def _backends(self) -> tuple[list[_Backend], list[str]]:
        backends: list[_Backend] = []
        errors: list[str] = []
        if "upnp" in self.methods:
            backends.append(UpnpClient(self.ssdp_address, port=self.port, local=self.local_address,
                                  timeout=self.timeout, description=self.description))
        if self.methods & {"natpmp", "pcp"}:
            pcp, natpmp_ok = "pcp" in self.methods, "natpmp" in self.methods
            gateway = self.natpmp_gateway
            if gateway is None:
                text = await asyncio.to_thread(_read_route_file)
                address = natpmp.default_gateway(text) if text is not None else None
                gateway = (address, natpmp.PORT) if address is not None else None
            if gateway is None:
                label = "NAT-PMP/PCP" if pcp and natpmp_ok else "PCP" if pcp else "NAT-PMP"
                errors.append(f"{label}: no default IPv4 gateway in {ROUTE_FILE}; set the gateway's address")
            else:
                backends.append(NatPmpClient(gateway, port=self.port, local=self.local_address, timeout=self.timeout,
                                        pcp=pcp, natpmp_ok=natpmp_ok))
        return backends, errors

    async def _remove(self, backends: list[_Backend]) -> None:
        results = await asyncio.gather(*(backend.unmap() for backend in backends), return_exceptions=True)
        for backend, result in zip(backends, results, strict=True):
            if isinstance(result, Exception):
                log.error("port mapping: unexpected error removing %s mappings", backend.label, exc_info=result)
            if backend in self._holders:
                self._holders.remove(backend)

    # ---- status ----

    def _mapped(self, mapped: Mapped) -> float:
        if self._status.state != "mapped" or self._status.method != mapped.method:
            log.info("port mapping: %s mapped port %d to %s TCP %d, UDP %d (lease %d s)", mapped.method, self.port,
                     mapped.external_address or "?", mapped.tcp_port, mapped.udp_port, mapped.lease)
        self._set(state="mapped", method=mapped.method, external_address=mapped.external_address,
                  external_tcp_port=mapped.tcp_port, external_udp_port=mapped.udp_port, lease=mapped.lease,
                  gateway=mapped.gateway, error=None)
        return max(_MIN_RENEW, (mapped.lease or self.lease) / 2)

    def _failed(self, error: str) -> None:
        log.info("port mapping failed: %s", error)
        self._set(state="failed", method=None, external_address=None, external_tcp_port=None,
                  external_udp_port=None, lease=None, gateway=None, error=error)

    def _set(self, **changes: Any) -> None:
        status = dataclasses.replace(self._status, **changes)
        if status == self._status:
            return
        self._status = status
        if self.on_change is not None:
            try:
                self.on_change(status)
            except Exception:
                log.exception("port mapping: on_change callback failed")

