"""Every estimator and transformer emodist adds to scikit-learn.

All of them are scikit-learn estimators (``get_params`` / ``set_params``,
clone-able, checked by :func:`sklearn.utils.estimator_checks.check_estimator`
in the test suite); the presets that use them are in
:mod:`emodist.learn.presets`.

MATLAB's Classification Learner
-------------------------------
What the MATLAB presets need and scikit-learn lacks:

* :func:`squared_inverse`: MATLAB's ``'squaredinverse'`` KNN distance weight;
* :class:`ScaledGaussianSVC`: a Gaussian SVM whose kernel scale follows
  MATLAB's convention (a multiple of ``sqrt(P)``);
* :class:`ClippedKNN`: KNN that never asks for more neighbours than there are
  training samples (MATLAB's coarse KNN on a small fold);
* :class:`RUSBoostClassifier`: AdaBoost (SAMME) with random under-sampling
  per round, as MATLAB's ``'RUSBoost'`` ensemble.

Wide inputs
-----------
Boosted trees on the 2048 columns of an Inception-v3 embedding cost 40 to
100 times more than every other preset (histogram gradient boosting: about
100 s a fit on 320 segments, one thread), because each split scans every
column.  :class:`WideInputPCA` gives those presets the leading principal
components instead, fit on the training folds only (it is a pipeline step);
inputs no wider than ``max_columns`` pass through untouched, so the presets
keep their definition -- and their predictions -- on narrow feature sets
such as ``handcrafted``.

Soft targets
------------
The dominant emotion throws away most of what the listeners said: a segment
with 40% calmness and 35% nostalgia is taught as "calmness" exactly like one
with 90%.  :class:`SoftLabelClassifier`, :class:`SoftLogisticRegression` and
:class:`InFoldSoftLogisticRegression` learn from the vote distribution (the
*soft target*, :func:`emodist.learn.targets.soft_targets`) and still predict
the dominant emotion.  Every one follows one convention::

    est.fit(X, y, soft=Y)         # Y: (n, k) vote shares, columns = est.classes
    est.fit(X, y)                 # no soft targets: one-hot of y (plain training)

``y`` (the hard labels) stays the positional target so that scikit-learn
splitters, scorers and meta-estimators keep working; ``soft`` is a keyword
fit parameter, routed through a :class:`~sklearn.pipeline.Pipeline` as
``pipe.fit(X, y, model__soft=Y)``.  The columns of ``Y`` are the labels given
by the ``classes`` parameter; with ``classes=None`` they are the sorted
unique labels of ``y`` (and ``Y`` must have that many columns).  Rows of
``Y`` are renormalised to sum 1; an all-zero row carries no weight.

* :class:`SoftLabelClassifier` wraps any classifier that accepts
  ``sample_weight``: each sample is repeated once per class with weight equal
  to its vote share (zero shares are dropped, :func:`expand_soft`).
* :class:`SoftLogisticRegression` minimises the soft-label cross-entropy of a
  multinomial logistic model with L2 penalty by L-BFGS (scipy).  For logistic
  regression the two are the same objective: the expanded, weighted
  log-loss of each sample is ``-sum_k Y_k log p_k``.
* :class:`InFoldSoftLogisticRegression` picks ``C`` from a grid by an inner
  cross-validation on the rows ``fit`` is given -- in an outer evaluation
  that is the training folds only, so the held-out fold never influences
  the choice.  The inner folds are grouped when ``groups`` is passed (inside
  a pipeline ``pipe.fit(X, y, model__soft=Y, model__groups=g)``), and the
  inner score is the mean Jensen-Shannon divergence between each row's soft
  target and its out-of-fold predicted distribution, averaged over the row's
  group first when ``group_mean`` (the way the distribution target scores a
  test track).

Class imbalance
---------------
On Emotify's 100 shared tracks calmness is dominant for 36% of the tracks and
solemnity for 3%; a model maximising accuracy learns to say "calmness".
Two remedies:

* :class:`PriorShiftClassifier` adds a per-class offset to the base model's
  log-probabilities (equivalently multiplies ``predict_proba`` by per-class
  weights and renormalises).  The offsets are chosen to maximise balanced
  accuracy on out-of-fold probabilities of an *inner* cross-validation run
  on the rows ``fit`` is given -- in an outer evaluation that is the training
  fold only; the outer test fold is never seen.  Pass ``groups`` (the track
  of each row) so that the inner folds are grouped too; inside a pipeline:
  ``pipe.fit(X, y, model__groups=track_id)``.
* :class:`BalancedBaggingClassifier` fits each member on a bag holding the
  same number of samples of every class (the smallest class's size): an
  under-sample without replacement, or a balanced bootstrap with it.
  Probabilities are averaged over members.

The inner cross-validations use :func:`emodist.learn.folds.inner_splitter`;
per-sample fit parameters are sliced to a subset's rows by
:func:`slice_params`, and probabilities are put in a given class order by
:func:`aligned_proba`.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager

import numpy as np
from scipy.optimize import minimize
from scipy.special import log_softmax, softmax
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, clone
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (
    _check_sample_weight,
    _num_samples,
    check_is_fitted,
    has_fit_parameter,
    validate_data,
)

from emodist.learn.folds import inner_splitter
from emodist.learn.scoring import balanced_accuracy_index, jensen_shannon, spread_track_mean

__all__ = [
    "C_GRID",
    "MAX_COLUMNS",
    "N_COMPONENTS",
    "WIDE_PARAMS",
    "BalancedBaggingClassifier",
    "ClippedKNN",
    "InFoldSoftLogisticRegression",
    "PriorShiftClassifier",
    "RUSBoostClassifier",
    "ScaledGaussianSVC",
    "SoftLabelClassifier",
    "SoftLogisticRegression",
    "WideInputPCA",
    "aligned_proba",
    "expand_soft",
    "reduced_width",
    "slice_params",
    "squared_inverse",
    "tune_offsets",
    "tune_prior_power",
]


# --------------------------------------------------------------------------
# Helpers shared by the meta-estimators and the fits.
# --------------------------------------------------------------------------


def slice_params(params: dict | None, rows, n: int) -> dict:
    """Take ``rows`` of every per-sample fit parameter.

    Parameters
    ----------
    params : dict or None
        Fit parameters; a value with a length of ``n`` (array, list) is taken
        to be per sample and sliced, anything else is passed unchanged.
    rows : array_like of int or bool
        Rows to keep.
    n : int
        Number of samples the parameters describe.

    Returns
    -------
    dict
    """
    out = {}
    for k, v in (params or {}).items():
        if v is not None and not np.isscalar(v) and hasattr(v, "__len__") and len(v) == n:
            out[k] = np.asarray(v)[rows]
        else:
            out[k] = v
    return out


def aligned_proba(model, X, classes) -> np.ndarray:
    """``model.predict_proba(X)`` with columns ``classes`` (0 for a class it never saw).

    Parameters
    ----------
    model : fitted classifier with ``predict_proba`` and ``classes_``
    X : array_like, shape (n, d)
    classes : sequence
        Column order wanted.

    Returns
    -------
    numpy.ndarray, shape (n, len(classes))
    """
    p = model.predict_proba(X)
    out = np.zeros((len(p), len(classes)))
    col = {c: j for j, c in enumerate(np.asarray(classes).tolist())}
    for j, c in enumerate(np.asarray(model.classes_).tolist()):
        if c in col:
            out[:, col[c]] = p[:, j]
    return out


# --------------------------------------------------------------------------
# MATLAB's Classification Learner.
# --------------------------------------------------------------------------


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
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        gamma = 1.0 / (self.scale_factor**2 * X.shape[1])
        self.svc_ = SVC(kernel="rbf", C=self.C, gamma=gamma).fit(X, y, sample_weight=sample_weight)
        self.classes_ = self.svc_.classes_
        return self

    def predict(self, X):
        """Predicted class labels."""
        check_is_fitted(self, "svc_")
        return self.svc_.predict(validate_data(self, X, dtype=np.float64, reset=False))

    def decision_function(self, X):
        """One-vs-one decision values."""
        check_is_fitted(self, "svc_")
        return self.svc_.decision_function(validate_data(self, X, dtype=np.float64, reset=False))


class ClippedKNN(KNeighborsClassifier):
    """KNN that uses at most as many neighbours as training samples.

    MATLAB's coarse KNN asks for 100 neighbours; on a small training fold
    that is more than there are samples, so the fit uses ``min(k, n)``.
    The parameters are those of :class:`~sklearn.neighbors.KNeighborsClassifier`.

    Attributes
    ----------
    n_neighbors_used_ : int
        The neighbours used: ``min(n_neighbors, n_training_samples)``.
    """

    def fit(self, X, y):
        """Fit, clipping the neighbour count to the training-set size."""
        n = _num_samples(X)
        with self._clipped(n):
            super().fit(X, y)
        self.n_neighbors_used_ = min(self.n_neighbors, n)
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
        check_is_fitted(self, "n_neighbors_used_")
        with self._clipped():
            return super().predict(X)

    def predict_proba(self, X):
        """Class probabilities from the (clipped) neighbourhood.

        scikit-learn 1.8's fast path for uniform weights casts ``classes_``
        to integers (``unique_Y_labels``), which fails for text labels; it
        is handed the class positions (what ``_y`` holds) for the call.
        """
        check_is_fitted(self, "n_neighbors_used_")
        classes = self.classes_
        with self._clipped():
            if isinstance(classes, np.ndarray) and not np.issubdtype(classes.dtype, np.integer):
                self.classes_ = np.arange(len(classes))
                try:
                    return super().predict_proba(X)
                finally:
                    self.classes_ = classes
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
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        k = len(self.classes_)
        rng = np.random.default_rng(self.random_state)
        if sample_weight is None:
            w = np.full(len(y), 1.0 / len(y))
        else:
            w = _check_sample_weight(sample_weight, X, dtype=np.float64)
            if not w.sum() > 0:
                raise ValueError("the sample weights sum to zero (or are not finite)")
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

    def _votes(self, X) -> np.ndarray:
        check_is_fitted(self, "estimators_")
        X = validate_data(self, X, dtype=np.float64, reset=False)
        votes = np.zeros((len(X), len(self.classes_)))
        rows = np.arange(len(X))
        for tree, alpha in zip(self.estimators_, self.estimator_weights_):
            votes[rows, tree.predict(X)] += alpha
        return votes

    def decision_function(self, X):
        """Weighted votes of the rounds, shape (n, k); for two classes their difference, shape (n,)."""
        votes = self._votes(X)
        return votes[:, 1] - votes[:, 0] if votes.shape[1] == 2 else votes

    def predict(self, X):
        """Class with the largest weighted vote."""
        votes = self._votes(X)
        return self.classes_[np.argmax(votes, axis=1)]


# --------------------------------------------------------------------------
# Wide inputs.
# --------------------------------------------------------------------------

#: Inputs wider than this get the principal components.
MAX_COLUMNS = 512
#: Principal components kept (at most the training rows).
N_COMPONENTS = 128
#: How a preset with this step treats wide inputs (``emodist evaluate --list``).
WIDE_PARAMS = {"wide_inputs": f"first {N_COMPONENTS} principal components when more than "
                              f"{MAX_COLUMNS} columns (fit on the training folds)"}


def reduced_width(n_rows: int, n_columns: int, max_columns: int = MAX_COLUMNS,
                  n_components: int = N_COMPONENTS) -> int:
    """Columns :class:`WideInputPCA` leaves of an ``n_rows`` x ``n_columns`` input.

    Parameters
    ----------
    n_rows, n_columns : int
        Shape of the training input.
    max_columns : int
        Widest input passed through.
    n_components : int
        Components kept of a wider input.

    Returns
    -------
    int
        ``n_columns`` when ``n_columns <= max_columns``, else
        ``min(n_components, n_rows, n_columns)``.
    """
    if n_columns <= max_columns:
        return int(n_columns)
    return int(min(n_components, n_rows, n_columns))


class WideInputPCA(TransformerMixin, BaseEstimator):
    """Leading principal components of inputs wider than ``max_columns``; others unchanged.

    The components come from a full (LAPACK) SVD: deterministic, no seed.

    Parameters
    ----------
    max_columns : int
        Widest input passed through unchanged.
    n_components : int
        Components kept of a wider input (at most the training rows).
    """

    def __init__(self, max_columns: int = MAX_COLUMNS, n_components: int = N_COMPONENTS):
        self.max_columns = max_columns
        self.n_components = n_components

    def fit(self, X, y=None):
        """Fit the components on ``X`` when it is wider than ``max_columns``."""
        self.fit_transform(X)
        return self

    def fit_transform(self, X, y=None):
        """:meth:`fit`, then the training rows' components (as a pipeline of ``PCA`` gives them)."""
        X = validate_data(self, X, dtype=[np.float64, np.float32])
        width = reduced_width(X.shape[0], X.shape[1], self.max_columns, self.n_components)
        if width == X.shape[1]:
            self.pca_ = None
            return X
        self.pca_ = PCA(width, svd_solver="full")
        return self.pca_.fit_transform(X)

    def transform(self, X):
        """``X`` projected on the components, or ``X`` itself for a narrow input."""
        check_is_fitted(self, "n_features_in_")
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        return X if self.pca_ is None else self.pca_.transform(X)


