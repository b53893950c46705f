"""The feature store on disk: template, region writes, resume, open.

A store is written in three steps, so that many workers can fill it at
once without coordination:

1. :func:`create_store` writes a *template*: every coordinate, the vote
   distributions, ``status`` (all pending) and the metadata of the feature
   arrays, whose chunks are left unwritten (they read as NaN).  The layout is
   fixed here and the metadata is consolidated once.
2. Workers call :func:`write_region` on disjoint, chunk-aligned slices of
   ``segment`` (one writer per chunk), writing the features first and the
   ``status`` of the slice last, so an interrupted write is redone.
3. :func:`finish_store` records the failures and re-consolidates.

:func:`pending_regions` reads ``status`` to find what a rerun still has to
do; :func:`check_compatible` refuses to mix configurations in one store;
:func:`open_store` opens the result lazily with :mod:`xarray`.

Locations are local paths or fsspec URLs (``s3://bucket/prefix``);
``storage_options`` go to the filesystem and are never written anywhere.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable

import numpy as np
import pandas as pd
import xarray as xr

from emodist.store import layout as schema
from emodist.spec import Config
from emodist.errors import StoreError

#: Target size of one uncompressed chunk of the widest feature array.
TARGET_CHUNK_BYTES = 2 * 2**20
#: A store is cut into at least this many chunks (work units) when it can be.
MIN_CHUNKS = 16
#: Fewest segments in one chunk.
MIN_CHUNK_SEGMENTS = 4
#: Most segments in one chunk of a per-segment coordinate.
COORD_CHUNK_SEGMENTS = 100_000
#: zstd level of every array.
ZSTD_LEVEL = 3

_FEATURE_VARS = (schema.HANDCRAFTED, schema.DEEP)


def _is_url(url: str) -> bool:
    return "://" in str(url) and not str(url).startswith("file://")


def zarr_store(url: str, storage_options: dict | None = None, read_only: bool = False):
    """The :mod:`zarr` store object for a local path or an fsspec URL.

    Parameters
    ----------
    url : str
        Local path, ``file://`` URL or fsspec URL such as ``s3://bucket/x.zarr``.
    storage_options : dict, optional
        Filesystem options (credentials, ``client_kwargs``...).
    read_only : bool
        Open without write access.

    Returns
    -------
    zarr.abc.store.Store
    """
    import zarr.storage

    url = str(url)
    if _is_url(url):
        return zarr.storage.FsspecStore.from_url(
            url, storage_options=dict(storage_options or {}), read_only=read_only
        )
    path = url.removeprefix("file://")
    return zarr.storage.LocalStore(path, read_only=read_only)


def _fs(url: str, storage_options: dict | None):
    import fsspec

    return fsspec.core.url_to_fs(str(url), **dict(storage_options or {}))


def store_exists(url: str, storage_options: dict | None = None) -> bool:
    """Whether a Zarr group exists at ``url`` (its ``zarr.json`` is there)."""
    try:
        fs, path = _fs(url, storage_options)
        return fs.exists(path.rstrip("/") + "/zarr.json")
    except FileNotFoundError:
        return False


def remove_store(url: str, storage_options: dict | None = None) -> None:
    """Delete the store at ``url`` and everything in it (no-op when absent)."""
    fs, path = _fs(url, storage_options)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def chunk_segments(
    n_segments: int,
    row_bytes: int,
    *,
    target_bytes: int = TARGET_CHUNK_BYTES,
    min_chunks: int = MIN_CHUNKS,
    min_size: int = MIN_CHUNK_SEGMENTS,
) -> int:
    """Segments per chunk along ``segment``: the store's read and work unit.

    The chunk of the widest feature array (``row_bytes`` per segment) is kept
    near ``target_bytes`` (2 MiB: 256 segments of a 2048-wide float32
    embedding), but small stores are still cut into ``min_chunks`` pieces so
    that several workers share them.

    Parameters
    ----------
    n_segments : int
        Length of the ``segment`` dimension.
    row_bytes : int
        Bytes of one segment in the widest feature array.
    target_bytes, min_chunks, min_size : int
        Tuning, see above.

    Returns
    -------
    int
        Chunk length, ``>= 1``.
    """
    if n_segments <= 0:
        return 1
    by_size = max(1, target_bytes // max(1, int(row_bytes)))
    by_count = math.ceil(n_segments / min_chunks)
    return int(max(1, min(n_segments, max(min_size, min(by_size, by_count)))))


def chunk_regions(n_segments: int, chunk: int) -> list[tuple[int, int]]:
    """``[start, stop)`` bounds of every chunk along ``segment``."""
    return [(a, min(a + chunk, n_segments)) for a in range(0, n_segments, chunk)]


def template(
    plan: pd.DataFrame,
    *,
    handcrafted_names: list[str] | None,
    deep_dim: int | None,
    chunk: int,
    votes: np.ndarray | None = None,
    votes_mean: np.ndarray | None = None,
    attrs: dict | None = None,
) -> xr.Dataset:
    """The store Dataset with lazy (never computed) NaN feature arrays.

    Parameters
    ----------
    plan : pandas.DataFrame
        Segment plan table (see :data:`emodist.store.layout.SEGMENT_COORDS`).
    handcrafted_names : list of str or None
        Handcrafted feature names, ``None`` for no handcrafted variable.
    deep_dim : int or None
        Embedding width, ``None`` for no deep variable.
    chunk : int
        Segments per chunk.
    votes, votes_mean : numpy.ndarray, optional
        ``(n_segments, 9)`` vote distributions.
    attrs : dict, optional
        Store attributes.

    Returns
    -------
    xarray.Dataset
        Coordinates, ``status`` and votes in memory; features as dask arrays.
    """
    return schema.build_dataset(plan, handcrafted_names, deep_dim, votes=votes,
                                votes_mean=votes_mean, attrs=attrs, lazy_chunk=chunk)


def encoding(ds: xr.Dataset, chunk: int) -> dict:
    """Zarr encoding: ``chunk`` segments per data chunk, zstd everywhere."""
    from zarr.codecs import ZstdCodec

    enc = {}
    for name, var in ds.variables.items():
        if name in ds.dims and name != schema.SEGMENT:
            continue
        if var.dims and var.dims[0] == schema.SEGMENT:
            size = chunk if name in ds.data_vars else min(len(var), COORD_CHUNK_SEGMENTS)
            chunks = (max(1, size),) + tuple(var.shape[1:])
        else:
            chunks = tuple(var.shape)
        enc[name] = {"chunks": chunks, "compressors": [ZstdCodec(level=ZSTD_LEVEL)]}
    return enc


def create_store(url: str, ds: xr.Dataset, chunk: int, storage_options: dict | None = None) -> None:
    """Write the template ``ds`` at ``url`` and consolidate its metadata.

    Coordinates, ``status`` and votes are written; the feature chunks are
    not (they read as NaN until a worker fills them).
    """
    if _is_url(url):
        # many small requests to an object store are slow: write locally, upload once
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory(prefix="emodist-template-") as tmp:
            local = Path(tmp) / "store.zarr"
            create_store(str(local), ds, chunk)
            files = sorted(p for p in local.rglob("*") if p.is_file())
            fs, root = _fs(url, storage_options)
            root = root.rstrip("/")
            fs.put([str(p) for p in files], [f"{root}/{p.relative_to(local).as_posix()}" for p in files])
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(
            zarr_store(url, storage_options),
            mode="w",
            compute=False,
            encoding=encoding(ds, chunk),
            consolidated=True,
            zarr_format=3,
        )


def _open_group(url: str, storage_options: dict | None, mode: str = "r"):
    import zarr

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return zarr.open_group(
                zarr_store(url, storage_options, read_only=(mode == "r")), mode=mode
            )
    except (FileNotFoundError, KeyError, ValueError) as exc:
        raise StoreError(f"{url}: not a feature store ({type(exc).__name__})") from None
    except Exception as exc:  # zarr raises its own types for missing groups
        if type(exc).__name__ in ("GroupNotFoundError", "NodeTypeValidationError"):
            raise StoreError(f"{url}: not a feature store") from None
        raise


def read_attrs(url: str, storage_options: dict | None = None) -> dict:
    """The store's attributes as a plain dict."""
    return dict(_open_group(url, storage_options).attrs)


