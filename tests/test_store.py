"""Feature store: template, region writes, resume detection, open (real Zarr)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from emodist.store import layout as schema
from emodist.store import zarrio as st
from emodist.spec import Config
from emodist.errors import StoreError


def _plan(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "segment_id": [f"t{i // 3}:{i % 3:03d}" for i in range(n)],
            "track_id": [f"t{i // 3}" for i in range(n)],
            "segment_index": [i % 3 for i in range(n)],
            "start_s": [5.0 * (i % 3) for i in range(n)],
            "duration_s": 5.0,
            "label": "calmness",
            "group": [f"t{i // 3}" for i in range(n)],
            "genre": "rock",
            "path": [f"/data/t{i // 3}.mp3" for i in range(n)],
        }
    )


def _make(tmp_path, n=10, chunk=4, config=None, hc=3, deep=5, votes=True):
    plan = _plan(n)
    config = config or Config(segment_seconds=5, hop_seconds=5)
    v = np.random.default_rng(0).random((n, 9)).astype(np.float32) if votes else None
    ds = st.template(
        plan,
        handcrafted_names=[f"f{i}" for i in range(hc)],
        deep_dim=deep,
        chunk=chunk,
        votes=v,
        attrs={"config": config.to_json()},
    )
    url = str(tmp_path / "s.zarr")
    st.create_store(url, ds, chunk)
    return url, plan, config, v


def test_chunk_segments_sizes():
    # big store: ~2 MiB deep chunks (2048 float32 per segment -> 256 segments)
    assert st.chunk_segments(10**6, 2048 * 4) == 256
    # small store: at least MIN_CHUNKS pieces, never fewer than MIN_CHUNK_SEGMENTS
    assert st.chunk_segments(398, 2048 * 4) == 25
    assert st.chunk_segments(20, 512) == st.MIN_CHUNK_SEGMENTS
    assert st.chunk_segments(3, 512) == 3
    assert st.chunk_segments(0, 512) == 1


def test_chunk_regions_cover_without_overlap():
    regions = st.chunk_regions(10, 4)
    assert regions == [(0, 4), (4, 8), (8, 10)]
    assert st.chunk_regions(0, 4) == []


def test_template_is_lazy_and_fixed_layout(tmp_path):
    url, plan, config, votes = _make(tmp_path, n=10, chunk=4)
    ds = st.open_store(url)
    assert ds.sizes == {"segment": 10, "handcrafted_feature": 3, "deep_feature": 5, "emotion": 9}
    assert ds[schema.HANDCRAFTED].chunks[0] == (4, 4, 2)
    assert ds[schema.DEEP].chunks[0] == (4, 4, 2)
    assert np.isnan(ds[schema.DEEP].values).all()
    assert (ds[schema.STATUS].values == schema.STATUS_PENDING).all()
    np.testing.assert_allclose(ds[schema.VOTES].values, votes)
    assert list(ds["segment_id"].values) == list(plan["segment_id"])
    assert isinstance(ds["track_id"].values[0], str)
    assert json.loads(ds.attrs["config"]) == json.loads(config.to_json())
    # no feature chunk was written by the template
    assert not (tmp_path / "s.zarr" / "deep" / "c").exists()
    # the data uses zstd
    meta = json.loads((tmp_path / "s.zarr" / "handcrafted" / "zarr.json").read_text())
    assert any(c["name"] == "zstd" for c in meta["codecs"])


def test_write_region_then_pending_and_values(tmp_path):
    url, *_ = _make(tmp_path, n=10, chunk=4)
    assert st.pending_regions(st.read_status(url), 4) == [(0, 0, 4), (1, 4, 8), (2, 8, 10)]
    hc = np.arange(12, dtype=np.float32).reshape(4, 3)
    dp = np.ones((4, 5), np.float32)
    status = np.array([1, 1, -1, 1], np.int8)
    st.write_region(url, 4, 8, {"handcrafted": hc, "deep": dp}, status)
    got = st.read_status(url)
    assert list(got) == [0, 0, 0, 0, 1, 1, -1, 1, 0, 0]
    assert st.pending_regions(got, 4) == [(0, 0, 4), (2, 8, 10)]
    ds = st.open_store(url)
    np.testing.assert_array_equal(ds[schema.HANDCRAFTED].values[4:8], hc)
    assert np.isnan(ds[schema.HANDCRAFTED].values[:4]).all()
    # last, shorter chunk
    st.write_region(url, 8, 10, {"handcrafted": hc[:2]}, np.ones(2, np.int8))
    assert st.pending_regions(st.read_status(url), 4) == [(0, 0, 4)]


def test_write_region_refuses_misaligned_or_misshaped(tmp_path):
    url, *_ = _make(tmp_path, n=10, chunk=4)
    with pytest.raises(StoreError, match="not one chunk"):
        st.write_region(url, 2, 6, {}, np.ones(4, np.int8))
    with pytest.raises(StoreError, match="does not fit"):
        st.write_region(url, 0, 4, {"deep": np.ones((4, 6), np.float32)}, np.ones(4, np.int8))
    with pytest.raises(StoreError, match="no 'nope' array"):
        st.write_region(url, 0, 4, {"nope": np.ones((4, 1))}, np.ones(4, np.int8))
    # nothing was marked done by the refused writes
    assert (st.read_status(url) == 0).all()


def test_check_compatible(tmp_path):
    url, plan, config, _ = _make(tmp_path)
    attrs = st.read_attrs(url)
    ids = st.read_segment_ids(url)
    st.check_compatible(url, attrs, config.replace(batch_size=7), list(plan["segment_id"]), ids)
    with pytest.raises(StoreError, match=r"segment_seconds=5(\.0)?, not 15\.0"):
        st.check_compatible(url, attrs, config.replace(segment_seconds=15.0),
                            list(plan["segment_id"]), ids)
    with pytest.raises(StoreError, match="another dataset plan"):
        st.check_compatible(url, attrs, config, list(plan["segment_id"])[:-1], ids)
    with pytest.raises(StoreError, match="not an emodist feature store"):
        st.check_compatible(url, {}, config, [], [])


def test_finish_store_updates_consolidated_attrs(tmp_path):
    url, *_ = _make(tmp_path)
    fails = [{"track_id": "t1", "path": "/data/t1.mp3", "error": "cannot decode"}]
    st.finish_store(url, {"failures": json.dumps(fails)})
    ds = st.open_store(url)  # consolidated metadata must carry the new attrs
    assert st.failures(ds) == fails
    assert st.store_chunk(url) == 4


def test_merge_failures_keeps_one_per_track():
    a = [{"track_id": "1", "path": "p1", "error": "old"}]
    b = [{"track_id": "1", "path": "p1", "error": "new"}, {"track_id": 2, "path": "p2", "error": "x"}]
    merged = st.merge_failures(a, b)
    assert merged == [{"track_id": "1", "path": "p1", "error": "new"},
                      {"track_id": "2", "path": "p2", "error": "x"}]


def test_open_store_missing_or_foreign(tmp_path):
    with pytest.raises(StoreError, match="no feature store"):
        st.open_store(str(tmp_path / "absent.zarr"))
    assert not st.store_exists(str(tmp_path / "absent.zarr"))
    import zarr

    zarr.open_group(str(tmp_path / "other.zarr"), mode="w", zarr_format=3)
    with pytest.raises(StoreError):
        st.read_status(str(tmp_path / "other.zarr"))


def test_remove_store(tmp_path):
    url, *_ = _make(tmp_path)
    assert st.store_exists(url)
    st.remove_store(url)
    assert not st.store_exists(url)
    st.remove_store(url)  # absent: no error


def test_build_dataset_store_round_trip(tmp_path):
    """A store written by schema.build_dataset (as other tests do) opens here."""
    plan = _plan(6)
    ds = schema.build_dataset(plan, ["a", "b"], 4,
                              handcrafted=np.ones((6, 2)), status=np.ones(6),
                              attrs={"config": Config().to_json()})
    ds.to_zarr(tmp_path / "b.zarr", zarr_format=3, consolidated=True)
    got = st.open_store(str(tmp_path / "b.zarr"))
    assert (got[schema.STATUS].values == 1).all()
    assert list(got["handcrafted_feature"].values) == ["a", "b"]


@pytest.mark.s3
def test_store_on_s3_moto():
    """Template, region write and open through s3fs against a moto server."""
    from tests.servers import make_bucket, moto_server

    with moto_server() as (endpoint, options):
        make_bucket(endpoint, "feat")
        plan = _plan(5)
        ds = st.template(plan, handcrafted_names=["a"], deep_dim=2, chunk=2,
                         attrs={"config": Config().to_json()})
        url = "s3://feat/s.zarr"
        st.create_store(url, ds, 2, options)
        assert st.store_exists(url, options)
        st.write_region(url, 2, 4, {"deep": np.full((2, 2), 3.0)}, np.ones(2, np.int8), options)
        st.finish_store(url, {"failures": "[]"}, options)
        got = st.open_store(url, options)
        assert list(got[schema.STATUS].values) == [0, 0, 1, 1, 0]
        np.testing.assert_array_equal(got[schema.DEEP].values[2:4], 3.0)
        text = json.dumps(dict(got.attrs))
        assert options["secret"] not in text and options["key"] not in text
