"""Grouped cross-validation of classifier presets on a feature store.

:func:`run_evaluate` reproduces the reference study's experiment on a
consolidated store and goes past it:

* only segments with ``status == 1`` and a kept label are used;
* folds are drawn once with :class:`~sklearn.model_selection.StratifiedGroupKFold`
  (grouped by track, stratified by label, fixed seed) and shared by every
  classifier, feature set and balance mode; the fold of each segment is
  recorded;
* every preprocessing step lives in a scikit-learn pipeline fit on the
  training folds only (:func:`emodist.learn.classifiers.make_pipeline`);
* each (feature set, classifier, balance, fold) fit is an independent task
  run with :mod:`joblib` or on a Dask cluster; each task is seeded, so the
  results do not depend on where or in which order it runs;
* metrics are computed from the out-of-fold predictions at segment level and
  at track level (majority vote over a track's segments).

With ``target="distribution"`` the nine-way vote distribution of each segment
is predicted instead (see :func:`distribution_metrics`).
"""

from __future__ import annotations

import datetime as _dt
import fnmatch
import json
import sys
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold
from sklearn.utils.class_weight import compute_sample_weight
from threadpoolctl import threadpool_limits

from emodist.learn import classifiers as clf
from emodist.store import layout as schema
from emodist._version import __version__
from emodist.learn.distribution import (
    distribution_metrics,
    fit_predict_distribution,
    fold_summary,
    target_distribution,
    train_mean_baseline,
)
from emodist.errors import EmodistError, StoreError

#: Feature groups a ``features`` spec may name; ``both`` concatenates them.
FEATURE_GROUPS = {
    "handcrafted": (schema.HANDCRAFTED,),
    "deep": (schema.DEEP,),
    "both": (schema.HANDCRAFTED, schema.DEEP),
}
_NAME_DIM = {schema.HANDCRAFTED: schema.HANDCRAFTED_FEATURE, schema.DEEP: schema.DEEP_FEATURE}

TARGETS = ("class", "distribution")
BALANCES = ("none", "weights", "both")


# --------------------------------------------------------------------------
# Selecting data.
# --------------------------------------------------------------------------


@dataclass
class FeatureSet:
    """Named selection of feature columns.

    Attributes
    ----------
    name : str
        ``"handcrafted"``, ``"deep"``, ``"both"`` or ``"custom"``.
    columns : list of (str, list of str)
        Store variable and the feature names taken from it, in order.
    """

    name: str
    columns: list[tuple[str, list[str]]]

    @property
    def names(self) -> list[str]:
        """All feature names, in column order."""
        return [n for _, names in self.columns for n in names]


def available_features(ds) -> dict[str, list[str]]:
    """Feature names of each feature variable the store holds."""
    return {
        var: [str(n) for n in schema.decode_strings(ds[dim].values)]
        for var, dim in _NAME_DIM.items()
        if var in ds
    }


def resolve_feature_sets(spec, available: dict[str, list[str]]) -> list[FeatureSet]:
    """Turn a ``features`` spec into feature sets.

    Parameters
    ----------
    spec : str or sequence of str
        Group names (``handcrafted``, ``deep``, ``both``), each giving one
        set, and/or feature names or glob patterns (``mfcc_*``), which
        together give one set called ``custom``.
    available : dict
        Output of :func:`available_features`.

    Returns
    -------
    list of FeatureSet

    Raises
    ------
    StoreError
        A named group is not in the store.
    EmodistError
        A name or pattern matches no feature.
    """
    tokens = [spec] if isinstance(spec, str) else list(spec)
    if not tokens:
        raise EmodistError("no feature set given")
    sets: list[FeatureSet] = []
    patterns: list[str] = []
    for tok in tokens:
        if tok not in FEATURE_GROUPS:
            patterns.append(tok)
            continue
        missing = [v for v in FEATURE_GROUPS[tok] if v not in available]
        if missing:
            raise StoreError(
                f"the store has no {missing[0]} features; extract them or choose "
                f"{' / '.join(available) or 'another store'}"
            )
        if all(s.name != tok for s in sets):
            sets.append(FeatureSet(tok, [(v, list(available[v])) for v in FEATURE_GROUPS[tok]]))
    if patterns:
        chosen: dict[str, list[str]] = {v: [] for v in available}
        for pat in patterns:
            hits = [(v, n) for v, names in available.items() for n in names if fnmatch.fnmatchcase(n, pat)]
            if not hits:
                raise EmodistError(f"feature {pat!r} matches no feature in the store")
            for v, n in hits:
                if n not in chosen[v]:
                    chosen[v].append(n)
        sets.append(FeatureSet("custom", [(v, ns) for v, ns in chosen.items() if ns]))
    return sets


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
    from emodist.data.catalog import dominant_emotion

    labels = dominant_emotion(votes, votes_mean, rule)
    keep = set(keep)
    return np.array([lab if lab in keep else "" for lab in labels], dtype=object)


