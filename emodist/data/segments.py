"""Segment plan: fixed windows over each track, planned from file headers.

The plan is made before any audio is decoded: each file's header gives its
duration, sample rate and channels (:func:`probe`), and :func:`window_starts`
cuts the duration into windows.  With the defaults (15 s windows, 15 s hop, a
partial last piece dropped) a one-minute Emotify track gives 4 segments, the
100 shared tracks give 398 and the full dataset 1588, the reference study's
count.  A hop shorter than the window overlaps windows (augmentation).
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd
import soundfile as sf

from emodist.data.audio import OPEN_ERRORS, _audio_file, open_problem
from emodist.data.labels import GEMS
from emodist.errors import DataError
from emodist.spec import ExtractionSpec

__all__ = [
    "DRIVER_BATCH", "EPSILON_S", "PLAN_COLUMNS", "AudioInfo", "Probed", "Probes", "SegmentPlan",
    "batches", "build_plan", "plan_segments", "probe", "probe_batch", "probe_columns",
    "probe_outcome", "segment_votes", "window_starts",
]

#: Files whose headers the driver reads per round of its thread pool.
DRIVER_BATCH = 2000

#: Durations are compared with this slack (seconds) so that header rounding
#: never drops a full window.
EPSILON_S = 1e-3

PLAN_COLUMNS = [
    "segment_id",
    "track_id",
    "segment_index",
    "start_s",
    "duration_s",
    "label",
    "group",
    "genre",
    "path",
]


class AudioInfo(NamedTuple):
    """What a file header says."""

    duration_s: float
    samplerate: int
    channels: int


def probe(path: str, storage_options: dict | None = None) -> AudioInfo:
    """Read duration, sample rate and channels from an audio file's header.

    Parameters
    ----------
    path : str
        Local path or fsspec URL (``s3://...``).
    storage_options : dict, optional
        fsspec options for remote paths.

    Returns
    -------
    AudioInfo

    Raises
    ------
    DataError
        When the file is missing, empty or not audio.
    """
    try:
        with _audio_file(path, storage_options, header_only=True) as handle:
            info = sf.info(handle)
    except FileNotFoundError:
        raise DataError(f"{path}: audio file not found") from None
    except (*OPEN_ERRORS, IsADirectoryError, PermissionError) as exc:
        raise DataError(open_problem(path, exc)) from None
    if info.frames <= 0 or info.samplerate <= 0:
        raise DataError(f"{path}: empty audio file")
    return AudioInfo(info.frames / info.samplerate, int(info.samplerate), int(info.channels))


def window_starts(
    duration_s: float, segment_s: float, hop_s: float, min_last_s: float | None = None
) -> list[tuple[float, float]]:
    """Windows ``(start_s, duration_s)`` over a track.

    Parameters
    ----------
    duration_s : float
        Track length.
    segment_s, hop_s : float
        Window length and hop.
    min_last_s : float, optional
        Shortest partial last piece kept; ``None`` means ``segment_s`` (a
        partial last piece is dropped).

    Returns
    -------
    list of (float, float)
        Full windows, then at most one partial last piece when it is at least
        ``min_last_s`` long.

    Examples
    --------
    >>> window_starts(60.04, 15, 15)
    [(0.0, 15.0), (15.0, 15.0), (30.0, 15.0), (45.0, 15.0)]
    >>> window_starts(42.5, 15, 15, min_last_s=10)
    [(0.0, 15.0), (15.0, 15.0), (30.0, 12.5)]
    """
    if segment_s <= 0 or hop_s <= 0:
        raise DataError("segment and hop lengths must be positive")
    min_last = segment_s if min_last_s is None else min(min_last_s, segment_s)
    out: list[tuple[float, float]] = []
    k = 0
    while True:
        start = k * hop_s
        if start >= duration_s - EPSILON_S:
            break
        length = min(segment_s, duration_s - start)
        if length >= segment_s - EPSILON_S:
            out.append((round(float(start), 6), float(segment_s)))
        else:
            if length >= min_last - EPSILON_S and min_last < segment_s:
                out.append((round(float(start), 6), round(float(length), 6)))
            break
        k += 1
    return out


@dataclass
class SegmentPlan:
    """Segments of a dataset and the tracks that gave none.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per segment with :data:`PLAN_COLUMNS`, ordered by track (in
        catalog order) then start.
    problems : list of (track_id, path, message)
        Tracks that could not be planned (unreadable, empty, too short).
    track_durations : pandas.Series
        float64 duration in seconds from the header, indexed by track id
        (tracks whose header was read).
    """

    table: pd.DataFrame
    problems: list[tuple[str, str, str]] = field(default_factory=list)
    track_durations: pd.Series = field(
        default_factory=lambda: pd.Series([], dtype=np.float64))

    def __len__(self) -> int:
        return len(self.table)

    @property
    def durations(self) -> dict[str, float]:
        """Track id -> duration in seconds (a dict made on request)."""
        return dict(zip(self.track_durations.index.tolist(),
                        self.track_durations.to_numpy().tolist()))


class Probes:
    """The probe outcomes of ``n`` files, column by column.

    What a header task returns and the driver keeps: three numbers per file
    in NumPy arrays (14 bytes) and a reason per unreadable file, instead of
    a Python tuple and header object per file.

    Attributes
    ----------
    duration_s : np.ndarray
        float64 ``(n,)``, NaN where the header could not be read.
    samplerate : np.ndarray
        int32 ``(n,)``, 0 where unreadable.
    channels : np.ndarray
        int16 ``(n,)``, 0 where unreadable.
    errors : dict
        Position -> the one-line reason of each unreadable file.
    """

    __slots__ = ("channels", "duration_s", "errors", "samplerate")

    def __init__(self, n: int):
        self.duration_s = np.full(int(n), np.nan, np.float64)
        self.samplerate = np.zeros(int(n), np.int32)
        self.channels = np.zeros(int(n), np.int16)
        self.errors: dict[int, str] = {}

    @classmethod
    def from_outcomes(cls, outcomes, n: int | None = None) -> Probes:
        """Columns of :func:`probe_outcome` results (a sequence, or an iterable of ``n``)."""
        if n is None:
            outcomes = list(outcomes)
            n = len(outcomes)
        out = cls(n)
        count = 0
        for i, (info, err) in enumerate(outcomes):
            count += 1
            if info is None:
                out.errors[i] = str(err)
            else:
                out.duration_s[i], out.samplerate[i], out.channels[i] = info
        if count != n:
            raise ValueError(f"{count} probe results for {n} files")
        return out

    def __len__(self) -> int:
        return len(self.duration_s)

    def __getitem__(self, i: int) -> tuple:
        """Outcome ``i`` as :func:`probe_outcome` gives it."""
        i = int(i)
        if i in self.errors:
            return None, self.errors[i]
        return (AudioInfo(float(self.duration_s[i]), int(self.samplerate[i]),
                          int(self.channels[i])), None)

    def put(self, start: int, part: Probes) -> None:
        """Copy ``part`` into positions ``start ... start + len(part) - 1``."""
        stop = int(start) + len(part)
        self.duration_s[start:stop] = part.duration_s
        self.samplerate[start:stop] = part.samplerate
        self.channels[start:stop] = part.channels
        self.errors.update({int(start) + i: e for i, e in part.errors.items()})

    def __getstate__(self):
        return self.duration_s, self.samplerate, self.channels, self.errors

    def __setstate__(self, state):
        self.duration_s, self.samplerate, self.channels, self.errors = state


#: What probing one file gives: its header, or the one-line reason it has none.
Probed = tuple  # (AudioInfo | None, str | None)


def probe_outcome(path: str, storage_options: dict | None = None) -> Probed:
    """:func:`probe` that returns its :class:`DataError` instead of raising it.

    Returns
    -------
    (AudioInfo, None) or (None, str)
        The header, or the error's one-line message.
    """
    try:
        return probe(path, storage_options), None
    except DataError as exc:
        return None, exc.message


def probe_batch(paths, storage_options: dict | None = None, *,
                max_workers: int = 16) -> list[Probed]:
    """Probe the headers of a batch of files, a few at a time (I/O bound).

    Parameters
    ----------
    paths : sequence of str
        Local paths or fsspec URLs.
    storage_options : dict, optional
        fsspec options for remote paths.
    max_workers : int
        Threads reading headers concurrently.

    Returns
    -------
    list of (AudioInfo or None, str or None)
        One :func:`probe_outcome` per path, in the order of ``paths``.
    """
    paths = list(paths)
    if not paths:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(paths)))) as pool:
        return list(pool.map(lambda p: probe_outcome(p, storage_options), paths))


def probe_columns(paths, storage_options: dict | None = None, *,
                  max_workers: int = 16) -> Probes:
    """:func:`probe_batch` as :class:`Probes` (what a header task sends back).

    A module-level function, so that it runs as a Dask task
    (:func:`emodist.engine.planning.probe_on_workers`).
    """
    return Probes.from_outcomes(probe_batch(paths, storage_options, max_workers=max_workers))


def build_plan(*, tracks: pd.DataFrame, probes, spec: ExtractionSpec) -> SegmentPlan:
    """The segment plan of tracks whose headers are known (pure).

    Parameters
    ----------
    tracks : pandas.DataFrame
        ``n`` usable tracks (:meth:`Catalog.usable`): ``track_id``, ``path``,
        ``label``, ``group`` and ``genre``, in catalog order.
    probes : Probes or sequence of (AudioInfo or None, str or None)
        ``n`` probe outcomes (:func:`probe_outcome`), row by row.
    spec : ExtractionSpec
        Window length, hop and shortest last piece.

    Returns
    -------
    SegmentPlan
    """
    if len(probes) != len(tracks):
        raise ValueError(f"{len(probes)} probe results for {len(tracks)} tracks")
    if not isinstance(probes, Probes):
        probes = Probes.from_outcomes(probes)
    # per segment only its track's position and three numbers; the text columns are
    # taken from the tracks at the end (no Python object per segment and column)
    owner, index, starts, lengths = array("q"), array("q"), array("d"), array("d")
    problems = []
    ok = np.isfinite(probes.duration_s)
    ok[list(probes.errors)] = False
    for pos in np.flatnonzero(~ok).tolist():
        problems.append((pos, (tracks["track_id"].iat[pos], tracks["path"].iat[pos],
                               probes.errors.get(pos, "no header"))))
    for pos, duration in zip(np.flatnonzero(ok).tolist(), probes.duration_s[ok].tolist()):
        windows = window_starts(duration, spec.segment_seconds, spec.hop_seconds,
                                spec.min_last_seconds)
        if not windows:
            problems.append((pos, (
                tracks["track_id"].iat[pos], tracks["path"].iat[pos],
                f"{duration:.2f} s is shorter than the {spec.min_last:g} s minimum")))
        for i, (start, dur) in enumerate(windows):
            owner.append(pos)
            index.append(i)
            starts.append(start)
            lengths.append(dur)
    problems = [p for _, p in sorted(problems, key=lambda item: item[0])]  # catalog order
    # indexed by the catalog's own column (no Python string per track)
    durations = pd.Series(probes.duration_s[ok], index=pd.Index(tracks["track_id"].array[ok]),
                          dtype=np.float64)
    return SegmentPlan(table=_segment_table(tracks, owner, index, starts, lengths),
                       problems=problems, track_durations=durations)


def _segment_table(tracks: pd.DataFrame, owner, index, starts, lengths) -> pd.DataFrame:
    """The :data:`PLAN_COLUMNS` table of ``m`` segments: track positions, indices, windows."""
    if not len(owner):
        table = pd.DataFrame([], columns=PLAN_COLUMNS)
        return table.astype({"segment_index": np.int32, "start_s": np.float64,
                             "duration_s": np.float64})
    index = np.asarray(index, np.int64)
    sub = tracks[["track_id", "label", "group", "genre", "path"]].take(
        np.asarray(owner, np.int64)).reset_index(drop=True)
    columns = {
        "segment_id": sub["track_id"] + ":" + pd.Series(index).astype(str).str.zfill(3),
        "segment_index": index.astype(np.int32),
        "start_s": np.asarray(starts, np.float64),
        "duration_s": np.asarray(lengths, np.float64),
    }
    return pd.DataFrame({c: columns[c] if c in columns else sub[c] for c in PLAN_COLUMNS},
                        columns=PLAN_COLUMNS)


def plan_segments(catalog, spec: ExtractionSpec | None = None, *, max_workers: int = 16,
                  on_probed: Callable[[int], None] | None = None) -> SegmentPlan:
    """Plan the segments of every usable track of a catalog.

    Parameters
    ----------
    catalog : emodist.data.catalog.Catalog
        Tracks with audio and kept labels are planned.
    spec : ExtractionSpec, optional
        Window length, hop and shortest last piece.
    max_workers : int
        Threads probing headers concurrently (I/O bound on remote stores).
    on_probed : callable, optional
        ``on_probed(n)`` after each ``n`` more headers were probed (progress).

    Returns
    -------
    SegmentPlan
    """
    spec = spec or ExtractionSpec()
    tracks = catalog.usable()
    paths = tracks["path"]  # a column; batches make their strings as they go
    opts = catalog.storage_options
    tick = on_probed or (lambda n: None)

    def _probe(path):
        out = probe_outcome(path, opts)
        tick(1)
        return out

    # a batch of paths (and of pending futures) at a time, not one per file up front
    probes = Probes(len(paths))
    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(paths) or 1))) as pool:
        for start, part in batches(paths, DRIVER_BATCH):
            probes.put(start, Probes.from_outcomes(pool.map(_probe, part), n=len(part)))
    return build_plan(tracks=tracks, probes=probes, spec=spec)


def batches(paths: Sequence[str], size: int) -> Iterator[tuple[int, list[str]]]:
    """``(start, paths[start:start + size])`` over ``paths``, lazily.

    ``paths`` may be a pandas Series (a catalog's column): each batch's
    strings are made as it is sent, not one Python string per file up front.

    >>> list(batches(["a", "b", "c"], 2))
    [(0, ['a', 'b']), (2, ['c'])]
    """
    for start in range(0, len(paths), max(1, int(size))):
        stop = start + size
        part = paths.iloc[start:stop] if hasattr(paths, "iloc") else paths[start:stop]
        yield start, [str(p) for p in part]


def segment_votes(table: pd.DataFrame, votes: pd.DataFrame | None) -> np.ndarray | None:
    """Per-segment copy of the per-track vote profiles (``None`` if absent).

    Parameters
    ----------
    table : pandas.DataFrame
        ``m`` segments (:data:`PLAN_COLUMNS`).
    votes : pandas.DataFrame or None
        Vote profiles indexed by track id, one column per GEMS emotion.

    Returns
    -------
    numpy.ndarray or None
        ``(m, 9)`` float32, in :data:`emodist.data.labels.GEMS` order.
    """
    if votes is None:
        return None
    v = votes.copy()
    v.index = v.index.astype(str)
    return v.reindex(table["track_id"].astype(str))[list(GEMS)].to_numpy(np.float32)
