"""One writer per store: the lease object of :mod:`emodist.store.lock`.

Two real ``emodist extract`` processes on one new store, stale and foreign
locks, ``--break-lock``, readers told of a writer; the same on a moto S3
server.  Every extraction writes the handcrafted group of a small generated
Emotify-layout dataset.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from emodist.cli import main
from emodist.engine.extract import run_extract
from emodist.errors import StoreError
from emodist.features import make_groups
from emodist.spec import ExtractionSpec, Runtime
from emodist.store import lock as store_lock
from emodist.store import open_store
from emodist.store.zarrio import LOCK_NAME
from tests.servers import make_bucket, moto_server

REPO = Path(__file__).resolve().parents[2]
SPEC = ExtractionSpec(groups=make_groups(["handcrafted"]), segment_seconds=4.0)
EXTRACT = ["--features", "handcrafted", "--segment-seconds", "4", "--chunk-segments", "2",
           "--quiet"]


def rt(**kw) -> Runtime:
    return Runtime(progress=False, batch_size=4, chunk=2, n_workers=1, threads_per_worker=1,
                   **kw)


@pytest.fixture(scope="module")
def dataset(demo_data) -> Path:
    return demo_data(6, 2, 12.0)


def foreign_lease(*, age_s: float = 0.0, host: str = "another-host", pid: int = 4242,
                  lease_s: float = 60.0) -> dict:
    now = time.time()
    return {"run_id": "f" * 32, "host": host, "pid": pid, "command": "extract",
            "started": now - age_s - 1, "heartbeat": now - age_s, "lease_s": lease_s}


def put_lock(store: Path, lease: dict) -> None:
    store.mkdir(parents=True, exist_ok=True)
    (store / LOCK_NAME).write_text(json.dumps(lease))


def assert_same_store(url, ref, storage_options=None):
    got, want = open_store(url, storage_options), open_store(ref)
    for name in ("segment", "track_id", "start_s", "handcrafted_status"):
        np.testing.assert_array_equal(got[name].values, want[name].values, err_msg=name)
    np.testing.assert_array_equal(got["handcrafted"].values, want["handcrafted"].values)


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("emodist: error:")]


def test_second_extract_process_is_refused_while_the_first_writes(tmp_path, dataset):
    """Two ``emodist extract`` processes, other specs, one new store: one line, exit 2."""
    url = tmp_path / "s.zarr"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    first = subprocess.Popen([sys.executable, "-m", "emodist", "extract", str(dataset),
                              "--store", str(url), "--workers", "1", "--threads-per-worker", "1",
                              *EXTRACT], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env, cwd=str(tmp_path))
    try:
        deadline = time.time() + 120
        while not (url / LOCK_NAME).exists():
            assert first.poll() is None, first.communicate()
            assert time.time() < deadline, "the first run never took the lock"
            time.sleep(0.05)
        second = subprocess.run([sys.executable, "-m", "emodist", "extract", str(dataset),
                                 "--store", str(url), "--features", "handcrafted",
                                 "--segment-seconds", "3", "--quiet"],
                                capture_output=True, text=True, env=env, cwd=str(tmp_path),
                                timeout=300, check=False)
        assert first.poll() is None, "the first run ended before the second was refused"
        _out, err = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            first.kill()
    assert second.returncode == 2, second.stderr
    lines = error_lines(second.stderr)
    assert len(lines) == 1 and "Traceback" not in second.stderr, second.stderr
    assert lines[0].startswith("emodist: error: --store: ")
    assert f"pid {first.pid}" in lines[0] and "being written" in lines[0], lines[0]
    assert first.returncode == 0, err
    assert not (url / LOCK_NAME).exists()  # released
    ref = tmp_path / "solo.zarr"
    run_extract(str(dataset), str(ref), SPEC, rt())
    assert_same_store(str(url), str(ref))


def test_stale_lock_is_taken_over_with_a_log_line(tmp_path, dataset, caplog):
    url = tmp_path / "s.zarr"
    put_lock(url, foreign_lease(age_s=3600))
    with caplog.at_level("WARNING", logger="emodist"):
        result = run_extract(str(dataset), str(url), SPEC, rt())
    assert result.n_done == result.n_segments > 0
    took = [r.getMessage() for r in caplog.records if "taking over the lock" in r.getMessage()]
    assert len(took) == 1 and "another-host" in took[0] and "stale" in took[0], took
    assert not (url / LOCK_NAME).exists()


def test_lock_of_a_dead_process_on_this_host_is_stale(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    url = tmp_path / "s.zarr"
    put_lock(url, foreign_lease(host=socket.gethostname(), pid=dead.pid))
    assert store_lock.read_lock(str(url)).stale()
    with store_lock.acquire(str(url)) as held:
        assert store_lock.read_lock(str(url)).run_id == held.lease.run_id


def test_live_foreign_lock_refuses_then_break_lock_takes_over(tmp_path, dataset, capsys):
    url = tmp_path / "s.zarr"
    put_lock(url, foreign_lease())
    argv = ["extract", str(dataset), "--store", str(url), "--workers", "1", *EXTRACT]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert error_lines(err) == [err.strip()], err
    assert "another-host (pid 4242" in err and "--break-lock" in err
    assert not (url / "zarr.json").exists()  # nothing written
    assert main(argv + ["--break-lock"]) == 0
    out, err = capsys.readouterr()
    assert "taking over the lock" in err and "--break-lock" in err
    assert "wrote" in out
    assert not (url / LOCK_NAME).exists()
    assert open_store(str(url))["handcrafted_status"].values.min() == 1


def test_readers_say_a_store_is_being_written_and_still_read(tmp_path, dataset, capsys):
    url = tmp_path / "s.zarr"
    run_extract(str(dataset), str(url), SPEC, rt())
    put_lock(url, foreign_lease())
    store_lock._NOTED.clear()
    assert main(["info", str(url)]) == 0
    out, err = capsys.readouterr()
    assert "segments" in out
    notes = [line for line in err.splitlines() if "being written" in line]
    assert len(notes) == 1 and "another-host (pid 4242" in notes[0], err
    store_lock._NOTED.clear()
    assert main(["verify", str(url)]) == 0
    assert "being written" in capsys.readouterr().err


def test_heartbeat_refreshes_and_a_takeover_is_noticed(tmp_path):
    url = str(tmp_path / "s.zarr")
    held = store_lock.acquire(url, lease_s=1.0)
    first = held.lease.heartbeat
    time.sleep(0.8)
    assert store_lock.read_lock(url).heartbeat > first  # refreshed every lease / 4
    intruder = store_lock.acquire(url, break_lock=True)
    time.sleep(0.8)
    with pytest.raises(StoreError, match="another run took the store over"):
        held.release()
    assert store_lock.read_lock(url).run_id == intruder.lease.run_id
    intruder.release()
    assert store_lock.read_lock(url) is None


def race(url, options=None, n=6) -> list:
    """``n`` threads take the lock of ``url`` at once; the outcomes."""
    barrier, outcomes = threading.Barrier(n), []

    def take():
        barrier.wait()
        try:
            outcomes.append(store_lock.acquire(url, options, lease_s=30))
        except StoreError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=take) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return outcomes


def test_simultaneous_takers_one_wins_local(tmp_path):
    outcomes = race(str(tmp_path / "s.zarr"))
    held = [o for o in outcomes if isinstance(o, store_lock.StoreLock)]
    assert len(held) == 1 and len(outcomes) == 6
    assert all("being written" in str(o) for o in outcomes if isinstance(o, StoreError))
    held[0].release()


@pytest.mark.s3
def test_lock_on_s3(tmp_path, dataset, capsys):
    with moto_server() as (endpoint, options):
        make_bucket(endpoint, "emodist")
        url = "s3://emodist/stores/s.zarr"
        outcomes = race(url, options)
        held = [o for o in outcomes if isinstance(o, store_lock.StoreLock)]
        assert len(held) == 1, outcomes
        with pytest.raises(StoreError, match=r"being written by emodist extract on .*pid"):
            store_lock.acquire(url, options)
        # a second writer is refused in one line by the command
        so = json.dumps(options)
        argv = ["extract", str(dataset), "--store", url, "--storage-options", so, "--workers",
                "1", "--threads-per-worker", "1", *EXTRACT]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert error_lines(err) == [err.strip()] and f"pid {os.getpid()}" in err, err
        held[0].release()
        assert store_lock.read_lock(url, options) is None
        # a stale lock is taken over; the run completes and releases it
        import s3fs

        fs = s3fs.S3FileSystem(**options)
        fs.pipe_file(f"{url}/{LOCK_NAME}", json.dumps(foreign_lease(age_s=600)).encode())
        assert main(argv) == 0
        assert "taking over the lock" in capsys.readouterr().err
        assert store_lock.read_lock(url, options) is None
        # a live one only with --break-lock
        fs.pipe_file(f"{url}/{LOCK_NAME}", json.dumps(foreign_lease()).encode())
        assert main(argv) == 2
        assert "another-host" in capsys.readouterr().err
        assert main(argv + ["--break-lock"]) == 0
        ref = tmp_path / "ref.zarr"
        run_extract(str(dataset), str(ref), SPEC, rt())
        assert_same_store(url, str(ref), options)
