"""Check that a feature store holds what its statuses claim: ``emodist verify``.

A store can look complete and not be: a chunk file that was deleted reads
back as fill values, and one that was truncated cannot be decoded, while the
status still says *done*.  :func:`verify_store` reads every chunk once and
reports each problem as a :class:`Damage`:

- the ``segment`` index is unique and every per-segment coordinate has one
  value per segment;
- every group recorded in the ``feature_groups`` attribute has its values,
  status and feature names, and the values are one column per feature;
- every status is one of the flag values (failed, pending, done);
- every chunk of every array is readable, and every chunk holding a *done*
  segment of a group exists and holds finite values on the done rows.

A damaged chunk is reported by group and segment range, so that
``emodist extract ... --repair`` recomputes exactly those chunks
(:func:`repair_regions`).  Damage of the coordinates or of the index cannot
be repaired by recomputing chunks; the store must be rebuilt (``--overwrite``).
"""

from __future__ import annotations

import logging
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from emodist.errors import StoreError
from emodist.store import layout
from emodist.store import zarrio as io
from emodist.store.handle import as_store
from emodist.store.lock import reader_note

__all__ = [
    "FLAG_VALUES", "PLAN_PENDING_DAMAGE", "READ_THREADS", "Damage", "VerifyReport",
    "io_reason", "repair_regions", "state_of", "verify_store",
]

log = logging.getLogger(__name__)

#: Chunks read at once.
READ_THREADS = 8
#: Valid status values.
FLAG_VALUES = (layout.STATUS_FAILED, layout.STATUS_PENDING, layout.STATUS_DONE)


@dataclass(frozen=True)
class Damage:
    """One problem of a store.

    Attributes
    ----------
    what : str
        ``"chunk"`` (a chunk of a group: repairable), ``"group"`` (a recorded
        group's variables missing or malformed: the group is rebuilt on
        repair) or ``"store"`` (index, coordinates: rebuild the store).
    message : str
        One line naming the array and the segment range.
    group : str or None
        The feature group concerned.
    start, stop : int or None
        Segment range ``[start, stop)`` of a damaged chunk.
    """

    what: str
    message: str
    group: str | None = None
    start: int | None = None
    stop: int | None = None


@dataclass
class VerifyReport:
    """Outcome of :func:`verify_store`.

    Attributes
    ----------
    store : str
        Location checked.
    n_segments : int
        Segments in the index.
    groups : list of str
        Recorded feature groups.
    chunk : int
        Segments per chunk.
    damage : list of Damage
        Every problem found (empty: the store is sound).
    status : dict of str to numpy.ndarray
        Each readable group's status, with unreadable status chunks read as pending.
    n_chunks : int
        Chunks read.
    attrs : dict
        The store attributes.
    segment_ids : numpy.ndarray
        The ``segment`` index as Zarr reads it (``StringDType`` under NumPy 2).
    """

    store: str
    n_segments: int = 0
    groups: list = field(default_factory=list)
    chunk: int = 1
    damage: list = field(default_factory=list)
    status: dict = field(default_factory=dict)
    n_chunks: int = 0
    attrs: dict = field(default_factory=dict, repr=False)
    segment_ids: np.ndarray = field(default_factory=lambda: np.array([], dtype=object),
                                    repr=False)

    @property
    def ok(self) -> bool:
        """Whether nothing is damaged."""
        return not self.damage

    @property
    def repairable(self) -> bool:
        """Whether recomputing chunks and groups repairs every problem."""
        return all(d.what != "store" for d in self.damage)

    def summary(self) -> str:
        """One line: sound, or how many problems and the first one."""
        if self.ok:
            return (f"{self.store}: sound ({self.n_segments} segments, "
                    f"{len(self.groups)} groups, {self.n_chunks} chunks read)")
        more = f" (and {len(self.damage) - 1} more)" if len(self.damage) > 1 else ""
        return f"{self.store} is damaged: {self.damage[0].message}{more}"


