"""The small per-segment coordinates of a store, read once, and name resolution.

A store's coordinates (segment ids, tracks, labels, statuses) are small; they
are read once per opened Dataset into a :class:`StoreIndex` (cached by the
``ds.emodist`` accessor) that maps tracks, labels and segment ids to row
positions.  Feature rows are then read by position, chunk by chunk.
"""

from __future__ import annotations

import dataclasses
import fnmatch

import numpy as np
import pandas as pd

from emodist.errors import EmodistError, StoreError
from emodist.store import layout
from emodist.store.names import unknown_name

__all__ = [
    "META_COLUMNS", "VOTE_VARIABLES", "StoreIndex", "as_list", "build_index", "codes_for",
    "positions", "resolve_features",
]

#: Per-segment columns every selection starts with.
META_COLUMNS = ("segment_id",) + tuple(layout.SEGMENT_COORDS)
#: Categorical coordinates that selections filter on.
_CODED = ("track_id", "label", "group", "genre")
#: Variables that are not feature groups but can be selected as columns.
VOTE_VARIABLES = (layout.VOTES, layout.VOTES_MEAN)


@dataclasses.dataclass
class StoreIndex:
    """The small per-segment coordinates of a store.

    Attributes
    ----------
    n : int
        Number of segments.
    status : dict of str to numpy.ndarray
        Each feature group's int8 status.
    codes, categories : dict of str to numpy.ndarray
        Integer codes of ``track_id``, ``label``, ``group`` and ``genre`` and
        the distinct values they index.
    columns : dict of str to numpy.ndarray
        The other coordinates (``segment_id``, ``segment_index``, ``start_s``,
        ``duration_s``, ``path``).
    feature_names : dict of str to list of str
        Column names of each selectable variable (groups, then votes).
    groups : list of str
        The stored feature groups.
    """

    n: int
    status: dict
    codes: dict
    categories: dict
    columns: dict
    feature_names: dict
    groups: list
    _segment_lookup: pd.Index | None = None
    _lookups: dict = dataclasses.field(default_factory=dict)
    stats: dict = dataclasses.field(default_factory=dict)

    def done(self, groups=None) -> np.ndarray:
        """Rows done in every one of ``groups`` (default: every stored group)."""
        names = [g for g in (self.groups if groups is None else groups) if g in self.status]
        out = np.ones(self.n, dtype=bool)
        for g in names:
            out &= self.status[g] == layout.STATUS_DONE
        return out

    def segment_positions(self, segment_ids) -> np.ndarray:
        """Row positions of segment ids (``-1`` for unknown ones)."""
        if self._segment_lookup is None:
            self._segment_lookup = pd.Index(self.columns["segment_id"])
        return self._segment_lookup.get_indexer(list(segment_ids))

    def meta(self, positions: np.ndarray) -> pd.DataFrame:
        """The metadata columns of the rows at ``positions``."""
        out = {}
        for name in META_COLUMNS:
            if name in self.codes:
                out[name] = self.categories[name][self.codes[name][positions]]
            else:
                out[name] = layout.decode_strings(self.columns[name][positions])
        return pd.DataFrame(out)


def _feature_names(ds, groups) -> dict[str, list[str]]:
    names = {g: [str(s) for s in layout.decode_strings(ds[layout.feature_dim(g)].values)]
             for g in groups}
    for var in VOTE_VARIABLES:
        if var in ds.data_vars:
            names[var] = [f"{var}_{e}" for e in layout.decode_strings(ds[layout.EMOTION].values)]
    return names


def build_index(ds, group=None) -> StoreIndex:
    """Read a store's coordinates and statuses into a :class:`StoreIndex`.

    Parameters
    ----------
    ds : xarray.Dataset
        An opened store.
    group : zarr.Group, optional
        The store's Zarr group: one concurrent read per array instead of one
        dask task per chunk.
    """
    import dask

    groups = layout.stored_groups(ds)
    coords = [c for c in layout.SEGMENT_COORDS if c in ds.coords]
    names = [layout.status_name(g) for g in groups] + coords
    # coordinates already in memory (open_store decodes the strings) are not read again
    raw = {c: ds[c].values for c in names if not dask.is_dask_collection(ds[c].data)}
    wanted = [c for c in names if c not in raw]
    if group is not None:
        raw.update({c: np.asarray(group[c][...]) for c in wanted})
    else:
        raw.update(zip(wanted, dask.compute(*(ds[c].data for c in wanted), scheduler="threads")))
    n = ds.sizes[layout.SEGMENT]
    codes, categories = {}, {}
    columns = {"segment_id": np.asarray(layout.decode_strings(ds[layout.SEGMENT].values), object)}
    for name in layout.SEGMENT_COORDS:
        values = raw.get(name)
        if values is None:
            values = np.zeros(n) if name in ("start_s", "duration_s", "segment_index") else (
                np.full(n, "", dtype=object))
        if name in _CODED:
            c, u = pd.factorize(layout.decode_strings(values))  # hashing, not sorting
            codes[name] = c.astype(np.int32)
            categories[name] = np.asarray(u, dtype=object)
        else:
            columns[name] = values
    status = {g: np.asarray(raw[layout.status_name(g)], np.int8) for g in groups}
    return StoreIndex(n=n, status=status, codes=codes, categories=categories, columns=columns,
                      feature_names=_feature_names(ds, groups), groups=groups)


