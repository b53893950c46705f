"""Calibration images for int8 quantization: spectrograms of generated music-like audio.

:func:`emodist.models.quantize.quantize_int8` calibrates on images that
should look like those the model will see; without real audio at hand,
:func:`synthetic_calibration_images` makes them from generated clips through
the same STFT and picture as real segments.
"""

from __future__ import annotations

import numpy as np

from emodist.features.images import spectrogram_image
from emodist.features.inception import InceptionV3
from emodist.features.spectral import analyse
from emodist.models.build import IMAGE_SIZE
from emodist.spec import ExtractionSpec

__all__ = ["synthetic_calibration_images"]


def synthetic_calibration_images(n: int = 16, seed: int = 0, spec=None, group=None) -> np.ndarray:
    """uint8 ``(n, size, size)`` spectrogram images of generated music-like audio.

    Each clip (``spec.segment_seconds`` long) mixes a few harmonic notes
    with random pitches and decays, pink-ish noise bursts and a silent gap,
    and goes through :func:`emodist.features.spectral.analyse` and
    :func:`emodist.features.images.spectrogram_image` exactly like real segments.

    Parameters
    ----------
    n : int
        Images.
    seed : int
        Seed of the generated audio.
    spec : ExtractionSpec, optional
        Segment length, sample rate and STFT (default ``ExtractionSpec()``).
    group : InceptionV3, optional
        The picture settings (default Inception-v3 at the network's own size).

    Returns
    -------
    numpy.ndarray
        uint8 ``(n, size, size)``, calibration input of
        :func:`emodist.models.quantize.quantize_int8`.
    """
    cfg = spec or ExtractionSpec()
    picture = group or InceptionV3(image_size=IMAGE_SIZE)
    rng = np.random.default_rng(seed)
    sr = cfg.sr
    length = int(cfg.segment_seconds * sr)
    t = np.arange(length) / sr
    images = []
    for _ in range(n):
        y = np.zeros(length, np.float64)
        for _ in range(rng.integers(3, 9)):
            f0 = 55.0 * 2 ** rng.uniform(0, 5)
            start = rng.uniform(0, cfg.segment_seconds * 0.8)
            env = np.where(t >= start, np.exp(-(t - start) * rng.uniform(0.3, 4.0)), 0.0)
            for k in range(1, rng.integers(2, 8)):
                y += env * np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6.28)) / k
        noise = np.cumsum(rng.standard_normal(length)) * 1e-3
        noise -= np.convolve(noise, np.ones(64) / 64, mode="same")
        bursts = (rng.random(length // 2048 + 1) < 0.3).repeat(2048)[:length]
        y += rng.uniform(0.05, 0.5) * bursts * (noise + 0.05 * rng.standard_normal(length))
        gap = int(rng.uniform(0, 0.8) * length)
        y[gap: gap + int(0.1 * length)] = 0.0
        y = (0.5 * y / (np.abs(y).max() + 1e-9)).astype(np.float32)
        images.append(spectrogram_image(analyse(y, sr, cfg), picture))
    return np.stack(images)
