"""torrent: a BitTorrent client with a Cython hot path."""

__version__ = "0.1.0"
