"""Bring-your-own ONNX models: a TOML card becomes a feature group, with no code change.

A small ONNX model is written with ``onnx.helper`` (two outputs on a log-mel
patch, one on raw sample windows); the card's group goes through the real
extraction (``emodist extract ... --model-card``, a LocalCluster) on generated
audio, and the stored values are checked against onnxruntime run directly on
inputs computed here with librosa.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from emodist.errors import EmodistError, ModelError
from emodist.features import REGISTRY, make_group
from emodist.features.base import patch_means
from emodist.features.card import CardGroup, load_card, parse_card, register_card
from tests.features.cards import EMB, FRAMES, MELS, write_card

PATCH_SAMPLES = 8000


def samples_model(path: Path) -> str:
    """wave (N, PATCH_SAMPLES) -> stats = [mean, max] of |x| (N, 2)."""
    nodes = [helper.make_node("Abs", ["wave"], ["a"]),
             helper.make_node("ReduceMean", ["a"], ["mu"], axes=[1], keepdims=1),
             helper.make_node("ReduceMax", ["a"], ["mx"], axes=[1], keepdims=1),
             helper.make_node("Concat", ["mu", "mx"], ["stats"], axis=1)]
    graph = helper.make_graph(
        nodes, "card_samples",
        [helper.make_tensor_value_info("wave", TensorProto.FLOAT, ["n", PATCH_SAMPLES])],
        [helper.make_tensor_value_info("stats", TensorProto.FLOAT, ["n", 2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return str(path)


@pytest.fixture()
def card_path(tmp_path) -> Path:
    return write_card(tmp_path / "card")


def expected_rows(model: str, path: str, starts, duration: float) -> np.ndarray:
    """The card model's segment means, computed here: librosa load, mel, dB, patches, ORT."""
    import librosa
    import onnxruntime as ort

    y, sr = librosa.load(path, sr=16000, mono=True)
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    rows = []
    for start in starts:
        seg = y[round(start * sr): round(start * sr) + round(duration * sr)]
        mel = librosa.feature.melspectrogram(y=seg, sr=sr, n_fft=512, hop_length=256,
                                             n_mels=MELS, center=True, pad_mode="constant")
        db = 10 * np.log10(np.maximum(mel.T, 1e-10))
        n = len(db) // FRAMES
        x = db[: n * FRAMES].reshape(n, FRAMES, MELS).astype(np.float32)
        emb, peak = sess.run(["emb", "peak"], {"x": x})
        rows.append(np.concatenate([emb.mean(0), peak.mean(0)]))
    return np.array(rows)


def test_card_parses_and_names_columns(card_path, clean_registry):
    card = load_card(card_path)
    assert card.name == "mymodel" and card.model == str(card_path.parent / "m.onnx")
    assert card.outputs == (("emb", EMB), ("peak", MELS)) and card.width == EMB + MELS
    assert register_card(card_path) == "mymodel" and "mymodel" in REGISTRY
    # options of other groups are ignored, as for the built-in groups
    g = make_group("mymodel", {"model": "/x.onnx", "n_mfcc": 13}).resolve()
    assert isinstance(g, CardGroup) and g.name == "mymodel" and g.width == EMB + MELS
    names = g.feature_names()
    assert names[:2] == ["mymodel_emb_0", "mymodel_emb_1"] and names[-1] == "mymodel_peak_39"
    assert g.input().kind == "samples" and g.input().sr == 16000
    desc = g.describe()
    assert desc["model_sha256"] == hashlib.sha256((card_path.parent / "m.onnx").read_bytes()).hexdigest()
    assert desc["params"]["input"]["name"] == "x"  # the model's first input, recorded
    assert desc["params"]["outputs"] == [["emb", EMB], ["peak", MELS]]
    assert "m.onnx" not in str(desc)  # the location is not a value


def test_card_errors(tmp_path):
    good = {"name": "m", "model": "m.onnx", "outputs": [{"name": "o", "width": 2}],
            "input": {"kind": "samples", "sr": 16000, "patch_samples": 100}}
    assert parse_card(good).input == (("kind", "samples"), ("sr", 16000), ("patch_samples", 100))
    bad = [({"name": "m"}, "lacks 'model'"),
           (dict(good, name="Bad-Name"), "cannot name a feature group"),
           (dict(good, input={"kind": "mfcc"}), "input kind 'mfcc'"),
           (dict(good, input={"kind": "samples", "sr": 16000}), "lacks 'patch_samples'"),
           (dict(good, input={"kind": "samples", "sr": 0, "patch_samples": 1}), "positive integer"),
           (dict(good, input=dict(good["input"], hop=3)), "unknown keys hop"),
           (dict(good, outputs=[]), "at least one output"),
           (dict(good, model="sub/../../m.onnx"), "leaves the card's folder"),
           (dict(good, sha256="ABC"), "sha256 'ABC' is not 64 lower-case hex digits"),
           (dict(good, outputs=[{"name": "o", "width": 0}]), "width must be"),
           (dict(good, input={"kind": "logmel", "sr": 1, "n_fft": 1, "hop": 1, "n_mels": 1,
                              "patch_frames": 1, "scale": "log2"}), "scale 'log2'")]
    for data, msg in bad:
        with pytest.raises(EmodistError, match=msg):
            parse_card(data, path="c.toml")
    (tmp_path / "x.toml").write_text("name = [")
    with pytest.raises(EmodistError, match="not valid TOML"):
        load_card(tmp_path / "x.toml")
    with pytest.raises(EmodistError, match="not found"):
        load_card(tmp_path / "none.toml")


