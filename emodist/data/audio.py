"""Decode a track once: fsspec file object -> soundfile -> mono -> one soxr resample.

A track is read in blocks that are down-mixed to mono as they arrive, and
resampled once to each analysis rate; the planned segments are then views
of that array (:func:`cut`).  Far into a long file, only the window a
chunk's segments need is decoded (:class:`WindowedTrack`), so a worker's
memory does not grow with the track's length.  Local paths and any fsspec
URL (``s3://...``) go through the same code path.
"""

from __future__ import annotations

import contextlib
import math
import os
import re

import fsspec
import numpy as np
import soundfile as sf
import soxr
from fsspec.implementations.local import LocalFileSystem

from emodist.errors import DataError, EmodistError

__all__ = [
    "BLOCK_SECONDS",
    "EXACT_SEEK_FORMATS",
    "HEADER_BLOCK",
    "MONO_ADD_CHANNELS",
    "OPEN_ERRORS",
    "PREROLL_S",
    "RESAMPLE_QUALITY",
    "TAIL_S",
    "WINDOW_AFTER_S",
    "WindowedTrack",
    "cut",
    "decode",
    "id3v2_end",
    "load_track",
    "open_problem",
    "resample",
    "sniff_format",
    "to_mono",
]

#: soxr quality used for the one resample (librosa's default ``soxr_hq``).
RESAMPLE_QUALITY = "HQ"
#: Frames read (and down-mixed) at once, in seconds of audio.
BLOCK_SECONDS = 10.0
#: A chunk's span of a track that starts later than this is decoded as a window.
WINDOW_AFTER_S = 120.0
#: Audio decoded (and resampled) before a window's first segment, then dropped.
PREROLL_S = 1.0
#: Seconds decoded past the end a chunk needs: a segment's samples never touch the
#: resampler's or the decoder's end, so they do not depend on how chunks cut a track.
TAIL_S = 1.0
#: soundfile formats whose seek is sample-exact (PCM containers, FLAC); the
#: others (MP3, Ogg) are decoded from the start and the frames before a window dropped.
EXACT_SEEK_FORMATS = ("WAV", "WAVEX", "W64", "RF64", "AIFF", "AU", "CAF", "FLAC")


#: Most channels down-mixed by adding columns: numpy sums 8 or more pairwise.
MONO_ADD_CHANNELS = 7


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
        channels = y.shape[1]
        if channels == 1:
            y = y[:, 0]
        elif y.dtype == np.float32 and channels <= MONO_ADD_CHANNELS:
            # ndarray.mean over a short last axis runs a reduction per row (5x
            # slower); adding the columns gives the same bits: the same order
            # 0 + c0 + c1 + ..., the +0.0 turning a sum of -0.0s into numpy's +0.0
            out = y[:, 0] + y[:, 1]
            for k in range(2, channels):
                out += y[:, k]
            out += np.float32(0.0)
            out /= np.float32(channels)
            y = out
        else:
            y = y.mean(axis=1)
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


def _read_mono(snd, start: int, count: int, *, exact_seek: bool = True) -> np.ndarray:
    """``count`` frames (-1: to the end) from frame ``start``, as mono float32.

    WAV and FLAC (:data:`EXACT_SEEK_FORMATS`) are read in blocks of
    :data:`BLOCK_SECONDS`, each down-mixed as it is read, so a long
    multichannel file never lives in memory at its native width; the frames
    are those of one read.  Other formats (MP3, Ogg) are read in one call, as
    libsndfile's MP3 decoder gives other samples when a file is read in
    pieces; without ``exact_seek`` the frames before ``start`` are decoded
    and dropped, so that the decoder's state is that of a decode from the start.
    """
    if str(snd.format).upper() not in EXACT_SEEK_FORMATS:
        skip = 0 if exact_seek else start
        if start and exact_seek:
            snd.seek(start)
        data = snd.read(frames=-1 if count < 0 else count + skip, dtype="float32",
                        always_2d=True)
        return to_mono(data[skip:])
    block = max(1, int(BLOCK_SECONDS * snd.samplerate))
    if start:
        snd.seek(start)
    known = snd.frames - start if snd.frames > 0 else block
    out = np.empty(max(known if count < 0 else min(count, known), 0), np.float32)
    n = 0
    while count < 0 or n < count:
        data = snd.read(frames=block if count < 0 else min(block, count - n), dtype="float32",
                        always_2d=True)
        if not len(data):
            break
        if n + len(data) > out.size:  # the header under-counted the frames
            out = np.concatenate([out[:n], np.empty(max(block, len(data)), np.float32)])
        out[n:n + len(data)] = to_mono(data)
        n += len(data)
    return out[:n]


