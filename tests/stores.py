"""One way to build feature stores for tests: a plan, fixed-value groups, a real Zarr store.

The groups here are real :class:`emodist.features.FeatureGroup` objects whose
values are given instead of computed; the store goes through the same
template and encoding as an extraction's (:mod:`emodist.store.layout`,
:mod:`emodist.store.zarrio`) and is opened with :func:`emodist.store.open_store`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pandas as pd

from emodist.features.base import FeatureGroup
from emodist.spec import ExtractionSpec
from emodist.store import layout
from emodist.store.zarrio import encoding, zarr_store

LABELS = ("calmness", "tension", "power", "sadness", "nostalgia")


def make_table(n_tracks: int = 30, per_track: int = 4, *, labels=LABELS,
               genres=("rock", "classical"), n_groups: int = 3) -> pd.DataFrame:
    """A segment plan: ``per_track`` 15 s segments per track."""
    tr = np.repeat(np.arange(n_tracks), per_track)
    idx = np.tile(np.arange(per_track), n_tracks)
    return pd.DataFrame({
        "segment_id": [f"{t + 1}:{i:03d}" for t, i in zip(tr, idx)],
        "track_id": [str(t + 1) for t in tr],
        "segment_index": idx.astype(np.int32),
        "start_s": idx * 15.0,
        "duration_s": 15.0,
        "label": np.array(labels)[tr % len(labels)],
        "group": [str(t % n_groups) for t in tr],
        "genre": np.array(genres)[tr % len(genres)],
        "path": [f"/music/{t + 1}.mp3" for t in tr],
    })


@dataclass(frozen=True)
class FixedGroup(FeatureGroup):
    """A feature group with given names (values are supplied, never computed)."""

    name: ClassVar[str] = "fixed"
    group_name: str = "fixed"
    names: tuple = ()
    model: str | None = field(default=None, metadata={"runtime": True})
    sha256: str | None = None

    @property
    def model_sha256(self):
        return self.sha256

    def feature_names(self) -> list[str]:
        return list(self.names)

    def describe(self) -> dict:
        out = super().describe()
        out["params"].pop("group_name", None)
        return out


def group(name: str, names, *, model: bool = False) -> FeatureGroup:
    """A :class:`FixedGroup` called ``name`` (``model=True`` gives it a model hash)."""
    g = FixedGroup(group_name=name, names=tuple(names), sha256="0" * 64 if model else None)
    object.__setattr__(g, "name", name)  # instance name: one class serves every group
    return g


def write_store(path, table: pd.DataFrame, values: dict, *, status: dict | None = None,
                votes=None, votes_mean=None, chunk: int = 7, failures=None,
                model_groups=(), attrs: dict | None = None):
    """Write a complete store of given values; returns the in-memory Dataset.

    Parameters
    ----------
    path : str or path-like
        Where to write (or any URL zarr_store understands).
    table : pandas.DataFrame
        The plan (:func:`make_table`).
    values : dict
        Group name -> ``(names, (n, width) array)``.
    status : dict, optional
        Group name -> status array (default: all done).
    model_groups : collection of str
        Groups recorded as model embeddings (with a model hash).
    """
    groups = [group(name, names, model=name in model_groups) for name, (names, _) in values.items()]
    n = len(table)
    status = {g.name: (status or {}).get(g.name, np.ones(n, np.int8)) for g in groups}
    spec = ExtractionSpec(groups=tuple(groups))
    base = {"dataset": "generated", "label_rule": "listener", "failures": list(failures or [])}
    base.update(spec.to_attrs())
    base.update(attrs or {})
    ds = layout.template(table, groups, votes=votes, votes_mean=votes_mean, attrs=base,
                         values={k: v for k, (_, v) in values.items()}, status=status)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(zarr_store(str(path)) if "://" not in str(path) else str(path), mode="w",
                   zarr_format=3, consolidated=True, encoding=encoding(ds, chunk))
    return ds
