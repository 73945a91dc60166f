"""Human sizes: binary units in, binary units out."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torrent.core.errors import TorrentError, UsageError
from torrent.core.units import format_size, parse_size

K, M, G, T = 1024, 1024**2, 1024**3, 1024**4


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("262144", 262144),
        ("0", 0),
        ("256K", 256 * K),
        ("256k", 256 * K),
        ("256KiB", 256 * K),
        ("256kib", 256 * K),
        ("256KB", 256 * K),
        ("1M", M),
        ("1m", M),
        ("1MiB", M),
        ("1.5M", M + M // 2),
        ("0.5K", 512),
        ("2G", 2 * G),
        ("2GB", 2 * G),
        ("2gib", 2 * G),
        ("1T", T),
        (" 16 K ", 16 * K),
        ("100B", 100),
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "   ", "K", "abc", "-1", "-1K", "1.5.5M", "1X", "1 KM", "1e3", "0x10",
                                  "1,000", "1P", ".5K", "5K5"])
def test_parse_size_errors(text: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_size(text)
    assert isinstance(info.value, TorrentError)
    assert "256K" in str(info.value)  # tells the user what a valid size looks like


def test_parse_size_absurdly_large_number_is_a_usage_error() -> None:
    # float('1' * 400) is inf: the user must get a UsageError, not OverflowError.
    with pytest.raises(UsageError):
        parse_size("1" * 400 + "K")


@given(st.integers(0, 2**63 - 1))
def test_parse_size_plain_byte_counts_are_exact(n: int) -> None:
    assert parse_size(str(n)) == n


@given(st.integers(0, 2**20), st.sampled_from(["K", "M", "G", "KiB", "MiB", "GiB", "kb", "mb", "gb"]))
def test_parse_size_integer_with_unit(n: int, unit: str) -> None:
    factor = {"k": K, "m": M, "g": G}[unit[0].lower()]
    assert parse_size(f"{n}{unit}") == n * factor


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (0, "0 B"),
        (1, "1 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (10 * K, "10.0 KiB"),
        (100 * K, "100 KiB"),
        (512 * K, "512 KiB"),
        (M, "1.0 MiB"),
        (int(2.5 * G), "2.5 GiB"),
        (T, "1.0 TiB"),
        (2048 * T, "2048 TiB"),
    ],
)
def test_format_size(n: int, expected: str) -> None:
    assert format_size(n) == expected


def test_format_size_does_not_show_1024_of_a_unit() -> None:
    # One byte short of 1 MiB is 1023.999 KiB: rounding it to "1024 KiB" skips the next unit.
    shown = format_size(M - 1)
    number, unit = shown.split()
    assert float(number) < 1024 or unit == "TiB"


@given(st.integers(0, 2**60))
def test_format_size_is_close_to_the_value(n: int) -> None:
    number, unit = format_size(n).split()
    factor = {"B": 1, "KiB": K, "MiB": M, "GiB": G, "TiB": T}[unit]
    assert abs(float(number) * factor - n) <= 0.05 * n + 1
    if unit != "B":
        assert n >= K
    else:
        assert n < K and number == str(n)
