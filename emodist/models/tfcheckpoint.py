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

CRC-32C comes from :mod:`emodist.models.crc32c` (numpy, no compiled extension).
"""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path

import numpy as np

from emodist.errors import ModelError
from emodist.models.crc32c import crc32c, mask_crc

__all__ = [
    "DTYPES", "FOOTER_SIZE", "SLOT_NAMES", "SLOT_SUFFIXES", "TABLE_MAGIC", "TRAILER_SIZE",
    "is_slot", "read_checkpoint", "read_index",
]

#: Last 8 bytes of every LevelDB / TensorFlow table.
TABLE_MAGIC = 0xDB4775248B80FB57
#: Size of a table footer: two block handles padded to 40 bytes, then the magic.
FOOTER_SIZE = 48
#: Size of a block trailer: compression type byte + masked CRC-32C.
TRAILER_SIZE = 5
#: TensorFlow ``DataType`` enum values this reader accepts -> numpy dtype.
#: (DT_FLOAT, DT_DOUBLE, DT_INT32, DT_UINT8, DT_INT16, DT_INT8, DT_INT64, DT_BOOL,
#: DT_UINT16, DT_HALF, DT_UINT32, DT_UINT64)
DTYPES = {enum: np.dtype(code) for enum, code in (
    (1, "<f4"), (2, "<f8"), (3, "<i4"), (4, "u1"), (5, "<i2"), (6, "i1"), (9, "<i8"),
    (10, "?"), (17, "<u2"), (19, "<f2"), (22, "<u4"), (23, "<u8"))}
#: Names of optimizer slot variables (Adam moments, beta powers), left out by default.
SLOT_SUFFIXES = ("/Adam", "/Adam_1", "/Momentum", "/RMSProp", "/RMSProp_1")
SLOT_NAMES = ("beta1_power", "beta2_power", "global_step")


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


#: Scalar fields of a ``BundleEntryProto``: number -> (name, wire type).
_ENTRY_FIELDS = {1: ("dtype", 0), 3: ("shard_id", 0), 4: ("offset", 0), 5: ("size", 0),
                 6: ("crc32c", 5)}
#: Fields of a ``BundleHeaderProto``.
_HEADER_FIELDS = {1: ("num_shards", 0), 2: ("endianness", 0)}


def _scalar(out: dict, spec: dict, field: int, wire: int, value) -> bool:
    """Store a scalar field named in ``spec`` (checking its wire type); False if not one."""
    if field not in spec:
        return False
    name, want = spec[field]
    _expect(wire, want, name)
    out[name] = value
    return True


def _parse_entry(buf: bytes) -> dict:
    entry = {"dtype": 0, "shape": (), "shard_id": 0, "offset": 0, "size": 0, "crc32c": None}
    for field, wire, value in _fields(buf):
        if _scalar(entry, _ENTRY_FIELDS, field, wire, value):
            continue
        if field == 2:
            _expect(wire, 2, "shape")
            entry["shape"] = _parse_shape(value)
        elif field == 7:
            raise _Corrupt("sliced (partitioned) tensors are not supported")
    return entry


def _parse_header(buf: bytes) -> dict:
    header = {"num_shards": 0, "endianness": 0}
    for field, wire, value in _fields(buf):
        _scalar(header, _HEADER_FIELDS, field, wire, value)
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
