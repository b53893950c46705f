"""Segment planning of a large remote dataset: on the driver vs on the workers.

``N`` tiny WAV files (20,000 by default, 200 with ``quick``; 1 s mono 8 kHz
16-bit each) are uploaded in parallel to a moto S3 server
(:func:`tests.servers.moto_server`, a separate process on 127.0.0.1) with a
manifest CSV (``track_id,path,label,group,genre``, the layout
:func:`emodist.data.catalog.load_manifest` reads), so the plan has one
header to read per file.  Then :func:`emodist.data.segments.plan_segments`
plans them, 1 s segments:

- on the driver (today's path: a 16-thread pool here);
- on the workers of a process-based LocalCluster of 2 one-thread workers
  (:func:`emodist.engine.planning.plan_segments_on_workers`: batches of at most
  500 files per task, 16 threads per task, bounded in flight), whose
  scheduler lives in the driver's process;
- on 2 one-thread ``dask worker`` processes of a separate ``dask scheduler``
  (:func:`tests.servers.dask_cluster`, the compose deployment's commands):
  the driver is a client only, as on a cloud cluster;
- on the same kind of cluster, the plan kept on the workers and written by
  them into a new store's template on the moto server
  (:func:`emodist.engine.planning.plan_on_workers`, then the sized template
  and :meth:`WorkerPlan.write`): what ``emodist extract`` does for a new
  store planned on the workers; the driver receives segment counts only.

Each measurement runs in a fresh process (so one's heap does not hide the
next one's growth), at ``N / 4`` and at ``N`` files, and reports wall time,
files/s and the driver process's peak RSS growth during planning (RSS
sampled every 20 ms by a thread, minus the RSS just before planning; a
warm-up plan of a few files first, so imports and connections are not
counted), next to the size of the plan table itself, and the growth per
file from ``N / 4`` to ``N``.  The plans must be equal.
Before that, the catalog's audio check of the manifest, each in a fresh
process: one ``exists`` per file (what it did before) against the listing of
each folder once that :func:`emodist.data.catalog.paths_exist` does.

Environment: ``EMODIST_BENCH_PLAN_FILES`` (another ``N``).
"""

from __future__ import annotations

import io
import os
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

from benchmarks.common import RssPeak, machine, row

#: Segment length of the plan (every file gives one segment).
SEGMENT_S = 1.0
LABELS = ("calmness", "joyful_activation", "tension", "nostalgia", "power", "sadness",
          "tenderness", "solemnity")
BUCKET = "bench-planning"
#: Files planned once, untimed, before each measurement.
WARMUP = 32
#: Where the headers are read: mode -> the rows' wording.
ON = {"driver": "on the driver", "workers": "on the workers",
      "cluster": "on a separate cluster's workers",
      "store": "on a separate cluster's workers into the store"}
#: Where the headers are read: mode -> how (the row notes).
MODES = {
    "driver": "16 threads on the driver",
    "workers": "2 one-thread workers of a LocalCluster (its scheduler in the driver's process), "
               "16 threads per task",
    "cluster": "2 one-thread 'dask worker' processes and a separate 'dask scheduler' "
                 "(the driver is a client only), 16 threads per task",
    "store": "the same cluster; the plan stays on the workers, which write the coordinates "
             "into a new store on moto (template included)",
}


def wav_bytes(seconds: float = 1.0, sr: int = 8000) -> bytes:
    """One mono 16-bit WAV file of a quiet tone, as bytes."""
    import numpy as np
    import soundfile as sf

    t = np.arange(int(seconds * sr)) / sr
    buf = io.BytesIO()
    sf.write(buf, (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), sr, format="WAV",
             subtype="PCM_16")
    return buf.getvalue()


def manifest_text(n: int, prefix: str) -> str:
    """A manifest CSV of ``n`` tracks ``prefix/NNNNNN.wav``, labels round robin."""
    lines = ["track_id,path,label,group,genre"]
    lines += [f"t{i:06d},{prefix}/{i:06d}.wav,{LABELS[i % len(LABELS)]},g{i // 4},bench"
              for i in range(n)]
    return "\n".join(lines) + "\n"


