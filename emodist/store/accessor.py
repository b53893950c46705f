"""The one way to open a store, and the ``ds.emodist`` accessor.

:func:`open_store` opens a store lazily (consolidated metadata and the
``segment`` index only; every other array is a lazy dask array whose blocks
are the store's chunks).  The accessor keeps what queries cache with the
Dataset it belongs to (the coordinate index, column statistics, the Zarr
group for fast reads): ``ds.emodist.select(...)``, ``ds.emodist.similar(...)``,
``ds.emodist.info()``.  A Dataset made from it (``isel``, ``copy``) gets an
accessor of its own and builds its own index.
"""

from __future__ import annotations

import os
import warnings

import xarray as xr

from emodist.errors import StoreError
from emodist.store import layout
from emodist.store.handle import StoreHandle, as_store
from emodist.store.index import build_index
from emodist.store.info import info
from emodist.store.lock import reader_note
from emodist.store.select import by_emotion, select
from emodist.store.similar import similar, similar_tracks
from emodist.store.zarrio import local_reads, store_exists, zarr_store

__all__ = ["EmodistAccessor", "counting_store", "open_store"]


@xr.register_dataset_accessor("emodist")
class EmodistAccessor:
    """Queries of an emodist feature store; caches live with the Dataset."""

    def __init__(self, ds: xr.Dataset):
        self._ds = ds
        self._index = None
        self.zarr_group = None
        self.url: str | None = None
        self.storage_options: dict | None = None

    @property
    def groups(self) -> list[str]:
        """The stored feature groups."""
        return layout.stored_groups(self._ds)

    @property
    def index(self):
        """The :class:`emodist.store.index.StoreIndex`, built on first use."""
        if self._index is None:
            self._index = checked_index(self._ds, self.zarr_group, self.url or "the store")
        return self._index

    def select(self, tracks=None, labels=None, genres=None, segments=None, features=None, *,
               include_incomplete: bool = False):
        """See :func:`emodist.store.select.select`."""
        return select(self._ds, tracks, labels, genres, segments, features,
                      include_incomplete=include_incomplete)

    def by_emotion(self, emotion: str, **kwargs):
        """See :func:`emodist.store.select.by_emotion`."""
        return by_emotion(self._ds, emotion, **kwargs)

    def similar(self, segment_id: str | None = None, **kwargs):
        """See :func:`emodist.store.similar.similar`."""
        return similar(self._ds, segment_id, **kwargs)

    def similar_tracks(self, track_id: str | None = None, **kwargs):
        """See :func:`emodist.store.similar.similar_tracks`."""
        return similar_tracks(self._ds, track_id, **kwargs)

    def info(self) -> dict:
        """See :func:`emodist.store.info.info`."""
        return info(self._ds)


def _open_zarr(target, name: str) -> xr.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return xr.open_zarr(target, consolidated=True, chunks={})
        except (FileNotFoundError, KeyError, ValueError):
            pass  # no consolidated metadata: an interrupted write, still readable
        try:
            return xr.open_zarr(target, consolidated=False, chunks={})
        except Exception as exc:  # noqa: BLE001 - zarr and fsspec raise many kinds here
            raise StoreError(f"{name}: not a readable Zarr store ({type(exc).__name__})") from None


@local_reads()
def open_store(url, storage_options: dict | None = None) -> xr.Dataset:
    """Open a feature store lazily.

    Parameters
    ----------
    url : str, os.PathLike, StoreHandle or zarr.abc.store.Store
        Local path, fsspec URL (``s3://bucket/features.zarr``), the handle
        of a run (:class:`emodist.store.handle.StoreHandle`) or an open Zarr
        store object.
    storage_options : dict, optional
        Filesystem options for URLs (credentials, ``client_kwargs``...).

    Returns
    -------
    xarray.Dataset
        The store in the layout of :mod:`emodist.store.layout`, indexed by
        segment id; string coordinates decoded to Python ``str``.

    Raises
    ------
    StoreError
        Nothing is at ``url``, or what is there is not an emodist store.

    Examples
    --------
    >>> ds = open_store("features.zarr")  # doctest: +SKIP
    >>> ds.sel(segment="12:001").handcrafted  # doctest: +SKIP
    """
    from zarr.abc.store import Store

    handle = None
    if isinstance(url, Store):
        target, name = url, str(url)
    else:
        handle = as_store(url if isinstance(url, StoreHandle) else
                          os.fspath(url) if isinstance(url, os.PathLike) else str(url),
                          storage_options, read_only=True).reading()
        name = str(handle)
        try:
            exists = store_exists(handle)
        except Exception as exc:  # noqa: BLE001 - unreachable endpoint, bad credentials...
            detail = (str(exc).strip().splitlines() or [""])[0]
            raise StoreError(f"{name}: cannot reach the store ({type(exc).__name__}: {detail})")
        if not exists:
            raise StoreError(f"{name}: no feature store there (no zarr.json)")
        target = handle.zarr_store
    ds = _open_zarr(target, name)
    if layout.SEGMENT not in ds.coords or "feature_groups" not in ds.attrs:
        raise StoreError(f"{name}: not an emodist feature store (no segment index or groups)")
    if ds.attrs.get(layout.PLAN_PENDING):
        raise StoreError(f"{name}: incomplete: its segment coordinates were never all written "
                         "(a run stopped while planning); rerun emodist extract")
    strings = {n: (v.dims, layout.decode_strings(v.values), v.attrs)
               for n, v in ds.coords.items()
               if v.dtype.kind in "UOT" or str(v.dtype).startswith("StringDType")}
    ds = ds.assign_coords(strings)
    check_ids(ds, name)
    if handle is not None:
        reader_note(handle)
    acc = ds.emodist
    acc.url = None if handle is None else name
    acc.storage_options = None if handle is None else handle.storage_options
    if handle is None:
        import zarr

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            acc.zarr_group = zarr.open_group(target, mode="r")
    else:
        acc.zarr_group = handle.group()
    return ds


