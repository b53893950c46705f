"""The shared executor: tasks whose scattered inputs are lost are resubmitted on fresh ones."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest

from emodist.engine import executor
from emodist.errors import ClusterError


def weighted_sum(x, w, k):
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

    with caplog.at_level(logging.WARNING, logger="emodist.engine.executor"):
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
    with caplog.at_level(logging.WARNING, logger="emodist.engine.executor"), \
            pytest.raises(ZeroDivisionError):
        executor.run_all(divide, {"a": 1.0}, [{"b": 1.0}, {"b": 0.0}], client=client)
    assert not any("resubmitting" in r.getMessage() for r in caplog.records)


def divide(a, b):
    return a / b
