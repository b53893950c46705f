"""Handcrafted features: a MIRtoolbox-equivalent set from one STFT per segment.

Every feature is derived from the :class:`emodist.features.spectral.Analysis` of a
segment: its samples (RMS, zero crossings) and its one magnitude STFT
(everything spectral, MFCC via the mel filterbank on ``S ** 2``, the onset
envelope from the log-mel spectrogram, tempo from the onset envelope, chroma
from ``S ** 2``, key, tonal centroid and harmonic change from the chroma).
No function here computes another transform of the audio.

Frame-wise features are summarised by their mean and standard deviation over
the frames (``*_mean``, ``*_std``); features MIRtoolbox reports as one value
per segment (tempo, pulse clarity, event density, low-energy rate, key...)
have one column.  The names, their order and the MIRtoolbox function each one
corresponds to are listed in ``docs/features.md``; :data:`FEATURE_NAMES_VERSION`
changes whenever the list or the meaning of a column changes.

Silence (or any frame with no energy) never produces NaN or inf: spectral
shape statistics are taken over the frames that hold energy, and a segment
without any such frame yields 0 for every feature.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import librosa
import numpy as np
import scipy.fft
import scipy.ndimage
import scipy.signal

from emodist.errors import EmodistError
from emodist.features.spectral import N_MELS, Analysis, chroma_basis

#: Version of the feature-name list and of the meaning of each column.
FEATURE_NAMES_VERSION = "1"

#: Named feature selections accepted by :func:`feature_names` and :func:`extract`.
FEATURE_SETS = ("full", "seed17")

#: Pitch classes in chroma order.
PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")

#: Krumhansl-Kessler key profiles (C major, C minor), as used by MIRtoolbox's mirkey.
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])

#: Brightness cut-off frequency (MIRtoolbox's mirbrightness default).
BRIGHTNESS_CUTOFF_HZ = 1500.0
#: Most spectral peaks per frame used for roughness (the strongest).
ROUGHNESS_PEAKS = 48
#: Peaks weaker than this fraction of the frame maximum (-20 dB) are ignored by roughness.
ROUGHNESS_PEAK_FLOOR = 0.1
#: Tempo search range in BPM and log-normal prior (librosa's ``tempo`` defaults).
TEMPO_MIN_BPM, TEMPO_MAX_BPM, TEMPO_START_BPM, TEMPO_STD_OCTAVES = 30.0, 320.0, 120.0, 1.0
#: A frame is silent when its mean power is below this (about -120 dBFS).
SILENT_FRAME_POWER = 1e-12
#: Smallest magnitude used inside logarithms (librosa's ``amin``).
AMIN = 1e-10
#: Width of the MFCC delta filter (librosa's default).
DELTA_WIDTH = 9
#: Gaussian smoothing of the tonal centroid before the harmonic change, in seconds.
HCDF_SIGMA_S = 0.2
#: Frequency range and peak floor of the pitch-class profile used for the key.
PCP_FMIN_HZ, PCP_FMAX_HZ, PCP_PEAK_FLOOR = 100.0, 5000.0, 0.01
#: Floor of the spectral peaks found once per segment and shared by roughness and the profile.
_PEAK_FLOOR = min(PCP_PEAK_FLOOR, ROUGHNESS_PEAK_FLOOR)
#: Longest attack phase searched before an onset peak, in seconds.
ATTACK_MAX_S = 0.5
#: Smallest prominence of an envelope peak counted as an attack, relative to the maximum.
ATTACK_PROMINENCE = 0.05


# --------------------------------------------------------------------------- names


def _stat_names(base: str) -> list[str]:
    return [f"{base}_mean", f"{base}_std"]


def _group_names(n_mfcc: int) -> dict[str, list[str]]:
    """Feature names per computing group, in output order."""
    mfcc = [f"mfcc_{i:02d}" for i in range(1, n_mfcc + 1)]
    return {
        "dynamics": ["rms", *_stat_names("rms"), "low_energy"],
        "zcr": _stat_names("zcr"),
        "shape": [
            n
            for base in (
                "spectral_centroid", "spectral_spread", "spectral_skewness",
                "spectral_kurtosis", "spectral_flatness", "spectral_entropy",
                "spectral_rolloff85", "spectral_rolloff95", "brightness",
                "spectral_irregularity",
            )
            for n in _stat_names(base)
        ],
        "flux": _stat_names("spectral_flux"),
        "roughness": _stat_names("roughness"),
        "mfcc": [n for b in mfcc for n in _stat_names(b)]
        + [n for b in mfcc for n in _stat_names(b.replace("mfcc_", "mfcc_delta_"))],
        "rhythm": ["tempo", "pulse_clarity", "event_density"],
        "attack": [*_stat_names("attack_time"), *_stat_names("attack_slope")],
        "chroma": [n for pc in PITCH_CLASSES for n in _stat_names(f"chroma_{pc}")],
        "key": ["key", "key_mode", "key_clarity", "mode"],
        "tonal": [n for i in range(1, 7) for n in _stat_names(f"tonal_centroid_{i}")]
        + _stat_names("hcdf"),
    }


def _seed17_names(n_mfcc: int) -> list[str]:
    """The study's 17 MIRtoolbox features, one column each except MFCC and chroma."""
    return [
        "rms_mean", "low_energy", "tempo", "pulse_clarity", "event_density",
        "zcr_mean", "spectral_centroid_mean", "spectral_spread_mean",
        "spectral_flatness_mean", "spectral_entropy_mean", "spectral_rolloff85_mean",
        "brightness_mean", "roughness_mean",
        *[f"mfcc_{i:02d}_mean" for i in range(1, n_mfcc + 1)],
        *[f"chroma_{pc}_mean" for pc in PITCH_CLASSES],
        "key_clarity", "mode",
    ]