def _read(arr, sel):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return arr[sel]


def _chunk_keys(h, name: str) -> set[str] | None:
    """Chunk keys present under an array (``NAME/c/3/0``), or ``None`` when they cannot be listed."""
    try:
        prefix = h.path(name) + "/"
        return {f"{name}/{p[len(prefix):]}" for p in h.retry(h.fs.find, prefix + "c")}
    except Exception:  # noqa: BLE001 - listing is a refinement; reads still check
        return None


def _check_chunk(arr, status, a: int, b: int, key: str, keys) -> str | None:
    """Why chunk ``[a, b)`` of a group's values is damaged (``None`` when sound)."""
    done = status[a:b] == layout.STATUS_DONE
    if keys is not None and key not in keys and done.any():
        return f"chunk file {key} is missing"
    try:
        block = np.asarray(_read(arr, slice(a, b)))
    except Exception as exc:  # noqa: BLE001 - any codec error: unreadable
        return f"chunk {key} is unreadable ({type(exc).__name__}: {io_reason(exc)})"
    bad = done & ~np.isfinite(block.reshape(b - a, -1)).all(axis=1)
    if bad.any():
        return f"{int(bad.sum())} done segments hold non-finite values"
    return None


def io_reason(exc: BaseException) -> str:
    """First line of an error's text."""
    text = str(exc).strip().splitlines()
    return text[0] if text else "no detail"


def _status(report: VerifyReport, g, name: str, regions, key_of) -> np.ndarray | None:
    """A group's status read chunk by chunk; damaged chunks are reported and read as pending."""
    arr = g[layout.status_name(name)]
    n = report.n_segments
    if arr.shape != (n,):
        report.damage.append(Damage("group", f"{arr.name.lstrip('/')} has shape {arr.shape}, "
                                    f"not ({n},)", group=name))
        return None
    out = np.zeros(n, np.int8)
    for a, b in regions:
        try:
            block = np.asarray(_read(arr, slice(a, b)))
        except Exception as exc:  # noqa: BLE001
            report.damage.append(Damage(
                "chunk", f"group {name} segments [{a}, {b}): status chunk "
                f"{key_of(arr, a)} is unreadable ({io_reason(exc)})", name, a, b))
            continue
        odd = ~np.isin(block, FLAG_VALUES)
        if odd.any():
            report.damage.append(Damage(
                "chunk", f"group {name} segments [{a}, {b}): status {int(block[odd][0])} is "
                f"not one of {', '.join(map(str, FLAG_VALUES))}", name, a, b))
            block = np.where(odd, layout.STATUS_PENDING, block)
        out[a:b] = block
    return out


