"""Folds: grouped by the store's group (else the track), stratified, seeded."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.model_selection import StratifiedGroupKFold

from emodist.errors import EmodistError
from emodist.learn import evaluate as ev
from emodist.learn import folds as fo
from tests.stores import CLASSES, build, make_arrays


def test_make_folds_keeps_tracks_whole_and_is_seeded():
    a = make_arrays(n_tracks=30, n_segments=4)
    y, g = a["plan"]["label"].to_numpy(), a["plan"]["track_id"].to_numpy()
    f = fo.make_folds(y, g, 5, seed=1)
    assert set(f) == set(range(5))
    for track in np.unique(g):
        assert len(set(f[g == track])) == 1
    np.testing.assert_array_equal(f, fo.make_folds(y, g, 5, seed=1))
    assert not np.array_equal(f, fo.make_folds(y, g, 5, seed=2))
    # stratified: every fold holds every class
    for k in range(5):
        assert set(y[f == k]) == set(CLASSES)


def test_make_folds_rejects_too_few_groups():
    with pytest.raises(EmodistError, match="3 tracks cannot fill 5 folds; use 3 folds or fewer") as err:
        fo.make_folds(["a", "b", "a"], ["1", "2", "3"], 5, unit="tracks")
    assert err.value.param == "folds" and "--" not in err.value.message
    with pytest.raises(EmodistError, match="at least 2, got 1"):
        fo.make_folds(["a", "b"], ["1", "2"], 1)


def test_check_folds_catches_a_split_group():
    with pytest.raises(EmodistError, match="'t1' is in two folds"):
        fo.check_folds([0, 1, 1], ["t1", "t1", "t2"])


def test_fold_groups_fall_back_to_the_track():
    t = ["1", "2", "3"]
    assert fo.fold_groups(None, t)[1] == "track_id"
    assert fo.fold_groups(["", "", ""], t)[1] == "track_id"
    g, col = fo.fold_groups(["a", "", "a"], t)
    assert list(g) == ["a", "2", "a"] and col == "group, else track_id"
    assert fo.fold_groups(["a", "b", "a"], t)[1] == "group"


def test_make_folds_without_enough_groups_per_class_groups_only():
    y = np.array(["a", "a", "b", "b", "c", "c", "d", "d"])
    g = np.array(["1", "1", "2", "2", "3", "3", "4", "4"])
    f = fo.make_folds(y, g, 3, seed=0)
    assert set(f) == {0, 1, 2}
    fo.check_folds(f, g)
    assert "not stratified" in fo.describe_splitter(fo.fold_splitter(y, g, 3, 0))
    y[2:4] = "a"  # class a now has two tracks: two folds can be stratified
    assert fo.describe_splitter(fo.fold_splitter(y, g, 2, 0)).startswith("StratifiedGroupKFold")


def test_report_never_puts_a_track_in_two_folds():
    r = ev.run_evaluate(build(make_arrays(n_tracks=20, n_segments=3)), features="handcrafted",
                        classifiers=["logistic-regression"], folds=4, n_jobs=1)
    per_track = {}
    for t, f in zip(r["folds"]["track_id"], r["folds"]["fold"]):
        per_track.setdefault(t, set()).add(f)
    assert len(per_track) == 20 and all(len(v) == 1 for v in per_track.values())
    assert len(r["folds"]["segment_id"]) == 60
    assert r["settings"]["group_by"] == "group" and r["data"]["n_groups"] == 20


def test_groups_spanning_several_tracks_never_split():
    # 24 tracks in 8 groups (think: albums) of 3 tracks of one class each
    a = make_arrays(n_tracks=24, n_segments=2)
    tracks = a["plan"]["track_id"].astype(int)
    a["plan"]["group"] = [f"album{(t % 4) + 4 * (t // 12)}" for t in tracks]
    a["plan"].loc[tracks == 23, "group"] = ""  # no group: its own track
    r = ev.run_evaluate(build(a), features="handcrafted", classifiers=["logistic-regression"],
                        folds=3, n_jobs=1, seed=1)
    per_group, per_track = {}, {}
    for g, t, f in zip(r["folds"]["group"], r["folds"]["track_id"], r["folds"]["fold"]):
        per_group.setdefault(g, set()).add(f)
        per_track.setdefault(t, set()).add(f)
    assert all(len(v) == 1 for v in per_group.values())
    assert set(per_group) == {f"album{i}" for i in range(8)} | {"23"}
    assert r["settings"]["group_by"] == "group, else track_id"
    assert r["data"]["n_groups"] == 9 and r["data"]["n_tracks"] == 24
    assert "grouped by group (track where none is set)" in r["settings"]["cv"]
    # grouping by track alone would have split some of those groups
    by_track = fo.make_folds(np.array(r["folds"]["label"]), np.array(r["folds"]["track_id"]), 3, 1)
    spread = {}
    for g, f in zip(r["folds"]["group"], by_track):
        spread.setdefault(g, set()).add(f)
    assert any(len(v) > 1 for v in spread.values())


def test_a_store_path_is_accepted(tmp_path):
    from tests.stores import write

    path = tmp_path / "s.zarr"
    write(build(make_arrays(n_tracks=8, n_segments=1)), path)
    r = ev.run_evaluate(path, features="handcrafted", classifiers=["linear-svm"], folds=2, n_jobs=1)
    assert r["store"]["url"] == str(path) and r["data"]["n_segments"] == 8


def test_too_many_folds_for_the_groups_names_the_groups():
    a = make_arrays(n_tracks=12, n_segments=1)
    a["plan"]["group"] = [f"g{int(t) % 4}" for t in a["plan"]["track_id"]]
    with pytest.raises(EmodistError, match="4 groups cannot fill 5 folds"):
        ev.run_evaluate(build(a), features="handcrafted", classifiers=["linear-svm"], folds=5)


def test_a_leak_prone_grouping_scores_higher_than_the_honest_one():
    """Three files per recording, a strong per-recording signature and no class signal:
    grouping by file (the leak) lets a recording's other files into training and scores far
    above chance; grouping by recording (the manifest's group column) stays near chance."""
    import pandas as pd

    from tests.stores import GEMS, dataset

    rng = np.random.default_rng(0)
    n_rec, files, segs = 16, 3, 2
    rec = np.repeat(np.arange(n_rec), files * segs)
    file = np.repeat(np.arange(n_rec * files), segs)
    label_of = np.array(CLASSES)[rng.permutation(np.arange(n_rec) % len(CLASSES))]
    plan = pd.DataFrame({
        "segment_id": [f"{f}:{i % segs:03d}" for i, f in enumerate(file)],
        "track_id": file.astype(str), "label": label_of[rec],
        "segment_index": np.arange(len(file)) % segs})
    values = (8.0 * rng.normal(size=(n_rec, 10))[rec] + rng.normal(size=(len(rec), 10)))
    votes = np.zeros((len(rec), 9), np.float32)
    votes[np.arange(len(rec)), [GEMS.index(c) for c in label_of[rec]]] = 1.0
    scores = {}
    for name, group in (("honest", rec), ("leaky", file)):
        ds = dataset(plan.assign(group=group.astype(str)),
                     {"handcrafted": ([f"f{i}" for i in range(10)], values, np.ones(len(rec)))},
                     votes, votes)
        r = ev.run_evaluate(ds, features="handcrafted", classifiers=["fine-knn"], folds=4,
                            n_jobs=1, seed=0)
        scores[name] = r["results"][0]["segment"]["accuracy"]["mean"]
        assert r["data"]["n_groups"] == len(np.unique(group))
    chance = 1 / len(CLASSES)
    assert scores["leaky"] > scores["honest"] + 0.4, scores
    assert scores["honest"] < chance + 0.2, scores


@pytest.mark.parametrize("seed", range(40))
def test_the_fast_stratified_group_folds_are_scikit_learns(seed):
    rng = np.random.default_rng(seed)
    n_groups, n_folds, n_classes = int(rng.integers(5, 60)), int(rng.integers(2, 6)), int(rng.integers(2, 9))
    sizes = rng.integers(1, 6, n_groups) if seed % 3 else np.full(n_groups, 2)  # equal sizes: many ties
    g = np.repeat(np.arange(n_groups), sizes)
    y = rng.integers(0, n_classes, n_groups)[g] if seed % 2 else rng.integers(0, n_classes, len(g))
    y[:n_folds] = 0  # one class fills the folds (the stratified splitter's condition)
    order = rng.permutation(len(g))
    groups = np.array([f"t{i:03d}" for i in range(n_groups)], dtype=object)[g][order]
    labels = np.array([f"c{i}" for i in range(n_classes)], dtype=object)[y][order]
    expect = np.full(len(g), -1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        splits = StratifiedGroupKFold(n_folds, shuffle=True, random_state=seed).split(labels, labels, groups)
        for k, (_, test) in enumerate(splits):
            expect[test] = k
    assert np.array_equal(fo.stratified_group_folds(labels, groups, n_folds=n_folds, seed=seed), expect)

