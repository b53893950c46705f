"""Grouped, stratified cross-validation folds, drawn once per evaluation.

Segments are grouped by the store's ``group`` coordinate (the manifest's
``group`` column; a segment whose group is empty falls back to its
``track_id``), so that the segments of one group are never split between a
training and a test fold; within that constraint the folds are stratified by
label.  :func:`make_folds` draws them once and every classifier, feature set
and balance mode of a run shares them.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

from emodist.errors import EmodistError
from emodist.learn.params import ParameterError


def fold_groups(group, track_id) -> tuple[np.ndarray, str]:
    """Group of each segment for the folds, and what the groups are.

    Parameters
    ----------
    group : array_like of str or None
        The store's ``group`` of each segment (``None``: no such coordinate).
    track_id : array_like of str
        Track of each segment.

    Returns
    -------
    groups : numpy.ndarray of str
        ``group`` where it is set, else ``track_id``.
    column : str
        ``"track_id"`` (no group set), ``"group"`` (every group set), or
        ``"group, else track_id"``.
    """
    track_id = np.asarray(track_id, dtype=object)
    if group is None:
        return track_id, "track_id"
    group = np.array(["" if g is None else str(g) for g in group], dtype=object)
    empty = group == ""
    if empty.all():
        return track_id, "track_id"
    if not empty.any():
        return group, "group"
    return np.where(empty, track_id, group), "group, else track_id"


def make_folds(y, groups, n_folds: int = 5, seed: int = 0, unit: str = "groups") -> np.ndarray:
    """Fold number of each sample, grouped by ``groups`` and stratified by ``y``.

    Parameters
    ----------
    y : array_like
        Labels (strata).
    groups : array_like
        Group of each sample; a group never spans two folds.
    n_folds : int
        Number of folds (at least 2, at most the number of groups).
    seed : int
        Shuffling seed of :class:`~sklearn.model_selection.StratifiedGroupKFold`.
    unit : str
        What a group is, in messages (``"groups"``, ``"tracks"``).

    Returns
    -------
    numpy.ndarray of int, shape (n,)
        Test fold of each sample, ``0 .. n_folds - 1``.

    Raises
    ------
    ParameterError
        ``n_folds`` below 2 or above the number of groups (parameter ``folds``).

    See Also
    --------
    fold_splitter : which scikit-learn splitter is used.
    """
    y = np.asarray(y)
    groups = np.asarray(groups)
    n_groups = len(np.unique(groups))
    if n_folds < 2:
        raise ParameterError(f"the number of folds must be at least 2, got {n_folds}", "folds")
    if n_groups < n_folds:
        raise ParameterError(
            f"{n_groups} {unit} cannot fill {n_folds} folds; use {max(2, n_groups)} folds or fewer",
            "folds",
        )
    cv = fold_splitter(y, groups, n_folds, seed)
    folds = np.full(len(y), -1, dtype=np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for k, (_, test) in enumerate(cv.split(np.zeros(len(y)), y, groups)):
            folds[test] = k
    check_folds(folds, groups)
    return folds


def fold_splitter(y, groups, n_folds: int, seed: int):
    """The splitter :func:`make_folds` uses.

    :class:`~sklearn.model_selection.StratifiedGroupKFold` when some class
    has at least ``n_folds`` groups; otherwise stratification is impossible
    and :class:`~sklearn.model_selection.GroupKFold` (shuffled) is used.
    """
    per_class = pd.DataFrame({"y": np.asarray(y), "g": np.asarray(groups)}).groupby("y")["g"].nunique()
    if per_class.max() >= n_folds:
        return StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return GroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)


def describe_splitter(splitter, group_by: str = "track") -> str:
    """One line naming the splitter and the grouping, for the report."""
    name = type(splitter).__name__
    why = "" if name.startswith("Stratified") else f" (no class has a {group_by} per fold: not stratified)"
    return f"{name}(n_splits={splitter.n_splits}, shuffle=True) grouped by {group_by}{why}"


def check_folds(folds, groups) -> None:
    """Raise if some group has samples in two folds or a sample has no fold."""
    frame = pd.DataFrame({"fold": np.asarray(folds), "group": np.asarray(groups)})
    if (frame["fold"] < 0).any():
        raise EmodistError("some segments were assigned to no fold")
    spread = frame.groupby("group")["fold"].nunique()
    if (spread > 1).any():
        raise EmodistError(f"group {spread[spread > 1].index[0]!r} is in two folds")
