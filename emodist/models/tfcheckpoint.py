"""A strict reader of TensorFlow's tensor-bundle checkpoints (``.index`` + ``.data-*``).

A checkpoint ``PREFIX`` is two files:

- ``PREFIX.index``: one LevelDB table (SSTable).  Blocks of entries with
  prefix-compressed keys and restart points, each block followed by a
  5-byte trailer (compression type, masked CRC-32C of block + type); an
  index block pointing at the data blocks; a 48-byte footer ending in the
  magic number ``0xdb4775248b80fb57``.  The empty key holds a
  ``BundleHeaderProto``; every other key is a variable name whose value is
  a ``BundleEntryProto`` (dtype, shape, shard, offset, size, masked CRC-32C).
- ``PREFIX.data-00000-of-0000N``: the raw little-endian tensor bytes.

The reader parses the few protobuf fields it needs by hand (no protobuf,
no TensorFlow), checks every bound, every block checksum and every tensor
checksum, and returns numpy arrays.  Nothing is executed or unpickled:
only uncompressed tables, numeric dtypes and unsliced tensors are accepted,
anything else is a :class:`~emodist.errors.ModelError` naming the file.

CRC-32C (Castagnoli) is computed with numpy (:func:`crc32c`): many chunks
in parallel through a 256-entry table, then combined with the linear
"append n zero bytes" operator.  It runs at model build time only.
"""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path

import numpy as np

from emodist.errors import ModelError

#: Last 8 bytes of every LevelDB / TensorFlow table.
TABLE_MAGIC = 0xDB4775248B80FB57
#: Size of a table footer: two block handles padded to 40 bytes, then the magic.
FOOTER_SIZE = 48
#: Size of a block trailer: compression type byte + masked CRC-32C.
TRAILER_SIZE = 5
#: Added to the rotated CRC by LevelDB's and TensorFlow's ``crc32c::Mask``.
MASK_DELTA = 0xA282EAD8

#: TensorFlow ``DataType`` enum values this reader accepts -> numpy dtype.
DTYPES = {
    1: np.dtype("<f4"),   # DT_FLOAT
    2: np.dtype("<f8"),   # DT_DOUBLE
    3: np.dtype("<i4"),   # DT_INT32
    4: np.dtype("u1"),    # DT_UINT8
    5: np.dtype("<i2"),   # DT_INT16
    6: np.dtype("i1"),    # DT_INT8
    9: np.dtype("<i8"),   # DT_INT64
    10: np.dtype("?"),    # DT_BOOL
    17: np.dtype("<u2"),  # DT_UINT16
    19: np.dtype("<f2"),  # DT_HALF
    22: np.dtype("<u4"),  # DT_UINT32
    23: np.dtype("<u8"),  # DT_UINT64
}
#: Names of optimizer slot variables (Adam moments, beta powers), left out by default.
SLOT_SUFFIXES = ("/Adam", "/Adam_1", "/Momentum", "/RMSProp", "/RMSProp_1")
SLOT_NAMES = ("beta1_power", "beta2_power", "global_step")

# ---------------------------------------------------------------------------
# CRC-32C
# ---------------------------------------------------------------------------

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
# varints and protobuf fields
# ---------------------------------------------------------------------------

class _Corrupt(Exception):
    """Internal: what is wrong, turned into a ModelError with the file name."""


def _varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= end:
            raise _Corrupt("varint runs past its end")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise _Corrupt("varint longer than 10 bytes")


def _fields(buf: bytes) -> list[tuple[int, int, object]]:
    """(field number, wire type, value) of a protobuf message; value is int or bytes."""
    out = []
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos, end)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise _Corrupt("protobuf field number 0")
        if wire == 0:
            value, pos = _varint(buf, pos, end)
        elif wire == 1:
            if pos + 8 > end:
                raise _Corrupt("fixed64 field runs past its message")
            value, pos = struct.unpack_from("<Q", buf, pos)[0], pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos, end)
            if pos + length > end:
                raise _Corrupt("length-delimited field runs past its message")
            value, pos = bytes(buf[pos:pos + length]), pos + length
        elif wire == 5:
            if pos + 4 > end:
                raise _Corrupt("fixed32 field runs past its message")
            value, pos = struct.unpack_from("<I", buf, pos)[0], pos + 4
        else:
            raise _Corrupt(f"protobuf wire type {wire} is not supported")
        out.append((field, wire, value))
    return out


def _expect(wire: int, want: int, what: str) -> None:
    if wire != want:
        raise _Corrupt(f"{what} has wire type {wire}, expected {want}")


def _parse_shape(buf: bytes) -> tuple[int, ...]:
    dims = []
    for field, wire, value in _fields(buf):
        if field == 2:  # repeated Dim dim
            _expect(wire, 2, "shape.dim")
            size = 0
            for f2, w2, v2 in _fields(value):
                if f2 == 1:
                    _expect(w2, 0, "shape.dim.size")
                    size = v2 - (1 << 64) if v2 >= 1 << 63 else v2
            if size < 0:
                raise _Corrupt(f"dimension of size {size}")
            dims.append(size)
        elif field == 3 and value:
            raise _Corrupt("shape of unknown rank")
    return tuple(dims)


