"""The blocklist parser: eMule .dat and PeerGuardian .p2p lines, gzip, problems by line, limits, and
the fast and careful paths reading every line alike. Bytes in, ranges out: no files, no sockets."""

from __future__ import annotations

import gzip
import ipaddress
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torrent.codec import blocklist
from torrent.codec.blocklist import MAX_LINE, MAX_PROBLEMS, BlocklistParser, Problem, parse
from torrent.core.errors import BlocklistError

BIG = 1 << 20


def ranges(data: bytes) -> list[tuple[int, str, str]]:
    """The merged ranges as text, for readable assertions."""
    kind = {4: ipaddress.IPv4Address, 6: ipaddress.IPv6Address}
    return [(version, str(kind[version](first)), str(kind[version](last)))
            for version, first, last in parse(data, max_size=BIG).filter.ranges()]


# ---- eMule .dat -------------------------------------------------------------------------------


def test_dat_lines_with_and_without_level_and_description() -> None:
    data = (b"001.009.096.105 - 001.009.096.110 , 000 , Some organization\n"
            b"2.2.2.2 - 2.2.2.3 , 0\n"
            b"3.3.3.3-3.3.3.4\n"
            b"4.4.4.4 - 4.4.4.5 , 100 , a, description, with commas - and - dashes\n")
    assert ranges(data) == [(4, "1.9.96.105", "1.9.96.110"), (4, "2.2.2.2", "2.2.2.3"),
                            (4, "3.3.3.3", "3.3.3.4"), (4, "4.4.4.4", "4.4.4.5")]


def test_leading_zeros_are_decimal_not_octal() -> None:
    # Octal would read 010 as 8 and 011 as 9.
    f = parse(b"010.000.000.010 - 010.000.000.011 , 000 , x\n", max_size=BIG).filter
    assert f.blocks("10.0.0.10") and f.blocks("10.0.0.11")
    assert not f.blocks("8.0.0.8") and not f.blocks("8.0.0.9")


def test_levels_above_127_are_not_blocked_as_in_emule_and_qbittorrent() -> None:
    data = (b"1.0.0.0 - 1.0.0.255 , 127 , blocked\n"
            b"2.0.0.0 - 2.0.0.255 , 128 , allowed\n"
            b"3.0.0.0 - 3.0.0.255 , 0128 , allowed\n"
            b"4.0.0.0 - 4.0.0.255 , 00000000000000000000000000000000000000000000255 , allowed\n"
            b"5.0.0.0 - 5.0.0.255 , 99999999999999999999999999999999999999 , allowed\n"
            b"6.0.0.0 - 6.0.0.255 , , blocked: empty level\n"
            b"2001:db8:: - 2001:db8::ff , 200 , allowed\n"
            b"1.2.3.300 - 1.2.3.4 , 200 , allowed: its range is not even read (qBittorrent)\n")
    result = parse(data, max_size=BIG)
    assert [r[1] for r in ranges(data)] == ["1.0.0.0", "6.0.0.0"]
    assert (result.entries, result.allowed, result.problem_count) == (2, 6, 0)


def test_dat_ipv6_ranges() -> None:
    data = b"2001:db8:: - 2001:db8::ffff , 000 , v6\n::ffff:7.7.7.0 - ::ffff:7.7.7.255 , 0 , mapped\n"
    f = parse(data, max_size=BIG).filter
    assert f.blocks("2001:db8::1") and not f.blocks("2001:db8::1:0")
    assert f.blocks("7.7.7.7") and f.blocks("::ffff:7.7.7.7")
    assert f.v6_ranges == 2 and f.v4_ranges == 0


# ---- PeerGuardian .p2p ------------------------------------------------------------------------


def test_p2p_lines_split_on_the_last_colon() -> None:
    data = (b"Some organization:1.0.0.0-1.0.255.255\n"
            b"Org: with: colons and - dashes:2.0.0.0-2.0.0.9\n"
            b":3.0.0.0-3.0.0.0\n"
            b"Spaced : 004.000.000.001 - 004.000.000.002\n")
    assert ranges(data) == [(4, "1.0.0.0", "1.0.255.255"), (4, "2.0.0.0", "2.0.0.9"),
                            (4, "3.0.0.0", "3.0.0.0"), (4, "4.0.0.1", "4.0.0.2")]


