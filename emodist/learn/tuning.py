"""Soft-label logistic regression whose strength ``C`` is chosen inside the training rows.

:class:`InFoldSoftLogisticRegression` picks ``C`` from a grid by an inner
cross-validation on the rows ``fit`` is given -- in an outer evaluation
that is the training folds only, so the held-out fold never influences the
choice.  The inner folds are grouped when ``groups`` is passed (pass the
training rows' track or group; inside a pipeline
``pipe.fit(X, y, model__soft=Y, model__groups=g)``), and the inner score is
the mean Jensen-Shannon divergence between each row's soft target and its
out-of-fold predicted distribution, averaged over the row's group first when
``group_mean`` (the way the distribution target scores a test track).
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from emodist.learn.cv import inner_splitter
from emodist.learn.metrics import jensen_shannon, spread_track_mean
from emodist.learn.soft import SoftLogisticRegression, _resolve_targets

#: Default grid of ``C`` values.
C_GRID = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)


class InFoldSoftLogisticRegression(ClassifierMixin, BaseEstimator):
    """:class:`~emodist.learn.soft.SoftLogisticRegression` with ``C`` tuned by inner CV.

    Parameters
    ----------
    Cs : sequence of float
        Candidate inverse L2 strengths.
    cv : int
        Inner folds (reduced when there are fewer groups).
    group_mean : bool
        Score the inner out-of-fold distributions after averaging them over
        each group (needs ``groups``).
    classes : sequence, optional
        Labels of the soft-target columns (see :mod:`emodist.learn.soft`).
    random_state : int or None
        Seed of the inner folds.

    Attributes
    ----------
    C_ : float
        The chosen ``C``.
    inner_jsd_ : dict
        ``C`` -> inner mean JSD.
    estimator_ : SoftLogisticRegression
        Refit with ``C_`` on every row.
    classes_ : numpy.ndarray
    """

    def __init__(self, Cs=C_GRID, *, cv: int = 4, group_mean: bool = True, classes=None,
                 random_state=0):
        self.Cs = Cs
        self.cv = cv
        self.group_mean = group_mean
        self.classes = classes
        self.random_state = random_state

    def fit(self, X, y, *, soft=None, groups=None):
        """Choose ``C`` by inner cross-validation, then refit on all rows.

        Parameters
        ----------
        X : array_like, shape (n, d)
        y : array_like, shape (n,)
            Hard labels (inner stratification; one-hot targets without ``soft``).
        soft : array_like, shape (n, k), optional
            Vote shares, columns ``classes``.
        groups : array_like, shape (n,), optional
            Group of each row: inner folds never split one.

        Returns
        -------
        self
        """
        X, y = np.asarray(X, dtype=np.float64), np.asarray(y)
        self.classes_, Y = _resolve_targets(self.classes, y, soft, len(X))
        splitter, _ = inner_splitter(y, groups, self.cv, self.random_state)
        splits = list(splitter.split(X, y, groups))
        voted = Y.sum(axis=1) > 0
        self.inner_jsd_ = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for C in self.Cs:
                oof = np.zeros_like(Y)
                for tr, te in splits:
                    model = SoftLogisticRegression(C=C, classes=self.classes_)
                    oof[te] = model.fit(X[tr], y[tr], soft=Y[tr]).predict_proba(X[te])
                if self.group_mean and groups is not None:
                    oof = spread_track_mean(oof, groups)
                self.inner_jsd_[float(C)] = float(jensen_shannon(Y[voted], oof[voted]).mean())
        self.C_ = min(self.inner_jsd_, key=self.inner_jsd_.get)
        self.estimator_ = SoftLogisticRegression(C=self.C_, classes=self.classes_).fit(X, y, soft=Y)
        self.n_features_in_ = X.shape[1]
        return self

    def predict_proba(self, X):
        """Class probabilities, shape (n, k), columns ``classes_``."""
        check_is_fitted(self, "estimator_")
        return self.estimator_.predict_proba(X)

    def predict(self, X):
        """Most probable class, shape (n,)."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
