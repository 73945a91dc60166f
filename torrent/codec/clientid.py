"""Name the client behind a BitTorrent peer id, for the peer list of a UI.

The engine's API hands out a snapshot of every connected peer; a person
reading it wants "qBittorrent 4.5.2", not twenty bytes of hex. Peer ids carry
that by convention only (BEP 20, plus habits older than it), so this module
knows the common conventions:

* Azureus style ``-XXvvvv-`` and twelve random bytes: a two-letter client code
  and four version characters, each client writing its version its own way
  (libtorrent's base-36 digits, Transmission's ``3.00``/``4.0.6`` split,
  Deluge's release letter, µTorrent's build letter, ...);
* Shadow style: one letter, up to five base-64 version characters, ``---``;
* Mainline style ``M4-3-6--`` and aria2's ``A2-1-36-0-``;
* a handful of one-off prefixes (old BitComet ``exbc``, Opera, XBT, Tixati...).

When the id says nothing known, the BEP 10 extension-handshake name ``v`` is
used if the peer sent one, else "unknown (...)" with the first eight bytes.

Pure functions, no I/O, and nothing raises: a peer id is remote input. The
engine calls :func:`client_name` once per connection and keeps the result,
so the tables are plain dicts looked up once.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

__all__ = ["client_name", "MAX_V_LENGTH"]

# The BEP 10 ``v`` name is remote text shown in a table cell: keep it short.
MAX_V_LENGTH = 64

# BitTornado's alphabet, also the digits rqbit writes: value = position.
_B64 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz.-"
_B64_VALUE = {ord(c): i for i, c in enumerate(_B64)}
_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")


def _b62(byte: int) -> int | None:
    """One version character as libtorrent, Transmission and rqbit write it:
    ``0-9``, then ``A-Z`` for 10-35, then ``a-z`` for 36-61."""
    value = _B64_VALUE.get(byte)
    return value if value is not None and value < 62 else None


def _digits(chunk: bytes, count: int) -> list[int] | None:
    """``count`` version characters read with :func:`_b62`, or None."""
    if len(chunk) != count:
        return None
    out = []
    for byte in chunk:
        value = _b62(byte)
        if value is None:
            return None
        out.append(value)
    return out


def _decimal(chunk: bytes) -> int | None:
    return int(chunk) if chunk and all(0x30 <= b <= 0x39 for b in chunk) else None


def _hex(chunk: bytes) -> int | None:
    if not chunk or any(b not in _HEX_DIGITS for b in chunk):
        return None
    return int(chunk, 16)


def _dotted(parts: list[int]) -> str:
    return ".".join(str(p) for p in parts)


# --- version formats of Azureus-style ids -------------------------------------
# Each takes the 20-byte id (possibly shorter) and returns the version text, or
# None when the characters are not what the client would write: the caller then
# shows the client's name alone.

VersionFormat = Callable[[bytes], "str | None"]


def _ver_none(pid: bytes) -> str | None:
    return None


def _ver_three(pid: bytes) -> str | None:
    """``-XX1230-`` is 1.2.3 (the fourth character is ignored)."""
    d = _digits(pid[3:6], 3)
    return _dotted(d) if d else None


def _ver_four(pid: bytes) -> str | None:
    """``-XX1234-`` is 1.2.3.4 (Vuze, BiglyBT and the generic reading)."""
    d = _digits(pid[3:7], 4)
    return _dotted(d) if d else None


def _ver_libtorrent(pid: bytes) -> str | None:
    """libtorrent's ``generate_fingerprint``: major, minor, revision, tag, each
    one character, 10 and up as letters; a tag of 0 is not shown."""
    d = _digits(pid[3:7], 4)
    if not d:
        return None
    return _dotted(d if d[3] else d[:3])


def _ver_two_two(pid: bytes) -> str | None:
    """``-BC0241-`` is 2.41: two digits of major, two of minor."""
    major, minor = _decimal(pid[3:5]), pid[5:7]
    if major is None or _decimal(minor) is None:
        return None
    return f"{major}.{minor.decode('ascii')}"


def _ver_webtorrent(pid: bytes) -> str | None:
    """WebTorrent writes major and minor as two decimal digits each, no patch."""
    major, minor = _decimal(pid[3:5]), _decimal(pid[5:7])
    if major is None or minor is None:
        return None
    return f"{major}.{minor}"


_BUILD_TAGS = {
    ord("a"): "alpha",
    ord("A"): "alpha",
    ord("b"): "beta",
    ord("B"): "beta",
    ord("r"): "rc",
    ord("R"): "rc",
    ord("d"): "debug",
    ord("D"): "dev",
    ord("x"): "dev",
    ord("X"): "dev",
    ord("Z"): "dev",
}


def _tag(byte: int, allowed: str) -> str:
    """The suffix such as ``" (beta)"`` for a release letter, if this client uses that letter."""
    name = _BUILD_TAGS.get(byte)
    return f" ({name})" if name and chr(byte) in allowed else ""


def _ver_transmission(pid: bytes) -> str | None:
    """Transmission: ``-TR0006-`` is 0.6, ``-TR0072-`` 0.72, up to 3.x a major
    digit and a two-digit minor (``-TR3000-`` is 3.00), from 4.0 one character
    each for major, minor and patch (``-TR4060-`` is 4.0.6). The last
    character is ``0`` for a release, ``B`` for a beta, ``Z``/``X`` for a dev build."""
    v = pid[3:7]
    if len(v) < 4:
        return None
    tag = _tag(v[3], "BXZ")
    if v[:3] == b"000":
        return f"0.{chr(v[3])}" if 0x30 <= v[3] <= 0x39 else None
    if v[:2] == b"00":
        minor = v[2:4]
        return f"0.{minor.decode('ascii')}" if _decimal(minor) is not None else None
    if 0x31 <= v[0] <= 0x33:
        minor = v[1:3]
        return f"{chr(v[0])}.{minor.decode('ascii')}{tag}" if _decimal(minor) is not None else None
    d = _digits(v[:3], 3)
    return f"{_dotted(d)}{tag}" if d else None


def _ver_deluge(pid: bytes) -> str | None:
    """Deluge goes through libtorrent's fingerprint (``-DE13F0-`` is 1.3.15),
    and since 2.0 puts a release letter last: ``s`` stable, ``D`` development,
    ``a``/``b``/``r`` alpha, beta, release candidate."""
    d = _digits(pid[3:6], 3)
    if not d or len(pid) < 7:
        return None
    last = pid[6]
    if last in (ord("0"), ord("s")):
        return _dotted(d)
    tag = _tag(last, "Dabr")
    if tag:
        return _dotted(d) + tag
    extra = _b62(last)
    return _dotted(d + [extra]) if extra is not None else _dotted(d)


def _ver_utorrent(pid: bytes) -> str | None:
    """µTorrent and BitTorrent: hex digits for major, minor and patch, then a
    build letter (``-UT355W-`` is 3.5.5); when the patch needs two digits they
    take the place of the closing dash (``-UT3610B`` is 3.6.10 beta)."""
    if len(pid) < 8:
        return None
    major, minor = _hex(pid[3:4]), _hex(pid[4:5])
    if major is None or minor is None:
        return None
    if pid[7] == ord("-"):
        patch, build = _hex(pid[5:6]), pid[6]
    else:
        patch, build = _decimal(pid[5:7]), pid[7]
    if patch is None:
        return None
    return f"{major}.{minor}.{patch}{_tag(build, 'bBdxXZ')}"


def _ver_rakshasa(pid: bytes) -> str | None:
    """libtorrent (rakshasa), the library under rTorrent. Up to 0.13 one hex
    character each (``-lt0D60-`` is 0.13.6); from 0.14 two hex characters of
    minor and two of patch after an implied 0 major (``-lt0F04-`` is 0.15.4,
    ``-lt1014-`` is 0.16.20)."""
    wide = _hex(pid[3:5])
    if wide is None:
        return None
    if wide >= 14:
        patch = _hex(pid[5:7])
        return f"0.{wide}.{patch}" if patch is not None else None
    major, minor, patch = _hex(pid[3:4]), _hex(pid[4:5]), _hex(pid[5:6])
    if major is None or minor is None or patch is None:
        return None
    return f"{major}.{minor}.{patch}"


def _ver_ktorrent(pid: bytes) -> str | None:
    """KTorrent: major, minor, then ``D``/``R`` and a number for dev and release
    candidate builds (``-KT33D1-`` is 3.3 dev 1), else a plain patch digit."""
    d = _digits(pid[3:5], 2)
    if not d or len(pid) < 7:
        return None
    kind, n = pid[5], _b62(pid[6])
    if kind in (ord("D"), ord("R")) and n is not None:
        return f"{_dotted(d)} {'dev' if kind == ord('D') else 'rc'} {n}"
    return _ver_three(pid)


def _ver_picotorrent(pid: bytes) -> str | None:
    """PicoTorrent: one character of major, two decimal digits of minor, one of
    patch (``-PI0120-`` is 0.12.0)."""
    major, minor, patch = _digits(pid[3:4], 1), _decimal(pid[4:6]), _digits(pid[6:7], 1)
    if major is None or minor is None or patch is None:
        return None
    return f"{major[0]}.{minor}.{patch[0]}"


def _ver_bitlord(pid: bytes) -> str | None:
    """BitLord after 0.59: ``-BL246326`` is 2.4.6 build 326."""
    d = _digits(pid[3:6], 3)
    build = pid[6:9]
    if not d or _decimal(build) is None:
        return None
    return f"{_dotted(d)}-{build.decode('ascii')}"


def _ver_mldonkey(pid: bytes) -> str | None:
    """MLDonkey writes the dotted version itself: ``-ML2.7.2-``."""
    text = pid[3:9].split(b"-", 1)[0]
    if not text or not all(0x30 <= b <= 0x39 or b == 0x2E for b in text):
        return None
    return text.decode("ascii")


def _ver_anacrolix(pid: bytes) -> str | None:
    """anacrolix/torrent bumps ``-GT0003-`` when its behaviour on the wire
    changes; it is a revision number, not the release."""
    rev = _decimal(pid[3:7])
    return f"(rev {rev})" if rev is not None else None


# code -> (name, version format). Names as the projects spell them.
_AZUREUS: dict[bytes, tuple[str, VersionFormat]] = {
    b"7T": ("aTorrent", _ver_four),
    b"AB": ("AnyEvent::BitTorrent", _ver_four),
    b"AD": ("Advanced Download Manager", _ver_three),
    b"AG": ("Ares", _ver_four),
    b"A~": ("Ares", _ver_three),
    b"AR": ("Arctic Torrent", _ver_four),
    b"AT": ("Artemis", _ver_four),
    b"AV": ("Avicora", _ver_four),
    b"AX": ("BitPump", _ver_two_two),
    b"AZ": ("Vuze", _ver_four),
    b"BB": ("BitBuddy", _ver_four),
    b"BC": ("BitComet", _ver_two_two),
    b"BE": ("BitTorrent SDK", _ver_four),
    b"BF": ("Bitflu", _ver_none),
    b"BG": ("BTG", _ver_four),
    b"BI": ("BiglyBT", _ver_four),
    b"BL": ("BitLord", _ver_bitlord),
    b"BM": ("BitMagnet", _ver_four),
    b"BN": ("Baidu Netdisk", _ver_none),
    b"BP": ("BitTorrent Pro", _ver_four),
    b"BR": ("BitRocket", _ver_four),
    b"BS": ("BTSlave", _ver_four),
    b"BT": ("BitTorrent", _ver_utorrent),
    b"BW": ("BitTorrent Web", _ver_utorrent),
    b"BX": ("BittorrentX", _ver_four),
    b"CD": ("Enhanced CTorrent", _ver_two_two),
    b"CT": ("CTorrent", _ver_four),
    b"DE": ("Deluge", _ver_deluge),
    b"DP": ("Propagate Data Client", _ver_four),
    b"EB": ("EBit", _ver_four),
    b"ES": ("Electric Sheep", _ver_three),
    b"FC": ("FileCroc", _ver_four),
    b"FD": ("Free Download Manager", _ver_three),
    b"FG": ("FlashGet", _ver_two_two),
    b"FL": ("Folx", _ver_none),
    b"FT": ("FoxTorrent", _ver_four),
    b"FW": ("FrostWire", _ver_three),
    b"FX": ("Freebox BitTorrent", _ver_four),
    b"G3": ("G3 Torrent", _ver_none),
    b"GR": ("GetRight", _ver_four),
    b"GS": ("GSTorrent", _ver_four),
    b"GT": ("anacrolix/torrent", _ver_anacrolix),
    b"HK": ("Hekate", _ver_four),
    b"HL": ("Halite", _ver_three),
    b"HN": ("Hydranode", _ver_four),
    b"IL": ("iLivid", _ver_four),
    b"KG": ("KGet", _ver_four),
    b"KT": ("KTorrent", _ver_ktorrent),
    b"LC": ("LeechCraft", _ver_four),
    b"LH": ("LH-ABC", _ver_four),
    b"LK": ("Linkage", _ver_three),
    b"LP": ("Lphant", _ver_two_two),
    b"LR": ("LibreTorrent", _ver_three),
    b"Lr": ("LibreTorrent", _ver_three),
    b"LT": ("libtorrent", _ver_libtorrent),
    b"LW": ("LimeWire", _ver_none),
    b"MG": ("MediaGet", _ver_four),
    b"MK": ("Meerkat", _ver_four),
    b"ML": ("MLDonkey", _ver_mldonkey),
    b"MO": ("MonoTorrent", _ver_four),
    b"MP": ("MooPolice", _ver_three),
    b"MR": ("Miro", _ver_four),
    b"MT": ("Moonlight Torrent", _ver_four),
    b"NE": ("BT Next Evolution", _ver_four),
    b"NX": ("Net Transport", _ver_four),
    b"OS": ("OneSwarm", _ver_four),
    b"OT": ("OmegaTorrent", _ver_four),
    b"PD": ("Pando", _ver_four),
    b"PE": ("PeerProject", _ver_four),
    b"PI": ("PicoTorrent", _ver_picotorrent),
    b"PT": ("Popcorn Time", _ver_four),
    b"QD": ("QQDownload", _ver_four),
    b"QT": ("Qt 4 Torrent example", _ver_four),
    b"RT": ("Retriever", _ver_four),
    b"RZ": ("RezTorrent", _ver_four),
    b"SB": ("Swiftbit", _ver_four),
    b"SD": ("Xunlei", _ver_four),
    b"SG": ("GS Torrent", _ver_four),
    b"SM": ("SoMud", _ver_four),
    b"SN": ("ShareNet", _ver_four),
    b"SP": ("BitSpirit", _ver_three),
    b"SS": ("SwarmScope", _ver_four),
    b"ST": ("SymTorrent", _ver_four),
    b"SZ": ("Shareaza", _ver_four),
    b"S~": ("Shareaza (beta)", _ver_four),
    b"TB": ("Torch Browser", _ver_none),
    b"TL": ("Tribler", _ver_libtorrent),
    b"TN": ("Torrent.NET", _ver_four),
    b"TO": ("torrent", _ver_libtorrent),  # this client: torrent.session.core.make_peer_id
    b"TR": ("Transmission", _ver_transmission),
    b"TS": ("TorrentStorm", _ver_four),
    b"TT": ("TuoTu", _ver_four),
    b"UE": ("\u00b5Torrent Embedded", _ver_utorrent),
    b"UL": ("uLeecher!", _ver_four),
    b"UM": ("\u00b5Torrent Mac", _ver_utorrent),
    b"UT": ("\u00b5Torrent", _ver_utorrent),
    b"UW": ("\u00b5Torrent Web", _ver_utorrent),
    b"VG": ("Vagaa", _ver_four),
    b"WD": ("WebTorrent Desktop", _ver_webtorrent),
    b"WS": ("HTTP Seed", _ver_none),
    b"WT": ("BitLet", _ver_four),
    b"WW": ("WebTorrent", _ver_webtorrent),
    b"WY": ("FireTorrent", _ver_four),
    b"XC": ("Xtorrent", _ver_four),
    b"XF": ("Xfplay", _ver_four),
    b"XL": ("Xunlei", _ver_four),
    b"XS": ("XSwifter", _ver_four),
    b"XT": ("XanTorrent", _ver_four),
    b"XX": ("Xtorrent", _ver_four),
    b"ZO": ("Zona", _ver_four),
    b"ZT": ("ZipTorrent", _ver_four),
    b"bk": ("BitKitten", _ver_four),
    b"lt": ("libtorrent (rakshasa)", _ver_rakshasa),
    b"pX": ("pHoeniX", _ver_four),
    b"pb": ("pbTorrent", _ver_three),
    b"qB": ("qBittorrent", _ver_libtorrent),
    b"rQ": ("rqbit", _ver_libtorrent),
    b"st": ("SharkTorrent", _ver_four),
}

# Clients known to put something other than "-" in the eighth byte: a longer
# version (µTorrent, BitLord, MLDonkey) or no closing dash at all.
_NO_CLOSING_DASH = frozenset(
    {b"BL", b"BT", b"BW", b"FG", b"KT", b"LH", b"ML", b"NE", b"SP", b"UE", b"UM", b"UT", b"UW"}
)


def _azureus(pid: bytes) -> str | None:
    if len(pid) < 7 or pid[0] != 0x2D:  # "-"
        return None
    code = pid[1:3]
    if not all(0x21 <= b <= 0x7E for b in code):
        return None
    closed = len(pid) >= 8 and pid[7] == 0x2D
    known = _AZUREUS.get(code)
    if known is None or not (closed or code in _NO_CLOSING_DASH):
        return None
    name, version = known
    text = version(pid)
    return f"{name} {text}" if text else name


def _azureus_unknown_code(pid: bytes) -> str | None:
    """A well-formed ``-XY1234-`` whose code is in no table: tried only after
    the peer's own ``v`` name, which says more than two letters."""
    code = pid[1:3]
    if len(pid) < 8 or pid[0] != 0x2D or pid[7] != 0x2D or not all(0x21 <= b <= 0x7E for b in code):
        return None
    d = _digits(pid[3:7], 4)
    return f"unknown client {code.decode('ascii')} {_dotted(d)}" if d is not None else None


