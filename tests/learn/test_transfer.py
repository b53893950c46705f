"""A model trained on one store scored on another: ``emodist evaluate --model``."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import yaml
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from emodist.cli import main
from emodist.data.labels import GEMS
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


# --------------------------------------------------------------------------
# Regression and tag models on another store.
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vote_models(tmp_path_factory):
    """A regression of two shares and a tag model, trained on one generated store."""
    root = tmp_path_factory.mktemp("transfer-votes")
    store = make_store(root / "train.zarr", n_tracks=24, n_segments=2, seed=4)
    reg = run_train(store, features="handcrafted", classifier="ridge",
                    target=["calmness", "tension"], folds=4, out=root / "reg", n_jobs=1)
    tags = run_train(store, features="handcrafted", classifier="logistic-regression",
                     target="tags", folds=4, min_tracks=2, out=root / "tags", n_jobs=1)
    return reg, tags


@pytest.fixture(scope="module")
def voted(tmp_path_factory):
    """Another generated store with votes, and a numeric per-segment variable ``calm``."""
    import xarray as xr

    from emodist.store.zarrio import replace_variables

    arrays = make_arrays(n_tracks=20, n_segments=3, seed=11)
    store = write(build(arrays, deep=False), tmp_path_factory.mktemp("voted") / "other.zarr")
    calm = arrays["votes"][:, list(GEMS).index("calmness")].astype(np.float64) + 0.01
    replace_variables(store, xr.Dataset({"calm": (("segment",), calm)}))
    return store, arrays


def _onnx(model, store):
    ds = open_store(store)
    X = np.asarray(ds["handcrafted"].sel(handcrafted_feature=model.feature_names).values,
                   np.float32)
    sess = ort.InferenceSession(model.onnx_path, providers=["CPUExecutionProvider"])
    return sess.run([model.output], {model.input_name: X})[0].astype(np.float64), ds


def _ccc(y, p):
    return 2 * np.cov(y, p, bias=True)[0, 1] / (y.var() + p.var() + (y.mean() - p.mean()) ** 2)


def test_regression_scores_equal_numpy_on_the_onnx_values(vote_models, voted):
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import r2_score

    model, _ = vote_models
    store, arrays = voted
    report = run_transfer(model.path, store, mapping={"calmness": "calm"})
    assert report["kind"] == "regression" and report["data"]["targets"] == ["calm", "tension"]
    P, ds = _onnx(model, store)
    Y = np.column_stack([ds["calm"].values, arrays["votes"][:, list(GEMS).index("tension")]])
    tracks = ds["track_id"].values.astype(str)
    Yt = pd.DataFrame(Y).groupby(tracks, sort=False).mean().to_numpy()
    Pt = pd.DataFrame(P).groupby(tracks, sort=False).mean().to_numpy()
    for level, (y, p) in {"segment": (Y, P), "track": (Yt, Pt)}.items():
        for j, t in enumerate(["calm", "tension"]):
            got = report["regression"][level][t]
            assert got["r2"]["pooled"] == pytest.approx(r2_score(y[:, j], p[:, j]))
            assert got["r2"]["mean"] == pytest.approx(got["r2"]["pooled"])  # one fold
            assert got["rmse"]["pooled"] == pytest.approx(np.sqrt(np.mean((y[:, j] - p[:, j]) ** 2)))
            assert got["pearson"]["pooled"] == pytest.approx(pearsonr(y[:, j], p[:, j])[0])
            assert got["spearman"]["pooled"] == pytest.approx(spearmanr(y[:, j], p[:, j])[0])
            assert got["ccc"]["pooled"] == pytest.approx(_ccc(y[:, j], p[:, j]))
    np.testing.assert_allclose(report["predictions"]["predicted"], P, atol=1e-12)
    assert report["mapping"]["classes"] == {"calmness": "calm", "tension": "tension"}
    assert report["unseen"]["model_columns"] == []
    assert "calmness" in report["unseen"]["store_targets"]  # the store's share no column predicts
    assert "tension" not in report["unseen"]["store_targets"]
    means = model.card["training"]["targets"]
    base = report["baseline"]["train_mean"]["segment"]["tension"]["r2"]["pooled"]
    assert base == pytest.approx(r2_score(Y[:, 1], np.full(len(Y), means["tension"]["mean"])))
    # without the mapping only the column of the same name is scored
    plain = run_transfer(model.path, store)
    assert plain["data"]["targets"] == ["calmness", "tension"]
    assert plain["regression"]["segment"]["tension"] == report["regression"]["segment"]["tension"]


def test_tag_scores_equal_scikit_learn_on_the_onnx_probabilities(vote_models, voted):
    from sklearn.metrics import average_precision_score, roc_auc_score

    from emodist.learn.multilabel import top_k_tags

    _, model = vote_models
    store, arrays = voted
    report = run_transfer(model.path, store, mapping={"calmness": "sadness"})
    P, _ = _onnx(model, store)
    T_all = top_k_tags(arrays["votes"].astype(np.float64), k=3)
    classes = list(model.classes)
    mapped = {c: ("sadness" if c == "calmness" else c) for c in classes}
    tags = list(dict.fromkeys(mapped.values()))
    S = np.column_stack([np.max([P[:, j] for j, c in enumerate(classes) if mapped[c] == t], axis=0)
                         for t in tags])
    T = T_all[:, [list(GEMS).index(t) for t in tags]]
    ok = (T.sum(axis=0) > 0) & (T.sum(axis=0) < len(T))
    assert report["data"]["tags"] == [t for t, k in zip(tags, ok) if k]
    assert report["unscorable"] == [t for t, k in zip(tags, ok) if not k]
    seg = report["multilabel"]["segment"]
    assert seg["roc_auc_macro"]["pooled"] == pytest.approx(
        roc_auc_score(T[:, ok], S[:, ok], average="macro"))
    assert seg["roc_auc_micro"]["pooled"] == pytest.approx(
        roc_auc_score(T[:, ok], S[:, ok], average="micro"))
    assert seg["pr_auc_macro"]["pooled"] == pytest.approx(
        average_precision_score(T[:, ok], S[:, ok], average="macro"))
    assert seg["pr_auc_micro"]["pooled"] == pytest.approx(
        average_precision_score(T[:, ok], S[:, ok], average="micro"))
    assert report["mapping"]["classes"]["calmness"] == "sadness"
    assert "calmness" in report["unseen"]["store_tags"]  # mapped away: no model tag is it now
    assert report["unseen"]["store_tags"]["calmness"] == int(T_all[:, GEMS.index("calmness")].sum())
    assert seg["roc_auc_macro"]["pooled"] > 0.5


def test_regression_and_tag_reports_through_the_cli(vote_models, voted, tmp_path, capsys):
    reg, tags = vote_models
    store, _ = voted
    mapping = tmp_path / "map.yaml"
    mapping.write_text("calmness: calm\n")
    capsys.readouterr()
    assert main(["evaluate", "--model", reg.path, store, "--map", str(mapping), "--out",
                 str(tmp_path / "reg")]) == 0
    text = capsys.readouterr().out
    assert "| calm | segment |" in text and "| calmness | calm |" in text
    report = json.loads((tmp_path / "reg" / "report.json").read_text())
    assert report["kind"] == "regression" and report["mapping"]["file"] == str(mapping)
    assert main(["evaluate", "--model", tags.path, store]) == 0
    text = capsys.readouterr().out
    assert "roc_auc_macro" in text and "Store tags the model has no tag for" in text


@pytest.fixture(scope="module")
def valence_model(tmp_path_factory):
    """A regression of a numeric per-segment variable the other store does not hold."""
    import xarray as xr

    from emodist.store.zarrio import replace_variables

    root = tmp_path_factory.mktemp("valence")
    store = make_store(root / "train.zarr", n_tracks=16, n_segments=2, seed=5)
    X = open_store(store)["handcrafted"].values.astype(np.float64)
    replace_variables(store, xr.Dataset({"valence": (("segment",), X[:, :3].mean(axis=1))}))
    return run_train(store, features="handcrafted", classifier="ridge", target=["valence"],
                     folds=4, out=root / "model", n_jobs=1)


@pytest.mark.parametrize(("which", "mapping", "message"), [
    ("reg", {"calmness": "valence", "tension": "arousal"},
     "--map: 'valence' is not a target of this store; it has emotions (amazement, "),
    ("valence", None, ("--map: no column of the model (valence) is a target of the store (its "
                      "emotions and numeric per-segment variables: amazement, ")),
    ("tags", {"calmness": "calm"}, "--map: 'calm' is not a tag of the store (its tags: amazement"),
])
def test_no_overlap_is_one_line(vote_models, valence_model, voted, tmp_path, capsys, which,
                                mapping, message):
    model = {"reg": vote_models[0], "tags": vote_models[1], "valence": valence_model}[which]
    store, _ = voted
    argv = ["evaluate", "--model", model.path, store]
    if mapping:
        (tmp_path / "m.yaml").write_text(yaml.safe_dump(mapping))
        argv += ["--map", str(tmp_path / "m.yaml")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err
    if which == "valence":
        assert ", calm); give a mapping file" in err  # the store's variable is among its targets


def test_columns_of_the_model_onto_no_store_target_are_one_line(vote_models, voted):
    reg, _ = vote_models
    store, _ = voted
    with pytest.raises(EmodistError, match="not a class of the model") as info:
        run_transfer(reg.path, store, mapping={"valence": "calm"})
    assert info.value.param == "map"


def test_a_context_model_joins_each_segment_with_its_track_on_the_store(voted, tmp_path):
    from emodist.learn.data import track_context
    from emodist.learn.export import run_onnx

    train = make_store(tmp_path / "train.zarr", n_tracks=16, n_segments=2, seed=6)
    model = run_train(train, features="handcrafted", classifier="ridge", target="shares",
                      context="track", folds=4, out=tmp_path / "m", n_jobs=1)
    store, _ = voted
    report = run_transfer(model.path, store)
    ds = open_store(store)
    X = ds["handcrafted"].sel(handcrafted_feature=model.feature_names).values
    joined = track_context(X, ds["track_id"].values.astype(str)).astype(np.float32)
    want = run_onnx(Path(model.onnx_path).read_bytes(), joined)
    np.testing.assert_allclose(report["predictions"]["predicted"], want, atol=1e-12)
    assert report["model"]["context"] == "track"
