"""Streaming evaluation: grouped cross-validation over a store larger than memory.

The in-memory evaluation (:func:`emodist.learn.evaluate.run_evaluate`) loads
every feature row.  :func:`stream_evaluate` keeps only a few bytes per segment
on the driver (label, group, track and fold codes, the out-of-fold prediction
and its class probabilities) and reads the features block by block, whole
chunks at a time, the next block read while one is used
(:func:`emodist.store.select.iter_blocks`):

1. one pass: each fold's row count, column sums and sums of squares (float64,
   shifted by the first block's means) -- the standardisation of fold ``k``'s
   training rows is the mean and standard deviation of the other folds' rows,
   exactly what :class:`~sklearn.preprocessing.StandardScaler` would find on
   them;
2. ``epochs`` passes: the rows of each block in a seeded random order, each
   fold's :class:`~sklearn.linear_model.SGDClassifier` (logistic loss)
   ``partial_fit`` on its training rows of the block, standardised;
3. one pass: each fold's model predicts its test rows.

Folds are those of the in-memory evaluation on the same segments
(:func:`emodist.learn.folds.make_folds`: grouped by the store's ``group``,
else the track, stratified by label).  The scores are those
of the in-memory evaluation (:func:`emodist.learn.scoring.classification_metrics`,
track level by majority vote and by mean probability); ``write_report``
writes the same report files.
"""

from __future__ import annotations

import datetime as _dt
import logging
import time
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.linear_model import SGDClassifier

from emodist._version import __version__
from emodist.errors import EmodistError, StoreError
from emodist.learn.data import (
    emotion_order,
    open_dataset,
    resolve_feature_sets,
    store_info,
    stored_groups,
)
from emodist.learn.folds import (
    GROUP_WORDS,
    describe_splitter,
    fold_groups,
    fold_splitter,
    make_folds,
)
from emodist.learn.report import write_report
from emodist.learn.scoring import (
    baseline_rates,
    classification_metrics,
    rank_results,
    track_level,
    track_mean_proba,
)
from emodist.learn.spec import STREAM_BLOCK_BYTES, STREAM_MODEL, EvaluationSpec
from emodist.progress import progress_bar
from emodist.store.select import block_bounds, iter_blocks

__all__ = ["STREAM_BLOCK_BYTES", "STREAM_MODEL", "FoldStats", "StreamRows", "stream_evaluate",
           "stream_fit_predict", "stream_rows"]

log = logging.getLogger("emodist.learn.evaluate")


@dataclass
class StreamRows:
    """The per-segment codes of a streamed evaluation (every array has one row per segment).

    Attributes
    ----------
    take : numpy.ndarray of bool
        Segments evaluated: done in every group of the feature sets, labelled.
    y : numpy.ndarray of int8
        Class code (``-1`` where not taken).
    fold : numpy.ndarray of int8
        Test fold (``-1`` where not taken).
    track : numpy.ndarray of int32
        Track code.
    classes : list of str
    tracks : numpy.ndarray of str
        Track id of each track code.
    n_groups : int
    group_by : str
    cv : str
        The splitter, in words (:func:`emodist.learn.folds.describe_splitter`).
    """

    take: np.ndarray
    y: np.ndarray
    fold: np.ndarray
    track: np.ndarray
    classes: list
    tracks: np.ndarray
    n_groups: int
    group_by: str
    cv: str = ""


