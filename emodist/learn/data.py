"""The store-facing part of an evaluation: feature groups, feature sets, data.

Everything the in-memory evaluation reads from a feature store goes through
this module:

* :func:`open_dataset`: a store URL (or an opened Dataset) as a Dataset;
* :func:`stored_groups`: the feature groups a store holds, with their
  feature names;
* :func:`resolve_feature_sets`: the feature-set syntax (below) turned into
  :class:`FeatureSet` objects;
* :func:`usable_rows`: the segments where every group of a set is done;
* :func:`load_data`: the matrices, labels and ids of the evaluated segments;
* :func:`store_info`: the store's provenance for the report;
* :func:`stored_label_rule`, :func:`emotion_order`: the label rule and the
  emotion names the store was made with.

Store layout read here: dimension ``segment`` whose index holds the segment
ids, per-segment coordinates ``track_id``, ``label``, ``group`` (...); for
each feature group ``NAME`` a variable ``NAME`` (``segment``,
``NAME_feature``) with the feature names in coordinate ``NAME_feature`` and a
status variable ``NAME_status`` (0 pending, 1 done, -1 failed); the group's
description in ``attrs["feature_groups"][NAME]``; ``votes`` / ``votes_mean``
(``segment``, ``emotion``).

Feature-set syntax (a string or a list of strings):

* a stored group name (``handcrafted``): that group's columns;
* ``+``-joined group names (``handcrafted+inception_v3``): their columns side
  by side, on the segments where every one of them is done;
* feature names and glob patterns (``mfcc_*``, ``tempo``): all of them
  together form one set called ``custom``.

With no spec: every group alone, and all joined (:func:`default_feature_sets`).
"""

from __future__ import annotations

import dataclasses
import fnmatch
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from emodist.data.labels import GEMS
from emodist.errors import EmodistError, StoreError
from emodist.learn.spec import TARGETS, check_choice
from emodist.learn.targets import (
    FACTORS,
    factor_targets,
    ordered_classes,
    recompute_labels,
    soft_targets,
    target_distribution,
)
from emodist.models.trained import CONTEXTS, track_context
from emodist.spec import LABEL_RULES
from emodist.store import open_store
from emodist.store.handle import StoreHandle
from emodist.store.zarrio import local_reads

__all__ = [
    "CONTEXTS",
    "CUSTOM",
    "SEGMENT",
    "STATUS_DONE",
    "EvalData",
    "FeatureSet",
    "default_feature_sets",
    "emotion_order",
    "feature_dim",
    "feature_matrices",
    "load_data",
    "open_dataset",
    "resolve_feature_sets",
    "status_var",
    "store_info",
    "stored_groups",
    "stored_label_rule",
    "track_context",
    "usable_rows",
]

SEGMENT = "segment"
STATUS_DONE = 1
#: Name of the set formed by feature names and patterns.
CUSTOM = "custom"
_GLOB = set("*?[")
# CONTEXTS (what a segment's features are joined with: nothing, or its track's mean features)
# and track_context live with the model card, whose heads join segments with them on the
# workers too; they are exported here beside the data they join


def feature_dim(group: str) -> str:
    """Dimension holding the feature names of ``group``: ``"<group>_feature"``."""
    return f"{group}_feature"


def status_var(group: str) -> str:
    """Status variable of ``group``: ``"<group>_status"`` (0 pending, 1 done, -1 failed per segment).

    The sibling of :func:`feature_dim`.
    """
    return f"{group}_status"


def _strings(values) -> np.ndarray:
    return np.array([str(v) for v in np.asarray(values).ravel()], dtype=object)


# --------------------------------------------------------------------------
# Groups and feature sets.
# --------------------------------------------------------------------------


@dataclass
class FeatureSet:
    """Named selection of feature columns.

    Attributes
    ----------
    name : str
        A group name, ``+``-joined group names, or ``"custom"``.
    columns : list of (str, list of str)
        Feature group and the feature names taken from it, in order.
    """

    name: str
    columns: list[tuple[str, list[str]]]

    @property
    def names(self) -> list[str]:
        """All feature names, in column order."""
        return [n for _, names in self.columns for n in names]

    @property
    def groups(self) -> list[str]:
        """The feature groups the set reads (all must be done on a segment)."""
        return [g for g, _ in self.columns]