def _parse_entry(buf: bytes) -> dict:
    entry = {"dtype": 0, "shape": (), "shard_id": 0, "offset": 0, "size": 0, "crc32c": None}
    for field, wire, value in _fields(buf):
        if field == 1:
            _expect(wire, 0, "dtype")
            entry["dtype"] = value
        elif field == 2:
            _expect(wire, 2, "shape")
            entry["shape"] = _parse_shape(value)
        elif field in (3, 4, 5):
            _expect(wire, 0, ("shard_id", "offset", "size")[field - 3])
            entry[("shard_id", "offset", "size")[field - 3]] = value
        elif field == 6:
            _expect(wire, 5, "crc32c")
            entry["crc32c"] = value
        elif field == 7:
            raise _Corrupt("sliced (partitioned) tensors are not supported")
    return entry


def _parse_header(buf: bytes) -> dict:
    header = {"num_shards": 0, "endianness": 0}
    for field, wire, value in _fields(buf):
        if field == 1:
            _expect(wire, 0, "num_shards")
            header["num_shards"] = value
        elif field == 2:
            _expect(wire, 0, "endianness")
            header["endianness"] = value
    return header


# ---------------------------------------------------------------------------
# the table
# ---------------------------------------------------------------------------

def _block(data: bytes, offset: int, size: int, what: str) -> bytes:
    """Contents of the block at ``offset``, its trailer checked."""
    if offset < 0 or size < 0 or offset + size + TRAILER_SIZE > len(data) - FOOTER_SIZE:
        raise _Corrupt(f"{what} block [{offset}, +{size}] lies outside the table")
    contents = data[offset:offset + size]
    ctype = data[offset + size]
    if ctype != 0:
        raise _Corrupt(f"{what} block is compressed (type {ctype}); only uncompressed tables are read")
    stored = struct.unpack_from("<I", data, offset + size + 1)[0]
    actual = mask_crc(crc32c(data[offset:offset + size + 1]))
    if stored != actual:
        raise _Corrupt(f"{what} block checksum {stored:#010x} does not match {actual:#010x}")
    return contents


def _block_entries(block: bytes, what: str) -> list[tuple[bytes, bytes]]:
    """The (key, value) pairs of a table block, keys rebuilt from their shared prefixes."""
    if len(block) < 4:
        raise _Corrupt(f"{what} block shorter than its restart count")
    n_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    limit = len(block) - 4 - 4 * n_restarts
    if n_restarts < 1 or limit < 0:
        raise _Corrupt(f"{what} block has {n_restarts} restart points for {len(block)} bytes")
    restarts = struct.unpack_from(f"<{n_restarts}I", block, limit)
    if any(r >= max(limit, 1) for r in restarts) and limit > 0:
        raise _Corrupt(f"{what} block has a restart point past its entries")
    entries, key, pos = [], b"", 0
    restart_set = set(restarts)
    while pos < limit:
        start = pos
        shared, pos = _varint(block, pos, limit)
        unshared, pos = _varint(block, pos, limit)
        vlen, pos = _varint(block, pos, limit)
        if start in restart_set and shared != 0:
            raise _Corrupt(f"{what} block entry at a restart point shares {shared} key bytes")
        if shared > len(key) or pos + unshared + vlen > limit:
            raise _Corrupt(f"{what} block entry at byte {start} runs past the block")
        new_key = key[:shared] + block[pos:pos + unshared]
        pos += unshared
        if entries and new_key <= key:
            raise _Corrupt(f"{what} block keys are not in increasing order at {new_key!r}")
        key = new_key
        entries.append((key, bytes(block[pos:pos + vlen])))
        pos += vlen
    return entries


