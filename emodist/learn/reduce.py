"""A dimensionality step for tree presets on wide inputs.

Boosted trees on the 2048 columns of an Inception-v3 embedding cost 40 to
100 times more than every other preset (histogram gradient boosting: about
100 s a fit on 320 segments, one thread), because each split scans every
column.  :class:`WideInputPCA` gives those presets the leading principal
components instead, fit on the training folds only (it is a pipeline step);
inputs no wider than ``max_columns`` pass through untouched, so the presets
keep their definition -- and their predictions -- on narrow feature sets
such as ``handcrafted``.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA
from sklearn.utils.validation import check_is_fitted

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
        X = np.asarray(X)
        self.n_features_in_ = X.shape[1]
        width = reduced_width(X.shape[0], X.shape[1], self.max_columns, self.n_components)
        if width == X.shape[1]:
            self.pca_ = None
            return X
        self.pca_ = PCA(width, svd_solver="full")
        return self.pca_.fit_transform(X)

    def transform(self, X):
        """``X`` projected on the components, or ``X`` itself for a narrow input."""
        check_is_fitted(self, "n_features_in_")
        return X if self.pca_ is None else self.pca_.transform(X)
