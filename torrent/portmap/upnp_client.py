"""UPnP IGD on asyncio: find the gateway by SSDP, read its description, map ports by SOAP.

Only the SSDP target and the device that answered it are contacted, at the address it answered
from: a description or control URL naming another host is refused, and no name is resolved.
Each HTTP exchange has its own connection (``Connection: close``), a size cap and the timeout.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket

from torrent.portmap import upnp
from torrent.portmap.errors import (
    GatewayRefused,
    GatewayTimeout,
    GatewayUnreachable,
    MalformedResponse,
    PortMapError,
)
from torrent.portmap.netio import PROTOCOLS, Datagrams, Mapped, next_item, open_udp, same_address, where

__all__ = ["UpnpClient"]

log = logging.getLogger("torrent.portmap")

_SSDP_RESEND = 1.0  # seconds between M-SEARCH rounds: UDP may lose one
_SSDP_MX = 2  # seconds a device may wait before it answers a multicast search
_READ_SIZE = 16 * 1024


class UpnpClient:
    """An IGD found by SSDP: AddPortMapping for TCP and UDP (again to renew), DeletePortMapping."""

    label = "UPnP"

    def __init__(self, ssdp: tuple[str, int], *, port: int, local: str | None, timeout: float,
                 description: str) -> None:
        self.ssdp = ssdp
        self.port = port
        self.local = local
        self.timeout = timeout
        self.description = description
        self.gateway: str | None = None
        self.internal_client = local  # else learned from the connection to the gateway
        self._services: tuple[upnp.WanService, ...] = ()
        self._permanent = False  # the gateway answered 725: only lease 0 will do
        self._requested: set[tuple[upnp.WanService, upnp.Proto]] = set()

    @property
    def holds_mappings(self) -> bool:
        return bool(self._requested)

    async def map(self, lease: int) -> Mapped:
        if not self._services:
            self._services = await self._discover()
        first_error: PortMapError | None = None
        for service in self._services:  # WANIPConnection before WANPPPConnection: one of them is live
            try:
                for proto in PROTOCOLS:
                    lease = await self._add(service, proto, lease)
            except (GatewayRefused, MalformedResponse) as exc:
                first_error = first_error or exc
                continue
            self._services = (service,)
            external = await self._external_address(service)
            assert self.gateway is not None
            return Mapped("upnp", self.gateway, external, self.port, self.port, lease)
        assert first_error is not None
        raise first_error

    async def _add(self, service: upnp.WanService, proto: upnp.Proto, lease: int) -> int:
        """Map ``proto``; returns the lease the gateway took (0 after a 725 answer)."""
        assert self.internal_client is not None
        lease = 0 if self._permanent else lease
        self._requested.add((service, proto))
        while True:
            request = upnp.add_port_mapping(service, external_port=self.port, protocol=proto,
                                            internal_port=self.port, internal_client=self.internal_client,
                                            lease=lease, description=self.description)
            try:
                await self._soap(request)
                return lease
            except upnp.UpnpError as exc:
                if exc.code == upnp.CONFLICT_IN_MAPPING_ENTRY:
                    self._requested.discard((service, proto))  # another device's mapping: never delete it
                if exc.code != upnp.ONLY_PERMANENT_LEASES_SUPPORTED or lease == 0:
                    raise
                log.info("port mapping: %s takes only permanent leases; asking for lease 0", self.gateway)
                self._permanent = True
                lease = 0

    async def _external_address(self, service: upnp.WanService) -> str | None:
        try:
            answer = await self._soap(upnp.get_external_ip_address(service))
            address = answer.get("NewExternalIPAddress", "")
            return str(ipaddress.ip_address(address))
        except ValueError:
            return None  # empty (no WAN link yet) or junk
        except PortMapError as exc:
            log.info("port mapping: no external address from %s: %s", self.gateway, exc)
            return None

    async def unmap(self) -> None:
        """DeletePortMapping for each mapping we asked for; best effort, each call bounded."""
        for service, proto in sorted(self._requested, key=lambda item: (item[0].control_url, item[1])):
            request = upnp.delete_port_mapping(service, external_port=self.port, protocol=proto)
            try:
                await self._soap(request)
            except upnp.UpnpError as exc:
                if exc.code != upnp.NO_SUCH_ENTRY_IN_ARRAY:  # gone already
                    log.info("port mapping: removing the UPnP %s mapping: %s", proto.upper(), exc)
            except (GatewayTimeout, GatewayUnreachable) as exc:
                log.info("port mapping: cannot remove the UPnP mappings: %s", exc)
                return
            except PortMapError as exc:
                log.info("port mapping: removing the UPnP %s mapping: %s", proto.upper(), exc)
            self._requested.discard((service, proto))

    # ---- discovery ----

    async def _discover(self) -> tuple[upnp.WanService, ...]:
        host, port = self.ssdp
        multicast = ipaddress.ip_address(host).is_multicast
        try:
            transport, endpoint = await open_udp(remote=None, local=self.local, family_of=host)
        except OSError as exc:
            raise GatewayUnreachable(f"cannot open a socket for the SSDP search ({exc.strerror or exc})") from None
        try:
            if multicast:
                _multicast_options(transport, self.local)
            searches = [upnp.msearch(target, host=host, port=port, mx=_SSDP_MX if multicast else None)
                        for target in upnp.SEARCH_TARGETS]
            return await self._search(transport, endpoint, searches, multicast)
        finally:
            transport.close()

    async def _search(self, transport: asyncio.DatagramTransport, endpoint: Datagrams, searches: list[bytes],
                      multicast: bool) -> tuple[upnp.WanService, ...]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        seen: set[str] = set()
        problem = ""
        first_error: PortMapError | None = None
        while loop.time() < deadline:
            for search in searches:
                transport.sendto(search, self.ssdp)
            resend_at = min(deadline, loop.time() + _SSDP_RESEND)
            while (item := await next_item(endpoint.queue, resend_at - loop.time())) is not None:
                if isinstance(item, OSError):
                    problem = f" ({item.strerror or item})"
                    continue
                data, (source, *_) = item
                if not multicast and not same_address(source, self.ssdp[0]):
                    continue  # a unicast search is answered by its target only
                try:
                    answer = upnp.parse_ssdp_response(data)
                    location_host, _ = upnp.http_address(answer.location)
                except MalformedResponse as exc:
                    problem = f" (an invalid answer from {source}: {exc})"
                    continue
                if answer.search_target is not None and answer.search_target not in upnp.SEARCH_TARGETS:
                    continue
                if not same_address(location_host, source):
                    problem = (f" ({source} gave a description URL on another host, {answer.location}; "
                               "not contacted)")
                    continue
                if answer.location in seen:
                    continue
                seen.add(answer.location)
                try:
                    return await self._describe(answer.location, source)
                except PortMapError as exc:
                    log.info("port mapping: UPnP device %s: %s", answer.location, exc)
                    first_error = first_error or exc
        if first_error is not None:
            raise first_error
        raise GatewayTimeout(f"no Internet gateway answered the SSDP search on {where(*self.ssdp)} within "
                             f"{self.timeout:g} s{problem}")

    async def _describe(self, location: str, source: str) -> tuple[upnp.WanService, ...]:
        host, port = upnp.http_address(location)
        response, local = await self._http(host, port, upnp.http_get(location), "the device description")
        if response.status != 200:
            raise PortMapError(f"device description {location} answered HTTP {response.status}")
        services = upnp.parse_description(response.body, location)
        ours = tuple(s for s in services if same_address(upnp.http_address(s.control_url)[0], source))
        if not ours:
            raise PortMapError(f"the control URL {services[0].control_url} is not on the gateway {source}; "
                               "not contacted")
        self.gateway = source
        if self.internal_client is None:
            self.internal_client = local  # the address the gateway sees us by
        return ours

    # ---- HTTP ----

    async def _soap(self, request: upnp.SoapRequest) -> dict[str, str]:
        host, port = upnp.http_address(request.url)
        response, _ = await self._http(host, port, request.http_request(), request.action)
        return upnp.parse_soap_response(request, response)

    async def _http(self, host: str, port: int, request: bytes, what: str) -> tuple[upnp.HttpResponse, str]:
        """One request on its own connection; the response and our local address on it."""
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await asyncio.open_connection(
                    host, port, local_addr=(self.local, 0) if self.local else None)
                try:
                    local = writer.get_extra_info("sockname")[0]
                    writer.write(request)
                    await writer.drain()
                    parser = upnp.HttpResponseReader()
                    while True:
                        data = await reader.read(_READ_SIZE)
                        if not data:
                            return parser.feed_eof(), local
                        response = parser.feed(data)
                        if response is not None:
                            return response, local
                finally:
                    writer.close()
        except TimeoutError:
            raise GatewayTimeout(f"{what} at {where(host, port)} got no answer within {self.timeout:g} s") from None
        except OSError as exc:
            raise GatewayUnreachable(f"cannot reach {where(host, port)} for {what} ({exc.strerror or exc})") from None


def _multicast_options(transport: asyncio.DatagramTransport, local: str | None) -> None:
    sock = transport.get_extra_info("socket")
    if sock is None or sock.family != socket.AF_INET:
        return
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 2)  # UDA 1.1 §1.1.2: TTL 2 by default
    if local:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(local))
