"""The driver's memory for an extraction plan of many segments.

A segment plan of ``N`` tracks (100,000 by default, 2,000 with ``quick``)
of 4 segments each is built from header columns
(:func:`emodist.data.segments.build_plan`, no audio), then the extraction
plan of the handcrafted group (:func:`emodist.engine.plan.plan`: the store
template and one task per chunk).  Each measurement runs in a fresh process
and reports the growth of its RSS (the peak, sampled every 5 ms, minus the
RSS before; a plan of 100 tracks first, so imports are not counted, and the
segment plan is made before that) and the time:

- ``former``: what the plan held before, rebuilt here as it was: one
  ``(track_id, path, start_s, duration_s)`` tuple per segment for the tasks,
  the segment ids as a list, and the template's coordinates as ``object``
  arrays of a new string per segment, through xarray's own check of
  ``object`` arrays;
- ``emodist``: :func:`emodist.engine.plan.plan` (tasks carry
  :class:`emodist.engine.worker.SegmentRows`, coordinates share one string
  per distinct value).

The segment plan's own size is reported beside them.
Environment: ``EMODIST_BENCH_DRIVER_TRACKS`` (another ``N``).
"""

from __future__ import annotations

import os
import pickle
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

from benchmarks.common import RssPeak, machine, row

PER_TRACK = 4
CHUNK = 4000


def segment_plan(n: int):
    import numpy as np
    import pandas as pd

    from emodist.data.segments import Probes, build_plan
    from emodist.spec import ExtractionSpec

    labels = np.array(["calmness", "joyful_activation", "tension", "nostalgia", "power",
                       "sadness", "tenderness", "solemnity"])
    tracks = pd.DataFrame({
        "track_id": [f"t{i:07d}" for i in range(n)],
        "path": [f"s3://bucket/emotify/{labels[i % 8]}/{i:07d}.mp3" for i in range(n)],
        "label": labels[np.arange(n) % 8], "group": [f"g{i // 4}" for i in range(n)],
        "genre": np.array(["rock", "pop", "classical", "electronic"])[np.arange(n) % 4]})
    probes = Probes(n)
    probes.duration_s[:] = 60.2
    probes.samplerate[:] = 44100
    probes.channels[:] = 2
    return build_plan(tracks=tracks, probes=probes, spec=ExtractionSpec()).table


def former_plan(table):
    """The former plan's per-segment objects: task tuples, id list, template coordinates."""
    import numpy as np
    import pandas as pd
    import xarray as xr

    ids = [str(s) for s in table["segment_id"]]
    coords = {"segment": ("segment", np.array(ids, dtype=object))}
    for name in ("track_id", "label", "group", "genre", "path"):
        coords[name] = ("segment", np.array(["" if pd.isna(v) else str(v)
                                              for v in table[name]], dtype=object))
    for name in ("start_s", "duration_s"):
        coords[name] = ("segment", table[name].to_numpy(np.float64))
    template = xr.Dataset(coords=coords)
    rows = list(zip(table["track_id"].astype(str), table["path"].astype(str),
                    table["start_s"].astype(float), table["duration_s"].astype(float)))
    tasks = [tuple(rows[a:a + CHUNK]) for a in range(0, len(rows), CHUNK)]
    return template, tasks, ids


def emodist_plan(table):
    from emodist.engine.plan import plan
    from emodist.features import make_groups
    from emodist.spec import ExtractionSpec

    p = plan(table, ExtractionSpec(groups=make_groups(["handcrafted"])), chunk=CHUNK)
    return p.create, [t.rows for t in p.tasks]


def measure(n: int, which: str) -> dict:
    import gc

    fn = former_plan if which == "former" else emodist_plan
    fn(segment_plan(100))  # imports and first calls are not counted
    table = segment_plan(n)
    gc.collect()
    with RssPeak(every_s=0.005) as rss:
        t0 = time.perf_counter()
        out = fn(table)
        seconds = time.perf_counter() - t0
    tasks = out[1]
    return {"seconds": seconds, "growth_mib": (rss.peak - rss.base) / 2**20,
            "segments": len(table), "task_mib": sum(len(pickle.dumps(t)) for t in tasks) / 2**20,
            "table_mib": table.memory_usage(deep=True).sum() / 2**20,
            "rows": [tuple(r) for r in (list(tasks[0])[:3] + list(tasks[-1])[-3:])]}


def in_fresh_process(*args) -> dict:
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(measure, *args).result()


def run(quick: bool = False) -> dict:
    n = 2000 if quick else int(os.environ.get("EMODIST_BENCH_DRIVER_TRACKS", "100000"))
    got = {w: in_fresh_process(n, w) for w in ("former", "emodist")}
    assert got["former"]["rows"] == got["emodist"]["rows"], "the plans' rows differ"
    m = got["emodist"]["segments"]
    rows = []
    for w, r in got.items():
        rows += [
            row(f"{w}: driver RSS growth for the extraction plan", r["growth_mib"], unit="MiB",
                note=f"{m} segments of {n} tracks; peak minus before"),
            row(f"{w}: per segment", r["growth_mib"] * 2**20 / m, unit="bytes"),
            row(f"{w}: time", r["seconds"], unit="s"),
            row(f"{w}: the tasks' rows, pickled", r["task_mib"], unit="MiB",
                note=f"{-(-m // CHUNK)} tasks of {CHUNK} segments"),
        ]
    ratio = got["former"]["growth_mib"] / got["emodist"]["growth_mib"]
    rows += [row("memory ratio (former / emodist)", ratio, unit="x", note="same run"),
             row("the segment plan itself", got["emodist"]["table_mib"], unit="MiB",
                 note="pandas, deep; held before the extraction plan is made")]
    summary = (f"extraction plan of {m} segments on the driver: "
               f"{got['emodist']['growth_mib']:.0f} MiB "
               f"({got['emodist']['growth_mib'] * 2**20 / m:.0f} bytes a segment, "
               f"{got['emodist']['seconds']:.2f} s), former "
               f"{got['former']['growth_mib']:.0f} MiB "
               f"({got['former']['growth_mib'] * 2**20 / m:.0f} bytes, "
               f"{got['former']['seconds']:.2f} s): {ratio:.1f}x less; the segment plan "
               f"itself {got['emodist']['table_mib']:.0f} MiB")
    return {"name": "driver memory of an extraction plan", "machine": machine(), "rows": rows,
            "summary": summary}


if __name__ == "__main__":
    from benchmarks.common import main

    main(run)
