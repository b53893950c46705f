"""Continuous targets: regression presets, in-fold tuning, R², RMSE, r, rho, CCC.

Dimensional emotion (valence and arousal per song or every half second, as in
DEAM, PMEmo and emoMusic) and Emotify's nine vote shares are continuous
targets.  This module predicts each target column with a scikit-learn
pipeline built like the classification presets
(:func:`emodist.learn.presets.make_pipeline`): the features are standardised,
tree boosting gets the leading principal components of inputs wider than 512
columns (:class:`~emodist.learn.estimators.WideInputPCA`), and every step is fit
on the training folds only.

Hyper-parameters are chosen inside the training folds: for each outer fold a
:class:`~sklearn.model_selection.GridSearchCV` with a shuffled
:class:`~sklearn.model_selection.GroupKFold` over the training rows' groups
(a track never spans an inner training and validation fold) picks the grid
point with the best mean R², refits it on the whole training part and
predicts the held-out fold.  The outer folds come from
:func:`emodist.learn.folds.make_folds`.

Two presets address the vote shares' structure.  ``softmax-shares``
(:class:`SoftmaxShares`) predicts the nine shares at once as the softmax of
linear scores, so they are non-negative and sum to 1.  ``ridge-rescaled``
corrects the shrinkage of a regularised model, which costs concordance
(CCC penalises a prediction spread narrower than the truth's): after the
search, the tuned ridge's out-of-fold predictions on the same inner folds
give, per target, the scale of its deviations from the training mean that
maximises the mean of R² and CCC (:func:`concordant_scale`); the refit
model's predictions are scaled by it (:class:`Rescaled`).  Both are chosen
from the training part alone.

Scores per target (:func:`regression_metrics`), per fold (mean, population
std) and pooled over the out-of-fold predictions, at segment level and at
track level (a track's truth and prediction are the means over its
segments): R², RMSE, Pearson r, Spearman rho and Lin's concordance
correlation coefficient (:func:`concordance`).  The baseline predicts, for
every test row, the mean of the training folds
(:func:`emodist.learn.scoring.train_mean_baseline`): R² at most 0 and
CCC 0.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.cross_decomposition import PLSRegression
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
from sklearn.linear_model import Ridge
from sklearn.metrics import mean_squared_error, r2_score
from sklearn.model_selection import GridSearchCV, GroupKFold, cross_val_predict
from sklearn.neighbors import KNeighborsRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVR
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from emodist.errors import EmodistError
from emodist.learn.estimators import WIDE_PARAMS, SoftLogisticRegression, WideInputPCA
from emodist.learn.scoring import fold_summary, mean_proba, train_mean_baseline

__all__ = [
    "REGRESSION_METRICS",
    "REGRESSION_PRESETS",
    "SCALE_GRID",
    "RegressionPreset",
    "RegressionRun",
    "Rescaled",
    "ScaledGaussianSVR",
    "SoftmaxShares",
    "concordance",
    "concordant_scale",
    "cross_val_regression",
    "evaluate_regression",
    "fit_columns",
    "make_search",
    "pick_presets",
    "regression_metrics",
    "regression_scores",
    "resolve_regression_presets",
    "scatter_figure",
    "track_means",
]

#: Scores of a target, in display order.
REGRESSION_METRICS = ("r2", "rmse", "pearson", "spearman", "ccc")
#: Inner grouped folds of the hyper-parameter search.
INNER_FOLDS = 4


class ScaledGaussianSVR(RegressorMixin, BaseEstimator):
    """Gaussian-kernel support-vector regression with MATLAB's kernel scale.

    The kernel is ``exp(-||x - y||^2 / s^2)`` with ``s = scale_factor *
    sqrt(P)`` for ``P`` predictors (0.25 fine, 1 medium, 4 coarse, as the
    classification presets).  The target is standardised inside ``fit``, so
    ``epsilon`` is in units of the training target's standard deviation
    (MATLAB's default ``iqr(y) / 13.49`` is about 0.1 of it).

    Parameters
    ----------
    scale_factor : float
        Kernel scale as a multiple of ``sqrt(P)``.
    C : float
        Box constraint.
    epsilon : float
        Half-width of the insensitive tube, in target standard deviations.
    """

    def __init__(self, scale_factor: float = 1.0, C: float = 1.0, epsilon: float = 0.1):
        self.scale_factor = scale_factor
        self.C = C
        self.epsilon = epsilon

    def fit(self, X, y):
        """Fit with ``gamma = 1 / (scale_factor^2 * P)`` on the standardised target."""
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        self.y_mean_ = float(y.mean())
        self.y_scale_ = float(y.std()) or 1.0
        gamma = 1.0 / (self.scale_factor**2 * X.shape[1])
        self.svr_ = SVR(kernel="rbf", C=self.C, gamma=gamma, epsilon=self.epsilon)
        self.svr_.fit(X, (y - self.y_mean_) / self.y_scale_)
        return self

    def predict(self, X):
        """Predictions on the scale of the training target."""
        check_is_fitted(self, "svr_")
        return self.svr_.predict(np.asarray(X, dtype=np.float64)) * self.y_scale_ + self.y_mean_


class SoftmaxShares(RegressorMixin, BaseEstimator):
    """Shares that sum to 1 per row, predicted by a softmax of linear scores.

    A multinomial logistic regression fit to the shares as soft labels
    (:class:`~emodist.learn.estimators.SoftLogisticRegression`: soft-label
    cross-entropy, L2 penalty ``1 / C``); its class probabilities are the
    predicted shares, so they are non-negative and sum to 1, as the targets
    do.  It predicts every column at once (a multi-output preset).

    Parameters
    ----------
    C : float
        Inverse L2 strength.
    """

    def __init__(self, C: float = 0.1):
        self.C = C

    def fit(self, X, Y):
        """Fit to ``Y`` (n, k), non-negative rows (each normalised to sum 1)."""
        Y = np.asarray(Y, dtype=np.float64)
        if Y.ndim != 2 or Y.shape[1] < 2:
            raise ValueError("SoftmaxShares needs two or more share columns")
        self.model_ = SoftLogisticRegression(C=self.C, classes=np.arange(Y.shape[1]),
                                             standardize=False).fit(X, soft=Y)
        return self

    def predict(self, X):
        """Predicted shares, shape (n, k), rows summing to 1."""
        check_is_fitted(self, "model_")
        return self.model_.predict_proba(np.asarray(X, dtype=np.float64))


class Rescaled(RegressorMixin, BaseEstimator):
    """A regressor whose deviations from a centre are multiplied by a scale.

    ``center + scale * (f(x) - center)``, per target column.  Regularised
    models shrink their predictions towards the training mean; a scale
    above 1 spreads them out again.  :func:`fit_columns` chooses the scale
    on the inner out-of-fold predictions of the training rows
    (:func:`concordant_scale`).

    Parameters
    ----------
    estimator : regressor
        The model ``f`` (fit by :meth:`fit`, or given fitted to :func:`fit_columns`).
    center : float or array_like of shape (n_targets,)
    scale : float or array_like of shape (n_targets,)
    """

    def __init__(self, estimator=None, center=0.0, scale=1.0):
        self.estimator = estimator
        self.center = center
        self.scale = scale

    def fit(self, X, y):
        """Fit ``estimator`` on ``(X, y)``; ``center`` and ``scale`` stay as given."""
        self.estimator.fit(X, y)
        return self

    def predict(self, X):
        """``center + scale * (estimator.predict(X) - center)``."""
        out = np.asarray(self.estimator.predict(X), dtype=np.float64)
        c = np.asarray(self.center, dtype=np.float64)
        return c + np.asarray(self.scale, dtype=np.float64) * (out - c)


#: Scales tried by :func:`concordant_scale`: none (0), the identity (1), and
#: a geometric grid from 0.05 to 20.
SCALE_GRID = np.unique(np.concatenate([[0.0, 1.0], np.geomspace(0.05, 20.0, 241)]))


def concordant_scale(y, pred, center) -> tuple[float, float]:
    """The scale of ``pred``'s deviations that maximises the mean of R² and CCC.

    Parameters
    ----------
    y, pred : array_like, shape (n,)
        Truth and out-of-fold predictions of training rows.
    center : float
        What deviations are measured from (the training mean).

    Returns
    -------
    scale : float
        From :data:`SCALE_GRID` (the first best).
    score : float
        ``(R² + CCC) / 2`` of ``center + scale * (pred - center)``.
    """
    y = np.asarray(y, dtype=np.float64).ravel()
    d = np.asarray(pred, dtype=np.float64).ravel() - center
    P = center + SCALE_GRID[:, None] * d[None, :]  # (n_scales, n)
    resid = ((y[None, :] - P) ** 2).sum(axis=1)
    ss = ((y - y.mean()) ** 2).sum()
    r2 = 1.0 - resid / ss if ss > 0 else np.zeros(len(SCALE_GRID))
    pm = P.mean(axis=1)
    cov = ((y - y.mean())[None, :] * (P - pm[:, None])).mean(axis=1)
    den = y.var() + P.var(axis=1) + (y.mean() - pm) ** 2
    ccc = np.divide(2.0 * cov, den, out=np.zeros_like(den), where=den > 0)
    score = (r2 + ccc) / 2.0
    best = int(np.argmax(score))
    return float(SCALE_GRID[best]), float(score[best])


@dataclass(frozen=True)
class RegressionPreset:
    """One regression model and the grid its hyper-parameters are chosen from.

    Attributes
    ----------
    key : str
        Command-line key.
    name : str
        Display name.
    params : dict
        Human-readable fixed parameters.
    build : callable
        ``build(seed) -> estimator`` (unfitted, without scaling).
    grid : dict
        Model parameter -> candidate values, searched inside the training
        folds (empty: nothing tuned).
    reduce : bool
        Wide inputs reach the model as their leading principal components.
    multi_output : bool
        One model predicts every target column (always fit jointly).
    rescale : bool
        The tuned model's deviations from the training mean are scaled by
        the factor that maximises the mean of R² and CCC of its inner
        out-of-fold predictions (:class:`Rescaled`, :func:`concordant_scale`).
    """

    key: str
    name: str
    params: dict[str, Any]
    build: Callable[[int], BaseEstimator] = field(repr=False)
    grid: dict[str, tuple] = field(default_factory=dict)
    reduce: bool = False
    multi_output: bool = False
    rescale: bool = False

    def pipeline(self, seed: int = 0) -> Pipeline:
        """Unfitted pipeline: ``scale``, ``reduce`` (presets with it), ``model``."""
        reduce = [("reduce", WideInputPCA())] if self.reduce else []
        return Pipeline([("scale", StandardScaler()), *reduce, ("model", self.build(seed))])


_PRESETS = [
    RegressionPreset("ridge", "Ridge Regression", {"penalty": "l2"},
                     lambda seed: Ridge(alpha=1.0),
                     {"alpha": (1.0, 10.0, 100.0, 1e3, 1e4, 1e5)}),
    RegressionPreset("gaussian-svr", "Gaussian SVR",
                     {"kernel": "gaussian", "kernel_scale": "scale_factor * sqrt(P)",
                      "epsilon": "0.1 target std"},
                     lambda seed: ScaledGaussianSVR(),
                     {"scale_factor": (1.0, 4.0), "C": (0.1, 1.0, 10.0)}),
    RegressionPreset("knn", "KNN Regression", {"distance": "euclidean", "weight": "equal"},
                     lambda seed: KNeighborsRegressor(n_neighbors=10),
                     {"n_neighbors": (5, 10, 20, 40)}),
    RegressionPreset("bagged-trees", "Bagged Trees Regression",
                     {"learners": 50, "predictors_per_split": "P/3"},
                     lambda seed: RandomForestRegressor(n_estimators=50, max_features=1 / 3,
                                                        random_state=seed, n_jobs=1),
                     {"min_samples_leaf": (1, 5)}),
    RegressionPreset("hist-gradient-boosting", "Histogram Gradient Boosting Regression",
                     {"max_iter": 100, "early_stopping": False, **WIDE_PARAMS},
                     lambda seed: HistGradientBoostingRegressor(max_iter=100, early_stopping=False,
                                                                random_state=seed),
                     {"learning_rate": (0.03, 0.1), "max_leaf_nodes": (7, 31)}, reduce=True),
    RegressionPreset("pls", "Partial Least Squares", {"scale": "by the pipeline"},
                     lambda seed: PLSRegression(n_components=2, scale=False),
                     {"n_components": (1, 2, 4, 8, 16)}),
    RegressionPreset("ridge-rescaled", "Ridge Regression, rescaled in the training folds",
                     {"penalty": "l2", "scale": "max (R² + CCC) / 2 of the inner out-of-fold predictions"},
                     lambda seed: Ridge(alpha=1.0),
                     {"alpha": (1.0, 10.0, 100.0, 1e3, 1e4, 1e5)}, rescale=True),
    RegressionPreset("softmax-shares", "Soft-label Multinomial Logistic Regression",
                     {"output": "softmax: shares that sum to 1", "loss": "soft-label cross-entropy"},
                     lambda seed: SoftmaxShares(),
                     {"C": (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)}, multi_output=True),
]

#: Regression presets by key, in display order.
REGRESSION_PRESETS: dict[str, RegressionPreset] = {p.key: p for p in _PRESETS}


def resolve_regression_presets(names) -> list[RegressionPreset]:
    """Presets for a list of keys (``"all"``: every one), duplicates removed.

    Raises
    ------
    EmodistError
        An unknown key (parameter ``classifiers``); the message lists the keys.
    """
    return pick_presets(names, REGRESSION_PRESETS, "regression model")


def pick_presets(names, table: dict, what: str) -> list:
    """Presets of ``table`` for a list of keys (``"all"``: every one), duplicates removed.

    Raises
    ------
    EmodistError
        An unknown key (parameter ``classifiers``; the message names ``what``
        and lists the keys) or no key at all.
    """
    names = [names] if isinstance(names, str) else list(names)
    out: list = []
    for n in names:
        key = str(n).strip().lower()
        if key == "all":
            picks = list(table.values())
        elif key in table:
            picks = [table[key]]
        else:
            raise EmodistError(f"unknown {what} {n!r}; choose from {', '.join(table)}", param="classifiers")
        out.extend(p for p in picks if p not in out)
    if not out:
        raise EmodistError(f"no {what} given", param="classifiers")
    return out


def make_search(pipeline: Pipeline, grid: dict, groups, *, inner_folds: int = INNER_FOLDS,
                seed: int = 0, scoring="r2"):
    """The in-fold hyper-parameter search of one training part.

    Parameters
    ----------
    pipeline : sklearn.pipeline.Pipeline
        Unfitted pipeline whose last step is ``model``.
    grid : dict
        ``model`` parameter -> candidates (empty: the pipeline itself).
    groups : array_like
        Group of each training row.
    inner_folds : int
        Grouped inner folds (fewer when the training part has fewer groups).
    seed : int
        Shuffling seed of the inner :class:`~sklearn.model_selection.GroupKFold`.
    scoring : str or callable
        What the search maximises.

    Returns
    -------
    estimator
        A :class:`~sklearn.model_selection.GridSearchCV` (fit it with
        ``groups=``) or, without a grid, ``pipeline``.
    """
    if not grid:
        return pipeline
    return GridSearchCV(pipeline, {f"model__{k}": list(v) for k, v in grid.items()},
                        cv=_inner_cv(groups, inner_folds, seed), scoring=scoring, refit=True,
                        n_jobs=1, error_score=np.nan)


def _inner_cv(groups, inner_folds: int, seed: int) -> GroupKFold:
    n_groups = len(np.unique(np.asarray(groups)))
    return GroupKFold(n_splits=min(inner_folds, n_groups), shuffle=True, random_state=seed)


def _rescale(model, X, y, groups, *, inner_folds: int, seed: int):
    """``model`` (fitted, tuned) wrapped in :class:`Rescaled`, its scale chosen in-fold.

    The inner folds are the search's; the out-of-fold predictions come from
    clones of the tuned pipeline, fit on the other inner folds.
    """
    oof = cross_val_predict(clone(model), X, y, groups=groups, cv=_inner_cv(groups, inner_folds, seed))
    y2, oof2 = y.reshape(len(y), -1), np.asarray(oof, dtype=np.float64).reshape(len(y), -1)
    center = y2.mean(axis=0)
    scale = np.array([concordant_scale(y2[:, j], oof2[:, j], center[j])[0] for j in range(y2.shape[1])])
    if y.ndim == 1:
        center, scale = float(center[0]), float(scale[0])
    return Rescaled(model, center, scale), scale


def _fit(search, X, y, groups):
    if isinstance(search, GridSearchCV):
        search.fit(X, y, groups=groups)
        chosen = {k.removeprefix("model__"): v for k, v in search.best_params_.items()}
        return search, chosen
    return search.fit(X, y), {}


@dataclass
class RegressionRun:
    """Out-of-fold predictions of one preset.

    Attributes
    ----------
    preset : str
        Preset key.
    pred : numpy.ndarray, shape (n, n_targets)
        Each row predicted by the model of the fold that held it out.
    chosen : list of list of dict
        ``chosen[fold][target]``: the hyper-parameters the inner search
        picked (one dict per fold with ``joint``).
    """

    preset: str
    pred: np.ndarray
    chosen: list[list[dict]]


def cross_val_regression(X, Y, groups, folds, *, preset: RegressionPreset | str, seed: int = 0,
                         inner_folds: int = INNER_FOLDS, joint: bool = False) -> RegressionRun:
    """Out-of-fold predictions of every target column, tuned inside the training folds.

    Parameters
    ----------
    X : numpy.ndarray, shape (n, p)
    Y : numpy.ndarray, shape (n, n_targets) or (n,)
    groups : array_like, shape (n,)
        Group of each row (inner folds never split one).
    folds : array_like of int, shape (n,)
        Outer test fold of each row (:func:`emodist.learn.folds.make_folds`).
    preset : RegressionPreset or str
    seed : int
        Random state of the models and the inner folds.
    inner_folds : int
        Grouped inner folds of the search.
    joint : bool
        One search and model for all columns (multi-output models: ridge,
        KNN, bagged trees, PLS; the search maximises the mean R²) instead of
        one per column.  Multi-output presets (``softmax-shares``) are
        always fit jointly.

    Returns
    -------
    RegressionRun
    """
    p = resolve_regression_presets([preset])[0] if isinstance(preset, str) else preset
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    Y2 = Y[:, None] if Y.ndim == 1 else Y
    joint = joint or p.multi_output
    groups, folds = np.asarray(groups), np.asarray(folds)
    pred = np.full(Y2.shape, np.nan)
    chosen: list[list[dict]] = []
    for k in np.unique(folds):
        train, test = folds != k, folds == k
        models, picks = fit_columns(X[train], Y2[train], groups[train], preset=p, seed=seed,
                                    inner_folds=inner_folds, joint=joint)
        with threadpool_limits(1):
            for j, model in enumerate(models):
                out = np.asarray(model.predict(X[test]), dtype=np.float64)
                pred[test, slice(None) if joint else j] = (out.reshape(int(test.sum()), -1) if joint
                                                          else out.ravel())
        chosen.append(picks)
    return RegressionRun(p.key, pred if Y.ndim == 2 else pred[:, 0], chosen)


def fit_columns(X, Y, groups, *, preset: RegressionPreset, seed: int = 0,
                inner_folds: int = INNER_FOLDS, joint: bool = False) -> tuple[list, list[dict]]:
    """Tune and fit the preset on training rows: one model per target column (or one for all).

    Parameters
    ----------
    X : numpy.ndarray, shape (n, p)
    Y : numpy.ndarray, shape (n, n_targets)
    groups : array_like, shape (n,)
        Group of each row (the inner search's folds never split one).
    preset : RegressionPreset
    seed, inner_folds : int
    joint : bool
        One model for all columns (always for multi-output presets).

    Returns
    -------
    models : list of sklearn.pipeline.Pipeline or Rescaled
        The refit pipeline of each column (one with ``joint``); wrapped in
        :class:`Rescaled` for presets with ``rescale``.
    chosen : list of dict
        The hyper-parameters the search picked for each (and ``scale``,
        the chosen scale, for presets with ``rescale``).

    Raises
    ------
    EmodistError
        A multi-output preset given targets that are not non-negative
        shares of two or more columns (parameter ``classifiers``).
    """
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    groups = np.asarray(groups)
    if preset.multi_output:
        if Y.ndim != 2 or Y.shape[1] < 2 or not np.isfinite(Y).all() or (Y < 0).any():
            raise EmodistError(f"{preset.key} predicts non-negative shares of two or more columns "
                               "(--target shares); pick another model for these targets",
                               param="classifiers")
        joint = True
    models, picks = [], []
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore")
        for j in [slice(None)] if joint else range(Y.shape[1]):
            search = make_search(preset.pipeline(seed), preset.grid, groups,
                                 inner_folds=inner_folds, seed=seed)
            model, best = _fit(search, X, Y[:, j], groups)
            model = getattr(model, "best_estimator_", model)
            if preset.rescale:
                model, scale = _rescale(model, X, Y[:, j], groups, inner_folds=inner_folds, seed=seed)
                best = {**best, "scale": scale.tolist() if joint else float(scale)}
            models.append(model)
            picks.append(best)
    return models, picks


# --------------------------------------------------------------------------
# Scores.
# --------------------------------------------------------------------------


def concordance(y_true, y_pred) -> float:
    """Lin's concordance correlation coefficient.

    ``2 cov(y, p) / (var(y) + var(p) + (mean(y) - mean(p))^2)`` with
    population moments; 1 for perfect agreement, 0 for a constant
    prediction, NaN when both are constant.
    """
    y = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(y_pred, dtype=np.float64).ravel()
    my, mp = y.mean(), p.mean()
    cov = np.mean((y - my) * (p - mp))
    den = y.var() + p.var() + (my - mp) ** 2
    return float(2.0 * cov / den) if den > 0 else float("nan")


def _corr(fn, y, p) -> float:
    if np.ptp(y) == 0 or np.ptp(p) == 0 or len(y) < 2:
        return float("nan")
    return float(fn(y, p)[0])


def regression_scores(y_true, y_pred) -> dict[str, float]:
    """R², RMSE, Pearson r, Spearman rho and CCC of one target column.

    Correlations are NaN when either side is constant (the train-mean
    baseline within a fold).
    """
    y = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(y_pred, dtype=np.float64).ravel()
    return {
        "r2": float(r2_score(y, p)),
        "rmse": float(np.sqrt(mean_squared_error(y, p))),
        "pearson": _corr(pearsonr, y, p),
        "spearman": _corr(spearmanr, y, p),
        "ccc": concordance(y, p),
    }


def track_means(Y, P, folds, tracks):
    """Track-level truth, prediction and fold: means over each track's segments.

    Returns
    -------
    keys : numpy.ndarray
        Tracks in first-appearance order.
    Yt, Pt : numpy.ndarray, shape (n_tracks, n_targets)
    ft : numpy.ndarray of int, shape (n_tracks,)
    """
    keys, Yt = mean_proba(np.asarray(Y, dtype=np.float64).reshape(len(folds), -1), tracks)
    _, Pt = mean_proba(np.asarray(P, dtype=np.float64).reshape(len(folds), -1), tracks)
    _, ft = mean_proba(np.asarray(folds, dtype=np.float64)[:, None], tracks)
    return keys, Yt, Pt, ft[:, 0].astype(np.int64)


def _level_scores(Y, P, folds, names) -> dict:
    out = {}
    for j, name in enumerate(names):
        per_fold = [regression_scores(Y[folds == k, j], P[folds == k, j]) for k in np.unique(folds)]
        pooled = regression_scores(Y[:, j], P[:, j])
        out[name] = {m: {**fold_summary([f[m] for f in per_fold]), "pooled": pooled[m]}
                     for m in REGRESSION_METRICS}
    out["mean"] = {m: float(np.mean([out[n][m]["mean"] for n in names])) for m in REGRESSION_METRICS}
    return out


def regression_metrics(Y, P, folds, tracks, names) -> dict:
    """Scores of out-of-fold predictions per target, segment and track level.

    Parameters
    ----------
    Y, P : array_like, shape (n, n_targets)
        Truth and out-of-fold predictions.
    folds : array_like of int, shape (n,)
    tracks : array_like, shape (n,)
        Track of each row (a track lies in one fold).
    names : sequence of str
        Target names.

    Returns
    -------
    dict
        ``{"segment": ..., "track": ...}``; each maps a target name to
        ``{metric: {"mean", "std", "folds", "pooled"}}`` for the metrics of
        :data:`REGRESSION_METRICS` (fold mean, population std, per-fold
        values, pooled over all rows), plus ``"mean"``: each metric's fold
        mean averaged over the targets.
    """
    names = list(names)
    folds = np.asarray(folds)
    Y = np.asarray(Y, dtype=np.float64).reshape(len(folds), -1)
    P = np.asarray(P, dtype=np.float64).reshape(len(folds), -1)
    _, Yt, Pt, ft = track_means(Y, P, folds, tracks)
    return {"segment": _level_scores(Y, P, folds, names), "track": _level_scores(Yt, Pt, ft, names)}


def scatter_figure(y_true, y_pred, *, name: str, scores: dict | None = None):
    """Predicted-vs-true scatter of one target, with the identity line.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure  # plotting only: keeps matplotlib off the import path

    y = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    fig = Figure(figsize=(4.2, 4.0), layout="constrained")
    ax = fig.add_subplot()
    ax.scatter(y, p, s=10, alpha=0.6)
    lo, hi = float(min(y.min(), p.min())), float(max(y.max(), p.max()))
    ax.plot([lo, hi], [lo, hi], color="0.5", linewidth=1, linestyle="--")
    ax.set_xlabel(f"true {name}")
    ax.set_ylabel(f"predicted {name}")
    if scores:
        ax.set_title(f"{name}: R² {scores['r2']:.2f}, CCC {scores['ccc']:.2f}", fontsize=10)
    return fig


def evaluate_regression(X, Y, *, names, groups, folds, tracks=None, presets=("ridge",),
                        seed: int = 0, inner_folds: int = INNER_FOLDS, joint: bool = False,
                        plots_dir: str | Path | None = None) -> dict:
    """Every preset's out-of-fold scores beside the training-mean baseline.

    Parameters
    ----------
    X : numpy.ndarray, shape (n, p)
    Y : numpy.ndarray, shape (n, n_targets)
    names : sequence of str
        Target names.
    groups : array_like, shape (n,)
        Group of each row (the inner folds' groups).
    folds : array_like of int, shape (n,)
        Outer folds; a group never spans two.
    tracks : array_like, optional
        Track of each row, for the track level (default ``groups``).
    presets : sequence of str
        Regression preset keys (:data:`REGRESSION_PRESETS`).
    seed : int
    inner_folds : int
    joint : bool
        See :func:`cross_val_regression`.
    plots_dir : path, optional
        Where to write ``scatter_<preset>_<target>.png`` (segment level).

    Returns
    -------
    dict
        ``targets``, ``baseline`` (metrics of the training mean), ``results``
        (per preset: ``preset``, ``metrics``, ``chosen``), best mean
        segment R² first.
    """
    Y = np.asarray(Y, dtype=np.float64).reshape(len(folds), -1)
    tracks = groups if tracks is None else tracks
    results = []
    for p in resolve_regression_presets(presets):
        run = cross_val_regression(X, Y, groups, folds, preset=p, seed=seed,
                                   inner_folds=inner_folds, joint=joint)
        metrics = regression_metrics(Y, run.pred, folds, tracks, names)
        results.append({"preset": p.key, "name": p.name, "grid": {k: list(v) for k, v in p.grid.items()},
                        "metrics": metrics, "chosen": run.chosen, "pred": run.pred})
        if plots_dir is not None:
            Path(plots_dir).mkdir(parents=True, exist_ok=True)
            for j, name in enumerate(names):
                pooled = {m: metrics["segment"][name][m]["pooled"] for m in REGRESSION_METRICS}
                fig = scatter_figure(Y[:, j], run.pred[:, j], name=f"{name} ({p.key})", scores=pooled)
                fig.savefig(Path(plots_dir) / f"scatter_{p.key}_{name}.png", dpi=110)
    results.sort(key=lambda r: -r["metrics"]["segment"]["mean"]["r2"])
    base = train_mean_baseline(Y, folds)
    return {"targets": list(names), "baseline": regression_metrics(Y, base, folds, tracks, names),
            "results": results}