#: Bytes fetched from each end of a remote file before its header is read
#: (see :func:`_audio_file`).
HEADER_BLOCK = 64 * 1024


def id3v2_end(head: bytes) -> int:
    """Where an ID3v2 tag at the start of ``head`` ends (0 without one).

    An MP3 may begin with such a tag (titles, cover art: hundreds of
    kilobytes), which libsndfile reads whole before the first audio frame.
    Its 10-byte header gives its size as four 7-bit bytes, plus 10 bytes of
    footer when flag bit 4 is set.
    """
    if len(head) < 10 or head[:3] != b"ID3" or any(x & 0x80 for x in head[6:10]):
        return 0
    size = (head[6] << 21) | (head[7] << 14) | (head[8] << 7) | head[9]
    return 10 + size + (10 if head[5] & 0x10 else 0)


class _Prefetched:
    """A remote file whose first and last bytes were fetched ahead, as soundfile reads it.

    ``spans`` maps a start offset to the bytes fetched from there.  A read
    inside one comes from memory; any other read is fetched from ``fs`` as it
    is asked for, at least :data:`HEADER_BLOCK` of it, and kept (the reads
    that follow it are usually close by).  ``seek``/``tell``/``read`` are
    what soundfile's virtual I/O calls.
    """

    def __init__(self, fs, path: str, size: int, spans: dict[int, bytes]):
        self._fs, self._path, self._size, self._pos = fs, path, size, 0
        self._spans = dict(spans)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, n: int = -1) -> bytes:
        start = self._pos
        stop = self._size if n is None or n < 0 else min(self._size, start + n)
        if stop <= start:
            return b""
        for at, data in self._spans.items():
            if at <= start and stop <= at + len(data):
                break
        else:
            at = start
            data = self._fs.cat_file(self._path, start=at,
                                     end=min(self._size, max(stop, at + HEADER_BLOCK)))
            self._spans[at] = data
        out = data[start - at:stop - at]
        self._pos = start + len(out)
        return out


#: What libsndfile (through soundfile) raises for a file it cannot open or read.
OPEN_ERRORS = (sf.LibsndfileError, RuntimeError, ValueError, TypeError)

#: Leading bytes of the containers soundfile reads, and of a few it does not.
_MAGIC = ((b"RIFF", "WAV"), (b"RIFX", "WAV"), (b"RF64", "WAV"), (b"riff", "W64"),
          (b"FORM", "AIFF"), (b"fLaC", "FLAC"), (b"OggS", "Ogg"), (b".snd", "AU"),
          (b"caff", "CAF"), (b"ID3", "MP3"))
#: libsndfile reasons that do not say what is wrong with a file it was given
#: (its MP3 reader answers every failure so).
_UNTRUE_REASONS = ("File does not exist or is not a regular file", "System error")


def sniff_format(head: bytes) -> str | None:
    """The container that the first bytes of a file announce (``None``: not audio).

    Parameters
    ----------
    head : bytes
        The file's first bytes (12 are enough).

    Returns
    -------
    str or None
        ``"WAV"``, ``"FLAC"``, ``"MP3"``, ``"Ogg"``, ``"AIFF"``, ``"AU"``,
        ``"CAF"``, ``"W64"``, ``"MP4"`` (which soundfile does not read), or
        ``None`` for bytes no audio format starts with.
    """
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        return "MP3"  # an MPEG audio frame header without a tag
    if head[4:8] == b"ftyp":
        return "MP4"
    return None


def _head(handle) -> tuple[int | None, bytes]:
    """Size and first 12 bytes of what :func:`_audio_file` yielded (``None``: unknown)."""
    try:
        if isinstance(handle, str):
            with open(handle, "rb") as f:
                return os.fstat(f.fileno()).st_size, f.read(12)
        size = handle.seek(0, os.SEEK_END)
        handle.seek(0)
        return size, handle.read(12)
    except (OSError, ValueError):
        return None, b""


