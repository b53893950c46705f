"""Query a feature store in S3 (a real moto server on 127.0.0.1) through s3:// URLs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from emodist.cli import main
from emodist.store import query
from tests.servers import make_bucket, moto_server, upload_tree
from tests.test_query import STATUS, write_store

pytestmark = pytest.mark.s3


def test_open_select_similar_info_on_s3(tmp_path, capsys):
    local = tmp_path / "features.zarr"
    mem = write_store(local, status=STATUS)
    with moto_server() as (endpoint, options):
        make_bucket(endpoint, "emodist")
        url = "s3://emodist/stores/features.zarr"
        upload_tree(options, local, url)

        counter = query.counting_store(url, options)
        ds = query.open_store(counter)
        df = query.select(ds, tracks="7", features=["mfcc_*", "deep_000*"])
        rows = np.flatnonzero(mem.track_id.values == "7")
        np.testing.assert_array_equal(df["mfcc_12_mean"], mem.handcrafted.values[rows, 12])
        np.testing.assert_array_equal(df["deep_0003"], mem.deep.values[rows, 3])
        data_keys = {k for k in counter.keys if k.startswith(("deep/", "handcrafted/"))}
        assert data_keys == {"handcrafted/c/3/0", "deep/c/3/0"}  # rows 24..27: chunk 21..27

        local_ds = query.open_store(str(local))
        for features in ("deep", "handcrafted"):
            got = query.similar(url, "7:002", k=5, features=features, storage_options=options)
            want = query.similar(local_ds, "7:002", k=5, features=features)
            assert list(got["segment_id"]) == list(want["segment_id"])
            np.testing.assert_allclose(got["distance"], want["distance"], rtol=1e-6)

        summary = query.info(url, storage_options=options)
        assert summary["segments"] == len(STATUS) and summary["size_bytes"] > 10_000

        opts = json.dumps(options)
        assert main(["query", url, "--track", "7", "--features", "rms_mean", "--format", "json",
                     "--storage-options", opts]) == 0
        rows_out = json.loads(capsys.readouterr().out)
        assert [r["segment_id"] for r in rows_out] == [f"7:{i:03d}" for i in range(4)]
        assert main(["info", "s3://emodist/nothing.zarr", "--storage-options", opts]) == 2
        assert "no feature store" in capsys.readouterr().err
