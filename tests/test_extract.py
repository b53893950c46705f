"""Extraction into a feature store on real Dask clusters, local files and S3.

Every run uses a small generated Emotify-layout dataset (8 tracks of 12 s,
4 s segments, 24 segments in chunks of 2) and the tiny ONNX model; the first
run, on an in-process cluster, is the reference every other run must equal.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from emodist.store import layout as schema
from emodist.store import zarrio as st
from emodist.spec import Config
from emodist.errors import ClusterError, DataError, StoreError
from emodist.engine.extract import (
    ChunkTask,
    apply_thread_budget,
    compute_chunk,
    plan_failures,
    run_extract,
    segment_votes,
    track_spans,
)

REPO = Path(__file__).resolve().parents[1]
CHUNK = 2


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory) -> Path:
    from emodist.data.demo import make_demo_dataset

    out = tmp_path_factory.mktemp("extract") / "dataset"
    make_demo_dataset(out, n_tracks=8, seed=1, duration_s=12.0)
    return out


@pytest.fixture(scope="module")
def config() -> Config:
    return Config(segment_seconds=4.0, hop_seconds=4.0, batch_size=4)


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                      dashboard_address=":0") as cluster, Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def reference(tmp_path_factory, small_dataset, config, tiny_model, client):
    url = str(tmp_path_factory.mktemp("ref") / "ref.zarr")
    result = run_extract(str(small_dataset), url, config, model=tiny_model, client=client,
                         chunk=CHUNK, progress=False)
    return url, result


def assert_same_store(url, ref_url, storage_options=None, paths=True):
    got = st.open_store(url, storage_options)
    ref = st.open_store(ref_url)
    assert list(got["segment_id"].values) == list(ref["segment_id"].values)
    for name in ("track_id", "label", "genre", "group", "segment_index", "start_s"):
        assert list(got[name].values) == list(ref[name].values), name
    if paths:
        assert list(got["path"].values) == list(ref["path"].values)
    np.testing.assert_array_equal(got[schema.STATUS].values, ref[schema.STATUS].values)
    np.testing.assert_array_equal(got[schema.VOTES].values, ref[schema.VOTES].values)
    np.testing.assert_allclose(got[schema.HANDCRAFTED].values, ref[schema.HANDCRAFTED].values,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[schema.DEEP].values, ref[schema.DEEP].values,
                               rtol=1e-4, atol=1e-5)
    assert got.attrs["config"] == ref.attrs["config"]
    assert got[schema.DEEP].chunks == ref[schema.DEEP].chunks


# ----------------------------------------------------------------- pure helpers


def test_track_spans_groups_and_spans():
    rows = [("a", "pa", 0.0, 4.0), ("a", "pa", 4.0, 4.0), ("b", "pb", 8.0, 4.0),
            ("b", "pb", 12.0, 3.0)]
    spans = track_spans(rows)
    assert spans == [("a", "pa", 0.0, 8.0, [0, 1]), ("b", "pb", 8.0, 7.0, [2, 3])]
    assert track_spans([]) == []


def test_segment_votes_follow_segments():
    import pandas as pd

    votes = pd.DataFrame(np.eye(9)[:2], index=["1", "2"], columns=list(schema.GEMS))
    table = pd.DataFrame({"track_id": ["2", "2", "1"]})
    got = segment_votes(table, votes)
    assert got.dtype == np.float32 and got.shape == (3, 9)
    np.testing.assert_array_equal(got[0], np.eye(9)[1])
    np.testing.assert_array_equal(got[2], np.eye(9)[0])
    assert segment_votes(table, None) is None


def test_plan_failures_records():
    assert plan_failures([("7", "/x/7.mp3", "empty")]) == [
        {"track_id": "7", "path": "/x/7.mp3", "error": "empty"}]


def test_apply_thread_budget_limits_blas():
    from threadpoolctl import threadpool_info

    assert apply_thread_budget(1) == 1
    pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    assert all(p["num_threads"] == 1 for p in pools)
    assert apply_thread_budget(0) == 1


def test_compute_chunk_one_decode_failure(tmp_path, small_dataset, config, tiny_model):
    """A track that cannot be decoded fails alone; the chunk's other track is computed."""
    from emodist.models.session import read_sidecar

    good = min((small_dataset / "emotifymusic").rglob("*.mp3"))
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(b"ID3" + os.urandom(4000))
    side = read_sidecar(tiny_model)
    cfg = config.replace(model_sha256=side["sha256"], image_size=side["image_size"])
    rows = (("g", str(good), 0.0, 4.0), ("g", str(good), 4.0, 4.0), ("x", str(bad), 0.0, 4.0))
    task = ChunkTask(store="unused", chunk=0, start=0, stop=3, rows=rows, config=cfg,
                     model=tiny_model, deep_dim=side["output_dim"])
    values, status, failures = compute_chunk(task)
    assert list(status) == [1, 1, -1]
    assert [f["track_id"] for f in failures] == ["x"]
    assert str(bad) in failures[0]["path"] and failures[0]["error"]
    hc, deep = values[schema.HANDCRAFTED], values[schema.DEEP]
    assert np.isfinite(hc[:2]).all() and np.isnan(hc[2]).all()
    assert np.isfinite(deep[:2]).all() and np.isnan(deep[2]).all()
    assert deep.shape == (3, side["output_dim"])
    # the two segments of the same track differ (different audio)
    assert not np.allclose(hc[0], hc[1])


