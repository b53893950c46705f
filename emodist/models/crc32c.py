"""CRC-32C (Castagnoli) in numpy, for checking TensorFlow checkpoint files.

Many chunks are computed in parallel through a 256-entry table, then combined
with the linear "append n zero bytes" operator.  It runs at model build time
only.
"""

from __future__ import annotations

import numpy as np

__all__ = ["MASK_DELTA", "crc32c", "mask_crc"]

#: Added to a rotated CRC to make TensorFlow's "masked" checksum.
MASK_DELTA = 0xA282EAD8

_POLY = 0x82F63B78  # Castagnoli, reflected


def _make_table() -> np.ndarray:
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(_POLY), table >> 1).astype(np.uint32)
    return table


_TABLE = _make_table()
_TABLE_LIST = [int(v) for v in _TABLE]
_CHUNK = 1024  # bytes per parallel chunk
_SHIFT_CACHE: dict[int, list[np.ndarray]] = {}


def _crc_bytes(crc: int, data: bytes | memoryview) -> int:
    """Raw (un-inverted) CRC register after ``data``, one byte at a time."""
    t = _TABLE_LIST
    for b in bytes(data):
        crc = t[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc


def _shift_tables(nbytes: int) -> list[np.ndarray]:
    """Four 256-entry tables applying "feed ``nbytes`` zero bytes" to a CRC register."""
    if nbytes not in _SHIFT_CACHE:
        basis = (np.uint32(1) << np.arange(32, dtype=np.uint32)).astype(np.uint32)
        for _ in range(nbytes):
            basis = _TABLE[basis & 0xFF] ^ (basis >> 8)
        tables = []
        values = np.arange(256, dtype=np.uint32)
        for k in range(4):
            out = np.zeros(256, np.uint32)
            for bit in range(8):
                out ^= np.where((values >> bit) & 1, basis[8 * k + bit], np.uint32(0)).astype(np.uint32)
            tables.append(out)
        _SHIFT_CACHE[nbytes] = tables
    return _SHIFT_CACHE[nbytes]


def crc32c(data: bytes | bytearray | memoryview) -> int:
    """CRC-32C (Castagnoli) of ``data``, as ``crc32c::Value`` computes it.

    >>> hex(crc32c(b"123456789"))
    '0xe3069283'
    """
    mv = memoryview(data).cast("B")
    n = len(mv)
    if n < 4 * _CHUNK:
        return _crc_bytes(0xFFFFFFFF, mv) ^ 0xFFFFFFFF
    k = n // _CHUNK
    block = np.frombuffer(mv[: k * _CHUNK], dtype=np.uint8).reshape(k, _CHUNK).astype(np.uint32)
    regs = np.zeros(k, np.uint32)
    regs[0] = 0xFFFFFFFF
    for j in range(_CHUNK):
        regs = _TABLE[(regs ^ block[:, j]) & 0xFF] ^ (regs >> 8)
    t0, t1, t2, t3 = (t.tolist() for t in _shift_tables(_CHUNK))
    crc = 0
    for r in regs.tolist():
        crc = t0[crc & 0xFF] ^ t1[(crc >> 8) & 0xFF] ^ t2[(crc >> 16) & 0xFF] ^ t3[crc >> 24] ^ r
    return _crc_bytes(crc, mv[k * _CHUNK:]) ^ 0xFFFFFFFF


def mask_crc(crc: int) -> int:
    """LevelDB's ``crc32c::Mask``: rotate right by 15 bits and add :data:`MASK_DELTA`."""
    crc &= 0xFFFFFFFF
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + MASK_DELTA) & 0xFFFFFFFF


# ---------------------------------------------------------------------------
