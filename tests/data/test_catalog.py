"""Catalog: Emotify adapter, label rules, manifests, folders, errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from emodist.data.catalog import audio_source, load_audio, load_dataset, paths_exist
from emodist.data.labels import GEMS, dominant_emotion, drop_small_classes, listener_distribution
from emodist.errors import DataError

LISTENER_100 = {"calmness": 36, "joyful_activation": 18, "tension": 14, "nostalgia": 11,
                "power": 8, "sadness": 5, "tenderness": 5, "solemnity": 3}
MEAN_100 = {"calmness": 31, "joyful_activation": 21, "nostalgia": 17, "tension": 9,
            "power": 8, "tenderness": 6, "solemnity": 4, "sadness": 4}


def test_listener_distribution_weighs_every_listener_the_same():
    r = np.zeros((3, 9))
    r[0, [0, 1, 2]] = 1  # ticked three: each gets 1/3
    r[1, 4] = 1  # ticked one
    # r[2] ticked nothing: ignored
    d = listener_distribution(r)
    assert d.sum() == pytest.approx(1.0)
    assert d[4] == pytest.approx(0.5)
    assert d[0] == pytest.approx(1 / 6)


def test_listener_distribution_all_empty_is_zero():
    assert listener_distribution(np.zeros((2, 9))).sum() == 0


def test_dominant_emotion_rules_and_ties():
    v = np.zeros((3, 9))
    m = np.zeros((3, 9))
    v[0, [2, 5]] = 0.5  # tie in listener: plain mean decides
    m[0, 2], m[0, 5] = 0.3, 0.6
    v[1, [3, 6]] = 0.5  # tie in both: GEMS order decides
    m[1, [3, 6]] = 0.4
    v[2, 7], m[2, 8] = 1.0, 0.9  # rules disagree
    m[2, 7] = 0.5
    assert list(dominant_emotion(v, m, "listener")) == ["power", "nostalgia", "tension"]
    assert dominant_emotion(v, m, "mean")[2] == "sadness"
    with pytest.raises(DataError):
        dominant_emotion(v, m, "median")


def test_drop_small_classes_by_count_and_share():
    labels = pd.Series(["a"] * 50 + ["b"] * 3 + ["c"])
    assert drop_small_classes(labels, min_tracks=4) == {"b": 3, "c": 1}
    assert drop_small_classes(labels, min_share=0.05) == {"c": 1}


def test_emotify_default_rule(emotify_root):
    cat = load_dataset(str(emotify_root))
    assert int(cat.tracks["has_audio"].sum()) == 100
    assert len(cat.missing_audio) == 300
    assert cat.class_counts().to_dict() == LISTENER_100
    assert "amazement" in cat.dropped_classes
    assert cat.label_rule == "listener"
    # both vote profiles are kept per track, not only the argmax
    assert cat.votes.shape == (400, 9) and cat.votes_mean.shape == (400, 9)
    assert np.allclose(cat.votes.sum(axis=1), 1.0)
    assert cat.votes_mean.to_numpy().max() <= 1.0
    assert set(cat.usable()["genre"]) == {"classical", "rock", "electronic", "pop"}


def test_emotify_mean_rule(emotify_root):
    cat = load_dataset(str(emotify_root), label_rule="mean")
    assert cat.class_counts().to_dict() == MEAN_100


def test_full_annotations_drop_amazement_and_match_study(emotify_root):
    # All 400 annotated tracks, audio presence not checked: the study's classes.
    cat = load_dataset(str(emotify_root), check_audio=False)
    counts = cat.class_counts().to_dict()
    assert cat.dropped_classes == {"amazement": 4}
    # tracks per class; x4 segments these are the study's class sizes
    assert counts == {"calmness": 113, "joyful_activation": 91, "tension": 61, "nostalgia": 45,
                      "power": 30, "sadness": 22, "tenderness": 18, "solemnity": 16}


def _write_emotify(tmp_path, text):
    (tmp_path / "emotifymusic").mkdir()
    (tmp_path / "data.csv").write_text(text)
    return tmp_path


def test_malformed_csv_missing_column(tmp_path):
    root = _write_emotify(tmp_path, "track id, genre, amazement\n1, classical, 0\n")
    with pytest.raises(DataError, match="missing column 'solemnity'"):
        load_dataset(str(root))


def test_malformed_csv_non_numeric_vote_names_column_and_line(tmp_path):
    header = "track id, genre, " + ", ".join(GEMS)
    rows = ["1, classical, " + ", ".join(["0"] * 9), "1, classical, 0, x" + ", 0" * 7]
    root = _write_emotify(tmp_path, header + "\n" + "\n".join(rows) + "\n")
    with pytest.raises(DataError, match=r"column 'solemnity', line 3"):
        load_dataset(str(root))


def test_manifest_with_groups_and_extras(tmp_path, demo_dataset):
    mp3 = sorted((demo_dataset / "emotifymusic" / "classical").glob("*.mp3"))
    lines = ["path,label,group,tempo_note"]
    lines += [f"{p},happy,g{i // 2},x{i}" for i, p in enumerate(mp3)]
    lines.append("missing.mp3,sad,,y")
    manifest = tmp_path / "m.csv"
    manifest.write_text("\n".join(lines) + "\n")
    cat = load_dataset(str(manifest))
    assert cat.missing_audio == ["missing.mp3"]
    usable = cat.usable()
    assert len(usable) == len(mp3)
    assert list(usable["group"][:2]) == ["g0", "g0"]
    assert "tempo_note" in usable.columns
    # the mask marks the same rows: every track but the one without audio, the last line
    assert cat.usable_mask().tolist() == [True] * len(mp3) + [False]
    # group defaults to the file
    assert cat.tracks.loc[cat.tracks["track_id"] == "missing.mp3", "group"].item() == "missing.mp3"


def test_manifest_missing_label_column(tmp_path):
    m = tmp_path / "m.csv"
    m.write_text("path\na.mp3\n")
    with pytest.raises(DataError, match="missing column 'label'"):
        load_dataset(str(m))


def test_folder_per_label(tmp_path, demo_dataset):
    import shutil

    src = sorted((demo_dataset / "emotifymusic" / "rock").glob("*.mp3"))
    for i, p in enumerate(src):
        d = tmp_path / ("fast" if i % 2 else "slow")
        d.mkdir(exist_ok=True)
        shutil.copy(p, d / p.name)
    cat = load_dataset(str(tmp_path))
    assert set(cat.class_counts().index) == {"fast", "slow"}
    assert cat.class_counts().sum() == len(src)


def test_missing_dataset_is_one_line_error(tmp_path):
    with pytest.raises(DataError, match="no such dataset"):
        load_dataset(str(tmp_path / "nope"))


def test_paths_exist_lists_each_folder_once_locally(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/x.wav", "a/y.wav", "a/b/z.wav"):
        (tmp_path / name).write_bytes(b"")
    paths = [str(tmp_path / p) for p in ("a/x.wav", "a/b/../y.wav", "a/b/z.wav", "a/b/gone.wav",
                                         "nowhere/q.wav", "a/x.wav/under-a-file.wav")]
    assert paths_exist(paths) == [True, True, True, False, False, False]


@pytest.mark.s3
def test_manifest_on_s3_lists_each_prefix_once_instead_of_a_lookup_per_file(tmp_path,
                                                                          monkeypatch):
    """A remote manifest's audio check costs one listing per folder, same answer as lookups."""
    import s3fs

    from tests.servers import make_bucket, moto_server, upload_tree

    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
        for i in range(6):
            (tmp_path / folder / f"{i}.wav").write_bytes(b"RIFF")
    lines = ["path,label"] + [f"{f}/{i}.wav,{'calmness' if i % 2 else 'power'}"
                              for f in ("one", "two") for i in range(6)]
    lines += ["one/missing.wav,power", "three/9.wav,calmness"]
    (tmp_path / "manifest.csv").write_text("\n".join(lines) + "\n")
    calls = {"_ls": 0, "_exists": 0, "_info": 0}
    for name in calls:
        real = getattr(s3fs.S3FileSystem, name)

        async def counted(self, *a, _real=real, _name=name, **k):
            calls[_name] += 1
            return await _real(self, *a, **k)
        monkeypatch.setattr(s3fs.S3FileSystem, name, counted)
    with moto_server() as (endpoint, options):
        make_bucket(endpoint, "audio")
        upload_tree(options, tmp_path, "s3://audio/set")
        for name in calls:
            calls[name] = 0
        cat = load_dataset("s3://audio/set/manifest.csv", storage_options=options)
    assert sorted(cat.missing_audio) == ["one/missing.wav", "three/9.wav"]
    assert len(cat.usable()) == 12
    # 14 paths in three folders: three listings, no lookup per file (the manifest
    # itself is opened with an info call or two)
    assert calls["_ls"] == 3 and calls["_exists"] == 0 and calls["_info"] <= 2, calls


