"""``emodist verify`` and ``extract --repair`` on real finished stores (local folders).

One small generated dataset (6 tracks of 8 s, 4 s segments, chunks of 2) is
extracted once (handcrafted only); each test damages a copy of that store on
disk the way a lost or cut upload would, and checks that verify names the
damage by group and segment range and that a repair gives back the original.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr

from emodist.cli import main
from emodist.engine.extract import run_extract
from emodist.engine.plan import plan
from emodist.errors import StoreError
from emodist.features import make_groups
from emodist.spec import ExtractionSpec, Runtime
from emodist.store import layout, open_store
from emodist.store import zarrio as io
from emodist.store.verify import repair_regions, state_of, verify_store

CHUNK = 2


@pytest.fixture(scope="module")
def dataset(demo_data) -> Path:
    return demo_data(6, 1, 8.0)


@pytest.fixture(scope="module")
def spec() -> ExtractionSpec:
    return ExtractionSpec(groups=make_groups(["handcrafted"]), segment_seconds=4.0)


def rt(client, **kw) -> Runtime:
    return Runtime(client=client, progress=False, **kw)


@pytest.fixture(scope="module")
def original(tmp_path_factory, dataset, spec, client) -> str:
    url = str(tmp_path_factory.mktemp("orig") / "orig.zarr")
    result = run_extract(str(dataset), url, spec, rt(client, chunk=CHUNK))
    assert result.n_done == 12 and result.n_segments == 12
    return url


@pytest.fixture
def store(tmp_path, original) -> str:
    url = str(tmp_path / "s.zarr")
    shutil.copytree(original, url)
    return url


def assert_equal_stores(url, ref):
    got, want = open_store(url), open_store(ref)
    assert list(got["segment"].values) == list(want["segment"].values)
    np.testing.assert_array_equal(got["handcrafted_status"].values,
                                  want["handcrafted_status"].values)
    np.testing.assert_allclose(got["handcrafted"].values, want["handcrafted"].values,
                               rtol=1e-5, atol=1e-6)
    assert got.attrs["feature_groups"] == want.attrs["feature_groups"]


def test_sound_store_verifies(original, capsys):
    report = verify_store(original)
    assert report.ok and report.n_segments == 12 and report.n_chunks == 6
    assert report.groups == ["handcrafted"]
    assert main(["verify", original]) == 0
    assert "sound (12 segments, 1 groups, 6 chunks read)" in capsys.readouterr().out


def test_deleted_and_truncated_chunks_reported_then_repaired(store, original, dataset, spec,
                                                             client, capsys):
    chunks = Path(store) / "handcrafted" / "c"
    (chunks / "1" / "0").unlink()  # deleted: reads back as fill values
    with open(chunks / "3" / "0", "r+b") as f:  # truncated: cannot be decoded
        f.truncate(20)
    # the statuses still say done: the store looks complete
    assert (io.read_state(store).status["handcrafted"] == layout.STATUS_DONE).all()
    report = verify_store(store)
    assert not report.ok and report.repairable
    assert [(d.group, d.start, d.stop) for d in report.damage] == [
        ("handcrafted", 2, 4), ("handcrafted", 6, 8)]
    assert "handcrafted/c/1/0 is missing" in report.damage[0].message
    assert "handcrafted/c/3/0 is unreadable" in report.damage[1].message
    assert repair_regions(report) == {"handcrafted": [(2, 4), (6, 8)]}

    assert main(["verify", store]) == 3
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "damaged: group handcrafted segments [2, 4): chunk file handcrafted/c/1/0 is missing"
    assert out[1].startswith("damaged: group handcrafted segments [6, 8): chunk handcrafted/c/3/0")
    assert "--repair" in out[2]

    # a resume without --repair refuses, in one line, and writes nothing
    before = (chunks / "0" / "0").stat().st_mtime_ns
    with pytest.raises(StoreError, match=r"is damaged: group handcrafted segments \[2, 4\).*"
                                         r"rerun with --repair"):
        run_extract(str(dataset), store, spec, rt(client))
    assert not (chunks / "1" / "0").exists()

    result = run_extract(str(dataset), store, spec, rt(client), repair=True)
    assert result.n_written == 4 and len(result.repaired) == 2  # exactly the two chunks
    assert (chunks / "0" / "0").stat().st_mtime_ns == before  # the sound ones untouched
    assert verify_store(store).ok
    assert_equal_stores(store, original)


def test_cli_repair_flag(store, original, dataset, capsys):
    (Path(store) / "handcrafted" / "c" / "4" / "0").unlink()
    base = ["extract", str(dataset), "--store", store, "--features", "handcrafted",
            "--segment-seconds", "4", "--quiet", "--workers", "1",
            "--threads-per-worker", "1"]
    assert main(base) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "segments [8, 10): chunk file handcrafted/c/4/0 is missing" in err[0]
    assert main(base + ["--repair"]) == 0
    out = capsys.readouterr().out
    assert "repaired group handcrafted segments [8, 10)" in out
    assert_equal_stores(store, original)


def test_status_and_coordinate_damage(store, original, dataset, spec, client):
    g = zarr.open_group(store, mode="r+")
    status = g["handcrafted_status"]
    status[2] = 7  # not a flag value
    with open(Path(store) / "handcrafted_status" / "c" / "4", "r+b") as f:
        f.truncate(5)
    g["handcrafted"][10, 3] = np.nan  # a done row that holds a NaN
    report = verify_store(store)
    msgs = [d.message for d in report.damage]
    assert any("segments [2, 4): status 7 is not one of -1, 0, 1" in m for m in msgs), msgs
    assert any("segments [8, 10): status chunk handcrafted_status/c/4 is unreadable" in m
               for m in msgs), msgs
    assert any("segments [10, 12): 1 done segments hold non-finite values" in m for m in msgs)
    assert repair_regions(report) == {"handcrafted": [(2, 4), (8, 10), (10, 12)]}
    # the planner sees the unreadable status chunk as pending, and repairs exactly those
    result = run_extract(str(dataset), store, spec, rt(client), repair=True)
    assert result.n_written == 6
    assert_equal_stores(store, original)
    # a duplicated segment id cannot be repaired by recomputing chunks
    seg = g["segment"]
    ids = np.asarray(seg[:], dtype=object)
    ids[1] = ids[0]
    seg[:] = ids
    report = verify_store(store)
    assert not report.repairable
    assert report.damage[0].message == f"segment id {seg[0]} appears more than once"
    with pytest.raises(StoreError, match="cannot be repaired: segment id .* rebuild it with "
                                         "--overwrite"):
        run_extract(str(dataset), store, spec, rt(client), repair=True)


def test_recorded_group_missing_is_rebuilt(store, original, dataset, spec, client):
    shutil.rmtree(Path(store) / "handcrafted_status")
    io.finish_store(store, {})  # re-consolidate: the variable is gone for good
    report = verify_store(store)
    assert [d.message for d in report.damage] == [
        "group handcrafted is recorded but handcrafted_status is missing"]
    assert repair_regions(report) == {"handcrafted": None}
    result = run_extract(str(dataset), store, spec, rt(client), repair=True)
    assert result.groups_replaced == ["handcrafted"] and result.n_written == 12
    assert_equal_stores(store, original)


def test_damage_during_a_run_fails_the_final_check(tmp_path, dataset, spec, client):
    url = str(tmp_path / "s.zarr")
    lost = []

    def lose_first_chunk(task, res, err):
        if not lost:
            (Path(url) / "handcrafted" / "c" / str(task.chunk) / "0").unlink()
            lost.append(task)

    with pytest.raises(StoreError, match=r"is damaged: group handcrafted segments "
                                         r"\[\d+, \d+\): chunk file .* missing after the run"):
        run_extract(str(dataset), url, spec, rt(client, chunk=CHUNK), on_result=lose_first_chunk)
    assert run_extract(str(dataset), url, spec, rt(client), repair=True).n_written == CHUNK


def test_plan_marks_damaged_regions_pending(original, dataset, spec):
    from emodist.data.catalog import load_dataset
    from emodist.data.segments import plan_segments
    from emodist.engine.extract import resolve_spec

    table = plan_segments(load_dataset(str(dataset)), spec).table
    resolved = resolve_spec(spec, Runtime())
    report = verify_store(original)
    state = state_of(report)
    assert plan(table, resolved, state=state).tasks == []
    p = plan(table, resolved, state=state, repair={"handcrafted": [(4, 6)]})
    assert [(t.start, t.stop, t.groups) for t in p.tasks] == [(4, 6, ("handcrafted",))]
    assert p.pending == 2 and not p.drop
    p = plan(table, resolved, state=state, repair={"handcrafted": None})
    assert p.drop == ["handcrafted"] and len(p.tasks) == 6
