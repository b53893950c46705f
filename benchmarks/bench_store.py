"""Query speed, bytes read and memory on a large generated feature store.

A store of ``N`` segments (1,000,000 by default; 10,000 with ``quick``) is
written in the real layout and chunking of two feature groups, the real
``handcrafted`` group (131 columns) and an ``inception_v3`` model group
(``N x 2048``, 8 GB at full size): :func:`emodist.store.layout.template`,
:func:`emodist.store.zarrio.create_store`, then filled block by block with
random float32 values through :mod:`zarr`, so memory stays bounded while
writing.  Tracks have four segments; labels follow the Emotify class shares.

Queries go through :func:`emodist.store.open_store` and the ``ds.emodist``
accessor, measured through :func:`emodist.store.counting_store` (every key
and byte the query fetches from the store is counted):

- one track's segments with 20 handcrafted columns (warm: store open and
  its coordinate index built), the target is < 100 ms;
- one label's (the smallest class's) ``inception_v3`` features;
- similarity top-10 over all segments with the same 20 handcrafted columns
  (standardised; first call also streams the column statistics);
- similarity top-10 over the full ``N x 2048`` ``inception_v3`` variable (the
  default features of ``similar``: the last model group), in a separate
  process so that its peak RSS is its own.

Environment: ``EMODIST_BENCH_DIR`` (where the store goes, default the
system temp folder), ``EMODIST_BENCH_KEEP=1`` (keep the store and reuse it
on the next run instead of deleting it) and ``EMODIST_BENCH_SEGMENTS``
(another store size).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import machine, repeat, row

#: Emotify class shares of the listener rule (100-track subset), for labels.
CLASS_SHARES = {
    "calmness": 0.36,
    "joyful_activation": 0.18,
    "tension": 0.14,
    "nostalgia": 0.11,
    "power": 0.08,
    "sadness": 0.05,
    "tenderness": 0.05,
    "solemnity": 0.03,
}
GENRES = ("classical", "rock", "electronic", "pop")
PER_TRACK = 4
#: Rows written per zarr call while filling the store.
WRITE_ROWS = 16_384


def make_plan(n_segments: int, seed: int = 0) -> pd.DataFrame:
    """A segment plan of ``n_segments`` rows, four 15 s segments per track."""
    rng = np.random.default_rng(seed)
    n_tracks = -(-n_segments // PER_TRACK)
    labels = rng.choice(list(CLASS_SHARES), size=n_tracks, p=list(CLASS_SHARES.values()))
    genres = np.array(GENRES)[np.arange(n_tracks) % len(GENRES)]
    track = np.repeat(np.arange(n_tracks), PER_TRACK)[:n_segments]
    index = np.tile(np.arange(PER_TRACK), n_tracks)[:n_segments]
    tid = (track + 1).astype(str).astype(object)
    return pd.DataFrame(
        {
            "segment_id": tid + np.char.add(":", np.char.zfill(index.astype(str), 3)).astype(object),
            "track_id": tid,
            "segment_index": index,
            "start_s": index * 15.0,
            "duration_s": 15.0,
            "label": labels[track],
            "group": genres[track],
            "genre": genres[track],
            "path": "s3://music/" + tid + ".mp3",
        }
    )


#: The stored feature groups: handcrafted descriptors and a model embedding.
HANDCRAFTED, DEEP = "handcrafted", "inception_v3"


def feature_groups(deep_dim: int):
    """The real handcrafted group and an Inception-v3 group of ``deep_dim`` columns.

    The model group is given its width and a (made-up) model hash, so that it
    is recorded as a model embedding without reading a model.
    """
    from emodist.features.handcrafted.group import Handcrafted
    from emodist.features.inception import InceptionV3

    return [Handcrafted(), InceptionV3(dim=deep_dim, sha256="be" * 32, image_size=299)]


def build_store(path: str, n_segments: int, deep_dim: int = 2048, seed: int = 0, *,
                by_track: bool = False, signal: float = 0.0,
                dataset: str = "random benchmark store") -> dict:
    """Write a complete store of random features at ``path``.

    Parameters
    ----------
    by_track : bool
        Group column = track id (folds grouped by track, as Emotify);
        otherwise the genre.
    signal : float
        0: pure noise; else every column gets a class-dependent offset of
        this many noise standard deviations (Gaussian noise in both groups).
    dataset : str
        The store's ``dataset`` attribute (followed by the segment count).

    Returns
    -------
    dict
        ``seconds`` spent, ``chunk`` (segments per chunk) and ``bytes`` on disk.
    """
    import zarr

    from emodist.spec import ExtractionSpec
    from emodist.store import layout
    from emodist.store import zarrio as store

    t0 = time.perf_counter()
    groups = feature_groups(deep_dim)
    width = {g.name: g.width for g in groups}
    plan = make_plan(n_segments, seed)
    if by_track:
        plan["group"] = plan["track_id"]
    label = plan["label"].map({c: i for i, c in enumerate(CLASS_SHARES)}).to_numpy()
    chunk = store.chunk_segments(n_segments, 4 * deep_dim)
    attrs = {"dataset": f"{dataset}, {n_segments} segments", "bench_seed": seed,
             "label_rule": "listener"}
    attrs.update(ExtractionSpec(groups=tuple(groups)).to_attrs())
    ds = layout.template(plan, groups, chunk=chunk, attrs=attrs)
    store.create_store(path, ds, chunk)
    del ds, plan
    rng = np.random.default_rng(seed + 1)
    centres = {g: signal * rng.standard_normal((len(CLASS_SHARES), w)).astype(np.float32)
               for g, w in width.items()} if signal else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = zarr.open_group(path, mode="r+")
        step = max(chunk, WRITE_ROWS // chunk * chunk)
        for a in range(0, n_segments, step):
            b = min(a + step, n_segments)
            if centres is None:
                g[HANDCRAFTED][a:b] = rng.standard_normal((b - a, width[HANDCRAFTED]), np.float32)
                g[DEEP][a:b] = rng.random((b - a, deep_dim), np.float32)
            else:
                for name, w in width.items():
                    g[name][a:b] = rng.standard_normal((b - a, w), np.float32) + centres[name][label[a:b]]
        for name in width:
            g[layout.status_name(name)][:] = np.full(n_segments, layout.STATUS_DONE, np.int8)
    store.finish_store(path, {"bench_complete": True})
    return {"seconds": time.perf_counter() - t0, "chunk": chunk, "bytes": _du(path)}


def _du(path: str) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def _reusable(path: str, n_segments: int, deep_dim: int, dataset: str = "random benchmark store,") -> bool:
    from emodist.errors import StoreError
    from emodist.store import layout, open_store

    try:
        ds = open_store(path)
    except StoreError:
        return False
    return (ds.attrs.get("bench_complete") is True and ds.sizes["segment"] == n_segments
            and str(ds.attrs.get("dataset", "")).startswith(dataset)
            and ds.emodist.groups == [HANDCRAFTED, DEEP]
            and ds.sizes.get(layout.feature_dim(DEEP)) == deep_dim)


def _measure(counter, fn, n: int, warmup: int = 1) -> tuple[float, float, int]:
    """Median and spread of ``fn``'s seconds, and the bytes one call reads."""
    med, spread = repeat(fn, n=n, warmup=warmup)
    counter.reset()
    fn()
    return med, spread, counter.bytes_read


