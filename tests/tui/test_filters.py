"""The filter language: each field and operator, precedence, quoting, units, and errors a user can act on."""

from __future__ import annotations

import pytest
from fakes import MiB, NOW, make_peer, make_torrent
from hypothesis import given, settings
from hypothesis import strategies as st

from torrent.session import TorrentState
from tui.columns import PEER_COLUMNS
from tui.filters import FIELDS, FilterError, compile_filter

GiB = 1024 * MiB

UBUNTU = make_torrent(id="1" * 40, name="ubuntu-24.04-desktop-amd64.iso", state="seeding", progress=1.0,
                      total_size=6 * GiB, wanted_size=6 * GiB, down_rate=0.0, up_rate=2 * MiB, eta=None, ratio=0.8,
                      peers=40, seeds=0, save_path="/srv/linux", queue_position=1, private=True)
MOVIE = make_torrent(id="2" * 40, name="Big Buck Bunny 1080p", state="paused", progress=0.5, total_size=700 * MiB,
                     wanted_size=350 * MiB, down_rate=0.0, up_rate=0.0, eta=None, ratio=2.5, peers=0, seeds=0,
                     save_path="/home/user/Movies", queue_position=2, sequential=True, last_error="disk full: /home",
                     added_at=NOW - 3 * 86400)
DEBIAN = make_torrent()  # downloading, 42%, 700 MiB, 3.2 MiB/s down, eta 127 s, ratio 0.12, 12 peers, 7 seeds
ALL = (DEBIAN, UBUNTU, MOVIE)


def names(text: str) -> list[str]:
    """The names of the torrents ``text`` keeps, in the fixed order debian, ubuntu, movie."""
    predicate = compile_filter(text, now=lambda: NOW)
    return [t.name.split("-")[0].split()[0].lower() for t in ALL if predicate(t)]


def error(text: str) -> FilterError:
    with pytest.raises(FilterError) as info:
        compile_filter(text)
    return info.value


# ---- the issue's examples and the basic forms -----------------------------------------------


def test_examples_from_the_issue() -> None:
    linux_seed = UBUNTU._replace(name="linux-6.12.tar.xz")
    predicate = compile_filter("state:seeding ratio<1 name~linux")
    assert predicate(linux_seed)
    assert not predicate(linux_seed._replace(ratio=1.0))
    assert not predicate(linux_seed._replace(state="paused"))
    assert not predicate(UBUNTU)
    assert names("seeds>50") == []
    assert compile_filter("seeds>50")(DEBIAN._replace(seeds=51))


@pytest.mark.parametrize("text", ["", "   ", "\t\n"])
def test_blank_matches_everything(text: str) -> None:
    assert names(text) == ["debian", "ubuntu", "big"]


def test_a_bare_word_searches_the_name_case_insensitively() -> None:
    assert names("UBUNTU") == ["ubuntu"]
    assert names("iso") == ["debian", "ubuntu"]
    assert names("bunny 1080P") == ["big"]


# ---- operators ------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("peers:12", ["debian"]),
    ("peers=12", ["debian"]),
    ("peers!=12", ["ubuntu", "big"]),
    ("peers<12", ["big"]),
    ("peers<=12", ["debian", "big"]),
    ("peers>12", ["ubuntu"]),
    ("peers>=12", ["debian", "ubuntu"]),
])
def test_number_operators(text: str, expected: list[str]) -> None:
    assert names(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("name:BUNNY", ["big"]),  # contains
    ("name~buck", ["big"]),  # contains
    ("name=big buck", []),  # two terms: "buck" is a bare word, and name=big is the whole name
    ('name="big buck bunny 1080P"', ["big"]),  # the whole name, case-insensitive
    ('name!="big buck bunny 1080p"', ["debian", "ubuntu"]),
    ("name=bunny", []),
])
def test_text_operators(text: str, expected: list[str]) -> None:
    assert names(text) == expected


def test_regular_expressions_search_case_insensitively() -> None:
    assert names(r"name~/^(debian|ubuntu)-\d+/") == ["debian", "ubuntu"]
    assert names("name~/BUNNY$/") == []
    assert names("name~/1080P$/") == ["big"]
    assert names("name~/ (buck) /") == ["big"]  # spaces and parentheses inside the slashes
    assert names(r"path~/user\/movies/") == ["big"]  # \/ is a slash


