"""Query by example: audio that need not be in the store, computed with the store's own spec."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zarr

from emodist.cli import main
from emodist.data.catalog import load_audio
from emodist.engine.extract import run_extract
from emodist.engine.predict import run_predict
from emodist.engine.similar import similar_audio
from emodist.errors import EmodistError, ModelError
from emodist.features import make_groups
from emodist.spec import ExtractionSpec, Runtime
from emodist.store import open_store
from tests.engine.heads import CLASSES, Input, Model, softmax_model

SPEC = ExtractionSpec(groups=tuple(make_groups(["handcrafted"])), segment_seconds=4.0,
                      hop_seconds=3.0)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> list[Path]:
    from emodist.data.demo import make_demo_dataset

    out = tmp_path_factory.mktemp("similar_audio") / "dataset"
    make_demo_dataset(out, n_tracks=6, seed=5, duration_s=11.0)
    return sorted((out / "emotifymusic").rglob("*.mp3"))


def _manifest(path: Path, files) -> str:
    pd.DataFrame({"path": [str(f) for f in files]}).to_csv(path, index=False)
    return str(path)


@pytest.fixture(scope="module")
def stores(tmp_path_factory, files, client) -> tuple[str, str]:
    """``all``: every file; ``without``: every file but the last (the query)."""
    tmp = tmp_path_factory.mktemp("stores")
    out = []
    for name, chosen in (("all", files), ("without", files[:-1])):
        data = _manifest(tmp / f"{name}.csv", chosen)
        url = str(tmp / f"{name}.zarr")
        res = run_extract(data, url, SPEC, Runtime(client=client, progress=False, chunk=5),
                          catalog=load_audio(data))
        assert res.n_failed == 0
        out.append(url)
    return tuple(out)


def test_a_copy_of_a_stored_track_finds_that_track_first(tmp_path, files, stores):
    ds = open_store(stores[0])
    copy = tmp_path / "copy.mp3"
    shutil.copyfile(files[2], copy)
    found, failures = similar_audio(ds, str(copy), k=3)
    assert not failures and len(found) == 3
    assert found["track_id"][0] == str(files[2]) and found["distance"][0] < 1e-6
    assert found["distance"][1] > 1e-3  # another track is not at distance 0
    assert (found["query"] == str(copy)).all() and found["n_segments"][0] == 3


def test_a_new_file_gets_the_neighbours_it_would_get_in_the_store(files, stores):
    """The file left out of one store gets the same neighbours there as in a store holding it.

    Unstandardised, as a model group is compared: standardised columns would
    differ between the stores by the statistics of the file's own segments.
    """
    new = files[-1]
    holding = open_store(stores[0]).emodist.similar_tracks(str(new), k=5, standardize=False)
    found, _ = similar_audio(open_store(stores[1]), [str(new)], k=5, standardize=False)
    assert list(found["track_id"]) == list(holding["track_id"]) and len(found) == 5
    np.testing.assert_allclose(found["distance"], holding["distance"], atol=1e-6)


def test_audio_on_the_command_line_ranks_as_its_stored_track(files, stores, capsys):
    """``--audio`` of a stored file: that track at 0, then the ``--track`` neighbours."""
    track = str(files[1])
    assert main(["similar", stores[0], "--track", track, "-k", "3", "--format", "csv"]) == 0
    by_track = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert main(["similar", stores[0], "--audio", track, "-k", "4", "--features", "handcrafted",
                 "--format", "csv"]) == 0
    by_audio = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert by_audio["track_id"][0] == track and abs(by_audio["distance"][0]) < 1e-6
    assert list(by_audio["track_id"][1:]) == list(by_track["track_id"])
    np.testing.assert_allclose(by_audio["distance"][1:], by_track["distance"], atol=1e-6)


@pytest.mark.parametrize("argv, flag, words", [
    (["--audio", "no-such-song.mp3"], "--audio", "no such file"),
    (["--audio", "FILE", "--features", "inception_v3"], "--features", "inception_v3"),
    (["--audio", "FILE", "--model", "nowhere"], "--model", "nowhere"),
    (["--track", "no-such-track"], None, "no-such-track"),
])
def test_bad_inputs_get_one_line(files, stores, capsys, argv, flag, words):
    argv = [str(files[0]) if a == "FILE" else a for a in argv]
    assert main(["similar", stores[1], *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err
    assert flag is None or err[0].startswith(f"emodist: error: {flag}:"), err


def test_model_probabilities_are_a_space_of_their_own(tmp_path, files, client):
    """``--features MODEL``: the head runs on the file's groups; the model folder must be the one."""
    hc = SPEC.groups[0]
    sha, _, _ = softmax_model(tmp_path / "mood.onnx", hc.width, seed=4)
    m = Model(name="mood", classes=CLASSES,
              inputs=(Input("handcrafted", tuple(hc.feature_names()), hc.describe()),),
              card={"store_spec": SPEC.common()}, onnx_path=str(tmp_path / "mood.onnx"),
              onnx_sha256=sha)
    data = _manifest(tmp_path / "some.csv", files[:4])
    url = str(tmp_path / "p.zarr")
    run_predict(data, m, url, Runtime(client=client, progress=False))
    ds = open_store(url)
    stored = ds.emodist.similar_tracks(str(files[0]), k=3, features="mood")
    found, _ = similar_audio(ds, str(files[0]), k=4, features="mood", model=m)
    assert found["track_id"][0] == str(files[0]) and found["distance"][0] < 1e-6
    assert list(found["track_id"][1:]) == list(stored["track_id"])
    np.testing.assert_allclose(found["distance"][1:], stored["distance"], atol=1e-6)
    # handcrafted stays the default space: the probabilities are asked for by name
    plain, _ = similar_audio(ds, str(files[0]), k=2)
    assert plain["track_id"][0] == str(files[0])
    with pytest.raises(EmodistError, match="--model DIR") as info:
        similar_audio(ds, str(files[0]), features="mood")
    assert info.value.param == "model"
    sha2, _, _ = softmax_model(tmp_path / "other.onnx", hc.width, seed=9)
    other = Model(**{**m.__dict__, "onnx_path": str(tmp_path / "other.onnx"), "onnx_sha256": sha2})
    with pytest.raises(ModelError, match="sha256") as info:
        similar_audio(ds, str(files[0]), features="mood", model=other)
    assert info.value.param == "model"


