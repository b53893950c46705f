"""The feature store's layout for N feature groups: names, dimensions, template.

A store is one :class:`xarray.Dataset` saved as Zarr v3:

==========================  ==============================  =======  ========================
name                        dims                            dtype    meaning
==========================  ==============================  =======  ========================
``NAME`` (one per group)    (segment, NAME_feature)         float32  the group's values
``NAME_status``             (segment,)                      int8     0 pending, 1 done,
                                                                     -1 failed
``votes``                   (segment, emotion)              float32  listener-normalised
                                                                     vote distribution
``votes_mean``              (segment, emotion)              float32  plain mean of 0/1 votes
==========================  ==============================  =======  ========================

The ``segment`` dimension is indexed by the segment id (``"12:001"``:
track id and position), so ``ds.sel(segment="12:001")`` works; the other
per-segment coordinates are ``track_id``, ``segment_index``, ``start_s``,
``duration_s`` (seconds), ``label``, ``group`` (cross-validation group),
``genre`` and ``path``.  ``emotion`` holds the nine GEMS names and each
``NAME_feature`` the group's column names.

Store attributes are native JSON values: ``spec`` (the fields every group
shares, :meth:`emodist.spec.ExtractionSpec.common`), ``feature_groups``
(group name -> what defines its values: version, width, input, parameters,
model hash), ``emodist_version``, ``created``, ``dataset``, ``label_rule``
and ``failures`` (a list of ``{"track_id", "path", "error", "group"}``).
A store whose segments were planned on the workers is created from
:func:`sized_template` (the same metadata, nothing per segment yet) with the
attribute ``segment_plan_pending`` (:data:`PLAN_PENDING`), which is removed
once the workers have written every coordinate and vote profile
(:func:`plan_variables`); until then the store is incomplete.
"""

from __future__ import annotations

import datetime as _dt

import numpy as np
import pandas as pd
import xarray as xr

from emodist._version import __version__
from emodist.data.labels import GEMS

__all__ = [
    "EMOTION", "PLAN_PENDING", "SEGMENT", "SEGMENT_COORDS", "STATUS_DONE", "STATUS_FAILED",
    "STATUS_PENDING", "VOTES", "VOTES_MEAN", "decode_strings", "feature_dim",
    "first_duplicate", "group_variables", "plan_variables", "same_strings", "segment_coords",
    "shared_strings", "sized_template", "status_name", "stored_groups", "template",
]

SEGMENT = "segment"
EMOTION = "emotion"
VOTES = "votes"
VOTES_MEAN = "votes_mean"
STATUS_PENDING, STATUS_DONE, STATUS_FAILED = 0, 1, -1
#: Attribute of a store whose per-segment coordinates are still being written.
PLAN_PENDING = "segment_plan_pending"

#: Per-segment coordinates (besides the ``segment`` index) with their dtypes.
SEGMENT_COORDS = {
    "track_id": object,
    "segment_index": np.int32,
    "start_s": np.float64,
    "duration_s": np.float64,
    "label": object,
    "group": object,
    "genre": object,
    "path": object,
}

_STATUS_ATTRS = {"flag_values": [STATUS_FAILED, STATUS_PENDING, STATUS_DONE],
                 "flag_meanings": "failed pending done"}
_COORD_ATTRS = {"start_s": {"units": "s", "long_name": "segment start in its track"},
                "duration_s": {"units": "s", "long_name": "segment duration"},
                "group": {"long_name": "cross-validation group"}}


def status_name(group: str) -> str:
    """Name of a group's status variable."""
    return f"{group}_status"


def feature_dim(group: str) -> str:
    """Name of a group's feature dimension."""
    return f"{group}_feature"


def stored_groups(ds) -> list[str]:
    """Feature groups a store holds, in the order they were added."""
    recorded = list(ds.attrs.get("feature_groups") or {})
    return [g for g in recorded if g in ds.data_vars and status_name(g) in ds.data_vars]


def decode_strings(values) -> np.ndarray:
    """String values as a plain ``object`` array of ``str``.

    Zarr v3 variable-length strings come back as NumPy's ``StringDType``;
    this turns them (or ``<U`` arrays) into Python strings for pandas.
    """
    arr = np.asarray(values)
    return arr.astype(object) if arr.dtype.kind in "UOT" else arr


def same_strings(stored, values) -> bool:
    """Whether two sequences of strings are equal, element by element.

    ``stored`` is a string array as Zarr reads it (NumPy's ``StringDType``
    under NumPy 2, an ``object`` array under NumPy 1.26); ``values`` any
    sequence of ``str`` (a list, a pandas column), converted to ``stored``'s
    kind of array for one vectorised comparison.
    """
    stored = np.asarray(stored)
    if len(stored) != len(values):
        return False
    if stored.dtype.kind == "T":
        other = np.asarray(values, dtype=stored.dtype)
    else:
        stored, other = np.asarray(stored, dtype=object), np.asarray(values, dtype=object)
    return bool(np.array_equal(stored, other))


