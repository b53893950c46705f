"""Exploration: which emodist.learn presets help on a real feature store.

    PYTHONPATH=. python benchmarks/explore_learn.py STORE [--folds 5] [--seed 0] [--jobs 2]
        [--out results.json]

Reads the store's finished, labelled segments (``emodist.learn.data.load_data``,
listener rule, handcrafted features), draws the same grouped folds as
``emodist evaluate`` (``make_folds``: StratifiedGroupKFold by track, seed 0)
and scores out-of-fold predictions of each preset:

* 8-class dominant emotion: accuracy / balanced accuracy / macro-F1 (fold
  mean), at segment level and at track level (mean probability);
* 3-class dominant GEMS factor: the same;
* nine-way distribution: mean Jensen-Shannon divergence against the
  train-mean baseline (``emodist.distribution``).

Not part of the test-suite or the ``python -m benchmarks`` runner (it needs
a real store).  Every preset is a pipeline: StandardScaler, then the model;
per-sample fit parameters (``soft``, ``groups``) are routed as ``model__*``.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np
from joblib import Parallel, delayed
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.ensemble import BaggingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier
from threadpoolctl import threadpool_limits

from emodist.data.labels import GEMS
from emodist.learn.data import load_data
from emodist.learn.estimators import (
    BalancedBaggingClassifier,
    PriorShiftClassifier,
    SoftLabelClassifier,
    SoftLogisticRegression,
)
from emodist.learn.folds import make_folds
from emodist.learn.runs import oof_predict_proba
from emodist.learn.scoring import (
    distribution_metrics,
    headline_metrics,
    jensen_shannon,
    spread_track_mean,
    track_mean_proba,
    track_truth,
    train_mean_baseline,
)
from emodist.learn.targets import FACTORS, factor_targets, soft_targets


def pipe(model):
    return Pipeline([("scale", StandardScaler()), ("model", model)])


def rf(seed, **kw):
    return RandomForestClassifier(n_estimators=100, random_state=seed, n_jobs=1, **kw)


def class_presets(classes, seed):
    """name -> (estimator, uses soft targets, needs groups)."""
    cl = list(classes)
    subspace = BaggingClassifier(estimator=LinearDiscriminantAnalysis(), n_estimators=30,
                                 max_features=0.5, bootstrap=False, random_state=seed)
    def prior(est, method="prior_power"):
        return PriorShiftClassifier(est, method=method, random_state=seed)

    def slr(C):
        return SoftLogisticRegression(C=C, classes=cl)

    return {
        "lr (hard)": (pipe(LogisticRegression(max_iter=3000)), False, False),
        "lr balanced weights": (pipe(LogisticRegression(max_iter=3000, class_weight="balanced")), False, False),
        "soft-lr C=1": (pipe(slr(1.0)), True, False),
        "soft-lr C=0.3": (pipe(slr(0.3)), True, False),
        "soft-lr C=0.1": (pipe(slr(0.1)), True, False),
        "soft-lr C=0.01": (pipe(slr(0.01)), True, False),
        "prior-lr (per-class)": (pipe(prior(LogisticRegression(max_iter=3000), "per_class")), False, True),
        "prior-lr (power)": (pipe(prior(LogisticRegression(max_iter=3000))), False, True),
        "prior-soft-lr C=1 (power)": (pipe(prior(slr(1.0))), True, True),
        "prior-soft-lr C=0.1 (power)": (pipe(prior(slr(0.1))), True, True),
        "prior-soft-lr C=0.1 (per-class)": (pipe(prior(slr(0.1), "per_class")), True, True),
        "prior-soft-lr C=0.01 (power)": (pipe(prior(slr(0.01))), True, True),
        "rf (hard)": (pipe(rf(seed)), False, False),
        "soft-rf leaf5": (pipe(SoftLabelClassifier(rf(seed, min_samples_leaf=5), classes=cl)), True, False),
        "prior-soft-rf leaf5 (power)": (pipe(prior(SoftLabelClassifier(rf(seed, min_samples_leaf=5),
                                                                        classes=cl))), True, True),
        "balanced-bagging trees": (pipe(BalancedBaggingClassifier(
            DecisionTreeClassifier(max_features="sqrt"), n_estimators=100, random_state=seed)), False, False),
        "balanced-bagging soft-lr C=0.1": (pipe(BalancedBaggingClassifier(
            slr(0.1), n_estimators=30, random_state=seed)), True, False),
        "balanced-bagging soft-lr C=1": (pipe(BalancedBaggingClassifier(
            slr(1.0), n_estimators=30, random_state=seed)), True, False),
        "subspace discriminant": (pipe(subspace), False, False),
        "prior-subspace discriminant (power)": (pipe(prior(subspace)), False, True),
    }


def distribution_presets(seed):
    g = list(GEMS)
    return {
        "soft-lr 9-way C=0.003": pipe(SoftLogisticRegression(C=0.003, classes=g)),
        "soft-lr 9-way C=0.01": pipe(SoftLogisticRegression(C=0.01, classes=g)),
        "soft-lr 9-way C=0.03": pipe(SoftLogisticRegression(C=0.03, classes=g)),
        "soft-lr 9-way C=0.1": pipe(SoftLogisticRegression(C=0.1, classes=g)),
        "soft-rf 9-way leaf5": pipe(SoftLabelClassifier(rf(seed, min_samples_leaf=5), classes=g)),
        "soft-rf 9-way leaf10": pipe(SoftLabelClassifier(rf(seed, min_samples_leaf=10), classes=g)),
    }


def _run_one(est, X, y, folds, classes, fit_params, groups_param, groups):
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        P = oof_predict_proba(est, X, y, folds, classes=classes, fit_params=fit_params,
                              groups_param=groups_param, groups=groups)
        return P, time.perf_counter() - t0


def score_classes(name, P, y, folds, track, classes, seconds):
    pred = np.asarray(classes, dtype=object)[np.argmax(P, axis=1)]
    seg = headline_metrics(y, pred, folds)
    keys, t_y, t_f = track_truth(y, folds, track)
    t_pred = track_mean_proba(P, track, classes).loc[keys].to_numpy()
    trk = headline_metrics(t_y, t_pred, t_f)
    return {"preset": name, "seconds": round(seconds, 1),
            **{f"seg_{m}": seg[m]["mean"] for m in seg}, **{f"seg_{m}_std": seg[m]["std"] for m in seg},
            **{f"track_{m}": trk[m]["mean"] for m in trk}}


def run_class_target(X, y, soft, folds, track, classes, seed, jobs, label):
    presets = class_presets(classes, seed)
    jobs_list = []
    for name, (est, uses_soft, needs_groups) in presets.items():
        fp = {"model__soft": soft} if uses_soft else None
        jobs_list.append((name, est, fp, "model__groups" if needs_groups else None))
    out = Parallel(n_jobs=jobs)(delayed(_run_one)(est, X, y, folds, classes, fp, gp, track)
                                for _, est, fp, gp in jobs_list)
    rows = [score_classes(n, P, y, folds, track, classes, s) for (n, *_), (P, s) in zip(jobs_list, out)]
    print(f"\n== {label}: {len(classes)} classes; chance {1 / len(classes):.3f}; "
          f"majority {max(np.mean(y == c) for c in classes):.3f}")
    print(f"{'preset':36s} {'acc':>6s} {'balacc':>6s} {'mF1':>6s} | track {'acc':>6s} {'balacc':>6s}  sec")
    for r in rows:
        print(f"{r['preset']:36s} {100 * r['seg_accuracy']:6.1f} {100 * r['seg_balanced_accuracy']:6.1f} "
              f"{100 * r['seg_macro_f1']:6.1f} |       {100 * r['track_accuracy']:6.1f} "
              f"{100 * r['track_balanced_accuracy']:6.1f}  {r['seconds']:.0f}")
    return rows


def run_distribution(X, P9, folds, track, seed, jobs):
    base = distribution_metrics(P9, train_mean_baseline(P9, folds), folds)
    presets = distribution_presets(seed)
    y9 = np.asarray(GEMS, dtype=object)[np.argmax(P9, axis=1)]
    out = Parallel(n_jobs=jobs)(delayed(_run_one)(est, X, y9, folds, list(GEMS), {"model__soft": P9}, None, None)
                                for est in presets.values())
    rows = [{"preset": "train-mean baseline", "jsd": base["jsd"]["mean"], "top1": base["top1"]["mean"],
             "top3": base["top3"]["mean"]}]
    for name, (P, s) in zip(presets, out):
        for smooth in (False, True):
            Q = spread_track_mean(P, track) if smooth else P
            m = distribution_metrics(P9, Q, folds)
            rows.append({"preset": name + (" + track mean" if smooth else ""), "jsd": m["jsd"]["mean"],
                         "jsd_std": m["jsd"]["std"], "top1": m["top1"]["mean"], "top3": m["top3"]["mean"],
                         "seconds": round(s, 1)})
    # C chosen inside each outer training fold by inner grouped CV (mean JSD): no test-fold choice
    grid = (0.003, 0.01, 0.03, 0.1)
    nested, chosen = np.zeros_like(P9), []
    for k in np.unique(folds):
        tr = np.flatnonzero(folds != k)
        inner = make_folds(y9[tr], track[tr], 4, seed)
        best = None
        for C in grid:
            est = pipe(SoftLogisticRegression(C=C, classes=list(GEMS)))
            Pi, _ = _run_one(est, X[tr], y9[tr], inner, list(GEMS), {"model__soft": P9[tr]}, None, None)
            j = float(np.mean(jensen_shannon(P9[tr], spread_track_mean(Pi, track[tr]))))
            if best is None or j < best[0]:
                best = (j, C)
        chosen.append(best[1])
        te = folds == k
        est = pipe(SoftLogisticRegression(C=best[1], classes=list(GEMS)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(X[tr], y9[tr], model__soft=P9[tr])
        nested[te] = spread_track_mean(est.predict_proba(X[te]), track[te])
    m = distribution_metrics(P9, nested, folds)
    rows.append({"preset": f"soft-lr 9-way, C nested {chosen} + track mean", "jsd": m["jsd"]["mean"],
                 "jsd_std": m["jsd"]["std"], "top1": m["top1"]["mean"], "top3": m["top3"]["mean"]})
    print("\n== nine-way distribution (mean JSD base 2; top-1 / top-3 %)")
    for r in rows:
        print(f"{r['preset']:40s} {r['jsd']:.4f}  {100 * r['top1']:5.1f} / {100 * r['top3']:5.1f}"
              f"   ({100 * (1 - r['jsd'] / rows[0]['jsd']):+.1f}% vs baseline)")
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out")
    ap.add_argument("--only", choices=("class", "factor", "distribution"), nargs="*")
    a = ap.parse_args(argv)
    from emodist.store import open_store

    ds = open_store(a.store)
    data = load_data(ds, "handcrafted", "listener", "distribution")
    X, y, track, P9 = data.X["handcrafted"], data.y, data.track_id, data.distribution
    classes = [g for g in GEMS if g in set(y)]
    folds = make_folds(y, track, a.folds, a.seed)
    only = set(a.only or ("class", "factor", "distribution"))
    result = {"store": a.store, "n_segments": len(y), "n_tracks": len(set(track)), "folds": a.folds,
              "seed": a.seed}
    if "class" in only:
        soft = soft_targets(P9, classes=classes)
        result["class"] = run_class_target(X, y, soft, folds, track, classes, a.seed, a.jobs, "emotion")
    if "factor" in only:
        # the same folds (drawn on the emotion labels) so the figures compare
        F, fy = factor_targets(P9, ds["votes_mean"].values[_rows(ds, data)], "listener")
        fcls = [f for f in FACTORS if f in set(fy)]
        result["factor"] = run_class_target(X, fy, F, folds, track, fcls, a.seed, a.jobs, "factor")
    if "distribution" in only:
        result["distribution"] = run_distribution(X, P9, folds, track, a.seed, a.jobs)
    if a.out:
        with open(a.out, "w") as fh:
            json.dump(result, fh, indent=1)


def _rows(ds, data):
    """Store positions of the evaluated segments (load_data keeps store order)."""
    ids = [str(v) for v in ds["segment_id"].values]
    pos = {s: i for i, s in enumerate(ids)}
    return np.array([pos[s] for s in data.segment_id])


if __name__ == "__main__":
    main()
