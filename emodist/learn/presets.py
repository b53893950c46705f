"""Classifier presets named after MATLAB's Classification Learner.

The reference study trained its models in MATLAB's Classification Learner;
each preset here rebuilds one of that app's models in scikit-learn with the
app's default hyper-parameters, so a MATLAB user recognises the names
(``"Bagged Trees"``, ``"Cubic SVM"``, ``"Fine KNN"`` ...).  Two presets go
beyond the app: logistic regression and histogram gradient boosting.

Every preset is a :class:`sklearn.pipeline.Pipeline` (:func:`make_pipeline`)
whose first step standardises the features (as MATLAB does for SVM and KNN;
trees are unaffected); boosted trees get the leading principal components of
inputs wider than 512 columns (:class:`~emodist.learn.estimators.WideInputPCA`).  Every step is
fit on the training folds only.

Kernel scales follow MATLAB: a Gaussian SVM with kernel scale ``s`` uses
``exp(-||x - y||^2 / s^2)``; the app's fine / medium / coarse presets use
``s = sqrt(P) / 4``, ``sqrt(P)``, ``4 sqrt(P)`` for ``P`` predictors, i.e.
``gamma = 16 / P``, ``1 / P``, ``1 / (16 P)`` on standardised features.
The estimators scikit-learn lacks are in :mod:`emodist.learn.estimators`.

Beyond one label per song (:data:`BEYOND_PRESETS`, ``--classifiers beyond``):
presets that learn from each segment's vote distribution (soft targets,
:mod:`emodist.learn.estimators`), tune per-class
decision offsets inside the training folds
or bag class-balanced samples.  A preset's ``fit_params`` names what its
fit needs besides ``X, y``: ``soft`` (the vote shares of the kept classes)
and ``groups`` (the training rows' groups, for a grouped inner CV).

The distribution presets (``target="distribution"``) are here too: vote
distribution regressors, soft-label logistic regression's probabilities.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from sklearn.base import BaseEstimator, clone
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.ensemble import (
    AdaBoostClassifier,
    BaggingClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier
from sklearn.utils.validation import has_fit_parameter

from emodist.errors import EmodistError
from emodist.learn.estimators import (
    WIDE_PARAMS,
    BalancedBaggingClassifier,
    ClippedKNN,
    InFoldSoftLogisticRegression,
    PriorShiftClassifier,
    RUSBoostClassifier,
    ScaledGaussianSVC,
    SoftLabelClassifier,
    SoftLogisticRegression,
    WideInputPCA,
    squared_inverse,
)

__all__ = [
    "ALL_PRESETS",
    "BEYOND_PRESETS",
    "DISTRIBUTION_PRESETS",
    "PRESETS",
    "QUICK_PRESETS",
    "Preset",
    "describe_presets",
    "get_preset",
    "make_distribution_pipeline",
    "make_pipeline",
    "resolve_distribution_presets",
    "resolve_presets",
    "supports_weights",
]


@dataclass(frozen=True)
class Preset:
    """One named classifier configuration.

    Attributes
    ----------
    name : str
        Display name as in MATLAB's Classification Learner.
    key : str
        Command-line key (lower case, hyphens).
    family : str
        Model family (``"SVM"``, ``"KNN"``, ``"Ensemble"``, ``"Other"``).
    params : dict
        Human-readable parameters shown by ``emodist evaluate --list``.
    build : callable
        ``build(seed) -> estimator`` (unfitted, without scaling).
    note : str
        How the preset maps onto MATLAB, where it is not one-to-one.
    fit_params : tuple of str
        What ``fit`` needs besides ``X, y``: ``"soft"`` (vote shares of the
        kept classes, columns set through the model's ``classes``
        parameter), ``"groups"`` (group of each training row).
    track_mean : bool
        Distribution presets: a test segment's prediction is the mean over
        its track's test segments.
    reduce : bool
        Wide inputs reach the model as their leading principal components
        (:class:`~emodist.learn.estimators.WideInputPCA`); narrow ones unchanged.
    """

    name: str
    key: str
    family: str
    params: dict[str, Any]
    build: Callable[[int], BaseEstimator] = field(repr=False)
    note: str = ""
    fit_params: tuple[str, ...] = ()
    track_mean: bool = False
    reduce: bool = False


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _svm_poly(degree: int) -> Callable[[int], BaseEstimator]:
    return lambda seed: SVC(kernel="poly", degree=degree, coef0=1.0, gamma="scale", C=1.0)


def _knn(k: int, **kw) -> Callable[[int], BaseEstimator]:
    return lambda seed: ClippedKNN(n_neighbors=k, **kw)


def _subspace(base: BaseEstimator) -> Callable[[int], BaseEstimator]:
    return lambda seed: BaggingClassifier(
        estimator=clone(base),
        n_estimators=30,
        max_features=0.5,
        bootstrap=False,
        bootstrap_features=False,
        random_state=seed,
    )


_PRESET_LIST = [
    Preset("Linear SVM", "", "SVM", {"kernel": "linear", "box_constraint": 1, "multiclass": "one-vs-one"},
           lambda seed: SVC(kernel="linear", C=1.0)),
    Preset("Quadratic SVM", "", "SVM", {"kernel": "(1 + x.y/P)^2", "box_constraint": 1,
                                         "multiclass": "one-vs-one"}, _svm_poly(2)),
    Preset("Cubic SVM", "", "SVM", {"kernel": "(1 + x.y/P)^3", "box_constraint": 1,
                                     "multiclass": "one-vs-one"}, _svm_poly(3)),
    Preset("Fine Gaussian SVM", "", "SVM", {"kernel": "gaussian", "kernel_scale": "sqrt(P)/4",
                                             "box_constraint": 1},
           lambda seed: ScaledGaussianSVC(scale_factor=0.25)),
    Preset("Medium Gaussian SVM", "", "SVM", {"kernel": "gaussian", "kernel_scale": "sqrt(P)",
                                               "box_constraint": 1},
           lambda seed: ScaledGaussianSVC(scale_factor=1.0)),
    Preset("Coarse Gaussian SVM", "", "SVM", {"kernel": "gaussian", "kernel_scale": "4 sqrt(P)",
                                               "box_constraint": 1},
           lambda seed: ScaledGaussianSVC(scale_factor=4.0)),
    Preset("Fine KNN", "", "KNN", {"neighbors": 1, "distance": "euclidean", "weight": "equal"},
           _knn(1)),
    Preset("Medium KNN", "", "KNN", {"neighbors": 10, "distance": "euclidean", "weight": "equal"},
           _knn(10)),
    Preset("Coarse KNN", "", "KNN", {"neighbors": 100, "distance": "euclidean", "weight": "equal"},
           _knn(100), "neighbours clipped to the training-set size"),
    Preset("Cosine KNN", "", "KNN", {"neighbors": 10, "distance": "cosine", "weight": "equal"},
           _knn(10, metric="cosine", algorithm="brute")),
    Preset("Cubic KNN", "", "KNN", {"neighbors": 10, "distance": "minkowski p=3", "weight": "equal"},
           _knn(10, metric="minkowski", p=3)),
    Preset("Weighted KNN", "", "KNN", {"neighbors": 10, "distance": "euclidean",
                                        "weight": "squared inverse"},
           _knn(10, weights=squared_inverse)),
    Preset("Bagged Trees", "", "Ensemble", {"method": "bag", "learners": 30,
                                             "predictors_per_split": "sqrt(P)",
                                             "max_splits": "n - 1"},
           lambda seed: RandomForestClassifier(n_estimators=30, random_state=seed, n_jobs=1)),
    Preset("Boosted Trees", "", "Ensemble", {"method": "AdaBoost (SAMME)", "learners": 30,
                                              "learning_rate": 0.1, "max_splits": 20, **WIDE_PARAMS},
           lambda seed: AdaBoostClassifier(
               estimator=DecisionTreeClassifier(max_leaf_nodes=21), n_estimators=30,
               learning_rate=0.1, random_state=seed), reduce=True),
    Preset("RUSBoosted Trees", "", "Ensemble", {"method": "RUSBoost", "learners": 30,
                                                 "learning_rate": 0.1, "max_splits": 20},
           lambda seed: RUSBoostClassifier(n_estimators=30, learning_rate=0.1,
                                           max_leaf_nodes=21, random_state=seed)),
    Preset("Subspace Discriminant", "", "Ensemble", {"method": "random subspace", "learners": 30,
                                                      "subspace_dimension": "P/2",
                                                      "learner": "linear discriminant"},
           _subspace(LinearDiscriminantAnalysis())),
    Preset("Subspace KNN", "", "Ensemble", {"method": "random subspace", "learners": 30,
                                             "subspace_dimension": "P/2",
                                             "learner": "1-NN euclidean"},
           _subspace(KNeighborsClassifier(n_neighbors=1))),
    Preset("Logistic Regression", "", "Other", {"penalty": "l2", "C": 1, "solver": "lbfgs",
                                                 "multiclass": "multinomial"},
           lambda seed: LogisticRegression(C=1.0, max_iter=2000)),
    Preset("Histogram Gradient Boosting", "", "Other", {"max_iter": 100, "learning_rate": 0.1,
                                                         "max_leaf_nodes": 31,
                                                         "early_stopping": False, **WIDE_PARAMS},
           lambda seed: HistGradientBoostingClassifier(max_iter=100, early_stopping=False,
                                                       random_state=seed), reduce=True),
]

def _lr(seed):
    return LogisticRegression(C=1.0, max_iter=2000)


def _prior(base: Callable[[int], BaseEstimator]) -> Callable[[int], BaseEstimator]:
    return lambda seed: PriorShiftClassifier(base(seed), method="prior_power", cv=5, random_state=seed)


def _soft_lr(seed):
    return SoftLogisticRegression(C=0.1)


_PRIOR = {"offsets": "-tau log(class share), tau in 0..1.5 by inner grouped 5-fold CV "
                     "(balanced accuracy, training folds only)"}
_BEYOND_LIST = [
    Preset("Soft Logistic Regression", "", "Soft labels",
           {"C": 0.1, "target": "vote shares of the kept classes"}, _soft_lr,
           fit_params=("soft",)),
    Preset("Soft Logistic Regression in-fold C", "", "Soft labels",
           {"C": "0.003..1 by inner grouped 4-fold CV (JSD, training folds only)",
            "target": "vote shares of the kept classes"},
           lambda seed: InFoldSoftLogisticRegression(random_state=seed),
           fit_params=("soft", "groups")),
    Preset("Soft Bagged Trees", "", "Soft labels",
           {"learners": 100, "min_leaf_size": 5, "target": "vote shares (rows repeated per class)"},
           lambda seed: SoftLabelClassifier(RandomForestClassifier(
               n_estimators=100, min_samples_leaf=5, random_state=seed, n_jobs=1), min_share=0.02),
           fit_params=("soft",)),
    Preset("Prior-shift Logistic Regression", "", "Imbalance", {"C": 1, **_PRIOR}, _prior(_lr),
           fit_params=("groups",)),
    Preset("Prior-shift Soft Logistic Regression", "", "Imbalance", {"C": 0.1, **_PRIOR},
           _prior(_soft_lr), fit_params=("soft", "groups")),
    Preset("Prior-shift Subspace Discriminant", "", "Imbalance",
           {"learners": 30, "subspace_dimension": "P/2", **_PRIOR},
           _prior(_subspace(LinearDiscriminantAnalysis())), fit_params=("groups",)),
    Preset("Balanced Bagged Trees", "", "Imbalance",
           {"learners": 100, "bag": "every class under-sampled to the smallest",
            "predictors_per_split": "sqrt(P)"},
           lambda seed: BalancedBaggingClassifier(DecisionTreeClassifier(max_features="sqrt"),
                                                  n_estimators=100, random_state=seed)),
    Preset("Balanced Bagged Soft Logistic Regression", "", "Imbalance",
           {"learners": 30, "C": 0.1, "bag": "every class under-sampled to the smallest"},
           lambda seed: BalancedBaggingClassifier(SoftLogisticRegression(C=0.1), n_estimators=30,
                                                  random_state=seed),
           fit_params=("soft",)),
]

#: Every preset by key, in display order: the study's, then the ones beyond.
PRESETS: dict[str, Preset] = {}
for _p in _PRESET_LIST + _BEYOND_LIST:
    _p = replace(_p, key=_key(_p.name))
    PRESETS[_p.key] = _p
del _p

#: Presets a quick run uses (fast on small data, one per family).
QUICK_PRESETS = ("linear-svm", "medium-knn", "bagged-trees", "logistic-regression")
#: The presets beyond one label per song (``--classifiers beyond``).
BEYOND_PRESETS = tuple(_key(p.name) for p in _BEYOND_LIST)
#: What ``--classifiers all`` runs: the study's presets and the two extras.
ALL_PRESETS = tuple(_key(p.name) for p in _PRESET_LIST)


def get_preset(name: str) -> Preset:
    """Look a preset up by key or display name (case and spacing ignored).

    Parameters
    ----------
    name : str
        Key (``"bagged-trees"``) or display name (``"Bagged Trees"``).

    Returns
    -------
    Preset

    Raises
    ------
    emodist.errors.EmodistError
        For an unknown name (``param="classifiers"``); the message lists
        the valid keys.
    """
    key = _key(name)
    if key not in PRESETS:
        raise EmodistError(f"unknown classifier {name!r}; choose from {', '.join(PRESETS)}",
                           param="classifiers")
    return PRESETS[key]


def resolve_presets(names) -> list[Preset]:
    """Presets for a list of names; ``"all"``, ``"quick"``, ``"beyond"`` are shorthands.

    Parameters
    ----------
    names : str or sequence of str
        Keys, display names or shorthands: ``all`` (the study's presets and
        the two extras, :data:`ALL_PRESETS`), ``quick`` (a fast few,
        :data:`QUICK_PRESETS`), ``beyond`` (:data:`BEYOND_PRESETS`).

    Returns
    -------
    list of Preset
        Duplicates removed, order kept.

    Raises
    ------
    emodist.errors.EmodistError
        An unknown name, or none (``param="classifiers"``).
    """
    def picks(n: str) -> list[Preset]:
        group = {"all": ALL_PRESETS, "quick": QUICK_PRESETS, "beyond": BEYOND_PRESETS}.get(_key(n))
        return [get_preset(k) for k in group] if group else [get_preset(n)]

    return _resolve(names, picks, none="no classifier given")


def _resolve(names, picks, *, none: str) -> list[Preset]:
    """The presets ``picks(name)`` gives for each of ``names``, duplicates removed, order kept."""
    out: list[Preset] = []
    for n in [names] if isinstance(names, str) else names:
        for p in picks(n):
            if p not in out:
                out.append(p)
    if not out:
        raise EmodistError(none, param="classifiers")
    return out


def supports_weights(preset: Preset) -> bool:
    """Whether the preset's estimator accepts per-sample (class) weights.

    Parameters
    ----------
    preset : Preset

    Returns
    -------
    bool
        False for presets that learn from vote shares or tune their own
        class balance (prior shift, balanced bagging).
    """
    est = preset.build(0)
    if isinstance(est, BaggingClassifier):
        est = est.estimator
    if "soft" in preset.fit_params or isinstance(est, (PriorShiftClassifier, BalancedBaggingClassifier)):
        return False
    return has_fit_parameter(est, "sample_weight")


def make_pipeline(preset: Preset | str, seed: int = 0) -> Pipeline:
    """The unfitted scikit-learn pipeline of a preset: scaling, then the model.

    Parameters
    ----------
    preset : Preset or str
        Preset or its name.
    seed : int
        Random state of every random part (trees, subspaces, under-sampling).

    Returns
    -------
    sklearn.pipeline.Pipeline
        Steps ``scale`` (:class:`~sklearn.preprocessing.StandardScaler`),
        ``reduce`` (:class:`~emodist.learn.estimators.WideInputPCA`, presets
        with ``reduce``), ``model``.
    """
    p = get_preset(preset) if isinstance(preset, str) else preset
    reduce = [("reduce", WideInputPCA())] if p.reduce else []
    return Pipeline([("scale", StandardScaler()), *reduce, ("model", p.build(seed))])


def describe_presets() -> list[dict[str, Any]]:
    """Rows for ``emodist evaluate --list``.

    Returns
    -------
    list of dict
        One per preset: ``key``, ``name``, ``family``, ``params``,
        ``class_weights`` (:func:`supports_weights`), ``fit_params``, ``note``.
    """
    return [
        {
            "key": p.key,
            "name": p.name,
            "family": p.family,
            "params": dict(p.params),
            "class_weights": supports_weights(p),
            "fit_params": list(p.fit_params),
            "note": p.note,
        }
        for p in PRESETS.values()
    ]


# --------------------------------------------------------------------------
# Distribution presets (``target="distribution"``).
# --------------------------------------------------------------------------


_DISTRIBUTION_LIST = [
    Preset("Ridge Regression", "", "Regression", {"alpha": 10.0, "output": "clipped, renormalised"},
           lambda seed: Ridge(alpha=10.0)),
    Preset("Medium KNN Regression", "", "Regression",
           {"neighbors": 10, "distance": "euclidean", "output": "mean neighbour distribution"},
           lambda seed: KNeighborsRegressor(n_neighbors=10)),
    Preset("Bagged Trees Regression", "", "Regression",
           {"learners": 30, "min_leaf_size": 5, "output": "mean leaf distribution"},
           lambda seed: RandomForestRegressor(n_estimators=30, min_samples_leaf=5,
                                              max_features=0.33, random_state=seed, n_jobs=1)),
    Preset("Soft Logistic Regression in-fold C", "", "Soft labels",
           {"C": "0.003..1 by inner grouped 4-fold CV (JSD, training folds only)",
            "output": "predicted probabilities"},
           lambda seed: InFoldSoftLogisticRegression(group_mean=False, random_state=seed),
           fit_params=("soft", "groups")),
    Preset("Soft Logistic Regression in-fold C track mean", "", "Soft labels",
           {"C": "0.003..1 by inner grouped 4-fold CV (JSD of track means, training folds only)",
            "output": "mean probabilities over the test track's segments"},
           lambda seed: InFoldSoftLogisticRegression(group_mean=True, random_state=seed),
           fit_params=("soft", "groups"), track_mean=True),
]

#: Models of the vote distribution, by key.
DISTRIBUTION_PRESETS: dict[str, Preset] = {
    _key(p.name): replace(p, key=_key(p.name)) for p in _DISTRIBUTION_LIST
}


def resolve_distribution_presets(names) -> list[Preset]:
    """Distribution presets for a list of names.

    Parameters
    ----------
    names : str or sequence of str
        Keys or display names of :data:`DISTRIBUTION_PRESETS`; ``"all"`` and
        ``"quick"`` give every one.

    Returns
    -------
    list of Preset

    Raises
    ------
    emodist.errors.EmodistError
        An unknown name, or none (``param="classifiers"``).
    """
    def picks(n: str) -> list[Preset]:
        key = _key(n)
        if key in ("all", "quick"):
            return list(DISTRIBUTION_PRESETS.values())
        if key in DISTRIBUTION_PRESETS:
            return [DISTRIBUTION_PRESETS[key]]
        raise EmodistError(
            f"unknown distribution model {n!r}; choose from {', '.join(DISTRIBUTION_PRESETS)}",
            param="classifiers",
        )

    return _resolve(names, picks, none="no distribution model given")


def make_distribution_pipeline(preset: Preset | str, seed: int = 0) -> Pipeline:
    """Unfitted pipeline of a distribution preset: scaling, then the model.

    Parameters
    ----------
    preset : Preset or str
        A distribution preset or its name (:data:`DISTRIBUTION_PRESETS`).
    seed : int
        Random state of every random part.

    Returns
    -------
    sklearn.pipeline.Pipeline
        Steps ``scale`` (:class:`~sklearn.preprocessing.StandardScaler`) and ``model``.
    """
    p = resolve_distribution_presets([preset])[0] if isinstance(preset, str) else preset
    return Pipeline([("scale", StandardScaler()), ("model", p.build(seed))])
