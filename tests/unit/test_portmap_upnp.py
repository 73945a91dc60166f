"""UPnP IGD pieces, bytes only: SSDP M-SEARCH and its answers, device descriptions (including
hostile ones: DOCTYPE, entities, size, encoding), SOAP requests read back with ElementTree, SOAP
results and faults, and HTTP responses fed in every fragmentation."""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torrent.portmap.errors import GatewayRefused, MalformedResponse, PortMapError
from torrent.portmap.upnp import (
    MAX_DOCUMENT,
    HttpResponse,
    HttpResponseReader,
    SoapRequest,
    UpnpError,
    WanService,
    add_port_mapping,
    delete_port_mapping,
    get_external_ip_address,
    http_address,
    http_get,
    msearch,
    parse_description,
    parse_soap_response,
    parse_ssdp_response,
)

IGD1 = "urn:schemas-upnp-org:device:InternetGatewayDevice:1"
WANIP1 = "urn:schemas-upnp-org:service:WANIPConnection:1"
WANIP2 = "urn:schemas-upnp-org:service:WANIPConnection:2"
WANPPP1 = "urn:schemas-upnp-org:service:WANPPPConnection:1"
LOCATION = "http://192.168.1.1:5000/rootDesc.xml"
SERVICE = WanService(WANIP1, "http://192.168.1.1:5000/ctl/IPConn")
ENVELOPE = "{http://schemas.xmlsoap.org/soap/envelope/}"


# ---- SSDP ------------------------------------------------------------------------------------------

def test_msearch_multicast() -> None:
    assert msearch(IGD1) == (
        "M-SEARCH * HTTP/1.1\r\n"
        "HOST: 239.255.255.250:1900\r\n"
        'MAN: "ssdp:discover"\r\n'
        "MX: 2\r\n"
        f"ST: {IGD1}\r\n"
        "USER-AGENT: Python UPnP/1.1 torrent\r\n"
        "\r\n"
    ).encode()


def test_msearch_unicast_has_no_mx() -> None:
    data = msearch(WANIP1, host="192.168.1.1", port=1900, mx=None)
    assert b"HOST: 192.168.1.1:1900\r\n" in data and b"MX:" not in data and data.endswith(b"\r\n\r\n")
    assert b"HOST: [ff02::c]:1900\r\n" in msearch(IGD1, host="ff02::c")


def test_ssdp_response_headers_are_case_insensitive() -> None:
    data = (b"HTTP/1.1 200 OK\r\nCache-Control: max-age=120\r\nst: " + IGD1.encode() +
            b"\r\nUSN: uuid:1234::" + IGD1.encode() + b"\r\nEXT:\r\nServer: Linux UPnP/1.1 MiniUPnPd/2.3\r\n"
            b"Location:  http://192.168.1.1:5000/rootDesc.xml \r\n\r\n")
    answer = parse_ssdp_response(data)
    assert answer.location == LOCATION
    assert answer.search_target == IGD1
    assert answer.usn == f"uuid:1234::{IGD1}"
    assert answer.server == "Linux UPnP/1.1 MiniUPnPd/2.3"


def test_ssdp_response_with_bare_line_feeds() -> None:
    answer = parse_ssdp_response(b"HTTP/1.1 200 OK\nLOCATION: http://10.0.0.1/d.xml\n\n")
    assert (answer.location, answer.search_target) == ("http://10.0.0.1/d.xml", None)


