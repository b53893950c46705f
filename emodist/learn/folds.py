"""Grouped, stratified cross-validation folds: the one place folds are made.

Segments are grouped by the store's ``group`` coordinate (the manifest's
``group`` column; a segment whose group is empty falls back to its
``track_id``, :func:`fold_groups`), so that the segments of one group are
never split between a training and a test fold; within that constraint the
folds are stratified by label.  :func:`make_folds` draws them once per
evaluation, and every classifier, feature set and balance mode of a run
shares them; the in-memory evaluation (:mod:`emodist.learn.evaluate`) and the
streamed one (:mod:`emodist.learn.stream`) both call it, so that both give
the same folds on the same segments.  :func:`inner_splitter` is the splitter
of the inner cross-validations some estimators run on their training rows
(:mod:`emodist.learn.estimators`), chosen by the same rule
(:func:`fold_splitter`).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold, StratifiedKFold
from sklearn.utils import check_random_state

from emodist.errors import EmodistError

__all__ = ["GROUP_WORDS", "TRAIN_ONLY", "check_folds", "describe_splitter", "fold_groups",
           "fold_splitter", "group_words", "inner_splitter", "make_folds", "one_group_per_copy",
           "split_folds", "stratified_group_folds"]

#: How each grouping column of :func:`fold_groups` reads in the report's
#: splitter line and in messages: ``(one, several)``.
GROUP_WORDS = {"track_id": ("track", "tracks"), "group": ("group", "groups"),
               "group, else track_id": ("group (track where none is set)", "groups")}

#: Fold of a segment that every fold trains on and none tests (a published
#: split's training part, :func:`split_folds`).
TRAIN_ONLY = -1


def group_words(column: str) -> tuple[str, str]:
    """How a grouping column of :func:`fold_groups` reads: ``(one, several)``.

    :data:`GROUP_WORDS` for the store's own columns; a named column
    (``album``, ``album, else track_id``) reads as itself.
    """
    if column in GROUP_WORDS:
        return GROUP_WORDS[column]
    name, _, rest = column.partition(", else ")
    return (f"{name} (track where none is set)" if rest else name), f"{name} values"


def fold_groups(group, track_id, name: str = "group") -> tuple[np.ndarray, str]:
    """Group of each segment for the folds, and what the groups are.

    Parameters
    ----------
    group : array_like of str or None
        The store's ``group`` of each segment (``None``: no such coordinate),
        or the values of the column ``name``.
    track_id : array_like of str
        Track of each segment.
    name : str
        The grouping column ``group`` holds (``--group-by``).

    Returns
    -------
    groups : numpy.ndarray of str
        ``group`` where it is set, else ``track_id``.
    column : str
        ``"track_id"`` (no group set), ``name`` (every group set), or
        ``"<name>, else track_id"``.
    """
    track_id = np.asarray(track_id, dtype=object)
    if group is None:
        return track_id, "track_id"
    group = np.array(["" if g is None else str(g) for g in group], dtype=object)
    empty = group == ""
    if empty.all():
        return track_id, "track_id"
    if name != "group":  # a named column's value never equals a track id by accident
        group = np.array([f"{name}={g}" if g else g for g in group], dtype=object)
    if not empty.any():
        return group, name
    return np.where(empty, track_id, group), f"{name}, else track_id"


def one_group_per_copy(groups, track_id, copies) -> np.ndarray:
    """``groups`` with every set of copies of one recording in the group of its first track.

    Parameters
    ----------
    groups, track_id : array_like, shape (n,)
        Group and track of each segment.
    copies : iterable of sequence of str
        Track ids of each set of byte-identical recordings
        (:func:`emodist.store.copies.copy_sets`).

    Returns
    -------
    numpy.ndarray, shape (n,)
        Groups such that the copies of a recording share one (and so one fold).
    """
    groups = np.array(groups, dtype=object)
    track_id = np.asarray(track_id, dtype=object)
    first_group = {}
    for i, t in enumerate(track_id):
        first_group.setdefault(t, groups[i])
    remap = {}
    for same in copies or ():
        present = [t for t in same if t in first_group]
        if len(present) > 1:
            target = first_group[present[0]]
            remap.update({first_group[t]: target for t in present[1:]})
    if not remap:
        return groups

    def root(g):
        seen = set()
        while g in remap and g not in seen:
            seen.add(g)
            g = remap[g]
        return g
    return np.array([root(g) for g in groups], dtype=object)


def split_folds(parts) -> tuple[np.ndarray, np.ndarray]:
    """One published split as folds: its test part one fold, its training part trained on.

    Parameters
    ----------
    parts : array_like of str, shape (n,)
        Each segment's part in the split (``train``, ``validation``,
        ``test``, ``""``).

    Returns
    -------
    rows : numpy.ndarray of bool, shape (n,)
        The segments the split uses: its ``train`` and ``test`` parts.  The
        ``validation`` part is where the published models choose their
        hyper-parameters; here they are chosen inside the training part, so
        that the models train on the same tracks as the published ones.
    fold : numpy.ndarray of int, shape (rows.sum(),)
        ``0`` for a test segment, :data:`TRAIN_ONLY` for a training one.
    """
    parts = np.asarray(parts, dtype=object)
    rows = (parts == "train") | (parts == "test")
    return rows, np.where(parts[rows] == "test", 0, TRAIN_ONLY).astype(np.int64)


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
    emodist.errors.EmodistError
        ``n_folds`` below 2 or above the number of groups (``param="folds"``).

    See Also
    --------
    fold_splitter : which scikit-learn splitter is used.
    """
    y = np.asarray(y)
    groups = np.asarray(groups)
    n_groups = len(np.unique(groups))
    if n_folds < 2:
        raise EmodistError(f"the number of folds must be at least 2, got {n_folds}", param="folds")
    if n_groups < n_folds:
        raise EmodistError(
            f"{n_groups} {unit} cannot fill {n_folds} folds; use {max(2, n_groups)} folds or fewer",
            param="folds",
        )
    cv = fold_splitter(y, groups, n_folds, seed)
    if isinstance(cv, StratifiedGroupKFold):
        folds = stratified_group_folds(y, groups, n_folds=n_folds, seed=seed)
    else:
        folds = np.full(len(y), -1, dtype=np.int64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            for k, (_, test) in enumerate(cv.split(np.zeros(len(y)), y, groups)):
                folds[test] = k
    check_folds(folds, groups)
    return folds


def stratified_group_folds(y, groups, *, n_folds: int, seed: int) -> np.ndarray:
    """The test folds of a shuffled :class:`~sklearn.model_selection.StratifiedGroupKFold`, fast.

    The same folds, to the bit, as ``StratifiedGroupKFold(n_folds,
    shuffle=True, random_state=seed).split(X, y, groups)``: the same shuffle
    of the groups, the same order (largest spread of a group's class counts
    first), the same greedy choice of a fold per group with the same
    arithmetic and tie rules.  Where scikit-learn loops over every sample
    in Python (counting, then listing each fold's samples) and over every
    candidate fold of every group, this counts with numpy and weighs a
    group's candidate folds in one step, so that a million segments take
    seconds, not minutes (the streamed evaluation's size).

    Parameters
    ----------
    y, groups : array_like, shape (n,)
        Label and group of each sample.
    n_folds : int
        Number of folds (at most the largest class's sample count).
    seed : int
        Shuffling seed.

    Returns
    -------
    numpy.ndarray of int, shape (n,)
        Test fold of each sample.
    """
    _, y_inv, y_cnt = np.unique(np.asarray(y), return_inverse=True, return_counts=True)
    _, g_inv = np.unique(np.asarray(groups), return_inverse=True)
    y_inv, g_inv = y_inv.ravel(), g_inv.ravel()
    n_groups, n_classes = int(g_inv.max()) + 1, len(y_cnt)
    counts = np.zeros((n_groups, n_classes))
    np.add.at(counts, (g_inv, y_inv), 1.0)
    perm = np.arange(n_groups)
    check_random_state(seed).shuffle(perm)
    counts = counts[perm]
    inv_perm = np.empty_like(perm)
    inv_perm[perm] = np.arange(n_groups)
    g_inv = inv_perm[g_inv]
    order = np.argsort(-np.std(counts, axis=1), kind="stable")
    per_fold = np.zeros((n_folds, n_classes))
    add = np.eye(n_folds)[:, :, None]  # candidate i adds the group's counts to fold i only
    fold_of = np.empty(n_groups, dtype=np.int64)
    for g in order:
        c = counts[g]
        # scikit-learn's _find_best_fold, every candidate at once (the same operations)
        evals = np.mean(np.std((per_fold[None] + add * c) / y_cnt, axis=1), axis=1)
        sizes = np.sum(per_fold, axis=1)
        best, best_eval, best_size = 0, np.inf, np.inf
        for i in range(n_folds):
            close = np.isfinite(best_eval) and abs(evals[i] - best_eval) <= 1e-8 + 1e-5 * abs(best_eval)
            if evals[i] < best_eval or (close and sizes[i] < best_size):
                best, best_eval, best_size = i, evals[i], sizes[i]
        per_fold[best] += c
        fold_of[g] = best
    return fold_of[g_inv]


def fold_splitter(y, groups, n_folds: int, seed: int):
    """The splitter :func:`make_folds` uses.

    Parameters
    ----------
    y, groups : array_like, shape (n,)
        Labels and group of each sample.
    n_folds : int
        Number of folds.
    seed : int
        Shuffling seed.

    Returns
    -------
    sklearn.model_selection.StratifiedGroupKFold or sklearn.model_selection.GroupKFold
        :class:`~sklearn.model_selection.StratifiedGroupKFold` when some class
        has at least ``n_folds`` groups; otherwise stratification is
        impossible and a shuffled :class:`~sklearn.model_selection.GroupKFold`
        is used.
    """
    per_class = pd.DataFrame({"y": np.asarray(y), "g": np.asarray(groups)}).groupby("y")["g"].nunique()
    if per_class.max() >= n_folds:
        return StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return GroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)


