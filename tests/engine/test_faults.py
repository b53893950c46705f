"""Faults during a run, with real processes: a worker, the scheduler, the S3 endpoint.

Every run extracts the handcrafted group of a small generated Emotify-layout
dataset (8 tracks of 12 s, 4 s segments, 24 segments in chunks of 2); the
first run, on an in-process cluster, is the reference every faulted run must
equal once it (or its rerun) completes.  Chunks written before a fault must
not be lost or rewritten.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from emodist.engine.extract import run_extract
from emodist.errors import EmodistError
from emodist.features import make_groups
from emodist.spec import ExtractionSpec, Runtime
from emodist.store import open_store
from emodist.store import zarrio as io
from tests.servers import (
    S3_KEY,
    S3_REGION,
    S3_SECRET,
    _bin,
    free_port,
    make_bucket,
    stop,
    upload_tree,
    wait_port,
)

REPO = Path(__file__).resolve().parents[2]
CHUNK = 2
N_SEGMENTS = 24
SPEC = ExtractionSpec(groups=make_groups(["handcrafted"]), segment_seconds=4.0)


def rt(**kw) -> Runtime:
    kw.setdefault("chunk", CHUNK)
    return Runtime(progress=False, batch_size=4, **kw)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, small_dataset) -> str:
    from distributed import Client, LocalCluster

    url = str(tmp_path_factory.mktemp("ref") / "ref.zarr")
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        result = run_extract(str(small_dataset), url, SPEC, rt(client=client))
    assert result.n_done == N_SEGMENTS
    return url


def assert_same_values(url, ref_url, storage_options=None):
    """The store holds the reference's segments, status and values (paths may differ)."""
    got, ref = open_store(url, storage_options), open_store(ref_url)
    for name in ("segment", "track_id", "label", "segment_index", "start_s",
                 "handcrafted_status"):
        np.testing.assert_array_equal(got[name].values, ref[name].values, err_msg=name)
    np.testing.assert_array_equal(got["votes"].values, ref["votes"].values)
    np.testing.assert_allclose(got["handcrafted"].values, ref["handcrafted"].values,
                               rtol=1e-5, atol=1e-6)
    assert got["handcrafted"].chunks == ref["handcrafted"].chunks
    assert got.attrs["feature_groups"] == ref.attrs["feature_groups"]


def done_segments(url, storage_options=None) -> int:
    try:
        return int((io.read_state(url, storage_options).status["handcrafted"] == 1).sum())
    except Exception:  # noqa: BLE001 - the store is not created yet
        return 0


def chunk_mtimes(url: str) -> dict[int, int]:
    """``chunk -> mtime_ns`` of the written handcrafted chunks of a local store."""
    state = io.read_state(url)
    done = np.flatnonzero(state.status["handcrafted"] == 1)
    chunks = sorted({int(i) // CHUNK for i in done})
    return {c: os.stat(Path(url, "handcrafted", "c", str(c), "0")).st_mtime_ns for c in chunks}


def wait_for(cond, timeout: float, what: str, step: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def extract_until_fault(dataset, url: str, address: str, fault, *, wait_s: float,
                        extra=()) -> str:
    """Run ``emodist extract`` on ``address``, call ``fault()`` after its first chunk.

    Asserts that the command then exits 2 with one error line and no
    traceback within ``wait_s`` seconds; returns that line.
    """
    cmd = [sys.executable, "-m", "emodist", "extract", str(dataset), "--store", url,
           "--features", "handcrafted", "--segment-seconds", "4", "--batch-size", "4",
           "--chunk-segments", str(CHUNK), "--quiet", *extra, "--scheduler", address]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=str(REPO)), start_new_session=True)
    try:
        wait_for(lambda: done_segments(url) >= CHUNK or proc.poll() is not None, 90,
                 "a first chunk")
        fault()
        _out, err = proc.communicate(timeout=wait_s)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    assert proc.returncode == 2, (proc.returncode, err[-3000:])
    assert "Traceback" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith("emodist: error:")]
    assert len(lines) == 1, err[-3000:]
    return lines[0]


@contextmanager
def processes_cluster(n_workers: int = 1, nthreads: int = 1):
    """``dask scheduler`` + workers (the compose commands); yields ``(address, sched, workers)``.

    Unlike :func:`tests.servers.dask_cluster` the scheduler process is handed
    out too, so that a test can kill it.
    """
    from distributed import Client

    from tests.deploy_commands import scheduler_command, worker_command

    port, dash = free_port(), free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL,
             "start_new_session": True, "env": env}
    sched = subprocess.Popen(scheduler_command(host="127.0.0.1", port=port,
                                               dashboard_port=dash, dask=_bin("dask")), **quiet)
    address = f"tcp://127.0.0.1:{port}"
    workers = []
    try:
        wait_port(port, 60, sched)
        workers = [subprocess.Popen(worker_command(address, nthreads=nthreads,
                                                   memory_limit="2GiB", name=f"w{i}",
                                                   dask=_bin("dask")), **quiet)
                   for i in range(n_workers)]
        with Client(address, timeout=60) as c:
            c.wait_for_workers(n_workers, timeout=120)
        yield address, sched, workers
    finally:
        for w in workers:
            stop(w, timeout=5)
        stop(sched, timeout=5)


