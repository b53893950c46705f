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
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from emodist.engine import executor
from emodist.errors import ClusterError, DataError

if TYPE_CHECKING:
    from emodist.data.segments import Probes

log = logging.getLogger(__name__)

#: ``plan_on="auto"`` plans on the workers above this many tracks (or when remote).
PLAN_ON_WORKERS_TRACKS = 5000
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


def is_remote(path: str) -> bool:
    """Whether ``path`` names a remote location (a protocol other than file/local)."""
    from fsspec.utils import get_protocol

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


def batches(paths: Sequence[str], size: int) -> Iterator[tuple[int, list[str]]]:
    """``(start, paths[start:start + size])`` over ``paths``, lazily.

    ``paths`` may be a pandas Series (a catalog's column): each batch's
    strings are made as it is sent, not one Python string per file up front.

    >>> list(batches(["a", "b", "c"], 2))
    [(0, ['a', 'b']), (2, ['c'])]
    """
    for start in range(0, len(paths), max(1, int(size))):
        stop = start + size
        part = paths.iloc[start:stop] if hasattr(paths, "iloc") else paths[start:stop]
        yield start, [str(p) for p in part]


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
    from emodist.data.segments import probe_columns

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
    from emodist.data.segments import Probes
    from emodist.engine.extract import scheduler_address, scheduler_lost

    n_threads = sum(client.nthreads().values()) or 1
    size = batch_size or batch_length(n_paths=len(paths), n_threads=n_threads)
    out = Probes(len(paths))

    def done(batch, res, err):
        if err is not None and scheduler_lost(client, err):
            raise ClusterError(f"lost the scheduler {scheduler_address(client)} while "
                               "planning; rerun the same command against a running scheduler")
        if res is not None:
            out.put(batch[0], res)
            if on_probed is not None:
                on_probed(len(res))

    _, errors = executor.run_bounded(
        client, probe_headers, batches(paths, size), args=(storage_options, int(threads)),
        max_in_flight=max_in_flight or max(2, IN_FLIGHT_PER_THREAD * n_threads),
        name=TASK_NAME, key=lambda b: f"{b[0]:09d}", on_result=done)
    if errors:
        (_, first), message = errors[0]
        raise DataError(f"{len(errors)} header batches failed on the workers (the one from "
                        f"{first[0]}: {message}); rerun the same command")
    return out


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
        from emodist.progress import run_rate

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
    from emodist.progress import progress_bar

    log.info("planning %d tracks on the %s", total, where)
    with progress_bar(enabled, "headers", "file") as bar:
        progress = PlanProgress(total=total, where=where, bar=bar)
        yield progress
    seconds = time.perf_counter() - progress.t0
    log.info("planned %d headers on the %s in %.1f s (%.0f files/s)", progress.done, where,
             seconds, progress.rate())


def plan_dataset(catalog, spec, runtime, *, dataset: str, stack: contextlib.ExitStack):
    """The segment plan of a run, on the driver or the workers (:func:`plan_site`).

    Planning on the workers connects the run's client first (entered into
    ``stack``, so extraction uses the same one).

    Returns
    -------
    (SegmentPlan, distributed.Client or None)
        The plan, and the client when one was connected.
    """
    from emodist.data.segments import plan_segments
    from emodist.engine.cluster import check_routing, connect

    paths = catalog.usable()["path"]  # a column: no Python string per file here
    where = plan_site(dataset=dataset, paths=paths, plan_on=runtime.plan_on)
    client = None
    if where == "workers":
        client = stack.enter_context(connect(runtime))
        check_routing(client, runtime)
    if client is None and len(paths) <= PLAN_ON_WORKERS_TRACKS:  # quick: no progress shown
        return plan_segments(catalog, spec), None
    with plan_progress(enabled=runtime.progress, total=len(paths), where=where) as progress:
        segplan = plan_segments(catalog, spec, client=client, on_probed=progress)
    return segplan, client
