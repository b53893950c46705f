"""The fits of an evaluation: one task per fit, their order, their execution, their scores.

Every (feature set, preset, balance, fold) fit of an evaluation is one task:

* the task functions (:func:`fit_predict_proba`, :func:`fit_on_set`,
  :func:`fit_predict_distribution`) are module-level and take plain arrays,
  so that :mod:`joblib` and Dask can ship them to other processes.  Each is
  seeded and limited to one native thread, so its result does not depend on
  where or when it runs.  Soft targets and groups reach the presets that
  need them (:attr:`Preset.fit_params <emodist.learn.presets.Preset>`)
  through :func:`fit_params`;
* all of them go to the executor together, longest first: the fits differ
  in cost by three orders of magnitude (a KNN on 131 columns: 0.05 s;
  boosted trees on 2048 columns: minutes), and a long fit started last
  keeps one core busy while the others idle.  :func:`longest_first` orders
  the tasks by the estimate of :func:`fit_cost`, so the long fits start
  first and the short ones fill the gaps at the end.  Every fit is seeded,
  so the order changes nothing but the wall time;
* :func:`class_results` (dominant emotion or dominant factor),
  :func:`split_results` (the same on a dataset's published splits) and
  :func:`distribution_results` run them through
  :func:`emodist.runtime.executor.run_all` (:mod:`joblib` or a Dask cluster)
  and score the out-of-fold outputs: segment level, track level by majority
  vote, and -- for presets that give class probabilities -- track level by
  the mean of the segments' probabilities
  (:func:`emodist.learn.scoring.track_mean_proba`).

:func:`oof_predict_proba` is the same out-of-fold loop for any estimator, in
this process.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.base import clone
from sklearn.utils.class_weight import compute_sample_weight
from threadpoolctl import threadpool_limits

from emodist.learn import presets as clf
from emodist.learn.estimators import aligned_proba, reduced_width, slice_params
from emodist.learn.folds import split_folds
from emodist.learn.presets import (
    get_preset,
    make_distribution_pipeline,
    make_pipeline,
    resolve_distribution_presets,
)
from emodist.learn.scoring import (
    baseline_rates,
    classification_metrics,
    distribution_metrics,
    spread_track_mean,
    track_level,
    track_mean_proba,
    train_mean_baseline,
)
from emodist.learn.targets import normalise_rows
from emodist.progress import progress_bar
from emodist.runtime.executor import run_all

__all__ = [
    "BEYOND_SECONDS",
    "DEFAULT_SECONDS",
    "FIT_SECONDS",
    "FitFailure",
    "FitProgress",
    "class_results",
    "distribution_results",
    "fit_cost",
    "fit_on_set",
    "fit_params",
    "fit_predict",
    "fit_predict_distribution",
    "fit_predict_or_failure",
    "fit_predict_proba",
    "in_task_order",
    "longest_first",
    "oof_predict_proba",
    "result_head",
    "set_classes",
    "split_results",
]

log = logging.getLogger("emodist.learn.evaluate")


# --------------------------------------------------------------------------
# One fit.
# --------------------------------------------------------------------------


def set_classes(model, classes) -> None:
    """Set every ``classes`` parameter of ``model`` (the soft-target columns).

    Parameters
    ----------
    model : sklearn.base.BaseEstimator
        A preset's pipeline (nested ``classes`` parameters too).
    classes : iterable
        Column labels of the soft targets.
    """
    keys = [k for k in model.get_params(deep=True) if k == "classes" or k.endswith("__classes")]
    if keys:
        model.set_params(**{k: list(classes) for k in keys})


def fit_params(preset, train, y, *, weights: bool, soft=None, groups=None) -> dict:
    """Fit parameters (``model__*``) of a preset's pipeline on the rows ``train``.

    Parameters
    ----------
    preset : emodist.learn.presets.Preset
    train : numpy.ndarray of bool, shape (n,)
        Training rows.
    y : numpy.ndarray, shape (n,)
        Labels (for the balanced class weights).
    weights : bool
        Weight the training rows inversely to their class frequency.
    soft : numpy.ndarray, shape (n, k), optional
        Vote shares (presets whose ``fit_params`` name ``soft``).
    groups : array_like, shape (n,), optional
        Group of each row (presets whose ``fit_params`` name ``groups``).

    Returns
    -------
    dict
        ``model__sample_weight``, ``model__soft``, ``model__groups`` as needed.

    Raises
    ------
    ValueError
        A soft-target preset without vote shares.
    """
    kw = {}
    if weights:
        kw["model__sample_weight"] = compute_sample_weight("balanced", y[train])
    if "soft" in preset.fit_params:
        if soft is None:
            raise ValueError(f"{preset.name} learns from vote shares; the store keeps no votes")
        kw["model__soft"] = soft[train]
    if "groups" in preset.fit_params and groups is not None:
        kw["model__groups"] = np.asarray(groups)[train]
    return kw


def fit_predict_proba(X, y, folds, fold: int, preset_key: str, seed: int, weights: bool,
                      soft=None, groups=None, classes=None):
    """:func:`fit_predict`, with the test rows' class probabilities where the model has them.

    Parameters
    ----------
    X, y, folds, fold, preset_key, seed, weights
        As in :func:`fit_predict`.
    soft : numpy.ndarray, optional
        Vote shares of every sample, columns ``classes`` (presets that
        learn from them).
    groups : numpy.ndarray, optional
        Group of every sample (presets with a grouped inner CV get the
        training rows' groups).
    classes : sequence of str, optional
        Class order of ``soft`` and of the returned probabilities (default:
        sorted labels).

    Returns
    -------
    predictions : numpy.ndarray of object
        For the samples of ``fold``.
    proba : numpy.ndarray, shape (n_test, len(classes)), or None
        ``None`` for a model without ``predict_proba`` (SVMs).
    """
    train, test = folds != fold, folds == fold
    preset = get_preset(preset_key)
    classes = list(np.unique(y)) if classes is None else list(classes)
    model = make_pipeline(preset, seed)
    set_classes(model, classes)
    kw = fit_params(preset, train, y, weights=weights, soft=soft, groups=groups)
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore")
        model.fit(X[train], y[train], **kw)
        pred = np.asarray(model.predict(X[test]), dtype=object)
        proba = aligned_proba(model, X[test], classes) if hasattr(model, "predict_proba") else None
    return pred, proba


def fit_predict(X, y, folds, fold: int, preset_key: str, seed: int, weights: bool) -> np.ndarray:
    """Fit a preset on every fold but ``fold`` and predict ``fold``.

    Parameters
    ----------
    X : numpy.ndarray
        All samples.
    y : numpy.ndarray
        All labels.
    folds : numpy.ndarray
        Fold of each sample.
    fold : int
        Held-out fold.
    preset_key : str
        Classifier preset.
    seed : int
        Random state of the model.
    weights : bool
        Weight training samples inversely to their class frequency.

    Returns
    -------
    numpy.ndarray
        Predictions for the samples of ``fold``, in sample order.

    Notes
    -----
    Native thread pools (OpenMP, BLAS) are limited to one thread: the
    parallelism is across tasks, and a task that spreads over every core of
    a busy machine runs many times slower.
    """
    train, test = folds != fold, folds == fold
    model = make_pipeline(preset_key, seed)
    kw = fit_params(get_preset(preset_key), train, y, weights=weights)
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore")
        model.fit(X[train], y[train], **kw)
        return np.asarray(model.predict(X[test]), dtype=object)


@dataclass(frozen=True)
class FitFailure:
    """A preset that could not be fit on a fold (too few samples for it...).

    Parameters
    ----------
    message : str
        The error's type and first line.
    """

    message: str


def fit_predict_or_failure(**kwargs):
    """:func:`fit_predict_proba`, returning a :class:`FitFailure` instead of raising.

    Some presets cannot be fit on some data (a discriminant on fewer samples
    than classes, ...); that preset is reported as failed and the others
    still run.

    Parameters
    ----------
    **kwargs
        The arguments of :func:`fit_predict_proba`.

    Returns
    -------
    tuple or FitFailure
        What :func:`fit_predict_proba` returns, or the failure.
    """
    try:
        return fit_predict_proba(**kwargs)
    except (ValueError, np.linalg.LinAlgError) as exc:
        text = str(exc).strip().splitlines()
        return FitFailure(f"{type(exc).__name__}: {text[0] if text else ''}")


def fit_on_set(Xs, x_index: int, **kwargs):
    """:func:`fit_predict_or_failure` on the feature set ``Xs[x_index]``, and its seconds.

    The task of an evaluation that sends every feature set's fits to the
    executor at once (:func:`longest_first`).

    Parameters
    ----------
    Xs : sequence of numpy.ndarray
        The matrix of every feature set (shared by all tasks).
    x_index : int
        Position of this fit's feature set in ``Xs``.
    **kwargs
        The other arguments of :func:`fit_predict_proba`.

    Returns
    -------
    result : tuple or FitFailure
        What :func:`fit_predict_or_failure` returns.
    seconds : float
        Wall seconds of the fit.
    """
    t0 = time.perf_counter()
    result = fit_predict_or_failure(X=Xs[x_index], **kwargs)
    return result, time.perf_counter() - t0


def fit_predict_distribution(X, P, folds, fold: int, preset_key: str, seed: int,
                             tracks=None, groups=None) -> np.ndarray:
    """Fit a distribution model on the training folds and predict ``fold``.

    Parameters
    ----------
    X : numpy.ndarray
        All samples.
    P : numpy.ndarray, shape (n, k)
        Target distribution of every sample.
    folds : numpy.ndarray
        Fold of each sample.
    fold : int
        Held-out fold.
    preset_key : str
        Distribution preset.
    seed : int
        Random state of the model.
    tracks : numpy.ndarray, optional
        Track of every sample (presets that average over a test track).
    groups : numpy.ndarray, optional
        Group of every sample (presets with a grouped inner CV).

    Returns
    -------
    numpy.ndarray, shape (n_test, k)
        Non-negative predicted distributions, rows summing to 1.  A soft-label
        preset learns from ``P`` with the argmax as hard label and predicts
        its probabilities; with ``track_mean`` each test row is replaced by
        the mean over its track's test rows.
    """
    train, test = folds != fold, folds == fold
    preset = resolve_distribution_presets([preset_key])[0]
    model = make_distribution_pipeline(preset, seed)
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore")
        if "soft" not in preset.fit_params:
            model.fit(X[train], P[train])
            return normalise_rows(model.predict(X[test]))
        k = P.shape[1]
        set_classes(model, range(k))
        kw = {"model__soft": P[train]}
        if "groups" in preset.fit_params and groups is not None:
            kw["model__groups"] = np.asarray(groups)[train]
        model.fit(X[train], np.argmax(P[train], axis=1), **kw)
        out = aligned_proba(model, X[test], list(range(k)))
    if preset.track_mean and tracks is not None:
        out = spread_track_mean(out, np.asarray(tracks)[test])
    return normalise_rows(out)


def oof_predict_proba(estimator, X, y, folds, *, classes=None, fit_params=None,
                      groups_param: str | None = None, groups=None) -> np.ndarray:
    """Out-of-fold class probabilities over given folds.

    Parameters
    ----------
    estimator : classifier with ``predict_proba``
        Cloned and fit once per fold on the other folds.
    X : array_like, shape (n, d)
    y : array_like, shape (n,)
    folds : array_like of int, shape (n,)
        Test fold of each sample.
    classes : sequence, optional
        Column order of the result (default: sorted unique ``y``); a class
        a fold's model does not know gets probability 0.
    fit_params : dict, optional
        Extra fit parameters; per-sample ones are sliced to the training rows.
    groups_param : str, optional
        Name under which the training rows' ``groups`` are passed to ``fit``
        (e.g. ``"groups"`` or ``"model__groups"``) for estimators that run
        their own grouped inner cross-validation.
    groups : array_like, shape (n,), optional
        Group of each sample.

    Returns
    -------
    numpy.ndarray, shape (n, n_classes)
    """
    X, y, folds = np.asarray(X), np.asarray(y), np.asarray(folds)
    classes = np.unique(y) if classes is None else np.asarray(classes)
    out = np.zeros((len(y), len(classes)))
    for k in np.unique(folds):
        train, test = np.flatnonzero(folds != k), np.flatnonzero(folds == k)
        kw = slice_params(fit_params, train, len(y))
        if groups_param is not None:
            kw[groups_param] = np.asarray(groups)[train]
        model = clone(estimator)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(X[train], y[train], **kw)
            out[test] = aligned_proba(model, X[test], classes)
    return out


# --------------------------------------------------------------------------
# Longest first.
# --------------------------------------------------------------------------

#: Rough single-thread seconds of one fit on about 320 training rows:
#: ``(fixed, per 2048 model input columns)``, measured on the 100 shared
#: Emotify tracks (fold 0, no weights).  Only their order matters.
FIT_SECONDS = {
    "histogram-gradient-boosting": (5.0, 97.0),
    "boosted-trees": (1.5, 13.0),
    "subspace-discriminant": (0.1, 3.8),
    "cubic-knn": (0.0, 3.5),
    "rusboosted-trees": (0.1, 1.9),
    "subspace-knn": (0.05, 0.75),
    "bagged-trees": (0.05, 0.5),
}
#: Estimate for presets the table does not name (SVMs, KNNs, the linear models).
DEFAULT_SECONDS = (0.05, 0.3)
#: Presets beyond the study (soft labels, inner CV, bagging): a few times a linear model.
BEYOND_SECONDS = (0.5, 3.0)


def fit_cost(preset_key: str, n_rows: int, n_columns: int, *, reduce: bool = False,
             beyond: bool = False) -> float:
    """Estimated seconds of one fit of a preset.

    Parameters
    ----------
    preset_key : str
        Preset key.
    n_rows : int
        Training rows (the estimate scales linearly from 320).
    n_columns : int
        Columns of the feature set.
    reduce : bool
        The preset's pipeline has the wide-input PCA step
        (:class:`~emodist.learn.estimators.WideInputPCA`).
    beyond : bool
        A preset beyond the study (used when the table does not name it).

    Returns
    -------
    float
        Estimated seconds; only comparisons between estimates are meaningful.
    """
    fixed, per_2048 = FIT_SECONDS.get(preset_key, BEYOND_SECONDS if beyond else DEFAULT_SECONDS)
    width = reduced_width(n_rows, n_columns) if reduce else n_columns
    return (fixed + per_2048 * width / 2048.0) * max(n_rows, 1) / 320.0


def longest_first(costs) -> list[int]:
    """Task positions ordered by decreasing cost (equal costs keep their order).

    Parameters
    ----------
    costs : sequence of float
        Estimated cost of each task.

    Returns
    -------
    list of int
        A permutation of ``range(len(costs))``.
    """
    return sorted(range(len(costs)), key=lambda i: -costs[i])


def in_task_order(order, results) -> list:
    """Results of tasks run in ``order`` put back in task order.

    Parameters
    ----------
    order : sequence of int
        Task positions in the order they were run (:func:`longest_first`).
    results : sequence
        Result of each run task, in run order.

    Returns
    -------
    list
        ``out[order[j]] = results[j]``.
    """
    out = [None] * len(order)
    for j, i in enumerate(order):
        out[i] = results[j]
    return out


# --------------------------------------------------------------------------
# Every fit of a run, and its scores.
# --------------------------------------------------------------------------


class FitProgress:
    """A progress bar over ``total`` fits (done/total, rate, ETA), or nothing.

    Parameters
    ----------
    enabled : bool
        Show the bar (:func:`emodist.progress.progress_bar`).
    total : int
        Number of fits.
    """

    def __init__(self, enabled: bool, total: int):
        self._bar = progress_bar(enabled, "fits", "fit").__enter__()
        self._task = None if self._bar is None else self._bar.add_task("fits", total=total)

    def tick(self) -> None:
        if self._bar is not None:
            self._bar.update(self._task, advance=1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


def result_head(fs, p: clf.Preset, balance: str, seconds: float) -> dict:
    """The identifying part of one result row.

    Parameters
    ----------
    fs : emodist.learn.data.FeatureSet
    p : emodist.learn.presets.Preset
    balance : str
        ``"none"`` or ``"weights"``.
    seconds : float
        Wall seconds of the result's fits.

    Returns
    -------
    dict
        ``features``, ``n_features``, ``classifier``, ``name``, ``family``,
        ``params``, ``balance``, ``soft_targets``, ``seconds``.
    """
    return {
        "features": fs.name,
        "n_features": len(fs.names),
        "classifier": p.key,
        "name": p.name,
        "family": p.family,
        "params": p.params,
        "balance": balance,
        "soft_targets": "soft" in p.fit_params,
        "seconds": round(float(seconds), 3),
    }


def _class_tasks(data, folds, presets, modes):
    tasks, skipped = [], []
    for fs in data.sets:
        for p in presets:
            for mode in modes:
                if mode == "weights" and not clf.supports_weights(p):
                    skipped.append({"features": fs.name, "classifier": p.key, "balance": mode,
                                    "reason": "no per-sample weights in this model"})
                elif "soft" in p.fit_params and data.soft is None:
                    skipped.append({"features": fs.name, "classifier": p.key, "balance": mode,
                                    "reason": "learns from vote shares; the store keeps no votes"})
                else:
                    tasks += [{"fs": fs.name, "preset": p, "mode": mode, "fold": k}
                              for k in range(int(folds.max()) + 1)]
    return tasks, skipped


def _run_class_tasks(data, tasks, common, seed, client, n_jobs, bar):
    """Run every fit of ``tasks`` at once, longest first; ``(result, seconds)`` per task."""
    names = [fs.name for fs in data.sets]
    n_train = len(data.y) * (1 - 1 / max(1, int(common["folds"].max()) + 1))
    costs = [fit_cost(t["preset"].key, n_train, data.X[t["fs"]].shape[1], reduce=t["preset"].reduce,
                      beyond=t["preset"].key in clf.BEYOND_PRESETS) for t in tasks]
    order = longest_first(costs)
    run = [{"x_index": names.index(tasks[i]["fs"]), "fold": tasks[i]["fold"],
            "preset_key": tasks[i]["preset"].key, "seed": seed,
            "weights": tasks[i]["mode"] == "weights"} for i in order]
    out = run_all(fit_on_set, {"Xs": [data.X[n] for n in names], **common}, run,
                  client=client, n_jobs=n_jobs, on_done=bar.tick)
    return in_task_order(order, out)


def class_results(data, folds, groups, presets, modes, seed, client, n_jobs, progress):
    """Fit and score every class preset.

    The fits of every feature set run together, longest first
    (:func:`longest_first`); a result's ``seconds`` is the sum of its fits'
    wall seconds.

    Parameters
    ----------
    data : emodist.learn.data.EvalData
        The evaluated segments.
    folds : numpy.ndarray of int, shape (n,)
        Test fold of each segment (:func:`emodist.learn.folds.make_folds`).
    groups : numpy.ndarray, shape (n,)
        Grouping of the folds; presets with a grouped inner cross-validation
        get the training rows' groups.
    presets : list of emodist.learn.presets.Preset
    modes : list of str
        Balance modes (:attr:`EvaluationSpec.balance_modes
        <emodist.learn.spec.EvaluationSpec.balance_modes>`).
    seed : int
        Seed of every model.
    client : distributed.Client or None
        Run the fits on this cluster, else with :mod:`joblib`.
    n_jobs : int or None
        joblib processes.
    progress : bool
        Progress bar over the fits.

    Returns
    -------
    results : list of dict
        One row per (feature set, preset, balance): segment, track and (with
        probabilities) mean-probability track metrics, and the predictions.
    skipped : list of dict
        What was not run or failed, and why.
    baselines : dict
        ``segment`` and ``track`` :func:`~emodist.learn.scoring.baseline_rates`.
    """
    outs, skipped = _class_fits(data, folds, groups, presets, modes, seed, client, n_jobs, progress)
    results = _class_scores(data.sets, presets, modes, outs, data.y, folds, data.track_id,
                            data.classes)
    t_true, _, _ = track_level(data.y, data.y, folds, data.track_id, data.classes)
    baselines = {"segment": baseline_rates(data.y, data.classes),
                 "track": baseline_rates(t_true, data.classes)}
    return results, skipped, baselines


def _class_fits(data, folds, groups, presets, modes, seed, client, n_jobs, progress):
    """Every fit of :func:`class_results`; ``(outputs, skipped)``.

    ``outputs``: ``(feature set, preset, balance)`` -> ``pred`` and ``proba``
    (filled on the rows of the tested folds), ``has_proba``, ``seconds``;
    a key with a failed fit is left out and listed in ``skipped``.
    """
    classes = data.classes
    tasks, skipped = _class_tasks(data, folds, presets, modes)
    common = {"y": data.y, "folds": folds, "soft": data.soft, "groups": groups, "classes": classes}
    common = {k: v for k, v in common.items() if v is not None}
    outs: dict[tuple, dict] = {}
    failed: set[tuple] = set()
    bar = FitProgress(progress, len(tasks))
    t0 = time.perf_counter()
    done = _run_class_tasks(data, tasks, common, seed, client, n_jobs, bar) if tasks else []
    log.info("evaluated %d fits in %.1f s (longest first)", len(tasks), time.perf_counter() - t0)
    for fs in data.sets:
        group = [(t, res, sec) for t, (res, sec) in zip(tasks, done) if t["fs"] == fs.name]
        if not group:
            continue
        for t, res, sec in group:
            key = (fs.name, t["preset"].key, t["mode"])
            if isinstance(res, FitFailure):
                failed.add(key)
                skipped.append({"features": fs.name, "classifier": t["preset"].key, "balance": t["mode"],
                                "reason": f"fit failed on fold {t['fold']}: {res.message}"})
                continue
            slot = outs.setdefault(key, {"pred": np.empty(len(data.y), dtype=object),
                                         "proba": np.zeros((len(data.y), len(classes))),
                                         "has_proba": True, "seconds": 0.0})
            pred, proba = res
            slot["pred"][folds == t["fold"]] = pred
            slot["seconds"] += sec
            if proba is None:
                slot["has_proba"] = False
            else:
                slot["proba"][folds == t["fold"]] = proba
        log.info("evaluated %d fits on %s features (%.1f s of fitting)", len(group), fs.name,
                 sum(sec for _, _, sec in group))
    bar.close()
    return {k: v for k, v in outs.items() if k not in failed}, skipped


def _class_scores(sets, presets, modes, outs, y, folds, track_id, classes) -> list[dict]:
    """One result row per output of :func:`_class_fits`, scored at segment and track level."""
    t_true, _, t_folds = track_level(y, y, folds, track_id, classes)
    first = list(dict.fromkeys(track_id))
    results = []
    for fs in sets:
        for p in presets:
            for mode in modes:
                slot = outs.get((fs.name, p.key, mode))
                if slot is None:
                    continue
                _, t_pred, _ = track_level(y, slot["pred"], folds, track_id, classes)
                row = {**result_head(fs, p, mode, slot["seconds"]),
                       "segment": classification_metrics(y, slot["pred"], folds, classes),
                       "track": classification_metrics(t_true, t_pred, t_folds, classes)}
                if slot["has_proba"]:
                    t_mean = track_mean_proba(slot["proba"], track_id, classes).loc[first]
                    row["track_proba"] = classification_metrics(t_true, t_mean.to_numpy(), t_folds, classes)
                row["predictions"] = slot["pred"].tolist()
                results.append(row)
    return results


def split_results(data, parts, groups, presets, modes, seed, client, n_jobs, progress):
    """Fit and score every class preset on a dataset's published splits.

    Each split is one fit per (feature set, preset, balance): on its
    training part, scoring its test part (:func:`emodist.learn.folds.split_folds`;
    the validation part is not used).  The test parts of the splits overlap
    (MTG-Jamendo's put a track in up to four), so the scores are made on
    the test parts stacked: split ``k``'s test segments are fold ``k``, and a
    track tested by two splits is two tracks (``"<k>/<track>"``) at track
    level.  A metric's ``mean`` and ``std`` are over the splits, as
    published results on such splits are given; ``pooled`` is over every
    test part at once.

    Parameters
    ----------
    data : emodist.learn.data.EvalData
        The evaluated segments.
    parts : numpy.ndarray of str, shape (n, n_splits)
        Each segment's part in each split
        (:attr:`emodist.learn.tracks.PublishedSplits.parts`).
    groups, presets, modes, seed, client, n_jobs, progress
        As for :func:`class_results`.

    Returns
    -------
    results, skipped, baselines
        As :func:`class_results`; a result row's ``predictions`` follow the
        stacked test segments (``tested``), and a configuration whose fit
        failed on any split is skipped.
    tested : dict
        ``segment_id``, ``track_id``, ``label`` and ``split`` (its index) of
        each stacked test segment.
    """
    stacked: dict[tuple, list] = {}
    skipped: list[dict] = []
    y, track, segment, split = [], [], [], []
    for k in range(parts.shape[1]):
        rows, fold = split_folds(parts[:, k])
        sub = data.take(rows, "outside the split")
        outs, missed = _class_fits(sub, fold, np.asarray(groups)[rows], presets, modes, seed,
                                   client, n_jobs, progress)
        skipped += [{**m, "reason": f"split {k}: {m['reason']}"} for m in missed]
        test = fold == 0
        y.append(sub.y[test])
        track.append(np.array([f"{k}/{t}" for t in sub.track_id[test]], dtype=object))
        segment.append(sub.segment_id[test])
        split.append(np.full(int(test.sum()), k))
        for key, slot in outs.items():
            stacked.setdefault(key, []).append({"pred": slot["pred"][test], "proba": slot["proba"][test],
                                                "has_proba": slot["has_proba"], "seconds": slot["seconds"]})
    n_splits = parts.shape[1]
    outs = {key: {"pred": np.concatenate([s["pred"] for s in got]),
                  "proba": np.concatenate([s["proba"] for s in got]),
                  "has_proba": all(s["has_proba"] for s in got),
                  "seconds": sum(s["seconds"] for s in got)}
            for key, got in stacked.items() if len(got) == n_splits}
    y, track, split = np.concatenate(y), np.concatenate(track), np.concatenate(split)
    results = _class_scores(data.sets, presets, modes, outs, y, split, track, data.classes)
    t_true, _, _ = track_level(y, y, split, track, data.classes)
    baselines = {"segment": baseline_rates(y, data.classes),
                 "track": baseline_rates(t_true, data.classes)}
    tested = {"segment_id": np.concatenate(segment).tolist(), "track_id": track.tolist(),
              "label": y.tolist(), "split": split.tolist()}
    return results, skipped, baselines, tested


def distribution_results(data, folds, groups, presets, seed, client, n_jobs, progress):
    """Fit and score every distribution preset.

    The arguments are those of :func:`class_results` (no balance modes).

    Returns
    -------
    results : list of dict
        One row per (feature set, preset) with its ``distribution`` metrics.
    baseline : dict
        The train-mean distribution's metrics.
    """
    results = []
    baseline = distribution_metrics(data.distribution, train_mean_baseline(data.distribution, folds), folds)
    n_folds = int(folds.max()) + 1
    bar = FitProgress(progress, len(data.sets) * len(presets) * n_folds)
    for fs in data.sets:
        tasks = [{"fold": k, "preset_key": p.key, "seed": seed}
                 for p in presets for k in range(n_folds)]
        t0 = time.perf_counter()
        out = run_all(fit_predict_distribution,
                      {"X": data.X[fs.name], "P": data.distribution, "folds": folds,
                       "tracks": data.track_id, "groups": groups},
                      tasks, client=client, n_jobs=n_jobs, on_done=bar.tick)
        per_task = (time.perf_counter() - t0) / max(1, len(tasks))
        for p in presets:
            pred = np.zeros_like(data.distribution)
            for t, o in zip(tasks, out):
                if t["preset_key"] == p.key:
                    pred[folds == t["fold"]] = o
            results.append({
                **result_head(fs, p, "none", per_task * n_folds),
                "distribution": distribution_metrics(data.distribution, pred, folds),
            })
        log.info("evaluated %d fits on %s features in %.1f s", len(tasks), fs.name, time.perf_counter() - t0)
    bar.close()
    return results, baseline