def open_problem(path: str, exc: BaseException, handle=None) -> str:
    """One true line on why an audio file could not be opened or decoded.

    libsndfile's own reasons mislead: its MP3 reader says ``File does not
    exist or is not a regular file (possibly a pipe?)`` of an empty file, of
    a text file and of a truncated MP3 alike.  The file's size and first
    bytes tell those apart.

    Parameters
    ----------
    path : str
        The file, named once at the start of the line.
    exc : BaseException
        What soundfile raised.
    handle : str or file-like, optional
        What the file was opened from (:func:`_audio_file`), to read its
        size and first bytes.

    Returns
    -------
    str
        ``PATH: empty file (0 bytes)``, ``PATH: not audio (format not
        recognised)``, ``PATH: MP4 audio, which soundfile does not read``,
        ``PATH: cannot read it (permission denied)``, or ``PATH: damaged or
        truncated FORMAT file (REASON)``.
    """
    if isinstance(exc, PermissionError):
        return f"{path}: cannot read it (permission denied)"
    if isinstance(exc, IsADirectoryError):
        return f"{path} is a folder, not an audio file"
    size, head = _head(handle) if handle is not None else (None, b"")
    if size == 0:
        return f"{path}: empty file (0 bytes)"
    kind = sniff_format(head) if head else None
    reason = _reason(exc)
    if head and kind is None:
        return f"{path}: not audio (format not recognised)"
    if kind == "MP4":
        return f"{path}: MP4 audio, which soundfile does not read (convert it to FLAC or WAV)"
    if kind is None:
        return f"{path}: cannot decode audio ({reason})"
    if reason.startswith(_UNTRUE_REASONS):
        return f"{path}: damaged or truncated {kind} file (no audio frame could be decoded)"
    return f"{path}: damaged or truncated {kind} file ({reason})"


@contextlib.contextmanager
def _audio_file(path: str, storage_options: dict | None, *, header_only: bool = False):
    """What soundfile reads ``path`` from (:func:`_source`); its errors as one true line.

    An error of soundfile inside the ``with`` block becomes a
    :class:`~emodist.errors.DataError` saying what is wrong with the file
    (:func:`open_problem`); a missing file stays :class:`FileNotFoundError`
    and a transient I/O error stays what it is (callers retry those).
    """
    with _source(path, storage_options, header_only=header_only) as handle:
        try:
            yield handle
        except OPEN_ERRORS as exc:
            raise DataError(open_problem(str(path), exc, handle)) from None


@contextlib.contextmanager
def _source(path: str, storage_options: dict | None, *, header_only: bool = False):
    """What soundfile reads ``path`` from: a local file's own path, else a file object.

    Given a path, libsndfile reads the file itself; through a Python file
    object every read is a Python callback (about 4,500 of them for a
    one-minute MP3, 10 % of its decode time).

    soundfile (0.14) opens every file under one process-wide lock, so a
    remote read made while libsndfile opens the file would keep every other
    thread of the process from opening one.  The bytes that open reads are
    therefore fetched before it.  For a decode, fsspec's file has read its
    first block (fsspec reads ahead ``block_size`` bytes, 50 MiB on S3, so
    the whole of most tracks).  For ``header_only``, the file's size, then
    its first and last :data:`HEADER_BLOCK` together (libsndfile reads an
    MP3's first kilobyte and its last 128 bytes, a WAV's first 48 bytes, a
    FLAC's first 8 KiB): two round trips, and a header read does not
    download the file (:class:`_Prefetched`).  An MP3 that starts with a
    longer ID3v2 tag (:func:`id3v2_end`) has the rest of the tag and a block
    past it fetched too, before the open: libsndfile reads all of it.
    """
    fs, where = fsspec.core.url_to_fs(str(path), **(storage_options or {}))
    if isinstance(fs, LocalFileSystem):
        if os.path.isdir(where):
            raise IsADirectoryError(f"{path} is a folder")
        if not os.path.isfile(where):
            raise FileNotFoundError(path)
        yield where
    elif header_only:
        size = fs.size(where)
        if size is None or size <= 2 * HEADER_BLOCK:
            head = fs.cat_file(where)
            yield _Prefetched(fs, where, len(head), {0: head})
            return
        head, tail = fs.cat_ranges([where, where], [0, size - HEADER_BLOCK],
                                   [HEADER_BLOCK, size], on_error="raise")
        tag_end = id3v2_end(head)
        if tag_end + HEADER_BLOCK // 16 > len(head) and tag_end < size - HEADER_BLOCK:
            head += fs.cat_file(where, start=len(head),
                                end=min(size - HEADER_BLOCK, tag_end + HEADER_BLOCK))
        yield _Prefetched(fs, where, size, {0: head, size - HEADER_BLOCK: tail})
    else:
        with fs.open(where, "rb") as f:
            f.read(1)
            f.seek(0)
            yield f