@functools.lru_cache(maxsize=8)
def _names(feature_set: str, n_mfcc: int) -> tuple[str, ...]:
    if not 1 <= n_mfcc < N_MELS:
        raise EmodistError(f"n_mfcc must be between 1 and {N_MELS - 1}, got {n_mfcc!r}")
    if feature_set == "full":
        return tuple(n for names in _group_names(n_mfcc).values() for n in names)
    if feature_set == "seed17":
        return tuple(_seed17_names(n_mfcc))
    raise EmodistError(
        f"unknown feature set {feature_set!r}; choose from {', '.join(FEATURE_SETS)}"
    )


def feature_names(feature_set: str = "full", n_mfcc: int = 13) -> list[str]:
    """Names of the handcrafted features, in the order :func:`extract` returns them.

    Parameters
    ----------
    feature_set : {"full", "seed17"}
        ``"full"``: every feature; ``"seed17"``: the study's 17 MIRtoolbox
        features (see ``docs/features.md``).
    n_mfcc : int
        Number of MFCCs (coefficients 1..n_mfcc, the 0th excluded).

    Returns
    -------
    list of str

    Raises
    ------
    EmodistError
        Unknown feature set (the message lists the valid ones).
    """
    return list(_names(str(feature_set), int(n_mfcc)))


@functools.lru_cache(maxsize=8)
def _groups_needed(feature_set: str, n_mfcc: int) -> tuple[str, ...]:
    wanted = set(_names(feature_set, n_mfcc))
    return tuple(g for g, names in _group_names(n_mfcc).items() if wanted.intersection(names))


# ---------------------------------------------------------------- frame helpers


