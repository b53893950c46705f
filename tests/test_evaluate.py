"""Grouped cross-validation driver: folds, data selection, metrics, leakage guards."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score
from sklearn.model_selection import KFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from emodist.learn import evaluate as ev
from emodist.errors import EmodistError, StoreError
from emodist.store.zarrio import open_store
from tests.test_evaluate_data import CLASSES, build, hc_names, make_arrays, make_store

FAST = ["logistic-regression", "linear-svm", "medium-knn", "bagged-trees"]


@pytest.fixture(scope="module")
def separable(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("ev") / "sep.zarr", n_tracks=40, separation=2.5)


@pytest.fixture(scope="module")
def shuffled(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("ev") / "shuf.zarr", n_tracks=60,
                      shuffle_labels=True, seed=3)


@pytest.fixture(scope="module")
def separable_report(separable, tmp_path_factory):
    return ev.run_evaluate(separable, features=["handcrafted", "deep"], classifiers=FAST,
                           folds=5, seed=0, n_jobs=1)


# ---------------------------------------------------------------- folds


def test_make_folds_keeps_tracks_whole_and_is_seeded():
    a = make_arrays(n_tracks=30, n_segments=4)
    y, g = a["plan"]["label"].to_numpy(), a["plan"]["track_id"].to_numpy()
    f = ev.make_folds(y, g, 5, seed=1)
    assert set(f) == set(range(5))
    for track in np.unique(g):
        assert len(set(f[g == track])) == 1
    np.testing.assert_array_equal(f, ev.make_folds(y, g, 5, seed=1))
    assert not np.array_equal(f, ev.make_folds(y, g, 5, seed=2))
    # stratified: every fold holds every class
    for k in range(5):
        assert set(y[f == k]) == set(CLASSES)


def test_make_folds_rejects_too_few_tracks():
    with pytest.raises(EmodistError, match="3 tracks cannot fill 5 folds"):
        ev.make_folds(["a", "b", "a"], ["1", "2", "3"], 5)
    with pytest.raises(EmodistError, match="at least 2"):
        ev.make_folds(["a", "b"], ["1", "2"], 1)


def test_check_folds_catches_a_split_track():
    with pytest.raises(EmodistError, match="'t1' is in two folds"):
        ev.check_folds([0, 1, 1], ["t1", "t1", "t2"])


def test_report_never_puts_a_track_in_two_folds(separable_report):
    folds = separable_report["folds"]
    per_track = {}
    for t, f in zip(folds["track_id"], folds["fold"]):
        per_track.setdefault(t, set()).add(f)
    assert len(per_track) == 40
    assert all(len(v) == 1 for v in per_track.values())
    assert len(folds["segment_id"]) == 120


# ---------------------------------------------------------------- feature sets and data


def test_resolve_feature_sets_groups_and_patterns():
    avail = {"handcrafted": hc_names(), "deep": ["deep_0000", "deep_0001"]}
    sets = ev.resolve_feature_sets(["handcrafted", "both", "mfcc_0[01]", "tempo", "deep_0001"], avail)
    assert [s.name for s in sets] == ["handcrafted", "both", "custom"]
    assert sets[1].names == hc_names() + ["deep_0000", "deep_0001"]
    assert sets[2].names == ["mfcc_00", "mfcc_01", "tempo", "deep_0001"]
    with pytest.raises(EmodistError, match="'chroma_\\*' matches no feature"):
        ev.resolve_feature_sets(["chroma_*"], avail)
    with pytest.raises(StoreError, match="no deep features"):
        ev.resolve_feature_sets("both", {"handcrafted": hc_names()})


def test_load_data_uses_finished_labelled_segments_only():
    a = make_arrays(n_tracks=8, n_segments=2)
    a["status"][[0, 5]] = [0, -1]
    a["plan"].loc[[2, 3], "label"] = ""  # a class dropped at extraction
    data = ev.load_data(build(a), "handcrafted")
    assert len(data.y) == 16 - 4
    assert "0:000" not in data.segment_id and "2:001" not in data.segment_id
    assert data.excluded == {"not extracted (status != 1)": 2, "class dropped at extraction": 2}
    np.testing.assert_allclose(data.X["handcrafted"][0], a["handcrafted"][1], rtol=1e-6)


def test_load_data_recomputes_labels_with_another_rule():
    a = make_arrays(n_tracks=8, n_segments=1)
    # track 0: listener profile says calmness, plain mean says tension
    a["votes_mean"][0] = 0.0
    a["votes_mean"][0, 7] = 0.9
    # track 1: plain mean says amazement, a class not kept at extraction
    a["votes_mean"][1] = 0.0
    a["votes_mean"][1, 0] = 0.9
    ds = build(a)
    stored = ev.load_data(ds, "handcrafted")
    assert stored.label_rule == "listener" and stored.y[0] == "calmness"
    mean = ev.load_data(ds, "handcrafted", label_rule="mean")
    assert mean.label_rule == "mean"
    assert mean.y[0] == "tension"
    assert "1:000" not in mean.segment_id
    assert mean.excluded["class dropped at extraction"] == 1


def test_load_data_errors():
    a = make_arrays(n_tracks=4, n_segments=1)
    a["status"][:] = 0
    with pytest.raises(StoreError, match="no finished, labelled segments"):
        ev.load_data(build(a), "handcrafted")
    b = make_arrays(n_tracks=4, n_segments=1)
    b["handcrafted"][1, 3] = np.nan
    with pytest.raises(StoreError, match="1 finished segments have non-finite handcrafted"):
        ev.load_data(build(b), "handcrafted")
    with pytest.raises(StoreError, match="no deep features"):
        ev.load_data(build(make_arrays(n_tracks=4), deep=False), "deep")


# ---------------------------------------------------------------- metrics


def test_confusion_is_row_normalised_with_tpr_fnr():
    c = ev.confusion(["a", "a", "a", "a", "b", "b"], ["a", "a", "a", "b", "b", "a"], ["a", "b", "c"])
    assert c["counts"] == [[3, 1, 0], [1, 1, 0], [0, 0, 0]]
    np.testing.assert_allclose(c["percent"][0], [75, 25, 0])
    np.testing.assert_allclose(c["tpr"], [75, 50, 0])
    np.testing.assert_allclose(c["fnr"], [25, 50, 0])


def test_majority_vote_breaks_ties_by_class_order():
    votes = ev.majority_vote(["b", "a", "c", "c", "a"], ["t1", "t1", "t2", "t2", "t2"], ["a", "b", "c"])
    assert votes.to_dict() == {"t1": "a", "t2": "c"}


def test_baseline_rates():
    r = ev.baseline_rates(["a", "a", "a", "b"], ["a", "b"])
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
    deep = [x for x in r["results"] if x["features"] == "deep"]
    assert max(x["segment"]["accuracy"]["mean"] for x in deep) < 0.5
    accs = [x["segment"]["accuracy"]["mean"] for x in r["results"]]
    assert accs == sorted(accs, reverse=True)


def test_shuffled_labels_stay_near_chance(shuffled):
    r = ev.run_evaluate(shuffled, classifiers=FAST + ["fine-knn"], n_jobs=1)
    best = max(x["segment"]["accuracy"]["mean"] for x in r["results"])
    assert best < 0.42
    # the same preset on folds that split tracks is fooled by the per-track
    # offsets: this is the leakage the grouped folds prevent
    data = ev.load_data(open_store(shuffled), "handcrafted")
    leaky_folds = np.zeros(len(data.y), dtype=int)
    for k, (_, test) in enumerate(KFold(5, shuffle=True, random_state=0).split(data.y)):
        leaky_folds[test] = k
    pred = np.empty(len(data.y), dtype=object)
    for k in range(5):
        pred[leaky_folds == k] = ev.fit_predict(data.X["handcrafted"], data.y, leaky_folds, k,
                                                "fine-knn", 0, False)
    assert accuracy_score(data.y, pred) > 0.8


def test_report_matches_direct_sklearn(separable, separable_report):
    r = separable_report
    res = next(x for x in r["results"]
               if x["classifier"] == "logistic-regression" and x["features"] == "handcrafted")
    data = ev.load_data(open_store(separable), "handcrafted")
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
    r = ev.run_evaluate(build(arrays), classifiers=["linear-svm", "medium-knn"], balance="both",
                        folds=3, n_jobs=1)
    modes = {(x["classifier"], x["balance"]) for x in r["results"]}
    assert modes == {("linear-svm", "none"), ("linear-svm", "weights"), ("medium-knn", "none")}
    assert r["skipped"] == [{"features": "handcrafted", "classifier": "medium-knn",
                             "balance": "weights", "reason": "no per-sample weights in this model"}]
    assert r["data"]["class_counts"]["sadness"] < r["data"]["class_counts"]["calmness"]


def test_distribution_target_beats_train_mean(separable):
    r = ev.run_evaluate(separable, target="distribution", n_jobs=1, folds=4)
    base = r["baselines"]["train_mean"]
    best = r["results"][0]["distribution"]
    assert best["jsd"]["mean"] < base["jsd"]["mean"] - 0.05
    assert best["top1"]["mean"] > base["top1"]["mean"] + 0.3
    assert 0 <= best["top3"]["mean"] <= 1 and best["top3"]["mean"] >= best["top1"]["mean"]
    jsds = [x["distribution"]["jsd"]["mean"] for x in r["results"]]
    assert jsds == sorted(jsds)


def test_run_evaluate_argument_errors(separable):
    with pytest.raises(EmodistError, match="unknown balance"):
        ev.run_evaluate(separable, balance="smote")
    with pytest.raises(EmodistError, match="unknown target"):
        ev.run_evaluate(separable, target="votes")
    with pytest.raises(EmodistError, match="unknown label rule"):
        ev.run_evaluate(separable, label_rule="median", classifiers=["linear-svm"])
    with pytest.raises(EmodistError, match="unknown classifier 'svm'"):
        ev.run_evaluate(separable, classifiers=["svm"])


def test_report_json_records_provenance(separable, tmp_path):
    r = ev.run_evaluate(separable, classifiers=["linear-svm"], out=str(tmp_path / "rep"), n_jobs=1)
    on_disk = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert on_disk["store"]["url"] == separable
    assert on_disk["store"]["dataset"] == "generated test store"
    assert on_disk["settings"]["label_rule"] == "listener"
    assert on_disk["settings"]["cv"].startswith("StratifiedGroupKFold")
    assert on_disk["folds"]["fold"] == r["folds"]["fold"]
    assert on_disk["results"][0]["segment"]["accuracy"] == r["results"][0]["segment"]["accuracy"]


# ---------------------------------------------------------------- distributions


def test_jensen_shannon_matches_scipy():
    from emodist.learn.distribution import jensen_shannon

    rng = np.random.default_rng(0)
    p, q = rng.dirichlet(np.ones(9), size=5), rng.dirichlet(np.ones(9), size=5)
    q[0] = 0.0
    q[0, 2] = 1.0  # zeros in one profile
    expected = [jensenshannon(a, b, base=2) ** 2 for a, b in zip(p, q)]
    np.testing.assert_allclose(jensen_shannon(p, q), expected, atol=1e-12)
    np.testing.assert_allclose(jensen_shannon(p, p), 0.0, atol=1e-12)
    np.testing.assert_allclose(jensen_shannon([[1, 0]], [[0, 1]]), [1.0])


def test_topk_agreement_and_train_mean_baseline():
    from emodist.learn.distribution import target_distribution, topk_agreement, train_mean_baseline

    true = np.array([[0.6, 0.3, 0.1, 0.0], [0.1, 0.2, 0.3, 0.4]])
    pred = np.array([[0.1, 0.5, 0.3, 0.1], [0.4, 0.3, 0.2, 0.1]])
    np.testing.assert_array_equal(topk_agreement(true, pred, 1), [False, False])
    np.testing.assert_array_equal(topk_agreement(true, pred, 3), [True, False])
    P = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [1.0, 0.0]])
    base = train_mean_baseline(P, np.array([0, 0, 1, 1]))
    np.testing.assert_allclose(base, [[0.75, 0.25], [0.75, 0.25], [0.5, 0.5], [0.5, 0.5]])
    counts = np.array([[2.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(target_distribution(counts, counts, "mean"), [[0.5, 0.25, 0.25], [0, 0, 0]])


def test_make_folds_without_enough_tracks_per_class_groups_only():
    y = np.array(["a", "a", "b", "b", "c", "c", "d", "d"])
    g = np.array(["1", "1", "2", "2", "3", "3", "4", "4"])
    f = ev.make_folds(y, g, 3, seed=0)
    assert set(f) == {0, 1, 2}
    ev.check_folds(f, g)
    assert "not stratified" in ev.describe_splitter(ev.fold_splitter(y, g, 3, 0))
    y[2:4] = "a"  # class a now has two tracks: two folds can be stratified
    assert ev.describe_splitter(ev.fold_splitter(y, g, 2, 0)).startswith("StratifiedGroupKFold")


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


def test_run_tasks_keeps_order_and_reports_each_finished_task():
    ticks = []
    out = ev.run_tasks(_square, {"x": 3}, [{"k": k} for k in range(5)], n_jobs=1,
                       on_done=lambda: ticks.append(1))
    assert out == [0, 3, 6, 9, 12]
    assert len(ticks) == 5
