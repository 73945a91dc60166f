"""A libtorrent magnet leecher as its own process, for ``test_dht_interop.py``.

It imports only the standard library and libtorrent, so a test can run it under whichever Python has the
libtorrent it wants: Debian's ``python3-libtorrent`` (2.0) under ``/usr/bin/python3``, or the PyPI wheel.

    lt_magnet_peer.py MAGNET SAVE_DIR SETTINGS_JSON

``SETTINGS_JSON`` is libtorrent's whole settings pack (the test builds it from ``LIBTORRENT_LOOPBACK``
and ``lt_dht.LOOPBACK_DHT``, so nothing here can reach beyond what it says). It prints a line per event,
flushed: ``version V``, ``dht-peers N`` (a DHT search of its torrent found N peers), ``metadata``,
``done`` (every piece, written: the session is destroyed first), and exits 0; ``error ...`` and exit 1 if
libtorrent reports an error.
"""

from __future__ import annotations

import json
import sys


def main(argv: list[str]) -> int:
    import libtorrent as lt

    uri, save, settings_json = argv
    settings = json.loads(settings_json)
    settings["alert_mask"] = int(lt.alert_category.error | lt.alert_category.status | lt.alert_category.dht)
    print(f"version {lt.__version__}", flush=True)
    session = lt.session(settings)
    params = lt.parse_magnet_uri(uri)
    params.save_path = save
    handle = session.add_torrent(params)
    while True:
        session.wait_for_alert(100)
        for alert in session.pop_alerts():
            if isinstance(alert, lt.dht_reply_alert):
                print(f"dht-peers {alert.num_peers}", flush=True)
            elif isinstance(alert, lt.metadata_received_alert):
                print("metadata", flush=True)
        status = handle.status()
        if status.errc.value():
            print(f"error {status.errc.message()}", flush=True)
            return 1
        if status.is_seeding:
            break
    session.pause()
    del handle, session  # waits for the disk threads: "finished" can come before the last write
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
