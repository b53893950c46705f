"""Public music-emotion datasets, read in their published layouts.

Three layouts are read into a :class:`~emodist.data.catalog.Catalog` with no
conversion step.  None has one class per track, so their catalogs are
unlabelled (``labelled=False``, ``label`` is ``""``): every track with audio
is extracted, and the targets travel as columns of ``Catalog.tracks``.

* **MTG-Jamendo mood/theme** (``autotagging_moodtheme.tsv`` at the root or in
  ``data/``, the five published splits in ``splits/split-<k>/``): several
  ``mood/theme---<tag>`` tags per track (``tags``, ``;``-joined, prefix
  stripped), artists as groups, the chosen split's part in ``split`` and
  every split's in ``split_0`` ... ``split_4``.  Audio ``PATH`` (or its
  ``.low.mp3`` version) under ``audio/`` or the root.
* **DEAM** (``static_annotations_averaged_songs_1_2000.csv`` and
  ``..._2000_2058.csv``, flat or in the published ``annotations averaged per
  song/song_level`` folders): ``valence`` and ``arousal`` (song means on the
  1-9 scale) and their ``*_std``; audio ``MEMD_audio/<song_id>.mp3``.
* **PMEmo** (``static_annotations.csv`` at the root or in ``annotations/``):
  ``valence`` and ``arousal`` (0-1), artists from ``metadata.csv`` as groups
  when it is there; audio ``chorus/<musicId>.mp3``.

Where annotations and audio disagree the catalog says so:
``Catalog.missing_audio`` lists the annotated tracks without audio,
``Catalog.unannotated_audio`` the audio files no annotation names.
:func:`load_dynamic_annotations` reads DEAM's and PMEmo's 0.5 s annotations
into one long table.
"""

from __future__ import annotations

import csv
import io
import os
import posixpath
import re
from collections import Counter

import fsspec
import numpy as np
import pandas as pd

from emodist.data.catalog import (
    AUDIO_EXTENSIONS,
    Catalog,
    _join,
    _numeric_column,
    _parse_csv,
    _read_text,
    register_layout,
)
from emodist.errors import DataError

__all__ = [
    "LAYOUTS",
    "MTG_SPLITS",
    "MTG_TAG_PREFIX",
    "detect_layout",
    "load_deam",
    "load_dynamic_annotations",
    "load_layout",
    "load_mtg_jamendo",
    "load_pmemo",
]

#: Layouts read here, in the order they are recognised.
LAYOUTS = ("mtg-jamendo", "deam", "pmemo")

#: Category prefix of MTG-Jamendo's mood/theme tags, stripped on reading.
MTG_TAG_PREFIX = "mood/theme---"

#: Number of published MTG-Jamendo splits (``splits/split-0`` ... ``split-4``).
MTG_SPLITS = 5

_MTG_TSV = "autotagging_moodtheme.tsv"
_MTG_COLUMNS = ("TRACK_ID", "ARTIST_ID", "ALBUM_ID", "PATH", "DURATION")
_MTG_PARTS = ("train", "validation", "test")

_DEAM_STATIC = (
    "static_annotations_averaged_songs_1_2000.csv",
    "static_annotations_averaged_songs_2000_2058.csv",
)
_DEAM_AVERAGED = ("", "annotations/annotations averaged per song",
                  "DEAM_Annotations/annotations/annotations averaged per song")
_DEAM_STATIC_DIRS = tuple(d for a in _DEAM_AVERAGED for d in (posixpath.join(a, "song_level"), a))
_DEAM_DYNAMIC_DIRS = tuple(
    d for a in _DEAM_AVERAGED for d in (posixpath.join(a, "dynamic (per second annotations)"), a)
)
_DEAM_AUDIO_DIRS = ("MEMD_audio", "DEAM_audio/MEMD_audio")
_DEAM_TARGETS = {"valence": "valence_mean", "arousal": "arousal_mean",
                 "valence_std": "valence_std", "arousal_std": "arousal_std"}
_DEAM_SAMPLE = re.compile(r"sample_(\d+)ms$")

