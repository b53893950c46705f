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

from emodist.store import layout as schema
from emodist.spec import Config
from emodist.errors import EmodistError


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
    """

    extract: object
    report: dict
    notes: list


def default_feature_sets(store_vars) -> list[str]:
    """Feature sets to evaluate for the feature variables a store holds.

    ``["handcrafted", "deep", "both"]`` when both groups are there, else
    the one that is.
    """
    have = [g for g in ("handcrafted", "deep") if g in store_vars]
    if not have:
        raise EmodistError("the store holds no feature variables to evaluate")
    return have + ["both"] if len(have) == 2 else have


def model_available(model: str | None = None) -> str | None:
    """Path of the real deep model if it exists locally, else ``None``.

    Parameters
    ----------
    model : str, optional
        Explicit model path; default :func:`emodist.models.session.default_model_path`.
    """
    from emodist.models.session import default_model_path

    path = model or default_model_path()
    if "://" in path and not path.startswith("file://"):
        return path
    return path if os.path.isfile(path.removeprefix("file://")) else None


def run_pipeline(
    dataset: str,
    store: str,
    out: str | None,
    config: Config | None = None,
    *,
    scheduler: str | None = None,
    scheduler_file: str | None = None,
    n_workers: int | None = None,
    threads_per_worker: int | None = None,
    memory_limit: str | None = None,
    storage_options: dict | None = None,
    model: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    chunk: int | None = None,
    retry_failed: bool = False,
    features=None,
    classifiers=("all",),
    folds: int = 5,
    seed: int = 0,
    balance: str = "none",
    label_rule: str | None = None,
    target: str = "class",
    client=None,
) -> PipelineResult:
    """Extract ``dataset`` into ``store``, then evaluate it into ``out``.

    Parameters
    ----------
    dataset, store : str
        As for :func:`emodist.engine.extract.run_extract`.
    out : str or None
        Report folder (see :func:`emodist.learn.evaluate.run_evaluate`).
    config : Config, optional
        Extraction config.
    scheduler, scheduler_file, n_workers, threads_per_worker, memory_limit
        Cluster choice, as for ``emodist extract``; ignored when ``client``
        is given.
    storage_options : dict, optional
        fsspec options for remote dataset, store and model.
    model : str, optional
        ONNX model for the deep features.
    overwrite : bool
        Replace an existing store instead of resuming it.
    progress : bool
        Progress output.
    chunk : int, optional
        Segments per store chunk (see :func:`emodist.engine.extract.run_extract`).
    retry_failed : bool
        Redo segments that failed in an earlier run.
    features : str or sequence, optional
        Feature sets to evaluate (default: every group extracted, and
        ``both`` when there are two).
    classifiers, folds, seed, balance, label_rule, target
        As for :func:`emodist.learn.evaluate.run_evaluate`.
    client : distributed.Client, optional
        Use this client for both stages.

    Returns
    -------
    PipelineResult
    """
    from emodist.learn.evaluate import run_evaluate
    from emodist.engine.extract import connect, run_extract

    config = config or Config()

    def both_stages(c):
        ex = run_extract(dataset, store, config, client=c, storage_options=storage_options,
                         model=model, overwrite=overwrite, progress=progress, chunk=chunk,
                         retry_failed=retry_failed)
        if ex.n_done == 0:
            raise EmodistError(f"{store}: no segment was extracted; nothing to evaluate")
        feats = features or [g for g in default_feature_sets(config.features)]
        rep = run_evaluate(store, features=feats, classifiers=classifiers, folds=folds, seed=seed,
                           balance=balance, label_rule=label_rule, target=target, out=out,
                           client=c, storage_options=storage_options, progress=progress)
        return PipelineResult(ex, rep, [])

    if client is not None:
        return both_stages(client)
    with connect(scheduler, scheduler_file, n_workers, threads_per_worker, memory_limit) as c:
        return both_stages(c)


def demo_config(with_deep: bool) -> Config:
    """Extraction config of the demo: 10 s segments of the generated tracks."""
    features = (schema.HANDCRAFTED, schema.DEEP) if with_deep else (schema.HANDCRAFTED,)
    return Config(segment_seconds=10.0, hop_seconds=10.0, features=features)


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
) -> PipelineResult:
    """The whole job on generated data: dataset, features, cross-validated report.

    Writes ``OUT/data`` (:func:`emodist.data.demo.make_demo_dataset`),
    ``OUT/features.zarr`` and the report in ``OUT/report``, replacing what
    an earlier demo left there.  Deep features
    are extracted only when the real model exists at
    :func:`emodist.models.session.default_model_path`; otherwise one line says
    how to build it and the demo runs on handcrafted features.

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

    Returns
    -------
    PipelineResult
    """
    from emodist.data.demo import make_demo_dataset

    if n_tracks < 2 * folds:
        raise EmodistError(f"--tracks must be at least {2 * folds} for {folds} folds")
    root = Path(out)
    data = root / "data"
    notes = []
    make_demo_dataset(str(data), n_tracks=n_tracks, seed=seed, duration_s=duration_s)
    say(f"generated {n_tracks} tracks of {duration_s:g} s in {data}")
    model = model_available()
    if model is None:
        from emodist.models.session import default_model_path

        notes.append(f"deep features skipped: no model at {default_model_path()}; "
                     "build it with `emodist model build` and rerun")
        say(notes[-1])
    result = run_pipeline(
        str(data), str(root / "features.zarr"), str(root / "report"), demo_config(model is not None),
        n_workers=n_workers, threads_per_worker=1, model=model, progress=progress, overwrite=True,
        classifiers=classifiers, folds=folds, seed=seed,
    )
    result.notes[:0] = notes
    return result
