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
  (:mod:`emodist.learn.fits`) run by :func:`_run_fits` with :mod:`joblib` or
  on a Dask cluster; each task is seeded, so the results do not depend on
  where or in which order it runs;
* metrics are computed from the out-of-fold predictions at segment level and
  at track level (majority vote over a track's segments;
  :mod:`emodist.learn.scoring`).

With ``target="distribution"`` the nine-way vote distribution of each segment
is predicted instead (:mod:`emodist.learn.distribution`).

Module layout, imports one way (no module imports one below it):
:mod:`~emodist.learn.params`, :mod:`~emodist.learn.estimators`,
:mod:`~emodist.learn.scoring` (no other learn module) <-
:mod:`~emodist.learn.presets` <- :mod:`~emodist.learn.distribution`,
:mod:`~emodist.learn.fits`, :mod:`~emodist.learn.labels`,
:mod:`~emodist.learn.folds` <- :mod:`~emodist.learn.features` <- this module.
:mod:`~emodist.learn.report` reads only the report dictionary.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import time

import numpy as np

from emodist._version import __version__
from emodist.errors import EmodistError
from emodist.learn import presets as clf
from emodist.learn.distribution import (
    distribution_metrics,
    fit_predict_distribution,
    train_mean_baseline,
)
from emodist.learn.features import FeatureSet, load_data, open_dataset, store_info
from emodist.learn.fits import FitFailure, fit_predict_or_failure
from emodist.learn.folds import describe_splitter, fold_groups, fold_splitter, make_folds
from emodist.learn.params import TARGETS, balance_modes, check_choice
from emodist.learn.scoring import baseline_rates, classification_metrics, rank_results, track_level

log = logging.getLogger(__name__)

#: How each grouping column reads in the report's splitter line and messages.
_GROUP_WORDS = {"track_id": ("track", "tracks"), "group": ("group", "groups"),
                "group, else track_id": ("group (track where none is set)", "groups")}


def _run_fits(func, common: dict, tasks: list[dict], *, client=None, n_jobs: int | None = -1,
              on_done=None) -> list:
    """Run ``func(**common, **task)`` for every task; results in task order.

    The one place where the evaluation runs its tasks.  With a
    :class:`distributed.Client`, the large ``common`` arguments are
    scattered once and the tasks are submitted to the cluster; otherwise
    :mod:`joblib` runs them (``n_jobs`` processes, 1 = in this process).
    ``on_done()`` is called once per finished task (progress display).
    """
    tick = on_done or (lambda: None)
    if client is not None:
        from distributed import as_completed

        shared = {k: client.scatter(v, broadcast=True) for k, v in common.items()}
        futures = [client.submit(func, **shared, **t, pure=False) for t in tasks]
        for _ in as_completed(futures):
            tick()
        return client.gather(futures)
    from joblib import Parallel, delayed

    out = []
    for result in Parallel(n_jobs=n_jobs, return_as="generator")(
        delayed(func)(**common, **t) for t in tasks
    ):
        out.append(result)
        tick()
    return out