def _key_of(arr, start: int) -> str:
    """The store key of the chunk holding segment ``start`` (``handcrafted/c/3/0``)."""
    index = (start // arr.chunks[0],) + (0,) * (len(arr.shape) - 1)
    return f"{arr.path}/{arr.metadata.chunk_key_encoding.encode_chunk_key(index)}"


#: The damage line of a store whose segment plan was never completely written.
PLAN_PENDING_DAMAGE = ("its segment coordinates were never all written (a run stopped while "
                       "the workers planned it)")


def _check_index(report: VerifyReport, g) -> np.ndarray | None:
    if g.attrs.get(layout.PLAN_PENDING):
        report.damage.append(Damage("store", PLAN_PENDING_DAMAGE))
        return None
    if layout.SEGMENT not in g:
        report.damage.append(Damage("store", "no segment index"))
        return None
    try:
        ids = np.asarray(_read(g[layout.SEGMENT], slice(None)))  # no str per segment
    except Exception as exc:  # noqa: BLE001
        report.damage.append(Damage("store", f"the segment index is unreadable ({io_reason(exc)})"))
        return None
    report.n_segments = n = len(ids)
    report.segment_ids = ids
    dup = layout.first_duplicate(ids)
    if dup is not None:
        report.damage.append(Damage("store", f"segment id {dup} appears more than once"))
    for name in list(layout.SEGMENT_COORDS) + [layout.VOTES, layout.VOTES_MEAN]:
        if name not in g:
            if name in layout.SEGMENT_COORDS:
                report.damage.append(Damage("store", f"coordinate {name} is missing"))
            continue
        arr = g[name]
        if arr.shape[0] != n:
            report.damage.append(Damage("store", f"{name} has {arr.shape[0]} values for "
                                        f"{n} segments"))
            continue
        try:
            _read(arr, slice(None))
        except Exception as exc:  # noqa: BLE001
            report.damage.append(Damage("store", f"{name} is unreadable ({io_reason(exc)})"))
    return ids


def verify_store(url, storage_options: dict | None = None) -> VerifyReport:
    """Check a store chunk by chunk (see the module text).

    Parameters
    ----------
    url : str or StoreHandle
        Store location, local path or fsspec URL, or the handle of a run.
    storage_options : dict, optional
        Filesystem options of a location.

    Returns
    -------
    VerifyReport

    Raises
    ------
    StoreError
        Nothing at ``url`` is a feature store.
    """
    h = as_store(url, storage_options, read_only=True)
    url = str(h)
    reader_note(h)
    g = io.open_group(h)
    attrs = dict(g.attrs)
    report = VerifyReport(store=url, groups=list(attrs.get("feature_groups") or {}), attrs=attrs)
    if _check_index(report, g) is None:
        return report
    n = report.n_segments
    jobs = []
    for name in report.groups:
        missing = [v for v in (name, layout.status_name(name), layout.feature_dim(name))
                   if v not in g]
        if missing:
            report.damage.append(Damage("group", f"group {name} is recorded but "
                                        f"{missing[0]} is missing", group=name))
            continue
        arr, width = g[name], g[layout.feature_dim(name)].shape[0]
        if arr.shape != (n, width):
            report.damage.append(Damage("group", f"{name} has shape {arr.shape}, not "
                                        f"({n}, {width})", group=name))
            continue
        report.chunk = int(arr.chunks[0])
        regions = io.chunk_regions(n, report.chunk)
        status = _status(report, g, name, regions, _key_of)
        if status is None:
            continue
        report.status[name] = status
        keys = _chunk_keys(h, name)
        jobs += [(name, arr, status, a, b, _key_of(arr, a), keys) for a, b in regions]
    with ThreadPoolExecutor(READ_THREADS) as pool:
        found = list(pool.map(lambda j: _check_chunk(*j[1:]), jobs))
    report.n_chunks = len(jobs)
    for (name, _, _, a, b, _, _), why in zip(jobs, found):
        if why:
            report.damage.append(Damage("chunk", f"group {name} segments [{a}, {b}): {why}",
                                        name, a, b))
    for d in report.damage:
        log.debug("%s: %s", url, d.message)
    return report


def state_of(report: VerifyReport) -> io.StoreState:
    """The :class:`emodist.store.zarrio.StoreState` a verified store gives the planner."""
    return io.StoreState(report.attrs, report.segment_ids, dict(report.status),
                         report.chunk if report.status else max(1, report.n_segments))


def repair_regions(report: VerifyReport) -> dict[str, list | None]:
    """Group -> damaged ``[start, stop)`` chunk ranges to recompute (``None``: the whole group).

    Raises
    ------
    StoreError
        Damage that recomputing cannot repair (index, coordinates).
    """
    if not report.repairable:
        first = next(d for d in report.damage if d.what == "store")
        raise StoreError(f"{report.store} cannot be repaired: {first.message}; rebuild it "
                         "with --overwrite", param="overwrite")
    out: dict[str, list | None] = {}
    for d in report.damage:
        if d.what == "group":
            out[d.group] = None
        elif out.get(d.group, []) is not None:
            out.setdefault(d.group, []).append((d.start, d.stop))
    return {k: (None if v is None else sorted(set(v))) for k, v in out.items()}
