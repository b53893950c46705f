"""``emodist train``: fit, training-time CV and calibration, ONNX + card, and the refusals."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import onnxruntime as ort
import pytest

from emodist.cli import main
from emodist.errors import EmodistError, ModelError
from emodist.learn.calibration import calibration_report, reliability
from emodist.learn.evaluate import run_evaluate
from emodist.learn.targets import FACTORS
from emodist.learn.train import best_from_report, run_train
from emodist.models.trained import CARD_FILE, describe_trained, is_model_dir, load_trained
from emodist.store import open_store
from tests.learn.emotify_store import small_emotify_store

PRESET = "soft-logistic-regression"


@pytest.fixture(scope="module")
def store(emotify_root, tmp_path_factory) -> str:
    return small_emotify_store(emotify_root, tmp_path_factory)


@pytest.fixture(scope="module")
def trained(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "model"
    return run_train(store, features="handcrafted", classifier=PRESET, out=out, n_jobs=1).card, out


def test_card_records_inputs_data_and_onnx(store, trained):
    card, out = trained
    ds = open_store(store)
    names = [str(n) for n in ds["handcrafted_feature"].values]
    assert card["inputs"] == [{"group": "handcrafted", "features": names,
                               "description": ds.attrs["feature_groups"]["handcrafted"]}]
    assert card["feature_names_sha256"] == hashlib.sha256("\n".join(names).encode()).hexdigest()
    onnx_bytes = (out / card["onnx"]["file"]).read_bytes()
    assert card["onnx"]["sha256"] == hashlib.sha256(onnx_bytes).hexdigest()
    assert card["onnx"]["file"] == "model.onnx" and card["onnx"]["input"]["dtype"] == "float32"
    labels = [str(v) for v in ds["label"].values]
    done = ds["handcrafted_status"].values == 1
    used = [lab for lab, ok in zip(labels, done) if ok and lab]
    assert card["training"]["n_segments"] == len(used) == sum(card["training"]["class_counts"].values())
    assert card["training"]["class_counts"] == {c: used.count(c) for c in card["classes"]}
    assert set(card["classes"]) == set(used)
    assert card["training"]["n_tracks"] == len(set(np.asarray(ds["track_id"].values)[done]))
    assert len(card["training"]["store_fingerprint"]) == 64
    assert card["onnx"]["check"]["max_abs_diff_vs_sklearn"] <= 1e-5
    assert card["preset"]["key"] == PRESET and card["label_rule"] == "listener"
    assert (out / "reliability.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert card["cv"]["segment"]["confusion"]["figure"] == "confusion.png"
    assert (out / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert is_model_dir(out)


def test_model_show_gives_each_class_recall_from_the_confusion_counts(trained):
    card, out = trained
    conf = card["cv"]["segment"]["confusion"]
    counts = np.asarray(conf["counts"])
    recall = 100 * np.diag(counts) / counts.sum(axis=1)
    text = "\n".join(describe_trained(load_trained(out)))
    line = next(x for x in text.splitlines() if "recall per class" in x)
    assert line.endswith("; confusion matrix confusion.png")
    for c, r in zip(conf["classes"], recall):
        assert f"{c} {r:.0f}%" in line, (c, r, line)
    # balanced accuracy over every out-of-fold segment is the mean of those recalls
    cv_line = next(x for x in text.splitlines() if "grouped CV, segments" in x)
    mean = 100 * card["cv"]["segment"]["balanced_accuracy"]["mean"]
    pooled = f"{recall.mean():.1f}% pooled over the folds"
    assert f"balanced accuracy {mean:.1f}%" in cv_line
    assert (pooled in cv_line) == (abs(recall.mean() - mean) >= 0.05), cv_line


def test_training_cv_is_the_evaluations(store, trained):
    """The card's figures are those of `emodist evaluate` with the same preset, folds and seed."""
    card, _ = trained
    report = run_evaluate(store, features="handcrafted", classifiers=[PRESET], n_jobs=1, ceiling=False)
    row = report["results"][0]
    for level in ("segment", "track"):
        for metric in ("accuracy", "balanced_accuracy", "macro_f1"):
            assert card["cv"][level][metric]["folds"] == pytest.approx(row[level][metric]["folds"])
    assert card["cv"]["segment"]["confusion"]["counts"] == row["segment"]["confusion"]["counts"]
    cal = card["cv"]["calibration"]
    assert 0.0 <= cal["ece"] <= 1.0 and 0.0 <= cal["classwise_ece"] <= 1.0
    assert sum(b["count"] for b in cal["top_label"]) == card["training"]["n_segments"]