def test_card_model_checked_on_resolve(tmp_path):
    wrong = write_card(tmp_path / "a", sha='sha256 = "' + "0" * 64 + '"')
    with pytest.raises(ModelError, match="not the card's 000000000000"):
        CardGroup(card=load_card(wrong)).resolve()
    width = write_card(tmp_path / "b", emb=9)
    with pytest.raises(ModelError, match="output emb has width 8, the card says 9"):
        CardGroup(card=load_card(width)).resolve()


def test_samples_card_through_compute_chunk(tmp_path, demo_dataset):
    """Raw sample windows: the worker resamples once to the card's rate and cuts windows."""
    import librosa

    from emodist.data.catalog import load_dataset
    from emodist.engine.extract import resolve_spec
    from emodist.engine.worker import ChunkTask, Job, compute_chunk
    from emodist.spec import ExtractionSpec, Runtime

    samples_model(tmp_path / "s.onnx")
    card = parse_card({"name": "wavestats", "model": "s.onnx",
                       "input": {"kind": "samples", "sr": 8000, "patch_samples": PATCH_SAMPLES},
                       "outputs": [{"name": "stats", "width": 2}]}, str(tmp_path))
    spec = resolve_spec(ExtractionSpec(groups=(CardGroup(card=card),), segment_seconds=5.0),
                        Runtime())
    path, other = load_dataset(str(demo_dataset)).tracks["path"].iloc[:2].astype(str)
    rows = (("t", path, 0.0, 5.0), ("t", path, 5.0, 5.0), ("u", other, 10.0, 0.5))
    values, status, failures = compute_chunk(ChunkTask(0, 0, 3, rows, ("wavestats",)),
                                             Job("unused", spec, batch_size=3))
    assert list(status["wavestats"]) == [1, 1, -1]  # 0.5 s is shorter than one 1 s window
    assert [f["track_id"] for f in failures] == ["u"]
    assert "shorter than one patch" in failures[0]["error"]
    y, _ = librosa.load(path, sr=8000)
    for i, start in enumerate((0, 5)):
        w = np.abs(y[start * 8000: (start + 5) * 8000]).reshape(5, PATCH_SAMPLES)
        want = [w.mean(1).mean(), w.max(1).mean()]
        np.testing.assert_allclose(values["wavestats"][i], want, rtol=1e-3, atol=1e-5)


def test_patch_means_averages_each_segments_patches():
    prepared = [np.full((2, 3), 1.0), np.full((1, 3), 5.0), np.arange(9.0).reshape(3, 3)]
    seen = []

    def run(x):
        seen.append(len(x))
        return {"a": x[:, :2], "b": x[:, 2:]}

    out = patch_means(prepared, ["b", "a"], run, 3)
    assert seen == [6]  # one call for the whole chunk
    np.testing.assert_allclose(out, [[1, 1, 1], [5, 5, 5], [5, 3, 4]])
    assert patch_means([], ["a"], run, 3).shape == (0, 3)


def test_card_group_end_to_end_on_a_local_cluster(card_path, demo_dataset, tmp_path, capsys,
                                                  clean_registry):
    """``emodist extract --features mymodel --model-card card.toml`` on a LocalCluster."""
    from emodist.cli import main
    from emodist.store import layout, open_store

    store = tmp_path / "s.zarr"
    rc = main(["extract", str(demo_dataset), "--store", str(store), "--features", "mymodel",
               "--model-card", str(card_path), "--segment-seconds", "5", "--workers", "1",
               "--threads-per-worker", "1", "--quiet", "--batch-size", "3"])
    assert rc == 0, capsys.readouterr()
    ds = open_store(str(store))
    assert (ds["mymodel_status"].values == layout.STATUS_DONE).all()
    assert ds["mymodel"].shape == (16 * 4, EMB + MELS)
    assert ds.attrs["feature_groups"]["mymodel"]["params"]["licence"] == "CC0-1.0"
    for k in (0, 5, 22):
        row = ds.isel(segment=k)
        path = str(row.path.values)
        want = expected_rows(str(card_path.parent / "m.onnx"), path, [float(row.start_s)], float(row.duration_s))[0]
        got = ds["mymodel"].values[k]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    assert not np.allclose(ds["mymodel"].values[0], ds["mymodel"].values[1])
