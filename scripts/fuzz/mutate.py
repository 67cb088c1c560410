"""A small deterministic mutator: the smoke test and the no-atheris fallback use it."""

from __future__ import annotations

import random

INTERESTING = (0, 1, 2, 3, 4, 0x7F, 0x80, 0xFF, 0x100, 0xFFFF, 0x10000, 0x7FFFFFFF, 0xFFFFFFFF)


def mutate(data: bytes, rng: random.Random, corpus: list[bytes] | None = None) -> bytes:
    """One to four random edits of ``data``."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(8)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:  # flip a bit
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:  # set a byte
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        elif op == 2:  # an interesting little-endian value
            v = rng.choice(INTERESTING)
            width = rng.choice((1, 2, 4))
            buf[pos : pos + width] = (v & ((1 << (8 * width)) - 1)).to_bytes(width, "little")
        elif op == 3 and buf:  # delete a run
            n = rng.randint(1, min(64, len(buf)))
            del buf[pos : pos + n]
        elif op == 4:  # insert random bytes
            buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif op == 5 and buf:  # duplicate a run
            n = rng.randint(1, min(256, len(buf)))
            start = rng.randrange(len(buf))
            buf[pos:pos] = buf[start : start + n]
        elif op == 6 and corpus:  # splice with another input
            other = rng.choice(corpus)
            cut = rng.randrange(len(other) + 1)
            buf = buf[:pos] + other[cut:]
        elif op == 7:  # truncate
            del buf[pos:]
    return bytes(buf)
