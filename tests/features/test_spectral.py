"""The one STFT per segment and the cached filterbanks."""

from __future__ import annotations

import librosa
import numpy as np
import pytest

from emodist.errors import DataError, EmodistError
from emodist.features import spectral
from emodist.spec import ExtractionSpec

SR = 22050


def _noise(seconds: float, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(SR * seconds))).astype(np.float32)


def test_analyse_matches_librosa_stft_magnitude():
    y = _noise(2.0)
    an = spectral.analyse(y, SR, ExtractionSpec())
    ref = np.abs(librosa.stft(y, n_fft=2048, hop_length=512))
    assert an.S.dtype == np.float32
    assert an.S.shape == (1025, 1 + y.shape[0] // 512) == ref.shape
    np.testing.assert_allclose(an.S, ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(an.freqs, librosa.fft_frequencies(sr=SR, n_fft=2048))
    assert (an.sr, an.n_fft, an.hop_length, an.n_frames) == (SR, 2048, 512, ref.shape[1])


def test_analyse_follows_config_sizes():
    y = _noise(1.0)
    an = spectral.analyse(y, SR, ExtractionSpec(n_fft=1024, hop_length=256))
    assert an.S.shape == (513, 1 + y.shape[0] // 256)
    assert an.freqs.shape == (513,)
    assert an.freqs[-1] == pytest.approx(SR / 2)


def test_analyse_converts_and_cleans_input():
    y = _noise(0.5).astype(np.float64)
    y[10] = np.nan
    y[20] = np.inf
    an = spectral.analyse(y, SR, ExtractionSpec())
    assert an.y.dtype == np.float32
    assert an.y[10] == 0 and an.y[20] == 0
    assert np.all(np.isfinite(an.S))


def test_analyse_short_segment_shorter_than_window():
    an = spectral.analyse(_noise(0.05), SR, ExtractionSpec())
    assert an.S.shape[0] == 1025 and an.S.shape[1] >= 1
    assert np.all(np.isfinite(an.S))


def test_analyse_rejects_empty_and_multichannel():
    with pytest.raises(DataError, match="no samples"):
        spectral.analyse(np.zeros(0, dtype=np.float32), SR, ExtractionSpec())
    with pytest.raises(EmodistError, match="mono"):
        spectral.analyse(np.zeros((2, 100), dtype=np.float32), SR, ExtractionSpec())


def test_filterbanks_are_cached_and_match_librosa():
    a = spectral.mel_basis(SR, 2048)
    assert a is spectral.mel_basis(SR, 2048)
    assert not a.flags.writeable
    np.testing.assert_allclose(a, librosa.filters.mel(sr=SR, n_fft=2048), rtol=1e-6)
    c = spectral.chroma_basis(SR, 2048)
    assert c is spectral.chroma_basis(SR, 2048)
    np.testing.assert_allclose(c, librosa.filters.chroma(sr=SR, n_fft=2048, tuning=0.0), rtol=1e-6)
    assert spectral.mel_basis(8000, 512).shape == (spectral.N_MELS, 257)


def test_power_and_mel_are_computed_once():
    an = spectral.analyse(_noise(1.0), SR, ExtractionSpec())
    p = an.power
    assert p is an.power
    np.testing.assert_allclose(p, an.S**2)
    mel = an.mel_power
    assert mel is an.mel_power
    ref = librosa.feature.melspectrogram(y=an.y, sr=SR)
    np.testing.assert_allclose(mel, ref, rtol=1e-4, atol=1e-6)