def _read_frames(handle, path: str, offset_s: float, duration_s: float | None, *,
                 end_s: float | None = None, rates=()):
    with sf.SoundFile(handle) as snd:
        native = snd.samplerate
        # a window starts on a frame where every rate's sample grid meets the
        # native one, so its resampled samples lie where a full decode's do
        align = math.lcm(1, *[native // math.gcd(native, r) for r in rates])
        start = round(offset_s * native) // align * align
        if snd.frames > 0 and start >= snd.frames:
            raise DataError(f"{path}: offset {offset_s:g} s is past the end of the audio")
        if end_s is not None:
            count = max(1, round(end_s * native) - start)
        else:
            count = -1 if duration_s is None else round(duration_s * native)
        data = _read_mono(snd, start, count, exact_seek=end_s is None)
    return data, native, start


def _open(path: str, storage_options: dict | None, offset_s: float, duration_s: float | None,
          **window) -> tuple[np.ndarray, int, int]:
    """Decoded mono samples, their native rate and first frame; one clear error."""
    if offset_s < 0 or (duration_s is not None and duration_s <= 0):
        raise EmodistError(f"{path}: offset must be >= 0 and duration > 0 seconds")
    try:
        with _audio_file(str(path), storage_options) as handle:
            data, native, start = _read_frames(handle, str(path), offset_s, duration_s, **window)
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path}: audio file not found") from None
    except (*OPEN_ERRORS, IsADirectoryError, PermissionError) as exc:
        raise DataError(open_problem(str(path), exc)) from None
    # Any other OSError (a dropped connection, a throttled request) is left as
    # it is: it says nothing about the file, and callers retry it.
    if data.shape[0] == 0:
        raise DataError(f"{path}: audio holds no samples")
    return data, native, start


def _read(path: str, storage_options: dict | None, offset_s: float,
          duration_s: float | None) -> tuple[np.ndarray, int]:
    """Decoded mono float32 samples and their native rate; one clear error."""
    data, native, _ = _open(path, storage_options, offset_s, duration_s)
    return data, native


def _reason(exc: BaseException) -> str:
    """The library's reason, without the file object or path it may repeat."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    text = re.sub(r"Error opening (<[^>]*>|'[^']*'|\"[^\"]*\"): ?", "", text)
    text = re.sub(r"<[^>]* object at 0x[0-9a-f]+>:? ?", "", text)
    return text.strip().rstrip(".") or type(exc).__name__


def _past_end(start_s: float, end_s: float) -> str:
    return (f"segment at {start_s:g} s starts after the end of the audio ({end_s:.3f} s decoded; "
            "is the file truncated?)")


def _finite(y: np.ndarray) -> np.ndarray:
    return y if np.all(np.isfinite(y)) else np.nan_to_num(y, nan=0.0, posinf=0.0, neginf=0.0)


def decode(path: str, *, rates, end_s: float | None = None,
           storage_options: dict | None = None) -> dict:
    """Decode a track once and resample it once per rate.

    A track whose span ends within :data:`WINDOW_AFTER_S` is decoded from its
    start, as one array per rate.  Past that, the decode waits for the first
    segment cut from it (:func:`cut`) and covers only the window from
    :data:`PREROLL_S` before that segment to ``end_s``, so a worker's memory
    follows a chunk's span of the track, not the track's length (see
    :class:`WindowedTrack`).

    Parameters
    ----------
    path : str
        Local path or fsspec URL.
    rates : sequence of int
        Sample rates wanted, in Hz.
    end_s : float, optional
        Decode from the start to this many seconds, plus :data:`TAIL_S`
        (default: the whole file).
    storage_options : dict, optional
        Passed to :func:`fsspec.open`.

    Returns
    -------
    dict of int to numpy.ndarray or WindowedTrack
        Rate -> float32 mono samples ``(samples,)``; :func:`cut` takes either.

    Raises
    ------
    DataError
        The file is missing, unreadable, not audio, or holds no samples.
    OSError
        A transient I/O problem; worth retrying.
    """
    rates = [_check_rate(r) for r in rates]
    if end_s is not None:
        # read past the chunk's last segment: the resampler's edge (and the decoder's
        # last frame) must not reach a segment, or values would depend on where chunks cut
        end_s = float(end_s) + TAIL_S
    if end_s is None or end_s <= WINDOW_AFTER_S + PREROLL_S:
        mono, native = _read(path, storage_options, 0.0, end_s)
        return {r: _finite(resample(mono, native, r)) for r in rates}
    window = _Window(str(path), storage_options, float(end_s), rates)
    return {r: WindowedTrack(window, r) for r in rates}


#: Seconds a decoded track may end before a planned segment does: MP3s decode up
#: to 0.16 s shorter than their header's frame count (the encoder's padding,
#: measured on Emotify); a file that ends sooner holds less audio than its
#: header says (a truncated file), and the segment is not computed from it.
SHORTFALL_S = 1.0


def decoded_end(tracks: dict) -> float | None:
    """Seconds of audio a :func:`decode` holds (``None`` for a window: not decoded yet).

    Parameters
    ----------
    tracks : dict
        What :func:`decode` returned.
    """
    for rate, y in tracks.items():
        if isinstance(y, np.ndarray):
            return y.shape[-1] / rate
    return None


class _Window:
    """One window of a track, decoded on first use and shared by every rate."""

    def __init__(self, path: str, storage_options, end_s: float, rates):
        self.path, self.options, self.end_s, self.rates = path, storage_options, end_s, rates
        self.frame0: int | None = None
        self.native = 0
        self.arrays: dict[int, np.ndarray] = {}

    def _decode(self, start_s: float) -> None:
        first = max(0.0, start_s - PREROLL_S)
        first = 0.0 if first < WINDOW_AFTER_S else first
        mono, self.native, self.frame0 = _open(self.path, self.options, first, None,
                                               end_s=self.end_s, rates=self.rates)
        self.arrays = {r: _finite(resample(mono, self.native, r)) for r in self.rates}

    def cut(self, rate: int, start_s: float, duration_s: float) -> np.ndarray:
        if self.frame0 is None or round(start_s * self.native) < self.frame0:
            self._decode(start_s)
        offset = self.frame0 * rate // self.native
        y = self.arrays[rate]
        start = round(start_s * rate) - offset
        if start >= y.shape[-1]:
            raise DataError(_past_end(start_s, (offset + y.shape[-1]) / rate))
        return y[start:start + round(duration_s * rate)]


class WindowedTrack:
    """A track at one rate, decoded only over the window its segments need.

    The first :func:`cut` decodes from :data:`PREROLL_S` before that segment
    to the decode's end (a cut before the window decodes again from there).
    WAV and FLAC seek there exactly and are read in blocks, so memory stays
    bounded; MP3 and Ogg are decoded from the start in one call and the
    frames before the window dropped (the samples stay those of a full
    decode, but the prefix is held while it is read: memory is bounded for
    WAV and FLAC only).
    Decoded samples equal those of a decode from the start; resampled ones
    differ only by the resampler's start-up, which the pre-roll absorbs
    (below 1e-6 of full scale; 8e-8 measured on WAV, FLAC and MP3 at 16,
    22.05 and 44.1 kHz, ``tests/data/test_audio.py``).
    """

    def __init__(self, window: _Window, sr: int):
        self.window, self.sr = window, int(sr)

    def cut(self, start_s: float, duration_s: float) -> np.ndarray:
        """Samples of ``[start_s, start_s + duration_s)``."""
        return self.window.cut(self.sr, start_s, duration_s)


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
    y : np.ndarray or WindowedTrack
        Decoded mono track from :func:`load_track` or :func:`decode`.
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
    if isinstance(y, WindowedTrack):
        return y.cut(start_s, duration_s)
    start = round(start_s * sr)
    stop = start + round(duration_s * sr)
    if start >= y.shape[-1]:
        raise DataError(_past_end(start_s, y.shape[-1] / sr))
    return y[..., start:stop]
