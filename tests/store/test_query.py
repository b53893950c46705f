"""The store read path: open_store, ds.emodist (select / similar / info) and the CLI.

Every store is a real Zarr store written by :mod:`tests.stores`; expected
values are computed here with plain numpy from the arrays that were written.
"""

from __future__ import annotations

import io
import itertools
import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from emodist.cli import main
from emodist.data.labels import GEMS
from emodist.errors import EmodistError, StoreError
from emodist.store import counting_store, layout, open_store
from emodist.store import select as select_mod
from emodist.store.index import META_COLUMNS
from emodist.store.info import info as info_fn
from emodist.store.names import suggest
from emodist.store.select import select as select_fn
from emodist.store.similar import column_stats, distances, merge_topk
from emodist.store.similar import similar as similar_fn
from tests.store.query_store import (
    CHUNK,
    EMB_DIM,
    EMB_NAMES,
    FAILURES,
    GROUPS,
    HC_NAMES,
    IDS,
    N_TRACKS,
    STATUS,
    TABLE,
    TEMPO_NAMES,
    TRACKS,
    N,
    brute_force,
    done,
    nearest,
    write_test_store,
    zscore,
)
from tests.stores import make_table, write_store


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("query") / "features.zarr"
    values = write_test_store(path)
    return str(path), values


@pytest.fixture
def ds(store):
    return open_store(store[0])


def features_of(df: pd.DataFrame) -> np.ndarray:
    return df.iloc[:, len(META_COLUMNS):].to_numpy()


# --------------------------------------------------------------------------- opening


def test_open_store_is_lazy_and_reads_no_feature_chunks(store):
    path, _ = store
    counter = counting_store(path)
    ds = open_store(counter)
    assert ds.sizes[layout.SEGMENT] == N
    for g in GROUPS:
        assert type(ds[g].data).__name__ == "Array"  # dask, not loaded
    read = set(counter.keys)
    assert "zarr.json" in read
    heavy = tuple(f"{v}/" for v in GROUPS + [layout.status_name(g) for g in GROUPS]
                  + ["votes", "votes_mean"])
    assert not any(k.startswith(heavy) for k in read), sorted(read)


def test_open_store_errors_name_the_path(tmp_path):
    with pytest.raises(StoreError, match="no feature store"):
        open_store(tmp_path / "missing.zarr")
    other = tmp_path / "other.zarr"
    xr.Dataset({"x": ("a", np.arange(3))}).to_zarr(str(other), zarr_format=3, consolidated=True)
    with pytest.raises(StoreError, match="not an emodist feature store"):
        open_store(other)


def test_segment_dimension_is_indexed_by_segment_id(ds, store):
    _, v = store
    one = ds.sel(segment="12:001")
    row = int(np.flatnonzero(IDS == "12:001")[0])
    assert str(one["track_id"].values) == "12" and int(one["segment_index"]) == 1
    np.testing.assert_array_equal(one["handcrafted"].values, v["handcrafted"][row])
    np.testing.assert_array_equal(one["inception_v3"].values, v["inception_v3"][row])
    assert int(one["tempo_status"]) == STATUS["tempo"][row]
    many = ds.sel(segment=["30:003", "1:002"])
    np.testing.assert_array_equal(many["tempo"].values,
                                  v["tempo"][[int(np.flatnonzero(IDS == s)[0])
                                              for s in ("30:003", "1:002")]])
    # decoded strings and native attributes
    assert all(type(s) is str for s in ds["segment"].values[:3])
    assert list(ds["label"].values[:5]) == list(TABLE["label"][:5])
    assert isinstance(ds.attrs["feature_groups"], dict)
    assert list(ds.attrs["feature_groups"]) == GROUPS
    assert ds.attrs["failures"] == FAILURES
    with pytest.raises(KeyError):
        ds.sel(segment="99:000")


def test_accessor_groups_and_cached_index(store):
    path, _ = store
    counter = counting_store(path)
    ds = open_store(counter)
    assert ds.emodist.groups == GROUPS
    counter.reset()
    index = ds.emodist.index
    # the statuses and numeric coordinates are read; the strings open_store decoded are not
    read = {k.split("/")[0] for k in counter.keys}
    assert {layout.status_name(g) for g in GROUPS} <= read
    assert not read & {"track_id", "label", "group", "genre", "path", "segment"}, read
    assert ds.emodist.index is index  # built once, kept with the Dataset
    assert index.n == N and index.groups == GROUPS
    for g in GROUPS:
        np.testing.assert_array_equal(index.status[g], STATUS[g])
    ds.emodist.select(tracks="3", features="rms_mean")
    counter.reset()
    ds.emodist.select(tracks="4", features="rms_mean")
    assert ds.emodist.index is index
    assert not any(k.startswith(("track_id/", "handcrafted_status/")) for k in counter.keys)
    # another open of the same store has its own accessor and index
    assert open_store(path).emodist.index is not index


