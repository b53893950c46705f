"""The TensorFlow tensor-bundle reader on checkpoints written by the test itself."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest

from emodist.errors import ModelError
from emodist.models import tfcheckpoint as tc
from emodist.models.crc32c import MASK_DELTA, crc32c, mask_crc
from tests.tfwriter import _field, write_checkpoint


@pytest.fixture()
def tensors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    out = {f"layer_{i}/kernel": rng.standard_normal((3, 5, 1, 7)).astype(np.float32) for i in range(20)}
    out.update({
        "batch_normalization/gamma": np.array([1.5], np.float32),
        "dense/bias": rng.standard_normal(11).astype(np.float64),
        "global_step": np.array(1234, np.int64),
        "big": rng.standard_normal((300, 40)).astype(np.float32),  # > 4 KiB: chunked CRC path
        "half": rng.standard_normal(9).astype(np.float16),
        "counts": np.arange(6, dtype=np.int32).reshape(2, 3),
        "empty": np.zeros((0, 4), np.float32),
        "dense/bias/Adam": np.ones(11, np.float64),
    })
    return out


@pytest.fixture()
def ckpt(tmp_path, tensors) -> str:
    return write_checkpoint(str(tmp_path / "model.ckpt"), tensors)


@pytest.mark.parametrize("n", [0, 1, 9, 4095, 4096, 5000, 7 * 1024 + 3, 100_003])
def test_crc32c_matches_a_reference(n):
    data = np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8).tobytes()
    google_crc32c = pytest.importorskip("google_crc32c")
    assert crc32c(data) == google_crc32c.value(data)


def test_crc32c_known_values():
    assert crc32c(b"123456789") == 0xE3069283  # the standard check value
    assert crc32c(b"") == 0
    assert crc32c(bytes(32)) == 0x8A9136AA  # RFC 3720 B.4
    assert mask_crc(0) == MASK_DELTA


def test_round_trip(ckpt, tensors):
    got = tc.read_checkpoint(ckpt, include_slots=True)
    assert set(got) == set(tensors)
    for name, arr in tensors.items():
        assert got[name].dtype == arr.dtype and got[name].shape == arr.shape, name
        np.testing.assert_array_equal(got[name], arr)
    header, entries = tc.read_index(ckpt + ".index")
    assert header["num_shards"] == 1 and len(entries) == len(tensors)


def test_slots_are_left_out_by_default(ckpt):
    got = tc.read_checkpoint(ckpt)
    assert "global_step" not in got and "dense/bias/Adam" not in got and "dense/bias" in got


def test_prefix_compressed_keys_and_restarts(ckpt):
    # 20 keys sharing "layer_" with a restart every 16 entries: the block really is compressed
    data = Path(ckpt + ".index").read_bytes()
    assert data.count(b"layer_") < 20
    assert struct.unpack_from("<Q", data, len(data) - 8)[0] == tc.TABLE_MAGIC


def test_missing_files(tmp_path):
    with pytest.raises(ModelError, match="cannot read checkpoint index"):
        tc.read_checkpoint(str(tmp_path / "nothing"))


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_truncated_index(ckpt):
    path = Path(ckpt + ".index")
    path.write_bytes(path.read_bytes()[:-9])
    with pytest.raises(ModelError) as exc:
        tc.read_checkpoint(ckpt)
    assert "model.ckpt.index" in _one_line(exc) and "magic" in str(exc.value)


def test_truncated_data(ckpt):
    path = Path(ckpt + ".data-00000-of-00001")
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ModelError) as exc:
        tc.read_checkpoint(ckpt)
    assert "data-00000-of-00001" in _one_line(exc) and "past the end" in str(exc.value)


def test_tampered_tensor(ckpt):
    path = Path(ckpt + ".data-00000-of-00001")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x40
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError) as exc:
        tc.read_checkpoint(ckpt)
    assert "checksum" in _one_line(exc) and "tampered" in str(exc.value)


def test_tampered_index_block(ckpt):
    path = Path(ckpt + ".index")
    data = bytearray(path.read_bytes())
    pos = data.index(b"dense/bias")
    data[pos + 6] ^= 0x01  # a key byte inside the data block
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError) as exc:
        tc.read_checkpoint(ckpt)
    assert "model.ckpt.index" in _one_line(exc) and "block checksum" in str(exc.value)


def test_tampered_entry_with_a_matching_block_checksum(ckpt):
    """An entry whose size is changed (and the block checksum fixed up) is still refused."""
    _header, entries = tc.read_index(ckpt + ".index")
    e = entries["big"]
    # make "big" claim more bytes than its shape holds
    prefix = ckpt
    idx = bytearray(Path(prefix + ".index").read_bytes())
    old = _field(5, 0, e["size"])
    new = _field(5, 0, e["size"] + 4)
    assert len(old) == len(new) and idx.count(old) >= 1
    idx = idx.replace(old, new, 1)
    _fix_block_checksums(idx)
    Path(prefix + ".index").write_bytes(bytes(idx))
    with pytest.raises(ModelError) as exc:
        tc.read_checkpoint(prefix)
    assert "bytes for shape" in _one_line(exc)


def _fix_block_checksums(idx: bytearray) -> None:
    footer = len(idx) - tc.FOOTER_SIZE
    m_off, m_size, pos = tc._handle(bytes(idx), footer, footer + 40)
    i_off, i_size, _ = tc._handle(bytes(idx), pos, footer + 40)
    blocks = [(m_off, m_size), (i_off, i_size)]
    for _key, handle in tc._block_entries(bytes(idx[i_off:i_off + i_size]), "index"):
        off, size, _ = tc._handle(handle, 0, len(handle))
        blocks.append((off, size))
    for off, size in blocks:
        crc = mask_crc(crc32c(bytes(idx[off:off + size + 1])))
        idx[off + size + 1:off + size + 5] = struct.pack("<I", crc)


def test_not_an_index(tmp_path):
    (tmp_path / "x.index").write_bytes(os.urandom(200))
    with pytest.raises(ModelError) as exc:
        tc.read_checkpoint(str(tmp_path / "x"))
    assert "x.index" in _one_line(exc)


def test_compressed_table_is_refused(ckpt):
    path = Path(ckpt + ".index")
    idx = bytearray(path.read_bytes())
    # the data block starts at 0; its trailer's type byte follows the block
    footer = len(idx) - tc.FOOTER_SIZE
    _m, _ms, pos = tc._handle(bytes(idx), footer, footer + 40)
    i_off, i_size, _ = tc._handle(bytes(idx), pos, footer + 40)
    (_key, handle), = tc._block_entries(bytes(idx[i_off:i_off + i_size]), "index")
    off, size, _ = tc._handle(handle, 0, len(handle))
    idx[off + size] = 1  # snappy
    _fix_block_checksums(idx)
    path.write_bytes(bytes(idx))
    with pytest.raises(ModelError, match="compressed"):
        tc.read_checkpoint(ckpt)


def test_unsupported_dtype_is_refused(tmp_path):
    prefix = write_checkpoint(str(tmp_path / "s"), {"a": np.zeros(3, np.float32)})
    idx = bytearray(Path(prefix + ".index").read_bytes())
    idx = idx.replace(b"a" + bytes([0x08, 0x01]), b"a" + bytes([0x08, 0x07]), 1)  # DT_STRING
    _fix_block_checksums(idx)
    Path(prefix + ".index").write_bytes(bytes(idx))
    with pytest.raises(ModelError, match="unsupported dtype 7"):
        tc.read_checkpoint(prefix)
