"""Classifiers trained on each sample's listener vote distribution.

The dominant emotion throws away most of what the listeners said: a segment
with 40% calmness and 35% nostalgia is taught as "calmness" exactly like one
with 90%.  The estimators here learn from the vote distribution (the *soft
target*) and still predict the dominant emotion.

How soft targets are passed
---------------------------
Every estimator here follows one convention::

    est.fit(X, y, soft=Y)         # Y: (n, k) vote shares, columns = est.classes
    est.fit(X, y)                 # no soft targets: one-hot of y (plain training)

``y`` (the hard labels) stays the positional target so that scikit-learn
splitters, scorers and meta-estimators keep working; ``soft`` is a keyword
fit parameter, routed through a :class:`~sklearn.pipeline.Pipeline` as
``pipe.fit(X, y, model__soft=Y)``.  The columns of ``Y`` are the labels given
by the ``classes`` parameter; with ``classes=None`` they are the sorted
unique labels of ``y`` (and ``Y`` must have that many columns).  Rows of
``Y`` are renormalised to sum 1; an all-zero row carries no weight.
:func:`soft_targets` cuts a nine-way GEMS distribution down to the kept
classes.

Two estimators:

* :class:`SoftLabelClassifier` wraps any classifier that accepts
  ``sample_weight``: each sample is repeated once per class with weight equal
  to its vote share (zero shares are dropped).
* :class:`SoftLogisticRegression` minimises the soft-label cross-entropy of a
  multinomial logistic model with L2 penalty by L-BFGS (scipy).  For logistic
  regression the two are the same objective: the expanded, weighted
  log-loss of each sample is ``-sum_k Y_k log p_k``.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import log_softmax, softmax
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (
    _check_sample_weight,
    check_is_fitted,
    has_fit_parameter,
    validate_data,
)

from emodist.data.labels import GEMS
from emodist.errors import DataError


def soft_targets(P, *, classes, columns=GEMS) -> np.ndarray:
    """Vote shares of the kept classes, renormalised.

    Parameters
    ----------
    P : array_like or pandas.DataFrame, shape (n, len(columns))
        Vote distributions (a DataFrame is matched by column name).
    classes : sequence of str
        Kept classes, in the column order wanted (e.g. the 8 classes without
        amazement).
    columns : sequence of str
        Names of the columns of ``P`` (default: the nine GEMS emotions).

    Returns
    -------
    numpy.ndarray, shape (n, len(classes))
        Rows sum to 1; a row without votes for any kept class is all zero.
    """
    if hasattr(P, "columns"):
        columns, P = list(P.columns), P.to_numpy()
    P = np.atleast_2d(np.asarray(P, dtype=np.float64))
    missing = [c for c in classes if c not in list(columns)]
    if missing:
        raise DataError(f"class {missing[0]!r} is not a column of the distribution")
    S = P[:, [list(columns).index(c) for c in classes]]
    s = S.sum(axis=1, keepdims=True)
    return np.divide(S, s, out=np.zeros_like(S), where=s > 0)


def _resolve_targets(classes, y, soft, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``classes_`` and the row-normalised ``(n, k)`` target matrix."""
    if soft is None:
        if y is None:
            raise ValueError("requires y to be passed, but the target y is None (or pass soft=)")
        y = np.asarray(y)
        cls = np.unique(y) if classes is None else np.asarray(classes)
        Y = (y[:, None] == cls[None, :]).astype(np.float64)
    else:
        Y = np.atleast_2d(np.asarray(soft, dtype=np.float64))
        if classes is not None:
            cls = np.asarray(classes)
        elif y is not None:
            cls = np.unique(np.asarray(y))
        else:
            cls = np.arange(Y.shape[1])
        if Y.shape[1] != len(cls):
            raise ValueError(
                f"soft targets have {Y.shape[1]} columns but there are {len(cls)} classes; "
                "pass classes= naming the columns"
            )
        if (Y < 0).any() or not np.isfinite(Y).all():
            raise ValueError("soft targets must be finite and non-negative")
    if len(Y) != n:
        raise ValueError(f"{len(Y)} soft targets for {n} samples")
    s = Y.sum(axis=1, keepdims=True)
    return cls, np.divide(Y, s, out=np.zeros_like(Y), where=s > 0)


