"""LSD announces (BEP 14): the BEP's format byte for byte, several info-hashes packed within 1400 bytes,
what other clients vary in accepted, and every malformed datagram refused with LsdError."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torrent.codec import lsd
from torrent.codec.lsd import MAX_MESSAGE, Announce, LsdError

H1 = bytes.fromhex("0123456789abcdef0123456789abcdef01234567")
H2 = bytes(range(20))


def test_an_announce_byte_for_byte() -> None:
    assert lsd.build(6881, [H1], cookie="c00k1e") == (
        b"BT-SEARCH * HTTP/1.1\r\n"
        b"Host: 239.192.152.143:6771\r\n"
        b"Port: 6881\r\n"
        b"Infohash: 0123456789abcdef0123456789abcdef01234567\r\n"
        b"cookie: c00k1e\r\n"
        b"\r\n"
        b"\r\n")


def test_the_ipv6_group_is_bracketed() -> None:
    data = lsd.build(51413, [H1, H2], group=lsd.IPV6_GROUP)
    assert data.startswith(b"BT-SEARCH * HTTP/1.1\r\nHost: [ff15::efc0:988f]:6771\r\nPort: 51413\r\n"
                           b"Infohash: 0123456789abcdef0123456789abcdef01234567\r\n"
                           b"Infohash: 000102030405060708090a0b0c0d0e0f10111213\r\n\r\n")
    assert lsd.parse(data) == Announce(51413, (H1, H2), None, "[ff15::efc0:988f]:6771")


def test_round_trip() -> None:
    data = lsd.build(1, [H2, H1], group="239.192.0.7", group_port=40000, cookie="x")
    assert lsd.parse(data) == Announce(1, (H2, H1), "x", "239.192.0.7:40000")


def test_as_many_info_hashes_as_fit_in_1400_bytes() -> None:
    per = lsd.capacity(65535, group=lsd.IPV6_GROUP, cookie="ffffffff")
    hashes = [i.to_bytes(20, "big") for i in range(per + 1)]
    full = lsd.build(65535, hashes[:per], group=lsd.IPV6_GROUP, cookie="ffffffff")
    assert MAX_MESSAGE - 52 < len(full) <= MAX_MESSAGE  # 52 bytes: one more Infohash line
    with pytest.raises(ValueError):
        lsd.build(65535, hashes, group=lsd.IPV6_GROUP, cookie="ffffffff")
    datagrams = lsd.pack(65535, hashes * 2, group=lsd.IPV6_GROUP, cookie="ffffffff")
    assert len(datagrams) == 3 and all(len(d) <= MAX_MESSAGE for d in datagrams)
    assert [h for d in datagrams for h in lsd.parse(d).info_hashes] == hashes + hashes[:1] + hashes[1:]


@pytest.mark.parametrize("hashes, port, cookie", [
    ([], 6881, None), ([H1], 0, None), ([H1], 65536, None), ([H1[:19]], 6881, None),
    ([H1], 6881, ""), ([H1], 6881, "a b"), ([H1], 6881, "x" * 65), ([H1], 6881, "\n"),
])
def test_build_refuses_what_no_peer_could_read(hashes: list[bytes], port: int, cookie: str | None) -> None:
    with pytest.raises(ValueError):
        lsd.build(port, hashes, cookie=cookie)


def test_what_other_clients_vary_in_is_accepted() -> None:
    data = (b"BT-SEARCH * HTTP/1.1\n"
            b"HOST: 239.192.152.143:6771\n"
            b"port:6881  \n"
            b"INFOHASH:   0123456789ABCDEF0123456789ABCDEF01234567\n"
            b"Infohash: 0123456789abcdef0123456789abcdef01234567\n"  # the same again
            b"X-Other: whatever\n"
            b"Cookie: from another client\n")  # no blank lines at the end; spaces in a cookie
    assert lsd.parse(data) == Announce(6881, (H1,), "from another client", "239.192.152.143:6771")


def test_a_malformed_cookie_is_no_cookie() -> None:
    data = b"BT-SEARCH * HTTP/1.1\r\nPort: 6881\r\nInfohash: " + H1.hex().encode() + b"\r\ncookie: " + b"x" * 65
    assert lsd.parse(data + b"\r\n\r\n").cookie is None


def test_headers_after_the_blank_line_are_not_read() -> None:
    data = b"BT-SEARCH * HTTP/1.1\r\nPort: 6881\r\nInfohash: " + H1.hex().encode() + b"\r\n\r\nPort: 1\r\n"
    assert lsd.parse(data).port == 6881


def _announce(*headers: bytes, first: bytes = b"BT-SEARCH * HTTP/1.1") -> bytes:
    return b"\r\n".join((first, *headers)) + b"\r\n\r\n\r\n"


PORT = b"Port: 6881"
HASH = b"Infohash: " + H1.hex().encode()


@pytest.mark.parametrize("data", [
    b"", b"\r\n\r\n", b"garbage",
    _announce(PORT, HASH, first=b"M-SEARCH * HTTP/1.1"),  # SSDP, not LSD
    _announce(PORT, HASH, first=b"NOTIFY * HTTP/1.1"),
    _announce(HASH),  # no port
    _announce(PORT),  # no info-hash
    _announce(b"Port: 0", HASH), _announce(b"Port: 65536", HASH), _announce(b"Port: -1", HASH),
    _announce(b"Port: +80", HASH), _announce(b"Port: 0x50", HASH), _announce(b"Port: ", HASH),
    _announce(b"Port: 000006881", HASH), _announce(PORT, PORT, HASH),
    _announce(PORT, b"Infohash: " + H1.hex()[:39].encode()),  # 39 digits
    _announce(PORT, b"Infohash: " + H1.hex().encode() + b"00"),  # 42 digits
    _announce(PORT, b"Infohash: " + b"g" * 40),
    _announce(PORT, HASH, b"Infohash: " + b"0" * 64),  # one bad info-hash refuses the datagram
    _announce(PORT, HASH, b"no colon here"),
    _announce(PORT, HASH, b"X-Name: caf\xc3\xa9"),  # not ASCII
    _announce(PORT, *[HASH] * 30),  # over 1400 bytes
])
def test_malformed_datagrams_are_refused(data: bytes) -> None:
    with pytest.raises(LsdError):
        lsd.parse(data)


@given(st.binary(max_size=MAX_MESSAGE + 10))
def test_garbage_is_an_lsd_error_or_an_announce(data: bytes) -> None:
    try:
        lsd.parse(data)
    except LsdError:
        pass


@given(st.lists(st.binary(min_size=20, max_size=20), min_size=1, max_size=20, unique=True),
       st.integers(1, 65535), st.one_of(st.none(), st.text("0123456789abcdef", min_size=1, max_size=16)))
def test_any_announce_round_trips(hashes: list[bytes], port: int, cookie: str | None) -> None:
    assert lsd.parse(lsd.build(port, hashes, cookie=cookie)) == Announce(port, tuple(hashes), cookie,
                                                                        "239.192.152.143:6771")
