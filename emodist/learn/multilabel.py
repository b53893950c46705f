"""Multi-label mood tags: one-vs-rest presets, ROC-AUC and PR-AUC macro and micro.

Mood tagging (MTG-Jamendo's mood/theme task: 56 tags per track) gives a track
any number of tags and scores tag probabilities by ranking, as MediaEval
does: ROC-AUC and PR-AUC (average precision), each averaged over the tags
(macro) and over all track-tag pairs (micro).  Here the tags of Emotify come
from its listener votes (:func:`top_k_tags`: each track's three most-voted
emotions, as in published cross-dataset work on Emotify;
:func:`threshold_tags`: every emotion at least a given share of listeners
chose).

The presets (:data:`MULTILABEL_PRESETS`) are scikit-learn pipelines built
like the classification presets (standardised features, every step fit on
the training folds only): one-vs-rest logistic regression, one-vs-rest
linear SVM with probabilities calibrated by Platt scaling, and a small
multi-layer perceptron (one network, a sigmoid output per tag).  Their
hyper-parameter is chosen inside the training folds by a grouped grid search
maximising macro ROC-AUC (:func:`emodist.learn.regression.make_search`).

A tag needs at least ``min_tracks`` positive and ``min_tracks`` negative
tracks to be scored (:func:`keep_tags`); the others are dropped and reported.
The baseline scores every test row with the training folds' tag shares
(constant within a fold: ROC-AUC 0.5, PR-AUC the tag's share).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, make_scorer, roc_auc_score
from sklearn.multiclass import OneVsRestClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from threadpoolctl import threadpool_limits

from emodist.errors import EmodistError
from emodist.learn.regression import INNER_FOLDS, make_search, pick_presets, track_means
from emodist.learn.scoring import fold_summary, train_mean_baseline

__all__ = [
    "MULTILABEL_METRICS",
    "MULTILABEL_PRESETS",
    "MultilabelPreset",
    "cross_val_multilabel",
    "evaluate_multilabel",
    "fit_tags",
    "keep_tags",
    "macro_roc_auc",
    "multilabel_metrics",
    "multilabel_scores",
    "resolve_multilabel_presets",
    "threshold_tags",
    "top_k_tags",
]

#: Scores of a tag matrix, in display order.
MULTILABEL_METRICS = ("roc_auc_macro", "roc_auc_micro", "pr_auc_macro", "pr_auc_micro")


# --------------------------------------------------------------------------
# Tags from vote shares.
# --------------------------------------------------------------------------


def top_k_tags(shares, k: int = 3) -> np.ndarray:
    """Each row's ``k`` largest shares as tags.

    Parameters
    ----------
    shares : array_like, shape (n, n_tags)
    k : int
        Tags per row.  Ties go to the earlier column (GEMS order); a row
        without any vote gets no tag.

    Returns
    -------
    numpy.ndarray of int8, shape (n, n_tags)

    Examples
    --------
    >>> top_k_tags([[0.1, 0.5, 0.2, 0.2]], k=2).tolist()
    [[0, 1, 1, 0]]
    """
    S = np.atleast_2d(np.asarray(shares, dtype=np.float64))
    if not 1 <= k <= S.shape[1]:
        raise EmodistError(f"top-k tags need 1 <= k <= {S.shape[1]}, got {k}", param="top_k")
    order = np.argsort(-S, axis=1, kind="stable")[:, :k]
    T = np.zeros(S.shape, dtype=np.int8)
    np.put_along_axis(T, order, 1, axis=1)
    T[S.sum(axis=1) == 0] = 0
    return T


def threshold_tags(shares, min_share: float) -> np.ndarray:
    """Tags chosen by at least ``min_share`` of the listeners.

    Parameters
    ----------
    shares : array_like, shape (n, n_tags)
        Share of the listeners who chose each emotion (the store's
        ``votes_mean``).
    min_share : float
        Threshold in (0, 1].

    Returns
    -------
    numpy.ndarray of int8, shape (n, n_tags)
    """
    if not 0 < min_share <= 1:
        raise EmodistError(f"the tag threshold must be in (0, 1], got {min_share}", param="min_share")
    return (np.asarray(shares, dtype=np.float64) >= min_share).astype(np.int8)


def keep_tags(T, tracks, names, *, min_tracks: int = 10) -> tuple[np.ndarray, dict[str, dict]]:
    """Which tags have enough positive and negative tracks to be scored.

    Parameters
    ----------
    T : array_like, shape (n, n_tags)
        0/1 tags of each row.
    tracks : array_like, shape (n,)
        Track of each row (a track is positive when any of its rows is).
    names : sequence of str
        Tag names.
    min_tracks : int
        Fewest positive, and fewest negative, tracks a kept tag has.

    Returns
    -------
    keep : numpy.ndarray of bool, shape (n_tags,)
    dropped : dict
        Dropped tag -> ``{"positive_tracks", "negative_tracks"}``.
    """
    T = np.asarray(T)
    _, per_track = _track_max(T, tracks)
    pos = per_track.sum(axis=0)
    neg = len(per_track) - pos
    keep = (pos >= min_tracks) & (neg >= min_tracks)
    dropped = {str(n): {"positive_tracks": int(p), "negative_tracks": int(q)}
               for n, p, q, k in zip(names, pos, neg, keep) if not k}
    return keep, dropped


def _track_max(T, tracks):
    tracks = np.asarray(tracks)
    keys, first, inv = np.unique(tracks, return_index=True, return_inverse=True)
    out = np.zeros((len(keys), np.asarray(T).shape[1]), dtype=np.int64)
    np.maximum.at(out, inv, np.asarray(T, dtype=np.int64))
    order = np.argsort(first, kind="stable")
    return keys[order], out[order]


# --------------------------------------------------------------------------
# Scores.
# --------------------------------------------------------------------------


def _scorable(T) -> np.ndarray:
    """Columns with both a positive and a negative row."""
    T = np.asarray(T)
    s = T.sum(axis=0)
    return (s > 0) & (s < len(T))


def macro_roc_auc(T, S) -> float:
    """Macro ROC-AUC over the columns that have both classes (NaN if none)."""
    T, S = np.asarray(T), np.asarray(S, dtype=np.float64)
    ok = _scorable(T)
    if not ok.any():
        return float("nan")
    return float(roc_auc_score(T[:, ok], S[:, ok], average="macro"))


def multilabel_scores(T, S) -> dict[str, float]:
    """ROC-AUC and PR-AUC, macro (over scorable tags) and micro, of one set of rows.

    Parameters
    ----------
    T : array_like, shape (n, n_tags)
        0/1 truth.
    S : array_like, shape (n, n_tags)
        Scores (probabilities).

    Returns
    -------
    dict
        :data:`MULTILABEL_METRICS`.  Macro averages skip tags without both
        a positive and a negative row here (NaN when none has both).
    """
    T, S = np.asarray(T), np.asarray(S, dtype=np.float64)
    ok = _scorable(T)
    nan = float("nan")
    flat_t = T.ravel()
    both = 0 < flat_t.sum() < flat_t.size
    return {
        "roc_auc_macro": macro_roc_auc(T, S),
        "roc_auc_micro": float(roc_auc_score(T, S, average="micro")) if both else nan,
        "pr_auc_macro": float(average_precision_score(T[:, ok], S[:, ok], average="macro"))
        if ok.any() else nan,
        "pr_auc_micro": float(average_precision_score(T, S, average="micro")) if both else nan,
    }


def _level(T, S, folds, names) -> dict:
    per_fold = [multilabel_scores(T[folds == k], S[folds == k]) for k in np.unique(folds)]
    pooled = multilabel_scores(T, S)
    out = {m: {**fold_summary([f[m] for f in per_fold]), "pooled": pooled[m]} for m in MULTILABEL_METRICS}
    out["per_tag"] = [
        {"tag": str(n), "positives": int(T[:, j].sum()), "share": float(T[:, j].mean()),
         "roc_auc": float(roc_auc_score(T[:, j], S[:, j])),
         "pr_auc": float(average_precision_score(T[:, j], S[:, j]))}
        for j, n in enumerate(names)
    ]
    return out


def multilabel_metrics(T, S, folds, tracks, names) -> dict:
    """Scores of out-of-fold tag scores at segment and track level.

    Parameters
    ----------
    T : array_like, shape (n, n_tags)
        0/1 truth (each tag with a positive and a negative row).
    S : array_like, shape (n, n_tags)
        Out-of-fold scores.
    folds : array_like of int, shape (n,)
    tracks : array_like, shape (n,)
        Track of each row; a track's truth and score are the means over its
        rows (the truth stays 0/1 when it is constant within a track; a
        track is positive when its mean is at least 0.5).
    names : sequence of str

    Returns
    -------
    dict
        ``{"segment": ..., "track": ...}``; each holds, per metric of
        :data:`MULTILABEL_METRICS`, the fold ``mean``, ``std``, ``folds``
        and ``pooled`` (over all rows, the MediaEval convention), and
        ``per_tag`` rows (pooled ROC-AUC and PR-AUC, positives, share).
    """
    folds = np.asarray(folds)
    T = np.asarray(T)
    S = np.asarray(S, dtype=np.float64)
    _, Tt, St, ft = track_means(T, S, folds, tracks)
    return {"segment": _level(T, S, folds, names),
            "track": _level((Tt >= 0.5).astype(np.int8), St, ft, names)}


# --------------------------------------------------------------------------
# Presets and cross-validation.
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class MultilabelPreset:
    """One multi-label model and the grid of its hyper-parameter.

    Attributes
    ----------
    key, name : str
    params : dict
        Human-readable fixed parameters.
    build : callable
        ``build(seed) -> estimator`` with ``predict_proba`` of shape
        ``(n, n_tags)``.
    grid : dict
        Model parameter -> candidates, searched inside the training folds.
    """

    key: str
    name: str
    params: dict[str, Any]
    build: Callable[[int], BaseEstimator] = field(repr=False)
    grid: dict[str, tuple] = field(default_factory=dict)

    def pipeline(self, seed: int = 0) -> Pipeline:
        """Unfitted pipeline: ``scale``, ``model``."""
        return Pipeline([("scale", StandardScaler()), ("model", self.build(seed))])


_PRESETS = [
    MultilabelPreset("logistic-regression", "One-vs-rest Logistic Regression",
                     {"penalty": "l2", "solver": "lbfgs"},
                     lambda seed: OneVsRestClassifier(LogisticRegression(C=1.0, max_iter=2000)),
                     {"estimator__C": (0.0003, 0.001, 0.003, 0.01, 0.1, 1.0)}),
    MultilabelPreset("linear-svm", "One-vs-rest calibrated Linear SVM",
                     {"probabilities": "Platt scaling, 3 inner folds"},
                     lambda seed: OneVsRestClassifier(CalibratedClassifierCV(
                         LinearSVC(C=1.0), method="sigmoid", cv=3)),
                     {"estimator__estimator__C": (0.0001, 0.001, 0.01, 0.1)}),
    MultilabelPreset("mlp", "Small MLP", {"hidden": 64, "output": "one sigmoid per tag",
                                          "max_iter": 300},
                     lambda seed: MLPClassifier(hidden_layer_sizes=(64,), max_iter=300,
                                                random_state=seed),
                     {"alpha": (0.01, 1.0, 10.0)}),
]

#: Multi-label presets by key, in display order.
MULTILABEL_PRESETS: dict[str, MultilabelPreset] = {p.key: p for p in _PRESETS}


def resolve_multilabel_presets(names) -> list[MultilabelPreset]:
    """Presets for a list of keys (``"all"``: every one), duplicates removed.

    Raises
    ------
    EmodistError
        An unknown key (parameter ``classifiers``).
    """
    return pick_presets(names, MULTILABEL_PRESETS, "multi-label model")


def _macro_auc_score(y_true, y_score) -> float:
    return macro_roc_auc(y_true, y_score)


#: What the in-fold search maximises: macro ROC-AUC over the scorable tags.
MACRO_AUC_SCORER = make_scorer(_macro_auc_score, response_method="predict_proba")


def cross_val_multilabel(X, T, groups, folds, *, preset: MultilabelPreset | str, seed: int = 0,
                         inner_folds: int = INNER_FOLDS) -> tuple[np.ndarray, list[dict]]:
    """Out-of-fold tag probabilities, the hyper-parameter chosen inside the training folds.

    Parameters
    ----------
    X : numpy.ndarray, shape (n, p)
    T : numpy.ndarray, shape (n, n_tags)
        0/1 tags; every column needs a positive and a negative row in each
        training part.
    groups : array_like, shape (n,)
    folds : array_like of int, shape (n,)
    preset : MultilabelPreset or str
    seed : int
    inner_folds : int

    Returns
    -------
    scores : numpy.ndarray, shape (n, n_tags)
    chosen : list of dict
        The hyper-parameters picked in each outer fold.
    """
    p = resolve_multilabel_presets([preset])[0] if isinstance(preset, str) else preset
    X = np.asarray(X, dtype=np.float64)
    T = np.asarray(T, dtype=np.int64)
    groups, folds = np.asarray(groups), np.asarray(folds)
    scores = np.full(T.shape, np.nan)
    chosen = []
    for k in np.unique(folds):
        train, test = folds != k, folds == k
        model, best = fit_tags(X[train], T[train], groups[train], preset=p, seed=seed,
                               inner_folds=inner_folds)
        chosen.append(best)
        with threadpool_limits(1):
            scores[test] = np.asarray(model.predict_proba(X[test]), dtype=np.float64)
    return scores, chosen


def fit_tags(X, T, groups, *, preset: MultilabelPreset, seed: int = 0,
             inner_folds: int = INNER_FOLDS):
    """Tune (grouped search, macro ROC-AUC) and fit the preset on training rows.

    Parameters
    ----------
    X : numpy.ndarray, shape (n, p)
    T : numpy.ndarray, shape (n, n_tags)
        0/1 tags.
    groups : array_like, shape (n,)
    preset : MultilabelPreset
    seed, inner_folds : int

    Returns
    -------
    model : sklearn.pipeline.Pipeline
        The refit pipeline (``predict_proba``: ``(n, n_tags)``).
    chosen : dict
        The hyper-parameters the search picked.
    """
    groups = np.asarray(groups)
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore")
        search = make_search(preset.pipeline(seed), preset.grid, groups, inner_folds=inner_folds,
                             seed=seed, scoring=MACRO_AUC_SCORER)
        search.fit(np.asarray(X, dtype=np.float64), np.asarray(T, dtype=np.int64),
                   **({"groups": groups} if preset.grid else {}))
    chosen = {k.removeprefix("model__"): v for k, v in getattr(search, "best_params_", {}).items()}
    return getattr(search, "best_estimator_", search), chosen


def evaluate_multilabel(X, T, *, names, groups, folds, tracks=None, presets=("logistic-regression",),
                        seed: int = 0, inner_folds: int = INNER_FOLDS, min_tracks: int = 10) -> dict:
    """Every preset's out-of-fold tag scores beside the training-share baseline.

    Parameters
    ----------
    X : numpy.ndarray, shape (n, p)
    T : numpy.ndarray, shape (n, n_tags)
        0/1 tags.
    names : sequence of str
        Tag names.
    groups, folds : array_like, shape (n,)
        Inner-fold groups and outer folds.
    tracks : array_like, optional
        Track of each row (default ``groups``).
    presets : sequence of str
    seed, inner_folds : int
    min_tracks : int
        Tags with fewer positive (or negative) tracks are dropped
        (:func:`keep_tags`).

    Returns
    -------
    dict
        ``tags`` (kept), ``dropped`` (tag -> track counts), ``baseline`` and
        ``results`` (per preset: ``preset``, ``metrics``, ``chosen``), best
        segment macro ROC-AUC first.

    Raises
    ------
    EmodistError
        No tag has ``min_tracks`` positive and negative tracks (parameter
        ``min_tracks``).
    """
    tracks = groups if tracks is None else tracks
    keep, dropped = keep_tags(T, tracks, names, min_tracks=min_tracks)
    if not keep.any():
        raise EmodistError(f"no tag has {min_tracks} positive and {min_tracks} negative tracks",
                           param="min_tracks")
    T = np.asarray(T)[:, keep]
    names = [str(n) for n, k in zip(names, keep) if k]
    results = []
    for p in resolve_multilabel_presets(presets):
        S, chosen = cross_val_multilabel(X, T, groups, folds, preset=p, seed=seed,
                                         inner_folds=inner_folds)
        results.append({"preset": p.key, "name": p.name, "grid": {k: list(v) for k, v in p.grid.items()},
                        "metrics": multilabel_metrics(T, S, folds, tracks, names),
                        "chosen": chosen, "scores": S})
    results.sort(key=lambda r: -r["metrics"]["segment"]["roc_auc_macro"]["mean"])
    base = train_mean_baseline(T.astype(np.float64), folds)
    return {"tags": names, "dropped": dropped, "min_tracks": min_tracks,
            "baseline": multilabel_metrics(T, base, folds, tracks, names), "results": results}
