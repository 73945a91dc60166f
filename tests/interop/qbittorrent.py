"""qBittorrent (``qbittorrent-nox``, Debian) for the interop tests: started headless on
127.0.0.1 with a profile written beforehand, driven through its Web API.

A plain module like ``clients.py`` (no fixtures); the test imports it. Conventions are
those of ``clients.Harness``: the process is started by ``Harness.spawn`` (its stdout in
the harness log), stopped by its PID when the harness closes, every wait is bounded, and
a failed wait shows the logs of everything the test started, qBittorrent's own log file
included (qbittorrent-nox writes its log to the profile, not to stdout).

What REFERENCE-CLIENTS.md says of qBittorrent 4.5.2, and what this module relies on:

- Headless with ``--profile=DIR --webui-port=P`` and ``DIR/qBittorrent/config/qBittorrent.conf``
  written first, its legal notice already accepted.
- The config keeps it on loopback: BitTorrent and uTP sockets bound to 127.0.0.1 only
  (``Session\\InterfaceAddress``; ``Session\\Interface=lo`` as well, so outgoing peer
  connections leave from lo), Web UI on 127.0.0.1 only, DHT/LSD/PeX off, UPnP/NAT-PMP off
  (``[Network] PortForwardingEnabled``, ``WebUI\\UseUPnP``), and no lookup of peer
  countries: left on, 4.5.2 tries at start-up to download its IP geolocation database
  from the Internet (seen in its log: "Couldn't download IP geolocation database file").
  Checked with ``strace -f -e trace=connect,bind,sendto,sendmsg``: with this config it
  binds and connects to 127.0.0.1 only (and netlink, a D-Bus socket it does not find).
- Encryption allowed, not required (``Session\\Encryption=0``), so plain-text peers are
  served; TCP only (``Session\\BTProtocol=TCP``); several connections from one IP allowed
  (every peer here is 127.0.0.1); no queueing, so an added torrent starts at once.
- The Web API needs no login with ``WebUI\\LocalHostAuth=false``; CSRF and Host header
  checks are off. HTTP here is ``http.client`` straight to 127.0.0.1 (it never reads
  ``*_proxy`` variables, unlike urllib).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from clients import Harness, Proc, free_port, require_tool

START_TIMEOUT = 30.0  # seconds for qbittorrent-nox to answer its Web API (about 0.5 s here)
API_TIMEOUT = 10.0  # one Web API request

# /api/v2/torrents/info "state" values (Web API v2.8, qBittorrent 4.5).
SEEDING_STATES = frozenset({"uploading", "stalledUP", "forcedUP"})  # not queuedUP: that one serves nobody
CHECKING_STATES = frozenset({"checkingUP", "checkingDL", "checkingResumeData", "allocating", "moving"})
ERROR_STATES = frozenset({"error", "missingFiles"})


def write_config(profile: Path, *, listen_port: int, webui_port: int, encryption: int = 0,
                 protocol: str = "TCP") -> Path:
    """``PROFILE/qBittorrent/config/qBittorrent.conf`` for a loopback-only qBittorrent 4.5;
    ``encryption`` as ``Session\\Encryption`` (see ``ENCRYPTION``), ``protocol`` as ``Session\\BTProtocol``
    (see ``PROTOCOLS``)."""
    conf = profile / "qBittorrent" / "config" / "qBittorrent.conf"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(CONFIG_TEMPLATE.format(listen_port=listen_port, webui_port=webui_port,
                                           save_path=profile / "downloads", encryption=encryption,
                                           protocol=protocol))
    return conf


# Section and key names as qBittorrent 4.5 stores them (QSettings INI: "BitTorrent/Session/Port"
# is [BitTorrent] Session\Port). Every setting here was read back through /api/v2/app/preferences.
CONFIG_TEMPLATE = """\
[LegalNotice]
Accepted=true

