"""Extraction while Dask restarts its workers (``--lifetime``): the store equals a steady run.

``benchmarks/bench_sustained.py`` at its quick size (its full size is the
2,000-track run of ``docs/performance.md``), through the benchmark runner as
``python -m benchmarks --quick`` runs it: generated tracks extracted by
``emodist extract --scheduler`` against a real ``dask scheduler`` and ``dask
worker``, once with workers that live for the whole run and once with
workers that retire every few seconds and are restarted by their nannies.
The benchmark raises unless both stores are complete, the restarted run saw
restarts and the steady run none, and the stores are equal bit for bit; the
benchmark smoke test leaves this one to this module.
"""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from benchmarks import bench_sustained as bench
from benchmarks.__main__ import discover, run_one, validate


@pytest.mark.cluster
@pytest.mark.slow
def test_restarted_workers_write_the_same_store():
    outcome = run_one(discover()["sustained"], quick=True, timeout=900, capture=True)
    assert outcome["status"] == "ok", f"{outcome['error']}\n{outcome['output'][-3000:]}"
    result = outcome["result"]
    assert validate(result) == []
    rows = {r["metric"]: r["value"] for r in result["rows"]}
    assert rows["worker restarts during the restarted run"] >= 1
    assert rows["restarted store equals the steady store"] == 1.0
    assert rows["steady run: segments per second"] > 0


def test_stores_equal_sees_one_changed_value(tmp_path):
    """The comparison the benchmark relies on catches a single changed value."""
    a, b = tmp_path / "a.zarr", tmp_path / "b.zarr"
    for path in (a, b):
        g = zarr.open_group(str(path), mode="w")
        g.create_array("x", data=np.arange(12, dtype=np.float32).reshape(3, 4))
        g.create_array("s", data=np.ones(3, dtype=np.int8))
    assert bench.stores_equal(a, b) == (True, "2 arrays")
    zarr.open_group(str(b), mode="r+")["x"][1, 2] = np.nextafter(np.float32(6), np.float32(7))
    assert bench.stores_equal(a, b) == (False, "x")
    zarr.open_group(str(b), mode="r+").create_array("y", data=np.zeros(2))
    assert bench.stores_equal(a, b) == (False, "different arrays")
