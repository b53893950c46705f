"""Beyond one label per song: soft targets, prior shift, balanced bagging, GEMS factors,
track level from probabilities, the human ceiling and the comparison table."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from emodist.cli import main
from emodist.data.labels import GEMS
from emodist.errors import EmodistError
from emodist.learn import evaluate as ev
from emodist.learn import presets as clf
from emodist.learn.ceiling import report_ceiling, split_half_ceiling
from emodist.learn.data import load_data, open_dataset
from emodist.learn.estimators import PriorShiftClassifier, SoftLogisticRegression
from emodist.learn.folds import fold_groups
from emodist.learn.report import comparison_markdown, load_report
from emodist.learn.scoring import jensen_shannon
from emodist.learn.targets import FACTORS, dominant_factor
from tests.stores import build, make_arrays

BEYOND = list(clf.BEYOND_PRESETS)


@pytest.fixture(scope="module")
def separable_report(separable):
    return ev.run_evaluate(separable, features="handcrafted", classifiers=["beyond", "linear-svm"],
                           folds=5, seed=0, n_jobs=1, rank_by="balanced_accuracy")


def _responses(n_tracks: int, seed: int = 0, agree: float = 0.8) -> pd.DataFrame:
    """Listener responses of tracks ``0..n-1``: most listeners tick the track's emotion."""
    rng = np.random.default_rng(seed)
    rows = []
    for t in range(n_tracks):
        main_emotion = GEMS[1 + t % 8]
        for _ in range(12):
            ticks = dict.fromkeys(GEMS, 0)
            ticks[main_emotion if rng.random() < agree else GEMS[rng.integers(1, 9)]] = 1
            rows.append({"track id": t, "genre": "rock", **ticks})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- presets


def test_beyond_presets_are_their_own_shorthand():
    assert [p.key for p in clf.resolve_presets("beyond")] == BEYOND
    assert not set(BEYOND) & {p.key for p in clf.resolve_presets("all")}
    assert {"soft-logistic-regression", "prior-shift-soft-logistic-regression",
            "balanced-bagged-trees"} <= set(BEYOND)
    soft = [k for k in BEYOND if "soft" in clf.PRESETS[k].fit_params]
    assert "soft-logistic-regression-in-fold-c" in soft
    assert all(not clf.supports_weights(clf.PRESETS[k]) for k in BEYOND)


def test_shuffled_labels_stay_at_chance_for_every_new_preset(shuffled):
    r = ev.run_evaluate(shuffled, features="handcrafted", classifiers=["beyond"], n_jobs=1)
    assert {x["classifier"] for x in r["results"]} == set(BEYOND)
    for x in r["results"]:
        assert x["segment"]["accuracy"]["mean"] < 0.42, x["classifier"]
        assert x["segment"]["balanced_accuracy"]["mean"] < 0.42, x["classifier"]


def test_new_presets_learn_separable_data(separable_report):
    for x in separable_report["results"]:
        assert x["segment"]["balanced_accuracy"]["mean"] > 0.75, x["classifier"]
    bal = [x["segment"]["balanced_accuracy"]["mean"] for x in separable_report["results"]]
    assert bal == sorted(bal, reverse=True)
    assert separable_report["settings"]["rank_by"] == "balanced_accuracy"


def test_prior_shift_soft_lr_report_equals_direct_sklearn(separable, separable_report):
    r = separable_report
    res = next(x for x in r["results"] if x["classifier"] == "prior-shift-soft-logistic-regression")
    data = load_data(open_dataset(separable), "handcrafted")
    groups, _ = fold_groups(data.group, data.track_id)
    folds = np.asarray(r["folds"]["fold"])
    classes = r["data"]["classes"]
    votes = open_dataset(separable)["votes"].values
    cols = [GEMS.index(c) for c in classes]
    soft = votes[:, cols] / votes[:, cols].sum(axis=1, keepdims=True)
    X = data.X["handcrafted"]
    pred = np.empty(len(data.y), dtype=object)
    proba = np.zeros((len(data.y), len(classes)))
    bals = []
    for k in range(5):
        tr, te = folds != k, folds == k
        m = Pipeline([("s", StandardScaler()), ("m", PriorShiftClassifier(
            SoftLogisticRegression(C=0.1, classes=classes), cv=5, random_state=0))])
        m.fit(X[tr], data.y[tr], m__soft=soft[tr], m__groups=groups[tr])
        pred[te] = m.predict(X[te])
        order = [list(m.classes_).index(c) for c in classes]
        proba[te] = m.predict_proba(X[te])[:, order]
        bals.append(balanced_accuracy_score(data.y[te], pred[te]))
    assert res["predictions"] == pred.tolist()
    np.testing.assert_allclose(res["segment"]["balanced_accuracy"]["folds"], bals)
    np.testing.assert_allclose(res["segment"]["accuracy"]["pooled"], accuracy_score(data.y, pred))
    frame = pd.DataFrame(proba, columns=classes).assign(t=data.track_id, y=data.y, f=folds)
    tracks = frame.groupby("t", sort=False)
    t_pred = tracks[classes].mean().idxmax(axis=1)
    t_true, t_fold = tracks["y"].first(), tracks["f"].first()
    per_fold = [accuracy_score(t_true[t_fold == k], t_pred[t_fold == k]) for k in range(5)]
    np.testing.assert_allclose(res["track_proba"]["accuracy"]["folds"], per_fold)
    svm = next(x for x in r["results"] if x["classifier"] == "linear-svm")
    assert "track_proba" not in svm and "track" in svm