# ----------------------------------------------------------------- in-process cluster


def test_reference_store_complete(reference, small_dataset, config, tiny_model):
    url, result = reference
    assert result.n_segments == 24 and result.n_done == 24 and result.n_failed == 0
    assert result.n_written == 24 and result.n_chunks == 12 and not result.resumed
    ds = st.open_store(url)
    assert (ds[schema.STATUS].values == schema.STATUS_DONE).all()
    assert np.isfinite(ds[schema.HANDCRAFTED].values).all()
    assert np.isfinite(ds[schema.DEEP].values).all()
    assert ds[schema.DEEP].chunks[0] == (CHUNK,) * 12
    stored = Config.from_json(ds.attrs["config"])
    from emodist.models.session import read_sidecar

    assert stored.model_sha256 == read_sidecar(tiny_model)["sha256"] == ds.attrs["model_sha256"]
    assert stored.segment_seconds == 4.0
    from emodist.features import handcrafted

    assert ds.attrs["feature_names_version"] == handcrafted.FEATURE_NAMES_VERSION
    assert list(ds["handcrafted_feature"].values) == handcrafted.feature_names("full")
    assert st.failures(ds) == []
    from emodist.data.audio import cut, load_track
    from emodist.features.spectral import analyse

    # each row holds its own segment's features: recompute segment 5 the way
    # chunk 2 (segments 4 and 5, one track) does, from one decode of its span
    k = 5
    row = ds.isel(segment=k)
    rows = [(str(ds.track_id.values[i]), str(ds.path.values[i]), float(ds.start_s.values[i]),
             float(ds.duration_s.values[i])) for i in (4, 5)]
    (_, path, offset, duration, _), = track_spans(rows)
    y = load_track(path, config.sr, duration_s=offset + duration)
    seg = cut(y, config.sr, rows[1][2], rows[1][3])
    vec = handcrafted.extract(analyse(seg, config.sr, config), "full")
    np.testing.assert_allclose(ds[schema.HANDCRAFTED].values[k], vec, rtol=1e-6)
    # votes follow the catalog
    from emodist.data.catalog import load_dataset

    cat = load_dataset(str(small_dataset))
    tid = str(row.track_id.values)
    np.testing.assert_allclose(ds[schema.VOTES].values[k],
                               cat.votes.loc[tid, list(schema.GEMS)].to_numpy(), rtol=1e-6)


def test_rerun_on_complete_store_does_nothing(reference, small_dataset, config, tiny_model,
                                             client):
    url, _ = reference
    chunk_file = Path(url) / "deep" / "c" / "0" / "0"
    before = chunk_file.stat().st_mtime_ns
    result = run_extract(str(small_dataset), url, config, model=tiny_model, client=client,
                         progress=False)
    assert result.already_complete and result.n_written == 0 and result.n_done == 24
    assert chunk_file.stat().st_mtime_ns == before


