"""Segment planner: windows from headers, edge cases."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from emodist.data.catalog import load_dataset
from emodist.data.segments import plan_segments, probe, window_starts
from emodist.errors import DataError
from emodist.spec import ExtractionSpec


def test_windows_default_drop_partial_last_piece():
    assert window_starts(60.04, 15, 15) == [(0.0, 15.0), (15.0, 15.0), (30.0, 15.0), (45.0, 15.0)]
    assert len(window_starts(42.47, 15, 15)) == 2


def test_windows_exact_multiple_of_hop():
    assert len(window_starts(45.0, 15, 15)) == 3
    assert len(window_starts(44.9995, 15, 15)) == 3  # header rounding keeps the window


def test_windows_short_track_and_min_last():
    assert window_starts(10.0, 15, 15) == []
    assert window_starts(10.0, 15, 15, min_last_s=5) == [(0.0, 10.0)]
    assert window_starts(42.5, 15, 15, min_last_s=10)[-1] == (30.0, 12.5)


def test_windows_overlap():
    w = window_starts(30.0, 15, 5)
    assert [s for s, _ in w] == [0.0, 5.0, 10.0, 15.0]
    assert all(d == 15.0 for _, d in w)


def test_windows_reject_bad_lengths():
    with pytest.raises(DataError):
        window_starts(30.0, 0, 5)


def test_probe_reads_header(tmp_path):
    p = tmp_path / "a.wav"
    sf.write(p, np.zeros((44100 * 3, 2), np.float32), 44100)
    info = probe(str(p))
    assert info.duration_s == pytest.approx(3.0)
    assert info.samplerate == 44100 and info.channels == 2


@pytest.mark.parametrize("content", [b"", b"this is not audio at all" * 10])
def test_probe_rejects_empty_and_non_audio(tmp_path, content):
    p = tmp_path / "bad.mp3"
    p.write_bytes(content)
    with pytest.raises(DataError, match="bad.mp3"):
        probe(str(p))


def test_plan_on_demo_reports_bad_files_and_continues(tmp_path, demo_dataset):
    import shutil

    root = tmp_path / "d"
    shutil.copytree(demo_dataset, root)
    (root / "emotifymusic" / "classical" / "1.mp3").write_bytes(b"")
    short = root / "emotifymusic" / "rock" / "1.mp3"
    sf.write(short, np.zeros(22050 * 3, np.float32), 22050, format="MP3")
    cat = load_dataset(str(root))
    plan = plan_segments(cat, ExtractionSpec(segment_seconds=5, hop_seconds=5))
    problems = {tid: msg for tid, _, msg in plan.problems}
    assert set(problems) == {"1", "101"}
    assert "shorter" in problems["101"]
    assert len(plan) == (len(cat.usable()) - 2) * 4
    t = plan.table
    assert list(t.columns[:7]) == ["segment_id", "track_id", "segment_index", "start_s",
                                   "duration_s", "label", "group"]
    assert t["segment_id"].is_unique


def test_plan_emotify_398_segments(emotify_root):
    plan = plan_segments(load_dataset(str(emotify_root)))
    assert len(plan) == 398
    per_track = plan.table.groupby("track_id").size()
    assert per_track["16"] == 2  # classical/16.mp3 lasts 42 s
    assert (per_track.drop("16") == 4).all()
    assert plan.problems == []
