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

from emodist.data.segments import segment_votes
from emodist.engine.extract import plan_failures, run_extract
from emodist.engine.worker import ChunkTask, Job, apply_thread_budget, compute_chunk, track_spans
from emodist.errors import ClusterError, DataError, StoreError
from emodist.features import make_groups
from emodist.spec import ExtractionSpec, Runtime
from emodist.store import layout, open_store
from emodist.store import zarrio as io

REPO = Path(__file__).resolve().parents[2]
CHUNK = 2
GROUPS = ("handcrafted", "inception_v3")


def make_spec(model, *names, **kw) -> ExtractionSpec:
    """4 s segments of the given groups (default handcrafted and Inception-v3)."""
    kw.setdefault("segment_seconds", 4.0)
    return ExtractionSpec(groups=make_groups(list(names or GROUPS), {"model": model}), **kw)


def rt(client=None, **kw) -> Runtime:
    return Runtime(client=client, progress=False, batch_size=4, **kw)


@pytest.fixture(scope="module")
def spec(tiny_model) -> ExtractionSpec:
    return make_spec(tiny_model)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, small_dataset, spec, client):
    url = str(tmp_path_factory.mktemp("ref") / "ref.zarr")
    result = run_extract(str(small_dataset), url, spec, rt(client, chunk=CHUNK))
    return url, result


def assert_same_store(url, ref_url, storage_options=None, paths=True):
    got = open_store(url, storage_options)
    ref = open_store(ref_url)
    assert list(got["segment"].values) == list(ref["segment"].values)
    for name in ("track_id", "label", "genre", "group", "segment_index", "start_s"):
        assert list(got[name].values) == list(ref[name].values), name
    if paths:
        assert list(got["path"].values) == list(ref["path"].values)
    for g in GROUPS:
        np.testing.assert_array_equal(got[f"{g}_status"].values, ref[f"{g}_status"].values)
        assert got[g].chunks == ref[g].chunks
    np.testing.assert_array_equal(got["votes"].values, ref["votes"].values)
    np.testing.assert_allclose(got["handcrafted"].values, ref["handcrafted"].values,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["inception_v3"].values, ref["inception_v3"].values,
                               rtol=1e-4, atol=1e-5)
    assert got.attrs["spec"] == ref.attrs["spec"]
    assert got.attrs["feature_groups"] == ref.attrs["feature_groups"]


# ----------------------------------------------------------------- pure helpers


def test_track_spans_groups_and_spans():
    rows = [("a", "pa", 0.0, 4.0), ("a", "pa", 4.0, 4.0), ("b", "pb", 8.0, 4.0),
            ("b", "pb", 12.0, 3.0)]
    assert track_spans(rows) == [("a", "pa", 8.0, [0, 1]), ("b", "pb", 15.0, [2, 3])]
    assert track_spans([]) == []


def test_segment_votes_follow_segments():
    import pandas as pd

    votes = pd.DataFrame(np.eye(9)[:2], index=["1", "2"], columns=list(layout.GEMS))
    table = pd.DataFrame({"track_id": ["2", "2", "1"]})
    got = segment_votes(table, votes)
    assert got.dtype == np.float32 and got.shape == (3, 9)
    np.testing.assert_array_equal(got[0], np.eye(9)[1])
    np.testing.assert_array_equal(got[2], np.eye(9)[0])
    assert segment_votes(table, None) is None


def test_plan_failures_records():
    assert plan_failures([("7", "/x/7.mp3", "empty")]) == [
        {"track_id": "7", "path": "/x/7.mp3", "error": "empty", "group": ""}]


def test_apply_thread_budget_limits_blas():
    from threadpoolctl import threadpool_info

    assert apply_thread_budget(1) == 1
    pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    assert all(p["num_threads"] == 1 for p in pools)
    assert apply_thread_budget(0) == 1


def _resolved(spec):
    from emodist.engine.extract import resolve_spec

    return resolve_spec(spec, Runtime())


