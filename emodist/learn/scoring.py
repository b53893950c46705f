"""Scores of out-of-fold class predictions: fold metrics, confusion, track level.

Everything here is a pure function of labels, predictions and folds:

* :func:`classification_metrics`: accuracy, balanced accuracy and macro-F1
  per fold (mean, population std) and pooled, per-class scores and the
  confusion matrix;
* :func:`confusion`: the confusion matrix as in the reference study (rows the
  true class, row-normalised percentages, TPR and FNR per class);
* :func:`track_level` / :func:`majority_vote`: one prediction per track, the
  majority vote over its segments;
* :func:`baseline_rates`: the random-guess and majority-class rates;
* :func:`rank_results`: results best first.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

#: The headline metrics, in display order.
HEADLINE = ("accuracy", "balanced_accuracy", "macro_f1")


def fold_summary(values) -> dict:
    """``mean``, ``std`` (population) and the list of per-fold ``values``."""
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=0)), "folds": v.tolist()}


def confusion(y_true, y_pred, classes) -> dict:
    """Confusion matrix as in the study: rows true class, row-normalised percent.

    Returns
    -------
    dict
        ``classes``, ``counts`` (int matrix), ``percent`` (rows sum to 100, or
        0 for an empty row), ``tpr`` and ``fnr`` (percent, per true class).
    """
    counts = confusion_matrix(np.asarray(y_true), np.asarray(y_pred), labels=list(classes))
    rows = counts.sum(axis=1, keepdims=True)
    pct = np.divide(100.0 * counts, rows, out=np.zeros(counts.shape), where=rows > 0)
    tpr = np.diag(pct).copy()
    fnr = np.where(rows[:, 0] > 0, 100.0 - tpr, 0.0)
    return {
        "classes": list(classes),
        "counts": counts.tolist(),
        "percent": pct.round(4).tolist(),
        "tpr": tpr.round(4).tolist(),
        "fnr": fnr.round(4).tolist(),
    }


def fold_scores(y_true, y_pred) -> dict[str, float]:
    """Accuracy, balanced accuracy and macro-F1 of one fold's predictions."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "accuracy": float(accuracy_score(y_true, y_pred)),
            "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
            "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        }


def headline_metrics(y_true, y_pred, folds) -> dict:
    """Accuracy, balanced accuracy and macro-F1 per fold, summarised.

    Parameters
    ----------
    y_true, y_pred : array_like, shape (n,)
        Out-of-fold labels and predictions.
    folds : array_like of int, shape (n,)
        Test fold of each sample.

    Returns
    -------
    dict
        Metric -> ``{"mean", "std", "folds", "pooled"}``; ``folds`` lists the
        per-fold values in increasing fold number; ``pooled`` is the metric
        over all samples at once.
    """
    y_true, y_pred, folds = np.asarray(y_true), np.asarray(y_pred), np.asarray(folds)
    per = [fold_scores(y_true[folds == k], y_pred[folds == k]) for k in np.unique(folds)]
    pooled = fold_scores(y_true, y_pred)
    out = {}
    for name in HEADLINE:
        out[name] = fold_summary([f[name] for f in per])
        out[name]["pooled"] = pooled[name]
    return out


def classification_metrics(y_true, y_pred, folds, classes) -> dict:
    """Per-fold mean/std and pooled metrics, per-class scores and confusion.

    Parameters
    ----------
    y_true, y_pred : array_like
        Out-of-fold labels and predictions of every sample.
    folds : array_like
        Fold of each sample.
    classes : sequence of str
        Class order of the per-class scores and confusion matrix.

    Returns
    -------
    dict
        ``accuracy``, ``balanced_accuracy``, ``macro_f1`` (each ``mean``,
        ``std``, ``folds`` and ``pooled``), ``per_class`` and ``confusion``.
    """
    y_true, y_pred, folds = np.asarray(y_true), np.asarray(y_pred), np.asarray(folds)
    out = headline_metrics(y_true, y_pred, folds)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p, r, f, s = precision_recall_fscore_support(
            y_true, y_pred, labels=list(classes), zero_division=0
        )
    out["per_class"] = {
        c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
        for i, c in enumerate(classes)
    }
    out["confusion"] = confusion(y_true, y_pred, classes)
    out["n"] = len(y_true)
    return out


def majority_vote(pred, groups, classes) -> pd.Series:
    """Most frequent prediction per group; ties go to the first class in ``classes``.

    Returns
    -------
    pandas.Series
        Index: group (in first-appearance order); values: predicted class.
    """
    order = {c: i for i, c in enumerate(classes)}
    frame = pd.DataFrame({"g": np.asarray(groups), "p": np.asarray(pred)})
    counts = frame.groupby(["g", "p"], sort=False).size().rename("n").reset_index()
    counts["rank"] = counts["p"].map(order)
    counts = counts.sort_values(["g", "n", "rank"], ascending=[True, False, True], kind="stable")
    best = counts.drop_duplicates("g").set_index("g")["p"]
    return best.reindex(pd.unique(frame["g"]))


def track_level(y_true, y_pred, folds, track_id, classes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Track labels, majority-vote predictions and folds, one row per track."""
    frame = pd.DataFrame({"t": np.asarray(track_id), "y": np.asarray(y_true), "f": np.asarray(folds)})
    first = frame.drop_duplicates("t").set_index("t")
    votes = majority_vote(y_pred, track_id, classes)
    return first["y"].to_numpy(), votes.loc[first.index].to_numpy(), first["f"].to_numpy()


def baseline_rates(y, classes) -> dict:
    """Random-guess rate (1 / classes) and majority-class rate of labels ``y``."""
    counts = pd.Series(np.asarray(y)).value_counts()
    return {
        "chance": 1.0 / len(classes),
        "majority": float(counts.iloc[0] / counts.sum()),
        "majority_class": str(counts.index[0]),
    }


def rank_results(results: list[dict], metric: str = "accuracy") -> list[dict]:
    """Results sorted best first by a segment metric's fold mean (JSD: lowest first).

    ``metric`` is one of :data:`HEADLINE`; ties keep the given order.
    """
    if results and "distribution" in results[0]:
        return sorted(results, key=lambda r: r["distribution"]["jsd"]["mean"])
    return sorted(results, key=lambda r: -r["segment"][metric]["mean"])
