"""Longest-first order of an evaluation's fits.

Every (feature set, preset, balance, fold) fit of an evaluation is one task,
and all of them go to the executor together.  The fits differ in cost by
three orders of magnitude (a KNN on 131 columns: 0.05 s; boosted trees on
2048 columns: minutes), so the order matters: a long fit started last keeps
one core busy while the others idle.  :func:`longest_first` orders the
tasks by the estimate of :func:`fit_cost`, so the long fits start first and
the short ones fill the gaps at the end.  Every fit is seeded, so the order
changes nothing but the wall time.
"""

from __future__ import annotations

from emodist.learn.reduce import reduced_width

#: Rough single-thread seconds of one fit on about 320 training rows:
#: ``(fixed, per 2048 model input columns)``, measured on the 100 shared
#: Emotify tracks (fold 0, no weights).  Only their order matters.
FIT_SECONDS = {
    "histogram-gradient-boosting": (5.0, 97.0),
    "boosted-trees": (1.5, 13.0),
    "subspace-discriminant": (0.1, 3.8),
    "cubic-knn": (0.0, 3.5),
    "rusboosted-trees": (0.1, 1.9),
    "subspace-knn": (0.05, 0.75),
    "bagged-trees": (0.05, 0.5),
}
#: Estimate for presets the table does not name (SVMs, KNNs, the linear models).
DEFAULT_SECONDS = (0.05, 0.3)
#: Presets beyond the study (soft labels, inner CV, bagging): a few times a linear model.
BEYOND_SECONDS = (0.5, 3.0)


def fit_cost(preset_key: str, n_rows: int, n_columns: int, *, reduce: bool = False,
             beyond: bool = False) -> float:
    """Estimated seconds of one fit of a preset.

    Parameters
    ----------
    preset_key : str
        Preset key.
    n_rows : int
        Training rows (the estimate scales linearly from 320).
    n_columns : int
        Columns of the feature set.
    reduce : bool
        The preset's pipeline has the wide-input PCA step
        (:class:`~emodist.learn.reduce.WideInputPCA`).
    beyond : bool
        A preset beyond the study (used when the table does not name it).

    Returns
    -------
    float
        Estimated seconds; only comparisons between estimates are meaningful.
    """
    fixed, per_2048 = FIT_SECONDS.get(preset_key, BEYOND_SECONDS if beyond else DEFAULT_SECONDS)
    width = reduced_width(n_rows, n_columns) if reduce else n_columns
    return (fixed + per_2048 * width / 2048.0) * max(n_rows, 1) / 320.0


def longest_first(costs) -> list[int]:
    """Task positions ordered by decreasing cost (equal costs keep their order).

    Parameters
    ----------
    costs : sequence of float
        Estimated cost of each task.

    Returns
    -------
    list of int
        A permutation of ``range(len(costs))``.
    """
    return sorted(range(len(costs)), key=lambda i: -costs[i])


def in_task_order(order, results) -> list:
    """Results of tasks run in ``order`` put back in task order.

    Parameters
    ----------
    order : sequence of int
        Task positions in the order they were run (:func:`longest_first`).
    results : sequence
        Result of each run task, in run order.

    Returns
    -------
    list
        ``out[order[j]] = results[j]``.
    """
    out = [None] * len(order)
    for j, i in enumerate(order):
        out[i] = results[j]
    return out