def inner_splitter(y, groups, n_splits: int, seed):
    """A splitter for an inner cross-validation of ``(y, groups)``.

    Parameters
    ----------
    y : array_like, shape (n,)
        Labels.
    groups : array_like, shape (n,), or None
        Group of each sample.
    n_splits : int
        Wanted splits; reduced to the number of groups (or of samples in the
        smallest class) when there are fewer, and at least 2.
    seed : int or None
        Shuffling seed.

    Returns
    -------
    splitter : sklearn splitter
        With ``groups``: :func:`fold_splitter` (grouped, stratified where
        possible); without: :class:`~sklearn.model_selection.StratifiedKFold`.
    n_splits : int
        The number of splits it makes.
    """
    y = np.asarray(y)
    if groups is None:
        _, counts = np.unique(y, return_counts=True)
        k = int(max(2, min(n_splits, counts.min())))
        return StratifiedKFold(n_splits=k, shuffle=True, random_state=seed), k
    groups = np.asarray(groups)
    k = int(max(2, min(n_splits, len(np.unique(groups)))))
    return fold_splitter(y, groups, k, seed), k


def describe_splitter(splitter, group_by: str = "track") -> str:
    """One line naming the splitter and the grouping, for the report.

    Parameters
    ----------
    splitter : sklearn splitter
        What :func:`fold_splitter` returned.
    group_by : str
        What a group is, in words (:data:`GROUP_WORDS`).

    Returns
    -------
    str
    """
    name = type(splitter).__name__
    why = "" if name.startswith("Stratified") else f" (no class has a {group_by} per fold: not stratified)"
    return f"{name}(n_splits={splitter.n_splits}, shuffle=True) grouped by {group_by}{why}"


def check_folds(folds, groups) -> None:
    """Raise if some group has samples in two folds or a sample has no fold.

    Parameters
    ----------
    folds, groups : array_like, shape (n,)
        Fold and group of each sample.

    Raises
    ------
    emodist.errors.EmodistError
    """
    frame = pd.DataFrame({"fold": np.asarray(folds), "group": np.asarray(groups)})
    if (frame["fold"] < 0).any():
        raise EmodistError("some segments were assigned to no fold")
    spread = frame.groupby("group")["fold"].nunique()
    if (spread > 1).any():
        raise EmodistError(f"group {spread[spread > 1].index[0]!r} is in two folds")
