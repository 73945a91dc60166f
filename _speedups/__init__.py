"""Compiled hot paths; each module has a pure-Python twin in ``torrent/``.

Import the selectors in ``torrent`` (``torrent.bitfield``, ``torrent.hashing``)
rather than these modules: the selectors fall back to the twins when a
module is not built or ``TORRENT_PURE_PYTHON`` is set.
"""