def test_class_data_carries_the_vote_shares_of_the_kept_classes(separable):
    ds = open_dataset(separable)
    data = load_data(ds, "handcrafted")
    assert data.classes == ["calmness", "joyful_activation", "tension", "sadness"]
    v = ds["votes"].values[:, [GEMS.index(c) for c in data.classes]]
    np.testing.assert_allclose(data.soft, v / v.sum(axis=1, keepdims=True), rtol=1e-6)
    assert data.strata is None


# ---------------------------------------------------------------- factors


def test_factor_target_same_segments_and_folds(separable):
    ds = open_dataset(separable)
    r_class = ev.run_evaluate(separable, features="handcrafted", classifiers=["logistic-regression"],
                              n_jobs=1, ceiling=False)
    r = ev.run_evaluate(separable, features="handcrafted", target="factors", n_jobs=1,
                        classifiers=["logistic-regression", "soft-logistic-regression"], ceiling=False)
    assert r["folds"]["fold"] == r_class["folds"]["fold"]
    assert r["folds"]["segment_id"] == r_class["folds"]["segment_id"]
    expected = dominant_factor(ds["votes"].values, ds["votes_mean"].values, "listener")
    assert r["folds"]["label"] == expected.tolist()
    assert r["data"]["classes"] == [f for f in FACTORS if f in set(expected)]
    assert r["settings"]["stratified_by"] == "emotion"
    res = r["results"][0]
    k = len(r["data"]["classes"])
    assert np.asarray(res["segment"]["confusion"]["counts"]).shape == (k, k)
    y, p = np.asarray(r["folds"]["label"]), np.asarray(res["predictions"])
    assert res["segment"]["macro_f1"]["pooled"] == pytest.approx(
        f1_score(y, p, average="macro", zero_division=0))
    assert r["baselines"]["segment"]["chance"] == pytest.approx(1 / k)


# ---------------------------------------------------------------- distributions


def test_soft_lr_distribution_presets_beat_train_mean_and_average_tracks(separable):
    r = ev.run_evaluate(separable, features="handcrafted", target="distribution", n_jobs=1, folds=4,
                        classifiers=["soft-logistic-regression-in-fold-c",
                                     "soft-logistic-regression-in-fold-c-track-mean"])
    base = r["baselines"]["train_mean"]["jsd"]["mean"]
    for x in r["results"]:
        assert x["distribution"]["jsd"]["mean"] < 0.7 * base
    from emodist.learn.runs import fit_predict_distribution

    data = load_data(open_dataset(separable), "handcrafted", target="distribution")
    folds = np.asarray(r["folds"]["fold"])
    out = fit_predict_distribution(data.X["handcrafted"], data.distribution, folds, 0,
                                   "soft-logistic-regression-in-fold-c-track-mean", 0,
                                   tracks=data.track_id, groups=data.track_id)
    tracks = data.track_id[folds == 0]
    for t in np.unique(tracks):
        rows = out[tracks == t]
        np.testing.assert_allclose(rows, np.repeat(rows[:1], len(rows), axis=0))
    np.testing.assert_allclose(out.sum(axis=1), 1.0)
    pooled = next(x for x in r["results"] if x["classifier"].endswith("track-mean"))
    assert pooled["distribution"]["jsd"]["folds"][0] == pytest.approx(
        float(jensen_shannon(data.distribution[folds == 0], out).mean()))


# ---------------------------------------------------------------- human ceiling


