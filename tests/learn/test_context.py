"""A segment's features joined with its track's mean features (emodist.learn.data.track_context)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from emodist.cli import main
from emodist.learn.data import track_context
from emodist.learn.folds import make_folds
from emodist.learn.regression import evaluate_regression
from emodist.learn.votes import evaluate_votes, load_vote_data
from tests import stores


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("context") / "store.zarr"
    return stores.write(stores.build(stores.make_arrays(n_tracks=20, n_segments=3), deep=False),
                        path)


def test_track_context_is_the_pandas_group_mean():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(11, 4))
    tracks = np.array(list("abcab") + list("ccdda") + ["e"])
    got = track_context(X, tracks)
    means = pd.DataFrame(X).groupby(tracks).transform("mean").to_numpy()
    np.testing.assert_array_equal(got[:, :4], X)
    np.testing.assert_allclose(got[:, 4:], means, rtol=0, atol=1e-15)
    # a track of one row is its own context
    np.testing.assert_array_equal(got[-1, 4:], X[-1])


def test_shares_with_track_context_equal_a_regression_on_the_joined_matrix(store):
    report = evaluate_votes(store, target="shares", features="handcrafted", presets=["ridge"],
                            context="track", inner_folds=2)
    assert report["config"]["context"] == "track"
    data = load_vote_data(store, "handcrafted")
    X = data.X["handcrafted"]
    joined = np.hstack([X, pd.DataFrame(X).groupby(data.track_id).transform("mean").to_numpy()])
    folds = make_folds(data.labels, data.groups, 5, 0, unit="tracks")
    direct = evaluate_regression(joined, data.profiles["listener"], names=list(data.emotions),
                                 groups=data.groups, folds=folds, tracks=data.track_id,
                                 presets=("ridge",), seed=0, inner_folds=2)
    got = report["sets"]["handcrafted"]["results"][0]["pred"]
    np.testing.assert_allclose(got, direct["results"][0]["pred"], rtol=1e-9, atol=1e-12)
    plain = evaluate_votes(store, target="shares", features="handcrafted", presets=["ridge"],
                           inner_folds=2)
    assert not np.allclose(plain["sets"]["handcrafted"]["results"][0]["pred"], got)


def test_context_with_a_class_target_is_one_line(store, capsys):
    assert main(["evaluate", str(store), "--context", "track", "--classifiers", "quick"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--context track is for --target shares or tags" in err[0]
