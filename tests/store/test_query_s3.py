"""Query a feature store in S3 (a real moto server on 127.0.0.1) through s3:// URLs."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest

from emodist.cli import main
from emodist.store import counting_store, open_store
from tests.servers import make_bucket, moto_server, upload_tree
from tests.store.query_store import (
    EMB_NAMES,
    HC_NAMES,
    IDS,
    TRACKS,
    N,
    brute_force,
    done,
    nearest,
    write_test_store,
    zscore,
)

pytestmark = pytest.mark.s3


def test_open_select_similar_info_on_s3(tmp_path, capsys):
    local = tmp_path / "features.zarr"
    v = write_test_store(local)
    with moto_server() as (endpoint, options):
        make_bucket(endpoint, "emodist")
        url = "s3://emodist/stores/features.zarr"
        upload_tree(options, local, url)

        counter = counting_store(url, options)
        ds = open_store(counter)
        assert ds.emodist.index.n
        counter.reset()
        df = ds.emodist.select(tracks="7", features=["mfcc_*", "inception_v3_000*"])
        rows = np.flatnonzero(TRACKS == "7")  # rows 24..27: chunk 3 (21..27)
        np.testing.assert_array_equal(df["mfcc_12_mean"], v["handcrafted"][rows, 12])
        np.testing.assert_array_equal(df[EMB_NAMES[3]], v["inception_v3"][rows, 3])
        assert set(counter.keys) == {"handcrafted/c/3/0", "inception_v3/c/3/0"}

        remote = open_store(url, options)
        assert remote.emodist.groups == ["handcrafted", "inception_v3", "tempo"]
        one = remote.sel(segment="7:002")
        np.testing.assert_array_equal(one["tempo"].values, v["tempo"][26])
        q_pos = int(np.flatnonzero(IDS == "7:002")[0])
        for features, x in (("inception_v3", v["inception_v3"]),
                            ("handcrafted", zscore(v["handcrafted"], done("handcrafted")))):
            got = remote.emodist.similar("7:002", k=5, features=features)
            d = brute_force(x, x[q_pos], "cosine")
            allowed = done(features)
            allowed[q_pos] = False
            expect = nearest(d, allowed, 5)
            assert list(got["segment_id"]) == list(IDS[expect]), features
            np.testing.assert_allclose(got["distance"], d[expect], rtol=1e-4, atol=1e-6)

        summary = remote.emodist.info()
        assert summary["segments"] == N and summary["store"] == url
        assert summary["complete"] == int(done().sum())
        assert summary["size_bytes"] > 10_000

        opts = json.dumps(options)
        assert main(["query", url, "--track", "7", "--features", "rms_mean", "--format", "json",
                     "--storage-options", opts]) == 0
        rows_out = json.loads(capsys.readouterr().out)
        assert [r["segment_id"] for r in rows_out] == [f"7:{i:03d}" for i in range(4)]
        np.testing.assert_allclose([r["rms_mean"] for r in rows_out],
                                   v["handcrafted"][rows, HC_NAMES.index("rms_mean")], rtol=1e-6)
        assert main(["similar", url, "--segment", "7:002", "-k", "3", "--format", "csv",
                     "--storage-options", opts]) == 0
        out = pd.read_csv(io.StringIO(capsys.readouterr().out))
        x = v["inception_v3"]
        d = brute_force(x, x[q_pos], "cosine")
        allowed = done("inception_v3")
        allowed[q_pos] = False
        assert list(out["segment_id"]) == list(IDS[nearest(d, allowed, 3)])
        assert main(["info", url, "--storage-options", opts]) == 0
        assert f"store: {url}" in capsys.readouterr().out
        assert main(["info", "s3://emodist/nothing.zarr", "--storage-options", opts]) == 2
        assert "no feature store" in capsys.readouterr().err
