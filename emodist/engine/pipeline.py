"""The whole job: extract a dataset's features, then cross-validate classifiers.

:func:`run_pipeline` is ``emodist run``: one Dask client serves both the
extraction (:func:`emodist.engine.extract.run_extract`) and the evaluation
(:func:`emodist.learn.evaluate.run_evaluate`).  :func:`run_demo` is ``emodist
demo``: the same on a generated dataset, with deep features only when the
real network has been built (a random network's output is never presented
as deep features).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from emodist.data.catalog import load_dataset
from emodist.data.demo import make_demo_dataset
from emodist.engine.extract import default_spec, run_extract
from emodist.engine.predict import predict_files
from emodist.errors import EmodistError
from emodist.features import make_group, make_groups
from emodist.learn.evaluate import run_evaluate
from emodist.learn.spec import EvaluationSpec
from emodist.learn.train import run_train
from emodist.models.musicnn import WHEEL_SHA256 as MUSICNN_WHEEL_SHA256
from emodist.models.musicnn import default_model_path as musicnn_model_path
from emodist.models.session import default_model_path, read_sidecar
from emodist.runtime.cluster import connect
from emodist.spec import ExtractionSpec, Runtime
from emodist.store import open_store
from emodist.store.copies import copy_sets
from emodist.store.outputs import check_folder

__all__ = [
    "DEMO_CLASSIFIERS", "DEMO_MUSICNN", "PipelineResult", "demo_spec", "model_available",
    "musicnn_available", "recognise_new_music", "run_demo", "run_pipeline",
]


@dataclass
class PipelineResult:
    """Outcome of :func:`run_pipeline`.

    Attributes
    ----------
    extract : emodist.engine.extract.ExtractResult
        What the extraction did.
    report : dict
        The evaluation report (see :func:`emodist.learn.evaluate.run_evaluate`).
    notes : list of str
        One-line remarks for the user (e.g. deep features skipped).
    recognised : pandas.DataFrame or None
        The demo's new tracks: ``track_id``, ``generated_as`` (the class the
        track was generated with), ``recognised_as`` and its ``probability``
        (:func:`recognise_new_music`); ``None`` outside the demo.
    """

    extract: object
    report: dict
    notes: list
    recognised: object = None


def model_available(model: str | None = None) -> str | None:
    """Path of the real deep model if it exists locally, else ``None``.

    Parameters
    ----------
    model : str, optional
        Explicit model path; default :func:`emodist.models.session.default_model_path`.
    """
    path = model or default_model_path()
    if "://" in path and not path.startswith("file://"):
        return path
    return path if os.path.isfile(path.removeprefix("file://")) else None


def run_pipeline(dataset: str, store: str, out: str | None, spec: ExtractionSpec | None = None,
                 runtime: Runtime | None = None, *, overwrite: bool = False,
                 retry_failed: bool = False, repair: bool = False, break_lock: bool = False,
                 worker_timeout: float | None = None,
                 evaluation: EvaluationSpec | dict | None = None) -> PipelineResult:
    """Extract ``dataset`` into ``store``, then evaluate it into ``out``, on one client.

    Parameters
    ----------
    dataset, store : str
        As for :func:`emodist.engine.extract.run_extract`.
    out : str or None
        Report location (see :func:`emodist.learn.evaluate.run_evaluate`).
    spec, runtime : optional
        What to extract and how (see :func:`emodist.engine.extract.run_extract`).
    overwrite, retry_failed, repair, break_lock : bool
        As for :func:`emodist.engine.extract.run_extract`.
    worker_timeout : float, optional
        As for :func:`emodist.engine.extract.run_extract`.
    evaluation : EvaluationSpec or dict, optional
        What to evaluate, or the fields of an
        :class:`~emodist.learn.spec.EvaluationSpec` (``features`` defaults to
        every stored group alone, and all joined); checked before the
        extraction starts.

    Returns
    -------
    PipelineResult
    """
    spec = spec or default_spec()
    runtime = runtime or Runtime()
    if not isinstance(evaluation, EvaluationSpec):
        evaluation = EvaluationSpec(**(evaluation or {}))
    if evaluation.kind not in ("class", "distribution"):  # before the extraction, too
        raise EmodistError(f"run evaluates class, factor and distribution targets; evaluate "
                           f"{evaluation.target!r} on the store with emodist evaluate", param="target")
    if out is not None:  # before the extraction: a bad --out is refused at once
        check_folder(out, storage_options=runtime.options("store"))
    with connect(runtime) as client:
        rt = runtime.replace(client=client)
        ex = run_extract(dataset, store, spec, rt, overwrite=overwrite, retry_failed=retry_failed,
                         repair=repair, break_lock=break_lock,
                         **({} if worker_timeout is None else {"worker_timeout": worker_timeout}))
        if ex.n_done == 0:
            raise EmodistError(f"{store}: no segment was extracted; nothing to evaluate")
        copies = None  # the extraction gave copies one group; a --group-by column needs them named
        if evaluation.group_by is not None:
            copies = copy_sets(open_store(store, rt.options("store")))
        rep = run_evaluate(store, evaluation, out=out, client=client, storage_options=rt.options("store"),
                           progress=rt.progress, copies=copies)
        return PipelineResult(ex, rep, [])


def musicnn_available(variants=("msd", "mtt")) -> list[str]:
    """The MusiCNN variants whose real model (built from the musicnn wheel) exists locally.

    A random-weight model at the default place (``emodist model build musicnn-msd
    --tiny``) does not count: its sidecar lacks the wheel's hash.
    """
    found = []
    for v in variants:
        path = musicnn_model_path(v)
        if model_available(path) is None:
            continue
        try:
            if read_sidecar(path).get("wheel_sha256") == MUSICNN_WHEEL_SHA256:
                found.append(v)
        except EmodistError:
            continue
    return found


def demo_spec(model: str | None, musicnn=()) -> ExtractionSpec:
    """Extraction spec of the demo: 10 s segments; each deep group when its model exists.

    Parameters
    ----------
    model : str or None
        The Inception-v3 model (``None``: no Inception-v3 group).
    musicnn : sequence of str
        MusiCNN variants to add (``"msd"``, ``"mtt"``), default models.
    """
    names = ["handcrafted"] + (["inception_v3"] if model else [])
    groups = make_groups(names, {"model": model}) + tuple(make_group(f"musicnn_{v}")
                                                         for v in musicnn)
    return ExtractionSpec(groups=groups, segment_seconds=10.0)


#: MusiCNN taggers the demo adds when built (the better one on Emotify; docs/musicnn.md).
DEMO_MUSICNN = ("msd",)


#: Presets the demo evaluates: one or two of each family, quick on 2 cores.
DEMO_CLASSIFIERS = ("bagged-trees", "cubic-svm", "medium-gaussian-svm", "weighted-knn",
                    "subspace-discriminant", "logistic-regression")


def run_demo(
    out: str = "emodist-demo",
    *,
    n_tracks: int = 32,
    seed: int = 0,
    duration_s: float = 30.0,
    n_workers: int | None = None,
    classifiers=DEMO_CLASSIFIERS,
    folds: int = 4,
    progress: bool = True,
    say=print,
    recognise: int = 8,
) -> PipelineResult:
    """The whole job on generated data: dataset, features, a cross-validated report, and a
    model trained on them that recognises generated tracks it never saw.

    Writes ``OUT/data`` (:func:`emodist.data.demo.make_demo_dataset`),
    ``OUT/features.zarr`` and the report in ``OUT/report``, replacing what
    an earlier demo left there.  Deep features
    are extracted only when the real models exist (Inception-v3 at
    :func:`emodist.models.session.default_model_path`, MusiCNN at
    :func:`emodist.models.musicnn.default_model_path`); otherwise one line
    per missing model says how to build it.

    Parameters
    ----------
    out : str
        Output folder.
    n_tracks : int
        Generated tracks (at least ``2 * folds``).
    seed : int
        Seed of the data, the folds and the models.
    duration_s : float
        Track length.
    n_workers : int, optional
        LocalCluster workers (default: sized to the machine).
    classifiers : sequence of str
        Presets to evaluate.
    folds : int
        Grouped folds.
    progress : bool
        Progress output of the extraction.
    say : callable
        Where the one-line notes go.
    recognise : int
        New tracks to recognise with the trained model (0: train nothing).

    Returns
    -------
    PipelineResult
    """
    if n_tracks < 2 * folds:
        raise EmodistError(f"the demo needs at least {2 * folds} tracks for {folds} folds",
                           param="tracks")
    root = Path(out)
    data = root / "data"
    notes = []
    make_demo_dataset(str(data), n_tracks=n_tracks, seed=seed, duration_s=duration_s)
    say(f"generated {n_tracks} tracks of {duration_s:g} s in {data}")
    model = model_available()
    if model is None:
        notes.append(f"Inception-v3 features skipped: no model at {default_model_path()}; "
                     "build it with `emodist model build` and rerun")
        say(notes[-1])
    musicnn = musicnn_available(DEMO_MUSICNN)
    if not musicnn:
        notes.append(f"MusiCNN features skipped: no model at {musicnn_model_path(DEMO_MUSICNN[0])}; "
                     f"build it with `emodist model build musicnn-{DEMO_MUSICNN[0]}` and rerun")
        say(notes[-1])
    runtime = Runtime(n_workers=n_workers, threads_per_worker=1, progress=progress)
    result = run_pipeline(str(data), str(root / "features.zarr"), str(root / "report"),
                          demo_spec(model, musicnn), runtime, overwrite=True,
                          evaluation={"classifiers": classifiers, "folds": folds, "seed": seed})
    result.notes[:0] = notes
    if recognise:
        result.recognised = recognise_new_music(root, n_tracks=recognise, seed=seed,
                                                duration_s=duration_s, folds=folds, say=say)
    return result


#: The model the demo trains: handcrafted features, a logistic regression (ONNX-exportable).
DEMO_MODEL = ("handcrafted", "logistic-regression")


def recognise_new_music(root, *, n_tracks: int = 8, seed: int = 0, duration_s: float = 30.0,
                        folds: int = 4, say=print) -> pd.DataFrame:
    """Train a model on the demo's store, then recognise generated tracks it never saw.

    Writes ``ROOT/model`` (:func:`emodist.learn.train.run_train` on
    ``ROOT/features.zarr``) and ``ROOT/new-music`` (other tracks, another
    seed), recognised here and now (:func:`emodist.engine.predict.predict_files`).

    Returns
    -------
    pandas.DataFrame
        ``track_id``, ``generated_as``, ``recognised_as``, ``probability``.
    """
    root = Path(root)
    features, preset = DEMO_MODEL
    model = run_train(str(root / "features.zarr"), features=features, classifier=preset,
                      out=str(root / "model"), folds=folds, seed=seed, n_jobs=1,
                      name="demo_emotion")
    say(f"trained {model.name} ({preset} on {features}) into {root / 'model'}")
    new = root / "new-music"
    make_demo_dataset(str(new), n_tracks=n_tracks, seed=seed + 1, duration_s=duration_s)
    found = predict_files(str(new), model)
    given = load_dataset(str(new), min_class_tracks=0).tracks.set_index("track_id")["label"]
    tracks = found.tracks
    classes = list(found.classes)
    return pd.DataFrame({
        "track_id": tracks["track_id"].to_numpy(),
        "generated_as": given.reindex(tracks["track_id"]).to_numpy(),
        "recognised_as": tracks["dominant"].to_numpy(),
        "probability": tracks[classes].max(axis=1).to_numpy(),
    })
