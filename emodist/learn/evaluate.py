"""Grouped cross-validation of classifier presets on a feature store.

:func:`run_evaluate` reproduces the reference study's experiment on a
consolidated store and goes past it:

* what the evaluation is -- feature sets, presets, folds, seed, balance,
  target, label rule, ranking, ceiling -- is one checked
  :class:`~emodist.learn.spec.EvaluationSpec`, recorded in the report;
* only segments where every requested feature group is done and whose label
  is kept are used (:mod:`emodist.learn.data`);
* folds are drawn once (:func:`emodist.learn.folds.make_folds`: grouped by
  the store's ``group``, else by track, stratified by label, fixed seed) and
  shared by every classifier, feature set and balance mode; the fold of each
  segment is recorded.  ``group_by`` groups them by another per-track column
  (:func:`emodist.learn.tracks.segment_groups`); ``fold_source="dataset"``
  evaluates on the dataset's published splits instead
  (:func:`emodist.learn.runs.split_results`);
* every preprocessing step lives in a scikit-learn pipeline fit on the
  training folds only (:func:`emodist.learn.presets.make_pipeline`);
* each (feature set, classifier, balance, fold) fit is an independent task
  run by :func:`emodist.runtime.executor.run_all` with :mod:`joblib` or on a
  Dask cluster, every feature set's fits together, the longest first
  (:mod:`emodist.learn.runs`); each task is seeded, so the results do not
  depend on where or in which order it runs;
* metrics are computed from the out-of-fold predictions at segment level and
  at track level (majority vote over a track's segments and, for presets
  with probabilities, the argmax of the mean of the segments' probabilities,
  :mod:`emodist.learn.scoring`);
* the human ceiling (listeners' split-half agreement) is reported beside
  chance and the majority rate when the listener responses are at hand
  (:mod:`emodist.learn.ceiling`).

With ``target="factors"`` the dominant GEMS factor is predicted on the same
segments and folds; with ``target="distribution"`` the nine-way vote
distribution of each segment (:mod:`emodist.learn.targets`).

Module layout, imports one way (no module imports one above it):
:mod:`~emodist.learn.folds`, :mod:`~emodist.learn.scoring`,
:mod:`~emodist.learn.targets` <- :mod:`~emodist.learn.estimators` <-
:mod:`~emodist.learn.presets` <- :mod:`~emodist.learn.spec` <-
:mod:`~emodist.learn.data`, :mod:`~emodist.learn.runs`,
:mod:`~emodist.learn.ceiling` <- this module <- :mod:`~emodist.learn.stream`;
:mod:`~emodist.learn.report` reads only report dictionaries.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import time

import numpy as np

from emodist._version import __version__
from emodist.errors import EmodistError
from emodist.learn.ceiling import human_ceiling
from emodist.learn.data import load_data, open_dataset, store_info
from emodist.learn.folds import describe_splitter, fold_splitter, group_words, make_folds
from emodist.learn.report import write_report
from emodist.learn.runs import class_results, distribution_results, split_results
from emodist.learn.scoring import rank_results
from emodist.learn.spec import EvaluationSpec, check_target, target_kind
from emodist.learn.tracks import published_splits, segment_groups

__all__ = ["run_evaluate"]

log = logging.getLogger(__name__)

def _check_scored_here(target) -> None:
    """Refuse a continuous or tag target: :func:`emodist.learn.votes.evaluate_votes` scores those."""
    if target_kind(check_target(target)) in ("regression", "multilabel"):
        raise EmodistError(f"target {target!r} is continuous values or tags, not classes or a "
                           "distribution: evaluate it with emodist.learn.votes.evaluate_votes",
                           param="target")


def run_evaluate(
    store,
    spec: EvaluationSpec | None = None,
    *,
    out: str | None = None,
    client=None,
    n_jobs: int | None = -1,
    storage_options: dict | None = None,
    progress: bool = False,
    copies=None,
    **evaluation,
) -> dict:
    """Grouped cross-validation of classifier presets on a feature store.

    Parameters
    ----------
    store : str, path-like or xarray.Dataset
        Store URL or path, or an opened Dataset in the store layout
        (:func:`emodist.learn.data.open_dataset`).
    spec : EvaluationSpec, optional
        What to evaluate.  Without it, the keyword arguments ``evaluation``
        make one.
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
    copies : list of list of str, optional
        Track ids of recordings stored more than once
        (:func:`emodist.store.copies.copy_sets`): each set is kept in
        one group whatever ``spec.group_by`` names.
    **evaluation
        The fields of :class:`~emodist.learn.spec.EvaluationSpec` when no
        ``spec`` is given: ``features``, ``classifiers`` (default ``all``),
        ``folds`` (5), ``seed`` (0), ``balance`` (``"none"``), ``target``
        (``"class"``), ``label_rule`` (the stored labels), ``rank_by``
        (``"accuracy"``), ``ceiling`` (the store's Emotify folder, if any).

    Returns
    -------
    dict
        The report (what ``report.json`` holds): ``settings``,
        ``evaluation_spec`` (:meth:`EvaluationSpec.to_dict
        <emodist.learn.spec.EvaluationSpec.to_dict>`), ``store``, ``data``,
        ``folds``, ``results`` (ranked), ``skipped``, ``baselines``,
        ``ceiling``.

    Raises
    ------
    emodist.errors.EmodistError
        A setting with an unusable value; its ``param`` names it
        (``"folds"``, ``"features"``, ...).
    emodist.errors.StoreError
        A store that cannot be read or holds nothing to evaluate.
    TypeError
        Both ``spec`` and keyword settings given, or an unknown keyword.
    """
    if spec is None:
        _check_scored_here(evaluation.get("target", "class"))
        spec = EvaluationSpec(**evaluation)
    elif evaluation:
        raise TypeError(f"give the settings in spec or as keywords, not both: {', '.join(evaluation)}")
    _check_scored_here(spec.target)
    if spec.stream:
        raise EmodistError("a streamed evaluation runs through emodist.learn.stream.stream_evaluate",
                           param="stream")
    target = spec.target
    presets = spec.presets
    if isinstance(store, os.PathLike):
        store = os.fspath(store)
    ds = open_dataset(store, storage_options)
    data = load_data(ds, spec.features, spec.label_rule, target)
    classes = data.classes
    if target != "distribution" and len(classes) < 2:
        raise EmodistError(f"only one class ({classes[0]}) among the evaluated segments")
    groups, group_by = segment_groups(ds, data.group, data.track_id, spec.group_by,
                                      copies=copies, storage_options=storage_options)
    word, words = group_words(group_by)
    strata = data.y if data.strata is None else data.strata
    if spec.fold_source == "dataset":
        splits = published_splits(ds, data.track_id, param="fold_source")
        fold, n_folds = None, len(splits.names)
        cv = (f"the dataset's {n_folds} published splits ({', '.join(splits.names)}): each "
              "split's test part scored by models fit on its training part (validation part unused)")
    else:
        fold, n_folds = make_folds(strata, groups, spec.folds, spec.seed, unit=words), spec.folds
        cv = describe_splitter(fold_splitter(strata, groups, spec.folds, spec.seed), word)
    report = {
        "emodist_version": __version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "settings": {
            "features": [fs.name for fs in data.sets],
            "feature_names": {fs.name: fs.names for fs in data.sets if fs.name == "custom"},
            "classifiers": [p.key for p in presets],
            "folds": n_folds,
            "seed": spec.seed,
            "balance": spec.balance,
            "label_rule": data.label_rule,
            "target": target,
            "rank_by": spec.rank_by,
            "cv": cv,
            "stratified_by": "emotion" if data.strata is not None else "label",
            "group_by": group_by,
            "executor": "dask" if client is not None else f"joblib(n_jobs={n_jobs})",
        },
        "evaluation_spec": spec.to_dict(),
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
        },
    }
    if fold is not None:
        report["folds"]["fold"] = fold.tolist()
    else:
        report["settings"]["stratified_by"] = "none (published splits)"
        report["folds"]["splits"] = {name: splits.parts[:, k].tolist()
                                     for k, name in enumerate(splits.names)}
    t0 = time.perf_counter()
    if fold is None:
        results, skipped, baselines, tested = split_results(
            data, splits.parts, groups, presets, spec.balance_modes, spec.seed, client, n_jobs,
            progress)
        report["skipped"], report["baselines"], report["tested"] = skipped, baselines, tested
    elif target == "distribution":
        results, baseline = distribution_results(data, fold, groups, presets, spec.seed, client, n_jobs,
                                                 progress)
        report["skipped"] = []
        report["baselines"] = {"train_mean": baseline}
    else:
        results, skipped, baselines = class_results(
            data, fold, groups, presets, spec.balance_modes, spec.seed, client, n_jobs, progress)
        report["skipped"] = skipped
        report["baselines"] = baselines
    report["seconds"] = round(time.perf_counter() - t0, 3)
    report["results"] = rank_results(results, spec.rank_by)
    report["ceiling"] = human_ceiling(spec.ceiling, ds.attrs.get("dataset"), data, target, spec.seed)
    if out is not None:
        report["files"] = write_report(report, out, storage_options)
    return report