@dataclass
class EvalData:
    """Segments taken into an evaluation, in store order.

    Attributes
    ----------
    X : dict
        Feature-set name -> float64 matrix ``(n, n_features)``.
    sets : list of FeatureSet
    y : numpy.ndarray of str
        Labels.
    segment_id, track_id : numpy.ndarray of str
    distribution : numpy.ndarray or None
        ``(n, 9)`` target distributions (``target="distribution"``).
    label_rule : str
    excluded : dict
        Reason -> number of segments left out.
    """

    X: dict[str, np.ndarray]
    sets: list[FeatureSet]
    y: np.ndarray
    segment_id: np.ndarray
    track_id: np.ndarray
    distribution: np.ndarray | None
    label_rule: str
    excluded: dict[str, int] = field(default_factory=dict)


def stored_label_rule(attrs: dict) -> str:
    """Label rule the store's labels were made with (``listener`` if unknown)."""
    if attrs.get("label_rule") in ("listener", "mean"):
        return attrs["label_rule"]
    try:
        return json.loads(attrs.get("config", "{}")).get("label_rule", "listener")
    except (TypeError, ValueError):
        return "listener"


def load_data(ds, features="handcrafted", label_rule: str | None = None,
              target: str = "class") -> EvalData:
    """Read the evaluated segments of a store into memory.

    Parameters
    ----------
    ds : xarray.Dataset
        An opened store (:func:`emodist.store.zarrio.open_store`).
    features : str or sequence of str
        Feature spec (see :func:`resolve_feature_sets`).
    label_rule : {"listener", "mean"} or None
        ``None`` keeps the stored labels; a rule other than the stored one
        recomputes them from ``votes`` / ``votes_mean``.
    target : {"class", "distribution"}
        Whether the vote distributions are needed.

    Returns
    -------
    EvalData

    Raises
    ------
    StoreError
        No finished segments, missing vote profiles, non-finite features.
    """
    if target not in TARGETS:
        raise EmodistError(f"unknown target {target!r}; use class or distribution")
    if label_rule not in (None, "listener", "mean"):
        raise EmodistError(f"unknown label rule {label_rule!r}; use listener or mean")
    sets = resolve_feature_sets(features, available_features(ds))
    status = np.asarray(ds[schema.STATUS].values)
    labels = np.array([str(v) for v in schema.decode_strings(ds["label"].values)], dtype=object)
    stored_rule = stored_label_rule(ds.attrs)
    rule = label_rule or stored_rule
    needs_votes = rule != stored_rule or target == "distribution"
    if needs_votes and not (schema.VOTES in ds and schema.VOTES_MEAN in ds):
        raise StoreError("the store keeps no vote profiles; cannot recompute labels or distributions")
    votes = np.asarray(ds[schema.VOTES].values, np.float64) if needs_votes else None
    votes_mean = np.asarray(ds[schema.VOTES_MEAN].values, np.float64) if needs_votes else None
    if rule != stored_rule:
        keep = {lab for lab in labels if lab}
        labels = recompute_labels(votes, votes_mean, rule, keep)
    done = status == schema.STATUS_DONE
    labelled = labels != ""
    excluded = {
        "not extracted (status != 1)": int((~done).sum()),
        "class dropped at extraction": int((done & ~labelled).sum()),
    }
    take = done & labelled
    dist = None
    if target == "distribution":
        dist_all = target_distribution(votes, votes_mean, rule)
        no_votes = dist_all.sum(axis=1) == 0
        excluded["no votes"] = int((take & no_votes).sum())
        take &= ~no_votes
        dist = dist_all[take]
    idx = np.flatnonzero(take)
    if len(idx) == 0:
        raise StoreError("the store has no finished, labelled segments to evaluate")
    X = {}
    for fs in sets:
        parts = []
        for var, names in fs.columns:
            dim = _NAME_DIM[var]
            block = ds[var].isel({schema.SEGMENT: idx}).sel({dim: names})
            parts.append(np.asarray(block.values, np.float64))
        mat = np.concatenate(parts, axis=1)
        bad = ~np.isfinite(mat)
        if bad.any():
            raise StoreError(
                f"{int(bad.any(axis=1).sum())} finished segments have non-finite {fs.name} features"
            )
        X[fs.name] = mat
    return EvalData(
        X=X,
        sets=sets,
        y=labels[idx],
        segment_id=np.array([str(v) for v in schema.decode_strings(ds["segment_id"].values[idx])], object),
        track_id=np.array([str(v) for v in schema.decode_strings(ds["track_id"].values[idx])], object),
        distribution=dist,
        label_rule=rule,
        excluded=excluded,
    )


