"""Exploration: cheaper timbral convolutions for MusiCNN, measured and not adopted.

    EMODIST_EMOTIFY_ROOT=... PYTHONPATH=. python benchmarks/explore_musicnn.py [--out F.json]

The two 7 x 38 and 7 x 67 timbral convolutions hold 81 % of MusiCNN's
multiply-accumulates.  Two ways to make them cheaper are measured here, on
the real MSD tagger (``emodist model build musicnn-msd``) and real Emotify
audio, one pinned core, ONNX Runtime with one thread, batches of 2:

* **low rank over the mel axis**: each layer's weights seen as
  ``(filters x 7) x mel`` and cut to their ``R`` leading singular vectors,
  run as a ``1 x mel`` convolution to ``R`` channels and a ``7 x 1``
  convolution over them; the smallest per-segment cosine of each output to
  the full model, and patches per CPU-second of both, each with emodist's
  exact rewrites (:mod:`emodist.models.rewrite`) as its sessions run them;
* **int8**: ONNX Runtime's ``MatMulInteger`` (u8 x s8) against the fp32
  ``MatMul`` at the 7 x 38 branch's shape; each branch written as an
  explicit u8 im2col, one ``MatMulInteger`` and the maximum over frequency,
  against the fp32 ``Conv`` and blocked ``MaxPool`` emodist runs (random
  weights of the real shapes); and the accuracy of s8 per-channel weights
  and of u8 inputs, simulated by quantizing and dequantizing.

Segments: the first 15 s (5 patches) of each track; 80 of the 100 shared
tracks are evaluated (the other 20 give the input range).  The figures are
in ``docs/musicnn.md`` (int8, low rank).  Not part of the test-suite or of
``python -m benchmarks``: it needs the real audio and model.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from emodist.data.audio import load_track
from emodist.models import musicnn as net
from emodist.models.rewrite import for_session

OUTPUTS = ("taggram", "penultimate", "max_pool", "mean_pool")
TIMBRAL = ("conv2d.conv", "conv2d_1.conv")  # the 7 x 38 and 7 x 67 branches
BATCH = 2
PATCHES = 5  # per 15 s segment


def patches(root: str) -> tuple[np.ndarray, np.ndarray]:
    """``(calibration, evaluation)`` patches: every fifth track, and the others."""
    files = sorted(glob.glob(os.path.join(root, "**", "*.mp3"), recursive=True))
    cal, ev = [], []
    for i, f in enumerate(files):
        p = net.input_patches(load_track(f, sr=net.SR, duration_s=15.0), sr=net.SR)
        (cal if i % 5 == 0 else ev).append(p[:PATCHES])
    return np.concatenate(cal), np.concatenate(ev)


def session(model: onnx.ModelProto, optimize: bool = True,
            rewrites: bool = False) -> ort.InferenceSession:
    """One thread; ``rewrites``: with emodist's exact rewrites, as its sessions load a model."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    data = model.SerializeToString()
    return ort.InferenceSession(for_session(data) if rewrites else data, opts,
                                providers=["CPUExecutionProvider"])


def run(sess, x: np.ndarray) -> list[np.ndarray]:
    parts = [sess.run(list(OUTPUTS), {"patches": x[i:i + BATCH]}) for i in range(0, len(x), BATCH)]
    return [np.concatenate([p[k] for p in parts]) for k in range(len(OUTPUTS))]


def smallest_cosines(got, want) -> dict:
    """Per output: the smallest cosine over segments (the mean of each segment's patches)."""
    out = {}
    for name, a, b in zip(OUTPUTS, got, want):
        a = a.reshape(-1, PATCHES, a.shape[1]).mean(1)
        b = b.reshape(-1, PATCHES, b.shape[1]).mean(1)
        cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        out[name] = float(cos.min())
    return out


def patches_per_cpu_second(sess, x: np.ndarray, rounds: int = 3) -> float:
    best = np.inf
    for _ in range(rounds):
        t = time.process_time()
        run(sess, x)
        best = min(best, time.process_time() - t)
    return len(x) / best


def _weights(model: onnx.ModelProto) -> dict:
    return {i.name: i for i in model.graph.initializer}


