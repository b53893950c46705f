"""Public dataset layouts (MTG-Jamendo, DEAM, PMEmo) written as published, for tests.

The comment above each writer names the real file it follows; audio is short
generated sine tones (:func:`tone`).  Shared by the tests of the layouts
(``tests/data``) and of the evaluation of their targets (``tests/learn``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

SR = 22050


def tone(path: Path, seconds: float = 0.5, hz: float = 440.0) -> None:
    """A sine tone as MP3 at ``path`` (folders made)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(round(seconds * SR)) / SR
    sf.write(path, 0.3 * np.sin(2 * np.pi * hz * t).astype(np.float32), SR, format="MP3")


# Rows of MTG-Jamendo's data/autotagging_moodtheme.tsv (MTG/mtg-jamendo-dataset):
# TRACK_ID, ARTIST_ID, ALBUM_ID, PATH, DURATION, then one tab-separated
# "mood/theme---<tag>" field per tag; CRLF line ends, as published.
MTG_ROWS = [
    ("track_0000101", "artist_000001", "album_000001", "01/101.mp3", "212.7", ["happy", "film"]),
    ("track_0000102", "artist_000001", "album_000001", "02/102.mp3", "190.0", ["happy"]),
    ("track_0000203", "artist_000002", "album_000002", "03/203.mp3", "248.0", ["sad", "film"]),
    ("track_0000204", "artist_000002", "album_000003", "04/204.mp3", "199.7", ["happy", "dark"]),
    ("track_0000305", "artist_000003", "album_000004", "05/305.mp3", "120.5", ["film"]),
    ("track_0000306", "artist_000003", "album_000004", "06/306.mp3", "130.0", ["sad"]),
]
# splits/split-<k>/autotagging_moodtheme-<part>.tsv hold the same columns for
# the tracks of that part (artists never shared between parts).
MTG_SPLITS = {
    0: {"train": ["artist_000001", "artist_000002"], "validation": ["artist_000003"], "test": []},
    1: {"train": ["artist_000003"], "validation": ["artist_000001"], "test": ["artist_000002"]},
}


def write_mtg(root: Path, rows=MTG_ROWS, splits=MTG_SPLITS) -> None:
    """MTG-Jamendo's mood/theme files: ``rows`` as above, ``splits``: k -> part -> artists."""
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)

    def tsv(path, subset):
        lines = ["TRACK_ID\tARTIST_ID\tALBUM_ID\tPATH\tDURATION\tTAGS"]
        lines += ["\t".join([*r[:5], *(f"mood/theme---{t}" for t in r[5])]) for r in subset]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(("\r\n".join(lines) + "\r\n").encode())

    tsv(data / "autotagging_moodtheme.tsv", rows)
    for k, parts in splits.items():
        for part, artists in parts.items():
            tsv(data / "splits" / f"split-{k}" / f"autotagging_moodtheme-{part}.tsv",
                [r for r in rows if r[1] in artists])


# DEAM_Annotations/annotations/annotations averaged per song/song_level/
# static_annotations_averaged_songs_1_2000.csv: "song_id, valence_mean,
# valence_std, arousal_mean, arousal_std" (a space after each comma, headers
# included); ..._2000_2058.csv has more columns (max/min statistics).
DEAM_STATIC = {2: (3.1, 0.94, 3.0, 0.63), 3: (3.5, 1.75, 3.3, 1.62), 5: (5.7, 1.42, 5.5, 1.63)}
DEAM_STATIC_2015 = {2001: (4.6, 1.3, 5.2, 1.1)}
# dynamic (per second annotations)/valence.csv and arousal.csv: "song_id,
# sample_15000ms, sample_15500ms, ..." one row per song, empty cells past a
# shorter song's end.
DEAM_TIMES_MS = (15000, 15500, 16000)
DEAM_VALENCE = {2: (-0.1, -0.12, None), 3: (0.2, 0.25, 0.3), 5: (0.05, None, None)}
DEAM_AROUSAL = {2: (0.1, 0.11, None), 3: (-0.3, -0.2, -0.1), 5: (0.4, None, None)}