def test_p2p_ipv6_after_a_description_with_colons() -> None:
    data = b"My:Company:Label:2001:db8::1-2001:db8::ff\nx:::1-::2\n"
    assert ranges(data) == [(6, "::1", "::2"), (6, "2001:db8::1", "2001:db8::ff")]


def test_a_line_of_each_format_in_one_file() -> None:
    data = b"1.0.0.0 - 1.0.0.9 , 0 , dat\np2p:2.0.0.0-2.0.0.9\n"
    assert ranges(data) == [(4, "1.0.0.0", "1.0.0.9"), (4, "2.0.0.0", "2.0.0.9")]


# ---- comments, blank lines, line ends -------------------------------------------------------


def test_comments_blank_lines_and_crlf() -> None:
    data = (b"# a comment 1.1.1.1 - 1.1.1.2\r\n"
            b"   // another:2.2.2.2-2.2.2.3\r\n"
            b"\r\n   \t \r\n"
            b"#comment:3.3.3.3-3.3.3.4\r\n"
            b"4.4.4.4 - 4.4.4.5 , 0 , x\r\n"
            b"p2p:5.5.5.5-5.5.5.6\r\n")
    result = parse(data, max_size=BIG)
    assert ranges(data) == [(4, "4.4.4.4", "4.4.4.5"), (4, "5.5.5.5", "5.5.5.6")]
    assert result.problem_count == 0


def test_the_last_line_needs_no_newline() -> None:
    assert ranges(b"x:1.1.1.1-1.1.1.2") == [(4, "1.1.1.1", "1.1.1.2")]
    assert ranges(b"1.1.1.1 - 1.1.1.2 , 0 , x\nx:2::1-2::2") == [(4, "1.1.1.1", "1.1.1.2"), (6, "2::1", "2::2")]


def test_an_empty_file_or_only_comments_is_an_empty_list_not_an_error() -> None:
    for data in (b"", b"\n\n", b"# nothing yet\n"):
        result = parse(data, max_size=BIG)
        assert len(result.filter) == 0 and result.problem_count == 0


# ---- merging and edges -----------------------------------------------------------------------


def test_overlapping_and_adjacent_ranges_merge_and_edges_hold() -> None:
    data = (b"1.0.0.0 - 1.0.0.100 , 0 , a\n"
            b"b:1.0.0.50-1.0.0.200\n"
            b"1.0.0.201 - 1.0.0.255 , 0 , adjacent\n"
            b"1.0.1.1 - 1.0.1.1 , 0 , one address after a gap\n")
    result = parse(data, max_size=BIG)
    assert ranges(data) == [(4, "1.0.0.0", "1.0.0.255"), (4, "1.0.1.1", "1.0.1.1")]
    assert result.entries == 4
    f = result.filter
    assert [f.blocks(a) for a in ("0.255.255.255", "1.0.0.0", "1.0.0.255", "1.0.1.0", "1.0.1.1", "1.0.1.2")] == \
        [False, True, True, False, True, False]


def test_the_whole_address_space_at_its_edges() -> None:
    f = parse(b"0.0.0.0 - 0.0.0.0 , 0 , x\ny:255.255.255.255-255.255.255.255\n", max_size=BIG).filter
    assert f.blocks("0.0.0.0") and f.blocks("255.255.255.255")
    assert not f.blocks("0.0.0.1") and not f.blocks("255.255.255.254")


# ---- problems ----------------------------------------------------------------------------------


