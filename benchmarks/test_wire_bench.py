"""Wire framing and parsing of piece traffic, the leecher's and seeder's
per-block Python work. There is no compiled twin of the codec yet: the
reference in each group is the floor, the bare memory copy that any receive
path into piece buffers needs, so the gap is the parser's own cost.

- ``parse-pieces``: 8 MiB of 16 KiB ``piece`` messages fed in 256 KiB chunks
  (what one uvloop read delivers), each block copied into its piece buffer,
  against copying the same bytes with no parsing.
- ``frame-requests``: 500 ``request`` messages built and joined (one fill of a
  deep pipeline), against joining 500 prebuilt messages.

    .venv/bin/pytest benchmarks/test_wire_bench.py --benchmark-only -q \\
        --benchmark-columns=min,median,mean,rounds
"""

from __future__ import annotations

import os

import pytest

from torrent.codec import wire
from torrent.codec.wire import Piece, WireParser

BLOCK = 16 * 1024
PIECE = 256 * 1024
SIZE = 8 * 1024 * 1024
CHUNK = 256 * 1024
REQUESTS = 500


@pytest.fixture(scope="module")
def stream() -> tuple[bytes, bytes]:
    """(wire bytes of SIZE payload in piece messages, the payload)."""
    payload = os.urandom(SIZE)
    messages = [wire.build_piece(off // PIECE, off % PIECE, payload[off:off + BLOCK]) for off in range(0, SIZE, BLOCK)]
    return b"".join(messages), payload


def parse_into_pieces(data: bytes) -> bytearray:
    parser = WireParser(expect_handshake=False, num_pieces=SIZE // PIECE)
    out = bytearray(SIZE)
    view = memoryview(data)
    for start in range(0, len(data), CHUNK):
        for event in parser.feed(view[start:start + CHUNK]):
            if type(event) is Piece:
                at = event.index * PIECE + event.begin
                out[at:at + len(event.data)] = event.data
    return out


def copy_only(data: bytes) -> bytearray:
    """The floor: the same bytes copied, 13-byte headers skipped, no parsing."""
    out = bytearray(SIZE)
    view = memoryview(data)
    step = BLOCK + 13
    for n, start in enumerate(range(0, len(data), step)):
        out[n * BLOCK:(n + 1) * BLOCK] = view[start + 13:start + step]
    return out


@pytest.mark.parametrize("impl", ["parser", "copy-floor"])
def test_parse_piece_stream(benchmark, stream, impl):
    benchmark.group = "parse-pieces"
    data, payload = stream
    fn = parse_into_pieces if impl == "parser" else copy_only
    assert fn(data) == payload
    benchmark.extra_info["mb"] = SIZE / 1e6
    benchmark.pedantic(fn, args=(data,), rounds=10, iterations=1, warmup_rounds=1)


def build_requests() -> bytes:
    return b"".join([wire.build_request(i >> 4, (i & 15) * BLOCK, BLOCK) for i in range(REQUESTS)])


@pytest.mark.parametrize("impl", ["build", "join-floor"])
def test_frame_requests(benchmark, impl):
    benchmark.group = "frame-requests"
    prebuilt = [wire.build_request(i >> 4, (i & 15) * BLOCK, BLOCK) for i in range(REQUESTS)]
    fn = build_requests if impl == "build" else (lambda: b"".join(prebuilt))
    framed = fn()
    assert len(framed) == 17 * REQUESTS
    parsed = WireParser(expect_handshake=False).feed(framed)
    assert [(r.index, r.begin, r.length) for r in parsed] == [(i >> 4, (i & 15) * BLOCK, BLOCK) for i in range(REQUESTS)]
    benchmark(fn)