_PMEMO_BASES = ("", "PMEmo2019")
_PMEMO_STATIC = "static_annotations.csv"
_PMEMO_DYNAMIC = "dynamic_annotations.csv"


# ---------------------------------------------------------------- files


def _parent(url: str) -> str:
    return posixpath.dirname(url) if "://" in url else os.path.dirname(url)


def _under(root: str, folder: str, name: str = "") -> str:
    parts = [p for p in (folder, name) if p]
    return _join(root, *parts) if parts else root


def _first_file(fs, root: str, folders, name: str) -> str | None:
    """The first ``root/<folder>/name`` that is a file, or ``None``."""
    for folder in folders:
        url = _under(root, folder, name)
        if fs.isfile(url):
            return url
    return None


def _first_dir(fs, root: str, folders) -> str | None:
    for folder in folders:
        url = _under(root, folder)
        if fs.isdir(url):
            return url
    return None


def _audio_listing(fs, folder: str) -> set[str]:
    """Audio files under ``folder``, as ``/``-separated paths relative to it."""
    base = fs._strip_protocol(folder).rstrip("/")
    try:
        found = fs.find(base)
    except FileNotFoundError:
        return set()
    return {posixpath.relpath(fs._strip_protocol(p), base) for p in found
            if p.lower().endswith(AUDIO_EXTENSIONS)}


def detect_layout(root: str, storage_options: dict | None = None) -> str | None:
    """Which public layout the folder ``root`` holds, by its annotation files.

    Parameters
    ----------
    root : str
        Folder path or fsspec URL.
    storage_options : dict, optional
        fsspec options for remote roots.

    Returns
    -------
    str or None
        One of :data:`LAYOUTS`, or ``None`` for none of them.
    """
    fs, _ = fsspec.core.url_to_fs(root, **(storage_options or {}))
    if _first_file(fs, root, ("", "data"), _MTG_TSV):
        return "mtg-jamendo"
    if any(_first_file(fs, root, _DEAM_STATIC_DIRS, n) for n in _DEAM_STATIC):
        return "deam"
    if _pmemo_static(fs, root):
        return "pmemo"
    return None


def load_layout(layout: str, root: str, *, min_tag_tracks: int | None = None,
                storage_options: dict | None = None, check_audio: bool = True) -> Catalog:
    """Read ``root`` as the public layout ``layout`` (see :func:`detect_layout`).

    Parameters
    ----------
    layout : {"mtg-jamendo", "deam", "pmemo"}
        The layout.
    root : str
        Folder path or fsspec URL.
    min_tag_tracks : int, optional
        MTG-Jamendo: tags on fewer tracks are dropped (ignored elsewhere).
    storage_options : dict, optional
        fsspec options for remote roots.
    check_audio : bool
        List the audio folder: tracks without audio and audio without
        annotations are reported.

    Returns
    -------
    Catalog
    """
    common = {"storage_options": storage_options, "check_audio": check_audio}
    if layout == "mtg-jamendo":
        return load_mtg_jamendo(root, min_tag_tracks=min_tag_tracks, **common)
    if layout == "deam":
        return load_deam(root, **common)
    if layout == "pmemo":
        return load_pmemo(root, **common)
    raise DataError(f"unknown dataset layout {layout!r} (known: {', '.join(LAYOUTS)})")


def _finish(tracks: pd.DataFrame, *, kind: str, root: str, audio_dir: str,
            listing: set[str] | None, dropped: dict | None = None,
            storage_options: dict | None = None) -> Catalog:
    """An unlabelled catalog from ``track_id``, ``rel`` (audio path under
    ``audio_dir``), ``group`` and extra columns; audio checked against ``listing``."""
    tracks = tracks.copy()
    dup = tracks["track_id"].duplicated()
    if dup.any():
        raise DataError(f"{root}: duplicate track {tracks.loc[dup, 'track_id'].iloc[0]!r}")
    rel = tracks.pop("rel")
    tracks["path"] = [_join(audio_dir, *r.split("/")) for r in rel]
    tracks["label"] = ""
    tracks["genre"] = ""
    tracks["n_responses"] = 0
    if listing is None:
        has_audio = np.ones(len(tracks), bool)
        unannotated = []
    else:
        has_audio = rel.isin(listing).to_numpy()
        unannotated = sorted(listing - set(rel))
    tracks["has_audio"] = has_audio
    order = ["track_id", "path", "label", "group", "genre", "n_responses", "has_audio"]
    tracks = tracks[order + [c for c in tracks.columns if c not in order]]
    return Catalog(
        tracks=tracks.reset_index(drop=True),
        dropped_classes=dict(dropped or {}),
        missing_audio=tracks.loc[~has_audio, "track_id"].tolist(),
        label_rule="given",
        description=f"{kind}:{root}",
        storage_options=storage_options,
        labelled=False,
        unannotated_audio=unannotated,
    )