def test_compute_chunk_one_decode_failure_and_one_decode_per_track(tmp_path, small_dataset, spec,
                                                                   monkeypatch):
    """A track that cannot be decoded fails alone; every other track is decoded once."""
    from emodist.data import audio

    good = min((small_dataset / "emotifymusic").rglob("*.mp3"))
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(b"ID3" + os.urandom(4000))
    reads = []
    real_read = audio._read
    monkeypatch.setattr(audio, "_read", lambda path, *a: reads.append(path) or real_read(path, *a))
    rows = (("g", str(good), 0.0, 4.0), ("g", str(good), 4.0, 4.0), ("x", str(bad), 0.0, 4.0))
    task = ChunkTask(chunk=0, start=0, stop=3, rows=rows, groups=GROUPS)
    job = Job(store="unused", spec=_resolved(spec), batch_size=4)
    values, status, failures = compute_chunk(task, job)
    assert reads == [str(good), str(bad)]  # one decode per track, for both groups
    assert list(status["handcrafted"]) == [1, 1, -1] and list(status["inception_v3"]) == [1, 1, -1]
    assert [f["track_id"] for f in failures] == ["x"] and failures[0]["group"] == ""
    assert failures[0]["path"] == str(bad) and failures[0]["error"].count(str(bad)) == 1
    assert "0x" not in failures[0]["error"]  # no Python object repr in the message
    hc, deep = values["handcrafted"], values["inception_v3"]
    assert np.isfinite(hc[:2]).all() and np.isnan(hc[2]).all()
    assert np.isfinite(deep[:2]).all() and np.isnan(deep[2]).all()
    assert not np.allclose(hc[0], hc[1])  # the two segments of the track differ


# ----------------------------------------------------------------- in-process cluster


def test_reference_store_complete(reference, small_dataset, tiny_model):
    url, result = reference
    assert result.n_segments == 24 and result.n_done == 24 and result.n_failed == 0
    assert result.n_written == 48 and result.n_chunks == 12 and not result.resumed
    ds = open_store(url)
    for g in GROUPS:
        assert (ds[f"{g}_status"].values == layout.STATUS_DONE).all()
        assert np.isfinite(ds[g].values).all()
        assert ds[g].chunks[0] == (CHUNK,) * 12
    from emodist.features.handcrafted import FEATURE_NAMES_VERSION, feature_names
    from emodist.models.session import read_sidecar

    groups = ds.attrs["feature_groups"]
    assert groups["inception_v3"]["model_sha256"] == read_sidecar(tiny_model)["sha256"]
    assert groups["handcrafted"]["version"] == FEATURE_NAMES_VERSION
    assert ds.attrs["spec"]["segment_seconds"] == 4.0
    assert list(ds["handcrafted_feature"].values) == feature_names("full")
    assert ds.attrs["failures"] == []
    # each row holds its own segment: three features recomputed independently with librosa
    import librosa

    k = 5
    row = ds.isel(segment=k)
    y, sr = librosa.load(str(row.path.values), sr=22050, offset=0.0,
                         duration=float(row.start_s) + float(row.duration_s))
    y = y[round(float(row.start_s) * sr):]
    S = np.abs(librosa.stft(y, n_fft=2048, hop_length=512, center=True, pad_mode="constant"))
    want = {"rms_mean": librosa.feature.rms(y=y, frame_length=2048, hop_length=512).mean(),
            "spectral_centroid_mean": librosa.feature.spectral_centroid(S=S, sr=sr).mean(),
            "zcr_mean": librosa.feature.zero_crossing_rate(y, frame_length=2048,
                                                           hop_length=512).mean()}
    got = ds["handcrafted"].isel(segment=k).to_series()
    for name, value in want.items():
        assert got[name] == pytest.approx(value, rel=1e-3), name
    # votes follow the catalog
    from emodist.data.catalog import load_dataset

    cat = load_dataset(str(small_dataset))
    np.testing.assert_allclose(ds["votes"].values[k],
                               cat.votes.loc[str(row.track_id.values), list(layout.GEMS)]
                               .to_numpy(), rtol=1e-6)