def test_different_config_refused_then_overwrite(tmp_path, reference, small_dataset, config,
                                                tiny_model, client):
    url, _ = reference
    with pytest.raises(StoreError, match="segment_seconds=4.0, not 3.0"):
        run_extract(str(small_dataset), url, config.replace(segment_seconds=3.0, hop_seconds=3.0),
                    model=tiny_model, client=client, progress=False)
    with pytest.raises(StoreError, match="features"):
        run_extract(str(small_dataset), url, config.replace(features=("handcrafted",)),
                    client=client, progress=False)
    copy = str(tmp_path / "copy.zarr")
    shutil.copytree(url, copy)
    result = run_extract(str(small_dataset), copy, config.replace(features=("handcrafted",)),
                         client=client, progress=False, overwrite=True, chunk=12)
    assert result.n_done == 24 and not result.resumed
    ds = st.open_store(copy)
    assert schema.DEEP not in ds and ds[schema.HANDCRAFTED].chunks[0] == (12, 12)
    np.testing.assert_allclose(ds[schema.HANDCRAFTED].values[:2],
                               st.open_store(url)[schema.HANDCRAFTED].values[:2], rtol=1e-5)


def test_corrupt_and_empty_files_recorded(tmp_path, small_dataset, config, tiny_model, client):
    data = tmp_path / "dataset"
    shutil.copytree(small_dataset, data)
    files = sorted((data / "emotifymusic").rglob("*.mp3"))
    files[0].write_bytes(b"ID3\x04\x00\x00\x00\x00\x00\x00" + os.urandom(3000))  # corrupt mp3
    files[1].write_bytes(b"")  # empty file
    head = files[2].read_bytes()  # valid header, then zeros: planned, fails to decode
    files[2].write_bytes(head[:3000] + bytes(len(head) - 3000))
    url = str(tmp_path / "s.zarr")
    result = run_extract(str(data), url, config, model=tiny_model, client=client,
                         chunk=CHUNK, progress=False)
    failed_paths = sorted(f["path"] for f in result.failures)
    assert failed_paths == sorted(str(f) for f in files[:3])
    assert all(f["error"] for f in result.failures)
    ds = st.open_store(url)
    assert ds.sizes["segment"] == 18  # 6 planned tracks x 3 segments
    assert result.n_done == 15 and result.n_failed == 3  # the five good tracks complete
    bad = ds["path"].values == str(files[2])
    assert (ds[schema.STATUS].values[bad] == schema.STATUS_FAILED).all()
    assert (ds[schema.STATUS].values[~bad] == schema.STATUS_DONE).all()
    assert np.isnan(ds[schema.HANDCRAFTED].values[bad]).all()
    assert np.isfinite(ds[schema.HANDCRAFTED].values[~bad]).all()
    assert sorted(f["path"] for f in st.failures(ds)) == failed_paths
    # a driver killed before recording a chunk's failures: the rerun redoes that chunk
    st.finish_store(url, {"failures": "[]"})
    again = run_extract(str(data), url, config, model=tiny_model, client=client,
                        progress=False)
    assert again.resumed and 3 <= again.n_written < 18
    assert sorted(f["path"] for f in again.failures) == failed_paths
    assert run_extract(str(data), url, config, model=tiny_model, client=client,
                       progress=False).already_complete
    # the broken file is repaired: --retry-failed redoes its segments and drops its record
    files[2].write_bytes(head)
    fixed = run_extract(str(data), url, config, model=tiny_model, client=client,
                        progress=False, retry_failed=True)
    assert fixed.n_done == 18 and fixed.n_failed == 0
    assert sorted(f["path"] for f in fixed.failures) == sorted(str(f) for f in files[:2])
    assert np.isfinite(st.open_store(url)[schema.HANDCRAFTED].values).all()


def test_unreachable_scheduler_is_one_line(small_dataset, config, tmp_path):
    from tests.servers import free_port

    with pytest.raises(ClusterError, match="cannot reach scheduler"):
        run_extract(str(small_dataset), str(tmp_path / "s.zarr"),
                    config.replace(features=("handcrafted",)),
                    scheduler=f"tcp://127.0.0.1:{free_port()}", progress=False)


def test_empty_dataset_refused(tmp_path, config):
    (tmp_path / "empty.csv").write_text("path,label\n")
    with pytest.raises(DataError):
        run_extract(str(tmp_path / "empty.csv"), str(tmp_path / "s.zarr"),
                    config.replace(features=("handcrafted",)), progress=False)


# ----------------------------------------------------------------- command line


def test_cli_errors_exit_2(capsys, small_dataset, tmp_path):
    from emodist.cli import main
    from tests.servers import free_port

    base = ["extract", str(small_dataset), "--store", str(tmp_path / "s.zarr")]
    assert main(base + ["--features", "handcrafted,colour"]) == 2
    assert "unknown feature group 'colour'" in capsys.readouterr().err
    assert main(base + ["--storage-options", "{nope"]) == 2
    assert "--storage-options" in capsys.readouterr().err
    assert main(base + ["--features", "handcrafted",
                        "--scheduler", f"tcp://127.0.0.1:{free_port()}"]) == 2
    err = capsys.readouterr().err
    assert "cannot reach scheduler" in err and len(err.strip().splitlines()) == 1
    assert main(base + ["--scheduler", "tcp://127.0.0.1:1", "--workers", "2"]) == 2
    assert "local cluster" in capsys.readouterr().err