def test_subset_dataset_gets_its_own_index(store):
    path, v = store
    ds = open_store(path)
    full = ds.emodist.index
    sub = ds.isel(segment=slice(0, 10))
    assert sub.emodist is not ds.emodist
    assert sub.emodist.index is not full and sub.emodist.index.n == 10
    assert ds.emodist.index is full and full.n == N  # the parent's state is untouched

    rows = np.flatnonzero(done("inception_v3")[:10])
    df = sub.emodist.select(features="inception_v3")
    assert list(df["segment_id"]) == list(IDS[rows])
    np.testing.assert_array_equal(features_of(df), v["inception_v3"][rows])
    with pytest.raises(EmodistError, match="unknown track '30'"):
        sub.emodist.select(tracks="30")  # not in the subset

    x = v["inception_v3"][:10]
    d = brute_force(x, x[2], "cosine")
    allowed = done("inception_v3")[:10].copy()
    allowed[2] = False
    expect = nearest(d, allowed, 4)
    got = sub.emodist.similar("1:002", k=4)
    assert list(got["segment_id"]) == list(IDS[:10][expect])
    np.testing.assert_allclose(got["distance"], d[expect], rtol=1e-5, atol=1e-6)
    # standardised over the subset's own done rows, not the whole store's
    hc_done = done("handcrafted")[:10]
    z = zscore(v["handcrafted"][:10], hc_done)
    d = brute_force(z, z[0], "euclidean")
    allowed = hc_done.copy()
    allowed[0] = False
    expect = nearest(d, allowed, 3)
    got = sub.emodist.similar("1:000", k=3, features="handcrafted", metric="euclidean")
    assert list(got["segment_id"]) == list(IDS[:10][expect])
    np.testing.assert_allclose(got["distance"], d[expect], rtol=1e-4)


def test_scattered_subset_returns_its_own_positions(store):
    path, v = store
    ds = open_store(path)
    picks = np.array([100, 3, 57, 41, 8, 119, 64])  # unsorted, across chunks
    sub = ds.isel(segment=picks)
    df = sub.emodist.select(features="handcrafted+tempo")
    keep = done("handcrafted", "tempo")[picks]
    assert list(df["segment_id"]) == list(IDS[picks][keep])  # the subset's order
    np.testing.assert_array_equal(
        features_of(df), np.hstack([v["handcrafted"], v["tempo"]])[picks][keep])
    same = sub.emodist.select(segments=["30:003", "1:003"], features="tempo")
    assert list(same["segment_id"]) == ["1:003", "30:003"]  # the subset's order
    np.testing.assert_array_equal(features_of(same), v["tempo"][[3, 119]])
    sel = ds.sel(segment=["30:003", "1:001"])
    assert list(sel.emodist.select(features="rms_mean")["segment_id"]) == ["30:003", "1:001"]


def test_subset_reads_only_its_chunks(store):
    path, _ = store
    counter = counting_store(path)
    sub = open_store(counter).isel(segment=slice(56, 70))  # chunks 8 (56..62) and 9 (63..69)
    assert sub.emodist.index.n
    counter.reset()
    df = sub.emodist.select(features="inception_v3")
    assert len(df) == 14
    assert sorted({k for k in counter.keys if k.startswith("inception_v3/")}) == [
        "inception_v3/c/8/0", "inception_v3/c/9/0"]


def test_in_memory_datasets_are_queried_too(store, tmp_path):
    """A loaded store, a computed copy and a Dataset built in memory answer the same."""
    path, v = store
    mem = write_store(tmp_path / "again.zarr", TABLE,
                      {"handcrafted": (HC_NAMES, v["handcrafted"]),
                       "inception_v3": (EMB_NAMES, v["inception_v3"]),
                       "tempo": (TEMPO_NAMES, v["tempo"])},
                      status=STATUS, votes=v["votes"], votes_mean=v["votes_mean"], chunk=CHUNK,
                      model_groups=["inception_v3"])
    rows = np.flatnonzero(np.isin(TRACKS, ["2", "26"]) & done("handcrafted", "tempo"))
    q_pos = 17
    x = v["inception_v3"]
    d = brute_force(x, x[q_pos], "euclidean")
    allowed = done("inception_v3")
    allowed[q_pos] = False
    expect = nearest(d, allowed, 5)
    for name, obj in [("loaded", open_store(path).load()), ("computed", open_store(path).compute()),
                      ("built", mem)]:
        df = obj.emodist.select(tracks=["2", "26"], features="handcrafted+tempo")
        assert list(df["segment_id"]) == list(IDS[rows]), name
        np.testing.assert_array_equal(features_of(df),
                                      np.hstack([v["handcrafted"], v["tempo"]])[rows])
        got = obj.emodist.similar(IDS[q_pos], k=5, metric="euclidean", block_bytes=500)
        assert list(got["segment_id"]) == list(IDS[expect]), name
        np.testing.assert_allclose(got["distance"], d[expect], rtol=1e-5)
        summary = obj.emodist.info()
        assert summary["complete"] == int(done().sum()), name
        assert summary["chunking"]["tempo"]["shape"] == [N, 3]


def test_functional_forms_take_a_dataset(ds):
    pd.testing.assert_frame_equal(select_fn(ds, labels="power", features="tempo"),
                                  ds.emodist.select(labels="power", features="tempo"))
    pd.testing.assert_frame_equal(similar_fn(ds, "5:001", k=4),
                                  ds.emodist.similar("5:001", k=4))
    assert info_fn(ds) == ds.emodist.info()


# --------------------------------------------------------------------------- select


