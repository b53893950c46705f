"""A model trained with a track context predicts new music: each segment beside its own track's mean.

On real segments (handcrafted features of 16 Emotify tracks, four 15 s
segments each): ``emodist train --context track`` fits the nine vote shares
on 12 tracks; ``emodist predict`` on the audio of the 4 held-out tracks, into
a store whose chunks of 3 segments cut every track, and in this process for
one file, gives what the same scikit-learn fit gives on those tracks' stored
features joined with their track means.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from emodist.cli import main
from emodist.engine.predict import predict_files
from emodist.learn.data import track_context
from emodist.learn.export import ColumnRegressors
from emodist.learn.regression import fit_columns, resolve_regression_presets
from emodist.learn.train import run_train
from emodist.learn.votes import load_vote_data
from emodist.models.trained import load_trained
from emodist.store import open_store
from tests.learn.emotify_store import small_emotify_store

TOL = 1e-5


@pytest.fixture(scope="module")
def setup(emotify_root, tmp_path_factory):
    store = small_emotify_store(emotify_root, tmp_path_factory)
    base = tmp_path_factory.mktemp("context-predict")
    d = load_vote_data(store, "handcrafted")
    tracks = list(dict.fromkeys(d.track_id))
    held = tracks[1::4]
    train = np.array([t not in held for t in d.track_id])
    model = run_train(store, features="handcrafted", classifier="ridge", target="shares",
                      context="track", folds=3, out=base / "model", name="shares", n_jobs=1,
                      tracks=[t for t in tracks if t not in held])
    # the same final fit, here: the joined training rows, the preset's in-fold search
    X = track_context(d.X["handcrafted"], d.track_id)
    preset = resolve_regression_presets(["ridge"])[0]
    fitted, _ = fit_columns(X[train], d.profiles["listener"][train], d.groups[train],
                            preset=preset, seed=0)
    want = ColumnRegressors(fitted).predict(X[~train])
    # the held-out tracks' audio, linked under new names
    paths = open_store(store)["path"].values.astype(str)
    audio = base / "new"
    audio.mkdir()
    names = {}
    for k, track in enumerate(held):
        src = paths[np.flatnonzero(d.track_id == track)[0]]
        os.symlink(src, audio / f"song{k}.mp3")
        names[f"song{k}"] = track
    return {"model": model, "want": want, "held_ids": d.track_id[~train], "audio": audio,
            "names": names, "base": base}


def _expected(setup, track):
    """The scikit-learn values of ``track``'s segments, in order."""
    return setup["want"][setup["held_ids"] == track]


def test_card_records_the_context_and_the_joined_input(setup):
    model = setup["model"]
    p = len(model.feature_names)
    assert model.context == "track" and model.input_width == 2 * p
    assert model.card["context"] == "track"
    assert model.card["onnx"]["input"]["shape"] == [None, 2 * p]
    assert "mean of each over the segment's track" in model.card["onnx"]["input"]["columns"]
    assert load_trained(model.path).context == "track"


def test_predict_into_a_store_with_tracks_cut_by_chunks(setup, capsys):
    store = str(setup["base"] / "p.zarr")
    assert main(["predict", str(setup["audio"]), "--model", setup["model"].path, "--store", store,
                 "--chunk-segments", "3", "--workers", "1", "--quiet"]) == 0
    ds = open_store(store)
    assert ds["handcrafted"].chunks[0][0] == 3  # every 4-segment track crosses a chunk edge
    done = ds["shares_status"].values == 1
    assert done.all() and len(done) == 16
    got = ds["shares"].values.astype(np.float64)
    paths = ds["path"].values.astype(str)
    seen = set()
    for name, track in setup["names"].items():
        rows = np.flatnonzero([Path(p).stem == name for p in paths])
        want = _expected(setup, track)
        assert len(rows) == len(want) == 4
        np.testing.assert_allclose(got[rows], want, rtol=0, atol=TOL)
        seen.add(name)
    assert len(seen) == 4
    # each segment's own features alone would give other values: the context is used
    assert np.ptp(got, axis=0).max() > 0


def test_predict_one_file_here(setup):
    name, track = next(iter(setup["names"].items()))
    found = predict_files(str(setup["audio"] / f"{name}.mp3"), setup["model"])
    got = found.segments[list(setup["model"].classes)].to_numpy()
    np.testing.assert_allclose(got, _expected(setup, track), rtol=0, atol=TOL)


def test_predict_a_folder_here_one_segment_at_a_time_keeps_tracks_whole(setup):
    """Chunks of one segment would cut every track: they grow to whole tracks instead, so
    each segment still meets its own track's mean."""
    from emodist.spec import Runtime

    found = predict_files(str(setup["audio"]), setup["model"], Runtime(progress=False, chunk=1))
    got = found.segments
    assert len(got) == 16
    for name, track in setup["names"].items():
        rows = got[got["track_id"] == f"{name}.mp3"]
        np.testing.assert_allclose(rows[list(setup["model"].classes)].to_numpy(),
                                   _expected(setup, track), rtol=0, atol=TOL)
