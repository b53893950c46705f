"""``emodist train`` for every target: continuous and tag models as ONNX, their cards, one spec.

On real segments (handcrafted features of 16 Emotify tracks): the ONNX graph
of every exportable regression and multi-label preset equals scikit-learn's
``predict`` / ``predict_proba`` within 1e-5, on the training tracks and on
held-out ones; ``run_train``'s cross-validation figures are those of
``emodist evaluate`` for the same :class:`~emodist.learn.spec.EvaluationSpec`.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from emodist.data.labels import GEMS
from emodist.errors import EmodistError
from emodist.learn.evaluate import run_evaluate
from emodist.learn.export import (
    MULTILABEL_EXPORTABLE,
    REGRESSION_EXPORTABLE,
    ColumnRegressors,
    multilabel_to_onnx,
    regression_to_onnx,
    run_onnx,
)
from emodist.learn.multilabel import MULTILABEL_PRESETS
from emodist.learn.regression import REGRESSION_PRESETS
from emodist.learn.spec import EvaluationSpec
from emodist.learn.train import run_train
from emodist.learn.votes import evaluate_votes, json_safe, load_vote_data, vote_tags
from emodist.models.trained import describe_trained, load_trained
from tests.learn.emotify_store import small_emotify_store

TOL = 1e-5


@pytest.fixture(scope="module")
def store(emotify_root, tmp_path_factory) -> str:
    return small_emotify_store(emotify_root, tmp_path_factory)


@pytest.fixture(scope="module")
def votes(store):
    """Features, shares and top-three tags of the real segments; a quarter of the tracks held out."""
    d = load_vote_data(store, "handcrafted")
    tracks = list(dict.fromkeys(d.track_id))
    held = set(tracks[::4])
    train = np.array([t not in held for t in d.track_id])
    return d, d.X["handcrafted"], train


def _quiet_fit(model, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(X, y)


@pytest.mark.parametrize("key", REGRESSION_EXPORTABLE)
def test_regression_onnx_is_sklearns_predict(votes, key):
    d, X, train = votes
    Y = d.profiles["listener"][:, :3]  # three shares: one pipeline each
    preset = REGRESSION_PRESETS[key]
    if preset.multi_output:  # one model for the three shares
        model = ColumnRegressors([_quiet_fit(preset.pipeline(0), X[train], Y[train])])
    else:
        model = ColumnRegressors([_quiet_fit(preset.pipeline(0), X[train], Y[train, j])
                                  for j in range(3)])
    graph = regression_to_onnx(model, n_features=X.shape[1])
    X32 = X.astype(np.float32)  # the graph's input; scikit-learn gets the same values
    want = model.predict(X32.astype(np.float64))
    got = run_onnx(graph, X32)
    assert got.shape == want.shape == (len(X), 3)
    assert np.abs(got - want).max() <= TOL, key
    assert np.abs(got[~train] - want[~train]).max() <= TOL  # unseen tracks too
    assert np.ptp(want[:, 0]) > 0  # a model that predicts something
    assert [o.name for o in graph.graph.output] == ["variable"]
    assert {o.domain for o in graph.opset_import} <= {"", "ai.onnx.ml"}


@pytest.mark.parametrize("key", MULTILABEL_EXPORTABLE)
def test_multilabel_onnx_is_sklearns_predict_proba(votes, key):
    d, X, train = votes
    T = vote_tags(d)
    T = T[:, T[train].min(axis=0) != T[train].max(axis=0)]  # tags with both values in training
    pipe = _quiet_fit(MULTILABEL_PRESETS[key].pipeline(0), X[train], T[train])
    graph = multilabel_to_onnx(pipe, n_features=X.shape[1])
    X32 = X.astype(np.float32)
    want = pipe.predict_proba(X32.astype(np.float64))
    got = run_onnx(graph, X32)
    assert got.shape == want.shape == T.shape
    assert np.abs(got - want).max() <= TOL, key
    assert np.abs(got[~train] - want[~train]).max() <= TOL
    sess = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    label = sess.run([sess.get_outputs()[0].name], {"features": X32})[0]
    assert np.array_equal(label, (want >= 0.5).astype(np.int64))


def test_presets_without_a_converter_are_refused_naming_those_that_work(store, tmp_path):
    with pytest.raises(EmodistError) as info:
        run_train(store, features="handcrafted", classifier="hist-gradient-boosting",
                  target="shares", out=tmp_path / "m", n_jobs=1)
    assert info.value.param == "classifier" and "\n" not in info.value.message
    assert "choose from " + ", ".join(REGRESSION_EXPORTABLE) in info.value.message
    with pytest.raises(EmodistError, match="choose from logistic-regression, linear-svm, mlp"):
        run_train(store, features="handcrafted", classifier="ridge", target="tags",
                  out=tmp_path / "m", n_jobs=1)
    assert not (tmp_path / "m").exists()


@pytest.fixture(scope="module")
def shares_model(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("shares") / "model"
    return run_train(store, features="handcrafted", classifier="ridge", target="shares", out=out,
                     folds=4, seed=1)


def test_shares_model_card_and_figures_are_the_evaluations(store, shares_model):
    card = shares_model.card
    d = load_vote_data(store, "handcrafted")
    assert card["target"] == {"kind": "regression", "name": "shares", "columns": list(d.emotions),
                              "profile": "listener"}
    assert shares_model.kind == "regression" and shares_model.classes == d.emotions
    assert shares_model.outputs == {"values": "variable"}
    spec = EvaluationSpec.from_dict(card["evaluation_spec"])
    assert spec == EvaluationSpec(features="handcrafted", classifiers="ridge", target="shares",
                                  folds=4, seed=1, ceiling=False)
    report = evaluate_votes(store, target="shares", features="handcrafted", presets=["ridge"],
                            n_folds=4, seed=1)  # as `emodist evaluate` runs it
    assert report["evaluation_spec"] == card["evaluation_spec"]
    row = json_safe(report["sets"]["handcrafted"]["results"][0]["metrics"])
    assert card["cv"]["regression"] == row  # every target, metric, fold, level
    assert set(row["segment"]["calmness"]) == {"r2", "rmse", "pearson", "spearman", "ccc"}
    assert card["onnx"]["check"]["max_abs_diff_vs_sklearn"] <= TOL
    assert card["training"]["n_segments"] == len(d.segment_id)
    assert json.loads(json.dumps(card, allow_nan=False)) == card  # strict JSON: no NaN
    files = {p.name for p in Path(shares_model.path).iterdir()}
    assert {f"scatter_{e}.png" for e in d.emotions} <= files
    text = "\n".join(describe_trained(load_trained(shares_model.path)))
    assert "regression" in text and "R²" in text and "CCC" in text


def test_tags_model_card_and_figures_are_the_evaluations(store, tmp_path):
    model = run_train(store, features="handcrafted", classifier="logistic-regression",
                      target="tags", out=tmp_path / "tags", folds=4, seed=0, min_tracks=3)
    card = model.card
    report = evaluate_votes(store, target="tags", features="handcrafted",
                            presets=["logistic-regression"], n_folds=4, seed=0, min_tracks=3)
    res = report["sets"]["handcrafted"]
    assert card["target"]["kind"] == "multilabel" and card["target"]["columns"] == res["tags"]
    assert list(model.classes) == res["tags"] and model.kind == "multilabel"
    assert card["cv"]["multilabel"] == json_safe(res["results"][0]["metrics"])
    assert set(card["cv"]["dropped"]) == set(res["dropped"])
    for m in ("roc_auc_macro", "roc_auc_micro", "pr_auc_macro", "pr_auc_micro"):
        assert 0.0 <= card["cv"]["multilabel"]["segment"][m]["mean"] <= 1.0
    assert card["onnx"]["check"]["max_abs_diff_vs_sklearn"] <= TOL
    assert "ROC-AUC" in "\n".join(describe_trained(model))
    # per-tag calibration of the out-of-fold probabilities, for thresholds on them
    T = vote_tags(load_vote_data(store, "handcrafted"))
    S = res["results"][0]["scores"]
    cal = card["cv"]["calibration"]["per_tag"]
    assert list(cal) == res["tags"]
    for j, tag in enumerate(res["tags"]):
        truth = T[:, list(GEMS).index(tag)]
        bins = cal[tag]["bins"]
        assert sum(b["count"] for b in bins) == len(truth)
        got = sum(b["count"] * abs(b["observed"] - b["predicted"]) for b in bins) / len(truth)
        assert cal[tag]["ece"] == pytest.approx(got)
        assert sum(b["count"] * b["observed"] for b in bins) == pytest.approx(truth.sum())
        assert sum(b["count"] * b["predicted"] for b in bins) == pytest.approx(S[:, j].sum())


def test_class_training_cv_is_evaluate_of_its_recorded_spec(store, tmp_path):
    """The card's spec, given to `emodist evaluate`, reproduces the card's figures."""
    model = run_train(store, features="handcrafted", classifier="logistic-regression",
                      target="factors", out=tmp_path / "f", folds=4, seed=3, n_jobs=1)
    spec = EvaluationSpec.from_dict(model.card["evaluation_spec"])
    assert (spec.target, spec.folds, spec.seed, spec.balance) == ("factors", 4, 3, "none")
    report = run_evaluate(store, spec, n_jobs=1)
    assert report["evaluation_spec"] == model.card["evaluation_spec"]
    row = report["results"][0]
    for level in ("segment", "track"):
        for metric in ("accuracy", "balanced_accuracy", "macro_f1"):
            assert model.card["cv"][level][metric]["folds"] == pytest.approx(row[level][metric]["folds"])
    assert model.card["cv"]["segment"]["confusion"]["counts"] == row["segment"]["confusion"]["counts"]
    assert report["folds"]["fold"]  # the same folds: the card's figures equal fold by fold


def test_run_refuses_a_vote_target_before_extracting(tmp_path, capsys):
    from emodist.cli import main

    (tmp_path / "music").mkdir()
    store = tmp_path / "s.zarr"
    assert main(["run", str(tmp_path / "music"), "--store", str(store), "--target", "shares",
                 "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--target" in err[0] and "emodist evaluate" in err[0]
    assert not store.exists()


def test_best_exportable_row_of_a_shares_report():
    from emodist.learn.train import best_from_report

    def row(preset, r2):
        return {"preset": preset, "metrics": {"segment": {"mean": {"r2": r2}}}}

    spec = EvaluationSpec(target="shares", classifiers=["ridge", "hist-gradient-boosting", "knn"],
                          folds=4, seed=2, ceiling=False)
    report = {"kind": "regression", "config": {"profile": "mean", "context": "track"},
              "evaluation_spec": spec.to_dict(),
              "sets": {"handcrafted": {"results": [row("hist-gradient-boosting", 0.40),
                                                   row("ridge", 0.20)]},
                       "musicnn_msd": {"results": [row("knn", 0.30), row("ridge", None)]}}}
    best = best_from_report(report)
    assert (best["features"], best["classifier"], best["target"]) == ("musicnn_msd", "knn", "shares")
    assert (best["folds"], best["seed"], best["profile"]) == (4, 2, "mean")
    assert best["context"] == "track"  # trained as it was evaluated
    assert best["chosen_from"]["rank"] == 2 and best["chosen_from"]["value"] == 0.30
    assert best["chosen_from"]["skipped_above"] == ["handcrafted/hist-gradient-boosting"]
    report["sets"] = {"handcrafted": {"results": [row("hist-gradient-boosting", 0.4)]}}
    with pytest.raises(EmodistError, match="no row with an exportable preset") as info:
        best_from_report(report)
    assert info.value.param == "from_report"


@pytest.fixture(scope="module")
def context_model(store, tmp_path_factory):
    """``emodist train --context track``: the nine shares from each segment beside its track's mean."""
    from emodist.cli import main

    out = tmp_path_factory.mktemp("context") / "model"
    assert main(["train", store, "--features", "handcrafted", "--target", "shares", "--context",
                 "track", "--classifier", "ridge", "--folds", "4", "--seed", "1", "--workers", "1",
                 "--out", str(out), "--quiet"]) == 0
    return load_trained(out)


