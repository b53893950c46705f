"""Soft-label classifiers: sklearn conventions, the expansion identity, soft beats hard."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.special import softmax
from sklearn.base import clone
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import check_estimator

from emodist.data.labels import GEMS
from emodist.errors import DataError
from emodist.learn.imbalance import BalancedBaggingClassifier, PriorShiftClassifier
from emodist.learn.soft import (
    SoftLabelClassifier,
    SoftLogisticRegression,
    expand_soft,
    soft_targets,
)

# A bootstrapped forest is not weight/repetition-equivalent (scikit-learn
# exempts RandomForestClassifier itself from that check); nothing else is exempt.
_RF_WEIGHTS = {"check_sample_weight_equivalence_on_dense_data"}

ESTIMATORS = [
    (SoftLogisticRegression(), set()),
    (SoftLabelClassifier(), set()),
    (SoftLabelClassifier(RandomForestClassifier(n_estimators=5, random_state=0)), _RF_WEIGHTS),
    (PriorShiftClassifier(cv=3), set()),
    (PriorShiftClassifier(cv=3, method="per_class"), set()),
    (BalancedBaggingClassifier(n_estimators=5, random_state=0), set()),
]


@pytest.mark.parametrize("est,exempt", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_passes_sklearn_estimator_checks(est, exempt):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(est, on_fail=None)
    assert len(results) > 40
    failed = {r["check_name"] for r in results if r["status"] == "failed"}
    assert failed <= exempt


def soft_data(n, seed, d=20, k=4, votes=15):
    """Votes drawn from a softmax model: the hard label is a noisy argmax of them."""
    rng = np.random.default_rng(seed)
    W = np.random.default_rng(123).normal(size=(d, k)) * 0.35
    X = rng.normal(size=(n, d))
    P = softmax(X @ W, axis=1)
    V = np.array([rng.multinomial(votes, p) for p in P]) / votes
    y = np.argmax(V + 1e-9 * rng.random(V.shape), axis=1)
    return X, V, y, P


def test_expansion_is_soft_cross_entropy_for_logistic_regression():
    X, V, y, _ = soft_data(150, 0, d=5)
    direct = SoftLogisticRegression(C=0.5, standardize=False, tol=1e-10).fit(X, y, soft=V)
    expanded = SoftLabelClassifier(LogisticRegression(C=0.5, tol=1e-10, max_iter=5000)).fit(X, y, soft=V)
    np.testing.assert_allclose(direct.predict_proba(X), expanded.predict_proba(X), atol=1e-5)


def test_without_soft_targets_it_is_logistic_regression():
    X, _, y, _ = soft_data(150, 1, d=5)
    mine = SoftLogisticRegression(C=2.0, standardize=False, tol=1e-10).fit(X, y)
    ref = LogisticRegression(C=2.0, tol=1e-10, max_iter=5000).fit(X, y)
    np.testing.assert_allclose(mine.predict_proba(X), ref.predict_proba(X), atol=1e-5)
    np.testing.assert_array_equal(mine.classes_, ref.classes_)


def test_sample_weight_is_repetition():
    X, V, y, _ = soft_data(40, 2, d=3)
    w = np.arange(40) % 3
    rep = np.repeat(np.arange(40), w)
    a = SoftLogisticRegression(tol=1e-10).fit(X, y, soft=V, sample_weight=w)
    b = SoftLogisticRegression(tol=1e-10).fit(X[rep], y[rep], soft=V[rep])
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X), atol=1e-5)


@pytest.mark.parametrize("make", [
    lambda cl: SoftLogisticRegression(C=1.0, classes=cl),
    lambda cl: SoftLabelClassifier(LogisticRegression(C=1.0, max_iter=3000), classes=cl),
])
def test_soft_targets_beat_hard_labels(make):
    """Votes carry more than their argmax; the margin is well inside what was seen."""
    gains = []
    for seed in range(3):
        X, V, y, _ = soft_data(120, seed)
        Xt, _, _, Pt = soft_data(3000, 100 + seed)
        truth = Pt.argmax(axis=1)
        soft = make([0, 1, 2, 3]).fit(X, y, soft=V)
        hard = make([0, 1, 2, 3]).fit(X, y)
        gains.append(np.mean(soft.predict(Xt) == truth) - np.mean(hard.predict(Xt) == truth))
    assert np.mean(gains) > 0.05


def test_fit_and_predict_shapes_and_clone():
    X, V, y, _ = soft_data(80, 3, d=4)
    names = np.array(["w", "x", "y", "z"], dtype=object)
    for est in (SoftLogisticRegression(C=0.3, classes=list(names)),
                SoftLabelClassifier(RandomForestClassifier(
                    n_estimators=10, random_state=0), classes=list(names), min_share=0.05)):
        twin = clone(est)
        assert type(twin) is type(est) and twin.get_params().keys() == est.get_params().keys()
        assert twin.classes == est.classes and not hasattr(twin, "classes_")
        est.fit(X, names[y], soft=V)
        assert est.classes_.tolist() == names.tolist()
        P = est.predict_proba(X[:7])
        assert P.shape == (7, 4)
        np.testing.assert_allclose(P.sum(axis=1), 1.0)
        assert est.predict(X[:7]).shape == (7,)
        assert set(est.predict(X)) <= set(names)


def test_pipeline_routes_soft_targets_and_classes_must_fit():
    X, V, y, _ = soft_data(60, 4, d=4)
    pipe = Pipeline([("scale", StandardScaler()), ("model", SoftLogisticRegression())])
    pipe.fit(X, y, model__soft=V)
    assert pipe.predict_proba(X).shape == (60, 4)
    with pytest.raises(ValueError, match="classes"):
        SoftLogisticRegression(classes=["a", "b"]).fit(X, y, soft=V)
    with pytest.raises(ValueError):
        SoftLabelClassifier(KNeighborsClassifier()).fit(X, y, soft=V)


def test_expand_soft_and_soft_targets():
    X = np.arange(6.0).reshape(3, 2)
    Y = np.array([[1.0, 0.0], [0.25, 0.75], [0.0, 0.0]])
    Xr, c, w, rows = expand_soft(X, Y, sample_weight=np.array([1.0, 2.0, 1.0]))
    assert rows.tolist() == [0, 1, 1] and c.tolist() == [0, 0, 1]
    np.testing.assert_allclose(w, [1.0, 0.5, 1.5])
    np.testing.assert_array_equal(Xr, X[[0, 1, 1]])
    P = np.zeros((2, 9))
    P[0, GEMS.index("amazement")] = 0.5
    P[0, GEMS.index("calmness")] = 0.5
    P[1, GEMS.index("amazement")] = 1.0
    S = soft_targets(P, classes=["calmness", "power"])
    np.testing.assert_allclose(S, [[1.0, 0.0], [0.0, 0.0]])
    with pytest.raises(DataError):
        soft_targets(P, classes=["wonder"])


def grouped_noise(seed, n_groups=120, per_group=3, k=3, d=8):
    """Track-like groups: each group's segments share a feature offset and a random label."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_groups), per_group)
    offsets = rng.normal(size=(n_groups, d)) * 2
    X = offsets[groups] + 0.3 * rng.normal(size=(len(groups), d))
    y = rng.integers(0, k, n_groups)[groups]
    V = rng.dirichlet(np.ones(k), n_groups)[groups]
    return X, y, V, groups


@pytest.mark.parametrize("name,make,soft", [
    ("soft-lr", lambda: SoftLogisticRegression(C=1.0), True),
    ("soft-rf", lambda: SoftLabelClassifier(RandomForestClassifier(n_estimators=20, random_state=0)), True),
    ("prior-lr", lambda: PriorShiftClassifier(LogisticRegression(), cv=3), False),
    ("balanced-bagging", lambda: BalancedBaggingClassifier(n_estimators=10, random_state=0), False),
])
def test_shuffled_labels_stay_near_chance_with_grouped_folds(name, make, soft):
    from sklearn.metrics import balanced_accuracy_score

    X, y, V, groups = grouped_noise(0)
    pred = np.empty_like(y)
    cv = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=0)
    for tr, te in cv.split(X, y, groups):
        kw = {"soft": V[tr]} if soft else {}
        if name.startswith("prior"):
            kw["groups"] = groups[tr]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pred[te] = make().fit(X[tr], y[tr], **kw).predict(X[te])
    assert abs(balanced_accuracy_score(y, pred) - 1 / 3) < 0.12
