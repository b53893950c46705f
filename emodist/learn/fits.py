"""One fit of a cross-validation: the task function the evaluation driver runs.

The functions are module-level and take plain arrays, so that :mod:`joblib`
and Dask can ship them to other processes.  Each is seeded and limited to one
native thread, so its result does not depend on where or when it runs.  The
distribution target's task is
:func:`emodist.learn.distribution.fit_predict_distribution`.  Soft targets
and groups reach the presets that need them (:attr:`Preset.fit_params
<emodist.learn.presets.Preset>`) through :func:`fit_params`.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.utils.class_weight import compute_sample_weight
from threadpoolctl import threadpool_limits

from emodist.learn.cv import aligned_proba
from emodist.learn.presets import get_preset, make_pipeline


def set_classes(model, classes) -> None:
    """Set every ``classes`` parameter of ``model`` (the soft-target columns)."""
    keys = [k for k in model.get_params(deep=True) if k == "classes" or k.endswith("__classes")]
    if keys:
        model.set_params(**{k: list(classes) for k in keys})


def fit_params(preset, train, y, *, weights: bool, soft=None, groups=None) -> dict:
    """Fit parameters (``model__*``) of a preset's pipeline on the rows ``train``."""
    kw = {}
    if weights:
        kw["model__sample_weight"] = compute_sample_weight("balanced", y[train])
    if "soft" in preset.fit_params:
        if soft is None:
            raise ValueError(f"{preset.name} learns from vote shares; the store keeps no votes")
        kw["model__soft"] = soft[train]
    if "groups" in preset.fit_params and groups is not None:
        kw["model__groups"] = np.asarray(groups)[train]
    return kw


def fit_predict_proba(X, y, folds, fold: int, preset_key: str, seed: int, weights: bool,
                      soft=None, groups=None, classes=None):
    """:func:`fit_predict`, with the test rows' class probabilities where the model has them.

    Parameters
    ----------
    X, y, folds, fold, preset_key, seed, weights
        As in :func:`fit_predict`.
    soft : numpy.ndarray, optional
        Vote shares of every sample, columns ``classes`` (presets that
        learn from them).
    groups : numpy.ndarray, optional
        Group of every sample (presets with a grouped inner CV get the
        training rows' groups).
    classes : sequence of str, optional
        Class order of ``soft`` and of the returned probabilities (default:
        sorted labels).

    Returns
    -------
    predictions : numpy.ndarray of object
        For the samples of ``fold``.
    proba : numpy.ndarray, shape (n_test, len(classes)), or None
        ``None`` for a model without ``predict_proba`` (SVMs).
    """
    train, test = folds != fold, folds == fold
    preset = get_preset(preset_key)
    classes = list(np.unique(y)) if classes is None else list(classes)
    model = make_pipeline(preset, seed)
    set_classes(model, classes)
    kw = fit_params(preset, train, y, weights=weights, soft=soft, groups=groups)
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore")
        model.fit(X[train], y[train], **kw)
        pred = np.asarray(model.predict(X[test]), dtype=object)
        proba = aligned_proba(model, X[test], classes) if hasattr(model, "predict_proba") else None
    return pred, proba


def fit_predict(X, y, folds, fold: int, preset_key: str, seed: int, weights: bool) -> np.ndarray:
    """Fit a preset on every fold but ``fold`` and predict ``fold``.

    Parameters
    ----------
    X : numpy.ndarray
        All samples.
    y : numpy.ndarray
        All labels.
    folds : numpy.ndarray
        Fold of each sample.
    fold : int
        Held-out fold.
    preset_key : str
        Classifier preset.
    seed : int
        Random state of the model.
    weights : bool
        Weight training samples inversely to their class frequency.

    Returns
    -------
    numpy.ndarray
        Predictions for the samples of ``fold``, in sample order.

    Notes
    -----
    Native thread pools (OpenMP, BLAS) are limited to one thread: the
    parallelism is across tasks, and a task that spreads over every core of
    a busy machine runs many times slower.
    """
    train, test = folds != fold, folds == fold
    model = make_pipeline(preset_key, seed)
    kw = fit_params(get_preset(preset_key), train, y, weights=weights)
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore")
        model.fit(X[train], y[train], **kw)
        return np.asarray(model.predict(X[test]), dtype=object)


@dataclass(frozen=True)
class FitFailure:
    """A preset that could not be fit on a fold (too few samples for it...)."""

    message: str


def fit_predict_or_failure(**kwargs):
    """:func:`fit_predict_proba`, returning a :class:`FitFailure` instead of raising.

    Some presets cannot be fit on some data (a discriminant on fewer samples
    than classes, ...); that preset is reported as failed and the others
    still run.
    """
    try:
        return fit_predict_proba(**kwargs)
    except (ValueError, np.linalg.LinAlgError) as exc:
        text = str(exc).strip().splitlines()
        return FitFailure(f"{type(exc).__name__}: {text[0] if text else ''}")


def fit_on_set(Xs, x_index: int, **kwargs):
    """:func:`fit_predict_or_failure` on the feature set ``Xs[x_index]``, and its seconds.

    The task of an evaluation that sends every feature set's fits to the
    executor at once (:mod:`emodist.learn.schedule`).

    Parameters
    ----------
    Xs : sequence of numpy.ndarray
        The matrix of every feature set (shared by all tasks).
    x_index : int
        Position of this fit's feature set in ``Xs``.
    **kwargs
        The other arguments of :func:`fit_predict_proba`.

    Returns
    -------
    result : tuple or FitFailure
        What :func:`fit_predict_or_failure` returns.
    seconds : float
        Wall seconds of the fit.
    """
    t0 = time.perf_counter()
    result = fit_predict_or_failure(X=Xs[x_index], **kwargs)
    return result, time.perf_counter() - t0
