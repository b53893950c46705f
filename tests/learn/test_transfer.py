"""A model trained on one store scored on another: ``emodist evaluate --model``."""

from __future__ import annotations

import copy
import json

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import yaml
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from emodist.cli import main
from emodist.errors import EmodistError
from emodist.learn.train import run_train
from emodist.learn.transfer import class_mapping, read_mapping, run_transfer
from emodist.models.trained import load_trained
from emodist.store import open_store
from tests.stores import build, dataset, deep_names, make_arrays, make_store, write

#: The other dataset's names for three of the model's four classes.
RENAMED = {"calmness": "calm", "tension": "tense", "sadness": "sad"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("transfer")
    store = make_store(root / "train.zarr", n_tracks=24, n_segments=2, seed=4)
    out = root / "model"
    run_train(store, features="handcrafted", classifier="logistic-regression", out=out, n_jobs=1)
    return out


def _other_store(path, **attrs) -> tuple[str, pd.DataFrame]:
    """Another dataset: new tracks, the model's classes renamed, two labels it never saw."""
    arrays = make_arrays(n_tracks=20, n_segments=3, seed=11)
    plan = arrays["plan"]
    plan["label"] = plan["label"].map(lambda lab: RENAMED.get(lab, "happy"))
    plan.loc[plan["track_id"].isin(["0", "1"]), "label"] = "other"
    arrays["votes"] = arrays["votes_mean"] = None  # a dataset labelled by name, not by votes
    return write(build(arrays, deep=False, attrs=attrs or None), path), plan


@pytest.fixture(scope="module")
def other(tmp_path_factory):
    root = tmp_path_factory.mktemp("other")
    store, plan = _other_store(root / "other.zarr")
    mapping = root / "map.csv"
    mapping.write_text("model_class,store_label\n"
                       + "".join(f"{a},{b}\n" for a, b in RENAMED.items()))
    return store, plan, mapping


def _direct(model_dir, store, plan, mapping: dict):
    """The ONNX outputs, mapped and scored with scikit-learn alone."""
    model = load_trained(model_dir)
    ds = open_store(store)
    X = np.asarray(ds["handcrafted"].sel(handcrafted_feature=model.feature_names).values,
                   np.float32)
    sess = ort.InferenceSession(model.onnx_path, providers=["CPUExecutionProvider"])
    proba = sess.run([model.outputs["probabilities"]], {model.input_name: X})[0]
    labels = list(dict.fromkeys(mapping[c] for c in model.classes if c in mapping))
    summed = np.zeros((len(X), len(labels)))
    for j, c in enumerate(model.classes):
        if c in mapping:
            summed[:, labels.index(mapping[c])] += proba[:, j]
    y = plan["label"].to_numpy()
    keep = np.isin(y, labels)
    pred = np.asarray(labels)[summed.argmax(axis=1)][keep]
    return y[keep], pred, labels


def test_scores_equal_scikit_learn_on_the_onnx_outputs(model_dir, other):
    store, plan, mapping = other
    report = run_transfer(model_dir, store, mapping=mapping)
    y, pred, labels = _direct(model_dir, store, plan, RENAMED)
    seg = report["segment"]
    assert report["data"]["classes"] == labels and report["data"]["n_segments"] == len(y)
    assert seg["accuracy"]["pooled"] == pytest.approx(accuracy_score(y, pred))
    assert seg["accuracy"]["mean"] == pytest.approx(accuracy_score(y, pred))
    assert seg["balanced_accuracy"]["pooled"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert seg["macro_f1"]["pooled"] == pytest.approx(
        f1_score(y, pred, average="macro", labels=labels, zero_division=0))
    assert report["predictions"]["predicted"] == pred.tolist()
    assert seg["accuracy"]["pooled"] > 0.5  # the renamed classes are the same music


def test_reports_what_the_model_never_saw(model_dir, other):
    store, plan, mapping = other
    report = run_transfer(model_dir, store, mapping=mapping)
    counts = plan["label"].value_counts()
    assert report["unseen"]["store_labels"] == {"happy": counts["happy"], "other": counts["other"]}
    assert report["unseen"]["model_classes"] == ["joyful_activation"]
    assert report["mapping"]["classes"]["joyful_activation"] is None
    assert report["data"]["excluded"]["label the model has no class for"] == (
        counts["happy"] + counts["other"])


def test_yaml_and_csv_mappings_agree(model_dir, other, tmp_path):
    store, _, mapping = other
    as_yaml = tmp_path / "map.yaml"
    as_yaml.write_text(yaml.safe_dump(RENAMED))
    assert read_mapping(as_yaml) == read_mapping(mapping) == RENAMED
    a = run_transfer(model_dir, store, mapping=as_yaml)
    b = run_transfer(model_dir, store, mapping=RENAMED)
    assert a["segment"]["accuracy"] == b["segment"]["accuracy"]


def test_two_classes_onto_one_label_add_their_probabilities(model_dir, other):
    store, plan, _ = other
    merged = {**RENAMED, "joyful_activation": "tense"}
    report = run_transfer(model_dir, store, mapping=merged)
    y, pred, _ = _direct(model_dir, store, plan, merged)
    assert report["segment"]["accuracy"]["pooled"] == pytest.approx(accuracy_score(y, pred))
    assert report["unseen"]["model_classes"] == []


def test_classes_match_by_name_without_a_mapping():
    mapping = class_mapping(["calmness", "power"], {"calmness", "tension"})
    assert mapping == {"calmness": "calmness", "power": None}
    with pytest.raises(EmodistError, match="'calm' is not a class of the model") as err:
        class_mapping(["calmness"], {"calm"}, {"calm": "calmness"})
    assert err.value.param == "map"


def test_cli_writes_the_report(model_dir, other, tmp_path, capsys):
    store, _, mapping = other
    out = tmp_path / "rep"
    assert main(["evaluate", "--model", str(model_dir), store, "--map", str(mapping),
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Never seen" in text and "happy" in text
    report = json.loads((out / "report.json").read_text())
    assert report["mapping"]["file"] == str(mapping)
    assert (out / "report.md").read_text().startswith("# handcrafted")


def test_a_store_written_otherwise_is_refused_by_field(model_dir, tmp_path, capsys):
    card = load_trained(model_dir).inputs[0].description
    changed = copy.deepcopy(card)
    changed["version"] = str(changed.get("version")) + "-other"
    store, _ = _other_store(tmp_path / "changed.zarr",
                            feature_groups={"handcrafted": changed})
    assert main(["evaluate", "--model", str(model_dir), store]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "--model: the model was trained on handcrafted with version=" in err


@pytest.mark.parametrize(("argv", "message"), [
    (["--map", "{bad}"], "--map: {bad}: expected the header model_class,store_label"),
    ([], ("--map: no class of the model (calmness, joyful_activation, sadness, tension) is a "
          "label of the store")),
    (["--map", "{map}", "--classifiers", "ridge"], "--classifiers: not with --model"),
    (["--map", "{map}", "--folds", "dataset"], "--folds: not with --model"),
])
def test_cli_errors_are_one_line(model_dir, other, tmp_path, capsys, argv, message):
    store, _, mapping = other
    bad = tmp_path / "bad.csv"
    bad.write_text("from,to\ncalmness,calm\n")
    argv = [a.format(bad=bad, map=mapping) for a in argv]
    assert main(["evaluate", "--model", str(model_dir), store, *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message.format(bad=bad) in err


def test_map_needs_a_model(other, capsys):
    store, _, mapping = other
    assert main(["evaluate", store, "--map", str(mapping)]) == 2
    assert "--map: give the model it maps (--model MODEL_DIR)" in capsys.readouterr().err


def test_a_store_without_the_group_is_refused(model_dir, tmp_path, capsys):
    arrays = make_arrays(n_tracks=8, n_segments=2, seed=1)
    ds = dataset(arrays["plan"], {"inception_v3": (deep_names(6), arrays["deep"],
                                                   arrays["status"])})
    store = write(ds, tmp_path / "deep.zarr")
    assert main(["evaluate", "--model", str(model_dir), store]) == 2
    assert ("--model: the model reads group 'handcrafted', which the store does not hold "
            "(it has inception_v3)") in capsys.readouterr().err
