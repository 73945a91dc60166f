"""UPnP Internet Gateway Device port mapping, sans-IO: SSDP, the device description, SOAP, HTTP.

The steps, each a function here and a socket in ``mapper``:

1. SSDP (UDP, HTTP-like): ``msearch`` asks for an IGD; ``parse_ssdp_response`` reads its
   ``LOCATION``, the URL of the device description.
2. ``parse_description`` finds the WAN connection services in that XML and resolves each
   ``controlURL`` against ``URLBase`` or the ``LOCATION``.
3. SOAP over HTTP/1.1 to the control URL: ``add_port_mapping``, ``delete_port_mapping``,
   ``get_external_ip_address`` build the request; ``parse_soap_response`` reads the result or
   turns a ``UPnPError`` fault into ``UpnpError`` (718: the port is someone else's; 725: the
   gateway wants a lease of 0).

The XML comes from any device on the LAN, so it is held to a size cap before parsing, must be
UTF-8, and may not declare a DOCTYPE or entities (no entity expansion bombs). HTTP responses
come through ``HttpResponseReader``: Content-Length, chunked, or read-until-close bodies, capped.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urljoin, urlsplit
from xml.sax.saxutils import escape

from torrent.portmap.errors import GatewayRefused, MalformedResponse, PortMapError

__all__ = [
    "CONFLICT_IN_MAPPING_ENTRY",
    "MAX_DOCUMENT",
    "MAX_HEAD",
    "NO_SUCH_ENTRY_IN_ARRAY",
    "ONLY_PERMANENT_LEASES_SUPPORTED",
    "SEARCH_TARGETS",
    "SSDP_ADDRESS",
    "WAN_SERVICES",
    "HttpResponse",
    "HttpResponseReader",
    "Proto",
    "SoapRequest",
    "SsdpResponse",
    "UpnpError",
    "WanService",
    "add_port_mapping",
    "delete_port_mapping",
    "get_external_ip_address",
    "http_address",
    "http_get",
    "msearch",
    "parse_description",
    "parse_soap_response",
    "parse_ssdp_response",
]

Proto = Literal["tcp", "udp"]

SSDP_ADDRESS = ("239.255.255.250", 1900)  # UPnP Device Architecture 1.1 §1.1.2
MAX_DOCUMENT = 64 * 1024  # description or SOAP body: a real IGD's is 2-10 KiB
MAX_HEAD = 8 * 1024  # an SSDP datagram, an HTTP status line and headers

# What M-SEARCH asks for: IGD v1 devices do not answer a search for v2 and some v2 devices
# answer only for v2; some answer only for the service.
SEARCH_TARGETS = (
    "urn:schemas-upnp-org:device:InternetGatewayDevice:1",
    "urn:schemas-upnp-org:device:InternetGatewayDevice:2",
    "urn:schemas-upnp-org:service:WANIPConnection:1",
)
# Services that map ports, best first (WANIPConnection:2 keeps v1's actions).
WAN_SERVICES = (
    "urn:schemas-upnp-org:service:WANIPConnection:2",
    "urn:schemas-upnp-org:service:WANIPConnection:1",
    "urn:schemas-upnp-org:service:WANPPPConnection:1",
)
USER_AGENT = "Python UPnP/1.1 torrent"

# ---- errors (WANIPConnection:1 §2.4, :2 §2.5; UPnP Device Architecture §3.2.2) -------------------

NO_SUCH_ENTRY_IN_ARRAY = 714
CONFLICT_IN_MAPPING_ENTRY = 718
ONLY_PERMANENT_LEASES_SUPPORTED = 725
_UPNP_MESSAGES = {
    401: "the gateway does not offer this action",
    402: "invalid arguments",
    501: "the action failed on the gateway",
    606: "not authorized: UPnP port mapping is off or restricted in the gateway's settings",
    714: "no such port mapping",
    715: "the gateway does not accept a wildcard remote host",
    716: "the gateway does not accept a wildcard external port",
    718: "the external port is already mapped to another device",
    724: "the gateway needs the internal and external ports to be the same",
    725: "the gateway only takes permanent leases, of 0 seconds",
    726: "the gateway only supports a wildcard remote host",
    727: "the gateway only supports a wildcard external port",
    728: "the gateway's port mapping table is full",
    729: "the port is taken by another mapping mechanism on the gateway",
    732: "the gateway does not accept a wildcard internal port",
}


class UpnpError(GatewayRefused):
    """A SOAP fault: the gateway refused ``action`` with UPnP error ``code``."""

    def __init__(self, action: str, code: int, description: str) -> None:
        self.action = action
        self.description = description
        known = _UPNP_MESSAGES.get(code)
        text = " ".join(part for part in (f"UPnP error {code}", description) if part)
        super().__init__(f"gateway refused {action}: {text}" + (f" ({known})" if known else ""), code=code)


# ---- HTTP heads (SSDP and HTTP share them) ---------------------------------------------------------

_STATUS_LINE = re.compile(r"HTTP/1\.[01] +(\d{3})(?: +(.*))?")


def _parse_head(text: str, what: str) -> tuple[int, str, dict[str, str]]:
    """Status line and headers (names lower-cased, the first of repeated names kept)."""
    lines = text.replace("\r\n", "\n").split("\n")
    match = _STATUS_LINE.fullmatch(lines[0].strip())
    if match is None:
        raise MalformedResponse(f"{what} does not start with an HTTP status line ({_show(lines[0])})")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise MalformedResponse(f"{what} has a malformed header line ({_show(line)})")
        headers.setdefault(name.strip().lower(), value.strip())
    return int(match.group(1)), (match.group(2) or "").strip(), headers


def _show(text: str, limit: int = 60) -> str:
    """Text from the network, safe to put in a one-line message."""
    clean = "".join(c if c.isprintable() else "?" for c in text)
    return repr(clean if len(clean) <= limit else clean[:limit] + "…")


# ---- SSDP (UPnP Device Architecture 1.1 §1.3) ------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SsdpResponse:
    location: str  # URL of the device description
    search_target: str | None  # ST: what the device says it is
    usn: str | None
    server: str | None


def msearch(search_target: str, *, host: str = SSDP_ADDRESS[0], port: int = SSDP_ADDRESS[1],
            mx: int | None = 2) -> bytes:
    """An M-SEARCH datagram. ``mx`` (seconds a device may wait before answering) is for multicast;
    a unicast search leaves it out (``mx=None``) and devices answer at once."""
    lines = [
        "M-SEARCH * HTTP/1.1",
        f"HOST: {_host_port(host, port)}",
        'MAN: "ssdp:discover"',
    ]
    if mx is not None:
        lines.append(f"MX: {mx}")
    lines += [f"ST: {search_target}", f"USER-AGENT: {USER_AGENT}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def parse_ssdp_response(datagram: bytes) -> SsdpResponse:
    """A unicast answer to M-SEARCH: ``HTTP/1.1 200 OK`` and a ``LOCATION`` header."""
    if len(datagram) > MAX_HEAD:
        raise MalformedResponse(f"SSDP response of {len(datagram)} bytes is over {MAX_HEAD}")
    status, reason, headers = _parse_head(datagram.decode("latin-1"), "SSDP response")
    if status != 200:
        raise MalformedResponse(f"SSDP response has status {status} {_show(reason)}")
    location = headers.get("location")
    if not location:
        raise MalformedResponse("SSDP response has no LOCATION header")
    http_address(location)  # an http:// URL with a host, or MalformedResponse
    return SsdpResponse(location, headers.get("st"), headers.get("usn"), headers.get("server"))


# ---- URLs and requests -----------------------------------------------------------------------------

def http_address(url: str) -> tuple[str, int]:
    """Host and port of an ``http://`` URL (devices serve UPnP over plain HTTP only)."""
    try:
        parts = urlsplit(url)
        port = parts.port or 80
    except ValueError:
        raise MalformedResponse(f"invalid URL {_show(url)}") from None
    if parts.scheme.lower() != "http" or not parts.hostname:
        raise MalformedResponse(f"{_show(url)} is not an http:// URL with a host")
    return parts.hostname, port


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _request_head(method: str, url: str, headers: Sequence[tuple[str, str]]) -> bytes:
    host, port = http_address(url)
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    target = "".join(chr(b) if 0x21 <= b <= 0x7E else f"%{b:02X}" for b in target.encode("utf-8", "replace"))
    lines = [f"{method} {target} HTTP/1.1", f"Host: {_host_port(host, port)}", *(f"{k}: {v}" for k, v in headers),
             f"User-Agent: {USER_AGENT}", "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def http_get(url: str) -> bytes:
    """The GET request for a device description."""
    return _request_head("GET", url, ())


# ---- HTTP responses -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    reason: str
    headers: Mapping[str, str]  # names lower-cased
    body: bytes


class HttpResponseReader:
    """One HTTP/1.1 response, fed as it arrives: ``feed`` returns it once complete (else None),
    ``feed_eof`` when the peer closed. Head and body are capped; going over is an error."""

    def __init__(self, max_body: int = MAX_DOCUMENT) -> None:
        self.max_body = max_body
        self._buffer = bytearray()
        self._head: tuple[int, str, dict[str, str]] | None = None
        self._length: int | None = None  # Content-Length
        self._chunked = False

    def feed(self, data: bytes) -> HttpResponse | None:
        self._buffer += data
        return self._parse(eof=False)

    def feed_eof(self) -> HttpResponse:
        response = self._parse(eof=True)
        assert response is not None  # at end of file, _parse returns or raises
        return response

    def _parse(self, *, eof: bool) -> HttpResponse | None:
        if self._head is None and not self._parse_head(eof):
            return None
        assert self._head is not None
        status, reason, headers = self._head
        if status in (204, 304) or 100 <= status < 200:
            body: bytes | None = b""
        elif self._chunked:
            if len(self._buffer) > self.max_body + MAX_HEAD:
                raise MalformedResponse(f"HTTP response body is over {self.max_body // 1024} KiB")
            body = _dechunk(self._buffer, self.max_body)
        elif self._length is not None:
            body = bytes(self._buffer[: self._length]) if len(self._buffer) >= self._length else None
            if body is None and eof:
                raise MalformedResponse(f"connection closed after {len(self._buffer)} of {self._length} body bytes")
        else:
            if len(self._buffer) > self.max_body:
                raise MalformedResponse(f"HTTP response body is over {self.max_body // 1024} KiB")
            body = bytes(self._buffer) if eof else None
        if body is None:
            if eof:
                raise MalformedResponse("connection closed in the middle of a chunked body")
            return None
        return HttpResponse(status, reason, headers, body)

    def _parse_head(self, eof: bool) -> bool:
        end, gap = self._buffer.find(b"\r\n\r\n"), 4
        if end < 0:
            end, gap = self._buffer.find(b"\n\n"), 2
        if end < 0 or end > MAX_HEAD:
            if len(self._buffer) > MAX_HEAD:
                raise MalformedResponse(f"HTTP response head is over {MAX_HEAD // 1024} KiB")
            if eof:
                raise MalformedResponse("connection closed before a complete HTTP response"
                                        if self._buffer else "connection closed without an HTTP response")
            return False
        self._head = _parse_head(self._buffer[:end].decode("latin-1"), "HTTP response")
        del self._buffer[: end + gap]
        headers = self._head[2]
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self._chunked = True
        elif "content-length" in headers:
            value = headers["content-length"]
            if not value.isdigit():
                raise MalformedResponse(f"HTTP Content-Length {_show(value)} is not a number")
            if int(value) > self.max_body:
                raise MalformedResponse(f"HTTP response body of {value} bytes is over {self.max_body // 1024} KiB")
            self._length = int(value)
        return True


_HEX = re.compile(rb"[0-9A-Fa-f]{1,8}")


def _dechunk(buffer: bytearray, limit: int) -> bytes | None:
    """The body of a complete chunked encoding at the start of ``buffer``; None if incomplete."""
    body = bytearray()
    pos = 0
    while True:
        eol = buffer.find(b"\n", pos)
        if eol < 0:
            return None
        size_text = bytes(buffer[pos:eol]).split(b";", 1)[0].strip()
        if not _HEX.fullmatch(size_text):
            raise MalformedResponse(f"bad HTTP chunk size {_show(size_text.decode('latin-1'))}")
        size = int(size_text, 16)
        if len(body) + size > limit:
            raise MalformedResponse(f"HTTP response body is over {limit // 1024} KiB")
        pos = eol + 1
        if size == 0:
            break
        if len(buffer) < pos + size:
            return None
        body += buffer[pos : pos + size]
        pos += size
        if buffer.startswith(b"\r\n", pos):
            pos += 2
        elif buffer.startswith(b"\n", pos):
            pos += 1
        elif len(buffer) - pos < 2:
            return None
        else:
            raise MalformedResponse("HTTP chunk is not followed by a line end")
    while True:  # trailer lines up to an empty one
        eol = buffer.find(b"\n", pos)
        if eol < 0:
            return None
        line, pos = buffer[pos:eol].strip(), eol + 1
        if not line:
            return bytes(body)


# ---- XML ---------------------------------------------------------------------------------------------

# "<!" opens a comment, a CDATA section, or a declaration (DOCTYPE, ENTITY...): only the first two pass.
_DECLARATION = re.compile(r"<!(?!--|\[CDATA\[)")


def _parse_xml(document: bytes, what: str) -> ET.Element:
    if len(document) > MAX_DOCUMENT:
        raise MalformedResponse(f"{what} of {len(document)} bytes is over the {MAX_DOCUMENT // 1024} KiB limit")
    try:
        text = document.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise MalformedResponse(f"{what} is not UTF-8") from None
    if _DECLARATION.search(text):
        raise MalformedResponse(f"{what} declares a DOCTYPE or entities; refused")
    try:
        return ET.fromstring(text)
    except ET.ParseError as exc:
        raise MalformedResponse(f"{what} is not well-formed XML ({exc})") from None


def _local(tag: object) -> str:
    """An element's name without its namespace (devices disagree on namespaces and prefixes)."""
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def _child_text(element: ET.Element, name: str) -> str | None:
    for child in element:
        if _local(child.tag) == name:
            return (child.text or "").strip()
    return None


# ---- the device description (UPnP Device Architecture 1.1 §2.3) --------------------------------------

@dataclass(frozen=True, slots=True)
class WanService:
    service_type: str  # one of WAN_SERVICES
    control_url: str  # absolute http:// URL for SOAP


def parse_description(document: bytes, location: str) -> tuple[WanService, ...]:
    """The WAN connection services of the device at ``location``, best first; never empty."""
    root = _parse_xml(document, "device description")
    if _local(root.tag) != "root":
        raise MalformedResponse(f"device description's root element is {_show(_local(root.tag))}, not 'root'")
    base = _child_text(root, "URLBase") or location
    found: list[tuple[int, WanService]] = []
    for element in root.iter():
        if _local(element.tag) != "service":
            continue
        service_type = _child_text(element, "serviceType")
        if service_type not in WAN_SERVICES:
            continue
        control = _child_text(element, "controlURL")
        if not control:
            raise MalformedResponse(f"device description lists {service_type} without a controlURL")
        url = urljoin(base, control)
        http_address(url)
        found.append((WAN_SERVICES.index(service_type), WanService(service_type, url)))
    if not found:
        raise PortMapError(f"device at {location} is not an Internet gateway (no WANIPConnection or "
                           "WANPPPConnection service)")
    found.sort(key=lambda item: item[0])  # stable: document order among equals
    return tuple(service for _, service in found)


# ---- SOAP (UPnP Device Architecture 1.1 §3.2) --------------------------------------------------------

_ENVELOPE_NS = "http://schemas.xmlsoap.org/soap/envelope/"
_ENCODING = "http://schemas.xmlsoap.org/soap/encoding/"
_PROTOCOLS: dict[str, str] = {"tcp": "TCP", "udp": "UDP"}


@dataclass(frozen=True, slots=True)
class SoapRequest:
    url: str  # the service's control URL
    service_type: str
    action: str
    body: bytes

    @property
    def soap_action(self) -> str:
        """The ``SOAPAction`` header's value, quotes included."""
        return f'"{self.service_type}#{self.action}"'

    def http_request(self) -> bytes:
        """The whole POST: head and body."""
        head = _request_head("POST", self.url, (
            ("Content-Type", 'text/xml; charset="utf-8"'),
            ("SOAPAction", self.soap_action),
            ("Content-Length", str(len(self.body))),
        ))
        return head + self.body


def _soap(service: WanService, action: str, arguments: Sequence[tuple[str, str]]) -> SoapRequest:
    # Arguments in the order the service description lists them: some gateways insist.
    args = "".join(f"<{name}>{escape(value)}</{name}>" for name, value in arguments)
    body = (
        '<?xml version="1.0" encoding="utf-8"?>\r\n'
        f'<s:Envelope xmlns:s="{_ENVELOPE_NS}" s:encodingStyle="{_ENCODING}">'
        f'<s:Body><u:{action} xmlns:u="{escape(service.service_type)}">{args}</u:{action}></s:Body>'
        "</s:Envelope>\r\n"
    )
    return SoapRequest(service.control_url, service.service_type, action, body.encode("utf-8"))


def add_port_mapping(service: WanService, *, external_port: int, protocol: Proto, internal_port: int,
                     internal_client: str, lease: int, description: str) -> SoapRequest:
    """Map ``external_port`` on every remote host to ``internal_client:internal_port``;
    ``lease`` in seconds, 0 meaning until removed (the only lease some v1 gateways take)."""
    for port in (external_port, internal_port):
        if not 1 <= port <= 0xFFFF:
            raise ValueError(f"port {port} is out of range")
    if not 0 <= lease <= 0xFFFFFFFF:
        raise ValueError(f"lease {lease} is not a 32-bit count of seconds")
    return _soap(service, "AddPortMapping", (
        ("NewRemoteHost", ""),
        ("NewExternalPort", str(external_port)),
        ("NewProtocol", _protocol(protocol)),
        ("NewInternalPort", str(internal_port)),
        ("NewInternalClient", internal_client),
        ("NewEnabled", "1"),
        ("NewPortMappingDescription", "".join(c for c in description if c.isprintable())[:64]),
        ("NewLeaseDuration", str(lease)),
    ))


def delete_port_mapping(service: WanService, *, external_port: int, protocol: Proto) -> SoapRequest:
    if not 1 <= external_port <= 0xFFFF:
        raise ValueError(f"port {external_port} is out of range")
    return _soap(service, "DeletePortMapping", (
        ("NewRemoteHost", ""),
        ("NewExternalPort", str(external_port)),
        ("NewProtocol", _protocol(protocol)),
    ))


def get_external_ip_address(service: WanService) -> SoapRequest:
    """Answered with ``NewExternalIPAddress``."""
    return _soap(service, "GetExternalIPAddress", ())


def _protocol(protocol: str) -> str:
    try:
        return _PROTOCOLS[protocol]
    except KeyError:
        raise ValueError(f"protocol {protocol!r} is not 'tcp' or 'udp'") from None


def parse_soap_response(request: SoapRequest, response: HttpResponse) -> dict[str, str]:
    """The output arguments of a successful action by name; ``UpnpError`` for a SOAP fault."""
    action = request.action
    try:
        root = _parse_xml(response.body, f"{action} response") if response.body.strip() else None
    except MalformedResponse:
        if response.status == 200:
            raise
        root = None  # an error page: the status says enough
    if root is not None:
        for element in root.iter():
            name = _local(element.tag)
            if name == "UPnPError":
                code = _child_text(element, "errorCode") or ""
                if not code.isdigit():
                    raise MalformedResponse(f"{action} fault has error code {_show(code)}")
                description = _child_text(element, "errorDescription") or ""
                raise UpnpError(action, int(code), "".join(c for c in description if c.isprintable())[:100])
            if response.status == 200 and name == f"{action}Response":
                return {_local(child.tag): (child.text or "").strip() for child in element}
    if response.status == 200:
        raise MalformedResponse(f"{action} response has no {action}Response element")
    raise PortMapError(f"gateway answered {action} with HTTP {response.status} {_show(response.reason)}")
