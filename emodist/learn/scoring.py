"""Scores of out-of-fold predictions: class metrics, track level, distributions, baselines.

Everything here is a pure function of labels (or distributions),
predictions and folds:

* :func:`classification_metrics`: accuracy, balanced accuracy and macro-F1
  per fold (mean, population std) and pooled, per-class scores and the
  confusion matrix;
* :func:`confusion`: the confusion matrix as in the reference study (rows the
  true class, row-normalised percentages, TPR and FNR per class);
* track level: :func:`track_level` / :func:`majority_vote` (the majority vote
  over a track's segments) and :func:`track_mean_proba` (the argmax of the
  mean predicted probability).  Ties: a vote tie goes to the first class in
  ``classes``; a mean-probability tie (within 1e-12) likewise, so both
  aggregators break ties by the same order (pass the GEMS-ordered classes to
  match ``emodist evaluate``);
* distributions: :func:`jensen_shannon` (used by the distribution target and
  the human ceiling), :func:`topk_agreement`, :func:`distribution_metrics`;
* baselines: :func:`baseline_rates` (random guess, majority class) and
  :func:`train_mean_baseline` (the training folds' mean distribution);
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

__all__ = [
    "HEADLINE",
    "balanced_accuracy_index",
    "baseline_rates",
    "classification_metrics",
    "confusion",
    "distribution_metrics",
    "fold_scores",
    "fold_summary",
    "headline_metrics",
    "jensen_shannon",
    "majority_vote",
    "mean_proba",
    "rank_results",
    "spread_track_mean",
    "topk_agreement",
    "track_level",
    "track_mean_proba",
    "track_truth",
    "train_mean_baseline",
]

#: The headline metrics, in display order.
HEADLINE = ("accuracy", "balanced_accuracy", "macro_f1")


def fold_summary(values) -> dict:
    """Mean, population standard deviation and list of per-fold values.

    Parameters
    ----------
    values : array_like of float
        One value per fold.

    Returns
    -------
    dict
        ``mean``, ``std`` (``ddof=0``) and ``folds``.
    """
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
    """Accuracy, balanced accuracy and macro-F1 of one fold's predictions.

    Parameters
    ----------
    y_true, y_pred : array_like, shape (n,)
        Labels and predictions of the fold.

    Returns
    -------
    dict of str to float
        One value per metric of :data:`HEADLINE`.
    """
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
    """Track labels, majority-vote predictions and folds, one row per track.

    Parameters
    ----------
    y_true, y_pred : array_like, shape (n,)
        Segment labels and predictions.
    folds : array_like, shape (n,)
        Segment folds (a track's segments share one).
    track_id : array_like, shape (n,)
        Track of each segment.
    classes : sequence of str
        Tie order of the vote (:func:`majority_vote`).

    Returns
    -------
    y_true, y_pred, folds : numpy.ndarray, shape (n_tracks,)
        In first-appearance order of the tracks.
    """
    frame = pd.DataFrame({"t": np.asarray(track_id), "y": np.asarray(y_true), "f": np.asarray(folds)})
    first = frame.drop_duplicates("t").set_index("t")
    votes = majority_vote(y_pred, track_id, classes)
    return first["y"].to_numpy(), votes.loc[first.index].to_numpy(), first["f"].to_numpy()


def baseline_rates(y, classes) -> dict:
    """Random-guess and majority-class rates of labels ``y``.

    Parameters
    ----------
    y : array_like
        Labels.
    classes : sequence of str
        The classes (the random guess is ``1 / len(classes)``).

    Returns
    -------
    dict
        ``chance``, ``majority`` (share of the most frequent label) and
        ``majority_class``.
    """
    counts = pd.Series(np.asarray(y)).value_counts()
    return {
        "chance": 1.0 / len(classes),
        "majority": float(counts.iloc[0] / counts.sum()),
        "majority_class": str(counts.index[0]),
    }


def rank_results(results: list[dict], metric: str = "accuracy") -> list[dict]:
    """Results sorted best first by a segment metric's fold mean.

    Parameters
    ----------
    results : list of dict
        Result rows (``segment`` metrics, or ``distribution`` ones).
    metric : str
        One of :data:`HEADLINE`; distribution results are ranked by mean JSD,
        lowest first.  Ties keep the given order.

    Returns
    -------
    list of dict
    """
    if results and "distribution" in results[0]:
        return sorted(results, key=lambda r: r["distribution"]["jsd"]["mean"])
    return sorted(results, key=lambda r: -r["segment"][metric]["mean"])


def jensen_shannon(p, q) -> np.ndarray:
    """Jensen-Shannon divergence (base 2, in [0, 1]) between rows of ``p`` and ``q``.

    Parameters
    ----------
    p, q : array_like, shape (..., k)
        Distributions (rows summing to 1).

    Returns
    -------
    numpy.ndarray, shape (...)
        0 for identical rows, 1 for disjoint ones.
    """
    p = np.asarray(p, np.float64)
    q = np.asarray(q, np.float64)
    m = 0.5 * (p + q)

    def kl(a, b):
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(a > 0, a * np.log2(a / np.where(b > 0, b, 1.0)), 0.0)
        return t.sum(axis=-1)

    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


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
    """Replace each segment's row by its track's mean row.

    Parameters
    ----------
    proba : array_like, shape (n, k)
    groups : array_like, shape (n,)
        Track (or group) of each row.

    Returns
    -------
    numpy.ndarray, shape (n, k)
    """
    keys, means = mean_proba(proba, groups)
    pos = pd.Index(keys).get_indexer(np.asarray(groups))
    return means[pos]


def track_truth(y_true, folds, groups) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One row per track (first-appearance order): track, label and fold.

    Parameters
    ----------
    y_true, folds, groups : array_like, shape (n,)
        Label, fold and track of each segment.

    Returns
    -------
    groups, y_true, folds : numpy.ndarray, shape (n_tracks,)
    """
    frame = pd.DataFrame({"g": np.asarray(groups), "y": np.asarray(y_true), "f": np.asarray(folds)})
    first = frame.drop_duplicates("g")
    return first["g"].to_numpy(), first["y"].to_numpy(), first["f"].to_numpy()


def topk_agreement(true, pred, k: int) -> np.ndarray:
    """Whether each row's true top emotion is among the ``k`` highest predicted.

    Parameters
    ----------
    true, pred : array_like, shape (n, k_classes)
        True and predicted distributions.
    k : int

    Returns
    -------
    numpy.ndarray of bool, shape (n,)
    """
    true_top = np.argmax(np.asarray(true), axis=1)
    ranks = np.argsort(-np.asarray(pred), axis=1, kind="stable")[:, :k]
    return (ranks == true_top[:, None]).any(axis=1)


def distribution_metrics(true, pred, folds) -> dict:
    """Mean JSD, top-1 and top-3 agreement per fold (mean/std) and pooled.

    Parameters
    ----------
    true, pred : array_like, shape (n, k)
        True and predicted distributions.
    folds : array_like, shape (n,)

    Returns
    -------
    dict
        ``jsd``, ``top1``, ``top3``: each ``mean``, ``std``, ``folds``, ``pooled``.
    """
    true, pred, folds = np.asarray(true), np.asarray(pred), np.asarray(folds)
    scores = {
        "jsd": jensen_shannon(true, pred),
        "top1": topk_agreement(true, pred, 1).astype(float),
        "top3": topk_agreement(true, pred, 3).astype(float),
    }
    out = {}
    for name, v in scores.items():
        out[name] = fold_summary([v[folds == k].mean() for k in np.unique(folds)])
        out[name]["pooled"] = float(v.mean())
    return out


def train_mean_baseline(P, folds) -> np.ndarray:
    """Predict each fold with the mean distribution of its training folds.

    Parameters
    ----------
    P : array_like, shape (n, k)
        True distributions.
    folds : array_like, shape (n,)

    Returns
    -------
    numpy.ndarray, shape (n, k)
    """
    P, folds = np.asarray(P), np.asarray(folds)
    out = np.zeros_like(P, dtype=np.float64)
    for k in np.unique(folds):
        out[folds == k] = P[folds != k].mean(axis=0)
    return out


def balanced_accuracy_index(y_idx, pred_idx, n_classes: int) -> float:
    """Balanced accuracy of integer-coded labels (mean recall over present classes).

    Parameters
    ----------
    y_idx, pred_idx : array_like of int, shape (n,)
        True and predicted class indices ``0 .. n_classes - 1``.
    n_classes : int

    Returns
    -------
    float
        Equals :func:`sklearn.metrics.balanced_accuracy_score` on the same
        labels.
    """
    y_idx, pred_idx = np.asarray(y_idx), np.asarray(pred_idx)
    support = np.bincount(y_idx, minlength=n_classes)
    hits = np.bincount(y_idx[y_idx == pred_idx], minlength=n_classes)
    present = support > 0
    return float((hits[present] / support[present]).mean())
