"""Cross-dataset evaluation: a trained model scored on another labelled store.

:func:`run_transfer` answers "how does a model trained on one dataset do on
another?" with the metrics of ``emodist evaluate``
(:mod:`emodist.learn.scoring`):

* the model folder is read and verified (:func:`emodist.models.trained.load_trained`);
* the store must hold the model's input groups exactly as the model was
  trained on them (:func:`emodist.models.trained.check_inputs`: the group's
  version, parameters and model hash compared field by field, as ``predict``
  does), with every column the model reads;
* the model's ONNX graph runs on every segment where those groups are done
  and a label is kept (:func:`emodist.models.trained.run_trained`);
* the model's classes are mapped onto the store's labels by name, or by a
  mapping file (:func:`read_mapping`: GEMS categories onto MTG-Jamendo tags,
  say); several classes may map onto one label, whose probability is then
  the sum of theirs, and the prediction is the mapped label of largest
  probability;
* what the model never saw is reported (``unseen``): the store's labels no
  class maps onto (their segments cannot be predicted right and are left
  out of the scores, counted) and the model's classes that map onto no label
  of the evaluated segments.

Regression and tag models are scored the same way against the store's own
targets (:func:`emodist.learn.votes.vote_targets`, :func:`emodist.learn.votes.vote_tags`):

* a regression's columns map by name, or by the mapping file, onto the
  store's targets (the shares of its vote profile's emotions, or numeric
  per-segment variables); columns mapped onto one target add their values;
  scored per target with the evaluation's regression metrics
  (:func:`emodist.learn.regression.regression_metrics`: R², RMSE, Pearson r,
  Spearman rho, CCC), at segment level and on track means, beside the
  constant prediction of the model's training means;
* a tag model's tags map onto the store's tags, made from its votes with the
  model's own rule and profile (each track's top three emotions); tags mapped
  onto one store tag give it the largest of their probabilities; scored with
  ROC-AUC and PR-AUC, macro and micro
  (:func:`emodist.learn.multilabel.multilabel_metrics`), over the store tags
  with both positive and negative segments;
* ``unseen`` names the store's targets or tags without a model column and
  the model's columns that map onto none.

Nothing is fit: the whole store is one test fold, so each metric's ``mean``
is its ``pooled`` value, at segment level, at track level by majority vote
and by the mean of the mapped probabilities (classes), or on the tracks'
mean values and probabilities (regression, tags).
"""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import io
import json
import os

import fsspec
import numpy as np

from emodist._version import __version__
from emodist.errors import EmodistError
from emodist.learn.data import SEGMENT, load_data, open_dataset, store_info, stored_groups
from emodist.learn.multilabel import MULTILABEL_METRICS, multilabel_metrics
from emodist.learn.regression import REGRESSION_METRICS, regression_metrics
from emodist.learn.scoring import (
    baseline_rates,
    classification_metrics,
    track_level,
    track_mean_proba,
)
from emodist.learn.votes import (
    PROFILES,
    TAG_RULES,
    json_safe,
    load_vote_data,
    vote_tags,
    vote_targets,
)
from emodist.models.trained import check_inputs, load_trained, run_trained
from emodist.store.outputs import staged_folder

__all__ = ["MAPPING_COLUMNS", "class_mapping", "read_mapping", "run_transfer",
           "transfer_markdown"]

#: Header of a CSV mapping file: a model class, the store label it counts as.
MAPPING_COLUMNS = ("model_class", "store_label")


