"""The three-group store the query tests read, and numpy references of its answers.

Written by :mod:`tests.stores`; shared by ``test_query.py`` and ``test_query_s3.py``.
"""

from __future__ import annotations

import numpy as np

from emodist.features.inception import embedding_names
from emodist.store import layout
from tests.stores import make_table, write_store

N_TRACKS, PER_TRACK, CHUNK = 30, 4, 7
N = N_TRACKS * PER_TRACK
HC_NAMES = [f"mfcc_{i:02d}_mean" for i in range(13)] + ["centroid_mean", "rms_mean", "zcr_mean"]
EMB_DIM = 24
EMB_NAMES = embedding_names("inception_v3", EMB_DIM)
TEMPO_NAMES = ["tempo_bpm", "tempo_confidence", "onset_rate"]
GROUPS = ["handcrafted", "inception_v3", "tempo"]

# row 5 (2:001) is pending in handcrafted and inception_v3, rows 40/41 (11:000, 11:001)
# pending / failed in handcrafted only, row 70 (18:002) failed in inception_v3 only,
# rows 100..102 (26:000..26:002) pending in tempo only
STATUS = {g: np.ones(N, np.int8) for g in GROUPS}
STATUS["handcrafted"][[5, 40]] = layout.STATUS_PENDING
STATUS["handcrafted"][41] = layout.STATUS_FAILED
STATUS["inception_v3"][5] = layout.STATUS_PENDING
STATUS["inception_v3"][70] = layout.STATUS_FAILED
STATUS["tempo"][[100, 101, 102]] = layout.STATUS_PENDING
FAILURES = [{"track_id": "11", "path": "/music/11.mp3", "error": "cannot decode",
             "group": "handcrafted"}]


def done(*groups) -> np.ndarray:
    """Rows done in every one of ``groups`` (all groups when none given)."""
    out = np.ones(N, bool)
    for g in groups or GROUPS:
        out &= STATUS[g] == layout.STATUS_DONE
    return out


def make_values(seed: int = 0) -> dict:
    """Random values of the three groups and the votes, as numpy arrays."""
    rng = np.random.default_rng(seed)
    return {
        "handcrafted": (rng.normal(size=(N, len(HC_NAMES))) * np.linspace(1, 500, len(HC_NAMES))
                        ).astype(np.float32),
        "inception_v3": rng.random((N, EMB_DIM)).astype(np.float32),
        "tempo": (rng.normal(size=(N, 3)) * [40, 1, 5] + [120, 0, 10]).astype(np.float32),
        "votes": rng.dirichlet(np.ones(9), size=N).astype(np.float32),
        "votes_mean": rng.random((N, 9)).astype(np.float32),
    }


def write_test_store(path, seed: int = 0, chunk: int = CHUNK) -> dict:
    """The three-group store of this module at ``path``; returns the values written."""
    v = make_values(seed)
    write_store(path, make_table(N_TRACKS, PER_TRACK),
                {"handcrafted": (HC_NAMES, v["handcrafted"]),
                 "inception_v3": (EMB_NAMES, v["inception_v3"]),
                 "tempo": (TEMPO_NAMES, v["tempo"])},
                status=STATUS, votes=v["votes"], votes_mean=v["votes_mean"], chunk=chunk,
                failures=FAILURES, model_groups=["inception_v3"])
    return v


TABLE = make_table(N_TRACKS, PER_TRACK)
IDS = TABLE["segment_id"].to_numpy().astype(str)
TRACKS = TABLE["track_id"].to_numpy().astype(str)


def brute_force(x, q, metric):
    x, q = np.asarray(x, np.float64), np.asarray(q, np.float64)
    if metric == "cosine":
        return 1 - x @ q / (np.linalg.norm(x, axis=1) * np.linalg.norm(q))
    return np.linalg.norm(x - q, axis=1)


def zscore(x, rows):
    """Columns of ``x`` z-scored with the mean and std of ``rows``."""
    x = np.asarray(x, np.float64)
    mean, std = x[rows].mean(0), x[rows].std(0)
    std[std == 0] = 1.0
    return (x - mean) / std


def nearest(d, allowed, k):
    """Positions of the ``k`` smallest distances among ``allowed`` (ties by position)."""
    d = np.where(allowed, d, np.inf)
    order = np.argsort(d, kind="stable")
    return order[np.isfinite(d[order])][:k]
