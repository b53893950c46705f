"""The store layout for N groups, the pure extraction plan and the region writes, on real Zarr."""

from __future__ import annotations

import json

import numpy as np
import pytest

from emodist.engine.plan import plan
from emodist.errors import StoreError
from emodist.spec import ExtractionSpec
from emodist.store import layout, open_store
from emodist.store import zarrio as io
from tests.stores import group, make_table

HC = group("handcrafted", ["a", "b", "c"])
EMB = group("emb", [f"e{i}" for i in range(5)], model=True)


def _spec(*groups, **kw) -> ExtractionSpec:
    return ExtractionSpec(groups=groups or (HC, EMB), segment_seconds=15.0, **kw)


def _new_store(tmp_path, n_tracks=5, per_track=2, chunk=4, spec=None):
    """Create a store from a plan, as the driver does; returns (url, table, plan)."""
    table = make_table(n_tracks, per_track)
    votes = np.random.default_rng(0).dirichlet(np.ones(9), size=len(table))
    p = plan(table, spec or _spec(), votes=votes, attrs={"dataset": "t"}, chunk=chunk)
    url = str(tmp_path / "s.zarr")
    io.create_store(url, p.create, p.chunk)
    return url, table, p, votes


def test_chunk_segments_sizes():
    assert io.chunk_segments(100_000, 2048 * 4) == 256  # 2 MiB of the widest array
    assert io.chunk_segments(398, 2048 * 4) == 25  # at least 16 chunks
    assert io.chunk_segments(10, 4) == 4  # at least 4 segments per chunk
    assert io.chunk_segments(0, 4) == 1


