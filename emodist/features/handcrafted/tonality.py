"""Tonality: chromagram, key, mode, key clarity, tonal centroid and harmonic change.

mirchromagram, mirkey, mirkeystrength, mirmode, mirtonalcentroid and mirhcdf,
from the segment's one STFT.
"""

from __future__ import annotations

import functools

import librosa
import numpy as np
import scipy.ndimage

from emodist.features.handcrafted.common import AMIN, cached, row_stats, safe_div, stats
from emodist.features.handcrafted.names import chroma_bases, tonal_bases
from emodist.features.handcrafted.peaks import PCP_PEAK_FLOOR, SHARED_PEAK_FLOOR, segment_peaks
from emodist.features.spectral import Analysis, chroma_basis, thread_free_product

__all__ = [
    "HCDF_SIGMA_S", "KK_MAJOR", "KK_MINOR", "PCP_FMAX_HZ", "PCP_FMIN_HZ", "chroma",
    "chroma_features", "harmonic_change", "key_features", "key_strengths",
    "pitch_class_profile", "tonal_features",
]

#: Krumhansl-Kessler key profiles (C major, C minor), as used by MIRtoolbox's mirkey.
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
#: Gaussian smoothing of the tonal centroid before the harmonic change, in seconds.
HCDF_SIGMA_S = 0.2
#: Frequency range of the pitch-class profile used for the key.
PCP_FMIN_HZ, PCP_FMAX_HZ = 100.0, 5000.0


def chroma(an: Analysis) -> np.ndarray:
    """Chromagram ``(12, frames)`` from ``S ** 2``, max-normalised per frame, cached.

    What ``librosa.feature.chroma_stft(S=S**2, tuning=0)`` computes, with the
    filterbank built once per ``(sr, n_fft)``
    (:func:`emodist.features.spectral.chroma_basis`) instead of per call, and
    ``librosa.util.normalize(norm=inf)``.
    """
    return cached(an, "chroma", lambda: librosa.util.normalize(
        thread_free_product(chroma_basis(an.sr, an.n_fft), an.power), norm=np.inf, axis=0))


def chroma_features(an: Analysis) -> dict[str, float]:
    """Mean/std of each chroma bin (mirchromagram)."""
    return row_stats(chroma_bases(), chroma(an))


@functools.lru_cache(maxsize=1)
def _key_profiles() -> np.ndarray:
    """24 rotated, z-scored Krumhansl-Kessler profiles: rows 0-11 major, 12-23 minor."""
    rows = [np.roll(KK_MAJOR, k) for k in range(12)] + [np.roll(KK_MINOR, k) for k in range(12)]
    P = np.asarray(rows)
    P = (P - P.mean(axis=1, keepdims=True)) / P.std(axis=1, keepdims=True)
    P.setflags(write=False)
    return P


def key_strengths(chroma_vector: np.ndarray) -> np.ndarray:
    """Pearson correlation of a 12-bin chroma vector with the 24 key profiles (mirkeystrength).

    Parameters
    ----------
    chroma_vector : np.ndarray
        ``(12,)`` pitch-class weights, C first.

    Returns
    -------
    np.ndarray
        ``(24,)``: C major ... B major, C minor ... B minor; zeros for a
        constant vector (silence).
    """
    c = np.asarray(chroma_vector, dtype=np.float64)
    sd = c.std()
    if not np.isfinite(sd) or sd <= 1e-12:
        return np.zeros(24)
    z = (c - c.mean()) / sd
    return _key_profiles() @ z / 12.0