def _handle(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    offset, pos = _varint(buf, pos, end)
    size, pos = _varint(buf, pos, end)
    return offset, size, pos


def read_index(index_path: str | os.PathLike) -> tuple[dict, dict[str, dict]]:
    """Parse a bundle ``.index`` file.

    Returns
    -------
    (dict, dict)
        The header (``num_shards``, ``endianness``) and, per variable name,
        its entry: ``dtype`` (TensorFlow enum), ``shape``, ``shard_id``,
        ``offset``, ``size``, ``crc32c`` (masked, or None).

    Raises
    ------
    ModelError
        Missing or malformed file (one line naming the file and the fault).
    """
    path = Path(index_path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"{path}: cannot read checkpoint index ({exc.strerror or exc})") from None
    try:
        return _read_index(data)
    except _Corrupt as exc:
        raise ModelError(f"{path.name}: {exc}") from None


def _read_index(data: bytes) -> tuple[dict, dict[str, dict]]:
    if len(data) < FOOTER_SIZE:
        raise _Corrupt(f"{len(data)} bytes is shorter than a table footer")
    magic = struct.unpack_from("<Q", data, len(data) - 8)[0]
    if magic != TABLE_MAGIC:
        raise _Corrupt(f"table magic {magic:#018x} is not {TABLE_MAGIC:#018x} (truncated or not an index)")
    fstart = len(data) - FOOTER_SIZE
    _meta_off, _meta_size, pos = _handle(data, fstart, fstart + 40)
    idx_off, idx_size, pos = _handle(data, pos, fstart + 40)
    _block(data, _meta_off, _meta_size, "metaindex")
    index = _block_entries(_block(data, idx_off, idx_size, "index"), "index")
    header, entries = None, {}
    last_key = None
    for n, (sep, handle) in enumerate(index):
        off, size, hpos = _handle(handle, 0, len(handle))
        if hpos != len(handle):
            raise _Corrupt(f"index entry {n} is not a block handle")
        for key, value in _block_entries(_block(data, off, size, f"data block {n}"), f"data block {n}"):
            if last_key is not None and key <= last_key:
                raise _Corrupt(f"keys are not in increasing order at {key!r}")
            if key > sep:
                raise _Corrupt(f"key {key!r} lies beyond its index separator")
            last_key = key
            if key == b"":
                header = _parse_header(value)
                continue
            try:
                name = key.decode("utf-8")
            except UnicodeDecodeError:
                raise _Corrupt(f"variable name {key!r} is not UTF-8") from None
            try:
                entries[name] = _parse_entry(value)
            except _Corrupt as exc:
                raise _Corrupt(f"entry {name}: {exc}") from None
    if header is None:
        raise _Corrupt("no bundle header (empty key)")
    if header["endianness"] != 0:
        raise _Corrupt("big-endian bundles are not supported")
    if header["num_shards"] < 1:
        raise _Corrupt(f"bundle header says {header['num_shards']} shards")
    return header, entries


def is_slot(name: str) -> bool:
    """True for optimizer state (Adam moments, beta powers, global step)."""
    return name in SLOT_NAMES or name.endswith(SLOT_SUFFIXES)


def read_checkpoint(prefix: str | os.PathLike, *, include_slots: bool = False) -> dict[str, np.ndarray]:
    """Every variable of a TensorFlow checkpoint as a numpy array.

    Parameters
    ----------
    prefix : str or path-like
        The checkpoint prefix: ``PREFIX.index`` and ``PREFIX.data-*-of-*``
        exist.  A prefix that is a folder followed by ``/`` (musicnn's
        ``MTT_musicnn/``) names the files ``.index`` and ``.data-...`` in it.
    include_slots : bool
        Also return optimizer state (``.../Adam``, ``beta1_power``...);
        by default only the model's variables are returned (the slots are
        still bounds-checked).

    Returns
    -------
    dict of str to np.ndarray
        Native-endian arrays, sorted by name; every tensor's CRC-32C has
        been checked against the index.

    Raises
    ------
    ModelError
        A missing, truncated, tampered or unsupported checkpoint.
    """
    prefix = os.fspath(prefix)
    header, entries = read_index(prefix + ".index")
    n = header["num_shards"]
    shards: dict[int, bytes] = {}
    out = {}
    for name, e in entries.items():
        shard_name = f"{prefix}.data-{e['shard_id']:05d}-of-{n:05d}"
        where = Path(shard_name).name
        if e["shard_id"] >= n:
            raise ModelError(f"{Path(prefix + '.index').name}: {name} is in shard {e['shard_id']} of {n}")
        if e["dtype"] not in DTYPES:
            if is_slot(name) and not include_slots:
                continue
            raise ModelError(f"{Path(prefix + '.index').name}: {name} has unsupported dtype {e['dtype']}")
        dtype = DTYPES[e["dtype"]]
        count = math.prod(e["shape"])  # exact (no int64 wrap-around on a forged shape)
        if e["size"] != count * dtype.itemsize:
            raise ModelError(f"{Path(prefix + '.index').name}: {name} has {e['size']} bytes for shape "
                             f"{e['shape']} of {dtype}")
        if e["shard_id"] not in shards:
            try:
                shards[e["shard_id"]] = Path(shard_name).read_bytes()
            except OSError as exc:
                raise ModelError(f"{where}: cannot read checkpoint data ({exc.strerror or exc})") from None
        blob = shards[e["shard_id"]]
        if e["offset"] + e["size"] > len(blob):
            raise ModelError(f"{where}: {name} at [{e['offset']}, +{e['size']}] lies past the end "
                             f"of the {len(blob)}-byte file (truncated?)")
        if is_slot(name) and not include_slots:
            continue
        raw = blob[e["offset"]:e["offset"] + e["size"]]
        if e["crc32c"] is None:
            raise ModelError(f"{Path(prefix + '.index').name}: {name} has no checksum")
        actual = mask_crc(crc32c(raw))
        if actual != e["crc32c"]:
            raise ModelError(f"{where}: {name} checksum {actual:#010x} does not match the index's "
                             f"{e['crc32c']:#010x} (corrupt or tampered)")
        arr = np.frombuffer(raw, dtype=dtype).reshape(e["shape"])
        out[name] = arr.astype(dtype.newbyteorder("="), copy=True)
    return dict(sorted(out.items()))


# ---------------------------------------------------------------------------
# a minimal writer (tests and fixtures)
# ---------------------------------------------------------------------------

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