def test_ceiling_from_a_data_csv_equals_split_half(tmp_path):
    arrays = make_arrays(n_tracks=16, n_segments=2)
    _responses(16).to_csv(tmp_path / "data.csv", index=False)
    ds = build(arrays, deep=False)
    r = ev.run_evaluate(ds, classifiers=["logistic-regression"], folds=3, n_jobs=1,
                        ceiling=str(tmp_path))
    c = r["ceiling"]
    direct = split_half_ceiling(_responses(16)["track id"].to_numpy(), _responses(16)[list(GEMS)].to_numpy(),
                                n_classes=4, seed=0)
    assert c["available"] and c["level"] == "emotion" and c["n_tracks"] == 16
    assert c["agreement"] == direct["agreement"] and c["kappa"] == direct["kappa"]
    assert c["chance"] == 0.25
    # the store's dataset attribute names the folder: used by default
    ds2 = build(arrays, deep=False, attrs={"dataset": f"emotify:{tmp_path}"})
    r2 = ev.run_evaluate(ds2, classifiers=["logistic-regression"], folds=3, n_jobs=1, target="factors")
    assert r2["ceiling"]["available"] and r2["ceiling"]["level"] == "factor"
    assert r2["ceiling"]["chance"] == pytest.approx(1 / len(r2["data"]["classes"]))


def test_ceiling_not_available_or_a_named_error(separable, tmp_path):
    r = ev.run_evaluate(separable, features="handcrafted", classifiers=["logistic-regression"], n_jobs=1)
    assert r["ceiling"]["available"] is False and "no listener responses" in r["ceiling"]["reason"]
    with pytest.raises(EmodistError, match="no Emotify data.csv") as err:
        ev.run_evaluate(separable, features="handcrafted", classifiers=["logistic-regression"],
                        n_jobs=1, ceiling=str(tmp_path / "nowhere"))
    assert err.value.param == "ceiling"


def test_ceiling_of_the_shared_emotify_tracks(emotify_root):
    root = str(emotify_root)
    c = report_ceiling(root, [str(t) for b in (0, 100, 200, 300) for t in range(b + 1, b + 26)],
                       level="emotion", rule="listener", n_classes=8)
    assert c["n_tracks"] == 100 and c["chance"] == 0.125
    assert c["agreement"]["ci"][0] < c["agreement"]["value"] < c["agreement"]["ci"][1]
    assert c["majority"] < c["agreement"]["value"] < 0.8  # noisy listeners, better than "calmness"
    f = report_ceiling(root, [str(t) for t in range(1, 401)], level="factor", rule="listener",
                       n_classes=3)
    assert f["agreement"]["value"] > c["agreement"]["value"]


# ---------------------------------------------------------------- comparison


def test_comparison_table_holds_study_baselines_ceiling_and_best(separable_report):
    r = separable_report
    text = comparison_markdown([("run", r)])
    assert "| reference study: Bagged Trees | emotion (8) | handcrafted | 50.1 |" in text
    assert "33.7" in text and "| reference study: chance | emotion (8) | - | 12.5 |" in text
    best = max(r["results"], key=lambda x: x["segment"]["balanced_accuracy"]["mean"])
    cell = (f"{100 * best['segment']['balanced_accuracy']['mean']:.1f} ± "
            f"{100 * best['segment']['balanced_accuracy']['std']:.1f} ({best['name']})")
    row = next(line for line in text.splitlines() if "best, handcrafted" in line)
    assert row.split(" | ")[4] == cell
    assert "human ceiling | not available" in text
    b = r["baselines"]["segment"]
    assert f"always calmness | {100 * b['majority']:.1f} | 25.0 |" in text


def test_compare_command_and_report_md_open_with_the_table(separable, tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["evaluate", separable, "--features", "handcrafted", "--classifiers",
                 "soft-logistic-regression", "--workers", "1", "--quiet", "--out", str(a),
                 "--rank-by", "macro_f1"]) == 0
    assert main(["evaluate", separable, "--features", "handcrafted", "--classifiers", "logistic-regression",
                 "--workers", "1", "--quiet", "--out", str(b), "--target", "factors", "--ceiling", "none"]) == 0
    md = (a / "report.md").read_text()
    assert md.splitlines()[2].startswith("| source | target | features | accuracy")
    assert "ranked by segment macro f1" in md
    capsys.readouterr()
    assert main(["compare", str(a), str(b / "report.json"), "--out", str(tmp_path / "c.md")]) == 0
    out = capsys.readouterr().out
    assert out == (tmp_path / "c.md").read_text()
    assert f"| {a} | emotion (4) | best, handcrafted |" in out
    assert f"| {b / 'report.json'} | GEMS factor (" in out
    assert load_report(a)["settings"]["rank_by"] == "macro_f1"
    assert json.loads((b / "report.json").read_text())["ceiling"]["reason"] == "not asked for"


def test_compare_and_ceiling_errors_are_one_line(separable, tmp_path, capsys):
    (tmp_path / "x.json").write_text("[1, 2]")
    assert main(["compare", str(tmp_path / "x.json")]) == 2
    assert "not an emodist evaluation report" in capsys.readouterr().err
    assert main(["evaluate", separable, "--classifiers", "logistic-regression", "--workers", "1", "--quiet",
                 "--ceiling", str(tmp_path / "none.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--ceiling: " in err[0]
