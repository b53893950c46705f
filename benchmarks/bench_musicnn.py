"""MusiCNN ONNX throughput: input patches per second, fp32, 1 and 2 threads.

What is measured
----------------
- patches/s of the MusiCNN ONNX model (:mod:`emodist.models.musicnn`; one
  patch = 187 frames = 3 s of audio), batches of 8, 1 and 2 ONNX Runtime
  threads, wall clock (median of repeats; spread = max - min), and for 1
  thread the same per CPU-second of the process;
- multiply-accumulates per patch, counted from the graph's Conv and Gemm
  nodes;
- the exact rewrites (:mod:`emodist.models.rewrite`, as a CPU session of
  this machine gets them) against the file's own graph, side by side: the
  same patches through both sessions, 1 thread, batches of ``MAX_BATCH`` as
  the groups send them, the two alternating over ``ROUNDS`` rounds; patches per CPU-second of each (median of the
  rounds), their ratio, and whether every output is bit-identical;
- milliseconds of :func:`emodist.models.musicnn.input_patches` for one 15 s
  segment (mel spectrogram + log + patching);
- the wall time of a whole extraction (``run_extract`` on a LocalCluster of
  2 workers x 1 thread, 15 s segments) of handcrafted + Inception-v3 alone
  (A) and with both MusiCNN groups added (B), side by side in the same run
  on the same tracks (``$EMODIST_BENCH_TRACKS`` of them, default 16): a
  warm-up extraction of 2 tracks, then A B B A, means of the two; and the
  added share (target: at most 30 %).  Quick mode times the same two
  group lists through the worker's chunk computation in process, on 2
  generated tracks with the tiny Inception and random-weight MusiCNN models.

Patches are real (first 15 s of Emotify tracks) when ``EMODIST_EMOTIFY_ROOT``
is set, else from generated noise.  The full run builds the real MSD model
(``pip download`` of the musicnn wheel, or ``$EMODIST_MUSICNN_WHEEL``);
``quick=True`` uses a random-weight model of the same graph (no download).
There is no int8 row: ONNX Runtime's static int8 quantization of this
network falls below cosine 0.99 to fp32 and is not faster (docs/musicnn.md).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import machine, repeat, row

GENRES = ("classical", "rock", "electronic", "pop")


def count_macs(model_path: str) -> int:
    """Multiply-accumulates per patch of the Conv and Gemm nodes (output size x kernel size)."""
    import onnx
    from onnx import numpy_helper, shape_inference

    model = shape_inference.infer_shapes(onnx.load(model_path))
    inits = {t.name: numpy_helper.to_array(t).shape for t in model.graph.initializer}
    shapes = {}
    for vi in list(model.graph.value_info) + list(model.graph.output):
        dims = [d.dim_value if d.HasField("dim_value") else 1 for d in vi.type.tensor_type.shape.dim]
        shapes[vi.name] = dims
    total = 0
    for node in model.graph.node:
        if node.op_type in ("Conv", "Gemm"):
            w = inits[node.input[1]]
            out = shapes.get(node.output[0])
            if out is None:
                continue
            if node.op_type == "Conv":
                total += int(np.prod(out)) * int(np.prod(w[1:]))
            else:
                total += int(np.prod(out)) * int(w[0])
    return total


#: Alternating rounds of the rewrite A/B (each round runs both sessions once).
ROUNDS = 5


def rewrite_rows(path: str, patches: np.ndarray, quick: bool) -> list[dict]:
    """Patches per CPU-second of the file's graph and of the rewritten one, alternating."""
    import onnx

    from emodist.features.musicnn import MAX_BATCH
    from emodist.models import musicnn
    from emodist.models.rewrite import METADATA_KEY, for_session

    rewritten = onnx.load_from_string(for_session(Path(path).read_bytes()))
    applied = {p.key: p.value for p in rewritten.metadata_props}.get(METADATA_KEY, "none")
    with tempfile.TemporaryDirectory(prefix="emodist-bench-rewrite-") as tmp:
        other = str(Path(tmp) / "rewritten.onnx")
        onnx.save(rewritten, other)
        sessions = {"file": _session(path, 1), "rewritten": _session(other, 1)}
    feeds = [{musicnn.INPUT_NAME: patches[i:i + MAX_BATCH]}
             for i in range(0, len(patches), MAX_BATCH)]
    outs = {k: [s.run(None, f) for f in feeds] for k, s in sessions.items()}  # also the warm-up
    identical = all(np.array_equal(a, b) for fa, fb in zip(outs["file"], outs["rewritten"])
                    for a, b in zip(fa, fb))
    rates: dict[str, list[float]] = {k: [] for k in sessions}
    for i in range(2 if quick else ROUNDS):
        for k in (("file", "rewritten") if i % 2 == 0 else ("rewritten", "file")):
            c0 = time.process_time()
            for f in feeds:
                sessions[k].run(None, f)
            rates[k].append(len(patches) / (time.process_time() - c0))
    med = {k: float(np.median(v)) for k, v in rates.items()}
    ratios = [b / a for a, b in zip(rates["file"], rates["rewritten"])]
    note = (f"{len(patches)} patches, batches of {MAX_BATCH}, 1 thread, median of "
            f"{len(ratios)} alternating rounds")
    return [
        row("patches per CPU-second, the file's graph", med["file"], float(np.ptp(rates["file"])),
            "patches/CPU-s", note),
        row("patches per CPU-second, as emodist runs it (exact rewrites)", med["rewritten"],
            float(np.ptp(rates["rewritten"])), "patches/CPU-s", f"{note}; rewrites: {applied}"),
        row("rewritten / file's graph", float(np.median(ratios)), float(np.ptp(ratios)), "x",
            "per-round ratios' median; outputs bit-identical: "
            + ("yes" if identical else "NO")),
    ]