# ---------------------------------------------------------------- MTG-Jamendo


def _read_tsv(url: str, storage_options: dict | None) -> list[list[str]]:
    """Rows of a tab-separated file, header first, fields stripped."""
    rows = [[f.strip() for f in row]
            for row in csv.reader(io.StringIO(_read_text(url, storage_options)), delimiter="\t")]
    rows = [r for r in rows if any(r)]
    if not rows:
        raise DataError(f"{url}: empty TSV file")
    return rows


def _mtg_split(url: str, storage_options: dict | None) -> list[str]:
    rows = _read_tsv(url, storage_options)
    if rows[0][:1] != ["TRACK_ID"]:
        raise DataError(f"{url}: missing column 'TRACK_ID'")
    return [r[0] for r in rows[1:]]


def load_mtg_jamendo(root: str, *, split: int = 0, min_tag_tracks: int | None = None,
                     audio_root: str | None = None, storage_options: dict | None = None,
                     check_audio: bool = True) -> Catalog:
    """Read MTG-Jamendo's mood/theme subset (``autotagging_moodtheme.tsv``).

    Parameters
    ----------
    root : str
        Folder holding ``autotagging_moodtheme.tsv`` (and ``splits/``), or
        holding them in ``data/`` (the published repository).
    split : int
        Which of the five published splits fills the ``split`` column
        (``train``, ``validation``, ``test``; ``""`` for tracks outside it).
        All five are in ``split_0`` ... ``split_4`` when ``splits/`` exists.
    min_tag_tracks : int, optional
        Tags on fewer tracks (with audio) are dropped from ``tags`` and
        reported in ``Catalog.dropped_classes``.
    audio_root : str, optional
        Folder the ``PATH`` column is relative to (default ``ROOT/audio`` if
        it exists, else ``ROOT``).  A track whose ``PATH`` is absent but whose
        low-quality version (``<id>.low.mp3``) exists uses that.
    storage_options : dict, optional
        fsspec options for remote roots.
    check_audio : bool
        List the audio folder (one recursive listing).

    Returns
    -------
    Catalog
        ``tracks`` has ``group`` (artist id), ``album``, ``duration_s``,
        ``tags`` and the split columns.
    """
    if not 0 <= int(split) < MTG_SPLITS:
        raise DataError(f"split {split} is not one of the published 0-{MTG_SPLITS - 1}",
                        param="split")
    fs, _ = fsspec.core.url_to_fs(root, **(storage_options or {}))
    url = _first_file(fs, root, ("", "data"), _MTG_TSV)
    if url is None:
        raise DataError(f"{root}: no {_MTG_TSV} (at the root or in data/)")
    rows = _read_tsv(url, storage_options)
    header = rows[0]
    if header[:len(_MTG_COLUMNS)] != list(_MTG_COLUMNS):
        raise DataError(f"{url}: expected the columns {', '.join(_MTG_COLUMNS)}, TAGS; "
                        f"found {', '.join(header[:6])}")
    tags, durations = [], []
    for i, r in enumerate(rows[1:]):
        if len(r) < len(_MTG_COLUMNS) or not r[0] or not r[3]:
            raise DataError(f"{url}: line {i + 2}: expected {len(_MTG_COLUMNS)} fields and tags")
        try:
            durations.append(float(r[4]))
        except ValueError:
            raise DataError(f"{url}: column 'DURATION', line {i + 2}: not a number: "
                            f"{r[4]!r}") from None
        tags.append([t.removeprefix(MTG_TAG_PREFIX) for t in r[5:] if t])
    body = rows[1:]
    tracks = pd.DataFrame({
        "track_id": [r[0] for r in body],
        "rel": [r[3] for r in body],
        "group": [r[1] for r in body],
        "album": [r[2] for r in body],
        "duration_s": durations,
    })

    if audio_root is None:
        audio_root = _first_dir(fs, root, ("audio",)) or root
    listing = _audio_listing(fs, audio_root) if check_audio else None
    if listing is not None:  # the low-quality download names files <id>.low.mp3
        low = tracks["rel"].str.replace(r"\.mp3$", ".low.mp3", regex=True)
        use_low = ~tracks["rel"].isin(listing) & low.isin(listing)
        tracks.loc[use_low, "rel"] = low[use_low]
        has_audio = tracks["rel"].isin(listing).to_numpy()
    else:
        has_audio = np.ones(len(tracks), bool)

    with_audio = Counter(t for ts, h in zip(tags, has_audio) if h for t in ts)
    every_tag = {t for ts in tags for t in ts}
    dropped = ({t: with_audio[t] for t in every_tag if with_audio[t] < min_tag_tracks}
               if min_tag_tracks is not None else {})
    tracks["tags"] = [";".join(t for t in ts if t not in dropped) for ts in tags]

    splits_dir = _parent(url)
    for k in range(MTG_SPLITS):
        part = {}
        for name in _MTG_PARTS:
            split_url = _join(splits_dir, "splits", f"split-{k}", f"autotagging_moodtheme-{name}.tsv")
            if not fs.isfile(split_url):
                continue
            for tid in _mtg_split(split_url, storage_options):
                if part.setdefault(tid, name) != name:
                    raise DataError(f"{split_url}: track {tid} is also in the "
                                    f"{part[tid]} part of split-{k}")
        if part:
            tracks[f"split_{k}"] = tracks["track_id"].map(part).fillna("")
    column = f"split_{int(split)}"
    tracks["split"] = tracks.get(column, "")
    return _finish(tracks, kind="mtg-jamendo", root=root, audio_dir=audio_root, listing=listing,
                   dropped=dict(sorted(dropped.items(), key=lambda kv: (-kv[1], kv[0]))),
                   storage_options=storage_options)