def test_loaded_model_runs_on_stored_features(store, trained):
    card, out = trained
    model = load_trained(out)
    assert model.groups == ["handcrafted"] and model.classes == tuple(card["classes"])
    ds = open_store(store)
    X = np.asarray(ds["handcrafted"].sel(handcrafted_feature=model.feature_names).values, np.float32)
    sess = ort.InferenceSession(model.onnx_path, providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == [model.input_name]
    label, proba = sess.run([model.outputs["label"], model.outputs["probabilities"]],
                            {model.input_name: X})
    assert proba.shape == (len(X), len(model.classes))
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert list(label) == [model.classes[i] for i in np.argmax(proba, axis=1)]
    text = "\n".join(describe_trained(model))
    assert "handcrafted (131 features" in text and "ECE" in text


def test_reliability_of_known_bins():
    # 10 rows said 0.05 and none happened; 10 said 0.95 and 8 happened
    p = np.r_[np.full(10, 0.05), np.full(10, 0.95)]
    o = np.r_[np.zeros(10), np.ones(8), np.zeros(2)]
    r = reliability(p, o, n_bins=10)
    assert r["ece"] == pytest.approx(0.5 * 0.05 + 0.5 * 0.15)
    assert [b["count"] for b in r["bins"]] == [10, 10]
    proba = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.7, 0.3]])
    rep = calibration_report(proba, np.array(["a", "a", "b", "b"]), ["a", "b"], n_bins=10)
    # top label: 0.9 right, 0.6 right, 0.8 right, 0.7 wrong -> each bin alone
    assert rep["ece"] == pytest.approx((0.1 + 0.4 + 0.2 + 0.7) / 4)


def test_factors_target(store, tmp_path):
    card = run_train(store, features="handcrafted", classifier="logistic-regression",
                     target="factors", out=tmp_path / "f", n_jobs=1).card
    assert set(card["classes"]) <= set(FACTORS) and card["target"] == "factors"
    assert card["onnx"]["check"]["max_abs_diff_vs_sklearn"] <= 1e-5


def test_best_row_of_a_report():
    def row(features, clf, ba, balance="none"):
        return {"features": features, "classifier": clf, "balance": balance,
                "segment": {"balanced_accuracy": {"mean": ba}, "accuracy": {"mean": 0.5}}}

    report = {"settings": {"target": "class", "folds": 4, "seed": 3, "label_rule": "listener"},
              "store": {"url": "s.zarr"},
              "results": [row("handcrafted", "logistic-regression", 0.30),
                          row("handcrafted", "cubic-svm", 0.40),
                          row("handcrafted+musicnn_msd", "soft-logistic-regression", 0.35),
                          row("handcrafted", "bagged-trees", 0.38, balance="weights")]}
    best = best_from_report(report, "balanced_accuracy")
    assert (best["features"], best["classifier"]) == ("handcrafted+musicnn_msd", "soft-logistic-regression")
    assert (best["folds"], best["seed"], best["store"]) == (4, 3, "s.zarr")
    assert best["chosen_from"]["rank"] == 3 and best["chosen_from"]["value"] == 0.35
    report["results"] = [row("handcrafted", "cubic-svm", 0.4)]
    with pytest.raises(EmodistError, match="no row with an exportable preset"):
        best_from_report(report)


# --- the command line and its refusals --------------------------------------------------


def _refused(capsys, argv, *needles):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for n in needles:
        assert n in err, err
    return err


