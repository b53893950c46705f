"""Segment planning split into probing and table building; planning on the workers.

The table builder is checked against a plan written out by hand; planning on
a cluster's workers (an in-process one, then real ``dask scheduler``/``dask
worker`` processes reading a moto S3 server) must give the driver's plan,
row for row, with every header read by a worker task.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from emodist.data.catalog import load_dataset
from emodist.data.segments import (
    PLAN_COLUMNS,
    AudioInfo,
    Probes,
    batches,
    build_plan,
    plan_segments,
    probe_batch,
    probe_columns,
)
from emodist.engine.planning import (
    TASK_NAME,
    batch_length,
    is_remote,
    plan_segments_on_workers,
    plan_site,
)
from emodist.errors import EmodistError
from emodist.spec import PLAN_ON_WORKERS_TRACKS, ExtractionSpec, Runtime

SPEC = ExtractionSpec(segment_seconds=5.0)


@pytest.fixture
def small_manifest(tmp_path):
    """Six tracks: four good WAVs, an unreadable file and a too-short one."""
    sr = 8000
    lengths = {"a": 10.0, "b": 7.5, "short": 3.0, "c": 15.2, "d": 5.0}
    for name, seconds in lengths.items():
        sf.write(tmp_path / f"{name}.wav", np.zeros(int(seconds * sr), np.float32), sr)
    (tmp_path / "bad.wav").write_bytes(b"this is not audio at all" * 10)
    order = ["a", "bad", "b", "short", "c", "d"]
    lines = ["track_id,path,label,group,genre"] + [
        f"{n},{n}.wav,{'calmness' if i % 2 else 'power'},g{i % 3},rock"
        for i, n in enumerate(order)]
    (tmp_path / "manifest.csv").write_text("\n".join(lines) + "\n")
    return tmp_path / "manifest.csv"


def expected_table(root) -> pd.DataFrame:
    """The plan of :func:`small_manifest` with 5 s windows, written out by hand."""
    rows = [("a", 0, 0.0, "power", "g0"), ("a", 1, 5.0, "power", "g0"),
            ("b", 0, 0.0, "power", "g2"),
            ("c", 0, 0.0, "power", "g1"), ("c", 1, 5.0, "power", "g1"),
            ("c", 2, 10.0, "power", "g1"),
            ("d", 0, 0.0, "calmness", "g2")]
    return pd.DataFrame(
        {"segment_id": [f"{t}:{i:03d}" for t, i, *_ in rows],
         "track_id": [r[0] for r in rows],
         "segment_index": np.array([r[1] for r in rows], np.int32),
         "start_s": [r[2] for r in rows], "duration_s": 5.0,
         "label": [r[3] for r in rows], "group": [r[4] for r in rows], "genre": "rock",
         "path": [str(root / f"{r[0]}.wav") for r in rows]}, columns=PLAN_COLUMNS)


def _problem(track: str, path: str, message: str) -> tuple[str, str, str]:
    # the file and what is wrong with it; libsndfile's own reason in brackets is left out:
    # its error string is global, and older soundfile releases read it garbled when
    # several threads fail at once ("Garbled error message from libsndfile")
    return track, path, message.split(" (")[0]


def assert_same_plan(got, want) -> None:
    pd.testing.assert_frame_equal(got.table, want.table)
    assert [_problem(*p) for p in got.problems] == [_problem(*p) for p in want.problems]
    assert got.durations == want.durations


# ------------------------------------------------------------- pure builder


def test_build_plan_gives_the_plan_written_by_hand(small_manifest):
    cat = load_dataset(str(small_manifest))
    tracks = cat.usable()
    probes = probe_batch(tracks["path"], max_workers=3)
    assert [err is None for _, err in probes] == [True, False, True, True, True, True]
    assert probes[0] == (AudioInfo(10.0, 8000, 1), None)
    got = build_plan(tracks=tracks, probes=probes, spec=SPEC)
    pd.testing.assert_frame_equal(got.table, expected_table(small_manifest.parent))
    root = small_manifest.parent
    assert [(t, p) for t, p, _ in got.problems] == [("bad", str(root / "bad.wav")),
                                                     ("short", str(root / "short.wav"))]
    assert "bad.wav: not audio (format not recognised)" in got.problems[0][2]
    assert got.problems[1][2] == "3.00 s is shorter than the 5 s minimum"
    assert got.durations == {"a": 10.0, "b": 7.5, "short": 3.0, "c": 15.2, "d": 5.0}
    # the driver's plan_segments is the same function of the same probes
    assert_same_plan(plan_segments(cat, SPEC), got)
    with pytest.raises(ValueError, match="5 probe results for 6 tracks"):
        build_plan(tracks=tracks, probes=probes[:5], spec=SPEC)


def test_probes_hold_the_outcomes_as_columns(small_manifest):
    import pickle

    paths = load_dataset(str(small_manifest)).usable()["path"].tolist()
    outcomes = probe_batch(paths, max_workers=2)
    cols = probe_columns(paths, max_workers=2)
    assert len(cols) == 6 and [cols[i] for i in range(6)] == outcomes
    assert cols.duration_s.dtype == np.float64 and cols.samplerate.dtype == np.int32
    assert np.isnan(cols.duration_s[1]) and list(cols.errors) == [1]
    # what a header task sends back: arrays and the reasons, nothing per file
    back = pickle.loads(pickle.dumps(cols))
    assert [back[i] for i in range(6)] == outcomes
    whole = Probes(10)
    whole.put(3, back)
    assert [whole[i] for i in range(3, 9)] == outcomes and list(whole.errors) == [4]
    assert np.isnan(whole.duration_s[[0, 1, 2, 9]]).all()
    tracks = load_dataset(str(small_manifest)).usable()
    assert_same_plan(build_plan(tracks=tracks, probes=cols, spec=SPEC),
                     build_plan(tracks=tracks, probes=outcomes, spec=SPEC))
    with pytest.raises(ValueError, match="5 probe results for 6 files"):
        Probes.from_outcomes(iter(outcomes[:5]), n=6)
    assert len(probe_columns([])) == 0


def test_concurrent_failures_keep_their_reason(tmp_path):
    """libsndfile keeps the code of a failed open in one global; soundfile
    before 0.14 read it unlocked, so a thread's failure could report another
    thread's success as "(Garbled error message from libsndfile)"."""
    sf.write(tmp_path / "good.wav", np.zeros(800, np.float32), 8000)
    (tmp_path / "bad.wav").write_bytes(b"this is not audio at all" * 10)
    paths = [str(tmp_path / n) for n in ("bad.wav", "good.wav")] * 200
    outcomes = probe_batch(paths, max_workers=8)
    reasons = {reason for _, reason in outcomes[0::2]}
    assert reasons == {f"{tmp_path / 'bad.wav'}: not audio (format not recognised)"}
    assert all(info is not None for info, _ in outcomes[1::2])


