"""Human ceiling: how well do two halves of the listeners agree with each other?

For each track the listeners who ticked at least one emotion are split into
two random halves (``n_splits`` times, seeded; with an odd number the second
half has one more).  Each half gets its own listener-normalised distribution
and plain mean, hence its own dominant emotion (or factor) under the same rule
and tie logic as :func:`emodist.data.labels.dominant_emotion`.  Reported:

* ``agreement``: share of tracks whose two halves name the same dominant
  class, averaged over splits;
* ``kappa``: Cohen's kappa of the two halves' labels across tracks;
* ``jsd``: mean Jensen-Shannon *divergence* (base 2, in [0, 1]) between the
  halves' distributions -- the measure ``emodist evaluate --target
  distribution`` reports (:func:`emodist.learn.scoring.jensen_shannon`), not
  its square root (the distance);
* ``half_vs_full``: share of (track, half) pairs whose half label equals the
  label of all listeners together (optimistic: the half is part of the crowd);

each with a 95% bootstrap interval over tracks (``*_ci``) and the 2.5-97.5
percentile range over splits (``*_split_range``); beside them the chance rate
``1 / n_classes`` and the majority-class rate of the full-crowd labels.

Empty responses are left out before splitting: they change neither the
listener-normalised distribution nor the argmax or ties of the plain mean.

Caveat: each half has about half the listeners, so split-half agreement
*underestimates* the reliability of the full crowd's label, which is what a
model is scored against.  ``kappa_spearman_brown = 2 kappa / (1 + kappa)`` is
the Spearman-Brown step-up to a crowd of full size, applied to kappa as if
it were a reliability coefficient: a rough, documented extrapolation; the raw
figures are the measured ones.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from emodist.data.labels import GEMS
from emodist.errors import DataError, EmodistError
from emodist.learn.scoring import jensen_shannon
from emodist.learn.targets import FACTORS, dominant_label, factor_matrix

__all__ = ["emotify_ceiling", "human_ceiling", "read_responses", "report_ceiling", "responses_path",
           "split_half_ceiling"]


def read_responses(root) -> pd.DataFrame:
    """Emotify's ``data.csv`` (one row per listener response) from folder ``root``.

    Returns
    -------
    pandas.DataFrame
        Columns ``track id`` (int) and the nine GEMS columns (0/1 int), plus
        the file's other columns.
    """
    return _read_csv(os.path.join(str(root), "data.csv"))


def _read_csv(path) -> pd.DataFrame:
    df = pd.read_csv(path, skipinitialspace=True)
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in ("track id",) + GEMS if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing column {missing[0]!r}")
    return df


def _labels_and_dist(sum_norm, sum_ticks, count, M, names, rule):
    """Dominant labels and target distributions from summed response rows."""
    listener = sum_norm / count[..., None]
    mean = sum_ticks / count[..., None]
    if M is not None:
        listener, mean = listener @ M, mean @ M
    labels = dominant_label((listener if rule == "listener" else mean).reshape(-1, len(names)),
                            mean.reshape(-1, len(names)), names).reshape(count.shape)
    dist = listener if rule == "listener" else mean / mean.sum(axis=-1, keepdims=True)
    return labels, dist


def _kappa(a, b) -> float:
    cats, inv = np.unique(np.concatenate([a, b]), return_inverse=True)
    ia, ib = inv[: len(a)], inv[len(a):]
    po = float(np.mean(ia == ib))
    pe = float(np.sum(np.bincount(ia, minlength=len(cats)) * np.bincount(ib, minlength=len(cats))))
    pe /= len(a) ** 2
    return 1.0 if pe >= 1.0 else (po - pe) / (1.0 - pe)


def _summary(per_split, per_track, rng, n_boot, ci) -> dict:
    lo, hi = 50 * (1 - ci), 50 * (1 + ci)
    boot = per_track[rng.integers(0, len(per_track), (n_boot, len(per_track)))].mean(axis=1)
    return {
        "value": float(per_split.mean()),
        "ci": [float(np.percentile(boot, lo)), float(np.percentile(boot, hi))],
        "split_range": [float(np.percentile(per_split, lo)), float(np.percentile(per_split, hi))],
    }


def split_half_ceiling(track_ids, ticks, *, level: str = "emotion", rule: str = "listener",
                       n_splits: int = 200, seed: int = 0, n_boot: int = 1000, ci: float = 0.95,
                       n_classes: int | None = None) -> dict:
    """Split-half agreement of the listeners, per track, over random splits.

    Parameters
    ----------
    track_ids : array_like, shape (n_responses,)
        Track of each response (a ``data.csv`` row).
    ticks : array_like, shape (n_responses, 9)
        0/1 GEMS columns of each response, GEMS order.
    level : {"emotion", "factor"}
        Nine emotions, or the three GEMS factors (:mod:`emodist.learn.targets`).
    rule : {"listener", "mean"}
        Label rule (and distribution: listener-normalised, or the plain mean
        normalised to sum 1).
    n_splits : int
        Random splits per track.
    seed : int
        Seed of the splits and of the bootstrap.
    n_boot : int
        Bootstrap resamples of the tracks for the intervals.
    ci : float
        Interval coverage.
    n_classes : int, optional
        Classes for the chance rate; default the number of distinct
        full-crowd labels among the tracks.

    Returns
    -------
    dict
        ``agreement``, ``kappa``, ``jsd``, ``half_vs_full`` (each ``value``,
        ``ci``, ``split_range``), ``kappa_spearman_brown``, ``chance``,
        ``majority``, ``majority_class``, ``n_tracks``, ``n_skipped``
        (tracks with fewer than 2 non-empty responses), ``mean_half_size``,
        ``level``, ``rule``, ``n_splits``, ``jsd_kind``, ``labels`` (full-crowd
        label per track, a dict).
    """
    if level not in ("emotion", "factor"):
        raise DataError(f"unknown level {level!r}; use emotion or factor")
    if rule not in ("listener", "mean"):
        raise DataError(f"unknown label rule {rule!r}; use listener or mean")
    ids = np.asarray(track_ids)
    T = np.asarray(ticks, dtype=np.float64)
    if T.ndim != 2 or T.shape[1] != len(GEMS) or len(T) != len(ids):
        raise DataError(f"ticks must be (n_responses, 9) beside n_responses track ids; got {T.shape}")
    M, names = (None, GEMS) if level == "emotion" else (factor_matrix(), FACTORS)
    rng = np.random.default_rng(seed)
    agree, jsd, vs_full, full_labels, halves = [], [], [], {}, []
    a_labels, b_labels = [], []
    skipped = 0
    for tid in pd.unique(ids):
        R = T[ids == tid]
        R = R[R.sum(axis=1) > 0]
        m = len(R)
        if m < 2:
            skipped += 1
            continue
        Rn = R / R.sum(axis=1, keepdims=True)
        full, _ = _labels_and_dist(Rn.sum(0), R.sum(0), np.array(m, float), M, names, rule)
        perm = np.argsort(rng.random((n_splits, m)), axis=1)
        H = np.zeros((n_splits, m))
        H[np.arange(n_splits)[:, None], perm[:, : m // 2]] = 1.0
        out = []
        for h in (H, 1.0 - H):
            out.append(_labels_and_dist(h @ Rn, h @ R, h.sum(axis=1), M, names, rule))
        (la, da), (lb, db) = out
        agree.append(la == lb)
        jsd.append(jensen_shannon(da, db))
        vs_full.append(0.5 * ((la == full) + (lb == full).astype(float)))
        a_labels.append(la)
        b_labels.append(lb)
        full_labels[tid.item() if hasattr(tid, "item") else tid] = str(full)
        halves.append(m / 2)
    if not agree:
        raise DataError("no track has two non-empty responses")
    agree, jsd, vs_full = (np.array(x, dtype=np.float64) for x in (agree, jsd, vs_full))
    A, B = np.array(a_labels), np.array(b_labels)  # (n_tracks, n_splits)
    kappas = np.array([_kappa(A[:, s], B[:, s]) for s in range(n_splits)])
    boot_rng = np.random.default_rng(seed + 1)
    labels = pd.Series(full_labels)
    counts = labels.value_counts()
    k = float(kappas.mean())
    # per-track kappa is undefined; its interval resamples tracks with the splits' labels
    kboot = []
    for _ in range(min(n_boot, 200)):
        pick = boot_rng.integers(0, len(A), len(A))
        kboot.append(np.mean([_kappa(A[pick, s], B[pick, s]) for s in range(0, n_splits, 10)]))
    lo, hi = 50 * (1 - ci), 50 * (1 + ci)
    return {
        "level": level,
        "rule": rule,
        "n_splits": int(n_splits),
        "n_tracks": len(agree),
        "n_skipped": int(skipped),
        "mean_half_size": float(np.mean(halves)),
        "agreement": _summary(agree.mean(axis=0), agree.mean(axis=1), boot_rng, n_boot, ci),
        "kappa": {"value": k,
                  "ci": [float(np.percentile(kboot, lo)), float(np.percentile(kboot, hi))],
                  "split_range": [float(np.percentile(kappas, lo)), float(np.percentile(kappas, hi))]},
        "kappa_spearman_brown": float(2 * k / (1 + k)) if k > -1 else float("nan"),
        "jsd": _summary(jsd.mean(axis=0), jsd.mean(axis=1), boot_rng, n_boot, ci),
        "jsd_kind": "Jensen-Shannon divergence, base 2 (emodist.learn.scoring.jensen_shannon)",
        "half_vs_full": _summary(vs_full.mean(axis=0), vs_full.mean(axis=1), boot_rng, n_boot, ci),
        "chance": 1.0 / (n_classes or len(counts)),
        "majority": float(counts.iloc[0] / counts.sum()),
        "majority_class": str(counts.index[0]),
        "labels": full_labels,
    }


def emotify_ceiling(responses: pd.DataFrame, *, tracks=None, **kwargs) -> dict:
    """:func:`split_half_ceiling` on a ``data.csv`` frame (:func:`read_responses`).

    Parameters
    ----------
    responses : pandas.DataFrame
        One row per response: ``track id`` and the nine GEMS columns.
    tracks : collection of int, optional
        Only these track ids (e.g. the tracks with audio).
    **kwargs
        Passed to :func:`split_half_ceiling`.
    """
    df = responses if tracks is None else responses[responses["track id"].isin(list(tracks))]
    return split_half_ceiling(df["track id"].to_numpy(), df[list(GEMS)].to_numpy(), **kwargs)


def responses_path(source) -> str | None:
    """The ``data.csv`` named by ``source``: the file, or ``data.csv`` in a folder.

    Parameters
    ----------
    source : str or path-like
        A file or folder; may carry the store's ``emotify:`` prefix (its
        ``dataset`` attribute).

    Returns
    -------
    str or None
        The file's path; ``None`` when nothing readable is there.
    """
    text = str(source)
    text = text.removeprefix("emotify:")
    path = os.path.join(text, "data.csv") if os.path.isdir(text) else text
    return path if os.path.isfile(path) else None


def report_ceiling(source, tracks, *, level: str, rule: str, n_classes: int, seed: int = 0,
                   n_splits: int = 200) -> dict:
    """The human ceiling of the evaluated tracks for a report.

    Parameters
    ----------
    source : str or path-like
        An Emotify ``data.csv`` or the folder holding it.
    tracks : sequence of str
        Track ids of the evaluated segments (Emotify ids ``1`` .. ``400``).
    level : {"emotion", "factor"}
    rule : {"listener", "mean"}
    n_classes : int
        Classes of the evaluation (the chance rate).
    seed, n_splits : int
        As in :func:`split_half_ceiling`.

    Returns
    -------
    dict
        :func:`split_half_ceiling`'s figures without the per-track labels,
        plus ``available`` (True), ``source`` and ``n_responses``.

    Raises
    ------
    DataError
        An unreadable file, or no evaluated track in it.
    """
    path = responses_path(source)
    if path is None:
        raise DataError(f"{source}: no Emotify data.csv there")
    df = _read_csv(path)
    wanted = {str(t) for t in tracks}
    df = df[df["track id"].astype(str).isin(wanted)]
    if df.empty:
        raise DataError(f"{path}: none of the evaluated tracks has a response")
    out = emotify_ceiling(df, level=level, rule=rule, n_splits=n_splits, seed=seed, n_classes=n_classes)
    out.pop("labels")
    return {"available": True, "source": path, "n_responses": len(df), **out}


def human_ceiling(ceiling, dataset, data, target: str, seed: int) -> dict:
    """The listeners' split-half agreement on the evaluated tracks, or why there is none.

    Parameters
    ----------
    ceiling : str, False or None
        An Emotify ``data.csv`` or its folder; ``None`` uses ``dataset``
        when it names an existing Emotify folder; ``False`` skips it.
    dataset : str or None
        The store's ``dataset`` attribute.
    data : emodist.learn.data.EvalData
        The evaluated segments (their tracks, label rule and classes).
    target : str
        ``"factors"`` gives the factor-level ceiling, else emotion level.
    seed : int
        Seed of the splits.

    Returns
    -------
    dict
        :func:`report_ceiling`'s figures, or ``available`` False and a
        ``reason``.

    Raises
    ------
    emodist.errors.EmodistError
        A given ``ceiling`` that holds no usable responses (``param="ceiling"``).
    """
    if ceiling is False:
        return {"available": False, "reason": "not asked for"}
    source = ceiling if ceiling is not None else dataset
    if source is None or responses_path(source) is None:
        if ceiling is not None:
            raise EmodistError(f"{ceiling}: no Emotify data.csv there (a file or its folder)",
                               param="ceiling")
        return {"available": False, "reason": "no listener responses (give ceiling= an Emotify data.csv)"}
    level = "factor" if target == "factors" else "emotion"
    try:
        return report_ceiling(source, np.unique(data.track_id), level=level, rule=data.label_rule,
                              n_classes=len(data.classes), seed=seed)
    except DataError as exc:
        if ceiling is not None:
            raise EmodistError(str(exc), param="ceiling") from exc
        return {"available": False, "reason": str(exc)}