def low_rank(model: onnx.ModelProto, rank: int, layers=TIMBRAL) -> onnx.ModelProto:
    """The timbral convolutions ``layers`` cut to ``rank`` mel profiles (SVD of the weights).

    ``rank`` at least the mel width keeps every profile: the same outputs up
    to float rounding (the check that the factoring is right).
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    inits = _weights(out)
    nodes = []
    for node in out.graph.node:
        if node.name not in layers:
            nodes.append(node)
            continue
        w = numpy_helper.to_array(inits[node.input[1]])  # (filters, 1, 7, mel)
        f, _, taps, mel = w.shape
        r = min(rank, mel)  # at most every profile: then exact up to float rounding
        u, s, vt = np.linalg.svd(w[:, 0].reshape(f * taps, mel).astype(np.float64),
                                 full_matrices=False)
        a = vt[:r].reshape(r, 1, 1, mel).astype(np.float32)
        b = (u[:, :r] * s[:r]).reshape(f, taps, r).transpose(0, 2, 1)[..., None]
        out.graph.initializer.extend([numpy_helper.from_array(a, node.name + ".profiles"),
                                      numpy_helper.from_array(b.astype(np.float32),
                                                              node.name + ".taps")])
        pads = next(list(attr.ints) for attr in node.attribute if attr.name == "pads")
        nodes += [helper.make_node("Conv", [node.input[0], node.name + ".profiles"],
                                   [node.name + ".mid"], kernel_shape=[1, mel]),
                  helper.make_node("Conv", [node.name + ".mid", node.name + ".taps",
                                            *node.input[2:]], list(node.output),
                                   kernel_shape=[taps, 1], pads=pads)]
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    for node in layers:  # the full weights are no longer read
        out.graph.initializer.remove(inits[next(n.input[1] for n in model.graph.node
                                                if n.name == node)])
    return out


def fake_int8(model: onnx.ModelProto, weights: bool, inputs: tuple | None) -> onnx.ModelProto:
    """The timbral convolutions with s8 per-channel weights and/or u8 inputs (``(scale, zero)``)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    inits = _weights(out)
    nodes = []
    for node in out.graph.node:
        if node.name in TIMBRAL:
            if weights:
                w = numpy_helper.to_array(inits[node.input[1]])
                scale = (np.abs(w).reshape(len(w), -1).max(1) / 127)[:, None, None, None]
                q = np.clip(np.round(w / scale), -127, 127) * scale
                inits[node.input[1]].CopyFrom(numpy_helper.from_array(q.astype(np.float32),
                                                                      node.input[1]))
            if inputs is not None:
                q, dq = node.name + ".xq", node.name + ".xdq"
                out.graph.initializer.extend([
                    numpy_helper.from_array(np.array(inputs[0], np.float32), q + "s"),
                    numpy_helper.from_array(np.array(inputs[1], np.uint8), q + "z")])
                nodes += [helper.make_node("QuantizeLinear", [node.input[0], q + "s", q + "z"], [q]),
                          helper.make_node("DequantizeLinear", [q, q + "s", q + "z"], [dq])]
                node.input[0] = dq
        nodes.append(node)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    return out