@pytest.mark.parametrize("block_bytes", [1, 32 * 2**20])
def test_track_neighbours_are_the_nearest_segment_means(files, stores, block_bytes):
    """Streamed in blocks as small as one chunk (tracks straddle them) or in one block."""
    ds = open_store(stores[0])
    rows = ds.emodist.select(features="handcrafted")
    cols = [c for c in rows.columns if c in set(ds.emodist.index.feature_names["handcrafted"])]
    means = rows.groupby("track_id")[cols].mean()
    query = str(files[3])
    q = means.loc[query].to_numpy()
    others = means.drop(index=query)
    x = others.to_numpy()
    cosine = 1 - x @ q / (np.linalg.norm(x, axis=1) * np.linalg.norm(q))
    expected = pd.Series(cosine, index=others.index).sort_values()
    got = ds.emodist.similar_tracks(query, k=4, standardize=False, block_bytes=block_bytes)
    assert list(got["track_id"]) == list(expected.index[:4])
    np.testing.assert_allclose(got["distance"], expected.to_numpy()[:4], atol=1e-5)
    assert (got["n_segments"] == rows.groupby("track_id").size()[got["track_id"]].to_numpy()).all()


def test_a_group_this_emodist_computes_otherwise_is_refused_by_name(files, stores, tmp_path):
    """A store written by another version of a group: its values cannot be reproduced here."""
    shutil.copytree(stores[1], tmp_path / "old.zarr")
    group = zarr.open_group(str(tmp_path / "old.zarr"), mode="r+")
    recorded = dict(group.attrs["feature_groups"])
    recorded["handcrafted"] = {**recorded["handcrafted"], "version": "0"}
    group.attrs["feature_groups"] = recorded
    zarr.consolidate_metadata(str(tmp_path / "old.zarr"))
    with pytest.raises(ModelError, match=r"written with handcrafted with version='0'") as info:
        similar_audio(open_store(str(tmp_path / "old.zarr")), str(files[0]))
    assert info.value.param == "features"


def test_an_unreadable_file_is_recorded_and_the_others_answered(files, stores, tmp_path,
                                                                capsys):
    bad = tmp_path / "garbage.mp3"
    bad.write_text("not audio")
    found, failures = similar_audio(open_store(stores[0]), [str(bad), str(files[2])], k=2)
    assert list(found["query"]) == [str(files[2])] * 2 and found["track_id"][0] == str(files[2])
    assert [f["path"] for f in failures] == [str(bad)] and "not audio" in failures[0]["error"]
    with pytest.raises(EmodistError, match="no audio computed") as got:
        similar_audio(open_store(stores[0]), [str(bad)], k=2)
    assert got.value.param == "audio" and str(got.value).count("garbage.mp3") == 1
    capsys.readouterr()
    assert main(["similar", stores[0], "--audio", str(bad), str(files[2]), "-k", "2",
                 "--format", "csv"]) == 0
    out, err = capsys.readouterr()
    assert out.count(str(files[2])) >= 2
    assert err.count("garbage.mp3") == 1 and "not computed" in err
