"""The targets a public dataset publishes, on a store's segments.

A store extracted from DEAM, PMEmo or MTG-Jamendo (:mod:`emodist.data.datasets`)
keeps no listener votes: its targets are columns of the catalog it was read
from, which the store's ``dataset`` attribute names
(:func:`emodist.learn.tracks.track_columns` reads it again):

* **ratings**: any numeric per-track column (DEAM's and PMEmo's static
  ``valence`` and ``arousal``, DEAM's ``valence_std``...),
  :func:`catalog_targets`.  Where the dataset also publishes time-stamped
  annotations (DEAM's and PMEmo's 0.5 s ratings,
  :func:`emodist.data.datasets.load_dynamic_annotations`), each segment gets
  the mean of the ratings inside its own span
  (:func:`emodist.data.annotations.segment_means` over the store's
  ``start_s`` / ``duration_s``; ``annotations="dynamic"``, the default where
  they exist); otherwise, or with ``annotations="static"``, its track's static
  rating.  A segment without a rating in its span (DEAM rates from 15 s on)
  gets NaN: the evaluation drops it and counts it;
* **tags**: the ``tags`` column (MTG-Jamendo's mood/theme tags,
  ``;``-joined, prefix stripped), :func:`catalog_tags`.

:func:`target_columns` lists what a store offers (its numeric per-segment
variables and its catalog's numeric columns), for the messages that refuse an
unknown name.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from emodist.data.annotations import segment_means
from emodist.data.datasets import load_dynamic_annotations
from emodist.errors import EmodistError
from emodist.learn.spec import check_choice
from emodist.learn.tracks import dataset_location, track_columns
from emodist.store.layout import SEGMENT, decode_strings

__all__ = [
    "ANNOTATIONS",
    "SOURCES",
    "TAGS_COLUMN",
    "CatalogTargets",
    "catalog_tags",
    "catalog_targets",
    "store_variables",
    "target_columns",
]

#: Where a catalog column's per-segment value comes from: the mean of the
#: time-stamped ratings in the segment's span, or the track's static rating.
ANNOTATIONS = ("dynamic", "static")
#: Each annotation source in words (the report's ``config["annotations"]``).
SOURCES = {"dynamic": "per-segment mean of the 0.5 s annotations",
           "static": "the track's static rating"}
#: The catalog column holding a track's tags, ``;``-joined.
TAGS_COLUMN = "tags"
#: Dataset kinds that publish time-stamped annotations.
_DYNAMIC_KINDS = ("deam", "pmemo")
#: Catalog columns that are bookkeeping, not targets.
_BOOKKEEPING = ("n_responses",)


def store_variables(ds) -> list[str]:
    """The store's numeric per-segment data variables (feature status left out)."""
    return [str(v) for v in ds.data_vars
            if ds[v].dims == (SEGMENT,) and np.issubdtype(ds[v].dtype, np.number)
            and not str(v).endswith("_status")]


def _numeric(table: pd.DataFrame) -> list[str]:
    return [str(c) for c in table.columns if c not in _BOOKKEEPING
            and pd.api.types.is_numeric_dtype(table[c]) and not pd.api.types.is_bool_dtype(table[c])]


def target_columns(ds, *, storage_options: dict | None = None) -> tuple[list[str], list[str], str | None]:
    """What continuous targets a store offers.

    Parameters
    ----------
    ds : xarray.Dataset
        An opened store.
    storage_options : dict, optional
        fsspec options of the dataset's location.

    Returns
    -------
    store : list of str
        Numeric per-segment variables of the store (:func:`store_variables`).
    catalog : list of str
        Numeric per-track columns of its dataset's catalog.
    unread : str or None
        Why the catalog's columns are missing, if they are.
    """
    table, unread = track_columns(ds, storage_options=storage_options)
    return store_variables(ds), _numeric(table), unread


@dataclass(frozen=True)
class CatalogTargets:
    """Catalog columns on the evaluated segments.

    Attributes
    ----------
    values : numpy.ndarray, shape (n, n_columns)
        NaN where a segment has no value (no rating in its span).
    names : tuple of str
    sources : dict
        Column -> where its values come from, in words (:data:`SOURCES`).
    """

    values: np.ndarray
    names: tuple[str, ...]
    sources: dict[str, str]


def _dynamic(ds, storage_options: dict | None) -> tuple[pd.DataFrame | None, str]:
    """The dataset's time-stamped annotations, or ``None`` and why there are none."""
    kind = str(ds.attrs.get("dataset") or "").partition(":")[0]
    where = dataset_location(ds.attrs)
    if where is None or kind not in _DYNAMIC_KINDS:
        return None, (f"the {kind} dataset publishes none" if where else
                      "the store names no dataset it was read from")
    try:
        return load_dynamic_annotations(where, storage_options=storage_options
                                        if "://" in where else None), ""
    except (EmodistError, OSError) as exc:
        return None, str(exc).strip().splitlines()[0]


