"""A minimal TensorFlow tensor-bundle checkpoint writer, for the reader's tests.

It writes what :func:`emodist.models.tfcheckpoint.read_checkpoint` reads: one
uncompressed LevelDB table of ``BundleEntryProto`` values and one data shard.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

from emodist.models.crc32c import crc32c, mask_crc
from emodist.models.tfcheckpoint import DTYPES, TABLE_MAGIC

_DTYPE_ENUM = {v.str.lstrip("<|="): k for k, v in DTYPES.items()}


def _put_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(number: int, wire: int, payload: bytes | int) -> bytes:
    key = _put_varint(number << 3 | wire)
    if wire == 0:
        return key + _put_varint(payload)
    if wire == 5:
        return key + struct.pack("<I", payload)
    return key + _put_varint(len(payload)) + payload


def _table_block(items: list[tuple[bytes, bytes]], restart_interval: int = 16) -> bytes:
    out, restarts, last = bytearray(), [], b""
    for i, (key, value) in enumerate(items):
        if i % restart_interval == 0:
            restarts.append(len(out))
            shared = 0
        else:
            shared = 0
            while shared < min(len(key), len(last)) and key[shared] == last[shared]:
                shared += 1
        out += _put_varint(shared) + _put_varint(len(key) - shared) + _put_varint(len(value))
        out += key[shared:] + value
        last = key
    if not restarts:
        restarts = [0]
    out += struct.pack(f"<{len(restarts)}I", *restarts) + struct.pack("<I", len(restarts))
    return bytes(out)


def write_checkpoint(prefix: str | os.PathLike, tensors: dict[str, np.ndarray]) -> str:
    """Write ``tensors`` as a one-shard tensor bundle (what TensorFlow's saver writes).

    For tests and fixtures: an uncompressed table with one data block.

    Returns
    -------
    str
        The prefix.
    """
    prefix = os.fspath(prefix)
    blob = bytearray()
    items = [(b"", _field(1, 0, 1) + _field(3, 2, _field(1, 0, 1)))]  # num_shards 1, version.producer 1
    for name in sorted(tensors):
        arr = np.asarray(tensors[name], order="C")  # (ascontiguousarray would make scalars 1-D)
        dt = arr.dtype.newbyteorder("<") if arr.dtype.byteorder not in "|" else arr.dtype
        raw = arr.astype(dt, copy=False).tobytes()
        shape = b"".join(_field(2, 2, _field(1, 0, d) if d else b"") for d in arr.shape)
        value = (_field(1, 0, _DTYPE_ENUM[dt.str.lstrip("<|=")]) + _field(2, 2, shape)
                 + (_field(4, 0, len(blob)) if blob else b"") + _field(5, 0, len(raw))
                 + _field(6, 5, mask_crc(crc32c(raw))))
        items.append((name.encode(), value))
        blob += raw
    index = bytearray()

    def add_block(contents: bytes) -> tuple[int, int]:
        off = len(index)
        index.extend(contents + b"\x00")
        index.extend(struct.pack("<I", mask_crc(crc32c(contents + b"\x00"))))
        return off, len(contents)

    d_off, d_size = add_block(_table_block(items))
    m_off, m_size = add_block(_table_block([]))
    last_key = items[-1][0]
    i_off, i_size = add_block(_table_block([(last_key + b"\x00" if last_key else b"\x00",
                                             _put_varint(d_off) + _put_varint(d_size))]))
    footer = _put_varint(m_off) + _put_varint(m_size) + _put_varint(i_off) + _put_varint(i_size)
    footer = footer.ljust(40, b"\x00") + struct.pack("<Q", TABLE_MAGIC)
    Path(prefix + ".index").write_bytes(bytes(index) + footer)
    Path(prefix + ".data-00000-of-00001").write_bytes(bytes(blob))
    return prefix