def test_driver_planning_in_rounds_gives_the_same_plan(small_manifest, monkeypatch):
    from emodist.data import segments

    cat = load_dataset(str(small_manifest))
    whole = plan_segments(cat, SPEC)
    monkeypatch.setattr(segments, "DRIVER_BATCH", 4)  # 6 files: rounds of 4 and 2
    seen = []
    assert_same_plan(plan_segments(cat, SPEC, on_probed=seen.append), whole)
    assert seen == [1] * 6


def test_build_plan_of_no_tracks_is_an_empty_typed_table(small_manifest):
    tracks = load_dataset(str(small_manifest)).usable().iloc[:0]
    got = build_plan(tracks=tracks, probes=[], spec=SPEC)
    assert list(got.table.columns) == PLAN_COLUMNS and len(got) == 0
    assert got.table["segment_index"].dtype == np.int32
    assert probe_batch([]) == []


def test_plan_site_batches_and_the_plan_on_option():
    local = ["/data/a.mp3", "/data/b.mp3"]
    assert plan_site(dataset="/data", paths=local) == "driver"
    assert plan_site(dataset="s3://bucket/emotify", paths=["s3://bucket/a.mp3"]) == "workers"
    assert plan_site(dataset="/data/m.csv", paths=["/data/a.mp3", "gs://b/x.mp3"]) == "workers"
    big = [f"/d/{i}.wav" for i in range(PLAN_ON_WORKERS_TRACKS + 1)]
    assert plan_site(dataset="/d", paths=big) == "workers"
    assert plan_site(dataset="/d", paths=big[:-1]) == "driver"
    assert plan_site(dataset="s3://b/e", paths=[]) == "driver"
    assert plan_site(dataset="s3://b/e", paths=["s3://b/x"], plan_on="driver") == "driver"
    assert plan_site(dataset="/d", paths=local, plan_on="workers") == "workers"
    assert not is_remote("file:///data/a.mp3") and is_remote("s3://b/a.mp3")
    assert batch_length(n_paths=100_000, n_threads=16) == 500
    assert batch_length(n_paths=10, n_threads=2) == 2 and batch_length(n_paths=0, n_threads=0) == 1
    assert [s for s, _ in batches(big[:7], 3)] == [0, 3, 6]
    assert [p for _, b in batches(big[:7], 3) for p in b] == big[:7]
    assert Runtime().plan_on == "auto"
    with pytest.raises(EmodistError, match="unknown planning site 'gpu'; use auto, driver or "
                                           "workers") as e:
        Runtime(plan_on="gpu")
    assert e.value.param == "plan_on"


