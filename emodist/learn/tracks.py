"""Per-track columns of an evaluation: the store's own and its dataset's catalog's.

A store keeps a few columns per segment (``track_id``, ``label``, ``group``,
``genre``, ``path``: :data:`emodist.store.layout.SEGMENT_COORDS`); the
catalog it was extracted from has more (a manifest's extra columns,
MTG-Jamendo's ``album`` and its published splits ``split_0`` ...
``split_4``).  The store's ``dataset`` attribute says where that catalog is
(``"<kind>:<location>"``, :attr:`emodist.data.catalog.Catalog.description`);
:func:`track_columns` reads it again (no audio is listed) and joins it to the
evaluated segments by ``track_id``, so that

* the folds can be grouped by any such column (:func:`column_values`,
  ``--group-by album``), and
* a dataset that publishes its splits is evaluated on them
  (:func:`published_splits`, ``--folds dataset``).

A column the store holds is read from the store; any other from the catalog.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from emodist.data.catalog import load_dataset
from emodist.errors import EmodistError
from emodist.learn.folds import fold_groups, one_group_per_copy
from emodist.store.layout import SEGMENT, SEGMENT_COORDS, decode_strings

__all__ = [
    "DATASET_KINDS",
    "SPLIT_COLUMN",
    "SPLIT_PARTS",
    "PublishedSplits",
    "column_values",
    "dataset_location",
    "published_splits",
    "segment_groups",
    "track_columns",
]

#: Kinds of :attr:`Catalog.description <emodist.data.catalog.Catalog.description>`
#: whose location :func:`emodist.data.catalog.load_dataset` reads again.
DATASET_KINDS = ("emotify", "manifest", "folders", "mtg-jamendo", "deam", "pmemo")
#: Name of a catalog column holding one published split's part of each track.
SPLIT_COLUMN = re.compile(r"split_(\d+)$")
#: The parts of a published split (``""``: the track is outside it).
SPLIT_PARTS = ("train", "validation", "test")
#: Per-segment coordinates of the store that are per-track columns.
_STORE_COLUMNS = tuple(c for c, kind in SEGMENT_COORDS.items() if kind is object)


def dataset_location(attrs: dict) -> str | None:
    """Where the store's dataset is, from its ``dataset`` attribute.

    Parameters
    ----------
    attrs : dict
        The store's attributes.

    Returns
    -------
    str or None
        The location of ``"<kind>:<location>"`` when ``kind`` is one of
        :data:`DATASET_KINDS`; ``None`` otherwise (a generated store, an
        attribute of an older version).
    """
    kind, sep, where = str(attrs.get("dataset") or "").partition(":")
    return where if sep and kind in DATASET_KINDS and where else None


def _store_tracks(ds) -> pd.DataFrame:
    """The store's per-segment string coordinates, one row per track (its first segment)."""
    cols = {c: decode_strings(ds[c].values) for c in _STORE_COLUMNS
            if c in ds.coords and ds[c].dims == (SEGMENT,)}
    frame = pd.DataFrame(cols).astype(str)
    return frame.drop_duplicates("track_id").set_index("track_id")


def track_columns(ds, *, storage_options: dict | None = None) -> tuple[pd.DataFrame, str | None]:
    """Every per-track column of a store: its own, then its dataset's catalog's.

    Parameters
    ----------
    ds : xarray.Dataset
        An opened store.
    storage_options : dict, optional
        fsspec options of the dataset's location (used for a URL only).

    Returns
    -------
    table : pandas.DataFrame
        Indexed by ``track_id`` (str), one row per track of the store; the
        store's ``label``, ``group``, ``genre``, ``path``, then the catalog's
        other columns (``""`` for a track the catalog no longer lists).
    unread : str or None
        Why no catalog column is there (no dataset named, or it could not
        be read); ``None`` when the catalog was joined.
    """
    table = _store_tracks(ds)
    where = dataset_location(ds.attrs)
    if where is None:
        return table, f"the store names no dataset it was read from ({ds.attrs.get('dataset')!r})"
    try:
        catalog = load_dataset(where, min_class_tracks=0, check_audio=False,
                               storage_options=storage_options if "://" in where else None)
    except (EmodistError, OSError) as exc:
        return table, f"its dataset {where} cannot be read ({exc})"
    tracks = catalog.tracks.astype({"track_id": str}).drop_duplicates("track_id")
    extra = [c for c in tracks.columns if c not in table.columns and c != "track_id"]
    joined = tracks.set_index("track_id")[extra].reindex(table.index)
    for c in extra:
        values = joined[c]
        table[c] = values.where(values.notna(), "").astype(str) if values.dtype == object else values
    return table, None