def test_malformed_lines_are_reported_by_number_and_skipped() -> None:
    data = b"\n".join([
        b"# header",                                     # 1
        b"1.0.0.0 - 1.0.0.9 , 0 , good",                 # 2
        b"this is not a range",                          # 3
        b"2.0.0.0 - 2.0.0.300 , 0 , octet",              # 4
        b"3.0.0.9 - 3.0.0.0 , 0 , reversed",             # 5
        b"4.0.0.0 - 4.0.0.9 , abc , level",              # 6
        b"5.0.0.0 - ::1 , 0 , families",                 # 7
        b"desc:6.0.0.0-6.0.0.x",                         # 8
        b"desc:7.0.0.300-7.0.0.1",                       # 9
        b"1.2.3 - 1.2.3.4 , 0 , short",                  # 10
        b"good:8.0.0.0-8.0.0.9",                         # 11
        b"x" * (MAX_LINE + 1),                           # 12
    ])
    result = parse(data, max_size=BIG)
    assert ranges(data) == [(4, "1.0.0.0", "1.0.0.9"), (4, "8.0.0.0", "8.0.0.9")]
    assert result.problem_count == 9
    assert result.problems == (
        Problem(3, "not a range: expected 'A - B , level , description' or 'description:A-B'"),
        Problem(4, "end address '2.0.0.300' has an octet over 255"),
        Problem(5, "the start address is after the end address"),
        Problem(6, "access level 'abc' is not a number"),
        Problem(7, "one address is IPv4, the other IPv6"),
        Problem(8, "end address '6.0.0.x' is not an IP address"),
        Problem(9, "start address '7.0.0.300' has an octet over 255"),
        Problem(10, "start address '1.2.3' is not an IP address"),
        Problem(12, f"longer than {MAX_LINE} bytes"),
    )


def test_problems_are_kept_up_to_a_bound_and_counted_beyond() -> None:
    data = b"good:1.1.1.1-1.1.1.1\n" + b"bad\n" * (MAX_PROBLEMS + 7)
    result = parse(data, max_size=BIG)
    assert result.problem_count == MAX_PROBLEMS + 7 and len(result.problems) == MAX_PROBLEMS
    assert [p.line for p in result.problems] == list(range(2, MAX_PROBLEMS + 2))


def test_a_file_with_no_valid_line_is_refused_naming_the_first_problem() -> None:
    with pytest.raises(BlocklistError, match=r"no valid line: 2 malformed \(line 2: not a range"):
        parse(b"# comment\n<html>\n</html>\n", max_size=BIG)
    with pytest.raises(BlocklistError, match="no valid line"):
        parse(b"\xff\xff\xff\xffP2B\x03" + bytes(range(256)), max_size=BIG)  # a binary p2b list


def test_control_characters_in_a_problem_are_escaped() -> None:
    result = parse(b"ok:1.1.1.1-1.1.1.1\n1.1.1.1 - 1.1.1.\x1b[2J , 0\n", max_size=BIG)
    assert "\x1b" not in result.problems[0].reason and "\\x1b" in result.problems[0].reason


# ---- gzip, chunks and limits -------------------------------------------------------------------


SAMPLE = (b"# sample\n1.0.0.0 - 1.0.0.9 , 0 , a\nb:2.0.0.0-2.0.0.9\nbad line\n2001:db8:: - 2001:db8::f , 0\n"
          b"3.0.0.0 - 3.0.0.9 , 200 , allowed\nlast:4.0.0.0-4.0.0.9")


def summary(result: blocklist.Blocklist) -> tuple[object, ...]:
    return result.filter.ranges(), result.entries, result.allowed, result.problems, result.problem_count


def test_gzip_is_told_by_its_magic_bytes_and_read_like_text() -> None:
    plain = parse(SAMPLE, max_size=BIG)
    assert summary(parse(gzip.compress(SAMPLE), max_size=BIG)) == summary(plain)
    # Several members one after another (``cat a.gz b.gz``) are one file.
    half = SAMPLE.index(b"bad line")
    assert summary(parse(gzip.compress(SAMPLE[:half]) + gzip.compress(SAMPLE[half:]), max_size=BIG)) == \
        summary(plain)