# ---- fields ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("state:seeding", ["ubuntu"]),
    ("status=paused", ["big"]),
    ("s!=downloading", ["ubuntu", "big"]),
    ("s:down", ["debian"]),  # a unique prefix is enough
    ("s:active", ["debian", "ubuntu"]),
    ("s!=active", ["big"]),
    ("s:complete", ["ubuntu"]),
    ("s:incomplete", ["debian", "big"]),
    ("s~ing", ["debian", "ubuntu"]),
    ("s~/^(paused|seeding)$/", ["ubuntu", "big"]),
])
def test_state(text: str, expected: list[str]) -> None:
    assert names(text) == expected


def test_state_values_cover_the_engine_states() -> None:
    for state in TorrentState:
        assert compile_filter(f"state:{state.value}")(DEBIAN._replace(state=state.value))


@pytest.mark.parametrize(("text", "expected"), [
    ("progress>=50", ["ubuntu", "big"]),
    ("pct=42", ["debian"]),  # 0.42 is 42%, with no rounding error
    ("%<50%", ["debian"]),
    ("pct:100", ["ubuntu"]),
])
def test_progress_is_a_percentage(text: str, expected: list[str]) -> None:
    assert names(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("size>1G", ["ubuntu"]),
    ("size>=6GiB", ["ubuntu"]),
    ("total_size<700M", []),
    ("size=700M", ["debian", "big"]),
    ("size>1.5G", ["ubuntu"]),
    ("size>0.9gb", ["ubuntu"]),
    (f"size={700 * MiB}", ["debian", "big"]),
    ("wanted<400M", ["big"]),
    ("wanted_size>=700MiB", ["debian", "ubuntu"]),
])
def test_sizes_take_binary_units(text: str, expected: list[str]) -> None:
    assert names(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("down>3M", ["debian"]),
    ("dl>3M/s", ["debian"]),
    ("downrate>4M", []),
    ("down=0", ["ubuntu", "big"]),
    ("up>=2M", ["ubuntu"]),
    ("ul>400K/s", ["debian", "ubuntu"]),
    ("uprate<1", ["big"]),
])
def test_rates_take_units(text: str, expected: list[str]) -> None:
    assert names(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("ratio<1", ["debian", "ubuntu"]),
    ("ratio>=2.5", ["big"]),
    ("ratio>.5", ["ubuntu", "big"]),
    ("peers:0", ["big"]),
    ("seeds>0", ["debian"]),
    ("queue:0", ["debian"]),
    ("queue_position>=1", ["ubuntu", "big"]),
])
def test_plain_numbers(text: str, expected: list[str]) -> None:
    assert names(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("eta<10m", ["debian"]),
    ("eta<127", []),
    ("eta<=127", ["debian"]),
    ("eta>1s", ["debian"]),
    ("eta<1d", ["debian"]),
    ("eta!=5", ["debian"]),  # an unknown ETA matches no comparison, not even !=
    ("-eta<1h", ["ubuntu", "big"]),
    ("eta>1h30m", []),
])
def test_eta_is_a_duration_and_unknown_never_matches(text: str, expected: list[str]) -> None:
    assert names(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("age>2d", ["big"]),
    ("age<1h", []),  # debian was added exactly an hour ago
    ("age<=1h", ["debian", "ubuntu"]),
    ("added>=3d", ["big"]),
    ("age>0.5w", []),
])
def test_age_counts_from_added_at(text: str, expected: list[str]) -> None:
    assert names(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("path:/srv", ["ubuntu"]),
    ("dir~movies", ["big"]),
    ("save_path=/home/user/downloads", ["debian"]),
    ("path~/^\\/home/", ["debian", "big"]),
])
def test_path(text: str, expected: list[str]) -> None:
    assert names(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("error:yes", ["big"]),
    ("error:no", ["debian", "ubuntu"]),
    ("error!=yes", ["debian", "ubuntu"]),
    ("error=true", ["big"]),
    ("error~DISK", ["big"]),
    ("error:full", ["big"]),
    ("error~/full: \\/home$/", ["big"]),
    ("error~network", []),
])
def test_error(text: str, expected: list[str]) -> None:
    assert names(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("private:yes", ["ubuntu"]),
    ("private:true", ["ubuntu"]),
    ("private:1", ["ubuntu"]),
    ("private=no", ["debian", "big"]),
    ("private:false", ["debian", "big"]),
    ("private!=0", ["ubuntu"]),
    ("private:y", ["ubuntu"]),  # a unique prefix is enough
    ("sequential:yes", ["big"]),
    ("forced:no", ["debian", "ubuntu", "big"]),
])
def test_booleans(text: str, expected: list[str]) -> None:
    assert names(text) == expected