def stream_rows(index, groups_needed, classes_order, *, n_folds: int, seed: int) -> StreamRows:
    """Codes and folds of the evaluated segments from a store's index.

    Parameters
    ----------
    index : emodist.store.index.StoreIndex
        The store's per-segment codes (``ds.emodist.index``).
    groups_needed : sequence of str
        Feature groups that must be done on an evaluated segment.
    classes_order : sequence of str
        Display order of the classes (the store's emotions).
    n_folds, seed : int
        Folds of :func:`emodist.learn.folds.make_folds`: the folds the
        in-memory evaluation draws on the same segments.

    Returns
    -------
    StreamRows

    Raises
    ------
    emodist.errors.StoreError
        No finished, labelled segment.
    emodist.errors.EmodistError
        Too few groups for the folds (``param="folds"``).
    """
    take = index.done(groups_needed)
    label_names = index.categories["label"]
    present = [str(c) for c in label_names if str(c)]
    classes = [c for c in classes_order if c in present] + sorted(set(present) - set(classes_order))
    to_class = np.array([classes.index(str(c)) if str(c) in classes else -1 for c in label_names], np.int8)
    y = to_class[index.codes["label"]]
    take &= y >= 0
    if not take.any():
        raise StoreError("the store has no finished, labelled segments to evaluate")
    track = index.codes["track_id"]
    tracks = index.categories["track_id"]
    grp = index.categories["group"][index.codes["group"]] if "group" in index.codes else None
    groups, group_by = fold_groups(grp, tracks[track])
    word, words = GROUP_WORDS[group_by]
    labels = np.asarray(classes, dtype=object)[y[take]]
    fold = np.full(index.n, -1, np.int8)
    fold[take] = make_folds(labels, groups[take], n_folds, seed, unit=words)
    cv = describe_splitter(fold_splitter(labels, groups[take], n_folds, seed), word)
    return StreamRows(take=take, y=np.where(take, y, -1).astype(np.int8), fold=fold, track=track,
                      classes=classes, tracks=tracks, n_groups=len(pd.unique(groups[take])),
                      group_by=group_by, cv=cv)