# --------------------------------------------------------------------------
# Folds.
# --------------------------------------------------------------------------


def make_folds(y, groups, n_folds: int = 5, seed: int = 0) -> np.ndarray:
    """Fold number of each sample, grouped by ``groups`` and stratified by ``y``.

    Parameters
    ----------
    y : array_like
        Labels (strata).
    groups : array_like
        Group of each sample (the track); a group never spans two folds.
    n_folds : int
        Number of folds (at least 2, at most the number of groups).
    seed : int
        Shuffling seed of :class:`~sklearn.model_selection.StratifiedGroupKFold`.

    Returns
    -------
    numpy.ndarray of int, shape (n,)
        Test fold of each sample, ``0 .. n_folds - 1``.

    See Also
    --------
    fold_splitter : which scikit-learn splitter is used.
    """
    y = np.asarray(y)
    groups = np.asarray(groups)
    n_groups = len(np.unique(groups))
    if n_folds < 2:
        raise EmodistError(f"--folds must be at least 2, got {n_folds}")
    if n_groups < n_folds:
        raise EmodistError(f"{n_groups} tracks cannot fill {n_folds} folds; use --folds {max(2, n_groups)} or fewer")
    cv = fold_splitter(y, groups, n_folds, seed)
    folds = np.full(len(y), -1, dtype=np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for k, (_, test) in enumerate(cv.split(np.zeros(len(y)), y, groups)):
            folds[test] = k
    check_folds(folds, groups)
    return folds


def fold_splitter(y, groups, n_folds: int, seed: int):
    """The splitter :func:`make_folds` uses.

    :class:`~sklearn.model_selection.StratifiedGroupKFold` when some class
    has at least ``n_folds`` tracks; otherwise stratification is impossible
    and :class:`~sklearn.model_selection.GroupKFold` (shuffled) is used.
    """
    tracks_per_class = pd.DataFrame({"y": np.asarray(y), "g": np.asarray(groups)}).groupby("y")["g"].nunique()
    if tracks_per_class.max() >= n_folds:
        return StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return GroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)


def describe_splitter(splitter) -> str:
    """One line naming the splitter, for the report."""
    name = type(splitter).__name__
    why = "" if name.startswith("Stratified") else " (no class has a track per fold: not stratified)"
    return f"{name}(n_splits={splitter.n_splits}, shuffle=True) grouped by track{why}"


def check_folds(folds, groups) -> None:
    """Raise if some group has samples in two folds or a sample has no fold."""
    frame = pd.DataFrame({"fold": np.asarray(folds), "group": np.asarray(groups)})
    if (frame["fold"] < 0).any():
        raise EmodistError("some segments were assigned to no fold")
    spread = frame.groupby("group")["fold"].nunique()
    if (spread > 1).any():
        raise EmodistError(f"track {spread[spread > 1].index[0]!r} is in two folds")


# --------------------------------------------------------------------------
# Tasks (module-level so that joblib and Dask can ship them).
# --------------------------------------------------------------------------


