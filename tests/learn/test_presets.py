"""Classifier presets (:mod:`emodist.learn.presets`), the custom estimators
(:mod:`emodist.learn.estimators`) and the distribution output."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.ensemble import AdaBoostClassifier
from sklearn.metrics import balanced_accuracy_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier
from threadpoolctl import threadpool_limits

from emodist.errors import EmodistError
from emodist.learn import estimators as est
from emodist.learn import presets as clf
from emodist.learn.runs import fit_predict_distribution
from emodist.learn.targets import normalise_rows

MATLAB_NAMES = {
    "Linear SVM", "Quadratic SVM", "Cubic SVM", "Fine Gaussian SVM", "Medium Gaussian SVM",
    "Coarse Gaussian SVM", "Fine KNN", "Medium KNN", "Coarse KNN", "Cosine KNN", "Cubic KNN",
    "Weighted KNN", "Bagged Trees", "Boosted Trees", "RUSBoosted Trees", "Subspace Discriminant",
    "Subspace KNN",
}


def blobs(n_per_class=(20, 20, 20), dim=6, sep=4.0, seed=0):
    rng = np.random.default_rng(seed)
    X, y = [], []
    for c, n in enumerate(n_per_class):
        centre = np.zeros(dim)
        centre[c % dim] = sep
        X.append(rng.normal(size=(n, dim)) + centre)
        y += [f"class{c}"] * n
    return np.vstack(X), np.array(y, dtype=object)


def test_presets_cover_the_classification_learner_families():
    names = {p.name for p in clf.PRESETS.values()}
    assert MATLAB_NAMES <= names
    assert {"Logistic Regression", "Histogram Gradient Boosting"} <= names
    assert all(p.key == clf._key(p.name) for p in clf.PRESETS.values())


@pytest.mark.parametrize("key", list(clf.PRESETS))
def test_every_preset_learns_separable_blobs(key):
    X, y = blobs((150, 150, 150))
    model = clf.make_pipeline(key, seed=0)
    assert isinstance(model, Pipeline) and isinstance(model.steps[0][1], StandardScaler)
    with threadpool_limits(1):  # as the evaluation fits run
        model.fit(X[::2], y[::2])
    assert balanced_accuracy_score(y[1::2], model.predict(X[1::2])) > 0.8


def test_get_preset_accepts_names_and_keys():
    assert clf.get_preset("Bagged Trees").key == "bagged-trees"
    assert clf.get_preset("cubic_svm").name == "Cubic SVM"
    with pytest.raises(EmodistError, match="unknown classifier 'tree'; choose from linear-svm") as err:
        clf.get_preset("tree")
    assert err.value.param == "classifiers" and "--" not in err.value.message


def test_resolve_presets_shorthands_and_duplicates():
    assert [p.key for p in clf.resolve_presets(["all"])] == list(clf.ALL_PRESETS)
    both = [p.key for p in clf.resolve_presets(["all", "beyond"])]
    assert both == list(clf.PRESETS) == list(clf.ALL_PRESETS) + list(clf.BEYOND_PRESETS)
    quick = clf.resolve_presets("quick")
    assert [p.key for p in quick] == list(clf.QUICK_PRESETS)
    keys = [p.key for p in clf.resolve_presets(["Fine KNN", "fine-knn", "linear-svm"])]
    assert keys == ["fine-knn", "linear-svm"]


def test_gaussian_kernel_scale_follows_matlab():
    X, y = blobs(dim=8)
    for factor in (0.25, 1.0, 4.0):
        ours = est.ScaledGaussianSVC(scale_factor=factor).fit(X, y)
        ref = SVC(kernel="rbf", gamma=1.0 / (factor**2 * X.shape[1])).fit(X, y)
        np.testing.assert_allclose(ours.decision_function(X), ref.decision_function(X))
    fine, coarse = (est.ScaledGaussianSVC(scale_factor=f).fit(X, y) for f in (0.25, 4.0))
    assert fine.svc_.gamma == pytest.approx(16 / 8) and coarse.svc_.gamma == pytest.approx(1 / 128)


def test_clipped_knn_uses_at_most_n_training_samples():
    X, y = blobs((5, 5, 5))
    knn = est.ClippedKNN(n_neighbors=100).fit(X, y)
    ref = KNeighborsClassifier(n_neighbors=15).fit(X, y)
    np.testing.assert_array_equal(knn.predict(X), ref.predict(X))
    np.testing.assert_allclose(knn.predict_proba(X), ref.predict_proba(X))
    assert knn.n_neighbors == 100 and knn.n_neighbors_used_ == 15
    assert clone(knn).get_params()["n_neighbors"] == 100


def test_squared_inverse_weights():
    np.testing.assert_allclose(est.squared_inverse(np.array([1.0, 2.0, 0.5])), [1.0, 0.25, 4.0])
    assert np.isfinite(est.squared_inverse(np.array([0.0]))).all()


def test_rusboost_balances_an_imbalanced_problem():
    X, y = blobs((120, 12, 12), sep=2.0, seed=1)
    rus = est.RUSBoostClassifier(n_estimators=30, random_state=0).fit(X, y)
    again = est.RUSBoostClassifier(n_estimators=30, random_state=0).fit(X, y)
    Xt, yt = blobs((120, 12, 12), sep=2.0, seed=2)
    np.testing.assert_array_equal(rus.predict(Xt), again.predict(Xt))
    assert list(rus.classes_) == ["class0", "class1", "class2"]
    assert 1 <= len(rus.estimators_) <= 30
    minority = yt != "class0"
    recall_rus = (rus.predict(Xt)[minority] == yt[minority]).mean()
    plain = AdaBoostClassifier(DecisionTreeClassifier(max_leaf_nodes=21), n_estimators=30,
                               learning_rate=0.1, random_state=0).fit(X, y)
    recall_plain = (plain.predict(Xt)[minority] == yt[minority]).mean()
    assert recall_rus >= recall_plain
    assert balanced_accuracy_score(yt, rus.predict(Xt)) > 0.7


def test_weight_support_is_reported_per_preset():
    assert clf.supports_weights(clf.get_preset("linear-svm"))
    assert clf.supports_weights(clf.get_preset("bagged-trees"))
    assert clf.supports_weights(clf.get_preset("rusboosted-trees"))
    assert not clf.supports_weights(clf.get_preset("weighted-knn"))
    assert not clf.supports_weights(clf.get_preset("subspace-discriminant"))
    rows = clf.describe_presets()
    assert [r["key"] for r in rows] == list(clf.PRESETS)
    assert rows[0]["params"]["kernel"] == "linear"


def test_normalise_rows():
    out = normalise_rows([[1.0, -1.0, 3.0], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(out, [[0.25, 0.0, 0.75], [1 / 3, 1 / 3, 1 / 3]])


@pytest.mark.parametrize("key", list(clf.DISTRIBUTION_PRESETS))
def test_distribution_presets_predict_distributions(key):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 5))
    logits = np.column_stack([X[:, 0], -X[:, 0], np.zeros(80)])
    P = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    folds = np.repeat([0, 1], [60, 20])
    pred = fit_predict_distribution(X, P, folds, 1, key, 0, tracks=np.arange(80) // 2,
                                    groups=np.arange(80) // 2)
    assert pred.shape == (20, 3) and (pred >= 0).all()
    np.testing.assert_allclose(pred.sum(axis=1), 1.0)
    if clf.DISTRIBUTION_PRESETS[key].track_mean:  # both segments of a test track alike
        np.testing.assert_allclose(pred[::2], pred[1::2])
    assert (np.argmax(pred, axis=1) == np.argmax(P[60:], axis=1)).mean() > 0.7
    with pytest.raises(EmodistError, match="unknown distribution model"):
        clf.resolve_distribution_presets(["bagged-trees"])
