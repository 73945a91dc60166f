"""Client names from peer ids: real ids, each BEP 20 style, the fallbacks, and no input that raises.

Where the ids come from:

* "captured": announced to a loopback HTTP tracker on this machine by the
  clients installed here (aria2 1.36.0, transmission-cli 3.00,
  qbittorrent-nox 4.5.2, libtorrent 2.1.1 from the PyPI wheel); the first
  8 bytes are the client's, the rest was random in that run.
* otherwise the prefix each project's source writes, cited on its line:
  Transmission's CMakeLists.txt (``TR_PEER_ID_PREFIX``), Deluge's
  ``core.py`` (``_create_peer_id``), libtorrent's ``fingerprint.cpp``
  (``generate_fingerprint``), rakshasa libtorrent's ``configure.ac``
  (``PEER_NAME``), PicoTorrent's ``session.cpp``, WebTorrent's ``index.js``
  (``VERSION_PREFIX``), librqbit's ``peer_id.rs``, anacrolix/torrent's
  ``version/version.go``, aria2's ``A2-`` prefix, BEP 20 itself, and the
  test tables of Transmission's ``clients-test.cc`` for clients whose
  source is closed (µTorrent, BitComet, BiglyBT, BitLord, FDM...).
"""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torrent.codec.clientid import _AZUREUS, MAX_V_LENGTH, client_name

RANDOM_TAIL = bytes(range(0x41, 0x4D))  # 12 bytes standing in for the random part

# What a table cell must not hold.
HIDDEN = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


def full(prefix: bytes) -> bytes:
    """A 20-byte id: the client's prefix, then filler."""
    return (prefix + RANDOM_TAIL + bytes(20))[:20]


# --- real ids of the clients on this machine --------------------------------------


@pytest.mark.parametrize(
    ("hex_id", "expected"),
    [
        # captured: libtorrent 2.1.1.0 Python binding, user agent "libtorrent/2.1.1.0"
        ("2d4c54323131302d29294272754667766f5f5033", "libtorrent 2.1.1"),
        # captured: transmission-cli 3.00 (bb6b5a062e), user agent "Transmission/3.00"
        ("2d5452333030302d76357a3037326363366c7669", "Transmission 3.00"),
        # captured: qbittorrent-nox v4.5.2, user agent "qBittorrent/4.5.2"
        ("2d7142343532302d3832515f64654e39567a457a", "qBittorrent 4.5.2"),
        # captured: aria2 1.36.0, user agent "aria2/1.36.0": "A2-1-36-0-" and 10 random bytes
        ("41322d312d33362d302d303f8b4b5f1ec85939bc", "aria2 1.36.0"),
    ],
)
def test_captured_ids_of_installed_clients(hex_id: str, expected: str) -> None:
    assert client_name(bytes.fromhex(hex_id)) == expected


def test_our_own_peer_id_names_this_client() -> None:
    from torrent import __version__
    from torrent.session.core import make_peer_id

    assert client_name(make_peer_id()) == f"torrent {__version__}"