def test_cli_complete_store_says_so(capsys, reference, small_dataset, tiny_model, client):
    from emodist.cli import main

    url, _ = reference
    address = client.scheduler.address
    code = main(["extract", str(small_dataset), "--store", url, "--segment-seconds", "4",
                 "--batch-size", "4", "--model", tiny_model, "--scheduler", address,
                 "--no-progress"])
    assert code == 0
    assert "is complete: 24 of 24 segments done, 0 failed; nothing to do" in capsys.readouterr().out


# ----------------------------------------------------------------- real processes


def _status_counts(url):
    try:
        s = st.read_status(url)
    except Exception:  # noqa: BLE001 - store not created yet
        return 0, 0
    return int((s != 0).sum()), int((s == 0).sum())


@pytest.mark.cluster
def test_driver_killed_then_resumed(tmp_path, reference, small_dataset, tiny_model, client,
                                    config):
    """Kill ``emodist extract`` (driver and its local cluster) mid-run; rerun resumes."""
    url = str(tmp_path / "s.zarr")
    log = tmp_path / "stderr.txt"
    cmd = [sys.executable, "-m", "emodist", "extract", str(small_dataset), "--store", url,
           "--segment-seconds", "4", "--batch-size", "4", "--model", tiny_model,
           "--chunk-segments", str(CHUNK), "--workers", "1", "--threads-per-worker", "1"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env,
                                start_new_session=True)
        try:
            deadline = time.monotonic() + 120
            done = pending = 0
            while time.monotonic() < deadline and proc.poll() is None:
                done, pending = _status_counts(url)
                if done >= CHUNK:
                    break
                time.sleep(0.05)
            os.killpg(proc.pid, signal.SIGKILL)
        finally:
            proc.wait(30)
    assert done >= CHUNK and pending > 0, (done, pending, log.read_text()[-2000:])
    assert "dashboard:" in log.read_text()
    result = run_extract(str(small_dataset), url, config, model=tiny_model, client=client,
                         progress=False)
    assert result.resumed and not result.already_complete
    assert 0 < result.n_written <= 24 - done
    assert result.n_done == 24
    assert_same_store(url, reference[0])


@pytest.mark.cluster
def test_multiprocess_cluster_survives_killed_worker(tmp_path, reference, small_dataset,
                                                     tiny_model, config):
    """`dask scheduler` + two `dask worker` processes; one worker is killed mid-run."""
    from tests.servers import dask_cluster, stop

    url = str(tmp_path / "s.zarr")
    killed = []
    with dask_cluster(n_workers=2, nthreads=1) as (address, workers):

        def kill_first_worker(task, res, err):
            if not killed:
                stop(workers[0], timeout=5)
                killed.append(task.chunk)

        result = run_extract(str(small_dataset), url, config, model=tiny_model,
                             scheduler=address, chunk=CHUNK, progress=False,
                             on_result=kill_first_worker)
        assert workers[0].poll() is not None and workers[1].poll() is None
    assert killed and result.n_chunks == 12 and result.n_done == 24
    assert_same_store(url, reference[0])


@pytest.mark.s3
def test_s3_dataset_and_store_on_moto(reference, small_dataset, tiny_model, config, client):
    """Audio and store both on a moto S3 server, reached through storage options."""
    import s3fs

    from tests.servers import make_bucket, moto_server, upload_tree

    with moto_server() as (endpoint, options):
        make_bucket(endpoint, "audio")
        make_bucket(endpoint, "features")
        upload_tree(options, small_dataset, "s3://audio/emotify")
        url = "s3://features/run/store.zarr"
        result = run_extract("s3://audio/emotify", url, config, model=tiny_model, client=client,
                             storage_options=options, chunk=CHUNK, progress=False)
        assert result.n_done == 24 and result.failures == []
        assert_same_store(url, reference[0], options, paths=False)
        ds = st.open_store(url, options)
        assert all(p.startswith("s3://audio/emotify/") for p in ds["path"].values)
        # no credentials anywhere in the store's metadata
        fs = s3fs.S3FileSystem(**options)
        meta = " ".join(fs.cat_file(p).decode() for p in fs.find("features/run")
                        if p.endswith("zarr.json"))
        assert options["secret"] not in meta and options["key"] not in meta
        again = run_extract("s3://audio/emotify", url, config, model=tiny_model, client=client,
                            storage_options=options, progress=False)
        assert again.already_complete


