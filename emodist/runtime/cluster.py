"""The Dask cluster a run uses: connect to a scheduler, or start a LocalCluster.

Extraction and evaluation both get their client from :func:`connect`.
Workers that emodist starts get :data:`WORKER_ENV`: Dask's nanny sets
``MALLOC_TRIM_THRESHOLD_=65536``, which makes glibc hand every large freed
temporary (an STFT, a batch of images) back to the kernel and fault it in
again on the next segment; emodist keeps up to 128 MiB of freed heap per
worker and serves arrays below 64 MiB from the heap instead.  Worker memory
still stays flat (the heap is reused, not grown); set the same variables on
the workers of your own cluster (see ``docs/performance.md``).

The worker processes of a LocalCluster inherit the driver's standard error:
under the command line that is the command's log file
(:mod:`emodist.cli.runlog`), so their tracebacks and the decoders' notes
stay off the terminal; the workers of a cluster you started write to their own.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator
from concurrent.futures import CancelledError
from urllib.parse import urlsplit

from emodist.errors import ClusterError, ModelError
from emodist.models.devices import device_problem, parse_device, require_device
from emodist.spec import Runtime

#: Seconds to wait for a scheduler and for its first worker.
CONNECT_TIMEOUT_S = 20
#: glibc malloc settings of the workers emodist starts (see the module text).
WORKER_ENV = {"MALLOC_TRIM_THRESHOLD_": str(128 * 2**20),
              "MALLOC_MMAP_THRESHOLD_": str(64 * 2**20)}

#: Dask settings of the local clusters emodist starts (scheduler, nannies and
#: workers): no statistical profiler (it samples every thread's stack every
#: 10 ms, about 3-4 % of a core per worker; the dashboard's profile page stays
#: empty), and the event-loop tick measured every second instead of every 20 ms
#: (it only feeds the "event loop unresponsive" warning, still given past the
#: 3 s limit, and a dashboard figure; at 20 ms the driver's scheduler and
#: nannies took about 0.06 of a core, half of it ticks). Both measured in
#: docs/performance.md.
WORKER_CONFIG = {"distributed.worker.profile.enabled": False,
                 "distributed.admin.tick.interval": "1s"}

__all__ = [
    "CLIENT_LOGGERS", "CONNECT_TIMEOUT_S", "RESUME_HINT", "WORKER_CONFIG", "WORKER_ENV",
    "check_cluster_args", "check_routing", "connect", "lost_scheduler", "one_line",
    "probe_cluster", "probe_scheduler", "quiet_when_lost", "scheduler_address",
    "scheduler_file_address", "scheduler_lost", "scheduler_watch", "worker_environ",
    "workers_with",
]

#: What a run whose scheduler went away tells the user to do.
RESUME_HINT = ("the chunks written so far are kept: rerun the same command against a running "
               "scheduler to resume")

log = logging.getLogger(__name__)


def one_line(exc: BaseException) -> str:
    """First line of an exception's text (its type when it has none)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def check_cluster_args(runtime: Runtime) -> None:
    """Refuse contradictory cluster settings with one line.

    Raises
    ------
    ClusterError
        Both a scheduler and a scheduler file, a scheduler together with
        local-cluster sizes, sizes below one, or a missing scheduler file.
    """
    r = runtime
    if r.scheduler and r.scheduler_file:
        raise ClusterError("give either a scheduler address or a scheduler file, not both",
                           param="scheduler_file")
    if (r.scheduler or r.scheduler_file) and (r.n_workers or r.threads_per_worker
                                              or r.memory_limit):
        raise ClusterError("worker count, threads and memory limit size a local cluster; "
                           "they do not combine with a scheduler", param="scheduler")
    for name, value in (("n_workers", r.n_workers), ("threads_per_worker", r.threads_per_worker)):
        if value is not None and int(value) < 1:
            raise ClusterError(f"{name.replace('_', ' ')} must be at least 1", param=name)
    if r.scheduler_file and not os.path.isfile(r.scheduler_file):
        raise ClusterError(f"scheduler file {r.scheduler_file} does not exist",
                           param="scheduler_file")


def probe_scheduler(address: str, timeout: float = 5.0, *, param: str = "scheduler",
                    where: str = "") -> None:
    """Fail fast, with one line, when nothing listens at a ``tcp://`` address.

    ``where`` (a scheduler file) is named in the message, ``param`` is the
    flag at fault.
    """
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.scheme not in ("tcp", "tls") or not parts.hostname:
        return
    source = f" (from {where})" if where else ""
    try:
        port = parts.port or 8786
    except ValueError:
        raise ClusterError(f"scheduler address {address}{source} has a bad port",
                           param=param) from None
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            pass
    except OSError as exc:
        raise ClusterError(f"cannot reach scheduler {address}{source}: {one_line(exc)}",
                           param=param) from None


