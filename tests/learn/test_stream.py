"""Streamed evaluation: statistics, folds, fits and scores against direct computations."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import accuracy_score, balanced_accuracy_score
from sklearn.preprocessing import StandardScaler

from emodist.cli import main as cli_main
from emodist.errors import EmodistError
from emodist.learn import evaluate as ev
from emodist.learn import stream
from emodist.store import open_store
from emodist.store import select as select_mod
from tests.stores import CLASSES, build, make_arrays, make_store, write


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("stream") / "s.zarr", n_tracks=60, n_segments=4,
                      separation=1.0)


def test_fold_statistics_are_the_training_folds_standard_scaler():
    rng = np.random.default_rng(3)
    x = (rng.normal(size=(500, 6)) * [1, 10, 1e3, 0.01, 5, 1] + [0, 5, 1e4, -3, 0, 2]).astype(np.float32)
    x[:, 5] = 2.0  # a constant column
    fold = rng.integers(0, 4, size=500)
    stats = stream.FoldStats.empty(4, 6)
    for a, b in [(0, 37), (37, 38), (38, 300), (300, 500)]:  # uneven blocks
        stats.add(x[a:b], fold[a:b])
    for k in range(4):
        ref = StandardScaler().fit(x[fold != k].astype(np.float64))
        mean, scale = stats.training_scaler(k)
        np.testing.assert_allclose(mean, ref.mean_, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(scale, ref.scale_, rtol=1e-6)


def test_streamed_and_in_memory_evaluations_draw_the_same_folds(tmp_path):
    arrays = make_arrays(n_tracks=36, n_segments=3, seed=4)
    plan = arrays["plan"]
    track = plan["track_id"].astype(int)
    # pairs of tracks share a group, a few tracks have none (their track is the group)
    plan["group"] = np.where(track % 9 == 0, "", "g" + (track // 2).astype(str))
    arrays["status"][[4, 40, 41, 77]] = 0  # not extracted: left out by both
    path = write(build(arrays, deep=False), tmp_path / "f.zarr")
    memory = ev.run_evaluate(path, features=["handcrafted"], classifiers=["logistic-regression"],
                             folds=4, seed=3, n_jobs=1, ceiling=False)
    in_memory = dict(zip(memory["folds"]["segment_id"], memory["folds"]["fold"]))
    ds = open_store(path)
    rows = stream.stream_rows(ds.emodist.index, ["handcrafted"], CLASSES, n_folds=4, seed=3)
    streamed = dict(zip(np.asarray(ds["segment"].values, dtype=str)[rows.take].tolist(),
                        rows.fold[rows.take].tolist()))
    assert len(in_memory) == 36 * 3 - 4 and sorted(set(in_memory.values())) == [0, 1, 2, 3]
    assert streamed == in_memory
    assert memory["settings"]["group_by"] == rows.group_by == "group, else track_id"
    assert memory["settings"]["cv"] == rows.cv
    assert memory["data"]["n_groups"] == rows.n_groups
    other = stream.stream_rows(ds.emodist.index, ["handcrafted"], CLASSES, n_folds=4, seed=4)
    assert not np.array_equal(other.fold, rows.fold)
    with pytest.raises(EmodistError, match="cannot fill") as err:
        stream.stream_rows(ds.emodist.index, ["handcrafted"], CLASSES, n_folds=40, seed=0)
    assert err.value.param == "folds"


def test_one_block_one_epoch_is_sklearn_partial_fit_on_the_scaled_training_rows(store_path):
    ds = open_store(store_path)
    index = ds.emodist.index
    rows = stream.stream_rows(index, ["handcrafted"], CLASSES, n_folds=4, seed=0)
    chosen = {"handcrafted": list(range(10))}
    pred, proba = stream.stream_fit_predict(ds, chosen, rows, weights=False, seed=0, epochs=1,
                                            alpha=1e-3, block_bytes=10**9)
    x = np.asarray(ds["handcrafted"].values, np.float64)
    order = np.random.default_rng([0, 0, 0]).permutation(len(x))  # the block's seeded order
    expect = np.full(len(x), -1)
    for k in range(4):
        train = order[rows.fold[order] != k]
        test = np.flatnonzero(rows.fold == k)
        scaler = StandardScaler().fit(x[train])
        model = SGDClassifier(loss="log_loss", alpha=1e-3, average=True, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.partial_fit(scaler.transform(x[train]), rows.y[train], classes=np.arange(len(CLASSES)))
        expect[test] = model.predict(scaler.transform(x[test]))
    assert np.array_equal(pred, expect)
    np.testing.assert_allclose(proba.sum(axis=1), 1, atol=1e-5)


def test_report_scores_equal_sklearn_on_the_predictions(store_path):
    ds = open_store(store_path)
    rows = stream.stream_rows(ds.emodist.index, ["handcrafted"], CLASSES, n_folds=5, seed=0)
    pred, _ = stream.stream_fit_predict(ds, {"handcrafted": list(range(10))}, rows, weights=True,
                                        seed=0, epochs=3, alpha=1e-4, block_bytes=4 * 10 * 21)
    report = stream.stream_evaluate(store_path, features=["handcrafted"], balance="weights", epochs=3,
                                    block_bytes=4 * 10 * 21)
    seg = report["results"][0]["segment"]
    assert seg["accuracy"]["pooled"] == pytest.approx(accuracy_score(rows.y, pred))
    assert seg["balanced_accuracy"]["pooled"] == pytest.approx(balanced_accuracy_score(rows.y, pred))
    per_fold = [accuracy_score(rows.y[rows.fold == k], pred[rows.fold == k]) for k in range(5)]
    assert seg["accuracy"]["folds"] == pytest.approx(per_fold)
    assert report["data"]["n_segments"] == len(rows.y) == 240


def test_streamed_model_learns_real_labels_and_stays_at_chance_on_shuffled_ones(tmp_path):
    real = stream.stream_evaluate(make_store(tmp_path / "r.zarr", n_tracks=80, n_segments=3),
                                  features=["handcrafted"], epochs=5)
    shuffled = stream.stream_evaluate(make_store(tmp_path / "s.zarr", n_tracks=80, n_segments=3,
                                                 shuffle_labels=True),
                                      features=["handcrafted"], epochs=5)
    chance = 1 / len(CLASSES)
    assert real["results"][0]["segment"]["balanced_accuracy"]["pooled"] > 0.8
    assert abs(shuffled["results"][0]["segment"]["balanced_accuracy"]["pooled"] - chance) < 0.15


def test_features_are_read_in_bounded_blocks_only(store_path, monkeypatch):
    ds = open_store(store_path)
    reads = []
    real = select_mod._read_block

    def spy(ds_, chosen, start, stop):
        reads.append(stop - start)
        return real(ds_, chosen, start, stop)

    monkeypatch.setattr(select_mod, "_read_block", spy)
    stream.stream_evaluate(ds, features=["handcrafted"], epochs=2, block_bytes=4 * 10 * 14)
    assert reads and max(reads) <= 14 and sum(reads) == 4 * 240  # stats, 2 epochs, predict


def test_cli_stream_writes_the_report_and_refuses_in_memory_options(store_path, tmp_path, capsys):
    assert cli_main(["evaluate", store_path, "--stream", "--features", "handcrafted",
                     "--balance", "both", "--epochs", "2", "--out", str(tmp_path / "rep"), "--quiet"]) == 0
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert [r["balance"] for r in report["results"]] and report["settings"]["balance"] == "both"
    assert (tmp_path / "rep" / "report.md").read_text().count("Streamed logistic regression") >= 2
    capsys.readouterr()
    assert cli_main(["evaluate", store_path, "--stream", "--classifiers", "quick"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [("emodist: error: --classifiers: not with --stream (it fits one streamed linear "
                    "model on the stored labels, on this machine)")]
    assert cli_main(["evaluate", store_path, "--stream", "--epochs", "0"]) == 2
    assert capsys.readouterr().err.strip().endswith("--epochs: epochs must be at least 1, got 0")