def _executing(dask_worker):
    """On a worker: its process id and the keys of the tasks it is executing now."""
    return os.getpid(), [ts.key for ts in dask_worker.state.executing]


def _processing(dask_scheduler):
    """On the scheduler: worker address -> keys of the tasks it has that worker process."""
    return {ws.address: [ts.key for ts in ws.processing] for ws in dask_scheduler.workers.values()}


# ------------------------------------------------------------------ worker SIGKILLed


@pytest.mark.cluster
def test_worker_sigkilled_while_running_a_chunk(tmp_path, small_dataset, reference):
    """SIGKILL the worker process (not its nanny) that is executing a chunk task.

    As chunks land, the workers themselves and the scheduler are asked
    (through the run's client, from ``on_result``) whether a worker holds a
    running ``emodist-chunk`` task; it is killed; the scheduler gives the
    task to the other worker and the run completes with the reference's values;
    the chunks written before the kill are not rewritten.
    """
    from distributed import Client

    url = str(tmp_path / "s.zarr")
    finished: list[int] = []
    seen: dict = {}

    with processes_cluster(n_workers=2) as (address, _sched, _workers), \
            Client(address, timeout=30) as client:

        def busy():
            for addr, (pid, keys) in client.run(_executing).items():
                keys = [k for k in keys if k.startswith("emodist-chunk")]
                on_sched = client.run_on_scheduler(_processing).get(addr, [])
                if keys and set(keys) & set(on_sched):
                    return addr, pid, keys
            return None

        def kill_a_busy_worker(task, res, err):
            finished.append(task.chunk)
            if "pid" in seen:
                return
            hit = busy()  # asked at each result, never waiting: the run goes on meanwhile
            if hit is None:
                return
            # chunks reported done (a chunk the killed worker wrote but never
            # reported is redone, and may be rewritten: that loses nothing)
            seen["before"] = {c: t for c, t in chunk_mtimes(url).items() if c in finished}
            addr, pid, keys = hit
            os.kill(pid, signal.SIGKILL)
            seen.update(addr=addr, pid=pid, keys=keys, chunks_done=len(finished))

        result = run_extract(str(small_dataset), url, SPEC, rt(client=client),
                             on_result=kill_a_busy_worker)
        assert seen.get("pid"), "no worker was killed"
        with pytest.raises(ProcessLookupError):
            os.kill(seen["pid"], 0)  # the worker process is gone
    assert seen["chunks_done"] < N_SEGMENTS // CHUNK  # killed mid-run
    assert result.n_done == N_SEGMENTS and result.n_failed == 0 and result.n_chunks == 12
    assert_same_values(url, reference)
    after = chunk_mtimes(url)
    assert {c: after[c] for c in seen["before"]} == seen["before"]  # nothing rewritten


# ------------------------------------------------------------------ scheduler killed


@pytest.mark.cluster
def test_scheduler_killed_mid_run_is_one_line_and_rerun_resumes(tmp_path, small_dataset, reference):
    """SIGKILL ``dask scheduler`` under ``emodist extract``; rerun on a new scheduler.

    The driver exits 2 with one line naming the lost scheduler (no
    traceback, no hang); the chunks it wrote stay and are not rewritten by
    the rerun, which completes the store.
    """
    url = str(tmp_path / "s.zarr")
    with processes_cluster(n_workers=1) as (address, sched, _workers):

        def kill_the_scheduler():
            os.killpg(sched.pid, signal.SIGKILL)
            sched.wait(10)

        line = extract_until_fault(small_dataset, url, address, kill_the_scheduler, wait_s=60)
    done = done_segments(url)
    assert address in line and "scheduler" in line, line
    assert 0 < done < N_SEGMENTS, done
    before = chunk_mtimes(url)
    assert len(before) == done // CHUNK

    with processes_cluster(n_workers=1) as (new_address, _sched, _workers):
        assert new_address != address
        result = run_extract(str(small_dataset), url, SPEC, rt(scheduler=new_address))
    assert result.resumed and result.n_done == N_SEGMENTS
    assert result.n_written == N_SEGMENTS - done
    assert_same_values(url, reference)
    after = chunk_mtimes(url)
    assert {c: after[c] for c in before} == before  # nothing written before was rewritten


# ------------------------------------------------------------------ every worker gone


