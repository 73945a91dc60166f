"""Codecs (sans-IO): bytes in, values out, and back. Bencode, metainfo, magnet
links, the peer wire, tracker messages, piece geometry, safe paths, client
names. No sockets, clocks, threads or asyncio here (an import-linter contract
says so); everything is tested with bytes alone."""
