"""Helpers shared by the feature families: summaries, safe ratios, frame sums, caches.

Everything here is a pure function of arrays except :func:`cached`,
:func:`log_mel` and :func:`voiced`, which memoise per-segment intermediates
on the :class:`emodist.features.spectral.Analysis` so that the families share
them (one log-mel spectrogram, one voiced mask per segment).
"""

from __future__ import annotations

from collections.abc import Callable

import librosa
import numpy as np

from emodist.features.spectral import Analysis

__all__ = [
    "AMIN", "SILENT_FRAME_POWER", "cached", "framed_sums", "log_mel", "mean_std", "row_stats",
    "safe_div", "stats", "voiced",
]

#: A frame is silent when its mean power is below this (about -120 dBFS).
SILENT_FRAME_POWER = 1e-12
#: Smallest magnitude used inside logarithms (librosa's ``amin``).
AMIN = 1e-10


def cached(an: Analysis, key, compute: Callable[[], object]):
    """``an._cache[key]``, computed once with ``compute()``."""
    if key not in an._cache:
        an._cache[key] = compute()
    return an._cache[key]


def mean_std(x: np.ndarray, *, axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (population) standard deviation along ``axis``; 0 for an empty axis.

    Parameters
    ----------
    x : np.ndarray
        Any shape; summarised in float64.
    axis : int
        Axis to reduce (the frame axis).

    Returns
    -------
    mean, std : np.ndarray
        ``x``'s shape without ``axis``.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.shape[axis] == 0:
        shape = list(x.shape)
        del shape[axis]
        return np.zeros(shape), np.zeros(shape)
    return x.mean(axis=axis), x.std(axis=axis)


def stats(base: str, x: np.ndarray) -> dict[str, float]:
    """``{base}_mean`` and ``{base}_std`` of a ``(frames,)`` array."""
    m, s = mean_std(x)
    return {f"{base}_mean": float(m), f"{base}_std": float(s)}


def row_stats(names, x: np.ndarray) -> dict[str, float]:
    """``{name}_mean``, ``{name}_std`` for each row of a ``(len(names), frames)`` array."""
    m, s = mean_std(x)
    out: dict[str, float] = {}
    for i, name in enumerate(names):
        out[f"{name}_mean"], out[f"{name}_std"] = float(m[i]), float(s[i])
    return out


def safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` where ``den > 0``, else 0 (broadcast shapes, at least float32)."""
    num, den = np.broadcast_arrays(np.asarray(num), np.asarray(den))
    out = np.zeros(num.shape, dtype=np.result_type(num, den, np.float32))
    np.divide(num, den, out=out, where=den > 0)
    return out


def framed_sums(x: np.ndarray, *, frame_length: int, hop_length: int, n_frames: int,
                offset: int = 0) -> np.ndarray:
    """Sum of ``x`` over frames ``[t * hop - offset, ... + frame_length)``, clipped to ``x``.

    Parameters
    ----------
    x : np.ndarray
        ``(samples,)``.
    frame_length, hop_length, n_frames : int
        Framing.
    offset : int
        Start of frame 0 before sample 0 (``frame_length // 2`` for centred
        frames); samples outside ``x`` count as zero.

    Returns
    -------
    np.ndarray
        ``(n_frames,)`` float64.

    Notes
    -----
    When the frame length and the offset are whole numbers of hops (the
    default 2048 / 512 / 1024), frames are sums of hop-sized blocks (one
    ``np.add.reduceat`` pass); otherwise one cumulative sum.
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


def log_mel(an: Analysis) -> np.ndarray:
    """``librosa.power_to_db`` of the mel power spectrogram (ref 1, top_db 80), ``(n_mels, frames)``, cached."""
    return cached(an, "log_mel",
                  lambda: librosa.power_to_db(an.mel_power, ref=1.0, amin=AMIN, top_db=80.0))


def voiced(an: Analysis) -> np.ndarray:
    """Boolean ``(frames,)`` mask of frames that hold energy (not silent), cached."""
    return cached(an, "voiced", lambda: an.power.mean(axis=0) > SILENT_FRAME_POWER)
