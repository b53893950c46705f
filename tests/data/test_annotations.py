"""Time-stamped annotations averaged over segment spans (emodist.data.annotations)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from emodist.data.annotations import from_wide, segment_means
from emodist.data.segments import window_starts
from emodist.errors import DataError


def _plan(durations: dict[str, float], segment_s: float = 15.0) -> pd.DataFrame:
    rows = []
    for tid, dur in durations.items():
        for k, (start, length) in enumerate(window_starts(dur, segment_s, segment_s)):
            rows.append({"segment_id": f"{tid}:{k:03d}", "track_id": tid,
                         "start_s": start, "duration_s": length})
    return pd.DataFrame(rows)


def test_means_of_a_generated_table_equal_the_known_values():
    # Ratings every 0.5 s from 15 s (DEAM's start); within segment k the
    # valence is the constant k + 1 and the arousal a ramp whose mean is known.
    rng = np.random.default_rng(0)
    durations = {"10": 60.0, "11": 45.0}
    rows = []
    known = {}
    for tid, dur in durations.items():
        for k in range(int(dur // 15)):
            stamps = np.arange(k * 15.0, k * 15.0 + 15.0, 0.5)
            stamps = stamps[stamps >= 15.0]
            ramp = rng.normal(size=len(stamps))
            for t, a in zip(stamps, ramp):
                rows.append({"track": tid, "time_s": t, "valence": k + 1.0, "arousal": a})
            known[f"{tid}:{k:03d}"] = (k + 1.0, ramp.mean() if len(ramp) else np.nan, len(stamps))
    table = pd.DataFrame(rows).sample(frac=1.0, random_state=1)  # order must not matter
    out = segment_means(table, _plan(durations))
    assert list(out.index) == ["10:000", "10:001", "10:002", "10:003", "11:000", "11:001", "11:002"]
    for sid, (val, aro, n) in known.items():
        assert out.loc[sid, "n_annotations"] == n
        if n == 0:  # the first 15 s are not rated
            assert np.isnan(out.loc[sid, "valence"]) and np.isnan(out.loc[sid, "arousal"])
        else:
            assert out.loc[sid, "valence"] == pytest.approx(val)
            assert out.loc[sid, "arousal"] == pytest.approx(aro)
    assert out.loc["10:001", "n_annotations"] == 30  # 15 s at 2 Hz


def test_boundary_stamp_belongs_to_the_later_segment_and_unrated_tracks_are_nan():
    table = pd.DataFrame({"track": ["a", "a", "a"], "time_s": [14.5, 15.0, 29.5],
                          "v": [1.0, 10.0, 20.0]})
    seg = _plan({"a": 30.0, "b": 30.0})
    out = segment_means(table, seg, columns=["v"])
    assert out.loc["a:000", "v"] == 1.0
    assert out.loc["a:001", "v"] == 15.0
    assert out.loc["b:000", "n_annotations"] == 0 and np.isnan(out.loc["b:000", "v"])


def test_missing_values_are_skipped_per_column():
    table = pd.DataFrame({"track": ["a"] * 3, "time_s": [0.0, 0.5, 1.0],
                          "v": [1.0, np.nan, 3.0], "w": [1.0, 2.0, 3.0]})
    seg = pd.DataFrame({"segment_id": ["a:0"], "track_id": ["a"], "start_s": [0.0], "duration_s": [2.0]})
    out = segment_means(table, seg)
    assert out.loc["a:0", "v"] == 2.0 and out.loc["a:0", "w"] == 2.0


def test_from_wide_gives_the_long_table_deam_style():
    wide = pd.DataFrame({"song_id": [2, 3], "sample_15000ms": [0.1, 0.5],
                         "sample_15500ms": [0.3, np.nan]})
    long = from_wide(wide, column="valence")
    assert long.to_dict("list") == {"track": ["2", "2", "3"], "time_s": [15.0, 15.5, 15.0],
                                    "valence": [0.1, 0.3, 0.5]}
    seg = pd.DataFrame({"segment_id": ["2:0"], "track_id": ["2"], "start_s": [15.0], "duration_s": [15.0]})
    assert segment_means(long, seg).loc["2:0", "valence"] == pytest.approx(0.2)


@pytest.mark.parametrize("table, message", [
    (pd.DataFrame({"track": ["a"], "v": [1.0]}), "no column 'time_s'"),
    (pd.DataFrame({"track": ["a"], "time_s": [0.0], "v": ["x"]}), "'v' is not numeric"),
])
def test_bad_tables_get_one_line(table, message):
    seg = pd.DataFrame({"segment_id": ["a:0"], "track_id": ["a"], "start_s": [0.0], "duration_s": [1.0]})
    with pytest.raises(DataError, match=message):
        segment_means(table, seg)
    with pytest.raises(DataError, match="no column matching"):
        from_wide(pd.DataFrame({"song_id": [1], "x": [2]}))
