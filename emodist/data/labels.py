"""GEMS emotions, vote profiles and label rules: pure functions over arrays.

Each Emotify response ticks at most three of the nine GEMS emotions.  A
track keeps two nine-way profiles: the plain mean of the 0/1 columns and the
listener-normalised distribution (each response's ticks divided by how many
it ticked), and its label is the dominant emotion under a rule.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from emodist.errors import DataError

__all__ = [
    "GEMS", "TIE_TOLERANCE", "dominant_emotion", "drop_small_classes", "listener_distribution",
]

#: GEMS emotions in the Emotify column order.
GEMS = (
    "amazement",
    "solemnity",
    "tenderness",
    "nostalgia",
    "calmness",
    "power",
    "joyful_activation",
    "tension",
    "sadness",
)

#: Profiles equal within this are tied.
TIE_TOLERANCE = 1e-9


def listener_distribution(responses: np.ndarray) -> np.ndarray:
    """Listener-normalised vote distribution of one track.

    Parameters
    ----------
    responses : numpy.ndarray, shape (n_responses, 9)
        0/1 ticks of each response.

    Returns
    -------
    numpy.ndarray, shape (9,)
        Each response's ticks divided by its number of ticks, averaged over
        the responses with at least one tick; sums to 1 (all zeros when no
        response ticked anything).
    """
    r = np.asarray(responses, dtype=np.float64)
    n = r.sum(axis=1)
    r = r[n > 0] / n[n > 0, None]
    return r.mean(axis=0) if len(r) else np.zeros(r.shape[1])


def dominant_emotion(votes, votes_mean, rule: str = "listener") -> np.ndarray:
    """Dominant emotion of each row under a label rule.

    Parameters
    ----------
    votes : array_like, shape (n, 9)
        Listener-normalised distributions.
    votes_mean : array_like, shape (n, 9)
        Plain means of the 0/1 votes.
    rule : {"listener", "mean"}
        Which profile's argmax decides.

    Returns
    -------
    numpy.ndarray of str, shape (n,)
        GEMS names.  Ties (within 1e-9) go to the higher plain mean, then to
        the first emotion in GEMS order.
    """
    if rule not in ("listener", "mean"):
        raise DataError(f"unknown label rule {rule!r}; use listener or mean")
    v = np.atleast_2d(np.asarray(votes, dtype=np.float64))
    m = np.atleast_2d(np.asarray(votes_mean, dtype=np.float64))
    primary = v if rule == "listener" else m
    out = []
    for p, mean in zip(primary, m):
        tied = np.flatnonzero(p >= p.max() - TIE_TOLERANCE)
        best = mean[tied].max()
        tied = tied[mean[tied] >= best - TIE_TOLERANCE]
        out.append(GEMS[int(tied[0])])
    return np.array(out, dtype=object)


def drop_small_classes(
    labels: pd.Series, min_tracks: int | None = None, min_share: float = 0.02
) -> dict[str, int]:
    """Classes too small to keep.

    Parameters
    ----------
    labels : pandas.Series
        One label per usable track.
    min_tracks : int, optional
        Classes with fewer tracks are dropped.  When ``None`` the threshold is
        ``min_share`` of the tracks.
    min_share : float
        Share of the tracks a class needs (default 2%: on Emotify this drops
        'amazement', 4 of 400 tracks, as the reference study did).

    Returns
    -------
    dict
        Dropped class -> its number of tracks.
    """
    counts = labels.value_counts()
    threshold = min_tracks if min_tracks is not None else min_share * len(labels)
    return {str(k): int(v) for k, v in counts.items() if v < threshold}
