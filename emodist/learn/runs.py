"""The fits of one evaluation run and their scores, per target.

:func:`class_results` (dominant emotion or dominant factor) and
:func:`distribution_results` build the tasks of every (feature set, preset,
balance, fold), run them through :func:`emodist.engine.executor.run_all`
(:mod:`joblib` or a Dask cluster) and score the out-of-fold outputs:
segment level, track level by majority vote, and -- for presets that give
class probabilities -- track level by the mean of the segments'
probabilities (:func:`emodist.learn.metrics.track_mean_proba`).
"""

from __future__ import annotations

import logging
import time

import numpy as np

from emodist.engine.executor import run_all
from emodist.learn import presets as clf
from emodist.learn.distribution import (
    distribution_metrics,
    fit_predict_distribution,
    train_mean_baseline,
)
from emodist.learn.fits import FitFailure, fit_on_set
from emodist.learn.metrics import track_mean_proba
from emodist.learn.schedule import fit_cost, in_task_order, longest_first
from emodist.learn.scoring import baseline_rates, classification_metrics, track_level

log = logging.getLogger("emodist.learn.evaluate")


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


def result_head(fs, p: clf.Preset, balance: str, seconds: float) -> dict:
    """The identifying part of one result row."""
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
    """Fit and score every class preset; ``(results, skipped, baselines)``.

    ``groups`` is the grouping of the folds; presets with a grouped inner
    cross-validation get the training rows' groups.  The fits of every
    feature set run together, longest first (:mod:`emodist.learn.schedule`);
    a result's ``seconds`` is the sum of its fits' wall seconds.
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
    t_true, _, t_folds = track_level(data.y, data.y, folds, data.track_id, classes)
    first = list(dict.fromkeys(data.track_id))
    results = []
    for fs in data.sets:
        for p in presets:
            for mode in modes:
                key = (fs.name, p.key, mode)
                if key not in outs or key in failed:
                    continue
                slot = outs[key]
                _, t_pred, _ = track_level(data.y, slot["pred"], folds, data.track_id, classes)
                row = {**result_head(fs, p, mode, slot["seconds"]),
                       "segment": classification_metrics(data.y, slot["pred"], folds, classes),
                       "track": classification_metrics(t_true, t_pred, t_folds, classes)}
                if slot["has_proba"]:
                    t_mean = track_mean_proba(slot["proba"], data.track_id, classes).loc[first]
                    row["track_proba"] = classification_metrics(t_true, t_mean.to_numpy(), t_folds, classes)
                row["predictions"] = slot["pred"].tolist()
                results.append(row)
    baselines = {"segment": baseline_rates(data.y, classes), "track": baseline_rates(t_true, classes)}
    return results, skipped, baselines


def distribution_results(data, folds, groups, presets, seed, client, n_jobs, progress):
    """Fit and score every distribution preset; ``(results, train-mean baseline)``."""
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