def expand_soft(X, Y, *, sample_weight=None, min_share: float = 0.0):
    """Repeat each sample once per class, weighted by its share.

    Parameters
    ----------
    X : array_like, shape (n, d)
    Y : array_like, shape (n, k)
        Row-normalised soft targets.
    sample_weight : array_like, shape (n,), optional
        Multiplies every copy of a sample.
    min_share : float
        Copies with a share at or below this are dropped (0: only zeros).

    Returns
    -------
    X_rep : numpy.ndarray, shape (m, d)
    cls_index : numpy.ndarray of int, shape (m,)
        Column of ``Y`` each copy stands for.
    weight : numpy.ndarray, shape (m,)
    rows : numpy.ndarray of int, shape (m,)
        Original sample of each copy.
    """
    X, Y = np.asarray(X), np.asarray(Y, dtype=np.float64)
    rows, cols = np.nonzero(Y > min_share)
    w = Y[rows, cols]
    if sample_weight is not None:
        w = w * np.asarray(sample_weight, dtype=np.float64)[rows]
    return X[rows], cols, w, rows


def _validate_fit(est, X, y):
    """Checked float ``X`` (and ``y`` when given), setting ``n_features_in_``."""
    if y is None:
        return validate_data(est, X, dtype=np.float64), None
    X, y = validate_data(est, X, y, dtype=np.float64)
    check_classification_targets(y)
    return X, y


def _fit_with_weights(est, X, y, w):
    if isinstance(est, Pipeline):
        return est.fit(X, y, **{f"{est.steps[-1][0]}__sample_weight": w})
    return est.fit(X, y, sample_weight=w)