# --- Shadow, Mainline and aria2 ------------------------------------------------

_SHADOW = {
    ord("A"): "ABC",
    ord("O"): "Osprey Permaseed",
    ord("Q"): "BTQueue",
    ord("R"): "Tribler",
    ord("S"): "Shadow",
    ord("T"): "BitTornado",
    ord("U"): "UPnP NAT BitTorrent",
}


def _shadow(pid: bytes) -> str | None:
    """One letter, up to five version characters from BitTornado's alphabet
    padded with ``-``, then ``---`` (``S58B-----`` is Shadow 5.8.11)."""
    if len(pid) < 9 or pid[6:9] != b"---":
        return None
    name = _SHADOW.get(pid[0])
    if name is None:
        return None
    version = pid[1:6].rstrip(b"-")
    if b"-" in version:  # dashes only pad the end
        return None
    values = []
    for byte in version:
        value = _B64_VALUE.get(byte)
        if value is None:
            return None
        values.append(value)
    return f"{name} {_dotted(values)}" if values else name


_MAINLINE = {ord("M"): "BitTorrent", ord("Q"): "Queen Bee"}
# Letter, then major-minor-patch in decimal, dashes after each filling the
# first 8 bytes: "M4-3-6--", "M4-20-8-".
_MAINLINE_RE = re.compile(rb"[MQ](\d{1,3})-(\d{1,3})-(\d{1,3})-+")


