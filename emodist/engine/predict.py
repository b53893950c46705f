"""Recognise new music: a trained model's groups and head extracted into a store, per track.

:func:`run_predict` turns a trained model (its card, :mod:`emodist.models.trained`)
into an extraction: the input groups exactly as the model was trained on them
(each rebuilt from its recorded parameters and compared field by field, so a
store written with another version, parameter or model hash is refused by
name), plus the model's head (:class:`emodist.features.head.ModelHead`), which
runs on the workers like any model group and writes ``MODEL(segment, output)``:
class probabilities, a regression's values (one column per target) or a
multi-label model's tag probabilities, the output coordinate
``MODEL_feature`` naming the classes, target columns or tags.  Groups already
in the store are reused; the run is resumable.  Per-track results are then
written into the store beside them (:func:`write_track_results`):

* classes (and distributions): the mean probability over the track's
  segments, the dominant class, and for GEMS emotions the three factor shares;
* continuous targets: the mean value over the track's segments.  When the
  targets are the nine GEMS vote shares (``--target shares``) their argmax is
  the dominant emotion, as the label rule reads it from the listeners' shares,
  and the factor shares are the sums of their emotions' predicted shares (each
  share predicted on its own, so they need not sum to 1);
* tags: the mean probability of each tag; tags are not exclusive, so no
  dominant tag and no factor shares.

:func:`predict_files` answers for a few files at once in this process: no
cluster, no store.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr

from emodist.data.catalog import audio_source, load_audio
from emodist.data.segments import plan_segments
from emodist.engine.extract import ExtractResult, run_extract
from emodist.engine.plan import first_difference
from emodist.engine.worker import ChunkTask, Job, SegmentRows, compute_chunk
from emodist.errors import EmodistError, ModelError
from emodist.features import REGISTRY
from emodist.features.head import ModelHead
from emodist.learn.targets import FACTOR_OF, FACTORS
from emodist.progress import progress_bar
from emodist.runtime.cluster import connect
from emodist.spec import FILE_CHUNK_SEGMENTS, ExtractionSpec, Runtime
from emodist.store import layout
from emodist.store.accessor import open_store
from emodist.store.handle import as_store
from emodist.store.zarrio import replace_variables

__all__ = ["FileValues", "PredictResult", "failure_text", "featurise_files", "input_group",
           "model_head", "model_kind", "model_spec", "predict_files", "recorded_spec",
           "run_predict", "track_chunks", "track_results", "write_track_results"]

log = logging.getLogger(__name__)


@dataclass
class PredictResult:
    """Outcome of :func:`run_predict` or :func:`predict_files`.

    Attributes
    ----------
    model : str
        The model's name (its variable in the store).
    classes : tuple of str
        The model's output columns (classes, target columns or tags).
    tracks : pandas.DataFrame
        One row per track (:func:`track_results`): ``track_id``, ``path``,
        ``n_segments``, the mean of each output column and, where they apply,
        ``dominant``, ``top3`` and one share per GEMS factor.
    segments : pandas.DataFrame
        One row per segment: ``segment_id``, ``track_id``, ``start_s`` and one
        column per output.
    extract : ExtractResult or None
        The extraction run (``None`` for :func:`predict_files`).
    seconds : float
        Wall time.
    """

    model: str
    classes: tuple
    tracks: pd.DataFrame
    segments: pd.DataFrame
    extract: ExtractResult | None = None
    seconds: float = 0.0
    failures: list = field(default_factory=list)
    kind: str = "class"


def model_kind(model) -> str:
    """``class``, ``distribution``, ``regression`` or ``multilabel`` (a model without one: ``class``)."""
    return getattr(model, "kind", "class")


def _tupled(value):
    if isinstance(value, list):
        return tuple(_tupled(v) for v in value)
    if isinstance(value, dict):
        return {k: _tupled(v) for k, v in value.items()}
    return value


def input_group(name: str, record: dict, storage_options: dict | None = None, *,
                source: str = "model"):
    """The group ``name`` rebuilt from its recorded description, resolved and checked.

    Parameters
    ----------
    name : str
        The group's name.
    record : dict
        Its description as a store's ``feature_groups`` (or a model card) records it.
    storage_options : dict, optional
        fsspec options to read the group's network.
    source : {"model", "store"}
        Whose record it is: a model card's or a store's (named in errors, as
        the parameter at fault).

    Raises
    ------
    ModelError
        A group this emodist does not have, or one that would not write the
        values recorded (the field, the recorded and this emodist's value named).
    """
    whose = "the model reads" if source == "model" else "the store holds"
    made = "the model was trained on" if source == "model" else "the store was written with"
    factory = REGISTRY.get(name)
    cls = getattr(factory, "cls", factory)  # a Bound factory (musicnn_msd) records its fixed fields
    if factory is None or not dataclasses.is_dataclass(cls):
        raise ModelError(f"{whose} group {name!r}, which this emodist cannot extract "
                         f"(it has {', '.join(REGISTRY)})", param=source)
    params = {k: _tupled(v) for k, v in (record.get("params") or {}).items()}
    try:
        group = cls(**params).resolve(storage_options)
    except TypeError as exc:
        raise ModelError(f"{made} {name} with parameters this emodist does not know "
                         f"({exc})", param=source) from None
    diff = first_difference(record, group.describe())
    if diff:
        raise ModelError(f"{made} {name} with {diff[0]}={diff[1]!r}; this "
                         f"emodist extracts {diff[2]!r} (use the emodist and models it was "
                         f"{'trained' if source == 'model' else 'written'} with)", param=source)
    return group


def recorded_spec(common: dict, groups) -> ExtractionSpec:
    """An extraction of ``groups`` with a store's recorded plan and STFT (its ``spec`` attribute).

    Every value a group computes then matches the store's: the segment length
    and hop, sample rate, STFT and last-piece rule are the recorded ones.
    """
    return ExtractionSpec(groups=tuple(groups), **{k: _tupled(v) for k, v in common.items()})


def model_head(model, groups) -> ModelHead:
    """The model's head group: its ONNX graph over the columns it reads of ``groups``.

    Raises
    ------
    ModelError
        The model reads a column its group does not have.
    """
    columns = []
    for inp, group in zip(model.inputs, groups):
        index = {n: i for i, n in enumerate(group.feature_names())}
        missing = [n for n in inp.features if n not in index]
        if missing:
            raise ModelError(f"the model reads {missing[0]!r} of group {group.name}, which "
                             "this emodist does not write", param="model")
        cols = tuple(index[n] for n in inp.features)
        columns.append(() if cols == tuple(range(group.width)) else cols)
    context = getattr(model, "context", "none")  # a record without one: none
    width = len(model.feature_names) * (2 if context == "track" else 1)
    return ModelHead(head_name=model.name, groups=tuple(g.name for g in groups),
                     columns=tuple(columns) if any(columns) else (),
                     classes=tuple(model.classes), sha256=model.onnx_sha256,
                     input_width=width, input_name=model.input_name,
                     output_name=model.outputs["values" if model_kind(model) == "regression"
                                               else "probabilities"],
                     input_dtype=model.input_dtype, context=context,
                     model=str(model.onnx_path))


def model_spec(model, runtime: Runtime | None = None) -> ExtractionSpec:
    """What an extraction for ``model`` writes: its input groups, its head, its plan.

    The segment plan and STFT are the training store's (recorded in the card),
    so every value the head reads is computed as it was for training.
    """
    runtime = runtime or Runtime()
    groups = tuple(input_group(i.group, i.description, runtime.options("model"))
                   for i in model.inputs)
    recorded = model.card.get("store_spec")
    if not isinstance(recorded, dict):
        raise ModelError(f"{model.path}: the card does not record its store's segment plan "
                         "(store_spec)", param="model")
    return recorded_spec(recorded, groups + (model_head(model, groups),))


def _segment_frame(ds: xr.Dataset, name: str) -> pd.DataFrame:
    probs = np.asarray(ds[name].values, np.float64)
    done = np.asarray(ds[layout.status_name(name)].values) == layout.STATUS_DONE
    classes = list(layout.decode_strings(ds[layout.feature_dim(name)].values))
    frame = pd.DataFrame(probs, columns=classes)
    frame.insert(0, "segment_id", layout.decode_strings(ds[layout.SEGMENT].values))
    frame.insert(1, "track_id", layout.decode_strings(ds["track_id"].values))
    frame.insert(2, "start_s", np.asarray(ds["start_s"].values, np.float64))
    frame.insert(3, "path", layout.decode_strings(ds["path"].values))
    return frame[done].reset_index(drop=True)


def _gems_shares(kind: str, classes) -> bool:
    """Whether the outputs are shares of GEMS emotions (factors and a dominant emotion apply)."""
    return kind != "multilabel" and bool(classes) and all(c in FACTOR_OF for c in classes) and \
        (kind != "regression" or len(classes) == len(FACTOR_OF))


def track_results(segments: pd.DataFrame, classes, *, kind: str = "class") -> pd.DataFrame:
    """Per-track results from per-segment outputs.

    Parameters
    ----------
    segments : pandas.DataFrame
        ``track_id``, ``path`` and one column per output.
    classes : sequence of str
        The output columns.
    kind : {"class", "distribution", "regression", "multilabel"}
        The model's kind (:func:`model_kind`).

    Returns
    -------
    pandas.DataFrame
        ``track_id``, ``path``, ``n_segments``, the mean of each output over
        the track's segments and, where they apply:

        * ``dominant`` (the argmax, first class on ties) and the three GEMS
          factors ``sublimity``, ``vitality``, ``unease`` (the sums of their
          emotions' columns): classes and distributions of GEMS emotions,
          and a regression of the nine GEMS shares;
        * ``dominant`` alone: classes that are not GEMS emotions;
        * ``top3`` (``"calmness 0.61, sadness 0.20, ..."``): every kind but
          a regression of other columns (valence, arousal).
    """
    classes = list(classes)
    grouped = segments.groupby("track_id", sort=False)
    out = grouped[classes].mean()
    out.insert(0, "path", grouped["path"].first())
    out.insert(1, "n_segments", grouped.size())
    probs = out[classes].to_numpy(np.float64)
    gems = _gems_shares(kind, classes)
    if kind in ("class", "distribution") or gems:
        out["dominant"] = np.asarray(classes)[np.argmax(probs, axis=1)] if len(out) else []
    if kind != "regression" or gems:
        top = np.argsort(-probs, axis=1, kind="stable")[:, :3]
        out["top3"] = [", ".join(f"{classes[j]} {p[j]:.2f}" for j in t) for t, p in zip(top, probs)]
    if gems:
        for factor in FACTORS:
            cols = [c for c in classes if FACTOR_OF[c] == factor]
            out[factor] = out[cols].sum(axis=1) if cols else 0.0
    return out.reset_index()


def write_track_results(store: str, name: str, tracks: pd.DataFrame, classes,
                        storage_options: dict | None = None, *, kind: str = "class") -> None:
    """Write per-track results beside the model's segments (replacing earlier ones).

    Variables, on the dimension ``NAME_track`` (the track ids), the output
    coordinate ``NAME_feature`` shared with ``NAME(segment, NAME_feature)``:

    * classes and distributions: ``NAME_track_probability(NAME_track,
      NAME_feature)`` float32 (what ``emodist query --emotion`` ranks);
    * regression and tags: ``NAME_track_mean(NAME_track, NAME_feature)``
      float32, the mean value or tag probability;
    * where :func:`track_results` gives them: ``NAME_dominant(NAME_track)``
      and ``NAME_track_factors(NAME_track, factor)`` float32.
    """
    dim = f"{name}_track"
    mean = "_track_probability" if kind in ("class", "distribution") else "_track_mean"
    variables = {
        f"{name}{mean}": ((dim, layout.feature_dim(name)), tracks[list(classes)].to_numpy(np.float32)),
    }
    if "dominant" in tracks:
        variables[f"{name}_dominant"] = ((dim,), tracks["dominant"].to_numpy(dtype=str).astype(object))
    coords = {dim: tracks["track_id"].to_numpy(dtype=str).astype(object),
              layout.feature_dim(name): np.asarray(list(classes), dtype=object)}
    if all(f in tracks for f in FACTORS):
        variables[f"{name}_track_factors"] = ((dim, "factor"),
                                              tracks[list(FACTORS)].to_numpy(np.float32))
        coords["factor"] = np.asarray(FACTORS, dtype=object)
    replace_variables(store, xr.Dataset(variables, coords={
        k: v for k, v in coords.items() if k != layout.feature_dim(name)}), storage_options)


def run_predict(data, model, store: str, runtime: Runtime | None = None, *,
                overwrite: bool = False, on_result=None) -> PredictResult:
    """Recognise the music at ``data`` with a trained model, into the store ``store``.

    Parameters
    ----------
    data : str or sequence of str
        One audio file, a folder, a manifest (column ``path``) or a dataset,
        or several audio files; local or fsspec URL
        (:func:`emodist.data.catalog.load_audio`).
    model : TrainedModel
        A verified trained model (:func:`emodist.models.trained.load_trained`).
    store : str
        Where the groups, the probabilities and the per-track results go; groups
        already there are reused when they were written as the model needs them.
    runtime : Runtime, optional
        Cluster, storage options, device, progress.
    overwrite : bool
        Replace groups of the store written with another spec instead of refusing.

    Returns
    -------
    PredictResult
    """
    t0 = time.perf_counter()
    runtime = runtime or Runtime()
    spec = model_spec(model, runtime)
    catalog = load_audio(data, storage_options=runtime.options("dataset"))
    store = as_store(store, runtime.options("store"))  # resolved once for the whole run
    if getattr(model, "context", "none") == "track":
        res = _predict_with_context(data, store, spec, runtime, overwrite=overwrite,
                                    catalog=catalog, on_result=on_result)
    else:
        res = run_extract(audio_source(data), store, spec, runtime, overwrite=overwrite,
                          catalog=catalog, on_result=on_result)
    ds = open_store(store, runtime.options("store"))
    segments = _segment_frame(ds, model.name)
    kind = model_kind(model)
    tracks = track_results(segments, model.classes, kind=kind)
    write_track_results(store, model.name, tracks, model.classes, runtime.options("store"), kind=kind)
    return PredictResult(model=model.name, classes=tuple(model.classes), tracks=tracks,
                         segments=segments, extract=res, seconds=time.perf_counter() - t0,
                         failures=res.failures, kind=kind)


def _predict_with_context(data, store, spec: ExtractionSpec, runtime: Runtime, *, overwrite,
                          catalog, on_result) -> ExtractResult:
    """The input groups of every segment stored first, then the head: two runs on one cluster.

    A head with a track context reads the mean over all of a track's
    segments; a chunk may hold only some of them, and its neighbours' inputs
    are stored only once their own chunks finish.  So the first run stores
    every input group, and the second runs the head alone, reading each
    track's other segments from the store
    (:func:`emodist.engine.worker.track_context_rows`).
    """
    with connect(runtime) as client:
        shared = dataclasses.replace(runtime, client=client)
        first = run_extract(audio_source(data), store, spec.replace(groups=spec.groups[:-1]),
                            shared, overwrite=overwrite, catalog=catalog, on_result=on_result)
        res = run_extract(audio_source(data), store, spec, shared, overwrite=overwrite,
                          catalog=catalog, on_result=on_result)
    res.n_written += first.n_written
    res.n_chunks += first.n_chunks
    res.groups_added = first.groups_added + res.groups_added
    res.resumed, res.seconds = first.resumed, first.seconds + res.seconds
    return res


@dataclass
class FileValues:
    """The groups of a few files computed in this process (:func:`featurise_files`).

    Attributes
    ----------
    table : pandas.DataFrame
        The segment plan: ``segment_id``, ``track_id``, ``path``, ``start_s``...
    values : dict of str to numpy.ndarray
        Group name -> ``(n_segments, width)`` float32.
    status : dict of str to numpy.ndarray
        Group name -> int8 status per segment.
    failures : list of dict
        Files that could not be planned or computed.
    """

    table: pd.DataFrame
    values: dict
    status: dict
    failures: list


def featurise_files(data, spec: ExtractionSpec, runtime: Runtime | None = None, *,
                    param: str | None = None, empty_ok: bool = False) -> FileValues:
    """Every group of ``spec`` for the audio at ``data``, here and now: no cluster, no store.

    The segment plan and the workers' own chunk function
    (:func:`emodist.engine.worker.compute_chunk`): decode once per track,
    every group, batched ONNX on this process's cached sessions.  The tracks
    go in chunks of whole tracks of about ``runtime.chunk`` segments
    (:data:`~emodist.spec.FILE_CHUNK_SEGMENTS` by default,
    :func:`track_chunks`), so memory does not grow with the number of files;
    with ``runtime.progress``, a bar shows done/total, rate and time left
    when there is more than one chunk.

    With ``empty_ok``, audio that gives no segment (unreadable, too short)
    returns an empty table with the reasons in ``failures``, so that a caller
    going through several files records it and goes on.

    Raises
    ------
    EmodistError
        No segment to compute, unless ``empty_ok`` (``param`` names the option
        that gave ``data``; none for a command's positional argument); a
        missing file or folder.
    """
    runtime = runtime or Runtime()
    catalog = load_audio(data, storage_options=runtime.options("dataset"))
    plan = plan_segments(catalog, spec)
    table = plan.table
    problems = [{"track_id": str(t), "path": str(p), "error": str(m), "group": ""}
                for t, p, m in plan.problems]
    if len(table) == 0 and empty_ok:
        return FileValues(table=table, values={}, status={}, failures=problems)
    if len(table) == 0:
        reasons = "; ".join(failure_text(p, m) for _, p, m in plan.problems[:3])
        if len(plan.problems) == 1 and reasons.startswith(audio_source(data)):
            raise EmodistError(reasons, param=param)  # one file: its own reason says it all
        raise EmodistError(f"{audio_source(data)}: no segment to compute "
                           f"({reasons or 'too short'})", param=param)
    job = Job(store="", spec=spec, batch_size=runtime.batch_size,
              dataset_options=runtime.options("dataset"), model_options=runtime.options("model"),
              device=runtime.device)
    threads = max(1, runtime.threads_per_worker or 1)
    bounds = track_chunks(table["track_id"].to_numpy(), runtime.chunk or FILE_CHUNK_SEGMENTS)
    parts, failures = [], list(problems)
    with progress_bar(runtime.progress and len(bounds) > 1) as bar:
        job_id = bar.add_task("", total=len(table)) if bar is not None else None
        for k, (a, b) in enumerate(bounds):
            rows = SegmentRows.from_columns(table["track_id"].iloc[a:b], table["path"].iloc[a:b],
                                            table["start_s"].iloc[a:b],
                                            table["duration_s"].iloc[a:b])
            task = ChunkTask(chunk=k, start=0, stop=b - a, rows=rows, groups=spec.group_names)
            values, status, failed = compute_chunk(task, job, threads=threads)
            parts.append((values, status))
            failures += failed
            if bar is not None:
                bar.update(job_id, advance=b - a)
    names = parts[0][0].keys()
    return FileValues(table=table,
                      values={g: np.concatenate([v[g] for v, _ in parts]) for g in names},
                      status={g: np.concatenate([s[g] for _, s in parts]) for g in names},
                      failures=failures)


def failure_text(path: str, error: str) -> str:
    """``PATH: error``, or the error alone when it names the path already."""
    return error if str(path) in str(error) else f"{path}: {error}"


def track_chunks(track_id, size: int) -> list[tuple[int, int]]:
    """Row ranges ``[a, b)`` of whole tracks, each about ``size`` segments.

    Consecutive rows of one track stay together (a track is decoded once), so
    a chunk holds at least one track and grows by whole tracks while it
    stays within ``size`` rows.
    """
    track_id = np.asarray(track_id)
    if len(track_id) == 0:
        return []
    starts = np.flatnonzero(np.r_[True, track_id[1:] != track_id[:-1]]).tolist() + [len(track_id)]
    bounds, a = [], 0
    for start, stop in itertools.pairwise(starts[1:]):
        if stop - a > size:  # the next track would overfill this chunk
            bounds.append((a, start))
            a = start
    bounds.append((a, len(track_id)))
    return bounds


def predict_files(data, model, runtime: Runtime | None = None) -> PredictResult:
    """Recognise a few files here and now: in this process, no cluster, no store.

    The same groups, plan and head as :func:`run_predict`, computed by
    :func:`featurise_files`.
    """
    t0 = time.perf_counter()
    runtime = runtime or Runtime()
    got = featurise_files(data, model_spec(model, runtime), runtime)
    table = got.table
    done = got.status[model.name] == layout.STATUS_DONE
    segments = pd.DataFrame(got.values[model.name].astype(np.float64), columns=list(model.classes))
    segments.insert(0, "segment_id", table["segment_id"].astype(str).to_numpy())
    segments.insert(1, "track_id", table["track_id"].astype(str).to_numpy())
    segments.insert(2, "start_s", table["start_s"].to_numpy(np.float64))
    segments.insert(3, "path", table["path"].astype(str).to_numpy())
    segments = segments[done].reset_index(drop=True)
    kind = model_kind(model)
    return PredictResult(model=model.name, classes=tuple(model.classes),
                         tracks=track_results(segments, model.classes, kind=kind), segments=segments,
                         seconds=time.perf_counter() - t0, failures=got.failures, kind=kind)