def read_mapping(path, *, storage_options: dict | None = None) -> dict[str, str]:
    """A mapping file: the store label each model class counts as.

    Parameters
    ----------
    path : str or path-like
        YAML (``.yaml``/``.yml``: ``model_class: store_label`` pairs) or CSV
        with the header ``model_class,store_label``; local or fsspec URL.
    storage_options : dict, optional
        fsspec options of a URL.

    Returns
    -------
    dict of str to str
        Model class -> store label.

    Raises
    ------
    emodist.errors.EmodistError
        (``param="map"``) an unreadable file, another layout, an empty
        name, or a model class mapped twice.
    """
    path = os.fspath(path)
    try:
        with fsspec.open(path, "r", encoding="utf-8-sig", **(storage_options or {})) as f:
            text = f.read()
    except (OSError, ValueError) as exc:
        raise EmodistError(f"cannot read {path}: {exc}", param="map") from None
    if path.lower().endswith((".yaml", ".yml")):
        import yaml  # only a YAML mapping needs it

        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise EmodistError(f"{path}: not YAML ({str(exc).splitlines()[0]})",
                               param="map") from None
        if not isinstance(loaded, dict):
            raise EmodistError(f"{path}: expected 'model_class: store_label' pairs",
                               param="map")
        pairs = [(str(k), "" if v is None else str(v)) for k, v in loaded.items()]
    else:
        rows = [r for r in csv.reader(io.StringIO(text)) if any(c.strip() for c in r)]
        if not rows or tuple(c.strip() for c in rows[0]) != MAPPING_COLUMNS:
            raise EmodistError(f"{path}: expected the header {','.join(MAPPING_COLUMNS)}",
                               param="map")
        bad = next((i for i, r in enumerate(rows[1:]) if len(r) != 2), None)
        if bad is not None:
            raise EmodistError(f"{path}: line {bad + 2}: expected two fields", param="map")
        pairs = [(a.strip(), b.strip()) for a, b in rows[1:]]
    mapping: dict[str, str] = {}
    for cls, label in pairs:
        if not cls or not label:
            raise EmodistError(f"{path}: an empty name ({cls!r} -> {label!r})", param="map")
        if cls in mapping and mapping[cls] != label:
            raise EmodistError(f"{path}: model class {cls!r} is mapped twice ({mapping[cls]!r}, "
                               f"{label!r})", param="map")
        mapping[cls] = label
    return mapping


def class_mapping(model_classes, store_labels, mapping: dict | None = None) -> dict:
    """The store label each model class counts as, or ``None``.

    Parameters
    ----------
    model_classes : sequence of str
        The model's classes.
    store_labels : collection of str
        The labels of the store's evaluated segments.
    mapping : dict, optional
        Model class -> store label (:func:`read_mapping`); a class it does
        not name keeps its own name when that is a store label.

    Returns
    -------
    dict
        Model class -> store label, ``None`` for a class that maps onto no
        label.

    Raises
    ------
    emodist.errors.EmodistError
        ``mapping`` names a class the model does not have (``param="map"``).
    """
    mapping = dict(mapping or {})
    unknown = sorted(set(mapping) - set(model_classes))
    if unknown:
        raise EmodistError(f"{unknown[0]!r} is not a class of the model (it has "
                           f"{', '.join(model_classes)})", param="map")
    labels = set(store_labels)
    return {c: mapping.get(c, c if c in labels else None) for c in model_classes}


