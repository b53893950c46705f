"""Grouped cross-validation driver: metrics, the experiment, leakage guards, reproducibility.

Feature sets and data are tested in ``test_evaluate_features.py``, folds in
``test_evaluate_folds.py``.
"""

from __future__ import annotations

import hashlib
import json
import logging

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score
from sklearn.model_selection import KFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from emodist.errors import EmodistError
from emodist.learn import evaluate as ev
from emodist.learn import runs, scoring
from emodist.learn.data import load_data, open_dataset
from emodist.runtime.executor import run_all
from tests.stores import DEEP, build, make_arrays, make_store

FAST = ["logistic-regression", "linear-svm", "medium-knn", "bagged-trees"]


@pytest.fixture(scope="module")
def separable_report(separable, tmp_path_factory):
    return ev.run_evaluate(separable, features=["handcrafted", DEEP], classifiers=FAST,
                           folds=5, seed=0, n_jobs=1)


# ---------------------------------------------------------------- metrics


def test_confusion_is_row_normalised_with_tpr_fnr():
    c = scoring.confusion(["a", "a", "a", "a", "b", "b"], ["a", "a", "a", "b", "b", "a"], ["a", "b", "c"])
    assert c["counts"] == [[3, 1, 0], [1, 1, 0], [0, 0, 0]]
    np.testing.assert_allclose(c["percent"][0], [75, 25, 0])
    np.testing.assert_allclose(c["tpr"], [75, 50, 0])
    np.testing.assert_allclose(c["fnr"], [25, 50, 0])


def test_majority_vote_breaks_ties_by_class_order():
    votes = scoring.majority_vote(["b", "a", "c", "c", "a"], ["t1", "t1", "t2", "t2", "t2"], ["a", "b", "c"])
    assert votes.to_dict() == {"t1": "a", "t2": "c"}


def test_baseline_rates():
    r = scoring.baseline_rates(["a", "a", "a", "b"], ["a", "b"])
    assert r == {"chance": 0.5, "majority": 0.75, "majority_class": "a"}


# ---------------------------------------------------------------- the experiment


def test_separable_data_beats_chance_widely(separable_report):
    r = separable_report
    assert r["data"]["classes"] == ["calmness", "joyful_activation", "tension", "sadness"]
    assert r["baselines"]["segment"]["chance"] == 0.25
    best = r["results"][0]
    assert best["features"] == "handcrafted"
    assert best["segment"]["accuracy"]["mean"] > 0.75
    assert best["track"]["accuracy"]["mean"] > 0.75
    # random deep features carry nothing
    deep = [x for x in r["results"] if x["features"] == DEEP]
    assert max(x["segment"]["accuracy"]["mean"] for x in deep) < 0.5
    accs = [x["segment"]["accuracy"]["mean"] for x in r["results"]]
    assert accs == sorted(accs, reverse=True)


def test_shuffled_labels_stay_near_chance(shuffled):
    r = ev.run_evaluate(shuffled, features="handcrafted", classifiers=FAST + ["fine-knn"], n_jobs=1)
    best = max(x["segment"]["accuracy"]["mean"] for x in r["results"])
    assert best < 0.42
    # the same preset on folds that split tracks is fooled by the per-track
    # offsets: this is the leakage the grouped folds prevent
    data = load_data(open_dataset(shuffled), "handcrafted")
    leaky_folds = np.zeros(len(data.y), dtype=int)
    for k, (_, test) in enumerate(KFold(5, shuffle=True, random_state=0).split(data.y)):
        leaky_folds[test] = k
    pred = np.empty(len(data.y), dtype=object)
    for k in range(5):
        pred[leaky_folds == k] = runs.fit_predict(data.X["handcrafted"], data.y, leaky_folds, k,
                                                "fine-knn", 0, False)
    assert accuracy_score(data.y, pred) > 0.8