def timbral_input_range(model: onnx.ModelProto, cal: np.ndarray) -> tuple[float, float]:
    """Range of what the timbral convolutions read (the input after its batch norm)."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    name = next(n.input[0] for n in model.graph.node if n.name == TIMBRAL[0])
    probe.graph.output.extend([helper.make_tensor_value_info(name, TensorProto.FLOAT, None)])
    x = session(probe).run([name], {"patches": cal})[0]
    return float(x.min()), float(x.max())


def _timed(sess, feeds: dict, repeats: int = 15) -> float:
    sess.run(None, feeds)
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        sess.run(None, feeds)
        best = min(best, time.perf_counter() - t)
    return best


def matmul_rates(m: int = 11033, k: int = 266, n: int = 208) -> dict:
    """GMAC/s of the fp32 ``MatMul`` and the u8 x s8 ``MatMulInteger`` at one shape."""
    rng = np.random.default_rng(0)
    f32 = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "f32",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])],
        [numpy_helper.from_array(rng.standard_normal((k, n)).astype(np.float32), "w")])
    i8 = helper.make_graph(
        [helper.make_node("MatMulInteger", ["x", "w", "z"], ["y"])], "i8",
        [helper.make_tensor_value_info("x", TensorProto.UINT8, [m, k])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [m, n])],
        [numpy_helper.from_array(rng.integers(-127, 127, (k, n)).astype(np.int8), "w"),
         numpy_helper.from_array(np.array(128, np.uint8), "z")])
    out = {}
    for name, graph, x in (("fp32_matmul", f32, rng.standard_normal((m, k)).astype(np.float32)),
                           ("u8s8_matmulinteger", i8,
                            rng.integers(0, 255, (m, k)).astype(np.uint8))):
        sess = session(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
        seconds = _timed(sess, {"x": x})
        out[name] = {"ms": seconds * 1e3, "gmac_per_s": m * k * n / seconds / 1e9}
    return out


def branch_times(taps: int, mel: int, height: int = 187, bins: int = 96,
                 channels: int = 208) -> dict:
    """ms per patch of one timbral branch: fp32 as emodist runs it, and u8 im2col + int8."""
    rng = np.random.default_rng(0)
    width = bins - mel + 1
    x = rng.standard_normal((BATCH, 1, height, bins)).astype(np.float32)
    xin = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [BATCH, 1, height, bins])]
    yout = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    w = (0.1 * rng.standard_normal((channels, 1, taps, mel))).astype(np.float32)
    fp32 = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[taps, mel],
                          pads=[3, 0, 3, 0]),
         helper.make_node("MaxPool", ["c"], ["y"], kernel_shape=[1, width])],
        "fp32", xin, yout, [numpy_helper.from_array(w, "w")])
    const = {"xs": np.array(0.01, np.float32), "xz": np.array(100, np.uint8),
             "pads": np.array([0, 0, 3, 0, 0, 0, 3, 0], np.int64),
             "windows": (np.arange(width)[:, None] + np.arange(mel)[None, :]).astype(np.int64),
             "axis2": np.array([2], np.int64),
             "w8": rng.integers(-127, 127, (taps * mel, channels)).astype(np.int8),
             "rows": np.array([-1, taps * mel], np.int64),
             "planes": np.array([BATCH, height, width, channels], np.int64)}
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
             helper.make_node("Pad", ["xq", "pads", "xz"], ["xp"]),
             helper.make_node("Gather", ["xp", "windows"], ["xg"], axis=3)]
    for t in range(taps):  # the 7 time taps, side by side: tap-major columns, as the weights
        const[f"from{t}"], const[f"to{t}"] = np.array([t]), np.array([t + height])
        nodes.append(helper.make_node("Slice", ["xg", f"from{t}", f"to{t}", "axis2"],
                                      [f"tap{t}"]))
    nodes += [helper.make_node("Concat", [f"tap{t}" for t in range(taps)], ["cols"], axis=4),
              helper.make_node("Reshape", ["cols", "rows"], ["im2col"]),
              helper.make_node("MatMulInteger", ["im2col", "w8", "xz"], ["acc"]),
              helper.make_node("Reshape", ["acc", "planes"], ["acc4"]),
              helper.make_node("ReduceMax", ["acc4", "axis2"], ["top"], keepdims=0),
              helper.make_node("Cast", ["top"], ["y"], to=TensorProto.FLOAT)]
    int8 = helper.make_graph(nodes, "int8", xin, yout,
                             [numpy_helper.from_array(np.asarray(v), k) for k, v in const.items()])
    out = {}
    for name, graph in (("fp32_conv_maxpool", fp32), ("u8_im2col_matmulinteger", int8)):
        sess = session(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]))
        out[name] = _timed(sess, {"x": x}) * 1e3 / BATCH
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", help="write the figures as JSON")
    args = parser.parse_args()
    os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})  # one core
    model = onnx.load(net.default_model_path("msd"))
    cal, ev = patches(os.environ["EMODIST_EMOTIFY_ROOT"])
    full = session(model, rewrites=True)
    want = run(full, ev)
    results = {"segments": len(ev) // PATCHES,
               "full_patches_per_cpu_s": patches_per_cpu_second(full, ev[:40]),
               "low_rank": {}, "int8": {}}
    print(f"{results['segments']} segments; the full model as emodist runs it: "
          f"{results['full_patches_per_cpu_s']:.1f} patches per CPU-second")
    settings = [(rank, TIMBRAL) for rank in (8, 16, 24, 32, 36, 48)]
    settings += [(rank, TIMBRAL[1:]) for rank in (32, 40, 48)]  # the 7 x 67 branch alone
    for rank, layers in settings:
        sess = session(low_rank(model, rank, layers), rewrites=True)
        row = {"cosine": smallest_cosines(run(sess, ev), want),
               "patches_per_cpu_s": patches_per_cpu_second(sess, ev[:40])}
        which = "both" if layers == TIMBRAL else "7x67"
        results["low_rank"][f"{which} {rank}"] = row
        print(f"rank {rank} ({which}): {row['patches_per_cpu_s']:.1f} patches per CPU-second, "
              f"smallest cosine " + ", ".join(f"{k} {v:.5f}" for k, v in row["cosine"].items()))
    results["full_patches_per_cpu_s_after"] = patches_per_cpu_second(full, ev[:40])
    print(f"the full model again: {results['full_patches_per_cpu_s_after']:.1f}")
    reference = run(session(model, optimize=False), ev)  # the simulations run unoptimised
    lo, hi = timbral_input_range(model, cal)
    scale = (hi - lo) / 255
    u8 = (scale, int(np.clip(round(-lo / scale), 0, 255)))
    for name, weights, inputs in (("s8 weights", True, None), ("u8 inputs", False, u8),
                                  ("both", True, u8)):
        got = run(session(fake_int8(model, weights, inputs), optimize=False), ev)
        results["int8"][name] = smallest_cosines(got, reference)
        print(f"int8, {name}: smallest cosine " +
              ", ".join(f"{k} {v:.5f}" for k, v in results["int8"][name].items()))
    results["int8"]["matmul"] = matmul_rates()
    for name, row in results["int8"]["matmul"].items():
        print(f"{name}: {row['ms']:.2f} ms, {row['gmac_per_s']:.0f} GMAC/s")
    for taps, mel in ((7, 38), (7, 67)):
        row = branch_times(taps, mel)
        results["int8"][f"branch_{taps}x{mel}_ms_per_patch"] = row
        print(f"branch {taps}x{mel}: " + ", ".join(f"{k} {v:.2f} ms" for k, v in row.items()))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