def run_transfer(model_dir, store, *, mapping=None, out=None, storage_options: dict | None = None,
                 threads: int = 1) -> dict:
    """Score a trained model on another labelled store.

    Parameters
    ----------
    model_dir : str or path-like
        A folder written by ``emodist train``: a class or factor model, a
        regression or a tag model.
    store : str, path-like or xarray.Dataset
        A labelled feature store holding the model's input groups (labels
        for a class model; vote profiles or numeric per-segment variables for
        a regression; vote profiles for a tag model).
    mapping : dict, str or path-like, optional
        Model class (target column, tag) -> store label (target, tag), or a
        mapping file (:func:`read_mapping`); default: each maps onto the one
        of the same name.
    out : str, optional
        Folder (or fsspec URL) for ``report.json`` and ``report.md``.
    storage_options : dict, optional
        fsspec options of the store, the mapping file and ``out``.
    threads : int
        Threads of the ONNX Runtime session.

    Returns
    -------
    dict
        The report: ``kind`` (``class``, ``regression``, ``multilabel``),
        ``model``, ``store``, ``mapping``, ``unseen``, ``data`` and
        ``predictions`` (per scored segment), with

        * classes: ``segment``, ``track`` and ``track_proba`` metrics (as
          :func:`emodist.learn.scoring.classification_metrics`, one fold)
          and ``baselines``;
        * regression: ``regression`` (as
          :func:`emodist.learn.regression.regression_metrics`, one fold,
          named by the store's targets) and ``baseline`` (the training
          means predicted everywhere, when the card records them);
        * tags: ``multilabel`` (as
          :func:`emodist.learn.multilabel.multilabel_metrics`, one fold,
          named by the store's tags) and ``unscorable`` (mapped tags whose
          segments are all positive or all negative here).

    Raises
    ------
    emodist.errors.ModelError
        Not a model folder, or a store without the model's groups as it was
        trained on them (``param="model"``).
    emodist.errors.EmodistError
        A mapping that names no class of the model or maps no class onto a
        label (target, tag) of the store (``param="map"``); a distribution
        model (``param="model"``).
    """
    model = load_trained(model_dir)
    if model.kind == "distribution":
        raise EmodistError(f"a {model.target} model gives no classes to score against a store's "
                           "labels", param="model")
    source = None
    if mapping is not None and not isinstance(mapping, dict):
        source = os.fspath(mapping)
        mapping = read_mapping(source, storage_options=storage_options)
    if isinstance(store, os.PathLike):
        store = os.fspath(store)
    ds = open_dataset(store, storage_options)
    groups = list(dict.fromkeys(model.groups))
    check_inputs(model, ds.attrs.get("feature_groups") or {}, stored_groups(ds))
    score = {"class": _score_classes, "regression": _score_regression,
             "multilabel": _score_tags}[model.kind]
    report = {
        "emodist_version": __version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "kind": model.kind,
        "model": {"path": model.path, "name": model.name, "target": model.target,
                  "classes": list(model.classes), "onnx_sha256": model.onnx_sha256,
                  "inputs": groups, "context": model.context,
                  "trained_on": (model.card.get("training") or {}).get("dataset")},
        "store": store_info(store, ds),
        **score(model, ds, "+".join(groups), mapping, source, threads),
    }
    if out is not None:
        with staged_folder(out, last="report.json", storage_options=storage_options) as tmp:
            (tmp / "report.md").write_text(transfer_markdown(report), encoding="utf-8")
            (tmp / "report.json").write_text(json.dumps(json_safe(report), indent=1),
                                             encoding="utf-8")
    return report


def _model_rows(model, sets, X: dict) -> np.ndarray:
    """The columns the model reads, in its order, from the loaded feature set."""
    fs = sets[0]
    columns = {(g, n): i for i, (g, n) in enumerate((g, n) for g, names in fs.columns for n in names)}
    return X[fs.name][:, [columns[(i.group, n)] for i in model.inputs for n in i.features]]


def _score_classes(model, ds, features, mapping, source, threads) -> dict:
    """Class and factor models against the store's labels."""
    data = load_data(ds, features, None, "class")
    X = _model_rows(model, data.sets, data.X)
    to_label = class_mapping(model.classes, set(data.y), mapping)
    labels = list(dict.fromkeys(v for v in to_label.values() if v is not None))
    if not labels:
        raise EmodistError(f"no class of the model ({', '.join(model.classes)}) is a label of the "
                           f"store ({', '.join(data.classes)}); give a mapping file",
                           param="map")
    proba = np.asarray(run_trained(model, X, tracks=data.track_id, threads=threads), np.float64)
    mapped = np.zeros((len(X), len(labels)))
    for j, c in enumerate(model.classes):
        if to_label[c] is not None:
            mapped[:, labels.index(to_label[c])] += proba[:, j]
    seen = np.isin(data.y, labels)
    if not seen.any():
        raise EmodistError("no evaluated segment has a label the model has a class for "
                           f"(the store's labels: {', '.join(data.classes)})", param="map")
    y, mapped = data.y[seen], mapped[seen]
    tracks = data.track_id[seen]
    pred = np.asarray(labels, dtype=object)[np.argmax(mapped, axis=1)]
    fold = np.zeros(len(y), dtype=np.int64)
    t_true, t_pred, t_fold = track_level(y, pred, fold, tracks, labels)
    first = list(dict.fromkeys(tracks))
    t_mean = track_mean_proba(mapped, tracks, labels).loc[first].to_numpy()
    store_counts = {lab: int((data.y == lab).sum()) for lab in data.classes}
    return {
        "mapping": {"file": source, "classes": to_label},
        "unseen": {
            "store_labels": {lab: n for lab, n in store_counts.items() if lab not in labels},
            "model_classes": [c for c in model.classes
                              if to_label[c] is None or to_label[c] not in store_counts],
        },
        "data": {"n_segments": int(seen.sum()), "n_tracks": len(first), "classes": labels,
                 "class_counts": {lab: int((y == lab).sum()) for lab in labels},
                 "excluded": {**data.excluded, "label the model has no class for":
                              int((~seen).sum())}},
        "segment": classification_metrics(y, pred, fold, labels),
        "track": classification_metrics(t_true, t_pred, t_fold, labels),
        "track_proba": classification_metrics(t_true, t_mean, t_fold, labels),
        "baselines": {"segment": baseline_rates(y, labels), "track": baseline_rates(t_true, labels)},
        "predictions": {"segment_id": data.segment_id[seen].tolist(), "label": y.tolist(),
                        "predicted": pred.tolist()},
    }