def _segments(ds, index) -> pd.DataFrame:
    """Segment id, track, start and duration of the store's segments ``index``."""
    index = np.asarray(index, dtype=np.int64)

    def column(name):
        return np.asarray(ds[name].values)[index]

    return pd.DataFrame({"segment_id": decode_strings(column(SEGMENT)).astype(str),
                         "track_id": decode_strings(column("track_id")).astype(str),
                         "start_s": column("start_s").astype(np.float64),
                         "duration_s": column("duration_s").astype(np.float64)})


def catalog_targets(ds, names, index, *, annotations: str | None = None,
                    storage_options: dict | None = None, param: str = "target") -> CatalogTargets:
    """Numeric catalog columns on the store's segments ``index``.

    Parameters
    ----------
    ds : xarray.Dataset
        An opened store whose ``dataset`` attribute names its catalog.
    names : sequence of str
        Numeric per-track columns of the catalog (``valence``, ``arousal``).
    index : array_like of int
        Store positions of the evaluated segments.
    annotations : {"dynamic", "static"}, optional
        ``dynamic``: each segment's mean of the dataset's time-stamped
        ratings of that column in its span (refused where the dataset has
        none); ``static``: its track's value.  ``None``: dynamic for the
        columns the dataset rates over time, static for the others.
    storage_options : dict, optional
        fsspec options of the dataset's location.
    param : str
        The parameter an unknown name is blamed on.

    Returns
    -------
    CatalogTargets

    Raises
    ------
    emodist.errors.EmodistError
        A name that is no numeric catalog column (``param``; the message
        lists those there are, and why there are none when the catalog
        cannot be read), or ``annotations="dynamic"`` for a column the
        dataset does not rate over time (``param="annotations"``).
    """
    if annotations is not None:
        check_choice("annotations", annotations, ANNOTATIONS)
    names = list(names)
    table, unread = track_columns(ds, storage_options=storage_options)
    numeric = _numeric(table)
    unknown = [n for n in names if n not in numeric]
    if unknown:
        have = f"its numeric columns: {', '.join(numeric)}" if numeric else (unread or "it has no numeric column")
        raise EmodistError(f"{unknown[0]!r} is not a numeric column of the store's dataset catalog "
                           f"({have})", param=param)
    segs = _segments(ds, index)
    values = np.array(table[names].reindex(segs["track_id"]), dtype=np.float64)  # writable
    sources = dict.fromkeys(names, SOURCES["static"])
    if annotations != "static":
        dyn, why = _dynamic(ds, storage_options)
        rated = [n for n in names if dyn is not None and n in dyn.columns]
        if annotations == "dynamic" and len(rated) < len(names):
            missing = next(n for n in names if n not in rated)
            reason = why or f"its time-stamped annotations rate {', '.join(dyn.columns[2:])}"
            raise EmodistError(f"{missing!r} has no time-stamped annotations: {reason}",
                               param="annotations")
        if rated:
            means = segment_means(dyn, segs, columns=rated, track="track_id")
            for n in rated:
                values[:, names.index(n)] = means[n].to_numpy(np.float64)
                sources[n] = SOURCES["dynamic"]
    return CatalogTargets(values=values, names=tuple(names), sources=sources)


def catalog_tags(ds, track_id, *, storage_options: dict | None = None,
                 param: str = "target") -> tuple[np.ndarray, list[str]]:
    """0/1 tags of each segment from its track's catalog ``tags`` column.

    Parameters
    ----------
    ds : xarray.Dataset
        An opened store whose ``dataset`` attribute names its catalog.
    track_id : array_like of str, shape (n,)
        Track of each evaluated segment.
    storage_options : dict, optional
        fsspec options of the dataset's location.
    param : str
        The parameter an error is blamed on.

    Returns
    -------
    T : numpy.ndarray of int8, shape (n, n_tags)
    names : list of str
        Every tag of the evaluated tracks, sorted.

    Raises
    ------
    emodist.errors.EmodistError
        The catalog has no ``tags`` column, or no evaluated track a tag.
    """
    table, unread = track_columns(ds, storage_options=storage_options)
    if TAGS_COLUMN not in table.columns:
        why = unread or f"its catalog has no {TAGS_COLUMN} column ({', '.join(table.columns)})"
        raise EmodistError(f"the store keeps no vote profiles to make tags from, and {why}",
                           param=param)
    cells = table[TAGS_COLUMN].reindex(np.asarray(track_id, dtype=object)).fillna("").astype(str)
    lists = [[t.strip() for t in cell.split(";") if t.strip()] for cell in cells]
    names = sorted({t for ts in lists for t in ts})
    if not names:
        raise EmodistError("no evaluated track has a tag in its catalog's tags column", param=param)
    col = {t: j for j, t in enumerate(names)}
    T = np.zeros((len(lists), len(names)), dtype=np.int8)
    for i, ts in enumerate(lists):
        T[i, [col[t] for t in ts]] = 1
    return T, names