def write_deam(root: Path, audio_ids=(2, 3, 2001), stray=(7,), seconds=0.5, *, static=None,
               static_2015=None, times_ms=DEAM_TIMES_MS, valence=None, arousal=None) -> None:
    """DEAM in its published layout; the annotations default to the constants above."""
    static = DEAM_STATIC if static is None else static
    static_2015 = DEAM_STATIC_2015 if static_2015 is None else static_2015
    valence = DEAM_VALENCE if valence is None else valence
    arousal = DEAM_AROUSAL if arousal is None else arousal
    avg = root / "DEAM_Annotations" / "annotations" / "annotations averaged per song"
    song_level = avg / "song_level"
    song_level.mkdir(parents=True)
    lines = ["song_id, valence_mean, valence_std, arousal_mean, arousal_std"]
    lines += [f"{i}, {v}, {vs}, {a}, {as_}" for i, (v, vs, a, as_) in static.items()]
    (song_level / "static_annotations_averaged_songs_1_2000.csv").write_text("\n".join(lines) + "\n")
    lines = [("song_id, valence_mean, valence_std, valence_max_mean, arousal_mean, arousal_std, "
              "arousal_max_mean")]
    lines += [f"{i}, {v}, {vs}, 9, {a}, {as_}, 9" for i, (v, vs, a, as_) in static_2015.items()]
    (song_level / "static_annotations_averaged_songs_2000_2058.csv").write_text(
        "\n".join(lines) + "\n")
    dynamic = avg / "dynamic (per second annotations)"
    dynamic.mkdir()
    for name, values in (("valence", valence), ("arousal", arousal)):
        lines = ["song_id," + ",".join(f"sample_{ms}ms" for ms in times_ms)]
        lines += [f"{i}," + ",".join("" if x is None else str(x) for x in row)
                  for i, row in values.items()]
        (dynamic / f"{name}.csv").write_text("\n".join(lines) + "\n")
    for i in (*audio_ids, *stray):
        tone(root / "DEAM_audio" / "MEMD_audio" / f"{i}.mp3", seconds, 220.0 * (1 + i % 5))


# PMEmo2019/annotations/static_annotations.csv: "musicId,Arousal(mean),Valence(mean)";
# dynamic_annotations.csv: "musicId,frameTime,Arousal(mean),Valence(mean)", one row
# per 0.5 s from 15.5 s; metadata.csv: "musicId,fileName,title,artist,album,duration,
# chorus_start_time,chorus_end_time"; audio chorus/<musicId>.mp3.
PMEMO_STATIC = {1: (0.40, 0.575), 4: (0.26, 0.35), 5: (0.73, 0.72), 6: (0.5, 0.5)}
PMEMO_ARTISTS = {1: "Artist A", 4: "Artist B", 5: "Artist A", 6: ""}
PMEMO_DYNAMIC = [(1, 15.5, 0.2, 0.3), (1, 16.0, 0.25, 0.31), (4, 15.5, 0.6, 0.1)]


def write_pmemo(root: Path, audio_ids=(1, 4, 6), stray=(9,), *, static=None, artists=None,
                dynamic=None) -> None:
    """PMEmo in its published layout; the annotations default to the constants above.

    ``static``: id -> (arousal, valence); ``artists``: id -> artist;
    ``dynamic``: rows (id, frame time, arousal, valence).
    """
    static = PMEMO_STATIC if static is None else static
    artists = PMEMO_ARTISTS if artists is None else artists
    dynamic = PMEMO_DYNAMIC if dynamic is None else dynamic
    base = root / "PMEmo2019"
    ann = base / "annotations"
    ann.mkdir(parents=True)
    (ann / "static_annotations.csv").write_text(
        "musicId,Arousal(mean),Valence(mean)\n"
        + "".join(f"{i},{a},{v}\n" for i, (a, v) in static.items()))
    (ann / "dynamic_annotations.csv").write_text(
        "musicId,frameTime,Arousal(mean),Valence(mean)\n"
        + "".join(f"{i},{t},{a},{v}\n" for i, t, a, v in dynamic))
    # with a byte-order mark and one Latin-1 row (a song without annotations)
    (base / "metadata.csv").write_bytes(
        b"\xef\xbb\xbfmusicId,fileName,title,artist,album,duration,chorus_start_time,"
        b"chorus_end_time\n"
        + "".join(f'{i},{i}.mp3,"Song {i}, live",{artists[i]},Album,200.0,01:02,01:32\n'
                  for i in static).encode()
        + b"99,99.mp3,Caf\xe9,Latin-1 Artist,Album,100.0,00:10,00:40\n")
    for i in (*audio_ids, *stray):
        tone(base / "chorus" / f"{i}.mp3")