def stored_groups(ds) -> dict[str, list[str]]:
    """Feature groups of a store and their feature names, in store order.

    A group is a data variable ``NAME`` over (``segment``, ``NAME_feature``)
    with a status variable ``NAME_status``.  The order is that of
    ``attrs["feature_groups"]``, then of the variables.

    Parameters
    ----------
    ds : xarray.Dataset
        An opened store; only its variables' names and dims and its ``attrs`` are read.

    Returns
    -------
    dict of str to list of str
        Group name -> feature names, in column order.
    """
    listed = list(dict(ds.attrs.get("feature_groups") or {}))
    found = [str(v) for v in ds.data_vars
             if ds[v].dims == (SEGMENT, feature_dim(str(v))) and status_var(str(v)) in ds]
    order = [g for g in listed if g in found] + [g for g in found if g not in listed]
    return {g: [str(n) for n in _strings(ds[feature_dim(g)].values)] for g in order}


def default_feature_sets(available) -> list[str]:
    """Every group alone, plus all of them joined when there are two or more.

    Parameters
    ----------
    available : iterable of str
        Stored group names, in order.

    Returns
    -------
    list of str
        Feature-set specs (``"a"``, ``"b"``, ``"a+b"``).
    """
    groups = list(available)
    return groups + ["+".join(groups)] if len(groups) > 1 else groups


def _unknown(token: str, available) -> EmodistError:
    return EmodistError(
        f"{token!r} is not a stored feature group (the store holds {', '.join(available) or 'none'})",
        param="features",
    )


def resolve_feature_sets(spec, available: dict[str, list[str]]) -> list[FeatureSet]:
    """Turn a feature-set spec into feature sets.

    Parameters
    ----------
    spec : str, sequence of str or None
        Group names and ``+``-joined group names, each giving one set, and/or
        feature names or glob patterns, which together give one set called
        ``custom``.  ``None`` or empty: :func:`default_feature_sets`.
    available : dict
        Output of :func:`stored_groups`.

    Returns
    -------
    list of FeatureSet

    Raises
    ------
    emodist.errors.EmodistError
        (``param="features"``) a joined name that is not a stored group,
        a name that is neither a group nor a feature, a pattern that matches
        no feature, or a store without feature groups.
    """
    if not available:
        raise StoreError("the store holds no feature groups to evaluate")
    tokens = [spec] if isinstance(spec, str) else list(spec or [])
    tokens = tokens or default_feature_sets(available)
    sets: list[FeatureSet] = []
    patterns: list[str] = []
    for tok in tokens:
        tok = str(tok).strip()
        if "+" in tok:
            parts = list(dict.fromkeys(p.strip() for p in tok.split("+") if p.strip()))
            bad = [p for p in parts if p not in available]
            if bad or not parts:
                raise _unknown(bad[0] if bad else tok, available)
            fs = FeatureSet("+".join(parts), [(g, list(available[g])) for g in parts])
        elif tok in available:
            fs = FeatureSet(tok, [(tok, list(available[tok]))])
        else:
            patterns.append(tok)
            continue
        if all(s.name != fs.name for s in sets):
            sets.append(fs)
    if patterns:
        chosen: dict[str, list[str]] = {g: [] for g in available}
        for pat in patterns:
            hits = [(g, n) for g, names in available.items() for n in names if fnmatch.fnmatchcase(n, pat)]
            if not hits and not (_GLOB & set(pat)):
                raise EmodistError(
                    f"{pat!r} is neither a stored feature group ({', '.join(available)}) "
                    "nor a feature name", param="features")
            if not hits:
                raise EmodistError(f"feature pattern {pat!r} matches no feature in the store",
                                   param="features")
            for g, n in hits:
                if n not in chosen[g]:
                    chosen[g].append(n)
        sets.append(FeatureSet(CUSTOM, [(g, ns) for g, ns in chosen.items() if ns]))
    return sets


def usable_rows(ds, groups) -> np.ndarray:
    """Boolean mask of the segments where every group in ``groups`` is done.

    Parameters
    ----------
    ds : xarray.Dataset
        An opened store.
    groups : iterable of str
        Feature group names.

    Returns
    -------
    numpy.ndarray of bool, shape (n_segments,)
        True where every group's status is 1.
    """
    done = np.ones(ds.sizes[SEGMENT], dtype=bool)
    for g in groups:
        done &= np.asarray(ds[status_var(g)].values) == STATUS_DONE
    return done


# --------------------------------------------------------------------------
# Data.
# --------------------------------------------------------------------------