def fit_predict(X, y, folds, fold: int, preset_key: str, seed: int, weights: bool) -> np.ndarray:
    """Fit a preset on every fold but ``fold`` and predict ``fold``.

    Parameters
    ----------
    X : numpy.ndarray
        All samples.
    y : numpy.ndarray
        All labels.
    folds : numpy.ndarray
        Fold of each sample.
    fold : int
        Held-out fold.
    preset_key : str
        Classifier preset.
    seed : int
        Random state of the model.
    weights : bool
        Weight training samples inversely to their class frequency.

    Returns
    -------
    numpy.ndarray
        Predictions for the samples of ``fold``, in sample order.

    Notes
    -----
    Native thread pools (OpenMP, BLAS) are limited to one thread: the
    parallelism is across tasks, and a task that spreads over every core of
    a busy machine runs many times slower.
    """
    train, test = folds != fold, folds == fold
    model = clf.make_pipeline(preset_key, seed)
    kw = {}
    if weights:
        kw["model__sample_weight"] = compute_sample_weight("balanced", y[train])
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore")
        model.fit(X[train], y[train], **kw)
        return np.asarray(model.predict(X[test]), dtype=object)


@dataclass(frozen=True)
class FitFailure:
    """A preset that could not be fit on a fold (too few samples for it...)."""

    message: str


def fit_predict_or_failure(**kwargs):
    """:func:`fit_predict`, returning a :class:`FitFailure` instead of raising.

    Some presets cannot be fit on some data (a discriminant on fewer samples
    than classes, ...); that preset is reported as failed and the others
    still run.
    """
    try:
        return fit_predict(**kwargs)
    except (ValueError, np.linalg.LinAlgError) as exc:
        text = str(exc).strip().splitlines()
        return FitFailure(f"{type(exc).__name__}: {text[0] if text else ''}")


def run_tasks(func, common: dict, tasks: list[dict], *, client=None, n_jobs: int | None = -1,
              on_done=None) -> list:
    """Run ``func(**common, **task)`` for every task; results in task order.

    With a :class:`distributed.Client`, the large ``common`` arguments are
    scattered once and the tasks are submitted to the cluster; otherwise
    :mod:`joblib` runs them (``n_jobs`` processes, 1 = in this process).
    ``on_done()`` is called once per finished task (progress display).
    """
    tick = on_done or (lambda: None)
    if client is not None:
        from distributed import as_completed

        shared = {k: client.scatter(v, broadcast=True) for k, v in common.items()}
        futures = [client.submit(func, **shared, **t, pure=False) for t in tasks]
        for _ in as_completed(futures):
            tick()
        return client.gather(futures)
    from joblib import Parallel, delayed

    out = []
    for result in Parallel(n_jobs=n_jobs, return_as="generator")(
        delayed(func)(**common, **t) for t in tasks
    ):
        out.append(result)
        tick()
    return out


# --------------------------------------------------------------------------
# Metrics.
# --------------------------------------------------------------------------


def confusion(y_true, y_pred, classes) -> dict:
    """Confusion matrix as in the study: rows true class, row-normalised percent.

    Returns
    -------
    dict
        ``classes``, ``counts`` (int matrix), ``percent`` (rows sum to 100, or
        0 for an empty row), ``tpr`` and ``fnr`` (percent, per true class).
    """
    counts = confusion_matrix(np.asarray(y_true), np.asarray(y_pred), labels=list(classes))
    rows = counts.sum(axis=1, keepdims=True)
    pct = np.divide(100.0 * counts, rows, out=np.zeros(counts.shape), where=rows > 0)
    tpr = np.diag(pct).copy()
    fnr = np.where(rows[:, 0] > 0, 100.0 - tpr, 0.0)
    return {
        "classes": list(classes),
        "counts": counts.tolist(),
        "percent": pct.round(4).tolist(),
        "tpr": tpr.round(4).tolist(),
        "fnr": fnr.round(4).tolist(),
    }