# ---------------------------------------------------------------- DEAM and PMEmo


def _columns(df: pd.DataFrame, url: str, names) -> None:
    df.columns = [str(c).strip().lstrip("\ufeff").strip() for c in df.columns]
    for name in names:
        if name not in df.columns:
            raise DataError(f"{url}: missing column {name!r}")


def _ids(df: pd.DataFrame, column: str, url: str) -> list[str]:
    return [str(int(v)) for v in _numeric_column(df, column, url, integer=True)]


def load_deam(root: str, *, storage_options: dict | None = None,
              check_audio: bool = True) -> Catalog:
    """Read DEAM's song-level annotations and its ``MEMD_audio`` folder.

    Parameters
    ----------
    root : str
        DEAM folder: the two ``static_annotations_averaged_songs_*.csv`` files
        at the root, in ``song_level/``, or in the published
        ``[DEAM_Annotations/]annotations/annotations averaged per
        song/song_level/``; audio in ``MEMD_audio/`` or
        ``DEAM_audio/MEMD_audio/``.
    storage_options : dict, optional
        fsspec options for remote roots.
    check_audio : bool
        List the ``MEMD_audio`` folder.

    Returns
    -------
    Catalog
        ``tracks`` has ``valence``, ``arousal`` (song means, 1-9 scale) and
        ``valence_std``, ``arousal_std``; each song is its own group.
    """
    fs, _ = fsspec.core.url_to_fs(root, **(storage_options or {}))
    frames = []
    for name in _DEAM_STATIC:
        url = _first_file(fs, root, _DEAM_STATIC_DIRS, name)
        if url is None:
            continue
        df = _parse_csv(_read_text(url, storage_options), url)
        _columns(df, url, ("song_id", "valence_mean", "arousal_mean"))
        frame = pd.DataFrame({"track_id": _ids(df, "song_id", url)})
        for name, column in _DEAM_TARGETS.items():
            frame[name] = _numeric_column(df, column, url) if column in df else np.nan
        frames.append(frame)
    if not frames:
        raise DataError(f"{root}: no DEAM static annotations ({', '.join(_DEAM_STATIC)})")
    tracks = pd.concat(frames, ignore_index=True).drop_duplicates()
    tracks["rel"] = tracks["track_id"] + ".mp3"
    tracks["group"] = tracks["track_id"]
    audio_dir = _first_dir(fs, root, _DEAM_AUDIO_DIRS) or _under(root, _DEAM_AUDIO_DIRS[0])
    listing = _audio_listing(fs, audio_dir) if check_audio else None
    return _finish(tracks, kind="deam", root=root, audio_dir=audio_dir, listing=listing,
                   storage_options=storage_options)


