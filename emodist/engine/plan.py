"""The extraction plan: pure, from the segment plan, the store's state and the spec.

:func:`plan` decides everything before any work starts: whether the store
is created, which groups are added to it or replaced, and which chunk tasks
remain (one per chunk holding a pending segment of some group, carrying only
the groups pending there).  It reads nothing and writes nothing; the driver
(:mod:`emodist.engine.extract`) applies it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr

from emodist.engine.worker import ChunkTask, SegmentRows
from emodist.errors import StoreError
from emodist.models.trained import first_difference
from emodist.spec import ExtractionSpec
from emodist.store import layout
from emodist.store.zarrio import StoreState, chunk_regions, chunk_segments

__all__ = ["ExtractionPlan", "compare", "plan", "plan_sized"]


@dataclass
class ExtractionPlan:
    """What an extraction will do.

    Attributes
    ----------
    spec : ExtractionSpec
        The resolved spec.
    chunk : int
        Segments per chunk of the store.
    replace_store : bool
        An existing store is removed first (overwrite of a different plan or spec).
    create : xarray.Dataset or None
        Template of a new store.
    drop : list of str
        Stored groups removed first (replaced by ``add``).
    add : xarray.Dataset or None
        Variables of the groups added to an existing store.
    tasks : list of ChunkTask
        The remaining work.
    total : int
        Segment-group pairs in the store for the spec's groups.
    pending : int
        Segment-group pairs this run computes.
    failures : list of dict
        Failures already recorded and still standing.
    resumed : bool
        An existing store is continued.
    """

    spec: ExtractionSpec
    chunk: int
    replace_store: bool = False
    create: xr.Dataset | None = None
    drop: list = field(default_factory=list)
    add: xr.Dataset | None = None
    tasks: list = field(default_factory=list)
    total: int = 0
    pending: int = 0
    failures: list = field(default_factory=list)
    resumed: bool = False


def compare(state: StoreState, spec: ExtractionSpec, segment_ids) -> tuple:
    """How an existing store differs from what this run would write.

    Returns
    -------
    (store_difference, group_differences)
        ``store_difference`` is ``None`` or one line (spec field or plan);
        ``group_differences`` maps a stored group of the spec to one line
        naming the field, the stored and the new value.
    """
    stored_spec = state.attrs.get("spec")
    if not isinstance(stored_spec, dict):
        return "it is not a store of this emodist version (no recorded spec)", {}
    diff = first_difference(stored_spec, spec.common())
    if diff:
        return f"it was written with {diff[0]}={diff[1]!r}, not {diff[2]!r}", {}
    if not layout.same_strings(state.segment_ids, segment_ids):
        return (f"it holds {len(state.segment_ids)} segments of another dataset plan "
                f"(this one has {len(segment_ids)})"), {}
    groups = {}
    recorded = state.attrs.get("feature_groups") or {}
    for g in spec.groups:
        if g.name in recorded and g.name in state.status:
            d = first_difference(recorded[g.name], g.describe())
            if d:
                groups[g.name] = f"group {g.name} was written with {d[0]}={d[1]!r}, not {d[2]!r}"
    return None, groups


def _todo(status: np.ndarray, track_ids: np.ndarray, failures: list[dict], group: str,
          retry_failed: bool) -> np.ndarray:
    """A group's status with the segments to redo turned back to pending.

    Failed segments of tracks with no failure on record (a run killed after
    the write, before the driver recorded the failure) are redone; with
    ``retry_failed`` every failed segment is.
    """
    out = np.array(status, dtype=np.int8, copy=True)
    failed = out == layout.STATUS_FAILED
    if retry_failed:
        out[failed] = layout.STATUS_PENDING
        return out
    recorded = {str(f.get("track_id")) for f in failures if f.get("group", "") in ("", group)}
    lost = failed & ~np.isin(np.asarray(track_ids, dtype=str), list(recorded) or [""])
    out[lost] = layout.STATUS_PENDING
    return out


def _rows(codes: np.ndarray, track_ids: np.ndarray, paths: np.ndarray, starts: np.ndarray,
          durations: np.ndarray) -> SegmentRows:
    """A chunk's :class:`SegmentRows` from its segments' track codes (``pd.factorize``);
    ``track_ids`` and ``paths`` are indexed by code."""
    distinct, first, owner = np.unique(codes, return_index=True, return_inverse=True)
    order = np.argsort(first)  # tracks in order of first appearance
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    tracks = tuple((str(track_ids[distinct[k]]), str(paths[distinct[k]])) for k in order)
    return SegmentRows(tracks, rank[np.ravel(owner)].astype(np.int32),
                       starts.copy(), durations.copy())


def _mark_damaged(todo: dict, repair: dict) -> None:
    """Turn the damaged chunk ranges of each group back to pending (in place)."""
    for name, regions in repair.items():
        if name in todo and regions is not None:
            for a, b in regions:
                todo[name][int(a):int(b)] = layout.STATUS_PENDING


def _new_store(n: int, spec: ExtractionSpec, chunk: int | None,
               attrs: dict | None) -> tuple[int, dict]:
    """A new store's chunk length (sized for the widest group) and its attributes."""
    widest = max([g.width for g in spec.groups] or [1]) * 4
    base = dict(attrs or {})
    base.update(spec.to_attrs())
    return int(chunk or chunk_segments(n, widest)), base


