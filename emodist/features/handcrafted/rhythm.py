"""Rhythm: onset envelope, tempo, pulse clarity, event density and attacks.

mirtempo, mirpulseclarity, mireventdensity, mirattacktime and
mirattackslope, all from the segment's one STFT (the onset envelope of its
log-mel spectrogram) or from the frame-RMS envelope.
"""

from __future__ import annotations

import librosa
import numpy as np
import scipy.signal

from emodist.features.handcrafted.common import cached, log_mel, safe_div, stats
from emodist.features.handcrafted.dynamics import frame_rms
from emodist.features.spectral import Analysis

__all__ = [
    "ATTACK_MAX_S", "ATTACK_PROMINENCE", "TEMPO_MAX_BPM", "TEMPO_MIN_BPM", "TEMPO_START_BPM",
    "TEMPO_STD_OCTAVES", "attack_features", "attack_phases", "onset_envelope", "onset_frames",
    "rhythm_features", "tempo_autocorrelation",
]

#: Tempo search range in BPM and log-normal prior (librosa's ``tempo`` defaults).
TEMPO_MIN_BPM, TEMPO_MAX_BPM, TEMPO_START_BPM, TEMPO_STD_OCTAVES = 30.0, 320.0, 120.0, 1.0
#: Longest attack phase searched before an onset peak, in seconds.
ATTACK_MAX_S = 0.5
#: Smallest prominence of an envelope peak counted as an attack, relative to the maximum.
ATTACK_PROMINENCE = 0.05


def onset_envelope(an: Analysis) -> np.ndarray:
    """Onset strength, ``(frames,)``, cached.

    ``librosa.onset.onset_strength(S=log_mel)``: the half-wave rectified first
    difference of the log-mel bands, averaged over bands, centred.
    """
    return cached(an, "onset_env", lambda: librosa.onset.onset_strength(
        S=log_mel(an), sr=an.sr, hop_length=an.hop_length, n_fft=an.n_fft))


def onset_frames(an: Analysis) -> np.ndarray:
    """Onset frames, ``(onsets,)`` int, cached.

    ``librosa.onset.onset_detect(onset_envelope=...)`` with its default
    normalisation and peak picking.
    """
    return cached(an, "onsets", lambda: librosa.onset.onset_detect(
        onset_envelope=onset_envelope(an), sr=an.sr, hop_length=an.hop_length))


def _tempo_lag(ac: np.ndarray, fps: float) -> int | None:
    """The lag maximising the log-compressed autocorrelation under the tempo prior, or None."""
    n = ac.shape[0]
    lag_min = max(1, int(np.floor(60.0 * fps / TEMPO_MAX_BPM)))
    lag_max = min(n - 2, int(np.ceil(60.0 * fps / TEMPO_MIN_BPM)))
    if lag_max < lag_min:
        return None
    lags = np.arange(lag_min, lag_max + 1)
    bpm = 60.0 * fps / lags
    prior = -0.5 * ((np.log2(bpm) - np.log2(TEMPO_START_BPM)) / TEMPO_STD_OCTAVES) ** 2
    score = np.log1p(1e6 * np.maximum(ac[lags], 0.0)) + prior
    return int(lags[np.argmax(score)])


def _parabolic_shift(ac: np.ndarray, best: int) -> float:
    """Sub-lag offset of the autocorrelation peak at ``best`` (parabola through 3 lags)."""
    if not 1 <= best < ac.shape[0] - 1:
        return 0.0
    a, b, c = ac[best - 1], ac[best], ac[best + 1]
    den = a - 2 * b + c
    return float(np.clip(0.5 * (a - c) / den, -0.5, 0.5)) if den < 0 else 0.0


def tempo_autocorrelation(env: np.ndarray, *, sr: int, hop_length: int) -> tuple[float, float]:
    """Tempo (BPM) and pulse clarity from the onset envelope's autocorrelation.

    The autocorrelation of the mean-removed onset envelope, normalised at lag
    0, is weighted by librosa's log-normal tempo prior (centre 120 BPM, one
    octave) as ``librosa.feature.tempo`` weights its tempogram; the best lag
    is refined by parabolic interpolation, which removes the frame-rate
    quantisation of the tempo.  Pulse clarity is the normalised
    autocorrelation at that lag (MIRtoolbox's mirpulseclarity 'MaxAutocor').
    Kept instead of ``librosa.feature.tempo`` (a windowed tempogram without
    interpolation, and no clarity) because it is faster
    (``benchmarks/bench_library_copies.py`` row
    "tempo_autocorrelation vs librosa.feature.tempo").

    Parameters
    ----------
    env : np.ndarray
        ``(frames,)`` onset envelope.
    sr, hop_length : int
        Frame rate ``sr / hop_length``.

    Returns
    -------
    tempo, clarity : float
        0, 0 when the envelope is constant (silence) or too short.
    """
    x = np.asarray(env, dtype=np.float64)
    x = x - x.mean()
    if x.shape[0] < 3:
        return 0.0, 0.0
    ac = librosa.autocorrelate(x)
    if ac[0] <= 0:
        return 0.0, 0.0
    ac = ac / ac[0]
    fps = sr / hop_length
    best = _tempo_lag(ac, fps)
    if best is None:
        return 0.0, 0.0
    clarity = float(np.clip(ac[best], 0.0, 1.0))
    return float(60.0 * fps / (best + _parabolic_shift(ac, best))), clarity


def rhythm_features(an: Analysis) -> dict[str, float]:
    """Tempo, pulse clarity and event density (mirtempo, mirpulseclarity, mireventdensity).

    Event density is the number of onsets (:func:`onset_frames`) per second.
    """
    tempo, clarity = tempo_autocorrelation(onset_envelope(an), sr=an.sr,
                                           hop_length=an.hop_length)
    duration = an.y.shape[0] / an.sr
    return {"tempo": tempo, "pulse_clarity": clarity,
            "event_density": float(onset_frames(an).shape[0] / duration)}


def attack_phases(env: np.ndarray, *, max_frames: int,
                  prominence: float = ATTACK_PROMINENCE) -> tuple[np.ndarray, np.ndarray]:
    """Start and peak frame of each attack of an amplitude envelope.

    Peaks are the envelope's local maxima with a prominence of at least
    ``prominence`` times the envelope maximum (:func:`scipy.signal.find_peaks`).
    For each peak the valley is the envelope minimum since the previous peak
    (at most ``max_frames`` back); the attack starts at the last frame still
    within 10 % of the rise above that valley, and ends at the peak.

    Parameters
    ----------
    env : np.ndarray
        ``(frames,)`` non-negative envelope.
    max_frames : int
        Longest attack searched.
    prominence : float
        Relative prominence of a peak.

    Returns
    -------
    starts, peaks : np.ndarray
        ``(attacks,)`` int frame indices.
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
    env = frame_rms(an)
    fps = an.sr / an.hop_length
    starts, peaks = attack_phases(env, max_frames=max(1, round(ATTACK_MAX_S * fps)))
    times = (peaks - starts) / fps
    slopes = safe_div(env[peaks] - env[starts], times)
    return {**stats("attack_time", times), **stats("attack_slope", slopes)}