def _pmemo_static(fs, root: str) -> tuple[str, str] | None:
    """``(base folder, static annotations file)`` of a PMEmo folder, or ``None``."""
    for base in _PMEMO_BASES:
        url = _first_file(fs, _under(root, base), ("annotations", ""), _PMEMO_STATIC)
        if url is not None:
            return _under(root, base), url
    return None


def load_pmemo(root: str, *, storage_options: dict | None = None,
               check_audio: bool = True) -> Catalog:
    """Read PMEmo's static annotations and its ``chorus`` folder.

    Parameters
    ----------
    root : str
        PMEmo folder (or its parent holding ``PMEmo2019/``):
        ``annotations/static_annotations.csv`` (or at the root),
        ``metadata.csv`` (optional; bytes that are not UTF-8 are replaced)
        and ``chorus/<musicId>.mp3``.
    storage_options : dict, optional
        fsspec options for remote roots.
    check_audio : bool
        List the ``chorus`` folder.

    Returns
    -------
    Catalog
        ``tracks`` has ``valence`` and ``arousal`` (0-1) and, with
        ``metadata.csv``, ``title`` and the artist as ``group`` (else each
        song is its own group).
    """
    fs, _ = fsspec.core.url_to_fs(root, **(storage_options or {}))
    found = _pmemo_static(fs, root)
    if found is None:
        raise DataError(f"{root}: no PMEmo {_PMEMO_STATIC} (at the root or in annotations/)")
    base, url = found
    df = _parse_csv(_read_text(url, storage_options), url)
    _columns(df, url, ("musicId", "Arousal(mean)", "Valence(mean)"))
    ids = _ids(df, "musicId", url)
    tracks = pd.DataFrame({
        "track_id": ids,
        "rel": [f"{i}.mp3" for i in ids],
        "group": ids,
        "valence": _numeric_column(df, "Valence(mean)", url),
        "arousal": _numeric_column(df, "Arousal(mean)", url),
    })
    meta_url = _under(base, "", "metadata.csv")
    if fs.isfile(meta_url):
        # optional and only for groups and titles: bytes that are not UTF-8 are replaced
        with fsspec.open(meta_url, "rb", **(storage_options or {})) as f:
            text = f.read().decode("utf-8-sig", errors="replace")
        meta = _parse_csv(text, meta_url)
        _columns(meta, meta_url, ("musicId", "artist"))
        meta.index = _ids(meta, "musicId", meta_url)
        meta = meta[~meta.index.duplicated()]
        artist = tracks["track_id"].map(meta["artist"].str.strip()).fillna("")
        tracks["group"] = artist.where(artist != "", tracks["track_id"])
        if "title" in meta:
            tracks["title"] = tracks["track_id"].map(meta["title"]).fillna("")
    audio_dir = _under(base, "chorus")
    listing = _audio_listing(fs, audio_dir) if check_audio else None
    return _finish(tracks, kind="pmemo", root=root, audio_dir=audio_dir, listing=listing,
                   storage_options=storage_options)


