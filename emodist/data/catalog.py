"""Datasets: tracks, labels and vote distributions.

Three layouts are read into one :class:`Catalog`:

* **Emotify** (a folder with ``data.csv`` and ``emotifymusic/<genre>/<n>.mp3``):
  one row per listener response, nine 0/1 GEMS columns.  Per track the
  catalog keeps two 9-way vote profiles, the plain mean of the 0/1 columns and
  the listener-normalised distribution (each response's ticks divided by how
  many emotions that listener ticked, empty responses ignored, averaged over
  responses), and the dominant emotion chosen by a label rule.
* **Manifest** (a CSV file with ``path`` and ``label`` columns, optional
  ``group`` and any extra columns carried along).
* **Folder per label** (``ROOT/<label>/<file>``).

Label rules (see :func:`dominant_emotion`): ``listener`` takes the argmax of
the listener-normalised distribution (the default: it reproduces the reference
study's class sizes on the full dataset), ``mean`` the argmax of the plain
mean.  Ties within 1e-9 go to the emotion with the higher plain mean, then to
the first in GEMS order.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
import posixpath
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import fsspec
import numpy as np
import pandas as pd

from emodist.data.labels import GEMS, dominant_emotion, drop_small_classes, listener_distribution
from emodist.errors import DataError

__all__ = [
    "AUDIO_EXTENSIONS",
    "EMOTIFY_COLUMNS",
    "EMOTIFY_GENRES",
    "LAYOUT_READERS",
    "UNLABELLED_HINT",
    "Catalog",
    "audio_source",
    "emotify_audio_path",
    "is_emotify",
    "load_audio",
    "load_dataset",
    "load_emotify",
    "load_folders",
    "load_manifest",
    "paths_exist",
    "register_layout",
]

#: Audio file extensions recognised by the folder-per-label layout.
AUDIO_EXTENSIONS = (".mp3", ".wav", ".flac", ".ogg", ".aiff", ".aif", ".au")
#: What a labelled reader's refusal adds when the input may be music without labels.
UNLABELLED_HINT = "; music without labels: emodist extract --unlabelled, or emodist predict"

#: Emotify genre of each block of 100 track ids (1-100 classical, ...).
EMOTIFY_GENRES = ("classical", "rock", "electronic", "pop")

EMOTIFY_COLUMNS = ("track id", "genre") + GEMS

#: Bytes read at a time when fingerprinting a file.
HASH_BLOCK = 2**20

log = logging.getLogger(__name__)

@dataclass
class Catalog:
    """Tracks of a dataset with their labels and vote profiles.

    Attributes
    ----------
    tracks : pandas.DataFrame
        One row per track: ``track_id`` (str), ``path`` (local path or fsspec
        URL), ``label`` (dominant emotion or manifest label; ``""`` when the
        class was dropped), ``group`` (cross-validation group), ``genre``,
        ``n_responses`` and ``has_audio``.
    votes, votes_mean : pandas.DataFrame or None
        Listener-normalised and plain-mean vote profiles indexed by track_id,
        nine GEMS columns; ``None`` for datasets without votes.
    dropped_classes : dict
        Class -> number of usable tracks, for classes dropped as too small.
    missing_audio : list of str
        Track ids whose audio file does not exist.
    label_rule : str
        The rule that chose the labels (``listener``, ``mean`` or ``given``).
    description : str
        One line describing the dataset (kind and location).
    labelled : bool
        Whether tracks carry labels; an unlabelled catalog (music to recognise,
        :func:`load_audio`, or a dataset annotated with tags or valence and
        arousal, not classes) uses every track that has audio.
    unannotated_audio : list of str
        Audio files (relative to the audio folder) that no annotation names.
    """

    tracks: pd.DataFrame
    votes: pd.DataFrame | None = None
    votes_mean: pd.DataFrame | None = None
    dropped_classes: dict[str, int] = field(default_factory=dict)
    missing_audio: list[str] = field(default_factory=list)
    label_rule: str = "given"
    description: str = ""
    storage_options: dict | None = None
    labelled: bool = True
    unannotated_audio: list[str] = field(default_factory=list)

    def usable_mask(self) -> np.ndarray:
        """``(n_tracks,)`` bool: the rows of :attr:`tracks` with audio and (if labelled) a
        kept label."""
        t = self.tracks
        if not self.labelled:
            return t["has_audio"].to_numpy(bool)
        return (t["has_audio"] & (t["label"] != "")).to_numpy(bool)

    def usable(self) -> pd.DataFrame:
        """Tracks with audio and a kept label, in catalog order."""
        return self.tracks[self.usable_mask()].reset_index(drop=True)

    def class_counts(self) -> pd.Series:
        """Usable tracks per class, largest first."""
        return self.usable()["label"].value_counts()


# ---------------------------------------------------------------- readers


def _fs(url: str, storage_options: dict | None):
    fs, path = fsspec.core.url_to_fs(url, **(storage_options or {}))
    return fs, path


def _probe_path(path: str, storage_options: dict | None, *, what: str):
    """``(fs, fs path, is_file, is_dir)`` of ``path``; ``DataError("<path>: <what>: ...")`` if unreadable."""
    fs, p = _fs(path, storage_options)
    try:
        is_file = fs.isfile(p)
        is_dir = not is_file and fs.isdir(p)
    except (PermissionError, OSError) as exc:
        raise DataError(f"{path}: {what}: {exc}") from None
    return fs, p, is_file, is_dir


def _join(base: str, *parts: str) -> str:
    if "://" in base:
        return posixpath.join(base.rstrip("/"), *parts)
    import os

    return os.path.join(base, *parts)


def _read_text(url: str, storage_options: dict | None) -> str:
    try:
        with fsspec.open(url, "rt", encoding="utf-8", **(storage_options or {})) as f:
            return f.read()
    except FileNotFoundError:
        raise DataError(f"{url}: file not found") from None
    except UnicodeDecodeError:
        raise DataError(f"{url}: not a UTF-8 text file") from None


def _parse_csv(text: str, url: str) -> pd.DataFrame:
    try:
        df = pd.read_csv(io.StringIO(text), skipinitialspace=True, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, csv.Error) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{url}: malformed CSV: {first}") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{url}: empty CSV file") from None
    df.columns = [str(c).strip() for c in df.columns]
    return df


def _numeric_column(df: pd.DataFrame, column: str, url: str, integer: bool = False) -> np.ndarray:
    values = pd.to_numeric(df[column].str.strip(), errors="coerce")
    bad = values.isna()
    if integer:
        bad |= values.notna() & (values != values.round())
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(
            f"{url}: column {column!r}, line {i + 2}: not a number: {df[column].iloc[i]!r}"
        )
    return values.to_numpy()


def emotify_audio_path(root: str, track_id: int) -> tuple[str, str]:
    """Genre and audio path of an Emotify track id (1-400)."""
    block = (int(track_id) - 1) // 100
    if not 0 <= block < len(EMOTIFY_GENRES):
        raise DataError(f"track id {track_id} is outside Emotify's 1-400")
    genre = EMOTIFY_GENRES[block]
    return genre, _join(root, "emotifymusic", genre, f"{int(track_id) - 100 * block}.mp3")


def is_emotify(root: str, storage_options: dict | None = None) -> bool:
    """Whether ``root`` holds Emotify's ``data.csv``."""
    fs, path = _fs(root, storage_options)
    return fs.isfile(posixpath.join(path, "data.csv") if "://" in root else _join(path, "data.csv"))


