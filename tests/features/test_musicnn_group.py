"""The ``musicnn_msd`` / ``musicnn_mtt`` feature groups: names, recording, values.

Without the wheel, a full-size random-weight MusiCNN (the same graph builder)
stands in as the MTT model; its stored values are checked against the
network run directly on patches computed here from librosa.  The real
taggers (markers ``model`` and ``emotify``) are checked through a real
extraction against the TensorFlow reference (``tests/reference/musicnn_reference.npz``).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from emodist.errors import EmodistError, ModelError, StoreError
from emodist.features import make_group, make_groups
from emodist.features.musicnn import MusiCNN, slug
from emodist.models import musicnn as m
from emodist.spec import ExtractionSpec, Runtime

DATA = Path(__file__).resolve().parents[1] / "reference"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("musicnn-dir")
    m.build_random_model(out / "musicnn_mtt.onnx", seed=3)  # a random MTT stand-in
    return str(out)


def test_names_widths_and_registry():
    msd, mtt = make_groups(["musicnn_msd", "musicnn_mtt"], {"model": "/inception.onnx",
                                                             "n_mfcc": 20})
    assert (msd.name, mtt.name) == ("musicnn_msd", "musicnn_mtt") and msd.variant == "msd"
    names = msd.feature_names()
    assert len(names) == msd.width == 50 + 200 + 753 + 753 and len(set(names)) == len(names)
    assert names[0] == "musicnn_msd_tag_rock" and "musicnn_msd_tag_sad" in names
    assert "musicnn_msd_tag_female_vocalists" in names and "musicnn_msd_tag_hip_hop" in names
    assert names[50] == "musicnn_msd_pen_000" and names[250] == "musicnn_msd_max_000"
    assert names[-1] == "musicnn_msd_mean_752"
    assert len(set(mtt.feature_names())) == 1756 and "musicnn_mtt_tag_no_vocals" in mtt.feature_names()
    g = make_group("musicnn_mtt", {"musicnn_outputs": ("mean_pool", "taggram")})
    assert g.width == 803 and g.feature_names()[0] == "musicnn_mtt_mean_000"
    assert g.feature_names()[753] == "musicnn_mtt_tag_guitar"
    assert g.input().kind == "samples" and g.input().sr == 16000 and g.batched
    assert slug("Hip-Hop") == "hip_hop" and slug("00s") == "00s"
    for bad in ((), ("taggram", "taggram"), ("logits",)):
        with pytest.raises(EmodistError, match="musicnn outputs"):
            MusiCNN(outputs=bad)
    with pytest.raises(ModelError, match="unknown musicnn variant"):
        MusiCNN(variant="fma")


def test_default_model_paths(monkeypatch, tmp_path):
    monkeypatch.delenv("EMODIST_MUSICNN_MSD_MODEL", raising=False)
    monkeypatch.delenv("EMODIST_MODEL", raising=False)
    assert m.default_model_path("msd").endswith("emodist/musicnn_msd.onnx")
    monkeypatch.setenv("EMODIST_MODEL", "s3://bucket/models/inception.onnx")  # next to Inception-v3
    assert m.default_model_path("msd") == "s3://bucket/models/musicnn_msd.onnx"
    monkeypatch.setenv("EMODIST_MUSICNN_MTT_MODEL", str(tmp_path / "x.onnx"))
    assert m.default_model_path("MTT") == str(tmp_path / "x.onnx")
    assert MusiCNN(variant="mtt").model_url == str(tmp_path / "x.onnx")
    assert MusiCNN(variant="msd", model_dir="s3://b/models/").model_url == "s3://b/models/musicnn_msd.onnx"


def test_resolve_records_hash_and_outputs(model_dir, tmp_path):
    from emodist.models.session import read_sidecar

    g = MusiCNN(variant="mtt", outputs=("taggram", "penultimate"), model_dir=model_dir).resolve()
    sha = read_sidecar(f"{model_dir}/musicnn_mtt.onnx")["sha256"]
    desc = g.describe()
    assert desc["model_sha256"] == sha and desc["params"]["sha256"] == sha
    assert desc["params"]["outputs"] == ["taggram", "penultimate"] and desc["width"] == 250
    assert "model_dir" not in desc["params"]
    assert MusiCNN(variant="mtt", model_dir=model_dir).resolve().describe() != desc
    with pytest.raises(ModelError, match="not the requested"):
        MusiCNN(variant="mtt", sha256="0" * 64, model_dir=model_dir).resolve()
    for ext in (".onnx", ".onnx.json"):  # an MTT model where the MSD one should be
        shutil.copy(Path(model_dir, "musicnn_mtt" + ext), tmp_path / ("musicnn_msd" + ext))
    with pytest.raises(ModelError, match="not a MusiCNN MSD model"):
        MusiCNN(variant="msd", model_dir=str(tmp_path)).resolve()
    with pytest.raises(ModelError, match="model build"):
        MusiCNN(variant="msd", model_dir=str(tmp_path / "none")).resolve()


def _expected(model: str, path: str, start: float, duration: float) -> np.ndarray:
    """Mean over the segment's patches, from librosa's 16 kHz decode and mel, run directly."""
    import librosa

    y, sr = librosa.load(path, sr=16000)
    seg = y[round(start * sr): round(start * sr) + round(duration * sr)]
    mel = librosa.feature.melspectrogram(y=seg, sr=sr, n_fft=512, hop_length=256, n_mels=96)
    rep = np.log10(10000 * mel.T.astype(np.float16).astype(np.float32) + 1)
    n = len(rep) // 187
    out = m.run_model(model, rep[: n * 187].reshape(n, 187, 96))
    return np.concatenate([out["taggram"].mean(0), out["mean_pool"].mean(0)])


def test_extraction_values_and_a_changed_output_choice_is_refused(model_dir, demo_dataset,
                                                                  tmp_path, client):
    from emodist.engine.extract import run_extract
    from emodist.store import layout, open_store

    group = MusiCNN(variant="mtt", outputs=("taggram", "mean_pool"), model_dir=model_dir)
    spec = ExtractionSpec(groups=(group,), segment_seconds=6.0)
    url = str(tmp_path / "s.zarr")
    result = run_extract(str(demo_dataset), url, spec,
                         Runtime(client=client, progress=False, batch_size=3))
    assert result.n_done == result.n_segments == 16 * 3 and result.n_failed == 0
    ds = open_store(url)
    assert (ds["musicnn_mtt_status"].values == layout.STATUS_DONE).all()
    assert list(ds["musicnn_mtt_feature"].values[:2]) == ["musicnn_mtt_tag_guitar",
                                                           "musicnn_mtt_tag_classical"]
    rec = ds.attrs["feature_groups"]["musicnn_mtt"]
    assert rec["params"]["outputs"] == ["taggram", "mean_pool"] and len(rec["model_sha256"]) == 64
    for k in (0, 4, 29):
        row = ds.isel(segment=k)
        want = _expected(f"{model_dir}/musicnn_mtt.onnx", str(row.path.values),
                         float(row.start_s), float(row.duration_s))
        np.testing.assert_allclose(ds["musicnn_mtt"].values[k], want, rtol=1e-4,
                                   atol=1e-4 * np.abs(want).max())
    assert not np.allclose(ds["musicnn_mtt"].values[0], ds["musicnn_mtt"].values[1])
    other = spec.replace(groups=(MusiCNN(variant="mtt", outputs=("taggram",), model_dir=model_dir),))
    with pytest.raises(StoreError, match="outputs"):
        run_extract(str(demo_dataset), url, other, Runtime(client=client, progress=False))


@pytest.mark.model
@pytest.mark.emotify
def test_real_groups_store_the_tensorflow_values(real_musicnn, emotify_root, tmp_path, client):
    """Both taggers through a real extraction of the two reference segments."""
    from emodist.engine.extract import run_extract
    from emodist.store import open_store

    sys.path.insert(0, str(DATA))
    try:
        from make_musicnn_reference import projection
    finally:
        sys.path.remove(str(DATA))
    ref = np.load(DATA / "musicnn_reference.npz")
    segs = ("seg0", "seg1")
    assert all(float(ref[f"{s}/start_s"]) == 0.0 for s in segs)
    manifest = tmp_path / "two.csv"
    manifest.write_text("path,label\n" + "".join(
        f"{emotify_root / str(ref[f'{s}/path'])},{s}\n" for s in segs))
    folder = str(Path(real_musicnn["msd"]).parent)
    groups = make_groups(["musicnn_msd", "musicnn_mtt"], {"musicnn_dir": folder})
    spec = ExtractionSpec(groups=groups, segment_seconds=float(ref["seg0/duration_s"]),
                          min_class_tracks=1)
    run_extract(str(manifest), str(tmp_path / "s.zarr"), spec,
                Runtime(client=client, progress=False))
    ds = open_store(str(tmp_path / "s.zarr"))
    from tests.musicnn_check import TOL

    for s in segs:
        k = next(i for i, p in enumerate(ds.path.values)
                 if str(p).endswith(str(ref[f"{s}/path"])) and float(ds.start_s.values[i]) == 0.0)
        for v in ("msd", "mtt"):
            row = ds[f"musicnn_{v}"].values[k].astype(np.float64)
            parts = np.split(row, np.cumsum([50, 200, 753]))
            np.testing.assert_allclose(parts[0], ref[f"{s}/{v}/taggram"], atol=TOL["taggram"], rtol=0)
            np.testing.assert_allclose(parts[1], ref[f"{s}/{v}/penultimate"],
                                       atol=TOL["penultimate"], rtol=0)
            for pool, vec in (("max_pool", parts[2]), ("mean_pool", parts[3])):
                np.testing.assert_allclose(np.linalg.norm(vec), ref[f"{s}/{v}/{pool}_norm"],
                                           rtol=TOL["norm_rel"])
                np.testing.assert_allclose(vec @ projection(753), ref[f"{s}/{v}/{pool}_proj16"],
                                           atol=TOL["proj16"], rtol=0)


def test_evaluate_takes_the_musicnn_groups_like_any_other(tmp_path, capsys):
    """``emodist evaluate --features musicnn_msd musicnn_mtt handcrafted+musicnn_msd``."""
    import json

    from emodist.cli import main
    from tests.stores import make_table, write_store

    table = make_table(n_tracks=24, per_track=2, labels=("calmness", "tension", "power"),
                       n_groups=8)
    rng = np.random.default_rng(0)
    codes = table["label"].map({"calmness": 0, "tension": 1, "power": 2}).to_numpy()
    msd = rng.standard_normal((len(table), 1756)).astype(np.float32)
    msd[:, :300] += 3.0 * np.repeat(np.eye(3, dtype=np.float32), 100, axis=1)[codes]  # MSD only
    values = {"handcrafted": ([f"hc_{i}" for i in range(5)], rng.standard_normal((len(table), 5))),
              "musicnn_msd": (MusiCNN(variant="msd").feature_names(), msd),
              "musicnn_mtt": (MusiCNN(variant="mtt").feature_names(),
                              rng.standard_normal((len(table), 1756)))}
    write_store(tmp_path / "s.zarr", table, values, model_groups=("musicnn_msd", "musicnn_mtt"))
    out = tmp_path / "rep"
    assert main(["evaluate", str(tmp_path / "s.zarr"), "--features", "musicnn_msd", "musicnn_mtt",
                 "handcrafted+musicnn_msd", "--classifiers", "linear-svm", "--folds", "4",
                 "--workers", "1", "--out", str(out)]) == 0
    capsys.readouterr()
    report = json.loads((out / "report.json").read_text())
    acc = {r["features"]: r["segment"]["accuracy"]["mean"] for r in report["results"]}
    assert set(acc) == {"musicnn_msd", "musicnn_mtt", "handcrafted+musicnn_msd"}
    assert acc["musicnn_msd"] > 0.9 and acc["musicnn_mtt"] < 0.7
    width = {r["features"]: r["n_features"] for r in report["results"]}
    assert width == {"musicnn_msd": 1756, "musicnn_mtt": 1756, "handcrafted+musicnn_msd": 1761}


def test_demo_adds_musicnn_only_with_a_real_model(tmp_path, monkeypatch):
    import json

    from emodist.engine import pipeline

    path = tmp_path / "musicnn_msd.onnx"
    monkeypatch.setenv("EMODIST_MUSICNN_MSD_MODEL", str(path))
    monkeypatch.setenv("EMODIST_MUSICNN_MTT_MODEL", str(tmp_path / "none.onnx"))
    assert pipeline.musicnn_available() == []
    m.build_random_model(path)
    assert pipeline.musicnn_available() == []  # random weights are never shown as features
    side = Path(str(path) + ".json")
    side.write_text(json.dumps(dict(json.loads(side.read_text()), wheel_sha256=m.WHEEL_SHA256)))
    assert pipeline.musicnn_available() == ["msd"]
    spec = pipeline.demo_spec(None, pipeline.musicnn_available())
    assert spec.group_names == ("handcrafted", "musicnn_msd") and spec.segment_seconds == 10.0
    assert pipeline.demo_spec("/m.onnx", ["msd", "mtt"]).group_names == (
        "handcrafted", "inception_v3", "musicnn_msd", "musicnn_mtt")


def test_cli_group_options_reach_the_groups(tmp_path):
    from emodist.cli import build_parser
    from emodist.cli.extract import spec_and_runtime

    args = build_parser().parse_args(
        ["extract", "x", "--store", "s", "--features", "inception_v3", "musicnn_msd+musicnn_mtt",
         "--model", "/inc.onnx", "--musicnn-outputs", "penultimate", "taggram",
         "--musicnn-dir", str(tmp_path)])
    spec, _ = spec_and_runtime(args)
    inc, msd, mtt = spec.groups
    assert inc.model == "/inc.onnx" and spec.group_names == ("inception_v3", "musicnn_msd",
                                                             "musicnn_mtt")
    assert msd.outputs == mtt.outputs == ("penultimate", "taggram")
    assert mtt.model_url == f"{tmp_path}/musicnn_mtt.onnx" and msd.width == 250
    args = build_parser().parse_args(["extract", "x", "--store", "s", "--features", "musicnn_msd"])
    assert spec_and_runtime(args)[0].groups[0].outputs == ("taggram", "penultimate", "max_pool",
                                                           "mean_pool")


def test_both_taggers_share_one_set_of_patches_per_segment(monkeypatch):
    from emodist.features.base import Segment

    calls = []
    real = m.input_patches

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(m, "input_patches", counting)
    y = (0.1 * np.random.default_rng(0).standard_normal(16000 * 8)).astype(np.float32)
    seg = Segment({16000: y}, 1.0, 7.0, sr=22050, n_fft=2048, hop_length=512)
    msd, mtt = make_groups(["musicnn_msd", "musicnn_mtt"])
    a, b = msd.prepare(seg), mtt.prepare(seg)
    assert a is b and a.shape == (2, 187, 96) and len(calls) == 1 and not a.flags.writeable
    np.testing.assert_array_equal(a, real(y[16000:16000 * 8]))
    short = Segment({16000: y}, 0.0, 2.5, sr=22050, n_fft=2048, hop_length=512)
    from emodist.errors import DataError

    with pytest.raises(DataError, match="shorter than one MusiCNN patch"):
        msd.prepare(short)


def test_a_missing_model_names_the_build_that_makes_it(tmp_path):
    group = make_group("musicnn_msd", {"musicnn_dir": str(tmp_path)})
    with pytest.raises(ModelError) as err:
        group.resolve()
    assert str(tmp_path / "musicnn_msd.onnx") in str(err.value)
    assert "'emodist model build musicnn-msd'" in str(err.value)
    assert "--model" not in str(err.value)  # the Inception-v3 option does not bring MusiCNN