@pytest.mark.cluster
def test_every_worker_gone_is_one_line_and_rerun_resumes(tmp_path, small_dataset, reference):
    """SIGKILL every ``dask worker`` (nanny and worker) under ``emodist extract``.

    The driver does not wait forever: after ``--worker-timeout`` seconds with
    no worker it exits 2 with one line saying so and how many chunks are
    kept; a worker started on the same scheduler lets the rerun finish.
    """
    import re

    from tests.deploy_commands import worker_command

    url = str(tmp_path / "s.zarr")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    with processes_cluster(n_workers=1) as (address, _sched, workers):

        def kill_every_worker():
            for w in workers:
                os.killpg(w.pid, signal.SIGKILL)  # the nanny and its worker
                w.wait(10)

        line = extract_until_fault(small_dataset, url, address, kill_every_worker, wait_s=120,
                                   extra=["--worker-timeout", "5"])
        done = done_segments(url)
        m = re.search(r"--worker-timeout: no worker left on (\S+) for 5 s .*; (\d+) of (\d+) "
                      r"chunks of (\S+) are written and kept", line)
        assert m and m[1] == address and m[4] == url, line
        assert int(m[3]) == N_SEGMENTS // CHUNK
        assert int(m[2]) == done // CHUNK and 0 < done < N_SEGMENTS, (line, done)
        new = subprocess.Popen(worker_command(address, nthreads=1, memory_limit="2GiB",
                                              name="w-new", dask=_bin("dask")),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True, env=env)
        try:
            result = run_extract(str(small_dataset), url, SPEC, rt(scheduler=address))
        finally:
            stop(new, timeout=5)
    assert result.resumed and result.n_done == N_SEGMENTS
    assert result.n_written == N_SEGMENTS - done
    assert_same_values(url, reference)


# ------------------------------------------------------------------ S3 outage


@contextmanager
def moto_process():
    """A ``moto_server`` process; yields ``(endpoint, options, proc)``."""
    port = free_port()
    proc = subprocess.Popen([_bin("moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        wait_port(port, 30, proc)
        endpoint = f"http://127.0.0.1:{port}"
        yield endpoint, {"key": S3_KEY, "secret": S3_SECRET,
                         "client_kwargs": {"endpoint_url": endpoint,
                                           "region_name": S3_REGION}}, proc
    finally:
        with __import__("contextlib").suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGCONT)
        stop(proc, timeout=5)


@pytest.mark.s3
def test_s3_endpoint_outage_mid_run(tmp_path, small_dataset, reference):
    """The S3 endpoint stops answering for a few seconds mid-run (SIGSTOP, then SIGCONT).

    What "restart" means here: moto keeps its buckets in memory, so a real
    restart would lose the dataset and the half-written store, which a real
    S3 service does not.  The realistic fault is an outage of the endpoint
    with the data intact: the moto process is frozen with SIGSTOP (requests
    are accepted by the kernel and then time out: botocore's 1 s connect and
    read timeouts, set in the storage options) and resumed with SIGCONT
    after 4 s.  Dataset and store are both on S3.  Transient errors are
    retried by s3fs and then by Dask; a run whose chunks all ran out of
    retries stops with one line instead.  Either way a rerun completes and
    the store equals the reference.
    """
    from distributed import Client, LocalCluster

    with moto_process() as (endpoint, options, moto):
        make_bucket(endpoint, "audio")
        make_bucket(endpoint, "features")
        upload_tree(options, small_dataset, "s3://audio/emotify")
        options = dict(options, config_kwargs={"connect_timeout": 1, "read_timeout": 1,
                                               "retries": {"max_attempts": 1}})
        storage = {"dataset": options, "store": options}
        url = "s3://features/run/store.zarr"
        finished: list[int] = []
        outage: dict = {}

        def freeze_the_endpoint():
            deadline = time.monotonic() + 90
            while not finished and time.monotonic() < deadline:
                time.sleep(0.02)
            os.kill(moto.pid, signal.SIGSTOP)
            outage["chunks_before"] = len(finished)
            time.sleep(4.0)
            os.kill(moto.pid, signal.SIGCONT)
            outage["chunks_during"] = len(finished) - outage["chunks_before"]

        with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                          dashboard_address=":0") as cluster, Client(cluster) as client:
            freezer = threading.Thread(target=freeze_the_endpoint, daemon=True)
            freezer.start()
            try:
                result = run_extract("s3://audio/emotify", url, SPEC,
                                     rt(client=client, storage=storage),
                                     on_result=lambda task, res, err: finished.append(task.chunk))
                stopped = None
            except EmodistError as exc:
                result, stopped = None, exc
            freezer.join(30)
            assert "chunks_during" in outage, "the endpoint was never frozen"
            assert outage["chunks_before"] < N_SEGMENTS // CHUNK  # frozen mid-run
            if stopped is not None:
                assert len(str(stopped).splitlines()) == 1
                assert "rerun" in str(stopped), stopped
            done = done_segments(url, options)
            assert done >= CHUNK * outage["chunks_before"]
            again = run_extract("s3://audio/emotify", url, SPEC,
                                rt(client=client, storage=storage))
            assert again.n_done == N_SEGMENTS and again.n_failed == 0
            if result is not None:
                assert result.n_done == N_SEGMENTS and again.already_complete
            else:
                assert again.resumed and again.n_written == N_SEGMENTS - done
        assert_same_values(url, reference, options)