def test_report_matches_direct_sklearn(separable, separable_report):
    r = separable_report
    res = next(x for x in r["results"]
               if x["classifier"] == "logistic-regression" and x["features"] == "handcrafted")
    data = load_data(open_dataset(separable), "handcrafted")
    folds = np.asarray(r["folds"]["fold"])
    np.testing.assert_array_equal(r["folds"]["segment_id"], data.segment_id)
    pred = np.empty(len(data.y), dtype=object)
    accs, bals, f1s = [], [], []
    for k in range(5):
        tr, te = folds != k, folds == k
        m = Pipeline([("s", StandardScaler()), ("m", LogisticRegression(C=1.0, max_iter=2000))])
        m.fit(data.X["handcrafted"][tr], data.y[tr])
        pred[te] = m.predict(data.X["handcrafted"][te])
        accs.append(accuracy_score(data.y[te], pred[te]))
        bals.append(balanced_accuracy_score(data.y[te], pred[te]))
        f1s.append(f1_score(data.y[te], pred[te], average="macro"))
    seg = res["segment"]
    np.testing.assert_allclose(seg["accuracy"]["folds"], accs)
    np.testing.assert_allclose(seg["accuracy"]["mean"], np.mean(accs))
    np.testing.assert_allclose(seg["accuracy"]["std"], np.std(accs))
    np.testing.assert_allclose(seg["balanced_accuracy"]["folds"], bals)
    np.testing.assert_allclose(seg["macro_f1"]["folds"], f1s)
    assert res["predictions"] == pred.tolist()
    cm = confusion_matrix(data.y, pred, labels=r["data"]["classes"])
    assert seg["confusion"]["counts"] == cm.tolist()
    recall = cm.diagonal() / cm.sum(axis=1)
    np.testing.assert_allclose([seg["per_class"][c]["recall"] for c in r["data"]["classes"]], recall)


def test_same_results_for_a_seed_in_one_or_two_processes(separable, separable_report):
    again = ev.run_evaluate(separable, features="handcrafted", classifiers=["bagged-trees", "medium-knn"],
                            folds=5, seed=0, n_jobs=2)
    first = {(x["features"], x["classifier"]): x for x in separable_report["results"]}
    for b in again["results"]:
        a = first[(b["features"], b["classifier"])]
        assert a["predictions"] == b["predictions"]
        assert a["segment"]["accuracy"] == b["segment"]["accuracy"]


def test_balance_both_runs_weights_where_supported(tmp_path):
    a = make_arrays(n_tracks=24, n_segments=2)
    keep = ~((a["plan"]["label"] == "sadness") & (a["plan"]["track_id"].astype(int) > 8))
    arrays = {k: (v[keep.to_numpy()] if k != "plan" else v[keep].reset_index(drop=True))
              for k, v in a.items()}
    r = ev.run_evaluate(build(arrays, deep=False), classifiers=["linear-svm", "medium-knn"],
                        balance="both", folds=3, n_jobs=1)
    modes = {(x["classifier"], x["balance"]) for x in r["results"]}
    assert modes == {("linear-svm", "none"), ("linear-svm", "weights"), ("medium-knn", "none")}
    assert r["skipped"] == [{"features": "handcrafted", "classifier": "medium-knn",
                             "balance": "weights", "reason": "no per-sample weights in this model"}]
    assert r["data"]["class_counts"]["sadness"] < r["data"]["class_counts"]["calmness"]


def test_distribution_target_beats_train_mean(separable):
    r = ev.run_evaluate(separable, features="handcrafted", target="distribution", n_jobs=1, folds=4)
    base = r["baselines"]["train_mean"]
    best = r["results"][0]["distribution"]
    assert best["jsd"]["mean"] < base["jsd"]["mean"] - 0.05
    assert best["top1"]["mean"] > base["top1"]["mean"] + 0.3
    assert 0 <= best["top3"]["mean"] <= 1 and best["top3"]["mean"] >= best["top1"]["mean"]
    jsds = [x["distribution"]["jsd"]["mean"] for x in r["results"]]
    assert jsds == sorted(jsds)


@pytest.mark.parametrize(("kwargs", "parameter", "message"), [
    ({"balance": "smote"}, "balance", "unknown balance 'smote'; use none, weights, both"),
    ({"target": "votes"}, "target", "target 'votes' is continuous values or tags, not classes"),
    ({"label_rule": "median"}, "label_rule", "unknown label rule 'median'"),
    ({"classifiers": ["svm"]}, "classifiers", "unknown classifier 'svm'; choose from linear-svm"),
    ({"target": "distribution", "classifiers": ["svm"]}, "classifiers", "unknown distribution model"),
    ({"features": ["both"]}, "features", "'both' is neither a stored feature group"),
    ({"folds": 1}, "folds", "the number of folds must be at least 2, got 1"),
    ({"folds": 41}, "folds", "40 groups cannot fill 41 folds; use 40 folds or fewer"),
])
def test_run_evaluate_argument_errors_name_the_parameter(separable, kwargs, parameter, message):
    kwargs = {"classifiers": ["linear-svm"], "features": "handcrafted", **kwargs}
    with pytest.raises(EmodistError, match=message) as err:
        ev.run_evaluate(separable, n_jobs=1, **kwargs)
    assert err.value.param == parameter
    assert "--" not in err.value.message and "\n" not in err.value.message


