"""The extraction driver: catalog -> segment plan -> plan -> chunk tasks on the cluster.

:func:`run_extract` resolves the spec (model hashes, widths), reads the
catalog and plans the segments from file headers (on the workers, connected
first, for a remote or large dataset: :mod:`emodist.engine.planning`), reads
the store's state once, makes the pure :func:`emodist.engine.plan.plan`, applies its store
changes (create, replace or add groups), runs the chunk tasks
(:func:`emodist.engine.worker.extract_chunk`) through the bounded executor,
and records failures.  Undecodable tracks are recorded and the rest
completes; transient errors are retried by Dask; a rerun does only what is
pending.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from emodist.data.catalog import load_dataset
from emodist.data.segments import segment_votes
from emodist.engine.plan import ExtractionPlan, plan, plan_sized
from emodist.engine.planning import WorkerPlan, plan_dataset
from emodist.engine.worker import Job, chunk_route
from emodist.errors import ClusterError, DataError, EmodistError, StoreError
from emodist.features import DEFAULT_GROUPS, make_groups
from emodist.progress import progress_bar
from emodist.runtime import executor
from emodist.runtime.cluster import (
    check_cluster_args,
    check_routing,
    connect,
    lost_scheduler,
    one_line,
    probe_cluster,
    scheduler_address,
    scheduler_lost,
    scheduler_watch,
)
from emodist.spec import ExtractionSpec, Runtime
from emodist.store import layout
from emodist.store import zarrio as io
from emodist.store.faults import storage_error
from emodist.store.handle import StoreHandle, as_store
from emodist.store.lock import acquire
from emodist.store.verify import repair_regions, state_of, verify_store

__all__ = [
    "IN_FLIGHT_PER_THREAD", "ExtractResult", "apply_plan", "check_after_run",
    "check_store_location", "default_spec", "plan_failures", "refuse_damage", "resolve_spec",
    "run_extract", "store_access", "verified_state",
]

log = logging.getLogger(__name__)

#: Chunk tasks in flight per worker thread.
IN_FLIGHT_PER_THREAD = 2
#: Seconds a run waits with no worker on its cluster before it stops (``--worker-timeout``).
WORKER_TIMEOUT = 120.0


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
        Segments done in every group of the spec / failed in some group.
    failures : list of dict
        ``{"track_id", "path", "error", "group"}`` of every standing failure.
    seconds : float
        Wall time of the run.
    n_written : int
        Segment-group pairs written by this run (0 when nothing was left).
    n_chunks : int
        Chunk tasks that finished in this run.
    resumed : bool
        The store existed and this run continued it.
    already_complete : bool
        Nothing was left to do.
    groups_added, groups_replaced : list of str
        Groups added to an existing store / replaced in it.
    dashboard : str or None
        The Dask dashboard address used.
    repaired : list of str
        The damaged chunks this run recomputed (``--repair``), one line each.
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
    groups_added: list = field(default_factory=list)
    groups_replaced: list = field(default_factory=list)
    dashboard: str | None = None
    repaired: list = field(default_factory=list)


def default_spec(**changes) -> ExtractionSpec:
    """The spec of a plain ``emodist extract``: handcrafted and Inception-v3."""
    spec = ExtractionSpec(groups=make_groups(DEFAULT_GROUPS))
    return spec.replace(**changes) if changes else spec


def resolve_spec(spec: ExtractionSpec, runtime: Runtime) -> ExtractionSpec:
    """The spec with every group resolved (model hashes and widths read once)."""
    if not spec.groups:
        raise EmodistError("no feature group to extract", param="features")
    model_opts = runtime.options("model")
    return spec.replace(groups=tuple(g.resolve(model_opts) for g in spec.groups))


def plan_failures(problems) -> list[dict]:
    """Failure records of the tracks the segment plan could not use."""
    return [{"track_id": str(t), "path": str(p), "error": str(m), "group": ""}
            for t, p, m in problems]


def apply_plan(store, p: ExtractionPlan, options: dict | None = None) -> None:
    """Make the store changes a plan decided (before any task runs).

    ``store`` is the run's :class:`~emodist.store.handle.StoreHandle` (or a
    location, with ``options``).
    """
    store = as_store(store, options)
    if p.replace_store:
        io.remove_store(store)
    if p.create is not None:
        io.create_store(store, p.create, p.chunk)
        return
    if p.drop:
        io.drop_groups(store, p.drop)
    if p.add is not None:
        io.add_groups(store, p.add, p.chunk)
    recorded = dict(io.open_group(store).attrs.get("feature_groups") or {})
    recorded.update({g.name: g.describe() for g in p.spec.groups})
    io.finish_store(store, {"feature_groups": recorded})


def note_copies(catalog, dataset: str) -> list[list[str]]:
    """Give byte-identical audio files of a local dataset one cross-validation group, and say so.

    A remote dataset is not read whole on the driver for this (``emodist
    catalog`` reports its copies).
    """
    from emodist.data.catalog import group_copies

    if io.is_url(dataset):
        return []
    copies = group_copies(catalog)
    for ids in copies:
        log.warning("%s: tracks %s are the same audio (byte-identical files); they share one "
                    "cross-validation group", dataset, ", ".join(ids))
    return copies


def _counts(store: StoreHandle, spec: ExtractionSpec) -> tuple[int, int, int]:
    status = io.read_status(store, [g.name for g in spec.groups])
    sts = np.stack([status[g.name] for g in spec.groups])
    return (sts.shape[1], int(np.all(sts == layout.STATUS_DONE, axis=0).sum()),
            int(np.any(sts == layout.STATUS_FAILED, axis=0).sum()))


def _chunks_kept(store: StoreHandle, spec: ExtractionSpec, chunk: int) -> tuple[int, int]:
    """``(chunks with nothing pending, chunks)`` of the spec's groups in the store."""
    status = io.read_status(store, [g.name for g in spec.groups])
    sts = np.stack([status[g.name] for g in spec.groups])
    regions = io.chunk_regions(sts.shape[1], chunk)
    kept = sum(bool(np.all(sts[:, a:b] != layout.STATUS_PENDING)) for a, b in regions)
    return kept, len(regions)


