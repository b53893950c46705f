"""Timbre: spectral shape, flux, roughness and MFCCs of the magnitude STFT.

mircentroid, mirspread, mirskewness, mirkurtosis, mirflatness, mirentropy,
mirrolloff, mirbrightness, mirregularity, mirflux, mirroughness and mirmfcc.
Shape statistics are taken over the frames that hold energy.
"""

from __future__ import annotations

import librosa
import numpy as np

from emodist.features.handcrafted.common import (
    AMIN,
    cached,
    log_mel,
    row_stats,
    safe_div,
    stats,
    voiced,
)
from emodist.features.handcrafted.names import SHAPE_BASES, mfcc_bases, stat_names
from emodist.features.handcrafted.peaks import (
    ROUGHNESS_PEAK_FLOOR,
    Peaks,
    local_peaks,
    segment_peaks,
)
from emodist.features.spectral import Analysis, thread_free_product

__all__ = [
    "BRIGHTNESS_CUTOFF_HZ", "DELTA_WIDTH", "ROUGHNESS_PEAKS", "delta", "flatness_entropy",
    "flux_features", "irregularity", "mfcc", "mfcc_features", "rolloff_bins",
    "roughness_features", "roughness_frames", "shape_features", "spectral_moments",
    "spectral_shape",
]

#: Brightness cut-off frequency (MIRtoolbox's mirbrightness default).
BRIGHTNESS_CUTOFF_HZ = 1500.0
#: Most spectral peaks per frame used for roughness (the strongest).
ROUGHNESS_PEAKS = 48
#: Width of the MFCC delta filter (librosa's default).
DELTA_WIDTH = 9


def _bin_sums(S: np.ndarray) -> np.ndarray:
    """Per-frame sums over bins in float32, returned in float64.

    A NumPy reduction, not a BLAS product: its values do not depend on how
    many threads BLAS runs (see :func:`emodist.features.spectral.thread_free_product`).
    """
    return S.sum(axis=0, dtype=np.float32).astype(np.float64)


def spectral_moments(S: np.ndarray, freqs: np.ndarray, *, total: np.ndarray | None = None):
    """Centroid, spread, skewness and kurtosis of each frame's magnitude distribution.

    Centroid and spread equal ``librosa.feature.spectral_centroid(S=S)`` and
    ``spectral_bandwidth(S=S)`` (p = 2); kept because one matrix product of
    ``[f, f^2, f^3, f^4]`` with ``S`` gives all four moments faster than
    librosa gives two (``benchmarks/bench_library_copies.py`` row
    "spectral_moments vs librosa centroid + bandwidth").

    Parameters
    ----------
    S : np.ndarray
        float32 magnitude spectrogram ``(bins, frames)``.
    freqs : np.ndarray
        ``(bins,)`` bin frequencies in Hz.
    total : np.ndarray, optional
        ``(frames,)`` bin sums of ``S`` when already computed.

    Returns
    -------
    centroid, spread, skewness, kurtosis : np.ndarray
        ``(frames,)`` float64; kurtosis not in excess; 0 for frames without
        energy, skewness and kurtosis 0 where the spread is ~0.
    """
    freqs = np.asarray(freqs, dtype=np.float64)
    total = _bin_sums(S) if total is None else total
    raw = safe_div(thread_free_product(np.stack([freqs**i for i in range(1, 5)]),
                                       S.astype(np.float64)), total)
    c, e2, e3, e4 = raw
    m2 = np.maximum(e2 - c * c, 0.0)
    m3 = e3 - 3 * c * e2 + 2 * c**3
    m4 = np.maximum(e4 - 4 * c * e3 + 6 * c * c * e2 - 3 * c**4, 0.0)
    spread = np.sqrt(m2)
    # guard the ratios against round-off when the spread is ~0 (a pure bin)
    tiny = (spread <= 1e-6 * np.maximum(np.abs(c), 1.0)) | (total <= 0)
    skew = np.where(tiny, 0.0, safe_div(m3, spread**3))
    kurt = np.where(tiny, 0.0, safe_div(m4, m2 * m2))
    return c, spread, skew, kurt


