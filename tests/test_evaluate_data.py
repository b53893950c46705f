"""Generated feature stores for the evaluation tests (and tests of the generator).

:func:`make_store` writes a real Zarr v3 store in the layout of
:mod:`emodist.store.layout`: ``n_tracks`` tracks of ``n_segments`` segments, four
classes, handcrafted features whose first columns carry the class (scaled by
``separation``) plus a strong per-track offset shared by a track's segments
(so that a cross-validation that let a track into both train and test could
recognise tracks), random deep features, and vote profiles.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from emodist.store import layout as schema

CLASSES = ("calmness", "joyful_activation", "tension", "sadness")
N_HC = 10


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
        profile[schema.GEMS.index(CLASSES[label_class[t]])] += 0.6
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


def build(arrays: dict, deep: bool = True, attrs: dict | None = None) -> xr.Dataset:
    """In-memory store Dataset of :func:`make_arrays` output."""
    return schema.build_dataset(
        arrays["plan"], hc_names(), arrays["deep"].shape[1] if deep else None,
        handcrafted=arrays["handcrafted"], deep=arrays["deep"] if deep else None,
        status=arrays["status"], votes=arrays["votes"], votes_mean=arrays["votes_mean"],
        attrs={"label_rule": "listener", "dataset": "generated test store", **(attrs or {})},
    )


def make_store(path, deep: bool = True, attrs: dict | None = None, **kw) -> str:
    """Write a generated store to ``path`` (Zarr v3, consolidated); returns the path."""
    build(make_arrays(**kw), deep=deep, attrs=attrs).to_zarr(
        str(path), zarr_format=3, consolidated=True, mode="w"
    )
    return str(path)


def test_generated_store_layout(tmp_path):
    from emodist.store.zarrio import open_store

    ds = open_store(make_store(tmp_path / "s.zarr", n_tracks=8, n_segments=2))
    assert ds.sizes["segment"] == 16
    assert list(ds["handcrafted_feature"].values) == hc_names()
    assert ds["deep"].shape == (16, 6)
    # the segments of one track share label and votes
    labels = pd.Series(ds["label"].values).groupby(ds["track_id"].values).nunique()
    assert (labels == 1).all()
    np.testing.assert_allclose(ds["votes"].values.sum(axis=1), 1.0, rtol=1e-5)


def test_shuffled_labels_keep_class_sizes():
    a = make_arrays(n_tracks=20, shuffle_labels=False)
    b = make_arrays(n_tracks=20, shuffle_labels=True)
    assert sorted(a["plan"]["label"]) == sorted(b["plan"]["label"])
    assert (a["plan"]["label"] != b["plan"]["label"]).any()
