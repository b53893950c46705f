"""Distributed extraction of a dataset into a feature store.

The driver (:func:`run_extract`) reads the catalog, plans the segments from
file headers, writes the store template (:mod:`emodist.store.zarrio`) and then
hands out *chunk tasks*: one task per chunk of the store along ``segment``,
so that exactly one writer touches each chunk.  A task carries paths, plan
rows and the config, never arrays or models.  On the worker
(:func:`extract_chunk`):

1. every track the chunk needs is decoded once, from its start to the end
   of the chunk's last segment of it (:func:`emodist.data.audio.load_track`);
2. each segment gets one STFT (:func:`emodist.features.spectral.analyse`), from which
   the handcrafted vector and the spectrogram image are made;
3. the images go through the ONNX model in batches, on a session cached per
   worker process (:func:`emodist.models.session.embed`);
4. the chunk is written in place (:func:`emodist.store.zarrio.write_region`),
   features first and ``status`` last.

A track that cannot be decoded marks its segments failed (status -1) and is
listed in the store's ``failures`` attribute; other errors are retried by
Dask.  Tasks are submitted in a bounded window (:class:`distributed.as_completed`
with a cap on tasks in flight), so the scheduler never holds the whole job.
A rerun finds the pending chunks from ``status`` and does only those.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice

import numpy as np
import pandas as pd

from emodist.store import layout as schema
from emodist.store import zarrio as st
from emodist.spec import Config
from emodist.errors import ClusterError, DataError, EmodistError, ModelError
from emodist.progress import progress_bar

#: Dask retries of a chunk task that raised (transient I/O errors).
TASK_RETRIES = 2
#: Tasks in flight per worker thread.
IN_FLIGHT_PER_THREAD = 2
#: Seconds to wait for a scheduler and for its first worker.
CONNECT_TIMEOUT_S = 20

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChunkTask:
    """Everything a worker needs to fill one chunk of the store.

    Attributes
    ----------
    store : str
        Store location.
    chunk : int
        Chunk index along ``segment``.
    start, stop : int
        Segment slice ``[start, stop)`` of the chunk.
    rows : tuple of (track_id, path, start_s, duration_s)
        One entry per segment of the slice, in store order.
    config : Config
        The extraction config.
    model : str or None
        URL of the ONNX model when deep features are wanted.
    deep_dim : int or None
        Width of its embedding.
    storage_options : dict or None
        fsspec options for the audio and the store (held in memory only).
    """

    store: str
    chunk: int
    start: int
    stop: int
    rows: tuple
    config: Config
    model: str | None = None
    deep_dim: int | None = None
    # kept out of repr: task reprs end up in worker logs
    storage_options: dict | None = field(default=None, repr=False)


@dataclass
class ExtractResult:
    """Outcome of :func:`run_extract`.

    Attributes
    ----------
    store : str
        Store location.
    n_segments : int
        Segments in the store.
    n_done, n_failed : int
        Segments with status done / failed after the run.
    failures : list of dict
        ``{"track_id", "path", "error"}`` of every failed track.
    seconds : float
        Wall time of the run.
    n_written : int
        Segments written by this run (0 when the store was complete).
    n_chunks : int
        Chunks processed by this run.
    resumed : bool
        The store existed and this run only did its pending chunks.
    already_complete : bool
        Nothing was left to do.
    dashboard : str or None
        The Dask dashboard address used.
    """

    store: str
    n_segments: int
    n_done: int
    n_failed: int
    failures: list = field(default_factory=list)
    seconds: float = 0.0
    n_written: int = 0
    n_chunks: int = 0
    resumed: bool = False
    already_complete: bool = False
    dashboard: str | None = None


# --------------------------------------------------------------------------- worker side

_BUDGET: dict = {}


def apply_thread_budget(nthreads: int) -> int:
    """Limit BLAS/OpenMP pools and numba to ``nthreads`` in this process.

    Called by every task with its worker's thread count; the BLAS limit is
    process-wide and set once, numba's is per calling thread.

    Returns
    -------
    int
        The budget applied (``>= 1``).
    """
    n = max(1, int(nthreads))
    if _BUDGET.get("blas") != n:
        from threadpoolctl import threadpool_limits

        _BUDGET["limiter"] = threadpool_limits(limits=n)
        _BUDGET["blas"] = n
    try:
        import numba
    except ImportError:  # pragma: no cover - librosa brings numba
        return n
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    return n


def _worker_threads() -> int:
    try:
        from distributed import get_worker

        return int(get_worker().state.nthreads)
    except (ImportError, ValueError, AttributeError):
        return 1


def track_spans(rows: Iterable[tuple]) -> list[tuple[str, str, float, float, list[int]]]:
    """Group a chunk's segments by track, with the span to decode.

    Parameters
    ----------
    rows : iterable of (track_id, path, start_s, duration_s)

    Returns
    -------
    list of (track_id, path, offset_s, duration_s, positions)
        One entry per track in order of first appearance; ``positions`` are
        indices into ``rows``.
    """
    order: dict[tuple[str, str], list[int]] = {}
    rows = list(rows)
    for i, (track_id, path, _, _) in enumerate(rows):
        order.setdefault((str(track_id), str(path)), []).append(i)
    spans = []
    for (track_id, path), pos in order.items():
        starts = [float(rows[i][2]) for i in pos]
        ends = [float(rows[i][2]) + float(rows[i][3]) for i in pos]
        offset = min(starts)
        spans.append((track_id, path, offset, max(ends) - offset, pos))
    return spans


def segment_outputs(y: np.ndarray, config: Config, want_handcrafted: bool, want_image: bool):
    """Handcrafted vector and spectrogram image of one segment, from one STFT.

    Parameters
    ----------
    y : numpy.ndarray
        Mono samples of the segment at ``config.sr``.
    config : Config
        Extraction config.
    want_handcrafted, want_image : bool
        Which outputs to make.

    Returns
    -------
    (numpy.ndarray or None, numpy.ndarray or None)
        float32 feature vector and uint8 ``(size, size)`` image.
    """
    from emodist.features.spectral import analyse

    analysis = analyse(y, config.sr, config)
    vec = img = None
    if want_handcrafted:
        from emodist.features import handcrafted

        vec = handcrafted.extract(analysis, config.feature_set, config.n_mfcc)
    if want_image:
        from emodist.features.images import spectrogram_image

        img = spectrogram_image(analysis, config)
    return vec, img


def decode_track(path: str, sr: int, end_s: float,
                 storage_options: dict | None = None) -> np.ndarray:
    """Decode a track from its start to ``end_s`` seconds, once.

    MP3 decoders glitch when they seek, so a track is always read from its
    start.  A transient I/O error propagates (``OSError``) and Dask retries
    the chunk; a file that cannot be decoded raises :class:`DataError`.
    """
    from emodist.data.audio import load_track

    return load_track(path, sr, storage_options, offset_s=0.0, duration_s=end_s)


def compute_chunk(task: ChunkTask, threads: int = 1) -> tuple[dict, np.ndarray, list[dict]]:
    """Features of one chunk, in memory (no store access).

    Parameters
    ----------
    task : ChunkTask
        The chunk.
    threads : int
        Thread budget for the ONNX session.

    Returns
    -------
    values : dict of str to numpy.ndarray
        ``handcrafted`` and/or ``deep`` blocks, NaN rows for failed segments.
    status : numpy.ndarray
        int8, done (1) or failed (-1) per segment.
    failures : list of dict
        One ``{"track_id", "path", "error"}`` per track that failed.
    """
    from emodist.data.audio import cut

    cfg = task.config
    n = len(task.rows)
    want_hc = schema.HANDCRAFTED in cfg.features
    want_deep = schema.DEEP in cfg.features
    status = np.full(n, schema.STATUS_DONE, np.int8)
    hc_rows: dict[int, np.ndarray] = {}
    images: dict[int, np.ndarray] = {}
    failures = []
    for track_id, path, offset, duration, positions in track_spans(task.rows):
        # decode from the start of the file to the end of the chunk's last
        # segment: seeking into an MP3 loses the bit reservoir of the first
        # frame (a glitch), and values then do not depend on where chunks cut
        try:
            y = decode_track(path, cfg.sr, offset + duration, task.storage_options)
            outs = {}
            for i in positions:
                seg = cut(y, cfg.sr, float(task.rows[i][2]), float(task.rows[i][3]))
                outs[i] = segment_outputs(seg, cfg, want_hc, want_deep)
        except DataError as exc:
            status[positions] = schema.STATUS_FAILED
            failures.append({"track_id": track_id, "path": path, "error": exc.message})
            continue
        for i, (vec, img) in outs.items():
            if vec is not None:
                hc_rows[i] = vec
            if img is not None:
                images[i] = img
    values = {}
    if want_hc:
        from emodist.features import handcrafted

        width = len(handcrafted.feature_names(cfg.feature_set, cfg.n_mfcc))
        block = np.full((n, width), np.nan, np.float32)
        for i, vec in hc_rows.items():
            block[i] = vec
        values[schema.HANDCRAFTED] = block
    if want_deep:
        from emodist.models.session import embed

        block = np.full((n, int(task.deep_dim)), np.nan, np.float32)
        if images:
            order = sorted(images)
            emb = embed(
                np.stack([images[i] for i in order]),
                task.model,
                batch_size=cfg.batch_size,
                threads=threads,
                sha256=cfg.model_sha256,
                storage_options=task.storage_options,
            )
            block[order] = emb
        values[schema.DEEP] = block
    return values, status, failures


def extract_chunk(task: ChunkTask) -> dict:
    """Worker entry point: compute one chunk and write it to the store.

    Returns
    -------
    dict
        ``chunk``, ``n_done``, ``n_failed``, ``failures`` and ``seconds``;
        small, so the driver's memory stays flat.
    """
    t0 = time.perf_counter()
    threads = apply_thread_budget(_worker_threads())
    values, status, failures = compute_chunk(task, threads)
    st.write_region(task.store, task.start, task.stop, values, status, task.storage_options)
    return {
        "chunk": task.chunk,
        "n_done": int(np.sum(status == schema.STATUS_DONE)),
        "n_failed": int(np.sum(status == schema.STATUS_FAILED)),
        "failures": failures,
        "seconds": time.perf_counter() - t0,
    }


# --------------------------------------------------------------------------- driver side


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def check_cluster_args(scheduler=None, scheduler_file=None, n_workers=None,
                       threads_per_worker=None, memory_limit=None) -> None:
    """Refuse contradictory cluster options with one line.

    Raises
    ------
    ClusterError
        Both a scheduler and a scheduler file, a scheduler together with
        local-cluster sizes, or sizes below one.
    """
    if scheduler and scheduler_file:
        raise ClusterError("give either --scheduler or --scheduler-file, not both")
    if (scheduler or scheduler_file) and (n_workers or threads_per_worker or memory_limit):
        raise ClusterError("--workers, --threads-per-worker and --memory-limit size a local "
                           "cluster; do not combine them with a scheduler")
    for name, value in (("--workers", n_workers), ("--threads-per-worker", threads_per_worker)):
        if value is not None and int(value) < 1:
            raise ClusterError(f"{name} must be at least 1")
    if scheduler_file and not os.path.isfile(scheduler_file):
        raise ClusterError(f"scheduler file {scheduler_file} does not exist")


def probe_scheduler(address: str, timeout: float = 5.0) -> None:
    """Fail fast, with one line, when nothing listens at a ``tcp://`` address.

    Raises
    ------
    ClusterError
        The host does not resolve or refuses the connection.
    """
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.scheme not in ("tcp", "tls") or not parts.hostname:
        return
    try:
        port = parts.port or 8786
    except ValueError:
        raise ClusterError(f"scheduler address {address} has a bad port") from None
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            pass
    except OSError as exc:
        raise ClusterError(f"cannot reach scheduler {address}: {_one_line(exc)}") from None


@contextlib.contextmanager
def connect(
    scheduler: str | None = None,
    scheduler_file: str | None = None,
    n_workers: int | None = None,
    threads_per_worker: int | None = None,
    memory_limit: str | None = None,
) -> Iterator:
    """A Dask client: connect to a scheduler, or start a LocalCluster.

    Given ``scheduler`` (address) or ``scheduler_file``, only connects, never
    starts a cluster.  Otherwise starts a process-based LocalCluster sized to
    the machine (or to ``n_workers`` x ``threads_per_worker``).

    Yields
    ------
    distributed.Client

    Raises
    ------
    ClusterError
        The scheduler cannot be reached or has no workers.
    """
    from distributed import Client, LocalCluster

    check_cluster_args(scheduler, scheduler_file, n_workers, threads_per_worker, memory_limit)
    if scheduler or scheduler_file:
        where = scheduler or scheduler_file
        try:
            client = Client(
                scheduler, scheduler_file=scheduler_file, timeout=f"{CONNECT_TIMEOUT_S}s"
            )
        except (OSError, TimeoutError, ValueError) as exc:
            raise ClusterError(f"cannot reach scheduler {where}: {_one_line(exc)}") from None
        try:
            try:
                client.wait_for_workers(1, timeout=CONNECT_TIMEOUT_S)
            except (TimeoutError, OSError):
                raise ClusterError(f"scheduler {where} has no workers") from None
            yield client
        finally:
            client.close()
        return
    kwargs = {"processes": True, "dashboard_address": ":0", "silence_logs": logging.ERROR}
    if n_workers is not None:
        kwargs["n_workers"] = int(n_workers)
    if threads_per_worker is not None:
        kwargs["threads_per_worker"] = int(threads_per_worker)
    if memory_limit is not None:
        kwargs["memory_limit"] = memory_limit
    try:
        cluster = LocalCluster(**kwargs)
    except (ValueError, TypeError) as exc:
        raise ClusterError(f"cannot start a local cluster: {_one_line(exc)}") from None
    try:
        with Client(cluster) as client:
            yield client
    finally:
        cluster.close()


def run_tasks(
    client,
    tasks: Iterable[ChunkTask],
    *,
    max_in_flight: int,
    retries: int = TASK_RETRIES,
    on_result: Callable[[ChunkTask, dict | None, BaseException | None], None] | None = None,
) -> tuple[list[dict], list[tuple[ChunkTask, str]]]:
    """Run chunk tasks with at most ``max_in_flight`` submitted at a time.

    Parameters
    ----------
    client : distributed.Client
    tasks : iterable of ChunkTask
        Consumed lazily.
    max_in_flight : int
        Cap on submitted, unfinished tasks.
    retries : int
        Dask retries per task.
    on_result : callable, optional
        Called as ``on_result(task, result, error)`` after each task.

    Returns
    -------
    results : list of dict
        Results of the tasks that finished.
    errors : list of (ChunkTask, str)
        Tasks that failed after their retries, with the error.
    """
    from distributed import as_completed

    run_id = uuid.uuid4().hex[:8]
    it = iter(tasks)
    by_key: dict[str, ChunkTask] = {}

    def submit(task: ChunkTask):
        fut = client.submit(
            extract_chunk, task, retries=retries, pure=False,
            key=f"emodist-chunk-{task.chunk:07d}-{run_id}",
        )
        by_key[fut.key] = task
        return fut

    ac = as_completed([submit(t) for t in islice(it, max(1, max_in_flight))])
    results, errors = [], []
    for fut in ac:
        task = by_key.pop(fut.key)
        try:
            res = fut.result()
        except Exception as exc:  # noqa: BLE001 - reported, chunk stays pending
            errors.append((task, _one_line(exc)))
            res, err = None, exc
        else:
            results.append(res)
            err = None
        fut.release()
        if on_result is not None:
            on_result(task, res, err)
        nxt = next(it, None)
        if nxt is not None:
            ac.add(submit(nxt))
    return results, errors


def resolve_model(config: Config, model: str | None, storage_options: dict | None):
    """Model URL and config completed from the model's sidecar.

    Returns
    -------
    (str or None, Config, int or None)
        Model URL, config with ``model_sha256`` and ``image_size`` from the
        sidecar, and the embedding width; ``(None, config, None)`` without
        deep features.
    """
    if schema.DEEP not in config.features:
        return None, config.replace(model_sha256=None), None
    from emodist.models import session

    url = str(model) if model else session.default_model_path()
    try:
        side = session.read_sidecar(url, storage_options)
    except FileNotFoundError:
        raise ModelError(f"{url}: ONNX model or its sidecar not found") from None
    if config.model_sha256 and config.model_sha256 != side["sha256"]:
        raise ModelError(f"{url}: sha256 {side['sha256'][:12]}... is not the requested "
                         f"{config.model_sha256[:12]}...")
    cfg = config.replace(model_sha256=side["sha256"], image_size=int(side["image_size"]))
    return url, cfg, int(side["output_dim"])


def segment_votes(table: pd.DataFrame, votes: pd.DataFrame | None) -> np.ndarray | None:
    """Per-segment copy of the per-track vote distributions (``None`` if absent)."""
    if votes is None:
        return None
    v = votes.copy()
    v.index = v.index.astype(str)
    cols = [c for c in schema.GEMS]
    return v.reindex(table["track_id"].astype(str))[cols].to_numpy(np.float32)


def plan_failures(problems) -> list[dict]:
    """Failure records of the tracks the plan could not use."""
    return [{"track_id": str(t), "path": str(p), "error": str(m)} for t, p, m in problems]


def _say(enabled: bool, text: str) -> None:
    if enabled:
        from rich.console import Console

        Console(stderr=True, highlight=False).print(text)


def store_attrs(config: Config, catalog) -> dict:
    """Provenance attributes of a new store (no storage options, no credentials)."""
    from emodist.features import handcrafted

    return {
        "config": config.to_json(),
        "feature_names_version": handcrafted.FEATURE_NAMES_VERSION,
        "model_sha256": config.model_sha256 or "",
        "dataset": catalog.description,
        "label_rule": catalog.label_rule,
    }


def prepare_store(
    store: str,
    table: pd.DataFrame,
    catalog,
    config: Config,
    deep_dim: int | None,
    *,
    chunk: int | None = None,
    overwrite: bool = False,
    storage_options: dict | None = None,
) -> tuple[int, list[dict], bool]:
    """Create the store template, or check an existing store for resuming.

    Parameters
    ----------
    store : str
        Store location.
    table : pandas.DataFrame
        The segment plan.
    catalog : emodist.data.catalog.Catalog
        For votes and the dataset description.
    config : Config
        Complete extraction config (model sha256 filled in).
    deep_dim : int or None
        Embedding width (``None`` without deep features).
    chunk : int, optional
        Segments per chunk of a new store.
    overwrite : bool
        Remove an existing store first.
    storage_options : dict, optional
        Filesystem options.

    Returns
    -------
    (chunk, failures, resumed)
        Segments per chunk of the store, failures already recorded in it,
        and whether an existing store is being resumed.

    Raises
    ------
    StoreError
        An existing store of another config or plan.
    """
    exists = st.store_exists(store, storage_options)
    if exists and overwrite:
        st.remove_store(store, storage_options)
        exists = False
    if exists:
        attrs = st.read_attrs(store, storage_options)
        st.check_compatible(store, attrs, config, [str(s) for s in table["segment_id"]],
                            st.read_segment_ids(store, storage_options))
        return st.store_chunk(store, storage_options), st.failures(attrs), True
    from emodist.features import handcrafted

    hc_names = (handcrafted.feature_names(config.feature_set, config.n_mfcc)
                if schema.HANDCRAFTED in config.features else None)
    widest = max(len(hc_names or []), deep_dim or 0) * np.dtype(np.float32).itemsize
    chunk_len = int(chunk or st.chunk_segments(len(table), widest))
    ds = st.template(
        table, handcrafted_names=hc_names, deep_dim=deep_dim, chunk=chunk_len,
        votes=segment_votes(table, catalog.votes),
        votes_mean=segment_votes(table, catalog.votes_mean), attrs=store_attrs(config, catalog),
    )
    st.create_store(store, ds, chunk_len, storage_options)
    return chunk_len, [], False


def redo_unrecorded(status: np.ndarray, track_ids: np.ndarray, failures: list[dict]) -> np.ndarray:
    """Status with failed segments of unrecorded tracks turned back to pending.

    A run killed after a chunk was written but before the driver recorded
    that chunk's failures leaves segments at -1 with no message; a rerun
    redoes those chunks so that every failed track is listed.

    Parameters
    ----------
    status : numpy.ndarray
        Stored per-segment status.
    track_ids : numpy.ndarray
        Track id of each segment.
    failures : list of dict
        Failures recorded in the store.

    Returns
    -------
    numpy.ndarray
        A copy of ``status``.
    """
    out = np.array(status, dtype=np.int8, copy=True)
    recorded = {str(f.get("track_id")) for f in failures}
    lost = (out == schema.STATUS_FAILED) & ~np.isin(np.asarray(track_ids, dtype=str),
                                                    list(recorded) or [""])
    out[lost] = schema.STATUS_PENDING
    return out


def _result(store: str, status: np.ndarray, failures: list, seconds: float, **kw) -> ExtractResult:
    return ExtractResult(
        store=store, n_segments=len(status),
        n_done=int(np.sum(status == schema.STATUS_DONE)),
        n_failed=int(np.sum(status == schema.STATUS_FAILED)),
        failures=failures, seconds=seconds, **kw,
    )


def run_extract(
    dataset: str,
    store: str,
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
    client=None,
    chunk: int | None = None,
    max_in_flight: int | None = None,
    on_result: Callable | None = None,
    retry_failed: bool = False,
) -> ExtractResult:
    """Extract a dataset's features into a Zarr feature store.

    Parameters
    ----------
    dataset : str
        Dataset location (see :func:`emodist.data.catalog.load_dataset`).
    store : str
        Store location, local path or fsspec URL.
    config : Config, optional
        Extraction config (default :class:`Config`).
    scheduler, scheduler_file : str, optional
        Connect to this Dask scheduler instead of starting a LocalCluster.
    n_workers, threads_per_worker, memory_limit : optional
        Size of the LocalCluster started when no scheduler is given.
    storage_options : dict, optional
        fsspec options for remote dataset, store and model.
    model : str, optional
        ONNX model URL (default :func:`emodist.models.session.default_model_path`).
    overwrite : bool
        Replace an existing store instead of resuming it.
    progress : bool
        Show the progress bar and messages on stderr.
    client : distributed.Client, optional
        Use this client (tests, ``emodist run``); nothing is started.
    chunk : int, optional
        Segments per chunk of a new store (default :func:`emodist.store.zarrio.chunk_segments`).
    max_in_flight : int, optional
        Cap on tasks in flight (default 2 per worker thread).
    on_result : callable, optional
        ``on_result(task, result, error)`` after each chunk.

    Returns
    -------
    ExtractResult

    retry_failed : bool
        Also redo the chunks holding segments that failed in an earlier run
        (their failure records are dropped unless they fail again).

    Raises
    ------
    EmodistError
        Bad dataset, store of another config, unreachable scheduler, or
        chunks that failed after their retries (the store stays resumable).
    """
    from emodist.data.catalog import load_dataset
    from emodist.data.segments import plan_segments

    t0 = time.perf_counter()
    config = config or Config()
    store = str(store)
    if client is None:
        check_cluster_args(scheduler, scheduler_file, n_workers, threads_per_worker, memory_limit)
        if scheduler:
            probe_scheduler(scheduler)
    model_url, config, deep_dim = resolve_model(config, model, storage_options)
    catalog = load_dataset(
        dataset, label_rule=config.label_rule, min_class_tracks=config.min_class_tracks,
        min_class_share=config.min_class_share, storage_options=storage_options,
    )
    plan = plan_segments(catalog, config)
    table = plan.table
    if len(table) == 0:
        raise DataError(f"{dataset}: no segments to extract ({len(plan.problems)} tracks unusable)")
    new_failures = plan_failures(plan.problems)

    chunk_len, old_failures, resumed = prepare_store(
        store, plan.table, catalog, config, deep_dim, chunk=chunk, overwrite=overwrite,
        storage_options=storage_options,
    )
    status = st.read_status(store, storage_options)
    track_ids = table["track_id"].astype(str).to_numpy()
    todo = redo_unrecorded(status, track_ids, old_failures)
    if retry_failed:
        retried = set(track_ids[todo == schema.STATUS_FAILED])
        todo[todo == schema.STATUS_FAILED] = schema.STATUS_PENDING
        old_failures = [f for f in old_failures if str(f.get("track_id")) not in retried]
    pending = st.pending_regions(todo, chunk_len)
    n_pending_segments = int(np.sum(todo == schema.STATUS_PENDING))
    if not pending:
        failures_all = st.merge_failures(old_failures, new_failures)
        if new_failures and failures_all != old_failures:
            st.finish_store(store, {"failures": _json(failures_all)}, storage_options)
        return _result(store, status, failures_all, time.perf_counter() - t0,
                       resumed=resumed, already_complete=True)

    rows = list(zip(table["track_id"].astype(str), table["path"].astype(str),
                    table["start_s"].astype(float), table["duration_s"].astype(float)))

    def tasks():
        for i, a, b in pending:
            yield ChunkTask(store=store, chunk=i, start=a, stop=b, rows=tuple(rows[a:b]),
                            config=config, model=model_url, deep_dim=deep_dim,
                            storage_options=storage_options)

    task_failures: list[dict] = []
    written = [0]
    with contextlib.ExitStack() as stack:
        if client is None:
            client = stack.enter_context(
                connect(scheduler, scheduler_file, n_workers, threads_per_worker, memory_limit)
            )
        dashboard = getattr(client, "dashboard_link", None)
        if resumed:
            _say(progress, f"resuming {store}: {len(pending)} chunks "
                           f"({n_pending_segments} segments) left")
        _say(progress, f"dashboard: {dashboard}")
        threads = sum(client.nthreads().values()) or 1
        cap = max_in_flight or max(2, IN_FLIGHT_PER_THREAD * threads)
        bar = stack.enter_context(progress_bar(progress, "segments", "seg"))
        bar_task = None
        if bar is not None:
            bar_task = bar.add_task("extract", total=len(table),
                                    completed=len(table) - n_pending_segments,
                                    first=len(table) - n_pending_segments)

        def done(task, res, err):
            if res is not None:
                task_failures.extend(res["failures"])
                written[0] += task.stop - task.start
                if bar is not None:
                    bar.update(bar_task, advance=task.stop - task.start)
            if on_result is not None:
                on_result(task, res, err)

        try:
            results, errors = run_tasks(client, tasks(), max_in_flight=cap, on_result=done)
        except BaseException:
            # interrupted (Ctrl-C, lost driver loop): keep what finished on record
            st.finish_store(store, {"failures": _json(st.merge_failures(
                old_failures, new_failures + task_failures))}, storage_options)
            raise

    failures_all = st.merge_failures(old_failures, new_failures + task_failures)
    st.finish_store(store, {"failures": _json(failures_all)}, storage_options)
    result = _result(store, st.read_status(store, storage_options), failures_all,
                     time.perf_counter() - t0, n_written=written[0], n_chunks=len(results),
                     resumed=resumed, dashboard=dashboard)
    if errors:
        task, message = errors[0]
        raise EmodistError(
            f"{len(errors)} of {len(pending)} chunks did not finish (chunk {task.chunk}: "
            f"{message}); rerun the same command to resume"
        )
    return result


def _json(obj) -> str:
    return json.dumps(obj)