def load_emotify(
    root: str,
    *,
    label_rule: str = "listener",
    min_class_tracks: int | None = None,
    min_class_share: float = 0.02,
    storage_options: dict | None = None,
    check_audio: bool = True,
) -> Catalog:
    """Read an Emotify-layout folder (``data.csv`` + ``emotifymusic/``).

    Parameters
    ----------
    root : str
        Folder path or fsspec URL.
    label_rule : {"listener", "mean"}
        How the dominant emotion is chosen (see :func:`dominant_emotion`).
    min_class_tracks, min_class_share
        Small-class threshold (see :func:`drop_small_classes`), applied to the
        tracks that have audio.
    storage_options : dict, optional
        fsspec options for remote roots.
    check_audio : bool
        Look up which audio files exist (tracks without audio are reported and
        skipped, not an error).

    Returns
    -------
    Catalog
    """
    url = _join(root, "data.csv")
    df = _parse_csv(_read_text(url, storage_options), url)
    missing = [c for c in EMOTIFY_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{url}: missing column {missing[0]!r}")
    ids = _numeric_column(df, "track id", url, integer=True).astype(np.int64)
    ticks = np.column_stack([_numeric_column(df, c, url) for c in GEMS])
    bad = ~np.isin(ticks, (0, 1))
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise DataError(f"{url}: column {GEMS[j]!r}, line {i + 2}: vote must be 0 or 1")

    track_ids = np.unique(ids)
    votes, votes_mean, n_resp = [], [], []
    for tid in track_ids:
        r = ticks[ids == tid]
        votes.append(listener_distribution(r))
        votes_mean.append(r.mean(axis=0))
        n_resp.append(len(r))
    votes = np.array(votes)
    votes_mean = np.array(votes_mean)
    labels = dominant_emotion(votes, votes_mean, label_rule)

    genres, paths = zip(*(emotify_audio_path(root, t) for t in track_ids))
    if check_audio:
        fs, _ = _fs(root, storage_options)
        listing = _existing_files(fs, _join(root, "emotifymusic"))
        has_audio = np.array([_strip(fs, p) in listing for p in paths])
    else:
        has_audio = np.ones(len(paths), bool)
    keys = [str(t) for t in track_ids]
    tracks = pd.DataFrame(
        {
            "track_id": keys,
            "path": list(paths),
            "label": labels,
            "group": keys,
            "genre": list(genres),
            "n_responses": n_resp,
            "has_audio": has_audio,
        }
    )
    dropped = drop_small_classes(tracks.loc[has_audio, "label"], min_class_tracks, min_class_share)
    for g in GEMS:  # emotions no track is dominant in are dropped too
        if g not in set(tracks.loc[has_audio, "label"]):
            dropped.setdefault(g, 0)
    tracks.loc[tracks["label"].isin(list(dropped)), "label"] = ""
    return Catalog(
        tracks=tracks,
        votes=pd.DataFrame(votes, index=keys, columns=list(GEMS)),
        votes_mean=pd.DataFrame(votes_mean, index=keys, columns=list(GEMS)),
        dropped_classes=dict(sorted(dropped.items(), key=lambda kv: GEMS.index(kv[0]))),
        missing_audio=[k for k, h in zip(keys, has_audio) if not h],
        label_rule=label_rule,
        description=f"emotify:{root}",
        storage_options=storage_options,
    )


def _strip(fs, path: str) -> str:
    return fs._strip_protocol(path)


def _existing_files(fs, folder: str) -> set[str]:
    try:
        return {_strip(fs, p) for p in fs.find(_strip(fs, folder))}
    except FileNotFoundError:
        return set()


def paths_exist(paths, storage_options: dict | None = None) -> list[bool]:
    """Which of ``paths`` are existing files, listing each parent folder once.

    One directory listing per distinct folder instead of one lookup per file:
    a manifest of 100,000 objects under a few S3 prefixes costs a few
    listings, not 100,000 round trips.  A folder that cannot be listed
    (missing, or not a folder) holds none of its paths.

    Parameters
    ----------
    paths : iterable of str
        Local paths or fsspec URLs.
    storage_options : dict, optional
        fsspec options for remote paths.

    Returns
    -------
    list of bool, one per path, in order.
    """
    listings: dict[tuple, set[str]] = {}
    out = []
    for p in paths:
        fs, fp = _fs(p, storage_options)
        fp = _strip(fs, fp)
        parent = fs._parent(fp)
        key = (str(fs.protocol), parent)
        if key not in listings:
            try:
                listings[key] = {_strip(fs, q) for q in fs.ls(parent, detail=False)}
            except (FileNotFoundError, NotADirectoryError):
                listings[key] = set()
        out.append(fp in listings[key])
    return out


def normal_path(path: str, base: str) -> str:
    """One spelling of a manifest path: absolute, normalised (``x``, ``./x``, ``/abs/x`` agree).

    Relative paths are taken relative to ``base`` (the manifest's folder);
    a URL keeps its protocol and has its path normalised.
    """
    path = str(path)
    if "://" in path:
        proto, _, rest = path.partition("://")
        return f"{proto}://{posixpath.normpath(rest)}"
    if "://" in base:
        return normal_path(posixpath.join(base.rstrip("/"), path), "")
    return os.path.normpath(os.path.abspath(os.path.join(base, path)))


def _relative(path: str, base: str) -> str:
    """``path`` relative to ``base`` when it lies under it (the default track id), else as is."""
    root = normal_path(base or ".", "") if "://" in path else os.path.abspath(base or ".")
    sep = "/" if "://" in path else os.sep
    if path.startswith(root.rstrip(sep) + sep):
        rel = path[len(root.rstrip(sep)) + 1:]
        return rel.replace(os.sep, "/")
    return path


def _merge_spellings(tracks: pd.DataFrame, url: str) -> pd.DataFrame:
    """One row per file: rows naming the same file (other spellings) become one track.

    Raises
    ------
    DataError
        The rows of one file disagree on its label.
    """
    lines = tracks.groupby("path", sort=False).indices
    repeated = {p: rows for p, rows in lines.items() if len(rows) > 1}
    for path, rows in repeated.items():
        labels = tracks["label"].iloc[rows]
        where = ", ".join(str(int(r) + 2) for r in rows)
        if labels.nunique() > 1:
            raise DataError(f"{url}: duplicate track {tracks['track_id'].iloc[rows[0]]!r}: "
                            f"lines {where} name the same file {path} with different labels "
                            f"({', '.join(dict.fromkeys(labels))})")
        log.warning("%s: lines %s name the same file %s; it is one track", url, where, path)
    return tracks.drop_duplicates("path", keep="first")


def fingerprints(paths, storage_options: dict | None = None, *,
                 max_workers: int = 8) -> list[str | None]:
    """The sha256 of each file's bytes (hex), ``None`` where it cannot be read.

    Parameters
    ----------
    paths : iterable of str
        Files to hash: local paths or fsspec URLs.
    storage_options : dict, optional
        fsspec options for remote paths.
    max_workers : int
        Files read concurrently (I/O bound).

    Returns
    -------
    list of str or None, one per path, in order.
    """
    def one(path: str) -> str | None:
        digest = hashlib.sha256()
        try:
            with fsspec.open(path, "rb", **(storage_options or {})) as fh:
                while block := fh.read(HASH_BLOCK):
                    digest.update(block)
        except (OSError, ValueError):
            return None
        return digest.hexdigest()

    paths = [str(p) for p in paths]
    with ThreadPoolExecutor(max(1, min(max_workers, len(paths) or 1))) as pool:
        return list(pool.map(one, paths))


def group_copies(catalog: Catalog, *, max_workers: int = 8) -> list[list[str]]:
    """Find tracks whose audio files are byte-identical; give each set one group.

    Records the ``sha256`` column in ``catalog.tracks`` (the fingerprint of
    each usable track's file, ``""`` where it was not read) and sets the
    ``group`` of every copy to the group of the first of its set, so that
    grouped cross-validation never puts one recording on both sides of a
    fold.

    Parameters
    ----------
    catalog : Catalog
        Changed in place.
    max_workers : int
        Files read concurrently.

    Returns
    -------
    list of list of str
        The track ids of each set of copies (two or more), in catalog order.
    """
    t = catalog.tracks
    usable = np.flatnonzero(t["has_audio"].to_numpy(bool))
    sums = fingerprints(t["path"].iloc[usable], catalog.storage_options,
                        max_workers=max_workers)
    column = np.full(len(t), "", dtype=object)
    column[usable] = [s or "" for s in sums]
    t["sha256"] = column
    copies = []
    for digest, rows in t.iloc[usable].groupby("sha256", sort=False).indices.items():
        if not digest or len(rows) < 2:
            continue
        rows = usable[rows]
        copies.append(t["track_id"].iloc[rows].tolist())
        t.iloc[rows, t.columns.get_loc("group")] = t["group"].iloc[rows[0]]
    return copies


def load_manifest(
    url: str,
    *,
    min_class_tracks: int | None = None,
    min_class_share: float = 0.0,
    storage_options: dict | None = None,
    check_audio: bool = True,
) -> Catalog:
    """Read a manifest CSV: ``path``, ``label``, optional ``group``, extras.

    Relative paths are taken relative to the manifest's folder, and every
    path is normalised (:func:`normal_path`): rows that name one file in
    several spellings are one track (a label conflict between them is an
    error).  ``group`` defaults to the file (each file its own group);
    ``track_id`` defaults to the path relative to the manifest's folder (the
    normalised path when outside it); extra columns are carried along in
    ``Catalog.tracks``.
    """
    df = _parse_csv(_read_text(url, storage_options), url)
    for col in ("path", "label"):
        if col not in df.columns:
            raise DataError(f"{url}: missing column {col!r}" + (UNLABELLED_HINT if col == "label"
                                                                 else ""))
    empty = df["path"].str.strip() == ""
    if empty.any():
        raise DataError(f"{url}: column 'path', line {int(np.flatnonzero(empty)[0]) + 2}: empty")
    base = posixpath.dirname(url) if "://" in url else os.path.dirname(url)
    paths = [normal_path(p, base) for p in df["path"].str.strip()]
    tracks = df.copy()
    tracks["path"] = paths
    tracks["track_id"] = df["track_id"] if "track_id" in df else [
        _relative(p, base) for p in paths]
    tracks = _merge_spellings(tracks, url)
    tracks["group"] = [g or t for g, t in zip(tracks.get("group", tracks["track_id"]),
                                              tracks["track_id"])]
    tracks["genre"] = tracks.get("genre", "")
    tracks["n_responses"] = 0
    return _finish_generic(tracks, url, "manifest", min_class_tracks, min_class_share,
                           storage_options, check_audio)


def load_folders(
    root: str,
    *,
    min_class_tracks: int | None = None,
    min_class_share: float = 0.0,
    storage_options: dict | None = None,
) -> Catalog:
    """Read a folder-per-label layout: ``ROOT/<label>/<audio file>``."""
    fs, path = _fs(root, storage_options)
    if not fs.isdir(path):
        raise DataError(f"{root}: no such dataset folder")
    rows = []
    for entry in sorted(fs.ls(path, detail=False)):
        if not fs.isdir(entry):
            continue
        label = posixpath.basename(entry.rstrip("/"))
        for f in sorted(fs.find(entry)):
            if f.lower().endswith(AUDIO_EXTENSIONS):
                full = fs.unstrip_protocol(f) if "://" in root else f
                rel = posixpath.relpath(f, path)
                rows.append({"track_id": rel, "path": full, "label": label, "group": rel})
    if not rows:
        raise DataError(f"{root}: no audio files in label folders ({', '.join(AUDIO_EXTENSIONS)})"
                        + UNLABELLED_HINT)
    tracks = pd.DataFrame(rows)
    tracks["genre"] = ""
    tracks["n_responses"] = 0
    return _finish_generic(tracks, root, "folders", min_class_tracks, min_class_share,
                           storage_options, check_audio=False)


def _finish_generic(tracks, where, kind, min_tracks, min_share, storage_options, check_audio):
    tracks = tracks.copy()
    tracks["track_id"] = tracks["track_id"].astype(str)
    if tracks["track_id"].duplicated().any():
        dup = tracks.loc[tracks["track_id"].duplicated(), "track_id"].iloc[0]
        raise DataError(f"{where}: duplicate track {dup!r}")
    if check_audio:
        tracks["has_audio"] = paths_exist(tracks["path"], storage_options)
    else:
        tracks["has_audio"] = True
    dropped = drop_small_classes(tracks.loc[tracks["has_audio"], "label"], min_tracks, min_share)
    tracks.loc[tracks["label"].isin(list(dropped)), "label"] = ""
    order = ["track_id", "path", "label", "group", "genre", "n_responses", "has_audio"]
    tracks = tracks[order + [c for c in tracks.columns if c not in order]]
    return Catalog(
        tracks=tracks.reset_index(drop=True),
        dropped_classes=dropped,
        missing_audio=tracks.loc[~tracks["has_audio"], "track_id"].tolist(),
        label_rule="given",
        description=f"{kind}:{where}",
        storage_options=storage_options,
    )


#: Published layouts :func:`load_dataset` recognises besides Emotify, manifests and label
#: folders: ``(detect, load)`` pairs, ``detect(path, storage_options) -> name or None`` and
#: ``load(name, path, *, min_tag_tracks, storage_options, check_audio) -> Catalog``;
#: :mod:`emodist.data.datasets` registers MTG-Jamendo, DEAM and PMEmo.
LAYOUT_READERS: list[tuple] = []


def register_layout(detect, load) -> None:
    """Let :func:`load_dataset` read another published layout (see :data:`LAYOUT_READERS`)."""
    LAYOUT_READERS.append((detect, load))


def load_dataset(path: str, *, label_rule: str = "listener", min_class_tracks: int | None = None,
                 min_class_share: float = 0.02, storage_options: dict | None = None,
                 check_audio: bool = True) -> Catalog:
    """Read any supported dataset layout.

    Parameters
    ----------
    path : str
        An Emotify folder (holds ``data.csv``), a manifest ``.csv`` file, an
        MTG-Jamendo, DEAM or PMEmo folder (see :mod:`emodist.data.datasets`),
        or a folder of label folders; local or fsspec URL.
    label_rule : {"listener", "mean"}
        Emotify label rule (ignored for layouts with given labels).
    min_class_tracks : int, optional
        Classes (MTG-Jamendo: tags) with fewer tracks are dropped.
    min_class_share : float
        Share-based threshold when ``min_class_tracks`` is unset (default
        0.02 for every layout, the extraction spec's default).
    storage_options : dict, optional
        fsspec options for remote paths.
    check_audio : bool
        Report tracks whose audio file is missing.

    Returns
    -------
    Catalog
    """
    path = str(path)
    fs, p, is_file, is_dir = _probe_path(path, storage_options, what="cannot read dataset")
    if is_file and p.lower().endswith(".csv"):
        return load_manifest(path, min_class_tracks=min_class_tracks,
                             min_class_share=min_class_share,
                             storage_options=storage_options, check_audio=check_audio)
    if is_dir and fs.isfile(posixpath.join(p, "data.csv")):
        return load_emotify(path, label_rule=label_rule, min_class_tracks=min_class_tracks,
                            min_class_share=min_class_share,
                            storage_options=storage_options, check_audio=check_audio)
    if is_dir:
        for detect, load in LAYOUT_READERS:
            layout = detect(path, storage_options)
            if layout is not None:
                return load(layout, path, min_tag_tracks=min_class_tracks,
                            storage_options=storage_options, check_audio=check_audio)
        return load_folders(path, min_class_tracks=min_class_tracks,
                            min_class_share=min_class_share,
                            storage_options=storage_options)
    if is_file:
        raise DataError(f"{path}: not a dataset (expected a folder or a manifest .csv)")
    raise DataError(f"{path}: no such dataset")


def load_audio(path, *, storage_options: dict | None = None) -> Catalog:
    """Music to recognise, with or without labels: any dataset, a folder, a list or audio files.

    Parameters
    ----------
    path : str or sequence of str
        One audio file; a manifest ``.csv`` whose only required column is
        ``path`` (a ``label`` column, if any, is kept); an Emotify folder or a
        folder of label folders (read as :func:`load_dataset` does, labels
        kept); or any other folder, whose audio files (searched recursively)
        are the tracks.  Several paths (a shell pattern such as ``*.mp3``)
        must each be an audio file.  Local or fsspec URL.
    storage_options : dict, optional
        fsspec options for remote paths.

    Returns
    -------
    Catalog
        ``labelled=False``: every track with audio is used; ``track_id`` is
        the path relative to the folder, or a file's name (its path as given
        when several files share a name).
    """
    if not isinstance(path, str | os.PathLike):
        paths = _each_once(path)
        if not paths:
            raise DataError("no audio given")
        if len(paths) > 1:
            return _audio_files(paths, storage_options)
        path = paths[0]
    path = str(path)
    fs, p, is_file, is_dir = _probe_path(path, storage_options, what="cannot read")
    if is_file and p.lower().endswith(AUDIO_EXTENSIONS):
        rows = [{"track_id": posixpath.basename(p), "path": path}]
        kind = "file"
    elif is_file and p.lower().endswith(".csv"):
        df = _parse_csv(_read_text(path, storage_options), path)
        if "path" not in df.columns:
            raise DataError(f"{path}: missing column 'path'")
        if "label" in df.columns:
            return replace(load_manifest(path, min_class_tracks=0, storage_options=storage_options),
                           labelled=False)
        base = posixpath.dirname(path) if "://" in path else os.path.dirname(path)
        rows = [{"track_id": q, "path": q if ("://" in q or q.startswith("/")) else _join(base, q)}
                for q in df["path"]]
        kind = "manifest"
    elif is_dir and (fs.isfile(posixpath.join(p, "data.csv"))):
        return replace(load_dataset(path, min_class_tracks=0, storage_options=storage_options),
                       labelled=False)
    elif is_dir:
        found = sorted(f for f in fs.find(p) if f.lower().endswith(AUDIO_EXTENSIONS))
        if not found:
            raise DataError(f"{path}: no audio files ({', '.join(AUDIO_EXTENSIONS)})")
        rows = [{"track_id": posixpath.relpath(f, p),
                 "path": fs.unstrip_protocol(f) if "://" in path else f} for f in found]
        kind = "folder"
    elif is_file:
        raise DataError(f"{path}: neither audio ({', '.join(AUDIO_EXTENSIONS)}) nor a manifest "
                        ".csv")
    else:
        raise DataError(f"{path}: no such file or folder")
    return _unlabelled(rows, path, kind, storage_options)


def _unlabelled(rows: list[dict], where: str, kind: str, storage_options) -> Catalog:
    tracks = pd.DataFrame(rows)
    tracks["label"] = ""
    tracks["group"] = tracks["track_id"]
    tracks["genre"] = ""
    tracks["n_responses"] = 0
    cat = _finish_generic(tracks, where, kind, 0, 0.0, storage_options, check_audio=True)
    return replace(cat, labelled=False)


def _audio_files(paths: list[str], storage_options) -> Catalog:
    """Several audio files, each named by its file name (its path when names repeat)."""
    for path in paths:
        if not path.lower().endswith(AUDIO_EXTENSIONS):
            raise DataError(f"{path}: not an audio file ({', '.join(AUDIO_EXTENSIONS)}); give "
                            "several audio files, or one folder or manifest")
    names = [posixpath.basename(p) for p in paths]
    ids = names if len(set(names)) == len(names) else paths
    rows = [{"track_id": t, "path": p} for t, p in zip(ids, paths, strict=True)]
    cat = _unlabelled(rows, audio_source(paths), "files", storage_options)
    missing = cat.tracks.loc[~cat.tracks["has_audio"], "path"].tolist()
    if missing:  # checked together (remote files in parallel), refused before any work
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DataError(f"{missing[0]}: no such file{more}")
    return cat


def _each_once(paths) -> list[str]:
    """``paths`` as strings, each once, in the order given."""
    return list(dict.fromkeys(str(p) for p in paths))


def audio_source(data) -> str:
    """How messages and a store's attributes name what :func:`load_audio` read."""
    if isinstance(data, str | os.PathLike):
        return str(data)
    paths = _each_once(data)
    if len(paths) == 1:
        return paths[0]
    return f"{paths[0]} and {len(paths) - 1} more file{'s' if len(paths) > 2 else ''}"