# ---------------------------------------------------------------- dynamic


def _checked_numbers(df: pd.DataFrame, column: str, url: str) -> np.ndarray:
    """A column's numbers; empty cells are NaN, anything else not a number an error."""
    text = df[column].str.strip()
    values = pd.to_numeric(text, errors="coerce")
    bad = values.isna() & (text != "")
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{url}: column {column!r}, line {i + 2}: not a number: "
                        f"{df[column].iloc[i]!r}")
    return values.to_numpy(float)


def _deam_dynamic(fs, root: str, storage_options: dict | None) -> pd.DataFrame:
    long = []
    for quantity in ("valence", "arousal"):
        url = _first_file(fs, root, _DEAM_DYNAMIC_DIRS, f"{quantity}.csv")
        if url is None:
            raise DataError(f"{root}: no DEAM dynamic annotations {quantity}.csv (in "
                            "'annotations averaged per song/dynamic (per second annotations)')")
        df = _parse_csv(_read_text(url, storage_options), url)
        _columns(df, url, ("song_id",))
        ids = _ids(df, "song_id", url)
        for column in df.columns.drop("song_id"):
            m = _DEAM_SAMPLE.match(column)
            if m is None:
                raise DataError(f"{url}: column {column!r} is not a sample_<ms>ms time")
            long.append(pd.DataFrame({"track_id": ids, "time_s": int(m.group(1)) / 1000.0,
                                      "quantity": quantity,
                                      "value": _checked_numbers(df, column, url)}))
    table = pd.concat(long, ignore_index=True).dropna(subset=["value"])
    table = table.pivot_table(index=["track_id", "time_s"], columns="quantity",
                              values="value", aggfunc="first")
    return table.reindex(columns=["valence", "arousal"]).reset_index()


def _pmemo_dynamic(fs, root: str, storage_options: dict | None) -> pd.DataFrame:
    url = _join(_parent(_pmemo_static(fs, root)[1]), _PMEMO_DYNAMIC)
    df = _parse_csv(_read_text(url, storage_options), url)
    _columns(df, url, ("musicId", "frameTime", "Arousal(mean)", "Valence(mean)"))
    return pd.DataFrame({
        "track_id": _ids(df, "musicId", url),
        "time_s": _numeric_column(df, "frameTime", url).astype(float),
        "valence": _checked_numbers(df, "Valence(mean)", url),
        "arousal": _checked_numbers(df, "Arousal(mean)", url),
    })


def load_dynamic_annotations(root: str, *, storage_options: dict | None = None) -> pd.DataFrame:
    """DEAM's or PMEmo's 0.5 s valence and arousal annotations as one long table.

    Parameters
    ----------
    root : str
        A DEAM folder (``valence.csv`` and ``arousal.csv``: one row per song,
        one ``sample_<ms>ms`` column per 0.5 s) or a PMEmo folder
        (``dynamic_annotations.csv``: ``musicId, frameTime, Arousal(mean),
        Valence(mean)``).
    storage_options : dict, optional
        fsspec options for remote roots.

    Returns
    -------
    pandas.DataFrame
        ``track_id`` (str, as in the catalog), ``time_s`` (float, from the
        start of the audio file), ``valence``, ``arousal`` (float, NaN where
        only the other was annotated), sorted by track and time.  Empty cells
        of DEAM's wide files (songs shorter than the longest) are left out.
    """
    root = str(root)
    fs, _ = fsspec.core.url_to_fs(root, **(storage_options or {}))
    layout = detect_layout(root, storage_options)
    if layout == "deam":
        table = _deam_dynamic(fs, root, storage_options)
    elif layout == "pmemo":
        table = _pmemo_dynamic(fs, root, storage_options)
    else:
        raise DataError(f"{root}: no dynamic annotations (a DEAM or PMEmo folder has them)")
    table = table[["track_id", "time_s", "valence", "arousal"]]
    order = np.lexsort((table["time_s"].to_numpy(), table["track_id"].astype(int).to_numpy()))
    return table.iloc[order].reset_index(drop=True)


register_layout(detect_layout, load_layout)
