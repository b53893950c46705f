"""Worker environment, GPU routing and the CUDA path, on a CPU-only machine.

The routing tests run a real ``dask scheduler`` and two real ``dask worker``
processes: one advertising ``CPU=1`` and one advertising ``GPU=1`` (a CPU
worker standing in for a GPU one).  With ``--model-resources GPU=1`` every
chunk is a CPU task and a model task, and the worker advertising the GPU
must run exactly the model tasks; the store must equal the one the single
task per chunk writes.  Without a CUDA execution provider ``--device cuda``
fails with one line, on the driver (local cluster) and on the workers.
"""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest

from emodist.engine.extract import run_extract
from emodist.errors import ClusterError, EmodistError, ModelError
from emodist.features import make_groups
from emodist.runtime.cluster import WORKER_ENV, connect
from emodist.spec import ExtractionSpec, Runtime
from emodist.store import open_store
from tests.servers import _bin, free_port, stop, wait_port

GROUPS = ("handcrafted", "inception_v3")
HAS_CUDA = "CUDAExecutionProvider" in __import__("onnxruntime").get_available_providers()


def _environ(names):
    return {n: os.environ.get(n) for n in names}


def _profiler(dask_worker):
    import dask

    return (dask.config.get("distributed.worker.profile.enabled"),
            sorted(dask_worker.periodic_callbacks))


def _tick_ms(dask_worker=None, dask_scheduler=None):
    return (dask_worker or dask_scheduler).periodic_callbacks["tick"].callback_time


def test_worker_env_reaches_local_cluster_workers():
    """The malloc settings are in the environment of the worker processes themselves.

    The client is not made Dask's default: the driver's own lazy reads stay local.
    """
    import dask
    from distributed import default_client

    with connect(Runtime(n_workers=1, threads_per_worker=1)) as c:
        try:
            default = default_client()
        except ValueError:  # no client at all is the default
            default = None
        assert default is not c and dask.config.get("scheduler", None) != "dask.distributed"
        seen = list(c.run(_environ, list(WORKER_ENV)).values())
        pids = list(c.run(os.getpid).values())
        [(enabled, callbacks)] = c.run(_profiler).values()
        ticks = [*c.run(_tick_ms).values(), c.run_on_scheduler(_tick_ms)]
    assert pids and pids[0] != os.getpid()  # a separate process, not this one
    assert seen == [WORKER_ENV]
    assert enabled is False and "profile" not in callbacks  # no statistical profiler
    assert dask.config.get("distributed.worker.profile.enabled") is True  # driver untouched
    assert ticks == [1000, 1000]  # the event-loop tick of the worker and the scheduler, in ms
    assert dask.config.get("distributed.admin.tick.interval") != "1s"  # Dask's default kept here
    assert WORKER_ENV["MALLOC_TRIM_THRESHOLD_"] != "65536"  # not the nanny's default


# ----------------------------------------------------------------- real processes


def _popen(cmd, env):
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, env=env)