def read_status(url: str, storage_options: dict | None = None) -> np.ndarray:
    """The ``status`` array (0 pending, 1 done, -1 failed) as int8."""
    g = _open_group(url, storage_options)
    if schema.STATUS not in g:
        raise StoreError(f"{url}: store has no {schema.STATUS!r} array")
    return np.asarray(g[schema.STATUS][:], dtype=np.int8)


def store_chunk(url: str, storage_options: dict | None = None) -> int:
    """Segments per chunk of the existing store at ``url``."""
    g = _open_group(url, storage_options)
    return int(g[schema.STATUS].chunks[0])


def pending_regions(status: np.ndarray, chunk: int) -> list[tuple[int, int, int]]:
    """Chunks holding at least one pending segment.

    Parameters
    ----------
    status : numpy.ndarray
        Per-segment status.
    chunk : int
        Segments per chunk.

    Returns
    -------
    list of (chunk_index, start, stop)
    """
    out = []
    for i, (a, b) in enumerate(chunk_regions(len(status), chunk)):
        if np.any(status[a:b] == schema.STATUS_PENDING):
            out.append((i, a, b))
    return out


def _differences(stored: dict, wanted: dict, most: int = 3) -> str | None:
    diffs = [f"{key}={stored.get(key)!r}, not {wanted.get(key)!r}"
             for key in sorted(set(stored) | set(wanted)) if stored.get(key) != wanted.get(key)]
    return "; ".join(diffs[:most]) or None