def scheduler_file_address(path: str) -> str:
    """The scheduler address written in a Dask scheduler file (one line if unreadable)."""
    import json

    try:
        with open(path, encoding="utf-8") as f:
            info = json.load(f)
    except FileNotFoundError:
        raise ClusterError(f"scheduler file {path} does not exist",
                           param="scheduler_file") from None
    except (OSError, ValueError) as exc:
        raise ClusterError(f"scheduler file {path} is not readable JSON: {one_line(exc)}",
                           param="scheduler_file") from None
    address = info.get("address") if isinstance(info, dict) else None
    if not isinstance(address, str) or not address:
        raise ClusterError(f"scheduler file {path} names no scheduler address",
                           param="scheduler_file")
    return address


def probe_cluster(runtime: Runtime) -> None:
    """Fail fast when the scheduler (given, or named by the scheduler file) is not listening.

    A stale scheduler file (the scheduler it names is gone) is refused in
    one line instead of waiting for the connect timeout.
    """
    if runtime.scheduler:
        probe_scheduler(runtime.scheduler)
    elif runtime.scheduler_file:
        probe_scheduler(scheduler_file_address(runtime.scheduler_file), param="scheduler_file",
                        where=runtime.scheduler_file)


def _resource_text(resources: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in resources.items())


def workers_with(client, resources: dict | None) -> list[str]:
    """Addresses of the workers advertising at least ``resources`` (all workers for none)."""
    info = client.scheduler_info(n_workers=-1)["workers"]
    need = dict(resources or {})
    return sorted(a for a, w in info.items()
                  if all(float((w.get("resources") or {}).get(k, 0)) >= float(v)
                         for k, v in need.items()))


def check_routing(client, runtime: Runtime) -> None:
    """Refuse, with one line, a device or resources the run cannot get.

    With ``client=None`` (before any cluster starts) only the local case is
    checked: a LocalCluster's workers run on this machine, so ``--device
    cuda`` needs the CUDA execution provider in this process.  With a
    client, every worker that will run model tasks (those advertising
    ``runtime.model_resources``) is asked for its ONNX Runtime providers, and
    each resource asked for must be advertised by some worker (Dask would
    otherwise wait forever).

    Raises
    ------
    ModelError
        The device is unknown, or its execution provider is missing.
    ClusterError
        No worker advertises the resources asked for.
    """
    kind, _ = parse_device(runtime.device)
    if client is None:
        local = runtime.client is None and not (runtime.scheduler or runtime.scheduler_file)
        if kind != "cpu" and local:
            require_device(runtime.device)
        return
    for flag, need in (("resources", runtime.resources),
                       ("model_resources", runtime.model_resources)):
        if need and not workers_with(client, need):
            raise ClusterError(f"no worker advertises {_resource_text(need)} (start workers "
                               f"with 'dask worker ... --resources {_resource_text(need)}')",
                               param=flag)
    if kind == "cpu":
        return
    workers = workers_with(client, runtime.model_resources)
    problems = {a: p for a, p in client.run(device_problem, runtime.device,
                                            workers=workers).items() if p}
    if problems:
        addr = min(problems)
        raise ModelError(f"{runtime.device}: {len(problems)} of {len(workers)} model workers "
                         f"cannot use it ({addr}: {problems[addr]})", param="device")


def worker_environ() -> dict:
    """Dask's pre-spawn worker environment with :data:`WORKER_ENV` on top."""
    import dask

    env = dict(dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {})
    env.update(WORKER_ENV)
    return env


class _LostSchedulerFilter(logging.Filter):
    """Drops Dask's client log records once its client lost the scheduler."""

    def __init__(self, client):
        super().__init__()
        self.client = client

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "distributed.batched" and record.levelno < logging.WARNING:
            # "Batched Comm Closed" with a traceback, logged as the connection
            # drops and before the client's status says so.
            return False
        return getattr(self.client, "status", "running") == "running"


#: Loggers whose reconnect errors (with tracebacks) follow a lost scheduler.
CLIENT_LOGGERS = ("distributed.client", "distributed.utils", "distributed.batched")