def test_cli_trains_and_shows(store, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["train", store, "--features", "handcrafted", "--classifier", "fine-knn",
                 "--out", str(out), "--jobs", "1", "--name", "knn"]) == 0
    assert "model knn" in capsys.readouterr().out
    assert main(["model", "show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "preset: fine-knn" in shown and "balanced accuracy" in shown
    assert main(["model", "show", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "knn"
    # an existing model folder is replaced
    assert main(["train", store, "--features", "handcrafted", "--classifier", "fine-knn",
                 "--out", str(out), "--jobs", "1"]) == 0
    assert load_trained(out).name == "handcrafted_fine_knn_class"


def test_cli_refusals(store, tmp_path, capsys):
    base = ["train", store, "--features", "handcrafted", "--out", str(tmp_path / "m")]
    _refused(capsys, base + ["--classifier", "no-such"], "--classifier: unknown preset 'no-such'",
             "soft-logistic-regression")
    _refused(capsys, base + ["--classifier", "cubic-svm"], "--classifier:", "cannot be exported",
             "soft-logistic-regression, ")
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    _refused(capsys, ["train", store, "--features", "handcrafted", "--classifier", PRESET,
                      "--out", str(taken)], "--out:", "not an emodist model folder")
    assert (taken / "notes.txt").read_text() == "mine"
    _refused(capsys, ["train", store, "--features", "inception_v3", "--classifier", PRESET,
                      "--out", str(tmp_path / "m")], "--features:", "'inception_v3'")
    assert not (tmp_path / "m").exists()


def test_tampered_or_escaping_model_is_refused_at_load(trained, tmp_path, capsys):
    _, out = trained
    tampered = tmp_path / "tampered"
    shutil.copytree(out, tampered)
    with open(tampered / "model.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelError, match="sha256"):
        load_trained(tampered)
    _refused(capsys, ["model", "show", str(tampered)], "sha256", "is not the card's")

    escaping = tmp_path / "escaping"
    shutil.copytree(out, escaping)
    card = json.loads((escaping / CARD_FILE).read_text())
    card["onnx"]["file"] = "../tampered/model.onnx"
    (escaping / CARD_FILE).write_text(json.dumps(card))
    _refused(capsys, ["model", "show", str(escaping)], "outside its folder")
    card["onnx"]["file"] = str(out / "model.onnx")  # absolute
    (escaping / CARD_FILE).write_text(json.dumps(card))
    _refused(capsys, ["model", "show", str(escaping)], "not a file name relative to its folder")


def test_cli_from_report(store, tmp_path, capsys):
    row = {"features": "handcrafted", "balance": "none", "segment": {"balanced_accuracy": {"mean": 0.4}}}
    report = {"settings": {"target": "class", "folds": 3, "seed": 1, "label_rule": "listener"},
              "store": {"url": store},
              "results": [{**row, "classifier": "cubic-svm"}, {**row, "classifier": "medium-knn"}]}
    (tmp_path / "rep").mkdir()
    (tmp_path / "rep" / "report.json").write_text(json.dumps(report))
    out = tmp_path / "best"
    assert main(["train", "--from-report", str(tmp_path / "rep"), "--out", str(out), "--jobs", "1"]) == 0
    capsys.readouterr()
    card = load_trained(out).card
    assert card["preset"]["key"] == "medium-knn" and card["cv"]["folds"] == 3
    assert card["chosen_from"]["rank"] == 2 and card["chosen_from"]["skipped_above"] == [
        "handcrafted/cubic-svm/none"]
    _refused(capsys, ["train", "--from-report", str(tmp_path / "rep"), "--classifier", "fine-knn",
                      "--out", str(out)], "--classifier: not with --from-report")


def test_auto_nested_choice(store, tmp_path, capsys):
    """--auto: each outer fold chooses by its own inner CV; the card keeps the outer figures."""
    out = tmp_path / "auto"
    assert main(["train", store, "--auto", "--features", "handcrafted", "--classifier", "fine-knn",
                 "medium-knn", "--folds", "3", "--out", str(out), "--jobs", "1"]) == 0
    printed = capsys.readouterr()
    assert "chosen by nested CV" in printed.out
    # progress over every fit: 3 outer folds and the final choice each run an inner 4-fold CV
    # of 1 feature set x 2 presets; then 3 outer fits
    fits = (3 + 1) * 1 * 2 * 4 + 3
    assert f"{fits}/{fits}" in printed.err and "ETA" in printed.err
    card = load_trained(out).card
    auto = card["chosen_from"]["auto"]
    assert [c["fold"] for c in auto["choices"]] == [0, 1, 2]
    assert set(auto["final"]["inner"]) == {"handcrafted/fine-knn", "handcrafted/medium-knn"}
    best = max(auto["final"]["inner"], key=auto["final"]["inner"].get)
    assert card["preset"]["key"] == best.split("/")[1] == auto["final"]["classifier"]
    assert auto["outer"]["segment"]["n"] == card["training"]["n_segments"]
    assert 0 <= auto["outer"]["calibration"]["ece"] <= 1