def _mainline(pid: bytes) -> str | None:
    m = _MAINLINE_RE.fullmatch(pid[:8]) if len(pid) >= 8 else None
    if m is None:
        return None
    return f"{_MAINLINE[pid[0]]} {'.'.join(str(int(g)) for g in m.groups())}"


# "A2-1-36-0-": aria2's util::generatePeerId prefix, the version in decimal.
_ARIA2_RE = re.compile(rb"A2-(\d{1,3})-(\d{1,3})-(\d{1,3})-")


def _aria2(pid: bytes) -> str | None:
    m = _ARIA2_RE.match(pid)
    if m is not None:
        return "aria2 " + ".".join(str(int(g)) for g in m.groups())
    if pid.startswith(b"-aria2-"):  # before 1.0
        return "aria2"
    return None


# --- one-off conventions -----------------------------------------------------


def _bitcomet_exbc(pid: bytes) -> str | None:
    """BitComet before 0.59 (and BitLord, which adds ``LORD``): ``exbc`` then
    one byte of major and one of minor, shown as two digits."""
    if len(pid) < 6 or pid[:4] not in (b"exbc", b"FUTB", b"xUTB"):
        return None
    name = "BitLord" if pid[6:10] == b"LORD" else "BitComet"
    return f"{name} {pid[4]}.{pid[5]:02d}"