def test_chunk_regions_cover_without_overlap():
    assert io.chunk_regions(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert io.chunk_regions(0, 4) == []


def test_template_layout_for_groups(tmp_path):
    url, table, _p, votes = _new_store(tmp_path)
    ds = open_store(url)
    assert ds.sizes == {"segment": 10, "handcrafted_feature": 3, "emb_feature": 5, "emotion": 9}
    assert ds.emodist.groups == ["handcrafted", "emb"]
    assert ds["handcrafted"].chunks[0] == (4, 4, 2)
    assert np.isnan(ds["emb"].values).all()
    assert (ds["emb_status"].values == layout.STATUS_PENDING).all()
    np.testing.assert_allclose(ds["votes"].values, votes, rtol=1e-6)
    # the segment dimension is indexed by segment id
    assert list(ds["segment"].values) == list(table["segment_id"])
    assert float(ds.sel(segment="3:001")["start_s"]) == 15.0
    assert isinstance(ds["track_id"].values[0], str)
    # native attributes, not JSON text; CF-style variable attributes
    assert ds.attrs["spec"]["segment_seconds"] == 15.0
    assert ds.attrs["feature_groups"]["emb"]["model_sha256"] == "0" * 64
    assert ds["emb_status"].attrs["flag_meanings"] == "failed pending done"
    assert ds["start_s"].attrs["units"] == "s"
    # no feature chunk was written by the template, and the data uses zstd
    assert not (tmp_path / "s.zarr" / "emb" / "c").exists()
    meta = json.loads((tmp_path / "s.zarr" / "handcrafted" / "zarr.json").read_text())
    assert any(c["name"] == "zstd" for c in meta["codecs"])


def test_plan_tasks_carry_their_rows_as_columns():
    """Chunks of 3 over tracks of 2 segments: a track cut by a chunk edge is in two
    tasks; each task's rows are the table's, and each track's strings are made once."""
    from emodist.engine.worker import SegmentRows, track_spans

    table = make_table(5, 2)
    table.loc[table["track_id"] == "4", "duration_s"] = 9.5
    p = plan(table, _spec(), chunk=3)
    want = list(zip(table["track_id"], table["path"], table["start_s"], table["duration_s"]))
    assert [(t.start, t.stop) for t in p.tasks] == [(0, 3), (3, 6), (6, 9), (9, 10)]
    for t in p.tasks:
        assert isinstance(t.rows, SegmentRows) and len(t.rows) == t.stop - t.start
        assert list(t.rows) == want[t.start:t.stop]
        assert t.rows.owner.dtype == np.int32 and t.rows.start_s.dtype == np.float64
    assert p.tasks[1].rows.tracks == (("2", "/music/2.mp3"), ("3", "/music/3.mp3"))
    assert list(p.tasks[1].rows.owner) == [0, 1, 1]
    # the last segment of track 4 ends at 15 + 9.5 s
    assert track_spans(p.tasks[2].rows) == [("4", "/music/4.mp3", 24.5, [0, 1]),
                                            ("5", "/music/5.mp3", 15.0, [2])]
    assert track_spans(p.tasks[2].rows) == track_spans(list(p.tasks[2].rows))
    again = SegmentRows.from_tuples(want[3:6])
    assert again.tracks == p.tasks[1].rows.tracks and list(again) == want[3:6]
    assert len({p.tasks[0], p.tasks[1], p.tasks[0]}) == 2  # tasks stay hashable


def test_shared_strings_hold_one_string_per_value():
    import pandas as pd

    col = pd.Series(["rock", "jazz", None, "rock", float("nan"), "jazz"] * 2)
    out = layout.shared_strings(col)
    assert out.dtype == object
    assert list(out) == ["rock", "jazz", "", "rock", "", "jazz"] * 2
    assert all(type(v) is str for v in out)
    assert out[0] is out[3] is out[6] and out[1] is out[5] and out[2] is out[4]
    coords = layout.segment_coords(make_table(4, 3))
    assert coords["path"].values[0] is coords["path"].values[2]
    assert coords["path"].values[0] is not coords["path"].values[3]
    assert coords["start_s"].attrs["units"] == "s" and coords["segment"].dtype == object


def test_region_writes_per_group(tmp_path):
    url, _table, _p, _ = _new_store(tmp_path)
    hc = np.arange(12, dtype=np.float32).reshape(4, 3)
    io.write_region(url, 4, 8, {"handcrafted": hc}, {"handcrafted": np.array([1, 1, -1, 1])})
    state = io.read_state(url)
    assert list(state.status["handcrafted"]) == [0, 0, 0, 0, 1, 1, -1, 1, 0, 0]
    assert (state.status["emb"] == 0).all()  # the other group is untouched
    ds = open_store(url)
    np.testing.assert_array_equal(ds["handcrafted"].values[4:8], hc)
    assert np.isnan(ds["handcrafted"].values[:4]).all()
    assert np.isnan(ds["emb"].values[4:8]).all()
    with pytest.raises(StoreError, match="cannot write"):
        io.write_region(url, 0, 4, {"nope": np.ones((4, 1))}, {})


def test_plan_resumes_only_pending_chunks_and_groups(tmp_path):
    url, table, p, _ = _new_store(tmp_path)
    assert [(t.start, t.stop, t.groups) for t in p.tasks] == [
        (0, 4, ("handcrafted", "emb")), (4, 8, ("handcrafted", "emb")),
        (8, 10, ("handcrafted", "emb"))]
    io.write_region(url, 0, 4, {"handcrafted": np.ones((4, 3))}, {"handcrafted": np.ones(4)})
    io.write_region(url, 4, 8, {"emb": np.ones((4, 5))}, {"emb": np.ones(4)})
    again = plan(table, _spec(), state=io.read_state(url))
    assert again.resumed and again.create is None and again.add is None
    assert [(t.start, t.groups) for t in again.tasks] == [
        (0, ("emb",)), (4, ("handcrafted",)), (8, ("handcrafted", "emb"))]
    assert again.pending == 4 + 4 + 2 * 2 and again.total == 20


def test_plan_adds_a_group_to_an_existing_store(tmp_path):
    url, table, _, _ = _new_store(tmp_path, spec=_spec(HC))
    io.write_region(url, 0, 4, {"handcrafted": np.ones((4, 3))}, {"handcrafted": np.ones(4)})
    p = plan(table, _spec(HC, EMB), state=io.read_state(url))
    assert set(p.add.data_vars) == {"emb", "emb_status"}
    io.add_groups(url, p.add, p.chunk)
    recorded = dict(io.read_state(url).attrs["feature_groups"])
    recorded["emb"] = EMB.describe()
    io.finish_store(url, {"feature_groups": recorded})
    ds = open_store(url)
    assert ds.emodist.groups == ["handcrafted", "emb"]
    np.testing.assert_array_equal(ds["handcrafted"].values[:4], 1.0)  # kept
    assert ds.attrs["spec"]["segment_seconds"] == 15.0  # store attributes kept
    assert [t.groups for t in p.tasks] == [("emb",), ("handcrafted", "emb"),
                                           ("handcrafted", "emb")]


def test_plan_refuses_a_changed_group_by_name_then_replaces_it(tmp_path):
    url, table, _, _ = _new_store(tmp_path)
    changed = group("emb", [f"e{i}" for i in range(5)], model=True)
    object.__setattr__(changed, "sha256", "1" * 64)
    with pytest.raises(StoreError, match=r"group emb was written with model_sha256='0+', "
                                         r"not '1+'") as err:
        plan(table, _spec(HC, changed), state=io.read_state(url))
    assert err.value.param == "overwrite"
    p = plan(table, _spec(HC, changed), state=io.read_state(url), overwrite=True)
    assert p.drop == ["emb"] and not p.replace_store
    assert all(t.groups in (("handcrafted", "emb"),) for t in p.tasks)


def test_plan_refuses_another_spec_or_plan(tmp_path):
    url, table, _, _ = _new_store(tmp_path)
    state = io.read_state(url)
    with pytest.raises(StoreError, match=r"segment_seconds=15\.0, not 10\.0"):
        plan(table, _spec().replace(segment_seconds=10.0), state=state)
    with pytest.raises(StoreError, match="another dataset plan"):
        plan(table.iloc[:-1], _spec(), state=state)
    renamed = table.copy()
    renamed.loc[renamed.index[3], "segment_id"] = "another_000"  # same length, one id differs
    with pytest.raises(StoreError, match="another dataset plan"):
        plan(renamed, _spec(), state=state)
    p = plan(table.iloc[:-1], _spec(), state=state, overwrite=True)
    assert p.replace_store and p.create is not None


def test_store_state_keeps_the_index_as_an_array(tmp_path):
    url, table, _, _ = _new_store(tmp_path)
    ids = io.read_state(url).segment_ids
    assert isinstance(ids, np.ndarray) and ids.shape == (len(table),)
    if np.lib.NumpyVersion(np.__version__) >= "2.0.0":
        assert ids.dtype.kind == "T"  # NumPy's StringDType: no Python string per segment
    assert [str(s) for s in ids] == list(table["segment_id"])
    status = io.read_status(url, ["handcrafted", "not_there"])
    assert list(status) == ["handcrafted"] and status["handcrafted"].shape == (len(table),)


@pytest.mark.parametrize("kind", ["StringDType", "object", "U"])
def test_same_strings_and_first_duplicate(kind):
    values = ["b_1", "a_2", "c_3", "a_1"]
    dtype = {"StringDType": "T", "object": object, "U": None}[kind]
    if dtype == "T":
        if np.lib.NumpyVersion(np.__version__) < "2.0.0":
            pytest.skip("NumPy 1.26 has no StringDType")
        dtype = np.dtypes.StringDType()
    stored = np.array(values, dtype=dtype)
    assert layout.same_strings(stored, list(values))
    assert layout.same_strings(stored, np.array(values, dtype=object))
    assert not layout.same_strings(stored, values[:-1])
    assert not layout.same_strings(stored, values[:2] + ["c_4", "a_1"])
    assert layout.first_duplicate(stored) is None
    twice = np.array(values + ["c_3", "a_2"], dtype=dtype)
    assert layout.first_duplicate(twice) == "a_2"  # the smallest repeated value


def test_plan_redoes_unrecorded_failures_and_retry_failed(tmp_path):
    url, table, _, _ = _new_store(tmp_path)
    io.write_region(url, 0, 4, {"handcrafted": np.ones((4, 3))},
                    {"handcrafted": np.array([1, 1, -1, -1])})  # track 2 failed, unrecorded
    p = plan(table, _spec(HC), state=io.read_state(url))
    assert 0 in [t.chunk for t in p.tasks]
    fail = [{"track_id": "2", "path": "/music/2.mp3", "error": "bad", "group": ""}]
    io.finish_store(url, {"failures": fail})
    p = plan(table, _spec(HC), state=io.read_state(url))
    assert 0 not in [t.chunk for t in p.tasks] and p.failures == fail
    p = plan(table, _spec(HC), state=io.read_state(url), retry_failed=True)
    assert 0 in [t.chunk for t in p.tasks] and p.failures == []


def test_merge_failures_keeps_one_per_track_and_group():
    a = [{"track_id": "1", "path": "p1", "error": "old", "group": "g"}]
    b = [{"track_id": "1", "path": "p1", "error": "new", "group": "g"},
         {"track_id": 2, "path": "p2", "error": "x"}]
    assert io.merge_failures(a, b) == [
        {"track_id": "1", "path": "p1", "error": "new", "group": "g"},
        {"track_id": "2", "path": "p2", "error": "x", "group": ""}]


def test_open_store_missing_or_foreign(tmp_path):
    import zarr

    with pytest.raises(StoreError, match="no feature store"):
        open_store(str(tmp_path / "absent.zarr"))
    assert not io.store_exists(str(tmp_path / "absent.zarr"))
    zarr.open_group(str(tmp_path / "other.zarr"), mode="w", zarr_format=3)
    with pytest.raises(StoreError, match="not an emodist feature store"):
        open_store(str(tmp_path / "other.zarr"))


def test_remove_store(tmp_path):
    url, *_ = _new_store(tmp_path)
    assert io.store_exists(url)
    io.remove_store(url)
    assert not io.store_exists(url)
    io.remove_store(url)  # absent: no error


@pytest.mark.s3
def test_store_on_s3_moto():
    """Template, region write and open through s3fs against a moto server."""
    from tests.servers import make_bucket, moto_server

    with moto_server() as (endpoint, options):
        make_bucket(endpoint, "feat")
        table = make_table(5, 1)
        p = plan(table, _spec(), chunk=2)
        url = "s3://feat/s.zarr"
        io.create_store(url, p.create, 2, options)
        assert io.store_exists(url, options)
        io.write_region(url, 2, 4, {"emb": np.full((2, 5), 3.0)}, {"emb": np.ones(2)}, options)
        io.finish_store(url, {"failures": []}, options)
        got = open_store(url, options)
        assert list(got["emb_status"].values) == [0, 0, 1, 1, 0]
        np.testing.assert_array_equal(got["emb"].values[2:4], 3.0)
        text = json.dumps(dict(got.attrs))
        assert options["secret"] not in text and options["key"] not in text