def test_values_do_not_depend_on_the_chunking(tmp_path, tiny_model, client):
    """Chunks of 2 and of 3 cut 44.1 kHz tracks (resampled once) in different places:
    a segment's values must not depend on where its chunk ended the decode."""
    from emodist.data.demo import make_demo_dataset

    data = tmp_path / "data"
    make_demo_dataset(data, n_tracks=4, seed=3, duration_s=12.0, sr=44100)
    hc = make_spec(tiny_model, "handcrafted")
    stores = []
    for chunk in (2, 3):
        url = str(tmp_path / f"c{chunk}.zarr")
        run_extract(str(data), url, hc, rt(client, chunk=chunk))
        stores.append(open_store(url))
    a, b = (s["handcrafted"].values.astype(np.float64) for s in stores)
    assert stores[0]["handcrafted"].chunks[0] != stores[1]["handcrafted"].chunks[0]
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_rerun_on_complete_store_does_nothing(reference, small_dataset, spec, client):
    url, _ = reference
    chunk_file = Path(url) / "inception_v3" / "c" / "0" / "0"
    before = chunk_file.stat().st_mtime_ns
    result = run_extract(str(small_dataset), url, spec, rt(client))
    assert result.already_complete and result.n_written == 0 and result.n_done == 24
    assert chunk_file.stat().st_mtime_ns == before


def test_group_added_later_leaves_the_others_untouched(tmp_path, reference, small_dataset,
                                                        tiny_model, client):
    url = str(tmp_path / "s.zarr")
    first = run_extract(str(small_dataset), url, make_spec(tiny_model, "handcrafted"),
                        rt(client, chunk=CHUNK))
    assert first.n_done == 24 and open_store(url).emodist.groups == ["handcrafted"]
    chunk_file = Path(url) / "handcrafted" / "c" / "0" / "0"
    before = chunk_file.stat().st_mtime_ns
    added = run_extract(str(small_dataset), url, make_spec(tiny_model, "inception_v3"),
                        rt(client))
    assert added.groups_added == ["inception_v3"] and added.n_written == 24
    assert chunk_file.stat().st_mtime_ns == before  # handcrafted was not rewritten
    assert_same_store(url, reference[0])
    assert run_extract(str(small_dataset), url, make_spec(tiny_model), rt(client)).already_complete


def test_changed_spec_refused_by_field_then_overwrite(tmp_path, reference, small_dataset,
                                                      tiny_model, client, monkeypatch):
    url, _ = reference
    with pytest.raises(StoreError, match=r"hop_seconds=4\.0, not 3\.0"):
        run_extract(str(small_dataset), url, make_spec(tiny_model, segment_seconds=3.0),
                    rt(client))
    with pytest.raises(StoreError, match=r"group handcrafted was written with "
                                         r"params\.n_mfcc=13, not 12"):
        run_extract(str(small_dataset), url, ExtractionSpec(
            groups=make_groups(["handcrafted"], {"n_mfcc": 12}), segment_seconds=4.0),
            rt(client))
    # a new version of the feature definitions is refused too (no mixed definitions)
    import emodist.features.handcrafted as hc

    monkeypatch.setattr(hc, "FEATURE_NAMES_VERSION", "999")
    with pytest.raises(StoreError, match=r"group handcrafted was written with version='\d+', "
                                         r"not '999'"):
        run_extract(str(small_dataset), url, make_spec(tiny_model), rt(client))
    monkeypatch.undo()
    copy = str(tmp_path / "copy.zarr")
    shutil.copytree(url, copy)
    result = run_extract(str(small_dataset), copy, make_spec(tiny_model, "handcrafted",
                                                            segment_seconds=3.0),
                         rt(client, chunk=12), overwrite=True)
    assert result.n_segments == 32 and not result.resumed
    ds = open_store(copy)
    assert ds.emodist.groups == ["handcrafted"] and ds["handcrafted"].chunks[0] == (12, 12, 8)