def _numeric_targets(data) -> list[str]:
    """The store's regression targets by name: its vote profile's emotions, numeric per-segment variables."""
    ds = data.ds
    names = [str(v) for v in ds.data_vars
             if ds[v].dims == (SEGMENT,) and np.issubdtype(ds[v].dtype, np.number)
             and not str(v).endswith("_status")]
    return list(dict.fromkeys([*data.emotions, *names]))


def _mapped(model, P, to_target: dict, targets: list, combine) -> np.ndarray:
    """The model's columns combined onto the store's ``targets`` (``combine``: ``np.add`` or ``np.maximum``)."""
    out = np.zeros((len(P), len(targets)))
    filled: set[int] = set()
    for j, c in enumerate(model.classes):
        if to_target[c] is not None:
            k = targets.index(to_target[c])
            out[:, k] = combine(out[:, k], P[:, j]) if k in filled else P[:, j]
            filled.add(k)
    return out


def _card_profile(model) -> str:
    profile = (model.card.get("target") or {}).get("profile") or "listener"
    return profile if profile in PROFILES else "listener"


def _score_regression(model, ds, features, mapping, source, threads) -> dict:
    """A regression's columns against the store's targets of the same name (or mapped)."""
    data = load_vote_data(ds, features)
    known = _numeric_targets(data)
    to_target = class_mapping(model.classes, set(known), mapping)
    targets = list(dict.fromkeys(v for v in to_target.values() if v is not None))
    if not targets:
        raise EmodistError(f"no column of the model ({', '.join(model.classes)}) is a target of the "
                           f"store (its emotions and numeric per-segment variables: "
                           f"{', '.join(known) or 'none'}); give a mapping file", param="map")
    profile = _card_profile(model)
    with _as_map_error():
        Y, _, keep = vote_targets(data, targets, profile)
    X = _model_rows(model, data.sets, data.X)
    P = np.asarray(run_trained(model, X, tracks=data.track_id, threads=threads), np.float64)
    P = _mapped(model, P, to_target, targets, np.add)
    Y, P, tracks = Y[keep], P[keep], data.track_id[keep]
    fold = np.zeros(len(Y), dtype=np.int64)
    report = {
        "mapping": {"file": source, "classes": to_target},
        "unseen": {"store_targets": [e for e in data.emotions if e not in targets],
                   "model_columns": [c for c in model.classes if to_target[c] is None]},
        "data": {"n_segments": int(keep.sum()), "n_tracks": len(np.unique(tracks)),
                 "targets": targets,
                 "profile": profile if set(targets) & set(data.emotions) else None,
                 "excluded": {"a target is not finite": int((~keep).sum())}},
        "regression": regression_metrics(Y, P, fold, tracks, targets),
        "predictions": {"segment_id": data.segment_id[keep].tolist(), "true": Y.tolist(),
                        "predicted": P.tolist()},
    }
    means = (model.card.get("training") or {}).get("targets") or {}
    if all(c in means for c in model.classes):
        const = np.array([[means[c]["mean"] for c in model.classes]] * len(Y))
        report["baseline"] = {"train_mean": regression_metrics(
            Y, _mapped(model, const, to_target, targets, np.add), fold, tracks, targets)}
    return report


