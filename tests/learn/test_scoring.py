"""Fold metrics and track-level aggregation of segment probabilities."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from emodist.learn import scoring as M
from emodist.learn.runs import oof_predict_proba
from emodist.learn.scoring import balanced_accuracy_index, headline_metrics, majority_vote


def test_fold_metrics_equal_sklearn():
    rng = np.random.default_rng(0)
    y = rng.choice(list("abcd"), 200)
    pred = np.where(rng.random(200) < 0.4, y, rng.choice(list("abcd"), 200))
    folds = rng.integers(0, 5, 200)
    out = headline_metrics(y, pred, folds)
    for name, fn in [("accuracy", accuracy_score), ("balanced_accuracy", balanced_accuracy_score),
                     ("macro_f1", lambda t, p: f1_score(t, p, average="macro", zero_division=0))]:
        per = [fn(y[folds == k], pred[folds == k]) for k in range(5)]
        assert out[name]["folds"] == per
        assert out[name]["mean"] == np.mean(per)
        assert out[name]["std"] == np.std(per)
        assert out[name]["pooled"] == fn(y, pred)


def test_balanced_accuracy_index_equals_sklearn():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 5, 300)
    y[y == 4] = 3  # a class that never occurs
    pred = rng.integers(0, 5, 300)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert np.isclose(balanced_accuracy_index(y, pred, 5), balanced_accuracy_score(y, pred))


def test_track_mean_proba_and_its_ties():
    classes = ["b", "a", "c"]
    proba = np.array([
        [0.9, 0.1, 0.0],  # track x: votes b, a, a -> vote "a"; mean favours b
        [0.3, 0.4, 0.3],
        [0.45, 0.55, 0.0],
        [0.5, 0.5, 0.0],  # track y: exact tie -> first column "b"
    ])
    groups = ["x", "x", "x", "y"]
    by_mean = M.track_mean_proba(proba, groups, classes)
    assert by_mean.index.tolist() == ["x", "y"]
    assert by_mean.tolist() == ["b", "b"]
    pred = np.asarray(classes)[proba.argmax(axis=1)]
    assert majority_vote(pred, groups, classes).tolist() == ["a", "b"]
    spread = M.spread_track_mean(proba, groups)
    np.testing.assert_allclose(spread[0], proba[:3].mean(axis=0))
    np.testing.assert_allclose(spread[3], proba[3])
    keys, y, f = M.track_truth(["p", "p", "p", "q"], [0, 0, 0, 1], groups)
    assert keys.tolist() == ["x", "y"] and y.tolist() == ["p", "q"] and f.tolist() == [0, 1]


def test_oof_predict_proba_aligns_columns():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(3)
    X = rng.normal(size=(60, 3))
    y = np.array(["u", "v", "w"] * 20)
    folds = np.arange(60) % 3
    P = oof_predict_proba(LogisticRegression(), X, y, folds, classes=["w", "u", "v", "z"])
    assert P.shape == (60, 4)
    np.testing.assert_allclose(P[:, :3].sum(axis=1), 1.0)
    assert (P[:, 3] == 0).all()