# --- Azureus style: each client's own version rules -------------------------------


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        # libtorrent generate_fingerprint: one character each, 10+ as letters, tag 0 hidden
        (b"-LT2090-", "libtorrent 2.0.9"),
        (b"-LT20A0-", "libtorrent 2.0.10"),
        (b"-LT12J0-", "libtorrent 1.2.19"),
        (b"-LT1234-", "libtorrent 1.2.3.4"),
        # qBittorrent passes its version to generate_fingerprint
        (b"-qB4520-", "qBittorrent 4.5.2"),
        (b"-qB46A0-", "qBittorrent 4.6.10"),
        # Transmission: up to 3.x "major.two-digit minor", then base62 major.minor.patch
        (b"-TR0006-", "Transmission 0.6"),
        (b"-TR0072-", "Transmission 0.72"),
        (b"-TR2940-", "Transmission 2.94"),
        (b"-TR3000-", "Transmission 3.00"),
        (b"-TR300Z-", "Transmission 3.00 (dev)"),
        (b"-TR4060-", "Transmission 4.0.6"),
        (b"-TR400B-", "Transmission 4.0.0 (beta)"),
        (b"-TR410Z-", "Transmission 4.1.0 (dev)"),
        # Deluge 1.x: libtorrent digits; 2.x: release letter s/D/a/b/r (core.py _create_peer_id)
        (b"-DE13F0-", "Deluge 1.3.15"),
        (b"-DE211s-", "Deluge 2.1.1"),
        (b"-DE200D-", "Deluge 2.0.0 (dev)"),
        (b"-DE201b-", "Deluge 2.0.1 (beta)"),
        # µTorrent / BitTorrent: hex digits, build letter; two-digit patch eats the dash
        (b"-UT355W-", "\u00b5Torrent 3.5.5"),
        (b"-UT3610B", "\u00b5Torrent 3.6.10 (beta)"),
        (b"-UT7a5\x00-", "\u00b5Torrent 7.10.5"),
        (b"-UM1870-", "\u00b5Torrent Mac 1.8.7"),
        (b"-BT791B-", "BitTorrent 7.9.1 (beta)"),
        # rakshasa libtorrent (rTorrent): one hex char each up to 0.13, two-hex minor/patch after
        (b"-lt0D60-", "libtorrent (rakshasa) 0.13.6"),
        (b"-lt0D80-", "libtorrent (rakshasa) 0.13.8"),
        (b"-lt0E00-", "libtorrent (rakshasa) 0.14.0"),
        (b"-lt0F04-", "libtorrent (rakshasa) 0.15.4"),
        (b"-lt1014-", "libtorrent (rakshasa) 0.16.20"),
        # this client: torrent.session.core.make_peer_id
        (b"-TO0100-", "torrent 0.1.0"),
        # four plain digits
        (b"-AZ5770-", "Vuze 5.7.7.0"),
        (b"-BI2300-", "BiglyBT 2.3.0.0"),
        (b"-XL0012-", "Xunlei 0.0.1.2"),
        # two digits of major, two of minor
        (b"-BC0241-", "BitComet 2.41"),
        # three digits
        (b"-FW6830-", "FrostWire 6.8.3"),
        (b"-HL0290-", "Halite 0.2.9"),
        (b"-FD51W\xff-", "Free Download Manager 5.1.32"),
        (b"-Lr10X0-", "LibreTorrent 1.0.33"),
        # KTorrent dev / rc builds
        (b"-KT33D1-", "KTorrent 3.3 dev 1"),
        (b"-KT43R2-", "KTorrent 4.3 rc 2"),
        # WebTorrent: two decimal digits of major and of minor (index.js VERSION_STR)
        (b"-WW0102-", "WebTorrent 1.2"),
        (b"-WW0210-", "WebTorrent 2.10"),
        (b"-WD0021-", "WebTorrent Desktop 0.21"),
        # PicoTorrent: major, two-digit minor, patch (session.cpp)
        (b"-PI0120-", "PicoTorrent 0.12.0"),
        (b"-PI3021-", "PicoTorrent 3.2.1"),
        # BitLord after 0.59: version and a three-digit build in place of the dash
        (b"-BL246326", "BitLord 2.4.6-326"),
        # MLDonkey writes the dotted version itself
        (b"-ML2.7.2-kgjjfkd", "MLDonkey 2.7.2"),
        # rqbit: generate_azereus_style(b"rQ", crate version)
        (b"-rQ8110-", "rqbit 8.1.1"),
        # anacrolix/torrent: DefaultBep20Prefix, a behaviour revision
        (b"-GT0003-", "anacrolix/torrent (rev 3)"),
        (b"-TL7130-", "Tribler 7.1.3"),
        (b"-LW0001-", "LimeWire"),
    ],
)
def test_azureus_style_versions(prefix: bytes, expected: str) -> None:
    assert client_name(full(prefix)) == expected


def test_azureus_style_needs_the_closing_dash() -> None:
    # libtorrent always closes with "-"; an 'x' there is not its id
    assert client_name(full(b"-LT2110x")) == "unknown (-LT2110x)"