def _score_tags(model, ds, features, mapping, source, threads) -> dict:
    """A tag model's tags against the store's tags, made by the model's own rule."""
    data = load_vote_data(ds, features)
    to_tag = class_mapping(model.classes, set(data.emotions), mapping)
    tags = list(dict.fromkeys(v for v in to_tag.values() if v is not None))
    missing = [t for t in tags if t not in data.emotions]
    if missing:
        raise EmodistError(f"{missing[0]!r} is not a tag of the store (its tags: "
                           f"{', '.join(data.emotions)})", param="map")
    if not tags:
        raise EmodistError(f"no tag of the model ({', '.join(model.classes)}) is a tag of the "
                           f"store ({', '.join(data.emotions)}); give a mapping file", param="map")
    target = model.card.get("target") or {}
    rule = target.get("rule", "top3") if target.get("rule", "top3") in TAG_RULES else "top3"
    profile = _card_profile(model)
    T = vote_tags(data, rule=rule, profile=profile)[:, [data.emotions.index(t) for t in tags]]
    ok = (T.sum(axis=0) > 0) & (T.sum(axis=0) < len(T))
    if not ok.any():
        raise EmodistError(f"no mapped tag ({', '.join(tags)}) has both positive and negative "
                           "segments in the store: nothing to score", param="map")
    X = _model_rows(model, data.sets, data.X)
    P = np.asarray(run_trained(model, X, tracks=data.track_id, threads=threads), np.float64)
    S = _mapped(model, P, to_tag, tags, np.maximum)
    scored = [t for t, k in zip(tags, ok) if k]
    fold = np.zeros(len(T), dtype=np.int64)
    all_tags = vote_tags(data, rule=rule, profile=profile)
    return {
        "mapping": {"file": source, "classes": to_tag},
        "unseen": {"store_tags": {e: int(all_tags[:, j].sum()) for j, e in enumerate(data.emotions)
                                  if e not in tags},
                   "model_tags": [c for c in model.classes if to_tag[c] is None]},
        "data": {"n_segments": len(T), "n_tracks": len(np.unique(data.track_id)), "tags": scored,
                 "rule": rule, "profile": profile,
                 "positives": {t: int(T[:, j].sum()) for j, t in enumerate(tags)}},
        "unscorable": [t for t, k in zip(tags, ok) if not k],
        "multilabel": multilabel_metrics(T[:, ok], S[:, ok], fold, data.track_id, scored),
        "predictions": {"segment_id": data.segment_id.tolist(), "true": T[:, ok].tolist(),
                        "predicted": S[:, ok].tolist()},
    }


@contextlib.contextmanager
def _as_map_error():
    """A target the store cannot give, named as the mapping's fault."""
    try:
        yield
    except EmodistError as exc:
        raise EmodistError(exc.message, param="map") from None


def _pct(m: dict) -> str:
    return f"{100 * m['pooled']:.1f}%"


def _num(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.3f}"


