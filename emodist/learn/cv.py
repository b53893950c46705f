"""Cross-validation helpers shared by the learners: splitters, fit-parameter slicing.

The meta-estimators of :mod:`emodist.learn.imbalance` run an inner
cross-validation on the rows they are fit on (the outer training fold), and
the benchmark needs out-of-fold probabilities; both go through these helpers
so that grouping and the slicing of per-sample fit parameters (``soft``,
``sample_weight``, ``groups``) are done one way.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold, StratifiedKFold


def slice_params(params: dict | None, rows, n: int) -> dict:
    """Take ``rows`` of every per-sample fit parameter.

    Parameters
    ----------
    params : dict or None
        Fit parameters; a value with a length of ``n`` (array, list) is taken
        to be per sample and sliced, anything else is passed unchanged.
    rows : array_like of int or bool
        Rows to keep.
    n : int
        Number of samples the parameters describe.

    Returns
    -------
    dict
    """
    out = {}
    for k, v in (params or {}).items():
        if v is not None and not np.isscalar(v) and hasattr(v, "__len__") and len(v) == n:
            out[k] = np.asarray(v)[rows]
        else:
            out[k] = v
    return out


def inner_splitter(y, groups, n_splits: int, seed):
    """A splitter for an inner cross-validation of ``(y, groups)``.

    Grouped (:class:`~sklearn.model_selection.StratifiedGroupKFold`, falling
    back to a shuffled :class:`~sklearn.model_selection.GroupKFold` when no
    class has ``n_splits`` groups) when ``groups`` is given, else
    :class:`~sklearn.model_selection.StratifiedKFold`.  ``n_splits`` is
    reduced to the number of groups (or of samples in the smallest class)
    when there are fewer.

    Returns
    -------
    splitter, int
        The splitter and the number of splits it makes.
    """
    y = np.asarray(y)
    if groups is None:
        _, counts = np.unique(y, return_counts=True)
        k = int(max(2, min(n_splits, counts.min())))
        return StratifiedKFold(n_splits=k, shuffle=True, random_state=seed), k
    groups = np.asarray(groups)
    k = int(max(2, min(n_splits, len(np.unique(groups)))))
    per_class = {c: len(np.unique(groups[y == c])) for c in np.unique(y)}
    if max(per_class.values()) >= k:
        return StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed), k
    return GroupKFold(n_splits=k, shuffle=True, random_state=seed), k


def aligned_proba(model, X, classes) -> np.ndarray:
    """``model.predict_proba(X)`` with columns ``classes`` (0 for a class it never saw)."""
    p = model.predict_proba(X)
    out = np.zeros((len(p), len(classes)))
    col = {c: j for j, c in enumerate(np.asarray(classes).tolist())}
    for j, c in enumerate(np.asarray(model.classes_).tolist()):
        if c in col:
            out[:, col[c]] = p[:, j]
    return out


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
