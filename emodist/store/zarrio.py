"""The feature store on disk: template, groups added later, region writes, state.

A store is written so that many workers fill it at once without coordination:

1. :func:`create_store` writes the template of :func:`emodist.store.layout.template`:
   every coordinate, the vote profiles, each group's status (all pending) and
   the metadata of the feature arrays, whose chunks stay unwritten (NaN).
   :func:`add_groups` does the same for groups added to an existing store.
2. Workers call :func:`write_region` on disjoint, chunk-aligned slices of
   ``segment`` (one writer per chunk): the values first, the statuses last,
   so an interrupted write is redone.
3. :func:`finish_store` records attributes (failures) and re-consolidates.

Locations are local paths or fsspec URLs (``s3://bucket/prefix``);
storage options go to the filesystem and are never written anywhere.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from emodist.errors import StoreError
from emodist.store import layout

__all__ = [
    "COORD_CHUNK_SEGMENTS", "MIN_CHUNKS", "MIN_CHUNK_SEGMENTS", "TARGET_CHUNK_BYTES",
    "ZSTD_LEVEL", "StoreState", "add_groups", "chunk_regions", "chunk_segments",
    "create_store", "drop_groups", "encoding", "filesystem", "finish_plan", "finish_store",
    "is_url", "local_reads", "merge_failures", "open_group", "plan_pending", "read_rows",
    "read_state", "read_status", "remove_store", "store_exists", "write_plan_region",
    "write_region", "zarr_store",
]

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
#: The writer's lock inside a store (:mod:`emodist.store.lock`): kept when a store is rebuilt.
LOCK_NAME = ".emodist-lock.json"

# zarr lists a group's members with the lock among them and warns that it is not an array
warnings.filterwarnings("ignore", message=f"Object at {LOCK_NAME} is not recognized")


def is_url(url: str) -> bool:
    """Whether ``url`` names a remote (non-local) location."""
    return "://" in str(url) and not str(url).startswith("file://")


def zarr_store(url: str, storage_options: dict | None = None, read_only: bool = False):
    """The :mod:`zarr` store object of a local path or an fsspec URL."""
    import zarr.storage

    url = str(url)
    if is_url(url):
        return zarr.storage.FsspecStore.from_url(
            url, storage_options=dict(storage_options or {}), read_only=read_only)
    return zarr.storage.LocalStore(url.removeprefix("file://"), read_only=read_only)


def filesystem(url: str, storage_options: dict | None):
    """``(fsspec filesystem, path)`` of a location."""
    import fsspec

    return fsspec.core.url_to_fs(str(url), **dict(storage_options or {}))


def store_exists(url: str, storage_options: dict | None = None) -> bool:
    """Whether a Zarr group exists at ``url`` (its ``zarr.json`` is there)."""
    try:
        fs, path = filesystem(url, storage_options)
        return fs.exists(path.rstrip("/") + "/zarr.json")
    except FileNotFoundError:
        return False


def remove_store(url: str, storage_options: dict | None = None) -> None:
    """Delete everything in the store at ``url`` but its lock (no-op when absent)."""
    fs, path = filesystem(url, storage_options)
    if not fs.exists(path):
        return
    if not fs.isdir(path):
        fs.rm(path)
        return
    children = [c for c in fs.ls(path, detail=False)
                if not c.rstrip("/").rsplit("/", 1)[-1].startswith(LOCK_NAME)]
    if children:
        fs.rm(children, recursive=True)


def chunk_segments(n_segments: int, row_bytes: int, *, target_bytes: int = TARGET_CHUNK_BYTES,
                   min_chunks: int = MIN_CHUNKS, min_size: int = MIN_CHUNK_SEGMENTS) -> int:
    """Segments per chunk along ``segment``: the store's read and work unit.

    The chunk of the widest feature array (``row_bytes`` per segment) is kept
    near ``target_bytes`` (2 MiB: 256 segments of a 2048-wide float32
    embedding), but small stores are still cut into ``min_chunks`` pieces so
    that several workers share them.
    """
    if n_segments <= 0:
        return 1
    by_size = max(1, target_bytes // max(1, int(row_bytes)))
    by_count = math.ceil(n_segments / min_chunks)
    return int(max(1, min(n_segments, max(min_size, min(by_size, by_count)))))


def chunk_regions(n_segments: int, chunk: int) -> list[tuple[int, int]]:
    """``[start, stop)`` bounds of every chunk along ``segment``."""
    return [(a, min(a + chunk, n_segments)) for a in range(0, n_segments, chunk)]


def encoding(ds: xr.Dataset, chunk: int) -> dict:
    """Zarr encoding: ``chunk`` segments per data chunk, zstd everywhere."""
    from zarr.codecs import ZstdCodec

    enc = {}
    for name, var in ds.variables.items():
        if var.dims and var.dims[0] == layout.SEGMENT:
            size = chunk if name in ds.data_vars else min(len(var), COORD_CHUNK_SEGMENTS)
            chunks = (max(1, size),) + tuple(var.shape[1:])
        else:
            chunks = tuple(max(1, s) for s in var.shape)
        enc[name] = {"chunks": chunks, "compressors": [ZstdCodec(level=ZSTD_LEVEL)]}
    return enc


@contextlib.contextmanager
def local_reads():
    """Compute lazy store reads in this process (threads), whatever Dask client is current.

    The driver's reads of a store (coordinates, statuses, the features an
    evaluation loads) are its own: sent to a cluster they would run on
    workers that may not reach the store (a local path on a laptop, a remote
    cluster) and come back over the network.  Also a decorator.
    """
    import dask

    with dask.config.set(scheduler="threads"):
        yield


def _write(url: str, ds: xr.Dataset, chunk: int, storage_options, mode: str) -> None:
    if mode == "w":
        # written aside, then moved in with zarr.json last (the store appears whole), and
        # the lock of the run that writes it kept; to an object store, uploaded at once
        # (many small requests are slow)
        remote = is_url(url)
        here = None if remote else Path(url.removeprefix("file://")).absolute()
        if here is not None:
            here.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".emodist-template-",
                                         dir=None if remote else here.parent) as tmp:
            local = Path(tmp) / "store.zarr"
            _write(str(local), ds, chunk, None, "w-")
            remove_store(url, storage_options)
            if here is None:
                files = sorted(p for p in local.rglob("*") if p.is_file())
                fs, root = filesystem(url, storage_options)
                root = root.rstrip("/")
                for part in ([p for p in files if p != local / "zarr.json"],
                             [local / "zarr.json"]):
                    fs.put([str(p) for p in part],
                           [f"{root}/{p.relative_to(local).as_posix()}" for p in part])
            else:
                for p in sorted(local.iterdir(), key=lambda p: (p.name == "zarr.json", p)):
                    p.rename(here / p.name)
        return
    mode = "w" if mode == "w-" else mode
    with warnings.catch_warnings(), local_reads():  # older NumPy loads the string placeholders
        warnings.simplefilter("ignore")
        ds.to_zarr(zarr_store(url, storage_options), mode=mode, compute=False,
                   encoding=encoding(ds, chunk), consolidated=True, zarr_format=3)


def create_store(url: str, ds: xr.Dataset, chunk: int, storage_options: dict | None = None) -> None:
    """Write the template ``ds`` at ``url``: coordinates, votes, statuses; no feature chunks."""
    _write(str(url), ds, chunk, storage_options, "w")


def add_groups(url: str, ds: xr.Dataset, chunk: int, storage_options: dict | None = None) -> None:
    """Add the group variables of ``ds`` (from :func:`layout.group_variables`) to a store.

    The store's attributes are kept (xarray would replace them with ``ds.attrs``).
    """
    kept = dict(open_group(url, storage_options).attrs)
    _write(str(url), ds.assign_attrs(kept), chunk, storage_options, "a")


def replace_variables(url: str, ds: xr.Dataset, storage_options: dict | None = None) -> None:
    """Write the variables of ``ds`` into a store, replacing any of the same names.

    For results derived from the segments (a model's per-track results), on
    dimensions of their own; the store's attributes are kept and the metadata
    consolidated again.
    """
    import zarr

    target = zarr_store(url, storage_options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = zarr.open_group(target, mode="r+")
        kept = dict(g.attrs)
        for key in list(ds.variables):
            if key in g:
                del g[key]
        ds.assign_attrs(kept).to_zarr(target, mode="a", consolidated=True, zarr_format=3)


def open_group(url: str, storage_options: dict | None = None, mode: str = "r"):
    """The store's root :class:`zarr.Group`.

    Raises
    ------
    StoreError
        Nothing usable at ``url``.
    """
    import zarr

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return zarr.open_group(zarr_store(url, storage_options, read_only=(mode == "r")),
                                   mode=mode)
    except (FileNotFoundError, KeyError, ValueError):
        raise StoreError(f"{url}: not a feature store") from None
    except Exception as exc:  # zarr raises its own types for missing groups
        if type(exc).__name__ in ("GroupNotFoundError", "NodeTypeValidationError"):
            raise StoreError(f"{url}: not a feature store") from None
        raise


def drop_groups(url: str, names, storage_options: dict | None = None) -> None:
    """Delete the variables of feature groups (to replace them)."""
    g = open_group(url, storage_options, mode="r+")
    groups = dict(g.attrs.get("feature_groups") or {})
    for name in names:
        for var in (name, layout.status_name(name), layout.feature_dim(name)):
            if var in g:
                del g[var]
        groups.pop(name, None)
    g.attrs["feature_groups"] = groups
    finish_store(url, {}, storage_options)


@dataclass
class StoreState:
    """What an existing store holds, read once by the driver.

    Attributes
    ----------
    attrs : dict
        The store attributes.
    segment_ids : numpy.ndarray
        The ``segment`` index, ``(n_segments,)``, as Zarr reads it: NumPy's
        ``StringDType`` under NumPy 2 (no Python string per segment), an
        ``object`` array under NumPy 1.26.
    status : dict of str to numpy.ndarray
        Each stored group's status.
    chunk : int
        Segments per chunk.
    """

    attrs: dict
    segment_ids: np.ndarray
    status: dict
    chunk: int


def read_state(url: str, storage_options: dict | None = None) -> StoreState:
    """The :class:`StoreState` of the store at ``url``."""
    g = open_group(url, storage_options)
    attrs = dict(g.attrs)
    if layout.SEGMENT not in g:
        raise StoreError(f"{url}: not an emodist feature store (no segment index)")
    ids = np.asarray(g[layout.SEGMENT][:])
    status, chunk = _status_arrays(g, attrs.get("feature_groups") or {})
    return StoreState(attrs, ids, status, chunk or max(1, len(ids)))


def _status_arrays(g, names) -> tuple[dict, int | None]:
    status, chunk = {}, None
    for name in names:
        st = layout.status_name(name)
        if st in g:
            status[name] = np.asarray(g[st][:], np.int8)
            chunk = chunk or int(g[st].chunks[0])
    return status, chunk


def read_status(url: str, names, storage_options: dict | None = None) -> dict:
    """The status arrays of the groups ``names`` that the store at ``url`` has."""
    return _status_arrays(open_group(url, storage_options), names)[0]


def read_region(url: str, start: int, stop: int, names,
                storage_options: dict | None = None) -> tuple[dict, dict]:
    """The stored values and status of the groups ``names`` at segments ``[start, stop)``.

    What a model head reads when the groups it takes were stored by an earlier run.

    Returns
    -------
    values : dict of str to numpy.ndarray
        Group name -> ``(stop - start, width)`` float32.
    status : dict of str to numpy.ndarray
        Group name -> ``(stop - start,)`` int8.

    Raises
    ------
    StoreError
        A group the store does not hold.
    """
    g = open_group(url, storage_options)
    values, status = {}, {}
    for name in names:
        if name not in g or layout.status_name(name) not in g:
            raise StoreError(f"{url}: holds no group {name!r}")
        values[name] = np.asarray(g[name][int(start):int(stop)], np.float32)
        status[name] = np.asarray(g[layout.status_name(name)][int(start):int(stop)], np.int8)
    return values, status


def write_region(url: str, start: int, stop: int, values: dict, status: dict,
                 storage_options: dict | None = None) -> None:
    """Write one chunk-aligned slice ``[start, stop)`` of some groups, through xarray.

    Parameters
    ----------
    url : str
        Store location.
    start, stop : int
        Slice along ``segment``; one whole chunk of the store.
    values : dict of str to numpy.ndarray
        Group name -> ``(stop - start, width)`` float32 block.
    status : dict of str to numpy.ndarray
        Group name -> ``(stop - start,)`` int8 status, written after the values.
    storage_options : dict, optional
        Filesystem options.
    """
    target = zarr_store(url, storage_options)
    region = {layout.SEGMENT: slice(int(start), int(stop))}
    feats = xr.Dataset({name: ((layout.SEGMENT, layout.feature_dim(name)),
                               np.asarray(block, np.float32)) for name, block in values.items()})
    marks = xr.Dataset({layout.status_name(name): ((layout.SEGMENT,), np.asarray(s, np.int8))
                        for name, s in status.items()})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            feats.to_zarr(target, region=region, mode="r+", consolidated=False, zarr_format=3)
            marks.to_zarr(target, region=region, mode="r+", consolidated=False, zarr_format=3)
        except ValueError as exc:  # a region that is not one whole chunk, an unknown variable
            raise StoreError(f"{url}: cannot write [{start}, {stop}): {exc}") from None


def write_plan_region(url: str, start: int, variables: dict,
                      storage_options: dict | None = None) -> None:
    """Write per-segment coordinates or vote profiles at ``[start, start + m)``, through xarray.

    The store was made from :func:`emodist.store.layout.sized_template`;
    ``variables`` come from :func:`emodist.store.layout.plan_variables`.
    The slice covers whole chunks of every variable written (one writer per
    chunk), or ends at the end of the store.
    """
    if not variables:
        return
    m = len(next(iter(variables.values())))
    part = xr.Dataset({name: var for name, var in variables.items()})
    part = part.drop_indexes(list(part.xindexes))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            part.to_zarr(zarr_store(url, storage_options),
                         region={layout.SEGMENT: slice(int(start), int(start) + m)}, mode="r+",
                         consolidated=False, zarr_format=3)
        except ValueError as exc:
            raise StoreError(f"{url}: cannot write the plan at [{start}, {start + m}): "
                             f"{exc}") from None


def plan_pending(url: str, storage_options: dict | None = None) -> bool:
    """Whether the store's segment coordinates are still being written (or never were)."""
    return bool(open_group(url, storage_options).attrs.get(layout.PLAN_PENDING, False))


def finish_plan(url: str, storage_options: dict | None = None) -> None:
    """Mark the store's segment plan complete (:data:`layout.PLAN_PENDING` removed)."""
    import zarr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = zarr.open_group(zarr_store(url, storage_options), mode="r+")
        if layout.PLAN_PENDING in g.attrs:
            del g.attrs[layout.PLAN_PENDING]
    finish_store(url, {}, storage_options)


def read_rows(url: str, start: int, stop: int, storage_options: dict | None = None) -> tuple:
    """``(track_id, path, start_s, duration_s)`` columns of segments ``[start, stop)``.

    What a chunk task of a store planned on the workers reads instead of
    carrying its rows.
    """
    g = open_group(url, storage_options)
    sl = slice(int(start), int(stop))
    return (layout.decode_strings(g["track_id"][sl]), layout.decode_strings(g["path"][sl]),
            np.asarray(g["start_s"][sl], np.float64), np.asarray(g["duration_s"][sl], np.float64))


def finish_store(url: str, attrs: dict, storage_options: dict | None = None) -> None:
    """Update store attributes and re-consolidate the metadata."""
    import zarr

    store = zarr_store(url, storage_options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = zarr.open_group(store, mode="r+")
        if attrs:
            g.attrs.update(attrs)
        zarr.consolidate_metadata(store)


def merge_failures(old: list[dict], new: list[dict]) -> list[dict]:
    """Failures of both lists, one per ``(track_id, path, group)``, newest message kept."""
    merged: dict[tuple, dict] = {}
    for f in list(old) + list(new):
        rec = {k: str(f.get(k, "")) for k in ("track_id", "path", "error", "group")}
        merged[(rec["track_id"], rec["path"], rec["group"])] = rec
    return list(merged.values())