def test_corrupt_and_empty_files_recorded(tmp_path, small_dataset, spec, client):
    data = tmp_path / "dataset"
    shutil.copytree(small_dataset, data)
    files = sorted((data / "emotifymusic").rglob("*.mp3"))
    files[0].write_bytes(b"ID3\x04\x00\x00\x00\x00\x00\x00" + os.urandom(3000))  # corrupt
    files[1].write_bytes(b"")  # empty file
    head = files[2].read_bytes()  # valid header, then zeros: planned, fails to decode
    files[2].write_bytes(head[:3000] + bytes(len(head) - 3000))
    url = str(tmp_path / "s.zarr")
    result = run_extract(str(data), url, spec, rt(client, chunk=CHUNK))
    failed_paths = sorted(f["path"] for f in result.failures)
    assert failed_paths == sorted(str(f) for f in files[:3])
    assert all(f["error"] for f in result.failures)
    ds = open_store(url)
    assert ds.sizes["segment"] == 18  # 6 planned tracks x 3 segments
    assert result.n_done == 15 and result.n_failed == 3  # the five good tracks complete
    bad = ds["path"].values == str(files[2])
    for g in GROUPS:
        assert (ds[f"{g}_status"].values[bad] == layout.STATUS_FAILED).all()
        assert (ds[f"{g}_status"].values[~bad] == layout.STATUS_DONE).all()
    assert np.isnan(ds["handcrafted"].values[bad]).all()
    assert np.isfinite(ds["handcrafted"].values[~bad]).all()
    assert sorted(f["path"] for f in ds.attrs["failures"]) == failed_paths
    # a driver killed before recording a chunk's failures: the rerun redoes that chunk
    io.finish_store(url, {"failures": []})
    again = run_extract(str(data), url, spec, rt(client))
    assert again.resumed and 3 <= again.n_written < 36
    assert sorted(f["path"] for f in again.failures) == failed_paths
    assert run_extract(str(data), url, spec, rt(client)).already_complete
    # the broken file is repaired: retry_failed redoes its segments and drops its record
    files[2].write_bytes(head)
    fixed = run_extract(str(data), url, spec, rt(client), retry_failed=True)
    assert fixed.n_done == 18 and fixed.n_failed == 0
    assert sorted(f["path"] for f in fixed.failures) == sorted(str(f) for f in files[:2])
    assert np.isfinite(open_store(url)["handcrafted"].values).all()


def test_unreachable_scheduler_is_one_line(small_dataset, tiny_model, tmp_path):
    from tests.servers import free_port

    with pytest.raises(ClusterError, match="cannot reach scheduler") as err:
        run_extract(str(small_dataset), str(tmp_path / "s.zarr"),
                    make_spec(tiny_model, "handcrafted"),
                    Runtime(scheduler=f"tcp://127.0.0.1:{free_port()}", progress=False))
    assert err.value.param == "scheduler"


def test_empty_dataset_refused(tmp_path, tiny_model):
    (tmp_path / "empty.csv").write_text("path,label\n")
    with pytest.raises(DataError):
        run_extract(str(tmp_path / "empty.csv"), str(tmp_path / "s.zarr"),
                    make_spec(tiny_model, "handcrafted"), rt())


# ----------------------------------------------------------------- command line


def test_cli_errors_exit_2(capsys, small_dataset, tmp_path):
    from emodist.cli import main
    from tests.servers import free_port

    base = ["extract", str(small_dataset), "--store", str(tmp_path / "s.zarr")]
    assert main(base + ["--features", "handcrafted", "colour"]) == 2
    assert "unknown feature group 'colour'" in capsys.readouterr().err
    assert main(base + ["--storage-options", "{nope"]) == 2
    assert "--storage-options" in capsys.readouterr().err
    assert main(base + ["--features", "handcrafted",
                        "--scheduler", f"tcp://127.0.0.1:{free_port()}"]) == 2
    err = capsys.readouterr().err
    assert "--scheduler: cannot reach scheduler" in err
    assert len(err.strip().splitlines()) == 1
    assert main(base + ["--features", "handcrafted", "--scheduler", "tcp://127.0.0.1:1",
                        "--workers", "2"]) == 2
    assert "local cluster" in capsys.readouterr().err


def test_cli_complete_store_says_so(capsys, reference, small_dataset, tiny_model, client):
    from emodist.cli import main

    url, _ = reference
    code = main(["extract", str(small_dataset), "--store", url, "--segment-seconds", "4",
                 "--batch-size", "4", "--model", tiny_model, "--scheduler",
                 client.scheduler.address, "--quiet"])
    assert code == 0
    assert "is complete: 24 of 24 segments done in every group, 0 failed; nothing to do" in (
        capsys.readouterr().out)


