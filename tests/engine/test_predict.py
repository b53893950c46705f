"""Recognising new music: a model's groups and head into a store, per track, or here and now."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emodist.engine.predict import model_spec, predict_files, run_predict, track_results
from emodist.errors import ModelError
from emodist.features import make_groups
from emodist.spec import ExtractionSpec, Runtime
from emodist.store import layout, open_store
from tests.engine.heads import CLASSES, Input, Model, softmax_model


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    hc = make_groups(["handcrafted"])[0]
    path = tmp_path_factory.mktemp("model") / "mood.onnx"
    sha, w, b = softmax_model(path, hc.width, seed=3)
    spec = ExtractionSpec(groups=(hc,), segment_seconds=4.0)
    return Model(name="mood", classes=CLASSES,
                 inputs=(Input("handcrafted", tuple(hc.feature_names()), hc.describe()),),
                 card={"store_spec": spec.common()}, onnx_path=str(path), onnx_sha256=sha), w, b


@pytest.fixture(scope="module")
def music(tmp_path_factory) -> Path:
    from emodist.data.demo import make_demo_dataset

    out = tmp_path_factory.mktemp("predict") / "dataset"
    make_demo_dataset(out, n_tracks=4, seed=4, duration_s=12.0)
    return out / "emotifymusic"  # a plain folder of audio files, no labels


def test_track_results_are_means_over_segments_with_factors():
    seg = pd.DataFrame({"track_id": ["a", "a", "b"], "path": ["a.mp3", "a.mp3", "b.mp3"],
                        "calmness": [0.25, 0.75, 0.125], "power": [0.5, 0.125, 0.0625],
                        "sadness": [0.25, 0.125, 0.8125]})
    t = track_results(seg, CLASSES).set_index("track_id")
    assert t.loc["a", "calmness"] == 0.5 and t.loc["a", "power"] == 0.3125
    assert t.loc["a", "n_segments"] == 2 and t.loc["b", "n_segments"] == 1
    assert list(t["dominant"]) == ["calmness", "sadness"]
    # calmness is sublimity, power vitality, sadness unease (Zentner et al. 2008)
    assert t.loc["b", "unease"] == 0.8125 and t.loc["b", "sublimity"] == 0.125
    assert t.loc["b", "vitality"] == 0.0625
    assert t.loc["b", "top3"] == "sadness 0.81, calmness 0.12, power 0.06"


def test_predict_writes_probabilities_and_track_results(tmp_path, music, model, client):
    m, w, b = model
    url = str(tmp_path / "s.zarr")
    res = run_predict(str(music), m, url, Runtime(client=client, progress=False, chunk=3))
    assert res.extract.n_failed == 0 and len(res.tracks) == 4
    ds = open_store(url)
    x = ds["handcrafted"].values.astype(np.float64) @ w + b
    p = np.exp(x - x.max(axis=1, keepdims=True))
    np.testing.assert_allclose(ds["mood"].values, p / p.sum(axis=1, keepdims=True), atol=2e-6)
    # per track: the mean of its segments, computed here from the stored segments
    tid = ds["track_id"].values.astype(str)
    for i, track in enumerate(ds["mood_track"].values.astype(str)):
        np.testing.assert_allclose(ds["mood_track_probability"].values[i],
                                   ds["mood"].values[tid == track].mean(axis=0), atol=1e-6)
        assert ds["mood_dominant"].values[i] == CLASSES[int(np.argmax(
            ds["mood"].values[tid == track].mean(axis=0)))]
    assert ds["mood_track_factors"].shape == (4, 3)
    # a second run reuses everything: nothing is computed again, results rewritten the same
    again = run_predict(str(music), m, url, Runtime(client=client, progress=False, chunk=3))
    assert again.extract.already_complete
    pd.testing.assert_frame_equal(again.tracks, res.tracks)


def test_here_and_now_equals_the_cluster_run(tmp_path, music, model, client):
    m, _, _ = model
    one = min(music.rglob("*.mp3"))
    here = predict_files(str(one), m)
    url = str(tmp_path / "s.zarr")
    there = run_predict(str(one), m, url, Runtime(client=client, progress=False))
    assert len(here.segments) == len(there.segments) == 3
    np.testing.assert_allclose(here.segments[list(CLASSES)].to_numpy(),
                               there.segments[list(CLASSES)].to_numpy(), atol=1e-6)
    assert here.tracks["dominant"].tolist() == there.tracks["dominant"].tolist()


def test_many_files_here_go_by_whole_tracks_and_give_what_one_chunk_gives(music, model,
                                                                         capsys):
    m, _, _ = model
    whole = predict_files(str(music), m, Runtime(progress=False, chunk=1000))
    capsys.readouterr()
    parts = predict_files(str(music), m, Runtime(progress=True, chunk=4))  # one track at a time
    assert len(whole.segments) == len(parts.segments) == 12  # 4 tracks x 3 segments of 4 s
    pd.testing.assert_frame_equal(parts.segments, whole.segments, check_exact=True)
    pd.testing.assert_frame_equal(parts.tracks, whole.tracks, check_exact=True)
    err = capsys.readouterr().err
    assert "12/12" in err and "ETA" in err  # done/total, rate and time left on stderr


def test_track_chunks_keep_tracks_whole():
    from emodist.engine.predict import track_chunks

    ids = ["a"] * 3 + ["b"] * 3 + ["c"] * 9 + ["d"] * 2 + ["e"] * 2
    assert track_chunks(ids, 6) == [(0, 6), (6, 15), (15, 19)]  # c alone is larger than 6
    assert track_chunks(ids, 5) == [(0, 3), (3, 6), (6, 15), (15, 19)]
    assert track_chunks(ids, 100) == [(0, 19)] and track_chunks([], 4) == []
    for size in range(1, 12):
        bounds = track_chunks(ids, size)
        assert [a for a, _ in bounds[1:]] == [b for _, b in bounds[:-1]]  # contiguous, complete
        assert bounds[0][0] == 0 and bounds[-1][1] == len(ids)
        for a, b in bounds:  # never a cut inside a track; over size only for a single track
            assert a == 0 or ids[a] != ids[a - 1]
            assert b - a <= size or len(set(ids[a:b])) == 1


def test_a_model_trained_on_other_parameters_is_refused_by_field(model, tmp_path):
    m, _, _ = model
    inp = m.inputs[0]
    rec = dict(inp.description, version="0")
    bad = Model(**{**m.__dict__, "inputs": (Input(inp.group, inp.features, rec),)})
    with pytest.raises(ModelError, match=r"trained on handcrafted with version='0'"):
        model_spec(bad)


def test_a_model_reading_an_unknown_group_is_refused(model):
    m, _, _ = model
    bad = Model(**{**m.__dict__, "inputs": (Input("nosuch", ("a",), {"params": {}}),)})
    with pytest.raises(ModelError, match="reads group 'nosuch'"):
        model_spec(bad)


def test_a_head_reading_some_columns_of_its_group_selects_them(model):
    m, _, _ = model
    inp = m.inputs[0]
    picked = (inp.features[5], inp.features[2])
    head = model_spec(Model(**{**m.__dict__, "inputs": (Input(inp.group, picked,
                                                                inp.description),)})).group("mood")
    assert head.columns == ((5, 2),) and head.input_width == 2


def test_a_card_without_its_store_plan_is_refused(model):
    m, _, _ = model
    with pytest.raises(ModelError, match="store_spec"):
        model_spec(Model(**{**m.__dict__, "card": {}}))


def test_the_store_spec_is_the_models(model):
    m, _, _ = model
    spec = model_spec(m)
    assert spec.segment_seconds == 4.0 and spec.group_names == ("handcrafted", "mood")
    assert spec.group("mood").describe()["input"]["groups"] == ["handcrafted"]
    assert layout.status_name("mood") == "mood_status"


def test_query_by_emotion_ranks_the_stored_track_results(tmp_path, music, model, client, capsys):
    from emodist.cli import main
    from emodist.errors import EmodistError
    from emodist.store.select import by_emotion

    m, _, _ = model
    url = str(tmp_path / "s.zarr")
    run_predict(str(music), m, url, Runtime(client=client, progress=False, chunk=3))
    ds = open_store(url)
    probs = ds["mood_track_probability"].values[:, CLASSES.index("power")]
    tracks = ds["mood_track"].values.astype(str)
    cut = float(np.median(probs))
    got = by_emotion(ds, "power", min=cut)
    want = sorted(((p, t) for p, t in zip(probs, tracks) if p >= cut), reverse=True)
    assert list(got["track_id"]) == [t for _, t in want]
    np.testing.assert_allclose(got["power"], [p for p, _ in want])
    seg = ds.emodist.by_emotion("power", level="segment")
    assert len(seg) == ds.sizes["segment"] and seg["power"].is_monotonic_decreasing
    with pytest.raises(EmodistError, match="not 'joy'"):
        by_emotion(ds, "joy")
    with pytest.raises(EmodistError, match="no predictions of model 'other'"):
        by_emotion(ds, "power", model="other")
    for bad in (60, -0.1, float("nan")):  # a percentage would silently keep nothing
        with pytest.raises(EmodistError, match="between 0 and 1") as got:
            by_emotion(ds, "power", min=bad)
        assert got.value.param == "min"
    # a share no track reaches: an empty table, said so
    tops = ds["mood_track_probability"].values.max(axis=0)
    rare = CLASSES[int(np.argmin(tops))]
    above = (float(tops.min()) + 1.0) / 2
    assert tops.min() < above <= 1.0 and len(by_emotion(ds, rare, min=above)) == 0
    assert main(["query", url, "--emotion", rare, "--min", str(above)]) == 0
    out, err = capsys.readouterr()
    assert out == f"no rows (columns: track_id, {rare}, dominant)\n"
    best = int(np.argmax(ds["mood_track_probability"].values[:, CLASSES.index(rare)]))
    assert err == (f"no track reaches {rare} {above:g}; the highest is {tops.min():.2f} "
                   f"({tracks[best]})\n")
    assert main(["query", url, "--emotion", "power", "--min", str(cut), "--format", "csv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("track_id,power,dominant") and len(lines) == len(want) + 1


def test_a_group_made_by_a_bound_factory_is_rebuilt_from_its_record(clean_registry):
    from typing import ClassVar

    from emodist.engine.predict import input_group
    from emodist.features import Bound, FeatureGroup, register

    @dataclass(frozen=True)
    class Twin(FeatureGroup):
        name: ClassVar[str] = "twin"
        variant: str = "a"
        width_: int = 2

        def feature_names(self):
            return [f"{self.variant}_{i}" for i in range(self.width_)]

    register("twin", Bound(Twin, variant="b"))
    record = Twin(variant="b", width_=3).describe()
    assert input_group("twin", record) == Twin(variant="b", width_=3)