@pytest.mark.parametrize("n,chunk,coord", [(10, 4, 100), (1000, 256, 100), (1000, 250, 100),
                                            (999, 7, 30), (5, 2, 5)])
def test_plan_writes_cover_every_segment_once_and_never_share_a_chunk(n, chunk, coord,
                                                                      monkeypatch):
    from emodist.engine.planning import write_regions
    from emodist.store import layout
    from emodist.store import zarrio as io

    monkeypatch.setattr(io, "COORD_CHUNK_SEGMENTS", coord)
    regions = write_regions(n, chunk, votes=True, votes_mean=False)
    size = {name: min(n, coord) for name in (layout.SEGMENT, *layout.SEGMENT_COORDS)}
    size[layout.VOTES] = chunk
    for name, step in size.items():
        spans = sorted((a, b) for a, b, names in regions if name in names)
        assert spans[0][0] == 0 and spans[-1][1] == n, name
        assert all(b == c for (_, b), (c, _) in pairwise(spans)), name  # no gap, no overlap
        assert all(a % step == 0 for a, _ in spans), name  # each starts a chunk of its variable
    assert not any(layout.VOTES_MEAN in names for *_, names in regions)
    if n <= coord:
        assert len(regions) == 1


# ------------------------------------------------------------ on the workers


def header_tasks(stream) -> list[dict]:
    """The header tasks a :func:`distributed.get_task_stream` recorded."""
    return [t for t in stream.data if t["key"].startswith(TASK_NAME)]


def test_worker_planning_equals_driver_planning_in_order(small_manifest):
    from distributed import Client, LocalCluster, get_task_stream

    cat = load_dataset(str(small_manifest))
    want = plan_segments(cat, SPEC)
    seen = []
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        with get_task_stream(client) as stream:
            got = plan_segments_on_workers(client, cat, SPEC, batch_size=2,
                                           on_probed=seen.append)
        tasks = header_tasks(stream)
    assert_same_plan(got, want)
    assert sorted(seen) == [2, 2, 2] and len(tasks) == 3


@pytest.mark.cluster
@pytest.mark.s3
def test_worker_planning_of_an_s3_dataset_reads_every_header_on_a_worker(small_manifest):
    """Real `dask worker` processes plan a dataset on a moto server: the driver's plan."""
    from distributed import Client, get_task_stream

    from tests.servers import dask_cluster, make_bucket, moto_server, upload_tree

    with moto_server() as (endpoint, options):
        make_bucket(endpoint, "audio")
        upload_tree(options, small_manifest.parent, "s3://audio/set")
        cat = load_dataset("s3://audio/set/manifest.csv", storage_options=options)
        assert all(p.startswith("s3://audio/set/") for p in cat.usable()["path"])
        want = plan_segments(cat, SPEC)
        assert len(want) == 7 and [t for t, _, _ in want.problems] == ["bad", "short"]
        with dask_cluster(n_workers=2, nthreads=1, memory_limit="1GiB") as (address, _), \
                Client(address) as client:
            with get_task_stream(client) as stream:
                got = plan_segments_on_workers(client, cat, SPEC, batch_size=2)
            tasks = header_tasks(stream)
            workers = set(client.scheduler_info()["workers"])
    assert_same_plan(got, want)
    assert len(tasks) == 3 and workers and all(t["worker"] in workers for t in tasks)