def test_cli_defaults_come_from_the_spec():
    from emodist.cli import build_parser

    parser = build_parser()
    d = ExtractionSpec()
    for command in (["extract", "x", "--store", "s"], ["plan", "x"], ["catalog", "x"]):
        args = parser.parse_args(command)
        assert args.label_rule == d.label_rule and args.min_class_share == d.min_class_share
    for command in (["extract", "x", "--store", "s"], ["plan", "x"]):
        args = parser.parse_args(command)
        assert args.segment_seconds == d.segment_seconds and args.hop_seconds is None
        assert args.min_last_seconds is None


# ----------------------------------------------------------------- real processes


def _done_pending(url):
    """Segments written in every group, and segments some group still waits for.

    Every group, not one: a kill between a chunk's two region writes leaves
    its segments done in one group only, and the resumed run writes the other.
    """
    try:
        statuses = io.read_state(url).status
    except Exception:  # noqa: BLE001 - store not created yet
        return 0, 0
    done = np.all([s != 0 for s in statuses.values()], axis=0)
    return int(done.sum()), int((~done).sum())


@pytest.mark.cluster
def test_driver_killed_then_resumed(tmp_path, reference, small_dataset, tiny_model, client, spec):
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
                done, pending = _done_pending(url)
                if done >= CHUNK:
                    break
                time.sleep(0.05)
            os.killpg(proc.pid, signal.SIGKILL)
        finally:
            proc.wait(30)
    assert done >= CHUNK and pending > 0, (done, pending, log.read_text()[-2000:])
    assert "dashboard:" in log.read_text()
    result = run_extract(str(small_dataset), url, spec, rt(client))
    assert result.resumed and not result.already_complete
    assert 0 < result.n_written <= 2 * (24 - done)
    assert result.n_done == 24
    assert_same_store(url, reference[0])


def plan_files(url) -> dict[str, bytes]:
    """Every file of a store that the segment plan defines: per-segment arrays and metadata."""
    root = Path(url)
    names = [layout.SEGMENT, *layout.SEGMENT_COORDS, layout.VOTES, layout.VOTES_MEAN]
    out = {}
    for name in names:
        for f in sorted((root / name).rglob("*")):
            if f.is_file():
                out[str(f.relative_to(root))] = f.read_bytes()
    return out


def test_planning_on_the_workers_writes_the_plan_into_the_store(tmp_path, reference,
                                                                small_dataset, spec, client):
    """``plan_on="workers"``, new store: the workers plan and write every coordinate.

    The driver receives segment counts only; the chunk tasks carry no rows
    (they read them from the store); coordinates and votes are byte for
    byte the reference's (planned on the driver).
    """
    from distributed import get_task_stream

    from emodist.engine.planning import PLAN_TASK, TASK_NAME, WRITE_TASK

    url = str(tmp_path / "w.zarr")
    carried = []
    with get_task_stream(client) as stream:
        result = run_extract(str(small_dataset), url, spec,
                             rt(client, chunk=CHUNK, plan_on="workers"),
                             on_result=lambda task, res, err: carried.append(task.rows))
    assert result.n_done == 24 and result.n_segments == 24 and result.failures == []
    keys = [str(t["key"]) for t in stream.data]  # older distributed: some keys are tuples
    assert any(k.startswith(PLAN_TASK + "-0") for k in keys)
    assert any(k.startswith(WRITE_TASK) for k in keys)
    assert not any(k.startswith(TASK_NAME) for k in keys)  # no headers sent to the driver
    assert len(carried) == 12 and all(rows is None for rows in carried)
    assert_same_store(url, reference[0])
    got, want = plan_files(url), plan_files(reference[0])
    assert sorted(got) == sorted(want) and got == want
    assert layout.PLAN_PENDING not in open_store(url).attrs


