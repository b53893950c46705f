"""The store-facing part of an evaluation (:mod:`emodist.learn.data`): the generated store,
feature groups and sets, the evaluated segments, provenance."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from emodist.errors import EmodistError, StoreError
from emodist.learn import data as ft
from tests.stores import (
    DEEP,
    build,
    dataset,
    deep_names,
    hc_names,
    make_arrays,
    make_store,
)


def test_generated_store_layout(tmp_path):
    ds = ft.open_dataset(make_store(tmp_path / "s.zarr", n_tracks=8, n_segments=2))
    assert ds.sizes["segment"] == 16
    assert [str(v) for v in ds["segment"].values[:2]] == ["0:000", "0:001"]
    assert [str(v) for v in ds["handcrafted_feature"].values] == hc_names()
    assert ds[DEEP].shape == (16, 6) and ds[f"{DEEP}_status"].dtype == np.int8
    recorded = ds.attrs["feature_groups"][DEEP]
    assert recorded["version"] == "1" and recorded["width"] == 6
    assert recorded["model_sha256"] == "0" * 64
    assert ds["segment_index"].dtype == np.int32
    # the segments of one track share label and votes
    labels = pd.Series(ds["label"].values).groupby(ds["track_id"].values).nunique()
    assert (labels == 1).all()
    np.testing.assert_allclose(ds["votes"].values.sum(axis=1), 1.0, rtol=1e-5)


def test_stored_groups_in_store_order(tmp_path):
    ds = ft.open_dataset(make_store(tmp_path / "s.zarr", n_tracks=4, n_segments=1))
    groups = ft.stored_groups(ds)
    assert list(groups) == ["handcrafted", DEEP]
    assert groups["handcrafted"] == hc_names() and groups[DEEP] == deep_names(6)
    assert list(ft.stored_groups(build(make_arrays(n_tracks=4), deep=False))) == ["handcrafted"]


def test_shuffled_labels_keep_class_sizes():
    a = make_arrays(n_tracks=20, shuffle_labels=False)
    b = make_arrays(n_tracks=20, shuffle_labels=True)
    assert sorted(a["plan"]["label"]) == sorted(b["plan"]["label"])
    assert (a["plan"]["label"] != b["plan"]["label"]).any()


def test_store_reads_stay_in_the_driver_while_a_dask_client_is_current(tmp_path):
    """Opening a store and loading its features run no task on the current client's cluster.

    Sent there, they would run on workers that may not reach the store (a local
    path, a remote cluster).  The same client does take an ordinary lazy
    computation, so the setup would have caught them.
    """
    from distributed import Client, LocalCluster, get_task_stream

    url = make_store(tmp_path / "s.zarr", n_tracks=8, n_segments=2)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        with get_task_stream(client) as reads:
            ds = ft.open_dataset(str(url))
            data = ft.load_data(ds, features=["handcrafted", DEEP])
        with get_task_stream(client) as ordinary:
            total = float(ds[DEEP].sum().values)
    assert data.X["handcrafted"].shape == (16, len(hc_names())) and data.X[DEEP].shape == (16, 6)
    assert reads.data == []
    assert ordinary.data and np.isfinite(total)


AVAIL = {"handcrafted": hc_names(), DEEP: deep_names(2), "musicnn_msd": ["msd_0", "msd_1"]}


def test_groups_joins_and_patterns():
    sets = ft.resolve_feature_sets(
        ["handcrafted", f"handcrafted+{DEEP}", "mfcc_0[01]", "tempo", f"{DEEP}_0001"], AVAIL)
    assert [s.name for s in sets] == ["handcrafted", f"handcrafted+{DEEP}", "custom"]
    assert sets[1].names == hc_names() + deep_names(2)
    assert sets[1].groups == ["handcrafted", DEEP]
    assert sets[2].names == ["mfcc_00", "mfcc_01", "tempo", f"{DEEP}_0001"]
    assert sets[2].groups == ["handcrafted", DEEP]
    # a repeated set is evaluated once; a group repeated in a join counts once
    again = ft.resolve_feature_sets(["handcrafted", "handcrafted", "musicnn_msd+musicnn_msd"], AVAIL)
    assert [s.name for s in again] == ["handcrafted", "musicnn_msd"]


def test_default_is_every_group_and_all_joined():
    assert ft.default_feature_sets(AVAIL) == ["handcrafted", DEEP, "musicnn_msd",
                                              f"handcrafted+{DEEP}+musicnn_msd"]
    assert ft.default_feature_sets({"handcrafted": []}) == ["handcrafted"]
    assert [s.name for s in ft.resolve_feature_sets(None, AVAIL)][-1] == f"handcrafted+{DEEP}+musicnn_msd"
    assert [s.name for s in ft.resolve_feature_sets([], {"handcrafted": hc_names()})] == ["handcrafted"]


def test_unknown_names_are_one_line_and_list_the_stored_groups():
    with pytest.raises(EmodistError, match=r"'deep' is not a stored feature group \(the store "
                       rf"holds handcrafted, {DEEP}, musicnn_msd\)") as err:
        ft.resolve_feature_sets("handcrafted+deep", AVAIL)
    assert err.value.param == "features" and "\n" not in err.value.message
    with pytest.raises(EmodistError, match="'both' is neither a stored feature group"):
        ft.resolve_feature_sets(["both"], AVAIL)
    with pytest.raises(EmodistError, match=r"feature pattern 'chroma_\*' matches no feature"):
        ft.resolve_feature_sets(["chroma_*"], AVAIL)
    with pytest.raises(StoreError, match="no feature groups"):
        ft.resolve_feature_sets("handcrafted", {})


def test_load_data_uses_finished_labelled_segments_only():
    a = make_arrays(n_tracks=8, n_segments=2)
    a["status"][[0, 5]] = [0, -1]
    a["plan"].loc[[2, 3], "label"] = ""  # a class dropped at extraction
    data = ft.load_data(build(a), "handcrafted")
    assert len(data.y) == 16 - 4
    assert "0:000" not in data.segment_id and "2:001" not in data.segment_id
    assert data.excluded == {"not extracted (status != 1)": 2, "class dropped at extraction": 2}
    np.testing.assert_allclose(data.X["handcrafted"][0], a["handcrafted"][1], rtol=1e-6)
    assert list(data.group[:2]) == ["0", "2"] and data.track_id[0] == "0"


def test_each_set_needs_every_one_of_its_groups_done():
    a = make_arrays(n_tracks=8, n_segments=1)
    deep_status = np.ones(8, np.int8)
    deep_status[[1, 2]] = [0, -1]
    ds = build(a, status={DEEP: deep_status})
    assert len(ft.load_data(ds, "handcrafted").y) == 8
    for spec in (DEEP, f"handcrafted+{DEEP}", ["handcrafted", DEEP], [f"{DEEP}_000*"]):
        data = ft.load_data(ds, spec)
        assert list(data.segment_id) == [f"{t}:000" for t in (0, 3, 4, 5, 6, 7)]
        assert data.excluded["not extracted (status != 1)"] == 2
    joined = ft.load_data(ds, f"handcrafted+{DEEP}")
    assert joined.X[f"handcrafted+{DEEP}"].shape == (6, 10 + 6)
    np.testing.assert_allclose(joined.X[f"handcrafted+{DEEP}"][1, 10:], a["deep"][3], rtol=1e-6)
    mask = ft.usable_rows(ds, ["handcrafted", DEEP])
    assert mask.tolist() == [True, False, False, True, True, True, True, True]


def test_load_data_recomputes_labels_with_another_rule():
    a = make_arrays(n_tracks=8, n_segments=1)
    # track 0: listener profile says calmness, plain mean says tension
    a["votes_mean"][0] = 0.0
    a["votes_mean"][0, 7] = 0.9
    # track 1: plain mean says amazement, a class not kept at extraction
    a["votes_mean"][1] = 0.0
    a["votes_mean"][1, 0] = 0.9
    ds = build(a)
    stored = ft.load_data(ds, "handcrafted")
    assert stored.label_rule == "listener" and stored.y[0] == "calmness"
    mean = ft.load_data(ds, "handcrafted", label_rule="mean")
    assert mean.label_rule == "mean"
    assert mean.y[0] == "tension"
    assert "1:000" not in mean.segment_id
    assert mean.excluded["class dropped at extraction"] == 1


def test_load_data_errors():
    a = make_arrays(n_tracks=4, n_segments=1)
    a["status"][:] = 0
    with pytest.raises(StoreError, match="no finished, labelled segments"):
        ft.load_data(build(a), "handcrafted")
    b = make_arrays(n_tracks=4, n_segments=1)
    b["handcrafted"][1, 3] = np.nan
    with pytest.raises(StoreError, match="1 finished segments have non-finite handcrafted"):
        ft.load_data(build(b), "handcrafted")
    with pytest.raises(EmodistError, match=f"'{DEEP}' is neither a stored feature group"):
        ft.load_data(build(make_arrays(n_tracks=4), deep=False), DEEP)
    with pytest.raises(EmodistError, match="unknown label rule 'median'") as err:
        ft.load_data(build(make_arrays(n_tracks=4)), label_rule="median")
    assert err.value.param == "label_rule"
    plan = make_arrays(n_tracks=4)["plan"]
    novotes = dataset(plan, {"handcrafted": (hc_names(), np.zeros((12, 10)), np.ones(12))})
    with pytest.raises(StoreError, match="keeps no vote profiles"):
        ft.load_data(novotes, target="distribution")


def test_open_dataset_names_a_missing_store(tmp_path):
    with pytest.raises(StoreError, match="nothing.zarr: no feature store there"):
        ft.open_dataset(str(tmp_path / "nothing.zarr"))


def test_store_info_reads_native_attributes():
    ds = build(make_arrays(n_tracks=4), attrs={"failures": [{"track_id": "9", "error": "x"}]})
    info = ft.store_info(ds, ds)
    assert info["url"] == "<in-memory dataset>" and info["n_segments"] == 12
    assert info["n_failures"] == 1 and info["config"]["label_rule"] == "listener"
    assert info["feature_groups"]["handcrafted"]["width"] == 10
