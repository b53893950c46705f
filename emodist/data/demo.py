"""Generated demo data in the Emotify layout.

:func:`make_demo_dataset` writes ``data.csv`` (listener responses over the
nine GEMS emotions) and ``emotifymusic/<genre>/<n>.mp3`` files of synthetic
music whose emotion classes differ in ways audio features can see: tempo,
mode (major or minor), loudness, brightness (number and strength of
harmonics), texture (percussion noise, note density) and register.  The
output is deterministic for a seed.  It is generated on demand and never
shipped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd
import soundfile as sf

from emodist.data.catalog import EMOTIFY_GENRES
from emodist.data.labels import GEMS
from emodist.errors import DataError

__all__ = ["MAJOR", "MINOR", "STYLES", "Style", "make_demo_dataset", "synthesize"]


@dataclass(frozen=True)
class Style:
    """How one emotion class sounds in the demo data."""

    bpm: float
    minor: bool
    gain: float  # peak amplitude
    harmonics: int  # brightness
    noise: float  # percussive noise level (texture)
    density: int  # notes per beat
    octave: int  # register (MIDI octave of the root)


#: The eight classes the reference study kept, each with its sound.
STYLES = {
    "calmness": Style(bpm=60, minor=False, gain=0.15, harmonics=2, noise=0.0, density=1, octave=4),
    "joyful_activation": Style(bpm=150, minor=False, gain=0.6, harmonics=8, noise=0.15, density=2,
                               octave=5),
    "tension": Style(bpm=130, minor=True, gain=0.55, harmonics=10, noise=0.35, density=4, octave=4),
    "sadness": Style(bpm=55, minor=True, gain=0.12, harmonics=3, noise=0.0, density=1, octave=3),
    "power": Style(bpm=100, minor=False, gain=0.85, harmonics=12, noise=0.3, density=2, octave=2),
    "nostalgia": Style(bpm=80, minor=False, gain=0.3, harmonics=4, noise=0.02, density=2, octave=4),
    "tenderness": Style(bpm=70, minor=False, gain=0.2, harmonics=1, noise=0.0, density=2, octave=6),
    "solemnity": Style(bpm=45, minor=True, gain=0.4, harmonics=6, noise=0.0, density=1, octave=3),
}

MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10)


def _midi_hz(m: float) -> float:
    return 440.0 * 2.0 ** ((m - 69) / 12)


def synthesize(style: Style, duration_s: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Synthetic music of one style.

    Parameters
    ----------
    style : Style
        Tempo, mode, loudness, brightness, texture and register.
    duration_s : float
        Length in seconds.
    sr : int
        Sample rate.
    rng : numpy.random.Generator
        Source of the melody, key and small tempo/gain variations.

    Returns
    -------
    numpy.ndarray
        Mono float32 signal in [-1, 1].
    """
    n = round(duration_s * sr)
    y = np.zeros(n, np.float64)
    bpm = style.bpm * rng.uniform(0.95, 1.05)
    beat = 60.0 / bpm
    step = beat / style.density
    scale = MINOR if style.minor else MAJOR
    root = 12 * (style.octave + 1) + int(rng.integers(0, 12))
    degree = 0
    t = 0.0
    weights = 1.0 / np.arange(1, style.harmonics + 1) ** 1.2
    while t < duration_s:
        degree = int(np.clip(degree + rng.integers(-2, 3), -3, 9))
        midi = root + 12 * (degree // 7) + scale[degree % 7]
        start = int(t * sr)
        length = min(int(step * sr * 1.5), n - start)
        if length <= 0:
            break
        tt = np.arange(length) / sr
        env = np.exp(-tt * (3.0 / step)) * np.minimum(1.0, tt / 0.005)
        f0 = _midi_hz(midi)
        note = np.zeros(length)
        for h, w in enumerate(weights, start=1):
            if f0 * h < sr / 2:
                note += w * np.sin(2 * np.pi * f0 * h * tt)
        # a triad under the melody on every beat (mode is audible)
        if abs((t / beat) - round(t / beat)) < 1e-6:
            for iv in (0, 4 if not style.minor else 3, 7):
                note += 0.5 * np.sin(2 * np.pi * _midi_hz(root - 12 + iv) * tt)
            if style.noise > 0:
                burst = rng.standard_normal(length) * np.exp(-tt * 40.0)
                note += style.noise * 4.0 * burst
        y[start : start + length] += env * note
        t += step
    y /= max(1e-9, np.abs(y).max())
    return (y * style.gain * rng.uniform(0.9, 1.0)).astype(np.float32)


def _responses(label: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Listener ticks (``n`` x 9) where ``label`` dominates."""
    k = GEMS.index(label)
    ticks = np.zeros((n, len(GEMS)), np.int8)
    for r in range(n):
        if rng.random() < 0.85:
            ticks[r, k] = 1
        extra = rng.choice(len(GEMS), size=int(rng.integers(0, 3)), replace=False)
        ticks[r, extra] = 1
    ticks[0, k] = 1  # at least one listener agrees
    return ticks


def make_demo_dataset(
    out_dir,
    n_tracks: int = 40,
    seed: int = 0,
    duration_s: float = 30.0,
    sr: int = 22050,
    classes: tuple[str, ...] | None = None,
    listeners: int = 12,
) -> str:
    """Write a small Emotify-layout dataset of generated music.

    Parameters
    ----------
    out_dir : str or path
        Folder to create (``data.csv`` and ``emotifymusic/<genre>/<n>.mp3``).
    n_tracks : int
        Number of tracks, spread over the four genre folders and over the
        classes (round robin, so every class gets tracks).
    seed : int
        Everything (audio, votes) is a deterministic function of the seed.
    duration_s : float
        Length of each track.
    sr : int
        Sample rate of the written MP3 files.
    classes : tuple of str, optional
        Emotion classes to use (default: the eight of :data:`STYLES`).
    listeners : int
        Responses per track in ``data.csv``.

    Returns
    -------
    str
        ``out_dir``.
    """
    classes = tuple(classes or STYLES)
    unknown = [c for c in classes if c not in STYLES]
    if unknown:
        raise DataError(f"no demo style for {unknown[0]!r}; choose from {', '.join(STYLES)}")
    if not 1 <= n_tracks <= 400:
        raise DataError("demo data holds 1 to 400 tracks (Emotify's id range)")
    out_dir = str(out_dir)
    rows = []
    for i in range(n_tracks):
        rng = np.random.default_rng([seed, i])
        genre_block = i % len(EMOTIFY_GENRES)
        number = i // len(EMOTIFY_GENRES) + 1
        track_id = 100 * genre_block + number
        genre = EMOTIFY_GENRES[genre_block]
        label = classes[i % len(classes)]
        folder = os.path.join(out_dir, "emotifymusic", genre)
        os.makedirs(folder, exist_ok=True)
        y = synthesize(STYLES[label], duration_s, sr, rng)
        sf.write(os.path.join(folder, f"{number}.mp3"), y, sr, format="MP3")
        for ticks in _responses(label, listeners, rng):
            rows.append([track_id, genre, *ticks.tolist()])
    cols = ["track id", "genre", *GEMS]
    df = pd.DataFrame(rows, columns=cols)
    for extra, value in (("mood", 3), ("liked", 0), ("disliked", 0), ("age", 30),
                         ("gender", 1), ("mother tongue", "English")):
        df[extra] = value
    # Emotify's header has a space after each comma.
    with open(os.path.join(out_dir, "data.csv"), "w", encoding="utf-8") as f:
        f.write(", ".join(df.columns) + "\n")
        df.to_csv(f, header=False, index=False)
    return out_dir