def check_store_location(store) -> None:
    """Refuse, in one line, a local store path that is a file or cannot be written."""
    if io.is_url(store):
        return
    path = str(store).removeprefix("file://")
    if os.path.exists(path) and not os.path.isdir(path):
        raise StoreError(f"{path} is a file, not a store folder", param="store")
    probe = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    while probe and not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if probe and not os.path.isdir(probe):
        raise StoreError(f"{path}: {probe} is a file, not a folder", param="store")
    if probe and not os.access(probe, os.W_OK):
        if os.statvfs(probe).f_flag & os.ST_RDONLY:
            raise StoreError(f"{path}: the file system is read-only; write the store somewhere "
                             "else", param="store")
        raise StoreError(f"{path}: cannot write there (permission denied)", param="store")


@contextlib.contextmanager
def store_access(store):
    """Store I/O whose failures are one line naming the store.

    Storage faults (:func:`emodist.store.faults.storage_error`: no
    credentials, an endpoint unreachable for the whole storage deadline, a
    full or read-only disk, a store deleted under the run) and a remote
    store in a bucket that does not exist (``FileNotFoundError`` deep in the
    filesystem layer) become a :class:`StoreError` naming the store.
    """
    try:
        yield
    except EmodistError:
        raise
    except Exception as exc:
        err = storage_error(exc, store, deadline=getattr(store, "deadline", None))
        if err is not None:
            raise err from None
        if isinstance(exc, FileNotFoundError):
            raise StoreError(f"{store}: {one_line(exc)}", param="store") from None
        raise


def verified_state(store: str, options, *, overwrite: bool):
    """The state of an existing store, read by :func:`emodist.store.verify.verify_store`.

    Returns ``(state, report)``; ``state`` is ``None`` when the index or the
    coordinates are damaged and ``overwrite`` rebuilds the store.

    Raises
    ------
    StoreError
        The store's index or coordinates are damaged and ``overwrite`` is off.
    """
    report = verify_store(store, options)
    if report.repairable:
        return state_of(report), report
    if not overwrite:
        repair_regions(report)  # raises: names the damage, suggests --overwrite
    log.warning("%s; it is rebuilt", report.summary())
    return None, report


def refuse_damage(report, p: ExtractionPlan, repair: bool) -> list[str]:
    """The damage lines a plan repairs; refuses a damaged store without ``repair``."""
    if report is None or report.ok or p.replace_store:
        return []
    if not repair:
        raise StoreError(f"{report.summary()}; rerun with --repair to recompute the damaged "
                         "chunks (emodist verify lists them)")
    for d in report.damage:
        log.warning("repairing %s: %s", report.store, d.message)
    return [d.message for d in report.damage]