def transfer_markdown(report: dict) -> str:
    """The report of :func:`run_transfer` as Markdown: scores, mapping, what was never seen."""
    kind = report.get("kind", "class")
    m, d, unseen = report["model"], report["data"], report["unseen"]
    head = (f"Model trained on {m['trained_on'] or 'an unnamed dataset'} ({m['target']}, "
            f"inputs {', '.join(m['inputs'])}), scored on {d['n_segments']} segments of "
            f"{d['n_tracks']} tracks; nothing was fit on this store.")
    lines = [f"# {m['name']} on {report['store']['url']}", "", head, ""]
    if kind == "regression":
        lines += _regression_lines(report)
        seen = ("Store emotions the model has no column for: "
                + (", ".join(unseen["store_targets"]) or "none") + ".",
                "Model columns without a store target: "
                + (", ".join(unseen["model_columns"]) or "none") + ".")
    elif kind == "multilabel":
        lines += _tag_lines(report)
        seen = ("Store tags the model has no tag for (positive segments): "
                + (", ".join(f"{t} ({n})" for t, n in unseen["store_tags"].items()) or "none")
                + ".",
                "Model tags without a store tag: " + (", ".join(unseen["model_tags"]) or "none")
                + ".")
    else:
        lines += ["| level | accuracy | balanced accuracy | macro-F1 |", "|---|---|---|---|"]
        for level, name in (("segment", "segment"), ("track", "track (majority vote)"),
                            ("track_proba", "track (mean probability)")):
            r = report[level]
            lines.append(f"| {name} | {_pct(r['accuracy'])} | {_pct(r['balanced_accuracy'])} | "
                         f"{_pct(r['macro_f1'])} |")
        base = report["baselines"]["segment"]
        lines += ["", (f"Chance {100 * base['chance']:.1f}%, majority class "
                  f"({base['majority_class']}) {100 * base['majority']:.1f}%.")]
        seen = ("Store labels the model has no class for (segments left out of the scores): "
                + (", ".join(f"{lab} ({n})" for lab, n in unseen["store_labels"].items())
                   or "none") + ".",
                "Model classes absent from the store: "
                + (", ".join(unseen["model_classes"]) or "none") + ".")
    what = {"class": ("model class", "store label"), "regression": ("model column", "store target"),
            "multilabel": ("model tag", "store tag")}[kind]
    lines += ["", "## Mapping", "", f"| {what[0]} | {what[1]} |", "|---|---|"]
    lines += [f"| {c} | {lab or '(none)'} |" for c, lab in report["mapping"]["classes"].items()]
    lines += ["", "## Never seen", "", *seen, ""]
    return "\n".join(lines)


def _regression_lines(report: dict) -> list[str]:
    """Per store target: each metric pooled over the segments and over the track means."""
    reg, base = report["regression"], (report.get("baseline") or {}).get("train_mean")
    profile = report["data"]["profile"]
    lines = [*([f"Emotion shares of the {profile} vote profile.", ""] if profile else []),
             "| target | level | " + " | ".join(REGRESSION_METRICS) + " |",
             "|---" * (len(REGRESSION_METRICS) + 2) + "|"]
    for t in report["data"]["targets"]:
        for level in ("segment", "track"):
            lines.append(f"| {t} | {level} | " + " | ".join(
                _num(reg[level][t][x]["pooled"]) for x in REGRESSION_METRICS) + " |")
    if base:
        lines += ["", "The model's training means predicted everywhere: segment R² "
                  + ", ".join(f"{t} {_num(base['segment'][t]['r2']['pooled'])}"
                              for t in report["data"]["targets"]) + "."]
    return lines


def _tag_lines(report: dict) -> list[str]:
    """Macro and micro ROC-AUC and PR-AUC, then each tag's."""
    ml, d = report["multilabel"], report["data"]
    lines = [(f"Store tags: {d['rule']} of the {d['profile']} vote profile; scored tags: "
             f"{', '.join(d['tags'])}; without both positive and negative segments: "
             f"{', '.join(report['unscorable']) or 'none'}."), "",
             "| level | " + " | ".join(MULTILABEL_METRICS) + " |",
             "|---" * (len(MULTILABEL_METRICS) + 1) + "|"]
    for level in ("segment", "track"):
        lines.append(f"| {level} | " + " | ".join(_num(ml[level][x]["pooled"])
                                                  for x in MULTILABEL_METRICS) + " |")
    lines += ["", "| tag | positive segments | ROC-AUC | PR-AUC |", "|---|---|---|---|"]
    lines += [f"| {t['tag']} | {t['positives']} | {_num(t['roc_auc'])} | {_num(t['pr_auc'])} |"
              for t in ml["segment"]["per_tag"]]
    return lines
