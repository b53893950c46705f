"""Train then predict for every kind of target: the store's variables, coordinates and tables.

On generated music (16 tracks to train on, 4 new ones): ``emodist train``
fits a regression of the nine vote shares, a regression of two named
columns and a multi-label tag model; ``emodist predict`` writes each one's
``MODEL(segment, output)`` with the output coordinate naming the target
columns or tags, the per-track means, and the dominant emotion and factor
shares only where they apply.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emodist.cli import main
from emodist.data.demo import make_demo_dataset
from emodist.data.labels import GEMS
from emodist.engine.predict import predict_files
from emodist.errors import EmodistError
from emodist.learn.export import run_onnx
from emodist.learn.targets import FACTOR_OF, FACTORS
from emodist.learn.train import run_train
from emodist.models.trained import load_trained
from emodist.store import layout, open_store
from emodist.store.select import by_emotion


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("targets")
    make_demo_dataset(root / "train", n_tracks=16, seed=5, duration_s=8.0)
    assert main(["extract", str(root / "train"), "--store", str(root / "features.zarr"),
                 "--features", "handcrafted", "--segment-seconds", "4", "--workers", "1",
                 "--quiet"]) == 0
    make_demo_dataset(root / "new", n_tracks=4, seed=6, duration_s=8.0)
    return root


@pytest.fixture(scope="module")
def models(root):
    store = str(root / "features.zarr")
    common = ["--features", "handcrafted", "--folds", "4", "--workers", "1", "--quiet"]
    assert main(["train", store, "--target", "shares", "--classifier", "ridge", "--name", "shares",
                 "--out", str(root / "shares"), *common]) == 0
    assert main(["train", store, "--target", "calmness", "power", "--classifier", "knn",
                 "--name", "cp", "--out", str(root / "cp"), *common]) == 0
    assert main(["train", store, "--target", "tags", "--classifier", "logistic-regression",
                 "--min-tracks", "3", "--name", "tags", "--out", str(root / "tags"), *common]) == 0
    return {name: load_trained(root / name) for name in ("shares", "cp", "tags")}


@pytest.fixture(scope="module")
def predicted(root, models):
    store = str(root / "p.zarr")
    for name in models:
        assert main(["predict", str(root / "new"), "--model", str(root / name), "--store", store,
                     "--workers", "1", "--quiet"]) == 0
    return open_store(store)


def test_models_know_their_kind_and_outputs(models):
    assert models["shares"].kind == "regression" and models["shares"].classes == GEMS
    assert models["cp"].kind == "regression" and models["cp"].classes == ("calmness", "power")
    assert models["cp"].target == "calmness+power"
    assert models["tags"].kind == "multilabel" and set(models["tags"].classes) <= set(GEMS)
    assert models["shares"].output == models["shares"].outputs["values"]
    assert models["tags"].output == models["tags"].outputs["probabilities"]


@pytest.mark.parametrize("name", ["shares", "cp", "tags"])
def test_segment_outputs_are_the_models_on_the_stored_features(predicted, models, name):
    ds, model = predicted, models[name]
    assert ds[name].dims == ("segment", f"{name}_feature")
    assert [str(c) for c in ds[f"{name}_feature"].values] == list(model.classes)
    X = ds["handcrafted"].sel(handcrafted_feature=model.feature_names).values
    done = ds[f"{name}_status"].values == 1
    assert done.sum() == 8  # 4 tracks of two 4 s segments
    want = run_onnx(Path(model.onnx_path).read_bytes(), X[done])
    np.testing.assert_allclose(ds[name].values[done], want, atol=1e-5)
    tid = ds["track_id"].values.astype(str)
    tracks = ds[f"{name}_track"].values.astype(str)
    assert len(tracks) == 4
    for i, track in enumerate(tracks):  # per track: the mean of its segments
        np.testing.assert_allclose(ds[f"{name}_track_mean"].values[i],
                                   ds[name].values[tid == track].mean(axis=0), atol=1e-6)
    assert f"{name}_track_probability" not in ds  # probabilities of exclusive classes only


def test_dominant_and_factors_only_where_they_apply(predicted):
    ds = predicted
    shares = ds["shares_track_mean"].values
    dominant = list(layout.decode_strings(ds["shares_dominant"].values))
    assert dominant == [GEMS[j] for j in shares.argmax(axis=1)]
    factors = ds["shares_track_factors"]
    assert list(layout.decode_strings(factors["factor"].values)) == list(FACTORS)
    for k, factor in enumerate(FACTORS):  # the sums of the factor's predicted emotion shares
        cols = [j for j, e in enumerate(GEMS) if FACTOR_OF[e] == factor]
        np.testing.assert_allclose(factors.values[:, k], shares[:, cols].sum(axis=1), atol=1e-5)
    for name in ("cp", "tags"):  # two columns, or tags that are not exclusive
        assert f"{name}_dominant" not in ds and f"{name}_track_factors" not in ds
    with pytest.raises(EmodistError, match="several models"):
        by_emotion(ds, "calmness")


@pytest.mark.parametrize("name", ["shares", "cp", "tags"])
def test_every_kind_ranks_by_emotion_from_its_stored_values(predicted, models, name):
    """``query --emotion TAG --min P`` for tags and predicted shares too: the stored per-track
    means (or finished segments), at least ``min``, best first; a dominant class only where
    the model has one."""
    ds, model = predicted, models[name]
    emotion = model.classes[-1]
    col = list(model.classes).index(emotion)
    tracks = ds[f"{name}_track_mean"].values[:, col]
    cut = float(np.median(tracks))
    got = by_emotion(ds, emotion, model=name, min=cut)
    want = sorted(((v, t) for v, t in zip(tracks, ds[f"{name}_track"].values.astype(str))
                   if v >= cut), reverse=True)
    assert list(got["track_id"]) == [t for _, t in want] and len(got) >= 2
    np.testing.assert_allclose(got[emotion], [v for v, _ in want], rtol=1e-6)
    assert ("dominant" in got) == (name == "shares")
    seg = by_emotion(ds, emotion, model=name, level="segment")
    done = ds[f"{name}_status"].values == 1
    assert len(seg) == done.sum() and seg[emotion].is_monotonic_decreasing
    assert sorted(seg[emotion]) == sorted(ds[name].values[done, col])
    with pytest.raises(EmodistError, match="between 0 and 1"):
        by_emotion(ds, emotion, model=name, min=60)  # shares and probabilities: a percentage


def test_tables_print_what_each_kind_means(root, models, capsys):
    song = str(min((root / "new").rglob("*.mp3")))
    capsys.readouterr()
    assert main(["predict", song, "--model", str(root / "cp")]) == 0
    out = capsys.readouterr().out
    assert "calmness " in out and "power " in out and "█" not in out
    assert out.count(" s  ") == 2  # each segment's values
    assert main(["predict", song, "--model", str(root / "tags")]) == 0
    out = capsys.readouterr().out
    assert ": tags " in out and "█" in out
    assert main(["predict", song, "--model", str(root / "shares")]) == 0
    out = capsys.readouterr().out
    assert "█" in out and "per segment:" in out
    here = predict_files(song, models["shares"])
    assert here.kind == "regression" and set(FACTORS) <= set(here.tracks.columns)
    assert here.tracks.loc[0, "dominant"] in GEMS


def test_python_api_trains_continuous_columns_of_a_store(root, tmp_path):
    model = run_train(str(root / "features.zarr"), features="handcrafted", classifier="pls",
                      target=["sadness"], folds=4, out=tmp_path / "m", n_jobs=1)
    assert model.card["target"]["columns"] == ["sadness"]
    assert model.card["cv"]["regression"]["segment"]["sadness"]["r2"]["folds"]
    with pytest.raises(EmodistError, match="'valence' is not a target of this store"):
        run_train(str(root / "features.zarr"), features="handcrafted", classifier="ridge",
                  target=["valence"], folds=4, out=tmp_path / "v", n_jobs=1)


def test_a_numeric_store_variable_is_a_continuous_target(root, tmp_path):
    """A per-segment column (valence, as annotations averaged per segment would give) is learnt."""
    import shutil

    import xarray as xr

    from emodist.store.zarrio import replace_variables

    store = str(tmp_path / "annotated.zarr")
    shutil.copytree(root / "features.zarr", store)
    ds = open_store(store)
    X = ds["handcrafted"].values.astype(np.float64)
    z = (X - X.mean(axis=0)) / (X.std(axis=0) + 1e-12)
    valence = z[:, :5].mean(axis=1) + 0.05 * np.random.default_rng(0).normal(size=len(z))
    replace_variables(store, xr.Dataset({"valence": (("segment",), valence)}))
    model = run_train(store, features="handcrafted", classifier="ridge", target=["valence"],
                      folds=4, out=tmp_path / "va", n_jobs=1)
    assert model.kind == "regression" and model.classes == ("valence",)
    assert model.card["target"] == {"kind": "regression", "name": "valence", "columns": ["valence"],
                                    "profile": None}
    cv = model.card["cv"]
    learnt = cv["regression"]["segment"]["valence"]["r2"]["mean"]
    baseline = cv["baseline"]["train_mean"]["segment"]["valence"]["r2"]["mean"]
    assert baseline <= 0 < learnt - 0.2  # 32 segments, 131 features: well above the mean
    assert model.card["onnx"]["check"]["max_abs_diff_vs_sklearn"] <= 1e-5
    out = str(tmp_path / "va.zarr")  # a value on its own scale: min is not a share
    assert main(["predict", str(root / "new"), "--model", str(tmp_path / "va"), "--store", out,
                 "--workers", "1", "--quiet"]) == 0
    means = open_store(out)[f"{model.name}_track_mean"].values[:, 0]
    top = by_emotion(open_store(out), "valence", min=float(means.max()) - 1e-6)
    assert len(top) == 1 and "dominant" not in top
    assert by_emotion(open_store(out), "valence", min=-100.0)["valence"].tolist() == sorted(
        means.astype(np.float64).tolist(), reverse=True)
