"""One side of ``magnet_vs_libtorrent.py``, as its own process.

    magnet_peer.py lt-seed   FILE.torrent SAVE_DIR PORT ROUTER   # prints "ready", then seeds until killed
    magnet_peer.py lt-leech  MAGNET SAVE_DIR PORT ROUTER         # prints one JSON line of timings, exits
    magnet_peer.py ours-leech MAGNET SAVE_DIR PORT ROUTER

ROUTER is the HOST:PORT of the only DHT node either client is told of (on 127.0.0.1). A leecher has no
tracker, no peer address and no ``x.pe``: it finds the seeder through the DHT alone. Both leechers are
timed the same way, polling their client every ``POLL`` seconds from the moment the magnet is added:
``first_peer`` (a peer connected), ``metadata`` (the info dictionary verified), ``complete`` (every piece).
"""

from __future__ import annotations

import json
import sys
import time

POLL = 0.005  # seconds: small against the ~0.5 s a magnet takes here


def lt_session(port: int, router: str):  # type: ignore[no-untyped-def]
    import libtorrent as lt

    return lt, lt.session({
        "listen_interfaces": f"127.0.0.1:{port}", "enable_dht": True, "dht_bootstrap_nodes": router,
        # libtorrent on loopback (see tests/interop/lt_dht.py): one node per IP would keep one of ours.
        "dht_restrict_routing_ips": False, "dht_restrict_search_ips": False, "dht_enforce_node_id": False,
        "dht_prefer_verified_node_ids": False, "dht_ignore_dark_internet": False,
        "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
        "enable_incoming_utp": False, "enable_outgoing_utp": False, "allow_multiple_connections_per_ip": True,
        "out_enc_policy": 2,  # plain text: our client has no MSE yet (as torrent bench)
        "alert_mask": 0,
    })


def lt_seed(torrent: str, save: str, port: int, router: str) -> int:
    lt, session = lt_session(port, router)
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(torrent)
    params.save_path = save
    handle = session.add_torrent(params)
    while not handle.status().is_seeding:
        time.sleep(0.01)
    print("ready", flush=True)
    while True:
        time.sleep(1)


def lt_leech(magnet: str, save: str, port: int, router: str) -> dict[str, float]:
    lt, session = lt_session(port, router)
    params = lt.parse_magnet_uri(magnet)
    params.save_path = save
    started = time.monotonic()
    handle = session.add_torrent(params)
    marks: dict[str, float] = {}
    while "complete" not in marks:
        status = handle.status()
        now = time.monotonic() - started
        if status.num_peers and "first_peer" not in marks:
            marks["first_peer"] = now
        if status.has_metadata and "metadata" not in marks:
            marks["metadata"] = now
        if status.is_seeding:
            marks["complete"] = now
        time.sleep(POLL)
    return marks


def ours_leech(magnet: str, save: str, port: int, router: str) -> dict[str, float]:
    import asyncio

    import uvloop

    from torrent.core.settings import with_values
    from torrent.session import Session, Settings

    settings = with_values(Settings(), {
        "network.bind": "127.0.0.1", "network.listen_port": port, "discovery.dht_bootstrap": router,
        "discovery.lsd": False, "discovery.port_map": False})

    async def main() -> dict[str, float]:
        session = Session(settings)
        await session.start()
        try:
            started = time.monotonic()
            tid = await session.add(magnet, save_path=save)
            marks: dict[str, float] = {}
            while "complete" not in marks:
                snap = session.torrent(tid)
                now = time.monotonic() - started
                if snap.peers and "first_peer" not in marks:
                    marks["first_peer"] = now
                if snap.num_pieces and "metadata" not in marks:
                    marks["metadata"] = now
                if snap.state == "seeding":
                    marks["complete"] = now
                await asyncio.sleep(POLL)
            return marks
        finally:
            await session.close()

    return uvloop.run(main())


def main(argv: list[str]) -> int:
    mode, source, save, port, router = argv
    if mode == "lt-seed":
        return lt_seed(source, save, int(port), router)
    leech = {"lt-leech": lt_leech, "ours-leech": ours_leech}[mode]
    print(json.dumps(leech(source, save, int(port), router)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
