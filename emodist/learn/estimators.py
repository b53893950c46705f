"""Small scikit-learn estimators the MATLAB presets need and scikit-learn lacks.

* :func:`squared_inverse`: MATLAB's ``'squaredinverse'`` KNN distance weight;
* :class:`ScaledGaussianSVC`: a Gaussian SVM whose kernel scale follows
  MATLAB's convention (a multiple of ``sqrt(P)``);
* :class:`ClippedKNN`: KNN that never asks for more neighbours than there are
  training samples (MATLAB's coarse KNN on a small fold);
* :class:`RUSBoostClassifier`: AdaBoost (SAMME) with random under-sampling
  per round, as MATLAB's ``'RUSBoost'`` ensemble.

The presets that use them are in :mod:`emodist.learn.presets`.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.neighbors import KNeighborsClassifier
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier
from sklearn.utils.validation import check_is_fitted


def squared_inverse(distances: np.ndarray) -> np.ndarray:
    """MATLAB's ``'squaredinverse'`` distance weight ``1 / d^2``.

    Parameters
    ----------
    distances : numpy.ndarray
        Neighbour distances, any shape.

    Returns
    -------
    numpy.ndarray
        Weights of the same shape; a zero distance gets a very large weight.
    """
    d = np.asarray(distances, dtype=np.float64)
    return 1.0 / np.maximum(d * d, 1e-12)


class ScaledGaussianSVC(ClassifierMixin, BaseEstimator):
    """Gaussian-kernel SVM whose kernel scale follows MATLAB's convention.

    Parameters
    ----------
    scale_factor : float
        Kernel scale as a multiple of ``sqrt(P)`` (``P`` = number of
        predictors): 0.25 fine, 1 medium, 4 coarse.
    C : float
        Box constraint.
    """

    def __init__(self, scale_factor: float = 1.0, C: float = 1.0):
        self.scale_factor = scale_factor
        self.C = C

    def fit(self, X, y, sample_weight=None):
        """Fit with ``gamma = 1 / (scale_factor^2 * P)``."""
        X = np.asarray(X)
        gamma = 1.0 / (self.scale_factor**2 * X.shape[1])
        self.svc_ = SVC(kernel="rbf", C=self.C, gamma=gamma).fit(X, y, sample_weight=sample_weight)
        self.classes_ = self.svc_.classes_
        return self

    def predict(self, X):
        """Predicted class labels."""
        check_is_fitted(self, "svc_")
        return self.svc_.predict(X)

    def decision_function(self, X):
        """One-vs-one decision values."""
        check_is_fitted(self, "svc_")
        return self.svc_.decision_function(X)


class ClippedKNN(KNeighborsClassifier):
    """KNN that uses at most as many neighbours as training samples.

    MATLAB's coarse KNN asks for 100 neighbours; on a small training fold
    that is more than there are samples, so the fit uses ``min(k, n)``.
    """

    def fit(self, X, y):
        """Fit, clipping the neighbour count to the training-set size."""
        with self._clipped(len(X)):
            super().fit(X, y)
        self.n_neighbors_used_ = min(self.n_neighbors, len(X))
        return self

    @contextmanager
    def _clipped(self, n: int | None = None):
        requested = self.n_neighbors
        self.n_neighbors = min(requested, n if n is not None else self.n_neighbors_used_)
        try:
            yield
        finally:
            self.n_neighbors = requested

    def predict(self, X):
        """Predicted class labels."""
        with self._clipped():
            return super().predict(X)

    def predict_proba(self, X):
        """Class probabilities from the (clipped) neighbourhood."""
        with self._clipped():
            return super().predict_proba(X)


class RUSBoostClassifier(ClassifierMixin, BaseEstimator):
    """RUSBoost: AdaBoost (SAMME) with random under-sampling per round.

    Each round draws, without replacement, as many training samples from
    every class as the smallest class holds, fits a depth-limited tree on
    that balanced subset (with the current boosting weights), and reweights
    all training samples by the tree's errors (Seiffert et al., 2010; the
    method MATLAB's ``'RUSBoost'`` ensemble implements).

    Parameters
    ----------
    n_estimators : int
        Boosting rounds.
    learning_rate : float
        Shrinkage of each round's vote.
    max_leaf_nodes : int
        Leaves per tree (MATLAB's "maximum number of splits" + 1).
    random_state : int or None
        Seed of the under-sampling.
    """

    def __init__(self, n_estimators=30, learning_rate=0.1, max_leaf_nodes=21, random_state=None):
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.random_state = random_state

    def fit(self, X, y, sample_weight=None):
        """Fit the boosted ensemble."""
        X = np.asarray(X)
        y = np.asarray(y)
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        k = len(self.classes_)
        rng = np.random.default_rng(self.random_state)
        w = np.full(len(y), 1.0 / len(y)) if sample_weight is None else np.asarray(sample_weight, float)
        w = w / w.sum()
        per_class = [np.flatnonzero(y_idx == c) for c in range(k)]
        n_min = min(len(p) for p in per_class)
        self.estimators_, self.estimator_weights_ = [], []
        for _ in range(self.n_estimators):
            sub = np.concatenate([rng.choice(p, n_min, replace=False) for p in per_class])
            tree = DecisionTreeClassifier(
                max_leaf_nodes=self.max_leaf_nodes, random_state=int(rng.integers(2**31))
            )
            tree.fit(X[sub], y_idx[sub], sample_weight=w[sub] / w[sub].sum())
            wrong = tree.predict(X) != y_idx
            err = float(np.clip(np.sum(w[wrong]), 1e-10, None))
            if err >= 1.0 - 1.0 / k:
                if not self.estimators_:
                    self.estimators_.append(tree)
                    self.estimator_weights_.append(1.0)
                break
            alpha = self.learning_rate * (np.log((1.0 - err) / err) + np.log(k - 1.0))
            self.estimators_.append(tree)
            self.estimator_weights_.append(alpha)
            w = w * np.exp(alpha * wrong)
            w = w / w.sum()
        return self

    def decision_function(self, X):
        """Weighted votes of the rounds, one column per class."""
        check_is_fitted(self, "estimators_")
        X = np.asarray(X)
        votes = np.zeros((len(X), len(self.classes_)))
        rows = np.arange(len(X))
        for tree, alpha in zip(self.estimators_, self.estimator_weights_):
            votes[rows, tree.predict(X)] += alpha
        return votes

    def predict(self, X):
        """Class with the largest weighted vote."""
        return self.classes_[np.argmax(self.decision_function(X), axis=1)]
