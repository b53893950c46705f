"""One way to build feature stores for tests: fixed-value groups through the real template.

The groups are real :class:`emodist.features.FeatureGroup` objects whose
values are given instead of computed (:func:`group`); every store goes
through the extraction's own template and encoding (:func:`emodist.store.layout.template`,
:func:`emodist.store.zarrio.encoding`) and is opened with
:func:`emodist.store.open_store`.

:func:`make_table` and :func:`write_store` make plain stores of given values;
:func:`make_arrays` draws the evaluation tests' data: ``n_tracks`` tracks of
``n_segments`` segments, four classes, handcrafted features whose first
columns carry the class (scaled by ``separation``) plus a strong per-track
offset shared by a track's segments (so that a cross-validation that let a
track into both train and test could recognise tracks), random Inception-v3
features, and vote profiles; :func:`build` turns them into a Dataset.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pandas as pd
import xarray as xr

from emodist.features.base import FeatureGroup
from emodist.spec import ExtractionSpec
from emodist.store import layout
from emodist.store.zarrio import encoding, zarr_store

GEMS = layout.GEMS

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


CLASSES = ("calmness", "joyful_activation", "tension", "sadness")
N_HC = 10
#: Name of the deep group in the generated stores.
DEEP = "inception_v3"


def make_arrays(n_tracks=40, n_segments=3, separation=2.5, seed=0, shuffle_labels=False,
                track_offset=3.0, deep_dim=6):
    """Plan, feature matrices, status and vote profiles of a generated store."""
    rng = np.random.default_rng(seed)
    track_class = np.arange(n_tracks) % len(CLASSES)
    label_class = rng.permutation(track_class) if shuffle_labels else track_class
    rows, hc, votes, votes_mean = [], [], [], []
    for t in range(n_tracks):
        c = track_class[t]
        offset = track_offset * rng.normal(size=N_HC)
        profile = np.full(9, 0.03) + 0.05 * rng.random(9)
        profile[GEMS.index(CLASSES[label_class[t]])] += 0.6
        profile /= profile.sum()
        for s in range(n_segments):
            rows.append({
                "segment_id": f"{t}:{s:03d}", "track_id": str(t), "segment_index": s,
                "start_s": 15.0 * s, "duration_s": 15.0, "label": CLASSES[label_class[t]],
                "group": str(t), "genre": ("classical", "rock", "electronic", "pop")[t % 4],
                "path": f"/data/{t}.mp3",
            })
            x = rng.normal(size=N_HC) + offset
            x[c] += separation * 3.0
            x[(c + 1) % 4 + 4] += separation * 1.5
            hc.append(x)
            votes.append(profile)
            votes_mean.append(np.clip(profile * 2.5, 0, 1))
    n = len(rows)
    return {
        "plan": pd.DataFrame(rows),
        "handcrafted": np.asarray(hc, np.float32),
        "deep": rng.normal(size=(n, deep_dim)).astype(np.float32),
        "status": np.ones(n, np.int8),
        "votes": np.asarray(votes, np.float32),
        "votes_mean": np.asarray(votes_mean, np.float32),
    }


def hc_names() -> list[str]:
    """Handcrafted feature names of the generated stores."""
    return [f"mfcc_{i:02d}" for i in range(6)] + ["centroid", "rolloff", "flux", "tempo"]


def deep_names(dim: int) -> list[str]:
    """Feature names of a ``dim``-wide deep group."""
    return [f"{DEEP}_{i:04d}" for i in range(dim)]


def dataset(plan: pd.DataFrame, groups: dict, votes=None, votes_mean=None,
            attrs: dict | None = None) -> xr.Dataset:
    """A store Dataset from a segment plan and ``NAME -> (names, values, status)`` groups."""
    objs = [group(name, names, model=name == DEEP) for name, (names, _, _) in groups.items()]
    spec = ExtractionSpec(groups=tuple(objs))
    base = {"label_rule": "listener", "failures": [], "dataset": "generated test store"}
    base.update(spec.to_attrs())
    base.update(attrs or {})
    return layout.template(plan, objs, votes=votes, votes_mean=votes_mean, attrs=base,
                           values={k: v for k, (_, v, _) in groups.items()},
                           status={k: s for k, (_, _, s) in groups.items()})


def build(arrays: dict, deep: bool = True, attrs: dict | None = None,
          status: dict | None = None) -> xr.Dataset:
    """In-memory store Dataset of :func:`make_arrays` output.

    ``status`` overrides a group's status (``NAME -> array``); by default
    every group has the arrays' ``status``.
    """
    status = status or {}
    groups = {"handcrafted": (hc_names(), arrays["handcrafted"],
                              status.get("handcrafted", arrays["status"]))}
    if deep:
        width = arrays["deep"].shape[1]
        groups[DEEP] = (deep_names(width), arrays["deep"], status.get(DEEP, arrays["status"]))
    return dataset(arrays["plan"], groups, arrays["votes"], arrays["votes_mean"], attrs)


def write(ds: xr.Dataset, path, chunk: int = 7, **kw) -> str:
    """Write a store Dataset to ``path`` (Zarr v3, consolidated); returns the path."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(str(path), zarr_format=3, consolidated=True, mode="w",
                   encoding=kw.pop("encoding", encoding(ds, chunk)), **kw)
    return str(path)


def make_store(path, deep: bool = True, attrs: dict | None = None, **kw) -> str:
    """Write a generated store to ``path``; returns the path."""
    return write(build(make_arrays(**kw), deep=deep, attrs=attrs), path)
