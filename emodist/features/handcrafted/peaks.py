"""Spectral peaks of the magnitude STFT, found once per segment.

Shared by roughness (:mod:`.timbre`) and the pitch-class profile used for the
key (:mod:`.tonality`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from emodist.features.handcrafted.common import cached
from emodist.features.spectral import Analysis

__all__ = [
    "PCP_PEAK_FLOOR", "ROUGHNESS_PEAK_FLOOR", "SHARED_PEAK_FLOOR", "Peaks", "local_peaks",
    "segment_peaks",
]

#: Peaks weaker than this fraction of the frame maximum (-20 dB) are ignored by roughness.
ROUGHNESS_PEAK_FLOOR = 0.1
#: Peak floor of the pitch-class profile used for the key.
PCP_PEAK_FLOOR = 0.01
#: Floor of the spectral peaks found once per segment and shared by roughness and the profile.
SHARED_PEAK_FLOOR = min(PCP_PEAK_FLOOR, ROUGHNESS_PEAK_FLOOR)


class Peaks(NamedTuple):
    """Spectral peaks of a spectrogram, ordered by frame then bin (see :func:`local_peaks`)."""

    t: np.ndarray
    k: np.ndarray
    amp: np.ndarray
    left: np.ndarray
    right: np.ndarray
    frame_max: np.ndarray


def local_peaks(S: np.ndarray, *, floor: float = 0.0) -> Peaks:
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
        bins (``left``, ``right``), all ``(peaks,)``, and every frame's
        maximum ``(frames,)``; peaks ordered by frame then bin.  Works on a
        frame-major copy so that the gathers read memory in order.
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


def segment_peaks(an: Analysis) -> Peaks:
    """:func:`local_peaks` of the segment's STFT above :data:`SHARED_PEAK_FLOOR`, cached."""
    return cached(an, "peaks", lambda: local_peaks(an.S, floor=SHARED_PEAK_FLOOR))