def test_load_audio_reads_several_files_each_once_named_by_its_file(tmp_path):
    for name in ("a.mp3", "b.wav", "sub/a.mp3"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    a, b, a2 = (str(tmp_path / n) for n in ("a.mp3", "b.wav", "sub/a.mp3"))
    cat = load_audio([a, b, a])
    assert list(cat.tracks["track_id"]) == ["a.mp3", "b.wav"]
    assert list(cat.tracks["path"]) == [a, b] and not cat.labelled
    assert list(load_audio([a, a2]).tracks["track_id"]) == [a, a2]  # one name, two files
    one = load_audio([a]).tracks
    assert one.equals(load_audio(a).tracks)
    assert audio_source([a, b, a]) == f"{a} and 1 more file" and audio_source([a]) == a
    assert audio_source([a, b, a2]) == f"{a} and 2 more files"
    with pytest.raises(DataError, match="no such file"):
        load_audio([a, str(tmp_path / "gone.mp3")])
    with pytest.raises(DataError, match="not an audio file"):
        load_audio([a, str(tmp_path / "sub")])
    with pytest.raises(DataError, match="no audio given"):
        load_audio([])


@pytest.mark.s3
def test_load_audio_reads_several_remote_files_and_names_a_missing_one(tmp_path):
    from tests.servers import make_bucket, moto_server, upload_tree

    for name in ("x.mp3", "y.wav"):
        (tmp_path / name).write_bytes(b"x")
    with moto_server() as (endpoint, options):
        make_bucket(endpoint, "audio")
        upload_tree(options, tmp_path, "s3://audio/new")
        urls = ["s3://audio/new/x.mp3", "s3://audio/new/y.wav"]
        cat = load_audio(urls, storage_options=options)
        assert list(cat.tracks["track_id"]) == ["x.mp3", "y.wav"]
        assert list(cat.tracks["path"]) == urls and cat.tracks["has_audio"].all()
        with pytest.raises(DataError, match="^s3://audio/new/z.mp3: no such file$"):
            load_audio([*urls, "s3://audio/new/z.mp3"], storage_options=options)