def test_plan_written_in_slices_of_many_batches_is_the_reference(
        tmp_path, reference, small_dataset, spec, client, monkeypatch):
    """Coordinate chunks of 5 segments, vote chunks of 2, batches of 3 tracks (9-10 segments).

    The coordinate slices cut vote chunks, so the votes get their own write
    tasks; batches straddle the slices; the values are the reference's.
    """
    from distributed import get_task_stream

    from emodist.engine import planning
    from emodist.engine.planning import WRITE_TASK

    monkeypatch.setattr(io, "COORD_CHUNK_SEGMENTS", 5)
    monkeypatch.setattr(planning, "batch_length", lambda **kw: 3)
    url = str(tmp_path / "slices.zarr")
    with get_task_stream(client) as stream:
        result = run_extract(str(small_dataset), url, spec,
                             rt(client, chunk=CHUNK, plan_on="workers"))
    assert result.n_done == 24
    writes = [t for t in stream.data if str(t["key"]).startswith(WRITE_TASK)]
    assert len(writes) == 5 + 6  # [0, 5) ... [20, 24) coordinates, then votes in fours
    got, ref = open_store(url), open_store(reference[0])
    assert_same_store(url, reference[0])
    for name in (*layout.SEGMENT_COORDS, layout.VOTES, layout.VOTES_MEAN):
        np.testing.assert_array_equal(got[name].values, ref[name].values, err_msg=name)
    assert io.open_group(url)["track_id"].chunks == (5,)


def test_a_store_whose_plan_was_never_written_is_refused_then_rebuilt(
        tmp_path, reference, small_dataset, spec, client):
    """A run stopped between the template and the plan's writes leaves a store marked pending."""
    from emodist.data.catalog import load_dataset
    from emodist.engine.extract import apply_plan, resolve_spec
    from emodist.engine.plan import plan_sized
    from emodist.store.verify import verify_store

    url = str(tmp_path / "stopped.zarr")
    resolved = resolve_spec(spec, rt(client))
    cat = load_dataset(str(small_dataset))
    apply_plan(url, plan_sized(24, resolved, votes=True, votes_mean=True, chunk=CHUNK), None)
    assert io.plan_pending(url)
    with pytest.raises(StoreError, match="incomplete: its segment coordinates were never all "
                                         "written"):
        open_store(url)
    report = verify_store(url)
    assert not report.ok and not report.repairable
    assert "never all written" in report.summary()
    assert cat.votes is not None
    result = run_extract(str(small_dataset), url, spec, rt(client, chunk=CHUNK, plan_on="workers"))
    assert result.n_done == 24 and not result.resumed
    assert_same_store(url, reference[0])
    assert not io.plan_pending(url)


@pytest.mark.cluster
def test_multiprocess_cluster_survives_killed_worker(tmp_path, reference, small_dataset, spec):
    """`dask scheduler` + two `dask worker` processes; one worker is SIGKILLed mid-run."""
    from tests.servers import dask_cluster, stop

    url = str(tmp_path / "s.zarr")
    killed = []
    with dask_cluster(n_workers=2, nthreads=1) as (address, workers):

        def kill_first_worker(task, res, err):
            if not killed:
                stop(workers[0], timeout=5)
                killed.append(task.chunk)

        result = run_extract(str(small_dataset), url, spec,
                             Runtime(scheduler=address, chunk=CHUNK, progress=False, batch_size=4),
                             on_result=kill_first_worker)
        assert workers[0].poll() is not None and workers[1].poll() is None
    assert killed and result.n_chunks == 12 and result.n_done == 24
    assert_same_store(url, reference[0])


@pytest.mark.s3
def test_s3_dataset_and_store_on_moto(reference, small_dataset, spec, client):
    """Audio and store both on a moto S3 server, reached through storage options."""
    import s3fs

    from tests.servers import make_bucket, moto_server, upload_tree

    with moto_server() as (endpoint, options):
        make_bucket(endpoint, "audio")
        make_bucket(endpoint, "features")
        upload_tree(options, small_dataset, "s3://audio/emotify")
        url = "s3://features/run/store.zarr"
        storage = {"dataset": options, "store": options}
        result = run_extract("s3://audio/emotify", url, spec,
                             rt(client, chunk=CHUNK, storage=storage))
        assert result.n_done == 24 and result.failures == []
        assert_same_store(url, reference[0], options, paths=False)
        ds = open_store(url, options)
        assert all(p.startswith("s3://audio/emotify/") for p in ds["path"].values)
        # no credentials anywhere in the store's metadata
        fs = s3fs.S3FileSystem(**options)
        meta = " ".join(fs.cat_file(p).decode() for p in fs.find("features/run")
                        if p.endswith("zarr.json"))
        assert options["secret"] not in meta and options["key"] not in meta
        again = run_extract("s3://audio/emotify", url, spec, rt(client, storage=storage))
        assert again.already_complete


