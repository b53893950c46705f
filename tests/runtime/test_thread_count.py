"""Stored values do not depend on the thread count of the workers that computed them.

A worker limits BLAS to its thread count (``emodist.engine.worker.apply_thread_budget``);
a BLAS matrix product splits its sums by the size of its pool, so the
handcrafted chroma and spectral moments came out 1 ULP apart when a chunk was
repaired with another ``--threads-per-worker``.  Those products are now
computed outside BLAS (:func:`emodist.features.spectral.thread_free_product`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from emodist.features.spectral import thread_free_product

SEGMENT, CHUNK = 4.0, 2


def test_product_is_the_same_with_any_blas_pool():
    rng = np.random.default_rng(0)
    a = rng.random((12, 1025), dtype=np.float32)
    b = (rng.random((1025, 431), dtype=np.float32) ** 4).astype(np.float32)
    out = {}
    for n in (1, 2, 4):
        with threadpool_limits(limits=n, user_api="blas"):
            out[n] = thread_free_product(a, b)
    assert out[1].dtype == np.float32 and out[1].shape == (12, 431)
    assert np.array_equal(out[1], out[2]) and np.array_equal(out[1], out[4])
    np.testing.assert_allclose(out[1], a.astype(np.float64) @ b.astype(np.float64), rtol=1e-5)


@pytest.fixture(scope="module")
def dataset(demo_data) -> Path:
    return demo_data(4, 4, 8.0)


def _extract(dataset: Path, url: Path, threads: int, **kw):
    from distributed import Client, LocalCluster

    from emodist.engine.extract import run_extract
    from emodist.features import make_groups
    from emodist.spec import ExtractionSpec, Runtime

    spec = ExtractionSpec(groups=make_groups(["handcrafted"]), segment_seconds=SEGMENT)
    with LocalCluster(n_workers=1, threads_per_worker=threads, processes=False,
                      dashboard_address=":0") as lc, Client(lc) as client:
        return run_extract(str(dataset), str(url), spec,
                           Runtime(client=client, progress=False, chunk=CHUNK), **kw)


def _values(url: Path) -> np.ndarray:
    import zarr

    return np.asarray(zarr.open_group(str(url), mode="r")["handcrafted"][...])


def test_repair_with_another_thread_count_is_bit_identical(dataset, tmp_path):
    """A store written with 1 thread, a chunk deleted, repaired with 3: equal bit for bit."""
    url = tmp_path / "s.zarr"
    first = _extract(dataset, url, threads=1)
    assert first.n_done == 8 and first.n_failed == 0
    original = _values(url)
    whole = tmp_path / "whole.zarr"
    shutil.copytree(url, whole)
    for chunk in ("1", "3"):
        (url / "handcrafted" / "c" / chunk / "0").unlink()
    repaired = _extract(dataset, url, threads=3, repair=True)
    assert len(repaired.repaired) >= 1 and repaired.n_done == 8
    assert np.array_equal(_values(url), original)
    # and a whole store written with 3 threads equals the one written with 1
    again = tmp_path / "three.zarr"
    _extract(dataset, again, threads=3)
    assert np.array_equal(_values(again), _values(whole))
