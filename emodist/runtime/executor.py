"""Running independent tasks: on a Dask client (bounded), or in local processes.

Extraction (chunk tasks) and evaluation (one fit per task) both run through
here.  :func:`run_bounded` keeps at most ``max_in_flight`` tasks submitted,
so the scheduler never holds a whole million-segment job, and reports each
result as it lands.  :func:`run_all` scatters the large shared arguments
once and runs every task on the cluster, or with :mod:`joblib` without one.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import CancelledError
from itertools import islice

from emodist.errors import ClusterError
from emodist.runtime.cluster import one_line

__all__ = ["TASK_RETRIES", "completed", "run_all", "run_bounded"]

log = logging.getLogger(__name__)

#: Dask retries of a task that raised (transient I/O errors).
TASK_RETRIES = 2


def completed(client, futures):
    """:class:`distributed.as_completed` over ``futures``, tracked on ``client``'s own loop.

    Left alone, ``as_completed`` (like ``distributed.wait``) takes the loop of
    the *current* client, which may be another one (a caller's ``with
    Client() as c:``): a future of ``client`` that is lost with its worker and
    recomputed would then wait on an event bound to that other loop, and
    fail, or hang when that loop is gone.
    """
    from distributed import as_completed

    return as_completed(futures, loop=client.loop)


def run_bounded(client, func: Callable, items: Iterable, *, args: tuple = (),
                max_in_flight: int, retries: int = TASK_RETRIES, name: str = "task",
                key: Callable | None = None, resources: dict | None = None,
                on_result: Callable | None = None, then: Callable | None = None,
                then_resources: dict | None = None) -> tuple[list, list]:
    """Run ``func(item, *args)`` for every item with at most ``max_in_flight`` submitted.

    With ``then``, each item is two tasks: ``func(item, *args)`` (key
    ``NAME-cpu-...``, needing ``resources``) and ``then(first, item, *args)``
    on its result (key ``NAME-model-...``, needing ``then_resources``); the
    second task's result is the item's.

    Parameters
    ----------
    client : distributed.Client
    func : callable
        The task function.
    items : iterable
        Consumed lazily.
    args : tuple
        Extra arguments of every call (small: sent with each task).
    max_in_flight : int
        Cap on submitted, unfinished tasks.
    retries : int
        Dask retries per task.
    name : str
        Prefix of the task keys (shown on the dashboard).
    key : callable, optional
        ``key(item) -> str`` part of each task key (default its position).
    resources : dict, optional
        Dask worker resources each task needs (e.g. ``{"GPU": 1}``).
    on_result : callable, optional
        Called as ``on_result(item, result, error)`` after each task.
    then : callable, optional
        Second stage of every item, fed the first stage's result.
    then_resources : dict, optional
        Dask worker resources of the second stage.

    Returns
    -------
    results : list
        Results of the tasks that finished.
    errors : list of (item, str)
        Items that failed after their retries, with the error's first line.
    """
    run_id = uuid.uuid4().hex[:8]
    it = iter(items)
    by_key: dict[str, object] = {}
    count = [0]

    def submit(item):
        part = key(item) if key is not None else f"{count[0]:07d}"
        count[0] += 1
        if then is None:
            fut = client.submit(func, item, *args, retries=retries, pure=False,
                                key=f"{name}-{part}-{run_id}", resources=resources)
        else:
            first = client.submit(func, item, *args, retries=retries, pure=False,
                                  key=f"{name}-cpu-{part}-{run_id}", resources=resources)
            fut = client.submit(then, first, item, *args, retries=retries, pure=False,
                                key=f"{name}-model-{part}-{run_id}", resources=then_resources)
        by_key[fut.key] = item
        return fut

    ac = completed(client, [submit(t) for t in islice(it, max(1, int(max_in_flight)))])
    results, errors = [], []
    for fut in ac:
        item = by_key.pop(fut.key)
        try:
            res, err = fut.result(), None
            results.append(res)
        except Exception as exc:  # noqa: BLE001 - reported; the caller decides
            res, err = None, exc
            errors.append((item, one_line(exc)))
        fut.release()
        if on_result is not None:
            on_result(item, res, err)
        nxt = next(it, None)
        if nxt is not None:
            ac.add(submit(nxt))
    return results, errors


def run_all(func: Callable, common: dict, tasks: list[dict], *, client=None,
            n_jobs: int | None = -1, on_done: Callable | None = None) -> list:
    """Run ``func(**common, **task)`` for every task; results in task order.

    With a :class:`distributed.Client` the ``common`` arguments are scattered
    once and the tasks go to the cluster; tasks cancelled because a lost
    worker took their scattered inputs with it are resubmitted on freshly
    scattered inputs (up to :data:`TASK_RETRIES` times); an error raised by
    ``func`` itself is not retried.  Without a client :mod:`joblib` runs them
    (``n_jobs`` processes, 1 = in this process).  ``on_done()`` is called once
    per finished task (progress).
    """
    tick = on_done or (lambda: None)
    if client is not None:
        return _run_all_dask(client, func, common, tasks, tick)
    from joblib import Parallel, delayed

    out = []
    for result in Parallel(n_jobs=n_jobs, return_as="generator")(
            delayed(func)(**common, **t) for t in tasks):
        out.append(result)
        tick()
    return out


def _run_all_dask(client, func: Callable, common: dict, tasks: list[dict], tick) -> list:
    results: dict[int, object] = {}
    pending = list(range(len(tasks)))
    for attempt in range(TASK_RETRIES + 1):
        # hash=False: equal data scattered by an earlier call (the same labels for the next
        # feature set) would get that call's key, and its release would cancel these tasks
        shared = {k: client.scatter(v, broadcast=True, hash=False) for k, v in common.items()}
        submitted = [client.submit(func, **shared, **tasks[i], pure=False) for i in pending]
        index = {fut.key: i for fut, i in zip(submitted, pending)}
        lost = []
        for fut in completed(client, submitted):
            i = index[fut.key]
            try:
                results[i] = fut.result()
            except CancelledError:  # its inputs went with a lost worker
                lost.append(i)
                continue
            tick()
        if not lost:
            return [results[i] for i in range(len(tasks))]
        log.warning("%d tasks lost their inputs with a worker; resubmitting (%d of %d)",
                    len(lost), attempt + 1, TASK_RETRIES)
        pending = sorted(lost)
    raise ClusterError(f"{len(pending)} tasks kept losing their inputs to lost workers; "
                       "is the cluster stable?")

