"""Vote shares and tags of a real (generated) Zarr store (emodist.learn.votes)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from emodist.errors import EmodistError
from emodist.learn.votes import evaluate_votes, load_vote_data, vote_tags, write_vote_report
from tests import stores


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("votes") / "store.zarr"
    arrays = stores.make_arrays(n_tracks=20, n_segments=2)
    return stores.write(stores.build(arrays, deep=False), path), arrays


def test_profiles_are_the_stored_votes(store):
    path, arrays = store
    data = load_vote_data(path, "handcrafted")
    np.testing.assert_allclose(data.profiles["listener"], arrays["votes"], rtol=1e-6)
    np.testing.assert_allclose(data.profiles["mean"], arrays["votes_mean"], rtol=1e-6)
    tags = vote_tags(data)
    assert (tags.sum(axis=1) == 3).all()
    top = np.argmax(arrays["votes"], axis=1)
    assert tags[np.arange(len(top)), top].all()


def test_shares_report_files(store, tmp_path):
    path, _ = store
    report = evaluate_votes(path, target="shares", features="handcrafted", presets=["ridge"],
                            plots_dir=tmp_path / "plots")
    assert report["kind"] == "regression" and report["n_tracks"] == 20
    res = report["sets"]["handcrafted"]
    assert len(res["targets"]) == 9 and res["results"][0]["pred"].shape == (40, 9)
    json_path, md_path = write_vote_report(report, tmp_path)
    back = json.loads(json_path.read_text())
    assert "pred" not in back["sets"]["handcrafted"]["results"][0]
    assert back["sets"]["handcrafted"]["baseline"]["segment"]["calmness"]["pearson"]["mean"] is None
    md = md_path.read_text()
    assert "| ridge | segment |" in md and "| train mean | track |" in md
    assert (tmp_path / "plots" / "handcrafted" / "scatter_ridge_calmness.png").is_file()


def test_tags_report_lists_kept_and_dropped_tags(store, tmp_path):
    path, _ = store
    report = evaluate_votes(path, target="tags", features="handcrafted",
                            presets=["logistic-regression"], min_tracks=3, inner_folds=2)
    res = report["sets"]["handcrafted"]
    assert sorted(res["tags"] + list(res["dropped"])) == sorted(load_vote_data(path).emotions)
    assert res["baseline"]["segment"]["roc_auc_macro"]["mean"] == pytest.approx(0.5)
    _, md_path = write_vote_report(report, tmp_path)
    assert "| logistic-regression |" in md_path.read_text()


def test_unknown_target_column_is_one_line(store):
    path, _ = store
    with pytest.raises(EmodistError, match="'valence' is not a target of this store; it has "
                       r"emotions \(amazement, .*\); .*the store names no dataset") as err:
        evaluate_votes(path, target=["valence"], features="handcrafted")
    assert err.value.param == "target" and "\n" not in str(err.value)


def test_cli_shares_and_tags(store, tmp_path, capsys):
    from emodist.cli import main

    path, _ = store
    out = tmp_path / "shares"
    assert main(["evaluate", path, "--target", "shares", "--features", "handcrafted",
                 "--classifiers", "ridge", "--out", str(out)]) == 0
    assert "handcrafted: ridge mean R2" in capsys.readouterr().out
    assert json.loads((out / "report.json").read_text())["kind"] == "regression"
    assert (out / "plots" / "handcrafted" / "scatter_ridge_tension.png").is_file()
    assert main(["evaluate", path, "--target", "tags", "--features", "handcrafted",
                 "--classifiers", "svm"]) == 2
    assert "--classifiers: unknown multi-label model 'svm'" in capsys.readouterr().err