def plan(table: pd.DataFrame, spec: ExtractionSpec, *, state: StoreState | None = None,
         votes=None, votes_mean=None, attrs: dict | None = None, overwrite: bool = False,
         retry_failed: bool = False, chunk: int | None = None,
         repair: dict | None = None) -> ExtractionPlan:
    """Plan an extraction of ``table``'s segments into a store.

    Parameters
    ----------
    table : pandas.DataFrame
        The segment plan (:func:`emodist.data.segments.plan_segments`).
    spec : ExtractionSpec
        The resolved spec (every group's width and model hash known).
    state : StoreState, optional
        The existing store (``None`` when there is none).
    votes, votes_mean : numpy.ndarray, optional
        ``(n, 9)`` per-segment vote profiles for a new store.
    attrs : dict, optional
        Provenance attributes of a new store (dataset, label rule).
    overwrite : bool
        Replace a store or group that differs instead of refusing.
    retry_failed : bool
        Redo segments that failed in an earlier run.
    chunk : int, optional
        Segments per chunk of a new store.
    repair : dict, optional
        Damage found by :func:`emodist.store.verify.verify_store`, from
        :func:`emodist.store.verify.repair_regions`: group -> ``[start, stop)``
        chunk ranges marked pending again, or ``None`` to rebuild the group.

    Returns
    -------
    ExtractionPlan

    Raises
    ------
    StoreError
        The store differs from this run and ``overwrite`` is off; the message
        names the field (or group and field), the stored and the new value.
    """
    n = len(table)
    out = ExtractionPlan(spec=spec, chunk=0)
    new_store = state is None
    if state is not None:
        store_diff, group_diffs = compare(state, spec, table["segment_id"].to_numpy())
        if store_diff and not overwrite:
            raise StoreError(f"the store cannot be resumed: {store_diff}; write a new store, "
                             "or replace this one with --overwrite")
        if group_diffs and not overwrite:
            raise StoreError(next(iter(group_diffs.values())), param="overwrite")
        if store_diff:
            out.replace_store, new_store = True, True
        else:
            out.drop = list(group_diffs)
            out.drop += [name for name, regions in (repair or {}).items()
                         if regions is None and name not in out.drop
                         and name in spec.group_names]
    if new_store:
        out.chunk, base = _new_store(n, spec, chunk, attrs)
        out.create = layout.template(table, spec.groups, chunk=out.chunk, votes=votes,
                                     votes_mean=votes_mean, attrs=base)
        statuses = {g.name: np.zeros(n, np.int8) for g in spec.groups}
    else:
        out.resumed = True
        out.chunk = state.chunk
        out.failures = [f for f in state.attrs.get("failures") or []
                        if f.get("group", "") not in out.drop]
        missing = [g for g in spec.groups if g.name not in state.status or g.name in out.drop]
        if missing:
            data_vars, coords = {}, {}
            for g in missing:
                for k, v in layout.group_variables(g, n, chunk=out.chunk).items():
                    (coords if k == layout.feature_dim(g.name) else data_vars)[k] = v
            out.add = xr.Dataset(data_vars, coords=coords)
        added = {g.name for g in missing}
        statuses = {g.name: (np.zeros(n, np.int8) if g.name in added else state.status[g.name])
                    for g in spec.groups}
    codes, uniques = pd.factorize(table["track_id"])  # one string per track
    names = np.array([str(u) for u in uniques], dtype=object)
    track_ids = names[codes]
    todo = {name: _todo(st, track_ids, out.failures, name, retry_failed)
            for name, st in statuses.items()}
    if retry_failed:
        out.failures = []
    if state is not None and not out.replace_store:
        _mark_damaged(todo, repair or {})
    first = np.unique(codes, return_index=True)[1]  # each track's first segment
    paths = layout.shared_strings(table["path"])[first]
    starts = table["start_s"].to_numpy(np.float64)
    durations = table["duration_s"].to_numpy(np.float64)
    for i, (a, b) in enumerate(chunk_regions(n, out.chunk)):
        groups = tuple(name for name, st in todo.items()
                       if np.any(st[a:b] == layout.STATUS_PENDING))
        if groups:
            out.tasks.append(ChunkTask(chunk=i, start=a, stop=b, groups=groups,
                                       rows=_rows(codes[a:b], names, paths,
                                                  starts[a:b], durations[a:b])))
            out.pending += (b - a) * len(groups)
    out.total = n * len(spec.groups)
    return out


def plan_sized(n: int, spec: ExtractionSpec, *, votes: bool = False, votes_mean: bool = False,
               attrs: dict | None = None, chunk: int | None = None) -> ExtractionPlan:
    """Plan the extraction of a new store of ``n`` segments planned on the workers.

    Nothing per segment is known here: the template is
    :func:`emodist.store.layout.sized_template` (the workers write the
    coordinates into it, :func:`emodist.engine.planning.write_plan`), every
    group is pending everywhere, and the chunk tasks carry no rows (each
    reads its own from the store's coordinates).

    Parameters
    ----------
    n : int
        Segments of the plan.
    spec : ExtractionSpec
        The resolved spec.
    votes, votes_mean : bool
        The store holds those vote profiles.
    attrs : dict, optional
        Provenance attributes (dataset, label rule).
    chunk : int, optional
        Segments per chunk.

    Returns
    -------
    ExtractionPlan
    """
    out = ExtractionPlan(spec=spec, chunk=0)
    out.chunk, base = _new_store(n, spec, chunk, attrs)
    out.create = layout.sized_template(n, spec.groups, chunk=out.chunk, votes=votes,
                                       votes_mean=votes_mean, attrs=base)
    names = tuple(spec.group_names)
    for i, (a, b) in enumerate(chunk_regions(n, out.chunk)):
        out.tasks.append(ChunkTask(chunk=i, start=a, stop=b, groups=names, rows=None))
    out.pending = out.total = n * len(spec.groups)
    return out