@pytest.mark.parametrize(("data", "reason"), [
    (b"", "does not start with an HTTP status line"),
    (b"NOTIFY * HTTP/1.1\r\nLOCATION: http://10.0.0.1/\r\n\r\n", "status line"),
    (b"HTTP/1.1 404 Not Found\r\nLOCATION: http://10.0.0.1/\r\n\r\n", "status 404"),
    (b"HTTP/1.1 200 OK\r\nST: x\r\n\r\n", "no LOCATION"),
    (b"HTTP/1.1 200 OK\r\nLOCATION: https://10.0.0.1/d.xml\r\n\r\n", "not an http:// URL"),
    (b"HTTP/1.1 200 OK\r\nLOCATION: http:///d.xml\r\n\r\n", "not an http:// URL"),
    (b"HTTP/1.1 200 OK\r\nLOCATION: http://10.0.0.1:99999/\r\n\r\n", "invalid URL"),
    (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed header line"),
    (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 9000 + b"\r\n\r\n", "over 8192"),
])
def test_bad_ssdp_responses_are_refused(data: bytes, reason: str) -> None:
    with pytest.raises(MalformedResponse, match=reason):
        parse_ssdp_response(data)


@given(st.binary(max_size=300))
def test_any_datagram_parses_or_raises_a_port_map_error(data: bytes) -> None:
    try:
        parse_ssdp_response(data)
    except PortMapError:
        pass


# ---- device descriptions -----------------------------------------------------------------------------

def description(*services: tuple[str, str], url_base: str = "", prolog: str = '<?xml version="1.0"?>\n') -> bytes:
    listed = "".join(f"<service><serviceType>{kind}</serviceType><serviceId>urn:upnp-org:serviceId:x</serviceId>"
                     f"<controlURL>{control}</controlURL><eventSubURL>/evt</eventSubURL></service>"
                     for kind, control in services)
    base = f"<URLBase>{url_base}</URLBase>" if url_base else ""
    return f"""{prolog}<root xmlns="urn:schemas-upnp-org:device-1-0"><specVersion><major>1</major></specVersion>{base}
<device><deviceType>{IGD1}</deviceType><serviceList><service>
<serviceType>urn:schemas-upnp-org:service:Layer3Forwarding:1</serviceType><controlURL>/l3f</controlURL>
</service></serviceList><deviceList><device><deviceType>urn:schemas-upnp-org:device:WANDevice:1</deviceType>
<deviceList><device><deviceType>urn:schemas-upnp-org:device:WANConnectionDevice:1</deviceType>
<serviceList>{listed}</serviceList></device></deviceList></device></deviceList></device></root>""".encode()


def test_the_wan_service_control_url_is_resolved_against_the_location() -> None:
    assert parse_description(description((WANIP1, "/ctl/IPConn")), LOCATION) == (SERVICE,)
    assert parse_description(description((WANIP1, "ctl/IPConn")), "http://192.168.1.1:5000/desc/root.xml") == (
        WanService(WANIP1, "http://192.168.1.1:5000/desc/ctl/IPConn"),)


def test_url_base_wins_over_the_location() -> None:
    found = parse_description(description((WANIP1, "ctl"), url_base="http://192.168.1.1:49000/igd/"), LOCATION)
    assert found == (WanService(WANIP1, "http://192.168.1.1:49000/igd/ctl"),)


def test_services_come_best_first() -> None:
    found = parse_description(description((WANPPP1, "/ppp"), (WANIP1, "/ip1"), (WANIP2, "/ip2")), LOCATION)
    assert [s.service_type for s in found] == [WANIP2, WANIP1, WANPPP1]
    assert found[0].control_url == "http://192.168.1.1:5000/ip2"


def test_prefixed_namespaces_a_bom_comments_and_cdata_are_fine() -> None:
    document = ('\ufeff<?xml version="1.0" encoding="utf-8"?><!-- a router --><d:root '
                'xmlns:d="urn:schemas-upnp-org:device-1-0"><d:device><d:serviceList><d:service>'
                f"<d:serviceType>{WANIP1}</d:serviceType><d:controlURL><![CDATA[/ctl?a=1&b=2]]></d:controlURL>"
                "</d:service></d:serviceList></d:device></d:root>").encode()
    assert parse_description(document, LOCATION) == (WanService(WANIP1, "http://192.168.1.1:5000/ctl?a=1&b=2"),)


def test_a_device_without_a_wan_service_is_not_a_gateway() -> None:
    with pytest.raises(PortMapError, match="is not an Internet gateway") as info:
        parse_description(description(), LOCATION)
    assert not isinstance(info.value, MalformedResponse)


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE root [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>
<root><device><serviceList><service><serviceType>&b;</serviceType></service></serviceList></device></root>"""


@pytest.mark.parametrize(("document", "reason"), [
    (BILLION_LAUGHS, "declares a DOCTYPE or entities"),
    (b'<?xml version="1.0"?><!doctype root SYSTEM "http://evil/x.dtd"><root/>', "DOCTYPE"),
    (b'<root><!ENTITY x "y"></root>', "DOCTYPE or entities"),
    (description((WANIP1, "/c")) + b"<!--" + b"x" * MAX_DOCUMENT + b"-->", "over the 64 KiB limit"),
    ("<root>caf\u00e9</root>".encode("latin-1"), "not UTF-8"),
    ("<root/>".encode("utf-16"), "not UTF-8"),
    (b"<root><device>", "not well-formed XML"),
    (b"", "not well-formed XML"),
    (b"<html><body>router login</body></html>", "root element is 'html'"),
    (description((WANIP1, "")), "without a controlURL"),
    (description((WANIP1, "ftp://192.168.1.1/ctl")), "not an http:// URL"),
])
def test_hostile_or_broken_descriptions_are_refused(document: bytes, reason: str) -> None:
    with pytest.raises(MalformedResponse, match=reason):
        parse_description(document, LOCATION)


@given(st.binary(max_size=200))
def test_any_document_parses_or_raises_a_port_map_error(data: bytes) -> None:
    try:
        parse_description(data, LOCATION)
    except PortMapError:
        pass


# ---- SOAP requests -----------------------------------------------------------------------------------

def read_back(request: SoapRequest) -> tuple[str, str, list[tuple[str, str]]]:
    """(namespace, action, arguments in order) of the request's body, by ElementTree."""
    body = ET.fromstring(request.body).find(f"{ENVELOPE}Body")
    assert body is not None and len(body) == 1
    namespace, _, action = body[0].tag[1:].partition("}")
    return namespace, action, [(child.tag, child.text or "") for child in body[0]]


def test_add_port_mapping() -> None:
    request = add_port_mapping(SERVICE, external_port=6881, protocol="tcp", internal_port=6882,
                               internal_client="192.168.1.20", lease=3600, description="torrent <&> \x00test")
    assert request.soap_action == f'"{WANIP1}#AddPortMapping"'
    assert read_back(request) == (WANIP1, "AddPortMapping", [
        ("NewRemoteHost", ""),
        ("NewExternalPort", "6881"),
        ("NewProtocol", "TCP"),
        ("NewInternalPort", "6882"),
        ("NewInternalClient", "192.168.1.20"),
        ("NewEnabled", "1"),
        ("NewPortMappingDescription", "torrent <&> test"),
        ("NewLeaseDuration", "3600"),
    ])


def test_the_http_request_carries_the_soap_action() -> None:
    request = delete_port_mapping(SERVICE, external_port=6881, protocol="udp")
    data = request.http_request()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /ctl/IPConn HTTP/1.1"
    assert "Host: 192.168.1.1:5000" in lines
    assert f'SOAPAction: "{WANIP1}#DeletePortMapping"' in lines
    assert 'Content-Type: text/xml; charset="utf-8"' in lines
    assert f"Content-Length: {len(body)}" in lines and body == request.body
    assert "Connection: close" in lines
    assert read_back(request)[2] == [("NewRemoteHost", ""), ("NewExternalPort", "6881"), ("NewProtocol", "UDP")]


def test_get_external_ip_address_has_no_arguments() -> None:
    request = get_external_ip_address(WanService(WANIP2, "http://10.0.0.1/c"))
    assert read_back(request) == (WANIP2, "GetExternalIPAddress", [])
    assert request.soap_action == f'"{WANIP2}#GetExternalIPAddress"'


@pytest.mark.parametrize("kwargs", [
    {"external_port": 0}, {"internal_port": 65536}, {"protocol": "sctp"}, {"lease": -1},
])
def test_add_port_mapping_refuses_bad_values(kwargs: dict[str, object]) -> None:
    values: dict[str, object] = {"external_port": 1, "protocol": "tcp", "internal_port": 1,
                                 "internal_client": "10.0.0.2", "lease": 0, "description": ""}
    values.update(kwargs)
    with pytest.raises(ValueError):
        add_port_mapping(SERVICE, **values)  # type: ignore[arg-type]


def test_http_get_and_addresses() -> None:
    assert http_get("http://192.168.1.1:5000/root Desc.xml?x=é") == (
        b"GET /root%20Desc.xml?x=%C3%A9 HTTP/1.1\r\nHost: 192.168.1.1:5000\r\n"
        b"User-Agent: Python UPnP/1.1 torrent\r\nConnection: close\r\n\r\n")
    assert http_get("http://10.0.0.1").startswith(b"GET / HTTP/1.1\r\nHost: 10.0.0.1:80\r\n")
    assert http_address("http://[fe80::1]:8080/x") == ("fe80::1", 8080)
    assert http_address("HTTP://10.0.0.1/x") == ("10.0.0.1", 80)


# ---- SOAP responses -----------------------------------------------------------------------------------

def soap(inner: str) -> bytes:
    return (f'<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
            f's:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>{inner}</s:Body></s:Envelope>'
            ).encode()


def fault(code: str, description: str = "") -> bytes:
    return soap("<s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail>"
                f'<UPnPError xmlns="urn:schemas-upnp-org:control-1-0"><errorCode>{code}</errorCode>'
                f"<errorDescription>{description}</errorDescription></UPnPError></detail></s:Fault>")


def answer(status: int, body: bytes, reason: str = "OK") -> HttpResponse:
    return HttpResponse(status, reason, {}, body)


def test_a_successful_answer_gives_the_output_arguments() -> None:
    request = get_external_ip_address(SERVICE)
    body = soap(f'<u:GetExternalIPAddressResponse xmlns:u="{WANIP1}"><NewExternalIPAddress> 198.51.100.9 '
                "</NewExternalIPAddress></u:GetExternalIPAddressResponse>")
    assert parse_soap_response(request, answer(200, body)) == {"NewExternalIPAddress": "198.51.100.9"}
    add = add_port_mapping(SERVICE, external_port=1, protocol="tcp", internal_port=1, internal_client="10.0.0.2",
                           lease=0, description="")
    assert parse_soap_response(add, answer(200, soap(f'<u:AddPortMappingResponse xmlns:u="{WANIP1}"/>'))) == {}


@pytest.mark.parametrize(("code", "description", "message"), [
    ("718", "ConflictInMappingEntry", (
        "gateway refused AddPortMapping: UPnP error 718 ConflictInMappingEntry "
        "(the external port is already mapped to another device)")),
    ("725", "OnlyPermanentLeasesSupported", (
        "gateway refused AddPortMapping: UPnP error 725 OnlyPermanentLeasesSupported "
        "(the gateway only takes permanent leases, of 0 seconds)")),
    ("606", "Action not authorized", (
        "gateway refused AddPortMapping: UPnP error 606 Action not authorized "
        "(not authorized: UPnP port mapping is off or restricted in the gateway's settings)")),
    ("799", "", "gateway refused AddPortMapping: UPnP error 799"),
    (" 501 ", "Action\nFailed", (
        "gateway refused AddPortMapping: UPnP error 501 ActionFailed (the action failed on the gateway)")),
])
def test_a_fault_becomes_a_readable_upnp_error(code: str, description: str, message: str) -> None:
    request = add_port_mapping(SERVICE, external_port=6881, protocol="tcp", internal_port=6881,
                               internal_client="10.0.0.2", lease=60, description="t")
    with pytest.raises(UpnpError) as info:
        parse_soap_response(request, answer(500, fault(code, description), "Internal Server Error"))
    assert str(info.value) == message
    assert info.value.code == int(code) and info.value.action == "AddPortMapping"
    assert isinstance(info.value, GatewayRefused)


def test_other_answers_are_errors() -> None:
    request = get_external_ip_address(SERVICE)
    with pytest.raises(PortMapError, match="with HTTP 404 'Not Found'"):
        parse_soap_response(request, answer(404, b"<html>no</html>", "Not Found"))
    with pytest.raises(PortMapError, match="with HTTP 500"):
        parse_soap_response(request, answer(500, b""))
    with pytest.raises(MalformedResponse, match="error code 'x'"):
        parse_soap_response(request, answer(500, fault("x")))
    with pytest.raises(MalformedResponse, match="no GetExternalIPAddressResponse element"):
        parse_soap_response(request, answer(200, soap("<Other/>")))
    with pytest.raises(MalformedResponse, match="not well-formed"):
        parse_soap_response(request, answer(200, b"<oops"))
    with pytest.raises(MalformedResponse, match="DOCTYPE"):
        parse_soap_response(request, answer(200, BILLION_LAUGHS))


# ---- HTTP responses ------------------------------------------------------------------------------------

def read(data: bytes, cut: list[int], *, eof: bool = True, max_body: int = MAX_DOCUMENT) -> HttpResponse | None:
    """Feed ``data`` split at ``cut`` points; the response as soon as the reader gives one."""
    reader = HttpResponseReader(max_body)
    edges = [0, *sorted(cut), len(data)]
    for start, end in itertools.pairwise(edges):
        response = reader.feed(data[start:end])
        if response is not None:
            return response
    return reader.feed_eof() if eof else None


SIZED = b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: 11\r\n\r\nhello world"
CHUNKED = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5;name=x\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: 1\r\n\r\n")
UNTIL_CLOSE = b"HTTP/1.0 200 OK\nServer: old\n\nhello world"


@pytest.mark.parametrize("data", [SIZED, CHUNKED, UNTIL_CLOSE], ids=["sized", "chunked", "until-close"])
def test_a_response_read_in_any_two_pieces(data: bytes) -> None:
    for cut in range(len(data) + 1):
        response = read(data, [cut])
        assert response is not None and response.status == 200 and response.body == b"hello world", cut


@given(st.lists(st.integers(0, len(CHUNKED)), max_size=12))
def test_a_chunked_response_in_any_fragments(cuts: list[int]) -> None:
    response = read(CHUNKED, cuts)
    assert response is not None and response.body == b"hello world"


def test_a_sized_or_chunked_response_is_complete_before_the_connection_closes() -> None:
    assert read(SIZED, [], eof=False) is not None
    assert read(CHUNKED, [], eof=False) is not None
    assert read(UNTIL_CLOSE, [], eof=False) is None  # only the close says it is complete
    response = read(b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", [], eof=False)
    assert response is not None and response.body == b""
    assert response.headers == {"content-length": "5"} and response.reason == "No Content"


@pytest.mark.parametrize(("data", "reason"), [
    (b"", "closed without an HTTP response"),
    (b"HTTP/1.1 200 OK\r\nContent-Le", "closed before a complete HTTP response"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\nshort", "closed after 5 of 20 body bytes"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", "middle of a chunked body"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad HTTP chunk size 'zz'"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n", "bad HTTP chunk size '-1'"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n", "not followed by a line end"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: -3\r\n\r\n", "Content-Length '-3' is not a number"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 65537\r\n\r\n", "65537 bytes is over 64 KiB"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10001\r\n", "over 64 KiB"),
    (b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * (MAX_DOCUMENT + 1), "over 64 KiB"),
    (b"HTTP/1.1 200 OK\r\nX: " + b"y" * 9000, "head is over 8 KiB"),
    (b"SSH-2.0-OpenSSH\r\n\r\n", "does not start with an HTTP status line"),
])
def test_broken_or_oversized_responses_are_refused(data: bytes, reason: str) -> None:
    with pytest.raises(MalformedResponse, match=reason):
        read(data, [])


def test_a_big_chunked_body_is_refused_as_it_arrives() -> None:
    reader = HttpResponseReader(max_body=1000)
    assert reader.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n") is None
    with pytest.raises(MalformedResponse, match="over"):
        for _ in range(100):
            reader.feed(b"100\r\n" + b"z" * 256 + b"\r\n")


@given(st.binary(max_size=300))
def test_any_bytes_read_as_a_response_or_raise_a_port_map_error(data: bytes) -> None:
    try:
        read(data, [len(data) // 2])
    except PortMapError:
        pass
