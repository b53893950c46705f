"""``emodist train`` then ``emodist predict`` through the command line, on generated music."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from emodist.cli import main
from emodist.data.demo import make_demo_dataset
from emodist.models.trained import load_trained


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-predict")
    make_demo_dataset(root / "train", n_tracks=16, seed=5, duration_s=8.0)
    store = str(root / "features.zarr")
    assert main(["extract", str(root / "train"), "--store", store, "--features", "handcrafted",
                 "--segment-seconds", "4", "--workers", "1", "--quiet"]) == 0
    model = root / "model"
    assert main(["train", store, "--features", "handcrafted", "--classifier",
                 "logistic-regression", "--folds", "4", "--workers", "1", "--out", str(model),
                 "--name", "mood", "--quiet"]) == 0
    make_demo_dataset(root / "new", n_tracks=4, seed=6, duration_s=8.0)
    return root, model


def test_one_file_is_answered_here_with_segments_and_bars(trained, capsys):
    root, model = trained
    song = min((root / "new").rglob("*.mp3"))
    capsys.readouterr()
    assert main(["predict", str(song), "--model", str(model)]) == 0
    out = capsys.readouterr().out
    assert "(2 segments)" in out and "per segment:" in out and "█" in out
    assert out.count(" s  ") == 2  # one line per 4 s segment


def test_a_folder_into_a_store_with_a_table(trained, tmp_path, capsys):
    root, model = trained
    table = tmp_path / "tracks.csv"
    store = str(tmp_path / "p.zarr")
    assert main(["predict", str(root / "new"), "--model", str(model), "--store", store,
                 "--out", str(table), "--workers", "1", "--quiet"]) == 0
    with open(table) as f:
        rows = list(csv.DictReader(f))
    classes = load_trained(model).classes
    assert len(rows) == 4 and {"track_id", "dominant", "top3", *classes} <= set(rows[0])
    for row in rows:  # each track's probabilities sum to one; the dominant is the largest
        probs = {c: float(row[c]) for c in classes}
        assert abs(sum(probs.values()) - 1) < 1e-4
        assert row["dominant"] == max(probs, key=probs.get)
    capsys.readouterr()
    assert main(["query", store, "--emotion", rows[0]["dominant"], "--format", "csv"]) == 0
    assert capsys.readouterr().out.count("\n") == 5  # header and the 4 tracks


def test_refusals_are_one_line(trained, tmp_path, capsys):
    root, model = trained
    song = str(min((root / "new").rglob("*.mp3")))
    assert main(["predict", song, "--model", str(tmp_path / "nothing")]) == 2
    assert "--model:" in capsys.readouterr().err
    (tmp_path / "m").mkdir()
    for f in model.iterdir():
        (tmp_path / "m" / f.name).write_bytes(f.read_bytes())
    (tmp_path / "m" / "model.onnx").write_bytes(b"tampered")
    assert main(["predict", song, "--model", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sha256" in err[0]
    assert main(["predict", song, "--model", str(model), "--out", "x.txt"]) == 2
    assert "--out:" in capsys.readouterr().err


@pytest.mark.parametrize("option", [["--workers", "2"], ["--scheduler", "tcp://127.0.0.1:1"],
                                    ["--scheduler-file", "s.json"]])
def test_cluster_options_without_a_store_are_refused_not_ignored(trained, option, capsys):
    """Without --store the files are answered in this process: a cluster option would be
    silently ignored, so it is refused in one line naming it."""
    root, model = trained
    song = str(min((root / "new").rglob("*.mp3")))
    capsys.readouterr()
    assert main(["predict", song, "--model", str(model), *option]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"emodist: error: {option[0]}:"), err
    assert "--store" in err[0]


def test_unreadable_files_beside_good_ones_are_named_once_and_the_rest_answered(
        trained, tmp_path, capsys):
    root, model = trained
    folder = tmp_path / "mixed"
    folder.mkdir()
    songs = sorted((root / "new").rglob("*.mp3"))[:2]
    for n, song in enumerate(songs):
        (folder / f"song{n}.mp3").write_bytes(song.read_bytes())
    (folder / "garbage.mp3").write_text("not audio")
    (folder / "empty.wav").write_bytes(b"")
    capsys.readouterr()
    assert main(["predict", str(folder), "--model", str(model), "--out",
                 str(tmp_path / "t.csv")]) == 0
    err = capsys.readouterr().err
    with open(tmp_path / "t.csv") as f:
        assert sorted(r["path"].rsplit("/", 1)[-1] for r in csv.DictReader(f)) == [
            "song0.mp3", "song1.mp3"]
    lines = [line for line in err.splitlines() if "not recognised" in line]
    assert len(lines) == 2, err
    for name in ("garbage.mp3", "empty.wav"):
        line = next(line for line in lines if name in line)
        assert line.count(name) == 1, line  # the path once, then the reason
    assert "not audio" in err and "empty file" in err


def test_one_unreadable_file_is_one_line_naming_it_once(trained, tmp_path, capsys):
    _, model = trained
    bad = tmp_path / "garbage.mp3"
    bad.write_text("not audio")
    capsys.readouterr()
    assert main(["predict", str(bad), "--model", str(model)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"emodist: error: {bad}: not audio"), err
    assert err[0].count("garbage.mp3") == 1, err  # no made-up flag, the path once


def test_several_files_are_each_a_track_as_when_asked_alone(trained, tmp_path, capsys):
    """``emodist predict *.mp3``: a shell pattern gives several DATA; each file is a track,
    answered as it is alone, here and into a store; a file named twice counts once."""
    root, model = trained
    songs = []
    for n, song in enumerate(sorted((root / "new").rglob("*.mp3"))[:3]):
        songs.append(str(tmp_path / f"song{n}.mp3"))
        (tmp_path / f"song{n}.mp3").write_bytes(song.read_bytes())
    alone = []
    for song in songs:
        assert main(["predict", song, "--model", str(model), "--out",
                     str(tmp_path / "one.csv")]) == 0
        with open(tmp_path / "one.csv") as f:
            alone += list(csv.DictReader(f))
    assert main(["predict", *songs, songs[0], "--model", str(model), "--out",
                 str(tmp_path / "all.csv")]) == 0
    assert main(["predict", *songs, "--model", str(model), "--store", str(tmp_path / "p.zarr"),
                 "--out", str(tmp_path / "stored.csv"), "--workers", "1", "--quiet"]) == 0
    classes = load_trained(model).classes
    for table in ("all.csv", "stored.csv"):
        with open(tmp_path / table) as f:
            rows = {r["track_id"]: r for r in csv.DictReader(f)}
        assert sorted(rows) == sorted(r["track_id"] for r in alone), table
        for one in alone:  # the file's name is its track, with its own probabilities
            assert one["track_id"] == one["path"].rsplit("/", 1)[-1]
            row = rows[one["track_id"]]
            assert row["n_segments"] == one["n_segments"]
            for c in classes:
                assert abs(float(row[c]) - float(one[c])) < 1e-6, (table, c)
    out = capsys.readouterr().out
    assert "per segment:" not in out.split("wrote")[-1]  # several tracks: no segment lines


def test_several_files_with_the_same_name_keep_their_paths(trained, tmp_path, capsys):
    root, model = trained
    song = min((root / "new").rglob("*.mp3"))
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "song.mp3").write_bytes(song.read_bytes())
    same = [str(tmp_path / "a" / "song.mp3"), str(tmp_path / "b" / "song.mp3")]
    assert main(["predict", *same, "--model", str(model), "--out",
                 str(tmp_path / "t.csv")]) == 0
    with open(tmp_path / "t.csv") as f:
        assert sorted(r["track_id"] for r in csv.DictReader(f)) == same


@pytest.mark.parametrize("extra", ["missing.mp3", "folder", "notes.txt"])
def test_several_files_refuse_a_missing_or_non_audio_one_in_one_line(trained, tmp_path, extra,
                                                                     capsys):
    root, model = trained
    song = str(min((root / "new").rglob("*.mp3")))
    (tmp_path / "folder").mkdir()
    (tmp_path / "notes.txt").write_text("a")
    capsys.readouterr()
    assert main(["predict", song, str(tmp_path / extra), "--model", str(model)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"emodist: error: {tmp_path / extra}:"), err
    assert ("no such file" in err[0]) == (extra == "missing.mp3"), err


def test_the_tutorials_python_block_runs(trained, tmp_path, capsys):
    """``docs/tutorials/recognise.md``, section 5, run as written but for its paths, the
    feature group the generated store has, and the folds and workers of a small machine."""
    root, _ = trained
    page = Path(__file__).resolve().parents[2] / "docs" / "tutorials" / "recognise.md"
    section = page.read_text(encoding="utf-8").split("## 5. From Python", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    songs = [str(s) for s in sorted((root / "new").rglob("*.mp3"))[:2]]
    for old, new in [("emotify.zarr", str(root / "features.zarr")),
                     ("handcrafted+musicnn_msd", "handcrafted"),
                     ('out="models/emotion")', 'out="models/emotion", folds=4, n_jobs=1)'),
                     ("models/emotion", str(tmp_path / "model")),
                     ('["a.mp3", "b.mp3"]', repr(songs)),
                     ('"music/"', repr(str(root / "new"))),
                     ("predictions.zarr", str(tmp_path / "p.zarr")),
                     ("Runtime(n_workers=2)", "Runtime(n_workers=1, progress=False)")]:
        assert old in code, old  # the block still says what this test replaces
        code = code.replace(old, new)
    names: dict = {}
    exec(compile(code, str(page), "exec"), names)  # noqa: S102 - the documented block itself
    assert list(names["here"].tracks["path"]) == songs
    assert "top3" in capsys.readouterr().out  # the printed table
    calm = names["calm"]
    assert len(calm) == 4 and calm["calmness"].is_monotonic_decreasing
    assert names["stored"].failures == [] and (tmp_path / "p.zarr").exists()
