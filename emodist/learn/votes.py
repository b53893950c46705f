"""Continuous and multi-label targets from a store's listener votes, and their report.

Each Emotify segment carries its track's two nine-way vote profiles
(:mod:`emodist.data.labels`; the store's ``votes`` and ``votes_mean``):

* ``listener``: each response's ticks divided by how many it ticked,
  averaged; the nine shares sum to 1 (the profile the label rule uses);
* ``mean``: the share of listeners who ticked each emotion (0..1 each).

:func:`evaluate_votes` predicts from them

* ``shares``: the nine shares as continuous targets
  (:mod:`emodist.learn.regression`);
* ``tags``: multi-label tags (:mod:`emodist.learn.multilabel`), each
  track's top three emotions (``tag_rule="top3"``) or every emotion at
  least ``min_share`` of the listeners chose (``tag_rule="threshold"``,
  on the ``mean`` profile);
* any other names: per-segment numeric variables of the store (a column of
  time-stamped annotations averaged per segment,
  :func:`emodist.data.annotations.segment_means`) or single emotions' shares.

The outer folds are those of the classification evaluation
(:func:`emodist.learn.folds.make_folds`: grouped by the store's ``group``,
else ``track_id``, stratified by the stored label); hyper-parameters are
chosen inside the training folds.  :func:`write_vote_report` writes
``report.json`` and ``report.md``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emodist.errors import EmodistError, StoreError
from emodist.learn.data import CONTEXTS, SEGMENT, load_data, open_dataset, track_context
from emodist.learn.folds import fold_groups, make_folds
from emodist.learn.multilabel import evaluate_multilabel, threshold_tags, top_k_tags
from emodist.learn.regression import REGRESSION_METRICS, evaluate_regression
from emodist.learn.spec import EvaluationSpec, check_choice, target_kind
from emodist.learn.tracks import segment_groups

__all__ = [
    "DEFAULT_PRESETS",
    "PROFILES",
    "TAG_RULES",
    "VOTE_TARGETS",
    "VoteData",
    "evaluate_votes",
    "json_safe",
    "load_vote_data",
    "run_votes",
    "summary_lines",
    "vote_report_markdown",
    "vote_tags",
    "vote_targets",
    "write_vote_report",
]

#: Vote profiles: listener-normalised shares, or the share of listeners per emotion.
PROFILES = ("listener", "mean")
#: How tags are made from the votes.
TAG_RULES = ("top3", "threshold")
#: The targets of :func:`evaluate_votes` beyond per-segment variables.
VOTE_TARGETS = ("shares", "tags")
#: Presets evaluated when none are given, per kind of target.
DEFAULT_PRESETS = {"regression": ("ridge",), "multilabel": ("logistic-regression",)}


@dataclass
class VoteData:
    """The evaluated segments of a store with their vote profiles.

    Attributes
    ----------
    X : dict
        Feature-set name -> float64 matrix ``(n, n_features)``.
    track_id, segment_id, groups : numpy.ndarray of str
        ``groups``: the folds' groups (``group``, else ``track_id``).
    labels : numpy.ndarray of str
        Stored dominant emotion (the folds' strata).
    profiles : dict
        ``"listener"`` / ``"mean"`` -> ``(n, 9)`` vote profile.
    emotions : tuple of str
        Column names of the profiles.
    ds : xarray.Dataset
        The opened store (for other target variables).
    index : numpy.ndarray of int
        Store positions of the rows.
    sets : list of FeatureSet
        The resolved feature sets (:func:`emodist.learn.data.resolve_feature_sets`).
    group_by : str
        What the folds' groups are (:func:`emodist.learn.folds.fold_groups`).
    """

    X: dict[str, np.ndarray]
    track_id: np.ndarray
    segment_id: np.ndarray
    groups: np.ndarray
    labels: np.ndarray
    profiles: dict[str, np.ndarray]
    emotions: tuple[str, ...]
    ds: object
    index: np.ndarray
    sets: list = field(default_factory=list)
    group_by: str = "track_id"


def load_vote_data(store, features=None, storage_options: dict | None = None) -> VoteData:
    """Segments of a store with features done and votes, and both vote profiles.

    Parameters
    ----------
    store : str or xarray.Dataset
    features : str or sequence of str, optional
        Feature-set spec (:func:`emodist.learn.data.resolve_feature_sets`).
    storage_options : dict, optional
        fsspec options of a remote store.

    Raises
    ------
    StoreError
        The store keeps no vote profiles or has no usable segment.
    """
    ds = open_dataset(store, storage_options)
    data = load_data(ds, features, target="distribution")
    ids = [str(s) for s in np.asarray(ds[SEGMENT].values)]
    pos = {s: i for i, s in enumerate(ids)}
    index = np.array([pos[s] for s in data.segment_id], dtype=np.int64)
    profiles = {p: np.asarray(ds[v].isel({SEGMENT: index}).values, np.float64)
                for p, v in (("listener", "votes"), ("mean", "votes_mean"))}
    groups, group_by = fold_groups(data.group, data.track_id)
    return VoteData(X=data.X, track_id=data.track_id, segment_id=data.segment_id,
                    groups=np.asarray(groups, dtype=object), labels=data.y, profiles=profiles,
                    emotions=tuple(data.emotions), ds=ds, index=index, sets=list(data.sets),
                    group_by=group_by)


def vote_tags(data: VoteData, *, rule: str = "top3", profile: str = "listener", k: int = 3,
              min_share: float = 0.5) -> np.ndarray:
    """0/1 tags of each segment from its track's votes.

    ``top3``: the ``k`` largest shares of ``profile`` (ties: GEMS order);
    ``threshold``: emotions that at least ``min_share`` of the listeners
    chose (the ``mean`` profile, whatever ``profile`` says).
    """
    check_choice("tag_rule", rule, TAG_RULES)
    check_choice("profile", profile, PROFILES)
    if rule == "top3":
        return top_k_tags(data.profiles[profile], k=k)
    return threshold_tags(data.profiles["mean"], min_share)


def _column_targets(data: VoteData, names, profile: str) -> np.ndarray:
    cols = []
    for name in names:
        if name in data.emotions:
            cols.append(data.profiles[profile][:, data.emotions.index(name)])
            continue
        if name not in data.ds.variables or data.ds[name].dims != (SEGMENT,):
            raise EmodistError(f"{name!r} is neither an emotion nor a per-segment variable of the "
                               "store", param="target")
        values = np.asarray(data.ds[name].isel({SEGMENT: data.index}).values)
        if not np.issubdtype(values.dtype, np.number):
            raise EmodistError(f"store variable {name!r} is not numeric", param="target")
        cols.append(values.astype(np.float64))
    return np.column_stack(cols)


def vote_targets(data: VoteData, names, profile: str = "listener") -> tuple[np.ndarray, list[str], np.ndarray]:
    """The continuous targets of each segment, and which segments have all of them.

    Parameters
    ----------
    data : VoteData
    names : sequence of str
        ``["shares"]`` (the nine shares of ``profile``) or emotions /
        per-segment numeric store variables.
    profile : {"listener", "mean"}

    Returns
    -------
    Y : numpy.ndarray, shape (n, n_targets)
    names : list of str
        The target columns.
    keep : numpy.ndarray of bool, shape (n,)
        Segments with a finite value of every target.

    Raises
    ------
    EmodistError
        A name that is neither an emotion nor a numeric per-segment variable.
    StoreError
        No segment has every target.
    """
    names = list(names)
    if names == ["shares"]:
        Y, tnames = data.profiles[profile], list(data.emotions)
    else:
        Y, tnames = _column_targets(data, names, profile), names
    keep = np.isfinite(Y).all(axis=1)
    if not keep.any():
        raise StoreError("no evaluated segment has a finite value of every target")
    return Y, tnames, keep


def evaluate_votes(store, spec: EvaluationSpec | None = None, *, target="shares", features=None,
                   presets=None, n_folds: int = 5,
                   seed: int = 0, profile: str = "listener", tag_rule: str = "top3", k: int = 3,
                   min_share: float = 0.5, min_tracks: int = 10, inner_folds: int = 4,
                   joint: bool = False, plots_dir=None, group_by: str | None = None,
                   copies=None, context: str = "none") -> dict:
    """Cross-validated vote-share regression or tag prediction, per feature set.

    Parameters
    ----------
    store : str or xarray.Dataset
    spec : EvaluationSpec, optional
        What to evaluate (a ``shares``, ``tags`` or column target); without
        it ``target``, ``features``, ``presets``, ``n_folds`` and ``seed``
        make one.  It is recorded in the result (``evaluation_spec``).
    target : str or sequence of str
        ``"shares"``, ``"tags"``, or names of emotions / per-segment store
        variables (regression targets).
    features : str or sequence of str, optional
        Feature-set spec; default every group alone and all joined.
    presets : sequence of str, optional
        Regression or multi-label preset keys (default: ridge / logistic
        regression).
    n_folds, seed : int
        Outer grouped folds and their seed.
    profile : {"listener", "mean"}
        Vote profile of the shares and of top-k tags.
    tag_rule : {"top3", "threshold"}
    k : int
        Tags per track of ``top3``.
    min_share : float
        Threshold of ``threshold`` tags.
    min_tracks : int
        Tags with fewer positive or negative tracks are dropped.
    inner_folds : int
        Grouped folds of the in-fold hyper-parameter search.
    joint : bool
        Regression: one model for all targets (multi-output presets).
    plots_dir : path, optional
        Where the regression scatter plots go (one subfolder per feature set).
    context : {"none", "track"}
        ``"track"``: each segment's features joined with its track's mean
        features (:func:`emodist.learn.data.track_context`).
    group_by : str, optional
        The per-track column the folds are grouped by
        (:func:`emodist.learn.tracks.segment_groups`); default the store's ``group``.
    copies : list of list of str, optional
        Track ids of recordings stored more than once, kept in one group.

    Returns
    -------
    dict
        ``kind`` (``"regression"`` / ``"multilabel"``), ``config``,
        ``evaluation_spec`` (:meth:`EvaluationSpec.to_dict
        <emodist.learn.spec.EvaluationSpec.to_dict>`),
        ``n_segments``, ``n_tracks`` and ``sets``: feature-set name -> the
        output of :func:`~emodist.learn.regression.evaluate_regression` or
        :func:`~emodist.learn.multilabel.evaluate_multilabel`.
    """
    if spec is None:
        spec = EvaluationSpec(features=features, target=target, folds=n_folds, seed=seed,
                              classifiers=presets or DEFAULT_PRESETS.get(target_kind(target)),
                              ceiling=False, group_by=group_by)
    kind = spec.kind
    if kind not in DEFAULT_PRESETS:
        raise EmodistError(f"target {spec.target} is a class target; evaluate it with run_evaluate",
                           param="target")
    names = [spec.target] if isinstance(spec.target, str) else list(spec.target)
    features, presets, n_folds, seed = spec.features, spec.classifiers, spec.folds, spec.seed
    group_by = spec.group_by if group_by is None else group_by
    check_choice("profile", profile, PROFILES)
    data = load_vote_data(store, features)
    if group_by is not None or copies:
        data.groups, _ = segment_groups(data.ds, data.groups, data.track_id, group_by,
                                        copies=copies)
    folds = make_folds(data.labels, data.groups, n_folds, seed, unit="tracks" if group_by is None else "groups")
    check_choice("context", context, CONTEXTS)
    if context == "track":
        data.X = {name: track_context(X, data.track_id) for name, X in data.X.items()}
    config = {"target": names, "profile": profile, "n_folds": n_folds, "seed": seed,
              "inner_folds": inner_folds, "group_by": group_by or "group", "context": context}
    sets = {}
    if kind == "multilabel":
        config.update(tag_rule=tag_rule, k=k, min_share=min_share, min_tracks=min_tracks)
        T = vote_tags(data, rule=tag_rule, profile=profile, k=k, min_share=min_share)
        for name, X in data.X.items():
            sets[name] = evaluate_multilabel(X, T, names=data.emotions, groups=data.groups, folds=folds,
                                             tracks=data.track_id,
                                             presets=presets, seed=seed,
                                             inner_folds=inner_folds, min_tracks=min_tracks)
    else:
        Y, tnames, keep = vote_targets(data, names, profile)
        config["joint"] = joint
        for name, X in data.X.items():
            sets[name] = evaluate_regression(
                X[keep], Y[keep], names=tnames, groups=data.groups[keep], folds=folds[keep],
                tracks=data.track_id[keep], presets=presets, seed=seed,
                inner_folds=inner_folds, joint=joint,
                plots_dir=None if plots_dir is None else Path(plots_dir) / name)
    return {"kind": kind, "config": config, "evaluation_spec": spec.to_dict(),
            "n_segments": len(folds), "n_tracks": len(np.unique(data.track_id)), "sets": sets}


# --------------------------------------------------------------------------
# Report files.
# --------------------------------------------------------------------------


def json_safe(obj):
    """``obj`` with numpy values as Python ones and NaN as ``None`` (JSON without NaN)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        return None if math.isnan(float(obj)) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _pm(summary: dict) -> str:
    mean, std = summary["mean"], summary["std"]
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "n/a"
    return f"{mean:.3f} ± {std:.3f}"


def vote_report_markdown(report: dict) -> str:
    """The report as Markdown: one table per feature set, best preset first, baseline last."""
    cfg = report["config"]
    lines = [f"# {'Tag' if report['kind'] == 'multilabel' else 'Regression'} evaluation", "",
             (f"{report['n_segments']} segments of {report['n_tracks']} tracks; "
             f"{cfg['n_folds']} folds grouped by {cfg.get('group_by', 'group')} (else by track; "
             f"seed {cfg['seed']}); hyper-parameters "
             f"chosen by a grouped {cfg['inner_folds']}-fold search inside the training folds; "
             "mean ± std over the folds."), ""]
    for set_name, res in report["sets"].items():
        lines += [f"## {set_name}", ""]
        rows = [(r["preset"], r["metrics"]) for r in res["results"]] + [("train mean", res["baseline"])]
        if report["kind"] == "multilabel":
            lines += [(f"Tags: {', '.join(res['tags'])}; dropped (fewer than {res['min_tracks']} "
                      f"positive or negative tracks): {', '.join(res['dropped']) or 'none'}."), ""]
            head = [f"{lvl} {m}" for lvl in ("segment", "track") for m in ("roc_auc_macro", "pr_auc_macro")]
            head += ["segment roc_auc_micro", "segment pr_auc_micro"]
            lines += ["| model | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
            for key, m in rows:
                cells = [_pm(m[lvl][x]) for lvl in ("segment", "track") for x in ("roc_auc_macro", "pr_auc_macro")]
                cells += [_pm(m["segment"]["roc_auc_micro"]), _pm(m["segment"]["pr_auc_micro"])]
                lines.append(f"| {key} | " + " | ".join(cells) + " |")
            best = res["results"][0]["metrics"]["segment"]["per_tag"]
            lines += ["", f"Per tag ({res['results'][0]['preset']}, pooled out-of-fold segments):", "",
                      "| tag | positive segments | ROC-AUC | PR-AUC |", "|---|---|---|---|"]
            lines += [f"| {t['tag']} | {t['positives']} | {t['roc_auc']:.3f} | {t['pr_auc']:.3f} |"
                      for t in best]
        else:
            lines += ["Mean over the targets of each metric's fold mean:", "",
                      "| model | level | " + " | ".join(REGRESSION_METRICS) + " |",
                      "|---" * (len(REGRESSION_METRICS) + 2) + "|"]
            for key, m in rows:
                for lvl in ("segment", "track"):
                    cells = [("n/a" if m[lvl]["mean"][x] is None or math.isnan(m[lvl]["mean"][x])
                              else f"{m[lvl]['mean'][x]:.3f}") for x in REGRESSION_METRICS]
                    lines.append(f"| {key} | {lvl} | " + " | ".join(cells) + " |")
            best = res["results"][0]
            lines += ["", f"Per target ({best['preset']}, segment level):", "",
                      "| target | " + " | ".join(REGRESSION_METRICS) + " |",
                      "|---" * (len(REGRESSION_METRICS) + 1) + "|"]
            for t in res["targets"]:
                lines.append(f"| {t} | " + " | ".join(_pm(best["metrics"]["segment"][t][x])
                                                     for x in REGRESSION_METRICS) + " |")
        lines.append("")
    return "\n".join(lines)


def write_vote_report(report: dict, out_dir) -> tuple[Path, Path]:
    """Write ``report.json`` (predictions left out) and ``report.md`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    slim = {**report, "sets": {
        name: {**res, "results": [{k: v for k, v in r.items() if k not in ("pred", "scores")}
                                  for r in res["results"]]}
        for name, res in report["sets"].items()}}
    slim = json_safe(slim)
    (out / "report.json").write_text(json.dumps(slim, indent=1))
    (out / "report.md").write_text(vote_report_markdown(slim))
    return out / "report.json", out / "report.md"




def summary_lines(report: dict) -> list[str]:
    """One line per feature set: the best preset's headline scores beside the baseline."""
    out = []
    for name, res in report["sets"].items():
        best = res["results"][0]
        if report["kind"] == "multilabel":
            key, label = "roc_auc_macro", "macro ROC-AUC"
            got, base = best["metrics"]["segment"][key], res["baseline"]["segment"][key]
            out.append(f"{name}: {best['preset']} {label} {_pm(got)} (train mean {_pm(base)})")
        else:
            got, base = best["metrics"]["segment"]["mean"], res["baseline"]["segment"]["mean"]
            out.append(f"{name}: {best['preset']} mean R2 {got['r2']:.3f}, CCC {got['ccc']:.3f} "
                       f"(train mean R2 {base['r2']:.3f}, CCC {base['ccc']:.3f})")
    return out


def run_votes(store, *, target, out=None, storage_options: dict | None = None, **kw) -> dict:
    """:func:`evaluate_votes`, then the report files into ``out`` (plots under ``out/plots``).

    ``kw`` goes to :func:`evaluate_votes`; a remote store is opened with
    ``storage_options``.
    """
    ds = open_dataset(store, storage_options)
    plots = None if out is None or target in ("tags", ["tags"]) else Path(out) / "plots"
    report = evaluate_votes(ds, target=target, plots_dir=plots, **kw)
    if out is not None:
        write_vote_report(report, out)
    return report