@pytest.mark.parametrize("compress", [False, True], ids=["text", "gzip"])
def test_any_chunking_gives_the_same_result(compress: bool) -> None:
    data = gzip.compress(SAMPLE) if compress else SAMPLE
    whole = summary(parse(data, max_size=BIG))
    rng = random.Random(7)
    for sizes in ([1] * len(data), [rng.randint(1, 9) for _ in range(len(data))]):
        parser = BlocklistParser(BIG)
        pos = 0
        for size in sizes:
            parser.feed(data[pos:pos + size])
            pos += size
        assert summary(parser.finish()) == whole


def test_broken_gzip_is_refused() -> None:
    packed = gzip.compress(SAMPLE)
    with pytest.raises(BlocklistError, match="truncated"):
        parse(packed[:-10], max_size=BIG)
    with pytest.raises(BlocklistError, match="not a valid gzip file"):
        parse(packed[:10] + b"\x00" * 40 + packed[50:], max_size=BIG)
    with pytest.raises(BlocklistError, match="after the end of the gzip stream"):
        parse(packed + b"trailing text", max_size=BIG)


def test_the_size_limit_holds_for_text_and_for_what_gzip_inflates_to() -> None:
    assert len(parse(SAMPLE, max_size=len(SAMPLE)).filter) > 0
    with pytest.raises(BlocklistError, match="larger than"):
        parse(SAMPLE, max_size=len(SAMPLE) - 1)
    bomb = gzip.compress(b"#" * (64 << 20))  # 64 KiB that inflate to 64 MiB
    parser = BlocklistParser(1 << 20)
    with pytest.raises(BlocklistError, match="larger than 1.0 MiB"):
        parser.feed(bomb)
    assert parser._size <= (1 << 20) + 1 + len(bomb)  # stopped near the limit, not at 64 MiB


# ---- the two paths agree -------------------------------------------------------------------------


V6_KEEP = int(ipaddress.IPv6Address("ffff::"))
_octet = st.one_of(st.integers(0, 255).map(str), st.integers(0, 255).map(lambda v: f"{v:03d}"),
                   st.sampled_from(["256", "999", "00", "1000"]))
_v4 = st.lists(_octet, min_size=4, max_size=4).map(".".join)
_space = st.sampled_from(["", " ", "\t", "  "])
_desc = st.text(st.sampled_from("ab :,-#/1."), max_size=12)


@st.composite
def _line(draw: st.DrawFn) -> str:
    start, end = draw(_v4), draw(_v4)
    s1, s2, s3 = draw(_space), draw(_space), draw(_space)
    trail = draw(st.sampled_from(["", "", " ", "\t", " x", ",", "\r"]))
    if draw(st.booleans()):
        level = draw(st.sampled_from(["", "0", "000", "127", "128", "0128", "255", "12345", "1x"]))
        tail = draw(st.sampled_from(["", f",{s3}{level}", f",{s3}{level}{s1},{draw(_desc)}"]))
        return f"{s1}{start}{s2}-{s3}{end}{s1}{tail}{trail}"
    return f"{draw(_desc)}:{s2}{start}{s3}-{s1}{end}{trail}"


@settings(max_examples=400, deadline=None)
@given(_line())
def test_the_fast_path_reads_every_line_as_the_careful_path_does(line: str) -> None:
    """The chunk-wide pattern is an optimisation: whatever it takes, ``_careful`` (which reads
    IPv6 and odd lines, one at a time) must give the same range, the same allowance, or a problem."""
    keep = (6, V6_KEEP, V6_KEEP)  # a valid first line, so that the file is never refused whole
    result = parse(b"keep:ffff::-ffff::\n" + line.encode() + b"\n", max_size=BIG)
    if line.lstrip(" \t").startswith(("#", "//")):
        assert (result.filter.ranges(), result.entries, result.problem_count) == ([keep], 1, 0)  # a comment
        return
    try:
        careful = blocklist._careful(line.encode())
    except blocklist._Malformed as exc:
        assert result.problems == (Problem(2, str(exc)),)
        return
    if careful is None:
        assert (result.allowed, result.entries) == (1, 1)
    else:
        assert result.filter.ranges() == [careful, keep] and result.entries == 2