def check_after_run(store, options=None) -> None:
    """Verify a store after its chunks were written; damage is one line."""
    report = verify_store(store, options)
    if not report.ok:
        raise StoreError(f"{report.summary()} after the run; rerun with --repair")


@contextlib.contextmanager
def worker_watch(client, timeout: float, prefix: str = "emodist-chunk"):
    """Notice a cluster left with no worker for ``timeout`` seconds, while the block runs.

    A thread asks the scheduler how many workers it has (every second, or
    ``timeout / 4``); after ``timeout`` seconds with none (every worker and
    its nanny gone, or none ever joined) it sets ``state["gone"]`` and cancels
    this client's tasks whose key starts with ``prefix``, so that a driver
    waiting on them wakes up and can say so (:func:`no_workers`), instead of
    waiting forever.  Yields ``state``.
    """
    from distributed import Future

    state = {"gone": False, "timeout": float(timeout)}
    stop = threading.Event()

    def watch():
        since = None
        while not stop.wait(max(0.1, min(1.0, timeout / 4))):
            try:
                n = len(client.nthreads())
            except Exception:  # noqa: BLE001, S112 - a lost scheduler is reported by the run itself
                continue
            if n:
                since = None
                continue
            since = since or time.monotonic()
            if time.monotonic() - since >= timeout:
                state["gone"] = True
                keys = [k for k in list(client.futures) if str(k).startswith(prefix)]
                with contextlib.suppress(Exception):
                    client.cancel([Future(k, client) for k in keys],
                                  reason="no worker left")
                return

    thread = threading.Thread(target=watch, name="emodist-worker-watch", daemon=True)
    thread.start()
    try:
        yield state
    finally:
        stop.set()
        thread.join(timeout=5)


def no_workers(client, state: dict, store, kept: int, total: int) -> ClusterError:
    """The one-line error of a run whose cluster has had no worker for ``state["timeout"]`` s."""
    return ClusterError(f"no worker left on {scheduler_address(client)} for "
                        f"{state['timeout']:g} s (every worker is gone); {kept} of {total} "
                        f"chunks of {store} are written and kept: start workers and rerun the "
                        "same command to resume", param="worker_timeout")


def run_extract(dataset: str, store, spec: ExtractionSpec | None = None,
                runtime: Runtime | None = None, *, overwrite: bool = False,
                retry_failed: bool = False, repair: bool = False, break_lock: bool = False,
                worker_timeout: float = WORKER_TIMEOUT,
                on_result: Callable | None = None, catalog=None) -> ExtractResult:
    """Extract a dataset's feature groups into a Zarr feature store.

    Parameters
    ----------
    dataset : str
        Dataset location (see :func:`emodist.data.catalog.load_dataset`).
    store : str or StoreHandle
        Store location, local path or fsspec URL (with the storage options
        of ``runtime``), or a handle (:func:`emodist.store.handle.as_store`),
        made once and passed down to every store helper and worker task.
        On an existing store the groups it lacks are added, the pending ones
        resumed.
    spec : ExtractionSpec, optional
        What to extract (default :func:`default_spec`).
    runtime : Runtime, optional
        Cluster, storage options, batch size, progress.
    overwrite : bool
        Replace a store (or a group) whose recorded spec differs, instead of refusing.
    retry_failed : bool
        Redo segments that failed in an earlier run.
    repair : bool
        Recompute the chunks that :func:`emodist.store.verify.verify_store`
        finds damaged (without it a damaged store is refused).
    break_lock : bool
        Take over the store's lock (:mod:`emodist.store.lock`) from another run
        (a stale lock is taken over without it).
    worker_timeout : float
        Seconds with no worker on the cluster after which the run stops with
        one line saying so (what was written is kept).
    on_result : callable, optional
        ``on_result(task, result, error)`` after each chunk task.
    catalog : Catalog, optional
        The tracks, already read (music to recognise:
        :func:`emodist.data.catalog.load_audio`); default: read ``dataset``
        with :func:`emodist.data.catalog.load_dataset`.

    Returns
    -------
    ExtractResult

    Raises
    ------
    EmodistError
        Bad dataset, a store of another spec or being written by another
        run, an unreachable scheduler, a storage fault
        (:mod:`emodist.store.faults`), or chunks that failed after their
        retries (the store stays resumable).
    """
    t0 = time.perf_counter()
    runtime = runtime or Runtime()
    if not worker_timeout > 0:
        raise EmodistError(f"must be more than 0 seconds, got {worker_timeout:g}",
                           param="worker_timeout")
    if runtime.client is None:  # refuse a bad cluster choice before any work
        check_cluster_args(runtime)
        probe_cluster(runtime)
    check_routing(None, runtime)
    store = as_store(store, runtime.options("store"))  # resolved once, passed down
    opts = store.storage_options
    check_store_location(store)
    spec = resolve_spec(spec or default_spec(), runtime)
    if catalog is None:
        catalog = load_dataset(dataset, label_rule=spec.label_rule,
                               min_class_tracks=spec.min_class_tracks,
                               min_class_share=spec.min_class_share,
                               storage_options=runtime.options("dataset"))
        note_copies(catalog, dataset)
    with store_access(store):  # a missing bucket, refused credentials: one line
        lock = acquire(store, opts, break_lock=break_lock)
    with lock:  # one writer per store; released (or found taken over) at the end
        return _extract(dataset, store, spec, runtime, catalog, opts, t0, overwrite=overwrite,
                        retry_failed=retry_failed, repair=repair, on_result=on_result,
                        worker_timeout=worker_timeout)


