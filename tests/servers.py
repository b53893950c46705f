"""Real servers for integration tests: a moto S3 server (and a proxy that gives it
latency) and a Dask cluster.

Both run as separate processes on 127.0.0.1 (never mocks inside the test
process), are bounded in time, and are stopped by the fixtures that start them.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

S3_KEY = "testing-key"
S3_SECRET = "testing-secret"
S3_REGION = "us-east-1"


@contextmanager
def sigint_as_in_a_terminal():
    """Processes started inside get SIGINT's default action, as under a terminal.

    A shell that starts a job in the background without job control starts it
    with SIGINT ignored, and ``exec`` keeps an ignored signal ignored: a Ctrl-C
    test run that way would send a signal nobody receives.  A handled signal
    is reset to its default by ``exec``, so the parent handles it meanwhile.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    """Wait until something listens on ``127.0.0.1:port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def stop(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Terminate a process group politely, then kill it."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout)


def _bin(name: str) -> str:
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else (shutil.which(name) or name)


def s3_env(endpoint: str) -> dict[str, str]:
    """Environment that points boto/s3fs at the moto server."""
    return {
        "AWS_ACCESS_KEY_ID": S3_KEY,
        "AWS_SECRET_ACCESS_KEY": S3_SECRET,
        "AWS_DEFAULT_REGION": S3_REGION,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ENDPOINT_URL_S3": endpoint,
    }


@contextmanager
def moto_server():
    """Run ``moto_server`` on a free port; yields ``(endpoint, storage_options)``."""
    port = free_port()
    proc = subprocess.Popen(
        [_bin("moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_port(port, 30, proc)
        endpoint = f"http://127.0.0.1:{port}"
        options = {
            "key": S3_KEY,
            "secret": S3_SECRET,
            "client_kwargs": {"endpoint_url": endpoint, "region_name": S3_REGION},
        }
        yield endpoint, options
    finally:
        stop(proc)


class S3Requests(logging.Handler):
    """The S3 requests s3fs makes inside a ``with`` block, from its debug log.

    ``heads`` counts ``head_object`` calls; ``gets`` lists each
    ``get_object`` as ``(start, end)``, ``end`` exclusive, or ``(0, None)``
    for a whole object.
    """

    _range = re.compile(r"'Range': 'bytes=(\d+)-(\d+)'")

    def __init__(self):
        super().__init__()
        self.heads, self.gets = 0, []
        self._logger = logging.getLogger("s3fs")

    def emit(self, record):
        text = record.getMessage()
        if text.startswith("CALL: head_object"):
            self.heads += 1
        elif text.startswith("CALL: get_object"):
            m = self._range.search(text)
            self.gets.append((int(m[1]), int(m[2]) + 1) if m else (0, None))

    def __enter__(self):
        self._level = self._logger.level
        self._logger.setLevel(logging.DEBUG)  # setLevel, not .level: it clears the logger's cache
        self._logger.addHandler(self)
        return self

    def __exit__(self, *exc):
        self._logger.removeHandler(self)
        self._logger.setLevel(self._level)


@contextmanager
def latency_proxy(endpoint: str, options: dict, delay_s: float):
    """Put a proxy that delays each request by ``delay_s`` before ``endpoint``.

    Yields the storage options that reach ``endpoint`` through it (a copy of
    ``options`` with another endpoint URL); see :mod:`tests.latency_proxy`.
    """
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.latency_proxy", str(port),
         endpoint.rsplit(":", 1)[1], str(delay_s)],
        cwd=str(Path(__file__).resolve().parents[1]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_port(port, 30, proc)
        client = dict(options.get("client_kwargs", {}), endpoint_url=f"http://127.0.0.1:{port}")
        yield dict(options, client_kwargs=client)
    finally:
        stop(proc)


@contextmanager
def dask_cluster(n_workers: int = 2, nthreads: int = 1, memory_limit: str = "2GiB", env=None):
    """Start ``dask scheduler`` and ``n_workers`` ``dask worker`` processes.

    The commands are the ones the compose deployment runs (see
    ``deploy/compose/docker-compose.yml``), with the host names replaced by
    127.0.0.1.  Yields ``(address, workers)`` where ``workers`` is the list of
    worker :class:`subprocess.Popen` objects (a test may kill one).
    """
    from tests.deploy_commands import scheduler_command, worker_command

    port, dash = free_port(), free_port()
    penv = dict(os.environ)
    penv.update(env or {})
    penv.setdefault("PYTHONPATH", str(Path(__file__).resolve().parents[1]))
    sched = subprocess.Popen(
        scheduler_command(host="127.0.0.1", port=port, dashboard_port=dash, dask=_bin("dask")),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=penv,
    )
    workers: list[subprocess.Popen] = []
    address = f"tcp://127.0.0.1:{port}"
    try:
        wait_port(port, 60, sched)
        for i in range(n_workers):
            workers.append(
                subprocess.Popen(
                    worker_command(
                        address,
                        nthreads=nthreads,
                        memory_limit=memory_limit,
                        name=f"worker-{i}",
                        host="127.0.0.1",
                        dask=_bin("dask"),
                    ),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                    env=penv,
                )
            )
        from distributed import Client

        with Client(address, timeout=60) as c:
            c.wait_for_workers(n_workers, timeout=120)
        yield address, workers
    finally:
        for w in workers:
            stop(w)
        stop(sched)


def make_bucket(endpoint: str, name: str) -> None:
    """Create an S3 bucket on the moto server at ``endpoint``."""
    import boto3

    boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=S3_KEY,
        aws_secret_access_key=S3_SECRET,
        region_name=S3_REGION,
    ).create_bucket(Bucket=name)


def upload_tree(options: dict, local: str | Path, url: str) -> None:
    """Copy a local folder to ``s3://bucket/prefix`` through s3fs."""
    import s3fs

    fs = s3fs.S3FileSystem(**options)
    root = Path(local)
    for path in sorted(root.rglob("*")):
        if path.is_file():
            fs.put_file(str(path), f"{url.rstrip('/')}/{path.relative_to(root).as_posix()}")


@contextmanager
def closed_current_client():
    """A closed Dask client (and its stopped in-process cluster) left as the current client.

    Inside, :func:`distributed.default_client` answers that client, whose
    event loop is gone: a run that tracks its futures on the current client's
    loop, instead of on its own client's, hangs there.
    """
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                           dashboard_address=":0")
    client = Client(cluster)
    with client.as_current():
        client.close()
        cluster.close()
        yield client


def call_in_this_context(fn, timeout: float = 30.0):
    """``fn()`` in a thread that sees this thread's context variables: ``(True, result)``.

    ``(False, None)`` when it has not returned within ``timeout`` seconds
    (the thread is a daemon and is left behind); what ``fn`` raises is raised here.
    """
    import contextvars
    import threading

    out, raised = [], []
    ctx = contextvars.copy_context()  # carries distributed's current client

    def target():
        try:
            out.append(ctx.run(fn))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            raised.append(exc)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    if raised:
        raise raised[0]
    return (True, out[0]) if out else (False, None)
