"""MusiCNN: the ONNX graph on random weights, its input, and the real taggers.

The random-weight model goes through the same :func:`build_graph` as the
real checkpoints and is checked against a direct numpy transcription of
``musicnn/models.py`` (TensorFlow layouts, padding and the interleaved
``[max, mean]`` flattening).  The real models (marked ``model`` and
``emotify``) are built from the downloaded wheel, kept in pytest's cache
folder (``.pytest_cache/d/emodist-musicnn``), and compared with outputs of
the original TensorFlow network (``tests/reference/musicnn_reference.npz``,
made by ``tests/reference/musicnn_reference_tf.py``; docs/musicnn.md).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from emodist.errors import DataError, ModelError
from emodist.models import musicnn as m
from emodist.models import musicnn_graph as mg
from tests.musicnn_check import TOL, numpy_musicnn

DATA = Path(__file__).resolve().parents[1] / "reference"


@pytest.fixture(scope="module")
def random_model(tmp_path_factory) -> str:
    return m.build_random_model(tmp_path_factory.mktemp("musicnn") / "random.onnx", seed=0)


@pytest.fixture(scope="module")
def patches() -> np.ndarray:
    rng = np.random.default_rng(5)
    return rng.uniform(0.0, 4.0, (4, m.N_FRAMES, m.N_MELS)).astype(np.float32)


def test_tag_names():
    for v in ("mtt", "msd"):
        tags = m.tag_names(v)
        assert len(tags) == 50 and len(set(tags)) == 50
    assert m.tag_names("MTT")[:3] == ["guitar", "classical", "slow"]
    assert m.tag_names("msd")[:3] == ["rock", "pop", "alternative"]
    with pytest.raises(ModelError, match="unknown musicnn variant"):
        m.tag_names("fma")


def test_widths():
    shapes = mg.expected_shapes()
    front = sum(shapes[f"{c}/kernel"][-1] for c, _, _ in mg.TIMBRAL + mg.TEMPORAL)
    assert front == 561 and front + 3 * 64 == m.OUTPUTS["max_pool"] == m.OUTPUTS["mean_pool"] == 753
    assert shapes["dense/kernel"] == (1506, 200)


def test_random_model_shapes_and_sidecar(random_model, patches):
    out = m.run_model(random_model, patches)
    assert list(out) == list(m.OUTPUTS)
    for name, width in m.OUTPUTS.items():
        assert out[name].shape == (4, width) and out[name].dtype == np.float32, name
        assert np.isfinite(out[name]).all()
    assert ((out["taggram"] >= 0) & (out["taggram"] <= 1)).all()
    assert (out["max_pool"] >= out["mean_pool"] - 1e-5).all()
    meta = json.loads(Path(random_model + ".json").read_text())
    assert meta["outputs"] == m.OUTPUTS and meta["input_name"] == m.INPUT_NAME
    assert meta["input_shape"] == [None, 187, 96] and meta["opset"] == 17


def test_dynamic_batch(random_model, patches):
    four = m.run_model(random_model, patches, batch_size=4)
    one = m.run_model(random_model, patches, batch_size=1)
    for name in m.OUTPUTS:
        np.testing.assert_allclose(one[name], four[name], atol=1e-5, rtol=1e-6, err_msg=name)


def test_graph_matches_numpy_transcription_of_models_py(random_model, patches):
    weights = mg.random_weights(0)
    out = m.run_model(random_model, patches[:2])
    for i in range(2):
        ref = numpy_musicnn(weights, patches[i])
        for name in m.OUTPUTS:
            scale = max(1.0, float(np.abs(ref[name]).max()))
            np.testing.assert_allclose(out[name][i], ref[name], atol=2e-5 * scale, rtol=0, err_msg=name)


def test_weights_are_checked():
    w = mg.random_weights(1)
    del w["conv2d_3/bias"]
    with pytest.raises(ModelError, match="lacks variable conv2d_3/bias"):
        mg.build_graph(w)
    w = mg.random_weights(1)
    w["dense/kernel"] = w["dense/kernel"][:-1]
    with pytest.raises(ModelError, match="dense/kernel has shape"):
        mg.build_graph(w)


def test_input_patches_shapes():
    rng = np.random.default_rng(0)
    y = (0.3 * rng.standard_normal(15 * m.SR)).astype(np.float32)
    p = m.input_patches(y)
    assert p.shape == (5, 187, 96) and p.dtype == np.float32 and np.isfinite(p).all()
    assert p.min() >= 0.0
    # from a precomputed mel power spectrogram: the same
    np.testing.assert_array_equal(m.input_patches(mel=m.mel_power(y)), p)
    # frames = 1 + samples // 256; the partial last patch is dropped
    assert m.input_patches(y[: 256 * (2 * 187 - 1)]).shape == (2, 187, 96)
    assert m.input_patches(y[: 256 * (2 * 187 - 1) - 1]).shape == (1, 187, 96)
    assert m.input_patches(y[: 2 * m.SR]).shape == (0, 187, 96)


def test_input_patches_formula_and_loud_audio():
    """log10(10000 x + 1) of the float16-rounded mel in float32: loud audio stays finite."""
    t = np.arange(4 * m.SR) / m.SR
    y = (0.99 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    mel = m.mel_power(y)
    assert mel.max() > 6.56  # would overflow float16 after * 10000
    p = m.input_patches(y)
    assert np.isfinite(p).all()
    expected = np.log10(10000 * mel.T[:187].astype(np.float16).astype(np.float32) + 1)
    np.testing.assert_array_equal(p[0], expected)


def test_input_patches_resamples():
    rng = np.random.default_rng(1)
    y44 = (0.2 * rng.standard_normal(44100 * 4)).astype(np.float32)
    assert m.input_patches(y44, sr=44100).shape == (1, 187, 96)


def test_input_patches_errors():
    with pytest.raises(DataError, match="exactly one"):
        m.input_patches()
    with pytest.raises(DataError, match="mono"):
        m.input_patches(np.zeros((2, 16000), np.float32))
    with pytest.raises(DataError, match=r"\(96, frames\)"):
        m.input_patches(mel=np.zeros((128, 400)))
    with pytest.raises(DataError, match="patches must be"):
        m.run_model("unused.onnx", np.zeros((2, 100, 96), np.float32))


def test_wheel_sha256_is_checked(tmp_path):
    fake = tmp_path / m.WHEEL_FILE
    fake.write_bytes(b"PK\x05\x06" + bytes(18))
    with pytest.raises(ModelError, match="is not the expected"):
        m.build_musicnn("mtt", tmp_path / "x.onnx", from_wheel=fake)
    with pytest.raises(ModelError, match="wheel not found"):
        m.build_musicnn("msd", tmp_path / "x.onnx", from_wheel=tmp_path / "missing.whl")


# ---------------------------------------------------------------------------
# the real taggers against TensorFlow
# ---------------------------------------------------------------------------



@pytest.mark.model
@pytest.mark.emotify
def test_real_musicnn_matches_tensorflow(real_musicnn, emotify_root):
    from emodist.data.audio import load_track

    sys.path.insert(0, str(DATA))
    try:
        from make_musicnn_reference import summarise
    finally:
        sys.path.remove(str(DATA))
    ref = np.load(DATA / "musicnn_reference.npz")
    for seg in ("seg0", "seg1"):
        y = load_track(str(emotify_root / str(ref[f"{seg}/path"])), m.SR,
                       offset_s=float(ref[f"{seg}/start_s"]), duration_s=float(ref[f"{seg}/duration_s"]))
        patches = m.input_patches(y)
        assert len(patches) == int(ref[f"{seg}/n_patches"])
        for v, path in real_musicnn.items():
            got = summarise(m.run_model(path, patches))
            where = f"{seg} {v}"
            np.testing.assert_allclose(got["taggram"], ref[f"{seg}/{v}/taggram"], atol=TOL["taggram"],
                                       rtol=0, err_msg=where)
            np.testing.assert_allclose(got["penultimate"], ref[f"{seg}/{v}/penultimate"],
                                       atol=TOL["penultimate"], rtol=0, err_msg=where)
            for pool in ("max_pool", "mean_pool"):
                np.testing.assert_allclose(got[f"{pool}_proj16"], ref[f"{seg}/{v}/{pool}_proj16"],
                                           atol=TOL["proj16"], rtol=0, err_msg=f"{where} {pool}")
                np.testing.assert_allclose(got[f"{pool}_norm"], ref[f"{seg}/{v}/{pool}_norm"],
                                           rtol=TOL["norm_rel"], err_msg=f"{where} {pool}")


@pytest.mark.model
@pytest.mark.emotify
def test_real_musicnn_equals_the_float64_network_on_real_patches(real_musicnn, musicnn_wheel,
                                                                  emotify_root):
    """Real weights, real audio: the fp32 graph is within float32 rounding of the exact network.

    The float64 transcription of models.py is the exact value; TensorFlow's own
    fp32 graph is 1.2e-6 of the largest value away from it (docs/musicnn.md), so
    2e-6 of each output's largest value is float32 rounding, and any layout,
    padding or folding error shows as far more.
    """
    from emodist.data.audio import load_track

    ref = np.load(DATA / "musicnn_reference.npz")
    y = load_track(str(emotify_root / str(ref["seg1/path"])), m.SR,
                   offset_s=float(ref["seg1/start_s"]), duration_s=float(ref["seg1/duration_s"]))
    patches = m.input_patches(y)
    for v, path in real_musicnn.items():
        weights = m.load_weights(v, musicnn_wheel)
        got = m.run_model(path, patches, batch_size=1)
        exact = [numpy_musicnn(weights, p) for p in patches]
        for out in m.OUTPUTS:
            want = np.stack([e[out] for e in exact])
            bound = 2e-6 * max(1.0, float(np.abs(want).max()))
            assert np.abs(got[out] - want).max() <= bound, (v, out)


@pytest.mark.model
def test_real_musicnn_sidecar(real_musicnn):
    for v, path in real_musicnn.items():
        meta = json.loads(Path(path + ".json").read_text())
        assert meta["variant"] == v and meta["tags"] == m.tag_names(v)
        assert meta["wheel_sha256"] == m.WHEEL_SHA256 and meta["licence"].startswith("ISC")
        assert meta["outputs"] == m.OUTPUTS
