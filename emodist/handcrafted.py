"""Handcrafted features: a MIRtoolbox-equivalent set from one STFT per segment.

Every feature is derived from the :class:`emodist.spectral.Analysis` of a
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

import librosa
import numpy as np
import scipy.fft
import scipy.ndimage
import scipy.signal

from emodist.errors import EmodistError
from emodist.spectral import Analysis, chroma_basis, mel_basis

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
#: Spectral peaks per frame used for roughness.
ROUGHNESS_PEAKS = 32
#: Peaks weaker than this fraction of the frame maximum are ignored by roughness.
ROUGHNESS_PEAK_FLOOR = 0.01
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
    if int(n_mfcc) < 1:
        raise EmodistError(f"n_mfcc must be >= 1, got {n_mfcc!r}")
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


def framed_sums(x: np.ndarray, frame_length: int, hop_length: int, n_frames: int) -> np.ndarray:
    """Sum of ``x`` over frames ``[t * hop, t * hop + frame_length)`` via a cumulative sum."""
    c = np.concatenate(([0.0], np.cumsum(x, dtype=np.float64)))
    starts = np.arange(n_frames) * hop_length
    stops = np.minimum(starts + frame_length, x.shape[0])
    starts = np.minimum(starts, x.shape[0])
    return c[stops] - c[starts]


def rms_frames(y: np.ndarray, frame_length: int, hop_length: int, n_frames: int) -> np.ndarray:
    """Frame RMS of ``y`` with centred, zero-padded frames.

    Equals ``librosa.feature.rms(y=y, frame_length=..., hop_length=...)`` (same
    framing as the STFT) but costs one cumulative sum instead of a framed copy.
    """
    pad = frame_length // 2
    y2 = np.pad(np.asarray(y, dtype=np.float64) ** 2, pad)
    energy = framed_sums(y2, frame_length, hop_length, n_frames)
    return np.sqrt(np.maximum(energy, 0.0) / frame_length)


def zcr_frames(y: np.ndarray, frame_length: int, hop_length: int, n_frames: int) -> np.ndarray:
    """Fraction of zero crossings per frame, as ``librosa.feature.zero_crossing_rate``.

    Frames are centred with edge padding; values with ``|y| <= 1e-10`` count
    as zero (librosa's threshold); a crossing is a sign-bit change between
    neighbouring samples inside the frame.
    """
    pad = frame_length // 2
    yp = np.pad(np.asarray(y, dtype=np.float32), pad, mode="edge")
    yp = np.where(np.abs(yp) <= 1e-10, 0.0, yp)
    sb = np.signbit(yp)
    cross = np.zeros(yp.shape[0], dtype=np.float64)
    cross[1:] = sb[1:] != sb[:-1]
    # frame t covers padded samples [t*hop, t*hop+L); crossings counted at positions 1..L-1
    c = np.concatenate(([0.0], np.cumsum(cross)))
    starts = np.arange(n_frames) * hop_length
    stops = np.minimum(starts + frame_length, yp.shape[0])
    return (c[stops] - c[np.minimum(starts + 1, yp.shape[0])]) / frame_length


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
            fps = an.sr // an.hop_length
            onsets = peak_pick(
                env,
                pre_max=int(np.ceil(0.03 * an.sr // an.hop_length)),
                post_max=int(np.ceil(0.00 * an.sr // an.hop_length + 1)),
                pre_avg=int(np.ceil(0.10 * an.sr // an.hop_length)),
                post_avg=int(np.ceil(0.10 * an.sr // an.hop_length + 1)),
                delta=0.07,
                wait=int(np.ceil(0.03 * an.sr // an.hop_length)),
            )
            del fps
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
        Bin frequencies in Hz.

    Returns
    -------
    dict of str -> np.ndarray
        One ``(frames,)`` array per descriptor: ``spectral_centroid``,
        ``spectral_spread`` (librosa's bandwidth, p=2), ``spectral_skewness``,
        ``spectral_kurtosis`` (moments of the magnitude distribution, as
        mircentroid/mirspread/mirskewness/mirkurtosis), ``spectral_flatness``
        (geometric/arithmetic mean of the magnitudes, ``librosa...spectral_flatness(power=1)``),
        ``spectral_entropy`` (Shannon entropy of the normalised magnitudes
        divided by ``log(bins)``, mirentropy), ``spectral_rolloff85/95``
        (librosa's rolloff), ``brightness`` (share of magnitude above 1500 Hz,
        mirbrightness), ``spectral_irregularity`` (Jensen:
        ``sum (a_k - a_k+1)^2 / sum a_k^2`` over all bins, mirregularity).
    """
    S = np.asarray(S, dtype=np.float32)
    f = np.asarray(freqs, dtype=np.float32)[:, None]
    total = S.sum(axis=0, dtype=np.float64)
    p = _safe_div(S, total[None, :].astype(np.float32))
    centroid = (p * f).sum(axis=0, dtype=np.float64)
    d = f - centroid[None, :].astype(np.float32)
    d2 = d * d
    m2 = (p * d2).sum(axis=0, dtype=np.float64)
    m3 = (p * d2 * d).sum(axis=0, dtype=np.float64)
    m4 = (p * d2 * d2).sum(axis=0, dtype=np.float64)
    spread = np.sqrt(np.maximum(m2, 0.0))
    skew = _safe_div(m3, spread**3)
    kurt = _safe_div(m4, m2**2)

    S_th = np.maximum(S, np.float32(AMIN))
    logS = np.log(S_th)
    th_sum = S_th.sum(axis=0, dtype=np.float64)
    flatness = np.exp(logS.mean(axis=0, dtype=np.float64)) / (th_sum / S.shape[0])
    entropy = (np.log(th_sum) - (S_th * logS).sum(axis=0, dtype=np.float64) / th_sum)
    entropy = entropy / np.log(S.shape[0]) if S.shape[0] > 1 else np.zeros_like(entropy)

    cum = np.cumsum(S, axis=0, dtype=np.float64)
    roll = {}
    for pct in (85, 95):
        idx = np.argmax(cum >= (pct / 100.0) * total[None, :], axis=0)
        roll[pct] = np.asarray(freqs)[idx]
    brightness = _safe_div(S[f[:, 0] > BRIGHTNESS_CUTOFF_HZ].sum(axis=0, dtype=np.float64), total)
    dS = np.diff(S, axis=0)
    irregularity = _safe_div((dS * dS).sum(axis=0, dtype=np.float64),
                             (S * S).sum(axis=0, dtype=np.float64))
    return {
        "spectral_centroid": centroid,
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


def spectral_peaks(S: np.ndarray, n_peaks: int, floor: float) -> tuple[np.ndarray, np.ndarray]:
    """The ``n_peaks`` strongest local maxima of each spectrum frame.

    Returns
    -------
    idx, amp : np.ndarray
        ``(n_peaks, frames)`` bin indices and magnitudes; slots without a peak
        (fewer peaks than ``n_peaks``, or below ``floor`` times the frame
        maximum) have magnitude 0.
    """
    S = np.asarray(S, dtype=np.float32)
    is_peak = np.zeros(S.shape, dtype=bool)
    is_peak[1:-1] = (S[1:-1] > S[:-2]) & (S[1:-1] >= S[2:])
    is_peak &= S >= floor * S.max(axis=0, keepdims=True)
    P = np.where(is_peak, S, 0.0).astype(np.float32)
    k = min(n_peaks, S.shape[0])
    if k < S.shape[0]:
        idx = np.argpartition(-P, k - 1, axis=0)[:k]
    else:
        idx = np.broadcast_to(np.arange(S.shape[0])[:, None], S.shape).copy()
    return idx, np.take_along_axis(P, idx, axis=0)


def roughness_frames(S: np.ndarray, freqs: np.ndarray, n_peaks: int = ROUGHNESS_PEAKS,
                     floor: float = ROUGHNESS_PEAK_FLOOR) -> np.ndarray:
    """Sensory dissonance per frame, Sethares' model of the Plomp-Levelt curve.

    Written here (no library provides it), following MIRtoolbox's mirroughness
    ('Sethares'): for every pair of spectral peaks ``(f_i, a_i), (f_j, a_j)``
    add ``a_i a_j (exp(-3.5 s |f_i - f_j|) - exp(-5.75 s |f_i - f_j|))`` with
    ``s = 0.24 / (0.0207 min(f_i, f_j) + 18.96)``.  Only the ``n_peaks``
    strongest peaks of each frame enter.
    """
    idx, a = spectral_peaks(S, n_peaks, floor)
    f = np.asarray(freqs, dtype=np.float32)[idx]
    fi, fj = f[:, None, :], f[None, :, :]
    s = 0.24 / (0.0207 * np.minimum(fi, fj) + 18.96)
    df = np.abs(fi - fj) * s
    curve = np.exp(-3.5 * df) - np.exp(-5.75 * df)
    pair = a[:, None, :] * a[None, :, :] * curve
    return 0.5 * pair.sum(axis=(0, 1), dtype=np.float64)


def roughness_features(an: Analysis) -> dict[str, float]:
    """Mean/std of :func:`roughness_frames`."""
    return _stats("roughness", roughness_frames(an.S, an.freqs))


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
    starts, peaks = attack_phases(env, max(1, int(round(ATTACK_MAX_S * fps))))
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
    if "pcp" in an._cache:
        return an._cache["pcp"]
    S = an.S
    n_bins, n_frames = S.shape
    if n_bins < 3:
        an._cache["pcp"] = np.zeros((12, n_frames))
        return an._cache["pcp"]
    mid = S[1:-1]
    f = an.freqs[1:-1, None]
    is_peak = (mid > S[:-2]) & (mid >= S[2:]) & (f >= fmin) & (f <= fmax)
    is_peak &= mid >= floor * S.max(axis=0, keepdims=True)
    k, t = np.nonzero(is_peak)
    k = k + 1
    a, b, c = (np.log(S[k + d, t].astype(np.float64) + AMIN) for d in (-1, 0, 1))
    den = a - 2 * b + c
    shift = np.clip(_safe_div(0.5 * (a - c), np.where(den < 0, den, 0.0)), -0.5, 0.5)
    freq = (k + shift) * an.sr / an.n_fft
    pc = np.mod(np.round(12 * np.log2(freq / 440.0)) + 9, 12).astype(np.int64)
    prof = np.bincount(t * 12 + pc, weights=S[k, t].astype(np.float64) ** 2,
                       minlength=n_frames * 12).reshape(n_frames, 12).T
    peak = prof.max(axis=0, keepdims=True)
    an._cache["pcp"] = _safe_div(prof, peak)
    return an._cache["pcp"]


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


def extract_dict(analysis: Analysis, feature_set: str = "full", n_mfcc: int = 13) -> dict[str, float]:
    """Feature name -> value for one segment (see :func:`extract`)."""
    names = _names(str(feature_set), int(n_mfcc))
    if not _voiced(analysis).any():
        return dict.fromkeys(names, 0.0)
    values: dict[str, float] = {}
    for group in _groups_needed(str(feature_set), int(n_mfcc)):
        if group == "mfcc":
            values.update(mfcc_features(analysis, int(n_mfcc)))
        else:
            values.update(_GROUP_FUNCS[group](analysis))
    return {n: values[n] for n in names}


def extract(analysis: Analysis, feature_set: str = "full", n_mfcc: int = 13) -> np.ndarray:
    """The handcrafted feature vector of one segment.

    Parameters
    ----------
    analysis : emodist.spectral.Analysis
        The segment and its one STFT (:func:`emodist.spectral.analyse`).
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