[BitTorrent]
Session\\Port={listen_port}
Session\\Interface=lo
Session\\InterfaceName=lo
Session\\InterfaceAddress=127.0.0.1
Session\\DHTEnabled=false
Session\\LSDEnabled=false
Session\\PeXEnabled=false
Session\\Encryption={encryption}
Session\\AnonymousModeEnabled=false
Session\\BTProtocol={protocol}
Session\\MultiConnectionsPerIp=true
Session\\QueueingSystemEnabled=false
Session\\AddTorrentPaused=false
Session\\DefaultSavePath={save_path}

[Network]
PortForwardingEnabled=false

[Preferences]
Connection\\ResolvePeerCountries=false
Connection\\ResolvePeerHostNames=false
WebUI\\Address=127.0.0.1
WebUI\\Port={webui_port}
WebUI\\UseUPnP=false
WebUI\\LocalHostAuth=false
WebUI\\CSRFProtection=false
WebUI\\ClickjackingProtection=false
WebUI\\HostHeaderValidation=false
General\\Locale=en
"""


@dataclass
class QbtProc(Proc):
    """The qbittorrent-nox process; its text is its stdout plus the log file it keeps in
    its profile (where 4.5 writes everything it logs)."""

    file_log: Path | None = None

    def text(self) -> str:
        out = super().text()
        if self.file_log is None:
            return out
        try:
            own = self.file_log.read_bytes().decode(errors="replace")
        except OSError:
            own = "(no log file yet)"
        return f"{out}\n---- {self.file_log}\n{own}"


class ApiError(Exception):
    pass


@dataclass
class QBittorrent:
    h: Harness
    name: str
    proc: QbtProc
    profile: Path
    listen_port: int  # BitTorrent (TCP) port on 127.0.0.1
    webui_port: int

    # -- raw Web API
    def request(self, method: str, path: str, *, body: bytes = b"", content_type: str | None = None,
                timeout: float = API_TIMEOUT) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.webui_port, timeout=timeout)
        try:
            headers = {"Host": f"127.0.0.1:{self.webui_port}", "Connection": "close"}
            if content_type:
                headers["Content-Type"] = content_type
            conn.request(method, path, body=body if method != "GET" else None, headers=headers)
            reply = conn.getresponse()
            return reply.status, reply.read()
        finally:
            conn.close()

    def get(self, path: str, **params: str) -> bytes:
        target = f"{path}?{urlencode(params)}" if params else path
        status, body = self.request("GET", target)
        if status != 200:
            raise ApiError(f"GET {target}: HTTP {status} {body[:200]!r}")
        return body

    def post_form(self, path: str, fields: Mapping[str, str]) -> bytes:
        status, body = self.request("POST", path, body=urlencode(fields).encode(),
                                    content_type="application/x-www-form-urlencoded")
        if status != 200:
            raise ApiError(f"POST {path} {dict(fields)}: HTTP {status} {body[:200]!r}")
        return body

    def post_multipart(self, path: str, fields: Mapping[str, str],
                       files: Iterable[tuple[str, str, bytes]]) -> bytes:
        """``files``: (field name, file name, content)."""
        boundary = f"----torrent-interop-{uuid.uuid4().hex}"
        parts: list[bytes] = []
        for key, value in fields.items():
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode())
        for key, filename, content in files:
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"; filename="{filename}"\r\n'
                         "Content-Type: application/x-bittorrent\r\n\r\n".encode() + content + b"\r\n")
        parts.append(f"--{boundary}--\r\n".encode())
        status, body = self.request("POST", path, body=b"".join(parts),
                                    content_type=f"multipart/form-data; boundary={boundary}")
        if status != 200:
            raise ApiError(f"POST {path} (multipart): HTTP {status} {body[:200]!r}")
        return body

    # -- what the tests use
    def version(self) -> str:
        return self.get("/api/v2/app/version").decode().strip()

    def preferences(self) -> dict[str, Any]:
        return json.loads(self.get("/api/v2/app/preferences"))

    def add_torrent(self, torrent_file: Path, save_path: Path, *, paused: bool = False) -> None:
        """Add a .torrent (its data is looked for, and hash-checked, in ``save_path``)."""
        fields = {"savepath": str(save_path), "paused": "true" if paused else "false", "autoTMM": "false",
                  "contentLayout": "Original"}
        body = self.post_multipart("/api/v2/torrents/add", fields,
                                   [("torrents", torrent_file.name, torrent_file.read_bytes())])
        if body.strip() != b"Ok.":
            self.h.fail(f"qBittorrent {self.name} refused {torrent_file}: {body[:200]!r}")

    def torrents(self, info_hash: str | None = None) -> list[dict[str, Any]]:
        """The JSON of /api/v2/torrents/info (every torrent, or the one with ``info_hash``)."""
        params = {"hashes": info_hash.lower()} if info_hash else {}
        return json.loads(self.get("/api/v2/torrents/info", **params))

    def torrent(self, info_hash: str) -> dict[str, Any] | None:
        found = self.torrents(info_hash)
        return found[0] if found else None

    def peers(self, info_hash: str) -> dict[str, dict[str, Any]]:
        """Its peers for a torrent, "ip:port" → details (/api/v2/sync/torrentPeers)."""
        data = json.loads(self.get("/api/v2/sync/torrentPeers", hash=info_hash.lower(), rid="0"))
        return data.get("peers") or {}

    def add_peers(self, info_hash: str, peers: Sequence[str]) -> None:
        """Make it dial these "host:port" peers for the torrent (/api/v2/torrents/addPeers)."""
        self.post_form("/api/v2/torrents/addPeers", {"hashes": info_hash.lower(), "peers": "|".join(peers)})

    def transfer_info(self) -> dict[str, Any]:
        """Session-wide figures (/api/v2/transfer/info): ``up_info_data``, ``dl_info_data`` are
        the bytes of payload sent and received since it started."""
        return json.loads(self.get("/api/v2/transfer/info"))

    def log(self) -> list[dict[str, Any]]:
        """Its main log: [{"id", "message", "timestamp" (s), "type"}]."""
        return json.loads(self.get("/api/v2/log/main"))

    def _polled(self, info_hash: str) -> dict[str, Any] | None:
        """The torrent's info, or None while it is not there or the Web API does not answer
        (a qBittorrent that died is reported by the wait that watches its process)."""
        try:
            return self.torrent(info_hash)
        except (OSError, http.client.HTTPException, ApiError):
            return None

    def _watched(self, info_hash: str, states: frozenset[str]) -> dict[str, Any] | None:
        t = self._polled(info_hash)
        if t is None:
            return None
        if t["state"] in ERROR_STATES:
            self.h.fail(f"qBittorrent {self.name}: torrent {info_hash} is in state {t['state']!r}")
        return t if t["state"] in states and t["progress"] >= 1.0 else None

    def wait_seeding(self, info_hash: str, timeout: float, **kwargs: Any) -> dict[str, Any]:
        """Until the torrent is complete and seeding (stalledUP, uploading…) → its info."""
        return self.h.wait_for(f"qBittorrent {self.name} to seed {info_hash}",
                               lambda: self._watched(info_hash, SEEDING_STATES), timeout=timeout,
                               watch=[self.proc], **kwargs)

    def wait_started(self, info_hash: str, timeout: float) -> dict[str, Any]:
        """Until the torrent is added and past its checks (downloading, stalledDL, seeding…)."""
        def started() -> dict[str, Any] | None:
            t = self._polled(info_hash)
            if t is not None and t["state"] in ERROR_STATES:
                self.h.fail(f"qBittorrent {self.name}: torrent {info_hash} is in state {t['state']!r}")
            ok = t is not None and t["state"] not in CHECKING_STATES and t["state"] not in ("metaDL", "unknown")
            return t if ok else None

        return self.h.wait_for(f"qBittorrent {self.name} to start {info_hash}", started, timeout=timeout,
                               watch=[self.proc])

    def progress(self, info_hash: str) -> object:
        """A reading that changes while a transfer goes on (for ``Harness.wait_for``'s stall check)."""
        t = self._polled(info_hash)
        return None if t is None else (t["state"], t["downloaded"], t["uploaded"])


def start_qbittorrent(h: Harness, name: str, *, profile: Path, encryption: int = 0,
                      protocol: str = "TCP") -> QBittorrent:
    """``qbittorrent-nox --profile=PROFILE --webui-port=P`` on 127.0.0.1 with a fresh config;
    returns once its Web API answers and its BitTorrent port listens. ``encryption``: a value of
    ``ENCRYPTION`` (allowed by default)."""
    exe = require_tool("qbittorrent-nox")
    if profile.exists() and any(profile.iterdir()):
        h.fail(f"qBittorrent profile {profile} is not empty: each start gets a fresh one")
    listen_port, webui_port = free_port(), free_port()
    while webui_port == listen_port:
        webui_port = free_port()
    write_config(profile, listen_port=listen_port, webui_port=webui_port, encryption=encryption, protocol=protocol)
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["HOME"] = str(profile)  # nothing of the user's own qBittorrent setup, nothing written there
    spawned = h.spawn(name, [exe, f"--profile={profile}", f"--webui-port={webui_port}"], env=env)
    proc = QbtProc(spawned.name, spawned.cmd, spawned.popen, spawned.log,
                   file_log=profile / "qBittorrent" / "data" / "logs" / "qbittorrent.log")
    h.procs[h.procs.index(spawned)] = proc  # same process, and its log file shown on failure
    qbt = QBittorrent(h, name, proc, profile, listen_port, webui_port)
    listen_line = re.compile(rf'Successfully listening on IP\. IP: "127\.0\.0\.1"\. Port: "(TCP|UTP)/{listen_port}"')

    def ready() -> bool:
        try:
            return qbt.version().startswith("v")
        except (OSError, http.client.HTTPException, ApiError):
            return False

    def listening() -> bool:
        try:
            return any(listen_line.search(m["message"]) for m in qbt.log())
        except (OSError, http.client.HTTPException, ApiError):
            return False

    h.wait_for(f"qBittorrent {name} to answer its Web API on 127.0.0.1:{webui_port}", ready,
               timeout=START_TIMEOUT, watch=[proc])
    h.wait_for(f"qBittorrent {name} to listen on 127.0.0.1:{listen_port}", listening, timeout=START_TIMEOUT,
               watch=[proc])
    prefs = qbt.preferences()
    wanted = {**LOOPBACK_PREFERENCES, "listen_port": listen_port, "encryption": encryption,
              "bittorrent_protocol": PROTOCOLS[protocol]}
    wrong = {k: prefs.get(k) for k, want in wanted.items() if prefs.get(k) != want}
    if wrong:
        h.fail(f"qBittorrent {name} did not take its config: {wrong} (wanted {wanted})")
    return qbt


# ``Session\\Encryption`` in 4.5 (src/base/bittorrent/session.cpp, where it fills libtorrent's
# settings_pack): 0 = enabled (pe_enabled both ways), 1 = forced (pe_forced both ways), 2 = disabled;
# whichever, it sets allowed_enc_level pe_rc4 and prefer_rc4. A peer's "flags" (torrentPeers) hold
# "E" for an RC4 stream, "e" for an encrypted handshake then plain text.
ENCRYPTION = {"enabled": 0, "forced": 1, "disabled": 2}

# ``Session\\BTProtocol`` as the config file says it → /api/v2/app/preferences' ``bittorrent_protocol``.
# A uTP peer's "connection" (torrentPeers) is "μTP", a TCP one's "BT".
PROTOCOLS = {"Both": 0, "TCP": 1, "UTP": 2}

# What /api/v2/app/preferences must show once the config above is read.
LOOPBACK_PREFERENCES: dict[str, object] = {
    "current_network_interface": "lo",
    "current_interface_address": "127.0.0.1",
    "web_ui_address": "127.0.0.1",
    "dht": False,
    "lsd": False,
    "pex": False,
    "upnp": False,
    "encryption": 0,
    "bittorrent_protocol": 1,  # TCP only
    "resolve_peer_countries": False,
    "bypass_local_auth": True,
    "queueing_enabled": False,
}