def first_duplicate(values) -> str | None:
    """The smallest value of ``values`` that appears more than once, or ``None``."""
    s = np.sort(np.asarray(values))
    same = np.flatnonzero(s[1:] == s[:-1])
    return str(s[same[0]]) if same.size else None


def shared_strings(values) -> np.ndarray:
    """``values`` as an ``object`` array of ``str`` holding one string per distinct value.

    A track's id, path, label, group and genre repeat on each of its
    segments; the array points at one Python string per distinct value
    (8 bytes a segment, not a string a segment).  Missing values become ``""``.
    """
    codes, uniques = pd.factorize(pd.Series(values, copy=False), use_na_sentinel=True)
    pool = np.array([str(u) for u in uniques] + [""], dtype=object)
    return pool[codes]  # code -1 (missing) is the pool's last entry, ""


def segment_coords(table: pd.DataFrame) -> dict[str, xr.Variable]:
    """The ``segment`` index and per-segment coordinates of a segment plan.

    The variables are made with ``fastpath``: their arrays are already what
    xarray stores (``object`` arrays of ``str``, NumPy numbers), and
    xarray's own check of an ``object`` array sends it through a pandas
    Series, which under pandas 3 builds an Arrow copy and new strings for
    every element (pydata/xarray#11470; 116 MiB and 0.3 s for 400,000
    segment ids, against 7 MiB and 0.05 s).
    """
    ids = np.asarray(table["segment_id"].to_numpy(dtype=object), dtype=object)
    coords = {SEGMENT: xr.Variable((SEGMENT,), ids, fastpath=True)}
    for name, dtype in SEGMENT_COORDS.items():
        if dtype is object:
            values = (shared_strings(table[name]) if name in table
                      else np.full(len(table), "", dtype=object))
        else:
            values = np.asarray(table[name] if name in table else np.zeros(len(table)),
                                dtype=dtype)
        coords[name] = xr.Variable((SEGMENT,), values, dict(_COORD_ATTRS.get(name, {})),
                                   fastpath=True)
    return coords


def group_variables(group, n: int, *, chunk: int | None = None, values=None,
                    status=None) -> dict[str, xr.Variable]:
    """The variables of one feature group: values, status and its feature names.

    Parameters
    ----------
    group : emodist.features.FeatureGroup
        The group (its name, width, feature names and long name).
    n : int
        Number of segments.
    chunk : int, optional
        Missing values become a lazy NaN dask array of this many segments per
        chunk (a template that is never computed); else eager NaN.
    values : numpy.ndarray, optional
        ``(n, width)`` values (tests and in-memory stores).
    status : numpy.ndarray, optional
        ``(n,)`` status; default all pending.

    Returns
    -------
    dict of str to xarray.Variable
    """
    shape = (n, group.width)
    if values is not None:
        data = np.asarray(values, np.float32)
    elif chunk is None:
        data = np.full(shape, np.nan, np.float32)
    else:
        import dask.array as da

        data = da.full(shape, np.nan, dtype=np.float32, chunks=(chunk, shape[1]))
    st = np.zeros(n, np.int8) if status is None else np.asarray(status, np.int8)
    return {
        group.name: xr.Variable((SEGMENT, feature_dim(group.name)), data,
                                {"long_name": group.long_name or group.name}),
        status_name(group.name): xr.Variable((SEGMENT,), st, dict(_STATUS_ATTRS,
                                             long_name=f"{group.name} status")),
        feature_dim(group.name): xr.Variable((feature_dim(group.name),),
                                             np.array(group.feature_names(), dtype=object)),
    }


def plan_variables(table: pd.DataFrame, votes=None, votes_mean=None) -> dict[str, xr.Variable]:
    """Every per-segment variable a segment plan defines: coordinates and vote profiles.

    What a worker writes into a :func:`sized_template` store for its slice of
    the plan: the values :func:`template` would hold for the same rows.

    Parameters
    ----------
    table : pandas.DataFrame
        ``m`` rows of a segment plan.
    votes, votes_mean : numpy.ndarray, optional
        ``(m, 9)`` vote profiles.

    Returns
    -------
    dict of str to xarray.Variable
        The ``segment`` index, :data:`SEGMENT_COORDS` and, when given, the votes.
    """
    out = dict(segment_coords(table))
    for name, v in ((VOTES, votes), (VOTES_MEAN, votes_mean)):
        if v is not None:
            out[name] = xr.Variable((SEGMENT, EMOTION), np.asarray(v, np.float32))
    return out