def test_report_json_records_provenance(separable, tmp_path):
    r = ev.run_evaluate(separable, features="handcrafted", classifiers=["linear-svm"],
                        out=str(tmp_path / "rep"), n_jobs=1)
    on_disk = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert on_disk["store"]["url"] == separable
    assert on_disk["store"]["dataset"] == "generated test store"
    assert on_disk["settings"]["label_rule"] == "listener"
    assert on_disk["settings"]["cv"].startswith("StratifiedGroupKFold")
    assert on_disk["settings"]["group_by"] == "group" and on_disk["data"]["n_groups"] == 40
    recorded = on_disk["store"]["feature_groups"]["handcrafted"]
    assert recorded["version"] == "1" and recorded["width"] == 10
    assert on_disk["folds"]["fold"] == r["folds"]["fold"]
    assert on_disk["results"][0]["segment"]["accuracy"] == r["results"][0]["segment"]["accuracy"]


# ---------------------------------------------------------------- distributions


def test_jensen_shannon_matches_scipy():
    from emodist.learn.scoring import jensen_shannon

    rng = np.random.default_rng(0)
    p, q = rng.dirichlet(np.ones(9), size=5), rng.dirichlet(np.ones(9), size=5)
    q[0] = 0.0
    q[0, 2] = 1.0  # zeros in one profile
    expected = [jensenshannon(a, b, base=2) ** 2 for a, b in zip(p, q)]
    np.testing.assert_allclose(jensen_shannon(p, q), expected, atol=1e-12)
    np.testing.assert_allclose(jensen_shannon(p, p), 0.0, atol=1e-12)
    np.testing.assert_allclose(jensen_shannon([[1, 0]], [[0, 1]]), [1.0])