@dataclass
class EvalData:
    """Segments taken into an evaluation, in store order.

    Attributes
    ----------
    X : dict
        Feature-set name -> float64 matrix ``(n, n_features)``.
    sets : list of FeatureSet
    y : numpy.ndarray of str
        Labels.
    segment_id, track_id : numpy.ndarray of str
    group : numpy.ndarray of str or None
        The store's ``group`` of each segment (``None`` without one).
    distribution : numpy.ndarray or None
        ``(n, 9)`` target distributions (``target="distribution"``).
    classes : list of str
        The classes of ``y`` in display order (emotion or factor order).
    soft : numpy.ndarray or None
        ``(n, len(classes))`` vote shares of the classes (rows sum to 1, or
        0 without votes for any of them); ``None`` when the store keeps no
        votes or the target is the distribution.
    strata : numpy.ndarray of str or None
        The emotion labels the folds are stratified by (``target="factors"``:
        the same folds as for the emotion classes); ``None``: ``y``.
    label_rule : str
    emotions : tuple of str
        Emotion names in the store's order (the order classes are shown in).
    excluded : dict
        Reason -> number of segments left out.
    """

    X: dict[str, np.ndarray]
    sets: list[FeatureSet]
    y: np.ndarray
    segment_id: np.ndarray
    track_id: np.ndarray
    group: np.ndarray | None
    distribution: np.ndarray | None
    label_rule: str
    emotions: tuple[str, ...] = ()
    excluded: dict[str, int] = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)
    soft: np.ndarray | None = None
    strata: np.ndarray | None = None

    def take(self, rows, reason: str) -> EvalData:
        """The segments ``rows`` (a boolean mask) only; the classes stay all of them.

        ``reason`` names why the others are left out (counted in :attr:`excluded`).
        """
        rows = np.asarray(rows, bool)

        def cut(a):
            return None if a is None else a[rows]

        excluded = dict(self.excluded)
        if (~rows).any():
            excluded[reason] = excluded.get(reason, 0) + int((~rows).sum())
        return dataclasses.replace(
            self, X={k: v[rows] for k, v in self.X.items()}, y=self.y[rows],
            segment_id=self.segment_id[rows], track_id=self.track_id[rows],
            group=cut(self.group), distribution=cut(self.distribution), soft=cut(self.soft),
            strata=cut(self.strata), excluded=excluded)


@local_reads()
def load_data(ds, features=None, label_rule: str | None = None,
              target: str = "class") -> EvalData:
    """Read the evaluated segments of a store into memory.

    A segment is evaluated when every feature group of every requested set
    is done on it (status 1) and its label is kept, so that all sets are
    compared on the same segments and folds.

    Parameters
    ----------
    ds : xarray.Dataset
        An opened store (:func:`open_dataset`).
    features : str, sequence of str or None
        Feature-set spec (see :func:`resolve_feature_sets`).
    label_rule : {"listener", "mean"} or None
        ``None`` keeps the stored labels; a rule other than the stored one
        recomputes them from ``votes`` / ``votes_mean``.
    target : {"class", "factors", "distribution"}
        ``class``: the dominant emotion, with the vote shares of the kept
        classes as ``soft`` when the store keeps votes; ``factors``: the
        dominant GEMS factor and the factor distribution
        (:func:`emodist.learn.targets.factor_targets`) of the same segments;
        ``distribution``: the nine-way distribution.

    Returns
    -------
    EvalData

    Raises
    ------
    emodist.errors.EmodistError
        Unknown target, label rule or feature set (``param`` names it).
    StoreError
        No finished segments, missing vote profiles, non-finite features.
    """
    check_choice("target", target, TARGETS)
    if label_rule is not None:
        check_choice("label_rule", label_rule, LABEL_RULES)
    sets = resolve_feature_sets(features, stored_groups(ds))
    involved = list(dict.fromkeys(g for fs in sets for g in fs.groups))
    labels = _strings(ds["label"].values)
    stored_rule = stored_label_rule(ds.attrs)
    rule = label_rule or stored_rule
    needs_votes = rule != stored_rule or target != "class"
    has_votes = "votes" in ds and "votes_mean" in ds
    if needs_votes and not has_votes:
        raise StoreError("the store keeps no vote profiles; cannot recompute labels or distributions")
    votes = np.asarray(ds["votes"].values, np.float64) if has_votes else None
    votes_mean = np.asarray(ds["votes_mean"].values, np.float64) if has_votes else None
    if rule != stored_rule:
        labels = recompute_labels(votes, votes_mean, rule, {lab for lab in labels if lab})
    done = usable_rows(ds, involved)
    labelled = labels != ""
    excluded = {
        "not extracted (status != 1)": int((~done).sum()),
        "class dropped at extraction": int((done & ~labelled).sum()),
    }
    take = done & labelled
    dist_all = None if votes is None else target_distribution(votes, votes_mean, rule)
    if target != "class":
        no_votes = dist_all.sum(axis=1) == 0
        excluded["no votes"] = int((take & no_votes).sum())
        take &= ~no_votes
    idx = np.flatnonzero(take)
    if len(idx) == 0:
        raise StoreError("the store has no finished, labelled segments to evaluate")
    emotions = emotion_order(ds)
    y, strata, soft, dist = labels[idx], None, None, None
    if target == "distribution":
        dist = dist_all[idx]
    elif target == "factors":
        cols = list(emotions)
        F, y = factor_targets(pd.DataFrame(votes[idx], columns=cols),
                              pd.DataFrame(votes_mean[idx], columns=cols), rule)
        strata = labels[idx]
        soft = F[:, [FACTORS.index(f) for f in ordered_classes(y, FACTORS)]]
    classes = ordered_classes(y, FACTORS if target == "factors" else emotions)
    if target == "class" and dist_all is not None:
        soft = soft_targets(dist_all[idx], classes=classes, columns=emotions)
    return EvalData(
        X=feature_matrices(ds, sets, idx),
        sets=sets,
        y=y,
        segment_id=_strings(ds[SEGMENT].values)[idx],
        track_id=_strings(ds["track_id"].values)[idx],
        group=_strings(ds["group"].values)[idx] if "group" in ds.coords else None,
        distribution=dist,
        label_rule=rule,
        emotions=emotions,
        excluded=excluded,
        classes=classes,
        soft=soft,
        strata=strata,
    )


