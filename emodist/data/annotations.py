"""Time-stamped annotations averaged over each segment's span.

Continuous emotion datasets rate a song every half second (DEAM, PMEmo and
emoMusic give valence and arousal at 2 Hz).  Here such ratings are a long
table with one row per track and time stamp::

    track, time_s, valence, arousal
    10,    15.0,   0.12,    -0.05
    10,    15.5,   0.14,    -0.02
    ...

and :func:`segment_means` gives each segment of a plan
(:class:`emodist.data.segments.SegmentPlan`) the mean of the ratings whose
time stamp falls in its span ``[start_s, start_s + duration_s)``, so that a
segment carries its own target.  :func:`from_wide` turns DEAM's wide files
(one row per song, one column ``sample_15000ms`` per time stamp) into that
long table.  Both are pure functions over tables.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from emodist.errors import DataError

__all__ = ["from_wide", "segment_means"]

#: A time stamp is in a segment when ``start <= t < end - EPSILON_S``.
EPSILON_S = 1e-6


def from_wide(table: pd.DataFrame, *, track: str = "song_id", column: str = "value",
              pattern: str = r"sample_(\d+(?:\.\d+)?)ms") -> pd.DataFrame:
    """A wide annotation table (one column per time stamp) as a long one.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per track; the track id in ``track``; one column per time
        stamp whose name matches ``pattern`` (group 1: milliseconds), as in
        DEAM's ``valence.csv`` / ``arousal.csv``.
    track : str
        Column holding the track id.
    column : str
        Name of the value column of the result (``"valence"``...).
    pattern : str
        Regular expression of the time-stamp columns.

    Returns
    -------
    pandas.DataFrame
        Columns ``track`` (str), ``time_s`` (float), ``column``; rows without
        a value (songs shorter than the widest) are left out; sorted by track
        then time.

    Raises
    ------
    DataError
        ``track`` is missing or no column matches ``pattern``.

    Examples
    --------
    >>> wide = pd.DataFrame({"song_id": [2], "sample_15000ms": [0.1], "sample_15500ms": [0.3]})
    >>> from_wide(wide, column="valence")
      track  time_s  valence
    0     2    15.0      0.1
    1     2    15.5      0.3
    """
    if track not in table.columns:
        raise DataError(f"annotation table has no column {track!r}")
    rx = re.compile(pattern)
    stamps = {c: float(m.group(1)) / 1000.0 for c in table.columns
              if (m := rx.fullmatch(str(c))) is not None}
    if not stamps:
        raise DataError(f"annotation table has no column matching {pattern!r}")
    long = table.melt(id_vars=[track], value_vars=list(stamps), var_name="time_s", value_name=column)
    long = long.dropna(subset=[column])
    out = pd.DataFrame({
        "track": long[track].astype(str).to_numpy(),
        "time_s": long["time_s"].map(stamps).to_numpy(np.float64),
        column: long[column].to_numpy(np.float64),
    })
    return out.sort_values(["track", "time_s"], kind="stable").reset_index(drop=True)


def segment_means(table: pd.DataFrame, segments: pd.DataFrame, *, columns=None,
                  track: str = "track", time: str = "time_s") -> pd.DataFrame:
    """Mean of each annotation column over each segment's span.

    Parameters
    ----------
    table : pandas.DataFrame
        Long annotation table: track id in ``track``, time stamp in seconds
        in ``time``, one column per rated quantity.
    segments : pandas.DataFrame
        The segment plan (:attr:`emodist.data.segments.SegmentPlan.table`)
        or any table with ``segment_id``, ``track_id``, ``start_s``,
        ``duration_s``.
    columns : sequence of str, optional
        Columns to average (default: every column but ``track`` and ``time``).
    track, time : str
        Names of the track and time columns of ``table``.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``segment_id`` in the order of ``segments``: the mean of
        each column over the time stamps ``t`` with
        ``start_s <= t < start_s + duration_s`` of the segment's track, and
        ``n_annotations`` (how many time stamps were averaged).  A segment
        without a rated time stamp (its track is not annotated, or its span
        is before the first rating, as DEAM starts at 15 s) has NaN means and
        ``n_annotations`` 0.

    Raises
    ------
    DataError
        A missing column, or a non-numeric annotation column.

    Examples
    --------
    >>> ann = pd.DataFrame({"track": ["a"] * 4, "time_s": [0.0, 0.5, 1.0, 1.5],
    ...                     "arousal": [0.0, 1.0, 2.0, 3.0]})
    >>> seg = pd.DataFrame({"segment_id": ["a:0", "a:1"], "track_id": ["a", "a"],
    ...                     "start_s": [0.0, 1.0], "duration_s": [1.0, 1.0]})
    >>> segment_means(ann, seg).to_dict("index")
    {'a:0': {'arousal': 0.5, 'n_annotations': 2}, 'a:1': {'arousal': 2.5, 'n_annotations': 2}}
    """
    for name, frame, what in ((track, table, "annotation table"), (time, table, "annotation table"),
                              ("segment_id", segments, "segment table"),
                              ("track_id", segments, "segment table"),
                              ("start_s", segments, "segment table"),
                              ("duration_s", segments, "segment table")):
        if name not in frame.columns:
            raise DataError(f"{what} has no column {name!r}")
    cols = [c for c in table.columns if c not in (track, time)] if columns is None else list(columns)
    missing = [c for c in cols if c not in table.columns]
    if missing:
        raise DataError(f"annotation table has no column {missing[0]!r}")
    values = table[cols]
    bad = [c for c in cols if not pd.api.types.is_numeric_dtype(values[c])]
    if bad:
        raise DataError(f"annotation column {bad[0]!r} is not numeric")
    values = values.to_numpy(np.float64)
    tracks = table[track].astype(str).to_numpy()
    times = table[time].to_numpy(np.float64)
    order = np.lexsort((times, tracks))
    tracks, times, values = tracks[order], times[order], values[order]
    # Prefix sums over the sorted rows: a span's sum is a difference of two.
    finite = np.isfinite(values)
    csum = np.vstack([np.zeros(len(cols)), np.cumsum(np.where(finite, values, 0.0), axis=0)])
    ccount = np.vstack([np.zeros(len(cols)), np.cumsum(finite, axis=0)])
    seg_track = segments["track_id"].astype(str).to_numpy()
    start = segments["start_s"].to_numpy(np.float64)
    end = start + segments["duration_s"].to_numpy(np.float64)
    first = np.searchsorted(tracks, seg_track, side="left")
    last = np.searchsorted(tracks, seg_track, side="right")
    lo = np.empty(len(segments), dtype=np.int64)
    hi = np.empty(len(segments), dtype=np.int64)
    for i in range(len(segments)):
        t = times[first[i]:last[i]]
        lo[i] = first[i] + np.searchsorted(t, start[i] - EPSILON_S, side="left")
        hi[i] = first[i] + np.searchsorted(t, end[i] - EPSILON_S, side="left")
    sums = csum[hi] - csum[lo]
    counts = ccount[hi] - ccount[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / np.where(counts > 0, counts, 1.0), np.nan)
    out = pd.DataFrame(means, columns=cols, index=pd.Index(segments["segment_id"].astype(str),
                                                           name="segment_id"))
    out["n_annotations"] = (hi - lo).astype(np.int64)
    return out
