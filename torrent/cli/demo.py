"""Sample payloads for the demo and benchmarks: deterministic, incompressible,
and shaped to exercise multi-file geometry (a short last piece, files that
straddle piece boundaries)."""

from __future__ import annotations

import random
from pathlib import Path

CHUNK = 1 << 22


def make_payload(root: Path, size: int, *, files: int = 3, seed: int = 1) -> Path:
    """Write ``size`` bytes of pseudo-random data split over ``files`` files
    under ``root`` (a directory), and return ``root``."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    # Uneven shares so file boundaries fall inside pieces.
    weights = [rng.uniform(0.5, 1.5) for _ in range(files)]
    lengths = [int(size * w / sum(weights)) for w in weights]
    lengths[-1] += size - sum(lengths)
    for i, length in enumerate(lengths):
        sub = root / ("data" if i % 2 else "") / f"part-{i:02d}.bin"
        sub.parent.mkdir(parents=True, exist_ok=True)
        with open(sub, "wb") as fh:
            for start in range(0, length, CHUNK):
                fh.write(rng.randbytes(min(CHUNK, length - start)))
    return root