# --------------------------------------------------------------------------
# Soft targets.
# --------------------------------------------------------------------------


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


#: Default grid of ``C`` values.
C_GRID = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)


class InFoldSoftLogisticRegression(ClassifierMixin, BaseEstimator):
    """:class:`SoftLogisticRegression` with ``C`` tuned by inner CV.

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
        Labels of the soft-target columns (see the module docstring).
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
        X, y = _validate_fit(self, X, y)
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
        return self

    def predict_proba(self, X):
        """Class probabilities, shape (n, k), columns ``classes_``."""
        check_is_fitted(self, "estimator_")
        return self.estimator_.predict_proba(validate_data(self, X, dtype=np.float64, reset=False))

    def predict(self, X):
        """Most probable class, shape (n,)."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]


# --------------------------------------------------------------------------
# Class imbalance.
# --------------------------------------------------------------------------

#: Added to probabilities before their log (the prior shift), here and in its ONNX graph.
LOG_EPS = 1e-9


def tune_offsets(log_proba, y_idx, *, grid=None, n_sweeps: int = 3) -> tuple[np.ndarray, float]:
    """Per-class log-offsets maximising balanced accuracy (coordinate ascent).

    Parameters
    ----------
    log_proba : array_like, shape (n, k)
        Log-probabilities (out of fold).
    y_idx : array_like of int, shape (n,)
        True class indices.
    grid : array_like, optional
        Offsets tried for each class (default ``linspace(-3, 3, 25)``).
    n_sweeps : int
        Passes over the classes.

    Returns
    -------
    offsets : numpy.ndarray, shape (k,)
        Centred to mean 0 (only differences matter).
    score : float
        Balanced accuracy of ``argmax(log_proba + offsets)``.

    Notes
    -----
    Two starting points are tried, no offset and the prior correction
    ``-log(class share)``; a change is kept only when it raises the score,
    so the offsets stay at the start where nothing helps.
    """
    L = np.asarray(log_proba, dtype=np.float64)
    y_idx = np.asarray(y_idx)
    k = L.shape[1]
    grid = np.linspace(-3.0, 3.0, 25) if grid is None else np.asarray(grid, dtype=np.float64)

    def score(b):
        return balanced_accuracy_index(y_idx, np.argmax(L + b, axis=1), k)

    share = np.bincount(y_idx, minlength=k) / len(y_idx)
    starts = [np.zeros(k), -np.log(np.maximum(share, 1.0 / len(y_idx)))]
    best_b, best_s = None, -1.0
    for b in starts:
        b = b - b.mean()
        s = score(b)
        for _ in range(n_sweeps):
            changed = False
            for j in range(k):
                for g in grid:
                    trial = b.copy()
                    trial[j] = g
                    t = score(trial)
                    if t > s + 1e-12:
                        b, s, changed = trial, t, True
            if not changed:
                break
        if s > best_s + 1e-12:
            best_b, best_s = b - b.mean(), s
    return best_b, best_s


