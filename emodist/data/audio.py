"""Decode a track once: fsspec file object -> soundfile -> mono -> one soxr resample.

A track is read in one call (:func:`load_track`), down-mixed to mono and
resampled once to the analysis rate; the planned segments are then views of
that array (:func:`cut`).  Local paths and any fsspec URL (``s3://...``) go
through the same code path.
"""

from __future__ import annotations

import math
import re

import fsspec
import numpy as np
import soundfile as sf
import soxr

from emodist.errors import DataError, EmodistError

#: soxr quality used for the one resample (librosa's default ``soxr_hq``).
RESAMPLE_QUALITY = "HQ"


def to_mono(y: np.ndarray) -> np.ndarray:
    """Down-mix ``(frames, channels)`` or ``(frames,)`` audio to float32 mono.

    Parameters
    ----------
    y : np.ndarray
        Audio as soundfile returns it: one column per channel.

    Returns
    -------
    np.ndarray
        float32 array of shape ``(frames,)``: the mean of the channels.
    """
    y = np.asarray(y)
    if y.ndim == 2:
        y = y.mean(axis=1) if y.shape[1] > 1 else y[:, 0]
    elif y.ndim != 1:
        raise EmodistError(f"audio must be 1-D or (frames, channels), got shape {y.shape}")
    return np.ascontiguousarray(y, dtype=np.float32)


def resample(y: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample mono audio once with soxr (no-op when the rates agree).

    Parameters
    ----------
    y : np.ndarray
        Mono float32 audio.
    sr_in, sr_out : int
        Rates in Hz.

    Returns
    -------
    np.ndarray
        float32 mono audio at ``sr_out``.
    """
    if int(sr_in) == int(sr_out) or y.size == 0:
        return np.ascontiguousarray(y, dtype=np.float32)
    out = soxr.resample(y, int(sr_in), int(sr_out), quality=RESAMPLE_QUALITY)
    return np.ascontiguousarray(out, dtype=np.float32)


def _check_rate(sr: int) -> int:
    try:
        value = int(sr)
    except (TypeError, ValueError):
        raise EmodistError(f"sample rate must be a positive integer, got {sr!r}") from None
    if value <= 0 or value != sr:
        raise EmodistError(f"sample rate must be a positive integer, got {sr!r}")
    return value


def _read_frames(handle, path: str, offset_s: float, duration_s: float | None):
    with sf.SoundFile(handle) as snd:
        native = snd.samplerate
        start = round(offset_s * native)
        if snd.frames > 0 and start >= snd.frames:
            raise DataError(f"{path}: offset {offset_s:g} s is past the end of the audio")
        count = -1 if duration_s is None else round(duration_s * native)
        if start:
            snd.seek(start)
        data = snd.read(frames=count, dtype="float32", always_2d=True)
    return data, native


def _read(path: str, storage_options: dict | None, offset_s: float,
          duration_s: float | None) -> tuple[np.ndarray, int]:
    """Decoded ``(frames, channels)`` float32 data and its native rate; one clear error."""
    if offset_s < 0 or (duration_s is not None and duration_s <= 0):
        raise EmodistError(f"{path}: offset must be >= 0 and duration > 0 seconds")
    try:
        with fsspec.open(str(path), "rb", **(storage_options or {})) as handle:
            data, native = _read_frames(handle, str(path), offset_s, duration_s)
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path}: audio file not found") from None
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError,
            IsADirectoryError, PermissionError) as exc:
        raise DataError(f"{path}: cannot decode audio ({_reason(exc)})") from None
    # Any other OSError (a dropped connection, a throttled request) is left as
    # it is: it says nothing about the file, and callers retry it.
    if data.shape[0] == 0:
        raise DataError(f"{path}: audio holds no samples")
    return data, native


def _reason(exc: BaseException) -> str:
    """The library's reason, without the file object or path it may repeat."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    text = re.sub(r"Error opening <[^>]*>: ?", "", text)
    text = re.sub(r"<[^>]* object at 0x[0-9a-f]+>:? ?", "", text)
    return text.strip().rstrip(".") or type(exc).__name__


def _finite(y: np.ndarray) -> np.ndarray:
    return y if np.all(np.isfinite(y)) else np.nan_to_num(y, nan=0.0, posinf=0.0, neginf=0.0)


def decode(path: str, *, rates, end_s: float | None = None,
           storage_options: dict | None = None) -> dict[int, np.ndarray]:
    """Decode a track once and resample it once per rate.

    Parameters
    ----------
    path : str
        Local path or fsspec URL.
    rates : sequence of int
        Sample rates wanted, in Hz.
    end_s : float, optional
        Decode from the start to this many seconds (default: the whole file).
    storage_options : dict, optional
        Passed to :func:`fsspec.open`.

    Returns
    -------
    dict of int to numpy.ndarray
        Rate -> float32 mono samples ``(samples,)``.

    Raises
    ------
    DataError
        The file is missing, unreadable, not audio, or holds no samples.
    OSError
        A transient I/O problem; worth retrying.
    """
    rates = [_check_rate(r) for r in rates]
    data, native = _read(path, storage_options, 0.0, end_s)
    mono = to_mono(data)
    del data
    return {r: _finite(resample(mono, native, r)) for r in rates}


def load_track(
    path: str,
    sr: int,
    storage_options: dict | None = None,
    offset_s: float = 0.0,
    duration_s: float | None = None,
) -> np.ndarray:
    """Decode one track (or a part of it) to float32 mono at ``sr`` Hz.

    The file is opened through :func:`fsspec.open` (local path or URL such
    as ``s3://bucket/key.mp3``), decoded by soundfile (WAV, FLAC, OGG, MP3),
    down-mixed to mono by averaging channels and resampled once with soxr.

    Parameters
    ----------
    path : str
        Local path or fsspec URL.
    sr : int
        Target sample rate in Hz.
    storage_options : dict, optional
        Passed to :func:`fsspec.open` (credentials, ``endpoint_url``...).
    offset_s : float
        Start reading this many seconds into the file.
    duration_s : float, optional
        Read at most this many seconds (default: to the end).

    Returns
    -------
    np.ndarray
        float32 array of shape ``(samples,)``.

    Raises
    ------
    DataError
        The file is missing, unreadable, not audio, or holds no samples.
    OSError
        A transient I/O problem (connection lost...); worth retrying.
    """
    sr = _check_rate(sr)
    data, native = _read(path, storage_options, offset_s, duration_s)
    return _finite(resample(to_mono(data), native, sr))


def cut(y: np.ndarray, sr: int, start_s: float, duration_s: float) -> np.ndarray:
    """One segment of a decoded track, as a view (no copy).

    Parameters
    ----------
    y : np.ndarray
        Decoded mono track from :func:`load_track`.
    sr : int
        Its sample rate in Hz.
    start_s, duration_s : float
        Segment start and length in seconds.  A segment running past the
        end of the track is shortened to the samples that exist.

    Returns
    -------
    np.ndarray
        ``y[start : start + length]`` with sample indices rounded.

    Raises
    ------
    EmodistError
        Negative start, non-positive duration, or a start past the end.
    """
    if not (math.isfinite(start_s) and math.isfinite(duration_s)) or start_s < 0 or duration_s <= 0:
        raise EmodistError(
            f"segment start must be >= 0 and duration > 0 s, got {start_s!r}, {duration_s!r}"
        )
    start = round(start_s * sr)
    stop = start + round(duration_s * sr)
    if start >= y.shape[-1]:
        raise DataError(
            f"segment at {start_s:g} s starts after the end of the audio "
            f"({y.shape[-1] / sr:.3f} s)"
        )
    return y[..., start:stop]
