"""Planning on the workers: file headers probed by Dask tasks, in batches.

The segment plan needs one header per track (:func:`emodist.data.segments.probe`).
On the driver that is one read per file from a 16-thread pool, the
bottleneck of a remote dataset of 100,000 files.  Here the paths are cut
into batches (:data:`PROBE_BATCH` files at most), each batch is one task
(:func:`probe_headers`, key ``emodist-headers-...``) that probes its files
with a small thread pool on a worker and returns compact results (duration,
sample rate, channels, or an error line, per file), and at most a few
batches per worker thread are in flight.  The driver keeps only those
results (:class:`emodist.data.segments.Probes`: NumPy columns, no Python
object per file), puts them back in catalog order and builds the same plan as
driver planning (:func:`emodist.data.segments.build_plan`): the store's
segment coordinates are the same, nothing downstream changes.

A new store planned on the workers goes one step further
(:func:`plan_into_store`, the plan written into the store template): each
batch's task probes its files and builds that batch's segment plan
(:func:`plan_batch`), which stays on the worker; the driver receives only
its segment count and unreadable files (:func:`batch_summary`), makes the
template of the summed size (:func:`emodist.store.layout.sized_template`:
metadata only), and one task per coordinate chunk writes the coordinates
and vote profiles of its slice from the batches it overlaps
(:func:`write_plan_rows`).  The chunk tasks then read their rows from the
store.  The driver keeps nothing per file or segment beyond the catalog.

:func:`plan_site` decides where a run plans: ``Runtime.plan_on`` is
``"driver"``, ``"workers"`` or ``"auto"`` (workers when the dataset is
remote or has more than :data:`PLAN_ON_WORKERS_TRACKS` tracks).
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice

import numpy as np
import pandas as pd
from fsspec.utils import get_protocol

from emodist.data.segments import (
    Probes,
    SegmentPlan,
    batches,
    build_plan,
    plan_segments,
    probe_columns,
    segment_votes,
)
from emodist.errors import DataError
from emodist.progress import progress_bar, run_rate
from emodist.runtime import executor
from emodist.runtime.cluster import (
    check_routing,
    connect,
    lost_scheduler,
    one_line,
    scheduler_lost,
)
from emodist.spec import PLAN_ON_WORKERS_TRACKS
from emodist.store import layout
from emodist.store import zarrio as io

__all__ = [
    "BATCHES_PER_THREAD", "IN_FLIGHT_PER_THREAD", "PLAN_TASK", "PROBE_BATCH", "PROGRESS_LOG_S",
    "RERUN_HINT", "TASK_NAME", "WRITE_TASK", "BatchPlan", "PlanProgress", "WorkerPlan",
    "batch_length", "batch_summary", "is_remote", "plan_batch", "plan_dataset",
    "plan_on_workers", "plan_progress", "plan_segments_on_workers", "plan_site",
    "probe_headers", "probe_on_workers", "track_batches", "write_plan_rows", "write_regions",
]

log = logging.getLogger(__name__)

#: What a run that lost its scheduler while planning tells the user to do.
RERUN_HINT = "rerun the same command against a running scheduler"
#: Most files probed by one task.
PROBE_BATCH = 500
#: Batches per worker thread the paths are cut into (when that makes them smaller).
BATCHES_PER_THREAD = 4
#: Header tasks in flight per worker thread.
IN_FLIGHT_PER_THREAD = 2
#: Seconds between progress log lines (when no progress bar is shown).
PROGRESS_LOG_S = 10.0
#: Key prefix of the header tasks (shown on the dashboard).
TASK_NAME = "emodist-headers"
#: Key prefix of the tasks that plan a batch and keep it on their worker.
PLAN_TASK = "emodist-plan"
#: Key prefix of the tasks writing the plan into the store.
WRITE_TASK = "emodist-plan-write"


def is_remote(path: str) -> bool:
    """Whether ``path`` names a remote location (a protocol other than file/local)."""
    return get_protocol(str(path)) not in ("file", "local")


def plan_site(*, dataset: str, paths: Sequence[str], plan_on: str = "auto",
              threshold: int = PLAN_ON_WORKERS_TRACKS) -> str:
    """Where the headers of a run are probed: ``"driver"`` or ``"workers"``.

    Parameters
    ----------
    dataset : str
        Dataset location.
    paths : sequence of str
        The audio paths to probe (``n`` usable tracks).
    plan_on : {"auto", "driver", "workers"}
        ``auto``: workers when the dataset or a track path is remote, or
        there are more than ``threshold`` tracks (driver for no tracks).
    threshold : int
        Track count above which ``auto`` plans on the workers.

    Returns
    -------
    str
    """
    if plan_on != "auto":
        return plan_on
    if len(paths) == 0:
        return "driver"
    if len(paths) > threshold or is_remote(dataset):
        return "workers"
    return "workers" if any(is_remote(p) for p in paths) else "driver"


def batch_length(*, n_paths: int, n_threads: int, cap: int = PROBE_BATCH) -> int:
    """Files per header task: :data:`BATCHES_PER_THREAD` batches per thread, ``cap`` at most.

    >>> batch_length(n_paths=20000, n_threads=2)
    500
    >>> batch_length(n_paths=40, n_threads=2)
    5
    """
    per = math.ceil(max(1, n_paths) / (BATCHES_PER_THREAD * max(1, n_threads)))
    return max(1, min(int(cap), per))


def _batching(client, n: int, batch_size: int | None, max_in_flight: int | None) -> tuple[int, int]:
    """``(items per task, tasks in flight)`` for ``n`` items on the threads of ``client``."""
    n_threads = sum(client.nthreads().values()) or 1
    size = batch_size or batch_length(n_paths=n, n_threads=n_threads)
    return size, max_in_flight or max(2, IN_FLIGHT_PER_THREAD * n_threads)


def probe_headers(batch: tuple[int, list[str]], storage_options: dict | None,
                  threads: int) -> Probes:
    """Task: the probe outcomes of one batch (see :func:`emodist.data.segments.probe_columns`).

    Parameters
    ----------
    batch : (int, list of str)
        Position of the first file in the plan, and the paths.
    storage_options : dict or None
        fsspec options of the dataset.
    threads : int
        Threads reading headers concurrently in the task.

    Returns
    -------
    emodist.data.segments.Probes
        One outcome per path, in order, column by column (14 bytes a file
        and the reasons of unreadable ones go back to the driver).
    """
    return probe_columns(batch[1], storage_options, max_workers=threads)


def probe_on_workers(client, *, paths: Sequence[str], storage_options: dict | None = None,
                     batch_size: int | None = None, threads: int = 16,
                     max_in_flight: int | None = None,
                     on_probed: Callable[[int], None] | None = None) -> Probes:
    """Probe every path's header on the workers of ``client``; outcomes in path order.

    Parameters
    ----------
    client : distributed.Client
    paths : sequence of str
        ``n`` audio paths.
    storage_options : dict, optional
        fsspec options of the dataset (sent with each task).
    batch_size : int, optional
        Files per task (default :func:`batch_length` of the cluster's threads).
    threads : int
        Threads per task.
    max_in_flight : int, optional
        Tasks submitted at once (default :data:`IN_FLIGHT_PER_THREAD` per
        worker thread).
    on_probed : callable, optional
        ``on_probed(k)`` after each finished batch of ``k`` files.

    Returns
    -------
    emodist.data.segments.Probes
        ``n`` outcomes: each batch's columns copied into arrays made once,
        so the driver keeps no Python object per file.

    Raises
    ------
    ClusterError
        The scheduler went away.
    DataError
        A batch failed after its retries.
    """
    size, cap = _batching(client, len(paths), batch_size, max_in_flight)
    out = Probes(len(paths))

    def done(batch, res, err):
        if err is not None and scheduler_lost(client, err):
            raise lost_scheduler(client, during="while planning", hint=RERUN_HINT)
        if res is not None:
            out.put(batch[0], res)
            if on_probed is not None:
                on_probed(len(res))

    _, errors = executor.run_bounded(
        client, probe_headers, batches(paths, size), args=(storage_options, int(threads)),
        max_in_flight=cap, name=TASK_NAME, key=lambda b: f"{b[0]:09d}", on_result=done)
    if errors:
        (_, first), message = errors[0]
        raise DataError(f"{len(errors)} header batches failed on the workers (the one from "
                        f"{first[0]}: {message}); rerun the same command")
    return out


def plan_segments_on_workers(client, catalog, spec, *, batch_size: int | None = None,
                             threads: int = 16,
                             on_probed: Callable[[int], None] | None = None) -> SegmentPlan:
    """The segment plan of a catalog, its headers probed on the workers of ``client``.

    This process opens no audio file; the plan is the same as
    :func:`emodist.data.segments.plan_segments` gives on the driver.

    Parameters
    ----------
    client : distributed.Client
    catalog : emodist.data.catalog.Catalog
        Tracks with audio and kept labels are planned.
    spec : ExtractionSpec
        Window length, hop and shortest last piece.
    batch_size : int, optional
        Files per task (default: sized to the cluster).
    threads : int
        Threads per task reading headers.
    on_probed : callable, optional
        ``on_probed(n)`` after each ``n`` more headers were probed (progress).

    Returns
    -------
    emodist.data.segments.SegmentPlan

    Raises
    ------
    ClusterError, DataError
        As :func:`probe_on_workers`: the scheduler went away, a batch failed.
    """
    tracks = catalog.usable()
    probes = probe_on_workers(client, paths=tracks["path"], storage_options=catalog.storage_options,
                              batch_size=batch_size, threads=threads, on_probed=on_probed)
    return build_plan(tracks=tracks, probes=probes, spec=spec)


@dataclass
class BatchPlan:
    """The segment plan of one batch of tracks, as a worker holds it.

    Attributes
    ----------
    table : pandas.DataFrame
        ``m`` segments (:data:`emodist.data.segments.PLAN_COLUMNS`).
    votes, votes_mean : numpy.ndarray or None
        ``(m, 9)`` per-segment vote profiles.
    problems : list of (track_id, path, message)
        The batch's tracks that gave no segment.
    """

    table: object
    votes: np.ndarray | None
    votes_mean: np.ndarray | None
    problems: list


def track_batches(catalog, size: int) -> Iterator[tuple]:
    """``(start, tracks, votes, votes_mean)`` of each batch of a catalog's usable tracks.

    ``tracks`` is the batch's rows of :meth:`Catalog.usable` (the columns a
    plan needs), the votes are the batch's rows of the catalog's vote
    profiles (``None`` without them); each batch is made as it is sent.
    """
    tracks = catalog.usable()[["track_id", "path", "label", "group", "genre"]]
    profiles = []
    for v in (catalog.votes, catalog.votes_mean):
        if v is not None:
            v = v.copy()
            v.index = v.index.astype(str)
        profiles.append(v)
    for start in range(0, len(tracks), max(1, int(size))):
        part = tracks.iloc[start:start + size].reset_index(drop=True)
        ids = part["track_id"].astype(str)
        yield (start, part, *(None if v is None else v.reindex(ids) for v in profiles))


def plan_batch(batch: tuple, storage_options: dict | None, spec, threads: int) -> BatchPlan:
    """Task: probe one batch's headers and plan its segments (kept on the worker).

    Parameters
    ----------
    batch : tuple
        ``(start, tracks, votes, votes_mean)`` from :func:`track_batches`.
    storage_options : dict or None
        fsspec options of the dataset.
    spec : ExtractionSpec
        Window length, hop and shortest last piece.
    threads : int
        Threads reading headers concurrently.

    Returns
    -------
    BatchPlan
        What :func:`emodist.data.segments.build_plan` gives for these tracks
        alone: a track's segments depend on its header only.
    """
    _, tracks, votes, votes_mean = batch
    probes = probe_columns(tracks["path"].tolist(), storage_options, max_workers=threads)
    sp = build_plan(tracks=tracks, probes=probes, spec=spec)
    return BatchPlan(sp.table, segment_votes(sp.table, votes),
                     segment_votes(sp.table, votes_mean), sp.problems)


def batch_summary(plan: BatchPlan) -> tuple[int, list]:
    """Task: what the driver learns of a batch: its segment count and its problems."""
    return len(plan.table), list(plan.problems)


def write_plan_rows(url: str, start: int, stop: int, names: tuple, offsets: list,
                    plans: list, storage_options: dict | None) -> int:
    """Task: write the plan's variables ``names`` for segments ``[start, stop)``.

    Parameters
    ----------
    url : str
        The store (made from :func:`emodist.store.layout.sized_template`).
    start, stop : int
        The slice; whole chunks of every variable written.
    names : tuple of str
        Variables of :func:`emodist.store.layout.plan_variables` to write.
    offsets : list of int
        Position in the plan of the first segment of each batch in ``plans``.
    plans : list of BatchPlan
        The batches that overlap the slice, in order.
    storage_options : dict or None
        fsspec options of the store.

    Returns
    -------
    int
        Segments written.
    """
    tables, votes, votes_mean = [], [], []
    for offset, bp in zip(offsets, plans):
        a, b = max(0, start - offset), min(len(bp.table), stop - offset)
        if b <= a:
            continue
        tables.append(bp.table.iloc[a:b])
        for out, v in ((votes, bp.votes), (votes_mean, bp.votes_mean)):
            if v is not None:
                out.append(v[a:b])
    table = pd.concat(tables, ignore_index=True)
    if len(table) != stop - start:
        raise ValueError(f"the batches give {len(table)} segments for [{start}, {stop})")
    variables = layout.plan_variables(table, np.concatenate(votes) if votes else None,
                                      np.concatenate(votes_mean) if votes_mean else None)
    io.write_plan_region(url, start, {k: v for k, v in variables.items() if k in names},
                         storage_options)
    return stop - start


def write_regions(n: int, chunk: int, *, votes: bool,
                  votes_mean: bool) -> list[tuple[int, int, tuple]]:
    """``(start, stop, names)`` of the tasks that write a plan of ``n`` segments.

    The coordinates are stored in chunks of
    :data:`emodist.store.zarrio.COORD_CHUNK_SEGMENTS`, the vote profiles in
    the store's chunks of ``chunk``: one task per coordinate chunk writes
    both when its bounds fall on vote chunks too, else the votes get their
    own tasks (slices of whole vote chunks, as near that size as they fit),
    so that no two tasks write one chunk.

    >>> write_regions(10, 4, votes=True, votes_mean=True)
    [(0, 10, ('segment', 'track_id', 'segment_index', 'start_s', 'duration_s', 'label', \
'group', 'genre', 'path', 'votes', 'votes_mean'))]
    """
    coords = (layout.SEGMENT, *layout.SEGMENT_COORDS)
    profiles = tuple(name for name, wanted in ((layout.VOTES, votes),
                                               (layout.VOTES_MEAN, votes_mean)) if wanted)
    size = max(1, min(n, io.COORD_CHUNK_SEGMENTS))
    regions = io.chunk_regions(n, size)
    if not profiles or all(a % chunk == 0 for a, _ in regions):
        return [(a, b, coords + profiles) for a, b in regions]
    vote_size = max(1, io.COORD_CHUNK_SEGMENTS // chunk) * chunk
    return ([(a, b, coords) for a, b in regions]
            + [(a, b, profiles) for a, b in io.chunk_regions(n, vote_size)])


@dataclass
class WorkerPlan:
    """A segment plan held on the workers, batch by batch (:func:`plan_on_workers`).

    Attributes
    ----------
    client : distributed.Client
    futures : list of distributed.Future
        Each batch's :class:`BatchPlan`, in catalog order.
    counts : numpy.ndarray
        ``(batches,)`` int64 segments per batch.
    problems : list of (track_id, path, message)
        Tracks that could not be planned, in catalog order.
    n_tracks : int
        Tracks planned.
    """

    client: object
    futures: list = field(default_factory=list)
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    problems: list = field(default_factory=list)
    n_tracks: int = 0

    def __len__(self) -> int:
        return int(self.counts.sum())

    def write(self, url: str, storage_options: dict | None, *, chunk: int, votes: bool,
              votes_mean: bool) -> None:
        """Write the plan into the store at ``url`` (a sized template), then mark it complete.

        Raises
        ------
        ClusterError
            The scheduler went away.
        DataError
            A write failed after its retries.
        """
        n = len(self)
        offsets = np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)
        run_id = uuid.uuid4().hex[:8]
        writes = []
        for a, b, names in write_regions(n, chunk, votes=votes, votes_mean=votes_mean):
            # the batches holding segments of [a, b): offsets[k] < b and offsets[k + 1] > a
            lo = int(np.searchsorted(offsets, a, side="right")) - 1
            hi = int(np.searchsorted(offsets, b, side="left"))
            ks = [k for k in range(max(0, lo), min(hi, len(self.futures))) if self.counts[k]]
            writes.append(self.client.submit(
                write_plan_rows, url, a, b, names, [int(offsets[k]) for k in ks],
                [self.futures[k] for k in ks], storage_options, retries=executor.TASK_RETRIES,
                pure=False, key=f"{WRITE_TASK}-{a:012d}-{names[0]}-{run_id}"))
        for _ in executor.completed(self.client, writes):  # wait for all of them
            pass
        failed = [f for f in writes if f.status != "finished"]
        if failed:
            err = failed[0].exception() if failed[0].status == "error" else None
            if getattr(self.client, "status", "running") != "running" or (
                    err is not None and scheduler_lost(self.client, err)):
                raise lost_scheduler(self.client, during="while writing the plan",
                                     hint=RERUN_HINT)
            raise DataError(f"{len(failed)} of {len(writes)} plan writes failed on the workers "
                            f"({one_line(err) if err else failed[0].status}); rerun "
                            "the same command")
        for f in writes:
            f.release()
        io.finish_plan(url, storage_options)
        self.release()

    def release(self) -> None:
        """Let the workers drop the batches."""
        for f in self.futures:
            f.release()
        self.futures = []


def plan_on_workers(client, catalog, spec, *, batch_size: int | None = None, threads: int = 16,
                    max_in_flight: int | None = None,
                    on_probed: Callable[[int], None] | None = None) -> WorkerPlan:
    """Plan every usable track of ``catalog`` on the workers, keeping the plan there.

    Parameters
    ----------
    client : distributed.Client
    catalog : emodist.data.catalog.Catalog
    spec : ExtractionSpec
    batch_size : int, optional
        Tracks per task (default :func:`batch_length` of the cluster's threads).
    threads : int
        Threads per task reading headers.
    max_in_flight : int, optional
        Batches being planned at once (default :data:`IN_FLIGHT_PER_THREAD`
        per worker thread).
    on_probed : callable, optional
        ``on_probed(k)`` after each planned batch of ``k`` tracks.

    Returns
    -------
    WorkerPlan
        The batches' futures, their segment counts and problems: nothing
        per track or segment on the driver.

    Raises
    ------
    ClusterError
        The scheduler went away.
    DataError
        A batch failed after its retries (the batches planned so far are released).
    """
    n_tracks = int(catalog.usable_mask().sum())
    size, cap = _batching(client, n_tracks, batch_size, max_in_flight)
    run_id = uuid.uuid4().hex[:8]
    n_batches = math.ceil(n_tracks / size) if n_tracks else 0
    futures: list = [None] * n_batches
    counts = np.zeros(n_batches, np.int64)
    problems: dict[int, list] = {}
    errors: list[tuple[int, str]] = []
    source = track_batches(catalog, size)
    index: dict[str, int] = {}

    def submit(batch):
        k = batch[0] // size
        fut = client.submit(plan_batch, batch, catalog.storage_options, spec, int(threads),
                            retries=executor.TASK_RETRIES, pure=False,
                            key=f"{PLAN_TASK}-{batch[0]:09d}-{run_id}")
        futures[k] = fut
        summary = client.submit(batch_summary, fut, pure=False,
                                key=f"{PLAN_TASK}-summary-{batch[0]:09d}-{run_id}")
        index[summary.key] = k
        return summary

    ac = executor.completed(client, [submit(b) for b in islice(source, cap)])
    for fut in ac:
        k = index.pop(fut.key)
        try:
            counts[k], problems[k] = fut.result()
        except Exception as exc:  # noqa: BLE001 - reported below
            if scheduler_lost(client, exc):
                raise lost_scheduler(client, during="while planning", hint=RERUN_HINT) from None
            errors.append((k * size, one_line(exc)))
        fut.release()
        if on_probed is not None:
            on_probed(min(size, n_tracks - k * size))
        nxt = next(source, None)
        if nxt is not None:
            ac.add(submit(nxt))
    if errors:
        first, message = min(errors)
        for f in futures:
            if f is not None:
                f.release()
        raise DataError(f"{len(errors)} plan batches failed on the workers (the one from "
                        f"{first}: {message}); rerun the same command")
    return WorkerPlan(client=client, futures=futures, counts=counts,
                      problems=[p for k in range(n_batches) for p in problems.get(k, [])],
                      n_tracks=n_tracks)


class PlanProgress:
    """Counts probed headers; logs done/total and rate, or advances a progress bar.

    Thread-safe (driver planning reports from its probing threads).
    """

    def __init__(self, *, total: int, where: str, bar=None):
        self.total, self.where, self.bar = int(total), where, bar
        self.done = 0
        self.t0 = self.last = time.perf_counter()
        self.lock = threading.Lock()
        self.task = None if bar is None else bar.add_task("plan", total=self.total, first=0)

    def rate(self) -> float:
        """Headers per second so far."""
        return run_rate(self.done, 0, time.perf_counter() - self.t0)

    def __call__(self, n: int) -> None:
        with self.lock:
            self.done += int(n)
            if self.bar is not None:
                self.bar.update(self.task, advance=int(n))
                return
            now = time.perf_counter()
            if now - self.last >= PROGRESS_LOG_S and self.done < self.total:
                self.last = now
                log.info("planned %d of %d headers on the %s (%.0f files/s)", self.done,
                         self.total, self.where, self.rate())


@contextlib.contextmanager
def plan_progress(*, enabled: bool, total: int, where: str) -> Iterator[PlanProgress]:
    """A :class:`PlanProgress` for ``total`` headers: a bar when ``enabled``, log lines else."""
    log.info("planning %d tracks on the %s", total, where)
    with progress_bar(enabled, "headers", "file") as bar:
        progress = PlanProgress(total=total, where=where, bar=bar)
        yield progress
    seconds = time.perf_counter() - progress.t0
    log.info("planned %d headers on the %s in %.1f s (%.0f files/s)", progress.done, where,
             seconds, progress.rate())


def plan_dataset(catalog, spec, runtime, *, dataset: str, stack: contextlib.ExitStack,
                 keep_on_workers: bool = False):
    """The segment plan of a run, on the driver or the workers (:func:`plan_site`).

    Planning on the workers connects the run's client first (entered into
    ``stack``, so extraction uses the same one).  With ``keep_on_workers``
    (a new store) the plan stays there (:func:`plan_on_workers`).

    Returns
    -------
    (SegmentPlan or WorkerPlan, distributed.Client or None)
        The plan, and the client when one was connected.
    """
    paths = catalog.tracks["path"][catalog.usable_mask()]  # a column, no copy of the table
    where = plan_site(dataset=dataset, paths=paths, plan_on=runtime.plan_on)
    client = None
    if where == "workers":
        client = stack.enter_context(connect(runtime))
        check_routing(client, runtime)
    if client is None and len(paths) <= PLAN_ON_WORKERS_TRACKS:  # quick: no progress shown
        return plan_segments(catalog, spec), None
    with plan_progress(enabled=runtime.progress, total=len(paths), where=where) as progress:
        if client is not None and keep_on_workers:
            return plan_on_workers(client, catalog, spec, on_probed=progress), client
        if client is None:
            return plan_segments(catalog, spec, on_probed=progress), None
        return plan_segments_on_workers(client, catalog, spec, on_probed=progress), client
