"""Predicting each segment's nine-way emotion vote distribution.

The reference study classified the dominant emotion only and noted that
predicting the whole distribution of listener votes would have been the
richer target.  An evaluation with ``target="distribution"`` does that: a
multi-output regressor (:data:`emodist.learn.presets.DISTRIBUTION_PRESETS`)
predicts the distribution, the output is clipped at 0 and renormalised, and
it is scored against the true distribution with

* the mean Jensen-Shannon divergence (base 2, 0 = identical, 1 = disjoint),
* top-1 agreement: the predicted most-voted emotion is the true one,
* top-3 agreement: the true most-voted emotion is among the predicted three,

next to the baseline that predicts, for every test segment, the mean
distribution of the training folds.  The soft-label presets learn the
distribution as class probabilities (cross-entropy to the vote shares),
optionally averaged over each test track's segments.
"""

from __future__ import annotations

import warnings

import numpy as np
from threadpoolctl import threadpool_limits

from emodist.learn.cv import aligned_proba
from emodist.learn.fits import set_classes
from emodist.learn.metrics import jensen_shannon, spread_track_mean
from emodist.learn.presets import make_distribution_pipeline, resolve_distribution_presets
from emodist.learn.scoring import fold_summary


def normalise_rows(P) -> np.ndarray:
    """Clip negative values to 0 and scale each row to sum 1 (uniform if all 0)."""
    P = np.clip(np.asarray(P, dtype=np.float64), 0.0, None)
    if P.ndim == 1:
        P = P[None, :]
    s = P.sum(axis=1, keepdims=True)
    uniform = np.full_like(P, 1.0 / P.shape[1])
    return np.where(s > 0, P / np.where(s > 0, s, 1.0), uniform)


def target_distribution(votes, votes_mean, rule: str) -> np.ndarray:
    """Nine-way target distribution of each segment, rows summing to 1.

    ``listener`` uses the listener-normalised profile, ``mean`` the plain
    mean normalised to sum 1.  Rows without any vote are all zero.
    """
    p = np.asarray(votes if rule == "listener" else votes_mean, dtype=np.float64)
    s = p.sum(axis=1, keepdims=True)
    return np.divide(p, s, out=np.zeros_like(p), where=s > 0)


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


def topk_agreement(true, pred, k: int) -> np.ndarray:
    """Whether each row's true top emotion is among the ``k`` highest predicted."""
    true_top = np.argmax(np.asarray(true), axis=1)
    ranks = np.argsort(-np.asarray(pred), axis=1, kind="stable")[:, :k]
    return (ranks == true_top[:, None]).any(axis=1)


def distribution_metrics(true, pred, folds) -> dict:
    """Mean JSD, top-1 and top-3 agreement per fold (mean/std) and pooled."""
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
    """Predict each fold with the mean distribution of its training folds."""
    P, folds = np.asarray(P), np.asarray(folds)
    out = np.zeros_like(P, dtype=np.float64)
    for k in np.unique(folds):
        out[folds == k] = P[folds != k].mean(axis=0)
    return out
