"""What an evaluation predicts: labels, GEMS factors, vote distributions, soft targets.

Three targets (:data:`emodist.learn.spec.TARGETS`):

* ``class``: the dominant emotion of each segment -- the stored label, or
  labels recomputed from the stored votes under another rule
  (:func:`recompute_labels`); with it the vote shares of the kept classes
  (*soft targets*, :func:`soft_targets`) for the presets that learn from
  them;
* ``factors``: the dominant GEMS second-order factor (:func:`factor_targets`);
* ``distribution``: the nine-way vote distribution
  (:func:`target_distribution`); predictions are clipped at 0 and
  renormalised (:func:`normalise_rows`).

GEMS factors
------------
Zentner, Grandjean & Scherer (2008) group the nine GEMS emotions into three
second-order factors:

* **sublimity**: wonder, transcendence, tenderness, nostalgia, peacefulness;
* **vitality**: power, joyful activation;
* **unease**: tension, sadness.

Emotify names three of the nine differently: ``amazement`` is wonder,
``solemnity`` is transcendence and ``calmness`` is peacefulness
(:data:`FACTOR_OF`).  A track's factor profile is the sum of its nine-way
profile over each factor's emotions, so the listener-normalised factor
distribution still sums to 1 and the plain-mean profile becomes the mean
number of ticks a response gave within each factor.

The dominant factor follows the same rule as
:func:`emodist.data.labels.dominant_emotion`: the argmax of the listener-normalised
profile (``rule="listener"``) or of the plain-mean profile (``"mean"``); ties
within 1e-9 go to the higher plain mean, then to the first factor in
:data:`FACTORS` order.  :func:`dominant_label` implements that rule for any
set of column names (vectorised).

Nothing here reads a store: :mod:`emodist.learn.data` does.
"""

from __future__ import annotations

import numpy as np

from emodist.data.labels import GEMS, TIE_TOLERANCE, dominant_emotion
from emodist.errors import DataError

__all__ = [
    "FACTORS",
    "FACTOR_OF",
    "dominant_factor",
    "dominant_label",
    "factor_matrix",
    "factor_profile",
    "factor_targets",
    "normalise_rows",
    "ordered_classes",
    "recompute_labels",
    "soft_targets",
    "target_distribution",
]

#: Second-order factors, in the order used for columns and ties.
FACTORS = ("sublimity", "vitality", "unease")

#: Emotify GEMS emotion -> its second-order factor.
FACTOR_OF = {
    "amazement": "sublimity",  # wonder
    "solemnity": "sublimity",  # transcendence
    "tenderness": "sublimity",
    "nostalgia": "sublimity",
    "calmness": "sublimity",  # peacefulness
    "power": "vitality",
    "joyful_activation": "vitality",
    "tension": "unease",
    "sadness": "unease",
}


def factor_matrix(emotions=GEMS) -> np.ndarray:
    """0/1 matrix mapping emotion columns onto factor columns.

    Parameters
    ----------
    emotions : sequence of str
        Column names of the nine-way profile (default: GEMS order).

    Returns
    -------
    numpy.ndarray, shape (len(emotions), 3)
        ``M[i, j] = 1`` when emotion ``i`` belongs to factor ``FACTORS[j]``;
        ``profile @ M`` is the factor profile.
    """
    unknown = [e for e in emotions if e not in FACTOR_OF]
    if unknown:
        raise DataError(f"{unknown[0]!r} is not a GEMS emotion")
    M = np.zeros((len(emotions), len(FACTORS)))
    for i, e in enumerate(emotions):
        M[i, FACTORS.index(FACTOR_OF[e])] = 1.0
    return M


def _profile(values) -> np.ndarray:
    """Nine-way profile as a float matrix in GEMS order (DataFrames by column name)."""
    if hasattr(values, "columns"):
        missing = [g for g in GEMS if g not in values.columns]
        if missing:
            raise DataError(f"vote profile has no {missing[0]!r} column")
        values = values[list(GEMS)].to_numpy()
    v = np.atleast_2d(np.asarray(values, dtype=np.float64))
    if v.shape[1] != len(GEMS):
        raise DataError(f"vote profile has {v.shape[1]} columns, expected {len(GEMS)}")
    return v


def factor_profile(votes) -> np.ndarray:
    """Sum a nine-way vote profile into the three factors.

    Parameters
    ----------
    votes : array_like or pandas.DataFrame, shape (n, 9)
        Listener-normalised distributions or plain means, columns in GEMS
        order (a DataFrame is matched by column name).

    Returns
    -------
    numpy.ndarray, shape (n, 3)
        Columns :data:`FACTORS`; a distribution summing to 1 stays so.
    """
    return _profile(votes) @ factor_matrix()