def fold_scores(y_true, y_pred) -> dict[str, float]:
    """Accuracy, balanced accuracy and macro-F1 of one fold's predictions."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "accuracy": float(accuracy_score(y_true, y_pred)),
            "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
            "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        }


def classification_metrics(y_true, y_pred, folds, classes) -> dict:
    """Per-fold mean/std and pooled metrics, per-class scores and confusion.

    Parameters
    ----------
    y_true, y_pred : array_like
        Out-of-fold labels and predictions of every sample.
    folds : array_like
        Fold of each sample.
    classes : sequence of str
        Class order of the per-class scores and confusion matrix.

    Returns
    -------
    dict
        ``accuracy``, ``balanced_accuracy``, ``macro_f1`` (each ``mean``,
        ``std``, ``folds`` and ``pooled``), ``per_class`` and ``confusion``.
    """
    y_true, y_pred, folds = np.asarray(y_true), np.asarray(y_pred), np.asarray(folds)
    per_fold = [fold_scores(y_true[folds == k], y_pred[folds == k]) for k in np.unique(folds)]
    pooled = fold_scores(y_true, y_pred)
    out = {}
    for m in ("accuracy", "balanced_accuracy", "macro_f1"):
        out[m] = fold_summary([f[m] for f in per_fold])
        out[m]["pooled"] = pooled[m]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p, r, f, s = precision_recall_fscore_support(
            y_true, y_pred, labels=list(classes), zero_division=0
        )
    out["per_class"] = {
        c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
        for i, c in enumerate(classes)
    }
    out["confusion"] = confusion(y_true, y_pred, classes)
    out["n"] = len(y_true)
    return out


def majority_vote(pred, groups, classes) -> pd.Series:
    """Most frequent prediction per group; ties go to the first class in ``classes``.

    Returns
    -------
    pandas.Series
        Index: group (in first-appearance order); values: predicted class.
    """
    order = {c: i for i, c in enumerate(classes)}
    frame = pd.DataFrame({"g": np.asarray(groups), "p": np.asarray(pred)})
    counts = frame.groupby(["g", "p"], sort=False).size().rename("n").reset_index()
    counts["rank"] = counts["p"].map(order)
    counts = counts.sort_values(["g", "n", "rank"], ascending=[True, False, True], kind="stable")
    best = counts.drop_duplicates("g").set_index("g")["p"]
    return best.reindex(pd.unique(frame["g"]))


def track_level(y_true, y_pred, folds, track_id, classes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Track labels, majority-vote predictions and folds, one row per track."""
    frame = pd.DataFrame({"t": np.asarray(track_id), "y": np.asarray(y_true), "f": np.asarray(folds)})
    first = frame.drop_duplicates("t").set_index("t")
    votes = majority_vote(y_pred, track_id, classes)
    return first["y"].to_numpy(), votes.loc[first.index].to_numpy(), first["f"].to_numpy()


def baseline_rates(y, classes) -> dict:
    """Random-guess rate (1 / classes) and majority-class rate of labels ``y``."""
    counts = pd.Series(np.asarray(y)).value_counts()
    return {
        "chance": 1.0 / len(classes),
        "majority": float(counts.iloc[0] / counts.sum()),
        "majority_class": str(counts.index[0]),
    }


# --------------------------------------------------------------------------
# The driver.
# --------------------------------------------------------------------------


def _balance_modes(balance: str) -> list[str]:
    if balance not in BALANCES:
        raise EmodistError(f"unknown balance {balance!r}; use none, weights or both")
    return ["none", "weights"] if balance == "both" else [balance]


def _store_info(store, ds) -> dict:
    attrs = dict(ds.attrs)
    keep = ("emodist_version", "created", "dataset", "feature_names_version", "model_sha256", "label_rule")
    info = {k: attrs[k] for k in keep if k in attrs}
    info["url"] = store if isinstance(store, str) else "<in-memory dataset>"
    if "config" in attrs:
        try:
            info["config"] = json.loads(attrs["config"])
        except (TypeError, ValueError):
            info["config"] = attrs["config"]
    try:
        info["n_failures"] = len(json.loads(attrs.get("failures", "[]")))
    except (TypeError, ValueError):
        pass
    info["n_segments"] = int(ds.sizes[schema.SEGMENT])
    return info


def _open(store, storage_options):
    if not isinstance(store, str):
        return store
    from emodist.store.zarrio import open_store

    return open_store(store, storage_options)