def _patches(n_segments: int) -> tuple[np.ndarray, float, str]:
    """(patches, ms per 15 s segment of input_patches, source)."""
    from emodist.models.musicnn import SR, input_patches

    root = os.environ.get("EMODIST_EMOTIFY_ROOT")
    clips, source = [], ""
    if root and (Path(root) / "data.csv").is_file():
        from emodist.data.audio import load_track

        paths = [Path(root) / "emotifymusic" / g / f"{i}.mp3" for i in range(1, 26) for g in GENRES]
        paths = [p for p in paths if p.is_file()][:n_segments]
        clips = [load_track(str(p), SR, offset_s=0.0, duration_s=15.0) for p in paths]
        source = f"Emotify, first 15 s of {len(clips)} tracks"
    if not clips:
        rng = np.random.default_rng(0)
        clips = [(0.2 * rng.standard_normal(15 * SR)).astype(np.float32) for _ in range(n_segments)]
        source = f"{n_segments} clips of 15 s of generated noise"
    input_patches(clips[0][: 4 * SR])  # warm-up: imports, mel filter bank
    t0 = time.perf_counter()
    patches = np.concatenate([input_patches(y) for y in clips])
    ms = (time.perf_counter() - t0) / len(clips) * 1e3
    return patches, ms, source