def _opera(pid: bytes) -> str | None:
    """Opera 8 and 9: ``OP`` and the four-digit build number."""
    if not pid.startswith(b"OP"):
        return None
    build = _decimal(pid[2:6])
    return f"Opera build {pid[2:6].decode('ascii')}" if build is not None else "Opera"


def _xbt(pid: bytes) -> str | None:
    """XBT Client: ``XBT`` then three version digits and ``d`` for a debug build."""
    if not pid.startswith(b"XBT"):
        return None
    d = pid[3:6]
    if _decimal(d) is None or len(d) < 3:
        return "XBT Client"
    debug = " (debug)" if pid[6:7] == b"d" else ""
    return f"XBT Client {d[0] - 0x30}.{d[1] - 0x30}.{d[2] - 0x30}{debug}"


def _tixati(pid: bytes) -> str | None:
    """Tixati: ``TIX0193-`` is 1.93."""
    if not pid.startswith(b"TIX"):
        return None
    major, minor = _decimal(pid[3:5]), pid[5:7]
    if major is None or _decimal(minor) is None:
        return "Tixati"
    return f"Tixati {major}.{minor.decode('ascii')}"


def _bitspirit(pid: bytes) -> str | None:
    """BitSpirit before 3.6: a zero byte, the major version as a byte, ``BS``."""
    if len(pid) < 4 or pid[0] != 0 or pid[2:4] != b"BS":
        return None
    return f"BitSpirit {pid[1] or 1}"