def damaged(name: str, what: str) -> StoreError:
    """The one-line error of a damaged store, pointing to ``emodist verify``."""
    return StoreError(f"{name}: damaged store: {what}; run `emodist verify {name}` for the "
                      "details and the repair")


def check_ids(ds: xr.Dataset, name: str) -> None:
    """Refuse a store whose segment ids (in memory) are blank or repeated.

    A missing chunk of the ``segment`` coordinate reads as blank ids.  Values
    are not checked here (that reads every chunk):
    :func:`emodist.store.verify.verify_store` does.
    """
    ids = ds.indexes[layout.SEGMENT]
    blank = int((ids == "").sum()) if ds.sizes[layout.SEGMENT] else 0
    if blank:
        raise damaged(name, f"{blank} segment ids are missing")
    if not ids.is_unique:
        raise damaged(name, f"segment id {ids[ids.duplicated()][0]!r} appears more than once")


def checked_index(ds: xr.Dataset, group, name: str):
    """:func:`emodist.store.index.build_index`, refusing what readers cannot trust.

    Statuses that cannot be read, track ids or paths missing (blank), start
    times or durations missing (NaN) are one line naming ``emodist verify``.
    """
    import numpy as np


    try:
        index = build_index(ds, group)
    except StoreError:
        raise
    except Exception as exc:  # noqa: BLE001 - codecs raise RuntimeError, ValueError...
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise damaged(name, f"a status or coordinate is unreadable ({detail})") from None
    for coord in ("track_id", "path"):
        values = (index.categories[coord][index.codes[coord]] if coord in index.codes
                  else index.columns.get(coord))
        if coord in ds.coords and values is not None and (np.asarray(values) == "").any():
            raise damaged(name, f"{coord} is missing for some segments")
    for coord in ("start_s", "duration_s"):
        if coord in ds.coords and not np.isfinite(np.asarray(index.columns[coord],
                                                             np.float64)).all():
            raise damaged(name, f"{coord} is missing for some segments")
    return index


def counting_store(url, storage_options: dict | None = None):
    """A read-only Zarr store for ``url`` that counts what is read from it.

    Open it with :func:`open_store` to measure the keys and bytes a query
    fetches (``.keys`` lists them, ``.bytes_read`` sums their sizes).

    Parameters
    ----------
    url : str
        Local path or fsspec URL.
    storage_options : dict, optional
        Filesystem options.

    Returns
    -------
    zarr.storage.WrapperStore
        With ``bytes_read``, ``keys`` and ``reset()``.
    """
    import threading

    from zarr.storage import WrapperStore

    class CountingStore(WrapperStore):
        def __init__(self, store):
            super().__init__(store)
            self._lock = threading.Lock()
            self.reset()

        def reset(self) -> None:
            with self._lock:
                self.bytes_read, self.keys = 0, []

        def _count(self, key: str, buf) -> None:
            if buf is not None:
                with self._lock:
                    self.bytes_read += len(buf)
                    self.keys.append(key)

        async def get(self, key, prototype, byte_range=None):
            buf = await self._store.get(key, prototype, byte_range)
            self._count(key, buf)
            return buf

        async def get_partial_values(self, prototype, key_ranges):
            key_ranges = list(key_ranges)
            bufs = await self._store.get_partial_values(prototype, key_ranges)
            for (key, _), buf in zip(key_ranges, bufs):
                self._count(key, buf)
            return bufs

    return CountingStore(zarr_store(str(url), storage_options, read_only=True))