class FitProgress:
    """A progress bar over ``total`` fits (done/total, rate, ETA), or nothing."""

    def __init__(self, enabled: bool, total: int):
        from emodist.progress import progress_bar

        self._bar = progress_bar(enabled, "fits", "fit").__enter__()
        self._task = None if self._bar is None else self._bar.add_task("fits", total=total)

    def tick(self) -> None:
        if self._bar is not None:
            self._bar.update(self._task, advance=1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


def _result_head(fs: FeatureSet, p: clf.Preset, balance: str, seconds: float) -> dict:
    return {
        "features": fs.name,
        "n_features": len(fs.names),
        "classifier": p.key,
        "name": p.name,
        "family": p.family,
        "params": p.params,
        "balance": balance,
        "seconds": round(float(seconds), 3),
    }


def _class_results(data, folds, presets, modes, seed, client, n_jobs, classes, progress):
    tasks, skipped = [], []
    for fs in data.sets:
        for p in presets:
            for mode in modes:
                if mode == "weights" and not clf.supports_weights(p):
                    skipped.append({"features": fs.name, "classifier": p.key, "balance": mode,
                                    "reason": "no per-sample weights in this model"})
                    continue
                for k in range(int(folds.max()) + 1):
                    tasks.append({"fs": fs.name, "preset": p, "mode": mode, "fold": k})
    by_set: dict[str, list] = {}
    for t in tasks:
        by_set.setdefault(t["fs"], []).append(t)
    preds: dict[tuple, np.ndarray] = {}
    failed: set[tuple] = set()
    bar = FitProgress(progress, len(tasks))
    for name, group in by_set.items():
        t0 = time.perf_counter()
        out = _run_fits(
            fit_predict_or_failure,
            {"X": data.X[name], "y": data.y, "folds": folds},
            [{"fold": t["fold"], "preset_key": t["preset"].key, "seed": seed,
              "weights": t["mode"] == "weights"} for t in group],
            client=client, n_jobs=n_jobs, on_done=bar.tick,
        )
        per_task = (time.perf_counter() - t0) / max(1, len(group))
        for t, pred in zip(group, out):
            key = (name, t["preset"].key, t["mode"])
            if isinstance(pred, FitFailure):
                failed.add(key)
                skipped.append({"features": name, "classifier": t["preset"].key,
                                "balance": t["mode"],
                                "reason": f"fit failed on fold {t['fold']}: {pred.message}"})
                continue
            full = preds.setdefault(key, np.empty(len(data.y), dtype=object))
            full[folds == t["fold"]] = pred
            preds[key + ("seconds",)] = preds.get(key + ("seconds",), 0.0) + per_task
        log.info("evaluated %d fits on %s features in %.1f s", len(group), name, time.perf_counter() - t0)
    bar.close()
    results = []
    seg_rates = baseline_rates(data.y, classes)
    t_true, _, t_folds = track_level(data.y, data.y, folds, data.track_id, classes)
    for fs in data.sets:
        for p in presets:
            for mode in modes:
                key = (fs.name, p.key, mode)
                if key not in preds or key in failed:
                    continue
                pred = preds[key]
                _, t_pred, _ = track_level(data.y, pred, folds, data.track_id, classes)
                results.append({
                    **_result_head(fs, p, mode, preds[key + ("seconds",)]),
                    "segment": classification_metrics(data.y, pred, folds, classes),
                    "track": classification_metrics(t_true, t_pred, t_folds, classes),
                    "predictions": pred.tolist(),
                })
    baselines = {"segment": seg_rates, "track": baseline_rates(t_true, classes)}
    return results, skipped, baselines


def _distribution_results(data, folds, presets, seed, client, n_jobs, progress):
    results = []
    baseline = distribution_metrics(data.distribution, train_mean_baseline(data.distribution, folds), folds)
    n_folds = int(folds.max()) + 1
    bar = FitProgress(progress, len(data.sets) * len(presets) * n_folds)
    for fs in data.sets:
        tasks = [{"fold": k, "preset_key": p.key, "seed": seed}
                 for p in presets for k in range(n_folds)]
        t0 = time.perf_counter()
        out = _run_fits(fit_predict_distribution,
                        {"X": data.X[fs.name], "P": data.distribution, "folds": folds},
                       tasks, client=client, n_jobs=n_jobs, on_done=bar.tick)
        per_task = (time.perf_counter() - t0) / max(1, len(tasks))
        for p in presets:
            pred = np.zeros_like(data.distribution)
            for t, o in zip(tasks, out):
                if t["preset_key"] == p.key:
                    pred[folds == t["fold"]] = o
            results.append({
                **_result_head(fs, p, "none", per_task * (int(folds.max()) + 1)),
                "distribution": distribution_metrics(data.distribution, pred, folds),
            })
        log.info("evaluated %d fits on %s features in %.1f s", len(tasks), fs.name, time.perf_counter() - t0)
    bar.close()
    return results, baseline


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
        Preset keys or names; ``"all"`` / ``"quick"`` are shorthands.  For
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
    target : {"class", "distribution"}
        Predict the dominant emotion or the vote distribution.
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

    Returns
    -------
    dict
        The report (what ``report.json`` holds): ``settings``, ``store``,
        ``data``, ``folds``, ``results`` (ranked), ``skipped``, ``baselines``.

    Raises
    ------
    emodist.learn.params.ParameterError
        A parameter with an unusable value; its ``parameter`` attribute
        names it (``"folds"``, ``"features"``, ...).
    emodist.errors.StoreError
        A store that cannot be read or holds nothing to evaluate.
    """
    check_choice("target", target, TARGETS)
    modes = balance_modes(balance)
    if target == "distribution":
        presets = clf.resolve_distribution_presets(classifiers)
    else:
        presets = clf.resolve_presets(classifiers)
    if isinstance(store, os.PathLike):
        store = os.fspath(store)
    ds = open_dataset(store, storage_options)
    data = load_data(ds, features, label_rule, target)
    order = {e: i for i, e in enumerate(data.emotions)}
    classes = sorted(set(data.y), key=lambda c: order.get(c, len(order)))
    if target == "class" and len(classes) < 2:
        raise EmodistError(f"only one class ({classes[0]}) among the evaluated segments")
    groups, group_by = fold_groups(data.group, data.track_id)
    word, words = _GROUP_WORDS[group_by]
    fold = make_folds(data.y, groups, folds, seed, unit=words)
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
            "cv": describe_splitter(fold_splitter(data.y, groups, folds, seed), word),
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
    if target == "class":
        results, skipped, baselines = _class_results(
            data, fold, presets, modes, seed, client, n_jobs, classes, progress)
        report["skipped"] = skipped
        report["baselines"] = baselines
    else:
        results, baseline = _distribution_results(data, fold, presets, seed, client, n_jobs, progress)
        report["skipped"] = []
        report["baselines"] = {"train_mean": baseline}
    report["seconds"] = round(time.perf_counter() - t0, 3)
    report["results"] = rank_results(results)
    if out is not None:
        from emodist.learn.report import write_report

        report["files"] = write_report(report, out)
    return report
