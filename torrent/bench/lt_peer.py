"""A libtorrent seeder or leecher for ``torrent bench``, as its own process.

It imports only the standard library and libtorrent, so the bench can run it
under whichever Python has libtorrent: the PyPI wheel in the venv, or
Debian's ``python3-libtorrent`` under ``/usr/bin/python3``.

    lt_peer.py seed  FILE.torrent SAVE_DIR PORT [--encrypted] [--utp] [--max-up=BYTES_PER_S]
    lt_peer.py leech FILE.torrent SAVE_DIR PORT [--encrypted] [--utp] [HOST:PORT ...]
    lt_peer.py version

``--encrypted`` requires RC4 over the whole stream both ways (as ``torrent --encryption require``);
``--utp`` speaks uTP only, TCP off both ways; ``--max-up`` caps the upload rate (as ``torrent --max-up``).
``version`` prints libtorrent's version and the Python running it, for the bench's report.

A seeder prints ``ready`` once it has checked its data and then serves until
it is terminated; a leecher connects to the given peers, exits 0 as soon as
it has every piece, and exits 1 if libtorrent reports an error.
"""

from __future__ import annotations

import sys
import time

# libtorrent on loopback as REFERENCE-CLIENTS.md says: no DHT/LSD/UPnP/NAT-PMP,
# TCP only, and several peers on one IP allowed. Otherwise its defaults, its
# encryption policy included (an encrypted handshake first, then plain text):
# the reference is libtorrent as its users run it.
LOOPBACK_SETTINGS = {
    "listen_interfaces": "127.0.0.1:0",
    "enable_dht": False,
    "enable_lsd": False,
    "enable_upnp": False,
    "enable_natpmp": False,
    "enable_incoming_utp": False,
    "enable_outgoing_utp": False,
    "allow_multiple_connections_per_ip": True,
    "stop_tracker_timeout": 1,
}

# --encrypted: pe_forced (0) both ways, pe_rc4 (2) only, as REFERENCE-CLIENTS.md says.
ENCRYPTED = {"out_enc_policy": 0, "in_enc_policy": 0, "allowed_enc_level": 2, "prefer_rc4": True}
UTP_ONLY = {"enable_incoming_utp": True, "enable_outgoing_utp": True,
            "enable_incoming_tcp": False, "enable_outgoing_tcp": False}

POLL = 0.02  # seconds between status checks: small against a transfer of seconds


def main(argv: list[str]) -> int:
    import libtorrent as lt

    if argv == ["version"]:
        print(f"libtorrent {lt.__version__}, Python {sys.version.split()[0]} ({sys.executable})")
        return 0
    flags = dict(arg.partition("=")[::2] for arg in argv if arg.startswith("--"))
    mode, torrent, save, port, *peers = [arg for arg in argv if not arg.startswith("--")]
    settings = dict(LOOPBACK_SETTINGS, listen_interfaces=f"127.0.0.1:{int(port)}", alert_mask=0)
    if "--encrypted" in flags:
        settings.update(ENCRYPTED)
    if "--utp" in flags:
        settings.update(UTP_ONLY)
    if flags.get("--max-up"):
        settings["upload_rate_limit"] = int(flags["--max-up"])
    session = lt.session(settings)
    if "upload_rate_limit" in settings:
        # libtorrent exempts loopback and LAN peers from rate limits (its "local" peer class):
        # every address in the global class, so the cap holds on 127.0.0.1.
        every = lt.ip_filter()
        every.add_rule("0.0.0.0", "255.255.255.255", 1 << lt.session.global_peer_class_id)
        session.set_peer_class_filter(every)
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(torrent)
    params.save_path = save
    handle = session.add_torrent(params)
    for peer in peers:
        host, _, peer_port = peer.rpartition(":")
        handle.connect_peer((host, int(peer_port)))
    while True:
        status = handle.status()
        if status.errc.value():
            print(f"libtorrent error: {status.errc.message()}", file=sys.stderr, flush=True)
            return 1
        if status.is_seeding:
            break
        time.sleep(POLL)
    if mode == "seed":
        print("ready", flush=True)
        while True:
            time.sleep(3600)
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