def upload(options: dict, sizes: tuple[int, ...]) -> tuple[dict, float]:
    """``max(sizes)`` WAV files, and a manifest of the first ``k`` per size ``k``.

    Returns the manifest URL of each size and the seconds the audio upload took.
    """
    import s3fs

    fs = s3fs.S3FileSystem(**options)
    data = wav_bytes()
    t0 = time.perf_counter()
    fs.pipe({f"{BUCKET}/audio/{i:06d}.wav": data for i in range(max(sizes))}, batch_size=64)
    seconds = time.perf_counter() - t0
    urls = {k: f"s3://{BUCKET}/manifest-{k}.csv" for k in sizes}
    for k, url in urls.items():
        fs.pipe(url, manifest_text(k, f"s3://{BUCKET}/audio").encode())
    return urls, seconds


def measure(mode: str, manifest: str, options: dict) -> dict:
    """Plan ``manifest`` on the driver or on 2 workers (in a fresh process); figures."""
    import contextlib
    import dataclasses
    import hashlib
    import logging

    from emodist.data.catalog import load_dataset
    from emodist.data.segments import plan_segments
    from emodist.engine.planning import plan_segments_on_workers
    from emodist.spec import ExtractionSpec

    def plan_segments_at(catalog, spec, client):
        if client is None:
            return plan_segments(catalog, spec)
        return plan_segments_on_workers(client, catalog, spec)

    cat = load_dataset(manifest, storage_options=options, check_audio=False)
    spec = ExtractionSpec(segment_seconds=SEGMENT_S)
    with contextlib.ExitStack() as stack:
        client = None
        if mode == "workers":
            from distributed import Client, LocalCluster

            cluster = stack.enter_context(LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                silence_logs=logging.ERROR))
            client = stack.enter_context(Client(cluster))
        elif mode in ("cluster", "store"):
            from distributed import Client

            from tests.servers import dask_cluster

            address, _ = stack.enter_context(dask_cluster(n_workers=2, nthreads=1))
            client = stack.enter_context(Client(address))
        # warm-up on a few files: imports, connections and the first tasks are not timed
        few = dataclasses.replace(cat, tracks=cat.tracks.iloc[:WARMUP])
        if mode == "store":
            plan_into_store(client, few, spec, f"{manifest}.warmup.zarr", options)
        else:
            plan_segments_at(few, spec, client)
        with RssPeak() as rss:
            t0 = time.perf_counter()
            if mode == "store":
                url = f"{manifest}.zarr"
                problems = plan_into_store(client, cat, spec, url, options)
            else:
                plan = plan_segments_at(cat, spec, client)
                problems = plan.problems
            seconds = time.perf_counter() - t0
    table = stored_plan(url, options) if mode == "store" else plan.table
    digest = hashlib.sha256(table.to_csv(index=False).encode()
                            + repr(problems).encode()).hexdigest()
    return {"seconds": seconds, "n": len(cat.usable()), "segments": len(table),
            "problems": len(problems), "growth_mib": (rss.peak - rss.base) / 2**20,
            "table_mib": table.memory_usage(deep=True).sum() / 2**20, "digest": digest}


def plan_into_store(client, cat, spec, url: str, options: dict) -> list:
    """Plan ``cat`` on the workers into a new store at ``url``; the plan's problems."""
    from emodist.engine.extract import apply_plan
    from emodist.engine.plan import plan_sized
    from emodist.engine.planning import plan_on_workers

    held = plan_on_workers(client, cat, spec)
    p = plan_sized(len(held), spec)
    apply_plan(url, p, options)
    held.write(url, options, chunk=p.chunk, votes=False, votes_mean=False)
    return held.problems


def stored_plan(url: str, options: dict):
    """The segment plan table read back from a store's coordinates."""
    import pandas as pd

    from emodist.data.segments import PLAN_COLUMNS
    from emodist.store import open_store

    ds = open_store(url, options)
    columns = {"segment_id": ds["segment"].values}
    columns.update({c: ds[c].values for c in PLAN_COLUMNS if c != "segment_id"})
    return pd.DataFrame(columns, columns=PLAN_COLUMNS)


def catalog_check(manifest: str, options: dict, lookups: bool) -> dict:
    """Load ``manifest`` with its audio check (a fresh process: no listing cache).

    ``lookups=False``: :func:`emodist.data.catalog.load_dataset` as it is
    (one listing per folder); ``True``: the same catalog without the check,
    then one ``exists`` per file, what the check did before.
    """
    import s3fs

    from emodist.data.catalog import load_dataset

    t0 = time.perf_counter()
    if lookups:
        cat = load_dataset(manifest, storage_options=options, check_audio=False)
        fs = s3fs.S3FileSystem(**options)
        found = sum(bool(fs.exists(p)) for p in cat.tracks["path"])
    else:
        cat = load_dataset(manifest, storage_options=options)
        found = int(cat.tracks["has_audio"].sum())
    return {"seconds": time.perf_counter() - t0, "n": len(cat.tracks), "found": found}


