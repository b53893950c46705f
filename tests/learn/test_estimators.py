"""emodist's estimators: scikit-learn's checks, soft labels (the expansion identity, soft beats
hard), prior shift and balanced bagging (the tuning never sees the test fold)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.special import softmax
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from emodist.data.labels import GEMS
from emodist.errors import DataError
from emodist.learn import estimators as E
from emodist.learn.estimators import (
    BalancedBaggingClassifier,
    PriorShiftClassifier,
    SoftLabelClassifier,
    SoftLogisticRegression,
    expand_soft,
    tune_offsets,
    tune_prior_power,
)
from emodist.learn.runs import oof_predict_proba
from emodist.learn.targets import soft_targets

#: Every emodist estimator, as scikit-learn's checks run it (small ensembles, few inner folds).
ESTIMATORS = [
    E.ScaledGaussianSVC(),
    E.ClippedKNN(),
    E.RUSBoostClassifier(n_estimators=5, random_state=0),
    E.WideInputPCA(),
    E.SoftLogisticRegression(),
    E.SoftLabelClassifier(),
    E.SoftLabelClassifier(RandomForestClassifier(n_estimators=5, random_state=0)),
    E.InFoldSoftLogisticRegression(Cs=(0.1, 1.0), cv=3),
    E.PriorShiftClassifier(cv=3),
    E.PriorShiftClassifier(cv=3, method="per_class"),
    E.BalancedBaggingClassifier(n_estimators=5, random_state=0),
]

_WEIGHTS = "check_sample_weight_equivalence_on_dense_data"


def expected_failures(estimator) -> dict[str, str]:
    """The checks an estimator is known to fail, and why; any other failure fails the tE."""
    if isinstance(estimator, E.ScaledGaussianSVC):
        # An SVM's sample weight rescales C per sample; scikit-learn exempts SVC itself.
        return {_WEIGHTS: "sample_weight is not equivalent to repeating samples (as SVC)"}
    if isinstance(estimator, E.RUSBoostClassifier):
        # Each round under-samples rows at random: a repeated row changes the draws.
        return {_WEIGHTS: "random under-sampling draws rows, not weights"}
    if isinstance(estimator, E.SoftLabelClassifier) and estimator.estimator is not None:
        # A bootstrapped forest is not weight/repetition-equivalent (scikit-learn exempts
        # RandomForestClassifier itself from this check).
        return {_WEIGHTS: "a bootstrapped forest (as RandomForestClassifier)"}
    return {}


def test_every_estimator_is_checked():
    classes = {getattr(E, name) for name in E.__all__ if isinstance(getattr(E, name), type)}
    estimators = {c for c in classes if issubclass(c, BaseEstimator)}
    assert len(estimators) == 9
    assert estimators == {type(e) for e in ESTIMATORS}


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failures, xfail_strict=True)
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check(estimator)


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
