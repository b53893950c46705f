"""A trained model recognises held-out audio exactly as its cross-validation says.

On the shared Emotify tracks: handcrafted features of every track in a store;
``emodist evaluate``'s grouped folds; a model trained (``emodist train``'s
``run_train``) on the tracks of four folds; the fifth fold's audio predicted
from scratch into a new store (``emodist predict``'s ``run_predict``).  The
predicted probabilities must equal the out-of-fold probabilities of that fold,
fit by the same function evaluation fits with, within 1e-5.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest

from emodist.engine.extract import run_extract
from emodist.engine.predict import run_predict
from emodist.features import make_groups
from emodist.learn.data import load_data, open_dataset
from emodist.learn.evaluate import run_evaluate
from emodist.learn.runs import fit_predict_proba
from emodist.learn.train import run_train
from emodist.spec import ExtractionSpec, Runtime

PRESET = "logistic-regression"
HELD_OUT = 2  # the fold whose audio is predicted

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=":0") as cluster, Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def store(emotify_root, tmp_path_factory, client) -> str:
    url = str(tmp_path_factory.mktemp("recognise") / "emotify.zarr")
    spec = ExtractionSpec(groups=make_groups(["handcrafted"]))
    res = run_extract(str(emotify_root), url, spec, Runtime(client=client, progress=False))
    assert res.n_failed == 0 and res.n_done == res.n_segments > 300
    return url


def test_held_out_audio_is_recognised_as_its_out_of_fold_probabilities(store, tmp_path, client):
    report = run_evaluate(store, features="handcrafted", classifiers=[PRESET], folds=5, seed=0,
                          n_jobs=1, ceiling=False, progress=False)
    folds = report["folds"]
    data = load_data(open_dataset(store), "handcrafted")
    assert list(data.segment_id) == list(folds["segment_id"])  # the evaluation's segments
    fold = np.asarray(folds["fold"])
    test = fold == HELD_OUT
    _, oof = fit_predict_proba(data.X["handcrafted"], data.y, fold, HELD_OUT, PRESET, 0, False,
                               soft=data.soft, classes=data.classes)

    train_tracks = sorted(set(data.track_id[~test]))
    held_tracks = sorted(set(data.track_id[test]))
    assert not set(train_tracks) & set(held_tracks)
    model = run_train(store, features="handcrafted", classifier=PRESET, out=tmp_path / "model",
                      tracks=train_tracks, n_jobs=1)
    assert model.card["training"]["n_tracks"] == len(train_tracks)

    ds = open_dataset(store)
    paths = {str(t): str(p) for t, p in zip(ds["track_id"].values, ds["path"].values)}
    manifest = tmp_path / "held_out.csv"
    with open(manifest, "w", newline="") as f:
        csv.writer(f).writerows([["path"]] + [[paths[t]] for t in held_tracks])
    result = run_predict(str(manifest), model, str(tmp_path / "predicted.zarr"),
                         Runtime(client=client, progress=False))
    assert result.extract.n_failed == 0

    starts = np.asarray(ds["start_s"].values, np.float64)
    expected = {(paths[str(t)], float(s)): row for t, s, row in
                zip(data.track_id[test], starts[np.isin(ds["segment"].values, data.segment_id[test])],
                    oof)}
    got = result.segments
    assert len(got) == len(expected) == int(test.sum())
    order = [data.classes.index(c) for c in model.classes]
    worst = 0.0
    for _, seg in got.iterrows():
        want = expected[(seg["path"], float(seg["start_s"]))][order]
        worst = max(worst, float(np.abs(seg[list(model.classes)].to_numpy(float) - want).max()))
    print(f"{len(got)} held-out segments, largest difference {worst:.2e}")
    assert worst <= 1e-5, worst
