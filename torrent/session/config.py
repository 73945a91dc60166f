"""Where the settings tree comes from: defaults, config file, session state, command line.

The effective tree is built from *layers*, each a set of dotted keys with
values already checked by ``parse_value``, applied in increasing precedence:

1. ``default``: ``Settings()``, every value documented in ``torrent.core.settings``;
2. the config file (TOML, in the platform's config directory, or ``--config``),
   which the user edits by hand for settings they want everywhere;
3. the session state: settings changed while the session ran (a rate limit or
   queue size set from the TUI), saved with the torrents. It sits above the
   config file because the latest deliberate change should outlive a restart;
   were it below, a value in the config file would silently undo it;
4. the command line (``--set KEY=VALUE`` and the dedicated options): what the
   user asks for this one run wins over everything, including an earlier
   run-time change.

The session-state layer must hold only the keys changed at run time, not the
whole effective tree: saving the tree would freeze config-file and
command-line values into the state, where they would shadow later edits of
the config file. ``torrent config`` prints the layer each value came from, so
a run-time change that hides a config-file value is visible.

Nothing here touches the engine: these functions read files and text and
return a new frozen ``Settings`` (and, for display, the source of each value);
the session decides when to swap its tree.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import platformdirs

from torrent.core.errors import ConfigError
from torrent.core.settings import (
    DEFAULT_SETTINGS,
    SETTINGS,
    Settings,
    check_relations,
    differences,
    flatten,
    parse_value,
    with_values,
)
from torrent.core.units import format_size

APP_NAME = "torrent"
CONFIG_FILE_NAME = "config.toml"
DEFAULT_SOURCE = "default"

# Groups in tree order, and which group each setting name belongs to (names
# are unique across groups, so a key written outside any table can be placed).
GROUPS: tuple[str, ...] = tuple(dict.fromkeys(key.split(".", 1)[0] for key in SETTINGS))
_GROUP_OF: dict[str, str] = {key.split(".", 1)[1]: key.split(".", 1)[0] for key in SETTINGS}


# ---- where ---------------------------------------------------------------------------------


def default_config_path() -> Path:
    """The config file in the platform's config directory
    (``$XDG_CONFIG_HOME/torrent/config.toml``, by default ``~/.config/torrent/config.toml``, on Linux)."""
    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)) / CONFIG_FILE_NAME


def default_state_dir() -> Path:
    """The directory for the session's saved state
    (``$XDG_DATA_HOME/torrent``, by default ``~/.local/share/torrent``, on Linux)."""
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


# ---- layers --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layer:
    """Values for some settings (dotted keys, already parsed) and where they came from."""

    name: str
    values: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", MappingProxyType(dict(self.values)))


def layer_from_values(name: str, raw: Mapping[str, Any]) -> Layer:
    """A layer of ``raw`` values (dotted keys; TOML or JSON values, or text) each
    checked by ``parse_value``; ``ConfigError`` prefixed by ``name`` if one does not fit.
    The session uses this for the values it saved in its state."""
    values: dict[str, Any] = {}
    for key, value in raw.items():
        values[key] = _parse(name, key, value)
    return Layer(name, values)


def read_config_file(path: Path, *, required: bool) -> Layer:
    """The settings in the TOML file at ``path``: one table per group
    (``[rates]`` then ``max_down = "2M"``). A missing file is an empty layer,
    or an error if ``required`` (the user named it). Every problem is one
    ``ConfigError`` line naming the file and, where there is one, the key."""
    name = f"config file {_printable(str(path))}"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        if required:
            raise ConfigError(f"{name}: no such file") from None
        return Layer(name, {})
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read it: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{name}: not UTF-8 text (byte {exc.start})") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's messages end with "(at line L, column C)".
        raise ConfigError(f"{name}: invalid TOML: {_printable(str(exc))}") from None
    return layer_from_values(name, _dotted(name, document))


def _dotted(name: str, document: Mapping[str, Any]) -> dict[str, Any]:
    """``{"rates": {"max_down": 1}}`` → ``{"rates.max_down": 1}``, refusing any other shape."""
    values: dict[str, Any] = {}
    for group, table in document.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{name}: {_outside_table(group)}")
        if group not in GROUPS and not table:
            raise ConfigError(f"{name}: unknown group {group!r}{_suggest_group(group)}")
        for key, value in table.items():
            dotted = f"{group}.{key}"
            if isinstance(value, dict):
                raise ConfigError(f"{name}: {_printable(repr(dotted))} is a table, but settings are "
                                  f"one level deep ([group] then key = value)")
            if group not in GROUPS and dotted not in SETTINGS:
                hint = _suggest_key(dotted) or _suggest_group(group)
                raise ConfigError(f"{name}: unknown setting {_printable(repr(dotted))}{hint}")
            values[dotted] = value
    return values


def _outside_table(key: str) -> str:
    shown = _printable(repr(key))
    if key in _GROUP_OF:
        return f"{shown} is outside any table: put it under [{_GROUP_OF[key]}]"
    if key in GROUPS:
        return f"{shown} must be a table ([{key}])"
    return f"{shown} is outside any table: settings go under [group] headers such as [{GROUPS[0]}]"


def parse_assignments(items: Sequence[str], name: str = "command line") -> Layer:
    """A layer from ``KEY=VALUE`` texts (``--set rates.max_down=2M``); a later
    item for the same key wins."""
    raw: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"{name}: expected KEY=VALUE (such as rates.max_down=2M), got {_printable(repr(item))}")
        raw[key] = value
    return layer_from_values(name, raw)


def resolve(layers: Sequence[Layer]) -> tuple[Settings, dict[str, str]]:
    """The tree from ``layers`` (lowest precedence first) over the defaults, and
    for every dotted key the name of the layer its value came from."""
    values: dict[str, Any] = {}
    sources = dict.fromkeys(SETTINGS, DEFAULT_SOURCE)
    for layer in layers:
        for key, value in layer.values.items():
            if key not in SETTINGS:
                raise ConfigError(f"{layer.name}: unknown setting {_printable(repr(key))}{_suggest_key(key)}")
            values[key] = value
            sources[key] = layer.name
    settings = with_values(DEFAULT_SETTINGS, values)
    check_relations(settings)
    return settings, sources


@dataclass(frozen=True)
class Effective:
    """What a front end starts a session with."""

    settings: Settings
    sources: dict[str, str]  # dotted key → the layer its value came from
    saved: dict[str, Any]  # the settings changed at run time in an earlier run (to be saved again)
    state_dir: Path
    warnings: tuple[str, ...]  # a corrupt saved session, saved settings this version does not know


def effective_settings(*, config_file: Path | None = None, state_dir: Path | None = None,
                       command_line: Sequence[str] = ()) -> Effective:
    """The settings from the defaults, the config file (``config_file`` must exist
    when given; else the platform's, if any), the run-time changes saved in
    ``state_dir`` (default: the platform's data directory), and ``KEY=VALUE``
    assignments from the command line, in that order of precedence."""
    from torrent.session.state import StateStore

    path = config_file if config_file is not None else default_config_path()
    directory = state_dir if state_dir is not None else default_state_dir()
    layers = [read_config_file(path, required=config_file is not None)]
    loaded, warnings = StateStore(directory).load_settings()
    name = f"session state {directory}"
    try:
        saved = layer_from_values(name, loaded)
    except ConfigError as exc:  # e.g. a setting an older version saved: go on without them
        warnings.append(f"{exc}; the saved settings were ignored")
        saved = Layer(name, {})
    layers.append(saved)
    layers.append(parse_assignments(command_line))
    settings, sources = resolve(layers)
    return Effective(settings, sources, dict(saved.values), directory, tuple(warnings))


def _parse(name: str, key: str, raw: Any) -> Any:
    try:
        return parse_value(key, raw)
    except ConfigError as exc:
        raise ConfigError(f"{name}: {_printable(str(exc))}") from None


def _suggest_key(key: str) -> str:
    import difflib

    close = difflib.get_close_matches(key, SETTINGS, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _suggest_group(group: str) -> str:
    import difflib

    close = difflib.get_close_matches(group, GROUPS, n=1)
    if close:
        return f" (did you mean [{close[0]}]?)"
    return f" (the groups are {', '.join(GROUPS)})"


# ---- output --------------------------------------------------------------------------------


def render_text(settings: Settings, sources: Mapping[str, str]) -> str:
    """``torrent config``: every setting, grouped by section, as TOML, with the
    size of byte counts and the source of values not from the defaults."""
    return _render(settings, sources, only_changed=False)


def render_toml(settings: Settings, only_changed: bool = False) -> str:
    """A config file that ``read_config_file`` reads back to ``settings``: every
    setting, or only those that differ from the defaults."""
    return _render(settings, None, only_changed=only_changed)


def render_json(settings: Settings, sources: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """``torrent config --json``: ``{key: {"value", "source", "doc"}}`` in tree order."""
    return {key: {"value": value, "source": sources.get(key, DEFAULT_SOURCE), "doc": SETTINGS[key].doc}
            for key, value in flatten(settings).items()}


def _render(settings: Settings, sources: Mapping[str, str] | None, *, only_changed: bool) -> str:
    values = flatten(settings)
    if only_changed:
        changed = differences(settings)
        values = {key: value for key, value in values.items() if key in changed}
    lines: list[str] = []
    group = None
    for key, value in values.items():
        this_group, name = key.split(".", 1)
        if this_group != group:
            if lines:
                lines.append("")
            lines.append(f"[{this_group}]")
            group = this_group
        notes = []
        kind = SETTINGS[key].kind
        if kind in ("bytes", "rate") and not isinstance(value, bool):
            notes.append("unlimited" if kind == "rate" and value == 0 else format_size(value))
        source = sources.get(key, DEFAULT_SOURCE) if sources is not None else DEFAULT_SOURCE
        if source != DEFAULT_SOURCE:
            notes.append(f"from {_printable(source)}")
        line = f"{name} = {toml_value(value)}"
        lines.append(f"{line}  # {', '.join(notes)}" if notes else line)
    return "\n".join(lines) + "\n" if lines else ""


def toml_value(value: Any) -> str:
    """``value`` (bool, int, float or str) in TOML syntax."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)  # "10.0", "1e-07", "1e+16": all TOML floats
    if isinstance(value, str):
        return '"' + "".join(_ESCAPES.get(c) or (f"\\u{ord(c):04X}" if _is_control(c) else c) for c in value) + '"'
    raise TypeError(f"no TOML form for {value!r}")


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _is_control(c: str) -> bool:
    return ord(c) < 0x20 or ord(c) == 0x7F


def _printable(text: str) -> str:
    """``text`` on one line and encodable: control characters and lone
    surrogates (undecodable bytes in a path) escaped."""
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)
