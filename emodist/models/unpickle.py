"""Read the tensors of a TorchScript archive without importing torch.

A TorchScript ``.pt`` file is a zip archive: ``<name>/data.pkl`` is a pickle
of the module tree whose tensors refer, through pickle's persistent ids, to
raw little-endian buffers ``<name>/data/<key>``.  :class:`RestrictedUnpickler`
reads that pickle while refusing every global except

- ``torch._utils._rebuild_tensor_v2`` / ``_rebuild_parameter`` (rebuilt here
  as NumPy arrays),
- the ``torch.*Storage`` type names (mapped to NumPy dtypes, never imported),
- ``collections.OrderedDict`` and ``torch.jit._pickle.build_*list`` (plain
  lists of ints, floats, bools or tensors),
- the archive's own ``__torch__.*`` module classes, which become inert
  :class:`ScriptRecord` attribute bags (the archive's code is never run).

Anything else (``os.system``, ``builtins.eval``, ``subprocess.Popen``, ...)
raises :class:`emodist.errors.ModelError` before it can be called.
"""

from __future__ import annotations

import collections
import io
import pickle
import zipfile
from collections.abc import Iterator
from typing import Any

import numpy as np

from emodist.errors import ModelError

__all__ = [
    "STORAGE_DTYPES", "RestrictedUnpickler", "ScriptRecord", "iter_records", "load_archive",
    "state_dict",
]

#: torch storage type name -> NumPy dtype of its raw little-endian buffer.
STORAGE_DTYPES = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class ScriptRecord:
    """Inert stand-in for one ``__torch__.*`` module object: a bag of attributes.

    ``torch_class`` holds the original qualified class name; the attributes
    restored by pickle's ``BUILD`` are in ``__dict__``.
    """

    torch_class = ""

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"<{self.torch_class} {sorted(vars(self))}>"


class _StorageType:
    """A torch storage type name, carried as data (dtype only)."""

    def __init__(self, name: str):
        self.name = name
        self.dtype = STORAGE_DTYPES[name]


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None) -> np.ndarray:
    """NumPy equivalent of ``torch._utils._rebuild_tensor_v2`` (copied, C order)."""
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    if len(size) != len(stride) or any(s < 0 for s in size) or any(s < 0 for s in stride):
        raise ModelError("archive tensor has an invalid size or stride")
    offset = int(storage_offset)
    if any(s == 0 for s in size):
        return np.zeros(size, dtype=storage.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if offset < 0 or last >= storage.size:
        raise ModelError("archive tensor reaches past the end of its storage")
    item = storage.itemsize
    view = np.lib.stride_tricks.as_strided(storage[offset:], shape=size,
                                           strides=tuple(s * item for s in stride))
    return np.array(view, order="C", copy=True)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None) -> np.ndarray:
    """``torch._utils._rebuild_parameter``: a parameter is just its data here."""
    return data


_ALLOWED_CALLABLES = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch.jit._pickle", "build_intlist"): list,
    ("torch.jit._pickle", "build_doublelist"): list,
    ("torch.jit._pickle", "build_boollist"): list,
    ("torch.jit._pickle", "build_tensorlist"): list,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler of a TorchScript ``data.pkl`` that only rebuilds tensors and records.

    Parameters
    ----------
    file : file object
        The pickle stream.
    read_storage : callable
        ``read_storage(key) -> bytes`` of ``data/<key>`` in the archive.
    """

    def __init__(self, file, read_storage):
        super().__init__(file)
        self._read_storage = read_storage
        self._storages: dict[str, np.ndarray] = {}
        self._records: dict[str, type] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_CALLABLES:
            return _ALLOWED_CALLABLES[(module, name)]
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        if module.startswith("__torch__.") or module == "__torch__":
            qual = f"{module}.{name}"
            if qual not in self._records:
                self._records[qual] = type(name, (ScriptRecord,), {"torch_class": qual})
            return self._records[qual]
        raise ModelError(f"archive pickle refers to {module}.{name}; refused (only tensors are read)")

    def persistent_load(self, pid) -> np.ndarray:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType)):
            raise ModelError(f"archive pickle has an unknown persistent id {str(pid)[:60]}")
        _, stype, key, _location, numel = pid
        key = str(key)
        if key not in self._storages:
            raw = self._read_storage(key)
            if len(raw) < int(numel) * stype.dtype.itemsize:
                raise ModelError(f"archive storage data/{key} is shorter than its {numel} elements")
            arr = np.frombuffer(raw, dtype=stype.dtype, count=int(numel))
            self._storages[key] = arr
        return self._storages[key]


def _archive_prefix(zf: zipfile.ZipFile) -> str:
    names = [n for n in zf.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
    if not names:
        raise ModelError("not a TorchScript archive: no data.pkl inside")
    return names[0][: -len("data.pkl")]


def load_archive(source) -> Any:
    """Unpickle the module tree of a TorchScript archive, tensors as NumPy arrays.

    Parameters
    ----------
    source : str, path-like, bytes or file object
        The ``.pt`` zip archive.

    Returns
    -------
    object
        The root :class:`ScriptRecord` (module objects as records, tensors as
        C-ordered ``np.ndarray``).

    Raises
    ------
    ModelError
        Not a zip archive, no ``data.pkl``, a refused global, a broken storage.
    """
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    try:
        zf = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelError(f"not a TorchScript archive (zip): {exc}") from None
    with zf:
        prefix = _archive_prefix(zf)

        def read_storage(key: str) -> bytes:
            try:
                return zf.read(f"{prefix}data/{key}")
            except KeyError:
                raise ModelError(f"archive lacks storage data/{key}") from None

        with zf.open(f"{prefix}data.pkl") as f:
            try:
                return RestrictedUnpickler(f, read_storage).load()
            except ModelError:
                raise
            except Exception as exc:  # noqa: BLE001 - malformed pickle streams raise many types
                raise ModelError(f"cannot read archive data.pkl: {exc}") from None


def iter_records(obj: Any, path: str = "") -> Iterator[tuple[str, ScriptRecord]]:
    """Every :class:`ScriptRecord` of a tree with its dotted attribute path."""
    if isinstance(obj, ScriptRecord):
        yield path, obj
        for key, value in vars(obj).items():
            yield from iter_records(value, f"{path}.{key}" if path else key)
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from iter_records(value, f"{path}.{key}" if path else str(key))


def state_dict(obj: Any) -> dict[str, np.ndarray]:
    """Flat ``{"a.b.weight": array}`` of every tensor in a loaded tree."""
    out = {}
    for path, rec in iter_records(obj):
        for key, value in vars(rec).items():
            if isinstance(value, np.ndarray):
                out[f"{path}.{key}" if path else key] = value
    return out