def _mean_std(x: np.ndarray, axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (population) standard deviation; 0 for an empty axis."""
    x = np.asarray(x, dtype=np.float64)
    if x.shape[axis] == 0:
        shape = list(x.shape)
        del shape[axis]
        return np.zeros(shape), np.zeros(shape)
    return x.mean(axis=axis), x.std(axis=axis)


def _stats(base: str, x: np.ndarray) -> dict[str, float]:
    m, s = _mean_std(x)
    return {f"{base}_mean": float(m), f"{base}_std": float(s)}


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` where ``den > 0``, else 0."""
    num, den = np.broadcast_arrays(np.asarray(num), np.asarray(den))
    out = np.zeros(num.shape, dtype=np.result_type(num, den, np.float32))
    np.divide(num, den, out=out, where=den > 0)
    return out


def framed_sums(x: np.ndarray, frame_length: int, hop_length: int, n_frames: int,
                offset: int = 0) -> np.ndarray:
    """Sum of ``x`` over frames ``[t * hop - offset, ... + frame_length)``, clipped to ``x``.

    Samples outside ``x`` count as zero (centred frames with ``offset =
    frame_length // 2``).  When the frame length and the offset are whole
    numbers of hops (the default 2048 / 512 / 1024), frames are sums of
    hop-sized blocks (one ``np.add.reduceat`` pass); otherwise one cumulative
    sum.  Accumulates in float64.
    """
    x = np.asarray(x)
    n = x.shape[0]
    if n and frame_length % hop_length == 0 and offset % hop_length == 0:
        per, lead = frame_length // hop_length, offset // hop_length
        blocks = np.add.reduceat(x, np.arange(0, n, hop_length), dtype=np.float64)
        need = n_frames + per
        padded = np.zeros(need + lead + blocks.shape[0])
        padded[lead : lead + blocks.shape[0]] = blocks
        c = np.concatenate(([0.0], np.cumsum(padded)))
        starts = np.arange(n_frames)
        return c[starts + per] - c[starts]
    c = np.concatenate(([0.0], np.cumsum(x, dtype=np.float64)))
    starts = np.arange(n_frames) * hop_length - offset
    stops = np.clip(starts + frame_length, 0, n)
    return c[stops] - c[np.clip(starts, 0, n)]


def rms_frames(y: np.ndarray, frame_length: int, hop_length: int, n_frames: int) -> np.ndarray:
    """Frame RMS of ``y`` with centred, zero-padded frames.

    Equals ``librosa.feature.rms(y=y, frame_length=..., hop_length=...)`` (same
    framing as the STFT) but costs one cumulative sum instead of a framed copy.
    """
    y = np.asarray(y, dtype=np.float32)
    energy = framed_sums(y * y, frame_length, hop_length, n_frames, frame_length // 2)
    return np.sqrt(np.maximum(energy, 0.0) / frame_length)


def zcr_frames(y: np.ndarray, frame_length: int, hop_length: int, n_frames: int) -> np.ndarray:
    """Fraction of zero crossings per frame, as ``librosa.feature.zero_crossing_rate``.

    librosa centres the frames with edge padding, treats ``|y| <= 1e-10`` as
    zero and counts sign-bit changes between neighbouring samples of a frame.
    Edge padding repeats the end samples, so it adds no crossing: counting
    crossings of ``y`` itself with a cumulative sum gives the same numbers.
    """
    y = np.asarray(y)
    sb = np.signbit(y) & (np.abs(y) > 1e-10)
    cross = np.empty(y.shape[0], dtype=np.float32)
    cross[0] = 0.0
    np.not_equal(sb[1:], sb[:-1], out=cross[1:])
    # a crossing at sample p counts for a frame holding both p - 1 and p:
    # the frame's sum minus the crossing at its own first sample
    pad = frame_length // 2
    counts = framed_sums(cross, frame_length, hop_length, n_frames, pad)
    first = np.arange(n_frames) * hop_length - pad
    inside = (first >= 0) & (first < y.shape[0])
    counts[inside] -= cross[first[inside]]
    return counts / frame_length


def log_mel(an: Analysis) -> np.ndarray:
    """``librosa.power_to_db`` of the mel power spectrogram (ref 1, top_db 80), cached."""
    if "log_mel" not in an._cache:
        an._cache["log_mel"] = librosa.power_to_db(an.mel_power, ref=1.0, amin=AMIN, top_db=80.0)
    return an._cache["log_mel"]


def onset_envelope(an: Analysis) -> np.ndarray:
    """Onset strength from the log-mel spectrogram, as ``librosa.onset.onset_strength``.

    Half-wave rectified first difference of the log-mel bands, averaged over
    bands, shifted by ``1 + n_fft // (2 * hop)`` frames and trimmed to the
    frame count.
    """
    if "onset_env" not in an._cache:
        L = log_mel(an)
        diff = np.maximum(0.0, L[:, 1:] - L[:, :-1]).mean(axis=0)
        shift = 1 + an.n_fft // (2 * an.hop_length)
        env = np.concatenate((np.zeros(shift, dtype=diff.dtype), diff))[: L.shape[1]]
        if env.shape[0] < L.shape[1]:
            env = np.pad(env, (0, L.shape[1] - env.shape[0]))
        an._cache["onset_env"] = env
    return an._cache["onset_env"]


def _moving_window(x: np.ndarray, before: int, after: int, reducer: str) -> np.ndarray:
    """Max or mean of ``x[max(0, n - before) : min(n + after, len(x))]`` for every ``n``."""
    n = x.shape[0]
    idx = np.arange(n)
    lo, hi = np.maximum(0, idx - before), np.minimum(n, idx + after)
    if reducer == "mean":
        c = np.concatenate(([0.0], np.cumsum(x, dtype=np.float64)))
        return (c[hi] - c[lo]) / np.maximum(hi - lo, 1)
    padded = np.concatenate((np.full(before, -np.inf), x, np.full(after, -np.inf)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, before + after)
    return windows[:n].max(axis=1)


def peak_pick(x: np.ndarray, pre_max: int, post_max: int, pre_avg: int, post_avg: int,
              delta: float, wait: int) -> np.ndarray:
    """Indices of peaks of ``x``, the rule of ``librosa.util.peak_pick`` in NumPy.

    ``n`` is a peak when ``x[n]`` is the maximum of ``x[n - pre_max : n + post_max]``,
    at least ``delta`` above the mean of ``x[n - pre_avg : n + post_avg]``, and
    more than ``wait`` samples after the previous peak.  Written here to avoid
    librosa's numba kernel and its compile time in every fresh worker.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return np.zeros(0, dtype=int)
    mov_max = _moving_window(x, pre_max, post_max, "max")
    mov_avg = _moving_window(x, pre_avg, post_avg, "mean")
    candidates = np.flatnonzero((x == mov_max) & (x >= mov_avg + delta))
    peaks, next_ok = [], 0
    for n in candidates:
        if n >= next_ok:
            peaks.append(n)
            next_ok = n + wait + 1
    return np.asarray(peaks, dtype=int)


def onset_frames(an: Analysis) -> np.ndarray:
    """Onset frames with ``librosa.onset.onset_detect``'s default peak-picking."""
    if "onsets" not in an._cache:
        env = onset_envelope(an).astype(np.float64)
        env = env - env.min()
        env = env / (env.max() + np.finfo(np.float64).tiny)
        if not env.any():
            onsets = np.zeros(0, dtype=int)
        else:
            # librosa's defaults: 30 ms max window, 100 ms mean windows, 30 ms wait
            def frames(seconds: float, extra: int = 0) -> int:
                return int(np.ceil(seconds * an.sr // an.hop_length + extra))

            onsets = peak_pick(env, pre_max=frames(0.03), post_max=frames(0.0, 1),
                               pre_avg=frames(0.10), post_avg=frames(0.10, 1),
                               delta=0.07, wait=frames(0.03))
        an._cache["onsets"] = onsets
    return an._cache["onsets"]


def _rms(an: Analysis) -> np.ndarray:
    if "rms" not in an._cache:
        an._cache["rms"] = rms_frames(an.y, an.n_fft, an.hop_length, an.n_frames)
    return an._cache["rms"]


def _voiced(an: Analysis) -> np.ndarray:
    """Boolean mask of frames that hold energy (not silent)."""
    if "voiced" not in an._cache:
        an._cache["voiced"] = an.power.mean(axis=0) > SILENT_FRAME_POWER
    return an._cache["voiced"]


def chroma(an: Analysis) -> np.ndarray:
    """Chromagram from ``S ** 2``, max-normalised per frame, as ``librosa.feature.chroma_stft(tuning=0)``."""
    if "chroma" not in an._cache:
        raw = chroma_basis(an.sr, an.n_fft) @ an.power
        peak = raw.max(axis=0, keepdims=True)
        an._cache["chroma"] = _safe_div(raw, np.where(peak > np.finfo(np.float32).tiny, peak, 0))
    return an._cache["chroma"]


# ------------------------------------------------------------------- feature groups


def dynamics_features(an: Analysis) -> dict[str, float]:
    """RMS (whole segment and frame mean/std) and the low-energy rate (mirrms, mirlowenergy).

    ``low_energy`` is the fraction of frames whose RMS is below the mean frame
    RMS (MIRtoolbox's default threshold 1).
    """
    rms = _rms(an)
    y = an.y.astype(np.float64)
    mean = rms.mean()
    low = float(np.mean(rms < mean)) if mean > 0 else 0.0
    return {"rms": float(np.sqrt(np.mean(y * y))), **_stats("rms", rms), "low_energy": low}


def zcr_features(an: Analysis) -> dict[str, float]:
    """Zero-crossing rate, fraction per sample (mirzerocross; librosa's convention)."""
    return _stats("zcr", zcr_frames(an.y, an.n_fft, an.hop_length, an.n_frames))


def spectral_shape(S: np.ndarray, freqs: np.ndarray) -> dict[str, np.ndarray]:
    """Frame-wise shape descriptors of a magnitude spectrogram.

    Parameters
    ----------
    S : np.ndarray
        Magnitude spectrogram ``(bins, frames)``.
    freqs : np.ndarray
        Bin frequencies in Hz (increasing).

    Returns
    -------
    dict of str -> np.ndarray
        One ``(frames,)`` array per descriptor: ``spectral_centroid``,
        ``spectral_spread`` (librosa's bandwidth, p=2), ``spectral_skewness``,
        ``spectral_kurtosis`` (moments of the magnitude distribution, as
        mircentroid/mirspread/mirskewness/mirkurtosis; kurtosis not in excess),
        ``spectral_flatness`` (geometric/arithmetic mean of the magnitudes,
        ``librosa.feature.spectral_flatness(power=1)``), ``spectral_entropy``
        (Shannon entropy of the normalised magnitudes divided by
        ``log(bins)``, mirentropy), ``spectral_rolloff85/95`` (librosa's
        rolloff), ``brightness`` (share of magnitude above 1500 Hz,
        mirbrightness), ``spectral_irregularity`` (Jensen:
        ``sum (a_k - a_k+1)^2 / sum a_k^2`` over all bins, mirregularity).

    Notes
    -----
    The four moments come from one matrix product of ``[f, f^2, f^3, f^4]``
    with the spectrogram (float64), then the central moments by the binomial
    formulas; frames with no energy get 0.
    """
    S = np.asarray(S, dtype=np.float32)
    freqs = np.asarray(freqs, dtype=np.float64)
    n_bins = S.shape[0]
    ones = np.ones(n_bins, dtype=np.float32)
    # bin sums as float32 BLAS products (1e-7 relative), moments in float64
    total = (ones @ S).astype(np.float64)
    raw = _safe_div(np.stack([freqs**i for i in range(1, 5)]) @ S.astype(np.float64), total)
    c, e2, e3, e4 = raw
    m2 = np.maximum(e2 - c * c, 0.0)
    m3 = e3 - 3 * c * e2 + 2 * c**3
    m4 = np.maximum(e4 - 4 * c * e3 + 6 * c * c * e2 - 3 * c**4, 0.0)
    spread = np.sqrt(m2)
    # guard the ratios against round-off when the spread is ~0 (a pure bin)
    tiny = (spread <= 1e-6 * np.maximum(np.abs(c), 1.0)) | (total <= 0)
    skew = np.where(tiny, 0.0, _safe_div(m3, spread**3))
    kurt = np.where(tiny, 0.0, _safe_div(m4, m2 * m2))

    S_th = np.maximum(S, np.float32(AMIN))
    logS = np.log(S_th)
    th_sum = (ones @ S_th).astype(np.float64)
    flatness = np.exp((ones @ logS).astype(np.float64) / n_bins) / (th_sum / n_bins)
    entropy = np.log(th_sum) - np.einsum("kt,kt->t", S_th, logS).astype(np.float64) / th_sum
    entropy = entropy / np.log(n_bins) if n_bins > 1 else np.zeros_like(entropy)

    roll = dict(zip((85, 95), rolloff_bins(S, (0.85, 0.95), total)))
    roll = {pct: freqs[idx] for pct, idx in roll.items()}
    cut = int(np.searchsorted(freqs, BRIGHTNESS_CUTOFF_HZ, side="right"))
    brightness = _safe_div((ones[cut:] @ S[cut:]).astype(np.float64), total)
    energy = np.einsum("kt,kt->t", S, S).astype(np.float64)
    neighbours = np.einsum("kt,kt->t", S[:-1], S[1:]).astype(np.float64)
    irregular = energy - S[0].astype(np.float64) ** 2 + energy - S[-1].astype(np.float64) ** 2
    irregularity = _safe_div(np.maximum(irregular - 2 * neighbours, 0.0), energy)
    return {
        "spectral_centroid": c,
        "spectral_spread": spread,
        "spectral_skewness": skew,
        "spectral_kurtosis": kurt,
        "spectral_flatness": flatness,
        "spectral_entropy": entropy,
        "spectral_rolloff85": roll[85],
        "spectral_rolloff95": roll[95],
        "brightness": brightness,
        "spectral_irregularity": irregularity,
    }


def rolloff_bins(S: np.ndarray, fractions, total: np.ndarray | None = None,
                 block: int = 32) -> list[np.ndarray]:
    """Index of the first bin whose cumulative magnitude reaches ``fraction * total``, per frame.

    The rule of ``librosa.feature.spectral_rolloff``, without a full
    cumulative sum over the spectrogram (the slow part): cumulative sums of
    blocks of ``block`` bins locate the block of the crossing, and only that
    block is summed bin by bin.
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


def shape_features(an: Analysis) -> dict[str, float]:
    """Mean/std of :func:`spectral_shape` over the frames that hold energy."""
    voiced = _voiced(an)
    out: dict[str, float] = {}
    if not voiced.any():
        for name in _group_names(1)["shape"]:
            out[name] = 0.0
        return out
    S = an.S if voiced.all() else an.S[:, voiced]
    for base, values in spectral_shape(S, an.freqs).items():
        out.update(_stats(base, values))
    return out


def flux_features(an: Analysis) -> dict[str, float]:
    """Spectral flux: Euclidean distance between successive magnitude spectra (mirflux).

    Written here: librosa's onset strength is a different (log-mel, rectified)
    quantity.
    """
    dS = np.diff(an.S, axis=1)
    flux = np.sqrt((dS * dS).sum(axis=0, dtype=np.float64))
    return _stats("spectral_flux", flux)


class Peaks(NamedTuple):
    """Spectral peaks of a spectrogram, ordered by frame then bin (see :func:`local_peaks`)."""

    t: np.ndarray
    k: np.ndarray
    amp: np.ndarray
    left: np.ndarray
    right: np.ndarray
    frame_max: np.ndarray


def local_peaks(S: np.ndarray, floor: float = 0.0) -> Peaks:
    """Local maxima of every spectrum frame, frame by frame.

    Parameters
    ----------
    S : np.ndarray
        Magnitude spectrogram ``(bins, frames)``.
    floor : float
        Ignore peaks below ``floor`` times their frame's maximum.

    Returns
    -------
    Peaks
        Frame index ``t``, bin index ``k``, magnitude ``amp`` of each peak
        (``S[k-1] < S[k] >= S[k+1]``), the magnitudes of its two neighbour
        bins (``left``, ``right``) and every frame's maximum, peaks ordered by
        frame then bin.  Works on a frame-major copy so that the gathers read
        memory in order.
    """
    ST = np.ascontiguousarray(np.asarray(S, dtype=np.float32).T)
    n_frames, n_bins = ST.shape
    frame_max = ST.max(axis=1) if n_bins else np.zeros(n_frames, dtype=np.float32)
    if n_bins < 3:
        empty = np.zeros(0, dtype=np.int64)
        none = np.zeros(0, dtype=np.float32)
        return Peaks(empty, empty, none, none, none, frame_max)
    mid = ST[:, 1:-1]
    mask = (mid > ST[:, :-2]) & (mid >= ST[:, 2:])
    if floor > 0:
        mask &= mid >= np.float32(floor) * frame_max[:, None]
    idx = np.flatnonzero(mask)
    t, k = np.divmod(idx, n_bins - 2)
    flat = idx + 2 * t + 1  # index into ST's flat array
    ravel = ST.ravel()
    return Peaks(t, k + 1, ravel[flat], ravel[flat - 1], ravel[flat + 1], frame_max)


def _peaks(an: Analysis) -> Peaks:
    if "peaks" not in an._cache:
        an._cache["peaks"] = local_peaks(an.S, _PEAK_FLOOR)
    return an._cache["peaks"]


def roughness_frames(S: np.ndarray, freqs: np.ndarray, n_peaks: int = ROUGHNESS_PEAKS,
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
        Bin frequencies in Hz.
    n_peaks : int
        Most peaks per frame.
    floor : float
        Relative magnitude floor of a peak.
    peaks : Peaks, optional
        :func:`local_peaks` of ``S`` (with a floor <= ``floor``) when already computed.

    Returns
    -------
    np.ndarray
        ``(frames,)`` float64.
    """
    n_frames = S.shape[1]
    pk = local_peaks(S, floor) if peaks is None else peaks
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
    return _stats("roughness", roughness_frames(an.S, an.freqs, peaks=_peaks(an)))


@functools.lru_cache(maxsize=8)
def _dct_matrix(n_mels: int, n_out: int) -> np.ndarray:
    """Orthonormal DCT-II rows 0..n_out-1 as a matrix (scipy's ``dct(norm='ortho')``)."""
    basis = scipy.fft.dct(np.eye(n_mels), type=2, norm="ortho", axis=0)[:n_out]
    basis = basis.astype(np.float32)
    basis.setflags(write=False)
    return basis


def mfcc(an: Analysis, n_mfcc: int = 13) -> np.ndarray:
    """MFCCs 1..n_mfcc (0th excluded) as rows 1.. of ``librosa.feature.mfcc(n_mfcc=n_mfcc+1)``."""
    key = ("mfcc", n_mfcc)
    if key not in an._cache:
        L = log_mel(an)
        an._cache[key] = (_dct_matrix(L.shape[0], n_mfcc + 1) @ L)[1:]
    return an._cache[key]


def delta(x: np.ndarray, width: int = DELTA_WIDTH) -> np.ndarray:
    """First-order deltas along frames, ``librosa.feature.delta``; short inputs use a narrower filter."""
    n = x.shape[-1]
    width = min(width, n if n % 2 else n - 1)
    if width < 3:
        return np.zeros_like(x)
    return scipy.signal.savgol_filter(x, width, polyorder=1, deriv=1, axis=-1, mode="interp")


def mfcc_features(an: Analysis, n_mfcc: int = 13) -> dict[str, float]:
    """Mean/std of MFCCs 1..n_mfcc and of their deltas (mirmfcc, 'Delta')."""
    m = mfcc(an, n_mfcc)
    d = delta(m)
    out: dict[str, float] = {}
    mm, ms = _mean_std(m)
    dm, ds = _mean_std(d)
    for i in range(n_mfcc):
        out[f"mfcc_{i + 1:02d}_mean"], out[f"mfcc_{i + 1:02d}_std"] = float(mm[i]), float(ms[i])
    for i in range(n_mfcc):
        out[f"mfcc_delta_{i + 1:02d}_mean"] = float(dm[i])
        out[f"mfcc_delta_{i + 1:02d}_std"] = float(ds[i])
    return out


def tempo_autocorrelation(env: np.ndarray, sr: int, hop_length: int) -> tuple[float, float]:
    """Tempo (BPM) and pulse clarity from the onset envelope's autocorrelation.

    The autocorrelation of the mean-removed onset envelope, normalised at lag
    0, is weighted by librosa's log-normal tempo prior (centre 120 BPM, one
    octave) exactly as ``librosa.feature.tempo`` weights its tempogram; the
    best lag is refined by parabolic interpolation, which removes the
    frame-rate quantisation of the tempo.  Pulse clarity is the normalised
    autocorrelation at that lag (MIRtoolbox's mirpulseclarity 'MaxAutocor').

    Returns
    -------
    tempo, clarity : float
        0, 0 when the envelope is constant (silence).
    """
    x = np.asarray(env, dtype=np.float64)
    x = x - x.mean()
    n = x.shape[0]
    if n < 3:
        return 0.0, 0.0
    ac = librosa.autocorrelate(x)
    if ac[0] <= 0:
        return 0.0, 0.0
    ac = ac / ac[0]
    fps = sr / hop_length
    lag_min = max(1, int(np.floor(60.0 * fps / TEMPO_MAX_BPM)))
    lag_max = min(n - 2, int(np.ceil(60.0 * fps / TEMPO_MIN_BPM)))
    if lag_max < lag_min:
        return 0.0, 0.0
    lags = np.arange(lag_min, lag_max + 1)
    bpm = 60.0 * fps / lags
    prior = -0.5 * ((np.log2(bpm) - np.log2(TEMPO_START_BPM)) / TEMPO_STD_OCTAVES) ** 2
    score = np.log1p(1e6 * np.maximum(ac[lags], 0.0)) + prior
    best = int(lags[np.argmax(score)])
    clarity = float(np.clip(ac[best], 0.0, 1.0))
    shift = 0.0
    if 1 <= best < n - 1:
        a, b, c = ac[best - 1], ac[best], ac[best + 1]
        den = a - 2 * b + c
        if den < 0:
            shift = float(np.clip(0.5 * (a - c) / den, -0.5, 0.5))
    return float(60.0 * fps / (best + shift)), clarity


def rhythm_features(an: Analysis) -> dict[str, float]:
    """Tempo, pulse clarity and event density (mirtempo, mirpulseclarity, mireventdensity).

    Event density is the number of onsets (librosa's default onset
    peak-picking on the onset envelope) per second.
    """
    tempo, clarity = tempo_autocorrelation(onset_envelope(an), an.sr, an.hop_length)
    duration = an.y.shape[0] / an.sr
    return {"tempo": tempo, "pulse_clarity": clarity,
            "event_density": float(onset_frames(an).shape[0] / duration)}


def attack_phases(env: np.ndarray, max_frames: int,
                  prominence: float = ATTACK_PROMINENCE) -> tuple[np.ndarray, np.ndarray]:
    """Start and peak frame of each attack of an amplitude envelope.

    Peaks are the envelope's local maxima with a prominence of at least
    ``prominence`` times the envelope maximum (:func:`scipy.signal.find_peaks`).
    For each peak the valley is the envelope minimum since the previous peak
    (at most ``max_frames`` back); the attack starts at the last frame still
    within 10 % of the rise above that valley, and ends at the peak.
    """
    env = np.asarray(env, dtype=np.float64)
    top = env.max() if env.size else 0.0
    if top <= 0:
        return np.zeros(0, dtype=int), np.zeros(0, dtype=int)
    peaks, _ = scipy.signal.find_peaks(env, prominence=prominence * top)
    starts = np.empty(peaks.shape, dtype=int)
    prev = 0
    for i, peak in enumerate(peaks):
        lo = max(prev, peak - max_frames)
        seg = env[lo : peak + 1]
        valley = seg.min()
        level = valley + 0.1 * (env[peak] - valley)
        starts[i] = lo + int(np.flatnonzero(seg <= level)[-1])
        prev = peak
    return starts, peaks


def attack_features(an: Analysis) -> dict[str, float]:
    """Attack time (s) and slope (RMS per s) of the envelope's attacks (mirattacktime, mirattackslope).

    Written here (librosa has no attack descriptor), on the frame RMS
    envelope with :func:`attack_phases`: time = start-to-peak duration,
    slope = rise height / time.  Frame resolution is ``hop_length / sr``, and
    the RMS window (``n_fft`` samples) smooths the envelope, so the shortest
    attack measured is about ``n_fft / sr`` seconds.
    """
    env = _rms(an)
    fps = an.sr / an.hop_length
    starts, peaks = attack_phases(env, max(1, round(ATTACK_MAX_S * fps)))
    times = (peaks - starts) / fps
    slopes = _safe_div(env[peaks] - env[starts], times)
    return {**_stats("attack_time", times), **_stats("attack_slope", slopes)}


def chroma_features(an: Analysis) -> dict[str, float]:
    """Mean/std of each chroma bin (mirchromagram)."""
    m, s = _mean_std(chroma(an))
    out: dict[str, float] = {}
    for i, pc in enumerate(PITCH_CLASSES):
        out[f"chroma_{pc}_mean"], out[f"chroma_{pc}_std"] = float(m[i]), float(s[i])
    return out


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

    Returns zeros for a constant vector (silence).
    """
    c = np.asarray(chroma_vector, dtype=np.float64)
    sd = c.std()
    if not np.isfinite(sd) or sd <= 1e-12:
        return np.zeros(24)
    z = (c - c.mean()) / sd
    return _key_profiles() @ z / 12.0


def pitch_class_profile(an: Analysis, fmin: float = PCP_FMIN_HZ, fmax: float = PCP_FMAX_HZ,
                        floor: float = PCP_PEAK_FLOOR) -> np.ndarray:
    """Peak-based pitch-class profile per frame (HPCP-like), ``(12, frames)``, max-normalised.

    Written here: each spectral peak between ``fmin`` and ``fmax`` (and above
    ``floor`` times the frame maximum) gets its frequency refined by parabolic
    interpolation of the log magnitude and adds its power to its nearest pitch
    class (A440 tuning).  Unlike the filterbank chroma, a pure tone does not
    leak into the neighbouring semitones at ``n_fft = 2048``, which is what
    key finding needs (a bare C-major triad must read as C major).
    """
    key = ("pcp", fmin, fmax, floor)
    if key in an._cache:
        return an._cache[key]
    S = an.S
    n_frames = S.shape[1]
    pk = _peaks(an)
    k_lo = np.searchsorted(an.freqs, fmin, side="left")
    k_hi = np.searchsorted(an.freqs, fmax, side="right")
    keep = (pk.k >= k_lo) & (pk.k < k_hi) & (pk.amp > 0)
    if floor > _PEAK_FLOOR:
        keep &= pk.amp >= np.float32(floor) * pk.frame_max[pk.t]
    t, k = pk.t[keep], pk.k[keep]
    amp = pk.amp[keep].astype(np.float64)
    a, b, c = np.log(np.stack([pk.left[keep], pk.amp[keep], pk.right[keep]]).astype(np.float64) + AMIN)
    den = a - 2 * b + c
    shift = np.clip(_safe_div(0.5 * (a - c), np.where(den < 0, den, 0.0)), -0.5, 0.5)
    freq = (k + shift) * an.sr / an.n_fft
    pc = np.mod(np.round(12 * np.log2(freq / 440.0)) + 9, 12).astype(np.int64)
    prof = np.bincount(t * 12 + pc, weights=amp * amp,
                       minlength=n_frames * 12).reshape(n_frames, 12).T
    an._cache[key] = _safe_div(prof, prof.max(axis=0, keepdims=True))
    return an._cache[key]


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


def tonal_features(an: Analysis) -> dict[str, float]:
    """Tonal centroid (6-D, ``librosa.feature.tonnetz(chroma=...)``) and HCDF (mirtonalcentroid, mirhcdf).

    The harmonic change detection function is written here (Harte et al.
    2006): the Euclidean distance between the Gaussian-smoothed tonal
    centroids of the frames before and after each frame.
    """
    tc = librosa.feature.tonnetz(sr=an.sr, chroma=chroma(an))
    out: dict[str, float] = {}
    m, s = _mean_std(tc)
    for i in range(6):
        out[f"tonal_centroid_{i + 1}_mean"], out[f"tonal_centroid_{i + 1}_std"] = float(m[i]), float(s[i])
    sigma = HCDF_SIGMA_S * an.sr / an.hop_length
    smooth = scipy.ndimage.gaussian_filter1d(tc, sigma, axis=1, mode="nearest") if tc.shape[1] > 1 else tc
    if smooth.shape[1] >= 3:
        change = np.sqrt(((smooth[:, 2:] - smooth[:, :-2]) ** 2).sum(axis=0))
    else:
        change = np.zeros(0)
    out.update(_stats("hcdf", change))
    return out


_GROUP_FUNCS = {
    "dynamics": dynamics_features,
    "zcr": zcr_features,
    "shape": shape_features,
    "flux": flux_features,
    "roughness": roughness_features,
    "rhythm": rhythm_features,
    "attack": attack_features,
    "chroma": chroma_features,
    "key": key_features,
    "tonal": tonal_features,
}


def _groups_for(names, n_mfcc: int) -> list[str]:
    wanted = set(names)
    groups = _group_names(n_mfcc)
    unknown = wanted.difference(n for g in groups.values() for n in g)
    if unknown:
        raise EmodistError(f"unknown handcrafted feature {min(unknown)!r}")
    return [g for g, group in groups.items() if wanted.intersection(group)]


def extract_dict(analysis: Analysis, feature_set: str = "full", n_mfcc: int = 13,
                 names=None) -> dict[str, float]:
    """Feature name -> value for one segment (see :func:`extract`).

    Parameters
    ----------
    analysis : emodist.features.spectral.Analysis
    feature_set : {"full", "seed17"}
    n_mfcc : int
    names : sequence of str, optional
        Compute only these features (any names of the full set) instead of
        ``feature_set``; only the groups they need are computed.
    """
    n_mfcc = int(n_mfcc)
    if names is None:
        names = _names(str(feature_set), n_mfcc)
        groups = _groups_needed(str(feature_set), n_mfcc)
    else:
        names = list(names)
        groups = _groups_for(names, n_mfcc)
    if not _voiced(analysis).any():
        return dict.fromkeys(names, 0.0)
    values: dict[str, float] = {}
    for group in groups:
        if group == "mfcc":
            values.update(mfcc_features(analysis, n_mfcc))
        else:
            values.update(_GROUP_FUNCS[group](analysis))
    return {n: values[n] for n in names}


def extract(analysis: Analysis, feature_set: str = "full", n_mfcc: int = 13) -> np.ndarray:
    """The handcrafted feature vector of one segment.

    Parameters
    ----------
    analysis : emodist.features.spectral.Analysis
        The segment and its one STFT (:func:`emodist.features.spectral.analyse`).
    feature_set : {"full", "seed17"}
        Which named selection to compute.
    n_mfcc : int
        Number of MFCCs (``Config.n_mfcc``).

    Returns
    -------
    np.ndarray
        float32 vector in the order of :func:`feature_names`; always finite
        (any non-finite value left by a degenerate input is written as 0).

    Raises
    ------
    EmodistError
        Unknown feature set.
    """
    names = _names(str(feature_set), int(n_mfcc))
    values = extract_dict(analysis, feature_set, n_mfcc)
    vec = np.fromiter((values[n] for n in names), dtype=np.float64, count=len(names))
    return np.nan_to_num(vec, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)
