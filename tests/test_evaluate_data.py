"""The generated stores of the evaluation tests (:mod:`tests.stores`) and the store reading.

The builders themselves live in :mod:`tests.stores`; they are re-exported
here for the tests that import them from this module.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from emodist.learn import features as ft
from tests.stores import CLASSES, DEEP, build, deep_names, hc_names, make_arrays, make_store

__all__ = ["CLASSES", "DEEP", "build", "deep_names", "hc_names", "make_arrays", "make_store"]


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