def _placeholder(n: int, dtype, width: int | None = None):
    """A lazy ``(n,)`` or ``(n, width)`` array of ``dtype`` that is never computed.

    Strings are NumPy's ``StringDType`` (NumPy 2), so that xarray learns the
    stored type without loading the array; older NumPy loads a blank array.
    """
    import dask.array as da

    shape = (n,) if width is None else (n, width)
    if dtype is object:
        if hasattr(np, "dtypes") and hasattr(np.dtypes, "StringDType"):
            return da.zeros(shape, dtype=np.dtypes.StringDType(), chunks=-1)
        return da.full(shape, "", dtype=object, chunks=-1)
    return da.zeros(shape, dtype=dtype, chunks=-1)


def sized_template(n: int, groups, *, chunk: int | None = None, votes: bool = False,
                   votes_mean: bool = False, attrs: dict | None = None) -> xr.Dataset:
    """The store Dataset of ``n`` segments whose values are not known yet.

    The same variables, dtypes and attributes as :func:`template` for a
    plan of ``n`` segments, but every per-segment coordinate and vote
    profile is a lazy placeholder (the driver holds nothing per segment):
    written with ``compute=False`` it gives the store's metadata, and the
    workers fill the values in with region writes of :func:`plan_variables`.
    The ``segment`` coordinate has no index (xarray would load it).
    ``votes`` / ``votes_mean``: the store holds those profiles.  ``attrs``
    gains :data:`PLAN_PENDING`.
    """
    coords: dict = {SEGMENT: xr.Variable((SEGMENT,), _placeholder(n, object))}
    for name, dtype in SEGMENT_COORDS.items():
        coords[name] = xr.Variable((SEGMENT,), _placeholder(n, dtype),
                                   dict(_COORD_ATTRS.get(name, {})))
    extra = {name: xr.Variable((SEGMENT, EMOTION), _placeholder(n, np.float32, len(GEMS)))
             for name, wanted in ((VOTES, votes), (VOTES_MEAN, votes_mean)) if wanted}
    base = dict(attrs or {})
    base[PLAN_PENDING] = True
    return _assemble(n, coords, groups, chunk=chunk, extra=extra, attrs=base, indexed=False)


def _assemble(n: int, coords: dict, groups, *, chunk, extra: dict, attrs: dict | None,
              values: dict | None = None, status: dict | None = None,
              indexed: bool = True) -> xr.Dataset:
    """The store Dataset from its per-segment coordinates, groups and vote variables."""
    data_vars: dict[str, xr.Variable] = {}
    coords = dict(coords)
    for g in groups:
        for name, var in group_variables(g, n, chunk=chunk, values=(values or {}).get(g.name),
                                         status=(status or {}).get(g.name)).items():
            (coords if name == feature_dim(g.name) else data_vars)[name] = var
    if extra:
        coords[EMOTION] = xr.Variable((EMOTION,), np.array(GEMS, dtype=object))
    data_vars.update(extra)
    base = {"emodist_version": __version__,
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "failures": []}
    base.update(attrs or {})
    return xr.Dataset(data_vars, coords=coords if indexed else xr.Coordinates(coords, indexes={}),
                      attrs=base)


def template(table: pd.DataFrame, groups, *, chunk: int | None = None, votes=None,
             votes_mean=None, attrs: dict | None = None, values: dict | None = None,
             status: dict | None = None) -> xr.Dataset:
    """The store Dataset of a segment plan and its feature groups.

    Parameters
    ----------
    table : pandas.DataFrame
        The segment plan (``segment_id`` and the columns of :data:`SEGMENT_COORDS`;
        missing ones are blank).
    groups : sequence of emodist.features.FeatureGroup
        The groups (resolved: widths known).
    chunk : int, optional
        Make missing values lazy NaN arrays with this many segments per chunk.
    votes, votes_mean : numpy.ndarray, optional
        ``(n, 9)`` vote profiles; left out when ``None``.
    attrs : dict, optional
        Store attributes; ``created`` and ``emodist_version`` are added.
    values, status : dict, optional
        Group name -> values / status (in-memory stores).

    Returns
    -------
    xarray.Dataset
    """
    n = len(table)
    coords = segment_coords(table)
    extra = {name: xr.Variable((SEGMENT, EMOTION), np.asarray(v, np.float32))
             for name, v in ((VOTES, votes), (VOTES_MEAN, votes_mean)) if v is not None}
    return _assemble(n, coords, groups, chunk=chunk, extra=extra, attrs=attrs, values=values,
                     status=status)
