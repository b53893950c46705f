"""The feature store's layout: names, dimensions, coordinates, attributes.

A store is one :class:`xarray.Dataset` saved as Zarr v3.  Everything that
writes or reads a store goes through the names defined here:

=================  ==================================  =========  =====================
name               dims                                dtype      meaning
=================  ==================================  =========  =====================
``handcrafted``    (segment, handcrafted_feature)      float32    handcrafted vector
``deep``           (segment, deep_feature)             float32    network embedding
``status``         (segment,)                          int8       0 pending, 1 done,
                                                                  -1 failed
``votes``          (segment, emotion)                  float32    listener-normalised
                                                                  vote distribution
``votes_mean``     (segment, emotion)                  float32    plain mean of 0/1 votes
=================  ==================================  =========  =====================

Coordinates along ``segment``: ``segment`` (int64 position), ``segment_id``,
``track_id``, ``segment_index`` (int32, position within its track),
``start_s``, ``duration_s``, ``label``, ``group``, ``genre``, ``path``.
String coordinates are stored as variable-length UTF-8.  ``emotion`` holds the
nine GEMS names; ``handcrafted_feature`` and ``deep_feature`` hold feature
names (``deep_0000`` ... for the embedding).

Store attributes (all JSON-serialisable): ``emodist_version``,
``config`` (JSON of :class:`emodist.spec.Config`), ``feature_names_version``,
``model_sha256``, ``dataset`` (a description), ``created`` (ISO time),
``label_rule``, ``failures`` (JSON list of ``{"track_id", "path", "error"}``).
"""

from __future__ import annotations

import datetime as _dt
import json

import numpy as np
import pandas as pd
import xarray as xr

#: GEMS emotions in the Emotify column order.
GEMS = (
    "amazement",
    "solemnity",
    "tenderness",
    "nostalgia",
    "calmness",
    "power",
    "joyful_activation",
    "tension",
    "sadness",
)

SEGMENT = "segment"
HANDCRAFTED = "handcrafted"
DEEP = "deep"
STATUS = "status"
VOTES = "votes"
VOTES_MEAN = "votes_mean"
EMOTION = "emotion"
HANDCRAFTED_FEATURE = "handcrafted_feature"
DEEP_FEATURE = "deep_feature"

STATUS_PENDING, STATUS_DONE, STATUS_FAILED = 0, 1, -1

#: Per-segment coordinate columns of a segment plan, with their dtypes.
SEGMENT_COORDS = {
    "segment_id": object,
    "track_id": object,
    "segment_index": np.int32,
    "start_s": np.float64,
    "duration_s": np.float64,
    "label": object,
    "group": object,
    "genre": object,
    "path": object,
}


def deep_feature_names(dim: int) -> list[str]:
    """Names ``deep_0000`` ... for a ``dim``-wide embedding."""
    width = max(4, len(str(dim - 1)))
    return [f"deep_{i:0{width}d}" for i in range(dim)]


def _segment_coords(plan: pd.DataFrame) -> dict[str, tuple]:
    coords = {}
    for name, dtype in SEGMENT_COORDS.items():
        if name in plan:
            col = plan[name]
        else:
            col = pd.Series([""] * len(plan)) if dtype is object else pd.Series(np.zeros(len(plan)))
        if dtype is object:
            values = np.array(["" if pd.isna(v) else str(v) for v in col], dtype=object)
        else:
            values = np.asarray(col, dtype=dtype)
        coords[name] = (SEGMENT, values)
    return coords


def _values(values, shape: tuple[int, int], lazy_chunk: int | None):
    """Feature values as float32; NaN (eager, or lazy dask) when missing."""
    if values is not None:
        return np.asarray(values, np.float32)
    if lazy_chunk is None:
        return np.full(shape, np.nan, np.float32)
    import dask.array as da

    return da.full(shape, np.nan, dtype=np.float32, chunks=(lazy_chunk, shape[1]))


def build_dataset(
    plan: pd.DataFrame,
    handcrafted_names: list[str] | None,
    deep_dim: int | None,
    *,
    handcrafted: np.ndarray | None = None,
    deep: np.ndarray | None = None,
    status: np.ndarray | None = None,
    votes: np.ndarray | None = None,
    votes_mean: np.ndarray | None = None,
    attrs: dict | None = None,
    lazy_chunk: int | None = None,
) -> xr.Dataset:
    """Assemble a store Dataset from a segment plan and arrays.

    Parameters
    ----------
    plan : pandas.DataFrame
        One row per segment with (some of) the columns of
        :data:`SEGMENT_COORDS`; missing ones are filled with blanks/zeros.
    handcrafted_names : list of str or None
        Handcrafted feature names; ``None`` leaves the variable out.
    deep_dim : int or None
        Width of the deep embedding; ``None`` leaves the variable out.
    handcrafted, deep : numpy.ndarray, optional
        Values; missing ones are filled with NaN (a template).
    lazy_chunk : int, optional
        Make missing feature arrays lazy NaN dask arrays of this many
        segments per chunk (a store template that is never computed).
    status : numpy.ndarray, optional
        Per-segment status; defaults to pending (0).
    votes, votes_mean : numpy.ndarray, optional
        ``(n_segments, 9)`` vote distributions; left out when ``None``.
    attrs : dict, optional
        Store attributes; ``created`` and ``emodist_version`` are added.

    Returns
    -------
    xarray.Dataset
        A Dataset following the layout in this module's docstring.
    """
    from emodist import __version__

    n = len(plan)
    data_vars: dict[str, tuple] = {}
    coords: dict[str, object] = {SEGMENT: np.arange(n, dtype=np.int64)}
    coords.update(_segment_coords(plan))
    if handcrafted_names is not None:
        hc = _values(handcrafted, (n, len(handcrafted_names)), lazy_chunk)
        data_vars[HANDCRAFTED] = ((SEGMENT, HANDCRAFTED_FEATURE), hc)
        coords[HANDCRAFTED_FEATURE] = np.array(list(handcrafted_names), dtype=object)
    if deep_dim is not None:
        data_vars[DEEP] = ((SEGMENT, DEEP_FEATURE), _values(deep, (n, deep_dim), lazy_chunk))
        coords[DEEP_FEATURE] = np.array(deep_feature_names(deep_dim), dtype=object)
    st = np.zeros(n, np.int8) if status is None else np.asarray(status, np.int8)
    data_vars[STATUS] = ((SEGMENT,), st)
    if votes is not None or votes_mean is not None:
        coords[EMOTION] = np.array(GEMS, dtype=object)
    if votes is not None:
        data_vars[VOTES] = ((SEGMENT, EMOTION), np.asarray(votes, np.float32))
    if votes_mean is not None:
        data_vars[VOTES_MEAN] = ((SEGMENT, EMOTION), np.asarray(votes_mean, np.float32))
    base = {
        "emodist_version": __version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "failures": json.dumps([]),
    }
    base.update(attrs or {})
    return xr.Dataset(data_vars, coords=coords, attrs=base)


def decode_strings(values) -> np.ndarray:
    """Return string coordinate values as a plain ``object`` array of ``str``.

    Zarr v3 variable-length strings come back as NumPy's ``StringDType``;
    this turns them (or ``<U`` arrays) into Python strings for pandas.
    """
    arr = np.asarray(values)
    return arr.astype(object) if arr.dtype.kind in "UOT" else arr
