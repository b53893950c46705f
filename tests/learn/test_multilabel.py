"""Multi-label tags (emodist.learn.multilabel): tags from votes, in-fold tuning, AUC scores."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from emodist.errors import EmodistError
from emodist.learn.folds import make_folds
from emodist.learn.multilabel import (
    MULTILABEL_PRESETS,
    cross_val_multilabel,
    evaluate_multilabel,
    keep_tags,
    threshold_tags,
    top_k_tags,
)

TAGS = ["a", "b", "c", "d", "e"]


def _data(n_tracks=40, per_track=2, seed=0, track_offset=3.0, signal=True):
    """Five tags, the top two of a latent share profile; strong per-track offsets in X."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_tracks).astype(str), per_track)
    latent = rng.normal(size=(n_tracks, 5))
    T = np.repeat(top_k_tags(latent, k=2), per_track, axis=0)
    X = np.repeat(track_offset * rng.normal(size=(n_tracks, 8)), per_track, axis=0)
    X = X + 0.3 * rng.normal(size=X.shape)
    if signal:
        X[:, :5] = 3.0 * np.repeat(latent, per_track, axis=0) + 0.3 * rng.normal(size=(len(X), 5))
    folds = make_folds(np.zeros(len(groups)), groups, 5, seed=0)
    return X, T, groups, folds


def test_top_k_and_threshold_tags_by_hand():
    shares = [[0.1, 0.4, 0.2, 0.2, 0.1], [0.0, 0.0, 0.0, 0.0, 0.0], [0.5, 0.1, 0.1, 0.2, 0.1]]
    # third row: 0.5, 0.2, then a three-way tie at 0.1 goes to the earliest column
    assert top_k_tags(shares, k=3).tolist() == [[0, 1, 1, 1, 0], [0, 0, 0, 0, 0], [1, 1, 0, 1, 0]]
    assert threshold_tags(shares, 0.2).tolist() == [[0, 1, 1, 1, 0], [0, 0, 0, 0, 0], [1, 0, 0, 1, 0]]
    with pytest.raises(EmodistError, match="1 <= k <= 5"):
        top_k_tags(shares, k=6)


def test_tags_with_too_few_tracks_are_dropped_and_reported():
    T = np.array([[1, 0, 1]] * 4 + [[0, 1, 1]] * 2 + [[0, 0, 1]] * 2)  # tracks of 2 rows
    tracks = np.repeat(["t1", "t2", "t3", "t4"], 2)
    keep, dropped = keep_tags(T, tracks, ["x", "y", "z"], min_tracks=1)
    assert keep.tolist() == [True, True, False]
    assert dropped == {"z": {"positive_tracks": 4, "negative_tracks": 0}}
    keep, dropped = keep_tags(T, tracks, ["x", "y", "z"], min_tracks=2)
    assert keep.tolist() == [True, False, False]
    assert dropped["y"] == {"positive_tracks": 1, "negative_tracks": 3}


def test_scores_equal_sklearn_on_the_same_predictions():
    X, T, groups, folds = _data()
    report = evaluate_multilabel(X, T, names=TAGS, groups=groups, folds=folds, min_tracks=3)
    res = report["results"][0]
    S, m = res["scores"], res["metrics"]["segment"]
    per_fold = {"roc_auc_macro": [], "roc_auc_micro": [], "pr_auc_macro": [], "pr_auc_micro": []}
    for k in range(5):
        t, s = T[folds == k], S[folds == k]
        ok = (t.sum(axis=0) > 0) & (t.sum(axis=0) < len(t))
        per_fold["roc_auc_macro"].append(roc_auc_score(t[:, ok], s[:, ok], average="macro"))
        per_fold["roc_auc_micro"].append(roc_auc_score(t, s, average="micro"))
        per_fold["pr_auc_macro"].append(average_precision_score(t[:, ok], s[:, ok], average="macro"))
        per_fold["pr_auc_micro"].append(average_precision_score(t, s, average="micro"))
    for metric, values in per_fold.items():
        assert m[metric]["mean"] == pytest.approx(np.mean(values))
        assert m[metric]["std"] == pytest.approx(np.std(values))
    assert m["roc_auc_micro"]["pooled"] == pytest.approx(roc_auc_score(T, S, average="micro"))
    for j, row in enumerate(m["per_tag"]):
        assert row["tag"] == TAGS[j]
        assert row["roc_auc"] == pytest.approx(roc_auc_score(T[:, j], S[:, j]))
        assert row["pr_auc"] == pytest.approx(average_precision_score(T[:, j], S[:, j]))
    assert m["roc_auc_macro"]["mean"] > 0.85
    # Track level: tracks' mean scores, as computed here.
    tracks, inv = np.unique(groups, return_inverse=True)
    St = np.array([S[inv == i].mean(axis=0) for i in range(len(tracks))])
    Tt = np.array([T[inv == i][0] for i in range(len(tracks))])
    assert res["metrics"]["track"]["roc_auc_micro"]["pooled"] == pytest.approx(
        roc_auc_score(Tt, St, average="micro"))


def test_shuffled_tags_stay_at_chance_under_grouped_folds():
    X, T, groups, folds = _data()
    rng = np.random.default_rng(3)
    shuffled = np.repeat(T[::2][rng.permutation(40)], 2, axis=0)  # tracks' tags swapped
    report = evaluate_multilabel(X, shuffled, names=TAGS, groups=groups, folds=folds, min_tracks=3)
    auc = report["results"][0]["metrics"]["segment"]["roc_auc_macro"]
    assert abs(auc["pooled"] - 0.5) < 0.12
    assert abs(auc["mean"] - 0.5) < 0.12


def test_training_share_baseline_is_at_chance():
    X, T, groups, folds = _data()
    base = evaluate_multilabel(X, T, names=TAGS, groups=groups, folds=folds, min_tracks=3)["baseline"]
    assert base["segment"]["roc_auc_macro"]["mean"] == pytest.approx(0.5)
    assert base["segment"]["pr_auc_macro"]["mean"] == pytest.approx(0.4, abs=0.15)


@pytest.mark.parametrize("key", list(MULTILABEL_PRESETS))
def test_every_preset_learns_the_tags_with_an_in_fold_choice(key):
    X, T, groups, folds = _data(n_tracks=25, track_offset=0.5)
    S, chosen = cross_val_multilabel(X, T, groups, folds, preset=key, inner_folds=2)
    assert S.shape == T.shape and np.isfinite(S).all()
    assert roc_auc_score(T, S, average="macro") > 0.75
    grid = MULTILABEL_PRESETS[key].grid
    assert len(chosen) == 5 and all(set(c) == set(grid) for c in chosen)


def test_no_scorable_tag_is_one_line():
    X, T, groups, folds = _data(n_tracks=10)
    with pytest.raises(EmodistError, match="no tag has 50 positive") as err:
        evaluate_multilabel(X, T, names=TAGS, groups=groups, folds=folds, min_tracks=50)
    assert err.value.param == "min_tracks"