def test_field_names_are_case_insensitive() -> None:
    assert names("State:Seeding") == ["ubuntu"]


def test_fields_describe_every_name_and_alias_once() -> None:
    every = [n for f in FIELDS for n in (f.name, *f.aliases)]
    assert len(every) == len(set(every))
    assert {"name", "state", "progress", "size", "wanted", "down", "up", "ratio", "peers", "seeds", "eta", "path",
            "error", "private", "sequential", "forced", "queue", "age"} == {f.name for f in FIELDS}
    for f in FIELDS:
        assert f.help
        compile_filter(f"{f.name}:{f.values[0] if f.values else 1}")


# ---- combining ------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("s:seeding | s:paused", ["ubuntu", "big"]),
    ("s:seeding or s:paused", ["ubuntu", "big"]),
    ("s:seeding OR s:paused", ["ubuntu", "big"]),
    ("iso peers>12 | bunny", ["ubuntu", "big"]),  # AND binds tighter: (iso peers>12) | bunny
    ("bunny | iso peers>12", ["ubuntu", "big"]),
    ("(bunny | iso) peers>12", ["ubuntu"]),
    ("!s:paused", ["debian", "ubuntu"]),
    ("not s:paused", ["debian", "ubuntu"]),
    ("-s:paused", ["debian", "ubuntu"]),
    ("- s:paused", ["debian", "ubuntu"]),
    ("!!s:paused", ["big"]),
    ("-iso | peers:0", ["big"]),  # NOT binds tighter than OR
    ("!(iso | peers:0)", []),
    ("not (s:paused or s:seeding) iso", ["debian"]),
    ("((iso))", ["debian", "ubuntu"]),
    ("iso|bunny", ["debian", "ubuntu", "big"]),
    ("(s:paused)(iso)", []),
])
def test_and_or_not_and_parentheses(text: str, expected: list[str]) -> None:
    assert names(text) == expected


def test_quoted_values_hold_spaces_keywords_and_operators() -> None:
    assert names('"buck bunny"') == ["big"]
    assert names('name:"Buck Bunny"') == ["big"]
    assert names('"or"') == []  # a name search, not the keyword
    assert compile_filter('"a|b (c)"')(DEBIAN._replace(name="x a|b (c) y"))
    assert compile_filter(r'name:"say \"hi\""')(DEBIAN._replace(name='they say "hi"'))
    assert names('name:""') == ["debian", "ubuntu", "big"]  # an empty quoted value is contained everywhere


def test_words_with_symbols_are_names() -> None:
    assert names("debian-13") == ["debian"]
    assert compile_filter("S01E02")(DEBIAN._replace(name="show.s01e02.mkv"))
    assert compile_filter("50%off")(DEBIAN._replace(name="50%off"))


# ---- errors ---------------------------------------------------------------------------------


def test_unknown_field_suggests_the_closest() -> None:
    e = error("iso sedes>5")
    assert "unknown field 'sedes'" in str(e) and "did you mean 'seeds'?" in str(e) and "position 5" in str(e)
    assert e.position == 4
    assert "did you mean 'ratio'" in str(error("ration<1"))


def test_unknown_field_without_a_close_one_lists_the_fields() -> None:
    message = str(error("xyzzy:1"))
    assert "unknown field 'xyzzy'" in message and "name, state, progress" in message


