"""PCP (RFC 6887), falling back to NAT-PMP (RFC 6886), on asyncio: one gateway, UDP port 5351.

Requests go out as RFC 6886 §3.1 says: again after 250 ms, then after twice as long each time,
until the timeout. A reply is matched to its request (opcode and protocol for NAT-PMP; nonce,
protocol and port for PCP) before it counts; junk and stale replies are skipped. Renewing is
mapping again (PCP with the same nonce); removing is a lifetime of 0.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar

from torrent.portmap import natpmp
from torrent.portmap.errors import GatewayTimeout, GatewayUnreachable, MalformedResponse, PortMapError
from torrent.portmap.netio import PROTOCOLS, Datagrams, Mapped, Method, next_item, open_udp, where

__all__ = ["NatPmpClient"]

log = logging.getLogger("torrent.portmap")

_FIRST_RETRANSMIT = 0.25  # RFC 6886 §3.1: 250 ms, doubling each time

_T = TypeVar("_T")


class NatPmpClient:
    """PCP, falling back to NAT-PMP, on one gateway: map, renew (the same call), remove."""

    def __init__(self, gateway: tuple[str, int], *, port: int, local: str | None, timeout: float,
                 pcp: bool, natpmp_ok: bool) -> None:
        self.gateway = gateway
        self.port = port
        self.local = local
        self.timeout = timeout
        self.natpmp_ok = natpmp_ok
        self.method: Method = "pcp" if pcp else "natpmp"
        self.label = "NAT-PMP/PCP" if pcp and natpmp_ok else "PCP" if pcp else "NAT-PMP"
        self._nonces = {proto: os.urandom(natpmp.NONCE_SIZE) for proto in PROTOCOLS}  # PCP: one per mapping
        self._mapped: dict[str, natpmp.MapResponse | natpmp.PcpMapResponse] = {}
        self._requested: set[natpmp.Proto] = set()  # removed on unmap, mapped or not
        self._heard = False  # has the gateway sent anything at all?

    @property
    def holds_mappings(self) -> bool:
        return bool(self._requested)

    async def map(self, lease: int) -> Mapped:
        transport, endpoint = await self._open()
        try:
            client = self.local or transport.get_extra_info("sockname")[0]
            if self.method == "pcp":
                try:
                    return await self._map_pcp(transport, endpoint, client, lease)
                except natpmp.UnsupportedVersion as exc:
                    if not self.natpmp_ok:
                        raise PortMapError(f"{exc}, and NAT-PMP is turned off") from None
                    log.info("port mapping: %s speaks NAT-PMP, not PCP: falling back", self.gateway[0])
                    self.method = "natpmp"
            return await self._map_natpmp(transport, endpoint, lease)
        finally:
            transport.close()

    async def _open(self) -> tuple[asyncio.DatagramTransport, Datagrams]:
        try:
            return await open_udp(remote=self.gateway, local=self.local, family_of=self.gateway[0])
        except OSError as exc:
            raise GatewayUnreachable(f"cannot reach {where(*self.gateway)} ({exc.strerror or exc})") from None

    async def _map_pcp(self, transport: asyncio.DatagramTransport, endpoint: Datagrams, client: str,
                       lease: int) -> Mapped:
        for proto in PROTOCOLS:
            before = self._mapped.get(proto)  # RFC 6887 §11.2: a renewal suggests what we were given
            request = natpmp.pcp_map_request(
                nonce=self._nonces[proto], protocol=proto, internal_port=self.port, client_address=client,
                lifetime=lease, external_port=before.external_port if before else self.port,
                external_address=before.external_address if isinstance(before, natpmp.PcpMapResponse) else None)
            self._requested.add(proto)
            response = await self._transact(transport, endpoint, request, self._pcp_answer(proto))
            self._mapped[proto] = natpmp.check(response)
        tcp, udp = self._mapped["tcp"], self._mapped["udp"]
        assert isinstance(tcp, natpmp.PcpMapResponse) and isinstance(udp, natpmp.PcpMapResponse)
        return Mapped("pcp", self.gateway[0], tcp.external_address, tcp.external_port, udp.external_port,
                       min(tcp.lifetime, udp.lifetime))

    def _pcp_answer(self, proto: natpmp.Proto) -> Callable[[bytes], natpmp.PcpMapResponse | None]:
        def match(data: bytes) -> natpmp.PcpMapResponse | None:
            response = natpmp.parse_pcp_response(data)
            if response.nonce is None:  # a header-only error: it answers the request in flight
                return response
            if (response.nonce, response.protocol, response.internal_port) != (self._nonces[proto], proto, self.port):
                return None
            return response
        return match

    async def _map_natpmp(self, transport: asyncio.DatagramTransport, endpoint: Datagrams, lease: int) -> Mapped:
        address = natpmp.check(await self._transact(transport, endpoint, natpmp.external_address_request(),
                                                    _natpmp_external_address))
        for proto in PROTOCOLS:
            before = self._mapped.get(proto)
            request = natpmp.map_request(proto, self.port, lease,
                                         external_port=before.external_port if before else self.port)
            self._requested.add(proto)
            self._mapped[proto] = natpmp.check(
                await self._transact(transport, endpoint, request, self._natpmp_answer(proto)))
        tcp, udp = self._mapped["tcp"], self._mapped["udp"]
        assert isinstance(tcp, natpmp.MapResponse) and isinstance(udp, natpmp.MapResponse)
        return Mapped("natpmp", self.gateway[0], address.address, tcp.external_port, udp.external_port,
                       min(tcp.lifetime, udp.lifetime))

    def _natpmp_answer(self, proto: natpmp.Proto) -> Callable[[bytes], natpmp.MapResponse | None]:
        def match(data: bytes) -> natpmp.MapResponse | None:
            response = natpmp.parse_response(data)
            if not isinstance(response, natpmp.MapResponse) or response.protocol != proto:
                return None
            if response.internal_port not in (None, self.port):
                return None
            return response
        return match

    async def _transact(self, transport: asyncio.DatagramTransport, endpoint: Datagrams, request: bytes,
                        match: Callable[[bytes], _T | None]) -> _T:
        """Send ``request`` until ``match`` accepts an answer (RFC 6886 §3.1 timing), within the timeout.

        ``match`` returns None for a datagram that answers something else; a malformed one is
        skipped too, and named if nothing better came."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        wait = _FIRST_RETRANSMIT
        problem = ""
        while loop.time() < deadline:
            transport.sendto(request)
            resend_at = min(deadline, loop.time() + wait)
            wait *= 2
            while (item := await next_item(endpoint.queue, resend_at - loop.time())) is not None:
                if isinstance(item, OSError):
                    raise GatewayUnreachable(f"nothing answers NAT-PMP or PCP at {where(*self.gateway)} "
                                             f"({item.strerror or item})")
                self._heard = True
                try:
                    answer = match(item[0])
                except MalformedResponse as exc:
                    problem = f"; it sent only invalid answers ({exc})"
                    continue
                if answer is not None:
                    return answer
        raise GatewayTimeout(f"gateway {where(*self.gateway)} did not answer within {self.timeout:g} s{problem}")

    async def unmap(self) -> None:
        """Remove every mapping we asked for (lifetime 0); best effort, each try bounded."""
        if not self._requested:
            return
        try:
            transport, endpoint = await self._open()
        except PortMapError as exc:
            log.info("port mapping: cannot remove the %s mappings: %s", self.label, exc)
            return
        try:
            client = self.local or transport.get_extra_info("sockname")[0]
            for proto in sorted(self._requested):
                before = self._mapped.get(proto)
                if self.method == "pcp":
                    request = natpmp.pcp_map_request(
                        nonce=self._nonces[proto], protocol=proto, internal_port=self.port, client_address=client,
                        lifetime=0, external_port=before.external_port if before else 0)
                    answer: Callable[[bytes], Any] = self._pcp_answer(proto)
                else:
                    request = natpmp.map_request(proto, self.port, 0)
                    answer = self._natpmp_answer(proto)
                if not self._heard:  # a silent gateway: say it once, wait for nothing
                    transport.sendto(request)
                    continue
                try:
                    natpmp.check(await self._transact(transport, endpoint, request, answer))
                except (GatewayTimeout, GatewayUnreachable) as exc:
                    log.info("port mapping: cannot remove the %s mappings: %s", self.label, exc)
                    return  # the gateway is gone: the mappings expire with their lease
                except PortMapError as exc:
                    log.info("port mapping: removing the %s %s mapping: %s", self.label, proto.upper(), exc)
                self._requested.discard(proto)
                self._mapped.pop(proto, None)
        finally:
            transport.close()


def _natpmp_external_address(data: bytes) -> natpmp.ExternalAddressResponse | None:
    response = natpmp.parse_response(data)
    return response if isinstance(response, natpmp.ExternalAddressResponse) else None
