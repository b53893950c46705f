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

Nothing is fit: the whole store is one test fold, so each metric's ``mean``
is its ``pooled`` value, at segment level, at track level by majority vote
and by the mean of the mapped probabilities.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import os

import fsspec
import numpy as np

from emodist._version import __version__
from emodist.errors import EmodistError
from emodist.learn.data import load_data, open_dataset, store_info, stored_groups
from emodist.learn.scoring import (
    baseline_rates,
    classification_metrics,
    track_level,
    track_mean_proba,
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
        A folder written by ``emodist train``.
    store : str, path-like or xarray.Dataset
        A labelled feature store holding the model's input groups.
    mapping : dict, str or path-like, optional
        Model class -> store label, or a mapping file (:func:`read_mapping`);
        default: classes map onto the labels of the same name.
    out : str, optional
        Folder (or fsspec URL) for ``report.json`` and ``report.md``.
    storage_options : dict, optional
        fsspec options of the store, the mapping file and ``out``.
    threads : int
        Threads of the ONNX Runtime session.

    Returns
    -------
    dict
        The report: ``model``, ``store``, ``mapping``, ``unseen``, ``data``,
        ``segment``, ``track`` and ``track_proba`` metrics (as
        :func:`emodist.learn.scoring.classification_metrics`, one fold),
        ``baselines`` and ``predictions`` (per scored segment).

    Raises
    ------
    emodist.errors.ModelError
        Not a model folder, or a store without the model's groups as it was
        trained on them (``param="model"``).
    emodist.errors.EmodistError
        A mapping that names no class of the model or maps no class onto a
        label of the store (``param="map"``); a model that predicts no
        classes (``param="model"``).
    """
    model = load_trained(model_dir)
    if model.target not in ("class", "factors"):
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
    data = load_data(ds, "+".join(groups), None, "class")
    columns = {(g, n): i for i, (g, n) in enumerate(
        (g, n) for g, names in data.sets[0].columns for n in names)}
    X = data.X[data.sets[0].name][:, [columns[(i.group, n)] for i in model.inputs
                                      for n in i.features]]
    to_label = class_mapping(model.classes, set(data.y), mapping)
    labels = list(dict.fromkeys(v for v in to_label.values() if v is not None))
    if not labels:
        raise EmodistError(f"no class of the model ({', '.join(model.classes)}) is a label of the "
                           f"store ({', '.join(data.classes)}); give a mapping file",
                           param="map")
    proba = np.asarray(run_trained(model, X, threads=threads), np.float64)
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
    report = {
        "emodist_version": __version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "model": {"path": model.path, "name": model.name, "target": model.target,
                  "classes": list(model.classes), "onnx_sha256": model.onnx_sha256,
                  "inputs": groups,
                  "trained_on": (model.card.get("training") or {}).get("dataset")},
        "store": store_info(store, ds),
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
    if out is not None:
        with staged_folder(out, last="report.json", storage_options=storage_options) as tmp:
            (tmp / "report.md").write_text(transfer_markdown(report), encoding="utf-8")
            (tmp / "report.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    return report


def _pct(m: dict) -> str:
    return f"{100 * m['pooled']:.1f}%"


def transfer_markdown(report: dict) -> str:
    """The report of :func:`run_transfer` as Markdown: scores, mapping, what was never seen."""
    m, d, unseen = report["model"], report["data"], report["unseen"]
    head = (f"Model trained on {m['trained_on'] or 'an unnamed dataset'} ({m['target']}, "
            f"inputs {', '.join(m['inputs'])}), scored on {d['n_segments']} segments of "
            f"{d['n_tracks']} tracks; nothing was fit on this store.")
    lines = [f"# {m['name']} on {report['store']['url']}", "", head, "",
             "| level | accuracy | balanced accuracy | macro-F1 |", "|---|---|---|---|"]
    for level, name in (("segment", "segment"), ("track", "track (majority vote)"),
                        ("track_proba", "track (mean probability)")):
        r = report[level]
        lines.append(f"| {name} | {_pct(r['accuracy'])} | {_pct(r['balanced_accuracy'])} | "
                     f"{_pct(r['macro_f1'])} |")
    base = report["baselines"]["segment"]
    chance = (f"Chance {100 * base['chance']:.1f}%, majority class "
              f"({base['majority_class']}) {100 * base['majority']:.1f}%.")
    lines += ["", chance, "",
              "## Mapping", "", "| model class | store label |", "|---|---|"]
    lines += [f"| {c} | {lab or '(none)'} |" for c, lab in report["mapping"]["classes"].items()]
    lines += ["", "## Never seen", "",
              "Store labels the model has no class for (segments left out of the scores): "
              + (", ".join(f"{lab} ({n})" for lab, n in unseen["store_labels"].items()) or "none")
              + ".",
              "Model classes absent from the store: "
              + (", ".join(unseen["model_classes"]) or "none") + ".", ""]
    return "\n".join(lines)
