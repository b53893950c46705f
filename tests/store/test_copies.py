"""The same audio under several names is one track, or one cross-validation group.

A manifest that lists one file as ``x.mp3``, ``./x.mp3`` and its absolute
path gives one track; two byte-identical files under different names are
reported by ``emodist catalog`` and extracted into one group.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from emodist.cli import main
from emodist.data.catalog import load_dataset
from emodist.engine.extract import run_extract
from emodist.errors import DataError
from emodist.features import make_groups
from emodist.spec import ExtractionSpec, Runtime
from emodist.store import open_store


@pytest.fixture(scope="module")
def audio(tmp_path_factory) -> Path:
    """A folder of 8 generated mp3 files, ``a0.mp3`` ... ``a7.mp3``."""
    from emodist.data.demo import make_demo_dataset

    root = tmp_path_factory.mktemp("copies")
    make_demo_dataset(root / "demo", n_tracks=8, seed=4, duration_s=8.0)
    out = root / "audio"
    out.mkdir()
    for i, f in enumerate(sorted((root / "demo").rglob("*.mp3"))):
        shutil.copy(f, out / f"a{i}.mp3")
    return out


def manifest(folder: Path, rows: list[tuple[str, str]]) -> Path:
    path = folder / "manifest.csv"
    path.write_text("path,label\n" + "".join(f"{p},{lab}\n" for p, lab in rows))
    return path


def test_three_spellings_of_one_file_are_one_track(audio, caplog):
    rows = [("a0.mp3", "calm"), ("./a0.mp3", "calm"), (str(audio / "a0.mp3"), "calm"),
            ("sub/../a1.mp3", "tense")]
    with caplog.at_level("WARNING", logger="emodist"):
        cat = load_dataset(str(manifest(audio, rows)), min_class_share=0.0)
    assert cat.tracks["track_id"].tolist() == ["a0.mp3", "a1.mp3"]
    assert cat.tracks["path"].tolist() == [str(audio / "a0.mp3"), str(audio / "a1.mp3")]
    assert cat.tracks["has_audio"].all()
    assert any("lines 2, 3, 4 name the same file" in r.getMessage() for r in caplog.records)


def test_spellings_with_conflicting_labels_are_refused(audio, capsys):
    path = manifest(audio, [("a0.mp3", "calm"), ("./a0.mp3", "tense")])
    with pytest.raises(DataError, match="duplicate track 'a0.mp3': lines 2, 3 name the same "
                                        r"file .*a0.mp3 with different labels \(calm, tense\)"):
        load_dataset(str(path), min_class_share=0.0)
    assert main(["catalog", str(path)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_byte_identical_files_are_reported_and_share_a_group(audio, tmp_path, capsys):
    folder = tmp_path / "data"
    shutil.copytree(audio, folder)
    shutil.copy(folder / "a2.mp3", folder / "copy-of-a2.mp3")
    labels = ["calm", "tense"] * 4
    rows = [(f"a{i}.mp3", labels[i]) for i in range(8)] + [("copy-of-a2.mp3", "tense")]
    path = manifest(folder, rows)
    assert main(["catalog", str(path), "--min-class-share", "0"]) == 0
    out = capsys.readouterr().out
    assert "same audio (byte-identical files), one cross-validation group: a2.mp3, " \
           "copy-of-a2.mp3" in out
    store = tmp_path / "s.zarr"
    spec = ExtractionSpec(groups=make_groups(["handcrafted"]), segment_seconds=4.0,
                          min_class_share=0.0)
    run_extract(str(path), str(store), spec,
                Runtime(progress=False, chunk=2, n_workers=1, threads_per_worker=1))
    ds = open_store(str(store))
    groups = dict(zip(ds["track_id"].values, ds["group"].values))
    assert groups["copy-of-a2.mp3"] == groups["a2.mp3"] == "a2.mp3"
    assert len(set(groups.values())) == 8  # 9 tracks, 8 recordings


def test_evaluate_puts_copies_of_an_older_store_in_one_group(audio, tmp_path, capsys):
    """A store whose copies lie in different groups (made before copies were grouped)."""
    import zarr

    from emodist.store.copies import regroup_copies

    folder = tmp_path / "data"
    shutil.copytree(audio, folder)
    shutil.copy(folder / "a3.mp3", folder / "again.mp3")
    labels = ["calm", "tense"] * 4
    path = manifest(folder, [(f"a{i}.mp3", labels[i]) for i in range(8)]
                    + [("again.mp3", "tense")])
    store = tmp_path / "s.zarr"
    spec = ExtractionSpec(groups=make_groups(["handcrafted"]), segment_seconds=4.0,
                          min_class_share=0.0)
    run_extract(str(path), str(store), spec,
                Runtime(progress=False, chunk=2, n_workers=1, threads_per_worker=1))
    g = zarr.open_group(str(store), mode="r+")
    tracks = open_store(str(store))["track_id"].values
    groups = g["group"][...]
    groups[tracks == "again.mp3"] = "again.mp3"  # as a store of an older emodist has it
    g["group"][...] = groups
    ds = open_store(str(store))
    assert set(ds["group"].values[ds["track_id"].values == "again.mp3"]) == {"again.mp3"}
    merged, copies = regroup_copies(ds)
    assert copies == [["a3.mp3", "again.mp3"]]
    again = merged["track_id"].values == "again.mp3"
    assert set(merged["group"].values[again]) == {"a3.mp3"}
    assert (merged["group"].values[~again] == ds["group"].values[~again]).all()
    capsys.readouterr()
    assert main(["evaluate", str(store), "--features", "handcrafted", "--classifiers",
                 "linear-svm", "--folds", "2", "--workers", "1", "--quiet", "--ceiling",
                 "none"]) == 0
    err = capsys.readouterr().err
    assert "tracks a3.mp3, again.mp3 are the same audio (byte-identical files) in different " \
           "groups; they are evaluated as one group" in err, err