def test_context_model_onnx_is_sklearn_on_the_joined_rows(store, context_model):
    """The graph on ``track_context(X, track_id)`` of real segments is scikit-learn's fit on it."""
    from emodist.learn.data import track_context
    from emodist.learn.regression import fit_columns, resolve_regression_presets
    from emodist.models.trained import run_trained

    d = load_vote_data(store, "handcrafted")
    X = d.X["handcrafted"]
    joined = track_context(X, d.track_id)
    assert joined.shape == (len(X), 2 * X.shape[1]) == (len(X), context_model.input_width)
    fitted, _ = fit_columns(joined, d.profiles["listener"], d.groups,
                            preset=resolve_regression_presets(["ridge"])[0], seed=1)
    want = ColumnRegressors(fitted).predict(joined.astype(np.float32).astype(np.float64))
    got = run_onnx(Path(context_model.onnx_path).read_bytes(), joined.astype(np.float32))
    assert np.abs(got - want).max() <= TOL
    # the model joins the rows itself from the segments and their tracks
    assert np.abs(run_trained(context_model, X, tracks=d.track_id) - want).max() <= TOL
    # without the context the graph cannot even be fed: it takes twice the columns
    with pytest.raises(EmodistError, match="give the rows' tracks"):
        run_trained(context_model, X)


