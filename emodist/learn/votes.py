"""Continuous and multi-label targets from a store's listener votes, and their report.

Each Emotify segment carries its track's two nine-way vote profiles
(:mod:`emodist.data.labels`; the store's ``votes`` and ``votes_mean``):

* ``listener``: each response's ticks divided by how many it ticked,
  averaged; the nine shares sum to 1 (the profile the label rule uses);
* ``mean``: the share of listeners who ticked each emotion (0..1 each).

:func:`evaluate_votes` predicts from them

* ``shares``: the nine shares as continuous targets
  (:mod:`emodist.learn.regression`);
* ``tags``: multi-label tags (:mod:`emodist.learn.multilabel`), each
  track's top three emotions (``tag_rule="top3"``) or every emotion at
  least ``min_share`` of the listeners chose (``tag_rule="threshold"``,
  on the ``mean`` profile);
* any other names: per-segment numeric variables of the store (a column of
  time-stamped annotations averaged per segment,
  :func:`emodist.data.annotations.segment_means`) or single emotions' shares.

A store without votes (DEAM, PMEmo, MTG-Jamendo) is evaluated on its
dataset's own targets (:mod:`emodist.learn.dataset_targets`): names are then
numeric columns of its catalog (``valence arousal``: per-segment means of the
0.5 s annotations where the dataset has them, else each track's static
rating), and ``tags`` is the catalog's ``tags`` column.

The outer folds are those of the classification evaluation
(:func:`emodist.learn.folds.make_folds`: grouped by the store's ``group``,
else ``track_id``, stratified by the stored label), or the dataset's
published splits (``fold_source="dataset"``: :func:`split_regression`,
:func:`split_multilabel`); hyper-parameters are chosen inside the training
folds.  :func:`write_vote_report` writes ``report.json`` and ``report.md``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emodist.errors import EmodistError, StoreError
from emodist.learn.data import (
    CONTEXTS,
    SEGMENT,
    feature_matrices,
    load_data,
    open_dataset,
    resolve_feature_sets,
    stored_groups,
    track_context,
    usable_rows,
)
from emodist.learn.dataset_targets import catalog_tags, catalog_targets, target_columns
from emodist.learn.folds import fold_groups, make_folds
from emodist.learn.multilabel import (
    evaluate_multilabel,
    fit_tags,
    keep_tags,
    multilabel_metrics,
    resolve_multilabel_presets,
    threshold_tags,
    top_k_tags,
)
from emodist.learn.regression import (
    REGRESSION_METRICS,
    evaluate_regression,
    fit_columns,
    regression_metrics,
    resolve_regression_presets,
    scatter_figure,
)
from emodist.learn.spec import FOLD_SOURCES, EvaluationSpec, check_choice, target_kind
from emodist.learn.tracks import published_splits, segment_groups
from emodist.store.layout import decode_strings
from emodist.store.zarrio import local_reads

__all__ = [
    "DEFAULT_PRESETS",
    "PROFILES",
    "TAG_RULES",
    "VOTE_TARGETS",
    "Targets",
    "VoteData",
    "column_targets",
    "evaluate_votes",
    "json_safe",
    "load_vote_data",
    "run_votes",
    "segment_tags",
    "split_multilabel",
    "split_regression",
    "summary_lines",
    "vote_report_markdown",
    "vote_tags",
    "vote_targets",
    "write_vote_report",
]

#: Vote profiles: listener-normalised shares, or the share of listeners per emotion.
PROFILES = ("listener", "mean")
#: How tags are made from the votes.
TAG_RULES = ("top3", "threshold")
#: The targets of :func:`evaluate_votes` beyond per-segment variables.
VOTE_TARGETS = ("shares", "tags")
#: Presets evaluated when none are given, per kind of target.
DEFAULT_PRESETS = {"regression": ("ridge",), "multilabel": ("logistic-regression",)}


@dataclass
class VoteData:
    """The evaluated segments of a store with their vote profiles.

    ``X`` (feature-set name -> matrix) and ``sets`` (the resolved feature
    sets) are those of :class:`emodist.learn.data.EvalData`.

    Attributes
    ----------
    track_id, segment_id, groups : numpy.ndarray of str
        ``groups``: the folds' groups (``group``, else ``track_id``).
    labels : numpy.ndarray of str
        Stored dominant emotion (the folds' strata; ``""`` in a store of a
        dataset without labels).
    profiles : dict
        ``"listener"`` / ``"mean"`` -> ``(n, 9)`` vote profile; empty when
        the store keeps no votes (its targets are its dataset's:
        :mod:`emodist.learn.dataset_targets`).
    emotions : tuple of str
        Column names of the profiles.
    ds : xarray.Dataset
        The opened store (for other target variables).
    index : numpy.ndarray of int
        Store positions of the rows.
    group_by : str
        What the folds' groups are (:func:`emodist.learn.folds.fold_groups`).
    excluded : dict
        Reason -> number of the store's segments left out.
    storage_options : dict or None
        fsspec options of the store (and of its dataset's location).
    """

    X: dict[str, np.ndarray]
    track_id: np.ndarray
    segment_id: np.ndarray
    groups: np.ndarray
    labels: np.ndarray
    profiles: dict[str, np.ndarray]
    emotions: tuple[str, ...]
    ds: object
    index: np.ndarray
    sets: list = field(default_factory=list)
    group_by: str = "track_id"
    excluded: dict = field(default_factory=dict)
    storage_options: dict | None = None


def _has_votes(ds) -> bool:
    return "votes" in ds and "votes_mean" in ds


def load_vote_data(store, features=None, storage_options: dict | None = None) -> VoteData:
    """Segments of a store with features done and, where it keeps them, both vote profiles.

    A store with vote profiles (Emotify) gives its segments with votes; a
    store without (a dataset whose targets are its catalog's columns) gives
    every segment whose features are done, and no profiles.

    Parameters
    ----------
    store : str or xarray.Dataset
    features : str or sequence of str, optional
        Feature-set spec (:func:`emodist.learn.data.resolve_feature_sets`).
    storage_options : dict, optional
        fsspec options of a remote store.

    Raises
    ------
    StoreError
        The store has no usable segment.
    """
    ds = open_dataset(store, storage_options)
    if not _has_votes(ds):
        return _catalog_data(ds, features, storage_options)
    data = load_data(ds, features, target="distribution")
    ids = [str(s) for s in np.asarray(ds[SEGMENT].values)]
    pos = {s: i for i, s in enumerate(ids)}
    index = np.array([pos[s] for s in data.segment_id], dtype=np.int64)
    profiles = {p: np.asarray(ds[v].isel({SEGMENT: index}).values, np.float64)
                for p, v in (("listener", "votes"), ("mean", "votes_mean"))}
    groups, group_by = fold_groups(data.group, data.track_id)
    return VoteData(X=data.X, track_id=data.track_id, segment_id=data.segment_id,
                    groups=np.asarray(groups, dtype=object), labels=data.y, profiles=profiles,
                    emotions=tuple(data.emotions), ds=ds, index=index, sets=list(data.sets),
                    group_by=group_by, excluded=dict(data.excluded),
                    storage_options=storage_options)


@local_reads()
def _catalog_data(ds, features, storage_options) -> VoteData:
    """Every segment of a store without votes whose feature groups are done."""
    sets = resolve_feature_sets(features, stored_groups(ds))
    done = usable_rows(ds, list(dict.fromkeys(g for fs in sets for g in fs.groups)))
    index = np.flatnonzero(done)
    if not len(index):
        raise StoreError("the store has no finished segments to evaluate")

    def strings(name):
        return decode_strings(np.asarray(ds[name].values)[index]).astype(str).astype(object)

    track_id = strings("track_id")
    group = strings("group") if "group" in ds.coords else None
    groups, group_by = fold_groups(group, track_id)
    labels = strings("label") if "label" in ds.coords else np.full(len(index), "", dtype=object)
    return VoteData(X=feature_matrices(ds, sets, index), track_id=track_id,
                    segment_id=strings(SEGMENT), groups=np.asarray(groups, dtype=object),
                    labels=labels, profiles={}, emotions=(), ds=ds, index=index, sets=sets,
                    group_by=group_by, excluded={"not extracted (status != 1)": int((~done).sum())},
                    storage_options=storage_options)


def _no_votes(what: str) -> EmodistError:
    return EmodistError(f"{what} come from listener votes, and the store keeps no vote profiles "
                        "(give numeric columns of its dataset instead)", param="target")


def vote_tags(data: VoteData, *, rule: str = "top3", profile: str = "listener", k: int = 3,
              min_share: float = 0.5) -> np.ndarray:
    """0/1 tags of each segment from its track's votes.

    ``top3``: the ``k`` largest shares of ``profile`` (ties: GEMS order);
    ``threshold``: emotions that at least ``min_share`` of the listeners
    chose (the ``mean`` profile, whatever ``profile`` says).
    """
    check_choice("tag_rule", rule, TAG_RULES)
    check_choice("profile", profile, PROFILES)
    if not data.profiles:
        raise _no_votes("tags from votes")
    if rule == "top3":
        return top_k_tags(data.profiles[profile], k=k)
    return threshold_tags(data.profiles["mean"], min_share)


def segment_tags(data: VoteData, **rule) -> tuple[np.ndarray, list[str], str]:
    """The tags of each segment: its votes' (:func:`vote_tags`), else its catalog's.

    A store with vote profiles makes tags from them (``rule``: the keywords
    of :func:`vote_tags`); a store without reads its dataset catalog's
    ``tags`` column (:func:`emodist.learn.dataset_targets.catalog_tags`).

    Returns
    -------
    T : numpy.ndarray, shape (n, n_tags)
    names : list of str
        The tags.
    source : str
        Where they come from, in words (the report's ``config["tags_from"]``).
    """
    if data.profiles:
        return vote_tags(data, **rule), list(data.emotions), "listener votes"
    T, names = catalog_tags(data.ds, data.track_id, storage_options=data.storage_options)
    return T, names, "the tags column of the dataset's catalog"


@dataclass(frozen=True)
class Targets:
    """Continuous targets of the evaluated segments (:func:`column_targets`).

    Attributes
    ----------
    Y : numpy.ndarray, shape (n, n_targets)
    names : list of str
    keep : numpy.ndarray of bool, shape (n,)
        Segments with a finite value of every target.
    sources : dict
        Target -> where its values come from, in words.
    """

    Y: np.ndarray
    names: list[str]
    keep: np.ndarray
    sources: dict[str, str]


def _unknown_column(data: VoteData, name: str) -> EmodistError:
    store, catalog, unread = target_columns(data.ds, storage_options=data.storage_options)
    known = [f"emotions ({', '.join(data.emotions)})"] if data.emotions else []
    known.append(f"store variables ({', '.join(store)})" if store else "no numeric store variable")
    known.append(f"catalog columns ({', '.join(catalog)})" if catalog
                 else f"no catalog column: {unread or 'none is numeric'}")
    return EmodistError(f"{name!r} is not a target of this store; it has {'; '.join(known)}",
                        param="target")


def _store_variable(data: VoteData, name: str) -> np.ndarray:
    values = np.asarray(data.ds[name].isel({SEGMENT: data.index}).values)
    if not np.issubdtype(values.dtype, np.number):
        raise EmodistError(f"store variable {name!r} is not numeric", param="target")
    return values.astype(np.float64)


def column_targets(data: VoteData, names, profile: str = "listener", *,
                   annotations: str | None = None) -> Targets:
    """Continuous targets by name: vote shares, store variables, dataset catalog columns.

    Parameters
    ----------
    data : VoteData
    names : sequence of str
        ``["shares"]`` (the nine shares of ``profile``), or names each of
        which is an emotion (its share), a numeric per-segment variable of
        the store, a numeric column of its dataset's catalog
        (:func:`emodist.learn.dataset_targets.catalog_targets`) or, failing
        that, a numeric per-segment coordinate of the store (``start_s``).
    profile : {"listener", "mean"}
    annotations : {"dynamic", "static"}, optional
        Catalog columns: per-segment means of the dataset's time-stamped
        ratings, or each track's static rating (default: dynamic where the
        dataset has them).

    Returns
    -------
    Targets

    Raises
    ------
    EmodistError
        A name that is none of these (the message lists what there is);
        shares or emotions of a store without votes.
    StoreError
        No segment has every target.
    """
    names = list(names)
    sources = {}
    if names == ["shares"]:
        if not data.profiles:
            raise _no_votes("vote shares")
        Y, tnames = data.profiles[profile], list(data.emotions)
        sources = dict.fromkeys(tnames, f"{profile} vote profile")
    else:
        cols: dict[str, np.ndarray] = {}
        catalog = []
        for name in names:
            if name in data.emotions:
                cols[name] = data.profiles[profile][:, data.emotions.index(name)]
                sources[name] = f"{profile} vote profile"
            elif name in data.ds.data_vars and data.ds[name].dims == (SEGMENT,):
                cols[name] = _store_variable(data, name)
                sources[name] = "per-segment store variable"
            else:
                catalog.append(name)
        if catalog:
            _, numeric, _ = target_columns(data.ds, storage_options=data.storage_options)
            for name in [n for n in catalog if n not in numeric]:
                # a per-segment coordinate of the store (start_s...) when the catalog has no such column
                if name not in data.ds.coords or data.ds[name].dims != (SEGMENT,):
                    raise _unknown_column(data, name)
                cols[name] = _store_variable(data, name)
                sources[name] = "per-segment store variable"
                catalog.remove(name)
        if catalog:
            found = catalog_targets(data.ds, catalog, data.index, annotations=annotations,
                                    storage_options=data.storage_options)
            for j, name in enumerate(found.names):
                cols[name] = found.values[:, j]
            sources.update(found.sources)
        Y, tnames = np.column_stack([cols[n] for n in names]), names
    keep = np.isfinite(Y).all(axis=1)
    if not keep.any():
        raise StoreError("no evaluated segment has a finite value of every target")
    return Targets(Y=np.asarray(Y, np.float64), names=list(tnames), keep=keep,
                   sources={n: sources[n] for n in tnames})


def vote_targets(data: VoteData, names, profile: str = "listener", *,
                 annotations: str | None = None) -> tuple[np.ndarray, list[str], np.ndarray]:
    """The continuous targets of each segment, and which segments have all of them.

    :func:`column_targets` as a tuple.

    Parameters
    ----------
    data : VoteData
    names : sequence of str
        ``["shares"]`` (the nine shares of ``profile``) or emotions /
        per-segment numeric store variables / numeric columns of the
        store's dataset catalog.
    profile : {"listener", "mean"}
    annotations : {"dynamic", "static"}, optional
        See :func:`column_targets`.

    Returns
    -------
    Y : numpy.ndarray, shape (n, n_targets)
    names : list of str
        The target columns.
    keep : numpy.ndarray of bool, shape (n,)
        Segments with a finite value of every target.

    Raises
    ------
    EmodistError
        A name that is neither an emotion, a numeric per-segment variable
        nor a numeric catalog column.
    StoreError
        No segment has every target.
    """
    t = column_targets(data, names, profile, annotations=annotations)
    return t.Y, t.names, t.keep


# --------------------------------------------------------------------------
# The dataset's published splits: each fit on its training part, scored on its test part.
# --------------------------------------------------------------------------


def _stacked(parts, tracks) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The test rows of every split one after the other.

    Returns the rows, the split of each (the "fold" of the metrics) and a
    per-split track key (a track tested in two splits is two tracks).
    """
    rows = [np.flatnonzero(parts[:, k] == "test") for k in range(parts.shape[1])]
    split = np.concatenate([np.full(len(r), k) for k, r in enumerate(rows)])
    rows = np.concatenate(rows)
    keys = np.array([f"{k}/{t}" for k, t in zip(split, np.asarray(tracks)[rows])], dtype=object)
    return rows, split, keys


def _train_means(V, parts, split) -> np.ndarray:
    """Each split's test rows predicted with the mean of its training part."""
    out = np.zeros((len(split), V.shape[1]))
    for k in range(parts.shape[1]):
        out[split == k] = V[parts[:, k] == "train"].mean(axis=0)
    return out


def split_regression(X, Y, *, names, groups, tracks, parts, presets=("ridge",), seed: int = 0,
                     inner_folds: int = 4, joint: bool = False, plots_dir=None) -> dict:
    """:func:`~emodist.learn.regression.evaluate_regression` on published splits.

    Each split's models are tuned and fit on its training part
    (:func:`~emodist.learn.regression.fit_columns`) and score its test part;
    the validation part is unused.  The splits are the metrics' folds (mean
    and std over the splits; ``folds``: one value per split).

    Parameters
    ----------
    X, Y : numpy.ndarray
    names : sequence of str
    groups, tracks : array_like, shape (n,)
        Inner-fold groups and tracks of the rows.
    parts : numpy.ndarray of str, shape (n, n_splits)
        Each row's part in each split (:class:`emodist.learn.tracks.PublishedSplits`).
    presets, seed, inner_folds, joint, plots_dir
        As :func:`~emodist.learn.regression.evaluate_regression`.

    Returns
    -------
    dict
        As :func:`~emodist.learn.regression.evaluate_regression`; ``pred``
        holds the stacked test rows of the splits (``rows``).
    """
    groups, tracks = np.asarray(groups), np.asarray(tracks)
    rows, split, keys = _stacked(parts, tracks)
    Ys = Y[rows]
    results = []
    for p in resolve_regression_presets(presets):
        pred, chosen = np.empty_like(Ys), []
        for k in range(parts.shape[1]):
            train, test = parts[:, k] == "train", parts[:, k] == "test"
            models, picks = fit_columns(X[train], Y[train], groups[train], preset=p, seed=seed,
                                        inner_folds=inner_folds, joint=joint)
            out = [np.asarray(m.predict(X[test]), np.float64).reshape(int(test.sum()), -1)
                   for m in models]
            pred[split == k] = np.hstack(out)
            chosen.append(picks)
        metrics = regression_metrics(Ys, pred, split, keys, names)
        results.append({"preset": p.key, "name": p.name, "grid": {k: list(v) for k, v in p.grid.items()},
                        "metrics": metrics, "chosen": chosen, "pred": pred})
        if plots_dir is not None:
            Path(plots_dir).mkdir(parents=True, exist_ok=True)
            for j, name in enumerate(names):
                pooled = {m: metrics["segment"][name][m]["pooled"] for m in REGRESSION_METRICS}
                fig = scatter_figure(Ys[:, j], pred[:, j], name=f"{name} ({p.key})", scores=pooled)
                fig.savefig(Path(plots_dir) / f"scatter_{p.key}_{name}.png", dpi=110)
    results.sort(key=lambda r: -r["metrics"]["segment"]["mean"]["r2"])
    base = _train_means(Y, parts, split)
    return {"targets": list(names), "baseline": regression_metrics(Ys, base, split, keys, names),
            "results": results, "rows": rows}


def split_multilabel(X, T, *, names, groups, tracks, parts, presets=("logistic-regression",),
                     seed: int = 0, inner_folds: int = 4, min_tracks: int = 10) -> dict:
    """:func:`~emodist.learn.multilabel.evaluate_multilabel` on published splits.

    A tag is scored when it has ``min_tracks`` positive and negative tracks
    in all, and a positive and a negative track in every split's training
    and test part; each split's models are fit on its training part and
    score its test part.

    Returns
    -------
    dict
        As :func:`~emodist.learn.multilabel.evaluate_multilabel`, the splits
        as the metrics' folds; ``scores`` of the stacked test rows (``rows``).
    """
    groups, tracks, T = np.asarray(groups), np.asarray(tracks), np.asarray(T)
    keep, dropped = keep_tags(T, tracks, names, min_tracks=min_tracks)
    for k in range(parts.shape[1]):
        for part in ("train", "test"):
            rows = parts[:, k] == part
            present, _ = keep_tags(T[rows], tracks[rows], names, min_tracks=1)
            for j in np.flatnonzero(keep & ~present):
                dropped[str(names[j])] = {"positive_tracks": None, "negative_tracks": None,
                                          "why": f"no positive or no negative track in the {part} "
                                                 f"part of split {k}"}
            keep &= present
    if not keep.any():
        raise EmodistError(f"no tag has {min_tracks} positive and {min_tracks} negative tracks, and "
                           "both in every split's training and test part", param="min_tracks")
    T = T[:, keep]
    names = [str(n) for n, k in zip(names, keep) if k]
    rows, split, keys = _stacked(parts, tracks)
    Ts = T[rows]
    results = []
    for p in resolve_multilabel_presets(presets):
        S, chosen = np.empty(Ts.shape), []
        for k in range(parts.shape[1]):
            train, test = parts[:, k] == "train", parts[:, k] == "test"
            model, best = fit_tags(X[train], T[train], groups[train], preset=p, seed=seed,
                                   inner_folds=inner_folds)
            S[split == k] = np.asarray(model.predict_proba(X[test]), np.float64)
            chosen.append(best)
        results.append({"preset": p.key, "name": p.name, "grid": {k: list(v) for k, v in p.grid.items()},
                        "metrics": multilabel_metrics(Ts, S, split, keys, names), "chosen": chosen,
                        "scores": S})
    results.sort(key=lambda r: -r["metrics"]["segment"]["roc_auc_macro"]["mean"])
    base = _train_means(T.astype(np.float64), parts, split)
    return {"tags": names, "dropped": dropped, "min_tracks": min_tracks,
            "baseline": multilabel_metrics(Ts, base, split, keys, names), "results": results,
            "rows": rows}


def evaluate_votes(store, spec: EvaluationSpec | None = None, *, target="shares", features=None,
                   presets=None, n_folds: int = 5,
                   seed: int = 0, profile: str = "listener", tag_rule: str = "top3", k: int = 3,
                   min_share: float = 0.5, min_tracks: int = 10, inner_folds: int = 4,
                   joint: bool = False, plots_dir=None, group_by: str | None = None,
                   copies=None, context: str = "none", annotations: str | None = None,
                   fold_source: str = "grouped", storage_options: dict | None = None) -> dict:
    """Cross-validated regression or tag prediction, per feature set.

    Parameters
    ----------
    store : str or xarray.Dataset
    spec : EvaluationSpec, optional
        What to evaluate (a ``shares``, ``tags`` or column target); without
        it ``target``, ``features``, ``presets``, ``n_folds``, ``seed``,
        ``group_by`` and ``fold_source`` make one.  It is recorded in the
        result (``evaluation_spec``).
    target : str or sequence of str
        ``"shares"``, ``"tags"``, or names of emotions / per-segment store
        variables / numeric columns of the store's dataset catalog
        (regression targets, :func:`column_targets`).  ``tags``: the votes'
        tags, or in a store without votes its catalog's ``tags`` column
        (:func:`segment_tags`).
    features : str or sequence of str, optional
        Feature-set spec; default every group alone and all joined.
    presets : sequence of str, optional
        Regression or multi-label preset keys (default: ridge / logistic
        regression).
    n_folds, seed : int
        Outer grouped folds and their seed.
    profile : {"listener", "mean"}
        Vote profile of the shares and of top-k tags.
    tag_rule : {"top3", "threshold"}
    k : int
        Tags per track of ``top3``.
    min_share : float
        Threshold of ``threshold`` tags.
    min_tracks : int
        Tags with fewer positive or negative tracks are dropped.
    inner_folds : int
        Grouped folds of the in-fold hyper-parameter search.
    joint : bool
        Regression: one model for all targets (multi-output presets).
    plots_dir : path, optional
        Where the regression scatter plots go (one subfolder per feature set).
    context : {"none", "track"}
        ``"track"``: each segment's features joined with its track's mean
        features (:func:`emodist.learn.data.track_context`).
    group_by : str, optional
        The per-track column the folds are grouped by
        (:func:`emodist.learn.tracks.segment_groups`); default the store's ``group``.
    copies : list of list of str, optional
        Track ids of recordings stored more than once, kept in one group.
    annotations : {"dynamic", "static"}, optional
        Catalog columns: each segment's mean of the dataset's time-stamped
        ratings in its span, or its track's static rating (default: dynamic
        where the dataset has them).  Segments without a value are dropped
        and counted (``excluded``).
    fold_source : {"grouped", "dataset"}
        ``dataset``: the dataset's published splits
        (:func:`emodist.learn.tracks.published_splits`), each fit on its
        training part and scored on its test part (:func:`split_regression`,
        :func:`split_multilabel`).
    storage_options : dict, optional
        fsspec options of the store and its dataset's location.

    Returns
    -------
    dict
        ``kind`` (``"regression"`` / ``"multilabel"``), ``config``,
        ``evaluation_spec`` (:meth:`EvaluationSpec.to_dict
        <emodist.learn.spec.EvaluationSpec.to_dict>`),
        ``n_segments``, ``n_tracks``, ``excluded`` (reason -> segments left
        out), ``folds`` (each evaluated segment's track, group and fold, or
        its part in each published split) and ``sets``: feature-set name ->
        the output of :func:`~emodist.learn.regression.evaluate_regression`
        or :func:`~emodist.learn.multilabel.evaluate_multilabel`.
    """
    if spec is None:
        spec = EvaluationSpec(features=features, target=target, folds=n_folds, seed=seed,
                              classifiers=presets or DEFAULT_PRESETS.get(target_kind(target)),
                              ceiling=False, group_by=group_by, fold_source=fold_source)
    kind = spec.kind
    if kind not in DEFAULT_PRESETS:
        raise EmodistError(f"target {spec.target} is a class target; evaluate it with run_evaluate",
                           param="target")
    names = [spec.target] if isinstance(spec.target, str) else list(spec.target)
    features, presets, n_folds, seed = spec.features, spec.classifiers, spec.folds, spec.seed
    group_by = spec.group_by if group_by is None else group_by
    check_choice("profile", profile, PROFILES)
    check_choice("context", context, CONTEXTS)
    data = load_vote_data(store, features, storage_options)
    if group_by is not None or copies:
        data.groups, _ = segment_groups(data.ds, data.groups, data.track_id, group_by,
                                        copies=copies, storage_options=storage_options)
    published = spec.fold_source == FOLD_SOURCES[1]
    if published:
        splits = published_splits(data.ds, data.track_id, storage_options=storage_options,
                                  param="fold_source")
        folds, n_folds = None, len(splits.names)
    else:
        folds = make_folds(data.labels, data.groups, n_folds, seed,
                           unit="tracks" if group_by is None else "groups")
    if context == "track":
        data.X = {name: track_context(X, data.track_id) for name, X in data.X.items()}
    config = {"target": names, "profile": profile, "n_folds": n_folds, "seed": seed,
              "inner_folds": inner_folds, "group_by": group_by or "group", "context": context,
              "fold_source": spec.fold_source}
    if published:
        config["splits"] = list(splits.names)
    excluded = dict(data.excluded)
    keep = np.ones(len(data.track_id), dtype=bool)
    sets = {}
    if kind == "multilabel":
        config.update(tag_rule=tag_rule, k=k, min_share=min_share, min_tracks=min_tracks)
        T, tag_names, config["tags_from"] = segment_tags(data, rule=tag_rule, profile=profile, k=k,
                                                         min_share=min_share)
        common = {"names": tag_names, "groups": data.groups, "tracks": data.track_id,
                  "presets": presets, "seed": seed, "inner_folds": inner_folds,
                  "min_tracks": min_tracks}
        for name, X in data.X.items():
            sets[name] = (split_multilabel(X, T, parts=splits.parts, **common) if published
                          else evaluate_multilabel(X, T, folds=folds, **common))
    else:
        targets = column_targets(data, names, profile, annotations=annotations)
        keep, config["joint"], config["annotations"] = targets.keep, joint, targets.sources
        excluded["no value of every target (outside the annotated span)"] = int((~keep).sum())
        common = {"names": targets.names, "groups": data.groups[keep], "tracks": data.track_id[keep],
                  "presets": presets, "seed": seed, "inner_folds": inner_folds, "joint": joint}
        for name, X in data.X.items():
            plots = None if plots_dir is None else Path(plots_dir) / name
            if published:
                sets[name] = split_regression(X[keep], targets.Y[keep], parts=splits.parts[keep],
                                              plots_dir=plots, **common)
            else:
                sets[name] = evaluate_regression(X[keep], targets.Y[keep], folds=folds[keep],
                                                 plots_dir=plots, **common)
    record = {"segment_id": data.segment_id[keep].tolist(), "track_id": data.track_id[keep].tolist(),
              "group": [str(g) for g in data.groups[keep]]}
    if published:
        record["splits"] = {s: splits.parts[keep, j].tolist() for j, s in enumerate(splits.names)}
    else:
        record["fold"] = folds[keep].tolist()
    return {"kind": kind, "config": config, "evaluation_spec": spec.to_dict(),
            "n_segments": int(keep.sum()), "n_tracks": len(np.unique(data.track_id[keep])),
            "excluded": excluded, "folds": record, "sets": sets}


# --------------------------------------------------------------------------
# Report files.
# --------------------------------------------------------------------------


def json_safe(obj):
    """``obj`` with numpy values as Python ones and NaN as ``None`` (JSON without NaN)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        return None if math.isnan(float(obj)) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _pm(summary: dict) -> str:
    mean, std = summary["mean"], summary["std"]
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "n/a"
    return f"{mean:.3f} ± {std:.3f}"


def vote_report_markdown(report: dict) -> str:
    """The report as Markdown: one table per feature set, best preset first, baseline last."""
    cfg = report["config"]
    published = cfg.get("fold_source") == FOLD_SOURCES[1]
    if published:
        cv = (f"the dataset's {cfg['n_folds']} published splits ({', '.join(cfg['splits'])}), "
              "each split's test part scored by models fit on its training part (validation part "
              f"unused); hyper-parameters chosen by a grouped {cfg['inner_folds']}-fold search "
              "inside the training part; mean ± std over the splits.")
    else:
        cv = (f"{cfg['n_folds']} folds grouped by {cfg.get('group_by', 'group')} (else by track; "
              f"seed {cfg['seed']}); hyper-parameters "
              f"chosen by a grouped {cfg['inner_folds']}-fold search inside the training folds; "
              "mean ± std over the folds.")
    lines = [f"# {'Tag' if report['kind'] == 'multilabel' else 'Regression'} evaluation", "",
             f"{report['n_segments']} segments of {report['n_tracks']} tracks; {cv}", ""]
    left_out = {k: v for k, v in (report.get("excluded") or {}).items() if v}
    if left_out:
        lines += ["Left out: " + "; ".join(f"{k}: {v} segments" for k, v in left_out.items()) + ".", ""]
    if cfg.get("annotations"):
        lines += ["Targets: " + "; ".join(f"{t}: {w}" for t, w in cfg["annotations"].items()) + ".", ""]
    if cfg.get("tags_from"):
        lines += [f"Tags from {cfg['tags_from']}.", ""]
    for set_name, res in report["sets"].items():
        lines += [f"## {set_name}", ""]
        rows = [(r["preset"], r["metrics"]) for r in res["results"]] + [("train mean", res["baseline"])]
        if report["kind"] == "multilabel":
            lines += [(f"Tags: {', '.join(res['tags'])}; dropped (fewer than {res['min_tracks']} "
                      f"positive or negative tracks): {', '.join(res['dropped']) or 'none'}."), ""]
            head = [f"{lvl} {m}" for lvl in ("segment", "track") for m in ("roc_auc_macro", "pr_auc_macro")]
            head += ["segment roc_auc_micro", "segment pr_auc_micro"]
            lines += ["| model | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
            for key, m in rows:
                cells = [_pm(m[lvl][x]) for lvl in ("segment", "track") for x in ("roc_auc_macro", "pr_auc_macro")]
                cells += [_pm(m["segment"]["roc_auc_micro"]), _pm(m["segment"]["pr_auc_micro"])]
                lines.append(f"| {key} | " + " | ".join(cells) + " |")
            best = res["results"][0]["metrics"]["segment"]["per_tag"]
            lines += ["", f"Per tag ({res['results'][0]['preset']}, pooled out-of-fold segments):", "",
                      "| tag | positive segments | ROC-AUC | PR-AUC |", "|---|---|---|---|"]
            lines += [f"| {t['tag']} | {t['positives']} | {t['roc_auc']:.3f} | {t['pr_auc']:.3f} |"
                      for t in best]
        else:
            lines += ["Mean over the targets of each metric's fold mean:", "",
                      "| model | level | " + " | ".join(REGRESSION_METRICS) + " |",
                      "|---" * (len(REGRESSION_METRICS) + 2) + "|"]
            for key, m in rows:
                for lvl in ("segment", "track"):
                    cells = [("n/a" if m[lvl]["mean"][x] is None or math.isnan(m[lvl]["mean"][x])
                              else f"{m[lvl]['mean'][x]:.3f}") for x in REGRESSION_METRICS]
                    lines.append(f"| {key} | {lvl} | " + " | ".join(cells) + " |")
            best = res["results"][0]
            lines += ["", f"Per target ({best['preset']}, segment level):", "",
                      "| target | " + " | ".join(REGRESSION_METRICS) + " |",
                      "|---" * (len(REGRESSION_METRICS) + 1) + "|"]
            for t in res["targets"]:
                lines.append(f"| {t} | " + " | ".join(_pm(best["metrics"]["segment"][t][x])
                                                     for x in REGRESSION_METRICS) + " |")
        if published:
            lines += ["", *_split_lines(report["kind"], res, cfg["splits"])]
        lines.append("")
    return "\n".join(lines)


def _split_lines(kind: str, res: dict, splits) -> list[str]:
    """One row per published split: the best preset's segment scores beside the baseline."""
    best, base = res["results"][0], res["baseline"]
    if kind == "multilabel":
        cols = ("roc_auc_macro", "pr_auc_macro")

        def value(m, x, k):
            return m["segment"][x]["folds"][k]
    else:
        cols = REGRESSION_METRICS

        def value(m, x, k):  # the mean over the targets of the split's score (None: NaN)
            scores = [m["segment"][t][x]["folds"][k] for t in res["targets"]]
            return float(np.mean([np.nan if v is None else v for v in scores]))

    def cell(v):
        return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"

    lines = [f"Per split ({best['preset']}; train mean in brackets, segment level):", "",
             "| split | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for k, name in enumerate(splits):
        lines.append(f"| {name} | " + " | ".join(
            f"{cell(value(best['metrics'], x, k))} ({cell(value(base, x, k))})" for x in cols) + " |")
    return lines


def write_vote_report(report: dict, out_dir) -> tuple[Path, Path]:
    """Write ``report.json`` (predictions left out) and ``report.md`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    slim = {**report, "sets": {
        name: {**res, "results": [{k: v for k, v in r.items() if k not in ("pred", "scores")}
                                  for r in res["results"]]}
        for name, res in report["sets"].items()}}
    slim = json_safe(slim)
    (out / "report.json").write_text(json.dumps(slim, indent=1))
    (out / "report.md").write_text(vote_report_markdown(slim))
    return out / "report.json", out / "report.md"




def summary_lines(report: dict) -> list[str]:
    """One line per feature set: the best preset's headline scores beside the baseline."""
    out = []
    for name, res in report["sets"].items():
        best = res["results"][0]
        if report["kind"] == "multilabel":
            key, label = "roc_auc_macro", "macro ROC-AUC"
            got, base = best["metrics"]["segment"][key], res["baseline"]["segment"][key]
            out.append(f"{name}: {best['preset']} {label} {_pm(got)} (train mean {_pm(base)})")
        else:
            got, base = best["metrics"]["segment"]["mean"], res["baseline"]["segment"]["mean"]
            out.append(f"{name}: {best['preset']} mean R2 {got['r2']:.3f}, CCC {got['ccc']:.3f} "
                       f"(train mean R2 {base['r2']:.3f}, CCC {base['ccc']:.3f})")
    return out


def run_votes(store, *, target, out=None, storage_options: dict | None = None, **kw) -> dict:
    """:func:`evaluate_votes`, then the report files into ``out`` (plots under ``out/plots``).

    ``kw`` goes to :func:`evaluate_votes`; a remote store is opened with
    ``storage_options``.
    """
    ds = open_dataset(store, storage_options)
    plots = None if out is None or target in ("tags", ["tags"]) else Path(out) / "plots"
    report = evaluate_votes(ds, target=target, plots_dir=plots, storage_options=storage_options, **kw)
    if out is not None:
        write_vote_report(report, out)
    return report