def _bits_on_wheels(pid: bytes) -> str | None:
    return "Bits on Wheels" if pid.startswith(b"-BOW") else None


# Fixed strings at a fixed offset, no version worth decoding.
_LITERALS: tuple[tuple[int, bytes, str], ...] = (
    (0, b"AZ2500BT", "BitTyrant"),
    (0, b"Azureus", "Azureus 1"),
    (5, b"Azureus", "Azureus 2.0.3.2"),
    (0, b"Deadman Walking-", "Deadman"),
    (0, b"BTDWV-", "Deadman Walking"),
    (0, b"DansClient", "XanTorrent"),
    (4, b"btfans", "SimpleBT"),
    (0, b"PRC.P---", "BitTorrent Plus! II"),
    (0, b"P87.P---", "BitTorrent Plus!"),
    (0, b"S587Plus", "BitTorrent Plus!"),
    (0, b"Plus", "Plus!"),
    (0, b"martini", "Martini Man"),
    (0, b"turbobt", "TurboBT"),
    (0, b"a00---0", "Swarmy"),
    (0, b"a02---0", "Swarmy"),
    (0, b"T00---0", "Teeweety"),
    (0, b"Pando", "Pando"),
    (0, b"LIME", "LimeWire"),
    (0, b"btuga", "BTugaXP"),
    (0, b"oernu", "BTugaXP"),
    (0, b"Mbrst", "Burst!"),
    (0, b"PEERAPP", "PeerApp"),
    (0, b"-Qt-", "Qt"),
    (0, b"DNA", "BitTorrent DNA"),
    (0, b"btpd", "BT Protocol Daemon"),
    (0, b"QVOD", "QVOD"),
    (0, b"BLZ", "Blizzard Downloader"),
    (0, b"346-", "TorrentTopia"),
    (0, b"10-------", "JVtorrent"),
    (0, b"271-", "GreedBT 2.7.1"),
    (0, b"S3-", "Amazon S3"),
    (0, b"FD6", "Free Download Manager 6"),
    (0, b"eX", "eXeem"),
)


