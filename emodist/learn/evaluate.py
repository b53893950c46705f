"""Grouped cross-validation of classifier presets on a feature store.

:func:`run_evaluate` reproduces the reference study's experiment on a
consolidated store and goes past it:

* only segments where every requested feature group is done and whose label
  is kept are used (:mod:`emodist.learn.features`);
* folds are drawn once (:mod:`emodist.learn.folds`: grouped by the store's
  ``group``, else by track, stratified by label, fixed seed) and shared by
  every classifier, feature set and balance mode; the fold of each segment
  is recorded;
* every preprocessing step lives in a scikit-learn pipeline fit on the
  training folds only (:func:`emodist.learn.presets.make_pipeline`);
* each (feature set, classifier, balance, fold) fit is an independent task
  (:mod:`emodist.learn.fits`) run by
  :func:`emodist.engine.executor.run_all` with :mod:`joblib` or on a Dask
  cluster, every feature set's fits together, the longest first
  (:mod:`emodist.learn.schedule`); each task is seeded, so the results do
  not depend on where or in which order it runs;
* metrics are computed from the out-of-fold predictions at segment level and
  at track level (majority vote over a track's segments,
  :mod:`emodist.learn.scoring`; and, for presets with probabilities, the
  argmax of the mean of the segments' probabilities,
  :mod:`emodist.learn.metrics`) (:mod:`emodist.learn.runs`);
* the human ceiling (listeners' split-half agreement) is reported beside
  chance and the majority rate when the listener responses are at hand
  (:mod:`emodist.learn.ceiling`).

With ``target="factors"`` the dominant GEMS factor is predicted on the same
segments and folds; with ``target="distribution"`` the nine-way vote
distribution of each segment (:mod:`emodist.learn.distribution`).

Module layout, imports one way (no module imports one below it):
:mod:`~emodist.learn.params`, :mod:`~emodist.learn.estimators`,
:mod:`~emodist.learn.reduce`, :mod:`~emodist.learn.scoring`,
:mod:`~emodist.learn.factors` <- :mod:`~emodist.learn.schedule`,
:mod:`~emodist.learn.metrics`, :mod:`~emodist.learn.cv` <-
:mod:`~emodist.learn.soft`, :mod:`~emodist.learn.imbalance`,
:mod:`~emodist.learn.tuning` <- :mod:`~emodist.learn.presets` <-
:mod:`~emodist.learn.fits` <- :mod:`~emodist.learn.distribution`,
:mod:`~emodist.learn.labels`, :mod:`~emodist.learn.folds`,
:mod:`~emodist.learn.ceiling` <- :mod:`~emodist.learn.features`,
:mod:`~emodist.learn.runs` <- this module.  :mod:`~emodist.learn.report` and
:mod:`~emodist.learn.compare` read only report dictionaries.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import time

import numpy as np

from emodist._version import __version__
from emodist.engine.executor import run_all
from emodist.errors import DataError, EmodistError
from emodist.learn import presets as clf
from emodist.learn.ceiling import report_ceiling, responses_path
from emodist.learn.features import load_data, open_dataset, store_info
from emodist.learn.folds import describe_splitter, fold_groups, fold_splitter, make_folds
from emodist.learn.params import RANK_BY, TARGETS, ParameterError, balance_modes, check_choice
from emodist.learn.runs import class_results, distribution_results
from emodist.learn.scoring import rank_results

log = logging.getLogger(__name__)

#: How each grouping column reads in the report's splitter line and messages.
_GROUP_WORDS = {"track_id": ("track", "tracks"), "group": ("group", "groups"),
                "group, else track_id": ("group (track where none is set)", "groups")}

#: The one place where the evaluation runs its tasks (joblib or a Dask client).
_run_fits = run_all


def human_ceiling(ceiling, dataset, data, target: str, seed: int) -> dict:
    """The listeners' split-half agreement on the evaluated tracks, or why there is none.

    ``ceiling``: an Emotify ``data.csv`` or its folder; ``None`` uses the
    store's ``dataset`` attribute when it names an existing Emotify folder;
    ``False`` skips it.
    """
    if ceiling is False:
        return {"available": False, "reason": "not asked for"}
    source = ceiling if ceiling is not None else dataset
    if source is None or responses_path(source) is None:
        if ceiling is not None:
            raise ParameterError(f"{ceiling}: no Emotify data.csv there (a file or its folder)", "ceiling")
        return {"available": False, "reason": "no listener responses (give ceiling= an Emotify data.csv)"}
    level = "factor" if target == "factors" else "emotion"
    try:
        return report_ceiling(source, np.unique(data.track_id), level=level, rule=data.label_rule,
                              n_classes=len(data.classes), seed=seed)
    except DataError as exc:
        if ceiling is not None:
            raise ParameterError(str(exc), "ceiling") from exc
        return {"available": False, "reason": str(exc)}


def run_evaluate(
    store,
    *,
    features=None,
    classifiers=("all",),
    folds: int = 5,
    seed: int = 0,
    balance: str = "none",
    label_rule: str | None = None,
    target: str = "class",
    out: str | None = None,
    client=None,
    n_jobs: int | None = -1,
    storage_options: dict | None = None,
    progress: bool = False,
    rank_by: str = "accuracy",
    ceiling=None,
) -> dict:
    """Grouped cross-validation of classifier presets on a feature store.

    Parameters
    ----------
    store : str, path-like or xarray.Dataset
        Store URL or path, or an opened Dataset in the store layout
        (:func:`emodist.learn.features.open_dataset`).
    features : str, sequence of str or None
        Feature-set spec (:func:`emodist.learn.features.resolve_feature_sets`):
        group names, ``+``-joined group names, feature names / glob patterns.
        ``None``: every stored group alone, and all of them joined.
    classifiers : sequence of str
        Preset keys or names; ``"all"`` / ``"quick"`` / ``"beyond"`` are
        shorthands (:func:`emodist.learn.presets.resolve_presets`).  For
        ``target="distribution"`` the distribution presets
        (:data:`emodist.learn.presets.DISTRIBUTION_PRESETS`).
    folds : int
        Number of grouped folds.
    seed : int
        Seed of the folds and of every model.
    balance : {"none", "weights", "both"}
        Class weighting; ``both`` evaluates each preset both ways.
    label_rule : {"listener", "mean"} or None
        ``None`` uses the stored labels.
    target : {"class", "factors", "distribution"}
        Predict the dominant emotion, the dominant GEMS factor (sublimity,
        vitality, unease; the same segments and folds as ``class``) or the
        vote distribution.
    out : str, optional
        Folder for ``report.json``, ``report.md`` and the figures.
    client : distributed.Client, optional
        Run the fits on this Dask cluster instead of :mod:`joblib`.
    n_jobs : int or None
        joblib processes when no client is given (-1: all cores).
    storage_options : dict, optional
        Filesystem options for ``store``.
    progress : bool
        Show a progress bar over the fits (:mod:`emodist.progress`).  One
        line per feature set is logged at INFO level either way.
    rank_by : {"accuracy", "balanced_accuracy", "macro_f1"}
        Segment metric (fold mean) the results are ranked by.
    ceiling : str, path-like, False or None
        Listener responses for the human ceiling
        (:func:`emodist.learn.ceiling.split_half_ceiling`): an Emotify
        ``data.csv`` or its folder.  ``None``: the store's ``dataset``
        attribute when it names an existing Emotify folder, else the report
        says "not available"; ``False``: not computed.

    Returns
    -------
    dict
        The report (what ``report.json`` holds): ``settings``, ``store``,
        ``data``, ``folds``, ``results`` (ranked), ``skipped``, ``baselines``,
        ``ceiling``.

    Raises
    ------
    emodist.learn.params.ParameterError
        A parameter with an unusable value; its ``parameter`` attribute
        names it (``"folds"``, ``"features"``, ...).
    emodist.errors.StoreError
        A store that cannot be read or holds nothing to evaluate.
    """
    check_choice("target", target, TARGETS)
    check_choice("rank_by", rank_by, RANK_BY, "ranking metric")
    modes = balance_modes(balance)
    if target == "distribution":
        presets = clf.resolve_distribution_presets(classifiers)
    else:
        presets = clf.resolve_presets(classifiers)
    if isinstance(store, os.PathLike):
        store = os.fspath(store)
    if isinstance(ceiling, os.PathLike):
        ceiling = os.fspath(ceiling)
    ds = open_dataset(store, storage_options)
    data = load_data(ds, features, label_rule, target)
    classes = data.classes
    if target != "distribution" and len(classes) < 2:
        raise EmodistError(f"only one class ({classes[0]}) among the evaluated segments")
    groups, group_by = fold_groups(data.group, data.track_id)
    word, words = _GROUP_WORDS[group_by]
    strata = data.y if data.strata is None else data.strata
    fold = make_folds(strata, groups, folds, seed, unit=words)
    report = {
        "emodist_version": __version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "settings": {
            "features": [fs.name for fs in data.sets],
            "feature_names": {fs.name: fs.names for fs in data.sets if fs.name == "custom"},
            "classifiers": [p.key for p in presets],
            "folds": int(folds),
            "seed": int(seed),
            "balance": balance,
            "label_rule": data.label_rule,
            "target": target,
            "rank_by": rank_by,
            "cv": describe_splitter(fold_splitter(strata, groups, folds, seed), word),
            "stratified_by": "emotion" if data.strata is not None else "label",
            "group_by": group_by,
            "executor": "dask" if client is not None else f"joblib(n_jobs={n_jobs})",
        },
        "store": store_info(store, ds),
        "data": {
            "n_segments": len(data.y),
            "n_tracks": len(np.unique(data.track_id)),
            "n_groups": len(np.unique(groups)),
            "classes": classes,
            "class_counts": {c: int((data.y == c).sum()) for c in classes},
            "excluded": data.excluded,
        },
        "folds": {
            "segment_id": data.segment_id.tolist(),
            "track_id": data.track_id.tolist(),
            "group": [str(g) for g in groups],
            "label": data.y.tolist(),
            "fold": fold.tolist(),
        },
    }
    t0 = time.perf_counter()
    if target == "distribution":
        results, baseline = distribution_results(data, fold, groups, presets, seed, client, n_jobs, progress)
        report["skipped"] = []
        report["baselines"] = {"train_mean": baseline}
    else:
        results, skipped, baselines = class_results(
            data, fold, groups, presets, modes, seed, client, n_jobs, progress)
        report["skipped"] = skipped
        report["baselines"] = baselines
    report["seconds"] = round(time.perf_counter() - t0, 3)
    report["results"] = rank_results(results, rank_by)
    report["ceiling"] = human_ceiling(ceiling, ds.attrs.get("dataset"), data, target, seed)
    if out is not None:
        from emodist.learn.report import write_report

        report["files"] = write_report(report, out, storage_options)
    return report
