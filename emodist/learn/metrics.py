"""Track-level aggregation of segment probabilities, and fold metrics.

A track's prediction comes from its segments either by majority vote over
predicted labels (:func:`emodist.learn.scoring.majority_vote`) or by the
argmax of the mean predicted probability (:func:`track_mean_proba`).  Ties:
a vote tie goes to the first class in ``classes``; a mean-probability tie
(within 1e-12) likewise, so both aggregators break ties by the same order
(pass the GEMS-ordered classes to match ``emodist evaluate``).

:func:`jensen_shannon` is the divergence between
distributions used by the distribution target and the human ceiling.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


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