def as_list(value) -> list[str] | None:
    """``None``, one string or many as a list of strings."""
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def resolve_features(index: StoreIndex, features=None) -> dict[str, list[int]]:
    """Column positions of each variable for groups, ``+``-joined groups, names and patterns.

    Parameters
    ----------
    index : StoreIndex
    features : str or sequence of str, optional
        Group names (``"handcrafted"``, ``"handcrafted+inception_v3"``,
        ``"votes"``), feature names (``"mfcc_01_mean"``) or glob patterns
        (``"mfcc_*"``).  ``None`` means the first stored group.

    Returns
    -------
    dict of str to list of int
        ``{variable: [column, ...]}`` in the order asked, without repeats.

    Raises
    ------
    EmodistError
        A name that is not stored or a pattern that matches nothing.
    """
    names = index.feature_names
    if not names:
        raise StoreError("store holds no feature arrays")
    tokens = as_list(features)
    if tokens is None:
        tokens = [index.groups[0] if index.groups else next(iter(names))]
    tokens = [part for tok in tokens for part in (tok.split("+") if tok not in names else [tok])]
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
            matched = False
            for var, cols in names.items():
                cols_hit = [i for i, nm in enumerate(cols) if fnmatch.fnmatchcase(nm, tok)]
                matched |= bool(cols_hit)
                add(var, cols_hit)
            if not matched:
                raise EmodistError(f"feature pattern {tok!r} matches no stored feature; "
                                   f"groups: {', '.join(names)}")
            continue
        if not hits:
            raise unknown_name("feature", tok, list(names) + [nm for c in names.values() for nm in c])
        for var, c in hits:
            add(var, [c])
    return chosen


def codes_for(index: StoreIndex, name: str, values: list[str]) -> np.ndarray:
    """Integer codes of coordinate values (one clear error for an unknown one)."""
    if name not in index._lookups:
        index._lookups[name] = pd.Index(index.categories[name])
    codes = index._lookups[name].get_indexer(values)
    if (codes < 0).any():
        kind = {"track_id": "track", "label": "label", "genre": "genre", "group": "group"}[name]
        bad = values[int(np.flatnonzero(codes < 0)[0])]
        raise unknown_name(kind, bad, sorted(c for c in index.categories[name] if c))
    return codes.astype(np.int32)


def positions(index: StoreIndex, tracks=None, labels=None, genres=None, segments=None, *,
              groups=None, include_incomplete: bool = False) -> np.ndarray:
    """Sorted row positions of the segments that match every filter.

    Parameters
    ----------
    index : StoreIndex
    tracks, labels, genres, segments : str or sequence of str, optional
        Keep segments of these tracks, classes, genres or segment ids.
    groups : sequence of str, optional
        The feature groups that must be done (default: every stored group).
    include_incomplete : bool
        Keep pending and failed segments too (their features are NaN).

    Returns
    -------
    numpy.ndarray
        int64 positions along ``segment``.
    """
    mask = np.ones(index.n, dtype=bool) if include_incomplete else index.done(groups)
    for name, values in (("track_id", tracks), ("label", labels), ("genre", genres)):
        values = as_list(values)
        if values is not None:
            mask &= np.isin(index.codes[name], codes_for(index, name, values))
    seg = as_list(segments)
    if seg is not None:
        pos = index.segment_positions(seg)
        if (pos < 0).any():
            bad = seg[int(np.flatnonzero(pos < 0)[0])]
            raise unknown_name("segment", bad, index.columns["segment_id"])
        keep = np.zeros(index.n, dtype=bool)
        keep[pos] = True
        mask &= keep
    return np.flatnonzero(mask)