def check_compatible(
    url: str, attrs: dict, config: Config, segment_ids: Iterable[str], stored_ids: Iterable[str]
) -> None:
    """Refuse to resume a store written with another config or plan.

    Parameters
    ----------
    url : str
        Store location, for the message.
    attrs : dict
        Attributes of the existing store.
    config : Config
        The requested configuration.
    segment_ids, stored_ids : iterable of str
        Segment ids of the new plan and of the store.

    Raises
    ------
    StoreError
        The stored config or segment list differs.
    """
    if "config" not in attrs:
        raise StoreError(f"{url}: exists but is not an emodist feature store; use --overwrite")
    stored = Config.from_json(attrs["config"]).extraction_key()
    diff = _differences(stored, config.extraction_key())
    if diff:
        raise StoreError(
            f"{url}: store was written with {diff}; use --overwrite or another --store"
        )
    new, old = list(segment_ids), [str(s) for s in stored_ids]
    if new != old:
        raise StoreError(
            f"{url}: store holds {len(old)} segments of another dataset plan "
            f"(this one has {len(new)}); use --overwrite or another --store"
        )


def read_segment_ids(url: str, storage_options: dict | None = None) -> list[str]:
    """The ``segment_id`` coordinate of a store as Python strings."""
    g = _open_group(url, storage_options)
    return [str(s) for s in schema.decode_strings(g["segment_id"][:])]


def write_region(
    url: str,
    start: int,
    stop: int,
    values: dict[str, np.ndarray],
    status: np.ndarray,
    storage_options: dict | None = None,
) -> None:
    """Write one chunk-aligned slice ``[start, stop)`` of the feature arrays.

    Features are written first and ``status`` last, so a write interrupted
    half-way leaves the slice pending and a rerun redoes it.

    Parameters
    ----------
    url : str
        Store location.
    start, stop : int
        Slice along ``segment``; ``start`` must be a chunk boundary and
        ``stop`` the next one (or the end).
    values : dict of str to numpy.ndarray
        ``{"handcrafted": (stop - start, F), "deep": (stop - start, D)}``.
    status : numpy.ndarray
        ``(stop - start,)`` int8 status of the slice.
    storage_options : dict, optional
        Filesystem options.
    """
    g = _open_group(url, storage_options, mode="r+")
    chunk = int(g[schema.STATUS].chunks[0])
    n = int(g[schema.STATUS].shape[0])
    if start % chunk or not (stop == min(start + chunk, n)):
        raise StoreError(f"{url}: region [{start}, {stop}) is not one chunk of {chunk} segments")
    for name, arr in values.items():
        if name not in g:
            raise StoreError(f"{url}: store has no {name!r} array")
        target = g[name]
        arr = np.asarray(arr, dtype=target.dtype)
        if arr.shape != (stop - start,) + tuple(target.shape[1:]):
            raise StoreError(
                f"{url}: {name} block of shape {arr.shape} does not fit region "
                f"[{start}, {stop}) x {target.shape[1:]}"
            )
        target[start:stop] = arr
    g[schema.STATUS][start:stop] = np.asarray(status, dtype=np.int8)


def finish_store(url: str, attrs: dict, storage_options: dict | None = None) -> None:
    """Update store attributes and re-consolidate the metadata."""
    import zarr

    store = zarr_store(url, storage_options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = zarr.open_group(store, mode="r+")
        g.attrs.update(attrs)
        zarr.consolidate_metadata(store)


def merge_failures(old: list[dict], new: list[dict]) -> list[dict]:
    """Failures of both lists, one per ``(track_id, path)``, newest message kept."""
    merged: dict[tuple, dict] = {}
    for f in list(old) + list(new):
        merged[(str(f.get("track_id")), str(f.get("path")))] = {
            "track_id": str(f.get("track_id")),
            "path": str(f.get("path")),
            "error": str(f.get("error")),
        }
    return list(merged.values())


def open_store(url: str, storage_options: dict | None = None) -> xr.Dataset:
    """Open a feature store with its string coordinates decoded.

    The public lazy reader is :func:`emodist.store.query.open_store` (also
    ``emodist.open_store``); this opens the store through it and then turns
    the string coordinates (track ids, labels, ...) into Python ``str``, which
    the evaluation driver wants in memory anyway.  Feature arrays stay lazy.

    Parameters
    ----------
    url : str
        Local path or fsspec URL of the store.
    storage_options : dict, optional
        Filesystem options.

    Returns
    -------
    xarray.Dataset

    Raises
    ------
    StoreError
        Nothing usable is at ``url``.
    """
    from emodist.store.query import open_store as open_lazy

    ds = open_lazy(url, storage_options)
    strings = {
        name: (var.dims, schema.decode_strings(var.values))
        for name, var in ds.coords.items()
        if var.dtype.kind in "UOT" or str(var.dtype).startswith("StringDType")
    }
    return ds.assign_coords(strings)


def failures(ds_or_attrs) -> list[dict]:
    """The recorded failures of a store (``Dataset`` or its ``attrs``)."""
    attrs = ds_or_attrs.attrs if hasattr(ds_or_attrs, "attrs") else ds_or_attrs
    raw = attrs.get("failures", "[]")
    return json.loads(raw) if isinstance(raw, str) else list(raw)
