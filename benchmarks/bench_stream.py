"""Streamed evaluation over a generated store of 1,000,000 segments: driver memory and time.

A store of ``N`` segments (1,000,000 by default; 8,000 with ``quick``) is
written in the real layout (:mod:`benchmarks.bench_store`'s plan, four
segments per track, Emotify class shares, folds grouped by track) with the
real ``handcrafted`` group (131 columns) and an ``inception_v3`` group of
``EMODIST_BENCH_DEEP_DIM`` columns (512 by default): 2.6 GB of float32 at
full size.  The values are Gaussian noise plus a small class-dependent
offset, so that the streamed model has something to learn (its accuracy
must beat the majority rate: a check that the run learned at all).

``emodist evaluate --stream`` (:func:`emodist.learn.stream.stream_evaluate`)
then runs in a child process per feature set, 5 grouped folds, 5 epochs,
and the child reports its peak RSS (``VmHWM``): the target is < 2 GiB.  The
baseline of the same run is what the in-memory evaluation would hold: the
float64 feature matrix it loads (``N x width x 8`` bytes), and the child's
RSS right after opening the store and reading its coordinates (the floor
the streamed evaluation adds its blocks to).

Environment: ``EMODIST_BENCH_DIR`` (where the store goes), ``EMODIST_BENCH_KEEP=1``
(keep and reuse the store), ``EMODIST_BENCH_SEGMENTS``, ``EMODIST_BENCH_DEEP_DIM``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from benchmarks.bench_store import _reusable, _status_mib, build_store
from benchmarks.common import machine, row

#: Size of the class-dependent offset (in noise standard deviations) of each column.
SIGNAL = 0.15
FEATURE_SETS = ("handcrafted", "inception_v3")
DATASET = "random benchmark store for streaming"


def _child(path: str, features: str) -> None:
    """In a child process: open, stream-evaluate, print figures as JSON."""
    from emodist.learn.stream import stream_evaluate
    from emodist.store import open_store

    t0 = time.perf_counter()
    ds = open_store(path)
    _ = ds.emodist.index  # the coordinates every evaluation reads
    floor = _status_mib("VmRSS")
    t1 = time.perf_counter()
    report = stream_evaluate(ds, features=[features], folds=5, seed=0, epochs=5)
    r = report["results"][0]
    print(json.dumps({"open_s": t1 - t0, "stream_s": time.perf_counter() - t1, "floor_mib": floor,
                      "peak_mib": _status_mib("VmHWM"), "n": report["data"]["n_segments"],
                      "width": r["n_features"], "accuracy": r["segment"]["accuracy"]["pooled"],
                      "majority": report["baselines"]["segment"]["majority"]}))


def run(quick: bool = False) -> dict:
    n = int(os.environ.get("EMODIST_BENCH_SEGMENTS") or (8_000 if quick else 1_000_000))
    deep_dim = int(os.environ.get("EMODIST_BENCH_DEEP_DIM") or (64 if quick else 512))
    keep = os.environ.get("EMODIST_BENCH_KEEP") == "1"
    base = os.environ.get("EMODIST_BENCH_DIR") or tempfile.gettempdir()
    path = os.path.join(base, f"emodist-bench-stream-{n}-{deep_dim}.zarr")
    rows = []
    try:
        if not (keep and _reusable(path, n, deep_dim, DATASET)):
            shutil.rmtree(path, ignore_errors=True)
            built = build_store(path, n, deep_dim, by_track=True, signal=SIGNAL, dataset=DATASET)
            rows.append(row("store written", built["seconds"], unit="s",
                            note=f"{n} segments, {built['bytes'] / 2**30:.2f} GiB on disk"))
        out = {}
        for fs in FEATURE_SETS:
            proc = subprocess.run([sys.executable, "-c",
                                   f"from benchmarks.bench_stream import _child; _child({path!r}, {fs!r})"],
                                  capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise RuntimeError(f"streamed evaluation of {fs} failed: {proc.stderr[-2000:]}")
            out[fs] = json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)
    for fs, r in out.items():
        in_memory = r["n"] * r["width"] * 8 / 2**20
        rows += [
            row(f"{fs}: driver peak RSS, streamed", r["peak_mib"], unit="MiB",
                note=f"{r['n']} segments x {r['width']} columns; target < 2048 MiB"),
            row(f"{fs}: in-memory feature matrix (baseline)", in_memory, unit="MiB",
                note="float64, what the in-memory evaluation loads"),
            row(f"{fs}: peak / in-memory matrix", r["peak_mib"] / in_memory, unit="ratio"),
            row(f"{fs}: RSS after opening the store", r["floor_mib"], unit="MiB",
                note="coordinates and statuses"),
            row(f"{fs}: streamed evaluation", r["stream_s"], unit="s",
                note="5 grouped folds, 5 epochs: 7 passes over the store"),
            row(f"{fs}: rate", r["n"] * 7 / r["stream_s"], unit="segments/s", note="rows x passes"),
            row(f"{fs}: accuracy (pooled) / majority rate", r["accuracy"] / r["majority"], unit="ratio",
                note=f"{100 * r['accuracy']:.1f}% vs {100 * r['majority']:.1f}%: > 1 means it learned"),
        ]
    peak = max(r["peak_mib"] for r in out.values())
    summary = (f"streamed evaluation of {n} segments: driver peak RSS {peak:.0f} MiB (target < 2048), "
               + ", ".join(f"{fs} {r['stream_s']:.0f} s" for fs, r in out.items()))
    return {"name": "streamed evaluation", "machine": machine(), "rows": rows, "summary": summary}


if __name__ == "__main__":
    from benchmarks.common import main

    main(run)
