"""MusiCNN ONNX throughput: input patches per second, fp32, 1 and 2 threads.

What is measured
----------------
- patches/s of the MusiCNN ONNX model (:mod:`emodist.models.musicnn`; one
  patch = 187 frames = 3 s of audio), batches of 8, 1 and 2 ONNX Runtime
  threads, wall clock (median of repeats; spread = max - min), and for 1
  thread the same per CPU-second of the process;
- multiply-accumulates per patch, counted from the graph's Conv and Gemm
  nodes;
- milliseconds of :func:`emodist.models.musicnn.input_patches` for one 15 s
  segment (mel spectrogram + log + patching).

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
        rows.append(row("input_patches per 15 s segment", input_ms, 0.0, "ms",
                        f"mel spectrogram + log + patching; {source}"))
        if not quick:
            rows.append(row("model build (wheel to ONNX)", build_s, 0.0, "s",
                            "pip download (or local wheel), sha256, checkpoint read with crc32c, graph"))
    one = rows[0]["value"]
    summary = (f"{which}: {one:.1f} patches/s on 1 thread ({one * 3:.0f} s of audio per second), "
               f"{rows[2]['value']:.1f} on 2; {macs / 1e9:.2f} GMAC per patch")
    return {"name": "musicnn", "machine": machine(), "rows": rows, "summary": summary}


if __name__ == "__main__":
    import sys

    res = run(quick="--quick" in sys.argv)
    for r in res["rows"]:
        print(f"{r['metric']:45s} {r['value']:10.3f} ± {r['spread']:.3f} {r['unit']:14s} {r['note']}")
    print(res["summary"])