def _once(counter, fn) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (all threads) and bytes read of one call."""
    counter.reset()
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0, counter.bytes_read


def _status_mib(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process in MiB.

    ``/proc`` figures belong to this process alone; ``ru_maxrss`` would
    carry over the peak of the process that started it.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak() -> None:
    """Start a new ``VmHWM`` peak here (Linux ``clear_refs``; no-op elsewhere)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def deep_similarity_child(path: str) -> dict:
    """Run in a fresh process: top-10 over the whole deep (model) variable."""
    from emodist.store import counting_store, open_store
    from emodist.store.similar import BLOCK_BYTES

    counter = counting_store(path)
    ds = open_store(counter)
    index = ds.emodist.index
    query_id = str(index.columns["segment_id"][index.n // 2])
    index_peak, before = _status_mib("VmHWM"), _status_mib("VmRSS")
    _reset_peak()
    counter.reset()
    t0, c0 = time.perf_counter(), time.process_time()
    hits = ds.emodist.similar(query_id, k=10, exclude_same_track=True)  # default: DEEP
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"seconds": seconds, "cpu": cpu, "bytes": counter.bytes_read, "rss_before_mib": before,
            "index_peak_mib": index_peak, "peak_rss_mib": _status_mib("VmHWM"), "hits": len(hits),
            "block_mib": BLOCK_BYTES / 2**20}


def _deep_similarity(path: str) -> dict:
    code = ("import json, sys; from benchmarks.bench_store import deep_similarity_child; "
            "print(json.dumps(deep_similarity_child(sys.argv[1])))")
    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True,
                         check=True, cwd=root, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _query_rows(path: str, n_segments: int, deep_dim: int) -> list[dict]:
    """Time the selection and handcrafted similarity queries on one opened store."""
    from emodist.store import counting_store, open_store

    rows = []
    counter = counting_store(path)
    t0 = time.perf_counter()
    ds = open_store(counter)
    index = ds.emodist.index
    rows.append(row("open + coordinate index (cold)", time.perf_counter() - t0, 0, "s",
                    f"bytes read {counter.bytes_read / 2**20:.1f} MiB"))
    cols = [c for c in index.feature_names[HANDCRAFTED] if c.startswith("mfcc_")][:20]
    track = str(index.categories["track_id"][len(index.categories["track_id"]) // 2])

    med, spread, nbytes = _measure(
        counter, lambda: ds.emodist.select(tracks=track, features=cols), n=20)
    rows.append(row("one track, 20 handcrafted columns (warm)", med * 1e3, spread * 1e3, "ms",
                    f"{PER_TRACK} rows; bytes read {nbytes / 2**10:.0f} KiB; target < 100 ms"))

    label = min(CLASS_SHARES, key=CLASS_SHARES.get)
    n_label = int(np.sum(index.categories["label"][index.codes["label"]] == label))
    wall, cpu, nbytes = _once(counter, lambda: ds.emodist.select(labels=label, features=DEEP))
    rows.append(row(f"one label's deep features ({label})", wall, 0, "s",
                    f"{n_label} rows x {deep_dim}; CPU {cpu:.1f} s; bytes read "
                    f"{nbytes / 2**30:.2f} GiB (labels are spread over nearly every chunk)"))

    qid = str(index.columns["segment_id"][n_segments // 3])
    wall, cpu, nbytes = _once(counter, lambda: ds.emodist.similar(qid, k=10, features=cols))
    rows.append(row("similar top-10, 20 handcrafted columns (cold)", wall, 0, "s",
                    f"standardised: column statistics pass + search pass; CPU {cpu:.1f} s; "
                    f"bytes read {nbytes / 2**20:.0f} MiB"))
    med, spread, nbytes = _measure(
        counter, lambda: ds.emodist.similar(qid, k=10, features=cols), n=3, warmup=0)
    rows.append(row("similar top-10, 20 handcrafted columns (warm)", med, spread, "s",
                    f"{n_segments} segments; bytes read {nbytes / 2**20:.0f} MiB"))
    return rows


def run(quick: bool = False) -> dict:
    """Build (or reuse) the store, time the queries, return the rows."""
    n_segments, deep_dim = (10_000, 512) if quick else (1_000_000, 2048)
    n_segments = int(os.environ.get("EMODIST_BENCH_SEGMENTS") or n_segments)
    keep = os.environ.get("EMODIST_BENCH_KEEP") == "1"
    base = os.environ.get("EMODIST_BENCH_DIR") or tempfile.gettempdir()
    path = str(Path(base) / f"emodist-bench-store-{n_segments}x{deep_dim}.zarr")
    rows = []
    try:
        if keep and _reusable(path, n_segments, deep_dim):
            built = {"seconds": float("nan"), "bytes": _du(path)}
        else:
            shutil.rmtree(path, ignore_errors=True)
            built = build_store(path, n_segments, deep_dim)
            rows.append(row("write store", built["seconds"], 0, "s",
                            f"{n_segments} segments, handcrafted 131 + deep {deep_dim} float32 "
                            f"random, chunk {built['chunk']} segments"))
        rows.append(row("store size on disk", built["bytes"] / 2**30, 0, "GiB", "zstd level 3"))

        rows += _query_rows(path, n_segments, deep_dim)

        deep = _deep_similarity(path)
        rows.append(row(f"similar top-10 over {n_segments} x {deep_dim} deep", deep["seconds"], 0,
                        "s", f"CPU {deep['cpu']:.1f} s; bytes read {deep['bytes'] / 2**30:.2f} GiB; "
                        f"streamed in {deep['block_mib']:.0f} MiB blocks"))
        rows.append(row("peak RSS during the deep similarity search", deep["peak_rss_mib"], 0,
                        "MiB", f"{deep['rss_before_mib']:.0f} MiB in use after open + index "
                        f"(peak {deep['index_peak_mib']:.0f} MiB while building the index)"))
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)
    one_track = next(r for r in rows if r["metric"].startswith("one track"))
    summary = (f"{n_segments} segments: one track with 20 handcrafted columns in "
               f"{one_track['value']:.1f} ms warm; deep similarity over {n_segments} x {deep_dim} "
               f"in {deep['seconds']:.1f} s with peak RSS {deep['peak_rss_mib']:.0f} MiB")
    return {"name": "store", "machine": machine(), "rows": rows, "summary": summary}


if __name__ == "__main__":
    from benchmarks.common import main

    main(run)