def in_fresh_process(*args, fn=measure) -> dict:
    """``fn(*args)`` (default :func:`measure`) in a new spawned Python process."""
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def run(quick: bool = False) -> dict:
    """Upload, then plan at N/4 and N files on the driver and on the workers."""
    from tests.servers import make_bucket, moto_server

    n = 200 if quick else int(os.environ.get("EMODIST_BENCH_PLAN_FILES", "20000"))
    sizes = (n // 4, n)
    rows, figures = [], {}
    with moto_server() as (endpoint, options):
        make_bucket(endpoint, BUCKET)
        manifests, up = upload(options, sizes)
        rows.append(row("upload to moto", n / up, unit="files/s",
                        note=f"{n} WAV files of 16 KB, s3fs pipe, 64 at a time"))
        checks = {}
        for size, lookups in ((sizes[0], True), (sizes[0], False), (n, False)):
            checks[size, lookups] = c = in_fresh_process(manifests[size], options, lookups,
                                                         fn=catalog_check)
            assert c["found"] == c["n"] == size, c
            how = "one exists per file (before)" if lookups else "one listing per folder"
            rows.append(row(f"catalog of {size} files with the audio check, {how}",
                            c["seconds"], unit="s", note=f"{size / c['seconds']:.0f} files/s"))
        for size in sizes:
            for mode, where in MODES.items():
                figures[mode, size] = r = in_fresh_process(mode, manifests[size], options)
                assert r["segments"] == size and r["problems"] == 0, r
                rows += [
                    row(f"plan {size} files {ON[mode]}: wall time", r["seconds"], unit="s",
                        note=where),
                    row(f"plan {size} files {ON[mode]}: rate", size / r["seconds"],
                        unit="files/s"),
                    row(f"plan {size} files {ON[mode]}: driver RSS growth", r["growth_mib"],
                        unit="MiB", note="peak during planning minus before; the table "
                        + ("(not on the driver here) would be" if mode == "store" else
                           "itself is") + f" {r['table_mib']:.2f} MiB"),
                ]
            for mode in MODES:
                same = figures["driver", size]["digest"] == figures[mode, size]["digest"]
                assert same, f"{mode} planning of {size} files differs from driver planning"
        for mode in MODES:
            per = (figures[mode, n]["growth_mib"] - figures[mode, n // 4]["growth_mib"]) * 2**10
            rows.append(row(f"plan {ON[mode]}: driver RSS growth per file", per / (n - n // 4),
                            unit="KiB", note=f"from {n // 4} to {n} files; the plan table "
                            f"is {figures[mode, n]['table_mib'] * 2**10 / n:.2f} KiB a file"))
    big_d, big_w = figures["driver", n], figures["cluster", n]
    small_w = figures["cluster", n // 4]
    big_s, small_s = figures["store", n], figures["store", n // 4]
    flat = (big_s["growth_mib"] - small_s["growth_mib"]) * 2**10 / (n - n // 4)
    summary = (f"{n} remote WAV headers on moto (2-core machine): driver "
               f"{big_d['seconds']:.1f} s ({n / big_d['seconds']:.0f} files/s, RSS "
               f"+{big_d['growth_mib']:.0f} MiB), workers {big_w['seconds']:.1f} s "
               f"({n / big_w['seconds']:.0f} files/s, separate scheduler, driver RSS "
               f"+{big_w['growth_mib']:.0f} "
               f"MiB; +{small_w['growth_mib']:.0f} MiB at {n // 4}); into the store "
               f"{big_s['seconds']:.1f} s (driver RSS +{small_s['growth_mib']:.1f} MiB at "
               f"{n // 4}, +{big_s['growth_mib']:.1f} MiB at {n}: {flat:.3f} KiB a file); "
               f"plans equal; audio check of "
               f"{n // 4} files: {checks[n // 4, True]['seconds']:.1f} s with a lookup per "
               f"file, {checks[n // 4, False]['seconds']:.2f} s listing the folder")
    return {"name": "segment planning: driver vs workers", "machine": machine(), "rows": rows,
            "summary": summary}


if __name__ == "__main__":
    from benchmarks.common import main

    main(run)
