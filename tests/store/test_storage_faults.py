"""Storage faults end in one line with exit 2, after bounded retries (:mod:`emodist.store.faults`).

Each fault is real: a moto S3 server (started, killed mid-run), an S3
endpoint where nothing listens, no credentials anywhere, a store folder
deleted while the run writes it, and a small tmpfs that is full while the
store layout is written (mounted where this machine allows it).  Every run is
the ``emodist`` command in its own process, as a user runs it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from emodist.engine.extract import run_extract
from emodist.errors import EmodistError, StoreError
from emodist.features import make_groups
from emodist.spec import ExtractionSpec, Runtime
from emodist.store import open_store
from emodist.store.faults import DEADLINE_ENV, storage_deadline, storage_error, transient
from tests.servers import (
    S3_KEY,
    S3_REGION,
    S3_SECRET,
    _bin,
    free_port,
    make_bucket,
    stop,
    wait_port,
)

REPO = Path(__file__).resolve().parents[2]
SPEC = ExtractionSpec(groups=make_groups(["handcrafted"]), segment_seconds=4.0)
EXTRACT = ["--features", "handcrafted", "--segment-seconds", "4", "--chunk-segments", "2",
           "--workers", "1", "--threads-per-worker", "1", "--quiet"]


@pytest.fixture(scope="module")
def dataset(demo_data) -> Path:
    return demo_data(10, 3, 12.0)


def clean_env(**extra) -> dict:
    """This environment without AWS settings (and nothing that finds credentials elsewhere)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(PYTHONPATH=str(REPO), AWS_SHARED_CREDENTIALS_FILE="/nonexistent",
               AWS_CONFIG_FILE="/nonexistent", AWS_EC2_METADATA_DISABLED="true")
    env.pop(DEADLINE_ENV, None)
    env.update(extra)
    return env


def emodist(args, *, env, cwd, timeout=600) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "emodist", *map(str, args)], env=env,
                          cwd=str(cwd), capture_output=True, text=True, timeout=timeout,
                          check=False)
    return done, time.monotonic() - t0


def error_line(done: subprocess.CompletedProcess) -> str:
    """The one ``emodist: error:`` line of a failed run: its last line, nothing unexpected.

    Lines that the Dask workers of the local cluster log (a chunk task that
    failed) are not the driver's and are not counted here.
    """
    err = done.stderr
    assert done.returncode == 2, err[-3000:]
    assert "emodist: unexpected" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith("emodist")]
    assert len(lines) == 1 and lines[0].startswith("emodist: error:"), err[-3000:]
    assert err.rstrip().splitlines()[-1] == lines[0], err[-3000:]
    driver = [line for line in err.splitlines()
              if line.strip() and not _worker_log(line)]
    assert driver[-1] == lines[0], err[-3000:]
    return lines[0]


def _worker_log(line: str) -> bool:
    return " - distributed." in line or line.startswith(("Key:", "State:", "Task:", "Exception:",
                                                         "Traceback:", "  "))


def s3_options(endpoint: str, **config) -> dict:
    return {"key": S3_KEY, "secret": S3_SECRET,
            "client_kwargs": {"endpoint_url": endpoint, "region_name": S3_REGION},
            "config_kwargs": {"connect_timeout": 1, "read_timeout": 2,
                              "retries": {"max_attempts": 1}, **config}}