class FitProgress:
    """A progress bar over ``total`` fits (done/total, rate, ETA), or nothing."""

    def __init__(self, enabled: bool, total: int):
        from emodist.progress import progress_bar

        self._bar = progress_bar(enabled, "fits", "fit").__enter__()
        self._task = None if self._bar is None else self._bar.add_task("fits", total=total)

    def tick(self) -> None:
        if self._bar is not None:
            self._bar.update(self._task, advance=1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _result_head(fs: FeatureSet, p: clf.Preset, balance: str, seconds: float) -> dict:
    return {
        "features": fs.name,
        "n_features": len(fs.names),
        "classifier": p.key,
        "name": p.name,
        "family": p.family,
        "params": p.params,
        "balance": balance,
        "seconds": round(float(seconds), 3),
    }


def _class_results(data, folds, presets, modes, seed, client, n_jobs, classes, progress):
    tasks, skipped = [], []
    for fs in data.sets:
        for p in presets:
            for mode in modes:
                if mode == "weights" and not clf.supports_weights(p):
                    skipped.append({"features": fs.name, "classifier": p.key, "balance": mode,
                                    "reason": "no per-sample weights in this model"})
                    continue
                for k in range(int(folds.max()) + 1):
                    tasks.append({"fs": fs.name, "preset": p, "mode": mode, "fold": k})
    by_set: dict[str, list] = {}
    for t in tasks:
        by_set.setdefault(t["fs"], []).append(t)
    preds: dict[tuple, np.ndarray] = {}
    failed: set[tuple] = set()
    bar = FitProgress(progress, len(tasks))
    for name, group in by_set.items():
        t0 = time.perf_counter()
        out = run_tasks(
            fit_predict_or_failure,
            {"X": data.X[name], "y": data.y, "folds": folds},
            [{"fold": t["fold"], "preset_key": t["preset"].key, "seed": seed,
              "weights": t["mode"] == "weights"} for t in group],
            client=client, n_jobs=n_jobs, on_done=bar.tick,
        )
        per_task = (time.perf_counter() - t0) / max(1, len(group))
        for t, pred in zip(group, out):
            key = (name, t["preset"].key, t["mode"])
            if isinstance(pred, FitFailure):
                failed.add(key)
                skipped.append({"features": name, "classifier": t["preset"].key,
                                "balance": t["mode"],
                                "reason": f"fit failed on fold {t['fold']}: {pred.message}"})
                continue
            full = preds.setdefault(key, np.empty(len(data.y), dtype=object))
            full[folds == t["fold"]] = pred
            preds[key + ("seconds",)] = preds.get(key + ("seconds",), 0.0) + per_task
        if progress:
            _say(f"evaluated {len(group)} fits on {name} features in {time.perf_counter() - t0:.1f} s")
    bar.close()
    results = []
    seg_rates = baseline_rates(data.y, classes)
    t_true, _, t_folds = track_level(data.y, data.y, folds, data.track_id, classes)
    for fs in data.sets:
        for p in presets:
            for mode in modes:
                key = (fs.name, p.key, mode)
                if key not in preds or key in failed:
                    continue
                pred = preds[key]
                _, t_pred, _ = track_level(data.y, pred, folds, data.track_id, classes)
                results.append({
                    **_result_head(fs, p, mode, preds[key + ("seconds",)]),
                    "segment": classification_metrics(data.y, pred, folds, classes),
                    "track": classification_metrics(t_true, t_pred, t_folds, classes),
                    "predictions": pred.tolist(),
                })
    baselines = {"segment": seg_rates, "track": baseline_rates(t_true, classes)}
    return results, skipped, baselines


def _distribution_results(data, folds, presets, seed, client, n_jobs, progress):
    results = []
    baseline = distribution_metrics(data.distribution, train_mean_baseline(data.distribution, folds), folds)
    n_folds = int(folds.max()) + 1
    bar = FitProgress(progress, len(data.sets) * len(presets) * n_folds)
    for fs in data.sets:
        tasks = [{"fold": k, "preset_key": p.key, "seed": seed}
                 for p in presets for k in range(n_folds)]
        t0 = time.perf_counter()
        out = run_tasks(fit_predict_distribution,
                        {"X": data.X[fs.name], "P": data.distribution, "folds": folds},
                        tasks, client=client, n_jobs=n_jobs, on_done=bar.tick)
        per_task = (time.perf_counter() - t0) / max(1, len(tasks))
        for p in presets:
            pred = np.zeros_like(data.distribution)
            for t, o in zip(tasks, out):
                if t["preset_key"] == p.key:
                    pred[folds == t["fold"]] = o
            results.append({
                **_result_head(fs, p, "none", per_task * (int(folds.max()) + 1)),
                "distribution": distribution_metrics(data.distribution, pred, folds),
            })
        if progress:
            _say(f"evaluated {len(tasks)} fits on {fs.name} features in {time.perf_counter() - t0:.1f} s")
    bar.close()
    return results, baseline


def rank_results(results: list[dict], metric: str = "accuracy") -> list[dict]:
    """Results sorted best first by a segment metric's fold mean (JSD: lowest first)."""
    if results and "distribution" in results[0]:
        return sorted(results, key=lambda r: r["distribution"]["jsd"]["mean"])
    return sorted(results, key=lambda r: -r["segment"][metric]["mean"])


def run_evaluate(
    store,
    *,
    features="handcrafted",
    classifiers=("all",),
    folds: int = 5,
    seed: int = 0,
    balance: str = "none",
    label_rule: str | None = None,
    target: str = "class",
    out: str | None = None,
    client=None,
    n_jobs: int | None = -1,
    storage_options: dict | None = None,
    progress: bool = False,
) -> dict:
    """Grouped cross-validation of classifier presets on a feature store.

    Parameters
    ----------
    store : str or xarray.Dataset
        Store URL (opened with :func:`emodist.store.zarrio.open_store`) or an
        opened Dataset in the store layout.
    features : str or sequence of str
        Feature spec (see :func:`resolve_feature_sets`).
    classifiers : sequence of str
        Preset keys or names; ``"all"`` / ``"quick"`` are shorthands.  For
        ``target="distribution"`` the distribution presets
        (:data:`emodist.learn.classifiers.DISTRIBUTION_PRESETS`).
    folds : int
        Number of grouped folds.
    seed : int
        Seed of the folds and of every model.
    balance : {"none", "weights", "both"}
        Class weighting; ``both`` evaluates each preset both ways.
    label_rule : {"listener", "mean"} or None
        ``None`` uses the stored labels.
    target : {"class", "distribution"}
        Predict the dominant emotion or the vote distribution.
    out : str, optional
        Folder for ``report.json``, ``report.md`` and the figures.
    client : distributed.Client, optional
        Run the fits on this Dask cluster instead of :mod:`joblib`.
    n_jobs : int or None
        joblib processes when no client is given (-1: all cores).
    storage_options : dict, optional
        Filesystem options for ``store``.
    progress : bool
        Print one line per feature set on stderr.

    Returns
    -------
    dict
        The report (what ``report.json`` holds): ``settings``, ``store``,
        ``data``, ``folds``, ``results`` (ranked), ``skipped``, ``baselines``.
    """
    if target not in TARGETS:
        raise EmodistError(f"unknown target {target!r}; use class or distribution")
    modes = _balance_modes(balance)
    if target == "distribution":
        presets = clf.resolve_distribution_presets(classifiers)
    else:
        presets = clf.resolve_presets(classifiers)
    ds = _open(store, storage_options)
    data = load_data(ds, features, label_rule, target)
    classes = sorted(set(data.y), key=lambda c: schema.GEMS.index(c) if c in schema.GEMS else 99)
    if target == "class" and len(classes) < 2:
        raise EmodistError(f"only one class ({classes[0]}) among the evaluated segments")
    fold = make_folds(data.y, data.track_id, folds, seed)
    report = {
        "emodist_version": __version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "settings": {
            "features": [fs.name for fs in data.sets],
            "feature_names": {fs.name: fs.names for fs in data.sets if fs.name == "custom"},
            "classifiers": [p.key for p in presets],
            "folds": int(folds),
            "seed": int(seed),
            "balance": balance,
            "label_rule": data.label_rule,
            "target": target,
            "cv": describe_splitter(fold_splitter(data.y, data.track_id, folds, seed)),
            "executor": "dask" if client is not None else f"joblib(n_jobs={n_jobs})",
        },
        "store": _store_info(store, ds),
        "data": {
            "n_segments": len(data.y),
            "n_tracks": len(np.unique(data.track_id)),
            "classes": classes,
            "class_counts": {c: int((data.y == c).sum()) for c in classes},
            "excluded": data.excluded,
        },
        "folds": {
            "segment_id": data.segment_id.tolist(),
            "track_id": data.track_id.tolist(),
            "label": data.y.tolist(),
            "fold": fold.tolist(),
        },
    }
    t0 = time.perf_counter()
    if target == "class":
        results, skipped, baselines = _class_results(
            data, fold, presets, modes, seed, client, n_jobs, classes, progress)
        report["skipped"] = skipped
        report["baselines"] = baselines
    else:
        results, baseline = _distribution_results(data, fold, presets, seed, client, n_jobs, progress)
        report["skipped"] = []
        report["baselines"] = {"train_mean": baseline}
    report["seconds"] = round(time.perf_counter() - t0, 3)
    report["results"] = rank_results(results)
    if out is not None:
        from emodist.learn.report import write_report

        report["files"] = write_report(report, out)
    return report
