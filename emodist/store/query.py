"""Read a feature store: open it lazily, select features, find similar segments.

The functions here never load a feature array whole.  A store's per-segment
coordinates (``track_id``, ``label``, ``status``...) are small; they are read
once per opened store into a :class:`StoreIndex` that maps tracks, labels and
segment ids to row positions.  Feature rows are then read with positional
slices of the lazy :mod:`dask` arrays, so only the chunks that hold them are
fetched.  :func:`similar` streams the store block by block and keeps a running
top-k, so its memory does not grow with the store.

Only segments whose ``status`` is 1 (done) hold values; pending and failed
segments are left out unless asked for.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import difflib
import fnmatch
import json
import os
import warnings
import weakref

import numpy as np
import pandas as pd
import xarray as xr

from emodist.store import layout as schema
from emodist.errors import EmodistError, StoreError

#: Variables whose columns :func:`select` can return, in column order.
FEATURE_VARIABLES = (schema.HANDCRAFTED, schema.DEEP, schema.VOTES, schema.VOTES_MEAN)
#: Per-segment columns every :func:`select` result starts with.
META_COLUMNS = tuple(schema.SEGMENT_COORDS)
#: Categorical coordinates that selections filter on.
_CODED = ("track_id", "label", "group", "genre")
#: Distance metrics of :func:`similar`.
METRICS = ("cosine", "euclidean")
#: Uncompressed bytes of one block streamed by :func:`similar`.
BLOCK_BYTES = 32 * 2**20

_HANDLES: dict[int, _Handle] = {}


# --------------------------------------------------------------------------- opening


@dataclasses.dataclass
class _Handle:
    """What this module remembers about one opened Dataset."""

    url: str | None
    storage_options: dict | None
    group: object = None
    index: StoreIndex | None = None


def _handle(ds: xr.Dataset) -> _Handle:
    key = id(ds)
    h = _HANDLES.get(key)
    if h is None:
        h = _Handle(url=None, storage_options=None)
        _HANDLES[key] = h
        weakref.finalize(ds, _HANDLES.pop, key, None)
    return h


def open_store(url, storage_options: dict | None = None) -> xr.Dataset:
    """Open a feature store lazily.

    Only the consolidated metadata and the dimension coordinates are read;
    every other array is a lazy :mod:`dask` array whose blocks are the
    store's chunks.

    Parameters
    ----------
    url : str, os.PathLike or zarr.abc.store.Store
        Local path, fsspec URL (``s3://bucket/features.zarr``) or an open
        Zarr store object.
    storage_options : dict, optional
        Filesystem options for URLs (credentials, ``client_kwargs``...).

    Returns
    -------
    xarray.Dataset
        The store in the layout of :mod:`emodist.store.layout`.

    Raises
    ------
    StoreError
        Nothing is at ``url``, or what is there is not an emodist store.

    Examples
    --------
    >>> ds = open_store("features.zarr")  # doctest: +SKIP
    >>> ds.deep  # doctest: +SKIP
    <xarray.DataArray 'deep' (segment: 398, deep_feature: 2048)> dask.array<...>
    """
    from zarr.abc.store import Store

    from emodist.store.zarrio import store_exists, zarr_store

    if isinstance(url, Store):
        target, name = url, str(url)
    else:
        name = os.fspath(url) if isinstance(url, os.PathLike) else str(url)
        try:
            exists = store_exists(name, storage_options)
        except Exception as exc:  # noqa: BLE001 - unreachable endpoint, bad credentials...
            detail = (str(exc).strip().splitlines() or [""])[0]
            raise StoreError(f"{name}: cannot reach the store ({type(exc).__name__}: {detail})")
        if not exists:
            raise StoreError(f"{name}: no feature store there (no zarr.json)")
        target = zarr_store(name, storage_options, read_only=True)
    ds = _open_zarr(target, name)
    if schema.STATUS not in ds or "segment_id" not in ds.coords:
        raise StoreError(f"{name}: not an emodist feature store (no status or segment_id)")
    h = _handle(ds)
    h.url = None if isinstance(url, Store) else name
    h.storage_options = storage_options
    h.group = _open_group(target)
    return ds


def _open_group(target):
    import zarr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return zarr.open_group(target, mode="r")


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


def _as_dataset(store, storage_options: dict | None = None) -> xr.Dataset:
    if isinstance(store, xr.Dataset):
        return store
    return open_store(store, storage_options)


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

    from emodist.store.zarrio import zarr_store

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


# --------------------------------------------------------------------------- index


@dataclasses.dataclass
class StoreIndex:
    """The small per-segment coordinates of a store, read once.

    Attributes
    ----------
    n : int
        Number of segments.
    status : numpy.ndarray
        int8 status per segment.
    codes : dict of str to numpy.ndarray
        Integer codes of ``track_id``, ``label``, ``group`` and ``genre``.
    categories : dict of str to numpy.ndarray
        The distinct values (``object`` arrays of ``str``) the codes index.
    columns : dict of str to numpy.ndarray
        The other coordinates (``segment_id``, ``segment_index``, ``start_s``,
        ``duration_s``, ``path``) as stored.
    feature_names : dict of str to list of str
        Column names of each feature variable present.
    """

    n: int
    status: np.ndarray
    codes: dict
    categories: dict
    columns: dict
    feature_names: dict
    _segment_lookup: pd.Index | None = None
    _lookups: dict = dataclasses.field(default_factory=dict)
    _stats: dict = dataclasses.field(default_factory=dict)

    def segment_positions(self, segment_ids) -> np.ndarray:
        """Row positions of segment ids (``-1`` for unknown ones)."""
        if self._segment_lookup is None:
            self._segment_lookup = pd.Index(schema.decode_strings(self.columns["segment_id"]))
        return self._segment_lookup.get_indexer(list(segment_ids))

    def meta(self, positions: np.ndarray) -> pd.DataFrame:
        """The metadata columns of the rows at ``positions``."""
        out = {}
        for name in META_COLUMNS:
            if name in self.codes:
                out[name] = self.categories[name][self.codes[name][positions]]
            else:
                out[name] = schema.decode_strings(self.columns[name][positions])
        return pd.DataFrame(out)


def _feature_names(ds: xr.Dataset) -> dict[str, list[str]]:
    names = {}
    for var in FEATURE_VARIABLES:
        if var not in ds.data_vars:
            continue
        dim = ds[var].dims[1]
        if var in (schema.VOTES, schema.VOTES_MEAN):
            names[var] = [f"{var}_{e}" for e in schema.decode_strings(ds[dim].values)]
        else:
            names[var] = [str(s) for s in schema.decode_strings(ds[dim].values)]
    return names


def store_index(store, storage_options: dict | None = None) -> StoreIndex:
    """The :class:`StoreIndex` of a store, built on first use and cached.

    Parameters
    ----------
    store : xarray.Dataset or str
        An opened store (the index is cached on it) or its location.
    storage_options : dict, optional
        Filesystem options when ``store`` is a location.

    Returns
    -------
    StoreIndex
    """
    import dask

    ds = _as_dataset(store, storage_options)
    h = _handle(ds)
    if h.index is not None:
        return h.index
    names = ["status"] + [c for c in META_COLUMNS if c in ds.coords]
    if h.group is not None:  # one concurrent read per array, not one task per chunk
        raw = {c: np.asarray(h.group[c][...]) for c in names}
    else:
        raw = dict(zip(names, dask.compute(*(ds[c].data for c in names), scheduler="threads")))
    n = ds.sizes[schema.SEGMENT]
    codes, categories, columns = {}, {}, {}
    for name in META_COLUMNS:
        values = raw.get(name)
        if values is None:
            values = np.zeros(n) if name in ("start_s", "duration_s", "segment_index") else (
                np.full(n, "", dtype=object))
        if name in _CODED:
            c, u = pd.factorize(schema.decode_strings(values))  # hashing, not sorting
            codes[name] = c.astype(np.int32)
            categories[name] = np.asarray(u, dtype=object)
        else:
            columns[name] = values
    h.index = StoreIndex(
        n=n,
        status=np.asarray(raw["status"], np.int8),
        codes=codes,
        categories=categories,
        columns=columns,
        feature_names=_feature_names(ds),
    )
    return h.index


# --------------------------------------------------------------------------- names


def suggest(value: str, valid, n: int = 5) -> list[str]:
    """Valid names close to ``value`` (for "did you mean" messages).

    Long lists are first narrowed to their lexicographic neighbours of
    ``value``, so that this stays fast on a million segment ids.

    Parameters
    ----------
    value : str
        The unknown name.
    valid : sequence of str
        The known names.
    n : int
        Most suggestions.

    Returns
    -------
    list of str
    """
    pool = np.asarray([str(v) for v in valid], dtype=object)
    if len(pool) > 2000:
        pool = np.sort(pool)
        i = int(np.searchsorted(pool, value))
        pool = pool[max(0, i - 50): i + 50]
    return difflib.get_close_matches(value, list(pool), n=n, cutoff=0.5)


def unknown_name(kind: str, value: str, valid, plural: str | None = None) -> EmodistError:
    """The one-line error for an unknown track, label, feature...

    Parameters
    ----------
    kind : str
        What was looked up (``"track"``, ``"label"``...).
    value : str
        The unknown value.
    valid : sequence of str
        The values that exist.
    plural : str, optional
        Plural of ``kind`` (default ``kind + "s"``).

    Returns
    -------
    EmodistError
        To be raised by the caller.
    """
    plural = plural or f"{kind}s"
    valid = [str(v) for v in valid]
    close = suggest(value, valid)
    text = f"unknown {kind} {value!r}"
    if close:
        text += f"; did you mean {', '.join(close)}?"
    if len(valid) <= 12:
        text += f" valid {plural}: {', '.join(valid) or '(none)'}"
    elif not close:
        text += f"; valid {plural} include {', '.join(valid[:8])}, ... ({len(valid)} in all)"
    return EmodistError(text)


def _as_list(value) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def resolve_features(store, features=None) -> dict[str, list[int]]:
    """Column positions of each feature variable for names, patterns and groups.

    Parameters
    ----------
    store : xarray.Dataset or StoreIndex
        An opened store.
    features : str or sequence of str, optional
        Feature names (``"mfcc_00_mean"``), glob patterns (``"mfcc_*"``) or
        group names (``"handcrafted"``, ``"deep"``, ``"votes"``,
        ``"votes_mean"``).  ``None`` means ``"handcrafted"`` when the store
        has it, else ``"deep"``.

    Returns
    -------
    dict of str to list of int
        ``{variable: [column, ...]}`` in the order asked, without repeats.

    Raises
    ------
    EmodistError
        A name that is not stored or a pattern that matches nothing.
    """
    index = store if isinstance(store, StoreIndex) else store_index(store)
    names = index.feature_names
    if not names:
        raise StoreError("store holds no feature arrays")
    tokens = _as_list(features)
    if tokens is None:
        tokens = [schema.HANDCRAFTED if schema.HANDCRAFTED in names else next(iter(names))]
    position = {var: {name: i for i, name in enumerate(cols)} for var, cols in names.items()}
    chosen: dict[str, list[int]] = {}
    seen: set[tuple[str, int]] = set()

    def add(var: str, cols) -> None:
        for c in cols:
            if (var, c) not in seen:
                seen.add((var, c))
                chosen.setdefault(var, []).append(c)

    for tok in tokens:
        if tok in names:
            add(tok, range(len(names[tok])))
            continue
        hits = [(var, position[var][tok]) for var in names if tok in position[var]]
        if not hits and any(ch in tok for ch in "*?["):
            for var, cols in names.items():
                add(var, [i for i, nm in enumerate(cols) if fnmatch.fnmatchcase(nm, tok)])
            if not any(fnmatch.fnmatchcase(nm, tok) for cols in names.values() for nm in cols):
                groups = ", ".join(names)
                raise EmodistError(
                    f"feature pattern {tok!r} matches no stored feature; groups: {groups}"
                )
            continue
        if not hits:
            every = list(names) + [nm for cols in names.values() for nm in cols]
            raise unknown_name("feature", tok, every)
        for var, c in hits:
            add(var, [c])
    return chosen


def feature_columns(store, features=None) -> list[str]:
    """Column names that ``select(store, features=features)`` returns."""
    index = store if isinstance(store, StoreIndex) else store_index(store)
    chosen = resolve_features(index, features)
    return [index.feature_names[var][c] for var, cols in chosen.items() for c in cols]


# --------------------------------------------------------------------------- rows


def _codes_for(index: StoreIndex, name: str, values: list[str]) -> np.ndarray:
    if name not in index._lookups:
        index._lookups[name] = pd.Index(index.categories[name])
    codes = index._lookups[name].get_indexer(values)
    if (codes < 0).any():
        kind = {"track_id": "track", "label": "label", "genre": "genre", "group": "group"}[name]
        bad = values[int(np.flatnonzero(codes < 0)[0])]
        raise unknown_name(kind, bad, sorted(c for c in index.categories[name] if c))
    return codes.astype(np.int32)


def positions(
    store,
    tracks=None,
    labels=None,
    genres=None,
    segments=None,
    *,
    include_incomplete: bool = False,
) -> np.ndarray:
    """Sorted row positions of the segments that match every filter.

    Parameters
    ----------
    store : xarray.Dataset or StoreIndex
        An opened store.
    tracks, labels, genres, segments : str or sequence of str, optional
        Keep segments of these tracks, classes, genres or segment ids.
    include_incomplete : bool
        Keep pending and failed segments too (their features are NaN).

    Returns
    -------
    numpy.ndarray
        int64 positions along ``segment``.

    Raises
    ------
    EmodistError
        An unknown track, label, genre or segment id.
    """
    index = store if isinstance(store, StoreIndex) else store_index(store)
    mask = np.ones(index.n, dtype=bool)
    if not include_incomplete:
        mask &= index.status == schema.STATUS_DONE
    for name, values in (("track_id", tracks), ("label", labels), ("genre", genres)):
        values = _as_list(values)
        if values is not None:
            mask &= np.isin(index.codes[name], _codes_for(index, name, values))
    seg = _as_list(segments)
    if seg is not None:
        pos = index.segment_positions(seg)
        if (pos < 0).any():
            bad = seg[int(np.flatnonzero(pos < 0)[0])]
            ids = index.columns["segment_id"]
            raise unknown_name("segment", bad, schema.decode_strings(ids))
        keep = np.zeros(index.n, dtype=bool)
        keep[pos] = True
        mask &= keep
    return np.flatnonzero(mask)


def _index_or_slice(idx: np.ndarray):
    """``idx`` as a slice when it is a contiguous run, else as is."""
    if len(idx) and idx[-1] - idx[0] + 1 == len(idx) and np.all(np.diff(idx) == 1):
        return slice(int(idx[0]), int(idx[-1]) + 1)
    return idx


def _lazy_rows(darr, rows, cols):
    """Lazy dask selection of ``rows`` x ``cols`` touching only their chunks."""
    sub = darr[rows]
    if not (isinstance(cols, slice) and cols == slice(0, darr.shape[1])):
        sub = sub[:, cols]
    return sub


def read_values(store, chosen: dict, rows) -> list[np.ndarray]:
    """Values of feature variables at some rows, reading only their chunks.

    A Dataset from :func:`open_store` is read through its Zarr arrays
    directly (many chunks per call, concurrently); any other Dataset through
    its dask arrays.

    Parameters
    ----------
    store : xarray.Dataset
        An opened store.
    chosen : dict of str to sequence of int
        ``{variable: columns}`` as from :func:`resolve_features`.
    rows : numpy.ndarray or slice
        Sorted int positions along ``segment``, or a slice.

    Returns
    -------
    list of numpy.ndarray
        One ``(n_rows, len(columns))`` array per variable.
    """
    import dask

    if not isinstance(rows, slice):
        rows = _index_or_slice(np.asarray(rows, dtype=np.int64))
    sel = [(var, _index_or_slice(np.asarray(cols, dtype=np.int64))) for var, cols in chosen.items()]
    h = _HANDLES.get(id(store))
    if h is not None and h.group is not None:
        return [np.asarray(h.group[var].get_orthogonal_selection((rows, cols)))
                for var, cols in sel]
    lazies = [_lazy_rows(store[var].data, rows, cols) for var, cols in sel]
    n_blocks = sum(int(np.prod(x.numblocks)) for x in lazies)
    scheduler = "sync" if n_blocks <= 2 else "threads"
    return [np.asarray(a) for a in dask.compute(*lazies, scheduler=scheduler)]


def read_rows(store, variable: str, rows, cols=None) -> np.ndarray:
    """Values of ``variable`` at row positions ``rows`` (and columns ``cols``).

    Only the chunks that hold the rows are read.

    Parameters
    ----------
    store : xarray.Dataset
        An opened store.
    variable : str
        ``"handcrafted"``, ``"deep"``, ``"votes"`` or ``"votes_mean"``.
    rows : numpy.ndarray or slice
        Sorted int positions along ``segment``.
    cols : sequence of int, optional
        Column positions; all when ``None``.

    Returns
    -------
    numpy.ndarray
        ``(n_rows, n_cols)`` values.
    """
    if cols is None:
        cols = range(store[variable].shape[1])
    return read_values(store, {variable: cols}, rows)[0]


def select(
    store,
    tracks=None,
    labels=None,
    genres=None,
    segments=None,
    features=None,
    *,
    include_incomplete: bool = False,
    storage_options: dict | None = None,
) -> pd.DataFrame:
    """Feature values of the segments that match the filters, as a table.

    Parameters
    ----------
    store : xarray.Dataset or str
        An opened store (see :func:`open_store`) or its location.
    tracks, labels, genres, segments : str or sequence of str, optional
        Keep only segments of these tracks, classes, genres or segment ids;
        filters combine with *and*.
    features : str or sequence of str, optional
        Names, glob patterns (``"mfcc_*"``) or groups (``"handcrafted"``,
        ``"deep"``, ``"votes"``); see :func:`resolve_features`.  An empty
        list gives the metadata columns only.
    include_incomplete : bool
        Keep pending and failed segments (NaN features) and add a ``status``
        column.
    storage_options : dict, optional
        Filesystem options when ``store`` is a location.

    Returns
    -------
    pandas.DataFrame
        One row per segment in store order: the columns of
        :data:`META_COLUMNS`, then one column per feature.

    Raises
    ------
    EmodistError
        An unknown track, label, genre, segment or feature.

    Examples
    --------
    >>> select("features.zarr", tracks="17", features=["mfcc_*"])  # doctest: +SKIP
    """
    ds = _as_dataset(store, storage_options)
    index = store_index(ds)
    chosen = {} if features is not None and not _as_list(features) else (
        resolve_features(index, features))
    rows = positions(index, tracks, labels, genres, segments,
                     include_incomplete=include_incomplete)
    meta = index.meta(rows)
    if include_incomplete:
        meta["status"] = index.status[rows]
    if not len(rows) or not chosen:
        values = [np.empty((len(rows), len(c)), np.float32) for c in chosen.values()]
    else:
        values = read_values(ds, chosen, rows)
    frames = [meta] + [
        pd.DataFrame(v, columns=[index.feature_names[var][c] for c in cols])
        for v, (var, cols) in zip(values, chosen.items())
    ]
    return pd.concat(frames, axis=1) if len(frames) > 1 else meta


# --------------------------------------------------------------------------- similarity


def _blocks(chunks: tuple[int, ...], row_bytes: int, block_bytes: int) -> list[tuple[int, int]]:
    """Group consecutive chunks along ``segment`` into ``[start, stop)`` blocks."""
    target = max(1, block_bytes // max(1, row_bytes))
    out, start, stop = [], 0, 0
    for c in chunks:
        stop += c
        if stop - start >= target:
            out.append((start, stop))
            start = stop
    if stop > start:
        out.append((start, stop))
    return out


def _read_block(ds, chosen: dict, start: int, stop: int) -> np.ndarray:
    parts = read_values(ds, chosen, slice(start, stop))
    block = parts[0] if len(parts) == 1 else np.hstack(parts)
    return block.astype(np.float32, copy=False)


def _iter_blocks(ds, chosen: dict, block_bytes: int):
    """Yield ``(start, values)`` blocks, reading the next while one is used."""
    var0 = next(iter(chosen))
    width = sum(len(c) for c in chosen.values())
    bounds = _blocks(ds[var0].data.chunks[0], 4 * width, block_bytes)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        pending = None
        for i, (a, b) in enumerate(bounds):
            if pending is None:
                pending = pool.submit(_read_block, ds, chosen, a, b)
            block = pending.result()
            pending = None
            if i + 1 < len(bounds):
                pending = pool.submit(_read_block, ds, chosen, *bounds[i + 1])
            yield a, block


def column_stats(store, features=None, *, block_bytes: int = BLOCK_BYTES):
    """Mean and standard deviation of feature columns over the done segments.

    Streams the store block by block; results are cached per opened store.

    Parameters
    ----------
    store : xarray.Dataset
        An opened store.
    features : str or sequence of str, optional
        As in :func:`select`.
    block_bytes : int
        Uncompressed bytes per streamed block.

    Returns
    -------
    mean, std : numpy.ndarray
        float64 per column; a constant column gets ``std = 1``.
    """
    index = store_index(store)
    chosen = resolve_features(index, features)
    key = tuple((var, tuple(cols)) for var, cols in chosen.items())
    if key not in index._stats:
        width = sum(len(c) for c in chosen.values())
        total, sq, count = np.zeros(width), np.zeros(width), 0
        done = index.status == schema.STATUS_DONE
        for start, block in _iter_blocks(store, chosen, block_bytes):
            x = block[done[start: start + len(block)]].astype(np.float64)
            total += x.sum(axis=0)
            sq += np.einsum("ij,ij->j", x, x)
            count += len(x)
        if count == 0:
            raise StoreError("store has no finished segments")
        mean = total / count
        std = np.sqrt(np.maximum(sq / count - mean**2, 0.0))
        std[~(std > 1e-12 * np.maximum(1.0, np.abs(mean)))] = 1.0
        index._stats[key] = (mean, std)
    return index._stats[key]


def distances(block: np.ndarray, query: np.ndarray, metric: str = "cosine") -> np.ndarray:
    """Distances from each row of ``block`` to ``query``.

    Parameters
    ----------
    block : numpy.ndarray
        ``(n, d)`` float32 rows.
    query : numpy.ndarray
        ``(d,)`` query vector.
    metric : {"cosine", "euclidean"}
        ``1 - cos`` angle, or straight-line distance.

    Returns
    -------
    numpy.ndarray
        float64 ``(n,)``; rows with NaN, or zero rows under cosine, get ``inf``.
    """
    q = np.asarray(query, np.float32)
    # float32 throughout: no float64 copy of the block
    if metric == "cosine":
        norms = np.sqrt(np.einsum("ij,ij->i", block, block)).astype(np.float64)
        qn = float(np.sqrt(np.dot(q.astype(np.float64), q)))
        with np.errstate(invalid="ignore", divide="ignore"):
            d = 1.0 - (block @ q).astype(np.float64) / (norms * qn)
    elif metric == "euclidean":
        diff = block - q
        d = np.sqrt(np.einsum("ij,ij->i", diff, diff)).astype(np.float64)
    else:
        raise EmodistError(f"unknown metric {metric!r}; use {' or '.join(METRICS)}")
    d[~np.isfinite(d)] = np.inf
    return d


def merge_topk(best_d, best_p, d, p, k: int):
    """Keep the ``k`` smallest distances of two candidate sets.

    Parameters
    ----------
    best_d, best_p : numpy.ndarray
        Current best distances and positions.
    d, p : numpy.ndarray
        New candidates.
    k : int
        How many to keep.

    Returns
    -------
    distances, positions : numpy.ndarray
        Sorted by distance, then position.
    """
    d = np.concatenate([best_d, d])
    p = np.concatenate([best_p, p])
    if len(d) > k:
        kth = d[np.argpartition(d, k - 1)[k - 1]]
        keep = d <= kth  # ties at the cut are settled by position below
        d, p = d[keep], p[keep]
    order = np.lexsort((p, d))[:k]
    return d[order], p[order]


def similar(
    store,
    segment_id: str | None = None,
    *,
    vector=None,
    k: int = 10,
    features="deep",
    metric: str = "cosine",
    exclude_same_track: bool = False,
    standardize: bool | None = None,
    labels=None,
    genres=None,
    block_bytes: int = BLOCK_BYTES,
    storage_options: dict | None = None,
) -> pd.DataFrame:
    """The ``k`` segments nearest to a stored segment or to a vector.

    The store is streamed block by block with a running top-k, so memory
    stays at the store's coordinate index plus a few blocks (the block in
    use, the next one being read and decoded) whatever the store's size.

    Parameters
    ----------
    store : xarray.Dataset or str
        An opened store or its location.
    segment_id : str, optional
        Query with this segment's own features (it is never its own match).
    vector : array_like, optional
        Query with this vector instead, in the (unstandardised) feature
        space of ``features``.
    k : int
        Number of neighbours.
    features : str or sequence of str
        ``"deep"`` (default), ``"handcrafted"``, names or patterns.
    metric : {"cosine", "euclidean"}
        Distance.
    exclude_same_track : bool
        Leave out segments of the query segment's track.
    standardize : bool, optional
        Z-score each column over the done segments first; default: when any
        handcrafted or vote column is used (their scales differ).
    labels, genres : str or sequence of str, optional
        Search only among segments of these classes or genres.
    block_bytes : int
        Uncompressed bytes per streamed block.
    storage_options : dict, optional
        Filesystem options when ``store`` is a location.

    Returns
    -------
    pandas.DataFrame
        Columns ``rank``, ``segment_id``, ``track_id``, ``segment_index``,
        ``start_s``, ``label``, ``genre``, ``distance``; nearest first.

    Raises
    ------
    EmodistError
        Unknown segment, feature or metric; both or neither of
        ``segment_id`` and ``vector``; a query segment without features.
    """
    if (segment_id is None) == (vector is None):
        raise EmodistError("give a query segment id or a vector, not both or neither")
    if metric not in METRICS:
        raise EmodistError(f"unknown metric {metric!r}; use {' or '.join(METRICS)}")
    if int(k) < 1:
        raise EmodistError(f"k must be a positive number of neighbours, not {k}")
    ds = _as_dataset(store, storage_options)
    index = store_index(ds)
    chosen = resolve_features(index, features)
    width = sum(len(c) for c in chosen.values())
    query_pos = -1
    if segment_id is not None:
        query_pos = int(positions(index, segments=segment_id, include_incomplete=True)[0])
        if index.status[query_pos] != schema.STATUS_DONE:
            state = {0: "pending", -1: "failed"}.get(int(index.status[query_pos]), "unknown")
            raise StoreError(f"segment {segment_id!r} has no features (status {state})")
        rows = np.array([query_pos])
        q = np.hstack([read_rows(ds, var, rows, cols)[0] for var, cols in chosen.items()])
    else:
        q = np.asarray(vector, dtype=np.float64).ravel()
        if q.shape != (width,):
            raise EmodistError(f"query vector has {q.size} values; the features have {width}")
    if standardize is None:
        standardize = any(var != schema.DEEP for var in chosen)
    scale = column_stats(ds, features, block_bytes=block_bytes) if standardize else None
    if scale is not None:
        q = (q - scale[0]) / scale[1]
        m32, s32 = scale[0].astype(np.float32), scale[1].astype(np.float32)
    q = np.asarray(q, np.float32)
    candidates = positions(index, labels=labels, genres=genres) if (labels or genres) else None
    allowed = index.status == schema.STATUS_DONE
    if candidates is not None:
        allowed = np.zeros(index.n, bool)
        allowed[candidates] = True
    if query_pos >= 0:
        allowed[query_pos] = False
        if exclude_same_track:
            allowed &= index.codes["track_id"] != index.codes["track_id"][query_pos]
    best_d, best_p = np.empty(0), np.empty(0, np.int64)
    for start, block in _iter_blocks(ds, chosen, block_bytes):
        keep = np.flatnonzero(allowed[start: start + len(block)])
        if not len(keep):
            continue
        x = block if len(keep) == len(block) else block[keep]
        if scale is not None:
            x = (x - m32) / s32
        d = distances(x, q, metric)
        finite = np.isfinite(d)
        best_d, best_p = merge_topk(best_d, best_p, d[finite], keep[finite] + start, int(k))
    meta = index.meta(best_p)
    out = pd.DataFrame({"rank": np.arange(1, len(best_p) + 1)})
    for name in ("segment_id", "track_id", "segment_index", "start_s", "label", "genre"):
        out[name] = meta[name].to_numpy()
    out["distance"] = best_d
    return out


# --------------------------------------------------------------------------- info


def _size_on_disk(url: str | None, storage_options: dict | None) -> int | None:
    if not url:
        return None
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
        return int(fs.du(path, total=True))
    except Exception:  # noqa: BLE001 - size is informative only; a listing may be refused
        return None


def _chunking(ds: xr.Dataset) -> dict:
    out = {}
    for name, var in ds.data_vars.items():
        enc = var.encoding
        comp = enc.get("compressors") or ()
        out[name] = {
            "shape": list(var.shape),
            "dtype": str(var.dtype),
            "chunks": list(enc.get("chunks") or var.data.chunksize),
            "shards": list(enc["shards"]) if enc.get("shards") else None,
            "compressors": [type(c).__name__ for c in comp],
        }
    return out


def info(store, storage_options: dict | None = None) -> dict:
    """What a store holds, how complete it is and how it is laid out.

    Parameters
    ----------
    store : xarray.Dataset or str
        An opened store or its location.
    storage_options : dict, optional
        Filesystem options when ``store`` is a location.

    Returns
    -------
    dict
        Plain-JSON summary: ``store``, ``segments``, ``tracks``,
        ``completeness`` (done / pending / failed counts and ``failures``),
        ``classes`` and ``genres`` (tracks and segments each), ``features``
        (columns per group), ``config``, ``provenance``, ``size_bytes`` and
        ``chunking``.
    """
    ds = _as_dataset(store, storage_options)
    h = _handle(ds)
    index = store_index(ds)
    attrs = dict(ds.attrs)
    st = index.status
    fails = attrs.get("failures", "[]")
    fails = json.loads(fails) if isinstance(fails, str) else list(fails or [])
    config = attrs.get("config")
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except json.JSONDecodeError:
            pass

    def counts(name: str) -> dict:
        cats, codes = index.categories[name], index.codes[name]
        seg = np.bincount(codes, minlength=len(cats))
        pairs = np.unique(np.stack([codes, index.codes["track_id"]]), axis=1)
        trk = np.bincount(pairs[0], minlength=len(cats))
        order = np.argsort(-seg, kind="stable")
        return {str(cats[i]): {"tracks": int(trk[i]), "segments": int(seg[i])} for i in order}

    prov_keys = ("emodist_version", "created", "dataset", "label_rule", "feature_names_version",
                 "model_sha256")
    return {
        "store": h.url,
        "segments": int(index.n),
        "tracks": len(index.categories["track_id"]),
        "completeness": {
            "done": int(np.sum(st == schema.STATUS_DONE)),
            "pending": int(np.sum(st == schema.STATUS_PENDING)),
            "failed": int(np.sum(st == schema.STATUS_FAILED)),
            "failures": fails,
        },
        "classes": counts("label") if index.n else {},
        "genres": counts("genre") if index.n else {},
        "features": {var: len(cols) for var, cols in index.feature_names.items()},
        "config": config,
        "provenance": {k: attrs[k] for k in prov_keys if k in attrs},
        "size_bytes": _size_on_disk(h.url, h.storage_options),
        "chunking": _chunking(ds),
    }
