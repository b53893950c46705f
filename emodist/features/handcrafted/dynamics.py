"""Dynamics: RMS energy, low-energy rate and zero-crossing rate (mirrms, mirlowenergy, mirzerocross).

The only features computed from the samples ``analysis.y`` rather than from
the STFT.  Frames are the STFT's: ``n_fft`` samples, ``hop_length`` apart,
centred.
"""

from __future__ import annotations

import librosa
import numpy as np

from emodist.features.handcrafted.common import cached, framed_sums, stats
from emodist.features.spectral import Analysis

__all__ = ["dynamics_features", "frame_rms", "low_energy_rate", "zcr_features", "zcr_frames"]


def _n_frames(y: np.ndarray, hop_length: int, n_frames: int | None) -> int:
    return 1 + y.shape[0] // hop_length if n_frames is None else int(n_frames)


def zcr_frames(y: np.ndarray, *, frame_length: int = 2048, hop_length: int = 512,
               n_frames: int | None = None) -> np.ndarray:
    """Fraction of zero crossings per frame, as ``librosa.feature.zero_crossing_rate``.

    Kept because it is faster (``benchmarks/bench_library_copies.py`` row
    "zcr_frames vs librosa.feature.zero_crossing_rate").  librosa centres the
    frames with edge padding, treats ``|y| <= 1e-10`` as zero and counts
    sign-bit changes between neighbouring samples of a frame.  Edge padding
    repeats the end samples, so it adds no crossing: counting crossings of
    ``y`` itself with frame sums gives the same numbers.

    Parameters
    ----------
    y : np.ndarray
        ``(samples,)`` audio.
    frame_length, hop_length : int
        Framing.
    n_frames : int, optional
        Number of frames; default ``1 + len(y) // hop_length``.

    Returns
    -------
    np.ndarray
        ``(n_frames,)`` float64, crossings per sample.
    """
    y = np.asarray(y)
    n = _n_frames(y, hop_length, n_frames)
    sb = np.signbit(y) & (np.abs(y) > 1e-10)
    cross = np.empty(y.shape[0], dtype=np.float32)
    cross[0] = 0.0
    np.not_equal(sb[1:], sb[:-1], out=cross[1:])
    # a crossing at sample p counts for a frame holding both p - 1 and p:
    # the frame's sum minus the crossing at its own first sample
    pad = frame_length // 2
    counts = framed_sums(cross, frame_length=frame_length, hop_length=hop_length, n_frames=n,
                         offset=pad)
    first = np.arange(n) * hop_length - pad
    inside = (first >= 0) & (first < y.shape[0])
    counts[inside] -= cross[first[inside]]
    return counts / frame_length


def low_energy_rate(rms: np.ndarray) -> float:
    """Fraction of frames whose RMS is below the mean frame RMS (MIRtoolbox's threshold 1); 0 for silence."""
    mean = rms.mean()
    return float(np.mean(rms < mean)) if mean > 0 else 0.0


def frame_rms(an: Analysis) -> np.ndarray:
    """Frame RMS on the STFT framing, ``(frames,)``, cached (also the attack envelope).

    ``librosa.feature.rms(y=y, frame_length=n_fft, hop_length=hop)``: centred,
    zero-padded frames of the samples.
    """
    return cached(an, "rms", lambda: librosa.feature.rms(
        y=an.y, frame_length=an.n_fft, hop_length=an.hop_length)[0])


def dynamics_features(an: Analysis) -> dict[str, float]:
    """RMS (whole segment and frame mean/std) and the low-energy rate (mirrms, mirlowenergy)."""
    rms = frame_rms(an)
    y = an.y.astype(np.float64)
    return {"rms": float(np.sqrt(np.mean(y * y))), **stats("rms", rms),
            "low_energy": low_energy_rate(rms)}


def zcr_features(an: Analysis) -> dict[str, float]:
    """Zero-crossing rate, fraction per sample (mirzerocross; librosa's convention)."""
    return stats("zcr", zcr_frames(an.y, frame_length=an.n_fft, hop_length=an.hop_length,
                                   n_frames=an.n_frames))
