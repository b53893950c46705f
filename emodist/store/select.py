"""Read feature rows by position, and :func:`select`: filtered rows as a table.

Only the chunks holding the wanted rows are read: a store opened with
:func:`emodist.store.open_store` is read through its Zarr arrays (many chunks
per call, concurrently); any other Dataset through its dask arrays.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from emodist.data.labels import GEMS
from emodist.store.index import as_list, positions, resolve_features

__all__ = ["EMOTION_LEVELS", "block_bounds", "by_emotion", "is_share", "iter_blocks", "models",
           "read_rows", "read_values", "select"]

#: Suffix of a model's per-track probabilities (written by ``emodist predict``).
TRACK_PROBABILITY = "_track_probability"
#: Suffix of a tag or regression model's per-track means (written by ``emodist predict``).
TRACK_MEAN = "_track_mean"
#: What :func:`by_emotion` ranks: tracks (mean over their segments) or segments.
EMOTION_LEVELS = ("track", "segment")


def _index_or_slice(idx: np.ndarray):
    """``idx`` as a slice when it is a contiguous run, else as is."""
    if len(idx) and idx[-1] - idx[0] + 1 == len(idx) and np.all(np.diff(idx) == 1):
        return slice(int(idx[0]), int(idx[-1]) + 1)
    return idx


def _lazy_rows(darr, rows, cols):
    """Lazy dask selection of ``rows`` x ``cols`` touching only their chunks."""
    sub = darr[rows]
    if not (isinstance(cols, slice) and cols == slice(0, darr.shape[1])):
        sub = sub[:, cols]
    return sub


def read_values(store, chosen: dict, rows) -> list[np.ndarray]:
    """Values of feature variables at some rows, reading only their chunks.

    A Dataset from :func:`open_store` is read through its Zarr arrays
    directly (many chunks per call, concurrently); any other Dataset through
    its dask arrays (or its in-memory arrays).

    Parameters
    ----------
    store : xarray.Dataset
        An opened store.
    chosen : dict of str to sequence of int
        ``{variable: columns}`` as from :func:`resolve_features`.
    rows : numpy.ndarray or slice
        Sorted int positions along ``segment``, or a slice.

    Returns
    -------
    list of numpy.ndarray
        One ``(n_rows, len(columns))`` array per variable.
    """
    import dask

    if not isinstance(rows, slice):
        rows = _index_or_slice(np.asarray(rows, dtype=np.int64))
    sel = [(var, _index_or_slice(np.asarray(cols, dtype=np.int64))) for var, cols in chosen.items()]
    group = store.emodist.zarr_group
    if group is not None:
        return [np.asarray(group[var].get_orthogonal_selection((rows, cols))) for var, cols in sel]
    parts = [_lazy_rows(store[var].data, rows, cols) for var, cols in sel]
    lazy = [i for i, x in enumerate(parts) if dask.is_dask_collection(x)]  # not in-memory ones
    n_blocks = sum(int(np.prod(parts[i].numblocks)) for i in lazy)
    scheduler = "sync" if n_blocks <= 2 else "threads"
    for i, arr in zip(lazy, dask.compute(*(parts[i] for i in lazy), scheduler=scheduler)):
        parts[i] = arr
    return [np.asarray(a) for a in parts]


def read_rows(store, variable: str, rows, cols=None) -> np.ndarray:
    """Values of ``variable`` at row positions ``rows`` (and columns ``cols``).

    Only the chunks that hold the rows are read.

    Parameters
    ----------
    store : xarray.Dataset
        An opened store.
    variable : str
        A feature group (``"handcrafted"``), ``"votes"`` or ``"votes_mean"``.
    rows : numpy.ndarray or slice
        Sorted int positions along ``segment``.
    cols : sequence of int, optional
        Column positions; all when ``None``.

    Returns
    -------
    numpy.ndarray
        ``(n_rows, n_cols)`` values.
    """
    if cols is None:
        cols = range(store[variable].shape[1])
    return read_values(store, {variable: cols}, rows)[0]


def select(ds, tracks=None, labels=None, genres=None, segments=None, features=None, *,
           include_incomplete: bool = False) -> pd.DataFrame:
    """Feature values of the segments that match the filters, as a table.

    Also ``ds.emodist.select(...)``.

    Parameters
    ----------
    ds : xarray.Dataset
        An opened store (:func:`emodist.store.open_store`).
    tracks, labels, genres, segments : str or sequence of str, optional
        Keep only segments of these tracks, classes, genres or segment ids;
        filters combine with *and*.
    features : str or sequence of str, optional
        Groups (``"handcrafted"``, ``"handcrafted+inception_v3"``, ``"votes"``),
        names or glob patterns (``"mfcc_*"``); see
        :func:`emodist.store.index.resolve_features`.  An empty list gives the
        metadata columns only.
    include_incomplete : bool
        Keep segments not done in the chosen groups (NaN features) and add one
        ``NAME_status`` column per group.

    Returns
    -------
    pandas.DataFrame
        One row per segment in store order: ``segment_id`` and the other
        per-segment coordinates, then one column per feature.

    Raises
    ------
    EmodistError
        An unknown track, label, genre, segment or feature.

    Examples
    --------
    >>> ds.emodist.select(tracks="17", features=["mfcc_*"])  # doctest: +SKIP
    """
    index = ds.emodist.index
    chosen = {} if features is not None and not as_list(features) else (
        resolve_features(index, features))
    groups = [v for v in chosen if v in index.groups] or None
    rows = positions(index, tracks, labels, genres, segments, groups=groups,
                     include_incomplete=include_incomplete)
    meta = index.meta(rows)
    if include_incomplete:
        for g in groups or index.groups:
            meta[f"{g}_status"] = index.status[g][rows]
    if not len(rows) or not chosen:
        values = [np.empty((len(rows), len(c)), np.float32) for c in chosen.values()]
    else:
        values = read_values(ds, chosen, rows)
    frames = [meta] + [pd.DataFrame(v, columns=[index.feature_names[var][c] for c in cols])
                       for v, (var, cols) in zip(values, chosen.items())]
    return pd.concat(frames, axis=1) if len(frames) > 1 else meta


def _blocks(chunks: tuple[int, ...], row_bytes: int, block_bytes: int) -> list[tuple[int, int]]:
    """Group consecutive chunks along ``segment`` into ``[start, stop)`` blocks."""
    target = max(1, block_bytes // max(1, row_bytes))
    out, start, stop = [], 0, 0
    for c in chunks:
        stop += c
        if stop - start >= target:
            out.append((start, stop))
            start = stop
    if stop > start:
        out.append((start, stop))
    return out


def block_bounds(var, row_bytes: int, block_bytes: int) -> list[tuple[int, int]]:
    """``[start, stop)`` blocks of whole chunks of ``var`` along ``segment``.

    A dask-backed variable has its chunks; an in-memory one (``ds.load()``,
    a Dataset built in memory) those recorded in its encoding, else none:
    it is cut into blocks of ``block_bytes``.
    """
    n = int(var.shape[0])
    chunks = getattr(var.data, "chunks", None)
    if chunks and isinstance(chunks[0], tuple):
        return _blocks(chunks[0], row_bytes, block_bytes)
    size = (var.encoding.get("chunks") or (0,))[0] or block_bytes // max(1, row_bytes)
    size = max(1, int(size))
    return _blocks((size,) * (n // size) + ((n % size,) if n % size else ()), row_bytes,
                   block_bytes)


def _read_block(ds, chosen: dict, start: int, stop: int) -> np.ndarray:
    parts = read_values(ds, chosen, slice(start, stop))
    block = parts[0] if len(parts) == 1 else np.hstack(parts)
    return block.astype(np.float32, copy=False)


def iter_blocks(ds, chosen: dict, *, block_bytes: int):
    """Yield ``(start, values)`` blocks of whole chunks, reading the next while one is used.

    Parameters
    ----------
    ds : xarray.Dataset
        An opened store, read as :func:`read_values` reads it.
    chosen : dict of str to sequence of int
        ``{variable: columns}`` as from :func:`resolve_features`.
    block_bytes : int
        Uncompressed float32 bytes per block (at least one chunk).

    Yields
    ------
    start : int
        Row position of the block's first segment.
    values : numpy.ndarray of float32, shape (n_rows, n_columns)
        The chosen columns, variables side by side in ``chosen``'s order.
    """
    import concurrent.futures

    var0 = next(iter(chosen))
    width = sum(len(c) for c in chosen.values())
    bounds = block_bounds(ds[var0], 4 * width, block_bytes)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        pending = None
        for i, (a, b) in enumerate(bounds):
            if pending is None:
                pending = pool.submit(_read_block, ds, chosen, a, b)
            block = pending.result()
            pending = None
            if i + 1 < len(bounds):
                pending = pool.submit(_read_block, ds, chosen, *bounds[i + 1])
            yield a, block


def models(ds) -> list[str]:
    """The trained models whose predictions the store holds (``emodist predict``)."""
    return sorted(str(v)[: -len(suffix)] for v in ds.data_vars
                  for suffix in (TRACK_PROBABILITY, TRACK_MEAN) if str(v).endswith(suffix))


def _track_variable(ds, name: str) -> str:
    return name + (TRACK_PROBABILITY if name + TRACK_PROBABILITY in ds else TRACK_MEAN)


def is_share(ds, name: str) -> bool:
    """Whether model ``name``'s outputs lie in [0, 1]: probabilities of classes or tags, or
    predicted GEMS vote shares (not valence on its own scale)."""
    if name + TRACK_PROBABILITY in ds:
        return True
    params = (ds.attrs.get("feature_groups", {}).get(name) or {}).get("params", {})
    classes = list(params.get("classes", ()))
    return params.get("output_name") == "probabilities" or (
        bool(classes) and all(c in GEMS for c in classes))


def by_emotion(ds, emotion: str, *, model: str | None = None, min: float = 0.0,
               level: str = "track") -> pd.DataFrame:
    """Tracks (or segments) whose predicted share of ``emotion`` is at least ``min``, best first.

    Any model ``emodist predict`` wrote ranks: class or emotion-distribution
    probabilities, tag probabilities, predicted vote shares, or a
    regression's values (valence on its own scale: ``min`` is on that scale).

    Parameters
    ----------
    ds : xarray.Dataset
        A store holding a model's predictions (:func:`emodist.store.open_store`).
    emotion : str
        One of the model's outputs (a class, a tag or a target column:
        ``calmness``...).
    model : str, optional
        The model's name; needed only when the store holds several.
    min : float
        Smallest predicted value kept (default 0: for probabilities and
        shares, every track, ranked).
    level : {"track", "segment"}
        Rank tracks by their mean over their segments, or segments.

    Returns
    -------
    pandas.DataFrame
        ``track_id`` (and ``segment_id``, ``start_s`` for segments), the
        predicted value of ``emotion`` and, where the model has one, the
        dominant class, sorted by that value, highest first.

    Raises
    ------
    EmodistError
        No predictions in the store, an ambiguous or unknown model, an
        emotion the model does not predict, or, for probabilities and
        shares, ``min`` outside [0, 1].
    """
    from emodist.errors import EmodistError
    from emodist.store import layout

    names = models(ds)
    if not names:
        raise EmodistError("the store holds no predictions (run emodist predict into it)",
                           param="store")
    if model is None and len(names) > 1:
        raise EmodistError(f"the store holds several models ({', '.join(names)}); name one",
                           param="model")
    name = model or names[0]
    if name not in names:
        raise EmodistError(f"no predictions of model {name!r} (the store has {', '.join(names)})",
                           param="model")
    classes = list(layout.decode_strings(ds[layout.feature_dim(name)].values))
    if emotion not in classes:
        raise EmodistError(f"model {name} predicts {', '.join(classes)}, not {emotion!r}",
                           param="emotion")
    if level not in EMOTION_LEVELS:
        raise EmodistError(f"level is {' or '.join(EMOTION_LEVELS)}, not {level!r}", param="level")
    share = is_share(ds, name)
    if share and not 0.0 <= float(min) <= 1.0:  # a percentage (60) would silently keep nothing
        raise EmodistError(f"a predicted share is between 0 and 1, not {min}", param="min")
    col = classes.index(emotion)
    dominant = f"{name}_dominant" in ds  # classes and GEMS shares; not tags, not valence
    if level == "track":
        probs = np.asarray(ds[_track_variable(ds, name)].values, np.float64)
        out = pd.DataFrame({"track_id": layout.decode_strings(ds[f"{name}_track"].values),
                            emotion: probs[:, col]})
        if dominant:
            out["dominant"] = layout.decode_strings(ds[f"{name}_dominant"].values)
    else:
        probs = np.asarray(ds[name].values, np.float64)
        done = np.asarray(ds[layout.status_name(name)].values) == layout.STATUS_DONE
        out = pd.DataFrame({"segment_id": layout.decode_strings(ds[layout.SEGMENT].values),
                            "track_id": layout.decode_strings(ds["track_id"].values),
                            "start_s": np.asarray(ds["start_s"].values, np.float64),
                            emotion: probs[:, col]})
        if dominant:
            out["dominant"] = np.asarray(classes)[np.argmax(np.nan_to_num(probs, nan=-1), 1)]
        out = out[done]
    out = out[out[emotion] >= float(min)]
    return out.sort_values(emotion, ascending=False, kind="stable").reset_index(drop=True)
