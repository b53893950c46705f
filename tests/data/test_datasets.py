"""Public dataset layouts (MTG-Jamendo, DEAM, PMEmo) read as published.

Every file is generated in the published format by :mod:`tests.data.layouts`
(the comment above each writer names the real file it follows).  Audio is
short generated sine tones (or the demo synthesiser's music for the
extraction run).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from emodist.cli import main
from emodist.data.catalog import load_dataset
from emodist.data.datasets import (
    detect_layout,
    load_deam,
    load_dynamic_annotations,
    load_mtg_jamendo,
    load_pmemo,
)
from emodist.errors import DataError
from tests.data.layouts import (
    DEAM_AROUSAL,
    DEAM_STATIC,
    DEAM_STATIC_2015,
    DEAM_TIMES_MS,
    DEAM_VALENCE,
    MTG_ROWS,
    PMEMO_DYNAMIC,
    PMEMO_STATIC,
    SR,
    tone,
    write_deam,
    write_mtg,
    write_pmemo,
)

# ---------------------------------------------------------------- MTG-Jamendo


@pytest.fixture
def mtg(tmp_path) -> Path:
    """MTG layout: 102 without audio, 204 as the low-quality download, one stray file."""
    root = tmp_path / "mtg"
    write_mtg(root)
    for r in MTG_ROWS:
        if r[0] == "track_0000102":
            continue
        rel = r[3].replace(".mp3", ".low.mp3") if r[0] == "track_0000204" else r[3]
        tone(root / "audio" / rel)
    tone(root / "audio" / "07" / "999.mp3")
    return root


def test_mtg_jamendo_tags_groups_splits_and_disagreements(mtg):
    assert detect_layout(str(mtg)) == "mtg-jamendo"
    cat = load_dataset(str(mtg))
    t = cat.tracks.set_index("track_id")
    assert cat.description.startswith("mtg-jamendo:")
    assert not cat.labelled and (t["label"] == "").all()
    assert t.loc["track_0000101", "tags"] == "happy;film"
    assert t.loc["track_0000204", "tags"] == "happy;dark"
    assert t.loc["track_0000203", "group"] == "artist_000002"
    assert t.loc["track_0000204", "album"] == "album_000003"
    assert t.loc["track_0000101", "duration_s"] == pytest.approx(212.7)
    assert t.loc["track_0000204", "path"] == str(mtg / "audio" / "04" / "204.low.mp3")
    assert t.loc["track_0000305", "path"] == str(mtg / "audio" / "05" / "305.mp3")
    # the published splits: split 0 in `split`, every split read
    assert t["split"].to_dict() == t["split_0"].to_dict()
    assert list(t["split_0"]) == ["train"] * 4 + ["validation"] * 2
    assert list(t["split_1"]) == ["validation"] * 2 + ["test"] * 2 + ["train"] * 2
    assert "split_2" not in t
    # annotations and audio disagree: one id without audio, one file without id
    assert cat.missing_audio == ["track_0000102"]
    assert cat.unannotated_audio == ["07/999.mp3"]
    assert list(cat.usable()["track_id"]) == [r[0] for r in MTG_ROWS if r[0] != "track_0000102"]


def test_mtg_jamendo_split_choice_and_tag_threshold(mtg):
    cat = load_mtg_jamendo(str(mtg), split=1, min_tag_tracks=2)
    t = cat.tracks.set_index("track_id")
    assert list(t["split"]) == list(t["split_1"])
    # with audio: happy 2 (101, 204), film 3, sad 2, dark 1 -> dark dropped
    assert cat.dropped_classes == {"dark": 1}
    assert t.loc["track_0000204", "tags"] == "happy"
    with pytest.raises(DataError) as err:
        load_mtg_jamendo(str(mtg), split=5)
    assert err.value.param == "split"


def test_mtg_jamendo_without_audio_check_and_audio_root(mtg, tmp_path):
    cat = load_mtg_jamendo(str(mtg), check_audio=False)
    assert cat.tracks["has_audio"].all() and cat.unannotated_audio == []
    other = tmp_path / "elsewhere"
    tone(other / "01" / "101.mp3")
    cat = load_mtg_jamendo(str(mtg / "data"), audio_root=str(other))
    assert list(cat.usable()["track_id"]) == ["track_0000101"]
    assert len(cat.missing_audio) == 5


def test_mtg_jamendo_bad_files_one_line(tmp_path):
    root = tmp_path / "bad"
    write_mtg(root)
    tsv = root / "data" / "autotagging_moodtheme.tsv"
    tsv.write_text(tsv.read_text().replace("212.7", "long"))
    with pytest.raises(DataError, match=r"DURATION', line 2: not a number: 'long'"):
        load_dataset(str(root))
    tsv.write_text("TRACK\tARTIST\n")
    with pytest.raises(DataError, match="expected the columns TRACK_ID"):
        load_dataset(str(root))


# ---------------------------------------------------------------- DEAM


def test_deam_static_targets_groups_and_disagreements(tmp_path):
    root = tmp_path / "deam"
    write_deam(root)
    assert detect_layout(str(root)) == "deam"
    cat = load_dataset(str(root))
    t = cat.tracks.set_index("track_id")
    assert cat.description.startswith("deam:") and not cat.labelled
    assert list(t.index) == ["2", "3", "5", "2001"]
    for i, (v, vs, a, as_) in {**DEAM_STATIC, **DEAM_STATIC_2015}.items():
        row = t.loc[str(i)]
        assert (row["valence"], row["valence_std"], row["arousal"], row["arousal_std"]) == \
            pytest.approx((v, vs, a, as_))
        assert row["group"] == str(i)
    assert t.loc["3", "path"] == str(root / "DEAM_audio" / "MEMD_audio" / "3.mp3")
    assert cat.missing_audio == ["5"]
    assert cat.unannotated_audio == ["7.mp3"]
    assert list(cat.usable()["track_id"]) == ["2", "3", "2001"]


def test_deam_flat_layout_and_dynamic_table(tmp_path):
    nested = tmp_path / "nested"
    write_deam(nested, audio_ids=(), stray=())
    flat = tmp_path / "flat"
    flat.mkdir()
    for f in nested.rglob("*.csv"):
        (flat / f.name).write_bytes(f.read_bytes())
    (flat / "MEMD_audio").mkdir()
    cat = load_deam(str(flat))
    assert list(cat.tracks["track_id"]) == ["2", "3", "5", "2001"]
    assert cat.tracks["path"].iloc[0] == str(flat / "MEMD_audio" / "2.mp3")
    assert len(cat.missing_audio) == 4
    for root in (nested, flat):
        dyn = load_dynamic_annotations(str(root))
        assert list(dyn.columns) == ["track_id", "time_s", "valence", "arousal"]
        want = [(str(i), ms / 1000, v, a)
                for i in DEAM_VALENCE
                for ms, v, a in zip(DEAM_TIMES_MS, DEAM_VALENCE[i], DEAM_AROUSAL[i])
                if v is not None]
        got = list(dyn.itertuples(index=False, name=None))
        assert [g[:2] for g in got] == [w[:2] for w in want]
        np.testing.assert_allclose([g[2:] for g in got], [w[2:] for w in want])


def test_deam_bad_value_one_line(tmp_path):
    root = tmp_path / "deam"
    write_deam(root, audio_ids=(), stray=())
    f = next(root.rglob("static_annotations_averaged_songs_1_2000.csv"))
    f.write_text(f.read_text().replace("3.5,", "high,"))
    with pytest.raises(DataError, match=r"column 'valence_mean', line 3: not a number"):
        load_dataset(str(root))
    g = next(root.rglob("arousal.csv"))
    g.write_text(g.read_text().replace("-0.2", "x"))
    with pytest.raises(DataError, match=r"arousal.csv: column 'sample_15500ms', line 3"):
        load_dynamic_annotations(str(root))


# ---------------------------------------------------------------- PMEmo


def test_pmemo_targets_artists_and_disagreements(tmp_path):
    write_pmemo(tmp_path / "pmemo")
    for root in (tmp_path / "pmemo", tmp_path / "pmemo" / "PMEmo2019"):
        assert detect_layout(str(root)) == "pmemo"
        cat = load_dataset(str(root))
        t = cat.tracks.set_index("track_id")
        assert cat.description.startswith("pmemo:") and not cat.labelled
        for i, (a, v) in PMEMO_STATIC.items():
            assert (t.loc[str(i), "arousal"], t.loc[str(i), "valence"]) == pytest.approx((a, v))
        assert list(t["group"]) == ["Artist A", "Artist B", "Artist A", "6"]
        assert t.loc["4", "title"] == "Song 4, live"
        assert cat.missing_audio == ["5"]
        assert cat.unannotated_audio == ["9.mp3"]
    dyn = load_dynamic_annotations(str(tmp_path / "pmemo"))
    assert [tuple(r) for r in dyn.itertuples(index=False, name=None)] == \
        [(str(i), t, v, a) for i, t, a, v in PMEMO_DYNAMIC]


def test_pmemo_without_metadata_each_song_its_group(tmp_path):
    write_pmemo(tmp_path / "p", stray=())
    (tmp_path / "p" / "PMEmo2019" / "metadata.csv").unlink()
    cat = load_pmemo(str(tmp_path / "p"))
    assert list(cat.tracks["group"]) == list(cat.tracks["track_id"])
    assert cat.unannotated_audio == []


def test_dynamic_annotations_need_deam_or_pmemo(tmp_path):
    with pytest.raises(DataError, match="no dynamic annotations"):
        load_dynamic_annotations(str(tmp_path))


def test_other_folders_are_not_public_layouts(tmp_path):
    tone(tmp_path / "calm" / "a.mp3")
    assert detect_layout(str(tmp_path)) is None
    assert load_dataset(str(tmp_path), min_class_share=0).labelled


@pytest.mark.s3
def test_layouts_on_s3_read_as_locally(tmp_path, mtg):
    """Remote roots: the same catalogs, with s3:// audio paths."""
    from tests.servers import make_bucket, moto_server, upload_tree

    write_pmemo(tmp_path / "pmemo")
    with moto_server() as (endpoint, options):
        make_bucket(endpoint, "sets")
        upload_tree(options, mtg, "s3://sets/mtg")
        upload_tree(options, tmp_path / "pmemo", "s3://sets/pmemo")
        remote = {name: load_dataset(f"s3://sets/{name}", storage_options=options)
                  for name in ("mtg", "pmemo")}
        dyn = load_dynamic_annotations("s3://sets/pmemo", storage_options=options)
    local = {"mtg": load_dataset(str(mtg)), "pmemo": load_dataset(str(tmp_path / "pmemo"))}
    for name, cat in remote.items():
        assert cat.missing_audio == local[name].missing_audio
        assert cat.unannotated_audio == local[name].unannotated_audio
        assert list(cat.tracks["group"]) == list(local[name].tracks["group"])
    assert remote["mtg"].tracks["path"].iloc[3] == "s3://sets/mtg/audio/04/204.low.mp3"
    assert remote["pmemo"].tracks["path"].iloc[0] == "s3://sets/pmemo/PMEmo2019/chorus/1.mp3"
    assert list(remote["mtg"].tracks["split_1"]) == list(local["mtg"].tracks["split_1"])
    assert len(dyn) == len(PMEMO_DYNAMIC)