def dominant_label(primary, secondary, names) -> np.ndarray:
    """Argmax of ``primary`` with the catalog's tie rule, for any columns.

    Parameters
    ----------
    primary : array_like, shape (n, k)
        Profile whose argmax decides.
    secondary : array_like, shape (n, k)
        Tie-breaker (the plain mean); a remaining tie goes to the first
        column.
    names : sequence of str, length k
        Column names.

    Returns
    -------
    numpy.ndarray of str, shape (n,)
        Ties are within 1e-9 (``emodist.data.labels.TIE_TOLERANCE``).
    """
    p = np.atleast_2d(np.asarray(primary, dtype=np.float64))
    m = np.atleast_2d(np.asarray(secondary, dtype=np.float64))
    if p.shape != m.shape or p.shape[1] != len(names):
        raise DataError(f"profiles of shape {p.shape} and {m.shape} do not fit {len(names)} names")
    tied = p >= p.max(axis=1, keepdims=True) - TIE_TOLERANCE
    best = np.where(tied, m, -np.inf)
    tied &= best >= best.max(axis=1, keepdims=True) - TIE_TOLERANCE
    return np.asarray(names, dtype=object)[np.argmax(tied, axis=1)]


def dominant_factor(votes, votes_mean, rule: str = "listener") -> np.ndarray:
    """Dominant factor of each row under a label rule.

    Parameters
    ----------
    votes, votes_mean : array_like or pandas.DataFrame, shape (n, 9)
        Listener-normalised and plain-mean nine-way profiles (GEMS order).
    rule : {"listener", "mean"}
        Which factor profile's argmax decides.

    Returns
    -------
    numpy.ndarray of str, shape (n,)
        Factor names; ties as in :func:`emodist.data.labels.dominant_emotion`.
    """
    if rule not in ("listener", "mean"):
        raise DataError(f"unknown label rule {rule!r}; use listener or mean")
    f, fm = factor_profile(votes), factor_profile(votes_mean)
    return dominant_label(f if rule == "listener" else fm, fm, FACTORS)


def factor_targets(votes, votes_mean, rule: str = "listener") -> tuple[np.ndarray, np.ndarray]:
    """Factor distribution and dominant factor of each row.

    Parameters
    ----------
    votes, votes_mean : array_like or pandas.DataFrame, shape (n, 9)
        Nine-way profiles (GEMS order).
    rule : {"listener", "mean"}
        ``listener``: the summed listener-normalised distribution; ``mean``:
        the summed plain mean normalised to sum 1 (as
        :func:`target_distribution` does for nine ways).

    Returns
    -------
    distribution : numpy.ndarray, shape (n, 3)
        Rows sum to 1 (all zero for a row without votes).
    labels : numpy.ndarray of str, shape (n,)
        Dominant factor (:func:`dominant_factor`).
    """
    labels = dominant_factor(votes, votes_mean, rule)
    p = factor_profile(votes if rule == "listener" else votes_mean)
    s = p.sum(axis=1, keepdims=True)
    return np.divide(p, s, out=np.zeros_like(p), where=s > 0), labels


def recompute_labels(votes, votes_mean, rule: str, keep) -> np.ndarray:
    """Labels from stored vote profiles under ``rule``; dropped classes become ``""``.

    Parameters
    ----------
    votes, votes_mean : array_like, shape (n, 9)
        Listener-normalised and plain-mean profiles of each segment.
    rule : {"listener", "mean"}
        Label rule (see :func:`emodist.data.catalog.dominant_emotion`).
    keep : collection of str
        Classes kept at extraction; any other label is replaced by ``""``.

    Returns
    -------
    numpy.ndarray of str
    """
    labels = dominant_emotion(votes, votes_mean, rule)
    keep = set(keep)
    return np.array([lab if lab in keep else "" for lab in labels], dtype=object)


def normalise_rows(P) -> np.ndarray:
    """Clip negative values to 0 and scale each row to sum 1.

    Parameters
    ----------
    P : array_like, shape (n, k) or (k,)
        Predicted distributions.

    Returns
    -------
    numpy.ndarray, shape (n, k)
        Rows summing to 1; an all-zero row becomes uniform.
    """
    P = np.clip(np.asarray(P, dtype=np.float64), 0.0, None)
    if P.ndim == 1:
        P = P[None, :]
    s = P.sum(axis=1, keepdims=True)
    uniform = np.full_like(P, 1.0 / P.shape[1])
    return np.where(s > 0, P / np.where(s > 0, s, 1.0), uniform)


def target_distribution(votes, votes_mean, rule: str) -> np.ndarray:
    """Nine-way target distribution of each segment, rows summing to 1.

    Parameters
    ----------
    votes, votes_mean : array_like, shape (n, 9)
        Listener-normalised and plain-mean vote profiles.
    rule : {"listener", "mean"}
        ``listener`` uses the listener-normalised profile, ``mean`` the plain
        mean normalised to sum 1.

    Returns
    -------
    numpy.ndarray, shape (n, 9)
        Rows without any vote are all zero.
    """
    p = np.asarray(votes if rule == "listener" else votes_mean, dtype=np.float64)
    s = p.sum(axis=1, keepdims=True)
    return np.divide(p, s, out=np.zeros_like(p), where=s > 0)


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


def ordered_classes(labels, order) -> list[str]:
    """The distinct ``labels`` in ``order`` (unknown ones last, sorted).

    Parameters
    ----------
    labels : array_like of str
        Labels of the evaluated segments.
    order : sequence of str
        Display order (the store's emotions, or :data:`FACTORS`).

    Returns
    -------
    list of str
    """
    present = set(labels)
    return [c for c in order if c in present] + sorted(present - set(order))