@pytest.mark.cluster
@pytest.mark.s3
def test_plan_kept_on_workers_is_written_into_an_s3_store(small_manifest):
    """Real `dask worker` processes plan a moto-hosted dataset and write the plan to S3.

    The driver gets only segment counts and problems per batch; the store's
    coordinates, written by the workers from the batches they hold, are the
    driver's plan row for row, and the store is marked complete only then.
    """
    from distributed import Client

    from emodist.engine.extract import apply_plan, plan_failures, resolve_spec
    from emodist.engine.plan import plan_sized
    from emodist.engine.planning import plan_on_workers
    from emodist.features import make_groups
    from emodist.store import layout, open_store
    from emodist.store import zarrio as io
    from tests.servers import dask_cluster, make_bucket, moto_server, upload_tree

    spec = resolve_spec(SPEC.replace(groups=make_groups(["handcrafted"])), Runtime())
    with moto_server() as (endpoint, options):
        make_bucket(endpoint, "audio")
        upload_tree(options, small_manifest.parent, "s3://audio/set")
        cat = load_dataset("s3://audio/set/manifest.csv", storage_options=options)
        want = plan_segments(cat, spec)
        url = "s3://audio/features.zarr"
        with dask_cluster(n_workers=2, nthreads=1, memory_limit="1GiB") as (address, _), \
                Client(address) as client:
            seen = []
            got = plan_on_workers(client, cat, spec, batch_size=2, on_probed=seen.append)
            assert got.counts.tolist() == [2, 1, 4] and len(got) == 7
            assert sorted(seen) == [2, 2, 2] and got.n_tracks == 6
            assert ([_problem(*p) for p in got.problems]
                    == [_problem(*p) for p in want.problems])
            apply_plan(url, plan_sized(len(got), spec, chunk=3), options)
            assert io.plan_pending(url, options)
            got.write(url, options, chunk=3, votes=False, votes_mean=False)
            assert got.futures == []
        assert not io.plan_pending(url, options)
        ds = open_store(url, options)
        table = want.table
        assert list(ds["segment"].values) == table["segment_id"].tolist()
        for name in layout.SEGMENT_COORDS:
            assert list(ds[name].values) == table[name].tolist(), name
        assert plan_failures(got.problems)[0]["track_id"] == "bad"


def test_worker_planning_runs_on_its_own_client_while_another_is_current(small_manifest, tmp_path):
    """Probing and the plan writes wait on the run's client, not on the current client.

    With a closed client left current (its loop gone) the probes used to hang in
    ``as_completed`` and the writes to fail in ``distributed.wait`` ("IOLoop is closed").
    """
    from distributed import Client, LocalCluster

    from emodist.engine.extract import apply_plan, resolve_spec
    from emodist.engine.plan import plan_sized
    from emodist.engine.planning import plan_on_workers
    from emodist.features import make_groups
    from emodist.store import layout, open_store
    from emodist.store import zarrio as io
    from tests.servers import call_in_this_context, closed_current_client

    spec = resolve_spec(SPEC.replace(groups=make_groups(["handcrafted"])), Runtime())
    cat = load_dataset(str(small_manifest))
    want = plan_segments(cat, spec).table
    url = str(tmp_path / "features.zarr")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=":0") as cluster, Client(cluster) as client, \
            closed_current_client():
        done, got = call_in_this_context(
            lambda: plan_on_workers(client, cat, spec, batch_size=2))
        assert done, "probing hung on the current client's loop"
        apply_plan(url, plan_sized(len(got), spec, chunk=3), None)
        done, _ = call_in_this_context(
            lambda: got.write(url, None, chunk=3, votes=False, votes_mean=False))
        assert done, "the plan writes hung on the current client's loop"
    assert not io.plan_pending(url)
    ds = open_store(url)
    assert list(ds["segment"].values) == want["segment_id"].tolist()
    for name in layout.SEGMENT_COORDS:
        assert list(ds[name].values) == want[name].tolist(), name