def test_context_model_cv_is_evaluate_with_the_context(store, context_model):
    card = context_model.card
    assert card["context"] == "track" and card["cv"]["context"] == "track"
    report = evaluate_votes(store, target="shares", features="handcrafted", presets=["ridge"],
                            n_folds=4, seed=1, context="track")
    row = json_safe(report["sets"]["handcrafted"]["results"][0]["metrics"])
    assert card["cv"]["regression"] == row
    plain = evaluate_votes(store, target="shares", features="handcrafted", presets=["ridge"],
                           n_folds=4, seed=1)
    assert json_safe(plain["sets"]["handcrafted"]["results"][0]["metrics"]) != row
    assert "context: track" in "\n".join(describe_trained(context_model))


def test_a_card_whose_context_disagrees_with_its_graph_is_refused(context_model, tmp_path):
    import shutil

    from emodist.errors import ModelError

    folder = tmp_path / "edited"
    shutil.copytree(context_model.path, folder)
    card = json.loads((folder / "model.json").read_text())
    p = len(context_model.feature_names)
    for context, message in ((None, (f"takes {2 * p} columns; the card's inputs with context "
                                     f"'none' give {p}")),
                             ("album", "unknown context 'album'")):
        edited = {k: v for k, v in card.items() if k != "context"}
        if context is not None:
            edited["context"] = context
        (folder / "model.json").write_text(json.dumps(edited))
        with pytest.raises(ModelError, match=message) as info:
            load_trained(folder)
        assert "\n" not in str(info.value)
    # a plain model's card made to say "track" is refused the same way
    card["context"], card["onnx"]["input"]["shape"] = "none", [None, 2 * p]
    (folder / "model.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="with context 'none' give"):
        load_trained(folder)


@pytest.mark.parametrize("target", ["class", "factors", "distribution"])
def test_context_with_a_class_target_is_one_line(store, tmp_path, capsys, target):
    from emodist.cli import main

    assert main(["train", store, "--features", "handcrafted", "--target", target, "--context",
                 "track", "--classifier", "logistic-regression", "--out", str(tmp_path / "m"),
                 "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].count("--context") == 1
    assert f"--context: track is for --target shares, tags or continuous columns; --target " \
           f"{target} takes each segment's own features" in err[0]
    assert not (tmp_path / "m").exists()
