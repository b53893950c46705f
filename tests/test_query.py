"""Tests of emodist.store.query and the info / query / similar commands on real Zarr stores."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from emodist.cli import main
from emodist.errors import EmodistError, StoreError
from emodist.store import layout as schema
from emodist.store import query
from emodist.store.zarrio import encoding

N_TRACKS, PER_TRACK, CHUNK = 30, 4, 7
HC_NAMES = [f"mfcc_{i:02d}_mean" for i in range(13)] + ["centroid_mean", "rms_mean", "zcr_mean"]
DEEP_DIM = 24


def make_plan(n_tracks: int = N_TRACKS, per_track: int = PER_TRACK) -> pd.DataFrame:
    """A segment plan: ``per_track`` 15 s segments per track, two genres."""
    tr = np.repeat(np.arange(n_tracks), per_track)
    idx = np.tile(np.arange(per_track), n_tracks)
    return pd.DataFrame(
        {
            "segment_id": [f"{t + 1}:{i:03d}" for t, i in zip(tr, idx)],
            "track_id": [str(t + 1) for t in tr],
            "segment_index": idx,
            "start_s": idx * 15.0,
            "duration_s": 15.0,
            "label": np.array(["calmness", "tension", "power", "sadness", "nostalgia"])[tr % 5],
            "group": [str(t % 3) for t in tr],
            "genre": np.array(["rock", "classical"])[tr % 2],
            "path": [f"/music/{t + 1}.mp3" for t in tr],
        }
    )


def write_store(path, seed: int = 0, status=None, failures=None, chunk: int = CHUNK):
    """Write a store with random features; returns the in-memory Dataset."""
    rng = np.random.default_rng(seed)
    plan = make_plan()
    n = len(plan)
    hc = rng.normal(size=(n, len(HC_NAMES))) * np.linspace(1, 500, len(HC_NAMES))
    deep = rng.random((n, DEEP_DIM))
    votes = rng.dirichlet(np.ones(9), size=n)
    if status is None:
        status = np.ones(n, np.int8)
    attrs = {"config": json.dumps({"sr": 22050}), "failures": json.dumps(failures or []),
             "dataset": "generated"}
    ds = schema.build_dataset(plan, HC_NAMES, DEEP_DIM, handcrafted=hc, deep=deep,
                              status=status, votes=votes, attrs=attrs)
    ds.to_zarr(str(path), zarr_format=3, consolidated=True, mode="w",
               encoding=encoding(ds, chunk))
    return ds


STATUS = np.ones(N_TRACKS * PER_TRACK, np.int8)
STATUS[[5, 40]] = schema.STATUS_PENDING
STATUS[[41]] = schema.STATUS_FAILED
FAILURES = [{"track_id": "11", "path": "/music/11.mp3", "error": "cannot decode"}]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("query") / "features.zarr"
    mem = write_store(path, status=STATUS, failures=FAILURES)
    return str(path), mem


# --------------------------------------------------------------------------- opening


def test_open_store_is_lazy_and_reads_metadata_only(store):
    path, mem = store
    counter = query.counting_store(path)
    ds = query.open_store(counter)
    assert ds.sizes[schema.SEGMENT] == len(mem.segment)
    assert type(ds.deep.data).__name__ == "Array"  # dask
    read = set(counter.keys)
    assert not any(k.startswith(("deep/", "handcrafted/", "status/", "track_id/")) for k in read)
    assert "zarr.json" in read


def test_open_store_errors_name_the_path(tmp_path):
    with pytest.raises(StoreError, match="no feature store"):
        query.open_store(tmp_path / "missing.zarr")
    other = tmp_path / "other.zarr"
    xr.Dataset({"x": ("a", np.arange(3))}).to_zarr(str(other), zarr_format=3, consolidated=True)
    with pytest.raises(StoreError, match="not an emodist feature store"):
        query.open_store(other)


def test_select_accepts_store_from_store_module(store):
    from emodist.store.zarrio import open_store as store_open

    path, mem = store
    df = query.select(store_open(path), tracks="2", features="rms_mean")
    rows = [4, 6, 7]  # row 5 is pending
    np.testing.assert_allclose(df["rms_mean"], mem.handcrafted.values[rows, HC_NAMES.index("rms_mean")])
    # a Dataset this module did not open is read through its dask arrays
    got = query.similar(store_open(path), "5:001", k=4, features="handcrafted")
    want = query.similar(query.open_store(path), "5:001", k=4, features="handcrafted")
    pd.testing.assert_frame_equal(got, want)


# --------------------------------------------------------------------------- select


def test_select_one_track_values_and_metadata(store):
    path, mem = store
    ds = query.open_store(path)
    df = query.select(ds, tracks="3", features=["mfcc_0*", "rms_mean"])
    rows = np.flatnonzero(mem.track_id.values == "3")
    assert list(df["segment_id"]) == [f"3:{i:03d}" for i in range(4)]
    assert list(df.columns[: len(query.META_COLUMNS)]) == list(query.META_COLUMNS)
    cols = [f"mfcc_{i:02d}_mean" for i in range(10)] + ["rms_mean"]
    assert list(df.columns[len(query.META_COLUMNS):]) == cols
    expect = mem.handcrafted.sel(handcrafted_feature=cols).values[rows]
    np.testing.assert_array_equal(df[cols].to_numpy(), expect)
    assert df["genre"].iloc[0] == "rock" and df["path"].iloc[0] == "/music/3.mp3"
    np.testing.assert_array_equal(df["start_s"], [0, 15, 30, 45])


def test_select_leaves_out_pending_and_failed(store):
    path, mem = store
    df = query.select(path, tracks=["2", "11"], features="deep")
    assert len(df) == 8 - 3  # track 2 lost row 5, track 11 rows 40 and 41
    rows = [4, 6, 7, 42, 43]
    np.testing.assert_array_equal(df.iloc[:, len(query.META_COLUMNS):].to_numpy(),
                                  mem.deep.values[rows])
    assert "2:001" not in set(df["segment_id"]) and "11:001" not in set(df["segment_id"])
    full = query.select(path, tracks=["2", "11"], features="deep", include_incomplete=True)
    assert len(full) == 8
    assert dict(zip(full["segment_id"], full["status"]))["11:001"] == schema.STATUS_FAILED


def test_select_filters_combine(store):
    path, mem = store
    df = query.select(path, labels="tension", genres="rock", features=[])
    labels = mem.label.values.astype(str)
    genres = mem.genre.values.astype(str)
    expect = np.flatnonzero((labels == "tension") & (genres == "rock") & (STATUS == 1))
    assert list(df["segment_id"]) == list(mem.segment_id.values.astype(str)[expect])
    assert list(df.columns) == list(query.META_COLUMNS)


def test_select_scattered_rows_across_chunks(store):
    path, mem = store
    ids = ["1:000", "9:003", "30:002", "2:002"]
    df = query.select(path, segments=ids, features="deep")
    rows = np.sort([list(mem.segment_id.values).index(i) for i in ids])
    np.testing.assert_array_equal(df.iloc[:, len(query.META_COLUMNS):].to_numpy(),
                                  mem.deep.values[rows])


def test_select_groups_names_patterns_and_votes(store):
    path, _ = store
    ds = query.open_store(path)
    cols = query.feature_columns(ds, ["rms_mean", "handcrafted", "votes"])
    assert cols[0] == "rms_mean" and len(cols) == len(HC_NAMES) + 9
    assert cols[-9:] == [f"votes_{e}" for e in schema.GEMS]
    assert query.feature_columns(ds, None) == HC_NAMES
    assert query.feature_columns(ds, "deep")[-1] == schema.deep_feature_names(DEEP_DIM)[-1]


def test_select_reads_only_the_chunks_of_its_rows(store):
    path, _ = store
    counter = query.counting_store(path)
    ds = query.open_store(counter)
    query.store_index(ds)
    counter.reset()
    query.select(ds, tracks="3", features="mfcc_*")  # rows 8..11: chunks 1 (7..13)
    assert sorted(set(counter.keys)) == ["handcrafted/c/1/0"]
    counter.reset()
    query.select(ds, tracks=["1", "30"], features="deep")  # rows 0..3 and 116..119
    assert sorted(set(counter.keys)) == ["deep/c/0/0", "deep/c/16/0", "deep/c/17/0"]
    # the same through the dask arrays of a plain xarray Dataset
    plain = xr.open_zarr(counter, consolidated=True, chunks={})
    counter.reset()
    df = query.select(plain, segments=["2:001", "29:003"], features="deep_000*")
    assert len(df) == 1  # 2:001 is pending
    assert sorted({k for k in counter.keys if k.startswith("deep/")}) == ["deep/c/16/0"]


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"tracks": "99"}, ["track '99'", "did you mean"]),
        ({"labels": "calmnes"}, ["label 'calmnes'", "calmness", "valid labels"]),
        ({"genres": "jazz"}, ["genre 'jazz'", "classical, rock"]),
        ({"segments": "3:009"}, ["segment '3:009'", "3:00"]),
        ({"features": "mfcc_1_mean"}, ["feature 'mfcc_1_mean'", "mfcc_1"]),
        ({"features": "chroma_*"}, ["pattern 'chroma_*'", "handcrafted, deep"]),
    ],
)
def test_unknown_names_are_one_line_errors(store, kwargs, words):
    path, _ = store
    with pytest.raises(EmodistError) as err:
        query.select(path, **kwargs)
    text = str(err.value)
    assert "\n" not in text
    for w in words:
        assert w in text


def test_suggest_narrows_long_lists():
    ids = [f"{t}:{i:03d}" for t in range(5000) for i in range(4)]
    assert query.suggest("4321:004", ids)[0].startswith("4321:00")
    assert query.suggest("zzz", ["alpha", "beta"]) == []


# --------------------------------------------------------------------------- similarity


def brute_force(x, q, metric):
    if metric == "cosine":
        return 1 - x @ q / (np.linalg.norm(x, axis=1) * np.linalg.norm(q))
    return np.linalg.norm(x - q, axis=1)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_similar_deep_matches_brute_force(store, metric):
    path, mem = store
    ds = query.open_store(path)
    x = mem.deep.values.astype(np.float64)
    q_pos = 17
    d = brute_force(x, x[q_pos], metric)
    d[STATUS != 1] = np.inf
    d[q_pos] = np.inf
    expect = np.argsort(d, kind="stable")[:6]
    # a tiny block size streams the store in many blocks
    got = query.similar(ds, "5:001", k=6, metric=metric, block_bytes=500)
    assert list(got["segment_id"]) == list(mem.segment_id.values.astype(str)[expect])
    np.testing.assert_allclose(got["distance"], d[expect], rtol=1e-5, atol=1e-6)
    assert list(got["rank"]) == list(range(1, 7))


def test_similar_handcrafted_is_standardised_and_excludes_track(store):
    path, mem = store
    x = mem.handcrafted.values.astype(np.float64)
    done = STATUS == 1
    z = (x - x[done].mean(0)) / x[done].std(0)
    q_pos = 50  # track 13
    d = brute_force(z, z[q_pos], "euclidean")
    d[~done] = np.inf
    d[48:52] = np.inf
    expect = np.argsort(d, kind="stable")[:5]
    got = query.similar(path, "13:002", k=5, features="handcrafted", metric="euclidean",
                        exclude_same_track=True)
    assert not (got["track_id"] == "13").any()
    assert list(got["segment_id"]) == list(mem.segment_id.values.astype(str)[expect])
    np.testing.assert_allclose(got["distance"], d[expect], rtol=1e-4)
    raw = query.similar(path, "13:002", k=5, features="handcrafted", metric="euclidean",
                        exclude_same_track=True, standardize=False)
    assert list(raw["segment_id"]) != list(got["segment_id"])  # scales differ a lot


def test_similar_vector_query_and_filters(store):
    path, mem = store
    vec = mem.deep.values[0]
    got = query.similar(path, vector=vec, k=3, labels="calmness")
    assert got["segment_id"].iloc[0] == "1:000" and got["distance"].iloc[0] < 1e-6
    assert set(got["label"]) == {"calmness"}
    everything = query.similar(path, vector=vec, k=10_000)
    assert len(everything) == int((STATUS == 1).sum())
    assert np.all(np.diff(everything["distance"]) >= 0)


def test_similar_bad_queries(store):
    path, _ = store
    with pytest.raises(StoreError, match="'2:001' has no features"):
        query.similar(path, "2:001")
    with pytest.raises(EmodistError, match="not both"):
        query.similar(path, "1:000", vector=np.zeros(DEEP_DIM))
    with pytest.raises(EmodistError, match="has 3 values"):
        query.similar(path, vector=[1, 2, 3])
    with pytest.raises(EmodistError, match="metric 'manhattan'"):
        query.similar(path, "1:000", metric="manhattan")


def test_distances_and_merge_topk():
    block = np.array([[1, 0], [0, 2], [0, 0], [np.nan, 1]], np.float32)
    d = query.distances(block, np.array([1, 0], np.float32), "cosine")
    np.testing.assert_allclose(d[:2], [0, 1])
    assert np.isinf(d[2]) and np.isinf(d[3])
    bd, bp = query.merge_topk(np.array([0.5]), np.array([7]), np.array([0.1, 0.9, 0.5]),
                              np.array([1, 2, 3]), k=2)
    assert list(bp) == [1, 3] and list(bd) == [0.1, 0.5]


def test_column_stats_stream_matches_numpy(store):
    path, mem = store
    ds = query.open_store(path)
    mean, std = query.column_stats(ds, "handcrafted", block_bytes=300)
    x = mem.handcrafted.values[STATUS == 1].astype(np.float64)
    np.testing.assert_allclose(mean, x.mean(0), rtol=1e-6)
    np.testing.assert_allclose(std, x.std(0), rtol=1e-5)


# --------------------------------------------------------------------------- info


def test_info_reports_completeness_classes_and_layout(store):
    path, _ = store
    summary = query.info(path)
    assert summary["segments"] == 120 and summary["tracks"] == 30
    assert summary["completeness"] == {"done": 117, "pending": 2, "failed": 1,
                                       "failures": FAILURES}
    assert summary["classes"]["calmness"] == {"tracks": 6, "segments": 24}
    assert summary["genres"]["rock"]["tracks"] == 15
    assert summary["features"] == {"handcrafted": len(HC_NAMES), "deep": DEEP_DIM, "votes": 9}
    assert summary["config"] == {"sr": 22050}
    assert summary["chunking"]["deep"]["chunks"] == [CHUNK, DEEP_DIM]
    assert summary["size_bytes"] > 120 * DEEP_DIM  # random floats barely compress
    json.dumps(summary)


# --------------------------------------------------------------------------- CLI


def test_cli_info(store, capsys):
    path, _ = store
    assert main(["info", path]) == 0
    out = capsys.readouterr().out
    assert "117 done, 2 pending, 1 failed" in out and "cannot decode" in out
    assert "calmness" in out and "chunks (7, 24)" in out
    assert main(["info", path, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tracks"] == 30


@pytest.mark.parametrize("fmt", ["csv", "parquet", "json"])
def test_cli_query_writes_each_format(store, tmp_path, fmt, capsys):
    path, _ = store
    out = tmp_path / f"t.{fmt}"
    rc = main(["query", path, "--label", "power", "--features", "mfcc_0*", "rms_mean",
               "--output", str(out)])
    assert rc == 0
    expect = query.select(path, labels="power", features=["mfcc_0*", "rms_mean"])
    got = {"csv": lambda p: pd.read_csv(p, dtype={"track_id": str, "group": str}),
           "parquet": pd.read_parquet,
           "json": lambda p: pd.DataFrame(json.loads(p.read_text()))}[fmt](out)
    assert list(got.columns) == list(expect.columns)
    assert list(got["segment_id"]) == list(expect["segment_id"])
    np.testing.assert_allclose(got["rms_mean"], expect["rms_mean"], rtol=1e-6)


def test_cli_query_table_to_stdout(store, capsys):
    path, _ = store
    assert main(["query", path, "--track", "4", "--features", "rms_mean"]) == 0
    out = capsys.readouterr().out
    assert "4:003" in out and "(4 rows x 10 columns)" in out


def test_cli_similar(store, capsys):
    path, _ = store
    assert main(["similar", path, "--segment", "5:001", "-k", "3", "--format", "csv"]) == 0
    df = pd.read_csv(__import__("io").StringIO(capsys.readouterr().out))
    expect = query.similar(path, "5:001", k=3)
    assert list(df["segment_id"]) == list(expect["segment_id"])


@pytest.mark.parametrize(
    "argv, words",
    [
        (["query", "{p}", "--features", "mfcc_1_mean"], "unknown feature 'mfcc_1_mean'"),
        (["query", "{p}", "--track", "99"], "unknown track '99'"),
        (["query", "{p}", "--format", "parquet"], "give --output FILE"),
        (["similar", "{p}", "--segment", "nope"], "unknown segment 'nope'"),
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
    from emodist.spec import Config
    from emodist.store import zarrio as st

    plan = make_plan(n_tracks=6, per_track=2)
    chunk = 4
    ds = st.template(plan, handcrafted_names=HC_NAMES, deep_dim=DEEP_DIM, chunk=chunk,
                     attrs={"config": Config().to_json()})
    url = str(tmp_path / "partial.zarr")
    st.create_store(url, ds, chunk)
    rng = np.random.default_rng(1)
    written = {}
    for a, b in st.chunk_regions(len(plan), chunk)[:2]:  # the last chunk stays pending
        values = {"handcrafted": rng.normal(size=(b - a, len(HC_NAMES))),
                  "deep": rng.random((b - a, DEEP_DIM))}
        status = np.ones(b - a, np.int8)
        status[0] = schema.STATUS_FAILED if a == 0 else schema.STATUS_DONE
        st.write_region(url, a, b, values, status)
        written[a] = values
    st.finish_store(url, {"failures": json.dumps(FAILURES[:1])})

    summary = query.info(url)
    assert summary["completeness"]["done"] == 7
    assert summary["completeness"]["pending"] == 4 and summary["completeness"]["failed"] == 1
    assert summary["config"]["sr"] == Config().sr
    df = query.select(url, tracks="3", features="deep")  # rows 4, 5: second chunk
    np.testing.assert_allclose(df.iloc[:, len(query.META_COLUMNS):].to_numpy(),
                               written[4]["deep"][:2].astype(np.float32))
    assert query.select(url, tracks="6", features="deep").empty  # pending chunk
    hits = query.similar(url, "3:001", k=20)
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
    ds = schema.build_dataset(plan, HC_NAMES, DEEP_DIM, handcrafted=rng.normal(size=(n, 16)),
                              deep=rng.random((n, DEEP_DIM)), status=np.ones(n))
    url = str(tmp_path / "emotify.zarr")
    ds.to_zarr(url, zarr_format=3, consolidated=True, encoding=encoding(ds, 25))
    summary = query.info(url)
    assert summary["segments"] == 398 and summary["tracks"] == 100
    assert summary["classes"]["calmness"]["tracks"] == 36  # the README's listener-rule counts
    assert summary["classes"]["solemnity"]["tracks"] == 3
    assert summary["genres"]["classical"]["segments"] == 98  # classical/16.mp3: 42 s, 2 pieces
    track = plan["track_id"].iloc[0]
    df = query.select(url, tracks=track, features="rms_mean")
    assert list(df["segment_id"]) == list(plan.loc[plan["track_id"] == track, "segment_id"])