def test_select_one_track_values_and_metadata(ds, store):
    _, v = store
    df = ds.emodist.select(tracks="3", features=["mfcc_0*", "rms_mean"])
    rows = np.flatnonzero(TRACKS == "3")
    assert list(df["segment_id"]) == [f"3:{i:03d}" for i in range(4)]
    assert list(df.columns[: len(META_COLUMNS)]) == list(META_COLUMNS)
    cols = [f"mfcc_{i:02d}_mean" for i in range(10)] + ["rms_mean"]
    assert list(df.columns[len(META_COLUMNS):]) == cols
    np.testing.assert_array_equal(features_of(df),
                                  v["handcrafted"][rows][:, [HC_NAMES.index(c) for c in cols]])
    for col in ("track_id", "segment_index", "start_s", "duration_s", "label", "group",
                "genre", "path"):
        assert list(df[col]) == list(TABLE[col].iloc[rows]), col


def test_select_leaves_out_rows_not_done_in_the_groups_involved(ds, store):
    _, v = store
    tracks = ["2", "11", "18"]
    in_tracks = np.isin(TRACKS, tracks)
    for features, groups in [("handcrafted", ["handcrafted"]),
                             ("inception_v3", ["inception_v3"]),
                             (["rms_mean", "inception_v3_0003"], ["handcrafted", "inception_v3"])]:
        df = ds.emodist.select(tracks=tracks, features=features)
        rows = np.flatnonzero(in_tracks & done(*groups))
        assert list(df["segment_id"]) == list(IDS[rows]), features
    # 11:000 / 11:001 are only missing handcrafted features; 18:002 only inception_v3
    emb = ds.emodist.select(tracks=tracks, features="inception_v3")
    assert {"11:000", "11:001"} <= set(emb["segment_id"]) and "18:002" not in set(emb["segment_id"])
    np.testing.assert_array_equal(
        features_of(emb), v["inception_v3"][in_tracks & done("inception_v3")])

    full = ds.emodist.select(tracks=tracks, features="handcrafted", include_incomplete=True)
    assert list(full["segment_id"]) == list(IDS[in_tracks])
    assert list(full["handcrafted_status"]) == list(STATUS["handcrafted"][in_tracks])
    assert "inception_v3_status" not in full  # only the groups involved
    failed = full.set_index("segment_id").loc["11:001"]
    assert failed["handcrafted_status"] == layout.STATUS_FAILED
    np.testing.assert_array_equal(features_of(full.drop(columns="handcrafted_status")),
                                  v["handcrafted"][in_tracks])  # whatever the store holds
    both = ds.emodist.select(tracks="2", features="handcrafted+inception_v3",
                             include_incomplete=True)
    assert list(both.columns[len(META_COLUMNS):len(META_COLUMNS) + 2]) == [
        "handcrafted_status", "inception_v3_status"]


def test_select_filters_combine(ds):
    df = ds.emodist.select(labels="tension", genres="rock", features=[])
    labels, genres = TABLE["label"].to_numpy(), TABLE["genre"].to_numpy()
    expect = np.flatnonzero((labels == "tension") & (genres == "rock") & done())
    assert len(expect) and list(df["segment_id"]) == list(IDS[expect])
    assert list(df.columns) == list(META_COLUMNS)
    two = ds.emodist.select(labels=["calmness", "power"], tracks=["1", "2", "3", "4"],
                            features="tempo")
    expect = np.flatnonzero(np.isin(labels, ["calmness", "power"])
                            & np.isin(TRACKS, ["1", "2", "3", "4"]) & done("tempo"))
    assert list(two["segment_id"]) == list(IDS[expect])


def test_select_scattered_rows_across_chunks(ds, store):
    _, v = store
    ids = ["1:000", "9:003", "30:002", "2:002", "2:001"]  # 2:001 is pending
    df = ds.emodist.select(segments=ids, features="inception_v3")
    rows = np.sort([int(np.flatnonzero(IDS == i)[0]) for i in ids if i != "2:001"])
    assert list(df["segment_id"]) == list(IDS[rows])
    np.testing.assert_array_equal(features_of(df), v["inception_v3"][rows])


def test_feature_syntax_groups_joined_names_patterns_votes(ds, store):
    _, v = store
    sel = ds.emodist.select

    def columns(features):
        return list(sel(tracks="1", features=features).columns[len(META_COLUMNS):])

    assert columns(None) == HC_NAMES  # default: the first stored group
    assert columns("tempo") == TEMPO_NAMES
    assert columns("handcrafted+inception_v3") == HC_NAMES + EMB_NAMES
    assert columns(["tempo+handcrafted"]) == TEMPO_NAMES + HC_NAMES
    assert columns(["rms_mean", "handcrafted", "votes"]) == (
        ["rms_mean"] + [c for c in HC_NAMES if c != "rms_mean"] + [f"votes_{e}" for e in GEMS])
    assert columns("votes_mean") == [f"votes_mean_{e}" for e in GEMS]
    assert columns(["tempo_*", "onset_rate", "inception_v3_002?"]) == (
        TEMPO_NAMES[:2] + ["onset_rate"] + EMB_NAMES[20:24])
    assert columns(["mfcc_0[0-2]_mean", "mfcc_01_mean"]) == HC_NAMES[:3]  # no repeats

    df = sel(segments=["7:001", "8:002"], features=["tempo+inception_v3", "votes"])
    rows = [int(np.flatnonzero(IDS == s)[0]) for s in ("7:001", "8:002")]
    np.testing.assert_array_equal(
        features_of(df), np.hstack([v["tempo"], v["inception_v3"], v["votes"]])[rows])


