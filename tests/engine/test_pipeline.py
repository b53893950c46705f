"""``emodist run`` (extract + evaluate) and ``emodist demo`` on real audio and real Dask."""

from __future__ import annotations

import json

import numpy as np
import pytest

from emodist.cli import main
from emodist.data.catalog import load_dataset
from emodist.engine import pipeline
from emodist.errors import EmodistError
from emodist.learn import evaluate as ev
from emodist.store import open_store
from tests.servers import dask_cluster


def test_model_available(tmp_path, monkeypatch):
    monkeypatch.setenv("EMODIST_MODEL", str(tmp_path / "missing.onnx"))
    assert pipeline.model_available() is None
    real = tmp_path / "model.onnx"
    real.write_bytes(b"onnx")
    assert pipeline.model_available(str(real)) == str(real)
    monkeypatch.setenv("EMODIST_MODEL", str(real))
    assert pipeline.model_available() == str(real)


def test_demo_spec_only_asks_for_inception_with_a_model():
    assert pipeline.demo_spec(None).group_names == ("handcrafted",)
    assert pipeline.demo_spec("/m.onnx").group_names == ("handcrafted", "inception_v3")
    assert pipeline.demo_spec("/m.onnx").groups[1].model == "/m.onnx"


@pytest.mark.cluster
def test_run_command_on_a_dask_cluster(demo_dataset, tmp_path, capsys):
    store, out = tmp_path / "f.zarr", tmp_path / "report"
    args = ["run", str(demo_dataset), "--store", str(store), "--out", str(out),
            "--features", "handcrafted", "--segment-seconds", "20", "--classifiers", "linear-svm",
            "bagged-trees", "--folds", "2", "--quiet", "--rank-by", "macro_f1", "--seed", "1"]
    with dask_cluster(n_workers=2) as (address, _):
        assert main(args + ["--scheduler", address]) == 0
    text = capsys.readouterr().out
    assert "wrote " in text and "16 of 16 segments done in every group" in text
    assert "Bagged Trees" in text and "report.md" in text
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["executor"] == "dask"
    assert report["settings"]["features"] == ["handcrafted"]
    assert (report["settings"]["rank_by"], report["settings"]["seed"]) == ("macro_f1", 1)
    assert report["data"]["n_segments"] == 16 and report["data"]["n_tracks"] == 16
    ds = open_store(str(store))
    assert (ds["handcrafted_status"].values == 1).all() and ds.emodist.groups == ["handcrafted"]
    # the fits made on the cluster equal the same evaluation in this process
    local = ev.run_evaluate(str(store), classifiers=["linear-svm", "bagged-trees"], folds=2, n_jobs=1,
                            seed=1)
    assert local["folds"] == report["folds"]
    for a, b in zip(local["results"], report["results"]):
        assert a["classifier"] == b["classifier"]
        assert a["predictions"] == b["predictions"]
        np.testing.assert_allclose(a["segment"]["accuracy"]["folds"], b["segment"]["accuracy"]["folds"])


@pytest.mark.cluster
def test_run_takes_the_streamed_evaluation(demo_dataset, tmp_path, capsys):
    store, out = tmp_path / "f.zarr", tmp_path / "report"
    args = ["run", str(demo_dataset), "--store", str(store), "--out", str(out), "--features",
            "handcrafted", "--segment-seconds", "20", "--folds", "2", "--quiet", "--workers", "1",
            "--threads-per-worker", "1", "--stream", "--epochs", "2"]
    assert main([*args, "--classifiers", "quick"]) == 2
    assert capsys.readouterr().err == ("emodist: error: --classifiers: not with --stream (it fits "
                                       "one streamed linear model on the stored labels, on this "
                                       "machine)\n")
    assert not store.exists()  # refused before extracting
    assert main(args) == 0
    assert "16 of 16 segments done in every group" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["classifiers"] == ["sgd_stream"]
    assert report["settings"]["features"] == ["handcrafted"]
    assert {r["classifier"] for r in report["results"]} == {"sgd_stream"}


@pytest.mark.cluster
def test_demo_without_a_model_runs_handcrafted_only(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EMODIST_MODEL", str(tmp_path / "no-model.onnx"))
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--tracks", "8", "--duration", "20", "--workers", "1"]) == 0
    text = capsys.readouterr().out
    assert "Inception-v3 features skipped" in text and "emodist model build" in text
    assert "random guess 12.5%" in text
    report = json.loads((out / "report" / "report.json").read_text())
    assert report["settings"]["features"] == ["handcrafted"]
    assert report["data"]["n_tracks"] == 8 and report["data"]["n_segments"] == 16
    assert {r["classifier"] for r in report["results"]} == set(pipeline.DEMO_CLASSIFIERS)
    assert open_store(str(out / "features.zarr")).emodist.groups == ["handcrafted"]
    # a model trained on the demo store recognises generated tracks it never saw
    assert (out / "model" / "model.json").is_file() and (out / "model" / "model.onnx").is_file()
    lines = [x for x in text.splitlines() if x.startswith("  track ")]
    assert len(lines) == 8 and "recognised by" in text
    new = load_dataset(str(out / "new-music"))
    for line in lines:  # each new track with the class it was generated with
        track = line.split()[1]
        assert f"generated as {new.tracks.set_index('track_id').loc[track, 'label']} " in line


def test_demo_rejects_too_few_tracks(tmp_path):
    with pytest.raises(EmodistError, match="at least 8"):
        pipeline.run_demo(str(tmp_path), n_tracks=5, folds=4)
