"""Generated feature stores in the store layout, built directly with xarray.

:func:`make_arrays` draws ``n_tracks`` tracks of ``n_segments`` segments, four
classes, handcrafted features whose first columns carry the class (scaled by
``separation``) plus a strong per-track offset shared by a track's segments
(so that a cross-validation that let a track into both train and test could
recognise tracks), random deep features, and vote profiles.  :func:`build`
turns them into a Dataset in the layout the evaluation reads:

* dimension ``segment`` indexed by the segment ids (``"12:001"``), with the
  coordinates ``track_id``, ``segment_index``, ``start_s``, ``duration_s``,
  ``label``, ``group``, ``genre``, ``path``;
* per feature group ``NAME``: ``NAME`` (segment, ``NAME_feature``) float32,
  the names in ``NAME_feature``, and ``NAME_status`` (segment,) int8;
* ``attrs["feature_groups"]`` (``NAME -> {"version", "width"}``),
  ``votes`` / ``votes_mean`` over ``emotion``, ``label_rule``, ``spec``,
  ``failures``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

GEMS = ("amazement", "solemnity", "tenderness", "nostalgia", "calmness", "power",
        "joyful_activation", "tension", "sadness")
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


def _strings(values) -> np.ndarray:
    return np.array(["" if pd.isna(v) else str(v) for v in values], dtype=object)


def dataset(plan: pd.DataFrame, groups: dict, votes=None, votes_mean=None,
            attrs: dict | None = None) -> xr.Dataset:
    """A store Dataset from a segment plan and feature groups.

    Parameters
    ----------
    plan : pandas.DataFrame
        One row per segment: ``segment_id``, ``track_id``, ``label`` and
        optionally the other segment coordinates.
    groups : dict
        ``NAME -> (feature names, values (n, width), status (n,))``.
    votes, votes_mean : numpy.ndarray, optional
        ``(n, 9)`` vote profiles.
    attrs : dict, optional
        Extra store attributes.
    """
    n = len(plan)
    coords = {"segment": ("segment", _strings(plan["segment_id"]))}
    for name in ("track_id", "label", "group", "genre", "path"):
        coords[name] = ("segment", _strings(plan[name]) if name in plan else np.full(n, "", object))
    coords["segment_index"] = ("segment", np.asarray(plan.get("segment_index", np.zeros(n)), np.int32))
    for name in ("start_s", "duration_s"):
        coords[name] = ("segment", np.asarray(plan.get(name, np.zeros(n)), np.float64))
    data_vars, described = {}, {}
    for name, (names, values, status) in groups.items():
        coords[f"{name}_feature"] = (f"{name}_feature", np.array(list(names), dtype=object))
        data_vars[name] = (("segment", f"{name}_feature"), np.asarray(values, np.float32))
        data_vars[f"{name}_status"] = ("segment", np.asarray(status, np.int8))
        described[name] = {"version": "1", "width": len(names)}
    if votes is not None:
        coords["emotion"] = ("emotion", np.array(GEMS, dtype=object))
        data_vars["votes"] = (("segment", "emotion"), np.asarray(votes, np.float32))
        data_vars["votes_mean"] = (("segment", "emotion"), np.asarray(votes_mean, np.float32))
    base = {"feature_groups": described, "label_rule": "listener",
            "spec": {"segment_seconds": 15.0, "label_rule": "listener"}, "failures": [],
            "dataset": "generated test store"}
    return xr.Dataset(data_vars, coords=coords, attrs={**base, **(attrs or {})})


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


def write(ds: xr.Dataset, path, **kw) -> str:
    """Write a store Dataset to ``path`` (Zarr v3, consolidated); returns the path."""
    ds.to_zarr(str(path), zarr_format=3, consolidated=True, mode="w", **kw)
    return str(path)


def make_store(path, deep: bool = True, attrs: dict | None = None, **kw) -> str:
    """Write a generated store to ``path``; returns the path."""
    return write(build(make_arrays(**kw), deep=deep, attrs=attrs), path)
