"""Magnet URI codec: real-world links, round trips, and one test per rejected case."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torrent.core.errors import MagnetError, TorrentError
from torrent.codec.magnet import MAX_SELECTED_FILES, MAX_URI_LENGTH, Magnet, build_magnet, parse_magnet

HEX = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a"
# The same hash in RFC 4648 base32, as older clients (and some sites) write it.
BASE32 = "YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKEK"
DIGEST = bytes.fromhex(HEX)
V2_HEX = "caf1e1c30e81cb361b9ee167c4aa64228a7fa4fa9f6105232b28ad099f3a302e"
V2_DIGEST = bytes.fromhex(V2_HEX)
XT = f"xt=urn:btih:{HEX}"


# --- real-world shaped links ---------------------------------------------------


def test_hex_hash_any_case() -> None:
    assert parse_magnet(f"magnet:?xt=urn:btih:{HEX.upper()}").info_hash == DIGEST
    assert parse_magnet(f"magnet:?xt=urn:btih:{HEX}").info_hash == DIGEST


@pytest.mark.parametrize("text", [BASE32, BASE32.lower()])
def test_base32_hash_decodes_to_the_hex_bytes(text: str) -> None:
    magnet = parse_magnet(f"magnet:?xt=urn:btih:{text}")
    assert magnet.info_hash == DIGEST
    assert magnet.info_hash_hex == HEX


def test_scheme_and_urn_case_insensitive() -> None:
    assert parse_magnet(f"MAGNET:?xt=URN:BTIH:{HEX}").info_hash == DIGEST


def test_surrounding_whitespace_of_a_pasted_link() -> None:
    assert parse_magnet(f"  magnet:?{XT}\n").info_hash == DIGEST


def test_typical_tracker_list_percent_encoded() -> None:
    uri = (
        f"magnet:?xt=urn:btih:{HEX}&dn=Big+Buck+Bunny"
        "&tr=udp%3A%2F%2Fexplodie.org%3A6969"
        "&tr=udp%3A%2F%2Ftracker.opentrackr.org%3A1337%2Fannounce"
        "&tr=http%3A%2F%2Fbt.t-ru.org%2Fann%3Fmagnet"
        "&tr=udp%3A%2F%2Fexplodie.org%3A6969"
        "&tr=wss%3A%2F%2Ftracker.btorrent.xyz"
    )
    magnet = parse_magnet(uri)
    assert magnet.display_name == "Big Buck Bunny"
    assert magnet.trackers == (
        "udp://explodie.org:6969",
        "udp://tracker.opentrackr.org:1337/announce",
        "http://bt.t-ru.org/ann?magnet",
        "wss://tracker.btorrent.xyz",
    )


def test_unencoded_tracker_urls_are_accepted() -> None:
    magnet = parse_magnet(f"magnet:?{XT}&tr=http://bt4.t-ru.org/ann&tr=http://retracker.local/announce")
    assert magnet.trackers == ("http://bt4.t-ru.org/ann", "http://retracker.local/announce")


def test_numbered_keys() -> None:
    uri = (
        f"magnet:?xt.1=urn:btih:{HEX}&tr.1=udp%3A%2F%2Fa.example%3A1"
        "&tr.2=udp%3A%2F%2Fb.example%3A2&tr=udp://a.example:1"
    )
    magnet = parse_magnet(uri)
    assert magnet.info_hash == DIGEST
    assert magnet.trackers == ("udp://a.example:1", "udp://b.example:2")


@pytest.mark.parametrize(
    ("encoded", "name"),
    [
        ("Ubuntu+22.04+LTS", "Ubuntu 22.04 LTS"),
        ("Ubuntu%2022.04", "Ubuntu 22.04"),
        ("C%2B%2B+Primer", "C++ Primer"),
        ("%E6%97%A5%E6%9C%AC%E8%AA%9E%20%E2%9C%93", "日本語 ✓"),
        ("caf%C3%A9 raw spaces", "café raw spaces"),
        ("déjà vu", "déjà vu"),
        ("Tom%26Jerry%3D%25%23", "Tom&Jerry=%#"),
    ],
)
def test_display_name_decoding(encoded: str, name: str) -> None:
    assert parse_magnet(f"magnet:?{XT}&dn={encoded}").display_name == name


def test_empty_and_repeated_display_name() -> None:
    assert parse_magnet(f"magnet:?{XT}&dn=&tr=udp://t.example:1").display_name is None
    assert parse_magnet(f"magnet:?{XT}&dn=first&dn=second").display_name == "first"


def test_peer_addresses() -> None:
    uri = (
        f"magnet:?{XT}&x.pe=203.0.113.7:6881&x.pe=%5B2001%3Adb8%3A%3A1%5D%3A51413"
        "&x.pe=peer.example.org:6881&x.pe=[fe80::1%25eth0]:80&x.pe=203.0.113.7:6881"
    )
    assert parse_magnet(uri).peers == (
        ("203.0.113.7", 6881),
        ("2001:db8::1", 51413),
        ("peer.example.org", 6881),
        ("fe80::1%eth0", 80),
    )


def test_web_seeds() -> None:
    uri = f"magnet:?{XT}&ws=https%3A%2F%2Fmirror.example%2Fpub%2Ffile.iso&ws=http://m2.example/x"
    assert parse_magnet(uri).web_seeds == ("https://mirror.example/pub/file.iso", "http://m2.example/x")


@pytest.mark.parametrize(
    ("so", "expected"),
    [
        ("0,2,4-6", (0, 2, 4, 5, 6)),
        ("6-8,0,2,4", (0, 2, 4, 6, 7, 8)),
        ("3,1-3,3", (1, 2, 3)),
        ("5-5", (5,)),
        ("0%2C2", (0, 2)),
    ],
)
def test_select_only(so: str, expected: tuple[int, ...]) -> None:
    assert parse_magnet(f"magnet:?{XT}&so={so}").select_only == expected


def test_select_only_absent_is_none() -> None:
    assert parse_magnet(f"magnet:?{XT}").select_only is None


def test_select_only_at_the_cap_is_accepted() -> None:
    magnet = parse_magnet(f"magnet:?{XT}&so=0-{MAX_SELECTED_FILES - 1}")
    assert magnet.select_only is not None
    assert len(magnet.select_only) == MAX_SELECTED_FILES


def test_exact_length() -> None:
    assert parse_magnet(f"magnet:?{XT}&xl=1073741824").exact_length == 1 << 30


def test_hybrid_v1_v2() -> None:
    uri = f"magnet:?xt=urn:btih:{HEX}&xt=urn:btmh:1220{V2_HEX.upper()}&dn=hybrid"
    magnet = parse_magnet(uri)
    assert magnet.info_hash == DIGEST
    assert magnet.info_hash_v2 == V2_DIGEST
    assert magnet.info_hash_hex == HEX


def test_v2_only() -> None:
    magnet = parse_magnet(f"magnet:?xt=urn:btmh:1220{V2_HEX}")
    assert magnet.info_hash is None
    assert magnet.info_hash_v2 == V2_DIGEST
    assert magnet.info_hash_hex == V2_HEX


def test_same_hash_twice_in_hex_and_base32_is_fine() -> None:
    assert parse_magnet(f"magnet:?xt=urn:btih:{HEX}&xt=urn:btih:{BASE32}").info_hash == DIGEST


def test_unknown_parameters_and_foreign_xt_ignored() -> None:
    uri = f"magnet:?xt=urn:ed2k:31D6CFE0D16AE931B73C59D7E0C089C0&{XT}&kt=linux&as=http://a.example/&bare&&=x"
    assert parse_magnet(uri) == Magnet(info_hash=DIGEST)


# --- building ----------------------------------------------------------------


def test_build_canonical_form() -> None:
    magnet = Magnet.from_info_hash(
        DIGEST,
        V2_DIGEST,
        display_name="A & B = 100% #1+",
        trackers=["udp://t.example:1337/announce", "", "udp://t.example:1337/announce"],
        peers=[("2001:db8::1", 6881), ("10.0.0.1", 1)],
        web_seeds=["http://ws.example/a b"],
        select_only=[6, 0, 5, 2, 4, 2],
        exact_length=42,
    )
    assert build_magnet(magnet) == magnet.to_uri() == (
        f"magnet:?xt=urn:btih:{HEX}&xt=urn:btmh:1220{V2_HEX}"
        "&dn=A%20%26%20B%20%3D%20100%25%20%231%2B"
        "&tr=udp%3A%2F%2Ft.example%3A1337%2Fannounce"
        "&ws=http%3A%2F%2Fws.example%2Fa%20b"
        "&x.pe=[2001:db8::1]:6881&x.pe=10.0.0.1:1"
        "&so=0,2,4-6&xl=42"
    )
    assert parse_magnet(magnet.to_uri()) == magnet


def test_build_minimal() -> None:
    assert Magnet(info_hash=DIGEST).to_uri() == f"magnet:?xt=urn:btih:{HEX}"


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"info_hash": DIGEST[:19]},
        {"info_hash": HEX},
        {"info_hash_v2": DIGEST},
        {"info_hash": DIGEST, "display_name": ""},
        {"info_hash": DIGEST, "display_name": "\ud800"},
        {"info_hash": DIGEST, "trackers": ["udp://a"]},
        {"info_hash": DIGEST, "trackers": ("udp://a", "udp://a")},
        {"info_hash": DIGEST, "peers": (("::1", 0),)},
        {"info_hash": DIGEST, "peers": (("bad host", 1),)},
        {"info_hash": DIGEST, "select_only": ()},
        {"info_hash": DIGEST, "select_only": (2, 1)},
        {"info_hash": DIGEST, "select_only": (-1,)},
        {"info_hash": DIGEST, "exact_length": -1},
    ],
)
def test_constructor_rejects_what_a_link_cannot_carry(kwargs: dict[str, object]) -> None:
    with pytest.raises(MagnetError):
        Magnet(**kwargs)  # type: ignore[arg-type]


# --- round trip (Hypothesis) --------------------------------------------------

# Any Unicode except lone surrogates (not encodable), plus the characters that
# mean something in a query string.
_text = st.text(
    alphabet=st.one_of(st.characters(exclude_categories=("Cs",)), st.sampled_from("&=%#+?; ")),
    min_size=1,
    max_size=20,
)
_label = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9-]{0,8}[A-Za-z0-9])?", fullmatch=True)
_hostname = st.builds(
    ".".join,
    st.lists(_label, min_size=1, max_size=3).map(lambda labels: [*labels, "example"]),
)
_host = st.one_of(st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str), _hostname)
_tracker = st.builds(
    lambda scheme, host, port, path: f"{scheme}://{host}:{port}/{path}",
    st.sampled_from(["http", "https", "udp", "wss"]),
    _hostname,
    st.integers(1, 65535),
    _text,
)
_peer = st.tuples(_host, st.integers(1, 65535))


@st.composite
def magnets(draw: st.DrawFn) -> Magnet:
    v1, v2 = draw(
        st.one_of(
            st.tuples(st.binary(min_size=20, max_size=20), st.none()),
            st.tuples(st.none(), st.binary(min_size=32, max_size=32)),
            st.tuples(st.binary(min_size=20, max_size=20), st.binary(min_size=32, max_size=32)),
        )
    )
    selection = st.lists(st.integers(0, 2**31 - 1) | st.integers(0, 20), min_size=1, max_size=20, unique=True)
    return Magnet(
        info_hash=v1,
        info_hash_v2=v2,
        display_name=draw(st.none() | _text),
        trackers=tuple(draw(st.lists(_tracker, max_size=5, unique=True))),
        peers=tuple(draw(st.lists(_peer, max_size=5, unique=True))),
        web_seeds=tuple(draw(st.lists(_tracker, max_size=3, unique=True))),
        select_only=draw(st.none() | selection.map(sorted).map(tuple)),
        exact_length=draw(st.none() | st.integers(0, 2**63 - 1)),
    )


@given(magnets())
def test_round_trip(magnet: Magnet) -> None:
    assert parse_magnet(magnet.to_uri()) == magnet


@given(magnets())
def test_to_uri_is_canonical(magnet: Magnet) -> None:
    uri = magnet.to_uri()
    assert parse_magnet(uri).to_uri() == uri


@given(st.text(max_size=300))
def test_random_text_parses_or_raises_magnet_error(text: str) -> None:
    try:
        parse_magnet(text)
    except MagnetError:
        pass


_fragments = st.sampled_from(
    [
        XT, f"xt=urn:btih:{BASE32}", f"xt=urn:btmh:1220{V2_HEX}", "xt=urn:btih:", "xt=urn:btmh:1220",
        "dn=", "tr=", "x.pe=", "x.pe=[", "x.pe=1.2.3.4:", "so=", "so=1-", "so=-", "xl=", "ws=", "tr.1=",
        "%", "%2", "%ZZ", "%ff", "%C3", "+", "&", "=", ":", "[", "]", ",", "-", "0", "9", ".",
    ]
)


@given(st.sampled_from(["", XT + "&"]), st.lists(st.one_of(_fragments, st.text(max_size=8)), max_size=12))
def test_random_parameters_parse_or_raise_magnet_error(head: str, pieces: list[str]) -> None:
    try:
        magnet = parse_magnet("magnet:?" + head + "".join(pieces))
    except MagnetError:
        return
    assert parse_magnet(magnet.to_uri()) == magnet


# --- errors: one per rejected case ---------------------------------------------


def _error(uri: object) -> str:
    with pytest.raises(MagnetError) as info:
        parse_magnet(uri)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message
    assert isinstance(info.value, TorrentError)
    return message


def test_error_wrong_scheme() -> None:
    assert "does not start with 'magnet:?'" in _error(f"http://example.com/?{XT}")


def test_error_scheme_without_query() -> None:
    assert "not a magnet link" in _error(f"magnet:{XT}")


def test_error_no_xt() -> None:
    assert "has no xt=urn:btih: or urn:btmh: info-hash" in _error("magnet:?dn=name&tr=udp://t.example:1")


def test_error_bad_hex_length() -> None:
    message = _error(f"magnet:?xt=urn:btih:{HEX[:-1]}")
    assert f"invalid info-hash '{HEX[:-1]}'" in message
    assert "expected 40 hex or 32 base32 characters" in message


def test_error_bad_base32() -> None:
    assert "invalid info-hash" in _error("magnet:?xt=urn:btih:YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKE1")


def test_error_two_different_btih() -> None:
    other = "0" * 40
    message = _error(f"magnet:?xt=urn:btih:{HEX}&xt=urn:btih:{other}")
    assert "two different v1 info-hashes" in message
    assert HEX in message and other in message


def test_error_two_different_btmh() -> None:
    uri = f"magnet:?xt=urn:btmh:1220{V2_HEX}&xt=urn:btmh:1220{'0' * 64}"
    assert "two different v2 info-hashes" in _error(uri)


def test_error_bad_btmh_prefix() -> None:
    # 0x11 0x14 is a sha1 multihash: not a BitTorrent v2 info-hash.
    assert "invalid v2 info-hash '1114" in _error(f"magnet:?xt=urn:btmh:1114{HEX}")


def test_error_bad_btmh_length() -> None:
    assert "followed by 64 hex characters" in _error(f"magnet:?xt=urn:btmh:1220{V2_HEX[:-2]}")


@pytest.mark.parametrize(
    "peer",
    ["foo", "1.2.3.4:0", "1.2.3.4:65536", "1.2.3.4:http", "::1:80", "[1.2.3.4]:80", "[::1]", "bad host:1", "1.2.3:80"],
)
def test_error_bad_peer(peer: str) -> None:
    assert f"invalid peer address {peer!r} in x.pe" in _error(f"magnet:?{XT}&x.pe={peer}")


@pytest.mark.parametrize("so", ["3-1", "a", "1,,2", "-1", "1-", " 1", "4294967296"])
def test_error_bad_select_only(so: str) -> None:
    assert "invalid so= selection" in _error(f"magnet:?{XT}&so={so}")


def test_error_select_only_expansion_cap() -> None:
    assert "selects more than 1,000,000 files" in _error(f"magnet:?{XT}&so=0-999999999")
    assert "selects more than" in _error(f"magnet:?{XT}&so=0-{MAX_SELECTED_FILES}")
    assert "selects more than" in _error(f"magnet:?{XT}&so=0-600000&so=0-600000")


def test_error_bad_exact_length() -> None:
    assert "invalid xl= length '-5'" in _error(f"magnet:?{XT}&xl=-5")


def test_error_overlong_uri() -> None:
    uri = f"magnet:?{XT}&dn=" + "a" * MAX_URI_LENGTH
    assert "characters long" in _error(uri)


def test_error_lone_surrogate() -> None:
    assert "not valid Unicode" in _error(f"magnet:?{XT}&dn=\udcff")


@pytest.mark.parametrize("value", [None, b"magnet:?xt=urn:btih:" + HEX.encode(), 42])
def test_error_not_a_string(value: object) -> None:
    assert "must be text" in _error(value)


def test_error_message_truncates_long_input() -> None:
    message = _error("magnet:?xt=urn:btih:" + "z" * 5000)
    assert len(message) < 200


def test_base32_constant_matches_hex() -> None:
    assert base64.b32encode(DIGEST).decode() == BASE32