def _record(store: StoreHandle, failures: list[dict], *, quiet: bool) -> None:
    """Record the standing failures in the store; ``quiet``: a storage fault is only logged.

    Quiet when another error is already on its way to the user (a chunk that
    did not finish, an interruption): that one is the line to show.
    """
    if not quiet:
        with store_access(store):
            io.finish_store(store, {"failures": failures})
        return
    try:
        io.finish_store(store, {"failures": failures})
    except Exception as exc:  # noqa: BLE001 - the error in flight is the one reported
        log.debug("%s: the failures of this run were not recorded (%s: %s)", store,
                  type(exc).__name__, one_line(exc))


def _stopped(store: StoreHandle, errors: list, n_tasks: int) -> EmodistError | None:
    """The one line of a run whose chunks did not all finish or whose store is gone, or ``None``."""
    try:
        gone = not io.store_exists(store)
    except Exception:  # noqa: BLE001 - unreachable: the chunks' own error says why
        gone = False
    if gone:
        return StoreError(f"{store}: the store was deleted while this run wrote it ({len(errors)} "
                          f"of {n_tasks} chunks did not finish); rerun the same command to "
                          "rebuild it", param="store")
    if not errors:
        return None
    task, message = errors[0]
    return EmodistError(f"{len(errors)} of {n_tasks} chunks did not finish (chunk "
                        f"{task.chunk}: {message}); rerun the same command to resume")


