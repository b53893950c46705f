"""Recordings stored twice: byte-identical audio files in different cross-validation groups.

A store extracted from a dataset that holds the same audio under two names
(a copied file, a re-encoded name) has two tracks of one recording; grouped
cross-validation could put them on both sides of a fold.  Extraction gives
such copies one group (:func:`emodist.data.catalog.group_copies`);
:func:`regroup_copies` does the same for a store read back, from the audio
files it names (local files only: a remote dataset is not read whole here).
"""

from __future__ import annotations

import os

import numpy as np
import xarray as xr

from emodist.data.catalog import fingerprints
from emodist.store import layout

__all__ = ["copy_sets", "regroup_copies"]


def copy_sets(ds: xr.Dataset) -> list[list[str]]:
    """Track ids of each set of byte-identical local audio files of a store, whatever their groups.

    Parameters
    ----------
    ds : xarray.Dataset
        An opened store with ``track_id`` and ``path`` coordinates.

    Returns
    -------
    list of list of str
        Each set of two or more tracks whose (local) files have one digest,
        in store order.
    """
    if not all(c in ds.coords for c in ("track_id", "path")):
        return []
    tracks = np.asarray(layout.decode_strings(ds["track_id"].values), object)
    paths = np.asarray(layout.decode_strings(ds["path"].values), object)
    first = {}
    for i, (t, p) in enumerate(zip(tracks, paths)):
        if t not in first and "://" not in p and os.path.isfile(p):
            first[t] = i
    if len(first) < 2:
        return []
    rows = list(first.values())
    by_digest: dict[str, list[str]] = {}
    for row, digest in zip(rows, fingerprints([paths[r] for r in rows])):
        if digest:
            by_digest.setdefault(digest, []).append(str(tracks[row]))
    return [same for same in by_digest.values() if len(same) > 1]


def regroup_copies(ds: xr.Dataset, sets=None) -> tuple[xr.Dataset, list[list[str]]]:
    """``ds`` with the tracks of byte-identical local audio files in one group.

    Parameters
    ----------
    ds : xarray.Dataset
        An opened store (:func:`emodist.store.open_store`) with ``track_id``,
        ``path`` and ``group`` coordinates.
    sets : list of list of str, optional
        :func:`copy_sets` of ``ds``, when already found.

    Returns
    -------
    ds : xarray.Dataset
        ``ds`` itself when no copies lie in different groups, else a Dataset
        whose ``group`` coordinate gives every copy the group of the first.
    copies : list of list of str
        Track ids of each set of copies that were in different groups.
    """
    if not all(c in ds.coords for c in ("track_id", "path", "group")):
        return ds, []
    sets = copy_sets(ds) if sets is None else sets
    tracks = np.asarray(layout.decode_strings(ds["track_id"].values), object)
    groups = np.asarray(layout.decode_strings(ds["group"].values), object)
    group_of: dict = {}
    for t, g in zip(tracks, groups):
        group_of.setdefault(t, g)
    new_group, copies = {}, []
    for same in sets:
        if len({group_of[t] for t in same}) > 1:
            copies.append(list(same))
            new_group.update({t: group_of[same[0]] for t in same})
    if not copies:
        return ds, []
    regrouped = np.array([new_group.get(t, g) for t, g in zip(tracks, groups)], object)
    out = ds.assign_coords(group=(ds["group"].dims, regrouped, ds["group"].attrs))
    for attr in ("url", "storage_options", "zarr_group"):
        setattr(out.emodist, attr, getattr(ds.emodist, attr))
    return out, copies
