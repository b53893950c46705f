"""The restricted TorchScript unpickler, on archives written by the test itself."""

from __future__ import annotations

import io
import os
import pickle
import zipfile

import numpy as np
import pytest

from emodist.errors import ModelError
from emodist.models.unpickle import ScriptRecord, load_archive, state_dict
from tests.models.torchwriter import ArchivePickler, Module, Storage, Tensor, write_archive


@pytest.fixture()
def small_archive(tmp_path):
    w = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    s0 = Storage("0", w.ravel(), "FloatStorage")
    s1 = Storage("1", np.array([7, -3, 11, 5, 2], dtype=np.int64), "LongStorage")
    layer = Module("__torch__.net.Layer",
                   weight=Tensor(s0, 0, (2, 3, 4), (12, 4, 1)),
                   transposed=Tensor(s0, 0, (4, 3), (1, 4)),   # non-contiguous view
                   tail=Tensor(s1, 2, (3,), (1,)),             # storage offset
                   stride=2, padding=[0, 3])
    root = Module("__torch__.wrap.Root", training=False,
                  net=Module("__torch__.net.Net", layers=layer))
    path = tmp_path / "small.pt"
    write_archive(path, root, [s0, s1])
    return path, w


def test_reads_tensors_views_and_offsets(small_archive):
    path, w = small_archive
    root = load_archive(str(path))
    assert isinstance(root, ScriptRecord) and root.torch_class == "__torch__.wrap.Root"
    layer = root.net.layers
    np.testing.assert_array_equal(layer.weight, w)
    np.testing.assert_array_equal(layer.transposed, w.ravel()[:12].reshape(3, 4).T)
    assert layer.transposed.flags.c_contiguous
    np.testing.assert_array_equal(layer.tail, [11, 5, 2])
    assert layer.tail.dtype == np.int64
    assert layer.stride == 2 and layer.padding == [0, 3]
    sd = state_dict(root)
    assert set(sd) == {"net.layers.weight", "net.layers.transposed", "net.layers.tail"}


def test_reads_from_bytes_too(small_archive):
    path, w = small_archive
    np.testing.assert_array_equal(load_archive(path.read_bytes()).net.layers.weight, w)


class Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("payload", ["os_system", "eval", "record_then_os"])
def test_malicious_pickle_is_refused_before_running(tmp_path, payload):
    marker = tmp_path / "pwned"
    if payload == "os_system":
        data = pickle.dumps(Evil(marker), protocol=2)
    elif payload == "eval":
        buf = io.BytesIO()
        ArchivePickler(buf, protocol=2).dump(Module("builtins.eval", x=1))
        data = buf.getvalue()
    else:
        data = pickle.dumps({"net": Evil(marker)}, protocol=2)
    path = tmp_path / "evil.pt"
    write_archive(path, None, [], pickle_bytes=data)
    with pytest.raises(ModelError, match="refused"):
        load_archive(str(path))
    assert not marker.exists()
    # the same bytes really do run code through an ordinary unpickler
    if payload == "os_system":
        pickle.loads(data)
        assert marker.exists()


def test_broken_archives_are_model_errors(tmp_path, small_archive):
    bad = tmp_path / "not.zip"
    bad.write_bytes(b"plain text")
    with pytest.raises(ModelError, match="zip"):
        load_archive(str(bad))
    nopkl = tmp_path / "nopkl.pt"
    with zipfile.ZipFile(nopkl, "w") as zf:
        zf.writestr("x/readme", "hi")
    with pytest.raises(ModelError, match="data.pkl"):
        load_archive(str(nopkl))
    # a storage that is missing from data/
    path, _ = small_archive
    src = zipfile.ZipFile(path)
    cut = tmp_path / "cut.pt"
    with zipfile.ZipFile(cut, "w") as zf:
        for name in src.namelist():
            if name != "archive/data/1":
                zf.writestr(name, src.read(name))
    with pytest.raises(ModelError, match="data/1"):
        load_archive(str(cut))
    trunc = tmp_path / "trunc.pt"
    with zipfile.ZipFile(trunc, "w") as zf:
        zf.writestr("archive/data.pkl", src.read("archive/data.pkl")[:40])
    with pytest.raises(ModelError):
        load_archive(str(trunc))


def test_out_of_range_view_is_refused(tmp_path):
    s = Storage("0", np.zeros(4, np.float32), "FloatStorage")
    root = Module("__torch__.m.M", t=Tensor(s, 2, (3,), (1,)))
    path = tmp_path / "oob.pt"
    write_archive(path, root, [s])
    with pytest.raises(ModelError, match="past the end"):
        load_archive(str(path))
