"""``emodist extract --unlabelled``: features of music without labels, as a labelled run makes them."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pandas as pd
import pytest

from emodist.cli import main
from emodist.data.demo import make_demo_dataset
from emodist.store import open_store

COMMON = ["--features", "handcrafted", "--segment-seconds", "4", "--workers", "1", "--quiet"]


@pytest.fixture(scope="module")
def music(tmp_path_factory):
    """A flat folder of five tracks, and a manifest labelling the same files."""
    root = tmp_path_factory.mktemp("unlabelled")
    make_demo_dataset(root / "demo", n_tracks=5, seed=11, duration_s=9.0)
    flat = root / "music"
    flat.mkdir()
    songs = sorted((root / "demo" / "emotifymusic").rglob("*.mp3"))
    for n, song in enumerate(songs):
        shutil.copyfile(song, flat / f"song{n}.mp3")
    manifest = root / "music" / "labels.csv"
    pd.DataFrame({"path": [f"song{n}.mp3" for n in range(len(songs))],
                  "label": ["calmness", "tension"] * 2 + ["calmness"]}).to_csv(manifest,
                                                                              index=False)
    return root, flat, manifest


def test_a_folder_without_labels_gets_the_features_a_labelled_run_gets(music, capsys):
    root, flat, manifest = music
    plain, labelled = str(root / "plain.zarr"), str(root / "labelled.zarr")
    assert main(["extract", str(flat), "--store", plain, "--unlabelled", *COMMON]) == 0
    assert main(["extract", str(manifest), "--store", labelled, *COMMON]) == 0
    a, b = open_store(plain), open_store(labelled)
    ids_a, ids_b = (np.asarray(ds["segment"].values).astype(str) for ds in (a, b))
    assert sorted(ids_a) == sorted(ids_b) and len(ids_a) == 10  # 5 tracks x 2 segments of 4 s
    order_a, order_b = np.argsort(ids_a), np.argsort(ids_b)
    assert np.array_equal(a["handcrafted"].values[order_a], b["handcrafted"].values[order_b])
    assert set(np.asarray(a["label"].values).astype(str)) == {""}  # no labels invented
    capsys.readouterr()
    assert main(["evaluate", plain]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "labelled" in err[0], err
    assert main(["similar", plain, "--audio", str(flat / "song3.mp3"), "-k", "2",
                 "--format", "csv"]) == 0
    found = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert found["track_id"][0] == "song3.mp3" and found["distance"][0] < 1e-6


def test_without_the_flag_a_folder_or_manifest_of_music_says_how(music, tmp_path, capsys):
    _, flat, _ = music
    only_paths = tmp_path / "paths.csv"
    only_paths.write_text("path\n" + "\n".join(str(f) for f in sorted(flat.glob("*.mp3"))))
    for data in (flat, only_paths):
        capsys.readouterr()
        assert main(["extract", str(data), "--store", str(tmp_path / "s.zarr"), *COMMON]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--unlabelled" in err[0], err
    assert not (tmp_path / "s.zarr").exists()


def test_run_refuses_it_in_one_line(music, tmp_path, capsys):
    _, flat, _ = music
    capsys.readouterr()
    assert main(["run", str(flat), "--store", str(tmp_path / "s.zarr"), "--unlabelled"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("emodist: error: --unlabelled:"), err
    assert not (tmp_path / "s.zarr").exists()


def test_several_files_are_read_as_the_folder_reads_them(music, capsys):
    """``extract a.mp3 b.mp3 --unlabelled``: each file a track named by its file name, with the
    folder's values; several DATASET without the flag are refused in one line."""
    root, flat, _ = music
    songs = [str(flat / f"song{n}.mp3") for n in (1, 3)]
    store = str(root / "two.zarr")
    assert main(["extract", *songs, "--store", store, "--unlabelled", *COMMON]) == 0
    two, folder = open_store(store), open_store(str(root / "plain.zarr"))
    ids = np.asarray(two["segment"].values).astype(str)
    assert sorted(set(np.asarray(two["track_id"].values).astype(str))) == ["song1.mp3",
                                                                            "song3.mp3"]
    where = {s: i for i, s in enumerate(np.asarray(folder["segment"].values).astype(str))}
    rows = [where[s] for s in ids]
    assert np.array_equal(two["handcrafted"].values, folder["handcrafted"].values[rows])
    capsys.readouterr()
    assert main(["extract", *songs, "--store", str(root / "no.zarr"), *COMMON]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--unlabelled" in err[0], err
    assert not (root / "no.zarr").exists()