@dataclass
class FoldStats:
    """Per-fold count, sum and sum of squares of every column, shifted by ``shift``.

    Attributes
    ----------
    shift : numpy.ndarray, shape (width,)
        The first block's column means (``None`` before the first block).
    count : numpy.ndarray, shape (n_folds,)
    total, squares : numpy.ndarray, shape (n_folds, width)
    """

    shift: np.ndarray
    count: np.ndarray
    total: np.ndarray
    squares: np.ndarray

    @classmethod
    def empty(cls, n_folds: int, width: int) -> FoldStats:
        return cls(shift=None, count=np.zeros(n_folds), total=np.zeros((n_folds, width)),
                   squares=np.zeros((n_folds, width)))

    def add(self, x: np.ndarray, fold: np.ndarray) -> None:
        """Add a block's rows ``x`` (shape ``(m, width)``) of test folds ``fold``."""
        x = x.astype(np.float64)
        if self.shift is None:
            self.shift = x.mean(axis=0) if len(x) else np.zeros(x.shape[1])
        x -= self.shift
        for k in np.unique(fold):
            rows = x[fold == k]
            self.count[k] += len(rows)
            self.total[k] += rows.sum(axis=0)
            self.squares[k] += np.einsum("ij,ij->j", rows, rows)

    def training_scaler(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Mean and scale of the rows outside fold ``k`` (scale 1 for a constant column)."""
        n = self.count.sum() - self.count[k]
        s1 = self.total.sum(axis=0) - self.total[k]
        s2 = self.squares.sum(axis=0) - self.squares[k]
        m = s1 / n
        var = np.maximum(s2 / n - m**2, 0.0)
        mean = self.shift + m
        scale = np.sqrt(var)
        scale[~(var > 1e-12 * np.maximum(1.0, mean**2))] = 1.0
        return mean, scale


def _blocks(ds, chosen, rows: StreamRows, block_bytes: int):
    """``(positions, features)`` of the evaluated rows of each streamed block."""
    for start, block in iter_blocks(ds, chosen, block_bytes=block_bytes):
        keep = rows.take[start: start + len(block)]
        x = block[keep]
        if not np.isfinite(x).all():
            raise StoreError(f"finished segments near row {start} have non-finite features")
        yield start + np.flatnonzero(keep), x


def _models(n_folds: int, seed: int, alpha: float):
    return [SGDClassifier(loss="log_loss", alpha=alpha, average=True, random_state=seed)
            for _ in range(n_folds)]


def stream_fit_predict(ds, chosen, rows: StreamRows, *, weights: bool, seed: int, epochs: int,
                       alpha: float, block_bytes: int, tick=None) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold predictions of one feature set, streaming the store ``epochs + 2`` times.

    Returns
    -------
    pred : numpy.ndarray of int8, shape (n_segments,)
        Predicted class code of every evaluated segment (``-1`` elsewhere).
    proba : numpy.ndarray of float32, shape (n_segments, n_classes)
    """
    n_folds = int(rows.fold.max()) + 1
    codes = np.arange(len(rows.classes))
    width = sum(len(c) for c in chosen.values())
    stats = FoldStats.empty(n_folds, width)
    for pos, x in _blocks(ds, chosen, rows, block_bytes):
        stats.add(x, rows.fold[pos])
        if tick is not None:
            tick()
    scalers = [stats.training_scaler(k) for k in range(n_folds)]
    class_w = np.ones((n_folds, len(codes)))
    if weights:
        for k in range(n_folds):
            train = rows.take & (rows.fold != k)
            counts = np.bincount(rows.y[train], minlength=len(codes)).astype(np.float64)
            class_w[k] = np.where(counts > 0, counts.sum() / (len(codes) * np.maximum(counts, 1)), 0.0)
    models = _models(n_folds, seed, alpha)
    for epoch in range(epochs):
        for pos, x in _blocks(ds, chosen, rows, block_bytes):
            order = np.random.default_rng([seed, epoch, int(pos[0]) if len(pos) else 0]).permutation(len(pos))
            pos, x = pos[order], x[order]
            y, f = rows.y[pos], rows.fold[pos]
            for k, model in enumerate(models):
                train = f != k
                if train.any():
                    mean, scale = scalers[k]
                    xs = (x[train] - mean) / scale
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        model.partial_fit(xs, y[train], classes=codes, sample_weight=class_w[k][y[train]])
            if tick is not None:
                tick()
    pred = np.full(len(rows.y), -1, np.int8)
    proba = np.zeros((len(rows.y), len(codes)), np.float32)
    for pos, x in _blocks(ds, chosen, rows, block_bytes):
        f = rows.fold[pos]
        for k, model in enumerate(models):
            test = f == k
            if test.any():
                mean, scale = scalers[k]
                p = model.predict_proba((x[test] - mean) / scale)
                proba[pos[test]] = p
                pred[pos[test]] = np.argmax(p, axis=1)
        if tick is not None:
            tick()
    return pred, proba


def _chosen(index, fs) -> dict:
    position = {var: {n: i for i, n in enumerate(cols)} for var, cols in index.feature_names.items()}
    return {g: [position[g][n] for n in names] for g, names in fs.columns}


def _score(rows: StreamRows, pred, proba) -> dict:
    take = rows.take
    classes = np.asarray(rows.classes, dtype=object)
    y_true, y_pred, folds = classes[rows.y[take]], classes[pred[take]], rows.fold[take]
    track_id = rows.tracks[rows.track[take]]
    t_true, t_pred, t_folds = track_level(y_true, y_pred, folds, track_id, rows.classes)
    first = list(pd.unique(track_id))
    t_mean = track_mean_proba(proba[take], track_id, rows.classes).loc[first].to_numpy()
    return {"segment": classification_metrics(y_true, y_pred, folds, rows.classes),
            "track": classification_metrics(t_true, t_pred, t_folds, rows.classes),
            "track_proba": classification_metrics(t_true, t_mean, t_folds, rows.classes)}


def stream_evaluate(store, spec: EvaluationSpec | None = None, *, storage_options: dict | None = None,
                    progress: bool = False, out: str | None = None, **evaluation) -> dict:
    """Grouped cross-validation of a streamed linear model, without loading the features.

    Parameters
    ----------
    store : str or xarray.Dataset
        Store URL or path, or a Dataset from :func:`emodist.store.open_store`.
    spec : EvaluationSpec, optional
        What to evaluate, with ``stream=True``.  Without it, the keyword
        arguments ``evaluation`` make one.
    storage_options : dict, optional
        Filesystem options for ``store``.
    progress : bool
        Progress bar over the streamed blocks.
    out : str, optional
        Folder or URL for ``report.json``, ``report.md`` and figures.
    **evaluation
        The fields of :class:`~emodist.learn.spec.EvaluationSpec` when no
        ``spec`` is given: ``features`` (as for
        :func:`~emodist.learn.evaluate.run_evaluate`), ``folds`` (5),
        ``seed`` (0: folds, shuffling and models), ``balance`` (``"none"``;
        ``weights``: each training row weighted ``n / (n_classes * n_class)``
        of its fold's training rows), ``epochs`` (5 passes of
        ``partial_fit``), ``alpha`` (1e-4, the L2 penalty), ``block_bytes``
        (64 MiB of uncompressed features per block, whole chunks).

    Returns
    -------
    dict
        A report in the layout of ``run_evaluate`` (no per-segment lists).

    Raises
    ------
    emodist.errors.EmodistError
        A setting with an unusable value (``param`` names it), or a spec
        that is not a streamed one.
    """
    if spec is None:
        spec = EvaluationSpec(stream=True, **evaluation)
    elif evaluation:
        raise TypeError(f"give the settings in spec or as keywords, not both: {', '.join(evaluation)}")
    if not spec.stream:
        raise EmodistError("not a streamed evaluation: give a spec with stream=True", param="stream")
    folds, seed, epochs, alpha, block_bytes = spec.folds, spec.seed, spec.epochs, spec.alpha, spec.block_bytes
    modes = spec.balance_modes
    ds = open_dataset(store, storage_options)
    index = ds.emodist.index
    sets = resolve_feature_sets(spec.features, stored_groups(ds))
    involved = list(dict.fromkeys(g for fs in sets for g in fs.groups))
    rows = stream_rows(index, involved, emotion_order(ds), n_folds=folds, seed=seed)
    t0 = time.perf_counter()
    results = []
    n_blocks = sum(_n_blocks(ds, index, fs, block_bytes) for fs in sets)
    with progress_bar(progress, "blocks", "block") as bar:
        task = None if bar is None else bar.add_task(
            "stream", total=n_blocks * (epochs + 2) * len(modes))
        tick = None if bar is None else (lambda: bar.update(task, advance=1))
        for fs in sets:
            chosen = _chosen(index, fs)
            for mode in modes:
                t1 = time.perf_counter()
                pred, proba = stream_fit_predict(ds, chosen, rows, weights=mode == "weights", seed=seed,
                                                 epochs=epochs, alpha=alpha, block_bytes=block_bytes,
                                                 tick=tick)
                row = {"features": fs.name, "n_features": len(fs.names), **STREAM_MODEL,
                       "params": {"loss": "log_loss", "alpha": alpha, "epochs": epochs, "average": True},
                       "balance": mode, "soft_targets": False,
                       "seconds": round(time.perf_counter() - t1, 3), **_score(rows, pred, proba)}
                results.append(row)
                log.info("streamed %s (%s) in %.1f s", fs.name, mode, row["seconds"])
    y_all = np.asarray(rows.classes, dtype=object)[rows.y[rows.take]]
    t_true, _, _ = track_level(y_all, y_all, rows.fold[rows.take],
                               rows.tracks[rows.track[rows.take]], rows.classes)
    report = {
        "emodist_version": __version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "settings": {"features": [fs.name for fs in sets], "feature_names": {},
                     "classifiers": list(spec.classifiers), "folds": folds, "seed": seed,
                     "balance": spec.balance, "label_rule": ds.attrs.get("label_rule", "listener"),
                     "target": spec.target, "rank_by": spec.rank_by, "cv": rows.cv,
                     "stratified_by": "label", "group_by": rows.group_by,
                     "executor": f"streamed (blocks of {block_bytes / 2**20:g} MiB, {epochs} epochs)"},
        "evaluation_spec": spec.to_dict(),
        "store": store_info(store if isinstance(store, str) else "<dataset>", ds),
        "data": {"n_segments": int(rows.take.sum()), "n_tracks": len(t_true), "n_groups": rows.n_groups,
                 "classes": rows.classes,
                 "class_counts": {c: int((rows.y[rows.take] == i).sum()) for i, c in enumerate(rows.classes)},
                 "excluded": {"not extracted or not labelled": int((~rows.take).sum())}},
        "skipped": [],
        "baselines": {"segment": baseline_rates(y_all, rows.classes),
                      "track": baseline_rates(t_true, rows.classes)},
        "seconds": round(time.perf_counter() - t0, 3),
        "results": rank_results(results, spec.rank_by),
        "ceiling": {"available": False, "reason": "not computed by the streamed evaluation"},
    }
    if out is not None:
        report["files"] = write_report(report, out, storage_options)
    return report


def _n_blocks(ds, index, fs, block_bytes: int) -> int:
    chosen = _chosen(index, fs)
    width = sum(len(c) for c in chosen.values())
    return len(block_bounds(ds[next(iter(chosen))], 4 * width, block_bytes))