def tune_prior_power(log_proba, y_idx, *, grid=None) -> tuple[np.ndarray, float, float]:
    """One exponent ``tau``: offsets ``-tau log(class share)`` maximising balanced accuracy.

    Dividing the probabilities by the class shares raised to ``tau`` moves
    from the model's decisions (``tau = 0``) to the prior-corrected ones
    (``tau = 1``, a balanced prior) and beyond; one parameter overfits a small
    inner cross-validation far less than one offset per class.

    Parameters
    ----------
    log_proba : array_like, shape (n, k)
    y_idx : array_like of int, shape (n,)
    grid : array_like, optional
        Exponents tried (default ``linspace(0, 1.5, 16)``); ties go to the
        smallest.

    Returns
    -------
    offsets : numpy.ndarray, shape (k,)
        Centred to mean 0.
    tau : float
    score : float
        Balanced accuracy of ``argmax(log_proba + offsets)``.
    """
    L = np.asarray(log_proba, dtype=np.float64)
    y_idx = np.asarray(y_idx)
    k = L.shape[1]
    grid = np.linspace(0.0, 1.5, 16) if grid is None else np.asarray(grid, dtype=np.float64)
    share = np.bincount(y_idx, minlength=k) / len(y_idx)
    logs = np.log(np.maximum(share, 1.0 / len(y_idx)))
    best = (-1.0, 0.0)
    for tau in grid:
        s = balanced_accuracy_index(y_idx, np.argmax(L - tau * logs, axis=1), k)
        if s > best[0] + 1e-12:
            best = (s, float(tau))
    b = -best[1] * logs
    return b - b.mean(), best[1], best[0]