@pytest.mark.parametrize(("text", "words"), [
    ("seeds>lots", ["bad number 'lots'", "position 7"]),
    ("ratio<1.2.3", ["bad number", "position 7"]),
    ("size>7X", ["bad size '7X'", "position 6", "700M"]),
    ("size>-1G", ["bad size"]),
    ("down>fast", ["bad size 'fast'"]),
    ("pct>150", ["bad percentage '150'", "0 to 100"]),
    ("eta<10y", ["bad duration '10y'", "10m"]),
    ("age>h", ["bad duration"]),
])
def test_bad_numbers(text: str, words: list[str]) -> None:
    message = str(error(text))
    for word in words:
        assert word in message


@pytest.mark.parametrize(("text", "words", "position"), [
    ("(iso", ["unclosed '('", "position 1"], 0),
    ("(iso | (bunny)", ["unclosed '('", "position 1"], 0),
    ("iso)", ["unbalanced ')'", "position 4"], 3),
    (")", ["unbalanced ')'"], 0),
    ("()", ["empty parentheses", "position 1"], 0),
    ("iso |", ["'|' at position 5 needs a term on each side"], 4),
    ("| iso", ["'|' at position 1"], 0),
    ("iso or", ["'or' at position 5"], 4),
    ("iso | | bunny", ["'|' at position 5"], 4),
    ("(iso |)", ["'|' at position 6"], 5),
    ("iso !", ["'!' at position 5 needs a term after it"], 4),
    ("iso not", ["'not' at position 5"], 4),
    ("-", ["'-' at position 1"], 0),
])
def test_unbalanced_and_dangling(text: str, words: list[str], position: int) -> None:
    e = error(text)
    for word in words:
        assert word in str(e)
    assert e.position == position


@pytest.mark.parametrize(("text", "words"), [
    ("name~/(/", ["bad regular expression", "position 6", "missing )"]),
    ("name~/a{2,1}/", ["bad regular expression"]),
    ("name~/abc", ["unclosed regular expression", "position 6"]),
    ("name~/a/b", ["unexpected 'b' after the regular expression", "position 9"]),
    ('"abc', ["unclosed quote", "position 1"]),
    ('name:"a"b', ["unexpected 'b' after the closing quote"]),
    ("name<3", ["'name' at position 1 is text", "not '<'"]),
    ("path>=a", ["'path' at position 1 is text"]),
    ("state>seeding", ["'state' at position 1 cannot be compared with '>'"]),
    ("private<1", ["'private' at position 1 cannot be compared"]),
    ("size~big", ["'size' at position 1 is a number"]),
    ("size~/big/", ["'size' at position 1 is not text"]),
    ("state:running", ["unknown state 'running'", "position 7", "seeding"]),
    ("s:c", ["unknown state 'c'"]),  # checking or complete
    ("private:maybe", ["unknown yes/no value 'maybe'"]),
    ("name:", ["missing value after 'name:'", "position 6"]),
    (":linux", ["missing field name before ':'"]),
    ("(" * 200 + "iso" + ")" * 200, ["too deeply nested"]),
])
def test_malformed_terms(text: str, words: list[str]) -> None:
    message = str(error(text))
    for word in words:
        assert word in message


def test_errors_are_one_line() -> None:
    for text in ("sedes>5", "(iso", "name~/(/", "size>7X"):
        assert "\n" not in str(error(text))


PIECES = [*'abnst:=<>!~-|()"/\\ .%0159GmK', "or ", "not ", "state", "eta", "size", "name", "error", "private"]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=30).map("".join) | st.text())
def test_any_text_compiles_or_raises_filter_error(text: str) -> None:
    try:
        predicate = compile_filter(text)
    except FilterError as e:
        assert 0 <= e.position <= len(text)
        return
    for torrent in ALL:
        assert predicate(torrent) in (True, False)


def test_peer_flags_show_encryption_and_transport() -> None:
    flags = next(c for c in PEER_COLUMNS if c.key == "flags")
    assert flags.cell(make_peer(encryption="rc4", transport="utp")) == "D?EPT"
    assert flags.cell(make_peer(encryption="handshake")) == "D?eT"
    assert flags.cell(make_peer()) == "D?T"