def _extract(dataset, store: StoreHandle, spec, runtime, catalog, opts, t0, *, overwrite,
             retry_failed, repair, on_result, worker_timeout) -> ExtractResult:
    unfinished = False  # a store whose plan the workers never finished writing
    with store_access(store):  # before planning, which may start a cluster
        exists = io.store_exists(store)
        if exists and io.plan_pending(store):
            log.warning("%s: its segment coordinates were never all written (a run stopped "
                        "while planning); it is rebuilt", store)
            unfinished = True
        state, report = (verified_state(store, opts, overwrite=overwrite)
                         if exists and not unfinished else (None, None))
    with contextlib.ExitStack() as stack:  # the client, when planning needs it first
        segplan, client = plan_dataset(catalog, spec, runtime, dataset=dataset, stack=stack,
                                       keep_on_workers=state is None and report is None)
        if len(segplan) == 0:
            raise DataError(f"{dataset}: no segments to extract ({len(segplan.problems)} tracks "
                            "unusable)")
        attrs = {"dataset": catalog.description, "label_rule": catalog.label_rule}
        if isinstance(segplan, WorkerPlan):  # nothing per segment on the driver
            p = plan_sized(len(segplan), spec, votes=catalog.votes is not None,
                           votes_mean=catalog.votes_mean is not None, attrs=attrs,
                           chunk=runtime.chunk)
        else:
            table = segplan.table
            p = plan(table, spec, state=state, votes=segment_votes(table, catalog.votes),
                     votes_mean=segment_votes(table, catalog.votes_mean), attrs=attrs,
                     overwrite=overwrite, retry_failed=retry_failed, chunk=runtime.chunk,
                     repair=repair_regions(report) if repair and report is not None else None)
        p.replace_store = p.replace_store or unfinished or (report is not None and state is None)
        repaired = refuse_damage(report, p, repair)
        added = [] if p.create is not None else [
            g.name for g in spec.groups if state is None or g.name not in state.status]
        with store_access(store):
            apply_plan(store, p)
            if isinstance(segplan, WorkerPlan):
                segplan.write(store, opts, chunk=p.chunk, votes=catalog.votes is not None,
                              votes_mean=catalog.votes_mean is not None)
        failures = io.merge_failures(p.failures, plan_failures(segplan.problems))
        result = ExtractResult(store=str(store), n_segments=len(segplan), n_done=0, n_failed=0,
                               resumed=p.resumed, groups_added=added, groups_replaced=list(p.drop),
                               repaired=repaired)
        if not p.tasks:
            with store_access(store):
                io.finish_store(store, {"failures": failures})
                result.n_segments, result.n_done, result.n_failed = _counts(store, spec)
            result.failures, result.already_complete = failures, True
            result.seconds = time.perf_counter() - t0
            return result
        job = Job(store=store, spec=spec, batch_size=runtime.batch_size,
                  dataset_options=runtime.options("dataset"), store_options=opts,
                  model_options=runtime.options("model"), device=runtime.device)
        new_failures: list[dict] = []
        if client is None:
            client = stack.enter_context(connect(runtime))
            check_routing(client, runtime)
        result.dashboard = getattr(client, "dashboard_link", None)
        if p.resumed:
            log.info("resuming %s: %d chunks (%d segment-group pairs) left", store,
                     len(p.tasks), p.pending)
        log.info("dashboard: %s", result.dashboard)
        threads = sum(client.nthreads().values()) or 1
        cap = runtime.max_in_flight or max(2, IN_FLIGHT_PER_THREAD * threads)
        bar = stack.enter_context(progress_bar(runtime.progress, "segments", "seg"))
        first = p.total - p.pending
        bar_task = None if bar is None else bar.add_task("extract", total=p.total,
                                                         completed=first, first=first)

        def done(task, res, err):
            if err is not None and scheduler_lost(client, err):
                raise lost_scheduler(client, err)
            if err is not None and watch["gone"]:
                with store_access(store):
                    kept = _chunks_kept(store, spec, p.chunk)
                raise no_workers(client, watch, store, *kept)
            if res is not None:
                new_failures.extend(res["failures"])
                result.n_written += (task.stop - task.start) * len(task.groups)
                if bar is not None:
                    bar.update(bar_task, advance=(task.stop - task.start) * len(task.groups))
            if on_result is not None:
                on_result(task, res, err)

        watch = stack.enter_context(worker_watch(client, worker_timeout))
        try:
            with scheduler_watch(client):
                results, errors = executor.run_bounded(
                    client, items=p.tasks, args=(job,), max_in_flight=cap,
                    name="emodist-chunk", key=lambda t: f"{t.chunk:07d}", on_result=done,
                    **chunk_route(job, runtime.resources, runtime.model_resources))
        except KeyboardInterrupt:  # Ctrl-C: keep what finished on record, say what is kept
            _record(store, io.merge_failures(failures, new_failures), quiet=True)
            try:
                kept, total = _chunks_kept(store, spec, p.chunk)
            except Exception:  # noqa: BLE001 - the store cannot say: the plain interrupt
                raise KeyboardInterrupt() from None
            raise KeyboardInterrupt(f"{kept} of {total} chunks of {store} are written and "
                                    "kept; rerun the same command to resume") from None
        except BaseException:
            # interrupted (Ctrl-C, lost scheduler): keep what finished on record
            _record(store, io.merge_failures(failures, new_failures), quiet=True)
            raise
        failures = io.merge_failures(failures, new_failures)
        stopped = _stopped(store, errors, len(p.tasks))
        _record(store, failures, quiet=stopped is not None)
    if stopped is not None:
        raise stopped
    with store_access(store):
        check_after_run(store)
        result.n_segments, result.n_done, result.n_failed = _counts(store, spec)
    result.failures, result.n_chunks = failures, len(results)
    result.seconds = time.perf_counter() - t0
    return result
