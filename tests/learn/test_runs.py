"""The evaluation's fit schedule and the wide-input step: faster, and the same predictions.

Longest-first ordering (:mod:`emodist.learn.schedule`) must change nothing
but the order; the wide-input PCA (:mod:`emodist.learn.reduce`) must leave
narrow inputs untouched and equal scikit-learn's own PCA pipeline on wide
ones.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from emodist.learn import evaluate as ev
from emodist.learn import presets as clf
from emodist.learn import runs
from emodist.learn.estimators import MAX_COLUMNS, N_COMPONENTS, WideInputPCA, reduced_width
from emodist.learn.runs import fit_cost, in_task_order, longest_first
from tests.stores import DEEP, make_store

PRESETS = ["linear-svm", "medium-knn", "bagged-trees", "boosted-trees", "logistic-regression"]
REDUCED = [k for k, p in clf.PRESETS.items() if p.reduce]


def _synthetic(n_rows: int, n_columns: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.array(["a", "b", "c"])[np.arange(n_rows) % 3]
    X = rng.normal(size=(n_rows, n_columns))
    X[:, :5] += (np.arange(n_rows) % 3)[:, None] * 1.5
    return X, y


def test_longest_first_is_a_stable_permutation_undone_by_in_task_order():
    costs = [1.0, 5.0, 1.0, 3.0, 5.0]
    order = longest_first(costs)
    assert order == [1, 4, 3, 0, 2]
    ran = [f"task{i}" for i in order]
    assert in_task_order(order, ran) == [f"task{i}" for i in range(len(costs))]


def test_fit_cost_puts_wide_boosting_first_and_counts_the_reduction():
    wide = {k: fit_cost(k, 320, 2048) for k in clf.ALL_PRESETS}
    assert max(wide, key=wide.get) == "histogram-gradient-boosting"
    assert fit_cost("histogram-gradient-boosting", 320, 2048, reduce=True) < wide[
        "histogram-gradient-boosting"]
    assert fit_cost("linear-svm", 320, 131) < fit_cost("linear-svm", 320, 2048)
    assert fit_cost("soft-bagged-trees", 320, 131, beyond=True) > fit_cost("linear-svm", 320, 131)


def test_reduced_width_passes_narrow_inputs_and_caps_components():
    assert reduced_width(320, MAX_COLUMNS) == MAX_COLUMNS
    assert reduced_width(320, MAX_COLUMNS + 1) == N_COMPONENTS
    assert reduced_width(50, 2048) == 50


def test_only_the_reduced_presets_get_the_step():
    assert set(REDUCED) == {"boosted-trees", "histogram-gradient-boosting"}
    for key in clf.ALL_PRESETS + clf.BEYOND_PRESETS:
        names = [name for name, _ in clf.make_pipeline(key, 0).steps]
        assert names == (["scale", "reduce", "model"] if key in REDUCED else ["scale", "model"])


@pytest.mark.parametrize("key", REDUCED)
def test_narrow_inputs_predict_as_the_plain_scikit_learn_pipeline(key):
    X, y = _synthetic(90, 12)
    ours = clf.make_pipeline(key, 3).fit(X[:60], y[:60])
    plain = Pipeline([("scale", StandardScaler()), ("model", clf.get_preset(key).build(3))])
    plain.fit(X[:60], y[:60])
    np.testing.assert_array_equal(ours.predict(X[60:]), plain.predict(X[60:]))
    np.testing.assert_array_equal(ours.predict_proba(X[60:]), plain.predict_proba(X[60:]))


@pytest.mark.parametrize("key", REDUCED)
def test_wide_inputs_predict_as_scikit_learns_pca_pipeline(key):
    X, y = _synthetic(200, MAX_COLUMNS + 88)
    ours = clf.make_pipeline(key, 1).fit(X[:150], y[:150])
    assert ours.named_steps["reduce"].pca_.n_components_ == N_COMPONENTS
    ref = Pipeline([("scale", StandardScaler()), ("pca", PCA(N_COMPONENTS, svd_solver="full")),
                    ("model", clf.get_preset(key).build(1))]).fit(X[:150], y[:150])
    np.testing.assert_array_equal(ours.predict(X[150:]), ref.predict(X[150:]))
    np.testing.assert_array_equal(ours.predict_proba(X[150:]), ref.predict_proba(X[150:]))


def test_wide_input_pca_transform_is_the_identity_below_the_threshold():
    X, _ = _synthetic(30, 7)
    step = WideInputPCA().fit(X)
    assert step.pca_ is None and step.transform(X) is X


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("sched") / "s.zarr", n_tracks=24)


def _predictions(report) -> dict:
    return {(r["features"], r["classifier"], r["balance"]): r["predictions"]
            for r in report["results"]}


@pytest.mark.slow
def test_predictions_do_not_depend_on_the_order_or_the_processes(store, monkeypatch):
    kw = {"features": ["handcrafted", DEEP, f"handcrafted+{DEEP}"], "classifiers": PRESETS,
          "balance": "both", "seed": 4}
    first = ev.run_evaluate(store, n_jobs=1, **kw)
    monkeypatch.setattr(runs, "longest_first", lambda costs: list(range(len(costs)))[::-1])
    reversed_order = ev.run_evaluate(store, n_jobs=2, **kw)
    assert len(first["results"]) == 3 * (len(PRESETS) * 2 - 1)  # medium-knn has no weights
    assert _predictions(first) == _predictions(reversed_order)