def test_topk_agreement_and_train_mean_baseline():
    from emodist.learn.scoring import topk_agreement, train_mean_baseline
    from emodist.learn.targets import target_distribution

    true = np.array([[0.6, 0.3, 0.1, 0.0], [0.1, 0.2, 0.3, 0.4]])
    pred = np.array([[0.1, 0.5, 0.3, 0.1], [0.4, 0.3, 0.2, 0.1]])
    np.testing.assert_array_equal(topk_agreement(true, pred, 1), [False, False])
    np.testing.assert_array_equal(topk_agreement(true, pred, 3), [True, False])
    P = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [1.0, 0.0]])
    base = train_mean_baseline(P, np.array([0, 0, 1, 1]))
    np.testing.assert_allclose(base, [[0.75, 0.25], [0.75, 0.25], [0.5, 0.5], [0.5, 0.5]])
    counts = np.array([[2.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(target_distribution(counts, counts, "mean"), [[0.5, 0.25, 0.25], [0, 0, 0]])


def test_a_preset_that_cannot_fit_is_reported_and_others_still_run(tmp_path):
    # 4 classes and 4 training samples per fold: a discriminant cannot be fit
    store = make_store(tmp_path / "tiny.zarr", n_tracks=8, n_segments=1)
    report = ev.run_evaluate(store, features="handcrafted",
                             classifiers=["subspace-discriminant", "logistic-regression"],
                             folds=2, seed=0, n_jobs=1)
    ran = {r["classifier"] for r in report["results"]}
    assert ran == {"logistic-regression"}
    failed = [s for s in report["skipped"] if s["classifier"] == "subspace-discriminant"]
    assert failed and "fit failed on fold" in failed[0]["reason"]


def _square(x, k):
    return x * k


def test_run_fits_keeps_order_and_reports_each_finished_task():
    ticks = []
    out = run_all(_square, {"x": 3}, [{"k": k} for k in range(5)], n_jobs=1,
                       on_done=lambda: ticks.append(1))
    assert out == [0, 3, 6, 9, 12]
    assert len(ticks) == 5


# ---------------------------------------------------------------- unchanged predictions

# Digests of the out-of-fold predictions of every preset on one generated
# store (16 tracks x 2 segments, seed 5; 3 folds, seed 7), recorded before the
# evaluation modules were split.  A preset whose predictions change for the
# same seed (different folds, model, preprocessing or data order) fails here;
# a deliberate change of a preset must update its digest.
GOLDEN_HANDCRAFTED = {
    "bagged-trees/none": "382fd7b428c88c5e",
    "bagged-trees/weights": "d4ca113181663078",
    "boosted-trees/none": "28952eff339b9091",
    "boosted-trees/weights": "8e988f1c497673bd",
    "coarse-gaussian-svm/none": "122e826c1dfeae29",
    "coarse-gaussian-svm/weights": "0645c5089b31555c",
    "coarse-knn/none": "5905f229b57c4ee7",
    "cosine-knn/none": "3a3cd882906fbe26",
    "cubic-knn/none": "7296f61d1ef9e63a",
    "cubic-svm/none": "e593ad0a58d2d7e7",
    "cubic-svm/weights": "e593ad0a58d2d7e7",
    "fine-gaussian-svm/none": "b1a267bfc718fd27",
    "fine-gaussian-svm/weights": "b1a267bfc718fd27",
    "fine-knn/none": "46529a0b309f7a45",
    "histogram-gradient-boosting/none": "5905f229b57c4ee7",
    "histogram-gradient-boosting/weights": "5d91fd3aaa964435",
    "linear-svm/none": "f0d297107456cc92",
    "linear-svm/weights": "f0d297107456cc92",
    "logistic-regression/none": "9487d12d9d199a6f",
    "logistic-regression/weights": "8fd18c8d94906121",
    "medium-gaussian-svm/none": "7719033b7fd98f97",
    "medium-gaussian-svm/weights": "0fcb587749344d50",
    "medium-knn/none": "4bea6bfb95b81fcc",
    "quadratic-svm/none": "386f667166ed9936",
    "quadratic-svm/weights": "386f667166ed9936",
    "rusboosted-trees/none": "dbfbebb903558863",
    "rusboosted-trees/weights": "6bb3172c936970f5",
    "subspace-discriminant/none": "d8532c64cc13903c",
    "subspace-knn/none": "9fdbecadce658827",
    "weighted-knn/none": "d3844dd4b39614df",
}
GOLDEN_DEEP = "8fc8dcb79e157593"
GOLDEN_JSD = {
    "bagged-trees-regression": [0.1379100024, 0.1469810404, 0.1447672292],
    "medium-knn-regression": [0.136793843, 0.122010877, 0.1249656539],
    "ridge-regression": [0.1107221267, 0.1116632719, 0.1046638283],
}
GOLDEN_FOLDS = [
    0, 0, 0, 0, 0, 0, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 0,
    0, 1, 1, 1, 1, 2, 2, 1, 1, 0, 0, 0, 0,
]


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj).encode()).hexdigest()[:16]


def test_predictions_of_every_preset_are_unchanged_for_a_seed():
    ds = build(make_arrays(n_tracks=16, n_segments=2, seed=5))
    r = ev.run_evaluate(ds, features=["handcrafted", DEEP], classifiers=["all"], folds=3, seed=7,
                        balance="both", n_jobs=1)
    assert r["folds"]["fold"] == GOLDEN_FOLDS
    got = {f"{x['classifier']}/{x['balance']}": _digest(x["predictions"])
           for x in r["results"] if x["features"] == "handcrafted"}
    assert got == GOLDEN_HANDCRAFTED
    deep = sorted((f"deep/{x['classifier']}/{x['balance']}", _digest(x["predictions"]))
                  for x in r["results"] if x["features"] == DEEP)
    assert _digest(deep) == GOLDEN_DEEP
    d = ev.run_evaluate(ds, features=["handcrafted"], target="distribution", folds=3, seed=7, n_jobs=1)
    by_key = {x["classifier"]: x for x in d["results"]}
    assert set(GOLDEN_JSD) <= set(by_key)  # the soft-label models are new, tested elsewhere
    for key, golden in GOLDEN_JSD.items():
        np.testing.assert_allclose(by_key[key]["distribution"]["jsd"]["folds"], golden, rtol=1e-8)


# ---------------------------------------------------------------- feature groups in a run


def test_default_features_are_every_group_and_all_joined():
    r = ev.run_evaluate(build(make_arrays(n_tracks=12, n_segments=1)), classifiers=["linear-svm"],
                        folds=3, n_jobs=1)
    assert r["settings"]["features"] == ["handcrafted", DEEP, f"handcrafted+{DEEP}"]
    joined = next(x for x in r["results"] if x["features"] == f"handcrafted+{DEEP}")
    assert joined["n_features"] == 16


def test_progress_goes_to_the_log_not_to_stdout(capsys, caplog):
    with caplog.at_level(logging.INFO, logger="emodist.learn"):
        ev.run_evaluate(build(make_arrays(n_tracks=8, n_segments=1)), features="handcrafted",
                        classifiers=["linear-svm"], folds=2, n_jobs=1, progress=False)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    assert any("evaluated 2 fits on handcrafted features" in m for m in caplog.messages)