@pytest.mark.parametrize("code", sorted(_AZUREUS))
def test_every_known_code_gives_its_name_even_with_junk_version(code: bytes) -> None:
    name = _AZUREUS[code][0]
    assert client_name(b"-" + code + b"\xff\x00\xfe\x01-" + RANDOM_TAIL) == name


def test_unknown_code_is_named_by_its_letters_and_digits() -> None:
    assert client_name(full(b"-XY1234-")) == "unknown client XY 1.2.3.4"
    assert client_name(full(b"-ZZ0001-")) == "unknown client ZZ 0.0.0.1"


def test_unknown_code_defers_to_the_handshake_name() -> None:
    assert client_name(full(b"-XY1234-"), "Frobnicator 1.2.3.4") == "Frobnicator 1.2.3.4"


# --- Shadow, Mainline, aria2 ------------------------------------------------------------


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        (b"S58B-----", "Shadow 5.8.11"),  # BEP 20's own example
        (b"T03I-----", "BitTornado 0.3.18"),
        (b"A310-----", "ABC 3.1.0"),
        (b"O1-------", "Osprey Permaseed 1"),
        (b"Q1.2-----", "BTQueue 1.62.2"),
        (b"R5z------", "Tribler 5.61"),
        (b"U0aA0----", "UPnP NAT BitTorrent 0.36.10.0"),
    ],
)
def test_shadow_style(prefix: bytes, expected: str) -> None:
    assert client_name(full(prefix)) == expected


@pytest.mark.parametrize(
    "prefix",
    [
        b"T03-I----",  # a dash inside the version
        b"T03I--x--",  # no "---" padding
        b"X03I-----",  # no such client letter
        b"T03\xff-----",
    ],
)
def test_not_shadow_style(prefix: bytes) -> None:
    assert client_name(full(prefix)).startswith("unknown (")


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        (b"M4-3-6--", "BitTorrent 4.3.6"),  # BEP 20's examples
        (b"M4-20-8-", "BitTorrent 4.20.8"),
        (b"M7-10-3-", "BitTorrent 7.10.3"),
        (b"Q1-23-4-", "Queen Bee 1.23.4"),
    ],
)
def test_mainline_style(prefix: bytes, expected: str) -> None:
    assert client_name(full(prefix)) == expected


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        (b"A2-1-36-0-", "aria2 1.36.0"),
        (b"A2-1-18-8-", "aria2 1.18.8"),
        (b"A2-1-2-0-", "aria2 1.2.0"),
        (b"-aria2-", "aria2"),
    ],
)
def test_aria2(prefix: bytes, expected: str) -> None:
    assert client_name(full(prefix)) == expected


# --- one-off conventions -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("peer_id", "expected"),
    [
        # exbc, then major and minor as bytes; LORD marks BitLord (Transmission's test bytes)
        (full(b"exbc\x00\x38"), "BitComet 0.56"),
        (full(b"exbc\x01\x05"), "BitComet 1.05"),
        (full(b"exbc\x00\x38LORD"), "BitLord 0.56"),
        (full(b"OP8177"), "Opera build 8177"),
        (full(b"XBT054d-"), "XBT Client 0.5.4 (debug)"),
        (full(b"XBT063-"), "XBT Client 0.6.3"),
        (full(b"TIX0193-"), "Tixati 1.93"),
        (full(b"\x00\x03BS"), "BitSpirit 3"),
        (full(b"AZ2500BT"), "BitTyrant"),
        (full(b"-BOWA0C-"), "Bits on Wheels"),
        (full(b"Mbrst1-1-2"), "Burst!"),
        (full(b"FD6k4SYy"), "Free Download Manager 6"),
    ],
)
def test_one_off_conventions(peer_id: bytes, expected: str) -> None:
    assert client_name(peer_id) == expected


# --- fallbacks -------------------------------------------------------------------------------


def test_recognised_id_wins_over_the_handshake_name() -> None:
    assert client_name(full(b"-qB4520-"), "qBittorrent/4.5.2 patched") == "qBittorrent 4.5.2"


