"""Train one preset on a whole store, measure it, and write it as ONNX with its card.

:func:`run_train` is what ``emodist train`` runs:

1. the segments, labels and folds of an evaluation
   (:func:`emodist.learn.features.load_data`,
   :func:`emodist.learn.folds.make_folds`) for one feature set and one
   preset that can be exported (:mod:`emodist.learn.export`);
2. the grouped cross-validation of that preset, fold by fold as
   ``emodist evaluate`` runs it (:func:`emodist.learn.fits.fit_predict_proba`,
   :func:`emodist.learn.distribution.fit_predict_distribution`), scored at
   segment and track level (:mod:`emodist.learn.scoring`) and for
   calibration from the out-of-fold probabilities
   (:mod:`emodist.learn.calibration`);
3. the preset's whole pipeline fit on every usable segment;
4. the pipeline as ONNX, checked against scikit-learn's probabilities on
   the training rows, and the card (:mod:`emodist.models.trained`).

:func:`best_from_report` picks the preset and feature set of an evaluation
report's best exportable row.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import re
import time
import warnings

import numpy as np
from threadpoolctl import threadpool_limits

from emodist._version import __version__
from emodist.errors import EmodistError
from emodist.features.base import check_name
from emodist.learn import presets as clf
from emodist.learn.calibration import calibration_report, reliability, reliability_figure
from emodist.learn.data import CONTEXTS, load_data, open_dataset, store_info, track_context
from emodist.learn.export import (
    EXPORTABLE,
    EXPORTABLE_DISTRIBUTION,
    INPUT_NAME,
    ColumnRegressors,
    check_exportable,
    exportable,
    multilabel_to_onnx,
    onnx_outputs,
    regression_to_onnx,
    run_onnx,
    to_onnx,
)
from emodist.learn.folds import (
    GROUP_WORDS,
    describe_splitter,
    fold_groups,
    fold_splitter,
    make_folds,
)
from emodist.learn.multilabel import fit_tags, keep_tags, resolve_multilabel_presets
from emodist.learn.regression import (
    INNER_FOLDS,
    REGRESSION_METRICS,
    fit_columns,
    resolve_regression_presets,
    scatter_figure,
)
from emodist.learn.report import confusion_figure
from emodist.learn.runs import (
    FitProgress,
    fit_params,
    fit_predict_distribution,
    fit_predict_proba,
    set_classes,
)
from emodist.learn.scoring import (
    baseline_rates,
    classification_metrics,
    distribution_metrics,
    headline_metrics,
    track_level,
    track_mean_proba,
    train_mean_baseline,
)
from emodist.learn.spec import RANK_BY, EvaluationSpec, check_choice, check_target, target_kind
from emodist.learn.votes import (
    PROFILES,
    evaluate_votes,
    json_safe,
    load_vote_data,
    segment_tags,
    vote_targets,
)
from emodist.models.trained import TrainedModel, feature_names_sha256, is_model_dir, write_trained
from emodist.runtime.executor import run_all

__all__ = ["AUTO_PRESETS", "CONFUSION_FIGURE", "ONNX_TOLERANCE", "best_from_report", "run_auto",
           "run_train", "store_fingerprint", "training_spec"]

log = logging.getLogger(__name__)

#: Largest difference allowed between the ONNX graph's and scikit-learn's probabilities.
ONNX_TOLERANCE = 1e-5
#: Candidate presets of ``--auto`` (fast, exportable, one per family).
AUTO_PRESETS = ("soft-logistic-regression", "logistic-regression", "bagged-trees", "medium-knn")
#: The reliability diagram's file name in the model folder.
FIGURE = "reliability.png"
#: The out-of-fold confusion matrix (segments) of a class model, in its folder.
CONFUSION_FIGURE = "confusion.png"


def model_variable(name: str, *, given: bool = True) -> str:
    """The model's name, which ``emodist predict`` stores its probabilities under.

    A default name is made a store variable name (``handcrafted+musicnn_msd`` ->
    ``handcrafted_musicnn_msd``); a name the user gave must be one already.
    """
    if not given:
        name = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_")
    try:
        return check_name(name)
    except EmodistError as exc:
        raise EmodistError(exc.message, param="name") from None


def store_fingerprint(ds, segment_id, groups) -> str:
    """sha256 over what the model was trained from: segment ids, labels, group descriptions.

    Two trainings with equal fingerprints read the same segments of stores
    described alike (feature values are not hashed: they are the store's
    own; its ``created`` time and group descriptions stand for them).
    """
    h = hashlib.sha256()
    h.update("\n".join(map(str, segment_id)).encode())
    h.update(json.dumps({"created": ds.attrs.get("created"),
                         "groups": {g: (ds.attrs.get("feature_groups") or {}).get(g) for g in groups}},
                        sort_keys=True, default=str).encode())
    return h.hexdigest()


def _resolve(classifier: str, target) -> clf.Preset:
    """The exportable preset of ``classifier`` for ``target`` (one line naming those that work)."""
    kind = target_kind(target)
    allowed = exportable(kind if kind != "class" else target)
    resolve = {"distribution": lambda c: clf.resolve_distribution_presets([c])[0],
               "regression": lambda c: resolve_regression_presets([c])[0],
               "multilabel": lambda c: resolve_multilabel_presets([c])[0]}.get(kind, clf.get_preset)
    try:
        preset = resolve(classifier)
    except EmodistError as exc:
        if kind == "distribution":
            raise
        what = exc.message.split("; choose")[0].replace("unknown classifier", "unknown preset")
        raise EmodistError(f"{what}; choose from {', '.join(allowed)}", param="classifier") from None
    check_exportable(preset.key, kind if kind != "class" else target)
    return preset


def training_spec(*, features: str, classifier: str, target="class", folds: int = 5, seed: int = 0,
                  label_rule: str | None = None) -> EvaluationSpec:
    """The evaluation a training runs: one feature set, one exportable preset.

    The same :class:`~emodist.learn.spec.EvaluationSpec` as ``emodist
    evaluate`` with these options (no class weights, no ceiling), so the
    training-time cross-validation has the evaluation's folds, seed and
    grouping; the card records it (``evaluation_spec``).

    Raises
    ------
    EmodistError
        ``classifier`` unknown or without an ONNX converter (one line naming
        those that work), ``features`` not one set, a bad target or folds.
    """
    target = check_target(target)
    preset = _resolve(classifier, target)
    if not isinstance(features, str) or not features.strip() or " " in features.strip():
        raise EmodistError("give one feature set: a stored group or +-joined groups "
                             f"(got {features!r})", param="features")
    return EvaluationSpec(features=(features.strip(),), classifiers=(preset.key,), folds=folds,
                          seed=seed, target=target, label_rule=label_rule, ceiling=False)


def _target_name(target) -> str:
    return target if isinstance(target, str) else "+".join(target)


def _cv_class(data, X, fold, groups, preset, seed, client, n_jobs) -> tuple[dict, np.ndarray]:
    """Out-of-fold predictions and probabilities; the CV figures and the probabilities."""
    classes = data.classes
    common = {"X": X, "y": data.y, "folds": fold, "preset_key": preset.key, "seed": seed,
              "weights": False, "soft": data.soft, "groups": groups, "classes": classes}
    out = run_all(fit_predict_proba, common, [{"fold": k} for k in range(int(fold.max()) + 1)],
                  client=client, n_jobs=n_jobs)
    pred = np.empty(len(data.y), dtype=object)
    proba = np.zeros((len(data.y), len(classes)))
    for k, (p, pr) in enumerate(out):
        pred[fold == k] = p
        proba[fold == k] = pr
    t_true, t_pred, t_folds = track_level(data.y, pred, fold, data.track_id, classes)
    first = list(dict.fromkeys(data.track_id))
    t_mean = track_mean_proba(proba, data.track_id, classes).loc[first].to_numpy()
    cv = {
        "segment": classification_metrics(data.y, pred, fold, classes),
        "track": classification_metrics(t_true, t_pred, t_folds, classes),
        "track_proba": classification_metrics(t_true, t_mean, t_folds, classes),
        "baselines": {"segment": baseline_rates(data.y, classes), "track": baseline_rates(t_true, classes)},
        "calibration": calibration_report(proba, data.y, classes),
    }
    return cv, proba


def _cv_distribution(data, X, fold, groups, preset, seed, client, n_jobs) -> tuple[dict, np.ndarray]:
    common = {"X": X, "P": data.distribution, "folds": fold, "preset_key": preset.key, "seed": seed,
              "tracks": data.track_id, "groups": groups}
    out = run_all(fit_predict_distribution, common, [{"fold": k} for k in range(int(fold.max()) + 1)],
                  client=client, n_jobs=n_jobs)
    pred = np.zeros_like(data.distribution)
    for k, o in enumerate(out):
        pred[fold == k] = o
    base = train_mean_baseline(data.distribution, fold)
    cv = {
        "distribution": distribution_metrics(data.distribution, pred, fold),
        "baselines": {"train_mean": distribution_metrics(data.distribution, base, fold)},
        "calibration": calibration_report(pred, data.distribution, data.emotions),
    }
    return cv, pred


def _fit_final(data, X, groups, preset, seed, target):
    """The preset's pipeline fit on every row; ``(pipeline, output classes)``.

    The output classes are the columns of ``predict_proba`` and of the ONNX
    graph's probabilities: the emotions of a distribution, else the model's
    ``classes_`` (sorted labels for scikit-learn's models, the given order
    for soft-label ones).
    """
    every = np.ones(len(X), dtype=bool)
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore")
        if target == "distribution":
            k = data.distribution.shape[1]
            pipe = clf.make_distribution_pipeline(preset, seed)
            set_classes(pipe, range(k))
            kw = {"model__soft": data.distribution}
            if "groups" in preset.fit_params:
                kw["model__groups"] = groups
            pipe.fit(X, np.argmax(data.distribution, axis=1), **kw)
            return pipe, [str(e) for e in data.emotions]
        pipe = clf.make_pipeline(preset, seed)
        set_classes(pipe, data.classes)
        pipe.fit(X, data.y, **fit_params(preset, every, data.y, weights=False, soft=data.soft,
                                         groups=groups))
        return pipe, [str(c) for c in pipe.classes_]


def run_train(
    store,
    *,
    out,
    features: str | None = None,
    classifier: str | None = None,
    target="class",
    folds: int = 5,
    seed: int = 0,
    label_rule: str | None = None,
    spec: EvaluationSpec | None = None,
    profile: str = "listener",
    min_tracks: int = 10,
    name: str | None = None,
    client=None,
    n_jobs: int | None = -1,
    storage_options: dict | None = None,
    chosen_from: dict | None = None,
    tracks=None,
    context: str = "none",
) -> TrainedModel:
    """Cross-validate, fit and export one preset on one feature set of a store.

    Parameters
    ----------
    store : str, path-like or xarray.Dataset
        Feature store.
    out : str or path-like
        Model folder: new, empty, or an existing model (replaced).
    features : str
        One feature set: a group or ``+``-joined groups (``handcrafted+musicnn_msd``).
    classifier : str
        Preset key or name with an ONNX converter
        (:func:`emodist.learn.export.exportable` of the target's kind).
    target : str or sequence of str
        ``class``, ``factors``, ``distribution``; ``shares`` (the nine vote
        shares, regression), ``tags`` (each track's top-three emotions,
        multi-label) or continuous columns (emotions' shares or per-segment
        numeric store variables: ``["valence", "arousal"]``).
    folds, seed : int
        Grouped folds of the training-time cross-validation, and the seed of
        folds and models.
    label_rule : {"listener", "mean"} or None
        ``None``: the stored labels (classification targets).
    spec : EvaluationSpec, optional
        The evaluation to run instead of ``features``, ``classifier``,
        ``target``, ``folds``, ``seed``, ``label_rule`` (one feature set,
        one exportable preset; :func:`training_spec`).
    profile : {"listener", "mean"}
        Vote profile of ``shares`` and of the tags.
    min_tracks : int
        ``tags``: tags with fewer positive or negative tracks are dropped.
    name : str, optional
        Model name (default: ``<features>_<preset>_<target>``).
    client : distributed.Client, optional
        Run the cross-validation's fits on this cluster (else :mod:`joblib`).
    n_jobs : int or None
        joblib processes without a client.
    storage_options : dict, optional
        Filesystem options of ``store``.
    chosen_from : dict, optional
        Where the choice came from (:func:`best_from_report`), kept in the card.
    tracks : sequence of str, optional
        Train on these tracks of the store only (the others are left out of
        the cross-validation and the fit: a held-out check); default: all.
    context : {"none", "track"}
        ``"track"`` (shares, tags, continuous columns): each segment's
        features joined with its track's mean features
        (:func:`emodist.learn.data.track_context`), as ``emodist evaluate
        --context track`` evaluates them; the card records it and ``emodist
        predict`` joins every new segment with its own track's mean.

    Returns
    -------
    emodist.models.trained.TrainedModel
        The written model folder, loaded and verified (the card is ``.card``).

    Raises
    ------
    emodist.errors.EmodistError
        ``classifier`` unknown or without an ONNX converter, ``features``
        not one stored set, an unknown ``target``, a bad ``folds``, a
        ``context`` with a class, factor or distribution target.
    emodist.errors.ModelError
        ``out`` exists and is not an emodist model folder.
    """
    check_choice("context", context, CONTEXTS)
    named = check_target(target if spec is None else spec.target)
    if context != CONTEXTS[0] and target_kind(named) in ("class", "distribution"):
        raise EmodistError(f"{context} is for --target shares, tags or continuous columns; "
                           f"--target {_target_name(named)} takes each segment's own features",
                           param="context")
    if spec is None:
        spec = training_spec(features=features, classifier=classifier, target=target, folds=folds,
                             seed=seed, label_rule=label_rule)
    elif len(spec.features or ()) != 1 or len(spec.classifiers) != 1:
        raise EmodistError("a training runs one feature set and one preset", param="spec")
    preset = _resolve(spec.classifiers[0], spec.target)
    check_choice("profile", profile, PROFILES)
    if os.path.exists(out) and (not os.path.isdir(out) or (os.listdir(out) and not is_model_dir(out))):
        raise EmodistError(f"{out} exists and is not an emodist model folder; choose a new folder", param="out")
    t_start = time.perf_counter()
    store_url = os.fspath(store) if isinstance(store, os.PathLike) else store
    ds = open_dataset(store_url, storage_options)
    part = _train_classes if spec.kind in ("class", "distribution") else _train_votes
    made = part(ds, spec, preset, tracks=tracks, client=client, n_jobs=n_jobs, profile=profile,
                min_tracks=min_tracks, context=context)
    fs, cv, model, columns = made["set"], made["cv"], made["model"], made["columns"]
    if fs.name == "custom":
        raise EmodistError(f"{spec.features[0]!r} is not a stored group or +-joined groups",
                           param="features")
    model_name = model_variable(name or f"{fs.name}_{preset.key}_{_target_name(spec.target)}",
                                given=name is not None)
    t0 = time.perf_counter()
    X = made["X"]
    convert = {"regression": regression_to_onnx, "multilabel": multilabel_to_onnx}.get(spec.kind, to_onnx)
    graph = convert(model, n_features=X.shape[1], name=model_name)
    graph_bytes = graph.SerializeToString()
    X32 = X.astype(np.float32)
    with threadpool_limits(1):
        ref = (model.predict if spec.kind == "regression" else model.predict_proba)(X32.astype(np.float64))
    diff = float(np.abs(run_onnx(graph_bytes, X32) - ref).max())
    if diff > ONNX_TOLERANCE:
        raise EmodistError(f"the ONNX graph of {preset.key} differs from scikit-learn by {diff:.2e} "
                           f"(> {ONNX_TOLERANCE}); not written")
    export_seconds = time.perf_counter() - t0
    feature_groups = dict(ds.attrs.get("feature_groups") or {})
    training = {
        "dataset": ds.attrs.get("dataset"),
        "store": store_info(store_url, ds),
        "store_fingerprint": store_fingerprint(ds, made["segment_id"], fs.groups),
        "n_tracks": len(np.unique(made["track_id"])),
        "n_segments": len(made["segment_id"]),
        "n_groups": len(np.unique(made["groups"])),
        **made["training"],
        "seconds": {**made["seconds"], "export": round(export_seconds, 3),
                    "total": round(time.perf_counter() - t_start, 3)},
    }
    values = "values" if spec.kind == "regression" else "probabilities"
    card = {
        "name": model_name,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "emodist_version": __version__,
        "target": made["target"],
        "classes": [str(c) for c in columns],
        "label_rule": made.get("label_rule"),
        "preset": {"key": preset.key, "name": preset.name,
                   "family": getattr(preset, "family", spec.kind),
                   "params": preset.params, "seed": int(spec.seed), **made.get("preset", {})},
        "aggregate": made.get("aggregate"),
        "features": fs.name,
        "store_spec": dict(ds.attrs.get("spec") or {}),
        "inputs": [{"group": g, "features": list(names), "description": feature_groups.get(g, {})}
                   for g, names in fs.columns],
        "n_features": len(fs.names),
        "feature_names_sha256": feature_names_sha256(fs.names),
        "context": context,
        "onnx": {"input": {"name": INPUT_NAME, "dtype": "float32", "shape": [None, X.shape[1]],
                           "columns": _input_columns(context)},
                 "outputs": onnx_outputs(graph),
                 values: {"dtype": "float64", "columns": [str(c) for c in columns]},
                 "opset": {d.domain or "ai.onnx": int(d.version) for d in graph.opset_import},
                 "check": {"rows": len(X), "max_abs_diff_vs_sklearn": diff,
                           "tolerance": ONNX_TOLERANCE}},
        "evaluation_spec": spec.to_dict(),
        "training": training,
        "cv": cv,
    }
    if chosen_from:
        card["chosen_from"] = chosen_from
    return write_trained(out, card, graph_bytes, files=made["files"](model_name))


def _input_columns(context: str) -> str:
    """What the graph's input columns are, in words (the card's input contract)."""
    if context == "track":
        return ("each segment's features in the order of inputs, then the mean of each over "
                "the segment's track")
    return "each segment's features in the order of inputs"


def _train_classes(ds, spec, preset, *, tracks, client, n_jobs, **_) -> dict:
    """Class, factor and distribution targets: CV as ``emodist evaluate`` runs it, then the final fit."""
    target = spec.target
    data = load_data(ds, spec.features[0], spec.label_rule, target)
    if tracks is not None:
        data = data.take(np.isin(data.track_id, np.asarray(list(tracks), dtype=str)),
                         "not among the training tracks")
        if not len(data.y):
            raise EmodistError("none of the given tracks is in the store", param="tracks")
    fs = data.sets[0]
    X = data.X[fs.name]
    if target != "distribution" and len(data.classes) < 2:
        raise EmodistError(f"only one class ({data.classes[0]}) among the training segments")
    if target != "distribution" and "soft" in preset.fit_params and data.soft is None:
        raise EmodistError(f"{preset.key} learns from vote shares; the store keeps no votes", param="classifier")
    groups, group_by = fold_groups(data.group, data.track_id)
    word, words = GROUP_WORDS[group_by]
    strata = data.y if data.strata is None else data.strata
    fold = make_folds(strata, groups, spec.folds, spec.seed, unit=words)
    t0 = time.perf_counter()
    cv_fn = _cv_distribution if target == "distribution" else _cv_class
    cv, _ = cv_fn(data, X, fold, groups, preset, spec.seed, client, n_jobs)
    cv_seconds = time.perf_counter() - t0
    log.info("cross-validated %s on %s in %.1f s", preset.key, fs.name, cv_seconds)
    t0 = time.perf_counter()
    pipe, classes = _fit_final(data, X, groups, preset, spec.seed, target)
    fit_seconds = time.perf_counter() - t0
    cv["calibration"]["figure"] = FIGURE
    confusion = (cv.get("segment") or {}).get("confusion")
    if confusion:
        confusion["figure"] = CONFUSION_FIGURE
    cv.update({
        "folds": int(spec.folds), "seed": int(spec.seed), "group_by": group_by,
        "splitter": describe_splitter(fold_splitter(strata, groups, spec.folds, spec.seed), word),
        "out_of_fold": "every segment predicted by a model that never saw its group",
    })

    def files(model_name):
        title = f"{model_name}: out-of-fold calibration"
        out = {FIGURE: reliability_figure(cv["calibration"], title=title)}
        if confusion:
            out[CONFUSION_FIGURE] = _png(confusion_figure(
                confusion, title=f"{model_name}: out-of-fold confusion, segments (% of true class)"))
        return out

    return {"set": fs, "X": X, "cv": cv, "model": pipe, "columns": classes, "target": target,
            "label_rule": data.label_rule, "files": files,
            "aggregate": "mean of a track's segment probabilities" if preset.track_mean else None,
            "segment_id": data.segment_id, "track_id": data.track_id, "groups": groups,
            "training": {"class_counts": {c: int((data.y == c).sum()) for c in data.classes},
                         "excluded": data.excluded},
            "seconds": {"cross_validation": round(cv_seconds, 3), "final_fit": round(fit_seconds, 3)}}


def _png(fig) -> bytes:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def _train_votes(ds, spec, preset, *, tracks, profile, min_tracks, context="none", **_) -> dict:
    """Continuous and tag targets: ``emodist evaluate``'s figures for the preset, then the final fit.

    The cross-validation is :func:`emodist.learn.votes.evaluate_votes` itself
    (its folds, in-fold search and scores), so the card's figures are the
    evaluation's row; the final model is tuned the same way on every row.
    """
    if tracks is not None:
        keep = np.isin(np.asarray(ds["track_id"].values).astype(str), np.asarray(list(tracks), dtype=str))
        if not keep.any():
            raise EmodistError("none of the given tracks is in the store", param="tracks")
        ds = ds.isel(segment=keep)
    names = [spec.target] if isinstance(spec.target, str) else list(spec.target)
    t0 = time.perf_counter()
    report = evaluate_votes(ds, spec, profile=profile, min_tracks=min_tracks, inner_folds=INNER_FOLDS,
                            context=context)
    cv_seconds = time.perf_counter() - t0
    data = load_vote_data(ds, spec.features[0])
    fs = data.sets[0]
    res = report["sets"][fs.name]
    row = res["results"][0]
    joined = data.X[fs.name] if context == "none" else track_context(data.X[fs.name], data.track_id)
    common = {"folds": int(spec.folds), "seed": int(spec.seed), "group_by": data.group_by,
              "inner_folds": INNER_FOLDS, "profile": profile, "context": context,
              "out_of_fold": "every segment predicted by a model that never saw its group; "
                             "hyper-parameters chosen inside the training folds"}
    t0 = time.perf_counter()
    if spec.kind == "regression":
        Y, columns, keep = vote_targets(data, names, profile)
        X = joined[keep]
        models, chosen = fit_columns(X, Y[keep], data.groups[keep], preset=preset, seed=spec.seed)
        model = ColumnRegressors(models)
        pred = row["pred"]
        cv = json_safe({"regression": row["metrics"], "baseline": {"train_mean": res["baseline"]},
                        "chosen": row["chosen"], **common})
        target = {"kind": "regression", "name": _target_name(spec.target), "columns": columns,
                  "profile": profile if names == ["shares"] or set(names) <= set(data.emotions) else None}
        described = {"targets": {c: {"mean": float(Y[keep, j].mean()), "std": float(Y[keep, j].std())}
                                 for j, c in enumerate(columns)}}

        def files(model_name):
            out = {}
            for j, c in enumerate(columns):
                pooled = {m: row["metrics"]["segment"][c][m]["pooled"] for m in REGRESSION_METRICS}
                safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", c)
                out[f"scatter_{safe}.png"] = _png(scatter_figure(Y[keep, j], pred[:, j], name=c,
                                                                 scores=pooled))
            return out
    else:
        T, tag_names, _ = segment_tags(data, profile=profile)
        kept, dropped = keep_tags(T, data.track_id, tag_names, min_tracks=min_tracks)
        columns = [str(e) for e, k in zip(tag_names, kept) if k]
        keep = np.ones(len(T), dtype=bool)
        X = joined
        model, picked = fit_tags(X, T[:, kept], data.groups, preset=preset, seed=spec.seed)
        chosen = [picked]
        per_tag = {c: reliability(row["scores"][:, j], T[:, kept][:, j]) for j, c in enumerate(columns)}
        cv = json_safe({"multilabel": row["metrics"], "baseline": {"train_share": res["baseline"]},
                        "calibration": {"per_tag": per_tag, "classwise_ece": float(
                            np.mean([v["ece"] for v in per_tag.values()]))},
                        "chosen": row["chosen"], "dropped": dropped, "min_tracks": min_tracks,
                        **common})
        target = {"kind": "multilabel", "name": "tags", "columns": columns,
                  "rule": "top3" if data.profiles else "catalog", "profile": profile}
        described = {"tag_tracks": {c: int(v) for c, v in
                                    zip(columns, _positive_tracks(T[:, kept], data.track_id))}}

        def files(model_name):
            return {}
    fit_seconds = time.perf_counter() - t0
    return {"set": fs, "X": X, "cv": cv, "model": model, "columns": columns, "target": target,
            "files": files, "preset": {"chosen": json_safe(chosen)},
            "aggregate": "mean of a track's segment values" if spec.kind == "regression"
            else "mean of a track's segment tag probabilities",
            "segment_id": data.segment_id[keep], "track_id": data.track_id[keep],
            "groups": data.groups[keep], "training": {**described, "excluded": {}},
            "seconds": {"cross_validation": round(cv_seconds, 3), "final_fit": round(fit_seconds, 3)}}


def _positive_tracks(T, tracks) -> np.ndarray:
    """Tracks with each tag."""
    frame = {t: row for t, row in zip(tracks, np.asarray(T))}
    return np.asarray(list(frame.values())).sum(axis=0) if frame else np.zeros(T.shape[1])


def best_from_report(report, rank_by: str = "balanced_accuracy") -> dict:
    """The best exportable row of an ``emodist evaluate`` report, as :func:`run_train` arguments.

    Parameters
    ----------
    report : str, path-like or dict
        ``report.json`` (or its folder), or the report itself.
    rank_by : {"accuracy", "balanced_accuracy", "macro_f1"}
        Segment metric (fold mean); distribution reports rank by JSD.

    Returns
    -------
    dict
        ``features``, ``classifier``, ``target``, ``folds``, ``seed``,
        ``label_rule``, ``store`` (the report's store URL) and
        ``chosen_from`` (report, metric, value, rank among all rows).  A
        shares, columns or tags report (:func:`emodist.learn.votes.run_votes`)
        ranks by segment R² or macro ROC-AUC (``rank_by`` is for classes) and
        adds ``profile``, ``context`` and ``min_tracks``; it names no store.

    Raises
    ------
    EmodistError
        (parameter ``from_report``) an unreadable report or one without an
        exportable row.
    """
    check_choice("rank_by", rank_by, RANK_BY, "ranking metric")
    path = None
    if not isinstance(report, dict):
        path = os.fspath(report)
        if os.path.isdir(path):
            path = os.path.join(path, "report.json")
        try:
            with open(path) as f:
                report = json.load(f)
        except (OSError, ValueError) as exc:
            raise EmodistError(f"{path}: not a readable evaluation report ({exc})", param="from_report") from None
    if report.get("kind") in ("regression", "multilabel"):
        return _best_vote_row(report, path)
    settings = report.get("settings") or {}
    target = settings.get("target", "class")
    allowed = EXPORTABLE_DISTRIBUTION if target == "distribution" else EXPORTABLE
    rows = list(report.get("results") or [])
    if target == "distribution":
        metric = "jsd"
        rows.sort(key=lambda r: r["distribution"]["jsd"]["mean"])
        value = (lambda r: r["distribution"]["jsd"]["mean"])
    else:
        metric = rank_by
        rows.sort(key=lambda r: -r["segment"][rank_by]["mean"])
        value = (lambda r: r["segment"][rank_by]["mean"])
    for rank, row in enumerate(rows, 1):
        if row.get("classifier") in allowed and row.get("balance", "none") == "none" \
                and row.get("features") != "custom":
            return {
                "features": row["features"], "classifier": row["classifier"], "target": target,
                "folds": int(settings.get("folds", 5)), "seed": int(settings.get("seed", 0)),
                "label_rule": settings.get("label_rule"),
                "store": (report.get("store") or {}).get("url"),
                "chosen_from": {"report": path, "rank_by": metric, "value": float(value(row)),
                                "rank": rank, "of": len(rows),
                                "skipped_above": [f"{r['features']}/{r['classifier']}/{r.get('balance')}"
                                                  for r in rows[:rank - 1]]},
            }
    raise EmodistError(f"{path or 'the report'} has no row with an exportable preset "
                         f"({', '.join(allowed)}) without class weights", param="from_report")


def _best_vote_row(report: dict, path) -> dict:
    """The best exportable row of a shares, columns or tags report (``emodist.learn.votes``).

    Regression rows rank by the segment R² (fold mean, averaged over the
    targets), tag rows by the segment macro ROC-AUC; every feature set's rows
    compete.
    """
    kind = report["kind"]
    spec = EvaluationSpec.from_dict(report.get("evaluation_spec") or {"target": report["config"]["target"]})
    config = report.get("config") or {}
    metric = "r2" if kind == "regression" else "roc_auc_macro"

    def value(row):
        seg = row["metrics"]["segment"]
        v = seg["mean"]["r2"] if kind == "regression" else seg["roc_auc_macro"]["mean"]
        return float("-inf") if v is None else float(v)

    rows = sorted(((fs, r) for fs, res in report.get("sets", {}).items() for r in res["results"]),
                  key=lambda fr: -value(fr[1]))
    for rank, (fs, row) in enumerate(rows, 1):
        if row["preset"] in exportable(kind):
            return {"features": fs, "classifier": row["preset"], "target": spec.target,
                    "folds": spec.folds, "seed": spec.seed, "label_rule": None,
                    "profile": config.get("profile", "listener"),
                    "context": config.get("context", CONTEXTS[0]),
                    **({"min_tracks": config["min_tracks"]} if "min_tracks" in config else {}),
                    "store": None,
                    "chosen_from": {"report": path, "rank_by": metric, "value": value(row),
                                    "rank": rank, "of": len(rows),
                                    "skipped_above": [f"{f}/{r['preset']}" for f, r in rows[:rank - 1]]}}
    raise EmodistError(f"{path or 'the report'} has no row with an exportable preset "
                       f"({', '.join(exportable(kind))})", param="from_report")


def _choose(data, rows, groups, presets, rank_by, inner_folds, seed, client, n_jobs,
            on_done=None) -> dict:
    """The (feature set, preset) with the best inner grouped-CV ``rank_by`` on ``rows``
    (``on_done()`` after each of its fits)."""
    y, g = data.y[rows], groups[rows]
    strata = (data.y if data.strata is None else data.strata)[rows]
    inner = make_folds(strata, g, inner_folds, seed, unit="groups")
    soft = None if data.soft is None else data.soft[rows]
    combos = [(fs.name, p.key) for fs in data.sets for p in presets]
    tasks = [{"X": data.X[fs][rows], "preset_key": key, "fold": j}
             for fs, key in combos for j in range(inner_folds)]
    out = run_all(fit_predict_proba, {"y": y, "folds": inner, "seed": seed, "weights": False,
                                      "soft": soft, "groups": g, "classes": data.classes},
                  tasks, client=client, n_jobs=n_jobs, on_done=on_done)
    scores = {}
    for c, combo in enumerate(combos):
        pred = np.empty(len(y), dtype=object)
        for j in range(inner_folds):
            pred[inner == j] = out[c * inner_folds + j][0]
        scores[combo] = headline_metrics(y, pred, inner)[rank_by]["mean"]
    best = max(scores, key=scores.get)  # ties: the first candidate
    return {"features": best[0], "classifier": best[1], "score": scores[best],
            "inner": {f"{fs}/{key}": v for (fs, key), v in scores.items()}}


def run_auto(store, *, out, features=None, classifiers=AUTO_PRESETS, rank_by: str = "balanced_accuracy",
             folds: int = 5, inner_folds: int = 4, seed: int = 0, label_rule: str | None = None,
             name: str | None = None, client=None, n_jobs: int | None = -1,
             storage_options: dict | None = None, progress: bool = False) -> TrainedModel:
    """Choose the feature set and preset by nested grouped CV, then train the choice.

    Inside each outer training fold an inner grouped CV ranks every (feature
    set, preset) candidate by ``rank_by``; the winner is fit on the outer
    training fold and predicts the outer test fold.  Those outer predictions
    measure the whole procedure, choice included (the card's ``auto``:
    figures, calibration, each fold's choice).  The final choice is made the
    same way on every segment and trained by :func:`run_train` (whose ``cv``
    is then that preset's own CV, optimistic for a chosen model).

    Parameters
    ----------
    store, out, folds, seed, label_rule, name, client, n_jobs, storage_options
        As in :func:`run_train` (target: the dominant emotion).
    features : sequence of str, optional
        Candidate feature sets (default: every stored group alone, and all joined).
    classifiers : sequence of str
        Candidate presets, each exportable.
    rank_by : {"accuracy", "balanced_accuracy", "macro_f1"}
    inner_folds : int
        Grouped folds of each inner CV.
    progress : bool
        A bar over the selection's fits on stderr (done/total, rate, time
        left): ``folds + 1`` inner CVs of every candidate, and the outer fits.

    Returns
    -------
    emodist.models.trained.TrainedModel
    """
    check_choice("rank_by", rank_by, RANK_BY, "ranking metric")
    presets = [_resolve(c, "class") for c in classifiers]
    if os.path.exists(out) and (not os.path.isdir(out) or (os.listdir(out) and not is_model_dir(out))):
        raise EmodistError(f"{out} exists and is not an emodist model folder; choose a new folder", param="out")
    store_url = os.fspath(store) if isinstance(store, os.PathLike) else store
    data = load_data(open_dataset(store_url, storage_options), features, label_rule, "class")
    if any(fs.name == "custom" for fs in data.sets):
        raise EmodistError("--auto takes stored groups or +-joined groups as candidates", param="features")
    groups, _ = fold_groups(data.group, data.track_id)
    fold = make_folds(data.y, groups, folds, seed, unit="groups")
    pred = np.empty(len(data.y), dtype=object)
    proba = np.zeros((len(data.y), len(data.classes)))
    choices = []
    t0 = time.perf_counter()
    bar = FitProgress(progress, (folds + 1) * len(data.sets) * len(presets) * inner_folds + folds)
    try:
        for k in range(folds):
            train = fold != k
            pick = _choose(data, train, groups, presets, rank_by, inner_folds, seed, client,
                           n_jobs, on_done=bar.tick)
            choices.append({"fold": k, **pick})
            p, pr = fit_predict_proba(data.X[pick["features"]], data.y, fold, k, pick["classifier"],
                                      seed, False, soft=data.soft, groups=groups,
                                      classes=data.classes)
            pred[fold == k], proba[fold == k] = p, pr
            bar.tick()
        final = _choose(data, np.ones(len(data.y), dtype=bool), groups, presets, rank_by,
                        inner_folds, seed, client, n_jobs, on_done=bar.tick)
    finally:
        bar.close()
    t_true, t_pred, t_folds = track_level(data.y, pred, fold, data.track_id, data.classes)
    auto = {
        "rank_by": rank_by, "folds": int(folds), "inner_folds": int(inner_folds),
        "candidates": {"features": [fs.name for fs in data.sets], "classifiers": [p.key for p in presets]},
        "outer": {"segment": classification_metrics(data.y, pred, fold, data.classes),
                  "track": classification_metrics(t_true, t_pred, t_folds, data.classes),
                  "calibration": calibration_report(proba, data.y, data.classes)},
        "choices": choices,
        "final": final,
        "why": f"best inner {inner_folds}-fold grouped CV {rank_by} on every segment",
        "seconds": round(time.perf_counter() - t0, 3),
    }
    return run_train(store_url, features=final["features"], classifier=final["classifier"], out=out,
                     folds=folds, seed=seed, label_rule=label_rule, name=name, client=client,
                     n_jobs=n_jobs, storage_options=storage_options, chosen_from={"auto": auto})