def column_values(ds, column: str, track_id, *, storage_options: dict | None = None,
                  param: str = "group_by") -> np.ndarray:
    """A per-track column's value on each evaluated segment.

    Parameters
    ----------
    ds : xarray.Dataset
        An opened store.
    column : str
        A store coordinate (``group``, ``genre``, ``label``, ``path``,
        ``track_id``) or a column of the store's dataset catalog (``album``,
        a manifest's own columns).
    track_id : array_like of str, shape (n,)
        Track of each evaluated segment.
    storage_options : dict, optional
        fsspec options of the dataset's location.
    param : str
        The parameter named by an error.

    Returns
    -------
    numpy.ndarray of str, shape (n,)
        The column's value as text (``""`` where it is missing).

    Raises
    ------
    emodist.errors.EmodistError
        No such column (``param``): the message lists the columns there are,
        and why the catalog's are missing when they are.
    """
    track_id = np.asarray(track_id, dtype=object)
    if column == "track_id":
        return track_id.astype(str).astype(object)
    table, unread = track_columns(ds, storage_options=storage_options)
    if column not in table.columns:
        known = ", ".join(["track_id", *table.columns])
        why = f"; {unread}" if unread else ""
        raise EmodistError(f"{column!r} is not a column of the store's tracks ({known}){why}",
                           param=param)
    values = table[column].reindex(track_id)
    return np.array(["" if pd.isna(v) else str(v) for v in values], dtype=object)


def segment_groups(ds, group, track_id, column: str | None = None, *, copies=None,
                   storage_options: dict | None = None) -> tuple[np.ndarray, str]:
    """The fold group of each evaluated segment, and what the groups are.

    Parameters
    ----------
    ds : xarray.Dataset
        The opened store.
    group : array_like of str or None
        The store's ``group`` of each segment (``None``: no such coordinate).
    track_id : array_like of str
        Track of each segment.
    column : str, optional
        A per-track column to group by (:func:`column_values`, ``--group-by``);
        ``None``: the store's ``group``.
    copies : list of list of str, optional
        Track ids of recordings stored more than once
        (:func:`emodist.store.copies.copy_sets`), kept in one group.
    storage_options : dict, optional
        fsspec options of the dataset's location.

    Returns
    -------
    groups : numpy.ndarray of str
        A group never spans two folds; a segment whose value is empty is
        its track's own group.
    column : str
        What the groups are (:func:`emodist.learn.folds.fold_groups`).
    """
    if column is None:
        groups, what = fold_groups(group, track_id)
    else:
        values = column_values(ds, column, track_id, storage_options=storage_options)
        groups, what = fold_groups(values, track_id, name=column)
    return one_group_per_copy(groups, track_id, copies), what


@dataclass(frozen=True)
class PublishedSplits:
    """A dataset's published splits, on the evaluated segments.

    Attributes
    ----------
    names : tuple of str
        The split columns, in split order (``split_0`` ...).
    parts : numpy.ndarray of str, shape (n, n_splits)
        Each segment's part in each split: ``train``, ``validation``,
        ``test`` or ``""`` (outside it).
    """

    names: tuple[str, ...]
    parts: np.ndarray


def published_splits(ds, track_id, *, storage_options: dict | None = None,
                     param: str = "folds") -> PublishedSplits:
    """The published splits of the store's dataset, on the segments of ``track_id``.

    A split is a catalog column ``split_<k>`` whose values are
    :data:`SPLIT_PARTS` or empty (MTG-Jamendo's ``split_0`` ... ``split_4``,
    :func:`emodist.data.datasets.load_mtg_jamendo`; a manifest may carry its own).

    Parameters
    ----------
    ds, track_id, storage_options, param
        As in :func:`column_values`.

    Returns
    -------
    PublishedSplits

    Raises
    ------
    emodist.errors.EmodistError
        The dataset publishes no split, a split column holds another value,
        or a split tests none of the evaluated segments (``param``).
    """
    table, unread = track_columns(ds, storage_options=storage_options)
    found = sorted((int(m.group(1)), c) for c in table.columns
                   for m in [SPLIT_COLUMN.match(str(c))] if m)
    if not found:
        why = unread or f"its catalog has no split_<k> column ({', '.join(table.columns)})"
        raise EmodistError(f"the store's dataset publishes no splits: {why}", param=param)
    names = tuple(c for _, c in found)
    track_id = np.asarray(track_id, dtype=object)
    cols = []
    for name in names:
        values = table[name].reindex(track_id).fillna("").astype(str).str.strip().to_numpy(object)
        bad = sorted(set(values) - {*SPLIT_PARTS, ""})
        if bad:
            raise EmodistError(f"published split {name!r} holds {bad[0]!r}; a split's parts are "
                               f"{', '.join(SPLIT_PARTS)}", param=param)
        if not (values == "test").any():
            raise EmodistError(f"published split {name!r} tests none of the evaluated segments",
                               param=param)
        cols.append(values)
    return PublishedSplits(names=names, parts=np.column_stack(cols))
