"""Settings layers: config file, session state and command line over the defaults."""

from __future__ import annotations

import dataclasses
import json
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torrent.core.errors import ConfigError
from torrent.core.settings import DEFAULT_SETTINGS, SETTINGS, Settings, flatten, with_values
from torrent.session.config import (
    Layer,
    default_config_path,
    default_state_dir,
    layer_from_values,
    parse_assignments,
    read_config_file,
    render_json,
    render_text,
    render_toml,
    resolve,
)

MiB = 1024 * 1024

FULL = """\
# a user's config file
[network]
listen_port = 51413
bind = "wg0"
connect_timeout = 5        # an int where a float is expected

[peer]
max_requests = 250
write_high_water = "2M"

[rates]
max_down = "2M"
max_up = 524288
alt_enabled = true
alt_begin = "23:30"
alt_days = "sun, sat,mon"

[queue]
max_active_downloads = -1
seed_ratio = 2.5
"""


def write(tmp_path: Path, text: str | bytes, name: str = "config.toml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def config_error(tmp_path: Path, text: str | bytes) -> tuple[str, Path]:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        read_config_file(path, required=True)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"config file {path}: ")
    return message, path


# ---- where ---------------------------------------------------------------------------------


def test_default_paths_follow_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert default_config_path() == tmp_path / "cfg" / "torrent" / "config.toml"
    assert default_state_dir() == tmp_path / "data" / "torrent"
    assert not (tmp_path / "cfg").exists()  # asking for a path creates nothing


def test_default_paths_without_xdg_use_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_config_path() == tmp_path / ".config" / "torrent" / "config.toml"
    assert default_state_dir() == tmp_path / ".local" / "share" / "torrent"


# ---- reading the config file ---------------------------------------------------------------


def test_full_config_file(tmp_path: Path) -> None:
    path = write(tmp_path, FULL)
    layer = read_config_file(path, required=True)
    assert layer.name == f"config file {path}"
    assert dict(layer.values) == {
        "network.listen_port": 51413,
        "network.bind": "wg0",
        "network.connect_timeout": 5.0,
        "peer.max_requests": 250,
        "peer.write_high_water": 2 * MiB,
        "rates.max_down": 2 * MiB,
        "rates.max_up": 512 * 1024,
        "rates.alt_enabled": True,
        "rates.alt_begin": "23:30",
        "rates.alt_days": "mon,sat,sun",
        "queue.max_active_downloads": -1,
        "queue.seed_ratio": 2.5,
    }
    assert isinstance(layer.values["network.connect_timeout"], float)
    settings, sources = resolve([layer])
    assert settings.rates.max_down == 2 * MiB
    assert settings.network.bind == "wg0"
    assert settings.peer.max_requests == 250
    assert settings.torrent == DEFAULT_SETTINGS.torrent
    assert sources["rates.max_down"] == f"config file {path}"
    assert sources["peer.min_pipeline"] == "default"


def test_missing_optional_file_is_an_empty_layer(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "config.toml"
    layer = read_config_file(path, required=False)
    assert dict(layer.values) == {}
    assert layer.name == f"config file {path}"


def test_missing_required_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    with pytest.raises(ConfigError, match=r"^config file .*config\.toml: no such file$"):
        read_config_file(path, required=True)


def test_unreadable_file_is_one_line_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.mkdir()  # a directory where the file should be: not "missing", even when optional
    with pytest.raises(ConfigError) as info:
        read_config_file(path, required=False)
    assert str(info.value).startswith(f"config file {path}: cannot read it: ")
    assert "directory" in str(info.value).lower()
    assert "\n" not in str(info.value)


def test_toml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    message, _ = config_error(tmp_path, "[rates]\nmax_down = 1\nmax_up = = 2\n")
    assert "invalid TOML" in message
    assert "line 3" in message
    assert "column" in message


def test_not_utf8(tmp_path: Path) -> None:
    message, _ = config_error(tmp_path, b'[network]\nbind = "\xff"\n')
    assert "not UTF-8" in message


def test_unknown_key_suggests_the_close_one(tmp_path: Path) -> None:
    message, path = config_error(tmp_path, '[rates]\nmaxdown = "2M"\n')
    assert message == f"config file {path}: unknown setting 'rates.maxdown' (did you mean 'rates.max_down'?)"


def test_unknown_group(tmp_path: Path) -> None:
    message, path = config_error(tmp_path, '[rate]\nmax_down = "2M"\n')
    assert message == f"config file {path}: unknown setting 'rate.max_down' (did you mean 'rates.max_down'?)"
    message, _ = config_error(tmp_path, "[frobnicate]\nzzz = 1\n")
    assert "unknown setting 'frobnicate.zzz'" in message
    assert "network, peer, torrent" in message  # lists the groups when nothing is close
    message, _ = config_error(tmp_path, "[rats]\n")
    assert "unknown group 'rats'" in message and "[rates]" in message


def test_nested_tables_are_refused(tmp_path: Path) -> None:
    message, _ = config_error(tmp_path, "[rates.alt]\nmax_down = 1\n")
    assert "'rates.alt' is a table" in message
    message, _ = config_error(tmp_path, "[rates]\nalt.max_down = 1\n")
    assert "'rates.alt' is a table" in message


def test_keys_outside_any_table(tmp_path: Path) -> None:
    message, _ = config_error(tmp_path, 'max_down = "2M"\n')
    assert "'max_down' is outside any table" in message and "[rates]" in message
    message, _ = config_error(tmp_path, "rates = 5\n")
    assert "'rates' must be a table" in message
    message, _ = config_error(tmp_path, "colour = 1\n")
    assert "'colour' is outside any table" in message


@pytest.mark.parametrize(
    ("group", "line", "key", "reason"),
    [
        ("peer", "max_requests = 70000", "peer.max_requests", "must be at most 65535, got 70000"),
        ("peer", "max_requests = 0", "peer.max_requests", "must be at least 1, got 0"),
        ("torrent", 'max_peers = "many"', "torrent.max_peers", "expected a whole number"),
        ("torrent", "max_peers = 2.5", "torrent.max_peers", "expected a whole number"),
        ("network", "connect_timeout = 0.0", "network.connect_timeout", "must be at least 0.1, got 0"),
        ("network", 'connect_timeout = "soon"', "network.connect_timeout", "expected a number"),
        ("network", "connect_timeout = nan", "network.connect_timeout", "expected a finite number"),
        ("rates", 'alt_enabled = "maybe"', "rates.alt_enabled", "expected true or false"),
        ("rates", "alt_enabled = 1", "rates.alt_enabled", "expected true or false"),
        ("rates", 'max_down = "abc"', "rates.max_down", "expected a size such as 500K or 2M, got 'abc'"),
        ("rates", "max_down = -5", "rates.max_down", "must be at least 0, got -5"),
        ("rates", "max_down = [1, 2]", "rates.max_down", "expected a number"),
        ("rates", 'alt_begin = "25:00"', "rates.alt_begin", "expected a time as HH:MM, got '25:00'"),
        ("rates", "alt_begin = 22:00:00", "rates.alt_begin", "expected text"),
        ("rates", 'alt_days = "mon,xyz"', "rates.alt_days", "expected days such as mon,tue,sat, got 'mon,xyz'"),
        ("network", "bind = 5", "network.bind", "expected text"),
    ],
)
def test_bad_values_name_file_and_key(tmp_path: Path, group: str, line: str, key: str, reason: str) -> None:
    message, path = config_error(tmp_path, f"[{group}]\n{line}\n")
    assert message.startswith(f"config file {path}: bad value for '{key}': ")
    assert reason in message


def test_bad_value_message_matches_the_issue(tmp_path: Path) -> None:
    message, path = config_error(tmp_path, "[peer]\nmax_requests = 70000\n")
    assert message == f"config file {path}: bad value for 'peer.max_requests': must be at most 65535, got 70000"


def test_huge_integer_is_a_config_error_not_a_crash(tmp_path: Path) -> None:
    message, _ = config_error(tmp_path, "[peer]\nkeepalive_every = 1" + "0" * 400 + "\n")
    assert "'peer.keepalive_every'" in message


def test_odd_characters_in_the_path_stay_on_one_line(tmp_path: Path) -> None:
    directory = tmp_path / "a\nb"
    directory.mkdir()
    path = write(directory, "[rates]\nmaxdown = 1\n")
    with pytest.raises(ConfigError) as info:
        read_config_file(path, required=True)
    assert "\n" not in str(info.value)
    assert "a\\nb" in str(info.value)


# ---- command line and layers ---------------------------------------------------------------


def test_parse_assignments() -> None:
    layer = parse_assignments(["rates.max_down=2M", "network.bind = eth0", "rates.alt_enabled=yes",
                               "queue.seed_ratio=1.5", "rates.max_down=1K"])
    assert layer.name == "command line"
    assert dict(layer.values) == {
        "rates.max_down": 1024,  # the later one wins
        "network.bind": "eth0",
        "rates.alt_enabled": True,
        "queue.seed_ratio": 1.5,
    }
    assert parse_assignments(["network.bind="]).values == {"network.bind": ""}
    assert parse_assignments([], name="x") == Layer("x", {})


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("rates.max_down", "command line: expected KEY=VALUE (such as rates.max_down=2M), got 'rates.max_down'"),
        ("=2M", "command line: expected KEY=VALUE (such as rates.max_down=2M), got '=2M'"),
        ("rates.maxdown=2M", "command line: unknown setting 'rates.maxdown' (did you mean 'rates.max_down'?)"),
        ("rates.max_down=2X", "command line: bad value for 'rates.max_down': expected a size such as 500K or 2M"),
        ("rates.alt_days=mon,xyz", "command line: bad value for 'rates.alt_days': expected days"),
        ("peer.max_requests=1e9", "command line: bad value for 'peer.max_requests': expected a whole number"),
    ],
)
def test_parse_assignments_errors(item: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_assignments(["network.bind=eth0", item])
    assert str(info.value).startswith(expected)


def test_no_layers_is_the_defaults() -> None:
    settings, sources = resolve([])
    assert settings == DEFAULT_SETTINGS
    assert sources == dict.fromkeys(SETTINGS, "default")


def test_precedence_and_sources(tmp_path: Path) -> None:
    path = write(tmp_path, '[rates]\nmax_down = "1M"\nmax_up = "1M"\nalt_max_up = "1M"\n'
                           "[queue]\nmax_active_downloads = 3\n")
    file_layer = read_config_file(path, required=False)
    state = layer_from_values("session state", {"rates.max_down": 2 * MiB, "rates.max_up": "2M",
                                                "queue.max_active_seeds": 7})
    cli = parse_assignments(["rates.max_down=3M", "peer.min_pipeline=8"])
    settings, sources = resolve([file_layer, state, cli])
    assert settings.rates.max_down == 3 * MiB  # file < state < command line
    assert settings.rates.max_up == 2 * MiB  # file < state
    assert settings.rates.alt_max_up == 1 * MiB  # only in the file
    assert settings.queue.max_active_downloads == 3
    assert settings.queue.max_active_seeds == 7
    assert settings.peer.min_pipeline == 8
    assert sources["rates.max_down"] == "command line"
    assert sources["rates.max_up"] == "session state"
    assert sources["rates.alt_max_up"] == f"config file {path}"
    assert sources["queue.max_active_seeds"] == "session state"
    assert sources["peer.min_pipeline"] == "command line"
    assert sources["rates.alt_max_down"] == "default"
    assert set(sources) == set(SETTINGS)
    # Order is precedence: reversed, the file wins.
    settings, sources = resolve([cli, state, file_layer])
    assert settings.rates.max_down == 1 * MiB
    assert sources["rates.max_down"] == f"config file {path}"


def test_a_layer_setting_the_default_value_is_still_its_source() -> None:
    settings, sources = resolve([parse_assignments(["peer.max_requests=500"])])
    assert settings == DEFAULT_SETTINGS
    assert sources["peer.max_requests"] == "command line"


def test_layer_from_values_checks_and_names_the_layer() -> None:
    with pytest.raises(ConfigError,
                       match=r"^session state: bad value for 'queue.max_active_seeds': must be at least -1"):
        layer_from_values("session state", {"queue.max_active_seeds": -2})
    with pytest.raises(ConfigError, match=r"^session state: unknown setting 'queue.max_seeds'"):
        layer_from_values("session state", {"queue.max_seeds": 1})


def test_resolve_refuses_unknown_keys_in_a_hand_made_layer() -> None:
    with pytest.raises(ConfigError,
                       match=r"^session state: unknown setting 'rates.maxup' \(did you mean 'rates.max_up'\?\)"):
        resolve([Layer("session state", {"rates.maxup": 1})])


def test_layer_values_are_a_frozen_copy() -> None:
    values = {"rates.max_down": 1}
    layer = Layer("x", values)
    values["rates.max_down"] = 2
    assert layer.values["rates.max_down"] == 1
    with pytest.raises(TypeError):
        layer.values["rates.max_down"] = 3  # type: ignore[index]


# ---- output --------------------------------------------------------------------------------


def _everything_changed() -> Settings:
    """Every leaf at a valid value other than its default."""
    values = {}
    for key, info in SETTINGS.items():
        if info.type is bool:
            values[key] = not info.default
        elif info.type is int:
            values[key] = info.default + 1 if info.max is None or info.default < info.max else info.default - 1
        elif info.type is float:
            values[key] = info.default + 0.25
        elif info.kind == "time":
            values[key] = "06:05"
        elif info.kind == "days":
            values[key] = "tue,sat"
        elif info.kind == "hostports":
            values[key] = "[::1]:7000,127.0.0.1:6881"
        elif info.choices is not None:
            values[key] = next(choice for choice in info.choices if choice != info.default)
        else:
            values[key] = 'wg0 "quoted" \\ ü \x7f'
    settings = with_values(DEFAULT_SETTINGS, values)
    assert all(a != b for a, b in zip(flatten(settings).values(), flatten(DEFAULT_SETTINGS).values(), strict=True))
    return settings


def _read_back(tmp_path: Path, text: str) -> Settings:
    path = write(tmp_path, text, "written.toml")
    return resolve([read_config_file(path, required=True)])[0]


@pytest.mark.parametrize("only_changed", [False, True])
@pytest.mark.parametrize("tree", ["defaults", "everything", "some"])
def test_render_toml_round_trip(tmp_path: Path, tree: str, only_changed: bool) -> None:
    settings = {
        "defaults": DEFAULT_SETTINGS,
        "everything": _everything_changed(),
        "some": with_values(DEFAULT_SETTINGS, {"rates.max_down": 3 * MiB, "network.retry_first": 1e-7,
                                               "tracker.backoff_max": 1e300, "rates.alt_days": "sun"}),
    }[tree]
    text = render_toml(settings, only_changed=only_changed)
    assert _read_back(tmp_path, text) == settings
    keys = {f"{group}.{name}" for group, table in tomllib.loads(text).items() for name in table}
    if only_changed:
        assert keys == {key for key, value in flatten(settings).items() if value != flatten(DEFAULT_SETTINGS)[key]}
    else:
        assert keys == set(SETTINGS)


@given(bind=st.text(st.characters(exclude_categories=("Cs", "Cc")), max_size=20),
       ratio=st.floats(min_value=-1.0, allow_infinity=False, allow_nan=False))
def test_render_toml_round_trip_any_text_and_float(bind: str, ratio: float) -> None:
    settings = with_values(DEFAULT_SETTINGS, {"network.bind": bind.strip(), "queue.seed_ratio": ratio})
    document = tomllib.loads(render_toml(settings, only_changed=True))
    raw = {f"{group}.{name}": value for group, table in document.items() for name, value in table.items()}
    assert resolve([layer_from_values("x", raw)])[0] == settings


def test_render_text(tmp_path: Path) -> None:
    path = Path("/x/config.toml")
    file_layer = Layer(f"config file {path}", {"rates.max_down": 2 * MiB, "network.bind": "wg0"})
    settings, sources = resolve([file_layer, parse_assignments(["peer.max_requests=500", "queue.seed_ratio=2"])])
    text = render_text(settings, sources)
    lines = text.splitlines()
    assert "max_down = 2097152  # 2.0 MiB, from config file /x/config.toml" in lines
    assert 'bind = "wg0"  # from config file /x/config.toml' in lines
    assert "max_requests = 500  # from command line" in lines  # the default value, but set by the user
    assert "seed_ratio = 2.0  # from command line" in lines
    assert "max_up = 0  # unlimited" in lines
    assert "alt_enabled = false" in lines
    assert 'alt_begin = "22:00"' in lines
    assert "write_backlog_bytes = 16777216  # 16.0 MiB" in lines
    assert "max_active_seeds = -1" in lines
    # Grouped by section, in tree order, one line per setting.
    headers = [line for line in lines if line.startswith("[")]
    assert headers == ["[network]", "[peer]", "[torrent]", "[storage]", "[tracker]", "[rates]", "[queue]",
                       "[discovery]", "[limits]"]
    assert lines.index("[rates]") < lines.index('alt_begin = "22:00"') < lines.index("[queue]")
    assert len([line for line in lines if " = " in line]) == len(SETTINGS)
    # It is TOML too, and reads back to the same tree.
    assert _read_back(tmp_path, text) == settings


def test_render_text_escapes_odd_source_names() -> None:
    settings, sources = resolve([Layer("config file /a\nb/config.toml", {"rates.max_up": 1})])
    text = render_text(settings, sources)
    assert "max_up = 1  # 1 B, from config file /a\\nb/config.toml" in text.splitlines()
    tomllib.loads(text)


def test_render_json() -> None:
    settings, sources = resolve([parse_assignments(["rates.max_down=2M", "rates.alt_enabled=on"])])
    out = render_json(settings, sources)
    assert list(out) == list(SETTINGS)
    assert all(set(entry) == {"value", "source", "doc"} for entry in out.values())
    assert out["rates.max_down"] == {"value": 2 * MiB, "source": "command line",
                                     "doc": "download limit for the session"}
    assert out["rates.alt_enabled"]["value"] is True
    assert out["peer.max_requests"] == {"value": 500, "source": "default", "doc": SETTINGS["peer.max_requests"].doc}
    assert json.loads(json.dumps(out)) == out


def test_render_json_values_are_the_tree() -> None:
    settings = _everything_changed()
    out = render_json(settings, {})
    assert {key: entry["value"] for key, entry in out.items()} == flatten(settings)
    assert {entry["source"] for entry in out.values()} == {"default"}
    assert dataclasses.asdict(settings)["peer"]["max_requests"] == out["peer.max_requests"]["value"]