@pytest.fixture(scope="module")
def routed_cluster():
    """``dask scheduler`` + a ``CPU=1`` worker + a ``GPU=1`` worker; yields (address, names)."""
    from distributed import Client

    port = free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(__import__("pathlib").Path(__file__).resolve().parents[2]),
         os.environ.get("PYTHONPATH", "")]))
    sched = _popen([_bin("dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                    "--dashboard-address", "127.0.0.1:0"], env)
    address = f"tcp://127.0.0.1:{port}"
    workers = []
    try:
        wait_port(port, 60, sched)
        for name, res in (("cpu-worker", "CPU=1"), ("gpu-worker", "GPU=1")):
            workers.append(_popen([_bin("dask"), "worker", address, "--nthreads", "1",
                                   "--memory-limit", "2GiB", "--name", name, "--host",
                                   "127.0.0.1", "--resources", res], env))
        with Client(address, timeout=60) as c:
            c.wait_for_workers(2, timeout=120)
        yield address
    finally:
        for w in workers:
            stop(w)
        stop(sched)


@pytest.fixture(scope="module")
def routing_dataset(demo_data):
    return demo_data(4, 3, 12.0)


@pytest.fixture(scope="module")
def spec(tiny_model):
    return ExtractionSpec(groups=make_groups(list(GROUPS), {"model": tiny_model}),
                          segment_seconds=4.0)


def _run(client, dataset, store, spec, **kw):
    """Extract with ``client``; the result and (key, worker name) of every emodist task."""
    from distributed import get_task_stream

    names = {a: w["name"] for a, w in client.scheduler_info(n_workers=-1)["workers"].items()}
    runtime = Runtime(client=client, progress=False, batch_size=2, chunk=3, **kw)
    with get_task_stream(client) as ts:
        result = run_extract(str(dataset), str(store), spec, runtime)
    ran = [(str(t["key"]), names[t["worker"]]) for t in ts.data
           if "emodist-chunk" in str(t["key"])]
    return result, ran


def test_model_tasks_run_on_the_gpu_worker_and_the_store_is_unchanged(
        routed_cluster, routing_dataset, spec, tmp_path):
    from distributed import Client

    with Client(routed_cluster, timeout=60) as c:
        single, single_ran = _run(c, routing_dataset, tmp_path / "single.zarr", spec)
        split, split_ran = _run(c, routing_dataset, tmp_path / "split.zarr", spec,
                                resources={"CPU": 1}, model_resources={"GPU": 1})
    n_chunks = single.n_chunks
    assert n_chunks >= 3 and split.n_chunks == n_chunks
    # The task stream selects tasks by their stop time, shifted by the worker's estimate of
    # its clock offset, so the last task of the first run can also show up in the
    # second run's window: each run keeps only its own kind of key.
    split_ran = [(k, w) for k, w in split_ran if "-cpu-" in k or "-model-" in k]
    # the CPU path: one task per chunk, no stage keys
    assert len(single_ran) == n_chunks
    assert not any("-cpu-" in k or "-model-" in k for k, _ in single_ran)
    # split: one CPU task and one model task per chunk, each on its own kind of worker
    model = sorted(k for k, _ in split_ran if "-model-" in k)
    cpu = sorted(k for k, _ in split_ran if "-cpu-" in k)
    assert len(model) == len(cpu) == n_chunks and len(split_ran) == 2 * n_chunks
    assert sorted(k for k, w in split_ran if w == "gpu-worker") == model
    assert sorted(k for k, w in split_ran if w == "cpu-worker") == cpu
    a, b = open_store(str(tmp_path / "single.zarr")), open_store(str(tmp_path / "split.zarr"))
    for g in GROUPS:
        assert np.isfinite(a[g].values).all()
        np.testing.assert_array_equal(a[g].values, b[g].values)
        np.testing.assert_array_equal(a[f"{g}_status"].values, b[f"{g}_status"].values)
    assert split.n_done == single.n_done == a.sizes["segment"]


def test_resources_no_worker_advertises_fail_with_one_line(routed_cluster, routing_dataset,
                                                           spec, tmp_path):
    from distributed import Client

    with Client(routed_cluster, timeout=60) as c, pytest.raises(ClusterError) as err:
        run_extract(str(routing_dataset), str(tmp_path / "s.zarr"), spec,
                    Runtime(client=c, progress=False, model_resources={"TPU": 1}))
    assert err.value.param == "model_resources"
    assert "no worker advertises TPU=1" in err.value.message and "\n" not in err.value.message


@pytest.mark.skipif(HAS_CUDA, reason="this machine has the CUDA execution provider")
def test_device_cuda_fails_on_cpu_only_workers(routed_cluster, routing_dataset, spec, tmp_path):
    from distributed import Client

    with Client(routed_cluster, timeout=60) as c, pytest.raises(ModelError) as err:
        run_extract(str(routing_dataset), str(tmp_path / "s.zarr"), spec,
                    Runtime(client=c, progress=False, device="cuda",
                            model_resources={"GPU": 1}))
    msg = err.value.message
    assert err.value.param == "device" and "\n" not in msg
    assert msg.startswith("cuda: 1 of 1 model workers cannot use it") and "CUDAExecutionProvider" in msg


@pytest.mark.skipif(HAS_CUDA, reason="this machine has the CUDA execution provider")
def test_cli_device_cuda_one_line_before_any_cluster(routing_dataset, tiny_model, tmp_path,
                                                     capsys):
    from emodist.cli import main

    code = main(["extract", str(routing_dataset), "--store", str(tmp_path / "s.zarr"),
                 "--model", tiny_model, "--device", "cuda", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1
    assert err[0].startswith("emodist: error: --device: cuda: onnxruntime ")
    assert "has no CUDAExecutionProvider" in err[0] and "emodist[gpu]" in err[0]
    assert not (tmp_path / "s.zarr").exists()  # refused before anything was written


# ----------------------------------------------------------------- pieces of the CUDA path


def test_bad_device_and_resource_flags():
    from emodist.cli.common import parse_resources
    from emodist.models.devices import parse_device

    assert parse_device("cuda:1") == ("cuda", 1) and parse_device(None) == ("cpu", 0)
    for bad in ("tpu", "cuda:x", "cpu:1"):
        with pytest.raises(EmodistError, match="use cpu, cuda or cuda:N"):
            parse_device(bad)
    assert parse_resources("GPU=1,MEM=2e9", "--x") == {"GPU": 1.0, "MEM": 2e9}
    for bad in ("GPU", "GPU=0", "=1", "GPU=a"):
        with pytest.raises(EmodistError, match="NAME=N"):
            parse_resources(bad, "--model-resources")


def test_io_binding_gives_the_session_run_values(tiny_model):
    """The I/O-binding call the CUDA path uses, run on the CPU device."""
    from emodist.models.devices import run_bound
    from emodist.models.session import get_session, read_sidecar

    sess, meta = get_session(tiny_model), read_sidecar(tiny_model)
    x = np.random.default_rng(0).uniform(-1, 1, (3, 3, 80, 80)).astype(np.float32)
    cache = {}
    [got] = run_bound(sess, meta["input_name"], [meta["output_name"]], x, "cpu", 0, cache=cache)
    [again] = run_bound(sess, meta["input_name"], [meta["output_name"]], x[::-1].copy(), "cpu",
                        0, cache=cache)
    want = sess.run([meta["output_name"]], {meta["input_name"]: x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(again, want[::-1], rtol=1e-6, atol=1e-6)
    assert len(cache) == 1  # one device buffer for one batch shape


def test_automatic_batch_halves_on_out_of_memory_only():
    from emodist.models.devices import halving_batches

    tried = []

    def run(bs):
        tried.append(bs)
        if bs > 5:
            raise RuntimeError("[ONNXRuntimeError] : 6 : Failed to allocate memory for requested "
                               "buffer of size 1234")

    assert halving_batches(run, 40) == 5 and tried == [40, 20, 10, 5]

    def broken(bs):
        raise RuntimeError("some other failure")

    with pytest.raises(RuntimeError, match="other failure"):
        halving_batches(broken, 8)