def test_unrecognised_id_uses_the_handshake_name() -> None:
    assert client_name(bytes(range(100, 120)), "Foo Client 1.0") == "Foo Client 1.0"


def test_handshake_name_is_cleaned_and_cut() -> None:
    pid = bytes(20)
    assert client_name(pid, "Evil\x00Client\x1b[31m\nv2\u202e") == "EvilClient[31m v2"
    assert client_name(pid, "x" * 200) == "x" * MAX_V_LENGTH
    assert client_name(pid, b"Bytes Client 1.0") == "Bytes Client 1.0"


@pytest.mark.parametrize("v", [None, "", "   ", "\x00\x01\n", 42])
def test_empty_or_unusable_handshake_name_falls_back_to_unknown(v: object) -> None:
    assert client_name(full(b"\x01\x02ZZ\\9\xffz"), v) == "unknown (\\x01\\x02ZZ\\x5c9\\xffz)"  # type: ignore[arg-type]


def test_unknown_shows_the_first_eight_bytes_escaped() -> None:
    assert client_name(bytes(20)) == "unknown (" + "\\x00" * 8 + ")"
    assert client_name(b"\xe4\xbd\xa0\xe5\xa5\xbdxyzabc") == "unknown (\\xe4\\xbd\\xa0\\xe5\\xa5\\xbdxy)"


@pytest.mark.parametrize(
    ("peer_id", "expected"),
    [
        (b"", "unknown"),
        (b"-", "unknown (-)"),
        (b"-LT", "unknown (-LT)"),
        (b"-LT2110", "unknown (-LT2110)"),  # no room for the closing dash
        (b"-LT2110-", "libtorrent 2.1.1"),  # the prefix alone is enough
        (full(b"-LT2110-") * 2, "libtorrent 2.1.1"),  # 40 bytes
        (b"M4-3-6-", "unknown (M4-3-6-)"),
    ],
)
def test_short_and_long_ids(peer_id: bytes, expected: str) -> None:
    assert client_name(peer_id) == expected


# --- never raises, never shows a control character ---------------------------------------


def _check(result: object) -> None:
    assert isinstance(result, str)
    assert result
    assert not [ch for ch in result if unicodedata.category(ch) in HIDDEN], repr(result)


@given(st.binary(min_size=0, max_size=40))
def test_any_bytes_give_a_clean_str(peer_id: bytes) -> None:
    _check(client_name(peer_id))


@given(st.binary(min_size=0, max_size=40), st.one_of(st.none(), st.text(max_size=200), st.binary(max_size=80)))
def test_any_bytes_and_any_v_give_a_clean_str(peer_id: bytes, v: str | bytes | None) -> None:
    result = client_name(peer_id, v)
    _check(result)
    assert len(result) <= max(MAX_V_LENGTH, 100)


@given(
    st.sampled_from(sorted(_AZUREUS)),
    st.binary(min_size=0, max_size=6),
    st.sampled_from([b"", b"-", b"x", b"\x00"]),
    st.binary(max_size=14),
)
def test_known_codes_with_any_version_bytes(code: bytes, version: bytes, close: bytes, tail: bytes) -> None:
    # Random bytes rarely start with "-" and a known code: aim at every formatter.
    _check(client_name(b"-" + code + version + close + tail))


@pytest.mark.parametrize("code", sorted(_AZUREUS))
def test_known_codes_cut_short_at_every_length(code: bytes) -> None:
    # Cut ids are where an index past the end would hide: try every length.
    for body in (b"3610B-xyz", b"2.7.2-abc", b"0D60-----"):
        whole = b"-" + code + body
        for n in range(len(whole) + 1):
            _check(client_name(whole[:n]))


@given(
    st.sampled_from([b"A2-", b"M", b"Q", b"S", b"T", b"exbc", b"OP", b"XBT", b"TIX", b"\x00"]),
    st.binary(max_size=20),
)
def test_other_styles_with_any_following_bytes(head: bytes, tail: bytes) -> None:
    _check(client_name(head + tail))