@contextlib.contextmanager
def quiet_when_lost(client) -> Iterator[None]:
    """Silence the client's reconnect tracebacks after the scheduler is gone.

    The run reports a lost scheduler itself, in one line; Dask would add a
    traceback per reconnect attempt on stderr while the client closes.
    """
    filt = _LostSchedulerFilter(client)
    loggers = [logging.getLogger(name) for name in CLIENT_LOGGERS]
    for lg in loggers:
        lg.addFilter(filt)
    try:
        yield
    finally:
        for lg in loggers:
            lg.removeFilter(filt)


def scheduler_address(client) -> str:
    """The address of a client's scheduler (``"the scheduler"`` when unknown)."""
    sched = getattr(client, "scheduler", None)
    return str(getattr(sched, "address", None) or "the scheduler")


def scheduler_lost(client, err: BaseException) -> bool:
    """Whether a task error means the client lost its scheduler (not the task failing).

    Dask cancels every future of a client whose connection to the scheduler
    closed (reason ``scheduler-connection-lost``); futures submitted while it
    tries to reconnect would never finish.
    """
    if getattr(err, "reason", None) == "scheduler-connection-lost":
        return True
    return isinstance(err, CancelledError) and getattr(client, "status", "running") != "running"


def lost_scheduler(client, err: BaseException | None = None, *, during: str = "mid-run",
                   hint: str = RESUME_HINT) -> ClusterError:
    """The one-line error of a run whose scheduler went away.

    Parameters
    ----------
    client : distributed.Client
    err : BaseException, optional
        The error that showed it; its first line is added unless it is
        Dask's own cancellation (:func:`scheduler_lost`).
    during : str
        When it happened (``"mid-run"``, ``"while planning"``).
    hint : str
        What to do about it.

    Returns
    -------
    ClusterError
    """
    why = f" ({one_line(err)})" if err is not None and not scheduler_lost(client, err) else ""
    return ClusterError(f"lost the scheduler {scheduler_address(client)} {during}{why}; {hint}")


@contextlib.contextmanager
def scheduler_watch(client) -> Iterator[None]:
    """Turn a connection error raised while the scheduler is gone into :func:`lost_scheduler`."""
    try:
        yield
    except (OSError, TimeoutError) as exc:
        if getattr(client, "status", "running") == "running":
            raise
        raise lost_scheduler(client, exc) from None


@contextlib.contextmanager
def connect(runtime: Runtime) -> Iterator:
    """A Dask client for ``runtime``: its own client, a scheduler, or a new LocalCluster.

    A client made here is not set as Dask's default: emodist submits its
    tasks to it by name, and the driver's own lazy reads stay in the driver
    (a remote cluster's workers may not reach a store on the driver's disk).

    Yields
    ------
    distributed.Client

    Raises
    ------
    ClusterError
        The scheduler cannot be reached or has no workers.
    """
    if runtime.client is not None:
        yield runtime.client
        return
    import dask
    from distributed import Client, LocalCluster

    check_cluster_args(runtime)
    if runtime.scheduler or runtime.scheduler_file:
        stack = contextlib.ExitStack()
        where = runtime.scheduler or runtime.scheduler_file
        probe_cluster(runtime)
        try:
            client = Client(runtime.scheduler, scheduler_file=runtime.scheduler_file,
                            timeout=f"{CONNECT_TIMEOUT_S}s", set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            raise ClusterError(f"cannot reach scheduler {where}: {one_line(exc)}",
                               param="scheduler" if runtime.scheduler else "scheduler_file"
                               ) from None
        try:
            stack.enter_context(quiet_when_lost(client))
            try:
                client.wait_for_workers(1, timeout=CONNECT_TIMEOUT_S)
            except (TimeoutError, OSError):
                raise ClusterError(f"scheduler {where} has no workers", param="scheduler") from None
            yield client
        finally:
            try:
                client.close()
            finally:
                stack.close()
        return
    kwargs = {"processes": True, "dashboard_address": ":0", "silence_logs": logging.ERROR}
    for key, value in (("n_workers", runtime.n_workers),
                       ("threads_per_worker", runtime.threads_per_worker),
                       ("memory_limit", runtime.memory_limit)):
        if value is not None:
            kwargs[key] = value
    try:
        with dask.config.set({"distributed.nanny.pre-spawn-environ": worker_environ(),
                              **WORKER_CONFIG}):
            cluster = LocalCluster(**kwargs)
    except (ValueError, TypeError) as exc:
        raise ClusterError(f"cannot start a local cluster: {one_line(exc)}",
                           param="memory_limit") from None
    try:
        with Client(cluster, set_as_default=False) as client:
            yield client
    finally:
        cluster.close()