def flatness_entropy(S: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Spectral flatness and normalised spectral entropy per frame, from one logarithm.

    Flatness equals ``librosa.feature.spectral_flatness(S=S, power=1)``
    (geometric / arithmetic mean of ``max(S, amin)``); entropy is the Shannon
    entropy of the normalised magnitudes divided by ``log(bins)``
    (mirentropy).  Both share ``log(max(S, amin))``, which is why flatness is
    computed here (``benchmarks/bench_library_copies.py`` row
    "flatness_entropy vs librosa flatness + entropy").

    Parameters
    ----------
    S : np.ndarray
        float32 magnitude spectrogram ``(bins, frames)``.

    Returns
    -------
    flatness, entropy : np.ndarray
        ``(frames,)`` float64.
    """
    n_bins = S.shape[0]
    S_th = np.maximum(S, np.float32(AMIN))
    logS = np.log(S_th)
    th_sum = _bin_sums(S_th)
    flatness = np.exp(_bin_sums(logS) / n_bins) / (th_sum / n_bins)
    entropy = np.log(th_sum) - np.einsum("kt,kt->t", S_th, logS).astype(np.float64) / th_sum
    entropy = entropy / np.log(n_bins) if n_bins > 1 else np.zeros_like(entropy)
    return flatness, entropy


def rolloff_bins(S: np.ndarray, fractions, *, total: np.ndarray | None = None,
                 block: int = 32) -> list[np.ndarray]:
    """Index of the first bin whose cumulative magnitude reaches ``fraction * total``, per frame.

    The rule of ``librosa.feature.spectral_rolloff``, without a full
    cumulative sum over the spectrogram (the slow part): cumulative sums of
    blocks of ``block`` bins locate the block of the crossing, and only that
    block is summed bin by bin.  Kept because it is faster
    (``benchmarks/bench_library_copies.py`` row
    "rolloff_bins vs librosa.feature.spectral_rolloff").

    Parameters
    ----------
    S : np.ndarray
        Magnitude spectrogram ``(bins, frames)``.
    fractions : sequence of float
        Roll-off fractions, e.g. ``(0.85, 0.95)``.
    total : np.ndarray, optional
        ``(frames,)`` bin sums of ``S``.
    block : int
        Bins per block.

    Returns
    -------
    list of np.ndarray
        One ``(frames,)`` int array of bin indices per fraction.
    """
    S = np.asarray(S)
    n_bins, n_frames = S.shape
    n_blocks = -(-n_bins // block)
    if n_blocks * block != n_bins:
        S = np.concatenate([S, np.zeros((n_blocks * block - n_bins, n_frames), S.dtype)])
    blocks = S.reshape(n_blocks, block, n_frames)
    cb = np.cumsum(blocks.sum(axis=1, dtype=np.float64), axis=0)
    if total is None:
        total = cb[-1]
    frames = np.arange(n_frames)
    out = []
    for fraction in fractions:
        thr = fraction * np.asarray(total, dtype=np.float64)
        b = np.minimum(np.count_nonzero(cb < thr, axis=0), n_blocks - 1)
        before = np.where(b > 0, cb[np.maximum(b - 1, 0), frames], 0.0)
        inside = before[:, None] + np.cumsum(blocks[b, :, frames], axis=1, dtype=np.float64)
        idx = b * block + np.count_nonzero(inside < thr[:, None], axis=1)
        out.append(np.minimum(idx, n_bins - 1))
    return out


def irregularity(S: np.ndarray) -> np.ndarray:
    """Jensen irregularity ``sum (a_k - a_k+1)^2 / sum a_k^2`` over all bins, ``(frames,)`` (mirregularity)."""
    energy = np.einsum("kt,kt->t", S, S).astype(np.float64)
    neighbours = np.einsum("kt,kt->t", S[:-1], S[1:]).astype(np.float64)
    irregular = energy - S[0].astype(np.float64) ** 2 + energy - S[-1].astype(np.float64) ** 2
    return safe_div(np.maximum(irregular - 2 * neighbours, 0.0), energy)


def spectral_shape(S: np.ndarray, freqs: np.ndarray) -> dict[str, np.ndarray]:
    """Frame-wise shape descriptors of a magnitude spectrogram.

    Parameters
    ----------
    S : np.ndarray
        Magnitude spectrogram ``(bins, frames)``.
    freqs : np.ndarray
        ``(bins,)`` bin frequencies in Hz (increasing).

    Returns
    -------
    dict of str -> np.ndarray
        One ``(frames,)`` array per name of :data:`~.names.SHAPE_BASES`:
        :func:`spectral_moments`, :func:`flatness_entropy`,
        :func:`rolloff_bins` (85 %, 95 %) as frequencies, ``brightness``
        (share of magnitude above 1500 Hz, mirbrightness) and
        :func:`irregularity`.
    """
    S = np.asarray(S, dtype=np.float32)
    freqs = np.asarray(freqs, dtype=np.float64)
    total = _bin_sums(S)
    moments = spectral_moments(S, freqs, total=total)
    roll85, roll95 = rolloff_bins(S, (0.85, 0.95), total=total)
    cut = int(np.searchsorted(freqs, BRIGHTNESS_CUTOFF_HZ, side="right"))
    brightness = safe_div(_bin_sums(S[cut:]), total)
    values = (*moments, *flatness_entropy(S), freqs[roll85], freqs[roll95], brightness,
              irregularity(S))
    return dict(zip(SHAPE_BASES, values))


def shape_features(an: Analysis) -> dict[str, float]:
    """Mean/std of :func:`spectral_shape` over the frames that hold energy."""
    mask = voiced(an)
    if not mask.any():
        return {n: 0.0 for base in SHAPE_BASES for n in stat_names(base)}
    S = an.S if mask.all() else an.S[:, mask]
    out: dict[str, float] = {}
    for base, values in spectral_shape(S, an.freqs).items():
        out.update(stats(base, values))
    return out


def flux_features(an: Analysis) -> dict[str, float]:
    """Spectral flux: Euclidean distance between successive magnitude spectra (mirflux).

    Written here: librosa's onset strength is a different (log-mel, rectified)
    quantity.
    """
    dS = np.diff(an.S, axis=1)
    return stats("spectral_flux", np.sqrt((dS * dS).sum(axis=0, dtype=np.float64)))


def _strongest(pk: Peaks, n_frames: int, n_peaks: int, floor: float):
    """Frame, bin and magnitude of the ``n_peaks`` strongest peaks >= ``floor`` x maximum per frame."""
    keep = (pk.amp >= np.float32(floor) * pk.frame_max[pk.t]) & (pk.amp > 0)
    t, k, a = pk.t[keep], pk.k[keep], pk.amp[keep]
    counts = np.bincount(t, minlength=n_frames)
    if counts.size and counts.max() > n_peaks:
        # keep the n_peaks strongest of the crowded frames, in frequency order
        order = np.lexsort((-a, t))
        rank = np.empty_like(order)
        rank[order] = np.arange(order.shape[0]) - (np.cumsum(counts) - counts)[t[order]]
        sel = rank < n_peaks
        t, k, a = t[sel], k[sel], a[sel]
        counts = np.bincount(t, minlength=n_frames)
    return t, k, a, counts


def roughness_frames(S: np.ndarray, freqs: np.ndarray, *, n_peaks: int = ROUGHNESS_PEAKS,
                     floor: float = ROUGHNESS_PEAK_FLOOR, peaks: Peaks | None = None) -> np.ndarray:
    """Sensory dissonance per frame, Sethares' model of the Plomp-Levelt curve.

    Written here (no library provides it), following MIRtoolbox's mirroughness
    ('Sethares'): for every pair of spectral peaks ``(f_i, a_i), (f_j, a_j)``
    of a frame add ``a_i a_j (exp(-3.5 s |f_i - f_j|) - exp(-5.75 s |f_i - f_j|))``
    with ``s = 0.24 / (0.0207 min(f_i, f_j) + 18.96)``.  Peaks below ``floor``
    times the frame maximum are ignored, and at most the ``n_peaks`` strongest
    of a frame enter.

    Parameters
    ----------
    S : np.ndarray
        Magnitude spectrogram ``(bins, frames)``.
    freqs : np.ndarray
        ``(bins,)`` bin frequencies in Hz.
    n_peaks : int
        Most peaks per frame.
    floor : float
        Relative magnitude floor of a peak.
    peaks : Peaks, optional
        :func:`~.peaks.local_peaks` of ``S`` (with a floor <= ``floor``) when already computed.

    Returns
    -------
    np.ndarray
        ``(frames,)`` float64.
    """
    n_frames = S.shape[1]
    pk = local_peaks(S, floor=floor) if peaks is None else peaks
    t, k, a, counts = _strongest(pk, n_frames, n_peaks, floor)
    f = np.asarray(freqs, dtype=np.float32)[k]
    # every pair (i, j > i) of peaks inside a frame, generated without a Python loop
    pos = np.arange(t.shape[0]) - (np.cumsum(counts) - counts)[t]
    partners = counts[t] - pos - 1
    ii = np.repeat(np.arange(t.shape[0]), partners)
    jj = ii + 1 + np.arange(ii.shape[0]) - np.repeat(np.cumsum(partners) - partners, partners)
    fi, fj = f[ii], f[jj]  # fi < fj: bins ascend within a frame
    x = (fj - fi) * (np.float32(0.24) / (np.float32(0.0207) * fi + np.float32(18.96)))
    weights = a[ii] * a[jj] * (np.exp(np.float32(-3.5) * x) - np.exp(np.float32(-5.75) * x))
    return np.bincount(t[ii], weights=weights, minlength=n_frames)


def roughness_features(an: Analysis) -> dict[str, float]:
    """Mean/std of :func:`roughness_frames`."""
    return stats("roughness", roughness_frames(an.S, an.freqs, peaks=segment_peaks(an)))


def mfcc(an: Analysis, n_mfcc: int = 13) -> np.ndarray:
    """MFCCs 1..n_mfcc (0th excluded), ``(n_mfcc, frames)``, cached.

    Rows 1.. of ``librosa.feature.mfcc(S=log_mel, n_mfcc=n_mfcc + 1)``
    (orthonormal DCT-II of the log-mel spectrogram).
    """
    return cached(an, ("mfcc", n_mfcc),
                  lambda: librosa.feature.mfcc(S=log_mel(an), n_mfcc=n_mfcc + 1)[1:])


def delta(x: np.ndarray, *, width: int = DELTA_WIDTH) -> np.ndarray:
    """First-order deltas along the last axis, ``librosa.feature.delta``, same shape as ``x``.

    Inputs shorter than ``width`` frames use the widest odd width that fits
    (librosa refuses them); under 3 frames the deltas are 0.
    """
    n = x.shape[-1]
    width = min(width, n if n % 2 else n - 1)
    if width < 3:
        return np.zeros_like(x)
    return librosa.feature.delta(x, width=width)


def mfcc_features(an: Analysis, n_mfcc: int = 13) -> dict[str, float]:
    """Mean/std of MFCCs 1..n_mfcc and of their deltas (mirmfcc, 'Delta')."""
    m = mfcc(an, n_mfcc)
    return {**row_stats(mfcc_bases(n_mfcc), m),
            **row_stats(mfcc_bases(n_mfcc, prefix="mfcc_delta_"), delta(m))}