def test_joined_selection_needs_every_group_done(ds, store):
    _, v = store
    df = ds.emodist.select(features="inception_v3+tempo")
    rows = np.flatnonzero(done("inception_v3", "tempo"))
    assert list(df["segment_id"]) == list(IDS[rows])
    assert not {"2:001", "18:002", "26:000", "26:001", "26:002"} & set(df["segment_id"])
    assert {"11:000", "11:001"} <= set(df["segment_id"])  # handcrafted is not involved
    np.testing.assert_array_equal(features_of(df),
                                  np.hstack([v["inception_v3"], v["tempo"]])[rows])


def test_pending_group_excludes_rows_only_when_involved(ds, store):
    _, v = store
    pending = ["26:000", "26:001", "26:002"]
    assert not set(pending) & set(ds.emodist.select(tracks="26", features="tempo")["segment_id"])
    hc = ds.emodist.select(tracks="26", features="handcrafted")
    assert list(hc["segment_id"]) == [f"26:{i:03d}" for i in range(4)]
    np.testing.assert_array_equal(features_of(hc), v["handcrafted"][100:104])
    # similar on the default (model) group may return them; on tempo never
    everything = ds.emodist.similar(vector=v["inception_v3"][0], k=N)
    assert set(pending) <= set(everything["segment_id"])
    assert len(everything) == done("inception_v3").sum()
    tempo = ds.emodist.similar(vector=v["tempo"][0], k=N, features="tempo")
    assert not set(pending) & set(tempo["segment_id"])
    assert len(tempo) == done("tempo").sum()
    with pytest.raises(StoreError, match="'26:001' has no tempo features"):
        ds.emodist.similar("26:001", features="tempo")
    assert len(ds.emodist.similar("26:001", k=3, features="handcrafted")) == 3


def test_select_reads_only_the_chunks_of_its_rows(store):
    path, _ = store
    counter = counting_store(path)
    ds = open_store(counter)
    assert ds.emodist.index.n
    counter.reset()
    ds.emodist.select(tracks="3", features="mfcc_*")  # rows 8..11: chunk 1 (7..13)
    assert sorted(set(counter.keys)) == ["handcrafted/c/1/0"]
    counter.reset()
    ds.emodist.select(tracks=["1", "30"], features="inception_v3")  # rows 0..3, 116..119
    assert sorted(set(counter.keys)) == [
        "inception_v3/c/0/0", "inception_v3/c/16/0", "inception_v3/c/17/0"]
    counter.reset()
    ds.emodist.select(tracks="3", features="handcrafted+tempo")
    assert sorted(set(counter.keys)) == ["handcrafted/c/1/0", "tempo/c/1/0"]
    # the same through the dask arrays of a plain xarray Dataset
    plain = xr.open_zarr(counter, consolidated=True, chunks={})
    assert plain.emodist.index.n
    counter.reset()
    df = plain.emodist.select(segments=["2:001", "29:003"], features="inception_v3_000*")
    assert list(df["segment_id"]) == ["29:003"]  # 2:001 is pending
    assert sorted({k for k in counter.keys if k.startswith("inception_v3/")}) == [
        "inception_v3/c/16/0"]


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"tracks": "99"}, ["track '99'", "did you mean"]),
        ({"labels": "calmnes"}, ["label 'calmnes'", "calmness", "valid labels"]),
        ({"genres": "jazz"}, ["genre 'jazz'", "classical, rock"]),
        ({"segments": "3:009"}, ["segment '3:009'", "3:00"]),
        ({"features": "mfcc_1_mean"}, ["feature 'mfcc_1_mean'", "mfcc_1"]),
        ({"features": "incepton_v3"}, ["feature 'incepton_v3'", "inception_v3"]),
        ({"features": "handcrafted+tempoo"}, ["feature 'tempoo'", "tempo"]),
        ({"features": "chroma_*"}, ["pattern 'chroma_*'", "handcrafted, inception_v3, tempo"]),
    ],
)
def test_unknown_names_are_one_line_errors(ds, kwargs, words):
    with pytest.raises(EmodistError) as err:
        ds.emodist.select(**kwargs)
    text = str(err.value)
    assert "\n" not in text
    for w in words:
        assert w in text


def test_suggest_narrows_long_lists():
    ids = [f"{t}:{i:03d}" for t in range(5000) for i in range(4)]
    assert suggest("4321:004", ids)[0].startswith("4321:00")
    assert suggest("zzz", ["alpha", "beta"]) == []


# --------------------------------------------------------------------------- similarity


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_similar_default_model_group_matches_brute_force(ds, store, metric):
    _, v = store
    x = v["inception_v3"]
    q_pos = int(np.flatnonzero(IDS == "5:001")[0])
    d = brute_force(x, x[q_pos], metric)  # a model group: not standardised
    allowed = done("inception_v3")
    allowed[q_pos] = False
    expect = nearest(d, allowed, 6)
    # a tiny block size streams the store in many blocks
    got = ds.emodist.similar("5:001", k=6, metric=metric, block_bytes=500)
    assert list(got["segment_id"]) == list(IDS[expect])
    np.testing.assert_allclose(got["distance"], d[expect], rtol=1e-5, atol=1e-6)
    assert list(got["rank"]) == list(range(1, 7))
    assert list(got.columns) == ["rank", "segment_id", "track_id", "segment_index", "start_s",
                                 "label", "genre", "distance"]