def _session(path: str, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if threads <= 1:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def _dataset(tmp: str, n_tracks: int, quick: bool) -> str:
    """Emotify's first ``n_tracks`` tracks as a manifest, else generated tracks."""
    root = os.environ.get("EMODIST_EMOTIFY_ROOT")
    if not quick and root and (Path(root) / "data.csv").is_file():
        paths = [Path(root) / "emotifymusic" / g / f"{i}.mp3" for i in range(1, 26) for g in GENRES]
        paths = [p for p in paths if p.is_file()][:n_tracks]
        manifest = Path(tmp) / "tracks.csv"
        manifest.parent.mkdir(parents=True, exist_ok=True)
        manifest.write_text("path,label\n" + "".join(f"{p},{p.parent.name}\n" for p in paths))
        return str(manifest)
    from emodist.data.demo import make_demo_dataset

    return make_demo_dataset(Path(tmp) / "data", n_tracks=n_tracks, seed=0,
                             duration_s=6.0 if quick else 60.0)


def _quick_models(tmp: str) -> tuple[str, str]:
    """Tiny Inception and random MusiCNN stand-ins (MSD and MTT) in ``tmp``."""
    import json

    from emodist.models import musicnn
    from emodist.models.build import build_tiny_model

    for v in ("msd", "mtt"):
        path = musicnn.build_random_model(Path(tmp) / f"musicnn_{v}.onnx")
        side = Path(path + ".json")
        side.write_text(json.dumps(dict(json.loads(side.read_text()), variant=v)))
    return build_tiny_model(Path(tmp) / "tiny.onnx"), tmp


def extraction_rows(tmp: str, quick: bool, musicnn_dir: str | None = None) -> list[dict]:
    """Wall time of an extraction without and with the two MusiCNN groups (side by side)."""
    from emodist.features import make_groups
    from emodist.models.session import default_model_path
    from emodist.spec import ExtractionSpec, Runtime

    n_tracks = 2 if quick else int(os.environ.get("EMODIST_BENCH_TRACKS", "16"))
    data = _dataset(tmp, n_tracks, quick)
    if quick:
        inception, musicnn_dir = _quick_models(tmp)
    else:
        inception = default_model_path()
        if not Path(inception).is_file():
            return [row("extraction with MusiCNN added", float("nan"), 0.0, "%",
                        f"skipped: no Inception-v3 model at {inception}")]
    opts = {"model": inception, "musicnn_dir": musicnn_dir}
    base = ["handcrafted", "inception_v3"]
    specs = {"without": base, "with": base + ["musicnn_msd", "musicnn_mtt"]}
    seg = 3.0 if quick else 15.0
    specs = {k: ExtractionSpec(groups=make_groups(v, opts), segment_seconds=seg, min_class_tracks=1)
             for k, v in specs.items()}
    seconds, spread = {}, {"without": 0.0, "with": 0.0}
    if quick:
        seconds = {k: _in_process(data, spec) for k, spec in specs.items()}
        where = (f"in process, {n_tracks} generated tracks of 6 s, 3 s segments, tiny Inception "
                 "(not representative)")
    else:
        from distributed import Client, LocalCluster

        from emodist.engine.extract import run_extract

        times: dict = {"without": [], "with": []}
        cpu: dict = {"without": 0.0, "with": 0.0}
        with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, \
                Client(cluster) as client:
            rt = Runtime(client=client, progress=False)
            # warm-up on 2 tracks (imports, numba, sessions), then A B B A
            warm = _dataset(str(Path(tmp) / "warm"), 2, False)
            run_extract(warm, str(Path(tmp) / "warm.zarr"), specs["with"], rt, overwrite=True)
            for i, k in enumerate(("without", "with", "with", "without")):
                c0 = sum(client.run(time.process_time).values())
                t0 = time.perf_counter()  # a new store each time: a complete one is left alone
                run_extract(data, str(Path(tmp) / f"{k}{i}.zarr"), specs[k], rt)
                times[k].append(time.perf_counter() - t0)
                cpu[k] += (sum(client.run(time.process_time).values()) - c0) / 2
        seconds = {k: float(np.mean(v)) for k, v in times.items()}
        spread = {k: float(np.ptp(v)) for k, v in times.items()}
        where = (f"LocalCluster 2 workers x 1 thread, {n_tracks} tracks, 15 s segments; "
                 "mean of 2 runs (order A B B A after a warm-up)")
    added = 100.0 * (seconds["with"] / seconds["without"] - 1.0)
    cpu_rows = [] if quick else [
        row("worker CPU time, handcrafted + Inception-v3", cpu["without"], 0.0, "CPU-s",
            "both workers, mean of 2 runs (less sensitive to other load than wall time)"),
        row("worker CPU time, + musicnn_msd + musicnn_mtt", cpu["with"], 0.0, "CPU-s",
            "both workers, mean of 2 runs"),
        row("CPU time added by the two MusiCNN groups",
            100.0 * (cpu["with"] / cpu["without"] - 1.0), 0.0, "%", "target: at most 30 %")]
    return cpu_rows + [row("extraction, handcrafted + Inception-v3", seconds["without"], spread["without"],
                "s", where),
            row("extraction, + musicnn_msd + musicnn_mtt", seconds["with"], spread["with"], "s",
                where),
            row("time added by the two MusiCNN groups", added, 0.0, "%", "target: at most 30 %")]


def _in_process(data: str, spec) -> float:
    """Seconds of the worker's chunk computation over every segment of ``data``, in process."""
    from emodist.data.catalog import load_dataset
    from emodist.data.segments import plan_segments
    from emodist.engine.extract import resolve_spec
    from emodist.engine.worker import ChunkTask, Job, compute_chunk
    from emodist.spec import Runtime

    spec = resolve_spec(spec, Runtime())
    table = plan_segments(load_dataset(data, min_class_tracks=1), spec).table
    rows = tuple(zip(table["track_id"], table["path"], table["start_s"], table["duration_s"]))
    t0 = time.perf_counter()
    compute_chunk(ChunkTask(0, 0, len(rows), rows, spec.group_names), Job("unused", spec))
    return time.perf_counter() - t0


def run(quick: bool = False) -> dict:
    from emodist.models import musicnn

    n_rep = 2 if quick else 5
    batch = 8
    with tempfile.TemporaryDirectory(prefix="emodist-bench-musicnn-") as tmp:
        if quick:
            path = musicnn.build_random_model(Path(tmp) / "random.onnx")
            which = "random-weight MusiCNN (same graph)"
        else:
            t0 = time.perf_counter()
            path = musicnn.build_musicnn("msd", Path(tmp) / "musicnn_msd.onnx",
                                         from_wheel=os.environ.get("EMODIST_MUSICNN_WHEEL"))
            build_s = time.perf_counter() - t0
            which = "MusiCNN MSD"
        patches, input_ms, source = _patches(2 if quick else 8)
        patches = patches[: batch * (1 if quick else 4)]
        macs = count_macs(path)
        rows = []
        for threads in (1, 2):
            sess = _session(path, threads)
            feeds = [{musicnn.INPUT_NAME: patches[i:i + batch]} for i in range(0, len(patches), batch)]

            def work(sess=sess, feeds=feeds):
                for f in feeds:
                    sess.run(None, f)

            cpu0 = time.process_time()
            med, spread = repeat(work, n=n_rep, warmup=1)
            cpu = (time.process_time() - cpu0) / (n_rep + 1)
            rate = len(patches) / med
            n = len(patches)
            spread_rate = n / max(med - spread / 2, 1e-9) - n / (med + spread / 2)
            rows.append(row(f"fp32 patches/s, {threads} thread{'s' if threads > 1 else ''}", rate,
                            spread_rate, "patches/s",
                            f"{which}, batch {batch}, {len(patches)} patches; 1 patch = 3 s of audio"))
            if threads == 1:
                rows.append(row("fp32 patches per CPU-second, 1 thread", len(patches) / cpu, 0.0,
                                "patches/CPU-s", "process CPU time, warm-up run included"))
        rows.append(row("multiply-accumulates per patch", macs / 1e9, 0.0, "GMAC",
                        "Conv and Gemm nodes of the graph"))
        rows += rewrite_rows(path, patches, quick)
        rows.append(row("input_patches per 15 s segment", input_ms, 0.0, "ms",
                        f"mel spectrogram + log + patching; {source}"))
        if not quick:
            rows.append(row("model build (wheel to ONNX)", build_s, 0.0, "s",
                            "pip download (or local wheel), sha256, checkpoint read with crc32c, graph"))
            musicnn.build_musicnn("mtt", Path(tmp) / "musicnn_mtt.onnx",
                                  from_wheel=os.environ.get("EMODIST_MUSICNN_WHEEL"))
        ext = extraction_rows(tmp, quick, None if quick else tmp)
        rows += ext
    one = rows[0]["value"]
    gain = next(r for r in rows if r["metric"] == "rewritten / file's graph")
    summary = (f"{which}: {one:.1f} patches/s on 1 thread ({one * 3:.0f} s of audio per second), "
               f"{rows[2]['value']:.1f} on 2; {macs / 1e9:.2f} GMAC per patch; the exact rewrites "
               f"run {gain['value']:.2f}x the file's graph per CPU-second; extraction "
               f"+{ext[-1]['value']:.0f} % with both MusiCNN groups")
    return {"name": "musicnn", "machine": machine(), "rows": rows, "summary": summary}


if __name__ == "__main__":
    from benchmarks.common import main

    main(run)