# ---------------------------------------------------------------- CLI


def test_catalog_command_reports_each_layout(tmp_path, mtg, capsys):
    write_deam(tmp_path / "deam")
    write_pmemo(tmp_path / "pmemo")
    assert main(["catalog", str(mtg), "--min-class-tracks", "2"]) == 0
    out = capsys.readouterr().out
    assert "tracks: 6 in the annotations, 5 with audio, 1 without, 5 usable" in out
    assert "without audio (skipped): track_0000102" in out
    assert "audio without annotations (ignored): 1: 07/999.mp3" in out
    assert "dropped tags: dark (1 tracks)" in out
    assert "  film                      3" in out
    assert "tracks per class" not in out

    assert main(["catalog", str(tmp_path / "deam")]) == 0
    out = capsys.readouterr().out
    assert "tracks: 4 in the annotations, 3 with audio, 1 without, 3 usable" in out
    assert "without audio (skipped): 5" in out
    assert "audio without annotations (ignored): 1: 7.mp3" in out
    assert "valence: 3 tracks, 3.1 to 4.6" in out
    assert main(["plan", str(tmp_path / "deam"), "--segment-seconds", "0.25"]) == 0
    out = capsys.readouterr().out
    assert "segments: 6 from 3 tracks" in out and "per class" not in out

    assert main(["catalog", str(tmp_path / "pmemo")]) == 0
    out = capsys.readouterr().out
    assert "tracks: 4 in the annotations, 3 with audio, 1 without, 3 usable" in out
    assert "audio without annotations (ignored): 1: 9.mp3" in out
    assert "arousal: 3 tracks, 0.26 to 0.5" in out