@pytest.mark.emotify
@pytest.mark.slow
def test_real_emotify_end_to_end(emotify_root, tmp_path, tiny_model):
    """The 100 shared Emotify tracks: 398 segments of 15 s, handcrafted + tiny Inception."""
    url = str(tmp_path / "emotify.zarr")
    result = run_extract(str(emotify_root), url, make_spec(tiny_model, segment_seconds=15.0),
                         Runtime(n_workers=2, threads_per_worker=1, progress=False))
    assert result.n_segments == 398 and result.n_done == 398 and result.failures == []
    ds = open_store(url)
    assert np.isfinite(ds["handcrafted"].values).all()
    assert np.isfinite(ds["inception_v3"].values).all()
    assert list(ds["segment"].values[:4]) == ["1:000", "1:001", "1:002", "1:003"]
    labels = set(ds["label"].values)
    assert "amazement" not in labels and "calmness" in labels
    assert ds.attrs["failures"] == []


def test_decode_reads_prefix_and_lets_transient_errors_through(small_dataset, monkeypatch):
    from emodist.data import audio

    good = str(min((small_dataset / "emotifymusic").rglob("*.mp3")))
    ys = audio.decode(good, rates=[22050, 16000], end_s=4.0)  # and TAIL_S more
    for rate in (22050, 16000):
        assert abs(len(ys[rate]) - (4 + audio.TAIL_S) * rate) <= 1

    def dropped(*args, **kwargs):  # a connection lost while reading
        raise ConnectionResetError("connection reset by peer")

    monkeypatch.setattr(audio.fsspec.core, "url_to_fs", dropped)
    # not a DataError: the chunk task fails and Dask retries it
    with pytest.raises(ConnectionResetError):
        audio.decode("s3://bucket/x.mp3", rates=[22050], end_s=4.0)


def test_progress_rate_and_eta():
    from emodist.progress import eta_seconds, run_rate

    assert run_rate(30, 10, 4.0) == 5.0  # only this run's segments count
    assert run_rate(10, 10, 0.0) == 0.0 and run_rate(5, 0, None) == 0.0
    assert eta_seconds(100, 30, 5.0) == 14.0
    assert eta_seconds(100, 30, 0.0) is None


def test_scheduler_file_connects_only(tmp_path, small_dataset, tiny_model, client):
    """A scheduler file reaches the running scheduler; a missing file is one line."""
    sched = tmp_path / "scheduler.json"
    sched.write_text(json.dumps({"address": client.scheduler.address}))
    workers_before = set(client.scheduler_info()["workers"])
    hc = make_spec(tiny_model, "handcrafted")
    result = run_extract(str(small_dataset), str(tmp_path / "s.zarr"), hc,
                         Runtime(scheduler_file=str(sched), chunk=12, progress=False))
    assert result.n_done == 24
    assert set(client.scheduler_info()["workers"]) == workers_before  # nothing started
    with pytest.raises(ClusterError, match="does not exist"):
        run_extract(str(small_dataset), str(tmp_path / "t.zarr"), hc,
                    Runtime(scheduler_file=str(tmp_path / "absent.json"), progress=False))
    assert not (tmp_path / "t.zarr").exists()  # refused before any work


def test_job_repr_hides_credentials():
    job = Job(store="s3://b/s.zarr", spec=ExtractionSpec(),
              store_options={"key": "AKIA-visible", "secret": "s3cr3t"},
              dataset_options={"secret": "s3cr3t"})
    text = repr(job) + repr(Runtime(storage={"store": {"secret": "s3cr3t"}}))
    assert "s3cr3t" not in text and "AKIA-visible" not in text and "s3://b/s.zarr" in text
