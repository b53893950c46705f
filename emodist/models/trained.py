"""Trained emotion models: an ONNX graph and its card, ``model.json``, in one folder.

``emodist train`` (:mod:`emodist.learn.train`) writes a folder::

    MODEL_DIR/
        model.json     the card (this module's format)
        model.onnx     the fitted pipeline (float32 features in, probabilities out)
        reliability.png      classes and distributions: calibration
        confusion.png        classes: the out-of-fold confusion matrix
        scatter_COLUMN.png   continuous targets: predicted against true values

The card is plain JSON: what the model predicts (target and classes), what
it reads (the input feature groups exactly as the store describes them, the
feature columns in input order and a hash of their names), how it was made
(preset, label rule, training data, store fingerprint, emodist version) and
how well it does (the grouped cross-validation run at training time,
calibration included).  It names the ONNX file relative to itself and
records its sha256.

Loading (:func:`load_trained`) never executes code from the folder: it reads
JSON, refuses a file name that leaves the folder and a graph whose sha256 is
not the card's, and returns a frozen :class:`TrainedModel`, what a worker
needs to run the graph on new segments.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emodist.errors import ModelError

__all__ = [
    "CARD_FILE",
    "CONTEXTS",
    "FORMAT",
    "FORMAT_VERSION",
    "ONNX_FILE",
    "ModelInput",
    "TrainedModel",
    "check_inputs",
    "describe_trained",
    "feature_names_sha256",
    "first_difference",
    "is_model_dir",
    "load_trained",
    "run_trained",
    "track_context",
    "write_trained",
]

#: The card's file name inside a model folder.
CARD_FILE = "model.json"
#: The ONNX graph's default file name inside a model folder.
ONNX_FILE = "model.onnx"
#: ``format`` field of every card.
FORMAT = "emodist-trained-model"
#: Version of the card layout.
FORMAT_VERSION = 1
_REQUIRED = ("name", "target", "classes", "inputs", "onnx")
#: What a model sees beside a segment's own features: nothing, or its track's mean features.
CONTEXTS = ("none", "track")


def feature_names_sha256(names) -> str:
    """sha256 of the feature names in input order (one per line, UTF-8).

    Parameters
    ----------
    names : sequence of str

    Returns
    -------
    str
        Hex digest; two models read the same columns in the same order
        exactly when their digests agree.
    """
    return hashlib.sha256("\n".join(map(str, names)).encode()).hexdigest()


@dataclass(frozen=True)
class ModelInput:
    """One feature group the model reads, in input order.

    Attributes
    ----------
    group : str
        Store group name (``handcrafted``, ``musicnn_msd``...).
    features : tuple of str
        The group's columns the model reads, in input order.
    description : dict
        The group as the store's ``attrs["feature_groups"][group]`` records
        it (version, parameters, model sha256).
    """

    group: str
    features: tuple[str, ...]
    description: dict = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class TrainedModel:
    """A loaded, verified model card.

    Attributes
    ----------
    path : str
        The model folder.
    name : str
    target : str
        ``class``, ``factors``, ``distribution``, ``shares``, ``tags`` or
        the ``+``-joined continuous columns (``valence+arousal``).
    classes : tuple of str
        Output columns: the classes of the probabilities (the emotions of a
        distribution), the target columns of a regression, the tags of a
        multi-label model.
    inputs : tuple of ModelInput
        Feature groups in input order.
    onnx_path : str
        The verified ONNX file.
    onnx_sha256 : str
    input_name, input_dtype : str
        The graph's input (``float32``, shape ``(n, n_features)``).
    outputs : dict
        ``{"label": name, "probabilities": name}``; a regression's
        ``{"values": name}``.
    card : dict
        The whole card as read.
    kind : str
        ``class``, ``distribution``, ``regression`` or ``multilabel``
        (the card's ``target.kind``; a card whose target is a name is a
        classification's).
    context : {"none", "track"}
        The card's ``context``: ``"track"``, the graph takes each segment's
        features followed by the mean of each over its track's segments
        (:func:`track_context`; ``2 * len(feature_names)`` columns).
    """

    path: str
    name: str
    target: str
    classes: tuple[str, ...]
    inputs: tuple[ModelInput, ...]
    onnx_path: str
    onnx_sha256: str
    input_name: str
    input_dtype: str
    outputs: dict = field(compare=False)
    card: dict = field(compare=False, repr=False)
    kind: str = "class"
    context: str = "none"

    @property
    def output(self) -> str:
        """The graph output a head stores: the values of a regression, else the probabilities."""
        return self.outputs["values" if self.kind == "regression" else "probabilities"]

    @property
    def feature_names(self) -> list[str]:
        """Every input column, in order."""
        return [n for i in self.inputs for n in i.features]

    @property
    def groups(self) -> list[str]:
        """The feature groups read, in order."""
        return [i.group for i in self.inputs]

    @property
    def input_width(self) -> int:
        """Columns of the graph's input: the features, twice with a track context."""
        return len(self.feature_names) * (2 if self.context == "track" else 1)


def track_context(x, tracks) -> np.ndarray:
    """Each row's features joined with the mean features of its track's rows.

    A target given per song (its vote shares, its dominant emotion) is the
    same for all of the song's segments; the song's mean features carry
    what its segments share and leave each segment's own features beside
    them.  Only the rows of the same track enter a row's context, so a
    track's context never reaches across folds, and a new song's context is
    known as soon as all its segments are: its whole audio.  Training
    (:func:`emodist.learn.votes.evaluate_votes`) and prediction (the
    workers' model heads, over every segment of the track) join with this
    one function.

    Parameters
    ----------
    x : array_like, shape (n, p)
    tracks : array_like, shape (n,)
        Track of each row.

    Returns
    -------
    numpy.ndarray, shape (n, 2 * p)
        ``[x, mean of x over the row's track]``, float64.

    Examples
    --------
    >>> track_context([[1.0], [3.0], [5.0]], ["a", "a", "b"])
    array([[1., 2.],
           [3., 2.],
           [5., 5.]])
    """
    x = np.asarray(x, dtype=np.float64)
    _, inverse, counts = np.unique(np.asarray(tracks), return_inverse=True, return_counts=True)
    sums = np.zeros((len(counts), x.shape[1]))
    np.add.at(sums, inverse, x)
    return np.hstack([x, (sums / counts[:, None])[inverse]])


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def is_model_dir(path) -> bool:
    """Whether ``path`` is a folder holding a trained model's card."""
    p = Path(path)
    if not (p / CARD_FILE).is_file():
        return False
    try:
        return json.loads((p / CARD_FILE).read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _inside(folder: Path, name: str) -> Path:
    """``folder / name``, refused when it is absolute or leaves the folder."""
    if not isinstance(name, str) or not name or os.path.isabs(name):
        raise ModelError(f"{folder}: the card names the ONNX file {name!r}, not a file name "
                         "relative to its folder")
    target = (folder / name).resolve()
    if not target.is_relative_to(folder.resolve()):
        raise ModelError(f"{folder}: the card's ONNX file {name!r} lies outside its folder")
    return target


def write_trained(model_dir, card: dict, onnx_bytes: bytes, *, files: dict | None = None) -> TrainedModel:
    """Write a model folder: the graph, extra files, then the card (last, so a folder with a card is whole).

    Parameters
    ----------
    model_dir : str or path-like
        Created when missing; an existing folder must be empty or hold a
        model (which is replaced).
    card : dict
        The card without its ``format``, ``format_version`` and ``onnx``
        file fields; ``onnx`` may carry ``input``/``outputs`` details.
    onnx_bytes : bytes
        The serialised graph.
    files : dict, optional
        Other file name -> bytes (figures), written beside the card.

    Returns
    -------
    TrainedModel
        The folder as :func:`load_trained` reads it.

    Raises
    ------
    ModelError
        ``model_dir`` exists and is neither empty nor a model folder.
    """
    folder = Path(model_dir)
    if folder.exists() and not folder.is_dir():
        raise ModelError(f"{folder} exists and is not a folder")
    if folder.is_dir() and any(folder.iterdir()) and not is_model_dir(folder):
        raise ModelError(f"{folder} exists and is not an emodist model folder (no {CARD_FILE}); "
                         "choose a new folder")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CARD_FILE).unlink(missing_ok=True)
    (folder / ONNX_FILE).write_bytes(onnx_bytes)
    for name, data in (files or {}).items():
        (_inside(folder, name)).write_bytes(data)
    full = {"format": FORMAT, "format_version": FORMAT_VERSION, **card}
    full["onnx"] = {**dict(card.get("onnx") or {}), "file": ONNX_FILE,
                    "sha256": hashlib.sha256(onnx_bytes).hexdigest()}
    tmp = folder / (CARD_FILE + ".tmp")
    tmp.write_text(json.dumps(full, indent=1, sort_keys=False) + "\n")
    os.replace(tmp, folder / CARD_FILE)
    return load_trained(folder)


def load_trained(model_dir) -> TrainedModel:
    """Read and verify a model folder.

    Parameters
    ----------
    model_dir : str or path-like
        A folder written by :func:`write_trained`.

    Returns
    -------
    TrainedModel

    Raises
    ------
    ModelError
        No card, a card that is not JSON or lacks a field, an ONNX file
        name outside the folder, a missing ONNX file, or one whose sha256 is
        not the card's.
    """
    folder = Path(model_dir)
    path = folder / CARD_FILE
    if not path.is_file():
        raise ModelError(f"{folder}: no {CARD_FILE} (not an emodist model folder)")
    try:
        card: dict[str, Any] = json.loads(path.read_text())
    except ValueError as exc:
        raise ModelError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(card, dict) or card.get("format") != FORMAT:
        raise ModelError(f"{path}: not an emodist model card (format {FORMAT!r} expected)")
    if card.get("format_version") != FORMAT_VERSION:
        raise ModelError(f"{path}: card format version {card.get('format_version')!r}; "
                         f"this emodist reads version {FORMAT_VERSION}")
    missing = [k for k in _REQUIRED if k not in card]
    if missing:
        raise ModelError(f"{path}: the card lacks {', '.join(missing)}")
    onnx_info = dict(card["onnx"])
    onnx_path = _inside(folder, onnx_info.get("file"))
    if not onnx_path.is_file():
        raise ModelError(f"{folder}: the card's ONNX file {onnx_info.get('file')!r} is missing")
    actual = _sha256_file(onnx_path)
    if actual != onnx_info.get("sha256"):
        raise ModelError(f"{onnx_path}: sha256 {actual[:12]}... is not the card's "
                         f"{str(onnx_info.get('sha256'))[:12]}... (the file was changed; retrain "
                         "or restore it)")
    inputs = tuple(ModelInput(str(i["group"]), tuple(map(str, i["features"])),
                              dict(i.get("description") or {})) for i in card["inputs"])
    names = [n for i in inputs for n in i.features]
    want = card.get("feature_names_sha256")
    if want is not None and feature_names_sha256(names) != want:
        raise ModelError(f"{path}: the input feature names do not match their recorded hash")
    inp = dict(onnx_info.get("input") or {})
    target = card["target"]
    if isinstance(target, dict):
        kind, target = str(target.get("kind")), str(target.get("name"))
        if kind not in ("regression", "multilabel"):
            raise ModelError(f"{path}: unknown target kind {kind!r}")
    else:
        kind = "distribution" if target == "distribution" else "class"
    context = card.get("context", "none")
    if context not in CONTEXTS:
        raise ModelError(f"{path}: unknown context {context!r}; this emodist reads "
                         f"{', '.join(CONTEXTS)}")
    shape = inp.get("shape")
    width = len(names) * (2 if context == "track" else 1)
    if isinstance(shape, list) and len(shape) == 2 and shape[1] is not None and shape[1] != width:
        what = (f"{len(names)} features and their track means" if context == "track"
                else f"{len(names)} features")
        raise ModelError(f"{path}: the ONNX input takes {shape[1]} columns; the card's inputs "
                         f"with context {context!r} give {width} ({what})")
    outputs = dict(onnx_info.get("outputs") or {})
    if ("values" if kind == "regression" else "probabilities") not in outputs:
        raise ModelError(f"{path}: the card names no ONNX output of the model's "
                         f"{'values' if kind == 'regression' else 'probabilities'}")
    return TrainedModel(
        path=str(folder),
        name=str(card["name"]),
        target=str(target),
        classes=tuple(map(str, card["classes"])),
        inputs=inputs,
        onnx_path=str(onnx_path),
        onnx_sha256=actual,
        input_name=str(inp.get("name", "features")),
        input_dtype=str(inp.get("dtype", "float32")),
        outputs=outputs,
        card=card,
        kind=kind,
        context=context,
    )


def first_difference(stored: dict, wanted: dict, prefix: str = "") -> tuple | None:
    """The first field where two recorded descriptions differ, depth first.

    Parameters
    ----------
    stored, wanted : dict
        Descriptions as JSON values (a store's group record, a card's input,
        a group's :meth:`~emodist.features.base.FeatureGroup.describe`).
    prefix : str
        Dotted path of the dicts compared (for nested fields).

    Returns
    -------
    tuple or None
        ``(dotted field, stored value, wanted value)``, or ``None`` when
        they agree (numbers compare by value: ``1 == 1.0``).
    """
    for key in sorted(set(stored) | set(wanted)):
        a, b = stored.get(key), wanted.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            inner = first_difference(a, b, f"{prefix}{key}.")
            if inner:
                return inner
        elif a != b and not (isinstance(a, (int, float)) and isinstance(b, (int, float))
                             and float(a) == float(b)):
            return f"{prefix}{key}", a, b
    return None


def check_inputs(model: TrainedModel, recorded: dict, names: dict) -> None:
    """Refuse a store whose groups are not the ones the model was trained on.

    Parameters
    ----------
    model : TrainedModel
    recorded : dict
        The store's ``attrs["feature_groups"]``: group -> description.
    names : dict
        The store's group -> feature names.

    Raises
    ------
    ModelError
        (``param="model"``) a group the store lacks, one written with
        another version, parameter or model hash (the field and both values
        named), or a column the store's group does not have.
    """
    for inp in model.inputs:
        if inp.group not in recorded or inp.group not in names:
            raise ModelError(f"the model reads group {inp.group!r}, which the store does not "
                             f"hold (it has {', '.join(names) or 'none'})", param="model")
        diff = first_difference(inp.description, recorded[inp.group])
        if diff:
            raise ModelError(f"the model was trained on {inp.group} with {diff[0]}={diff[1]!r}; "
                             f"the store's was written with {diff[2]!r}", param="model")
        missing = sorted(set(inp.features) - set(names[inp.group]))
        if missing:
            raise ModelError(f"the model reads {missing[0]!r} of group {inp.group}, which the "
                             "store does not hold", param="model")


def run_trained(model: TrainedModel, x, *, tracks=None, threads: int = 1):
    """The model's outputs on feature rows: probabilities, or a regression's values.

    Parameters
    ----------
    model : TrainedModel
    x : numpy.ndarray, shape (n, len(model.feature_names))
        Rows in the model's input column order.
    tracks : array_like, shape (n,), optional
        Track of each row: required by a model with a track context, which
        reads each row beside the mean of its track's rows (give every
        segment of a track).
    threads : int
        Threads of the ONNX Runtime session.

    Returns
    -------
    numpy.ndarray, shape (n, len(model.classes))
        The graph's probabilities or values output (its sha256 checked when loaded).

    Raises
    ------
    ModelError
        A model with a track context and no ``tracks``.
    """
    # the session module imports onnx: reading a card (``emodist model show``) does not need it
    from emodist.models.session import run_outputs

    if model.context == "track":
        if tracks is None:
            raise ModelError(f"model {model.name} reads each segment beside its track's mean "
                             "features; give the rows' tracks", param="model")
        x = track_context(x, tracks).astype(np.float32)
    name = model.output
    meta = {"input_name": model.input_name, "output_name": name,
            "output_dim": len(model.classes), "sha256": model.onnx_sha256}
    dtype = np.dtype(model.input_dtype)
    convert = None if dtype == np.float32 else (lambda b, out=None: b.astype(dtype))
    return run_outputs(np.asarray(x), model.onnx_path, [name], threads=threads,
                       sha256=model.onnx_sha256, meta=meta, convert=convert)[name]


def _pct(x) -> str:
    return "-" if x is None else f"{100 * float(x):.1f}%"


def _num(x) -> str:
    return "n/a" if x is None else f"{float(x):.3f}"


def _pm(m: dict) -> str:
    """``mean ± std`` over the folds."""
    return f"{_num(m.get('mean'))} ± {_num(m.get('std'))}"


def _accuracies(m: dict) -> str:
    """Accuracy and balanced accuracy, means over the folds; the pooled balanced accuracy too
    when it differs (a fold without some class scores only the classes it has)."""
    bal = m["balanced_accuracy"]
    pooled = bal.get("pooled")
    extra = (f" ({_pct(pooled)} pooled over the folds)"
             if pooled is not None and abs(pooled - bal["mean"]) >= 0.0005 else "")
    return f"accuracy {_pct(m['accuracy']['mean'])}, balanced accuracy {_pct(bal['mean'])}{extra}"


def describe_trained(model: TrainedModel) -> list[str]:
    """Lines for ``emodist model show``: what the model predicts, reads, was trained on, scores."""
    c = model.card
    lines = [f"model {model.name}  ({model.path})",
             f"  target: {model.target}; {len(model.classes)} outputs: {', '.join(model.classes)}"]
    preset = c.get("preset") or {}
    if preset:
        lines.append(f"  preset: {preset.get('key')} ({preset.get('name')})")
    for i in model.inputs:
        d = i.description
        sha = d.get("model_sha256")
        extra = f", model sha256 {sha[:12]}..." if sha else ""
        lines.append(f"  input: {i.group} ({len(i.features)} features, version "
                     f"{d.get('version', '?')}{extra})")
    if model.context == "track":
        lines.append(f"  context: track (each segment's {len(model.feature_names)} features, then "
                     "their means over the segment's track)")
    lines.append(f"  onnx: {Path(model.onnx_path).name} sha256 {model.onnx_sha256[:12]}... input "
                 f"{model.input_name} {model.input_dtype} (n, {model.input_width}); outputs "
                 + ", ".join(f"{k}={v}" for k, v in model.outputs.items()))
    if t := c.get("training"):
        how = (f"label rule {c['label_rule']}" if c.get("label_rule") else
               f"vote profile {(c.get('cv') or {}).get('profile')}")
        lines.append(f"  trained on: {t.get('dataset') or '?'}: {t.get('n_tracks')} tracks, "
                     f"{t.get('n_segments')} segments; {how}")
        if counts := t.get("class_counts"):
            lines.append("  class counts: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    cv = c.get("cv") or {}
    if seg := cv.get("segment"):
        lines.append(f"  {cv.get('folds')}-fold grouped CV, segments: {_accuracies(seg)}, "
                     f"macro-F1 {_pct(seg['macro_f1']['mean'])}")
    if trk := cv.get("track"):
        lines.append(f"  tracks (majority vote): {_accuracies(trk)}")
    if conf := (seg or {}).get("confusion"):
        recall = ", ".join(f"{c} {r:.0f}%" for c, r in zip(conf["classes"], conf["tpr"]))
        figure = f"; confusion matrix {conf['figure']}" if conf.get("figure") else ""
        lines.append(f"  recall per class (segments, folds pooled): {recall}{figure}")
    if reg := cv.get("regression"):
        seg, trk = reg["segment"]["mean"], reg["track"]["mean"]
        lines.append(f"  {cv.get('folds')}-fold grouped CV regression, mean over "
                     f"{len(model.classes)} targets: segments R² {_num(seg['r2'])}, CCC "
                     f"{_num(seg['ccc'])}, r {_num(seg['pearson'])}; tracks R² {_num(trk['r2'])}, "
                     f"CCC {_num(trk['ccc'])}")
        for col in model.classes:
            m = reg["segment"][col]
            lines.append(f"    {col}: R² {_pm(m['r2'])}, RMSE {_pm(m['rmse'])}, CCC {_pm(m['ccc'])}")
    if tags := cv.get("multilabel"):
        seg = tags["segment"]
        lines.append(f"  {cv.get('folds')}-fold grouped CV tags: ROC-AUC macro "
                     f"{_pm(seg['roc_auc_macro'])}, micro {_pm(seg['roc_auc_micro'])}; PR-AUC "
                     f"macro {_pm(seg['pr_auc_macro'])}, micro {_pm(seg['pr_auc_micro'])}")
        if cv.get("dropped"):
            lines.append(f"  tags dropped (too few tracks): {', '.join(cv['dropped'])}")
        if cal := cv.get("calibration"):
            lines.append(f"  calibration (out of fold): mean per-tag ECE {_num(cal.get('classwise_ece'))}")
    if dist := cv.get("distribution"):
        lines.append(f"  distribution: mean JSD {dist['jsd']['mean']:.4f}, top-1 {_pct(dist['top1']['mean'])}")
    if (cal := cv.get("calibration")) and "ece" in cal:
        lines.append(f"  calibration (out of fold): ECE {cal.get('ece', float('nan')):.4f} "
                     f"(top label), class-wise {cal.get('classwise_ece', float('nan')):.4f}; "
                     f"diagram {cal.get('figure', '-')}")
    chosen = c.get("chosen_from") or {}
    auto = chosen.get("auto")
    if auto:
        outer = auto["outer"]["segment"]
        lines.append(f"  chosen by nested CV ({auto['why']}): outer {auto['folds']}-fold "
                     f"{_accuracies(outer)}, ECE "
                     f"{auto['outer']['calibration']['ece']:.4f}; folds chose "
                     + ", ".join(f"{x['features']}/{x['classifier']}" for x in auto["choices"]))
    elif chosen:
        lines.append(f"  chosen from {chosen.get('report')}: rank {chosen.get('rank')} of "
                     f"{chosen.get('of')} by {chosen.get('rank_by')} ({chosen.get('value')})")
    lines.append(f"  emodist {c.get('emodist_version')}, created {c.get('created')}")
    return lines