@pytest.mark.emotify
def test_real_emotify_end_to_end(emotify_root, tmp_path, tiny_model):
    """The 100 shared Emotify tracks: 398 segments of 15 s, handcrafted + tiny deep."""
    url = str(tmp_path / "emotify.zarr")
    result = run_extract(str(emotify_root), url, Config(), model=tiny_model, n_workers=2,
                         threads_per_worker=1, progress=False)
    assert result.n_segments == 398 and result.n_done == 398 and result.failures == []
    ds = st.open_store(url)
    assert np.isfinite(ds[schema.HANDCRAFTED].values).all()
    assert np.isfinite(ds[schema.DEEP].values).all()
    assert ds.sizes["segment"] == 398
    assert (ds["segment_id"].values[:4] == np.array(["1:000", "1:001", "1:002", "1:003"])).all()
    labels = set(ds["label"].values)
    assert "amazement" not in labels and "calmness" in labels
    assert json.loads(ds.attrs["failures"]) == []


def test_redo_unrecorded_failures():
    from emodist.engine.extract import redo_unrecorded

    status = np.array([1, -1, -1, 0, -1], np.int8)
    tracks = np.array(["a", "b", "b", "c", "d"])
    got = redo_unrecorded(status, tracks, [{"track_id": "b", "path": "p", "error": "x"}])
    assert list(got) == [1, -1, -1, 0, 0]
    assert list(status) == [1, -1, -1, 0, -1]  # input untouched
    assert list(redo_unrecorded(status, tracks, [])) == [1, 0, 0, 0, 0]


def test_decode_track_reads_prefix_and_lets_transient_errors_through(small_dataset, monkeypatch):
    import emodist.data.audio
    import emodist.engine.extract as ex

    good = str(min((small_dataset / "emotifymusic").rglob("*.mp3")))
    y = ex.decode_track(good, 22050, 4.0)
    assert abs(len(y) - 4 * 22050) <= 1

    def dropped(*args, **kwargs):  # a connection lost while reading
        raise ConnectionResetError("connection reset by peer")

    monkeypatch.setattr(emodist.data.audio.fsspec, "open", dropped)
    # not a DataError: the chunk task fails and Dask retries it
    with pytest.raises(ConnectionResetError):
        ex.decode_track("s3://bucket/x.mp3", 22050, 4.0)


def test_progress_rate_and_eta():
    from emodist.progress import eta_seconds, run_rate

    assert run_rate(30, 10, 4.0) == 5.0  # only this run's segments count
    assert run_rate(10, 10, 0.0) == 0.0 and run_rate(5, 0, None) == 0.0
    assert eta_seconds(100, 30, 5.0) == 14.0
    assert eta_seconds(100, 30, 0.0) is None


def test_scheduler_file_connects_only(tmp_path, small_dataset, config, client):
    """--scheduler-file reaches the running scheduler; a missing file is one line."""
    sched = tmp_path / "scheduler.json"
    sched.write_text(json.dumps({"address": client.scheduler.address}))
    workers_before = set(client.scheduler_info()["workers"])
    result = run_extract(str(small_dataset), str(tmp_path / "s.zarr"),
                         config.replace(features=("handcrafted",)), scheduler_file=str(sched),
                         chunk=12, progress=False)
    assert result.n_done == 24
    assert set(client.scheduler_info()["workers"]) == workers_before  # nothing started
    with pytest.raises(ClusterError, match="does not exist"):
        run_extract(str(small_dataset), str(tmp_path / "t.zarr"),
                    config.replace(features=("handcrafted",)),
                    scheduler_file=str(tmp_path / "absent.json"), progress=False)
    assert not (tmp_path / "t.zarr").exists()  # refused before any work


def test_chunk_task_repr_hides_credentials():
    task = ChunkTask(store="s3://b/s.zarr", chunk=0, start=0, stop=1, rows=(), config=Config(),
                     storage_options={"key": "AKIA-visible", "secret": "s3cr3t"})
    text = repr(task)
    assert "s3cr3t" not in text and "AKIA-visible" not in text and "s3://b/s.zarr" in text
