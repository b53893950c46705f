"""Prior-shift tuning (nested, never the test fold) and balanced bagging."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from emodist.learn.cv import oof_predict_proba
from emodist.learn.imbalance import (
    BalancedBaggingClassifier,
    PriorShiftClassifier,
    tune_offsets,
    tune_prior_power,
)

#: tag -> list of ("fit" | "predict", row ids) events recorded by SpyClassifier.
EVENTS: dict[str, list] = {}


class SpyClassifier(ClassifierMixin, BaseEstimator):
    """Logistic regression on columns 1: that records the row ids (column 0) it sees."""

    def __init__(self, tag="spy"):
        self.tag = tag

    def fit(self, X, y, sample_weight=None):
        EVENTS.setdefault(self.tag, []).append(("fit", X[:, 0].astype(int).copy()))
        self.model_ = LogisticRegression().fit(X[:, 1:], y)
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, X):
        EVENTS.setdefault(self.tag, []).append(("predict", X[:, 0].astype(int).copy()))
        return self.model_.predict_proba(X[:, 1:])

    def predict(self, X):
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


def imbalanced(n, seed, shares=(0.75, 0.17, 0.08)):
    rng = np.random.default_rng(seed)
    sizes = (np.array(shares) * n).astype(int)
    X = np.vstack([rng.normal(size=(m, 4)) + 1.5 * np.eye(4)[c] for c, m in enumerate(sizes)])
    y = np.repeat(np.array(["big", "mid", "small"]), sizes)
    return X, y


def with_ids(X, groups):
    ids = np.arange(len(X))
    return np.column_stack([ids, X]), ids


@pytest.mark.parametrize("method", ["prior_power", "per_class"])
def test_tuning_never_sees_the_test_fold_and_inner_folds_are_grouped(method):
    X, y = imbalanced(240, 0)
    groups = np.arange(len(y)) // 3  # three rows per "track"
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    X, y, groups = X[order], y[order], groups[order]
    Xi, ids = with_ids(X, groups)
    outer = GroupKFold(n_splits=4)
    for k, (tr, te) in enumerate(outer.split(Xi, y, groups)):
        tag = f"{method}-{k}"
        EVENTS.pop(tag, None)
        est = PriorShiftClassifier(SpyClassifier(tag), method=method, cv=3, random_state=0)
        est.fit(Xi[tr], y[tr], groups=groups[tr])
        events = EVENTS[tag]
        test_ids = set(ids[te])
        fits = [rows for kind, rows in events if kind == "fit"]
        assert len(fits) == 4  # three inner fits and the refit
        for kind, rows in events:
            assert not (set(rows) & test_ids), f"{kind} saw test-fold rows"
        # inner folds: predicted rows' groups never among the groups fit on
        inner = [(events[i][1], events[i + 1][1]) for i in range(0, 6, 2)]
        for fit_rows, pred_rows in inner:
            assert not set(groups[fit_rows]) & set(groups[pred_rows])
        assert set(np.concatenate([p for _, p in inner])) == set(ids[tr])
        assert set(fits[-1]) == set(ids[tr])


def test_tuning_inside_a_pipeline_under_outer_folds():
    X, y = imbalanced(180, 1)
    groups = np.arange(len(y)) // 2
    Xi, _ids = with_ids(X, groups)
    folds = groups % 3
    EVENTS.pop("pipe", None)
    pipe = Pipeline([("keep", FunctionTransformer()),
                     ("model", PriorShiftClassifier(SpyClassifier("pipe"), cv=3))])
    P = oof_predict_proba(pipe, Xi, y, folds, groups_param="model__groups", groups=groups)
    assert P.shape == (len(y), 3)
    fits = [rows for kind, rows in EVENTS["pipe"] if kind == "fit"]
    assert len(fits) == 3 * 4
    for k in range(3):  # each outer fold's 4 fits only saw the other folds
        for rows in fits[4 * k: 4 * k + 4]:
            assert (folds[rows] != k).all()


def test_prior_shift_raises_balanced_accuracy_on_imbalanced_data():
    gains = []
    for seed in range(3):
        X, y = imbalanced(300, seed)
        Xt, yt = imbalanced(6000, 50 + seed)
        base = LogisticRegression().fit(X, y)
        tuned = PriorShiftClassifier(LogisticRegression(), random_state=seed).fit(X, y)
        gains.append(balanced_accuracy_score(yt, tuned.predict(Xt))
                     - balanced_accuracy_score(yt, base.predict(Xt)))
        assert tuned.inner_score_ >= tuned.inner_score_untuned_
        np.testing.assert_allclose(tuned.predict_proba(Xt[:5]).sum(axis=1), 1.0)
    assert np.mean(gains) > 0.04


def test_tune_offsets_fixes_a_shifted_minority_and_leaves_perfect_scores():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], [90, 10])
    L = np.log(np.column_stack([np.full(100, 0.6), np.full(100, 0.4)]))
    L[y == 1, 1] += 0.3  # the minority is ranked higher, never above the majority
    L[:, 0] += 0.01 * rng.random(100)
    b, score = tune_offsets(L, y)
    assert score == 1.0 and b[1] > b[0]
    _b2, tau, s2 = tune_prior_power(L, y)
    assert s2 > 0.5 and tau > 0
    perfect = np.log(np.eye(2)[y] * 0.98 + 0.01)
    b3, s3 = tune_offsets(perfect, y)
    assert s3 == 1.0 and np.allclose(b3, 0)


def test_balanced_bags_are_balanced_and_deterministic():
    X, y = imbalanced(200, 2)
    n_min = min(np.sum(y == c) for c in np.unique(y))
    for replacement in (False, True):
        a = BalancedBaggingClassifier(n_estimators=7, replacement=replacement, random_state=3).fit(X, y)
        for bag in a.bags_:
            counts = {c: int(np.sum(y[bag] == c)) for c in a.classes_}
            assert set(counts.values()) == {n_min}
            if not replacement:
                assert len(np.unique(bag)) == len(bag)
        b = clone(a).fit(X, y)
        np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
        seeds = {m.random_state for m in a.estimators_}
        assert len(seeds) == 7
    c = BalancedBaggingClassifier(n_estimators=7, random_state=4).fit(X, y)
    assert not np.array_equal(c.predict_proba(X), a.predict_proba(X))
    lr = BalancedBaggingClassifier(LogisticRegression(), n_estimators=3, random_state=0).fit(X, y)
    assert lr.predict_proba(X).shape == (len(y), 3)


def test_balanced_bagging_recalls_the_small_class_better_than_one_tree():
    from sklearn.tree import DecisionTreeClassifier

    X, y = imbalanced(400, 5)
    Xt, yt = imbalanced(4000, 6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tree = DecisionTreeClassifier(random_state=0).fit(X, y)
        bag = BalancedBaggingClassifier(n_estimators=50, random_state=0).fit(X, y)
    small = yt == "small"
    assert np.mean(bag.predict(Xt)[small] == "small") > np.mean(tree.predict(Xt)[small] == "small") + 0.1
