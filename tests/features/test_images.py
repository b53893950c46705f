"""Spectrogram images made from the segment's one STFT."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from emodist.errors import EmodistError
from emodist.features.images import (
    log_spectrogram,
    resize_bilinear,
    resize_weights,
    scale_to_pixels,
    spectrogram_image,
)
from emodist.features.inception import InceptionV3
from emodist.features.spectral import analyse
from emodist.models.build import to_network_input
from emodist.spec import ExtractionSpec

SR = 22050


def tone(freq: float, seconds: float = 4.0, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize("n_in,n_out", [(1025, 299), (40, 299), (299, 299), (646, 299), (7, 3)])
def test_resize_weights_rows_sum_to_one(n_in, n_out):
    W = resize_weights(n_in, n_out)
    assert W.shape == (n_out, n_in)
    np.testing.assert_allclose(np.asarray(W.sum(axis=1)).ravel(), 1.0, rtol=1e-5)
    assert (W.data >= 0).all()


@pytest.mark.parametrize("shape", [(1025, 647), (40, 30), (128, 646), (300, 300)])
def test_resize_matches_pillow_bilinear(shape):
    x = (np.random.default_rng(1).random(shape) * 255).astype(np.float32)
    ours = resize_bilinear(x, (299, 299))
    pil = np.asarray(Image.fromarray(x, mode="F").resize((299, 299), Image.BILINEAR))
    assert ours.shape == (299, 299)
    np.testing.assert_allclose(ours, pil, atol=1e-3)


def test_resize_rejects_bad_shapes():
    with pytest.raises(EmodistError):
        resize_bilinear(np.zeros((3, 4, 5)), (2, 2))
    with pytest.raises(EmodistError):
        resize_weights(0, 5)


def test_scale_to_pixels_range_and_constant():
    x = np.array([[-3.0, 1.0], [5.0, np.nan]], dtype=np.float32)
    p = scale_to_pixels(x)
    assert p.min() == 0 and p.max() == pytest.approx(255)
    assert p[1, 1] == 0  # non-finite treated as the minimum
    assert (scale_to_pixels(np.full((4, 4), 7.0)) == 0).all()


def picture(size: int = 299, **kw) -> InceptionV3:
    """The picture parameters of the Inception-v3 group."""
    return InceptionV3(image_size=size, **kw)


def test_image_of_a_tone_is_a_bright_row_low_frequencies_at_bottom():
    cfg = ExtractionSpec()
    img = spectrogram_image(analyse(tone(1000.0), SR, cfg), picture())
    assert img.shape == (299, 299) and img.dtype == np.uint8
    row = int(np.argmax(img.mean(axis=1)))
    bin_1k = 1000.0 / SR * cfg.n_fft  # STFT row of 1 kHz
    expected = 299 - (bin_1k + 0.5) * 299 / (1 + cfg.n_fft // 2)
    assert abs(row - expected) <= 2
    img_hi = spectrogram_image(analyse(tone(4000.0), SR, cfg), picture())
    assert int(np.argmax(img_hi.mean(axis=1))) < row - 50  # higher pitch, higher up


def test_time_runs_left_to_right():
    cfg = ExtractionSpec()
    y = np.concatenate([np.zeros(2 * SR, np.float32), tone(500.0, 2.0)])
    y += np.float32(1e-4) * np.random.default_rng(0).standard_normal(y.size).astype(np.float32)
    img = spectrogram_image(analyse(y, SR, cfg), picture()).astype(float)
    row = int(np.argmax(img[:, 200:].mean(axis=1)))
    assert img[row, 200:].mean() > img[row, :100].mean() + 50


def test_image_uses_the_given_stft_only():
    cfg = picture(64)
    S = np.ones((1025, 100), np.float32)
    S[:100] = 10.0  # loud low band
    img = spectrogram_image(SimpleNamespace(S=S, sr=SR, n_fft=2048), cfg)
    assert img.shape == (64, 64)
    assert img[-3:].min() == 255 and img[:50].max() == 0  # bottom bright, top dark


def test_mel_scale_and_log_floor_change_the_image():
    an = analyse(tone(300.0), SR, ExtractionSpec())
    lin = spectrogram_image(an, picture())
    mel = spectrogram_image(an, picture(image_scale="mel"))
    assert mel.shape == lin.shape
    # mel stretches low frequencies: the 300 Hz row moves up, by more than 10 rows
    assert int(np.argmax(mel.mean(axis=1))) < int(np.argmax(lin.mean(axis=1))) - 10
    assert log_spectrogram(an, picture(image_scale="mel")).shape[0] == 128
    floor = spectrogram_image(an, picture(image_log_floor=1e-2))
    assert np.abs(floor.astype(int) - lin).mean() > 5


def test_constant_and_bad_spectrograms():
    cfg = picture(32)
    assert (spectrogram_image(SimpleNamespace(S=np.zeros((10, 10), np.float32), sr=SR,
                                              n_fft=18), cfg) == 0).all()
    with pytest.raises(EmodistError):
        spectrogram_image(SimpleNamespace(S=np.zeros((0, 5)), sr=SR, n_fft=2048), cfg)
    with pytest.raises(EmodistError):
        spectrogram_image(SimpleNamespace(S=np.ones((10, 10)), sr=SR, n_fft=18),
                          picture(0))


def test_to_network_input_maps_pixels_like_tensorflow_inception():
    imgs = np.array([[[0, 128, 255]], [[1, 2, 3]]], dtype=np.uint8)
    x = to_network_input(imgs)
    assert x.shape == (2, 3, 1, 3) and x.dtype == np.float32
    np.testing.assert_array_equal(x[0, :, 0], [[-1.0, 0.0, 0.9921875]] * 3)
    np.testing.assert_allclose(x[1, 2, 0], np.array([1, 2, 3]) / 128 - 1)
    buf = np.empty((2, 3, 1, 3), np.float32)
    assert to_network_input(imgs, out=buf) is buf
    assert to_network_input(imgs[0]).shape == (1, 3, 1, 3)


def test_to_network_input_rejects_bad_input():
    with pytest.raises(EmodistError, match="uint8"):
        to_network_input(np.zeros((1, 4, 4), np.float32))
    with pytest.raises(EmodistError):
        to_network_input(np.zeros((1, 1, 4, 4), np.uint8))
    with pytest.raises(EmodistError):
        to_network_input(np.zeros((1, 4, 4), np.uint8), out=np.empty((2, 3, 4, 4), np.float32))
