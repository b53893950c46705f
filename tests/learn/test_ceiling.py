"""Split-half human ceiling on synthetic responses with known agreement, and on Emotify."""

from __future__ import annotations

import numpy as np
import pytest

from emodist.data.catalog import load_emotify
from emodist.data.labels import GEMS, dominant_emotion, listener_distribution
from emodist.errors import DataError
from emodist.learn.ceiling import emotify_ceiling, read_responses, split_half_ceiling
from emodist.learn.scoring import jensen_shannon


def identical_tracks(n_tracks=30, listeners=12, seed=0):
    """Every listener of a track ticks the same emotions (tracks differ)."""
    rng = np.random.default_rng(seed)
    ids, ticks = [], []
    for t in range(n_tracks):
        row = np.zeros(9)
        row[rng.choice(9, rng.integers(1, 4), replace=False)] = 1
        row[t % 9] = 1
        ids += [t] * listeners
        ticks += [row] * listeners
    return np.array(ids), np.array(ticks)


def random_tracks(n_tracks=300, listeners=40, seed=0, offset=0):
    """Each listener ticks one emotion uniformly at random: no shared signal."""
    rng = np.random.default_rng(seed)
    ids = np.repeat(np.arange(n_tracks) + offset, listeners)
    ticks = np.eye(9)[rng.integers(0, 9, len(ids))]
    return ids, ticks


@pytest.mark.parametrize("level", ["emotion", "factor"])
def test_identical_listeners_agree_perfectly(level):
    ids, ticks = identical_tracks()
    r = split_half_ceiling(ids, ticks, level=level, n_splits=20)
    assert r["agreement"]["value"] == 1.0
    assert r["half_vs_full"]["value"] == 1.0
    assert r["jsd"]["value"] == pytest.approx(0.0, abs=1e-12)
    assert r["kappa"]["value"] == pytest.approx(1.0)
    assert r["agreement"]["ci"] == [1.0, 1.0]


def test_random_listeners_agree_at_chance():
    ids, ticks = random_tracks()
    r = split_half_ceiling(ids, ticks, n_splits=50)
    assert abs(r["kappa"]["value"]) < 0.05
    assert r["agreement"]["value"] < 0.25
    f = split_half_ceiling(ids, ticks, level="factor", n_splits=50)
    assert abs(f["kappa"]["value"]) < 0.05


def test_mixture_agreement_is_the_weighted_mean():
    a_ids, a_ticks = identical_tracks(n_tracks=100, listeners=40)
    b_ids, b_ticks = random_tracks(n_tracks=100, listeners=40, offset=1000)
    rand = split_half_ceiling(b_ids, b_ticks, n_splits=50, seed=1)
    mixed = split_half_ceiling(np.concatenate([a_ids, b_ids]), np.vstack([a_ticks, b_ticks]),
                               n_splits=50, seed=1)
    expected = 0.5 * 1.0 + 0.5 * rand["agreement"]["value"]
    assert mixed["agreement"]["value"] == pytest.approx(expected, abs=0.03)
    lo, hi = mixed["agreement"]["ci"]
    assert lo <= mixed["agreement"]["value"] <= hi


def test_two_listeners_jsd_is_the_jsd_between_them_and_labels_follow_the_catalog():
    rng = np.random.default_rng(3)
    ids = np.repeat(np.arange(40), 2)
    ticks = (rng.random((80, 9)) < 0.25).astype(float)
    ticks[np.arange(80), rng.integers(0, 9, 80)] = 1
    r = split_half_ceiling(ids, ticks, n_splits=4)
    norm = ticks / ticks.sum(axis=1, keepdims=True)
    assert r["jsd"]["value"] == pytest.approx(np.mean(jensen_shannon(norm[0::2], norm[1::2])))
    for t in range(40):
        resp = ticks[ids == t]
        want = dominant_emotion(listener_distribution(resp)[None], resp.mean(axis=0)[None])[0]
        assert r["labels"][t] == want


def test_empty_responses_change_nothing_and_seeds_repeat():
    ids, ticks = random_tracks(n_tracks=60, listeners=11, seed=4)
    r1 = split_half_ceiling(ids, ticks, n_splits=30, seed=7)
    ids2 = np.concatenate([ids, np.arange(60)])
    ticks2 = np.vstack([ticks, np.zeros((60, 9))])
    r2 = split_half_ceiling(ids2, ticks2, n_splits=30, seed=7)
    for key in ("agreement", "jsd", "kappa"):
        assert r1[key] == r2[key]
    r3 = split_half_ceiling(ids, ticks, n_splits=30, seed=8)
    assert r3["agreement"]["value"] != r1["agreement"]["value"]
    lonely = split_half_ceiling(np.array([0, 0, 1]), np.eye(9)[[0, 1, 2]], n_splits=3)
    assert lonely["n_tracks"] == 1 and lonely["n_skipped"] == 1
    with pytest.raises(DataError):
        split_half_ceiling(ids, ticks, level="genre")


def test_on_the_shared_emotify_data(emotify_root):
    df = read_responses(emotify_root)
    catalog = load_emotify(str(emotify_root))
    with_audio = catalog.tracks.loc[catalog.tracks["has_audio"], "track_id"].astype(int).tolist()
    assert len(with_audio) == 100
    r = emotify_ceiling(df, tracks=with_audio, n_splits=200, seed=0)
    f = emotify_ceiling(df, tracks=with_audio, level="factor", n_splits=200, seed=0)
    # full-crowd labels are the catalog's; class sizes as the data README states
    labels = catalog.tracks.set_index("track_id")["label"]
    assert all(labels[str(t)] == lab for t, lab in r["labels"].items())
    assert r["chance"] == 1 / 8 and r["majority"] == pytest.approx(0.36)
    assert r["majority_class"] == "calmness"
    for res in (r, f):
        assert res["n_tracks"] == 100
        assert res["chance"] < res["agreement"]["value"] < 1
        lo, hi = res["agreement"]["ci"]
        assert lo < res["agreement"]["value"] < hi
        assert 0 < res["jsd"]["value"] < 0.5
        assert res["kappa_spearman_brown"] > res["kappa"]["value"] > 0
        assert res["half_vs_full"]["value"] > res["agreement"]["value"]
    assert f["agreement"]["value"] > r["agreement"]["value"]
    assert f["chance"] == pytest.approx(1 / 3)
    every = emotify_ceiling(df, n_splits=20)
    assert every["n_tracks"] == 400 and set(GEMS) >= set(every["labels"].values())
