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
distribution of the training folds.
"""

from __future__ import annotations

import warnings

import numpy as np
from threadpoolctl import threadpool_limits

from emodist.learn.presets import make_distribution_pipeline
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


def fit_predict_distribution(X, P, folds, fold: int, preset_key: str, seed: int) -> np.ndarray:
    """Fit a distribution model on the training folds and predict ``fold``.

    Returns
    -------
    numpy.ndarray, shape (n_test, 9)
        Non-negative predicted distributions, rows summing to 1.
    """
    train, test = folds != fold, folds == fold
    model = make_distribution_pipeline(preset_key, seed)
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore")
        model.fit(X[train], P[train])
        return normalise_rows(model.predict(X[test]))


def jensen_shannon(p, q) -> np.ndarray:
    """Jensen-Shannon divergence (base 2, in [0, 1]) between rows of ``p`` and ``q``."""
    p = np.asarray(p, np.float64)
    q = np.asarray(q, np.float64)
    m = 0.5 * (p + q)

    def kl(a, b):
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(a > 0, a * np.log2(a / np.where(b > 0, b, 1.0)), 0.0)
        return t.sum(axis=-1)

    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


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