def pitch_class_profile(an: Analysis, *, fmin: float = PCP_FMIN_HZ, fmax: float = PCP_FMAX_HZ,
                        floor: float = PCP_PEAK_FLOOR) -> np.ndarray:
    """Peak-based pitch-class profile per frame (HPCP-like), ``(12, frames)``, max-normalised.

    Written here: each spectral peak between ``fmin`` and ``fmax`` (and above
    ``floor`` times the frame maximum) gets its frequency refined by parabolic
    interpolation of the log magnitude and adds its power to its nearest pitch
    class (A440 tuning).  Unlike the filterbank chroma, a pure tone does not
    leak into the neighbouring semitones at ``n_fft = 2048``, which is what
    key finding needs (a bare C-major triad must read as C major).
    """
    def compute():
        n_frames = an.n_frames
        pk = segment_peaks(an)
        k_lo = np.searchsorted(an.freqs, fmin, side="left")
        k_hi = np.searchsorted(an.freqs, fmax, side="right")
        keep = (pk.k >= k_lo) & (pk.k < k_hi) & (pk.amp > 0)
        if floor > SHARED_PEAK_FLOOR:
            keep &= pk.amp >= np.float32(floor) * pk.frame_max[pk.t]
        t, k = pk.t[keep], pk.k[keep]
        amp = pk.amp[keep].astype(np.float64)
        near = np.stack([pk.left[keep], pk.amp[keep], pk.right[keep]]).astype(np.float64)
        a, b, c = np.log(near + AMIN)
        den = a - 2 * b + c  # < 0 at a peak: the parabola through the log amplitudes opens down
        shift = np.clip(safe_div(0.5 * (c - a), np.where(den < 0, -den, 0.0)), -0.5, 0.5)
        freq = (k + shift) * an.sr / an.n_fft
        pc = np.mod(np.round(12 * np.log2(freq / 440.0)) + 9, 12).astype(np.int64)
        prof = np.bincount(t * 12 + pc, weights=amp * amp,
                           minlength=n_frames * 12).reshape(n_frames, 12).T
        return safe_div(prof, prof.max(axis=0, keepdims=True))

    return cached(an, ("pcp", fmin, fmax, floor), compute)


def key_features(an: Analysis) -> dict[str, float]:
    """Key, mode and key clarity from the mean pitch-class profile (mirkey, mirmode).

    ``key`` is the tonic's pitch class (0 = C ... 11 = B), ``key_mode`` 1 for
    major and 0 for minor, ``key_clarity`` the best key strength, ``mode``
    the best major strength minus the best minor strength (MIRtoolbox's
    'Best' mode: > 0 major).  The profile is :func:`pitch_class_profile`.
    """
    ks = key_strengths(pitch_class_profile(an).mean(axis=1))
    if not ks.any():
        return {"key": 0.0, "key_mode": 0.0, "key_clarity": 0.0, "mode": 0.0}
    best = int(np.argmax(ks))
    return {"key": float(best % 12), "key_mode": float(best < 12),
            "key_clarity": float(ks[best]), "mode": float(ks[:12].max() - ks[12:].max())}


def harmonic_change(tc: np.ndarray, *, sigma: float) -> np.ndarray:
    """Harmonic change detection function (Harte et al. 2006), written here.

    Parameters
    ----------
    tc : np.ndarray
        ``(6, frames)`` tonal centroid.
    sigma : float
        Gaussian smoothing along frames, in frames.

    Returns
    -------
    np.ndarray
        ``(frames - 2,)``: Euclidean distance between the smoothed centroids
        of frames ``t - 1`` and ``t + 1`` (empty under 3 frames).
    """
    smooth = scipy.ndimage.gaussian_filter1d(tc, sigma, axis=1, mode="nearest") if tc.shape[1] > 1 else tc
    if smooth.shape[1] < 3:
        return np.zeros(0)
    return np.sqrt(((smooth[:, 2:] - smooth[:, :-2]) ** 2).sum(axis=0))


def tonal_features(an: Analysis) -> dict[str, float]:
    """Tonal centroid (6-D, ``librosa.feature.tonnetz(chroma=...)``) and HCDF (mirtonalcentroid, mirhcdf)."""
    tc = librosa.feature.tonnetz(sr=an.sr, chroma=chroma(an))
    change = harmonic_change(tc, sigma=HCDF_SIGMA_S * an.sr / an.hop_length)
    return {**row_stats(tonal_bases(), tc), **stats("hcdf", change)}
