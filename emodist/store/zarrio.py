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

Every function takes the store as a :class:`emodist.store.handle.StoreHandle`
(what a run makes once and passes down) or as a location, a local path or an
fsspec URL (``s3://bucket/prefix``) with its storage options, from which it
makes a handle; storage options go to the filesystem and are never written
anywhere.  Transient storage errors are retried within the handle's storage
deadline (:mod:`emodist.store.faults`).
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
from emodist.store.faults import storage_faults
from emodist.store.handle import StoreHandle, as_store, is_url

__all__ = [
    "COORD_CHUNK_SEGMENTS", "MIN_CHUNKS", "MIN_CHUNK_SEGMENTS", "TARGET_CHUNK_BYTES",
    "ZSTD_LEVEL", "StoreHandle", "StoreState", "add_groups", "as_store", "chunk_regions",
    "chunk_segments", "create_store", "drop_groups", "encoding", "filesystem", "finish_plan",
    "finish_store", "is_url", "local_reads", "merge_failures", "open_group", "plan_pending",
    "read_rows", "read_state", "read_status", "remove_store", "store_exists",
    "write_plan_region", "write_region", "zarr_store",
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


def zarr_store(url, storage_options: dict | None = None, read_only: bool = False):
    """The :mod:`zarr` store object of a handle, a local path or an fsspec URL."""
    if isinstance(url, StoreHandle) and (read_only == url.read_only or not read_only):
        return url.zarr_store
    h = as_store(url, storage_options)
    return (h.reading() if read_only else h).zarr_store


def filesystem(url, storage_options: dict | None = None):
    """``(fsspec filesystem, path)`` of a location (or of a handle)."""
    h = as_store(url, storage_options)
    return h.fs, h.root


def store_exists(url, storage_options: dict | None = None) -> bool:
    """Whether a Zarr group exists at ``url`` (its ``zarr.json`` is there)."""
    h = as_store(url, storage_options)
    try:
        return bool(h.retry(lambda: h.fs.exists(h.path("zarr.json")), what="looking for it"))
    except FileNotFoundError:
        return False


def remove_store(url, storage_options: dict | None = None) -> None:
    """Delete everything in the store at ``url`` but its lock (no-op when absent)."""
    h = as_store(url, storage_options)
    h.forget()
    fs, path = h.fs, h.root

    def remove():
        if not fs.exists(path):
            return
        if not fs.isdir(path):
            fs.rm(path)
            return
        children = [c for c in fs.ls(path, detail=False)
                    if not c.rstrip("/").rsplit("/", 1)[-1].startswith(LOCK_NAME)]
        if children:
            fs.rm(children, recursive=True)
        if h.remote:
            fs.invalidate_cache(path)

    h.retry(remove, what="removing the old store")


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


def _to_zarr(ds: xr.Dataset, target, **kwargs) -> None:
    with warnings.catch_warnings(), local_reads():  # older NumPy loads the string placeholders
        warnings.simplefilter("ignore")
        ds.to_zarr(target, zarr_format=3, **kwargs)


def _write_template(h: StoreHandle, ds: xr.Dataset, chunk: int) -> None:
    """Write a new store's template aside, then move it in with ``zarr.json`` last.

    The store appears whole: until its ``zarr.json`` is there it is no store
    (:func:`store_exists`), and the next run writes the template again (a run
    stopped by a full disk or a lost endpoint while writing it, restarted
    without ``--overwrite``).  The lock of the run that writes it is kept.  To
    an object store the files are uploaded at once (many small requests are
    slow), each upload retried within the storage deadline.
    """
    import zarr.storage

    here = None if h.remote else Path(h.local_path).absolute()
    if here is not None:
        here.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".emodist-template-",
                                     dir=None if here is None else here.parent) as tmp:
        local = Path(tmp) / "store.zarr"
        _to_zarr(ds, zarr.storage.LocalStore(str(local)), mode="w", compute=False,
                 encoding=encoding(ds, chunk), consolidated=True)
        remove_store(h)
        if here is None:
            files = sorted(p for p in local.rglob("*") if p.is_file())
            for part in ([p for p in files if p != local / "zarr.json"], [local / "zarr.json"]):
                h.retry(h.fs.put, [str(p) for p in part],
                        [h.path(p.relative_to(local).as_posix()) for p in part],
                        what="uploading the store layout")
            h.fs.invalidate_cache(h.root)
        else:
            for p in sorted(local.iterdir(), key=lambda p: (p.name == "zarr.json", p)):
                p.rename(here / p.name)
    h.forget()


def create_store(url, ds: xr.Dataset, chunk: int, storage_options: dict | None = None) -> None:
    """Write the template ``ds`` at ``url``: coordinates, votes, statuses; no feature chunks."""
    _write_template(as_store(url, storage_options), ds, chunk)


def add_groups(url, ds: xr.Dataset, chunk: int, storage_options: dict | None = None) -> None:
    """Add the group variables of ``ds`` (from :func:`layout.group_variables`) to a store.

    The store's attributes are kept (xarray would replace them with ``ds.attrs``).
    An interrupted addition is redone by the next run: the groups are recorded
    in the ``feature_groups`` attribute only after their arrays are written.
    """
    h = as_store(url, storage_options)
    kept = dict(open_group(h).attrs)
    h.retry(_to_zarr, ds.assign_attrs(kept), h.zarr_store, mode="a", compute=False,
            encoding=encoding(ds, chunk), consolidated=True, what="adding groups")
    h.forget()


def replace_variables(url, ds: xr.Dataset, storage_options: dict | None = None) -> None:
    """Write the variables of ``ds`` into a store, replacing any of the same names.

    For results derived from the segments (a model's per-track results), on
    dimensions of their own; the store's attributes are kept and the metadata
    consolidated again.
    """
    h = as_store(url, storage_options)
    g = open_group(h, mode="r+")
    kept = dict(g.attrs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for key in list(ds.variables):
            if key in g:
                del g[key]
    h.forget()
    _to_zarr(ds.assign_attrs(kept), h.zarr_store, mode="a", consolidated=True)
    h.forget()


def open_group(url, storage_options: dict | None = None, mode: str = "r"):
    """The store's root :class:`zarr.Group` (the handle's, opened once per run).

    Parameters
    ----------
    url : StoreHandle or str
        The store.
    storage_options : dict, optional
        Filesystem options of a location.
    mode : {"r", "r+"}
        ``"r+"`` for a group that is written (a handle made read-only refuses it).

    Raises
    ------
    StoreError
        Nothing usable at ``url``.
    """
    h = as_store(url, storage_options, read_only=(mode == "r"))
    if mode != "r" and h.read_only:
        h = StoreHandle(h.url, h.storage_options, deadline=h.deadline)
    try:
        with storage_faults(h, deadline=h.deadline, known=("GroupNotFoundError",)):
            return h.group()
    except (FileNotFoundError, KeyError, ValueError):
        raise StoreError(f"{h}: not a feature store") from None
    except Exception as exc:  # zarr raises its own types for missing groups
        if type(exc).__name__ == "NodeTypeValidationError":
            raise StoreError(f"{h}: not a feature store") from None
        raise


def drop_groups(url, names, storage_options: dict | None = None) -> None:
    """Delete the variables of feature groups (to replace them)."""
    h = as_store(url, storage_options)
    g = open_group(h, mode="r+")
    groups = dict(g.attrs.get("feature_groups") or {})
    for name in names:
        for var in (name, layout.status_name(name), layout.feature_dim(name)):
            if var in g:
                del g[var]
        groups.pop(name, None)
    g.attrs["feature_groups"] = groups
    finish_store(h, {})


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


def read_state(url, storage_options: dict | None = None) -> StoreState:
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


def read_status(url, names, storage_options: dict | None = None) -> dict:
    """The status arrays of the groups ``names`` that the store at ``url`` has."""
    h = as_store(url, storage_options)
    return h.retry(lambda: _status_arrays(open_group(h), names)[0], what="reading statuses")


def read_region(url, start: int, stop: int, names,
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
    h = as_store(url, storage_options)
    with storage_faults(h, deadline=h.deadline):
        g = open_group(h)
    values, status = {}, {}
    for name in names:
        if name not in g or layout.status_name(name) not in g:
            raise StoreError(f"{h}: holds no group {name!r}")
        with storage_faults(h, deadline=h.deadline):
            values[name], status[name] = h.retry(
                lambda n=name: (
                    np.asarray(g[n][int(start):int(stop)], np.float32),
                    np.asarray(g[layout.status_name(n)][int(start):int(stop)], np.int8)),
                what="reading a region")
    return values, status


def _region_write(h: StoreHandle, part: xr.Dataset, region: dict, what: str) -> None:
    """One region write through xarray, retried within the storage deadline.

    A storage fault (:mod:`emodist.store.faults`) is one line naming the store.
    """
    try:
        with storage_faults(h, deadline=h.deadline):
            h.retry(_to_zarr, part, h.zarr_store, region=region, mode="r+",
                    consolidated=False, what=what)
    except ValueError as exc:  # a region that is not one whole chunk, an unknown variable
        if "GroupNotFoundError" in {c.__name__ for c in type(exc).__mro__}:
            raise
        bounds = region[layout.SEGMENT]
        raise StoreError(f"{h}: cannot write {what} at [{bounds.start}, {bounds.stop}): "
                         f"{exc}") from None


def write_region(url, start: int, stop: int, values: dict, status: dict,
                 storage_options: dict | None = None) -> None:
    """Write one chunk-aligned slice ``[start, stop)`` of some groups, through xarray.

    Parameters
    ----------
    url : StoreHandle or str
        The store.
    start, stop : int
        Slice along ``segment``; one whole chunk of the store.
    values : dict of str to numpy.ndarray
        Group name -> ``(stop - start, width)`` float32 block.
    status : dict of str to numpy.ndarray
        Group name -> ``(stop - start,)`` int8 status, written after the values.
    storage_options : dict, optional
        Filesystem options of a location.
    """
    h = as_store(url, storage_options)
    region = {layout.SEGMENT: slice(int(start), int(stop))}
    feats = xr.Dataset({name: ((layout.SEGMENT, layout.feature_dim(name)),
                               np.asarray(block, np.float32)) for name, block in values.items()})
    marks = xr.Dataset({layout.status_name(name): ((layout.SEGMENT,), np.asarray(s, np.int8))
                        for name, s in status.items()})
    _region_write(h, feats, region, "the values")
    _region_write(h, marks, region, "the statuses")


def write_plan_region(url, start: int, variables: dict,
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
    _region_write(as_store(url, storage_options), part,
                  {layout.SEGMENT: slice(int(start), int(start) + m)}, "the plan")


def plan_pending(url, storage_options: dict | None = None) -> bool:
    """Whether the store's segment coordinates are still being written (or never were)."""
    return bool(open_group(url, storage_options).attrs.get(layout.PLAN_PENDING, False))


def finish_plan(url, storage_options: dict | None = None) -> None:
    """Mark the store's segment plan complete (:data:`layout.PLAN_PENDING` removed)."""
    h = as_store(url, storage_options)
    g = open_group(h, mode="r+")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if layout.PLAN_PENDING in g.attrs:
            h.retry(g.attrs.__delitem__, layout.PLAN_PENDING, what="finishing the plan")
    finish_store(h, {})


def read_rows(url, start: int, stop: int, storage_options: dict | None = None) -> tuple:
    """``(track_id, path, start_s, duration_s)`` columns of segments ``[start, stop)``.

    What a chunk task of a store planned on the workers reads instead of
    carrying its rows.
    """
    h = as_store(url, storage_options)
    sl = slice(int(start), int(stop))
    with storage_faults(h, deadline=h.deadline):
        g = open_group(h)
        return h.retry(lambda: (
            layout.decode_strings(g["track_id"][sl]), layout.decode_strings(g["path"][sl]),
            np.asarray(g["start_s"][sl], np.float64), np.asarray(g["duration_s"][sl], np.float64)),
            what="reading the segment rows")


def finish_store(url, attrs: dict, storage_options: dict | None = None) -> None:
    """Update store attributes and re-consolidate the metadata."""
    import zarr

    h = as_store(url, storage_options)

    def finish():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            g = open_group(h, mode="r+")
            if attrs:
                g.attrs.update(attrs)
            zarr.consolidate_metadata(h.zarr_store)

    h.retry(finish, what="recording the run")
    h.forget()


def merge_failures(old: list[dict], new: list[dict]) -> list[dict]:
    """Failures of both lists, one per ``(track_id, path, group)``, newest message kept."""
    merged: dict[tuple, dict] = {}
    for f in list(old) + list(new):
        rec = {k: str(f.get(k, "")) for k in ("track_id", "path", "error", "group")}
        merged[(rec["track_id"], rec["path"], rec["group"])] = rec
    return list(merged.values())
