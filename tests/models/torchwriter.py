"""TorchScript-shaped archives written by the tests (no torch needed).

Used by ``test_unpickle.py`` and ``test_inception_graph.py``.
"""

from __future__ import annotations

import collections
import io
import pickle
import zipfile

import numpy as np


class Global:
    """A global reference written as a GLOBAL opcode (the class is never imported)."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __call__(self, *args):  # pickle only accepts callables as reduce functions
        raise AssertionError("never called while writing")


class Storage:
    def __init__(self, key: str, array: np.ndarray, type_name: str):
        self.key, self.array, self.type_name = key, array, type_name


class Tensor:
    def __init__(self, storage: Storage, offset: int, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride


class Module:
    def __init__(self, qualname: str, **attrs):
        self.qualname, self.attrs = qualname, attrs


class ArchivePickler(pickle._Pickler):
    """Writes pickles shaped like TorchScript's data.pkl (protocol 2)."""

    def save(self, obj, save_persistent_id=True):
        if isinstance(obj, Global):
            self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
            return
        super().save(obj, save_persistent_id)

    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", Global("torch", obj.type_name), obj.key, "cpu", obj.array.size)
        return None

    def reducer_override(self, obj):
        if isinstance(obj, Tensor):
            return (Global("torch._utils", "_rebuild_tensor_v2"),
                    (obj.storage, obj.offset, tuple(obj.size), tuple(obj.stride), False,
                     collections.OrderedDict()))
        if isinstance(obj, Module):
            module, name = obj.qualname.rsplit(".", 1)
            return (Global(module, name), (), obj.attrs)
        return NotImplemented


def write_archive(path, root, storages, pickle_bytes=None) -> None:
    buf = io.BytesIO()
    if pickle_bytes is None:
        ArchivePickler(buf, protocol=2).dump(root)
        pickle_bytes = buf.getvalue()
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", pickle_bytes)
        zf.writestr("archive/version", "3\n")
        for s in storages:
            zf.writestr(f"archive/data/{s.key}", s.array.astype(s.array.dtype.newbyteorder("<")).tobytes())
