"""Per-fold classification metrics and track-level aggregation of segment outputs.

:func:`fold_metrics` gives accuracy, balanced accuracy and macro-F1 per fold
(scikit-learn's own functions) with their mean, population std and pooled
value -- the layout of ``report.json``.  A track's prediction comes from its
segments either by majority vote over predicted labels (:func:`track_vote`)
or by the argmax of the mean predicted probability (:func:`track_mean_proba`).
Ties: a vote tie goes to the first class in ``classes``; a mean-probability
tie (within 1e-12) likewise, so both aggregators break ties by the same
order (pass the GEMS-ordered classes to match ``emodist evaluate``).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

#: Metric name -> function of (y_true, y_pred).
METRICS = {
    "accuracy": accuracy_score,
    "balanced_accuracy": balanced_accuracy_score,
    "macro_f1": lambda t, p: f1_score(t, p, average="macro", zero_division=0),
}


def summarize(values) -> dict:
    """``mean``, population ``std`` and the list ``folds`` of per-fold values."""
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=0)), "folds": v.tolist()}


def fold_metrics(y_true, y_pred, folds) -> dict:
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
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, fn in METRICS.items():
            per = [fn(y_true[folds == k], y_pred[folds == k]) for k in np.unique(folds)]
            out[name] = summarize(per)
            out[name]["pooled"] = float(fn(y_true, y_pred))
    return out


def track_vote(pred, groups, classes) -> pd.Series:
    """Majority vote of each group's predicted labels.

    Parameters
    ----------
    pred : array_like, shape (n,)
    groups : array_like, shape (n,)
        Track of each segment.
    classes : sequence
        Tie order: a tie goes to the class listed first.

    Returns
    -------
    pandas.Series
        Index: group, in first-appearance order; values: predicted class.
    """
    rank = {c: i for i, c in enumerate(classes)}
    frame = pd.DataFrame({"g": np.asarray(groups), "p": np.asarray(pred)})
    counts = frame.groupby(["g", "p"], sort=False).size().rename("n").reset_index()
    counts["rank"] = counts["p"].map(rank)
    counts = counts.sort_values(["g", "n", "rank"], ascending=[True, False, True], kind="stable")
    return counts.drop_duplicates("g").set_index("g")["p"].reindex(pd.unique(frame["g"]))


def mean_proba(proba, groups) -> tuple[np.ndarray, np.ndarray]:
    """Mean of each group's rows.

    Parameters
    ----------
    proba : array_like, shape (n, k)
    groups : array_like, shape (n,)

    Returns
    -------
    keys : numpy.ndarray, shape (n_groups,)
        Groups in first-appearance order.
    means : numpy.ndarray, shape (n_groups, k)
    """
    proba = np.asarray(proba, dtype=np.float64)
    keys, first, inv = np.unique(np.asarray(groups), return_index=True, return_inverse=True)
    sums = np.zeros((len(keys), proba.shape[1]))
    np.add.at(sums, inv, proba)
    means = sums / np.bincount(inv)[:, None]
    order = np.argsort(first, kind="stable")
    return keys[order], means[order]


def track_mean_proba(proba, groups, classes) -> pd.Series:
    """Track prediction: argmax of the mean segment probability.

    Parameters
    ----------
    proba : array_like, shape (n, k)
        Segment probabilities, columns ``classes``.
    groups : array_like, shape (n,)
    classes : sequence, length k
        Column labels, also the tie order (ties within 1e-12: first column).

    Returns
    -------
    pandas.Series
        Index: group, first-appearance order; values: predicted class.
    """
    keys, means = mean_proba(proba, groups)
    top = means >= means.max(axis=1, keepdims=True) - 1e-12
    return pd.Series(np.asarray(classes, dtype=object)[np.argmax(top, axis=1)], index=keys)


def spread_track_mean(proba, groups) -> np.ndarray:
    """Replace each segment's row by its track's mean row, shape (n, k)."""
    keys, means = mean_proba(proba, groups)
    pos = pd.Index(keys).get_indexer(np.asarray(groups))
    return means[pos]


def track_truth(y_true, folds, groups) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One row per track (first-appearance order): track, label and fold."""
    frame = pd.DataFrame({"g": np.asarray(groups), "y": np.asarray(y_true), "f": np.asarray(folds)})
    first = frame.drop_duplicates("g")
    return first["g"].to_numpy(), first["y"].to_numpy(), first["f"].to_numpy()
