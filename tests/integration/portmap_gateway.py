"""A fake Internet gateway on 127.0.0.1 for the port mapping tests.

It answers SSDP M-SEARCH sent to its UDP port, serves a device description and a SOAP control
endpoint over HTTP, and runs a PCP/NAT-PMP server on another UDP port. Every request is recorded
(``calls``) and live mappings are kept per method (``mappings``), so a test can see what the
mapper really asked for. Written from RFC 6886, RFC 6887 and the UPnP IGD specs with struct and
ElementTree only: nothing here comes from ``torrent.portmap``, so the two check each other.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import struct
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

LOCAL = "127.0.0.1"
EXTERNAL_ADDRESS = "203.0.113.7"  # TEST-NET-3: never routed
WANIP1 = "urn:schemas-upnp-org:service:WANIPConnection:1"
WANIP2 = "urn:schemas-upnp-org:service:WANIPConnection:2"
IGD1 = "urn:schemas-upnp-org:device:InternetGatewayDevice:1"
UPNP_ERRORS = {606: "Action not authorized", 714: "NoSuchEntryInArray", 718: "ConflictInMappingEntry",
               725: "OnlyPermanentLeasesSupported"}


@dataclass
class Call:
    method: str  # "upnp", "natpmp", "pcp", or "ssdp"
    action: str  # "search", "add", "delete", "external-address", "refused", "unsupported-version"
    protocol: str | None = None  # "tcp" / "udp"
    internal_port: int | None = None
    external_port: int | None = None
    lease: int | None = None
    client: str | None = None  # NewInternalClient / PCP client address
    nonce: bytes | None = None
    detail: dict[str, str] = field(default_factory=dict)


class FakeGateway:
    """``natpmp``: "pcp" (PCP and NAT-PMP), "natpmp" (NAT-PMP only: PCP gets 'unsupported
    version') or None (the port is open but nothing answers). ``silent``: answer nothing at all.
    ``location_host`` and ``url_base``: the hosts named by the SSDP answer and the description."""

    def __init__(self, *, upnp: bool = True, natpmp: str | None = "pcp", silent: bool = False,
                 soap_fault: int | None = None, natpmp_result: int = 0, permanent_only: bool = False,
                 grant_lifetime: int | None = None, location_host: str | None = None,
                 service_type: str = WANIP1, url_base: str | None = None, chunked: bool = False,
                 junk_first: bool = False) -> None:
        self.upnp = upnp
        self.natpmp = natpmp
        self.silent = silent
        self.soap_fault = soap_fault
        self.natpmp_result = natpmp_result
        self.permanent_only = permanent_only
        self.grant_lifetime = grant_lifetime
        self.location_host = location_host
        self.service_type = service_type
        self.url_base = url_base
        self.chunked = chunked
        self.junk_first = junk_first
        self.calls: list[Call] = []
        self.mappings: dict[str, dict[tuple[str, int], Call]] = {"upnp": {}, "natpmp": {}, "pcp": {}}
        self.http_requests: list[str] = []
        self.problems: list[str] = []  # requests that broke the specs
        self.epoch_start = 0.0
        self._ssdp: asyncio.DatagramTransport | None = None
        self._pmp: asyncio.DatagramTransport | None = None
        self._http: asyncio.Server | None = None

    # ---- lifecycle ----

    async def start(self) -> FakeGateway:
        loop = asyncio.get_running_loop()
        self.epoch_start = loop.time()
        self._ssdp, _ = await loop.create_datagram_endpoint(lambda: _Udp(self._on_ssdp), local_addr=(LOCAL, 0))
        self._pmp, _ = await loop.create_datagram_endpoint(lambda: _Udp(self._on_pmp), local_addr=(LOCAL, 0))
        self._http = await asyncio.start_server(self._on_http, LOCAL, 0)
        return self

    async def close(self) -> None:
        for transport in (self._ssdp, self._pmp):
            if transport is not None:
                transport.close()
        if self._http is not None:
            self._http.close()
            await self._http.wait_closed()

    @property
    def ssdp_address(self) -> tuple[str, int]:
        assert self._ssdp is not None
        return self._ssdp.get_extra_info("sockname")[:2]

    @property
    def natpmp_address(self) -> tuple[str, int]:
        assert self._pmp is not None
        return self._pmp.get_extra_info("sockname")[:2]

    @property
    def http_port(self) -> int:
        assert self._http is not None
        return self._http.sockets[0].getsockname()[1]

    def of(self, method: str, action: str) -> list[Call]:
        return [c for c in self.calls if c.method == method and c.action == action]

    def _epoch(self) -> int:
        return int(asyncio.get_running_loop().time() - self.epoch_start)

    # ---- SSDP ----

    def _on_ssdp(self, data: bytes, addr: tuple[Any, ...], reply: Callable[[bytes], None]) -> None:
        text = data.decode("latin-1")
        lines = text.split("\r\n")
        pairs = (line.partition(":") for line in lines[1:] if ":" in line)
        headers = {name.strip().upper(): value.strip() for name, _, value in pairs}
        self.calls.append(Call("ssdp", "search", detail=headers))
        well_formed = lines[0] == "M-SEARCH * HTTP/1.1" and text.endswith("\r\n\r\n")
        if not well_formed or headers.get("MAN") != '"ssdp:discover"':
            self.problems.append(f"bad M-SEARCH {text!r}")
            return
        if self.silent or not self.upnp:
            return
        st = headers.get("ST", "")
        if st not in (IGD1, WANIP1):
            return  # answers a v1 search, as v1 devices do
        host = self.location_host or LOCAL
        reply((
            "HTTP/1.1 200 OK\r\n"
            "CACHE-CONTROL: max-age=120\r\n"
            f"ST: {st}\r\n"
            f"USN: uuid:fake-gateway::{st}\r\n"
            "EXT:\r\n"
            "SERVER: Fake/1.0 UPnP/1.1 FakeGateway/1.0\r\n"
            f"Location: http://{host}:{self.http_port}/rootDesc.xml\r\n"
            "\r\n"
        ).encode())

    # ---- HTTP: description and SOAP ----

    async def _on_http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines if h)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.http_requests.append(request_line)
            method, target, _ = request_line.split(" ")
            if method == "GET" and target == "/rootDesc.xml":
                status, payload = 200, self._description()
            elif method == "POST" and target == "/ctl/IPConn":
                status, payload = self._soap(headers, body)
            else:
                status, payload = 404, b"not found"
            writer.write(self._response(status, payload))
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def _response(self, status: int, payload: bytes) -> bytes:
        reason = {200: "OK", 404: "Not Found", 500: "Internal Server Error"}[status]
        head = f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/xml; charset=\"utf-8\"\r\nConnection: close\r\n"
        if self.chunked:
            chunks = b"".join(b"%x\r\n%s\r\n" % (len(payload[i:i + 100]), payload[i:i + 100])
                              for i in range(0, len(payload), 100))
            return (head + "Transfer-Encoding: chunked\r\n\r\n").encode() + chunks + b"0\r\n\r\n"
        return (head + f"Content-Length: {len(payload)}\r\n\r\n").encode() + payload

    def _description(self) -> bytes:
        base = f"<URLBase>http://{self.url_base}:{self.http_port}/</URLBase>" if self.url_base else ""
        control = "ctl/IPConn" if self.url_base else "/ctl/IPConn"
        return f"""<?xml version="1.0"?>
<root xmlns="urn:schemas-upnp-org:device-1-0">
  <specVersion><major>1</major><minor>0</minor></specVersion>{base}
  <device>
    <deviceType>{IGD1}</deviceType>
    <friendlyName>Fake gateway</friendlyName>
    <serviceList><service>
      <serviceType>urn:schemas-upnp-org:service:Layer3Forwarding:1</serviceType>
      <controlURL>/ctl/L3F</controlURL>
    </service></serviceList>
    <deviceList><device>
      <deviceType>urn:schemas-upnp-org:device:WANDevice:1</deviceType>
      <deviceList><device>
        <deviceType>urn:schemas-upnp-org:device:WANConnectionDevice:1</deviceType>
        <serviceList><service>
          <serviceType>{self.service_type}</serviceType>
          <serviceId>urn:upnp-org:serviceId:WANIPConn1</serviceId>
          <controlURL>{control}</controlURL>
          <eventSubURL>/evt/IPConn</eventSubURL>
          <SCPDURL>/WANIPCn.xml</SCPDURL>
        </service></serviceList>
      </device></deviceList>
    </device></deviceList>
  </device>
</root>
""".encode()

    def _soap(self, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        envelope = ET.fromstring(body)
        element = next(iter(envelope.find("{http://schemas.xmlsoap.org/soap/envelope/}Body")))  # type: ignore[arg-type]
        namespace, _, action = element.tag[1:].partition("}")
        args = {child.tag: child.text or "" for child in element}
        if headers.get("soapaction") != f'"{self.service_type}#{action}"' or namespace != self.service_type:
            self.problems.append(f"SOAPAction {headers.get('soapaction')!r} for {element.tag}")
        if not headers.get("content-type", "").startswith("text/xml"):
            self.problems.append(f"Content-Type {headers.get('content-type')!r}")
        if action == "GetExternalIPAddress":
            self.calls.append(Call("upnp", "external-address"))
            return 200, _soap_ok(self.service_type, action, f"<NewExternalIPAddress>{EXTERNAL_ADDRESS}"
                                                            "</NewExternalIPAddress>")
        protocol = args.get("NewProtocol", "").lower()
        port = int(args.get("NewExternalPort", "0"))
        if action == "AddPortMapping":
            order = ["NewRemoteHost", "NewExternalPort", "NewProtocol", "NewInternalPort", "NewInternalClient",
                     "NewEnabled", "NewPortMappingDescription", "NewLeaseDuration"]
            if list(args) != order:
                self.problems.append(f"AddPortMapping arguments {list(args)}")
            call = Call("upnp", "add", protocol, int(args["NewInternalPort"]), port, int(args["NewLeaseDuration"]),
                         args["NewInternalClient"], detail=args)
            self.calls.append(call)
            if self.soap_fault is not None:
                return 500, _soap_fault(self.soap_fault)
            if self.permanent_only and call.lease:
                return 500, _soap_fault(725)
            self.mappings["upnp"][(protocol, port)] = call
            return 200, _soap_ok(self.service_type, action, "")
        if action == "DeletePortMapping":
            self.calls.append(Call("upnp", "delete", protocol, None, port))
            if self.mappings["upnp"].pop((protocol, port), None) is None:
                return 500, _soap_fault(714)
            return 200, _soap_ok(self.service_type, action, "")
        return 500, _soap_fault(401)

    # ---- PCP and NAT-PMP ----

    def _on_pmp(self, data: bytes, addr: tuple[Any, ...], reply: Callable[[bytes], None]) -> None:
        if self.silent or self.natpmp is None or not data:
            return
        if self.junk_first:  # a garbage datagram and a stale answer first: the client must skip both
            reply(b"\x02\x81junk")
            if data[0] == 2 and len(data) == 60:
                reply(data[:1] + bytes([0x81, 0, 0]) + bytes(20) + os.urandom(12) + data[36:])
        if data[0] == 2:
            if self.natpmp == "natpmp":  # RFC 6886 §3.5: unsupported version, with a NAT-PMP header
                self.calls.append(Call("pcp", "unsupported-version"))
                reply(struct.pack(">BBHI", 0, 128 + (data[1] & 0x7F), 1, self._epoch()))
            else:
                self._pcp(data, addr, reply)
        elif data[0] == 0:
            self._natpmp(data, reply)

    def _natpmp(self, data: bytes, reply: Callable[[bytes], None]) -> None:
        opcode = data[1]
        if opcode == 0 and len(data) == 2:
            self.calls.append(Call("natpmp", "external-address"))
            reply(struct.pack(">BBHI", 0, 128, 0, self._epoch()) + ipaddress.IPv4Address(EXTERNAL_ADDRESS).packed)
            return
        if opcode not in (1, 2) or len(data) != 12:
            self.problems.append(f"bad NAT-PMP request {data.hex()}")
            return
        _, _, reserved, internal, external, lifetime = struct.unpack(">BBHHHI", data)
        protocol = "udp" if opcode == 1 else "tcp"
        if reserved:
            self.problems.append("NAT-PMP reserved field is not zero")
        if self.natpmp_result:
            self.calls.append(Call("natpmp", "refused", protocol, internal, external, lifetime))
            reply(struct.pack(">BBHIHHI", 0, 128 + opcode, self.natpmp_result, self._epoch(), internal, 0, 0))
            return
        if lifetime == 0:
            self.calls.append(Call("natpmp", "delete", protocol, internal, external, 0))
            table = self.mappings["natpmp"]
            for key in [k for k, c in table.items() if k[0] == protocol and c.internal_port == internal]:
                del table[key]
            reply(struct.pack(">BBHIHHI", 0, 128 + opcode, 0, self._epoch(), internal, 0, 0))
            return
        granted = min(lifetime, self.grant_lifetime or lifetime)
        given = external or internal
        call = Call("natpmp", "add", protocol, internal, given, granted)
        self.calls.append(call)
        self.mappings["natpmp"][(protocol, given)] = call
        reply(struct.pack(">BBHIHHI", 0, 128 + opcode, 0, self._epoch(), internal, given, granted))

    def _pcp(self, data: bytes, addr: tuple[Any, ...], reply: Callable[[bytes], None]) -> None:
        if len(data) != 60 or data[1] != 1:
            self.problems.append(f"bad PCP request {data.hex()}")
            return
        _, _, _, lifetime, client = struct.unpack_from(">BBHI16s", data)
        nonce, number, _, internal, external, _ = struct.unpack_from(">12sB3sHH16s", data, 24)
        protocol = {6: "tcp", 17: "udp"}[number]
        client_ip = ipaddress.IPv6Address(client).ipv4_mapped
        if str(client_ip) != addr[0]:  # RFC 6887 §8.3: ADDRESS_MISMATCH, the request copied back
            self.calls.append(Call("pcp", "refused", protocol, internal, external, lifetime, str(client_ip)))
            reply(struct.pack(">BBBBII12s", 2, 0x81, 0, 12, 30, self._epoch(), bytes(12)) + data[24:])
            return
        result = self.natpmp_result  # 2 is "not authorized" in both protocols
        given = external or internal
        if result:
            self.calls.append(Call("pcp", "refused", protocol, internal, external, lifetime, str(client_ip), nonce))
            granted = 30
        elif lifetime == 0:
            self.calls.append(Call("pcp", "delete", protocol, internal, external, 0, str(client_ip), nonce))
            for key in [k for k, c in self.mappings["pcp"].items() if c.nonce == nonce]:
                del self.mappings["pcp"][key]
            granted, given = 0, 0
        else:
            granted = min(lifetime, self.grant_lifetime or lifetime)
            call = Call("pcp", "add", protocol, internal, given, granted, str(client_ip), nonce)
            self.calls.append(call)
            self.mappings["pcp"][(protocol, given)] = call
        mapped = b"\0" * 10 + b"\xff\xff" + ipaddress.IPv4Address(EXTERNAL_ADDRESS).packed
        reply(struct.pack(">BBBBII12s", 2, 0x81, 0, result, granted, self._epoch(), bytes(12))
              + struct.pack(">12sB3sHH16s", nonce, number, bytes(3), internal, given, mapped))


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, handler: Callable[[bytes, tuple[Any, ...], Callable[[bytes], None]], None]) -> None:
        self.handler = handler
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        assert self.transport is not None
        transport = self.transport
        self.handler(data, addr, lambda reply: transport.sendto(reply, addr))


def _soap_ok(service: str, action: str, args: str) -> bytes:
    return (f'<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
            f's:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>'
            f'<u:{action}Response xmlns:u="{service}">{args}</u:{action}Response></s:Body></s:Envelope>').encode()


def _soap_fault(code: int) -> bytes:
    return (f'<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
            f's:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body><s:Fault>'
            f'<faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail>'
            f'<UPnPError xmlns="urn:schemas-upnp-org:control-1-0"><errorCode>{code}</errorCode>'
            f'<errorDescription>{UPNP_ERRORS.get(code, "Invalid Action")}</errorDescription></UPnPError>'
            f'</detail></s:Fault></s:Body></s:Envelope>').encode()
