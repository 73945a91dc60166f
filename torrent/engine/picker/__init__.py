"""Piece picker: which blocks to request from which peer (sans-IO policy and state).

``PiecePicker`` (``picker``) composes the sub-jobs kept in their own modules:
``availability`` (bit-sliced per-piece peer counts), ``priorities`` (piece and file
priorities, what is left to start) and ``partials`` (block state of pieces in
progress, and the values handed to the engine). Import from here.
"""

from torrent.engine.picker.partials import Block, PieceProgress, Received
from torrent.engine.picker.picker import PiecePicker
from torrent.engine.picker.priorities import DEFAULT_PRIORITY, MAX_PRIORITY, piece_priorities

__all__ = [
    "DEFAULT_PRIORITY",
    "MAX_PRIORITY",
    "Block",
    "PiecePicker",
    "PieceProgress",
    "Received",
    "piece_priorities",
]