class Moto:
    """A moto server process of our own (a test stops it for good mid-run)."""

    def __enter__(self):
        self.port = free_port()
        self.proc = subprocess.Popen([_bin("moto_server"), "-H", "127.0.0.1", "-p",
                                      str(self.port)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        wait_port(self.port, 30, self.proc)
        self.endpoint = f"http://127.0.0.1:{self.port}"
        return self

    def __exit__(self, *exc):
        stop(self.proc)


def test_deadline_and_classes(monkeypatch):
    monkeypatch.delenv(DEADLINE_ENV, raising=False)
    assert storage_deadline() == 60.0
    monkeypatch.setenv(DEADLINE_ENV, "2.5")
    assert storage_deadline() == 2.5
    monkeypatch.setenv(DEADLINE_ENV, "-1")
    with pytest.raises(EmodistError, match="above 0"):
        storage_deadline()
    from emodist.cli.common import DEADLINE_ENV as CLI_ENV

    assert CLI_ENV == DEADLINE_ENV
    # what is retried and what is not
    assert transient(ConnectionRefusedError(111, "refused"))
    assert not transient(OSError(28, "No space left on device"))
    assert not transient(PermissionError(13, "denied"))
    line = storage_error(OSError(30, "Read-only file system"), "s.zarr")
    assert "read-only" in str(line) and "permission" not in str(line)
    assert "no space left" in str(storage_error(OSError(28, "No space"), "s.zarr"))
    assert storage_error(ValueError("a bug"), "s.zarr") is None


@pytest.mark.s3
def test_no_credentials_is_one_line(tmp_path, dataset):
    with Moto() as moto:
        make_bucket(moto.endpoint, "features")
        options = {"client_kwargs": {"endpoint_url": moto.endpoint, "region_name": S3_REGION}}
        done, _ = emodist(["extract", dataset, "--store", "s3://features/s.zarr",
                           "--storage-options", json.dumps(options), *EXTRACT],
                          env=clean_env(), cwd=tmp_path)
    line = error_line(done)
    assert "s3://features/s.zarr: no credentials" in line and "--storage-options" in line, line


@pytest.mark.s3
def test_unreachable_endpoint_is_one_line_within_the_deadline(tmp_path, dataset, monkeypatch):
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    options = s3_options(endpoint)
    done, _ = emodist(["extract", dataset, "--store", "s3://features/s.zarr",
                       "--storage-options", json.dumps(options), "--storage-deadline", "3",
                       *EXTRACT], env=clean_env(), cwd=tmp_path)
    line = error_line(done)
    assert "cannot reach the store for 3 s" in line and "--storage-deadline" in line, line
    done, _ = emodist(["verify", "s3://features/s.zarr", "--storage-options", json.dumps(options),
                       "--storage-deadline", "1"], env=clean_env(), cwd=tmp_path)
    assert "cannot reach the store for 1 s" in error_line(done)
    # the deadline bounds the wait: measured in this process, without the start-up
    monkeypatch.setenv(DEADLINE_ENV, "2")
    t0 = time.monotonic()
    with pytest.raises(StoreError, match="cannot reach the store for 2 s") as info:
        run_extract(str(dataset), "s3://features/t.zarr", SPEC,
                    Runtime(progress=False, n_workers=1, threads_per_worker=1,
                            storage={"store": options}))
    waited = time.monotonic() - t0
    assert len(str(info.value).splitlines()) == 1
    assert 2 <= waited < 2 + 10, waited  # retried for the deadline, then one attempt


def first_chunk_then(fs_exists, action, timeout=300.0) -> threading.Thread:
    """A thread that runs ``action`` once the first chunk of values exists."""
    def watch():
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if fs_exists():
                    action()
                    return
            except Exception:  # noqa: BLE001, S110 - the store is being made
                pass
            time.sleep(0.02)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.mark.s3
def test_s3_server_lost_for_good_mid_run_is_chunks_did_not_finish(tmp_path, dataset):
    import s3fs

    with Moto() as moto:
        make_bucket(moto.endpoint, "features")
        options = s3_options(moto.endpoint)
        fs = s3fs.S3FileSystem(**options)

        def written():
            fs.invalidate_cache()
            return bool(fs.find("features/s.zarr/handcrafted/c"))

        killed = {}
        watcher = first_chunk_then(written, lambda: killed.setdefault("at", stop(moto.proc)))
        done, took = emodist(["extract", dataset, "--store", "s3://features/s.zarr",
                              "--storage-options", json.dumps(options),
                              "--storage-deadline", "2", *EXTRACT],
                             env=clean_env(), cwd=tmp_path)
        watcher.join(5)
    assert "at" in killed, done.stderr[-2000:]
    line = error_line(done)
    assert " chunks did not finish (chunk " in line and "rerun the same command" in line, line
    n, m = (int(x) for x in line.split("emodist: error: ")[1].split(" chunks")[0].split(" of "))
    assert 1 <= n <= m == 15, line  # the chunks from the one written on: none was kept
    assert took < 240, took


def test_store_deleted_mid_run_is_one_line_and_rerun_rebuilds(tmp_path, dataset):
    store = tmp_path / "s.zarr"
    watcher = first_chunk_then(lambda: (store / "handcrafted" / "c").exists(),
                               lambda: shutil.rmtree(store, ignore_errors=True))
    done, _ = emodist(["extract", dataset, "--store", store, *EXTRACT], env=clean_env(),
                      cwd=tmp_path)
    watcher.join(5)
    line = error_line(done)
    assert "the store was deleted while this run wrote it" in line, line
    again, _ = emodist(["extract", dataset, "--store", store, *EXTRACT], env=clean_env(),
                       cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    ds = open_store(store)
    assert (ds["handcrafted_status"].values == 1).all() and ds.sizes["segment"] == 30


@contextlib.contextmanager
def tmpfs(where: Path, options: str):
    """A tmpfs mounted at ``where`` (skipped, with the reason, where this machine cannot mount one)."""
    where.mkdir()
    got = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                         capture_output=True, text=True, check=False)
    if got.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {got.stderr.strip() or got.returncode}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.fixture()
def small_disk(tmp_path):
    """A 1 MiB tmpfs."""
    with tmpfs(tmp_path / "disk", "size=1m") as where:
        yield where


def test_disk_full_while_the_layout_is_written_then_rerun_completes(tmp_path, dataset,
                                                                      small_disk):
    filler = small_disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)  # fill it, then leave 12 KiB: the lock
    try:                                             # fits, the layout does not
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    os.truncate(filler, os.path.getsize(filler) - 12 * 1024)
    store = small_disk / "s.zarr"
    done, _ = emodist(["extract", dataset, "--store", store, *EXTRACT], env=clean_env(),
                      cwd=tmp_path)
    line = error_line(done)
    assert f"{store}: no space left on the device" in line, line
    filler.unlink()
    again, _ = emodist(["extract", dataset, "--store", store, *EXTRACT], env=clean_env(),
                       cwd=tmp_path)  # no --overwrite
    assert again.returncode == 0, again.stderr[-2000:]
    ref = tmp_path / "ref.zarr"
    run_extract(str(dataset), str(ref), SPEC, Runtime(progress=False, chunk=2, n_workers=1,
                                                      threads_per_worker=1))
    got, want = open_store(store), open_store(ref)
    for name in ("segment", "track_id", "start_s", "handcrafted_status", "handcrafted"):
        np.testing.assert_array_equal(got[name].values, want[name].values, err_msg=name)


def test_read_only_file_system_says_read_only(tmp_path, dataset):
    with tmpfs(tmp_path / "ro", "ro,size=64k") as where:
        done, _ = emodist(["extract", dataset, "--store", where / "s.zarr", *EXTRACT],
                          env=clean_env(), cwd=tmp_path)
    line = error_line(done)
    assert "the file system is read-only" in line and "permission" not in line, line
