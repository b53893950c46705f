"""Demo data: Emotify layout, deterministic, classes audibly different."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from emodist.data.catalog import load_dataset
from emodist.data.demo import STYLES, make_demo_dataset, synthesize
from emodist.errors import DataError


def _digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def test_demo_is_deterministic_for_a_seed(tmp_path):
    a = make_demo_dataset(tmp_path / "a", n_tracks=4, seed=3, duration_s=3)
    b = make_demo_dataset(tmp_path / "b", n_tracks=4, seed=3, duration_s=3)
    c = make_demo_dataset(tmp_path / "c", n_tracks=4, seed=4, duration_s=3)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b") != _digest(tmp_path / "c")
    assert a.endswith("a") and b.endswith("b") and c.endswith("c")


def test_demo_reads_as_emotify(demo_dataset):
    cat = load_dataset(str(demo_dataset))
    assert cat.missing_audio == [] or len(cat.missing_audio) == 0
    assert int(cat.tracks["has_audio"].sum()) == 16
    assert set(cat.class_counts().index) == set(STYLES)


def test_styles_differ_in_loudness_and_brightness():
    rng = np.random.default_rng(0)
    sr = 22050
    loud = synthesize(STYLES["power"], 4, sr, rng)
    soft = synthesize(STYLES["sadness"], 4, sr, rng)
    assert np.sqrt(np.mean(loud**2)) > 2 * np.sqrt(np.mean(soft**2))
    def centroid(y):
        s = np.abs(np.fft.rfft(y))
        f = np.fft.rfftfreq(len(y), 1 / sr)
        return (s * f).sum() / s.sum()
    assert centroid(synthesize(STYLES["tension"], 4, sr, rng)) > centroid(
        synthesize(STYLES["tenderness"], 4, sr, rng)) * 1.2
    assert np.abs(loud).max() <= 1.0


def test_demo_rejects_unknown_class(tmp_path):
    with pytest.raises(DataError, match="amazement"):
        make_demo_dataset(tmp_path, n_tracks=2, classes=("amazement",))