def test_similar_handcrafted_is_standardised_and_excludes_track(ds, store):
    _, v = store
    ok = done("handcrafted")
    z = zscore(v["handcrafted"], ok)
    q_pos = int(np.flatnonzero(IDS == "13:002")[0])
    d = brute_force(z, z[q_pos], "euclidean")
    allowed = ok & (TRACKS != "13")
    expect = nearest(d, allowed, 5)
    got = ds.emodist.similar("13:002", k=5, features="handcrafted", metric="euclidean",
                             exclude_same_track=True)
    assert not (got["track_id"] == "13").any()
    assert list(got["segment_id"]) == list(IDS[expect])
    np.testing.assert_allclose(got["distance"], d[expect], rtol=1e-4)

    raw_d = brute_force(v["handcrafted"], v["handcrafted"][q_pos], "euclidean")
    raw_expect = nearest(raw_d, allowed, 5)
    raw = ds.emodist.similar("13:002", k=5, features="handcrafted", metric="euclidean",
                             exclude_same_track=True, standardize=False)
    assert list(raw["segment_id"]) == list(IDS[raw_expect])
    assert list(raw_expect) != list(expect)  # the scales differ a lot


def test_similar_standardize_defaults(ds, store):
    _, v = store
    q_pos = 20
    # a joined model + plain selection is standardised over rows done in both
    ok = done("inception_v3", "tempo")
    x = np.hstack([v["inception_v3"], v["tempo"]])
    z = zscore(x, ok)
    d = brute_force(z, z[q_pos], "cosine")
    allowed = ok.copy()
    allowed[q_pos] = False
    got = ds.emodist.similar(IDS[q_pos], k=5, features="inception_v3+tempo")
    assert list(got["segment_id"]) == list(IDS[nearest(d, allowed, 5)])
    # votes are standardised too; an explicit standardize=True applies to a model group
    z = zscore(v["votes"], done())
    d = brute_force(z, z[q_pos], "euclidean")
    allowed = done()
    allowed[q_pos] = False
    got = ds.emodist.similar(IDS[q_pos], k=4, features="votes", metric="euclidean")
    assert list(got["segment_id"]) == list(IDS[nearest(d, allowed, 4)])
    np.testing.assert_allclose(got["distance"], np.sort(d[allowed])[:4], rtol=1e-4)
    ok = done("inception_v3")
    z = zscore(v["inception_v3"], ok)
    d = brute_force(z, z[q_pos], "euclidean")
    allowed = ok.copy()
    allowed[q_pos] = False
    got = ds.emodist.similar(IDS[q_pos], k=4, metric="euclidean", standardize=True)
    np.testing.assert_allclose(got["distance"], d[nearest(d, allowed, 4)], rtol=1e-4)


def test_similar_default_without_model_group_is_first_group(tmp_path):
    rng = np.random.default_rng(5)
    table = make_table(6, 3)
    n = len(table)
    a = (rng.normal(size=(n, 4)) * [1, 10, 100, 1000]).astype(np.float32)
    b = rng.random((n, 2)).astype(np.float32)
    write_store(tmp_path / "plain.zarr", table, {"alpha": (list("abcd"), a), "beta": (["x", "y"], b)},
                chunk=4)
    ds = open_store(tmp_path / "plain.zarr")
    z = zscore(a, np.ones(n, bool))
    d = brute_force(z, z[4], "cosine")
    allowed = np.ones(n, bool)
    allowed[4] = False
    got = ds.emodist.similar(str(table["segment_id"][4]), k=5)
    expect = nearest(d, allowed, 5)
    assert list(got["segment_id"]) == list(table["segment_id"].to_numpy()[expect])
    np.testing.assert_allclose(got["distance"], d[expect], rtol=1e-4, atol=1e-6)


def test_similar_vector_query_and_filters(ds, store):
    _, v = store
    vec = v["inception_v3"][0]
    got = ds.emodist.similar(vector=vec, k=3, labels="calmness")
    assert got["segment_id"].iloc[0] == "1:000" and got["distance"].iloc[0] < 1e-6
    assert set(got["label"]) == {"calmness"}
    d = brute_force(v["inception_v3"], vec, "cosine")
    allowed = done("inception_v3") & (TABLE["label"].to_numpy() == "calmness")
    assert list(got["segment_id"]) == list(IDS[nearest(d, allowed, 3)])
    rock = ds.emodist.similar(vector=vec, k=N, genres="rock", labels=["power", "calmness"])
    allowed = (done("inception_v3") & (TABLE["genre"].to_numpy() == "rock")
               & np.isin(TABLE["label"].to_numpy(), ["power", "calmness"]))
    assert list(rock["segment_id"]) == list(IDS[nearest(d, allowed, N)])
    everything = ds.emodist.similar(vector=vec, k=10_000)
    assert len(everything) == int(done("inception_v3").sum())
    assert np.all(np.diff(everything["distance"]) >= 0)


def test_similar_bad_queries(ds):
    with pytest.raises(StoreError, match="'2:001' has no inception_v3 features"):
        ds.emodist.similar("2:001")
    with pytest.raises(StoreError, match="'18:002' has no inception_v3"):
        ds.emodist.similar("18:002")
    assert len(ds.emodist.similar("18:002", features="handcrafted", k=2)) == 2
    with pytest.raises(EmodistError, match="not both"):
        ds.emodist.similar("1:000", vector=np.zeros(EMB_DIM))
    with pytest.raises(EmodistError, match="not both"):
        ds.emodist.similar()
    with pytest.raises(EmodistError, match="has 3 values"):
        ds.emodist.similar(vector=[1, 2, 3])
    with pytest.raises(EmodistError, match="metric 'manhattan'"):
        ds.emodist.similar("1:000", metric="manhattan")
    with pytest.raises(EmodistError, match="unknown segment 'nope'"):
        ds.emodist.similar("nope")
    with pytest.raises(EmodistError, match="k must be"):
        ds.emodist.similar("1:000", k=0)
    with pytest.raises(EmodistError, match="at least one feature"):
        ds.emodist.similar("1:000", features=[])