class PriorShiftClassifier(ClassifierMixin, BaseEstimator):
    """Base classifier with per-class decision offsets tuned for balanced accuracy.

    Parameters
    ----------
    estimator : classifier with ``predict_proba``, optional
        Default ``LogisticRegression(max_iter=2000)``.
    method : {"prior_power", "per_class"}
        ``prior_power``: one exponent on the class shares
        (:func:`tune_prior_power`); ``per_class``: one offset per class by
        coordinate ascent (:func:`tune_offsets`), more flexible, and more
        prone to fit the inner folds' noise.
    cv : int
        Inner folds (reduced when there are fewer groups).
    grid : array_like, optional
        Exponents (``prior_power``) or log-offsets per class (``per_class``)
        tried; default as in the tuning functions.
    n_sweeps : int
        Coordinate-ascent passes (``per_class``).
    random_state : int or None
        Seed of the inner folds.

    Attributes
    ----------
    classes_ : numpy.ndarray, shape (k,)
        Sorted labels of ``y``.
    offsets_ : numpy.ndarray, shape (k,)
        Added to the base model's log-probabilities.
    tau_ : float or None
        The chosen exponent (``prior_power``).
    inner_score_, inner_score_untuned_ : float
        Inner out-of-fold balanced accuracy with and without the offsets.
    estimator_ : the base model refit on every row ``fit`` was given.
    n_features_in_ : int
    """

    def __init__(self, estimator=None, *, method: str = "prior_power", cv: int = 5, grid=None,
                 n_sweeps: int = 3, random_state=0):
        self.estimator = estimator
        self.method = method
        self.cv = cv
        self.grid = grid
        self.n_sweeps = n_sweeps
        self.random_state = random_state

    def _base(self):
        return LogisticRegression(max_iter=2000) if self.estimator is None else self.estimator

    def fit(self, X, y, *, groups=None, **fit_params):
        """Tune the offsets by inner cross-validation, then refit on all rows.

        Parameters
        ----------
        X : array_like, shape (n, d)
        y : array_like, shape (n,)
        groups : array_like, shape (n,), optional
            Group (track) of each row; inner folds never split a group.
        **fit_params
            Passed to the base model's ``fit`` (per-sample arrays such as
            ``soft`` or ``sample_weight`` are sliced to each inner fold).

        Returns
        -------
        self
        """
        if self.method not in ("prior_power", "per_class"):
            raise ValueError(f"unknown method {self.method!r}; use prior_power or per_class")
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        n = len(y)
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError("PriorShiftClassifier needs samples of at least 2 classes; got 1 class")
        splitter, _ = inner_splitter(y, groups, self.cv, self.random_state)
        oof = np.zeros((n, len(self.classes_)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for tr, te in splitter.split(X, y, groups):
                model = clone(self._base()).fit(X[tr], y[tr], **slice_params(fit_params, tr, n))
                oof[te] = aligned_proba(model, X[te], self.classes_)
            L = np.log(oof + LOG_EPS)
            self.inner_score_untuned_ = balanced_accuracy_index(y_idx, np.argmax(L, axis=1),
                                                                len(self.classes_))
            if self.method == "prior_power":
                self.offsets_, self.tau_, self.inner_score_ = tune_prior_power(L, y_idx, grid=self.grid)
            else:
                self.tau_ = None
                self.offsets_, self.inner_score_ = tune_offsets(L, y_idx, grid=self.grid,
                                                                n_sweeps=self.n_sweeps)
            self.estimator_ = clone(self._base()).fit(X, y, **fit_params)
        return self

    def predict_proba(self, X):
        """Shifted probabilities ``p * exp(offsets)`` renormalised, shape (n, k)."""
        check_is_fitted(self, "offsets_")
        X = validate_data(self, X, dtype=np.float64, reset=False)
        p = aligned_proba(self.estimator_, X, self.classes_)
        return softmax(np.log(p + LOG_EPS) + self.offsets_, axis=1)

    def predict(self, X):
        """Class with the largest shifted probability, shape (n,)."""
        check_is_fitted(self, "offsets_")
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


def _seed_everything(est, seed: int):
    """Set every ``random_state`` parameter of ``est`` (nested ones too)."""
    keys = [k for k in est.get_params(deep=True) if k == "random_state" or k.endswith("__random_state")]
    if keys:
        est.set_params(**{k: seed for k in keys})
    return est


class BalancedBaggingClassifier(ClassifierMixin, BaseEstimator):
    """Bagging in which every bag holds each class equally often.

    Parameters
    ----------
    estimator : classifier, optional
        Member model (default ``DecisionTreeClassifier(max_features="sqrt")``:
        a balanced random forest).  Every ``random_state`` parameter it has is
        set per member.
    n_estimators : int
        Number of bags.
    replacement : bool
        ``False``: under-sample every class to the smallest class's size
        without replacement.  ``True``: balanced bootstrap, the same number
        drawn with replacement.
    random_state : int or None
        Seed of the bags and members; a fixed seed gives identical models.

    Attributes
    ----------
    classes_ : numpy.ndarray, shape (k,)
    estimators_ : list of fitted members
    bags_ : list of numpy.ndarray
        Row indices of each bag.
    n_features_in_ : int
    """

    def __init__(self, estimator=None, *, n_estimators: int = 30, replacement: bool = False,
                 random_state=None):
        self.estimator = estimator
        self.n_estimators = n_estimators
        self.replacement = replacement
        self.random_state = random_state

    def fit(self, X, y, **fit_params):
        """Fit one member per balanced bag.

        Parameters
        ----------
        X : array_like, shape (n, d)
        y : array_like, shape (n,)
        **fit_params
            Passed to each member's ``fit``, per-sample arrays sliced to the bag.

        Returns
        -------
        self
        """
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        per_class = [np.flatnonzero(y_idx == c) for c in range(len(self.classes_))]
        n_min = min(len(p) for p in per_class)
        rng = np.random.default_rng(self.random_state)
        base = (DecisionTreeClassifier(max_features="sqrt") if self.estimator is None
                else self.estimator)
        self.estimators_, self.bags_ = [], []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(self.n_estimators):
                bag = np.concatenate([rng.choice(p, n_min, replace=self.replacement)
                                      for p in per_class])
                member = _seed_everything(clone(base), int(rng.integers(2**31 - 1)))
                member.fit(X[bag], y[bag], **slice_params(fit_params, bag, len(y)))
                self.estimators_.append(member)
                self.bags_.append(bag)
        return self

    def predict_proba(self, X):
        """Mean of the members' probabilities (their votes, without predict_proba)."""
        check_is_fitted(self, "estimators_")
        X = validate_data(self, X, dtype=np.float64, reset=False)
        total = np.zeros((len(X), len(self.classes_)))
        for m in self.estimators_:
            if hasattr(m, "predict_proba"):
                total += aligned_proba(m, X, self.classes_)
            else:
                total[np.arange(len(X)), np.searchsorted(self.classes_, m.predict(X))] += 1.0
        return total / len(self.estimators_)

    def predict(self, X):
        """Class with the largest mean probability, shape (n,)."""
        check_is_fitted(self, "estimators_")
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
