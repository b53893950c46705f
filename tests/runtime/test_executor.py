"""The shared executor: tasks whose scattered inputs are lost are resubmitted on fresh ones."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest

from emodist.errors import ClusterError
from emodist.runtime import executor


def weighted_sum(k, x=None, w=None):
    time.sleep(0.05)
    return float(np.dot(x, w) * k)


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=":0") as cluster, Client(cluster) as c:
        yield c


def drop_scattered(client, keep=()):
    """Cancel every scattered input held on the cluster, as a lost worker would take them."""
    from distributed import Future

    keys = {k for ks in client.has_what().values() for k in ks
            if str(k).startswith("ndarray-") and k not in keep}
    client.cancel([Future(k, client) for k in keys], force=True)
    return keys


def test_tasks_that_lost_their_inputs_are_resubmitted(client, caplog):
    x, w = np.arange(4.0), np.ones(4)
    tasks = [{"k": k} for k in range(8)]
    dropped = []

    def on_done():
        if not dropped:  # once, after the first finished task
            dropped.append(drop_scattered(client))

    with caplog.at_level(logging.WARNING, logger="emodist.runtime.executor"):
        out = executor.run_all(weighted_sum, {"x": x, "w": w}, tasks, client=client, on_done=on_done)
    assert dropped and dropped[0]  # the inputs were really taken away mid-run
    assert out == [6.0 * k for k in range(8)]  # every task, in task order
    assert any("resubmitting (1 of" in r.getMessage() for r in caplog.records)


def test_inputs_lost_on_every_attempt_give_one_cluster_error(client):
    def on_done():
        drop_scattered(client)

    with pytest.raises(ClusterError, match="kept losing their inputs"):
        executor.run_all(weighted_sum, {"x": np.arange(4.0), "w": np.ones(4)},
                         [{"k": k} for k in range(40)], client=client, on_done=on_done)


def test_an_error_of_the_task_itself_is_not_retried(client, caplog):
    with caplog.at_level(logging.WARNING, logger="emodist.runtime.executor"), \
            pytest.raises(ZeroDivisionError):
        executor.run_all(divide, {"a": 1.0}, [{"b": 1.0}, {"b": 0.0}], client=client)
    assert not any("resubmitting" in r.getMessage() for r in caplog.records)


def divide(a, b):
    return a / b


@pytest.mark.parametrize("runner", ["bounded", "all"])
def test_runs_track_their_own_clients_futures_not_the_current_clients(client, runner):
    """A run on one client while another (here: closed) client is the current one finishes.

    ``as_completed`` left alone tracks futures on the current client's loop; a run
    on a second client then hangs when that loop is gone, and fails ("bound to a
    different event loop") when a future is lost and recomputed.
    """
    from tests.servers import call_in_this_context, closed_current_client

    x, w = np.arange(4.0), np.ones(4)
    with closed_current_client():
        if runner == "bounded":
            done, out = call_in_this_context(lambda: executor.run_bounded(
                client, weighted_sum, range(4), args=(x, w), max_in_flight=2))
            assert done, "the run hung on the other client's loop"
            results, errors = out
            assert sorted(results) == [0.0, 6.0, 12.0, 18.0] and errors == []
        else:
            done, out = call_in_this_context(lambda: executor.run_all(
                weighted_sum, {"x": x, "w": w}, [{"k": k} for k in range(4)], client=client))
            assert done, "the run hung on the other client's loop"
            assert out == [0.0, 6.0, 12.0, 18.0]


def slow_identity(i):
    time.sleep(0.5)
    return i


@pytest.mark.cluster
def test_results_lost_with_a_worker_are_recomputed_while_another_client_is_current(client):
    """`dask scheduler` + two `dask worker` processes, another client current; one worker dies.

    Finished results that were waiting to be read die with their worker and are
    recomputed; every item still arrives (this failed with "... is bound to a
    different event loop" when the run tracked its futures on the current client's loop).
    """
    from distributed import Client

    from tests.servers import dask_cluster, stop

    with dask_cluster(n_workers=2, nthreads=1) as (address, workers):
        own = Client(address, set_as_default=False)
        try:
            killed = []

            def on_result(item, res, err):
                if not killed:  # let results queue up on both workers, then kill one
                    time.sleep(1.2)
                    stop(workers[0], timeout=5)
                    killed.append(item)

            results, errors = executor.run_bounded(own, slow_identity, range(6), max_in_flight=6,
                                                   on_result=on_result)
        finally:
            own.close()
        assert killed and workers[0].poll() is not None
    assert errors == []
    assert sorted(results) == list(range(6))