def test_similar_top_k_ties_are_broken_by_store_order(tmp_path):
    """Equal distances at the cut keep the rows that come first, across blocks."""
    table = make_table(10, 4)
    n = len(table)
    x = np.tile(np.array([[1.0, 0.0]], np.float32), (n, 1))
    x[[3, 17, 30]] = [0.0, 1.0]  # farther than every tie
    x[25] = [2.0, 0.0]  # same direction: a cosine tie too
    write_store(tmp_path / "ties.zarr", table, {"emb": (["e0", "e1"], x)}, chunk=3,
                model_groups=["emb"])
    ds = open_store(tmp_path / "ties.zarr")
    ids = table["segment_id"].to_numpy()
    for block_bytes in (8, 24, 10**6):  # one chunk per block, several, everything
        got = ds.emodist.similar(ids[10], k=7, metric="cosine", block_bytes=block_bytes)
        expect = [i for i in range(n) if i not in (3, 10, 17, 30)][:7]
        assert list(got["segment_id"]) == list(ids[expect]), block_bytes
        np.testing.assert_allclose(got["distance"], 0, atol=1e-6)
    got = ds.emodist.similar(vector=[1.0, 0.0], k=n, metric="euclidean", block_bytes=8)
    ties = [i for i in range(n) if i not in (3, 17, 30, 25)]
    assert list(got["segment_id"]) == list(ids[ties + [25, 3, 17, 30]])