def _literal(pid: bytes) -> str | None:
    for offset, text, name in _LITERALS:
        if pid.startswith(text, offset):
            return name
    return None


# Order matters: the specific prefixes first, since "-BOW..." or "-aria2-" also
# look Azureus-style and "A2-..." starts with a Shadow letter.
_DECODERS: tuple[Callable[[bytes], str | None], ...] = (
    _aria2,
    _bitcomet_exbc,
    _bits_on_wheels,
    _literal,
    _opera,
    _xbt,
    _tixati,
    _azureus,
    _mainline,
    _shadow,
    _bitspirit,
)


# --- fallbacks ------------------------------------------------------------------

# Control, format, surrogate and unassigned code points, and line/paragraph
# separators: none of them belongs in a table cell.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def _visible(text: str) -> str:
    return "".join(ch for ch in text if unicodedata.category(ch) not in _HIDDEN_CATEGORIES)


def _clean_v(v: object) -> str:
    if isinstance(v, (bytes, bytearray)):
        v = bytes(v).decode("utf-8", "replace")
    if not isinstance(v, str):
        return ""
    words = (_visible(word) for word in v.split())  # line breaks and tabs become spaces
    return " ".join(word for word in words if word)[:MAX_V_LENGTH].strip()


def _escaped_prefix(pid: bytes) -> str:
    """The first 8 bytes, printable ASCII as is, anything else (and the
    backslash, to keep it unambiguous) as ``\\xNN``."""
    return "".join(chr(b) if 0x20 <= b <= 0x7E and b != 0x5C else f"\\x{b:02x}" for b in pid[:8])


def client_name(peer_id: bytes, v: str | bytes | None = None) -> str:
    """A human-readable client name and version for a peer id.

    ``v`` is the ``v`` entry of the peer's BEP 10 extension handshake, used
    only when the id names no known client; it is cleaned of control
    characters and cut to :data:`MAX_V_LENGTH`. Without it an Azureus-style id
    of an unknown code reads "unknown client XY 1.2.3.4", and anything else
    "unknown (...)" with its first 8 bytes. Never raises; the result is never
    empty and holds no control characters.
    """
    pid = bytes(peer_id) if isinstance(peer_id, (bytes, bytearray, memoryview)) else b""
    for decode in _DECODERS:
        name = decode(pid)
        if name:
            return _visible(name)
    cleaned = _clean_v(v)
    if cleaned:
        return cleaned
    guess = _azureus_unknown_code(pid)
    if guess:
        return guess
    return f"unknown ({_escaped_prefix(pid)})" if pid else "unknown"