class SoftLabelClassifier(ClassifierMixin, BaseEstimator):
    """Any weighted classifier trained on vote distributions by expansion.

    Parameters
    ----------
    estimator : classifier, optional
        Base model; must accept ``sample_weight`` (a Pipeline: its last
        step).  Default ``LogisticRegression(max_iter=2000)``.
    classes : sequence, optional
        Labels of the soft-target columns (see the module docstring).
    min_share : float
        Vote shares at or below this are not expanded (speed for trees).

    Attributes
    ----------
    classes_ : numpy.ndarray, shape (k,)
    estimator_ : fitted base model (trained on labels ``classes_``).
    n_features_in_ : int
    """

    def __init__(self, estimator=None, *, classes=None, min_share: float = 0.0):
        self.estimator = estimator
        self.classes = classes
        self.min_share = min_share

    def fit(self, X, y=None, *, soft=None, sample_weight=None):
        """Fit on soft targets ``soft`` (n, k), or on one-hot ``y`` without them.

        Parameters
        ----------
        X : array_like, shape (n, d)
        y : array_like, shape (n,), optional
            Hard labels (used when ``soft`` is None, and for ``classes_``).
        soft : array_like, shape (n, k), optional
            Vote shares per class.
        sample_weight : array_like, shape (n,), optional

        Returns
        -------
        self
        """
        X, y = _validate_fit(self, X, y)
        self.classes_, Y = _resolve_targets(self.classes, y, soft, len(X))
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X)
        base = LogisticRegression(max_iter=2000) if self.estimator is None else self.estimator
        inner = base.steps[-1][1] if isinstance(base, Pipeline) else base
        if not has_fit_parameter(inner, "sample_weight"):
            raise ValueError(f"{type(inner).__name__} takes no sample_weight; cannot learn soft targets")
        Xr, c, w, _ = expand_soft(X, Y, sample_weight=sample_weight, min_share=self.min_share)
        self.estimator_ = _fit_with_weights(clone(base), Xr, c, w)
        return self

    def predict_proba(self, X):
        """Class probabilities, shape (n, k), columns ``classes_``."""
        check_is_fitted(self, "estimator_")
        p = self.estimator_.predict_proba(validate_data(self, X, dtype=np.float64, reset=False))
        out = np.zeros((len(p), len(self.classes_)))
        out[:, np.asarray(self.estimator_.classes_, dtype=int)] = p
        return out

    def predict(self, X):
        """Most probable class, shape (n,)."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]


class SoftLogisticRegression(ClassifierMixin, BaseEstimator):
    """Multinomial logistic regression fit to soft targets (L-BFGS).

    Minimises ``sum_i w_i CE(Y_i, p_i) + ||W||^2 / (2 C)`` where
    ``CE(Y, p) = -sum_k Y_k log p_k`` and ``p = softmax(x W + b)`` (the
    intercept is not penalised) -- the objective of scikit-learn's
    ``LogisticRegression(C=C)`` with one-hot targets.

    Parameters
    ----------
    C : float
        Inverse L2 strength.
    classes : sequence, optional
        Labels of the soft-target columns (see the module docstring).
    standardize : bool
        Centre and scale features with the training rows' mean and std first.
    max_iter : int
        L-BFGS iterations.
    tol : float
        L-BFGS gradient tolerance.

    Attributes
    ----------
    classes_ : numpy.ndarray, shape (k,)
    coef_ : numpy.ndarray, shape (k, d)
        On the standardised scale when ``standardize``.
    intercept_ : numpy.ndarray, shape (k,)
    n_iter_ : int
    n_features_in_ : int
    """

    def __init__(self, C: float = 1.0, *, classes=None, standardize: bool = True,
                 max_iter: int = 1000, tol: float = 1e-6):
        self.C = C
        self.classes = classes
        self.standardize = standardize
        self.max_iter = max_iter
        self.tol = tol

    def fit(self, X, y=None, *, soft=None, sample_weight=None):
        """Minimise the soft-label cross-entropy (L2 penalty ``1 / C``) by L-BFGS.

        The arguments are those of :meth:`SoftLabelClassifier.fit`; returns ``self``.
        """
        X, y = _validate_fit(self, X, y)
        self.classes_, Y = _resolve_targets(self.classes, y, soft, len(X))
        _n, d = X.shape
        k = Y.shape[1]
        w = _check_sample_weight(sample_weight, X, dtype=np.float64)
        w = w * Y.sum(axis=1)  # rows without votes carry nothing
        S = w.sum()
        if S <= 0:
            raise ValueError("all sample weights are zero (or no row has votes)")
        if self.standardize:  # weighted, so that a weight equals repeating the row
            self.mean_ = (w[:, None] * X).sum(axis=0) / S
            sd = np.sqrt((w[:, None] * (X - self.mean_) ** 2).sum(axis=0) / S)
            self.scale_ = np.where(sd > 1e-12, sd, 1.0)
        else:
            self.mean_, self.scale_ = np.zeros(d), np.ones(d)
        Z = (X - self.mean_) / self.scale_
        wY = w[:, None] * Y
        alpha = 1.0 / (self.C * S)

        def loss_grad(theta):
            W = theta[: d * k].reshape(d, k)
            b = theta[d * k:]
            logits = Z @ W + b
            logp = log_softmax(logits, axis=1)
            loss = -(wY * logp).sum() / S + 0.5 * alpha * (W * W).sum()
            G = (w[:, None] * np.exp(logp) - wY) / S
            gW = Z.T @ G + alpha * W
            return loss, np.concatenate([gW.ravel(), G.sum(axis=0)])

        res = minimize(loss_grad, np.zeros(d * k + k), jac=True, method="L-BFGS-B",
                       options={"maxiter": self.max_iter, "gtol": self.tol, "ftol": 1e-12})
        self.coef_ = res.x[: d * k].reshape(d, k).T.copy()
        self.intercept_ = res.x[d * k:].copy()
        self.n_iter_ = int(res.nit)
        return self

    def _logits(self, X):
        check_is_fitted(self, "coef_")
        Z = (validate_data(self, X, dtype=np.float64, reset=False) - self.mean_) / self.scale_
        return Z @ self.coef_.T + self.intercept_

    def decision_function(self, X):
        """Logits, shape (n, k); for two classes the logit difference, shape (n,)."""
        z = self._logits(X)
        return z[:, 1] - z[:, 0] if z.shape[1] == 2 else z

    def predict_proba(self, X):
        """Class probabilities, shape (n, k), columns ``classes_``."""
        return softmax(self._logits(X), axis=1)

    def predict(self, X):
        """Most probable class, shape (n,)."""
        z = self._logits(X)
        return self.classes_[np.argmax(z, axis=1)]
