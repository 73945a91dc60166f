"""A libtorrent seeder or leecher for ``torrent bench``, as its own process.

It imports only the standard library and libtorrent, so the bench can run it
under whichever Python has libtorrent: the PyPI wheel in the venv, or
Debian's ``python3-libtorrent`` under ``/usr/bin/python3``.

    lt_peer.py seed  FILE.torrent SAVE_DIR PORT
    lt_peer.py leech FILE.torrent SAVE_DIR PORT [HOST:PORT ...]

A seeder prints ``ready`` once it has checked its data and then serves until
it is terminated; a leecher connects to the given peers, exits 0 as soon as
it has every piece, and exits 1 if libtorrent reports an error.
"""

from __future__ import annotations

import sys
import time

# libtorrent on loopback as REFERENCE-CLIENTS.md says: no DHT/LSD/UPnP/NAT-PMP,
# TCP only, and several peers on one IP allowed. Otherwise its defaults: the
# reference is libtorrent as its users run it.
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

# Our client does not speak MSE (BEP 8 style stream encryption) yet, and a
# libtorrent peer with its default "enabled" policy dials with an encrypted
# handshake first, retrying in plain text a second later. The bench measures
# transfer, not that retry, so every libtorrent peer in it (the reference
# too) dials in plain text.
BENCH_SETTINGS = dict(LOOPBACK_SETTINGS, out_enc_policy=2)  # 2: pe_disabled

POLL = 0.02  # seconds between status checks: small against a transfer of seconds


def main(argv: list[str]) -> int:
    import libtorrent as lt

    mode, torrent, save, port, *peers = argv
    settings = dict(BENCH_SETTINGS, listen_interfaces=f"127.0.0.1:{int(port)}", alert_mask=0)
    session = lt.session(settings)
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