# ---------------------------------------------------------------- extraction


@pytest.mark.cluster
def test_deam_layout_extracts_end_to_end(tmp_path):
    """An unlabelled layout runs through planning, decoding, features and the store."""
    from distributed import Client, LocalCluster

    from emodist.data.demo import STYLES, synthesize
    from emodist.engine.extract import run_extract
    from emodist.features import make_groups
    from emodist.spec import ExtractionSpec, Runtime
    from emodist.store import layout, open_store

    root = tmp_path / "deam"
    write_deam(root, audio_ids=(), stray=())
    rng = np.random.default_rng(0)
    seconds = {"2": 4.5, "3": 6.2, "2001": 4.1}
    (root / "DEAM_audio" / "MEMD_audio").mkdir(parents=True)
    for sid, (style, s) in zip(seconds, zip(("calmness", "tension", "power"), seconds.values())):
        path = root / "DEAM_audio" / "MEMD_audio" / f"{sid}.mp3"
        sf.write(path, synthesize(STYLES[style], s, SR, rng), SR, format="MP3")
    spec = ExtractionSpec(groups=make_groups(["handcrafted"]), segment_seconds=2.0)
    url = str(tmp_path / "deam.zarr")
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        result = run_extract(str(root), url, spec,
                             Runtime(client=client, progress=False, batch_size=4, chunk=2))
    # whole 2 s windows: 2 + 3 + 2 (song 5 has no audio)
    assert result.n_failed == 0 and result.n_segments == 7 and result.n_done == 7
    ds = open_store(url)
    assert list(ds["track_id"].values) == ["2"] * 2 + ["3"] * 3 + ["2001"] * 2
    assert (ds["handcrafted_status"].values == layout.STATUS_DONE).all()
    assert np.isfinite(ds["handcrafted"].values).all()
    # the annotations join the store by track id
    cat = load_deam(str(root))
    targets = cat.tracks.set_index("track_id")["valence"]
    joined = pd.Series(ds["track_id"].values).map(targets)
    assert joined.notna().all() and joined.iloc[0] == pytest.approx(DEAM_STATIC[2][0])
