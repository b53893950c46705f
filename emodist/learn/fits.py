"""One fit of a cross-validation: the task function the evaluation driver runs.

The functions are module-level and take plain arrays, so that :mod:`joblib`
and Dask can ship them to other processes.  Each is seeded and limited to one
native thread, so its result does not depend on where or when it runs.  The
distribution target's task is
:func:`emodist.learn.distribution.fit_predict_distribution`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.utils.class_weight import compute_sample_weight
from threadpoolctl import threadpool_limits

from emodist.learn.presets import make_pipeline


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
    kw = {}
    if weights:
        kw["model__sample_weight"] = compute_sample_weight("balanced", y[train])
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore")
        model.fit(X[train], y[train], **kw)
        return np.asarray(model.predict(X[test]), dtype=object)


@dataclass(frozen=True)
class FitFailure:
    """A preset that could not be fit on a fold (too few samples for it...)."""

    message: str


def fit_predict_or_failure(**kwargs):
    """:func:`fit_predict`, returning a :class:`FitFailure` instead of raising.

    Some presets cannot be fit on some data (a discriminant on fewer samples
    than classes, ...); that preset is reported as failed and the others
    still run.
    """
    try:
        return fit_predict(**kwargs)
    except (ValueError, np.linalg.LinAlgError) as exc:
        text = str(exc).strip().splitlines()
        return FitFailure(f"{type(exc).__name__}: {text[0] if text else ''}")