def feature_matrices(ds, sets, idx) -> dict[str, np.ndarray]:
    """The feature matrix of each set on the store positions ``idx``.

    Parameters
    ----------
    ds : xarray.Dataset
        An opened store.
    sets : list of FeatureSet
        The resolved feature sets (:func:`resolve_feature_sets`).
    idx : array_like of int
        Store positions of the rows.

    Returns
    -------
    dict
        Set name -> float64 matrix ``(len(idx), n_features)``.

    Raises
    ------
    StoreError
        A row with a non-finite feature.
    """
    X = {}
    for fs in sets:
        parts = [np.asarray(ds[g].isel({SEGMENT: idx}).sel({feature_dim(g): names}).values, np.float64)
                 for g, names in fs.columns]
        mat = np.concatenate(parts, axis=1)
        bad = ~np.isfinite(mat)
        if bad.any():
            raise StoreError(
                f"{int(bad.any(axis=1).sum())} finished segments have non-finite {fs.name} features"
            )
        X[fs.name] = mat
    return X


# --------------------------------------------------------------------------
# Opening a store and its provenance.
# --------------------------------------------------------------------------


def open_dataset(store, storage_options: dict | None = None):
    """The store at ``store``, opened (a Dataset is returned as is).

    Parameters
    ----------
    store : str, StoreHandle or xarray.Dataset
        Store URL or path (:func:`emodist.store.open_store`), a store handle, or an opened
        Dataset.
    storage_options : dict, optional
        Filesystem options of a URL.

    Returns
    -------
    xarray.Dataset

    Raises
    ------
    emodist.errors.StoreError
        Nothing readable at ``store``.
    """
    if not isinstance(store, (str, StoreHandle)):
        return store
    return open_store(store, storage_options)


def store_info(store, ds) -> dict:
    """Provenance of the store for the report.

    Parameters
    ----------
    store : str or object
        The store's URL or path (anything else reads ``<in-memory dataset>``).
    ds : xarray.Dataset
        The opened store.

    Returns
    -------
    dict
        ``url``, the stored ``emodist_version``, ``created``, ``dataset``,
        ``label_rule``, ``feature_groups``, ``model_sha256`` where present,
        ``config`` (the extraction spec), ``n_failures`` and ``n_segments``.
    """
    attrs = dict(ds.attrs)
    keep = ("emodist_version", "created", "dataset", "label_rule", "feature_groups", "model_sha256")
    info = {k: attrs[k] for k in keep if k in attrs}
    info["url"] = str(store) if isinstance(store, (str, StoreHandle)) else "<in-memory dataset>"
    if "spec" in attrs:
        info["config"] = attrs["spec"]
    failures = attrs.get("failures")
    if isinstance(failures, (list, tuple)):
        info["n_failures"] = len(failures)
    info["n_segments"] = int(ds.sizes[SEGMENT])
    return info


def stored_label_rule(attrs: dict) -> str:
    """Label rule (``"listener"`` or ``"mean"``) the labels of a store with attributes ``attrs``
    were made with: ``attrs["label_rule"]``, else the recorded spec's, else ``"listener"``."""
    if attrs.get("label_rule") in LABEL_RULES:
        return attrs["label_rule"]
    spec = attrs.get("spec")
    if isinstance(spec, dict) and spec.get("label_rule") in LABEL_RULES:
        return spec["label_rule"]
    return "listener"


def emotion_order(ds) -> tuple[str, ...]:
    """The store's emotion names in column order.

    Parameters
    ----------
    ds : xarray.Dataset
        An opened store.

    Returns
    -------
    tuple of str
        The ``emotion`` coordinate, or the GEMS order if the store keeps none.
    """
    if "emotion" in ds.coords:
        return tuple(str(e) for e in np.asarray(ds["emotion"].values))
    return tuple(GEMS)
