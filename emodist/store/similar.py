"""Nearest segments and tracks: :func:`similar` and :func:`similar_tracks` stream the store.

Both keep a running top-k, so memory stays at the coordinate index plus a few
blocks (the block in use and the next one being read) whatever the store's
size; a track is the mean of its segments' rows, compared once its last
segment has been read.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from emodist.errors import EmodistError, StoreError
from emodist.store.index import codes_for, positions, resolve_features
from emodist.store.select import iter_blocks, read_rows

__all__ = ["BLOCK_BYTES", "METRICS", "column_stats", "default_features", "distances", "merge_topk",
           "similar", "similar_tracks", "track_columns"]

#: Distance metrics of :func:`similar`.
METRICS = ("cosine", "euclidean")
#: Uncompressed bytes of one block streamed by :func:`similar`.
BLOCK_BYTES = 32 * 2**20


def column_stats(store, features=None, *, block_bytes: int = BLOCK_BYTES):
    """Mean and standard deviation of feature columns over the done segments.

    Streams the store block by block; results are cached per opened store.

    Parameters
    ----------
    store : xarray.Dataset
        An opened store.
    features : str or sequence of str, optional
        As in :func:`emodist.store.select.select`.
    block_bytes : int
        Uncompressed bytes per streamed block.

    Returns
    -------
    mean, std : numpy.ndarray
        float64 per column; a constant column gets ``std = 1``.
    """
    index = store.emodist.index
    chosen = resolve_features(index, features)
    key = tuple((var, tuple(cols)) for var, cols in chosen.items())
    if key not in index.stats:
        width = sum(len(c) for c in chosen.values())
        total, sq, count = np.zeros(width), np.zeros(width), 0
        done = index.done([v for v in chosen if v in index.groups] or None)
        for start, block in iter_blocks(store, chosen, block_bytes=block_bytes):
            x = block[done[start: start + len(block)]].astype(np.float64)
            total += x.sum(axis=0)
            sq += np.einsum("ij,ij->j", x, x)
            count += len(x)
        if count == 0:
            raise StoreError("store has no finished segments")
        mean = total / count
        std = np.sqrt(np.maximum(sq / count - mean**2, 0.0))
        std[~(std > 1e-12 * np.maximum(1.0, np.abs(mean)))] = 1.0
        index.stats[key] = (mean, std)
    return index.stats[key]


def distances(block: np.ndarray, query: np.ndarray, metric: str = "cosine") -> np.ndarray:
    """Distances from each row of ``block`` to ``query``.

    Parameters
    ----------
    block : numpy.ndarray
        ``(n, d)`` float32 rows.
    query : numpy.ndarray
        ``(d,)`` query vector.
    metric : {"cosine", "euclidean"}
        ``1 - cos`` angle, or straight-line distance.

    Returns
    -------
    numpy.ndarray
        float64 ``(n,)``, never below 0; rows with NaN, or zero rows under cosine,
        get ``inf``.
    """
    q = np.asarray(query, np.float32)
    # float32 throughout: no float64 copy of the block
    if metric == "cosine":
        norms = np.sqrt(np.einsum("ij,ij->i", block, block)).astype(np.float64)
        qn = float(np.sqrt(np.dot(q.astype(np.float64), q)))
        with np.errstate(invalid="ignore", divide="ignore"):
            d = 1.0 - (block @ q).astype(np.float64) / (norms * qn)
        np.maximum(d, 0.0, out=d)  # rounding puts identical rows a hair below 0
    elif metric == "euclidean":
        diff = block - q
        d = np.sqrt(np.einsum("ij,ij->i", diff, diff)).astype(np.float64)
    else:
        raise EmodistError(f"unknown metric {metric!r}; use {' or '.join(METRICS)}")
    d[~np.isfinite(d)] = np.inf
    return d


def merge_topk(best_d, best_p, d, p, k: int):
    """Keep the ``k`` smallest distances of two candidate sets.

    Parameters
    ----------
    best_d, best_p : numpy.ndarray
        Current best distances and positions.
    d, p : numpy.ndarray
        New candidates.
    k : int
        How many to keep.

    Returns
    -------
    distances, positions : numpy.ndarray
        Sorted by distance, then position.
    """
    d = np.concatenate([best_d, d])
    p = np.concatenate([best_p, p])
    if len(d) > k:
        kth = d[np.argpartition(d, k - 1)[k - 1]]
        keep = d <= kth  # ties at the cut are settled by position below
        d, p = d[keep], p[keep]
    order = np.lexsort((p, d))[:k]
    return d[order], p[order]


def default_features(ds) -> str | None:
    """The group :func:`similar` compares by default.

    The last stored group that runs a model on the audio (an embedding such
    as ``musicnn_msd``), else the first stored group; never a trained model's
    probabilities (a head, ``emodist predict``), which are asked for by name.
    """
    index = ds.emodist.index
    recorded = ds.attrs.get("feature_groups") or {}

    def head(g):
        return (recorded.get(g, {}).get("input") or {}).get("kind") == "groups"

    models = [g for g in index.groups if recorded.get(g, {}).get("model_sha256") and not head(g)]
    plain = [g for g in index.groups if not head(g)] or index.groups
    return models[-1] if models else (plain[0] if plain else None)


def _space(ds, features, metric: str, k: int, standardize, block_bytes: int):
    """What a query compares: the index, the chosen columns, their groups and scaling."""
    if metric not in METRICS:
        raise EmodistError(f"unknown metric {metric!r}; use {' or '.join(METRICS)}")
    if int(k) < 1:
        raise EmodistError(f"k must be a positive number of neighbours, not {k}")
    index = ds.emodist.index
    recorded = ds.attrs.get("feature_groups") or {}
    if features is None:
        features = default_features(ds)
    chosen = resolve_features(index, features)
    if not chosen:
        raise EmodistError("similar needs at least one feature column; features is empty")
    groups = [v for v in chosen if v in index.groups] or None
    if standardize is None:
        standardize = any(not recorded.get(var, {}).get("model_sha256") for var in chosen)
    scale = column_stats(ds, features, block_bytes=block_bytes) if standardize else None
    return index, chosen, groups, scale


def _scaled_query(q, scale, width: int) -> np.ndarray:
    q = np.asarray(q, dtype=np.float64).ravel()
    if q.shape != (width,):
        raise EmodistError(f"query vector has {q.size} values; the features have {width}")
    if scale is not None:
        q = (q - scale[0]) / scale[1]
    return np.asarray(q, np.float32)


def similar(ds, segment_id: str | None = None, *, vector=None, k: int = 10, features=None,
            metric: str = "cosine", exclude_same_track: bool = False,
            standardize: bool | None = None, labels=None, genres=None,
            block_bytes: int = BLOCK_BYTES) -> pd.DataFrame:
    """The ``k`` segments nearest to a stored segment or to a vector.

    The store is streamed block by block with a running top-k, so memory
    stays at the store's coordinate index plus a few blocks (the block in
    use, the next one being read and decoded) whatever the store's size.

    Parameters
    ----------
    ds : xarray.Dataset
        An opened store (also ``ds.emodist.similar(...)``).
    segment_id : str, optional
        Query with this segment's own features (it is never its own match).
    vector : array_like, optional
        Query with this vector instead, in the (unstandardised) feature
        space of ``features``.
    k : int
        Number of neighbours.
    features : str or sequence of str, optional
        Groups (``"inception_v3"``, ``"handcrafted+musicnn_msd"``), names or
        patterns; default :func:`default_features`.
    metric : {"cosine", "euclidean"}
        Distance.
    exclude_same_track : bool
        Leave out segments of the query segment's track.
    standardize : bool, optional
        Z-score each column over the done segments first; default: when any
        column of a group without a model (handcrafted) or a vote column is
        used (their scales differ).
    labels, genres : str or sequence of str, optional
        Search only among segments of these classes or genres.
    block_bytes : int
        Uncompressed bytes per streamed block.

    Returns
    -------
    pandas.DataFrame
        Columns ``rank``, ``segment_id``, ``track_id``, ``segment_index``,
        ``start_s``, ``label``, ``genre``, ``distance``; nearest first.

    Raises
    ------
    EmodistError
        Unknown segment, feature or metric; both or neither of
        ``segment_id`` and ``vector``; a query segment without features.
    """
    if (segment_id is None) == (vector is None):
        raise EmodistError("give a query segment id or a vector, not both or neither")
    index, chosen, groups, scale = _space(ds, features, metric, k, standardize, block_bytes)
    width = sum(len(c) for c in chosen.values())
    query_pos = -1
    if segment_id is not None:
        query_pos = int(positions(index, segments=segment_id, include_incomplete=True)[0])
        if not index.done(groups)[query_pos]:
            raise StoreError(f"segment {segment_id!r} has no {'+'.join(groups or index.groups)} "
                             "features (pending or failed)")
        rows = np.array([query_pos])
        vector = np.hstack([read_rows(ds, var, rows, cols)[0] for var, cols in chosen.items()])
    q = _scaled_query(vector, scale, width)
    if scale is not None:
        m32, s32 = scale[0].astype(np.float32), scale[1].astype(np.float32)
    allowed = _allowed(index, groups, labels, genres)
    if query_pos >= 0:
        allowed[query_pos] = False
        if exclude_same_track:
            allowed &= index.codes["track_id"] != index.codes["track_id"][query_pos]
    best_d, best_p = np.empty(0), np.empty(0, np.int64)
    for start, block in iter_blocks(ds, chosen, block_bytes=block_bytes):
        keep = np.flatnonzero(allowed[start: start + len(block)])
        if not len(keep):
            continue
        x = block if len(keep) == len(block) else block[keep]
        if scale is not None:
            x = (x - m32) / s32
        d = distances(x, q, metric)
        finite = np.isfinite(d)
        best_d, best_p = merge_topk(best_d, best_p, d[finite], keep[finite] + start, int(k))
    meta = index.meta(best_p)
    out = pd.DataFrame({"rank": np.arange(1, len(best_p) + 1)})
    for name in ("segment_id", "track_id", "segment_index", "start_s", "label", "genre"):
        out[name] = meta[name].to_numpy()
    out["distance"] = best_d
    return out


def _allowed(index, groups, labels, genres) -> np.ndarray:
    """Rows a query may return: done in ``groups``, of the classes and genres asked."""
    if labels or genres:
        allowed = np.zeros(index.n, bool)
        allowed[positions(index, labels=labels, genres=genres, groups=groups)] = True
        return allowed
    return index.done(groups)


def track_columns(ds, track_id: str, chosen: dict, groups) -> np.ndarray:
    """The mean over a stored track's done segments of the ``chosen`` columns.

    Raises
    ------
    EmodistError
        An unknown track, or one with no done segment in ``groups``.
    """
    index = ds.emodist.index
    rows = positions(index, tracks=track_id, groups=groups)
    if not len(rows):
        raise StoreError(f"track {track_id!r} has no {'+'.join(groups or index.groups)} "
                         "features (pending or failed)")
    x = np.hstack([read_rows(ds, var, rows, cols) for var, cols in chosen.items()])
    return x.astype(np.float64).mean(axis=0)


def similar_tracks(ds, track_id: str | None = None, *, vector=None, k: int = 10, features=None,
                   metric: str = "cosine", standardize: bool | None = None, labels=None,
                   genres=None, block_bytes: int = BLOCK_BYTES) -> pd.DataFrame:
    """The ``k`` tracks nearest to a stored track or to a vector.

    A track is the mean of its done segments' rows (standardised as in
    :func:`similar`, with the same per-segment column statistics); the
    store is streamed block by block, each track compared once its last
    segment has been read, so memory stays at the index, a few blocks and the
    sums of the tracks that straddle a block's end.

    Parameters
    ----------
    ds : xarray.Dataset
        An opened store (also ``ds.emodist.similar_tracks(...)``).
    track_id : str, optional
        Query with this track's mean (it is never its own match).
    vector : array_like, optional
        Query with this vector instead: a track's mean in the
        (unstandardised) feature space of ``features`` (a file featurised
        with the store's spec, :func:`emodist.engine.similar.similar_audio`).
    k, features, metric, standardize, labels, genres, block_bytes
        As in :func:`similar`.

    Returns
    -------
    pandas.DataFrame
        Columns ``rank``, ``track_id``, ``path``, ``label``, ``genre``,
        ``n_segments``, ``distance``; nearest first (ties by store order).

    Raises
    ------
    EmodistError
        Unknown track, feature or metric; both or neither of ``track_id``
        and ``vector``; a query track without features.
    """
    if (track_id is None) == (vector is None):
        raise EmodistError("give a query track id or a vector, not both or neither")
    index, chosen, groups, scale = _space(ds, features, metric, k, standardize, block_bytes)
    width = sum(len(c) for c in chosen.values())
    allowed = _allowed(index, groups, labels, genres)
    codes = index.codes["track_id"]
    if track_id is not None:
        vector = track_columns(ds, track_id, chosen, groups)
        allowed &= codes != codes_for(index, "track_id", [str(track_id)])[0]
    q = _scaled_query(vector, scale, width)
    kept = np.flatnonzero(allowed)
    n_tracks = len(index.categories["track_id"])
    last = np.full(n_tracks, -1, np.int64)
    last[codes[kept]] = kept  # positions ascend: the last write is a track's last row
    first = np.full(n_tracks, -1, np.int64)
    first[codes[kept[::-1]]] = kept[::-1]
    sums: dict[int, np.ndarray] = {}
    counts = np.zeros(n_tracks, np.int64)
    best_d, best_p = np.empty(0), np.empty(0, np.int64)
    for start, block in iter_blocks(ds, chosen, block_bytes=block_bytes):
        keep = np.flatnonzero(allowed[start: start + len(block)])
        if not len(keep):
            continue
        c = codes[keep + start]
        uniq, inv = np.unique(c, return_inverse=True)
        part = np.zeros((len(uniq), width))
        np.add.at(part, inv, block[keep].astype(np.float64))
        counts[uniq] += np.bincount(inv, minlength=len(uniq))
        for u, row in zip(uniq, part):
            sums[u] = sums[u] + row if u in sums else row
        done = [u for u in uniq if last[u] < start + len(block)]
        if not done:
            continue
        x = np.stack([sums.pop(u) / counts[u] for u in done])
        if scale is not None:
            x = (x - scale[0]) / scale[1]
        d = distances(x.astype(np.float32), q, metric)
        finite = np.isfinite(d)
        best_d, best_p = merge_topk(best_d, best_p, d[finite], first[np.asarray(done)][finite],
                                    int(k))
    meta = index.meta(best_p)
    out = pd.DataFrame({"rank": np.arange(1, len(best_p) + 1)})
    for name in ("track_id", "path", "label", "genre"):
        out[name] = meta[name].to_numpy()
    out["n_segments"] = counts[codes[best_p]]
    out["distance"] = best_d
    return out