def test_similar_streams_in_bounded_blocks(store, monkeypatch):
    """similar reads the store one block of whole chunks at a time, never all rows."""
    path, v = store
    ds = open_store(path)
    reads = []
    real = select_mod._read_block

    def spy(ds_, chosen, start, stop):
        reads.append((start, stop))
        return real(ds_, chosen, start, stop)

    monkeypatch.setattr(select_mod, "_read_block", spy)
    row_bytes = 4 * EMB_DIM
    block_bytes = 3 * CHUNK * row_bytes  # three chunks a block
    got = ds.emodist.similar("5:001", k=6, block_bytes=block_bytes)
    assert reads[0][0] == 0 and reads[-1][1] == N
    assert all(b == c for (_, b), (c, _) in itertools.pairwise(reads))  # consecutive
    assert all(b - a <= 3 * CHUNK for a, b in reads) and len(reads) == -(-N // (3 * CHUNK))
    assert all(a % CHUNK == 0 for a, _ in reads)  # whole chunks
    x = v["inception_v3"]
    d = brute_force(x, x[17], "cosine")
    allowed = done("inception_v3")
    allowed[17] = False
    assert list(got["segment_id"]) == list(IDS[nearest(d, allowed, 6)])


def test_distances_and_merge_topk():
    block = np.array([[1, 0], [0, 2], [0, 0], [np.nan, 1]], np.float32)
    d = distances(block, np.array([1, 0], np.float32), "cosine")
    np.testing.assert_allclose(d[:2], [0, 1])
    assert np.isinf(d[2]) and np.isinf(d[3])
    d = distances(block, np.array([1, 0], np.float32), "euclidean")
    np.testing.assert_allclose(d[:3], [0, np.sqrt(5), 1])
    assert np.isinf(d[3])
    bd, bp = merge_topk(np.array([0.5]), np.array([7]), np.array([0.1, 0.9, 0.5]),
                        np.array([1, 2, 3]), k=2)
    assert list(bp) == [1, 3] and list(bd) == [0.1, 0.5]
    bd, bp = merge_topk(np.array([0.2, 0.2]), np.array([4, 9]), np.array([0.2, 0.2]),
                        np.array([1, 6]), k=3)
    assert list(bp) == [1, 4, 6]


def test_column_stats_stream_matches_numpy(ds, store):
    _, v = store
    mean, std = column_stats(ds, "handcrafted", block_bytes=300)
    x = v["handcrafted"][done("handcrafted")].astype(np.float64)
    np.testing.assert_allclose(mean, x.mean(0), rtol=1e-6)
    np.testing.assert_allclose(std, x.std(0), rtol=1e-5)
    mean, std = column_stats(ds, "handcrafted+tempo", block_bytes=300)
    rows = done("handcrafted", "tempo")
    x = np.hstack([v["handcrafted"], v["tempo"]])[rows].astype(np.float64)
    np.testing.assert_allclose(mean, x.mean(0), rtol=1e-6)
    np.testing.assert_allclose(std, x.std(0), rtol=1e-5)


# --------------------------------------------------------------------------- info


def test_info_reports_completeness_classes_and_layout(ds):
    summary = ds.emodist.info()
    assert summary["segments"] == N and summary["tracks"] == N_TRACKS
    assert summary["completeness"] == {
        g: {"done": int((STATUS[g] == 1).sum()), "pending": int((STATUS[g] == 0).sum()),
            "failed": int((STATUS[g] == -1).sum())} for g in GROUPS}
    assert summary["completeness"]["handcrafted"] == {"done": 117, "pending": 2, "failed": 1}
    assert summary["complete"] == int(done().sum()) == N - 7
    assert summary["failures"] == FAILURES
    labels = TABLE["label"]
    assert summary["classes"]["calmness"] == {
        "tracks": TABLE.loc[labels == "calmness", "track_id"].nunique(),
        "segments": int((labels == "calmness").sum())}
    assert summary["genres"]["rock"]["tracks"] == N_TRACKS // 2
    assert summary["features"] == {"handcrafted": len(HC_NAMES), "inception_v3": EMB_DIM,
                                   "tempo": 3, "votes": 9, "votes_mean": 9}
    assert list(summary["feature_groups"]) == GROUPS
    assert summary["feature_groups"]["inception_v3"]["model_sha256"]
    assert "model_sha256" not in summary["feature_groups"]["tempo"]
    assert summary["spec"]["sr"] == 22050
    assert summary["chunking"]["inception_v3"]["chunks"] == [CHUNK, EMB_DIM]
    assert summary["chunking"]["tempo_status"]["chunks"] == [CHUNK]
    assert summary["size_bytes"] > N * EMB_DIM  # random floats barely compress
    assert summary["store"].endswith("features.zarr")
    json.dumps(summary)


# --------------------------------------------------------------------------- CLI


def test_cli_info(store, capsys):
    path, _ = store
    assert main(["info", path]) == 0
    out = capsys.readouterr().out
    assert f"{N} from {N_TRACKS} tracks, {N - 7} done in every group" in out
    assert "117 done, 2 pending, 1 failed" in out and "cannot decode" in out
    assert "[handcrafted]" in out
    assert "calmness" in out and f"chunks ({CHUNK}, {EMB_DIM})" in out
    for g in GROUPS:
        assert f"group {g}:" in out
    assert main(["info", path, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["tracks"] == N_TRACKS and summary["complete"] == N - 7


@pytest.mark.parametrize("fmt", ["csv", "parquet", "json"])
def test_cli_query_writes_each_format(store, tmp_path, fmt, capsys):
    path, v = store
    out = tmp_path / f"t.{fmt}"
    rc = main(["query", path, "--label", "power", "--columns", "mfcc_0*", "rms_mean",
               "--out", str(out)])
    assert rc == 0
    assert f"to {out}" in capsys.readouterr().err
    got = {"csv": lambda p: pd.read_csv(p, dtype={"track_id": str, "group": str}),
           "parquet": pd.read_parquet,
           "json": lambda p: pd.DataFrame(json.loads(p.read_text()))}[fmt](out)
    rows = np.flatnonzero((TABLE["label"].to_numpy() == "power") & done("handcrafted"))
    cols = [f"mfcc_{i:02d}_mean" for i in range(10)] + ["rms_mean"]
    assert list(got.columns) == list(META_COLUMNS) + cols
    assert list(got["segment_id"]) == list(IDS[rows])
    np.testing.assert_allclose(got[cols].to_numpy(np.float64),
                               v["handcrafted"][rows][:, [HC_NAMES.index(c) for c in cols]],
                               rtol=1e-6)


def test_cli_query_table_to_stdout(store, capsys):
    path, _ = store
    assert main(["query", path, "--track", "4", "--columns", "rms_mean"]) == 0
    out = capsys.readouterr().out
    assert "4:003" in out and f"(4 rows x {len(META_COLUMNS) + 1} columns)" in out
    assert main(["query", path, "--segment", "26:000", "26:003", "--columns", "tempo",
                 "--include-incomplete", "--format", "csv"]) == 0
    df = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert list(df["segment_id"]) == ["26:000", "26:003"]
    assert list(df["tempo_status"]) == [0, 1]


def test_cli_similar_takes_segment_ids(store, capsys):
    path, v = store
    assert main(["similar", path, "--segment", "17:001", "-k", "3", "--format", "csv"]) == 0
    df = pd.read_csv(io.StringIO(capsys.readouterr().out), dtype={"track_id": str})
    q_pos = int(np.flatnonzero(IDS == "17:001")[0])
    x = v["inception_v3"]
    d = brute_force(x, x[q_pos], "cosine")
    allowed = done("inception_v3")
    allowed[q_pos] = False
    expect = nearest(d, allowed, 3)
    assert list(df["segment_id"]) == list(IDS[expect])
    np.testing.assert_allclose(df["distance"], d[expect], rtol=1e-5, atol=1e-6)

    assert main(["similar", path, "--segment", "17:001", "-k", "4", "--features", "handcrafted",
                 "--exclude-same-track", "--metric", "euclidean", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    z = zscore(v["handcrafted"], done("handcrafted"))
    d = brute_force(z, z[q_pos], "euclidean")
    expect = nearest(d, done("handcrafted") & (TRACKS != "17"), 4)
    assert [r["segment_id"] for r in rows] == list(IDS[expect])
    assert [r["rank"] for r in rows] == [1, 2, 3, 4]


def test_cli_query_groups_and_columns_together(store, capsys):
    path, v = store
    assert main(["query", path, "--track", "4", "--features", "handcrafted", "--columns",
                 "inception_v3_000*", "--format", "csv"]) == 0
    df = pd.read_csv(io.StringIO(capsys.readouterr().out), dtype={"track_id": str})
    assert list(df.columns) == list(META_COLUMNS) + HC_NAMES + EMB_NAMES[:10]
    rows = np.flatnonzero((TRACKS == "4") & done("handcrafted", "inception_v3"))
    assert list(df["segment_id"]) == list(IDS[rows])
    np.testing.assert_allclose(df[HC_NAMES].to_numpy(np.float64), v["handcrafted"][rows], rtol=1e-6)
    np.testing.assert_allclose(df[EMB_NAMES[:10]].to_numpy(np.float64),
                               v["inception_v3"][rows][:, :10], rtol=1e-6)


@pytest.mark.parametrize("old", ["--output", "-o"])
def test_cli_query_output_is_a_deprecated_out(store, tmp_path, capsys, old):
    path, _ = store
    out = tmp_path / "t.csv"
    assert main(["query", path, "--track", "4", "--columns", "rms_mean", old, str(out)]) == 0
    err = capsys.readouterr().err
    assert err.startswith(f"emodist: {old} is deprecated; use --out\n")
    assert len(pd.read_csv(out)) == 4


@pytest.mark.parametrize(
    "argv, words",
    [
        (["query", "{p}", "--columns", "mfcc_1_mean"], "unknown feature 'mfcc_1_mean'"),
        (["query", "{p}", "--track", "99"], "unknown track '99'"),
        (["query", "{p}", "--format", "parquet"], "give --out FILE"),
        (["similar", "{p}", "--segment", "nope"], "unknown segment 'nope'"),
        (["similar", "{p}", "--segment", "2:001"], "'2:001' has no inception_v3 features"),
        (["info", "{p}/missing"], "no feature store"),
    ],
)
def test_cli_errors_exit_2_with_one_line(store, capsys, argv, words):
    path, _ = store
    assert main([a.format(p=path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1


# --------------------------------------------------------------------------- the store's writer


def test_partly_written_store_from_the_store_module(tmp_path):
    """A store filled by ``emodist.store.zarrio`` region writes, one chunk still pending."""
    from emodist.spec import ExtractionSpec
    from emodist.store import zarrio
    from tests.stores import group

    table = make_table(6, 2)
    chunk = 4
    groups = [group("handcrafted", HC_NAMES), group("inception_v3", EMB_NAMES, model=True)]
    spec = ExtractionSpec(groups=tuple(groups))
    tmpl = layout.template(table, groups, chunk=chunk, attrs=spec.to_attrs())
    url = str(tmp_path / "partial.zarr")
    zarrio.create_store(url, tmpl, chunk)
    rng = np.random.default_rng(1)
    written = {}
    for a, b in zarrio.chunk_regions(len(table), chunk)[:2]:  # the last chunk stays pending
        values = {"handcrafted": rng.normal(size=(b - a, len(HC_NAMES))),
                  "inception_v3": rng.random((b - a, EMB_DIM))}
        status = {"handcrafted": np.ones(b - a, np.int8), "inception_v3": np.ones(b - a, np.int8)}
        if a == 0:
            status["inception_v3"][0] = layout.STATUS_FAILED
        zarrio.write_region(url, a, b, values, status)
        written[a] = values
    zarrio.finish_store(url, {"failures": FAILURES[:1]})

    ds = open_store(url)
    summary = ds.emodist.info()
    assert summary["completeness"]["inception_v3"] == {"done": 7, "pending": 4, "failed": 1}
    assert summary["completeness"]["handcrafted"] == {"done": 8, "pending": 4, "failed": 0}
    assert summary["complete"] == 7 and summary["failures"] == FAILURES[:1]
    df = ds.emodist.select(tracks="3", features="inception_v3")  # rows 4, 5: second chunk
    np.testing.assert_allclose(features_of(df), written[4]["inception_v3"][:2].astype(np.float32))
    assert ds.emodist.select(tracks="6", features="inception_v3").empty  # pending chunk
    hc = ds.emodist.select(tracks="1", features="handcrafted")  # 1:000 failed in the model only
    assert list(hc["segment_id"]) == ["1:000", "1:001"]
    hits = ds.emodist.similar("3:001", k=20)
    assert len(hits) == 7 - 1 and "1:000" not in set(hits["segment_id"])


# --------------------------------------------------------------------------- real Emotify layout


@pytest.mark.emotify
def test_info_and_select_on_the_emotify_plan(emotify_root, tmp_path):
    """A store laid out from the real Emotify plan (398 segments of 100 tracks)."""
    from emodist.data.catalog import load_dataset
    from emodist.data.segments import plan_segments

    catalog = load_dataset(str(emotify_root))
    plan = plan_segments(catalog).table
    n = len(plan)
    rng = np.random.default_rng(3)
    url = str(tmp_path / "emotify.zarr")
    hc = rng.normal(size=(n, len(HC_NAMES))).astype(np.float32)
    write_store(url, plan, {"handcrafted": (HC_NAMES, hc),
                            "inception_v3": (EMB_NAMES, rng.random((n, EMB_DIM)))},
                chunk=25, model_groups=["inception_v3"])
    ds = open_store(url)
    summary = ds.emodist.info()
    assert summary["segments"] == 398 and summary["tracks"] == 100
    assert summary["classes"]["calmness"]["tracks"] == 36  # the README's listener-rule counts
    assert summary["classes"]["solemnity"]["tracks"] == 3
    assert summary["genres"]["classical"]["segments"] == 98  # classical/16.mp3: 42 s, 2 pieces
    track = plan["track_id"].iloc[0]
    df = ds.emodist.select(tracks=track, features="rms_mean")
    rows = np.flatnonzero(plan["track_id"].to_numpy() == track)
    assert list(df["segment_id"]) == list(plan["segment_id"].iloc[rows])
    np.testing.assert_array_equal(df["rms_mean"], hc[rows, HC_NAMES.index("rms_mean")])
