"""End-to-end extraction speed, scaling and worker memory.

Each measurement is a full :func:`emodist.engine.extract.run_extract` into a fresh
store on a fresh LocalCluster of 1-thread worker processes, started by
:func:`emodist.runtime.cluster.connect` as ``emodist extract`` starts it (the
workers' malloc settings and Dask configuration included), whose workers
were first warmed up (imports, numba compilation, ONNX session: a one-off
cost per worker process, reported in the note): catalog,
plan from headers, template, chunk tasks (decode, one STFT per segment,
handcrafted features, spectrogram image, ONNX embedding in batches), region
writes, consolidation.  The deep features use the tiny random ONNX model
built by :func:`emodist.models.build.build_tiny_model` in quick runs and
for the memory runs; the full run on Emotify uses the real Inception-v3
(fp32) when it has been built (``emodist model build``), and extrapolates
the time of the full 1588-segment Emotify (target: <= 200 s on 2 cores).

- segments/s on the shared Emotify tracks (``EMODIST_EMOTIFY_ROOT``, 398
  segments of 15 s; with ``quick`` or without it, a generated dataset) with
  1 and with 2 workers, and the scaling efficiency ``rate2 / (2 rate1)``;
- peak RSS of each worker process (``ru_maxrss`` read on the worker after
  the run) at 1x, 4x and 16x a generated dataset (same chunk size), which
  must stay flat: tasks carry paths, the driver keeps only per-chunk
  counts, and a worker holds one chunk's audio and images at a time.
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine, row


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _warm_worker(spec) -> float:
    """Imports, numba compilation and the ONNX sessions of one worker; seconds."""
    import numpy as np

    from emodist.features import Segment, WorkerContext

    t0 = time.perf_counter()
    seconds = 4.0  # at least one MusiCNN patch (3 s)
    y = np.random.default_rng(0).standard_normal(int(spec.sr * seconds)).astype(np.float32)
    rates = {spec.sr} | {g.input().sr for g in spec.groups if g.input().sr}
    tracks = {r: y if r == spec.sr else y[: int(len(y) * r / spec.sr)] for r in rates}
    seg = Segment(tracks, 0.0, seconds, sr=spec.sr, n_fft=spec.n_fft, hop_length=spec.hop_length)
    for g in spec.groups:
        g.finish([g.prepare(seg)], WorkerContext(batch_size=1))
    return time.perf_counter() - t0


def extract_once(dataset: str, store: str, spec, n_workers: int,
                 chunk: int | None = None) -> dict:
    """One extraction on a fresh, warmed-up LocalCluster; rate and worker peak RSS.

    Returns
    -------
    dict
        ``segments``, ``seconds`` (wall time of :func:`run_extract`, cluster
        start and worker warm-up excluded), ``rate`` (segments/s),
        ``warmup_s`` (slowest worker's warm-up) and ``worker_rss_mib`` (list,
        one per worker), ``load`` (highest 1-minute load average seen).
    """
    from emodist.engine.extract import resolve_spec, run_extract
    from emodist.runtime.cluster import connect
    from emodist.spec import Runtime

    with connect(Runtime(n_workers=n_workers, threads_per_worker=1)) as c:
        runtime = Runtime(client=c, chunk=chunk, progress=False)
        spec = resolve_spec(spec, runtime)
        warm = max(c.run(_warm_worker, spec).values())
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        result = run_extract(dataset, store, spec, runtime)
        seconds = time.perf_counter() - t0
        # a store left by an earlier run would be resumed, not extracted: time nothing
        assert not result.resumed and result.n_written > 0, (store, result.n_written)
        rss = sorted(c.run(_peak_rss_mib).values())
        load = max(load, os.getloadavg()[0])
    return {"segments": result.n_done, "seconds": seconds, "warmup_s": warm, "load": load,
            "rate": result.n_done / seconds, "worker_rss_mib": rss}


def _real_model() -> str | None:
    """The built Inception-v3 (``emodist model build``), or None."""
    from emodist.errors import EmodistError
    from emodist.models.session import default_model_path, read_sidecar

    path = default_model_path()
    try:
        side = read_sidecar(path)
    except (EmodistError, OSError, ValueError):
        return None
    return path if int(side.get("output_dim", 0)) == 2048 else None


def run(quick: bool = False) -> dict:
    """Measure; see the module docstring."""
    from emodist.data.demo import make_demo_dataset
    from emodist.features import make_groups
    from emodist.models.build import build_tiny_model
    from emodist.spec import ExtractionSpec

    def config(model_path, **kw):
        return ExtractionSpec(groups=make_groups(["handcrafted", "inception_v3"],
                                                 {"model": model_path}), **kw)

    rows = []
    with tempfile.TemporaryDirectory(prefix="emodist-bench-extract-") as tmp:
        tmp = Path(tmp)
        model = build_tiny_model(str(tmp / "tiny.onnx"), seed=0)
        speed_model, model_name = model, "tiny ONNX"
        real = _real_model()
        if real and not quick:
            speed_model, model_name = real, "real Inception-v3 fp32"
        root = os.environ.get("EMODIST_EMOTIFY_ROOT")
        if not quick and root and (Path(root) / "data.csv").is_file():
            dataset, spec = root, config(speed_model)
            what = "shared Emotify (100 tracks, 398 x 15 s)"
        else:
            dataset = str(tmp / "gen")
            make_demo_dataset(dataset, n_tracks=8 if quick else 40, seed=0,
                              duration_s=10.0 if quick else 30.0)
            spec = config(speed_model, segment_seconds=5.0)
            what = f"generated ({'8 x 10' if quick else '40 x 30'} s tracks, 5 s segments)"
        runs = {}
        repeats = 1 if quick else 3
        for n in (1, 2):
            tries = [extract_once(dataset, str(tmp / f"s{n}-{i}.zarr"), spec, n)
                     for i in range(repeats)]  # a new store each time
            rates = sorted(t["rate"] for t in tries)
            runs[n] = sorted(tries, key=lambda t: t["rate"])[len(tries) // 2]  # the median run
            rows.append(row(f"segments/s, {n} worker{'s' if n > 1 else ''}", runs[n]["rate"],
                            rates[-1] - rates[0], unit="segments/s",
                            note=f"{what}; median of {repeats} run(s): {runs[n]['segments']} "
                                 f"segments in {runs[n]['seconds']:.1f} s after a "
                                 f"{runs[n]['warmup_s']:.1f} s worker warm-up (imports, numba, "
                                 f"ONNX session); handcrafted full + {model_name}; 1-min load "
                                 f"average up to {max(t['load'] for t in tries):.1f}"))
            rss = [max(t["worker_rss_mib"]) for t in tries]
            rows.append(row(f"peak RSS per worker, {n} worker{'s' if n > 1 else ''}",
                            sorted(rss)[len(rss) // 2], max(rss) - min(rss), "MiB",
                            "max over the workers of a run; median over runs"))
        eff = runs[2]["rate"] / (2 * runs[1]["rate"])
        full = 1588 / runs[2]["rate"]
        rows.append(row("full Emotify (1588 segments), 2 workers, extrapolated", full, unit="s",
                        note=f"1588 / rate with 2 workers ({model_name}); target <= 200 s "
                             "with the real model, fp32"))
        rows.append(row("scaling efficiency 1 -> 2 workers", eff, unit="ratio",
                        note=f"rate(2) / (2 rate(1)) on {os.cpu_count()} cores, 1 thread/worker"))

        base = 2 if quick else 4
        chunk = 4
        gen_spec = config(model, segment_seconds=5.0)
        peaks = {}
        for mult in (1, 4, 16):
            ds = str(tmp / f"x{mult}")
            make_demo_dataset(ds, n_tracks=base * mult, seed=mult, duration_s=10.0)
            r = extract_once(ds, str(tmp / f"x{mult}.zarr"), gen_spec, 1, chunk=chunk)
            peaks[mult] = r["worker_rss_mib"][0]
            rows.append(row(f"peak worker RSS at {mult}x", peaks[mult], unit="MiB",
                            note=f"{base * mult} generated tracks x 10 s, {r['segments']} "
                                 f"segments, chunks of {chunk}, 1 worker; "
                                 f"{r['rate']:.1f} segments/s"))
        growth = peaks[16] / peaks[1]
        rows.append(row("worker RSS growth 1x -> 16x", growth, unit="ratio",
                        note="flat memory means ~1.0"))
    summary = (f"{runs[1]['rate']:.1f} segments/s with 1 worker, {runs[2]['rate']:.1f} with 2 "
               f"(efficiency {eff:.2f}, {model_name}); full Emotify extrapolated {full:.0f} s; "
               f"worker peak RSS {peaks[1]:.0f} / {peaks[4]:.0f} / "
               f"{peaks[16]:.0f} MiB at 1x / 4x / 16x")
    return {"name": "extract", "machine": machine(), "rows": rows, "summary": summary}


if __name__ == "__main__":
    from benchmarks.common import main

    main(run)
